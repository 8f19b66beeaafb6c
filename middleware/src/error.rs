//! The crate's one error type: an [`ErrorKind`] a program can match, what was being done
//! (the URLs involved), and the typed cause underneath.

use std::fmt;

/// Result alias for gridos-middleware.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is: the part a program matches on.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A URL or path that cannot be parsed, or a scheme this build does not serve.
    InvalidUrl,
    /// Options that do not fit together or do not fit the endpoints (e.g. `--offset` on a
    /// tree, MODE E settings against a plain FTP server).
    InvalidInput,
    /// The source (or a directory the copy needs) does not exist.
    NotFound,
    /// The operating system or the server refused access.
    PermissionDenied,
    /// The source is a directory and the copy is not recursive, or a directory stands
    /// where a file must go.
    IsADirectory,
    /// The source is neither a file nor a directory (a pipe, a device) where a file is
    /// needed.
    NotAFile,
    /// Source and destination are the same file.
    SameFile,
    /// A server refused a command; the code is the server's reply code.
    Reply(u16),
    /// An HTTP server answered with this status.
    Http(u16),
    /// A server lacks something the operation needs (MODE E, CKSM of an algorithm, MFMT,
    /// ranges).
    Unsupported,
    /// The checksums of source and destination differ.
    ChecksumMismatch,
    /// Fewer (or more) bytes arrived than the source has.
    Incomplete,
    /// The copy was cancelled through its [`CancelToken`](crate::CancelToken).
    Cancelled,
    /// A connection could not be made or broke; a retry may succeed.
    Network,
    /// A timeout waiting for a server.
    Timeout,
    /// The peer sent something that is not valid protocol.
    Protocol,
    /// A servers-to-server transfer was refused and relaying was not allowed.
    ThirdPartyRefused,
    /// Local I/O failed (disk full, read error, …).
    Io,
    /// The cache's own state (its index or locks) could not be used.
    Cache,
    /// TLS failed: the server's certificate was refused (untrusted, expired, not valid for
    /// the host name: [`Error::tls_reason`] says which) or the handshake failed.
    Tls,
    /// TLS was required (`ftps://`, `ftpes://`, `--tls`) and the server does not offer it.
    TlsUnavailable,
}

