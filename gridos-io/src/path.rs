//! The three data paths and the start-up probe that picks one.

use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// How bytes move between files and sockets.
///
/// The fallback chain, fastest first, is `Uring` → `Splice` → `ReadWrite`. [`probe`] picks the
/// best one the kernel offers; configuration (`io.path`) or
/// [`TransferOptions::path`](crate::TransferOptions) can force another.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum IoPath {
    /// Linked `IORING_OP_SPLICE` requests through a pipe: no user-space copy, few system calls.
    Uring,
    /// `sendfile(2)` for file → socket and `splice(2)` through a pipe for socket → file.
    Splice,
    /// A user-space buffer with `pread`/`write` and `read`/`pwrite`: the portable baseline.
    ReadWrite,
}

impl IoPath {
    /// All paths, fastest first.
    pub const ALL: [IoPath; 3] = [IoPath::Uring, IoPath::Splice, IoPath::ReadWrite];

    /// The stable name used in configuration, logs and stats.
    pub fn name(self) -> &'static str {
        match self {
            IoPath::Uring => "io_uring-splice",
            IoPath::Splice => "splice",
            IoPath::ReadWrite => "read-write",
        }
    }

    /// Whether this kernel supports the path (probed once, then cached).
    pub fn is_available(self) -> bool {
        match self {
            IoPath::Uring => probed().uring,
            IoPath::Splice => probed().splice,
            IoPath::ReadWrite => true,
        }
    }

    /// `Ok(self)` when available, else [`Error::PathUnavailable`].
    pub fn check(self) -> Result<IoPath> {
        if self.is_available() {
            Ok(self)
        } else {
            Err(Error::PathUnavailable(self))
        }
    }
}

impl fmt::Display for IoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for IoPath {
    type Err = Error;
    fn from_str(s: &str) -> Result<IoPath> {
        match s {
            "io_uring-splice" | "uring" | "io_uring" => Ok(IoPath::Uring),
            "splice" | "sendfile" => Ok(IoPath::Splice),
            "read-write" | "readwrite" | "rw" => Ok(IoPath::ReadWrite),
            other => Err(Error::Config(format!(
                "unknown I/O path {other:?} (expected io_uring-splice, splice or read-write)"
            ))),
        }
    }
}

struct Probed {
    uring: bool,
    splice: bool,
}

fn probed() -> &'static Probed {
    static PROBED: OnceLock<Probed> = OnceLock::new();
    PROBED.get_or_init(|| {
        let p = Probed {
            uring: probe_uring(),
            splice: probe_splice(),
        };
        tracing::debug!(
            uring = p.uring,
            splice = p.splice,
            "gridos-io: probed kernel I/O paths"
        );
        p
    })
}

/// The best path this kernel offers: io_uring splice if a ring can be created and the kernel
/// knows `IORING_OP_SPLICE`, else splice(2), else read/write. Logged once.
pub fn probe() -> IoPath {
    static BEST: OnceLock<IoPath> = OnceLock::new();
    *BEST.get_or_init(|| {
        let best = IoPath::ALL
            .into_iter()
            .find(|p| p.is_available())
            .unwrap_or(IoPath::ReadWrite);
        tracing::info!(path = %best, "gridos-io: I/O path selected by probe");
        best
    })
}

fn probe_uring() -> bool {
    let Ok(ring) = io_uring::IoUring::new(4) else {
        return false;
    };
    let mut probe = io_uring::Probe::new();
    if ring.submitter().register_probe(&mut probe).is_err() {
        return false;
    }
    probe.is_supported(io_uring::opcode::Splice::CODE)
        && probe.is_supported(io_uring::opcode::AsyncCancel::CODE)
}

fn probe_splice() -> bool {
    // Splice one byte from a pipe into another pipe: cheap, and fails with ENOSYS/EINVAL where
    // splice is missing.
    let (Ok(a), Ok(b)) = (crate::pipe::Pipe::new(4096), crate::pipe::Pipe::new(4096)) else {
        return false;
    };
    if nix::unistd::write(&a.write, b"x") != Ok(1) {
        return false;
    }
    matches!(
        nix::fcntl::splice(
            &a.read,
            None,
            &b.write,
            None,
            1,
            nix::fcntl::SpliceFFlags::empty()
        ),
        Ok(1)
    )
}
