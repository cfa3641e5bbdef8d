//! Coalescing a streamed body's small data frames without holding any.
//!
//! An application that streams its response in small writes (4 KiB is
//! common) would otherwise cost one HTTP/2 DATA frame, one TLS record and
//! one write per chunk on every hop. [`Coalesce`] wraps a body: when the
//! inner body yields a data frame, it keeps polling while the inner body is
//! ready with more and appends it into one buffer, up to a bound (one TLS
//! record's worth by default).
//!
//! When the inner body is pending after new data came in, the wrapper
//! steps aside for one pass of the runtime's ready tasks (it wakes itself
//! and returns `Pending`): hyper hands an HTTP/1 body over from its
//! connection task one chunk at a time, so the next chunk, already read,
//! is only delivered once that task has run. If that pass brought nothing
//! new, what was gathered is yielded at once: nothing waits for bytes the
//! application has not written, so a server-sent event written alone is
//! forwarded after at most one scheduler pass. Bytes and their order are
//! unchanged; only the frame boundaries move.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};

/// The default bound: the largest TLS record's plaintext, less an HTTP/2
/// DATA frame header, so one coalesced frame fits one record.
pub const DEFAULT_MAX: usize = 16 * 1024 - 9;

/// A body whose ready-at-once data frames are merged, up to `max` bytes.
#[derive(Debug)]
pub struct Coalesce<B: Body> {
    inner: B,
    max: usize,
    /// A frame polled from `inner` that did not fit (a data frame past the
    /// bound, trailers) or an error, yielded on the next poll.
    held: Option<Result<Frame<Bytes>, B::Error>>,
    /// `inner` ended while data was being gathered.
    ended: bool,
    /// Data gathered before stepping aside for one scheduler pass.
    gathered: Option<Gathered>,
}

/// Data frames gathered so far: copied only once a second one comes.
#[derive(Debug)]
enum Gathered {
    One(Bytes),
    Many(BytesMut),
}

impl Gathered {
    fn len(&self) -> usize {
        match self {
            Gathered::One(b) => b.len(),
            Gathered::Many(b) => b.len(),
        }
    }

    fn push(&mut self, data: &[u8], max: usize) {
        if let Gathered::One(first) = self {
            let mut buf = BytesMut::with_capacity(max.max(first.len() + data.len()));
            buf.extend_from_slice(first);
            *self = Gathered::Many(buf);
        }
        if let Gathered::Many(buf) = self {
            buf.extend_from_slice(data);
        }
    }

    fn into_frame(self) -> Frame<Bytes> {
        Frame::data(match self {
            Gathered::One(b) => b,
            Gathered::Many(b) => b.freeze(),
        })
    }
}

/// Why [`Coalesce::gather`] stopped.
enum Stop {
    /// The inner body is pending.
    Pending,
    /// The bound is reached, the inner body ended, or a frame is held.
    Done,
}

