//! The HCL dialect Consul's rules are written in (HCL 1): items of one or
//! more keys followed by a value or an object, separated by newlines, commas
//! or nothing at all (`service "web" { policy = "read" intentions = "read" }`
//! on one line is common in real policies, and HCL 2 parsers refuse it).
//! Comments `#`, `//` and `/* */`. Nesting is bounded by [`MAX_NESTING`].

/// The deepest object/list nesting accepted (a policy needs 2 or 3).
pub const MAX_NESTING: usize = 32;

/// A parsed value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// A quoted string, unescaped.
    Str(String),
    /// A bare word (`read`, `true`, `42`): not a valid rule value, kept to
    /// report it.
    Word(String),
    Object(Vec<Item>),
    List(Vec<Node>),
}

/// `keys... = value` or `keys... { object }`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    pub keys: Vec<String>,
    pub value: Node,
}

/// A syntax error: where and what, as `At line:column: what`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SyntaxError(pub String);

pub(crate) fn parse(text: &str) -> Result<Vec<Item>, SyntaxError> {
    let mut parser = Parser {
        text,
        pos: 0,
        depth: 0,
    };
    let items = parser.items(None)?;
    Ok(items)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, what: impl std::fmt::Display) -> SyntaxError {
        let before = &self.text[..self.pos];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
        SyntaxError(format!("At {line}:{column}: {what}"))
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Skips spaces, newlines and comments.
    fn skip_blank(&mut self) -> Result<(), SyntaxError> {
        loop {
            let rest = &self.text[self.pos..];
            if rest.starts_with('#') || rest.starts_with("//") {
                self.pos += rest.find('\n').unwrap_or(rest.len());
            } else if let Some(comment) = rest.strip_prefix("/*") {
                let end = comment
                    .find("*/")
                    .ok_or_else(|| self.error("comment not terminated"))?;
                self.pos += end + 4;
            } else if let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
                self.pos += c.len_utf8();
            } else {
                return Ok(());
            }
        }
    }

    fn enter(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.error(format!("nested too deeply (at most {MAX_NESTING} levels)")));
        }
        Ok(())
    }

    /// Items up to `close` (or the end of the text at the top).
    fn items(&mut self, close: Option<char>) -> Result<Vec<Item>, SyntaxError> {
        let mut items = Vec::new();
        loop {
            self.skip_blank()?;
            match self.peek() {
                None if close.is_none() => return Ok(items),
                None => return Err(self.error("unexpected end of rules, expected '}'")),
                Some(c) if Some(c) == close => {
                    self.bump();
                    return Ok(items);
                }
                Some(',') if !items.is_empty() => {
                    self.bump();
                }
                Some(_) => items.push(self.item()?),
            }
        }
    }

    fn item(&mut self) -> Result<Item, SyntaxError> {
        let mut keys = Vec::new();
        loop {
            self.skip_blank()?;
            match self.peek() {
                Some('"') => keys.push(self.string()?),
                Some(c) if is_word_char(c) => keys.push(self.word()),
                Some('=') if !keys.is_empty() => {
                    self.bump();
                    let value = self.value()?;
                    return Ok(Item { keys, value });
                }
                Some('{') if !keys.is_empty() => {
                    let value = self.value()?;
                    return Ok(Item { keys, value });
                }
                Some(c) => return Err(self.error(format!("unexpected {c:?}"))),
                None => return Err(self.error("unexpected end of rules")),
            }
        }
    }

    fn value(&mut self) -> Result<Node, SyntaxError> {
        self.skip_blank()?;
        match self.peek() {
            Some('"') => Ok(Node::Str(self.string()?)),
            Some('{') => {
                self.bump();
                self.enter()?;
                let items = self.items(Some('}'))?;
                self.depth -= 1;
                Ok(Node::Object(items))
            }
            Some('[') => {
                self.bump();
                self.enter()?;
                let mut values = Vec::new();
                loop {
                    self.skip_blank()?;
                    match self.peek() {
                        Some(']') => {
                            self.bump();
                            break;
                        }
                        Some(',') if !values.is_empty() => {
                            self.bump();
                        }
                        _ => values.push(self.value()?),
                    }
                }
                self.depth -= 1;
                Ok(Node::List(values))
            }
            Some(c) if is_word_char(c) => Ok(Node::Word(self.word())),
            Some(c) => Err(self.error(format!("unexpected {c:?}, expected a value"))),
            None => Err(self.error("unexpected end of rules, expected a value")),
        }
    }

    fn word(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(is_word_char) {
            self.bump();
        }
        self.text[start..self.pos].to_owned()
    }

    /// A double-quoted string on one line, with HCL's escapes.
    fn string(&mut self) -> Result<String, SyntaxError> {
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None | Some('\n') => return Err(self.error("literal not terminated")),
                Some('"') => return Ok(out),
                Some('\\') => {
                    let escaped = match self.bump() {
                        Some('n') => '\n',
                        Some('r') => '\r',
                        Some('t') => '\t',
                        Some('"') => '"',
                        Some('\\') => '\\',
                        Some('u') => self.unicode(4)?,
                        Some('U') => self.unicode(8)?,
                        _ => return Err(self.error("unknown escape sequence")),
                    };
                    out.push(escaped);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn unicode(&mut self, digits: usize) -> Result<char, SyntaxError> {
        let hex = self
            .text
            .get(self.pos..self.pos + digits)
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.error("invalid unicode escape"))?;
        let c = u32::from_str_radix(hex, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| self.error("invalid unicode escape"))?;
        self.pos += digits;
        Ok(c)
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/')
}

/// A string as [`parse`] reads it back verbatim.
pub(crate) fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
