//! Evaluating a parsed expression against one JSON value, with bexpr's
//! semantics: lists part-way along a selector match when any element does,
//! an absent key compares like Consul's absent map key, and the value is
//! converted to the type of the field it meets (a bool, a number, a string).

use serde_json::Value;

use super::{Expr, FilterError, Match, MatchOp};

pub(super) fn expr(expr: &Expr, datum: &Value) -> Result<bool, FilterError> {
    match expr {
        Expr::Or(parts) => {
            for part in parts {
                if self::expr(part, datum)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Expr::And(parts) => {
            for part in parts {
                if !self::expr(part, datum)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Expr::Not(inner) => Ok(!self::expr(inner, datum)?),
        Expr::Match(m) => select(m, 0, datum),
    }
}

/// Follows the selector from segment `depth` on.
fn select(m: &Match, depth: usize, value: &Value) -> Result<bool, FilterError> {
    let Some(segment) = m.selector.0.get(depth) else {
        return apply(m, value);
    };
    match value {
        Value::Object(fields) => match fields.get(segment) {
            Some(child) => select(m, depth + 1, child),
            None => Ok(absent(m.op)),
        },
        // A list on the way: any element may match (the same segment
        // applies to each element).
        Value::Array(items) => {
            for item in items {
                if select(m, depth, item)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Value::Null => Ok(absent(m.op)),
        other => Err(FilterError::NotNestable {
            selector: m.selector.0[..depth].join("."),
            kind: kind(other),
        }),
    }
}

/// What a comparison with nothing answers: nothing equals, contains or
/// matches anything, and it is empty.
fn absent(op: MatchOp) -> bool {
    op.is_negated() ^ matches!(op, MatchOp::IsEmpty | MatchOp::IsNotEmpty)
}

fn apply(m: &Match, value: &Value) -> Result<bool, FilterError> {
    if value.is_null() {
        return Ok(absent(m.op));
    }
    let raw = m.value.as_ref().map_or("", |v| v.raw.as_str());
    let unsupported = || FilterError::Unsupported {
        operator: m.op.keyword(),
        kind: kind(value),
        selector: m.selector.to_string(),
    };
    let positive = match m.op {
        MatchOp::Equal | MatchOp::NotEqual => match value {
            Value::Array(_) | Value::Object(_) => return Err(unsupported()),
            scalar => equal(m, scalar, raw)?,
        },
        MatchOp::In | MatchOp::NotIn | MatchOp::Contains | MatchOp::NotContains => match value {
            Value::String(s) => s.contains(raw),
            Value::Object(fields) => fields.contains_key(raw),
            // Elements of another type than the value never equal it
            // (bexpr skips the ones it cannot convert the value for).
            Value::Array(items) => items
                .iter()
                .any(|item| !item.is_null() && equal(m, item, raw).unwrap_or(false)),
            _ => return Err(unsupported()),
        },
        MatchOp::IsEmpty | MatchOp::IsNotEmpty => match value {
            Value::String(s) => s.is_empty(),
            Value::Array(items) => items.is_empty(),
            Value::Object(fields) => fields.is_empty(),
            _ => return Err(unsupported()),
        },
        MatchOp::Matches | MatchOp::NotMatches => match (value, m.value.as_ref()) {
            (Value::String(s), Some(v)) => match &v.regex {
                Some(regex) => regex.is_match(s),
                None => return Err(unsupported()),
            },
            _ => return Err(unsupported()),
        },
    };
    Ok(positive ^ m.op.is_negated())
}

/// `raw` converted to the scalar's type and compared with it.
fn equal(m: &Match, scalar: &Value, raw: &str) -> Result<bool, FilterError> {
    let bad = |kind: &'static str| FilterError::BadValue {
        value: raw.to_owned(),
        selector: m.selector.to_string(),
        kind,
    };
    Ok(match scalar {
        Value::String(s) => s == raw,
        Value::Bool(b) => *b == parse_bool(raw).ok_or_else(|| bad("bool"))?,
        Value::Number(n) => {
            if let Some(field) = n.as_i64() {
                field == raw.parse::<i64>().map_err(|_| bad("integer"))?
            } else if let Some(field) = n.as_u64() {
                field == raw.parse::<u64>().map_err(|_| bad("integer"))?
            } else {
                let wanted: f64 = raw.parse().map_err(|_| bad("number"))?;
                n.as_f64() == Some(wanted)
            }
        }
        _ => false,
    })
}

/// Go's `strconv.ParseBool`.
fn parse_bool(raw: &str) -> Option<bool> {
    match raw {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}
