//! Bad input: each case is a clear error (snapshot-tested), and nothing changes on any host.

use std::path::Path;

use crate::lab::Lab;
use crate::support::Rotor;

/// Runs rotor, expects failure, returns "exit N" and stderr with temp paths and lab addresses
/// replaced by stable names.
fn error_of(rotor: &Rotor, args: &[&str], dirs: &[(&Path, &str)]) -> String {
    let out = rotor.cmd(args).env("ROTOR_LOG", "off").output().unwrap();
    shown(&out, dirs)
}

fn shown(out: &std::process::Output, dirs: &[(&Path, &str)]) -> String {
    assert!(!out.status.success(), "should fail");
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    for (dir, name) in dirs {
        text = text.replace(&dir.display().to_string(), name);
    }
    // The lab's 127.0.X net is picked at run time.
    let text = text
        .split(' ')
        .map(|w| {
            if w.starts_with("127.0.") {
                "[LAB-ADDRESS]"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    format!("exit {}\n{text}", out.status.code().unwrap())
}

#[test]
fn bad_input_is_a_clear_error_and_changes_nothing() {
    let lab = Lab::start(2);
    let rotor = Rotor::init();
    let good = std::fs::read_to_string(lab.inventory_path()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let dirs = [
        (work.path(), "[WORK]"),
        (rotor.data.path(), "[DATA]"),
        (lab.dir(), "[LAB]"),
    ];
    let write = |name: &str, text: &str| {
        let p = work.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let rotate = |path: &Path| {
        error_of(
            &rotor,
            &["rotate", "-i", path.to_str().unwrap(), "--all"],
            &dirs,
        )
    };

    // Malformed YAML.
    let p = write("malformed.yaml", &good.replacen("hosts:", "hosts: [", 1));
    insta::assert_snapshot!("malformed_yaml", rotate(&p));

    // Unknown field.
    let p = write(
        "unknown.yaml",
        &good.replacen("    port: 22", "    port: 22\n    prot: 22", 1),
    );
    insta::assert_snapshot!("unknown_field", rotate(&p));

    // Duplicate host.
    let p = write(
        "dup.yaml",
        &good.replace("name: host-002", "name: host-001"),
    );
    insta::assert_snapshot!("duplicate_host", rotate(&p));

    // Missing host key.
    let first_key = good
        .lines()
        .find(|l| l.trim_start().starts_with("host_key:"))
        .unwrap();
    let p = write(
        "nokey.yaml",
        &good.replacen(&format!("{first_key}\n"), "", 1),
    );
    insta::assert_snapshot!("missing_host_key", rotate(&p));

    // Unknown scope, and a scope kind that does not exist.
    let inv = lab.inventory_path();
    let inv = inv.to_str().unwrap();
    insta::assert_snapshot!(
        "unknown_scope",
        error_of(
            &rotor,
            &["rotate", "-i", inv, "--scope", "host:host-009"],
            &dirs
        )
    );
    insta::assert_snapshot!(
        "bad_scope_kind",
        error_of(&rotor, &["rotate", "-i", inv, "--scope", "rack:7"], &dirs)
    );

    // Missing data directory.
    let out = rotor
        .cmd(&["rotate", "-i", inv, "--all"])
        .env("ROTOR_DATA_DIR", work.path().join("nowhere"))
        .env("ROTOR_LOG", "off")
        .output()
        .unwrap();
    insta::assert_snapshot!("missing_data_dir", shown(&out, &[(work.path(), "[WORK]")]));

    // Wrong master key: a key file from another vault.
    let other = Rotor::init();
    let other_key = other.vault_dir().join("master.key");
    let out = rotor
        .cmd(&[
            "rotate",
            "-i",
            inv,
            "--all",
            "--key-file",
            other_key.to_str().unwrap(),
        ])
        .env("ROTOR_LOG", "off")
        .output()
        .unwrap();
    insta::assert_snapshot!(
        "wrong_master_key",
        shown(
            &out,
            &[
                (other.data.path(), "[OTHER]"),
                (rotor.data.path(), "[DATA]")
            ]
        )
    );

    // Nothing changed anywhere: the shared password still opens every account.
    for host in lab.host_names() {
        for account in ["svc_app", "svc_backup"] {
            assert!(
                lab.login_works(host, account, lab.shared_password()),
                "{host}/{account}"
            );
        }
    }
}
