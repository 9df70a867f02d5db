//! `rotor scan` against the lab: the template's shared passwords are reported as exactly the
//! groups they are, a planted account and a key authorised on three hosts are found, a
//! candidate list finds the shared password on every account without any candidate or hash
//! in the output, and after `rotor rotate --all` no managed credential is shared.

use std::collections::BTreeSet;
use std::process::Output;

use crate::lab::Lab;
use crate::support::{LeakCheck, Rotor, assert_no_leak, json};

/// A public key (no private half anywhere) to authorise for svc_app on every host.
const PLANTED_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl planted@laptop";
const PLANTED_PASSWORD: &str = "Planted-Passw0rd-77";

fn scan(rotor: &Rotor, lab: &Lab, extra: &[&str]) -> Output {
    let inv = lab.inventory_path();
    let mut args = vec!["scan", "-i", inv.to_str().unwrap()];
    args.extend(extra);
    rotor.run(&args)
}

/// The findings of `kind`, each as its sorted credentials.
fn groups(report: &serde_json::Value, kind: &str) -> Vec<Vec<String>> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["kind"] == kind)
        .map(|f| {
            let mut c: Vec<String> = f["credentials"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect();
            c.sort();
            c
        })
        .collect()
}

fn on_hosts(lab: &Lab, account: &str) -> Vec<String> {
    lab.host_names()
        .iter()
        .map(|h| format!("{h}/{account}"))
        .collect()
}

