//! Requests on peering connections: who is calling (the peer whose pinned
//! roots the client chain verifies against, with a matching trust domain;
//! see [`crate::connection`]), what they may call, and forwarding what is
//! allowed to the agent.
//!
//! | request | check | forwarded to |
//! |---|---|---|
//! | `POST /v1/peering/exchange` | none here (the agent checks the single-use secret); bounded in body size, time and concurrency ([`crate::exchange`]) | `/v1/internal/peering/exchange` + client fingerprint |
//! | `POST /v1/peering/stream` | peer identity, the peer's *mesh gateway* certificate (`spiffe://<td>/gateway/mesh/dc/<dc>`), peering state | `/v1/internal/peering/stream` + peer name |
//! | `GET /v1/health/service/<name>` | identity, state, `can_view` on the service, service exported to the peer | same path and query + peer name |
//! | `GET /v1/peering/probe` | peer identity, the peer's mesh gateway certificate, peering state | answered here (`200 ok`): the peer's gateway probe |
//! | anything else | refused | |

use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use isthmus_api::auth::can_view_service;
use isthmus_api::gateway::GatewayPeer;
use isthmus_api::naming::SpiffeId;
use isthmus_api::peering::{
    AGENT_PATH_STREAM, HEADER_CLIENT_FINGERPRINT, HEADER_PEER, PATH_EXCHANGE, PATH_GATEWAY_PROBE,
    PATH_STREAM, STATE_DELETING, STATE_PENDING, STATE_TERMINATED,
};

use crate::connection::Connection;
use crate::exchange::Exchanges;
use crate::forward::{text, Forwarder, ResponseBody};
use crate::metrics::{Endpoint, Metrics, Outcome, UNKNOWN_PEER};
use crate::view::SharedView;

const HEALTH_PREFIX: &str = "/v1/health/service/";

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    Exchange,
    Stream,
    Health(&'a str),
    Probe,
    Other,
}

