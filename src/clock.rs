//! Time and randomness, injected (rustls's `TimeProvider` is the model). Every part of rotor
//! that needs the time (leases and their push fence, audit entries, ages in `status`, later
//! schedules and checkout expiry) or randomness (secrets, key pairs, nonces, salts) takes a
//! [`Clock`] or an [`Entropy`] from its caller.
//!
//! Architecture invariant: `SystemTime::now`, `Utc::now` and `OsRng` appear only in the
//! implementations below ([`SystemClock`], [`OsEntropy`]). A test sets a [`TestClock`] and
//! moves it; nothing else in rotor can tell. Likewise the machine's time zone is read only
//! by [`machine_timezone`]; schedules take a zone as an argument.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::{CryptoRng, RngCore};

/// Where rotor reads the time.
pub trait Clock: Send + Sync {
    /// Wall time: leases, audit entries, ages, schedules, checkout expiry.
    fn now(&self) -> DateTime<Utc>;
    /// Monotonic time: step deadlines and elapsed times, which must not jump when the wall
    /// clock is set.
    fn monotonic(&self) -> Instant;
}

/// The machine's clocks, moved ahead by a fixed offset (lab builds: a test lets a deadline
/// pass without waiting for it).
#[cfg(feature = "lab")]
#[derive(Clone, Copy, Debug)]
pub struct OffsetClock(pub chrono::Duration);

#[cfg(feature = "lab")]
impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        SystemClock.now() + self.0
    }
    fn monotonic(&self) -> Instant {
        SystemClock.monotonic()
    }
}

/// The machine's clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn monotonic(&self) -> Instant {
        Instant::now()
    }
}

/// A clock a test sets and moves. Both readings move together.
#[derive(Clone, Debug)]
pub struct TestClock {
    inner: Arc<Mutex<(DateTime<Utc>, Instant)>>,
}

impl TestClock {
    /// A clock that reads `start` until moved.
    pub fn at(start: DateTime<Utc>) -> TestClock {
        TestClock {
            inner: Arc::new(Mutex::new((start, Instant::now()))),
        }
    }

    /// Moves both readings forward.
    pub fn advance(&self, by: Duration) {
        let mut t = self
            .inner
            .lock()
            .expect("test clock lock is never poisoned");
        t.0 += chrono::Duration::from_std(by).expect("test durations fit chrono's range");
        t.1 += by;
    }

    /// Sets the wall time (monotonic time does not go back; it stays where it is).
    pub fn set(&self, now: DateTime<Utc>) {
        self.inner
            .lock()
            .expect("test clock lock is never poisoned")
            .0 = now;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        self.inner
            .lock()
            .expect("test clock lock is never poisoned")
            .0
    }
    fn monotonic(&self) -> Instant {
        self.inner
            .lock()
            .expect("test clock lock is never poisoned")
            .1
    }
}

/// The machine's time zone, for policies that name none: `TZ` (a zone name, `:Name`, or a
/// path into a zoneinfo directory), else `/etc/timezone`, else the zone `/etc/localtime`
/// links to; UTC when none of them names a zone rotor knows.
pub fn machine_timezone() -> chrono_tz::Tz {
    let tz_env = std::env::var("TZ").ok();
    let etc_timezone = std::fs::read_to_string("/etc/timezone").ok();
    let localtime = std::fs::read_link("/etc/localtime").ok();
    timezone_from(
        tz_env.as_deref(),
        etc_timezone.as_deref(),
        localtime.as_deref().and_then(|p| p.to_str()),
    )
}

/// [`machine_timezone`]'s choice, from what it read (pure, for tests).
fn timezone_from(
    tz_env: Option<&str>,
    etc_timezone: Option<&str>,
    localtime_target: Option<&str>,
) -> chrono_tz::Tz {
    // A zoneinfo path names its zone by what follows `zoneinfo/`.
    let zone_of_path = |text: &str| -> Option<chrono_tz::Tz> {
        let text = text.trim().trim_start_matches(':');
        let name = match text.rsplit_once("zoneinfo/") {
            Some((_, name)) => name,
            None => text,
        };
        name.parse().ok()
    };
    [tz_env, etc_timezone, localtime_target]
        .into_iter()
        .flatten()
        .find_map(zone_of_path)
        .unwrap_or(chrono_tz::Tz::UTC)
}

/// A cryptographically secure random number generator, boxed so it can cross trait objects.
pub trait SecureRng: RngCore + CryptoRng + Send {}
impl<R: RngCore + CryptoRng + Send> SecureRng for R {}

/// Where rotor draws randomness: one generator per use, so concurrent workers never share one.
pub trait Entropy: Send + Sync {
    fn rng(&self) -> Box<dyn SecureRng>;
}

/// The operating system's CSPRNG.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn rng(&self) -> Box<dyn SecureRng> {
        Box::new(rand::rngs::OsRng)
    }
}

/// Deterministic randomness for tests: each `rng()` is seeded from the seed and a counter, so
/// two draws differ but a test run is repeatable.
#[derive(Debug)]
pub struct SeededEntropy {
    seed: u64,
    n_drawn: std::sync::atomic::AtomicU64,
}

impl SeededEntropy {
    pub fn new(seed: u64) -> SeededEntropy {
        SeededEntropy {
            seed,
            n_drawn: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Entropy for SeededEntropy {
    fn rng(&self) -> Box<dyn SecureRng> {
        use rand::SeedableRng;
        let n = self
            .n_drawn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Box::new(rand::rngs::StdRng::seed_from_u64(
            self.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_clock_moves_only_when_told() {
        let start = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = TestClock::at(start);
        let m0 = clock.monotonic();
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.now(), start + chrono::Duration::seconds(90));
        assert_eq!(clock.monotonic() - m0, Duration::from_secs(90));
    }

    #[test]
    fn the_machine_zone_comes_from_tz_then_etc_timezone_then_the_localtime_link() {
        use chrono_tz::Tz;
        let from = timezone_from;
        assert_eq!(
            from(Some("Asia/Tokyo"), Some("Europe/Berlin\n"), None),
            Tz::Asia__Tokyo
        );
        assert_eq!(from(Some(":Asia/Tokyo"), None, None), Tz::Asia__Tokyo);
        assert_eq!(
            from(Some("/usr/share/zoneinfo/Asia/Tokyo"), None, None),
            Tz::Asia__Tokyo
        );
        // A TZ rotor cannot read (a POSIX rule string) gives way to the files.
        assert_eq!(
            from(Some("JST-9"), Some("Europe/Berlin\n"), None),
            Tz::Europe__Berlin
        );
        assert_eq!(
            from(None, None, Some("../usr/share/zoneinfo/Europe/Berlin")),
            Tz::Europe__Berlin
        );
        assert_eq!(from(None, Some("nonsense"), None), Tz::UTC);
        assert_eq!(from(None, None, None), Tz::UTC);
    }

    #[test]
    fn seeded_entropy_repeats_across_runs_but_not_across_draws() {
        let a = SeededEntropy::new(7);
        let b = SeededEntropy::new(7);
        let (x1, x2) = (a.rng().next_u64(), a.rng().next_u64());
        assert_ne!(x1, x2);
        assert_eq!(b.rng().next_u64(), x1);
    }
}
