//! The crate's one error type.

use std::time::Duration;

/// Everything that can go wrong in gridos-comm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A GPID string could not be parsed.
    #[error("malformed GPID {input:?}: {reason} (expected NODE.INCARNATION.PID, e.g. n1.3.41235)")]
    BadGpid {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A node id is not acceptable.
    #[error("invalid node id {input:?}: {reason}")]
    BadNodeId {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A peer announced a frame larger than the configured maximum. The stream can no longer
    /// be trusted (there is no way to resynchronise) and the channel is closed.
    #[error(
        "frame of {len} bytes exceeds the maximum of {max} bytes; connection no longer trusted"
    )]
    FrameTooLarge {
        /// Announced length.
        len: u64,
        /// Configured maximum.
        max: u32,
    },
    /// A frame's body is not well formed.
    #[error("malformed frame: {0}")]
    BadFrame(String),
    /// No frame arrived in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The peer closed the connection (or it broke).
    #[error("connection closed by peer")]
    Closed,
    /// No permitted transport can reach the peer.
    #[error("no transport can reach {peer}: {reasons}")]
    NoTransport {
        /// The peer's name.
        peer: String,
        /// Why each candidate was rejected.
        reasons: String,
    },
    /// Underlying I/O failure.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
