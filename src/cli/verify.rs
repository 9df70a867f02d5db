//! `rotor verify`: heartbeat. For each selected credential, a fresh login (SSH) or bind (LDAP)
//! with the vault's current secret. Changes nothing on the targets; rejected logins count
//! against the lockout budget like any other.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::output::{Output, open_vault};
use super::rotate::{Purpose, Resolved, Selection, open_directories, resolve};
use super::{CliResult, Global, OutputFormat};
use crate::connector::ConnectorError;
use crate::connector::ssh::check_password_login;
use crate::credential::CredentialId;
use crate::engine::Store;
use crate::engine::driver::count_login;
use crate::playbook::{LdapDirectories, SshFleet};
use crate::report::{SCHEMA_VERSION, table};
use crate::secret::Secret;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Logins (SSH sessions, LDAP binds) tried at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Deadline of each SSH or LDAP step (connect, handshake, login), in seconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub step_timeout: u64,
    /// `text` for people, `json` for programs.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Serialize)]
struct Check {
    cred: CredentialId,
    /// works, busy, parked, no_secret, error, or the fault class that stopped the check.
    result: String,
    detail: String,
}

impl Check {
    fn new(cred: CredentialId, result: &str, detail: impl Into<String>) -> Check {
        Check {
            cred,
            result: result.to_owned(),
            detail: detail.into(),
        }
    }
}

/// What the heartbeat needs to decide, per credential, whether to log in at all.
struct Context {
    store: Arc<dyn Store>,
    /// Credentials in the middle of a rotation (open, or leased by a live rotor), with why:
    /// the target may hold the pending secret, so a login with `current` would be rejected
    /// and spend the account's lockout budget for nothing.
    busy: HashMap<CredentialId, String>,
}

impl Context {
    /// Checks one credential with `login` (a fresh SSH login or LDAP bind as the account).
    fn check(
        &self,
        cred: CredentialId,
        max_failed_logins: u32,
        login: impl FnOnce(&Secret) -> Result<(), ConnectorError>,
    ) -> Check {
        if let Some(why) = self.busy.get(&cred) {
            return Check::new(cred, "busy", why.clone());
        }
        if let Ok(Some(why)) = self.store.parked(&cred) {
            let detail =
                format!("{why}; no login tried (`rotor recover --cred {cred}` unparks it)");
            return Check::new(cred, "parked", detail);
        }
        let secret = match self.store.current(&cred) {
            Err(e) => return Check::new(cred, "error", e.to_string()),
            Ok(None) => {
                let detail = "the vault holds no current secret; rotate or enroll it";
                return Check::new(cred, "no_secret", detail);
            }
            Ok(Some(secret)) => secret,
        };
        let result = login(&secret);
        count_login(
            &*self.store,
            &crate::engine::ledger::Actor::of_this_process(),
            &cred,
            max_failed_logins,
            &result,
        );
        match result {
            Ok(()) => Check::new(cred, "works", ""),
            Err(e) => {
                let class = serde_json::to_value(e.class)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "error".into());
                Check::new(cred, &class, e.message)
            }
        }
    }
}

