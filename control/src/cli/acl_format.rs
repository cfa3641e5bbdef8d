//! How `isthmus acl` prints tokens and policies: Consul's `pretty` layout
//! (label columns, `Policies:` lists, Go's time format) and its `json`
//! layout (the API's object, indented by four spaces).

use clap::ValueEnum;
use serde::Serialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// `-format` of the `acl` commands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum AclFormat {
    /// Labelled lines, as Consul prints them.
    #[default]
    Pretty,
    /// The API's JSON.
    Json,
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field].as_str().unwrap_or_default()
}

fn list<'a>(value: &'a Value, field: &str) -> &'a [Value] {
    value[field].as_array().map_or(&[], Vec::as_slice)
}

/// An RFC 3339 time as Go's `%v` prints a `time.Time` in UTC:
/// `2026-03-03 14:43:30.094574833 +0000 UTC` (fraction without trailing
/// zeros, none when whole). Anything unparsable is shown as given.
pub fn go_time(rfc3339: &str) -> String {
    let Ok(time) = OffsetDateTime::parse(rfc3339, &Rfc3339) else {
        return rfc3339.to_owned();
    };
    let time = time.to_offset(UtcOffset::UTC);
    let whole = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let mut out = time.format(whole).unwrap_or_else(|_| rfc3339.to_owned());
    let nanos = time.nanosecond();
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    out
}

/// Consul's `%x` of the base64 `Hash`.
fn hash_hex(value: &Value) -> String {
    use base64::Engine;
    let hash = text(value, "Hash");
    base64::engine::general_purpose::STANDARD
        .decode(hash)
        .map(|bytes| bytes.iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_else(|_| hash.to_owned())
}

/// A token (or a token list entry) in Consul's `pretty` layout.
pub fn token(token: &Value, show_meta: bool) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "AccessorID:       {}\n",
        text(token, "AccessorID")
    ));
    out.push_str(&format!("SecretID:         {}\n", text(token, "SecretID")));
    out.push_str(&format!(
        "Description:      {}\n",
        text(token, "Description")
    ));
    let local = token["Local"].as_bool().unwrap_or(false);
    out.push_str(&format!("Local:            {local}\n"));
    out.push_str(&format!(
        "Create Time:      {}\n",
        go_time(text(token, "CreateTime"))
    ));
    let expires = text(token, "ExpirationTime");
    if !expires.is_empty() {
        out.push_str(&format!("Expiration Time:  {}\n", go_time(expires)));
    }
    if show_meta {
        out.push_str(&format!("Hash:             {}\n", hash_hex(token)));
        out.push_str(&format!("Create Index:     {}\n", token["CreateIndex"]));
        out.push_str(&format!("Modify Index:     {}\n", token["ModifyIndex"]));
    }
    for (field, label) in [("Policies", "Policies:"), ("Roles", "Roles:")] {
        let links = list(token, field);
        if !links.is_empty() {
            out.push_str(label);
            out.push('\n');
            for link in links {
                out.push_str(&format!(
                    "   {} - {}\n",
                    text(link, "ID"),
                    text(link, "Name")
                ));
            }
        }
    }
    let identities = list(token, "ServiceIdentities");
    if !identities.is_empty() {
        out.push_str("Service Identities:\n");
        for identity in identities {
            let datacenters: Vec<&str> = list(identity, "Datacenters")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let datacenters = if datacenters.is_empty() {
                "all".to_owned()
            } else {
                datacenters.join(", ")
            };
            out.push_str(&format!(
                "   {} (Datacenters: {datacenters})\n",
                text(identity, "ServiceName")
            ));
        }
    }
    let nodes = list(token, "NodeIdentities");
    if !nodes.is_empty() {
        out.push_str("Node Identities:\n");
        for node in nodes {
            out.push_str(&format!(
                "   {} (Datacenter: {})\n",
                text(node, "NodeName"),
                text(node, "Datacenter")
            ));
        }
    }
    out
}

/// Token list entries, separated by blank lines as Consul prints them.
pub fn token_list(tokens: &[Value], show_meta: bool) -> String {
    tokens
        .iter()
        .map(|t| token(t, show_meta))
        .collect::<Vec<_>>()
        .join("\n")
}

