//! Result codes, the thread-local last-error message, and the panic boundary every export
//! goes through.

use std::cell::RefCell;
use std::ffi::{CString, c_char};

/// What a call did. `GRIDOS_OK` is 0; the others are grouped in ranges that stay stable
/// (retired numbers stay reserved): 1xx the caller's arguments, 2xx this machine, 3xx the
/// network and its peers, 4xx processes and nodes, 9xx the call itself.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum gridos_result {
    /// Success.
    GRIDOS_OK = 0,
    /// A required pointer argument was NULL.
    GRIDOS_ERR_NULL = 100,
    /// A string argument is not UTF-8.
    GRIDOS_ERR_INVALID_UTF8 = 101,
    /// An argument has a value that cannot be used.
    GRIDOS_ERR_INVALID_ARGUMENT = 102,
    /// A configuration or option key that does not exist.
    GRIDOS_ERR_UNKNOWN_KEY = 103,
    /// The caller's buffer is too small; `*needed` says how large it must be.
    GRIDOS_ERR_BUFFER_TOO_SMALL = 104,
    /// A URL that cannot be parsed or a scheme this build does not serve.
    GRIDOS_ERR_INVALID_URL = 105,
    /// A local I/O error.
    GRIDOS_ERR_IO = 200,
    /// A file or directory does not exist.
    GRIDOS_ERR_NOT_FOUND = 201,
    /// The system or a server refused access.
    GRIDOS_ERR_PERMISSION = 202,
    /// A non-blocking call found nothing to do yet.
    GRIDOS_ERR_WOULD_BLOCK = 203,
    /// No space left on the device.
    GRIDOS_ERR_NO_SPACE = 204,
    /// A directory where a file is needed (or the reverse).
    GRIDOS_ERR_IS_A_DIRECTORY = 205,
    /// A connection failed or broke.
    GRIDOS_ERR_NETWORK = 300,
    /// A peer did not answer in time.
    GRIDOS_ERR_TIMEOUT = 301,
    /// A peer sent something that is not valid protocol.
    GRIDOS_ERR_PROTOCOL = 302,
    /// A server refused a command (the message carries its reply).
    GRIDOS_ERR_REFUSED = 303,
    /// A server lacks something the call needs.
    GRIDOS_ERR_UNSUPPORTED = 304,
    /// Checksums of source and destination differ.
    GRIDOS_ERR_CHECKSUM_MISMATCH = 305,
    /// Fewer bytes arrived than the source has.
    GRIDOS_ERR_INCOMPLETE = 306,
    /// TLS (FTPS) failed: the server's certificate was refused — the message names why
    /// (not trusted: unknown issuer; expired; not valid for the host name) —, the
    /// handshake failed, or TLS was required (`ftps://`, `ftpes://`, the `tls` copy
    /// option) and the server does not offer it.
    GRIDOS_ERR_TLS = 307,
    /// The node daemon that ran a process went away.
    GRIDOS_ERR_NODE_LOST = 400,
    /// No such process (GPID).
    GRIDOS_ERR_NO_SUCH_PROCESS = 401,
    /// A reservation could not be admitted or enforced.
    GRIDOS_ERR_RESERVATION = 402,
    /// The operation was cancelled (a progress callback returned non-zero).
    GRIDOS_ERR_CANCELLED = 900,
    /// A bug: a panic inside the library, caught at the boundary.
    GRIDOS_ERR_PANIC = 998,
    /// Anything else.
    GRIDOS_ERR_OTHER = 999,
}

/// A failed call: its code and the message `gridos_last_error_message` returns.
#[derive(Debug)]
pub(crate) struct Failure {
    pub code: gridos_result,
    pub message: String,
}

