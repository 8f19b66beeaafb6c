//! The FTP server: no process per client. Control connections run on a pool of listener
//! threads (one single-threaded tokio runtime each, `ftp.threads`); file transfers run on
//! the gridos-io [`IoPool`] (`io.threads`) through `send_file`/`recv_file`, the zero-copy
//! path. Both pools can be resized while the server runs.
//!
//! - [`Server::start`] binds, opens the docroot, optionally chroots there and drops to an
//!   unprivileged user (when started as root with [`ServerConfig::run_as`]), and returns a
//!   [`ServerHandle`] (`local_addr`, live `get`/`set` of keys, `stats`, `shutdown`).
//! - Paths are resolved beneath the docroot fd with `openat2(RESOLVE_IN_ROOT)` (module
//!   `fs`), chrooted or not.
//! - Uploads: `STOR name` writes the hidden partial file `.name.gridos-part` in the same
//!   directory and renames it over `name` only when the data connection closed normally and
//!   the client is still connected, so an interrupted upload never harms an existing file.
//!   `REST n` + `STOR name` resumes: from the partial if it holds at least `n` bytes, else
//!   from the first `n` bytes of the existing `name`. While a partial exists, `SIZE name`
//!   reports what a resuming client may keep: the partial's length or, once a MODE E upload
//!   has written blocks out of order, what it holds from byte 0 without a hole (by its range
//!   record `.name.gridos-part.ranges`, written before the first hole and kept up to date,
//!   so that it stays true when the server is killed). Listings hide partials and records.
//!   `APPE` writes in place at the end of the file (appending cannot be atomic); `STOU`
//!   creates `name`, `name.1`, … (or `file`, `file.1`, … in a directory) with `O_EXCL` and
//!   writes in place.
//! - A unix control socket ([`ServerConfig::ctl_socket`]) speaks `get KEY`, `set KEY VALUE`,
//!   `list`, `stats`, one command per line; each answer ends with a line `ok [note]` or
//!   `err message`.
//! - [`PasswordFile`]: `user:argon2-phc` lines.
//! - With [`ServerConfig::seccomp`] (on in `gridos ftpd`, off in [`ServerConfig::new`])
//!   the process confines itself with a seccomp filter once start-up is done: module
//!   [`sandbox`] lists the system calls allowed and why; any other kills the process.
//! - FTPS (RFC 4217) with [`ServerConfig::tls_cert`] and [`ServerConfig::tls_key`]:
//!   `AUTH TLS` upgrades a control connection, `PBSZ 0` + `PROT P` protect data
//!   connections (stream mode and MODE E), and [`ServerConfig::implicit_tls`] adds a
//!   listener that speaks TLS from the first byte (as port 990). [`TlsPolicy`] (`ftp.tls`)
//!   decides what is required; by default a password user must `AUTH TLS` before `USER`
//!   unless the server listens on loopback, and [`Server::start`] refuses a configuration
//!   where that makes password logins impossible. A `PROT P` data connection must resume
//!   the control connection's TLS session ([`ServerConfig::tls_data_reuse`]), so a
//!   connection stolen by another host is refused; after `DCAU N` (third-party transfers)
//!   only the data policy below decides. With [`ServerConfig::tls_client_ca`] clients are
//!   asked for a certificate, and a [`ServerConfig::grid_mapfile`] maps its subject to a
//!   local user (`USER :globus-mapping:` logs in without a password). The certificate and
//!   the grid-mapfile are reloaded without a restart by the control socket's `tls-reload`
//!   ([`ServerHandle::reload_tls`]) and when `ftp.tls_cert`, `ftp.tls_key`,
//!   `ftp.tls_client_ca` or `ftp.grid_mapfile` are set; running sessions keep theirs (a
//!   server that chrooted and gave up root reads them as its user, inside the chroot). Under
//!   `PROT P` bytes go through user space (rustls); clear transfers keep the zero-copy path.
//! - Data connections and third-party transfers: a data connection to or from an address
//!   other than the client's (a PORT/EPRT/SPOR target, or the source of a connection to a
//!   passive listener) is allowed only (a) for an authenticated, non-anonymous user, (b) for
//!   hosts in `ftp.third_party_hosts` (IP addresses and CIDR prefixes, comma-separated; any
//!   session may use them), or (c) for everyone when `ftp.allow_third_party` is on.
//!   Otherwise PORT/EPRT/SPOR is answered 504 and a foreign connection to a passive port is
//!   reset (counted as `data_connections_refused`), so the PORT bounce attack (RFC 2577)
//!   stays closed to anonymous and untrusted clients. PORT/EPRT/SPOR to a port below 1024
//!   is refused for everyone unless `ftp.allow_third_party` is on. Outgoing data
//!   connections leave from the control connection's local address (as the passive
//!   listeners listen there), so a peer server sees the address the client connected to,
//!   also on multi-homed hosts. Both keys apply to sessions started after a change.
//!
//! - Hostile clients: failed password logins are throttled per address (module [`guard`]:
//!   the reply to the Nth failure in a row waits `ftp.login_delay × 2^(N-1)`, at most 30 s,
//!   in that session only; after `ftp.login_max_failures` the address gets 421 at connect
//!   and at `USER` for `ftp.login_ban`; `ftp.login_exempt` lists addresses left alone).
//!   Slow clients are cut by per-session timeouts: `ftp.idle_timeout`,
//!   `ftp.command_timeout` (a begun command line must end), `ftp.reply_timeout` (writing
//!   replies), `ftp.data_timeout` (a transfer that moves no byte, listings and TYPE A
//!   too); a session queues at most 64 commands and makes at most
//!   [`REPLY_BATCH`](crate::proto::REPLY_BATCH) replies before they are written.
//!
//! ```no_run
//! use gridos_ftp::server::{Server, ServerConfig};
//! let mut cfg = ServerConfig::new("/srv/ftp");
//! cfg.anonymous = true;
//! let server = Server::start(cfg).unwrap();
//! println!("listening on {}", server.local_addr());
//! server.shutdown();
//! ```

