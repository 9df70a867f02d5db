//! Admission, pure: may a rotation of this credential start now, and may the next account of
//! a host start? The driver gathers the facts (the lease answer, the parking record, how the
//! previous account of the host ended) and carries out the decision; the rules live here so
//! they are tested without a store or a network.

use super::blast::SkipReason;
use super::machine::{Fault, Outcome};
use crate::credential::CredentialId;

/// What the driver does with one credential before the machine starts.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Start the rotation.
    Start,
    /// Clear the parking record first (the operator asked with `--retry-parked`), then start.
    UnparkThenStart,
    /// Leave the credential alone; the report says why.
    Skip(SkipReason, String),
}

/// Invariant 7: a parked credential gets no more logins until an operator acts (or asks for a
/// retry with `--retry-parked`).
pub fn admit(cred: &CredentialId, parked: Option<&str>, retry_parked: bool) -> Admission {
    match parked {
        None => Admission::Start,
        Some(_) if retry_parked => Admission::UnparkThenStart,
        Some(why) => Admission::Skip(
            SkipReason::Parked,
            format!(
                "parked: {why}; fix the cause, then `rotor recover --cred {cred}` or rotate with --retry-parked"
            ),
        ),
    }
}

/// A credential whose secret is out with someone through an open checkout is left alone: a
/// rotation would take the secret from under the holder's work. Check-in, expiry or
/// `--include-checked-out` first end the checkout, and then nobody holds it.
pub fn checked_out(cred: &CredentialId, holder: Option<&str>) -> Admission {
    match holder {
        None => Admission::Start,
        Some(holder) => Admission::Skip(
            SkipReason::CheckedOut,
            format!(
                "checked out ({holder}); it rotates at check-in or expiry. To rotate it now and end the checkout (the holder's secret stops working), run with --include-checked-out --scope cred:{cred}"
            ),
        ),
    }
}

/// Another live rotor holds the credential's lease.
pub fn busy(holder: impl std::fmt::Display) -> Admission {
    Admission::Skip(
        SkipReason::Busy,
        format!(
            "another rotor process is working on this credential ({holder}); it was left alone"
        ),
    )
}

/// The fault that shows the host itself stopped answering during this outcome, if it did:
/// then the host's other accounts are not started, so a hung host is not pushed to again and
/// again, each push waiting out the step timeout and leaving another rotation for recovery.
pub fn host_lost(outcome: &Outcome) -> Option<&Fault> {
    match outcome {
        Outcome::NotChanged { cause } | Outcome::Unsettled { cause, .. }
            if cause.is_unreachable() =>
        {
            Some(cause)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::FaultClass;
    use crate::engine::Phase;

    fn cred() -> CredentialId {
        CredentialId::parse("h1/svc").unwrap()
    }

    #[test]
    fn a_checked_out_credential_is_skipped_with_its_holder_and_the_way_to_force_it() {
        assert_eq!(checked_out(&cred(), None), Admission::Start);
        let Admission::Skip(reason, detail) =
            checked_out(&cred(), Some("checkout 3 by alice, ticket T-1"))
        else {
            panic!("a checked-out credential must be skipped");
        };
        assert_eq!(reason, SkipReason::CheckedOut);
        assert!(
            detail.contains("checkout 3 by alice, ticket T-1"),
            "{detail}"
        );
        assert!(detail.contains("--include-checked-out"), "{detail}");
    }

    #[test]
    fn parking_decides_admission() {
        assert_eq!(admit(&cred(), None, false), Admission::Start);
        assert_eq!(
            admit(&cred(), Some("3 failed"), true),
            Admission::UnparkThenStart
        );
        let Admission::Skip(reason, detail) = admit(&cred(), Some("3 failed"), false) else {
            panic!("a parked credential must be skipped");
        };
        assert_eq!(reason, SkipReason::Parked);
        assert!(detail.contains("rotor recover --cred h1/svc"), "{detail}");
    }

    #[test]
    fn only_an_unreachable_host_stops_its_other_accounts() {
        let lost = Outcome::Unsettled {
            phase: Phase::Applied,
            cause: Fault::target(FaultClass::TimedOut, "t"),
        };
        assert!(host_lost(&lost).is_some());
        let refused = Outcome::RolledBack {
            cause: Fault::target(FaultClass::Refused, "r"),
        };
        assert!(host_lost(&refused).is_none());
        let down = Outcome::NotChanged {
            cause: Fault::target(FaultClass::Unreachable, "u"),
        };
        assert!(host_lost(&down).is_some());
    }
}
