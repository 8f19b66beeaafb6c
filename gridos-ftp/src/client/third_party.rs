//! Server-to-server ("third-party") transfers, GridFTP style: the client holds one control
//! connection to each server and the data goes straight from the source server to the
//! destination server.
//!
//! - Stream mode (any FTP server): `PASV` (`EPSV` for IPv6) on the destination, `PORT`
//!   (`EPRT`) with that address on the source, `STOR` on the destination and `RETR` on the
//!   source; both preliminary and both final replies are checked.
//! - MODE E ([`ThirdPartyOptions::grid`], GridFTP servers): `SPAS` on the receiving side,
//!   `SPOR` with its address list on the sending side, `OPTS RETR Parallelism` on the sender
//!   for the parallel streams (the sender of MODE E data is always the active side).
//!
//! Round trips: the set-up commands of both servers leave together and the two connections
//! are waited on at once, so a copy costs two round trips whatever the options — one to
//! learn the destination's data address (and the source's size), one for the transfer
//! itself, with the checksums (`CKSM`, [`ThirdPartyOptions::verify`]) and the destination's
//! `SIZE` pipelined behind the transfer commands. [`ThirdPartyReport::control_round_trips`]
//! counts them.
//!
//! TLS: when either client protects its data connections (`PROT P`), the servers' data
//! connection is TLS too: `PROT P` goes to both, `DCAU N` to both and `SSCN ON` to the
//! source — the server that connects (PORT/SPOR side), which is then the TLS client of the
//! data connection. `DCAU N`: neither server authenticates the other on it (it is
//! encrypted, and the peer is checked only by the servers' third-party address policies).
//! These leave with the first round trip. A server that refuses any of them (one without
//! TLS, one that does not know `SSCN`) makes [`Error::ThirdPartyRefused`], so a caller may
//! relay instead. Afterwards `SSCN OFF` goes to the source with its next command, so its
//! own data connections are the usual way round again.
//!
//! Failure: when one side fails, the other side's transfer is aborted (`ABOR`) and both
//! control connections are read back into step (or marked unusable). A refusal of the direct
//! connection — a 5yz to PORT/EPRT/SPOR (bounce protection), a 425, or a server that could
//! not connect to the other — is [`Error::ThirdPartyRefused`]
//! ([`Error::is_third_party_refused`]), so a caller can fall back to relaying the data.
//!
//! Timeouts and cancellation as for [`Client::get`]: each client's `reply_timeout` bounds
//! the wait for every reply but a running transfer's final one; while a transfer runs the
//! client sees no data, so it waits for the servers' verdict (they cut stalled transfers
//! themselves), bounded by `data_timeout` between markers once a server sends 111/112
//! markers. Either client's cancel token aborts both transfers.
//!
//! ```no_run
//! use gridos_ftp::client::{Client, ClientConfig, GridOptions, ThirdPartyOptions, third_party};
//! let mut a = Client::connect("a.example:2811", ClientConfig::default())?;
//! let mut b = Client::connect("b.example:2811", ClientConfig::default())?;
//! a.login("alice", "secret")?;
//! b.login("alice", "secret")?;
//! let mut grid = GridOptions::default();
//! grid.streams = 4;
//! let mut opts = ThirdPartyOptions::default();
//! opts.grid = Some(grid);
//! opts.verify = Some(gridos_ftp::checksum::Algorithm::Adler32);
//! let report = third_party::transfer(&mut a, "/data/run7.h5", &mut b, "/in/run7.h5", &opts)?;
//! println!("{} bytes, {} round trips", report.bytes, report.control_round_trips);
//! # Ok::<(), gridos_ftp::client::Error>(())
//! ```

use std::collections::VecDeque;
use std::io::Read;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use super::{AFTER_FAILURE, Client, Error, GridOptions, POLL, Result, Side, arg, reply_error};
use crate::blocks::DEFAULT_BLOCK_SIZE;
use crate::checksum::Algorithm;
use crate::proto::{
    Command, Dcau, PerfMarker, ProtLevel, Reply, Restart, TransferMode, TrevEvent, addr,
};

/// How a third-party transfer is done. Start from `ThirdPartyOptions::default()` (stream
/// mode, whole file, no verification) and change fields.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ThirdPartyOptions {
    /// MODE E with these settings (`streams` parallel data connections, asked of the sender
    /// with `OPTS RETR Parallelism`; `tcp_buffer` with `sbuf` sent to both as `SBUF`;
    /// `block_size` asked of the sender); `None`: stream mode.
    pub grid: Option<GridOptions>,
    /// Checksum both copies (`CKSM` on each server) and compare; the value is reported.
    pub verify: Option<Algorithm>,
    /// Copy only `(offset, length)`: `ERET P offset length` on the source, `ESTO A offset`
    /// on the destination, so the bytes land at the same offset.
    pub range: Option<(u64, u64)>,
    /// Resume a stream-mode copy from this byte: `REST n` on both sides (the destination
    /// keeps its first `n` bytes, as for [`PutMode::Restart`](super::PutMode::Restart)).
    pub restart: Option<u64>,
}

