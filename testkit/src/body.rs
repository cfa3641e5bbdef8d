//! HTTP request bodies for tests: a whole body, or one the test keeps open
//! and feeds chunk by chunk (a peering stream, a slow upload).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Frame;
use tokio::sync::mpsc;

/// A body fed through the sender [`channel`] returns; it ends when every
/// sender is dropped.
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// A whole body or a [`ChannelBody`], so one connection can send both.
pub type RequestBody = Either<Full<Bytes>, ChannelBody>;

/// A whole body.
pub fn full(body: impl Into<Bytes>) -> RequestBody {
    Either::Left(Full::new(body.into()))
}

/// An open body and the sender that feeds it.
pub fn channel() -> (mpsc::Sender<Bytes>, RequestBody) {
    let (tx, rx) = mpsc::channel(16);
    (tx, Either::Right(ChannelBody(rx)))
}
