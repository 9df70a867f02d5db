//! Lab tests: each test starts its own throwaway `slapd` (slapd.conf in a tempdir, mdb, a test
//! CA and a server certificate for 127.0.0.1 made with `openssl`, StartTLS and LDAPS on loopback
//! ports) and kills it by PID when the fixture drops.

use std::fs;
use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::connector::lab_ports::free_port;

const SUFFIX: &str = "dc=rotor,dc=test";
const ROTOR_DN: &str = "cn=rotor,ou=system,dc=rotor,dc=test";
const ADMIN_DN: &str = "cn=admin,dc=rotor,dc=test";
const ADMIN_PW: &str = "lab-root-pw";
const SERVICE_OU: &str = "ou=service,dc=rotor,dc=test";
/// Per-request size limit for rotor's bind account: searches must page past it.
const SIZE_LIMIT: usize = 100;

struct Lab {
    dir: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
    port_tls: u16,
    rotor_secret: Secret,
    shared_secret: Secret,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn a lab tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The socket inodes of TCP listeners on 127.0.0.1:`port` or 0.0.0.0:`port`, from
/// `/proc/net/tcp` (fields: sl, local address as hex IP:port, remote, state (0A = LISTEN), ...,
/// inode is the tenth).
fn listener_inodes(port: u16) -> Vec<String> {
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let wanted = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() > 9 && wanted.contains(&f[1].to_owned()) && f[3] == "0A")
                .then(|| f[9].to_owned())
        })
        .collect()
}

/// Whether process `pid` holds the listening socket on `port` (one of its descriptors is
/// `socket:[INODE]` for a listener's inode).
fn listens_on(pid: u32, port: u16) -> bool {
    let inodes = listener_inodes(port);
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok).any(|fd| {
        fs::read_link(fd.path()).is_ok_and(|target| {
            let target = target.to_string_lossy();
            inodes.iter().any(|i| target == format!("socket:[{i}]"))
        })
    })
}

