//! Exit codes of `gridos`: one stable number per kind of failure, so that scripts can tell
//! "retry later" (network) from "fix the command" (usage, invalid) from "the data is wrong"
//! (checksum) without reading messages — as curl's EXIT CODES do. The numbers are part of
//! the interface: never renumber, only add.
//!
//! Also here: SIGINT for `gridos cp`, which cancels the copy through its token so that it
//! ends as [`ErrorKind::Cancelled`] (exit 130) and leaves no destination that looks
//! complete.

use crate::{CancelToken, Error, ErrorKind};
use std::fmt;
use std::process::ExitCode;

/// An exit code of `gridos` (see the module doc and `gridos cp --help`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// Success: every byte arrived.
    Ok = 0,
    /// Any other failure: local I/O, the cache's state, a malformed server reply.
    Failure = 1,
    /// The command line was not understood (clap's own code).
    Usage = 2,
    /// A URL that cannot be parsed, or options that do not fit the files.
    Invalid = 3,
    /// The source, or a directory the copy needs, does not exist.
    NotFound = 4,
    /// Refused access: locally, a refused login, a server's permission refusal.
    Permission = 5,
    /// Source and destination checksums differ.
    Checksum = 6,
    /// Connection refused or broken, a timeout, a busy server: a retry may succeed.
    Network = 7,
    /// A server refused a command (any other FTP reply or HTTP status), or a
    /// server-to-server transfer with relaying forbidden.
    Refused = 8,
    /// The server lacks something the operation needs.
    Unsupported = 9,
    /// Fewer or more bytes arrived than the source has.
    Incomplete = 10,
    /// TLS failed: the server's certificate was refused (untrusted, expired, wrong name),
    /// the handshake failed, or the server does not offer TLS where it is required.
    Tls = 11,
    /// Interrupted (SIGINT) or cancelled: 128 + SIGINT, the shell's convention.
    Cancelled = 130,
}

/// Every code with its line for the help text and the README, in order.
pub const TABLE: &[(Code, &str)] = &[
    (
        Code::Ok,
        "success: every byte arrived (and matched, with --verify)",
    ),
    (
        Code::Failure,
        "other failure: local I/O (disk full, …), the cache, a malformed server reply",
    ),
    (Code::Usage, "usage: the command line was not understood"),
    (
        Code::Invalid,
        "invalid URL, or options that do not fit the files (a directory without -r, the \
         same file twice, …)",
    ),
    (
        Code::NotFound,
        "not found: the source or a directory the copy needs (HTTP 404, 410)",
    ),
    (
        Code::Permission,
        "permission denied: locally, login refused (530, 532), by the server (553, HTTP 401, \
         403, 407)",
    ),
    (Code::Checksum, "checksum mismatch (--verify)"),
    (
        Code::Network,
        "network error or timeout: connection refused or broken, server busy (421), no data \
         connection (425, 426); a retry may succeed",
    ),
    (
        Code::Refused,
        "refused by the server: any other FTP reply or HTTP status, or a server-to-server \
         transfer refused with --no-relay",
    ),
    (
        Code::Unsupported,
        "not supported by the server: CKSM of that algorithm, MODE E (-p N against a plain \
         FTP server), MFMT, ranges (502, 504)",
    ),
    (
        Code::Incomplete,
        "incomplete: fewer or more bytes arrived than the source has",
    ),
    (
        Code::Tls,
        "TLS failed: the server's certificate was refused (untrusted, expired, not valid for \
         the host name; the message says which), the handshake failed, or the server offers \
         no TLS where it is required (ftps://, ftpes://, --tls)",
    ),
    (
        Code::Cancelled,
        "cancelled (SIGINT): the destination is not left looking complete",
    ),
];

impl Code {
    /// The code for an error of `kind`.
    pub fn of(kind: ErrorKind) -> Code {
        match kind {
            ErrorKind::InvalidUrl
            | ErrorKind::InvalidInput
            | ErrorKind::IsADirectory
            | ErrorKind::NotAFile
            | ErrorKind::SameFile => Code::Invalid,
            ErrorKind::NotFound | ErrorKind::Http(404 | 410) => Code::NotFound,
            ErrorKind::PermissionDenied
            | ErrorKind::Reply(530 | 532 | 553)
            | ErrorKind::Http(401 | 403 | 407) => Code::Permission,
            ErrorKind::ChecksumMismatch => Code::Checksum,
            ErrorKind::Network | ErrorKind::Timeout | ErrorKind::Reply(421 | 425 | 426) => {
                Code::Network
            }
            ErrorKind::Unsupported | ErrorKind::Reply(502 | 504) => Code::Unsupported,
            ErrorKind::Reply(_) | ErrorKind::Http(_) | ErrorKind::ThirdPartyRefused => {
                Code::Refused
            }
            ErrorKind::Incomplete => Code::Incomplete,
            ErrorKind::Tls | ErrorKind::TlsUnavailable => Code::Tls,
            ErrorKind::Cancelled => Code::Cancelled,
            ErrorKind::Protocol | ErrorKind::Io | ErrorKind::Cache => Code::Failure,
        }
    }

