//! The interpreter: [`RecipeHost`] runs each credential's recipe over one [`Shell`] (a host's
//! admin session) and implements [`Target`] for the engine.
//!
//! Invariants:
//! - A command line is built only from a step's `run` (or a built-in action's fixed words)
//!   and values that cannot carry shell syntax: the validated account and host names, checked
//!   variables and the checked home directory. Secrets and saved parts go on stdin.
//! - No error built here carries a step's output: every step runs inside a rotation, where
//!   it is fed a secret, reads one (a shadow hash, a config file holding the password) or
//!   runs a command (a reload) that may print the file it reads. Only rotor's own words,
//!   the step's `run` as written and its exit status or signal are shown.
//! - The restore point of a recipe with one saved part is that part, byte for byte (the bare
//!   shadow hash of `linux-password`, as before recipes): vaults with open rotations recover.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use zeroize::Zeroizing;

use super::template::{Piece, Template};
use super::{Body, Command, Recipe, ReplaceLine, Step, Steps, VarKind, WhichKey};
use crate::connector::ssh::ExecOutput;
use crate::connector::{ConnectorError, FaultClass};
use crate::credential::{AccountName, CredentialId, HostName};
use crate::secret::Secret;
use crate::target::{CredentialKind, Target};

/// What a recipe needs from a host: commands over its admin session and fresh logins as an
/// account. The SSH implementation is `target::linux::SshShell`; tests use a fake.
pub trait Shell {
    fn host(&self) -> &HostName;
    /// Runs one command line (never holding a secret) as root, with `stdin`. The shell makes
    /// it root as its connect user needs (the SSH shell: through sudo, see `target::sudo`).
    fn exec(&mut self, command: &str, stdin: &[u8]) -> Result<ExecOutput, ConnectorError>;
    /// A fresh SSH login as `account` with `password`.
    fn password_login(
        &mut self,
        account: &AccountName,
        password: &Secret,
    ) -> Result<(), ConnectorError>;
    /// A fresh SSH login as `account` with `private_key` (OpenSSH format), no other key.
    fn key_login(
        &mut self,
        account: &AccountName,
        private_key: &Secret,
    ) -> Result<(), ConnectorError>;
    /// rotor just pushed `new` as `cred`'s secret on this host (`None`: it restored the saved
    /// one). A shell that logs in (or runs sudo) with that credential uses it from now on.
    fn secret_changed(&mut self, _cred: &CredentialId, _new: Option<&Secret>) {}
    /// Whether `cred`'s secret is what this shell logs in with (the host's managed connect
    /// identity): its proof must be a login.
    fn logs_in_with(&self, _cred: &CredentialId) -> bool {
        false
    }
    /// Whether a fresh login as the connect user with the inventory's connect key file (the
    /// bootstrap identity) is accepted. `None` when there is no such file or no answer.
    fn bootstrap_accepted(&mut self) -> Option<bool> {
        None
    }
}

/// The `authorized-keys-*` actions: editing `~/.ssh/authorized_keys` is the SSH-key work's
/// (`src/sshkey.rs`); the interpreter calls it through this hook with the host's shell.
pub trait AuthorizedKeys: Send {
    /// The entries rotor manages, as the restore point part (`authorized-keys-read`): those
    /// it installed, and the keys `previous` names where the file has them.
    fn read(
        &self,
        shell: &mut dyn Shell,
        cred: &CredentialId,
        home: &str,
        previous: &Previous<'_>,
    ) -> Result<String, ConnectorError>;
    /// Adds the public half of `new` (an OpenSSH private key).
    fn add(
        &self,
        shell: &mut dyn Shell,
        cred: &CredentialId,
        home: &str,
        new: &Secret,
    ) -> Result<(), ConnectorError>;
    /// Removes the public half of `key` (`WhichKey::New`), or every rotor key listed in
    /// `managed` except `key`'s (`WhichKey::Previous`). Idempotent.
    fn remove(
        &self,
        shell: &mut dyn Shell,
        cred: &CredentialId,
        home: &str,
        which: WhichKey,
        managed: &str,
        key: &Secret,
    ) -> Result<Vec<String>, ConnectorError>;
    /// Whether `managed` (read just now) lists the public half of `key`.
    fn holds(&self, managed: &str, key: &Secret) -> Option<bool>;
}

/// Which keys besides those rotor installed a key credential's rotation replaces.
pub struct Previous<'a> {
    /// The vault's current key (an enrolled key someone else installed).
    pub known: Option<&'a Secret>,
    /// Keys that are the credential's previous ones wherever the file has them (the
    /// bootstrap connect key every host shared).
    pub also: &'a [crate::sshkey::PublicKey],
    /// Breach mode: every key in the file is replaced, and the new key is left alone in it.
    pub every_key: bool,
}

/// What the error says instead of the output of a step that handled a secret.
pub(crate) const OUTPUT_WITHHELD: &str = "its output is not shown because the step handles a secret; run the step by hand on the host to see it";

/// How a step ended, for an error message: its exit status or the signal that killed it.
/// Never the step's output (see the module's invariants).
pub(crate) fn ended(out: &ExecOutput) -> String {
    match &out.signal {
        // The signal name comes from the host: keep it to what a signal name can be.
        Some(sig) => format!(
            "killed by SIG{}",
            sig.chars()
                .filter(char::is_ascii_alphanumeric)
                .take(16)
                .collect::<String>()
        ),
        None => format!("exit status {}", out.status),
    }
}

