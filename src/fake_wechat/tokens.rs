//! Access tokens: the `cgi-bin/token` and `cgi-bin/stable_token` families (§2).
//!
//! The two families follow different rules and never affect each other, which is the
//! point of stable_token: with the classic API every fetch rotates the token, so two
//! fetchers invalidate each other's tokens; with stable_token they share one.

use std::collections::HashMap;

use super::reply::Errcode;

/// How long a superseded token keeps working (both families).
const OVERLAP_SECONDS: i64 = 300;
/// Stable tokens are renewed this long before expiry.
const STABLE_RENEW_BEFORE: i64 = 300;
/// Force refreshes closer together than this do nothing.
const FORCE_MIN_INTERVAL: i64 = 30;
const FORCE_PER_DAY: u32 = 20;
/// Forget tokens a day after they expired, so that a long-running fake stays small.
const FORGET_AFTER: i64 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Classic,
    Stable,
}

#[derive(Debug)]
struct TokenRecord {
    appid: String,
    family: Family,
    /// Mint order, so that "newest" is well defined within one second.
    seq: u64,
    expires_at: i64,
    /// From this moment on the token is refused as "not latest" (40001).
    revoked_at: Option<i64>,
}

/// A count that starts again every (UTC) day.
#[derive(Debug, Default, Clone, Copy)]
struct DailyCount {
    day: i64,
    n: u32,
}

impl DailyCount {
    fn today(&mut self, now: i64) -> &mut u32 {
        let day = now.div_euclid(86_400);
        if self.day != day {
            *self = DailyCount { day, n: 0 };
        }
        &mut self.n
    }
}

#[derive(Debug, Default)]
struct StableSlot {
    current: Option<String>,
    last_force: Option<i64>,
    forces: DailyCount,
}

/// A token as handed out, with its remaining lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issued {
    pub token: String,
    pub expires_in: i64,
}

#[derive(Debug)]
pub(crate) struct TokenStore {
    ttl: i64,
    minted: u64,
    tokens: HashMap<String, TokenRecord>,
    latest_classic: HashMap<String, String>,
    classic_calls: HashMap<String, DailyCount>,
    stable: HashMap<String, StableSlot>,
}

impl TokenStore {
    pub(crate) fn new(ttl_seconds: u64) -> TokenStore {
        TokenStore {
            ttl: i64::try_from(ttl_seconds).unwrap_or(i64::MAX / 4).max(1),
            minted: 0,
            tokens: HashMap::new(),
            latest_classic: HashMap::new(),
            classic_calls: HashMap::new(),
            stable: HashMap::new(),
        }
    }

    /// `cgi-bin/token`: every call mints a new token and gives the previous one five
    /// more minutes; after `daily_quota` calls in a day the app gets 45009.
    pub(crate) fn classic(&mut self, appid: &str, daily_quota: u32, now: i64) -> Result<Issued, Errcode> {
        let calls = self.classic_calls.entry(appid.to_string()).or_default();
        let today = calls.today(now);
        if *today >= daily_quota {
            return Err(45009);
        }
        *today += 1;
        if let Some(previous) = self.latest_classic.get(appid) {
            if let Some(record) = self.tokens.get_mut(previous) {
                revoke_at(record, now + OVERLAP_SECONDS);
            }
        }
        let token = self.mint(appid, Family::Classic, now);
        self.latest_classic.insert(appid.to_string(), token.clone());
        Ok(Issued { token, expires_in: self.ttl })
    }

    /// `cgi-bin/stable_token`: the same token until five minutes before it expires, then
    /// a new one while the old one runs out. A force refresh kills the current token at
    /// once, at most 20 times a day (then 45009); one within 30 s of the last is ignored.
    pub(crate) fn stable(&mut self, appid: &str, force_refresh: bool, now: i64) -> Result<Issued, Errcode> {
        let slot = self.stable.entry(appid.to_string()).or_default();
        let mut force = false;
        if force_refresh {
            let recent = slot.last_force.is_some_and(|last| now - last < FORCE_MIN_INTERVAL);
            if !recent {
                let forces = slot.forces.today(now);
                if *forces >= FORCE_PER_DAY {
                    return Err(45009);
                }
                *forces += 1;
                slot.last_force = Some(now);
                force = true;
            }
        }
        let current = slot.current.clone();

        if let Some(token) = current {
            if let Some(record) = self.tokens.get_mut(&token) {
                if force {
                    revoke_at(record, now);
                } else if is_live(record, now) && now < record.expires_at - STABLE_RENEW_BEFORE {
                    return Ok(Issued { expires_in: record.expires_at - now, token });
                }
            }
        }
        let token = self.mint(appid, Family::Stable, now);
        if let Some(slot) = self.stable.get_mut(appid) {
            slot.current = Some(token.clone());
        }
        Ok(Issued { token, expires_in: self.ttl })
    }

