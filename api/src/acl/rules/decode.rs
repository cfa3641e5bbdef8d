//! Reading rule text (HCL, or JSON when it starts with `{`) into raw rules,
//! before their values are validated. Refuses what Consul's decoder would
//! silently drop (unknown families and keys) and bounds the input.

use serde_json::Value;

use super::syntax::{self, Item, Node};
use super::{Family, Global, RawNamed, RawRules, RulesError, MAX_NAME_BYTES, MAX_RULE_COUNT};

/// The longest rule text accepted, in bytes.
pub const MAX_RULES_BYTES: usize = 64 * 1024;

fn parse_error(detail: impl std::fmt::Display) -> RulesError {
    RulesError(format!("Failed to parse ACL rules: {detail}"))
}

pub(crate) fn decode(text: &str) -> Result<RawRules, RulesError> {
    if text.len() > MAX_RULES_BYTES {
        return Err(RulesError(format!(
            "ACL rules are too long: {} bytes (at most {MAX_RULES_BYTES})",
            text.len()
        )));
    }
    let mut raw = RawRules::default();
    if text.trim().is_empty() {
        return Ok(raw);
    }
    if text.trim_start().starts_with('{') {
        let value: Value = serde_json::from_str(text).map_err(parse_error)?;
        decode_json(&value, &mut raw)?;
    } else {
        let items = syntax::parse(text).map_err(|e| parse_error(e.0))?;
        decode_hcl(items, &mut raw)?;
    }
    Ok(raw)
}

/// Where a decoded key belongs.
enum Keyword {
    Named(Family, bool),
    Global(Global),
}

fn keyword(key: &str) -> Result<Keyword, RulesError> {
    if let Some((family, prefix)) = Family::from_keyword(key) {
        Ok(Keyword::Named(family, prefix))
    } else if let Some(global) = Global::from_keyword(key) {
        Ok(Keyword::Global(global))
    } else {
        Err(parse_error(format!("unknown rule {key:?}")))
    }
}

fn set_global(raw: &mut RawRules, global: Global, value: String) -> Result<(), RulesError> {
    if raw.globals.iter().any(|(g, _)| *g == global) {
        return Err(duplicate(global.keyword()));
    }
    raw.globals.push((global, value));
    Ok(())
}

fn duplicate(key: &str) -> RulesError {
    parse_error(format!(
        "The argument {key:?} was already set. Each argument can only be defined once"
    ))
}

/// The `policy`/`intentions` of one named rule, from its (key, string) pairs.
fn push_named(
    raw: &mut RawRules,
    family: Family,
    prefix: bool,
    name: String,
    fields: Vec<(String, String)>,
) -> Result<(), RulesError> {
    let keyword = family.keyword(prefix);
    if raw.named.len() >= MAX_RULE_COUNT {
        return Err(RulesError(format!(
            "ACL rules hold too many rules (at most {MAX_RULE_COUNT})"
        )));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(RulesError(format!(
            "{keyword} name is too long: {} bytes (at most {MAX_NAME_BYTES})",
            name.len()
        )));
    }
    let mut policy = None;
    let mut intentions = None;
    for (key, value) in fields {
        // Consul's decoder matches field names in any letter case.
        let slot = match key.to_ascii_lowercase().as_str() {
            "policy" => &mut policy,
            "intentions" if family == Family::Service => &mut intentions,
            _ => {
                return Err(parse_error(format!(
                    "{keyword} {name:?}: unknown key {key:?}"
                )))
            }
        };
        if slot.is_some() {
            return Err(duplicate(&key));
        }
        *slot = Some(value);
    }
    raw.named.push(RawNamed {
        family,
        prefix,
        name,
        policy: policy.unwrap_or_default(),
        intentions,
    });
    Ok(())
}

fn decode_hcl(items: Vec<Item>, raw: &mut RawRules) -> Result<(), RulesError> {
    for item in items {
        let mut keys = item.keys.into_iter();
        let key = keys.next().unwrap_or_default();
        let rest: Vec<String> = keys.collect();
        match keyword(&key)? {
            Keyword::Global(global) => {
                if !rest.is_empty() || matches!(item.value, Node::Object(_)) {
                    return Err(parse_error(format!(
                        "{key} takes a value (`{key} = \"read\"`), not a block"
                    )));
                }
                set_global(raw, global, string_value(&key, item.value)?)?;
            }
            Keyword::Named(family, prefix) => match <[String; 1]>::try_from(rest) {
                // `service "web" { policy = "read" }`
                Ok([name]) => {
                    let fields = rule_fields(&key, &name, item.value)?;
                    push_named(raw, family, prefix, name, fields)?;
                }
                // The object form: `service = { "web" = { policy = "read" } }`.
                Err(rest) if rest.is_empty() => {
                    let Node::Object(by_name) = item.value else {
                        return Err(parse_error(format!(
                            "{key} takes a name and a block: {key} \"name\" {{ policy = \"read\" }}"
                        )));
                    };
                    for entry in by_name {
                        let [name] = <[String; 1]>::try_from(entry.keys)
                            .map_err(|_| parse_error(format!("{key} takes exactly one name")))?;
                        let fields = rule_fields(&key, &name, entry.value)?;
                        push_named(raw, family, prefix, name, fields)?;
                    }
                }
                Err(_) => return Err(parse_error(format!("{key} takes exactly one name"))),
            },
        }
    }
    Ok(())
}

/// The (key, value) pairs inside one rule's block.
fn rule_fields(key: &str, name: &str, value: Node) -> Result<Vec<(String, String)>, RulesError> {
    let Node::Object(items) = value else {
        return Err(parse_error(format!(
            "{key} {name:?} must be a block: {key} \"name\" {{ policy = \"read\" }}"
        )));
    };
    items
        .into_iter()
        .map(|item| {
            let [field] = <[String; 1]>::try_from(item.keys).map_err(|_| {
                parse_error(format!(
                    "{key} {name:?}: only policy and intentions may appear inside"
                ))
            })?;
            let value = string_value(&field, item.value)?;
            Ok((field, value))
        })
        .collect()
}

fn string_value(key: &str, value: Node) -> Result<String, RulesError> {
    match value {
        Node::Str(value) => Ok(value),
        _ => Err(parse_error(format!("{key} must be a string"))),
    }
}

fn decode_json(value: &Value, raw: &mut RawRules) -> Result<(), RulesError> {
    let Value::Object(top) = value else {
        return Err(parse_error("the rules must be an object"));
    };
    for (key, value) in top {
        match keyword(key)? {
            Keyword::Global(global) => {
                let Value::String(value) = value else {
                    return Err(parse_error(format!("{key} must be a string")));
                };
                set_global(raw, global, value.clone())?;
            }
            Keyword::Named(family, prefix) => {
                // HCL's JSON form allows a list of objects as well as one object.
                let objects: Vec<&Value> = match value {
                    Value::Array(items) => items.iter().collect(),
                    other => vec![other],
                };
                for object in objects {
                    let Value::Object(by_name) = object else {
                        return Err(parse_error(format!("{key} must be an object of names")));
                    };
                    for (name, rule) in by_name {
                        let Value::Object(rule) = rule else {
                            return Err(parse_error(format!("{key} {name:?} must be an object")));
                        };
                        let mut fields = Vec::new();
                        for (field, value) in rule {
                            let Value::String(value) = value else {
                                return Err(parse_error(format!("{field} must be a string")));
                            };
                            fields.push((field.clone(), value.clone()));
                        }
                        push_named(raw, family, prefix, name.clone(), fields)?;
                    }
                }
            }
        }
    }
    Ok(())
}
