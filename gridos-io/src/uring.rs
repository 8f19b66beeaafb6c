//! The io_uring engine: one ring per I/O thread, `IORING_OP_SPLICE` requests through pooled
//! pipes. file@offset → pipe → socket for sends, socket → pipe → file@offset for receives.
//!
//! Sends are chains of splices linked with `IOSQE_IO_LINK`, e.g.
//! `[file→pipe 1 MiB, pipe→sock 1 MiB, file→pipe 1 MiB, pipe→sock 1 MiB, …]`. The kernel runs
//! them in order on its io-wq workers; a short splice fails the rest of the chain with
//! `-ECANCELED`, so offsets computed up front stay valid. Whatever is left in the pipe (bytes
//! read but not yet written) is drained at the head of the next chain.
//!
//! Receives are not linked: socket reads are short most of the time (whatever has arrived),
//! which would break every chain. Instead the socket is read inline with a non-blocking
//! splice when data is waiting (cheaper than a hand-off to an io-wq worker), the pipe → file
//! write goes to the ring and overlaps with the socket reads (two pipes alternate: one is
//! written while the other fills, one write in flight at a time), and waits for readiness are
//! `POLL_ADD` requests on the same ring.
//!
//! We never return while a request of ours is in flight: on cancellation we submit
//! `ASYNC_CANCEL` and still reap every completion, so a pipe is only closed or reused once the
//! kernel is done with it.

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
                ring: new_ring()?,
                generation: 0,
            }),
        };
        f(ring)
    })
}

/// A ring for this thread. Deliberately a plain ring: with `IORING_SETUP_DEFER_TASKRUN` the
/// kernel frees finished requests — and drops their references to our sockets — only the next
/// time this thread enters the ring, so a data socket closed by us stays open (no FIN) while
/// the I/O thread sits idle, and the peer waits for an end of file that never comes.
fn new_ring() -> Result<IoUring> {
    IoUring::new(RING_ENTRIES).map_err(|e| Error::io("io_uring_setup", e))
}

