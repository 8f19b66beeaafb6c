//! Transfers: open the file (on the I/O pool), make the data connection (tokio), then move
//! the bytes on the I/O pool with `gridos_io::send_file` / `recv_file` (TYPE I) or a
//! user-space line-end conversion loop (TYPE A).
//!
//! Under `PROT P` the data connection is made TLS ([`protect`], after the 150 reply: clients
//! such as Python's ftplib start their handshake only once they have read it) and the bytes
//! go through user-space loops over rustls with large reads (no kernel TLS here); every
//! sent TLS stream ends with close_notify ([`DataStream::finish`]). Clear transfers keep the
//! zero-copy path.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use gridos_io::{CancelToken, GridSocket, TransferOptions};
use nix::fcntl::{Flock, FlockArg};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::Shared;
use super::fs::Root;
use crate::blocks::map_io;
use crate::proto::{
    DataEndpoint, DataPolicy, FsError, FsErrorKind, ListRequest, RetrRequest, StorRequest,
    StoreKind, TransferDone, TransferError, TransferMode, TransferStart, TransferType,
};
use crate::tls::DataStream;

/// What the connection asked for.
pub(crate) enum Job {
    Retr(RetrRequest),
    Stor(StorRequest),
    List(ListRequest),
}

/// Reports from a transfer task to its control connection.
pub(crate) enum Event {
    Started(TransferStart),
    Marker(MarkerMsg),
    Finished {
        result: Result<TransferDone, TransferError>,
        commit: Option<Commit>,
        keep: Keep,
    },
}

/// A 111/112 marker to send while a transfer runs.
pub(crate) enum MarkerMsg {
    Perf(crate::proto::PerfMarker),
    Range(crate::proto::RangeSet),
}

/// Which way data went on a set of MODE E connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    Send,
    Recv,
}

/// MODE E data connections kept open between transfers (data-channel reuse).
pub(crate) struct Channels {
    pub dir: Dir,
    pub socks: Vec<crate::tls::DataStream>,
}

/// What a finished transfer hands back to its connection for the next one.
#[derive(Default)]
pub(crate) struct Keep {
    pub channels: Option<Channels>,
    pub passive: Option<TcpListener>,
}

/// A completed STOR's partial file, to be renamed over its target once the control
/// connection confirms the client is still there.
pub(crate) struct Commit {
    pub dir: OwnedFd,
    pub partial: String,
    pub target: String,
    pub _lock: Flock<File>,
    /// A MODE E upload: its range record goes once the file is in place.
    pub record: bool,
}

/// Everything a transfer task needs.
pub(crate) struct Ctx {
    pub shared: Arc<Shared>,
    pub root: Arc<Root>,
    pub peer: SocketAddr,
    /// The control connection's local address: outgoing data connections leave from it.
    pub local: IpAddr,
    /// Which hosts this session's data connections may use (taken when the transfer began).
    pub policy: DataPolicy,
    pub passive: Option<TcpListener>,
    pub channels: Option<Channels>,
    pub data_timeout: Duration,
    pub cancel: CancelToken,
    pub writable: bool,
    pub events: mpsc::UnboundedSender<Event>,
    /// `PROT P`: how data connections are protected (`None`: clear).
    pub tls: Option<DataTls>,
}

/// How a `PROT P` session's data connections are protected, taken when the transfer began.
#[derive(Clone, Debug)]
pub(crate) struct DataTls {
    /// The control connection's TLS settings (its own session cache).
    pub session: crate::tls::SessionTls,
    /// Data connections must resume the control connection's session.
    pub require_resume: bool,
    /// `SSCN ON`: this server is the TLS client on data connections (server-to-server
    /// transfers); the peer server is not authenticated beyond the data policy (`DCAU N`).
    pub client: Option<crate::tls::ClientTls>,
}

/// Makes a data connection what the session asked for: clear, or TLS (server side unless
/// `SSCN ON`), checking resumption. Blocking: run it on the I/O pool.
pub(crate) fn protect(
    tls: Option<&DataTls>,
    sock: std::net::TcpStream,
    timeout: Duration,
) -> Result<crate::tls::DataStream, TransferError> {
    let Some(t) = tls else {
        return Ok(crate::tls::DataStream::Plain(sock));
    };
    let r = match &t.client {
        Some(c) => {
            let host = sock
                .peer_addr()
                .map(|a| a.ip().to_string())
                .map_err(|e| TransferError::CannotOpenData(e.to_string()))?;
            c.connect(&host, sock, timeout)
        }
        None => t.session.accept_data(sock, t.require_resume, timeout),
    };
    r.map_err(|e| {
        tracing::warn!(error = %e, "ftpd: TLS on a data connection failed");
        TransferError::CannotOpenData(format!("TLS: {e}"))
    })
}

impl Ctx {
    /// Keeps MODE E connections that may carry the next transfer (none: nothing to keep).
    pub(crate) fn keep_channels(&mut self, dir: Dir, socks: Vec<crate::tls::DataStream>) {
        if !socks.is_empty() {
            self.channels = Some(Channels { dir, socks });
        }
    }
}