/// An error of gridos-middleware: a kind, what was being done, and the cause.
///
/// `Display` reads as one line: `CONTEXT: DETAIL: CAUSE`. [`Error::kind`] is stable to match
/// on; [`std::error::Error::source`] gives the typed cause (a
/// [`gridos_ftp::client::Error`], a [`std::io::Error`], …) for programs that need it.
pub struct Error {
    kind: ErrorKind,
    context: String,
    detail: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` while doing `context` (e.g. `"ftp://h/a → /tmp/a"`).
    pub fn new(kind: ErrorKind, context: impl Into<String>) -> Error {
        Error {
            kind,
            context: context.into(),
            detail: None,
            source: None,
        }
    }

    /// Adds a sentence saying what went wrong beyond the kind and the cause.
    pub fn detail(mut self, detail: impl Into<String>) -> Error {
        self.detail = Some(detail.into());
        self
    }

    /// Adds the typed cause.
    pub fn source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        self.source = Some(Box::new(source));
        self
    }

    /// Puts what the caller was doing in front of the context (`OUTER: INNER`), keeping
    /// kind, detail and cause.
    pub fn context(mut self, outer: impl Into<String>) -> Error {
        let outer = outer.into();
        self.context = match (outer.is_empty(), self.context.is_empty()) {
            (true, _) => self.context,
            (false, true) => outer,
            (false, false) => format!("{outer}: {}", self.context),
        };
        self
    }

    /// The kind to match on.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What was being done.
    pub fn what(&self) -> &str {
        &self.context
    }

    /// The server's reply code when a server refused.
    pub fn reply_code(&self) -> Option<u16> {
        match self.kind {
            ErrorKind::Reply(c) => Some(c),
            _ => None,
        }
    }

    /// The FTP client error underneath, if that is the cause.
    pub fn ftp(&self) -> Option<&gridos_ftp::client::Error> {
        self.source.as_ref()?.downcast_ref()
    }

    /// An FTP client error while doing `context`, classified.
    pub fn from_ftp(context: impl Into<String>, e: gridos_ftp::client::Error) -> Error {
        use gridos_ftp::client::Error as F;
        let kind = match &e {
            F::Reply { code, .. } => ErrorKind::Reply(*code),
            F::ThirdPartyRefused { .. } => ErrorKind::ThirdPartyRefused,
            F::ChecksumMismatch { .. } => ErrorKind::ChecksumMismatch,
            F::Busy { .. } => ErrorKind::Reply(e.reply_code().unwrap_or(421)),
            F::Io { .. } | F::Closed { .. } | F::Transfer { .. } | F::ModeE { .. } => {
                ErrorKind::Network
            }
            F::Timeout(..) => ErrorKind::Timeout,
            F::NoSpace { .. } => ErrorKind::Io,
            F::Protocol(_) | F::Poisoned => ErrorKind::Protocol,
            F::Incomplete { .. } => ErrorKind::Incomplete,
            F::Cancelled { .. } => ErrorKind::Cancelled,
            F::InvalidArgument(_) => ErrorKind::InvalidInput,
            F::Unsupported(_) => ErrorKind::Unsupported,
            F::Tls { .. } => ErrorKind::Tls,
            F::TlsUnavailable { .. } => ErrorKind::TlsUnavailable,
            _ => ErrorKind::Protocol,
        };
        Error::new(kind, context).source(e)
    }

    /// A TLS set-up error (a CA or certificate file that cannot be used, a configuration
    /// rustls refuses).
    pub fn from_tls(e: gridos_ftp::tls::TlsError) -> Error {
        use gridos_ftp::tls::TlsError as T;
        let (kind, what) = match &e {
            T::File { .. } => (
                ErrorKind::InvalidInput,
                "TLS files (--cacert, --cert, --key)",
            ),
            _ => (ErrorKind::Tls, "TLS settings"),
        };
        Error::new(kind, what).source(e)
    }

    /// Why the server's certificate was refused (`certificate not trusted (unknown
    /// issuer)`, `certificate expired (…)`, `certificate not valid for this host name
    /// (…)`), when that is what failed.
    pub fn tls_reason(&self) -> Option<String> {
        self.ftp()?.tls()?.reason()
    }

    /// A local I/O error while doing `context`, classified.
    pub fn from_io(context: impl Into<String>, e: std::io::Error) -> Error {
        use std::io::ErrorKind as K;
        let kind = match e.kind() {
            K::NotFound => ErrorKind::NotFound,
            K::PermissionDenied => ErrorKind::PermissionDenied,
            K::IsADirectory => ErrorKind::IsADirectory,
            _ => ErrorKind::Io,
        };
        Error::new(kind, context).source(e)
    }

    /// A gridos-io error while doing `context`.
    pub fn from_gridos_io(context: impl Into<String>, e: gridos_io::Error) -> Error {
        let kind = match &e {
            gridos_io::Error::Cancelled { .. } => ErrorKind::Cancelled,
            gridos_io::Error::PeerClosed { .. } | gridos_io::Error::PeerReset { .. } => {
                ErrorKind::Network
            }
            _ => ErrorKind::Io,
        };
        Error::new(kind, context).source(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if !self.context.is_empty() {
            f.write_str(&self.context)?;
            sep = ": ";
        }
        match (&self.detail, &self.source) {
            (Some(d), Some(s)) => write!(f, "{sep}{d}: {s}"),
            (Some(d), None) => write!(f, "{sep}{d}"),
            (None, Some(s)) => write!(f, "{sep}{s}"),
            (None, None) => write!(f, "{sep}{}", self.kind.describe()),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("context", &self.context)
            .field("detail", &self.detail)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl ErrorKind {
    /// A short sentence for an error that has no detail or cause.
    pub fn describe(self) -> &'static str {
        match self {
            ErrorKind::InvalidUrl => "invalid URL",
            ErrorKind::InvalidInput => "invalid options",
            ErrorKind::NotFound => "no such file or directory",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::IsADirectory => "is a directory",
            ErrorKind::NotAFile => "not a regular file",
            ErrorKind::SameFile => "source and destination are the same file",
            ErrorKind::Reply(_) => "refused by the server",
            ErrorKind::Http(_) => "refused by the HTTP server",
            ErrorKind::Unsupported => "not supported by the server",
            ErrorKind::ChecksumMismatch => "checksum mismatch",
            ErrorKind::Incomplete => "incomplete transfer",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Network => "network error",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::ThirdPartyRefused => "server-to-server transfer refused",
            ErrorKind::Io => "I/O error",
            ErrorKind::Cache => "cache error",
            ErrorKind::Tls => "TLS failed",
            ErrorKind::TlsUnavailable => "the server does not offer TLS",
        }
    }
}

impl From<crate::url::UrlError> for Error {
    fn from(e: crate::url::UrlError) -> Error {
        Error::new(ErrorKind::InvalidUrl, "").source(e)
    }
}
