//! Logins per app per day (`login_days`), counted in memory and written about once a
//! second.
//!
//! Every login of an app on a day adds to one row. Written by each login, that row's lock
//! serialized every login of every instance behind it, and it cost four round trips per
//! login: bench/run measured 1,490 logins/s with it and 1,980 without. A count still in
//! memory when the process dies is lost: `login_days` is a statistic, not a record of
//! logins (those are the sessions and users, written in the login's own transaction).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Postgres;
use crate::store::Result;

/// How long counts may wait in memory.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(super) struct LoginCounts {
    state: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    /// (app, YYYY-MM-DD) -> logins not yet written.
    counts: HashMap<(String, String), i64>,
    since: Option<Instant>,
}

impl LoginCounts {
    fn add(&self, app: &str, day: String) {
        let mut p = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *p.counts.entry((app.to_string(), day)).or_insert(0) += 1;
        p.since.get_or_insert_with(Instant::now);
    }

    /// What is pending, if anything is and (unless `now_anyway`) it has waited long enough.
    fn take(&self, now_anyway: bool) -> Option<HashMap<(String, String), i64>> {
        let mut p = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let due = p.since.is_some_and(|t| now_anyway || t.elapsed() >= FLUSH_EVERY);
        if !due {
            return None;
        }
        p.since = None;
        Some(std::mem::take(&mut p.counts))
    }

    /// Puts back counts whose write failed, to be tried with the next ones.
    fn put_back(&self, counts: HashMap<(String, String), i64>) {
        let mut p = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (key, n) in counts {
            *p.counts.entry(key).or_insert(0) += n;
        }
        p.since.get_or_insert_with(Instant::now);
    }
}

impl Postgres {
    /// One more login for `app` on the UTC day of `now`; written within a second.
    pub(super) fn count_login(&self, app: &str, now: i64) {
        self.login_counts.add(app, super::users::utc_day(now));
        if let Err(e) = self.flush_login_counts(false) {
            log::warn!("the day's login counts could not be written yet (kept, retried): {e}");
        }
    }

    /// Writes the pending counts: when due, or at once with `now_anyway` (before `stats`
    /// reads them, at shutdown). Their own transaction does not wait for the disk.
    pub fn flush_login_counts(&self, now_anyway: bool) -> Result<()> {
        let Some(counts) = self.login_counts.take(now_anyway) else { return Ok(()) };
        let written = self.tx(|tx| {
            tx.batch("SET LOCAL synchronous_commit = off")?;
            for ((app, day), n) in &counts {
                tx.execute(
                    "INSERT INTO login_days (app, day, logins) VALUES ($1, $2, $3)
                     ON CONFLICT (app, day) DO UPDATE SET logins = login_days.logins + excluded.logins",
                    &[app, day, n],
                )?;
            }
            Ok(())
        });
        if written.is_err() {
            self.login_counts.put_back(counts);
        }
        written
    }
}
