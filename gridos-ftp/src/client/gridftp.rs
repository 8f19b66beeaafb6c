//! The client side of the GridFTP extensions (GFD.20): MODE E transfers over parallel data
//! connections, partial transfers (ERET/ESTO), REST range lists, SBUF, CKSM, data-channel
//! reuse and pipelined batches of small files.
//!
//! MODE E's direction rule decides who connects: the sender of the data. So a download
//! listens (PORT/EPRT) and the server connects its streams to us; an upload asks for a
//! passive address (PASV/EPSV) and connects its own streams. Connections that ended with EOD
//! stay open for the next transfer in the same direction (the server then answers 125).
//!
//! Every data connection goes through [`Client::protect_data`] (TLS under `PROT P`): accepted
//! ones on their stream's thread as they arrive, connected ones once the server has answered
//! the transfer command (FTPS servers start the data connection's handshake after their
//! 150), several at once. Cached connections keep their TLS sessions.

use std::fs::File;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gridos_io::TransferReport;

use super::{Client, Error, Result, arg, connect_any, reply_error};
use crate::blocks::{self, DEFAULT_BLOCK_SIZE, Incoming};
use crate::checksum::Algorithm;
use crate::proto::mode_e::ModeEReceiver;
use crate::proto::{
    Command, EpsvArg, FsErrorKind, Opts, Parallelism, RangeSet, Restart, RetrOpts, TransferError,
    TransferMode, addr,
};
use crate::tls::DataStream;

/// Called with the byte ranges a download holds so far (file offsets), at the start, five
/// times a second and once at the end, so a caller can record them and resume after a crash: with parallel
/// streams blocks arrive out of order, so a partial file's size says nothing about its holes.
pub type RangesHook = Arc<dyn Fn(&RangeSet) + Send + Sync>;

/// Most ranges a restarted download names in its `REST` line (the largest ones held; the
/// rest is fetched again). 128 ranges of two 20-digit offsets fit well inside the 8 KiB
/// line limit of our server and of the usual FTP servers.
pub const REST_RANGES_MAX: usize = 128;

/// Settings of one GridFTP transfer.
#[derive(Clone)]
#[non_exhaustive]
pub struct GridOptions {
    /// Parallel data connections (MODE E); at least 1.
    pub streams: u32,
    /// Socket buffer for every data connection, applied locally (and sent to the server as
    /// `SBUF` with [`sbuf`](Self::sbuf)); `None` leaves the buffers to the tuner and kernel
    /// autotuning.
    pub tcp_buffer: Option<u64>,
    /// Ask the server for `tcp_buffer` too (`SBUF`). Worth it when the user asks; risky
    /// otherwise: a server that cannot force the size caps its buffer at the system maximum,
    /// below what its autotuning would reach.
    pub sbuf: bool,
    /// MODE E block size.
    pub block_size: u64,
    /// Downloads report the ranges they hold here (see [`RangesHook`]).
    pub on_ranges: Option<RangesHook>,
    /// Uploads may open more data connections while they run, up to this many streams in
    /// all, when every stream's monitor finds it limited where a larger buffer cannot help
    /// ([`blocks::send_growing`]; the monitor must be on). `None`: the streams stay as set.
    pub grow_to: Option<u32>,
}

impl std::fmt::Debug for GridOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GridOptions")
            .field("streams", &self.streams)
            .field("tcp_buffer", &self.tcp_buffer)
            .field("sbuf", &self.sbuf)
            .field("block_size", &self.block_size)
            .field("on_ranges", &self.on_ranges.is_some())
            .field("grow_to", &self.grow_to)
            .finish()
    }
}

impl Default for GridOptions {
    fn default() -> Self {
        GridOptions {
            streams: 1,
            tcp_buffer: None,
            sbuf: true,
            block_size: DEFAULT_BLOCK_SIZE,
            on_ranges: None,
            grow_to: None,
        }
    }
}

/// Replies to ALLO that let the upload go on: reserved (200), not needed (202), unknown.
pub(super) const ALLO_OK: &[u16] = &[200, 202, 500, 501, 502, 504];

/// Which way cached data connections carried data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Download,
    Upload,
}

/// MODE E state kept on the client between transfers.
#[derive(Debug, Default)]
pub(super) struct ExtState {
    mode_e: bool,
    /// MODE Z is on: stream-mode transfers carry one zlib stream.
    pub(super) deflate: bool,
    /// Last `OPTS RETR` sent: streams and block size.
    parallelism: Option<(u32, Option<u64>)>,
    sbuf: Option<u64>,
    /// Open data connections, the direction they carried, and (downloads) our listener.
    cache: Option<(Dir, Conns, Option<TcpListener>)>,
    /// The server's passive address the upload connections went to (more may join).
    upload_to: Option<SocketAddr>,
}

