//! MODE E on real sockets: sending a file's byte ranges as blocks over N data connections,
//! and receiving blocks from any number of connections into a file at their offsets.
//!
//! The wire format and the bookkeeping (which offsets, when the transfer is complete) live in
//! [`proto::mode_e`](crate::proto::mode_e); this module only moves bytes, so the server and
//! the client share it. Every data connection gets its own thread for the duration of a
//! transfer; payloads move with gridos-io's zero-copy primitives (the 17-byte header goes out
//! with `MSG_MORE` just before its payload is spliced; a received payload is spliced from the
//! socket into the file at its offset). A connection that ended its part with EOD but was not
//! closed is handed back in [`Outcome::channels`], so the next transfer can reuse it.
//!
//! Buffer tuning: each stream runs a [`gridos_io::SocketTuner`] while the transfer lasts, so a
//! stream that is send-buffer or receive-window limited gets larger buffers, as single-stream
//! transfers do inside gridos-io.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gridos_io::tune::Role;
use gridos_io::{CancelToken, SocketTuner, TransferOptions};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::proto::mode_e::{
    BlockHeader, HEADER_LEN, ModeEReceiver, ModeESender, Placement, ReceiveStatus, StreamId,
};
use crate::proto::{DataPolicy, FsError, FsErrorKind, RangeSet, TransferError};

/// Default MODE E block size: large enough that a header per block costs nothing, small
/// enough that fast streams take more blocks than slow ones.
pub const DEFAULT_BLOCK_SIZE: u64 = 1 << 20;

/// How often blocked loops look at the cancel token and completion.
const WAKE_MS: u8 = 50;

/// A MODE E send.
#[derive(Debug, Clone)]
pub struct Send {
    /// File byte ranges to send, e.g. `[0, size)` or the parts a restarting peer lacks.
    pub ranges: RangeSet,
    /// Subtracted from file offsets in the headers: ERET P sends offsets relative to its
    /// start, as the Globus tools expect.
    pub shift: u64,
    /// Largest payload per block.
    pub block_size: u64,
    /// Set the sender-closes flag on the last blocks: the channels end with this transfer.
    pub close: bool,
    /// Cancellation, progress (bytes of payload sent), forced I/O path.
    pub opts: TransferOptions,
}

/// A MODE E receive. The reassembly state is shared so a caller can read it while the
/// transfer runs (for 111 range markers).
#[derive(Debug, Clone)]
pub struct Recv {
    /// Reassembly and completion tracking (block limit, ESTO/ERET offset adjustment, ranges
    /// already held).
    pub rx: Arc<Mutex<ModeEReceiver>>,
    /// Cancellation, progress (payload bytes written), forced I/O path.
    pub opts: TransferOptions,
    /// Most data connections accepted for this transfer.
    pub max_streams: usize,
    /// Fail the transfer when a connection that ended with EOD already holds more bytes (a
    /// server: its client must not send the next transfer's data before the 125/150). A
    /// client leaves it off: a server may start the next pipelined transfer at once.
    pub strict_eod: bool,
}

/// Where further data connections of a receive come from.
#[derive(Debug)]
pub struct Incoming<'a> {
    /// A listening socket (any blocking mode; it is polled).
    pub listener: &'a TcpListener,
    /// Only connections from hosts this policy allows are accepted (others are reset and
    /// counted in `refused`); `None` accepts any.
    pub allow: Option<&'a DataPolicy>,
    /// Counts the connections turned away (also when the transfer then fails).
    pub refused: Option<&'a AtomicU64>,
    /// Give up when no connection at all has arrived after this long.
    pub timeout: Duration,
}

/// What a finished MODE E transfer leaves.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Payload bytes moved by this transfer.
    pub bytes: u64,
    /// Connections that ended with EOD and stayed open: reusable by the next transfer.
    pub channels: Vec<TcpStream>,
}

/// Turns away a data connection from a host that may not use it: closed with a reset
/// (SO_LINGER 0), so the peer's sender fails at once instead of writing into a connection
/// nobody reads.
pub(crate) fn refuse(sock: &impl AsFd) {
    use nix::sys::socket::{setsockopt, sockopt::Linger};
    let reset = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    if let Err(e) = setsockopt(sock, Linger, &reset) {
        tracing::debug!(error = %e, "refused data connection closed without a reset");
    }
}

