//! A small client for the agent's HTTP API, used by the CLI, the sidecar
//! proxy and the mesh gateway: plain HTTP or HTTPS (trusting a given CA or
//! the system's, optionally with a client certificate), sending an ACL
//! token with every request. [`settings`] resolves flags and environment.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub mod settings;
mod tls;

pub use settings::{ClientFlags, Credentials};

/// The header every request carries the ACL token in.
pub const TOKEN_HEADER: &str = "x-consul-token";

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
    /// The answer was longer than the caller accepts.
    #[error("the answer from {addr} is longer than {max} bytes")]
    TooLarge { addr: String, max: usize },
    #[error("decoding the agent's answer: {0}")]
    Decode(#[from] serde_json::Error),
    /// A flag, variable or file of the client's own settings is unusable.
    #[error("{0}")]
    Settings(String),
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
    token: Option<http::HeaderValue>,
    http: hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Client {
    /// `addr` is `http://host:port`, `https://host:port` (trusting the
    /// system's CAs) or just `host:port`; no token.
    pub fn new(addr: &str) -> Result<Client, ClientError> {
        Client::with_credentials(addr, &Credentials::default())
    }

    /// A client of `addr` that sends `credentials.token` with every request
    /// and, for https, trusts `credentials.ca_file` (else the system's
    /// CAs) and presents the client certificate if given.
    pub fn with_credentials(addr: &str, credentials: &Credentials) -> Result<Client, ClientError> {
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
        let scheme = match uri.scheme_str() {
            Some(scheme @ ("http" | "https")) if uri.authority().is_some() => scheme,
            _ => {
                return Err(ClientError::Address {
                    addr: addr.to_owned(),
                    problem: "expected http://host:port or https://host:port".into(),
                })
            }
        };
        let token = credentials
            .token
            .as_deref()
            .map(http::HeaderValue::from_str)
            .transpose()
            .map_err(|_| {
                ClientError::Settings(
                    "the ACL token contains characters a header cannot carry".into(),
                )
            })?
            .map(|mut value| {
                value.set_sensitive(true);
                value
            });
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let tls = tls::client_config(scheme == "https", credentials)?;
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let builder = match &credentials.tls_server_name {
            Some(name) => {
                let name = rustls_pki_types::ServerName::try_from(name.clone())
                    .map_err(|e| ClientError::Settings(format!("TLS server name {name:?}: {e}")))?;
                builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
            }
            None => builder,
        };
        let connector = builder.enable_http1().wrap_connector(connector);
        Ok(Client {
            base: format!("{scheme}://{}", uri.authority().expect("checked above")),
            token,
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
        let response = self.dispatch(method, path, body).await?;
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

    /// A GET whose answer's body is read only up to `max_bytes` (longer is
    /// [`ClientError::TooLarge`]), for servers not trusted to be brief.
    pub async fn get_bounded(
        &self,
        path: &str,
        max_bytes: usize,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let response = self.dispatch(Method::GET, path, None).await?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), max_bytes)
            .collect()
            .await
            .map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(source) => ClientError::Body {
                    addr: self.base.clone(),
                    source: *source,
                },
                Err(_) => ClientError::TooLarge {
                    addr: self.base.clone(),
                    max: max_bytes,
                },
            })?
            .to_bytes();
        Ok((status, body))
    }

    /// Builds the request (JSON body, the token) and sends it: the answer's
    /// head, its body still to be read.
    async fn dispatch(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<http::Response<hyper::body::Incoming>, ClientError> {
        let uri = format!("{}{}", self.base, path);
        let mut request = Request::builder().method(method).uri(&uri);
        if body.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        if let Some(token) = &self.token {
            request = request.header(TOKEN_HEADER, token.clone());
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| ClientError::Address {
                addr: uri.clone(),
                problem: e.to_string(),
            })?;
        self.http
            .request(request)
            .await
            .map_err(|source| ClientError::Transport {
                addr: self.base.clone(),
                source,
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
