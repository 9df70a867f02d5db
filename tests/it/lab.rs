//! Test fixture for the lab: a fleet of real sshd hosts on loopback, built by `scripts/lab`.
//!
//! `Lab::start(n_hosts)` brings up `host-001..` on a `127.0.X.0/24` of its own and writes a
//! rotor inventory for them; dropping the `Lab` (also while a test panics) stops every sshd
//! it started and removes the hosts. The fixture never sends traffic beyond loopback.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};

/// Next `127.0.X` to try. Tests in one binary run in parallel threads; each lab takes its own
/// net. Other processes (another worktree's tests) are kept apart by `scripts/lab up`, which
/// claims the net and exits with `NET_IN_USE` if someone else holds it.
static NEXT_NET: AtomicU8 = AtomicU8::new(100);

/// `scripts/lab up` exit code: the net is taken, try another.
const NET_IN_USE: i32 = 3;

/// `scripts/lab login` exit codes besides 0 (accepted).
const LOGIN_REJECTED: i32 = 1;

/// Password `scripts/lab up` gives `svc_app` and `svc_backup` on every host by default.
const SHARED_PASSWORD: &str = "Shared-Passw0rd!";

/// A fault to inject into one host (see `scripts/lab help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // Each test module uses the faults it needs.
pub enum Fault {
    /// `/usr/sbin/chpasswd` on that host prints an error and exits 1.
    ChpasswdFails,
    /// `/usr/sbin/chpasswd` on that host reads its input and exits 0 without changing
    /// anything: the host claims success, the new password does not work.
    ChpasswdLies,
    /// `/usr/sbin/chpasswd` on that host reads its input and never answers.
    ChpasswdHangs,
    /// SIGSTOP its sshd: TCP connects, no banner ever comes.
    Stop,
    /// SIGCONT after `Stop`.
    Cont,
    /// Host down: its sshd and sessions are killed, connections are refused.
    Kill,
    /// Bring a killed host back up (a fresh namespace: earlier faults are gone).
    Start,
    /// New host key and restart: the key pinned in the inventory no longer matches.
    Rekey,
    /// `PasswordAuthentication no` in that host's sshd config, and restart: sshd offers no
    /// password login to any account (its users and passwords are kept).
    PasswordLoginOff,
}

impl Fault {
    fn as_arg(self) -> &'static str {
        match self {
            Fault::ChpasswdFails => "chpasswd-fails",
            Fault::ChpasswdLies => "chpasswd-lies",
            Fault::ChpasswdHangs => "chpasswd-hangs",
            Fault::Stop => "stop",
            Fault::Cont => "cont",
            Fault::Kill => "kill",
            Fault::Start => "start",
            Fault::Rekey => "rekey",
            Fault::PasswordLoginOff => "password-login-off",
        }
    }
}

/// How `scripts/lab sudo-user` gives a user sudo on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // Each test module uses the modes it needs.
pub enum SudoMode {
    /// `USER ALL=(ALL:ALL) ALL`: sudo asks for the user's password.
    Password,
    /// `USER ALL=(ALL:ALL) NOPASSWD: ALL`.
    Nopasswd,
    /// The password rule plus `Defaults:USER log_input`: sudo would log the commands' stdin.
    LogInput,
    /// The README's least-privilege NOPASSWD line: only the commands `linux-password` runs.
    Least,
}

impl SudoMode {
    fn as_arg(self) -> &'static str {
        match self {
            SudoMode::Password => "password",
            SudoMode::Least => "least",
            SudoMode::Nopasswd => "nopasswd",
            SudoMode::LogInput => "log-input",
        }
    }
}

/// A running lab. Dropping it tears the fleet down.
pub struct Lab {
    // `Drop::drop` (scripts/lab down) runs before the fields drop, so the directory still
    // exists when the lab is torn down; `tempdir` then removes what is left.
    host_names: Vec<String>,
    tempdir: tempfile::TempDir,
}

