//! The I/O-free FTP/GridFTP protocol core (the paper's `gridos_ftp_common`).
//!
//! Bytes in, typed values out; nothing here touches a socket, a file, a thread or a clock.
//!
//! - [`Session`]: the server's per-connection state machine (`handle_*` in, `poll_*` out),
//!   FTPS (`AUTH TLS`, `PBSZ`, `PROT`) included as [`TlsRules`] ask.
//! - [`Command`]: the command parser ([`Command::parse`]) and [`LineReader`] framing.
//! - [`Reply`] and [`ReplyParser`]: reply formatting and client-side parsing, plus the
//!   helpers in [`addr`] (PASV/EPSV/PORT/EPRT/SPAS), [`facts`] (MDTM times, MLSx facts) and
//!   [`markers`] (range sets, 111/112 markers).
//! - [`mode_e`]: the MODE E block codec, reassembly tracker and sender planner.
//! - [`VirtualPath`]: normalised client-visible paths that never climb above `/`.
//! - [`DataPolicy`] ([`policy`]): which hosts a session's data connections may use (PORT
//!   bounce protection and its third-party exceptions).
//! - [`Error`]: the one error type, wrapping [`ParseError`], [`ReplyError`] and
//!   [`ModeEError`].

pub mod addr;
pub mod command;
pub mod error;
pub mod facts;
pub mod line;
pub mod markers;
pub mod mode_e;
pub mod path;
pub mod policy;
pub mod reply;
pub mod session;

pub use command::{
    Command, Dcau, EpsvArg, FormatControl, ListArgs, Opts, Parallelism, ProtLevel, Restart,
    RetrOpts, SiteCommand, StripeLayout, Structure, TransferMode, TransferType, TrevEvent, Verb,
};
pub use error::{Error, ModeEError, ParseError, PassiveError, ReplyError};
pub use facts::{FactSet, Facts, FileKind};
pub use line::{LineEvent, LineReader};
pub use markers::{PerfMarker, RangeSet};
pub use path::VirtualPath;
pub use policy::{DataPolicy, DataRefusal, HostList, HostListError, IpPrefix};
pub use reply::{Reply, ReplyParser};
pub use session::{
    Action, AuthOutcome, Authenticator, DataEndpoint, DenyAll, Features, FsError, FsErrorKind,
    FsOutcome, ListKind, ListRequest, Marker, PassiveKind, REPLY_BATCH, RetrRequest, Session,
    SessionConfig, StorRequest, StoreKind, TlsEstablished, TlsRules, TransferDone, TransferError,
    TransferParams, TransferStart, UserInfo,
};
