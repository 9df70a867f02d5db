//! Where the master key lives: a key file (`rotor init` default, mode 0400) or the OS keyring.
//!
//! The master key only wraps the vault's data and HMAC keys; it never encrypts a secret
//! itself. This file never overwrites an existing key (file or keyring entry), never reads a
//! key file that group or others can read or write, that another user owns or that is a link
//! (see [`super::files`]), and never prints key material.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use zeroize::Zeroizing;

use super::StoreError;
use super::crypto::KeyBytes;

/// More than any key file `rotor init` writes (base64 of 32 bytes and a newline).
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Where the master key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// A file holding the base64 of 32 random bytes, mode 0400 (see [`KeySource::default_file`]).
    File(PathBuf),
    /// An OS keyring entry (Secret Service on Linux workstations, via the `keyring` crate). On a
    /// headless server there is no Secret Service: use a key file there.
    Keyring { service: String, user: String },
}

impl KeySource {
    /// The default: `DATA_DIR/master.key`.
    pub fn default_file(data_dir: &Path) -> KeySource {
        KeySource::File(data_dir.join("master.key"))
    }

    /// Where the key is, in words for error messages.
    pub fn describe(&self) -> String {
        match self {
            KeySource::File(path) => format!("key file {}", path.display()),
            KeySource::Keyring { service, user } => {
                format!("OS keyring entry service `{service}` user `{user}`")
            }
        }
    }

    /// Creates a new random master key at this source. Fails, touching nothing, if a key is
    /// already there.
    pub(crate) fn create(
        &self,
        rng: &mut dyn crate::clock::SecureRng,
    ) -> Result<KeyBytes, StoreError> {
        let key = KeyBytes::random(rng);
        let encoded = Zeroizing::new(BASE64.encode(key.as_bytes()));
        match self {
            KeySource::File(path) => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o400)
                    .open(path)
                    .map_err(|err| {
                        if err.kind() == std::io::ErrorKind::AlreadyExists {
                            StoreError::KeyExists(self.describe())
                        } else {
                            StoreError::io(path, "create the master key file", err)
                        }
                    })?;
                file.write_all(encoded.as_bytes())
                    .and_then(|()| file.write_all(b"\n"))
                    .and_then(|()| file.sync_all())
                    .map_err(|err| StoreError::io(path, "write the master key file", err))?;
            }
            KeySource::Keyring { service, user } => {
                let entry = keyring_entry(service, user)?;
                match entry.get_password() {
                    Ok(_) => return Err(StoreError::KeyExists(self.describe())),
                    Err(keyring::Error::NoEntry) => {}
                    Err(err) => return Err(keyring_error(self, err)),
                }
                entry
                    .set_password(&encoded)
                    .map_err(|err| keyring_error(self, err))?;
            }
        }
        tracing::info!(source = %self.describe(), "created a new master key");
        Ok(key)
    }

    /// Loads the master key from this source.
    pub(crate) fn load(&self) -> Result<KeyBytes, StoreError> {
        let encoded = match self {
            KeySource::File(path) => {
                // A link, another user's file or one others may write is refused before a
                // byte is read (`files::open_key_file`); so is one others may read.
                let (file, meta) = super::files::open_key_file(path)?;
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(StoreError::KeyFilePermissions {
                        path: path.clone(),
                        mode,
                    });
                }
                // A key file is 45 bytes; read a little more than that at most, so a wrong
                // path cannot make rotor read without end.
                let mut text = Zeroizing::new(String::new());
                file.take(MAX_KEY_FILE_BYTES)
                    .read_to_string(&mut text)
                    .map_err(|err| StoreError::io(path, "read the master key file", err))?;
                text
            }
            KeySource::Keyring { service, user } => Zeroizing::new(
                keyring_entry(service, user)?
                    .get_password()
                    .map_err(|err| keyring_error(self, err))?,
            ),
        };
        let bytes = Zeroizing::new(
            BASE64
                .decode(encoded.trim())
                .map_err(|_| StoreError::KeyMalformed(self.describe()))?,
        );
        KeyBytes::from_slice(&bytes).ok_or_else(|| StoreError::KeyMalformed(self.describe()))
    }
}

fn keyring_entry(service: &str, user: &str) -> Result<keyring::Entry, StoreError> {
    keyring::Entry::new(service, user).map_err(|err| {
        StoreError::Keyring(format!(
            "cannot address keyring entry service `{service}` user `{user}`: {err}"
        ))
    })
}

fn keyring_error(source: &KeySource, err: keyring::Error) -> StoreError {
    let hint = match err {
        keyring::Error::NoEntry => "no master key is stored there: run `rotor init` with the same \
             keyring service and user, or choose the key source the vault was created with"
            .to_owned(),
        keyring::Error::PlatformFailure(_) | keyring::Error::NoStorageAccess(_) => format!(
            "the OS keyring is not reachable ({err}); on a headless server there is no Secret \
             Service, so use a key file (the `rotor init` default) instead"
        ),
        other => other.to_string(),
    };
    StoreError::Keyring(format!("{}: {hint}", source.describe()))
}
