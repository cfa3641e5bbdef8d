//! Property tests for the ClientHello/SNI peeking the gateway does on every
//! connection, before any authentication: arbitrary bytes never panic and
//! never make it look past one TLS record, and a well-formed ClientHello with
//! any host name yields that name, lower-cased, however its bytes arrive.

use std::time::Duration;

use isthmus_gateway::sni::{parse_client_hello, peek_server_name, Parsed, MAX_HELLO_BYTES};
use proptest::prelude::*;
use tokio::io::AsyncWriteExt;

/// A fixed seed (the suite is deterministic) and `cases` cases unless
/// `PROPTEST_CASES` / `PROPTEST_RNG_SEED` say otherwise.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = proptest::test_runner::RngSeed::Fixed(0x0511);
    }
    config.failure_persistence = None;
    config
}

/// The parts of a ClientHello the generator varies.
#[derive(Debug, Clone)]
struct Hello {
    record_version: u8,
    random: [u8; 32],
    session_id: Vec<u8>,
    cipher_suites: Vec<u16>,
    compression: Vec<u8>,
    /// Other extensions (type, data), none of them server_name.
    before: Vec<(u16, Vec<u8>)>,
    after: Vec<(u16, Vec<u8>)>,
    host_name: String,
}

fn extension() -> impl Strategy<Value = (u16, Vec<u8>)> {
    (1u16..=u16::MAX, prop::collection::vec(any::<u8>(), 0..40))
}

fn hello() -> impl Strategy<Value = Hello> {
    (
        0u8..=4,
        any::<[u8; 32]>(),
        prop::collection::vec(any::<u8>(), 0..=32),
        prop::collection::vec(any::<u16>(), 1..20),
        prop::collection::vec(any::<u8>(), 1..4),
        prop::collection::vec(extension(), 0..4),
        prop::collection::vec(extension(), 0..4),
        // Printable ASCII without space, upper and lower case.
        "[!-~]{1,200}",
    )
        .prop_map(
            |(
                record_version,
                random,
                session_id,
                cipher_suites,
                compression,
                before,
                after,
                host_name,
            )| Hello {
                record_version,
                random,
                session_id,
                cipher_suites,
                compression,
                before,
                after,
                host_name,
            },
        )
}

fn push_u16(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
}

fn push_extension(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    push_u16(out, data.len());
    out.extend_from_slice(data);
}

/// The TLS record bytes of `hello`.
fn encode(hello: &Hello) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&hello.random);
    body.push(u8::try_from(hello.session_id.len()).unwrap());
    body.extend_from_slice(&hello.session_id);
    push_u16(&mut body, hello.cipher_suites.len() * 2);
    for suite in &hello.cipher_suites {
        body.extend_from_slice(&suite.to_be_bytes());
    }
    body.push(u8::try_from(hello.compression.len()).unwrap());
    body.extend_from_slice(&hello.compression);

    let mut server_name = Vec::new();
    let name = hello.host_name.as_bytes();
    push_u16(&mut server_name, 1 + 2 + name.len());
    server_name.push(0); // host_name
    push_u16(&mut server_name, name.len());
    server_name.extend_from_slice(name);

    let mut extensions = Vec::new();
    for (kind, data) in &hello.before {
        push_extension(&mut extensions, *kind, data);
    }
    push_extension(&mut extensions, 0, &server_name);
    for (kind, data) in &hello.after {
        push_extension(&mut extensions, *kind, data);
    }
    push_u16(&mut body, extensions.len());
    body.extend_from_slice(&extensions);

    let mut handshake = vec![0x01];
    handshake.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);

    let mut record = vec![0x16, 0x03, hello.record_version];
    push_u16(&mut record, handshake.len());
    record.extend_from_slice(&handshake);
    record
}

/// What a parse of arbitrary bytes may answer: a bounded request for more,
/// an answer, or an error; never a panic, never more than one record.
fn check_bounded(buf: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(Parsed::NeedMore(needed)) = parse_client_hello(buf) {
        prop_assert!(
            needed > buf.len(),
            "asks for {needed} with {} there",
            buf.len()
        );
        prop_assert!(needed <= MAX_HELLO_BYTES, "asks for {needed} bytes");
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        check_bounded(&bytes)?;
    }

    #[test]
    fn arbitrary_record_bodies_never_panic(
        version in 0u8..=5,
        declared in 0usize..=MAX_HELLO_BYTES,
        body in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        // A plausible record header, so the parser gets past the first checks.
        let mut bytes = vec![0x16, 0x03, version];
        bytes.extend_from_slice(&u16::try_from(declared.min(usize::from(u16::MAX))).unwrap().to_be_bytes());
        bytes.push(0x01);
        bytes.extend_from_slice(&body);
        check_bounded(&bytes)?;
    }

    #[test]
    fn corrupted_hellos_never_panic(hello in hello(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = encode(&hello);
        for (at, value) in flips {
            let at = at.index(bytes.len());
            bytes[at] = value;
        }
        check_bounded(&bytes)?;
        for cut in [bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
            check_bounded(&bytes[..cut])?;
        }
    }

    #[test]
    fn a_valid_hello_yields_its_host_name_lower_cased(hello in hello(), trailing in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = encode(&hello);
        let expected = Parsed::Hello(Some(hello.host_name.to_ascii_lowercase()));
        prop_assert_eq!(parse_client_hello(&bytes).unwrap(), expected.clone());
        // Bytes after the record (the rest of the flight) change nothing.
        bytes.extend_from_slice(&trailing);
        prop_assert_eq!(parse_client_hello(&bytes).unwrap(), expected);
    }

    #[test]
    fn every_prefix_of_a_valid_hello_asks_for_more(hello in hello()) {
        // However the bytes are split across reads, each partial view asks
        // for more (the whole record once the header is there) and never
        // fails: the parser only ever sees a prefix of the stream.
        let bytes = encode(&hello);
        for cut in 0..bytes.len() {
            let want = if cut < 5 { 5 } else { bytes.len() };
            prop_assert_eq!(parse_client_hello(&bytes[..cut]).unwrap(), Parsed::NeedMore(want), "cut at {}", cut);
        }
    }
}

proptest! {
    // Real sockets: fewer cases.
    #![proptest_config(config(24))]

    #[test]
    fn peeking_a_hello_split_across_writes_yields_its_name(
        hello in hello(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let bytes = encode(&hello);
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len())).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let name = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
            client.set_nodelay(true).unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let peek = peek_server_name(&server, Duration::from_secs(10));
            let write = async {
                let mut from = 0;
                for cut in cuts.iter().copied().chain([bytes.len()]) {
                    client.write_all(&bytes[from..cut]).await.unwrap();
                    client.flush().await.unwrap();
                    // Give the peeker a chance to see each piece on its own.
                    tokio::task::yield_now().await;
                    from = cut;
                }
            };
            let (name, ()) = tokio::join!(peek, write);
            // Nothing was consumed: the whole hello is still there to read.
            let mut all = vec![0u8; bytes.len()];
            let mut read = 0;
            while read < all.len() {
                server.readable().await.unwrap();
                match server.try_read(&mut all[read..]) {
                    Ok(n) => read += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(all, bytes);
            name
        });
        prop_assert_eq!(name.unwrap(), Some(hello.host_name.to_ascii_lowercase()));
    }
}
