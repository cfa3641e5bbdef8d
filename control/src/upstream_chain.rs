//! An upstream's resolved chain: where a sidecar's calls to a local service
//! go, after the service's `service-resolver` (redirect, then local healthy
//! instances, then each failover target in order). Resolved on the agent
//! inside the upstream view's blocking query, so every read here (resolver
//! entry, health, imported services, peerings) wakes the sidecar's watch
//! when it changes: a health change re-resolves the chain.

use isthmus_api::catalog::STATUS_PASSING;
use isthmus_api::config_entry::{ServiceResolver, FAILOVER_ANY_SUBSET};
use isthmus_api::naming::{self, SpiffeId};
use isthmus_api::peering as api;
use isthmus_api::proxy::{target_label, ChainStep, UpstreamView};

use crate::catalog_tables::LocalNode;
use crate::cluster::ClusterIdentity;
use crate::peering;
use crate::store::{Reads, StoreError};

/// One place a chain can send calls: a local service or a peer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTarget {
    pub service: String,
    pub peer: Option<String>,
}

impl ChainTarget {
    pub fn label(&self) -> String {
        target_label(&self.service, self.peer.as_deref())
    }
}

/// What a `service-resolver` says about where calls go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainConfig {
    /// All calls go there instead.
    pub redirect: Option<ChainTarget>,
    /// Tried in order when the service has no healthy local instance.
    pub failover: Vec<ChainTarget>,
    /// The resolver's `ConnectTimeout`, in milliseconds.
    pub connect_timeout_ms: Option<u64>,
}

/// The service's resolver, as a chain; `None` without a resolver entry.
pub fn chain_config(r: &impl Reads, service: &str) -> Result<Option<ChainConfig>, StoreError> {
    Ok(crate::config_entries::service_resolver(r, service)?.map(|entry| from_resolver(&entry)))
}

/// The targets a resolver names. Subsets are not told apart here: a
/// target is its service's healthy instances.
pub fn from_resolver(resolver: &ServiceResolver) -> ChainConfig {
    let own = |service: &Option<String>| service.clone().unwrap_or_else(|| resolver.name.clone());
    let redirect = resolver.redirect.as_ref().map(|redirect| ChainTarget {
        service: own(&redirect.service),
        peer: redirect.peer.clone(),
    });
    // The default subset's own failover, else the one for every subset.
    let failover = resolver
        .failover
        .get(&resolver.default_subset)
        .or_else(|| resolver.failover.get(FAILOVER_ANY_SUBSET));
    let failover = match failover {
        None => Vec::new(),
        Some(failover) if failover.targets.is_empty() => failover
            .service
            .iter()
            .map(|service| ChainTarget {
                service: service.clone(),
                peer: None,
            })
            .collect(),
        Some(failover) => failover
            .targets
            .iter()
            .map(|target| ChainTarget {
                service: own(&target.service),
                peer: target.peer.clone(),
            })
            .collect(),
    };
    let connect_timeout_ms = resolver
        .connect_timeout
        .map(|timeout| u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
    ChainConfig {
        redirect,
        failover,
        connect_timeout_ms,
    }
}

/// Where the agent is: its cluster and node.
pub struct Local<'a> {
    pub cluster: &'a ClusterIdentity,
    pub node: &'a LocalNode,
}

