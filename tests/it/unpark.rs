//! `rotor recover` unparks many credentials at once: `--cred` repeated and `--scope`
//! (issue 8, item 9), each through the inventory's scopes.

use crate::lab::Lab;
use crate::support::{Rotor, json};

/// The credentials `rotor status --output json` shows as parked.
fn parked(rotor: &Rotor) -> Vec<String> {
    let out = rotor.run(&["status", "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&out)["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c["parked"].is_null())
        .map(|c| c["cred"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn recover_unparks_several_creds_and_a_scope() {
    let lab = Lab::start(2);
    let rotor = Rotor::init();
    // A budget of one failed login, so one `verify` with a wrong enrolled password parks.
    let inv = lab.dir().join("budget-1.yaml");
    let yaml = std::fs::read_to_string(lab.inventory_path()).unwrap();
    std::fs::write(
        &inv,
        yaml.replacen(
            "  default: { length: 24,",
            "  default: { max_failed_logins: 1, length: 24,",
            1,
        ),
    )
    .unwrap();
    let inv = inv.to_str().unwrap();
    let all = [
        "host-001/svc_app",
        "host-001/svc_backup",
        "host-002/svc_app",
        "host-002/svc_backup",
    ];
    for cred in all {
        let out = rotor.run_stdin(&["enroll", cred], "not-the-password\n");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = rotor.run(&["verify", "-i", inv, "--all"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(parked(&rotor), all);

    // Two credentials named one by one.
    let out = rotor.run(&[
        "recover",
        "-i",
        inv,
        "--cred",
        "host-001/svc_app",
        "--cred",
        "host-002/svc_app",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        parked(&rotor),
        ["host-001/svc_backup", "host-002/svc_backup"]
    );

    // The rest by scope; a scope naming nothing is an error that unparks nothing.
    let out = rotor.run(&["recover", "-i", inv, "--scope", "account:svc_bakup"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(parked(&rotor).len(), 2);
    let out = rotor.run(&["recover", "-i", inv, "--scope", "account:svc_backup"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(parked(&rotor), Vec::<String>::new());
}
