//! The query parameters that narrow a list endpoint's answer, as Consul
//! takes them: `?filter=` (a bexpr expression, [`isthmus_api::filter`]),
//! `?tag=` (repeatable; an instance must carry every one, compared without
//! regard to case) and `?node-meta=key:value` (repeatable; the node's meta
//! must hold every pair; check lists apply it by the check's node, see
//! `nodes::retain_by_node_meta`).
//!
//! A handler takes [`ListQuery`] as an extractor, so a bad expression is
//! refused with 400 before any blocking wait, and narrows its result inside
//! its blocking query: the answer's index stays the index of what it read.

use std::collections::BTreeMap;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use isthmus_api::catalog::{AgentService, CatalogService, HealthCheck, Node, ServiceEntry};
use isthmus_api::filter::{struct_fields, Filter};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::ApiError;

/// How many `?tag=` and `?node-meta=` values one request may carry.
const MAX_TERMS: usize = 64;

/// `?filter=`, `?tag=` and `?node-meta=` of one request.
#[derive(Debug, Default)]
pub struct ListQuery {
    filter: Option<Filter>,
    tags: Vec<String>,
    node_meta: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequestParts<S> for ListQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::bad_request(format!("Invalid query string: {e}")))?;
        ListQuery::from_pairs(pairs)
    }
}

impl ListQuery {
    fn from_pairs(pairs: Vec<(String, String)>) -> Result<ListQuery, ApiError> {
        let mut query = ListQuery::default();
        let mut seen_filter = false;
        for (name, value) in pairs {
            match name.as_str() {
                // The first `filter` counts, as Go's `Query().Get` reads it;
                // an empty one filters nothing, as in Consul.
                "filter" if seen_filter => {}
                "filter" => {
                    seen_filter = true;
                    if !value.is_empty() {
                        query.filter = Some(Filter::parse(&value)?);
                    }
                }
                "tag" => query.tags.push(value),
                "node-meta" => {
                    let (key, wanted) = value.split_once(':').unwrap_or((&value, ""));
                    query.node_meta.push((key.to_owned(), wanted.to_owned()));
                }
                _ => {}
            }
        }
        if query.tags.len() + query.node_meta.len() > MAX_TERMS {
            return Err(ApiError::bad_request(format!(
                "too many tag and node-meta parameters: at most {MAX_TERMS}"
            )));
        }
        Ok(query)
    }

    /// Keeps the items that carry every `?tag=` and `?node-meta=` pair
    /// (where the endpoint's items have them) and pass `?filter=`.
    pub fn narrow<T: ListItem>(&self, items: &mut Vec<T>) -> Result<(), ApiError> {
        self.check_fields::<T>()?;
        if !self.tags.is_empty() {
            // Lower-cased on both sides, as Consul's catalog compares them.
            let wanted: Vec<String> = self.tags.iter().map(|t| t.to_lowercase()).collect();
            items.retain(|item| {
                item.tags().is_none_or(|have| {
                    wanted
                        .iter()
                        .all(|want| have.iter().any(|t| t.to_lowercase() == *want))
                })
            });
        }
        if self.wants_node_meta() {
            items.retain(|item| {
                item.node_meta()
                    .is_none_or(|meta| self.node_meta_matches(meta))
            });
        }
        if let Some(filter) = &self.filter {
            filter.retain(items)?;
        }
        Ok(())
    }

    /// Whether the request has `?node-meta=` pairs.
    pub fn wants_node_meta(&self) -> bool {
        !self.node_meta.is_empty()
    }

    /// Whether a node's `meta` holds every `?node-meta=` pair.
    pub fn node_meta_matches(&self, meta: &BTreeMap<String, String>) -> bool {
        self.node_meta
            .iter()
            .all(|(key, want)| meta.get(key) == Some(want))
    }

    /// A map answer (`/v1/agent/services`, `/v1/agent/checks`): the filter
    /// judges each value.
    pub fn narrow_map<T: Serialize>(
        &self,
        items: &mut BTreeMap<String, T>,
    ) -> Result<(), ApiError> {
        let Some(filter) = &self.filter else {
            return Ok(());
        };
        let mut outcome = Ok(());
        items.retain(|_, item| {
            if outcome.is_err() {
                return false;
            }
            let json = serde_json::to_value(item).unwrap_or_default();
            filter.matches(&json).unwrap_or_else(|e| {
                outcome = Err(e);
                false
            })
        });
        Ok(outcome?)
    }
}

impl ListQuery {
    /// Refuses a filter whose selectors start with a field `T` does not
    /// have, as Consul does whatever the data.
    fn check_fields<T: DeserializeOwned>(&self) -> Result<(), ApiError> {
        match (&self.filter, struct_fields::<T>()) {
            (Some(filter), Some(fields)) => Ok(filter.check_fields(fields)?),
            _ => Ok(()),
        }
    }
}

/// An element of a list answer, and what `?tag=` and `?node-meta=` read in
/// it (`None`: the endpoint does not take that parameter, as in Consul).
pub trait ListItem: Serialize + DeserializeOwned {
    fn tags(&self) -> Option<&[String]> {
        None
    }

    fn node_meta(&self) -> Option<&BTreeMap<String, String>> {
        None
    }
}

impl ListItem for CatalogService {
    fn tags(&self) -> Option<&[String]> {
        Some(&self.service_tags)
    }

    fn node_meta(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.node_meta)
    }
}

impl ListItem for ServiceEntry {
    fn tags(&self) -> Option<&[String]> {
        Some(&self.service.tags)
    }

    fn node_meta(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.node.meta)
    }
}

impl ListItem for Node {
    fn node_meta(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.meta)
    }
}

impl ListItem for HealthCheck {}

impl ListItem for AgentService {}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Result<ListQuery, ApiError> {
        ListQuery::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    fn row(tags: &[&str], rack: &str) -> CatalogService {
        CatalogService {
            service_tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            node_meta: BTreeMap::from([("rack".to_owned(), rack.to_owned())]),
            ..CatalogService::default()
        }
    }

    #[test]
    fn every_tag_must_match_whatever_its_case() {
        let mut rows = vec![row(&["v1", "primary"], "r1"), row(&["V1"], "r1")];
        query(&[("tag", "v1"), ("tag", "PRIMARY")])
            .unwrap()
            .narrow(&mut rows)
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].service_tags, ["v1", "primary"]);
    }

    #[test]
    fn node_meta_pairs_and_filters_combine() {
        let mut rows = vec![row(&["a"], "r1"), row(&["b"], "r2"), row(&["c"], "r1")];
        query(&[
            ("node-meta", "rack:r1"),
            ("filter", "ServiceTags contains c"),
        ])
        .unwrap()
        .narrow(&mut rows)
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].service_tags, ["c"]);
    }

    #[test]
    fn endpoints_without_tags_ignore_tag() {
        let mut checks = vec![HealthCheck::default()];
        query(&[("tag", "x")]).unwrap().narrow(&mut checks).unwrap();
        assert_eq!(checks.len(), 1);
    }

    #[test]
    fn bad_expressions_and_too_many_terms_are_400() {
        let e = query(&[("filter", "Service ==")]).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        let many: Vec<(&str, &str)> = vec![("tag", "t"); MAX_TERMS + 1];
        assert_eq!(
            query(&many).unwrap_err().status,
            axum::http::StatusCode::BAD_REQUEST
        );
        assert!(query(&[("filter", "")]).unwrap().filter.is_none());
        let first = query(&[("filter", "Port == 1"), ("filter", "not valid ==")]).unwrap();
        assert_eq!(first.filter.unwrap().to_string(), "Port == \"1\"");
    }
}