mod conn;
mod ctl;
mod error;
mod extended;
mod fs;
mod ftps;
pub mod guard;
pub mod passwd;
pub mod sandbox;
mod transfer;
mod trim;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use gridos_io::IoPool;

use crate::proto::HostList;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};

pub use error::{Error, Result};
pub use fs::{Root, is_partial, partial_name};
pub use passwd::PasswordFile;
pub use sandbox::{SandboxState, Seccomp};

pub(crate) const SHUTDOWN_DRAIN: u8 = 1;
pub(crate) const SHUTDOWN_ABORT: u8 = 2;

/// Server settings. Keys of the same names (with an `ftp.` prefix) are accepted by the
/// control socket and the `[ftp]` table of the configuration file.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The directory served.
    pub docroot: PathBuf,
    /// Control-connection address (port 0: any free port).
    pub listen: SocketAddr,
    /// Accept `anonymous`/`ftp` logins.
    pub anonymous: bool,
    /// Let anonymous users write.
    pub anonymous_write: bool,
    /// Password file (`user:phc-hash` lines).
    pub passwd: Option<PathBuf>,
    /// Extra users (name, clear-text password), hashed at start; for in-process use.
    pub users: Vec<(String, String)>,
    /// When started as root: chroot to the docroot and switch to this user (uid, gid, and
    /// its group only). `None`: keep the process's identity and root (in-process use).
    pub run_as: Option<String>,
    /// With `run_as`: keep CAP_NET_ADMIN, and only it, after giving up root, so SBUF and the
    /// buffer monitor may force socket buffers past `net.core.*mem_max` (still within
    /// `io.max_buffer` per socket and `io.max_total_buffer` per transfer). Off by default:
    /// the capability also allows changing the host's network configuration.
    pub keep_net_admin: bool,
    /// Listener (control-connection) threads.
    pub threads: usize,
    /// I/O threads (transfers).
    pub io_threads: usize,
    /// Passive ports (inclusive range), `None` = any.
    pub pasv_ports: Option<(u16, u16)>,
    /// Most clients at once (more get 421).
    pub max_clients: usize,
    /// Most clients from one address (more get 421).
    pub max_per_ip: usize,
    /// Idle control connections are closed with 421.
    pub idle_timeout: Duration,
    /// Time to wait for a data connection (then 425), and the longest a binary transfer may
    /// move no byte before it is cut (426).
    pub data_timeout: Duration,
    /// On shutdown, running transfers get this long to finish before they are aborted.
    pub shutdown_grace: Duration,
    // hostile clients (hardening)
    /// A command line that has begun must end (CRLF) within this time, or the client is
    /// cut with 421 (a client trickling one byte at a time resets no other timer).
    pub command_timeout: Duration,
    /// The longest writing the queued replies may take (a client that never reads its
    /// replies is cut once its socket buffers are full).
    pub reply_timeout: Duration,
    /// The reply to a failed password login waits this long, doubled at each failure in a
    /// row from the same address (IPv6: /64), at most 30 s ([`guard`]); zero: no delay.
    pub login_delay: Duration,
    /// Failed logins in a row after which the address is refused (421 at connect and at
    /// `USER`) for `login_ban`; zero: never.
    pub login_max_failures: u32,
    /// How long an address stays refused after `login_max_failures` failures.
    pub login_ban: Duration,
    /// Addresses and CIDR prefixes the login throttle leaves alone.
    pub login_exempt: HostList,
    /// Unix control socket path.
    pub ctl_socket: Option<PathBuf>,
    /// Server-to-server transfers for everyone: any session may use data connections to and
    /// from any host, and PORT/EPRT/SPOR to ports below 1024 (see the module docs).
    pub allow_third_party: bool,
    /// Hosts any session, anonymous ones included, may use for data connections besides the
    /// client's own (IP addresses and CIDR prefixes).
    pub third_party_hosts: HostList,
    /// When TLS (FTPS) is offered and required: see [`TlsPolicy`].
    pub tls: TlsPolicy,
    /// The certificate chain (PEM) for TLS; with `tls_key`, FTPS is offered.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) for client certificates: clients are asked for one.
    pub tls_client_ca: Option<PathBuf>,
    /// A Globus grid-mapfile: client-certificate subjects mapped to local users, for
    /// logins without a password.
    pub grid_mapfile: Option<PathBuf>,
    /// A second listener for implicit FTPS (TLS from the first byte, as on port 990).
    pub implicit_tls: Option<SocketAddr>,
    /// `PROT P` data connections must resume the control connection's TLS session (as
    /// vsftpd's `require_ssl_reuse`); default true.
    pub tls_data_reuse: bool,
    /// The longest a control connection's TLS handshake may take (after `AUTH TLS`, or on
    /// the implicit port) before the client is cut; default 10 s.
    pub tls_handshake_timeout: Duration,
    // seccomp sandbox (issue 14)
    /// Confine the process with a seccomp filter after start-up (module [`sandbox`]): off
    /// here, since the filter confines the whole process and a server started inside
    /// another program would confine that program too; `gridos ftpd` turns it on by default
    /// (`--no-seccomp`, `seccomp = false` to run without, `"required"` to refuse to start
    /// without it).
    pub seccomp: Seccomp,
}