/// What a third-party transfer did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThirdPartyReport {
    /// Bytes the source sent and both servers confirmed (from `SIZE` on the source, or on
    /// the destination afterwards when the source has no SIZE; 0 when neither says).
    pub bytes: u64,
    /// MODE E was used.
    pub mode_e: bool,
    /// Parallel data connections asked for (1 in stream mode).
    pub streams: u32,
    /// Round trips the client waited for on the control connections (the two servers are
    /// waited on at once, so a round trip to both counts once).
    pub control_round_trips: u32,
    /// The checksum both servers agreed on ([`ThirdPartyOptions::verify`]), lower-case hex.
    pub checksum: Option<String>,
    /// Wall time from the first command to the last reply.
    pub elapsed: Duration,
}

/// Copies `src_path` on the server of `src` to `dst_path` on the server of `dst`, the data
/// going directly between the two servers (see the [module docs](self)). Both clients must
/// be logged in; they stay usable afterwards unless an error says otherwise
/// ([`Error::Poisoned`] on the next call).
pub fn transfer(
    src: &mut Client,
    src_path: &str,
    dst: &mut Client,
    dst_path: &str,
    opts: &ThirdPartyOptions,
) -> Result<ThirdPartyReport> {
    let (sp, dp) = (arg(src_path)?, arg(dst_path)?);
    check_options(src, dst, opts)?;
    let started = Instant::now();
    let mut peers = [
        Peer::new(src, Side::Source),
        Peer::new(dst, Side::Destination),
    ];
    let mut round_trips = 0;

    // Round trip 1: modes and options on both, the source's size, the destination's data
    // address. Nothing is written anywhere yet.
    let mode = if opts.grid.is_some() {
        TransferMode::Extended
    } else {
        TransferMode::Stream
    };
    for p in peers.iter_mut() {
        p.set_mode(mode, opts.grid.as_ref());
    }
    let (streams, block) = match &opts.grid {
        Some(g) => {
            let block = (g.block_size != DEFAULT_BLOCK_SIZE).then_some(g.block_size);
            (g.streams.max(1), block)
        }
        None => (1, None),
    };
    if opts.grid.is_some() && peers[0].c.ext.set_parallelism(streams, block) {
        let o = super::gridftp::retr_parallelism(streams, block);
        peers[0].push(Expect::setup(o, &[200]));
    }
    peers[0].push(Expect::Size(Command::Size(sp.clone())));
    // Progress: the destination's 112 perf markers say how much has arrived (the client sees
    // no data of its own). Asked once per session, of servers that list TREV.
    let dst = &mut peers[1];
    if opts.grid.is_some()
        && !dst.c.perf_markers
        && dst
            .c
            .features
            .lines
            .iter()
            .any(|l| l.trim().eq_ignore_ascii_case("TREV"))
    {
        dst.c.perf_markers = true;
        dst.push(Expect::setup(
            Command::Trev {
                event: TrevEvent::Perf,
                interval: 1,
            },
            &[200],
        ));
    }
    let dst_ip = peers[1].c.peer.ip();
    let passive = match (&opts.grid, dst_ip.is_ipv6()) {
        (Some(_), _) => Command::Spas,
        (None, false) => Command::Pasv,
        (None, true) => Command::Epsv(crate::proto::EpsvArg::Any),
    };
    peers[1].push(Expect::Passive(passive));
    if peers.iter().any(|p| p.c.prot_private) {
        for p in peers.iter_mut() {
            p.secure(Side::Source == p.side);
        }
    }
    let mut run = Run::default();
    run.go(&mut peers, &mut round_trips);
    if let Some(e) = run.verdict() {
        return Err(e);
    }
    let size = peers[0].size.take();
    let data_addrs = peers[1].passive.take().unwrap_or_default();
    let Some(first) = data_addrs.first().copied() else {
        return Err(Error::Protocol(
            "no data address from the destination".into(),
        ));
    };
    let bytes_wanted = match (opts.range, opts.restart, size) {
        (Some((off, _)), _, Some(s)) | (None, Some(off), Some(s)) if off > s => {
            return Err(Error::InvalidArgument(format!(
                "offset {off} is past the end of {src_path} ({s} bytes)"
            )));
        }
        (Some((off, len)), _, Some(s)) => Some(len.min(s - off)),
        (Some((_, len)), _, None) => Some(len),
        (None, Some(off), Some(s)) => Some(s - off),
        (None, None, s) => s,
        (None, Some(_), None) => None,
    };

    // Round trip 2: the transfer commands on both, checksums and the destination's size
    // behind them.
    let address = match (&opts.grid, first) {
        (Some(_), _) => Command::Spor(data_addrs.clone()),
        (None, SocketAddr::V4(a)) => Command::Port(a),
        (None, a) => Command::Eprt(a),
    };
    let (store, retrieve) = match (opts.range, opts.restart) {
        (Some((offset, length)), _) => (
            Command::Esto {
                offset,
                path: dp.clone(),
            },
            Command::Eret {
                offset,
                length,
                path: sp.clone(),
            },
        ),
        (None, _) => (Command::Stor(dp.clone()), Command::Retr(sp.clone())),
    };
    let (ck_off, ck_len) = match opts.range {
        Some((off, len)) => (off, Some(bytes_wanted.unwrap_or(len))),
        None => (0, None),
    };
    let cksm = |path: &str, alg: Algorithm| Command::Cksm {
        algorithm: alg.name().to_string(),
        offset: ck_off,
        length: ck_len,
        path: path.to_string(),
    };
    let rest = opts.restart.filter(|&n| n > 0);
    if let Some(n) = rest {
        peers[1].push(Expect::setup(Command::Rest(Restart::Offset(n)), &[350]));
    }
    peers[1].push(Expect::Transfer(store));
    if let Some(alg) = opts.verify {
        peers[1].push(Expect::Cksm(cksm(&dp, alg)));
    }
    let dst_size = opts.range.is_none() && peers[1].c.features.size;
    if dst_size {
        peers[1].push(Expect::Size(Command::Size(dp.clone())));
    }
    peers[0].push(Expect::setup(address, &[200]));
    if let Some(n) = rest {
        peers[0].push(Expect::setup(Command::Rest(Restart::Offset(n)), &[350]));
    }
    peers[0].push(Expect::Transfer(retrieve));
    if let Some(alg) = opts.verify {
        peers[0].push(Expect::Cksm(cksm(&sp, alg)));
    }
    let mut run = Run::default();
    run.go(&mut peers, &mut round_trips);
    // The source's own data connections want it as the TLS server again: SSCN OFF leaves
    // with its next command (or is forgotten when the next third-party copy wants it on).
    peers[0].c.sscn_reset = peers[0].c.sscn_on;
    if let Some(e) = run.verdict() {
        return Err(e);
    }

    let got_size = if dst_size { peers[1].size.take() } else { None };
    let bytes = match (size, got_size) {
        // The destination holds the whole file: it must be the source's size.
        (Some(want), Some(got)) if got != want => {
            return Err(Error::Incomplete {
                expected: want,
                got,
            });
        }
        _ => bytes_wanted.or_else(|| got_size.map(|g| g - opts.restart.unwrap_or(0).min(g))),
    };
    let checksum = match (
        opts.verify,
        peers[0].checksum.take(),
        peers[1].checksum.take(),
    ) {
        (Some(alg), Some(a), Some(b)) if a != b => {
            return Err(Error::ChecksumMismatch {
                algorithm: alg.name(),
                expected: a,
                got: b,
            });
        }
        (Some(_), Some(a), Some(_)) => Some(a),
        _ => None,
    };
    Ok(ThirdPartyReport {
        bytes: bytes.unwrap_or(0),
        mode_e: opts.grid.is_some(),
        streams,
        control_round_trips: round_trips,
        checksum,
        elapsed: started.elapsed(),
    })
}

