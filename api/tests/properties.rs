//! Property tests for the parsers of isthmus-api that take outside input:
//! peering tokens and peer names, config entries (HCL and JSON), Go
//! durations. Each property runs a modest number of cases so the suite stays
//! fast; `PROPTEST_CASES` raises it for a longer local run.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use isthmus_api::config_entry::{
    parse_document, ConfigEntry, ExportedService, ExportedServices, IntentionAction,
    IntentionHttpHeaderPermission, IntentionHttpPermission, IntentionPermission,
    IntentionSourceType, ServiceConsumer, ServiceIntentions, SourceIntention,
};
use isthmus_api::peering::{valid_server_address, validate_peer_name, PeeringToken, Remote};
use isthmus_api::{duration, peering};
use proptest::prelude::*;

/// 256 cases per property and a fixed seed, so the suite is deterministic;
/// `PROPTEST_CASES` and `PROPTEST_RNG_SEED` override them for a longer or
/// different local run.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 256;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = proptest::test_runner::RngSeed::Fixed(0x0015_7405);
    }
    // A failing case is printed in full (with its seed); nothing is written
    // next to the sources.
    config.failure_persistence = None;
    config
}

// ---------------------------------------------------------------- tokens

/// A real self-signed certificate, made once.
fn ca_pem() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(|| {
        rcgen::generate_simple_self_signed(vec!["ca.proptest.isthmus".to_owned()])
            .expect("self-signed certificate")
            .cert
            .pem()
    })
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn dns_label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?"
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        // The last label is not all digits: that would be a malformed IP.
        (
            prop::collection::vec(dns_label(), 0..3),
            "[a-z][a-z0-9]{0,8}"
        )
            .prop_map(|(mut labels, last)| {
                labels.push(last);
                labels.join(".")
            }),
        // Unicast and not link-local: gateway addresses refuse 0/8,
        // 169.254/16, multicast and broadcast.
        (1u8..=223, any::<u8>(), any::<u8>(), 1u8..=254)
            .prop_filter("not link-local", |(a, ..)| *a != 169)
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        Just("[::1]".to_owned()),
    ]
}

fn server_address() -> impl Strategy<Value = String> {
    (host(), 1u16..=u16::MAX).prop_map(|(host, port)| format!("{host}:{port}"))
}

/// A UUID in its usual text form, as peering IDs and secrets are.
fn uuid() -> impl Strategy<Value = String> {
    "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
}

fn hex64() -> impl Strategy<Value = String> {
    "[0-9a-f]{64}"
}

/// A token that passes validation.
fn valid_token() -> impl Strategy<Value = PeeringToken> {
    (
        prop::collection::vec(server_address(), 1..4),
        any::<bool>(),
        dns_label(),
        uuid(),
        uuid(),
        ("[a-z]{0,8}", "[a-z0-9-]{0,12}"),
        hex64(),
        "20[2-9][0-9]-[01][0-9]-[0-2][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z",
    )
        .prop_map(
            |(
                addresses,
                manual,
                cluster,
                peer_id,
                secret,
                (partition, datacenter),
                fp,
                expires,
            )| {
                PeeringToken {
                    ca: vec![ca_pem().to_owned()],
                    manual_server_addresses: manual,
                    server_addresses: addresses,
                    server_name: peering::server_name(&cluster, "td.isthmus"),
                    peer_id,
                    establishment_secret: secret,
                    remote: Remote {
                        partition,
                        datacenter,
                    },
                    gateway_fingerprint: fp,
                    expires_at: expires,
                }
            },
        )
}

/// One way to break a valid token, and a label for the failure message.
#[derive(Debug, Clone)]
enum Breakage {
    NoCa,
    CaNotPem(String),
    NoAddresses,
    AddressPortZero(String),
    AddressWildcard(u16),
    AddressNoPort(String),
    EmptyServerName,
    EmptyPeerId,
    EmptySecret,
    FingerprintLength(usize),
    FingerprintNotHex(usize),
}

