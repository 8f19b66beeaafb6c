//! The crate's one error type.

use crate::IoPath;
use std::io;

/// Result alias for gridos-io.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in gridos-io.
///
/// Transfer errors carry `moved`: the bytes that reached their destination (the socket for a
/// send, the file for a receive) before the failure, so a caller can resume at `offset + moved`.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed in a way not covered by a narrower variant.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The peer closed the connection before the expected number of bytes arrived.
    #[error("connection closed by peer after {moved} of {expected} bytes")]
    PeerClosed {
        /// Bytes committed before the close.
        moved: u64,
        /// Bytes that were expected.
        expected: u64,
    },
    /// The peer reset the connection (ECONNRESET / EPIPE).
    #[error("connection reset by peer after {moved} bytes")]
    PeerReset {
        /// Bytes committed before the reset.
        moved: u64,
    },
    /// The destination file system is full (ENOSPC / EDQUOT).
    #[error("no space left on device after {moved} bytes")]
    NoSpace {
        /// Bytes committed before the disk filled.
        moved: u64,
    },
    /// A requested file range starts or ends past the end of the file.
    #[error("range {offset}+{len} is past the end of the file ({file_len} bytes)")]
    OffsetPastEof {
        /// Requested start.
        offset: u64,
        /// Requested length.
        len: u64,
        /// The file's length.
        file_len: u64,
    },
    /// The file shrank while it was being sent.
    #[error("file ended early: {moved} of {expected} bytes read")]
    FileTruncated {
        /// Bytes sent before the file ended.
        moved: u64,
        /// Bytes that were expected.
        expected: u64,
    },
    /// The transfer was cancelled through its [`CancelToken`](crate::CancelToken).
    #[error("transfer cancelled after {moved} bytes")]
    Cancelled {
        /// Bytes committed before the cancel took effect.
        moved: u64,
    },
    /// A forced I/O path is not available on this kernel.
    #[error("I/O path {0} is not available on this system")]
    PathUnavailable(IoPath),
    /// A configuration value or file is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The I/O pool could not run a job.
    #[error("I/O pool: {0}")]
    Pool(String),
    /// A compressed stream was corrupt.
    #[error("compressed stream: {0}")]
    Compression(#[source] io::Error),
}

impl Error {
    /// Bytes committed before a transfer failed, when the error is a transfer error.
    pub fn bytes_moved(&self) -> Option<u64> {
        match self {
            Error::PeerClosed { moved, .. }
            | Error::PeerReset { moved }
            | Error::NoSpace { moved }
            | Error::FileTruncated { moved, .. }
            | Error::Cancelled { moved } => Some(*moved),
            _ => None,
        }
    }

    /// Classifies an OS error raised during a transfer that had committed `moved` bytes.
    pub(crate) fn transfer(op: &'static str, source: io::Error, moved: u64) -> Error {
        match source.raw_os_error() {
            Some(libc::ECONNRESET) | Some(libc::EPIPE) | Some(libc::ECONNABORTED) => {
                Error::PeerReset { moved }
            }
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Error::NoSpace { moved },
            _ => Error::Io { op, source },
        }
    }

    pub(crate) fn io(op: &'static str, source: impl Into<io::Error>) -> Error {
        Error::Io {
            op,
            source: source.into(),
        }
    }
}
