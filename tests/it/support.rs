//! Shared helpers of the integration tests: a vault of its own and the real `rotor` binary to
//! run against it, and readers for the JSON report.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::lab::Lab;

/// A vault in its own temp dir and a way to run the real `rotor` binary against it.
pub struct Rotor {
    pub data: tempfile::TempDir,
}

#[allow(dead_code)] // Each test module uses the parts it needs.
impl Rotor {
    /// A fresh vault (`rotor init`).
    pub fn init() -> Rotor {
        let r = Rotor::without_vault();
        r.init_vault();
        r
    }

    /// The temp dir only, for tests that must prepare it (e.g. mount a filesystem on it)
    /// before `init_vault`.
    pub fn without_vault() -> Rotor {
        Rotor {
            data: tempfile::tempdir().unwrap(),
        }
    }

    pub fn init_vault(&self) {
        let out = self.run(&["init"]);
        assert!(
            out.status.success(),
            "rotor init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn vault_dir(&self) -> std::path::PathBuf {
        self.data.path().join("vault")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rotor"));
        // Never a terminal: a developer running the tests at one is not asked anything.
        c.args(args)
            .stdin(Stdio::null())
            .env("ROTOR_DATA_DIR", self.vault_dir())
            .env("ROTOR_LOG", "debug")
            .env_remove("ROTOR_LAB_PAUSE_AT")
            .env_remove("ROTOR_LAB_HOLD_AT");
        c
    }

    /// Runs `rotor ARGS` with the lab hook that hangs it right after the first rotation
    /// reaches `phase` (`staged` or `applied`), and SIGKILLs it there: a crash at that point.
    pub fn kill_at(&self, args: &[&str], phase: &str) {
        let pause_file = self.data.path().join("paused");
        let _ = std::fs::remove_file(&pause_file);
        let mut child = self
            .cmd(args)
            .env("ROTOR_LAB_PAUSE_AT", phase)
            .env("ROTOR_LAB_PAUSE_FILE", &pause_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !pause_file.exists() {
            assert!(Instant::now() < deadline, "rotor never reached {phase}");
            assert!(
                child.try_wait().unwrap().is_none(),
                "rotor exited before reaching {phase}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    /// `rotor rotate -i INV --all --output json`.
    pub fn rotate_all(&self, inv: &str) -> Output {
        self.run(&["rotate", "-i", inv, "--all", "--output", "json"])
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Output {
        run_with_stdin(self.cmd(args), stdin)
    }

    pub fn show(&self, cred: &str) -> Option<String> {
        let out = self.run(&["show", cred, "--reason", "test check"]);
        out.status.success().then(|| {
            String::from_utf8(out.stdout)
                .unwrap()
                .trim_end_matches('\n')
                .to_owned()
        })
    }

    /// Every byte of the vault's files, for leak checks.
    pub fn vault_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for e in std::fs::read_dir(self.vault_dir()).unwrap() {
            all.extend(std::fs::read(e.unwrap().path()).unwrap());
        }
        all
    }

    /// `rotor rotate -i LAB_INVENTORY --all --output json EXTRA...`, timed.
    pub fn rotate_all_json(&self, lab: &Lab, extra: &[&str]) -> Run {
        let inv = lab.inventory_path();
        let mut args = vec!["rotate", "-i", inv.to_str().unwrap(), "--all"];
        args.extend(["--output", "json"]);
        args.extend(extra);
        let started = Instant::now();
        let output = self.run(&args);
        Run {
            elapsed: started.elapsed(),
            output,
        }
    }
}

/// Runs `cmd` with `stdin` written to it, and waits for its output.
pub fn run_with_stdin(mut cmd: Command, stdin: &str) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// One finished `rotor` run.
pub struct Run {
    pub elapsed: Duration,
    pub output: Output,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// The JSON report on stdout; panics with stdout and stderr if there is none.
    pub fn report(&self) -> serde_json::Value {
        json(&self.output)
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): exit {:?}, stdout {} stderr {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Every `(host, account)` of a lab.
pub fn creds(lab: &Lab) -> Vec<(String, String)> {
    lab.host_names()
        .iter()
        .flat_map(|h| ["svc_app", "svc_backup"].map(|a| (h.clone(), a.to_owned())))
        .collect()
}

/// The report's entry for `cred` (`HOST/ACCOUNT`); panics if it has none.
pub fn result_of<'a>(report: &'a serde_json::Value, cred: &str) -> &'a serde_json::Value {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["cred"] == cred)
        .unwrap_or_else(|| panic!("{cred} not in report:\n{report:#}"))
}

/// Leak check for runs that touched or were refused by a host: every secret the run could have
/// seen must stay out of its stdout and stderr (`ROTOR_LOG=debug`, set by [`Rotor::cmd`]) and
/// out of the vault's files in clear. Record it with [`LeakCheck::before`] before the run, then
/// call [`LeakCheck::assert_clean`] once with the run's outputs.
pub struct LeakCheck {
    /// `(what, secret)`: the faulty hosts' shadow hashes as they were before the run (what
    /// rotor saves as the restore point and may write back with `chpasswd -e`).
    hashes: Vec<(String, String)>,
}

#[allow(dead_code)] // Not every test module uses it.
impl LeakCheck {
    /// Reads the shadow hash of every lab account on each of `hosts` (`getent shadow`, 2nd
    /// field), inside the host's own namespace.
    pub fn before(lab: &Lab, hosts: &[&str]) -> LeakCheck {
        let mut hashes = Vec::new();
        for (host, account) in creds(lab)
            .into_iter()
            .filter(|(h, _)| hosts.contains(&h.as_str()))
        {
            let out = lab.exec(&host, &format!("getent shadow {account}"));
            assert!(out.status.success(), "getent shadow {account} on {host}");
            let line = String::from_utf8(out.stdout).unwrap();
            let hash = line.split(':').nth(1).unwrap_or_default().to_owned();
            // A real crypt(3) hash, so the check below cannot pass vacuously.
            assert!(
                hash.starts_with('$') && hash.len() > 20,
                "{host}/{account}: no shadow hash to check for"
            );
            hashes.push((format!("the shadow hash of {host}/{account}"), hash));
        }
        LeakCheck { hashes }
    }

    /// Asserts that none of the recorded hashes, no current secret in the vault (`rotor show`
    /// of every lab credential, taken now) and not the lab's shared password occurs in any of
    /// `outputs` or in the vault's files.
    pub fn assert_clean(&self, lab: &Lab, rotor: &Rotor, outputs: &[&Output]) {
        let mut secrets = self.hashes.clone();
        for (host, account) in creds(lab) {
            if let Some(secret) = rotor.show(&format!("{host}/{account}")) {
                secrets.push((format!("the current password of {host}/{account}"), secret));
            }
        }
        secrets.push((
            "the lab's shared password".to_owned(),
            lab.shared_password().to_owned(),
        ));
        assert_no_leak(&secrets, rotor, outputs);
    }
}

/// Asserts that no part of any of `secrets` (`(what, secret)`) that could give it away is in
/// the vault's files or in any of `outputs` (see [`Leaks`]).
pub fn assert_no_leak(secrets: &[(String, String)], rotor: &Rotor, outputs: &[&Output]) {
    let leaks = Leaks::new(secrets.iter().map(|(what, s)| (what.as_str(), s.as_str())));
    leaks.assert_absent("the vault's files", &rotor.vault_bytes());
    for (run_idx, out) in outputs.iter().enumerate() {
        leaks.assert_absent(&format!("the stdout of run {run_idx}"), &out.stdout);
        leaks.assert_absent(&format!("the stderr (logs) of run {run_idx}"), &out.stderr);
    }
}

/// What a leak check searches for, for many secrets at once: each secret whole and every run
/// of 8 of its characters, in the text as it is and in the text with backslashes removed, so
/// that a shell-quoted (`printf %q`) copy, which escapes symbols, is found too.
pub struct Leaks<'a> {
    /// Needle -> what it gives away.
    needles: Vec<(String, &'a str)>,
}

impl<'a> Leaks<'a> {
    pub fn new(secrets: impl IntoIterator<Item = (&'a str, &'a str)>) -> Leaks<'a> {
        let mut needles = Vec::new();
        for (what, secret) in secrets {
            assert!(!secret.is_empty(), "{what} is empty");
            let chars: Vec<char> = secret.chars().collect();
            needles.push((secret.to_owned(), what));
            needles.extend(chars.windows(8).map(|w| (w.iter().collect(), what)));
        }
        Leaks { needles }
    }

    /// The first needle found in `haystack` (or in it without backslashes), and what it is.
    pub fn find(&self, haystack: &[u8]) -> Option<(&'a str, &str)> {
        let unquoted: Vec<u8> = haystack.iter().copied().filter(|&b| b != b'\\').collect();
        for text in [haystack, &unquoted[..]] {
            if let Some(found) = find_any(text, self.needles.iter().map(|(n, _)| n.as_str())) {
                let what = self
                    .needles
                    .iter()
                    .find(|(n, _)| n == found)
                    .map(|(_, w)| *w)
                    .unwrap_or("?");
                return Some((what, found));
            }
        }
        None
    }

    pub fn assert_absent(&self, place: &str, haystack: &[u8]) {
        if let Some((what, part)) = self.find(haystack) {
            panic!("{what} is in {place} (as `{part}`)");
        }
    }
}

/// The first of `needles` that occurs in `haystack`, found in one pass per distinct needle
/// length (a hash lookup per position), so thousands of secrets can be checked against a
/// vault file of megabytes quickly even in a debug build.
pub fn find_any<'a>(
    haystack: &[u8],
    needles: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut by_len: std::collections::HashMap<usize, std::collections::HashMap<&[u8], &'a str>> =
        std::collections::HashMap::new();
    for n in needles {
        by_len.entry(n.len()).or_default().insert(n.as_bytes(), n);
    }
    for (len, set) in &by_len {
        if *len == 0 || *len > haystack.len() {
            continue;
        }
        if let Some(found) = haystack.windows(*len).find_map(|w| set.get(w)) {
            return Some(found);
        }
    }
    None
}

/// One of the lab scripts (`lab`, `ldap-lab`) of this repository.
pub fn lab_script(name: &str) -> Command {
    Command::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("scripts")
            .join(name),
    )
}

/// `scripts/NAME down --dir DIR` for a fixture's `Drop`. Runs during unwinding too, so it must
/// not panic (a panic while panicking aborts and hides the test's own failure): problems are
/// only reported.
pub fn tear_down(script: &str, dir: &std::path::Path, what: &str) {
    match lab_script(script)
        .args(["down", "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .output()
    {
        Ok(output) if output.status.success() => {}
        Ok(output) => eprintln!(
            "scripts/{script} down --dir {} failed ({}); {what} may be left running:\n{}",
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(err) => eprintln!("could not run scripts/{script} down: {err}"),
    }
}

/// Polls `ready` until it holds, failing the test after `limit` with `what` (the one
/// poll-with-deadline of the tests: no sleep-and-hope).
pub fn poll(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A key pair made by `ssh-keygen`, not rotor, commented `comment`, in `dir/name`:
/// (private key text, public line).
pub fn keygen(dir: &std::path::Path, name: &str, comment: &str) -> (String, String) {
    let path = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    (
        std::fs::read_to_string(&path).unwrap(),
        std::fs::read_to_string(path.with_extension("pub"))
            .unwrap()
            .trim_end()
            .to_owned(),
    )
}

/// Kills `child`'s process group (started with `process_group(0)`, so its id is the child's
/// pid: only what the test started) and reaps the child.
pub fn kill_group(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.kill();
    let _ = child.wait();
}