fn breakage() -> impl Strategy<Value = Breakage> {
    prop_oneof![
        Just(Breakage::NoCa),
        "[a-zA-Z0-9 ]{0,40}".prop_map(Breakage::CaNotPem),
        Just(Breakage::NoAddresses),
        host().prop_map(Breakage::AddressPortZero),
        (1u16..=u16::MAX).prop_map(Breakage::AddressWildcard),
        host().prop_map(Breakage::AddressNoPort),
        Just(Breakage::EmptyServerName),
        Just(Breakage::EmptyPeerId),
        Just(Breakage::EmptySecret),
        (0usize..200)
            .prop_filter("not 64", |n| *n != 64)
            .prop_map(Breakage::FingerprintLength),
        (0usize..64).prop_map(Breakage::FingerprintNotHex),
    ]
}

fn apply(token: &mut PeeringToken, breakage: &Breakage) {
    match breakage {
        Breakage::NoCa => token.ca.clear(),
        Breakage::CaNotPem(text) => token.ca = vec![text.clone()],
        Breakage::NoAddresses => token.server_addresses.clear(),
        Breakage::AddressPortZero(host) => token.server_addresses.push(format!("{host}:0")),
        Breakage::AddressWildcard(port) => {
            token.server_addresses.push(format!("0.0.0.0:{port}"));
        }
        Breakage::AddressNoPort(host) => token.server_addresses.push(host.clone()),
        Breakage::EmptyServerName => token.server_name.clear(),
        Breakage::EmptyPeerId => token.peer_id.clear(),
        Breakage::EmptySecret => token.establishment_secret.clear(),
        Breakage::FingerprintLength(n) => token.gateway_fingerprint = "a".repeat(*n),
        Breakage::FingerprintNotHex(at) => {
            token.gateway_fingerprint.replace_range(*at..*at + 1, "g");
        }
    }
}

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        ".{0,20}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(token_key(), inner, 0..6)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Mostly the token's own keys, so decoding gets past the first field.
fn token_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "CA",
            "ManualServerAddresses",
            "ServerAddresses",
            "ServerName",
            "PeerID",
            "EstablishmentSecret",
            "Remote",
            "GatewayFingerprint",
            "ExpiresAt",
            "Partition",
            "Datacenter",
        ])
        .prop_map(str::to_owned),
        "[A-Za-z]{0,12}",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn token_decode_never_panics_on_strings(text in ".{0,300}") {
        let _ = PeeringToken::decode(&text);
    }

    #[test]
    fn token_decode_never_panics_on_base64_of_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = PeeringToken::decode(&b64(&bytes));
    }

    #[test]
    fn token_decode_never_panics_on_base64_of_json(value in json_value()) {
        let json = serde_json::to_vec(&value).unwrap();
        let _ = PeeringToken::decode(&b64(&json));
    }

    #[test]
    fn token_decode_never_panics_on_almost_valid_json(token in valid_token(), key in token_key(), value in json_value()) {
        // A valid token with one field replaced by arbitrary JSON.
        let mut object = serde_json::to_value(&token).unwrap();
        object.as_object_mut().unwrap().insert(key, value);
        let _ = PeeringToken::decode(&b64(&serde_json::to_vec(&object).unwrap()));
    }

    #[test]
    fn token_encode_decode_round_trips(token in valid_token(), pad in "[ \t\n]{0,3}") {
        let text = format!("{pad}{}{pad}", token.encode());
        let decoded = PeeringToken::decode(&text);
        prop_assert_eq!(decoded, Ok(token));
    }

    #[test]
    fn token_validation_refuses_out_of_range_fields(mut token in valid_token(), breakage in breakage()) {
        apply(&mut token, &breakage);
        let result = PeeringToken::decode(&token.encode());
        prop_assert!(result.is_err(), "{:?} was accepted: {:?}", breakage, result);
    }

    #[test]
    fn peer_names_are_accepted_exactly_when_well_formed(name in "[a-zA-Z0-9_.-]{0,70}") {
        let bytes = name.as_bytes();
        let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let expected = !bytes.is_empty()
            && bytes.len() <= 63
            && bytes.iter().all(|b| edge(*b) || *b == b'-' || *b == b'_')
            && edge(bytes[0])
            && edge(bytes[bytes.len() - 1]);
        let result = validate_peer_name(&name);
        prop_assert_eq!(result.is_ok(), expected, "{}: {:?}", name, result);
        if let Err(message) = result {
            prop_assert!(message.contains("is not a valid peer name"));
        }
    }

    #[test]
    fn peer_name_validation_never_panics(name in any::<String>()) {
        let _ = validate_peer_name(&name);
    }

    #[test]
    fn generated_server_addresses_are_valid(address in server_address()) {
        prop_assert!(valid_server_address(&address), "{}", address);
    }

    #[test]
    fn server_address_validation_never_panics_and_needs_a_port(text in any::<String>()) {
        if valid_server_address(&text) {
            let (_, port) = text.rsplit_once(':').unwrap();
            prop_assert!(port.parse::<u16>().unwrap() != 0);
        }
    }
}

