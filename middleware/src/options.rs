//! What a copy may do: [`CopyOptions`], typed, with defaults that suit most transfers.

use gridos_ftp::checksum::Algorithm;
use std::path::PathBuf;
use std::time::Duration;

/// TLS (FTPS) for every FTP connection a copy, a fetch or a file handle makes.
///
/// `ftps://` (implicit) and `ftpes://` (explicit) URLs are TLS whatever these say; on
/// `ftp://` and `gridftp://` the client upgrades on its own before a password goes out
/// (when the server offers `AUTH TLS`), and [`require`](Self::require) makes TLS
/// mandatory. Server certificates are checked against the system's roots unless
/// [`ca_file`](Self::ca_file) or [`insecure`](Self::insecure) says otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsOptions {
    /// Explicit TLS required on `ftp://` and `gridftp://` URLs (`--tls`, curl's
    /// `--ssl-reqd`): a server without it is an error, never a clear connection.
    pub require: bool,
    /// Trust the CA certificates in this PEM file instead of the system's (`--cacert`).
    pub ca_file: Option<PathBuf>,
    /// Do not verify server certificates (`--insecure`): still encrypted, but anyone on the
    /// path can pose as the server. Front ends should say so every time.
    pub insecure: bool,
    /// A client certificate chain and its key, PEM (`--cert`, `--key`), for servers that
    /// log in by certificate.
    pub cert: Option<(PathBuf, PathBuf)>,
}

impl TlsOptions {
    /// Whether these differ from the defaults in a way that needs TLS settings of their own.
    pub(crate) fn customised(&self) -> bool {
        self.ca_file.is_some() || self.insecure || self.cert.is_some()
    }
}

/// Whether a tree's files are pipelined (many RETRs or STORs in flight on one control
/// connection, every file over the same MODE E data connections).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Pipeline {
    /// Pipeline trees of more than one file against servers that offer MODE E (the
    /// default).
    #[default]
    Auto,
    /// Same as `Auto`, said explicitly (`--pipeline`).
    Always,
    /// One file after the other (`--no-pipeline`).
    Never,
}

/// Options of a [`Copy`](crate::Copy). `Default` is a plain one-file copy with the
/// transfer settings chosen from the path.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CopyOptions {
    /// Copy directory trees.
    pub recursive: bool,
    /// Continue a partial destination instead of replacing it.
    pub resume: bool,
    /// Compare every file with the server's checksum of it (CKSM).
    pub verify: Option<Algorithm>,
    /// Parallel data connections (MODE E); `None` chooses from the path.
    pub parallel: Option<u32>,
    /// TCP buffer for every data connection, also asked of the server (SBUF); `None` tunes.
    pub tcp_buffer: Option<u64>,
    /// MODE E block size; `None` is the client's default (1 MiB).
    pub block_size: Option<u64>,
    /// Copy only `(offset, length)` of one file (ERET/ESTO); the part lands at the same
    /// offset of the destination.
    pub range: Option<(u64, u64)>,
    /// MODE Z (deflate on the wire).
    pub compress: bool,
    /// Stream mode (MODE S) even against servers that offer MODE E (`--stream`).
    pub stream: bool,
    /// Pipelining of trees.
    pub pipeline: Pipeline,
    /// Active mode (PORT/EPRT) for stream-mode transfers and listings.
    pub active: bool,
    /// Keep modification times (MFMT on servers, utimensat locally).
    pub preserve_times: bool,
    /// FTP → FTP: when the servers refuse a direct transfer, relay the data through this
    /// machine (`true`, the default) or fail (`false`, `--no-relay`).
    pub relay: bool,
    /// How long to keep retrying a server that answers 421 (too many connections).
    pub busy_retry: Option<Duration>,
    /// Limit for every wait on a server: connecting, each reply, and a data transfer
    /// without progress (`--timeout`); `None`: the client's defaults (30 s to connect, 60 s
    /// for a reply or for data to move).
    pub timeout: Option<Duration>,
    /// Force this machine's data path (an error if the kernel lacks it); `None`: the
    /// probe's choice.
    pub io_path: Option<gridos_io::IoPath>,
    /// TLS (FTPS) settings.
    pub tls: TlsOptions,
    /// Reserve a download's blocks before it starts when its size is known (fallocate,
    /// keeping the file's size at what has arrived): a disk too full fails before any
    /// byte moves, and the file is laid out in one piece. `false`: `--no-preallocate`.
    pub preallocate: bool,
    /// Write a download back to disk window by window and drop it from the page cache as it
    /// lands ([`gridos_io::WriteBehind`]); `None`: the machine's `io.write_behind` policy
    /// (by default on for files of 4 GiB and more). `--write-behind off|auto|on`.
    pub write_behind: Option<gridos_io::WriteBehindMode>,
    /// What is remembered of the servers between copies ([`crate::hosts`]): a login sent
    /// before the greeting of a server that answered one, a plan that starts from the rate
    /// the last copy reached. `--host-memory FILE|off`.
    pub host_memory: crate::hosts::HostMemoryMode,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            recursive: false,
            resume: false,
            verify: None,
            parallel: None,
            tcp_buffer: None,
            block_size: None,
            range: None,
            compress: false,
            stream: false,
            pipeline: Pipeline::Auto,
            active: false,
            preserve_times: false,
            relay: true,
            busy_retry: None,
            timeout: None,
            io_path: None,
            tls: TlsOptions::default(),
            preallocate: true,
            write_behind: None,
            host_memory: crate::hosts::HostMemoryMode::Default,
        }
    }
}

impl CopyOptions {
    /// Checks the options that do not fit together, before any connection is made.
    pub fn check(&self) -> crate::Result<()> {
        use crate::{Error, ErrorKind};
        if self.range.is_some() && self.recursive {
            return Err(Error::new(ErrorKind::InvalidInput, "cp")
                .detail("--offset/--length copy one file, not a tree"));
        }
        if self.compress && (self.parallel.is_some() || self.range.is_some()) {
            return Err(Error::new(ErrorKind::InvalidInput, "cp").detail(
                "--compress (MODE Z) moves one stream; it goes with neither -p nor --offset",
            ));
        }
        if self.stream
            && (self.compress
                || self.parallel.is_some()
                || self.block_size.is_some()
                || self.range.is_some())
        {
            return Err(Error::new(ErrorKind::InvalidInput, "cp").detail(
                "--stream moves one stream in MODE S; it goes with none of --compress, -p, \
                 --block-size and --offset",
            ));
        }
        if self.tls.insecure && self.tls.ca_file.is_some() {
            return Err(Error::new(ErrorKind::InvalidInput, "cp")
                .detail("--insecure checks no certificate: it goes without --cacert"));
        }
        if self.parallel == Some(0) {
            return Err(Error::new(ErrorKind::InvalidInput, "cp").detail("-p must be at least 1"));
        }
        Ok(())
    }
}
