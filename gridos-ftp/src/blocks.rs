//! MODE E on real sockets: sending a file's byte ranges as blocks over N data connections,
//! and receiving blocks from any number of connections into a file at their offsets.
//!
//! The wire format and the bookkeeping (which offsets, when the transfer is complete) live in
//! [`proto::mode_e`](crate::proto::mode_e); this module only moves bytes, so the server and
//! the client share it. Every data connection gets its own thread for the duration of a
//! transfer. A connection that ended its part with EOD but was not closed is handed back in
//! [`Outcome::channels`], so the next transfer can reuse it (a TLS one with its session).
//!
//! Clear connections ([`DataStream::Plain`]) move payloads with gridos-io's zero-copy
//! primitives: the 17-byte header goes out with `MSG_MORE` just before its payload is
//! spliced; a received payload is spliced from the socket into the file at its offset.
//!
//! TLS connections (`PROT P`) go through user space, since this kernel has no kernel TLS.
//! The sender preads blocks into a large buffer behind their headers and hands rustls the
//! whole run at once, so records are full (16 KiB) and one `writev` carries dozens of them;
//! the receiver reads ciphertext in large chunks while a block's payload goes on, decrypts
//! into a large buffer and pwrites it at the block's offset. Sockets of TLS streams get
//! short timeouts so blocked I/O notices cancellation.
//!
//! Buffer tuning: each stream runs a [`gridos_io::SocketTuner`] while the transfer lasts, so a
//! stream that is send-buffer or receive-window limited gets larger buffers, as single-stream
//! transfers do inside gridos-io. A sender given a [`Grow`] ([`send_growing`]) also opens
//! more streams while it runs, when every stream is limited where a larger buffer cannot
//! help (the receiver accepts connections until the EOF's count of EODs has arrived).

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gridos_io::tune::{Role, TuneAction};
use gridos_io::{CancelToken, SocketTuner, TransferOptions};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::proto::mode_e::{
    BlockHeader, HEADER_LEN, ModeEReceiver, ModeESender, Placement, ReceiveStatus, StreamId,
};
use crate::proto::{DataPolicy, FsError, FsErrorKind, RangeSet, TransferError};
use crate::tls::DataStream;

/// Default MODE E block size: large enough that a header per block costs nothing, small
/// enough that fast streams take more blocks than slow ones.
pub const DEFAULT_BLOCK_SIZE: u64 = 1 << 20;

/// How often blocked loops look at the cancel token and completion.
const WAKE_MS: u8 = 50;

/// Plaintext a TLS sender hands rustls at once (eight full records per `writev`), and what
/// a TLS receiver decrypts before it writes to the file. Measured on loopback: runs of 32 to
/// 128 KiB cost the sender a third less CPU than 256 KiB or 1 MiB (the ciphertext is still
/// in cache when the kernel copies it).
const TLS_RUN: usize = 128 << 10;

/// Encrypted bytes rustls may hold for the socket (its default, 64 KiB, would cut a run in
/// two writes).
const TLS_BUFFER: usize = TLS_RUN + (64 << 10);

/// Ciphertext a TLS receiver reads from the socket at once while a block's payload goes on
/// (rustls alone reads at most a record per call, often 4 KiB).
const TLS_BULK: usize = 128 << 10;

/// Bulk reads stop this far before the end of a block: more than the plaintext of two records
/// (2 × 16 KiB: the one rustls holds in part and the one that ends the block), so a bulk read
/// never takes bytes of a record that carries the next block. Those must stay in the socket or
/// in rustls, which belong to the connection, not to this transfer.
const TLS_MARGIN: usize = 64 << 10;

/// Socket timeouts of TLS streams: how long a blocked write waits before it looks at the
/// cancel token again.
const TLS_WAKE: Duration = Duration::from_millis(WAKE_MS as u64);

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

/// How a MODE E sender opens more data connections while it runs ([`send_growing`]).
pub struct Grow<'a> {
    /// Opens one more connection to the receiver, ready for blocks (TLS handshake done).
    pub connect: &'a (dyn Fn() -> Result<DataStream, TransferError> + Sync),
    /// Streams the transfer may reach in all.
    pub max_streams: usize,
}

/// A stream joins only while this many blocks remain for it to take: fewer would not pay
/// for its connection and slow start.
const GROW_MIN_BLOCKS: u64 = 8;

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
    /// Called before a payload lands past what the file holds from offset 0 without a hole
    /// (a block out of order): from then on the file has holes, which a server records
    /// before it makes them. An error stops the transfer before that payload is written.
    pub before_gap: Option<GapHook>,
}

/// See [`Recv::before_gap`]. Called from the streams' threads, possibly at once: it must
/// be idempotent, and return only once what it does is done.
#[derive(Clone)]
pub struct GapHook(pub Arc<dyn Fn() -> io::Result<()> + std::marker::Send + Sync>);

impl std::fmt::Debug for GapHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GapHook")
    }
}

/// Takes the next header of stream `id`: where its payload goes. A payload past the bytes
/// held from 0 without a hole first goes through [`Recv::before_gap`].
fn place(job: &Recv, id: StreamId, h: &BlockHeader) -> Result<Placement, TransferError> {
    let (placement, gap) = {
        let mut rx = lock(&job.rx);
        let p = rx.handle_header(id, h)?;
        let gap = match p {
            Placement::Write { offset, .. } if job.before_gap.is_some() => {
                let held = rx
                    .received()
                    .ranges()
                    .first()
                    .filter(|r| r.0 == 0)
                    .map_or(0, |r| r.1);
                offset > held
            }
            _ => false,
        };
        (p, gap)
    };
    if let (true, Some(hook)) = (gap, &job.before_gap) {
        (hook.0)().map_err(|e| TransferError::Fs(e.into()))?;
    }
    Ok(placement)
}

