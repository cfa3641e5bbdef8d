//! `/v1/agent/*`: this node's services and checks, and who the agent is.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, Query, State as Extract};
use axum::response::Response;
use isthmus_api::catalog::{
    HealthCheck, ServiceRegistration, STATUS_CRITICAL, STATUS_PASSING, STATUS_WARNING,
};
use serde::Deserialize;
use serde_json::json;

use isthmus_api::consul_json::{value, ConsulBody, Schema};

use isthmus_api::acl::{Access, Resource};

use super::authz::{self, Authz};
use super::error::ApiError;
use super::list_query::ListQuery;
use super::{blocking_json_acl, json_response, ConsulJson, Params, State};
use crate::membership::{Member, MemberStatus};
use crate::store::{Reads, Table};
use crate::{catalog, sidecar};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `GET /v1/agent/self`: Consul's `Config`, `Member`, `Meta` and `Stats`
/// sections (Stats values are strings, as in Consul), plus isthmus's own.
pub async fn agent_self(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    authz.require(Resource::Agent, &state.node.name, Access::Read)?;
    let body = json!({
        "Config": {
            "Datacenter": state.cluster.name,
            "PrimaryDatacenter": state.cluster.name,
            "NodeName": state.node.name,
            "NodeID": state.node.id,
            "Server": true,
            "Version": VERSION,
            "Revision": "",
        },
        "Member": this_member(&state),
        "Meta": {},
        "Stats": stats(&state)?,
        "Isthmus": {
            "ClusterName": state.cluster.name,
            "ClusterID": state.cluster.id,
            "TrustDomain": state.cluster.trust_domain,
            "Index": state.store.index(),
            "DefaultIntentionPolicy": if state.default_allow() { "allow" } else { "deny" },
            "DataDir": state.config.data_dir.as_ref().map(|d| d.display().to_string()),
            "HTTPAddr": state.config.http_addr.to_string(),
        },
    });
    Ok(json_response(&params, &body, None))
}

/// The sections of Consul's `Stats` that describe a single-server agent:
/// `agent` (local services and checks), `build`, `consul` (whether this
/// agent leads, and who does) and `runtime`.
fn stats(state: &State) -> Result<serde_json::Value, ApiError> {
    let snap = state.store.snapshot()?;
    let services = catalog::all_services(&snap)?
        .into_iter()
        .filter(|s| state.is_agent_service(&s.id))
        .count();
    let checks: Vec<_> = catalog::all_checks(&snap)?
        .into_iter()
        .filter(|c| state.is_agent_service(&c.state.service_id))
        .collect();
    let ttls = checks.iter().filter(|c| c.state.r#type == "ttl").count();
    let runtime = tokio::runtime::Handle::current().metrics();
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    Ok(json!({
        "agent": {
            "check_monitors": "0",
            "check_ttls": ttls.to_string(),
            "checks": checks.len().to_string(),
            "services": services.to_string(),
        },
        "build": {
            "prerelease": "",
            "revision": "",
            "version": VERSION,
        },
        "consul": {
            "bootstrap": "true",
            "known_datacenters": "1",
            "leader": state.membership.is_leader().to_string(),
            "leader_addr": leader_addr(state),
            "server": "true",
        },
        "runtime": {
            "arch": go_arch(std::env::consts::ARCH),
            "cpu_count": cpus.to_string(),
            "goroutines": runtime.num_alive_tasks().to_string(),
            "max_procs": runtime.num_workers().to_string(),
            "os": std::env::consts::OS,
        },
    }))
}

/// Consul reports Go's names for architectures; tools compare against them.
fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64",
        other => other,
    }
}

fn member(member: &Member, status: MemberStatus) -> serde_json::Value {
    let port = member
        .api
        .parse::<std::net::SocketAddr>()
        .map(|a| a.port())
        .unwrap_or_default();
    json!({
        "Name": member.name,
        "Addr": member.addr,
        "Port": port,
        "Tags": {
            "dc": member.datacenter,
            "id": member.id,
            "role": "server",
            "build": member.build,
        },
        "Status": status as u8,
    })
}

