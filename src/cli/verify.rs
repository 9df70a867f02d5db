//! `rotor verify`: heartbeat. For each selected credential, a fresh login with the vault's
//! current secret. Changes nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::output::{Output, open_vault};
use super::rotate::{Resolved, Selection, resolve};
use super::{CliResult, Global, OutputFormat};
use crate::connector::ssh::check_password_login;
use crate::credential::CredentialId;
use crate::engine::Store;
use crate::engine::driver::count_login;
use crate::playbook::SshFleet;
use crate::report::{SCHEMA_VERSION, table};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub selection: Selection,
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub step_timeout: u64,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Serialize)]
struct Check {
    cred: CredentialId,
    /// works, rejected, no_secret, or the fault class that stopped the check.
    result: String,
    detail: String,
}

/// A heartbeat login counts against the lockout budget like any other.
fn counted(
    store: &dyn Store,
    cred: &CredentialId,
    policy: &crate::inventory::Policy,
    result: Result<(), crate::connector::ConnectorError>,
) -> Result<(), crate::connector::ConnectorError> {
    count_login(store, cred, policy.max_failed_logins, &result);
    result
}

pub fn run(g: &Global, a: VerifyArgs) -> CliResult {
    let Resolved {
        hosts: work,
        directories,
        ..
    } = resolve(&a.selection)?;
    if !directories.is_empty() {
        eprintln!(
            "note: `rotor verify` checks host accounts only for now; directory accounts are verified by a bind at every rotation"
        );
    }
    let out = Output::new(a.output);
    let vault = open_vault(g)?;
    // Credentials in the middle of a rotation (open, or leased by a live rotor) get no login:
    // the target may hold the pending secret, and a rejected login would count against the
    // account's lockout budget for nothing.
    let busy: Arc<HashMap<CredentialId, String>> = Arc::new(
        vault
            .status()?
            .into_iter()
            .filter_map(|s| {
                let why = match (&s.lease_holder, s.open_rotation) {
                    (Some(holder), _) => format!("being rotated by {holder}; no login tried"),
                    (None, true) => {
                        "a rotation is open: run `rotor recover`; no login tried".to_owned()
                    }
                    (None, false) => return None,
                };
                Some((s.cred, why))
            })
            .collect(),
    );
    let store: Arc<dyn Store> = vault;
    let fleet = Arc::new(SshFleet {
        store: store.clone(),
        step_timeout: Duration::from_secs(a.step_timeout),
    });
    let n: usize = work.iter().map(|w| w.accounts.len()).sum();
    let bar = out.progress(n, "verifying");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let semaphore = Arc::new(tokio::sync::Semaphore::new(a.concurrency as usize));
    let checks: Vec<Check> = rt.block_on(async {
        let mut tasks = Vec::new();
        for w in work {
                        let busy = busy.clone();
            let (store, fleet, sem, bar) =
                (store.clone(), fleet.clone(), semaphore.clone(), bar.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = sem
                    .acquire_owned()
                    .await
                    .expect("semaphore is never closed");
                tokio::task::spawn_blocking(move || {
                    let target = fleet.target(&w.host);
                    w.accounts
                        .iter()
                                                .map(|(account, policy)| {
                            let cred = CredentialId::new(w.host.name.clone(), account.clone());
                                                        let parked = store.parked(&cred).ok().flatten();
                            let check = match store.current(&cred) {
                                _ if busy.contains_key(&cred) => Check {
                                    detail: busy[&cred].clone(),
                                    cred,
                                    result: "busy".into(),
                                },
                                _ if parked.is_some() => Check {
                                    cred,
                                    result: "parked".into(),
                                    detail: format!(
                                        "{}; no login tried (`rotor recover --cred HOST/ACCOUNT` unparks it)",
                                        parked.unwrap_or_default()
                                    ),
                                },
                                Err(e) => Check {
                                    cred,
                                    result: "error".into(),
                                    detail: e.to_string(),
                                },
                                Ok(None) => Check {
                                    cred,
                                    result: "no_secret".into(),
                                    detail:
                                        "the vault holds no current secret; rotate or enroll it"
                                            .into(),
                                },
                                Ok(Some(secret)) => {
                                    match counted(&*store, &cred, policy, check_password_login(&target, account, &secret)) {
                                        Ok(()) => Check {
                                            cred,
                                            result: "works".into(),
                                            detail: String::new(),
                                        },
                                        Err(e) => Check {
                                            cred,
                                            result: serde_json::to_value(e.class)
                                                .ok()
                                                .and_then(|v| v.as_str().map(str::to_owned))
                                                .unwrap_or_else(|| "error".into()),
                                            detail: e.message,
                                        },
                                    }
                                }
                            };
                            bar.inc(1);
                            check
                        })
                        .collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default()
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
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
    let n_ok = checks.iter().filter(|c| c.result == "works").count();
    match out.format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "schema_version": SCHEMA_VERSION,
                "command": "verify",
                "total": n,
                "works": n_ok,
                "results": checks,
            }))?
        ),
        OutputFormat::Text => {
            println!("{n_ok} of {n} credentials work with the vault's current secret.");
            let bad: Vec<[String; 3]> = checks
                .iter()
                .filter(|c| c.result != "works")
                .map(|c| [c.cred.to_string(), c.result.clone(), c.detail.clone()])
                .collect();
            if !bad.is_empty() {
                println!();
                print!("{}", table(&["CREDENTIAL", "RESULT", "DETAIL"], &bad));
            }
        }
    }
    Ok(if n_ok == n { 0 } else { 3 })
}
