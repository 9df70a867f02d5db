//! `rotor export`: offline escrow, decrypted with the `age` command-line tool (Debian's
//! `age`), not rotor's code. Every current credential is in it with exactly the secret
//! `rotor show` prints, SSH keys included, and the file holds no secret in clear.

use std::process::Command;

use crate::lab::Lab;
use crate::support::{Leaks, Rotor};

#[test]
fn an_export_decrypted_with_age_holds_every_current_credential_exactly() {
    let lab = Lab::start(2);
    let rotor = Rotor::init();
    // svc_backup as an SSH key, so the export carries both kinds.
    let inv = lab.inventory_replacing(
        "export.yaml",
        "{ name: svc_backup, playbook: linux-password }",
        "{ name: svc_backup, playbook: linux-ssh-key }",
    );
    let out = rotor.rotate_all(inv.to_str().unwrap());
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let identity = lab.dir().join("escrow-identity.txt");
    let keygen = Command::new("age-keygen")
        .arg("-o")
        .arg(&identity)
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{keygen:?}");
    let public = String::from_utf8_lossy(&keygen.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("Public key: ").map(str::to_owned))
        .expect("age-keygen prints the public key");

    let file = lab.dir().join("escrow.age");
    let out = rotor.run(&[
        "export",
        "--recipient",
        &public,
        "-o",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("exported 4 credentials"));
    // Never overwritten.
    let again = rotor.run(&[
        "export",
        "--recipient",
        &public,
        "-o",
        file.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(1), "{again:?}");

    let decrypted = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&identity)
        .arg(&file)
        .output()
        .unwrap();
    assert!(decrypted.status.success(), "{decrypted:?}");
    let doc: serde_json::Value = serde_json::from_slice(&decrypted.stdout).unwrap();
    assert_eq!(doc["format"], "rotor-escrow");
    assert_eq!(doc["version"], 1);
    let entries = doc["credentials"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "{doc:#}");
    let mut secrets = Vec::new();
    for host in lab.host_names() {
        for (account, kind) in [("svc_app", "password"), ("svc_backup", "ssh-key")] {
            let cred = format!("{host}/{account}");
            let entry = entries
                .iter()
                .find(|e| e["cred"] == cred.as_str())
                .unwrap_or_else(|| panic!("{cred} not exported: {doc:#}"));
            assert_eq!(entry["kind"], kind, "{cred}");
            let shown = rotor.show(&cred).unwrap();
            let exported = entry["secret"].as_str().unwrap();
            assert_eq!(exported.trim_end_matches('\n'), shown, "{cred}");
            secrets.push(shown);
        }
    }
    // A scope exports exactly what it selects in the inventory.
    let scoped = lab.dir().join("escrow-host-001.age");
    let out = rotor.run(&[
        "export",
        "--recipient",
        &public,
        "-i",
        inv.to_str().unwrap(),
        "--scope",
        "host:host-001",
        "-o",
        scoped.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let decrypted = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&identity)
        .arg(&scoped)
        .output()
        .unwrap();
    assert!(decrypted.status.success(), "{decrypted:?}");
    let doc: serde_json::Value = serde_json::from_slice(&decrypted.stdout).unwrap();
    let mut names: Vec<&str> = doc["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["cred"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["host-001/svc_app", "host-001/svc_backup"],
        "{doc:#}"
    );
    for e in doc["credentials"].as_array().unwrap() {
        let shown = rotor.show(e["cred"].as_str().unwrap()).unwrap();
        assert_eq!(e["secret"].as_str().unwrap().trim_end_matches('\n'), shown);
    }

    // The file on disk is ciphertext only.
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
    let lines: Vec<&str> = secrets
        .iter()
        .flat_map(|s| s.lines())
        .filter(|l| !l.starts_with("-----"))
        .collect();
    Leaks::new(lines.iter().map(|l| ("an exported secret", *l)))
        .assert_absent("the export file", &bytes);
}
