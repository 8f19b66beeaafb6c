//! The io_uring engine: one ring per I/O thread, linked `IORING_OP_SPLICE` requests through a
//! pooled pipe. file@offset → pipe → socket for sends, socket → pipe → file@offset for receives.
//!
//! How a step works: a submission is a chain of splices linked with `IOSQE_IO_LINK`, e.g.
//! `[file→pipe 1 MiB, pipe→sock 1 MiB, file→pipe 1 MiB, pipe→sock 1 MiB, …]`. The kernel runs
//! them in order on its io-wq workers; a short splice fails the rest of the chain with
//! `-ECANCELED`, so offsets computed up front stay valid. Whatever is left in the pipe (bytes
//! read but not yet written) is drained at the head of the next chain. We never return while a
//! request of ours is in flight: on cancellation we submit `ASYNC_CANCEL` and still reap every
//! completion, so the pipe is only closed or reused once the kernel is done with it.

use crate::pipe::PipePool;
use crate::transfer::{CANCEL_POLL, Ctx, ModeGuard, eof_result, wait_ready};
use crate::{Error, Result};
use io_uring::{IoUring, opcode, squeue, types};
use std::cell::RefCell;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::Mutex;

const RING_ENTRIES: u32 = 64;
/// Marks the user_data of our ASYNC_CANCEL requests.
const CANCEL_TAG: u64 = 1 << 31;

thread_local! {
    static RING: RefCell<Option<Ring>> = const { RefCell::new(None) };
}

struct Ring {
    ring: IoUring,
    /// Chain generation, in the high half of user_data: completions of an older chain (late
    /// cancel acknowledgements) are recognised and ignored.
    generation: u32,
}

/// Runs `f` with this thread's ring, creating it on first use.
fn with_ring<T>(f: impl FnOnce(&mut Ring) -> Result<T>) -> Result<T> {
    RING.with(|cell| {
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| Error::Config("io_uring ring used re-entrantly".into()))?;
        let ring = match &mut *slot {
            Some(r) => r,
            None => slot.insert(Ring {
                ring: IoUring::new(RING_ENTRIES).map_err(|e| Error::io("io_uring_setup", e))?,
                generation: 0,
            }),
        };
        f(ring)
    })
}

/// The process-wide pipe pool for a pipe size (pools are created per distinct size, which
/// only changes when an administrator changes `io.pipe_size`).
pub(crate) fn pool(cfg: &crate::IoConfig) -> &'static PipePool {
    static POOLS: Mutex<Vec<(usize, &'static PipePool)>> = Mutex::new(Vec::new());
    let mut pools = POOLS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, p)) = pools.iter().find(|(s, _)| *s == cfg.pipe_size) {
        return p;
    }
    let p: &'static PipePool = Box::leak(Box::new(PipePool::new(cfg.pipe_size, 4 * cfg.threads.max(1))));
    pools.push((cfg.pipe_size, p));
    p
}

/// One splice of a chain.
#[derive(Clone, Copy)]
struct Step {
    fd_in: RawFd,
    off_in: i64,
    fd_out: RawFd,
    off_out: i64,
    len: u32,
    /// True for a splice into the pipe, false for one out of it.
    into_pipe: bool,
}

/// Results of a chain, one per step (bytes or `-errno`), and whether it was cancelled.
struct ChainResult {
    res: Vec<i32>,
    cancelled: bool,
}