pub(crate) enum Prepared {
    Retr {
        file: File,
        offset: u64,
        len: u64,
    },
    Stor {
        file: Flock<File>,
        offset: u64,
        commit: Option<(OwnedFd, String, String)>,
        name: Option<String>,
    },
    List(Vec<u8>),
}

fn fs_err(kind: FsErrorKind, msg: &str) -> TransferError {
    TransferError::Fs(FsError {
        kind,
        message: msg.to_string(),
    })
}

fn lock(f: File) -> Result<Flock<File>, TransferError> {
    Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        if e == nix::Error::EWOULDBLOCK {
            fs_err(
                FsErrorKind::Busy,
                "File busy: another upload is writing it.",
            )
        } else {
            TransferError::Fs(std::io::Error::from(e).into())
        }
    })
}

pub(crate) fn prepare(root: &Root, job: &Job, writable: bool) -> Result<Prepared, TransferError> {
    let fs = |e: std::io::Error| TransferError::Fs(e.into());
    match job {
        Job::Retr(r) => {
            let file = root.open_read(&r.path).map_err(fs)?;
            let size = file.metadata().map_err(fs)?.len();
            if r.offset > size {
                return Err(fs_err(
                    FsErrorKind::Unsupported,
                    "Restart offset beyond end of file.",
                ));
            }
            let len = match r.length {
                Some(l) => l.min(size - r.offset),
                None => size - r.offset,
            };
            Ok(Prepared::Retr {
                file,
                offset: r.offset,
                len,
            })
        }
        Job::Stor(s) => match s.kind {
            StoreKind::Replace if s.restart.is_some() => {
                // REST with a range list (MODE E): the client resumes an upload whose ranges
                // this server holds in the partial file; keep it as it is.
                let (file, dir, target) = root.open_partial(&s.path).map_err(fs)?;
                let file = lock(file)?;
                let have = file.metadata().map_err(fs)?.len();
                let end = s
                    .restart
                    .as_ref()
                    .and_then(|r| r.ranges().last().map(|r| r.1))
                    .unwrap_or(0);
                // With a range record, the client may name only ranges it lists.
                let recorded = super::fs::read_partial_ranges(&dir, &target).map_err(fs)?;
                let unrecorded = match (&recorded, &s.restart) {
                    (Some(rec), Some(r)) => r.ranges().iter().any(|&(a, b)| !rec.covers(a, b)),
                    _ => false,
                };
                if end > have || unrecorded {
                    return Err(fs_err(
                        FsErrorKind::Unsupported,
                        "Restart ranges beyond the data uploaded so far.",
                    ));
                }
                let partial = super::fs::partial_name(&target);
                Ok(Prepared::Stor {
                    file,
                    offset: 0,
                    commit: Some((dir, partial, target)),
                    name: None,
                })
            }
            StoreKind::Replace => {
                let (file, dir, target) = root.open_partial(&s.path).map_err(fs)?;
                let file = lock(file)?;
                // A MODE E partial holds, without a hole, only what its record says.
                let recorded = super::fs::read_partial_ranges(&dir, &target).map_err(fs)?;
                let len = file.metadata().map_err(fs)?.len();
                let have = super::fs::held_prefix(recorded.as_ref(), len);
                if s.offset == 0 || s.offset <= have {
                    // A fresh upload, or a resume of data the partial already holds. Cut
                    // first, then drop the record: 0..offset has no hole either way.
                    file.set_len(s.offset).map_err(fs)?;
                    if recorded.is_some() {
                        super::fs::remove_partial_ranges(&dir, &target).map_err(fs)?;
                    }
                } else if have == 0 && recorded.is_none() {
                    // No partial: resume on top of the first `offset` bytes of the old file.
                    let old = Root::open_in(&dir, &target).map_err(|_| {
                        fs_err(
                            FsErrorKind::Unsupported,
                            "Restart offset beyond the data uploaded so far.",
                        )
                    })?;
                    let old_len = old.metadata().map_err(fs)?.len();
                    if !old.metadata().map_err(fs)?.is_file() || old_len < s.offset {
                        return Err(fs_err(
                            FsErrorKind::Unsupported,
                            "Restart offset beyond the data uploaded so far.",
                        ));
                    }
                    gridos_io::file_copy(&old, 0, &file, 0, Some(s.offset))
                        .map_err(|e| TransferError::Local(e.to_string()))?;
                } else {
                    return Err(fs_err(
                        FsErrorKind::Unsupported,
                        "Restart offset beyond the data uploaded so far.",
                    ));
                }
                if let Some(n) = s.allocate.filter(|&n| n > 0) {
                    reserve(&file, s.offset, n)?;
                }
                let partial = super::fs::partial_name(&target);
                Ok(Prepared::Stor {
                    file,
                    offset: s.offset,
                    commit: Some((dir, partial, target)),
                    name: None,
                })
            }
            StoreKind::Append => {
                let file = lock(root.open_append(&s.path).map_err(fs)?)?;
                let offset = file.metadata().map_err(fs)?.len();
                Ok(Prepared::Stor {
                    file,
                    offset,
                    commit: None,
                    name: None,
                })
            }
            StoreKind::Unique => {
                let (file, name) = root.create_unique(&s.path).map_err(fs)?;
                Ok(Prepared::Stor {
                    file: lock(file)?,
                    offset: 0,
                    commit: None,
                    name: Some(name),
                })
            }
            StoreKind::Adjusted => {
                // ESTO A: blocks land at their offset plus the adjustment, in place.
                let file = lock(root.open_append(&s.path).map_err(fs)?)?;
                Ok(Prepared::Stor {
                    file,
                    offset: s.offset,
                    commit: None,
                    name: None,
                })
            }
        },
        Job::List(l) => root
            .listing(&l.path, l.kind, &l.facts, writable)
            .map(Prepared::List)
            .map_err(fs),
    }
}

