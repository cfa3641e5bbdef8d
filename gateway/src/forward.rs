//! Proxying authorized peering requests to the local agent over HTTP/2 with
//! prior knowledge (h2c). Bodies stream in both directions at once: the
//! request body is handed to the client as it arrives and the agent's
//! response body is handed back the same way, nothing is buffered.
//!
//! Each [`Forwarder`] has its own connection pool, so its own HTTP/2
//! connection to the agent: unauthenticated exchanges (already fully read,
//! see [`crate::exchange`]) go over one, authenticated traffic over
//! another, and neither can fill the other's streams.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use isthmus_dataplane::http::strip_hop_by_hop;

/// The body type of every response the gateway sends.
pub(crate) type ResponseBody = BoxBody<Bytes, hyper::Error>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pings keep long-lived replication streams' connection known alive.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    #[error("invalid forwarding target {0:?}")]
    Target(String),
    #[error("cannot reach the isthmus agent at {base}: {source}")]
    Unreachable {
        base: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
}

impl ForwardError {
    /// The message for the 502 answer, with the underlying causes.
    pub(crate) fn detail(&self) -> String {
        isthmus_dataplane::retry::error_chain(self)
    }
}

/// Sends requests with bodies of type `B` to the agent; cheap to clone
/// (one shared connection pool).
#[derive(Clone, Debug)]
pub(crate) struct Forwarder<B = Incoming> {
    client: Client<HttpConnector, B>,
    /// `http://host:port`
    base: String,
    /// The gateway's own ACL token, sent as `X-Consul-Token` on everything
    /// forwarded: the agent's gateway endpoints want the gateway's identity.
    token: Option<HeaderValue>,
}

impl<B> Forwarder<B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// A forwarder to the agent at `base`, authenticating with `token`
    /// (`None`: ACLs are off, or the anonymous token is enough).
    pub(crate) fn new(base: &str, token: Option<&str>) -> Forwarder<B> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .timer(TokioTimer::new())
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .build(connector);
        Forwarder {
            client,
            base: base.trim_end_matches('/').to_owned(),
            // A token unfit for a header was refused when the flags were read.
            token: token
                .and_then(|t| HeaderValue::from_str(t).ok())
                .map(|mut v| {
                    v.set_sensitive(true);
                    v
                }),
        }
    }

    /// Forwards `request` to `path_and_query` on the agent, adding `header`.
    /// Hop-by-hop headers are dropped in both directions.
    pub(crate) async fn forward(
        &self,
        request: Request<B>,
        path_and_query: &str,
        header: (HeaderName, HeaderValue),
    ) -> Result<Response<ResponseBody>, ForwardError> {
        let (mut parts, body) = request.into_parts();
        let target = format!("{}{}", self.base, path_and_query);
        parts.uri = target
            .parse::<Uri>()
            .map_err(|_| ForwardError::Target(target))?;
        parts.version = Version::HTTP_2;
        strip_hop_by_hop(&mut parts.headers, false);
        parts.headers.remove(header::HOST);
        replace_credentials(&mut parts.headers, self.token.as_ref());
        parts.headers.insert(header.0, header.1);
        let response = self
            .client
            .request(Request::from_parts(parts, body))
            .await
            .map_err(|source| ForwardError::Unreachable {
                base: self.base.clone(),
                source,
            })?;
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        Ok(Response::from_parts(parts, body.boxed()))
    }
}

const X_CONSUL_TOKEN: HeaderName = HeaderName::from_static("x-consul-token");

/// A peer's request never carries credentials to our agent: whatever token
/// it sent goes, and the gateway's own (if any) takes its place.
fn replace_credentials(headers: &mut http::HeaderMap, token: Option<&HeaderValue>) {
    headers.remove(header::AUTHORIZATION);
    headers.remove(X_CONSUL_TOKEN);
    if let Some(token) = token {
        headers.insert(X_CONSUL_TOKEN, token.clone());
    }
}

/// A plain-text response (the gateway's own answers: 403, 502, ...),
/// without a trailing newline, like the agent's and Consul's.
pub(crate) fn text(status: http::StatusCode, message: impl Into<String>) -> Response<ResponseBody> {
    let body = message.into();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;

    #[test]
    fn a_peers_credentials_never_reach_the_agent() {
        let mut headers = HeaderMap::new();
        headers.append(X_CONSUL_TOKEN, HeaderValue::from_static("peer-1"));
        headers.append(X_CONSUL_TOKEN, HeaderValue::from_static("peer-2"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer peer"),
        );
        let ours = HeaderValue::from_static("gateway-secret");
        replace_credentials(&mut headers, Some(&ours));
        let tokens: Vec<_> = headers.get_all(X_CONSUL_TOKEN).iter().collect();
        assert_eq!(tokens, [&ours]);
        assert!(headers.get(header::AUTHORIZATION).is_none());

        headers.insert(X_CONSUL_TOKEN, HeaderValue::from_static("peer"));
        replace_credentials(&mut headers, None);
        assert!(headers.get(X_CONSUL_TOKEN).is_none());
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        strip_hop_by_hop(&mut headers, false);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key(header::CONTENT_TYPE));
    }
}
