//! The bodies of the cargo-fuzz targets (`fuzz_targets/*.rs` call these).
//!
//! Each function takes arbitrary bytes, feeds them to one parser that takes
//! outside input, and checks what must hold for any input besides "no panic":
//! what is accepted survives a round trip, and the ClientHello parser never
//! asks to look past one TLS record. Being ordinary functions, they also
//! compile and run on stable (`cargo test --manifest-path fuzz/Cargo.toml`
//! replays the seeds in `seeds/`).
#![forbid(unsafe_code)]

use base64::Engine;
use isthmus_api::acl::{Access, Authorizer, Resource, Rules};
use isthmus_api::config_entry::{parse_document, ConfigEntry};
use isthmus_api::dns_name;
use isthmus_api::duration;
use isthmus_api::filter::Filter;
use isthmus_api::http_path;
use isthmus_api::peering::PeeringToken;
use isthmus_api::peering_framing;
use isthmus_gateway::sni::{parse_client_hello, Parsed, MAX_HELLO_BYTES};

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target, by the name `cargo fuzz run` takes.
pub const TARGETS: &[(&str, Target)] = &[
    ("peering_token", peering_token),
    ("sni", sni),
    ("config_entry_hcl", config_entry_hcl),
    ("config_entry_json", config_entry_json),
    ("duration", duration),
    ("http_path", http_path),
    ("stream_framing", stream_framing),
    ("dns_name", dns_name),
    ("filter", filter),
    ("acl_rules", acl_rules),
];

/// A peering token as `POST /v1/peering/establish` receives it: as text, and
/// the bytes as the JSON inside the base64.
pub fn peering_token(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    check_token(&text);
    check_token(&base64::engine::general_purpose::STANDARD.encode(data));
}

fn check_token(text: &str) {
    if let Ok(token) = PeeringToken::decode(text) {
        assert_eq!(
            PeeringToken::decode(&token.encode()).as_ref(),
            Ok(&token),
            "an accepted token must survive encode/decode"
        );
    }
}

/// The first bytes of a connection to the gateway.
pub fn sni(data: &[u8]) {
    match parse_client_hello(data) {
        Ok(Parsed::NeedMore(needed)) => {
            assert!(
                needed > data.len(),
                "asks for {needed} with {} there",
                data.len()
            );
            assert!(needed <= MAX_HELLO_BYTES, "asks for {needed} bytes");
        }
        Ok(Parsed::Hello(name)) => {
            if let Some(name) = &name {
                assert!(!name.is_empty());
                assert!(name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase()));
            }
            // The answer comes from the first record alone.
            let bounded = &data[..data.len().min(MAX_HELLO_BYTES)];
            assert_eq!(parse_client_hello(bounded).ok(), Some(Parsed::Hello(name)));
        }
        Err(_) => {}
    }
}

/// A DNS query name as the agent's DNS interface reads it: the bytes as
/// text, under the domain `consul`. What is accepted is within the name
/// bounds and reads back the same from the name it renders.
pub fn dns_name(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(lookup) = dns_name::parse(&text, "consul") else {
        return;
    };
    assert!(text.trim_end_matches('.').len() <= dns_name::MAX_NAME_LEN);
    let underscored = match &lookup {
        dns_name::DnsLookup::Service(q) => {
            q.service.starts_with('_') || q.tag.as_deref().is_some_and(|t| t.starts_with('_'))
        }
        _ => false,
    };
    if !underscored {
        assert_eq!(
            dns_name::parse(&lookup.to_name("consul"), "consul"),
            Ok(lookup),
            "an accepted name must read back the same from its rendering"
        );
    }
}

/// A config entry as `isthmus config write` reads it (HCL, or JSON when it
/// starts with `{`).
pub fn config_entry_hcl(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(value) = parse_document(&text) {
        check_entry(value);
    }
}

/// A config entry as `PUT /v1/config` receives it.
pub fn config_entry_json(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        check_entry(value);
    }
}

fn check_entry(value: serde_json::Value) {
    if let Ok(entry) = ConfigEntry::from_json(value) {
        assert_eq!(
            ConfigEntry::from_json(entry.to_json()).as_ref(),
            Ok(&entry),
            "an accepted entry must survive to_json/from_json"
        );
    }
}

/// A Go duration, as config files and `?wait=` carry them.
pub fn duration(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(d) = duration::parse(&text) {
        assert!(d.as_nanos() <= i64::MAX as u128);
        let formatted = duration::format(d);
        assert_eq!(duration::parse(&formatted), Ok(d), "{formatted}");
    }
}

