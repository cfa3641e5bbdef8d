//! The JSON shapes of Consul's ACL API (`/v1/acl/*`): tokens, policies,
//! their list stubs and the bodies that create or update them, plus the
//! built-in IDs and the name rules Consul applies to policies and service
//! identities.
//!
//! Timestamps are RFC 3339 strings as Go writes them; `Hash` is base64 (Go
//! encodes `[]byte` so).

use serde::{Deserialize, Serialize};

/// The global-management policy every cluster has.
pub const GLOBAL_MANAGEMENT_POLICY_ID: &str = "00000000-0000-0000-0000-000000000001";
pub const GLOBAL_MANAGEMENT_POLICY_NAME: &str = "global-management";
/// Consul's description of the built-in management policy.
pub const GLOBAL_MANAGEMENT_POLICY_DESCRIPTION: &str =
    "Builtin Policy that grants unlimited access";
/// The built-in management policy's rules (what an `acl`-less reader sees;
/// the resolver treats the policy as management regardless).
pub const GLOBAL_MANAGEMENT_POLICY_RULES: &str = "acl = \"write\"\nagent_prefix \"\" {\n  policy = \"write\"\n}\nmesh = \"write\"\nnode_prefix \"\" {\n  policy = \"write\"\n}\noperator = \"write\"\npeering = \"write\"\nservice_prefix \"\" {\n  policy = \"write\"\n  intentions = \"write\"\n}\n";
/// The token a request without a token is treated as.
pub const ANONYMOUS_TOKEN_ACCESSOR_ID: &str = "00000000-0000-0000-0000-000000000002";
pub const ANONYMOUS_TOKEN_SECRET_ID: &str = "anonymous";
pub const ANONYMOUS_TOKEN_DESCRIPTION: &str = "Anonymous Token";
/// Consul's description of the token `PUT /v1/acl/bootstrap` creates.
pub const BOOTSTRAP_TOKEN_DESCRIPTION: &str = "Bootstrap Token (Global Management)";
/// Consul's description of the token made from `tokens.initial_management`.
pub const INITIAL_MANAGEMENT_TOKEN_DESCRIPTION: &str = "Initial Management Token";

/// A token's link to a policy (or a role): by ID, by name, or both. A
/// request may give either; stored links carry both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclLink {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(rename = "Name", default)]
    pub name: String,
}

/// The rules Consul synthesizes for a service (see `Rules::service_identity`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceIdentity {
    #[serde(default)]
    pub service_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
}

/// A node identity (node write on `NodeName`, service read everywhere).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeIdentity {
    #[serde(default)]
    pub node_name: String,
    #[serde(default)]
    pub datacenter: String,
}

/// A stored token, as `GET /v1/acl/token/:id` returns it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclToken {
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    #[serde(rename = "SecretID")]
    pub secret_id: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<AclLink>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<AclLink>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_identities: Vec<ServiceIdentity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_identities: Vec<NodeIdentity>,
    pub local: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<String>,
    pub create_time: String,
    pub hash: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// One entry of `GET /v1/acl/tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclTokenListStub {
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    #[serde(rename = "SecretID")]
    pub secret_id: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<AclLink>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<AclLink>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_identities: Vec<ServiceIdentity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_identities: Vec<NodeIdentity>,
    pub local: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<String>,
    pub create_time: String,
    pub hash: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl AclToken {
    pub fn stub(&self) -> AclTokenListStub {
        AclTokenListStub {
            accessor_id: self.accessor_id.clone(),
            secret_id: self.secret_id.clone(),
            description: self.description.clone(),
            policies: self.policies.clone(),
            roles: self.roles.clone(),
            service_identities: self.service_identities.clone(),
            node_identities: self.node_identities.clone(),
            local: self.local,
            expiration_time: self.expiration_time.clone(),
            create_time: self.create_time.clone(),
            hash: self.hash.clone(),
            create_index: self.create_index,
            modify_index: self.modify_index,
        }
    }
}

/// The body of `PUT /v1/acl/token` and `PUT /v1/acl/token/:id`. The
/// read-only fields a client may echo back from a read (`CreateTime`,
/// `Hash`, the indexes) are accepted and ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclTokenWrite {
    #[serde(rename = "AccessorID", default)]
    pub accessor_id: String,
    #[serde(rename = "SecretID", default)]
    pub secret_id: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub policies: Vec<AclLink>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub roles: Vec<AclLink>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub service_identities: Vec<ServiceIdentity>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub node_identities: Vec<NodeIdentity>,
    #[serde(default)]
    pub local: bool,
    /// RFC 3339; must be in the future.
    #[serde(default)]
    pub expiration_time: Option<String>,
    /// A Go duration (`"1h"`) or nanoseconds; turned into an
    /// `ExpirationTime` when the token is created.
    #[serde(default, with = "crate::duration::serde_opt")]
    #[serde(rename = "ExpirationTTL")]
    pub expiration_ttl: Option<std::time::Duration>,
    #[serde(default)]
    pub create_time: Option<serde_json::Value>,
    #[serde(default)]
    pub hash: Option<serde_json::Value>,
    #[serde(default)]
    pub create_index: Option<serde_json::Value>,
    #[serde(default)]
    pub modify_index: Option<serde_json::Value>,
    /// Enterprise fields Consul's OSS build accepts and ignores.
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub partition: Option<String>,
}

/// A stored policy, as `GET /v1/acl/policy/:id` returns it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclPolicy {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub description: String,
    pub rules: String,
    /// `null` when empty, as Go writes a nil slice.
    #[serde(default)]
    pub datacenters: Option<Vec<String>>,
    pub hash: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// One entry of `GET /v1/acl/policies` (no `Rules`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclPolicyListStub {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub datacenters: Option<Vec<String>>,
    pub hash: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl AclPolicy {
    pub fn stub(&self) -> AclPolicyListStub {
        AclPolicyListStub {
            id: self.id.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            datacenters: self.datacenters.clone(),
            hash: self.hash.clone(),
            create_index: self.create_index,
            modify_index: self.modify_index,
        }
    }
}

