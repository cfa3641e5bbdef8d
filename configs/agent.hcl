# Example settings for `isthmus agent --config-file configs/agent.hcl`.
#
# Every key is optional; a key not listed here is refused, so a typo fails
# the start instead of being ignored. Flags given on the command line win
# over this file. A file ending in .json is read as JSON with the same keys.

# Where the agent keeps its state (the file state.redb). Required unless the
# agent runs with --dev. A data dir belongs to one cluster: starting it later
# under another cluster_name is refused.
data_dir = "/var/lib/isthmus"

# This cluster's name: letters, digits, '-' and '_'. It appears in SPIFFE IDs
# and as the catalog's datacenter. `datacenter` is accepted as an alias.
cluster_name = "cluster-01"

# This node's name in the catalog (default: the host name).
node_name = "node-1"

# The IP address shown for this node in the catalog (default: 127.0.0.1).
advertise_addr = "127.0.0.1"

# Where the HTTP API listens, as IP:port (default: 127.0.0.1:8500).
http_addr = "127.0.0.1:8500"

# What intentions decide for callers that no intention matches: "allow" or
# "deny" (default: deny).
default_intention_policy = "deny"

# Lifetime of service leaf certificates, as a Go duration (default: 72h, at
# least 1s). Leaves are renewed at two thirds of it.
leaf_cert_ttl = "72h"

# How often each side of a peering stream sends a heartbeat (default: 5s, at
# least 50ms). A peer silent for three of these turns the peering FAILING.
peering_heartbeat = "5s"

# How long a generated peering token can be used (default: 24h, at least 1s).
peering_token_ttl = "24h"

# What a peer may send over the replication stream. The longest message (one
# line) in bytes (default: 16777216, at least 65536; the first line, Open,
# is always limited to 8 KiB); how many services a peer may export to us
# (default: 1024); how many instances one imported service may have
# (default: 4096). A message past a count limit is dropped (logged, counted
# in isthmus_peering_replication_rejected_total); a longer line ends the
# session.
peering_max_message_bytes = 16777216
peering_max_imported_services = 1024
peering_max_service_instances = 4096

# The HTTP API's connection limits (flags: --http-max-conns,
# --http-max-conns-per-client, --http-header-read-timeout, --http-idle-timeout).
# Connections over a cap are closed at accept; a connection that has not sent
# a request's headers within the header-read timeout, or has no request in
# flight for the idle timeout, is closed. The caps are lowered to 3/4 of the
# open-file limit if above it.
limits {
  http_max_conns            = 4096
  http_max_conns_per_client = 200
  http_header_read_timeout  = "30s"
  http_idle_timeout         = "60s"
}

# Host names the API answers to besides IP addresses and localhost (flag:
# --http-allowed-host, repeatable). Other Host headers get 403 (DNS
# rebinding), as do requests whose Origin is not the API's own.
# http_allowed_hosts = ["consul.internal"]

# The in-process mesh gateway of `--dev` (--gateway-bind, --gateway-admin-bind,
# --no-gateway) is set with flags only; outside --dev, run isthmus-gateway
# (see configs/gateway.hcl).

# The DNS interface, Consul's (flag: --dns-port): UDP and TCP on the IP of
# http_addr. 0 takes a free port (the agent prints it as dns=...), -1 turns
# DNS off (default: 8600).
ports {
  dns = 8600
}

# The domain DNS answers: web.service.consul, v1.web.service.consul,
# _web._tcp.service.consul (SRV), web.connect.consul, node-1.node.consul,
# web.service.<peer>.peer.consul (flag: --domain; default: consul). Names
# outside it are refused: the agent has no recursors.
domain = "consul"

dns_config {
  # Answer only instances whose checks all pass (default: false, so warning
  # instances are answered too; critical ones never are).
  only_passing = false
  # TTLs of node and service records (default: 0s). service_ttl takes
  # service names, "prefix*" and "*".
  node_ttl = "0s"
  # service_ttl = { "*" = "5s", "web" = "30s" }
  # At most this many records in any answer; 0 for no cap (default: 0).
  a_record_limit = 0
  # At most this many answers in a UDP reply to a query without EDNS
  # (default: 3). A reply cut to fit 512 bytes (or the EDNS size) has the
  # TC bit set, so resolvers retry over TCP; enable_truncate sets it also
  # when this limit dropped answers (default: false).
  udp_answer_limit = 3
  enable_truncate  = false
}

# Services and checks to register, in Consul's shape (`service { ... }`
# blocks or `services = [...]`, and `check`/`checks`). They are registered
# at start and again on `PUT /v1/agent/reload`, which also deregisters the
# ones removed from this file; a file with a bad definition changes nothing.
# service {
#   name = "web"
#   port = 8080
#   check {
#     http     = "http://127.0.0.1:8080/health"
#     interval = "10s"
#   }
# }

# Access control in Consul's model (tokens, policies in Consul's rule
# language, service identities). Off by default. With it on, every API
# request needs a token (X-Consul-Token, Authorization: Bearer, ?token=)
# whose policies allow it; a request without one is the anonymous token's.
# acl {
#   enabled        = true
#   # What no rule covers: "allow" (Consul's default) or "deny".
#   default_policy = "deny"
#   # Accepted for Consul configs; changes nothing in isthmus.
#   enable_token_persistence = true
#   # The shortest lifetime a token may be created with (default: 1m).
#   token_min_expiration_ttl = "1m"
#   tokens {
#     # A management token created at start when missing (a flag would
#     # show it in `ps`). It stands for the bootstrap: PUT /v1/acl/bootstrap
#     # is then refused.
#     initial_management = "<a UUID kept secret>"
#     # The token the agent's own requests use.
#     agent = "<secret>"
#   }
# }
