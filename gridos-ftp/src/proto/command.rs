//! Commands: the typed [`Command`] enum and its parser.
//!
//! [`Command::parse`] takes one line (with or without its CRLF/LF, Telnet sequences allowed)
//! and returns a typed command or a [`ParseError`] telling which reply to send:
//! unknown verb → 500, recognised verb that this crate never implements → 502, bad arguments
//! → 501. Whether a recognised command is *enabled* is the session's decision (502/504 per
//! its [`Features`](super::Features)).
//!
//! Rules:
//! - Verbs are case-insensitive; the argument is everything after the first space, kept
//!   exactly for path arguments (spaces included, leading and trailing), trimmed for others.
//! - Arguments must be UTF-8 (RFC 2640: path names on the wire are UTF-8, and the session
//!   always runs as if `OPTS UTF8 ON`). Non-UTF-8 bytes, NUL, CR or LF inside an argument are
//!   rejected with 501; nothing panics whatever the bytes.
//! - `XCWD XCUP XMKD XRMD XPWD` (RFC 775) are accepted as aliases.
//!
//! [`Command`]'s `Display` is the wire form without CRLF (`PASS` included: log
//! [`Command::verb`] rather than the command).

use std::borrow::Cow;
use std::fmt;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::SystemTime;

use super::addr::{
    format_eprt, format_host_port, parse_any_host_port, parse_eprt, parse_host_port,
};
use super::error::ParseError;
use super::facts::{FactSet, format_time_exact, parse_time};
use super::line::strip_telnet;
use super::markers::RangeSet;

macro_rules! verbs {
    ($($v:ident => $s:literal),* $(,)?) => {
        /// The verbs this crate knows, one per [`Command`] variant.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Verb {
            $(
                #[doc = concat!("`", $s, "`")]
                $v,
            )*
        }

        impl Verb {
            /// Every verb.
            pub const ALL: &'static [Verb] = &[$(Verb::$v,)*];

            /// The verb, upper-case.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Verb::$v => $s,)*
                }
            }

            /// Look a verb up, case-insensitively (aliases such as `XPWD` included).
            pub fn lookup(name: &str) -> Option<Verb> {
                let up = name.to_ascii_uppercase();
                match up.as_str() {
                    $($s => Some(Verb::$v),)*
                    "XCWD" => Some(Verb::Cwd),
                    "XCUP" => Some(Verb::Cdup),
                    "XMKD" => Some(Verb::Mkd),
                    "XRMD" => Some(Verb::Rmd),
                    "XPWD" => Some(Verb::Pwd),
                    _ => None,
                }
            }
        }
    };
}

verbs! {
    User => "USER", Pass => "PASS", Acct => "ACCT", Quit => "QUIT", Rein => "REIN",
    Noop => "NOOP", Syst => "SYST", Stat => "STAT", Help => "HELP", Feat => "FEAT",
    Opts => "OPTS", Pwd => "PWD", Cwd => "CWD", Cdup => "CDUP", Mkd => "MKD", Rmd => "RMD",
    Dele => "DELE", Rnfr => "RNFR", Rnto => "RNTO", List => "LIST", Nlst => "NLST",
    Mlsd => "MLSD", Mlst => "MLST", Size => "SIZE", Mdtm => "MDTM", Type => "TYPE",
    Mode => "MODE", Stru => "STRU", Pasv => "PASV", Epsv => "EPSV", Port => "PORT",
    Eprt => "EPRT", Rest => "REST", Retr => "RETR", Stor => "STOR", Appe => "APPE",
    Stou => "STOU", Abor => "ABOR", Allo => "ALLO", Site => "SITE", Auth => "AUTH",
    Pbsz => "PBSZ", Prot => "PROT", Dcau => "DCAU", Lang => "LANG", Sbuf => "SBUF",
    Spas => "SPAS", Spor => "SPOR", Eret => "ERET", Esto => "ESTO", Cksm => "CKSM",
    Scks => "SCKS", Trev => "TREV", Mfmt => "MFMT", Ccc => "CCC", Sscn => "SSCN",
}

/// Verbs that are recognised but never implemented here (reply 502).
const NOT_IMPLEMENTED: &[&str] = &["SMNT", "ADAT", "MIC", "CONF", "ENC", "HOST", "MFCT", "MFF"];

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Format control of TYPE A / TYPE E.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FormatControl {
    /// `N`, the default.
    NonPrint,
    /// `T`
    Telnet,
    /// `C`
    Carriage,
}

/// Representation type (`TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferType {
    /// `A [N|T|C]`
    Ascii(FormatControl),
    /// `E [N|T|C]`
    Ebcdic(FormatControl),
    /// `I`
    Image,
    /// `L n` (local byte size; `L 8` is the same as image).
    Local(u8),
}

/// Transfer mode (`MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferMode {
    /// `S`: stream, the default.
    Stream,
    /// `B`: RFC 959 block mode.
    Block,
    /// `C`: RFC 959 compressed mode.
    Compressed,
    /// `E`: GridFTP extended block mode (GFD.20).
    Extended,
    /// `Z`: deflate-compressed stream (GridFTP).
    Deflate,
}

/// File structure (`STRU`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Structure {
    /// `F`, the default and the only one servers implement.
    File,
    /// `R`
    Record,
    /// `P`
    Page,
}

/// Argument of `EPSV`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EpsvArg {
    /// No argument: same protocol as the control connection.
    Any,
    /// `EPSV ALL`: from now on only EPSV may set up data connections.
    All,
    /// `EPSV <n>`: network protocol 1 (IPv4) or 2 (IPv6); other numbers parse and get 522.
    Protocol(u16),
}

/// Argument of `REST`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Restart {
    /// A stream-mode byte offset (RFC 3659).
    Offset(u64),
    /// A GridFTP range list: the ranges the receiver already holds (GFD.20).
    Ranges(RangeSet),
}

