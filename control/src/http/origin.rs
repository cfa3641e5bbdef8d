//! Keeps web pages from driving the API.
//!
//! - `Host` must name an IP address (any: DNS rebinding needs a DNS name,
//!   and an IP literal is what a client of an agent bound to 0.0.0.0 or a
//!   specific address uses), `localhost`, or a name the operator allowed
//!   (`--http-allowed-host`). A rebinding page's requests carry its own
//!   name (`Host: evil.example:8500`) and are refused, so it cannot read
//!   leaf keys.
//! - `Origin`, when present, must be the API's own origin: `http://` or
//!   `https://` followed by the request's (allowed) `Host`. A cross-origin
//!   page's requests carry its origin and are refused, so it can neither
//!   read nor write (`POST /v1/peering/establish`). The web UI's own
//!   same-origin requests pass.
//!
//! Clients that send no `Origin` (the CLI, curl, client libraries, the
//! gateways and sidecars) are unaffected as long as their `Host` passes.
//! Refusals are 403 with a plain-text reason, logged (once per burst) and
//! counted in `isthmus_http_requests_refused_total{reason}`.

use std::net::Ipv4Addr;

use axum::extract::{Request, State as Extract};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::State;
use crate::metrics::RequestRefusal;

pub async fn guard(Extract(state): Extract<State>, request: Request, next: Next) -> Response {
    match check(
        &state.config.http_allowed_hosts,
        request.headers(),
        request.uri(),
    ) {
        Ok(()) => next.run(request).await,
        Err((reason, message)) => {
            state.metrics.http_refused(reason);
            if let Some(count) = state.metrics.request_refusal_log.should_log() {
                tracing::warn!(
                    reason = reason.label(),
                    method = %request.method(),
                    path = %request.uri().path(),
                    refused = count,
                    "refusing an HTTP API request: {message}"
                );
            }
            (
                StatusCode::FORBIDDEN,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{message}\n"),
            )
                .into_response()
        }
    }
}

/// The request's `Host` (HTTP/1.1) or authority (HTTP/2).
fn host_of<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<&'a str> {
    match headers.get(header::HOST) {
        Some(value) => Some(value.to_str().unwrap_or("\u{fffd}")),
        None => uri.authority().map(|a| a.as_str()),
    }
}

/// The host part of `host[:port]` / `[v6]:port`, and whether it is an IP literal.
fn split_host(host: &str) -> (&str, bool) {
    if let Some(rest) = host.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return (host, false);
        };
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
        return (
            inside,
            port_ok && inside.parse::<std::net::Ipv6Addr>().is_ok(),
        );
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    (name, name.parse::<Ipv4Addr>().is_ok())
}

fn host_allowed(allowed: &[String], host: &str) -> bool {
    let (name, ip_literal) = split_host(host);
    if ip_literal {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| {
            let (a, _) = split_host(a);
            a.strip_suffix('.').unwrap_or(a).eq_ignore_ascii_case(name)
        })
}

pub(crate) fn check(
    allowed: &[String],
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<(), (RequestRefusal, String)> {
    let host = host_of(headers, uri);
    if let Some(host) = host {
        if !host_allowed(allowed, host) {
            return Err((
                RequestRefusal::Host,
                format!(
                    "Host {host:?} is not allowed: the API answers to IP addresses, localhost \
                     and the names given with --http-allowed-host (http_allowed_hosts)"
                ),
            ));
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("\u{fffd}");
    let same = host.is_some_and(|host| {
        ["http://", "https://"].iter().any(|scheme| {
            origin.len() == scheme.len() + host.len()
                && origin[..scheme.len()].eq_ignore_ascii_case(scheme)
                && origin
                    .get(scheme.len()..)
                    .is_some_and(|h| h.eq_ignore_ascii_case(host))
        })
    });
    if same {
        Ok(())
    } else {
        Err((
            RequestRefusal::Origin,
            format!(
                "cross-origin request refused: Origin {origin:?} is not this API's origin \
                 (web pages of other origins may not use the API)"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn verdict(host: Option<&str>, origin: Option<&str>, allowed: &[&str]) -> Option<&'static str> {
        let mut headers = HeaderMap::new();
        if let Some(h) = host {
            headers.insert(header::HOST, HeaderValue::from_str(h).unwrap());
        }
        if let Some(o) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        check(&allowed, &headers, &Uri::from_static("/v1/agent/self"))
            .err()
            .map(|(r, _)| r.label())
    }

    #[test]
    fn hosts() {
        for ok in [
            "127.0.0.1:8500",
            "10.1.2.3:8500",
            "10.1.2.3",
            "[::1]:8500",
            "[fe80::1]",
            "localhost:8500",
            "LOCALHOST",
            "localhost.:8500",
        ] {
            assert_eq!(verdict(Some(ok), None, &[]), None, "{ok}");
        }
        for bad in [
            "evil.example:8500",
            "evil.example",
            "127.0.0.1.nip.io:8500",
            "localhost.evil.example",
            "[::1",
            "",
        ] {
            assert_eq!(verdict(Some(bad), None, &[]), Some("host"), "{bad}");
        }
        assert_eq!(
            verdict(Some("consul.internal:8500"), None, &["consul.internal"]),
            None
        );
        assert_eq!(
            verdict(Some("Consul.Internal"), None, &["consul.internal:8500"]),
            None
        );
        assert_eq!(verdict(None, None, &[]), None, "HTTP/1.0 without Host");
    }

    #[test]
    fn origins() {
        let host = Some("127.0.0.1:8500");
        assert_eq!(verdict(host, Some("http://127.0.0.1:8500"), &[]), None);
        assert_eq!(verdict(host, Some("HTTPS://127.0.0.1:8500"), &[]), None);
        for bad in [
            "http://evil.example",
            "null",
            "http://127.0.0.1:8501",
            "http://127.0.0.1",
            "http://127.0.0.1:85000",
        ] {
            assert_eq!(verdict(host, Some(bad), &[]), Some("origin"), "{bad}");
        }
        assert_eq!(
            verdict(None, Some("http://127.0.0.1:8500"), &[]),
            Some("origin")
        );
    }
}
