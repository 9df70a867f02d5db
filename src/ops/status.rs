//! `status`: every credential in the vault (or, with a selection, those it names), its age
//! (by the context's clock), when it was last proven to work, its state, its open checkout,
//! and, given the inventory, whether it is stale (no rotation that proved its current secret
//! within its policy's `max_age`), which listed credentials were never rotated, and which
//! vault credentials the inventory no longer lists. `check_code` is the monitoring verdict.
//! rotor's own directory bind credentials are listed apart: the scheduler never rotates them
//! (only `rotate --breach` or a named `cred:` scope does), so their age never alerts.

use chrono::{DateTime, Utc};

use super::{Context, OpsError};
use crate::credential::CredentialId;
use crate::inventory::{Inventory, Selection};
use crate::store::{CheckoutRecord, CredentialStatus, RunRecord};

/// `--check`'s exit codes (kept stable: monitoring branches on them).
pub const CHECK_OK: i32 = 0;
/// Something is stale or was never rotated: rotate it.
pub const CHECK_STALE: i32 = 3;
/// An operator is needed: parked, a rotation open or stuck.
pub const CHECK_OPERATOR: i32 = 4;

/// The vault's credentials, read at `now`.
pub struct Status {
    pub now: DateTime<Utc>,
    /// The credentials in view: every one the vault holds, or those the selection names.
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
    /// Listed credentials the vault holds a secret for that no rotation ever proved (enrolled
    /// by hand, never rotated), in view.
    pub never_rotated: Vec<CredentialId>,
    /// Vault credentials the inventory does not list (a host or account removed from it).
    /// Empty without an inventory, and with a selection (they are in no scope).
    pub unlisted: Vec<CredentialId>,
    /// rotor's own bind credentials of the directories in view (`bind.credential`). The
    /// scheduler never rotates them (only `rotor rotate --breach` or `--scope cred:DIR/UID`
    /// does), so they are listed apart and are never stale nor "never rotated" in
    /// `check_code` (parked, open and stuck still count). Empty without an inventory.
    pub bind: Vec<CredentialId>,
    /// The last run a `rotate` request made (what `rotate --retry-failed` retries).
    pub last_run: Option<RunRecord>,
    /// Whether an inventory was given (without one, ages are not judged).
    pub judged: bool,
}

/// How a credential was last proven to work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifiedBy {
    /// The rotation that made its current secret current verified it (then committed).
    Rotation,
    /// A heartbeat (`rotor verify`) logged in with its current secret.
    Heartbeat,
}

impl VerifiedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifiedBy::Rotation => "rotation",
            VerifiedBy::Heartbeat => "heartbeat",
        }
    }
}