/// Data connections kept for the next transfer.
#[derive(Debug)]
enum Conns {
    /// Protected already (TLS or clear, as the session is), with their sessions.
    Ready(Vec<DataStream>),
    /// Connected for an upload whose command failed before the data went: still to be
    /// protected, after the next transfer command's 150.
    Fresh(Vec<TcpStream>),
}

impl Conns {
    fn len(&self) -> usize {
        match self {
            Conns::Ready(v) => v.len(),
            Conns::Fresh(v) => v.len(),
        }
    }

    fn tcp(&self) -> Vec<&TcpStream> {
        match self {
            Conns::Ready(v) => v.iter().map(DataStream::tcp).collect(),
            Conns::Fresh(v) => v.iter().collect(),
        }
    }
}

impl ExtState {
    /// Drops the cached data connections (the server's data endpoint is about to change).
    pub(super) fn forget_channels(&mut self) {
        self.cache = None;
    }

    /// Records the MODE the next command sets (E, or S); true if it differs from now.
    pub(super) fn switch_mode(&mut self, extended: bool) -> bool {
        let change = self.mode_e != extended || self.deflate;
        self.mode_e = extended;
        self.deflate = false;
        change
    }

    /// Records `OPTS RETR` with these streams and block size; true if not already sent.
    pub(super) fn set_parallelism(&mut self, streams: u32, block: Option<u64>) -> bool {
        let change = self.parallelism != Some((streams, block));
        self.parallelism = Some((streams, block));
        change
    }

    /// Records `SBUF n`; true if not already sent.
    pub(super) fn set_sbuf(&mut self, n: u64) -> bool {
        let change = self.sbuf != Some(n);
        self.sbuf = Some(n);
        change
    }
}

fn transfer_err(e: TransferError, moved: u64) -> Error {
    let msg = match e {
        TransferError::Aborted => return Error::Cancelled { moved },
        TransferError::Fs(f)
            if matches!(
                f.kind,
                FsErrorKind::StorageFull | FsErrorKind::QuotaExceeded
            ) =>
        {
            return Error::NoSpace { moved };
        }
        TransferError::Fs(f) => format!("{:?}: {}", f.kind, f.message),
        TransferError::CannotOpenData(m) => format!("data connection: {m}"),
        TransferError::ConnectionClosed(m) => format!("data connection broke: {m}"),
        TransferError::BadData(m) => format!("bad MODE E data: {m}"),
        TransferError::Local(m) => m,
    };
    Error::ModeE {
        moved,
        message: msg,
    }
}

impl Client {
    /// Whether the server announced MODE E (GridFTP extended block mode) in FEAT.
    pub fn gridftp(&self) -> bool {
        self.features.mode_e
    }

    /// `TYPE I` + `MODE E`, once per session.
    /// Queues a set-up command to leave with the next command (one round trip for the lot).
    fn defer(&mut self, cmd: Command, ok: &[u16]) {
        self.deferred.push((cmd, ok.to_vec()));
    }

    fn ensure_mode_e(&mut self) -> Result<()> {
        if !self.ext.mode_e {
            self.defer(Command::Mode(TransferMode::Extended), &[200]);
            self.ext.mode_e = true;
            self.ext.deflate = false;
        }
        Ok(())
    }

    /// Back to stream mode (MODE S) if MODE E or Z was on; cached data connections are
    /// dropped.
    pub fn stream_mode(&mut self) -> Result<()> {
        if self.ext.mode_e || self.ext.deflate {
            self.expect(&Command::Mode(TransferMode::Stream), &[200])?;
            self.ext.mode_e = false;
            self.ext.deflate = false;
            self.ext.cache = None;
        }
        Ok(())
    }

    /// Leaves MODE E (not MODE Z) before a stream-mode transfer or listing.
    pub(super) fn leave_mode_e(&mut self) -> Result<()> {
        if self.ext.mode_e {
            self.expect(&Command::Mode(TransferMode::Stream), &[200])?;
            self.ext.mode_e = false;
            self.ext.cache = None;
        }
        Ok(())
    }