/// When the server offers and requires TLS (`ftp.tls`, `--tls`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsPolicy {
    /// No TLS: `AUTH TLS` is refused, passwords go in clear.
    Off,
    /// TLS offered, nothing required.
    Optional,
    /// The default: TLS offered; password logins need it (`USER` of a password user before
    /// `AUTH TLS` gets 530), except when the server listens on a loopback address.
    /// Anonymous logins may stay plain.
    #[default]
    Passwords,
    /// Every login, anonymous too, needs TLS first, and data connections `PROT P`.
    Required,
}

impl TlsPolicy {
    /// The policy's name, as `ftp.tls` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsPolicy::Off => "off",
            TlsPolicy::Optional => "optional",
            TlsPolicy::Passwords => "passwords",
            TlsPolicy::Required => "required",
        }
    }
}

impl std::fmt::Display for TlsPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TlsPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<TlsPolicy> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(TlsPolicy::Off),
            "optional" => Ok(TlsPolicy::Optional),
            "passwords" | "default" => Ok(TlsPolicy::Passwords),
            "required" => Ok(TlsPolicy::Required),
            other => Err(Error::Config(format!(
                "tls: {other:?} is not off, optional, passwords or required"
            ))),
        }
    }
}

impl ServerConfig {
    /// Defaults for serving `docroot`: listen on 127.0.0.1, any port, no users.
    pub fn new(docroot: impl Into<PathBuf>) -> Self {
        ServerConfig {
            docroot: docroot.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            anonymous: false,
            anonymous_write: false,
            passwd: None,
            users: Vec::new(),
            run_as: None,
            keep_net_admin: false,
            threads: 2,
            io_threads: 4,
            pasv_ports: None,
            max_clients: 256,
            max_per_ip: 32,
            idle_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            command_timeout: Duration::from_secs(30),
            reply_timeout: Duration::from_secs(60),
            login_delay: guard::GuardConfig::default().delay,
            login_max_failures: guard::GuardConfig::default().max_failures,
            login_ban: guard::GuardConfig::default().ban,
            login_exempt: HostList::default(),
            ctl_socket: None,
            allow_third_party: false,
            third_party_hosts: HostList::default(),
            tls: TlsPolicy::default(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            grid_mapfile: None,
            implicit_tls: None,
            tls_data_reuse: true,
            tls_handshake_timeout: Duration::from_secs(10),
            // seccomp sandbox (issue 14)
            seccomp: Seccomp::Off,
        }
    }

    /// The keys [`ServerConfig::set`] takes (without the `ftp.` prefix), so a caller can
    /// tell a key it does not know from a value it refuses.
    pub const KEYS: &'static [&'static str] = &[
        "docroot",
        "listen",
        "anonymous",
        "anonymous_write",
        "passwd",
        "user",
        "run_as",
        "keep_net_admin",
        "threads",
        "io_threads",
        "pasv_ports",
        "max_clients",
        "max_per_ip",
        "idle_timeout",
        "data_timeout",
        "shutdown_grace",
        "command_timeout",
        "reply_timeout",
        "login_delay",
        "login_max_failures",
        "login_ban",
        "login_exempt",
        "ctl_socket",
        "allow_third_party",
        "third_party_hosts",
        "tls",
        "tls_cert",
        "tls_key",
        "tls_client_ca",
        "grid_mapfile",
        "implicit_tls",
        "tls_data_reuse",
        "tls_handshake_timeout",
        // seccomp sandbox (issue 14)
        "seccomp",
    ];

