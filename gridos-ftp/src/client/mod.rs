//! A blocking FTP client (RFC 959 stream mode, with RFC 2389/2428/3659 when the server offers
//! them) whose data connections go through gridos-io's zero-copy transfers.
//!
//! The control connection is a `TcpStream` with timeouts, driven by [`ReplyParser`]; every
//! reply code is checked. FTPS (RFC 4217) puts it under TLS ([`ClientConfig::tls`]:
//! explicit `AUTH TLS`, implicit, or on its own before a password goes out) with `PROT P`
//! data connections that resume its TLS session; their bytes go through user space, clear
//! ones keep the zero-copy path. A refused certificate is [`Error::Tls`], with rustls's
//! reason (unknown issuer, expired, wrong name). Data connections are passive (EPSV, falling back to PASV) and always
//! go to the control connection's peer address — a PASV reply naming another host is not
//! followed. A server at its client limits (a 421 greeting) is tried again for
//! [`ClientConfig::busy_retry`]. A download is spliced socket → file by
//! [`gridos_io::recv_file`] (socket reads overlapped with file writes), an upload file →
//! socket by [`gridos_io::send_file`]. [`third_party::transfer`] copies between two servers
//! with the data going straight from one to the other (the client only on the control
//! connections).
//!
//! ```no_run
//! use gridos_ftp::client::{Client, ClientConfig};
//! let mut c = Client::connect("127.0.0.1:21", ClientConfig::default())?;
//! c.login_anonymous()?;
//! let out = std::fs::File::create("/tmp/readme")?;
//! let report = c.get("/pub/README", &out, 0, 0)?;
//! println!("{} bytes via {}", report.bytes, report.path);
//! c.quit()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod gridftp;
mod list;
mod secure;
pub mod third_party;

pub use error::{Error, Result, Side};
pub use gridftp::{GridOptions, REST_RANGES_MAX, RangesHook};
pub use list::{Entry, EntryKind};
pub use secure::TlsParams;
pub use third_party::{ThirdPartyOptions, ThirdPartyReport};

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use gridos_io::{CancelToken, TransferOptions, TransferReport};

use crate::proto::{
    Command, EpsvArg, ListArgs, Opts, ProtLevel, Reply, ReplyParser, Restart, TransferType,
};
use crate::proto::{addr, facts};
use crate::tls::{ClientTls, ClientTlsOptions, DataStream};
use secure::Ctrl;

/// When the client speaks TLS (FTPS, RFC 4217). Under TLS the data connections are
/// protected too (`PBSZ 0`, `PROT P`) and go through user space; clear ones keep the
/// zero-copy path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsMode {
    /// Never: everything in clear, passwords too (reported: [`Client::sent_password_in_clear`]).
    Never,
    /// Upgrade with `AUTH TLS` before a password goes out, when the server accepts it (as
    /// its FEAT's `AUTH TLS` announces); anonymous logins and servers without TLS stay clear (a password then
    /// goes in clear, with a warning). A server that offers TLS and then fails it (a
    /// certificate that does not verify) is an error, never a quiet fall-back to clear.
    #[default]
    Auto,
    /// Explicit FTPS, required: `AUTH TLS` right after the greeting, or
    /// [`Error::TlsUnavailable`] (curl's `--ssl-reqd`, an `ftpes://` URL).
    Explicit,
    /// Implicit FTPS: TLS from the first byte (an `ftps://` URL, port 990).
    Implicit,
}

/// Client settings. Start from `ClientConfig::default()` and change fields.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Limit for establishing the control and data connections (default 30 s).
    pub connect_timeout: Duration,
    /// Limit for waiting for one reply (default 60 s).
    pub reply_timeout: Duration,
    /// A data transfer with no progress for this long is abandoned (default 60 s).
    pub data_timeout: Duration,
    /// Options for every data transfer: forced I/O path, cancellation, progress counter.
    /// The cancel token also interrupts waits for replies.
    pub transfer: TransferOptions,
    /// Largest listing accepted, in bytes (default 64 MiB).
    pub max_listing: usize,
    /// Try EPSV before PASV (default true; false goes straight to PASV).
    pub use_epsv: bool,
    /// Active mode for stream-mode transfers and listings: we listen on the control
    /// connection's local address, send PORT (EPRT for IPv6) and accept the server's data
    /// connection, only from the server's own address (default false: passive). MODE E
    /// downloads always work this way; MODE E uploads stay passive.
    pub active: bool,
    /// How long [`Client::connect`] keeps retrying a busy server, in all (default 30 s;
    /// `Duration::ZERO`: one attempt). Busy means a 421 (or other 4yz) greeting — the
    /// server's client limits — or a connection accepted and then closed or reset before
    /// the greeting ended, as inetd-style limits do. Retries wait with exponential backoff
    /// and jitter, as lftp does. A refused connection (nothing listening), a timeout, a 5yz
    /// greeting and anything after the greeting (a 421 after a failed login, say) are not
    /// retried.
    pub busy_retry: Duration,
    /// When to use TLS (default [`TlsMode::Auto`]).
    pub tls: TlsMode,
    /// How server certificates are checked and the client certificate, if any; `None`:
    /// the system's roots, no client certificate (loaded when TLS is first needed). One
    /// [`ClientTls`] may serve many clients: each control connection keeps its own TLS
    /// sessions, which its data connections resume.
    pub tls_config: Option<ClientTls>,
    /// The name the server's certificate must match (a DNS name or an address); `None`: the
    /// address connected to. Set it when connecting by host name
    /// ([`Client::connect_host`] does).
    pub server_name: Option<String>,
    /// Send the login (with FEAT, TYPE I and the MLST of [`Client::login_with_stat`]) as
    /// soon as the connection is up, before the greeting arrives: one round trip less per
    /// connection (default false). Only where nothing has to happen first — a clear
    /// control connection that needs no `AUTH TLS` ([`TlsMode::Never`], or
    /// [`TlsMode::Auto`] with an anonymous login); ignored otherwise. Meant for servers
    /// known to read commands ahead: one that answers the greeting but not the login within
    /// a few round trips (2 s at least) is connected to again the usual way
    /// ([`Client::login_ahead`] tells which happened).
    pub login_before_greeting: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(30),
            reply_timeout: Duration::from_secs(60),
            data_timeout: Duration::from_secs(60),
            transfer: TransferOptions::default(),
            max_listing: 64 << 20,
            use_epsv: true,
            active: false,
            busy_retry: Duration::from_secs(30),
            tls: TlsMode::Auto,
            tls_config: None,
            server_name: None,
            login_before_greeting: false,
        }
    }
}

/// What the server announced in its FEAT reply (RFC 2389).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Features {
    /// `MLST` (and so MLSD).
    pub mlst: bool,
    /// `SIZE`.
    pub size: bool,
    /// `MDTM`.
    pub mdtm: bool,
    /// `MFMT` (set modification times, draft-somers-ftp-mfxx).
    pub mfmt: bool,
    /// `REST STREAM`.
    pub rest_stream: bool,
    /// `EPSV`.
    pub epsv: bool,
    /// `UTF8`.
    pub utf8: bool,
    /// `MODE E` (GridFTP extended block mode; `PARALLEL` alone implies it too).
    pub mode_e: bool,
    /// `ERET` (partial retrieve).
    pub eret: bool,
    /// `ESTO` (adjusted store).
    pub esto: bool,
    /// `SBUF`.
    pub sbuf: bool,
    /// `AUTH TLS` (RFC 4217 explicit FTPS).
    pub auth_tls: bool,
    /// `CKSM` algorithms, upper-case (`CKSM MD5,ADLER32` or Globus's `CKSM MD5:10;ADLER32:10;`).
    pub checksums: Vec<String>,
    /// Every feature line, trimmed, as sent.
    pub lines: Vec<String>,
}

