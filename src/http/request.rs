//! [`Req`]: what a handler sees of a request, with the body already read (bounded) and
//! decoders that name the offending field in their errors.

use std::net::IpAddr;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Other,
}

impl Method {
    pub fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => Method::Other,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    /// The path without the query string.
    pub path: String,
    pub query: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub client_ip: IpAddr,
    /// Whether the TCP peer itself is on loopback (never taken from a header).
    pub peer_is_loopback: bool,
    pub request_id: String,
}

impl Req {
    /// A request with no headers and no body, for tests and internal calls.
    pub fn new(method: Method, path: &str) -> Req {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        Req {
            method,
            path: path.to_string(),
            query: query.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            client_ip: IpAddr::from([127, 0, 0, 1]),
            peer_is_loopback: true,
            request_id: "test".into(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The bearer token, if the request carries a well-formed one.
    pub fn bearer(&self) -> Option<&str> {
        let value = self.header("authorization")?.trim();
        let (scheme, token) = value.split_once(' ')?;
        let token = token.trim();
        let well_formed = scheme.eq_ignore_ascii_case("bearer")
            && !token.is_empty()
            && token.len() <= 512
            && token.bytes().all(|b| b.is_ascii_graphic());
        well_formed.then_some(token)
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }

    fn is_form(&self) -> bool {
        self.header("content-type")
            .map(|ct| ct.trim().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"))
            .unwrap_or(false)
    }

    /// The body as a JSON object, or a form decoded into one (all values strings).
    pub fn object(&self, allow_form: bool) -> Result<Map<String, Value>, ApiError> {
        // `curl -d '{...}'` labels JSON as a form; a form body never starts with '{'.
        let looks_like_json = self.body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if allow_form && self.is_form() && !looks_like_json {
            return Ok(form_urlencoded::parse(&self.body)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect());
        }
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::InvalidRequest("The request body is empty; send a JSON object.".into()));
        }
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(ApiError::InvalidRequest("The request body must be a JSON object.".into())),
            Err(e) => Err(ApiError::InvalidRequest(format!(
                "The request body is not valid JSON (line {}, column {}).",
                e.line(),
                e.column()
            ))),
        }
    }

    /// Decodes a JSON object (after `object`) into `T`, naming the field that is wrong.
    pub fn decode<T: DeserializeOwned>(map: Map<String, Value>) -> Result<T, ApiError> {
        serde_path_to_error::deserialize(Value::Object(map)).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            match (path.as_str(), inner.strip_prefix("missing field ")) {
                (".", Some(field)) => ApiError::InvalidRequest(format!("{field} is missing.")),
                (".", None) => ApiError::InvalidRequest(format!("The request body is not acceptable: {inner}.")),
                (_, _) => ApiError::InvalidRequest(format!("`{path}` {inner}.")),
            }
        })
    }
}

/// The client's address: the socket peer, or with `trust_forwarded_for` the last
/// X-Forwarded-For entry, which is the one the operator's own proxy appended (earlier
/// entries are whatever the client chose to send).
pub fn client_ip(peer: Option<IpAddr>, forwarded_for: Option<&str>, trust: bool) -> IpAddr {
    let peer = peer.unwrap_or(IpAddr::from([127, 0, 0, 1]));
    if !trust {
        return peer;
    }
    forwarded_for.and_then(|v| v.rsplit(',').next()).and_then(|last| last.trim().parse().ok()).unwrap_or(peer)
}