/// When the credential's current secret was last proven to work: the commit of the rotation
/// that made it current (right after its proof), or a later heartbeat. A heartbeat from
/// before the secret became current proved an older secret and does not count; an enrolled
/// secret counts only once a heartbeat proved it.
pub fn last_verified(s: &CredentialStatus) -> Option<(DateTime<Utc>, VerifiedBy)> {
    let since = s.current_since?;
    let heartbeat = s.heartbeat_at.filter(|at| *at >= since);
    match (s.rotated_at, heartbeat) {
        (Some(r), Some(h)) if h > r => Some((h, VerifiedBy::Heartbeat)),
        (Some(r), _) => Some((r, VerifiedBy::Rotation)),
        (None, Some(h)) => Some((h, VerifiedBy::Heartbeat)),
        (None, None) => None,
    }
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

/// A secret a rotation made current at `since` is stale at `now` once it is older than
/// `max_age`; a credential without one (no secret, or one enrolled and never rotated) is
/// stale as soon as its policy has a `max_age`.
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

    /// `--check`, over the credentials in view: [`CHECK_OPERATOR`] (4) when one is parked or
    /// has a rotation open or stuck, else [`CHECK_STALE`] (3) when one is stale or a listed
    /// one was never rotated (no secret, or only an enrolled one), else [`CHECK_OK`] (0).
    /// A rotation a live rotor is running now is not open in this sense (its lease is held).
    pub fn check_code(&self) -> i32 {
        let c = self.counts();
        if c.parked + c.open + c.stuck > 0 {
            CHECK_OPERATOR
        } else if c.stale + c.never_rotated > 0 {
            CHECK_STALE
        } else {
            CHECK_OK
        }
    }

    /// What `check_code` and the summary line count.
    pub fn counts(&self) -> StatusCounts {
        let mut c = StatusCounts {
            total: self.credentials.len(),
            never_rotated: self.missing.len() + self.never_rotated.len(),
            unlisted: self.unlisted.len(),
            ..StatusCounts::default()
        };
        for (s, f) in self.credentials.iter().zip(&self.freshness) {
            if s.parked.is_some() {
                c.parked += 1;
            }
            if s.open_rotation && s.lease_holder.is_none() {
                c.open += 1;
            }
            if is_stuck(s) {
                c.stuck += 1;
            }
            if f.is_stale() && !self.bind.contains(&s.cred) {
                c.stale += 1;
            }
            if s.lease_holder.is_some() {
                c.in_use += 1;
            }
        }
        c
    }

    /// rotor's bind credentials in view, said apart: why their age is not judged.
    pub fn bind_line(&self) -> Option<String> {
        if self.bind.is_empty() {
            return None;
        }
        let names: Vec<String> = self.bind.iter().map(ToString::to_string).collect();
        Some(format!(
            "{} bind credential(s) of rotor, not judged by age ({}): rotated only by `rotor rotate --breach` or `--scope cred:DIR/UID`",
            self.bind.len(),
            crate::text::escape(&names.join(", "))
        ))
    }

    /// One line a person on call can read: how many credentials, what is wrong with how
    /// many, and what `--check` exits with.
    pub fn summary_line(&self) -> String {
        let c = self.counts();
        let mut wrong = Vec::new();
        for (n, what) in [
            (c.parked, "parked"),
            (c.open, "with a rotation left open"),
            (c.stuck, "stuck"),
            (c.stale, "stale"),
            (c.never_rotated, "never rotated"),
        ] {
            if n > 0 {
                wrong.push(format!("{n} {what}"));
            }
        }
        let mut line = format!("{} credential(s)", c.total);
        if wrong.is_empty() {
            line.push_str(": none parked, open, stuck, stale or never rotated");
        } else {
            line.push_str(": ");
            line.push_str(&wrong.join(", "));
        }
        if c.in_use > 0 {
            line.push_str(&format!("; {} being rotated now", c.in_use));
        }
        if c.unlisted > 0 {
            line.push_str(&format!("; {} not in the inventory", c.unlisted));
        }
        if let Some(bind) = self.bind_line() {
            line.push_str("; ");
            line.push_str(&bind);
        }
        line.push_str(match self.check_code() {
            CHECK_OK if !self.judged => ". OK so far (ages not judged: give -i FILE).",
            CHECK_OK => ". OK.",
            CHECK_STALE => ". Rotate them (status --check exits 3).",
            _ => ". Operator needed (status --check exits 4).",
        });
        line
    }
}

/// The counts behind [`Status::check_code`] and [`Status::summary_line`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatusCounts {
    pub total: usize,
    pub parked: usize,
    /// Open rotations no live rotor is running (recovery must settle them).
    pub open: usize,
    pub stuck: usize,
    pub stale: usize,
    /// Listed and never rotated: no secret in the vault, or only an enrolled one.
    pub never_rotated: usize,
    /// Leased by a live rotor now.
    pub in_use: usize,
    pub unlisted: usize,
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
                    let verified = last_verified(s);
                    m.insert(
                        "last_verified".into(),
                        verified
                            .map(|(at, _)| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                            .into(),
                    );
                    m.insert(
                        "last_verified_by".into(),
                        verified.map(|(_, by)| by.as_str()).into(),
                    );
                }
                v
            })
            .collect();
        let names = |c: &[CredentialId]| c.iter().map(ToString::to_string).collect::<Vec<_>>();
        let last_run = self.last_run.as_ref().map(|r| {
            serde_json::json!({
                "id": r.id,
                "started_at": r.started_at,
                "ended_at": r.ended_at,
                "reason": r.reason,
                "scope": r.scope,
                "not_committed": super::rotate::RunEnd::of(r)
                    .not_committed
                    .map(|c| names(&c)),
            })
        });
        serde_json::json!({
            "schema_version": crate::report::SCHEMA_VERSION,
            "credentials": credentials,
            "missing": names(&self.missing),
            "never_rotated": names(&self.never_rotated),
            "not_in_inventory": names(&self.unlisted),
            "bind_credentials": names(&self.bind),
            "bootstrap_key_accepted": self.bootstrap,
            "last_run": last_run,
            "counts": self.counts(),
            "check": self.check_code(),
            "summary": self.summary_line(),
        })
    }
}

fn is_stuck(s: &CredentialStatus) -> bool {
    s.last_rotation
        .as_ref()
        .is_some_and(|r| r.phase == crate::engine::Phase::Stuck)
}

