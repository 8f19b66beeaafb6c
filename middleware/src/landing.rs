//! Downloads that appear under their name only once complete.
//!
//! Preferably an unnamed file (O_TMPFILE) linked into place at the end — one directory
//! update per file instead of a create and a rename, which matters for trees of many small
//! files; else a temporary file beside the destination, renamed into place. A landing that
//! is dropped without [`Landing::commit`] leaves nothing behind.

use crate::{Error, ErrorKind, Result};
use std::fs::File;
use std::path::{Path, PathBuf};

/// A file being written that becomes `dst` on [`Landing::commit`].
pub enum Landing {
    /// O_TMPFILE: no name until committed.
    Unnamed(File),
    /// A `.NAME.XXXX.part` file beside the destination.
    Named(tempfile::NamedTempFile),
}

impl Landing {
    /// A landing for `d` in `d`'s directory.
    pub fn new(d: &Path) -> Result<Landing> {
        use nix::fcntl::{OFlag, open};
        use nix::sys::stat::Mode;
        match open(
            parent_dir(d),
            OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        ) {
            Ok(fd) => Ok(Landing::Unnamed(File::from(fd))),
            // File systems without O_TMPFILE.
            Err(_) => temp_beside(d).map(Landing::Named),
        }
    }

    /// The file to write into.
    pub fn file(&self) -> &File {
        match self {
            Landing::Unnamed(f) => f,
            Landing::Named(t) => t.as_file(),
        }
    }

    /// Gives the file its name `d` (replacing an existing file atomically).
    pub fn commit(self, d: &Path) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let what = || format!("{}: putting the download in place", d.display());
        let f = match self {
            Landing::Named(t) => {
                let _ = t
                    .as_file()
                    .set_permissions(std::fs::Permissions::from_mode(0o644));
                return t
                    .persist(d)
                    .map(drop)
                    .map_err(|e| Error::from_io(what(), e.error));
            }
            Landing::Unnamed(f) => f,
        };
        match link_unnamed(&f, d) {
            Ok(()) => Ok(()),
            Err(nix::Error::EEXIST) => {
                // Replacing a file: link under a temporary name, then rename over it.
                let tmp = d.with_file_name(format!(
                    ".{}.{}.{}.part",
                    base_name(d),
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|t| t.as_nanos())
                        .unwrap_or(0)
                ));
                link_unnamed(&f, &tmp).map_err(|e| Error::from_io(what(), e.into()))?;
                std::fs::rename(&tmp, d).map_err(|e| {
                    let _ = std::fs::remove_file(&tmp);
                    Error::from_io(what(), e)
                })
            }
            Err(e) => Err(Error::from_io(what(), e.into())),
        }
    }
}

/// Links an O_TMPFILE file to `to`: AT_EMPTY_PATH (needs CAP_DAC_READ_SEARCH), else through
/// /proc/self/fd (any user).
fn link_unnamed(f: &File, to: &Path) -> nix::Result<()> {
    use nix::fcntl::{AT_FDCWD, AtFlags};
    use std::os::fd::AsRawFd;
    match nix::unistd::linkat(f, "", AT_FDCWD, to, AtFlags::AT_EMPTY_PATH) {
        Err(nix::Error::ENOENT | nix::Error::EPERM) => {
            let via = format!("/proc/self/fd/{}", f.as_raw_fd());
            nix::unistd::linkat(
                AT_FDCWD,
                via.as_str(),
                AT_FDCWD,
                to,
                AtFlags::AT_SYMLINK_FOLLOW,
            )
        }
        r => r,
    }
}

/// A temporary file beside `dst` that becomes `dst` on success.
pub fn temp_beside(dst: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = parent_dir(dst);
    tempfile::Builder::new()
        .prefix(&format!(".{}.", base_name(dst)))
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(|e| Error::from_io(format!("temporary file in {}", dir.display()), e))
}

/// The directory `p` is in ("." for a bare name).
pub fn parent_dir(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The last component of `p` as text ("" when it has none).
pub fn base_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The destination opened for writing when it exists and is neither a regular file nor a
/// directory (a device or a pipe): such a destination is written in place, since renaming
/// over it would replace the device node.
pub fn existing_device(d: &Path) -> Result<Option<File>> {
    match std::fs::metadata(d) {
        Ok(m) if !m.is_file() && !m.is_dir() => std::fs::OpenOptions::new()
            .write(true)
            .open(d)
            .map(Some)
            .map_err(|e| Error::from_io(format!("open {}", d.display()), e)),
        _ => Ok(None),
    }
}

/// Whether `f` can be written at an offset (not a pipe, socket or terminal).
pub fn seekable(f: &File) -> bool {
    nix::unistd::lseek(f, 0, nix::unistd::Whence::SeekCur).is_ok()
}

/// The length of an open file.
pub fn file_len(f: &File) -> Result<u64> {
    f.metadata()
        .map(|m| m.len())
        .map_err(|e| Error::from_io("stat", e))
}

/// `d` opened for writing in place (created if missing, not truncated).
pub fn open_in_place(d: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .create(true)
        .truncate(false)
        .open(d)
        .map_err(|e| Error::from_io(format!("open {}", d.display()), e))
}

/// `.NAME.gridos-ranges` beside `d`: the byte ranges a resumable MODE E download holds.
pub fn ranges_sidecar(d: &Path) -> PathBuf {
    d.with_file_name(format!(".{}.gridos-ranges", base_name(d)))
}

/// An error that says a file is not what the copy needs.
pub(crate) fn not_a_file(what: &str) -> Error {
    Error::new(ErrorKind::NotAFile, what)
        .detail("the source is not a regular file (a pipe or device); uploads need a file")
}

/// Reserves the blocks for bytes `from..to` of a download whose size is known, with
/// `FALLOC_FL_KEEP_SIZE`: the file's size still says how much has arrived, so a short or
/// killed download never looks complete. A disk too full for the file fails here, before
/// any byte moves; file systems without fallocate (and devices) go on without a
/// reservation (`Ok(false)`).
pub fn reserve(file: &File, from: u64, to: u64) -> Result<bool> {
    use nix::errno::Errno;
    use nix::fcntl::{FallocateFlags, fallocate};
    if to <= from {
        return Ok(false);
    }
    let (Ok(off), Ok(len)) = (i64::try_from(from), i64::try_from(to - from)) else {
        return Ok(false);
    };
    match fallocate(file, FallocateFlags::FALLOC_FL_KEEP_SIZE, off, len) {
        Ok(()) => Ok(true),
        Err(e @ (Errno::ENOSPC | Errno::EDQUOT)) => Err(Error::from_io(
            format!(
                "no room for the {} bytes of the download on the local disk",
                to - from
            ),
            std::io::Error::from(e),
        )),
        Err(_) => Ok(false),
    }
}

/// Gives back blocks reserved past the end of what arrived (a same-size truncate frees
/// them), for a partial file kept to be resumed.
pub fn release_reserve(file: &File) {
    if let Ok(m) = file.metadata() {
        let _ = file.set_len(m.len());
    }
}
