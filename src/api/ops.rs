//! /healthz and /metrics.

use serde_json::json;

use crate::app::App;
use crate::error::ApiError;
use crate::http::{Req, Resp};

/// 200 only when the database really answers, so that a health check catches a
/// damaged or missing file, not just a running process.
pub fn healthz(app: &App, _req: &Req) -> Result<Resp, ApiError> {
    if app.is_stopping() {
        return Ok(Resp::json(503, json!({"status": "unavailable", "reason": "shutting down"})));
    }
    match app.store.ping() {
        Ok(()) => Ok(Resp::ok(json!({"status": "ok"}))),
        Err(e) => {
            log::error!("health check: the database does not answer: {e}");
            Ok(Resp::json(503, json!({"status": "unavailable", "reason": "the database does not answer"})))
        }
    }
}

/// Private by default: served to a caller on loopback only.
pub fn metrics(app: &App, req: &Req) -> Result<Resp, ApiError> {
    if !app.config.server.metrics_public && !caller_is_local(req) {
        return Err(ApiError::NotFound);
    }
    let live = app.store.live_sessions(crate::store::now()).unwrap_or(-1);
    let ages = token_ages(app);
    let mut text = app.metrics.render(live, &ages);
    if app.payments.is_some() {
        text.push_str(&app.metrics.render_pay(&app.store.order_counts().unwrap_or_default()));
    }
    Ok(Resp::text("text/plain; version=0.0.4", text))
}

/// The TCP peer must be on loopback; behind a same-host proxy (`trust_forwarded_for`)
/// that is the proxy, so the forwarded client (`client_ip`) must be on loopback too.
/// Without `trust_forwarded_for`, `client_ip` is the peer and the header counts for nothing.
fn caller_is_local(req: &Req) -> bool {
    req.peer_is_loopback && req.client_ip.to_canonical().is_loopback()
}

fn token_ages(app: &App) -> Vec<(String, i64)> {
    let now = crate::store::now();
    app.config
        .apps
        .iter()
        .filter_map(|a| match app.store.load_access_token(&a.name) {
            Ok(Some(t)) => Some((a.name.clone(), now - t.fetched_at)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;

    fn app(dir: &std::path::Path, metrics_public: bool) -> App {
        let text = format!(
            "[server]\nmetrics_public = {metrics_public}\n[database]\npath = \"m.db\"\n\
             [[apps]]\nname = \"main\"\nappid = \"wx1234567890\"\nsecret = \"s\"\n"
        );
        App::open(crate::config::parse(&text, dir, &|_| None).unwrap()).unwrap()
    }

    #[test]
    fn metrics_are_private_to_loopback_unless_public() {
        let dir = std::env::temp_dir().join(format!("wxlogin-metrics-{}", crate::secrets::random_id(6)));
        let mut remote = Req::new(Method::Get, "/metrics");
        remote.peer_is_loopback = false;
        remote.client_ip = std::net::IpAddr::from([203, 0, 113, 7]);
        // A forwarded header claiming loopback changes nothing.
        remote.headers.push(("x-forwarded-for".into(), "127.0.0.1".into()));

        let private = app(&dir, false);
        assert!(matches!(metrics(&private, &remote), Err(ApiError::NotFound)));
        let local = metrics(&private, &Req::new(Method::Get, "/metrics")).unwrap();
        assert_eq!(local.status, 200);
        // Through a proxy on this host (trust_forwarded_for): the forwarded client decides.
        let mut proxied = Req::new(Method::Get, "/metrics");
        proxied.client_ip = std::net::IpAddr::from([203, 0, 113, 9]);
        assert!(matches!(metrics(&private, &proxied), Err(ApiError::NotFound)));
        proxied.client_ip = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(metrics(&private, &proxied).unwrap().status, 200);
        drop(private);

        let public = app(&dir, true);
        let r = metrics(&public, &remote).unwrap();
        assert_eq!(r.status, 200);
        let crate::http::response::Body::Text { text, .. } = r.body else { panic!("metrics are text") };
        assert!(text.contains("wxlogin_live_sessions 0"), "{text}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