/// `{SSHA}` hash by `slappasswd`, with the password in a file (never on a command line).
fn ssha(dir: &Path, password: &Secret) -> String {
    let file = dir.join("pw.tmp");
    fs::write(&file, password.expose()).unwrap();
    let out = Command::new("slappasswd")
        .args(["-h", "{SSHA}", "-T"])
        .arg(&file)
        .output()
        .unwrap();
    fs::remove_file(&file).unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn make_ca(dir: &Path, name: &str) {
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-x509", "-new", "-nodes", "-newkey", "ec"])
        .args(["-pkeyopt", "ec_paramgen_curve:P-256", "-days", "2"])
        .args([
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ])
        .args(["-subj", &format!("/CN=rotor lab {name}")])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
}

impl Lab {
    /// `ppolicy`: load the ppolicy overlay with `pwdInHistory: 5` and this `pwdCheckQuality`.
    fn start(n_accounts: usize, ppolicy: Option<u8>) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir(d.join("data")).unwrap();
        make_ca(d, "ca");
        make_ca(d, "other-ca");
        fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(Command::new("openssl")
            .current_dir(d)
            .args(["req", "-new", "-nodes", "-newkey", "ec"])
            .args(["-pkeyopt", "ec_paramgen_curve:P-256"])
            .args([
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ]));
        run(Command::new("openssl")
            .current_dir(d)
            .args([
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
            ])
            .args(["-CAcreateserial", "-days", "2", "-out", "server.pem"])
            .args(["-extfile", "server.ext"]));

        let rotor_secret = Secret::new("lab-rotor-bind-secret".into());
        let shared_secret = Secret::new("Shared-Password-2019!".into());
        let dp = d.display();
        let ppolicy_module = if ppolicy.is_some() {
            "moduleload ppolicy"
        } else {
            ""
        };
        let ppolicy_overlay = if ppolicy.is_some() {
            format!("overlay ppolicy\nppolicy_default \"cn=default,ou=policies,{SUFFIX}\"")
        } else {
            String::new()
        };
        let conf = format!(
            r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
pidfile {dp}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
{ppolicy_module}
loglevel none
TLSCACertificateFile {dp}/ca.pem
TLSCertificateFile {dp}/server.pem
TLSCertificateKeyFile {dp}/server.key
password-hash {{SSHA}}
security simple_bind=128

database mdb
suffix "{SUFFIX}"
rootdn "{ADMIN_DN}"
rootpw {ADMIN_PW}
directory {dp}/data
maxsize 1073741824
index objectClass eq
index uid eq
limits dn.exact="{ROTOR_DN}" size.soft={SIZE_LIMIT} size.hard={SIZE_LIMIT} size.prtotal=unlimited
{ppolicy_overlay}

access to dn.one="{SERVICE_OU}" attrs=userPassword
    by dn.exact="{ROTOR_DN}" write
    by self write
    by anonymous auth
    by * none
access to attrs=userPassword
    by self write
    by anonymous auth
    by * none
access to dn.subtree="{SUFFIX}"
    by dn.exact="{ROTOR_DN}" read
    by self read
    by * none
"#
        );
        fs::write(d.join("slapd.conf"), conf).unwrap();

        let shared_hash = ssha(d, &shared_secret);
        let mut ldif = format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: rotor\no: lab\n\n\
             dn: ou=system,{SUFFIX}\nobjectClass: organizationalUnit\nou: system\n\n\
             dn: {SERVICE_OU}\nobjectClass: organizationalUnit\nou: service\n\n\
             dn: {ROTOR_DN}\nobjectClass: applicationProcess\nobjectClass: simpleSecurityObject\n\
             cn: rotor\nuserPassword: {}\n\n",
            ssha(d, &rotor_secret)
        );
        if let Some(check_quality) = ppolicy {
            ldif.push_str(&format!(
                "dn: ou=policies,{SUFFIX}\nobjectClass: organizationalUnit\nou: policies\n\n\
                 dn: cn=default,ou=policies,{SUFFIX}\nobjectClass: device\nobjectClass: pwdPolicy\n\
                 cn: default\npwdAttribute: userPassword\npwdInHistory: 5\npwdCheckQuality: {check_quality}\n\
                 pwdMinLength: 0\npwdMustChange: FALSE\npwdAllowUserChange: TRUE\n\
                 pwdSafeModify: FALSE\npwdLockout: FALSE\n\n"
            ));
        }
        for idx in 1..=n_accounts {
            ldif.push_str(&format!(
                "dn: uid=svc-{idx:04},{SERVICE_OU}\nobjectClass: account\n\
                 objectClass: simpleSecurityObject\nuid: svc-{idx:04}\nuserPassword: {shared_hash}\n\n"
            ));
        }
        fs::write(d.join("load.ldif"), ldif).unwrap();
        run(Command::new("slapadd")
            .args(["-q", "-f"])
            .arg(d.join("slapd.conf"))
            .arg("-l")
            .arg(d.join("load.ldif")));

        let mut lab = Lab {
            dir,
            child: None,
            port: free_port(),
            port_tls: free_port(),
            rotor_secret,
            shared_secret,
        };
        // Another process may take a port between the check and slapd's bind (slapd then exits
        // without a word at `-d 0`): draw new ones.
        for _ in 0..5 {
            match lab.spawn() {
                Err(_)
                    if [lab.port, lab.port_tls]
                        .iter()
                        .any(|p| !listener_inodes(*p).is_empty()) =>
                {
                    lab.port = free_port();
                    lab.port_tls = free_port();
                }
                other => {
                    other.unwrap_or_else(|log| panic!("{log}"));
                    return lab;
                }
            }
        }
        panic!("five pairs of lab ports were taken while slapd started");
    }

    /// Starts slapd on the lab's ports and waits until it listens on both; `Err` holds its log
    /// when it exited instead.
    fn spawn(&mut self) -> Result<(), String> {
        let d = self.dir.path();
        let log = fs::File::create(d.join("slapd.log")).unwrap();
        let urls = format!(
            "ldap://127.0.0.1:{}/ ldaps://127.0.0.1:{}/",
            self.port, self.port_tls
        );
        // `-d 0`: stay in the foreground (so the PID we hold is slapd's) without debug output.
        let child = Command::new("/usr/sbin/slapd")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .args(["-h", &urls, "-d", "0"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start slapd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            // Up means slapd itself listens on both ports: a connect alone could reach another
            // process that took a port meanwhile, while this slapd exits on EADDRINUSE.
            let pid = self.pid();
            let up = [self.port, self.port_tls]
                .iter()
                .all(|p| listens_on(pid, *p) && TcpStream::connect(("127.0.0.1", *p)).is_ok());
            if up {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!(
                    "slapd exited ({status}): {}",
                    fs::read_to_string(d.join("slapd.log")).unwrap_or_default()
                ));
            }
            assert!(Instant::now() < deadline, "slapd did not listen within 15s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("slapd running").id()
    }

    fn signal(&self, sig: &str) {
        run(Command::new("kill").args([sig, &self.pid().to_string()]));
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn starttls_url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.port_tls)
    }

    fn spec(&self, url: String) -> DirectorySpec {
        DirectorySpec {
            name: HostName::parse("lab-ldap").unwrap(),
            url,
            ca_file: Some(self.path("ca.pem")),
            danger_accept_invalid_certs: false,
            bind_dn: ROTOR_DN.into(),
            // Generous: the unit tests share two cores with the bench and the memory-hard
            // hash tests. The deadline test sets its own.
            timeout: Duration::from_secs(5),
            limits: SearchLimits::DEFAULT,
        }
    }

    fn target(&self) -> DirectoryTarget {
        DirectoryTarget::prepare(&self.spec(self.starttls_url())).unwrap()
    }

    async fn admin(&self) -> LdapAdmin {
        LdapAdmin::connect(&self.target(), &self.rotor_secret)
            .await
            .unwrap()
    }

    /// The lab's rootdn, for fault injection only (rotor never binds as it).
    async fn root(&self) -> Ldap {
        let target = self.target();
        open_and_bind(
            &target,
            ADMIN_DN,
            &Secret::new(ADMIN_PW.into()),
            Step::AdminBind,
        )
        .await
        .unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A SIGSTOPped slapd must be continued to die cleanly; SIGKILL works either way.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
    }
}