/// Refuses combinations the servers cannot do, before anything is sent.
fn check_options(src: &Client, dst: &Client, opts: &ThirdPartyOptions) -> Result<()> {
    if opts.grid.is_some() && !(src.features.mode_e && dst.features.mode_e) {
        return Err(Error::Unsupported("MODE E (GridFTP) on both servers"));
    }
    if opts.range.is_some() && !(src.features.eret && dst.features.esto) {
        return Err(Error::Unsupported(
            "ERET on the source and ESTO on the destination",
        ));
    }
    if let Some(n) = opts.restart {
        if opts.range.is_some() {
            return Err(Error::InvalidArgument(
                "restart and range cannot be combined (a range already says where)".into(),
            ));
        }
        if opts.grid.is_some() {
            return Err(Error::InvalidArgument(
                "restart is for stream-mode copies; use a range with MODE E".into(),
            ));
        }
        if n > 0 && !(src.features.rest_stream && dst.features.rest_stream) {
            return Err(Error::Unsupported("REST STREAM on both servers"));
        }
    }
    if let Some(alg) = opts.verify {
        for c in [src, dst] {
            if !c.features.checksums.iter().any(|a| a == alg.name()) {
                return Err(Error::Unsupported(
                    "CKSM with that algorithm on both servers",
                ));
            }
        }
    }
    Ok(())
}