pub fn run(g: &Global, a: VerifyArgs) -> CliResult {
    let Resolved {
        inv,
        hosts,
        directories,
        ..
    } = resolve(&a.selection)?;
    let out = Output::new(a.output);
    let vault = open_vault(g)?;
    let busy = vault
        .status()?
        .into_iter()
        .filter_map(|s| {
            let why = match (&s.lease_holder, s.open_rotation) {
                (Some(holder), _) => format!("being rotated by {holder}; no login tried"),
                (None, true) => "a rotation is open: run `rotor recover`; no login tried".into(),
                (None, false) => return None,
            };
            Some((s.cred, why))
        })
        .collect();
    let store: Arc<dyn Store> = vault;
    let ctx = Arc::new(Context {
        store: store.clone(),
        busy,
    });
    let step_timeout = Duration::from_secs(a.step_timeout);
    let fleet = Arc::new(SshFleet {
        store: store.clone(),
        step_timeout,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dirs = LdapDirectories {
        store: store.clone(),
        step_timeout,
        runtime: rt.handle().clone(),
    };
    let (dir_work, failed_dirs, _) =
        open_directories(&inv, &directories, &dirs, Purpose::RecoverOrVerify);
    let n = hosts.iter().map(|w| w.accounts.len()).sum::<usize>()
        + dir_work.iter().map(|d| d.accounts.len()).sum::<usize>();
    let bar = out.progress(n, "verifying");
    let semaphore = Arc::new(tokio::sync::Semaphore::new(a.concurrency as usize));
    let mut checks: Vec<Check> = rt.block_on(async {
        let mut tasks = Vec::new();
        // Hosts: one blocking task per host, its accounts in sequence.
        for w in hosts {
            let (ctx, fleet, bar) = (ctx.clone(), fleet.clone(), bar.clone());
            let permit = slot(&semaphore).await;
            tasks.push(tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let target = fleet.target(&w.host);
                w.accounts
                    .iter()
                    .map(|(account, policy)| {
                        let cred = CredentialId::new(w.host.name.clone(), account.clone());
                        let check = ctx.check(cred, policy.max_failed_logins, |secret| {
                            check_password_login(&target, account, secret)
                        });
                        bar.inc(1);
                        check
                    })
                    .collect::<Vec<_>>()
            }));
        }
        // Directories: one blocking task per account (a fresh bind each).
        for d in dir_work {
            for (uid, dn) in d.accounts.clone() {
                let (ctx, bar, open) = (ctx.clone(), bar.clone(), d.open.clone());
                let (name, budget) = (d.name.clone(), d.policy.max_failed_logins);
                let permit = slot(&semaphore).await;
                tasks.push(tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let cred = CredentialId::new(name, uid.clone());
                    let mut target = open.target(&dn);
                    let id = cred.clone();
                    let check = ctx.check(cred, budget, |secret| target.prove(&id, secret));
                    bar.inc(1);
                    vec![check]
                }));
            }
        }
        let mut all = Vec::new();
        for t in tasks {
            // A worker that panicked shows up below as credentials not checked.
            all.extend(t.await.unwrap_or_default());
        }
        all
    });
    bar.finish_and_clear();
    if checks.len() < n {
        // A worker panicked: say so rather than report fewer credentials as if all were seen.
        tracing::error!(
            "internal error: {} of {n} credentials were not checked",
            n - checks.len()
        );
    }
    for f in &failed_dirs {
        eprintln!(
            "directory {} could not be checked ({}): {}",
            f.directory,
            f.class,
            crate::text::escape(&f.message)
        );
    }
    checks.sort_by(|a, b| a.cred.cmp(&b.cred));
    let n_ok = checks.iter().filter(|c| c.result == "works").count();
    match out.format {
        OutputFormat::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "schema_version": SCHEMA_VERSION,
                "command": "verify",
                "total": n,
                "works": n_ok,
                "results": checks,
                "failed_directories": failed_dirs,
            }))?
        ),
        OutputFormat::Text => {
            outln!("{n_ok} of {n} credentials work with the vault's current secret.");
            let bad: Vec<[String; 3]> = checks
                .iter()
                .filter(|c| c.result != "works")
                .map(|c| [c.cred.to_string(), c.result.clone(), c.detail.clone()])
                .collect();
            if !bad.is_empty() {
                outln!();
                out!("{}", table(&["CREDENTIAL", "RESULT", "DETAIL"], &bad));
            }
        }
    }
    Ok(if n_ok == n && failed_dirs.is_empty() {
        0
    } else {
        3
    })
}

/// A place among the `--concurrency` logins at once.
async fn slot(semaphore: &Arc<tokio::sync::Semaphore>) -> tokio::sync::OwnedSemaphorePermit {
    semaphore
        .clone()
        .acquire_owned()
        .await
        .expect("semaphore is never closed")
}
