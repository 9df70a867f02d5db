//! Break-glass checkout as operations: request (granted at once or waiting for a second
//! person), approve or refuse, claim, check in, and the settling of deadlines that passed.
//! Ending a checkout is one more call of [`super::rotate::rotate`] for its one credential, with the
//! inventory the checkout was made with: the same leases, recovery and report as
//! `rotor rotate`, never a second engine.
//!
//! Durable deadlines: a checkout's end time lives in the vault, and [`settle_due`] (which
//! every front-end calls before its own work: each CLI command, later the daemon's loop)
//! expires what is past it and rotates what is ending, so an expiry that passed while no
//! rotor ran is handled by the next rotor that starts. A rotation that fails leaves the
//! checkout `ending` with the failure, and the next call tries again.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::rotate::{RotateRequest, rotate};
use super::{Actor, Context, OpsError};
use crate::checkout;
use crate::credential::CredentialId;
use crate::engine::Outcome;
use crate::inventory::{Inventory, Scope};
use crate::report::RunReport;
use crate::secret::Secret;
use crate::store::{CheckoutRecord, NewCheckout, Shown, StoreError, Vault};

/// The vault's checkout records, as the operations use them.
pub trait Checkouts: Send + Sync {
    fn request(
        &self,
        by: &Actor,
        new: &NewCheckout<'_>,
    ) -> Result<(CheckoutRecord, Option<Secret>), StoreError>;
    fn approve(&self, by: &Actor, id: i64) -> Result<CheckoutRecord, StoreError>;
    /// A second person turns a pending request down (`why` is recorded).
    fn refuse(&self, by: &Actor, id: i64, why: &str) -> Result<CheckoutRecord, StoreError>;
    fn claim(&self, by: &Actor, id: i64) -> Result<(CheckoutRecord, Secret), StoreError>;
    fn checkin(&self, by: &Actor, id: i64) -> Result<CheckoutRecord, StoreError>;
    /// Expires and lapses what is past its deadline; returns every checkout now ending.
    fn due(&self, by: &Actor) -> Result<Vec<CheckoutRecord>, StoreError>;
    fn force_end(
        &self,
        by: &Actor,
        creds: &[CredentialId],
    ) -> Result<Vec<CheckoutRecord>, StoreError>;
    /// One checkout as recorded now.
    fn get(&self, id: i64) -> Result<CheckoutRecord, StoreError>;
    fn rotation_failed(&self, by: &Actor, id: i64, why: &str) -> Result<(), StoreError>;
    fn list(&self, all: bool) -> Result<Vec<CheckoutRecord>, StoreError>;
    fn show(&self, by: &Actor, cred: &CredentialId, reason: &str) -> Result<Shown, StoreError>;
}

impl Checkouts for Vault {
    fn request(
        &self,
        by: &Actor,
        new: &NewCheckout<'_>,
    ) -> Result<(CheckoutRecord, Option<Secret>), StoreError> {
        self.checkout_request(by, new)
    }
    fn approve(&self, by: &Actor, id: i64) -> Result<CheckoutRecord, StoreError> {
        self.checkout_approve(by, id)
    }
    fn refuse(&self, by: &Actor, id: i64, why: &str) -> Result<CheckoutRecord, StoreError> {
        self.checkout_refuse(by, id, why)
    }
    fn claim(&self, by: &Actor, id: i64) -> Result<(CheckoutRecord, Secret), StoreError> {
        self.checkout_claim(by, id)
    }
    fn checkin(&self, by: &Actor, id: i64) -> Result<CheckoutRecord, StoreError> {
        self.checkout_checkin(by, id)
    }
    fn due(&self, by: &Actor) -> Result<Vec<CheckoutRecord>, StoreError> {
        self.checkouts_due(by)
    }
    fn force_end(
        &self,
        by: &Actor,
        creds: &[CredentialId],
    ) -> Result<Vec<CheckoutRecord>, StoreError> {
        self.checkouts_force_end(by, creds)
    }
    fn get(&self, id: i64) -> Result<CheckoutRecord, StoreError> {
        self.checkout(id)
    }
    fn rotation_failed(&self, by: &Actor, id: i64, why: &str) -> Result<(), StoreError> {
        self.checkout_rotation_failed(by, id, why)
    }
    fn list(&self, all: bool) -> Result<Vec<CheckoutRecord>, StoreError> {
        self.checkouts(all)
    }
    fn show(&self, by: &Actor, cred: &CredentialId, reason: &str) -> Result<Shown, StoreError> {
        self.show_checked(by, cred, reason)
    }
}