/// Makes an accepted data connection what the session needs: TLS under `PROT P` (with the
/// handshake and any session-resumption check), clear otherwise. It runs on the new
/// connection's own thread, never on an async runtime.
pub type Protect<'a> = dyn Fn(TcpStream) -> Result<DataStream, TransferError> + Sync + 'a;

/// Where further data connections of a receive come from.
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
    /// Protection for every accepted connection (`None`: clear). A connection whose
    /// handshake fails is turned away (and counted in `refused`); the transfer goes on with
    /// the others.
    pub protect: Option<&'a Protect<'a>>,
}

impl std::fmt::Debug for Incoming<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("listener", &self.listener)
            .field("allow", &self.allow)
            .field("timeout", &self.timeout)
            .field("tls", &self.protect.is_some())
            .finish_non_exhaustive()
    }
}

/// What a finished MODE E transfer leaves.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Payload bytes moved by this transfer.
    pub bytes: u64,
    /// Connections that ended with EOD and stayed open: reusable by the next transfer.
    pub channels: Vec<DataStream>,
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

/// A transfer error in words (for logs and messages).
fn describe(e: &TransferError) -> String {
    match e {
        TransferError::Fs(f) => format!("{:?}: {}", f.kind, f.message),
        TransferError::CannotOpenData(m)
        | TransferError::ConnectionClosed(m)
        | TransferError::BadData(m)
        | TransferError::Local(m) => m.clone(),
        TransferError::Aborted => "aborted".into(),
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
        on_decision: None,
        write_behind: opts.write_behind.clone(),
    }
}