impl<'a> Route<'a> {
    pub(crate) fn classify(method: &Method, path: &'a str) -> Route<'a> {
        match (method, path) {
            (&Method::POST, PATH_EXCHANGE) => Route::Exchange,
            (&Method::POST, PATH_STREAM) => Route::Stream,
            (&Method::GET, PATH_GATEWAY_PROBE) => Route::Probe,
            (&Method::GET, _) => match path.strip_prefix(HEALTH_PREFIX) {
                Some(name) if !name.is_empty() && !name.contains('/') => Route::Health(name),
                _ => Route::Other,
            },
            _ => Route::Other,
        }
    }

    fn endpoint(self) -> Endpoint {
        match self {
            Route::Exchange => Endpoint::Exchange,
            Route::Stream => Endpoint::Stream,
            Route::Health(_) => Endpoint::Health,
            Route::Probe => Endpoint::Probe,
            Route::Other => Endpoint::Other,
        }
    }
}

pub(crate) const NOT_PEERED: &str = "client certificate is not from a peered cluster";

/// Whether `peer` may make this request; the error is the 403 text.
pub(crate) fn authorize(
    peer: &GatewayPeer,
    route: Route<'_>,
    method: &Method,
    path: &str,
) -> Result<(), String> {
    if matches!(
        peer.state.as_str(),
        STATE_PENDING | STATE_DELETING | STATE_TERMINATED
    ) {
        return Err(format!("peering {} is {}", peer.name, peer.state));
    }
    match route {
        Route::Exchange | Route::Stream | Route::Probe => Ok(()),
        Route::Health(service) => {
            if !can_view_service(&peer.permissions, service) {
                let groups = if peer.groups.is_empty() {
                    "none".to_owned()
                } else {
                    peer.groups.join(",")
                };
                return Err(format!(
                    "identity {} (groups: {groups}) may not view service {service}",
                    peer.identity
                ));
            }
            if !peer.exported_services.iter().any(|s| s == service) {
                return Err(format!("service {service} is not exported to peer {}", peer.name));
            }
            Ok(())
        }
        Route::Other => Err(format!(
            "peer {} may not call {method} {path}: peering connections serve only {PATH_EXCHANGE}, {PATH_STREAM}, {PATH_GATEWAY_PROBE} and {HEALTH_PREFIX}<name>",
            peer.name
        )),
    }
}

/// Only the peer's mesh gateway may open the replication stream (or probe
/// this gateway, which its leader does with the same identity): its
/// certificate carries `spiffe://<peer td>/gateway/mesh/dc/<dc>`, not a
/// service's SPIFFE ID (which the peer's sidecars hold).
pub(crate) fn stream_certificate(peer: &GatewayPeer, id: Option<&SpiffeId>) -> Result<(), String> {
    match id {
        Some(SpiffeId::MeshGateway { trust_domain, .. })
            if trust_domain.eq_ignore_ascii_case(&peer.trust_domain) =>
        {
            Ok(())
        }
        other => Err(format!(
            "peer {} may open {PATH_STREAM} only with its mesh gateway's certificate \
             (spiffe://{}/gateway/mesh/dc/<dc>), not {}",
            peer.name,
            peer.trust_domain,
            other.map_or_else(
                || "a certificate without a SPIFFE ID".to_owned(),
                |id| id.to_string()
            )
        )),
    }
}

/// The decision for one request, made against one snapshot.
enum Decision {
    /// A probe from an authenticated peer: answered here, the agent and
    /// its catalog untouched.
    Alive {
        peer: String,
    },
    Forward {
        peer: String,
        path_and_query: String,
        header: (HeaderName, HeaderValue),
    },
    Deny {
        peer: String,
        message: String,
    },
}

/// Serves the requests of every peering connection.
#[derive(Debug)]
pub(crate) struct PeeringService {
    pub(crate) shared: SharedView,
    pub(crate) forwarder: Forwarder,
    pub(crate) exchanges: Exchanges,
    pub(crate) metrics: Arc<Metrics>,
}

impl PeeringService {
    pub(crate) async fn handle(
        &self,
        conn: &Connection,
        mut request: Request<Incoming>,
    ) -> Response<ResponseBody> {
        let headers = request.headers_mut();
        headers.remove(HEADER_PEER);
        headers.remove(HEADER_CLIENT_FINGERPRINT);

        let path = request.uri().path();
        let route = Route::classify(request.method(), path);
        if route == Route::Exchange {
            return self.exchanges.handle(conn, request).await;
        }
        let endpoint = route.endpoint();
        let decision = self.decide(conn, &request, route);
        let (peer, path_and_query, header) = match decision {
            Decision::Alive { peer } => {
                tracing::trace!(peer = %peer, remote = %conn.remote, "answered a gateway probe");
                self.metrics.request(&peer, endpoint, Outcome::Allowed);
                return text(StatusCode::OK, "ok".to_owned());
            }
            Decision::Forward {
                peer,
                path_and_query,
                header,
            } => (peer, path_and_query, header),
            Decision::Deny { peer, message } => {
                tracing::info!(
                    peer = %peer,
                    remote = %conn.remote,
                    method = %request.method(),
                    path = %request.uri().path(),
                    reason = %message,
                    "refused peering request"
                );
                self.metrics.request(&peer, endpoint, Outcome::Denied);
                return text(StatusCode::FORBIDDEN, message);
            }
        };
        tracing::debug!(peer = %peer, remote = %conn.remote, method = %request.method(), path = %request.uri().path(), "forwarding peering request");
        match self
            .forwarder
            .forward(request, &path_and_query, header)
            .await
        {
            Ok(response) => {
                self.metrics.request(&peer, endpoint, Outcome::Allowed);
                response
            }
            Err(e) => {
                let detail = e.detail();
                tracing::warn!(peer = %peer, path = %path_and_query, error = %detail, "forwarding a peering request failed");
                self.metrics.request(&peer, endpoint, Outcome::Error);
                text(StatusCode::BAD_GATEWAY, detail)
            }
        }
    }

