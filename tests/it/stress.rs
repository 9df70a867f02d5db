//! The crash-stress script in miniature: a few SIGKILLs of `rotor rotate` at random moments
//! over 20 lab hosts, `rotor recover` after each, and every account checked with the system
//! `ssh` client (see `scripts/crash-stress`, which CI runs with few trials and the debug
//! binary; run it by hand for the full 50).

use std::path::Path;
use std::process::Command;

#[test]
fn sigkill_at_random_moments_loses_no_credential() {
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/crash-stress"))
        .args(["--trials", "3", "--hosts", "20", "--rotor"])
        .arg(env!("CARGO_BIN_EXE_rotor"))
        // Kill within the first 2 s of each run instead of measuring a clean run first: keeps
        // the test short and leaves never-rotated accounts for the first trials.
        .args(["--window", "2", "--net", "127.0.240"])
        .output()
        .expect("run scripts/crash-stress");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("lost credentials: 0"), "{stdout}\n{stderr}");
    assert!(stdout.contains("recover failures: 0"), "{stdout}\n{stderr}");
}