/// The caller's X-Request-Id when it is at most 64 safe characters, else a fresh one.
pub fn request_id(sent: Option<&str>) -> String {
    match sent {
        Some(id)
            if !id.is_empty()
                && id.len() <= 64
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) =>
        {
            id.to_string()
        }
        _ => crate::secrets::unique_id(8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        code: String,
        app: Option<String>,
    }

    fn with_body(ct: &str, body: &str) -> Req {
        let mut r = Req::new(Method::Post, "/v1/login");
        r.headers.push(("content-type".into(), ct.into()));
        r.body = body.as_bytes().to_vec();
        r
    }

    #[test]
    fn json_errors_name_the_field() {
        let r = with_body("application/json", r#"{"app":"main"}"#);
        let e = Req::decode::<Body>(r.object(true).unwrap()).unwrap_err();
        assert_eq!(e.message(), "`code` is missing.");
        let r = with_body("application/json", r#"{"code":5}"#);
        let e = Req::decode::<Body>(r.object(true).unwrap()).unwrap_err();
        assert!(e.message().starts_with("`code` invalid type: integer `5`, expected a string"), "{}", e.message());
        let r = with_body("application/json", r#"{"code":"#);
        assert!(r.object(true).unwrap_err().message().contains("not valid JSON"));
        let r = with_body("application/json", "[1]");
        assert!(r.object(true).unwrap_err().message().contains("JSON object"));
    }

    #[test]
    fn forms_decode_with_plus_as_space_and_percent_escapes() {
        let r = with_body("application/x-www-form-urlencoded; charset=utf-8", "code=a%2Bb+c&app=main");
        let b: Body = Req::decode(r.object(true).unwrap()).unwrap();
        assert_eq!(b.code, "a+b c");
        assert!(with_body("application/x-www-form-urlencoded", "code=x").object(false).is_err());
        let r = with_body("application/x-www-form-urlencoded", r#" {"code":"x"}"#);
        assert_eq!(Req::decode::<Body>(r.object(true).unwrap()).unwrap().code, "x");
    }

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        let mut r = Req::new(Method::Get, "/v1/session");
        assert_eq!(r.bearer(), None);
        r.headers.push(("authorization".into(), "bearer abc".into()));
        assert_eq!(r.bearer(), Some("abc"));
        r.headers[0].1 = "Basic abc".into();
        assert_eq!(r.bearer(), None);
        r.headers[0].1 = "Bearer ".into();
        assert_eq!(r.bearer(), None);
    }

    #[test]
    fn forwarded_for_is_trusted_only_when_configured_and_only_its_last_entry() {
        let peer = Some(IpAddr::from([10, 0, 0, 1]));
        let xff = Some("1.1.1.1, 2.2.2.2");
        assert_eq!(client_ip(peer, xff, false), IpAddr::from([10, 0, 0, 1]));
        assert_eq!(client_ip(peer, xff, true), IpAddr::from([2, 2, 2, 2]));
        assert_eq!(client_ip(peer, Some("garbage"), true), IpAddr::from([10, 0, 0, 1]));
    }

    #[test]
    fn request_ids_are_kept_only_when_safe() {
        assert_eq!(request_id(Some("abc-123")), "abc-123");
        assert_ne!(request_id(Some("a b")), "a b");
        assert_ne!(request_id(Some(&"x".repeat(65))), "x".repeat(65));
        assert_eq!(request_id(None).len(), 16);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn content_type() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("application/json".to_string()),
                Just("application/x-www-form-urlencoded".to_string()),
                Just(" Application/X-WWW-Form-Urlencoded ; charset=utf-8".to_string()),
                Just("text/plain".to_string()),
                ".{0,40}",
            ]
        }

        fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..256),
                // Near-JSON and near-form text reaches deeper into the decoders.
                r#"[ \t\r\n]{0,2}\{("(code|app)":("[^"]{0,10}"|-?[0-9]{1,4}|null|true|\[\]|\{\}),?){0,3}\}?"#
                    .prop_map(String::into_bytes),
                "((code|app|%[0-9A-Fa-f]{0,2}|[a-z+]{0,4})=?[^&]{0,10}&?){0,4}".prop_map(String::into_bytes),
            ]
        }

        fn safe_id(id: &str) -> bool {
            (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn prop_arbitrary_bodies_decode_or_fail_with_a_message(
                ct in proptest::option::of(content_type()), body in body_bytes(), allow_form in any::<bool>()
            ) {
                let mut r = Req::new(Method::Post, "/v1/login");
                if let Some(ct) = ct {
                    r.headers.push(("content-type".into(), ct));
                }
                r.body = body;
                match r.object(allow_form) {
                    Ok(map) => {
                        if let Err(e) = Req::decode::<Body>(map) {
                            prop_assert!(!e.message().trim().is_empty());
                            prop_assert_eq!(e.status(), 400);
                        }
                    }
                    Err(e) => {
                        prop_assert!(!e.message().trim().is_empty());
                        prop_assert_eq!(e.status(), 400);
                    }
                }
            }

            #[test]
            fn prop_header_values_never_panic(
                auth in prop_oneof![".{0,80}", "(?i:bearer)[ \t]{0,3}[!-~ ]{0,600}"],
                xff in proptest::option::of(prop_oneof![".{0,80}", "([0-9a-f:.]{0,20}, ?){0,4}[0-9a-f:. ]{0,40}"]),
                id in proptest::option::of(prop_oneof![".{0,80}", "[A-Za-z0-9._:-]{0,70}"]),
                peer in proptest::option::of(any::<[u8; 4]>()),
                trust in any::<bool>(),
            ) {
                let mut r = Req::new(Method::Get, "/v1/session");
                r.headers.push(("authorization".into(), auth));
                if let Some(t) = r.bearer() {
                    prop_assert!(!t.is_empty() && t.len() <= 512 && t.bytes().all(|b| b.is_ascii_graphic()));
                }
                let peer = peer.map(IpAddr::from);
                let ip = client_ip(peer, xff.as_deref(), trust);
                if !trust || xff.is_none() {
                    prop_assert_eq!(ip, peer.unwrap_or(IpAddr::from([127, 0, 0, 1])));
                }
                let got = request_id(id.as_deref());
                prop_assert!(safe_id(&got), "{:?}", got);
                if let Some(id) = id.filter(|i| safe_id(i)) {
                    prop_assert_eq!(got, id);
                }
            }

            #[test]
            fn prop_form_bodies_round_trip(
                pairs in prop::collection::vec(("\\PC{0,12}", "\\PC{0,12}"), 0..6)
            ) {
                let mut ser = form_urlencoded::Serializer::new(String::new());
                for (k, v) in &pairs {
                    ser.append_pair(k, v);
                }
                let r = with_body("application/x-www-form-urlencoded", &ser.finish());
                let mut want = Map::new();
                for (k, v) in pairs {
                    want.insert(k, Value::String(v));
                }
                prop_assert_eq!(r.object(true).unwrap(), want);
            }
        }
    }
}