#[allow(dead_code)] // Each test module uses the parts it needs.
impl Lab {
    /// Starts `n_hosts` hosts (1..=250); panics with `scripts/lab`'s message if they do not
    /// all come up.
    pub fn start(n_hosts: usize) -> Lab {
        Lab::start_with(n_hosts, &[])
    }

    /// The story's fleet (`scripts/lab up --root`): root has the shared password too, the
    /// admin key sits in root's own `~/.ssh/authorized_keys`, and odd hosts permit root
    /// password logins (even ones keep `PermitRootLogin prohibit-password`).
    pub fn start_root(n_hosts: usize) -> Lab {
        Lab::start_with(n_hosts, &["--root"])
    }

    fn start_with(n_hosts: usize, extra: &[&str]) -> Lab {
        assert!(
            (1..=250).contains(&n_hosts),
            "a lab has 1..=250 hosts, not {n_hosts}"
        );
        let tempdir = tempfile::Builder::new()
            .prefix("rotor-lab-")
            .tempdir()
            .expect("create a temporary directory for the lab");
        let host_names = (1..=n_hosts).map(|idx| format!("host-{idx:03}")).collect();
        // Built before `up` runs so that `Drop` cleans up even a half-started lab.
        let lab = Lab {
            host_names,
            tempdir,
        };
        loop {
            let net_idx = NEXT_NET.fetch_add(1, Ordering::SeqCst);
            assert!(net_idx < 255, "no free 127.0.X net left for a lab");
            let net = format!("127.0.{net_idx}");
            let output = lab
                .script()
                .args(["up", "--dir"])
                .arg(lab.dir())
                .args(["--hosts", &n_hosts.to_string(), "--net", &net])
                .args(extra)
                .stdin(Stdio::null())
                .output()
                .expect("run scripts/lab up");
            match output.status.code() {
                Some(0) => {
                    eprint!("{}", String::from_utf8_lossy(&output.stdout));
                    return lab;
                }
                Some(NET_IN_USE) => continue,
                _ => panic!(
                    "scripts/lab up --net {net} failed ({}):\n{}{}",
                    output.status,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            }
        }
    }

    /// The lab directory: `inventory.yaml`, `hosts.tsv`, `known_hosts`, `admin_ed25519`,
    /// `logs/` (one sshd log per host).
    pub fn dir(&self) -> &Path {
        self.tempdir.path()
    }

    /// rotor inventory listing every host, its pinned host key and its two accounts.
    pub fn inventory_path(&self) -> PathBuf {
        self.dir().join("inventory.yaml")
    }

    /// The lab's inventory with `from` replaced by `to` (which must change it), written to
    /// `name` in the lab directory.
    pub fn inventory_replacing(&self, name: &str, from: &str, to: &str) -> PathBuf {
        let text = std::fs::read_to_string(self.inventory_path()).expect("read the inventory");
        let changed = text.replace(from, to);
        assert_ne!(text, changed, "the lab inventory has no {from:?}");
        let path = self.dir().join(name);
        std::fs::write(&path, changed).expect("write the inventory");
        path
    }

    pub fn host_names(&self) -> &[String] {
        &self.host_names
    }

    /// Password of `svc_app` and `svc_backup` on every host before any rotation.
    pub fn shared_password(&self) -> &'static str {
        SHARED_PASSWORD
    }