/// Field `field` (1-based) of the line whose first field is the account. Not simply the
/// first line: a shell startup file on the host may print before the command does, and that
/// text must not become the "hash" that a rollback writes back and then compares against.
pub(crate) fn account_field(
    text: &str,
    account: &AccountName,
    field: usize,
    separator: &str,
) -> Option<String> {
    let mut lines = text
        .lines()
        .filter(|line| line.split(separator).next() == Some(account.as_str()));
    // Exactly one such line: a banner that happens to start with the account's name makes
    // the output ambiguous, and an ambiguous restore point is none.
    let line = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    line.split(separator)
        .nth(field.saturating_sub(1))
        .map(str::to_owned)
}

/// The first line of a restore point of several parts; a one-part restore point is the part.
const PARTS_HEADER: &str = "rotor-restore-point-v1\n";

/// The restore point's parts by name, in the recipe's order; zeroized on drop.
type Parts = Vec<(String, Zeroizing<String>)>;

fn encode(parts: &Parts) -> Secret {
    if let [(_, only)] = parts.as_slice() {
        return Secret::new(only.to_string());
    }
    let mut text = Zeroizing::new(String::from(PARTS_HEADER));
    for (name, value) in parts {
        text.push_str(&format!("{name} {}\n", value.len()));
        text.push_str(value);
        text.push('\n');
    }
    Secret::new(text.to_string())
}

fn decode(steps: &Steps, saved: &Secret) -> Option<Parts> {
    match steps.parts.as_slice() {
        [] => Some(Vec::new()),
        [only] => Some(vec![(
            only.clone(),
            Zeroizing::new(saved.expose().to_owned()),
        )]),
        names => {
            let mut rest = saved.expose().strip_prefix(PARTS_HEADER)?;
            let mut parts = Vec::new();
            for name in names {
                let (head, after) = rest.split_once('\n')?;
                let (got, len) = head.split_once(' ')?;
                let len: usize = len.parse().ok()?;
                if got != name || after.len() < len + 1 || !after.is_char_boundary(len) {
                    return None;
                }
                parts.push((name.clone(), Zeroizing::new(after[..len].to_owned())));
                rest = after[len..].strip_prefix('\n')?;
            }
            rest.is_empty().then_some(parts)
        }
    }
}

/// Which recipe a credential runs, with the values of its variables.
struct Assignment {
    recipe: Arc<Recipe>,
    vars: BTreeMap<String, String>,
}

/// A host's credentials and their recipes, over one shell: implements [`Target`].
pub struct RecipeHost<S> {
    shell: S,
    accounts: HashMap<CredentialId, Assignment>,
    keys: Box<dyn AuthorizedKeys>,
    /// Home directories read so far (`{home}`), by account.
    homes: HashMap<AccountName, String>,
    /// The vault's current secret per credential, as the driver told it
    /// ([`Target::known_current`]): for a key, the account's previous key.
    known: HashMap<CredentialId, Secret>,
    /// Keys that are a key credential's previous ones wherever a file has them (the
    /// bootstrap connect key): [`RecipeHost::also_previous`].
    also: HashMap<CredentialId, Vec<crate::sshkey::PublicKey>>,
    /// Breach mode ([`Target::breach`]): every key credential rotated on this host replaces
    /// its whole `authorized_keys`. Also the key credentials whose open rotation saved its
    /// restore point that way (recovery, [`Target::resume`]).
    breach: bool,
    every_key: std::collections::HashSet<CredentialId>,
    /// What the report should say about a credential (the proof used, keys removed), until
    /// the driver takes it ([`Target::notes`]).
    notes: HashMap<CredentialId, Vec<String>>,
}

/// The values a step is filled with.
struct Fill<'a> {
    cred: &'a CredentialId,
    vars: &'a BTreeMap<String, String>,
    recipe: &'a Recipe,
    home: Option<&'a str>,
    secret: Option<&'a Secret>,
    parts: &'a Parts,
}

/// The phase a step runs in, for its error's class and words.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Read,
    Set,
    Prove,
    Undo,
    Retire,
}

impl<S: Shell> RecipeHost<S> {
    /// `accounts`: each credential on the host with its recipe and its variables' values (the
    /// inventory checked them; a missing one takes the playbook's default).
    pub fn new(
        shell: S,
        accounts: impl IntoIterator<Item = (CredentialId, Arc<Recipe>, BTreeMap<String, String>)>,
    ) -> RecipeHost<S> {
        RecipeHost {
            shell,
            accounts: accounts
                .into_iter()
                .map(|(name, recipe, vars)| (name, Assignment { recipe, vars }))
                .collect(),
            keys: Box::new(super::keys::ShellAuthorizedKeys),
            homes: HashMap::new(),
            known: HashMap::new(),
            also: HashMap::new(),
            breach: false,
            every_key: Default::default(),
            notes: HashMap::new(),
        }
    }

    /// `key` is one of `cred`'s previous keys wherever a file has it (the bootstrap connect
    /// key): reading the restore point lists it, so retiring removes it.
    /// `None`: the bootstrap key's public half could not be read, so it cannot be removed;
    /// the login with it after retiring still tells (a warning note when it works).
    pub fn also_previous(&mut self, cred: &CredentialId, key: Option<crate::sshkey::PublicKey>) {
        self.also.entry(cred.clone()).or_default().extend(key);
    }

