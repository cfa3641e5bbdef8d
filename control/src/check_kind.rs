//! How a check definition (exactly one of TTL, HTTP, TCP or AliasService,
//! with its interval and timeout) is validated into what the check runner does.
//! Errors name the definition's field, as the API reports them.

use std::time::Duration;

use isthmus_api::catalog::CheckDefinition;
use isthmus_api::duration;

const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// What the agent does to decide a check's status.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    Ttl {
        ttl: Duration,
    },
    Http {
        url: http::Uri,
        method: http::Method,
        headers: Vec<(http::HeaderName, http::HeaderValue)>,
        interval: Duration,
        timeout: Duration,
    },
    Tcp {
        address: String,
        interval: Duration,
        timeout: Duration,
    },
    /// Mirrors the health of another service instance of this node (its
    /// checks and the node's), as Consul's alias checks do.
    Alias {
        service_id: String,
    },
}

/// A Go-style duration (`10s`, `1m30s`); the error names `field`.
pub fn parse_duration_field(field: &str, value: &str) -> Result<Duration, String> {
    duration::parse(value).map_err(|e| format!("{field}: {e}"))
}

/// Validates `def`; errors name it as `field` (`Check`, `Checks[1]`).
pub fn check_kind(def: &CheckDefinition, field: &str) -> Result<CheckKind, String> {
    let defined = [
        def.ttl.is_some(),
        def.http.is_some(),
        def.tcp.is_some(),
        def.alias_service.is_some(),
    ]
    .iter()
    .filter(|d| **d)
    .count();
    if defined != 1 {
        return Err(format!(
            "{field}: must define exactly one of TTL, HTTP, TCP or AliasService"
        ));
    }
    if let Some(service_id) = &def.alias_service {
        if service_id.is_empty() {
            return Err(format!("{field}.AliasService must name a service ID"));
        }
        return Ok(CheckKind::Alias {
            service_id: service_id.clone(),
        });
    }
    let timeout = match &def.timeout {
        Some(t) => parse_duration_field(&format!("{field}.Timeout"), t)?,
        None => DEFAULT_CHECK_TIMEOUT,
    };
    let interval = |kind: &str| -> Result<Duration, String> {
        let raw = def
            .interval
            .as_deref()
            .ok_or_else(|| format!("{field}: Interval is required for {kind} checks"))?;
        let interval = parse_duration_field(&format!("{field}.Interval"), raw)?;
        if interval < MIN_CHECK_INTERVAL {
            return Err(format!(
                "{field}.Interval: {raw} is shorter than the minimum of 100ms"
            ));
        }
        Ok(interval)
    };
    if let Some(ttl) = &def.ttl {
        let ttl = parse_duration_field(&format!("{field}.TTL"), ttl)?;
        if ttl.is_zero() {
            return Err(format!("{field}.TTL must be greater than zero"));
        }
        return Ok(CheckKind::Ttl { ttl });
    }
    if let Some(raw) = &def.http {
        let url: http::Uri = raw
            .parse()
            .map_err(|e| format!("{field}.HTTP: {raw:?} is not a valid URL: {e}"))?;
        if url.scheme_str() != Some("http") || url.authority().is_none() {
            return Err(format!(
                "{field}.HTTP: {raw:?} must be an absolute http:// URL (https checks are not supported yet)"
            ));
        }
        let method = match &def.method {
            Some(m) => http::Method::from_bytes(m.as_bytes())
                .map_err(|_| format!("{field}.Method: {m:?} is not a valid HTTP method"))?,
            None => http::Method::GET,
        };
        let mut headers = Vec::new();
        for (name, values) in &def.header {
            let header = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{field}.Header: {name:?} is not a valid header name"))?;
            for value in values {
                let value = http::HeaderValue::from_str(value)
                    .map_err(|_| format!("{field}.Header[{name}]: invalid value {value:?}"))?;
                headers.push((header.clone(), value));
            }
        }
        return Ok(CheckKind::Http {
            url,
            method,
            headers,
            interval: interval("HTTP")?,
            timeout,
        });
    }
    let address = def.tcp.clone().unwrap_or_default();
    let valid = address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !valid {
        return Err(format!("{field}.TCP: {address:?} must be host:port"));
    }
    Ok(CheckKind::Tcp {
        address,
        interval: interval("TCP")?,
        timeout,
    })
}

/// The `Type` a check of this kind shows in the API.
pub fn check_type(kind: &CheckKind) -> &'static str {
    match kind {
        CheckKind::Ttl { .. } => "ttl",
        CheckKind::Http { .. } => "http",
        CheckKind::Tcp { .. } => "tcp",
        CheckKind::Alias { .. } => "alias",
    }
}
