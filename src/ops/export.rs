//! `export`: offline escrow. Every current credential, encrypted to an `age` recipient, so
//! that the credentials can be recovered with the standard `age` tool if rotor's machine is
//! lost. The plaintext is a documented, versioned JSON document ([`FORMAT`]) that exists only
//! in memory, inside the encrypting stream: rotor never writes it to disk.
//!
//! Format (`rotor-escrow`, version 1), after `age -d`:
//! `{"format":"rotor-escrow","version":1,"exported_at":"RFC 3339","credentials":[{"cred":
//! "HOST/ACCOUNT","kind":"password"|"ssh-key","secret":"...","current_since":"RFC 3339"|null}]}`.
//! An SSH key's secret is its OpenSSH private key text.

use std::io::Write;
use std::str::FromStr;

use serde::Serialize;

use super::{Actor, Context};
use crate::credential::CredentialId;
use crate::inventory::Selection;
use crate::store::StoreError;

/// The plaintext's format name.
pub const FORMAT: &str = "rotor-escrow";
/// The plaintext's format version.
pub const VERSION: u32 = 1;

/// An `age` recipient (`age1...`), checked.
#[derive(Debug)]
pub struct Recipient(age::x25519::Recipient);

impl FromStr for Recipient {
    type Err = String;
    fn from_str(s: &str) -> Result<Recipient, String> {
        age::x25519::Recipient::from_str(s.trim())
            .map(Recipient)
            .map_err(|_| {
                format!(
                    "`{}` is not an age public key: give the `age1...` line `age-keygen` printed (\"Public key: age1...\")",
                    crate::text::escape(&s.chars().take(80).collect::<String>())
                )
            })
    }
}

impl std::fmt::Display for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What was exported.
#[derive(Debug, Serialize)]
pub struct Exported {
    pub n_credentials: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the export failed: {0}; nothing usable was written, run the export again")]
    Write(String),
}

#[derive(Serialize)]
struct Entry<'a> {
    cred: String,
    kind: &'static str,
    secret: &'a str,
    current_since: Option<String>,
}

#[derive(Serialize)]
struct Document<'a> {
    format: &'static str,
    version: u32,
    exported_at: String,
    credentials: Vec<Entry<'a>>,
}

/// Which credentials an export holds.
pub enum ExportScope<'a> {
    /// Every current credential in the vault.
    All,
    /// Those an inventory's selection names (`--scope`, as written in `label`).
    Selected {
        selection: &'a Selection,
        label: String,
    },
}

impl ExportScope<'_> {
    fn keeps(&self, cred: &CredentialId) -> bool {
        match self {
            ExportScope::All => true,
            ExportScope::Selected { selection, .. } => selection.names(cred),
        }
    }

    fn label(&self) -> Option<&str> {
        match self {
            ExportScope::All => None,
            ExportScope::Selected { label, .. } => Some(label),
        }
    }
}

/// Encrypts every current credential of the context's vault in `scope` to `recipient` and
/// writes the armored `age` file to `out`. One audited read (`export`, naming the recipient
/// and the scope).
pub fn export(
    ctx: &Context,
    by: &Actor,
    recipient: &Recipient,
    scope: &ExportScope<'_>,
    out: &mut dyn Write,
) -> Result<Exported, ExportError> {
    let current = ctx.records.export_current(
        by,
        &recipient.to_string(),
        scope.label(),
        &|cred: &CredentialId| scope.keeps(cred),
    )?;
    let write = |e: &dyn std::fmt::Display| ExportError::Write(e.to_string());
    let doc = Document {
        format: FORMAT,
        version: VERSION,
        exported_at: ctx.clock.now().to_rfc3339(),
        credentials: current
            .iter()
            .map(|(cred, secret, since)| Entry {
                cred: cred.to_string(),
                kind: if crate::sshkey::is_private_key(secret) {
                    "ssh-key"
                } else {
                    "password"
                },
                secret: secret.expose(),
                current_since: since.map(|t| t.to_rfc3339()),
            })
            .collect(),
    };
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient.0 as &dyn age::Recipient))
            .map_err(|e| write(&e))?;
    let mut armored = age::armor::ArmoredWriter::wrap_output(out, age::armor::Format::AsciiArmor)
        .map_err(|e| write(&e))?;
    let mut plain = encryptor.wrap_output(&mut armored).map_err(|e| write(&e))?;
    // Straight into the encrypting stream: the plaintext never exists as one buffer.
    serde_json::to_writer(&mut plain, &doc).map_err(|e| write(&e))?;
    plain.finish().map_err(|e| write(&e))?;
    armored.finish().map_err(|e| write(&e))?;
    Ok(Exported {
        n_credentials: doc.credentials.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testkit::setup;
    use crate::ops::testkit::{context, runtime};

    #[test]
    fn an_export_decrypts_with_the_identity_to_every_current_secret() {
        let rt = runtime();
        let (fleet, store, _) = setup(&["a"]);
        for (cred, secret) in [("a/svc_app", "pw-one-xyz"), ("a/svc_backup", "pw-two-xyz")] {
            store.inner.lock().unwrap().current.insert(
                crate::credential::CredentialId::parse(cred).unwrap(),
                secret.into(),
            );
        }
        let ctx = context(fleet, &store, &rt);
        let identity = age::x25519::Identity::generate();
        let recipient: Recipient = identity.to_public().to_string().parse().unwrap();
        let mut file = Vec::new();
        let done = export(
            &ctx,
            &Actor::named("test"),
            &recipient,
            &ExportScope::All,
            &mut file,
        )
        .unwrap();
        assert_eq!(done.n_credentials, 2);
        let text = String::from_utf8(file.clone()).unwrap();
        assert!(
            text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
            "{text}"
        );
        assert!(!text.contains("pw-one-xyz"));
        let mut binary = Vec::new();
        std::io::Read::read_to_end(&mut age::armor::ArmoredReader::new(&file[..]), &mut binary)
            .unwrap();
        let plain = age::decrypt(&identity, &binary).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        assert_eq!(doc["format"], FORMAT);
        assert_eq!(doc["version"], VERSION);
        assert_eq!(doc["credentials"][0]["cred"], "a/svc_app");
        assert_eq!(doc["credentials"][0]["secret"], "pw-one-xyz");
        assert_eq!(doc["credentials"][1]["kind"], "password");
        // A scope exports only what it names.
        let inv = crate::ops::testkit::inventory(&["a"]);
        let selection = inv
            .select(&[crate::inventory::Scope::parse("cred:a/svc_backup").unwrap()])
            .unwrap();
        let scope = ExportScope::Selected {
            selection: &selection,
            label: "cred:a/svc_backup".into(),
        };
        let mut scoped = Vec::new();
        let done = export(&ctx, &Actor::named("test"), &recipient, &scope, &mut scoped).unwrap();
        assert_eq!(done.n_credentials, 1);
        let mut binary = Vec::new();
        std::io::Read::read_to_end(
            &mut age::armor::ArmoredReader::new(&scoped[..]),
            &mut binary,
        )
        .unwrap();
        let doc: serde_json::Value =
            serde_json::from_slice(&age::decrypt(&identity, &binary).unwrap()).unwrap();
        assert_eq!(doc["credentials"].as_array().unwrap().len(), 1);
        assert_eq!(doc["credentials"][0]["cred"], "a/svc_backup");
        assert!(
            "age1nope"
                .parse::<Recipient>()
                .unwrap_err()
                .contains("age-keygen")
        );
    }
}