    /// Sets one key (`ftp.` prefix optional) from text, as in the `[ftp]` table.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let k = key.strip_prefix("ftp.").unwrap_or(key);
        let v = value.trim();
        match k {
            "docroot" => self.docroot = PathBuf::from(v),
            "listen" => {
                self.listen = v
                    .parse()
                    .map_err(|_| Error::Config(format!("listen: {v:?} is not ADDR:PORT")))?
            }
            "anonymous" => self.anonymous = ctl::parse_bool(k, v)?,
            "anonymous_write" => self.anonymous_write = ctl::parse_bool(k, v)?,
            "passwd" => self.passwd = Some(PathBuf::from(v)),
            "user" | "run_as" => self.run_as = Some(v.to_string()),
            "keep_net_admin" => self.keep_net_admin = ctl::parse_bool(k, v)?,
            "threads" => self.threads = ctl::parse_threads(k, v)?,
            "io_threads" => self.io_threads = ctl::parse_threads(k, v)?,
            "pasv_ports" => self.pasv_ports = ctl::parse_ports(v)?,
            "max_clients" => self.max_clients = ctl::parse_num(k, v)?,
            "max_per_ip" => self.max_per_ip = ctl::parse_num(k, v)?,
            "idle_timeout" => self.idle_timeout = ctl::parse_secs(k, v)?,
            "data_timeout" => self.data_timeout = ctl::parse_secs(k, v)?,
            "shutdown_grace" => self.shutdown_grace = ctl::parse_secs(k, v)?,
            "command_timeout" => self.command_timeout = ctl::parse_secs(k, v)?,
            "reply_timeout" => self.reply_timeout = ctl::parse_secs(k, v)?,
            "login_delay" => self.login_delay = ctl::parse_secs_or_zero(k, v)?,
            "login_max_failures" => self.login_max_failures = ctl::parse_count(k, v)?,
            "login_ban" => self.login_ban = ctl::parse_secs(k, v)?,
            "login_exempt" => self.login_exempt = ctl::parse_hosts(k, v)?,
            "ctl_socket" => self.ctl_socket = Some(PathBuf::from(v)),
            "allow_third_party" => self.allow_third_party = ctl::parse_bool(k, v)?,
            "third_party_hosts" => self.third_party_hosts = ctl::parse_hosts(k, v)?,
            "tls" => self.tls = v.parse()?,
            "tls_cert" => self.tls_cert = Some(PathBuf::from(v)),
            "tls_key" => self.tls_key = Some(PathBuf::from(v)),
            "tls_client_ca" => self.tls_client_ca = Some(PathBuf::from(v)),
            "grid_mapfile" => self.grid_mapfile = Some(PathBuf::from(v)),
            "implicit_tls" => {
                self.implicit_tls =
                    Some(v.parse().map_err(|_| {
                        Error::Config(format!("implicit_tls: {v:?} is not ADDR:PORT"))
                    })?)
            }
            "tls_data_reuse" => self.tls_data_reuse = ctl::parse_bool(k, v)?,
            "tls_handshake_timeout" => self.tls_handshake_timeout = ctl::parse_secs(k, v)?,
            // seccomp sandbox (issue 14)
            "seccomp" => self.seccomp = v.parse()?,
            _ => return Err(Error::Config(format!("unknown key {key:?}"))),
        }
        Ok(())
    }

    fn guard_config(&self) -> guard::GuardConfig {
        guard::GuardConfig {
            delay: self.login_delay,
            max_failures: self.login_max_failures,
            ban: self.login_ban,
            exempt: self.login_exempt.clone(),
            ..guard::GuardConfig::default()
        }
    }

    /// Applies a TOML configuration file: the `[ftp]` table to this configuration and, if
    /// present, the `[io]` table to the process-wide gridos-io configuration
    /// (`gridos_io::IoConfig::from_toml` + `set_config`). Other tables are ignored.
    pub fn apply_toml(&mut self, text: &str) -> Result<()> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| Error::Config(format!("TOML: {e}")))?;
        if table.contains_key("io") {
            gridos_io::set_config(gridos_io::IoConfig::from_toml(text)?)?;
        }
        let Some(ftp) = table.get("ftp") else {
            return Ok(());
        };
        let ftp = ftp
            .as_table()
            .ok_or_else(|| Error::Config("[ftp] must be a table".into()))?;
        for (k, v) in ftp {
            let text = match v {
                toml::Value::String(s) => s.clone(),
                // A list (`third_party_hosts = ["192.0.2.0/24", "2001:db8::1"]`).
                toml::Value::Array(items) => items
                    .iter()
                    .map(|i| match i {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            self.set(k, &text)?;
        }
        Ok(())
    }
}

/// Live settings (changeable through the control socket).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub anonymous: bool,
    pub anonymous_write: bool,
    pub pasv_ports: Option<(u16, u16)>,
    pub max_clients: usize,
    pub max_per_ip: usize,
    pub idle_timeout: Duration,
    pub data_timeout: Duration,
    pub shutdown_grace: Duration,
    pub command_timeout: Duration,
    pub reply_timeout: Duration,
    pub login: guard::GuardConfig,
    pub allow_third_party: bool,
    pub third_party_hosts: HostList,
    pub tls: TlsPolicy,
    pub tls_data_reuse: bool,
    pub tls_handshake_timeout: Duration,
}

/// Counters reported by `stats`.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub clients_now: AtomicU64,
    pub clients_total: AtomicU64,
    pub clients_refused: AtomicU64,
    pub transfers_active: AtomicU64,
    pub transfers_ok: AtomicU64,
    pub transfers_failed: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub data_refused: AtomicU64,
    pub passive_opened: AtomicU64,
    pub tls_sessions: AtomicU64,
    pub tls_failed: AtomicU64,
    pub data_tls_failed: AtomicU64,
    pub logins_failed: AtomicU64,
    pub logins_delayed: AtomicU64,
    pub clients_banned: AtomicU64,
    pub timeouts_command: AtomicU64,
    pub timeouts_reply: AtomicU64,
}

/// A client handed to a listener thread; `true` when it came to the implicit-TLS port.
type Incoming = (std::net::TcpStream, SocketAddr, ClientGuard, bool);

struct ListenerThread {
    tx: mpsc::UnboundedSender<Incoming>,
    handle: std::thread::JoinHandle<()>,
}

