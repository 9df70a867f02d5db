//! Prometheus metrics at `/metrics` (text format 0.0.4, through `prometheus-client`): the
//! counters the scheduler loop and the API's rotations feed, and gauges computed at each
//! scrape from `ops::status` (credentials by state, stale and missing credentials, the oldest
//! verified secret's age, active checkouts by state).
//!
//! Each [`Metrics`] owns its `Registry` (no global recorder), so several daemons in one
//! test process keep their numbers apart.
//!
//! Invariant: labels are bounded. `policy` is a policy the inventory declares (at most
//! [`MAX_POLICIES`] distinct names, then `other`), `result` one of the engine's outcomes,
//! `state` one of the fixed states below. No host, account or credential ever becomes a label:
//! a fleet of thousands of hosts must not become thousands of series.

use std::collections::BTreeSet;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::ops::status::{State, Status};

/// The most distinct policy labels kept; later names count as `other`.
pub const MAX_POLICIES: usize = 32;

/// The outcomes a rotation ends with (`Outcome::label`, spaces as underscores).
const RESULTS: [&str; 7] = [
    "committed",
    "not_changed",
    "rolled_back",
    "unsettled",
    "stuck",
    "skipped",
    "kept_new",
];

/// The states `rotor status` gives a credential (`ops::status::State`).
const STATES: [&str; 7] = [
    "parked",
    "in_use",
    "open",
    "stuck",
    "checked_out",
    "ok",
    "no_current_secret",
];

