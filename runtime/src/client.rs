//! A small client for the agent's HTTP API, used by the CLI, the sidecar
//! proxy and the mesh gateway.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Where the CLI looks for the agent unless told otherwise.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:8500";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid agent address {addr:?}: {problem}")]
    Address { addr: String, problem: String },
    #[error("cannot reach the isthmus agent at {addr}: {source}")]
    Transport {
        addr: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("reading the response from {addr}: {source}")]
    Body {
        addr: String,
        #[source]
        source: hyper::Error,
    },
    /// The agent answered with an error status; `message` is its text.
    #[error("Unexpected response code: {} ({message})", status.as_u16())]
    Api { status: StatusCode, message: String },
    #[error("decoding the agent's answer: {0}")]
    Decode(#[from] serde_json::Error),
}

impl ClientError {
    /// The HTTP status if the agent answered with an error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A raw answer.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: StatusCode,
    /// `X-Consul-Index`, for the next blocking query.
    pub index: Option<u64>,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct Client {
    base: String,
    http: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// `addr` is `http://host:port` or just `host:port`.
    pub fn new(addr: &str) -> Result<Client, ClientError> {
        let with_scheme = if addr.contains("://") {
            addr.to_owned()
        } else {
            format!("http://{addr}")
        };
        let uri: Uri =
            with_scheme
                .parse()
                .map_err(|e: http::uri::InvalidUri| ClientError::Address {
                    addr: addr.to_owned(),
                    problem: e.to_string(),
                })?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(ClientError::Address {
                addr: addr.to_owned(),
                problem: "expected http://host:port".into(),
            });
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        Ok(Client {
            base: format!("http://{}", uri.authority().expect("checked above")),
            http: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .build(connector),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request; any status is returned as is.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<ApiResponse, ClientError> {
        let uri = format!("{}{}", self.base, path);
        let mut request = Request::builder().method(method).uri(&uri);
        if body.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| ClientError::Address {
                addr: uri.clone(),
                problem: e.to_string(),
            })?;
        let response =
            self.http
                .request(request)
                .await
                .map_err(|source| ClientError::Transport {
                    addr: self.base.clone(),
                    source,
                })?;
        let status = response.status();
        let index = response
            .headers()
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|source| ClientError::Body {
                addr: self.base.clone(),
                source,
            })?
            .to_bytes();
        Ok(ApiResponse {
            status,
            index,
            headers: parts.headers,
            body,
        })
    }

    /// Sends a request and turns an error status into [`ClientError::Api`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<ApiResponse, ClientError> {
        let response = self.send(method, path, body).await?;
        if response.status.is_success() {
            Ok(response)
        } else {
            Err(ClientError::Api {
                status: response.status,
                message: String::from_utf8_lossy(&response.body).trim().to_owned(),
            })
        }
    }

    /// GET and decode JSON, with the index for a following blocking query.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<(T, Option<u64>), ClientError> {
        let response = self.call(Method::GET, path, None).await?;
        Ok((serde_json::from_slice(&response.body)?, response.index))
    }

    /// Sends `body` as JSON and decodes a JSON answer (an empty answer decodes as `null`).
    pub async fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let bytes = Bytes::from(serde_json::to_vec(body)?);
        let response = self.call(method, path, Some(bytes)).await?;
        if response.body.is_empty() {
            return Ok(serde_json::from_slice(b"null")?);
        }
        Ok(serde_json::from_slice(&response.body)?)
    }
}

/// Percent-encodes a path segment or query value.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
