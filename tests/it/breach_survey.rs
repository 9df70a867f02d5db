//! The breach survey in the lab. Through `rotor scan`: a planted account with a password is
//! reported as unmanaged, and a pty session held open as a managed account (`svc_app`) is
//! listed under its host only (each lab host has its own utmp), in the JSON and in the text.
//! (`rotor rotate --breach` reports the same after its rotation: `breach.rs`.) Neither the
//! planted password nor its hash is in any output.

use std::time::Duration;

use crate::lab::Lab;
use crate::support::{LeakCheck, Rotor, assert_no_leak, json, poll};

pub const PLANTED_PASSWORD: &str = "Planted-Backdoor-Passw0rd-91";

/// Plants `backdoor` with [`PLANTED_PASSWORD`] on `host`; returns its shadow hash.
pub fn plant(lab: &Lab, host: &str) -> String {
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
pub fn hold_svc_app(lab: &Lab, host: &str) -> crate::lab::HeldSession {
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
