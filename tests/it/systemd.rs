//! The systemd unit in `contrib/systemd/`: `systemd-analyze verify` accepts it (with the test
//! build of rotor as its ExecStart), it carries the hardening the README promises, and
//! `rotor serve` speaks the `Type=notify` protocol it declares.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::lab::Lab;
use crate::support::{Rotor, poll};

const UNIT: &str = include_str!("../../contrib/systemd/rotor.service");

#[test]
fn the_unit_file_passes_systemd_analyze_verify_and_is_hardened() {
    for line in [
        "Type=notify",
        "User=rotor",
        "StateDirectory=rotor",
        "ConfigurationDirectory=rotor",
        "LimitCORE=0",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "LoadCredentialEncrypted=rotor-master.key:",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(
            UNIT.lines().any(|l| l.starts_with(line)),
            "the unit lacks `{line}`"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("rotor.service");
    let exec = UNIT.replace("/usr/local/bin/rotor", env!("CARGO_BIN_EXE_rotor"));
    assert_ne!(exec, UNIT, "ExecStart names /usr/local/bin/rotor");
    std::fs::write(&unit, exec).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (Debian package systemd; scripts/setup installs it)");
    // An unknown or misspelt directive is only a warning: no output at all is the bar.
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify: {out:?}"
    );
}

#[test]
fn rotor_serve_tells_systemd_when_it_is_ready_and_when_it_stops() {
    let lab = Lab::start(1);
    let rotor = Rotor::init();
    let socket_path = rotor.data.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut child = rotor
        .cmd(&[
            "serve",
            "-i",
            lab.inventory_path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .env("NOTIFY_SOCKET", &socket_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("READY=1 within 20 s");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "READY=1");
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let n = socket.recv(&mut buf).expect("STOPPING=1 at SIGTERM");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "STOPPING=1");
    let mut status = None;
    poll("rotor serve to exit", Duration::from_secs(30), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(0));
}
