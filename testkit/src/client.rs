//! An HTTP/1.1 client over a real loopback connection, one connection per
//! request, for servers started by a test (the adapters behind real
//! servers, `uip-cache serve`, the admin listener).

use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use crate::Got;

/// Sends one request to `addr` and reads the whole response; panics if the
/// exchange fails. `host: origin.test` unless `headers` name a host.
pub async fn send(addr: SocketAddr, method: &str, uri: &str, headers: &[(&str, &str)]) -> Got {
    send_body(addr, method, uri, headers, Bytes::new()).await
}

/// A GET of `uri` from `addr`.
pub async fn get(addr: SocketAddr, uri: &str, headers: &[(&str, &str)]) -> Got {
    send(addr, "GET", uri, headers).await
}

/// [`send`] with a body.
pub async fn send_body(
    addr: SocketAddr,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Got {
    try_send(addr, method, uri, headers, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {uri} to {addr}: {e}"))
}

/// [`send_body`], with the error of a failed exchange (the server closed
/// the connection without an answer, say).
pub async fn try_send(
    addr: SocketAddr,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Got, hyper::Error> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut b = Request::builder().method(method).uri(uri);
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        b = b.header("host", "origin.test");
    }
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    let resp = sender
        .send_request(b.body(Full::new(body)).unwrap())
        .await?;
    Got::read(resp).await
}
