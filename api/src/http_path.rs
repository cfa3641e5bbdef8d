//! Request paths in normal form, so that a path rule judges the resource
//! the application will serve and not one spelling of it.
//!
//! [`normalize`] does what Envoy does for Consul's L7 intentions (path
//! normalization, merged slashes, escaped slashes refused):
//!
//! - percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are
//!   decoded (`/%61dmin` is `/admin`); every other escape is kept, its hex
//!   digits upper-cased (`%2a` is `%2A`);
//! - an escaped `/` or `\` (`%2F`, `%5C`, any case), a literal `\`, an
//!   escaped NUL (`%00`), a `%` not followed by two hex digits, a control
//!   character, a space or a non-ASCII character make the path invalid:
//!   the request is refused (400), never reinterpreted;
//! - runs of `/` are merged (`//admin` is `/admin`);
//! - dot segments are resolved after decoding (`/./a`, `/b/../a` and
//!   `/%2e%2E/a` are `/a`); `..` never climbs above the root.
//!
//! The result starts with `/`, contains no `//`, `/./` or `/../`, does not
//! end in `/.` or `/..`, and normalizing it again changes nothing. A path
//! already in normal form is returned borrowed, without allocating; work is
//! linear in the path's length and the result is never longer than the
//! input (the HTTP server bounds the input).

use std::borrow::Cow;
use std::fmt;

/// A request path in normal form; only [`normalize`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath<'a>(Cow<'a, str>);

impl<'a> NormalPath<'a> {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether normalizing changed the path.
    pub fn is_rewritten(&self) -> bool {
        matches!(self.0, Cow::Owned(_))
    }

    /// The new path when normalizing changed it, `None` when the input was
    /// already normal.
    pub fn into_rewritten(self) -> Option<String> {
        match self.0 {
            Cow::Owned(path) => Some(path),
            Cow::Borrowed(_) => None,
        }
    }

    /// The same path, owning its text.
    pub fn into_owned(self) -> NormalPath<'static> {
        NormalPath(Cow::Owned(self.0.into_owned()))
    }
}

impl fmt::Display for NormalPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a path cannot be normalized (the request is refused with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathError {
    /// It does not start with `/` (`*`, an authority-form target, empty).
    NotAbsolute,
    /// `%2F` or `%5C` in any case: decoding would change the segments.
    EncodedSlash,
    /// A literal `\`, which some servers read as `/`.
    Backslash,
    /// `%` not followed by two hex digits.
    InvalidEscape,
    /// `%00`.
    EncodedNul,
    /// A control character, a space, `?`, `#` or a non-ASCII character.
    InvalidCharacter,
}

impl PathError {
    pub const ALL: [PathError; 6] = [
        PathError::NotAbsolute,
        PathError::EncodedSlash,
        PathError::Backslash,
        PathError::InvalidEscape,
        PathError::EncodedNul,
        PathError::InvalidCharacter,
    ];

    /// A short snake_case name, for metric labels.
    pub fn label(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "path_not_absolute",
            PathError::EncodedSlash => "path_encoded_slash",
            PathError::Backslash => "path_backslash",
            PathError::InvalidEscape => "path_invalid_escape",
            PathError::EncodedNul => "path_encoded_nul",
            PathError::InvalidCharacter => "path_invalid_character",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "the request path does not start with /",
            PathError::EncodedSlash => {
                "the request path contains an encoded slash or backslash (%2F, %5C)"
            }
            PathError::Backslash => "the request path contains a backslash",
            PathError::InvalidEscape => "the request path contains an invalid percent-escape",
            PathError::EncodedNul => "the request path contains an encoded NUL (%00)",
            PathError::InvalidCharacter => "the request path contains an invalid character",
        })
    }
}

impl std::error::Error for PathError {}

