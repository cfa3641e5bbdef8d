//! Output helpers shared by the Consul-style commands (`peering`: aligned
//! columns) and the LXD-style ones (`cluster link`, `auth`: box tables,
//! CSV, JSON and YAML).
//!
//! Every renderer returns whole lines, each ending in a newline (or an empty
//! string when there is nothing to show), for the caller to `print!`.

use clap::ValueEnum;
use serde::Serialize;
use serde_json::Value;

/// The output formats of the LXD-style `list` commands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// An ASCII box table, as `lxc` prints.
    #[default]
    Table,
    /// Comma-separated values, one row per line, no header.
    Csv,
    /// A JSON array.
    Json,
    /// A YAML sequence.
    Yaml,
}

/// Renders a list: `rows` (one per item, cells in `header`'s order) as a
/// table or CSV, or `items` as JSON or YAML.
pub fn render_list<T: Serialize>(
    format: ListFormat,
    header: &[&str],
    rows: &[Vec<String>],
    items: &[T],
) -> anyhow::Result<String> {
    Ok(match format {
        ListFormat::Table => box_table(header, rows),
        ListFormat::Csv => csv(rows),
        ListFormat::Json => json(&items)?,
        ListFormat::Yaml => yaml(&serde_json::to_value(items)?),
    })
}

/// Pretty JSON, with a final newline.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    Ok(format!("{}\n", serde_json::to_string_pretty(value)?))
}

fn width(text: &str) -> usize {
    text.chars().count()
}

fn pad(text: &str, to: usize) -> String {
    format!("{text}{}", " ".repeat(to.saturating_sub(width(text))))
}

/// Consul's `columnize` layout: columns separated by two spaces, each as
/// wide as its widest cell, trailing blanks trimmed.
pub fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells.zip(&widths).map(|(c, w)| pad(c, *w)).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// An LXD table: `+---+` borders around and between rows, headers centred,
/// cells left-aligned. A cell with several lines makes its row that tall.
pub fn box_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            for line in cell.lines() {
                *w = (*w).max(width(line));
            }
        }
    }
    let mut border = String::from("+");
    for w in &widths {
        border.push_str(&"-".repeat(w + 2));
        border.push('+');
    }
    border.push('\n');

    let mut out = border.clone();
    out.push('|');
    for (h, w) in header.iter().zip(&widths) {
        let gap = w - width(h);
        let left = gap / 2;
        out.push_str(&format!(
            " {}{h}{} |",
            " ".repeat(left),
            " ".repeat(gap - left)
        ));
    }
    out.push('\n');
    out.push_str(&border);
    for row in rows {
        let cells: Vec<Vec<&str>> = (0..widths.len())
            .map(|i| row.get(i).map(|c| c.lines().collect()).unwrap_or_default())
            .collect();
        let height = cells.iter().map(Vec::len).max().unwrap_or(0).max(1);
        for l in 0..height {
            out.push('|');
            for (cell, w) in cells.iter().zip(&widths) {
                let text = cell.get(l).copied().unwrap_or_default();
                out.push_str(&format!(" {} |", pad(text, *w)));
            }
            out.push('\n');
        }
        out.push_str(&border);
    }
    out
}

