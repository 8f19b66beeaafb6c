//! The server-side session state machine: bytes in, replies and [`Action`]s out.
//!
//! A [`Session`] does no I/O. The driver (the server's control-connection task) runs this
//! loop:
//!
//! 1. bytes read from the control connection → [`Session::handle_input`] (only while
//!    [`Session::wants_input`]);
//! 2. write every [`Session::poll_reply`] to the control connection;
//! 3. take every [`Session::poll_action`] and perform it (file system, listener, transfer),
//!    reporting the outcome with the matching `handle_*` method:
//!    - [`Action::OpenPassive`] → [`Session::handle_passive_opened`];
//!    - file-system actions (`Cwd`, `Mkd`, `Rmd`, `Dele`, `Rnfr`, `Rename`, `Size`, `Mdtm`,
//!      `Mfmt`, `Mlst`, `Stat`, `Chmod`, `Cksm`) → [`Session::handle_fs_result`];
//!    - transfers (`Retr`, `Stor`, `List`) → [`Session::handle_transfer_started`] once the
//!      file is open and the data connection is up, optional
//!      [`Session::handle_marker`] during, and [`Session::handle_transfer_done`] at the end
//!      (or alone, with an error, if it never started);
//!    - [`Action::Abort`] → abort the running transfer, then `handle_transfer_done`;
//!    - [`Action::ClosePassive`] → close the passive listener(s), no report;
//!    - [`Action::StartTls`] (after `AUTH TLS`) → write the queued replies (the 234), then
//!      run the TLS handshake on the control connection and report it with
//!      [`Session::handle_tls_established`]; no input is taken meanwhile;
//! 4. after writing the replies, close the connection if [`Session::is_closing`].
//!
//! Only one action that needs a report is outstanding at a time: while it is, further
//! commands wait in a queue (so pipelined commands are answered in order), except `ABOR`
//! and a bare `STAT`, which are handled at once during a transfer (RFC 959 §4.1.3).
//!
//! Commands that state alone can answer (NOOP, SYST, TYPE, MODE, STRU, PWD, FEAT, HELP,
//! OPTS, REST, PORT, 530 before login, 503 bad sequence, …) are answered directly.
//!
//! FTPS (RFC 4217) as [`SessionConfig::tls`] ([`TlsRules`]) asks: `AUTH TLS`/`AUTH SSL` →
//! 234 and [`Action::StartTls`] (431 when TLS is not offered, 504 for another mechanism, 503
//! once protected); commands that arrived in clear behind the `AUTH` are dropped, not run
//! under the protection that follows (the STARTTLS command-injection hole). `PBSZ` (only
//! under TLS) → `200 PBSZ=0`; `PROT C|P` after `PBSZ` (`S`, `E` → 536); `CCC` → 534;
//! `SSCN ON|OFF` chooses which end is the TLS client on data connections; `DCAU N` is
//! recorded ([`Session::dcau_none`]). A driver that speaks TLS from the first byte (implicit
//! FTPS) starts the session with [`Session::new_protected`]. Certificate logins: under TLS
//! with a client certificate, `USER` asks [`Authenticator::map_subject`] (a grid-mapfile) and a
//! mapped user logs in with any password.
//!
//! ```
//! use gridos_ftp::proto::{Action, AuthOutcome, Session, SessionConfig};
//! let auth = |user: &str, pass: &str| {
//!     if user == "alice" && pass == "secret" { AuthOutcome::Granted { read_only: false } } else { AuthOutcome::Denied }
//! };
//! let mut s = Session::new(SessionConfig::default(), Box::new(auth), "127.0.0.1:40000".parse().unwrap());
//! assert_eq!(s.poll_reply().unwrap().code, 220);
//! s.handle_input(b"USER alice\r\nPASS secret\r\nCWD docs\r\n");
//! assert_eq!(s.poll_reply().unwrap().code, 331);
//! assert_eq!(s.poll_reply().unwrap().code, 230);
//! let Some(Action::Cwd(p)) = s.poll_action() else { panic!() };
//! assert_eq!(p.as_str(), "/docs");
//! s.handle_fs_result(Ok(gridos_ftp::proto::FsOutcome::Done)).unwrap();
//! assert_eq!(s.poll_reply().unwrap().code, 250);
//! ```

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::time::SystemTime;

use super::addr::{epsv_reply, pasv_reply, spas_reply};
use super::command::{
    Command, Dcau, EpsvArg, ListArgs, Opts, Parallelism, ProtLevel, Restart, RetrOpts, SiteCommand,
    Structure, TransferMode, TransferType, TrevEvent, Verb,
};
use super::error::{Error, ParseError};
use super::facts::{FactSet, Facts, format_time, format_time_exact};
use super::line::{LineEvent, LineReader};
use super::markers::{PerfMarker, RangeSet, range_marker_reply};
use super::path::VirtualPath;
use super::policy::{DataPolicy, DataRefusal, HostList};
use super::reply::Reply;

/// What the server supports; FEAT lists exactly these, and commands of disabled features are
/// answered 502 (or 504 for a disabled parameter such as `MODE E`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    /// SIZE (RFC 3659).
    pub size: bool,
    /// MDTM (RFC 3659).
    pub mdtm: bool,
    /// MFMT: set a file's modification time (draft-somers-ftp-mfxx).
    pub mfmt: bool,
    /// REST STREAM (RFC 3659).
    pub rest_stream: bool,
    /// MLST/MLSD (RFC 3659).
    pub mlst: bool,
    /// TVFS (RFC 3659): `/`-separated virtual paths.
    pub tvfs: bool,
    /// UTF8 (RFC 2640).
    pub utf8: bool,
    /// EPSV/EPRT (RFC 2428).
    pub epsv: bool,
    /// LANG tags (RFC 2640); empty disables LANG.
    pub languages: Vec<String>,
    /// SITE CHMOD.
    pub site_chmod: bool,
    /// MODE E and REST range lists (GridFTP).
    pub mode_e: bool,
    /// MODE Z, deflate (GridFTP).
    pub mode_z: bool,
    /// OPTS RETR Parallelism/StripeLayout/BlockSize (GridFTP).
    pub parallelism: bool,
    /// SPAS (GridFTP).
    pub spas: bool,
    /// SPOR (GridFTP).
    pub spor: bool,
    /// ERET P (GridFTP).
    pub eret: bool,
    /// ESTO A (GridFTP).
    pub esto: bool,
    /// SBUF and the SITE buffer commands (GridFTP).
    pub sbuf: bool,
    /// DCAU (only `N` is accepted) (GridFTP).
    pub dcau: bool,
    /// 111/112 markers and TREV (GridFTP).
    pub markers: bool,
    /// CKSM/SCKS algorithms, upper-case; empty disables both (GridFTP).
    pub checksums: Vec<String>,
}

impl Features {
    /// The standard FTP set: RFC 959/2389/2428/3659/2640, no GridFTP extensions.
    pub fn standard() -> Self {
        Features {
            size: true,
            mdtm: true,
            mfmt: true,
            rest_stream: true,
            mlst: true,
            tvfs: true,
            utf8: true,
            epsv: true,
            languages: vec!["EN".to_string()],
            site_chmod: true,
            mode_e: false,
            mode_z: false,
            parallelism: false,
            spas: false,
            spor: false,
            eret: false,
            esto: false,
            sbuf: false,
            dcau: false,
            markers: false,
            checksums: Vec::new(),
        }
    }

    /// Standard plus every GridFTP extension this crate parses (MODE Z left off), with the
    /// checksum algorithms of GFD.47 practice.
    pub fn gridftp() -> Self {
        Features {
            mode_e: true,
            parallelism: true,
            spas: true,
            spor: true,
            eret: true,
            esto: true,
            sbuf: true,
            dcau: true,
            markers: true,
            checksums: ["MD5", "ADLER32", "SHA1", "SHA256", "SHA512", "CRC32C"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ..Features::standard()
        }
    }

    /// The FEAT reply lines (without the `Features:` and `End` lines), each with its leading
    /// space.
    pub fn feat_lines(&self, facts: &FactSet) -> Vec<String> {
        let mut v = Vec::new();
        let mut add = |on: bool, s: &str| {
            if on {
                v.push(format!(" {s}"));
            }
        };
        add(self.epsv, "EPRT");
        add(self.epsv, "EPSV");
        add(self.mdtm, "MDTM");
        add(self.mfmt, "MFMT");
        add(self.mlst, &format!("MLST {}", facts.feat_string()));
        add(self.rest_stream, "REST STREAM");
        add(self.size, "SIZE");
        add(self.tvfs, "TVFS");
        add(self.utf8, "UTF8");
        if !self.languages.is_empty() {
            let mut langs = self.languages.clone();
            if let Some(first) = langs.first_mut() {
                first.push('*');
            }
            add(true, &format!("LANG {}", langs.join(";")));
        }
        add(self.parallelism, "PARALLEL");
        add(self.mode_e, "MODE E");
        add(self.mode_z, "MODE Z");
        add(self.spas, "SPAS");
        add(self.spor, "SPOR");
        add(self.eret, "ERET");
        add(self.esto, "ESTO");
        add(self.sbuf, "SBUF");
        add(self.dcau, "DCAU");
        add(self.markers, "TREV");
        if !self.checksums.is_empty() {
            add(true, &format!("CKSM {}", self.checksums.join(",")));
            add(true, "SCKS");
        }
        v
    }
}

impl Default for Features {
    fn default() -> Self {
        Self::standard()
    }
}

/// What a session offers and requires of TLS (FTPS), as the server's policy decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TlsRules {
    /// `AUTH TLS` is accepted (the server has a certificate); FEAT lists `AUTH TLS`, `PBSZ`,
    /// `PROT`. Off: `AUTH` gets 431 and FEAT says nothing of TLS.
    pub offered: bool,
    /// `USER` of a password user (not anonymous) before TLS gets 530 naming `AUTH TLS`, so
    /// no password crosses the network in clear.
    pub passwords: bool,
    /// Every login, anonymous too, needs TLS first, and every transfer `PROT P` (521).
    pub required: bool,
}

/// The control connection's TLS, as the driver reports it after the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsEstablished {
    /// The subject of the client's certificate (`/C=XX/O=Grid/CN=Jane Doe`), if it sent
    /// one that the server's client CA verified.
    pub subject: Option<String>,
}

/// Session policy, filled in by the server.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Text of the 220 greeting.
    pub greeting: String,
    /// Text of the SYST reply.
    pub system: String,
    /// Accept `anonymous`/`ftp` with any password.
    pub anonymous: bool,
    /// Let anonymous users write (otherwise they are read-only: 550 on writes).
    pub anonymous_write: bool,
    /// The feature set; FEAT lists it.
    pub features: Features,
    /// Verbs answered 502 whatever else is configured.
    pub disabled: Vec<Verb>,
    /// Failed PASS attempts before the session replies 421 and closes.
    pub max_login_failures: u32,
    /// Commands that may wait in the queue before [`Session::wants_input`] turns false.
    pub max_pipelined: usize,
    /// Largest `Parallelism` maximum accepted in OPTS RETR (larger → 501).
    pub max_parallelism: u32,
    /// Let every session, anonymous ones included, use data connections to and from any
    /// host and PORT/EPRT/SPOR to ports below 1024 (off by default, as RFC 2577 advises).
    /// Without it, another host than the client's is allowed only for authenticated
    /// (non-anonymous) users and for [`third_party_hosts`](Self::third_party_hosts), and
    /// never a port below 1024. See [`DataPolicy`].
    pub allow_third_party: bool,
    /// Hosts any session may use for data connections besides the client's own (server-to-
    /// server transfers driven by an anonymous or untrusted client).
    pub third_party_hosts: HostList,
    /// Longest command line (bytes).
    pub max_line: usize,
    /// FTPS: offered, required for passwords, required for everything.
    pub tls: TlsRules,
    /// Report password logins to the driver: a failure becomes [`Action::LoginFailed`]
    /// (its 530 waits for [`Session::handle_login_verdict`], so the driver may hold it, as
    /// a login throttle does) and a success [`Action::LoggedIn`]. Off: 530 at once.
    pub report_logins: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            greeting: "gridos FTP server ready.".to_string(),
            system: "UNIX Type: L8".to_string(),
            anonymous: false,
            anonymous_write: false,
            features: Features::standard(),
            disabled: Vec::new(),
            max_login_failures: 3,
            max_pipelined: 64,
            max_parallelism: 64,
            allow_third_party: false,
            third_party_hosts: HostList::default(),
            max_line: super::line::DEFAULT_MAX_LINE,
            tls: TlsRules::default(),
            report_logins: false,
        }
    }
}

