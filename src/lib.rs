//! wxlogin: a single-binary login backend for WeChat mini-programs.
//!
//! See ARCHITECTURE.md for the codemap and the invariants.

pub mod api;
pub mod app;
pub mod civil;
pub mod cli;
pub mod config;
pub mod error;
pub mod fake_wechat;
pub mod files;
pub mod http;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod pay;
pub mod payments;
pub mod secrets;
pub mod store;
pub mod wechat;