impl Features {
    /// Parses a FEAT reply (211 multi-line).
    pub fn parse(reply: &Reply) -> Features {
        let mut f = Features::default();
        let n = reply.lines.len();
        for line in reply.lines.iter().take(n.saturating_sub(1)).skip(1) {
            let line = line.trim();
            let mut words = line.split_ascii_whitespace();
            let word = words.next().unwrap_or("").to_ascii_uppercase();
            match word.as_str() {
                "MLST" => f.mlst = true,
                "SIZE" => f.size = true,
                "MDTM" => f.mdtm = true,
                "MFMT" => f.mfmt = true,
                "EPSV" => f.epsv = true,
                "UTF8" => f.utf8 = true,
                "PARALLEL" => f.mode_e = true,
                "ERET" => f.eret = true,
                "ESTO" => f.esto = true,
                "SBUF" => f.sbuf = true,
                // `AUTH TLS`, or one line listing mechanisms: `AUTH TLS;TLS-C;SSL`.
                "AUTH" => {
                    f.auth_tls |= words
                        .flat_map(|w| w.split([';', ',']))
                        .any(|m| m.eq_ignore_ascii_case("TLS"))
                }
                "MODE" if words.next().is_some_and(|w| w.eq_ignore_ascii_case("E")) => {
                    f.mode_e = true
                }
                "CKSM" => {
                    f.checksums = words
                        .next()
                        .unwrap_or("")
                        .split([',', ';'])
                        .filter_map(|a| a.split(':').next())
                        .filter(|a| !a.is_empty())
                        .map(|a| a.to_ascii_uppercase())
                        .collect();
                }
                "REST" => {
                    f.rest_stream = words
                        .next()
                        .is_some_and(|w| w.eq_ignore_ascii_case("STREAM"))
                }
                _ => {}
            }
            if !line.is_empty() {
                f.lines.push(line.to_string());
            }
        }
        f
    }
}

/// How [`Client::put`] writes the remote file.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutMode {
    /// `STOR`: create or replace.
    Store,
    /// `APPE`: append to the existing file.
    Append,
    /// `REST n` + `STOR`: write from byte `n` of the remote file on (RFC 3659 REST STREAM).
    Restart(u64),
}

/// A logged-in (or not yet logged-in) FTP control connection.
pub struct Client {
    ctrl: Ctrl,
    peer: SocketAddr,
    /// The name the server's certificate must match.
    server_name: String,
    /// This connection's TLS settings (its own session cache, which data connections
    /// resume), once TLS is on.
    tls: Option<ClientTls>,
    /// `PROT P` is in force: data connections are TLS.
    prot_private: bool,
    /// A password went out in clear on this connection.
    clear_password: bool,
    /// Third-party state under TLS: `DCAU N` and `SSCN ON` were accepted.
    pub(super) dcau_none: bool,
    pub(super) sscn_on: bool,
    /// `TREV PERF 1` was accepted: the server sends a 112 perf marker every second of a
    /// MODE E transfer (third-party progress comes from them).
    pub(super) perf_markers: bool,
    /// `SSCN OFF` is owed with the next command (the server made a third-party transfer's
    /// data connection as TLS client; its own transfers want it as server again).
    pub(super) sscn_reset: bool,
    /// Data connections are accepted only from the server's own address.
    data_peer: crate::proto::DataPolicy,
    parser: ReplyParser,
    config: ClientConfig,
    features: Features,
    welcome: Reply,
    epsv_refused: bool,
    poisoned: bool,
    ext: gridftp::ExtState,
    /// Set-up commands (MODE, OPTS, PORT, REST…) written together with the next command;
    /// each with the reply codes that mean success.
    deferred: Vec<(Command, Vec<u16>)>,
    /// `MLST` sent ahead with the login's FEAT batch ([`Client::login_with_stat`]): the
    /// path and its reply, answered by the next [`Client::stat`] of that path; any other
    /// command sent first drops it (it could change what the reply describes).
    stat_ahead: Option<(String, Reply)>,
    /// The greeting has not been read yet ([`ClientConfig::login_before_greeting`]).
    greeting_pending: bool,
    /// What became of a login sent before the greeting ([`Client::login_ahead`]).
    login_ahead: Option<bool>,
    /// How long the TCP connection took to set up: about one round trip.
    connected_in: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.peer)
            .field("tls", &self.ctrl.is_tls())
            .field("prot_private", &self.prot_private)
            .field("features", &self.features)
            .finish_non_exhaustive()
    }
}

/// MODE Z: one zlib stream per data connection.
const ZLIB: gridos_io::compress::Compression = gridos_io::compress::Compression {
    codec: gridos_io::compress::Codec::Zlib,
    level: 6,
};

/// TLS sessions one control connection remembers for its data connections to resume.
const TLS_SESSIONS: usize = 32;

/// Read-timeout granularity on the control connection, so cancellation is noticed.
const POLL: Duration = Duration::from_millis(200);

/// Reply wait after a failed transfer: the server's verdict is wanted but not worth long.
const AFTER_FAILURE: Duration = Duration::from_secs(5);

/// Reply wait after a transfer stalled for the data timeout: the path to the server may be
/// gone (a partition), and where it is not, the server answers at once once the data
/// connection closes. So the copy fails about when its timeout says.
const AFTER_STALL: Duration = Duration::from_secs(1);

/// Whether an error from connecting and reading the greeting means "busy, try again": a
/// 4yz greeting, or the server took the TCP connection and then closed or reset it.
fn greeting_busy(e: &Error) -> bool {
    use std::io::ErrorKind as K;
    match e {
        Error::Reply { code, .. } => (400..500).contains(code),
        Error::Closed { .. } => true,
        Error::Io { op, source } => {
            *op != "connect"
                && matches!(
                    source.kind(),
                    K::ConnectionReset | K::ConnectionAborted | K::NotConnected
                )
        }
        _ => false,
    }
}

/// Sleeps for `d`, waking every [`POLL`] to honour the cancel token.
fn sleep_unless_cancelled(d: Duration, cancel: Option<&CancelToken>) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        if cancel.is_some_and(CancelToken::is_cancelled) {
            return Err(Error::Cancelled { moved: 0 });
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(POLL));
    }
}

fn connect_any(addrs: &[SocketAddr], timeout: Duration, what: &'static str) -> Result<TcpStream> {
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(Error::io(
        what,
        last.unwrap_or_else(|| std::io::Error::other("no address to connect to")),
    ))
}

/// Refuses arguments that would break the command line (CR, LF, NUL) or are empty.
fn arg(s: &str) -> Result<String> {
    if s.is_empty() {
        return Err(Error::InvalidArgument("empty path".into()));
    }
    if s.contains(['\r', '\n', '\0']) {
        return Err(Error::InvalidArgument(format!(
            "{s:?} contains CR, LF or NUL"
        )));
    }
    Ok(s.to_string())
}

/// The command as shown in errors: passwords hidden.
fn shown(cmd: &Command) -> String {
    match cmd {
        Command::Pass(_) => "PASS ****".into(),
        c => c.to_string(),
    }
}

fn reply_error(cmd: &Command, r: &Reply) -> Error {
    Error::Reply {
        command: shown(cmd),
        code: r.code,
        text: r.lines.join(" ").trim().to_string(),
    }
}

/// How one connection attempt ended.
enum Attempt {
    Connected(Box<Client>),
    /// The server is busy: worth another try (see [`ClientConfig::busy_retry`]).
    Busy(Error),
    Failed(Error),
}

/// Exponential backoff with jitter for busy servers: the first wait is about
/// `BUSY_FIRST_WAIT`, each next one up to twice as long, at most `BUSY_MAX_WAIT`.
struct Backoff {
    next: Duration,
    seed: u64,
}

const BUSY_FIRST_WAIT: Duration = Duration::from_millis(50);
const BUSY_MAX_WAIT: Duration = Duration::from_secs(2);

impl Backoff {
    fn new() -> Backoff {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is keyed randomly: clients started together do not retry in step.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        Backoff {
            next: BUSY_FIRST_WAIT,
            seed: h.finish() | 1,
        }
    }

