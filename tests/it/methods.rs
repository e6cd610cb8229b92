//! Which methods each path answers: HEAD wherever GET is (uptime monitors probe with
//! HEAD), PUT and POST /v1/me beside PATCH (`wx.request` cannot send PATCH), and
//! `Allow` headers that list what is really answered.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::json;

use crate::support::*;

/// A raw HTTP/1.1 request on its own connection (closed after the answer); returns the
/// status, the lower-cased headers and every byte that followed the head.
fn raw(addr: SocketAddr, head: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream.write_all(head.as_bytes()).expect("send");
    let mut bytes = Vec::new();
    // With `Connection: close` the server closes after the answer: read to the end.
    let _ = stream.read_to_end(&mut bytes);
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| {
        panic!("no complete head in {:?}", String::from_utf8_lossy(&bytes));
    });
    let head_text = String::from_utf8_lossy(&bytes[..split]).to_string();
    let mut lines = head_text.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, bytes[split + 4..].to_vec())
}

fn head(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    raw(addr, &format!("HEAD {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn head_healthz_is_200_with_the_get_headers_and_no_body() {
    let s = TestServer::start();
    let get = s.get("/healthz", None);
    let (status, headers, body) = head(s.addr(), "/healthz");
    assert_eq!(status, 200, "HEAD /healthz: {headers:?}");
    assert!(body.is_empty(), "a HEAD answer carries no body: {:?}", String::from_utf8_lossy(&body));
    assert_eq!(header(&headers, "content-type"), get.header("content-type"));
    assert_eq!(header(&headers, "content-length"), Some(get.text.len().to_string().as_str()));
    assert!(header(&headers, "x-request-id").is_some());
}

#[test]
fn head_session_without_a_token_is_401_with_www_authenticate() {
    let s = TestServer::start();
    let (status, headers, body) = head(s.addr(), "/v1/session");
    assert_eq!(status, 401);
    assert!(body.is_empty());
    assert!(header(&headers, "www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{headers:?}");
    // And with a token, what GET answers.
    let (token, _) = s.login("hank");
    let (status, _, body) = raw(
        s.addr(),
        &format!("HEAD /v1/me HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!((status, body.len()), (200, 0));
    let (status, headers, _) = head(s.addr(), "/v1/auth");
    assert_eq!(status, 401, "{headers:?}");
}

#[test]
fn head_on_a_route_without_get_is_405_listing_what_it_takes() {
    let s = TestServer::start();
    let (status, headers, body) = head(s.addr(), "/v1/login");
    assert_eq!(status, 405);
    assert!(body.is_empty());
    assert_eq!(header(&headers, "allow"), Some("POST"));
    let r = send(&s.url("/v1/session"), "PUT", None, Some("{}".into()), &[]);
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD, DELETE")));
    let r = s.post("/healthz", None, &json!({}));
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
}

#[test]
fn put_and_post_update_the_profile_as_patch_does() {
    let s = TestServer::start();
    let (token, _) = s.login("ivy");
    let r = send(&s.url("/v1/me"), "PUT", Some(&token), Some(json!({"nickname": "Ivy"}).to_string()), &[]);
    assert_eq!(r.status, 200, "PUT: {}", r.text);
    assert_eq!(r.json()["nickname"], "Ivy");
    let r = s.post("/v1/me", Some(&token), &json!({"avatar_url": "https://img.example.com/i.png"}));
    assert_eq!(r.status, 200, "POST: {}", r.text);
    let me = s.get("/v1/me", Some(&token)).json();
    assert_eq!(
        (me["nickname"].as_str(), me["avatar_url"].as_str()),
        (Some("Ivy"), Some("https://img.example.com/i.png"))
    );
    // The same checks as PATCH: a partial update with nothing in it, a bad field, no token.
    let r = s.post("/v1/me", Some(&token), &json!({}));
    assert_eq!((r.status, r.error_code()), (400, "invalid_request".into()));
    let r = send(&s.url("/v1/me"), "PUT", Some(&token), Some(json!({"nickname": ""}).to_string()), &[]);
    assert_eq!((r.status, r.error_code()), (422, "invalid_field".into()));
    assert_eq!(s.post("/v1/me", None, &json!({"nickname": "x"})).status, 401);
    let r = send(&s.url("/v1/me"), "DELETE", Some(&token), None, &[]);
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD, PATCH, PUT, POST")));
}
