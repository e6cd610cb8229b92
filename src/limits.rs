//! Bounded memory of recent clients and users: the per-client login limit, the per-user
//! budget of WeChat-costly calls, and remembered `checksession` answers.
//!
//! All three are an [`ExpiringMap`]: entries live for a fixed time from insertion, kept
//! in insertion order so that expiry and eviction take the oldest first in O(1), split
//! into shards so that one lock is not shared by every request.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::secrets::{sha256, Secret};

const MAX_SHARDS: usize = 16;

/// A map whose entries expire `ttl` after insertion, holding at most `capacity` (when a
/// shard is full, its oldest live entry is dropped). Every operation is O(1) amortized:
/// each entry is pushed onto its shard's queue once and popped once.
pub struct ExpiringMap<K, V> {
    shards: Box<[Mutex<Shard<K, V>>]>,
    hasher: RandomState,
    ttl: Duration,
    shard_capacity: usize,
}

/// `order` holds exactly the keys of `map`, oldest first: a key is queued when it is
/// inserted and leaves the map only when it is popped. Times are taken under the lock,
/// so the queue is sorted.
struct Shard<K, V> {
    map: HashMap<K, (Instant, V)>,
    order: VecDeque<(Instant, K)>,
}

impl<K: Hash + Eq + Clone, V> Shard<K, V> {
    fn expire(&mut self, now: Instant, ttl: Duration) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < ttl {
                break;
            }
            self.pop_oldest();
        }
    }

    /// False when there is nothing left to pop.
    fn pop_oldest(&mut self) -> bool {
        match self.order.pop_front() {
            Some((_, key)) => {
                self.map.remove(&key);
                true
            }
            None => false,
        }
    }
}

