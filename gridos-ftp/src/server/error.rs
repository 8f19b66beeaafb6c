//! The server module's one error type.

/// Result alias for the server.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong starting, configuring or running the server (what a peer sends never
/// becomes one of these: it becomes an FTP reply).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration key, value or file is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The password file is unreadable or malformed, or a password could not be hashed.
    #[error("password file: {0}")]
    Passwd(String),
    /// chroot, setgroups, setgid or setuid failed, or the user is unknown.
    #[error("dropping privileges: {0}")]
    Privileges(String),
    /// A TLS certificate, key, CA file or grid-mapfile could not be used.
    #[error("{what}: {source}")]
    Tls {
        /// Which setting.
        what: String,
        /// Why (the file and what is wrong with it).
        #[source]
        source: crate::tls::TlsError,
    },
    /// The seccomp sandbox could not be built or installed (`seccomp = "required"`).
    #[error("seccomp sandbox: {0}")]
    Sandbox(#[source] super::sandbox::SandboxError),
    /// An error from gridos-io (pool, configuration).
    #[error(transparent)]
    GridIo(#[from] gridos_io::Error),
}

impl Error {
    pub(crate) fn io(op: impl Into<String>, source: impl Into<std::io::Error>) -> Error {
        Error::Io {
            op: op.into(),
            source: source.into(),
        }
    }
}
