//! Files that hold secrets: every file wxlogin writes is created 0600 and every folder
//! it creates 0700, whatever the process umask; files left open to others by older
//! versions are tightened; files the operator gave us are only reported.
//!
//! The database, its `-wal`/`-shm`, backups and the lock file sit next to each other and
//! the first three hold every user's session_key. A umask of 022 (the usual one, and
//! what an admin command run from a shell gets; the systemd unit's `UMask=` covers only
//! the service) would make them world-readable. SQLite creates `-wal`, `-shm` and
//! journals with the database file's own mode, so a database file created 0600 before
//! SQLite opens it keeps the whole family private.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Owner read and write only.
pub const FILE_MODE: u32 = 0o600;
/// Owner only.
pub const DIR_MODE: u32 = 0o700;

/// `create_dir_all`, the folders it creates being 0700; existing folders are left as
/// they are (they may be shared on purpose, e.g. `/var/lib`).
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Opens `path` for writing without truncating it, creating it 0600 if it is absent.
pub fn open_private(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).truncate(false).write(true).mode(FILE_MODE).open(path)
}

/// Creates `path` as a new, empty 0600 file; fails if anything is there already.
pub fn create_new_private(path: &Path) -> io::Result<File> {
    OpenOptions::new().create_new(true).write(true).mode(FILE_MODE).open(path)
}

/// Makes `path` 0600 when group or others have any access to it. Returns the mode it
/// had when it changed it; `None` when it was private already or does not exist.
pub fn tighten(path: &Path) -> io::Result<Option<u32>> {
    let mode = match std::fs::metadata(path) {
        Ok(m) => m.permissions().mode() & 0o777,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(FILE_MODE))?;
    Ok(Some(mode))
}

/// A warning naming `path` (never its content) when every user of the machine can read
/// it; `what` says what it is ("the configuration file", "the secret file").
///
/// Group access alone is not reported: the shipped deployment (deploy/README.md) makes
/// the configuration `root:wxlogin 0640` on purpose, so that the service can read a
/// file it cannot change.
pub fn readable_by_others(path: &Path, what: &str) -> Option<String> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o004 != 0).then(|| {
        format!(
            "{what} {} is readable by every user (mode {mode:03o}); chmod 600 it (or 640 with a group of its own)",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_private_and_open_ones_tightened() {
        let dir = std::env::temp_dir().join(format!("wxlogin-files-{}", crate::secrets::random_id(6)));
        let nested = dir.join("a/b");
        create_private_dir_all(&nested).unwrap();
        assert_eq!((mode(&dir.join("a")), mode(&nested)), (DIR_MODE, DIR_MODE));
        let f = nested.join("f");
        open_private(&f).unwrap();
        assert_eq!(mode(&f), FILE_MODE);
        assert!(create_new_private(&f).is_err(), "never over an existing file");
        assert_eq!(tighten(&f).unwrap(), None);
        assert!(readable_by_others(&f, "x").is_none());

        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(readable_by_others(&f, "x").is_none(), "a group of its own is the deployment's choice");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let warning = readable_by_others(&f, "the configuration file").unwrap();
        assert!(warning.contains("the configuration file") && warning.contains("644"), "{warning}");
        assert_eq!(tighten(&f).unwrap(), Some(0o644));
        assert_eq!(mode(&f), FILE_MODE);
        assert_eq!(tighten(&nested.join("absent")).unwrap(), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
