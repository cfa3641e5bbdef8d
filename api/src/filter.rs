//! Consul's filter expressions (`?filter=`, the go-bexpr language), parsed
//! and evaluated against the JSON an endpoint answers with.
//!
//! ```text
//! Service.Tags contains "v2" and ServiceMeta.env == prod
//! not (Checks.Status != passing) or Node matches "^web-[0-9]+$"
//! ```
//!
//! Selectors are dotted paths into one element of the response (a `["key"]`
//! index reaches map keys that are not identifiers), so they are exactly the
//! response's JSON field names. A list met part-way along a path matches
//! when any of its elements does (`Checks.Status == critical`), as in
//! bexpr. A path that leads nowhere (an absent map key, a `null`) compares
//! like Consul's absent map key: `==`, `contains`, `in`, `matches` and
//! `is not empty` are false, their negations true.
//!
//! Consul checks selectors against the Go type before it runs; isthmus
//! checks a selector's first field against the answer's type
//! ([`Filter::check_fields`], the names read from its `Deserialize`), and
//! evaluates the rest against the JSON it is about to send: a deeper field
//! that does not exist selects nothing, and a value that cannot be compared
//! with the field it meets (`Service.Port == abc`) is refused when it first
//! meets one. Input is bounded: [`MAX_EXPRESSION_BYTES`],
//! [`MAX_NESTING`], [`MAX_SELECTOR_SEGMENTS`] and [`MAX_REGEX_BYTES`].

mod eval;
mod fields;
mod parse;
#[cfg(test)]
mod tests;

use std::fmt;

use regex::Regex;

pub use fields::struct_fields;

/// Longer expressions are refused before parsing.
pub const MAX_EXPRESSION_BYTES: usize = 4096;
/// How deeply parentheses and `not` may nest.
pub const MAX_NESTING: usize = 32;
/// Segments in one selector (`a.b.c` has three).
pub const MAX_SELECTOR_SEGMENTS: usize = 32;
/// Length of a `matches` pattern.
pub const MAX_REGEX_BYTES: usize = 512;
/// The compiled size a `matches` pattern may reach (the regex crate's own
/// measure), so a short pattern cannot expand into a huge automaton.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// Why an expression was refused, or could not be applied to a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("expression is {len} bytes long, over the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("expression nests parentheses or \"not\" more than {max} levels deep")]
    TooDeep { max: usize },
    #[error("selector {selector:?} has more than {max} segments")]
    SelectorTooLong { selector: String, max: usize },
    /// Position as bexpr's parser reports it: line, column (both from 1) and
    /// the byte offset.
    #[error("{line}:{column} ({offset}): {message}")]
    Syntax {
        line: usize,
        column: usize,
        offset: usize,
        message: String,
    },
    /// bexpr's text for a selector naming no field of the type.
    #[error("Selector {0:?} is not valid")]
    UnknownSelector(String),
    #[error("Failed to compile regular expression {pattern:?}: {reason}")]
    Regex { pattern: String, reason: String },
    #[error("Cannot perform {operator} on a {kind} at selector {selector:?}")]
    Unsupported {
        operator: &'static str,
        kind: &'static str,
        selector: String,
    },
    #[error("Value {value:?} at selector {selector:?} is not a valid {kind}")]
    BadValue {
        value: String,
        selector: String,
        kind: &'static str,
    },
    #[error(
        "Value at selector {selector:?} with type {kind} does not support nested field selection"
    )]
    NotNestable {
        selector: String,
        kind: &'static str,
    },
}

/// A parsed expression, ready to test values.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    expr: Expr,
}

impl Filter {
    /// Parses `text`, refusing expressions over the bounds, and compiles the
    /// patterns of `matches` (a bad pattern is refused here, not per value).
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        if text.len() > MAX_EXPRESSION_BYTES {
            return Err(FilterError::TooLong {
                len: text.len(),
                max: MAX_EXPRESSION_BYTES,
            });
        }
        let expr = parse::expression(text)?;
        Ok(Filter { expr })
    }

    /// Whether `value` (one element of a response) passes the filter.
    pub fn matches(&self, value: &serde_json::Value) -> Result<bool, FilterError> {
        eval::expr(&self.expr, value)
    }

    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Refuses selectors whose first field is not one of `fields` (the
    /// JSON names of the type the filter will judge).
    pub fn check_fields(&self, fields: &[&str]) -> Result<(), FilterError> {
        fn walk(expr: &Expr, fields: &[&str]) -> Result<(), FilterError> {
            match expr {
                Expr::Or(parts) | Expr::And(parts) => {
                    parts.iter().try_for_each(|part| walk(part, fields))
                }
                Expr::Not(inner) => walk(inner, fields),
                Expr::Match(m) => match m.selector.0.first() {
                    Some(first) if !fields.contains(&first.as_str()) => {
                        Err(FilterError::UnknownSelector(first.clone()))
                    }
                    _ => Ok(()),
                },
            }
        }
        walk(&self.expr, fields)
    }

    /// Keeps the items that pass, each judged by its JSON form.
    pub fn retain<T: serde::Serialize>(&self, items: &mut Vec<T>) -> Result<(), FilterError> {
        let mut outcome = Ok(());
        items.retain(|item| {
            if outcome.is_err() {
                return false;
            }
            match serde_json::to_value(item) {
                Ok(json) => match self.matches(&json) {
                    Ok(keep) => keep,
                    Err(e) => {
                        outcome = Err(e);
                        false
                    }
                },
                // A type that does not serialize has nothing to select.
                Err(_) => false,
            }
        });
        outcome
    }
}

