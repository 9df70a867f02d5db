//! One pass of the scheduler (`rotor serve`'s loop calls it every tick): end the checkouts
//! that are due, decide for every scheduled credential of the inventory whether it rotates
//! now (`crate::scheduler`, pure), remember the decisions in the vault, and rotate what is
//! due in one `ops::rotate` run, exactly as `rotor rotate` would (recovery first, leases,
//! admission, canary and breaker options). Failures are tried again after a backoff;
//! credentials past their policy's `max_age` are logged at warning once a day.
//!
//! The daemon is a front-end: nothing here is a second engine. A directory's accounts found
//! by searches are known only once its searches run: they are listed (`discover`) when the
//! inventory is loaded and again every `discover_every`, and each account the vault already
//! holds counts too.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use super::directories::{Purpose, open_directories};
use super::rotate::{RotateRequest, rotate};
use super::{Actor, Context, OpsError, checkout};
use crate::credential::{CredentialId, HostName};
use crate::engine::Outcome;
use crate::engine::blast::{FailureLimit, SkipReason};
use crate::inventory::{Inventory, Policy, Scope};
use crate::report::RunReport;
use crate::scheduler::{self, Plan, Settings, Stored};
use crate::store::{StoreError, Vault};

/// Where the scheduler remembers each credential's next due time (the vault).
pub trait Schedules: Send + Sync {
    fn rows(&self) -> Result<HashMap<CredentialId, Stored>, StoreError>;
    /// Writes (`Some`) or forgets (`None`) rows, in one transaction.
    fn write(&self, rows: &[(CredentialId, Option<Stored>)]) -> Result<(), StoreError>;
}

impl Schedules for Vault {
    fn rows(&self) -> Result<HashMap<CredentialId, Stored>, StoreError> {
        self.schedule_rows()
    }
    fn write(&self, rows: &[(CredentialId, Option<Stored>)]) -> Result<(), StoreError> {
        self.schedule_write(rows)
    }
}

/// The scheduler's state between passes (owned by the daemon's loop).
pub struct Scheduler {
    pub settings: Settings,
    /// The zone of policies that name none (the machine's).
    pub default_tz: Tz,
    /// How often directories' searches are run again to find new accounts.
    pub discover_every: Duration,
    /// Hosts at once and accounts of a directory at once, as `rotor rotate --concurrency`.
    pub concurrency: usize,
    /// Deadline of each SSH or LDAP step.
    pub step_timeout: Duration,
    /// Accounts each directory's searches found, and when they run next.
    discovered: HashMap<HostName, Vec<CredentialId>>,
    discover_at: Option<DateTime<Utc>>,
    /// Ending checkouts whose rotation failed: failures so far, and when to try again.
    checkout_retry: HashMap<i64, (u32, DateTime<Utc>)>,
    /// The day each stale credential was last warned about.
    warned: HashMap<CredentialId, NaiveDate>,
}

impl Scheduler {
    pub fn new(settings: Settings, default_tz: Tz) -> Scheduler {
        Scheduler {
            settings,
            default_tz,
            discover_every: Duration::from_secs(3600),
            concurrency: 32,
            step_timeout: Duration::from_secs(20),
            discovered: HashMap::new(),
            discover_at: None,
            checkout_retry: HashMap::new(),
            warned: HashMap::new(),
        }
    }

    /// A new inventory is in force: its directories are searched again at the next pass.
    pub fn inventory_changed(&mut self) {
        self.discovered.clear();
        self.discover_at = None;
    }
}

/// What one pass did.
#[derive(Default)]
pub struct Pass {
    pub at: Option<DateTime<Utc>>,
    /// Scheduled credentials considered.
    pub n_scheduled: usize,
    /// Credentials due in this pass (rotated, unless the daemon stopped first).
    pub due: Vec<CredentialId>,
    /// The run that rotated them.
    pub run: Option<RunReport>,
    /// The daemon stopped during the run: what had not started is left for later.
    pub interrupted: bool,
    /// Checkouts that came due and were ended (or failed to, and stay ending).
    pub checkouts: Vec<checkout::Ended>,
    /// The earliest due time of the credentials this pass did not rotate (those it rotated
    /// are counted from their new rotation by the next pass).
    pub next_due: Option<DateTime<Utc>>,
    /// Credentials whose last verified rotation is older than their `max_age`.
    pub stale: Vec<CredentialId>,
    /// Those of them logged at warning in this pass (each at most once a day).
    pub warned: Vec<CredentialId>,
    /// Directories whose searches failed in this pass: their unknown accounts wait.
    pub undiscovered: Vec<(String, String)>,
}

