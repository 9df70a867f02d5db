//! Recovery undoes only what rotor changed (issue 8, item 7), against real sshd hosts: a run
//! is killed after its new password reached the host, then the host changes under it.
//!
//! - An operator resets the password by hand: recovery leaves it (stuck, "changed outside
//!   rotor"), and `rotor enroll` of the hand-set password settles it.
//! - The host holds rotor's own new password but logins with it fail (the account expired):
//!   the shadow hash is checked locally against the pending secret (yescrypt), so recovery
//!   knows the change is its own and restores the saved hash.

use crate::lab::Lab;
use crate::support::{Rotor, json, result_of};

const HOST: &str = "host-001";
const CRED: &str = "host-001/svc_app";

/// A lab of one host and a rotor killed after the push of `svc_app`'s new password.
fn killed_after_push() -> (Lab, Rotor, String) {
    let lab = Lab::start(1);
    let rotor = Rotor::init();
    let inv = lab.inventory_path().to_str().unwrap().to_owned();
    rotor.kill_at(
        &["rotate", "-i", &inv, "--scope", &format!("cred:{CRED}")],
        "applied",
    );
    assert!(
        !lab.login_works(HOST, "svc_app", lab.shared_password()),
        "the new password must have reached the host"
    );
    (lab, rotor, inv)
}

fn recover(rotor: &Rotor, inv: &str) -> (Option<i32>, serde_json::Value) {
    let out = rotor.run(&["recover", "-i", inv, "--output", "json"]);
    (out.status.code(), json(&out))
}

fn run_on(lab: &Lab, cmd: &str) {
    let out = lab.exec(HOST, cmd);
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_password_reset_by_hand_is_not_undone_by_recovery() {
    let (lab, rotor, inv) = killed_after_push();
    let by_hand = "Reset-By-Hand-7a9c2f";
    run_on(&lab, &format!("echo 'svc_app:{by_hand}' | chpasswd"));

    let (code, report) = recover(&rotor, &inv);
    assert_eq!(code, Some(4), "{report:#}");
    let r = result_of(&report, CRED);
    assert_eq!(r["result"], "stuck", "{r:#}");
    assert_eq!(
        r["restore_error"]["class"], "changed_outside_rotor",
        "{r:#}"
    );
    assert!(
        r["restore_error"]["message"]
            .as_str()
            .unwrap()
            .contains("rotor enroll"),
        "{r:#}"
    );
    assert!(
        lab.login_works(HOST, "svc_app", by_hand),
        "the operator's password must still work"
    );
    assert!(!lab.login_works(HOST, "svc_app", lab.shared_password()));

    // The operator tells rotor the password: the rotation is settled, and the next run
    // rotates the account again.
    let out = rotor.run_stdin(&["enroll", CRED], &format!("{by_hand}\n"));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("settles its stuck rotation"),
        "{said}"
    );
    let again = rotor.rotate_all_json(&lab, &[]);
    assert_eq!(again.code(), Some(0), "{:#}", again.report());
    let new = rotor.show(CRED).unwrap();
    assert!(lab.login_works(HOST, "svc_app", &new));
}

#[test]
fn rotors_own_change_is_undone_when_its_password_cannot_log_in() {
    let (lab, rotor, inv) = killed_after_push();
    // Logins as svc_app now fail whatever the password: the account has expired.
    run_on(&lab, "usermod --expiredate 1 svc_app");

    let (code, report) = recover(&rotor, &inv);
    let r = result_of(&report, CRED);
    assert_eq!(r["result"], "rolled_back", "{r:#}");
    assert_eq!(code, Some(0), "{report:#}");

    run_on(&lab, "usermod --expiredate -1 svc_app");
    assert!(
        lab.login_works(HOST, "svc_app", lab.shared_password()),
        "the saved hash must be back"
    );
}
