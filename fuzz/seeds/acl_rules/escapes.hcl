service = { "we\"b\\\u00e9" = { Policy = "READ" } }
key "a/${b}" { policy = "deny" } // trailing