impl<B: Body> Coalesce<B> {
    /// Merges ready data frames up to `max` bytes; a `max` of 0 passes
    /// every frame through as it comes.
    pub fn new(inner: B, max: usize) -> Coalesce<B> {
        Coalesce {
            inner,
            max,
            held: None,
            ended: false,
            gathered: None,
        }
    }

    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> Coalesce<B>
where
    B: Body + Unpin,
    B::Data: Buf,
{
    /// Appends the inner body's ready data frames to `gathered` up to the
    /// bound; says whether it appended any, and why it stopped.
    fn gather(&mut self, gathered: &mut Gathered, cx: &mut Context<'_>) -> (bool, Stop) {
        let mut appended = false;
        loop {
            if gathered.len() >= self.max {
                return (appended, Stop::Done);
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return (appended, Stop::Pending),
                Poll::Ready(None) => {
                    self.ended = true;
                    return (appended, Stop::Done);
                }
                Poll::Ready(Some(Err(e))) => {
                    self.held = Some(Err(e));
                    return (appended, Stop::Done);
                }
                Poll::Ready(Some(Ok(frame))) => {
                    let frame = to_bytes(frame);
                    match frame.data_ref() {
                        Some(data) if gathered.len() + data.len() <= self.max => {
                            gathered.push(data, self.max);
                            appended = true;
                        }
                        _ => {
                            self.held = Some(Ok(frame));
                            return (appended, Stop::Done);
                        }
                    }
                }
            }
        }
    }
}

// The held frame or error is never pinned: moving it is fine.
impl<B: Body + Unpin> Unpin for Coalesce<B> {}

fn to_bytes<D: Buf>(frame: Frame<D>) -> Frame<Bytes> {
    frame.map_data(|mut d| d.copy_to_bytes(d.remaining()))
}

impl<B> Body for Coalesce<B>
where
    B: Body + Unpin,
    B::Data: Buf,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if let Some(held) = this.held.take() {
            return Poll::Ready(Some(held));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        let (mut gathered, mut fresh) = match this.gathered.take() {
            // Back after stepping aside: only what came since is new.
            Some(gathered) => (gathered, false),
            None => {
                let first = match Pin::new(&mut this.inner).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => to_bytes(frame),
                    other => return other.map(|o| o.map(|r| r.map(to_bytes))),
                };
                match first.into_data() {
                    Ok(data) if data.len() < this.max && !this.inner.is_end_stream() => {
                        (Gathered::One(data), true)
                    }
                    Ok(data) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                }
            }
        };
        let (appended, stop) = this.gather(&mut gathered, cx);
        fresh |= appended;
        if matches!(stop, Stop::Pending) && fresh {
            // New data, then pending: step aside for one pass of the
            // ready tasks (a self-woken task goes to the back of the
            // queue), then yield whatever has come by then.
            this.gathered = Some(gathered);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Some(Ok(gathered.into_frame())))
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.gathered.is_none() && (self.ended || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let held = match &self.held {
            Some(Ok(frame)) => frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => 0,
        } + self.gathered.as_ref().map_or(0, |g| g.len() as u64);
        if self.ended {
            return SizeHint::with_exact(held);
        }
        let mut hint = self.inner.size_hint();
        if held > 0 {
            hint.set_lower(hint.lower() + held);
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper + held);
            }
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;

    use http::HeaderMap;
    use proptest::prelude::*;

    use super::*;

    /// A body scripted step by step: a chunk, or one `Pending` before the
    /// next step, then trailers (optional) and the end.
    #[derive(Default)]
    struct Scripted {
        steps: VecDeque<Step>,
    }

    enum Step {
        Chunk(Bytes),
        Pending,
        Trailers,
    }

    impl Body for Scripted {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            match self.steps.pop_front() {
                None => Poll::Ready(None),
                Some(Step::Chunk(b)) => Poll::Ready(Some(Ok(Frame::data(b)))),
                Some(Step::Trailers) => {
                    let mut map = HeaderMap::new();
                    map.insert("x-done", "1".parse().unwrap());
                    Poll::Ready(Some(Ok(Frame::trailers(map))))
                }
                Some(Step::Pending) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            }
        }

