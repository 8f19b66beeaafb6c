//! The crate's one error type.

/// Everything that can go wrong in gridos-rm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a /proc or /sys file (or another system call) failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// A /proc or /sys file had unexpected contents.
    #[error("cannot parse {what}: {detail}")]
    Parse {
        /// Which file.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// A reservation request was refused by admission control.
    #[error("reservation refused: {0}")]
    Refused(String),
    /// A reservation request is malformed (zero duration, negative CPUs…).
    #[error("invalid reservation request: {0}")]
    InvalidRequest(String),
    /// No such (live) reservation.
    #[error("no reservation {0} (unknown, released or expired)")]
    UnknownReservation(String),
    /// Setting up enforcement failed.
    #[error("enforcement: {0}")]
    Enforcement(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
