//! The breach survey in the lab. Through `rotor scan`: a planted account with a password is
//! reported as unmanaged, and a pty session held open as a managed account (`svc_app`) is
//! listed under its host only (each lab host has its own utmp), in the JSON and in the text.
//! Through `ops::breach::survey_hosts` after `rotor rotate` (until `rotate --breach` calls
//! it): the planted account and the session opened before the rotation, which stayed open,
//! are reported with what to do. Neither the planted password nor its hash is in any output.

use std::time::Duration;

use crate::lab::Lab;
use crate::support::{LeakCheck, Rotor, assert_no_leak, json, poll};

const PLANTED_PASSWORD: &str = "Planted-Backdoor-Passw0rd-91";

/// Plants `backdoor` with [`PLANTED_PASSWORD`] on `host`; returns its shadow hash.
fn plant(lab: &Lab, host: &str) -> String {
    // The planted account's password reaches chpasswd on stdin, through a file only root
    // reads, never in an argument list.
    let file = lab.dir().join("planted-password");
    std::fs::write(&file, format!("backdoor:{PLANTED_PASSWORD}\n")).unwrap();
    let out = lab.exec(
        host,
        &format!(
            "useradd -m -s /bin/bash backdoor && chpasswd < {}",
            file.display()
        ),
    );
    assert!(out.status.success(), "{out:?}");
    let hash = String::from_utf8(lab.exec(host, "getent shadow backdoor").stdout)
        .unwrap()
        .split(':')
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(hash.starts_with('$'), "{hash}");
    hash
}

/// A pty session as svc_app on `host`, returned once the host's utmp shows it.
fn hold_svc_app(lab: &Lab, host: &str) -> crate::lab::HeldSession {
    let mut session = lab.hold_session(host, "svc_app", lab.shared_password());
    poll(
        "svc_app's login in the host's utmp",
        Duration::from_secs(30),
        || {
            assert!(session.running(), "the ssh client exited: the login failed");
            let who = lab.exec(host, "LC_ALL=C who");
            String::from_utf8_lossy(&who.stdout).starts_with("svc_app ")
        },
    );
    session
}

#[test]
fn a_planted_account_and_an_open_session_are_reported() {
    let lab = Lab::start(2);
    let rotor = Rotor::init();
    let planted_hash = plant(&lab, "host-001");
    let leaks = LeakCheck::before(&lab, &["host-001", "host-002"]);
    let session = hold_svc_app(&lab, "host-001");

    let inv = lab.inventory_path();
    let inv = inv.to_str().unwrap();
    let plain = rotor.run(&["scan", "-i", inv, "--output", "json"]);
    assert_eq!(plain.status.code(), Some(3), "{plain:?}");
    let report = json(&plain);
    let by_host: Vec<(String, Vec<String>)> = report["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|h| {
            let who = h["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    assert!(
                        s["line"].as_str().unwrap().starts_with("pts/"),
                        "{report:#}"
                    );
                    assert!(!s["since"].as_str().unwrap().is_empty(), "{report:#}");
                    format!("{} from {}", s["account"].as_str().unwrap(), s["from"])
                })
                .collect();
            (h["host"].as_str().unwrap().to_owned(), who)
        })
        .collect();
    let from = format!("{:?}", "127.0.0.1");
    assert_eq!(
        by_host,
        [
            ("host-001".to_owned(), vec![format!("svc_app from {from}")]),
            ("host-002".to_owned(), vec![]),
        ],
        "{report:#}"
    );
    let unmanaged: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "unmanaged_account")
        .flat_map(|f| f["credentials"].as_array().unwrap())
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(unmanaged, ["host-001/backdoor"], "{report:#}");

    let text = rotor.run(&["scan", "-i", inv]);
    let shown = String::from_utf8_lossy(&text.stdout);
    assert!(
        shown.contains("Logged in now: 1 session: host-001/svc_app (pts/"),
        "{shown}"
    );

    drop(session);
    poll(
        "svc_app's login gone from utmp",
        Duration::from_secs(30),
        || {
            let who = lab.exec("host-001", "LC_ALL=C who");
            !String::from_utf8_lossy(&who.stdout).contains("svc_app")
        },
    );

    let secrets = [
        (
            "the planted password".to_owned(),
            PLANTED_PASSWORD.to_owned(),
        ),
        ("the planted hash".to_owned(), planted_hash),
    ];
    assert_no_leak(&secrets, &rotor, &[&plain, &text]);
    leaks.assert_clean(&lab, &rotor, &[&plain, &text]);
}

