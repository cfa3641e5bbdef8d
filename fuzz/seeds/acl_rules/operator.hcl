# An operator's policy, HCL 1 layouts as Consul accepts them.
acl = "read"
operator = "write"
peering = "read"
service_prefix "" { policy = "write" intentions = "write" }
node_prefix "" {
  policy = "read"
}
agent_prefix "" { policy = "read" }, key_prefix "app/" { policy = "list" }
/* prepared queries and sessions are accepted too */
query_prefix "" { policy = "read" }
session "n1" { policy = "write" }
