//! Talking to WeChat's servers and handling what they produce.

pub mod crypto;
