//! SIGTERM during a run: no new host or account starts, the host in flight finishes (here: it
//! hangs and its step deadline fires), the report is still printed, and the exit code says
//! the run was partial.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::lab::{Fault, Lab};
use crate::support::{Rotor, creds, json, result_of};

/// The address of a lab host, from the lab's hosts.tsv (name, address, pid).
fn address(lab: &Lab, host: &str) -> String {
    let tsv = std::fs::read_to_string(lab.dir().join("hosts.tsv")).unwrap();
    tsv.lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .find(|f| f[0] == host)
        .map(|f| f[1].to_owned())
        .unwrap()
}

#[test]
fn sigterm_starts_nothing_new_finishes_what_is_in_flight_and_still_reports() {
    let lab = Lab::start(4);
    let rotor = Rotor::init();
    // host-001 hangs (TCP connects, no banner), so it is surely in flight when SIGTERM comes.
    lab.fault("host-001", Fault::Stop);
    let inv = lab.inventory_path();
    let child = rotor
        .cmd(&[
            "rotate",
            "-i",
            inv.to_str().unwrap(),
            "--all",
            "--concurrency",
            "1",
            "--step-timeout",
            "3",
            "--output",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until rotor's connection to host-001 is established, then interrupt.
    let dst = format!("dst {}:22", address(&lab, "host-001"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ss = Command::new("ss")
            .args(["-Htn", "state", "established", &dst])
            .output()
            .unwrap();
        if !ss.stdout.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rotor never connected to host-001"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    lab.fault("host-001", Fault::Cont);

    let report = json(&out);
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    for account in ["svc_app", "svc_backup"] {
        let r = result_of(&report, &format!("host-001/{account}"));
        assert_eq!(r["result"], "not_changed", "{r:#}");
        assert_eq!(r["cause"]["class"], "timed_out", "{r:#}");
    }
    for (host, account) in creds(&lab).into_iter().filter(|(h, _)| h != "host-001") {
        let r = result_of(&report, &format!("{host}/{account}"));
        assert_eq!(r["result"], "skipped", "{r:#}");
        assert_eq!(r["reason"], "interrupted", "{r:#}");
        assert!(
            lab.login_works(&host, &account, lab.shared_password()),
            "{host}/{account} untouched"
        );
    }
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stopping: no new host or account starts")
    );
}
