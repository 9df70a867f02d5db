//! The OS keyring as the master key's home (`--key-source keyring`), against a real Secret
//! Service: gnome-keyring in a private D-Bus session, as on a workstation.

use std::process::Command;

#[test]
fn the_master_key_can_live_in_the_os_keyring() {
    let home = tempfile::tempdir().unwrap();
    let vault = home.path().join("vault");
    let rotor = env!("CARGO_BIN_EXE_rotor");
    // One shell inside one D-Bus session: unlock a fresh login keyring, then use rotor.
    let script = format!(
        r#"set -eu
eval "$(printf 'test-unlock' | gnome-keyring-daemon --unlock --components=secrets)"
R="{rotor} --data-dir {vault} --key-source keyring"
$R init
printf 'enrolled-secret-1' | $R enroll h1/svc_app
$R show h1/svc_app --reason keyring-test
test ! -e {vault}/master.key
"#,
        vault = vault.display()
    );
    let out = Command::new("dbus-run-session")
        .args(["--", "bash", "-c", &script])
        .env("HOME", home.path())
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .output()
        .expect("dbus-run-session (scripts/setup installs dbus and gnome-keyring)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("enrolled-secret-1"), "{stdout}");

    // Without the keyring, the vault cannot be opened: the key is nowhere on disk.
    let out = Command::new(rotor)
        .args([
            "--data-dir",
            vault.to_str().unwrap(),
            "show",
            "h1/svc_app",
            "--reason",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}
