//! `rotor enroll CRED --ssh-key FILE` and `rotor show CRED` for an SSH private key: a key
//! `ssh-keygen` wrote is stored and shown back byte for byte (one final newline), and files
//! that are not an unencrypted OpenSSH ed25519 private key are refused with the fix, their
//! text never echoed. No lab hosts: only the vault.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{Leaks, Rotor};

fn keygen(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-C", "op@laptop"])
        .args(args)
        .arg("-f")
        .arg(&path);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", stderr(&out));
    path
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The part of an OpenSSH ed25519 key file that holds the private seed (the fifth line; the
/// lines before it are the format's header and the public key, the same in every such key).
fn seed_line(key: &str) -> &str {
    key.lines().nth(4).unwrap()
}

#[test]
fn an_enrolled_ssh_key_is_shown_exactly_and_bad_key_files_are_refused() {
    let rotor = Rotor::init();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let id = keygen(dir, "id_ed25519", &["-t", "ed25519", "-N", ""]);
    let key = std::fs::read_to_string(&id).unwrap();

    let enroll = |cred: &str, path: &Path| {
        rotor
            .cmd(&["enroll", cred, "--ssh-key", path.to_str().unwrap()])
            .env("ROTOR_LOG", "debug")
            .output()
            .unwrap()
    };
    let out = enroll("h1/deploy", &id);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&id)
        .output()
        .unwrap();
    let fingerprint = String::from_utf8(listed.stdout).unwrap();
    let fingerprint = fingerprint.split_whitespace().nth(1).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("Enrolled the SSH private key ({fingerprint}) of h1/deploy.\n")
    );

    let shown = rotor.run(&["show", "h1/deploy", "--reason", "test check"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert_eq!(String::from_utf8(shown.stdout.clone()).unwrap(), key);
    // What `show` printed is a key file the system's tools read.
    let copy = dir.join("shown_key");
    std::fs::write(&copy, &shown.stdout).unwrap();
    // ssh-keygen reads no private key that others may read.
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let public = Command::new("ssh-keygen")
        .arg("-yf")
        .arg(&copy)
        .output()
        .unwrap();
    let expected = std::fs::read_to_string(id.with_extension("pub")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&public.stdout),
        expected,
        "{}",
        stderr(&public)
    );

    // Piped to plain `enroll`, a key is refused with the way to enroll it.
    let piped = rotor.run_stdin(&["enroll", "h1/piped"], &key);
    assert_eq!(piped.status.code(), Some(2), "{}", stderr(&piped));
    assert!(
        stderr(&piped).contains("--ssh-key FILE"),
        "{}",
        stderr(&piped)
    );
    assert!(rotor.show("h1/piped").is_none());

    let leaks = Leaks::new([("the enrolled key", seed_line(&key))]);
    leaks.assert_absent("the vault's files", &rotor.vault_bytes());
    for out in [&out, &piped] {
        leaks.assert_absent("enroll's output", &[&out.stdout[..], &out.stderr].concat());
    }

    // Refusals: each names the file and says the fix; nothing is enrolled; no key text shown.
    let encrypted = keygen(dir, "encrypted", &["-t", "ed25519", "-N", "a-passphrase"]);
    let ecdsa = keygen(dir, "ecdsa", &["-t", "ecdsa", "-N", ""]);
    let pem = keygen(
        dir,
        "pem_rsa",
        &["-t", "rsa", "-b", "1024", "-m", "PEM", "-N", ""],
    );
    let fifo = dir.join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let large = dir.join("large");
    std::fs::write(&large, key.repeat(200)).unwrap();
    let binary = dir.join("binary");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x01]).unwrap();
    let cases: [(&str, PathBuf, &str); 10] = [
        (
            "encrypted",
            encrypted.clone(),
            "ssh-keygen -p -N '' -f COPY",
        ),
        ("public", id.with_extension("pub"), "this is a public key"),
        ("ecdsa", ecdsa.clone(), "not ed25519"),
        ("pem", pem.clone(), "this is a PEM RSA private key"),
        ("fifo", fifo, "it is a FIFO (named pipe), not a file"),
        ("directory", dir.to_owned(), "it is a directory, not a file"),
        ("device", "/dev/zero".into(), "it is a device, not a file"),
        ("large", large, "bytes, more than the 65536 bytes"),
        ("binary", binary, "it is not text"),
        ("missing", dir.join("nope"), "cannot open it"),
    ];
    let key_texts: Vec<String> = [&encrypted, &ecdsa, &pem]
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for (name, path, needle) in cases {
        let cred = format!("h1/{name}");
        let out = enroll(&cred, &path);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(needle), "{name}: {needle} missing in: {err}");
        assert!(
            err.contains(&format!("--ssh-key {}", path.display())),
            "{name}: {err}"
        );
        for text in key_texts.iter().map(String::as_str).chain([key.as_str()]) {
            for line in text.lines().filter(|l| !l.starts_with("-----")) {
                assert!(!err.contains(line), "{name}: key text in: {err}");
            }
        }
        assert!(rotor.show(&cred).is_none(), "{name} was enrolled");
    }
}
