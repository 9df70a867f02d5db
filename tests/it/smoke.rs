//! The labs themselves work. SSH: hosts accept the shared password, reject others, and a
//! fault stays inside the host it was injected into. LDAP: accounts bind with the shared
//! password, a stopped slapd is told apart from a rejected password, faults are undone.

use crate::lab::{Fault, Lab};
use crate::ldap_lab::{Bind, LdapLab, ServerCert};

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

#[test]
fn ldap_lab_accounts_bind_with_shared_password_and_faults_are_visible() {
    let lab = LdapLab::start(50, false);
    let shared = lab.shared_password();
    assert_eq!(shared, "Shared-Passw0rd!");
    for uid in ["svc-0001", "svc-0025", "svc-0050"] {
        assert!(
            lab.bind_works(uid, &shared),
            "{uid} should bind with the shared password"
        );
    }
    assert!(!lab.bind_works("svc-0001", "not-the-password"));
    // An account that does not exist is rejected like a wrong password (LDAP 49).
    assert!(!lab.bind_works("svc-0051", &shared));
    assert!(lab.bind_works("rotor", &lab.bind_password()));

    let fragment = lab.inventory_fragment();
    assert!(fragment.contains(&format!("url: {}", lab.url_starttls())));
    assert!(fragment.contains(&lab.ca_path().display().to_string()));
    assert!(fragment.contains("cn=rotor,ou=system,dc=hospital,dc=example"));
    assert!(lab.url_ldaps().starts_with("ldaps://127.0.0.1:"));

    lab.stop();
    assert_eq!(lab.bind("svc-0001", &shared), Bind::Unreachable);
    lab.start_again();
    assert!(lab.bind_works("svc-0001", &shared));

    lab.use_cert(ServerCert::OtherName);
    assert!(
        matches!(lab.bind("svc-0001", &shared), Bind::Failed(_)),
        "a certificate naming another host must fail TLS verification"
    );
    lab.use_cert(ServerCert::Good);

    lab.delete("svc-0002");
    assert!(!lab.bind_works("svc-0002", &shared));
    assert!(lab.bind_works("svc-0003", &shared));
}