// ---------------------------------------------------------- config entries

fn entry_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9._-]{0,30}"
}

fn peer_name() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
}

fn meta() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map("[a-z][a-z0-9_-]{0,15}", ".{0,30}", 0..4)
}

fn exported_services() -> impl Strategy<Value = ExportedServices> {
    let consumer = prop_oneof![
        peer_name().prop_map(|peer| ServiceConsumer {
            peer: Some(peer),
            partition: None,
            sameness_group: None,
        }),
        entry_name().prop_map(|partition| ServiceConsumer {
            peer: None,
            partition: Some(partition),
            sameness_group: None,
        }),
        entry_name().prop_map(|group| ServiceConsumer {
            peer: None,
            partition: None,
            sameness_group: Some(group),
        }),
    ];
    let service = (
        prop_oneof![4 => entry_name(), 1 => Just("*".to_owned())],
        prop::option::of(Just("default".to_owned())),
        prop::collection::vec(consumer, 1..4),
    )
        .prop_map(|(name, namespace, consumers)| ExportedService {
            name,
            namespace,
            consumers,
        });
    (
        prop::option::of(Just("default".to_owned())),
        prop::collection::vec(service, 0..5),
        meta(),
    )
        .prop_map(|(partition, services, meta)| {
            // Names must be unique per namespace: keep the first of each.
            let mut seen = std::collections::HashSet::new();
            let services = services
                .into_iter()
                .filter(|s| {
                    seen.insert((
                        s.namespace.clone().unwrap_or_else(|| "default".into()),
                        s.name.clone(),
                    ))
                })
                .collect();
            ExportedServices {
                name: "default".into(),
                partition,
                services,
                meta,
                create_index: 0,
                modify_index: 0,
            }
        })
}

