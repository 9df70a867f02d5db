//! `status`: every credential in the vault, its age (by the context's clock) and its state.

use chrono::{DateTime, Utc};

use super::{Context, OpsError};
use crate::store::CredentialStatus;

/// The vault's credentials, read at `now`.
pub struct Status {
    pub now: DateTime<Utc>,
    pub credentials: Vec<CredentialStatus>,
}

/// What a credential needs, most urgent first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State<'a> {
    /// Its lockout budget is spent: no login until an operator unparks it.
    Parked(&'a str),
    /// A live rotor holds its lease.
    InUse(&'a str),
    /// A rotation is open: recovery must settle it.
    Open,
    Ok,
    NoCurrentSecret,
}

impl Status {
    /// How long the credential's current secret has been current.
    pub fn age(&self, s: &CredentialStatus) -> Option<chrono::Duration> {
        s.current_since.map(|t| self.now - t)
    }
}

pub fn state(s: &CredentialStatus) -> State<'_> {
    if let Some(why) = &s.parked {
        State::Parked(why)
    } else if let Some(holder) = &s.lease_holder {
        State::InUse(holder)
    } else if s.open_rotation {
        State::Open
    } else if s.has_current {
        State::Ok
    } else {
        State::NoCurrentSecret
    }
}

pub fn status(ctx: &Context) -> Result<Status, OpsError> {
    Ok(Status {
        now: ctx.clock.now(),
        credentials: ctx.records.status()?,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::credential::CredentialId;
    use crate::engine::testkit::{FakeFleet, MemStore};
    use crate::ops::testkit::{context, runtime};

    #[test]
    fn ages_come_from_the_context_clock() {
        let rt = runtime();
        let fleet: &'static FakeFleet = Box::leak(Box::default());
        let store = Arc::new(MemStore::default());
        let app = CredentialId::parse("a/svc_app").unwrap();
        store.inner.lock().unwrap().current.insert(app, "s".into());
        store
            .inner
            .lock()
            .unwrap()
            .parked
            .insert(CredentialId::parse("a/svc_app").unwrap(), "2 failed".into());
        let ctx = context(fleet, &store, &rt);
        let st = status(&ctx).unwrap();
        // The test clock reads 2026-12-01; the secret was set 2026-11-01.
        assert_eq!(st.age(&st.credentials[0]).unwrap().num_days(), 30);
        assert_eq!(state(&st.credentials[0]), State::Parked("2 failed"));
    }
}
