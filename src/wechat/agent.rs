//! The ureq agent that every outbound call uses, to WeChat (`wechat::client`) and to
//! WeChat Pay (`pay::client`): one timeout per attempt, answers of any status handed back
//! to be read (both APIs put their error codes in bodies), small buffers, and the
//! caching resolver.

use std::time::Duration;

use super::resolver::CachingResolver;

/// An agent whose every request must finish within `timeout`, keeping up to `idle`
/// pooled connections.
pub(crate) fn new_agent(timeout: Duration, idle: usize) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout.min(Duration::from_secs(3))))
        .http_status_as_error(false)
        .max_idle_connections(idle)
        .max_idle_connections_per_host(idle)
        // Requests and replies are a few hundred bytes. ureq's default buffers (128 KiB
        // each way, zero-filled) kept 256 KiB resident per pooled connection: some 20 MB
        // with the WeChat lane's connections, half the server's memory.
        .input_buffer_size(16 * 1024)
        .output_buffer_size(16 * 1024)
        .user_agent(concat!("wxlogin/", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::default(),
        CachingResolver::default(),
    )
}
