//! The benchmark's backend: a small hyper server. `/1k` answers 1 KiB in one
//! piece; `/64k` streams 64 KiB in 16 chunks of 4 KiB.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

pub const SMALL: usize = 1024;
pub const LARGE_CHUNK: usize = 4096;
pub const LARGE_CHUNKS: usize = 16;

async fn handle(request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let response = match request.uri().path() {
        "/1k" => Response::new(Full::new(Bytes::from(vec![b'x'; SMALL])).boxed()),
        "/64k" => {
            let chunk = Bytes::from(vec![b'y'; LARGE_CHUNK]);
            let frames = (0..LARGE_CHUNKS).map(move |_| Ok(Frame::data(chunk.clone())));
            Response::new(StreamBody::new(stream::iter(frames)).boxed())
        }
        _ => {
            let mut response = Response::new(Full::new(Bytes::from_static(b"not found")).boxed());
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    };
    Ok(response)
}

/// Binds 127.0.0.1:0 and serves HTTP/1.1 and h2c until the runtime ends.
pub async fn start() -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("bind backend")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let _ = socket.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(handle);
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    Ok(addr)
}
