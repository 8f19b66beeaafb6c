//! The [`Transport`] trait, its four implementations, listeners and the [`Connector`] that
//! selects among them.

use crate::channel::{
    Channel, FrameSink, FrameSource, READ_AHEAD, SinkInner, UNTRUSTED_READ_AHEAD,
};
use crate::error::{Error, Result};
use crate::frame::{DEFAULT_MAX_FRAME, Frame, FrameLimit};
use crate::parallel::{self, ParallelListener};
use crate::select::{
    Attributes, BandwidthClass, DEFAULT_BULK_BDP, LatencyClass, Locality, Preferences, Selection,
    TransportKind,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::mpsc;

/// A boxed future (what [`Transport::connect`] returns, so the trait stays object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Identity of a host *as seen by the network stack*: the kernel boot id plus the network
/// namespace. Two endpoints with equal `HostId` can use a unix socket; endpoints in different
/// network namespaces are treated as different hosts.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HostId(pub String);

impl HostId {
    /// This process's host id.
    pub fn local() -> HostId {
        use std::os::unix::fs::MetadataExt;
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let ns = std::fs::metadata("/proc/self/ns/net")
            .map(|m| m.ino())
            .unwrap_or(0);
        HostId(format!("{}/netns:{ns}", boot.trim()))
    }
}

/// Measured or configured path characteristics, used for bulk selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathEstimate {
    /// Round-trip time in microseconds.
    pub rtt_us: u64,
    /// Bottleneck bandwidth in bits per second.
    pub bandwidth_bps: u64,
}

impl PathEstimate {
    /// Bandwidth × delay product in bytes.
    pub fn bdp_bytes(&self) -> u64 {
        (self.bandwidth_bps / 8).saturating_mul(self.rtt_us) / 1_000_000
    }
}

/// Everything known about how to reach a peer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Name for messages and events.
    pub name: String,
    /// Host identity, when known.
    pub host: Option<HostId>,
    /// In-process endpoint name.
    pub inproc: Option<String>,
    /// Unix socket path.
    pub unix: Option<PathBuf>,
    /// TCP address.
    pub tcp: Option<SocketAddr>,
    /// Parallel-TCP address.
    pub parallel_tcp: Option<SocketAddr>,
    /// Path characteristics.
    pub path: Option<PathEstimate>,
}

/// Why a transport cannot reach a peer ([`Transport::check_reach`]); the selector keeps it as
/// the reason a candidate was passed over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unreachable {
    /// The peer announced no in-process endpoint.
    #[error("peer has no in-process endpoint")]
    NoInProcEndpoint,
    /// The named in-process endpoint is not in this process.
    #[error("no endpoint {0:?} in this process")]
    NoSuchEndpoint(String),
    /// The peer announced no unix socket.
    #[error("peer has no unix socket")]
    NoUnixSocket,
    /// The peer is on another host or in another network namespace.
    #[error("peer is on another host or network namespace")]
    OtherHost,
    /// The peer did not say which host it is on.
    #[error("peer's host is unknown")]
    HostUnknown,
    /// The peer's unix socket is not on this file system.
    #[error("{} does not exist here", .0.display())]
    NoSocketFile(PathBuf),
    /// The peer announced no TCP address.
    #[error("peer has no TCP address")]
    NoTcpAddress,
    /// The peer announced no parallel-TCP address.
    #[error("peer has no parallel-TCP address")]
    NoParallelTcpAddress,
}

/// A communication method. Implementations say what they offer ([`attributes`]), whether they
/// can reach a peer ([`check_reach`]) and open [`Channel`]s; callers then use the channel the
/// same way whatever the method.
///
/// [`attributes`]: Transport::attributes
/// [`check_reach`]: Transport::check_reach
pub trait Transport: Send + Sync {
    /// Which method this is.
    fn kind(&self) -> TransportKind;
    /// What it offers.
    fn attributes(&self) -> Attributes;
    /// `Ok` if this method can reach `peer`, otherwise why not.
    fn check_reach(&self, peer: &PeerInfo) -> std::result::Result<(), Unreachable>;
    /// Opens a channel to `peer`.
    fn connect<'a>(&'a self, peer: &'a PeerInfo) -> BoxFuture<'a, Result<Channel>>;
}

