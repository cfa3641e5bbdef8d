Kind = "service-intentions"
Name = "backend"
Sources = [
  {
    Name   = "frontend"
    Action = "allow"
  },
  {
    Name = "admin"
    Peer = "cluster-02"
    Permissions = [
      {
        Action = "deny"
        HTTP = {
          PathPrefix = "/admin"
          Methods    = ["GET", "POST"]
          Header = [{ Name = "x-debug", Present = true }]
        }
      }
    ]
  }
]
Meta {
  owner = "team"
}
