//! The grammar of bexpr expressions, written with winnow.
//!
//! ```text
//! input      = ws? or ws? EOF
//! or         = and (ws "or" ws and)*
//! and        = not (ws "and" ws not)*
//! not        = "not" ws not | "(" ws? or ws? ")" | match
//! match      = selector ws? ("==" | "!=") ws? value
//!            | selector ws ("contains" | "not" ws "contains" | "matches" | "not" ws "matches") ws value
//!            | selector ws "is" ws ("empty" | "not" ws "empty")
//!            | value ws ("in" | "not" ws "in") ws selector
//! selector   = ident ("." ident | "." digits | "[" ws? string ws? "]")*
//! ident      = [a-zA-Z] [a-zA-Z0-9_/]*
//! value      = selector (as its dotted text) | number | string
//! number     = "-"? ("0" | [1-9][0-9]*) ("." [0-9]+)?   followed by ws, ")" or EOF
//! string     = "`" raw "`" | '"' go-escaped '"'
//! ```
//!
//! Ordered choice with backtracking, as bexpr's PEG grammar: `not` and the
//! keywords are only keywords where the grammar expects them, so a field
//! called `not` or `in` still works as a selector.

use winnow::ascii::digit1;
use winnow::combinator::{alt, cut_err, delimited, eof, fail, opt, peek, preceded, repeat};
use winnow::error::{ContextError, ModalResult, StrContext, StrContextValue};
use winnow::token::{one_of, take_till, take_while};
use winnow::Parser;

use super::{Expr, FilterError, Match, MatchOp, MatchValue, Selector};
use super::{MAX_NESTING, MAX_SELECTOR_SEGMENTS};

/// The context a parser leaves when nesting goes past [`MAX_NESTING`].
const TOO_DEEP: &str = "nesting";

/// Parses a whole expression and compiles its patterns.
pub(super) fn expression(text: &str) -> Result<Expr, FilterError> {
    let parsed = delimited(ws0, |i: &mut &str| or_expr(i, 0), ws0)
        .parse(text)
        .map_err(|e| syntax_error(text, e.offset(), e.inner()));
    let mut expr = parsed?;
    finish(&mut expr)?;
    Ok(expr)
}

fn syntax_error(text: &str, offset: usize, error: &ContextError) -> FilterError {
    let mut expected = Vec::new();
    for context in error.context() {
        match context {
            StrContext::Label(TOO_DEEP) => return FilterError::TooDeep { max: MAX_NESTING },
            StrContext::Expected(StrContextValue::Description(what)) => expected.push(*what),
            StrContext::Expected(StrContextValue::StringLiteral(what)) => expected.push(*what),
            _ => {}
        }
    }
    // winnow reports offsets on character boundaries; stay safe anyway.
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    let message = if expected.is_empty() {
        let near: String = text[offset..].chars().take(16).collect();
        if near.is_empty() {
            "unexpected end of expression".to_owned()
        } else {
            format!("no match found near {near:?}")
        }
    } else {
        format!("no match found, expected: {}", expected.join(" or "))
    };
    FilterError::Syntax {
        line,
        column,
        offset,
        message,
    }
}

/// Checks what the grammar cannot see (selector lengths) and compiles the
/// `matches` patterns, once.
fn finish(expr: &mut Expr) -> Result<(), FilterError> {
    match expr {
        Expr::Or(parts) | Expr::And(parts) => parts.iter_mut().try_for_each(finish),
        Expr::Not(inner) => finish(inner),
        Expr::Match(m) => {
            if m.selector.0.len() > MAX_SELECTOR_SEGMENTS {
                return Err(FilterError::SelectorTooLong {
                    selector: m.selector.to_string(),
                    max: MAX_SELECTOR_SEGMENTS,
                });
            }
            match (m.op, &mut m.value) {
                (MatchOp::Matches | MatchOp::NotMatches, Some(value)) => value.compile(),
                _ => Ok(()),
            }
        }
    }
}

fn expected(what: &'static str) -> StrContext {
    StrContext::Expected(StrContextValue::Description(what))
}

fn ws0<'i>(input: &mut &'i str) -> ModalResult<&'i str> {
    take_while(0.., is_space).parse_next(input)
}

