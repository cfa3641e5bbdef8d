//! HTTP bodies for tests: a whole request body, or one the test keeps open
//! and feeds chunk by chunk (a peering stream, a slow upload); and reading
//! a response whole, with a bound.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Frame, Incoming};
use tokio::sync::mpsc;

use crate::WAIT;

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

/// Status and body text of a response, failing the test if the body does
/// not end within [`WAIT`].
pub async fn read_all(response: http::Response<Incoming>) -> (u16, String) {
    read_all_within(WAIT, response).await
}

/// [`read_all`] with another bound.
pub async fn read_all_within(bound: Duration, response: http::Response<Incoming>) -> (u16, String) {
    let status = response.status().as_u16();
    let body = tokio::time::timeout(bound, response.into_body().collect())
        .await
        .expect("the body did not end")
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}
