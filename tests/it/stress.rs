//! The crash-stress script in miniature: a few SIGKILLs of `rotor rotate` (and of the
//! `rotor recover` after it) at random moments, a recovery after each, and every account
//! checked with a client that is not rotor (see `scripts/crash-stress`, which CI runs with few
//! trials and the debug binary; run it by hand for the full 50).

use std::path::Path;
use std::process::Command;

/// Runs `scripts/crash-stress` with the test's rotor binary and `args`; asserts that nothing
/// was lost and every recovery succeeded.
fn check(args: &[&str]) {
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/crash-stress"))
        .args(["--rotor", env!("CARGO_BIN_EXE_rotor")])
        .args(args)
        .output()
        .expect("run scripts/crash-stress");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("lost credentials: 0"), "{stdout}\n{stderr}");
    assert!(stdout.contains("recover failures: 0"), "{stdout}\n{stderr}");
}

#[test]
fn sigkill_at_random_moments_loses_no_credential() {
    // Kill within the first 2 s of each run instead of measuring a clean run first: keeps the
    // test short and leaves never-rotated accounts for the first trials.
    check(&[
        "--trials",
        "3",
        "--hosts",
        "20",
        "--window",
        "2",
        "--net",
        "127.0.240",
    ]);
}

#[test]
fn sigkill_of_directory_runs_and_their_recovery_loses_no_credential() {
    check(&[
        "--trials",
        "3",
        "--ldap",
        "100",
        "--window",
        "1",
        "--kill-recover",
    ]);
}
