//! Password generation from a policy. Pure: the random number generator is a parameter, so
//! tests are deterministic and production passes the OS CSPRNG.
//!
//! Every required class must appear at least once. Rather than forcing one character of each
//! class into fixed positions (which skews the distribution), whole passwords are drawn
//! uniformly from the allowed alphabet and rejected until they meet the class rules: the result
//! is uniform over all passwords that satisfy the policy.

use rand::{CryptoRng, Rng};

use crate::inventory::Policy;
use crate::secret::Secret;

/// Symbols used by the `symbol` class. Left out on purpose: quotes, backslash and backtick
/// (they break naive config files and shell snippets in custom playbooks), `:` (the field
/// separator of `chpasswd` and `/etc/shadow`) and whitespace.
pub const SYMBOLS: &str = "!#$%&()*+,-./;<=>?@[]^_{|}~";

/// After this many rejected draws the policy is treated as unsatisfiable (it cannot happen
/// with a validated policy: the acceptance rate of a 12-character, 4-class password over the
/// default alphabet is above 50%).
const MAX_DRAWS: usize = 10_000;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GenerateError {
    #[error(
        "policy `{0}` cannot be satisfied: its exclusions remove every character of a required class, or the length is shorter than the number of classes; edit the policy in the inventory"
    )]
    Unsatisfiable(String),
}

/// The characters a policy may use, in a fixed order.
pub fn alphabet(policy: &Policy) -> Vec<char> {
    policy
        .classes
        .iter()
        .flat_map(|c| c.chars())
        .filter(|c| !policy.exclude.contains(*c))
        .collect()
}

/// Draws one password that satisfies `policy`, uniformly among all that do.
pub fn generate<R: Rng + CryptoRng>(policy: &Policy, rng: &mut R) -> Result<Secret, GenerateError> {
    let alphabet = alphabet(policy);
    let unsatisfiable = || GenerateError::Unsatisfiable(policy.name.clone());
    if alphabet.is_empty() || policy.length < policy.classes.len() {
        return Err(unsatisfiable());
    }
    let required: Vec<Vec<char>> = policy
        .classes
        .iter()
        .map(|c| {
            c.chars()
                .filter(|ch| !policy.exclude.contains(*ch))
                .collect::<Vec<char>>()
        })
        .collect();
    if required.iter().any(|r| r.is_empty()) {
        return Err(unsatisfiable());
    }
    let mut buf = zeroize::Zeroizing::new(String::with_capacity(policy.length * 4));
    for _ in 0..MAX_DRAWS {
        buf.clear();
        for _ in 0..policy.length {
            // gen_range is unbiased (rejection inside rand); never `% len`.
            buf.push(alphabet[rng.gen_range(0..alphabet.len())]);
        }
        if required.iter().all(|r| buf.chars().any(|c| r.contains(&c))) {
            return Ok(Secret::new(buf.to_string()));
        }
    }
    Err(unsatisfiable())
}

/// Bits of entropy of a password drawn from the policy's alphabet (an upper bound; the class
/// rule removes a little). Shown by `plan` so people can judge a policy.
pub fn entropy_bits(policy: &Policy) -> f64 {
    let n = alphabet(policy).len();
    if n == 0 {
        0.0
    } else {
        policy.length as f64 * (n as f64).log2()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::CharClass;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn policy(length: usize, classes: &[CharClass], exclude: &str) -> Policy {
        Policy {
            name: "t".into(),
            length,
            classes: classes.to_vec(),
            exclude: exclude.into(),
            schedule: None,
            max_age: None,
            timezone: None,
            window: None,
            max_failed_logins: 2,
            checkout: Default::default(),
        }
    }

    const ALL: [CharClass; 4] = [
        CharClass::Lower,
        CharClass::Upper,
        CharClass::Digit,
        CharClass::Symbol,
    ];

    #[test]
    fn default_policy_has_all_classes_and_length() {
        let p = policy(24, &ALL, "");
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let s = generate(&p, &mut rng).unwrap();
            let s = s.expose();
            assert_eq!(s.chars().count(), 24);
            assert!(s.chars().any(|c| c.is_ascii_lowercase()));
            assert!(s.chars().any(|c| c.is_ascii_uppercase()));
            assert!(s.chars().any(|c| c.is_ascii_digit()));
            assert!(s.chars().any(|c| SYMBOLS.contains(c)));
            assert!(!s.contains(':') && !s.contains('\'') && !s.contains('"'));
        }
        assert!(entropy_bits(&p) > 150.0);
    }

    #[test]
    fn exclusions_are_honoured() {
        let p = policy(16, &ALL, "0O1lI|");
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..200 {
            let s = generate(&p, &mut rng).unwrap();
            assert!(!s.expose().chars().any(|c| "0O1lI|".contains(c)));
        }
    }

    #[test]
    fn unsatisfiable_policies_are_errors() {
        let mut rng = StdRng::seed_from_u64(1);
        let no_digits = policy(16, &[CharClass::Digit], "0123456789");
        assert!(generate(&no_digits, &mut rng).is_err());
        let too_short = policy(3, &ALL, "");
        assert!(generate(&too_short, &mut rng).is_err());
    }

    /// Uniformity: over many draws, characters of the same class appear about equally often.
    /// (Across classes they need not: conditioning on "has a digit" makes digits a little more
    /// frequent, which is exactly uniform over valid passwords.) A `% len` bias or fixed class
    /// positions would skew characters within a class well beyond the bound.
    #[test]
    fn characters_are_uniform_within_each_class() {
        let p = policy(24, &ALL, "");
        let mut counts = std::collections::HashMap::new();
        let mut rng = StdRng::seed_from_u64(42);
        for _ in 0..4000 {
            for c in generate(&p, &mut rng).unwrap().expose().chars() {
                *counts.entry(c).or_insert(0usize) += 1;
            }
        }
        for class in ALL {
            let chars: Vec<char> = class.chars().collect();
            let total: usize = chars
                .iter()
                .map(|c| counts.get(c).copied().unwrap_or(0))
                .sum();
            let mean = total as f64 / chars.len() as f64;
            for c in &chars {
                let got = counts.get(c).copied().unwrap_or(0) as f64;
                assert!((got - mean).abs() < mean * 0.15, "{c:?}: {got} vs {mean}");
            }
        }
    }

    proptest! {
        #[test]
        fn any_satisfiable_policy_yields_a_valid_password(
            length in 4usize..64,
            mask in 1u8..16,
            exclude in "[a-z0-9!#]{0,6}",
            seed: u64,
        ) {
            let classes: Vec<CharClass> = ALL.iter().enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0).map(|(_, c)| *c).collect();
            let p = policy(length, &classes, &exclude);
            let mut rng = StdRng::seed_from_u64(seed);
            let s = generate(&p, &mut rng).unwrap();
            let alphabet = alphabet(&p);
            prop_assert_eq!(s.expose().chars().count(), length);
            prop_assert!(s.expose().chars().all(|c| alphabet.contains(&c)));
        }
    }
}