/// The active checkout states (`checkout::State` before `closed`).
const CHECKOUT_STATES: [&str; 4] = ["pending", "approved", "open", "ending"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RotationLabels {
    policy: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// The daemon's metrics.
pub struct Metrics {
    registry: Registry,
    rotations: Family<RotationLabels, Counter>,
    run_duration: Histogram,
    last_pass: Gauge,
    credentials: Family<StateLabels, Gauge>,
    stale: Gauge,
    missing: Gauge,
    oldest_verified_age: Gauge,
    checkouts: Family<StateLabels, Gauge>,
    /// Policy names seen so far (the bound on the `policy` label).
    policies: Mutex<BTreeSet<String>>,
    /// One scrape at a time sets the gauges and encodes them: two concurrent scrapes must
    /// not interleave their numbers.
    scrape: Mutex<()>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("rotor");
        let rotations = Family::<RotationLabels, Counter>::default();
        registry.register(
            "rotations",
            "Credential rotations ended, by policy and result",
            rotations.clone(),
        );
        // From a second to an hour: a pass over a few hosts to a large fleet's.
        let run_duration = Histogram::new([
            1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
        ]);
        registry.register(
            "run_duration_seconds",
            "Duration of rotation runs (scheduler passes that rotated something, API-started rotations)",
            run_duration.clone(),
        );
        let last_pass = Gauge::default();
        registry.register(
            "last_successful_pass_timestamp_seconds",
            "When the scheduler last completed a pass (unix seconds; 0 before the first)",
            last_pass.clone(),
        );
        let credentials = Family::<StateLabels, Gauge>::default();
        registry.register(
            "credentials",
            "Credentials in the vault, by what they need (as rotor status says)",
            credentials.clone(),
        );
        let stale = Gauge::default();
        registry.register(
            "credentials_stale",
            "Credentials whose current secret is older than their policy's max_age",
            stale.clone(),
        );
        let missing = Gauge::default();
        registry.register(
            "credentials_missing",
            "Credentials the inventory lists that the vault holds no secret for",
            missing.clone(),
        );
        let oldest_verified_age = Gauge::default();
        registry.register(
            "oldest_verified_age_seconds",
            "Age of the oldest current (verified) secret in the vault (0 when none)",
            oldest_verified_age.clone(),
        );
        let checkouts = Family::<StateLabels, Gauge>::default();
        registry.register(
            "checkouts",
            "Active break-glass checkouts, by state (open: the secret is out)",
            checkouts.clone(),
        );
        Metrics {
            registry,
            rotations,
            run_duration,
            last_pass,
            credentials,
            stale,
            missing,
            oldest_verified_age,
            checkouts,
            policies: Mutex::new(BTreeSet::new()),
            scrape: Mutex::new(()),
        }
    }

    /// One credential's rotation ended with `result` (an outcome label) under `policy`.
    pub fn rotation(&self, policy: &str, result: &str) {
        let result = result.replace(' ', "_");
        let result = if RESULTS.contains(&result.as_str()) {
            result
        } else {
            "other".to_owned()
        };
        let policy = {
            let mut seen = self
                .policies
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if seen.contains(policy) || seen.len() < MAX_POLICIES {
                seen.insert(policy.to_owned());
                policy.to_owned()
            } else {
                "other".to_owned()
            }
        };
        self.rotations
            .get_or_create(&RotationLabels { policy, result })
            .inc();
    }

    /// A rotation run took `seconds`.
    pub fn run_duration(&self, seconds: f64) {
        self.run_duration.observe(seconds);
    }

    /// A scheduler pass completed at `at` (unix seconds).
    pub fn pass_completed(&self, at: i64) {
        self.last_pass.set(at);
    }

    /// The metrics in Prometheus text format, the gauges set from `status` (read just now).
    pub fn render(&self, status: &Status) -> String {
        let _one = self
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut by_state = [0i64; STATES.len()];
        for s in &status.credentials {
            let idx = match status.state(s) {
                State::Parked(_) => 0,
                State::InUse(_) => 1,
                State::Open => 2,
                State::Stuck => 3,
                State::CheckedOut(_) => 4,
                State::Ok => 5,
                State::NoCurrentSecret => 6,
            };
            by_state[idx] += 1;
        }
        // Every state is written, zeros too: a series that vanishes reads as "no data".
        for (state, n) in STATES.iter().zip(by_state) {
            self.credentials
                .get_or_create(&StateLabels {
                    state: (*state).to_owned(),
                })
                .set(n);
        }
        let n_stale = status.freshness.iter().filter(|f| f.is_stale()).count();
        self.stale.set(i64::try_from(n_stale).unwrap_or(i64::MAX));
        self.missing
            .set(i64::try_from(status.missing.len()).unwrap_or(i64::MAX));
        let oldest = status
            .credentials
            .iter()
            .filter_map(|s| status.age(s))
            .max()
            .map_or(0, |d| d.num_seconds().max(0));
        self.oldest_verified_age.set(oldest);
        for state in CHECKOUT_STATES {
            let n = status
                .checkouts
                .iter()
                .filter(|c| c.state.as_str() == state)
                .count();
            self.checkouts
                .get_or_create(&StateLabels {
                    state: state.to_owned(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let mut text = String::new();
        // Writing into a String cannot fail (`fmt::Write for String` never errors).
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("encoding into a String cannot fail");
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Status {
        Status {
            now: chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
                .unwrap()
                .to_utc(),
            credentials: Vec::new(),
            freshness: Vec::new(),
            checkouts: Vec::new(),
            missing: Vec::new(),
            bootstrap: Vec::new(),
            never_rotated: Vec::new(),
            unlisted: Vec::new(),
            bind: Vec::new(),
            last_run: None,
            judged: true,
        }
    }

    #[test]
    fn labels_stay_bounded() {
        let m = Metrics::new();
        for idx in 0..(MAX_POLICIES + 10) {
            m.rotation(&format!("p{idx}"), "committed");
        }
        m.rotation("p0", "rolled back");
        m.rotation("p0", "something new");
        let text = m.render(&empty());
        let series = text
            .lines()
            .filter(|l| l.starts_with("rotor_rotations_total{"))
            .count();
        // MAX_POLICIES names, one `other`, and p0's two more results.
        assert_eq!(series, MAX_POLICIES + 1 + 2, "{text}");
        assert!(
            text.contains(r#"policy="other",result="committed"} 10"#),
            "{text}"
        );
        assert!(
            text.contains(r#"policy="p0",result="rolled_back"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"policy="p0",result="other"} 1"#), "{text}");
    }

    #[test]
    fn every_state_is_written_even_at_zero() {
        let m = Metrics::new();
        m.pass_completed(1_764_547_200);
        m.run_duration(3.5);
        let text = m.render(&empty());
        for state in STATES {
            assert!(
                text.contains(&format!("rotor_credentials{{state=\"{state}\"}} 0")),
                "{state}: {text}"
            );
        }
        assert!(text.contains("rotor_last_successful_pass_timestamp_seconds 1764547200"));
        assert!(
            text.contains("rotor_run_duration_seconds_count 1"),
            "{text}"
        );
    }
}
