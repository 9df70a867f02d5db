//! Issue 8 item 6: a directory that misbehaves is one failed directory in the report; the SSH
//! hosts and the other directories of the same inventory are still rotated. The misbehaving
//! directory is a tiny LDAPS server written here (rustls on the LDAP lab's certificate, and
//! just enough BER to answer a bind and a search), with answers that made `ldap3` panic.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::lab::Lab;
use crate::ldap_lab::LdapLab;
use crate::support::{Rotor, json, result_of};

/// What the hostile server answers to a search (after one entry with a good DN).
#[derive(Clone, Copy)]
enum Answer {
    /// An entry whose DN is not UTF-8 (`ldap3`'s `SearchEntry::construct` panics: "dn").
    NonUtf8Dn,
    /// A search-done carrying a paged-results control whose value does not decode
    /// (`ldap3`'s paged-results adapter panics).
    UndecodablePagedControl,
}

const PAGED_RESULTS_OID: &[u8] = b"1.2.840.113556.1.4.319";
const SERVICE_OU: &str = "ou=service,dc=hospital,dc=example";

/// One BER TLV with a definite length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// An LDAPResult with `rc`, no matched DN and no diagnostic.
fn ldap_result(rc: u8) -> Vec<u8> {
    cat(&[tlv(0x0a, &[rc]), tlv(0x04, b""), tlv(0x04, b"")])
}

/// Reads one LDAPMessage; `None` at EOF. Returns its message id (the INTEGER's content bytes)
/// and its protocolOp tag.
fn read_message(stream: &mut impl Read) -> Option<(Vec<u8>, u8)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).ok()?;
    let len = if head[1] < 0x80 {
        head[1] as usize
    } else {
        let mut bytes = vec![0u8; (head[1] & 0x7f) as usize];
        stream.read_exact(&mut bytes).ok()?;
        bytes.iter().fold(0usize, |n, b| (n << 8) | *b as usize)
    };
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).ok()?;
    // body: 02 LEN ID..., then the protocolOp's tag.
    let id_len = body[1] as usize;
    Some((body[2..2 + id_len].to_vec(), body[2 + id_len]))
}

fn message(id: &[u8], op: Vec<u8>, controls: Option<Vec<u8>>) -> Vec<u8> {
    let mut parts = vec![tlv(0x02, id), op];
    parts.extend(controls);
    tlv(0x30, &cat(&parts))
}

fn entry(id: &[u8], dn: &[u8]) -> Vec<u8> {
    let uid = tlv(
        0x30,
        &cat(&[tlv(0x04, b"uid"), tlv(0x31, &tlv(0x04, b"x"))]),
    );
    message(id, tlv(0x64, &cat(&[tlv(0x04, dn), tlv(0x30, &uid)])), None)
}

fn serve(stream: TcpStream, config: Arc<rustls::ServerConfig>, answer: Answer) {
    stream.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, stream);
    while let Some((id, op)) = read_message(&mut tls) {
        let reply = match op {
            // bindRequest: success.
            0x60 => message(&id, tlv(0x61, &ldap_result(0)), None),
            // searchRequest: one good entry, then the hostile part.
            0x63 => {
                let good = entry(&id, format!("uid=good,{SERVICE_OU}").as_bytes());
                let done = tlv(0x65, &ldap_result(0));
                match answer {
                    Answer::NonUtf8Dn => {
                        let dn = cat(&[
                            b"uid=".to_vec(),
                            vec![0xff, 0xfe],
                            format!(",{SERVICE_OU}").into_bytes(),
                        ]);
                        let bad = entry(&id, &dn);
                        cat(&[good, bad, message(&id, done, None)])
                    }
                    Answer::UndecodablePagedControl => {
                        // The control's value must be a SEQUENCE { size, cookie }; this is an
                        // OCTET STRING.
                        let control = tlv(
                            0x30,
                            &cat(&[tlv(0x04, PAGED_RESULTS_OID), tlv(0x04, &tlv(0x04, b"x"))]),
                        );
                        cat(&[good, message(&id, done, Some(tlv(0xa0, &control)))])
                    }
                }
            }
            // unbindRequest, or anything else: hang up.
            _ => return,
        };
        if tls.write_all(&reply).and_then(|()| tls.flush()).is_err() {
            return;
        }
    }
}

