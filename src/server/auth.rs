//! Who is calling: an API token (`Authorization: Bearer rotor_...`, or the page's session
//! cookie holding the same token) is looked up in the vault (`Vault::token_principal`:
//! neither revoked nor expired by the vault's clock), and a route states the least role it
//! needs. The token's name is the actor every operation and audit entry records.

use crate::secret::Secret;
use crate::store::{StoreError, Vault};

pub use crate::store::{Principal, Role};

use super::Actor;

/// Why a call is not let through.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no API token: send `Authorization: Bearer TOKEN` with a token from `rotor token create`"
    )]
    Missing,
    #[error(
        "the API token is unknown, revoked or expired: ask an admin for a new one (`rotor token create`)"
    )]
    Invalid,
    #[error("this needs the {} role; the token `{name}` is {}", need.as_str(), has.as_str())]
    Forbidden { need: Role, has: Role, name: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The principal a presented token speaks for.
pub fn authenticate(vault: &Vault, token: Option<&str>) -> Result<Principal, AuthError> {
    let token = token.map(str::trim).filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(AuthError::Missing);
    };
    // Longer than any token rotor makes: not looked up (and never echoed).
    if token.len() > 200 {
        return Err(AuthError::Invalid);
    }
    let token = Secret::new(token.to_owned());
    vault.token_principal(&token)?.ok_or(AuthError::Invalid)
}

/// The token from an `Authorization` header value (`Bearer TOKEN`, scheme case-insensitive).
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Refuses a principal below `need` (roles are ordered: requester < approver < admin).
pub fn require(p: &Principal, need: Role) -> Result<(), AuthError> {
    if p.role >= need {
        Ok(())
    } else {
        Err(AuthError::Forbidden {
            need,
            has: p.role,
            name: p.name.clone(),
        })
    }
}

/// The actor a token's calls are made as: its name.
pub fn actor(p: &Principal) -> Actor {
    Actor::named(&p.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_takes_the_token_after_the_scheme() {
        assert_eq!(bearer("Bearer rotor_1_x"), Some("rotor_1_x"));
        assert_eq!(bearer("bearer  rotor_1_x "), Some("rotor_1_x"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("rotor_1_x"), None);
    }

    #[test]
    fn roles_are_ordered() {
        let p = |role| Principal {
            token_id: 1,
            name: "n".into(),
            role,
        };
        assert!(require(&p(Role::Admin), Role::Approver).is_ok());
        assert!(require(&p(Role::Approver), Role::Approver).is_ok());
        assert!(matches!(
            require(&p(Role::Requester), Role::Approver),
            Err(AuthError::Forbidden { .. })
        ));
    }
}
