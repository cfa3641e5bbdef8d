//! The ACL token a request presents, resolved to its authorizer.
//!
//! Consul reads the token from `?token=`, then `X-Consul-Token`, then
//! `Authorization: Bearer`; a request with none is the anonymous token's.
//! Handlers take [`Authz`] as an extractor and ask it before acting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::response::Response;
use isthmus_api::acl::{Access, Authorizer, Resource};

pub use crate::acl_filter::{
    check_readable, entry_readable, node_readable, row_readable, service_readable,
};

use super::error::ApiError;
use super::State;

/// The request's authorizer (everything allowed while ACLs are disabled),
/// and whether a read's results were narrowed by it.
pub struct Authz {
    authorizer: Arc<Authorizer>,
    /// Consul tells only a caller that presented a token that results
    /// were filtered (the anonymous caller learns nothing from it).
    token_presented: bool,
    filtered: AtomicBool,
}

impl Authz {
    pub fn new(authorizer: Arc<Authorizer>, token_presented: bool) -> Authz {
        Authz {
            authorizer,
            token_presented,
            filtered: AtomicBool::new(false),
        }
    }

    pub fn authorizer(&self) -> &Authorizer {
        &self.authorizer
    }

    /// Keeps the items `readable` allows, remembering whether any went.
    pub fn retain<T>(&self, items: &mut Vec<T>, readable: impl Fn(&Authorizer, &T) -> bool) {
        // ACLs off or a management token: nothing to look at per item.
        if self.authorizer.is_unrestricted() {
            return;
        }
        let before = items.len();
        items.retain(|item| readable(&self.authorizer, item));
        if items.len() != before {
            self.filtered.store(true, Ordering::Relaxed);
        }
    }

    /// Keeps the map entries `readable` allows, remembering whether any went.
    pub fn retain_map<K: Ord, V>(
        &self,
        items: &mut std::collections::BTreeMap<K, V>,
        readable: impl Fn(&Authorizer, &K, &V) -> bool,
    ) {
        if self.authorizer.is_unrestricted() {
            return;
        }
        let before = items.len();
        items.retain(|key, value| readable(&self.authorizer, key, value));
        if items.len() != before {
            self.filtered.store(true, Ordering::Relaxed);
        }
    }

    /// Records that something was left out of the answer.
    pub fn mark_filtered(&self) {
        self.filtered.store(true, Ordering::Relaxed);
    }

    /// Starts a fresh run of a (blocking) query.
    pub fn reset_filtered(&self) {
        self.filtered.store(false, Ordering::Relaxed);
    }

    /// Sets `X-Consul-Results-Filtered-By-ACLs` as Consul does.
    pub fn annotate(&self, mut response: Response) -> Response {
        if self.token_presented && self.filtered.load(Ordering::Relaxed) {
            response.headers_mut().insert(
                "x-consul-results-filtered-by-acls",
                HeaderValue::from_static("true"),
            );
        }
        response
    }

    pub fn service_read(&self, name: &str) -> bool {
        self.allows(Resource::Service, name, Access::Read)
    }

    pub fn node_read(&self, name: &str) -> bool {
        self.allows(Resource::Node, name, Access::Read)
    }

    /// `Ok` when the token may, else 403 with Consul's denial text.
    pub fn require(
        &self,
        resource: Resource,
        segment: &str,
        access: Access,
    ) -> Result<(), ApiError> {
        self.authorizer
            .check(resource, segment, access)
            .map_err(ApiError::from)
    }

    pub fn allows(&self, resource: Resource, segment: &str, access: Access) -> bool {
        self.authorizer.allows(resource, segment, access)
    }
}

impl FromRequestParts<State> for Authz {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Authz, ApiError> {
        let secret = request_token(&parts.headers, &parts.uri);
        let authorizer = state.acl.resolve(secret.as_deref())?;
        Ok(Authz::new(authorizer, secret.is_some()))
    }
}

/// The token secret a request carries, in Consul's order of precedence.
pub fn request_token(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    if let Some(token) = url_token(uri) {
        return Some(token);
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

fn url_token(uri: &Uri) -> Option<String> {
    uri.query()?;
    let Query(params) = Query::<super::Params>::try_from_uri(uri).ok()?;
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

    fn uri(text: &str) -> Uri {
        text.parse().unwrap()
    }

    #[test]
    fn query_then_header_then_bearer() {
        let all = headers(&[("x-consul-token", "h"), ("authorization", "Bearer b")]);
        assert_eq!(
            request_token(&all, &uri("/p?a=1&token=q")).as_deref(),
            Some("q")
        );
        assert_eq!(request_token(&all, &uri("/p?a=1")).as_deref(), Some("h"));
        let bearer = headers(&[("authorization", "bearer  b ")]);
        assert_eq!(request_token(&bearer, &uri("/p")).as_deref(), Some("b"));
        let basic = headers(&[("authorization", "Basic xyz")]);
        assert_eq!(request_token(&basic, &uri("/p")), None);
        assert_eq!(request_token(&HeaderMap::new(), &uri("/p?token=")), None);
        assert_eq!(
            request_token(&HeaderMap::new(), &uri("/p?token=a%2Bb")).as_deref(),
            Some("a+b")
        );
    }
}
