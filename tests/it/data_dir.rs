//! The data directory, the database and the master key file are trusted only when they are
//! the user's own and nobody else can write them (issue 8, item 3), and a vault that cannot
//! be written says which file and why (item 9). Each case breaks one thing in a fresh vault
//! and snapshots what `rotor status` says; the vault opens again once it is put right.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::support::Rotor;

const NOBODY: u32 = 65534;

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), None).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// "exit N" and stderr of `rotor ARGS`, the temp dir shown as [DATA].
fn refused(rotor: &Rotor, args: &[&str]) -> String {
    let out = rotor.cmd(args).env("ROTOR_LOG", "off").output().unwrap();
    assert!(!out.status.success(), "should fail: {args:?}");
    let text = String::from_utf8_lossy(&out.stderr)
        .replace(&rotor.data.path().display().to_string(), "[DATA]");
    format!("exit {}\n{text}", out.status.code().unwrap())
}

fn status_works(rotor: &Rotor) {
    let out = rotor.run(&["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One broken thing: `breaks` changes a fresh vault, `mends` puts it back.
fn check(name: &str, breaks: impl Fn(&Path), mends: impl Fn(&Path)) {
    let rotor = Rotor::init();
    let vault = rotor.vault_dir();
    status_works(&rotor);
    breaks(&vault);
    insta::assert_snapshot!(name, refused(&rotor, &["status"]));
    mends(&vault);
    status_works(&rotor);
}

#[test]
fn data_dir_writable_by_others_is_refused() {
    check("dir_mode_0777", |v| chmod(v, 0o777), |v| chmod(v, 0o700));
}

#[test]
fn data_dir_of_another_user_is_refused() {
    check("dir_owner", |v| chown(v, NOBODY), |v| chown(v, 0));
}

#[test]
fn key_file_of_another_user_is_refused() {
    check(
        "key_owner",
        |v| chown(&v.join("master.key"), NOBODY),
        |v| chown(&v.join("master.key"), 0),
    );
}

#[test]
fn key_file_behind_a_link_is_refused() {
    check(
        "key_symlink",
        |v| {
            let elsewhere = v.parent().unwrap().join("elsewhere.key");
            std::fs::rename(v.join("master.key"), &elsewhere).unwrap();
            std::os::unix::fs::symlink(&elsewhere, v.join("master.key")).unwrap();
        },
        |v| {
            std::fs::rename(
                v.parent().unwrap().join("elsewhere.key"),
                v.join("master.key"),
            )
            .unwrap()
        },
    );
}

#[test]
fn database_of_another_user_is_refused() {
    check(
        "db_owner",
        |v| chown(&v.join("rotor.db"), NOBODY),
        |v| chown(&v.join("rotor.db"), 0),
    );
}

#[test]
fn database_writable_by_others_is_refused() {
    check(
        "db_mode_0666",
        |v| chmod(&v.join("rotor.db"), 0o666),
        |v| chmod(&v.join("rotor.db"), 0o600),
    );
}

#[test]
fn wal_file_of_another_user_is_refused() {
    check(
        "wal_owner",
        |v| {
            let wal = v.join("rotor.db-wal");
            if !wal.exists() {
                std::fs::write(&wal, b"").unwrap();
            }
            chown(&wal, NOBODY);
        },
        |v| std::fs::remove_file(v.join("rotor.db-wal")).unwrap(),
    );
}

#[test]
fn parent_writable_by_others_is_refused() {
    // The temp dir above the data directory; sticky (like /tmp) would be fine.
    check(
        "parent_mode_0777",
        |v| chmod(v.parent().unwrap(), 0o777),
        |v| chmod(v.parent().unwrap(), 0o1777),
    );
}

/// The issue's case: a data directory created beforehand with mode 0777. `init` closes it
/// (0700) before it writes anything there, and says so.
#[test]
fn init_tightens_a_data_dir_that_exists() {
    let rotor = Rotor::without_vault();
    let vault = rotor.vault_dir();
    std::fs::create_dir(&vault).unwrap();
    chmod(&vault, 0o777);
    let out = rotor
        .cmd(&["init"])
        .env("ROTOR_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&vault).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o700, "init left the data directory at {mode:04o}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("set it to 0700"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    status_works(&rotor);
}

/// Someone who could write the directory before `init` left a WAL file for SQLite to pick
/// up, or a directory of another user: `init` creates nothing.
#[test]
fn init_refuses_planted_files_and_foreign_dirs() {
    let rotor = Rotor::without_vault();
    let vault = rotor.vault_dir();
    std::fs::create_dir(&vault).unwrap();
    std::fs::write(vault.join("rotor.db-wal"), b"").unwrap();
    insta::assert_snapshot!("init_stray_wal", refused(&rotor, &["init"]));
    assert!(!vault.join("master.key").exists() && !vault.join("rotor.db").exists());
    std::fs::remove_file(vault.join("rotor.db-wal")).unwrap();
    chown(&vault, NOBODY);
    insta::assert_snapshot!("init_dir_owner", refused(&rotor, &["init"]));
    assert!(!vault.join("master.key").exists());
}

/// A data directory on a read-only mount (a bind mount in a mount namespace of its own, so
/// nothing outlives the command): the error names the directory, the cause and the fix,
/// not SQLite's "unable to open database file".
#[test]
fn read_only_data_dir_says_which_file_and_why() {
    let rotor = Rotor::init();
    let vault = rotor.vault_dir();
    let v = vault.display().to_string();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@""#)
        .args(["sh", &v, env!("CARGO_BIN_EXE_rotor"), "status"])
        .env("ROTOR_DATA_DIR", &vault)
        .env("ROTOR_LOG", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr)
        .replace(&rotor.data.path().display().to_string(), "[DATA]");
    insta::assert_snapshot!(
        "read_only",
        format!("exit {}\n{text}", out.status.code().unwrap())
    );
    status_works(&rotor);
}
