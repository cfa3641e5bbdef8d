# Who may call backend-service. Callers that match no source get the agent's
# default intention policy (deny unless configured otherwise).
Kind = "service-intentions"
Name = "backend-service"
Sources = [
  {
    # frontend-service in the peered cluster cluster-02.
    Name   = "frontend-service"
    Peer   = "cluster-02"
    Action = "allow"
  },
  {
    # frontend-service in this cluster (no Peer means local).
    Name   = "frontend-service"
    Action = "allow"
  }
]