/// Arguments of LIST and NLST: leading `-` options (`-la`) are separated from the path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ListArgs {
    /// Options such as `-la`, if the argument started with `-`.
    pub options: Option<String>,
    /// The path, if any.
    pub path: Option<String>,
}

/// `PROT` level (RFC 2228).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtLevel {
    /// `C`
    Clear,
    /// `S`
    Safe,
    /// `E`
    Confidential,
    /// `P`
    Private,
}

/// `DCAU` data channel authentication (GFD.20).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dcau {
    /// `N`: none.
    None,
    /// `A`: authenticate with the client's identity.
    SelfAuth,
    /// `S <subject>`: a given subject.
    Subject(String),
}

/// `OPTS RETR` parallelism: `Parallelism=starting,minimum,maximum;`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Parallelism {
    /// Streams to start with.
    pub starting: u32,
    /// Fewest streams.
    pub minimum: u32,
    /// Most streams.
    pub maximum: u32,
}

/// `OPTS RETR StripeLayout=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StripeLayout {
    /// `Partitioned`
    Partitioned,
    /// `Blocked`
    Blocked,
}

/// The keys of `OPTS RETR` (any subset, each at most once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RetrOpts {
    /// `Parallelism=n,n,n;`
    pub parallelism: Option<Parallelism>,
    /// `StripeLayout=Partitioned|Blocked;`
    pub stripe_layout: Option<StripeLayout>,
    /// `BlockSize=n;`
    pub block_size: Option<u64>,
}

/// The `OPTS` command (RFC 2389).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Opts {
    /// `OPTS UTF8 ON|OFF` (bare `OPTS UTF8` means ON).
    Utf8(bool),
    /// `OPTS MLST fact;fact;` (unknown facts dropped, RFC 3659 §7.9).
    Mlst(FactSet),
    /// `OPTS RETR key=value;…` (GridFTP).
    Retr(RetrOpts),
    /// Any other command name: the session answers 501.
    Other {
        /// The command name, upper-cased.
        command: String,
        /// The rest, verbatim.
        args: String,
    },
}

/// `SITE` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SiteCommand {
    /// `SITE CHMOD <octal> <path>`
    Chmod {
        /// Mode bits (≤ 0o7777).
        mode: u32,
        /// The path, verbatim.
        path: String,
    },
    /// `SITE SBUF n` / `SITE BUFSIZE n`: both directions (legacy GridFTP).
    Sbuf(u64),
    /// `SITE RETRBUFSIZE n` (legacy GridFTP).
    RetrBufSize(u64),
    /// `SITE STORBUFSIZE n` (legacy GridFTP).
    StorBufSize(u64),
    /// `SITE HELP`
    Help,
    /// Anything else: the session answers 500/502.
    Other {
        /// The subcommand, upper-cased.
        command: String,
        /// The rest, verbatim.
        args: String,
    },
}

/// `TREV` event names (GridFTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrevEvent {
    /// `PERF`: 112 performance markers.
    Perf,
    /// `RESTART`: 111 range markers.
    Restart,
}

/// A parsed control-connection command. Paths are verbatim (relative or absolute); the
/// session resolves them against its working directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Command {
    /// `USER name`
    User(String),
    /// `PASS [password]` (may be empty).
    Pass(String),
    /// `ACCT info`
    Acct(String),
    /// `QUIT`
    Quit,
    /// `REIN`
    Rein,
    /// `NOOP`
    Noop,
    /// `SYST`
    Syst,
    /// `STAT [path]`
    Stat(Option<String>),
    /// `HELP [topic]`
    Help(Option<String>),
    /// `FEAT`
    Feat,
    /// `OPTS …`
    Opts(Opts),
    /// `PWD` (or `XPWD`)
    Pwd,
    /// `CWD path`
    Cwd(String),
    /// `CDUP`
    Cdup,
    /// `MKD path`
    Mkd(String),
    /// `RMD path`
    Rmd(String),
    /// `DELE path`
    Dele(String),
    /// `RNFR path`
    Rnfr(String),
    /// `RNTO path`
    Rnto(String),
    /// `LIST [-opts] [path]`
    List(ListArgs),
    /// `NLST [-opts] [path]`
    Nlst(ListArgs),
    /// `MLSD [path]`
    Mlsd(Option<String>),
    /// `MLST [path]`
    Mlst(Option<String>),
    /// `SIZE path`
    Size(String),
    /// `MDTM path`
    Mdtm(String),
    /// `TYPE …`
    Type(TransferType),
    /// `MODE …`
    Mode(TransferMode),
    /// `STRU …`
    Stru(Structure),
    /// `PASV`
    Pasv,
    /// `EPSV [1|2|ALL]`
    Epsv(EpsvArg),
    /// `PORT h1,h2,h3,h4,p1,p2`
    Port(SocketAddrV4),
    /// `EPRT |af|addr|port|`
    Eprt(SocketAddr),
    /// `REST offset` or `REST a-b,c-d`
    Rest(Restart),
    /// `RETR path`
    Retr(String),
    /// `STOR path`
    Stor(String),
    /// `APPE path`
    Appe(String),
    /// `STOU [name]`
    Stou(Option<String>),
    /// `ABOR`
    Abor,
    /// `ALLO size [R record]`
    Allo {
        /// Bytes to reserve.
        size: u64,
        /// Record size, if given.
        record: Option<u64>,
    },
    /// `SITE …`
    Site(SiteCommand),
    /// `AUTH mechanism` (RFC 2228/4217: `TLS`, `SSL`; the mechanism upper-cased).
    Auth(String),
    /// `PBSZ n`
    Pbsz(u64),
    /// `PROT C|S|E|P`
    Prot(ProtLevel),
    /// `DCAU N|A|S subject`
    Dcau(Dcau),
    /// `CCC`: clear the control channel (RFC 4217 §6; servers may refuse it).
    Ccc,
    /// `SSCN [ON|OFF]`: whether this server is the TLS client on data connections (for
    /// server-to-server transfers); bare `SSCN` asks for the current setting.
    Sscn(Option<bool>),
    /// `LANG [tag]` (RFC 2640)
    Lang(Option<String>),
    /// `SBUF n`: data socket buffer size (GridFTP).
    Sbuf(u64),
    /// `SPAS`: striped passive (GridFTP).
    Spas,
    /// `SPOR hp hp …`: striped port (GridFTP).
    Spor(Vec<SocketAddr>),
    /// `ERET P offset length path`: partial retrieve (GridFTP).
    Eret {
        /// First byte.
        offset: u64,
        /// Number of bytes.
        length: u64,
        /// The path.
        path: String,
    },
    /// `ESTO A offset path`: adjusted store, data offsets shifted by `offset` (GridFTP).
    Esto {
        /// Added to every data offset.
        offset: u64,
        /// The path.
        path: String,
    },
    /// `CKSM alg offset length path` (length `-1` = to the end, here `None`).
    Cksm {
        /// Algorithm name, upper-cased (MD5, ADLER32, SHA1, SHA256, SHA512, CRC32C…).
        algorithm: String,
        /// First byte.
        offset: u64,
        /// Number of bytes, `None` for to the end.
        length: Option<u64>,
        /// The path.
        path: String,
    },
    /// `SCKS [alg] value`: expected checksum of the next upload (GridFTP).
    Scks {
        /// Algorithm, upper-cased, if given.
        algorithm: Option<String>,
        /// The checksum text.
        value: String,
    },
    /// `TREV PERF|RESTART seconds`: marker interval (GridFTP).
    Trev {
        /// Which markers.
        event: TrevEvent,
        /// Interval in seconds (0 = off).
        interval: u32,
    },
    /// `MFMT YYYYMMDDHHMMSS[.fff] path`: set the modification time (draft-somers-ftp-mfxx;
    /// the time is UTC, validated like RFC 3659 `time-val`).
    Mfmt {
        /// The new modification time.
        modified: SystemTime,
        /// The path, verbatim.
        path: String,
    },
}