/// The outcome of a password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Log the user in.
    Granted {
        /// Refuse every write command (550).
        read_only: bool,
    },
    /// Wrong user or password (530).
    Denied,
}

/// Password checking, supplied by the server (e.g. from its password file). Any
/// `FnMut(&str, &str) -> AuthOutcome + Send` closure implements it.
pub trait Authenticator: Send {
    /// Check `password` for `user`.
    fn authenticate(&mut self, user: &str, password: &str) -> AuthOutcome;

    /// Certificate login: the local user a verified client certificate with `subject` may
    /// log in as without a password, when the client asked for `wanted` (`:globus-mapping:`:
    /// the subject's default user). `None`: no such mapping, so `wanted` needs its password
    /// (and `:globus-mapping:` is refused). The default maps nobody.
    fn map_subject(&mut self, subject: &str, wanted: &str) -> Option<String> {
        let _ = (subject, wanted);
        None
    }

    /// Asked at each `USER`: `Some(text)` refuses the login with 421 `text` and closes the
    /// session (e.g. the client's address is banned after failed logins). Default: `None`.
    fn refusal(&mut self) -> Option<String> {
        None
    }
}

impl<F: FnMut(&str, &str) -> AuthOutcome + Send> Authenticator for F {
    fn authenticate(&mut self, user: &str, password: &str) -> AuthOutcome {
        self(user, password)
    }
}

/// An authenticator that denies everyone (anonymous access still works if enabled).
#[derive(Debug, Clone, Copy, Default)]
pub struct DenyAll;

impl Authenticator for DenyAll {
    fn authenticate(&mut self, _: &str, _: &str) -> AuthOutcome {
        AuthOutcome::Denied
    }
}

/// The logged-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// User name (`anonymous` for anonymous logins).
    pub name: String,
    /// Logged in anonymously.
    pub anonymous: bool,
    /// Writes are refused.
    pub read_only: bool,
}

/// Which passive command asked for a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassiveKind {
    /// PASV: one IPv4 listener, answered 227.
    Pasv,
    /// EPSV: one listener of the control connection's family, answered 229.
    Epsv,
    /// SPAS: one listener per stripe (one for a single host), answered multi-line 229.
    Spas,
}

/// How the data connection(s) of the next transfer are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataEndpoint {
    /// Accept on the listener(s) opened for the last [`Action::OpenPassive`].
    Passive,
    /// Connect to these addresses (PORT/EPRT: one; SPOR: one per stripe).
    Active(Vec<SocketAddr>),
}

/// Transfer settings in force when a transfer was requested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferParams {
    /// TYPE.
    pub ty: TransferType,
    /// MODE.
    pub mode: TransferMode,
    /// STRU.
    pub stru: Structure,
    /// OPTS RETR settings (parallelism etc.).
    pub retr_opts: RetrOpts,
    /// Socket buffer size for this direction (SBUF / SITE …BUFSIZE), if set.
    pub buffer_size: Option<u64>,
    /// Seconds between 112 perf markers (0 = none).
    pub perf_interval: u32,
    /// Seconds between 111 range markers (0 = none).
    pub restart_interval: u32,
}

/// A retrieve (RETR, or ERET P).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrRequest {
    /// The file.
    pub path: VirtualPath,
    /// First byte to send (REST offset, ERET offset).
    pub offset: u64,
    /// Number of bytes (ERET), `None` = to the end.
    pub length: Option<u64>,
    /// Ranges the client already has (REST range list): send the rest.
    pub restart: Option<RangeSet>,
    /// Data connection.
    pub data: DataEndpoint,
    /// Settings.
    pub params: TransferParams,
}

/// How a store treats an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// STOR (at `offset` after REST: resume).
    Replace,
    /// APPE.
    Append,
    /// STOU: the server picks a new name in `path`'s directory (or uses `path`'s name as a
    /// base) and reports it in [`TransferStart::name`].
    Unique,
    /// ESTO A: write each block at its offset plus [`StorRequest::offset`].
    Adjusted,
}

/// A store (STOR, APPE, STOU, ESTO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorRequest {
    /// The file (for STOU, the suggested name or the working directory).
    pub path: VirtualPath,
    /// Replace, append, unique or adjusted.
    pub kind: StoreKind,
    /// Start offset (REST) or adjustment (ESTO).
    pub offset: u64,
    /// Ranges the server already has (REST range list).
    pub restart: Option<RangeSet>,
    /// Expected checksum from SCKS: (algorithm if given, value).
    pub expected_checksum: Option<(Option<String>, String)>,
    /// Bytes the client announced with ALLO just before: the driver may reserve them
    /// (fallocate) so the file is written into allocated blocks.
    pub allocate: Option<u64>,
    /// Data connection.
    pub data: DataEndpoint,
    /// Settings.
    pub params: TransferParams,
}

/// Which listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// LIST: `ls -l` style lines.
    List,
    /// NLST: names only.
    Nlst,
    /// MLSD: [`Facts`] lines, formatted with [`ListRequest::facts`].
    Mlsd,
}

/// A directory listing over the data connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    /// What to list.
    pub path: VirtualPath,
    /// LIST, NLST or MLSD.
    pub kind: ListKind,
    /// LIST/NLST options such as `-la`, verbatim.
    pub options: Option<String>,
    /// MLSD facts to include (OPTS MLST).
    pub facts: FactSet,
    /// Data connection.
    pub data: DataEndpoint,
    /// Settings.
    pub params: TransferParams,
}

/// Work the session asks the driver to do. See the [module docs](self) for which `handle_*`
/// call reports each outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Open passive listener(s) (closing earlier ones); report the addresses.
    OpenPassive(PassiveKind),
    /// Forget the data channels: close any passive listener and any cached MODE E data
    /// connections (a new PORT/EPRT/SPOR, a return to MODE S or REIN replaced them). No
    /// report.
    ClosePassive,
    /// Check that this is a directory the user may enter (then it becomes the cwd).
    Cwd(VirtualPath),
    /// Create a directory.
    Mkd(VirtualPath),
    /// Remove a directory.
    Rmd(VirtualPath),
    /// Delete a file.
    Dele(VirtualPath),
    /// Check that a rename source exists.
    Rnfr(VirtualPath),
    /// Rename.
    Rename {
        /// Source.
        from: VirtualPath,
        /// Destination.
        to: VirtualPath,
    },
    /// Size of a file (report [`FsOutcome::Size`]); `ty` is the TYPE in force.
    Size {
        /// The file.
        path: VirtualPath,
        /// TYPE in force (a server may refuse SIZE in ASCII mode).
        ty: TransferType,
    },
    /// Modification time (report [`FsOutcome::Modified`]).
    Mdtm(VirtualPath),
    /// Set the modification time (MFMT; the access time stays); report
    /// [`FsOutcome::Modified`] with the time the file then has.
    Mfmt {
        /// The file.
        path: VirtualPath,
        /// The time to set.
        modified: SystemTime,
    },
    /// Facts of one entry (report [`FsOutcome::Facts`]; the session formats them with
    /// [`Session::mlst_facts`]).
    Mlst(VirtualPath),
    /// Listing over the control connection (report [`FsOutcome::Lines`]).
    Stat(VirtualPath),
    /// SITE CHMOD.
    Chmod {
        /// The file.
        path: VirtualPath,
        /// Mode bits.
        mode: u32,
    },
    /// Checksum (report [`FsOutcome::Checksum`]).
    Cksm {
        /// The file.
        path: VirtualPath,
        /// Algorithm, upper-case, one of [`Features::checksums`].
        algorithm: String,
        /// First byte.
        offset: u64,
        /// Length, `None` = to the end.
        length: Option<u64>,
    },
    /// Send a file.
    Retr(RetrRequest),
    /// Receive a file.
    Stor(StorRequest),
    /// Send a listing.
    List(ListRequest),
    /// Abort the running transfer, then report it with `handle_transfer_done` (usually
    /// [`TransferError::Aborted`]).
    Abort,
    /// `AUTH TLS` was accepted: write the queued replies (ending with 234) in clear, then
    /// run the server side of a TLS handshake on the control connection and report it with
    /// [`Session::handle_tls_established`].
    StartTls,
    /// A password login failed ([`SessionConfig::report_logins`]): decide (maybe after a
    /// while) and report with [`Session::handle_login_verdict`]; the 530 waits for it.
    LoginFailed {
        /// The user name tried.
        user: String,
    },
    /// A password (not anonymous, not certificate) login succeeded
    /// ([`SessionConfig::report_logins`]). No report.
    LoggedIn {
        /// The user.
        user: String,
    },
}

/// Successful outcome of a file-system action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsOutcome {
    /// Done (CWD, MKD, RMD, DELE, RNFR, rename, CHMOD).
    Done,
    /// SIZE.
    Size(u64),
    /// MDTM, MFMT.
    Modified(SystemTime),
    /// MLST.
    Facts(Facts),
    /// STAT path: listing lines.
    Lines(Vec<String>),
    /// CKSM: the checksum text (lower-case hex usually).
    Checksum(String),
}

/// Kinds of file-system failures, each with its reply code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FsErrorKind {
    /// 550
    NotFound,
    /// 550
    PermissionDenied,
    /// 550
    AlreadyExists,
    /// 550
    NotADirectory,
    /// 550
    IsADirectory,
    /// 550
    NotEmpty,
    /// 553
    InvalidName,
    /// 452
    StorageFull,
    /// 552
    QuotaExceeded,
    /// 450
    Busy,
    /// 504 (e.g. unsupported checksum range, SIZE in ASCII mode)
    Unsupported,
    /// 451
    Other,
}

impl FsErrorKind {
    /// The reply code.
    pub fn reply_code(self) -> u16 {
        match self {
            FsErrorKind::NotFound
            | FsErrorKind::PermissionDenied
            | FsErrorKind::AlreadyExists
            | FsErrorKind::NotADirectory
            | FsErrorKind::IsADirectory
            | FsErrorKind::NotEmpty => 550,
            FsErrorKind::InvalidName => 553,
            FsErrorKind::StorageFull => 452,
            FsErrorKind::QuotaExceeded => 552,
            FsErrorKind::Busy => 450,
            FsErrorKind::Unsupported => 504,
            FsErrorKind::Other => 451,
        }
    }

    fn default_text(self) -> &'static str {
        match self {
            FsErrorKind::NotFound => "No such file or directory.",
            FsErrorKind::PermissionDenied => "Permission denied.",
            FsErrorKind::AlreadyExists => "File exists.",
            FsErrorKind::NotADirectory => "Not a directory.",
            FsErrorKind::IsADirectory => "Is a directory.",
            FsErrorKind::NotEmpty => "Directory not empty.",
            FsErrorKind::InvalidName => "File name not allowed.",
            FsErrorKind::StorageFull => "Insufficient storage space.",
            FsErrorKind::QuotaExceeded => "Exceeded storage allocation.",
            FsErrorKind::Busy => "File unavailable (busy).",
            FsErrorKind::Unsupported => "Not supported for that parameter.",
            FsErrorKind::Other => "Local error in processing.",
        }
    }
}

/// A failed file-system action. The reply text is `message` if not empty, else a standard
/// text for `kind` (converting from `io::Error` leaves `message` empty so host paths and OS
/// messages do not leak to clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsError {
    /// What went wrong.
    pub kind: FsErrorKind,
    /// Reply text override.
    pub message: String,
}