        fn is_end_stream(&self) -> bool {
            self.steps.is_empty()
        }
    }

    /// Everything the wrapper yields, in order; `Pending` as `None`.
    fn drain(body: Scripted, max: usize) -> Vec<Option<Frame<Bytes>>> {
        let mut body = Coalesce::new(body, max);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut out = Vec::new();
        loop {
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(None) => return out,
                Poll::Ready(Some(Ok(frame))) => out.push(Some(frame)),
                Poll::Ready(Some(Err(never))) => match never {},
                Poll::Pending => out.push(None),
            }
        }
    }

    fn chunk(n: usize, fill: u8) -> Step {
        Step::Chunk(Bytes::from(vec![fill; n]))
    }

    fn data_lens(frames: &[Option<Frame<Bytes>>]) -> Vec<Option<usize>> {
        frames
            .iter()
            .map(|f| f.as_ref().and_then(|f| f.data_ref().map(Bytes::len)))
            .collect()
    }

    #[test]
    fn ready_chunks_merge_up_to_the_bound() {
        let steps = (0..16).map(|i| chunk(4096, i)).collect();
        let frames = drain(Scripted { steps }, 16 * 1024);
        assert_eq!(data_lens(&frames), vec![Some(16384); 4]);
    }

    #[test]
    fn a_pending_inner_body_gets_one_pass_then_what_was_gathered_goes() {
        // One `Pending`: the producer has not run yet; two in a row: it
        // has nothing more (the application is quiet).
        let steps = VecDeque::from([
            chunk(10, 1),
            chunk(10, 2),
            Step::Pending,
            chunk(10, 3),
            Step::Pending,
            Step::Pending,
            chunk(10, 4),
        ]);
        let frames = drain(Scripted { steps }, DEFAULT_MAX);
        assert_eq!(data_lens(&frames), vec![None, None, Some(30), Some(10)]);
    }

    #[test]
    fn large_frames_pass_untouched_and_trailers_keep_their_place() {
        let steps = VecDeque::from([chunk(100, 1), chunk(20_000, 2), chunk(5, 3), Step::Trailers]);
        let frames = drain(Scripted { steps }, DEFAULT_MAX);
        assert_eq!(
            data_lens(&frames),
            vec![Some(100), Some(20_000), Some(5), None]
        );
        let last = frames.last().unwrap().as_ref().unwrap();
        assert_eq!(last.trailers_ref().unwrap()["x-done"], "1");
    }

    #[test]
    fn end_of_stream_and_size_hint_count_held_frames() {
        let steps = VecDeque::from([chunk(10, 1), chunk(DEFAULT_MAX, 2)]);
        let mut body = Coalesce::new(Scripted { steps }, DEFAULT_MAX);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let first = Pin::new(&mut body).poll_frame(&mut cx);
        assert!(matches!(first, Poll::Ready(Some(Ok(ref f))) if f.data_ref().unwrap().len() == 10));
        assert!(!body.is_end_stream());
        assert_eq!(body.size_hint().lower(), DEFAULT_MAX as u64);
        let _ = Pin::new(&mut body).poll_frame(&mut cx);
        assert!(body.is_end_stream());
    }

    proptest! {
        /// Streaming correctness: whatever the chunk sizes and where the
        /// inner body is pending, the bytes come out identical and in
        /// order, no frame exceeds the bound unless it came in that large,
        /// and nothing is held back across a `Pending`.
        #[test]
        fn bytes_are_identical_whatever_the_boundaries(
            script in proptest::collection::vec((0usize..6000, 0usize..3), 0..40),
            max in 1usize..20_000,
        ) {
            let mut steps = VecDeque::new();
            let mut expected = Vec::new();
            // Byte offsets at which the application went quiet (two
            // `Pending`s in a row: the producer had nothing to deliver).
            let mut quiet_at = Vec::new();
            for (i, (len, pauses)) in script.iter().enumerate() {
                if *pauses >= 2 {
                    quiet_at.push(expected.len());
                }
                for _ in 0..*pauses {
                    steps.push_back(Step::Pending);
                }
                let bytes: Vec<u8> = (0..*len).map(|j| (i * 31 + j) as u8).collect();
                expected.extend_from_slice(&bytes);
                steps.push_back(Step::Chunk(Bytes::from(bytes)));
            }
            let largest_in = script.iter().map(|(l, _)| *l).max().unwrap_or(0);
            let frames = drain(Scripted { steps }, max);
            let mut got = Vec::new();
            let mut boundaries = vec![0];
            for frame in frames.iter().flatten() {
                let data = frame.data_ref().unwrap();
                prop_assert!(data.len() <= max.max(largest_in));
                got.extend_from_slice(data);
                boundaries.push(got.len());
            }
            prop_assert_eq!(got, expected);
            // Nothing written before the application went quiet waits
            // behind the silence: every such point ends a frame.
            for at in quiet_at {
                prop_assert!(boundaries.contains(&at), "bytes before {} held back", at);
            }
        }
    }
}
