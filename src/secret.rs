//! `Secret`: the one type that holds a credential's plaintext (or a saved shadow hash).
//!
//! It prints as `Secret(<redacted>)`, has no `Display` and no `Serialize`, and is zeroized on
//! drop. The plaintext is reachable only through [`Secret::expose`], which is called by the
//! connectors (to hand the secret to a target over stdin or inside a protocol; with
//! `target::sudo`, which puts a sudo password on a command's stdin) and the store
//! (to encrypt it), and by the front-ends that show it on purpose (`rotor show`, a checkout's
//! grant, in the terminal or in the API's answer). Everything else, logs, errors and reports
//! included, sees only the wrapper.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// A secret value. Cloning is allowed (a rotation needs the new secret in the store and in the
/// connector) but every clone is zeroized on drop as well.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a plaintext. The caller gives up its `String`, so no unzeroized copy remains there.
    pub fn new(plaintext: String) -> Secret {
        Secret(SecretString::from(plaintext))
    }

    /// The plaintext. Call this only where the secret must leave the process on purpose: to a
    /// target (stdin, protocol field) or into the AEAD cipher of the store.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Constant-time comparison, so that checking a probe against a stored secret does not
    /// leak timing.
    pub fn ct_eq(&self, other: &Secret) -> bool {
        let (a, b) = (self.expose().as_bytes(), other.expose().as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Equality in constant time (`ct_eq`), so that states and commands holding a secret can be
/// compared in tests without a timing side channel anywhere else.
impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.ct_eq(other)
    }
}
impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_plaintext() {
        let s = Secret::new("hunter2-very-secret".to_owned());
        let shown = format!("{s:?} {:?}", Some(s.clone()));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn ct_eq_compares_contents() {
        let a = Secret::new("abc".into());
        assert!(a.ct_eq(&Secret::new("abc".into())));
        assert!(!a.ct_eq(&Secret::new("abd".into())));
        assert!(!a.ct_eq(&Secret::new("ab".into())));
    }
}
