//! Who may change the vault's files. The data directory, the database (with its WAL, shared
//! memory and journal files) and the master key file must belong to the user rotor runs as
//! and be writable by nobody else; otherwise another local user could swap in a vault and a
//! key of their own and read every password the next run stores (issue 8).
//!
//! Order matters: the data directory is checked first, because once only its owner can write
//! it, nobody else can replace a file inside it between a check and the open that follows.
//! Its ancestors are checked too (root's or the owner's, and not writable by others unless
//! sticky, like `/tmp`), since whoever can write a parent can rename the whole directory.
//! Symbolic links are refused for the files (never for directories above them): a link can
//! point at a file whose writer rotor cannot judge from here.
//!
//! This module never reads file contents; `keys` reads the key file through
//! [`open_key_file`], which checks the open file itself.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::StoreError;

/// The files SQLite keeps beside the database.
pub(super) const DB_SIDE_SUFFIXES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// What is wrong with a path the vault depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathProblem {
    /// Owned by another user (`uid`) than the one rotor runs as (`euid`).
    Owner { uid: u32, euid: u32 },
    /// Group or others may write it (`mode`, the permission bits).
    Writable { mode: u32 },
    /// A symbolic link where rotor needs the file itself.
    Symlink,
    /// Not a regular file (a directory, FIFO, device, socket), or, for a directory, not one.
    WrongType { found: &'static str },
}

/// The effective uid: whose files the vault's files must be.
pub(super) fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn unsafe_path(what: &'static str, path: &Path, problem: PathProblem) -> StoreError {
    StoreError::UnsafePath {
        what,
        path: path.to_owned(),
        problem,
    }
}

/// Owner and write bits of something rotor trusts. `sticky_ok`: a directory with the sticky
/// bit (`/tmp`) may be writable by others, since they cannot rename what they do not own.
fn check_owner_and_mode(
    what: &'static str,
    path: &Path,
    meta: &Metadata,
    allow_root: bool,
    sticky_ok: bool,
) -> Result<(), StoreError> {
    let euid = euid();
    if meta.uid() != euid && !(allow_root && meta.uid() == 0) {
        return Err(unsafe_path(
            what,
            path,
            PathProblem::Owner {
                uid: meta.uid(),
                euid,
            },
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 && !(sticky_ok && mode & 0o1000 != 0) {
        return Err(unsafe_path(
            what,
            path,
            PathProblem::Writable { mode: mode & 0o777 },
        ));
    }
    Ok(())
}

/// The directories that hold `path` (its parent, after resolving links, and every directory
/// above): root's or the user's, and writable by others only with the sticky bit.
pub(super) fn check_containing_dirs(path: &Path) -> Result<(), StoreError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let real = std::fs::canonicalize(parent)
        .map_err(|err| StoreError::io(parent, "check the owner and mode of", err))?;
    for dir in real.ancestors() {
        let meta = std::fs::metadata(dir)
            .map_err(|err| StoreError::io(dir, "check the owner and mode of", err))?;
        check_owner_and_mode("parent directory", dir, &meta, true, true)?;
    }
    Ok(())
}

/// A file whose content decides what rotor may do for a person (the inventory of a
/// checkout: its policy says whether approval is needed and for how long; check-in and
/// expiry rotate with it): it and the directories holding it must be root's or this user's
/// and writable by nobody else, or a requester could hand rotor a policy of their own.
/// Returns the resolved path (no link left in it): read the file there, and record that, so
/// a link the caller controls cannot point elsewhere between the check and the read, nor
/// later.
pub fn check_trusted_file(what: &'static str, path: &Path) -> Result<PathBuf, StoreError> {
    let real = std::fs::canonicalize(path)
        .map_err(|err| StoreError::io(path, "check the owner and mode of", err))?;
    let path = real.as_path();
    let meta = std::fs::symlink_metadata(path)
        .map_err(|err| StoreError::io(path, "check the owner and mode of", err))?;
    if !meta.is_file() {
        return Err(unsafe_path(
            what,
            path,
            PathProblem::WrongType {
                found: crate::text::file_kind(&meta),
            },
        ));
    }
    check_owner_and_mode(what, path, &meta, true, false)?;
    check_containing_dirs(path)?;
    Ok(real)
}

/// The directories above a data directory: those above the path as given (where a link to
/// it would live) and those above where it really is.
fn check_ancestors(dir: &Path) -> Result<(), StoreError> {
    check_containing_dirs(dir)?;
    if let Ok(real) = std::fs::canonicalize(dir) {
        check_containing_dirs(&real)?;
    }
    Ok(())
}

/// The data directory's metadata (through a link to it), refused unless it is a directory.
fn data_dir_metadata(dir: &Path) -> Result<std::fs::Metadata, StoreError> {
    let meta = std::fs::metadata(dir)
        .map_err(|err| StoreError::io(dir, "check the owner and mode of", err))?;
    if !meta.is_dir() {
        return Err(unsafe_path(
            "data directory",
            dir,
            PathProblem::WrongType {
                found: crate::text::file_kind(&meta),
            },
        ));
    }
    Ok(meta)
}

/// The data directory of an existing vault: a directory (a link to one is fine), the user's,
/// writable by nobody else; and its ancestors (see [`check_ancestors`]).
pub(super) fn check_data_dir(dir: &Path) -> Result<(), StoreError> {
    let meta = data_dir_metadata(dir)?;
    check_owner_and_mode("data directory", dir, &meta, false, false)?;
    check_ancestors(dir)
}

/// Before `init` uses a data directory that already exists: it must be the user's; if group
/// or others could write it, it is set to 0700 (and a warning says so, since someone may
/// have placed files there). Returns whether it was tightened.
pub(super) fn tighten_data_dir(dir: &Path) -> Result<bool, StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = data_dir_metadata(dir)?;
    let euid = euid();
    if meta.uid() != euid {
        return Err(unsafe_path(
            "data directory",
            dir,
            PathProblem::Owner {
                uid: meta.uid(),
                euid,
            },
        ));
    }
    let mode = meta.mode() & 0o777;
    let tightened = mode & 0o077 != 0;
    if tightened {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|err| StoreError::io(dir, "set the mode of", err))?;
        tracing::warn!(
            data_dir = %dir.display(),
            "the data directory had mode {mode:04o} (open to group or others); rotor set it to 0700"
        );
    }
    check_ancestors(dir)?;
    Ok(tightened)
}

