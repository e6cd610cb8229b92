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

/// Private by default: decided from the TCP peer, never from a forwarded header.
pub fn metrics(app: &App, req: &Req) -> Result<Resp, ApiError> {
    if !app.config.server.metrics_public && !req.peer_is_loopback {
        return Err(ApiError::NotFound);
    }
    let live = app.store.live_sessions(crate::store::now()).unwrap_or(-1);
    let ages = token_ages(app);
    Ok(Resp::text("text/plain; version=0.0.4", app.metrics.render(live, &ages)))
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
