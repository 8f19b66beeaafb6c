//! Write-behind for files being received: the page cache is written back steadily, window by
//! window, while a file lands, and pages already on disk are dropped.
//!
//! Without it a large download fills the page cache with dirty pages until the kernel's dirty
//! limit is reached, and from then on the writer is stopped in bursts while writeback catches
//! up (the 2–3× swings between runs that the paper's "overhead involved in file writing"
//! describes); and a file nobody reads again pushes everything else out of the cache.
//!
//! The pattern: when a window of the file is complete, start its writeback
//! (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which queues the I/O and returns at once); once
//! `lag` more windows have been started, wait for the oldest (normally done long since) and
//! drop its pages (`posix_fadvise(POSIX_FADV_DONTNEED)`). Windows complete in any order, so
//! the parallel streams of MODE E, each writing its own blocks, share one [`WriteBehind`].
//!
//! Where to start: [`WriteBehind::for_file`], which applies the policy of [`crate::IoConfig`]
//! (`write_behind`, `write_behind_min`, `write_behind_window`), and [`WriteBehind::landed`],
//! which writers call with each range that reached the file ([`crate::recv_file`] does it
//! itself when the handle is in its [`crate::TransferOptions`]).

use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Windows started but not yet waited for, by default: enough for the disk to work on the
/// next while the writer fills the one after.
pub const DEFAULT_LAG: usize = 4;

/// How a received file is written back: the policy of `io.write_behind`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WriteBehindMode {
    /// Never: the kernel writes back when it chooses.
    Off,
    /// For files of at least `io.write_behind_min` bytes (or, size unknown, once that many
    /// have arrived).
    #[default]
    Auto,
    /// Every file, whatever its size.
    On,
}

impl std::fmt::Display for WriteBehindMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriteBehindMode::Off => "off",
            WriteBehindMode::Auto => "auto",
            WriteBehindMode::On => "on",
        })
    }
}

impl std::str::FromStr for WriteBehindMode {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<WriteBehindMode> {
        match s {
            "off" => Ok(WriteBehindMode::Off),
            "auto" => Ok(WriteBehindMode::Auto),
            "on" => Ok(WriteBehindMode::On),
            other => Err(crate::Error::Config(format!(
                "io.write_behind must be off, auto or on, not {other:?}"
            ))),
        }
    }
}

/// What the write-behind of one file did, for `-v` and `--json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WriteBehindReport {
    /// Window size in bytes.
    pub window: u64,
    /// Windows whose writeback was started.
    pub windows_started: u64,
    /// Windows waited for and dropped from the page cache.
    pub windows_dropped: u64,
    /// Bytes before the policy's threshold, left to the kernel.
    pub bytes_left_to_kernel: u64,
}

/// The write-behind of one file being received. Cheap to clone; clones share the file's
/// state, so every stream writing into the file may hold one.
#[derive(Clone, Debug)]
pub struct WriteBehind(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    file: File,
    window: u64,
    lag: usize,
    /// Bytes below this offset are left to the kernel (the `auto` threshold when the size is
    /// unknown: only the part past it is a large file's).
    from: u64,
    state: Mutex<State>,
    started: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes landed per window not yet complete.
    filling: HashMap<u64, u64>,
    /// Windows whose writeback was started, oldest first.
    started: VecDeque<u64>,
    /// Bytes landed below `from`.
    skipped: u64,
}

impl WriteBehind {
    /// The write-behind for `file` under the process configuration, or `None` when the
    /// policy says the kernel should be left alone: `io.write_behind = "off"`, a file smaller
    /// than `io.write_behind_min` (`size`: the expected size when known), a destination that
    /// is not a regular file, or one on tmpfs (whose pages are the file: nothing to write
    /// back or drop).
    pub fn for_file(file: &File, size: Option<u64>) -> Option<WriteBehind> {
        WriteBehind::with_mode(file, size, crate::config().write_behind)
    }

