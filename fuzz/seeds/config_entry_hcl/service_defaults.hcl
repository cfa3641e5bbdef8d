Kind     = "service-defaults"
Name     = "backend"
Protocol = "http2"
UpstreamConfig {
  Overrides = [{ Name = "db", Protocol = "tcp" }]
}