fn bad(verb: Verb, reason: &'static str) -> ParseError {
    ParseError::BadArguments {
        verb: verb.as_str(),
        reason,
    }
}

/// Argument bytes → text, refusing non-UTF-8, NUL, CR and LF.
fn text(verb: Verb, arg: &[u8]) -> Result<&str, ParseError> {
    if arg.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n') {
        return Err(bad(verb, "NUL or line break in argument"));
    }
    std::str::from_utf8(arg).map_err(|_| bad(verb, "argument is not valid UTF-8"))
}

fn path(verb: Verb, arg: Option<&[u8]>) -> Result<String, ParseError> {
    match arg {
        Some(a) if !a.is_empty() => Ok(text(verb, a)?.to_string()),
        _ => Err(bad(verb, "path required")),
    }
}

fn opt_path(verb: Verb, arg: Option<&[u8]>) -> Result<Option<String>, ParseError> {
    match arg {
        Some(a) if !a.iter().all(u8::is_ascii_whitespace) => Ok(Some(text(verb, a)?.to_string())),
        _ => Ok(None),
    }
}

/// A trimmed optional word: `None` when absent or blank (any Unicode whitespace).
fn trimmed_opt(verb: Verb, arg: Option<&[u8]>) -> Result<Option<String>, ParseError> {
    let t = trimmed(verb, arg)?;
    Ok(if t.is_empty() {
        None
    } else {
        Some(t.to_string())
    })
}

fn trimmed(verb: Verb, arg: Option<&[u8]>) -> Result<&str, ParseError> {
    Ok(text(verb, arg.unwrap_or(b""))?.trim())
}

fn no_args(verb: Verb, arg: Option<&[u8]>, c: Command) -> Result<Command, ParseError> {
    if arg.is_some_and(|a| !a.iter().all(u8::is_ascii_whitespace)) {
        return Err(bad(verb, "takes no arguments"));
    }
    Ok(c)
}

fn number(verb: Verb, s: &str) -> Result<u64, ParseError> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(verb, "expected a decimal number"));
    }
    s.parse().map_err(|_| bad(verb, "number out of range"))
}

fn format_control(verb: Verb, s: Option<&str>) -> Result<FormatControl, ParseError> {
    match s.map(str::to_ascii_uppercase).as_deref() {
        None | Some("N") => Ok(FormatControl::NonPrint),
        Some("T") => Ok(FormatControl::Telnet),
        Some("C") => Ok(FormatControl::Carriage),
        _ => Err(bad(verb, "unknown format control")),
    }
}

fn parse_type(arg: &str) -> Result<TransferType, ParseError> {
    let v = Verb::Type;
    let mut it = arg.split_ascii_whitespace();
    let t = it.next().ok_or(bad(v, "type required"))?;
    let second = it.next();
    if it.next().is_some() {
        return Err(bad(v, "too many arguments"));
    }
    // Accept "TYPE AN"/"TYPE L8" spelled without the space too.
    let (t, second) = match (t.len(), second) {
        (2, None) => (t.get(..1).unwrap_or(""), t.get(1..)),
        _ => (t, second),
    };
    match t.to_ascii_uppercase().as_str() {
        "A" => Ok(TransferType::Ascii(format_control(v, second)?)),
        "E" => Ok(TransferType::Ebcdic(format_control(v, second)?)),
        "I" if second.is_none() => Ok(TransferType::Image),
        "L" => {
            let n = number(v, second.ok_or(bad(v, "byte size required"))?)?;
            match u8::try_from(n) {
                Ok(n) if n > 0 => Ok(TransferType::Local(n)),
                _ => Err(bad(v, "bad byte size")),
            }
        }
        _ => Err(bad(v, "unknown type")),
    }
}

