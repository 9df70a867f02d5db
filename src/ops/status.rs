//! `status`: every credential in the vault, its age (by the context's clock), its state, its
//! open checkout, and, given the inventory, whether it is stale (its current secret older
//! than its policy's `max_age`) and which listed credentials the vault does not hold yet.

use chrono::{DateTime, Utc};

use super::{Context, OpsError};
use crate::credential::CredentialId;
use crate::inventory::Inventory;
use crate::store::{CheckoutRecord, CredentialStatus};

/// The vault's credentials, read at `now`.
pub struct Status {
    pub now: DateTime<Utc>,
    pub credentials: Vec<CredentialStatus>,
    /// Each credential's freshness against its policy (same order as `credentials`); all
    /// `Unknown` without an inventory.
    pub freshness: Vec<Freshness>,
    /// Active checkouts (pending, approved, open, ending).
    pub checkouts: Vec<CheckoutRecord>,
    /// Credentials the inventory lists (hosts' accounts, directories' bind accounts) that
    /// the vault holds no secret for: never rotated nor enrolled.
    pub missing: Vec<CredentialId>,
    /// Hosts that still accept the bootstrap connect key (the key file the inventory names
    /// in `connect`), as far as the vault knows: rotor has not yet retired it there (a copy
    /// in a file other than `~/.ssh/authorized_keys` is said by the run that retired it).
    pub bootstrap: Vec<BootstrapKey>,
}

/// A host that still accepts the inventory's connect key file, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BootstrapKey {
    pub host: String,
    pub key_file: String,
    pub why: String,
}

/// The hosts of `inv` connected with a key file that rotor has not replaced by a key of the
/// host's own: the connect user's key is not managed there, or its first rotation has not
/// finished retiring the old key.
fn bootstrap_keys(
    inv: &Inventory,
    credentials: &[CredentialStatus],
    sightings: &[(String, bool, String)],
) -> Vec<BootstrapKey> {
    inv.hosts
        .iter()
        .filter_map(|h| {
            let file = h.bootstrap_key()?;
            // What rotor last saw decides: a login with the key worked after rotor removed it,
            // or failed. Otherwise the rotations' phases tell.
            let seen = sightings.iter().find(|(host, _, _)| host == h.name.as_str());
            let why = match seen {
                Some((_, false, _)) => return None,
                Some((_, true, at)) if retired(h, credentials) => format!(
                    "a login with it still worked at {at}, after rotor removed it from ~/.ssh/authorized_keys: sshd reads it from another file (AuthorizedKeysFile); remove it there"
                ),
                _ => inferred(h, credentials)?,
            };
            Some(BootstrapKey {
                host: h.name.to_string(),
                key_file: file.display().to_string(),
                why,
            })
        })
        .collect()
}

/// Whether the host's connect key credential's last rotation retired the old key.
fn retired(h: &crate::inventory::Host, credentials: &[CredentialStatus]) -> bool {
    let Some(cred) = h.connect_credential() else {
        return false;
    };
    credentials.iter().any(|s| {
        s.cred == cred
            && s.has_current
            && s.last_rotation
                .as_ref()
                .is_some_and(|r| r.phase == crate::engine::Phase::Retired)
    })
}

/// Why the host still accepts its bootstrap key, judged by its connect key credential's
/// rotations; `None` once one removed it.
fn inferred(h: &crate::inventory::Host, credentials: &[CredentialStatus]) -> Option<String> {
    use crate::engine::Phase;
    let Some(cred) = h.connect_credential() else {
        let user = &h.connect.user;
        return Some(format!(
            "{user}'s key is not among the host's accounts: add {{ name: {user}, playbook: linux-ssh-key }} to give the host a key of its own"
        ));
    };
    let record = credentials.iter().find(|s| s.cred == cred);
    let phase = record
        .and_then(|s| s.last_rotation.as_ref())
        .map(|r| r.phase);
    Some(match (record.is_some_and(|s| s.has_current), phase) {
        (true, Some(Phase::Retired | Phase::Committed)) => return None,
        (_, Some(Phase::Retiring)) => {
            format!("{cred} is rotated but the old key is not removed yet: run `rotor recover`")
        }
        (_, None) => format!("{cred} was never rotated: `rotor rotate --scope cred:{cred}`"),
        (_, Some(phase)) => format!(
            "the last rotation of {cred} ended {phase}; the bootstrap key stays until one finishes: `rotor rotate --scope cred:{cred}`"
        ),
    })
}

/// How old a credential's current secret is against its policy's `max_age`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Younger than `max_age`.
    Fresh { max_age: std::time::Duration },
    /// Older than `max_age` (or with no current secret at all): rotate it.
    Stale { max_age: std::time::Duration },
    /// Its policy sets no `max_age`.
    NoMaxAge,
    /// Not known: no inventory given, or the inventory does not list it.
    Unknown,
}

