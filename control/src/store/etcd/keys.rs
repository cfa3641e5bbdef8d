//! Where each row lives in etcd, under the cluster's prefix.
//!
//! `<prefix>/data/<table>/<scope>/<key>`: the scope is `cluster` for rows
//! every agent shares (config entries, peerings, the CA, ...) and
//! `node:<name>` for rows one agent owns (the services and checks
//! registered through it, its node record). Every agent loads and follows
//! all of them; another node's rows land in the `remote_*` tables, keyed by
//! node, so only their own agent ever writes them.

use std::borrow::Cow;

use super::super::Table;

const CLUSTER_SCOPE: &str = "cluster";
const NODE_SCOPE: &str = "node:";

/// Maps rows to etcd keys and back for one agent.
#[derive(Debug, Clone)]
pub struct EtcdKeys {
    /// `<prefix>/data/`.
    data: String,
    node_scope: String,
}

/// Whether a row belongs to the agent that wrote it rather than to the
/// cluster.
fn node_owned(table: Table, key: &str) -> bool {
    matches!(table, Table::Services | Table::Checks) || (table == Table::Meta && key == "node")
}

impl EtcdKeys {
    /// `prefix` without a trailing slash (checked by the settings).
    pub fn new(prefix: &str, node: &str) -> EtcdKeys {
        EtcdKeys {
            data: format!("{prefix}/data/"),
            node_scope: format!("{NODE_SCOPE}{node}"),
        }
    }

    /// Every row of the cluster starts with this.
    pub fn data_prefix(&self) -> &str {
        &self.data
    }

    pub fn key(&self, table: Table, key: &str) -> String {
        let (table, scope, key) = match table {
            // Another node's rows, as this agent keys them.
            Table::RemoteServices | Table::RemoteChecks => {
                let (node, key) = key.split_once('/').unwrap_or((key, ""));
                let table = if table == Table::RemoteServices {
                    Table::Services
                } else {
                    Table::Checks
                };
                (table, Cow::Owned(format!("{NODE_SCOPE}{node}")), key)
            }
            Table::RemoteNodes => (
                Table::Meta,
                Cow::Owned(format!("{NODE_SCOPE}{key}")),
                "node",
            ),
            _ if node_owned(table, key) => (table, Cow::Borrowed(self.node_scope.as_str()), key),
            _ => (table, Cow::Borrowed(CLUSTER_SCOPE), key),
        };
        format!("{}{}/{scope}/{key}", self.data, table.name())
    }

    /// The row behind an etcd key, as this agent keeps it: its own node's
    /// rows and the cluster's as they are, another node's in the `remote_*`
    /// tables; `None` for keys isthmus did not write.
    pub fn row<'a>(&self, etcd_key: &'a str) -> Option<(Table, Cow<'a, str>)> {
        let rest = etcd_key.strip_prefix(self.data.as_str())?;
        let (table_name, rest) = rest.split_once('/')?;
        let table = Table::ALL.into_iter().find(|t| t.name() == table_name)?;
        let (scope, key) = rest.split_once('/')?;
        if !node_owned(table, key) {
            return (scope == CLUSTER_SCOPE).then_some((table, Cow::Borrowed(key)));
        }
        if scope == self.node_scope {
            return Some((table, Cow::Borrowed(key)));
        }
        let node = scope.strip_prefix(NODE_SCOPE).filter(|n| !n.is_empty())?;
        match table {
            Table::Services => Some((Table::RemoteServices, Cow::Owned(format!("{node}/{key}")))),
            Table::Checks => Some((Table::RemoteChecks, Cow::Owned(format!("{node}/{key}")))),
            Table::Meta => Some((Table::RemoteNodes, Cow::Owned(node.to_owned()))),
            _ => None,
        }
    }

    /// The end of the range of keys that start with `prefix` (etcd's
    /// convention: the prefix with its last byte incremented).
    pub fn range_end(prefix: &str) -> Vec<u8> {
        let mut end = prefix.as_bytes().to_vec();
        while let Some(last) = end.pop() {
            if last < 0xff {
                end.push(last + 1);
                return end;
            }
        }
        vec![0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cluster_rows_are_shared_and_node_rows_are_kept_apart() {
        let n1 = EtcdKeys::new("/isthmus/c1", "n1");
        let n2 = EtcdKeys::new("/isthmus/c1", "n2");
        let entry = n1.key(Table::ConfigEntries, "service-intentions/web");
        assert_eq!(
            entry,
            "/isthmus/c1/data/config_entries/cluster/service-intentions/web"
        );
        let row = |keys: &EtcdKeys, key: &str| keys.row(key).map(|(t, k)| (t, k.into_owned()));
        assert_eq!(
            row(&n2, &entry),
            Some((Table::ConfigEntries, "service-intentions/web".into()))
        );
        let service = n1.key(Table::Services, "web-1");
        assert_eq!(service, "/isthmus/c1/data/services/node:n1/web-1");
        assert_eq!(row(&n1, &service), Some((Table::Services, "web-1".into())));
        assert_eq!(
            row(&n2, &service),
            Some((Table::RemoteServices, "n1/web-1".into()))
        );
        assert_eq!(n2.key(Table::RemoteServices, "n1/web-1"), service);
        let node = n1.key(Table::Meta, "node");
        assert_eq!(row(&n2, &node), Some((Table::RemoteNodes, "n1".into())));
        assert_eq!(n2.key(Table::RemoteNodes, "n1"), node);
        assert_eq!(
            row(&n2, &n1.key(Table::Meta, "index")),
            Some((Table::Meta, "index".into()))
        );
        assert_eq!(row(&n1, "/isthmus/c1/data/nosuch/cluster/x"), None);
        assert_eq!(row(&n1, "/isthmus/c2/data/meta/cluster/index"), None);
        assert_eq!(row(&n1, "/isthmus/c1/data/meta"), None);
        assert_eq!(row(&n1, "/isthmus/c1/data/services/node:/x"), None);
    }

    #[test]
    fn range_end_covers_exactly_the_prefix() {
        assert_eq!(EtcdKeys::range_end("/a/"), b"/a0".to_vec());
        assert_eq!(EtcdKeys::range_end(""), vec![0]);
    }

    proptest! {
        #[test]
        fn every_row_maps_back_to_itself(
            table in proptest::sample::select(Table::ALL.to_vec()),
            key in "[a-z0-9/:._-]{0,40}",
            node in "[a-z0-9-]{1,20}",
        ) {
            let keys = EtcdKeys::new("/isthmus/c", &node);
            let etcd_key = keys.key(table, &key);
            let remote = matches!(table, Table::RemoteServices | Table::RemoteChecks | Table::RemoteNodes);
            if !remote {
                let parsed = keys.row(&etcd_key).map(|(t, k)| (t, k.into_owned()));
                prop_assert_eq!(parsed, Some((table, key.clone())));
            }
            prop_assert!(etcd_key.starts_with(keys.data_prefix()));
            // Another agent sees this agent's rows as remote ones, and
            // keys them back to the same etcd key.
            let other = EtcdKeys::new("/isthmus/c", &format!("{node}-other"));
            if let Some((t, k)) = other.row(&etcd_key) {
                prop_assert_eq!(other.key(t, &k), etcd_key);
            }
        }

        #[test]
        fn any_key_parses_without_panicking(key in ".{0,80}") {
            let keys = EtcdKeys::new("/isthmus/c", "n1");
            let _ = keys.row(&key);
        }
    }
}
