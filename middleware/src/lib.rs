//! # gridos-middleware — uniform URL access and the `gridos` command line
//!
//! Start at [`cli`]: one module per subcommand group, each a clap `Args`/`Subcommand` type and
//! a `run` function; the binary `src/bin/gridos.rs` only parses arguments and dispatches.
//! All real work happens in the library crates (gridos-io, …) so the C API and the command line
//! call the same code.

pub mod cli;
pub mod error;
pub mod http;
pub mod selftest;
pub mod url;

pub use error::{Error, ErrorKind, Result};
pub use url::{FtpUrl, HttpUrl, Url, UrlError};
