//! Global counters, and the per-transfer report.

use crate::IoPath;
use crate::tune::TuneDecision;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// What one transfer did.
#[derive(Clone, Debug, Serialize)]
pub struct TransferReport {
    /// Payload bytes moved (uncompressed bytes when compression is on).
    pub bytes: u64,
    /// Bytes on the wire (differs from `bytes` only with compression).
    pub wire_bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// The data path used.
    pub path: IoPath,
    /// SO_SNDBUF of the socket at the end (kernel value, i.e. doubled), if readable.
    pub sndbuf: Option<usize>,
    /// SO_RCVBUF of the socket at the end (kernel value, i.e. doubled), if readable.
    pub rcvbuf: Option<usize>,
    /// Decisions the buffer monitor took during the transfer.
    pub decisions: Vec<TuneDecision>,
}

impl TransferReport {
    /// Payload throughput in bytes per second.
    pub fn bytes_per_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A snapshot of the process-wide counters.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct GlobalStats {
    /// Transfers started.
    pub transfers_started: u64,
    /// Transfers that completed.
    pub transfers_completed: u64,
    /// Transfers that failed (cancelled ones included).
    pub transfers_failed: u64,
    /// Transfers cancelled.
    pub transfers_cancelled: u64,
    /// Bytes sent to sockets.
    pub bytes_sent: u64,
    /// Bytes received from sockets into files.
    pub bytes_received: u64,
    /// Bytes copied file to file.
    pub bytes_copied: u64,
    /// Transfers per path: io_uring-splice, splice, read-write.
    pub transfers_by_path: [u64; 3],
    /// Buffer decisions taken by the tuner.
    pub tune_decisions: u64,
    /// Last SO_SNDBUF value the tuner applied (0 = none yet).
    pub last_sndbuf: u64,
    /// Last SO_RCVBUF value the tuner applied (0 = none yet).
    pub last_rcvbuf: u64,
    /// The path the probe selected, by name.
    pub probed_path: &'static str,
    /// Pipes of the splice paths open now, idle ones in the pools included.
    pub pipes_open: u64,
    /// Pipes on loan to a transfer now (0 once every transfer has ended).
    pub pipes_in_use: u64,
}

#[derive(Default)]
struct Counters {
    started: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    copied: AtomicU64,
    by_path: [AtomicU64; 3],
    decisions: AtomicU64,
    sndbuf: AtomicU64,
    rcvbuf: AtomicU64,
    pipes_open: AtomicU64,
    pipes_in_use: AtomicU64,
}

static C: Counters = Counters {
    started: AtomicU64::new(0),
    completed: AtomicU64::new(0),
    failed: AtomicU64::new(0),
    cancelled: AtomicU64::new(0),
    sent: AtomicU64::new(0),
    received: AtomicU64::new(0),
    copied: AtomicU64::new(0),
    by_path: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
    decisions: AtomicU64::new(0),
    sndbuf: AtomicU64::new(0),
    rcvbuf: AtomicU64::new(0),
    pipes_open: AtomicU64::new(0),
    pipes_in_use: AtomicU64::new(0),
};

/// User + system CPU time of the whole process (all threads, io_uring workers included):
/// what the benchmarks and the self-test divide by the bytes moved.
pub fn process_cpu_time() -> std::time::Duration {
    match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| {
                std::time::Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000)
            };
            tv(u.user_time()) + tv(u.system_time())
        }
        Err(_) => std::time::Duration::ZERO,
    }
}

/// Returns the allocator's free memory to the system (glibc's `malloc_trim(0)`; elsewhere
/// nothing to do). Freed buffers otherwise stay in the per-thread arenas: a server that
/// held a thousand sessions kept their memory after they closed.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes no pointer and only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The process-wide counters.
pub fn stats() -> GlobalStats {
    GlobalStats {
        transfers_started: C.started.load(Relaxed),
        transfers_completed: C.completed.load(Relaxed),
        transfers_failed: C.failed.load(Relaxed),
        transfers_cancelled: C.cancelled.load(Relaxed),
        bytes_sent: C.sent.load(Relaxed),
        bytes_received: C.received.load(Relaxed),
        bytes_copied: C.copied.load(Relaxed),
        transfers_by_path: [0, 1, 2].map(|i| C.by_path[i].load(Relaxed)),
        tune_decisions: C.decisions.load(Relaxed),
        last_sndbuf: C.sndbuf.load(Relaxed),
        last_rcvbuf: C.rcvbuf.load(Relaxed),
        probed_path: crate::probe().name(),
        pipes_open: C.pipes_open.load(Relaxed),
        pipes_in_use: C.pipes_in_use.load(Relaxed),
    }
}

pub(crate) fn pipe_opened() {
    C.pipes_open.fetch_add(1, Relaxed);
}

pub(crate) fn pipe_closed() {
    C.pipes_open.fetch_sub(1, Relaxed);
}

pub(crate) fn pipe_lent() {
    C.pipes_in_use.fetch_add(1, Relaxed);
}

pub(crate) fn pipe_returned() {
    C.pipes_in_use.fetch_sub(1, Relaxed);
}

pub(crate) fn started(path: IoPath) {
    C.started.fetch_add(1, Relaxed);
    C.by_path[path as usize].fetch_add(1, Relaxed);
}

pub(crate) fn finished<T>(r: &crate::Result<T>) {
    match r {
        Ok(_) => C.completed.fetch_add(1, Relaxed),
        Err(crate::Error::Cancelled { .. }) => {
            C.cancelled.fetch_add(1, Relaxed);
            C.failed.fetch_add(1, Relaxed)
        }
        Err(_) => C.failed.fetch_add(1, Relaxed),
    };
}

pub(crate) fn add_sent(n: u64) {
    C.sent.fetch_add(n, Relaxed);
}

pub(crate) fn add_received(n: u64) {
    C.received.fetch_add(n, Relaxed);
}

pub(crate) fn add_copied(n: u64) {
    C.copied.fetch_add(n, Relaxed);
}

pub(crate) fn decision(sndbuf: Option<usize>, rcvbuf: Option<usize>) {
    C.decisions.fetch_add(1, Relaxed);
    if let Some(s) = sndbuf {
        C.sndbuf.store(s as u64, Relaxed);
    }
    if let Some(r) = rcvbuf {
        C.rcvbuf.store(r as u64, Relaxed);
    }
}
