//! Giving memory back after many sessions close. Each session's buffers are freed when it
//! ends, but glibc keeps freed memory in its per-thread arenas: after a thousand sessions
//! the server stayed 25 MiB above its baseline with none connected. When the number of
//! clients has fallen by half (and by at least [`MIN_DROP`]) since the last trim, or to
//! zero from at least that many, a background thread calls `malloc_trim(0)` — coalesced,
//! at most once per [`COALESCE`], off the sessions' threads.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::mpsc;
use std::time::Duration;

/// Fewer departed sessions than this are not worth a trim (their memory is reused by the
/// next ones).
const MIN_DROP: usize = 16;
/// Requests closer together than this make one trim.
const COALESCE: Duration = Duration::from_millis(500);

/// Asks for trims; owned by the server's shared state (dropping it ends the thread).
pub(crate) struct Trimmer {
    tx: Option<mpsc::Sender<()>>,
    /// Most clients connected since the last trim.
    high: AtomicUsize,
    /// Trims done (`heap_trims` in the stats).
    pub trims: Arc<AtomicU64>,
}

impl Trimmer {
    /// Starts the trimming thread (before the seccomp filter: it makes no calls the
    /// filter does not allow — malloc_trim uses madvise/munmap/brk).
    pub fn start() -> Trimmer {
        let (tx, rx) = mpsc::channel::<()>();
        let trims = Arc::new(AtomicU64::new(0));
        let count = trims.clone();
        let spawned = std::thread::Builder::new()
            .name("ftpd-trim".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    std::thread::sleep(COALESCE);
                    while rx.try_recv().is_ok() {}
                    gridos_io::release_free_memory();
                    count.fetch_add(1, Relaxed);
                }
            });
        Trimmer {
            // Without the thread there is nobody to ask; the server runs on without trims.
            tx: spawned.ok().map(|_| tx),
            high: AtomicUsize::new(0),
            trims,
        }
    }

    /// A client came: `now` are connected.
    pub fn arrived(&self, now: usize) {
        self.high.fetch_max(now, Relaxed);
    }

    /// A client left: `now` are connected.
    pub fn left(&self, now: usize) {
        let high = self.high.load(Relaxed);
        if wants_trim(high, now)
            && self
                .high
                .compare_exchange(high, now, Relaxed, Relaxed)
                .is_ok()
            && let Some(tx) = &self.tx
        {
            let _ = tx.send(());
        }
    }
}

/// Whether falling from `high` clients to `now` is worth a trim.
fn wants_trim(high: usize, now: usize) -> bool {
    high >= now + MIN_DROP && (now == 0 || now * 2 <= high)
}

#[cfg(test)]
mod tests {
    use super::wants_trim;

    #[test]
    fn trims_when_half_or_all_have_gone() {
        assert!(!wants_trim(1, 0), "churn of single sessions does not trim");
        assert!(!wants_trim(15, 0));
        assert!(wants_trim(16, 0));
        assert!(wants_trim(1000, 500));
        assert!(!wants_trim(1000, 501));
        assert!(!wants_trim(20, 10), "a drop of fewer than MIN_DROP");
        assert!(wants_trim(40, 20));
    }
}
