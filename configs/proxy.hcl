# Example settings for `isthmus-proxy --config-file configs/proxy.hcl`: the
# sidecar of the `web` service (configs/services/web.hcl) in cluster-02,
# calling a local `backend` and the `backend-service` that cluster-01
# exports to it.
#
# `service` and `local_app` are required (here or as flags); every other key
# is optional. A key not listed here is refused, so a typo fails the start
# instead of being ignored. Flags given on the command line win over this
# file; a --upstream flag replaces the whole `upstreams` list. A file ending
# in .json is read as JSON with the same keys.

# The local service this sidecar fronts: a DNS label. The proxy asks the agent
# for a leaf certificate for this name (its SPIFFE ID) and enforces the
# intentions whose destination it is.
service = "web"

# This instance's service ID (default: the service name). The sidecar
# registers in the catalog as "<service_id>-sidecar-proxy".
service_id = "web-1"

# The isthmus agent's HTTP API (default: http://127.0.0.1:8500). The proxy
# watches its leaf certificate, the trust bundle and intentions, and each
# upstream's endpoints there, and registers itself in its catalog.
control = "http://127.0.0.1:8500"

# The inbound listener: mutual TLS from other sidecars, and from peers'
# sidecars through this cluster's mesh gateways (default: 0.0.0.0:21000).
# Port 0 picks a free port.
inbound_bind = "0.0.0.0:21000"

# The host:port registered in the catalog, which other sidecars and this
# cluster's mesh gateways dial. Without it the bound inbound address is used,
# and a wildcard bind (0.0.0.0 or [::]) is refused: with such a bind this key
# is required. A host without a port means the bound port.
advertise = "10.0.0.6:21000"

# Where the local application listens, plaintext (required).
local_app = "127.0.0.1:8080"

# One plaintext listener on 127.0.0.1:<local_port> per upstream, for the
# local application only. `peer` (our name for a peering) reaches a service
# that peer exports to us, through its mesh gateways. local_port = 0 picks a
# free port (shown in the proxy's ready line).
upstreams = [
  { service = "backend", local_port = 9191 },
  { service = "backend-service", peer = "cluster-01", local_port = 9192 },
]

# The admin listener, plain HTTP (default: 127.0.0.1:19000): GET /metrics,
# /ready, /live and /config, POST /shutdown. Anyone who reaches it can stop
# the proxy, so keep it on loopback.
admin_bind = "127.0.0.1:19000"

# What the local application speaks (default: http), for inbound traffic and
# for every upstream alike:
#   tcp   - raw bytes; intentions decide per connection
#   http  - HTTP/1.1 or h2c from the app, HTTP/1.1 to it; L7 intentions
#           decide per request
#   http2 - as http, but HTTP/2 (prior knowledge) to the app
protocol = "http"

# Worker threads of the async runtime (default: one per core).
workers = 2

# After SIGTERM (or POST /shutdown): how long in-flight requests and
# connections may carry on before they are cut. A Go duration (default: 10s).
drain_timeout = "10s"

# Connections the inbound listener (and each upstream's) holds at once; more
# are closed at accept (default: 10000, lowered to 3/4 of the open-file limit
# if above it). A connection that has not sent a request's headers within
# header_read_timeout (inbound: of its TLS handshake; default: 30s), or has no
# request in flight for idle_timeout (default: 1h), is closed.
max_conns = 10000
header_read_timeout = "30s"
idle_timeout = "1h"

# Connections the admin listener holds at once (default: 64).
admin_max_conns = 64

# Log JSON lines instead of text (default: false); the level comes from
# RUST_LOG.
log_json = false
