# Example settings for `isthmus-gateway --config-file configs/gateway.hcl`.
#
# Every key is optional; a key not listed here is refused, so a typo fails
# the start instead of being ignored. Flags given on the command line win
# over this file. A file ending in .json is read as JSON with the same keys.

# The isthmus agent's HTTP API (default: http://127.0.0.1:8500). The gateway
# loads its certificate and the peerings from it, registers itself in its
# catalog, and forwards to it the peering requests it allows.
control = "http://127.0.0.1:8500"

# The peering listener (TLS), as IP:port (default: 0.0.0.0:8443). Port 0
# picks a free port.
bind = "0.0.0.0:8443"

# The host:port peers dial. It goes into the catalog and from there into
# peering tokens. Without it the bound address is used, and a wildcard bind
# (0.0.0.0 or [::]) is refused because peers cannot dial it: with such a
# bind this key is required. A host without a port means the bound port.
advertise = "10.0.0.5:8443"

# The admin listener, plain HTTP (default: 127.0.0.1:19100): GET /metrics,
# /ready and /live, POST /shutdown. Anyone who reaches it can stop the
# gateway, so keep it on loopback.
admin_bind = "127.0.0.1:19100"

# After SIGTERM (or POST /shutdown): how long open requests, replication
# streams included, may carry on before they are cut. A Go duration
# (default: 10s).
drain_timeout = "10s"

# Peering exchanges are the one request served before the caller is known
# (the agent checks the token's secret), so they are bounded: the body size
# in bytes (default: 16384; 413 beyond), how long the body may take to
# arrive (default: 5s; 408 after), and how many may run at once on one TLS
# connection (default: 4; 429 beyond) and at this gateway (default: 64; 503
# beyond). Refusals are counted in gateway_peering_exchange_refused_total.
exchange_max_body_bytes = 16384
exchange_body_timeout = "5s"
exchange_max_per_connection = 4
exchange_max_concurrent = 64

# Connections the TLS listener holds at once (peering and passed-through
# service traffic together); more are closed at accept (default: 8192,
# lowered to 3/4 of the open-file limit if above it).
max_conns = 8192

# A peering connection must send a request's headers within this long of
# its TLS handshake (default: 30s), and is closed after idle_timeout with no
# request or HTTP/2 stream open (default: 60s; an open replication stream
# is never idle).
header_read_timeout = "30s"
idle_timeout = "60s"

# A passed-through service connection with no bytes either way for this long
# is closed (default: 10m).
passthrough_idle_timeout = "10m"

# Connections the admin listener holds at once (default: 64).
admin_max_conns = 64