/// A subcommand or option name: ASCII letters, digits, `-`, `_`, `.`.
fn is_word(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn parse_opts(arg: &str) -> Result<Opts, ParseError> {
    let v = Verb::Opts;
    let arg = arg.trim();
    if arg.is_empty() {
        return Err(bad(v, "command name required"));
    }
    let (cmd, rest) = match arg.split_once(' ') {
        Some((c, r)) => (c, r.trim()),
        None => (arg, ""),
    };
    if !is_word(cmd) {
        return Err(bad(v, "bad command name"));
    }
    let cmd = cmd.to_ascii_uppercase();
    match cmd.as_str() {
        "UTF8" | "UTF-8" => match rest.to_ascii_uppercase().as_str() {
            "" | "ON" => Ok(Opts::Utf8(true)),
            "OFF" => Ok(Opts::Utf8(false)),
            _ => Err(bad(v, "UTF8 takes ON or OFF")),
        },
        "MLST" => Ok(Opts::Mlst(FactSet::from_opts(rest))),
        "RETR" => parse_retr_opts(rest).map(Opts::Retr),
        _ => Ok(Opts::Other {
            command: cmd,
            args: rest.to_string(),
        }),
    }
}

fn parse_retr_opts(s: &str) -> Result<RetrOpts, ParseError> {
    let v = Verb::Opts;
    let mut o = RetrOpts::default();
    let mut any = false;
    for item in s.split(';').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, val) = item
            .split_once('=')
            .ok_or(bad(v, "OPTS RETR expects key=value;"))?;
        let val = val.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "parallelism" if o.parallelism.is_none() => {
                let nums: Vec<&str> = val.split(',').map(str::trim).collect();
                let [a, b, c] = nums.as_slice() else {
                    return Err(bad(v, "Parallelism takes three numbers"));
                };
                let n = |s: &str| -> Result<u32, ParseError> {
                    let x = number(v, s)?;
                    match u32::try_from(x) {
                        Ok(x) if x > 0 => Ok(x),
                        _ => Err(bad(v, "Parallelism out of range")),
                    }
                };
                o.parallelism = Some(Parallelism {
                    starting: n(a)?,
                    minimum: n(b)?,
                    maximum: n(c)?,
                });
            }
            "stripelayout" if o.stripe_layout.is_none() => {
                o.stripe_layout = Some(match val.to_ascii_lowercase().as_str() {
                    "partitioned" => StripeLayout::Partitioned,
                    "blocked" => StripeLayout::Blocked,
                    _ => return Err(bad(v, "unknown StripeLayout")),
                });
            }
            "blocksize" if o.block_size.is_none() => {
                let n = number(v, val)?;
                if n == 0 {
                    return Err(bad(v, "BlockSize must be positive"));
                }
                o.block_size = Some(n);
            }
            _ => return Err(bad(v, "unknown or repeated OPTS RETR key")),
        }
        any = true;
    }
    if !any {
        return Err(bad(v, "OPTS RETR needs at least one key"));
    }
    Ok(o)
}

fn parse_site(arg: &str) -> Result<SiteCommand, ParseError> {
    let v = Verb::Site;
    let arg = arg.trim_start_matches(' ');
    let (cmd, rest) = arg.split_once(' ').unwrap_or((arg, ""));
    if cmd.is_empty() {
        return Err(bad(v, "SITE subcommand required"));
    }
    if !is_word(cmd) {
        return Err(bad(v, "bad SITE subcommand"));
    }
    let cmd = cmd.to_ascii_uppercase();
    let size = |r: &str| number(v, r.trim());
    Ok(match cmd.as_str() {
        "CHMOD" => {
            let (mode, path) = rest.split_once(' ').ok_or(bad(v, "SITE CHMOD mode path"))?;
            if mode.is_empty()
                || mode.len() > 5
                || !mode.bytes().all(|b| (b'0'..=b'7').contains(&b))
            {
                return Err(bad(v, "SITE CHMOD mode must be octal"));
            }
            let mode = u32::from_str_radix(mode, 8).map_err(|_| bad(v, "bad mode"))?;
            if mode > 0o7777 || path.is_empty() {
                return Err(bad(v, "SITE CHMOD mode path"));
            }
            SiteCommand::Chmod {
                mode,
                path: path.to_string(),
            }
        }
        "SBUF" | "BUFSIZE" => SiteCommand::Sbuf(size(rest)?),
        "RETRBUFSIZE" => SiteCommand::RetrBufSize(size(rest)?),
        "STORBUFSIZE" => SiteCommand::StorBufSize(size(rest)?),
        "HELP" => SiteCommand::Help,
        _ => SiteCommand::Other {
            command: cmd,
            args: rest.to_string(),
        },
    })
}

/// Split `a b c rest-of-path`: `n` whitespace-separated words, then the rest verbatim.
fn words_then_path(verb: Verb, s: &str, n: usize) -> Result<(Vec<&str>, &str), ParseError> {
    let mut words = Vec::with_capacity(n);
    let mut rest = s.trim_start_matches(' ');
    for _ in 0..n {
        let (w, r) = rest.split_once(' ').ok_or(bad(verb, "missing arguments"))?;
        if w.is_empty() {
            return Err(bad(verb, "missing arguments"));
        }
        words.push(w);
        rest = r;
    }
    if rest.is_empty() {
        return Err(bad(verb, "path required"));
    }
    Ok((words, rest))
}

fn parse_list(verb: Verb, arg: Option<&[u8]>) -> Result<ListArgs, ParseError> {
    let Some(a) = opt_path(verb, arg)? else {
        return Ok(ListArgs::default());
    };
    if a.starts_with('-') {
        let (opts, rest) = match a.split_once(' ') {
            Some((o, r)) => (o, r),
            None => (a.as_str(), ""),
        };
        let path = if rest.trim().is_empty() {
            None
        } else {
            Some(rest.to_string())
        };
        Ok(ListArgs {
            options: Some(opts.to_string()),
            path,
        })
    } else {
        Ok(ListArgs {
            options: None,
            path: Some(a),
        })
    }
}

