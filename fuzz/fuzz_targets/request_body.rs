//! A login request's body and headers, as a client may send them: JSON or a form, any
//! bytes at all. Decoding must give a request or an error naming the field, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxlogin::api::decrypt::OpenDataFields;
use wxlogin::api::login::LoginBody;
use wxlogin::http::{Method, Req};

fuzz_target!(|data: &[u8]| {
    // First byte: which content type; the next line, if any, an Authorization header.
    let Some((&kind, rest)) = data.split_first() else { return };
    let (auth, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&[][..], rest),
    };
    let mut req = Req::new(Method::Post, "/v1/login");
    let content_type = match kind % 3 {
        0 => "application/json",
        1 => "application/x-www-form-urlencoded",
        _ => "text/plain",
    };
    req.headers.push(("content-type".into(), content_type.into()));
    req.headers.push(("authorization".into(), String::from_utf8_lossy(auth).into_owned()));
    req.body = body.to_vec();
    let _ = req.bearer();
    if let Ok(map) = req.object(kind % 2 == 1) {
        if let Ok(Some(fields)) = OpenDataFields::from_body(&map) {
            let _ = fields.check_shape();
        }
        let _ = Req::decode::<LoginBody>(map);
    }
});