    /// Whether `user` can log in to `host` with `password`, using the system `ssh` client
    /// (password authentication only, host key checked). Panics if the answer is neither
    /// "accepted" nor "rejected" (host unreachable, host key mismatch).
    pub fn login_works(&self, host: &str, user: &str, password: &str) -> bool {
        let mut child = self
            .script()
            .args(["login", "--dir"])
            .arg(self.dir())
            .args([host, user])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run scripts/lab login");
        // The password goes through stdin so that it never appears in a process's argv.
        let mut stdin = child.stdin.take().expect("stdin is piped");
        writeln!(stdin, "{password}").expect("write the password to scripts/lab login");
        drop(stdin);
        let output = child
            .wait_with_output()
            .expect("wait for scripts/lab login");
        match output.status.code() {
            Some(0) => true,
            Some(LOGIN_REJECTED) => false,
            _ => panic!(
                "login to {host} as {user} neither succeeded nor was rejected ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }

    /// Whether `user` can log in to `host` with the private key `private_key` (OpenSSH text)
    /// alone, using the system `ssh` client (no agent, no other key, no password; host key
    /// checked). Panics when it cannot tell.
    pub fn key_login_works(&self, host: &str, user: &str, private_key: &str) -> bool {
        use std::os::unix::fs::OpenOptionsExt;
        let file = tempfile::Builder::new()
            .prefix("rotor-key-")
            .tempfile()
            .expect("a temporary key file");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .mode(0o600)
            .open(file.path())
            .expect("open the key file");
        f.write_all(private_key.as_bytes())
            .expect("write the key file");
        drop(f);
        let output = self
            .script()
            .args(["key-login", "--dir"])
            .arg(self.dir())
            .args([host, user])
            .arg(file.path())
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/lab key-login");
        match output.status.code() {
            Some(0) => true,
            Some(LOGIN_REJECTED) => false,
            _ => panic!(
                "key login to {host} as {user} neither succeeded nor was rejected ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }

    /// Runs `sh -c cmd` inside `host`'s mount namespace (its `/etc`, `/home`, `/root`), with
    /// stdin closed.
    pub fn exec(&self, host: &str, cmd: &str) -> Output {
        self.script()
            .args(["exec", "--dir"])
            .arg(self.dir())
            .args([host, "--", "sh", "-c", cmd])
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/lab exec")
    }

    /// Creates `user` on `host` only (home, bash) with `password` and gives it sudo as `mode`
    /// says (`scripts/lab sudo-user`; the password goes on stdin). Panics if the lab could not.
    pub fn sudo_user(&self, host: &str, user: &str, mode: SudoMode, password: &str) {
        let mut cmd = self.script();
        cmd.args(["sudo-user", "--dir"]).arg(self.dir()).args([
            "--host",
            host,
            "--user",
            user,
            "--mode",
            mode.as_arg(),
        ]);
        let output = crate::support::run_with_stdin(cmd, &format!("{password}\n"));
        assert!(
            output.status.success(),
            "scripts/lab sudo-user {host} {user} {} failed ({}):\n{}",
            mode.as_arg(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Injects `fault` into `host`; panics if the lab could not do it.
    pub fn fault(&self, host: &str, fault: Fault) {
        let output = self
            .script()
            .args(["fault", "--dir"])
            .arg(self.dir())
            .args([host, fault.as_arg()])
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/lab fault");
        assert!(
            output.status.success(),
            "scripts/lab fault {host} {} failed ({}):\n{}",
            fault.as_arg(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Replaces `command` (an absolute path) on `host` only by a shell script with `body`, in
    /// which `$REAL` is the real command and `$SEEN` a file in the lab dir where the script may
    /// record what it was fed (the test reads it back with [`Lab::seen`]).
    pub fn replace_command(&self, host: &str, command: &str, body: &str) {
        let name = Path::new(command).file_name().unwrap().to_str().unwrap();
        let real = self.dir().join("faults/real").join(name);
        let source = self.dir().join(format!("replace-{host}-{name}.sh"));
        std::fs::write(
            &source,
            format!(
                "#!/bin/bash\n# rotor lab fault: {command} replaced on {host}\nREAL='{}'\nSEEN='{}'\n{body}\n",
                real.display(),
                self.seen_path(host, name).display()
            ),
        )
        .expect("write the replacement script");
        let output = self
            .script()
            .args(["fault", "--dir"])
            .arg(self.dir())
            .args([host, "replace", command])
            .arg(&source)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/lab fault replace");
        assert!(
            output.status.success(),
            "scripts/lab fault {host} replace {command} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn seen_path(&self, host: &str, name: &str) -> PathBuf {
        self.dir().join(format!("seen-{host}-{name}"))
    }

    /// What a script of [`Lab::replace_command`] appended to `$SEEN` (empty if nothing).
    pub fn seen(&self, host: &str, command: &str) -> String {
        let name = Path::new(command).file_name().unwrap().to_str().unwrap();
        std::fs::read_to_string(self.seen_path(host, name)).unwrap_or_default()
    }

    /// After `Fault::Rekey`: trust `host`'s new key in `known_hosts`, so that `login_works`
    /// can reach it again. The inventory keeps the old key.
    pub fn trust_new_host_key(&self, host: &str) {
        let pubkey = std::fs::read_to_string(
            self.dir()
                .join("hosts")
                .join(host)
                .join("etc/ssh/ssh_host_ed25519_key.pub"),
        )
        .expect("read the host's new public key");
        let pubkey: Vec<&str> = pubkey.split_whitespace().take(2).collect();
        let tsv = std::fs::read_to_string(self.dir().join("hosts.tsv")).expect("read hosts.tsv");
        let addr = tsv
            .lines()
            .map(|l| l.split('\t').collect::<Vec<_>>())
            .find(|f| f[0] == host)
            .map(|f| f[1].to_owned())
            .unwrap_or_else(|| panic!("{host} not in hosts.tsv"));
        let path = self.dir().join("known_hosts");
        let known = std::fs::read_to_string(&path).expect("read known_hosts");
        let updated: String = known
            .lines()
            .map(|l| {
                if l.split(' ').next() == Some(addr.as_str()) {
                    format!("{addr} {}\n", pubkey.join(" "))
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(&path, updated).expect("write known_hosts");
    }

    /// The loopback address of `host` (from `hosts.tsv`).
    pub fn address(&self, host: &str) -> String {
        let tsv = std::fs::read_to_string(self.dir().join("hosts.tsv")).expect("read hosts.tsv");
        tsv.lines()
            .map(|l| l.split('\t').collect::<Vec<_>>())
            .find(|f| f[0] == host)
            .map(|f| f[1].to_owned())
            .unwrap_or_else(|| panic!("{host} not in hosts.tsv"))
    }

    /// Logs in to `host` as `user` with `password` with the system `ssh` client, with a pty
    /// (`-tt`, so sshd records the login in the host's utmp), running `sleep 600`: a session
    /// held open until the returned [`HeldSession`] is dropped. The password reaches sshpass
    /// in `SSHPASS`, never in an argument list.
    pub fn hold_session(&self, host: &str, user: &str, password: &str) -> HeldSession {
        use std::os::unix::process::CommandExt as _;
        let known = self.dir().join("known_hosts");
        let child = Command::new("sshpass")
            .process_group(0)
            .env("SSHPASS", password)
            .args(["-e", "ssh", "-tt", "-F", "/dev/null"])
            .args(["-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "UpdateHostKeys=no",
            ])
            .args(["-o", "PreferredAuthentications=password"])
            .args(["-o", "PubkeyAuthentication=no", "-o", "ConnectTimeout=5"])
            .args(["-o", "LogLevel=ERROR"])
            .arg(format!("{user}@{}", self.address(host)))
            .args(["sleep", "600"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshpass ssh (Debian packages sshpass, openssh-client)");
        HeldSession { child }
    }

    fn script(&self) -> Command {
        crate::support::lab_script("lab")
    }
}

/// An SSH session [`Lab::hold_session`] opened; dropping it ends it.
pub struct HeldSession {
    child: std::process::Child,
}

impl HeldSession {
    /// Whether the client is still running (it exits when the login fails).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for HeldSession {
    fn drop(&mut self) {
        // A process group of its own (its id is sshpass's pid): sshpass and the ssh it
        // started, and nothing else.
        crate::support::kill_group(&mut self.child);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        crate::support::tear_down("lab", self.dir(), "sshds");
    }
}