/// ALLO: reserves `len` bytes from `offset` without changing the file's size, so the upload
/// writes into allocated blocks (a fresh file on ext4 writes markedly faster so) and a disk
/// too full for it is refused (452) before any byte moves. File systems without fallocate
/// simply skip it.
fn reserve(file: &File, offset: u64, len: u64) -> Result<(), TransferError> {
    use nix::fcntl::{FallocateFlags, fallocate};
    let (Ok(off), Ok(n)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(TransferError::Fs(FsError::new(FsErrorKind::StorageFull)));
    };
    match fallocate(file, FallocateFlags::FALLOC_FL_KEEP_SIZE, off, n) {
        Ok(()) => Ok(()),
        Err(nix::Error::ENOSPC | nix::Error::EFBIG) => {
            Err(TransferError::Fs(FsError::new(FsErrorKind::StorageFull)))
        }
        Err(e) => {
            tracing::debug!(error = %e, "ftpd: ALLO not reserved (fallocate)");
            Ok(())
        }
    }
}

fn map_sock(e: std::io::Error) -> TransferError {
    TransferError::ConnectionClosed(e.to_string())
}

const CHUNK: usize = 64 * 1024;

/// How often blocking user-space loops wake up to look at the cancel token.
const WAKE: Duration = Duration::from_millis(100);

fn would_block(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

/// `write_all` that honours cancellation (the socket has a [`WAKE`] write timeout) and
/// counts what it wrote in `progress` (the stall watchdog reads it).
fn write_all(
    mut sock: &std::net::TcpStream,
    mut buf: &[u8],
    cancel: &CancelToken,
    progress: Option<&AtomicU64>,
) -> Result<(), TransferError> {
    let _ = sock.set_write_timeout(Some(WAKE));
    while !buf.is_empty() {
        if cancel.is_cancelled() {
            return Err(TransferError::Aborted);
        }
        match sock.write(buf) {
            Ok(0) => return Err(TransferError::ConnectionClosed("write returned 0".into())),
            Ok(n) => {
                buf = &buf[n..];
                if let Some(p) = progress {
                    p.fetch_add(n as u64, Relaxed);
                }
            }
            Err(e) if would_block(&e) => {}
            Err(e) => return Err(map_sock(e)),
        }
    }
    Ok(())
}

/// TYPE A retrieve: LF → CRLF.
fn send_ascii(
    file: &File,
    mut offset: u64,
    len: u64,
    w: &mut impl Write,
    cancel: &CancelToken,
) -> Result<u64, TransferError> {
    let end = offset.saturating_add(len);
    let mut buf = vec![0u8; CHUNK];
    let mut out = Vec::with_capacity(2 * CHUNK);
    let mut sent = 0u64;
    while offset < end {
        if cancel.is_cancelled() {
            return Err(TransferError::Aborted);
        }
        let want = ((end - offset) as usize).min(CHUNK);
        let n = gridos_io::file_read(file, offset, &mut buf[..want]).map_err(map_io)?;
        if n == 0 {
            break;
        }
        out.clear();
        for &b in &buf[..n] {
            if b == b'\n' {
                out.push(b'\r');
            }
            out.push(b);
        }
        w.write_all(&out).map_err(|e| wire_err(e, cancel))?;
        offset += n as u64;
        sent += out.len() as u64;
    }
    Ok(sent)
}

/// TYPE A store: CRLF → LF (a CR at a chunk's end waits for the next chunk).
fn recv_ascii(
    r: &mut impl Read,
    file: &File,
    mut offset: u64,
    cancel: &CancelToken,
) -> Result<u64, TransferError> {
    let mut buf = vec![0u8; CHUNK];
    let mut out = Vec::with_capacity(CHUNK + 1);
    let mut pending_cr = false;
    let mut got = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(wire_err(e, cancel)),
        };
        got += n as u64;
        out.clear();
        for &b in &buf[..n] {
            if pending_cr {
                pending_cr = false;
                if b != b'\n' {
                    out.push(b'\r');
                }
            }
            if b == b'\r' {
                pending_cr = true;
            } else {
                out.push(b);
            }
        }
        gridos_io::file_write(file, offset, &out).map_err(map_io)?;
        offset += out.len() as u64;
    }
    if pending_cr {
        gridos_io::file_write(file, offset, b"\r").map_err(map_io)?;
    }
    Ok(got)
}

/// Runs `f` on the I/O pool and awaits its result without blocking the runtime.
pub(crate) async fn on_pool<T: Send + 'static>(
    shared: &Shared,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TransferError> {
    let (tx, rx) = oneshot::channel();
    drop(shared.io_pool.spawn(move || {
        let _ = tx.send(f());
    }));
    rx.await
        .map_err(|_| TransferError::Local("I/O pool job failed".into()))
}