fn http_permission() -> impl Strategy<Value = IntentionHttpPermission> {
    let path = prop_oneof![
        Just((None, None, None)),
        "/[a-z0-9/._-]{0,20}".prop_map(|p| (Some(p), None, None)),
        "/[a-z0-9/._-]{0,20}".prop_map(|p| (None, Some(p), None)),
        "/[a-z]{1,8}(/.*)?".prop_map(|p| (None, None, Some(regex::escape(&p)))),
    ];
    let methods = prop::sample::subsequence(
        vec!["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"],
        0..3,
    )
    .prop_map(|m| m.into_iter().map(str::to_owned).collect::<Vec<_>>());
    let header = (
        "[a-z][a-z0-9-]{0,15}",
        0u8..5,
        "[A-Za-z0-9 ._-]{1,20}",
        any::<bool>(),
    )
        .prop_map(|(name, which, value, invert)| {
            let mut header = IntentionHttpHeaderPermission {
                name,
                present: which == 0,
                exact: None,
                prefix: None,
                suffix: None,
                regex: None,
                invert,
            };
            match which {
                1 => header.exact = Some(value),
                2 => header.prefix = Some(value),
                3 => header.suffix = Some(value),
                4 => header.regex = Some(regex::escape(&value)),
                _ => {}
            }
            header
        });
    (path, methods, prop::collection::vec(header, 0..3))
        .prop_map(|((path_exact, path_prefix, path_regex), methods, header)| {
            IntentionHttpPermission {
                path_exact,
                path_prefix,
                path_regex,
                methods,
                header,
            }
        })
        .prop_filter("an HTTP permission needs a condition", |p| !p.is_empty())
}

fn source_intention(wildcard_destination: bool) -> impl Strategy<Value = SourceIntention> {
    let action = prop_oneof![Just(IntentionAction::Allow), Just(IntentionAction::Deny)];
    let permission =
        (action.clone(), http_permission()).prop_map(|(action, http)| IntentionPermission {
            action,
            http: Some(http),
        });
    let rules = if wildcard_destination {
        action.prop_map(|a| (Some(a), Vec::new())).boxed()
    } else {
        prop_oneof![
            action.prop_map(|a| (Some(a), Vec::new())),
            prop::collection::vec(permission, 1..3).prop_map(|p| (None, p)),
        ]
        .boxed()
    };
    (
        prop_oneof![4 => entry_name(), 1 => Just("*".to_owned())],
        prop::option::of(peer_name()),
        prop::option::of(Just("default".to_owned())),
        rules,
        prop::option::of(".{1,40}"),
    )
        .prop_map(
            |(name, peer, namespace, (action, permissions), description)| SourceIntention {
                name,
                peer,
                namespace,
                partition: None,
                action,
                permissions,
                description,
                precedence: 0,
                source_type: IntentionSourceType::Consul,
                legacy: Default::default(),
            },
        )
}

fn service_intentions() -> impl Strategy<Value = ServiceIntentions> {
    prop_oneof![4 => entry_name(), 1 => Just("*".to_owned())]
        .prop_flat_map(|name| {
            let wildcard = name == "*";
            (
                Just(name),
                prop::collection::vec(source_intention(wildcard), 0..5),
                meta(),
            )
        })
        .prop_map(|(name, sources, meta)| {
            let mut seen = std::collections::HashSet::new();
            let sources = sources
                .into_iter()
                .filter(|s| seen.insert((s.peer.clone(), s.name.clone())))
                .collect();
            let mut entry = ServiceIntentions {
                name,
                namespace: None,
                sources,
                meta,
                create_index: 0,
                modify_index: 0,
            };
            entry.update_precedence();
            entry
        })
}

fn config_entry() -> impl Strategy<Value = ConfigEntry> {
    prop_oneof![
        exported_services().prop_map(ConfigEntry::ExportedServices),
        service_intentions().prop_map(ConfigEntry::ServiceIntentions),
    ]
}

