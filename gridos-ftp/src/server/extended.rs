//! MODE E transfers (GridFTP extended block mode): RETR/ERET sent as blocks over the data
//! connections the client asked for (`OPTS RETR Parallelism`), STOR/ESTO received from any
//! number of connections, data connections cached between transfers (reply 125), and the
//! 111/112 markers while a transfer runs. The byte moving is [`crate::blocks`].
//!
//! Under `PROT P` every data connection this module makes or accepts is made TLS with
//! [`transfer::protect`](super::transfer::protect) on the I/O pool or a transfer thread (the
//! handshakes of a transfer's new connections run side by side), after the 150/125 reply, as
//! FTPS clients expect; cached connections keep their TLS sessions.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use gridos_io::{CancelToken, TransferOptions};

use super::transfer::{
    Commit, Ctx, DataTls, Dir, Event, Job, MarkerMsg, Prepared, apply_sbuf, on_pool, prepare,
    protect, verify_expected,
};
use crate::blocks::{self, DEFAULT_BLOCK_SIZE, Incoming};
use crate::proto::mode_e::ModeEReceiver;
use crate::proto::{
    DataEndpoint, PerfMarker, RangeSet, StoreKind, TransferDone, TransferError, TransferParams,
    TransferStart,
};
use crate::tls::DataStream;

/// Largest file the pipelined fast path sends in one I/O-pool job (see `run_inner`).
const FAST_MAX: u64 = 4 << 20;

/// Largest file the pipelined fast path sends from the control connection's own thread.
const INLINE_MAX: u64 = 64 * 1024;

/// What the first I/O-pool job of a transfer did.
enum Staged {
    /// Opened the file; the transfer continues on the general path (with the cached
    /// connections it was handed, if any).
    Prepared(Prepared, Option<Vec<DataStream>>),
    /// The fast path sent the whole file.
    Sent(blocks::Outcome, u64),
}

/// Streams the server opens for a send when the client did not say (`OPTS RETR`).
const DEFAULT_STREAMS: u32 = 1;

/// Connects `n` data connections to `addrs` (round robin: SPOR gives one per stripe), all
/// at once: on a long path each sequential connect would cost a round trip.
async fn connect_n(
    ctx: &Ctx,
    addrs: &[SocketAddr],
    n: usize,
) -> Result<Vec<TcpStream>, TransferError> {
    if addrs.is_empty() {
        return Err(TransferError::CannotOpenData("no address".into()));
    }
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let addr = addrs[i % addrs.len()];
        let limit = ctx.data_timeout;
        let local = ctx.local;
        set.spawn(async move {
            match tokio::time::timeout(limit, super::transfer::connect_from(local, addr)).await {
                Err(_) => Err(TransferError::CannotOpenData("connect timed out".into())),
                Ok(Err(e)) => Err(TransferError::CannotOpenData(e.to_string())),
                Ok(Ok(s)) => Ok(s),
            }
        });
    }
    let mut out = Vec::with_capacity(n);
    loop {
        let joined = tokio::select! {
            r = set.join_next() => r,
            _ = super::transfer::cancelled(&ctx.cancel) => return Err(TransferError::Aborted),
        };
        let Some(r) = joined else { break };
        let s = r.map_err(|e| TransferError::Local(e.to_string()))??;
        out.push(super::transfer::to_std(s)?);
    }
    Ok(out)
}

/// Makes new data connections what the session asked for (see [`protect`]); several TLS
/// handshakes run at once, since each costs a round trip or two. Blocking: call it on the
/// I/O pool.
fn protect_all(
    tls: Option<&DataTls>,
    socks: Vec<TcpStream>,
    timeout: Duration,
) -> Result<Vec<DataStream>, TransferError> {
    if tls.is_none() || socks.len() <= 1 {
        return socks
            .into_iter()
            .map(|s| protect(tls, s, timeout))
            .collect();
    }
    std::thread::scope(|sc| {
        let handshakes: Vec<_> = socks
            .into_iter()
            .map(|s| sc.spawn(move || protect(tls, s, timeout)))
            .collect();
        handshakes
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(TransferError::Local("TLS handshake thread failed".into()))
                })
            })
            .collect()
    })
}

fn streams_wanted(params: &TransferParams) -> usize {
    params
        .retr_opts
        .parallelism
        .map_or(DEFAULT_STREAMS, |p| p.starting.max(p.minimum))
        .clamp(1, 64) as usize
}

