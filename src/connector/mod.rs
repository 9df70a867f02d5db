//! Connectors: the edges that talk to targets. The engine never sees `ssh2` or `ldap3` types; it
//! sees `crate::target::Target` (whose adapters use these connectors), the [`ldap`] module's
//! own types and [`ConnectorError`]s that carry a [`FaultClass`] it can branch on.
//!
//! Invariant: no error message built here contains a secret (the new password, a saved shadow
//! hash, a key passphrase). Messages name the host, the account and the step.

pub mod ldap;
pub mod ssh;

/// Loopback ports for the lab tests' own servers (sshd, slapd), shared by every lab test of
/// this binary.
#[cfg(all(test, feature = "lab"))]
pub(crate) mod lab_ports {
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A loopback port for a lab listener. Ports come from below the kernel's ephemeral range
    /// (32768 and up on Debian), so no outgoing connection of a concurrent test (the bench opens
    /// hundreds) can be holding one, and from a counter shared by this test binary, so two labs of
    /// one run never draw the same port; the base depends on the PID, so concurrent test binaries
    /// rarely meet, and `spawn` proves that the listener it waits for is its own slapd's.
    pub(crate) fn free_port() -> u16 {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        const FIRST: u32 = 20_000;
        const SPAN: u32 = 12_000;
        let base = (std::process::id() % 1_000) * 12;
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = u16::try_from(FIRST + (base + n) % SPAN).expect("below 32768");
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
}

use std::fmt;

use serde::Serialize;

/// Why a step against a target failed, as the engine and the report need to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultClass {
    /// TCP connection refused or no route: the host is down.
    Unreachable,
    /// A step's deadline passed (e.g. TCP connects but no SSH banner arrives).
    TimedOut,
    /// The host presented a key other than the pinned one, or none is pinned.
    HostKeyMismatch,
    /// rotor's own connect identity was rejected.
    ConnectAuthRejected,
    /// The account does not exist on the target.
    AccountMissing,
    /// The account is locked or disabled on the target; rotor does not give it a working
    /// password.
    AccountLocked,
    /// The target refused to set the new secret (e.g. `chpasswd` failed).
    Refused,
    /// Login with the secret under test failed.
    VerifyFailed,
    /// The server's TLS certificate could not be verified (unknown issuer, wrong name, expired),
    /// or the server would not start TLS. Like `HostKeyMismatch`: nothing was sent.
    TlsInvalid,
    /// Putting the old credential back was refused by the target's password policy (OpenLDAP
    /// ppolicy `pwdInHistory`, a minimum age, a quality check). The new credential stays in
    /// place; the engine verifies it and reports why rollback was not possible.
    RollbackRefusedByPolicy,
    /// Anything else: protocol errors, unexpected output.
    Protocol,
    /// A file on rotor's own machine that the inventory names (a known_hosts pin, a key file,
    /// a CA file) is missing or cannot be read: nothing about the target is known, and the
    /// fix is local. Never a host key mismatch.
    LocalFile,
}

impl fmt::Display for FaultClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultClass::Unreachable => "host unreachable",
            FaultClass::TimedOut => "timed out",
            FaultClass::HostKeyMismatch => "host key mismatch",
            FaultClass::ConnectAuthRejected => "connect identity rejected",
            FaultClass::AccountMissing => "account missing",
            FaultClass::AccountLocked => "account locked",
            FaultClass::Refused => "target refused the change",
            FaultClass::VerifyFailed => "verification failed",
            FaultClass::TlsInvalid => "TLS certificate not trusted",
            FaultClass::RollbackRefusedByPolicy => "password policy refused the rollback",
            FaultClass::Protocol => "protocol error",
            FaultClass::LocalFile => "local file not found or unreadable",
        })
    }
}

/// An error from a connector: a class to branch on and a message for people (never a secret).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConnectorError {
    pub class: FaultClass,
    pub message: String,
}

impl ConnectorError {
    pub fn new(class: FaultClass, message: impl Into<String>) -> ConnectorError {
        ConnectorError {
            class,
            message: message.into(),
        }
    }
}