impl Freshness {
    pub fn is_stale(self) -> bool {
        matches!(self, Freshness::Stale { .. })
    }
}

/// A secret current since `since` is stale at `now` once it is older than `max_age`; a
/// credential without a current secret is stale as soon as its policy has a `max_age`.
pub fn freshness(
    since: Option<DateTime<Utc>>,
    max_age: Option<std::time::Duration>,
    now: DateTime<Utc>,
) -> Freshness {
    let Some(max_age) = max_age else {
        return Freshness::NoMaxAge;
    };
    let limit = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
    match since {
        Some(since) if now - since <= limit => Freshness::Fresh { max_age },
        _ => Freshness::Stale { max_age },
    }
}

/// What a credential needs, most urgent first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State<'a> {
    /// Its lockout budget is spent: no login until an operator unparks it.
    Parked(&'a str),
    /// A live rotor holds its lease.
    InUse(&'a str),
    /// A rotation is open: recovery must settle it.
    Open,
    /// A rotation is stuck (both secrets kept): an operator must settle it.
    Stuck,
    /// Its secret is out with someone (or being taken back).
    CheckedOut(&'a CheckoutRecord),
    Ok,
    NoCurrentSecret,
}

impl Status {
    /// How long the credential's current secret has been current.
    pub fn age(&self, s: &CredentialStatus) -> Option<chrono::Duration> {
        s.current_since.map(|t| self.now - t)
    }

    /// The credential's active checkout, if any.
    pub fn checkout(&self, s: &CredentialStatus) -> Option<&CheckoutRecord> {
        self.checkouts
            .iter()
            .find(|c| c.cred == s.cred && c.state.secret_is_out())
    }

    /// What the credential needs.
    pub fn state<'a>(&'a self, s: &'a CredentialStatus) -> State<'a> {
        if let Some(why) = &s.parked {
            State::Parked(why)
        } else if let Some(holder) = &s.lease_holder {
            State::InUse(holder)
        } else if s.open_rotation {
            State::Open
        } else if is_stuck(s) {
            State::Stuck
        } else if let Some(c) = self.checkout(s) {
            State::CheckedOut(c)
        } else if s.has_current {
            State::Ok
        } else {
            State::NoCurrentSecret
        }
    }

    /// `--check`: 0 all well, 3 something is stale or missing (rotate it), 4 an operator
    /// is needed (parked, or a rotation left open).
    pub fn check_code(&self) -> i32 {
        let operator = self
            .credentials
            .iter()
            .any(|s| s.parked.is_some() || s.open_rotation || is_stuck(s));
        let stale = self.freshness.iter().any(|f| f.is_stale()) || !self.missing.is_empty();
        if operator {
            4
        } else if stale {
            3
        } else {
            0
        }
    }
}

impl Status {
    /// The JSON form `rotor status --output json` prints and `GET /api/v1/status` answers:
    /// each credential's record (no secret: the vault's status holds none) with its
    /// freshness and active checkout, and the listed credentials the vault lacks.
    pub fn to_json(&self) -> serde_json::Value {
        let credentials: Vec<serde_json::Value> = self
            .credentials
            .iter()
            .zip(&self.freshness)
            .map(|(s, f)| {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                if let serde_json::Value::Object(m) = &mut v {
                    let (stale, max_age) = match f {
                        Freshness::Fresh { max_age } => (Some(false), Some(max_age.as_secs())),
                        Freshness::Stale { max_age } => (Some(true), Some(max_age.as_secs())),
                        Freshness::NoMaxAge => (Some(false), None),
                        Freshness::Unknown => (None, None),
                    };
                    m.insert("stale".into(), stale.into());
                    m.insert("max_age_secs".into(), max_age.into());
                    m.insert("checkout".into(), self.checkout(s).map(|c| c.id).into());
                }
                v
            })
            .collect();
        serde_json::json!({
            "schema_version": crate::report::SCHEMA_VERSION,
            "credentials": credentials,
            "missing": self.missing.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "bootstrap_key_accepted": self.bootstrap,
        })
    }
}

fn is_stuck(s: &CredentialStatus) -> bool {
    s.last_rotation
        .as_ref()
        .is_some_and(|r| r.phase == crate::engine::Phase::Stuck)
}

/// The vault's status; with `inventory`, each credential's freshness against its policy and
/// the listed credentials the vault lacks.
pub fn status(ctx: &Context, inventory: Option<&Inventory>) -> Result<Status, OpsError> {
    let now = ctx.clock.now();
    let credentials = ctx.records.status()?;
    let freshness = credentials
        .iter()
        .map(
            |s| match inventory.and_then(|inv| inv.policy_for(&s.cred)) {
                Some(policy) => freshness(s.current_since, policy.max_age, now),
                None => Freshness::Unknown,
            },
        )
        .collect();
    let missing = match inventory {
        None => Vec::new(),
        Some(inv) => {
            let held: std::collections::BTreeSet<&CredentialId> =
                credentials.iter().map(|s| &s.cred).collect();
            let listed = inv
                .hosts
                .iter()
                .flat_map(|h| h.accounts.iter().map(move |a| a.credential(&h.name)))
                .chain(inv.directories.iter().map(|d| d.bind_credential.clone()));
            listed.filter(|c| !held.contains(c)).collect()
        }
    };
    let bootstrap = match inventory {
        Some(inv) => bootstrap_keys(inv, &credentials, &ctx.records.bootstrap_sightings()?),
        None => Vec::new(),
    };
    Ok(Status {
        now,
        credentials,
        freshness,
        checkouts: ctx.checkouts.list(false)?,
        missing,
        bootstrap,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::engine::testkit::{FakeFleet, MemStore};
    use crate::ops::testkit::{context, runtime};

    #[test]
    fn ages_come_from_the_context_clock() {
        let rt = runtime();
        let fleet: &'static FakeFleet = Box::leak(Box::default());
        let store = Arc::new(MemStore::default());
        let app = CredentialId::parse("a/svc_app").unwrap();
        store.inner.lock().unwrap().current.insert(app, "s".into());
        store
            .inner
            .lock()
            .unwrap()
            .parked
            .insert(CredentialId::parse("a/svc_app").unwrap(), "2 failed".into());
        let ctx = context(fleet, &store, &rt);
        let st = status(&ctx, None).unwrap();
        // The test clock reads 2026-12-01; the secret was set 2026-11-01.
        assert_eq!(st.age(&st.credentials[0]).unwrap().num_days(), 30);
        assert_eq!(st.state(&st.credentials[0]), State::Parked("2 failed"));
        assert_eq!(st.freshness, [Freshness::Unknown]);
        assert_eq!(st.check_code(), 4);
    }

    #[test]
    fn a_secret_older_than_max_age_is_stale_and_a_listed_credential_without_one_is_missing() {
        let rt = runtime();
        let fleet: &'static FakeFleet = Box::leak(Box::default());
        let store = Arc::new(MemStore::default());
        store
            .inner
            .lock()
            .unwrap()
            .current
            .insert(CredentialId::parse("a/svc_app").unwrap(), "s".into());
        let ctx = context(fleet, &store, &rt);
        let mut inv = crate::ops::testkit::inventory(&["a"]);
        inv.policies.get_mut("default").unwrap().max_age = Some(Duration::from_secs(29 * 86_400));
        let st = status(&ctx, Some(&inv)).unwrap();
        assert!(st.freshness[0].is_stale(), "30 days old, max_age 29d");
        assert_eq!(
            st.missing,
            [CredentialId::parse("a/svc_backup").unwrap()],
            "listed, never rotated"
        );
        assert_eq!(st.check_code(), 3);
        inv.policies.get_mut("default").unwrap().max_age = Some(Duration::from_secs(31 * 86_400));
        let st = status(&ctx, Some(&inv)).unwrap();
        assert!(matches!(st.freshness[0], Freshness::Fresh { .. }));
    }

    #[test]
    fn a_stuck_rotation_needs_an_operator() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let stuck = CredentialStatus {
            cred: CredentialId::parse("a/svc_app").unwrap(),
            has_current: true,
            current_since: Some(now),
            has_pending: true,
            last_rotation: Some(crate::store::LastRotation {
                id: crate::engine::RotationId(7),
                phase: crate::engine::Phase::Stuck,
                at: now,
                note: None,
            }),
            open_rotation: false,
            parked: None,
            lease_holder: None,
        };
        let st = Status {
            now,
            credentials: vec![stuck],
            freshness: vec![Freshness::NoMaxAge],
            checkouts: Vec::new(),
            missing: Vec::new(),
            bootstrap: Vec::new(),
        };
        assert_eq!(st.state(&st.credentials[0]), State::Stuck);
        assert_eq!(st.check_code(), 4);
    }

    #[test]
    fn freshness_is_measured_from_the_current_secret() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let day = Duration::from_secs(86_400);
        let ago = |days: i64| Some(now - chrono::Duration::days(days));
        assert_eq!(freshness(ago(5), None, now), Freshness::NoMaxAge);
        assert_eq!(
            freshness(ago(5), Some(day * 5), now),
            Freshness::Fresh { max_age: day * 5 }
        );
        assert_eq!(
            freshness(ago(6), Some(day * 5), now),
            Freshness::Stale { max_age: day * 5 }
        );
        assert_eq!(
            freshness(None, Some(day), now),
            Freshness::Stale { max_age: day }
        );
    }
}
