# L7 (per-request) permissions for callers of backend-service.
#
# There is one service-intentions entry per destination, so this file holds
# the whole entry for backend-service: writing it replaces what
# service-intentions.hcl wrote. It keeps that file's two sources and adds
# `web`, whose requests are decided one by one: the first permission whose
# conditions all hold decides; a request no permission matches gets the
# default intention policy.
#
# A source with Permissions has no Action. Without a request to look at
# (`isthmus intention check web backend-service`, or a raw TCP connection)
# such a source denies, as in Consul.
Kind = "service-intentions"
Name = "backend-service"
Sources = [
  {
    Name   = "frontend-service"
    Peer   = "cluster-02"
    Action = "allow"
  },
  {
    Name   = "frontend-service"
    Action = "allow"
  },
  {
    Name = "web"
    Permissions = [
      {
        # Refuse any request under /api that carries an X-Debug header.
        Action = "deny"
        HTTP = {
          PathPrefix = "/api"
          Header = [
            {
              Name    = "X-Debug"
              Present = true
            }
          ]
        }
      },
      {
        # Allow reads under /api.
        Action = "allow"
        HTTP = {
          PathPrefix = "/api"
          Methods    = ["GET"]
        }
      }
    ]
  }
]