/// Rows as CSV (RFC 4180 quoting), without a header, as `lxc list -f csv`.
pub fn csv(rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .map(|cell| {
                if cell.contains([',', '"', '\n', '\r']) {
                    format!("\"{}\"", cell.replace('"', "\"\""))
                } else {
                    cell.clone()
                }
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// Block-style YAML for a JSON value, laid out as LXD (go-yaml) does:
/// sequences under a key are not indented further than the key.
pub fn yaml(value: &Value) -> String {
    let lines = match value {
        Value::Object(map) if !map.is_empty() => yaml_block(value),
        Value::Array(items) if !items.is_empty() => yaml_block(value),
        scalar => vec![yaml_scalar(scalar)],
    };
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Whether a value is written inline (a scalar, `[]` or `{}`).
fn is_inline(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => true,
    }
}

/// The lines of a non-empty mapping or sequence, unindented.
fn yaml_block(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let key = yaml_string(key);
                if is_inline(v) {
                    out.push(format!("{key}: {}", yaml_scalar(v)));
                } else {
                    out.push(format!("{key}:"));
                    let nested = matches!(v, Value::Object(_));
                    for line in yaml_block(v) {
                        out.push(if nested { format!("  {line}") } else { line });
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                if is_inline(item) {
                    out.push(format!("- {}", yaml_scalar(item)));
                    continue;
                }
                for (i, line) in yaml_block(item).into_iter().enumerate() {
                    out.push(if i == 0 {
                        format!("- {line}")
                    } else {
                        format!("  {line}")
                    });
                }
            }
        }
        scalar => out.push(yaml_scalar(scalar)),
    }
    out
}

fn yaml_scalar(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => yaml_string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A string plain when YAML would read it back as the same string, else
/// double-quoted (a JSON string is a valid YAML double-quoted scalar).
fn yaml_string(s: &str) -> String {
    let reserved = matches!(
        s.to_ascii_lowercase().as_str(),
        "~" | "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
    );
    let numeric = s.parse::<f64>().is_ok()
        || s.starts_with("0x")
        || s.starts_with("0o")
        || s.starts_with('.');
    let date =
        s.len() >= 8 && s.as_bytes()[..4].iter().all(u8::is_ascii_digit) && s.as_bytes()[4] == b'-';
    let awkward_start =
        s.starts_with(|c: char| c.is_whitespace() || "-?:,[]{}#&*!|>'\"%@`".contains(c));
    let awkward = s.is_empty()
        || awkward_start
        || s.ends_with(char::is_whitespace)
        || s.ends_with(':')
        || s.contains(": ")
        || s.contains(" #")
        || s.chars().any(char::is_control);
    if reserved || numeric || date || awkward {
        serde_json::to_string(s).unwrap_or_default()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn box_table_is_lxd_style() {
        let table = box_table(
            &["NAME", "ADDRESSES", "STATE"],
            &[
                row(&["b", "10.0.0.1:8443\n10.0.0.2:8443", "ACTIVE"]),
                row(&["cluster_a", "", "PENDING"]),
            ],
        );
        assert_eq!(
            table,
            "\
+-----------+---------------+---------+
|   NAME    |   ADDRESSES   |  STATE  |
+-----------+---------------+---------+
| b         | 10.0.0.1:8443 | ACTIVE  |
|           | 10.0.0.2:8443 |         |
+-----------+---------------+---------+
| cluster_a |               | PENDING |
+-----------+---------------+---------+
"
        );
    }

    #[test]
    fn empty_box_table_has_its_header() {
        assert_eq!(box_table(&["NAME"], &[]), "+------+\n| NAME |\n+------+\n");
    }

    #[test]
    fn columns_are_aligned_and_trimmed() {
        let text = columns(
            &["Name", "State", "Meta"],
            &[
                row(&["cluster-02", "ACTIVE", "env=prod"]),
                row(&["c3", "PENDING", ""]),
            ],
        );
        assert_eq!(
            text,
            "Name        State    Meta\ncluster-02  ACTIVE   env=prod\nc3          PENDING\n"
        );
    }

    #[test]
    fn csv_quotes_when_needed() {
        assert_eq!(
            csv(&[row(&["a", "x,y", "say \"hi\""]), row(&["b", "1\n2", ""])]),
            "a,\"x,y\",\"say \"\"hi\"\"\"\nb,\"1\n2\",\n"
        );
    }

    #[test]
    fn yaml_mappings_and_sequences() {
        let value = json!({
            "name": "cluster_b",
            "description": "",
            "addresses": ["10.0.0.1:8443", "gw:443"],
            "groups": [],
            "permissions": [
                {"entity_type": "server", "entitlement": "admin"},
                {"entity_type": "service", "entity_name": "web", "entitlement": "can_view"}
            ],
            "nested": {"a": 1, "b": {"c": true}},
            "type": "user"
        });
        assert_eq!(
            yaml(&value),
            "\
name: cluster_b
description: \"\"
addresses:
- 10.0.0.1:8443
- gw:443
groups: []
permissions:
- entity_type: server
  entitlement: admin
- entity_type: service
  entity_name: web
  entitlement: can_view
nested:
  a: 1
  b:
    c: true
type: user
"
        );
        assert_eq!(yaml(&json!([])), "[]\n");
        assert_eq!(yaml(&json!([{"a": "x"}, {"a": "z"}])), "- a: x\n- a: z\n");
    }

    #[test]
    fn yaml_quotes_what_would_not_read_back() {
        for (input, expected) in [
            ("plain text", "plain text"),
            ("10.0.0.1:8300", "10.0.0.1:8300"),
            (
                "Cluster link certificate (pending)",
                "Cluster link certificate (pending)",
            ),
            ("", "\"\""),
            ("yes", "\"yes\""),
            ("NULL", "\"NULL\""),
            ("42", "\"42\""),
            ("1e3", "\"1e3\""),
            ("2024-05-01T10:00:00Z", "\"2024-05-01T10:00:00Z\""),
            ("- x", "\"- x\""),
            ("a: b", "\"a: b\""),
            ("line\nbreak", "\"line\\nbreak\""),
            (" lead", "\" lead\""),
        ] {
            assert_eq!(yaml_string(input), expected, "{input:?}");
        }
    }

    #[test]
    fn lists_render_in_every_format() {
        #[derive(Serialize)]
        struct Item {
            name: &'static str,
        }
        let rows = [row(&["a"])];
        let items = [Item { name: "a" }];
        let render = |f| render_list(f, &["NAME"], &rows, &items).unwrap();
        assert!(render(ListFormat::Table).contains("| a    |"));
        assert_eq!(render(ListFormat::Csv), "a\n");
        assert_eq!(
            render(ListFormat::Json),
            "[\n  {\n    \"name\": \"a\"\n  }\n]\n"
        );
        assert_eq!(render(ListFormat::Yaml), "- name: a\n");
    }
}