    /// Where sshd refuses a password login as the account (Debian's `PermitRootLogin
    /// prohibit-password` for root, an `AllowUsers` or `Match` rule), the proof is the hash
    /// the host stores, read back over the admin session and checked here against the new
    /// password: the password is what the account's `su`, console and sudo take. `Some` when
    /// that proves it; said in the report.
    fn proved_by_hash(
        &mut self,
        cred: &CredentialId,
        secret: &Secret,
        recipe: &Recipe,
    ) -> Option<()> {
        let steps = Self::steps(recipe, cred).ok()?;
        let hash_part = steps.password_hash.as_ref()?;
        let parts = self.read(cred).ok()?;
        let (_, hash) = parts.iter().find(|(n, _)| n == hash_part)?;
        let matches = crate::password_hash::matches(&Secret::new(hash.to_string()), secret);
        if matches != Some(true) {
            return None;
        }
        tracing::info!(cred = %cred, "sshd refused a password login; the stored hash proves the new password");
        self.notes.entry(cred.clone()).or_default().push(format!(
            "proof: the stored password hash. sshd takes no password login as {} here (PermitRootLogin prohibit-password for root, PasswordAuthentication no, or a Match rule), so the hash read back over the admin session was checked against the new password: it matches",
            cred.account
        ));
        Some(())
    }

    /// Connects the `authorized-keys-*` actions to `keys`.
    pub fn with_authorized_keys(mut self, keys: Box<dyn AuthorizedKeys>) -> RecipeHost<S> {
        self.keys = keys;
        self
    }

    pub fn shell(&self) -> &S {
        &self.shell
    }

    #[cfg(test)]
    pub(crate) fn shell_mut(&mut self) -> &mut S {
        &mut self.shell
    }

    fn assignment(
        &self,
        cred: &CredentialId,
    ) -> Result<(Arc<Recipe>, BTreeMap<String, String>), ConnectorError> {
        let Some(a) = self.accounts.get(cred) else {
            return Err(ConnectorError::new(
                FaultClass::Protocol,
                format!("{cred}: the inventory gives this account no playbook on the host"),
            ));
        };
        Ok((a.recipe.clone(), a.vars.clone()))
    }

