//! [`Resp`]: what a handler answers, before it becomes bytes.

use serde_json::Value;

use crate::error::ApiError;

#[derive(Debug)]
pub enum Body {
    Json(Value),
    /// JSON already serialized from a typed value (the hot paths skip building a `Value`).
    JsonBytes(Vec<u8>),
    Text {
        content_type: &'static str,
        text: String,
    },
    Empty,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

impl Resp {
    pub fn json(status: u16, value: Value) -> Resp {
        Resp { status, headers: Vec::new(), body: Body::Json(value) }
    }

    pub fn ok(value: Value) -> Resp {
        Resp::json(200, value)
    }

    /// 200 with `value` serialized straight to bytes.
    pub fn ok_typed(value: &impl serde::Serialize) -> Resp {
        match serde_json::to_vec(value) {
            Ok(bytes) => Resp { status: 200, headers: Vec::new(), body: Body::JsonBytes(bytes) },
            // Our own response types always serialize; if one ever does not, say so.
            Err(e) => {
                log::error!("a response could not be serialized: {e}");
                Resp::from_error(&ApiError::Internal)
            }
        }
    }

    pub fn empty(status: u16) -> Resp {
        Resp { status, headers: Vec::new(), body: Body::Empty }
    }

    pub fn text(content_type: &'static str, text: String) -> Resp {
        Resp { status: 200, headers: Vec::new(), body: Body::Text { content_type, text } }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Resp {
        self.headers.push((name, value.into()));
        self
    }

    pub fn from_error(e: &ApiError) -> Resp {
        Resp { status: e.status(), headers: e.headers(), body: Body::Json(e.body()) }
    }

    /// The body bytes and their content type.
    pub fn into_bytes(self) -> (Option<&'static str>, Vec<u8>) {
        match self.body {
            Body::Json(v) => (Some("application/json"), v.to_string().into_bytes()),
            Body::JsonBytes(bytes) => (Some("application/json"), bytes),
            Body::Text { content_type, text } => (Some(content_type), text.into_bytes()),
            Body::Empty => (None, Vec::new()),
        }
    }
}