fn svc(idx: usize) -> String {
    format!("uid=svc-{idx:04},{SERVICE_OU}")
}

fn secret(s: &str) -> Secret {
    Secret::new(s.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_bind_over_starttls_and_ldaps_and_a_wrong_secret_is_rejected() {
    let lab = Lab::start(3, None);
    for url in [lab.starttls_url(), lab.ldaps_url()] {
        let target = DirectoryTarget::prepare(&lab.spec(url.clone())).unwrap();
        LdapAdmin::connect(&target, &lab.rotor_secret)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let wrong = secret("not-the-bind-secret");
        let err = LdapAdmin::connect(&target, &wrong).await.unwrap_err();
        assert_eq!(err.class, FaultClass::ConnectAuthRejected, "{err}");
        assert!(!err.message.contains("not-the-bind-secret"), "{err}");
        assert!(err.message.contains("49"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn search_pages_past_the_size_limit() {
    let n = SIZE_LIMIT * 2 + 50;
    let lab = Lab::start(n, None);
    let admin = lab.admin().await;
    let found = admin
        .search(SERVICE_OU, "(objectClass=account)", SearchScope::OneLevel)
        .await
        .unwrap();
    assert_eq!(found.len(), n);
    assert_eq!(
        found[0],
        DirectoryAccount {
            dn: svc(1),
            uid: "svc-0001".into()
        }
    );
    // A filter that matches an entry without uid names it.
    let err = admin
        .search(SUFFIX, "(ou=service)", SearchScope::Subtree)
        .await
        .unwrap_err();
    assert_eq!(err.class, FaultClass::Protocol);
    assert!(err.message.contains(SERVICE_OU), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn searches_stop_at_the_entry_and_byte_caps() {
    let n = SIZE_LIMIT + 20;
    let lab = Lab::start(n, None);
    let found = lab
        .admin()
        .await
        .search(SERVICE_OU, "(objectClass=account)", SearchScope::OneLevel)
        .await
        .unwrap();
    // What the byte cap counts: DN, attribute name and value of each entry.
    let n_bytes: usize = found
        .iter()
        .map(|a| a.dn.len() + "uid".len() + a.uid.len())
        .sum();
    async fn search(
        lab: &Lab,
        limits: SearchLimits,
    ) -> Result<Vec<DirectoryAccount>, ConnectorError> {
        let spec = DirectorySpec {
            limits,
            ..lab.spec(lab.starttls_url())
        };
        let target = DirectoryTarget::prepare(&spec).unwrap();
        let admin = LdapAdmin::connect(&target, &lab.rotor_secret)
            .await
            .unwrap();
        admin
            .search(SERVICE_OU, "(objectClass=account)", SearchScope::OneLevel)
            .await
    }
    let exact = SearchLimits {
        max_entries: n,
        max_bytes: n_bytes,
    };
    assert_eq!(search(&lab, exact).await.unwrap().len(), n);
    for (limits, needle) in [
        (
            SearchLimits {
                max_entries: n - 1,
                ..exact
            },
            format!("returned more than {} entries", n - 1),
        ),
        (
            SearchLimits {
                max_bytes: n_bytes - 1,
                ..exact
            },
            format!("returned more than {} bytes", n_bytes - 1),
        ),
    ] {
        let err = search(&lab, limits).await.unwrap_err();
        assert_eq!(err.class, FaultClass::Protocol, "{err}");
        for needle in [&needle, "lab-ldap", SERVICE_OU, "narrow the search"] {
            assert!(err.message.contains(needle), "{needle} missing in: {err}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn set_verify_restore_round_trip_with_the_exop_and_with_a_hashed_replace() {
    let lab = Lab::start(3, None);
    let target = lab.target();
    let admin = lab.admin().await;
    let old = &lab.shared_secret;
    let dn = svc(1);

    let saved = admin.read_password_hash(&dn).await.unwrap();
    assert!(saved.expose().starts_with("{SSHA}"));
    let new = secret("fresh-Secret-1-aaaaaaaa");
    admin.set_password(&dn, &new).await.unwrap();
    assert_eq!(
        admin.shared.method.get(),
        Some(&PasswordMethod::PasswordModify)
    );
    check_bind(&target, &dn, &new).await.unwrap();
    let err = check_bind(&target, &dn, old).await.unwrap_err();
    assert_eq!(err.class, FaultClass::VerifyFailed, "{err}");

    admin.restore_password_hash(&dn, &saved).await.unwrap();
    check_bind(&target, &dn, old).await.unwrap();
    let err = check_bind(&target, &dn, &new).await.unwrap_err();
    assert_eq!(err.class, FaultClass::VerifyFailed, "{err}");

    // Without the exop: rotor hashes ({CRYPT} SHA-512), slapd verifies it on bind.
    let fallback = LdapAdmin::connect(&target, &lab.rotor_secret)
        .await
        .unwrap();
    fallback.force_method(PasswordMethod::ReplaceHashed);
    let dn2 = svc(2);
    let new2 = secret("fresh-Secret-2-bbbbbbbb");
    fallback.set_password(&dn2, &new2).await.unwrap();
    let stored = fallback.read_password_hash(&dn2).await.unwrap();
    assert!(
        stored.expose().starts_with("{CRYPT}$6$"),
        "stored a non-crypt value"
    );
    check_bind(&target, &dn2, &new2).await.unwrap();
    assert_eq!(
        check_bind(&target, &dn2, old).await.unwrap_err().class,
        FaultClass::VerifyFailed
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_entry_is_account_missing() {
    let lab = Lab::start(3, None);
    let admin = lab.admin().await;
    let dn = svc(3);
    let saved = admin.read_password_hash(&dn).await.unwrap();
    let mut root = lab.root().await;
    root.delete(&dn).await.unwrap().success().unwrap();

    let err = admin.read_password_hash(&dn).await.unwrap_err();
    assert_eq!(err.class, FaultClass::AccountMissing, "{err}");
    let err = admin
        .set_password(&dn, &secret("x-new-1234"))
        .await
        .unwrap_err();
    assert_eq!(err.class, FaultClass::AccountMissing, "{err}");
    let err = admin.restore_password_hash(&dn, &saved).await.unwrap_err();
    assert_eq!(err.class, FaultClass::AccountMissing, "{err}");
    // A bind as a missing account is just a failed bind (slapd does not say which).
    let err = check_bind(&lab.target(), &dn, &lab.shared_secret)
        .await
        .unwrap_err();
    assert_eq!(err.class, FaultClass::VerifyFailed, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_or_mismatched_certificates_are_tls_invalid() {
    let lab = Lab::start(1, None);
    // A CA that did not sign the server's certificate.
    for url in [lab.starttls_url(), lab.ldaps_url()] {
        let mut spec = lab.spec(url);
        spec.ca_file = Some(lab.path("other-ca.pem"));
        let target = DirectoryTarget::prepare(&spec).unwrap();
        let err = LdapAdmin::connect(&target, &lab.rotor_secret)
            .await
            .unwrap_err();
        assert_eq!(err.class, FaultClass::TlsInvalid, "{err}");
        assert!(err.message.contains("ca_file"), "{err}");
        let err = check_bind(&target, &svc(1), &lab.shared_secret)
            .await
            .unwrap_err();
        assert_eq!(err.class, FaultClass::TlsInvalid, "{err}");
    }
    // The right CA, but a name the certificate was not issued for (it names 127.0.0.1 only).
    for url in [
        format!("ldap://localhost:{}", lab.port),
        format!("ldaps://localhost:{}", lab.port_tls),
    ] {
        let target = DirectoryTarget::prepare(&lab.spec(url)).unwrap();
        let err = LdapAdmin::connect(&target, &lab.rotor_secret)
            .await
            .unwrap_err();
        assert_eq!(err.class, FaultClass::TlsInvalid, "{err}");
        assert!(err.message.contains("does not match the host"), "{err}");
    }
    // The dangerous switch connects anyway.
    let mut spec = lab.spec(format!("ldaps://localhost:{}", lab.port_tls));
    spec.ca_file = Some(lab.path("other-ca.pem"));
    spec.danger_accept_invalid_certs = true;
    let target = DirectoryTarget::prepare(&spec).unwrap();
    LdapAdmin::connect(&target, &lab.rotor_secret)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_or_killed_slapd_fails_within_the_deadline_and_the_admin_reconnects() {
    let mut lab = Lab::start(2, None);
    let mut spec = lab.spec(lab.starttls_url());
    spec.timeout = Duration::from_secs(2);
    let target = DirectoryTarget::prepare(&spec).unwrap();
    let admin = LdapAdmin::connect(&target, &lab.rotor_secret)
        .await
        .unwrap();
    let limit = target.timeout() + Duration::from_secs(1);

    // Frozen (SIGSTOP): TCP is up, nothing answers.
    lab.signal("-STOP");
    let t0 = Instant::now();
    let err = admin.read_password_hash(&svc(1)).await.unwrap_err();
    assert_eq!(err.class, FaultClass::TimedOut, "{err}");
    let err = admin
        .set_password(&svc(1), &secret("never-sent-1"))
        .await
        .unwrap_err();
    assert_eq!(err.class, FaultClass::TimedOut, "{err}");
    let err = check_bind(&target, &svc(1), &lab.shared_secret)
        .await
        .unwrap_err();
    assert_eq!(err.class, FaultClass::TimedOut, "{err}");
    assert!(t0.elapsed() < limit * 3, "took {:?}", t0.elapsed());
    lab.signal("-CONT");

    // Killed: connection refused / lost.
    lab.kill();
    let t0 = Instant::now();
    let err = admin.read_password_hash(&svc(1)).await.unwrap_err();
    assert_eq!(err.class, FaultClass::Unreachable, "{err}");
    let err = admin
        .set_password(&svc(1), &secret("never-sent-2"))
        .await
        .unwrap_err();
    assert_eq!(err.class, FaultClass::Unreachable, "{err}");
    let err = check_bind(&target, &svc(1), &lab.shared_secret)
        .await
        .unwrap_err();
    assert_eq!(err.class, FaultClass::Unreachable, "{err}");
    assert!(t0.elapsed() < limit, "took {:?}", t0.elapsed());

    // Back up on the same ports: the same admin value reconnects.
    lab.spawn().unwrap();
    admin.read_password_hash(&svc(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn ppolicy_history_refuses_the_old_cleartext_but_not_a_restored_hash() {
    let lab = Lab::start(2, Some(0));
    let target = lab.target();
    let admin = lab.admin().await;
    let dn = svc(1);
    let saved = admin.read_password_hash(&dn).await.unwrap();
    let new = secret("fresh-Secret-3-cccccccc");
    admin.set_password(&dn, &new).await.unwrap();
    check_bind(&target, &dn, &new).await.unwrap();
    // Setting the old password again through the exop: ppolicy compares the cleartext with
    // its pwdHistory and refuses.
    let err = admin
        .set_password(&dn, &lab.shared_secret)
        .await
        .unwrap_err();
    assert_eq!(err.class, FaultClass::Refused, "{err}");
    assert!(err.message.contains("history"), "{err}");
    assert!(!err.message.contains(lab.shared_secret.expose()), "{err}");
    // OpenLDAP 2.5 ppolicy checks history against cleartext only: the saved *hash*, written
    // back by rotor's (non-root) bind account, is accepted, and the old password works again.
    admin.restore_password_hash(&dn, &saved).await.unwrap();
    check_bind(&target, &dn, &lab.shared_secret).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_that_refuses_prehashed_values_refuses_the_rollback_with_its_own_class() {
    // pwdCheckQuality 2: a value whose quality cannot be checked (a hash) is refused.
    let lab = Lab::start(2, Some(2));
    let target = lab.target();
    let admin = lab.admin().await;
    let dn = svc(1);
    let saved = admin.read_password_hash(&dn).await.unwrap();
    let new = secret("fresh-Secret-4-dddddddd");
    admin.set_password(&dn, &new).await.unwrap();
    let err = admin.restore_password_hash(&dn, &saved).await.unwrap_err();
    assert_eq!(err.class, FaultClass::RollbackRefusedByPolicy, "{err}");
    assert!(!err.message.contains(saved.expose()), "{err}");
    // The new password stays in place and works.
    check_bind(&target, &dn, &new).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn measure_binds_and_exops_per_second() {
    const N: usize = 200;
    const CONCURRENCY: usize = 32;
    let lab = Lab::start(N, None);
    let target = lab.target();
    let admin = lab.admin().await;
    let gate = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));

    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for idx in 1..=N {
        let (target, gate, pw) = (target.clone(), gate.clone(), lab.shared_secret.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            check_bind(&target, &svc(idx), &pw).await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    let binds = N as f64 / t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    for idx in 1..=N / 2 {
        admin
            .set_password(&svc(idx), &secret(&format!("seq-new-{idx:04}-xyz")))
            .await
            .unwrap();
    }
    let exops_seq = (N / 2) as f64 / t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for idx in N / 2 + 1..=N {
        let (admin, gate) = (admin.clone(), gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            admin
                .set_password(&svc(idx), &secret(&format!("par-new-{idx:04}-xyz")))
                .await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    let exops_par = (N / 2) as f64 / t0.elapsed().as_secs_f64();
    check_bind(&target, &svc(N), &secret(&format!("par-new-{N:04}-xyz")))
        .await
        .unwrap();

    let mut out = std::io::stderr();
    writeln!(
        out,
        "LDAP bench: {N} check_binds, {CONCURRENCY} at a time: {binds:.0}/s; exops on one admin \
         connection: {exops_seq:.0}/s sequential, {exops_par:.0}/s with {CONCURRENCY} in flight"
    )
    .unwrap();
}
