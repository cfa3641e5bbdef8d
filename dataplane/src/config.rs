//! What both roles' settings have in common: the config-file loader, the
//! one layering pattern ("defaults, then file, then flags"), and the rule
//! for the address a role advertises in the catalog.
//!
//! Layering: each source (the config file, the flags) becomes one *layer*
//! in which every setting is optional, declared with [`settings_layer!`].
//! `flags.over(file)` keeps the higher layer's value field by field, and the
//! role's `finish` fills in its defaults and validates.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;

/// A setting that is missing, malformed or out of range, worded for the
/// operator (it names the flag or key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Declares a role's settings layer: a struct whose fields are all
/// `Option`s (written here without the `Option`), with `over`, which keeps
/// this layer's values and falls back to a lower layer's.
#[macro_export]
macro_rules! settings_layer {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$field_meta:meta])* $field_vis:vis $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default, Clone, PartialEq)]
        $vis struct $name {
            $( $(#[$field_meta])* $field_vis $field: Option<$ty>, )*
        }

        impl $name {
            /// This layer's values, falling back to `lower`'s.
            pub fn over(self, lower: $name) -> $name {
                $name { $( $field: self.$field.or(lower.$field), )* }
            }
        }
    };
}

/// Reads an `.hcl` or `.json` settings file (by extension; anything else
/// is read as HCL) into the role's file schema.
pub fn load_file<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("reading config file {}: {e}", path.display())))?;
    let is_json = path.extension().is_some_and(|e| e == "json");
    let parsed = if is_json {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    } else {
        hcl::from_str(&text).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))
}

/// A Go duration from a config file's `key`, if set.
pub fn file_duration(key: &str, value: Option<String>) -> Result<Option<Duration>, ConfigError> {
    value
        .map(|v| isthmus_api::duration::parse(&v))
        .transpose()
        .map_err(|e| ConfigError(format!("{key}: {e}")))
}

/// A Go duration given as a flag's value (clap's `value_parser`).
pub fn flag_duration(text: &str) -> Result<Duration, String> {
    isthmus_api::duration::parse(text).map_err(|e| e.to_string())
}

/// The address a role registers in the catalog, which others dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertise {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Advertise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How a role words advertise errors.
#[derive(Debug, Clone, Copy)]
pub struct AdvertiseRule {
    /// The flag that binds the advertised listener (`--bind`).
    pub bind_flag: &'static str,
    /// Who dials the advertised address (`peers`).
    pub dialers: &'static str,
    /// Where the address ends up (`the address peering tokens should carry`).
    pub destination: &'static str,
}

impl AdvertiseRule {
    /// Works out the advertise address from the configured value and the
    /// address the listener actually bound. The catalog must never carry an
    /// unroutable address, so a wildcard is refused rather than guessed at.
    pub fn resolve(
        &self,
        configured: Option<&str>,
        bound: SocketAddr,
    ) -> Result<Advertise, ConfigError> {
        resolve_advertise(self, configured, bound)
    }
}

fn resolve_advertise(
    rule: &AdvertiseRule,
    configured: Option<&str>,
    bound: SocketAddr,
) -> Result<Advertise, ConfigError> {
    let Some(text) = configured.map(str::trim).filter(|t| !t.is_empty()) else {
        if bound.ip().is_unspecified() {
            return Err(ConfigError(format!(
                "{} {bound} is a wildcard address, which {} cannot dial: set --advertise \
                 <host:port> to {}",
                rule.bind_flag, rule.dialers, rule.destination
            )));
        }
        return Ok(Advertise {
            host: bound.ip().to_string(),
            port: bound.port(),
        });
    };
    let (host, port) = split_host_port(text)?;
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c == '/' || c == '@')
    {
        return Err(ConfigError(format!(
            "--advertise {text:?}: expected host:port"
        )));
    }
    if host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
        return Err(ConfigError(format!(
            "--advertise {text}: {host} is a wildcard address, which {} cannot dial",
            rule.dialers
        )));
    }
    Ok(Advertise {
        host: host.to_owned(),
        port: match port {
            Some(0) | None => bound.port(),
            Some(p) => p,
        },
    })
}

/// `host:port`, `[v6]:port`, `host`, `[v6]` or a bare IPv6 address.
fn split_host_port(text: &str) -> Result<(&str, Option<u16>), ConfigError> {
    let bad_port = |p: &str| ConfigError(format!("--advertise {text:?}: invalid port {p:?}"));
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| ConfigError(format!("--advertise {text:?}: missing ']'")))?;
        if after.is_empty() {
            return Ok((host, None));
        }
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| ConfigError(format!("--advertise {text:?}: expected [host]:port")))?;
        return Ok((host, Some(port.parse().map_err(|_| bad_port(port))?)));
    }
    match text.matches(':').count() {
        0 => Ok((text, None)),
        1 => {
            let (host, port) = text.rsplit_once(':').expect("one colon");
            Ok((host, Some(port.parse().map_err(|_| bad_port(port))?)))
        }
        _ => Ok((text, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: AdvertiseRule = AdvertiseRule {
        bind_flag: "--bind",
        dialers: "peers",
        destination: "the address peering tokens should carry",
    };

    #[test]
    fn wildcard_errors_name_the_role_s_flag_and_dialers() {
        let err = RULE
            .resolve(None, "0.0.0.0:8443".parse().unwrap())
            .unwrap_err();
        assert_eq!(
            err.0,
            "--bind 0.0.0.0:8443 is a wildcard address, which peers cannot dial: set --advertise \
             <host:port> to the address peering tokens should carry"
        );
        let err = RULE
            .resolve(Some("0.0.0.0:1"), "0.0.0.0:8443".parse().unwrap())
            .unwrap_err();
        assert_eq!(
            err.0,
            "--advertise 0.0.0.0:1: 0.0.0.0 is a wildcard address, which peers cannot dial"
        );
    }

    settings_layer! {
        struct Example {
            name: String,
            port: u16,
        }
    }

    #[test]
    fn a_higher_layer_wins_field_by_field() {
        let file = Example {
            name: Some("file".into()),
            port: Some(1),
        };
        let flags = Example {
            port: Some(2),
            ..Example::default()
        };
        let merged = flags.over(file);
        assert_eq!(merged.name.as_deref(), Some("file"));
        assert_eq!(merged.port, Some(2));
    }
}