fn datacenters(policy: &Value) -> String {
    list(policy, "Datacenters")
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A policy in Consul's `pretty` layout: the rules last, as written.
pub fn policy(policy: &Value, show_meta: bool) -> String {
    let mut out = String::new();
    out.push_str(&format!("ID:           {}\n", text(policy, "ID")));
    out.push_str(&format!("Name:         {}\n", text(policy, "Name")));
    out.push_str(&format!("Description:  {}\n", text(policy, "Description")));
    out.push_str(&format!("Datacenters:  {}\n", datacenters(policy)));
    if show_meta {
        out.push_str(&format!("Hash:         {}\n", hash_hex(policy)));
        out.push_str(&format!("Create Index: {}\n", policy["CreateIndex"]));
        out.push_str(&format!("Modify Index: {}\n", policy["ModifyIndex"]));
    }
    out.push_str("Rules:\n");
    out.push_str(text(policy, "Rules"));
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// Policy list entries: `name:` then the indented fields.
pub fn policy_list(policies: &[Value], show_meta: bool) -> String {
    let mut out = String::new();
    for policy in policies {
        out.push_str(&format!("{}:\n", text(policy, "Name")));
        out.push_str(&format!("   ID:           {}\n", text(policy, "ID")));
        out.push_str(&format!(
            "   Description:  {}\n",
            text(policy, "Description")
        ));
        out.push_str(&format!("   Datacenters:  {}\n", datacenters(policy)));
        if show_meta {
            out.push_str(&format!("   Hash:         {}\n", hash_hex(policy)));
            out.push_str(&format!("   Create Index: {}\n", policy["CreateIndex"]));
            out.push_str(&format!("   Modify Index: {}\n", policy["ModifyIndex"]));
        }
    }
    out
}

/// Consul's `json` layout: `json.MarshalIndent` with four spaces, then a newline.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut serializer)?;
    out.push(b'\n');
    Ok(String::from_utf8(out)?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample_token() -> Value {
        json!({
            "AccessorID": "1405ac08-a153-8af4-8fda-fefd48eca75f",
            "SecretID": "6e41ba8e-1a7f-1c39-3c4f-e8b2a0d2a1b2",
            "Description": "Bootstrap Token (Global Management)",
            "Policies": [{"ID": "00000000-0000-0000-0000-000000000001", "Name": "global-management"}],
            "Local": false,
            "CreateTime": "2026-03-03T14:43:30.094574833Z",
            "Hash": "AAEC",
            "CreateIndex": 7,
            "ModifyIndex": 9
        })
    }

    #[test]
    fn times_print_as_go_does() {
        assert_eq!(
            go_time("2026-03-03T14:43:30.094574833Z"),
            "2026-03-03 14:43:30.094574833 +0000 UTC"
        );
        assert_eq!(
            go_time("2026-03-03T14:43:30.5Z"),
            "2026-03-03 14:43:30.5 +0000 UTC"
        );
        assert_eq!(
            go_time("2026-03-03T16:43:30+02:00"),
            "2026-03-03 14:43:30 +0000 UTC"
        );
        assert_eq!(go_time("soon"), "soon");
    }

    #[test]
    fn token_pretty_is_consuls_layout() {
        assert_eq!(
            token(&sample_token(), false),
            "AccessorID:       1405ac08-a153-8af4-8fda-fefd48eca75f\n\
             SecretID:         6e41ba8e-1a7f-1c39-3c4f-e8b2a0d2a1b2\n\
             Description:      Bootstrap Token (Global Management)\n\
             Local:            false\n\
             Create Time:      2026-03-03 14:43:30.094574833 +0000 UTC\n\
             Policies:\n   \
             00000000-0000-0000-0000-000000000001 - global-management\n"
        );
        let mut with_more = sample_token();
        with_more["Policies"] = json!([]);
        with_more["ServiceIdentities"] =
            json!([{"ServiceName": "web"}, {"ServiceName": "db", "Datacenters": ["dc1", "dc2"]}]);
        with_more["ExpirationTime"] = json!("2026-03-03T15:43:30Z");
        with_more["Local"] = json!(true);
        let text = token(&with_more, true);
        assert!(text.contains("Local:            true\n"), "{text}");
        assert!(text.contains("Expiration Time:  2026-03-03 15:43:30 +0000 UTC\n"));
        assert!(
            text.contains("Hash:             000102\nCreate Index:     7\nModify Index:     9\n")
        );
        assert!(text.ends_with(
            "Service Identities:\n   web (Datacenters: all)\n   db (Datacenters: dc1, dc2)\n"
        ));
        assert!(!text.contains("Policies:"));
    }

    #[test]
    fn token_list_separates_entries_with_a_blank_line() {
        let list = token_list(&[sample_token(), sample_token()], false);
        assert_eq!(list.matches("AccessorID:").count(), 2);
        assert!(list.contains("global-management\n\nAccessorID:"));
        assert_eq!(token_list(&[], false), "");
    }

    #[test]
    fn policy_pretty_is_consuls_layout() {
        let p = json!({
            "ID": "p-1", "Name": "web-write", "Description": "web", "Rules": "service \"web\" { policy = \"write\" }",
            "Datacenters": null, "Hash": "", "CreateIndex": 3, "ModifyIndex": 3
        });
        assert_eq!(
            policy(&p, false),
            "ID:           p-1\nName:         web-write\nDescription:  web\nDatacenters:  \nRules:\nservice \"web\" { policy = \"write\" }\n"
        );
        assert_eq!(
            policy_list(&[p], true),
            "web-write:\n   ID:           p-1\n   Description:  web\n   Datacenters:  \n   Hash:         \n   Create Index: 3\n   Modify Index: 3\n"
        );
    }

    #[test]
    fn json_is_indented_by_four_spaces() {
        assert_eq!(
            json(&json!({"A": [1]})).unwrap(),
            "{\n    \"A\": [\n        1\n    ]\n}\n"
        );
    }
}