impl<K: Hash + Eq + Clone, V> ExpiringMap<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> ExpiringMap<K, V> {
        let shards = capacity.clamp(1, MAX_SHARDS);
        ExpiringMap {
            shards: (0..shards).map(|_| Mutex::new(Shard { map: HashMap::new(), order: VecDeque::new() })).collect(),
            hasher: RandomState::new(),
            ttl,
            shard_capacity: (capacity / shards).max(1),
        }
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, Shard<K, V>> {
        let i = (self.hasher.hash_one(key) as usize) % self.shards.len();
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the live entry for `key` and its age, inserting `make()` first when
    /// there is none.
    pub fn with_entry<R>(&self, key: K, make: impl FnOnce() -> V, f: impl FnOnce(&mut V, Duration) -> R) -> R {
        let mut shard = self.shard(&key);
        let now = Instant::now();
        shard.expire(now, self.ttl);
        if !shard.map.contains_key(&key) {
            while shard.map.len() >= self.shard_capacity && shard.pop_oldest() {}
            shard.order.push_back((now, key.clone()));
        }
        let (at, value) = shard.map.entry(key).or_insert_with(|| (now, make()));
        let age = now.duration_since(*at);
        f(value, age)
    }

    /// The live value for `key` and its age.
    pub fn get(&self, key: &K) -> Option<(V, Duration)>
    where
        V: Clone,
    {
        let mut shard = self.shard(key);
        let now = Instant::now();
        shard.expire(now, self.ttl);
        shard.map.get(key).map(|(at, v)| (v.clone(), now.duration_since(*at)))
    }

    /// Drops the expired entries of every shard.
    pub fn prune(&self) {
        let now = Instant::now();
        for s in self.shards.iter() {
            s.lock().unwrap_or_else(|p| p.into_inner()).expire(now, self.ttl);
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).map.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Seconds until `age` reaches `window`, rounded up, at least 1: a Retry-After.
fn seconds_left(window: Duration, age: Duration) -> u64 {
    let left = window.saturating_sub(age);
    (left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1)
}

/// A fixed window per key: at most `limit` calls in the `window` that starts with a
/// key's first call.
pub struct WindowLimit<K> {
    counts: ExpiringMap<K, u32>,
    limit: u32,
    window: Duration,
}

impl<K: Hash + Eq + Clone> WindowLimit<K> {
    pub fn new(limit: u32, window: Duration, capacity: usize) -> WindowLimit<K> {
        WindowLimit { counts: ExpiringMap::new(window, capacity), limit, window }
    }

    /// Counts one call; Err carries the seconds until the key's window ends.
    pub fn check(&self, key: K) -> Result<(), u64> {
        let (limit, window) = (self.limit, self.window);
        self.counts.with_entry(
            key,
            || 0,
            |count, age| {
                if *count >= limit {
                    return Err(seconds_left(window, age));
                }
                *count += 1;
                Ok(())
            },
        )
    }

    pub fn prune(&self) {
        self.counts.prune();
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// Whom a client address stands for: an IPv4 address, or an IPv6 /64 (one subscriber's
/// network: whoever has one address usually has all 2^64). IPv4-mapped IPv6 addresses
/// count as their IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4([u8; 4]),
    V6Net([u8; 8]),
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> ClientKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientKey::V4(v4.octets()),
            IpAddr::V6(v6) => {
                let mut net = [0u8; 8];
                net.copy_from_slice(&v6.octets()[..8]);
                ClientKey::V6Net(net)
            }
        }
    }
}

/// The per-client login limit (`rate_limit.login_per_ip_per_minute`).
pub struct RateLimiter(WindowLimit<ClientKey>);

impl RateLimiter {
    pub fn new(limit: u32, window: Duration) -> RateLimiter {
        RateLimiter::with_capacity(limit, window, 100_000)
    }

    pub fn with_capacity(limit: u32, window: Duration, max_entries: usize) -> RateLimiter {
        RateLimiter(WindowLimit::new(limit, window, max_entries))
    }

    /// Counts one attempt from `ip`'s client (see [`ClientKey`]); Err carries the
    /// seconds until it may retry.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        self.0.check(ClientKey::from(ip))
    }

    /// Forgets clients whose window has ended.
    pub fn prune(&self) {
        self.0.prune();
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How long a `checksession` answer is remembered.
pub const CHECKSESSION_TTL: Duration = Duration::from_secs(300);
/// How long a failure to ask `checksession` is remembered before WeChat is asked again.
pub const CHECKSESSION_FAILURE_TTL: Duration = Duration::from_secs(30);
/// Users remembered by each per-user table.
const USERS_REMEMBERED: usize = 100_000;

/// Limits on what one logged-in user can make this server ask WeChat, whose quotas are
/// per app and so shared by every user.
pub struct UserLimits {
    phone: WindowLimit<i64>,
    /// (user, sha256(session_key)) -> WeChat's answer (None: it could not be asked),
    /// and when it was asked.
    checksessions: ExpiringMap<(i64, [u8; 32]), (Option<bool>, Instant)>,
}

impl UserLimits {
    pub fn new(phone_per_hour: u32) -> UserLimits {
        UserLimits {
            phone: WindowLimit::new(phone_per_hour, Duration::from_secs(3600), USERS_REMEMBERED),
            checksessions: ExpiringMap::new(CHECKSESSION_TTL, USERS_REMEMBERED),
        }
    }

    /// Forgets windows and answers whose time is over.
    pub fn prune(&self) {
        self.phone.prune();
        self.checksessions.prune();
    }

    /// Counts one phone lookup; Err carries the seconds until the user's budget frees.
    pub fn phone_lookup(&self, user_id: i64) -> Result<(), u64> {
        self.phone.check(user_id)
    }

    /// WeChat's answer on whether `session_key` is still `user_id`'s, asked through
    /// `ask` only when no answer is remembered for this very key (a new login's key is
    /// asked afresh). Failures are remembered briefly too, so that a WeChat in trouble is
    /// not asked on every failed decrypt.
    pub fn checksession<E>(
        &self,
        user_id: i64,
        session_key: &Secret,
        ask: impl FnOnce() -> Result<bool, E>,
    ) -> Result<Option<bool>, E> {
        let key = (user_id, sha256(session_key.expose().as_bytes()));
        match self.checksessions.get(&key) {
            Some(((Some(answer), _), _)) => return Ok(Some(answer)),
            Some(((None, asked), _)) if asked.elapsed() < CHECKSESSION_FAILURE_TTL => return Ok(None),
            _ => {}
        }
        let answer = ask();
        let remembered = (answer.as_ref().ok().copied(), Instant::now());
        self.checksessions.with_entry(key, || remembered, |slot, _| *slot = remembered);
        answer.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn limiter_counts_per_ip_and_resets_after_the_window() {
        let l = RateLimiter::new(2, Duration::from_millis(200));
        let a = IpAddr::from([1, 1, 1, 1]);
        assert!(l.check(a).is_ok() && l.check(a).is_ok());
        assert_eq!(l.check(a), Err(1));
        assert!(l.check(IpAddr::from([2, 2, 2, 2])).is_ok());
        std::thread::sleep(Duration::from_millis(250));
        assert!(l.check(a).is_ok());
        l.prune();
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        let l = RateLimiter::new(3, Duration::from_secs(60));
        for a in ["2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2:abcd::9"] {
            assert!(l.check(ip(a)).is_ok(), "{a}");
        }
        assert!(l.check(ip("2001:db8:1:2:1234:5678:9abc:def0")).is_err(), "the same /64");
        assert!(l.check(ip("2001:db8:1:3::1")).is_ok(), "the next /64 is someone else");
        for a in ["198.51.100.7", "::ffff:198.51.100.7", "198.51.100.7"] {
            assert!(l.check(ip(a)).is_ok(), "{a}");
        }
        assert!(l.check(ip("::ffff:198.51.100.7")).is_err(), "mapped counts as the IPv4 address");
        assert!(l.check(ip("198.51.100.8")).is_ok(), "IPv4 addresses count one by one");
        assert_eq!(ClientKey::from(ip("::ffff:10.0.0.1")), ClientKey::V4([10, 0, 0, 1]));
    }

    #[test]
    fn limiter_memory_is_bounded_and_the_queue_matches_the_table() {
        let l = RateLimiter::with_capacity(5, Duration::from_secs(60), 100);
        for i in 0..10_000u32 {
            let _ = l.check(IpAddr::from(i.to_be_bytes()));
        }
        assert!(l.len() <= 100);
        for shard in l.0.counts.shards.iter() {
            let s = shard.lock().unwrap();
            assert_eq!(s.order.len(), s.map.len(), "every queued key is in the table and only once");
            assert!(s.order.iter().all(|(_, k)| s.map.contains_key(k)));
        }
        // The newest clients are kept, the oldest were dropped.
        assert!(l.check(IpAddr::from(9_999u32.to_be_bytes())).is_ok());
        assert_eq!(l.0.counts.get(&ClientKey::from(IpAddr::from(9_999u32.to_be_bytes()))).map(|v| v.0), Some(2));
        assert!(l.0.counts.get(&ClientKey::from(IpAddr::from(0u32.to_be_bytes()))).is_none());
    }

    #[test]
    fn retry_after_is_the_rest_of_the_window_rounded_up() {
        assert_eq!(seconds_left(Duration::from_secs(3600), Duration::from_millis(1500)), 3599);
        assert_eq!(seconds_left(Duration::from_secs(60), Duration::from_secs(60)), 1);
        let l: WindowLimit<i64> = WindowLimit::new(1, Duration::from_secs(3600), 10);
        assert!(l.check(7).is_ok());
        let retry = l.check(7).unwrap_err();
        assert!((3599..=3600).contains(&retry), "{retry}");
        assert!(l.check(8).is_ok(), "per key");
    }

    #[test]
    fn checksession_answers_are_remembered_per_user_and_key() {
        let limits = UserLimits::new(10);
        let asked = std::cell::Cell::new(0);
        let ask = |answer: bool| {
            asked.set(asked.get() + 1);
            Ok::<bool, ()>(answer)
        };
        let key = Secret::from("key-one");
        assert_eq!(limits.checksession(1, &key, || ask(false)), Ok(Some(false)));
        assert_eq!(limits.checksession(1, &key, || ask(true)), Ok(Some(false)), "remembered");
        assert_eq!(asked.get(), 1);
        assert_eq!(limits.checksession(1, &Secret::from("key-two"), || ask(true)), Ok(Some(true)), "a new key");
        assert_eq!(limits.checksession(2, &key, || ask(true)), Ok(Some(true)), "another user");
        assert_eq!(asked.get(), 3);
        // A failure is remembered too, for a shorter while.
        assert_eq!(limits.checksession(3, &key, || Err::<bool, ()>(())), Err(()));
        assert_eq!(limits.checksession(3, &key, || ask(true)), Ok(None));
        assert_eq!(asked.get(), 3);
    }
}
