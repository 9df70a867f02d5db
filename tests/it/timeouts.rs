//! A push that times out breaks the admin session mid-command; the rollback that follows
//! must log in again rather than give up (which would leave the credential stuck).

use crate::lab::{Fault, Lab};
use crate::support::{Rotor, result_of};

#[test]
fn a_push_that_never_answers_is_rolled_back_over_a_fresh_session() {
    let lab = Lab::start(2);
    let rotor = Rotor::init();
    lab.fault("host-002", Fault::ChpasswdHangs);
    let run = rotor.rotate_all_json(&lab, &["--step-timeout", "2"]);
    let report = run.report();
    assert_eq!(run.code(), Some(3), "{report:#}");
    for account in ["svc_app", "svc_backup"] {
        let r = result_of(&report, &format!("host-002/{account}"));
        assert_eq!(r["result"], "rolled_back", "{r:#}");
        assert_eq!(r["cause"]["class"], "timed_out", "{r:#}");
        assert!(lab.login_works("host-002", account, lab.shared_password()));
        assert_eq!(
            result_of(&report, &format!("host-001/{account}"))["result"],
            "committed"
        );
    }
}
