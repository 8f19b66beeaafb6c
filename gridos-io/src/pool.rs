//! The I/O pool (the paper's "I/O" thread pool): worker threads that run transfers, each with
//! its own io_uring ring. Its size can change while it runs.
//!
//! A transfer holds its thread until it ends, and a peer that stops reading stalls it until
//! a timeout cuts it; with every thread so held, the next transfers would wait behind them.
//! So an overseer looks at the queue every [`TICK`]: when its oldest job has waited
//! [`STALL`], it starts a spare thread (at most [`MAX_SPARE`] at once), which runs queued
//! jobs and ends when it finds none.

use crate::{Error, Result};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// How often the overseer looks at the queue.
const TICK: Duration = Duration::from_millis(250);
/// A job that waited this long gets a spare thread.
const STALL: Duration = Duration::from_secs(1);
/// Spare threads at most, beyond the pool's size.
pub const MAX_SPARE: usize = 64;

struct Inner {
    queue: Mutex<Queue>,
    ready: Condvar,
    live: AtomicUsize,
    /// Spare threads running.
    spare: AtomicUsize,
    /// Spare threads started so far.
    spares_started: AtomicUsize,
}

struct Queue {
    jobs: VecDeque<(Instant, Job)>,
    target: usize,
    shutdown: bool,
}

/// A resizable pool of I/O threads.
pub struct IoPool {
    inner: Arc<Inner>,
}

/// The result of a job on the pool.
pub struct JobHandle<T> {
    rx: mpsc::Receiver<std::thread::Result<T>>,
}

impl<T> JobHandle<T> {
    /// Waits for the job. A job that panicked gives an error (the pool keeps running).
    pub fn join(self) -> Result<T> {
        match self.rx.recv() {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(Error::Pool("I/O job panicked".into())),
            Err(_) => Err(Error::Pool("I/O pool shut down before the job ran".into())),
        }
    }
}

impl IoPool {
    /// A pool of `threads` workers (at least one).
    pub fn new(threads: usize) -> Result<IoPool> {
        let pool = IoPool {
            inner: Arc::new(Inner {
                queue: Mutex::new(Queue {
                    jobs: VecDeque::new(),
                    target: 0,
                    shutdown: false,
                }),
                ready: Condvar::new(),
                live: AtomicUsize::new(0),
                spare: AtomicUsize::new(0),
                spares_started: AtomicUsize::new(0),
            }),
        };
        pool.set_threads(threads)?;
        let inner = Arc::clone(&pool.inner);
        std::thread::Builder::new()
            .name("gridos-io-oversee".into())
            .spawn(move || overseer(&inner))
            .map_err(|e| Error::io("spawn I/O overseer", e))?;
        Ok(pool)
    }

    /// Spare threads started so far because queued jobs waited behind stalled ones.
    pub fn spares_started(&self) -> usize {
        self.inner.spares_started.load(Ordering::Relaxed)
    }

    /// The number of threads the pool is sized for.
    pub fn threads(&self) -> usize {
        self.lock().target
    }

    /// Resizes the pool: new threads start at once; surplus threads exit after their current
    /// job.
    pub fn set_threads(&self, n: usize) -> Result<()> {
        if n == 0 || n > 1024 {
            return Err(Error::Config(
                "io.threads must be between 1 and 1024".into(),
            ));
        }
        self.lock().target = n;
        while self.inner.live.load(Ordering::SeqCst) < n {
            self.inner.live.fetch_add(1, Ordering::SeqCst);
            let inner = Arc::clone(&self.inner);
            let spawned = std::thread::Builder::new()
                .name("gridos-io".into())
                .spawn(move || worker(&inner));
            if let Err(e) = spawned {
                self.inner.live.fetch_sub(1, Ordering::SeqCst);
                return Err(Error::io("spawn I/O thread", e));
            }
        }
        self.inner.ready.notify_all();
        Ok(())
    }

    /// Runs `f` on a pool thread.
    pub fn spawn<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> JobHandle<T> {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        });
        self.lock().jobs.push_back((Instant::now(), job));
        self.inner.ready.notify_one();
        JobHandle { rx }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.inner.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for IoPool {
    fn drop(&mut self) {
        self.lock().shutdown = true;
        self.inner.ready.notify_all();
    }
}

fn worker(inner: &Inner) {
    let mut q = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if q.target < inner.live.load(Ordering::SeqCst) || (q.shutdown && q.jobs.is_empty()) {
            inner.live.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        match q.jobs.pop_front() {
            Some((_, job)) => {
                drop(q);
                job();
                q = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            }
            None => q = inner.ready.wait(q).unwrap_or_else(|p| p.into_inner()),
        }
    }
}

/// A spare thread: runs queued jobs while there are any, then ends.
fn spare(inner: &Inner) {
    loop {
        let job = {
            let mut q = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            match q.jobs.pop_front() {
                Some((_, job)) => job,
                None => break,
            }
        };
        job();
    }
    inner.spare.fetch_sub(1, Ordering::SeqCst);
}

/// Starts spare threads for jobs that waited [`STALL`]; ends when the pool shuts down.
fn overseer(inner: &Arc<Inner>) {
    loop {
        std::thread::sleep(TICK);
        let q = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.shutdown {
            return;
        }
        let stalled = q.jobs.front().is_some_and(|(t, _)| t.elapsed() >= STALL);
        drop(q);
        if stalled && inner.spare.load(Ordering::SeqCst) < MAX_SPARE {
            inner.spare.fetch_add(1, Ordering::SeqCst);
            let me = Arc::clone(inner);
            match std::thread::Builder::new()
                .name("gridos-io-spare".into())
                .spawn(move || spare(&me))
            {
                Ok(_) => {
                    inner.spares_started.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        "gridos-io: a spare I/O thread for jobs queued behind stalled ones"
                    );
                }
                Err(_) => {
                    inner.spare.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_jobs_resizes_and_survives_panics() {
        let pool = IoPool::new(2).unwrap();
        let handles: Vec<_> = (0..8u64).map(|i| pool.spawn(move || i * 2)).collect();
        let sum: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, 56);
        assert!(pool.spawn(|| panic!("boom")).join().is_err());
        pool.set_threads(4).unwrap();
        assert_eq!(pool.threads(), 4);
        pool.set_threads(1).unwrap();
        assert_eq!(pool.spawn(|| 7).join().unwrap(), 7);
        assert!(pool.set_threads(0).is_err());
    }

    #[test]
    fn jobs_queued_behind_stalled_ones_get_a_spare_thread() {
        let pool = IoPool::new(2).unwrap();
        // Two jobs that hold both threads until released.
        let (release, held) = mpsc::channel::<()>();
        let held = Arc::new(Mutex::new(held));
        let stuck: Vec<_> = (0..2)
            .map(|_| {
                let held = Arc::clone(&held);
                pool.spawn(move || {
                    let _ = held.lock().unwrap().recv();
                })
            })
            .collect();
        // One holds the receiver's lock and waits in recv; the other waits for the lock.
        std::thread::sleep(Duration::from_millis(100));
        let (tx, rx) = mpsc::channel();
        let _quick = pool.spawn(move || tx.send(42).unwrap());
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(20)),
            Ok(42),
            "a job queued behind stalled ones never ran"
        );
        assert!(pool.spares_started() >= 1);
        drop(release);
        for h in stuck {
            h.join().unwrap();
        }
    }
}