    /// Decides against the current snapshot; no await, so the snapshot
    /// guard is never held across one.
    fn decide(&self, conn: &Connection, request: &Request<Incoming>, route: Route<'_>) -> Decision {
        let snapshot = self.shared.load();
        let Some(index) = conn.peer_index(&snapshot) else {
            return Decision::Deny {
                peer: UNKNOWN_PEER.to_owned(),
                message: NOT_PEERED.to_owned(),
            };
        };
        let peer = &snapshot.view.peers[index];
        let path = request.uri().path();
        if let Err(message) = authorize(peer, route, request.method(), path) {
            return Decision::Deny {
                peer: peer.name.clone(),
                message,
            };
        }
        if matches!(route, Route::Stream | Route::Probe) {
            if let Err(message) = stream_certificate(peer, conn.chain.spiffe_id()) {
                return Decision::Deny {
                    peer: peer.name.clone(),
                    message,
                };
            }
        }
        if route == Route::Probe {
            return Decision::Alive {
                peer: peer.name.clone(),
            };
        }
        let Ok(peer_header) = HeaderValue::from_str(&peer.name) else {
            return Decision::Deny {
                peer: peer.name.clone(),
                message: format!("peer name {:?} cannot be sent in a header", peer.name),
            };
        };
        let path_and_query = match route {
            Route::Stream => AGENT_PATH_STREAM.to_owned(),
            _ => relayed(path, request.uri().query()),
        };
        Decision::Forward {
            peer: peer.name.clone(),
            path_and_query,
            header: (HeaderName::from_static(HEADER_PEER), peer_header),
        }
    }
}

/// Query parameters a peer may pass along with a health query; anything
/// else (above all `peer`, which would read what we imported from another
/// cluster) is dropped.
const RELAYED_PARAMS: &[&str] = &["passing", "index", "wait", "pretty"];

fn relayed(path: &str, query: Option<&str>) -> String {
    let kept: Vec<&str> = query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or_default();
            RELAYED_PARAMS.contains(&key)
        })
        .collect();
    if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use isthmus_api::auth::{builtin_peering_permissions, Permission};

    use super::*;

    #[test]
    fn only_harmless_query_parameters_are_relayed() {
        assert_eq!(
            relayed("/v1/health/service/web", None),
            "/v1/health/service/web"
        );
        assert_eq!(
            relayed(
                "/v1/health/service/web",
                Some("passing&peer=cluster-03&index=7&wait=1s&filter=x")
            ),
            "/v1/health/service/web?passing&index=7&wait=1s"
        );
        assert_eq!(
            relayed("/v1/health/service/web", Some("peer=cluster-03")),
            "/v1/health/service/web"
        );
    }

    fn peer(state: &str) -> GatewayPeer {
        GatewayPeer {
            name: "cluster-02".into(),
            state: state.into(),
            trust_domain: "td2.isthmus".into(),
            identity: "tls/cluster-02".into(),
            groups: vec!["peering".into()],
            permissions: builtin_peering_permissions(),
            exported_services: vec!["backend".into()],
            ..GatewayPeer::default()
        }
    }

    fn check(peer: &GatewayPeer, method: Method, path: &str) -> Result<(), String> {
        authorize(peer, Route::classify(&method, path), &method, path)
    }

    #[test]
    fn only_the_peers_gateway_certificate_opens_the_stream() {
        let peer = peer("ACTIVE");
        let gateway = SpiffeId::MeshGateway {
            trust_domain: "TD2.isthmus".into(),
            datacenter: "cluster-02".into(),
        };
        assert_eq!(stream_certificate(&peer, Some(&gateway)), Ok(()));
        let service = SpiffeId::service("td2.isthmus", "cluster-02", "web");
        let err = stream_certificate(&peer, Some(&service)).unwrap_err();
        assert!(
            err.ends_with("not spiffe://td2.isthmus/ns/default/dc/cluster-02/svc/web"),
            "{err}"
        );
        let other = SpiffeId::MeshGateway {
            trust_domain: "td3.isthmus".into(),
            datacenter: "cluster-03".into(),
        };
        assert!(stream_certificate(&peer, Some(&other)).is_err());
        let err = stream_certificate(&peer, None).unwrap_err();
        assert!(
            err.ends_with("not a certificate without a SPIFFE ID"),
            "{err}"
        );
    }

    #[test]
    fn routes() {
        assert_eq!(
            Route::classify(&Method::POST, "/v1/peering/exchange"),
            Route::Exchange
        );
        assert_eq!(
            Route::classify(&Method::GET, "/v1/peering/exchange"),
            Route::Other
        );
        assert_eq!(
            Route::classify(&Method::POST, "/v1/peering/stream"),
            Route::Stream
        );
        assert_eq!(
            Route::classify(&Method::GET, "/v1/health/service/web"),
            Route::Health("web")
        );
        assert_eq!(
            Route::classify(&Method::GET, "/v1/peering/probe"),
            Route::Probe
        );
        assert_eq!(
            Route::classify(&Method::POST, "/v1/peering/probe"),
            Route::Other
        );
        assert_eq!(
            Route::classify(&Method::GET, "/v1/health/service/"),
            Route::Other
        );
        assert_eq!(
            Route::classify(&Method::GET, "/v1/health/service/a/b"),
            Route::Other
        );
        assert_eq!(
            Route::classify(&Method::POST, "/v1/health/service/web"),
            Route::Other
        );
    }

    #[test]
    fn exported_and_permitted_services_are_allowed() {
        assert!(check(&peer("ACTIVE"), Method::GET, "/v1/health/service/backend").is_ok());
        assert!(check(&peer("FAILING"), Method::POST, "/v1/peering/stream").is_ok());
        assert!(check(&peer("ESTABLISHING"), Method::POST, "/v1/peering/stream").is_ok());
    }

    #[test]
    fn refusals_say_why() {
        let err = check(&peer("ACTIVE"), Method::GET, "/v1/health/service/db").unwrap_err();
        assert_eq!(err, "service db is not exported to peer cluster-02");

        let mut viewer_of_web = peer("ACTIVE");
        viewer_of_web.groups = vec!["ops".into(), "web-viewers".into()];
        viewer_of_web.permissions = vec![Permission {
            entity_type: "service".into(),
            entity_name: Some("web".into()),
            entitlement: "can_view".into(),
        }];
        let err = check(&viewer_of_web, Method::GET, "/v1/health/service/backend").unwrap_err();
        assert_eq!(
            err,
            "identity tls/cluster-02 (groups: ops,web-viewers) may not view service backend"
        );
        let mut nobody = peer("ACTIVE");
        nobody.groups.clear();
        nobody.permissions.clear();
        let err = check(&nobody, Method::GET, "/v1/health/service/backend").unwrap_err();
        assert_eq!(
            err,
            "identity tls/cluster-02 (groups: none) may not view service backend"
        );

        for state in ["PENDING", "DELETING", "TERMINATED"] {
            let err = check(&peer(state), Method::POST, "/v1/peering/stream").unwrap_err();
            assert_eq!(err, format!("peering cluster-02 is {state}"));
            let err = check(&peer(state), Method::GET, "/v1/peering/probe").unwrap_err();
            assert_eq!(err, format!("peering cluster-02 is {state}"));
        }
        assert!(check(&peer("FAILING"), Method::GET, "/v1/peering/probe").is_ok());

        let err = check(&peer("ACTIVE"), Method::DELETE, "/v1/peering/cluster-01").unwrap_err();
        assert_eq!(
            err,
            "peer cluster-02 may not call DELETE /v1/peering/cluster-01: peering connections serve only \
             /v1/peering/exchange, /v1/peering/stream, /v1/peering/probe and /v1/health/service/<name>"
        );
    }
}