/// A request path as the sidecar's inbound receives it, before L7
/// intentions judge it.
pub fn http_path(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(normal) = http_path::normalize(path) else {
        return;
    };
    let text = normal.as_str();
    assert!(text.starts_with('/'), "{text:?}");
    assert!(text.len() <= path.len(), "{path:?} grew into {text:?}");
    for bad in ["//", "/./", "/../"] {
        assert!(!text.contains(bad), "{path:?} -> {text:?}");
    }
    assert!(!text.ends_with("/.") && !text.ends_with("/.."), "{text:?}");
    let again = http_path::normalize(text).expect("a normal path is accepted");
    assert_eq!(again.as_str(), text, "normalizing is idempotent");
    assert!(!again.is_rewritten(), "a normal path is left alone");
}

/// The replication stream's bytes as the peer sends them: the first byte
/// picks where to split the rest into chunks, and framing must not depend
/// on how the bytes arrive.
pub fn stream_framing(data: &[u8]) {
    const MAX_LINE: usize = 1024;
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let whole = peering_framing::decode_all([rest], MAX_LINE);
    let step = usize::from(split).max(1);
    let chunked = peering_framing::decode_all(rest.chunks(step), MAX_LINE);
    assert_eq!(whole.is_ok(), chunked.is_ok(), "{whole:?} vs {chunked:?}");
    if let (Ok(whole), Ok(chunked)) = (whole, chunked) {
        assert_eq!(whole, chunked);
        for message in &whole {
            let line = peering_framing::encode_message(message);
            let decoded = peering_framing::decode_all([&line[..]], line.len());
            assert_eq!(decoded.as_deref(), Ok(std::slice::from_ref(message)));
        }
    }
}

/// A `?filter=` expression as the HTTP API receives it.
pub fn filter(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(filter) = Filter::parse(&text) else {
        return;
    };
    let printed = filter.to_string();
    let again = Filter::parse(&printed).expect("a printed filter parses");
    assert_eq!(again, filter, "{text:?} printed as {printed:?}");
    // Evaluating is total: an answer or an error, on any shape.
    let doc = serde_json::json!({
        "Node": "n1", "Port": 8080, "Flag": true, "Tags": ["a", "b"],
        "Meta": {"k": "v"}, "Checks": [{"Status": "passing"}, {"Status": 1}],
        "Nothing": null, "Ratio": 0.5,
    });
    let _ = filter.matches(&doc);
    let _ = filter.matches(&serde_json::Value::Null);
}

/// An ACL policy's rules as `PUT /v1/acl/policy` and `isthmus acl policy
/// create` receive them. What is accepted renders to HCL that reads back the
/// same, and the authorizer built from it answers without panicking.
pub fn acl_rules(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(rules) = Rules::parse(&text) else {
        return;
    };
    let rendered = rules.to_hcl();
    assert_eq!(
        Rules::parse(&rendered).as_ref(),
        Ok(&rules),
        "{text:?} rendered as {rendered:?}"
    );
    for default_allow in [false, true] {
        let authz = Authorizer::new("fuzz", default_allow, std::slice::from_ref(&rules));
        for resource in [Resource::Service, Resource::Node, Resource::Agent, Resource::Intention] {
            for name in ["", "web", "web-sidecar-proxy", "*"] {
                let _ = authz.check(resource, name, Access::Read);
                let _ = authz.check(resource, name, Access::Write);
            }
            let _ = authz.allows_all(resource, Access::Read);
            let _ = authz.allows_any(resource, Access::Write);
        }
        for resource in [Resource::Acl, Resource::Mesh, Resource::Operator, Resource::Peering] {
            let _ = authz.check(resource, "", Access::Write);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Replays every seed of every target (and each seed cut short and with
    /// a byte flipped), as the fuzzer starts from them.
    #[test]
    fn seeds_run_clean() {
        let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
        for (name, target) in TARGETS {
            let dir = seeds.join(name);
            let mut count = 0;
            for entry in
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap();
                target(&bytes);
                for cut in 0..bytes.len().min(64) {
                    target(&bytes[..cut]);
                }
                for at in (0..bytes.len()).step_by(7) {
                    let mut flipped = bytes.clone();
                    flipped[at] ^= 0x5a;
                    target(&flipped);
                }
                count += 1;
            }
            assert!(count > 0, "no seeds for {name}");
        }
    }

    #[test]
    fn the_seeds_are_accepted_where_they_should_be() {
        let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
        let read = |path: &str| std::fs::read(seeds.join(path)).unwrap();
        let token = String::from_utf8(read("peering_token/valid")).unwrap();
        PeeringToken::decode(&token).unwrap();
        assert_eq!(
            parse_client_hello(&read("sni/client_hello")).unwrap(),
            Parsed::Hello(Some("server.c1.peering.abc.isthmus".into()))
        );
        let hcl = String::from_utf8(read("config_entry_hcl/intentions.hcl")).unwrap();
        ConfigEntry::from_json(parse_document(&hcl).unwrap()).unwrap();
        let json = read("config_entry_json/exported.json");
        ConfigEntry::from_json(serde_json::from_slice(&json).unwrap()).unwrap();
        for entry in std::fs::read_dir(seeds.join("acl_rules")).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            Rules::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        for entry in std::fs::read_dir(seeds.join("filter")).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            Filter::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}
