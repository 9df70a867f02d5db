//! The daemon's scheduling decisions, pure: given a credential's plan (its policy's
//! schedule, zone and window), when it last rotated, what the vault remembers of its next
//! due time, and the time now, decide whether it rotates in this pass, and what to remember.
//! Time and randomness come in as arguments; `ops::scheduled` reads and writes the vault.
//!
//! The persisted due time is what makes the daemon's behaviour survive restarts:
//! - It is computed once from the last rotation (`schedule::due`: a manual rotation resets the
//!   cadence, missed ticks make one rotation, a window defers) and kept while the plan and
//!   the last rotation stay the same.
//! - A due time that passed while no daemon ran (before this daemon started) is a missed
//!   run: it is moved to a random moment within the catch-up spread from now (systemd's
//!   `Persistent=` with `RandomizedDelaySec=`), so hundreds of credentials missed during
//!   downtime do not all start in the same second. Credentials seen for the first time and
//!   due at once (never rotated) are spread the same way.
//! - A rotation that fails is tried again after a backoff (doubling from five minutes, at
//!   most six hours), not every tick: a broken host must not burn its lockout budget or the
//!   daemon's time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::schedule::{self, Due, Schedule, Window};

/// What a credential's policy says about when it rotates.
#[derive(Clone, Copy, Debug)]
pub struct Plan<'a> {
    pub schedule: &'a Schedule,
    pub tz: Tz,
    pub window: Option<&'a Window>,
}

impl Plan<'_> {
    /// A text that changes whenever the plan does (a new inventory with another schedule,
    /// zone or window makes the remembered due time stale).
    pub fn key(&self) -> String {
        let window = self.window.map_or_else(String::new, |w| w.to_string());
        format!("{} | {} | {window}", self.schedule.as_str(), self.tz.name())
    }
}

/// What the vault remembers of a credential's schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// [`Plan::key`] of the plan the due time was computed for.
    pub plan: String,
    /// The last rotation it was computed from (`None`: never rotated).
    pub basis: Option<DateTime<Utc>>,
    /// When it rotates; `None`: the schedule fires no more.
    pub due_at: Option<DateTime<Utc>>,
    /// Scheduled rotations that failed since the last success.
    pub failures: u32,
}

/// The daemon's settings the decisions depend on.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// When this daemon started: a due time before it passed while no daemon ran.
    pub started_at: DateTime<Utc>,
    /// How far missed and first runs are spread (0: all at once).
    pub catch_up_spread: Duration,
}

/// What to do with one credential in this pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Rotate it in this pass.
    pub rotate: bool,
    /// When it is due (now or later); `None`: never.
    pub due_at: Option<DateTime<Utc>>,
    /// Why, in words, for the log.
    pub why: Why,
    /// What to remember, when it changed.
    pub store: Option<Stored>,
}

/// Why a credential is due when it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Its schedule fired (on time, or after the window opened).
    Scheduled,
    /// Its due time passed while no daemon ran, or it was never rotated: spread from now.
    CatchUp,
    /// Its last scheduled rotation failed: tried again after a backoff.
    Retry,
    /// Waiting for its due time.
    Waiting,
    /// The schedule fires no more.
    Never,
}

/// Decides one credential at `now`; `rng_value` is a uniform random `u64` from the
/// caller's entropy, used only when a run is spread. Whatever made it due (on time, a
/// catch-up, a retry), nothing rotates outside the plan's window: it waits for the opening.
pub fn decide(
    plan: Plan<'_>,
    last_rotation: Option<DateTime<Utc>>,
    stored: Option<&Stored>,
    now: DateTime<Utc>,
    settings: Settings,
    rng_value: u64,
) -> Decision {
    let d = decide_ignoring_window(plan, last_rotation, stored, now, settings, rng_value);
    let Some(w) = plan.window else {
        return d;
    };
    if !d.rotate || w.contains(now, plan.tz) {
        return d;
    }
    let opens = w.next_open(now, plan.tz);
    let failures = d.store.as_ref().or(stored).map_or(0, |s| s.failures);
    Decision {
        rotate: false,
        due_at: opens,
        why: Why::Waiting,
        store: Some(Stored {
            plan: plan.key(),
            basis: last_rotation,
            due_at: opens,
            failures,
        }),
    }
}