/// `rotor checkout CRED --ticket T --reason R [--ttl D] [--for NAME]`.
pub struct CheckoutRequest<'a> {
    pub inventory: &'a Inventory,
    /// The inventory's file, recorded: check-in and expiry rotate with it.
    pub inventory_path: &'a Path,
    pub cred: CredentialId,
    pub ticket: String,
    pub reason: String,
    pub ttl: Option<Duration>,
    pub for_name: Option<String>,
    pub actor: Actor,
}

/// What a request got.
pub enum Requested {
    /// No approval needed: the secret, shown once now.
    Granted(CheckoutRecord, Secret),
    /// Waiting for `rotor approve ID` by another person.
    Waiting(CheckoutRecord),
}

fn refused(message: impl Into<String>) -> OpsError {
    OpsError::Store(StoreError::Refused(message.into()))
}

/// Requests a checkout under the credential's policy (`checkout:` of its policy).
pub fn checkout(ctx: &Context, req: CheckoutRequest<'_>) -> Result<Requested, OpsError> {
    if req.ticket.trim().is_empty() || req.reason.trim().is_empty() {
        return Err(refused(
            "a checkout needs a --ticket and a --reason: both are recorded and shown to the approver",
        ));
    }
    let Some(policy) = req.inventory.policy_for(&req.cred) else {
        return Err(refused(format!(
            "{} is not a credential of the inventory {}: check the name (`rotor status` lists the vault's credentials) or the inventory",
            req.cred,
            req.inventory_path.display()
        )));
    };
    let ttl = checkout::ttl(req.ttl, &policy.checkout).map_err(|e| refused(e.0))?;
    // Checked again here (a front-end may not have), and recorded resolved.
    let inventory = crate::store::check_trusted_file("inventory", req.inventory_path)?;
    let for_name = req
        .for_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let new = NewCheckout {
        cred: &req.cred,
        ticket: &req.ticket,
        reason: &req.reason,
        for_name,
        ttl,
        inventory: &inventory.to_string_lossy(),
        needs_approval: checkout::needs_approval(&policy.checkout),
    };
    Ok(match ctx.checkouts.request(&req.actor, &new)? {
        (record, Some(secret)) => Requested::Granted(record, secret),
        (record, None) => Requested::Waiting(record),
    })
}

pub fn approve(ctx: &Context, by: &Actor, id: i64) -> Result<CheckoutRecord, OpsError> {
    Ok(ctx.checkouts.approve(by, id)?)
}

/// `rotor refuse ID --reason R`: a pending request is closed, refused; nothing is shown and
/// nothing rotates.
pub fn refuse(ctx: &Context, by: &Actor, id: i64, why: &str) -> Result<CheckoutRecord, OpsError> {
    Ok(ctx.checkouts.refuse(by, id, why)?)
}

pub fn claim(ctx: &Context, by: &Actor, id: i64) -> Result<(CheckoutRecord, Secret), OpsError> {
    Ok(ctx.checkouts.claim(by, id)?)
}

/// How the end of a checkout went.
pub struct Ended {
    pub checkout: CheckoutRecord,
    /// The rotation run that ended it (none for a request that never showed the secret).
    pub report: Option<RunReport>,
    /// Why the rotation did not end it (it stays `ending` and is retried).
    pub failure: Option<String>,
}