/// The view of the local upstream `service` after its chain. `may_read`
/// says whether the caller's token may read a service: a target it may not
/// read is skipped, as if it had no instance.
pub fn resolve(
    r: &impl Reads,
    local: &Local<'_>,
    service: &str,
    may_read: &dyn Fn(&str) -> bool,
) -> Result<UpstreamView, StoreError> {
    let own = ChainTarget {
        service: service.to_owned(),
        peer: None,
    };
    let Some(config) = chain_config(r, service)? else {
        let mut view = local_view(r, local, service)?;
        view.chain = vec![step_for(&view, "no service-resolver: local instances")];
        return Ok(view);
    };
    if let Some(redirect) = &config.redirect {
        let mut view = match target_view(r, local, redirect, may_read)? {
            Ok(view) => view,
            Err(reason) => unreachable_view(local, redirect, reason),
        };
        let why = format!("redirected by the service-resolver of {service}");
        view.chain = vec![step_for(&view, &why)];
        view.connect_timeout_ms = config.connect_timeout_ms;
        return Ok(view);
    }
    let mut steps = Vec::new();
    let mut chosen: Option<UpstreamView> = None;
    let mut first: Option<UpstreamView> = None;
    for (position, target) in std::iter::once(&own)
        .chain(config.failover.iter())
        .enumerate()
    {
        if let Some(chosen) = &chosen {
            steps.push(ChainStep {
                target: target.label(),
                chosen: false,
                reason: format!("not needed: {} has healthy instances", chosen.target),
            });
            continue;
        }
        let why = if position == 0 {
            "local healthy instances".to_owned()
        } else {
            format!("failover target {position}")
        };
        match target_view(r, local, target, may_read)? {
            Ok(view) if !view.endpoints.is_empty() => {
                steps.push(ChainStep {
                    target: view.target.clone(),
                    chosen: true,
                    reason: why,
                });
                chosen = Some(view);
            }
            Ok(view) => {
                steps.push(ChainStep {
                    target: view.target.clone(),
                    chosen: false,
                    reason: view.reason.clone(),
                });
                first.get_or_insert(view);
            }
            Err(reason) => steps.push(ChainStep {
                target: target.label(),
                chosen: false,
                reason,
            }),
        }
    }
    let mut view = match chosen {
        Some(view) => view,
        None => {
            let mut view = match first {
                Some(view) => view,
                None => unreachable_view(local, &own, String::new()),
            };
            view.endpoints.clear();
            view.reason = format!(
                "no target of {service}'s chain has a healthy instance: {}",
                steps
                    .iter()
                    .map(|s| format!("{}: {}", s.target, s.reason))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            view
        }
    };
    view.chain = steps;
    view.connect_timeout_ms = config.connect_timeout_ms;
    Ok(view)
}

fn step_for(view: &UpstreamView, why: &str) -> ChainStep {
    let chosen = view.endpoints.is_empty().then(|| view.reason.clone());
    ChainStep {
        target: view.target.clone(),
        chosen: chosen.is_none(),
        reason: chosen.unwrap_or_else(|| why.to_owned()),
    }
}

/// A target's view, or why it cannot be used at all (no read access, no
/// such peering).
fn target_view(
    r: &impl Reads,
    local: &Local<'_>,
    target: &ChainTarget,
    may_read: &dyn Fn(&str) -> bool,
) -> Result<Result<UpstreamView, String>, StoreError> {
    if !may_read(&target.service) {
        return Ok(Err(format!(
            "skipped: the token may not read service {}",
            target.service
        )));
    }
    match &target.peer {
        None => Ok(Ok(local_view(r, local, &target.service)?)),
        Some(peer) => {
            Ok(peer_view(r, &target.service, peer)?
                .ok_or_else(|| format!("no peering named {peer}")))
        }
    }
}

/// A view with nothing to dial, for a target that cannot be used.
fn unreachable_view(local: &Local<'_>, target: &ChainTarget, reason: String) -> UpstreamView {
    UpstreamView {
        service: target.service.clone(),
        peer: target.peer.clone(),
        trust_domain: local.cluster.trust_domain.clone(),
        target: target.label(),
        reason,
        ..UpstreamView::default()
    }
}

/// The local service's healthy sidecars.
pub fn local_view(
    r: &impl Reads,
    local: &Local<'_>,
    service: &str,
) -> Result<UpstreamView, StoreError> {
    let cluster = local.cluster;
    let endpoints = crate::catalog::sidecar_endpoints(r, local.node, service)?;
    let reason = if endpoints.is_empty() {
        format!(
            "no healthy sidecar proxy for service {service} in cluster {}",
            cluster.name
        )
    } else {
        String::new()
    };
    Ok(UpstreamView {
        service: service.to_owned(),
        peer: None,
        trust_domain: cluster.trust_domain.clone(),
        sni: naming::local_sni(service, &cluster.name, &cluster.trust_domain),
        spiffe_id: SpiffeId::service(&cluster.trust_domain, &cluster.name, service).to_string(),
        endpoints,
        reason,
        target: service.to_owned(),
        chain: Vec::new(),
        protocol: None,
        connect_timeout_ms: None,
    })
}

/// A peer's service, reached through the peer's mesh gateways with the SNI
/// the peer routes on and the identity its sidecar must present. `None`
/// when there is no such peering.
pub fn peer_view(
    r: &impl Reads,
    service: &str,
    peer: &str,
) -> Result<Option<UpstreamView>, StoreError> {
    let Some(record) = peering::get(r, peer)? else {
        return Ok(None);
    };
    let healthy = peering::imported_service(r, peer, service)?
        .iter()
        .any(|e| e.aggregate_status() == STATUS_PASSING);
    let reason = if !record.established()
        || record.state == api::STATE_FAILING && record.peer_server_addresses.is_empty()
    {
        format!("peering {peer} is {}", record.state)
    } else if record.name_at_peer.is_empty() {
        format!("peering {peer} was established by an agent too old to route service traffic; re-establish it")
    } else if !healthy {
        format!("no healthy instance of {service} is imported from peer {peer}")
    } else {
        String::new()
    };
    Ok(Some(UpstreamView {
        service: service.to_owned(),
        peer: Some(peer.to_owned()),
        trust_domain: record.peer_trust_domain.clone(),
        sni: naming::peered_sni(service, &record.name_at_peer, &record.peer_trust_domain),
        spiffe_id: SpiffeId::service(
            &record.peer_trust_domain,
            &record.remote.datacenter,
            service,
        )
        .to_string(),
        endpoints: if reason.is_empty() {
            record.peer_server_addresses.clone()
        } else {
            Vec::new()
        },
        reason,
        target: target_label(service, Some(peer)),
        chain: Vec::new(),
        protocol: None,
        connect_timeout_ms: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_api::config_entry::ConfigEntry;
    use serde_json::json;

    fn resolver(fields: serde_json::Value) -> ServiceResolver {
        let mut value = json!({"Kind": "service-resolver", "Name": "backend"});
        value
            .as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        match ConfigEntry::from_json(value).unwrap() {
            ConfigEntry::ServiceResolver(entry) => *entry,
            other => panic!("{other:?}"),
        }
    }

    fn target(service: &str, peer: Option<&str>) -> ChainTarget {
        ChainTarget {
            service: service.into(),
            peer: peer.map(str::to_owned),
        }
    }

    #[test]
    fn failover_targets_keep_their_order_and_default_to_the_own_service() {
        let config = from_resolver(&resolver(json!({"Failover": {"*": {"Targets": [
            {"Peer": "cluster-01"}, {"Service": "backup", "Peer": "cluster-03"}, {"Service": "spare"}
        ]}}})));
        assert_eq!(config.redirect, None);
        assert_eq!(
            config.failover,
            [
                target("backend", Some("cluster-01")),
                target("backup", Some("cluster-03")),
                target("spare", None)
            ]
        );
    }

    #[test]
    fn the_older_single_service_failover_and_a_redirect_to_a_peer() {
        let config = from_resolver(&resolver(json!({"Failover": {"*": {"Service": "spare"}}})));
        assert_eq!(config.failover, [target("spare", None)]);
        let config = from_resolver(&resolver(
            json!({"Redirect": {"Service": "backend", "Peer": "cluster-01"}}),
        ));
        assert_eq!(config.redirect, Some(target("backend", Some("cluster-01"))));
        assert!(config.failover.is_empty());
        assert_eq!(config.connect_timeout_ms, None);
        let config = from_resolver(&resolver(json!({"ConnectTimeout": "250ms"})));
        assert_eq!(config.connect_timeout_ms, Some(250));
    }
}
