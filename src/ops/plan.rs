//! `plan`: what would rotate and why. Reads the inventory and the vault and changes nothing.
//! It connects to no host; it opens the selected LDAP directories (a read-only bind) to
//! resolve their account searches, as a rotation would open them, so the plan counts the
//! accounts a rotation would rotate and names those it would leave alone.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::directories::{Purpose, host_work, open_directories};
use super::{Actor, Context, OpsError};
use crate::connector::FaultClass;
use crate::credential::CredentialId;
use crate::engine::Outcome;
use crate::engine::machine::FaultKind;
use crate::inventory::{DirectoryAccounts, Inventory, Policy, Selection};
use crate::report::FailedDirectory;
use crate::store::CredentialStatus;

/// Deadline of each LDAP step while a plan resolves searches.
const PLAN_STEP_TIMEOUT: Duration = Duration::from_secs(20);

pub struct PlanRequest<'a> {
    pub inventory: &'a Inventory,
    pub selection: Selection,
    pub actor: Actor,
}

/// What a rotation of the selection would do.
pub struct Plan {
    /// Host credentials, in inventory order.
    pub credentials: Vec<PlannedCredential>,
    /// Hosts selected.
    pub n_hosts: usize,
    /// Directories selected (whether or not they could be opened).
    pub n_directories: usize,
    pub directories: Vec<PlannedDirectory>,
    /// Selected directories that could not be opened: their accounts are not counted.
    pub unplanned: Vec<FailedDirectory>,
    /// Accounts a `cred:` scope names that their directory lacks.
    pub missing: Vec<CredentialId>,
    /// Accounts a rotation would leave alone, grouped by why (thousands under one search
    /// base share it), in the order first met.
    pub refused: Vec<(String, Vec<CredentialId>)>,
    /// Selected hosts a rotation could not log in to, whatever the host says: rotor's
    /// connect secret for them is not in the vault. Their credentials are still listed.
    pub unplanned_hosts: Vec<UnplannedHost>,
}

/// A host the plan knows a rotation cannot reach, and what to do.
pub struct UnplannedHost {
    pub host: crate::credential::HostName,
    pub why: String,
}

impl Plan {
    /// Credentials that would rotate: host credentials and directory accounts.
    pub fn n_credentials(&self) -> usize {
        self.credentials.len() + self.n_directory_accounts()
    }

    pub fn n_directory_accounts(&self) -> usize {
        self.directories.iter().map(|d| d.n_accounts).sum()
    }

    /// Accounts the plan names that a rotation would not rotate (missing or refused).
    pub fn n_refused(&self) -> usize {
        self.missing.len() + self.refused.iter().map(|(_, c)| c.len()).sum::<usize>()
    }
}

pub struct PlannedCredential {
    pub cred: CredentialId,
    pub playbook: String,
    pub policy: Policy,
    pub why: Why,
}

/// Why a host credential is in the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    NeverRotated,
    /// An open rotation will be recovered first.
    Interrupted,
    CurrentSince(DateTime<Utc>),
    NoCurrentSecret,
}

/// A directory's accounts, summed up (they can be thousands).
pub struct PlannedDirectory {
    pub name: String,
    pub n_accounts: usize,
    /// Of the inventory's account sources: listed DNs and searches.
    pub n_listed_dns: usize,
    pub n_searches: usize,
    /// Accounts the vault holds no secret of.
    pub n_new: usize,
    /// When the oldest of the others was set.
    pub oldest: Option<DateTime<Utc>>,
    pub policy: Policy,
}

