//! Slow or oversized request heads: the server must not let a client hold a connection open by
//! trickling headers, nor accept unbounded header blocks.

// Test code throughout, helpers included: clippy.toml's allowances for tests apply to all of it.
#![cfg(test)]

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far above the 1 s configured in these tests, still below the 10 s default, so a pass shows
/// the configured value is the one in force.
const GENEROUS_BOUND: Duration = Duration::from_secs(6);

/// Reads until the server closes the connection; returns what it sent, or `None` if it stayed
/// open for `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut received = Vec::new();
    let outcome = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    outcome
        .ok()
        .map(|()| String::from_utf8_lossy(&received).into_owned())
}

#[tokio::test]
async fn a_client_that_stops_mid_headers_is_disconnected_after_the_header_read_timeout() {
    let server = TestServer::start_with("header_read_timeout_secs = 1", "").await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /jwks.json HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: appl")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream, GENEROUS_BOUND).await;
    let answer = answer.expect("the server kept a half-sent request open for 6 s (the configured timeout is 1 s, the default 10 s)");
    assert!(
        !answer.contains("200 OK"),
        "an incomplete request must not be answered: {answer}"
    );
}

#[tokio::test]
async fn a_client_that_sends_only_part_of_the_request_line_is_disconnected() {
    let server = TestServer::start_with("header_read_timeout_secs = 1", "").await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"GET /jwks").await.unwrap();
    assert!(
        read_until_closed(&mut stream, GENEROUS_BOUND)
            .await
            .is_some(),
        "the server kept a half-sent request line open for 6 s (the configured timeout is 1 s, the default 10 s)"
    );
}

#[tokio::test]
async fn a_complete_request_is_still_served_with_the_timeout_configured() {
    let server = TestServer::start_with("header_read_timeout_secs = 1", "").await;
    let resp = reqwest::get(server.url("/jwks.json")).await.unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
}

#[tokio::test]
async fn too_many_headers_or_too_large_a_head_get_431() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    let mut many = reqwest::header::HeaderMap::new();
    for i in 0..100 {
        many.insert(
            reqwest::header::HeaderName::from_bytes(format!("x-filler-{i}").as_bytes()).unwrap(),
            reqwest::header::HeaderValue::from_static("1"),
        );
    }
    let resp = client
        .get(server.url("/jwks.json"))
        .headers(many)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 431);

    let resp = client
        .get(server.url("/jwks.json"))
        .header("x-big", "a".repeat(20 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 431);
}

#[tokio::test]
async fn a_client_that_connects_and_sends_nothing_is_disconnected() {
    let server = TestServer::start_with("header_read_timeout_secs = 1", "").await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        read_until_closed(&mut stream, GENEROUS_BOUND)
            .await
            .is_some(),
        "the server kept a silent connection open for 6 s (the configured timeout is 1 s, the default 10 s)"
    );
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_disconnected() {
    let server = TestServer::start_with("header_read_timeout_secs = 1", "").await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /jwks.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream, GENEROUS_BOUND)
        .await
        .expect("the server kept an idle kept-alive connection open for 6 s (the configured timeout is 1 s, the default 10 s)");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