pub(crate) async fn cancelled(c: &CancelToken) {
    while !c.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Accepts one data connection on the passive listener, from an address the session's data
/// policy allows (the client's, or another for third-party transfers; anyone else is reset
/// and counted). The listener stays in `ctx.passive` (MODE E may accept more later).
pub(crate) async fn accept_one(ctx: &mut Ctx) -> Result<std::net::TcpStream, TransferError> {
    let Some(listener) = ctx.passive.as_ref() else {
        return Err(TransferError::CannotOpenData("no passive listener".into()));
    };
    let deadline = tokio::time::Instant::now() + ctx.data_timeout;
    let mut refused = None;
    let s = loop {
        let r = tokio::select! {
            r = tokio::time::timeout_at(deadline, listener.accept()) => r,
            // Aborted after turning a host away: the data connection could not be made (425),
            // which tells a third-party client the direct connection was refused.
            _ = cancelled(&ctx.cancel) => return Err(match refused {
                Some(from) => refused_error(from),
                None => TransferError::Aborted,
            }),
        };
        match r {
            Err(_) => {
                return Err(TransferError::CannotOpenData(
                    "timed out waiting for the data connection".into(),
                ));
            }
            Ok(Err(e)) => return Err(TransferError::CannotOpenData(e.to_string())),
            Ok(Ok((s, from))) => {
                if !ctx.policy.allows_peer(from.ip()) {
                    tracing::warn!(%from, peer = %ctx.peer, "ftpd: refused a data connection from a foreign address");
                    ctx.shared.stats.data_refused.fetch_add(1, Relaxed);
                    crate::blocks::refuse(&s);
                    refused = Some(from);
                    continue;
                }
                if ctx.policy.is_foreign(from.ip()) {
                    tracing::info!(%from, peer = %ctx.peer, "ftpd: third-party data connection accepted");
                }
                break s;
            }
        }
    };
    to_std(s)
}

/// The failure of a transfer that turned away a data connection from `from` and got none.
pub(crate) fn refused_error(from: SocketAddr) -> TransferError {
    TransferError::CannotOpenData(format!(
        "refused a data connection from {from}: not allowed for this session"
    ))
}

/// SBUF: both socket buffers of a data connection (forced past the system maximum when the
/// server holds CAP_NET_ADMIN, capped by `io.max_buffer`).
pub(crate) fn apply_sbuf(s: &std::net::TcpStream, n: u64) {
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    let Ok(dup) = s.try_clone() else { return };
    let g = GridSocket::from(dup);
    for opt in [
        gridos_io::BufferOpt::SendBuffer(n),
        gridos_io::BufferOpt::RecvBuffer(n),
    ] {
        if let Err(e) = g.buffer_setopt(opt) {
            tracing::debug!(error = %e, "ftpd: SBUF not applied");
        }
    }
}

/// SCKS: the stored data must have the checksum the client announced.
pub(crate) fn verify_expected(
    file: &File,
    expected: &(Option<String>, String),
) -> Result<(), TransferError> {
    use crate::checksum::{Algorithm, file_checksum};
    let alg = expected
        .0
        .as_deref()
        .map_or(Some(Algorithm::Md5), Algorithm::parse)
        .ok_or_else(|| TransferError::Local("unknown checksum algorithm".into()))?;
    let got = file_checksum(file, alg, 0, None, None)
        .map_err(|e| TransferError::Local(format!("checksum: {e}")))?;
    if !got.eq_ignore_ascii_case(expected.1.trim()) {
        tracing::warn!(expected = %expected.1, %got, "ftpd: stored data does not match the SCKS checksum");
        return Err(TransferError::BadData(format!(
            "checksum mismatch: expected {}, got {got}",
            expected.1
        )));
    }
    Ok(())
}

async fn data_connection(
    ctx: &mut Ctx,
    data: &DataEndpoint,
) -> Result<std::net::TcpStream, TransferError> {
    let timeout = ctx.data_timeout;
    let stream = match data {
        DataEndpoint::Passive => {
            let s = accept_one(ctx).await;
            // Stream mode: one connection per listener.
            ctx.passive = None;
            return s;
        }
        DataEndpoint::Active(addrs) => {
            let Some(addr) = addrs.first().copied() else {
                return Err(TransferError::CannotOpenData("no address".into()));
            };
            tokio::select! {
                r = tokio::time::timeout(timeout, connect_from(ctx.local, addr)) => match r {
                    Err(_) => return Err(TransferError::CannotOpenData("connect timed out".into())),
                    Ok(Err(e)) => return Err(TransferError::CannotOpenData(e.to_string())),
                    Ok(Ok(s)) => s,
                },
                _ = cancelled(&ctx.cancel) => return Err(TransferError::Aborted),
            }
        }
    };
    to_std(stream)
}

/// Connects a data connection to `addr` from `local` (the control connection's local
/// address, port chosen by the kernel): without the bind the kernel would pick the source
/// by route, which on a multi-homed host (or between 127.x addresses) is another address
/// than the one the client and the peer server know this server by.
pub(crate) async fn connect_from(local: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let (local, addr) = (
        local.to_canonical(),
        SocketAddr::new(addr.ip().to_canonical(), addr.port()),
    );
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if local.is_ipv4() == addr.is_ipv4() && !local.is_unspecified() {
        sock.bind(SocketAddr::new(local, 0))?;
    }
    sock.connect(addr).await
}

/// Runs one transfer and reports to the connection.
pub(crate) async fn run(mut ctx: Ctx, job: Job) {
    let mode = match &job {
        Job::Retr(r) => r.params.mode,
        Job::Stor(s) => s.params.mode,
        Job::List(l) => l.params.mode,
    };
    let extended = mode == TransferMode::Extended;
    if !extended {
        // Stream-mode connections are single use; cached MODE E ones cannot carry it.
        ctx.channels = None;
    }
    let stats = &ctx.shared.stats;
    stats.transfers_active.fetch_add(1, Relaxed);
    let (result, commit) = if extended {
        super::extended::run_inner(&mut ctx, job).await
    } else {
        run_inner(&mut ctx, job).await
    };
    let stats = &ctx.shared.stats;
    stats.transfers_active.fetch_sub(1, Relaxed);
    match &result {
        Ok(_) => stats.transfers_ok.fetch_add(1, Relaxed),
        Err(_) => stats.transfers_failed.fetch_add(1, Relaxed),
    };
    // MODE E keeps its connections (and passive listener) for the next transfer.
    let keep = if extended {
        Keep {
            channels: ctx.channels.take(),
            passive: ctx.passive.take(),
        }
    } else {
        Keep::default()
    };
    let _ = ctx.events.send(Event::Finished {
        result,
        commit,
        keep,
    });
}

async fn run_inner(
    ctx: &mut Ctx,
    job: Job,
) -> (Result<TransferDone, TransferError>, Option<Commit>) {
    let (data, ascii, deflate, sbuf) = match &job {
        Job::Retr(r) => (
            r.data.clone(),
            matches!(r.params.ty, TransferType::Ascii(_)),
            r.params.mode == TransferMode::Deflate,
            r.params.buffer_size,
        ),
        Job::Stor(s) => (
            s.data.clone(),
            matches!(s.params.ty, TransferType::Ascii(_)),
            s.params.mode == TransferMode::Deflate,
            s.params.buffer_size,
        ),
        Job::List(l) => (
            l.data.clone(),
            false,
            l.params.mode == TransferMode::Deflate,
            None,
        ),
    };
    let expected = match &job {
        Job::Stor(s) => s.expected_checksum.clone(),
        _ => None,
    };
    let root = Arc::clone(&ctx.root);
    let writable = ctx.writable;
    let prepared = match on_pool(&ctx.shared, move || prepare(&root, &job, writable)).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) | Err(e) => return (Err(e), None),
    };
    let sock = match data_connection(ctx, &data).await {
        Ok(s) => s,
        Err(e) => return (Err(e), None),
    };
    if let Some(n) = sbuf {
        apply_sbuf(&sock, n);
    }
    let start = match &prepared {
        Prepared::Retr { len, .. } => TransferStart {
            reused: false,
            size: (!ascii).then_some(*len),
            name: None,
        },
        Prepared::Stor { name, .. } => TransferStart {
            reused: false,
            size: None,
            name: name.clone(),
        },
        Prepared::List(_) => TransferStart::default(),
    };
    let _ = ctx.events.send(Event::Started(start));
    // PROT P: the handshake follows the 150 (the client starts it once it has read that).
    let tls = ctx.tls.clone();
    let timeout = ctx.data_timeout;
    let stream = match on_pool(&ctx.shared, move || protect(tls.as_ref(), sock, timeout)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) | Err(e) => {
            ctx.shared.stats.data_tls_failed.fetch_add(1, Relaxed);
            return (Err(e), None);
        }
    };
    // This transfer's own token: ABOR reaches it through the watchdog, which also cancels a
    // transfer (any TYPE, listings too) that moves no byte for the data timeout, so a client
    // that never reads its data connection holds no I/O thread for longer.
    let cancel = CancelToken::new();
    let progress = Arc::new(AtomicU64::new(0));
    let stalled = Arc::new(AtomicBool::new(false));
    let watchdog = tokio::spawn(watchdog(
        ctx.cancel.clone(),
        cancel.clone(),
        Some(Arc::clone(&progress)),
        ctx.data_timeout,
        Arc::clone(&stalled),
    ));
    let how = How {
        ascii,
        deflate,
        expected,
        finish_timeout: ctx.data_timeout,
    };
    let moved = on_pool(&ctx.shared, move || {
        move_data(prepared, stream, how, cancel, progress)
    })
    .await;
    watchdog.abort();
    let moved = stall_verdict(moved, &stalled, ctx.data_timeout);
    let stats = &ctx.shared.stats;
    match moved {
        Ok(Ok((sent, received, commit))) => {
            stats.bytes_sent.fetch_add(sent, Relaxed);
            stats.bytes_received.fetch_add(received, Relaxed);
            (
                Ok(TransferDone {
                    bytes: sent + received,
                }),
                commit,
            )
        }
        Ok(Err(e)) | Err(e) => (Err(e), None),
    }
}

