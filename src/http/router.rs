//! (method, path) -> route. The table is the API's table of contents.

use super::{Method, Req, Resp};
use crate::api;
use crate::app::App;
use crate::error::ApiError;

pub type Handler = fn(&App, &Req) -> Result<Resp, ApiError>;

/// Where a request runs. Anything that may wait on WeChat runs in the WeChat lane, so
/// that a slow or hung WeChat can never take the workers that answer session checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Local,
    WeChat,
}

pub struct Route {
    /// The path pattern, used as the metrics label.
    pub name: &'static str,
    pub lane: Lane,
    pub reads_body: bool,
    pub handler: Handler,
}

struct Entry {
    path: &'static str,
    allow: &'static str,
    methods: &'static [(Method, Route)],
}

const fn route(name: &'static str, lane: Lane, reads_body: bool, handler: Handler) -> Route {
    Route { name, lane, reads_body, handler }
}

use Lane::{Local, WeChat};

static ROUTES: &[Entry] = &[
    Entry {
        path: "/v1/login",
        allow: "POST",
        methods: &[(Method::Post, route("/v1/login", WeChat, true, api::login::login))],
    },
    Entry {
        path: "/v1/session",
        allow: "GET, HEAD, DELETE",
        methods: &[
            (Method::Get, route("/v1/session", Local, false, api::session::get)),
            (Method::Delete, route("/v1/session", Local, false, api::session::delete)),
        ],
    },
    Entry {
        path: "/v1/auth",
        allow: "GET, HEAD",
        methods: &[(Method::Get, route("/v1/auth", Local, false, api::session::auth))],
    },
    Entry {
        path: "/v1/me",
        allow: "GET, HEAD, PATCH, PUT, POST",
        // PUT and POST do what PATCH does: `wx.request` cannot send PATCH.
        methods: &[
            (Method::Get, route("/v1/me", Local, false, api::me::get)),
            (Method::Patch, route("/v1/me", Local, true, api::me::patch)),
            (Method::Put, route("/v1/me", Local, true, api::me::patch)),
            (Method::Post, route("/v1/me", Local, true, api::me::patch)),
        ],
    },
    Entry {
        path: "/v1/me/decrypt",
        allow: "POST",
        // The WeChat lane: a failure will ask WeChat's checksession (issue 4).
        methods: &[(Method::Post, route("/v1/me/decrypt", WeChat, true, api::decrypt::decrypt))],
    },
    Entry {
        path: "/v1/me/phone",
        allow: "POST",
        methods: &[(Method::Post, route("/v1/me/phone", WeChat, true, api::phone::phone))],
    },
    Entry {
        path: "/internal/v1/access_token",
        allow: "GET, HEAD, POST",
        methods: &[
            (Method::Get, route("/internal/v1/access_token", WeChat, false, api::internal::get_token)),
            (Method::Post, route("/internal/v1/access_token", WeChat, true, api::internal::report_token)),
        ],
    },
    // WeChat Pay (pay.md). Routes that may call WeChat Pay run in the WeChat lane; the
    // notification endpoint never does, so WeChat Pay's deliveries are never queued
    // behind a slow WeChat.
    Entry {
        path: "/v1/pay/orders",
        allow: "GET, HEAD, POST",
        methods: &[
            (Method::Get, route("/v1/pay/orders", Local, false, api::pay::orders::list)),
            (Method::Post, route("/v1/pay/orders", WeChat, true, api::pay::orders::create)),
        ],
    },
    Entry {
        path: "/v1/pay/orders/{out_trade_no}",
        allow: "GET, HEAD",
        // `?sync=true` asks WeChat Pay.
        methods: &[(Method::Get, route("/v1/pay/orders/{out_trade_no}", WeChat, false, api::pay::orders::get))],
    },
    Entry {
        path: "/v1/pay/orders/{out_trade_no}/payment",
        allow: "POST",
        methods: &[(
            Method::Post,
            route("/v1/pay/orders/{out_trade_no}/payment", WeChat, false, api::pay::orders::payment),
        )],
    },
    Entry {
        path: "/v1/pay/notify",
        allow: "POST",
        methods: &[(Method::Post, route("/v1/pay/notify", Local, true, api::pay::notify::notify))],
    },
    Entry {
        path: "/internal/v1/pay/orders",
        allow: "POST",
        methods: &[(Method::Post, route("/internal/v1/pay/orders", WeChat, true, api::pay::internal::create))],
    },
    Entry {
        path: "/internal/v1/pay/orders/{out_trade_no}",
        allow: "GET, HEAD",
        methods: &[(
            Method::Get,
            route("/internal/v1/pay/orders/{out_trade_no}", WeChat, false, api::pay::internal::get),
        )],
    },
    Entry {
        path: "/internal/v1/pay/orders/{out_trade_no}/close",
        allow: "POST",
        methods: &[(
            Method::Post,
            route("/internal/v1/pay/orders/{out_trade_no}/close", WeChat, false, api::pay::internal::close),
        )],
    },
    Entry {
        path: "/internal/v1/pay/orders/{out_trade_no}/refunds",
        allow: "POST",
        methods: &[(
            Method::Post,
            route("/internal/v1/pay/orders/{out_trade_no}/refunds", WeChat, true, api::pay::internal::refund),
        )],
    },
    Entry {
        path: "/internal/v1/pay/refunds/{out_refund_no}",
        allow: "GET, HEAD",
        methods: &[(
            Method::Get,
            route("/internal/v1/pay/refunds/{out_refund_no}", Local, false, api::pay::internal::get_refund),
        )],
    },
    Entry {
        path: "/healthz",
        allow: "GET, HEAD",
        methods: &[(Method::Get, route("/healthz", Local, false, api::ops::healthz))],
    },
    Entry {
        path: "/metrics",
        allow: "GET, HEAD",
        methods: &[(Method::Get, route("/metrics", Local, false, api::ops::metrics))],
    },
];

