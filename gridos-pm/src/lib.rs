//! # gridos-pm — processes with global PIDs, accounting and messaging
//!
//! The paper's process-management module (§IV-A.4) and the node daemon that hosts it.
//!
//! Where to start:
//! - [`Gpid`] (re-exported from gridos-comm): `{node id, incarnation, local pid}`, written
//!   `n1.3.41235`. The incarnation is a counter persisted in the node's state directory and
//!   bumped at every start ([`procs::next_incarnation`]), so old GPIDs never alias new processes.
//! - [`node`]: the daemon — [`node::NodeConfig`], [`node::run_blocking`]. It owns a
//!   [`procs::Procs`] table (spawn / signal / wait / list, accounting records kept in memory and
//!   in `accounting.jsonl`, mailboxes, reservations from gridos-rm) and links to peer nodes.
//! - [`Client`]: what the CLI and programs use to talk to a node (unix socket locally, TCP with
//!   HMAC authentication remotely). Requests naming another node are routed by the local node.
//! - [`Mailbox`]: messaging by GPID for processes started by gridos.
//! - [`proto`]: the wire protocol (JSON envelopes in gridos-comm frames, bounded sizes).
//!
//! A process whose node disappears yields [`Error::NodeLost`] — never a made-up exit code.
//!
//! ```
//! use gridos_pm::Gpid;
//! let g: Gpid = "n1.3.41235".parse().unwrap();
//! assert_eq!(g.to_string(), "n1.3.41235");
//! let e = "n1.3".parse::<Gpid>().unwrap_err();
//! assert!(e.to_string().starts_with("malformed GPID"));
//! ```

pub mod auth;
pub mod client;
pub mod error;
pub mod node;
pub mod procs;
pub mod proto;
pub mod rpc;

pub use client::{Client, Mailbox, runtime};
pub use error::{Error, Result};
pub use gridos_comm::{Gpid, NodeId};
pub use procs::Message;
pub use proto::{ExitRecord, ExitStatus, ProcInfo, Scope, SpawnSpec, StdioSpec};
