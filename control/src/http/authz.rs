//! The ACL token a request presents, resolved to its authorizer.
//!
//! Consul reads the token from `?token=`, then `X-Consul-Token`, then
//! `Authorization: Bearer`; a request with none is the anonymous token's.
//! Handlers take [`Authz`] as an extractor and ask it before acting.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use isthmus_api::acl::{Access, Authorizer, Resource};

use super::error::ApiError;
use super::State;

/// The request's authorizer (everything allowed while ACLs are disabled).
#[derive(Clone)]
pub struct Authz(pub Arc<Authorizer>);

impl Authz {
    /// `Ok` when the token may, else 403 with Consul's denial text.
    pub fn require(
        &self,
        resource: Resource,
        segment: &str,
        access: Access,
    ) -> Result<(), ApiError> {
        self.0
            .check(resource, segment, access)
            .map_err(ApiError::from)
    }

    pub fn allows(&self, resource: Resource, segment: &str, access: Access) -> bool {
        self.0.allows(resource, segment, access)
    }
}

impl FromRequestParts<State> for Authz {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Authz, ApiError> {
        let secret = request_token(&parts.headers, parts.uri.query());
        let authorizer = state.acl.resolve(secret.as_deref())?;
        Ok(Authz(authorizer))
    }
}

/// The token secret a request carries, in Consul's order of precedence.
pub fn request_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(query) = query {
        let from_query = url_token(query);
        if from_query.is_some() {
            return from_query;
        }
    }
    if let Some(value) = headers
        .get("x-consul-token")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
    {
        return Some(value.to_owned());
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn url_token(query: &str) -> Option<String> {
    let uri: axum::http::Uri = format!("/?{query}").parse().ok()?;
    let Query(params) = Query::<super::Params>::try_from_uri(&uri).ok()?;
    params.get("token").filter(|v| !v.is_empty()).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn query_then_header_then_bearer() {
        let all = headers(&[("x-consul-token", "h"), ("authorization", "Bearer b")]);
        assert_eq!(
            request_token(&all, Some("a=1&token=q")).as_deref(),
            Some("q")
        );
        assert_eq!(request_token(&all, Some("a=1")).as_deref(), Some("h"));
        let bearer = headers(&[("authorization", "bearer  b ")]);
        assert_eq!(request_token(&bearer, None).as_deref(), Some("b"));
        let basic = headers(&[("authorization", "Basic xyz")]);
        assert_eq!(request_token(&basic, None), None);
        assert_eq!(request_token(&HeaderMap::new(), Some("token=")), None);
        assert_eq!(
            request_token(&HeaderMap::new(), Some("token=a%2Bb")).as_deref(),
            Some("a+b")
        );
    }
}