/// State shared by every thread of one server.
pub(crate) struct Shared {
    settings: RwLock<Settings>,
    root: RwLock<Arc<Root>>,
    pub users: Arc<PasswordFile>,
    pub io_pool: IoPool,
    listeners: Mutex<Vec<ListenerThread>>,
    retired: Mutex<Vec<std::thread::JoinHandle<()>>>,
    next: AtomicUsize,
    pub stats: Stats,
    /// Returns freed memory to the system when many sessions have closed.
    pub trimmer: trim::Trimmer,
    pub shutdown: watch::Sender<u8>,
    clients: Mutex<HashMap<IpAddr, usize>>,
    /// Failed logins per address (the login throttle).
    pub guard: Mutex<guard::Guard>,
    chroot: Option<PathBuf>,
    listen: SocketAddr,
    /// The implicit-TLS listener's address.
    implicit: Option<SocketAddr>,
    /// Whether any password user exists (the TLS policy check needs it).
    password_users: bool,
    tls: RwLock<ftps::TlsState>,
    // seccomp sandbox (issue 14)
    /// What `ftp.seccomp` asked for, and the sandbox in force (`stats`: `sandbox`).
    seccomp: Seccomp,
    sandbox: SandboxState,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(crate) fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn settings_mut(&self) -> std::sync::RwLockWriteGuard<'_, Settings> {
        self.settings.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn root(&self) -> Arc<Root> {
        Arc::clone(&self.root.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn set_root(&self, root: Root) {
        *self.root.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(root);
    }

    /// The certificate and grid-mapfile in force (new sessions take them).
    pub(crate) fn tls_loaded(&self) -> ftps::Loaded {
        self.tls
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .loaded
            .clone()
    }

    fn tls_state(&self) -> std::sync::RwLockWriteGuard<'_, ftps::TlsState> {
        self.tls.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A chrooted server reads the TLS files as its unprivileged user, inside the chroot:
    /// say so when they cannot be read there.
    fn chroot_note(&self, e: Error) -> Error {
        let Some(root) = &self.chroot else { return e };
        let note = format!(
            "the server is chrooted to {} and no longer root: it reads the TLS files at these \
             paths inside the chroot as its own user (restart it to load files from elsewhere)",
            root.display()
        );
        match e {
            Error::Tls { what, source } => Error::Tls {
                what: format!("{what} ({note})"),
                source,
            },
            other => Error::Config(format!("{other} ({note})")),
        }
    }

    /// Loads the TLS files again (all or nothing) for new connections; running sessions
    /// keep the certificate they started with.
    pub(crate) fn reload_tls(&self) -> Result<String> {
        let mut st = self.tls_state();
        let loaded = st.files.load().map_err(|e| self.chroot_note(e))?;
        ftps::check_policy(
            self.settings().tls,
            loaded.server.is_some(),
            self.password_users,
            self.listen,
        )?;
        let note = match (&loaded.server, &loaded.subject) {
            (None, _) => "no certificate configured".to_string(),
            (Some(_), Some(s)) => format!("certificate {s}"),
            (Some(_), None) => "certificate loaded".to_string(),
        };
        let note = match &loaded.grid_map {
            Some(m) => format!("{note}; grid-mapfile with {} subjects", m.len()),
            None => note,
        };
        st.loaded = loaded;
        tracing::info!("ftpd: TLS reloaded: {note}");
        Ok(format!("reloaded ({note}); applies to new connections"))
    }

    /// Resizes the listener pool: new threads take new clients at once; a retired thread
    /// takes no new clients and exits when its clients have left.
    pub(crate) fn set_threads(self: &Arc<Self>, n: usize) -> Result<()> {
        if n == 0 || n > 256 {
            return Err(Error::Config(
                "ftp.threads must be between 1 and 256".into(),
            ));
        }
        let mut v = lock(&self.listeners);
        while v.len() < n {
            let (tx, rx) = mpsc::unbounded_channel();
            let shared = Arc::clone(self);
            let handle = std::thread::Builder::new()
                .name("ftpd-listener".into())
                .spawn(move || listener_thread(shared, rx))
                .map_err(|e| Error::io("spawn listener thread", e))?;
            v.push(ListenerThread { tx, handle });
        }
        while v.len() > n {
            if let Some(t) = v.pop() {
                drop(t.tx);
                lock(&self.retired).push(t.handle);
            }
        }
        Ok(())
    }

    fn threads(&self) -> usize {
        lock(&self.listeners).len()
    }

    fn dispatch(&self, mut item: Incoming) {
        let v = lock(&self.listeners);
        let n = v.len();
        for i in 0..n {
            let t = &v[(self.next.fetch_add(1, Relaxed) + i) % n];
            match t.tx.send(item) {
                Ok(()) => return,
                Err(mpsc::error::SendError(back)) => item = back,
            }
        }
        tracing::error!("ftpd: no listener thread to take a client");
    }

    fn admit(self: &Arc<Self>, s: tokio::net::TcpStream, peer: SocketAddr, implicit: bool) {
        let settings = self.settings();
        let ip = peer.ip().to_canonical();
        if let Some(left) = lock(&self.guard).banned(ip, Instant::now()) {
            self.stats.clients_refused.fetch_add(1, Relaxed);
            let key = guard::AddrKey::of(ip);
            tracing::warn!(%peer, addr = %key, left_secs = left.as_secs(), "ftpd: client refused: address banned after failed logins");
            refuse(
                s,
                "421 Too many failed logins from your address, try again later.\r\n",
            );
            return;
        }
        let refusal = {
            let mut map = lock(&self.clients);
            let here = map.get(&ip).copied().unwrap_or(0);
            if self.stats.clients_now.load(Relaxed) as usize >= settings.max_clients {
                Some("421 Too many users connected (ftp.max_clients), try again later.\r\n")
            } else if here >= settings.max_per_ip {
                Some("421 Too many connections from your address (ftp.max_per_ip).\r\n")
            } else {
                *map.entry(ip).or_insert(0) += 1;
                let now = self.stats.clients_now.fetch_add(1, Relaxed) + 1;
                self.trimmer.arrived(now as usize);
                self.stats.clients_total.fetch_add(1, Relaxed);
                None
            }
        };
        if let Some(msg) = refusal {
            self.stats.clients_refused.fetch_add(1, Relaxed);
            tracing::info!(%peer, "ftpd: client refused: {}", msg.trim_end());
            refuse(s, msg);
            return;
        }
        let guard = ClientGuard {
            shared: Arc::clone(self),
            ip,
        };
        match s.into_std() {
            Ok(std) => self.dispatch((std, peer, guard, implicit)),
            Err(e) => tracing::warn!(%peer, error = %e, "ftpd: could not hand over a client"),
        }
    }
}

/// Raises this process's soft limit on open files to its hard limit, for a server that is
/// to hold `max_clients` sessions (each holds a control connection, and a transfer adds a
/// data connection, a file, a passive listener and a pipe pair). Returns the limit now in
/// force, and whether it is below what `max_clients` sessions transferring at once may need.
pub fn raise_open_file_limit(max_clients: usize) -> (u64, bool) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let need = (max_clients as u64).saturating_mul(6).saturating_add(64);
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return (0, false);
    };
    // A server started as root may raise the hard limit too (CAP_SYS_RESOURCE).
    let now = if hard < need && setrlimit(Resource::RLIMIT_NOFILE, need, need).is_ok() {
        need
    } else if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    (now, now < need)
}

