//! How the fake misbehaves on request: latency, injected failures, and the switches for
//! the places where real WeChat's behaviour varies (§9).

use std::time::Duration;

use super::reply::Errcode;

/// The WeChat APIs the fake serves, by the names used in stats and failure injection.
pub(crate) const APIS: [&str; 6] =
    ["jscode2session", "token", "stable_token", "getuserphonenumber", "checksession", "resetusersessionkey"];

/// How long an injected "hang" holds the reply back: longer than any sane client timeout.
pub(crate) const HANG: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// HTTP 200 with this errcode.
    Errcode(Errcode),
    /// HTTP 500 with an HTML body, as a broken gateway sends.
    Http500,
    /// HTTP 200 with a body that is not JSON.
    Garbage,
    /// No answer for 60 seconds (then -1).
    Hang,
}

#[derive(Debug, Clone)]
struct Injected {
    api: String,
    failure: Failure,
    remaining: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Behaviour {
    pub latency: Duration,
    pub rotate_session_key: bool,
    /// getuserphonenumber's countryCode as "86" rather than 86 (sources disagree).
    pub country_code_as_string: bool,
    /// Successful jscode2session/token/stable_token replies carry "errcode":0 too, as
    /// the docs' examples (but not the real servers) show.
    pub errcode_on_success: bool,
    injected: Vec<Injected>,
}

impl Behaviour {
    pub(crate) fn new(latency: Duration, rotate_session_key: bool) -> Behaviour {
        Behaviour {
            latency,
            rotate_session_key,
            country_code_as_string: false,
            errcode_on_success: false,
            injected: Vec::new(),
        }
    }

    /// Queues `times` failures for `api` ("*" for any API); they are used up in order.
    pub(crate) fn inject(&mut self, api: &str, failure: Failure, times: u32) {
        if times > 0 {
            self.injected.push(Injected { api: api.to_string(), failure, remaining: times });
        }
    }

    pub(crate) fn clear_failures(&mut self) {
        self.injected.clear();
    }

    /// The failure the next call of `api` gets, if one is queued; using it up.
    pub(crate) fn take_failure(&mut self, api: &str) -> Option<Failure> {
        let index = self.injected.iter().position(|i| i.api == api || i.api == "*")?;
        let entry = &mut self.injected[index];
        let failure = entry.failure;
        entry.remaining -= 1;
        if entry.remaining == 0 {
            self.injected.remove(index);
        }
        Some(failure)
    }

    pub(crate) fn pending_failures(&self) -> u64 {
        self.injected.iter().map(|i| u64::from(i.remaining)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_consumed_one_per_matching_call_in_order() {
        let mut b = Behaviour::new(Duration::ZERO, true);
        b.inject("token", Failure::Errcode(-1), 2);
        b.inject("*", Failure::Http500, 1);
        b.inject("token", Failure::Garbage, 0);
        assert_eq!(b.pending_failures(), 3);
        assert_eq!(b.take_failure("jscode2session"), Some(Failure::Http500));
        assert_eq!(b.take_failure("jscode2session"), None);
        assert_eq!(b.take_failure("token"), Some(Failure::Errcode(-1)));
        assert_eq!(b.take_failure("token"), Some(Failure::Errcode(-1)));
        assert_eq!(b.take_failure("token"), None);
        b.inject("checksession", Failure::Hang, 5);
        b.clear_failures();
        assert_eq!(b.take_failure("checksession"), None);
    }
}