/// This agent's own member record, as the cluster sees it.
fn this_member(state: &State) -> serde_json::Value {
    let view = state.membership.view();
    match view.members.get(&state.node.name) {
        Some((m, status)) => member(m, *status),
        // Before its first membership read (etcd), it is alive all the same.
        None => json!({"Name": state.node.name, "Addr": state.node.address,
                       "Port": state.config.http_addr.port(), "Status": 1}),
    }
}

/// `GET /v1/agent/members`: every agent of the cluster, alive or failed.
/// Consul lists only the members whose node the token may read.
pub async fn members(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Response {
    let view = state.membership.view();
    let mut members: Vec<_> = view.members.values().collect();
    authz.retain(&mut members, |a, (m, _)| authz::node_readable(a, &m.name));
    let members: Vec<_> = members
        .into_iter()
        .map(|(m, status)| member(m, *status))
        .collect();
    authz.annotate(json_response(&params, &members, None))
}

/// The HTTP address of the cluster's leader (`""` while there is none, as
/// Consul answers): `/v1/status/leader` and `Stats.consul.leader_addr` of
/// `/v1/agent/self` give it.
pub fn leader_addr(state: &State) -> String {
    state
        .membership
        .view()
        .leader
        .map(|l| l.api)
        .unwrap_or_default()
}

pub async fn leader(Extract(state): Extract<State>, Query(params): Query<Params>) -> Response {
    json_response(&params, &leader_addr(&state), None)
}

pub async fn services(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
    list: ListQuery,
) -> Result<Response, ApiError> {
    blocking_json_acl(&state, &params, &authz, |snap| {
        let mut services: BTreeMap<String, _> = catalog::all_services(snap)?
            .into_iter()
            .filter(|s| state.is_agent_service(&s.id))
            .map(|s| (s.id.clone(), s))
            .collect();
        list.narrow_map(&mut services)?;
        authz.retain_map(&mut services, |a, _, s| {
            authz::service_readable(a, &s.service)
        });
        Ok((services, snap.table_index(Table::Services)?))
    })
    .await
}

pub async fn service(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    blocking_json_acl(&state, &params, &authz, |snap| {
        // The in-process gateway watches its own registration here
        // (isthmus_dataplane::presence), so this still answers for it. One
        // row read: its watchers wake only when this service changes.
        let service = catalog::get_service(snap, &id)?
            .ok_or_else(|| ApiError::not_found(format!("unknown service ID: {id}")))?;
        authz.require(Resource::Service, &service.service, Access::Read)?;
        let index = service.modify_index;
        Ok((service, index))
    })
    .await
}

pub async fn checks(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
    list: ListQuery,
) -> Result<Response, ApiError> {
    blocking_json_acl(&state, &params, &authz, |snap| {
        let mut checks: BTreeMap<String, HealthCheck> = catalog::check_states(snap, &state.node)?
            .into_iter()
            .filter(|c| state.is_agent_service(&c.service_id))
            .map(|c| (c.check_id.clone(), c))
            .collect();
        list.narrow_map(&mut checks)?;
        authz.retain_map(&mut checks, |a, _, c| authz::check_readable(a, c));
        Ok((checks, snap.table_index(Table::Checks)?))
    })
    .await
}

pub async fn register(
    Extract(state): Extract<State>,
    authz: Authz,
    ConsulJson(registration): ConsulJson<ServiceRegistration>,
) -> Result<Response, ApiError> {
    let (registration, sidecar) = sidecar::split(registration, &state.node)?;
    {
        let snap = state.store.snapshot()?;
        require_register(&authz, &snap, &registration)?;
        if let Some(sidecar) = &sidecar {
            require_register(&authz, &snap, sidecar.registration())?;
        }
    }
    let prepared = catalog::prepare(registration, &state.node)?;
    let node = state.node.clone();
    let (registered, sidecar) = state
        .store
        .write(move |txn| sidecar::register(txn, prepared.clone(), sidecar.clone(), &node))
        .await?;
    for registered in std::iter::once(registered).chain(sidecar) {
        for check in &registered.dropped_checks {
            state.checks.stop(check);
        }
        let written = registered.registration;
        for check in &written.checks {
            state.checks.start(check);
        }
        tracing::info!(service = %written.service.service, id = %written.service.id, checks = written.checks.len(), "service registered");
    }
    Ok(Response::new(Body::empty()))
}

/// Consul's rule for registering: write on the service, on the service a
/// proxy fronts, and on the service a registration under the same ID
/// would replace.
fn require_register(
    authz: &Authz,
    snap: &crate::store::Snapshot,
    registration: &ServiceRegistration,
) -> Result<(), ApiError> {
    authz.require(Resource::Service, &registration.name, Access::Write)?;
    if let Some(proxy) = &registration.proxy {
        if !proxy.destination_service_name.is_empty() {
            authz.require(
                Resource::Service,
                &proxy.destination_service_name,
                Access::Write,
            )?;
        }
    }
    let id = registration.id.as_deref().unwrap_or(&registration.name);
    if let Some(existing) = catalog::get_service(snap, id)? {
        if existing.service != registration.name {
            authz.require(Resource::Service, &existing.service, Access::Write)?;
        }
    }
    Ok(())
}

/// Write on the service `id` names, when there is one (an unknown ID is
/// left to the operation to report).
pub(super) fn require_service_write(
    state: &State,
    authz: &Authz,
    id: &str,
) -> Result<(), ApiError> {
    if let Some(service) = catalog::get_service(&state.store.snapshot()?, id)? {
        authz.require(Resource::Service, &service.service, Access::Write)?;
    }
    Ok(())
}

/// Consul's rule for changing a check: write on its service, or on the
/// node for a node check.
pub(super) fn require_check_write(
    state: &State,
    authz: &Authz,
    check: &HealthCheck,
) -> Result<(), ApiError> {
    if check.service_id.is_empty() {
        authz.require(Resource::Node, &state.node.name, Access::Write)
    } else {
        // A stored check carries its service's name: no second lookup.
        authz.require(Resource::Service, &check.service_name, Access::Write)
    }
}

/// Removes the service and the sidecar registered with it.
pub async fn deregister(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    authz: Authz,
) -> Result<Response, ApiError> {
    require_service_write(&state, &authz, &id)?;
    let service_id = id.clone();
    let removed = state
        .store
        .write(move |txn| sidecar::deregister(txn, &service_id))
        .await?;
    for check in &removed {
        state.checks.stop(check);
    }
    tracing::info!(id = %id, "service deregistered");
    Ok(Response::new(Body::empty()))
}

async fn update_ttl(
    state: &State,
    authz: &Authz,
    check_id: String,
    status: &'static str,
    output: String,
) -> Result<Response, ApiError> {
    let known = catalog::get_check(&state.store.snapshot()?, &check_id)?.ok_or_else(|| {
        ApiError::not_found(format!(
            "Unknown check ID {check_id:?}. Ensure that the check ID is passed, not the check name."
        ))
    })?;
    require_check_write(state, authz, &known.state)?;
    if known.state.r#type != "ttl" {
        return Err(ApiError::bad_request(format!(
            "CheckID {check_id:?} does not have associated TTL"
        )));
    }
    let id = check_id.clone();
    let check = state
        .store
        .write(move |txn| catalog::set_check_status(txn, &id, status, &output))
        .await?;
    state.checks.refresh_ttl(&check_id);
    state.checks.observe(&check);
    Ok(Response::new(Body::empty()))
}

fn note(params: &Params) -> String {
    params.get("note").cloned().unwrap_or_default()
}

pub async fn check_pass(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    update_ttl(&state, &authz, id, STATUS_PASSING, note(&params)).await
}

pub async fn check_warn(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    update_ttl(&state, &authz, id, STATUS_WARNING, note(&params)).await
}

pub async fn check_fail(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    update_ttl(&state, &authz, id, STATUS_CRITICAL, note(&params)).await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CheckUpdate {
    status: String,
    #[serde(default)]
    output: String,
}

impl ConsulBody for CheckUpdate {
    const SCHEMA: &'static Schema = &Schema::closed(&[value("Status"), value("Output")]);
}

pub async fn check_update(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    authz: Authz,
    ConsulJson(update): ConsulJson<CheckUpdate>,
) -> Result<Response, ApiError> {
    let status = match update.status.as_str() {
        STATUS_PASSING => STATUS_PASSING,
        STATUS_WARNING => STATUS_WARNING,
        STATUS_CRITICAL => STATUS_CRITICAL,
        other => {
            return Err(ApiError::bad_request(format!(
                "Status: {other:?} is not one of passing, warning or critical"
            )))
        }
    };
    update_ttl(&state, &authz, id, status, update.output).await
}
