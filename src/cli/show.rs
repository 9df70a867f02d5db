//! `rotor show CRED --reason R`: print one current secret. Audited.
//!
//! The secret is printed exactly, ending with one newline: a password (one line, stored
//! without one) gets it added; an SSH private key in OpenSSH format (stored with its final
//! newline) is printed as stored, so `rotor show CRED > key` writes the file `ssh -i` reads.

use clap::Args;

use super::output::open_vault;
use super::{CliResult, Global, OutputFormat, usage};
use crate::checkout::Read;
use crate::credential::{CredentialId, Slot};

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The credential, HOST/ACCOUNT (HOST/ACCOUNT:key for the SSH key of an account that
    /// also has a password).
    pub cred: String,
    /// Why you need it (recorded in the audit log).
    #[arg(long)]
    pub reason: String,
    /// Instead of the secret: the authorized_keys lines that `rotate --breach` removed from
    /// this SSH-key credential's account, newest run first, each as the file had it (to put
    /// one back by hand). Audited like a show.
    #[arg(long)]
    pub removed_keys: bool,
    /// `text` prints the secret alone (for `> file`); `json` an object with `credential`
    /// and `secret`.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

pub fn run(g: &Global, a: ShowArgs) -> CliResult {
    let cred = CredentialId::parse(&a.cred).map_err(usage)?;
    if a.reason.trim().is_empty() {
        return Err(usage(
            "--reason must say why the secret is needed; it is recorded",
        ));
    }
    let vault = open_vault(g)?;
    if a.removed_keys {
        return removed_keys(&vault, &cred, &a.reason, a.output);
    }
    let by = crate::ops::Actor::of_this_process();
    let shown = crate::ops::checkout::Checkouts::show(&*vault, &by, &cred, &a.reason)?;
    if let Some((c, read)) = &shown.checkout {
        match read {
            Read::ByHolder => eprintln!(
                "{cred} is checked out to you ({}); this read is recorded.",
                crate::text::escape(&c.holder_words())
            ),
            Read::Override => eprintln!(
                "warning: {cred} is checked out: {}. Your read is recorded as an override of that checkout.",
                crate::text::escape(&c.holder_words())
            ),
        }
    }
    match shown.secret {
        Some(secret) => {
            // The one place rotor prints a secret, on purpose, to stdout only.
            if a.output == OutputFormat::Json {
                let value = serde_json::json!({ "credential": cred.to_string() });
                super::output::print_json_with_secret(value, &secret);
                return Ok(0);
            }
            out!("{}{}", secret.expose(), line_end(secret.expose()));
            Ok(0)
        }
        None => {
            // The account's other credential (its key beside a password, or the password
            // beside a key) may be what was meant: say which names exist.
            let other = CredentialId {
                slot: match cred.slot {
                    Slot::Main => Slot::Key,
                    Slot::Key => Slot::Main,
                },
                ..cred.clone()
            };
            if vault.current(&other).ok().flatten().is_some() {
                return Err(anyhow::anyhow!(
                    "the vault holds no current secret for {cred}, but it does for {other}: this account has {}; name the one you mean",
                    if other.slot == Slot::Key {
                        format!("its SSH key as {other}")
                    } else {
                        format!("its password as {other}")
                    }
                )
                .into());
            }
            Err(anyhow::anyhow!(
                "the vault holds no current secret for {cred}: rotate it (`rotor rotate --scope cred:{cred}`) or enroll it (`rotor enroll {cred}`)"
            )
            .into())
        }
    }
}

/// `--removed-keys`: the lines breach runs removed, from the restore points the vault keeps.
fn removed_keys(
    vault: &crate::store::Vault,
    cred: &CredentialId,
    reason: &str,
    format: OutputFormat,
) -> CliResult {
    let points = vault.restore_points(cred, reason)?;
    let mut n_lines = 0;
    let mut json_rotations = Vec::new();
    for (rotation, phase, started, point) in &points {
        // Only a rotation that reached its retire removed them (a rolled-back one put the
        // file back as it was).
        if !matches!(
            phase,
            crate::engine::Phase::Retiring | crate::engine::Phase::Retired
        ) {
            continue;
        }
        let Some(lines) = crate::recipe::kept_lines(point.expose()) else {
            continue;
        };
        if format == OutputFormat::Json {
            n_lines += lines.len();
            let lines: Vec<serde_json::Value> = lines
                .into_iter()
                .map(|(described, raw)| {
                    serde_json::json!({
                        "described": described,
                        "line": String::from_utf8_lossy(&raw).trim_end_matches('\n'),
                    })
                })
                .collect();
            json_rotations.push(serde_json::json!({
                "rotation": rotation,
                "phase": phase.to_string(),
                "started": started.to_string(),
                "removed": lines,
            }));
            continue;
        }
        outln!(
            "# rotation {rotation} ({phase}, started {started}): {} line(s) removed from authorized_keys",
            lines.len()
        );
        for (described, raw) in lines {
            outln!("# {described}");
            // A public key line (not a secret), as the account's file had it; shown escaped
            // when it holds control characters, so the terminal shows what is there.
            let text = String::from_utf8_lossy(&raw);
            outln!("{}", crate::text::escape(text.trim_end_matches('\n')));
            n_lines += 1;
        }
    }
    if format == OutputFormat::Json {
        outln!(
            "{}",
            serde_json::json!({ "credential": cred.to_string(), "rotations": json_rotations })
        );
    }
    if n_lines == 0 {
        eprintln!(
            "no breach run removed keys of {cred}: `rotor rotate --breach` keeps the lines it removes, and none are recorded for this credential"
        );
    }
    Ok(0)
}

/// What follows the secret so that the output ends with exactly one newline.
pub(super) fn line_end(secret: &str) -> &'static str {
    if secret.ends_with('\n') { "" } else { "\n" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_printed_with_one_final_newline() {
        let key = crate::sshkey::generate(
            &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7),
            &CredentialId::parse("h1/deploy").unwrap(),
        );
        for (stored, shown) in [
            ("hunter2-pw", "hunter2-pw\n".to_owned()),
            (key.private.expose(), key.private.expose().to_owned()),
        ] {
            assert_eq!(format!("{stored}{}", line_end(stored)), shown);
            assert!(shown.ends_with('\n') && !shown.ends_with("\n\n"));
        }
    }
}
