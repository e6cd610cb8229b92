//! The fake's notion of "now", which tests can move forward.
//!
//! Codes live five minutes and tokens two hours; tests that check expiry must not wait
//! that long, so the clock is wall time plus an offset that only ever grows.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Default, Debug)]
pub(crate) struct Clock {
    offset: Arc<AtomicI64>,
}

impl Clock {
    /// Unix seconds as the fake sees them.
    pub(crate) fn now(&self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        wall.saturating_add(self.offset.load(Ordering::Relaxed))
    }

    /// Moves the clock forward (a negative amount is ignored: expiry must never undo).
    pub(crate) fn advance(&self, seconds: i64) {
        if seconds > 0 {
            let _ = self.offset.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| Some(o.saturating_add(seconds)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_now_forward_only() {
        let clock = Clock::default();
        let before = clock.now();
        clock.advance(3600);
        let after = clock.now();
        assert!(after >= before + 3600 && after <= before + 3602);
        clock.advance(-10_000);
        assert!(clock.now() >= after);
    }
}