/// A check-in through the daemon (API or page): refused unless the caller may end this
/// checkout (`checkout::may_check_in`: its requester or engineer, or an approver when
/// `may_end_others`), then as [`checkin`].
pub fn checkin_as_caller(
    ctx: &Context,
    by: &Actor,
    may_end_others: bool,
    id: i64,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Ended, OpsError> {
    let c = ctx.checkouts.get(id)?;
    checkout::may_check_in(
        by.person(),
        &c.requester,
        c.for_name.as_deref(),
        may_end_others,
    )
    .map_err(|e| refused(e.0))?;
    checkin(ctx, by, id, None, shutdown)
}

/// `rotor checkin ID [-i FILE]`: the credential is rotated now (with `inventory`, or the one
/// the checkout was made with), so the checked-out secret stops working. A request never
/// claimed is simply closed; one already closed is returned as it is.
pub fn checkin(
    ctx: &Context,
    by: &Actor,
    id: i64,
    inventory: Option<&Path>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Ended, OpsError> {
    let c = ctx.checkouts.checkin(by, id)?;
    if c.state != checkout::State::Ending {
        return Ok(Ended {
            checkout: c,
            report: None,
            failure: None,
        });
    }
    Ok(end_by_rotation(ctx, by, c, inventory, shutdown))
}

/// Settles every checkout whose deadline passed and rotates every one that is ending
/// (expired, checked in, or ended by a run, whose rotation failed before). Front-ends call
/// it before their own work. Once `shutdown` completes no further checkout starts.
pub fn settle_due(
    ctx: &Context,
    by: &Actor,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Vec<Ended>, OpsError> {
    settle_due_where(ctx, by, shutdown, &|_| true)
}

/// [`settle_due`], rotating only the ending checkouts `may_try` lets through now (the
/// daemon backs off from one whose rotation keeps failing); every expiry is still recorded.
pub fn settle_due_where(
    ctx: &Context,
    by: &Actor,
    shutdown: impl Future<Output = ()> + Send + 'static,
    may_try: &dyn Fn(&CheckoutRecord) -> bool,
) -> Result<Vec<Ended>, OpsError> {
    let mut ending = ctx.checkouts.due(by)?;
    ending.retain(|c| may_try(c));
    if ending.is_empty() {
        return Ok(Vec::new());
    }
    // One shutdown for several rotations: each gets a receiver of the same signal.
    let (tx, rx) = tokio::sync::watch::channel(false);
    let watcher = ctx.runtime.spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let mut ended = Vec::new();
    for c in ending {
        if *rx.borrow() {
            break;
        }
        // Another rotor may have settled it since the list was read.
        let now = match ctx.checkouts.get(c.id) {
            Ok(now) if now.state == checkout::State::Ending => now,
            Ok(_) => continue,
            Err(e) => {
                tracing::error!(checkout = c.id, error = %e, "cannot read the checkout; next time");
                continue;
            }
        };
        let mut rx = rx.clone();
        let stop = async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        };
        ended.push(end_by_rotation(ctx, by, now, None, stop));
    }
    watcher.abort();
    Ok(ended)
}

/// Why a rotation did not end the checkout, in words (with the fault's own message).
fn why_not(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Committed => "it committed, but the old secret was not retired yet".into(),
        Outcome::NotChanged { cause }
        | Outcome::RolledBack { cause }
        | Outcome::Unsettled { cause, .. }
        | Outcome::Stuck { cause, .. }
        | Outcome::KeptNew { cause, .. } => format!("{}: {}", outcome.label(), cause.message),
        Outcome::Skipped { detail, .. } => format!("skipped: {detail}"),
    }
}

/// Rotates an ending checkout's credential with the inventory it was made with (or the one
/// given). The vault closes the checkout in the transaction that makes the old secret stop
/// working; afterwards the record says whether that happened.
fn end_by_rotation(
    ctx: &Context,
    by: &Actor,
    c: CheckoutRecord,
    inventory: Option<&Path>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Ended {
    let failed = |c: CheckoutRecord, report: Option<RunReport>, why: String, record: bool| {
        if record && let Err(e) = ctx.checkouts.rotation_failed(by, c.id, &why) {
            tracing::error!(checkout = c.id, error = %e, "cannot record a failed checkout rotation");
        }
        Ended {
            checkout: c,
            report,
            failure: Some(why),
        }
    };
    let given = inventory.map_or_else(|| PathBuf::from(&c.inventory), Path::to_owned);
    let path = match crate::store::check_trusted_file("inventory", &given) {
        Ok(path) => path,
        Err(e) => {
            let why = format!(
                "{e}. Or end it with another inventory: `rotor checkin {} -i FILE`",
                c.id
            );
            return failed(c, None, why, true);
        }
    };
    let inventory = match crate::inventory::load(&path) {
        Ok(inventory) => inventory,
        Err(e) => {
            let why = format!(
                "cannot read the inventory {}: {e}. Restore it, or end the checkout with another inventory: `rotor checkin {} -i FILE`",
                path.display(),
                c.id
            );
            return failed(c, None, why, true);
        }
    };
    let selection = match inventory.select(&[Scope::Cred(c.cred.clone())]) {
        Ok(selection) => selection,
        Err(e) => return failed(c, None, format!("{e}"), true),
    };
    let end = c
        .end
        .map(|e| e.as_str().replace('_', " "))
        .unwrap_or_default();
    let req = RotateRequest {
        reason: format!("checkout {} (ticket {}) {end}", c.id, c.ticket),
        actor: by.clone(),
        origin: super::rotate::RunOrigin::Checkout,
        ..RotateRequest::new(&inventory, selection, format!("cred:{}", c.cred))
    };
    let report = match rotate(ctx, req, shutdown) {
        Ok(done) => done.report,
        Err(e) => return failed(c, None, e.to_string(), true),
    };
    let now = match ctx.checkouts.get(c.id) {
        Ok(now) => now,
        Err(e) => return failed(c, Some(report), e.to_string(), false),
    };
    if now.state == checkout::State::Closed {
        return Ended {
            checkout: now,
            report: Some(report),
            failure: None,
        };
    }
    let result = report.results.iter().find(|r| r.cred == c.cred);
    // Another rotor holds the credential: most likely settling this very checkout. Not a
    // failure to record; the next command sees how it ended.
    let busy = result.is_some_and(|r| {
        matches!(
            r.outcome,
            Outcome::Skipped {
                reason: crate::engine::blast::SkipReason::Busy,
                ..
            }
        )
    });
    let why = result.map_or_else(
        || format!("the run did not rotate {}", c.cred),
        |r| format!("the rotation of {} ended {}", c.cred, why_not(&r.outcome)),
    );
    failed(now, Some(report), why, !busy)
}

pub fn list(ctx: &Context, all: bool) -> Result<Vec<CheckoutRecord>, OpsError> {
    Ok(ctx.checkouts.list(all)?)
}

/// A checkout's record as `rotor checkouts --output json` prints it and the API answers it
/// (never a secret: the record holds none).
pub fn json(c: &CheckoutRecord) -> serde_json::Value {
    let t = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.to_rfc3339());
    serde_json::json!({
        "id": c.id,
        "cred": c.cred.to_string(),
        "state": c.state.as_str(),
        "state_words": c.state_words(),
        "requester": c.requester,
        "requester_shown": c.requester_shown,
        "for": c.for_name,
        "ticket": c.ticket,
        "reason": c.reason,
        "ttl_secs": c.ttl.as_secs(),
        "requested_at": c.requested_at.to_rfc3339(),
        "approved_by": c.approved_by,
        "approved_at": t(c.approved_at),
        "granted_at": t(c.granted_at),
        "ends_at": t(c.ends_at),
        "ended_at": t(c.ended_at),
        "end": c.end.map(|e| e.as_str()),
        "ended_by": c.ended_by,
        "rotation": c.rotation,
        "failure": c.failure,
    })
}

/// `rotor show`, aware of checkouts.
pub fn show(
    ctx: &Context,
    by: &Actor,
    cred: &CredentialId,
    reason: &str,
) -> Result<Shown, OpsError> {
    Ok(ctx.checkouts.show(by, cred, reason)?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::checkout::{End, State};
    use crate::clock::{Clock, SeededEntropy, TestClock};
    use crate::engine::testkit::{FakeFleet, setup};
    use crate::ops::testkit::{FakeTargets, runtime};
    use crate::store::KeySource;

    const INVENTORY: &str = "version: 1
policies:
  default: { checkout: { approval: none, max_ttl: 4h, default_ttl: 1h } }
hosts:
  - name: a
    address: 127.0.0.1
    host_key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"
    connect: { user: root, key: /k }
    accounts:
      - { name: svc_app, playbook: linux-password }
      - { name: svc_backup, playbook: linux-password }
";

    struct World {
        _tmp: tempfile::TempDir,
        path: PathBuf,
        inventory: Inventory,
        clock: Arc<TestClock>,
        ctx: Context,
        fleet: &'static FakeFleet,
        _rt: tokio::runtime::Runtime,
    }

    /// A real vault (on a test clock) over the in-memory fleet of host `a`, and the
    /// inventory file checkouts record.
    fn world() -> World {
        let (fleet, _, _) = setup(&["a"]);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("inventory.yaml");
        std::fs::write(&path, INVENTORY).unwrap();
        let inventory = crate::inventory::load(&path).unwrap();
        let clock = Arc::new(TestClock::at(
            chrono::DateTime::parse_from_rfc3339("2026-12-01T09:00:00Z")
                .unwrap()
                .to_utc(),
        ));
        let dir = tmp.path().join("vault");
        let vault = Arc::new(
            Vault::init(&dir, KeySource::default_file(&dir))
                .unwrap()
                .with_clock(clock.clone()),
        );
        vault
            .enroll(&cred(), &Secret::new("shared".into()))
            .unwrap();
        let rt = runtime();
        let ctx = Context {
            store: vault.clone(),
            records: vault.clone(),
            checkouts: vault.clone(),
            schedules: vault,
            targets: Arc::new(FakeTargets(fleet)),
            clock: clock.clone(),
            entropy: Arc::new(SeededEntropy::new(7)),
            runtime: rt.handle().clone(),
        };
        World {
            _tmp: tmp,
            path,
            inventory,
            clock,
            ctx,
            fleet,
            _rt: rt,
        }
    }

    fn cred() -> CredentialId {
        CredentialId::parse("a/svc_app").unwrap()
    }

    fn request(w: &World, ttl: Option<Duration>) -> CheckoutRequest<'_> {
        CheckoutRequest {
            inventory: &w.inventory,
            inventory_path: &w.path,
            cred: cred(),
            ticket: "T-1".into(),
            reason: "vendor".into(),
            ttl,
            for_name: None,
            actor: Actor::named("alice"),
        }
    }

    fn granted(w: &World, ttl: Option<Duration>) -> (CheckoutRecord, Secret) {
        match checkout(&w.ctx, request(w, ttl)).unwrap() {
            Requested::Granted(c, s) => (c, s),
            Requested::Waiting(_) => panic!("this policy needs no approval"),
        }
    }

    #[test]
    fn checkin_rotates_the_credential_so_the_checked_out_secret_stops_working() {
        let w = world();
        let err = checkout(&w.ctx, request(&w, Some(Duration::from_secs(5 * 3600))))
            .err()
            .unwrap();
        assert!(err.to_string().contains("max_ttl 4h"), "{err}");
        let (c, secret) = granted(&w, None);
        assert_eq!(secret.expose(), "shared");
        assert_eq!(c.ends_at, Some(w.clock.now() + chrono::Duration::hours(1)));
        assert_eq!(c.inventory, w.path.to_string_lossy());

        let ended = checkin(
            &w.ctx,
            &Actor::named("alice"),
            c.id,
            None,
            std::future::pending(),
        )
        .unwrap();
        assert_eq!(ended.failure, None);
        assert_eq!(ended.checkout.state, State::Closed);
        assert_eq!(ended.checkout.end, Some(End::CheckIn));
        assert!(ended.checkout.rotation.is_some());
        let now = w.fleet.password("a", "svc_app").unwrap();
        assert_ne!(
            now, "shared",
            "the checked-out secret must no longer be the password"
        );
        let shown = list(&w.ctx, true).unwrap();
        assert_eq!(shown.len(), 1);
        // Only that credential was rotated.
        assert_eq!(
            w.fleet.password("a", "svc_backup").as_deref(),
            Some("shared")
        );
    }

    #[test]
    fn a_refused_request_closes_without_showing_or_rotating_anything() {
        let w = world();
        let new = NewCheckout {
            cred: &cred(),
            ticket: "T-2",
            reason: "vendor",
            for_name: None,
            ttl: Duration::from_secs(600),
            inventory: &w.path.to_string_lossy(),
            needs_approval: true,
        };
        let (pending, _) = w
            .ctx
            .checkouts
            .request(&Actor::named("alice"), &new)
            .unwrap();
        let err = refuse(&w.ctx, &Actor::named("alice"), pending.id, "no")
            .err()
            .unwrap();
        assert!(err.to_string().contains("cannot refuse"), "{err}");
        let c = refuse(&w.ctx, &Actor::named("bob"), pending.id, "not this week").unwrap();
        assert_eq!((c.state, c.end), (State::Closed, Some(End::Refused)));
        assert!(claim(&w.ctx, &Actor::named("alice"), c.id).is_err());
        assert_eq!(w.fleet.password("a", "svc_app").as_deref(), Some("shared"));
        assert!(list(&w.ctx, false).unwrap().is_empty(), "nothing active");
    }

    #[test]
    fn the_inventory_must_be_a_file_nobody_else_could_write_and_is_recorded_resolved() {
        use std::os::unix::fs::PermissionsExt;
        let w = world();
        let link = w._tmp.path().join("link.yaml");
        std::os::unix::fs::symlink(&w.path, &link).unwrap();
        let req = CheckoutRequest {
            inventory_path: &link,
            ..request(&w, None)
        };
        let Requested::Granted(c, _) = checkout(&w.ctx, req).unwrap() else {
            panic!("this policy needs no approval");
        };
        let resolved = std::fs::canonicalize(&w.path).unwrap();
        assert_eq!(
            c.inventory,
            resolved.to_string_lossy(),
            "the link is not recorded"
        );
        checkin(
            &w.ctx,
            &Actor::named("alice"),
            c.id,
            None,
            std::future::pending(),
        )
        .unwrap();
        // Writable by others: its policy could be anyone's.
        std::fs::set_permissions(&w.path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = checkout(&w.ctx, request(&w, None))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("inventory"), "{err}");
    }

    #[test]
    fn an_expired_checkout_whose_rotation_fails_is_retried_until_it_succeeds() {
        let w = world();
        let by = Actor::named("bob");
        let (c, _) = granted(&w, Some(Duration::from_secs(600)));
        assert!(
            settle_due(&w.ctx, &by, std::future::pending())
                .unwrap()
                .is_empty(),
            "not due yet"
        );

        w.clock.advance(Duration::from_secs(601));
        w.fleet.with("a", |h| h.down = true);
        let ended = settle_due(&w.ctx, &by, std::future::pending()).unwrap();
        assert_eq!(ended.len(), 1);
        assert!(ended[0].failure.is_some(), "the host is down");
        let kept = &list(&w.ctx, false).unwrap()[0];
        assert_eq!(kept.state_words(), "expired, rotation failed");
        assert_eq!(w.fleet.password("a", "svc_app").as_deref(), Some("shared"));

        w.fleet.with("a", |h| h.down = false);
        let ended = settle_due(&w.ctx, &by, std::future::pending()).unwrap();
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].failure, None);
        assert_eq!(ended[0].checkout.id, c.id);
        assert_eq!(ended[0].checkout.end, Some(End::Expired));
        assert_ne!(w.fleet.password("a", "svc_app").as_deref(), Some("shared"));
        assert!(
            settle_due(&w.ctx, &by, std::future::pending())
                .unwrap()
                .is_empty(),
            "settled once"
        );
    }

    #[test]
    fn a_run_skips_an_open_checkout_unless_it_ends_it() {
        let w = world();
        let (c, _) = granted(&w, None);
        let selection = w.inventory.select(&[Scope::All]).unwrap();
        let run = |include| {
            let req = RotateRequest {
                include_checked_out: include,
                actor: Actor::named("carol"),
                ..RotateRequest::new(&w.inventory, selection.clone(), "all".into())
            };
            rotate(&w.ctx, req, std::future::pending()).unwrap().report
        };
        let report = run(false);
        let skipped = report.results.iter().find(|r| r.cred == cred()).unwrap();
        assert!(
            matches!(
                &skipped.outcome,
                Outcome::Skipped {
                    reason: crate::engine::blast::SkipReason::CheckedOut,
                    ..
                }
            ),
            "{:?}",
            skipped.outcome
        );
        assert_eq!(w.fleet.password("a", "svc_app").as_deref(), Some("shared"));
        let report = run(true);
        let rotated = report.results.iter().find(|r| r.cred == cred()).unwrap();
        assert_eq!(rotated.outcome, Outcome::Committed);
        let closed = &list(&w.ctx, true).unwrap()[0];
        assert_eq!(
            (closed.id, closed.state, closed.end),
            (c.id, State::Closed, Some(End::Forced))
        );
    }
}
