//! The vault's cryptography, and the only place in the store that calls [`Secret::expose`]:
//! XChaCha20-Poly1305 sealing with the row identity as associated data, key wrapping, and the
//! keyed (HMAC-SHA256) fingerprints used for uniqueness checks.
//!
//! It never touches the database or the file system and never logs: callers pass bytes in and
//! get bytes out. Every sealed blob is `nonce (24 bytes) || ciphertext+tag`, with a fresh random
//! nonce from the OS for every encryption.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, Payload};

use crate::clock::SecureRng;
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::secret::Secret;

/// Length of every key rotor uses (master, data, HMAC): 256 bits.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;

/// A 256-bit key, zeroized on drop. Never printed.
#[derive(Clone)]
pub struct KeyBytes(Zeroizing<[u8; KEY_LEN]>);

impl KeyBytes {
    /// A fresh key from the caller's CSPRNG (the OS's outside tests).
    pub fn random(rng: &mut dyn SecureRng) -> KeyBytes {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(key.as_mut_slice());
        KeyBytes(key)
    }

    /// Takes a key from bytes; `None` unless exactly [`KEY_LEN`] long.
    pub fn from_slice(bytes: &[u8]) -> Option<KeyBytes> {
        let array: [u8; KEY_LEN] = bytes.try_into().ok()?;
        Some(KeyBytes(Zeroizing::new(array)))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_slice()
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(Key::from_slice(self.as_bytes()))
    }
}

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyBytes(<redacted>)")
    }
}

/// The AEAD check failed: wrong key, altered bytes, or a blob moved from another row. Callers
/// turn this into an error that names the row (never the bytes).
#[derive(Debug)]
pub struct Unsealed;

/// Encrypts `plaintext` under `key`, binding `aad` (the row identity).
pub fn seal(key: &KeyBytes, aad: &[u8], plaintext: &[u8], rng: &mut dyn SecureRng) -> Vec<u8> {
    let nonce = XChaCha20Poly1305::generate_nonce(rng);
    let ciphertext = key
        .cipher()
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        // XChaCha20-Poly1305 encryption fails only for messages over ~256 GiB; a secret or key
        // is a few hundred bytes at most.
        .expect("XChaCha20-Poly1305 encrypts any message shorter than 256 GiB");
    let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&ciphertext);
    blob
}

/// Decrypts a blob made by [`seal`] with the same key and `aad`.
pub fn open(key: &KeyBytes, aad: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, Unsealed> {
    if blob.len() < NONCE_LEN {
        return Err(Unsealed);
    }
    let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
    key.cipher()
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| Unsealed)
}

/// Encrypts a secret's plaintext for storage.
pub fn seal_secret(
    key: &KeyBytes,
    aad: &[u8],
    secret: &Secret,
    rng: &mut dyn SecureRng,
) -> Vec<u8> {
    seal(key, aad, secret.expose().as_bytes(), rng)
}

/// Decrypts a stored secret. Non-UTF-8 plaintext can only come from a forged row that passed
/// the tag check, which is impossible without the key, so it is reported as [`Unsealed`] too.
pub fn open_secret(key: &KeyBytes, aad: &[u8], blob: &[u8]) -> Result<Secret, Unsealed> {
    let mut plaintext = open(key, aad, blob)?;
    let bytes = std::mem::take(&mut *plaintext);
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Secret::new(text)),
        Err(err) => {
            drop(Zeroizing::new(err.into_bytes()));
            Err(Unsealed)
        }
    }
}

/// Wraps (encrypts) a key under another key.
pub fn wrap_key(
    wrapping: &KeyBytes,
    aad: &[u8],
    key: &KeyBytes,
    rng: &mut dyn SecureRng,
) -> Vec<u8> {
    seal(wrapping, aad, key.as_bytes(), rng)
}

/// Unwraps a key made by [`wrap_key`].
pub fn unwrap_key(wrapping: &KeyBytes, aad: &[u8], blob: &[u8]) -> Result<KeyBytes, Unsealed> {
    let bytes = open(wrapping, aad, blob)?;
    KeyBytes::from_slice(&bytes).ok_or(Unsealed)
}

/// Keyed fingerprint of a secret, lowercase hex. Equal secrets give equal fingerprints; without
/// the HMAC key a fingerprint says nothing about the secret (no offline guessing).
pub fn fingerprint(hmac_key: &KeyBytes, secret: &Secret) -> String {
    hex(&hmac_tag(hmac_key, secret.expose().as_bytes()))
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_tag(key: &KeyBytes, data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
        // HMAC accepts keys of any length.
        .expect("HMAC-SHA256 accepts a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// SHA-256 of `data`, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Entropy, OsEntropy};

    fn rng() -> Box<dyn SecureRng> {
        OsEntropy.rng()
    }

    #[test]
    fn seal_open_round_trip_and_aad_binding() {
        let key = KeyBytes::random(&mut *rng());
        let blob = seal_secret(&key, b"row/1", &Secret::new("pa55".into()), &mut *rng());
        assert_eq!(open_secret(&key, b"row/1", &blob).unwrap().expose(), "pa55");
        assert!(open_secret(&key, b"row/2", &blob).is_err());
        assert!(open_secret(&KeyBytes::random(&mut *rng()), b"row/1", &blob).is_err());
        assert!(open_secret(&key, b"row/1", &blob[..10]).is_err());
        // Two encryptions of the same secret differ (fresh nonce).
        assert_ne!(
            blob,
            seal_secret(&key, b"row/1", &Secret::new("pa55".into()), &mut *rng())
        );
    }

    #[test]
    fn fingerprints_are_keyed() {
        let (k1, k2) = (KeyBytes::random(&mut *rng()), KeyBytes::random(&mut *rng()));
        let s = Secret::new("same".into());
        assert_eq!(fingerprint(&k1, &s), fingerprint(&k1, &s.clone()));
        assert_ne!(fingerprint(&k1, &s), fingerprint(&k2, &s));
        assert_eq!(fingerprint(&k1, &s).len(), 64);
    }
}