    fn steps<'r>(recipe: &'r Recipe, cred: &CredentialId) -> Result<&'r Steps, ConnectorError> {
        match &recipe.body {
            Body::Steps(steps) => Ok(steps),
            Body::Adapter(adapter) => Err(ConnectorError::new(
                FaultClass::Protocol,
                format!(
                    "{cred}: playbook `{}` is run by rotor's {adapter} adapter, not on a host; give the account a host playbook such as linux-password",
                    recipe.name
                ),
            )),
        }
    }

    /// The account's home directory (`getent passwd`, 6th field), read once and checked as a
    /// path, since it goes into command lines.
    fn home(&mut self, cred: &CredentialId) -> Result<String, ConnectorError> {
        if let Some(home) = self.homes.get(&cred.account) {
            return Ok(home.clone());
        }
        let run = "getent passwd -- {account}";
        let out = self
            .shell
            .exec(&format!("getent passwd -- {}", cred.account), b"")?;
        if out.status == 2 {
            return Err(missing(cred));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let home = (out.status == 0)
            .then(|| account_field(&text, &cred.account, 6, ":"))
            .flatten()
            .filter(|h| VarKind::Path.check(h).is_ok());
        let Some(home) = home else {
            return Err(ConnectorError::new(
                FaultClass::Protocol,
                format!(
                    "{cred}: reading the account's home directory failed or gave a path rotor will not put in a command line (`{run}`: {}); it must be absolute and of letters, digits, '.', '_', '-' and '/'",
                    ended(&out)
                ),
            ));
        };
        self.homes.insert(cred.account.clone(), home.clone());
        Ok(home)
    }

    /// Runs one phase's steps. `parts` is the restore point (read so far, in `Read`).
    fn run_phase(
        &mut self,
        cred: &CredentialId,
        phase: Phase,
        secret: Option<&Secret>,
        parts: &mut Parts,
    ) -> Result<(), ConnectorError> {
        let (recipe, vars) = self.assignment(cred)?;
        let steps = Self::steps(&recipe, cred)?;
        let list = match phase {
            Phase::Read => &steps.read_restore_point,
            Phase::Set => &steps.set,
            Phase::Prove => &steps.prove,
            Phase::Undo => &steps.undo,
            Phase::Retire => &steps.retire,
        };
        let needs_home = list
            .iter()
            .any(|s| s.templates().any(|t| t.uses(&Piece::Home)))
            || list.iter().any(|s| {
                matches!(
                    s,
                    Step::AuthorizedKeysRead { .. }
                        | Step::AuthorizedKeysAdd
                        | Step::AuthorizedKeysRemove { .. }
                )
            });
        let home = if needs_home {
            Some(self.home(cred)?)
        } else {
            None
        };
        for step in list {
            let fill = Fill {
                cred,
                vars: &vars,
                recipe: &recipe,
                home: home.as_deref(),
                secret,
                parts,
            };
            let saved = self.step(step, phase, &fill)?;
            if let Some(part) = saved {
                parts.push(part);
            }
        }
        Ok(())
    }

    /// Runs one step; a step that saves gives the part back.
    fn step(
        &mut self,
        step: &Step,
        phase: Phase,
        fill: &Fill<'_>,
    ) -> Result<Option<(String, Zeroizing<String>)>, ConnectorError> {
        let cred = fill.cred;
        match step {
            Step::Command(cmd) | Step::Check(cmd) => {
                let out = self.exec_command(cmd, fill)?;
                self.judge(cmd, &out, phase, fill, matches!(step, Step::Check(_)))
            }
            Step::PasswordLogin => {
                let secret = fill
                    .secret
                    .ok_or_else(|| internal(cred, "a login without a secret"))?;
                match self.shell.password_login(&cred.account, secret) {
                    Ok(()) => Ok(None),
                    // sshd takes no password login for the account: none offered at all
                    // (`Refused`: PasswordAuthentication no, a Match rule), or root's password
                    // rejected, as PermitRootLogin prohibit-password does whatever the
                    // password. The stored hash may prove it then. Not for another account's
                    // rejection (an expired or denied account: its password does not log in,
                    // and recovery undoes rotor's change rather than keep it), and never for
                    // the password rotor itself logs in with, where only a login proves the
                    // second path.
                    Err(e)
                        if (e.class == FaultClass::Refused
                            || (e.class == FaultClass::VerifyFailed
                                && cred.account.as_str() == "root"))
                            && !self.shell.logs_in_with(cred) =>
                    {
                        self.proved_by_hash(cred, secret, fill.recipe)
                            .map(|()| None)
                            .ok_or(e)
                    }
                    Err(e) => Err(e),
                }
            }
            Step::KeyLogin => {
                let secret = fill
                    .secret
                    .ok_or_else(|| internal(cred, "a login without a key"))?;
                self.shell.key_login(&cred.account, secret).map(|()| None)
            }
            Step::ReadFile { path, save } => {
                let path = render_path(path, fill)?;
                let shown = format!("read-file {path}");
                let out = self.shell.exec(&read_file_script(&path), b"")?;
                if let Some(refusal) = unsafe_file(cred, &path, out.status) {
                    return Err(refusal);
                }
                if out.stdout.len() > MAX_FILE_BYTES {
                    return Err(ConnectorError::new(
                        FaultClass::Refused,
                        format!(
                            "{cred}: {path} is larger than the {MAX_FILE_BYTES} bytes rotor edits; is it the right file?"
                        ),
                    ));
                }
                if out.status != 0 {
                    return Err(ConnectorError::new(
                        FaultClass::Protocol,
                        format!(
                            "{cred}: reading {path} failed (`{shown}`: {}); does the file exist, and may the connect user read it? ({OUTPUT_WITHHELD})",
                            ended(&out)
                        ),
                    ));
                }
                let text = std::str::from_utf8(&out.stdout).map_err(|_| {
                    ConnectorError::new(
                        FaultClass::Protocol,
                        format!("{cred}: {path} is not UTF-8 text; rotor edits text files only"),
                    )
                })?;
                Ok(Some((save.clone(), Zeroizing::new(text.to_owned()))))
            }
            Step::WriteFile {
                path,
                content,
                replace_line,
            } => {
                let path = render_path(path, fill)?;
                let mut text = render(content, fill)?;
                if let Some(replace) = replace_line {
                    text = replace_lines(&text, replace, fill, &path)?;
                }
                let out = self
                    .shell
                    .exec(&write_file_script(&path), text.as_bytes())?;
                if let Some(refusal) = unsafe_file(cred, &path, out.status) {
                    return Err(refusal);
                }
                match out.status {
                    0 => Ok(None),
                    3 => Err(ConnectorError::new(
                        FaultClass::Refused,
                        format!(
                            "{cred}: {path} does not exist, so there is no owner and mode to keep; create the file (or fix the playbook's path), then run again"
                        ),
                    )),
                    _ => Err(ConnectorError::new(
                        FaultClass::Refused,
                        format!(
                            "{cred}: writing {path} failed (`write-file {path}`: {}); {OUTPUT_WITHHELD}",
                            ended(&out)
                        ),
                    )),
                }
            }
            Step::AuthorizedKeysRead { save } => {
                let home = fill.home.unwrap_or_default().to_owned();
                let previous = Previous {
                    known: self.known.get(cred),
                    also: self.also.get(cred).map_or(&[], Vec::as_slice),
                    every_key: self.every_key.contains(cred),
                };
                let managed = self.keys.read(&mut self.shell, cred, &home, &previous)?;
                Ok(Some((save.clone(), Zeroizing::new(managed))))
            }
            Step::AuthorizedKeysAdd => {
                let secret = fill.secret.ok_or_else(|| internal(cred, "adding no key"))?;
                let home = fill.home.unwrap_or_default().to_owned();
                self.keys
                    .add(&mut self.shell, cred, &home, secret)
                    .map(|()| None)
            }
            Step::AuthorizedKeysRemove { which } => {
                let secret = fill
                    .secret
                    .ok_or_else(|| internal(cred, "removing no key"))?;
                let home = fill.home.unwrap_or_default().to_owned();
                let managed = fill
                    .parts
                    .first()
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default();
                let removed =
                    self.keys
                        .remove(&mut self.shell, cred, &home, *which, &managed, secret)?;
                let notes = self.notes.entry(cred.clone()).or_default();
                notes.extend(
                    removed
                        .into_iter()
                        .map(|line| format!("removed from authorized_keys: {line}")),
                );
                Ok(None)
            }
        }
    }

    fn exec_command(
        &mut self,
        cmd: &Command,
        fill: &Fill<'_>,
    ) -> Result<ExecOutput, ConnectorError> {
        // `load` refuses a secret in `run`; a recipe built some other way must not get one
        // into a command line either.
        if !cmd.run.secrets().is_empty() {
            return Err(internal(fill.cred, "a secret in a command line"));
        }
        let line = render(&cmd.run, fill)?;
        let input = match &cmd.stdin {
            Some(t) => render(t, fill)?,
            None => Zeroizing::new(String::new()),
        };
        self.shell.exec(&line, input.as_bytes())
    }

    /// A command's outcome: its saved part, or the error its phase calls for.
    fn judge(
        &self,
        cmd: &Command,
        out: &ExecOutput,
        phase: Phase,
        fill: &Fill<'_>,
        is_check: bool,
    ) -> Result<Option<(String, Zeroizing<String>)>, ConnectorError> {
        let cred = fill.cred;
        let run = &cmd.run_text;
        if phase == Phase::Read && cmd.missing_exit == Some(out.status) {
            return Err(missing(cred));
        }
        if out.status != cmd.expect_status || out.signal.is_some() {
            let expected = if cmd.expect_status == 0 {
                String::new()
            } else {
                format!(", expected exit status {}", cmd.expect_status)
            };
            let (class, message) = match phase {
                Phase::Read => (
                    FaultClass::Protocol,
                    format!(
                        "{cred}: {} (`{run}`: {}{expected}); does the connect user have root or sudo rights? ({OUTPUT_WITHHELD})",
                        cmd.failure
                            .as_deref()
                            .unwrap_or("reading the restore point failed"),
                        ended(out)
                    ),
                ),
                Phase::Prove if is_check => (
                    FaultClass::VerifyFailed,
                    format!(
                        "{cred}: {} (`{run}`: {}{expected}); {OUTPUT_WITHHELD}",
                        cmd.failure
                            .as_deref()
                            .unwrap_or("the check rejected the credential"),
                        ended(out)
                    ),
                ),
                _ => {
                    let default = match (phase, fill.recipe.kind) {
                        (Phase::Set, CredentialKind::Password) => {
                            "the host refused the new password"
                        }
                        (Phase::Set, CredentialKind::SshKey) => "the host refused the new key",
                        (Phase::Undo, CredentialKind::Password) => {
                            "restoring the saved password hash failed"
                        }
                        (Phase::Undo, CredentialKind::SshKey) => "restoring the saved keys failed",
                        (Phase::Prove, _) => "a proof step failed",
                        _ => "removing the old credential failed",
                    };
                    (
                        FaultClass::Refused,
                        format!(
                            "{cred}: {} (`{run}`: {}{expected}); {OUTPUT_WITHHELD}",
                            cmd.failure.as_deref().unwrap_or(default),
                            ended(out)
                        ),
                    )
                }
            };
            return Err(ConnectorError::new(class, message));
        }
        let Some(save) = &cmd.save else {
            return Ok(None);
        };
        let text = Zeroizing::new(String::from_utf8_lossy(&out.stdout).into_owned());
        let value = match save.field {
            None => Some(text.to_string()),
            Some(field) => account_field(&text, &cred.account, field, &save.separator)
                .filter(|f| !f.is_empty()),
        };
        match value {
            Some(v) => Ok(Some((save.name.clone(), Zeroizing::new(v)))),
            None => Err(ConnectorError::new(
                FaultClass::Protocol,
                format!("{cred}: unexpected output while reading the restore point"),
            )),
        }
    }

    fn read(&mut self, cred: &CredentialId) -> Result<Parts, ConnectorError> {
        let mut parts = Vec::new();
        self.run_phase(cred, Phase::Read, None, &mut parts)?;
        Ok(parts)
    }

    fn parts_of(
        &self,
        cred: &CredentialId,
        saved: &Secret,
    ) -> Result<(Arc<Recipe>, Parts), ConnectorError> {
        let (recipe, _) = self.assignment(cred)?;
        let steps = Self::steps(&recipe, cred)?;
        let parts = decode(steps, saved).ok_or_else(|| {
            ConnectorError::new(
                FaultClass::Protocol,
                format!(
                    "{cred}: the saved restore point does not have the parts playbook `{}` saves ({}); was the account's playbook changed during a rotation? Put the previous playbook back to settle it",
                    recipe.name,
                    steps.parts.join(", ")
                ),
            )
        })?;
        Ok((recipe, parts))
    }
}

