//! Audit heads to the system log: after each committed transaction that appended audit
//! entries, the vault sends the new head (`seq` and `hash`, never a secret) as one syslog
//! datagram to `/dev/log` (journald and rsyslog both listen there), or to the socket
//! `ROTOR_SYSLOG_SOCKET` names. Kept outside the vault, those heads let
//! `rotor audit verify --heads` notice a log truncated and given an older head back, which the
//! vault file alone cannot show.
//!
//! It must never slow or stop a rotation: one unbound, non-blocking datagram socket per vault
//! handle, opened on first use; each head is one `sendto` of about 150 bytes, dropped when the
//! receiver's queue is full (`EAGAIN`) or nobody listens. A missing socket is not an error
//! (a container, a test machine): it is said once at debug level.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Local, Utc};

use super::audit::Head;

/// The socket the system log listens on, unless `ROTOR_SYSLOG_SOCKET` names another.
pub const DEFAULT_SOCKET: &str = "/dev/log";

/// The environment variable that names another socket (systems whose syslog socket lives
/// elsewhere; tests, which listen on one of their own).
pub const SOCKET_ENV: &str = "ROTOR_SYSLOG_SOCKET";

/// syslog facility `auth` (4) at severity `info` (6): `<4 * 8 + 6>`.
const PRIORITY: u8 = 4 * 8 + 6;

/// Where one vault handle sends its heads.
pub struct HeadLog {
    path: PathBuf,
    /// What the heads name the vault by, so a machine with several vaults can tell their
    /// lines apart.
    vault: String,
    socket: OnceLock<Option<UnixDatagram>>,
    /// Whether a failed send was logged already (once per handle is enough).
    said_failure: AtomicBool,
}

/// How a vault is named in its head lines: its data directory resolved (so every spelling of
/// the path names it the same), escaped. The last field of the line: it may hold spaces.
pub fn vault_name(data_dir: &Path) -> String {
    let real = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    crate::text::escape(&real.display().to_string()).into_owned()
}

impl HeadLog {
    /// Sends to `ROTOR_SYSLOG_SOCKET`, else `/dev/log`.
    pub fn from_env(data_dir: &Path) -> HeadLog {
        let path = std::env::var_os(SOCKET_ENV)
            .filter(|p| !p.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_SOCKET), PathBuf::from);
        HeadLog::at(path, data_dir)
    }

    /// Sends to the socket at `path` (opened on the first head).
    pub fn at(path: PathBuf, data_dir: &Path) -> HeadLog {
        HeadLog {
            path,
            vault: vault_name(data_dir),
            socket: OnceLock::new(),
            said_failure: AtomicBool::new(false),
        }
    }

    /// Sends one head; never fails, never blocks.
    pub fn announce(&self, head: &Head, at: DateTime<Utc>) {
        let socket = self.socket.get_or_init(|| {
            let socket = UnixDatagram::unbound().and_then(|s| {
                s.set_nonblocking(true)?;
                Ok(s)
            });
            socket
                .map_err(|e| self.say_once(&e, "cannot open a datagram socket"))
                .ok()
        });
        let Some(socket) = socket else {
            return;
        };
        let line = datagram(head, at, std::process::id(), &self.vault);
        // Sent to the path each time (not connected once): a restarted journald or rsyslog
        // makes a new socket at the same path, and the next head reaches it.
        if let Err(e) = socket.send_to(line.as_bytes(), &self.path) {
            self.say_once(&e, "the audit head was not sent to the system log");
        }
    }

    fn say_once(&self, error: &std::io::Error, what: &str) {
        if !self.said_failure.swap(true, Ordering::Relaxed) {
            tracing::debug!(
                socket = %self.path.display(), %error,
                "{what}; audit heads are not recorded outside the vault (set {SOCKET_ENV} where the system log listens elsewhere)"
            );
        }
    }
}

/// One syslog line as glibc's `syslog(3)` writes it to the local socket (RFC 3164 without the
/// host name): `<38>Jan  2 03:04:05 rotor[PID]: audit head seq=N hash=HEX vault=DIR`.
pub fn datagram(head: &Head, at: DateTime<Utc>, pid: u32, vault: &str) -> String {
    let stamp = at.with_timezone(&Local).format("%b %e %H:%M:%S");
    format!("<{PRIORITY}>{stamp} rotor[{pid}]: audit head {head} vault={vault}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::audit::head_in_line;

    fn head() -> Head {
        Head {
            seq: 42,
            hash: "3fa9".repeat(16),
        }
    }

    #[test]
    fn a_datagram_is_a_syslog_line_whose_head_reads_back() {
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let line = datagram(&head(), at, 4242, "/var/lib/rotor");
        assert!(
            line.starts_with("<38>Jan  2 ") || line.starts_with("<38>Jan  1 "),
            "{line}"
        );
        assert!(
            line.ends_with(&format!(
                " rotor[4242]: audit head seq=42 hash={} vault=/var/lib/rotor",
                "3fa9".repeat(16)
            )),
            "{line}"
        );
        assert_eq!(head_in_line(&line), Some(head()));
    }

    #[test]
    fn heads_reach_a_listening_socket_and_a_missing_one_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let log = HeadLog::at(path.clone(), Path::new("v"));
        log.announce(&head(), Utc::now());
        let mut buf = [0u8; 512];
        let n = listener.recv(&mut buf).unwrap();
        let line = std::str::from_utf8(&buf[..n]).unwrap();
        assert_eq!(head_in_line(line), Some(head()), "{line}");
        // Nobody listens any more (and then no socket at all): dropped, without blocking.
        drop(listener);
        log.announce(&head(), Utc::now());
        std::fs::remove_file(&path).unwrap();
        log.announce(&head(), Utc::now());
        assert!(log.said_failure.load(Ordering::Relaxed));
    }
}
