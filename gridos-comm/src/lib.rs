//! # gridos-comm — communication methods with automatic and programmer-assisted selection
//!
//! The paper's communication module (§IV-A.2): communication operations are written once,
//! against a [`Channel`], and the method underneath is chosen per peer.
//!
//! Where to start:
//! - [`Gpid`] / [`NodeId`]: global process ids (`n1.3.41235`), shared with gridos-pm.
//! - [`Frame`]: the unit of communication, `(src GPID, dst GPID, tag, payload)`, length-prefixed
//!   on byte streams with a maximum size ([`frame`]).
//! - [`Transport`]: one trait, four methods — [`InProcTransport`], [`UnixTransport`],
//!   [`TcpTransport`], [`ParallelTcpTransport`] — each describing itself by [`Attributes`].
//! - [`Connector`]: selection. By default in-process > same host (unix) > TCP, with parallel TCP
//!   ahead of TCP for bulk traffic on paths whose bandwidth × delay is large; the programmer can
//!   name a method or give allow/deny lists ([`Preferences`]). The chosen method and the reasons
//!   are reported as a [`Selection`].
//! - [`Listener`]: the accepting side; [`PeerEvents`]: per-peer up/down events.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use gridos_comm::*;
//! let mut l = Listener::bind_inproc("doc-example", DEFAULT_MAX_FRAME).unwrap();
//! let peer = PeerInfo { name: "doc".into(), inproc: Some("doc-example".into()), ..Default::default() };
//! let (mut ch, sel) = Connector::new(Preferences::default()).connect(&peer).await.unwrap();
//! assert_eq!(sel.kind, TransportKind::InProc);
//! let (mut server, _who) = l.accept().await.unwrap();
//! let g: Gpid = "n1.1.7".parse().unwrap();
//! ch.send(&Frame { src: g.clone(), dst: g, tag: 5, payload: b"hi".to_vec() }).await.unwrap();
//! assert_eq!(server.recv(Some(5), None).await.unwrap().payload, b"hi");
//! # });
//! ```

pub mod channel;
pub mod error;
pub mod events;
pub mod frame;
pub mod gpid;
pub mod parallel;
pub mod select;
pub mod transport;

pub use channel::{Channel, FrameSink, FrameSource};
pub use error::{Error, Result};
pub use events::{PeerEvent, PeerEvents};
pub use frame::{
    DEFAULT_MAX_FRAME, Frame, FrameLimit, RESERVED_TAG_BASE, read_frame, read_frame_limited,
    write_frame,
};
pub use gpid::{Gpid, NodeId};
pub use select::{
    Attributes, BandwidthClass, LatencyClass, Locality, NotPermitted, Preferences, Selection,
    TransportKind, UnknownTransport,
};
pub use transport::{
    BoxFuture, Connector, HostId, InProcTransport, Listener, ParallelTcpTransport, PathEstimate,
    PeerIdentity, PeerInfo, TcpTransport, Transport, UnixTransport, Unreachable, request,
};
