//! The daemon (issue 11) against the real lab. The scheduling cases run the daemon's pass
//! (`ops::scheduled::pass`, what `rotor serve` calls every tick) in this process with a
//! test clock over the vault `rotor init` made, so days pass in milliseconds; the signal
//! and leader cases run the real `rotor serve` binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rotor::clock::TestClock;
use rotor::credential::CredentialId;
use rotor::engine::Outcome;
use rotor::inventory::Inventory;
use rotor::ops::scheduled::{self, Pass, Scheduler};
use rotor::ops::{self, Actor};
use rotor::scheduler::Settings;
use rotor::store::{KeySource, Vault};

use crate::lab::Lab;
use crate::support::{Rotor, json, poll};

const DEFAULT_POLICY: &str = "  default: { length: 24, classes: [lower, upper, digit, symbol] }";

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

/// The lab's inventory with the default policy replaced by `policies` (YAML lines), and
/// host-002's accounts (if any) under the policy `host2_policy`.
fn inventory_with(lab: &Lab, name: &str, policies: &str, host2_policy: Option<&str>) -> PathBuf {
    let text = std::fs::read_to_string(lab.inventory_path()).unwrap();
    assert!(
        text.contains(DEFAULT_POLICY),
        "the lab's policy line changed"
    );
    let text = text.replace(DEFAULT_POLICY, policies);
    let text = match (host2_policy, text.split_once("  - name: host-002")) {
        (Some(policy), Some((head, rest))) => format!(
            "{head}  - name: host-002{}",
            rest.replace(
                "playbook: linux-password }",
                &format!("playbook: linux-password, policy: {policy} }}")
            )
        ),
        _ => text,
    };
    let path = lab.dir().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The vault of `rotor` opened in this process with a clock the test moves.
struct InProcess {
    ctx: ops::Context,
    clock: Arc<TestClock>,
    vault: Arc<Vault>,
    inventory: Inventory,
    _runtime: tokio::runtime::Runtime,
}

impl InProcess {
    fn open(rotor: &Rotor, inventory: &Path, start: &str) -> InProcess {
        let dir = rotor.vault_dir();
        let clock = Arc::new(TestClock::at(utc(start)));
        let vault = Arc::new(
            Vault::open(&dir, KeySource::default_file(&dir))
                .unwrap()
                .with_clock(clock.clone()),
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let ctx = ops::Context::for_vault(vault.clone(), clock.clone(), runtime.handle().clone());
        InProcess {
            ctx,
            clock,
            vault,
            inventory: rotor::inventory::load(inventory).unwrap(),
            _runtime: runtime,
        }
    }

    /// A scheduler as `rotor serve` makes one at start: now, with no catch-up spread.
    fn scheduler(&self) -> Scheduler {
        Scheduler::new(
            Settings {
                started_at: rotor::clock::Clock::now(&*self.clock),
                catch_up_spread: Duration::ZERO,
            },
            "UTC".parse().unwrap(),
        )
    }

    fn pass(&self, sched: &mut Scheduler) -> Pass {
        scheduled::pass(
            &self.ctx,
            sched,
            &self.inventory,
            &Actor::named("test scheduler"),
            std::future::pending,
        )
        .unwrap()
    }

    fn set(&self, now: &str) {
        self.clock.set(utc(now));
    }
}

/// The credentials a pass rotated, each checked committed.
fn committed(pass: &Pass) -> Vec<String> {
    let Some(run) = &pass.run else {
        return Vec::new();
    };
    let mut creds: Vec<String> = run
        .results
        .iter()
        .map(|r| {
            assert!(
                matches!(r.outcome, Outcome::Committed),
                "{}: {:?}",
                r.cred,
                r.outcome
            );
            r.cred.to_string()
        })
        .collect();
    creds.sort();
    creds
}

fn creds(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

const HOST1: [&str; 2] = ["host-001/svc_app", "host-001/svc_backup"];
const HOST2: [&str; 2] = ["host-002/svc_app", "host-002/svc_backup"];
const ALL: [&str; 4] = [HOST1[0], HOST1[1], HOST2[0], HOST2[1]];

#[test]
fn a_schedule_rotates_what_is_due_and_only_that_and_missed_ticks_run_once() {
    let lab = Lab::start(2);
    let rotor = Rotor::init();
    // host-001 daily at 03:00 Tokyo, host-002 Mondays at 03:00 Tokyo.
    let inv = inventory_with(
        &lab,
        "scheduled.yaml",
        "  default: { length: 24, classes: [lower, upper, digit, symbol], schedule: \"0 3 * * *\", timezone: Asia/Tokyo }\n  weekly: { length: 24, classes: [lower, upper, digit, symbol], schedule: \"0 3 * * 1\", timezone: Asia/Tokyo }",
        Some("weekly"),
    );
    // Tuesday 2026-12-01 02:00 in Tokyo.
    let p = InProcess::open(&rotor, &inv, "2026-11-30T17:00:00Z");
    let mut sched = p.scheduler();
    // Never rotated: every credential runs at once (spread over nothing here).
    let first = p.pass(&mut sched);
    assert_eq!(committed(&first), creds(&ALL));
    let again = p.pass(&mut sched);
    assert!(again.due.is_empty(), "{:?}", again.due);
    // Monday 2026-12-07 03:00 Tokyo is 2026-12-06 18:00 UTC: the weekly credentials'
    // remembered next run is a Monday; the daily ones run next at 03:00 Tokyo, crossing
    // the day (and, in UTC, the month) boundary.
    let rows = p.vault.schedule_rows().unwrap();
    let due = |c: &str| rows[&CredentialId::parse(c).unwrap()].due_at.unwrap();
    assert_eq!(due(HOST2[0]), utc("2026-12-06T18:00:00Z"));
    assert_eq!(
        due(HOST2[0])
            .with_timezone(&chrono_tz::Asia::Tokyo)
            .format("%a %H:%M")
            .to_string(),
        "Mon 03:00"
    );
    assert_eq!(due(HOST1[0]), utc("2026-11-30T18:00:00Z"));

    // 03:00 Tokyo: the daily ones, and only they.
    p.set("2026-11-30T18:00:00Z");
    let daily = p.pass(&mut sched);
    assert_eq!(committed(&daily), creds(&HOST1));
    assert_eq!(
        daily.next_due,
        Some(utc("2026-12-06T18:00:00Z")),
        "of those that waited"
    );
    // Counted from that rotation: 03:00 Tokyo the next day.
    assert_eq!(
        p.pass(&mut sched).next_due,
        Some(utc("2026-12-01T18:00:00Z"))
    );

    // The daemon stops for five days (Wednesday to Monday) and starts again on Monday
    // 2026-12-07 12:00 Tokyo: each missed schedule runs once, not once per missed tick.
    drop(sched);
    p.set("2026-12-07T03:00:00Z");
    let mut restarted = p.scheduler();
    let catch_up = p.pass(&mut restarted);
    assert_eq!(
        committed(&catch_up),
        creds(&ALL),
        "five daily ticks and one weekly: one run each"
    );
    let after = p.pass(&mut restarted);
    assert!(after.due.is_empty(), "{:?}", after.due);
    // Each credential of host-001 rotated three times in all (first, 03:00, catch-up).
    let log = rotor.run(&["audit", "log", "--cred", HOST1[0], "--output", "json"]);
    let commits = String::from_utf8_lossy(&log.stdout)
        .lines()
        .filter(|l| l.contains("\"event\":\"commit\""))
        .count();
    assert_eq!(commits, 3, "{}", String::from_utf8_lossy(&log.stdout));
}

#[test]
fn a_maintenance_window_defers_a_due_rotation_until_it_opens() {
    let lab = Lab::start(1);
    let rotor = Rotor::init();
    let inv = inventory_with(
        &lab,
        "window.yaml",
        "  default: { length: 24, classes: [lower, upper, digit, symbol], schedule: \"0 3 * * *\", timezone: Asia/Tokyo, window: { days: [mon-fri], hours: \"01:00-05:00\" } }",
        None,
    );
    // Saturday 2026-12-05 12:00 Tokyo: due (never rotated), but the window is closed.
    let p = InProcess::open(&rotor, &inv, "2026-12-05T03:00:00Z");
    let mut sched = p.scheduler();
    let saturday = p.pass(&mut sched);
    assert!(
        saturday.run.is_none() && saturday.due.is_empty(),
        "{:?}",
        saturday.due
    );
    // Monday 01:00 Tokyo.
    assert_eq!(saturday.next_due, Some(utc("2026-12-06T16:00:00Z")));
    p.set("2026-12-06T15:59:00Z");
    assert!(p.pass(&mut sched).due.is_empty());
    p.set("2026-12-06T16:00:00Z");
    assert_eq!(committed(&p.pass(&mut sched)), creds(&HOST1));
}

#[test]
fn a_checkout_that_expires_while_the_daemon_runs_is_rotated_in_the_next_pass() {
    let lab = Lab::start(1);
    let rotor = Rotor::init();
    let inv = inventory_with(
        &lab,
        "checkout.yaml",
        "  default: { length: 24, classes: [lower, upper, digit, symbol], checkout: { approval: none, default_ttl: 1h } }",
        None,
    );
    let p = InProcess::open(&rotor, &inv, "2026-12-01T00:00:00Z");
    let mut sched = p.scheduler();
    // Nothing is scheduled: the pass has only checkouts to look after.
    assert!(p.pass(&mut sched).run.is_none());
    let out = rotor.rotate_all(inv.to_str().unwrap());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let cred = CredentialId::parse(HOST1[0]).unwrap();
    let granted = ops::checkout::checkout(
        &p.ctx,
        ops::checkout::CheckoutRequest {
            inventory: &p.inventory,
            inventory_path: &inv,
            cred: cred.clone(),
            ticket: "VENDOR-7".into(),
            reason: "disk replacement".into(),
            ttl: None,
            for_name: None,
            actor: Actor::named("vendor-eng"),
        },
    )
    .unwrap();
    let ops::checkout::Requested::Granted(record, secret) = granted else {
        panic!("approval none grants at once");
    };
    assert!(lab.login_works("host-001", "svc_app", secret.expose()));
    p.set("2026-12-01T00:59:00Z");
    assert!(p.pass(&mut sched).checkouts.is_empty());
    // One minute past its end: the next pass ends it with a rotation.
    p.set("2026-12-01T01:01:00Z");
    let pass = p.pass(&mut sched);
    assert_eq!(pass.checkouts.len(), 1);
    assert_eq!(pass.checkouts[0].checkout.id, record.id);
    assert_eq!(pass.checkouts[0].failure, None);
    assert_eq!(pass.checkouts[0].checkout.state.as_str(), "closed");
    assert!(!lab.login_works("host-001", "svc_app", secret.expose()));
}

/// A `rotor serve` child with its log in a file.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(rotor: &Rotor, inv: &Path, env: &[(&str, &str)]) -> Daemon {
        let log = rotor
            .data
            .path()
            .join(format!("serve-{}.log", std::process::id()));
        let log = unique(log);
        let mut cmd = rotor.cmd(&[
            "serve",
            "-i",
            inv.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--tick",
            "1s",
            "--catch-up-spread",
            "0s",
            "--concurrency",
            "1",
        ]);
        cmd.env("ROTOR_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let d = Daemon { child, log };
        poll("rotor serve to start", Duration::from_secs(20), || {
            d.log_text().contains("rotor serve started")
        });
        d
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal}");
    }

    /// SIGTERM, then the exit code (within `limit`).
    fn stop(mut self, limit: Duration) -> i32 {
        self.signal("TERM");
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "rotor serve did not stop:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn unique(path: PathBuf) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    path.with_extension(format!("{n}.log"))
}

/// The credentials `rotor status` lists with a current secret.
fn current(rotor: &Rotor) -> Vec<String> {
    let out = rotor.run(&["status", "--output", "json"]);
    let doc = json(&out);
    let mut names: Vec<String> = doc["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["has_current"] == true)
        .map(|c| c["cred"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// Writes `text` to `path` in one rename, as an editor or config management would.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn sighup_keeps_the_old_inventory_when_the_new_one_is_broken_and_takes_a_good_one() {
    let lab = Lab::start(2);
    let rotor = Rotor::init();
    let full = std::fs::read_to_string(lab.inventory_path()).unwrap();
    let (one_host, _) = full.split_once("  - name: host-002").unwrap();
    let inv = lab.dir().join("served.yaml");
    replace_file(&inv, one_host);
    let daemon = Daemon::start(&rotor, &inv, &[]);
    // The default policy has no schedule: nothing rotates until a policy says when. Give
    // the one host a schedule; never rotated, so it runs at once.
    let scheduled = |text: &str| {
        text.replace(
            DEFAULT_POLICY,
            "  default: { length: 24, classes: [lower, upper, digit, symbol], schedule: \"@daily\" }",
        )
    };
    replace_file(&inv, &scheduled(one_host));
    daemon.signal("HUP");
    poll("host-001 rotated", Duration::from_secs(30), || {
        current(&rotor) == creds(&HOST1)
    });

    replace_file(&inv, "version: 1\nhosts: [\n");
    daemon.signal("HUP");
    poll(
        "the broken inventory refused",
        Duration::from_secs(10),
        || {
            daemon
                .log_text()
                .contains("SIGHUP: the new inventory is refused")
        },
    );
    let log = daemon.log_text();
    assert!(
        log.contains("served.yaml"),
        "the error names the file: {log}"
    );

    replace_file(&inv, &scheduled(&full));
    daemon.signal("HUP");
    poll("host-002 rotated", Duration::from_secs(30), || {
        current(&rotor) == creds(&ALL)
    });
    assert_eq!(daemon.stop(Duration::from_secs(30)), 0);
}

#[test]
fn sigterm_mid_run_lets_the_rotation_in_flight_finish_and_leaves_nothing_open() {
    let lab = Lab::start(2);
    let rotor = Rotor::init();
    let text = std::fs::read_to_string(lab.inventory_path())
        .unwrap()
        .replace(
            DEFAULT_POLICY,
            "  default: { length: 24, classes: [lower, upper, digit, symbol], schedule: \"@daily\" }",
        );
    let inv = lab.dir().join("served.yaml");
    replace_file(&inv, &text);
    let hold = rotor.data.path().join("hold");
    std::fs::create_dir(&hold).unwrap();
    let daemon = Daemon::start(
        &rotor,
        &inv,
        &[
            ("ROTOR_LAB_HOLD_AT", "applied"),
            ("ROTOR_LAB_HOLD_DIR", hold.to_str().unwrap()),
        ],
    );
    poll(
        "the first rotation held at applied",
        Duration::from_secs(30),
        || hold.join("applied.waiting").exists(),
    );
    daemon.signal("TERM");
    // The signal is in; the rotation in flight goes on once released.
    poll("the stop logged", Duration::from_secs(10), || {
        daemon.log_text().contains("no new work starts")
    });
    std::fs::write(hold.join("applied"), b"").unwrap();
    let log = daemon.log.clone();
    assert_eq!(
        daemon.stop(Duration::from_secs(60)),
        0,
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    // The held rotation committed; nothing else started; nothing is left open.
    assert_eq!(current(&rotor), creds(&HOST1[..1]));
    let status = json(&rotor.run(&["status", "--output", "json"]));
    assert!(
        status["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["open_rotation"] == false),
        "{status:#}"
    );
    let recover = rotor.run(&["recover", "-i", inv.to_str().unwrap(), "--output", "json"]);
    assert_eq!(recover.status.code(), Some(0), "{recover:?}");
    let report = json(&recover);
    assert_eq!(
        report["results"].as_array().map_or(0, Vec::len),
        0,
        "recovery had nothing to do: {report:#}"
    );
}

#[test]
fn a_second_daemon_on_the_same_vault_refuses_to_start_and_names_the_first() {
    let lab = Lab::start(1);
    let rotor = Rotor::init();
    let first = Daemon::start(&rotor, &lab.inventory_path(), &[]);
    let second = rotor
        .cmd(&[
            "serve",
            "-i",
            lab.inventory_path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1), "{second:?}");
    let said = String::from_utf8_lossy(&second.stderr);
    let pid = first.child.id().to_string();
    assert!(
        said.contains("another rotor serve holds this vault")
            && said.contains(&format!("pid {pid}")),
        "{said}"
    );
    assert_eq!(first.stop(Duration::from_secs(30)), 0);
    // Given back at a clean stop: the next daemon starts at once.
    let next = Daemon::start(&rotor, &lab.inventory_path(), &[]);
    assert_eq!(next.stop(Duration::from_secs(30)), 0);
}

#[test]
fn a_scheduled_rotation_that_fails_is_retried_after_a_backoff_not_every_tick() {
    let lab = Lab::start(1);
    let rotor = Rotor::init();
    let inv = inventory_with(
        &lab,
        "failing.yaml",
        "  default: { length: 24, classes: [lower, upper, digit, symbol], schedule: \"@daily\" }",
        None,
    );
    let p = InProcess::open(&rotor, &inv, "2026-12-01T00:00:00Z");
    let mut sched = p.scheduler();
    // The host refuses the change: the rotation is rolled back, and due again in 5 minutes.
    lab.fault("host-001", crate::lab::Fault::ChpasswdFails);
    let failed = p.pass(&mut sched);
    assert_eq!(failed.due.len(), 2);
    let rows = p.vault.schedule_rows().unwrap();
    let row = &rows[&CredentialId::parse(HOST1[0]).unwrap()];
    assert_eq!(row.failures, 1);
    assert_eq!(row.due_at, Some(utc("2026-12-01T00:05:00Z")));
    // The next ticks before then start nothing.
    p.set("2026-12-01T00:04:59Z");
    assert!(p.pass(&mut sched).due.is_empty());
    // The host is mended; at the retry it rotates.
    lab.fault("host-001", crate::lab::Fault::Kill);
    lab.fault("host-001", crate::lab::Fault::Start);
    p.set("2026-12-01T00:05:00Z");
    assert_eq!(committed(&p.pass(&mut sched)), creds(&HOST1));
}