/// The vault's status; with `inventory`, each credential's freshness against its policy,
/// the listed credentials never rotated and the vault's credentials it does not list.
pub fn status(ctx: &Context, inventory: Option<&Inventory>) -> Result<Status, OpsError> {
    view(ctx, inventory, None)
}

/// As [`status`], for the credentials `selection` names only (`rotor status --scope`,
/// resolved like `rotate`'s scopes by [`crate::ops::rotate::select`]).
pub fn status_of(
    ctx: &Context,
    inventory: &Inventory,
    selection: &Selection,
) -> Result<Status, OpsError> {
    view(ctx, Some(inventory), Some(selection))
}

/// Whether the inventory names `cred`: a host's listing or a directory's account (any UID
/// of a listed directory: its accounts are known only from its searches), or a password
/// rotor connects with.
fn listed(inv: &Inventory, cred: &CredentialId) -> bool {
    inv.policy_for(cred).is_some()
        || inv.hosts.iter().any(
            |h| matches!(&h.connect.auth, crate::inventory::ConnectAuth::Vault(c) if c == cred),
        )
}

/// Whether `cred` is rotor's bind credential of a directory of `inv`.
fn is_bind(inv: &Inventory, cred: &CredentialId) -> bool {
    inv.directories.iter().any(|d| &d.bind_credential == cred)
}