fn io_err(op: &str, e: impl std::fmt::Display) -> TransferError {
    TransferError::ConnectionClosed(format!("{op}: {e}"))
}

/// A gridos-io failure as the transfer error the FTP layer replies with.
pub(crate) fn map_io(e: gridos_io::Error) -> TransferError {
    use gridos_io::Error as E;
    match e {
        E::Cancelled { .. } => TransferError::Aborted,
        E::PeerClosed { .. } | E::PeerReset { .. } => {
            TransferError::ConnectionClosed(e.to_string())
        }
        E::NoSpace { .. } => TransferError::Fs(FsError::new(FsErrorKind::StorageFull)),
        E::OffsetPastEof { .. } => TransferError::Fs(FsError {
            kind: FsErrorKind::Unsupported,
            message: "Restart offset beyond end of file.".into(),
        }),
        e => TransferError::Local(e.to_string()),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Shared by the threads of one transfer: the first failure wins and stops the others.
///
/// Two socket pairs make the waits event-driven, so back-to-back small transfers do not pay a
/// polling interval each: a stream thread writes to `wake` when it ends (the coordinator
/// polls it), and the coordinator writes to `halt` when the transfer is over or failed (every
/// stream thread waiting between blocks polls it next to its socket; it stays readable).
struct Flags {
    stop: CancelToken,
    failure: Mutex<Option<TransferError>>,
    wake: Option<(UnixStream, UnixStream)>,
    halt: Option<(UnixStream, UnixStream)>,
    /// Stream threads that have finished their work (counted before `notify`, so the
    /// coordinator never waits for a wake-up that already happened).
    finished: AtomicUsize,
}

impl Flags {
    fn new() -> Result<Flags, TransferError> {
        let pair = || -> std::io::Result<(UnixStream, UnixStream)> {
            let (a, b) = UnixStream::pair()?;
            a.set_nonblocking(true)?;
            b.set_nonblocking(true)?;
            Ok((a, b))
        };
        let err = |e: std::io::Error| TransferError::Local(format!("socketpair: {e}"));
        Ok(Flags {
            stop: CancelToken::new(),
            failure: Mutex::new(None),
            wake: Some(pair().map_err(err)?),
            halt: Some(pair().map_err(err)?),
            finished: AtomicUsize::new(0),
        })
    }

    /// For a stream handled on the caller's thread: no coordinator, so no wake-up pairs;
    /// `stop` is the caller's token.
    fn inline(stop: CancelToken) -> Flags {
        Flags {
            stop,
            failure: Mutex::new(None),
            wake: None,
            halt: None,
            finished: AtomicUsize::new(0),
        }
    }

    fn fail(&self, e: TransferError) {
        let mut f = lock(&self.failure);
        if f.is_none() {
            *f = Some(e);
        }
        drop(f);
        self.stop.cancel();
        self.end();
    }

    /// Tells stream threads waiting between blocks to return.
    fn end(&self) {
        if let Some((tx, _)) = &self.halt {
            let _ = (&*tx).write(&[1]);
        }
    }

    fn ended(&self) -> bool {
        let Some((_, rx)) = &self.halt else {
            return false;
        };
        let mut fds = [PollFd::new(rx.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }

    /// A stream thread finished: wake the coordinator.
    fn notify(&self) {
        self.finished.fetch_add(1, Relaxed);
        if let Some((tx, _)) = &self.wake {
            let _ = (&*tx).write(&[1]);
        }
    }

    /// The coordinator's wait: until a stream thread finishes, `extra` is readable, or
    /// `timeout` passes. Returns whether `extra` is readable.
    fn wait(&self, extra: Option<BorrowedFd<'_>>, timeout: Duration) -> bool {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let Some((_, wake)) = &self.wake else {
            std::thread::sleep(timeout);
            return false;
        };
        let mut fds = vec![PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
        if let Some(fd) = extra {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        let _ = poll(&mut fds, PollTimeout::from(ms));
        let extra_ready = fds
            .get(1)
            .and_then(|f| f.revents())
            .is_some_and(|r| !r.is_empty());
        let mut sink = [0u8; 64];
        while matches!((&*wake).read(&mut sink), Ok(n) if n > 0) {}
        extra_ready
    }

    fn take(&self) -> Option<TransferError> {
        lock(&self.failure).take()
    }
}

/// Per-stream options: the transfer's own stop token, no per-call progress (blocks are
/// counted here) and no per-call monitor (the stream's tuner runs across blocks).
fn stream_opts(opts: &TransferOptions, stop: &CancelToken) -> TransferOptions {
    TransferOptions {
        path: opts.path,
        cancel: Some(stop.clone()),
        auto_tune: Some(false),
        max_buffer: opts.max_buffer,
        progress: None,
    }
}

fn monitor_interval() -> Duration {
    Duration::from_millis(gridos_io::config().monitor_interval_ms.max(10))
}

/// The buffer monitors of a transfer's streams (each on a duplicate of its descriptor),
/// when auto-tuning is on. They start only once the transfer has run for a monitor interval,
/// so small transfers pay nothing for them.
struct Tuners {
    role: Role,
    max_buffer: Option<usize>,
    on: bool,
    socks: Vec<TcpStream>,
    tuners: Vec<SocketTuner>,
    last: Instant,
}

impl Tuners {
    fn new(opts: &TransferOptions, role: Role) -> Tuners {
        Tuners {
            role,
            max_buffer: opts.max_buffer,
            on: opts.auto_tune.unwrap_or(gridos_io::config().auto_tune),
            socks: Vec::new(),
            tuners: Vec::new(),
            last: Instant::now(),
        }
    }

    fn add(&mut self, sock: &TcpStream) {
        if self.on {
            if let Ok(dup) = sock.try_clone() {
                self.socks.push(dup);
            }
        }
    }

    /// Samples every stream's TCP_INFO for its monitor, at most once per interval.
    fn sample(&mut self) {
        if self.socks.is_empty() || self.last.elapsed() < monitor_interval() {
            return;
        }
        self.last = Instant::now();
        while self.tuners.len() < self.socks.len() {
            self.tuners
                .push(SocketTuner::new(self.role, self.max_buffer));
        }
        for (sock, tuner) in self.socks.iter().zip(&mut self.tuners) {
            let _ = tuner.sample(sock.as_fd());
        }
    }
}

/// Adds `n` payload bytes to a transfer's counter and publishes the total as its progress.
fn count(counter: &AtomicU64, n: u64, opts: &TransferOptions) {
    let total = counter.fetch_add(n, Relaxed) + n;
    if let Some(p) = &opts.progress {
        p.store(total, Relaxed);
    }
}

fn cancelled(opts: &TransferOptions) -> bool {
    opts.cancel.as_ref().is_some_and(CancelToken::is_cancelled)
}

/// Sends `job.ranges` of `file` over `socks` (at least one, all connected). Returns once
/// every stream has sent its final EOD (stream 0's also carries EOF with the stream count).
pub fn send(file: &File, job: &Send, socks: Vec<TcpStream>) -> Result<Outcome, TransferError> {
    if socks.is_empty() {
        return Err(TransferError::CannotOpenData("no data connection".into()));
    }
    let planner = ModeESender::new(&job.ranges, socks.len(), job.block_size.max(1))
        .map_err(|e| TransferError::Local(e.to_string()))?;
    let planner = Mutex::new(planner);
    if socks.len() == 1 && job.ranges.total() <= SMALL {
        // One stream and a small file: no coordinator thread, no monitor.
        let sent = AtomicU64::new(0);
        let opts = TransferOptions {
            auto_tune: Some(false),
            progress: None,
            ..job.opts.clone()
        };
        send_stream(file, job, 0, &socks[0], &planner, &sent, &opts)?;
        return Ok(Outcome {
            bytes: sent.load(Relaxed),
            channels: if job.close { Vec::new() } else { socks },
        });
    }
    let flags = Flags::new()?;
    let sent = AtomicU64::new(0);
    let opts = stream_opts(&job.opts, &flags.stop);
    let mut tuners = Tuners::new(&job.opts, Role::Sender);
    for sock in &socks {
        tuners.add(sock);
    }
    let channels = std::thread::scope(|s| {
        let workers: Vec<_> = socks
            .into_iter()
            .enumerate()
            .map(|(i, sock)| {
                let (planner, flags, sent, opts) = (&planner, &flags, &sent, &opts);
                s.spawn(move || {
                    let out = match send_stream(file, job, i, &sock, planner, sent, opts) {
                        Ok(()) => Some(sock),
                        Err(e) => {
                            flags.fail(e);
                            None
                        }
                    };
                    flags.notify();
                    out
                })
            })
            .collect();
        let n = workers.len();
        while flags.finished.load(Relaxed) < n {
            if cancelled(&job.opts) {
                flags.fail(TransferError::Aborted);
            }
            tuners.sample();
            flags.wait(None, Duration::from_millis(u64::from(WAKE_MS)));
        }
        workers
            .into_iter()
            .filter_map(|w| w.join().ok().flatten())
            .collect::<Vec<_>>()
    });
    if let Some(e) = flags.take() {
        return Err(e);
    }
    Ok(Outcome {
        bytes: sent.load(Relaxed),
        channels: if job.close { Vec::new() } else { channels },
    })
}

/// Sends `bytes` (a directory listing, say) as one block at offset 0 on the first
/// connection, then the final EOD blocks on all of them.
pub fn send_bytes(
    bytes: &[u8],
    socks: Vec<TcpStream>,
    close: bool,
    opts: &TransferOptions,
) -> Result<Outcome, TransferError> {
    if socks.is_empty() {
        return Err(TransferError::CannotOpenData("no data connection".into()));
    }
    if cancelled(opts) {
        return Err(TransferError::Aborted);
    }
    let mut ranges = RangeSet::new();
    ranges.insert(0, bytes.len() as u64);
    let planner = ModeESender::new(&ranges, socks.len(), u64::MAX)
        .map_err(|e| TransferError::Local(e.to_string()))?;
    let write = |mut s: &TcpStream, b: &[u8]| s.write_all(b).map_err(|e| io_err("send listing", e));
    if !bytes.is_empty() {
        write(
            &socks[0],
            &BlockHeader::data(0, bytes.len() as u64).encode(),
        )?;
        write(&socks[0], bytes)?;
    }
    for (i, s) in socks.iter().enumerate() {
        write(s, &planner.final_block(i, close).encode())?;
    }
    if let Some(p) = &opts.progress {
        p.store(bytes.len() as u64, Relaxed);
    }
    Ok(Outcome {
        bytes: bytes.len() as u64,
        channels: if close { Vec::new() } else { socks },
    })
}

fn send_stream(
    file: &File,
    job: &Send,
    i: usize,
    sock: &TcpStream,
    planner: &Mutex<ModeESender>,
    sent: &AtomicU64,
    opts: &TransferOptions,
) -> Result<(), TransferError> {
    loop {
        let next = lock(planner).next_block();
        let Some(h) = next else { break };
        let wire = BlockHeader {
            offset: h.offset - job.shift.min(h.offset),
            ..h
        };
        if h.count <= SMALL {
            // A small block leaves in one segment: header and payload in one write.
            let mut buf = Vec::with_capacity(HEADER_LEN + h.count as usize);
            buf.extend_from_slice(&wire.encode());
            buf.resize(HEADER_LEN + h.count as usize, 0);
            read_exact_at(file, &mut buf[HEADER_LEN..], h.offset)?;
            let mut w = sock;
            w.write_all(&buf).map_err(|e| io_err("send block", e))?;
        } else {
            gridos_io::send_file_prefixed(&wire.encode(), file, h.offset, h.count, sock, opts)
                .map_err(map_io)?;
        }
        count(sent, h.count, &job.opts);
    }
    let last = lock(planner).final_block(i, job.close);
    let mut w = sock;
    w.write_all(&last.encode())
        .map_err(|e| io_err("send EOD", e))?;
    Ok(())
}

/// Waits until `sock` is readable. False when the transfer failed, or — with `between` (no
/// block in progress) — when it is over.
fn wait_readable(sock: &TcpStream, flags: &Flags, between: bool) -> Result<bool, TransferError> {
    loop {
        if flags.stop.is_cancelled() || (between && flags.ended()) {
            return Ok(false);
        }
        let mut fds = vec![PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
        if let Some((_, halt)) = &flags.halt {
            fds.push(PollFd::new(halt.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::from(WAKE_MS)) {
            Ok(0) => {}
            Ok(_) => {
                if fds[0].revents().is_some_and(|r| !r.is_empty()) {
                    return Ok(true);
                }
                if !between {
                    // Ended while inside a block only happens on failure (the stop token
                    // says so on the next turn); avoid spinning meanwhile.
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(io_err("poll", e)),
        }
    }
}

/// Blocks at most this large move through a user-space buffer (one syscall each way).
const SMALL: u64 = 64 * 1024;

fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> Result<(), TransferError> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            TransferError::Local("file shrank while sending".into())
        }
        _ => TransferError::Fs(e.into()),
    })
}

/// A read that never blocks (the socket itself stays blocking for the splice paths), so a
/// stalled peer cannot hold the thread past cancellation: waits go through `wait_readable`.
fn recv_nb(sock: &TcpStream, buf: &mut [u8]) -> nix::Result<usize> {
    use std::os::fd::AsRawFd;
    nix::sys::socket::recv(
        sock.as_raw_fd(),
        buf,
        nix::sys::socket::MsgFlags::MSG_DONTWAIT,
    )
}

fn read_exact(sock: &TcpStream, buf: &mut [u8], flags: &Flags) -> Result<(), TransferError> {
    let mut got = 0;
    while got < buf.len() {
        match recv_nb(sock, &mut buf[got..]) {
            Ok(0) => return Err(TransferError::ConnectionClosed("closed in a block".into())),
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => {
                if !wait_readable(sock, flags, false)? {
                    return Err(TransferError::Aborted);
                }
            }
            Err(e) => return Err(io_err("read block", e)),
        }
    }
    Ok(())
}

/// What waiting for the next block header gave.
enum Next {
    Header([u8; HEADER_LEN]),
    /// The peer closed the connection before any header byte.
    Eof,
    /// The transfer ended (or failed) while this connection was idle.
    Idle,
}

/// Reads one header. `Ok(None)`: the connection ended cleanly before any header byte.
fn read_header(sock: &TcpStream, flags: &Flags) -> Result<Next, TransferError> {
    let mut buf = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match recv_nb(sock, &mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(Next::Eof),
            Ok(0) => {
                return Err(TransferError::BadData(
                    "data connection closed inside a block header".into(),
                ));
            }
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => {
                // Between blocks the transfer may end without this connection.
                if !wait_readable(sock, flags, got == 0)? {
                    if got == 0 && !flags.stop.is_cancelled() {
                        return Ok(Next::Idle);
                    }
                    return Err(TransferError::Aborted);
                }
            }
            Err(e) => return Err(io_err("read block header", e)),
        }
    }
    Ok(Next::Header(buf))
}

fn discard(mut sock: &TcpStream, mut len: u64, flags: &Flags) -> Result<(), TransferError> {
    let mut buf = [0u8; 4096];
    while len > 0 {
        if !wait_readable(sock, flags, false)? {
            return Err(TransferError::Aborted);
        }
        let want = buf.len().min(usize::try_from(len).unwrap_or(usize::MAX));
        match sock.read(&mut buf[..want]) {
            Ok(0) => return Err(TransferError::ConnectionClosed("closed in a block".into())),
            Ok(n) => len -= n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(io_err("read", e)),
        }
    }
    Ok(())
}

/// A connection that ended its part with EOD must be quiet until the next transfer starts:
/// bytes already waiting on it were sent after EOD — a protocol violation that, left alone,
/// would be taken for the next transfer's data.
fn check_quiet(kept: &[TcpStream]) -> Result<(), TransferError> {
    use std::os::fd::AsRawFd;
    let mut b = [0u8; 1];
    for s in kept {
        let flags = nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_PEEK;
        if let Ok(n) = nix::sys::socket::recv(s.as_raw_fd(), &mut b, flags) {
            if n > 0 {
                return Err(TransferError::BadData(
                    "data arrived after the end of data (EOD) of its connection".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Result of one receiving stream: the socket if it may be reused.
type StreamEnd = Result<Option<TcpStream>, TransferError>;

fn recv_stream(
    file: &File,
    job: &Recv,
    id: StreamId,
    sock: TcpStream,
    flags: &Flags,
    written: &AtomicU64,
) -> StreamEnd {
    let opts = stream_opts(&job.opts, &flags.stop);
    let mut got_any = false;
    loop {
        // Between blocks. A cached channel the sender leaves unused this time stays open
        // for the next transfer.
        let raw = match read_header(&sock, flags)? {
            Next::Header(raw) => raw,
            Next::Idle => return Ok(Some(sock)),
            Next::Eof => {
                // A connection closed before its first block was never part of this
                // transfer (an unused cached channel the sender dropped); one that carried
                // blocks must have ended with EOD.
                if got_any {
                    lock(&job.rx).handle_close(id)?;
                }
                return Ok(None);
            }
        };
        got_any = true;
        let h = BlockHeader::decode(&raw)?;
        let placement = lock(&job.rx).handle_header(id, &h)?;
        match placement {
            Placement::Write { offset, len } if len <= SMALL => {
                // Small payloads: one read and one pwrite beat setting up a splice.
                let mut buf = vec![0u8; len as usize];
                read_exact(&sock, &mut buf, flags)?;
                gridos_io::file_write(file, offset, &buf).map_err(map_io)?;
                lock(&job.rx).handle_written(id, len)?;
                count(written, len, &job.opts);
            }
            Placement::Write { offset, len } => {
                let r = gridos_io::recv_file(&sock, file, offset, Some(len), &opts);
                let n = match &r {
                    Ok(rep) => rep.bytes,
                    Err(e) => e.bytes_moved().unwrap_or(0),
                };
                lock(&job.rx).handle_written(id, n)?;
                count(written, n, &job.opts);
                r.map_err(map_io)?;
            }
            Placement::Discard { len } => {
                discard(&sock, len, flags)?;
                lock(&job.rx).handle_written(id, len)?;
            }
            Placement::Nothing => {}
        }
        if h.is_eod() {
            if h.is_close() {
                let _ = sock.shutdown(std::net::Shutdown::Both);
                return Ok(None);
            }
            return Ok(Some(sock));
        }
    }
}

/// Receives into `file` from the connections in `socks` (cached or already accepted) and
/// from those that arrive on `incoming`, until the EOF block's count of EODs has arrived.
///
/// Any error (a bad block, an offset past the limit, a connection that closed before its
/// EOD, a full disk, cancellation) stops every stream; the data written so far is in
/// `job.rx`'s ranges, never reported complete.
pub fn recv(
    file: &File,
    job: &Recv,
    socks: Vec<TcpStream>,
    incoming: Option<Incoming<'_>>,
) -> Result<Outcome, TransferError> {
    if socks.is_empty() && incoming.is_none() {
        return Err(TransferError::CannotOpenData("no data connection".into()));
    }
    if let Some(inc) = &incoming {
        inc.listener
            .set_nonblocking(true)
            .map_err(|e| TransferError::CannotOpenData(e.to_string()))?;
    }
    let written = AtomicU64::new(0);
    if socks.len() == 1 && incoming.is_none() {
        // One reused stream (pipelined small files): receive on this thread; the caller's
        // token is the stop token.
        let flags = Flags::inline(job.opts.cancel.clone().unwrap_or_default());
        let mut socks = socks;
        let sock = socks.remove(0);
        let id = lock(&job.rx).add_stream();
        let kept = recv_stream(file, job, id, sock, &flags, &written)?;
        if job.strict_eod {
            check_quiet(kept.as_slice())?;
        }
        return match lock(&job.rx).status() {
            ReceiveStatus::Complete => Ok(Outcome {
                bytes: written.load(Relaxed),
                channels: kept.into_iter().collect(),
            }),
            _ => Err(TransferError::ConnectionClosed(
                "the data connection ended before the transfer was complete".into(),
            )),
        };
    }
    let flags = Flags::new()?;
    let mut refused = 0;
    let had_sockets = !socks.is_empty();
    let channels = std::thread::scope(|s| {
        let mut workers = Vec::new();
        let mut tuners = Tuners::new(&job.opts, Role::Receiver);
        let spawn = |sock: TcpStream, workers: &mut Vec<_>, tuners: &mut Tuners| {
            tuners.add(&sock);
            let id = lock(&job.rx).add_stream();
            let (flags, written) = (&flags, &written);
            workers.push(s.spawn(move || {
                let out = match recv_stream(file, job, id, sock, flags, written) {
                    Ok(sock) => sock,
                    Err(e) => {
                        flags.fail(e);
                        None
                    }
                };
                flags.notify();
                out
            }));
        };
        for sock in socks {
            spawn(sock, &mut workers, &mut tuners);
        }
        let started = Instant::now();
        let mut listener_ready = false;
        loop {
            if cancelled(&job.opts) {
                // Aborted after turning hosts away and with no connection at all: the data
                // connection could not be made (what a third-party client needs to know).
                flags.fail(if workers.is_empty() && !had_sockets && refused > 0 {
                    TransferError::CannotOpenData(format!(
                        "refused {refused} data connection(s) from hosts not allowed to connect"
                    ))
                } else {
                    TransferError::Aborted
                });
            }
            if flags.stop.is_cancelled() {
                break;
            }
            match lock(&job.rx).status() {
                ReceiveStatus::Complete => break,
                ReceiveStatus::Incomplete { .. } => {
                    flags.fail(TransferError::ConnectionClosed(
                        "a data connection closed before its EOD".into(),
                    ));
                    break;
                }
                ReceiveStatus::InProgress => {}
            }
            let accepting = incoming
                .as_ref()
                .filter(|_| workers.len() < job.max_streams.max(1));
            // Every stream ended but the transfer is not complete: nothing more can arrive
            // unless another connection may still come.
            // (Re-read the status: the last stream may have finished the transfer since.)
            if accepting.is_none()
                && flags.finished.load(Relaxed) >= workers.len()
                && !matches!(lock(&job.rx).status(), ReceiveStatus::Complete)
            {
                flags.fail(TransferError::ConnectionClosed(
                    "the data connections ended before the transfer was complete".into(),
                ));
                break;
            }
            if let Some(inc) = accepting {
                if listener_ready {
                    match inc.listener.accept() {
                        Ok((sock, from)) => {
                            if inc.allow.is_some_and(|p| !p.allows_peer(from.ip())) {
                                tracing::warn!(%from, "MODE E: refused a data connection from a foreign address");
                                refuse(&sock);
                                refused += 1;
                                if let Some(n) = inc.refused {
                                    n.fetch_add(1, Relaxed);
                                }
                            } else if sock.set_nonblocking(false).is_ok() {
                                let _ = sock.set_nodelay(true);
                                spawn(sock, &mut workers, &mut tuners);
                            }
                            continue;
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                            ) => {}
                        Err(e) => {
                            flags.fail(TransferError::CannotOpenData(e.to_string()));
                            break;
                        }
                    }
                }
                if workers.is_empty() && !had_sockets && started.elapsed() >= inc.timeout {
                    flags.fail(TransferError::CannotOpenData(
                        "timed out waiting for the data connection".into(),
                    ));
                    break;
                }
            }
            tuners.sample();
            let extra = accepting.map(|inc| inc.listener.as_fd());
            listener_ready = flags.wait(extra, Duration::from_millis(u64::from(WAKE_MS)));
        }
        flags.end();
        workers
            .into_iter()
            .filter_map(|w| w.join().ok().flatten())
            .collect::<Vec<_>>()
    });
    if let Some(e) = flags.take() {
        return Err(e);
    }
    if job.strict_eod {
        check_quiet(&channels)?;
    }
    Ok(Outcome {
        bytes: written.load(Relaxed),
        channels,
    })
}