fn decide_ignoring_window(
    plan: Plan<'_>,
    last_rotation: Option<DateTime<Utc>>,
    stored: Option<&Stored>,
    now: DateTime<Utc>,
    settings: Settings,
    rng_value: u64,
) -> Decision {
    let key = plan.key();
    let spread = |failures: u32| {
        let at = spread_from(now, plan, settings.catch_up_spread, rng_value);
        Stored {
            plan: key.clone(),
            basis: last_rotation,
            due_at: Some(at),
            failures,
        }
    };
    if let Some(s) = stored.filter(|s| s.plan == key && s.basis == last_rotation) {
        return match s.due_at {
            None => wait(None, Why::Never, None),
            // Came due while no daemon ran: one run, spread from now.
            Some(at) if at < settings.started_at && at <= now => {
                let new = spread(s.failures);
                decision_for(new, now, Why::CatchUp)
            }
            Some(at) if at <= now => Decision {
                rotate: true,
                due_at: Some(at),
                why: if s.failures > 0 {
                    Why::Retry
                } else {
                    Why::Scheduled
                },
                store: None,
            },
            Some(at) => wait(Some(at), Why::Waiting, None),
        };
    }
    match schedule::due(plan.schedule, plan.tz, plan.window, last_rotation, now) {
        Due::Now { since, .. } => {
            // A tick that passed while this daemon ran, since the last rotation, is simply
            // due; one before it started, or a credential never rotated, is spread.
            if let Some(tick) = since
                && tick >= settings.started_at
            {
                let new = Stored {
                    plan: key,
                    basis: last_rotation,
                    due_at: Some(now),
                    failures: 0,
                };
                return decision_for(new, now, Why::Scheduled);
            }
            decision_for(spread(0), now, Why::CatchUp)
        }
        Due::Later { at, .. } => {
            let new = Stored {
                plan: key,
                basis: last_rotation,
                due_at: Some(at),
                failures: 0,
            };
            decision_for(new, now, Why::Waiting)
        }
        Due::Never => wait(
            None,
            Why::Never,
            Some(Stored {
                plan: key,
                basis: last_rotation,
                due_at: None,
                failures: 0,
            }),
        ),
    }
}

fn wait(due_at: Option<DateTime<Utc>>, why: Why, store: Option<Stored>) -> Decision {
    Decision {
        rotate: false,
        due_at,
        why,
        store,
    }
}

fn decision_for(new: Stored, now: DateTime<Utc>, why: Why) -> Decision {
    let rotate = new.due_at.is_some_and(|at| at <= now);
    Decision {
        rotate,
        due_at: new.due_at,
        why: if rotate && why == Why::Waiting {
            Why::Scheduled
        } else {
            why
        },
        store: Some(new),
    }
}

/// A random moment within `spread` from `now`, kept inside the plan's window: a moment the
/// window does not contain falls back to `now` (which the caller only spreads while the
/// window is open: `schedule::due` defers to its opening otherwise).
fn spread_from(
    now: DateTime<Utc>,
    plan: Plan<'_>,
    spread: Duration,
    rng_value: u64,
) -> DateTime<Utc> {
    let at = schedule::jitter(now, spread, rng_value);
    match plan.window {
        Some(w) if !w.contains(at, plan.tz) => now,
        _ => at,
    }
}

/// After a scheduled rotation of a credential failed at `now`: tried again after a backoff
/// that doubles from five minutes with each failure, at most six hours.
pub fn after_failure(
    plan: Plan<'_>,
    last_rotation: Option<DateTime<Utc>>,
    failures_before: u32,
    now: DateTime<Utc>,
) -> Stored {
    let failures = failures_before.saturating_add(1);
    let backoff = retry_backoff(failures);
    let at = now + chrono::Duration::from_std(backoff).unwrap_or(chrono::Duration::hours(6));
    // A retry outside the window waits for its opening.
    let at = match plan.window {
        Some(w) if !w.contains(at, plan.tz) => w.next_open(at, plan.tz).unwrap_or(at),
        _ => at,
    };
    Stored {
        plan: plan.key(),
        basis: last_rotation,
        due_at: Some(at),
        failures,
    }
}

