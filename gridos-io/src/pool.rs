//! The I/O pool (the paper's "I/O" thread pool): worker threads that run transfers, each with
//! its own io_uring ring. Its size can change while it runs.

use crate::{Error, Result};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Inner {
    queue: Mutex<Queue>,
    ready: Condvar,
    live: AtomicUsize,
}

struct Queue {
    jobs: VecDeque<Job>,
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
            }),
        };
        pool.set_threads(threads)?;
        Ok(pool)
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
        self.lock().jobs.push_back(job);
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
            Some(job) => {
                drop(q);
                job();
                q = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            }
            None => q = inner.ready.wait(q).unwrap_or_else(|p| p.into_inner()),
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
}
