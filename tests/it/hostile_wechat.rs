//! Whatever sits at `wechat.api_base` is not trusted: a jscode2session reply whose
//! openid or unionid is not in WeChat's form is an unreadable reply (502 wechat_error),
//! nothing is stored, and no response ever carries what it tried to inject.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use wxlogin::app::App;
use wxlogin::http::RunningServer;

use crate::support::*;

/// A "WeChat" that answers every request with HTTP 200 and the JSON it is told to.
struct HostileWeChat {
    base: String,
    reply: Arc<Mutex<Value>>,
}

impl HostileWeChat {
    fn start() -> HostileWeChat {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let reply = Arc::new(Mutex::new(json!({})));
        let shared = Arc::clone(&reply);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let body = shared.lock().unwrap().to_string();
                std::thread::spawn(move || answer(stream, &body));
            }
        });
        HostileWeChat { base, reply }
    }

    fn answer_with(&self, v: Value) {
        *self.reply.lock().unwrap() = v;
    }
}

/// Reads one request head and answers it, then closes the connection.
fn answer(mut stream: TcpStream, body: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes());
}

/// A raw GET /v1/auth: the whole response as bytes on the wire, headers unparsed.
fn raw_auth(server: &RunningServer, token: &str) -> String {
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!("GET /v1/auth HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAA==";

#[test]
fn ids_not_in_wechats_form_are_refused_before_anything_is_stored() {
    let wechat = HostileWeChat::start();
    let dir = TempDir::new("hostile-wechat");
    let config = test_config(dir.path(), &wechat.base);
    let db = config.database.path.clone();
    let server = RunningServer::start(Arc::new(App::open(config).unwrap())).unwrap();
    let base = format!("http://{}", server.addr());
    let login = || send(&format!("{base}/v1/login"), "POST", None, Some(json!({"code": "c0de"}).to_string()), &[]);

    let hostile = [
        json!({"openid": "abc\r\nX-Evil: 1", "session_key": KEY}),
        json!({"openid": "oGood0000000000000000000000", "session_key": KEY, "unionid": "u\r\nX-Evil: 1"}),
        json!({"openid": "abc\nX-Evil: 1", "session_key": KEY}),
        json!({"openid": "has space", "session_key": KEY}),
        json!({"openid": "x".repeat(65), "session_key": KEY}),
        json!({"openid": "\u{e9}t\u{e9}", "session_key": KEY}),
    ];
    for reply in hostile {
        wechat.answer_with(reply.clone());
        let r = login();
        if r.status == 200 {
            let wire = raw_auth(&server, r.json()["token"].as_str().unwrap());
            assert!(!wire.lines().any(|l| l.starts_with("X-Evil")), "{reply}: /v1/auth was split:\n{wire}");
        }
        assert_eq!(r.status, 502, "{reply}: {}", r.text);
        assert_eq!(r.error_code(), "wechat_error", "{reply}");
        for echoed in ["X-Evil", "has space", "xxxxxxxxxx", "\u{e9}t"] {
            assert!(!r.text.contains(echoed), "{reply}: the value was echoed: {}", r.text);
        }
        assert!(openids(&db).is_empty(), "{reply}: a user was stored");
    }

    // The same server takes a reply in WeChat's form, and /v1/auth carries it as sent.
    let good = "oAbc-_0123456789abcdefghijkl";
    wechat.answer_with(json!({"openid": good, "session_key": KEY, "unionid": "oUnion_-0123456789abcdefghi"}));
    let r = login();
    assert_eq!(r.status, 200, "{}", r.text);
    let wire = raw_auth(&server, r.json()["token"].as_str().unwrap());
    assert!(wire.contains(&format!("X-OpenId: {good}\r\n")), "{wire}");
    assert_eq!(openids(&db), vec![good.to_string()]);
    server.shutdown();
}