impl Command {
    /// Parse one command line. See the [module docs](self) for the rules.
    ///
    /// ```
    /// use gridos_ftp::proto::{Command, ParseError, Restart};
    /// assert_eq!(Command::parse(b"retr my file.txt\r\n"), Ok(Command::Retr("my file.txt".into())));
    /// assert_eq!(Command::parse(b"REST 0-1000,2000-3000").unwrap().verb().as_str(), "REST");
    /// assert_eq!(Command::parse(b"BOGUS").unwrap_err().reply_code(), 500);
    /// assert_eq!(Command::parse(b"TYPE Q").unwrap_err().reply_code(), 501);
    /// ```
    pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
        let line: Cow<'_, [u8]> = if line.contains(&0xFF) || line.last() == Some(&b'\n') {
            Cow::Owned(strip_telnet(line))
        } else {
            Cow::Borrowed(line)
        };
        let mut line: &[u8] = &line;
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        let (verb_b, arg) = match line.iter().position(|&b| b == b' ') {
            Some(i) => (line.get(..i).unwrap_or(b""), line.get(i + 1..)),
            None => (line, None),
        };
        if verb_b.is_empty() {
            return Err(if line.iter().all(u8::is_ascii_whitespace) {
                ParseError::Empty
            } else {
                ParseError::Unrecognised {
                    verb: String::new(),
                }
            });
        }
        let verb = match std::str::from_utf8(verb_b).ok().and_then(Verb::lookup) {
            Some(v) => v,
            None => {
                let up = String::from_utf8_lossy(verb_b).to_ascii_uppercase();
                if let Some(v) = NOT_IMPLEMENTED.iter().find(|v| **v == up) {
                    return Err(ParseError::NotImplemented { verb: v });
                }
                return Err(ParseError::Unrecognised {
                    verb: up.chars().take(16).collect(),
                });
            }
        };
        Self::parse_args(verb, arg)
    }

    fn parse_args(v: Verb, arg: Option<&[u8]>) -> Result<Command, ParseError> {
        use Command as C;
        Ok(match v {
            Verb::User => {
                let u = trimmed(v, arg)?;
                if u.is_empty() {
                    return Err(bad(v, "user name required"));
                }
                C::User(u.to_string())
            }
            Verb::Pass => C::Pass(text(v, arg.unwrap_or(b""))?.to_string()),
            Verb::Acct => {
                let a = trimmed(v, arg)?;
                if a.is_empty() {
                    return Err(bad(v, "account required"));
                }
                C::Acct(a.to_string())
            }
            Verb::Quit => no_args(v, arg, C::Quit)?,
            Verb::Rein => no_args(v, arg, C::Rein)?,
            Verb::Noop => no_args(v, arg, C::Noop)?,
            Verb::Syst => no_args(v, arg, C::Syst)?,
            Verb::Feat => no_args(v, arg, C::Feat)?,
            Verb::Pwd => no_args(v, arg, C::Pwd)?,
            Verb::Cdup => no_args(v, arg, C::Cdup)?,
            Verb::Pasv => no_args(v, arg, C::Pasv)?,
            Verb::Abor => no_args(v, arg, C::Abor)?,
            Verb::Spas => no_args(v, arg, C::Spas)?,
            Verb::Stat => C::Stat(opt_path(v, arg)?),
            Verb::Help => C::Help(trimmed_opt(v, arg)?),
            Verb::Opts => C::Opts(parse_opts(trimmed(v, arg)?)?),
            Verb::Cwd => C::Cwd(path(v, arg)?),
            Verb::Mkd => C::Mkd(path(v, arg)?),
            Verb::Rmd => C::Rmd(path(v, arg)?),
            Verb::Dele => C::Dele(path(v, arg)?),
            Verb::Rnfr => C::Rnfr(path(v, arg)?),
            Verb::Rnto => C::Rnto(path(v, arg)?),
            Verb::List => C::List(parse_list(v, arg)?),
            Verb::Nlst => C::Nlst(parse_list(v, arg)?),
            Verb::Mlsd => C::Mlsd(opt_path(v, arg)?),
            Verb::Mlst => C::Mlst(opt_path(v, arg)?),
            Verb::Size => C::Size(path(v, arg)?),
            Verb::Mdtm => C::Mdtm(path(v, arg)?),
            Verb::Retr => C::Retr(path(v, arg)?),
            Verb::Stor => C::Stor(path(v, arg)?),
            Verb::Appe => C::Appe(path(v, arg)?),
            Verb::Stou => C::Stou(opt_path(v, arg)?),
            Verb::Type => C::Type(parse_type(trimmed(v, arg)?)?),
            Verb::Mode => C::Mode(match trimmed(v, arg)?.to_ascii_uppercase().as_str() {
                "S" => TransferMode::Stream,
                "B" => TransferMode::Block,
                "C" => TransferMode::Compressed,
                "E" => TransferMode::Extended,
                "Z" => TransferMode::Deflate,
                _ => return Err(bad(v, "unknown mode")),
            }),
            Verb::Stru => C::Stru(match trimmed(v, arg)?.to_ascii_uppercase().as_str() {
                "F" => Structure::File,
                "R" => Structure::Record,
                "P" => Structure::Page,
                _ => return Err(bad(v, "unknown structure")),
            }),
            Verb::Epsv => {
                let a = trimmed(v, arg)?;
                C::Epsv(if a.is_empty() {
                    EpsvArg::Any
                } else if a.eq_ignore_ascii_case("ALL") {
                    EpsvArg::All
                } else {
                    let n = number(v, a)?;
                    EpsvArg::Protocol(u16::try_from(n).map_err(|_| bad(v, "bad protocol"))?)
                })
            }
            Verb::Port => C::Port(
                parse_host_port(trimmed(v, arg)?)
                    .map_err(|_| bad(v, "expected h1,h2,h3,h4,p1,p2"))?,
            ),
            Verb::Eprt => C::Eprt(
                parse_eprt(trimmed(v, arg)?).map_err(|_| bad(v, "expected |af|addr|port|"))?,
            ),
            Verb::Rest => {
                let a = trimmed(v, arg)?;
                if a.is_empty() {
                    return Err(bad(v, "offset required"));
                }
                if a.bytes().all(|b| b.is_ascii_digit()) {
                    C::Rest(Restart::Offset(number(v, a)?))
                } else {
                    C::Rest(Restart::Ranges(
                        RangeSet::parse(a)
                            .map_err(|_| bad(v, "expected an offset or a range list"))?,
                    ))
                }
            }
            Verb::Allo => {
                let a = trimmed(v, arg)?;
                let w: Vec<&str> = a.split_ascii_whitespace().collect();
                match w.as_slice() {
                    [n] => C::Allo {
                        size: number(v, n)?,
                        record: None,
                    },
                    [n, r, m] if r.eq_ignore_ascii_case("R") => C::Allo {
                        size: number(v, n)?,
                        record: Some(number(v, m)?),
                    },
                    _ => return Err(bad(v, "ALLO size [R record]")),
                }
            }
            Verb::Site => C::Site(parse_site(text(v, arg.unwrap_or(b""))?)?),
            Verb::Auth => {
                let a = trimmed(v, arg)?;
                if a.is_empty() {
                    return Err(bad(v, "mechanism required"));
                }
                C::Auth(a.to_ascii_uppercase())
            }
            Verb::Pbsz => C::Pbsz(number(v, trimmed(v, arg)?)?),
            Verb::Prot => C::Prot(match trimmed(v, arg)?.to_ascii_uppercase().as_str() {
                "C" => ProtLevel::Clear,
                "S" => ProtLevel::Safe,
                "E" => ProtLevel::Confidential,
                "P" => ProtLevel::Private,
                _ => return Err(bad(v, "PROT C|S|E|P")),
            }),
            Verb::Dcau => {
                let a = trimmed(v, arg)?;
                let (m, rest) = a.split_once(' ').unwrap_or((a, ""));
                let rest = rest.trim();
                C::Dcau(match (m.to_ascii_uppercase().as_str(), rest.is_empty()) {
                    ("N", true) => Dcau::None,
                    ("A", true) => Dcau::SelfAuth,
                    ("S", false) => Dcau::Subject(rest.to_string()),
                    _ => return Err(bad(v, "DCAU N|A|S subject")),
                })
            }
            Verb::Ccc => no_args(v, arg, C::Ccc)?,
            Verb::Sscn => C::Sscn(match trimmed(v, arg)?.to_ascii_uppercase().as_str() {
                "" => None,
                "ON" => Some(true),
                "OFF" => Some(false),
                _ => return Err(bad(v, "SSCN [ON|OFF]")),
            }),
            Verb::Lang => C::Lang(trimmed_opt(v, arg)?),
            Verb::Sbuf => C::Sbuf(number(v, trimmed(v, arg)?)?),
            Verb::Spor => {
                let a = trimmed(v, arg)?;
                let addrs = a
                    .split_ascii_whitespace()
                    .map(parse_any_host_port)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| bad(v, "expected host-port list"))?;
                if addrs.is_empty() {
                    return Err(bad(v, "expected host-port list"));
                }
                C::Spor(addrs)
            }
            Verb::Eret => {
                let (w, p) = words_then_path(v, text(v, arg.unwrap_or(b""))?, 3)?;
                match w.as_slice() {
                    [m, off, len] if m.eq_ignore_ascii_case("P") => {
                        let offset = number(v, off)?;
                        let length = number(v, len)?;
                        if offset.checked_add(length).is_none() {
                            return Err(bad(v, "offset + length overflows"));
                        }
                        C::Eret {
                            offset,
                            length,
                            path: p.to_string(),
                        }
                    }
                    _ => return Err(bad(v, "only ERET P offset length path is supported")),
                }
            }
            Verb::Esto => {
                let (w, p) = words_then_path(v, text(v, arg.unwrap_or(b""))?, 2)?;
                match w.as_slice() {
                    [m, off] if m.eq_ignore_ascii_case("A") => C::Esto {
                        offset: number(v, off)?,
                        path: p.to_string(),
                    },
                    _ => return Err(bad(v, "only ESTO A offset path is supported")),
                }
            }
            Verb::Cksm => {
                let (w, p) = words_then_path(v, text(v, arg.unwrap_or(b""))?, 3)?;
                let [alg, off, len] = w.as_slice() else {
                    return Err(bad(v, "CKSM alg offset length path"));
                };
                if !alg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(bad(v, "bad algorithm name"));
                }
                let offset = number(v, off)?;
                let length = if *len == "-1" {
                    None
                } else {
                    Some(number(v, len)?)
                };
                if length.is_some_and(|l| offset.checked_add(l).is_none()) {
                    return Err(bad(v, "offset + length overflows"));
                }
                C::Cksm {
                    algorithm: alg.to_ascii_uppercase(),
                    offset,
                    length,
                    path: p.to_string(),
                }
            }
            Verb::Scks => {
                let a = trimmed(v, arg)?;
                let w: Vec<&str> = a.split_ascii_whitespace().collect();
                match w.as_slice() {
                    [val] => C::Scks {
                        algorithm: None,
                        value: val.to_string(),
                    },
                    [alg, val] => C::Scks {
                        algorithm: Some(alg.to_ascii_uppercase()),
                        value: val.to_string(),
                    },
                    _ => return Err(bad(v, "SCKS [alg] checksum")),
                }
            }
            Verb::Trev => {
                let a = trimmed(v, arg)?;
                let w: Vec<&str> = a.split_ascii_whitespace().collect();
                let [ev, n, ..] = w.as_slice() else {
                    return Err(bad(v, "TREV PERF|RESTART seconds"));
                };
                if w.len() > 3 {
                    return Err(bad(v, "TREV PERF|RESTART seconds"));
                }
                let event = match ev.to_ascii_uppercase().as_str() {
                    "PERF" => TrevEvent::Perf,
                    "RESTART" => TrevEvent::Restart,
                    _ => return Err(bad(v, "unknown TREV event")),
                };
                let interval =
                    u32::try_from(number(v, n)?).map_err(|_| bad(v, "interval out of range"))?;
                C::Trev { event, interval }
            }
            Verb::Mfmt => {
                let (w, p) = words_then_path(v, text(v, arg.unwrap_or(b""))?, 1)?;
                let [t] = w.as_slice() else {
                    return Err(bad(v, "MFMT YYYYMMDDHHMMSS[.fff] path"));
                };
                C::Mfmt {
                    modified: parse_time(t).map_err(|_| bad(v, "bad time value"))?,
                    path: p.to_string(),
                }
            }
        })
    }

    /// The verb of this command (for logs and for the session's enable checks).
    pub fn verb(&self) -> Verb {
        use Command as C;
        match self {
            C::User(_) => Verb::User,
            C::Pass(_) => Verb::Pass,
            C::Acct(_) => Verb::Acct,
            C::Quit => Verb::Quit,
            C::Rein => Verb::Rein,
            C::Noop => Verb::Noop,
            C::Syst => Verb::Syst,
            C::Stat(_) => Verb::Stat,
            C::Help(_) => Verb::Help,
            C::Feat => Verb::Feat,
            C::Opts(_) => Verb::Opts,
            C::Pwd => Verb::Pwd,
            C::Cwd(_) => Verb::Cwd,
            C::Cdup => Verb::Cdup,
            C::Mkd(_) => Verb::Mkd,
            C::Rmd(_) => Verb::Rmd,
            C::Dele(_) => Verb::Dele,
            C::Rnfr(_) => Verb::Rnfr,
            C::Rnto(_) => Verb::Rnto,
            C::List(_) => Verb::List,
            C::Nlst(_) => Verb::Nlst,
            C::Mlsd(_) => Verb::Mlsd,
            C::Mlst(_) => Verb::Mlst,
            C::Size(_) => Verb::Size,
            C::Mdtm(_) => Verb::Mdtm,
            C::Type(_) => Verb::Type,
            C::Mode(_) => Verb::Mode,
            C::Stru(_) => Verb::Stru,
            C::Pasv => Verb::Pasv,
            C::Epsv(_) => Verb::Epsv,
            C::Port(_) => Verb::Port,
            C::Eprt(_) => Verb::Eprt,
            C::Rest(_) => Verb::Rest,
            C::Retr(_) => Verb::Retr,
            C::Stor(_) => Verb::Stor,
            C::Appe(_) => Verb::Appe,
            C::Stou(_) => Verb::Stou,
            C::Abor => Verb::Abor,
            C::Allo { .. } => Verb::Allo,
            C::Site(_) => Verb::Site,
            C::Auth(_) => Verb::Auth,
            C::Pbsz(_) => Verb::Pbsz,
            C::Prot(_) => Verb::Prot,
            C::Dcau(_) => Verb::Dcau,
            C::Ccc => Verb::Ccc,
            C::Sscn(_) => Verb::Sscn,
            C::Lang(_) => Verb::Lang,
            C::Sbuf(_) => Verb::Sbuf,
            C::Spas => Verb::Spas,
            C::Spor(_) => Verb::Spor,
            C::Eret { .. } => Verb::Eret,
            C::Esto { .. } => Verb::Esto,
            C::Cksm { .. } => Verb::Cksm,
            C::Scks { .. } => Verb::Scks,
            C::Trev { .. } => Verb::Trev,
            C::Mfmt { .. } => Verb::Mfmt,
        }
    }

    /// The wire form with CRLF, for a client to send.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = self.to_string().into_bytes();
        s.extend_from_slice(b"\r\n");
        s
    }
}

