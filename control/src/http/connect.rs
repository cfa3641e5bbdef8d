//! `/v1/connect/*` and `/v1/agent/connect/*`: CA roots, leaf certificates,
//! and authorization against intentions.

use axum::extract::{Path, Query, State as Extract};
use axum::response::{IntoResponse, Response};
use isthmus_api::catalog::{AuthorizeRequest, AuthorizeResponse};
use isthmus_api::intentions::Source;
use isthmus_api::naming::{self, SpiffeId};
use serde_json::json;

use isthmus_api::acl::{Access, Resource};

use super::authz::Authz;
use super::error::ApiError;
use super::{blocking_json, flag, json_response, Blocking, ConsulJson, Params, State};

pub async fn roots(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    if flag(&params, "pem") {
        let pem: String = state
            .ca
            .roots()
            .roots
            .iter()
            .map(|r| r.root_cert.as_str())
            .collect();
        return Ok((
            [(
                axum::http::header::CONTENT_TYPE,
                "application/pem-certificate-chain",
            )],
            pem,
        )
            .into_response());
    }
    blocking_json(&state, &params, |_| {
        Ok((state.ca.roots(), state.ca.roots_index()))
    })
    .await
}

/// Issues (or returns the cached) leaf for a service. A blocking query on a
/// leaf returns when it is renewed, at two thirds of its life.
pub async fn leaf(
    Extract(state): Extract<State>,
    Path(service): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    naming::validate_dns_label("service name", &service).map_err(ApiError::bad_request)?;
    // Only a token that may write `service` obtains its identity.
    authz.require(Resource::Service, &service, Access::Write)?;
    let blocking = Blocking::from_params(&params)?;
    let deadline = tokio::time::Instant::now() + blocking.wait;
    let mut shutting_down = state.shutting_down.clone();
    loop {
        let leaf = state.ca.leaf(&service, state.store.index())?;
        let index = leaf.cert.modify_index;
        let fresh = blocking.min_index.is_none_or(|min| index > min);
        if fresh || *shutting_down.borrow() || tokio::time::Instant::now() >= deadline {
            return Ok(json_response(&params, &leaf.cert, Some(index)));
        }
        tokio::select! {
            _ = tokio::time::sleep_until(leaf.renew_at.min(deadline)) => {}
            _ = shutting_down.changed() => {}
        }
    }
}

/// Who a caller is for intentions: its peer (`None` for our own trust
/// domain), namespace and service. Identities from a trust domain that no
/// established peering vouches for cannot be a source.
fn caller_of<'a>(
    state: &State,
    snapshot: &crate::store::Snapshot,
    id: &'a SpiffeId,
) -> Result<(Option<String>, &'a str, &'a str), String> {
    let SpiffeId::Service {
        trust_domain,
        namespace,
        service,
        ..
    } = id
    else {
        return Err("ClientCertURI is a mesh gateway, not a service identity".into());
    };
    if *trust_domain == state.cluster.trust_domain {
        return Ok((None, namespace, service));
    }
    let peer = crate::peering::list(snapshot)
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|p| p.established() && p.peer_trust_domain == *trust_domain)
        .map(|p| p.name)
        .ok_or_else(|| {
            format!("Identity from an external trust domain {trust_domain:?} that no active peering vouches for")
        })?;
    Ok((Some(peer), namespace, service))
}

pub async fn authorize(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
    ConsulJson(request): ConsulJson<AuthorizeRequest>,
) -> Result<Response, ApiError> {
    if request.target.is_empty() {
        return Err(ApiError::bad_request("Target service must be specified"));
    }
    authz.require(Resource::Service, &request.target, Access::Write)?;
    if request.client_cert_uri.is_empty() {
        return Err(ApiError::bad_request("ClientCertURI must be specified"));
    }
    let answer = |authorized: bool, reason: String| {
        json_response(&params, &AuthorizeResponse { authorized, reason }, None)
    };
    let id = match SpiffeId::parse(&request.client_cert_uri) {
        Ok(id) => id,
        Err(e) => {
            return Ok(answer(
                false,
                format!("ClientCertURI not a valid Connect identifier: {e}"),
            ))
        }
    };
    let snapshot = state.store.snapshot()?;
    let (peer, namespace, name) = match caller_of(&state, &snapshot, &id) {
        Ok(caller) => caller,
        Err(reason) => return Ok(answer(false, reason)),
    };
    let intentions = state.intentions(&snapshot)?;
    let source = Source {
        peer: peer.as_deref(),
        namespace,
        name,
    };
    let decision = intentions.decide(&source, &request.target);
    Ok(answer(
        decision.allows_connection_without_http(),
        decision.reason(),
    ))
}

/// `GET /v1/connect/intentions/check?source=S&destination=D[&source-peer=P]`.
/// Needs only read on the destination, as in Consul: the answer says
/// allowed or not and nothing about the intentions behind it.
pub async fn intention_check(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    let required = |name: &str| {
        params.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            ApiError::bad_request(format!("required query parameter '{name}' not set"))
        })
    };
    let source = required("source")?;
    let destination = required("destination")?;
    authz.require(Resource::Service, destination, Access::Read)?;
    let peer = params.get("source-peer").filter(|p| !p.is_empty());
    let intentions = state.intentions(&state.store.snapshot()?)?;
    let decision = intentions.decide(
        &Source {
            peer: peer.map(String::as_str),
            namespace: naming::DEFAULT_NAMESPACE,
            name: source,
        },
        destination,
    );
    Ok(json_response(
        &params,
        &json!({ "Allowed": decision.allows_connection_without_http(), "Reason": decision.reason() }),
        None,
    ))
}
