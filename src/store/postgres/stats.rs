//! Counts for `wxlogin stats`.

use std::collections::BTreeMap;

use super::users::utc_day;
use super::Postgres;
use crate::store::{AppStats, Result, Stats};

impl Postgres {
    /// Users, live sessions and today's (UTC) logins, in total and per app: one statement,
    /// so one snapshot, and the numbers agree with each other.
    pub fn stats(&self, now: i64) -> Result<Stats> {
        // This instance's own logins of the last second count too.
        self.flush_login_counts(true)?;
        let rows = self.conn()?.query(
            "SELECT 0, app, count(*) FROM users GROUP BY app
             UNION ALL
             SELECT 1, u.app, count(*) FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.expires_at > $1 GROUP BY u.app
             UNION ALL
             SELECT 2, app, sum(logins)::BIGINT FROM login_days WHERE day = $2 GROUP BY app",
            &[&now, &utc_day(now)],
        )?;
        let mut apps: BTreeMap<String, AppStats> = BTreeMap::new();
        for r in &rows {
            let (what, app, n): (i32, String, i64) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            let entry = apps.entry(app.clone()).or_insert_with(|| AppStats { app, ..AppStats::default() });
            match what {
                0 => entry.users = n,
                1 => entry.live_sessions = n,
                _ => entry.logins_today = n,
            }
        }
        let by_app: Vec<AppStats> = apps.into_values().collect();
        Ok(Stats {
            users: by_app.iter().map(|a| a.users).sum(),
            live_sessions: by_app.iter().map(|a| a.live_sessions).sum(),
            logins_today: by_app.iter().map(|a| a.logins_today).sum(),
            by_app,
        })
    }
}
