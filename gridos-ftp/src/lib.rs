//! # gridos-ftp — FTP server and client with the GridFTP extensions
//!
//! The I/O-free protocol core, [`proto`], drives both the server (control connections on
//! tokio, transfers on the gridos-io pool), [`server`], and the client, [`client`]. See
//! `DESIGN.md` (gridos-ftp).
//!
//! Where to start:
//! - [`proto::Session`]: the server's per-connection state machine. Feed it control
//!   connection bytes, write out its replies, carry out its [`proto::Action`]s and report
//!   back.
//! - [`proto::Command`]: the command parser (RFC 959, 2389, 2428, 3659, 2640 and GridFTP's
//!   GFD.20/GFD.47 commands); [`proto::Reply`] / [`proto::ReplyParser`] for replies.
//! - [`proto::mode_e`]: the MODE E block codec, reassembly and sender planning.
//! - [`server::Server::start`]: the FTP server (listener threads for control connections,
//!   the gridos-io pool for transfers, openat2-confined docroot, chroot and privilege drop,
//!   live keys over a control socket); [`server::PasswordFile`] for its users.
//! - [`client::Client`]: the blocking FTP client (login, list, get/put at offsets, mkdir,
//!   delete, rename, size/mdtm, stat, set_modified through MFMT; a busy server's 421 is
//!   retried with backoff); data connections go through gridos-io's zero-copy path. Its
//!   GridFTP side: [`client::Client::get_extended`] / [`client::Client::put_extended`] (MODE E
//!   over parallel streams, ERET/ESTO, REST ranges, SBUF), [`client::Client::get_pipelined`]
//!   (many files on reused data channels), [`client::Client::checksum`] (CKSM),
//!   [`client::Client::deflate_mode`] (MODE Z). Server-to-server copies:
//!   [`client::third_party::transfer`] (PASV/PORT or SPAS/SPOR, the client only on the
//!   control connections).
//! - [`blocks`]: MODE E on real sockets, shared by server and client; [`checksum`]: the CKSM
//!   algorithms.
//! - [`tls`]: FTPS (RFC 4217) on rustls for both sides — the server's certificate and its
//!   per-control-connection session cache (a `PROT P` data connection must resume it), the
//!   client's verification, [`tls::DataStream`] for data connections (clear ones keep the
//!   zero-copy path), grid-mapfile certificate logins.
//!
//! ```
//! use gridos_ftp::proto::{Command, Reply, ReplyParser};
//!
//! let cmd = Command::parse(b"ERET P 0 1000 /data/big file\r\n").unwrap();
//! assert_eq!(cmd, Command::Eret { offset: 0, length: 1000, path: "/data/big file".into() });
//!
//! let mut parser = ReplyParser::new();
//! parser.feed(&Reply::multi(211, ["Features:", " MDTM", "End"]).to_bytes());
//! assert_eq!(parser.poll_reply().unwrap().unwrap().lines.len(), 3);
//! ```
#![forbid(unsafe_code)]

pub mod blocks;
pub mod checksum;
pub mod client;
pub mod proto;
pub mod server;
pub mod tls;

pub use proto::Error;
