//! Reads the server name (SNI) from a TLS ClientHello *without consuming
//! it*: the bytes stay in the socket so the connection can afterwards be
//! terminated here (peering) or passed through untouched (service traffic
//! routed by SNI).
//!
//! Only the first TLS record is examined (at most 5 + 16 KiB bytes); a
//! ClientHello that does not fit in one record is refused.

use std::time::Duration;

use tokio::net::TcpStream;

/// A TLS record header: content type, version, length.
const RECORD_HEADER: usize = 5;
/// The largest plaintext record payload TLS allows (2^14).
const MAX_RECORD_PAYLOAD: usize = 16 * 1024;
/// The most bytes [`peek_server_name`] ever looks at.
pub const MAX_HELLO_BYTES: usize = RECORD_HEADER + MAX_RECORD_PAYLOAD;

const CONTENT_TYPE_HANDSHAKE: u8 = 0x16;
const HANDSHAKE_CLIENT_HELLO: u8 = 0x01;
const EXTENSION_SERVER_NAME: u16 = 0x0000;
const NAME_TYPE_HOST_NAME: u8 = 0x00;

/// Why no server name could be read.
#[derive(Debug, thiserror::Error)]
pub enum SniError {
    #[error("not a TLS handshake record (content type {0:#04x})")]
    NotHandshake(u8),
    #[error("unsupported TLS record version {0:#04x}{1:02x}")]
    BadVersion(u8, u8),
    #[error("TLS record of {0} bytes is larger than the 16 KiB maximum")]
    RecordTooLarge(usize),
    #[error("first handshake message is not a ClientHello (type {0:#04x})")]
    NotClientHello(u8),
    #[error("the ClientHello spans more than one TLS record")]
    SpansRecords,
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
    #[error("connection closed after {0} bytes, before a complete ClientHello")]
    Closed(usize),
    #[error("no complete ClientHello within {0:?}")]
    Timeout(Duration),
    #[error("reading the ClientHello: {0}")]
    Io(#[from] std::io::Error),
}

/// The outcome of parsing what has arrived so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// At least this many bytes (in total) are needed to decide.
    NeedMore(usize),
    /// A complete ClientHello, with its server name if it carried one.
    Hello(Option<String>),
}

/// Parses the start of a TLS connection (one record holding a ClientHello).
pub fn parse_client_hello(buf: &[u8]) -> Result<Parsed, SniError> {
    if buf.len() < RECORD_HEADER {
        // Fail fast on non-TLS bytes rather than waiting for five of them.
        if let Some(&first) = buf.first() {
            if first != CONTENT_TYPE_HANDSHAKE {
                return Err(SniError::NotHandshake(first));
            }
        }
        return Ok(Parsed::NeedMore(RECORD_HEADER));
    }
    if buf[0] != CONTENT_TYPE_HANDSHAKE {
        return Err(SniError::NotHandshake(buf[0]));
    }
    // Record versions seen in ClientHellos: 3.0 (some clients) .. 3.3 (TLS 1.2/1.3).
    if buf[1] != 0x03 || buf[2] > 0x04 {
        return Err(SniError::BadVersion(buf[1], buf[2]));
    }
    let record_len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if record_len > MAX_RECORD_PAYLOAD {
        return Err(SniError::RecordTooLarge(record_len));
    }
    if record_len < 4 {
        return Err(SniError::Malformed(
            "record too short for a handshake header",
        ));
    }
    let total = RECORD_HEADER + record_len;
    if buf.len() < total {
        return Ok(Parsed::NeedMore(total));
    }
    let record = &buf[RECORD_HEADER..total];
    if record[0] != HANDSHAKE_CLIENT_HELLO {
        return Err(SniError::NotClientHello(record[0]));
    }
    let hello_len =
        (usize::from(record[1]) << 16) | (usize::from(record[2]) << 8) | usize::from(record[3]);
    if hello_len > record.len() - 4 {
        return Err(SniError::SpansRecords);
    }
    let mut hello = Reader(&record[4..4 + hello_len]);
    server_name_from_hello(&mut hello).map(Parsed::Hello)
}

