//! Break-glass checkout rules, pure: how long a grant may last, who may approve and claim it,
//! who may read a checked-out secret, and what a checkout's deadline means once it has
//! passed. Time comes in as an argument (the caller's injected clock); the vault records the
//! states and enforces these rules inside its transactions; `ops::checkout` drives them.
//!
//! A checkout's life: `pending` (waiting for a second person) → `approved` (waiting for the
//! requester to claim it) → `open` (the secret was shown; `ends_at` is the deadline) →
//! `ending` (checked in or expired: the credential must be rotated; a failed rotation keeps
//! it here, and every later rotor command retries) → `closed` (rotated; or, for a request
//! that never showed the secret, cancelled, refused or lapsed without a rotation).

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::engine::ledger::Identified;
use crate::inventory::{Approval, CheckoutPolicy};

/// Where a checkout is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Approved,
    Open,
    Ending,
    Closed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Open => "open",
            State::Ending => "ending",
            State::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        Some(match text {
            "pending" => State::Pending,
            "approved" => State::Approved,
            "open" => State::Open,
            "ending" => State::Ending,
            "closed" => State::Closed,
            _ => return None,
        })
    }

    /// Whether the secret may be out: it was shown and the credential is not rotated yet.
    pub fn secret_is_out(self) -> bool {
        matches!(self, State::Open | State::Ending)
    }
}

/// Why a checkout ended (or is ending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `rotor checkin`.
    CheckIn,
    /// Its deadline passed while the secret was out.
    Expired,
    /// A run with `--include-checked-out` rotated it.
    Forced,
    /// A request that was never claimed: cancelled by `checkin` or lapsed at its deadline.
    Cancelled,
    Lapsed,
    /// A pending request a second person turned down (`rotor refuse`): nothing was shown.
    Refused,
}

impl End {
    pub fn as_str(self) -> &'static str {
        match self {
            End::CheckIn => "checked_in",
            End::Expired => "expired",
            End::Forced => "forced",
            End::Cancelled => "cancelled",
            End::Lapsed => "lapsed",
            End::Refused => "refused",
        }
    }

    pub fn parse(text: &str) -> Option<End> {
        Some(match text {
            "checked_in" => End::CheckIn,
            "expired" => End::Expired,
            "forced" => End::Forced,
            "cancelled" => End::Cancelled,
            "lapsed" => End::Lapsed,
            "refused" => End::Refused,
            _ => return None,
        })
    }
}

/// A rule said no; the message says why and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The grant's length: `--ttl` if given (at most the policy's `max_ttl`), else the policy's
/// `default_ttl`.
pub fn ttl(requested: Option<Duration>, policy: &CheckoutPolicy) -> Result<Duration, Refused> {
    match requested {
        None => Ok(policy.default_ttl),
        Some(d) if d.is_zero() => Err(Refused("--ttl must be longer than zero".into())),
        Some(d) if d > policy.max_ttl => Err(Refused(format!(
            "--ttl {} is longer than this credential's policy allows (max_ttl {}): ask for at most {}, and check out again if the work takes longer",
            crate::text::duration_words(d),
            crate::text::duration_words(policy.max_ttl),
            crate::text::duration_words(policy.max_ttl),
        ))),
        Some(d) => Ok(d),
    }
}

/// Whether a request under `policy` is granted at once or waits for approval.
pub fn needs_approval(policy: &CheckoutPolicy) -> bool {
    policy.approval == Approval::Required
}