    /// The next wait: uniformly in [d/2, d], then d doubles (up to the cap).
    fn wait(&mut self) -> Duration {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let d = self.next;
        self.next = (d * 2).min(BUSY_MAX_WAIT);
        let half = d / 2;
        let span = u64::try_from(half.as_micros()).unwrap_or(u64::MAX);
        half + Duration::from_micros(self.seed % span.saturating_add(1))
    }
}

impl Client {
    /// Connects to `addr` (host:port; IPv4 or IPv6) and reads the greeting. A busy server is
    /// tried again for up to [`ClientConfig::busy_retry`], then [`Error::Busy`].
    pub fn connect(addr: impl ToSocketAddrs, config: ClientConfig) -> Result<Client> {
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| Error::io("resolve", e))?
            .collect();
        let start = Instant::now();
        let mut backoff = Backoff::new();
        let mut attempts = 1u32;
        loop {
            let e = match Self::connect_once(&addrs, &config) {
                Attempt::Connected(c) => return Ok(*c),
                Attempt::Failed(e) => return Err(e),
                Attempt::Busy(e) => e,
            };
            let left = config.busy_retry.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(Error::Busy {
                    attempts,
                    waited: start.elapsed(),
                    last: Box::new(e),
                });
            }
            let wait = backoff.wait().min(left);
            tracing::info!(
                server = ?addrs.first(),
                attempt = attempts,
                wait_ms = wait.as_millis() as u64,
                reason = %e,
                "ftp client: server busy, retrying"
            );
            sleep_unless_cancelled(wait, config.transfer.cancel.as_ref())?;
            attempts += 1;
        }
    }

    /// Connects to `host` (a DNS name or an address; IPv6 with or without brackets) on
    /// `port`. Under TLS the server's certificate must name `host` (unless
    /// [`ClientConfig::server_name`] says another name): an address alone cannot be checked
    /// against a certificate issued for a DNS name.
    pub fn connect_host(host: &str, port: u16, mut config: ClientConfig) -> Result<Client> {
        let h = host.trim_start_matches('[').trim_end_matches(']');
        if config.server_name.is_none() {
            config.server_name = Some(h.to_string());
        }
        Client::connect((h, port), config)
    }

    /// One connection and greeting, classified for [`connect`](Self::connect).
    fn connect_once(addrs: &[SocketAddr], config: &ClientConfig) -> Attempt {
        match Self::connect_greeted(addrs, config.clone()) {
            Ok(c) => Attempt::Connected(Box::new(c)),
            Err(e) if greeting_busy(&e) => Attempt::Busy(e),
            Err(e) => Attempt::Failed(e),
        }
    }

    fn connect_greeted(addrs: &[SocketAddr], config: ClientConfig) -> Result<Client> {
        let started = Instant::now();
        let ctrl = connect_any(addrs, config.connect_timeout, "connect")?;
        let connected_in = started.elapsed();
        let peer = ctrl.peer_addr().map_err(|e| Error::io("getpeername", e))?;
        let server_name = config
            .server_name
            .clone()
            .unwrap_or_else(|| peer.ip().to_string());
        ctrl.set_nodelay(true)
            .map_err(|e| Error::io("TCP_NODELAY", e))?;
        ctrl.set_read_timeout(Some(POLL))
            .map_err(|e| Error::io("SO_RCVTIMEO", e))?;
        ctrl.set_write_timeout(Some(config.reply_timeout))
            .map_err(|e| Error::io("SO_SNDTIMEO", e))?;
        let mut c = Client {
            ctrl: Ctrl::Plain(ctrl),
            peer,
            server_name,
            tls: None,
            prot_private: false,
            perf_markers: false,
            clear_password: false,
            dcau_none: false,
            sscn_on: false,
            sscn_reset: false,
            data_peer: crate::proto::DataPolicy::client_only(peer.ip()),
            parser: ReplyParser::new(),
            config,
            features: Features::default(),
            welcome: Reply::new(0, ""),
            epsv_refused: false,
            poisoned: false,
            ext: gridftp::ExtState::default(),
            deferred: Vec::new(),
            stat_ahead: None,
            greeting_pending: false,
            login_ahead: None,
            connected_in,
        };
        if c.config.tls == TlsMode::Implicit {
            c.handshake_control()?;
        }
        if c.config.login_before_greeting && matches!(c.config.tls, TlsMode::Auto | TlsMode::Never)
        {
            // The login reads it (or the first command, if another comes first).
            c.greeting_pending = true;
            return Ok(c);
        }
        c.read_greeting()?;
        match c.config.tls {
            TlsMode::Explicit => c.start_tls(true).map(drop)?,
            TlsMode::Implicit => c.protect_data_connections()?,
            _ => {}
        }
        Ok(c)
    }

    /// Reads the 220 greeting (a 4yz one is what [`connect`](Self::connect) retries).
    fn read_greeting(&mut self) -> Result<()> {
        self.greeting_pending = false;
        let greeting = self.read_final("the greeting", self.config.reply_timeout)?;
        if greeting.code != 220 {
            self.poisoned = true;
            return Err(Error::Reply {
                command: "(connect)".into(),
                code: greeting.code,
                text: greeting.lines.join(" "),
            });
        }
        self.welcome = greeting;
        Ok(())
    }

    /// This connection's TLS settings: the configured ones (or the system's roots) with a
    /// session cache of its own, so its data connections resume *its* session — servers
    /// such as vsftpd (`require_ssl_reuse`) refuse a data connection that does not.
    fn session_tls(&self) -> Result<ClientTls> {
        let base = match &self.config.tls_config {
            Some(t) => t.clone(),
            None => ClientTls::new(&ClientTlsOptions::default())
                .map_err(|e| self.tls_error("control", e))?,
        };
        let mut config = (*base.config()).clone();
        config.resumption = rustls::client::Resumption::in_memory_sessions(TLS_SESSIONS);
        Ok(ClientTls::from_config(Arc::new(config)))
    }

    fn tls_error(&self, connection: &'static str, source: crate::tls::TlsError) -> Error {
        Error::Tls {
            connection,
            server: self.server_name.clone(),
            source,
        }
    }

    /// The TLS handshake on the control connection (implicit FTPS, or after `234`).
    fn handshake_control(&mut self) -> Result<()> {
        let tls = self.session_tls()?;
        let sock = self
            .ctrl
            .tcp()
            .try_clone()
            .map_err(|e| Error::io("control connection", e))?;
        let stream = match tls.connect(&self.server_name, sock, self.config.connect_timeout) {
            Ok(DataStream::Client(s)) => s,
            Ok(_) => {
                return Err(Error::Protocol(
                    "TLS handshake gave no client stream".into(),
                ));
            }
            Err(e) => {
                self.poisoned = true;
                return Err(self.tls_error("control", e));
            }
        };
        // The clear stream's descriptor closes; the socket lives on in the TLS stream's.
        self.ctrl = Ctrl::Tls(stream);
        self.tls = Some(tls);
        Ok(())
    }

    /// Explicit FTPS: `AUTH TLS`, the handshake, then `PBSZ 0` and `PROT P`. A refused
    /// `AUTH TLS` is [`Error::TlsUnavailable`] when `required`, else `Ok(false)` (still
    /// clear).
    fn start_tls(&mut self, required: bool) -> Result<bool> {
        let cmd = Command::Auth("TLS".into());
        let r = self.command(&cmd)?;
        if r.code != 234 && !required && (400..600).contains(&r.code) {
            return Ok(false);
        }
        if r.code != 234 {
            return Err(Error::TlsUnavailable {
                command: shown(&cmd),
                code: r.code,
                text: r.lines.join(" ").trim().to_string(),
            });
        }
        // Anything already read after the 234 came in clear and would pass for protected.
        if self.parser.is_mid_reply() || self.parser.poll_reply().is_some() {
            self.poisoned = true;
            return Err(Error::Protocol(
                "the server sent more after 234 to AUTH TLS, in clear".into(),
            ));
        }
        self.handshake_control()?;
        self.protect_data_connections()?;
        Ok(true)
    }

    /// `PBSZ 0` and `PROT P` in one round trip: data connections are TLS from now on.
    fn protect_data_connections(&mut self) -> Result<()> {
        let pbsz = Command::Pbsz(0);
        let prot = Command::Prot(ProtLevel::Private);
        self.send_many(&[&pbsz, &prot])?;
        let replies = [
            self.read_final(&shown(&pbsz), self.config.reply_timeout)?,
            self.read_final(&shown(&prot), self.config.reply_timeout)?,
        ];
        for (cmd, r) in [&pbsz, &prot].into_iter().zip(&replies) {
            if r.code != 200 {
                return Err(Error::TlsUnavailable {
                    command: shown(cmd),
                    code: r.code,
                    text: r.lines.join(" ").trim().to_string(),
                });
            }
        }
        self.prot_private = true;
        Ok(())
    }

    /// Whether the control connection is encrypted (TLS).
    pub fn is_tls(&self) -> bool {
        self.ctrl.is_tls()
    }

    /// The control connection's TLS version and cipher suite; `None` in clear.
    pub fn tls_params(&self) -> Option<TlsParams> {
        self.ctrl.tls_params()
    }

    /// Whether data connections are TLS (`PROT P` in force).
    pub fn data_protected(&self) -> bool {
        self.prot_private
    }

    /// Whether a password went out in clear on this connection (no TLS: the server offers
    /// none, or [`TlsMode::Never`]); a front end should say so.
    pub fn sent_password_in_clear(&self) -> bool {
        self.clear_password
    }

    /// The name the server's certificate must match.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// The server's address (data connections go here too).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// TCP_INFO of the control connection: its RTT is the path's, measured before any data
    /// moves (the automatic tuning starts from it).
    pub fn control_tcp_info(&self) -> Result<gridos_io::TcpInfo> {
        gridos_io::tcp_info(self.ctrl.tcp()).map_err(|e| Error::Protocol(format!("TCP_INFO: {e}")))
    }

    /// What became of a login sent before the greeting
    /// ([`ClientConfig::login_before_greeting`]): `None` if none was, `Some(true)` if the
    /// server answered it, `Some(false)` if it did not and the client connected again.
    pub fn login_ahead(&self) -> Option<bool> {
        self.login_ahead
    }

    /// The 220 greeting (empty until the login reads it, with
    /// [`ClientConfig::login_before_greeting`]).
    pub fn welcome(&self) -> &Reply {
        &self.welcome
    }

    /// Features from FEAT (empty until [`login`](Self::login) or [`feat`](Self::feat)).
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// The settings in force; transfer options (progress counter, cancel token, I/O path) may
    /// be changed between operations through [`config_mut`](Self::config_mut).
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Mutable settings.
    pub fn config_mut(&mut self) -> &mut ClientConfig {
        &mut self.config
    }

    /// Logs in as `user` with `password`, then asks for FEAT, turns UTF-8 on when offered and
    /// selects binary type (`TYPE I`).
    ///
    /// With [`TlsMode::Auto`] and a user other than `anonymous`/`ftp`, the client first
    /// sends `AUTH TLS` (what a FEAT line `AUTH TLS` announces; asked directly, one round
    /// trip as FEAT would be, since servers such as vsftpd do not always list it) and
    /// upgrades when the server accepts; when it refuses, the password goes in clear,
    /// which is logged as a warning and reported by
    /// [`sent_password_in_clear`](Self::sent_password_in_clear).
    pub fn login(&mut self, user: &str, password: &str) -> Result<()> {
        self.login_inner(user, password, None)
    }

    /// Logs in like [`login`](Self::login) and sends `MLST path` in the same round trip as
    /// FEAT and TYPE I, so the first [`stat`](Self::stat) of `path` costs no round trip of
    /// its own (on a 100 ms path, 100 ms off every copy). A server without MLST answers it
    /// with an error that is ignored, and `stat` asks the way it would have. Paths that are
    /// not ASCII are not sent ahead: they may need the `OPTS UTF8 ON` that FEAT decides.
    pub fn login_with_stat(&mut self, user: &str, password: &str, path: &str) -> Result<()> {
        self.login_inner(user, password, Some(path))
    }

    fn login_inner(&mut self, user: &str, password: &str, stat: Option<&str>) -> Result<()> {
        let anonymous = user.eq_ignore_ascii_case("anonymous") || user.eq_ignore_ascii_case("ftp");
        let auth_tls = !anonymous && !self.ctrl.is_tls() && self.config.tls == TlsMode::Auto;
        // Refused before anything leaves, so the connection stays as it was.
        arg(user)?;
        if password.contains(['\r', '\n', '\0']) {
            return Err(Error::InvalidArgument(
                "password contains CR, LF or NUL".into(),
            ));
        }
        if self.greeting_pending && !auth_tls {
            return self.login_before_greeting(user, password, stat);
        }
        if auth_tls {
            self.start_tls(false)?;
        }
        self.login_batch(user, password, stat, false)
    }

    /// The login of [`ClientConfig::login_before_greeting`]: the batch leaves now, the
    /// greeting is read before its replies. A server that greets but leaves the login
    /// unanswered for a few round trips, or that is busy (a 4yz greeting, a connection
    /// closed before the greeting), is connected to again and logged in the usual way; one
    /// that never greets is not waited for twice.
    fn login_before_greeting(
        &mut self,
        user: &str,
        password: &str,
        stat: Option<&str>,
    ) -> Result<()> {
        self.greeting_pending = false;
        match self.login_batch(user, password, stat, true) {
            Err(e)
                if self.login_ahead.is_none()
                    && (self.welcome.code == 220 || greeting_busy(&e)) =>
            {
                tracing::info!(
                    server = %self.server_name,
                    reason = %e,
                    "ftp client: the login sent before the greeting went unanswered; connecting again"
                );
                let mut config = self.config.clone();
                config.login_before_greeting = false;
                // Hung up first: a server at its client limit has room for the new one.
                let _ = self.ctrl.tcp().shutdown(std::net::Shutdown::Both);
                *self = Client::connect(self.peer, config)?;
                self.login_ahead = Some(false);
                self.login_inner(user, password, stat)
            }
            r => r,
        }
    }

    /// Sends USER, PASS, FEAT, TYPE I (and MLST) and reads their replies; `ahead`: the
    /// greeting is read between the two.
    fn login_batch(
        &mut self,
        user: &str,
        password: &str,
        stat: Option<&str>,
        ahead: bool,
    ) -> Result<()> {
        let anonymous = user.eq_ignore_ascii_case("anonymous") || user.eq_ignore_ascii_case("ftp");
        if !anonymous && !self.ctrl.is_tls() {
            self.clear_password = true;
            tracing::warn!(
                server = %self.server_name,
                user,
                "ftp client: the password goes in clear ({})",
                if self.config.tls == TlsMode::Never {
                    "TLS is off"
                } else {
                    "the server offers no TLS"
                }
            );
        }
        let user = Command::User(arg(user)?);
        if password.contains(['\r', '\n', '\0']) {
            return Err(Error::InvalidArgument(
                "password contains CR, LF or NUL".into(),
            ));
        }
        // USER, PASS, FEAT, TYPE I (and the MLST asked for) leave in one segment (RFC 959
        // lets a client send commands ahead): on a long path every round trip saved is one
        // RTT off every transfer.
        let pass = Command::Pass(password.to_string());
        let ty = Command::Type(TransferType::Image);
        // A path `stat` would refuse is left for `stat` to refuse.
        let mlst = stat
            .filter(|p| p.is_ascii())
            .and_then(|p| Some((p, Command::Mlst(Some(arg(p).ok()?)))));
        match &mlst {
            Some((_, m)) => self.send_many(&[&user, &pass, &Command::Feat, &ty, m])?,
            None => self.send_many(&[&user, &pass, &Command::Feat, &ty])?,
        }
        let mut wait = self.config.reply_timeout;
        if ahead {
            self.read_greeting()?;
            // A server that dropped what came before its greeting never answers: wait a
            // few round trips, not the whole reply timeout.
            wait = (self.connected_in * 10)
                .max(Duration::from_secs(2))
                .min(wait);
        }
        let first = self.read_final(&shown(&user), wait)?;
        if ahead {
            self.login_ahead = Some(true);
        }
        if let Err(e) = self.read_login(first, &user, &pass) {
            // The commands behind a refused login are answered (530) without running; once
            // their replies are read the connection may try another login.
            let behind = if mlst.is_some() { 3 } else { 2 };
            for _ in 0..behind {
                if self
                    .read_final("a command sent behind the login", self.config.reply_timeout)
                    .is_err()
                {
                    self.poisoned = true;
                    break;
                }
            }
            return Err(e);
        }
        let r = self.read_final("FEAT", self.config.reply_timeout)?;
        self.take_features(&r)?;
        if self.features.utf8 {
            // Best effort (servers that announce UTF8 usually have it on anyway): it leaves
            // with the next command instead of costing a round trip of its own.
            self.deferred.push((
                Command::Opts(Opts::Utf8(true)),
                vec![200, 202, 500, 501, 502, 504],
            ));
        }
        let r = self.read_final(&shown(&ty), self.config.reply_timeout)?;
        let typed = if r.code != 200 {
            Err(reply_error(&ty, &r))
        } else {
            Ok(())
        };
        if let Some((p, m)) = &mlst {
            // Read whatever the answer, so the replies stay in step.
            let r = self.read_final(&shown(m), self.config.reply_timeout)?;
            if self.features.mlst {
                self.stat_ahead = Some((p.to_string(), r));
            }
        }
        typed
    }

    /// Reads the reply to PASS sent with USER, whose reply `r` is.
    fn read_login(&mut self, r: Reply, user: &Command, pass: &Command) -> Result<()> {
        let after = self.read_final(&shown(pass), self.config.reply_timeout);
        match r.code {
            // Logged in without a password: PASS got 503 or 202; either way we are in.
            230 | 202 => after.map(drop),
            331 => {
                let r = after?;
                match r.code {
                    230 | 202 => Ok(()),
                    332 => Err(Error::Unsupported("an account (ACCT) is required")),
                    _ => Err(reply_error(pass, &r)),
                }
            }
            332 => Err(Error::Unsupported("an account (ACCT) is required")),
            // A server may hang up after refusing USER; the refusal is the error to report.
            _ => Err(reply_error(user, &r)),
        }
    }

    /// Logs in as `anonymous`.
    pub fn login_anonymous(&mut self) -> Result<()> {
        self.login("anonymous", "gridos@")
    }

    /// Sends FEAT and remembers the answer; a server without FEAT (500/502) has no features.
    pub fn feat(&mut self) -> Result<&Features> {
        let r = self.command(&Command::Feat)?;
        self.take_features(&r)?;
        Ok(&self.features)
    }

    /// Records what a FEAT reply announces (a server without FEAT announces nothing).
    fn take_features(&mut self, r: &Reply) -> Result<()> {
        self.features = match r.code {
            211 => Features::parse(r),
            500..=504 => Features::default(),
            _ => return Err(reply_error(&Command::Feat, r)),
        };
        Ok(())
    }

    /// `NOOP`.
    pub fn noop(&mut self) -> Result<()> {
        self.expect(&Command::Noop, &[200]).map(drop)
    }

    /// `PWD`: the current directory.
    pub fn pwd(&mut self) -> Result<String> {
        let r = self.expect(&Command::Pwd, &[257])?;
        parse_quoted(r.text())
            .ok_or_else(|| Error::Protocol(format!("no quoted path in PWD reply {:?}", r.text())))
    }

    /// `CWD path`.
    pub fn cwd(&mut self, path: &str) -> Result<()> {
        self.expect(&Command::Cwd(arg(path)?), &[250, 200])
            .map(drop)
    }

    /// `MKD path`.
    pub fn mkdir(&mut self, path: &str) -> Result<()> {
        self.expect(&Command::Mkd(arg(path)?), &[257, 250])
            .map(drop)
    }

    /// `RMD path`.
    pub fn rmdir(&mut self, path: &str) -> Result<()> {
        self.expect(&Command::Rmd(arg(path)?), &[250, 200])
            .map(drop)
    }

    /// `DELE path`.
    pub fn delete(&mut self, path: &str) -> Result<()> {
        self.expect(&Command::Dele(arg(path)?), &[250, 200])
            .map(drop)
    }

    /// `RNFR from` + `RNTO to`.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        let (from, to) = (arg(from)?, arg(to)?);
        self.expect(&Command::Rnfr(from), &[350])?;
        self.expect(&Command::Rnto(to), &[250, 200]).map(drop)
    }

    /// `SIZE path` (binary type, so the size in bytes).
    pub fn size(&mut self, path: &str) -> Result<u64> {
        let r = self.expect(&Command::Size(arg(path)?), &[213])?;
        let t = r.text().trim();
        t.parse()
            .map_err(|_| Error::Protocol(format!("SIZE reply {t:?} is not a number")))
    }

    /// `MDTM path`: last modification time.
    pub fn mdtm(&mut self, path: &str) -> Result<SystemTime> {
        let r = self.expect(&Command::Mdtm(arg(path)?), &[213])?;
        let t = r.text().trim();
        facts::parse_time(t).map_err(|_| Error::Protocol(format!("MDTM reply {t:?} is not a time")))
    }

    /// `MFMT`: sets the modification time of `path` (UTC, to the millisecond: fractions
    /// are sent only when the time has one). [`Error::Unsupported`] without sending
    /// anything when the server's FEAT does not list MFMT (vsftpd's two-argument MDTM is not
    /// used: it reads a file whose name starts with digits and a space as a time).
    pub fn set_modified(&mut self, path: &str, modified: SystemTime) -> Result<()> {
        if !self.features.mfmt {
            return Err(Error::Unsupported("MFMT (setting modification times)"));
        }
        let cmd = Command::Mfmt {
            modified: to_millis(modified),
            path: arg(path)?,
        };
        self.expect(&cmd, &[213]).map(drop)
    }

    /// What `path` is: `Ok(None)` when it does not exist (or cannot be seen). Uses MLST when
    /// offered (type, size and modification time, fractions of a second included), else
    /// `CWD` (directory), `SIZE` (file) and, when offered, `MDTM` (its time).
    pub fn stat(&mut self, path: &str) -> Result<Option<Entry>> {
        let p = arg(path)?;
        if self.features.mlst {
            let cmd = Command::Mlst(Some(p));
            let r = match self.stat_ahead.take() {
                Some((q, r)) if q == path => r,
                _ => self.command(&cmd)?,
            };
            return match r.code {
                250 => {
                    let line = r
                        .lines
                        .iter()
                        .skip(1)
                        .find(|l| l.starts_with(' '))
                        .map(|l| l.get(1..).unwrap_or(""))
                        .ok_or_else(|| Error::Protocol("MLST reply without facts".into()))?;
                    let f = crate::proto::Facts::parse(line)
                        .map_err(|e| Error::Protocol(format!("MLST facts {line:?}: {e}")))?;
                    let kind = match f.kind {
                        Some(crate::proto::FileKind::Dir)
                        | Some(crate::proto::FileKind::Cdir)
                        | Some(crate::proto::FileKind::Pdir) => EntryKind::Dir,
                        Some(crate::proto::FileKind::Other(_)) => EntryKind::Other,
                        _ => EntryKind::File,
                    };
                    Ok(Some(Entry {
                        name: f.name.rsplit('/').next().unwrap_or("").to_string(),
                        kind,
                        size: f.size,
                        modified: f.modify,
                    }))
                }
                450 | 550 => Ok(None),
                _ => Err(reply_error(&cmd, &r)),
            };
        }
        let name = path
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string();
        let here = self.pwd()?;
        let cwd = Command::Cwd(p.clone());
        let r = self.command(&cwd)?;
        if (200..300).contains(&r.code) {
            self.cwd(&here)?;
            return Ok(Some(Entry {
                name,
                kind: EntryKind::Dir,
                size: None,
                modified: None,
            }));
        }
        match self.size(&p) {
            Ok(n) => {
                let modified = if self.features.mdtm {
                    match self.mdtm(&p) {
                        Ok(t) => Some(t),
                        Err(Error::Reply { .. }) => None,
                        Err(e) => return Err(e),
                    }
                } else {
                    None
                };
                Ok(Some(Entry {
                    name,
                    kind: EntryKind::File,
                    size: Some(n),
                    modified,
                }))
            }
            Err(Error::Reply {
                code: 450 | 550, ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Lists a directory: MLSD when the server offers MLST (names, types, sizes, times), else
    /// LIST parsed best-effort (Unix and DOS formats). `.`, `..` and names with `/` are left out.
    pub fn list(&mut self, path: Option<&str>) -> Result<Vec<Entry>> {
        let path = path.map(arg).transpose()?;
        if self.features.mlst {
            let text = self.listing(Command::Mlsd(path))?;
            let mut out = Vec::new();
            for line in text.lines().map(|l| l.trim_end_matches('\r')) {
                if line.is_empty() {
                    continue;
                }
                match list::parse_mlsd_line(line) {
                    Some(Ok(e)) => out.push(e),
                    Some(Err(e)) => {
                        return Err(Error::Protocol(format!("MLSD line {line:?}: {e}")));
                    }
                    None => {}
                }
            }
            Ok(out)
        } else {
            let text = self.listing(Command::List(ListArgs {
                options: None,
                path,
            }))?;
            Ok(text
                .lines()
                .filter_map(|l| list::parse_list_line(l.trim_end_matches('\r')))
                .collect())
        }
    }

    /// `NLST`: names only, as the server sends them.
    pub fn nlst(&mut self, path: Option<&str>) -> Result<Vec<String>> {
        let path = path.map(arg).transpose()?;
        let text = self.listing(Command::Nlst(ListArgs {
            options: None,
            path,
        }))?;
        Ok(text
            .lines()
            .map(|l| l.trim_end_matches('\r').to_string())
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// Downloads `remote` from byte `remote_offset` on into `file` at `file_offset`
    /// (zero-copy socket → file). When the server offers SIZE, the byte count is checked
    /// against it and a short transfer is [`Error::Incomplete`].
    pub fn get(
        &mut self,
        remote: &str,
        file: &File,
        file_offset: u64,
        remote_offset: u64,
    ) -> Result<TransferReport> {
        let p = arg(remote)?;
        let total = if self.features.size {
            match self.size(&p) {
                Ok(n) => Some(n),
                Err(Error::Reply { .. }) => None,
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        if let Some(t) = total
            && remote_offset > t
        {
            return Err(Error::InvalidArgument(format!(
                "offset {remote_offset} is past the end of {remote} ({t} bytes)"
            )));
        }
        self.leave_mode_e()?;
        let data = self.open_data()?;
        if remote_offset > 0 {
            self.expect(&Command::Rest(Restart::Offset(remote_offset)), &[350])?;
        }
        let cmd = Command::Retr(p);
        let early = self.start_transfer(&cmd)?;
        let data = self.data_ready(data)?;
        let inflate = self.ext.deflate;
        let res = match self.protect_data(data).map(DataStream::into_plain) {
            Err(e) => Err(e),
            Ok(Ok(data)) if inflate => self.with_watchdog(|opts| {
                gridos_io::compress::recv_decompressed(&data, file, file_offset, ZLIB, opts)
            }),
            Ok(Ok(data)) => self
                .with_watchdog(|opts| gridos_io::recv_file(&data, file, file_offset, None, opts)),
            Ok(Err(tls)) => {
                self.with_watchdog(|opts| secure::recv(tls, file, file_offset, inflate, opts))
            }
        };
        let report = self.finish_transfer(&cmd, early, res)?;
        if let Some(t) = total {
            let want = t - remote_offset;
            if report.bytes != want {
                return Err(Error::Incomplete {
                    expected: want,
                    got: report.bytes,
                });
            }
        }
        Ok(report)
    }

    /// Uploads `len` bytes of `file` from `offset` to `remote` (zero-copy file → socket).
    pub fn put(
        &mut self,
        file: &File,
        offset: u64,
        len: u64,
        remote: &str,
        mode: PutMode,
    ) -> Result<TransferReport> {
        let p = arg(remote)?;
        self.leave_mode_e()?;
        let data = self.open_data()?;
        let cmd = match mode {
            PutMode::Store => {
                // Leaves with STOR (no extra round trip); a server may reserve the space.
                self.deferred.push((
                    Command::Allo {
                        size: len,
                        record: None,
                    },
                    gridftp::ALLO_OK.to_vec(),
                ));
                Command::Stor(p)
            }
            PutMode::Append => Command::Appe(p),
            PutMode::Restart(n) => {
                self.expect(&Command::Rest(Restart::Offset(n)), &[350])?;
                Command::Stor(p)
            }
        };
        let early = self.start_transfer(&cmd)?;
        let data = self.data_ready(data)?;
        let deflate = self.ext.deflate;
        let res = match self.protect_data(data).map(DataStream::into_plain) {
            Err(e) => Err(e),
            Ok(Ok(data)) => {
                let res = if deflate {
                    self.with_watchdog(|opts| {
                        gridos_io::compress::send_compressed(file, offset, len, &data, ZLIB, opts)
                    })
                } else {
                    self.with_watchdog(|opts| gridos_io::send_file(file, offset, len, &data, opts))
                };
                // End of file in stream mode is the close of the data connection.
                let _ = data.shutdown(Shutdown::Write);
                res
            }
            // TLS: close_notify, then the half-close.
            Ok(Err(tls)) => {
                self.with_watchdog(|opts| secure::send(tls, file, offset, len, deflate, opts))
            }
        };
        self.finish_transfer(&cmd, early, res)
    }

    /// `QUIT`, then closes the connection.
    pub fn quit(mut self) -> Result<()> {
        self.expect(&Command::Quit, &[221, 200])?;
        if let Ctrl::Tls(s) = &mut self.ctrl {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
        Ok(())
    }

    /// Sends a command and returns the final reply, whatever its code (preliminary 1yz
    /// replies are skipped).
    pub fn command(&mut self, cmd: &Command) -> Result<Reply> {
        self.send(cmd)?;
        self.read_final(&shown(cmd), self.config.reply_timeout)
    }

    /// Sends a command and checks the final reply's code is one of `ok`.
    pub fn expect(&mut self, cmd: &Command, ok: &[u16]) -> Result<Reply> {
        let r = self.command(cmd)?;
        if ok.contains(&r.code) {
            Ok(r)
        } else {
            Err(reply_error(cmd, &r))
        }
    }

    fn send(&mut self, cmd: &Command) -> Result<()> {
        self.send_many(&[cmd])
    }

    /// Writes commands in one segment — any deferred ones first, whose replies are then read
    /// and checked before this returns (see [`gridftp`]'s set-up commands).
    fn send_many(&mut self, cmds: &[&Command]) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        self.check_cancel(0)?;
        if self.greeting_pending {
            self.read_greeting()?;
        }
        self.stat_ahead = None;
        let deferred = std::mem::take(&mut self.deferred);
        let mut bytes = Vec::new();
        // Not a command the protocol core has a variant for: written as text.
        let sscn_off = std::mem::take(&mut self.sscn_reset);
        if sscn_off {
            bytes.extend_from_slice(b"SSCN OFF\r\n");
        }
        for (c, _) in &deferred {
            bytes.extend_from_slice(&c.to_bytes());
        }
        for c in cmds {
            bytes.extend_from_slice(&c.to_bytes());
        }
        let r = self.ctrl.send(&bytes);
        r.map_err(|e| {
            self.poisoned = true;
            Error::io("write command", e)
        })?;
        if sscn_off {
            // Whatever it says: a server that does not know SSCN never had it on.
            self.read_final("SSCN OFF", self.config.reply_timeout)?;
            self.sscn_on = false;
        }
        let mut first_err = None;
        for (c, ok) in &deferred {
            let r = self.read_final(&shown(c), self.config.reply_timeout)?;
            if !ok.contains(&r.code) && first_err.is_none() {
                first_err = Some(reply_error(c, &r));
            }
        }
        if let Some(e) = first_err {
            // The commands sent behind the failed one ran in a state we did not intend.
            self.poisoned = true;
            return Err(e);
        }
        Ok(())
    }

    fn check_cancel(&self, moved: u64) -> Result<()> {
        if self
            .config
            .transfer
            .cancel
            .as_ref()
            .is_some_and(CancelToken::is_cancelled)
        {
            return Err(Error::Cancelled { moved });
        }
        Ok(())
    }

    /// Reads one reply (possibly preliminary).
    fn read_reply(&mut self, what: &str, timeout: Duration) -> Result<Reply> {
        let r = self.read_reply_inner(what, timeout);
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }

    fn read_reply_inner(&mut self, what: &str, timeout: Duration) -> Result<Reply> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(r) = self.parser.poll_reply() {
                return r.map_err(|e| Error::Protocol(format!("{e} (in the reply to {what})")));
            }
            self.check_cancel(0)?;
            match self.ctrl.read(&mut buf) {
                Ok(0) => {
                    return Err(Error::Closed {
                        mid_reply: self.parser.is_mid_reply(),
                    });
                }
                Ok(n) => self.parser.feed(buf.get(..n).unwrap_or(&[])),
                Err(e) if no_data_yet(&e) => {
                    if Instant::now() >= deadline {
                        return Err(Error::Timeout(timeout, "a reply"));
                    }
                }
                Err(e) => return Err(Error::io("read reply", e)),
            }
        }
    }

    /// Reads replies until a non-preliminary one.
    fn read_final(&mut self, what: &str, timeout: Duration) -> Result<Reply> {
        loop {
            let r = self.read_reply(what, timeout)?;
            if !r.is_preliminary() {
                return Ok(r);
            }
        }
    }

    /// Prepares the data connection of the next transfer command: in passive mode connects to
    /// the control peer (EPSV, else PASV, whose address is ignored except for the port); in
    /// active mode listens and sends PORT/EPRT. [`data_ready`](Self::data_ready) completes it
    /// once the command is accepted.
    fn open_data(&mut self) -> Result<DataConn> {
        if self.config.active {
            let (listener, cmd) = self.data_listener()?;
            self.expect(&cmd, &[200])?;
            return Ok(DataConn::Waiting(listener));
        }
        self.connect_passive().map(DataConn::Ready)
    }

    /// A listener on the control connection's local address for the server to connect to,
    /// and the PORT (EPRT for IPv6) command that names it.
    pub(super) fn data_listener(&self) -> Result<(TcpListener, Command)> {
        let local = self
            .ctrl
            .tcp()
            .local_addr()
            .map_err(|e| Error::io("getsockname", e))?;
        let listener = TcpListener::bind(SocketAddr::new(local.ip(), 0))
            .map_err(|e| Error::io("listen for data connections", e))?;
        let cmd = match listener
            .local_addr()
            .map_err(|e| Error::io("getsockname", e))?
        {
            SocketAddr::V4(v4) => Command::Port(v4),
            v6 => Command::Eprt(v6),
        };
        Ok((listener, cmd))
    }

    /// The data connection once the transfer command was accepted. In active mode: the
    /// server's connection, accepted only from the control peer's address (anyone else who
    /// finds the port is turned away), within `connect_timeout`, honouring the cancel token.
    fn data_ready(&self, d: DataConn) -> Result<TcpStream> {
        let listener = match d {
            DataConn::Ready(s) => return Ok(s),
            DataConn::Waiting(l) => l,
        };
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("listen for the data connection", e))?;
        let deadline = Instant::now() + self.config.connect_timeout;
        loop {
            match listener.accept() {
                Ok((s, from)) if from.ip() == self.peer.ip() => {
                    s.set_nonblocking(false)
                        .map_err(|e| Error::io("data connection", e))?;
                    return Ok(s);
                }
                Ok(_) => continue, // not the server: refused by closing it
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("accept the data connection", e)),
            }
            if self
                .config
                .transfer
                .cancel
                .as_ref()
                .is_some_and(|c| c.is_cancelled())
            {
                return Err(Error::Cancelled { moved: 0 });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout(
                    self.config.connect_timeout,
                    "the server's data connection (active mode)",
                ));
            }
            let mut fds = [nix::poll::PollFd::new(
                listener.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let wait = left.min(POLL).as_millis() as u16;
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(wait));
        }
    }

    /// Connects a passive data connection to the control peer: EPSV, else PASV.
    /// Makes a freshly connected or accepted data connection what the session asked for:
    /// clear, or TLS under `PROT P` (resuming the control connection's session). Every data
    /// connection, stream mode and MODE E, goes through here.
    ///
    /// Under `PROT P` this end is the TLS client on every data connection, passive or
    /// active, and resumes the control connection's session; `PROT C` keeps the socket as
    /// it is ([`DataStream::Plain`], for the zero-copy path).
    pub(crate) fn protect_data(&self, sock: TcpStream) -> Result<DataStream> {
        match (&self.tls, self.prot_private) {
            (Some(tls), true) => tls
                .connect(&self.server_name, sock, self.config.connect_timeout)
                .map_err(|e| self.tls_error("data", e)),
            _ => Ok(DataStream::Plain(sock)),
        }
    }

    fn connect_passive(&mut self) -> Result<TcpStream> {
        let ip: IpAddr = self.peer.ip();
        let port = if self.config.use_epsv && !self.epsv_refused {
            let cmd = Command::Epsv(EpsvArg::Any);
            let r = self.command(&cmd)?;
            match r.code {
                229 => Some(
                    addr::parse_epsv_reply(&r.lines.join(" "))
                        .map_err(|e| Error::Protocol(format!("EPSV reply {:?}: {e}", r.text())))?,
                ),
                500..=504 | 522 => {
                    self.epsv_refused = true;
                    None
                }
                _ => return Err(reply_error(&cmd, &r)),
            }
        } else {
            None
        };
        let port = match port {
            Some(p) => p,
            None => {
                if ip.is_ipv6() {
                    return Err(Error::Unsupported(
                        "EPSV (PASV cannot address an IPv6 server)",
                    ));
                }
                let r = self.expect(&Command::Pasv, &[227])?;
                let a = addr::parse_pasv_reply(&r.lines.join(" "))
                    .map_err(|e| Error::Protocol(format!("PASV reply {:?}: {e}", r.text())))?;
                if a.port() == 0 {
                    return Err(Error::Protocol("PASV reply names port 0".into()));
                }
                a.port()
            }
        };
        let data = connect_any(
            &[SocketAddr::new(ip, port)],
            self.config.connect_timeout,
            "connect data connection",
        )?;
        Ok(data)
    }

    /// Sends a transfer command and waits for its 1yz. Returns a final reply the server sent
    /// straight away instead (some send 226 at once for tiny transfers).
    fn start_transfer(&mut self, cmd: &Command) -> Result<Option<Reply>> {
        self.send(cmd)?;
        let r = self.read_reply(&shown(cmd), self.config.reply_timeout)?;
        match r.code {
            100..=199 => Ok(None),
            226 | 250 => Ok(Some(r)),
            _ => Err(reply_error(cmd, &r)),
        }
    }

    /// Reads the verdict after the data connection is closed and combines it with the data
    /// transfer's own result.
    fn finish_transfer<T>(
        &mut self,
        cmd: &Command,
        early: Option<Reply>,
        res: Result<T>,
    ) -> Result<T> {
        match res {
            Ok(report) => {
                let r = match early {
                    Some(r) => r,
                    None => self.read_final(&shown(cmd), self.config.reply_timeout)?,
                };
                if matches!(r.code, 226 | 250) {
                    Ok(report)
                } else {
                    Err(reply_error(cmd, &r))
                }
            }
            Err(e) => {
                // The server reports the broken transfer (426/451…); read it so the control
                // connection stays in step, but do not wait long.
                let wait = match e {
                    Error::Timeout(..) => AFTER_STALL,
                    _ => AFTER_FAILURE,
                };
                if early.is_none()
                    && !matches!(e, Error::Cancelled { .. })
                    && self.read_final(&shown(cmd), wait).is_ok()
                {
                    return Err(e);
                }
                self.poisoned = true;
                Err(e)
            }
        }
    }

    /// Runs a gridos-io transfer under a watchdog that cancels it after `data_timeout`
    /// without progress (or when the caller's token is cancelled).
    fn with_watchdog<T>(
        &self,
        f: impl FnOnce(&TransferOptions) -> gridos_io::Result<T>,
    ) -> Result<T> {
        let user = self.config.transfer.clone();
        let progress = user
            .progress
            .clone()
            .unwrap_or_else(|| Arc::new(AtomicU64::new(0)));
        progress.store(0, Ordering::Relaxed);
        let cancel = CancelToken::new();
        let timed_out = Arc::new(AtomicBool::new(false));
        let opts = TransferOptions {
            cancel: Some(cancel.clone()),
            progress: Some(progress.clone()),
            ..user.clone()
        };
        let (stop, stopped) = mpsc::channel::<()>();
        let idle = self.config.data_timeout;
        let flag = timed_out.clone();
        let user_cancel = user.cancel.clone();
        let watchdog = std::thread::Builder::new()
            .name("ftp-watchdog".into())
            .spawn(move || {
                let mut last = (progress.load(Ordering::Relaxed), Instant::now());
                loop {
                    match stopped.recv_timeout(Duration::from_millis(100)) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                    if user_cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
                        cancel.cancel();
                        return;
                    }
                    let now = progress.load(Ordering::Relaxed);
                    if now != last.0 {
                        last = (now, Instant::now());
                    } else if last.1.elapsed() >= idle {
                        flag.store(true, Ordering::Release);
                        cancel.cancel();
                        return;
                    }
                }
            })
            .map_err(|e| Error::io("spawn watchdog", e))?;
        let res = f(&opts);
        drop(stop);
        let _ = watchdog.join();
        res.map_err(|e| {
            let moved = e.bytes_moved().unwrap_or(0);
            match e {
                gridos_io::Error::Cancelled { moved } if timed_out.load(Ordering::Acquire) => {
                    let _ = moved;
                    Error::Timeout(idle, "the data connection")
                }
                gridos_io::Error::Cancelled { moved } => Error::Cancelled { moved },
                gridos_io::Error::NoSpace { moved } => Error::NoSpace { moved },
                e => Error::Transfer { moved, source: e },
            }
        })
    }

    /// Runs a listing command and returns its data as text (bounded by `max_listing`).
    fn listing(&mut self, cmd: Command) -> Result<String> {
        self.leave_mode_e()?;
        let data = self.open_data()?;
        let early = self.start_transfer(&cmd)?;
        let data = self.data_ready(data)?;
        data.set_read_timeout(Some(self.config.data_timeout))
            .map_err(|e| Error::io("SO_RCVTIMEO", e))?;
        let max = self.config.max_listing;
        let mut buf = Vec::new();
        let res = self.protect_data(data).and_then(|mut data| {
            secure::read_listing(&mut data, max, &mut buf).map_err(|e| match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    Error::Timeout(self.config.data_timeout, "the listing")
                }
                _ => Error::io("read listing", e),
            })
        });
        let res = match res {
            Ok(_) if buf.len() > max => {
                Err(Error::Protocol(format!("listing larger than {max} bytes")))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        self.finish_transfer(&cmd, early, res)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

/// A data connection being set up: connected (passive) or awaiting the server (active).
enum DataConn {
    Ready(TcpStream),
    Waiting(TcpListener),
}

/// `t` truncated to whole milliseconds (towards the past, before 1970 too).
fn to_millis(t: SystemTime) -> SystemTime {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => t - Duration::from_nanos(u64::from(d.subsec_nanos() % 1_000_000)),
        Err(e) => match e.duration().subsec_nanos() % 1_000_000 {
            0 => t,
            n => t - Duration::from_nanos(u64::from(1_000_000 - n)),
        },
    }
}

/// The path in a 257 reply: `"dir ""quoted"" name" created`.
fn parse_quoted(text: &str) -> Option<String> {
    let start = text.find('"')? + 1;
    let mut out = String::new();
    let mut chars = text.get(start..)?.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            if chars.peek() == Some(&'"') {
                chars.next();
                out.push('"');
            } else {
                return Some(out);
            }
        } else {
            out.push(c);
        }
    }
    None
}

/// A read of the control connection that found nothing yet (its timeout or a signal):
/// try again, or give up at the caller's deadline.
pub(crate) fn no_data_yet(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_paths_and_features() {
        assert_eq!(
            parse_quoted(r#""/a ""b""" is cwd"#).as_deref(),
            Some(r#"/a "b""#)
        );
        assert_eq!(parse_quoted("no quotes"), None);
        assert_eq!(parse_quoted("\"unterminated"), None);
        let f = Features::parse(&Reply::multi(
            211,
            [
                "Features:",
                " MLST type*;size*;",
                " REST STREAM",
                " SIZE",
                " EPSV",
                "End",
            ],
        ));
        assert!(f.mlst && f.rest_stream && f.size && f.epsv && !f.utf8 && !f.mdtm && !f.mfmt);
        let f = Features::parse(&Reply::multi(211, ["Features:", " MDTM", " MFMT", "End"]));
        assert!(f.mdtm && f.mfmt);
        assert!(arg("a\r\nDELE x").is_err());
        assert!(arg("").is_err());
    }

    #[test]
    fn busy_is_a_4yz_greeting_or_a_dropped_connection() {
        use std::io::{Error as IoError, ErrorKind as K};
        let reply = |code| Error::Reply {
            command: "(connect)".into(),
            code,
            text: String::new(),
        };
        assert!(greeting_busy(&reply(421)));
        assert!(greeting_busy(&reply(450)));
        assert!(!greeting_busy(&reply(530)));
        assert!(!greeting_busy(&reply(220)));
        assert!(greeting_busy(&Error::Closed { mid_reply: false }));
        assert!(greeting_busy(&Error::io(
            "read reply",
            IoError::from(K::ConnectionReset)
        )));
        assert!(greeting_busy(&Error::io(
            "getpeername",
            IoError::from(K::NotConnected)
        )));
        // Nothing listening, or a reset before the connection was made: not the server's load.
        assert!(!greeting_busy(&Error::io(
            "connect",
            IoError::from(K::ConnectionRefused)
        )));
        assert!(!greeting_busy(&Error::io(
            "connect",
            IoError::from(K::ConnectionReset)
        )));
        assert!(!greeting_busy(&Error::io(
            "read reply",
            IoError::from(K::PermissionDenied)
        )));
        assert!(!greeting_busy(&Error::Timeout(
            Duration::from_secs(1),
            "a reply"
        )));
        assert!(!greeting_busy(&Error::Protocol("garbage".into())));
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut b = Backoff::new();
        let mut d = BUSY_FIRST_WAIT;
        for _ in 0..20 {
            let w = b.wait();
            assert!(w >= d / 2 && w <= d, "{w:?} outside [{:?}, {d:?}]", d / 2);
            d = (d * 2).min(BUSY_MAX_WAIT);
        }
        let waits: Vec<Duration> = (0..8).map(|_| b.wait()).collect();
        assert!(waits.iter().any(|w| *w != waits[0]), "no jitter: {waits:?}");
    }

    #[test]
    fn times_go_out_to_the_millisecond() {
        let t = std::time::UNIX_EPOCH + Duration::new(10, 123_456_789);
        assert_eq!(
            to_millis(t),
            std::time::UNIX_EPOCH + Duration::new(10, 123_000_000)
        );
        let before = std::time::UNIX_EPOCH - Duration::new(1, 999_999);
        assert_eq!(
            to_millis(before),
            std::time::UNIX_EPOCH - Duration::new(1, 1_000_000)
        );
        let exact = std::time::UNIX_EPOCH - Duration::from_millis(1500);
        assert_eq!(to_millis(exact), exact);
    }
}
