//! `rotor rotate --retry-failed [--run N]` on real hosts: a run in which one host is down,
//! the host back, and a retry that rotates only that host's credentials (the others keep
//! their vault versions), then nothing left; `--run N` picks an earlier run; an unknown run
//! and `--scope` beside `--retry-failed` are refused.

use crate::lab::{Fault, Lab};
use crate::support::{Rotor, creds, json, result_of};

const DOWN: &str = "host-002";

/// Every lab credential's current secret, by name.
fn secrets(lab: &Lab, rotor: &Rotor) -> Vec<(String, Option<String>)> {
    creds(lab)
        .into_iter()
        .map(|(h, a)| {
            let cred = format!("{h}/{a}");
            let secret = rotor.show(&cred);
            (cred, secret)
        })
        .collect()
}

fn run_of(out: &std::process::Output) -> i64 {
    json(out)["run"].as_i64().expect("the report names its run")
}

#[test]
fn a_retry_rotates_only_what_the_run_did_not_commit() {
    let lab = Lab::start(3);
    let rotor = Rotor::init();
    let inv = lab.inventory_path();
    let inv = inv.to_str().unwrap();
    let rotate = |extra: &[&str]| {
        let mut args = vec!["rotate", "-i", inv, "--output", "json"];
        args.extend(extra);
        rotor.run(&args)
    };

    // Run A: host-002 is down, its credentials are not changed.
    lab.fault(DOWN, Fault::Kill);
    let a = rotate(&["--all"]);
    assert_eq!(a.status.code(), Some(3), "{a:?}");
    let run_a = run_of(&a);
    assert_eq!(
        result_of(&json(&a), "host-002/svc_app")["result"],
        "not_changed"
    );
    // Run B: only host-001, all committed. The last run now has nothing to retry.
    let b = rotate(&["--scope", "host:host-001"]);
    assert_eq!(b.status.code(), Some(0), "{b:?}");
    let run_b = run_of(&b);
    lab.fault(DOWN, Fault::Start);
    let before = secrets(&lab, &rotor);

    let nothing = rotate(&["--retry-failed"]);
    assert_eq!(nothing.status.code(), Some(0), "{nothing:?}");
    let doc = json(&nothing);
    assert_eq!(doc["nothing_to_retry"], true, "{doc:#}");
    assert_eq!(doc["retry_of_run"], run_b);
    assert_eq!(secrets(&lab, &rotor), before, "nothing rotated");

    // `--run A`: host-002's credentials, and only those.
    let retry = rotate(&["--retry-failed", "--run", &run_a.to_string()]);
    assert_eq!(retry.status.code(), Some(0), "{retry:?}");
    let report = json(&retry);
    let rotated: Vec<String> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r["cred"].as_str().unwrap(), r["result"]))
        .collect();
    assert_eq!(
        rotated,
        [
            "host-002/svc_app \"committed\"",
            "host-002/svc_backup \"committed\""
        ]
    );
    assert!(
        String::from_utf8_lossy(&retry.stderr).contains(&format!("Retrying run {run_a} (all)")),
        "{retry:?}"
    );
    let after = secrets(&lab, &rotor);
    for ((cred, old), (_, new)) in before.iter().zip(&after) {
        if cred.starts_with(DOWN) {
            assert!(old.is_none() && new.is_some(), "{cred} rotated now");
            assert!(
                lab.login_works(DOWN, cred.split('/').nth(1).unwrap(), new.as_ref().unwrap()),
                "{cred}: the retry's secret logs in"
            );
        } else {
            assert_eq!(old, new, "{cred} keeps its vault version");
        }
    }
    let run_c = run_of(&retry);
    // The status names the retry run, the last one a rotate made.
    let status = json(&rotor.run(&["status", "-o", "json"]));
    assert_eq!(status["last_run"]["id"], run_c, "{status:#}");
    assert_eq!(status["last_run"]["scope"], format!("retry of run {run_a}"));
    assert_eq!(status["last_run"]["not_committed"], serde_json::json!([]));

    // Again: the retry run left nothing, and run A has nothing left either (rotated since).
    let again = rotor.run(&["rotate", "-i", inv, "--retry-failed"]);
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(
        text.contains(&format!(
            "Nothing to retry: every credential of run {run_c}"
        )),
        "{text}"
    );
    let a_again = rotor.run(&[
        "rotate",
        "-i",
        inv,
        "--retry-failed",
        "--run",
        &run_a.to_string(),
    ]);
    assert_eq!(a_again.status.code(), Some(0), "{a_again:?}");
    let text = String::from_utf8_lossy(&a_again.stdout);
    assert!(
        text.contains("Not retried, rotated since: host-002/svc_app, host-002/svc_backup"),
        "{text}"
    );
    assert_eq!(secrets(&lab, &rotor), after, "nothing rotated again");

    // An unknown run names the runs there are; --scope beside --retry-failed is refused.
    let unknown = rotor.run(&["rotate", "-i", inv, "--retry-failed", "--run", "999"]);
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        err.contains(&format!(
            "run 999 is not in the vault; the latest runs are {run_c} ("
        )),
        "{err}"
    );
    let both = rotor.run(&["rotate", "-i", inv, "--retry-failed", "--all"]);
    assert_eq!(both.status.code(), Some(2), "{both:?}");
    assert!(
        String::from_utf8_lossy(&both.stderr).contains("drop --scope/--all"),
        "{both:?}"
    );
}
