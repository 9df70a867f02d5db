//! The lab itself works: hosts accept the shared password, reject others, and a fault stays
//! inside the host it was injected into.

use crate::lab::{Fault, Lab};

#[test]
fn lab_hosts_accept_shared_password_and_isolate_faults() {
    let lab = Lab::start(3);
    let hosts = lab.host_names().to_vec();
    assert_eq!(hosts, ["host-001", "host-002", "host-003"]);

    for host in &hosts {
        assert!(
            lab.login_works(host, "svc_app", lab.shared_password()),
            "svc_app should log in to {host} with the shared password"
        );
    }
    assert!(!lab.login_works(&hosts[0], "svc_app", "not-the-password"));

    let inventory = std::fs::read_to_string(lab.inventory_path()).expect("read inventory");
    assert_eq!(inventory.matches("  - name: host-").count(), 3);

    lab.fault(&hosts[1], Fault::ChpasswdFails);
    let faulty = lab.exec(&hosts[1], "chpasswd");
    assert!(
        !faulty.status.success(),
        "chpasswd should fail on {}",
        hosts[1]
    );
    assert!(String::from_utf8_lossy(&faulty.stderr).contains("lab fault"));
    let healthy = lab.exec(&hosts[0], "chpasswd");
    assert!(
        healthy.status.success(),
        "chpasswd should still work on {}: {}",
        hosts[0],
        String::from_utf8_lossy(&healthy.stderr)
    );
    // Each host has its own /etc/shadow.
    let shadow = lab.exec(&hosts[2], "grep -c '^svc_' /etc/shadow");
    assert_eq!(String::from_utf8_lossy(&shadow.stdout).trim(), "2");
}
