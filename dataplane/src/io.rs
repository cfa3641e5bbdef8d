//! Byte-level plumbing for both roles: a stream wrapper that counts what
//! passes through it (into Prometheus counters, and optionally into an
//! activity count for idle timeouts), and splicing two streams together.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Counts bytes read from and written to a connection into `read` and
/// `written` (say, a direction's `tcp_read_bytes_total` /
/// `tcp_write_bytes_total`).
#[derive(Debug)]
pub struct CountingIo<T> {
    inner: T,
    read: IntCounter,
    written: IntCounter,
    /// Bytes either way, for whoever watches the connection for idleness.
    activity: Option<Arc<AtomicU64>>,
}

impl<T> CountingIo<T> {
    pub fn new(inner: T, read: IntCounter, written: IntCounter) -> CountingIo<T> {
        CountingIo {
            inner,
            read,
            written,
            activity: None,
        }
    }

    /// Also adds every byte either way to `activity`.
    pub fn with_activity(mut self, activity: Arc<AtomicU64>) -> CountingIo<T> {
        self.activity = Some(activity);
        self
    }

    fn moved(&self, n: usize) {
        if let Some(activity) = &self.activity {
            activity.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CountingIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            let n = buf.filled().len() - before;
            if n > 0 {
                this.read.inc_by(n as u64);
                this.moved(n);
            }
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountingIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            this.written.inc_by(*n as u64);
            this.moved(*n);
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &polled {
            this.written.inc_by(*n as u64);
            this.moved(*n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// How a splice ended.
#[derive(Debug)]
pub enum Spliced {
    /// Both sides finished: bytes a→b and b→a.
    Done(u64, u64),
    Failed(io::Error),
    /// `stop` resolved first.
    Stopped,
}

/// Copies both ways (half-closes propagate) until both sides are done or
/// `stop` resolves.
pub async fn splice<A, B>(a: &mut A, b: &mut B, stop: impl Future<Output = ()>) -> Spliced
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    tokio::select! {
        copied = tokio::io::copy_bidirectional(a, b) => match copied {
            Ok((ab, ba)) => Spliced::Done(ab, ba),
            Err(e) => Spliced::Failed(e),
        },
        _ = stop => Spliced::Stopped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn counts_both_ways() {
        let read = IntCounter::new("read_bytes", "read").unwrap();
        let written = IntCounter::new("written_bytes", "written").unwrap();
        let activity = Arc::new(AtomicU64::new(0));
        let (near, mut far) = tokio::io::duplex(64);
        let mut counted =
            CountingIo::new(near, read.clone(), written.clone()).with_activity(activity.clone());
        counted.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        far.read_exact(&mut buf).await.unwrap();
        far.write_all(b"abc").await.unwrap();
        let mut buf = [0u8; 3];
        counted.read_exact(&mut buf).await.unwrap();
        assert_eq!(written.get(), 5);
        assert_eq!(read.get(), 3);
        assert_eq!(activity.load(Ordering::Relaxed), 8);
    }
}
