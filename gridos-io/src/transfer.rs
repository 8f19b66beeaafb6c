//! The transfer primitives everything above is built on: a file range to a socket, and a
//! socket into a file at an offset. Both pick a path, report what they did, can be cancelled,
//! and run the buffer monitor.

use crate::net::buffer_sizes;
use crate::tune::{Role, TuneDecision};
use crate::{Error, IoPath, Result, TransferReport, stats};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Cancels a transfer from another thread. Cheap to clone; all clones share one flag.
///
/// A cancelled transfer stops within about 100 ms, waits for every in-flight kernel
/// operation to complete (so no pipe or buffer is freed under the kernel), and returns
/// [`Error::Cancelled`] with the bytes committed so far.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }
    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }
    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Per-transfer settings; anything left `None` comes from the process configuration.
#[derive(Clone, Debug, Default)]
pub struct TransferOptions {
    /// Force a data path (an error if the kernel lacks it).
    pub path: Option<IoPath>,
    /// Cancellation.
    pub cancel: Option<CancelToken>,
    /// Run the TCP_INFO buffer monitor (default: `io.auto_tune`).
    pub auto_tune: Option<bool>,
    /// Cap for buffers the monitor sets (default: `io.max_buffer`).
    pub max_buffer: Option<usize>,
    /// Updated with the bytes committed so far, for progress displays.
    pub progress: Option<Arc<AtomicU64>>,
    /// Told of each buffer-monitor decision as it is applied (the decisions also come back
    /// in the report, once the transfer is over).
    pub on_decision: Option<DecisionSink>,
    /// The write-behind of the destination file ([`recv_file`] tells it of every range that
    /// lands). One handle per file, shared by all the streams that write into it.
    pub write_behind: Option<crate::WriteBehind>,
}

/// A callback for buffer-monitor decisions while a transfer runs (a live display).
#[derive(Clone)]
pub struct DecisionSink(Arc<dyn Fn(&TuneDecision) + Send + Sync>);

impl DecisionSink {
    /// A sink calling `f` from the transferring thread.
    pub fn new(f: impl Fn(&TuneDecision) + Send + Sync + 'static) -> DecisionSink {
        DecisionSink(Arc::new(f))
    }

    /// Tells the callback of `d`.
    pub fn tell(&self, d: &TuneDecision) {
        (self.0)(d)
    }
}

impl std::fmt::Debug for DecisionSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecisionSink(..)")
    }
}

/// How often a blocked transfer wakes to look at its cancel token.
pub(crate) const CANCEL_POLL: Duration = Duration::from_millis(100);

/// State shared by the three path implementations for one transfer.
pub(crate) struct Ctx {
    pub cfg: crate::IoConfig,
    cancel: Option<CancelToken>,
    progress: Option<Arc<AtomicU64>>,
    tuning: Tuning,
    interval: Duration,
    last_sample: Instant,
    pub decisions: Vec<TuneDecision>,
    on_decision: Option<DecisionSink>,
    /// A receive's write-behind, the file offset its bytes start at, and how many of them
    /// it has been told of.
    landing: Option<(crate::WriteBehind, u64, u64)>,
}

/// The buffer monitor of one transfer. It starts only once a transfer has run for a monitor
/// interval, so short transfers pay nothing for it.
enum Tuning {
    Off,
    Pending { role: Role, max_buffer: usize },
    On(crate::net::SocketTuner),
}

impl Ctx {
    pub fn new(opts: &TransferOptions, role: Role) -> Ctx {
        let cfg = crate::config();
        let tuning = if opts.auto_tune.unwrap_or(cfg.auto_tune) {
            Tuning::Pending {
                role,
                max_buffer: opts.max_buffer.unwrap_or(cfg.max_buffer),
            }
        } else {
            Tuning::Off
        };
        Ctx {
            interval: Duration::from_millis(cfg.monitor_interval_ms),
            cfg,
            cancel: opts.cancel.clone(),
            progress: opts.progress.clone(),
            tuning,
            last_sample: Instant::now(),
            decisions: Vec::new(),
            on_decision: opts.on_decision.clone(),
            landing: None,
        }
    }

    pub fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(CancelToken::is_cancelled)
    }

    /// Called between steps with the bytes committed so far: publishes progress and, once per
    /// interval, samples TCP_INFO and applies what the monitor decides.
    pub fn tick(&mut self, sock: BorrowedFd<'_>, moved: u64) {
        if let Some(p) = &self.progress {
            p.store(moved, Ordering::Relaxed);
        }
        if let Some((wb, base, told)) = &mut self.landing
            && moved > *told
        {
            wb.landed(*base + *told, moved - *told);
            *told = moved;
        }
        if matches!(self.tuning, Tuning::Off) || self.last_sample.elapsed() < self.interval {
            return;
        }
        self.last_sample = Instant::now();
        if let Tuning::Pending { role, max_buffer } = self.tuning {
            // Only TCP sockets have TCP_INFO; others run without a monitor.
            self.tuning = match crate::tcp_info(&sock) {
                Ok(_) => Tuning::On(crate::net::SocketTuner::new(role, Some(max_buffer))),
                Err(_) => Tuning::Off,
            };
        }
        let Tuning::On(tuner) = &mut self.tuning else {
            return;
        };
        if let Some(d) = tuner.sample(sock) {
            if let Some(sink) = &self.on_decision {
                sink.tell(&d);
            }
            self.decisions.push(d);
        }
    }
}

