//! # gridos-middleware — uniform URL access and the `gridos` command line
//!
//! Start at [`cli`]: one module per subcommand group, each a clap `Args`/`Subcommand` type and
//! a `run` function; the binary `src/bin/gridos.rs` only parses arguments and dispatches.
//! All real work happens in the library crates (gridos-io, …) so the C API and the command line
//! call the same code.

pub mod cli;
pub mod copy;
mod endpoint;
pub mod error;
pub mod file;
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
pub use file::{CloseReport, RemoteFile};
pub use gridos_ftp::checksum::Algorithm;
pub use gridos_io::CancelToken;
pub use observe::CopyObserver;
pub use options::{CopyOptions, Pipeline};
pub use plan::TransferPlan;
pub use url::{FtpUrl, HttpUrl, Url, UrlError};
// TEMP-SHIM
trait TmpShim {
    fn set_modified(
        &mut self,
        _p: &str,
        _t: std::time::SystemTime,
    ) -> std::result::Result<(), gridos_ftp::client::Error>;
}
impl TmpShim for gridos_ftp::client::Client {
    fn set_modified(
        &mut self,
        _p: &str,
        _t: std::time::SystemTime,
    ) -> std::result::Result<(), gridos_ftp::client::Error> {
        Ok(())
    }
}