/// A channel over a byte stream: frames up to `max` bytes are sent, up to `recv_max` received
/// (and a `recv_max` below `max`, a peer not yet trusted, is also given a short read-ahead).
fn stream_channel<S>(s: S, kind: TransportKind, max: u32, recv_max: u32) -> Channel
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (r, w) = tokio::io::split(s);
    let read_ahead = if recv_max < max {
        UNTRUSTED_READ_AHEAD
    } else {
        READ_AHEAD
    };
    Channel::new(
        FrameSink::new(SinkInner::Stream(Box::new(w)), max),
        FrameSource::from_stream(r, FrameLimit::new(recv_max), read_ahead),
        kind,
    )
}

// ---------------------------------------------------------------------------------------------
// In-process

type InProcAcceptor = mpsc::Sender<Channel>;
fn hub() -> &'static Mutex<HashMap<String, InProcAcceptor>> {
    static HUB: OnceLock<Mutex<HashMap<String, InProcAcceptor>>> = OnceLock::new();
    HUB.get_or_init(Default::default)
}

fn inproc_pair(max: u32) -> (Channel, Channel) {
    let (atx, arx) = mpsc::channel(64);
    let (btx, brx) = mpsc::channel(64);
    let a = Channel::new(
        FrameSink::new(SinkInner::InProc(atx), max),
        FrameSource::new(brx, FrameLimit::new(max)),
        TransportKind::InProc,
    );
    let b = Channel::new(
        FrameSink::new(SinkInner::InProc(btx), max),
        FrameSource::new(arx, FrameLimit::new(max)),
        TransportKind::InProc,
    );
    (a, b)
}

/// In-process channels, found by endpoint name in a process-wide registry.
#[derive(Clone, Debug)]
pub struct InProcTransport {
    /// Largest frame body.
    pub max_frame: u32,
}