/// Writes a refusal (421) and closes, within 2 s, off the accept loop.
fn refuse(s: tokio::net::TcpStream, msg: &'static str) {
    tokio::spawn(async move {
        let mut s = s;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = s.write_all(msg.as_bytes()).await;
            let _ = s.shutdown().await;
        })
        .await;
    });
}

/// Counts a client for the limits while it is connected.
pub(crate) struct ClientGuard {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        let mut map = lock(&self.shared.clients);
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
        let now = self
            .shared
            .stats
            .clients_now
            .fetch_sub(1, Relaxed)
            .saturating_sub(1);
        drop(map);
        self.shared.trimmer.left(now as usize);
    }
}

fn listener_thread(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Incoming>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "ftpd: listener runtime failed");
            return;
        }
    };
    rt.block_on(async move {
        let mut set = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Some((std, peer, guard, implicit)) => {
                        let _ = std.set_nonblocking(true);
                        match tokio::net::TcpStream::from_std(std) {
                            Ok(s) => {
                                let shared = Arc::clone(&shared);
                                set.spawn(async move {
                                    let _guard = guard;
                                    conn::serve(s, peer, shared, implicit).await;
                                });
                            }
                            Err(e) => tracing::warn!(error = %e, "ftpd: could not register a client"),
                        }
                    }
                    None => break,
                },
                Some(_) = set.join_next(), if !set.is_empty() => {}
            }
        }
        while set.join_next().await.is_some() {}
    });
}

/// Namespace for [`Server::start`].
#[derive(Debug)]
pub struct Server;

/// A running server. Dropping it shuts the server down (as [`ServerHandle::shutdown`]).
pub struct ServerHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    implicit: Option<SocketAddr>,
    stop_accept: watch::Sender<bool>,
    accept: Option<std::thread::JoinHandle<()>>,
    ctl_socket: Option<PathBuf>,
    stopped: bool,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn drop_privileges(user: &str, docroot: &Path, keep_net_admin: bool) -> Result<()> {
    use nix::unistd::{Uid, User, chdir, chroot, setgid, setgroups, setuid};
    let u = User::from_name(user)
        .map_err(|e| Error::Privileges(format!("looking up {user:?}: {e}")))?
        .ok_or_else(|| Error::Privileges(format!("no such user {user:?}")))?;
    chroot(docroot).map_err(|e| Error::Privileges(format!("chroot {}: {e}", docroot.display())))?;
    chdir("/").map_err(|e| Error::Privileges(format!("chdir /: {e}")))?;
    setgroups(&[u.gid]).map_err(|e| Error::Privileges(format!("setgroups: {e}")))?;
    setgid(u.gid).map_err(|e| Error::Privileges(format!("setgid: {e}")))?;
    let caps_err = |e: caps::errors::CapsError| Error::Privileges(format!("capabilities: {e}"));
    if keep_net_admin {
        // Permitted capabilities survive the uid change only with KEEPCAPS (this thread's
        // setting; the server's other threads start after this and inherit the result).
        caps::securebits::set_keepcaps(true).map_err(caps_err)?;
    }
    setuid(u.uid).map_err(|e| Error::Privileges(format!("setuid: {e}")))?;
    if u.uid.as_raw() != 0 && setuid(Uid::from_raw(0)).is_ok() {
        return Err(Error::Privileges("root could be regained".into()));
    }
    if keep_net_admin {
        let only: caps::CapsHashSet = [caps::Capability::CAP_NET_ADMIN].into_iter().collect();
        caps::set(None, caps::CapSet::Permitted, &only).map_err(caps_err)?;
        caps::set(None, caps::CapSet::Effective, &only).map_err(caps_err)?;
        caps::clear(None, caps::CapSet::Inheritable).map_err(caps_err)?;
        caps::securebits::set_keepcaps(false).map_err(caps_err)?;
        tracing::info!("ftpd: kept CAP_NET_ADMIN (only it) to force socket buffers");
    }
    tracing::info!(user, uid = u.uid.as_raw(), gid = u.gid.as_raw(), root = %docroot.display(), "ftpd: chrooted and dropped privileges");
    Ok(())
}