impl FsError {
    /// An error with the standard text.
    pub fn new(kind: FsErrorKind) -> Self {
        FsError {
            kind,
            message: String::new(),
        }
    }

    fn reply(&self) -> Reply {
        let text = if self.message.is_empty() {
            self.kind.default_text()
        } else {
            &self.message
        };
        Reply::new(self.kind.reply_code(), text)
    }
}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match e.kind() {
            K::NotFound => FsErrorKind::NotFound,
            K::PermissionDenied => FsErrorKind::PermissionDenied,
            K::AlreadyExists => FsErrorKind::AlreadyExists,
            K::NotADirectory => FsErrorKind::NotADirectory,
            K::IsADirectory => FsErrorKind::IsADirectory,
            K::DirectoryNotEmpty => FsErrorKind::NotEmpty,
            K::InvalidInput | K::InvalidData => FsErrorKind::InvalidName,
            K::StorageFull => FsErrorKind::StorageFull,
            K::QuotaExceeded | K::FileTooLarge => FsErrorKind::QuotaExceeded,
            K::WouldBlock | K::ResourceBusy => FsErrorKind::Busy,
            K::Unsupported => FsErrorKind::Unsupported,
            _ => match e.raw_os_error() {
                Some(40) => FsErrorKind::NotFound, // ELOOP: symlink outside the root
                Some(18) => FsErrorKind::PermissionDenied, // EXDEV: RESOLVE_IN_ROOT escape
                _ => FsErrorKind::Other,
            },
        };
        FsError::new(kind)
    }
}

/// Reported by the driver when a transfer's data starts flowing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransferStart {
    /// The data connection was already open (reused, MODE E): reply 125 instead of 150.
    pub reused: bool,
    /// Bytes to send, if known (shown in the 150 text).
    pub size: Option<u64>,
    /// STOU: the name chosen (reply `150 FILE: name`).
    pub name: Option<String>,
}

/// Reported by the driver when a transfer completed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransferDone {
    /// Bytes moved.
    pub bytes: u64,
}

/// Why a transfer failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransferError {
    /// Opening, reading or writing the file failed (before the start: the kind's code, e.g.
    /// 550; after: 451, 452 or 552).
    Fs(FsError),
    /// The data connection could not be made (425). A message starting `TLS:` (a data
    /// connection's TLS failed, e.g. did not resume the control session) is shown to the
    /// client, who can act on it.
    CannotOpenData(String),
    /// The data connection broke (426).
    ConnectionClosed(String),
    /// The peer sent bad data, e.g. an impossible MODE E block (426).
    BadData(String),
    /// Aborted by ABOR (426).
    Aborted,
    /// Some other local failure (451).
    Local(String),
}

impl From<super::error::ModeEError> for TransferError {
    fn from(e: super::error::ModeEError) -> Self {
        TransferError::BadData(e.to_string())
    }
}

#[derive(Debug, Clone)]
enum Login {
    Fresh,
    NeedPass {
        user: String,
        anonymous: bool,
        /// A client certificate vouched for `user` (any password will do).
        certificate: bool,
    },
    LoggedIn(UserInfo),
}

#[derive(Debug, Clone)]
enum FsOp {
    Cwd(VirtualPath),
    Mkd(VirtualPath),
    Rmd,
    Dele,
    Rnfr(VirtualPath),
    Rename,
    Size,
    Mdtm,
    /// The path as the client wrote it, echoed in the 213 reply.
    Mfmt(String),
    Mlst(VirtualPath),
    Stat(VirtualPath),
    Chmod,
    Cksm,
}

#[derive(Debug, Clone)]
enum Pending {
    Idle,
    Fs(FsOp),
    Passive(PassiveKind),
    Transfer {
        started: bool,
        abort: bool,
        unique: bool,
    },
    /// `AUTH TLS` answered; the handshake runs.
    Tls,
    /// A failed login awaits the driver's verdict.
    Login,
}

/// One queued input.
#[derive(Debug, Clone)]
enum Input {
    Command(Command),
    Bad(ParseError),
    Overlong,
}

/// Most replies a session makes before they are taken (commands beyond wait, framed).
pub const REPLY_BATCH: usize = 64;

/// The FTP/GridFTP server session. See the [module docs](self).
pub struct Session {
    config: SessionConfig,
    auth: Box<dyn Authenticator>,
    peer: SocketAddr,
    lines: LineReader,
    queue: VecDeque<Input>,
    replies: VecDeque<Reply>,
    actions: VecDeque<Action>,
    login: Login,
    failures: u32,
    ty: TransferType,
    mode: TransferMode,
    stru: Structure,
    rest: Option<Restart>,
    /// ALLO size, for the next store only.
    allo: Option<u64>,
    rnfr: Option<VirtualPath>,
    utf8: bool,
    lang: Option<String>,
    retr_opts: RetrOpts,
    retr_buf: Option<u64>,
    stor_buf: Option<u64>,
    perf_interval: u32,
    restart_interval: u32,
    cwd: VirtualPath,
    data: Option<DataEndpoint>,
    epsv_all: bool,
    mlst_facts: FactSet,
    scks: Option<(Option<String>, String)>,
    pending: Pending,
    closing: bool,
    /// The control connection is protected (AUTH TLS done, or implicit FTPS).
    tls: Option<TlsEstablished>,
    /// PBSZ given under TLS.
    pbsz: bool,
    /// PROT in force: `Clear` or `Private`.
    prot: ProtLevel,
    /// DCAU N given: data connections are encrypted but not tied to this control session.
    dcau_none: bool,
    /// SSCN ON: this server is the TLS client on data connections.
    sscn: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.peer)
            .field("login", &self.login)
            .field("cwd", &self.cwd)
            .field("pending", &self.pending)
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

const PRE_LOGIN: &[Verb] = &[
    Verb::User,
    Verb::Pass,
    Verb::Quit,
    Verb::Feat,
    Verb::Syst,
    Verb::Help,
    Verb::Noop,
    Verb::Auth,
    Verb::Pbsz,
    Verb::Prot,
    Verb::Ccc,
    Verb::Lang,
];

fn r(code: u16, text: &str) -> Reply {
    Reply::new(code, text)
}

fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl Session {
    /// A new session for a client at `peer`; the 220 greeting is queued at once.
    pub fn new(config: SessionConfig, auth: Box<dyn Authenticator>, peer: SocketAddr) -> Self {
        let mut s = Session {
            lines: LineReader::with_max_line(config.max_line),
            auth,
            peer,
            queue: VecDeque::new(),
            replies: VecDeque::new(),
            actions: VecDeque::new(),
            login: Login::Fresh,
            failures: 0,
            ty: TransferType::Ascii(super::command::FormatControl::NonPrint),
            mode: TransferMode::Stream,
            stru: Structure::File,
            rest: None,
            allo: None,
            rnfr: None,
            utf8: config.features.utf8,
            lang: None,
            retr_opts: RetrOpts::default(),
            retr_buf: None,
            stor_buf: None,
            perf_interval: 0,
            restart_interval: 0,
            cwd: VirtualPath::root(),
            data: None,
            epsv_all: false,
            mlst_facts: FactSet::default(),
            scks: None,
            pending: Pending::Idle,
            closing: false,
            tls: None,
            pbsz: false,
            prot: ProtLevel::Clear,
            dcau_none: false,
            sscn: false,
            config,
        };
        let greeting = s.config.greeting.clone();
        s.reply(r(220, &greeting));
        s
    }

    /// A new session on a control connection already protected by TLS from its first byte
    /// (implicit FTPS); the 220 greeting is queued at once. `PBSZ`/`PROT` still choose the
    /// data connections' protection, as clients of implicit FTPS send them.
    pub fn new_protected(
        config: SessionConfig,
        auth: Box<dyn Authenticator>,
        peer: SocketAddr,
        tls: TlsEstablished,
    ) -> Self {
        let mut s = Session::new(config, auth, peer);
        s.tls = Some(tls);
        s
    }

    // ----- input -------------------------------------------------------------------------

    /// Feed bytes read from the control connection.
    pub fn handle_input(&mut self, bytes: &[u8]) {
        if self.closing {
            return;
        }
        self.lines.feed(bytes);
        self.take_lines();
    }

    /// Runs the framed lines, but stops while [`REPLY_BATCH`] replies wait to be written:
    /// one read of tiny commands (`FEAT` × thousands) must not make megabytes of replies
    /// at once. The rest runs as the driver takes the replies ([`Session::poll_reply`]).
    fn take_lines(&mut self) {
        while self.replies.len() < REPLY_BATCH && !self.closing {
            let Some(ev) = self.lines.poll_line() else {
                break;
            };
            let input = match ev {
                LineEvent::Line(l) => match Command::parse(&l) {
                    Ok(c) => Input::Command(c),
                    Err(e) => Input::Bad(e),
                },
                LineEvent::Overlong => Input::Overlong,
            };
            self.enqueue(input);
            // Dispatch before the next line is looked at: an ABOR (or STAT) that arrived in
            // the same read as the transfer command it aborts must find that transfer
            // running, not queue up behind it.
            self.run_queue();
        }
    }

    /// Feed one already framed and parsed command (for drivers that frame lines themselves).
    pub fn handle_command(&mut self, cmd: Result<Command, ParseError>) {
        if self.closing {
            return;
        }
        self.enqueue(match cmd {
            Ok(c) => Input::Command(c),
            Err(e) => Input::Bad(e),
        });
        self.run_queue();
    }

    /// The idle timer expired: reply 421 and close.
    pub fn handle_idle_timeout(&mut self) {
        self.close_with(r(421, "Timeout: closing control connection."));
    }

    /// A command line begun too long ago has not ended: reply 421 and close.
    pub fn handle_command_timeout(&mut self) {
        self.close_with(r(421, "Timeout: command line not completed, closing."));
    }

    /// The server is shutting down: reply 421 and close.
    pub fn handle_shutdown(&mut self) {
        self.close_with(r(421, "Service not available, closing control connection."));
    }

    fn close_with(&mut self, reply: Reply) {
        if !self.closing {
            self.reply(reply);
            self.closing = true;
            self.queue.clear();
        }
    }

    fn enqueue(&mut self, input: Input) {
        if matches!(self.pending, Pending::Tls) {
            // Sent in clear after AUTH TLS: never run it as if it had been protected.
            return;
        }
        if let (Pending::Transfer { .. }, Input::Command(c)) = (&self.pending, &input) {
            match c {
                Command::Abor => return self.abort_transfer(),
                Command::Stat(None) => {
                    let st = self.status_reply();
                    return self.reply(st);
                }
                _ => {}
            }
        }
        self.queue.push_back(input);
    }

    fn run_queue(&mut self) {
        while matches!(self.pending, Pending::Idle) && !self.closing {
            let Some(input) = self.queue.pop_front() else {
                break;
            };
            self.dispatch(input);
        }
    }

    // ----- output ------------------------------------------------------------------------

    /// The next reply to write to the control connection.
    pub fn poll_reply(&mut self) -> Option<Reply> {
        if self.replies.is_empty() && self.lines.pending() > 0 {
            self.take_lines();
        }
        self.replies.pop_front()
    }

    /// True while an action awaits [`Session::poll_action`] (taking replies may run held
    /// commands, which may ask for actions).
    pub fn has_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    /// The next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// True once the session is over (QUIT, 421): write the queued replies, then close.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// False while too many commands are queued (or the session is closing): stop reading
    /// the control connection until it turns true again.
    pub fn wants_input(&self) -> bool {
        !self.closing
            && self.lines.pending() == 0
            && !matches!(self.pending, Pending::Tls)
            && self.queue.len() < self.config.max_pipelined
    }

    /// True while an action awaits its report.
    pub fn is_busy(&self) -> bool {
        !matches!(self.pending, Pending::Idle)
    }

    // ----- state accessors ---------------------------------------------------------------

    /// True while a command line has begun but not ended (bytes after the last CRLF are
    /// held): the driver bounds how long a line may take to complete.
    pub fn in_line(&self) -> bool {
        self.lines.in_line()
    }

    /// The logged-in user, if any.
    pub fn user(&self) -> Option<&UserInfo> {
        match &self.login {
            Login::LoggedIn(u) => Some(u),
            _ => None,
        }
    }
    /// The current working directory.
    pub fn cwd(&self) -> &VirtualPath {
        &self.cwd
    }
    /// TYPE in force.
    pub fn transfer_type(&self) -> TransferType {
        self.ty
    }
    /// MODE in force.
    pub fn mode(&self) -> TransferMode {
        self.mode
    }
    /// STRU in force.
    pub fn structure(&self) -> Structure {
        self.stru
    }
    /// A pending REST, if the last command was REST.
    pub fn rest(&self) -> Option<&Restart> {
        self.rest.as_ref()
    }
    /// The data connection setup for the next transfer.
    pub fn data_endpoint(&self) -> Option<&DataEndpoint> {
        self.data.as_ref()
    }
    /// Facts selected by OPTS MLST.
    pub fn mlst_facts(&self) -> FactSet {
        self.mlst_facts
    }
    /// OPTS RETR settings.
    pub fn retr_opts(&self) -> RetrOpts {
        self.retr_opts
    }
    /// UTF8 option state (paths are parsed as UTF-8 either way).
    pub fn utf8(&self) -> bool {
        self.utf8
    }
    /// Socket buffer sizes (retrieve, store) from SBUF / SITE …BUFSIZE.
    pub fn buffer_sizes(&self) -> (Option<u64>, Option<u64>) {
        (self.retr_buf, self.stor_buf)
    }
    /// TREV intervals in seconds (perf, restart).
    pub fn marker_intervals(&self) -> (u32, u32) {
        (self.perf_interval, self.restart_interval)
    }
    /// The data-connection rule in force now: the client's address, whether the user is
    /// authenticated and not anonymous, and the configuration's third-party settings. The
    /// driver checks the source of every connection to a passive listener with
    /// [`DataPolicy::allows_peer`]; PORT/EPRT/SPOR targets are checked here.
    pub fn data_policy(&self) -> DataPolicy {
        let authenticated = matches!(&self.login, Login::LoggedIn(u) if !u.anonymous);
        DataPolicy::new(
            self.peer.ip(),
            authenticated,
            self.config.allow_third_party,
            self.config.third_party_hosts.clone(),
        )
    }
    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }
    /// The control connection's TLS, if it is protected.
    pub fn tls(&self) -> Option<&TlsEstablished> {
        self.tls.as_ref()
    }
    /// The data protection in force (`PROT`): [`ProtLevel::Private`] after `PROT P`, else
    /// [`ProtLevel::Clear`].
    pub fn protection(&self) -> ProtLevel {
        self.prot
    }
    /// `DCAU N` was given: TLS data connections need not resume the control connection's
    /// session (a peer server's connection in a third-party transfer cannot); the data
    /// policy still decides which hosts may connect.
    pub fn dcau_none(&self) -> bool {
        self.dcau_none
    }
    /// `SSCN ON`: this server is the TLS client on its data connections (the side that
    /// connects in a server-to-server transfer).
    pub fn sscn(&self) -> bool {
        self.sscn
    }

    // ----- reports from the driver -------------------------------------------------------

    /// Report the end of the control connection's TLS handshake for [`Action::StartTls`]:
    /// the client certificate's subject, or `None` when it failed (the driver logs why; the
    /// session then closes: the connection is neither clear nor protected any more).
    pub fn handle_tls_established(&mut self, result: Option<TlsEstablished>) -> Result<(), Error> {
        if !matches!(self.pending, Pending::Tls) {
            return Err(Error::UnexpectedReport);
        }
        self.pending = Pending::Idle;
        match result {
            Some(t) => {
                self.tls = Some(t);
                self.run_queue();
            }
            None => {
                self.closing = true;
                self.queue.clear();
            }
        }
        Ok(())
    }

    /// Report on [`Action::LoginFailed`]: the 530 goes out now; with `close` (the client's
    /// address is refused from now on) a 421 follows and the session closes.
    pub fn handle_login_verdict(&mut self, close: bool) -> Result<(), Error> {
        if !matches!(self.pending, Pending::Login) {
            return Err(Error::UnexpectedReport);
        }
        self.pending = Pending::Idle;
        self.reply(r(530, "Login incorrect."));
        if close {
            self.close_with(r(
                421,
                "Too many failed logins from your address, try again later.",
            ));
        } else if self.failures >= self.config.max_login_failures {
            self.close_with(r(421, "Too many failed login attempts, closing."));
        }
        self.run_queue();
        Ok(())
    }

    /// Report the listener addresses for [`Action::OpenPassive`] (or why none could be
    /// opened).
    pub fn handle_passive_opened(
        &mut self,
        result: Result<Vec<SocketAddr>, super::PassiveError>,
    ) -> Result<(), Error> {
        let Pending::Passive(kind) = self.pending else {
            return Err(Error::UnexpectedReport);
        };
        self.pending = Pending::Idle;
        let fail = |m: &str| Reply::new(425, format!("Can't open passive connection: {m}"));
        let reply = match result {
            Err(e) => fail(&e.to_string()),
            Ok(addrs) => {
                let v4: Vec<SocketAddrV4> = addrs
                    .iter()
                    .filter_map(|a| match canonical(a.ip()) {
                        IpAddr::V4(ip) => Some(SocketAddrV4::new(ip, a.port())),
                        IpAddr::V6(_) => None,
                    })
                    .collect();
                match kind {
                    PassiveKind::Pasv => match v4.first() {
                        Some(a) => pasv_reply(*a),
                        None => fail("no IPv4 listener"),
                    },
                    PassiveKind::Epsv => match addrs.first() {
                        Some(a) => epsv_reply(a.port()),
                        None => fail("no listener"),
                    },
                    PassiveKind::Spas if !v4.is_empty() => spas_reply(&v4),
                    PassiveKind::Spas => fail("no IPv4 listener"),
                }
            }
        };
        if reply.is_completion() {
            self.data = Some(DataEndpoint::Passive);
        }
        self.reply(reply);
        self.run_queue();
        Ok(())
    }

    /// Report the outcome of a file-system action.
    pub fn handle_fs_result(&mut self, result: Result<FsOutcome, FsError>) -> Result<(), Error> {
        let Pending::Fs(op) = std::mem::replace(&mut self.pending, Pending::Idle) else {
            return Err(Error::UnexpectedReport);
        };
        let reply = match result {
            Err(e) => e.reply(),
            Ok(out) => self.fs_success(op, out),
        };
        self.reply(reply);
        self.run_queue();
        Ok(())
    }

    fn fs_success(&mut self, op: FsOp, out: FsOutcome) -> Reply {
        let internal = || r(451, "Local error in processing (unexpected result).");
        match (op, out) {
            (FsOp::Cwd(p), FsOutcome::Done) => {
                self.cwd = p;
                r(250, "Directory successfully changed.")
            }
            (FsOp::Mkd(p), FsOutcome::Done) => Reply::new(257, format!("{} created.", p.quoted())),
            (FsOp::Rmd, FsOutcome::Done) => r(250, "Remove directory operation successful."),
            (FsOp::Dele, FsOutcome::Done) => r(250, "Delete operation successful."),
            (FsOp::Rnfr(p), FsOutcome::Done) => {
                self.rnfr = Some(p);
                r(350, "Ready for RNTO.")
            }
            (FsOp::Rename, FsOutcome::Done) => r(250, "Rename successful."),
            (FsOp::Chmod, FsOutcome::Done) => r(200, "SITE CHMOD command ok."),
            (FsOp::Size, FsOutcome::Size(n)) => Reply::new(213, n.to_string()),
            (FsOp::Mdtm, FsOutcome::Modified(t)) => Reply::new(213, format_time(t)),
            (FsOp::Mfmt(p), FsOutcome::Modified(t)) => {
                Reply::new(213, format!("Modify={}; {p}", format_time_exact(t)))
            }
            (FsOp::Mlst(p), FsOutcome::Facts(f)) => Reply::multi(
                250,
                [
                    format!("Listing {p}"),
                    format!(" {}", f.format(&self.mlst_facts)),
                    "End".to_string(),
                ],
            ),
            (FsOp::Stat(p), FsOutcome::Lines(lines)) => {
                let mut v = Vec::with_capacity(lines.len() + 2);
                v.push(format!("Status of {p}:"));
                v.extend(lines);
                v.push("End of status".to_string());
                Reply {
                    code: 213,
                    lines: v,
                }
            }
            (FsOp::Cksm, FsOutcome::Checksum(c)) => Reply::new(213, c),
            _ => internal(),
        }
    }

    /// Report that a transfer's data connection is up and data is about to flow (150/125).
    pub fn handle_transfer_started(&mut self, start: TransferStart) -> Result<(), Error> {
        let Pending::Transfer {
            started, unique, ..
        } = &mut self.pending
        else {
            return Err(Error::UnexpectedReport);
        };
        if *started {
            return Err(Error::UnexpectedReport);
        }
        *started = true;
        let unique = *unique;
        let reply = match (&start.name, unique, start.reused) {
            (Some(n), true, _) => Reply::new(150, format!("FILE: {n}")),
            (_, _, true) => r(125, "Data connection already open; transfer starting."),
            _ => match start.size {
                Some(n) => Reply::new(150, format!("Opening data connection ({n} bytes).")),
                None => r(150, "Opening data connection."),
            },
        };
        self.reply(reply);
        Ok(())
    }

    /// Queue a 111 range marker or 112 perf marker during a started transfer.
    pub fn handle_marker(&mut self, marker: Marker<'_>) -> Result<(), Error> {
        if !matches!(self.pending, Pending::Transfer { started: true, .. }) {
            return Err(Error::UnexpectedReport);
        }
        let reply = match marker {
            Marker::Range(r) => range_marker_reply(r),
            Marker::Perf(p) => p.to_reply(),
        };
        self.reply(reply);
        Ok(())
    }

    /// Report the end of a transfer (or its failure, possibly before it started).
    pub fn handle_transfer_done(
        &mut self,
        result: Result<TransferDone, TransferError>,
    ) -> Result<(), Error> {
        let Pending::Transfer { started, abort, .. } = self.pending else {
            return Err(Error::UnexpectedReport);
        };
        self.pending = Pending::Idle;
        match result {
            Ok(_) => {
                if !started {
                    self.reply(r(150, "Opening data connection."));
                }
                self.reply(r(226, "Transfer complete."));
            }
            Err(e) => {
                let reply = match e {
                    TransferError::Fs(fs) if !started => fs.reply(),
                    TransferError::Fs(fs) => match fs.kind {
                        FsErrorKind::StorageFull | FsErrorKind::QuotaExceeded => fs.reply(),
                        _ => r(451, "Requested action aborted: local error in processing."),
                    },
                    TransferError::CannotOpenData(m) if m.starts_with("TLS:") => Reply::new(
                        425,
                        format!("Can't open data connection: {}.", m.trim_end_matches('.')),
                    ),
                    TransferError::CannotOpenData(_) => r(425, "Can't open data connection."),
                    TransferError::ConnectionClosed(_) | TransferError::BadData(_) => {
                        r(426, "Connection closed; transfer aborted.")
                    }
                    TransferError::Aborted => r(426, "Transfer aborted."),
                    TransferError::Local(_) => {
                        r(451, "Requested action aborted: local error in processing.")
                    }
                };
                self.reply(reply);
            }
        }
        if abort {
            self.reply(r(226, "ABOR command successful."));
        }
        if self.mode != TransferMode::Extended {
            // Stream-mode data connections are single use.
            self.data = None;
        }
        self.run_queue();
        Ok(())
    }

    fn abort_transfer(&mut self) {
        if let Pending::Transfer { abort, .. } = &mut self.pending {
            if !*abort {
                *abort = true;
                self.actions.push_back(Action::Abort);
            }
        }
    }

    // ----- dispatch ----------------------------------------------------------------------

    fn reply(&mut self, reply: Reply) {
        self.replies.push_back(reply);
    }

    fn act(&mut self, a: Action, p: Pending) {
        self.actions.push_back(a);
        self.pending = p;
    }

    fn logged_in(&self) -> bool {
        matches!(self.login, Login::LoggedIn(_))
    }

    fn read_only(&self) -> bool {
        matches!(&self.login, Login::LoggedIn(u) if u.read_only)
    }

    fn dispatch(&mut self, input: Input) {
        // RFC 3659 REST and RNFR state live for exactly one following command.
        let rest = self.rest.take();
        let allo = self.allo.take();
        let rnfr = self.rnfr.take();
        let cmd = match input {
            Input::Overlong => return self.reply(r(500, "Command line too long.")),
            Input::Bad(e) => {
                let text = match &e {
                    ParseError::Empty | ParseError::Unrecognised { .. } => {
                        "Unknown command.".to_string()
                    }
                    ParseError::NotImplemented { .. } => "Command not implemented.".to_string(),
                    ParseError::BadArguments { reason, .. } => {
                        format!("Syntax error in parameters or arguments: {reason}.")
                    }
                };
                return self.reply(Reply::new(e.reply_code(), text));
            }
            Input::Command(c) => c,
        };
        let verb = cmd.verb();
        if self.config.disabled.contains(&verb) {
            return self.reply(r(502, "Command not implemented."));
        }
        let pre_login_ok = PRE_LOGIN.contains(&verb) || matches!(cmd, Command::Opts(Opts::Utf8(_)));
        if !self.logged_in() && !pre_login_ok {
            return self.reply(r(530, "Please login with USER and PASS."));
        }
        let writes = matches!(
            cmd,
            Command::Stor(_)
                | Command::Appe(_)
                | Command::Stou(_)
                | Command::Esto { .. }
                | Command::Dele(_)
                | Command::Mkd(_)
                | Command::Rmd(_)
                | Command::Rnfr(_)
                | Command::Rnto(_)
                | Command::Site(SiteCommand::Chmod { .. })
                | Command::Mfmt { .. }
        );
        if writes && self.read_only() {
            return self.reply(r(550, "Permission denied."));
        }
        self.command(cmd, rest, allo, rnfr);
    }

    fn command(
        &mut self,
        cmd: Command,
        rest: Option<Restart>,
        allo: Option<u64>,
        rnfr: Option<VirtualPath>,
    ) {
        let f = self.config.features.clone();
        match cmd {
            Command::User(u) => self.user_cmd(u),
            Command::Pass(p) => self.pass_cmd(&p),
            Command::Acct(_) => self.reply(r(202, "ACCT command superfluous.")),
            Command::Quit => self.close_with(r(221, "Goodbye.")),
            Command::Rein => self.rein(),
            Command::Noop => self.reply(r(200, "NOOP ok.")),
            Command::Syst => {
                let s = self.config.system.clone();
                self.reply(r(215, &s))
            }
            Command::Feat => {
                let mut lines = vec!["Features:".to_string()];
                if self.config.tls.offered {
                    lines.extend([" AUTH TLS", " PBSZ", " PROT", " SSCN"].map(String::from));
                }
                lines.extend(f.feat_lines(&self.mlst_facts));
                lines.push("End".to_string());
                self.reply(Reply { code: 211, lines })
            }
            Command::Help(_) => self.help(),
            Command::Stat(None) => {
                let st = self.status_reply();
                self.reply(st)
            }
            Command::Stat(Some(p)) => {
                let p = self.cwd.join(&p);
                self.act(Action::Stat(p.clone()), Pending::Fs(FsOp::Stat(p)))
            }
            Command::Opts(o) => self.opts(o, &f),
            Command::Pwd => {
                let q = self.cwd.quoted();
                self.reply(Reply::new(257, format!("{q} is the current directory.")))
            }
            Command::Cwd(p) => {
                let p = self.cwd.join(&p);
                self.act(Action::Cwd(p.clone()), Pending::Fs(FsOp::Cwd(p)))
            }
            Command::Cdup => {
                self.cwd = self.cwd.parent();
                self.reply(r(200, "Directory successfully changed."))
            }
            Command::Mkd(p) => {
                let p = self.cwd.join(&p);
                self.act(Action::Mkd(p.clone()), Pending::Fs(FsOp::Mkd(p)))
            }
            Command::Rmd(p) => {
                let p = self.cwd.join(&p);
                self.act(Action::Rmd(p), Pending::Fs(FsOp::Rmd))
            }
            Command::Dele(p) => {
                let p = self.cwd.join(&p);
                self.act(Action::Dele(p), Pending::Fs(FsOp::Dele))
            }
            Command::Rnfr(p) => {
                let p = self.cwd.join(&p);
                self.act(Action::Rnfr(p.clone()), Pending::Fs(FsOp::Rnfr(p)))
            }
            Command::Rnto(p) => match rnfr {
                None => self.reply(r(503, "RNFR required first.")),
                Some(from) => {
                    let to = self.cwd.join(&p);
                    self.act(Action::Rename { from, to }, Pending::Fs(FsOp::Rename))
                }
            },
            Command::Size(p) if f.size => {
                let path = self.cwd.join(&p);
                self.act(Action::Size { path, ty: self.ty }, Pending::Fs(FsOp::Size))
            }
            Command::Mdtm(p) if f.mdtm => {
                let p = self.cwd.join(&p);
                self.act(Action::Mdtm(p), Pending::Fs(FsOp::Mdtm))
            }
            Command::Mfmt { modified, path } if f.mfmt => {
                let p = self.cwd.join(&path);
                self.act(
                    Action::Mfmt { path: p, modified },
                    Pending::Fs(FsOp::Mfmt(path)),
                )
            }
            Command::Mlst(p) if f.mlst => {
                let p = self.cwd.join(p.as_deref().unwrap_or(""));
                self.act(Action::Mlst(p.clone()), Pending::Fs(FsOp::Mlst(p)))
            }
            Command::Mlsd(p) if f.mlst => {
                let args = ListArgs {
                    options: None,
                    path: p,
                };
                self.list(args, ListKind::Mlsd)
            }
            Command::List(a) => self.list(a, ListKind::List),
            Command::Nlst(a) => self.list(a, ListKind::Nlst),
            Command::Type(t) => match t {
                TransferType::Ascii(super::command::FormatControl::NonPrint) => {
                    self.ty = t;
                    self.reply(r(200, "Switching to ASCII mode."))
                }
                TransferType::Image | TransferType::Local(8) => {
                    self.ty = TransferType::Image;
                    self.reply(r(200, "Switching to Binary mode."))
                }
                _ => self.reply(r(504, "Command not implemented for that parameter.")),
            },
            Command::Mode(m) => {
                let ok = match m {
                    TransferMode::Stream => true,
                    TransferMode::Extended => f.mode_e,
                    TransferMode::Deflate => f.mode_z,
                    TransferMode::Block | TransferMode::Compressed => false,
                };
                if ok {
                    if m != self.mode && self.data.is_some() && m == TransferMode::Stream {
                        // Cached MODE E connections cannot carry stream mode.
                        self.data = None;
                        self.actions.push_back(Action::ClosePassive);
                    }
                    self.mode = m;
                    let letter = match m {
                        TransferMode::Stream => "S",
                        TransferMode::Extended => "E",
                        _ => "Z",
                    };
                    self.reply(Reply::new(200, format!("Mode set to {letter}.")))
                } else {
                    self.reply(r(504, "Command not implemented for that parameter."))
                }
            }
            Command::Stru(Structure::File) => {
                self.stru = Structure::File;
                self.reply(r(200, "Structure set to F."))
            }
            Command::Stru(_) => self.reply(r(504, "Command not implemented for that parameter.")),
            Command::Pasv | Command::Port(_) | Command::Spas | Command::Spor(_)
                if self.epsv_all =>
            {
                self.reply(r(501, "Only EPSV is allowed after EPSV ALL."))
            }
            Command::Eprt(_) if self.epsv_all => {
                self.reply(r(501, "Only EPSV is allowed after EPSV ALL."))
            }
            Command::Pasv => {
                if canonical(self.peer.ip()).is_ipv6() {
                    self.reply(r(425, "PASV needs IPv4; use EPSV."))
                } else {
                    self.act(
                        Action::OpenPassive(PassiveKind::Pasv),
                        Pending::Passive(PassiveKind::Pasv),
                    )
                }
            }
            Command::Epsv(arg) if f.epsv => self.epsv(arg),
            Command::Port(a) => self.active(vec![SocketAddr::V4(a)], "PORT"),
            Command::Eprt(a) if f.epsv => {
                if canonical(a.ip()).is_ipv4() != canonical(self.peer.ip()).is_ipv4() {
                    let fam = if canonical(self.peer.ip()).is_ipv4() {
                        "(1)"
                    } else {
                        "(2)"
                    };
                    self.reply(Reply::new(
                        522,
                        format!("Network protocol not supported, use {fam}"),
                    ))
                } else {
                    self.active(vec![a], "EPRT")
                }
            }
            Command::Spas if f.spas => self.act(
                Action::OpenPassive(PassiveKind::Spas),
                Pending::Passive(PassiveKind::Spas),
            ),
            Command::Spor(addrs) if f.spor => self.active(addrs, "SPOR"),
            Command::Rest(Restart::Offset(n)) if f.rest_stream => {
                self.rest = Some(Restart::Offset(n));
                self.reply(Reply::new(350, format!("Restart position accepted ({n}).")))
            }
            Command::Rest(Restart::Ranges(set)) if f.mode_e => {
                self.rest = Some(Restart::Ranges(set));
                self.reply(r(350, "Restart Marker OK."))
            }
            Command::Rest(Restart::Ranges(_)) => {
                self.reply(r(501, "Range lists need MODE E support."))
            }
            Command::Retr(p) => {
                let path = self.cwd.join(&p);
                self.retr(path, rest, None);
            }
            Command::Eret {
                offset,
                length,
                path,
            } if f.eret => {
                let path = self.cwd.join(&path);
                self.retr(path, Some(Restart::Offset(offset)), Some(length));
            }
            Command::Stor(p) => {
                let path = self.cwd.join(&p);
                self.stor(path, StoreKind::Replace, rest, allo)
            }
            Command::Appe(p) => {
                let path = self.cwd.join(&p);
                self.stor(path, StoreKind::Append, None, allo)
            }
            Command::Stou(p) => {
                let path = self.cwd.join(p.as_deref().unwrap_or(""));
                self.stor(path, StoreKind::Unique, None, allo)
            }
            Command::Esto { offset, path } if f.esto => {
                let path = self.cwd.join(&path);
                self.stor(
                    path,
                    StoreKind::Adjusted,
                    Some(Restart::Offset(offset)),
                    allo,
                )
            }
            Command::Abor => self.reply(r(226, "No transfer to ABOR.")),
            Command::Allo { size, .. } => {
                // Kept for the next command only, like REST.
                self.allo = Some(size);
                self.reply(Reply::new(
                    200,
                    format!("ALLO {size} bytes: reserved with the next store."),
                ))
            }
            Command::Site(s) => self.site(s, &f),
            Command::Auth(mechanism) => self.auth_tls(&mechanism),
            Command::Pbsz(_) if self.tls.is_none() => self.reply(r(
                503,
                "PBSZ needs a TLS control connection (AUTH TLS first).",
            )),
            Command::Pbsz(_) => {
                // RFC 4217 §9: TLS has no protection buffer; the size is always 0.
                self.pbsz = true;
                self.reply(r(200, "PBSZ=0"))
            }
            Command::Prot(_) if !self.pbsz => {
                let why = if self.tls.is_none() {
                    "PROT needs AUTH TLS and PBSZ 0 first."
                } else {
                    "PROT needs PBSZ 0 first."
                };
                self.reply(r(503, why))
            }
            Command::Prot(ProtLevel::Clear) => {
                self.prot = ProtLevel::Clear;
                self.reply(r(200, "Protection level set to Clear."))
            }
            Command::Prot(ProtLevel::Private) => {
                self.prot = ProtLevel::Private;
                self.reply(r(200, "Protection level set to Private."))
            }
            Command::Prot(_) => self.reply(r(536, "Only PROT C and PROT P are supported.")),
            Command::Ccc => self.reply(r(
                534,
                "CCC refused: the control connection stays protected.",
            )),
            Command::Sscn(_) if self.tls.is_none() => self.reply(r(
                503,
                "SSCN needs a TLS control connection (AUTH TLS first).",
            )),
            Command::Sscn(on) => {
                if let Some(on) = on {
                    self.sscn = on;
                }
                self.reply(r(
                    200,
                    if self.sscn {
                        "SSCN:CLIENT METHOD"
                    } else {
                        "SSCN:SERVER METHOD"
                    },
                ))
            }
            Command::Dcau(Dcau::None) if f.dcau => {
                self.dcau_none = true;
                self.reply(r(200, "DCAU N ok."))
            }
            Command::Dcau(Dcau::SelfAuth) if f.dcau && self.tls.is_some() => {
                // Under TLS the default: data connections resume this control session.
                self.dcau_none = false;
                self.reply(r(200, "DCAU A ok."))
            }
            Command::Dcau(_) if f.dcau => {
                self.reply(r(504, "Only DCAU N (and A under TLS) is supported."))
            }
            Command::Lang(tag) if !f.languages.is_empty() => match tag {
                None => {
                    self.lang = None;
                    let l = f.languages.first().cloned().unwrap_or_default();
                    self.reply(Reply::new(200, format!("Language set to {l}.")))
                }
                Some(t) => {
                    let found = f.languages.iter().find(|l| {
                        let l = l.as_str();
                        t.eq_ignore_ascii_case(l)
                            || t.get(..l.len()).is_some_and(|p| p.eq_ignore_ascii_case(l))
                                && t.as_bytes().get(l.len()) == Some(&b'-')
                    });
                    match found.cloned() {
                        Some(l) => {
                            self.lang = Some(l.clone());
                            self.reply(Reply::new(200, format!("Language set to {l}.")))
                        }
                        None => self.reply(r(504, "Unsupported language.")),
                    }
                }
            },
            Command::Sbuf(n) if f.sbuf => {
                self.retr_buf = Some(n);
                self.stor_buf = Some(n);
                self.reply(r(200, "SBUF command successful."))
            }
            Command::Cksm {
                algorithm,
                offset,
                length,
                path,
            } if !f.checksums.is_empty() => {
                if f.checksums
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(&algorithm))
                {
                    let path = self.cwd.join(&path);
                    self.act(
                        Action::Cksm {
                            path,
                            algorithm,
                            offset,
                            length,
                        },
                        Pending::Fs(FsOp::Cksm),
                    )
                } else {
                    self.reply(r(504, "Unsupported checksum algorithm."))
                }
            }
            Command::Scks { algorithm, value } if !f.checksums.is_empty() => {
                if algorithm
                    .as_ref()
                    .is_some_and(|a| !f.checksums.iter().any(|c| c.eq_ignore_ascii_case(a)))
                {
                    self.reply(r(504, "Unsupported checksum algorithm."))
                } else {
                    self.scks = Some((algorithm, value));
                    self.reply(r(200, "SCKS command successful."))
                }
            }
            Command::Trev { event, interval } if f.markers => {
                match event {
                    TrevEvent::Perf => self.perf_interval = interval,
                    TrevEvent::Restart => self.restart_interval = interval,
                }
                self.reply(r(200, "TREV command successful."))
            }
            // Recognised commands whose feature is switched off.
            Command::Size(_)
            | Command::Mdtm(_)
            | Command::Mfmt { .. }
            | Command::Mlst(_)
            | Command::Mlsd(_)
            | Command::Epsv(_)
            | Command::Eprt(_)
            | Command::Spas
            | Command::Spor(_)
            | Command::Rest(_)
            | Command::Eret { .. }
            | Command::Esto { .. }
            | Command::Dcau(_)
            | Command::Lang(_)
            | Command::Sbuf(_)
            | Command::Cksm { .. }
            | Command::Scks { .. }
            | Command::Trev { .. } => self.reply(r(502, "Command not implemented.")),
        }
    }

    fn auth_tls(&mut self, mechanism: &str) {
        if !matches!(mechanism, "TLS" | "TLS-C" | "SSL") {
            return self.reply(r(504, "AUTH mechanism not supported (use AUTH TLS)."));
        }
        if !self.config.tls.offered {
            return self.reply(r(431, "TLS is not available on this server."));
        }
        if self.tls.is_some() {
            return self.reply(r(503, "The control connection is already protected."));
        }
        // RFC 2228: a new security exchange forgets the login and the protection state.
        // Whatever the client sent behind the AUTH came in clear: drop it.
        self.reset_transfer_state();
        self.reset_protection();
        self.queue.clear();
        self.lines = LineReader::with_max_line(self.config.max_line);
        self.reply(r(234, "AUTH TLS ok: start the TLS handshake."));
        self.act(Action::StartTls, Pending::Tls);
    }

    fn reset_protection(&mut self) {
        self.pbsz = false;
        self.prot = ProtLevel::Clear;
        self.dcau_none = false;
        self.sscn = false;
    }

    /// Under [`TlsRules::required`] a transfer needs `PROT P` (521 otherwise).
    fn protection_ok(&mut self) -> bool {
        if self.config.tls.required && self.prot != ProtLevel::Private {
            self.reply(r(
                521,
                "Data connections must be protected here: send PBSZ 0 and PROT P first.",
            ));
            return false;
        }
        true
    }

    fn user_cmd(&mut self, user: String) {
        self.reset_transfer_state();
        if let Some(text) = self.auth.refusal() {
            return self.close_with(Reply::new(421, text));
        }
        let subject = self.tls.as_ref().and_then(|t| t.subject.clone());
        if let Some(subject) = &subject {
            if let Some(local) = self.auth.map_subject(subject, &user) {
                let text = format!("Certificate accepted for {local}; any password will do.");
                self.login = Login::NeedPass {
                    user: local,
                    anonymous: false,
                    certificate: true,
                };
                return self.reply(Reply::new(331, text));
            }
        }
        if user == ":globus-mapping:" {
            return self.reply(r(
                530,
                if subject.is_some() {
                    "Certificate subject not in the grid-mapfile."
                } else {
                    "Certificate login needs a client certificate over TLS (AUTH TLS)."
                },
            ));
        }
        let anonymous = self.config.anonymous
            && (user.eq_ignore_ascii_case("anonymous") || user.eq_ignore_ascii_case("ftp"));
        if self.tls.is_none() && self.config.tls.required {
            return self.reply(r(530, "TLS required: send AUTH TLS before logging in."));
        }
        if self.tls.is_none() && self.config.tls.passwords && !anonymous {
            return self.reply(r(
                530,
                "Password logins need TLS here: send AUTH TLS first, so the password is not sent in clear.",
            ));
        }
        self.login = Login::NeedPass {
            user,
            anonymous,
            certificate: false,
        };
        if anonymous {
            self.reply(r(
                331,
                "Anonymous login ok, send your e-mail address as password.",
            ))
        } else {
            self.reply(r(331, "Please specify the password."))
        }
    }

    fn pass_cmd(&mut self, password: &str) {
        match std::mem::replace(&mut self.login, Login::Fresh) {
            Login::Fresh => self.reply(r(503, "Login with USER first.")),
            l @ Login::LoggedIn(_) => {
                self.login = l;
                self.reply(r(230, "Already logged in."))
            }
            Login::NeedPass {
                anonymous: true, ..
            } => {
                self.login = Login::LoggedIn(UserInfo {
                    name: "anonymous".to_string(),
                    anonymous: true,
                    read_only: !self.config.anonymous_write,
                });
                self.cwd = VirtualPath::root();
                self.reply(r(230, "Login successful."))
            }
            Login::NeedPass {
                user,
                certificate: true,
                ..
            } => {
                self.login = Login::LoggedIn(UserInfo {
                    name: user,
                    anonymous: false,
                    read_only: false,
                });
                self.cwd = VirtualPath::root();
                self.failures = 0;
                self.reply(r(230, "Login successful (certificate)."))
            }
            Login::NeedPass {
                user,
                anonymous: false,
                ..
            } => match self.auth.authenticate(&user, password) {
                AuthOutcome::Granted { read_only } => {
                    self.login = Login::LoggedIn(UserInfo {
                        name: user,
                        anonymous: false,
                        read_only,
                    });
                    self.cwd = VirtualPath::root();
                    self.failures = 0;
                    if self.config.report_logins {
                        let user = self.user().map(|u| u.name.clone()).unwrap_or_default();
                        self.actions.push_back(Action::LoggedIn { user });
                    }
                    self.reply(r(230, "Login successful."))
                }
                AuthOutcome::Denied if self.config.report_logins => {
                    self.failures += 1;
                    self.act(Action::LoginFailed { user }, Pending::Login);
                }
                AuthOutcome::Denied => {
                    self.failures += 1;
                    self.reply(r(530, "Login incorrect."));
                    if self.failures >= self.config.max_login_failures {
                        self.close_with(r(421, "Too many failed login attempts, closing."));
                    }
                }
            },
        }
    }

    fn reset_transfer_state(&mut self) {
        if self.data.is_some() {
            // Listeners and cached MODE E connections were set up under the old login's
            // data policy.
            self.actions.push_back(Action::ClosePassive);
        }
        self.login = Login::Fresh;
        self.ty = TransferType::Ascii(super::command::FormatControl::NonPrint);
        self.mode = TransferMode::Stream;
        self.stru = Structure::File;
        self.rest = None;
        self.allo = None;
        self.rnfr = None;
        self.retr_opts = RetrOpts::default();
        self.retr_buf = None;
        self.stor_buf = None;
        self.perf_interval = 0;
        self.restart_interval = 0;
        self.cwd = VirtualPath::root();
        self.data = None;
        self.epsv_all = false;
        self.mlst_facts = FactSet::default();
        self.scks = None;
    }

    fn rein(&mut self) {
        // The control connection stays protected; the data protection starts over.
        self.reset_transfer_state();
        self.reset_protection();
        self.lang = None;
        self.utf8 = self.config.features.utf8;
        self.reply(r(220, "Service ready for new user."))
    }

    fn help(&mut self) {
        let mut lines = vec!["The following commands are recognized.".to_string()];
        let verbs: Vec<&str> = Verb::ALL
            .iter()
            .filter(|v| !self.config.disabled.contains(v))
            .map(|v| v.as_str())
            .collect();
        for chunk in verbs.chunks(8) {
            lines.push(format!(" {}", chunk.join(" ")));
        }
        lines.push("Help OK.".to_string());
        self.reply(Reply { code: 214, lines })
    }

    fn status_reply(&self) -> Reply {
        let who = match &self.login {
            Login::LoggedIn(u) => format!(" Logged in as {}", u.name),
            _ => " Not logged in".to_string(),
        };
        let ty = match self.ty {
            TransferType::Ascii(_) => "ASCII",
            _ => "BINARY",
        };
        let mode = match self.mode {
            TransferMode::Stream => "S",
            TransferMode::Extended => "E",
            TransferMode::Deflate => "Z",
            TransferMode::Block => "B",
            TransferMode::Compressed => "C",
        };
        let mut lines = vec![
            "gridos FTP server status:".to_string(),
            format!(" Connected from {}", self.peer.ip()),
            who,
            format!(" TYPE: {ty}, MODE: {mode}, STRU: F"),
        ];
        if self.tls.is_some() {
            let prot = if self.prot == ProtLevel::Private {
                "Private"
            } else {
                "Clear"
            };
            lines.push(format!(" Control connection: TLS; data protection: {prot}"));
        }
        if matches!(self.pending, Pending::Transfer { .. }) {
            lines.push(" A transfer is in progress".to_string());
        }
        lines.push("End of status".to_string());
        Reply { code: 211, lines }
    }

    fn opts(&mut self, o: Opts, f: &Features) {
        match o {
            Opts::Utf8(on) if f.utf8 => {
                self.utf8 = on;
                self.reply(r(
                    200,
                    if on {
                        "UTF8 set to on."
                    } else {
                        "UTF8 set to off."
                    },
                ))
            }
            Opts::Mlst(set) if f.mlst => {
                self.mlst_facts = set;
                self.reply(Reply::new(
                    200,
                    format!("MLST OPTS {}", set.selected_string()),
                ))
            }
            Opts::Retr(ro) if f.parallelism => {
                if let Some(Parallelism {
                    starting,
                    minimum,
                    maximum,
                }) = ro.parallelism
                {
                    let max = self.config.max_parallelism;
                    if starting > max || minimum > max || maximum > max || minimum > maximum {
                        return self.reply(r(501, "Parallelism out of range."));
                    }
                }
                if ro.parallelism.is_some() {
                    self.retr_opts.parallelism = ro.parallelism;
                }
                if ro.stripe_layout.is_some() {
                    self.retr_opts.stripe_layout = ro.stripe_layout;
                }
                if ro.block_size.is_some() {
                    self.retr_opts.block_size = ro.block_size;
                }
                self.reply(r(200, "OPTS Command Successful."))
            }
            _ => self.reply(r(501, "Option not understood.")),
        }
    }

    fn site(&mut self, s: SiteCommand, f: &Features) {
        match s {
            SiteCommand::Chmod { mode, path } if f.site_chmod => {
                let path = self.cwd.join(&path);
                self.act(Action::Chmod { path, mode }, Pending::Fs(FsOp::Chmod))
            }
            SiteCommand::Sbuf(n) if f.sbuf => {
                self.retr_buf = Some(n);
                self.stor_buf = Some(n);
                self.reply(r(200, "SITE SBUF command successful."))
            }
            SiteCommand::RetrBufSize(n) if f.sbuf => {
                self.retr_buf = Some(n);
                self.reply(r(200, "SITE RETRBUFSIZE command successful."))
            }
            SiteCommand::StorBufSize(n) if f.sbuf => {
                self.stor_buf = Some(n);
                self.reply(r(200, "SITE STORBUFSIZE command successful."))
            }
            SiteCommand::Help => {
                let mut cmds = Vec::new();
                if f.site_chmod {
                    cmds.push("CHMOD");
                }
                if f.sbuf {
                    cmds.extend(["SBUF", "BUFSIZE", "RETRBUFSIZE", "STORBUFSIZE"]);
                }
                cmds.push("HELP");
                self.reply(Reply::new(
                    214,
                    format!("SITE commands: {}", cmds.join(" ")),
                ))
            }
            SiteCommand::Other { .. } => self.reply(r(500, "Unknown SITE command.")),
            _ => self.reply(r(502, "Command not implemented.")),
        }
    }

    fn epsv(&mut self, arg: EpsvArg) {
        let v4 = canonical(self.peer.ip()).is_ipv4();
        match arg {
            EpsvArg::All => {
                self.epsv_all = true;
                self.reply(r(200, "EPSV ALL ok."))
            }
            EpsvArg::Protocol(p) if (p == 1 && v4) || (p == 2 && !v4) => self.act(
                Action::OpenPassive(PassiveKind::Epsv),
                Pending::Passive(PassiveKind::Epsv),
            ),
            EpsvArg::Protocol(_) => {
                let fam = if v4 { "(1)" } else { "(2)" };
                self.reply(Reply::new(
                    522,
                    format!("Network protocol not supported, use {fam}"),
                ))
            }
            EpsvArg::Any => self.act(
                Action::OpenPassive(PassiveKind::Epsv),
                Pending::Passive(PassiveKind::Epsv),
            ),
        }
    }

    fn active(&mut self, addrs: Vec<SocketAddr>, verb: &str) {
        let policy = self.data_policy();
        if let Some(refusal) = addrs.iter().find_map(|a| policy.check_active(*a).err()) {
            // (PORT and friends need a login: the session always has a user here.)
            let why = match refusal {
                DataRefusal::ForeignHost(_) => {
                    "data address must be the client's (third-party transfers need a \
                     non-anonymous login or a trusted host)"
                }
                DataRefusal::PrivilegedPort(_) => "data port must be 1024 or above",
            };
            return self.reply(Reply::new(504, format!("{verb} refused: {why}.")));
        }
        // Any listener and any cached MODE E connections belong to the old endpoint.
        if self.data.is_some() {
            self.actions.push_back(Action::ClosePassive);
        }
        self.data = Some(DataEndpoint::Active(addrs));
        self.reply(Reply::new(200, format!("{verb} command successful.")))
    }

    fn params(&self, retr: bool) -> TransferParams {
        TransferParams {
            ty: self.ty,
            mode: self.mode,
            stru: self.stru,
            retr_opts: self.retr_opts,
            buffer_size: if retr { self.retr_buf } else { self.stor_buf },
            perf_interval: self.perf_interval,
            restart_interval: self.restart_interval,
        }
    }

    fn data_or_425(&mut self) -> Option<DataEndpoint> {
        let d = self.data.clone();
        if d.is_none() {
            self.reply(r(425, "Use PORT, PASV, EPRT or EPSV first."));
        }
        d
    }

    fn transfer(&mut self, a: Action, unique: bool) {
        self.act(
            a,
            Pending::Transfer {
                started: false,
                abort: false,
                unique,
            },
        );
    }

    fn retr(&mut self, path: VirtualPath, rest: Option<Restart>, length: Option<u64>) {
        if !self.protection_ok() {
            return;
        }
        let Some(data) = self.data_or_425() else {
            return;
        };
        let (offset, restart) = split_restart(rest);
        let req = RetrRequest {
            path,
            offset,
            length,
            restart,
            data,
            params: self.params(true),
        };
        self.transfer(Action::Retr(req), false)
    }

    fn stor(
        &mut self,
        path: VirtualPath,
        kind: StoreKind,
        rest: Option<Restart>,
        allocate: Option<u64>,
    ) {
        if !self.protection_ok() {
            return;
        }
        let Some(data) = self.data_or_425() else {
            return;
        };
        let (offset, restart) = split_restart(rest);
        let req = StorRequest {
            path,
            kind,
            offset,
            restart,
            expected_checksum: self.scks.take(),
            allocate,
            data,
            params: self.params(false),
        };
        self.transfer(Action::Stor(req), kind == StoreKind::Unique)
    }

    fn list(&mut self, args: ListArgs, kind: ListKind) {
        if !self.protection_ok() {
            return;
        }
        let Some(data) = self.data_or_425() else {
            return;
        };
        let path = self.cwd.join(args.path.as_deref().unwrap_or(""));
        let req = ListRequest {
            path,
            kind,
            options: args.options,
            facts: self.mlst_facts,
            data,
            params: self.params(true),
        };
        self.transfer(Action::List(req), false)
    }
}