    /// The app a token belongs to, or 40001 (unknown, superseded, revoked) / 42001
    /// (expired).
    pub(crate) fn check(&self, token: &str, now: i64) -> Result<&str, Errcode> {
        let record = self.tokens.get(token).ok_or(40001)?;
        if record.revoked_at.is_some_and(|at| at <= now && at < record.expires_at) {
            return Err(40001);
        }
        if now >= record.expires_at {
            return Err(42001);
        }
        Ok(&record.appid)
    }

    /// Revokes every token of both families now, as if the secret had been reset.
    pub(crate) fn invalidate_all(&mut self, now: i64) {
        for record in self.tokens.values_mut() {
            revoke_at(record, now);
        }
    }

    /// For each app, the newest token of either family that still works.
    pub(crate) fn current(&self, now: i64) -> HashMap<String, String> {
        let mut newest: HashMap<String, (u64, &str)> = HashMap::new();
        for (token, record) in &self.tokens {
            if !is_live(record, now) {
                continue;
            }
            let is_current = match record.family {
                Family::Classic => self.latest_classic.get(&record.appid) == Some(token),
                Family::Stable => self.stable.get(&record.appid).is_some_and(|s| s.current.as_ref() == Some(token)),
            };
            if !is_current {
                continue;
            }
            let entry = newest.entry(record.appid.clone()).or_insert((record.seq, token));
            if record.seq > entry.0 {
                *entry = (record.seq, token);
            }
        }
        newest.into_iter().map(|(appid, (_, token))| (appid, token.to_string())).collect()
    }

    fn mint(&mut self, appid: &str, family: Family, now: i64) -> String {
        self.tokens.retain(|_, r| r.expires_at.min(r.revoked_at.unwrap_or(i64::MAX)) > now - FORGET_AFTER);
        let token = super::ids::new_access_token();
        self.minted += 1;
        self.tokens.insert(
            token.clone(),
            TokenRecord {
                appid: appid.to_string(),
                family,
                seq: self.minted,
                expires_at: now.saturating_add(self.ttl),
                revoked_at: None,
            },
        );
        token
    }
}

fn is_live(record: &TokenRecord, now: i64) -> bool {
    now < record.expires_at && record.revoked_at.is_none_or(|at| now < at)
}