/// A scheduled credential: its id and the policy that governs it.
struct Item<'a> {
    cred: CredentialId,
    policy: &'a Policy,
}

/// Runs one pass at the context clock's now. `shutdown` makes a fresh stop future for each
/// operation the pass starts (checkout ends, the run).
pub fn pass<F>(
    ctx: &Context,
    sched: &mut Scheduler,
    inventory: &Inventory,
    actor: &Actor,
    shutdown: impl Fn() -> F,
) -> Result<Pass, OpsError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let started = ctx.clock.now();
    let retry = sched.checkout_retry.clone();
    let may_try = move |c: &crate::store::CheckoutRecord| {
        retry.get(&c.id).is_none_or(|(_, at)| *at <= started)
    };
    let mut pass = Pass {
        checkouts: checkout::settle_due_where(ctx, actor, shutdown(), &may_try)?,
        ..Pass::default()
    };
    let now = ctx.clock.now();
    // A checkout whose rotation failed is tried again after the scheduler's backoff, not
    // every tick: an unreachable host would cost its step timeouts in every pass.
    for ended in &pass.checkouts {
        match &ended.failure {
            None => {
                sched.checkout_retry.remove(&ended.checkout.id);
            }
            Some(_) => {
                let failures = sched
                    .checkout_retry
                    .get(&ended.checkout.id)
                    .map_or(0, |(n, _)| *n)
                    .saturating_add(1);
                let wait = chrono::Duration::from_std(scheduler::retry_backoff(failures))
                    .unwrap_or(chrono::Duration::hours(6));
                sched
                    .checkout_retry
                    .insert(ended.checkout.id, (failures, now + wait));
            }
        }
    }
    pass.at = Some(now);
    if sched.discover_at.is_none_or(|at| at <= now) {
        pass.undiscovered = discover(ctx, sched, inventory);
        // A directory whose search failed is tried again in five minutes; its accounts
        // found before stay scheduled meanwhile.
        let next = if pass.undiscovered.is_empty() {
            sched.discover_every
        } else {
            Duration::from_secs(300).min(sched.discover_every)
        };
        sched.discover_at =
            Some(now + chrono::Duration::from_std(next).unwrap_or(chrono::Duration::hours(1)));
    }
    let statuses = ctx.records.status()?;
    let items = inventory_items(inventory, &statuses, &sched.discovered);
    pass.n_scheduled = items.len();
    let since: HashMap<&CredentialId, DateTime<Utc>> = statuses
        .iter()
        .filter_map(|s| Some((&s.cred, s.current_since.filter(|_| s.has_current)?)))
        .collect();
    let rows = ctx.schedules.rows()?;
    let mut writes = Vec::new();
    let mut plans: HashMap<CredentialId, (Plan<'_>, Option<DateTime<Utc>>, u32)> = HashMap::new();
    for item in &items {
        let Some(schedule) = item.policy.schedule.as_ref() else {
            continue;
        };
        let plan = Plan {
            schedule,
            tz: item.policy.timezone.unwrap_or(sched.default_tz),
            window: item.policy.window.as_ref(),
        };
        let last = since.get(&item.cred).copied();
        let stored = rows.get(&item.cred);
        let rng_value = ctx.entropy.rng().next_u64();
        let decision = scheduler::decide(plan, last, stored, now, sched.settings, rng_value);
        if decision.rotate {
            tracing::info!(cred = %item.cred, why = ?decision.why, "due");
            pass.due.push(item.cred.clone());
        } else if let Some(at) = decision.due_at {
            pass.next_due = Some(pass.next_due.map_or(at, |n| n.min(at)));
        }
        let failures = decision.store.as_ref().or(stored).map_or(0, |s| s.failures);
        plans.insert(item.cred.clone(), (plan, last, failures));
        if let Some(row) = decision.store {
            writes.push((item.cred.clone(), Some(row)));
        }
    }
    for item in &items {
        let last = since.get(&item.cred).copied();
        let Some(max_age) = item.policy.max_age else {
            continue;
        };
        if !super::status::freshness(last, Some(max_age), now).is_stale() {
            continue;
        }
        pass.stale.push(item.cred.clone());
        let today = now.date_naive();
        if sched.warned.get(&item.cred) != Some(&today) {
            sched.warned.insert(item.cred.clone(), today);
            tracing::warn!(
                cred = %item.cred,
                max_age = %crate::text::duration_words(max_age),
                last_verified = ?last,
                "stale: the last verified rotation is older than the policy's max_age"
            );
            pass.warned.push(item.cred.clone());
        }
    }
    // Rows of credentials the inventory no longer schedules are forgotten.
    for cred in rows.keys() {
        if !plans.contains_key(cred) {
            writes.push((cred.clone(), None));
        }
    }
    ctx.schedules.write(&writes)?;
    if pass.due.is_empty() {
        return Ok(pass);
    }
    let scopes: Vec<Scope> = pass.due.iter().cloned().map(Scope::Cred).collect();
    let selection = match inventory.select(&scopes) {
        Ok(selection) => selection,
        Err(e) => {
            // Every scope names an inventory credential; a failure here is a bug to see.
            tracing::error!(error = %e, "cannot select the due credentials");
            return Ok(pass);
        }
    };
    let label = match pass.due.as_slice() {
        [one] => format!("schedule: cred:{one}"),
        many => format!("schedule: {} credentials", many.len()),
    };
    let req = RotateRequest {
        reason: "scheduled rotation".to_owned(),
        actor: actor.clone(),
        concurrency: sched.concurrency,
        step_timeout: sched.step_timeout,
        max_failures: FailureLimit::Unlimited,
        origin: super::rotate::RunOrigin::Schedule,
        ..RotateRequest::new(inventory, selection, label)
    };
    let done = rotate(ctx, req, shutdown())?;
    pass.interrupted = done.interrupted;
    // Backoffs count from the end of the run, which may have taken longer than the first.
    let ended_at = ctx.clock.now();
    let mut failed = Vec::new();
    for r in &done.report.results {
        let Some((plan, last, failures)) = plans.get(&r.cred) else {
            continue;
        };
        match &r.outcome {
            Outcome::Committed => {}
            // Not started (the daemon stops, or another rotor holds it): due again next pass.
            Outcome::Skipped {
                reason: SkipReason::Busy | SkipReason::Interrupted,
                ..
            } => {}
            other => {
                tracing::warn!(cred = %r.cred, outcome = other.label(), "scheduled rotation failed; retried after a backoff");
                failed.push((
                    r.cred.clone(),
                    Some(scheduler::after_failure(*plan, *last, *failures, ended_at)),
                ));
            }
        }
    }
    ctx.schedules.write(&failed)?;
    pass.run = Some(done.report);
    Ok(pass)
}