fn block_size(params: &TransferParams) -> u64 {
    params
        .retr_opts
        .block_size
        .filter(|&b| b > 0)
        .unwrap_or(DEFAULT_BLOCK_SIZE)
        .clamp(4096, 64 << 20)
}

/// Runs one MODE E transfer (the caller reports it to the connection).
pub(crate) async fn run_inner(
    ctx: &mut Ctx,
    job: Job,
) -> (Result<TransferDone, TransferError>, Option<Commit>) {
    let (data, params, dir) = match &job {
        Job::Retr(r) => (r.data.clone(), r.params.clone(), Dir::Send),
        Job::Stor(s) => (s.data.clone(), s.params.clone(), Dir::Recv),
        Job::List(l) => (l.data.clone(), l.params.clone(), Dir::Send),
    };
    if matches!(params.ty, crate::proto::TransferType::Ascii(_)) {
        return (
            Err(TransferError::Local("MODE E carries TYPE I only".into())),
            None,
        );
    }
    let (restart, expected) = match &job {
        Job::Retr(r) => (r.restart.clone(), None),
        Job::Stor(s) => (s.restart.clone(), s.expected_checksum.clone()),
        Job::List(_) => (None, None),
    };
    // ERET P: block offsets count from the requested start, as the Globus tools expect.
    let shift = match &job {
        Job::Retr(r) if r.length.is_some() => r.offset,
        _ => 0,
    };
    let (stor_kind, stor_offset) = match &job {
        Job::Stor(s) => (Some(s.kind), s.offset),
        _ => (None, 0),
    };
    let root = Arc::clone(&ctx.root);
    let writable = ctx.writable;
    // Fast path for pipelined small files: a RETR on cached connections, with no markers to
    // send, is opened and sent in one I/O-pool job — no connection to wait for, and a file
    // this small cannot stall long enough to need the watchdog (ABOR still cancels it).
    let fast = matches!(&job, Job::Retr(r) if r.restart.is_none())
        && params.perf_interval == 0
        && ctx
            .channels
            .as_ref()
            .is_some_and(|c| c.dir == Dir::Send && !c.socks.is_empty());
    let fast_socks = if fast {
        ctx.channels.take().map(|c| c.socks)
    } else {
        None
    };
    let events = ctx.events.clone();
    let cancel = ctx.cancel.clone();
    let block = block_size(&params);
    let send_now = move |file: &std::fs::File,
                         offset: u64,
                         len: u64,
                         socks: Vec<DataStream>,
                         events: &tokio::sync::mpsc::UnboundedSender<Event>,
                         cancel: CancelToken| {
        let _ = events.send(Event::Started(TransferStart {
            reused: true,
            size: Some(len),
            name: None,
        }));
        let mut ranges = RangeSet::new();
        ranges.insert(offset, offset + len);
        let send = blocks::Send {
            ranges,
            shift,
            block_size: block,
            close: false,
            opts: TransferOptions {
                cancel: Some(cancel),
                ..Default::default()
            },
        };
        blocks::send(file, &send, socks)
    };
    // The smallest files (one block, page cache) go out right here: a hop to the I/O pool
    // and back would cost more than opening and sending them.
    let opened = match fast_socks {
        Some(socks) => match prepare(&ctx.root, &job, writable) {
            Ok(Prepared::Retr { file, offset, len }) if len <= INLINE_MAX => {
                return match send_now(&file, offset, len, socks, &events, cancel) {
                    Ok(out) => {
                        ctx.shared.stats.bytes_sent.fetch_add(out.bytes, Relaxed);
                        ctx.keep_channels(dir, out.channels);
                        (Ok(TransferDone { bytes: len }), None)
                    }
                    Err(e) => (Err(e), None),
                };
            }
            Err(e) => {
                // A failed open keeps the cached connections for the next transfer.
                ctx.keep_channels(dir, socks);
                return (Err(e), None);
            }
            // Larger: the pool sends the file opened here.
            Ok(p) => Some((p, socks)),
        },
        None => None,
    };
    let staged = on_pool(&ctx.shared, move || {
        let (p, fast_socks) = match opened {
            Some((p, socks)) => (p, Some(socks)),
            None => match prepare(&root, &job, writable) {
                Ok(p) => (p, None),
                Err(e) => return Err(e),
            },
        };
        match (fast_socks, p) {
            (Some(socks), Prepared::Retr { file, offset, len }) if len <= FAST_MAX => {
                send_now(&file, offset, len, socks, &events, cancel)
                    .map(|out| Staged::Sent(out, len))
            }
            (socks, p) => Ok(Staged::Prepared(p, socks)),
        }
    })
    .await;
    let prepared = match staged {
        Ok(Ok(Staged::Prepared(p, socks))) => {
            ctx.keep_channels(dir, socks.unwrap_or_default());
            p
        }
        Ok(Ok(Staged::Sent(out, len))) => {
            ctx.shared.stats.bytes_sent.fetch_add(out.bytes, Relaxed);
            ctx.keep_channels(dir, out.channels);
            return (Ok(TransferDone { bytes: len }), None);
        }
        Ok(Err(e)) | Err(e) => return (Err(e), None),
    };

    // Data channels: cached ones of the same direction first.
    let cached = match ctx.channels.take() {
        Some(c) if c.dir == dir => c.socks,
        _ => Vec::new(),
    };
    let reused = !cached.is_empty();
    let socks = cached;
    // New connections, protected (TLS) on the pool once the transfer has started.
    let mut fresh = Vec::new();
    let mut listener = None;
    match (&data, dir) {
        (DataEndpoint::Active(addrs), Dir::Send) => {
            let want = streams_wanted(&params);
            if socks.len() < want {
                match connect_n(ctx, addrs, want - socks.len()).await {
                    Ok(more) => fresh = more,
                    Err(e) => return (Err(e), None),
                }
            }
        }
        (DataEndpoint::Active(addrs), Dir::Recv) => {
            // The sender should be the active side in MODE E; a client that sent PORT
            // anyway gets one connection from us.
            if socks.is_empty() {
                match connect_n(ctx, addrs, 1).await {
                    Ok(more) => fresh = more,
                    Err(e) => return (Err(e), None),
                }
            }
        }
        (DataEndpoint::Passive, Dir::Send) => {
            if socks.is_empty() {
                match super::transfer::accept_one(ctx).await {
                    Ok(s) => fresh.push(s),
                    Err(e) => return (Err(e), None),
                }
            }
        }
        (DataEndpoint::Passive, Dir::Recv) => match ctx.passive.take() {
            Some(l) => match l.into_std() {
                Ok(l) => listener = Some(l),
                Err(e) => return (Err(TransferError::CannotOpenData(e.to_string())), None),
            },
            None if socks.is_empty() => {
                return (
                    Err(TransferError::CannotOpenData("no passive listener".into())),
                    None,
                );
            }
            None => {}
        },
    }
    if let Some(n) = params.buffer_size {
        for s in socks.iter().map(DataStream::tcp).chain(&fresh) {
            apply_sbuf(s, n);
        }
    }

    let start = match &prepared {
        Prepared::Retr { len, .. } => TransferStart {
            reused,
            size: Some(*len),
            name: None,
        },
        Prepared::Stor { name, .. } => TransferStart {
            reused,
            size: None,
            name: name.clone(),
        },
        Prepared::List(_) => TransferStart {
            reused,
            ..Default::default()
        },
    };
    let _ = ctx.events.send(Event::Started(start));

    let cancel = CancelToken::new();
    let progress = Arc::new(AtomicU64::new(0));
    let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = tokio::spawn(super::transfer::watchdog(
        ctx.cancel.clone(),
        cancel.clone(),
        Some(Arc::clone(&progress)),
        ctx.data_timeout,
        Arc::clone(&stalled),
    ));
    let opts = TransferOptions {
        cancel: Some(cancel),
        progress: Some(Arc::clone(&progress)),
        ..Default::default()
    };
    let policy = ctx.policy.clone();
    let shared = Arc::clone(&ctx.shared);
    let timeout = ctx.data_timeout;
    let tls = ctx.tls.clone();
    let max_streams = 64;
    // 111/112 markers while the transfer runs.
    let rx_state = match (&prepared, stor_kind) {
        (Prepared::Stor { .. }, Some(kind)) => {
            let mut rx = ModeEReceiver::new(None).with_max_streams(max_streams as u64);
            if kind == StoreKind::Adjusted {
                rx = rx.with_offset_adjustment(stor_offset);
            } else if kind == StoreKind::Append {
                if let Prepared::Stor { offset, .. } = &prepared {
                    rx = rx.with_offset_adjustment(*offset);
                }
            }
            if let Some(r) = &restart {
                rx.import_restart(r);
            }
            Some(Arc::new(Mutex::new(rx)))
        }
        _ => None,
    };
    let markers = tokio::spawn(markers(
        ctx.events.clone(),
        Arc::clone(&progress),
        rx_state.clone(),
        params.perf_interval,
        params.restart_interval,
    ));
    // An upload into a partial file records its ranges once it has holes.
    let record = match (&prepared, &rx_state) {
        (
            Prepared::Stor {
                commit: Some((dir, _, target)),
                ..
            },
            Some(rx),
        ) => match Record::new(dir, target, rx, restart.is_some()) {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => {
                watchdog.abort();
                markers.abort();
                return (Err(TransferError::Fs(e.into())), None);
            }
        },
        _ => None,
    };
    let recorder = record
        .as_ref()
        .map(|r| tokio::spawn(keep_recording(Arc::clone(r))));
    let before_gap = record.as_ref().map(|r| {
        let r = Arc::clone(r);
        blocks::GapHook(Arc::new(move || r.start()))
    });
    let moved = on_pool(&ctx.shared, move || {
        let r = (|| -> Result<_, TransferError> {
            let mut socks = socks;
            socks.extend(protect_all(tls.as_ref(), fresh, timeout)?);
            let protect_one = |s: TcpStream| protect(tls.as_ref(), s, timeout);
            match prepared {
                Prepared::Retr { file, offset, len } => {
                    let ranges = match &restart {
                        // REST with a range list: send what the client lacks.
                        Some(have) => {
                            let size = file
                                .metadata()
                                .map_err(|e| TransferError::Local(e.to_string()))?
                                .len();
                            have.missing(size)
                        }
                        None => {
                            let mut r = RangeSet::new();
                            r.insert(offset, offset + len);
                            r
                        }
                    };
                    let job = blocks::Send {
                        ranges,
                        shift,
                        block_size: block_size(&params),
                        close: false,
                        opts,
                    };
                    let out = blocks::send(&file, &job, socks)?;
                    Ok((out, None, len))
                }
                Prepared::Stor {
                    file,
                    offset: _,
                    commit,
                    ..
                } => {
                    let Some(rx) = rx_state else {
                        return Err(TransferError::Local("no receiver state".into()));
                    };
                    let job = blocks::Recv {
                        rx,
                        opts: TransferOptions {
                            write_behind: gridos_io::WriteBehind::for_file(&file, None),
                            ..opts
                        },
                        max_streams,
                        strict_eod: true,
                        before_gap,
                    };
                    let incoming = listener.as_ref().map(|l| Incoming {
                        listener: l,
                        allow: Some(&policy),
                        refused: Some(&shared.stats.data_refused),
                        timeout,
                        protect: tls
                            .is_some()
                            .then_some(&protect_one as &blocks::Protect<'_>),
                    });
                    let out = blocks::recv(&file, &job, socks, incoming)?;
                    if let Some(exp) = &expected {
                        verify_expected(&file, exp)?;
                    }
                    let commit = Commit::of(commit, file);
                    let bytes = out.bytes;
                    Ok((out, commit, bytes))
                }
                Prepared::List(bytes) => {
                    let out = blocks::send_bytes(&bytes, socks, false, &opts)?;
                    Ok((out, None, bytes.len() as u64))
                }
            }
        })();
        (r, listener)
    })
    .await;
    let (moved, listener) = match moved {
        Ok((r, l)) => (Ok(r), l),
        Err(e) => (Err(e), None),
    };
    watchdog.abort();
    markers.abort();
    if let Some(t) = recorder {
        t.abort();
    }
    // What the partial holds now, for a resume (the commit removes it on success).
    let recorded = record.as_ref().is_some_and(|r| {
        if let Err(e) = r.update() {
            tracing::warn!(error = %e, "ftpd: range record of a partial upload not updated");
        }
        r.started()
    });
    let moved = super::transfer::stall_verdict(moved, &stalled, ctx.data_timeout);
    // The listener stays for later transfers: the client may add streams.
    if let Some(l) = listener {
        match tokio::net::TcpListener::from_std(l) {
            Ok(l) => ctx.passive = Some(l),
            Err(e) => tracing::debug!(error = %e, "ftpd: passive listener not kept"),
        }
    }
    let stats = &ctx.shared.stats;
    match moved {
        Ok(Ok((out, commit, bytes))) => {
            match dir {
                Dir::Send => stats.bytes_sent.fetch_add(out.bytes, Relaxed),
                Dir::Recv => stats.bytes_received.fetch_add(out.bytes, Relaxed),
            };
            ctx.keep_channels(dir, out.channels);
            let commit = commit.map(|mut c| {
                c.record = recorded;
                c
            });
            (Ok(TransferDone { bytes }), commit)
        }
        Ok(Err(e)) | Err(e) => (Err(e), None),
    }
}

/// How often a MODE E upload's range record is brought up to date.
const RECORD_EVERY: Duration = Duration::from_millis(250);

/// The range record of a MODE E upload into a partial file (`.NAME.gridos-part.ranges`,
/// see [`partial_ranges_name`](super::fs::partial_ranges_name)). While the blocks arrive in
/// order the partial has no hole and needs no record; before the first block out of order
/// lands, the record is written ([`Record::start`], through the receive's
/// [`GapHook`](blocks::GapHook)), and from then on it is kept up to date. It only ever
/// names bytes already written, so a server killed at any moment leaves a partial whose
/// record says truly what it holds.
struct Record {
    dir: std::os::fd::OwnedFd,
    target: String,
    rx: Arc<Mutex<ModeEReceiver>>,
    /// `None` until started; then the ranges last written.
    last: Mutex<Option<RangeSet>>,
}

impl Record {
    /// The record of the upload into `target`'s partial in `dir`; `resumed`: the upload
    /// continues from the ranges of an existing record (REST with a range list).
    fn new(
        dir: &std::os::fd::OwnedFd,
        target: &str,
        rx: &Arc<Mutex<ModeEReceiver>>,
        resumed: bool,
    ) -> std::io::Result<Record> {
        let r = Record {
            dir: dir.try_clone()?,
            target: target.to_string(),
            rx: Arc::clone(rx),
            last: Mutex::new(None),
        };
        if resumed {
            r.start()?;
        }
        Ok(r)
    }

    fn lock_last(&self) -> std::sync::MutexGuard<'_, Option<RangeSet>> {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn received(&self) -> RangeSet {
        self.rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .received()
            .clone()
    }

    /// Writes the record if it is not written yet (the partial is about to get a hole).
    fn start(&self) -> std::io::Result<()> {
        let mut last = self.lock_last();
        if last.is_none() {
            let now = self.received();
            super::fs::write_partial_ranges(&self.dir, &self.target, &now)?;
            *last = Some(now);
        }
        Ok(())
    }

    /// Brings a started record up to date.
    fn update(&self) -> std::io::Result<()> {
        let mut last = self.lock_last();
        let Some(prev) = last.as_mut() else {
            return Ok(());
        };
        let now = self.received();
        if now != *prev {
            super::fs::write_partial_ranges(&self.dir, &self.target, &now)?;
            *prev = now;
        }
        Ok(())
    }

    fn started(&self) -> bool {
        self.lock_last().is_some()
    }
}