pub enum Found {
    Route(&'static Route),
    NotFound,
    MethodNotAllowed(&'static str),
}

/// HEAD runs the GET route: uptime monitors probe with HEAD, and the contract says every
/// GET route answers it (same status and headers). tiny_http leaves the body out of the
/// answer to a HEAD request, so handlers never need to know.
pub fn find(method: Method, path: &str) -> Found {
    let Some(entry) = ROUTES.iter().find(|e| matches(e.path, path)) else {
        return Found::NotFound;
    };
    let method = if method == Method::Head { Method::Get } else { method };
    match entry.methods.iter().find(|(m, _)| *m == method) {
        Some((_, r)) => Found::Route(r),
        None => Found::MethodNotAllowed(entry.allow),
    }
}

/// Whether `path` fits `pattern`, where a `{name}` segment stands for any one non-empty
/// segment (the handler reads it with `api::pay::segment`).
fn matches(pattern: &str, path: &str) -> bool {
    let mut want = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w.starts_with('{') => {
                if g.is_empty() {
                    return false;
                }
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_route_and_others_do_not() {
        assert!(matches!(find(Method::Post, "/v1/login"), Found::Route(r) if r.lane == Lane::WeChat));
        assert!(matches!(find(Method::Get, "/v1/session"), Found::Route(r) if r.lane == Lane::Local));
        assert!(matches!(find(Method::Get, "/v1/login"), Found::MethodNotAllowed("POST")));
        assert!(matches!(find(Method::Post, "/v1/me/decrypt"), Found::Route(r) if r.lane == Lane::WeChat));
        assert!(matches!(find(Method::Get, "/v1/me/decrypt"), Found::MethodNotAllowed("POST")));
        assert!(matches!(find(Method::Get, "/v1/nope"), Found::NotFound));
        assert!(matches!(find(Method::Get, "/v1/session/"), Found::NotFound));
        assert!(
            matches!(find(Method::Get, "/v1/pay/orders/W123"), Found::Route(r) if r.name == "/v1/pay/orders/{out_trade_no}")
        );
        assert!(matches!(find(Method::Get, "/v1/pay/orders/"), Found::NotFound));
        assert!(matches!(find(Method::Post, "/v1/pay/orders/W1/payment"), Found::Route(r) if r.lane == Lane::WeChat));
        assert!(matches!(find(Method::Get, "/v1/pay/orders/W1/payment/x"), Found::NotFound));
        assert!(
            matches!(find(Method::Post, "/v1/pay/notify"), Found::Route(r) if r.lane == Lane::Local && r.reads_body)
        );
        assert!(matches!(find(Method::Head, "/healthz"), Found::Route(r) if r.name == "/healthz"));
        assert!(matches!(find(Method::Head, "/v1/login"), Found::MethodNotAllowed("POST")));
        for m in [Method::Patch, Method::Put, Method::Post] {
            assert!(matches!(find(m, "/v1/me"), Found::Route(r) if r.reads_body));
        }
    }

    /// `Allow` must list exactly what the table answers, HEAD wherever there is GET.
    #[test]
    fn allow_headers_list_every_method_a_path_answers() {
        for e in ROUTES {
            let mut names: Vec<&str> = Vec::new();
            for (m, _) in e.methods {
                names.push(super::super::server::method_name(*m));
                if *m == Method::Get {
                    names.push("HEAD");
                }
            }
            let mut listed: Vec<&str> = e.allow.split(", ").collect();
            names.sort_unstable();
            listed.sort_unstable();
            assert_eq!(names, listed, "Allow of {}", e.path);
        }
    }
}
