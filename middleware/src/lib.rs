//! # gridos-middleware — uniform access to files wherever they are
//!
//! This crate provides GASS-like middleware (GridOS paper §V-D) over gridos's FTP/GridFTP
//! stack: one [`Url`] type for local paths, `file://`, `ftp://`, `gridftp://` and
//! `http(s)://` sources; [`Copy`], one copy in any direction with resume, verification,
//! parallel streams, pipelined trees and server-to-server (third-party) transfers; and the
//! `gridos` command line on top ([`cli`], thin front ends over the library).
//!
//! Start at [`Copy`] ([`copy`] module): options in [`CopyOptions`], events to a
//! [`CopyObserver`], the result in a [`CopyReport`], failures as one [`Error`] whose
//! [`ErrorKind`] a program can match. The pieces: [`plan`] (how one FTP side moves data,
//! a pure function), [`landing`] (downloads appear only when complete), [`resume`],
//! [`verify`].
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

pub mod cache;
pub mod cli;
pub mod copy;
mod endpoint;
pub mod error;
pub mod fetch;
pub mod http;
pub mod landing;
pub mod observe;
pub mod options;
pub mod plan;
pub mod resume;
pub mod selftest;
pub mod url;
pub mod verify;

pub use copy::{Copy, CopyReport};
pub use error::{Error, ErrorKind, Result};
pub use gridos_ftp::checksum::Algorithm;
pub use gridos_io::CancelToken;
pub use observe::CopyObserver;
pub use options::{CopyOptions, Pipeline};
pub use plan::TransferPlan;
pub use url::{FtpUrl, HttpUrl, Url, UrlError};