/// Tells the file's write-behind (if any) of bytes written here rather than by
/// [`gridos_io::recv_file`], which does it itself.
fn landed(opts: &TransferOptions, offset: u64, len: u64) {
    if let Some(wb) = &opts.write_behind {
        wb.landed(offset, len);
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
    on_decision: Option<gridos_io::DecisionSink>,
    /// The inputs of the latest decision, for a [`TuneAction::StreamAdded`] report.
    latest: Option<gridos_io::tune::TuneDecision>,
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
            on_decision: opts.on_decision.clone(),
            latest: None,
        }
    }

    /// Whether every stream's monitor, sampled at least twice, finds it limited where a
    /// larger buffer cannot help ([`SocketTuner::wants_streams`]).
    fn all_want_streams(&self) -> bool {
        !self.tuners.is_empty()
            && self.tuners.len() == self.socks.len()
            && self.tuners.iter().all(SocketTuner::wants_streams)
    }

    /// Reports a stream opened by the sender, with the inputs of the latest decision.
    fn tell_added(&self, streams: usize) {
        let Some(sink) = &self.on_decision else {
            return;
        };
        let mut d = self
            .latest
            .clone()
            .unwrap_or(gridos_io::tune::TuneDecision {
                action: TuneAction::StreamAdded { streams: 0 },
                rtt_us: 0,
                delivery_rate: 0,
                bdp: 0,
                sndbuf_limited_permille: 0,
                rwnd_limited_permille: 0,
                current: 0,
                reason: String::new(),
            });
        let streams = u32::try_from(streams).unwrap_or(u32::MAX);
        d.action = TuneAction::StreamAdded { streams };
        d.reason = format!(
            "every stream limited by its buffer at the cap or by the receiver's window; \
             opened stream {streams}"
        );
        sink.tell(&d);
    }

    fn add(&mut self, sock: &TcpStream) {
        if self.on {
            if let Ok(dup) = sock.try_clone() {
                self.socks.push(dup);
            }
        }
    }

    /// Takes the streams whose TLS handshakes succeeded since the last call (the
    /// coordinator never holds a descriptor of a connection that is still to be accepted or
    /// refused: its duplicate would keep a refused connection open).
    fn adopt(&mut self, ready: &Mutex<Vec<TcpStream>>) {
        let mut r = lock(ready);
        if self.on {
            self.socks.append(&mut r);
        } else {
            r.clear();
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
            if let Some(d) = tuner.sample(sock.as_fd()) {
                if let Some(sink) = &self.on_decision {
                    sink.tell(&d);
                }
                self.latest = Some(d);
            }
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
pub fn send(file: &File, job: &Send, socks: Vec<DataStream>) -> Result<Outcome, TransferError> {
    send_growing(file, job, socks, None)
}

/// [`send`], opening more streams with `grow` while the transfer runs when every stream's
/// monitor finds it limited where a larger buffer cannot help (needs the monitor:
/// `auto_tune`). A stream joins only while at least [`GROW_MIN_BLOCKS`] blocks remain, so
/// stream 0's EOF counts it; a connection that cannot be opened after it joined fails the
/// transfer (the receiver would wait for its EOD).
pub fn send_growing(
    file: &File,
    job: &Send,
    socks: Vec<DataStream>,
    grow: Option<&Grow<'_>>,
) -> Result<Outcome, TransferError> {
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
        let mut socks = socks;
        send_stream(file, job, 0, &mut socks[0], &planner, &sent, &opts)?;
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
        tuners.add(sock.tcp());
    }
    // Streams opened while the transfer runs, for their monitors.
    let opened = Mutex::new(Vec::new());
    let channels = std::thread::scope(|s| {
        let (planner, flags, sent, opts, opened) = (&planner, &flags, &sent, &opts, &opened);
        let run = move |i: usize, mut sock: DataStream| {
            let out = match send_stream(file, job, i, &mut sock, planner, sent, opts) {
                Ok(()) => Some(sock),
                Err(e) => {
                    flags.fail(e);
                    None
                }
            };
            flags.notify();
            out
        };
        let mut workers: Vec<_> = socks
            .into_iter()
            .enumerate()
            .map(|(i, sock)| s.spawn(move || run(i, sock)))
            .collect();
        while flags.finished.load(Relaxed) < workers.len() {
            if cancelled(&job.opts) {
                flags.fail(TransferError::Aborted);
            }
            tuners.adopt(opened);
            tuners.sample();
            let more = grow.filter(|g| {
                workers.len() < g.max_streams && !flags.ended() && tuners.all_want_streams()
            });
            if let Some(g) = more {
                if let Some(i) = lock(planner).add_stream(GROW_MIN_BLOCKS) {
                    tuners.tell_added(i + 1);
                    workers.push(s.spawn(move || match (g.connect)() {
                        Ok(sock) => {
                            if let Ok(dup) = sock.tcp().try_clone() {
                                lock(opened).push(dup);
                            }
                            run(i, sock)
                        }
                        Err(e) => {
                            // It joined the plan: the receiver waits for its EOD.
                            flags.fail(e);
                            flags.notify();
                            None
                        }
                    }));
                }
            }
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
    mut socks: Vec<DataStream>,
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
    let cancel = opts.cancel.as_ref();
    for (i, ds) in socks.iter_mut().enumerate() {
        let data = (i == 0 && !bytes.is_empty()).then_some(bytes);
        let last = planner.final_block(i, close).encode();
        match tls_parts(ds) {
            None => {
                if let Some(b) = data {
                    write(ds.tcp(), &BlockHeader::data(0, b.len() as u64).encode())?;
                    write(ds.tcp(), b)?;
                }
                write(ds.tcp(), &last)?;
            }
            Some((tls, sock)) => {
                // Header, listing and EOD in one run: full records, one flush.
                tls_setup(tls, sock);
                let mut run = Vec::with_capacity(2 * HEADER_LEN + data.map_or(0, <[u8]>::len));
                if let Some(b) = data {
                    run.extend_from_slice(&BlockHeader::data(0, b.len() as u64).encode());
                    run.extend_from_slice(b);
                }
                run.extend_from_slice(&last);
                tls_send(tls, sock, &run, cancel)?;
                tls_absorb(tls, sock);
                if close {
                    tls_finish(ds, cancel)?;
                }
            }
        }
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
    ds: &mut DataStream,
    planner: &Mutex<ModeESender>,
    sent: &AtomicU64,
    opts: &TransferOptions,
) -> Result<(), TransferError> {
    if ds.is_tls() {
        send_stream_tls(file, job, i, ds, planner, sent, opts)?;
        if job.close {
            tls_finish(ds, opts.cancel.as_ref())?;
        }
        return Ok(());
    }
    let sock = ds.tcp();
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

/// A TLS sender's run of plaintext: block headers and payloads back to back, handed to
/// rustls when the buffer is full (and at the end), so records stay full across blocks.
struct Run {
    buf: Vec<u8>,
    used: usize,
    /// Payload bytes in `buf` (counted as sent once the run is out).
    payload: u64,
}

impl Run {
    fn room(&self) -> usize {
        self.buf.len() - self.used
    }

    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.used..self.used + bytes.len()].copy_from_slice(bytes);
        self.used += bytes.len();
    }
}

/// Encrypts and sends what `run` holds.
fn flush_run(
    tls: &mut dyn Tls,
    sock: &TcpStream,
    run: &mut Run,
    sent: &AtomicU64,
    job: &Send,
    cancel: Option<&CancelToken>,
) -> Result<(), TransferError> {
    tls_send(tls, sock, &run.buf[..run.used], cancel)?;
    count(sent, run.payload, &job.opts);
    run.used = 0;
    run.payload = 0;
    Ok(())
}

fn send_stream_tls(
    file: &File,
    job: &Send,
    i: usize,
    ds: &mut DataStream,
    planner: &Mutex<ModeESender>,
    sent: &AtomicU64,
    opts: &TransferOptions,
) -> Result<(), TransferError> {
    let cancel = opts.cancel.as_ref();
    let Some((tls, sock)) = tls_parts(ds) else {
        return Err(TransferError::Local("not a TLS data connection".into()));
    };
    tls_setup(tls, sock);
    // A small transfer needs no megabyte of buffer.
    let need = usize::try_from(job.ranges.total())
        .unwrap_or(usize::MAX)
        .saturating_add(4 * HEADER_LEN);
    let mut run = Run {
        buf: vec![0; need.min(TLS_RUN)],
        used: 0,
        payload: 0,
    };
    loop {
        let next = lock(planner).next_block();
        let Some(h) = next else { break };
        let wire = BlockHeader {
            offset: h.offset - job.shift.min(h.offset),
            ..h
        };
        if run.room() < HEADER_LEN {
            flush_run(tls, sock, &mut run, sent, job, cancel)?;
        }
        run.put(&wire.encode());
        let (mut at, mut left) = (h.offset, h.count);
        while left > 0 {
            if run.room() == 0 {
                flush_run(tls, sock, &mut run, sent, job, cancel)?;
            }
            let n = run.room().min(usize::try_from(left).unwrap_or(usize::MAX));
            read_exact_at(file, &mut run.buf[run.used..run.used + n], at)?;
            run.used += n;
            run.payload += n as u64;
            at += n as u64;
            left -= n as u64;
        }
    }
    let last = lock(planner).final_block(i, job.close);
    if run.room() < HEADER_LEN {
        flush_run(tls, sock, &mut run, sent, job, cancel)?;
    }
    run.put(&last.encode());
    flush_run(tls, sock, &mut run, sent, job, cancel)?;
    tls_absorb(tls, sock);
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
/// would be taken for the next transfer's data. A TLS connection is checked for plaintext
/// (what it holds already decrypted and what the socket holds); records that carry no data
/// are fine, and one whose peer closed it is not kept.
fn check_quiet(kept: Vec<DataStream>) -> Result<Vec<DataStream>, TransferError> {
    use std::os::fd::AsRawFd;
    let after_eod = || {
        TransferError::BadData("data arrived after the end of data (EOD) of its connection".into())
    };
    let mut out = Vec::with_capacity(kept.len());
    for mut ds in kept {
        if let Some((tls, sock)) = tls_parts(&mut ds) {
            match tls_quiet(tls, sock)? {
                Quiet::Data => return Err(after_eod()),
                Quiet::Closed => continue,
                Quiet::Open => {}
            }
        } else {
            let mut b = [0u8; 1];
            let flags =
                nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_PEEK;
            if let Ok(n) = nix::sys::socket::recv(ds.tcp().as_raw_fd(), &mut b, flags) {
                if n > 0 {
                    return Err(after_eod());
                }
            }
        }
        out.push(ds);
    }
    Ok(out)
}

/// Result of one receiving stream: the connection if it may be reused.
type StreamEnd = Result<Option<DataStream>, TransferError>;

fn recv_stream(
    file: &File,
    job: &Recv,
    id: StreamId,
    ds: DataStream,
    flags: &Flags,
    written: &AtomicU64,
) -> StreamEnd {
    match ds.into_plain() {
        Ok(sock) => {
            recv_stream_plain(file, job, id, sock, flags, written).map(|k| k.map(DataStream::Plain))
        }
        Err(ds) => recv_stream_tls(file, job, id, ds, flags, written),
    }
}

fn recv_stream_plain(
    file: &File,
    job: &Recv,
    id: StreamId,
    sock: TcpStream,
    flags: &Flags,
    written: &AtomicU64,
) -> Result<Option<TcpStream>, TransferError> {
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
        let placement = place(job, id, &h)?;
        match placement {
            Placement::Write { offset, len } if len <= SMALL => {
                // Small payloads: one read and one pwrite beat setting up a splice.
                let mut buf = vec![0u8; len as usize];
                read_exact(&sock, &mut buf, flags)?;
                gridos_io::file_write(file, offset, &buf).map_err(map_io)?;
                landed(&job.opts, offset, len);
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

/// How a TLS stream's part of a receive ended.
enum End {
    /// EOD, or idle while the transfer ended: reusable.
    Keep,
    /// The peer closed it.
    Gone,
    /// EOD with the sender-closes flag.
    Close,
}

fn recv_stream_tls(
    file: &File,
    job: &Recv,
    id: StreamId,
    mut ds: DataStream,
    flags: &Flags,
    written: &AtomicU64,
) -> StreamEnd {
    let Some((tls, sock)) = tls_parts(&mut ds) else {
        return Err(TransferError::Local("not a TLS data connection".into()));
    };
    tls_setup(tls, sock);
    let mut bufs = TlsBufs::default();
    let mut got_any = false;
    let end = loop {
        let raw = match tls_header(tls, sock, flags)? {
            Next::Header(raw) => raw,
            Next::Idle => break End::Keep,
            Next::Eof => {
                // As for clear connections: only one that carried blocks must have ended
                // with EOD (with close_notify or not: EOD already says the data is whole).
                if got_any {
                    lock(&job.rx).handle_close(id)?;
                }
                break End::Gone;
            }
        };
        got_any = true;
        let h = BlockHeader::decode(&raw)?;
        let placement = place(job, id, &h)?;
        match placement {
            Placement::Write { offset, len } => {
                let mut at = offset;
                tls_payload(tls, sock, len, &mut bufs, flags, |b| {
                    let n = b.len() as u64;
                    gridos_io::file_write(file, at, b).map_err(map_io)?;
                    landed(&job.opts, at, n);
                    lock(&job.rx).handle_written(id, n)?;
                    count(written, n, &job.opts);
                    at += n;
                    Ok(())
                })?;
            }
            Placement::Discard { len } => {
                tls_payload(tls, sock, len, &mut bufs, flags, |_| Ok(()))?;
                lock(&job.rx).handle_written(id, len)?;
            }
            Placement::Nothing => {}
        }
        if h.is_eod() {
            break if h.is_close() { End::Close } else { End::Keep };
        }
    };
    match end {
        End::Keep => Ok(Some(ds)),
        End::Gone => Ok(None),
        End::Close => {
            // The sender ends the session with close_notify; ours answers it (best effort:
            // the data is complete whatever happens now).
            if let Some((tls, sock)) = tls_parts(&mut ds) {
                tls_drain(tls, sock);
            }
            let _ = ds.finish();
            Ok(None)
        }
    }
}

/// A connection a receive works on: open already (cached, or connected by the caller), or
/// just accepted and still to be protected.
enum Conn {
    Ready(DataStream),
    Accepted(TcpStream, Arc<Mutex<Handshake>>),
}

/// Where an accepted connection's TLS handshake stands; the coordinator cuts one that is
/// still running when the transfer ends (through a duplicate of its descriptor), so nobody
/// waits for a handshake timeout.
#[derive(Debug)]
enum Handshake {
    Running(Option<TcpStream>),
    /// Over (the duplicate is gone, so a refused connection really closes).
    Done,
    Cut,
}

/// Handshakes of accepted connections that failed: they count as turned away.
#[derive(Default)]
struct TlsRefusals {
    failed: AtomicUsize,
    last: Mutex<Option<String>>,
}

impl TlsRefusals {
    fn failed(&self) -> usize {
        self.failed.load(Relaxed)
    }

    /// The reason of the last failure, for the error of a transfer that got no connection.
    fn reason(&self) -> String {
        lock(&self.last)
            .as_ref()
            .map(|e| format!(" (TLS failed: {e})"))
            .unwrap_or_default()
    }
}

/// What the stream threads of a receive share.
struct Streams<'a> {
    file: &'a File,
    job: &'a Recv,
    protect: Option<&'a Protect<'a>>,
    flags: &'a Flags,
    written: &'a AtomicU64,
    refusals: &'a TlsRefusals,
    refused: Option<&'a AtomicU64>,
    /// Duplicates of newly protected streams, for the coordinator's tuners.
    tuned: &'a Mutex<Vec<TcpStream>>,
}

/// One stream's thread of a receive: protects a newly accepted connection, then receives.
fn run_stream(sh: &Streams<'_>, conn: Conn) -> Option<DataStream> {
    let (protect, refusals, refused) = (sh.protect, sh.refusals, sh.refused);
    let ds = match conn {
        Conn::Ready(ds) => ds,
        Conn::Accepted(sock, _) if protect.is_none() => DataStream::Plain(sock),
        Conn::Accepted(sock, state) => match protect.map(|p| p(sock)) {
            Some(Ok(ds)) => {
                let mut st = lock(&state);
                if matches!(*st, Handshake::Cut) {
                    return None;
                }
                *st = Handshake::Done;
                if let Ok(dup) = ds.tcp().try_clone() {
                    lock(sh.tuned).push(dup);
                }
                ds
            }
            Some(Err(e)) => {
                let cut = matches!(
                    std::mem::replace(&mut *lock(&state), Handshake::Done),
                    Handshake::Cut
                );
                if !cut {
                    let why = describe(&e);
                    tracing::warn!(error = %why, "MODE E: turned away a data connection whose TLS set-up failed");
                    refusals.failed.fetch_add(1, Relaxed);
                    *lock(&refusals.last) = Some(why);
                    if let Some(n) = refused {
                        n.fetch_add(1, Relaxed);
                    }
                }
                return None;
            }
            None => return None,
        },
    };
    let id = lock(&sh.job.rx).add_stream();
    match recv_stream(sh.file, sh.job, id, ds, sh.flags, sh.written) {
        Ok(kept) => kept,
        Err(e) => {
            sh.flags.fail(e);
            None
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
    socks: Vec<DataStream>,
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
        let mut kept: Vec<DataStream> = recv_stream(file, job, id, sock, &flags, &written)?
            .into_iter()
            .collect();
        if job.strict_eod {
            kept = check_quiet(kept)?;
        }
        return match lock(&job.rx).status() {
            ReceiveStatus::Complete => Ok(Outcome {
                bytes: written.load(Relaxed),
                channels: kept,
            }),
            _ => Err(TransferError::ConnectionClosed(
                "the data connection ended before the transfer was complete".into(),
            )),
        };
    }
    let flags = Flags::new()?;
    let refusals = TlsRefusals::default();
    let mut refused = 0;
    let had_sockets = !socks.is_empty();
    let tuned = Mutex::new(Vec::new());
    let shared = Streams {
        file,
        job,
        protect: incoming.as_ref().and_then(|i| i.protect),
        flags: &flags,
        written: &written,
        refusals: &refusals,
        refused: incoming.as_ref().and_then(|i| i.refused),
        tuned: &tuned,
    };
    let channels = std::thread::scope(|s| {
        let mut workers = Vec::new();
        let mut handshakes: Vec<Arc<Mutex<Handshake>>> = Vec::new();
        let mut tuners = Tuners::new(&job.opts, Role::Receiver);
        let spawn = |conn: Conn, workers: &mut Vec<_>| {
            let sh = &shared;
            workers.push(s.spawn(move || {
                let out = run_stream(sh, conn);
                sh.flags.notify();
                out
            }));
        };
        for sock in socks {
            tuners.add(sock.tcp());
            spawn(Conn::Ready(sock), &mut workers);
        }
        let started = Instant::now();
        let mut listener_ready = false;
        loop {
            // Streams that are (or may become) part of the transfer.
            let live = workers.len().saturating_sub(refusals.failed());
            if cancelled(&job.opts) {
                // Aborted after turning hosts away and with no connection at all: the data
                // connection could not be made (what a third-party client needs to know).
                let turned_away = refused + refusals.failed();
                flags.fail(if live == 0 && !had_sockets && turned_away > 0 {
                    TransferError::CannotOpenData(format!(
                        "refused {turned_away} data connection(s) from hosts not allowed to connect{}",
                        refusals.reason()
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
            let accepting = incoming.as_ref().filter(|_| live < job.max_streams.max(1));
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
                                if inc.protect.is_none() {
                                    tuners.add(&sock);
                                }
                                let dup = inc.protect.and_then(|_| sock.try_clone().ok());
                                let state = Arc::new(Mutex::new(Handshake::Running(dup)));
                                if inc.protect.is_some() {
                                    handshakes.push(Arc::clone(&state));
                                }
                                spawn(Conn::Accepted(sock, state), &mut workers);
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
                if live == 0 && !had_sockets && started.elapsed() >= inc.timeout {
                    flags.fail(TransferError::CannotOpenData(format!(
                        "timed out waiting for the data connection{}",
                        refusals.reason()
                    )));
                    break;
                }
            }
            tuners.adopt(&tuned);
            tuners.sample();
            let extra = accepting.map(|inc| inc.listener.as_fd());
            listener_ready = flags.wait(extra, Duration::from_millis(u64::from(WAKE_MS)));
        }
        flags.end();
        for state in &handshakes {
            let mut st = lock(state);
            if let Handshake::Running(dup) = &*st {
                if let Some(d) = dup {
                    let _ = d.shutdown(std::net::Shutdown::Both);
                }
                *st = Handshake::Cut;
            }
        }
        workers
            .into_iter()
            .filter_map(|w| w.join().ok().flatten())
            .collect::<Vec<_>>()
    });
    if let Some(e) = flags.take() {
        return Err(e);
    }
    let channels = if job.strict_eod {
        check_quiet(channels)?
    } else {
        channels
    };
    Ok(Outcome {
        bytes: written.load(Relaxed),
        channels,
    })
}

// ---- TLS data connections ----------------------------------------------------------------

/// The record layer of a TLS data connection, whichever side of the handshake this end was.
trait Tls {
    /// Ciphertext from `rd` into rustls (`read_tls`).
    fn tls_in(&mut self, rd: &mut dyn Read) -> io::Result<usize>;
    /// Ciphertext from rustls to `wr` (`write_tls`).
    fn tls_out(&mut self, wr: &mut dyn Write) -> io::Result<usize>;
    fn has_output(&self) -> bool;
    fn process(&mut self) -> Result<rustls::IoState, rustls::Error>;
    /// Decrypted bytes (`WouldBlock`: none yet; `Ok(0)`: close_notify).
    fn plain_in(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Bytes to encrypt; takes what fits under the buffer limit.
    fn plain_out(&mut self, buf: &[u8]) -> io::Result<usize>;
    fn close_notify(&mut self);
    fn buffer_limit(&mut self, limit: Option<usize>);
}

macro_rules! tls_connection {
    ($t:ty) => {
        impl Tls for $t {
            fn tls_in(&mut self, rd: &mut dyn Read) -> io::Result<usize> {
                self.read_tls(rd)
            }
            fn tls_out(&mut self, wr: &mut dyn Write) -> io::Result<usize> {
                self.write_tls(wr)
            }
            fn has_output(&self) -> bool {
                self.wants_write()
            }
            fn process(&mut self) -> Result<rustls::IoState, rustls::Error> {
                self.process_new_packets()
            }
            fn plain_in(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.reader().read(buf)
            }
            fn plain_out(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.writer().write(buf)
            }
            fn close_notify(&mut self) {
                self.send_close_notify();
            }
            fn buffer_limit(&mut self, limit: Option<usize>) {
                self.set_buffer_limit(limit);
            }
        }
    };
}

tls_connection!(rustls::ServerConnection);
tls_connection!(rustls::ClientConnection);

/// The record layer and the socket of a TLS stream; `None` for a clear one.
fn tls_parts(ds: &mut DataStream) -> Option<(&mut dyn Tls, &TcpStream)> {
    match ds {
        DataStream::Plain(_) => None,
        DataStream::Server(s) => {
            let s = &mut **s;
            Some((&mut s.conn as &mut dyn Tls, &s.sock))
        }
        DataStream::Client(s) => {
            let s = &mut **s;
            Some((&mut s.conn as &mut dyn Tls, &s.sock))
        }
    }
}

/// Readies a TLS stream for a transfer: short socket timeouts, so blocked I/O notices
/// cancellation (rustls keeps its state across `WouldBlock`), and room in rustls for a whole
/// run of records.
fn tls_setup(tls: &mut dyn Tls, sock: &TcpStream) {
    let _ = sock.set_write_timeout(Some(TLS_WAKE));
    let _ = sock.set_read_timeout(Some(TLS_WAKE));
    tls.buffer_limit(Some(TLS_BUFFER));
}

fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// The socket as a reader that never blocks (waits go through `wait_readable`).
struct NbRead<'a>(&'a TcpStream);

impl Read for NbRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        recv_nb(self.0, buf).map_err(io::Error::from)
    }
}

/// Writes out everything rustls holds for the socket.
fn tls_flush(
    tls: &mut dyn Tls,
    sock: &TcpStream,
    cancel: Option<&CancelToken>,
) -> Result<(), TransferError> {
    let mut w = sock;
    while tls.has_output() {
        if cancel.is_some_and(CancelToken::is_cancelled) {
            return Err(TransferError::Aborted);
        }
        match tls.tls_out(&mut w) {
            Ok(0) => {
                return Err(TransferError::ConnectionClosed(
                    "the data connection takes no more bytes".into(),
                ));
            }
            Ok(_) => {}
            Err(e) if transient(&e) => {}
            Err(e) => return Err(io_err("send", e)),
        }
    }
    Ok(())
}

/// Encrypts and sends all of `data`.
fn tls_send(
    tls: &mut dyn Tls,
    sock: &TcpStream,
    mut data: &[u8],
    cancel: Option<&CancelToken>,
) -> Result<(), TransferError> {
    while !data.is_empty() {
        let n = tls.plain_out(data).map_err(|e| io_err("TLS", e))?;
        if n == 0 && !tls.has_output() {
            return Err(TransferError::ConnectionClosed(
                "the TLS session takes no more data".into(),
            ));
        }
        data = &data[n..];
        tls_flush(tls, sock, cancel)?;
    }
    Ok(())
}

/// Ends a TLS stream this side closes: close_notify, flushed as cancellably as the data
/// before it, then [`DataStream::finish`] (the TCP half-close). The data is out by then, and
/// a receiver that saw the close flag may well have closed first: failures here are not
/// the transfer's.
fn tls_finish(ds: &mut DataStream, cancel: Option<&CancelToken>) -> Result<(), TransferError> {
    if let Some((tls, sock)) = tls_parts(ds) {
        tls.close_notify();
        match tls_flush(tls, sock, cancel) {
            Ok(()) => {}
            Err(TransferError::Aborted) => return Err(TransferError::Aborted),
            Err(e) => {
                tracing::debug!(error = %describe(&e), "MODE E: close_notify not delivered");
                return Ok(());
            }
        }
    }
    if let Err(e) = ds.finish() {
        tracing::debug!(error = %e, "MODE E: data connection not half-closed");
    }
    if let Some((tls, sock)) = tls_parts(ds) {
        tls_drain(tls, sock);
    }
    Ok(())
}

/// Takes what the socket holds into rustls, without waiting and without losing anything
/// (plaintext stays in rustls, with the connection). A sender calls it after its EOD: the
/// peer's TLS 1.3 session tickets arrive unasked and a sender never reads, and a connection
/// closed with unread bytes is reset by the kernel, which also throws away what it still
/// had to send.
fn tls_absorb(tls: &mut dyn Tls, sock: &TcpStream) {
    loop {
        match tls.tls_in(&mut NbRead(sock)) {
            Ok(0) => break,
            Ok(_) => {
                if tls.process().is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

/// Most bytes a closing end reads and drops.
const DRAIN_MAX: usize = 1 << 20;

/// Reads and drops what the socket holds before the connection is closed. A close with
/// unread bytes (the peer's TLS 1.3 session tickets, which a sender never reads) makes the
/// kernel answer with a reset, and a reset throws away what is still queued to send — the
/// last blocks and the close_notify.
fn tls_drain(tls: &mut dyn Tls, sock: &TcpStream) {
    let mut junk = [0u8; 4096];
    let mut plain = |tls: &mut dyn Tls| while matches!(tls.plain_in(&mut junk), Ok(n) if n > 0) {};
    let mut taken = 0;
    while taken < DRAIN_MAX {
        match tls.tls_in(&mut NbRead(sock)) {
            // The end of the socket, or close_notify (rustls then takes nothing more).
            Ok(0) => break,
            Ok(n) => {
                taken += n;
                if tls.process().is_err() {
                    break;
                }
                plain(tls);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            // rustls's plaintext buffer is full: empty it and go on.
            Err(_) if tls.plain_in(&mut [0u8; 1]).is_ok_and(|n| n > 0) => plain(tls),
            Err(_) => break,
        }
    }
    // Whatever rustls would not take (bytes after close_notify).
    let mut junk = [0u8; 4096];
    while taken < DRAIN_MAX {
        match recv_nb(sock, &mut junk) {
            Ok(n) if n > 0 => taken += n,
            Err(nix::errno::Errno::EINTR) => {}
            _ => break,
        }
    }
}

/// Decrypts what rustls was given. A record that fails (garbage, a forged or cut record) is
/// bad data; rustls's alert goes to the peer, as far as the socket takes it at once.
fn tls_process(tls: &mut dyn Tls, sock: &TcpStream) -> Result<rustls::IoState, TransferError> {
    let mut w = sock;
    match tls.process() {
        Ok(st) => {
            if tls.has_output() {
                // A reply rustls owes the peer (a key update's, say).
                let _ = tls.tls_out(&mut w);
            }
            Ok(st)
        }
        Err(e) => {
            let _ = tls.tls_out(&mut w);
            Err(TransferError::BadData(format!("TLS: {e}")))
        }
    }
}

/// What a TLS read gave.
enum Got {
    /// This many plaintext bytes.
    Data(usize),
    /// The peer closed the connection (with close_notify or not).
    Closed,
    /// The transfer failed, or (between blocks) ended.
    Stopped,
}

/// Reads plaintext into `buf` (not empty), pulling records from the socket as needed.
///
/// With `bulk` (a scratch buffer, and how many payload bytes of the current block are still
/// to be read, `buf`'s included), ciphertext up to that count less [`TLS_MARGIN`] (and no
/// more than `buf` holds) is read from the socket in one call and handed to rustls piece by
/// piece. It cannot reach a record of the next block, and all of its plaintext fits in
/// `buf`, since plaintext is never longer than its ciphertext.
fn tls_read(
    tls: &mut dyn Tls,
    sock: &TcpStream,
    buf: &mut [u8],
    mut bulk: Option<(&mut [u8], u64)>,
    flags: &Flags,
    between: bool,
) -> Result<Got, TransferError> {
    loop {
        match tls.plain_in(buf) {
            Ok(0) => return Ok(Got::Closed),
            Ok(n) => return Ok(Got::Data(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Got::Closed),
            Err(e) => return Err(io_err("TLS read", e)),
        }
        if !wait_readable(sock, flags, between)? {
            return Ok(Got::Stopped);
        }
        let limit = bulk.as_ref().map_or(0, |(b, left)| {
            let before_end = usize::try_from(left.saturating_sub(TLS_MARGIN as u64));
            b.len().min(buf.len()).min(before_end.unwrap_or(usize::MAX))
        });
        if let Some((scratch, _)) = bulk.as_mut().filter(|_| limit >= TLS_MARGIN) {
            let n = match recv_nb(sock, &mut scratch[..limit]) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
                Err(e) => return Err(io_err("read", e)),
            };
            if n == 0 {
                // TCP end: let rustls see it (the next read says clean or cut).
                let _ = tls.tls_in(&mut io::empty());
                continue;
            }
            let got = tls_feed(tls, sock, &scratch[..n], buf)?;
            if got > 0 {
                return Ok(Got::Data(got));
            }
            continue;
        }
        match tls.tls_in(&mut NbRead(sock)) {
            Ok(_) => {}
            Err(e) if transient(&e) => continue,
            Err(e) => return Err(io_err("read", e)),
        }
        tls_process(tls, sock)?;
    }
}

/// Hands ciphertext read in bulk to rustls (it takes at most a record or so per call) and
/// moves the plaintext into `buf`. Returns the plaintext bytes.
fn tls_feed(
    tls: &mut dyn Tls,
    sock: &TcpStream,
    mut src: &[u8],
    buf: &mut [u8],
) -> Result<usize, TransferError> {
    let mut got = 0;
    while !src.is_empty() {
        match tls.tls_in(&mut src) {
            // After close_notify rustls takes nothing more ("data after a closure alert
            // MUST be ignored").
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(io_err("TLS", e)),
        }
        tls_process(tls, sock)?;
        while got < buf.len() {
            match tls.plain_in(&mut buf[got..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    }
    Ok(got)
}

/// Reads one block header from a TLS stream (see [`read_header`]).
fn tls_header(tls: &mut dyn Tls, sock: &TcpStream, flags: &Flags) -> Result<Next, TransferError> {
    let mut buf = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match tls_read(tls, sock, &mut buf[got..], None, flags, got == 0)? {
            Got::Data(n) => got += n,
            Got::Closed if got == 0 => return Ok(Next::Eof),
            Got::Closed => {
                return Err(TransferError::BadData(
                    "data connection closed inside a block header".into(),
                ));
            }
            // Between blocks the transfer may end without this connection.
            Got::Stopped if got == 0 && !flags.stop.is_cancelled() => return Ok(Next::Idle),
            Got::Stopped => return Err(TransferError::Aborted),
        }
    }
    Ok(Next::Header(buf))
}

/// A TLS receiver's buffers, kept across the blocks of a transfer: plaintext on its way to
/// the file, and ciphertext read in bulk.
#[derive(Default)]
struct TlsBufs {
    out: Vec<u8>,
    bulk: Vec<u8>,
}

/// Reads a block's `len` payload bytes from a TLS stream; `sink` gets them in order, in
/// pieces of up to [`TLS_RUN`] (so progress shows before a large block is complete).
fn tls_payload(
    tls: &mut dyn Tls,
    sock: &TcpStream,
    len: u64,
    bufs: &mut TlsBufs,
    flags: &Flags,
    mut sink: impl FnMut(&[u8]) -> Result<(), TransferError>,
) -> Result<(), TransferError> {
    let size = usize::try_from(len).unwrap_or(usize::MAX).min(TLS_RUN);
    if bufs.out.len() < size {
        bufs.out.resize(size, 0);
    }
    if len > 2 * TLS_MARGIN as u64 && bufs.bulk.is_empty() {
        bufs.bulk.resize(TLS_BULK, 0);
    }
    let TlsBufs { out, bulk } = bufs;
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(out.len());
        let mut got = 0;
        while got < want {
            let unread = left - got as u64;
            let scratch = (!bulk.is_empty()).then_some((&mut bulk[..], unread));
            match tls_read(tls, sock, &mut out[got..want], scratch, flags, false)? {
                Got::Data(n) => got += n,
                Got::Closed => {
                    return Err(TransferError::ConnectionClosed("closed in a block".into()));
                }
                Got::Stopped => return Err(TransferError::Aborted),
            }
        }
        sink(&out[..want])?;
        left -= want as u64;
    }
    Ok(())
}

/// What a TLS stream that ended with EOD holds.
enum Quiet {
    Open,
    /// The peer closed it: not reusable.
    Closed,
    /// Plaintext after EOD.
    Data,
}

/// Takes what the socket holds into rustls (it stays with the connection) and looks for
/// plaintext, which is data sent after EOD; records without data (alerts, tickets, key
/// updates) are fine.
fn tls_quiet(tls: &mut dyn Tls, sock: &TcpStream) -> Result<Quiet, TransferError> {
    let mut open = true;
    loop {
        match tls.tls_in(&mut NbRead(sock)) {
            Ok(0) => {
                open = false;
                break;
            }
            Ok(_) => {
                tls_process(tls, sock)?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            // rustls's plaintext buffer is full (data, seen below) or the socket broke.
            Err(_) => {
                open = false;
                break;
            }
        }
    }
    let st = tls_process(tls, sock)?;
    Ok(if st.plaintext_bytes_to_read() > 0 {
        Quiet::Data
    } else if !open || st.peer_has_closed() {
        Quiet::Closed
    } else {
        Quiet::Open
    })
}