    /// As [`WriteBehind::for_file`] with the policy `mode` instead of the configuration's
    /// (a per-copy choice: `gridos cp --write-behind`).
    pub fn with_mode(file: &File, size: Option<u64>, mode: WriteBehindMode) -> Option<WriteBehind> {
        let cfg = crate::config();
        let from = match mode {
            WriteBehindMode::Off => return None,
            WriteBehindMode::On => 0,
            WriteBehindMode::Auto => match size {
                Some(s) if s < cfg.write_behind_min => return None,
                Some(_) => 0,
                None => cfg.write_behind_min,
            },
        };
        let on_tmpfs = nix::sys::statfs::fstatfs(file)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
        if on_tmpfs {
            return None;
        }
        WriteBehind::new(file, cfg.write_behind_window as u64, DEFAULT_LAG, from)
    }

    /// A write-behind with explicit settings (benchmarks and tests): windows of `window`
    /// bytes, `lag` windows in flight, nothing done below offset `from`. `None` when `file`
    /// is not a regular file or cannot be duplicated.
    pub fn new(file: &File, window: u64, lag: usize, from: u64) -> Option<WriteBehind> {
        let meta = file.metadata().ok()?;
        if !meta.is_file() || window == 0 {
            return None;
        }
        let file = file.try_clone().ok()?;
        Some(WriteBehind(Arc::new(Inner {
            file,
            window,
            lag,
            from,
            state: Mutex::new(State::default()),
            started: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })))
    }