/// Arbitrary text shaped a little like a config entry in HCL.
fn hcl_like() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("Kind = \"service-intentions\"\n".to_owned()),
        Just("Kind = \"exported-services\"\n".to_owned()),
        Just("Name = \"web\"\n".to_owned()),
        Just("Sources = [\n".to_owned()),
        Just("Services = [\n".to_owned()),
        Just("{\n".to_owned()),
        Just("}\n".to_owned()),
        Just("]\n".to_owned()),
        Just(",".to_owned()),
        Just("Action = \"allow\"\n".to_owned()),
        Just("Peer = \"p\"\n".to_owned()),
        Just("${".to_owned()),
        Just("<<EOF\n".to_owned()),
        Just("EOF\n".to_owned()),
        Just("Meta { a = 1 }\n".to_owned()),
        "[a-zA-Z_]{1,8} = \"[^\"]{0,8}\"\n",
        "[a-zA-Z_]{1,8} = [0-9.e+-]{1,8}\n",
        ".{0,6}",
    ];
    prop::collection::vec(token, 0..20).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parse_document_never_panics_on_text(text in ".{0,300}") {
        if let Ok(value) = parse_document(&text) {
            let _ = ConfigEntry::from_json(value);
        }
    }

    #[test]
    fn parse_document_never_panics_on_hcl_shaped_text(text in hcl_like()) {
        if let Ok(value) = parse_document(&text) {
            let _ = ConfigEntry::from_json(value);
        }
    }

    #[test]
    fn from_json_never_panics(value in json_value(), kind in prop::sample::select(vec!["service-intentions", "exported-services", "other"])) {
        let _ = ConfigEntry::from_json(value.clone());
        if let serde_json::Value::Object(mut object) = value {
            object.insert("Kind".into(), kind.into());
            let _ = ConfigEntry::from_json(serde_json::Value::Object(object));
        }
    }

    #[test]
    fn valid_entries_round_trip_through_json(entry in config_entry()) {
        prop_assert_eq!(entry.validate(), Ok(()));
        let json = entry.to_json();
        prop_assert_eq!(ConfigEntry::from_json(json.clone()), Ok(entry.clone()));
        // And as the text a user sends.
        let text = serde_json::to_string_pretty(&json).unwrap();
        let value = parse_document(&text).unwrap();
        prop_assert_eq!(ConfigEntry::from_json(value), Ok(entry));
    }

    #[test]
    fn valid_entries_round_trip_through_hcl(entry in config_entry()) {
        let text = hcl::to_string(&entry.to_json()).unwrap();
        let value = parse_document(&text);
        prop_assert!(value.is_ok(), "{:?}\n{}", value, text);
        prop_assert_eq!(ConfigEntry::from_json(value.unwrap()), Ok(entry), "{}", text);
    }
}

// --------------------------------------------------------------- durations

proptest! {
    #![proptest_config(config())]

    #[test]
    fn durations_round_trip(nanos in 0u64..=i64::MAX as u64) {
        let d = Duration::from_nanos(nanos);
        let text = duration::format(d);
        prop_assert_eq!(duration::parse(&text), Ok(d), "{}", text);
    }

    #[test]
    fn short_durations_round_trip(nanos in 0u64..10_000_000_000_000) {
        let d = Duration::from_nanos(nanos);
        prop_assert_eq!(duration::parse(&duration::format(d)), Ok(d));
    }

    #[test]
    fn duration_parse_never_panics(text in any::<String>()) {
        let _ = duration::parse(&text);
    }

    #[test]
    fn duration_parse_never_panics_on_duration_shaped_text(text in "[-+]?([0-9]{0,25}(\\.[0-9]{0,25})?(ns|us|µs|μs|ms|s|m|h|x|)){0,6}") {
        if let Ok(d) = duration::parse(&text) {
            // Whatever is accepted fits Go's int64 nanoseconds and formats back to itself.
            prop_assert!(d.as_nanos() <= i64::MAX as u128);
            prop_assert_eq!(duration::parse(&duration::format(d)), Ok(d));
        }
    }

    #[test]
    fn sums_of_units_parse_to_their_total(h in 0u64..1000, m in 0u64..1000, s in 0u64..1000, ms in 0u64..1000, us in 0u64..1000, ns in 0u64..1000) {
        let text = format!("{h}h{m}m{s}s{ms}ms{us}us{ns}ns");
        let expected = Duration::from_secs(h * 3600 + m * 60 + s)
            + Duration::from_millis(ms)
            + Duration::from_micros(us)
            + Duration::from_nanos(ns);
        prop_assert_eq!(duration::parse(&text), Ok(expected));
    }
}
