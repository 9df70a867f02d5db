//! Break-glass checkout as operations: request (granted at once or waiting for a second
//! person), approve, claim, check in, and the settling of deadlines that passed. Ending a
//! checkout is one more call of [`super::rotate::rotate`] for its one credential, with the
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
    fn claim(&self, by: &Actor, id: i64) -> Result<(CheckoutRecord, Secret), StoreError>;
    fn checkin(&self, by: &Actor, id: i64) -> Result<CheckoutRecord, StoreError>;
    /// Expires and lapses what is past its deadline; returns every checkout now ending.
    fn due(&self, by: &Actor) -> Result<Vec<CheckoutRecord>, StoreError>;
    fn force_end(
        &self,
        by: &Actor,
        creds: &[CredentialId],
    ) -> Result<Vec<CheckoutRecord>, StoreError>;
    fn rotated(&self, by: &Actor, id: i64) -> Result<CheckoutRecord, StoreError>;
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
    fn rotated(&self, by: &Actor, id: i64) -> Result<CheckoutRecord, StoreError> {
        self.checkout_rotated(by, id)
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
    OpsError::Store(StoreError::CheckoutRefused(message.into()))
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
    let inventory = absolute(req.inventory_path);
    let new = NewCheckout {
        cred: &req.cred,
        ticket: &req.ticket,
        reason: &req.reason,
        for_name: req.for_name.as_deref(),
        ttl,
        inventory: &inventory.to_string_lossy(),
        needs_approval: checkout::needs_approval(&policy.checkout),
    };
    Ok(match ctx.checkouts.request(&req.actor, &new)? {
        (record, Some(secret)) => Requested::Granted(record, secret),
        (record, None) => Requested::Waiting(record),
    })
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

pub fn approve(ctx: &Context, by: &Actor, id: i64) -> Result<CheckoutRecord, OpsError> {
    Ok(ctx.checkouts.approve(by, id)?)
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

/// `rotor checkin ID`: the credential is rotated now, so the checked-out secret stops
/// working. A request never claimed is simply closed.
pub fn checkin(
    ctx: &Context,
    by: &Actor,
    id: i64,
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
    Ok(end_by_rotation(ctx, by, c, shutdown))
}

/// Settles every checkout whose deadline passed and rotates every one that is ending
/// (expired, checked in, or ended by a run, whose rotation failed before). Front-ends call
/// it before their own work.
pub fn settle_due(ctx: &Context, by: &Actor) -> Result<Vec<Ended>, OpsError> {
    let ending = ctx.checkouts.due(by)?;
    Ok(ending
        .into_iter()
        .map(|c| end_by_rotation(ctx, by, c, std::future::pending()))
        .collect())
}

/// Rotates an ending checkout's credential with the inventory it was made with.
fn end_by_rotation(
    ctx: &Context,
    by: &Actor,
    c: CheckoutRecord,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Ended {
    let failed = |c: CheckoutRecord, report: Option<RunReport>, why: String| {
        if let Err(e) = ctx.checkouts.rotation_failed(by, c.id, &why) {
            tracing::error!(checkout = c.id, error = %e, "cannot record a failed checkout rotation");
        }
        Ended {
            checkout: c,
            report,
            failure: Some(why),
        }
    };
    let path = PathBuf::from(&c.inventory);
    let inventory = match crate::inventory::load(&path) {
        Ok(inventory) => inventory,
        Err(e) => {
            let why = format!(
                "cannot read the inventory it was checked out with: {e}. Restore the file, or rotate {} with another inventory",
                c.cred
            );
            return failed(c, None, why);
        }
    };
    let selection = match inventory.select(&[Scope::Cred(c.cred.clone())]) {
        Ok(selection) => selection,
        Err(e) => return failed(c, None, format!("{e}")),
    };
    let end = c
        .end
        .map(|e| e.as_str().replace('_', " "))
        .unwrap_or_default();
    let req = RotateRequest {
        reason: format!("checkout {} (ticket {}) {end}", c.id, c.ticket),
        actor: by.clone(),
        ..RotateRequest::new(&inventory, selection, format!("cred:{}", c.cred))
    };
    let report = match rotate(ctx, req, shutdown) {
        Ok(done) => done.report,
        Err(e) => return failed(c, None, e.to_string()),
    };
    let rotated = report.results.iter().any(|r| {
        r.cred == c.cred && matches!(r.outcome, Outcome::Committed | Outcome::KeptNew { .. })
    });
    if !rotated {
        let why = report
            .results
            .iter()
            .find(|r| r.cred == c.cred)
            .map_or_else(
                || format!("the run did not rotate {}", c.cred),
                |r| format!("the rotation of {} ended {}", c.cred, r.outcome.label()),
            );
        return failed(c, Some(report), why);
    }
    match ctx.checkouts.rotated(by, c.id) {
        Ok(closed) => Ended {
            checkout: closed,
            report: Some(report),
            failure: None,
        },
        Err(e) => failed(c, Some(report), e.to_string()),
    }
}

pub fn list(ctx: &Context, all: bool) -> Result<Vec<CheckoutRecord>, OpsError> {
    Ok(ctx.checkouts.list(all)?)
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