fn ws1<'i>(input: &mut &'i str) -> ModalResult<&'i str> {
    take_while(1.., is_space).parse_next(input)
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn flatten(first: Expr, rest: Vec<Expr>, make: fn(Vec<Expr>) -> Expr) -> Expr {
    if rest.is_empty() {
        return first;
    }
    let mut parts = Vec::with_capacity(rest.len() + 1);
    parts.push(first);
    parts.extend(rest);
    make(parts)
}

fn or_expr(input: &mut &str, depth: usize) -> ModalResult<Expr> {
    let first = and_expr(input, depth)?;
    let rest: Vec<Expr> = repeat(
        0..,
        preceded((ws1, "or", ws1), |i: &mut &str| and_expr(i, depth)),
    )
    .parse_next(input)?;
    Ok(flatten(first, rest, Expr::Or))
}

fn and_expr(input: &mut &str, depth: usize) -> ModalResult<Expr> {
    let first = not_expr(input, depth)?;
    let rest: Vec<Expr> = repeat(
        0..,
        preceded((ws1, "and", ws1), |i: &mut &str| not_expr(i, depth)),
    )
    .parse_next(input)?;
    Ok(flatten(first, rest, Expr::And))
}

fn not_expr(input: &mut &str, depth: usize) -> ModalResult<Expr> {
    if depth > MAX_NESTING {
        return cut_err(fail.context(StrContext::Label(TOO_DEEP))).parse_next(input);
    }
    alt((
        preceded(("not", ws1), |i: &mut &str| not_expr(i, depth + 1))
            .map(|inner| Expr::Not(Box::new(inner))),
        delimited(
            ("(", ws0),
            |i: &mut &str| or_expr(i, depth + 1),
            cut_err((ws0, ")")).context(expected("\")\"")),
        ),
        match_expr.map(Expr::Match),
    ))
    .parse_next(input)
}

fn match_expr(input: &mut &str) -> ModalResult<Match> {
    let with_value = alt((
        (ws0, "==", ws0).value(MatchOp::Equal),
        (ws0, "!=", ws0).value(MatchOp::NotEqual),
        (ws1, "contains", ws1).value(MatchOp::Contains),
        (ws1, "not", ws1, "contains", ws1).value(MatchOp::NotContains),
        (ws1, "matches", ws1).value(MatchOp::Matches),
        (ws1, "not", ws1, "matches", ws1).value(MatchOp::NotMatches),
    ));
    let emptiness = alt((
        (ws1, "is", ws1, "empty").value(MatchOp::IsEmpty),
        (ws1, "is", ws1, "not", ws1, "empty").value(MatchOp::IsNotEmpty),
    ));
    let membership = alt((
        (ws1, "in", ws1).value(MatchOp::In),
        (ws1, "not", ws1, "in", ws1).value(MatchOp::NotIn),
    ));
    alt((
        (
            selector,
            with_value,
            cut_err(value).context(expected("a value")),
        )
            .map(|(selector, op, raw)| Match {
                selector,
                op,
                value: Some(MatchValue::new(raw)),
            }),
        (selector, emptiness).map(|(selector, op)| Match {
            selector,
            op,
            value: None,
        }),
        (
            value,
            membership,
            cut_err(selector).context(expected("a selector")),
        )
            .map(|(raw, op, selector)| Match {
                selector,
                op,
                value: Some(MatchValue::new(raw)),
            }),
        fail.context(expected(
            "a comparison such as `Selector == value`, `Selector is empty` or `value in Selector`",
        )),
    ))
    .parse_next(input)
}

fn selector(input: &mut &str) -> ModalResult<Selector> {
    let first = identifier.parse_next(input)?;
    let rest: Vec<String> = repeat(
        0..,
        alt((
            preceded(".", identifier),
            preceded(".", digit1).map(str::to_owned),
            delimited(("[", ws0), string_literal, (ws0, "]")),
        )),
    )
    .parse_next(input)?;
    let mut path = Vec::with_capacity(rest.len() + 1);
    path.push(first);
    path.extend(rest);
    Ok(Selector(path))
}

fn identifier(input: &mut &str) -> ModalResult<String> {
    (
        one_of(|c: char| c.is_ascii_alphabetic()),
        take_while(0.., is_identifier_char),
    )
        .take()
        .map(str::to_owned)
        .parse_next(input)
}

