//! Logging to stderr through env_logger, level from `RUST_LOG` (default `info`).

use log::LevelFilter;

/// Installs the logger once; later calls (tests starting several servers) do nothing.
pub fn init() {
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    // ureq logs whole request URLs at trace level, and jscode2session's URL carries the
    // app secret: no RUST_LOG setting may lift it above info. This call must come after
    // from_env so that it wins over the environment.
    builder.filter_module("ureq", LevelFilter::Info);
    builder.filter_module("ureq_proto", LevelFilter::Info);
    builder.filter_module("rustls", LevelFilter::Info);
    builder.format_timestamp_millis();
    let _ = builder.try_init();
}
