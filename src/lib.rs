//! wxlogin: a single-binary login backend for WeChat mini-programs.
//!
//! See ARCHITECTURE.md for the codemap and the invariants.

pub mod fake_wechat;
pub mod secrets;
pub mod wechat;
