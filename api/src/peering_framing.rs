//! Framing of the replication stream: one JSON message per line (NDJSON),
//! in both directions, split with tokio-util's [`LinesCodec`], which scans
//! each byte for `\n` once (it remembers how far it looked) and refuses a
//! line longer than its limit as soon as the buffer passes it, so a peer
//! cannot make us buffer more than the limit plus one read.
//!
//! The first line of a stream (the dialer's `Open`) is read with a small
//! limit ([`MAX_OPEN_LINE_BYTES`]) before the stream secret is checked;
//! the session's lines with a larger one (the agent's
//! `peering_max_message_bytes`, [`DEFAULT_MAX_MESSAGE_BYTES`]).

use bytes::BytesMut;
use tokio_util::codec::{Decoder, LinesCodec, LinesCodecError};

use crate::peering::StreamMessage;

/// The longest `Open` line: a peering ID and a secret need well under 1 KiB.
pub const MAX_OPEN_LINE_BYTES: usize = 8 * 1024;
/// The longest session line by default: one service with all its
/// instances is one line.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Why a stream could not be framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("stream message longer than {0} bytes")]
    TooLong(usize),
    #[error("stream message is not UTF-8")]
    NotUtf8,
    #[error("stream ended in the middle of a message")]
    Truncated,
    #[error("malformed stream message: {0}")]
    Malformed(String),
}

/// Splits bytes pushed into it into lines, each at most `max_line` bytes
/// (without its `\n`; a `\r` before it is dropped).
#[derive(Debug)]
pub struct LineFramer {
    codec: LinesCodec,
    max_line: usize,
    buffer: BytesMut,
}

impl LineFramer {
    pub fn new(max_line: usize) -> LineFramer {
        LineFramer {
            codec: LinesCodec::new_with_max_length(max_line),
            max_line,
            buffer: BytesMut::new(),
        }
    }

    /// Changes the limit for the lines still to come (e.g. after `Open`).
    /// Meant for between lines: the new codec scans the buffered bytes
    /// from their start again, which loses nothing.
    pub fn set_max_line(&mut self, max_line: usize) {
        self.codec = LinesCodec::new_with_max_length(max_line);
        self.max_line = max_line;
    }

    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Appends bytes read from the transport.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// Bytes received but not yet returned as lines.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// The next complete line, `None` if more bytes are needed. After an
    /// error the stream is unusable.
    pub fn next_line(&mut self) -> Result<Option<String>, FrameError> {
        self.codec.decode(&mut self.buffer).map_err(|e| match e {
            LinesCodecError::MaxLineLengthExceeded => FrameError::TooLong(self.max_line),
            LinesCodecError::Io(_) => FrameError::NotUtf8,
        })
    }

    /// At the end of the transport: fine only between lines.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buffer.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated)
        }
    }
}

/// Parses one line as a [`StreamMessage`].
pub fn parse_message(line: &str) -> Result<StreamMessage, FrameError> {
    serde_json::from_str(line).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// One message as a line, `\n` included.
pub fn encode_message(message: &StreamMessage) -> Vec<u8> {
    let mut line = serde_json::to_vec(message).expect("stream messages serialize");
    line.push(b'\n');
    line
}

/// Decodes a whole byte sequence delivered in `chunks`: every message, or
/// the first error. What a fuzz target or a property test calls.
pub fn decode_all<'a>(
    chunks: impl IntoIterator<Item = &'a [u8]>,
    max_line: usize,
) -> Result<Vec<StreamMessage>, FrameError> {
    let mut framer = LineFramer::new(max_line);
    let mut messages = Vec::new();
    for chunk in chunks {
        framer.push(chunk);
        while let Some(line) = framer.next_line()? {
            messages.push(parse_message(&line)?);
        }
        // The buffer never holds more than the limit plus the last chunk.
        debug_assert!(framer.buffered() <= max_line + 1 + chunk.len());
    }
    framer.finish()?;
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn message() -> impl Strategy<Value = StreamMessage> {
        let name = "[a-z][a-z0-9-]{0,20}";
        prop_oneof![
            Just(StreamMessage::Heartbeat),
            Just(StreamMessage::Terminate),
            (name, "[ -~]{0,40}").prop_map(|(peer_id, stream_secret)| StreamMessage::Open {
                peer_id,
                stream_secret
            }),
            proptest::collection::vec(name, 0..5)
                .prop_map(|services| StreamMessage::ExportedServices { services }),
            proptest::collection::vec("\\PC{0,12}", 0..3)
                .prop_map(|addresses| StreamMessage::Gateways { addresses }),
        ]
    }

    /// Cuts `bytes` at the given (sorted, deduplicated) offsets.
    fn split_at(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut chunks = Vec::new();
        let mut from = 0;
        for cut in cuts {
            chunks.push(bytes[from..cut].to_vec());
            from = cut;
        }
        chunks.push(bytes[from..].to_vec());
        chunks
    }

    proptest! {
        #[test]
        fn any_split_decodes_to_the_same_messages(
            messages in proptest::collection::vec(message(), 0..12),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let bytes: Vec<u8> = messages.iter().flat_map(encode_message).collect();
            let chunks = split_at(&bytes, &cuts);
            let decoded = decode_all(chunks.iter().map(Vec::as_slice), 4096).unwrap();
            prop_assert_eq!(decoded, messages);
        }

        #[test]
        fn an_over_long_line_is_an_error_without_buffering_past_the_cap(
            max in 16usize..512,
            extra in 1usize..4096,
            chunk in 1usize..64,
        ) {
            let mut framer = LineFramer::new(max);
            let line = vec![b'x'; max + extra];
            let mut result = Ok(None);
            for piece in line.chunks(chunk) {
                framer.push(piece);
                prop_assert!(framer.buffered() <= max + chunk + 1);
                result = framer.next_line();
                if result.is_err() {
                    break;
                }
            }
            prop_assert_eq!(result, Err(FrameError::TooLong(max)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
        ) {
            let _ = decode_all(chunks.iter().map(Vec::as_slice), 128);
        }
    }

    #[test]
    fn lines_at_the_limit_pass_and_one_more_byte_fails() {
        let mut framer = LineFramer::new(4);
        framer.push(b"abcd\nabcde\n");
        assert_eq!(framer.next_line(), Ok(Some("abcd".into())));
        assert_eq!(framer.next_line(), Err(FrameError::TooLong(4)));
    }

    #[test]
    fn the_limit_can_grow_after_the_first_line() {
        let mut framer = LineFramer::new(8);
        framer.push(b"{\"a\":1}\n0123456789abcdef\n");
        assert_eq!(framer.next_line(), Ok(Some("{\"a\":1}".into())));
        framer.set_max_line(64);
        assert_eq!(framer.next_line(), Ok(Some("0123456789abcdef".into())));
        assert_eq!(framer.finish(), Ok(()));
    }

    #[test]
    fn truncated_and_malformed_streams_are_errors() {
        assert_eq!(
            decode_all([&b"{\"Type\":\"Heartbeat\"}"[..]], 64),
            Err(FrameError::Truncated)
        );
        assert!(matches!(
            decode_all([&b"nope\n"[..]], 64),
            Err(FrameError::Malformed(_))
        ));
        assert_eq!(decode_all([&b"\xff\n"[..]], 64), Err(FrameError::NotUtf8));
        assert_eq!(
            decode_all([&b"{\"Type\":\"Heartbeat\"}\r\n"[..]], 64),
            Ok(vec![StreamMessage::Heartbeat])
        );
    }
}