fn view(
    ctx: &Context,
    inventory: Option<&Inventory>,
    selection: Option<&Selection>,
) -> Result<Status, OpsError> {
    let now = ctx.clock.now();
    let all = ctx.records.status()?;
    let in_view = |c: &CredentialId| selection.is_none_or(|sel| sel.names(c));
    let unlisted = match (inventory, selection) {
        (Some(inv), None) => all
            .iter()
            .filter(|s| !listed(inv, &s.cred))
            .map(|s| s.cred.clone())
            .collect(),
        _ => Vec::new(),
    };
    let credentials: Vec<CredentialStatus> =
        all.iter().filter(|s| in_view(&s.cred)).cloned().collect();
    let freshness = credentials
        .iter()
        .map(
            |s| match inventory.and_then(|inv| inv.policy_for(&s.cred)) {
                Some(policy) => freshness(s.rotated_at, policy.max_age, now),
                None => Freshness::Unknown,
            },
        )
        .collect();
    let (missing, never_rotated) = match inventory {
        None => (Vec::new(), Vec::new()),
        Some(inv) => {
            let held: std::collections::BTreeMap<&CredentialId, &CredentialStatus> =
                credentials.iter().map(|s| (&s.cred, s)).collect();
            let listed: Vec<CredentialId> = inv
                .hosts
                .iter()
                .flat_map(|h| h.accounts.iter().map(move |a| a.credential(&h.name)))
                .chain(inv.directories.iter().map(|d| d.bind_credential.clone()))
                .filter(|c| in_view(c))
                .collect();
            // A bind secret missing altogether still counts: rotor cannot bind without it.
            let missing = listed
                .iter()
                .filter(|c| held.get(c).is_none_or(|s| !s.has_current))
                .cloned()
                .collect();
            let never = listed
                .iter()
                .filter(|c| !is_bind(inv, c))
                .filter(|c| {
                    held.get(c)
                        .is_some_and(|s| s.has_current && s.rotated_at.is_none())
                })
                .cloned()
                .collect();
            (missing, never)
        }
    };
    let mut bind: Vec<CredentialId> = inventory
        .map(|inv| {
            inv.directories
                .iter()
                .map(|d| d.bind_credential.clone())
                .filter(|c| in_view(c))
                .collect()
        })
        .unwrap_or_default();
    bind.sort();
    bind.dedup();
    let bootstrap = match inventory {
        // Judged from every credential: a host in view logs in with one perhaps not in view.
        Some(inv) => bootstrap_keys(inv, &all, &ctx.records.bootstrap_sightings()?)
            .into_iter()
            .filter(|b| {
                selection.is_none_or(|sel| sel.hosts.iter().any(|h| h.name.as_str() == b.host))
            })
            .collect(),
        None => Vec::new(),
    };
    let last_run =
        super::rotate::last_rotate_run(&ctx.records.runs(super::rotate::RECENT_RUNS)?).cloned();
    Ok(Status {
        now,
        credentials,
        freshness,
        checkouts: ctx.checkouts.list(false)?,
        missing,
        bootstrap,
        never_rotated,
        unlisted,
        bind,
        last_run,
        judged: inventory.is_some(),
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
    fn rotor_bind_credentials_are_listed_apart_and_never_stale() {
        let rt = runtime();
        let fleet: &'static FakeFleet = Box::leak(Box::default());
        let store = Arc::new(MemStore::default());
        let bind = CredentialId::parse("ldap1/rotor").unwrap();
        store
            .inner
            .lock()
            .unwrap()
            .current
            .insert(bind.clone(), "s".into());
        let ctx = context(fleet, &store, &rt);
        let yaml = "version: 1\npolicies:\n  default: { length: 24, classes: [lower, upper, digit, symbol], max_age: 1d }\ndirectories:\n  - name: ldap1\n    url: ldaps://127.0.0.1\n    bind: { dn: \"cn=rotor,dc=x\", credential: ldap1/rotor }\n    accounts:\n      - search: { base: \"ou=s,dc=x\", filter: \"(uid=*)\" }\n";
        let inv = crate::inventory::parse(yaml, std::path::Path::new("inv.yaml")).unwrap();
        let st = status(&ctx, Some(&inv)).unwrap();
        // Enrolled, never rotated, older than max_age: the scheduler leaves it alone, so
        // monitoring must not alert on it.
        assert_eq!(st.bind, std::slice::from_ref(&bind));
        assert!(st.never_rotated.is_empty(), "{:?}", st.never_rotated);
        assert_eq!(st.check_code(), CHECK_OK);
        assert_eq!(
            st.summary_line(),
            "1 credential(s): none parked, open, stuck, stale or never rotated; 1 bind credential(s) of rotor, not judged by age (ldap1/rotor): rotated only by `rotor rotate --breach` or `--scope cred:DIR/UID`. OK."
        );
        assert_eq!(
            st.to_json()["bind_credentials"],
            serde_json::json!(["ldap1/rotor"])
        );
        // Parked still needs an operator.
        store
            .inner
            .lock()
            .unwrap()
            .parked
            .insert(bind.clone(), "3 failed".into());
        assert_eq!(
            status(&ctx, Some(&inv)).unwrap().check_code(),
            CHECK_OPERATOR
        );
        // Missing altogether still counts: rotor cannot bind.
        let empty = Arc::new(MemStore::default());
        let ctx = context(fleet, &empty, &rt);
        let st = status(&ctx, Some(&inv)).unwrap();
        assert_eq!(st.missing, [bind]);
        assert_eq!(st.check_code(), CHECK_STALE);
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    /// A credential current since 2026-11-01, made current by a rotation, in no trouble.
    fn row(name: &str) -> CredentialStatus {
        let since = at("2026-11-01T00:00:00Z");
        CredentialStatus {
            cred: CredentialId::parse(name).unwrap(),
            has_current: true,
            current_since: Some(since),
            has_pending: false,
            last_rotation: Some(crate::store::LastRotation {
                id: crate::engine::RotationId(1),
                phase: crate::engine::Phase::Committed,
                at: since,
                note: None,
            }),
            open_rotation: false,
            parked: None,
            lease_holder: None,
            rotated_at: Some(since),
            heartbeat_at: None,
        }
    }

    fn of(rows: Vec<(CredentialStatus, Freshness)>) -> Status {
        let (credentials, freshness) = rows.into_iter().unzip();
        Status {
            now: at("2026-12-01T00:00:00Z"),
            credentials,
            freshness,
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

    /// `check_code` and the summary line for one credential changed by `edit`.
    fn check(edit: impl FnOnce(&mut CredentialStatus, &mut Freshness), code: i32, line: &str) {
        let mut s = row("a/svc_app");
        let mut f = Freshness::NoMaxAge;
        edit(&mut s, &mut f);
        let st = of(vec![(s, f)]);
        assert_eq!((st.check_code(), st.summary_line().as_str()), (code, line));
    }

    #[test]
    fn check_codes_say_what_monitoring_must_do() {
        let day = Duration::from_secs(86_400);
        check(
            |_, _| {},
            0,
            "1 credential(s): none parked, open, stuck, stale or never rotated. OK.",
        );
        check(
            |s, _| s.parked = Some("3 failed logins".into()),
            4,
            "1 credential(s): 1 parked. Operator needed (status --check exits 4).",
        );
        check(
            |s, _| s.open_rotation = true,
            4,
            "1 credential(s): 1 with a rotation left open. Operator needed (status --check exits 4).",
        );
        // A rotation a live rotor runs right now is not left open.
        check(
            |s, _| {
                s.open_rotation = true;
                s.lease_holder = Some("alice".into());
            },
            0,
            "1 credential(s): none parked, open, stuck, stale or never rotated; 1 being rotated now. OK.",
        );
        check(
            |s, _| {
                s.last_rotation.as_mut().unwrap().phase = crate::engine::Phase::Stuck;
            },
            4,
            "1 credential(s): 1 stuck. Operator needed (status --check exits 4).",
        );
        check(
            |_, f| *f = Freshness::Stale { max_age: day },
            3,
            "1 credential(s): 1 stale. Rotate them (status --check exits 3).",
        );
        // Operator needed wins over stale.
        check(
            |s, f| {
                s.parked = Some("x".into());
                *f = Freshness::Stale { max_age: day };
            },
            4,
            "1 credential(s): 1 parked, 1 stale. Operator needed (status --check exits 4).",
        );
        let mut st = of(vec![(row("a/svc_app"), Freshness::NoMaxAge)]);
        st.never_rotated = vec![CredentialId::parse("a/svc_backup").unwrap()];
        st.unlisted = vec![CredentialId::parse("gone/svc_app").unwrap()];
        assert_eq!(st.check_code(), 3);
        assert_eq!(
            st.summary_line(),
            "1 credential(s): 1 never rotated; 1 not in the inventory. Rotate them (status --check exits 3)."
        );
        st.never_rotated.clear();
        st.judged = false;
        assert_eq!(
            st.summary_line(),
            "1 credential(s): none parked, open, stuck, stale or never rotated; 1 not in the inventory. OK so far (ages not judged: give -i FILE)."
        );
    }

    #[test]
    fn last_verified_is_the_proving_rotation_or_a_later_heartbeat_of_the_same_secret() {
        let mut s = row("a/svc_app");
        assert_eq!(
            last_verified(&s),
            Some((at("2026-11-01T00:00:00Z"), VerifiedBy::Rotation))
        );
        s.heartbeat_at = Some(at("2026-11-20T00:00:00Z"));
        assert_eq!(
            last_verified(&s),
            Some((at("2026-11-20T00:00:00Z"), VerifiedBy::Heartbeat))
        );
        // A heartbeat before the current secret became current proved an older one.
        s.current_since = Some(at("2026-11-25T00:00:00Z"));
        s.rotated_at = s.current_since;
        assert_eq!(
            last_verified(&s),
            Some((at("2026-11-25T00:00:00Z"), VerifiedBy::Rotation))
        );
        // Enrolled by hand: unproven until a heartbeat logs in with it.
        s.rotated_at = None;
        assert_eq!(last_verified(&s), None);
        s.heartbeat_at = Some(at("2026-11-26T00:00:00Z"));
        assert_eq!(
            last_verified(&s),
            Some((at("2026-11-26T00:00:00Z"), VerifiedBy::Heartbeat))
        );
        s.has_current = false;
        s.current_since = None;
        assert_eq!(last_verified(&s), None, "no current secret");
    }

    #[test]
    fn a_scope_narrows_the_view_and_unlisted_credentials_are_found_without_one() {
        let rt = runtime();
        let fleet: &'static FakeFleet = Box::leak(Box::default());
        let store = Arc::new(MemStore::default());
        for name in ["a/svc_app", "b/svc_app", "gone/svc_app"] {
            store
                .inner
                .lock()
                .unwrap()
                .current
                .insert(CredentialId::parse(name).unwrap(), "s".into());
        }
        let ctx = context(fleet, &store, &rt);
        let inv = crate::ops::testkit::inventory(&["a", "b"]);
        let names = |c: &[CredentialId]| c.iter().map(ToString::to_string).collect::<Vec<_>>();
        let st = status(&ctx, Some(&inv)).unwrap();
        assert_eq!(names(&st.unlisted), ["gone/svc_app"]);
        assert_eq!(names(&st.missing), ["a/svc_backup", "b/svc_backup"]);
        assert_eq!(st.credentials.len(), 3);
        let (sel, _) = crate::ops::rotate::select(&inv, &["host:a".to_owned()]).unwrap();
        let st = status_of(&ctx, &inv, &sel).unwrap();
        let shown: Vec<String> = st.credentials.iter().map(|s| s.cred.to_string()).collect();
        assert_eq!(shown, ["a/svc_app"]);
        assert_eq!(names(&st.missing), ["a/svc_backup"]);
        assert!(st.unlisted.is_empty(), "in no scope");
        assert_eq!(st.check_code(), 3, "a/svc_backup was never rotated");
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