/// Moves the revocation earlier, never later.
fn revoke_at(record: &mut TokenRecord, at: i64) {
    record.revoked_at = Some(record.revoked_at.map_or(at, |old| old.min(at)));
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000;

    fn store() -> TokenStore {
        TokenStore::new(7200)
    }

    #[test]
    fn classic_rotates_and_keeps_the_previous_for_five_minutes() {
        let mut s = store();
        let a = s.classic("wx1", 2000, T0).expect("a");
        assert_eq!(a.expires_in, 7200);
        assert_eq!(s.check(&a.token, T0), Ok("wx1"));
        let b = s.classic("wx1", 2000, T0 + 10).expect("b");
        assert_ne!(a.token, b.token);
        assert_eq!(s.check(&a.token, T0 + 10 + 299), Ok("wx1"));
        assert_eq!(s.check(&a.token, T0 + 10 + 300), Err(40001));
        assert_eq!(s.check(&b.token, T0 + 10 + 300), Ok("wx1"));
        assert_eq!(s.check(&b.token, T0 + 10 + 7200), Err(42001));
        assert_eq!(s.check("nonsense", T0), Err(40001));
    }

    #[test]
    fn classic_quota_is_per_app_and_per_day() {
        let mut s = store();
        for _ in 0..3 {
            assert!(s.classic("wx1", 3, T0).is_ok());
        }
        assert_eq!(s.classic("wx1", 3, T0), Err(45009));
        assert!(s.classic("wx2", 3, T0).is_ok());
        assert!(s.classic("wx1", 3, T0 + 86_400).is_ok());
    }

    #[test]
    fn stable_is_shared_until_five_minutes_before_expiry() {
        let mut s = store();
        let a = s.stable("wx1", false, T0).expect("a");
        assert_eq!(a.expires_in, 7200);
        let again = s.stable("wx1", false, T0 + 100).expect("again");
        assert_eq!(again.token, a.token);
        assert_eq!(again.expires_in, 7100);
        let late = s.stable("wx1", false, T0 + 6899).expect("late");
        assert_eq!(late.token, a.token);
        assert_eq!(late.expires_in, 301);
        let renewed = s.stable("wx1", false, T0 + 6900).expect("renewed");
        assert_ne!(renewed.token, a.token);
        assert_eq!(renewed.expires_in, 7200);
        // The old one runs out on its own schedule.
        assert_eq!(s.check(&a.token, T0 + 7199), Ok("wx1"));
        assert_eq!(s.check(&a.token, T0 + 7200), Err(42001));
    }

    #[test]
    fn force_refresh_kills_the_old_token_with_limits() {
        let mut s = store();
        let a = s.stable("wx1", false, T0).expect("a");
        let b = s.stable("wx1", true, T0 + 1).expect("b");
        assert_ne!(a.token, b.token);
        assert_eq!(s.check(&a.token, T0 + 1), Err(40001));
        // Within 30 s of the last force: nothing happens.
        let c = s.stable("wx1", true, T0 + 20).expect("c");
        assert_eq!(c.token, b.token);
        let d = s.stable("wx1", true, T0 + 31).expect("d");
        assert_ne!(d.token, b.token);
        // 2 forces used; 18 more allowed today.
        let mut t = T0 + 31;
        for _ in 0..18 {
            t += 31;
            assert!(s.stable("wx1", true, t).is_ok());
        }
        assert_eq!(s.stable("wx1", true, t + 31), Err(45009));
        // Normal mode still works.
        assert!(s.stable("wx1", false, t + 31).is_ok());
    }

    #[test]
    fn families_are_isolated() {
        let mut s = store();
        let stable = s.stable("wx1", false, T0).expect("stable");
        let classic = s.classic("wx1", 2000, T0).expect("classic");
        s.classic("wx1", 2000, T0 + 1).expect("rotate");
        assert_eq!(s.stable("wx1", false, T0 + 400).map(|i| i.token), Ok(stable.token.clone()));
        assert_eq!(s.check(&classic.token, T0 + 400), Err(40001));
        assert_eq!(s.check(&stable.token, T0 + 400), Ok("wx1"));
    }

    #[test]
    fn invalidate_all_revokes_both_families_and_stable_mints_anew() {
        let mut s = store();
        let stable = s.stable("wx1", false, T0).expect("stable");
        let classic = s.classic("wx1", 2000, T0).expect("classic");
        s.invalidate_all(T0 + 5);
        assert_eq!(s.check(&stable.token, T0 + 5), Err(40001));
        assert_eq!(s.check(&classic.token, T0 + 5), Err(40001));
        let fresh = s.stable("wx1", false, T0 + 6).expect("fresh");
        assert_ne!(fresh.token, stable.token);
        assert_eq!(s.check(&fresh.token, T0 + 6), Ok("wx1"));
    }

    #[test]
    fn current_is_the_newest_live_token_per_app() {
        let mut s = store();
        assert!(s.current(T0).is_empty());
        s.classic("wx1", 2000, T0).expect("classic");
        let stable = s.stable("wx1", false, T0).expect("stable");
        let b = s.stable("wx2", false, T0).expect("b");
        let cur = s.current(T0 + 2);
        assert_eq!(cur.get("wx1"), Some(&stable.token));
        assert_eq!(cur.get("wx2"), Some(&b.token));
        assert!(s.current(T0 + 8000).is_empty());
    }
}