impl std::str::FromStr for Filter {
    type Err = FilterError;

    fn from_str(text: &str) -> Result<Filter, FilterError> {
        Filter::parse(text)
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

/// An expression's syntax tree. `and`/`or` chains are flat lists, so a long
/// chain costs no recursion.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Match(Match),
}

/// One comparison: a selector, an operator and (except for the emptiness
/// tests) a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub selector: Selector,
    pub op: MatchOp,
    pub value: Option<MatchValue>,
}

/// The operators, in the form they were written (`x in S` and
/// `S contains x` test the same thing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    /// `value in Selector`.
    In,
    /// `value not in Selector`.
    NotIn,
    /// `Selector contains value`.
    Contains,
    /// `Selector not contains value`.
    NotContains,
    IsEmpty,
    IsNotEmpty,
    Matches,
    NotMatches,
}

impl MatchOp {
    /// The operator as written between selector and value.
    pub fn keyword(self) -> &'static str {
        match self {
            MatchOp::Equal => "==",
            MatchOp::NotEqual => "!=",
            MatchOp::In => "in",
            MatchOp::NotIn => "not in",
            MatchOp::Contains => "contains",
            MatchOp::NotContains => "not contains",
            MatchOp::IsEmpty => "is empty",
            MatchOp::IsNotEmpty => "is not empty",
            MatchOp::Matches => "matches",
            MatchOp::NotMatches => "not matches",
        }
    }

    /// The negated operators answer the opposite of their positive twin.
    fn is_negated(self) -> bool {
        matches!(
            self,
            MatchOp::NotEqual
                | MatchOp::NotIn
                | MatchOp::NotContains
                | MatchOp::IsNotEmpty
                | MatchOp::NotMatches
        )
    }
}

/// A path into a JSON value: field names and map keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector(pub Vec<String>);

impl fmt::Display for Selector {
    /// Dotted, as bexpr prints selectors in its messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

impl Selector {
    /// The selector in a form that parses back to itself: `a.b["x y"]`.
    fn write_source(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            if i == 0 {
                f.write_str(segment)?;
            } else if parse::is_identifier(segment) || parse::is_index_digits(segment) {
                write!(f, ".{segment}")?;
            } else {
                f.write_str("[")?;
                write_quoted(f, segment)?;
                f.write_str("]")?;
            }
        }
        Ok(())
    }
}

/// The value side of a comparison, as written (bexpr converts it to the
/// field's type only when it meets the field). A `matches` pattern is
/// compiled once, at parse time.
#[derive(Debug, Clone)]
pub struct MatchValue {
    pub raw: String,
    regex: Option<Regex>,
}

impl MatchValue {
    fn new(raw: String) -> MatchValue {
        MatchValue { raw, regex: None }
    }

    fn compile(&mut self) -> Result<(), FilterError> {
        let refuse = |reason: String| FilterError::Regex {
            pattern: self.raw.clone(),
            reason,
        };
        if self.raw.len() > MAX_REGEX_BYTES {
            return Err(refuse(format!(
                "pattern is longer than the limit of {MAX_REGEX_BYTES} bytes"
            )));
        }
        let regex = regex::RegexBuilder::new(&self.raw)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| refuse(e.to_string()))?;
        self.regex = Some(regex);
        Ok(())
    }
}

impl PartialEq for MatchValue {
    fn eq(&self, other: &MatchValue) -> bool {
        self.raw == other.raw
    }
}

/// Writes `text` as a double-quoted literal the grammar reads back to the
/// same text. bexpr's double-quoted strings end at the first `"` whatever
/// precedes it, so a quote is written as `\x22`.
fn write_quoted(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in text.chars() {
        match c {
            '"' => f.write_str("\\x22")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => write!(f, "\\u{:04x}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

impl fmt::Display for Expr {
    /// Source text that parses back to the same tree.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, parts: &[Expr], word: &str| {
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    write!(f, " {word} ")?;
                }
                write!(f, "({part})")?;
            }
            Ok(())
        };
        match self {
            Expr::Or(parts) => join(f, parts, "or"),
            Expr::And(parts) => join(f, parts, "and"),
            Expr::Not(inner) => write!(f, "not ({inner})"),
            Expr::Match(m) => m.fmt(f),
        }
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.op, &self.value) {
            (MatchOp::In | MatchOp::NotIn, Some(value)) => {
                write_quoted(f, &value.raw)?;
                write!(f, " {} ", self.op.keyword())?;
                self.selector.write_source(f)
            }
            (_, value) => {
                self.selector.write_source(f)?;
                write!(f, " {}", self.op.keyword())?;
                if let Some(value) = value {
                    f.write_str(" ")?;
                    write_quoted(f, &value.raw)?;
                }
                Ok(())
            }
        }
    }
}
