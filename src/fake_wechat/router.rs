//! From a request line to a reply: WeChat endpoints, control endpoints, or 404.

use super::api::{self, Call, Method};
use super::control;
use super::pay;
use super::reply::Reply;
use super::state::Shared;

/// Routes one request. The configured latency is slept before the state lock is taken,
/// so slow replies overlap instead of queueing behind each other.
pub(crate) fn route(shared: &Shared, method: Method, url: &str, body: &[u8]) -> Reply {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    if let Some(api) = api::api_for_path(path) {
        let query: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let latency = shared.lock().behaviour.latency;
        shared.pause(latency);
        let call = Call { method, query: &query, body };
        let now = shared.clock.now();
        return api::handle(&mut shared.lock(), api, &call, now);
    }
    if path.starts_with("/__fake/pay/") {
        return pay::control::handle(&shared.pay, method, path, query, body);
    }
    if path.starts_with("/__fake/") {
        return control::handle(shared, method, path, body);
    }
    Reply::fake_error(404, &format!("no such endpoint: {path}"))
}