/// A reply owed by a server, in the order the commands were sent.
#[derive(Debug)]
enum Expect {
    /// A set-up command: these codes mean success.
    Setup(Command, Vec<u16>),
    /// PASV/EPSV/SPAS: the data address(es).
    Passive(Command),
    /// SIZE: a number, or "not offered" (500/502/504).
    Size(Command),
    /// The transfer command: preliminary replies and markers, then 226/250.
    Transfer(Command),
    /// CKSM: a hex checksum.
    Cksm(Command),
    /// A TLS set-up command (`PROT P`, `DCAU N`, `SSCN ON`): a refusal means the servers
    /// cannot make a TLS data connection to each other.
    Secure(Line, &'static [u16]),
    /// ABOR sent while cleaning up: any final reply.
    Abor,
}

/// A command line: one the protocol core has a variant for, or a GridFTP one written as
/// text (`SSCN`).
#[derive(Debug)]
enum Line {
    Cmd(Command),
    Raw(&'static str),
}

impl Line {
    fn text(&self) -> String {
        match self {
            Line::Cmd(c) => c.to_string(),
            Line::Raw(t) => (*t).to_string(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            Line::Cmd(c) => c.to_bytes(),
            Line::Raw(t) => format!("{t}\r\n").into_bytes(),
        }
    }
}

/// Codes that mean `PROT P`, `DCAU N` or `SSCN ON` took effect.
const SECURE_OK: &[u16] = &[200];

/// Replies to an `SSCN OFF` that resets a source for its own transfers: whatever the
/// server says, there is nothing more to do.
const SSCN_OFF_ANY: &[u16] = &[200, 500, 501, 502, 503, 504];

impl Expect {
    fn setup(cmd: Command, ok: &[u16]) -> Expect {
        Expect::Setup(cmd, ok.to_vec())
    }

    /// What goes on the wire for this command (nothing for [`Expect::Abor`], written on its
    /// own).
    fn bytes(&self) -> Vec<u8> {
        match self {
            Expect::Setup(c, _)
            | Expect::Passive(c)
            | Expect::Size(c)
            | Expect::Transfer(c)
            | Expect::Cksm(c) => c.to_bytes(),
            Expect::Secure(l, _) => l.bytes(),
            Expect::Abor => Vec::new(),
        }
    }
}

/// One server of the transfer: its client, the replies it owes, what they said.
struct Peer<'a> {
    c: &'a mut Client,
    side: Side,
    /// Commands to write with the next round trip.
    outbox: Vec<Expect>,
    /// Replies owed, oldest first.
    queue: VecDeque<Expect>,
    /// The transfer command got its preliminary reply.
    started: bool,
    /// The server sends 111/112 markers during the transfer.
    markers: bool,
    aborted: bool,
    /// Last time anything arrived (or the last write).
    heard: Instant,
    passive: Option<Vec<SocketAddr>>,
    size: Option<u64>,
    checksum: Option<String>,
    /// Bytes per stripe from the latest 112 perf markers.
    stripes: StripeBytes,
}

/// What a server's 112 perf markers say it has moved: the latest count of each stripe.
#[derive(Debug, Default)]
struct StripeBytes(Vec<u64>);

impl StripeBytes {
    /// Stripes a marker may name: a bound keeps a hostile index from growing the table.
    const MAX: usize = 1024;

