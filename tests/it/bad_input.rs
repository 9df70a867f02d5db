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

/// `rotor inventory check -i PATH` under a 1 GiB address-space limit and a 20 s deadline
/// (an inventory that is not a file must neither exhaust memory nor hang): "exit N" and
/// stderr, the work dir shown as [WORK].
fn check_error(path: &Path, work: &Path) -> String {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let mut child = Command::new("prlimit")
        .args(["--as=1073741824", "--"])
        .arg(env!("CARGO_BIN_EXE_rotor"))
        .args(["inventory", "check", "-i"])
        .arg(path)
        .env("ROTOR_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read stderr as it comes: a long error must not fill the pipe and stall rotor.
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut text).unwrap();
        text
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("rotor inventory check -i {} hung", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = child.wait_with_output().unwrap();
    out.stderr = reader.join().unwrap();
    shown(&out, &[(work, "[WORK]")])
}

/// Inventories that are not files, too big, or hostile in their values (issue 8, item 9):
/// each a short error that names the file and the fix, echoes no value whole and no control
/// character raw, and speaks the inventory's words, not Rust's.
#[test]
fn hostile_inventories_get_short_plain_errors() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let file = |name: &str, text: &str| {
        let p = w.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let host = |fields: &str| {
        format!(
            "version: 1\nhosts:\n  - name: h1\n    address: 10.0.0.1\n    host_key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"\n    connect: {{ user: root, key: /k }}\n{fields}"
        )
    };

    insta::assert_snapshot!("dev_zero", check_error(Path::new("/dev/zero"), w));
    let fifo = w.join("fifo.yaml");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    insta::assert_snapshot!("fifo", check_error(&fifo, w));
    let big = w.join("big.yaml");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(17 * 1024 * 1024)
        .unwrap();
    insta::assert_snapshot!("too_large", check_error(&big, w));

    // A 1 MB address, and a host name with a terminal escape in it.
    let long = file(
        "long.yaml",
        &host("").replace("10.0.0.1", &"a".repeat(1 << 20)),
    );
    insta::assert_snapshot!("long_value", check_error(&long, w));
    let escape = file(
        "escape.yaml",
        &host("").replace("name: h1", "name: \"h1\\e[2J\\e]0;owned\\a\""),
    );
    insta::assert_snapshot!("control_chars", check_error(&escape, w));

    // No Rust type names.
    let null_name = file("null.yaml", &host("").replace("name: h1", "name: null"));
    insta::assert_snapshot!("null_name", check_error(&null_name, w));

    // The lockout budget, written wrong in every way.
    let mut budget = String::new();
    for value in [
        "0",
        "11",
        "-1",
        "three",
        "2.5",
        "99999999999999999999999",
        "[3]",
    ] {
        let p = file(
            "budget.yaml",
            &format!(
                "version: 1\npolicies:\n  strict:\n    max_failed_logins: {value}\n{}",
                host("").trim_start_matches("version: 1\n")
            ),
        );
        budget.push_str(&format!(
            "max_failed_logins: {value}\n{}\n",
            check_error(&p, w)
        ));
    }
    insta::assert_snapshot!("budget", budget);

    // The YAML reader's budget: anchors repeated through 50,001 aliases, refused at rotor's
    // limit of 5,000 (in well under a second even in a debug build; the reader's own limit
    // of 50,000 cost seconds). Said in words, with no reader internals (it printed
    // `Aliases { aliases: .. }`).
    let mut laughs = String::from("version: 1\npolicies:\n  p0: &a0 { length: 24 }\n");
    for idx in 1..=50_001 {
        laughs.push_str(&format!("  p{idx}: *a0\n"));
    }
    let p = file("laughs.yaml", &laughs);
    insta::assert_snapshot!("yaml_budget", check_error(&p, w));
}

/// The example inventory the README points to passes `inventory check` from any directory,
/// and scopes that name nothing in it are errors that say what to write.
#[test]
fn the_example_inventory_checks_and_scopes_explain_themselves() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/inventory.yaml");
    let example = example.to_str().unwrap();
    let rotor = Rotor::init();
    let out = rotor
        .cmd(&["inventory", "check", "-i", example])
        .env("ROTOR_LOG", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 hosts, 7 accounts, 1 directory"));
    let examples = Path::new(example).parent().unwrap();
    let dirs = [(examples, "[EXAMPLES]")];
    let scope = |scopes: &[&str]| {
        let mut args = vec!["plan", "-i", example];
        for s in scopes {
            args.extend(["--scope", s]);
        }
        error_of(&rotor, &args, &dirs)
    };
    insta::assert_snapshot!(scope(&["emr"]), @"
    exit 2
    error: `emr` is a group: write group:emr
    ");
    insta::assert_snapshot!(scope(&["host:web-*"]), @"
    exit 2
    error: no host matches `web-*` in [EXAMPLES]/inventory.yaml; known hosts: `emr-db-01`, `emr-app-01`, `lab-01`
    ");
    insta::assert_snapshot!(scope(&["group:emr,!host:emr-*"]), @"
    exit 2
    error: nothing left to act on in [EXAMPLES]/inventory.yaml: after `!host:emr-*`, none of what the other scopes select remains; drop an exclusion or widen the selection
    ");
    insta::assert_snapshot!(scope(&["!host:emr-db-1"]), @"
    exit 2
    error: no host `emr-db-1` to exclude in [EXAMPLES]/inventory.yaml; did you mean `emr-db-01`?
    ");
    // A scope that cannot be read is a usage error as well.
    insta::assert_snapshot!(scope(&["host:emr-[0-9"]), @"
    exit 2
    error: scope `host:emr-[0-9`: `emr-[0-9`: a `[` is not closed: write a class such as [0-9] or [abc]
    ");
}
