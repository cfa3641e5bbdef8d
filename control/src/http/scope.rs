//! Requests outside what one isthmus cluster answers, refused with Consul's
//! texts or a clear one: `?dc=` naming another datacenter, and the Consul
//! API families isthmus does not implement (KV, sessions, events, ...).

use axum::extract::{Query, Request, State as Extract};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::{Params, State};

/// The API families whose reads and writes Consul forwards to the named
/// datacenter (`?dc=`); agent-local endpoints ignore the parameter.
const DATACENTER_SCOPED: &[&str] = &[
    "/v1/catalog/",
    "/v1/health/",
    "/v1/config",
    "/v1/connect/",
    "/v1/status/",
    "/v1/coordinate/",
];

/// `?dc=<another datacenter>`: this agent knows one datacenter (its
/// cluster), so like Consul with no route to the named one it answers
/// 500 "No path to datacenter". The own name or an empty value pass.
pub async fn datacenter(Extract(state): Extract<State>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if DATACENTER_SCOPED
        .iter()
        .any(|prefix| path.starts_with(prefix))
    {
        if let Ok(Query(params)) = Query::<Params>::try_from_uri(request.uri()) {
            let dc = params.get("dc").map_or("", String::as_str);
            if !dc.is_empty() && dc != state.cluster.name {
                return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "No path to datacenter")
                    .into_response();
            }
        }
    }
    next.run(request).await
}

/// Consul API families isthmus leaves out, by path prefix.
const NOT_IMPLEMENTED: &[(&str, &str)] = &[
    ("/v1/kv", "KV store"),
    ("/v1/session", "sessions"),
    ("/v1/event", "events"),
    ("/v1/txn", "transactions"),
    ("/v1/query", "prepared queries"),
    ("/v1/snapshot", "snapshots"),
    ("/v1/operator", "operator API"),
    ("/v1/coordinate", "network coordinates"),
    ("/v1/namespace", "namespaces (an Enterprise feature)"),
    ("/v1/partition", "admin partitions (an Enterprise feature)"),
    ("/v1/discovery-chain", "discovery chains"),
];

/// The 404 text for a path nothing answers: which Consul feature it
/// belongs to when isthmus leaves that feature out.
pub fn not_found_text(path: &str) -> String {
    let family = NOT_IMPLEMENTED.iter().find(|(prefix, _)| {
        path == *prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('s'))
    });
    match family {
        Some((_, feature)) => {
            format!("no such endpoint: {path} (isthmus does not implement Consul's {feature})")
        }
        None => format!("no such endpoint: {path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_scope_families_are_named() {
        assert_eq!(
            not_found_text("/v1/kv/app/config"),
            "no such endpoint: /v1/kv/app/config (isthmus does not implement Consul's KV store)"
        );
        assert_eq!(
            not_found_text("/v1/sessions"),
            "no such endpoint: /v1/sessions (isthmus does not implement Consul's sessions)"
        );
        assert_eq!(
            not_found_text("/v1/event/fire/deploy"),
            "no such endpoint: /v1/event/fire/deploy (isthmus does not implement Consul's events)"
        );
        assert_eq!(not_found_text("/v1/kvx"), "no such endpoint: /v1/kvx");
        assert_eq!(not_found_text("/ui/peers"), "no such endpoint: /ui/peers");
    }
}