fn is_identifier_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '/'
}

/// Whether `segment` can follow a `.` in a selector as written.
pub(super) fn is_identifier(segment: &str) -> bool {
    let mut chars = segment.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic()) && chars.all(is_identifier_char)
}

/// Whether `segment` is a `.0`-style index.
pub(super) fn is_index_digits(segment: &str) -> bool {
    !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit())
}

/// A value as written: an unquoted word (bexpr reads it as a selector and
/// uses its dotted text), a number or a string literal.
fn value(input: &mut &str) -> ModalResult<String> {
    alt((selector.map(|s| s.0.join(".")), number, string_literal)).parse_next(input)
}

fn number(input: &mut &str) -> ModalResult<String> {
    let text = (
        opt("-"),
        alt((
            "0",
            (
                one_of('1'..='9'),
                take_while(0.., |c: char| c.is_ascii_digit()),
            )
                .take(),
        )),
        opt((".", digit1)),
    )
        .take()
        .parse_next(input)?;
    peek(alt((ws1, ")", eof))).parse_next(input)?;
    Ok(text.to_owned())
}

fn string_literal(input: &mut &str) -> ModalResult<String> {
    alt((
        delimited(
            "`",
            take_till(0.., '`'),
            cut_err("`").context(expected("a closing '`'")),
        )
        .map(|raw: &str| raw.replace('\r', "")),
        delimited(
            "\"",
            cut_err(take_till(0.., '"').verify_map(unescape))
                .context(expected("a string with valid escapes on one line")),
            cut_err("\"").context(expected("a closing '\"'")),
        ),
    ))
    .parse_next(input)
}

/// Go's escapes in a double-quoted string (what bexpr's `strconv.Unquote`
/// accepts), with the result required to be UTF-8. `None` for a bad escape
/// or a raw newline.
fn unescape(body: &str) -> Option<String> {
    if !body.contains('\\') {
        return (!body.contains('\n')).then(|| body.to_owned());
    }
    let mut bytes = Vec::with_capacity(body.len());
    let mut chars = body.chars();
    let hex = |chars: &mut std::str::Chars<'_>, n: usize| -> Option<u32> {
        let digits: String = chars.by_ref().take(n).collect();
        if digits.len() != n {
            return None;
        }
        u32::from_str_radix(&digits, 16).ok()
    };
    while let Some(c) = chars.next() {
        if c == '\n' {
            return None;
        }
        if c != '\\' {
            let mut buf = [0; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let escaped = chars.next()?;
        let simple = match escaped {
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            '"' => Some(b'"'),
            _ => None,
        };
        if let Some(byte) = simple {
            bytes.push(byte);
            continue;
        }
        match escaped {
            'x' => bytes.push(u8::try_from(hex(&mut chars, 2)?).ok()?),
            'u' | 'U' => {
                let code = hex(&mut chars, if escaped == 'u' { 4 } else { 8 })?;
                let mut buf = [0; 4];
                bytes.extend_from_slice(char::from_u32(code)?.encode_utf8(&mut buf).as_bytes());
            }
            '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                let digits = format!("{escaped}{rest}");
                if digits.len() != 3 {
                    return None;
                }
                bytes.push(u8::try_from(u32::from_str_radix(&digits, 8).ok()?).ok()?);
            }
            _ => return None,
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_escapes() {
        assert_eq!(unescape("a\\tb").as_deref(), Some("a\tb"));
        assert_eq!(unescape("\\x22q\\x22").as_deref(), Some("\"q\""));
        assert_eq!(unescape("\\u00e9\\U0001F600").as_deref(), Some("é😀"));
        assert_eq!(unescape("\\101").as_deref(), Some("A"));
        assert_eq!(unescape("\\q"), None);
        assert_eq!(unescape("trailing\\"), None);
        assert_eq!(unescape("line\nbreak"), None);
        assert_eq!(unescape("\\xff"), None, "not UTF-8");
    }

    #[test]
    fn errors_carry_positions() {
        let e = expression("Service.Tags ==").unwrap_err();
        assert!(
            matches!(e, FilterError::Syntax { line: 1, .. }),
            "{e:?}: {e}"
        );
    }
}