impl Ring {
    /// Submits `steps` as one linked chain and waits for every completion.
    fn run_chain(&mut self, steps: &[Step], ctx: &Ctx) -> Result<ChainResult> {
        self.generation = self.generation.wrapping_add(1);
        let tag = u64::from(self.generation) << 32;
        for (i, s) in steps.iter().enumerate() {
            let mut e = opcode::Splice::new(types::Fd(s.fd_in), s.off_in, types::Fd(s.fd_out), s.off_out, s.len)
                .flags(libc::SPLICE_F_MOVE)
                .build()
                .user_data(tag | i as u64);
            if i + 1 < steps.len() {
                e = e.flags(squeue::Flags::IO_LINK);
            }
            // SAFETY: a splice SQE references no user memory, only file descriptors, and the
            // kernel takes its own references to those files at submission; we also reap
            // every completion below before the borrowed fds can be closed.
            unsafe { self.push(&e)? };
        }
        let mut res = vec![i32::MIN; steps.len()];
        let mut pending = steps.len();
        let mut cancelled = false;
        let ts = types::Timespec::from(CANCEL_POLL);
        while pending > 0 {
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    // Kernel without IORING_ENTER_EXT_ARG: wait without a timeout.
                    self.ring.submit_and_wait(1).map_err(|e| Error::io("io_uring_enter", e))?;
                }
                Err(e) => return Err(Error::io("io_uring_enter", e)),
            }
            for cqe in self.ring.completion() {
                let ud = cqe.user_data();
                if ud & !(u64::from(u32::MAX)) != tag || ud & CANCEL_TAG != 0 {
                    continue; // an older chain's or a cancel request's completion
                }
                let i = (ud & 0xffff) as usize;
                if let Some(slot) = res.get_mut(i).filter(|r| **r == i32::MIN) {
                    *slot = cqe.result();
                    pending -= 1;
                }
            }
            if pending > 0 && !cancelled && ctx.cancelled() {
                cancelled = true;
                for (i, _) in res.iter().enumerate().filter(|(_, r)| **r == i32::MIN) {
                    let c = opcode::AsyncCancel::new(tag | i as u64).build().user_data(tag | CANCEL_TAG | i as u64);
                    // SAFETY: an ASYNC_CANCEL SQE references no memory; it names a request by
                    // its user_data.
                    unsafe { self.push(&c)? };
                }
            }
        }
        Ok(ChainResult { res, cancelled })
    }

    /// # Safety
    /// The entry's referenced resources must stay valid until its completion is reaped.
    unsafe fn push(&mut self, e: &squeue::Entry) -> Result<()> {
        loop {
            // SAFETY: forwarded from the caller's contract.
            if unsafe { self.ring.submission().push(e) }.is_ok() {
                return Ok(());
            }
            // Queue full: hand what is queued to the kernel and retry.
            self.ring.submit().map_err(|e| Error::io("io_uring_enter", e))?;
        }
    }
}

/// Results that mean "this request did not run or was interrupted": a failed link
/// (ECANCELED), a signal, or cancellation of a running io-wq worker, which can surface the
/// kernel-internal restart codes (ERESTARTSYS and friends, 512–516).
fn interrupted(res: i32) -> bool {
    res == -libc::ECANCELED || res == -libc::EINTR || (-516..=-512).contains(&res)
}

fn os_error(res: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(-res)
}

pub(crate) fn send(file: BorrowedFd<'_>, offset: u64, len: u64, sock: BorrowedFd<'_>, ctx: &mut Ctx) -> Result<u64> {
    // io-wq workers block in the kernel; a blocking socket avoids EAGAIN round trips and
    // cancellation interrupts the worker.
    let _mode = ModeGuard::set(sock, false)?;
    let mut pipe = pool(&ctx.cfg).take()?;
    let (pr, pw) = (pipe.pipe().read.as_raw_fd(), pipe.pipe().write.as_raw_fd());
    let chunk = pipe.pipe().capacity().min(ctx.cfg.chunk_size) as u64;
    let (fd, sfd) = (file.as_raw_fd(), sock.as_raw_fd());
    let mut read = 0u64; // bytes spliced from the file into the pipe
    let mut moved = 0u64; // bytes spliced from the pipe into the socket
    let mut steps = Vec::with_capacity(2 * ctx.cfg.batch + 1);
    with_ring(|ring| {
        while moved < len {
            if ctx.cancelled() {
                return Err(Error::Cancelled { moved });
            }
            steps.clear();
            let in_pipe = read - moved;
            if in_pipe > 0 {
                steps.push(Step { fd_in: pr, off_in: -1, fd_out: sfd, off_out: -1, len: in_pipe as u32, into_pipe: false });
            }
            let mut planned = read;
            for _ in 0..ctx.cfg.batch {
                if planned >= len {
                    break;
                }
                let n = (len - planned).min(chunk) as u32;
                let at = (offset + planned) as i64;
                steps.push(Step { fd_in: fd, off_in: at, fd_out: pw, off_out: -1, len: n, into_pipe: true });
                steps.push(Step { fd_in: pr, off_in: -1, fd_out: sfd, off_out: -1, len: n, into_pipe: false });
                planned += u64::from(n);
            }
            let out = ring.run_chain(&steps, ctx)?;
            let mut blocked = false;
            for (s, &r) in steps.iter().zip(&out.res) {
                match r {
                    r if r > 0 && s.into_pipe => read += r as u64,
                    r if r > 0 => moved += r as u64,
                    0 if s.into_pipe => return Err(Error::FileTruncated { moved, expected: len }),
                    0 => return Err(Error::PeerReset { moved }),
                    r if interrupted(r) => {}
                    r if r == -libc::EAGAIN => blocked = true,
                    r => {
                        let op = if s.into_pipe { "splice(file→pipe)" } else { "splice(pipe→socket)" };
                        return Err(Error::transfer(op, os_error(r), moved));
                    }
                }
            }
            if out.cancelled {
                return Err(Error::Cancelled { moved });
            }
            if blocked {
                wait_ready(sock, true, ctx, moved)?;
            }
            ctx.tick(sock, moved);
        }
        pipe.mark_clean();
        Ok(moved)
    })
}