fn resolve_path(opts: &TransferOptions, cfg: &crate::IoConfig) -> Result<IoPath> {
    match opts.path {
        Some(p) => p.check(),
        None => match cfg.forced_path()? {
            Some(p) => p.check(),
            None => Ok(crate::probe()),
        },
    }
}

fn report(
    ctx: Ctx,
    bytes: u64,
    start: Instant,
    path: IoPath,
    sock: BorrowedFd<'_>,
) -> TransferReport {
    let (snd, rcv) = buffer_sizes(sock);
    TransferReport {
        bytes,
        wire_bytes: bytes,
        elapsed: start.elapsed(),
        path,
        sndbuf: (snd > 0).then_some(snd),
        rcvbuf: (rcv > 0).then_some(rcv),
        decisions: ctx.decisions,
    }
}

/// [`Error::OffsetPastEof`] unless `offset..offset + len` lies inside `file`.
pub(crate) fn check_range(file: &File, offset: u64, len: u64) -> Result<()> {
    let file_len = file.metadata().map_err(|e| Error::io("fstat", e))?.len();
    if offset.checked_add(len).is_none_or(|end| end > file_len) {
        return Err(Error::OffsetPastEof {
            offset,
            len,
            file_len,
        });
    }
    Ok(())
}

/// Sends `len` bytes of `file` starting at `offset` to the connected socket `sock`.
///
/// Fails with [`Error::OffsetPastEof`] before sending anything if the range is not inside the
/// file; with [`Error::PeerReset`], [`Error::Cancelled`], … carrying the bytes sent otherwise.
pub fn send_file(
    file: &File,
    offset: u64,
    len: u64,
    sock: &impl AsFd,
    opts: &TransferOptions,
) -> Result<TransferReport> {
    let sock = sock.as_fd();
    check_range(file, offset, len)?;
    let mut ctx = Ctx::new(opts, Role::Sender);
    let path = resolve_path(opts, &ctx.cfg)?;
    stats::started(path);
    let start = Instant::now();
    let result = match path {
        IoPath::Uring => crate::uring::send(file.as_fd(), offset, len, sock, &mut ctx),
        IoPath::Splice => crate::syscall::send(file.as_fd(), offset, len, sock, &mut ctx),
        IoPath::ReadWrite => crate::rw::send(file.as_fd(), offset, len, sock, &mut ctx),
    };
    stats::finished(&result);
    let moved = match &result {
        Ok(n) => *n,
        Err(e) => e.bytes_moved().unwrap_or(0),
    };
    stats::add_sent(moved);
    let bytes = result?;
    ctx.tick(sock, bytes);
    tracing::debug!(bytes, %path, "gridos-io: send_file done");
    Ok(report(ctx, bytes, start, path, sock))
}

/// Sends `prefix` (a protocol header such as a MODE E block header) with `MSG_MORE`, then `len`
/// bytes of `file` at `offset` exactly as [`send_file`] does, so header and payload leave in
/// the same segments while the payload still moves without a user-space copy.
pub fn send_file_prefixed(
    prefix: &[u8],
    file: &File,
    offset: u64,
    len: u64,
    sock: &impl AsFd,
    opts: &TransferOptions,
) -> Result<TransferReport> {
    use nix::sys::socket::{MsgFlags, send};
    use std::os::fd::AsRawFd;
    let fd = sock.as_fd();
    check_range(file, offset, len)?;
    // nix has no MSG_MORE constant; the bit comes from libc.
    let more = MsgFlags::from_bits_retain(if len > 0 { libc::MSG_MORE } else { 0 });
    let flags = MsgFlags::MSG_NOSIGNAL | more;
    let mut sent = 0;
    while sent < prefix.len() {
        match send(fd.as_raw_fd(), &prefix[sent..], flags) {
            Ok(n) => sent += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => {
                let ctx = Ctx::new(opts, Role::Sender);
                wait_ready(fd, true, &ctx, 0)?;
            }
            Err(e) => return Err(Error::transfer("send(header)", e.into(), 0)),
        }
    }
    stats::add_sent(prefix.len() as u64);
    send_file(file, offset, len, &fd, opts)
}