fn bind_ctl(path: &Path) -> Result<std::os::unix::net::UnixListener> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
    let l = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| Error::io(format!("bind {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(format!("chmod {}", path.display()), e))?;
    l.set_nonblocking(true)
        .map_err(|e| Error::io("set_nonblocking", e))?;
    Ok(l)
}

impl Server {
    /// Starts a server: binds, opens the docroot and the password file, creates the control
    /// socket, then (as root, with [`ServerConfig::run_as`]) chroots and drops privileges
    /// and (with [`ServerConfig::seccomp`]) installs the seccomp filter, before any thread is
    /// started.
    pub fn start(config: ServerConfig) -> Result<ServerHandle> {
        if config.threads == 0 || config.io_threads == 0 {
            return Err(Error::Config("thread counts must be at least 1".into()));
        }
        let mut users = match &config.passwd {
            Some(p) => PasswordFile::load(p)?,
            None => PasswordFile::default(),
        };
        for (u, p) in &config.users {
            users.set(u, p)?;
        }
        if users.is_empty() && !config.anonymous && config.grid_mapfile.is_none() {
            tracing::warn!("ftpd: no users and no anonymous access: nobody can log in");
        }
        let tls_files = ftps::TlsFiles {
            cert: config.tls_cert.clone(),
            key: config.tls_key.clone(),
            client_ca: config.tls_client_ca.clone(),
            grid_mapfile: config.grid_mapfile.clone(),
        };
        let tls_loaded = tls_files.load()?;
        let has_tls = tls_loaded.server.is_some();
        ftps::check_policy(config.tls, has_tls, !users.is_empty(), config.listen)?;
        if config.implicit_tls.is_some() && (!has_tls || config.tls == TlsPolicy::Off) {
            return Err(Error::Config(
                "implicit_tls needs TLS: add --tls-cert FILE --tls-key FILE and a --tls                  policy other than off"
                    .into(),
            ));
        }
        let root = Root::open(&config.docroot)
            .map_err(|e| Error::io(format!("open docroot {}", config.docroot.display()), e))?;
        let listener = std::net::TcpListener::bind(config.listen)
            .map_err(|e| Error::io(format!("bind {}", config.listen), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("set_nonblocking", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("local_addr", e))?;
        let implicit_listener = match config.implicit_tls {
            Some(a) => {
                let l = std::net::TcpListener::bind(a)
                    .map_err(|e| Error::io(format!("bind {a} (implicit TLS)"), e))?;
                l.set_nonblocking(true)
                    .map_err(|e| Error::io("set_nonblocking", e))?;
                Some(l)
            }
            None => None,
        };
        let implicit = implicit_listener
            .as_ref()
            .map(|l| l.local_addr())
            .transpose()
            .map_err(|e| Error::io("local_addr", e))?;
        let ctl = config.ctl_socket.as_deref().map(bind_ctl).transpose()?;
        // Touch process-wide state that reads files, before a chroot hides them.
        let _ = gridos_io::config();
        let _ = gridos_io::probe();
        let mut chrooted = None;
        if let Some(user) = &config.run_as {
            if nix::unistd::geteuid().is_root() {
                let docroot = std::fs::canonicalize(&config.docroot).map_err(|e| {
                    Error::io(format!("canonicalize {}", config.docroot.display()), e)
                })?;
                drop_privileges(user, &docroot, config.keep_net_admin)?;
                chrooted = Some(docroot);
            } else {
                tracing::info!(
                    "ftpd: not root: no chroot or user switch (paths stay confined by openat2)"
                );
            }
        }
        // seccomp sandbox (issue 14): after everything that needs more than serving does
        // (binding, files, the I/O probe, chroot and the user switch), before any thread.
        let sandbox = sandbox::enter(config.seccomp)?;
        let (shutdown, _) = watch::channel(0u8);
        let shared = Arc::new(Shared {
            settings: RwLock::new(Settings {
                anonymous: config.anonymous,
                anonymous_write: config.anonymous_write,
                pasv_ports: config.pasv_ports,
                max_clients: config.max_clients,
                max_per_ip: config.max_per_ip,
                idle_timeout: config.idle_timeout,
                data_timeout: config.data_timeout,
                shutdown_grace: config.shutdown_grace,
                command_timeout: config.command_timeout,
                reply_timeout: config.reply_timeout,
                login: config.guard_config(),
                allow_third_party: config.allow_third_party,
                third_party_hosts: config.third_party_hosts.clone(),
                tls: config.tls,
                tls_data_reuse: config.tls_data_reuse,
                tls_handshake_timeout: config.tls_handshake_timeout,
            }),
            root: RwLock::new(Arc::new(root)),
            password_users: !users.is_empty(),
            users: Arc::new(users),
            io_pool: IoPool::new(config.io_threads)?,
            listeners: Mutex::new(Vec::new()),
            retired: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
            stats: Stats::default(),
            trimmer: trim::Trimmer::start(),
            shutdown,
            clients: Mutex::new(HashMap::new()),
            guard: Mutex::new(guard::Guard::new(config.guard_config())),
            chroot: chrooted,
            listen: addr,
            implicit,
            tls: RwLock::new(ftps::TlsState {
                files: tls_files,
                loaded: tls_loaded,
            }),
            seccomp: config.seccomp,
            sandbox,
        });
        if let Err(e) = gridos_io::set_key("io.threads", &config.io_threads.to_string()) {
            tracing::debug!(error = %e, "ftpd: io.threads not recorded in the I/O configuration");
        }
        shared.set_threads(config.threads)?;
        let (stop_accept, stop_rx) = watch::channel(false);
        let accept_shared = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("ftpd-accept".into())
            .spawn(move || accept_thread(accept_shared, listener, implicit_listener, ctl, stop_rx))
            .map_err(|e| Error::io("spawn accept thread", e))?;
        tracing::info!(%addr, docroot = %config.docroot.display(), tls = %config.tls, tls_offered = has_tls, "ftpd: listening");
        if let Some(a) = implicit {
            tracing::info!(addr = %a, "ftpd: listening for implicit TLS");
        }
        Ok(ServerHandle {
            shared,
            addr,
            implicit,
            stop_accept,
            accept: Some(accept),
            ctl_socket: config.ctl_socket.clone(),
            stopped: false,
        })
    }
}

fn accept_thread(
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    implicit: Option<std::net::TcpListener>,
    ctl: Option<std::os::unix::net::UnixListener>,
    mut stop: watch::Receiver<bool>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "ftpd: accept runtime failed");
            return;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "ftpd: listener registration failed");
                return;
            }
        };
        let implicit = match implicit.map(tokio::net::TcpListener::from_std).transpose() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "ftpd: implicit-TLS listener registration failed");
                return;
            }
        };
        if let Some(ctl) = ctl {
            match tokio::net::UnixListener::from_std(ctl) {
                Ok(l) => {
                    tokio::spawn(ctl::serve(l, Arc::clone(&shared), stop.clone()));
                }
                Err(e) => tracing::error!(error = %e, "ftpd: control socket registration failed"),
            }
        }
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((s, peer)) => shared.admit(s, peer, false),
                    Err(e) => {
                        tracing::warn!(error = %e, "ftpd: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                r = accept_on(implicit.as_ref()) => match r {
                    Ok((s, peer)) => shared.admit(s, peer, true),
                    Err(e) => {
                        tracing::warn!(error = %e, "ftpd: accept failed (implicit TLS)");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = stop.changed() => break,
            }
        }
    });
}