type Moved = (u64, u64, Option<Commit>);

/// A transfer the watchdog cut for moving no byte reads as a broken connection (426), not as
/// an ABOR.
pub(crate) fn stall_verdict<T>(
    moved: Result<Result<T, TransferError>, TransferError>,
    stalled: &AtomicBool,
    timeout: Duration,
) -> Result<Result<T, TransferError>, TransferError> {
    match moved {
        Ok(Err(TransferError::Aborted)) if stalled.load(Relaxed) => Ok(Err(
            TransferError::ConnectionClosed(format!("no data moved for {} s", timeout.as_secs())),
        )),
        other => other,
    }
}

/// A data connection accepted or connected by tokio, made a blocking std stream for the I/O
/// pool, with Nagle off.
pub(crate) fn to_std(s: TcpStream) -> Result<std::net::TcpStream, TransferError> {
    let s = s
        .into_std()
        .map_err(|e| TransferError::CannotOpenData(e.to_string()))?;
    s.set_nonblocking(false)
        .map_err(|e| TransferError::CannotOpenData(e.to_string()))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// Forwards ABOR (`abor`) to the transfer's token and, when `progress` is given, cancels a
/// transfer whose byte count has not moved for `timeout` (marking it `stalled`).
pub(crate) async fn watchdog(
    abor: CancelToken,
    cancel: CancelToken,
    progress: Option<Arc<AtomicU64>>,
    timeout: Duration,
    stalled: Arc<AtomicBool>,
) {
    let mut last = (0u64, tokio::time::Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if abor.is_cancelled() {
            cancel.cancel();
            return;
        }
        let Some(p) = &progress else { continue };
        let now = p.load(Relaxed);
        if now != last.0 {
            last = (now, tokio::time::Instant::now());
        } else if last.1.elapsed() >= timeout {
            stalled.store(true, Relaxed);
            cancel.cancel();
            return;
        }
    }
}

/// How a stream-mode transfer's bytes are represented.
struct How {
    ascii: bool,
    /// MODE Z: one zlib stream on the data connection.
    deflate: bool,
    /// SCKS: checksum the stored file must have.
    expected: Option<(Option<String>, String)>,
    /// TLS: how long the close_notify at the end may take to go out.
    finish_timeout: Duration,
}

const ZLIB: gridos_io::compress::Compression = gridos_io::compress::Compression {
    codec: gridos_io::compress::Codec::Zlib,
    level: 6,
};

fn move_data(
    p: Prepared,
    stream: DataStream,
    how: How,
    cancel: CancelToken,
    progress: Arc<AtomicU64>,
) -> Result<Moved, TransferError> {
    match stream.into_plain() {
        Ok(sock) => move_plain(p, sock, how, cancel, progress),
        Err(tls) => move_tls(p, tls, how, &cancel, &progress),
    }
}

/// A clear data connection: the zero-copy path (TYPE I), user space for TYPE A and MODE Z.
fn move_plain(
    p: Prepared,
    sock: std::net::TcpStream,
    how: How,
    cancel: CancelToken,
    progress: Arc<AtomicU64>,
) -> Result<Moved, TransferError> {
    let ascii = how.ascii;
    let sock = GridSocket::from(sock);
    if let Err(e) = sock.apply_defaults() {
        tracing::debug!(error = %e, "ftpd: socket buffer defaults not applied");
    }
    let opts = TransferOptions {
        cancel: Some(cancel.clone()),
        progress: Some(Arc::clone(&progress)),
        ..Default::default()
    };
    match p {
        Prepared::Retr { file, offset, len } => {
            let n = if ascii {
                wake_timeouts(sock.stream());
                let mut w = Guarded::new(sock.stream(), &cancel, Some(&progress));
                send_ascii(&file, offset, len, &mut w, &cancel)?
            } else if how.deflate {
                gridos_io::compress::send_compressed(&file, offset, len, &sock, ZLIB, &opts)
                    .map_err(map_io)?
                    .bytes
            } else {
                gridos_io::send_file(&file, offset, len, &sock, &opts)
                    .map_err(map_io)?
                    .bytes
            };
            Ok((n, 0, None))
        }
        Prepared::Stor {
            file,
            offset,
            commit,
            ..
        } => {
            let n = if ascii {
                wake_timeouts(sock.stream());
                let mut r = Guarded::new(sock.stream(), &cancel, Some(&progress));
                recv_ascii(&mut r, &file, offset, &cancel)?
            } else if how.deflate {
                gridos_io::compress::recv_decompressed(&sock, &file, offset, ZLIB, &opts)
                    .map_err(|e| match e {
                        gridos_io::Error::Compression(_) => TransferError::BadData(e.to_string()),
                        e => map_io(e),
                    })?
                    .bytes
            } else {
                // The size is not known here (ALLO is optional): `auto` write-behind starts
                // once the upload is large.
                let opts = TransferOptions {
                    write_behind: gridos_io::WriteBehind::for_file(&file, None),
                    ..opts
                };
                gridos_io::recv_file(&sock, &file, offset, None, &opts)
                    .map_err(map_io)?
                    .bytes
            };
            if let Some(exp) = &how.expected {
                verify_expected(&file, exp)?;
            }
            let commit = Commit::of(commit, file);
            Ok((0, n, commit))
        }
        Prepared::List(bytes) => {
            if how.deflate {
                let mut enc =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                std::io::Write::write_all(&mut enc, &bytes)
                    .and_then(|_| enc.finish())
                    .map_err(|e| TransferError::Local(e.to_string()))
                    .and_then(|z| write_all(sock.stream(), &z, &cancel, Some(&progress)))?;
            } else {
                write_all(sock.stream(), &bytes, &cancel, Some(&progress))?;
            }
            Ok((bytes.len() as u64, 0, None))
        }
    }
}

/// Plaintext bytes per read from the file or the TLS stream: large, so rustls fills whole
/// 16 KiB records and the loop wakes rarely.
const TLS_CHUNK: usize = 512 * 1024;

/// Both socket timeouts at [`WAKE`], so blocking loops see cancellation in time.
fn wake_timeouts(s: &std::net::TcpStream) {
    let _ = s.set_read_timeout(Some(WAKE));
    let _ = s.set_write_timeout(Some(WAKE));
}

/// Why a [`Guarded`] stopped: the transfer was cancelled.
#[derive(Debug)]
struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("transfer cancelled")
    }
}

