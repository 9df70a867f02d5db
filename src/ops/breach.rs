//! The breach survey of a run (`rotor rotate --breach`, issue 13): after the rotation, every
//! host of the selection is read once more over its admin session, like `rotor scan` reads it
//! (`Fleet::scan_host`: accounts, keys, who is logged in), hosts at once through the one
//! fan-out, and judged by `crate::breach::survey`: accounts the inventory does not know that
//! can be logged in to, sessions of the accounts just rotated and of unknown accounts.
//!
//! Invariant: read-only. Nothing is locked, deleted or logged out, no login as an account is
//! tried, and the vault is not touched; the survey says what an operator should do.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::task::JoinError;

use super::Context;
use crate::breach::{HostSurvey, survey};
use crate::credential::AccountName;
use crate::engine::Outcome;
use crate::engine::blast::SkipReason;
use crate::engine::driver::{CredentialResult, Fleet};
use crate::engine::fanout;
use crate::inventory::Host;

/// Surveys each host (with the accounts rotated there), at most `concurrency` at once, each
/// step within `step_timeout`. Once `stop` is set no further host is read: those left are
/// surveys that say so. One survey per host, in the order given; blocks (run on
/// `ctx.runtime`).
pub fn survey_hosts(
    ctx: &Context,
    hosts: Vec<(Host, Vec<AccountName>)>,
    concurrency: usize,
    step_timeout: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<HostSurvey> {
    let _span = tracing::info_span!("breach_survey", n_hosts = hosts.len()).entered();
    let work = Arc::new(SurveyHosts {
        fleet: ctx.targets.hosts(step_timeout),
    });
    let limits = fanout::Limits {
        stop,
        ..fanout::Limits::new(concurrency)
    };
    ctx.runtime.block_on(fanout::run(work, hosts, &limits))
}

/// What to survey after a run: every host of `selected` (the run's selection), with the
/// accounts whose new secret is in place there (`committed`, or `kept_new`), each once.
pub fn rotated_on_hosts(
    selected: &[Host],
    results: &[CredentialResult],
) -> Vec<(Host, Vec<AccountName>)> {
    selected
        .iter()
        .map(|h| {
            let mut rotated: Vec<AccountName> = results
                .iter()
                .filter(|r| r.cred.host == h.name)
                .filter(|r| matches!(r.outcome, Outcome::Committed | Outcome::KeptNew { .. }))
                .map(|r| r.cred.account.clone())
                .collect();
            rotated.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            rotated.dedup();
            (h.clone(), rotated)
        })
        .collect()
}

/// Hosts as fan-out work: one read per host, no breaker (a survey reads everything it can).
struct SurveyHosts {
    fleet: Arc<dyn Fleet>,
}

impl fanout::Work for SurveyHosts {
    type Item = (Host, Vec<AccountName>);
    type Output = HostSurvey;
    type Receipt = String;

    fn name(&self, (host, _): &Self::Item) -> String {
        host.name.to_string()
    }
    fn receipt(&self, (host, _): &Self::Item) -> String {
        host.name.to_string()
    }
    fn run(&self, (host, rotated): Self::Item) -> HostSurvey {
        let _span = tracing::info_span!("survey_host", host = %host.name).entered();
        // The read holds the host's hashes (as `Secret`s); only the survey leaves here.
        match self.fleet.scan_host(&host) {
            Ok(scanned) => survey(&host, &scanned, &rotated),
            Err(e) => {
                tracing::warn!(host = %host.name, class = %e.class, "host not surveyed");
                HostSurvey::unread(host.name.as_str(), e.message)
            }
        }
    }
    fn skip(&self, (host, _): Self::Item, _: SkipReason, _: &str) -> HostSurvey {
        HostSurvey::unread(
            host.name.as_str(),
            "the run was stopped before this host was surveyed".to_owned(),
        )
    }
    fn panicked(&self, host: String, panic: &JoinError) -> HostSurvey {
        HostSurvey::unread(&host, fanout::panic_text(panic))
    }
    fn failed(&self, _: &HostSurvey) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::{ConnectorError, FaultClass};
    use crate::engine::testkit::{FakeFleet, MemStore};
    use crate::inventory::Scope;
    use crate::ops::Targets;
    use crate::ops::testkit::{context, inventory, runtime};
    use crate::secret::Secret;
    use crate::target::{AccountFacts, ScannedHost, Session};

    /// Hosts whose scan is scripted by name: `a` holds a planted account and a session of
    /// svc_app, `b` is down, `c` panics while read.
    struct Scripted;

    impl Fleet for Scripted {
        fn open(
            &self,
            host: &Host,
        ) -> Result<Box<dyn crate::target::Target + Send>, ConnectorError> {
            Err(ConnectorError::new(
                FaultClass::Refused,
                format!("{}: a survey opens no target", host.name),
            ))
        }
        fn scan_host(&self, host: &Host) -> Result<ScannedHost, ConnectorError> {
            match host.name.as_str() {
                "a" => Ok(ScannedHost {
                    accounts: vec![AccountFacts {
                        name: "planted".into(),
                        uid: Some(1002),
                        home: "/home/planted".into(),
                        shell: "/bin/bash".into(),
                        password_hash: Some(Secret::new("$y$j9T$salt$planted-hash".into())),
                        empty_password: false,
                        last_change_day: None,
                    }],
                    sessions: vec![Session {
                        account: "svc_app".into(),
                        line: "pts/1".into(),
                        from: "127.0.0.1".into(),
                        since: "Dec 2 07:03".into(),
                    }],
                    ..Default::default()
                }),
                "b" => Err(ConnectorError::new(
                    FaultClass::Unreachable,
                    "b: unreachable",
                )),
                _ => panic!("a hostile host broke the reader"),
            }
        }
    }

    /// The test context's targets, with [`Scripted`] hosts.
    struct ScriptedTargets(Arc<dyn Targets>);

    impl Targets for ScriptedTargets {
        fn hosts(&self, _: Duration) -> Arc<dyn Fleet> {
            Arc::new(Scripted)
        }
        fn directories(&self, t: Duration) -> Arc<dyn crate::engine::directory::Directories> {
            self.0.directories(t)
        }
        fn check_login(
            &self,
            host: &Host,
            t: Duration,
            account: &AccountName,
            kind: crate::target::CredentialKind,
            secret: &Secret,
        ) -> Result<(), ConnectorError> {
            self.0.check_login(host, t, account, kind, secret)
        }
    }

    fn check(stopped: bool, expect: &[&str]) {
        let rt = runtime();
        let fleet: &'static FakeFleet = Box::leak(Box::default());
        let store = Arc::new(MemStore::default());
        let base = context(fleet, &store, &rt);
        let ctx = Context {
            targets: Arc::new(ScriptedTargets(base.targets.clone())),
            ..base
        };
        let inv = inventory(&["a", "b", "c"]);
        let hosts = inv.select(&[Scope::All]).unwrap().hosts;
        let app = AccountName::parse("svc_app").unwrap();
        let work = hosts.into_iter().map(|h| (h, vec![app.clone()])).collect();
        let stop = Arc::new(AtomicBool::new(stopped));
        let surveys = survey_hosts(&ctx, work, 2, Duration::from_secs(1), stop);
        let got: Vec<String> = surveys
            .iter()
            .map(|s| {
                let mut line = s.host.clone();
                if let Some(e) = &s.error {
                    line.push_str(&format!(" unread: {}", e.split(':').next().unwrap_or("")));
                }
                for a in &s.unknown_accounts {
                    line.push_str(&format!(" unknown {}", a.name));
                }
                for f in &s.sessions {
                    line.push_str(&format!(" session {}", f.session.account));
                }
                line
            })
            .collect();
        assert_eq!(got, expect);
        let json = serde_json::to_string(&surveys).unwrap();
        assert!(!json.contains("planted-hash"), "{json}");
    }

    #[test]
    fn hosts_are_surveyed_and_an_unread_one_says_why() {
        check(
            false,
            &[
                "a unknown planted session svc_app",
                "b unread: b",
                "c unread: internal error",
            ],
        );
        check(
            true,
            &[
                "a unread: the run was stopped before this host was surveyed",
                "b unread: the run was stopped before this host was surveyed",
                "c unread: the run was stopped before this host was surveyed",
            ],
        );
    }

    #[test]
    fn what_to_survey_is_each_host_with_its_new_secrets() {
        use crate::credential::CredentialId;
        use crate::engine::machine::Fault;
        let inv = inventory(&["a", "b"]);
        let hosts = inv.select(&[Scope::All]).unwrap().hosts;
        let result = |cred: &str, outcome| CredentialResult {
            cred: CredentialId::parse(cred).unwrap(),
            outcome,
            rotation: None,
            elapsed_ms: 1,
            notes: Vec::new(),
        };
        let results = [
            result("a/svc_app", Outcome::Committed),
            result(
                "a/svc_backup",
                Outcome::NotChanged {
                    cause: Fault::target(FaultClass::Refused, "x"),
                },
            ),
            result("a/svc_app:key", Outcome::Committed),
        ];
        let got: Vec<String> = rotated_on_hosts(&hosts, &results)
            .iter()
            .map(|(h, r)| {
                let names: Vec<&str> = r.iter().map(AccountName::as_str).collect();
                format!("{} {}", h.name, names.join(","))
            })
            .collect();
        assert_eq!(got, ["a svc_app", "b "]);
    }
}