/// Accepts on `l`, or waits forever when there is no such listener.
async fn accept_on(
    l: Option<&tokio::net::TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

impl ServerHandle {
    /// The control-connection address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The implicit-TLS listener's address ([`ServerConfig::implicit_tls`]), if any.
    pub fn implicit_tls_addr(&self) -> Option<SocketAddr> {
        self.implicit
    }

    /// Reads the TLS certificate, key, client CA and grid-mapfile again (as the control
    /// socket's `tls-reload`): new connections use them, running sessions keep theirs.
    /// Nothing changes unless every file loads. Returns a note for the operator.
    pub fn reload_tls(&self) -> Result<String> {
        self.shared.reload_tls()
    }

    /// Reads a key (`ftp.*` or `io.*`).
    pub fn get(&self, key: &str) -> Result<String> {
        self.shared.get_key(key)
    }

    /// Sets a key live; returns a note for the operator (may be empty).
    pub fn set(&self, key: &str, value: &str) -> Result<String> {
        self.shared.set_key(key, value)
    }

    /// All keys and values.
    pub fn list(&self) -> Vec<(String, String)> {
        self.shared.list_keys()
    }

    /// Counters: clients, transfers, bytes, the I/O path.
    pub fn stats(&self) -> Vec<(String, String)> {
        self.shared.stats_list()
    }

    /// Stops accepting, lets running transfers finish for `ftp.shutdown_grace` (then aborts
    /// them: 426), closes every session with 421 and stops the threads.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let grace = self.shared.settings().shutdown_grace;
        let _ = self.shared.shutdown.send(SHUTDOWN_DRAIN);
        let _ = self.stop_accept.send(true);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        let wait = |d: Duration| {
            let end = Instant::now() + d;
            while self.shared.stats.clients_now.load(Relaxed) > 0 && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        wait(grace);
        if self.shared.stats.clients_now.load(Relaxed) > 0 {
            tracing::info!("ftpd: grace period over, aborting transfers");
            let _ = self.shared.shutdown.send(SHUTDOWN_ABORT);
            wait(Duration::from_secs(5));
        }
        let all_gone = self.shared.stats.clients_now.load(Relaxed) == 0;
        let threads: Vec<_> = lock(&self.shared.listeners).drain(..).collect();
        let mut handles: Vec<_> = threads
            .into_iter()
            .map(|t| {
                drop(t.tx);
                t.handle
            })
            .collect();
        handles.extend(lock(&self.shared.retired).drain(..));
        if all_gone {
            for h in handles {
                let _ = h.join();
            }
        }
        if let Some(p) = &self.ctl_socket {
            let _ = std::fs::remove_file(p);
        }
        tracing::info!("ftpd: stopped");
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::{Error, ServerConfig};

    /// Every key `KEYS` lists is one `set` knows (a bad value is refused, not the key).
    #[test]
    fn every_listed_key_is_known() {
        let mut c = ServerConfig::new("/tmp");
        for k in ServerConfig::KEYS {
            for key in [k.to_string(), format!("ftp.{k}")] {
                if let Err(Error::Config(m)) = c.set(&key, "not a value ⁇") {
                    assert!(!m.starts_with("unknown key"), "{key}: {m}");
                }
            }
        }
        assert!(
            matches!(c.set("no_such_key", "1"), Err(Error::Config(m)) if m.starts_with("unknown key"))
        );
    }

    /// The login throttle and the session timeouts in `[ftp]`.
    #[test]
    fn guard_keys_from_toml() {
        use std::time::Duration;
        let mut c = ServerConfig::new("/tmp");
        c.apply_toml(
            "[ftp]\nlogin_delay = 0.25\nlogin_max_failures = 4\nlogin_ban = \"90s\"\n\
             login_exempt = [\"127.0.0.1\", \"2001:db8::/32\"]\ncommand_timeout = 5\n\
             reply_timeout = 7\n",
        )
        .unwrap();
        assert_eq!(c.login_delay, Duration::from_millis(250));
        assert_eq!(c.login_max_failures, 4);
        assert_eq!(c.login_ban, Duration::from_secs(90));
        assert!(c.login_exempt.contains("127.0.0.1".parse().unwrap()));
        assert!(c.login_exempt.contains("2001:db8:5::1".parse().unwrap()));
        assert_eq!(c.command_timeout, Duration::from_secs(5));
        assert_eq!(c.reply_timeout, Duration::from_secs(7));
        c.apply_toml("[ftp]\nlogin_delay = 0\nlogin_max_failures = 0\n")
            .unwrap();
        assert_eq!(c.login_delay, Duration::ZERO);
        assert_eq!(c.login_max_failures, 0);
        assert!(c.apply_toml("[ftp]\nlogin_ban = 0\n").is_err());
        assert!(c.apply_toml("[ftp]\nlogin_delay = -1\n").is_err());
    }

    /// `seccomp` in `[ftp]`: a boolean or `"required"`; the library's default is off.
    #[test]
    fn seccomp_key_from_toml() {
        use super::Seccomp;
        let mut c = ServerConfig::new("/tmp");
        assert_eq!(c.seccomp, Seccomp::Off);
        for (text, want) in [
            ("[ftp]\nseccomp = true\n", Seccomp::On),
            ("[ftp]\nseccomp = \"required\"\n", Seccomp::Required),
            ("[ftp]\nseccomp = false\n", Seccomp::Off),
        ] {
            c.apply_toml(text).unwrap();
            assert_eq!(c.seccomp, want, "{text}");
        }
        assert!(c.apply_toml("[ftp]\nseccomp = \"maybe\"\n").is_err());
    }
}