/// Names as the rules compare them: `Kato` and ` kato` are the same person.
fn same(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Requesting, approving and claiming depend on who acts: an actor rotor cannot vouch for
/// (a `SUDO_USER` that sudo did not set) may do none of them.
pub fn may_act(how: Identified) -> Result<(), Refused> {
    if how == Identified::Claimed {
        return Err(Refused(
            "rotor cannot tell who you are: SUDO_USER is set, but rotor was not started by sudo itself (a shell, a script or a killed sudo in between). Run `sudo -u OWNER rotor ...` directly, as yourself".into(),
        ));
    }
    Ok(())
}

/// Dual control: the approver must be a person rotor can vouch for, neither the requester nor
/// the engineer the request names (`--for`); and where the request came through sudo (a
/// shared rotor machine), through sudo too: the vault's own account is nobody.
pub fn may_approve(
    approver: &str,
    how: Identified,
    requester: &str,
    requester_via_sudo: bool,
    for_name: Option<&str>,
) -> Result<(), Refused> {
    second_person(
        "approve",
        approver,
        how,
        requester,
        requester_via_sudo,
        for_name,
    )
}

/// Refusing a request is the approver's act, under the same rules: whoever may not approve a
/// request may not refuse it either (the requester withdraws their own with `rotor checkin`).
pub fn may_refuse(
    refuser: &str,
    how: Identified,
    requester: &str,
    requester_via_sudo: bool,
    for_name: Option<&str>,
) -> Result<(), Refused> {
    second_person(
        "refuse",
        refuser,
        how,
        requester,
        requester_via_sudo,
        for_name,
    )
}

/// The second person's rules, for `verb` (`approve` or `refuse`, the command named in the
/// message).
fn second_person(
    verb: &str,
    approver: &str,
    how: Identified,
    requester: &str,
    requester_via_sudo: bool,
    for_name: Option<&str>,
) -> Result<(), Refused> {
    may_act(how)?;
    if same(approver, requester) {
        let withdraw = if verb == "refuse" {
            " (to withdraw your own request, check it in: `rotor checkin ID`)"
        } else {
            ""
        };
        return Err(Refused(format!(
            "{approver} requested this checkout and cannot {verb} it: another person must run `rotor {verb}`{withdraw}"
        )));
    }
    if for_name.is_some_and(|f| same(f, approver)) {
        return Err(Refused(format!(
            "the checkout is for {approver}, who cannot {verb} it: another person must run `rotor {verb}`"
        )));
    }
    if requester_via_sudo && how != Identified::Sudo {
        return Err(Refused(format!(
            "{requester} requested this checkout through sudo, so it must be {verb}d by a person through sudo too (`sudo -u {approver} rotor {verb} ...` as yourself), not by the account {approver} directly"
        )));
    }
    Ok(())
}

/// Only the requester claims an approved checkout (the secret goes to the person of record).
pub fn may_claim(claimer: &str, how: Identified, requester: &str) -> Result<(), Refused> {
    may_act(how)?;
    if same(claimer, requester) {
        Ok(())
    } else {
        Err(Refused(format!(
            "only {requester}, who requested this checkout, can claim it"
        )))
    }
}

/// Who may end a checkout through the daemon (API or page), where tokens of many people
/// meet: its requester, the engineer it was made for, or, when `may_end_others` (an
/// approver's or admin's token), anyone's. A requester's token cannot end another vendor's
/// work in the middle of it.
pub fn may_check_in(
    person: &str,
    requester: &str,
    for_name: Option<&str>,
    may_end_others: bool,
) -> Result<(), Refused> {
    if may_end_others || same(person, requester) || for_name.is_some_and(|f| same(person, f)) {
        Ok(())
    } else {
        Err(Refused(format!(
            "only {requester}, who requested this checkout{}, or an approver can check it in",
            for_name.map_or_else(String::new, |f| format!(", or {f}, for whom it was made"))
        )))
    }
}

/// How a read of a checked-out credential's secret is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// The holder reads it again.
    ByHolder,
    /// Someone else: allowed (with the reason `show` always asks for), recorded as an
    /// override and told who holds it.
    Override,
}

pub fn read_by(reader: &str, how: Identified, holder: &str) -> Read {
    if how != Identified::Claimed && same(reader, holder) {
        Read::ByHolder
    } else {
        Read::Override
    }
}

/// What a passed deadline means for a checkout in `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing yet.
    No,
    /// The secret was out: the checkout expires and its credential is rotated.
    Expire,
    /// The secret was never shown: the request lapses, nothing to rotate.
    Lapse,
}

