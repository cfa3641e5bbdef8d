# A service definition in Consul's file format:
#   isthmus services register configs/services/web.hcl
# Keys may be snake_case (as here) or CamelCase (as in the HTTP API).
service {
  name = "web"
  port = 8080
  tags = ["v1"]

  # A TTL check starts critical and stays passing only while something reports
  # in within the TTL:
  #   curl -X PUT http://127.0.0.1:8500/v1/agent/check/pass/service:web
  check {
    ttl = "30s"
    # Remove the service if the check stays critical this long.
    deregister_critical_service_after = "10m"
  }
}
