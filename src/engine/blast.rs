//! Blast-radius control, pure: the canary rule, the circuit breaker and interrupts decide
//! whether the driver may start the next host. The driver reports each finished host; this
//! module only counts and decides (no I/O, no clock).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// `--max-failures`: a count of failed hosts, or a percentage of the run's hosts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FailureLimit {
    Unlimited,
    Count(usize),
    Percent(f64),
}

impl FailureLimit {
    /// The number of failed hosts allowed before the breaker opens, for a run of `n_hosts`.
    pub fn allowed(self, n_hosts: usize) -> usize {
        match self {
            FailureLimit::Unlimited => usize::MAX,
            FailureLimit::Count(n) => n,
            FailureLimit::Percent(p) => ((p / 100.0) * n_hosts as f64).floor() as usize,
        }
    }
}

impl FromStr for FailureLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<FailureLimit, String> {
        let bad = || {
            format!(
                "`{s}` is not a failure limit: write a count of hosts (e.g. 5) or a percentage of the run's hosts (e.g. 10%)"
            )
        };
        match s.strip_suffix('%') {
            Some(p) => {
                let p: f64 = p.trim().parse().map_err(|_| bad())?;
                if (0.0..=100.0).contains(&p) {
                    Ok(FailureLimit::Percent(p))
                } else {
                    Err(bad())
                }
            }
            None => s.trim().parse().map(FailureLimit::Count).map_err(|_| bad()),
        }
    }
}

/// Why a credential was not attempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// A canary host failed, so the rest of the run was not started.
    CanaryFailed,
    /// More hosts failed than `--max-failures` allows.
    BreakerOpen,
    /// SIGINT/SIGTERM: no new work was started.
    Interrupted,
    /// The credential is parked after repeated failed logins (lockout budget).
    Parked,
    /// Another rotor process holds the credential's lease.
    Busy,
    /// An earlier rotation of it is still open and could not be settled now.
    OpenRotation,
    /// Its host stopped answering during an earlier account of the same run.
    HostLost,
    /// Its secret is out with someone through an open checkout.
    CheckedOut,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::CanaryFailed => "canary failed",
            SkipReason::BreakerOpen => "failure limit reached",
            SkipReason::Interrupted => "interrupted",
            SkipReason::Parked => "parked",
            SkipReason::Busy => "in use by another rotor",
            SkipReason::OpenRotation => "earlier rotation open",
            SkipReason::HostLost => "host stopped answering",
            SkipReason::CheckedOut => "checked out",
        })
    }
}

/// The launch decision for the next host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Launch {
    Go,
    Skip(SkipReason, String),
}

/// Counts failed hosts and decides whether new hosts may start.
#[derive(Clone, Debug)]
pub struct Breaker {
    allowed_failures: usize,
    n_failed: usize,
    first_failed: Option<String>,
    canary_failed: Option<String>,
    interrupted: bool,
}

impl Breaker {
    pub fn new(limit: FailureLimit, n_hosts: usize) -> Breaker {
        Breaker {
            allowed_failures: limit.allowed(n_hosts),
            n_failed: 0,
            first_failed: None,
            canary_failed: None,
            interrupted: false,
        }
    }

    /// A host finished; `failed` when any of its credentials did not commit.
    pub fn host_finished(&mut self, host: &str, failed: bool, canary: bool) {
        if failed {
            self.n_failed += 1;
            self.first_failed.get_or_insert_with(|| host.to_owned());
            if canary {
                self.canary_failed.get_or_insert_with(|| host.to_owned());
            }
        }
    }

    pub fn interrupt(&mut self) {
        self.interrupted = true;
    }

    pub fn n_failed(&self) -> usize {
        self.n_failed
    }

    /// May the next host start?
    pub fn may_launch(&self) -> Launch {
        if self.interrupted {
            return Launch::Skip(
                SkipReason::Interrupted,
                "the run was interrupted before this host started".to_owned(),
            );
        }
        if let Some(host) = &self.canary_failed {
            return Launch::Skip(
                SkipReason::CanaryFailed,
                format!(
                    "canary host {host} failed, so the run stopped before this host; fix it and run again"
                ),
            );
        }
        if self.n_failed > self.allowed_failures {
            return Launch::Skip(
                SkipReason::BreakerOpen,
                format!(
                    "{} hosts failed (first: {}), more than --max-failures allows ({}); the run stopped launching hosts",
                    self.n_failed,
                    self.first_failed.as_deref().unwrap_or("?"),
                    self.allowed_failures
                ),
            );
        }
        Launch::Go
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse() {
        assert_eq!("5".parse(), Ok(FailureLimit::Count(5)));
        assert_eq!("10%".parse(), Ok(FailureLimit::Percent(10.0)));
        assert!("ten".parse::<FailureLimit>().is_err());
        assert!("150%".parse::<FailureLimit>().is_err());
        assert_eq!(FailureLimit::Percent(10.0).allowed(35), 3);
        assert_eq!(FailureLimit::Percent(0.0).allowed(35), 0);
    }

    #[test]
    fn breaker_opens_when_failures_exceed_the_limit() {
        let mut b = Breaker::new(FailureLimit::Count(1), 10);
        assert_eq!(b.may_launch(), Launch::Go);
        b.host_finished("h1", true, false);
        assert_eq!(b.may_launch(), Launch::Go, "one failure is allowed");
        b.host_finished("h2", false, false);
        b.host_finished("h3", true, false);
        assert!(
            matches!(b.may_launch(), Launch::Skip(SkipReason::BreakerOpen, m) if m.contains("first: h1"))
        );
    }

    #[test]
    fn zero_percent_stops_at_the_first_failure() {
        let mut b = Breaker::new(FailureLimit::Percent(0.0), 100);
        b.host_finished("h1", true, false);
        assert!(matches!(
            b.may_launch(),
            Launch::Skip(SkipReason::BreakerOpen, _)
        ));
    }

    #[test]
    fn a_failed_canary_stops_everything_and_interrupts_win() {
        let mut b = Breaker::new(FailureLimit::Unlimited, 10);
        b.host_finished("c1", false, true);
        assert_eq!(b.may_launch(), Launch::Go);
        b.host_finished("c2", true, true);
        assert!(
            matches!(b.may_launch(), Launch::Skip(SkipReason::CanaryFailed, m) if m.contains("c2"))
        );
        b.interrupt();
        assert!(matches!(
            b.may_launch(),
            Launch::Skip(SkipReason::Interrupted, _)
        ));
    }
}