    /// `MODE Z`: later [`get`](Client::get)/[`put`](Client::put) calls carry their data as
    /// one zlib (deflate) stream — worth it when the network, not the CPU, is the limit.
    /// Fails with the server's reply if it does not offer MODE Z.
    pub fn deflate_mode(&mut self) -> Result<()> {
        if !self.ext.deflate {
            self.expect(&Command::Mode(TransferMode::Deflate), &[200])?;
            self.ext.deflate = true;
            self.ext.mode_e = false;
            self.ext.cache = None;
        }
        Ok(())
    }

    fn ensure_sbuf(&mut self, o: &GridOptions) -> Result<()> {
        if let Some(n) = o.tcp_buffer.filter(|_| o.sbuf) {
            if self.ext.sbuf != Some(n) {
                // Not every server has SBUF (5yz is fine); the local side still gets its
                // buffers.
                self.defer(Command::Sbuf(n), &[200, 500, 501, 502, 504]);
                self.ext.sbuf = Some(n);
            }
        }
        Ok(())
    }

    fn apply_local_buffers<'s>(socks: impl IntoIterator<Item = &'s TcpStream>, o: &GridOptions) {
        if let Some(n) = o.tcp_buffer {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            for s in socks {
                if let Ok(dup) = s.try_clone() {
                    let g = gridos_io::GridSocket::from(dup);
                    let _ = g.buffer_setopt(gridos_io::BufferOpt::SendBuffer(n));
                    let _ = g.buffer_setopt(gridos_io::BufferOpt::RecvBuffer(n));
                }
            }
        }
    }

    /// Where a download's further data connections come from: the listener, only while the
    /// server has not connected every stream yet (`have` are open). `protect` is
    /// [`accepted`](Self::accepted).
    fn incoming<'a>(
        &'a self,
        listener: Option<&'a TcpListener>,
        have: usize,
        o: &GridOptions,
        protect: &'a blocks::Protect<'a>,
    ) -> Option<Incoming<'a>> {
        listener
            .filter(|_| have < o.streams.max(1) as usize)
            .map(|l| Incoming {
                listener: l,
                allow: Some(&self.data_peer),
                refused: None,
                timeout: self.config.data_timeout,
                protect: Some(protect),
            })
    }

    /// [`protect_data`](Client::protect_data) for connections a download accepts (it runs on
    /// their stream threads).
    fn accepted(
        &self,
    ) -> impl Fn(TcpStream) -> std::result::Result<DataStream, TransferError> + Sync + '_ {
        move |s| {
            self.protect_data(s)
                .map_err(|e| TransferError::CannotOpenData(e.to_string()))
        }
    }

    /// Protects an upload's connections (the transfer command has been answered): TLS
    /// handshakes side by side, since each costs a round trip or two.
    fn ready(&self, conns: Conns) -> Result<Vec<DataStream>> {
        let socks = match conns {
            Conns::Ready(v) => return Ok(v),
            Conns::Fresh(v) => v,
        };
        if socks.len() <= 1 {
            return socks.into_iter().map(|s| self.protect_data(s)).collect();
        }
        std::thread::scope(|sc| {
            let handshakes: Vec<_> = socks
                .into_iter()
                .map(|s| sc.spawn(move || self.protect_data(s)))
                .collect();
            handshakes
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Protocol(
                            "data connection set-up thread failed".into(),
                        ))
                    })
                })
                .collect()
        })
    }

    /// Sets up (or reuses) the data connections of a download: a listener the server
    /// connects to. Returns cached connections and the listener.
    fn download_channels(
        &mut self,
        o: &GridOptions,
    ) -> Result<(Vec<DataStream>, Option<TcpListener>)> {
        let streams = o.streams.max(1);
        // Block size is the sender's choice: ask for a non-default one.
        let block = (o.block_size != DEFAULT_BLOCK_SIZE).then_some(o.block_size);
        if self.ext.parallelism != Some((streams, block)) {
            self.defer(retr_parallelism(streams, block), &[200]);
            self.ext.parallelism = Some((streams, block));
            // The server may reuse what it has; new PORT below makes it connect afresh.
            self.ext.cache = None;
        }
        if let Some((Dir::Download, Conns::Ready(socks), listener)) = self.ext.cache.take() {
            if socks.len() == streams as usize {
                return Ok((socks, listener));
            }
        }
        let (listener, cmd) = self.data_listener()?;
        self.defer(cmd, &[200]);
        Ok((Vec::new(), Some(listener)))
    }

    /// Sets up (or reuses) the data connections of an upload: passive address, then
    /// `streams` connections to it (protected by [`ready`](Self::ready) once the transfer
    /// command is answered).
    fn upload_channels(&mut self, o: &GridOptions) -> Result<Conns> {
        let streams = o.streams.max(1) as usize;
        if let Some((Dir::Upload, conns, _)) = self.ext.cache.take() {
            if conns.len() == streams {
                // The passive port they came from may be closed by now: no stream joins.
                self.ext.upload_to = None;
                return Ok(conns);
            }
        }
        let ip: IpAddr = self.peer.ip();
        let port = if self.config.use_epsv && !self.epsv_refused {
            let r = self.command(&Command::Epsv(EpsvArg::Any))?;
            if r.code == 229 {
                Some(
                    addr::parse_epsv_reply(&r.lines.join(" "))
                        .map_err(|e| Error::Protocol(format!("EPSV reply: {e}")))?,
                )
            } else {
                self.epsv_refused = true;
                None
            }
        } else {
            None
        };
        let port = match port {
            Some(p) => p,
            None => {
                let r = self.expect(&Command::Pasv, &[227])?;
                addr::parse_pasv_reply(&r.lines.join(" "))
                    .map_err(|e| Error::Protocol(format!("PASV reply: {e}")))?
                    .port()
            }
        };
        let to = SocketAddr::new(ip, port);
        self.ext.upload_to = Some(to);
        let mut socks = Vec::with_capacity(streams);
        for _ in 0..streams {
            let s = connect_any(
                &[to],
                self.config.connect_timeout,
                "connect data connection",
            )?;
            let _ = s.set_nodelay(true);
            socks.push(s);
        }
        Ok(Conns::Fresh(socks))
    }

    /// MODE E download of `remote` into `file`.
    ///
    /// `range`: `Some((offset, len))` fetches only that part with `ERET P` and writes it at
    /// `file_offset + 0 …` (the part's first byte at `file_offset`). `have`: byte ranges of
    /// the whole file already in `file` (a restart): the server sends the rest (`REST`
    /// range list) at their own offsets. Without either, the whole file lands at
    /// `file_offset`.
    pub fn get_extended(
        &mut self,
        remote: &str,
        file: &File,
        file_offset: u64,
        range: Option<(u64, u64)>,
        have: Option<&RangeSet>,
        o: &GridOptions,
    ) -> Result<TransferReport> {
        let p = arg(remote)?;
        self.ensure_mode_e()?;
        self.ensure_sbuf(o)?;
        let (cached, listener) = self.download_channels(o)?;
        let cmd = match range {
            Some((offset, length)) => Command::Eret {
                offset,
                length,
                path: p,
            },
            None => {
                if let Some(h) = have.filter(|h| !h.is_empty()) {
                    let h = h.largest(REST_RANGES_MAX);
                    self.defer(Command::Rest(Restart::Ranges(h)), &[350]);
                }
                Command::Retr(p)
            }
        };
        let limit = range.map(|(_, l)| l);
        let early = match self.start_transfer(&cmd) {
            Ok(e) => e,
            Err(e) => {
                // The connections and listener are still good for another try.
                self.ext.cache = Some((Dir::Download, Conns::Ready(cached), listener));
                return Err(e);
            }
        };
        Self::apply_local_buffers(cached.iter().map(DataStream::tcp), o);
        let mut rx = ModeEReceiver::new(limit).with_offset_adjustment(file_offset);
        if let Some(h) = have {
            rx.import_restart(h);
        }
        let rx = Arc::new(Mutex::new(rx));
        let start = Instant::now();
        let res = self.with_watchdog(|opts| {
            let job = blocks::Recv {
                rx: Arc::clone(&rx),
                opts: opts.clone(),
                max_streams: o.streams.max(1) as usize,
                strict_eod: false,
                before_gap: None,
            };
            let protect = self.accepted();
            let incoming = self.incoming(listener.as_ref(), cached.len(), o, &protect);
            let Some(hook) = &o.on_ranges else {
                return Ok(blocks::recv(file, &job, cached, incoming));
            };
            // Report the ranges held while the blocks arrive.
            let (stop, stopped) = std::sync::mpsc::channel::<()>();
            std::thread::scope(|s| {
                let rx = &rx;
                s.spawn(move || {
                    loop {
                        let now = rx
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .received()
                            .clone();
                        hook(&now);
                        match stopped.recv_timeout(std::time::Duration::from_millis(200)) {
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                            _ => break,
                        }
                    }
                });
                let r = blocks::recv(file, &job, cached, incoming);
                drop(stop);
                Ok(r)
            })
        });
        let held = rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .received()
            .clone();
        if let Some(hook) = &o.on_ranges {
            hook(&held);
        }
        let moved = held.total();
        let res = match res {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(transfer_err(e, moved)),
            Err(e) => Err(e),
        };
        let out = self.finish_transfer(&cmd, early, res)?;
        let bytes = out.bytes;
        if !out.channels.is_empty() {
            self.ext.cache = Some((Dir::Download, Conns::Ready(out.channels), listener));
        }
        Ok(report(bytes, start, self.data_path()))
    }

    /// One more data connection to the passive address of this upload, set up as the
    /// others (buffers, TLS).
    fn another_upload_stream(
        &self,
        o: &GridOptions,
    ) -> std::result::Result<DataStream, TransferError> {
        let failed = |e: Error| TransferError::CannotOpenData(format!("another stream: {e}"));
        let to = self
            .ext
            .upload_to
            .ok_or_else(|| TransferError::CannotOpenData("no passive address".into()))?;
        let s = connect_any(
            &[to],
            self.config.connect_timeout,
            "connect data connection",
        )
        .map_err(failed)?;
        let _ = s.set_nodelay(true);
        Self::apply_local_buffers([&s], o);
        self.protect_data(s).map_err(failed)
    }

    /// MODE E upload of `len` bytes of `file` from `offset`.
    ///
    /// `esto`: `Some(adjust)` stores with `ESTO A adjust` (every block lands at its offset
    /// plus `adjust` in the remote file, which is updated in place); otherwise `STOR`, whose
    /// block offsets count from `offset` (the remote file gets bytes `offset..offset+len` of
    /// `file` at `0..len`). `expected`: send `SCKS` first so the server verifies the stored
    /// data.
    #[allow(clippy::too_many_arguments)]
    pub fn put_extended(
        &mut self,
        file: &File,
        offset: u64,
        len: u64,
        remote: &str,
        esto: Option<u64>,
        expected: Option<(Algorithm, String)>,
        o: &GridOptions,
    ) -> Result<TransferReport> {
        let p = arg(remote)?;
        self.ensure_mode_e()?;
        self.ensure_sbuf(o)?;
        let conns = self.upload_channels(o)?;
        Self::apply_local_buffers(conns.tcp(), o);
        if let Some((alg, value)) = expected {
            self.expect(
                &Command::Scks {
                    algorithm: Some(alg.name().to_string()),
                    value,
                },
                &[200],
            )?;
        }
        if esto.is_none() {
            // Lets the server reserve the space; ignored (202) where not supported.
            self.defer(
                Command::Allo {
                    size: len,
                    record: None,
                },
                ALLO_OK,
            );
        }
        let cmd = match esto {
            Some(adjust) => Command::Esto {
                offset: adjust,
                path: p,
            },
            None => Command::Stor(p),
        };
        let early = match self.start_transfer(&cmd) {
            Ok(e) => e,
            Err(e) => {
                self.ext.cache = Some((Dir::Upload, conns, None));
                return Err(e);
            }
        };
        let socks = match self.ready(conns) {
            Ok(s) => s,
            Err(e) => return self.finish_transfer(&cmd, early, Err(e)),
        };
        let mut ranges = RangeSet::new();
        ranges.insert(offset, offset + len);
        let start = Instant::now();
        let res = self.with_watchdog(|opts| {
            let job = blocks::Send {
                ranges,
                shift: offset,
                block_size: o.block_size.max(1),
                close: false,
                opts: opts.clone(),
            };
            let connect = || self.another_upload_stream(o);
            let grow = match (o.grow_to, self.ext.upload_to) {
                (Some(n), Some(_)) if n as usize > socks.len() => Some(blocks::Grow {
                    connect: &connect,
                    max_streams: n as usize,
                }),
                _ => None,
            };
            Ok(blocks::send_growing(file, &job, socks, grow.as_ref()))
        });
        let res = match res {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(transfer_err(e, 0)),
            Err(e) => Err(e),
        };
        let out = self.finish_transfer(&cmd, early, res)?;
        let bytes = out.bytes;
        if !out.channels.is_empty() {
            self.ext.cache = Some((Dir::Upload, Conns::Ready(out.channels), None));
        }
        Ok(report(bytes, start, self.data_path()))
    }

    /// Downloads many files over one control connection: the RETR commands are pipelined
    /// (up to `window` outstanding) and every file's blocks come over the same cached MODE E
    /// connections, so a small file costs about one block header and one reply.
    ///
    /// Returns one result per item, in order; a failed file does not stop the others unless
    /// the control connection broke. The progress counter of
    /// [`ClientConfig::transfer`](super::ClientConfig::transfer) counts the batch's bytes.
    pub fn get_pipelined(
        &mut self,
        items: &[(String, File)],
        window: usize,
        o: &GridOptions,
    ) -> Result<Vec<Result<u64>>> {
        self.get_pipelined_each(items, window, o, &mut |_, _| {})
    }

    /// [`Client::get_pipelined`], calling `each(i, result)` as soon as item `i` is settled
    /// (a progress display can count files while the batch runs).
    pub fn get_pipelined_each(
        &mut self,
        items: &[(String, File)],
        window: usize,
        o: &GridOptions,
        each: &mut dyn FnMut(usize, &Result<u64>),
    ) -> Result<Vec<Result<u64>>> {
        self.ensure_mode_e()?;
        self.ensure_sbuf(o)?;
        let (mut cached, listener) = self.download_channels(o)?;
        let window = window.max(1);
        // One watchdog for the whole batch: a thread per small file would cost more than the
        // file.
        let watchdog = BatchWatchdog::start(&self.config.transfer, self.config.data_timeout)?;
        let mut sent = 0;
        let mut results = Vec::with_capacity(items.len());
        for (i, (_, file)) in items.iter().enumerate() {
            // Keep up to `window` commands in flight.
            while sent < items.len() && sent < i + window {
                let p = arg(&items[sent].0)?;
                self.send(&Command::Retr(p))?;
                sent += 1;
            }
            let cmd = Command::Retr(items[i].0.clone());
            let r = self.read_reply(&items[i].0, self.config.reply_timeout)?;
            let early = match r.code {
                100..=199 => None,
                226 | 250 => Some(r),
                _ => {
                    settle(&mut results, each, Err(reply_error(&cmd, &r)));
                    continue;
                }
            };
            let rx = Arc::new(Mutex::new(ModeEReceiver::new(None)));
            let socks = std::mem::take(&mut cached);
            let job = blocks::Recv {
                rx: Arc::clone(&rx),
                opts: watchdog.opts.clone(),
                max_streams: o.streams.max(1) as usize,
                strict_eod: false,
                before_gap: None,
            };
            let received = {
                let protect = self.accepted();
                let incoming = self.incoming(listener.as_ref(), socks.len(), o, &protect);
                blocks::recv(file, &job, socks, incoming)
            };
            let res = match received {
                Ok(out) => {
                    watchdog.settle(Some(out.bytes));
                    Ok(out)
                }
                Err(TransferError::Aborted) if watchdog.timed_out() => Err(Error::Timeout(
                    self.config.data_timeout,
                    "the data connection",
                )),
                Err(e) => Err(transfer_err(e, 0)),
            };
            if res.is_err() {
                watchdog.settle(None);
            }
            match self.finish_transfer(&cmd, early, res) {
                Ok(out) => {
                    cached = out.channels;
                    settle(&mut results, each, Ok(out.bytes));
                }
                Err(e) if self.poisoned => return Err(e),
                Err(e) => {
                    // The data connections of a failed transfer are not trusted again; with
                    // the listener gone, the commands already sent fail fast (425).
                    drop(listener);
                    settle(&mut results, each, Err(e));
                    for (name, _) in &items[i + 1..sent] {
                        let r = self.read_final(name, self.config.reply_timeout)?;
                        settle(
                            &mut results,
                            each,
                            Err(reply_error(&Command::Retr(name.clone()), &r)),
                        );
                    }
                    for _ in &items[sent..] {
                        settle(
                            &mut results,
                            each,
                            Err(Error::Protocol(
                                "not attempted after an earlier failure".into(),
                            )),
                        );
                    }
                    return Ok(results);
                }
            }
        }
        if !cached.is_empty() {
            self.ext.cache = Some((Dir::Download, Conns::Ready(cached), listener));
        }
        Ok(results)
    }

    /// Uploads many files over one control connection: the STOR commands are pipelined (up to
    /// `window` outstanding) and every file's blocks go over the same MODE E connections. A
    /// file's data leaves only once the server has started its transfer (125/150), so data
    /// never runs ahead of its command.
    ///
    /// Returns one result per item (bytes sent), in order. A refused STOR (5yz) fails only its
    /// item; a transfer that breaks part-way ends the batch with that error (the connection
    /// is then unusable).
    pub fn put_pipelined(
        &mut self,
        items: &[(File, u64, String)],
        window: usize,
        o: &GridOptions,
    ) -> Result<Vec<Result<u64>>> {
        self.put_pipelined_each(items, window, o, &mut |_, _| {})
    }

    /// [`Client::put_pipelined`], calling `each(i, result)` as soon as item `i` is settled.
    pub fn put_pipelined_each(
        &mut self,
        items: &[(File, u64, String)],
        window: usize,
        o: &GridOptions,
        each: &mut dyn FnMut(usize, &Result<u64>),
    ) -> Result<Vec<Result<u64>>> {
        self.ensure_mode_e()?;
        self.ensure_sbuf(o)?;
        let mut conns = Some(self.upload_channels(o)?);
        if let Some(c) = &conns {
            Self::apply_local_buffers(c.tcp(), o);
        }
        let mut socks = Vec::new();
        let window = window.max(1);
        let watchdog = BatchWatchdog::start(&self.config.transfer, self.config.data_timeout)?;
        let mut sent = 0;
        let mut results = Vec::with_capacity(items.len());
        for (i, (file, len, remote)) in items.iter().enumerate() {
            while sent < items.len() && sent < i + window {
                let p = arg(&items[sent].2)?;
                self.send(&Command::Stor(p))?;
                sent += 1;
            }
            let cmd = Command::Stor(remote.clone());
            let r = self.read_reply(remote, self.config.reply_timeout)?;
            if !r.is_preliminary() {
                // Refused before any data (a 226 here would be a server error).
                settle(&mut results, each, Err(reply_error(&cmd, &r)));
                continue;
            }
            if let Some(c) = conns.take() {
                // The first transfer has started: the server takes the handshakes now.
                socks = match self.ready(c) {
                    Ok(s) => s,
                    Err(e) => {
                        self.poisoned = true;
                        return Err(e);
                    }
                };
            }
            let mut ranges = RangeSet::new();
            ranges.insert(0, *len);
            let job = blocks::Send {
                ranges,
                shift: 0,
                block_size: o.block_size.max(1),
                close: false,
                opts: watchdog.opts.clone(),
            };
            match blocks::send(file, &job, std::mem::take(&mut socks)) {
                Ok(out) => {
                    watchdog.settle(Some(out.bytes));
                    socks = out.channels;
                    let r = self.read_final(remote, self.config.reply_timeout)?;
                    if matches!(r.code, 226 | 250) {
                        settle(&mut results, each, Ok(out.bytes));
                    } else {
                        settle(&mut results, each, Err(reply_error(&cmd, &r)));
                    }
                }
                Err(e) => {
                    self.poisoned = true;
                    return Err(match e {
                        TransferError::Aborted if watchdog.timed_out() => {
                            Error::Timeout(self.config.data_timeout, "the data connection")
                        }
                        e => transfer_err(e, 0),
                    });
                }
            }
        }
        if let Some(c) = conns {
            // No transfer started: the connections wait for the next one.
            self.ext.cache = Some((Dir::Upload, c, None));
        } else if !socks.is_empty() {
            self.ext.cache = Some((Dir::Upload, Conns::Ready(socks), None));
        }
        Ok(results)
    }

    /// `CKSM alg offset length path` (length `None` = to the end): the server computes a
    /// checksum of its copy.
    pub fn checksum(
        &mut self,
        remote: &str,
        alg: Algorithm,
        offset: u64,
        length: Option<u64>,
    ) -> Result<String> {
        let cmd = Command::Cksm {
            algorithm: alg.name().to_string(),
            offset,
            length,
            path: arg(remote)?,
        };
        let r = self.expect(&cmd, &[213])?;
        let text = r.text().trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Protocol(format!(
                "CKSM reply {text:?} is not a checksum"
            )));
        }
        Ok(text.to_ascii_lowercase())
    }
}