/// A marker to send during a transfer ([`Session::handle_marker`]).
#[derive(Debug, Clone, Copy)]
pub enum Marker<'a> {
    /// `111 Range Marker …`
    Range(&'a RangeSet),
    /// `112-Perf Marker …`
    Perf(&'a PerfMarker),
}

/// A REST value as a transfer request carries it: a stream offset, or a range list to resume.
fn split_restart(rest: Option<Restart>) -> (u64, Option<RangeSet>) {
    match rest {
        Some(Restart::Offset(n)) => (n, None),
        Some(Restart::Ranges(set)) => (0, Some(set)),
        None => (0, None),
    }
}

#[cfg(test)]
mod tests {
    //! The FTPS rules of the session, without sockets.
    use super::*;

    const SUBJECT: &str = "/C=XX/O=Grid/CN=Jane Doe";

    struct Users;

    impl Authenticator for Users {
        fn authenticate(&mut self, user: &str, password: &str) -> AuthOutcome {
            if user == "alice" && password == "secret" {
                AuthOutcome::Granted { read_only: false }
            } else {
                AuthOutcome::Denied
            }
        }

        fn map_subject(&mut self, subject: &str, wanted: &str) -> Option<String> {
            let ok = subject == SUBJECT && matches!(wanted, ":globus-mapping:" | "jdoe");
            ok.then(|| "jdoe".to_string())
        }
    }

    fn session(tls: TlsRules) -> Session {
        let config = SessionConfig {
            anonymous: true,
            features: Features::gridftp(),
            tls,
            ..SessionConfig::default()
        };
        let mut s = Session::new(config, Box::new(Users), "192.0.2.10:40000".parse().unwrap());
        assert_eq!(s.poll_reply().unwrap().code, 220);
        s
    }

    fn offered() -> TlsRules {
        TlsRules {
            offered: true,
            ..TlsRules::default()
        }
    }

    fn replies(s: &mut Session, input: &str) -> Vec<Reply> {
        s.handle_input(input.as_bytes());
        std::iter::from_fn(|| s.poll_reply()).collect()
    }

    fn codes(s: &mut Session, input: &str) -> Vec<u16> {
        replies(s, input).iter().map(|r| r.code).collect()
    }

    /// AUTH TLS, then the driver's report of a handshake with `subject`.
    fn secure(s: &mut Session, subject: Option<&str>) {
        assert_eq!(codes(s, "AUTH TLS\r\n"), [234]);
        assert_eq!(s.poll_action(), Some(Action::StartTls));
        assert!(!s.wants_input());
        s.handle_tls_established(Some(TlsEstablished {
            subject: subject.map(String::from),
        }))
        .unwrap();
        assert!(s.tls().is_some() && s.wants_input());
    }

    fn feat(s: &mut Session) -> Vec<String> {
        replies(s, "FEAT\r\n").remove(0).lines
    }

    #[test]
    fn auth_answers_by_what_is_configured() {
        let mut off = session(TlsRules::default());
        assert_eq!(codes(&mut off, "AUTH TLS\r\nAUTH GSSAPI\r\n"), [431, 504]);
        assert!(!feat(&mut off).iter().any(|l| l.contains("AUTH")));
        assert_eq!(off.poll_action(), None);

        let mut s = session(offered());
        let f = feat(&mut s);
        for l in [" AUTH TLS", " PBSZ", " PROT"] {
            assert!(f.iter().any(|x| x == l), "{f:?}");
        }
        assert_eq!(codes(&mut s, "AUTH KERBEROS_V4\r\n"), [504]);
        // AUTH SSL is the legacy name; TLS it is.
        assert_eq!(codes(&mut s, "AUTH SSL\r\n"), [234]);
        assert_eq!(s.poll_action(), Some(Action::StartTls));
        s.handle_tls_established(Some(TlsEstablished::default()))
            .unwrap();
        assert_eq!(codes(&mut s, "AUTH TLS\r\n"), [503]);
        assert_eq!(
            s.handle_tls_established(Some(TlsEstablished::default())),
            Err(Error::UnexpectedReport)
        );
    }

    #[test]
    fn commands_sent_in_clear_behind_auth_are_dropped() {
        let mut s = session(offered());
        // One read: the USER/PASS after AUTH came in clear and must not run afterwards.
        assert_eq!(
            codes(&mut s, "AUTH TLS\r\nUSER alice\r\nPASS secret\r\n"),
            [234]
        );
        assert_eq!(s.poll_action(), Some(Action::StartTls));
        s.handle_input(b"NOOP\r\n");
        s.handle_tls_established(Some(TlsEstablished::default()))
            .unwrap();
        assert!(s.poll_reply().is_none());
        assert!(s.user().is_none());
        assert_eq!(codes(&mut s, "NOOP\r\n"), [200]);
    }

    /// With `report_logins` the 530 waits for the driver's verdict, later commands wait
    /// behind it, a success is reported, and a refusal at USER closes with 421.
    #[test]
    fn reported_logins_wait_for_the_verdict() {
        let config = SessionConfig {
            report_logins: true,
            ..SessionConfig::default()
        };
        let mut s = Session::new(config, Box::new(Users), "192.0.2.10:40000".parse().unwrap());
        assert_eq!(s.poll_reply().unwrap().code, 220);
        assert_eq!(codes(&mut s, "USER alice\r\nPASS wrong\r\nNOOP\r\n"), [331]);
        assert_eq!(
            s.poll_action(),
            Some(Action::LoginFailed {
                user: "alice".into()
            })
        );
        assert!(s.poll_reply().is_none());
        s.handle_login_verdict(false).unwrap();
        let got: Vec<u16> = std::iter::from_fn(|| s.poll_reply())
            .map(|r| r.code)
            .collect();
        assert_eq!(got, [530, 200]);
        assert_eq!(s.handle_login_verdict(false), Err(Error::UnexpectedReport));
        assert_eq!(codes(&mut s, "USER alice\r\nPASS secret\r\n"), [331, 230]);
        assert_eq!(
            s.poll_action(),
            Some(Action::LoggedIn {
                user: "alice".into()
            })
        );
        // A ban decided by the driver: 530, then 421 and the end.
        let config = SessionConfig {
            report_logins: true,
            ..SessionConfig::default()
        };
        let mut s = Session::new(config, Box::new(Users), "192.0.2.10:40000".parse().unwrap());
        s.poll_reply();
        codes(&mut s, "USER bob\r\nPASS x\r\n");
        s.poll_action();
        s.handle_login_verdict(true).unwrap();
        let got: Vec<u16> = std::iter::from_fn(|| s.poll_reply())
            .map(|r| r.code)
            .collect();
        assert_eq!(got, [530, 421]);
        assert!(s.is_closing());

        struct Banned;
        impl Authenticator for Banned {
            fn authenticate(&mut self, _: &str, _: &str) -> AuthOutcome {
                AuthOutcome::Granted { read_only: false }
            }
            fn refusal(&mut self) -> Option<String> {
                Some("Banned.".into())
            }
        }
        let mut s = Session::new(
            SessionConfig::default(),
            Box::new(Banned),
            "192.0.2.10:40000".parse().unwrap(),
        );
        s.poll_reply();
        assert_eq!(codes(&mut s, "USER alice\r\nPASS x\r\n"), [421]);
        assert!(s.is_closing() && s.user().is_none());
    }

    /// Thousands of tiny commands in one read make at most `REPLY_BATCH` replies before
    /// the driver takes them; the rest run, in order, as it does.
    #[test]
    fn replies_are_made_in_batches() {
        let mut s = session(offered());
        s.handle_input("NOOP\r\n".repeat(1000).as_bytes());
        assert!(!s.wants_input(), "framed commands wait");
        assert_eq!(s.replies.len(), REPLY_BATCH);
        let mut n = 0;
        while let Some(r) = s.poll_reply() {
            assert_eq!(r.code, 200);
            n += 1;
            assert!(s.replies.len() <= REPLY_BATCH);
        }
        assert_eq!(n, 1000);
        assert!(s.wants_input());
    }

    /// A begun line is visible to the driver (the command timeout), an ended one is not.
    #[test]
    fn a_begun_line_is_reported() {
        let mut s = session(offered());
        assert!(!s.in_line());
        assert_eq!(codes(&mut s, "NO"), Vec::<u16>::new());
        assert!(s.in_line());
        assert_eq!(codes(&mut s, "OP\r\n"), [200]);
        assert!(!s.in_line());
        s.handle_command_timeout();
        assert_eq!(s.poll_reply().unwrap().code, 421);
        assert!(s.is_closing());
    }

    #[test]
    fn a_failed_handshake_closes_the_session() {
        let mut s = session(offered());
        assert_eq!(codes(&mut s, "AUTH TLS\r\n"), [234]);
        assert_eq!(s.poll_action(), Some(Action::StartTls));
        s.handle_tls_established(None).unwrap();
        assert!(s.is_closing());
        assert!(s.poll_reply().is_none());
    }

    #[test]
    fn pbsz_prot_ccc_order() {
        let mut s = session(offered());
        assert_eq!(
            codes(&mut s, "PBSZ 0\r\nPROT P\r\nCCC\r\n"),
            [503, 503, 534]
        );
        secure(&mut s, None);
        assert_eq!(codes(&mut s, "PROT P\r\n"), [503]);
        let r = replies(&mut s, "PBSZ 1024\r\n");
        assert_eq!((r[0].code, r[0].lines[0].as_str()), (200, "PBSZ=0"));
        assert_eq!(
            codes(&mut s, "PROT S\r\nPROT E\r\nPROT P\r\n"),
            [536, 536, 200]
        );
        assert_eq!(s.protection(), ProtLevel::Private);
        assert_eq!(codes(&mut s, "PROT C\r\n"), [200]);
        assert_eq!(s.protection(), ProtLevel::Clear);
        assert_eq!(codes(&mut s, "CCC\r\n"), [534]);
    }

    #[test]
    fn rein_keeps_tls_and_resets_protection() {
        let mut s = session(offered());
        secure(&mut s, None);
        assert_eq!(
            codes(
                &mut s,
                "USER alice\r\nPASS secret\r\nPBSZ 0\r\nPROT P\r\nDCAU N\r\nSSCN ON\r\n"
            ),
            [331, 230, 200, 200, 200, 200]
        );
        assert!(s.dcau_none() && s.sscn());
        assert_eq!(codes(&mut s, "REIN\r\n"), [220]);
        assert!(s.tls().is_some());
        assert_eq!(s.protection(), ProtLevel::Clear);
        assert!(!s.dcau_none() && !s.sscn());
        assert_eq!(codes(&mut s, "PROT P\r\n"), [503]);
    }

    #[test]
    fn sscn_as_proftpd() {
        let mut s = session(offered());
        assert_eq!(
            codes(&mut s, "USER anonymous\r\nPASS x\r\nSSCN ON\r\n"),
            [331, 230, 503]
        );
        secure(&mut s, None);
        assert_eq!(codes(&mut s, "USER anonymous\r\nPASS x\r\n"), [331, 230]);
        let text = |s: &mut Session, c: &str| replies(s, c).remove(0).lines.remove(0);
        assert_eq!(text(&mut s, "SSCN\r\n"), "SSCN:SERVER METHOD");
        assert_eq!(text(&mut s, "SSCN ON\r\n"), "SSCN:CLIENT METHOD");
        assert_eq!(text(&mut s, "SSCN\r\n"), "SSCN:CLIENT METHOD");
        assert_eq!(text(&mut s, "SSCN OFF\r\n"), "SSCN:SERVER METHOD");
        assert!(!s.sscn());
        assert_eq!(codes(&mut s, "SSCN MAYBE\r\n"), [501]);
    }

    #[test]
    fn passwords_need_tls_but_anonymous_does_not() {
        let rules = TlsRules {
            offered: true,
            passwords: true,
            required: false,
        };
        let mut s = session(rules);
        let r = replies(&mut s, "USER alice\r\n");
        assert_eq!(r[0].code, 530);
        assert!(r[0].lines[0].contains("AUTH TLS"), "{r:?}");
        assert_eq!(codes(&mut s, "PASS secret\r\n"), [503]);
        assert_eq!(codes(&mut s, "USER anonymous\r\nPASS a@b\r\n"), [331, 230]);
        secure(&mut s, None);
        assert_eq!(codes(&mut s, "USER alice\r\nPASS secret\r\n"), [331, 230]);
    }

    #[test]
    fn required_wants_tls_for_everyone_and_prot_p_for_data() {
        let rules = TlsRules {
            offered: true,
            passwords: true,
            required: true,
        };
        let mut s = session(rules);
        let r = replies(&mut s, "USER anonymous\r\n");
        assert_eq!(r[0].code, 530);
        assert!(r[0].lines[0].contains("AUTH TLS"), "{r:?}");
        secure(&mut s, None);
        assert_eq!(
            codes(
                &mut s,
                "USER alice\r\nPASS secret\r\nPORT 192,0,2,10,20,0\r\n"
            ),
            [331, 230, 200]
        );
        for c in [
            "RETR f",
            "STOR f",
            "APPE f",
            "STOU",
            "LIST",
            "NLST",
            "MLSD",
            "ERET P 0 1 f",
        ] {
            let r = replies(&mut s, &format!("{c}\r\n"));
            assert_eq!(r[0].code, 521, "{c}");
            assert!(r[0].lines[0].contains("PROT P"), "{r:?}");
        }
        assert_eq!(s.poll_action(), None);
        assert_eq!(
            codes(&mut s, "PBSZ 0\r\nPROT C\r\nRETR f\r\n"),
            [200, 200, 521]
        );
        assert_eq!(codes(&mut s, "PROT P\r\nRETR f\r\n"), [200]);
        assert!(matches!(s.poll_action(), Some(Action::Retr(_))));
    }

    #[test]
    fn implicit_sessions_start_protected() {
        let config = SessionConfig {
            tls: TlsRules {
                offered: true,
                passwords: true,
                required: true,
            },
            ..SessionConfig::default()
        };
        let mut s = Session::new_protected(
            config,
            Box::new(Users),
            "192.0.2.10:40000".parse().unwrap(),
            TlsEstablished::default(),
        );
        assert_eq!(s.poll_reply().unwrap().code, 220);
        assert_eq!(
            codes(
                &mut s,
                "AUTH TLS\r\nUSER alice\r\nPASS secret\r\nPBSZ 0\r\nPROT P\r\n"
            ),
            [503, 331, 230, 200, 200]
        );
    }

    #[test]
    fn certificate_logins() {
        let mut s = session(TlsRules {
            offered: true,
            passwords: true,
            required: false,
        });
        // Without TLS there is no certificate.
        assert_eq!(codes(&mut s, "USER :globus-mapping:\r\n"), [530]);
        secure(&mut s, Some(SUBJECT));
        assert_eq!(
            codes(&mut s, "USER :globus-mapping:\r\nPASS anything\r\n"),
            [331, 230]
        );
        assert_eq!(s.user().unwrap().name, "jdoe");
        assert_eq!(codes(&mut s, "USER jdoe\r\nPASS\r\n"), [331, 230]);
        assert_eq!(s.user().unwrap().name, "jdoe");
        // A user the subject may not be: the password decides.
        assert_eq!(codes(&mut s, "USER alice\r\nPASS wrong\r\n"), [331, 530]);
        assert_eq!(codes(&mut s, "USER alice\r\nPASS secret\r\n"), [331, 230]);

        let mut other = session(offered());
        secure(&mut other, Some("/C=XX/O=Grid/CN=Eve"));
        let r = replies(&mut other, "USER :globus-mapping:\r\n");
        assert_eq!(r[0].code, 530);
        assert!(r[0].lines[0].contains("grid-mapfile"), "{r:?}");
        assert!(other.user().is_none());
    }

    #[test]
    fn dcau_is_recorded() {
        let mut s = session(offered());
        assert_eq!(
            codes(&mut s, "USER anonymous\r\nPASS x\r\nDCAU A\r\nDCAU N\r\n"),
            [331, 230, 504, 200]
        );
        assert!(s.dcau_none());
        secure(&mut s, None);
        assert!(!s.dcau_none());
        assert_eq!(
            codes(&mut s, "USER anonymous\r\nPASS x\r\nDCAU N\r\nDCAU A\r\n"),
            [331, 230, 200, 200]
        );
        assert!(!s.dcau_none());
    }

    #[test]
    fn tls_failures_of_data_connections_are_named() {
        let mut s = session(offered());
        assert_eq!(
            codes(
                &mut s,
                "USER anonymous\r\nPASS x\r\nPORT 192,0,2,10,20,0\r\nRETR f\r\n"
            ),
            [331, 230, 200]
        );
        assert!(matches!(s.poll_action(), Some(Action::Retr(_))));
        s.handle_transfer_done(Err(TransferError::CannotOpenData(
            "TLS: data connection did not resume the control connection's TLS session".into(),
        )))
        .unwrap();
        let r = s.poll_reply().unwrap();
        assert_eq!(r.code, 425);
        assert!(r.lines[0].contains("did not resume"), "{r:?}");
    }
}