fn missing(cred: &CredentialId) -> ConnectorError {
    ConnectorError::new(
        FaultClass::AccountMissing,
        format!(
            "{cred}: the account does not exist on the host; create it or remove it from the inventory"
        ),
    )
}

fn internal(cred: &CredentialId, what: &str) -> ConnectorError {
    ConnectorError::new(
        FaultClass::Protocol,
        format!("{cred}: internal error: {what}"),
    )
}

/// Fills a template. The result may hold a secret (stdin, file content): zeroized on drop.
fn render(template: &Template, fill: &Fill<'_>) -> Result<Zeroizing<String>, ConnectorError> {
    let mut out = Zeroizing::new(String::new());
    for piece in &template.pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Account => out.push_str(fill.cred.account.as_str()),
            Piece::Host => out.push_str(fill.cred.host.as_str()),
            Piece::Home => out.push_str(
                fill.home
                    .ok_or_else(|| internal(fill.cred, "{home} not read"))?,
            ),
            Piece::Var(name) => {
                let spec = fill
                    .recipe
                    .vars
                    .get(name)
                    .ok_or_else(|| internal(fill.cred, "an undeclared variable"))?;
                let value = fill
                    .vars
                    .get(name)
                    .or(spec.default.as_ref())
                    .ok_or_else(|| {
                        ConnectorError::new(
                            FaultClass::Protocol,
                            format!("{}: playbook `{}` needs variable `{name}` and it has no default: set it in the inventory (`vars: {{ {name}: ... }}`)", fill.cred, fill.recipe.name),
                        )
                    })?;
                // Checked by the inventory already; checked again where it enters a command.
                spec.kind.check(value).map_err(|why| {
                    ConnectorError::new(
                        FaultClass::Protocol,
                        format!("{}: variable `{name}`: {why}", fill.cred),
                    )
                })?;
                out.push_str(value);
            }
            Piece::Secret => out.push_str(
                fill.secret
                    .ok_or_else(|| internal(fill.cred, "no secret here"))?
                    .expose(),
            ),
            Piece::Saved(name) => {
                let part = fill
                    .parts
                    .iter()
                    .find(|(n, _)| n == name)
                    .ok_or_else(|| internal(fill.cred, "a part not saved"))?;
                out.push_str(&part.1);
            }
        }
    }
    Ok(out)
}