/// A vault file (`what`: "database", "master key file", ...) that may be absent (`Ok(None)`):
/// if present, a regular file, not a link, the user's, writable by nobody else.
pub(super) fn check_file(what: &'static str, path: &Path) -> Result<Option<Metadata>, StoreError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(StoreError::io(path, "check the owner and mode of", err)),
    };
    check_file_meta(what, path, &meta)?;
    Ok(Some(meta))
}

fn check_file_meta(what: &'static str, path: &Path, meta: &Metadata) -> Result<(), StoreError> {
    if meta.file_type().is_symlink() {
        return Err(unsafe_path(what, path, PathProblem::Symlink));
    }
    if !meta.is_file() {
        return Err(unsafe_path(
            what,
            path,
            PathProblem::WrongType {
                found: crate::text::file_kind(meta),
            },
        ));
    }
    check_owner_and_mode(what, path, meta, false, false)
}

/// The database and the files SQLite keeps beside it, each checked if present.
pub(super) fn check_db_files(db: &Path) -> Result<(), StoreError> {
    check_file("database", db)?;
    for suffix in DB_SIDE_SUFFIXES {
        check_file("database side file", &side_file(db, suffix))?;
    }
    Ok(())
}

/// `rotor.db-wal` and the like.
pub(super) fn side_file(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Opens the master key file for reading: not through a link, not blocking on a FIFO, and
/// checked on the open file (a regular file, the user's, writable by nobody else; the
/// caller checks that group and others cannot read it either). Its directory is checked like
/// a data directory's ancestors.
pub(super) fn open_key_file(path: &Path) -> Result<(File, Metadata), StoreError> {
    const WHAT: &str = "master key file";
    check_file(WHAT, path)?;
    check_containing_dirs(path)?;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
        .map_err(|err| {
            // ELOOP: the path became a link since the check above.
            if err.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                unsafe_path(WHAT, path, PathProblem::Symlink)
            } else {
                StoreError::io(path, "read the master key file", err)
            }
        })?;
    let meta = file
        .metadata()
        .map_err(|err| StoreError::io(path, "read the master key file", err))?;
    check_file_meta(WHAT, path, &meta)?;
    Ok((file, meta))
}

impl std::fmt::Display for PathProblem {
    /// The problem only; [`StoreError::UnsafePath`] adds the path and the fix.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathProblem::Owner { uid, euid } => write!(
                f,
                "it is owned by uid {uid}, not by uid {euid} that rotor runs as"
            ),
            PathProblem::Writable { mode } => {
                write!(f, "it has mode {mode:04o}: group or others can write to it")
            }
            PathProblem::Symlink => f.write_str("it is a symbolic link"),
            PathProblem::WrongType { found } => write!(f, "it is {found}"),
        }
    }
}

impl PathProblem {
    /// What the operator runs, for `path`.
    pub fn fix(&self, what: &str, path: &Path) -> String {
        let p = path.display();
        match self {
            // A parent directory is someone's home or a system directory: never advise
            // taking it over.
            PathProblem::Owner { .. } if what == "parent directory" => format!(
                "its owner could rename the data directory and put another in its place. Use a data directory whose parents belong to you or to root (--data-dir, e.g. /var/lib/rotor when rotor runs as root), not one inside {p}"
            ),
            PathProblem::Owner { euid, .. } => format!(
                "that user could have replaced the vault or its master key. Check it, then run `chown {euid} {p}`, or use a data directory of your own (--data-dir)"
            ),
            PathProblem::Writable { .. } if what == "parent directory" => format!(
                "anyone who can write it could rename the data directory and put another in its place. Run `chmod go-w {p}`, or, if it must stay shared, `chmod +t {p}` (others then cannot rename what is not theirs)"
            ),
            PathProblem::Writable { .. } => format!(
                "anyone who can write it could replace the vault or its master key. Check it, then run `chmod go-w {p}`"
            ),
            PathProblem::Symlink => format!(
                "rotor uses the vault's files only as regular files, since a link may point at a file someone else controls. If you trust its target (`readlink -f {p}`), move that file to {p} in place of the link, or point --key-file at it"
            ),
            PathProblem::WrongType { .. } => format!(
                "rotor expected a regular file here (a directory for the data directory): move {p} away, or point --data-dir / --key-file at the right place"
            ),
        }
    }
}

/// Whether rotor, as the user it runs as, may write `path` (the data directory, the
/// database): a read-only filesystem or a denied permission is said plainly, with the
/// path, instead of SQLite's "unable to open database file" later.
pub(super) fn check_writable(path: &Path) -> Result<(), StoreError> {
    use rustix::fs::{Access, AtFlags, CWD, accessat};
    accessat(CWD, path, Access::WRITE_OK, AtFlags::EACCESS).map_err(|errno| {
        StoreError::NotWritable {
            path: path.to_owned(),
            cause: errno.into(),
        }
    })
}
