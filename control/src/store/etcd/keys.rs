//! Where each row lives in etcd, under the cluster's prefix.
//!
//! `<prefix>/data/<table>/<scope>/<key>`: the scope is `cluster` for rows
//! every agent shares (config entries, peerings, the CA, ...) and
//! `node:<name>` for rows one agent owns (the services and checks
//! registered through it, its node record). An agent loads and follows the
//! cluster's rows and its own node's; other nodes' rows stay theirs.

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
        let scope = if node_owned(table, key) {
            self.node_scope.as_str()
        } else {
            CLUSTER_SCOPE
        };
        format!("{}{}/{scope}/{key}", self.data, table.name())
    }

    /// The row behind an etcd key, if it is one this agent keeps: `None`
    /// for another node's rows and for keys isthmus did not write.
    pub fn row<'a>(&self, etcd_key: &'a str) -> Option<(Table, &'a str)> {
        let rest = etcd_key.strip_prefix(self.data.as_str())?;
        let (table_name, rest) = rest.split_once('/')?;
        let table = Table::ALL.into_iter().find(|t| t.name() == table_name)?;
        let (scope, key) = rest.split_once('/')?;
        let owned = node_owned(table, key);
        let ours = if owned {
            scope == self.node_scope
        } else {
            scope == CLUSTER_SCOPE
        };
        ours.then_some((table, key))
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
        assert_eq!(
            n2.row(&entry),
            Some((Table::ConfigEntries, "service-intentions/web"))
        );
        let service = n1.key(Table::Services, "web-1");
        assert_eq!(service, "/isthmus/c1/data/services/node:n1/web-1");
        assert_eq!(n1.row(&service), Some((Table::Services, "web-1")));
        assert_eq!(n2.row(&service), None);
        assert_eq!(n2.row(&n1.key(Table::Meta, "node")), None);
        assert_eq!(
            n2.row(&n1.key(Table::Meta, "index")),
            Some((Table::Meta, "index"))
        );
        assert_eq!(n1.row("/isthmus/c1/data/nosuch/cluster/x"), None);
        assert_eq!(n1.row("/isthmus/c2/data/meta/cluster/index"), None);
        assert_eq!(n1.row("/isthmus/c1/data/meta"), None);
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
            prop_assert_eq!(keys.row(&etcd_key), Some((table, key.as_str())));
            prop_assert!(etcd_key.starts_with(keys.data_prefix()));
        }

        #[test]
        fn any_key_parses_without_panicking(key in ".{0,80}") {
            let keys = EtcdKeys::new("/isthmus/c", "n1");
            let _ = keys.row(&key);
        }
    }
}