/// A path template filled and checked (it goes into a command line).
fn render_path(template: &Template, fill: &Fill<'_>) -> Result<String, ConnectorError> {
    let path = render(template, fill)?;
    VarKind::Path.check(&path).map_err(|why| {
        ConnectorError::new(
            FaultClass::Protocol,
            format!("{}: the playbook's path {why}", fill.cred),
        )
    })?;
    Ok(path.to_string())
}

/// Every line of `text` matching `replace.matching` becomes `replace.with`; none matching is
/// an error (the secret would have nowhere to go).
fn replace_lines(
    text: &str,
    replace: &ReplaceLine,
    fill: &Fill<'_>,
    path: &str,
) -> Result<Zeroizing<String>, ConnectorError> {
    let with = render(&replace.with, fill)?;
    let mut out = Zeroizing::new(String::with_capacity(text.len() + with.len()));
    let mut n_replaced = 0;
    for line in text.split_inclusive('\n') {
        let body = line.strip_suffix('\n').unwrap_or(line);
        if replace.matching.is_match(body) {
            out.push_str(&with);
            if line.ends_with('\n') {
                out.push('\n');
            }
            n_replaced += 1;
        } else {
            out.push_str(line);
        }
    }
    if n_replaced == 0 {
        return Err(ConnectorError::new(
            FaultClass::Refused,
            format!(
                "{}: no line of {path} matches `{}`, so the new password has nowhere to go; check the file, or the playbook's replace_line",
                fill.cred, replace.matching_text
            ),
        ));
    }
    Ok(out)
}

/// The most `read-file` takes: a config file, not a database.
const MAX_FILE_BYTES: usize = 1 << 20;

/// What `read-file` and `write-file` check before touching `$f` (as root): a symbolic link is
/// refused (4: the rename would replace the link, not its target), and so is a file whose
/// directory someone other than root owns or may write (5: they could swap the file or plant
/// a link between rotor's check and its write), or a file with more than one link (6: a hard
/// link to another file, which would be read or replaced in its stead).
const FILE_CHECKS: &str = "test -L \"$f\" && exit 4; d=$(dirname -- \"$f\"); test \"$(stat -c %u -- \"$d\")\" = 0 || exit 5; case \"$(stat -c %A -- \"$d\")\" in ?????w*|????????w*) exit 5;; esac; if test -e \"$f\"; then test \"$(stat -c %h -- \"$f\")\" = 1 || exit 6; fi;";

/// The command line of `read-file`: the checks of [`FILE_CHECKS`], then at most one byte past
/// [`MAX_FILE_BYTES`] of the file.
pub(crate) fn read_file_script(path: &str) -> String {
    format!(
        "sh -c 'f={path}; {FILE_CHECKS} head -c {} -- \"$f\"'",
        MAX_FILE_BYTES + 1
    )
}

/// The refusal for a [`FILE_CHECKS`] exit status, if it is one.
fn unsafe_file(cred: &CredentialId, path: &str, status: i32) -> Option<ConnectorError> {
    let why = match status {
        4 => {
            "is a symbolic link; rotor replaces files atomically and would replace the link, not its target: name the real file in the playbook's path (or the account's vars)"
        }
        5 => {
            "is in a directory that someone other than root owns or may write; rotor will not edit a file there as root (it could be swapped between rotor's check and its write): make the directory root's and not writable by group or others"
        }
        6 => {
            "has more than one hard link; rotor would read or replace another file through it: make it a file of its own"
        }
        _ => return None,
    };
    Some(ConnectorError::new(
        FaultClass::Refused,
        format!("{cred}: {path} {why}"),
    ))
}

/// The command line of `write-file`: the content arrives on stdin, goes to a temporary file
/// in the same directory, takes the existing file's owner, group and mode, and replaces it by
/// a rename (atomic: a reader sees the old file or the new one). Exit 3: no such file; exit
/// 4: a symbolic link (the rename would replace the link, not its target). The
/// path was checked (`VarKind::Path`), so it is safe inside the single quotes.
pub(crate) fn write_file_script(path: &str) -> String {
    format!(
        "sh -c 'f={path}; {FILE_CHECKS} test -f \"$f\" || exit 3; t=$(mktemp \"$f.rotor-XXXXXX\") || exit 1; if cat > \"$t\" && chown --reference=\"$f\" \"$t\" && chmod --reference=\"$f\" \"$t\" && mv -f \"$t\" \"$f\"; then exit 0; fi; rm -f \"$t\"; exit 1'"
    )
}

impl Step {
    pub(super) fn templates(&self) -> impl Iterator<Item = &Template> {
        let list: Vec<&Template> = match self {
            Step::Command(c) | Step::Check(c) => {
                std::iter::once(&c.run).chain(c.stdin.as_ref()).collect()
            }
            Step::ReadFile { path, .. } => vec![path],
            Step::WriteFile {
                path,
                content,
                replace_line,
            } => {
                let mut v = vec![path, content];
                if let Some(r) = replace_line {
                    v.push(&r.with);
                }
                v
            }
            _ => Vec::new(),
        };
        list.into_iter()
    }
}

impl<S: Shell> Target for RecipeHost<S> {
    fn read_restore_point(&mut self, cred: &CredentialId) -> Result<Secret, ConnectorError> {
        let parts = self.read(cred)?;
        let point = encode(&parts);
        Ok(point)
    }