/// Plans a rotation of the request's selection.
pub fn plan(ctx: &Context, req: PlanRequest<'_>) -> Result<Plan, OpsError> {
    let _span = tracing::info_span!("plan", actor = %req.actor).entered();
    let inv = req.inventory;
    let status = ctx.records.status()?;
    // By credential: a directory of thousands is looked up once per account.
    let status: HashMap<&CredentialId, &CredentialStatus> =
        status.iter().map(|s| (&s.cred, s)).collect();
    let mut plan = Plan {
        credentials: Vec::new(),
        n_hosts: req.selection.hosts.len(),
        n_directories: req.selection.directories.len(),
        directories: Vec::new(),
        unplanned: Vec::new(),
        missing: Vec::new(),
        refused: Vec::new(),
        unplanned_hosts: Vec::new(),
    };
    if !req.selection.directories.is_empty() {
        let dirs = ctx.targets.directories(PLAN_STEP_TIMEOUT);
        let (works, failed, not_started) =
            open_directories(inv, &req.selection.directories, &*dirs, Purpose::Rotate);
        for w in &works {
            let d = inv
                .directories
                .iter()
                .find(|d| d.name == w.name)
                .expect("selected from it");
            let n_listed_dns = d
                .accounts
                .iter()
                .filter(|a| matches!(a, DirectoryAccounts::Dn(_)))
                .count();
            let (mut n_new, mut oldest) = (0, None);
            for (uid, _) in &w.accounts {
                let cred = CredentialId::new(w.name.clone(), uid.clone());
                match status.get(&cred).and_then(|s| s.current_since) {
                    Some(t) => oldest = Some(oldest.map_or(t, |o: DateTime<Utc>| o.min(t))),
                    None => n_new += 1,
                }
            }
            plan.directories.push(PlannedDirectory {
                name: w.name.to_string(),
                n_accounts: w.accounts.len(),
                n_listed_dns,
                n_searches: d.accounts.len() - n_listed_dns,
                n_new,
                oldest,
                policy: w.policy.clone(),
            });
        }
        plan.unplanned = failed;
        for r in not_started {
            let Outcome::NotChanged { cause } = r.outcome else {
                continue;
            };
            if cause.class == FaultKind::Target(FaultClass::AccountMissing) {
                // Partial, as `rotate` calls it: a named account it will not find.
                plan.missing.push(r.cred);
                continue;
            }
            match plan
                .refused
                .iter_mut()
                .find(|(why, _)| *why == cause.message)
            {
                Some((_, creds)) => creds.push(r.cred),
                None => plan.refused.push((cause.message, vec![r.cred])),
            }
        }
    }
    for h in &req.selection.hosts {
        if let crate::inventory::ConnectAuth::Vault(cred) = &h.connect.auth {
            let stored = status
                .get(cred)
                .is_some_and(|s| s.has_current || s.has_pending);
            if !stored {
                plan.unplanned_hosts.push(UnplannedHost {
                    host: h.name.clone(),
                    why: format!(
                        "rotor logs in to it as {} with the vault's secret of {cred}, and the vault holds none: store it with `rotor enroll {cred}`",
                        h.connect.user
                    ),
                });
            }
        }
    }
    for w in host_work(inv, req.selection.hosts) {
        for account in w.accounts {
            let cred = account.cred;
            let why = match status.get(&cred) {
                None => Why::NeverRotated,
                Some(s) if s.open_rotation => Why::Interrupted,
                Some(s) => match s.current_since {
                    Some(t) => Why::CurrentSince(t),
                    None => Why::NoCurrentSecret,
                },
            };
            plan.credentials.push(PlannedCredential {
                cred,
                playbook: account.playbook,
                policy: account.policy,
                why,
            });
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::testkit::{FakeFleet, MemStore};
    use crate::inventory::Scope;
    use crate::ops::testkit::{context, inventory, runtime};

    #[test]
    fn a_plan_says_why_each_credential_would_rotate_and_touches_nothing() {
        let rt = runtime();
        let fleet: &'static FakeFleet = Box::leak(Box::default());
        let store = Arc::new(MemStore::default());
        let app = CredentialId::parse("a/svc_app").unwrap();
        store.inner.lock().unwrap().current.insert(app, "s".into());
        let ctx = context(fleet, &store, &rt);
        let inv = inventory(&["a"]);
        let req = PlanRequest {
            inventory: &inv,
            selection: inv.select(&[Scope::All]).unwrap(),
            actor: Actor::of_this_process(),
        };
        let plan = plan(&ctx, req).unwrap();
        let whys: Vec<(String, Why)> = plan
            .credentials
            .iter()
            .map(|c| (c.cred.to_string(), c.why.clone()))
            .collect();
        let since = DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            whys,
            [
                ("a/svc_app".to_owned(), Why::CurrentSince(since)),
                ("a/svc_backup".to_owned(), Why::NeverRotated)
            ]
        );
        assert_eq!(
            (plan.n_hosts, plan.n_credentials(), plan.n_refused()),
            (1, 2, 0)
        );
        assert!(
            fleet.log.lock().unwrap().is_empty(),
            "no host was contacted"
        );
    }
}
