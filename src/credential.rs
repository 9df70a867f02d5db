//! Names: `HostName`, `AccountName` and `CredentialId` (`HOST/ACCOUNT`), the address of one
//! secret of one account on one target. Newtypes so that a host name is never passed where an
//! account name is expected; they are validated once, where they enter (inventory, CLI).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A host's name in the inventory (not necessarily its DNS name; `address` is what we dial).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HostName(String);

/// A Linux account name on a host.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountName(String);

/// `HOST/ACCOUNT`: one credential.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CredentialId {
    pub host: HostName,
    pub account: AccountName,
    pub slot: Slot,
}

/// Which of an account's credentials. An account listed once is addressed `HOST/ACCOUNT`
/// whatever its kind; one that holds a password and a key (listed with both playbooks) has
/// two credentials, the key addressed `HOST/ACCOUNT:key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    /// The account's credential (its only one, or its password where it also has a key).
    Main,
    /// The account's SSH key, beside a password credential.
    Key,
}

impl HostName {
    /// Host names are letters, digits, `.`, `-` and `_`, 1 to 253 characters: what fits in a
    /// `HOST/ACCOUNT` address without quoting.
    pub fn parse(s: &str) -> Result<HostName, String> {
        let ok = !s.is_empty()
            && s.len() <= 253
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if ok {
            Ok(HostName(s.to_owned()))
        } else {
            Err(format!(
                "`{s}` is not a valid host name: use 1 to 253 letters, digits, '.', '-' or '_'"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AccountName {
    /// The portable Linux user name rule (what `useradd` accepts by default on Debian):
    /// starts with a lowercase letter or `_`, then lowercase letters, digits, `_` or `-`,
    /// optionally ending in `$`; at most 32 characters.
    pub fn parse(s: &str) -> Result<AccountName, String> {
        let body = s.strip_suffix('$').unwrap_or(s);
        let mut chars = body.chars();
        let ok = s.len() <= 32
            && chars
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if ok {
            Ok(AccountName(s.to_owned()))
        } else {
            Err(format!(
                "`{s}` is not a valid Linux user name: start with a lowercase letter or '_', \
                 then use lowercase letters, digits, '_' or '-', at most 32 characters"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl CredentialId {
    pub fn new(host: HostName, account: AccountName) -> CredentialId {
        CredentialId {
            host,
            account,
            slot: Slot::Main,
        }
    }

    /// The account's SSH-key credential, beside its password (`HOST/ACCOUNT:key`).
    pub fn key_of(host: HostName, account: AccountName) -> CredentialId {
        CredentialId {
            host,
            account,
            slot: Slot::Key,
        }
    }

    /// Parses `HOST/ACCOUNT`.
    pub fn parse(s: &str) -> Result<CredentialId, String> {
        let (host, account) = s.split_once('/').ok_or_else(|| {
            format!("`{s}` is not a credential address: write it as HOST/ACCOUNT, e.g. emr-db-01/svc_app")
        })?;
        // Account names cannot hold ':', so a suffix is never part of the name.
        let (account, slot) = match account.split_once(':') {
            None => (account, Slot::Main),
            Some((account, "key")) => (account, Slot::Key),
            Some((_, other)) => {
                return Err(format!(
                    "`{s}`: unknown suffix `:{other}`; the only one is `:key`, the SSH key of an account that also has a password (HOST/ACCOUNT:key)"
                ));
            }
        };
        Ok(CredentialId {
            host: HostName::parse(host)?,
            account: AccountName::parse(account)?,
            slot,
        })
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for AccountName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.account)?;
        match self.slot {
            Slot::Main => Ok(()),
            Slot::Key => f.write_str(":key"),
        }
    }
}

impl Serialize for CredentialId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names() {
        for ok in [
            "svc_app",
            "_apt",
            "a",
            "www-data",
            "machine$",
            "u1234567890123456789012345678901",
        ] {
            assert!(AccountName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Root",
            "1abc",
            "a b",
            "a/b",
            "-x",
            "u12345678901234567890123456789012",
            "a$b",
        ] {
            assert!(AccountName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credential_round_trip() {
        let id = CredentialId::parse("emr-db-01/svc_app").unwrap();
        assert_eq!(id.to_string(), "emr-db-01/svc_app");
        assert!(CredentialId::parse("emr-db-01").is_err());
        let key = CredentialId::parse("emr-db-01/deploy:key").unwrap();
        assert_eq!(key.slot, Slot::Key);
        assert_eq!(key.account.as_str(), "deploy");
        assert_eq!(key.to_string(), "emr-db-01/deploy:key");
        let err = CredentialId::parse("emr-db-01/deploy:pw").unwrap_err();
        assert!(err.contains("the only one is `:key`"), "{err}");
        assert!(CredentialId::parse("emr db/x").is_err());
    }
}
