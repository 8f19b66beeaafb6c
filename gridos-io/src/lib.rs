//! # gridos-io — zero-copy, self-tuning network and file I/O
//!
//! The data path of gridos (paper §IV-A.1): bytes move disk → page cache → socket and back
//! without passing through user-space buffers, and TCP buffers are sized to the path's
//! bandwidth × delay.
//!
//! Where to start:
//! - [`send_file`] / [`recv_file`]: the transfer primitives (file range → socket, socket →
//!   file at an offset). Everything above (FTP, GridFTP, the middleware) uses them.
//! - [`GridSocket`]: the paper's network API (`sync_read`, `async_read`, `write`,
//!   `buffer_setopt`, `buffer_getopt`) and `tcp_info()`.
//! - [`file_read`], [`file_write`], [`file_copy`], [`copy_path`]: the file API.
//! - [`tune`]: bandwidth × delay arithmetic and the TCP_INFO monitor, free of I/O.
//! - [`IoPath`] and [`probe`]: the fallback chain io_uring splice → splice(2)/sendfile(2) →
//!   read/write, chosen at start and forcible per transfer or by configuration.
//! - [`IoConfig`]: administrator defaults (`/etc/gridos/io.toml`), changeable at run time.
//! - [`WriteBehind`]: the disk end of a receive — completed windows of the file written back
//!   and dropped from the page cache as they land, so large files arrive at a steady rate.
//! - [`compress`]: gzip/deflate streams — a user-space path by necessity.
//!
//! Like any code that writes to sockets with `sendfile(2)`/`splice(2)` (which have no
//! `MSG_NOSIGNAL`), gridos-io expects `SIGPIPE` to be ignored, so a peer that goes away is an
//! [`Error::PeerReset`] rather than a signal. Rust programs ignore it at start-up; C programs
//! must do the same (`signal(SIGPIPE, SIG_IGN)`).
//!
//! ```
//! use std::io::Write;
//! use std::net::{TcpListener, TcpStream};
//!
//! let mut src = tempfile::tempfile().unwrap();
//! src.write_all(b"hello, grid").unwrap();
//! let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//! let addr = listener.local_addr().unwrap();
//! let sender = std::thread::spawn(move || {
//!     let sock = TcpStream::connect(addr).unwrap();
//!     gridos_io::send_file(&src, 0, 11, &sock, &Default::default()).unwrap()
//! });
//! let (sock, _) = listener.accept().unwrap();
//! let dst = tempfile::tempfile().unwrap();
//! let got = gridos_io::recv_file(&sock, &dst, 0, None, &Default::default()).unwrap();
//! assert_eq!(got.bytes, 11);
//! assert_eq!(sender.join().unwrap().path, gridos_io::probe());
//! let mut buf = [0u8; 11];
//! gridos_io::file_read(&dst, 0, &mut buf).unwrap();
//! assert_eq!(&buf, b"hello, grid");
//! ```

mod config;
mod error;
mod file;
mod net;
mod path;
mod pipe;
mod pool;
mod rw;
mod stats;
mod syscall;
mod tcpinfo;
mod transfer;
mod uring;
mod writeback;

pub mod compress;
pub mod tune;

pub use config::{IoConfig, config, get_key, set_config, set_key};
pub use error::{Error, Result};
pub use file::{
    CopyMethod, CopyReport, copy_path, file_copy, file_read, file_write, filesystem_name,
};
pub use net::{BufferOpt, BufferOptName, GridSocket, SocketTuner, apply_plan, privileged};
pub use path::{IoPath, probe};
pub use pipe::{Pipe, PipePool, PooledPipe};
pub use pool::{IoPool, JobHandle};
pub use stats::{GlobalStats, TransferReport, process_cpu_time, release_free_memory, stats};
pub use tcpinfo::{TcpInfo, tcp_info};
pub use transfer::{
    CancelToken, DecisionSink, TransferOptions, recv_file, send_file, send_file_prefixed,
};
pub use writeback::{WriteBehind, WriteBehindMode, WriteBehindReport};