#[test]
fn the_survey_after_a_rotation_reports_the_backdoor_and_the_session_left_open() {
    use rotor::credential::AccountName;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    let lab = Lab::start(2);
    let rotor = Rotor::init();
    let planted_hash = plant(&lab, "host-001");
    let leaks = LeakCheck::before(&lab, &["host-001", "host-002"]);
    let _session = hold_svc_app(&lab, "host-001");
    let inv_path = lab.inventory_path();
    let inv_path = inv_path.to_str().unwrap();
    let rotated = rotor.run(&[
        "rotate",
        "-i",
        inv_path,
        "--scope",
        "account:svc_app",
        "--output",
        "json",
    ]);
    assert!(rotated.status.success(), "{rotated:?}");
    assert!(
        String::from_utf8_lossy(&lab.exec("host-001", "LC_ALL=C who").stdout).contains("svc_app"),
        "the session opened before the rotation is still open"
    );

    // In process, as `ops::rotate` will call it: the vault rotor just used, the real hosts.
    let vault_dir = rotor.vault_dir();
    let vault = Arc::new(
        rotor::store::Vault::open(
            &vault_dir,
            rotor::store::KeySource::default_file(&vault_dir),
        )
        .unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let ctx = rotor::ops::Context::for_vault(
        vault,
        Arc::new(rotor::clock::SystemClock),
        runtime.handle().clone(),
    );
    let inv = rotor::inventory::load(std::path::Path::new(inv_path)).unwrap();
    let app = AccountName::parse("svc_app").unwrap();
    let hosts = inv
        .hosts
        .iter()
        .map(|h| (h.clone(), vec![app.clone()]))
        .collect();
    let surveys = rotor::ops::breach::survey_hosts(
        &ctx,
        hosts,
        4,
        Duration::from_secs(20),
        Arc::new(AtomicBool::new(false)),
    );
    let got: Vec<String> = surveys
        .iter()
        .map(|s| {
            let mut line = s.host.clone();
            for a in &s.unknown_accounts {
                line.push_str(&format!(" unknown {} {:?}", a.name, a.password));
            }
            for f in &s.sessions {
                line.push_str(&format!(" session {}", f.session.account));
            }
            line.push_str(&format!(
                " error {} unknown-sessions {}",
                s.error.is_some(),
                s.unknown_account_sessions.len()
            ));
            line
        })
        .collect();
    assert_eq!(
        got,
        [
            "host-001 unknown backdoor Set session svc_app error false unknown-sessions 0",
            "host-002 error false unknown-sessions 0",
        ]
    );
    let advice = &surveys[0].unknown_accounts[0].what_to_do;
    assert!(advice.contains("`usermod -L -e 1 backdoor`"), "{advice}");
    let advice = &surveys[0].sessions[0].what_to_do;
    assert!(advice.contains("`pkill -KILL -u svc_app`"), "{advice}");
    let text = rotor::report::breach_text(&surveys);
    assert!(text.contains("unknown account backdoor (uid "), "{text}");
    assert!(
        text.contains("logged in now: svc_app (rotated in this run) on pts/"),
        "{text}"
    );
    // What the run report would show, searched for the planted and rotated secrets.
    let shown = std::process::Output {
        status: rotated.status,
        stdout: format!("{}\n{text}", serde_json::to_string(&surveys).unwrap()).into_bytes(),
        stderr: Vec::new(),
    };
    let secrets = [
        (
            "the planted password".to_owned(),
            PLANTED_PASSWORD.to_owned(),
        ),
        ("the planted hash".to_owned(), planted_hash),
    ];
    assert_no_leak(&secrets, &rotor, &[&shown, &rotated]);
    leaks.assert_clean(&lab, &rotor, &[&shown, &rotated]);
}
