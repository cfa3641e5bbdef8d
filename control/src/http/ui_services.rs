//! `GET /v1/internal/ui/services`: one summary per service for the web
//! UI's Services page, in a single (blocking) query instead of one health
//! query per service. Like Consul's endpoint of that name: this cluster's
//! services, then those imported from each peer (with `PeerName`), each with
//! its kind, tags, instance count, check counts by status and whether a
//! sidecar proxy fronts it. isthmus adds the instance counts by health
//! (`InstancesPassing`...: an instance is as healthy as its worst check).
//! ACL-filtered like `/v1/health/service`.

use std::collections::BTreeSet;

use axum::extract::{Query, State as Extract};
use axum::response::Response;
use isthmus_api::catalog::{ServiceEntry, KIND_CONNECT_PROXY, STATUS_PASSING, STATUS_WARNING};
use serde::Serialize;

use super::authz::{self, Authz};
use super::error::ApiError;
use super::{blocking_json_acl, Params, State};
use crate::catalog::{self, Select};
use crate::{catalog_nodes, peering};

/// One service's line on the Services page.
#[derive(Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceSummary {
    pub name: String,
    pub datacenter: String,
    /// Empty for a typical service (Consul omits it then).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub tags: Vec<String>,
    /// The nodes its instances run on.
    pub nodes: Vec<String>,
    pub instance_count: usize,
    /// Checks by status, over all instances (Consul's counts).
    pub checks_passing: usize,
    pub checks_warning: usize,
    pub checks_critical: usize,
    /// Instances by their worst check.
    pub instances_passing: usize,
    pub instances_warning: usize,
    pub instances_critical: usize,
    /// Some `connect-proxy` instance here names it as its destination.
    pub connected_with_proxy: bool,
    /// The peer it is imported from; empty for this cluster's services.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub peer_name: String,
}

/// The summary of `entries`, the (readable) instances of `name`.
pub fn summarize(
    name: &str,
    entries: &[ServiceEntry],
    datacenter: &str,
    peer: &str,
) -> ServiceSummary {
    let mut summary = ServiceSummary {
        name: name.to_owned(),
        datacenter: datacenter.to_owned(),
        peer_name: peer.to_owned(),
        instance_count: entries.len(),
        ..ServiceSummary::default()
    };
    let mut tags = BTreeSet::new();
    let mut nodes = BTreeSet::new();
    for entry in entries {
        if summary.kind.is_empty() {
            summary.kind = entry.service.kind.clone().unwrap_or_default();
        }
        tags.extend(entry.service.tags.iter().cloned());
        nodes.insert(entry.node.node.clone());
        for check in &entry.checks {
            match check.status.as_str() {
                STATUS_PASSING => summary.checks_passing += 1,
                STATUS_WARNING => summary.checks_warning += 1,
                _ => summary.checks_critical += 1,
            }
        }
        match entry.aggregate_status() {
            STATUS_PASSING => summary.instances_passing += 1,
            STATUS_WARNING => summary.instances_warning += 1,
            _ => summary.instances_critical += 1,
        }
    }
    summary.tags = tags.into_iter().collect();
    summary.nodes = nodes.into_iter().collect();
    summary
}

/// `GET /v1/internal/ui/services`.
pub async fn services(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    blocking_json_acl(&state, &params, &authz, |snap| {
        let datacenter = state.cluster.name.as_str();
        let mut names: BTreeSet<String> = catalog::service_names(snap)?.into_keys().collect();
        for node in catalog_nodes::all(snap)? {
            names.extend(node.services.into_iter().map(|s| s.service));
        }
        let mut local = Vec::with_capacity(names.len());
        let mut fronted = BTreeSet::new();
        for name in &names {
            let mut entries =
                catalog::service_entries(snap, &state.node, Select::Named(name), false)?;
            entries.extend(catalog_nodes::service_entries(snap, name, false)?);
            authz.retain(&mut entries, authz::entry_readable);
            if entries.is_empty() {
                continue;
            }
            for entry in &entries {
                if entry.service.kind.as_deref() == Some(KIND_CONNECT_PROXY) {
                    if let Some(proxy) = &entry.service.proxy {
                        fronted.insert(proxy.destination_service_name.clone());
                    }
                }
            }
            local.push(summarize(name, &entries, datacenter, ""));
        }
        for summary in &mut local {
            summary.connected_with_proxy = fronted.contains(&summary.name);
        }
        for record in peering::list(snap)? {
            for name in peering::imported_names(snap, &record.name)? {
                if !authz.service_read(&name) {
                    authz.mark_filtered();
                    continue;
                }
                let (mut entries, _) =
                    super::internal::imported_entries(snap, &record.name, &name, false)?;
                authz.retain(&mut entries, authz::entry_readable);
                local.push(summarize(&name, &entries, datacenter, &record.name));
            }
        }
        Ok((local, snap.watch_index()))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_api::catalog::{AgentService, HealthCheck, Node};

    fn entry(node: &str, tags: &[&str], statuses: &[&str]) -> ServiceEntry {
        ServiceEntry {
            node: Node {
                node: node.into(),
                ..Node::default()
            },
            service: AgentService {
                tags: tags.iter().map(|t| t.to_string()).collect(),
                ..AgentService::default()
            },
            checks: statuses
                .iter()
                .map(|s| HealthCheck {
                    status: s.to_string(),
                    ..HealthCheck::default()
                })
                .collect(),
        }
    }

    #[test]
    fn counts_checks_and_instances_by_their_worst_check() {
        let entries = [
            entry("n1", &["v1"], &["passing", "passing"]),
            entry("n2", &["v2", "v1"], &["passing", "warning"]),
            entry("n2", &[], &["warning", "critical"]),
            entry("n3", &[], &[]),
        ];
        let summary = summarize("web", &entries, "dc1", "");
        assert_eq!(summary.instance_count, 4);
        assert_eq!(
            (
                summary.checks_passing,
                summary.checks_warning,
                summary.checks_critical
            ),
            (3, 2, 1)
        );
        assert_eq!(
            (
                summary.instances_passing,
                summary.instances_warning,
                summary.instances_critical
            ),
            (2, 1, 1),
            "no checks counts as passing"
        );
        assert_eq!(summary.tags, ["v1", "v2"]);
        assert_eq!(summary.nodes, ["n1", "n2", "n3"]);
        let json = serde_json::to_value(&summary).unwrap();
        assert!(
            json.get("Kind").is_none() && json.get("PeerName").is_none(),
            "{json}"
        );
        assert_eq!(json["InstancesWarning"], 1);
    }
}
