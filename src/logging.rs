//! Logging to stderr through env_logger, level from `RUST_LOG` (default `info`), behind a
//! guard that no `RUST_LOG` value can open.
//!
//! The HTTP client stack logs what it sends: ureq the request URL at debug, ureq_proto a
//! hex dump of the request at trace, rustls its handshake. jscode2session carries the app
//! secret in its query string, so those records must never be written. env_logger's own
//! per-module caps (`filter_module`) lose to any more specific `RUST_LOG` entry
//! (`ureq_proto::util=trace` beats `ureq_proto=info`), so the cap lives here, in a
//! `log::Log` of our own that drops such records before env_logger sees them.
//!
//! The PostgreSQL client does the same with statements: tokio_postgres logs every
//! statement's parameters at debug, and those are session_keys and access tokens.

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Crates whose records above `info` may hold a WeChat URL, request bytes, key material
/// or a statement's parameters. Matched as the whole first segment of a record's target.
const CAPPED_CRATES: [&str; 5] = ["ureq", "ureq_proto", "rustls", "tokio_postgres", "postgres"];

/// Installs the logger once; later calls (tests starting several servers) do nothing.
pub fn init() {
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    builder.format_timestamp_millis();
    let inner = builder.build();
    // env_logger's own init would set this; ours must, so that `RUST_LOG=wxlogin=trace`
    // still reaches our own debug and trace records (the guard alone caps the HTTP stack).
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(Guarded { inner })).is_ok() {
        log::set_max_level(max);
    }
}

/// env_logger with the capped crates held at `info`, whatever its filter says.
struct Guarded {
    inner: env_logger::Logger,
}

impl Log for Guarded {
    fn enabled(&self, metadata: &Metadata) -> bool {
        !muted(metadata.target(), metadata.level()) && self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if !muted(record.target(), record.level()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Whether a record is from a capped crate and more verbose than `info`.
fn muted(target: &str, level: Level) -> bool {
    if level <= LevelFilter::Info {
        return false;
    }
    let first = target.split("::").next().unwrap_or(target);
    // A crate's name may reach a target with dashes (a hand-written `target:`).
    let same = |a: u8, b: u8| a.eq_ignore_ascii_case(&b) || (a == b'-' && b == b'_');
    CAPPED_CRATES.iter().any(|c| first.len() == c.len() && first.bytes().zip(c.bytes()).all(|(a, b)| same(a, b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_stack_and_the_database_client_are_capped_at_info_and_nothing_else_is() {
        for target in [
            "ureq",
            "ureq::run",
            "ureq_proto",
            "ureq_proto::util",
            "rustls::client::hs",
            "ureq-proto",
            "tokio_postgres::query",
            "tokio_postgres::prepare",
            "postgres",
        ] {
            assert!(muted(target, Level::Debug), "{target}");
            assert!(muted(target, Level::Trace), "{target}");
            assert!(!muted(target, Level::Info), "{target}");
            assert!(!muted(target, Level::Warn), "{target}");
        }
        for target in ["wxlogin", "wxlogin::store::postgres", "ureqx", "rustls_pemfile_like", "my::ureq", "postgresx"] {
            assert!(!muted(target, Level::Trace), "{target}");
        }
    }
}