    /// The number the process exits with.
    pub fn number(self) -> u8 {
        self as u8
    }
}

impl From<Code> for ExitCode {
    fn from(c: Code) -> ExitCode {
        ExitCode::from(c.number())
    }
}

/// The exit-code table as help text: `EXIT CODES` and one line per code.
pub fn table() -> String {
    let mut s = String::from("Exit codes:");
    for (code, text) in TABLE {
        s.push_str(&format!("\n  {:>3} ", code.number()));
        let mut width = 6;
        for word in text.split(' ') {
            if width + 1 + word.len() > 90 {
                s.push_str("\n      ");
                width = 6;
            }
            s.push(' ');
            s.push_str(word);
            width += 1 + word.chars().count();
        }
    }
    s
}

/// `gridos cp --help` after the options: examples, the URL rules, the exit codes.
pub fn cp_long_help(url_rules: &str) -> String {
    format!("{CP_EXAMPLES}\n\n{url_rules}\n\n{}", table())
}

/// The examples of `gridos cp -h` and `--help` (kept beside the table they are shown with).
pub const CP_EXAMPLES: &str = "\
Examples:
  gridos cp -p 4 --verify gridftp://data.example.org/archive/run7.h5 .
                         GridFTP download over 4 parallel streams, checked by MD5
  gridos cp --resume ftp://ftp.example.org/pub/big.iso /tmp/big.iso
                         continue an interrupted download where it stopped
  gridos cp -r ftp://alice@a.example.org/results gridftp://b.example.org/store/results
                         third-party copy of a tree, server to server";

/// Why a command failed: a library error, whose kind chooses the exit code, or a message
/// of a command that has no kinds (exit 1). `Display` is the message after `gridos: `.
#[derive(Debug)]
pub enum Failure {
    /// A gridos-middleware error (`cp`, `cache`).
    Error(Error),
    /// Any other command's message.
    Message(String),
}

impl Failure {
    /// The code to exit with.
    pub fn code(&self) -> Code {
        match self {
            Failure::Error(e) => Code::of(e.kind()),
            Failure::Message(_) => Code::Failure,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Error(e) => write!(f, "{e}"),
            Failure::Message(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Failure::Error(e) => Some(e),
            Failure::Message(_) => None,
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Error(e)
    }
}

impl From<String> for Failure {
    fn from(m: String) -> Failure {
        Failure::Message(m)
    }
}

/// Prints a failure as `gridos: MESSAGE` and returns its exit code.
pub fn finish(result: Result<ExitCode, Failure>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("gridos: {f}");
            f.code().into()
        }
    }
}

/// Blocks SIGINT in the calling thread and in every thread it starts afterwards, so that
/// only [`cancel_on_interrupt`]'s waiter receives it. Call before any thread starts.
pub fn block_interrupts() -> Result<(), Error> {
    interrupt_set()
        .thread_block()
        .map_err(|e| Error::from_io("blocking SIGINT", std::io::Error::from(e)))
}

/// Cancels `token` on the first SIGINT (the copy then stops and exits 130); a second
/// SIGINT exits at once with 130. Blocks SIGINT here too (see [`block_interrupts`]).
pub fn cancel_on_interrupt(token: CancelToken) -> Result<(), Error> {
    block_interrupts()?;
    let set = interrupt_set();
    std::thread::Builder::new()
        .name("gridos-sigint".into())
        .spawn(move || {
            if set.wait().is_ok() {
                token.cancel();
            }
            if set.wait().is_ok() {
                std::process::exit(Code::Cancelled.number().into());
            }
        })
        .map(drop)
        .map_err(|e| Error::from_io("starting the SIGINT waiter", e))
}

fn interrupt_set() -> nix::sys::signal::SigSet {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::SIGINT);
    set
}

#[cfg(test)]
mod tests {
    use super::{Code, TABLE};
    use crate::ErrorKind;

    #[test]
    fn every_code_is_listed_once_in_order() {
        let numbers: Vec<u8> = TABLE.iter().map(|(c, _)| c.number()).collect();
        assert_eq!(numbers, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 130]);
    }

    #[test]
    fn kinds_map_to_their_codes() {
        assert_eq!(Code::of(ErrorKind::Reply(550)), Code::Refused);
        assert_eq!(Code::of(ErrorKind::Reply(553)), Code::Permission);
        assert_eq!(Code::of(ErrorKind::Reply(421)), Code::Network);
        assert_eq!(Code::of(ErrorKind::Http(404)), Code::NotFound);
        assert_eq!(Code::of(ErrorKind::Http(500)), Code::Refused);
        assert_eq!(Code::of(ErrorKind::ThirdPartyRefused), Code::Refused);
        assert_eq!(Code::of(ErrorKind::Timeout), Code::Network);
        assert_eq!(Code::of(ErrorKind::Protocol), Code::Failure);
        assert_eq!(Code::of(ErrorKind::Tls), Code::Tls);
        assert_eq!(Code::of(ErrorKind::TlsUnavailable), Code::Tls);
    }
}
