//! The one integration-test crate: every test starts real servers on ephemeral ports
//! (in-process, or the real binary) against the fake WeChat and speaks HTTP to them.

mod support;

mod cli;
mod crash;
mod decrypt;
mod docs;
mod file_modes;
mod hardening;
mod hostile;
mod hostile_wechat;
mod js_client;
mod log_guard;
mod login;
mod methods;
mod ops;
mod pay;
mod pay_certificates;
mod pay_cli;
mod pay_refunds;
mod pg_cli;
mod pg_cluster;
mod pg_pay_store;
mod pg_store;
mod session;
mod tiny_http_limits;
mod token;
mod webhook;