/// The body of `PUT /v1/acl/policy` and `PUT /v1/acl/policy/:id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclPolicyWrite {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub rules: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub datacenters: Vec<String>,
    #[serde(default)]
    pub hash: Option<serde_json::Value>,
    #[serde(default)]
    pub create_index: Option<serde_json::Value>,
    #[serde(default)]
    pub modify_index: Option<serde_json::Value>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub partition: Option<String>,
}

/// Go decodes `null` into an empty slice; serde would refuse it.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Longest policy name Consul accepts.
pub const MAX_POLICY_NAME_LEN: usize = 128;
/// Longest service identity name Consul accepts.
pub const MAX_SERVICE_IDENTITY_NAME_LEN: usize = 256;

/// Consul's policy names: 1–128 of `[A-Za-z0-9_-]`.
pub fn is_valid_policy_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_POLICY_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Consul's service (and node) identity names: lowercase alphanumerics,
/// `-` and `_`, starting and ending with an alphanumeric, at most 256.
pub fn is_valid_service_identity_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= MAX_SERVICE_IDENTITY_NAME_LEN
        && bytes.first().is_some_and(edge)
        && bytes.last().is_some_and(edge)
        && bytes.iter().all(|b| edge(b) || *b == b'-' || *b == b'_')
}

mod schemas {
    //! The request bodies' key schemas (see [`crate::consul_json`]).
    use crate::consul_json::{value, ConsulBody, Field, Schema, Shape};

    use super::{AclPolicyWrite, AclTokenWrite};

    const LINK: Schema = Schema::closed(&[value("ID"), value("Name")]);
    const SERVICE_IDENTITY: Schema = Schema::closed(&[value("ServiceName"), value("Datacenters")]);
    const NODE_IDENTITY: Schema = Schema::closed(&[value("NodeName"), value("Datacenter")]);

    const fn list_of(name: &'static str, schema: &'static Schema) -> Field {
        crate::consul_json::field(name, Shape::ListOf(schema))
    }

    const TOKEN_WRITE: Schema = Schema::closed(&[
        value("AccessorID"),
        value("SecretID"),
        value("Description"),
        list_of("Policies", &LINK),
        list_of("Roles", &LINK),
        list_of("ServiceIdentities", &SERVICE_IDENTITY),
        list_of("NodeIdentities", &NODE_IDENTITY),
        value("Local"),
        value("ExpirationTime"),
        value("ExpirationTTL"),
        value("CreateTime"),
        value("Hash"),
        value("CreateIndex"),
        value("ModifyIndex"),
        value("Namespace"),
        value("Partition"),
    ]);

    const POLICY_WRITE: Schema = Schema::closed(&[
        value("ID"),
        value("Name"),
        value("Description"),
        value("Rules"),
        value("Datacenters"),
        value("Hash"),
        value("CreateIndex"),
        value("ModifyIndex"),
        value("Namespace"),
        value("Partition"),
    ]);

    impl ConsulBody for AclTokenWrite {
        const SCHEMA: &'static Schema = &TOKEN_WRITE;
    }

    impl ConsulBody for AclPolicyWrite {
        const SCHEMA: &'static Schema = &POLICY_WRITE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consul_json;

    #[test]
    fn token_write_accepts_consul_spellings() {
        let body = br#"{"description":"d","Policies":[{"name":"p"}],
            "service_identities":[{"ServiceName":"web"}],"ExpirationTTL":"1h",
            "CreateIndex":3,"Roles":null}"#;
        let token: AclTokenWrite = consul_json::from_slice(body).unwrap();
        assert_eq!(token.description, "d");
        assert_eq!(token.policies[0].name, "p");
        assert_eq!(token.service_identities[0].service_name, "web");
        assert_eq!(
            token.expiration_ttl,
            Some(std::time::Duration::from_secs(3600))
        );
        let err = consul_json::from_slice::<AclTokenWrite>(br#"{"Polcies":[]}"#).unwrap_err();
        assert!(err.to_string().contains("Polcies"), "{err}");
    }

    #[test]
    fn token_json_omits_empty_lists_like_consul() {
        let token = AclToken {
            accessor_id: "a".into(),
            secret_id: "s".into(),
            create_time: "2026-01-01T00:00:00Z".into(),
            ..AclToken::default()
        };
        let json = serde_json::to_value(&token).unwrap();
        assert!(json.get("Policies").is_none());
        assert!(json.get("ExpirationTime").is_none());
        assert_eq!(json["Local"], false);
        let policy = serde_json::to_value(AclPolicy::default()).unwrap();
        assert!(policy["Datacenters"].is_null());
    }

    #[test]
    fn the_builtin_management_rules_parse() {
        crate::acl::Rules::parse(GLOBAL_MANAGEMENT_POLICY_RULES).unwrap();
    }

    #[test]
    fn names() {
        assert!(is_valid_policy_name("node-read_2"));
        for bad in ["", "a b", "a.b", &"a".repeat(129)] {
            assert!(!is_valid_policy_name(bad), "{bad}");
        }
        assert!(is_valid_service_identity_name("web"));
        assert!(is_valid_service_identity_name("web-1_a"));
        for bad in ["", "Web", "-web", "web-", "w.b", &"a".repeat(257)] {
            assert!(!is_valid_service_identity_name(bad), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn token_write_never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = consul_json::from_slice::<AclTokenWrite>(&body);
            let _ = consul_json::from_slice::<AclPolicyWrite>(&body);
        }
    }
}
