//! A caching name resolver for the WeChat client (and the WeChat Pay client, `pay::client`).
//!
//! ureq 3 resolves the host on every call, before it looks in its connection pool, and
//! with a timeout set it does so on a freshly spawned thread. For the one host this
//! client talks to, that was a DNS lookup and a thread per login (measured with perf:
//! 3% of the whole machine's CPU during the login benchmark went to `clone3` alone).
//! Addresses are kept for [`FRESH`]; a failed refresh keeps using the last good answer
//! for up to [`STALE_LIMIT`], so a resolver hiccup does not fail logins that would reach
//! WeChat over an address known a minute ago.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long an answer is used without asking again.
const FRESH: Duration = Duration::from_secs(60);
/// How long an answer may stand in when asking again fails.
const STALE_LIMIT: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
pub struct CachingResolver {
    inner: DefaultResolver,
    cache: Mutex<HashMap<String, (ResolvedSocketAddrs, Instant)>>,
}

impl Resolver for CachingResolver {
    fn resolve(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = uri.authority().map(|a| a.as_str().to_ascii_lowercase()).unwrap_or_default();
        let cached = self.lock().get(&key).cloned();
        if let Some((addrs, at)) = &cached {
            if at.elapsed() < FRESH {
                return Ok(addrs.clone());
            }
        }
        match self.inner.resolve(uri, config, timeout) {
            Ok(addrs) => {
                self.lock().insert(key, (addrs.clone(), Instant::now()));
                Ok(addrs)
            }
            Err(e) => match cached {
                Some((addrs, at)) if at.elapsed() < STALE_LIMIT => {
                    log::warn!(
                        "resolving {key} failed ({e}); using the addresses resolved {}s ago",
                        at.elapsed().as_secs()
                    );
                    Ok(addrs)
                }
                _ => Err(e),
            },
        }
    }
}

impl CachingResolver {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (ResolvedSocketAddrs, Instant)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(r: &CachingResolver, url: &str) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let uri: Uri = url.parse().expect("uri");
        let timeout = NextTimeout {
            after: ureq::unversioned::transport::time::Duration::Exact(Duration::from_secs(2)),
            reason: ureq::Timeout::Resolve,
            per_read: None,
            per_write: None,
        };
        r.resolve(&uri, &Config::default(), timeout)
    }

    fn ago(d: Duration) -> Instant {
        Instant::now().checked_sub(d).expect("the machine has been up longer than that")
    }

    #[test]
    fn answers_are_cached_per_host_and_port() {
        let r = CachingResolver::default();
        let a = resolve(&r, "http://127.0.0.1:8080/sns/jscode2session").expect("resolves");
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].to_string(), "127.0.0.1:8080");
        let b = resolve(&r, "http://127.0.0.1:8081/cgi-bin/token").expect("resolves");
        assert_eq!(b[0].port(), 8081);
        assert_eq!(r.lock().len(), 2);
    }

    #[test]
    fn a_failed_refresh_falls_back_to_a_recent_answer_only() {
        let r = CachingResolver::default();
        let uri = "http://wxlogin-no-such-host.invalid:80/";
        assert!(resolve(&r, uri).is_err(), "nothing cached: the error stands");
        let good: ResolvedSocketAddrs = resolve(&r, "http://127.0.0.1:80/").expect("resolves");
        let key = "wxlogin-no-such-host.invalid:80".to_string();
        r.lock().insert(key.clone(), (good.clone(), ago(FRESH + Duration::from_secs(1))));
        assert_eq!(resolve(&r, uri).expect("stale answer")[0], good[0]);
        r.lock().insert(key, (good, ago(STALE_LIMIT + Duration::from_secs(1))));
        assert!(resolve(&r, uri).is_err(), "too old to stand in");
    }
}
