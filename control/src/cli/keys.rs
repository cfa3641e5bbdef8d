//! Consul's service definition files use snake_case keys (`check_id`,
//! `deregister_critical_service_after`) while its HTTP API uses CamelCase
//! (`CheckID`); this converts the former to the latter.

use serde_json::{Map, Value};

/// Segments Consul spells as acronyms.
fn segment(word: &str) -> String {
    match word {
        "id" => "ID".into(),
        "http" => "HTTP".into(),
        "tcp" => "TCP".into(),
        "ttl" => "TTL".into(),
        "tls" => "TLS".into(),
        "grpc" => "GRPC".into(),
        "udp" => "UDP".into(),
        _ => {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => String::new(),
            }
        }
    }
}

/// `check_id` → `CheckID`; keys that already have capitals are kept.
pub fn camel_case(key: &str) -> String {
    if key.chars().any(|c| c.is_ascii_uppercase()) {
        return key.to_owned();
    }
    key.split('_').map(segment).collect()
}

/// Keys whose values are user data (names chosen by the user), kept verbatim.
fn is_user_map(camel_key: &str) -> bool {
    matches!(camel_key, "Meta" | "Header" | "Config" | "NodeMeta")
}

/// Converts every object key in `value`, except inside user-data maps.
pub fn to_api_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (key, inner) in map {
                let key = camel_case(&key);
                let inner = if is_user_map(&key) {
                    inner
                } else if key == "TaggedAddresses" {
                    // Keys are address names (lan, wan); their values are objects.
                    match inner {
                        Value::Object(tags) => Value::Object(
                            tags.into_iter().map(|(k, v)| (k, to_api_keys(v))).collect(),
                        ),
                        other => other,
                    }
                } else {
                    to_api_keys(inner)
                };
                out.insert(key, inner);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(to_api_keys).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn converts_consul_file_keys() {
        assert_eq!(camel_case("check_id"), "CheckID");
        assert_eq!(
            camel_case("deregister_critical_service_after"),
            "DeregisterCriticalServiceAfter"
        );
        assert_eq!(camel_case("destination_service_id"), "DestinationServiceID");
        assert_eq!(camel_case("ttl"), "TTL");
        assert_eq!(camel_case("Name"), "Name");
    }

    #[test]
    fn keeps_user_maps() {
        let v = to_api_keys(
            json!({"meta": {"my_key": "v"}, "tagged_addresses": {"lan": {"address": "a", "port": 1}}}),
        );
        assert_eq!(
            v,
            json!({"Meta": {"my_key": "v"}, "TaggedAddresses": {"lan": {"Address": "a", "Port": 1}}})
        );
    }
}
