//! L7 intentions: per-request permissions, compiled once and checked per HTTP request.

use std::borrow::Cow;

use http::header::{GetAll, HeaderValue};
use http::{HeaderMap, HeaderName, Method};

use super::MatchedIntention;
use crate::config_entry::{
    IntentionHttpHeaderPermission, IntentionHttpPermission, IntentionPermission,
};
use crate::http_path::NormalPath;

/// The permissions of the L7 intention that matched a connection.
#[derive(Debug)]
pub struct L7Rules {
    intention: MatchedIntention,
    /// In the entry's order: the first that matches a request decides.
    permissions: Box<[Permission]>,
    /// Decides requests no permission matches.
    default_allow: bool,
}

#[derive(Debug)]
struct Permission {
    allow: bool,
    /// `None` when the permission could not be compiled (an entry that skipped validation).
    conditions: Option<Conditions>,
}

/// All must hold for the permission to match.
#[derive(Debug)]
struct Conditions {
    path: Option<PathMatcher>,
    /// Empty means any method.
    methods: Box<[Method]>,
    headers: Box<[HeaderRule]>,
}

#[derive(Debug)]
enum PathMatcher {
    Exact(Box<str>),
    Prefix(Box<str>),
    /// Anchored at both ends at compile time.
    Regex(regex::Regex),
}

#[derive(Debug)]
struct HeaderRule {
    name: HeaderName,
    matcher: HeaderMatcher,
    invert: bool,
}

/// Header values need not be UTF-8, so they are matched as bytes.
#[derive(Debug)]
enum HeaderMatcher {
    Present,
    Exact(Box<[u8]>),
    Prefix(Box<[u8]>),
    Suffix(Box<[u8]>),
    /// Anchored at both ends at compile time.
    Regex(regex::bytes::Regex),
}

impl L7Rules {
    pub(super) fn compile(
        intention: MatchedIntention,
        permissions: &[IntentionPermission],
        default_allow: bool,
    ) -> L7Rules {
        let permissions = permissions
            .iter()
            .map(|permission| Permission {
                allow: permission.action.is_allow(),
                conditions: permission.http.as_ref().and_then(Conditions::compile),
            })
            .collect();
        L7Rules {
            intention,
            permissions,
            default_allow,
        }
    }

    /// The intention these rules belong to.
    pub fn intention(&self) -> &MatchedIntention {
        &self.intention
    }

    /// Whether one HTTP request is allowed. `path` is the request path
    /// without the query string, normalized ([`crate::http_path::normalize`]):
    /// `PathExact`, `PathPrefix` and `PathRegex` judge the path the
    /// application will serve, not one spelling of it (`//admin`,
    /// `/%61dmin`, `/x/../admin`). Only a repeated header that a rule
    /// inspects costs an allocation (its values are joined with `,`, as
    /// Envoy does).
    pub fn authorize(&self, method: &Method, path: &NormalPath<'_>, headers: &HeaderMap) -> bool {
        let path = path.as_str();
        self.permissions
            .iter()
            .find(|permission| permission.matches(method, path, headers))
            .map_or(self.default_allow, |permission| permission.allow)
    }
}

impl Permission {
    fn matches(&self, method: &Method, path: &str, headers: &HeaderMap) -> bool {
        match &self.conditions {
            Some(conditions) => conditions.matches(method, path, headers),
            // Fail closed: a broken deny matches everything, a broken allow nothing.
            None => !self.allow,
        }
    }
}

impl Conditions {
    /// `None` for anything validation would have refused, including an empty block.
    fn compile(http: &IntentionHttpPermission) -> Option<Conditions> {
        if http.is_empty() {
            return None;
        }
        let path = match (&http.path_exact, &http.path_prefix, &http.path_regex) {
            (None, None, None) => None,
            (Some(exact), None, None) => Some(PathMatcher::Exact(exact.as_str().into())),
            (None, Some(prefix), None) => Some(PathMatcher::Prefix(prefix.as_str().into())),
            (None, None, Some(pattern)) => Some(PathMatcher::Regex(
                regex::Regex::new(&anchored(pattern)).ok()?,
            )),
            _ => return None,
        };
        let methods = http
            .methods
            .iter()
            .map(|method| Method::from_bytes(method.as_bytes()).ok())
            .collect::<Option<_>>()?;
        let headers = http
            .header
            .iter()
            .map(HeaderRule::compile)
            .collect::<Option<_>>()?;
        Some(Conditions {
            path,
            methods,
            headers,
        })
    }

    fn matches(&self, method: &Method, path: &str, headers: &HeaderMap) -> bool {
        let path_matches = match &self.path {
            None => true,
            Some(PathMatcher::Exact(exact)) => path == &**exact,
            Some(PathMatcher::Prefix(prefix)) => path.starts_with(&**prefix),
            Some(PathMatcher::Regex(regex)) => regex.is_match(path),
        };
        path_matches
            && (self.methods.is_empty() || self.methods.contains(method))
            && self.headers.iter().all(|rule| rule.matches(headers))
    }
}

impl HeaderRule {
    fn compile(rule: &IntentionHttpHeaderPermission) -> Option<HeaderRule> {
        if rule.matcher_count() != 1 {
            return None;
        }
        let name = HeaderName::from_bytes(rule.name.as_bytes()).ok()?;
        let bytes = |text: &String| Box::<[u8]>::from(text.as_bytes());
        let matcher = if rule.present {
            HeaderMatcher::Present
        } else if let Some(exact) = &rule.exact {
            HeaderMatcher::Exact(bytes(exact))
        } else if let Some(prefix) = &rule.prefix {
            HeaderMatcher::Prefix(bytes(prefix))
        } else if let Some(suffix) = &rule.suffix {
            HeaderMatcher::Suffix(bytes(suffix))
        } else {
            let pattern = rule.regex.as_deref()?;
            HeaderMatcher::Regex(regex::bytes::Regex::new(&anchored(pattern)).ok()?)
        };
        Some(HeaderRule {
            name,
            matcher,
            invert: rule.invert,
        })
    }

    /// An absent header fails every matcher, `Present` included; `Invert` then flips the result.
    fn matches(&self, headers: &HeaderMap) -> bool {
        let matched = match header_value(headers.get_all(&self.name)) {
            None => false,
            Some(value) => self.matcher.matches(&value),
        };
        matched != self.invert
    }
}

impl HeaderMatcher {
    fn matches(&self, value: &[u8]) -> bool {
        match self {
            HeaderMatcher::Present => true,
            HeaderMatcher::Exact(exact) => value == &**exact,
            HeaderMatcher::Prefix(prefix) => value.starts_with(prefix),
            HeaderMatcher::Suffix(suffix) => value.ends_with(suffix),
            HeaderMatcher::Regex(regex) => regex.is_match(value),
        }
    }
}

/// The header's value; a repeated header's values joined with `,` so a rule
/// cannot be dodged by sending the header twice.
fn header_value<'h>(values: GetAll<'h, HeaderValue>) -> Option<Cow<'h, [u8]>> {
    let mut iter = values.iter();
    let first = iter.next()?;
    let Some(second) = iter.next() else {
        return Some(Cow::Borrowed(first.as_bytes()));
    };
    let mut joined = [first.as_bytes(), second.as_bytes()].join(&b","[..]);
    for value in iter {
        joined.push(b',');
        joined.extend_from_slice(value.as_bytes());
    }
    Some(Cow::Owned(joined))
}

/// The whole path or value must match, as in Envoy; `\A` and `\z` cannot be
/// loosened by flags inside the user's pattern.
fn anchored(pattern: &str) -> String {
    format!(r"\A(?:{pattern})\z")
}