pub(crate) fn recv(
    sock: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: u64,
    len: Option<u64>,
    ctx: &mut Ctx,
) -> Result<u64> {
    let _mode = ModeGuard::set(sock, false)?;
    let mut pipe = pool(&ctx.cfg).take()?;
    let (pr, pw) = (pipe.pipe().read.as_raw_fd(), pipe.pipe().write.as_raw_fd());
    let chunk = pipe.pipe().capacity().min(ctx.cfg.chunk_size) as u64;
    let (fd, sfd) = (file.as_raw_fd(), sock.as_raw_fd());
    let mut received = 0u64; // bytes spliced from the socket into the pipe
    let mut moved = 0u64; // bytes spliced from the pipe into the file
    let mut eof = false;
    let mut steps = Vec::with_capacity(3);
    with_ring(|ring| {
        loop {
            let in_pipe = received - moved;
            if in_pipe == 0 && (eof || len.is_some_and(|l| moved >= l)) {
                break;
            }
            if ctx.cancelled() {
                return Err(Error::Cancelled { moved });
            }
            steps.clear();
            if in_pipe > 0 {
                let at = (offset + moved) as i64;
                steps.push(Step { fd_in: pr, off_in: -1, fd_out: fd, off_out: at, len: in_pipe as u32, into_pipe: false });
            }
            let want = match len {
                Some(l) => (l - received).min(chunk),
                None => chunk,
            };
            if want > 0 && !eof {
                let at = (offset + received) as i64;
                steps.push(Step { fd_in: sfd, off_in: -1, fd_out: pw, off_out: -1, len: want as u32, into_pipe: true });
                steps.push(Step { fd_in: pr, off_in: -1, fd_out: fd, off_out: at, len: want as u32, into_pipe: false });
            }
            let out = ring.run_chain(&steps, ctx)?;
            let mut blocked = false;
            for (s, &r) in steps.iter().zip(&out.res) {
                match r {
                    r if r > 0 && s.into_pipe => received += r as u64,
                    r if r > 0 => moved += r as u64,
                    0 if s.into_pipe => eof = true,
                    0 => {
                        return Err(Error::io("splice(pipe→file)", std::io::Error::from(std::io::ErrorKind::WriteZero)));
                    }
                    r if interrupted(r) => {}
                    r if r == -libc::EAGAIN => blocked = true,
                    r => {
                        let op = if s.into_pipe { "splice(socket→pipe)" } else { "splice(pipe→file)" };
                        return Err(Error::transfer(op, os_error(r), moved));
                    }
                }
            }
            if out.cancelled {
                return Err(Error::Cancelled { moved });
            }
            if blocked {
                wait_ready(sock, false, ctx, moved)?;
            }
            ctx.tick(sock, moved);
        }
        pipe.mark_clean();
        eof_result(moved, len)
    })
}