    /// A password hash starting with `!` or `*` means the account is locked or has no
    /// password login; setting a password would unlock it.
    fn refuses_rotation(&self, cred: &CredentialId, restore_point: &Secret) -> Option<String> {
        let (recipe, parts) = self.parts_of(cred, restore_point).ok()?;
        let steps = Self::steps(&recipe, cred).ok()?;
        let hash_part = steps.password_hash.as_ref()?;
        let (_, hash) = parts.iter().find(|(n, _)| n == hash_part)?;
        hash.starts_with(['!', '*']).then(|| {
            format!(
                "{cred}: the account is locked (its password field starts with '!' or '*'); rotor will not give it a working password. Unlock it first (`passwd -u`) or remove it from the inventory"
            )
        })
    }

    fn holds(&self, cred: &CredentialId, now: &Secret, secret: &Secret) -> Option<bool> {
        let (recipe, parts) = self.parts_of(cred, now).ok()?;
        let steps = Self::steps(&recipe, cred).ok()?;
        if let Some(hash_part) = &steps.password_hash {
            let (_, hash) = parts.iter().find(|(n, _)| n == hash_part)?;
            return crate::password_hash::matches(&Secret::new(hash.to_string()), secret);
        }
        let keys_part = steps.read_restore_point.iter().find_map(|s| match s {
            Step::AuthorizedKeysRead { save } => Some(save),
            _ => None,
        })?;
        let (_, managed) = parts.iter().find(|(n, _)| n == keys_part)?;
        self.keys.holds(managed, secret)
    }

    fn apply(
        &mut self,
        cred: &CredentialId,
        new: &Secret,
        saved: &Secret,
    ) -> Result<(), ConnectorError> {
        let (_, mut parts) = self.parts_of(cred, saved)?;
        let set = self.run_phase(cred, Phase::Set, Some(new), &mut parts);
        // Even a push that failed half-way may have changed it: a login after a broken
        // session tries the new secret first.
        self.shell.secret_changed(cred, Some(new));
        set
    }

    fn prove(&mut self, cred: &CredentialId, secret: &Secret) -> Result<(), ConnectorError> {
        self.run_phase(cred, Phase::Prove, Some(secret), &mut Vec::new())
    }

    fn undo(
        &mut self,
        cred: &CredentialId,
        saved: &Secret,
        new: &Secret,
    ) -> Result<(), ConnectorError> {
        let (recipe, mut parts) = self.parts_of(cred, saved)?;
        self.run_phase(cred, Phase::Undo, Some(new), &mut parts)?;
        self.shell.secret_changed(cred, None);
        // Prove the undo: the restore point must read back exactly as saved.
        let now = self.read(cred)?;
        let differs = parts
            .iter()
            .zip(now.iter())
            .find(|((_, a), (_, b))| !Secret::new(a.to_string()).ct_eq(&Secret::new(b.to_string())))
            .map(|((name, _), _)| name.clone());
        match differs {
            None if parts.len() == now.len() => Ok(()),
            which => {
                let what = match which {
                    Some(name)
                        if Some(&name) != Self::steps(&recipe, cred)?.password_hash.as_ref() =>
                    {
                        format!("`{name}`")
                    }
                    _ => "the password hash".to_owned(),
                };
                Err(ConnectorError::new(
                    FaultClass::Refused,
                    format!("{cred}: after restoring, {what} on the host is not the saved one"),
                ))
            }
        }
    }

    fn known_current(&mut self, cred: &CredentialId, current: &Secret) {
        self.known.insert(cred.clone(), current.clone());
        if self.breach {
            self.every_key.insert(cred.clone());
        }
    }

    fn breach(&mut self) {
        self.breach = true;
        let keys: Vec<CredentialId> = self
            .accounts
            .iter()
            .filter(|(_, a)| a.recipe.kind == CredentialKind::SshKey)
            .map(|(cred, _)| cred.clone())
            .collect();
        self.every_key.extend(keys);
    }

    fn resume(&mut self, cred: &CredentialId, restore_point: &Secret) {
        if super::keys::is_every_key(restore_point.expose()) {
            self.every_key.insert(cred.clone());
        }
    }

    fn notes(&mut self, cred: &CredentialId) -> Vec<String> {
        self.notes.remove(cred).unwrap_or_default()
    }

    fn retires(&self, cred: &CredentialId) -> bool {
        self.assignment(cred)
            .ok()
            .and_then(|(recipe, _)| match &recipe.body {
                Body::Steps(steps) => Some(!steps.retire.is_empty()),
                Body::Adapter(_) => None,
            })
            .unwrap_or(false)
    }

    fn retire(
        &mut self,
        cred: &CredentialId,
        saved: &Secret,
        new: &Secret,
    ) -> Result<(), ConnectorError> {
        let (_, mut parts) = self.parts_of(cred, saved)?;
        self.run_phase(cred, Phase::Retire, Some(new), &mut parts)?;
        // The connect key: the bootstrap key must not log in any more. sshd may read keys
        // from files besides ~/.ssh/authorized_keys (AuthorizedKeysFile), which rotor does not
        // edit: a fresh login with it tells.
        if self.also.contains_key(cred) {
            let note = match self.shell.bootstrap_accepted() {
                Some(true) => format!(
                    "warning: the bootstrap key still logs in as {}: sshd reads it from a file rotor does not edit (see AuthorizedKeysFile in sshd_config, e.g. /etc/ssh/authorized_keys/{}), or rotor could not read the key file's public half (see the log); remove it from the host by hand",
                    cred.account, cred.account
                ),
                Some(false) => "the bootstrap connect key no longer logs in".to_owned(),
                None => return Ok(()),
            };
            self.notes.entry(cred.clone()).or_default().push(note);
        }
        Ok(())
    }
}