fn server_name_from_hello(hello: &mut Reader<'_>) -> Result<Option<String>, SniError> {
    hello.skip(2, "legacy version")?;
    hello.skip(32, "random")?;
    let session_id = hello.u8("session id length")?;
    if session_id > 32 {
        return Err(SniError::Malformed("session id longer than 32 bytes"));
    }
    hello.skip(usize::from(session_id), "session id")?;
    let suites = hello.u16("cipher suites length")?;
    if suites == 0 || suites % 2 != 0 {
        return Err(SniError::Malformed("cipher suites length"));
    }
    hello.skip(usize::from(suites), "cipher suites")?;
    let compression = hello.u8("compression methods length")?;
    if compression == 0 {
        return Err(SniError::Malformed("no compression methods"));
    }
    hello.skip(usize::from(compression), "compression methods")?;
    if hello.0.is_empty() {
        // A hello without extensions (pre-TLS 1.2 style) carries no SNI.
        return Ok(None);
    }
    let extensions_len = hello.u16("extensions length")?;
    let mut extensions = Reader(hello.take(usize::from(extensions_len), "extensions")?);
    if !hello.0.is_empty() {
        return Err(SniError::Malformed("trailing bytes after the extensions"));
    }
    let mut found = None;
    while !extensions.0.is_empty() {
        let kind = extensions.u16("extension type")?;
        let len = extensions.u16("extension length")?;
        let data = extensions.take(usize::from(len), "extension data")?;
        if kind == EXTENSION_SERVER_NAME {
            if found.is_some() {
                return Err(SniError::Malformed("duplicate server_name extension"));
            }
            found = Some(host_name(&mut Reader(data))?);
        }
    }
    Ok(found.flatten())
}

/// The `host_name` entry of a server_name extension (RFC 6066 §3).
fn host_name(ext: &mut Reader<'_>) -> Result<Option<String>, SniError> {
    let list_len = ext.u16("server name list length")?;
    let mut list = Reader(ext.take(usize::from(list_len), "server name list")?);
    let mut name = None;
    while !list.0.is_empty() {
        let kind = list.u8("server name type")?;
        let len = list.u16("server name length")?;
        let bytes = list.take(usize::from(len), "server name")?;
        if kind != NAME_TYPE_HOST_NAME {
            continue;
        }
        if name.is_some() {
            return Err(SniError::Malformed("more than one host_name"));
        }
        let valid = !bytes.is_empty() && bytes.iter().all(|b| b.is_ascii_graphic());
        if !valid {
            return Err(SniError::Malformed("server name is not printable ASCII"));
        }
        // Validated as ASCII above, so this cannot fail.
        name = Some(String::from_utf8_lossy(bytes).to_ascii_lowercase());
    }
    Ok(name)
}