/// Every credential of the inventory: hosts' accounts, and directories' accounts the
/// vault holds or their searches found (never rotor's own bind account: rotated only when
/// named).
fn inventory_items<'a>(
    inventory: &'a Inventory,
    statuses: &[crate::store::CredentialStatus],
    discovered: &HashMap<HostName, Vec<CredentialId>>,
) -> Vec<Item<'a>> {
    let mut items = Vec::new();
    for h in &inventory.hosts {
        for a in &h.accounts {
            if let Some(policy) = inventory.policies.get(&a.policy) {
                items.push(Item {
                    cred: a.credential(&h.name),
                    policy,
                });
            }
        }
    }
    for d in &inventory.directories {
        let Some(policy) = inventory.policies.get(&d.policy) else {
            continue;
        };
        let mut creds: BTreeSet<CredentialId> = statuses
            .iter()
            .map(|s| &s.cred)
            .filter(|c| c.host == d.name && c.slot == crate::credential::Slot::Main)
            .cloned()
            .collect();
        creds.extend(discovered.get(&d.name).into_iter().flatten().cloned());
        creds.remove(&d.bind_credential);
        items.extend(creds.into_iter().map(|cred| Item { cred, policy }));
    }
    items
}

/// Runs every directory's searches (a read-only bind) and remembers the accounts found.
fn discover(ctx: &Context, sched: &mut Scheduler, inventory: &Inventory) -> Vec<(String, String)> {
    if inventory.directories.is_empty() {
        return Vec::new();
    }
    let scopes: Vec<Scope> = inventory
        .directories
        .iter()
        .map(|d| Scope::Directory(d.name.clone()))
        .collect();
    let Ok(selection) = inventory.select(&scopes) else {
        return Vec::new();
    };
    let dirs = ctx.targets.directories(sched.step_timeout);
    let (works, failed, _) = open_directories(
        inventory,
        &selection.directories,
        &*dirs,
        Purpose::RecoverOrVerify,
    );
    // Replaced directory by directory: one whose search failed keeps what it found before.
    for w in works {
        let creds = w
            .accounts
            .iter()
            .map(|(uid, _)| CredentialId::new(w.name.clone(), uid.clone()))
            .collect();
        sched.discovered.insert(w.name.clone(), creds);
    }
    failed
        .into_iter()
        .map(|f| {
            tracing::warn!(directory = %f.directory, error = %f.message, "cannot search the directory; its new accounts wait for the next try");
            (f.directory, f.message)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::TestClock;
    use crate::engine::testkit::setup;
    use crate::ops::testkit::{context, runtime};

    fn inventory(policy: &str) -> Inventory {
        let yaml = format!(
            "version: 1\npolicies:\n  default: {{ length: 24, classes: [lower, upper, digit, symbol]{policy} }}\nhosts:\n  - name: a\n    address: 127.0.0.1\n    host_key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"\n    connect: {{ user: root, key: /k }}\n    accounts:\n      - {{ name: svc_app, playbook: linux-password }}\n"
        );
        crate::inventory::parse(&yaml, std::path::Path::new("test.yaml")).unwrap()
    }

    fn scheduler(ctx: &Context) -> Scheduler {
        Scheduler::new(
            Settings {
                started_at: ctx.clock.now(),
                catch_up_spread: Duration::ZERO,
            },
            chrono_tz::UTC,
        )
    }

    #[test]
    fn a_stale_credential_is_warned_about_once_a_day_scheduled_or_not() {
        let rt = runtime();
        let (fleet, store, _) = setup(&["a"]);
        let app = CredentialId::parse("a/svc_app").unwrap();
        // Current since 2026-11-01 (the in-memory store's time); the clock reads 2026-12-01.
        store
            .inner
            .lock()
            .unwrap()
            .current
            .insert(app.clone(), "s".into());
        let clock = Arc::new(TestClock::at(
            DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
                .unwrap()
                .to_utc(),
        ));
        let ctx = Context {
            clock: clock.clone(),
            ..context(fleet, &store, &rt)
        };
        let inv = inventory(", max_age: 7d");
        let mut sched = scheduler(&ctx);
        let by = Actor::named("test");
        let first = pass(&ctx, &mut sched, &inv, &by, std::future::pending).unwrap();
        assert_eq!(first.stale, vec![app.clone()]);
        assert_eq!(first.warned, vec![app.clone()]);
        assert!(first.run.is_none(), "no schedule: nothing rotates");
        clock.advance(Duration::from_secs(3600));
        let later = pass(&ctx, &mut sched, &inv, &by, std::future::pending).unwrap();
        assert_eq!(later.stale, vec![app.clone()]);
        assert!(later.warned.is_empty(), "once a day");
        clock.advance(Duration::from_secs(86_400));
        let next_day = pass(&ctx, &mut sched, &inv, &by, std::future::pending).unwrap();
        assert_eq!(next_day.warned, [app]);
    }

    #[test]
    fn a_due_credential_rotates_through_the_engine_and_a_stopping_daemon_starts_nothing() {
        let rt = runtime();
        let (fleet, store, _) = setup(&["a"]);
        let ctx = context(fleet, &store, &rt);
        let inv = inventory(", schedule: \"@daily\"");
        let by = Actor::named("test");
        // Stopping already: the due credential is not started, and stays due.
        let mut sched = scheduler(&ctx);
        let stopped = pass(&ctx, &mut sched, &inv, &by, || std::future::ready(())).unwrap();
        assert_eq!(stopped.due.len(), 1);
        assert!(stopped.interrupted);
        assert_eq!(fleet.password("a", "svc_app").unwrap(), "shared");
        // Never rotated: due at once, rotated by the same run as `rotor rotate`.
        let ran = pass(&ctx, &mut sched, &inv, &by, std::future::pending).unwrap();
        let run = ran.run.expect("a run");
        assert_eq!(run.results.len(), 1);
        assert_eq!(run.results[0].outcome.label(), "committed");
        assert_ne!(fleet.password("a", "svc_app").unwrap(), "shared");
    }
}
