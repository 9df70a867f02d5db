//! Prometheus metrics (to be built): counters the scheduler feeds, gauges read at scrape.

/// The daemon's metrics.
pub struct Metrics {}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {}
    }

    /// One credential's rotation ended with `result` (an outcome label) under `policy`.
    pub fn rotation(&self, _policy: &str, _result: &str) {}

    /// A scheduler pass that rotated something took `seconds`.
    pub fn run_duration(&self, _seconds: f64) {}

    /// A scheduler pass completed at `at` (unix seconds).
    pub fn pass_completed(&self, _at: i64) {}
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
