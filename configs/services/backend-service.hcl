# The service cluster-01 exports in the README's peering walkthrough:
#   isthmus services register configs/services/backend-service.hcl
service {
  name = "backend-service"
  port = 9090

  # Starts passing and stays so for an hour unless something reports:
  #   curl -X PUT http://127.0.0.1:8500/v1/agent/check/fail/service:backend-service
  check {
    ttl    = "1h"
    status = "passing"
  }
}