impl Failure {
    pub fn new(code: gridos_result, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

/// The code of a middleware error, one place for every export.
pub(crate) fn map_error(e: &gridos_middleware::Error) -> gridos_result {
    use gridos_middleware::ErrorKind as K;
    use gridos_result::*;
    match e.kind() {
        K::InvalidUrl => GRIDOS_ERR_INVALID_URL,
        K::InvalidInput => GRIDOS_ERR_INVALID_ARGUMENT,
        K::NotFound => GRIDOS_ERR_NOT_FOUND,
        K::PermissionDenied => GRIDOS_ERR_PERMISSION,
        K::IsADirectory | K::NotAFile => GRIDOS_ERR_IS_A_DIRECTORY,
        K::SameFile => GRIDOS_ERR_INVALID_ARGUMENT,
        K::Reply(530) => GRIDOS_ERR_PERMISSION,
        K::Reply(_) | K::Http(_) | K::ThirdPartyRefused => GRIDOS_ERR_REFUSED,
        K::Unsupported => GRIDOS_ERR_UNSUPPORTED,
        K::ChecksumMismatch => GRIDOS_ERR_CHECKSUM_MISMATCH,
        K::Incomplete => GRIDOS_ERR_INCOMPLETE,
        K::Cancelled => GRIDOS_ERR_CANCELLED,
        K::Network => GRIDOS_ERR_NETWORK,
        K::Timeout => GRIDOS_ERR_TIMEOUT,
        K::Protocol => GRIDOS_ERR_PROTOCOL,
        K::Io | K::Cache => GRIDOS_ERR_IO,
        K::Tls | K::TlsUnavailable => GRIDOS_ERR_TLS,
        _ => GRIDOS_ERR_OTHER,
    }
}

impl From<gridos_middleware::Error> for Failure {
    fn from(e: gridos_middleware::Error) -> Failure {
        Failure::new(map_error(&e), e.to_string())
    }
}

/// The code of a process-management error (node daemon, GPIDs, reservations), one place
/// for every export of [`crate::node`].
pub(crate) fn map_pm_error(e: &gridos_pm::Error) -> gridos_result {
    use gridos_pm::Error as E;
    use gridos_result::*;
    match e {
        E::NodeLost { .. } => GRIDOS_ERR_NODE_LOST,
        E::UnknownProcess { .. } => GRIDOS_ERR_NO_SUCH_PROCESS,
        // Admission control said no (gridos-rm's `Refused`).
        E::Refused(_) => GRIDOS_ERR_RESERVATION,
        // Bad GPID or node id text, empty argv, bad signal, malformed reservation request,
        // unknown reservation; and a node id that is neither this node nor a peer.
        E::BadRequest(_) | E::UnknownNode(_) => GRIDOS_ERR_INVALID_ARGUMENT,
        E::NodeUnreachable { .. } | E::Comm(_) => GRIDOS_ERR_NETWORK,
        E::AuthFailed(_) | E::Denied(_) => GRIDOS_ERR_PERMISSION,
        E::Timeout(_) => GRIDOS_ERR_TIMEOUT,
        // fork/exec/chdir/open on the node failed (e.g. no such program).
        E::Spawn(_) => GRIDOS_ERR_IO,
        _ => GRIDOS_ERR_OTHER,
    }
}

/// The code of a gridos-io error (its OS error by kind, its transfer errors by what
/// happened).
pub(crate) fn map_io_error(e: &gridos_io::Error) -> gridos_result {
    use gridos_io::Error as E;
    use gridos_result::*;
    match e {
        E::Io { source, .. } => io_code(source),
        E::PeerClosed { .. } | E::PeerReset { .. } => GRIDOS_ERR_NETWORK,
        E::NoSpace { .. } => GRIDOS_ERR_NO_SPACE,
        E::OffsetPastEof { .. } | E::Config(_) => GRIDOS_ERR_INVALID_ARGUMENT,
        E::FileTruncated { .. } => GRIDOS_ERR_INCOMPLETE,
        E::Cancelled { .. } => GRIDOS_ERR_CANCELLED,
        E::PathUnavailable(_) => GRIDOS_ERR_UNSUPPORTED,
        E::Compression(_) => GRIDOS_ERR_PROTOCOL,
        _ => GRIDOS_ERR_OTHER,
    }
}

impl From<gridos_pm::Error> for Failure {
    fn from(e: gridos_pm::Error) -> Failure {
        Failure::new(map_pm_error(&e), e.to_string())
    }
}

impl From<gridos_io::Error> for Failure {
    fn from(e: gridos_io::Error) -> Failure {
        Failure::new(map_io_error(&e), e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::new(io_code(&e), e.to_string())
    }
}

fn io_code(e: &std::io::Error) -> gridos_result {
    use gridos_result::*;
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotFound => GRIDOS_ERR_NOT_FOUND,
        K::PermissionDenied => GRIDOS_ERR_PERMISSION,
        K::WouldBlock => GRIDOS_ERR_WOULD_BLOCK,
        K::InvalidInput => GRIDOS_ERR_INVALID_ARGUMENT,
        K::IsADirectory => GRIDOS_ERR_IS_A_DIRECTORY,
        K::StorageFull => GRIDOS_ERR_NO_SPACE,
        K::TimedOut => GRIDOS_ERR_TIMEOUT,
        K::ConnectionRefused | K::ConnectionReset | K::BrokenPipe | K::ConnectionAborted => {
            GRIDOS_ERR_NETWORK
        }
        _ => GRIDOS_ERR_IO,
    }
}

thread_local! {
    static LAST: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last(message: &str) {
    // A message with an interior NUL is cut there rather than lost.
    let text = message.split('\0').next().unwrap_or_default();
    let c = CString::new(text).unwrap_or_default();
    LAST.with(|l| *l.borrow_mut() = c);
}

/// The message of the last failed gridos call on this thread, or "" when the last call
/// succeeded. The string stays valid until the next gridos call on this thread; do not
/// free it.
#[unsafe(no_mangle)]
pub extern "C" fn gridos_last_error_message() -> *const c_char {
    LAST.with(|l| l.borrow().as_ptr())
}

/// Runs an export's body: a clean result becomes `GRIDOS_OK`, a failure its code (with the
/// message kept for `gridos_last_error_message`), a panic `GRIDOS_ERR_PANIC`. Nothing
/// unwinds into C.
pub(crate) fn boundary(f: impl FnOnce() -> Result<(), Failure>) -> gridos_result {
    set_last("");
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(())) => gridos_result::GRIDOS_OK,
        Ok(Err(e)) => {
            set_last(&e.message);
            e.code
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            set_last(&format!("internal error (panic): {what}"));
            gridos_result::GRIDOS_ERR_PANIC
        }
    }
}

/// Like [`boundary`] for exports that return a value instead of a result: `fallback` on a
/// panic.
pub(crate) fn boundary_value<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(fallback)
}