/// Five minutes after the first failure, doubling, at most six hours.
pub fn retry_backoff(failures: u32) -> Duration {
    let base = Duration::from_secs(5 * 60);
    let max = Duration::from_secs(6 * 3600);
    let doublings = failures.saturating_sub(1).min(16);
    (base * 2u32.pow(doublings)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn tokyo() -> Tz {
        "Asia/Tokyo".parse().unwrap()
    }

    fn settings(started_at: DateTime<Utc>) -> Settings {
        Settings {
            started_at,
            catch_up_spread: Duration::from_secs(600),
        }
    }

    /// Runs `decide` and returns the decision, with the stored row it gives folded back in.
    fn check(
        expr: &str,
        window: Option<&Window>,
        last: Option<DateTime<Utc>>,
        stored: Option<&Stored>,
        now: DateTime<Utc>,
        started: DateTime<Utc>,
    ) -> Decision {
        let schedule = Schedule::parse(expr).unwrap();
        let plan = Plan {
            schedule: &schedule,
            tz: tokyo(),
            window,
        };
        decide(plan, last, stored, now, settings(started), u64::MAX / 2)
    }

    #[test]
    fn a_due_tick_while_running_rotates_and_a_later_one_waits() {
        // Daily at 03:00 Tokyo = 18:00 UTC the day before.
        let started = utc(2026, 11, 30, 0, 0);
        let last = Some(utc(2026, 11, 30, 18, 0));
        let d = check(
            "0 3 * * *",
            None,
            last,
            None,
            utc(2026, 12, 1, 17, 0),
            started,
        );
        assert!(!d.rotate);
        assert_eq!(d.due_at, Some(utc(2026, 12, 1, 18, 0)));
        let stored = d.store.unwrap();
        // The remembered due time comes due: rotate, nothing new to remember.
        let d = check(
            "0 3 * * *",
            None,
            last,
            Some(&stored),
            utc(2026, 12, 1, 18, 0),
            started,
        );
        assert!(d.rotate);
        assert_eq!(d.why, Why::Scheduled);
        assert_eq!(d.store, None);
    }

    #[test]
    fn a_due_time_missed_while_down_runs_once_spread_from_now() {
        let last = Some(utc(2026, 11, 1, 18, 0));
        let before = check(
            "0 3 * * *",
            None,
            last,
            None,
            utc(2026, 11, 2, 0, 0),
            utc(2026, 11, 1, 0, 0),
        );
        let stored = before.store.unwrap();
        // Down for ten days; restarted at 12:00.
        let now = utc(2026, 11, 12, 12, 0);
        let d = check("0 3 * * *", None, last, Some(&stored), now, now);
        assert_eq!(d.why, Why::CatchUp);
        let at = d.due_at.unwrap();
        assert!(
            at >= now && at <= now + chrono::Duration::seconds(600),
            "{at}"
        );
        // Half the spread with this rng value: not yet.
        assert!(!d.rotate);
        // Once that moment comes it rotates once; the row is not moved again.
        let again = check("0 3 * * *", None, last, d.store.as_ref(), at, now);
        assert!(again.rotate);
        assert_eq!(again.store, None);
    }

    #[test]
    fn never_rotated_is_spread_and_a_manual_rotation_resets_the_cadence() {
        let now = utc(2026, 12, 1, 0, 0);
        let d = check("0 3 * * *", None, None, None, now, now);
        assert_eq!(d.why, Why::CatchUp);
        // A manual rotation at 01:00 UTC: the stored basis no longer matches, the next
        // tick counts from it.
        let manual = Some(utc(2026, 12, 1, 1, 0));
        let d2 = check(
            "0 3 * * *",
            None,
            manual,
            d.store.as_ref(),
            utc(2026, 12, 1, 2, 0),
            now,
        );
        assert!(!d2.rotate);
        assert_eq!(d2.due_at, Some(utc(2026, 12, 1, 18, 0)));
    }

    #[test]
    fn a_window_defers_a_due_rotation_until_it_opens() {
        let window = Window {
            days: crate::schedule::Weekdays::parse_item("mon-fri").unwrap(),
            hours: crate::schedule::Hours::parse("01:00-05:00").unwrap(),
        };
        // Saturday 2026-12-05 12:00 Tokyo (03:00 UTC): due (daily at 03:00), window closed.
        let last = Some(utc(2026, 12, 3, 18, 0));
        let started = utc(2026, 12, 1, 0, 0);
        let now = utc(2026, 12, 5, 3, 0);
        let d = check("0 3 * * *", Some(&window), last, None, now, started);
        assert!(!d.rotate);
        // Monday 2026-12-07 01:00 Tokyo = Sunday 16:00 UTC.
        assert_eq!(d.due_at, Some(utc(2026, 12, 6, 16, 0)));
        let d = check(
            "0 3 * * *",
            Some(&window),
            last,
            d.store.as_ref(),
            utc(2026, 12, 6, 16, 0),
            started,
        );
        assert!(d.rotate);
    }

    #[test]
    fn a_restart_or_a_late_pass_outside_the_window_waits_for_it_to_open() {
        let window = Window {
            days: crate::schedule::Weekdays::parse_item("mon-fri").unwrap(),
            hours: crate::schedule::Hours::parse("01:00-05:00").unwrap(),
        };
        let last = Some(utc(2026, 12, 3, 18, 0));
        // Remembered: due Monday 01:00 Tokyo (Sunday 16:00 UTC).
        let stored = Stored {
            plan: Plan {
                schedule: &Schedule::parse("0 3 * * *").unwrap(),
                tz: tokyo(),
                window: Some(&window),
            }
            .key(),
            basis: last,
            due_at: Some(utc(2026, 12, 6, 16, 0)),
            failures: 1,
        };
        // Restarted Monday 09:00 Tokyo (00:00 UTC), the window closed since 05:00: a
        // catch-up, but not now: Tuesday 01:00 Tokyo.
        let now = utc(2026, 12, 7, 0, 0);
        let d = check("0 3 * * *", Some(&window), last, Some(&stored), now, now);
        assert!(!d.rotate);
        assert_eq!(d.due_at, Some(utc(2026, 12, 7, 16, 0)));
        assert_eq!(
            d.store.as_ref().unwrap().failures,
            1,
            "the failure count is kept"
        );
        // A daemon that ran all along but whose pass came late (after 05:00): the same.
        let d = check(
            "0 3 * * *",
            Some(&window),
            last,
            Some(&stored),
            now,
            utc(2026, 12, 1, 0, 0),
        );
        assert!(!d.rotate);
        assert_eq!(d.due_at, Some(utc(2026, 12, 7, 16, 0)));
    }

    #[test]
    fn a_changed_plan_recomputes() {
        let started = utc(2026, 11, 30, 0, 0);
        let last = Some(utc(2026, 11, 30, 18, 0));
        let now = utc(2026, 11, 30, 18, 30);
        let d = check("0 3 * * *", None, last, None, now, started);
        assert_eq!(d.due_at, Some(utc(2026, 12, 1, 18, 0)));
        let d2 = check("0 4 * * *", None, last, d.store.as_ref(), now, started);
        assert_eq!(d2.due_at, Some(utc(2026, 11, 30, 19, 0)));
        assert!(d2.store.is_some());
    }

    #[test]
    fn failures_back_off_doubling_up_to_six_hours() {
        assert_eq!(retry_backoff(1), Duration::from_secs(300));
        assert_eq!(retry_backoff(2), Duration::from_secs(600));
        assert_eq!(retry_backoff(8), Duration::from_secs(6 * 3600));
        assert_eq!(retry_backoff(u32::MAX), Duration::from_secs(6 * 3600));
        let schedule = Schedule::parse("0 3 * * *").unwrap();
        let plan = Plan {
            schedule: &schedule,
            tz: tokyo(),
            window: None,
        };
        let now = utc(2026, 12, 1, 18, 0);
        let s = after_failure(plan, None, 0, now);
        assert_eq!(s.failures, 1);
        assert_eq!(s.due_at, Some(now + chrono::Duration::minutes(5)));
        let d = decide(
            plan,
            None,
            Some(&s),
            now + chrono::Duration::minutes(5),
            settings(now),
            0,
        );
        assert!(d.rotate);
        assert_eq!(d.why, Why::Retry);
    }
}
