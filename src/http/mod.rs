//! The only code that knows tiny_http: it turns a tiny_http request into a [`Req`],
//! routes it, runs the handler in the right lane and writes the [`Resp`] back.

pub mod access_log;
pub mod request;
pub mod response;
pub mod router;
pub mod server;

pub use request::{Method, Req};
pub use response::Resp;
pub use server::RunningServer;
