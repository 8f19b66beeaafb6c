//! What a running copy tells its caller: the [`CopyObserver`] trait. The command line's
//! progress bar, its `-v` plan lines and its summary are observers; a program can be one.

use crate::plan::TransferPlan;
pub use gridos_io::tune::{TuneAction, TuneDecision};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Receives a copy's events. Every method has an empty default; calls come from the
/// copying thread, except [`CopyObserver::progress`], which comes from a ticker thread.
pub trait CopyObserver: Send + Sync {
    /// The transfer settings chosen for one FTP side (after login).
    fn planned(&self, _endpoint: &str, _plan: &TransferPlan) {}
    /// The buffer monitor changed something on a data connection with `endpoint` while
    /// the transfer runs (a buffer raised, more streams suggested). Comes from the
    /// transferring thread.
    fn adjusted(&self, _endpoint: &str, _decision: &TuneDecision) {}
    /// Files and bytes the copy will move (once the source is walked).
    fn total(&self, _files: u64, _bytes: u64) {}
    /// Bytes done so far over the whole copy, and the total when known (about every
    /// 100 ms while data moves).
    fn progress(&self, _done: u64, _total: u64) {}
    /// One file starts, with its size when known (not called for the files of a pipelined
    /// tree, which are many at once; their `file_done` calls come as each one lands).
    fn file_started(&self, _src: &str, _dst: &str, _size: Option<u64>) {}
    /// One file is complete (or was already complete, with `bytes` 0 on resume).
    fn file_done(&self, _src: &str, _dst: &str, _bytes: u64) {}
    /// Something the user should know that is not an error (an entry skipped, a relay
    /// instead of a direct transfer).
    fn notice(&self, _text: &str) {}
}

/// The observer of a copy nobody watches.
pub(crate) struct Silent;
impl CopyObserver for Silent {}

/// Bytes moved: `current` is what the running transfer reports (the FTP client's progress
/// counter), `base` what finished files add up to. A ticker thread turns them into
/// [`CopyObserver::progress`] calls while a copy runs.
pub(crate) struct Progress {
    pub current: Arc<AtomicU64>,
    base: AtomicU64,
    total: AtomicU64,
    /// Held while a finished file moves from `current` to `base` and while both are read,
    /// so that no report counts the file twice (more than the total) or not at all.
    settle: Mutex<()>,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress {
            current: Arc::new(AtomicU64::new(0)),
            base: AtomicU64::new(0),
            total: AtomicU64::new(0),
            settle: Mutex::new(()),
        })
    }

    pub fn add_total(&self, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
    }

    /// `bytes` of a resumed file were there already: done without moving, so the bar
    /// starts where the file stands and ends at 100%.
    pub fn held(&self, bytes: u64) {
        self.base.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A file of `bytes` is complete. Its bytes leave `current` rather than resetting it:
    /// a pipelined tree's counter holds all files of a batch, which complete one by one.
    pub fn file_done(&self, bytes: u64) {
        let _g = self.settle.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .current
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(c.saturating_sub(bytes))
            });
        self.base.fetch_add(bytes, Ordering::Relaxed);
    }

    fn sample(&self) -> (u64, u64) {
        let _g = self.settle.lock().unwrap_or_else(|e| e.into_inner());
        (
            self.base.load(Ordering::Relaxed) + self.current.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }

    /// Runs `f` while a thread reports progress to `obs` every 100 ms; a last report
    /// follows the end.
    pub fn ticking<T>(&self, obs: &dyn CopyObserver, f: impl FnOnce() -> T) -> T {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            s.spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    rx.recv_timeout(Duration::from_millis(100))
                {
                    let (d, t) = self.sample();
                    obs.progress(d, t);
                }
            });
            let r = f();
            drop(tx);
            r
        })
    }

    /// Reports the final figures.
    pub fn last(&self, obs: &dyn CopyObserver) {
        let (d, t) = self.sample();
        obs.progress(d, t);
    }
}