/// A bounds-checked cursor over a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SniError> {
        if self.0.len() < n {
            return Err(SniError::Malformed(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn skip(&mut self, n: usize, what: &'static str) -> Result<(), SniError> {
        self.take(n, what).map(|_| ())
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, SniError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, SniError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
}

/// Peeks at the socket until a complete ClientHello record has arrived and
/// returns its server name; nothing is consumed. Gives up after `timeout`.
pub async fn peek_server_name(
    stream: &TcpStream,
    timeout: Duration,
) -> Result<Option<String>, SniError> {
    tokio::time::timeout(timeout, peek_loop(stream))
        .await
        .map_err(|_| SniError::Timeout(timeout))?
}

async fn peek_loop(stream: &TcpStream) -> Result<Option<String>, SniError> {
    let mut header = [0u8; RECORD_HEADER];
    let mut buf: Vec<u8> = Vec::new();
    let mut seen = 0;
    // tokio has no peek that waits for *new* bytes: a peek returns at once
    // while anything is buffered. When a peek shows nothing new (a hello
    // split across segments), back off briefly before looking again.
    let mut backoff = Duration::from_millis(1);
    loop {
        let n = if buf.is_empty() {
            stream.peek(&mut header).await?
        } else {
            stream.peek(&mut buf).await?
        };
        if n == 0 {
            return Err(SniError::Closed(seen));
        }
        let view = if buf.is_empty() {
            &header[..n]
        } else {
            &buf[..n]
        };
        match parse_client_hello(view)? {
            Parsed::Hello(name) => return Ok(name),
            Parsed::NeedMore(needed) if needed > RECORD_HEADER && buf.len() < needed => {
                // The header is complete: size the buffer to the whole record.
                buf.resize(needed, 0);
            }
            Parsed::NeedMore(_) => {}
        }
        if n > seen {
            seen = n;
            backoff = Duration::from_millis(1);
            continue;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::ServerName;
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// The first flight of a real rustls client.
    fn client_hello(server_name: &str) -> Vec<u8> {
        let config = rustls::ClientConfig::builder_with_provider(isthmus_api::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = ServerName::try_from(server_name.to_owned()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        out
    }

    #[test]
    fn reads_the_server_name_of_a_rustls_hello() {
        let hello = client_hello("server.c1.peering.abc.isthmus");
        assert_eq!(
            parse_client_hello(&hello).unwrap(),
            Parsed::Hello(Some("server.c1.peering.abc.isthmus".into()))
        );
    }

    #[test]
    fn an_ip_address_hello_carries_no_sni() {
        let hello = client_hello("127.0.0.1");
        assert_eq!(parse_client_hello(&hello).unwrap(), Parsed::Hello(None));
    }

    #[test]
    fn truncated_hellos_ask_for_more() {
        let hello = client_hello("backend.default.default.peer.external.td.isthmus");
        let total = hello.len();
        assert_eq!(parse_client_hello(&[]).unwrap(), Parsed::NeedMore(5));
        assert_eq!(
            parse_client_hello(&hello[..3]).unwrap(),
            Parsed::NeedMore(5)
        );
        for cut in [5, 6, 40, total - 1] {
            assert_eq!(
                parse_client_hello(&hello[..cut]).unwrap(),
                Parsed::NeedMore(total),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(
            parse_client_hello(b"GET / HTTP/1.1\r\n"),
            Err(SniError::NotHandshake(b'G'))
        ));
        assert!(matches!(
            parse_client_hello(b"G"),
            Err(SniError::NotHandshake(b'G'))
        ));
        assert!(matches!(
            parse_client_hello(&[0x16, 0x02, 0x00, 0, 4]),
            Err(SniError::BadVersion(2, 0))
        ));
        assert!(matches!(
            parse_client_hello(&[0x16, 0x03, 0x01, 0x40, 0x01]),
            Err(SniError::RecordTooLarge(16385))
        ));
        assert!(matches!(
            parse_client_hello(&[0x16, 0x03, 0x01, 0, 4, 0x02, 0, 0, 0]),
            Err(SniError::NotClientHello(2))
        ));

        // A hello whose declared length runs past its record.
        let mut hello = client_hello("a.example");
        hello[7] = hello[7].wrapping_add(1);
        assert!(matches!(
            parse_client_hello(&hello),
            Err(SniError::SpansRecords)
        ));

        // Extensions length larger than what is there.
        let hello = client_hello("a.example");
        let mut corrupt = hello.clone();
        let ext_len_at = 5 + 4 + 2 + 32 + 1 + usize::from(hello[5 + 4 + 2 + 32]);
        let suites = usize::from(u16::from_be_bytes([
            corrupt[ext_len_at],
            corrupt[ext_len_at + 1],
        ]));
        let ext_len_at = ext_len_at + 2 + suites + 2;
        corrupt[ext_len_at] = 0xff;
        assert!(matches!(
            parse_client_hello(&corrupt),
            Err(SniError::Malformed(_))
        ));

        // Random bytes after a valid header never panic.
        let mut state = 0x1234_5678_u32;
        for _ in 0..200 {
            let mut junk = vec![0x16, 0x03, 0x01, 0x00, 0x40];
            for _ in 0..0x40 {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                junk.push((state >> 24) as u8);
            }
            let _ = parse_client_hello(&junk);
        }
    }

    #[tokio::test]
    async fn peeking_waits_for_a_split_hello_and_consumes_nothing() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hello = client_hello("server.c1.peering.abc.isthmus");
        let (first, second) = hello.split_at(hello.len() / 2);
        let (first, second) = (first.to_vec(), second.to_vec());
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let client = tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(&first).await.unwrap();
            stream.flush().await.unwrap();
            release_rx.await.unwrap();
            stream.write_all(&second).await.unwrap();
            stream
        });
        let (server, _) = listener.accept().await.unwrap();
        // Let the first half arrive and be seen as incomplete.
        let mut probe = vec![0u8; hello.len()];
        let n = server.peek(&mut probe).await.unwrap();
        assert!(n < hello.len());
        release_tx.send(()).unwrap();
        let name = peek_server_name(&server, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("server.c1.peering.abc.isthmus"));
        // Nothing was consumed: the whole hello is still readable.
        let mut all = vec![0u8; hello.len()];
        let mut read = 0;
        while read < all.len() {
            server.readable().await.unwrap();
            match server.try_read(&mut all[read..]) {
                Ok(n) => read += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(all, hello);
        drop(client.await.unwrap());
    }

    #[tokio::test]
    async fn peeking_is_bounded_in_time_and_reports_eof() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        stream.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
        let err = peek_server_name(&server, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, SniError::Timeout(_)), "{err}");

        // Closed before sending anything.
        drop(TcpStream::connect(addr).await.unwrap());
        let (server, _) = listener.accept().await.unwrap();
        let err = peek_server_name(&server, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, SniError::Closed(0)), "{err}");
        drop(stream);
    }
}