impl Client {
    /// The path MODE E payloads take: under `PROT P` user-space buffers (TLS cannot be
    /// spliced), else the one the caller forced, if any.
    fn data_path(&self) -> Option<gridos_io::IoPath> {
        if self.data_protected() {
            Some(gridos_io::IoPath::ReadWrite)
        } else {
            self.config.transfer.path
        }
    }
}

/// Records one settled item of a pipelined batch and tells the caller's `each`.
fn settle(
    results: &mut Vec<Result<u64>>,
    each: &mut dyn FnMut(usize, &Result<u64>),
    r: Result<u64>,
) {
    each(results.len(), &r);
    results.push(r);
}

/// The report of a MODE E transfer; `forced` is the path the caller forced, if any (the
/// streams run on it), else the probe's choice.
fn report(bytes: u64, start: Instant, forced: Option<gridos_io::IoPath>) -> TransferReport {
    TransferReport {
        bytes,
        wire_bytes: bytes,
        elapsed: start.elapsed(),
        path: forced.unwrap_or_else(gridos_io::probe),
        sndbuf: None,
        rcvbuf: None,
        decisions: Vec::new(),
    }
}

/// Cancels a batch of transfers when neither bytes nor finished files have moved for the
/// data timeout (or when the caller's token fires), and publishes the batch's bytes so far
/// (finished files plus the running one) to the caller's progress counter.
struct BatchWatchdog {
    opts: gridos_io::TransferOptions,
    files: Arc<std::sync::atomic::AtomicU64>,
    /// The running file's bytes (the transfers' own counter).
    bytes: Arc<std::sync::atomic::AtomicU64>,
    /// Bytes of the batch's finished files; held while the running file's bytes move into
    /// it, so that no published figure counts a file twice or not at all.
    settled: Arc<Mutex<u64>>,
    user: Option<Arc<std::sync::atomic::AtomicU64>>,
    timed_out: Arc<std::sync::atomic::AtomicBool>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BatchWatchdog {
    fn start(user: &gridos_io::TransferOptions, idle: std::time::Duration) -> Result<Self> {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
        let bytes = Arc::new(AtomicU64::new(0));
        let files = Arc::new(AtomicU64::new(0));
        let settled = Arc::new(Mutex::new(0u64));
        let timed_out = Arc::new(AtomicBool::new(false));
        let cancel = gridos_io::CancelToken::new();
        let opts = gridos_io::TransferOptions {
            cancel: Some(cancel.clone()),
            progress: Some(Arc::clone(&bytes)),
            ..user.clone()
        };
        if let Some(p) = &user.progress {
            p.store(0, Relaxed);
        }
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (b, f, t, user_cancel) = (
            Arc::clone(&bytes),
            Arc::clone(&files),
            Arc::clone(&timed_out),
            user.cancel.clone(),
        );
        let (done, shown) = (Arc::clone(&settled), user.progress.clone());
        let thread = std::thread::Builder::new()
            .name("ftp-batch-watchdog".into())
            .spawn(move || {
                let mut last = ((b.load(Relaxed), f.load(Relaxed)), Instant::now());
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    rx.recv_timeout(std::time::Duration::from_millis(100))
                {
                    if user_cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
                        cancel.cancel();
                        return;
                    }
                    if let Some(p) = &shown {
                        let d = done.lock().unwrap_or_else(|e| e.into_inner());
                        p.store(*d + b.load(Relaxed), Relaxed);
                    }
                    let now = (b.load(Relaxed), f.load(Relaxed));
                    if now != last.0 {
                        last = (now, Instant::now());
                    } else if last.1.elapsed() >= idle {
                        t.store(true, Relaxed);
                        cancel.cancel();
                        return;
                    }
                }
            })
            .map_err(|e| Error::io("spawn watchdog", e))?;
        Ok(BatchWatchdog {
            opts,
            files,
            bytes,
            settled,
            user: user.progress.clone(),
            timed_out,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// The running transfer ended: a file of `bytes` is complete (0 for one that failed;
    /// its partial bytes leave the figure).
    fn settle(&self, bytes: Option<u64>) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut d = self.settled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = bytes {
            *d += n;
            self.files.fetch_add(1, Relaxed);
        }
        self.bytes.store(0, Relaxed);
        if let Some(p) = &self.user {
            p.store(*d, Relaxed);
        }
    }

    fn timed_out(&self) -> bool {
        self.timed_out.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for BatchWatchdog {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // The last figure is the finished files' bytes, whatever the thread stored last.
        self.settle(None);
    }
}

/// `OPTS RETR Parallelism=n,n,n;` (and `BlockSize=b;` for a non-default block): what a
/// MODE E sender is asked before it sends.
pub(crate) fn retr_parallelism(streams: u32, block: Option<u64>) -> Command {
    let p = Parallelism {
        starting: streams,
        minimum: streams,
        maximum: streams,
    };
    Command::Opts(Opts::Retr(RetrOpts {
        parallelism: Some(p),
        block_size: block,
        ..RetrOpts::default()
    }))
}