impl std::error::Error for Cancelled {}

/// The transfer error for a failed read or write on the data connection.
fn wire_err(e: std::io::Error, cancel: &CancelToken) -> TransferError {
    if cancel.is_cancelled() || e.get_ref().is_some_and(|i| i.is::<Cancelled>()) {
        TransferError::Aborted
    } else {
        map_sock(e)
    }
}

/// A data connection (its socket at [`WAKE`] timeouts) as `Read + Write` for the user-space
/// loops: waits out the timeouts, stops once cancelled, counts the bytes into `progress`
/// (the stall watchdog reads it). With `lenient_eof`, a TLS stream that ends without
/// close_notify reads as a plain end, as vsftpd accepts by default: some clients just close
/// after an upload. (Not from a peer server under `SSCN ON`: a server always ends with
/// close_notify, and one that refused the connection just closes it.)
struct Guarded<'a, S> {
    s: S,
    cancel: &'a CancelToken,
    progress: Option<&'a AtomicU64>,
    lenient_eof: bool,
    unclean_eof: bool,
}

impl<'a, S> Guarded<'a, S> {
    fn new(s: S, cancel: &'a CancelToken, progress: Option<&'a AtomicU64>) -> Self {
        Guarded {
            s,
            cancel,
            progress,
            lenient_eof: true,
            unclean_eof: false,
        }
    }