    /// Tells the write-behind that bytes `offset..offset + len` are in the file. Windows this
    /// completes have their writeback started; the oldest ones beyond the lag are waited for
    /// and dropped from the page cache. Errors are not reported: write-behind is advice, and
    /// the writes themselves report a failing disk.
    pub fn landed(&self, offset: u64, len: u64) {
        let w = self.0.window;
        let (mut start, mut finish) = (Vec::new(), Vec::new());
        {
            let mut st = self.state();
            let mut at = offset;
            let end = offset.saturating_add(len);
            if at < self.0.from {
                let cut = end.min(self.0.from);
                st.skipped += cut - at;
                at = cut;
            }
            while at < end {
                let idx = at / w;
                let window_end = (idx + 1).saturating_mul(w).min(end);
                let n = window_end - at;
                let filled = st.filling.entry(idx).or_insert(0);
                *filled += n;
                if *filled >= w {
                    st.filling.remove(&idx);
                    st.started.push_back(idx);
                    start.push(idx);
                }
                at = window_end;
            }
            while st.started.len() > self.0.lag {
                if let Some(old) = st.started.pop_front() {
                    finish.push(old);
                }
            }
        }
        // The system calls run outside the lock: the waits can take a while, and another
        // stream may meanwhile record its bytes.
        for idx in start {
            self.sync(idx, libc::SYNC_FILE_RANGE_WRITE);
            self.0.started.fetch_add(1, Ordering::Relaxed);
        }
        for idx in finish {
            self.sync(
                idx,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            );
            self.drop_pages(idx);
            self.0.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What was done so far.
    pub fn report(&self) -> WriteBehindReport {
        WriteBehindReport {
            window: self.0.window,
            windows_started: self.0.started.load(Ordering::Relaxed),
            windows_dropped: self.0.dropped.load(Ordering::Relaxed),
            bytes_left_to_kernel: self.state().skipped,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves counters that are still usable.
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sync(&self, idx: u64, flags: libc::c_uint) {
        let (off, len) = self.range(idx);
        // SAFETY: sync_file_range reads no user memory; the fd is owned by `self`.
        unsafe { libc::sync_file_range(self.0.file.as_raw_fd(), off, len, flags) };
    }

    fn drop_pages(&self, idx: u64) {
        let (off, len) = self.range(idx);
        let _ = nix::fcntl::posix_fadvise(
            &self.0.file,
            off,
            len,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        );
    }

    fn range(&self, idx: u64) -> (i64, i64) {
        let w = self.0.window;
        let off = idx.saturating_mul(w).min(i64::MAX as u64) as i64;
        (off, w.min(i64::MAX as u64) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn resident_pages_of(f: &File, len: u64) -> usize {
        // mincore on a mapping tells which pages are resident; enough to see a drop.
        let page = 4096usize;
        let pages = (len as usize).div_ceil(page);
        // SAFETY: a shared read-only mapping of a file we hold open, unmapped below; nothing
        // writes through it.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED);
        let mut vec = vec![0u8; pages];
        // SAFETY: `vec` has one byte per page of the mapping, as mincore requires.
        let r = unsafe { libc::mincore(addr, len as usize, vec.as_mut_ptr()) };
        assert_eq!(r, 0);
        // SAFETY: the mapping made above, of this length.
        unsafe { libc::munmap(addr, len as usize) };
        vec.iter().filter(|b| *b & 1 == 1).count()
    }

    #[test]
    fn complete_windows_are_written_back_and_dropped_in_any_order() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let path = dir.path().join("f");
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        // Windows larger than the page cache's biggest folios (which are dropped only whole).
        let w = 4u64 << 20;
        let wb = WriteBehind::new(&f, w, 1, 0).unwrap();
        let chunk = vec![7u8; (w / 2) as usize];
        f.write_all(&vec![0u8; (6 * w) as usize]).unwrap();
        // Halves of windows 0..6, in an order two streams might produce.
        for i in [1u64, 0, 3, 2, 5, 4, 6, 7, 9, 8, 11, 10] {
            crate::file_write(&f, i * w / 2, &chunk).unwrap();
            wb.landed(i * w / 2, w / 2);
        }
        let r = wb.report();
        assert_eq!(r.windows_started, 6);
        assert_eq!(
            r.windows_dropped, 5,
            "all but the last (lag 1) waited for and dropped"
        );
        // The dropped windows' pages left the page cache (ext4 and tmpfs differ: tmpfs
        // keeps them, being the page cache itself).
        let fs_is_tmpfs = nix::sys::statfs::statfs(dir.path())
            .map(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
            .unwrap_or(true);
        if !fs_is_tmpfs {
            let resident = resident_pages_of(&f, 6 * w);
            let window_pages = (w / 4096) as usize;
            assert!(
                resident <= window_pages,
                "at most the last window resident: {resident} pages"
            );
        }
        // The bytes are the ones written.
        let back = std::fs::read(&path).unwrap();
        assert!(back.iter().all(|&b| b == 7));
    }

    #[test]
    fn bytes_below_the_threshold_are_left_to_the_kernel() {
        let f = tempfile::tempfile().unwrap();
        let wb = WriteBehind::new(&f, 1 << 20, 2, 3 << 20).unwrap();
        wb.landed(0, 4 << 20);
        let r = wb.report();
        assert_eq!(r.bytes_left_to_kernel, 3 << 20);
        assert_eq!(r.windows_started, 1);
        assert_eq!(r.windows_dropped, 0);
    }

    #[test]
    fn the_policy_follows_the_configuration() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let f = File::create_new(dir.path().join("f")).unwrap();
        let min = crate::config().write_behind_min;
        assert!(WriteBehind::for_file(&f, Some(min.saturating_sub(1))).is_none());
        assert!(WriteBehind::for_file(&f, Some(min)).is_some());
        assert!(WriteBehind::for_file(&f, None).is_some());
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert!(
            WriteBehind::for_file(&File::from(r), Some(min)).is_none(),
            "not a file"
        );
        assert!(WriteBehind::with_mode(&f, Some(1), WriteBehindMode::On).is_some());
        assert!(WriteBehind::with_mode(&f, Some(u64::MAX), WriteBehindMode::Off).is_none());
        if let Ok(shm) = File::create("/dev/shm/gridos-io-writeback-test") {
            let _ = std::fs::remove_file("/dev/shm/gridos-io-writeback-test");
            assert!(
                WriteBehind::with_mode(&shm, None, WriteBehindMode::On).is_none(),
                "tmpfs"
            );
        }
    }
}