/// The process-wide pipe pool for a pipe size (pools are created per distinct size, which
/// only changes when an administrator changes `io.pipe_size`).
pub(crate) fn pool(cfg: &crate::IoConfig) -> &'static PipePool {
    static POOLS: Mutex<Vec<(usize, &'static PipePool)>> = Mutex::new(Vec::new());
    let mut pools = POOLS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, p)) = pools.iter().find(|(s, _)| *s == cfg.pipe_size) {
        return p;
    }
    let p: &'static PipePool = Box::leak(Box::new(PipePool::new(
        cfg.pipe_size,
        4 * cfg.threads.max(1),
    )));
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
    /// Starts a new generation and returns its user_data tag.
    fn next_tag(&mut self) -> u64 {
        self.generation = self.generation.wrapping_add(1);
        u64::from(self.generation) << 32
    }

    /// Queues one splice with `user_data = tag | index`.
    fn push_splice(&mut self, s: &Step, tag: u64, index: usize, link: bool) -> Result<()> {
        let mut e = opcode::Splice::new(
            types::Fd(s.fd_in),
            s.off_in,
            types::Fd(s.fd_out),
            s.off_out,
            s.len,
        )
        .flags(libc::SPLICE_F_MOVE)
        .build()
        .user_data(tag | index as u64);
        if link {
            e = e.flags(squeue::Flags::IO_LINK);
        }
        // SAFETY: a splice SQE references no user memory, only file descriptors, and the
        // kernel takes its own references to those files at submission; callers also reap
        // every completion before the borrowed fds can be closed.
        unsafe { self.push(&e) }
    }

    /// Asks the kernel to cancel the requests `tag | index` for each index.
    fn cancel(&mut self, tag: u64, indices: impl Iterator<Item = usize>) -> Result<()> {
        for i in indices {
            let c = opcode::AsyncCancel::new(tag | i as u64)
                .build()
                .user_data(tag | CANCEL_TAG | i as u64);
            // SAFETY: an ASYNC_CANCEL SQE references no memory; it names a request by its
            // user_data.
            unsafe { self.push(&c)? };
        }
        Ok(())
    }

    /// Submits what is queued and waits up to [`CANCEL_POLL`] for completions; appends the
    /// current generation's `(index, result)` pairs to `out` (possibly none, on timeout).
    fn reap(&mut self, tag: u64, out: &mut Vec<(usize, i32)>) -> Result<()> {
        let ts = types::Timespec::from(CANCEL_POLL);
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                // Kernel without IORING_ENTER_EXT_ARG: wait without a timeout.
                self.ring
                    .submit_and_wait(1)
                    .map_err(|e| Error::io("io_uring_enter", e))?;
            }
            Err(e) => return Err(Error::io("io_uring_enter", e)),
        }
        for cqe in self.ring.completion() {
            let ud = cqe.user_data();
            if ud & !u64::from(u32::MAX) != tag || ud & CANCEL_TAG != 0 {
                continue; // an older generation's or a cancel request's completion
            }
            out.push(((ud & 0xffff) as usize, cqe.result()));
        }
        Ok(())
    }

    /// Submits `steps` as one linked chain and waits for every completion.
    fn run_chain(&mut self, steps: &[Step], ctx: &Ctx) -> Result<ChainResult> {
        let tag = self.next_tag();
        for (i, s) in steps.iter().enumerate() {
            self.push_splice(s, tag, i, i + 1 < steps.len())?;
        }
        let mut res = vec![i32::MIN; steps.len()];
        let mut pending = steps.len();
        let mut cancelled = false;
        let mut done = Vec::with_capacity(steps.len());
        while pending > 0 {
            done.clear();
            self.reap(tag, &mut done)?;
            for &(i, r) in &done {
                if let Some(slot) = res.get_mut(i).filter(|r| **r == i32::MIN) {
                    *slot = r;
                    pending -= 1;
                }
            }
            if pending > 0 && !cancelled && ctx.cancelled() {
                cancelled = true;
                let open: Vec<usize> = (0..res.len()).filter(|&i| res[i] == i32::MIN).collect();
                self.cancel(tag, open.into_iter())?;
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
            self.ring
                .submit()
                .map_err(|e| Error::io("io_uring_enter", e))?;
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

/// Send side: linked chains `[file→pipe, pipe→socket] × batch` (see the module docs).
pub(crate) fn send(
    file: BorrowedFd<'_>,
    offset: u64,
    len: u64,
    sock: BorrowedFd<'_>,
    ctx: &mut Ctx,
) -> Result<u64> {
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
                steps.push(Step {
                    fd_in: pr,
                    off_in: -1,
                    fd_out: sfd,
                    off_out: -1,
                    len: in_pipe as u32,
                    into_pipe: false,
                });
            }
            let mut planned = read;
            for _ in 0..ctx.cfg.batch {
                if planned >= len {
                    break;
                }
                let n = (len - planned).min(chunk) as u32;
                let at = (offset + planned) as i64;
                steps.push(Step {
                    fd_in: fd,
                    off_in: at,
                    fd_out: pw,
                    off_out: -1,
                    len: n,
                    into_pipe: true,
                });
                steps.push(Step {
                    fd_in: pr,
                    off_in: -1,
                    fd_out: sfd,
                    off_out: -1,
                    len: n,
                    into_pipe: false,
                });
                planned += u64::from(n);
            }
            let out = ring.run_chain(&steps, ctx)?;
            let mut blocked = false;
            for (s, &r) in steps.iter().zip(&out.res) {
                match r {
                    r if r > 0 && s.into_pipe => read += r as u64,
                    r if r > 0 => moved += r as u64,
                    0 if s.into_pipe => {
                        return Err(Error::FileTruncated {
                            moved,
                            expected: len,
                        });
                    }
                    0 => return Err(Error::PeerReset { moved }),
                    r if interrupted(r) => {}
                    r if r == -libc::EAGAIN => blocked = true,
                    r => {
                        let op = if s.into_pipe {
                            "splice(file→pipe)"
                        } else {
                            "splice(pipe→socket)"
                        };
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

/// Receive side. A socket read that would not block costs less as a plain non-blocking
/// `splice(2)` than as a request handed to an io-wq worker, so socket → pipe runs inline when
/// data is waiting; pipe → file@offset goes to the ring, where it overlaps with the socket
/// reads. Two pipes alternate: one is written to the file while the other fills. Only one file
/// write is in flight at a time: io-wq would otherwise run two writes of the same file on two
/// workers that then spin on the inode lock; it also keeps the bytes in order for a destination
/// that cannot seek (`offset` `None`: a pipe or socket). Each write carries everything that
/// arrived while the previous one ran, so a slow disk gets fewer, larger writes. Readiness
/// waits are `POLL_ADD` requests on the same ring, so one wait covers "socket readable" and
/// "the file write finished".
pub(crate) fn recv(
    sock: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: Option<u64>,
    len: Option<u64>,
    ctx: &mut Ctx,
) -> Result<u64> {
    use nix::fcntl::{SpliceFFlags, splice};
    const WRITE: usize = 2; // request indices: WRITE + p = write from pipe p
    const POLL: usize = 4; // the socket poll
    let _mode = ModeGuard::set(sock, true)?;
    let pool = pool(&ctx.cfg);
    let mut pipes = [pool.take()?, pool.take()?];
    let chunk = pipes[0]
        .pipe()
        .capacity()
        .min(pipes[1].pipe().capacity())
        .min(ctx.cfg.chunk_size) as u64;
    let limit = len.unwrap_or(u64::MAX);
    let (fd, sfd) = (file.as_raw_fd(), sock.as_raw_fd());
    let mut held = [0u64; 2]; // bytes in each pipe
    let mut at = [0u64; 2]; // where those bytes go, relative to `offset`
    let mut writing: Option<usize> = None; // the pipe whose write is in flight
    let mut polling = false;
    let mut poll_cancelled = false;
    // The last poll said "readable": a splice that still would block means the filling
    // pipe has no free slots, so wait for the write instead of polling again.
    let mut readable = false;
    let mut received = 0u64;
    let mut eof = false;
    let mut failure: Option<Error> = None;
    let mut cancelled = false;
    let mut done = Vec::with_capacity(4);
    // Bytes committed to the file: everything before the earliest pipe still holding data.
    let committed = |held: &[u64; 2], at: &[u64; 2], received: u64| {
        (0..2)
            .filter(|&i| held[i] > 0)
            .map(|i| at[i])
            .min()
            .unwrap_or(received)
    };
    with_ring(|ring| {
        let tag = ring.next_tag();
        // Hands pipe `p`'s bytes to the ring as one write at their file offset.
        let write = |ring: &mut Ring, p: usize, held: &[u64; 2], at: &[u64; 2]| {
            let step = Step {
                fd_in: pipes[p].pipe().read.as_raw_fd(),
                off_in: -1,
                fd_out: fd,
                off_out: offset.map_or(-1, |o| (o + at[p]) as i64),
                len: held[p] as u32,
                into_pipe: false,
            };
            ring.push_splice(&step, tag, WRITE + p, false)
        };
        loop {
            let stop = failure.is_some() || cancelled;
            // The pipe that fills: the one not being written.
            let mut p = match writing {
                Some(w) => 1 - w,
                None => usize::from(held[0] == 0 && held[1] > 0),
            };
            // Read from the socket while it has data and the filling pipe has room.
            while !stop && !eof && !polling && received < limit {
                let want = (limit - received).min(chunk - held[p]) as usize;
                if want == 0 {
                    break; // the pipe is full: wait for the write in flight
                }
                let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
                match splice(sock, None, &pipes[p].pipe().write, None, want, flags) {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        readable = false;
                        if held[p] == 0 {
                            at[p] = received;
                        }
                        held[p] += n as u64;
                        received += n as u64;
                        if writing.is_none() {
                            // The writer is idle: give it these bytes now.
                            write(ring, p, &held, &at)?;
                            writing = Some(p);
                            p = 1 - p;
                        }
                    }
                    Err(nix::errno::Errno::EAGAIN) if readable && held[p] > 0 => {
                        break; // no pipe slots left: wait for the write in flight
                    }
                    Err(nix::errno::Errno::EAGAIN) => {
                        let e = opcode::PollAdd::new(types::Fd(sfd), libc::POLLIN as u32)
                            .build()
                            .user_data(tag | POLL as u64);
                        // SAFETY: a poll SQE references no user memory, only the socket's fd,
                        // and we reap its completion (or cancel it and reap) before returning.
                        unsafe { ring.push(&e)? };
                        polling = true;
                        readable = false;
                    }
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => {
                        failure = Some(Error::transfer(
                            "splice(socket→pipe)",
                            e.into(),
                            committed(&held, &at, received),
                        ));
                        break;
                    }
                }
            }
            // Bytes left in the filling pipe with the writer idle (end of data, or the read
            // loop stopped): write them.
            if writing.is_none() && held[p] > 0 && failure.is_none() && !cancelled {
                write(ring, p, &held, &at)?;
                writing = Some(p);
            }
            if !polling && writing.is_none() {
                break;
            }
            if (failure.is_some() || eof || received >= limit) && polling && !poll_cancelled {
                ring.cancel(tag, std::iter::once(POLL))?;
                poll_cancelled = true;
            }
            done.clear();
            ring.reap(tag, &mut done)?;
            for &(i, r) in &done {
                if i == POLL {
                    // Readable, hung up or cancelled: the next splice tells which.
                    polling = false;
                    readable = true;
                    continue;
                }
                let w = i - WRITE;
                writing = None;
                match r {
                    r if r > 0 => {
                        held[w] -= r as u64;
                        at[w] += r as u64;
                    }
                    0 => {
                        failure.get_or_insert(Error::io(
                            "splice(pipe→file)",
                            std::io::Error::from(std::io::ErrorKind::WriteZero),
                        ));
                    }
                    r if interrupted(r) => {}
                    r => {
                        let moved = committed(&held, &at, received);
                        failure.get_or_insert(Error::transfer(
                            "splice(pipe→file)",
                            os_error(r),
                            moved,
                        ));
                    }
                }
                // A short write leaves bytes in the pipe: continue from where it stopped
                // (before the other pipe, whose bytes come later in the file).
                if held[w] > 0 && failure.is_none() && !cancelled {
                    write(ring, w, &held, &at)?;
                    writing = Some(w);
                }
            }
            if !cancelled && ctx.cancelled() {
                cancelled = true;
                let open: Vec<usize> = writing
                    .map(|w| WRITE + w)
                    .into_iter()
                    .chain(polling.then_some(POLL))
                    .collect();
                ring.cancel(tag, open.into_iter())?;
            }
            ctx.tick(sock, committed(&held, &at, received));
        }
        let moved = committed(&held, &at, received);
        if let Some(e) = failure {
            return Err(e);
        }
        if cancelled {
            return Err(Error::Cancelled { moved });
        }
        for p in &mut pipes {
            p.mark_clean();
        }
        eof_result(moved, len)
    })
}
