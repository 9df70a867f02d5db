//! Test fixture for the LDAP lab: a real OpenLDAP `slapd` started by `scripts/ldap-lab`.
//!
//! `LdapLab::start(n_accounts, ppolicy)` runs a slapd of its own (own config directory, mdb,
//! StartTLS on `127.0.0.1:P`, LDAPS on `P+1`, a test CA) holding `uid=svc-0001..` under
//! `ou=service,dc=hospital,dc=example`, all with one shared password, and writes the
//! `directories:` inventory fragment for it. Dropping the `LdapLab` (also while a test panics)
//! stops that slapd by its recorded PID. Only 127.0.0.1 is used.
//!
//! Binds are checked with the system `ldapwhoami` (via `scripts/ldap-lab bind`), a client
//! independent of rotor's `ldap3`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};

/// Next StartTLS port to try (LDAPS is the one after it). Tests in one binary run in parallel
/// threads, each lab takes its own pair; other processes (another worktree's tests) are kept
/// apart by `scripts/ldap-lab up`, which exits with `PORT_IN_USE` when a port is taken.
static NEXT_PORT: AtomicU16 = AtomicU16::new(3890);

/// `scripts/ldap-lab up` exit code: the port pair is taken, try another.
const PORT_IN_USE: i32 = 3;

/// How many port pairs `start` tries before giving up.
const MAX_PORT_ATTEMPTS: usize = 50;

/// `scripts/ldap-lab bind` exit codes.
const BIND_ACCEPTED: i32 = 0;
const BIND_REJECTED: i32 = 1;
const BIND_UNREACHABLE: i32 = 3;

/// What an independent client (`ldapwhoami` over StartTLS, lab CA) saw when binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    /// The simple bind succeeded.
    Accepted,
    /// slapd answered `invalidCredentials` (49): wrong password, or no such account.
    Rejected,
    /// Nothing accepts connections on the StartTLS port (slapd stopped).
    Unreachable,
    /// Anything else (TLS failure, timeout, another result code), with the script's message.
    Failed(String),
}

/// The certificate slapd presents (`scripts/ldap-lab cert`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // Each test module uses the certificates it needs.
pub enum ServerCert {
    /// Signed by `ca.pem`, names 127.0.0.1 and localhost.
    Good,
    /// Signed by `ca.pem`, names only `ldap.elsewhere.example`: a name mismatch.
    OtherName,
    /// Names 127.0.0.1 and localhost, signed by `wrong-ca.pem`: an unknown issuer.
    OtherCa,
}

impl ServerCert {
    fn as_arg(self) -> &'static str {
        match self {
            ServerCert::Good => "good",
            ServerCert::OtherName => "other-name",
            ServerCert::OtherCa => "other-ca",
        }
    }
}

/// A running slapd. Dropping it stops slapd and removes its directory.
pub struct LdapLab {
    port: u16,
    // `Drop::drop` (scripts/ldap-lab down) runs before the fields drop, so the directory
    // still exists when slapd is stopped; `tempdir` then removes what is left.
    tempdir: tempfile::TempDir,
}

#[allow(dead_code)] // Each test module uses the parts it needs.
impl LdapLab {
    /// Starts slapd with `n_accounts` service accounts (`uid=svc-0001..`), with the ppolicy
    /// overlay (`pwdInHistory: 5` as the default policy) when `ppolicy` is set. Panics with
    /// the script's message if slapd does not come up.
    pub fn start(n_accounts: usize, ppolicy: bool) -> LdapLab {
        LdapLab::start_with(n_accounts, ppolicy.then_some(0))
    }

    /// Starts slapd like [`LdapLab::start`]; with `Some(q)`, the ppolicy overlay's default
    /// policy has `pwdInHistory: 5` and `pwdCheckQuality: q` (2: a value whose quality the
    /// server cannot check, such as a hash, is refused).
    pub fn start_with(n_accounts: usize, check_quality: Option<u8>) -> LdapLab {
        let quality = check_quality.map(|q| q.to_string());
        let mut extra = Vec::new();
        if let Some(q) = &quality {
            extra.extend(["--ppolicy", "--check-quality", q.as_str()]);
        }
        LdapLab::start_args(n_accounts, &extra)
    }

    /// Starts slapd with the ppolicy overlay and ACLs that hide `pwdAccountLockedTime` from
    /// rotor's bind account.
    pub fn start_hiding_locks(n_accounts: usize) -> LdapLab {
        LdapLab::start_args(n_accounts, &["--ppolicy", "--hide-lock"])
    }

    /// Starts slapd with the ppolicy overlay, `n_accounts` service accounts under
    /// `ou=service` whose locks rotor may read, and `n_vendor` accounts `uid=vnd-0001..` under
    /// `ou=vendor` whose `pwdAccountLockedTime` it may not (it may set their passwords). The
    /// inventory fragment searches `ou=service` first, then `ou=vendor`.
    pub fn start_hiding_vendor_locks(n_accounts: usize, n_vendor: usize) -> LdapLab {
        let n_vendor = n_vendor.to_string();
        LdapLab::start_args(
            n_accounts,
            &["--ppolicy", "--vendor-hiding-locks", n_vendor.as_str()],
        )
    }