/// The most a host may print for its account list: a hostile host answers a listing with as
/// much as it likes.
const MAX_LISTING_BYTES: usize = 4 << 20;

impl<S: Shell> crate::target::ListAccounts for RecipeHost<S> {
    /// `getent passwd` and `getent shadow` (one command each), joined by name.
    fn list_accounts(&mut self) -> Result<Vec<crate::target::AccountFacts>, ConnectorError> {
        let host = self.shell.host().clone();
        let mut read = |what: &str| -> Result<Zeroizing<String>, ConnectorError> {
            let out = self.shell.exec(&format!("getent {what}"), b"")?;
            if out.status != 0 || out.stdout.len() > MAX_LISTING_BYTES {
                return Err(ConnectorError::new(
                    FaultClass::Protocol,
                    format!(
                        "{host}: listing accounts failed (`getent {what}`: {}); does the connect user have root or sudo rights?",
                        if out.status != 0 {
                            ended(&out)
                        } else {
                            format!("more than {MAX_LISTING_BYTES} bytes")
                        }
                    ),
                ));
            }
            Ok(Zeroizing::new(
                String::from_utf8_lossy(&out.stdout).into_owned(),
            ))
        };
        let passwd = read("passwd")?;
        let shadow = read("shadow")?;
        let shadow: HashMap<&str, Vec<&str>> = shadow
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .filter(|f| f.len() >= 3)
            .map(|f| (f[0], f))
            .collect();
        Ok(passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .filter(|f| f.len() >= 7)
            .map(|f| {
                let entry = shadow.get(f[0]);
                let hash = entry.map_or("", |s| s[1]);
                crate::target::AccountFacts {
                    name: f[0].to_owned(),
                    uid: f[2].parse().ok(),
                    home: f[5].to_owned(),
                    shell: f[6].to_owned(),
                    password_hash: (!hash.is_empty() && !hash.starts_with(['!', '*']))
                        .then(|| Secret::new(hash.to_owned())),
                    empty_password: entry.is_some() && hash.is_empty(),
                    last_change_day: entry.and_then(|s| s[2].parse().ok()),
                }
            })
            .collect())
    }
}

/// Most a host may print for the scan's key listing: every account's file, capped at 1 MiB
/// each, base64; a host that prints more is refused, not read on.
const MAX_KEY_LISTING_BYTES: usize = 64 << 20;

impl<S: Shell> crate::target::ScanHost for RecipeHost<S> {
    /// The account listing, then one command (a script on stdin) reading, as each account one
    /// can log in to, its `authorized_keys`.
    fn scan_host(&mut self) -> Result<crate::target::ScannedHost, ConnectorError> {
        use crate::target::ListAccounts as _;
        let accounts = self.list_accounts()?;
        let names: Vec<AccountName> = accounts
            .iter()
            .filter(|a| {
                crate::target::is_login_shell(&a.shell)
                    || a.password_hash.is_some()
                    || a.empty_password
            })
            // A name outside the Linux rule never enters a command line; its keys stay unread.
            .filter_map(|a| AccountName::parse(&a.name).ok())
            .collect();
        let mut scanned = crate::target::ScannedHost {
            accounts,
            ..Default::default()
        };
        (scanned.sessions, scanned.sessions_unread) = self.read_sessions();
        if names.is_empty() {
            return Ok(scanned);
        }
        let host = self.shell.host().clone();
        let script = super::keys::scan_script(&names);
        let out = self.shell.exec("sh -s", script.as_bytes())?;
        if out.status != 0 || out.stdout.len() > MAX_KEY_LISTING_BYTES {
            return Err(ConnectorError::new(
                FaultClass::Protocol,
                format!(
                    "{host}: reading the accounts' authorized_keys failed ({}); does the connect user have root or sudo rights, and is runuser installed?",
                    if out.status != 0 {
                        ended(&out)
                    } else {
                        format!("more than {MAX_KEY_LISTING_BYTES} bytes")
                    }
                ),
            ));
        }
        for (name, got) in super::keys::parse_scan(&out.stdout) {
            match got {
                super::keys::ScannedKeys::Keys(fps) if !fps.is_empty() => {
                    scanned.keys.insert(name, fps);
                }
                super::keys::ScannedKeys::Keys(_) | super::keys::ScannedKeys::Absent => {}
                super::keys::ScannedKeys::Unreadable(why) => {
                    scanned.unreadable_keys.push((name, why))
                }
            }
        }
        Ok(scanned)
    }
}

impl<S: Shell> RecipeHost<S> {
    /// Who is logged in (`super::sessions`), over the admin session as root. Never fails
    /// the scan: a failure is said in the second value.
    fn read_sessions(&mut self) -> (Vec<crate::target::Session>, Option<String>) {
        let script = super::sessions::script();
        match self.shell.exec("sh -s sessions", script.as_bytes()) {
            Err(e) => (
                Vec::new(),
                Some(format!("listing the sessions failed: {}", e.message)),
            ),
            Ok(out) if out.status != 0 => (
                Vec::new(),
                Some(format!("listing the sessions failed ({})", ended(&out))),
            ),
            Ok(out) => super::sessions::parse(&out.stdout),
        }
    }
}

#[cfg(test)]
pub(super) fn encode_for_test(parts: &Parts) -> Secret {
    encode(parts)
}

#[cfg(test)]
pub(super) fn decode_for_test(steps: &Steps, saved: &Secret) -> Option<Parts> {
    decode(steps, saved)
}
