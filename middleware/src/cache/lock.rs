//! `flock(2)` locks on small files in the cache directory.
//!
//! flock suits a cache shared by processes: a lock belongs to an open file description, so
//! two threads that each open the file exclude each other as two processes do, and the kernel
//! drops it when its holder dies (even by SIGKILL) — which is how a stale temporary file is
//! told from one being written.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::state_error;
use crate::{Error, ErrorKind, Result};

/// An exclusive lock on a file, released when dropped.
pub(crate) struct FileLock {
    _lock: Flock<File>,
    path: PathBuf,
}

/// Whether to wait for a lock another holder has.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Block until the lock is free.
    Block,
    /// Give up at once (`Ok(None)`).
    Try,
}

impl FileLock {
    /// Takes the exclusive lock on `path`, creating the file. `Ok(None)` when `wait` is
    /// [`Wait::Try`] and someone else holds it.
    ///
    /// A holder may unlink the lock file ([`FileLock::remove`]) when the thing it guards is
    /// gone; whoever was waiting on the unlinked inode then sees that the path names another
    /// file (or none) and starts again, so two holders never believe they hold the same lock.
    pub(crate) fn acquire(path: &Path, wait: Wait) -> Result<Option<FileLock>> {
        let what = || format!("cache lock {}", path.display());
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC)
                .open(path)
                .map_err(|e| state_error(what(), e))?;
            let arg = match wait {
                Wait::Block => FlockArg::LockExclusive,
                Wait::Try => FlockArg::LockExclusiveNonblock,
            };
            let lock = match Flock::lock(file, arg) {
                Ok(l) => l,
                Err((_, Errno::EAGAIN)) => return Ok(None),
                Err((_, Errno::EINTR)) => continue,
                Err((_, e)) => {
                    return Err(Error::new(ErrorKind::Cache, what())
                        .detail("flock failed")
                        .source(std::io::Error::from(e)));
                }
            };
            let held = lock.metadata().map_err(|e| state_error(what(), e))?;
            match std::fs::metadata(path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                    return Ok(Some(FileLock {
                        _lock: lock,
                        path: path.to_path_buf(),
                    }));
                }
                // Unlinked (or replaced) by the previous holder after we opened it.
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(state_error(what(), e)),
            }
        }
    }

    /// Unlinks the lock file, then releases the lock: for a lock whose subject is gone.
    pub(crate) fn remove(self) {
        // A failure only leaves an empty file behind; the lock is released either way.
        let _ = std::fs::remove_file(&self.path);
    }
}