/// Receives from `sock` into `file` at `offset`: exactly `len` bytes when `len` is `Some`
/// (a peer that closes early gives [`Error::PeerClosed`]), or until the peer closes when
/// `None`. Bytes land at `offset..offset + n`; nothing else in the file is touched. A
/// destination that cannot seek (a pipe, a socket, a terminal) takes the bytes in order, and
/// then only `offset` 0 is accepted.
pub fn recv_file(
    sock: &impl AsFd,
    file: &File,
    offset: u64,
    len: Option<u64>,
    opts: &TransferOptions,
) -> Result<TransferReport> {
    let sock = sock.as_fd();
    let mut ctx = Ctx::new(opts, Role::Receiver);
    let path = resolve_path(opts, &ctx.cfg)?;
    let at = destination_offset(file.as_fd(), offset)?;
    if let (Some(o), Some(wb)) = (at, &opts.write_behind) {
        ctx.landing = Some((wb.clone(), o, 0));
    }
    stats::started(path);
    let start = Instant::now();
    let result = match path {
        IoPath::Uring => crate::uring::recv(sock, file.as_fd(), at, len, &mut ctx),
        IoPath::Splice => crate::syscall::recv(sock, file.as_fd(), at, len, &mut ctx),
        IoPath::ReadWrite => crate::rw::recv(sock, file.as_fd(), at, len, &mut ctx),
    };
    stats::finished(&result);
    let moved = match &result {
        Ok(n) => *n,
        Err(e) => e.bytes_moved().unwrap_or(0),
    };
    stats::add_received(moved);
    let bytes = result?;
    ctx.tick(sock, bytes);
    tracing::debug!(bytes, %path, "gridos-io: recv_file done");
    Ok(report(ctx, bytes, start, path, sock))
}

/// Where received bytes go: `Some(offset)` for a file that can be written at an offset, `None`
/// for a pipe, socket or terminal, which take the bytes in order (only from offset 0: there
/// is no other place to put them).
fn destination_offset(file: BorrowedFd<'_>, offset: u64) -> Result<Option<u64>> {
    use nix::unistd::{Whence, lseek};
    match lseek(file, 0, Whence::SeekCur) {
        Ok(_) => Ok(Some(offset)),
        Err(nix::errno::Errno::ESPIPE) if offset == 0 => Ok(None),
        Err(nix::errno::Errno::ESPIPE) => Err(Error::io(
            "recv_file",
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("offset {offset} on a destination that cannot seek (a pipe or socket)"),
            ),
        )),
        Err(e) => Err(Error::io("lseek", e)),
    }
}

/// What a receive loop does when the socket hits end of stream.
pub(crate) fn eof_result(moved: u64, len: Option<u64>) -> Result<u64> {
    match len {
        Some(expected) if moved < expected => Err(Error::PeerClosed { moved, expected }),
        _ => Ok(moved),
    }
}

/// Makes a socket blocking or non-blocking for the duration of a transfer and restores its
/// previous mode afterwards.
pub(crate) struct ModeGuard<'a> {
    fd: BorrowedFd<'a>,
    restore: Option<nix::fcntl::OFlag>,
}

impl<'a> ModeGuard<'a> {
    pub fn set(fd: BorrowedFd<'a>, nonblocking: bool) -> Result<ModeGuard<'a>> {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        let flags = OFlag::from_bits_retain(
            fcntl(fd, FcntlArg::F_GETFL).map_err(|e| Error::io("F_GETFL", e))?,
        );
        let want = if nonblocking {
            flags | OFlag::O_NONBLOCK
        } else {
            flags - OFlag::O_NONBLOCK
        };
        if want == flags {
            return Ok(ModeGuard { fd, restore: None });
        }
        fcntl(fd, FcntlArg::F_SETFL(want)).map_err(|e| Error::io("F_SETFL", e))?;
        Ok(ModeGuard {
            fd,
            restore: Some(flags),
        })
    }
}

impl Drop for ModeGuard<'_> {
    fn drop(&mut self) {
        if let Some(flags) = self.restore {
            let _ = nix::fcntl::fcntl(self.fd, nix::fcntl::FcntlArg::F_SETFL(flags));
        }
    }
}

/// Waits until `fd` is readable (`POLLIN`) or writable (`POLLOUT`), waking every
/// [`CANCEL_POLL`] to honour cancellation. Hang-ups and errors count as ready: the next
/// operation reports them.
pub(crate) fn wait_ready(fd: BorrowedFd<'_>, write: bool, ctx: &Ctx, moved: u64) -> Result<()> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let ev = if write {
        PollFlags::POLLOUT
    } else {
        PollFlags::POLLIN
    };
    loop {
        if ctx.cancelled() {
            return Err(Error::Cancelled { moved });
        }
        let mut fds = [PollFd::new(fd, ev)];
        match poll(&mut fds, PollTimeout::from(CANCEL_POLL.as_millis() as u16)) {
            Ok(0) => continue,
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::io("poll", e)),
        }
    }
}
