//! Local checks of a password against a stored hash, as a target keeps it: a Linux shadow
//! field (`crypt(3)`: yescrypt `$y$`, SHA-512 `$6$`, SHA-256 `$5$`) or an LDAP `userPassword`
//! value (`{CRYPT}` of those, `{SSHA}`, `{SHA}`, `{SSHA256}`, `{SSHA512}`).
//!
//! Recovery uses it to tell whether a target that no longer holds the saved restore point
//! holds rotor's pending secret (rotor's own change, which it may undo) or something else
//! (someone else's change, which it must leave alone), without a login that would spend the
//! account's lockout budget.
//!
//! The hash comes from a target that may be hostile: its cost parameters are bounded before
//! anything is computed, so a crafted hash cannot make rotor spend minutes or gigabytes.
//! Nothing here logs or returns the password or the hash.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// Most SHA-crypt rounds rotor computes (glibc's default is 5,000; distributions that raise
/// it stay far below this).
const MAX_SHA_CRYPT_ROUNDS: u64 = 1_000_000;
/// Most memory a yescrypt check may take (`128 * r * N` bytes): Debian's default cost
/// (`j9T`: N = 4096, r = 32) is 16 MiB, and recovery may check a few dozen hosts at once.
const MAX_YESCRYPT_BYTES: u64 = 64 * 1024 * 1024;
/// Longest hash rotor looks at; real ones are under 200 characters.
const MAX_HASH_LEN: usize = 1024;

/// Whether `password` is the one `hash` was made from: `Some(true)` or `Some(false)` when the
/// scheme is one rotor can compute and its parameters are within bounds, `None` when rotor
/// cannot tell (unknown scheme, malformed or too costly).
pub fn matches(hash: &Secret, password: &Secret) -> Option<bool> {
    let hash = hash.expose();
    let password = password.expose();
    if hash.len() > MAX_HASH_LEN {
        return None;
    }
    if let Some(rest) = strip_scheme(hash, "{CRYPT}") {
        return crypt_matches(rest, password);
    }
    if let Some(rest) = strip_scheme(hash, "{SSHA}") {
        return salted_matches::<Sha1>(rest, password, 20);
    }
    if let Some(rest) = strip_scheme(hash, "{SHA}") {
        return salted_matches::<Sha1>(rest, password, 20);
    }
    if let Some(rest) = strip_scheme(hash, "{SSHA256}") {
        return salted_matches::<Sha256>(rest, password, 32);
    }
    if let Some(rest) = strip_scheme(hash, "{SSHA512}") {
        return salted_matches::<Sha512>(rest, password, 64);
    }
    if hash.starts_with('{') {
        return None;
    }
    crypt_matches(hash, password)
}

/// `hash` without its LDAP scheme prefix, compared without case as RFC 2307 does.
fn strip_scheme<'a>(hash: &'a str, scheme: &str) -> Option<&'a str> {
    hash.get(..scheme.len())
        .filter(|prefix| prefix.eq_ignore_ascii_case(scheme))
        .map(|_| &hash[scheme.len()..])
}

/// A `crypt(3)` string.
fn crypt_matches(hash: &str, password: &str) -> Option<bool> {
    if hash.starts_with("$y$") {
        return yescrypt_matches(hash, password);
    }
    // `$6$[rounds=N$]SALT$HASH` (SHA-512) or the same with `$5$` (SHA-256).
    let fields: Vec<&str> = hash.split('$').collect();
    let (id, rest) = match fields.as_slice() {
        ["", id @ ("5" | "6"), rest @ ..] => (*id, rest),
        _ => return None,
    };
    let (rounds, salt, expected) = match rest {
        [rounds, salt, expected] => (
            rounds.strip_prefix("rounds=")?.parse::<usize>().ok()?,
            *salt,
            *expected,
        ),
        [salt, expected] => (5000, *salt, *expected),
        _ => return None,
    };
    if rounds as u64 > MAX_SHA_CRYPT_ROUNDS {
        return None;
    }
    // glibc uses at most 16 characters of salt and clamps rounds to at least 1000.
    let salt = salt.get(..salt.len().min(16))?.as_bytes();
    let rounds = rounds.max(1000);
    let computed = zeroize::Zeroizing::new(if id == "6" {
        sha_crypt::sha512_crypt_b64(
            password.as_bytes(),
            salt,
            &sha_crypt::Sha512Params::new(rounds).ok()?,
        )
        .ok()?
    } else {
        sha_crypt::sha256_crypt_b64(
            password.as_bytes(),
            salt,
            &sha_crypt::Sha256Params::new(rounds).ok()?,
        )
        .ok()?
    });
    Some(computed.as_bytes().ct_eq(expected.as_bytes()).into())
}