/// A hostile LDAPS server on 127.0.0.1; stopped (and its accept thread joined) on drop.
struct Hostile {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Hostile {
    fn start(lab: &LdapLab, answer: Answer) -> Hostile {
        let tls_dir = lab.dir().join("tls");
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(tls_dir.join("server.pem"))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_file(tls_dir.join("server.key")).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let config = config.clone();
                // Each connection ends when rotor hangs up (or after the read timeout).
                std::thread::spawn(move || serve(stream, config, answer));
            }
        });
        Hostile {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn inventory_entry(&self, name: &str, ca: &Path) -> String {
        format!(
            "  - name: {name}\n    url: ldaps://127.0.0.1:{port}\n    ca_file: {ca}\n    \
             bind: {{ dn: \"cn=rotor,ou=system,dc=hospital,dc=example\", credential: {name}/rotor }}\n    \
             accounts:\n      - {{ search: {{ base: \"{SERVICE_OU}\", filter: \"(objectClass=account)\" }} }}\n",
            port = self.port,
            ca = ca.display()
        )
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_hostile_directory_fails_alone_and_every_other_target_is_rotated() {
    let lab = Lab::start(1);
    let ldap = LdapLab::start(3, false);
    let bad_dn = Hostile::start(&ldap, Answer::NonUtf8Dn);
    let bad_control = Hostile::start(&ldap, Answer::UndecodablePagedControl);
    // The hostile directories come first, so a panic there would stop the run before the
    // good one is even opened.
    let hosts = std::fs::read_to_string(lab.inventory_path()).unwrap();
    let good = ldap.inventory_fragment();
    let good = good
        .strip_prefix("directories:\n")
        .expect("a directories list");
    let inv = lab.dir().join("with-hostile-directories.yaml");
    std::fs::write(
        &inv,
        format!(
            "{hosts}directories:\n{}{}{good}",
            bad_dn.inventory_entry("hostile-dn", &ldap.ca_path()),
            bad_control.inventory_entry("hostile-control", &ldap.ca_path()),
        ),
    )
    .unwrap();
    let rotor = Rotor::init();
    for (cred, secret) in [
        ("hospital-ldap/rotor", ldap.bind_password()),
        ("hostile-dn/rotor", "any-bind-secret".to_owned()),
        ("hostile-control/rotor", "any-bind-secret".to_owned()),
    ] {
        let out = rotor.run_stdin(&["enroll", cred], &secret);
        assert!(out.status.success(), "{cred}: {out:?}");
    }

    let out = rotor.run(&[
        "rotate",
        "-i",
        inv.to_str().unwrap(),
        "--all",
        "--output",
        "json",
    ]);
    // Before issue 8: exit 101 (ldap3 panicked) and no report at all.
    let report = json(&out);
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    let failed = report["failed_directories"].as_array().unwrap();
    let failure = |name: &str| {
        failed
            .iter()
            .find(|f| f["directory"] == name)
            .unwrap_or_else(|| panic!("{name} not among the failed directories: {report:#}"))
    };
    let dn = failure("hostile-dn");
    assert_eq!(dn["class"], "protocol", "{dn}");
    let message = dn["message"].as_str().unwrap();
    for needle in ["hostile-dn", "not UTF-8", SERVICE_OU, "check it"] {
        assert!(message.contains(needle), "{needle} missing in: {message}");
    }
    let control = failure("hostile-control");
    assert_eq!(control["class"], "protocol", "{control}");
    let message = control["message"].as_str().unwrap();
    for needle in ["hostile-control", "cannot decode", "check it"] {
        assert!(message.contains(needle), "{needle} missing in: {message}");
    }
    assert_eq!(failed.len(), 2, "{report:#}");
    // Everything else was rotated and proven.
    for cred in [
        "host-001/svc_app",
        "host-001/svc_backup",
        "hospital-ldap/svc-0001",
        "hospital-ldap/svc-0003",
    ] {
        assert_eq!(result_of(&report, cred)["result"], "committed", "{cred}");
    }
    let secret = rotor.show("host-001/svc_app").unwrap();
    assert!(lab.login_works("host-001", "svc_app", &secret));
    let secret = rotor.show("hospital-ldap/svc-0002").unwrap();
    assert!(ldap.bind_works("svc-0002", &secret));
}
