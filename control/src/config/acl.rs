//! The ACL settings: the file's `acl { ... }` block (Consul's keys) and the
//! `--acl-*` flags, their layering and their checks.

use serde::Deserialize;

use super::Source;
use crate::acl::AclSettings;

/// Longest token secret accepted from the settings (Consul's are UUIDs).
const MAX_TOKEN_LEN: usize = 256;

/// `default_policy`: what no rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AclDefaultPolicy {
    Allow,
    Deny,
}

/// The file's `acl { ... }` block.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclBlock {
    pub enabled: Option<bool>,
    pub default_policy: Option<AclDefaultPolicy>,
    /// Accepted for Consul configs; isthmus has no `/v1/agent/token` to
    /// persist tokens from, so it changes nothing.
    pub enable_token_persistence: Option<bool>,
    #[serde(default)]
    pub tokens: AclTokensBlock,
    /// The shortest lifetime a token may be created with, as a Go
    /// duration (isthmus's key; Consul fixes it at one minute) [default: 1m].
    pub token_min_expiration_ttl: Option<String>,
}

/// `acl { tokens { ... } }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclTokensBlock {
    /// Consul's older name is `master`.
    #[serde(alias = "master")]
    pub initial_management: Option<String>,
    pub agent: Option<String>,
}

/// The `--acl-*` flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AclFlags {
    /// Turns access control on: every API request needs a token allowing it
    /// (the file's `acl { enabled = true }`).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub acl_enabled: Option<bool>,
    /// What no rule of a token's policies covers: allow or deny
    /// (`acl { default_policy = "deny" }`) [default: allow, as Consul].
    #[arg(long, value_enum, value_name = "POLICY")]
    pub acl_default_policy: Option<AclDefaultPolicy>,
    /// The secret of a management token created at start when missing
    /// (`acl { tokens { initial_management = "..." } }`). A flag's value is
    /// visible to anyone who can list processes (`ps`): in production give
    /// it in the config file instead.
    #[arg(long, value_name = "SECRET")]
    pub acl_initial_management_token: Option<String>,
}

/// Applies the file's block, then the flags (either may be absent).
pub(super) fn apply(
    block: Option<AclBlock>,
    flags: AclFlags,
    settings: &mut AclSettings,
    source: Source,
) -> Result<(), String> {
    if let Some(block) = block {
        if let Some(v) = block.enabled {
            settings.enabled = v;
        }
        if let Some(v) = block.default_policy {
            settings.default_allow = v == AclDefaultPolicy::Allow;
        }
        if let Some(v) = block.token_min_expiration_ttl {
            let key = source.key("acl.token_min_expiration_ttl");
            let ttl = isthmus_api::duration::parse(&v).map_err(|e| format!("{key}: {e}"))?;
            if ttl < std::time::Duration::from_secs(1) {
                return Err(format!("{key} must be at least 1s"));
            }
            settings.min_expiration_ttl = ttl;
        }
        if let Some(v) = block.tokens.initial_management {
            settings.initial_management =
                Some(token(&source.key("acl.tokens.initial_management"), v)?);
        }
        if let Some(v) = block.tokens.agent {
            settings.agent_token = Some(token(&source.key("acl.tokens.agent"), v)?);
        }
    }
    if let Some(v) = flags.acl_enabled {
        settings.enabled = v;
    }
    if let Some(v) = flags.acl_default_policy {
        settings.default_allow = v == AclDefaultPolicy::Allow;
    }
    if let Some(v) = flags.acl_initial_management_token {
        settings.initial_management = Some(token("--acl-initial-management-token", v)?);
    }
    Ok(())
}

/// Consul accepts any string as a configured token (a non-UUID one only
/// draws a warning); isthmus bounds it and refuses blanks and the
/// anonymous token's reserved secret.
fn token(key: &str, value: String) -> Result<String, String> {
    let value = value.trim().to_owned();
    if value.is_empty() {
        return Err(format!("{key} cannot be empty"));
    }
    if value.len() > MAX_TOKEN_LEN {
        return Err(format!("{key} is longer than {MAX_TOKEN_LEN} bytes"));
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{key} cannot hold spaces or control characters"));
    }
    if value == isthmus_api::acl::wire::ANONYMOUS_TOKEN_SECRET_ID {
        return Err(format!("{key} cannot be the anonymous token's secret"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::super::{AgentConfig, Settings, Source};

    #[test]
    fn file_block_then_flags() {
        let mut config = AgentConfig::dev();
        assert!(!config.acl.enabled);
        assert!(config.acl.default_allow, "Consul's default is allow");
        let file: Settings = hcl::from_str(
            "acl {\n  enabled = true\n  default_policy = \"deny\"\n  token_min_expiration_ttl = \"2s\"\n  enable_token_persistence = true\n  tokens {\n    initial_management = \"root\"\n    agent = \"a1\"\n  }\n}\n",
        )
        .unwrap();
        file.apply(&mut config, Source::File).unwrap();
        assert!(config.acl.enabled);
        assert!(!config.acl.default_allow);
        assert_eq!(config.acl.initial_management.as_deref(), Some("root"));
        assert_eq!(config.acl.agent_token.as_deref(), Some("a1"));
        assert_eq!(
            config.acl.min_expiration_ttl,
            std::time::Duration::from_secs(2)
        );

        let mut flags = Settings::default();
        flags.acl_flags.acl_default_policy = Some(super::AclDefaultPolicy::Allow);
        flags.acl_flags.acl_initial_management_token = Some("other".into());
        flags.apply(&mut config, Source::Flags).unwrap();
        assert!(config.acl.default_allow);
        assert_eq!(config.acl.initial_management.as_deref(), Some("other"));
    }

    #[test]
    fn bad_values_are_refused() {
        let err = hcl::from_str::<Settings>("acl {\n  default_policy = \"maybe\"\n}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("maybe"), "{err}");
        let err = hcl::from_str::<Settings>("acl {\n  tokens {\n    replication = \"x\"\n  }\n}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("replication"), "{err}");
        for bad in ["", "a b", "anonymous"] {
            let mut config = AgentConfig::dev();
            let mut flags = Settings::default();
            flags.acl_flags.acl_initial_management_token = Some(bad.into());
            let err = flags.apply(&mut config, Source::Flags).unwrap_err();
            assert!(err.contains("--acl-initial-management-token"), "{err}");
        }
    }
}
