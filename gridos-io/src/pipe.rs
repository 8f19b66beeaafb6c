//! Pipes sized with `F_SETPIPE_SZ`, and a pool so transfers do not create one per chunk.

use crate::{Error, Result};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use std::os::fd::OwnedFd;
use std::sync::Mutex;

/// A kernel pipe: the in-kernel buffer that splice moves page references through.
#[derive(Debug)]
pub struct Pipe {
    /// Read end.
    pub read: OwnedFd,
    /// Write end.
    pub write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    /// Creates a pipe and asks for `size` bytes of capacity. When the request is above
    /// `fs.pipe-max-size` (and we lack CAP_SYS_RESOURCE) the size is halved until the kernel
    /// accepts it; the pipe keeps the default 64 KiB if nothing larger is allowed.
    pub fn new(size: usize) -> Result<Pipe> {
        let (read, write) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::io("pipe2", e))?;
        let mut want = size.clamp(4096, 1 << 30);
        let capacity = loop {
            match fcntl(&write, FcntlArg::F_SETPIPE_SZ(want as i32)) {
                Ok(got) => break got as usize,
                Err(_) if want > 65536 => want /= 2,
                Err(_) => {
                    break fcntl(&write, FcntlArg::F_GETPIPE_SZ)
                        .map_err(|e| Error::io("F_GETPIPE_SZ", e))?
                        as usize;
                }
            }
        };
        crate::stats::pipe_opened();
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }

    /// The pipe's capacity in bytes (the most one splice into it can move).
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        crate::stats::pipe_closed();
    }
}

/// A pool of equally sized pipes. A pipe goes back to the pool only when its user says it is
/// empty; one that may hold stale bytes (a cancelled or failed transfer) is closed instead.
#[derive(Debug)]
pub struct PipePool {
    size: usize,
    max_idle: usize,
    idle: Mutex<Vec<Pipe>>,
}

impl PipePool {
    /// A pool of pipes of `size` bytes keeping at most `max_idle` idle pipes.
    pub fn new(size: usize, max_idle: usize) -> PipePool {
        PipePool {
            size,
            max_idle,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Takes an idle pipe or creates one.
    pub fn take(&self) -> Result<PooledPipe<'_>> {
        let reused = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let pipe = match reused {
            Some(p) => p,
            None => Pipe::new(self.size)?,
        };
        crate::stats::pipe_lent();
        Ok(PooledPipe {
            pool: self,
            pipe: Some(pipe),
            clean: false,
        })
    }

    /// Number of idle pipes (for stats and tests).
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// A pipe on loan from a [`PipePool`]. Call [`PooledPipe::mark_clean`] once it is known to be
/// empty; otherwise it is closed on drop rather than reused.
#[derive(Debug)]
pub struct PooledPipe<'a> {
    pool: &'a PipePool,
    pipe: Option<Pipe>,
    clean: bool,
}

impl PooledPipe<'_> {
    /// The pipe.
    pub fn pipe(&self) -> &Pipe {
        // Invariant: `pipe` is only taken in Drop.
        self.pipe.as_ref().expect("pipe present until drop")
    }

    /// Declares the pipe empty, so it may be reused.
    pub fn mark_clean(&mut self) {
        self.clean = true;
    }
}

impl Drop for PooledPipe<'_> {
    fn drop(&mut self) {
        crate::stats::pipe_returned();
        if let (true, Some(p)) = (self.clean, self.pipe.take()) {
            let mut idle = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < self.pool.max_idle {
                idle.push(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_is_sized_and_pool_reuses_only_clean_pipes() {
        let pool = PipePool::new(256 * 1024, 4);
        {
            let mut p = pool.take().unwrap();
            assert!(p.pipe().capacity() >= 64 * 1024);
            p.mark_clean();
        }
        assert_eq!(pool.idle(), 1);
        {
            let _dirty = pool.take().unwrap();
        }
        assert_eq!(
            pool.idle(),
            0,
            "a pipe not marked clean is closed, not reused"
        );
    }
}
