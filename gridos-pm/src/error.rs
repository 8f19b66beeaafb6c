//! The crate's one error type, and its wire form.

use serde::{Deserialize, Serialize};

/// Everything that can go wrong in gridos-pm (locally or reported by a node).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Error {
    /// The node holding a process (or the node a request was routed to) disappeared, or
    /// restarted so that the process's fate is unknown.
    #[error("node {node} lost: {detail}")]
    NodeLost {
        /// The node.
        node: String,
        /// What happened.
        detail: String,
    },
    /// The node is configured but no connection to it has been made.
    #[error("node {node} unreachable: {detail}")]
    NodeUnreachable {
        /// The node.
        node: String,
        /// Why.
        detail: String,
    },
    /// No node of that id is known here.
    #[error("unknown node {0:?} (not this node and not a configured peer)")]
    UnknownNode(String),
    /// No such process.
    #[error("unknown process {gpid}: {detail}")]
    UnknownProcess {
        /// The GPID asked for.
        gpid: String,
        /// Why.
        detail: String,
    },
    /// Authentication failed.
    #[error("authentication failed: {0}")]
    AuthFailed(String),
    /// Not allowed.
    #[error("permission denied: {0}")]
    Denied(String),
    /// Malformed request or argument (bad GPID, bad frame…).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Refused by admission control.
    #[error("refused: {0}")]
    Refused(String),
    /// Timed out.
    #[error("timed out: {0}")]
    Timeout(String),
    /// Spawning failed.
    #[error("spawn failed: {0}")]
    Spawn(String),
    /// Communication failure.
    #[error("communication: {0}")]
    Comm(String),
    /// Configuration problem.
    #[error("configuration: {0}")]
    Config(String),
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

impl From<gridos_comm::Error> for Error {
    fn from(e: gridos_comm::Error) -> Self {
        match e {
            gridos_comm::Error::BadGpid { .. } | gridos_comm::Error::BadNodeId { .. } => {
                Error::BadRequest(e.to_string())
            }
            gridos_comm::Error::Timeout(_) => Error::Timeout(e.to_string()),
            _ => Error::Comm(e.to_string()),
        }
    }
}

impl From<gridos_rm::Error> for Error {
    fn from(e: gridos_rm::Error) -> Self {
        match e {
            gridos_rm::Error::Refused(_) => Error::Refused(e.to_string()),
            gridos_rm::Error::InvalidRequest(_) | gridos_rm::Error::UnknownReservation(_) => {
                Error::BadRequest(e.to_string())
            }
            _ => Error::Failed(e.to_string()),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Failed(format!("I/O: {e}"))
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