fn yescrypt_matches(hash: &str, password: &str) -> Option<bool> {
    use yescrypt::PasswordVerifier;
    let params: yescrypt::Params = hash.split('$').nth(2)?.parse().ok()?;
    // The memory bound first: nothing below may see a huge N or r (the crate's own encoding
    // of such parameters loops or panics).
    let bytes = 128u64
        .checked_mul(u64::from(params.r()))?
        .checked_mul(params.n())?
        .checked_mul(u64::from(params.p()))?;
    if bytes > MAX_YESCRYPT_BYTES {
        return None;
    }
    // Only the plain form libxcrypt writes (`j9T`: default flags, N and r; p = 1, t = 0):
    // the optional fields set a time cost `t` that multiplies the work without a bound the
    // crate lets rotor read, so a hash that carries them is not computed.
    let plain = yescrypt::Params::new(yescrypt::Mode::default(), params.n(), params.r(), 1).ok()?;
    if params != plain {
        return None;
    }
    match yescrypt::Yescrypt::default().verify_password(password.as_bytes(), hash) {
        Ok(()) => Some(true),
        Err(yescrypt::password_hash::Error::PasswordInvalid) => Some(false),
        Err(_) => None,
    }
}

/// `{SSHA}`-style: base64 of `digest(password + salt) + salt` (no salt for `{SHA}`).
fn salted_matches<D: Digest>(b64: &str, password: &str, digest_len: usize) -> Option<bool> {
    let raw = zeroize::Zeroizing::new(STANDARD.decode(b64.trim()).ok()?);
    if raw.len() < digest_len {
        return None;
    }
    let (expected, salt) = raw.split_at(digest_len);
    let mut d = D::new();
    d.update(password.as_bytes());
    d.update(salt);
    Some(d.finalize().as_slice().ct_eq(expected).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(hash: &str, password: &str) -> Option<bool> {
        matches(&Secret::new(hash.into()), &Secret::new(password.into()))
    }

    #[test]
    fn schemes_rotor_can_check() {
        // Reference hashes made by the system's crypt(3) (libxcrypt): yescrypt is Debian 12's
        // default for chpasswd.
        let cases: &[(&str, &str, Option<bool>)] = &[
            (
                "$y$j9T$UG7PNJ6lFV7QjNaGj2oJ8.$epWAwIQHccGqUnoh1iJeBvsOmg0enJm.YrxmEtG5rQ4",
                "Hello world!",
                Some(true),
            ),
            (
                "$y$j9T$UG7PNJ6lFV7QjNaGj2oJ8.$epWAwIQHccGqUnoh1iJeBvsOmg0enJm.YrxmEtG5rQ4",
                "Hello world?",
                Some(false),
            ),
            (
                "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
                "Hello world!",
                Some(true),
            ),
            (
                "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
                "Hello world?",
                Some(false),
            ),
            (
                "{CRYPT}$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
                "Hello world!",
                Some(true),
            ),
            // A hostile cost: not computed.
            (
                "$6$rounds=999999999$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
                "Hello world!",
                None,
            ),
            // A real yescrypt hash of "x" whose optional fields set a time cost t = 200
            // (libxcrypt made it): not computed, although its memory is small.
            (
                "$y$j75/mL$UG7PNJ6lFV7QjNaGj2oJ8.$ppXBZ2Bd4CDMGqI.WS59XNXhvQ8HvpDTjR9JckEGolB",
                "x",
                None,
            ),
            // Parameters whose encoding the crate cannot even print (N = 2^63, a huge r).
            (
                "$y$jkCT$UG7PNJ6lFV7QjNaGj2oJ8.$epWAwIQHccGqUnoh1iJeBvsOmg0enJm.YrxmEtG5rQ4",
                "x",
                None,
            ),
            (
                "$y$j9zzzzzz$UG7PNJ6lFV7QjNaGj2oJ8.$epWAwIQHccGqUnoh1iJeBvsOmg0enJm.YrxmEtG5rQ4",
                "x",
                None,
            ),
            // Unknown or broken.
            ("$2b$12$abcdefghijklmnopqrstuu", "x", None),
            ("{PBKDF2}xyz", "x", None),
            ("!", "x", None),
            ("", "x", None),
        ];
        for (hash, password, expect) in cases {
            assert_eq!(check(hash, password), *expect, "{hash}");
        }
    }

    #[test]
    fn yescrypt_memory_is_bounded() {
        use yescrypt::PasswordHasher;
        // Under and over the bound: N = 2^12 with r = 32 (16 MiB, Debian's default) is
        // computed; N = 2^15 (128 MiB) is not.
        let hash_with = |n: u64, r: u32| {
            let params = yescrypt::Params::new(yescrypt::Mode::default(), n, r, 1).unwrap();
            yescrypt::Yescrypt::from(params)
                .hash_password_with_salt(b"secret", b"0123456789abcdef")
                .unwrap()
                .to_string()
        };
        let under = hash_with(1 << 12, 32);
        assert_eq!(check(&under, "secret"), Some(true), "{under}");
        let over = format!(
            "$y${}$salt$hash",
            yescrypt::Params::new(yescrypt::Mode::default(), 1 << 15, 32, 1).unwrap()
        );
        assert_eq!(check(&over, "secret"), None, "{over}");
    }

    #[test]
    fn yescrypt_made_here_verifies() {
        use yescrypt::PasswordHasher;
        let made = yescrypt::Yescrypt::default()
            .hash_password_with_salt(b"pending secret", b"0123456789abcdef")
            .unwrap()
            .to_string();
        assert!(made.starts_with("$y$"), "{made}");
        assert_eq!(check(&made, "pending secret"), Some(true));
        assert_eq!(check(&made, "pending secreT"), Some(false));
    }

    #[test]
    fn salted_sha_schemes() {
        let salted = |digest: &[u8], salt: &[u8]| STANDARD.encode([digest, salt].concat());
        let salt = b"salt1234";
        let ssha = salted(
            &Sha1::new()
                .chain_update(b"secret")
                .chain_update(salt)
                .finalize(),
            salt,
        );
        let ssha512 = salted(
            &Sha512::new()
                .chain_update(b"secret")
                .chain_update(salt)
                .finalize(),
            salt,
        );
        let sha = salted(&Sha1::digest(b"secret"), b"");
        assert_eq!(check(&format!("{{SSHA}}{ssha}"), "secret"), Some(true));
        assert_eq!(check(&format!("{{ssha}}{ssha}"), "secret"), Some(true));
        assert_eq!(check(&format!("{{SSHA}}{ssha}"), "secreT"), Some(false));
        assert_eq!(
            check(&format!("{{SSHA512}}{ssha512}"), "secret"),
            Some(true)
        );
        assert_eq!(check(&format!("{{SHA}}{sha}"), "secret"), Some(true));
        assert_eq!(check("{SSHA}c2hvcnQ=", "secret"), None);
    }
}