/// Updates `r` every [`RECORD_EVERY`] until aborted (a failed update keeps the previous
/// record, which is still true: it names less than the partial holds).
async fn keep_recording(r: Arc<Record>) {
    loop {
        tokio::time::sleep(RECORD_EVERY).await;
        if let Err(e) = r.update() {
            tracing::debug!(error = %e, "ftpd: range record of a partial upload not updated");
        }
    }
}

/// Sends 112 perf markers every `perf` seconds and 111 range markers every `restart` seconds
/// (receives only) until aborted.
async fn markers(
    events: tokio::sync::mpsc::UnboundedSender<Event>,
    progress: Arc<AtomicU64>,
    rx: Option<Arc<Mutex<ModeEReceiver>>>,
    perf: u32,
    restart: u32,
) {
    if perf == 0 && (restart == 0 || rx.is_none()) {
        return;
    }
    let tick = Duration::from_secs(1);
    let mut n: u64 = 0;
    loop {
        tokio::time::sleep(tick).await;
        n += 1;
        if perf > 0 && n % u64::from(perf) == 0 {
            let m = PerfMarker {
                timestamp: SystemTime::now(),
                stripe_index: 0,
                stripe_bytes: progress.load(Relaxed),
                total_stripes: 1,
            };
            if events.send(Event::Marker(MarkerMsg::Perf(m))).is_err() {
                return;
            }
        }
        if let Some(rx) = &rx {
            if restart > 0 && n % u64::from(restart) == 0 {
                let ranges = rx
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .received()
                    .clone();
                if !ranges.is_empty()
                    && events
                        .send(Event::Marker(MarkerMsg::Range(ranges)))
                        .is_err()
                {
                    return;
                }
            }
        }
    }
}
