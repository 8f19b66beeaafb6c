//! The file API of the paper: `file_read`, `file_write`, `file_copy`, and [`copy_path`] for
//! whole-file copies that appear atomically.

use crate::{Error, Result, stats};
use nix::errno::Errno;
use nix::fcntl::{SpliceFFlags, splice};
use nix::unistd::{Whence, lseek};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

/// Reads up to `buf.len()` bytes at `offset`; fewer only at end of file.
pub fn file_read(file: &File, offset: u64, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match nix::sys::uio::pread(file, &mut buf[got..], (offset + got as u64) as i64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::io("pread", e)),
        }
    }
    Ok(got)
}

/// Writes all of `buf` at `offset`.
pub fn file_write(file: &File, offset: u64, buf: &[u8]) -> Result<()> {
    let mut put = 0;
    while put < buf.len() {
        match nix::sys::uio::pwrite(file, &buf[put..], (offset + put as u64) as i64) {
            Ok(0) => {
                return Err(Error::io(
                    "pwrite",
                    std::io::Error::from(std::io::ErrorKind::WriteZero),
                ));
            }
            Ok(n) => put += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::transfer("pwrite", e.into(), put as u64)),
        }
    }
    Ok(())
}

/// How [`file_copy`] moved the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CopyMethod {
    /// `copy_file_range(2)`: in-kernel, reflinks or server-side copy where the file system can.
    CopyFileRange,
    /// splice through a pipe, for file systems (or pairs of them) that refuse copy_file_range.
    Splice,
}

/// What [`file_copy`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    /// Bytes of the range (holes included).
    pub bytes: u64,
    /// Bytes actually copied (data extents only).
    pub data_bytes: u64,
    /// The method used for the last extent.
    pub method: CopyMethod,
}

/// Copies `len` bytes (to the end of `src` when `None`) from `src` at `src_off` to `dst` at
/// `dst_off`, with no user-space copy. Holes in the source stay holes in the destination
/// (extents are found with SEEK_DATA/SEEK_HOLE), and `dst` is extended to cover the range.
pub fn file_copy(
    src: &File,
    src_off: u64,
    dst: &File,
    dst_off: u64,
    len: Option<u64>,
) -> Result<CopyReport> {
    let src_len = src.metadata().map_err(|e| Error::io("fstat", e))?.len();
    let len = match len {
        Some(l) => l,
        None => src_len.checked_sub(src_off).ok_or(Error::OffsetPastEof {
            offset: src_off,
            len: 0,
            file_len: src_len,
        })?,
    };
    if src_off.checked_add(len).is_none_or(|end| end > src_len) {
        return Err(Error::OffsetPastEof {
            offset: src_off,
            len,
            file_len: src_len,
        });
    }
    let end = src_off + len;
    let mut method = CopyMethod::CopyFileRange;
    let mut data_bytes = 0;
    let mut pos = src_off;
    while pos < end {
        let (data_start, data_end) = next_extent(src.as_fd(), pos, end)?;
        if data_start >= end {
            break;
        }
        let n = data_end - data_start;
        let dst_at = dst_off + (data_start - src_off);
        method = copy_extent(
            src.as_fd(),
            data_start,
            dst.as_fd(),
            dst_at,
            n,
            method,
            data_bytes,
        )?;
        data_bytes += n;
        pos = data_end;
    }
    // A trailing hole is not copied: make a regular destination long enough to include it
    // (a device such as /dev/null has no length to set).
    let dst_meta = dst.metadata().map_err(|e| Error::io("fstat", e))?;
    if dst_meta.is_file() && dst_meta.len() < dst_off + len {
        dst.set_len(dst_off + len)
            .map_err(|e| Error::transfer("ftruncate", e, data_bytes))?;
    }
    stats::add_copied(data_bytes);
    Ok(CopyReport {
        bytes: len,
        data_bytes,
        method,
    })
}

/// The next data extent at or after `pos`, clipped to `end`. File systems without
/// SEEK_DATA report the whole range as data.
fn next_extent(fd: BorrowedFd<'_>, pos: u64, end: u64) -> Result<(u64, u64)> {
    let start = match lseek(fd, pos as i64, Whence::SeekData) {
        Ok(s) => s as u64,
        Err(Errno::ENXIO) => return Ok((end, end)), // only a hole from here on
        Err(Errno::EINVAL) | Err(Errno::EOPNOTSUPP) => return Ok((pos, end)),
        Err(e) => return Err(Error::io("lseek(SEEK_DATA)", e)),
    };
    let stop = match lseek(fd, start as i64, Whence::SeekHole) {
        Ok(h) => h as u64,
        Err(_) => end,
    };
    Ok((start.min(end), stop.min(end)))
}