    fn check(&self) -> std::io::Result<()> {
        if self.cancel.is_cancelled() {
            return Err(std::io::Error::other(Cancelled));
        }
        Ok(())
    }

    fn count(&self, n: usize) {
        if let Some(p) = self.progress {
            p.fetch_add(n as u64, Relaxed);
        }
    }
}

impl<S: Read> Read for Guarded<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            self.check()?;
            match self.s.read(buf) {
                Ok(n) => {
                    self.count(n);
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && self.lenient_eof => {
                    self.unclean_eof = true;
                    return Ok(0);
                }
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl<S: Write> Write for Guarded<'_, S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            self.check()?;
            match self.s.write(buf) {
                Ok(n) => {
                    self.count(n);
                    return Ok(n);
                }
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        loop {
            self.check()?;
            match self.s.flush() {
                Ok(()) => return Ok(()),
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Sends `len` bytes of `file` from `offset` into `w` in [`TLS_CHUNK`] reads.
fn send_range(
    file: &File,
    offset: u64,
    len: u64,
    w: &mut impl Write,
    cancel: &CancelToken,
) -> Result<u64, TransferError> {
    let mut buf = vec![0u8; TLS_CHUNK];
    let end = offset.saturating_add(len);
    let mut at = offset;
    while at < end {
        let want = ((end - at) as usize).min(TLS_CHUNK);
        let n = gridos_io::file_read(file, at, &mut buf[..want]).map_err(map_io)?;
        if n == 0 {
            break;
        }
        w.write_all(&buf[..n]).map_err(|e| wire_err(e, cancel))?;
        at += n as u64;
    }
    Ok(at - offset)
}

/// Writes everything read from `r` into `file` from `offset`, in [`TLS_CHUNK`] pieces (a
/// TLS read gives a record or two; one write per piece keeps the file writes few). What
/// arrived before a failure is written too, so a resumed upload finds it. A decoder's
/// complaint about its input is bad data (426), a cut stream a broken connection.
fn recv_range(
    r: &mut impl Read,
    file: &File,
    offset: u64,
    cancel: &CancelToken,
) -> Result<u64, TransferError> {
    let mut buf = vec![0u8; TLS_CHUNK];
    let mut got = 0u64;
    let wb = gridos_io::WriteBehind::for_file(file, None);
    loop {
        let mut filled = 0;
        let mut end = Ok(false);
        while filled < buf.len() {
            match r.read(&mut buf[filled..]) {
                Ok(0) => {
                    end = Ok(true);
                    break;
                }
                Ok(n) => filled += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
                    ) =>
                {
                    end = Err(TransferError::BadData(e.to_string()));
                    break;
                }
                Err(e) => {
                    end = Err(wire_err(e, cancel));
                    break;
                }
            }
        }
        if filled > 0 {
            gridos_io::file_write(file, offset + got, &buf[..filled]).map_err(map_io)?;
            if let Some(wb) = &wb {
                wb.landed(offset + got, filled as u64);
            }
            got += filled as u64;
        }
        if end? {
            return Ok(got);
        }
    }
}

/// Ends a TLS data stream: what is buffered, then close_notify and a half-close, with the
/// socket back to blocking waits of `timeout` (the close_notify must not be lost to a
/// [`WAKE`] timeout).
fn finish_tls(
    w: &mut Guarded<'_, &mut DataStream>,
    timeout: Duration,
) -> Result<(), TransferError> {
    w.flush().map_err(|e| wire_err(e, w.cancel))?;
    let _ = w.s.tcp().set_write_timeout(Some(timeout));
    w.s.finish().map_err(map_sock)
}

/// A `PROT P` data connection: user-space loops over rustls, the same transfer rules as the
/// clear path (TYPE A, MODE Z, REST, ALLO, SCKS, progress, cancellation).
fn move_tls(
    p: Prepared,
    mut stream: DataStream,
    how: How,
    cancel: &CancelToken,
    progress: &AtomicU64,
) -> Result<Moved, TransferError> {
    if let Ok(dup) = stream.tcp().try_clone() {
        if let Err(e) = GridSocket::from(dup).apply_defaults() {
            tracing::debug!(error = %e, "ftpd: socket buffer defaults not applied");
        }
    }
    wake_timeouts(stream.tcp());
    // Room for a whole piece as records: one write of plaintext, one writev of TLS.
    let limit = Some(TLS_CHUNK + (64 << 10));
    match &mut stream {
        DataStream::Server(t) => t.conn.set_buffer_limit(limit),
        DataStream::Client(t) => t.conn.set_buffer_limit(limit),
        DataStream::Plain(_) => {}
    }
    let lenient_eof = matches!(stream, DataStream::Server(_));
    let mut w = Guarded::new(&mut stream, cancel, Some(progress));
    w.lenient_eof = lenient_eof;
    match p {
        Prepared::Retr { file, offset, len } => {
            let n = if how.ascii {
                send_ascii(&file, offset, len, &mut w, cancel)?
            } else if how.deflate {
                let mut enc = flate2::write::ZlibEncoder::new(&mut w, flate2::Compression::new(6));
                let n = send_range(&file, offset, len, &mut enc, cancel)?;
                enc.finish().map_err(|e| wire_err(e, cancel))?;
                n
            } else {
                send_range(&file, offset, len, &mut w, cancel)?
            };
            finish_tls(&mut w, how.finish_timeout)?;
            Ok((n, 0, None))
        }
        Prepared::Stor {
            file,
            offset,
            commit,
            ..
        } => {
            let n = if how.ascii {
                recv_ascii(&mut w, &file, offset, cancel)?
            } else if how.deflate {
                let mut dec = flate2::read::ZlibDecoder::new(&mut w);
                recv_range(&mut dec, &file, offset, cancel)?
            } else {
                recv_range(&mut w, &file, offset, cancel)?
            };
            if w.unclean_eof {
                tracing::debug!("ftpd: upload ended without TLS close_notify; accepted");
            }
            // Answer the client's close_notify (OpenSSL clients wait for it); the data is
            // complete whatever happens to this.
            if let Err(e) = finish_tls(&mut w, how.finish_timeout) {
                tracing::debug!(error = ?e, "ftpd: close_notify after an upload not sent");
            }
            if let Some(exp) = &how.expected {
                verify_expected(&file, exp)?;
            }
            let commit = Commit::of(commit, file);
            Ok((0, n, commit))
        }
        Prepared::List(bytes) => {
            if how.deflate {
                let mut enc =
                    flate2::write::ZlibEncoder::new(&mut w, flate2::Compression::default());
                enc.write_all(&bytes)
                    .and_then(|_| enc.finish().map(|_| ()))
                    .map_err(|e| wire_err(e, cancel))?;
            } else {
                w.write_all(&bytes).map_err(|e| wire_err(e, cancel))?;
            }
            finish_tls(&mut w, how.finish_timeout)?;
            Ok((bytes.len() as u64, 0, None))
        }
    }
}

impl Commit {
    /// The commit of a finished upload into a partial file (`None`: the upload wrote its
    /// target in place), holding the file's lock until it is applied.
    pub(crate) fn of(
        parts: Option<(OwnedFd, String, String)>,
        file: Flock<File>,
    ) -> Option<Commit> {
        parts.map(|(dir, partial, target)| Commit {
            dir,
            partial,
            target,
            _lock: file,
            record: false,
        })
    }

    /// Renames the partial over the target (first giving back any ALLO reservation past the
    /// data: truncating to the size it has frees blocks kept beyond the end).
    pub(crate) fn apply(self) -> std::io::Result<()> {
        let len = self._lock.metadata()?.len();
        self._lock.set_len(len)?;
        Root::rename_in(&self.dir, &self.partial, &self.target)?;
        if self.record {
            // A record left by a crash here names no partial: SIZE ignores it, and the
            // next upload of the name replaces it.
            if let Err(e) = super::fs::remove_partial_ranges(&self.dir, &self.target) {
                tracing::warn!(error = %e, file = %self.target, "ftpd: range record not removed");
            }
        }
        Ok(())
    }
}