/// `path` (without the query string) in normal form; see the module docs.
pub fn normalize(path: &str) -> Result<NormalPath<'_>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if scan(path.as_bytes())? {
        Ok(NormalPath(Cow::Borrowed(path)))
    } else {
        Ok(NormalPath(Cow::Owned(rewrite(path.as_bytes()))))
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// What one escape at `bytes[at] == b'%'` means.
enum Escape {
    /// Decode it to this unreserved character.
    Decode(u8),
    /// Keep it; `true` when its hex digits are already upper-case.
    Keep(bool),
}

fn escape(bytes: &[u8], at: usize) -> Result<Escape, PathError> {
    let (Some(&high), Some(&low)) = (bytes.get(at + 1), bytes.get(at + 2)) else {
        return Err(PathError::InvalidEscape);
    };
    let (Some(h), Some(l)) = (hex(high), hex(low)) else {
        return Err(PathError::InvalidEscape);
    };
    match h << 4 | l {
        b'/' | b'\\' => Err(PathError::EncodedSlash),
        0 => Err(PathError::EncodedNul),
        decoded if is_unreserved(decoded) => Ok(Escape::Decode(decoded)),
        _ => Ok(Escape::Keep(
            !high.is_ascii_lowercase() && !low.is_ascii_lowercase(),
        )),
    }
}

/// Checks a raw (not escaped) byte of the path.
fn raw(b: u8) -> Result<(), PathError> {
    match b {
        b'\\' => Err(PathError::Backslash),
        b'?' | b'#' | 0x7f.. | ..=0x20 => Err(PathError::InvalidCharacter),
        _ => Ok(()),
    }
}

/// Validates the whole path; `true` when it is already in normal form.
fn scan(bytes: &[u8]) -> Result<bool, PathError> {
    let mut normal = true;
    // Start of the current segment (just after its `/`).
    let mut segment = 1;
    let mut i = 1;
    while i <= bytes.len() {
        let Some(&b) = bytes.get(i) else {
            // The last segment may be empty (a trailing slash) but not a dot segment.
            normal &= !matches!(&bytes[segment..], b"." | b"..");
            break;
        };
        match b {
            b'/' => {
                normal &= !matches!(&bytes[segment..i], b"" | b"." | b"..");
                segment = i + 1;
            }
            b'%' => {
                match escape(bytes, i)? {
                    Escape::Decode(_) => normal = false,
                    Escape::Keep(upper) => normal &= upper,
                }
                i += 3;
                continue;
            }
            _ => raw(b)?,
        }
        i += 1;
    }
    Ok(normal)
}

/// Builds the normal form of a path [`scan`] accepted.
fn rewrite(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    // Whether the path ends as a directory: in `/`, or in a dot segment.
    let mut trailing_slash = false;
    for raw_segment in bytes[1..].split(|b| *b == b'/') {
        let start = out.len();
        out.push('/');
        let mut i = 0;
        while i < raw_segment.len() {
            let b = raw_segment[i];
            if b == b'%' {
                match escape(raw_segment, i) {
                    Ok(Escape::Decode(decoded)) => out.push(char::from(decoded)),
                    _ => {
                        let value = hex(raw_segment[i + 1]).unwrap_or(0) << 4
                            | hex(raw_segment[i + 2]).unwrap_or(0);
                        out.push('%');
                        out.push(char::from(HEX[usize::from(value >> 4)]));
                        out.push(char::from(HEX[usize::from(value & 0xf)]));
                    }
                }
                i += 3;
            } else {
                out.push(char::from(b));
                i += 1;
            }
        }
        match &out[start + 1..] {
            "" | "." => {
                out.truncate(start);
                trailing_slash = true;
            }
            ".." => {
                out.truncate(start);
                let parent = out.rfind('/').unwrap_or(0);
                out.truncate(parent);
                trailing_slash = true;
            }
            _ => trailing_slash = false,
        }
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn normal(path: &str) -> String {
        normalize(path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .to_string()
    }

    #[test]
    fn attacks_on_a_prefix_rule_normalize_to_what_they_reach() {
        for attack in [
            "/%61dmin/secret",
            "//admin/secret",
            "/./admin/secret",
            "/public/../admin/secret",
            "/%2e/admin/secret",
            "/public/%2E%2e/admin/secret",
            "/public/.%2E/admin/secret",
            "///admin//secret",
            "/../admin/secret",
            "/a/b/../../admin/secret",
            "/%41%44%4d%49%4E/../admin/secret",
        ] {
            assert_eq!(normal(attack), "/admin/secret", "{attack}");
        }
    }

    #[test]
    fn the_normal_form_in_detail() {
        let cases = [
            ("/", "/"),
            ("//", "/"),
            ("/.", "/"),
            ("/..", "/"),
            ("/a/.", "/a/"),
            ("/a/..", "/"),
            ("/a/b/", "/a/b/"),
            ("/a//", "/a/"),
            ("/a/./b", "/a/b"),
            ("/a/b/../c", "/a/c"),
            ("/...", "/..."),
            ("/a/.../b", "/a/.../b"),
            ("/.a/..b/b..", "/.a/..b/b.."),
            ("/%7e%7Euser", "/~~user"),
            ("/x%2ay", "/x%2Ay"),
            ("/x%20y%3f", "/x%20y%3F"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a;b=c/d", "/a;b=c/d"),
            ("/%252e%252e/x", "/%252e%252e/x"),
        ];
        for (input, want) in cases {
            assert_eq!(normal(input), want, "{input}");
        }
    }

    #[test]
    fn normal_paths_are_borrowed_and_rewritten_ones_owned() {
        for path in ["/", "/a/b", "/a/b/", "/x%20y", "/v1/items"] {
            let n = normalize(path).unwrap();
            assert!(!n.is_rewritten(), "{path}");
            assert_eq!(n.as_str(), path);
            assert_eq!(n.into_rewritten(), None);
        }
        let n = normalize("/a//b").unwrap();
        assert!(n.is_rewritten());
        assert_eq!(n.into_rewritten().as_deref(), Some("/a/b"));
    }

    #[test]
    fn refused_paths() {
        let cases = [
            ("", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
            ("admin", PathError::NotAbsolute),
            ("/%2fadmin/secret", PathError::EncodedSlash),
            ("/%2Fadmin", PathError::EncodedSlash),
            ("/a%5cb", PathError::EncodedSlash),
            ("/a%5Cb", PathError::EncodedSlash),
            ("/a\\..\\admin", PathError::Backslash),
            ("/a%00b", PathError::EncodedNul),
            ("/a%", PathError::InvalidEscape),
            ("/a%2", PathError::InvalidEscape),
            ("/a%zz", PathError::InvalidEscape),
            ("/a%%32%66", PathError::InvalidEscape),
            ("/a b", PathError::InvalidCharacter),
            ("/a\tb", PathError::InvalidCharacter),
            ("/a\u{7f}", PathError::InvalidCharacter),
            ("/café", PathError::InvalidCharacter),
            ("/a?b", PathError::InvalidCharacter),
            ("/a#b", PathError::InvalidCharacter),
            // An invalid part after a normalizable one is still found.
            ("//a/../%2f", PathError::EncodedSlash),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), Err(want), "{input:?}");
        }
        let labels: std::collections::HashSet<_> =
            PathError::ALL.iter().map(|e| e.label()).collect();
        assert_eq!(labels.len(), PathError::ALL.len());
    }

    /// Paths built from the pieces attacks are made of.
    fn pathish() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "/", "/", "/", ".", "..", "a", "b", "admin", "~", "-", "%2e", "%2E", "%61", "%41",
            "%7e", "%20", "%2a", "%2A", "%c3%a9", "%25", "%2f", "%5c", "%00", "%", "%g1", "\\",
            ";", "=", "%3b", " ",
        ]);
        (any::<bool>(), prop::collection::vec(piece, 0..24)).prop_map(|(slash, pieces)| {
            let mut path = String::from(if slash { "/" } else { "" });
            path.extend(pieces);
            path
        })
    }

    fn check_normal_form(input: &str, out: &str) -> Result<(), TestCaseError> {
        prop_assert!(out.starts_with('/'), "{input:?} -> {out:?}");
        for bad in ["//", "/./", "/../"] {
            prop_assert!(!out.contains(bad), "{input:?} -> {out:?} contains {bad}");
        }
        prop_assert!(
            !out.ends_with("/.") && !out.ends_with("/.."),
            "{input:?} -> {out:?}"
        );
        prop_assert!(out.len() <= input.len().max(1), "{input:?} -> {out:?}");
        let bytes = out.as_bytes();
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'%' {
                let (h, l) = (bytes[i + 1], bytes[i + 2]);
                prop_assert!(
                    !h.is_ascii_lowercase() && !l.is_ascii_lowercase(),
                    "{out:?}"
                );
                let value = hex(h).unwrap() << 4 | hex(l).unwrap();
                prop_assert!(
                    !is_unreserved(value),
                    "{input:?} -> {out:?} keeps an escaped unreserved character"
                );
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn normal_forms_are_normal_and_stable(input in pathish()) {
            if let Ok(out) = normalize(&input) {
                check_normal_form(&input, out.as_str())?;
                let again = normalize(out.as_str()).unwrap();
                prop_assert!(!again.is_rewritten(), "{input:?} -> {out} -> {again}");
                prop_assert_eq!(again.as_str(), out.as_str());
            }
        }

        #[test]
        fn encoded_slashes_never_pass(input in pathish()) {
            let lower = input.to_ascii_lowercase();
            if lower.contains("%2f") || lower.contains("%5c") || input.contains('\\') {
                // Unless an earlier problem refuses it first, the refusal is for the slash.
                prop_assert!(normalize(&input).is_err(), "{input:?}");
            }
        }

        #[test]
        fn any_text_is_refused_or_normalized_without_panic(input in any::<String>()) {
            if let Ok(out) = normalize(&input) {
                check_normal_form(&input, out.as_str())?;
            }
        }

        #[test]
        fn paths_of_plain_segments_are_kept(segments in prop::collection::vec("[a-zA-Z0-9_~-]{1,8}", 0..8), slash in any::<bool>()) {
            let mut path = format!("/{}", segments.join("/"));
            if slash && !segments.is_empty() {
                path.push('/');
            }
            let out = normalize(&path).unwrap();
            prop_assert!(!out.is_rewritten());
            prop_assert_eq!(out.as_str(), path.as_str());
        }
    }
}