#[test]
fn shared_planted_and_candidate_credentials_are_reported_without_a_secret() {
    let lab = Lab::start(3);
    let rotor = Rotor::init();
    let hosts: Vec<&str> = lab.host_names().iter().map(String::as_str).collect();
    let out = lab.exec(
        hosts[0],
        &format!("useradd -m -s /bin/bash planted && echo 'planted:{PLANTED_PASSWORD}' | chpasswd"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for h in &hosts {
        let out = lab.exec(
            h,
            &format!(
                "install -d -o svc_app -g svc_app -m 700 ~svc_app/.ssh && echo '{PLANTED_KEY}' > ~svc_app/.ssh/authorized_keys && chown svc_app: ~svc_app/.ssh/authorized_keys"
            ),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A link planted where the keys are: reported, never followed.
    let out = lab.exec(hosts[1], "ln -s /etc ~svc_backup/.ssh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every hash the scan reads of the lab's accounts, to look for in its output.
    let leaks = LeakCheck::before(&lab, &hosts);
    let mut planted_hash = String::from_utf8(lab.exec(hosts[0], "getent shadow planted").stdout)
        .unwrap()
        .split(':')
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(planted_hash.starts_with('$'), "{planted_hash}");

    let plain = scan(&rotor, &lab, &["--output", "json"]);
    assert_eq!(
        plain.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    let report = json(&plain);
    let shared = groups(&report, "shared_password");
    assert!(shared.contains(&on_hosts(&lab, "svc_app")), "{shared:?}");
    assert!(shared.contains(&on_hosts(&lab, "svc_backup")), "{shared:?}");
    let app_or_backup: BTreeSet<String> = on_hosts(&lab, "svc_app")
        .into_iter()
        .chain(on_hosts(&lab, "svc_backup"))
        .collect();
    for g in &shared {
        // Exactly: no group mixes the lab's accounts with another one.
        assert!(
            g.iter().all(|c| app_or_backup.contains(c))
                || g.iter().all(|c| !app_or_backup.contains(c)),
            "{g:?}"
        );
    }
    assert!(
        groups(&report, "shared_key").contains(&on_hosts(&lab, "svc_app")),
        "{report:#}"
    );
    let unread: Vec<&str> = report["unreachable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["target"].as_str().unwrap())
        .collect();
    assert_eq!(unread, [format!("{}/svc_backup", hosts[1])], "{report:#}");
    let planted = format!("{}/planted", hosts[0]);
    assert!(
        groups(&report, "unmanaged_account").contains(&vec![planted.clone()]),
        "{report:#}"
    );

    let dir = tempfile::tempdir().unwrap();
    let candidates = dir.path().join("candidates.txt");
    std::fs::write(
        &candidates,
        format!("admin\n{}\nchangeme\n", lab.shared_password()),
    )
    .unwrap();
    let html_path = dir.path().join("scan.html");
    let with = scan(
        &rotor,
        &lab,
        &[
            "--output",
            "json",
            "--candidates",
            candidates.to_str().unwrap(),
            "--report",
            html_path.to_str().unwrap(),
        ],
    );
    assert_eq!(with.status.code(), Some(3));
    // The HTML report, searched for leaks below like every output, and read in Chromium.
    let html = Output {
        status: with.status,
        stdout: std::fs::read(&html_path).unwrap(),
        stderr: Vec::new(),
    };
    let summary = report_in_chromium(&html_path);
    assert!(
        summary.contains("6 accounts on 3 servers share one password"),
        "{summary}"
    );
    let report = json(&with);
    let known = groups(&report, "known_candidate");
    let all: Vec<String> = app_or_backup.iter().cloned().collect();
    assert!(known.contains(&all), "{known:?}");
    assert!(
        groups(&report, "shared_password").contains(&all),
        "different salts, one password: {report:#}"
    );
    let table = scan(
        &rotor,
        &lab,
        &["--candidates", candidates.to_str().unwrap()],
    );
    assert_eq!(table.status.code(), Some(3));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("3 of 3 servers let in the same svc_app SSH key"),
        "{text}"
    );
    assert!(text.contains("what to do:"), "{text}");

    planted_hash.push(' ');
    let mut secrets = vec![
        (
            "the planted password".to_owned(),
            PLANTED_PASSWORD.to_owned(),
        ),
        (
            "the planted hash".to_owned(),
            planted_hash.trim().to_owned(),
        ),
    ];
    secrets.push(("the candidate admin".into(), "changeme".into()));
    assert_no_leak(&secrets, &rotor, &[&plain, &with, &table, &html]);
    leaks.assert_clean(&lab, &rotor, &[&plain, &with, &table, &html]);
}

/// Opens a report `rotor scan --report` wrote in headless Chromium: no console error, a
/// screenshot kept (`target/screenshots/scan-lab.png`); returns the summary's text.
fn report_in_chromium(file: &std::path::Path) -> String {
    use crate::browser::{
        Driver, browser, console_errors, find, full_page_screenshot, screenshots_dir,
    };
    let kept = screenshots_dir().join("scan-lab.html");
    std::fs::copy(file, &kept).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let driver = Driver::start(&tmp.path().join("chromedriver.log"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = browser(&driver, &tmp.path().join("profile")).await;
        let url = url::Url::from_file_path(&kept).unwrap();
        c.goto(url.as_str()).await.unwrap();
        let summary = find(&c, "#summary").await.text().await.unwrap();
        find(&c, "#findings").await;
        full_page_screenshot(&c, "scan-lab.png").await;
        let errors = console_errors(&c).await;
        assert!(errors.is_empty(), "console errors: {errors:#?}");
        c.close().await.unwrap();
        summary
    })
}

#[test]
fn after_rotate_all_no_managed_credential_is_shared() {
    let lab = Lab::start(2);
    let rotor = Rotor::init();
    let inv = lab.inventory_path();
    let out = rotor.rotate_all(inv.to_str().unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = scan(&rotor, &lab, &["--output", "json"]);
    let report = json(&out);
    let managed: BTreeSet<String> = on_hosts(&lab, "svc_app")
        .into_iter()
        .chain(on_hosts(&lab, "svc_backup"))
        .collect();
    for kind in [
        "shared_password",
        "shared_key",
        "known_candidate",
        "unmanaged_account",
    ] {
        for g in groups(&report, kind) {
            assert!(g.iter().all(|c| !managed.contains(c)), "{kind} {g:?}");
        }
    }
    let rows = report["credentials"].as_array().unwrap();
    let seen: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r["managed"] == true)
        .map(|r| r["credential"].as_str().unwrap())
        .collect();
    assert_eq!(seen.len(), 4, "{report:#}");

    // Someone copies the password rotor keeps for host-001/svc_app to an account of their own
    // on host-002: the scan finds it there (compared in memory, never shown).
    let shown = rotor.run(&["show", "host-001/svc_app", "--reason", "scan test"]);
    assert!(shown.status.success(), "{shown:?}");
    let secret = String::from_utf8(shown.stdout)
        .unwrap()
        .trim_end()
        .to_owned();
    let out = lab.exec("host-002", "useradd -m -s /bin/bash copy");
    assert!(out.status.success(), "{out:?}");
    // The password reaches chpasswd on stdin, through a file only root reads.
    let file = lab.dir().join("copy-password");
    std::fs::write(&file, format!("copy:{secret}\n")).unwrap();
    let out = lab.exec("host-002", &format!("chpasswd < {}", file.display()));
    assert!(out.status.success(), "{out:?}");
    let out = scan(&rotor, &lab, &["--output", "json"]);
    let report = json(&out);
    assert!(
        groups(&report, "shared_password").contains(&vec![
            "host-001/svc_app".to_owned(),
            "host-002/copy".to_owned()
        ]),
        "{report:#}"
    );
    assert_no_leak(&[("the copied password".into(), secret)], &rotor, &[&out]);
}

/// The LDAP lab's accounts share the hosts' initial password under random `{SSHA}` salts: no
/// hash string is equal, so only a candidate list can tell, and then the directory and the
/// hosts are one group.
#[test]
fn a_directory_sharing_the_hosts_password_is_found_by_a_candidate() {
    let lab = Lab::start(2);
    let ldap = crate::ldap_lab::LdapLab::start(3, false);
    assert_eq!(ldap.shared_password(), lab.shared_password());
    let inv = ldap.dir().join("inventory.yaml");
    let hosts = std::fs::read_to_string(lab.inventory_path()).unwrap();
    std::fs::write(&inv, format!("{hosts}\n{}", ldap.inventory_fragment())).unwrap();
    let rotor = Rotor::init();
    let out = rotor.run_stdin(&["enroll", "hospital-ldap/rotor"], &ldap.bind_password());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inv = inv.to_str().unwrap();

    let plain = rotor.run(&["scan", "-i", inv, "--output", "json"]);
    let report = json(&plain);
    assert_eq!(report["n_directories"], 1, "{report:#}");
    assert!(
        report["unreachable"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    let dir_creds: Vec<String> = (1..=3)
        .map(|i| format!("hospital-ldap/svc-{i:04}"))
        .collect();
    for g in groups(&report, "unmanaged_account") {
        assert!(
            g.iter().all(|c| !c.starts_with("hospital-ldap/")),
            "found by the inventory's search: {g:?}"
        );
    }
    let rows = report["credentials"].as_array().unwrap();
    for uid in &dir_creds {
        let row = rows
            .iter()
            .find(|r| r["credential"] == uid.as_str())
            .expect(uid);
        assert_eq!(
            (row["managed"].as_bool(), row["password"].as_str()),
            (Some(true), Some("password")),
            "{row}"
        );
    }
    for g in groups(&report, "shared_password") {
        assert!(
            g.iter().all(|c| !c.starts_with("hospital-ldap/")),
            "salts differ: {g:?}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let candidates = dir.path().join("candidates.txt");
    std::fs::write(&candidates, format!("{}\n", lab.shared_password())).unwrap();
    let with = rotor.run(&[
        "scan",
        "-i",
        inv,
        "--output",
        "json",
        "--candidates",
        candidates.to_str().unwrap(),
    ]);
    let report = json(&with);
    let mut all: Vec<String> = on_hosts(&lab, "svc_app");
    all.extend(on_hosts(&lab, "svc_backup"));
    all.extend(dir_creds);
    all.sort();
    assert_eq!(
        groups(&report, "known_candidate"),
        vec![all.clone()],
        "{report:#}"
    );
    assert!(
        groups(&report, "shared_password").contains(&all),
        "{report:#}"
    );
    let secrets = vec![
        (
            "the shared password".to_owned(),
            lab.shared_password().to_owned(),
        ),
        ("the bind password".to_owned(), ldap.bind_password()),
    ];
    assert_no_leak(&secrets, &rotor, &[&plain, &with]);
}