    /// `scripts/ldap-lab up` with `extra` arguments.
    fn start_args(n_accounts: usize, extra: &[&str]) -> LdapLab {
        assert!(
            (1..=99_999).contains(&n_accounts),
            "an LDAP lab has 1..=99999 accounts, not {n_accounts}"
        );
        let tempdir = tempfile::Builder::new()
            .prefix("rotor-ldap-lab-")
            .tempdir()
            .expect("create a temporary directory for the LDAP lab");
        // Built before `up` runs so that `Drop` cleans up even a half-started lab.
        let mut lab = LdapLab { port: 0, tempdir };
        for _ in 0..MAX_PORT_ATTEMPTS {
            let port = NEXT_PORT.fetch_add(2, Ordering::SeqCst);
            assert!(port < 65_000, "no free port pair left for an LDAP lab");
            let mut up = lab.script();
            up.args(["up", "--dir"])
                .arg(lab.dir())
                .args(["--accounts", &n_accounts.to_string()])
                .args(["--port", &port.to_string()]);
            up.args(extra);
            let output = up
                .stdin(Stdio::null())
                .output()
                .expect("run scripts/ldap-lab up");
            match output.status.code() {
                Some(0) => {
                    eprint!("{}", String::from_utf8_lossy(&output.stdout));
                    lab.port = port;
                    return lab;
                }
                Some(PORT_IN_USE) => continue,
                _ => panic!(
                    "scripts/ldap-lab up --port {port} failed ({}):\n{}{}",
                    output.status,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            }
        }
        panic!("no free port pair for an LDAP lab after {MAX_PORT_ATTEMPTS} attempts");
    }

    /// The lab directory: `directory.yaml`, `ca.pem`, `wrong-ca.pem`, `slapd.log`, ...
    pub fn dir(&self) -> &Path {
        self.tempdir.path()
    }

    /// The `directories:` inventory fragment (YAML) naming this slapd, its CA, rotor's bind
    /// DN (credential `hospital-ldap/rotor`) and the search that finds the service accounts.
    pub fn inventory_fragment(&self) -> String {
        self.read("directory.yaml")
    }

    /// `ldap://127.0.0.1:P` (StartTLS).
    pub fn url_starttls(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:P+1`.
    pub fn url_ldaps(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.port + 1)
    }

    /// The CA that signed the server's (good) certificate.
    pub fn ca_path(&self) -> PathBuf {
        self.dir().join("ca.pem")
    }

    /// A CA unrelated to the server: a client trusting only it must refuse the connection.
    pub fn wrong_ca_path(&self) -> PathBuf {
        self.dir().join("wrong-ca.pem")
    }

    /// Secret of rotor's bind account `cn=rotor,ou=system,dc=hospital,dc=example`.
    pub fn bind_password(&self) -> String {
        self.read("rotor-bind-password")
    }

    /// Password every service account has before any rotation.
    pub fn shared_password(&self) -> String {
        self.read("shared-password")
            .trim_end_matches('\n')
            .to_owned()
    }

    /// What `ldapwhoami` sees binding as `uid` (`svc-0001`, `vnd-0001`, `rotor`, or a full DN) with
    /// `password`, over StartTLS with the lab's CA.
    pub fn bind(&self, uid: &str, password: &str) -> Bind {
        let mut child = self
            .script()
            .args(["bind", "--dir"])
            .arg(self.dir())
            .arg(uid)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run scripts/ldap-lab bind");
        // The password goes through stdin so that it never appears in a process's argv.
        let mut stdin = child.stdin.take().expect("stdin is piped");
        writeln!(stdin, "{password}").expect("write the password to scripts/ldap-lab bind");
        drop(stdin);
        let output = child
            .wait_with_output()
            .expect("wait for scripts/ldap-lab bind");
        match output.status.code() {
            Some(BIND_ACCEPTED) => Bind::Accepted,
            Some(BIND_REJECTED) => Bind::Rejected,
            Some(BIND_UNREACHABLE) => Bind::Unreachable,
            _ => Bind::Failed(format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )),
        }
    }

    /// Whether `uid` can bind with `password`. Panics if slapd gave no verdict (stopped,
    /// TLS failure): a check that "the old password fails" must not pass because the
    /// directory was unreachable.
    pub fn bind_works(&self, uid: &str, password: &str) -> bool {
        match self.bind(uid, password) {
            Bind::Accepted => true,
            Bind::Rejected => false,
            other => panic!("bind as {uid} neither succeeded nor was rejected: {other:?}"),
        }
    }

    /// Fault: stop slapd (SIGTERM), keeping its data.
    pub fn stop(&self) {
        self.run(&["stop"]);
    }

    /// Start slapd again after `stop`; returns once it answers.
    pub fn start_again(&self) {
        self.run(&["start"]);
    }

    /// Restart slapd presenting `cert` (a certificate that does not match, or the good one).
    pub fn use_cert(&self, cert: ServerCert) {
        self.run(&["cert", cert.as_arg()]);
    }

    /// Fault: delete an account (as the lab's rootdn), e.g. between plan and push.
    pub fn delete(&self, uid: &str) {
        self.run(&["delete", uid]);
    }

    /// Fault: an administrator's ppolicy lock on the account: every bind as it fails, whatever
    /// the password (needs a ppolicy lab).
    pub fn lock(&self, uid: &str) {
        self.run(&["lock", uid]);
    }

    pub fn unlock(&self, uid: &str) {
        self.run(&["unlock", uid]);
    }

    fn run(&self, args: &[&str]) -> Output {
        let (cmd, rest) = args.split_first().expect("a subcommand");
        let output = self
            .script()
            .arg(cmd)
            .arg("--dir")
            .arg(self.dir())
            .args(rest)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/ldap-lab");
        assert!(
            output.status.success(),
            "scripts/ldap-lab {} failed ({}):\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn read(&self, name: &str) -> String {
        let path = self.dir().join(name);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
    }

    fn script(&self) -> Command {
        crate::support::lab_script("ldap-lab")
    }
}

impl Drop for LdapLab {
    fn drop(&mut self) {
        crate::support::tear_down("ldap-lab", self.dir(), "slapd");
    }
}
