//! The client's one error type.

use std::time::Duration;

/// Result alias for the client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to an FTP server.
///
/// A refusal by the server is [`Error::Reply`], with the server's code and text; a transfer
/// that stopped part-way carries the bytes that arrived ([`Error::bytes_moved`]) so a caller
/// can resume.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket operation failed (connect, read, write…).
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The server answered a command with a code the operation cannot accept.
    #[error("server replied {code} to {command}: {text}")]
    Reply {
        /// The command (a password is never shown).
        command: String,
        /// The server's reply code.
        code: u16,
        /// The server's reply text (all lines, joined).
        text: String,
    },
    /// The server sent something that is not valid FTP (a malformed reply, an unparsable
    /// address, size or listing).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server closed the control connection.
    #[error("control connection closed by the server{}", if *.mid_reply { " in the middle of a reply" } else { "" })]
    Closed {
        /// Whether the close cut a reply short.
        mid_reply: bool,
    },
    /// No progress for longer than the configured timeout.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, &'static str),
    /// The data transfer failed part-way.
    #[error("data transfer failed after {moved} bytes: {source}")]
    Transfer {
        /// Bytes that reached their destination before the failure.
        moved: u64,
        /// What gridos-io reported.
        #[source]
        source: gridos_io::Error,
    },
    /// The transfer ended cleanly but moved a different number of bytes than the server's
    /// `SIZE` said it would.
    #[error("incomplete transfer: {got} bytes arrived, {expected} expected")]
    Incomplete {
        /// Bytes expected.
        expected: u64,
        /// Bytes that arrived.
        got: u64,
    },
    /// The operation was cancelled through the configured `CancelToken`.
    #[error("cancelled after {moved} bytes")]
    Cancelled {
        /// Bytes moved before the cancellation took effect.
        moved: u64,
    },
    /// An argument that cannot be sent (a path with CR, LF or NUL, an empty path…).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The server lacks something the operation needs.
    #[error("not supported by the server: {0}")]
    Unsupported(&'static str),
    /// A MODE E transfer failed part-way (a broken or misbehaving data connection, a bad
    /// block, a local write error).
    #[error("MODE E transfer failed after {moved} bytes: {message}")]
    ModeE {
        /// Bytes that reached their destination before the failure.
        moved: u64,
        /// What went wrong.
        message: String,
    },
    /// The local file system filled up (ENOSPC, EDQUOT) while a download wrote to it.
    #[error("no space left on the local disk after {moved} bytes")]
    NoSpace {
        /// Bytes written before the disk was full.
        moved: u64,
    },
    /// The server stayed busy for the whole
    /// [`ClientConfig::busy_retry`](super::ClientConfig::busy_retry) budget: it greeted
    /// with 421 (its client limits) or dropped the connection before greeting. `last` is
    /// the last attempt's error.
    #[error("server busy: {attempts} attempt(s) in {waited:.1?}, last: {last}")]
    Busy {
        /// Connection attempts made.
        attempts: u32,
        /// Time from the first attempt to giving up.
        waited: Duration,
        /// What the last attempt got.
        #[source]
        last: Box<Error>,
    },
    /// An earlier error left the control connection out of step; reconnect.
    #[error("control connection unusable after an earlier error")]
    Poisoned,
    /// A third-party transfer could not connect the two servers directly: a server refused
    /// the other's data address (5yz to PORT/EPRT/SPOR: bounce protection, a policy) or
    /// reported that the data connection could not be made or was turned away (425, or a
    /// failure to connect). Relaying the data through the client may still work.
    #[error("third-party transfer refused by the {side} server: {command} → {code} {text}")]
    ThirdPartyRefused {
        /// The server that refused.
        side: Side,
        /// The command it refused.
        command: String,
        /// Its reply code.
        code: u16,
        /// Its reply text (all lines, joined).
        text: String,
    },
    /// TLS failed on the control or a data connection: the handshake, or the server's
    /// certificate, which rustls refused for the reason the source keeps (unknown issuer,
    /// expired, not valid for the name: [`TlsError::reason`](crate::tls::TlsError::reason)).
    #[error("TLS on the {connection} connection to {server}: {source}")]
    Tls {
        /// `control` or `data`.
        connection: &'static str,
        /// The name the certificate had to match.
        server: String,
        /// What rustls or the handshake reported.
        #[source]
        source: crate::tls::TlsError,
    },
    /// TLS was required (explicit or implicit FTPS) and the server does not offer it, or
    /// refused to protect the data connections.
    #[error("the server does not offer TLS, which is required: {command} → {code} {text}")]
    TlsUnavailable {
        /// The command it refused (`AUTH TLS`, `PBSZ 0`, `PROT P`).
        command: String,
        /// Its reply code.
        code: u16,
        /// Its reply text (all lines, joined).
        text: String,
    },
    /// The two servers' checksums of a third-party copy differ.
    #[error("{algorithm} checksums differ: source {expected}, destination {got}")]
    ChecksumMismatch {
        /// The algorithm.
        algorithm: &'static str,
        /// The source server's checksum.
        expected: String,
        /// The destination server's checksum.
        got: String,
    },
}

/// One of the two servers of a third-party transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The server that sends the file.
    Source,
    /// The server that receives it.
    Destination,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Destination => "destination",
        })
    }
}

impl Error {
    /// The server's reply code, when the server refused (for [`Error::Busy`], the last
    /// attempt's).
    pub fn reply_code(&self) -> Option<u16> {
        match self {
            Error::Reply { code, .. } | Error::ThirdPartyRefused { code, .. } => Some(*code),
            Error::Busy { last, .. } => last.reply_code(),
            _ => None,
        }
    }

    /// Bytes that reached their destination before a transfer failed.
    pub fn bytes_moved(&self) -> Option<u64> {
        match self {
            Error::Transfer { moved, .. }
            | Error::Cancelled { moved }
            | Error::ModeE { moved, .. }
            | Error::NoSpace { moved } => Some(*moved),
            Error::Incomplete { got, .. } => Some(*got),
            _ => None,
        }
    }

    /// Whether the server refused with a permanent (5yz) reply.
    pub fn is_permanent(&self) -> bool {
        self.reply_code().is_some_and(|c| (500..600).contains(&c))
    }

    /// Whether a third-party transfer failed because the servers could not be connected
    /// directly ([`Error::ThirdPartyRefused`]): the caller may relay the data instead.
    pub fn is_third_party_refused(&self) -> bool {
        matches!(self, Error::ThirdPartyRefused { .. })
    }

    /// The TLS failure underneath, if TLS failed (the certificate's reason is in it).
    pub fn tls(&self) -> Option<&crate::tls::TlsError> {
        match self {
            Error::Tls { source, .. } => Some(source),
            Error::Busy { last, .. } => last.tls(),
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, source: std::io::Error) -> Error {
        Error::Io { op, source }
    }
}