fn fc(f: FormatControl) -> &'static str {
    match f {
        FormatControl::NonPrint => "N",
        FormatControl::Telnet => "T",
        FormatControl::Carriage => "C",
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Command as C;
        let v = self.verb().as_str();
        let opt = |f: &mut fmt::Formatter<'_>, a: &Option<String>| match a {
            Some(a) => write!(f, "{v} {a}"),
            None => f.write_str(v),
        };
        match self {
            C::User(a)
            | C::Acct(a)
            | C::Cwd(a)
            | C::Mkd(a)
            | C::Rmd(a)
            | C::Dele(a)
            | C::Rnfr(a)
            | C::Rnto(a)
            | C::Size(a)
            | C::Mdtm(a)
            | C::Retr(a)
            | C::Stor(a)
            | C::Appe(a)
            | C::Auth(a) => write!(f, "{v} {a}"),
            C::Pass(a) if a.is_empty() => f.write_str(v),
            C::Pass(a) => write!(f, "{v} {a}"),
            C::Quit
            | C::Rein
            | C::Noop
            | C::Syst
            | C::Feat
            | C::Pwd
            | C::Cdup
            | C::Pasv
            | C::Abor
            | C::Ccc
            | C::Sscn(None)
            | C::Spas => f.write_str(v),
            C::Sscn(Some(on)) => write!(f, "SSCN {}", if *on { "ON" } else { "OFF" }),
            C::Stat(a) | C::Help(a) | C::Mlsd(a) | C::Mlst(a) | C::Stou(a) | C::Lang(a) => {
                opt(f, a)
            }
            C::List(l) | C::Nlst(l) => {
                let joined = match (&l.options, &l.path) {
                    (Some(o), Some(p)) => Some(format!("{o} {p}")),
                    (Some(o), None) => Some(o.clone()),
                    (None, p) => p.clone(),
                };
                opt(f, &joined)
            }
            C::Opts(o) => match o {
                Opts::Utf8(on) => write!(f, "OPTS UTF8 {}", if *on { "ON" } else { "OFF" }),
                Opts::Mlst(s) => write!(f, "OPTS MLST {}", s.selected_string()),
                Opts::Retr(r) => {
                    f.write_str("OPTS RETR ")?;
                    if let Some(p) = r.parallelism {
                        write!(f, "Parallelism={},{},{};", p.starting, p.minimum, p.maximum)?;
                    }
                    if let Some(l) = r.stripe_layout {
                        let l = match l {
                            StripeLayout::Partitioned => "Partitioned",
                            StripeLayout::Blocked => "Blocked",
                        };
                        write!(f, "StripeLayout={l};")?;
                    }
                    if let Some(b) = r.block_size {
                        write!(f, "BlockSize={b};")?;
                    }
                    Ok(())
                }
                Opts::Other { command, args } if args.is_empty() => write!(f, "OPTS {command}"),
                Opts::Other { command, args } => write!(f, "OPTS {command} {args}"),
            },
            C::Type(t) => match t {
                TransferType::Ascii(FormatControl::NonPrint) => f.write_str("TYPE A"),
                TransferType::Ascii(c) => write!(f, "TYPE A {}", fc(*c)),
                TransferType::Ebcdic(FormatControl::NonPrint) => f.write_str("TYPE E"),
                TransferType::Ebcdic(c) => write!(f, "TYPE E {}", fc(*c)),
                TransferType::Image => f.write_str("TYPE I"),
                TransferType::Local(n) => write!(f, "TYPE L {n}"),
            },
            C::Mode(m) => write!(
                f,
                "MODE {}",
                match m {
                    TransferMode::Stream => "S",
                    TransferMode::Block => "B",
                    TransferMode::Compressed => "C",
                    TransferMode::Extended => "E",
                    TransferMode::Deflate => "Z",
                }
            ),
            C::Stru(s) => write!(
                f,
                "STRU {}",
                match s {
                    Structure::File => "F",
                    Structure::Record => "R",
                    Structure::Page => "P",
                }
            ),
            C::Epsv(EpsvArg::Any) => f.write_str("EPSV"),
            C::Epsv(EpsvArg::All) => f.write_str("EPSV ALL"),
            C::Epsv(EpsvArg::Protocol(n)) => write!(f, "EPSV {n}"),
            C::Port(a) => write!(f, "PORT {}", format_host_port(*a)),
            C::Eprt(a) => write!(f, "EPRT {}", format_eprt(*a)),
            C::Rest(Restart::Offset(n)) => write!(f, "REST {n}"),
            C::Rest(Restart::Ranges(r)) if r.is_empty() => f.write_str("REST 0-0"),
            C::Rest(Restart::Ranges(r)) => write!(f, "REST {}", r.to_marker_string()),
            C::Allo { size, record: None } => write!(f, "ALLO {size}"),
            C::Allo {
                size,
                record: Some(r),
            } => write!(f, "ALLO {size} R {r}"),
            C::Site(s) => match s {
                SiteCommand::Chmod { mode, path } => write!(f, "SITE CHMOD {mode:o} {path}"),
                SiteCommand::Sbuf(n) => write!(f, "SITE SBUF {n}"),
                SiteCommand::RetrBufSize(n) => write!(f, "SITE RETRBUFSIZE {n}"),
                SiteCommand::StorBufSize(n) => write!(f, "SITE STORBUFSIZE {n}"),
                SiteCommand::Help => f.write_str("SITE HELP"),
                SiteCommand::Other { command, args } if args.is_empty() => {
                    write!(f, "SITE {command}")
                }
                SiteCommand::Other { command, args } => write!(f, "SITE {command} {args}"),
            },
            C::Pbsz(n) | C::Sbuf(n) => write!(f, "{v} {n}"),
            C::Prot(p) => write!(
                f,
                "PROT {}",
                match p {
                    ProtLevel::Clear => "C",
                    ProtLevel::Safe => "S",
                    ProtLevel::Confidential => "E",
                    ProtLevel::Private => "P",
                }
            ),
            C::Dcau(Dcau::None) => f.write_str("DCAU N"),
            C::Dcau(Dcau::SelfAuth) => f.write_str("DCAU A"),
            C::Dcau(Dcau::Subject(s)) => write!(f, "DCAU S {s}"),
            C::Spor(addrs) => {
                f.write_str("SPOR")?;
                for a in addrs {
                    match a {
                        SocketAddr::V4(a) => write!(f, " {}", format_host_port(*a))?,
                        SocketAddr::V6(_) => write!(f, " {}", format_eprt(*a))?,
                    }
                }
                Ok(())
            }
            C::Eret {
                offset,
                length,
                path,
            } => write!(f, "ERET P {offset} {length} {path}"),
            C::Esto { offset, path } => write!(f, "ESTO A {offset} {path}"),
            C::Cksm {
                algorithm,
                offset,
                length,
                path,
            } => match length {
                Some(l) => write!(f, "CKSM {algorithm} {offset} {l} {path}"),
                None => write!(f, "CKSM {algorithm} {offset} -1 {path}"),
            },
            C::Scks {
                algorithm: Some(a),
                value,
            } => write!(f, "SCKS {a} {value}"),
            C::Scks {
                algorithm: None,
                value,
            } => write!(f, "SCKS {value}"),
            C::Trev { event, interval } => write!(
                f,
                "TREV {} {interval}",
                match event {
                    TrevEvent::Perf => "PERF",
                    TrevEvent::Restart => "RESTART",
                }
            ),
            C::Mfmt { modified, path } => {
                write!(f, "MFMT {} {path}", format_time_exact(*modified))
            }
        }
    }
}