impl Transport for InProcTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::InProc
    }
    fn attributes(&self) -> Attributes {
        Attributes {
            latency: LatencyClass::Memory,
            bandwidth: BandwidthClass::Memory,
            locality: Locality::SameProcess,
            reliable: true,
            ordered: true,
            max_message: self.max_frame,
        }
    }
    fn check_reach(&self, peer: &PeerInfo) -> std::result::Result<(), Unreachable> {
        match &peer.inproc {
            None => Err(Unreachable::NoInProcEndpoint),
            Some(n) if !hub().lock().expect("poisoned").contains_key(n) => {
                Err(Unreachable::NoSuchEndpoint(n.clone()))
            }
            Some(_) => Ok(()),
        }
    }
    fn connect<'a>(&'a self, peer: &'a PeerInfo) -> BoxFuture<'a, Result<Channel>> {
        Box::pin(async move {
            let name = peer.inproc.as_ref().ok_or(Error::Closed)?;
            let acc = hub()
                .lock()
                .expect("poisoned")
                .get(name)
                .cloned()
                .ok_or(Error::Closed)?;
            let (mine, theirs) = inproc_pair(self.max_frame);
            acc.send(theirs).await.map_err(|_| Error::Closed)?;
            Ok(mine)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Unix

/// Unix-domain stream sockets: same host only.
#[derive(Clone, Debug)]
pub struct UnixTransport {
    /// Largest frame body.
    pub max_frame: u32,
}

impl Transport for UnixTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Unix
    }
    fn attributes(&self) -> Attributes {
        Attributes {
            latency: LatencyClass::Local,
            bandwidth: BandwidthClass::Local,
            locality: Locality::SameHost,
            reliable: true,
            ordered: true,
            max_message: self.max_frame,
        }
    }
    fn check_reach(&self, peer: &PeerInfo) -> std::result::Result<(), Unreachable> {
        let Some(p) = &peer.unix else {
            return Err(Unreachable::NoUnixSocket);
        };
        match &peer.host {
            Some(h) if *h == HostId::local() => {}
            Some(_) => return Err(Unreachable::OtherHost),
            None => return Err(Unreachable::HostUnknown),
        }
        if !p.exists() {
            return Err(Unreachable::NoSocketFile(p.clone()));
        }
        Ok(())
    }
    fn connect<'a>(&'a self, peer: &'a PeerInfo) -> BoxFuture<'a, Result<Channel>> {
        Box::pin(async move {
            let p = peer.unix.as_ref().ok_or(Error::Closed)?;
            let s = UnixStream::connect(p).await?;
            Ok(stream_channel(
                s,
                TransportKind::Unix,
                self.max_frame,
                self.max_frame,
            ))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// TCP

/// One TCP connection (TCP_NODELAY set).
#[derive(Clone, Debug)]
pub struct TcpTransport {
    /// Largest frame body.
    pub max_frame: u32,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

impl Transport for TcpTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Tcp
    }
    fn attributes(&self) -> Attributes {
        Attributes {
            latency: LatencyClass::Network,
            bandwidth: BandwidthClass::SingleStream,
            locality: Locality::Network,
            reliable: true,
            ordered: true,
            max_message: self.max_frame,
        }
    }
    fn check_reach(&self, peer: &PeerInfo) -> std::result::Result<(), Unreachable> {
        peer.tcp.map(|_| ()).ok_or(Unreachable::NoTcpAddress)
    }
    fn connect<'a>(&'a self, peer: &'a PeerInfo) -> BoxFuture<'a, Result<Channel>> {
        Box::pin(async move {
            let a = peer.tcp.ok_or(Error::Closed)?;
            let s = tokio::time::timeout(self.connect_timeout, TcpStream::connect(a))
                .await
                .map_err(|_| Error::Timeout(self.connect_timeout))??;
            let _ = s.set_nodelay(true);
            Ok(stream_channel(
                s,
                TransportKind::Tcp,
                self.max_frame,
                self.max_frame,
            ))
        })
    }
}

/// Several TCP connections striped together (see [`crate::parallel`]).
#[derive(Clone, Debug)]
pub struct ParallelTcpTransport {
    /// Largest frame body.
    pub max_frame: u32,
    /// Number of streams (1–16).
    pub streams: u8,
}

impl Transport for ParallelTcpTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::ParallelTcp
    }
    fn attributes(&self) -> Attributes {
        Attributes {
            latency: LatencyClass::Network,
            bandwidth: BandwidthClass::MultiStream,
            locality: Locality::Network,
            reliable: true,
            ordered: true,
            max_message: self.max_frame,
        }
    }
    fn check_reach(&self, peer: &PeerInfo) -> std::result::Result<(), Unreachable> {
        peer.parallel_tcp
            .map(|_| ())
            .ok_or(Unreachable::NoParallelTcpAddress)
    }
    fn connect<'a>(&'a self, peer: &'a PeerInfo) -> BoxFuture<'a, Result<Channel>> {
        Box::pin(async move {
            let a = peer.parallel_tcp.ok_or(Error::Closed)?;
            parallel::connect(a, self.streams, self.max_frame).await
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Listeners

/// Who is on the other end of an accepted channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerIdentity {
    /// Same process.
    InProc,
    /// Unix socket with the peer's credentials (SO_PEERCRED).
    Unix {
        /// Peer process id, when the kernel reports it.
        pid: Option<i32>,
        /// Peer user id.
        uid: u32,
        /// Peer group id.
        gid: u32,
    },
    /// TCP (or parallel TCP) from this address.
    Net(SocketAddr),
}

enum ListenerInner {
    InProc {
        name: String,
        rx: mpsc::Receiver<Channel>,
    },
    Unix {
        l: UnixListener,
        path: PathBuf,
    },
    Tcp(TcpListener),
    Parallel(ParallelListener),
}

/// Accepts channels of one transport.
pub struct Listener {
    inner: ListenerInner,
    max_frame: u32,
    recv_max: Option<u32>,
}

impl Listener {
    /// Registers an in-process endpoint `name` (fails if taken).
    pub fn bind_inproc(name: &str, max_frame: u32) -> Result<Listener> {
        let mut h = hub().lock().expect("poisoned");
        if h.contains_key(name) {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("in-process endpoint {name:?} exists"),
            )));
        }
        let (tx, rx) = mpsc::channel(16);
        h.insert(name.to_string(), tx);
        Ok(Listener {
            inner: ListenerInner::InProc {
                name: name.into(),
                rx,
            },
            max_frame,
            recv_max: None,
        })
    }
    /// Binds a unix socket at `path` (a stale socket file is replaced).
    pub fn bind_unix(path: &Path, max_frame: u32) -> Result<Listener> {
        if path.exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
            let _ = std::fs::remove_file(path);
        }
        let l = UnixListener::bind(path)?;
        Ok(Listener {
            inner: ListenerInner::Unix {
                l,
                path: path.into(),
            },
            max_frame,
            recv_max: None,
        })
    }
    /// Binds TCP.
    pub async fn bind_tcp(addr: SocketAddr, max_frame: u32) -> Result<Listener> {
        Ok(Listener {
            inner: ListenerInner::Tcp(TcpListener::bind(addr).await?),
            max_frame,
            recv_max: None,
        })
    }
    /// Binds parallel TCP.
    pub async fn bind_parallel_tcp(addr: SocketAddr, max_frame: u32) -> Result<Listener> {
        Ok(Listener {
            inner: ListenerInner::Parallel(ParallelListener::bind(addr, max_frame).await?),
            max_frame,
            recv_max: None,
        })
    }
    /// Channels accepted from now on start with a receive limit of `max` bytes (at most the
    /// listener's maximum) instead of the full maximum; their owner raises it through
    /// [`Channel::recv_limit`] once the peer has earned it (e.g. authenticated). Byte-stream
    /// channels accepted so also read at most
    /// [`UNTRUSTED_READ_AHEAD`](crate::channel::UNTRUSTED_READ_AHEAD) frames ahead, for their
    /// whole life, so an untrusted peer costs little memory. The small
    /// limit holds from the first byte on byte-stream transports; a parallel-TCP channel is
    /// assembled before `accept` returns, so chunks that arrived earlier were checked against
    /// the full maximum.
    pub fn set_initial_recv_limit(&mut self, max: u32) {
        self.recv_max = Some(max.min(self.max_frame));
    }
    /// The transport this listener serves.
    pub fn kind(&self) -> TransportKind {
        match &self.inner {
            ListenerInner::InProc { .. } => TransportKind::InProc,
            ListenerInner::Unix { .. } => TransportKind::Unix,
            ListenerInner::Tcp(_) => TransportKind::Tcp,
            ListenerInner::Parallel(_) => TransportKind::ParallelTcp,
        }
    }
    /// Bound TCP address, for TCP listeners.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.inner {
            ListenerInner::Tcp(l) => l.local_addr().ok(),
            ListenerInner::Parallel(l) => Some(l.local_addr()),
            _ => None,
        }
    }
    /// Next channel and who is behind it.
    pub async fn accept(&mut self) -> Result<(Channel, PeerIdentity)> {
        let max = self.max_frame;
        let recv_max = self.recv_max.unwrap_or(max);
        match &mut self.inner {
            ListenerInner::InProc { rx, .. } => {
                let c = rx.recv().await.ok_or(Error::Closed)?;
                c.recv_limit().set(recv_max);
                Ok((c, PeerIdentity::InProc))
            }
            ListenerInner::Unix { l, .. } => {
                let (s, _) = l.accept().await?;
                let c = s.peer_cred()?;
                let id = PeerIdentity::Unix {
                    pid: c.pid(),
                    uid: c.uid(),
                    gid: c.gid(),
                };
                Ok((stream_channel(s, TransportKind::Unix, max, recv_max), id))
            }
            ListenerInner::Tcp(l) => {
                let (s, a) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((
                    stream_channel(s, TransportKind::Tcp, max, recv_max),
                    PeerIdentity::Net(a),
                ))
            }
            ListenerInner::Parallel(l) => {
                let (c, a) = l.accept().await?;
                c.recv_limit().set(recv_max);
                Ok((c, PeerIdentity::Net(a)))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        match &self.inner {
            ListenerInner::InProc { name, .. } => {
                hub().lock().expect("poisoned").remove(name);
            }
            ListenerInner::Unix { path, .. } => {
                let _ = std::fs::remove_file(path);
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Connector

type Rejected = Vec<(TransportKind, String)>;

/// A set of transports plus the programmer's preferences: selects a method for each peer and
/// connects with it.
///
/// ```
/// use gridos_comm::{Connector, PeerInfo, HostId, Preferences, TransportKind};
/// let c = Connector::new(Preferences::default());
/// let here = PeerInfo { name: "peer".into(), host: Some(HostId::local()),
///     unix: Some("/".into()), tcp: Some("127.0.0.1:1".parse().unwrap()), ..Default::default() };
/// assert_eq!(c.select(&here).unwrap().kind, TransportKind::Unix);
/// let deny = Connector::new(Preferences { deny: vec![TransportKind::Unix], ..Default::default() });
/// assert_eq!(deny.select(&here).unwrap().kind, TransportKind::Tcp);
/// ```
pub struct Connector {
    transports: Vec<Box<dyn Transport>>,
    prefs: Preferences,
}

impl Connector {
    /// All four transports with default settings (8 MiB frames, 4 parallel streams).
    pub fn new(prefs: Preferences) -> Self {
        Self::with_max_frame(prefs, DEFAULT_MAX_FRAME)
    }
    /// All four transports with the given maximum frame size.
    pub fn with_max_frame(prefs: Preferences, max_frame: u32) -> Self {
        Connector {
            transports: vec![
                Box::new(InProcTransport { max_frame }),
                Box::new(UnixTransport { max_frame }),
                Box::new(TcpTransport {
                    max_frame,
                    connect_timeout: Duration::from_secs(5),
                }),
                Box::new(ParallelTcpTransport {
                    max_frame,
                    streams: 4,
                }),
            ],
            prefs,
        }
    }
    /// A connector over custom transports.
    pub fn with_transports(transports: Vec<Box<dyn Transport>>, prefs: Preferences) -> Self {
        Connector { transports, prefs }
    }
    /// The preferences in force.
    pub fn preferences(&self) -> &Preferences {
        &self.prefs
    }

    fn ranked(&self, peer: &PeerInfo) -> (Vec<(usize, String)>, Rejected) {
        let threshold = if self.prefs.bulk_bdp_threshold == 0 {
            DEFAULT_BULK_BDP
        } else {
            self.prefs.bulk_bdp_threshold
        };
        let bdp = peer.path.map(|p| p.bdp_bytes());
        let bulk_parallel = self.prefs.bulk && bdp.is_some_and(|b| b >= threshold);
        let mut ok = Vec::new();
        let mut rejected = Vec::new();
        for (i, t) in self.transports.iter().enumerate() {
            let k = t.kind();
            if let Err(why) = self.prefs.permits(k) {
                rejected.push((k, why.to_string()));
                continue;
            }
            if let Err(why) = t.check_reach(peer) {
                rejected.push((k, why.to_string()));
                continue;
            }
            let (rank, reason) = match k {
                TransportKind::InProc => (0, "peer is in this process".to_string()),
                TransportKind::Unix => (1, "peer is on this host".to_string()),
                TransportKind::ParallelTcp if bulk_parallel => (
                    2,
                    format!(
                        "bulk traffic over a path with bandwidth×delay {} B ≥ {threshold} B",
                        bdp.unwrap_or(0)
                    ),
                ),
                TransportKind::Tcp => (3, "peer is reachable over the network".to_string()),
                TransportKind::ParallelTcp => (
                    4,
                    if self.prefs.bulk {
                        "only remaining method (path bandwidth×delay unknown or small)".into()
                    } else {
                        "only remaining method (traffic not marked bulk)".into()
                    },
                ),
            };
            if self.prefs.explicit == Some(k) {
                ok.push((i, 0, "explicitly requested".to_string()));
            } else {
                ok.push((i, rank, reason));
            }
        }
        ok.sort_by_key(|(_, r, _)| *r);
        (
            ok.into_iter().map(|(i, _, why)| (i, why)).collect(),
            rejected,
        )
    }

    /// Chooses a method for `peer` without connecting.
    pub fn select(&self, peer: &PeerInfo) -> Result<Selection> {
        let (ok, mut rejected) = self.ranked(peer);
        let Some((first, reason)) = ok.first() else {
            return Err(no_transport(peer, &rejected));
        };
        for (i, _) in ok.iter().skip(1) {
            rejected.push((self.transports[*i].kind(), "ranked lower".into()));
        }
        Ok(Selection {
            kind: self.transports[*first].kind(),
            reason: reason.clone(),
            rejected,
        })
    }

    /// Chooses a method and connects, falling back down the ranking when a connect fails.
    /// Returns the channel and the selection actually used.
    pub async fn connect(&self, peer: &PeerInfo) -> Result<(Channel, Selection)> {
        let (ok, mut rejected) = self.ranked(peer);
        let mut errors = Vec::new();
        for (n, (i, reason)) in ok.iter().enumerate() {
            let t = &self.transports[*i];
            match t.connect(peer).await {
                Ok(ch) => {
                    rejected.extend(errors);
                    for (j, _) in ok.iter().skip(n + 1) {
                        rejected.push((self.transports[*j].kind(), "ranked lower".into()));
                    }
                    return Ok((
                        ch,
                        Selection {
                            kind: t.kind(),
                            reason: reason.clone(),
                            rejected,
                        },
                    ));
                }
                Err(e) => errors.push((t.kind(), format!("connect failed: {e}"))),
            }
        }
        rejected.extend(errors);
        Err(no_transport(peer, &rejected))
    }
}

fn no_transport(peer: &PeerInfo, rejected: &[(TransportKind, String)]) -> Error {
    let reasons = rejected
        .iter()
        .map(|(k, w)| format!("{k}: {w}"))
        .collect::<Vec<_>>()
        .join("; ");
    Error::NoTransport {
        peer: peer.name.clone(),
        reasons,
    }
}

/// Sends a frame and waits for the first reply with `reply_tag`: a small request/response
/// helper usable over any channel.
pub async fn request(
    ch: &mut Channel,
    f: &Frame,
    reply_tag: u32,
    timeout: Duration,
) -> Result<Frame> {
    ch.send(f).await?;
    ch.recv(Some(reply_tag), Some(timeout)).await
}