fn copy_extent(
    src: BorrowedFd<'_>,
    src_at: u64,
    dst: BorrowedFd<'_>,
    dst_at: u64,
    len: u64,
    mut method: CopyMethod,
    done_before: u64,
) -> Result<CopyMethod> {
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(1 << 30) as usize;
        let mut off_in = (src_at + done) as i64;
        let mut off_out = (dst_at + done) as i64;
        if method == CopyMethod::CopyFileRange {
            match nix::fcntl::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want)
            {
                Ok(0) => {
                    return Err(Error::FileTruncated {
                        moved: done_before + done,
                        expected: done_before + len,
                    });
                }
                Ok(n) => done += n as u64,
                Err(Errno::EINTR) => {}
                Err(
                    Errno::EXDEV | Errno::EINVAL | Errno::EOPNOTSUPP | Errno::ENOSYS | Errno::EBADF,
                ) => {
                    tracing::debug!("gridos-io: copy_file_range refused, copying by splice");
                    method = CopyMethod::Splice;
                }
                Err(e) => {
                    return Err(Error::transfer(
                        "copy_file_range",
                        e.into(),
                        done_before + done,
                    ));
                }
            }
        } else {
            done += splice_copy(
                src,
                src_at + done,
                dst,
                dst_at + done,
                len - done,
                done_before + done,
            )?;
        }
    }
    Ok(method)
}

/// file → pipe → file by splice; returns bytes copied (all of `len` unless the source shrank).
fn splice_copy(
    src: BorrowedFd<'_>,
    src_at: u64,
    dst: BorrowedFd<'_>,
    dst_at: u64,
    len: u64,
    before: u64,
) -> Result<u64> {
    let cfg = crate::config();
    let mut pipe = crate::uring::pool(&cfg).take()?;
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(pipe.pipe().capacity() as u64) as usize;
        let mut off_in = (src_at + done) as i64;
        let n = match splice(
            src,
            Some(&mut off_in),
            &pipe.pipe().write,
            None,
            want,
            SpliceFFlags::SPLICE_F_MOVE,
        ) {
            Ok(0) => {
                return Err(Error::FileTruncated {
                    moved: before + done,
                    expected: before + len,
                });
            }
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                return Err(Error::transfer(
                    "splice(file→pipe)",
                    e.into(),
                    before + done,
                ));
            }
        };
        let mut left = n;
        while left > 0 {
            let mut off_out = (dst_at + done) as i64;
            match splice(
                &pipe.pipe().read,
                None,
                dst,
                Some(&mut off_out),
                left,
                SpliceFFlags::SPLICE_F_MOVE,
            ) {
                Ok(0) => {
                    return Err(Error::io(
                        "splice(pipe→file)",
                        std::io::Error::from(std::io::ErrorKind::WriteZero),
                    ));
                }
                Ok(k) => {
                    left -= k;
                    done += k as u64;
                }
                Err(Errno::EINTR) => {}
                Err(e) => {
                    return Err(Error::transfer(
                        "splice(pipe→file)",
                        e.into(),
                        before + done,
                    ));
                }
            }
        }
    }
    pipe.mark_clean();
    Ok(done)
}

/// Copies the regular file `src` to `dst` with [`file_copy`]. The copy is written to a
/// temporary file beside `dst` and renamed over it only when complete, so an existing `dst`
/// is never left half-written; the source's permission bits are kept. An existing `dst` that
/// is a device (such as `/dev/null`) is written in place instead.
pub fn copy_path(src: &Path, dst: &Path) -> Result<CopyReport> {
    let input = File::open(src).map_err(|e| Error::io("open source", e))?;
    let meta = input.metadata().map_err(|e| Error::io("fstat", e))?;
    if !meta.is_file() {
        return Err(Error::io(
            "open source",
            std::io::Error::other(format!("{} is not a regular file", src.display())),
        ));
    }
    // An existing device or pipe (say /dev/null) is written in place: renaming a temporary
    // file over it would replace the device node.
    if let Ok(m) = std::fs::metadata(dst)
        && !m.is_file()
        && !m.is_dir()
    {
        let out = std::fs::OpenOptions::new()
            .write(true)
            .open(dst)
            .map_err(|e| Error::io("open destination", e))?;
        return file_copy(&input, 0, &out, 0, None);
    }
    let dir = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = dst.file_name().ok_or_else(|| {
        Error::io(
            "destination",
            std::io::Error::other("destination has no file name"),
        )
    })?;
    let tmp = dir.join(format!(
        ".{}.gridos-part-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| Error::io("create destination", e))?;
    let result = file_copy(&input, 0, &out, 0, None).and_then(|r| {
        out.set_permissions(meta.permissions())
            .map_err(|e| Error::io("chmod", e))?;
        out.sync_all()
            .map_err(|e| Error::transfer("fsync", e, r.data_bytes))?;
        std::fs::rename(&tmp, dst).map_err(|e| Error::io("rename", e))?;
        Ok(r)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The type of the file system `path` is on, as the mount table names it (`ext4`, `tmpfs`,
/// `xfs`, …): the longest mount point that contains it; `unknown` when the table cannot be
/// read. For reports, so a figure says what it was measured on.
pub fn filesystem_name(path: &std::path::Path) -> String {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return "unknown".into();
    };
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    mounts
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (_, at, kind) = (it.next()?, it.next()?, it.next()?);
            // Mount points with spaces are octal-escaped (\040) in the table.
            let at = at.replace("\\040", " ");
            path.starts_with(&at).then(|| (at.len(), kind.to_string()))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, k)| k)
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod filesystem_tests {
    #[test]
    fn names_the_file_system_of_a_path() {
        assert_eq!(
            super::filesystem_name(std::path::Path::new("/proc/self")),
            "proc"
        );
        if std::path::Path::new("/dev/shm").is_dir() {
            assert_eq!(
                super::filesystem_name(std::path::Path::new("/dev/shm")),
                "tmpfs"
            );
        }
    }
}