pub fn due(state: State, ends_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Due {
    match (state, ends_at) {
        (State::Open, Some(end)) if end <= now => Due::Expire,
        (State::Pending | State::Approved, Some(end)) if end <= now => Due::Lapse,
        _ => Due::No,
    }
}

/// The deadline of a checkout granted, approved or requested `at` for `ttl`: an open one ends
/// then; a pending or approved one lapses then if nobody acted.
pub fn deadline(at: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    at + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkout_is_ended_through_the_daemon_by_its_people_or_an_approver() {
        assert!(may_check_in("kato", "kato", None, false).is_ok());
        assert!(may_check_in("eng", "kato", Some("eng"), false).is_ok());
        assert!(may_check_in("sato", "kato", None, true).is_ok());
        let no = may_check_in("other-vendor", "kato", Some("eng"), false).unwrap_err();
        assert_eq!(
            no.0,
            "only kato, who requested this checkout, or eng, for whom it was made, or an approver can check it in"
        );
    }

    fn policy(approval: Approval) -> CheckoutPolicy {
        CheckoutPolicy {
            approval,
            max_ttl: Duration::from_secs(8 * 3600),
            default_ttl: Duration::from_secs(2 * 3600),
        }
    }

    #[test]
    fn the_ttl_defaults_and_is_capped_with_the_maximum_named() {
        let p = policy(Approval::Required);
        assert_eq!(ttl(None, &p), Ok(Duration::from_secs(7200)));
        assert_eq!(
            ttl(Some(Duration::from_secs(4 * 3600)), &p),
            Ok(Duration::from_secs(4 * 3600))
        );
        assert_eq!(ttl(Some(p.max_ttl), &p), Ok(p.max_ttl));
        let err = ttl(Some(Duration::from_secs(9 * 3600)), &p).unwrap_err();
        assert!(err.0.contains("max_ttl 8h"), "{err}");
        assert!(ttl(Some(Duration::ZERO), &p).is_err());
        assert!(needs_approval(&p));
        assert!(!needs_approval(&policy(Approval::None)));
    }

    #[test]
    fn nobody_approves_their_own_checkout_nor_the_named_engineer() {
        use Identified::{Claimed, Named, Os, Sudo};
        assert!(may_approve("bob", Named, "alice", false, Some("vendor-kato")).is_ok());
        assert!(may_approve("bob", Sudo, "alice", true, None).is_ok());
        let own = may_approve("alice", Sudo, "alice", true, None).unwrap_err();
        assert!(own.0.contains("cannot approve"), "{own}");
        let named =
            may_approve("vendor-kato", Os, "alice", false, Some("vendor-kato")).unwrap_err();
        assert!(named.0.contains("is for vendor-kato"), "{named}");
        // Case and spaces make nobody someone else.
        assert!(may_approve("Alice", Os, " alice", false, None).is_err());
        assert!(may_approve("kato", Os, "alice", false, Some("Kato ")).is_err());
        // An identity only claimed acts in no checkout; the vault's own account, outside
        // sudo, approves no request that came through sudo.
        let claimed = may_approve("rotor", Claimed, "alice", true, None).unwrap_err();
        assert!(claimed.0.contains("cannot tell who you are"), "{claimed}");
        let owner = may_approve("rotor", Os, "alice", true, None).unwrap_err();
        assert!(owner.0.contains("through sudo"), "{owner}");
        assert!(may_act(Claimed).is_err() && may_act(Os).is_ok());
        // Refusing follows the approver's rules, and names its own command.
        assert!(may_refuse("bob", Named, "alice", false, Some("vendor-kato")).is_ok());
        let own = may_refuse("alice", Named, "alice", false, None).unwrap_err();
        assert!(own.0.contains("cannot refuse it"), "{own}");
        assert!(own.0.contains("rotor checkin"), "{own}");
        let named = may_refuse("kato", Os, "alice", false, Some("kato")).unwrap_err();
        assert!(named.0.contains("`rotor refuse`"), "{named}");
        assert!(may_refuse("rotor", Os, "alice", true, None).is_err());
        assert!(may_refuse("rotor", Claimed, "alice", false, None).is_err());
        assert!(may_claim("alice", Sudo, "alice").is_ok());
        assert!(may_claim("alice", Claimed, "alice").is_err());
        assert!(may_claim("bob", Sudo, "alice").is_err());
        assert_eq!(read_by("alice", Sudo, "alice"), Read::ByHolder);
        assert_eq!(read_by("alice", Claimed, "alice"), Read::Override);
        assert_eq!(read_by("bob", Sudo, "alice"), Read::Override);
    }

    #[test]
    fn a_passed_deadline_expires_an_open_checkout_and_lapses_a_request() {
        let t0 = DateTime::parse_from_rfc3339("2026-12-01T09:00:00Z")
            .unwrap()
            .to_utc();
        let end = deadline(t0, Duration::from_secs(3600));
        let before = end - chrono::Duration::seconds(1);
        assert_eq!(due(State::Open, Some(end), before), Due::No);
        assert_eq!(due(State::Open, Some(end), end), Due::Expire);
        assert_eq!(due(State::Pending, Some(end), end), Due::Lapse);
        assert_eq!(due(State::Approved, Some(end), end), Due::Lapse);
        // An ending checkout is already being rotated; a closed one is done.
        assert_eq!(due(State::Ending, Some(end), end), Due::No);
        assert_eq!(due(State::Closed, Some(end), end), Due::No);
        for s in [
            State::Pending,
            State::Approved,
            State::Open,
            State::Ending,
            State::Closed,
        ] {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        for e in [
            End::CheckIn,
            End::Expired,
            End::Forced,
            End::Cancelled,
            End::Lapsed,
            End::Refused,
        ] {
            assert_eq!(End::parse(e.as_str()), Some(e));
        }
    }
}
