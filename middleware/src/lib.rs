//! # gridos-middleware — uniform access to files wherever they are
//!
//! This crate provides GASS-like middleware (GridOS paper §V-D) over gridos's FTP/GridFTP
//! stack: one [`Url`] type for local paths, `file://`, `ftp://`, `ftps://`/`ftpes://` (FTP
//! over TLS, see [`TlsOptions`]), `gridftp://` and `http(s)://` sources;
//! [`Copy`](struct@Copy), one copy in any direction with resume, verification, parallel
//! streams, pipelined trees and server-to-server (third-party) transfers; and the
//! `gridos` command line on top ([`cli`], thin front ends over the library).
//!
//! Start at [`Copy`](struct@Copy) ([`copy`] module): options in [`CopyOptions`], events to a
//! [`CopyObserver`], the result in a [`CopyReport`], failures as one [`Error`] whose
//! [`ErrorKind`] a program can match. The pieces: [`plan`] (how one FTP side moves data,
//! a pure function), [`hosts`] (what copies remember of servers: a login sent before the
//! greeting, the last rate), [`landing`] (downloads appear only when complete), [`resume`],
//! [`verify`], [`http`] (HTTP(S) sources), [`fetch`] (one URL's bytes, for the cache and
//! [`file`]).
//!
//! ```no_run
//! use gridos_middleware::{Algorithm, Copy, CopyOptions, ErrorKind, Url};
//!
//! let mut options = CopyOptions::default();
//! options.verify = Some(Algorithm::Sha256);
//! options.resume = true;
//! let copy = Copy::new(
//!     Url::parse("gridftp://data.example.org/var/runs/run7.h5")?,
//!     Url::parse("/scratch/run7.h5")?,
//! )
//! .options(options);
//! let cancel = copy.cancel_token(); // cancel.cancel() from another thread stops it
//! match copy.run() {
//!     Ok(report) => println!("{} bytes in {:.1} s", report.bytes, report.seconds),
//!     Err(e) if e.kind() == ErrorKind::ChecksumMismatch => eprintln!("corrupt: {e}"),
//!     Err(e) => return Err(e),
//! }
//! # drop(cancel);
//! # Ok::<(), gridos_middleware::Error>(())
//! ```
//!
//! A URL read and written like a local file ([`file`]), and the per-user cache that keeps
//! one fetched copy of each URL for every job that holds it ([`cache`]):
//!
//! ```no_run
//! use gridos_middleware::cache::Cache;
//! use gridos_middleware::fetch::Fetcher;
//! use gridos_middleware::file::{self, Mode, OpenOptions};
//! use gridos_middleware::Url;
//! use std::io::{Read, Write};
//!
//! let input = Url::parse("ftp://alice@data.example.org/runs/run7.csv")?;
//! let cache = Cache::open(Cache::default_dir(None)?)?;
//! // Fetched once, however many jobs add it; the path stays until job42 lets it go.
//! let local = cache.add(&input, "job42", &Fetcher::default())?;
//!
//! // Read through the same cache, and write a result that appears on close, atomically.
//! let mut text = String::new();
//! OpenOptions::new().cache(cache.clone(), "job42").open(&input)?.read_to_string(&mut text)?;
//! let mut out = file::open(&Url::parse("ftp://alice@data.example.org/runs/run7.sum")?, Mode::Write)?;
//! writeln!(out, "{} lines", text.lines().count())?;
//! out.close()?; // upload errors come back here, not lost in a drop
//! cache.cleanup_tag("job42")?;
//! # drop(local);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cache;
pub mod cli;
pub mod copy;
mod endpoint;
pub mod error;
pub mod fetch;
pub mod file;
pub mod hosts;
pub mod http;
pub mod landing;
pub mod observe;
pub mod options;
pub mod plan;
pub mod resume;
pub mod seccomp_selftest;
pub mod selftest;
pub mod url;
pub mod verify;

pub use copy::{Copy, CopyReport, DiskReport};
pub use error::{Error, ErrorKind, Result};
pub use file::{CloseReport, RemoteFile};
pub use gridos_ftp::checksum::Algorithm;
pub use gridos_io::CancelToken;
pub use hosts::HostMemoryMode;
pub use observe::CopyObserver;
pub use options::{CopyOptions, Pipeline, TlsOptions};
pub use plan::{CertCheck, TlsPlan, TransferPlan};
pub use url::{FtpTls, FtpUrl, HttpUrl, Url, UrlError};