    /// Takes a marker; the total over stripes, or `None` for a stripe index out of bounds.
    fn update(&mut self, m: &PerfMarker) -> Option<u64> {
        let i = usize::try_from(m.stripe_index)
            .ok()
            .filter(|&i| i < Self::MAX)?;
        if self.0.len() <= i {
            self.0.resize(i + 1, 0);
        }
        self.0[i] = m.stripe_bytes;
        Some(self.0.iter().fold(0u64, |a, &b| a.saturating_add(b)))
    }
}

impl<'a> Peer<'a> {
    fn new(c: &'a mut Client, side: Side) -> Peer<'a> {
        // Earlier data connections of this client end here: the server's endpoint changes.
        c.ext.forget_channels();
        Peer {
            c,
            side,
            outbox: Vec::new(),
            queue: VecDeque::new(),
            started: false,
            markers: false,
            aborted: false,
            heard: Instant::now(),
            passive: None,
            size: None,
            checksum: None,
            stripes: StripeBytes::default(),
        }
    }

    fn push(&mut self, e: Expect) {
        self.outbox.push(e);
    }

    /// Queues MODE (and SBUF) for this transfer when the session is not already so.
    fn set_mode(&mut self, mode: TransferMode, grid: Option<&GridOptions>) {
        if self.c.ext.switch_mode(mode == TransferMode::Extended) {
            self.outbox.push(Expect::setup(Command::Mode(mode), &[200]));
        }
        if let Some(n) = grid.and_then(|g| g.tcp_buffer.filter(|_| g.sbuf)) {
            if self.c.ext.set_sbuf(n) {
                // Not every server has SBUF; the transfer goes on without it.
                self.outbox
                    .push(Expect::setup(Command::Sbuf(n), &[200, 500, 501, 502, 504]));
            }
        }
    }

    /// Writes the deferred commands of the client and the outbox in one segment.
    fn flush(&mut self) -> Result<()> {
        if self.outbox.is_empty() {
            return Ok(());
        }
        if self.c.poisoned {
            return Err(Error::Poisoned);
        }
        self.c.check_cancel(0)?;
        let mut items: Vec<Expect> = Vec::new();
        if std::mem::take(&mut self.c.sscn_reset) {
            self.c.sscn_on = false;
            items.push(Expect::Secure(Line::Raw("SSCN OFF"), SSCN_OFF_ANY));
        }
        items.extend(
            std::mem::take(&mut self.c.deferred)
                .into_iter()
                .map(|(c, ok)| Expect::Setup(c, ok)),
        );
        items.append(&mut self.outbox);
        let mut bytes = Vec::new();
        for e in &items {
            bytes.extend_from_slice(&e.bytes());
        }
        self.write(&bytes)?;
        self.queue.extend(items);
        Ok(())
    }

    /// Queues the TLS set-up of a third-party transfer under `PROT P` (see the module
    /// docs): what this session does not have yet. `connects`: this server makes the data
    /// connection (the source) and so is its TLS client.
    fn secure(&mut self, connects: bool) {
        if !self.c.prot_private {
            // Without TLS on its control connection the server refuses (503, 5yz): the
            // refusal says these two cannot make a TLS data connection.
            self.push(Expect::Secure(
                Line::Cmd(Command::Prot(ProtLevel::Private)),
                SECURE_OK,
            ));
        }
        if !self.c.dcau_none {
            self.c.dcau_none = true;
            self.push(Expect::Secure(
                Line::Cmd(Command::Dcau(Dcau::None)),
                SECURE_OK,
            ));
        }
        if connects {
            if self.c.sscn_on {
                // Still on from the last copy: the reset it owed is not needed.
                self.c.sscn_reset = false;
            } else {
                self.c.sscn_on = true;
                self.push(Expect::Secure(Line::Raw("SSCN ON"), SECURE_OK));
            }
        } else if self.c.sscn_on {
            self.c.sscn_reset = false;
            self.c.sscn_on = false;
            self.push(Expect::Secure(Line::Raw("SSCN OFF"), SSCN_OFF_ANY));
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.heard = Instant::now();
        self.c.stat_ahead = None;
        self.c.ctrl.send(bytes).map_err(|e| {
            self.c.poisoned = true;
            Error::io("write command", e)
        })
    }

    /// Sends ABOR if this side's transfer command is still owed a final reply.
    fn abort(&mut self) {
        if self.aborted || !self.queue.iter().any(|e| matches!(e, Expect::Transfer(_))) {
            return;
        }
        self.aborted = true;
        if self.write(&Command::Abor.to_bytes()).is_ok() {
            self.queue.push_back(Expect::Abor);
        } else {
            self.give_up();
        }
    }

    /// The connection cannot be brought back into step: forget what it owes.
    fn give_up(&mut self) {
        self.c.poisoned = true;
        self.queue.clear();
    }

    /// How long this side may stay silent now; `None`: no limit.
    fn patience(&self, failing: bool) -> Option<Duration> {
        if failing {
            return Some(AFTER_FAILURE);
        }
        match self.queue.front() {
            Some(Expect::Transfer(_)) if self.started => {
                self.markers.then_some(self.c.config.data_timeout)
            }
            _ => Some(self.c.config.reply_timeout),
        }
    }

    fn cancelled(&self) -> bool {
        self.c
            .config
            .transfer
            .cancel
            .as_ref()
            .is_some_and(|t| t.is_cancelled())
    }

    /// Takes one parsed reply and checks it against what is owed. `failing`: an error was
    /// already seen, replies are only matched up (ABOR's reply may overtake the replies of
    /// commands queued behind the aborted transfer, so only the transfer's own is judged).
    fn accept(&mut self, r: Reply, failing: bool) -> Option<Error> {
        let Some(head) = self.queue.front() else {
            self.give_up();
            return Some(Error::Protocol(format!(
                "unexpected reply {} {:?} from the {} server",
                r.code,
                r.text(),
                self.side
            )));
        };
        if r.is_preliminary() {
            if matches!(head, Expect::Transfer(_)) {
                self.started = true;
                self.markers |= matches!(r.code, 111 | 112);
                if r.code == 112 {
                    self.perf_marker(&r);
                }
            }
            return None;
        }
        let head = self.queue.pop_front()?;
        if failing && !matches!(head, Expect::Setup(..) | Expect::Transfer(_)) {
            return None;
        }
        self.judge(head, &r)
    }

    /// A 112 perf marker: its sum over stripes goes to the transfer's progress counter
    /// (never backwards, whichever server reported).
    fn perf_marker(&mut self, r: &Reply) {
        let Some(sum) = PerfMarker::parse(r)
            .ok()
            .and_then(|m| self.stripes.update(&m))
        else {
            return;
        };
        if let Some(p) = &self.c.config.transfer.progress {
            p.fetch_max(sum, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn judge(&mut self, e: Expect, r: &Reply) -> Option<Error> {
        match e {
            Expect::Setup(cmd, ok) => {
                if ok.contains(&r.code) {
                    None
                } else if matches!(cmd, Command::Port(_) | Command::Eprt(_) | Command::Spor(_)) {
                    if (500..600).contains(&r.code) {
                        Some(self.refused(&cmd, r))
                    } else {
                        Some(reply_error(&cmd, r))
                    }
                } else {
                    // A refused MODE, OPTS or REST leaves the session in a state this client
                    // no longer knows (and the commands behind it ran in it): start afresh.
                    self.c.poisoned = true;
                    Some(reply_error(&cmd, r))
                }
            }
            Expect::Passive(cmd) => match passive_addrs(&cmd, r, self.c.peer) {
                Ok(a) => {
                    self.passive = Some(a);
                    None
                }
                Err(e) => Some(e),
            },
            Expect::Size(cmd) => match r.code {
                213 => match r.text().trim().parse() {
                    Ok(n) => {
                        self.size = Some(n);
                        None
                    }
                    Err(_) => Some(Error::Protocol(format!(
                        "SIZE reply {:?} is not a number",
                        r.text()
                    ))),
                },
                // No SIZE on this server: the transfer does not need it.
                500 | 502 | 504 => None,
                _ => Some(reply_error(&cmd, r)),
            },
            Expect::Transfer(cmd) => {
                let text = r.lines.join(" ").to_ascii_lowercase();
                if matches!(r.code, 226 | 250) {
                    None
                } else if r.code == 425
                    || ((500..600).contains(&r.code) || r.code == 426)
                        && (text.contains("unable to connect")
                            || text.contains("connection refused"))
                {
                    // 425, or a sender that says it could not reach the other server.
                    Some(self.refused(&cmd, r))
                } else {
                    Some(reply_error(&cmd, r))
                }
            }
            Expect::Cksm(cmd) => {
                let t = r.text().trim();
                if r.code != 213 {
                    Some(reply_error(&cmd, r))
                } else if t.is_empty() || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Some(Error::Protocol(format!(
                        "CKSM reply {t:?} is not a checksum"
                    )))
                } else {
                    self.checksum = Some(t.to_ascii_lowercase());
                    None
                }
            }
            Expect::Secure(line, ok) => {
                if ok.contains(&r.code) {
                    if let Line::Cmd(Command::Prot(_)) = line {
                        self.c.prot_private = true;
                    }
                    return None;
                }
                // What this side did not accept is not in force.
                match &line {
                    Line::Cmd(Command::Dcau(_)) => self.c.dcau_none = false,
                    Line::Raw("SSCN ON") => self.c.sscn_on = false,
                    _ => {}
                }
                Some(Error::ThirdPartyRefused {
                    side: self.side,
                    command: line.text(),
                    code: r.code,
                    text: format!(
                        "{} (a TLS data connection between the two servers needs PROT P, \
                         DCAU N and SSCN)",
                        r.lines.join(" ").trim()
                    ),
                })
            }
            Expect::Abor => None,
        }
    }

    fn refused(&self, cmd: &Command, r: &Reply) -> Error {
        let Error::Reply {
            command,
            code,
            text,
        } = reply_error(cmd, r)
        else {
            return reply_error(cmd, r);
        };
        Error::ThirdPartyRefused {
            side: self.side,
            command,
            code,
            text,
        }
    }

    /// Reads what the server sent (after poll said it is readable); an error if the
    /// connection is gone (it is then given up).
    fn read_some(&mut self) -> Result<()> {
        let mut buf = [0u8; 4096];
        match self.c.ctrl.read(&mut buf) {
            Ok(0) => {
                let mid_reply = self.c.parser.is_mid_reply();
                self.give_up();
                Err(Error::Closed { mid_reply })
            }
            Ok(n) => {
                self.heard = Instant::now();
                self.c.parser.feed(buf.get(..n).unwrap_or(&[]));
                Ok(())
            }
            Err(e) if super::no_data_yet(&e) => Ok(()),
            Err(e) => {
                self.give_up();
                Err(Error::io("read reply", e))
            }
        }
    }
}

/// The data address(es) in a PASV/EPSV/SPAS reply. PASV and EPSV name one port on the
/// destination: it is paired with the address the client reached the destination at (as
/// for two-party transfers, a PASV reply's host is not trusted). SPAS lists one address per
/// stripe, passed on as given (an unspecified host is replaced by the destination's).
fn passive_addrs(cmd: &Command, r: &Reply, peer: SocketAddr) -> Result<Vec<SocketAddr>> {
    let bad = |e: crate::proto::ReplyError| {
        Error::Protocol(format!("{cmd} reply {:?}: {e}", r.lines.join(" ")))
    };
    match cmd {
        Command::Pasv if r.code == 227 => {
            let a = addr::parse_pasv_reply(&r.lines.join(" ")).map_err(bad)?;
            if a.port() == 0 {
                return Err(Error::Protocol("PASV reply names port 0".into()));
            }
            Ok(vec![SocketAddr::new(peer.ip(), a.port())])
        }
        Command::Epsv(_) if r.code == 229 => {
            let port = addr::parse_epsv_reply(&r.lines.join(" ")).map_err(bad)?;
            Ok(vec![SocketAddr::new(peer.ip(), port)])
        }
        Command::Spas if r.code == 229 => {
            let v = addr::parse_spas_reply(r).map_err(bad)?;
            Ok(v.into_iter()
                .map(|a| match (a.ip().is_unspecified(), peer) {
                    (true, SocketAddr::V4(p)) => {
                        SocketAddr::V4(SocketAddrV4::new(*p.ip(), a.port()))
                    }
                    _ => SocketAddr::V4(a),
                })
                .collect())
        }
        _ => Err(reply_error(cmd, r)),
    }
}

/// One round trip on both connections: writes both outboxes, then reads until neither
/// server owes a reply. After the first error the transfers still running are aborted and
/// the replies drained (each side gets [`AFTER_FAILURE`] of silence before it is given up).
#[derive(Default)]
struct Run {
    first: Option<Error>,
    /// A refusal of the direct connection seen on either side.
    refusal: Option<Error>,
    cancelled: bool,
}

impl Run {
    fn failing(&self) -> bool {
        self.first.is_some() || self.refusal.is_some() || self.cancelled
    }

    fn fail(&mut self, e: Error, peers: &mut [Peer<'_>; 2]) {
        if matches!(e, Error::Cancelled { .. }) {
            self.cancelled = true;
        } else if e.is_third_party_refused() {
            if self
                .refusal
                .as_ref()
                .is_none_or(|r| refusal_rank(&e) > refusal_rank(r))
            {
                self.refusal = Some(e);
            }
        } else if self.first.is_none() {
            self.first = Some(e);
        }
        for p in peers.iter_mut() {
            p.abort();
        }
    }

    fn go(&mut self, peers: &mut [Peer<'_>; 2], round_trips: &mut u32) {
        let mut wrote = false;
        for i in 0..2 {
            if peers[i].outbox.is_empty() {
                continue;
            }
            wrote = true;
            if let Err(e) = peers[i].flush() {
                self.fail(e, peers);
            }
        }
        if wrote {
            *round_trips += 1;
        }
        loop {
            for i in 0..2 {
                loop {
                    let failing = self.failing();
                    let p = &mut peers[i];
                    let Some(r) = p.c.parser.poll_reply() else {
                        break;
                    };
                    let e = match r {
                        Ok(r) => p.accept(r, failing),
                        Err(e) => {
                            p.give_up();
                            Some(Error::Protocol(format!("{e} (from the {} server)", p.side)))
                        }
                    };
                    if let Some(e) = e {
                        self.fail(e, peers);
                    }
                }
            }
            if peers.iter().all(|p| p.queue.is_empty()) {
                return;
            }
            if !self.cancelled && peers.iter().any(|p| p.cancelled()) {
                self.fail(Error::Cancelled { moved: 0 }, peers);
            }
            let failing = self.failing();
            for i in 0..2 {
                let p = &mut peers[i];
                if p.queue.is_empty() {
                    continue;
                }
                let Some(limit) = p.patience(failing) else {
                    continue;
                };
                if p.heard.elapsed() >= limit {
                    if failing {
                        p.give_up();
                    } else {
                        // Silent too long: ABOR (this side too) and a last short wait.
                        self.fail(Error::Timeout(limit, "a reply"), peers);
                    }
                }
            }
            let ready = wait_readable(peers);
            for (i, r) in ready.into_iter().enumerate() {
                if r {
                    if let Err(e) = peers[i].read_some() {
                        self.fail(e, peers);
                    }
                }
            }
        }
    }

    /// The error to report: cancellation; else a refusal of the direct connection, unless
    /// something failed before any data connection was tried (a refused STOR, a missing
    /// file: the refusal is then its consequence); else the first error.
    fn verdict(self) -> Option<Error> {
        if self.cancelled {
            return Some(Error::Cancelled { moved: 0 });
        }
        match (self.refusal, self.first) {
            (Some(r), None) => Some(r),
            (Some(r), Some(f)) if is_data_failure(&f) => Some(r),
            (_, f) => f,
        }
    }
}

/// Which refusal explains a failure best: a refused PORT/EPRT/SPOR (the policy answer
/// itself), then the destination's word on the connection it turned away, then the source's
/// failure to connect (which a destination's refusal causes).
fn refusal_rank(e: &Error) -> u8 {
    match e {
        Error::ThirdPartyRefused { command, .. }
            if ["PORT", "EPRT", "SPOR"]
                .iter()
                .any(|v| command.starts_with(v)) =>
        {
            2
        }
        Error::ThirdPartyRefused {
            side: Side::Destination,
            ..
        } => 1,
        _ => 0,
    }
}

/// A failure of the data connection itself (so a refusal seen alongside explains it).
fn is_data_failure(e: &Error) -> bool {
    matches!(
        e,
        Error::Reply {
            code: 426 | 451,
            ..
        } | Error::Closed { .. }
            | Error::Timeout(..)
    )
}

/// Waits up to [`POLL`] for either control connection (of sides that owe replies) to become
/// readable.
fn wait_readable(peers: &mut [Peer<'_>; 2]) -> [bool; 2] {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let owe: Vec<usize> = (0..2).filter(|&i| !peers[i].queue.is_empty()).collect();
    // Replies rustls already decrypted are not on the socket any more.
    let mut out = [false; 2];
    for &i in &owe {
        out[i] = peers[i].c.ctrl.pending() > 0;
    }
    if out.iter().any(|&b| b) {
        return out;
    }
    let mut fds: Vec<PollFd<'_>> = owe
        .iter()
        .map(|&i| PollFd::new(peers[i].c.ctrl.tcp().as_fd(), PollFlags::POLLIN))
        .collect();
    if fds.is_empty() {
        return out;
    }
    let wait = u16::try_from(POLL.as_millis()).unwrap_or(u16::MAX);
    if poll(&mut fds, PollTimeout::from(wait)).is_err() {
        return out;
    }
    for (k, &i) in owe.iter().enumerate() {
        out[i] = fds[k].revents().is_some_and(|r| {
            r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn marker(stripe_index: u32, stripe_bytes: u64) -> PerfMarker {
        PerfMarker {
            timestamp: UNIX_EPOCH,
            stripe_index,
            stripe_bytes,
            total_stripes: 2,
        }
    }

    /// Progress is the sum of each stripe's latest count; a marker for a stripe index no
    /// server has is ignored, and huge counts saturate.
    #[test]
    fn perf_markers_add_up_per_stripe() {
        let mut s = StripeBytes::default();
        assert_eq!(s.update(&marker(0, 100)), Some(100));
        assert_eq!(s.update(&marker(1, 50)), Some(150));
        assert_eq!(s.update(&marker(0, 300)), Some(350));
        assert_eq!(s.update(&marker(u32::MAX, 1)), None);
        assert_eq!(s.update(&marker(1, u64::MAX)), Some(u64::MAX));
    }
}
