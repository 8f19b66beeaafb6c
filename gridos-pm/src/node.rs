//! The node daemon: hosts rm and pm for one machine and serves local and remote requests.
//!
//! - A unix control socket (mode 0666): the daemon's own user (and root) may do everything;
//!   any other local process may only send and receive messages, and only as the gridos
//!   process it is (or descends from), found by SO_PEERCRED.
//! - Optionally TCP (`listen`), only with a key: every TCP connection must authenticate by
//!   HMAC challenge-response ([`crate::auth`]). Until it has, it may send only `Hello` (which
//!   then tells nothing but the node id and the challenge) and `Auth`, in frames of at most
//!   [`PRE_AUTH_MAX_FRAME`] bytes, within [`NodeConfig::handshake_timeout`]; anything else
//!   gets one refusal and the connection is closed. At most [`MAX_HANDSHAKES`] connections
//!   may be in that state at once; more are closed on arrival, so unauthenticated peers cannot
//!   take the daemon's file descriptors.
//! - Links to configured peers, authenticated the same way, over the transport the comm
//!   selector picks (unix when the peer turns out to be on this host, TCP otherwise);
//!   heartbeats detect a lost peer, and every request waiting on it fails with
//!   [`Error::NodeLost`].

use crate::auth;
use crate::error::{Error, Result};
use crate::procs::{Procs, SpawnUser};
use crate::proto::{
    self, Envelope, MAX_FRAME, MAX_MESSAGE, NodeInfo, NodeResources, PRE_AUTH_MAX_FRAME,
    PeerStatus, Request, ReservationInfo, Response, Scope, TAG_REQUEST, TAG_RESPONSE,
};
use crate::rpc::RpcConn;
use gridos_comm::{
    Channel, Connector, Frame, Gpid, HostId, Listener, NodeId, PeerEvent, PeerEvents, PeerIdentity,
    PeerInfo, Preferences, TcpTransport, Transport, TransportKind,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};

/// Heartbeat period on peer links.
pub const HEARTBEAT: Duration = Duration::from_millis(500);
/// A peer that has not answered a heartbeat for this long is lost.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);
/// Requests in flight per connection.
pub const MAX_INFLIGHT: usize = 256;
/// Default for [`NodeConfig::handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Network connections that may be authenticating at the same time.
pub const MAX_HANDSHAKES: usize = 512;
/// `Hello` requests a network peer may send before it authenticates.
pub const MAX_PRE_AUTH_HELLOS: u32 = 4;
/// Client nonces of successful authentications remembered, to refuse one seen again.
pub const NONCE_LOG: usize = 4096;
/// How long a closing unauthenticated connection may take to read its last responses.
const DRAIN: Duration = Duration::from_secs(5);

/// How to run a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Node id.
    pub node_id: NodeId,
    /// TCP address to listen on (requires `key`).
    pub listen: Option<SocketAddr>,
    /// Peers.
    pub peers: Vec<(NodeId, SocketAddr)>,
    /// Shared key for HMAC authentication.
    pub key: Option<Vec<u8>>,
    /// Unix control socket.
    pub ctl_socket: PathBuf,
    /// User for children when the daemon runs as root (default `nobody`).
    pub spawn_user: Option<String>,
    /// Where the incarnation counter and accounting records live.
    pub state_dir: PathBuf,
    /// Transport preferences for peer links.
    pub transport: Preferences,
    /// A network connection that has not authenticated within this time is closed.
    pub handshake_timeout: Duration,
}

/// Directory for sockets: `/run/gridos` for root, else `$XDG_RUNTIME_DIR/gridos` or
/// `/tmp/gridos-UID`.
pub fn default_run_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return "/run/gridos".into();
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => Path::new(&d).join("gridos"),
        None => format!("/tmp/gridos-{}", nix::unistd::geteuid()).into(),
    }
}

/// The default control socket, `<run dir>/node.sock`.
pub fn default_ctl_socket() -> PathBuf {
    default_run_dir().join("node.sock")
}

/// The default state directory: `/var/lib/gridos/ID` for root, else
/// `$XDG_STATE_HOME/gridos/ID` or `~/.local/state/gridos/ID`.
pub fn default_state_dir(node: &NodeId) -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return Path::new("/var/lib/gridos").join(node.as_str());
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(&std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
                .join(".local/state")
        });
    base.join("gridos").join(node.as_str())
}

impl NodeConfig {
    /// A configuration with defaults for everything but the id.
    pub fn new(node_id: NodeId) -> Self {
        NodeConfig {
            state_dir: default_state_dir(&node_id),
            node_id,
            listen: None,
            peers: vec![],
            key: None,
            ctl_socket: default_ctl_socket(),
            spawn_user: None,
            transport: Preferences::default(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

struct PeerSlot {
    id: NodeId,
    addr: SocketAddr,
    link: Mutex<Option<Arc<RpcConn>>>,
    status: Mutex<PeerStatus>,
    ever_up: AtomicBool,
}

/// A running node.
pub struct Node {
    cfg: NodeConfig,
    procs: Arc<Procs>,
    peers: HashMap<String, Arc<PeerSlot>>,
    events: PeerEvents,
    host: HostId,
    listen_addr: Option<SocketAddr>,
    me: Gpid,
    spawn_note: Option<String>,
    handshakes: Arc<Semaphore>,
    nonces: Mutex<NonceLog>,
}

/// Client nonces of recent successful authentications, oldest first out.
///
/// The per-connection challenge already makes a recorded `Auth` useless on another
/// connection; this also refuses a nonce seen again, so a client whose random source repeats
/// itself is noticed rather than trusted.
#[derive(Default)]
struct NonceLog {
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl NonceLog {
    /// Records `nonce`; `false` if it was already there.
    fn insert(&mut self, nonce: &str) -> bool {
        if self.seen.contains(nonce) {
            return false;
        }
        if self.order.len() >= NONCE_LOG {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(nonce.to_string());
        self.order.push_back(nonce.to_string());
        true
    }
}

/// What a connection that has not authenticated gets for one frame.
enum Handshake {
    /// Answer and keep reading.
    Reply(u64, Response),
    /// Answer, then close the connection.
    Close(u64, Response),
}

struct Conn {
    ident: PeerIdentity,
    challenge: String,
    authed: Mutex<Option<String>>,
    auth_tried: AtomicBool,
    privileged_local: bool,
}

fn err_resp(e: Error) -> (Response, Vec<u8>) {
    (Response::Error { error: e }, Vec::new())
}

impl Node {
    /// The node's id.
    pub fn id(&self) -> &NodeId {
        &self.cfg.node_id
    }
    /// The node's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.procs.incarnation()
    }
    /// The process table.
    pub fn procs(&self) -> &Arc<Procs> {
        &self.procs
    }
    /// Per-peer up/down events.
    pub fn events(&self) -> &PeerEvents {
        &self.events
    }

    fn info(&self, challenge: &str) -> NodeInfo {
        let mut enforcement = self.procs.enforcer().describe();
        if let Some(n) = &self.spawn_note {
            enforcement.push_str("; ");
            enforcement.push_str(n);
        }
        NodeInfo {
            node: self.cfg.node_id.to_string(),
            incarnation: self.procs.incarnation(),
            host: self.host.clone(),
            ctl_socket: self.cfg.ctl_socket.clone(),
            listen: self.listen_addr.map(|a| a.to_string()),
            auth: self.cfg.key.is_some(),
            challenge: challenge.to_string(),
            enforcement,
            peers: self
                .peers
                .values()
                .map(|p| p.status.lock().expect("poisoned").clone())
                .collect(),
        }
    }

    /// What a network peer that has not authenticated may know: enough to authenticate.
    fn public_info(&self, challenge: &str) -> NodeInfo {
        NodeInfo {
            node: self.cfg.node_id.to_string(),
            incarnation: 0,
            host: HostId(String::new()),
            ctl_socket: PathBuf::new(),
            listen: None,
            auth: self.cfg.key.is_some(),
            challenge: challenge.to_string(),
            enforcement: String::new(),
            peers: vec![],
        }
    }

    /// One frame from a network peer that has not authenticated: only `Hello` (a few times)
    /// and `Auth` are answered; anything else, or a failed `Auth`, closes the connection.
    fn handshake(&self, conn: &Conn, f: &Frame, hellos: &mut u32) -> Handshake {
        let refuse = |id, e: Error| Handshake::Close(id, Response::Error { error: e });
        if f.tag != TAG_REQUEST {
            return refuse(
                0,
                Error::BadRequest(format!(
                    "unexpected frame tag {:#x} before authentication; closing connection",
                    f.tag
                )),
            );
        }
        let env = match proto::decode::<Request>(&f.payload) {
            Ok((env, _)) => env,
            Err(e) => return refuse(0, e),
        };
        match env.body {
            Request::Hello if *hellos < MAX_PRE_AUTH_HELLOS => {
                *hellos += 1;
                Handshake::Reply(
                    env.id,
                    Response::Hello {
                        info: self.public_info(&conn.challenge),
                    },
                )
            }
            Request::Hello => refuse(
                env.id,
                Error::Denied(format!(
                    "more than {MAX_PRE_AUTH_HELLOS} Hello before authentication; closing connection"
                )),
            ),
            Request::Auth { client, nonce, mac } => {
                match self.authenticate(conn, &client, &nonce, &mac) {
                    Ok(r) => Handshake::Reply(env.id, r),
                    Err(e) => {
                        tracing::warn!(%e, peer = ?conn.ident, "authentication failed");
                        refuse(env.id, e)
                    }
                }
            }
            _ => refuse(
                env.id,
                Error::Denied(
                    "authenticate first (HMAC challenge-response); closing connection".into(),
                ),
            ),
        }
    }

    fn peer(&self, node: &str) -> Result<Arc<RpcConn>> {
        let slot = self
            .peers
            .get(node)
            .ok_or_else(|| Error::UnknownNode(node.to_string()))?;
        if let Some(l) = slot.link.lock().expect("poisoned").as_ref() {
            if !l.is_closed() {
                return Ok(l.clone());
            }
        }
        let last = slot
            .status
            .lock()
            .expect("poisoned")
            .last_error
            .clone()
            .unwrap_or_else(|| "no connection".into());
        if slot.ever_up.load(Ordering::Relaxed) {
            Err(Error::NodeLost {
                node: node.into(),
                detail: format!("link down: {last}"),
            })
        } else {
            Err(Error::NodeUnreachable {
                node: node.into(),
                detail: last,
            })
        }
    }

    fn is_me(&self, node: &Option<String>) -> bool {
        node.as_deref()
            .is_none_or(|n| n == self.cfg.node_id.as_str())
    }

    async fn forward(
        &self,
        node: &str,
        req: Request,
        blob: &[u8],
        timeout: Option<Duration>,
    ) -> (Response, Vec<u8>) {
        match self.peer(node) {
            Ok(link) => match link.call(req, blob, timeout).await {
                Ok(r) => r,
                Err(e) => err_resp(e),
            },
            Err(e) => err_resp(e),
        }
    }

    fn resources(&self) -> Result<NodeResources> {
        let l = self.procs.ledger();
        Ok(NodeResources {
            node: self.cfg.node_id.to_string(),
            resources: gridos_rm::query()?,
            capacity: l.capacity(),
            reserved: l.reserved(),
            reservations: l
                .list()
                .into_iter()
                .map(|r| ReservationInfo {
                    id: format!("{}@{}", r.id, self.cfg.node_id),
                    reservation: r,
                })
                .collect(),
            enforcement: self.procs.enforcer().describe(),
        })
    }

    async fn handle(
        self: &Arc<Self>,
        conn: &Conn,
        req: Request,
        blob: Vec<u8>,
    ) -> (Response, Vec<u8>) {
        const FWD: Option<Duration> = Some(Duration::from_secs(30));
        match req {
            Request::Hello => {
                // Network peers reach here only authenticated (see `serve`); stay safe anyway.
                let public = matches!(conn.ident, PeerIdentity::Net(_))
                    && conn.authed.lock().expect("poisoned").is_none();
                let info = if public {
                    self.public_info(&conn.challenge)
                } else {
                    self.info(&conn.challenge)
                };
                (Response::Hello { info }, vec![])
            }
            Request::Ping => (Response::Pong, vec![]),
            Request::Auth { .. } => err_resp(Error::BadRequest(
                "authentication is handled in order".into(),
            )),
            Request::Spawn { node, spec } => {
                if self.is_me(&node) {
                    match self.procs.spawn(spec).await {
                        Ok((gpid, enforcement)) => {
                            (Response::Spawned { gpid, enforcement }, vec![])
                        }
                        Err(e) => err_resp(e),
                    }
                } else {
                    let n = node.unwrap_or_default();
                    self.forward(&n, Request::Spawn { node: None, spec }, &[], FWD)
                        .await
                }
            }
            Request::Signal { gpid, signal } => {
                if gpid.node() == &self.cfg.node_id {
                    match self.procs.signal(&gpid, signal) {
                        Ok(()) => (Response::Ok, vec![]),
                        Err(e) => err_resp(e),
                    }
                } else {
                    let n = gpid.node().to_string();
                    self.forward(&n, Request::Signal { gpid, signal }, &[], FWD)
                        .await
                }
            }
            Request::Wait { gpid, timeout_ms } => {
                let t = timeout_ms.map(Duration::from_millis);
                if gpid.node() == &self.cfg.node_id {
                    match self.procs.wait(&gpid, t).await {
                        Ok(record) => (
                            Response::Exited {
                                record: Box::new(record),
                            },
                            vec![],
                        ),
                        Err(e) => err_resp(e),
                    }
                } else {
                    let n = gpid.node().to_string();
                    // No transport timeout: the heartbeat ends the wait if the node is lost.
                    self.forward(&n, Request::Wait { gpid, timeout_ms }, &[], None)
                        .await
                }
            }
            Request::List { scope } => match scope {
                Scope::Local => (
                    Response::List {
                        procs: self.procs.list(),
                        errors: vec![],
                    },
                    vec![],
                ),
                Scope::Node(n) if n == self.cfg.node_id.as_str() => (
                    Response::List {
                        procs: self.procs.list(),
                        errors: vec![],
                    },
                    vec![],
                ),
                Scope::Node(n) => {
                    self.forward(
                        &n,
                        Request::List {
                            scope: Scope::Local,
                        },
                        &[],
                        FWD,
                    )
                    .await
                }
                Scope::All => {
                    let mut procs = self.procs.list();
                    let mut errors = vec![];
                    let mut names: Vec<&String> = self.peers.keys().collect();
                    names.sort();
                    let mut set = tokio::task::JoinSet::new();
                    for n in names {
                        let (n, this) = (n.clone(), self.clone());
                        set.spawn(async move {
                            let r = this
                                .forward(
                                    &n,
                                    Request::List {
                                        scope: Scope::Local,
                                    },
                                    &[],
                                    Some(Duration::from_secs(5)),
                                )
                                .await;
                            (n, r)
                        });
                    }
                    let mut results = Vec::new();
                    while let Some(Ok(r)) = set.join_next().await {
                        results.push(r);
                    }
                    results.sort_by(|a, b| a.0.cmp(&b.0));
                    for (n, (r, _)) in results {
                        match r {
                            Response::List {
                                procs: p,
                                errors: e,
                            } => {
                                procs.extend(p);
                                errors.extend(e);
                            }
                            Response::Error { error } => errors.push(format!("{n}: {error}")),
                            _ => errors.push(format!("{n}: unexpected response")),
                        }
                    }
                    (Response::List { procs, errors }, vec![])
                }
            },
            Request::Resources { node } => {
                if self.is_me(&node) {
                    match self.resources() {
                        Ok(r) => (
                            Response::Resources {
                                report: Box::new(r),
                            },
                            vec![],
                        ),
                        Err(e) => err_resp(e),
                    }
                } else {
                    let n = node.unwrap_or_default();
                    self.forward(&n, Request::Resources { node: None }, &[], FWD)
                        .await
                }
            }
            Request::Reserve { node, request } => {
                if self.is_me(&node) {
                    let res = self.procs.ledger().reserve(request);
                    match res {
                        Ok(r) => (
                            Response::Reserved {
                                info: ReservationInfo {
                                    id: format!("{}@{}", r.id, self.cfg.node_id),
                                    reservation: r,
                                },
                            },
                            vec![],
                        ),
                        Err(e) => err_resp(e.into()),
                    }
                } else {
                    let n = node.unwrap_or_default();
                    self.forward(
                        &n,
                        Request::Reserve {
                            node: None,
                            request,
                        },
                        &[],
                        FWD,
                    )
                    .await
                }
            }
            Request::Release { rid } => {
                let (local, node) = match rid.split_once('@') {
                    Some((r, n)) => (r.to_string(), n.to_string()),
                    None => (rid.clone(), self.cfg.node_id.to_string()),
                };
                if node == self.cfg.node_id.as_str() {
                    match self.procs.release(&local) {
                        Ok(_) => (Response::Ok, vec![]),
                        Err(e) => err_resp(e),
                    }
                } else {
                    self.forward(
                        &node,
                        Request::Release {
                            rid: format!("{local}@{node}"),
                        },
                        &[],
                        FWD,
                    )
                    .await
                }
            }
            Request::Send { dst, tag } => {
                let src = match self.caller_gpid(conn) {
                    Ok(g) => g,
                    Err(e) => return err_resp(e),
                };
                if blob.len() > MAX_MESSAGE {
                    return err_resp(Error::BadRequest(format!(
                        "message of {} bytes exceeds {MAX_MESSAGE}",
                        blob.len()
                    )));
                }
                if tag >= gridos_comm::RESERVED_TAG_BASE {
                    return err_resp(Error::BadRequest(format!("tag {tag:#x} is reserved")));
                }
                if dst.node() == &self.cfg.node_id {
                    match self.procs.deliver(src, &dst, tag, blob) {
                        Ok(()) => (Response::Ok, vec![]),
                        Err(e) => err_resp(e),
                    }
                } else {
                    let n = dst.node().to_string();
                    self.forward(&n, Request::Deliver { src, dst, tag }, &blob, FWD)
                        .await
                }
            }
            Request::Deliver { src, dst, tag } => {
                let from = conn.authed.lock().expect("poisoned").clone();
                if from.as_deref() != Some(src.node().as_str()) {
                    return err_resp(Error::Denied(format!(
                        "only node {} may deliver messages from {src}",
                        src.node()
                    )));
                }
                match self.procs.deliver(src, &dst, tag, blob) {
                    Ok(()) => (Response::Ok, vec![]),
                    Err(e) => err_resp(e),
                }
            }
            Request::Recv { tag, timeout_ms } => {
                let me = match self.caller_gpid(conn) {
                    Ok(g) => g,
                    Err(e) => return err_resp(e),
                };
                let mb = match self.procs.mailbox(&me) {
                    Ok(m) => m,
                    Err(e) => return err_resp(e),
                };
                match mb.recv(tag, timeout_ms.map(Duration::from_millis)).await {
                    Ok(m) => (
                        Response::Message {
                            src: m.src,
                            tag: m.tag,
                        },
                        m.payload,
                    ),
                    Err(e) => err_resp(e),
                }
            }
        }
    }

    fn caller_gpid(&self, conn: &Conn) -> Result<Gpid> {
        match conn.ident {
            PeerIdentity::Unix { pid: Some(pid), .. } => {
                self.procs.identify(pid as u32).ok_or_else(|| {
                    Error::Denied(format!(
                        "process {pid} was not started by gridos on node {}",
                        self.cfg.node_id
                    ))
                })
            }
            _ => Err(Error::Denied(
                "messages are sent and received through the local node's unix socket".into(),
            )),
        }
    }

    fn allowed(&self, conn: &Conn, req: &Request) -> Result<()> {
        match req {
            Request::Hello | Request::Ping | Request::Auth { .. } => Ok(()),
            _ if matches!(conn.ident, PeerIdentity::Net(_))
                && conn.authed.lock().expect("poisoned").is_none() =>
            {
                Err(Error::Denied(
                    "authenticate first (HMAC challenge-response)".into(),
                ))
            }
            Request::Send { .. } | Request::Recv { .. } => Ok(()),
            Request::Deliver { .. } => {
                if conn.authed.lock().expect("poisoned").is_some() {
                    Ok(())
                } else {
                    Err(Error::Denied("only authenticated nodes may deliver".into()))
                }
            }
            _ => {
                if conn.privileged_local || conn.authed.lock().expect("poisoned").is_some() {
                    Ok(())
                } else {
                    Err(Error::Denied(
                        "only the node's own user (or an authenticated node/client) may do this; processes may only send and receive messages".into(),
                    ))
                }
            }
        }
    }

    fn authenticate(&self, conn: &Conn, client: &str, nonce: &str, mac: &str) -> Result<Response> {
        let Some(key) = &self.cfg.key else {
            return Err(Error::AuthFailed(format!(
                "node {} has no key configured",
                self.cfg.node_id
            )));
        };
        if conn.auth_tried.swap(true, Ordering::SeqCst) {
            return Err(Error::AuthFailed(
                "only one authentication attempt per connection".into(),
            ));
        }
        if !(32..=128).contains(&nonce.len()) || client.is_empty() || client.len() > 128 {
            return Err(Error::AuthFailed("malformed nonce or client name".into()));
        }
        let server = self.cfg.node_id.as_str();
        if !auth::verify_client(key, &conn.challenge, nonce, client, server, mac) {
            return Err(Error::AuthFailed(format!(
                "bad HMAC from {client:?} (wrong key, or not computed over this connection's challenge)"
            )));
        }
        if !self.nonces.lock().expect("poisoned").insert(nonce) {
            return Err(Error::AuthFailed(format!(
                "nonce from {client:?} was already used"
            )));
        }
        *conn.authed.lock().expect("poisoned") = Some(client.to_string());
        Ok(Response::AuthOk {
            mac: auth::server_mac(key, &conn.challenge, nonce, client, server),
        })
    }

    async fn serve(self: Arc<Self>, ch: Channel, ident: PeerIdentity) {
        let must_auth = matches!(ident, PeerIdentity::Net(_));
        // Held until the peer has authenticated (or, failing that, until the socket closes).
        let mut handshake_slot = if must_auth {
            match self.handshakes.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    tracing::warn!(peer = ?ident, "{MAX_HANDSHAKES} connections authenticating already; closing");
                    return;
                }
            }
        } else {
            None
        };
        let privileged_local = match ident {
            PeerIdentity::InProc => true,
            PeerIdentity::Unix { uid, .. } => uid == 0 || uid == nix::unistd::geteuid().as_raw(),
            PeerIdentity::Net(_) => false,
        };
        let conn = Arc::new(Conn {
            ident,
            challenge: auth::random_hex(32),
            authed: Mutex::new(None),
            auth_tried: AtomicBool::new(false),
            privileged_local,
        });
        let (mut sink, mut source) = ch.into_split();
        let (tx, mut rx) = mpsc::channel::<Frame>(64);
        let writer = tokio::spawn(async move {
            while let Some(f) = rx.recv().await {
                if sink.send(&f).await.is_err() {
                    break;
                }
            }
        });
        let me = self.me.clone();
        let reply = move |tx: &mpsc::Sender<Frame>,
                          dst: Gpid,
                          id: u64,
                          (body, blob): (Response, Vec<u8>)| {
            let tx = tx.clone();
            let me = me.clone();
            async move {
                match proto::encode(&Envelope { id, body }, &blob) {
                    Ok(payload) => {
                        let _ = tx
                            .send(Frame {
                                src: me,
                                dst,
                                tag: TAG_RESPONSE,
                                payload,
                            })
                            .await;
                    }
                    Err(e) => tracing::warn!(%e, "cannot encode response"),
                }
            }
        };
        let sem = Arc::new(Semaphore::new(MAX_INFLIGHT));
        let deadline = tokio::time::Instant::now() + self.cfg.handshake_timeout;
        let mut hellos = 0;
        let mut pending_auth = must_auth;
        loop {
            let got = if pending_auth {
                match tokio::time::timeout_at(deadline, source.recv(None, None)).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::info!(peer = ?conn.ident, "handshake not finished in time; closing");
                        let err = Error::Timeout(format!(
                            "not authenticated within {:?}; closing connection",
                            self.cfg.handshake_timeout
                        ));
                        reply(&tx, Gpid::anonymous(), 0, err_resp(err)).await;
                        break;
                    }
                }
            } else {
                source.recv(None, None).await
            };
            let f = match got {
                Ok(f) => f,
                Err(gridos_comm::Error::Closed) => break,
                Err(e) => {
                    // Oversized or malformed frame: say so, then close (the stream cannot be
                    // resynchronised).
                    tracing::info!(%e, "closing connection after bad frame");
                    let err = Error::BadRequest(format!("{e}; closing connection"));
                    reply(&tx, Gpid::anonymous(), 0, err_resp(err)).await;
                    break;
                }
            };
            if pending_auth {
                match self.handshake(&conn, &f, &mut hellos) {
                    Handshake::Reply(id, r) => {
                        if conn.authed.lock().expect("poisoned").is_some() {
                            // Authenticated: full-size frames from the next one on, and the
                            // slot is free for another peer.
                            source.recv_limit().set(MAX_FRAME);
                            drop(handshake_slot.take());
                            pending_auth = false;
                        }
                        reply(&tx, f.src, id, (r, vec![])).await;
                        continue;
                    }
                    Handshake::Close(id, r) => {
                        reply(&tx, f.src, id, (r, vec![])).await;
                        break;
                    }
                }
            }
            if f.tag != TAG_REQUEST {
                let err = Error::BadRequest(format!(
                    "unexpected frame tag {:#x} on a control connection",
                    f.tag
                ));
                reply(&tx, f.src, 0, err_resp(err)).await;
                continue;
            }
            let (env, blob) = match proto::decode::<Request>(&f.payload) {
                Ok(x) => x,
                Err(e) => {
                    reply(&tx, f.src, 0, err_resp(e)).await;
                    continue;
                }
            };
            if let Err(e) = self.allowed(&conn, &env.body) {
                reply(&tx, f.src, env.id, err_resp(e)).await;
                continue;
            }
            if let Request::Auth { client, nonce, mac } = &env.body {
                match self.authenticate(&conn, client, nonce, mac) {
                    Ok(r) => reply(&tx, f.src, env.id, (r, vec![])).await,
                    Err(e) => {
                        tracing::warn!(%e, "authentication failed");
                        reply(&tx, f.src, env.id, err_resp(e)).await;
                        break;
                    }
                }
                continue;
            }
            let Ok(permit) = sem.clone().acquire_owned().await else {
                break;
            };
            let this = self.clone();
            let conn = conn.clone();
            let tx = tx.clone();
            let reply = reply.clone();
            tokio::spawn(async move {
                let r = this.handle(&conn, env.body, blob).await;
                reply(&tx, f.src, env.id, r).await;
                drop(permit);
            });
        }
        // Stop reading and let the last responses out; the socket closes with the last half.
        // A peer that never authenticated gets `DRAIN` to read them (it may not read at all);
        // an authenticated one gets the answers to everything it asked.
        drop(source);
        drop(tx);
        let mut writer = writer;
        if pending_auth {
            if tokio::time::timeout(DRAIN, &mut writer).await.is_err() {
                writer.abort();
            }
        } else {
            let _ = writer.await;
        }
    }

    async fn accept_loop(self: Arc<Self>, mut l: Listener) {
        loop {
            match l.accept().await {
                Ok((ch, ident)) => {
                    tokio::spawn(self.clone().serve(ch, ident));
                }
                Err(e) => {
                    tracing::warn!(%e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn link_loop(self: Arc<Self>, slot: Arc<PeerSlot>) {
        loop {
            slot.status.lock().expect("poisoned").state = "connecting".into();
            match self.connect_peer(&slot).await {
                Ok((conn, info, sel)) => {
                    let conn = Arc::new(conn);
                    *slot.link.lock().expect("poisoned") = Some(conn.clone());
                    slot.ever_up.store(true, Ordering::Relaxed);
                    {
                        let mut s = slot.status.lock().expect("poisoned");
                        s.state = "up".into();
                        s.method = Some(conn.method());
                        s.selection = Some(sel);
                        s.incarnation = Some(info.incarnation);
                        s.last_error = None;
                    }
                    self.events.emit(PeerEvent::Up {
                        peer: slot.id.to_string(),
                        method: conn.method(),
                    });
                    tracing::info!(peer = %slot.id, method = %conn.method(), incarnation = info.incarnation, "peer up");
                    let reason = loop {
                        tokio::select! {
                            _ = conn.closed() => break "connection closed".to_string(),
                            _ = tokio::time::sleep(HEARTBEAT) => {}
                        }
                        if let Err(e) = conn.call(Request::Ping, &[], Some(HEARTBEAT_TIMEOUT)).await
                        {
                            break format!("heartbeat failed: {e}");
                        }
                    };
                    conn.abort(&reason);
                    *slot.link.lock().expect("poisoned") = None;
                    {
                        let mut s = slot.status.lock().expect("poisoned");
                        s.state = "down".into();
                        s.last_error = Some(reason.clone());
                    }
                    self.events.emit(PeerEvent::Down {
                        peer: slot.id.to_string(),
                        reason: reason.clone(),
                    });
                    tracing::warn!(peer = %slot.id, %reason, "peer lost");
                }
                Err(e) => {
                    let mut s = slot.status.lock().expect("poisoned");
                    s.state = "down".into();
                    s.last_error = Some(e.to_string());
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn connect_peer(&self, slot: &PeerSlot) -> Result<(RpcConn, NodeInfo, String)> {
        let key = self
            .cfg
            .key
            .as_ref()
            .ok_or_else(|| Error::Config("peers need a key".into()))?;
        let peer_id = slot.id.clone();
        let mk = |ch: Channel| {
            let node = peer_id.to_string();
            RpcConn::start(
                ch,
                self.me.clone(),
                Gpid::daemon(peer_id.clone(), 0),
                move |reason| Error::NodeLost {
                    node: node.clone(),
                    detail: reason,
                },
            )
        };
        // First contact is always by TCP, the only address configured; the peer's Hello tells
        // where it is, and the selector then picks the method for the link.
        let tcp = TcpTransport {
            max_frame: MAX_FRAME,
            connect_timeout: Duration::from_secs(3),
        };
        let mut pi = PeerInfo {
            name: peer_id.to_string(),
            tcp: Some(slot.addr),
            ..Default::default()
        };
        let ch = tcp.connect(&pi).await?;
        let first = mk(ch);
        // The peer tells where it is only once we have authenticated.
        let me = self.cfg.node_id.as_str();
        let info = client_auth(&first, key, me).await?;
        if info.node != peer_id.as_str() {
            return Err(Error::Config(format!(
                "{} is node {:?}, not {peer_id}",
                slot.addr, info.node
            )));
        }
        pi.host = Some(info.host.clone());
        pi.unix = Some(info.ctl_socket.clone());
        let connector = Connector::with_max_frame(self.cfg.transport.clone(), MAX_FRAME);
        let sel = connector.select(&pi)?;
        let (conn, info) = if sel.kind == TransportKind::Tcp {
            (first, info)
        } else {
            let (ch, _) = connector.connect(&pi).await?;
            let conn = mk(ch);
            let info = client_auth(&conn, key, me).await?;
            (conn, info)
        };
        Ok((conn, info, sel.to_string()))
    }
}

/// Authenticates on `conn` with `key` as `client`; returns the server's info.
pub async fn client_auth(conn: &RpcConn, key: &[u8], client: &str) -> Result<NodeInfo> {
    let (r, _) = conn
        .call(Request::Hello, &[], Some(Duration::from_secs(5)))
        .await?;
    let Response::Hello { info } = r else {
        return Err(Error::Comm("unexpected reply to Hello".into()));
    };
    if !info.auth {
        return Err(Error::AuthFailed(format!(
            "node {} has no key configured",
            info.node
        )));
    }
    let nonce = auth::random_hex(32);
    let mac = auth::client_mac(key, &info.challenge, &nonce, client, &info.node);
    let (r, _) = conn
        .call(
            Request::Auth {
                client: client.into(),
                nonce: nonce.clone(),
                mac,
            },
            &[],
            Some(Duration::from_secs(5)),
        )
        .await?;
    let Response::AuthOk { mac } = r else {
        return Err(Error::Comm("unexpected reply to Auth".into()));
    };
    if !auth::verify_server(key, &info.challenge, &nonce, client, &info.node, &mac) {
        return Err(Error::AuthFailed(format!(
            "node {} could not prove it holds the key",
            info.node
        )));
    }
    // Before authentication a node tells only its id and the challenge; now everything.
    let (r, _) = conn
        .call(Request::Hello, &[], Some(Duration::from_secs(5)))
        .await?;
    match r {
        Response::Hello { info: full } if full.node == info.node => Ok(full),
        _ => Err(Error::Comm("unexpected reply to Hello".into())),
    }
}

fn disk_capacity(dir: &Path) -> u64 {
    let Ok(disks) = gridos_rm::disks() else {
        return 0;
    };
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    disks
        .into_iter()
        .filter(|d| dir.starts_with(&d.mount))
        .max_by_key(|d| d.mount.len())
        .map(|d| d.available_bytes)
        .unwrap_or(0)
}

/// Starts a node and runs it until `shutdown` resolves.
pub async fn run(cfg: NodeConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    let node = start(cfg).await?;
    shutdown.await;
    tracing::info!(node = %node.cfg.node_id, "shutting down");
    let _ = std::fs::remove_file(&node.cfg.ctl_socket);
    Ok(())
}

/// Starts a node's listeners and links and returns it; it runs until the runtime ends.
pub async fn start(cfg: NodeConfig) -> Result<Arc<Node>> {
    if cfg.key.is_none() && cfg.listen.is_some() {
        return Err(Error::Config(
            "--listen needs --key: without a key a node accepts only local requests on its unix socket".into(),
        ));
    }
    if cfg.key.is_none() && !cfg.peers.is_empty() {
        return Err(Error::Config(
            "--peer needs --key: node-to-node traffic is always authenticated".into(),
        ));
    }
    for (p, _) in &cfg.peers {
        if *p == cfg.node_id {
            return Err(Error::Config(format!("peer {p} has this node's own id")));
        }
    }
    let incarnation = crate::procs::next_incarnation(&cfg.state_dir)?;
    let enforcer = Arc::new(gridos_rm::Enforcer::detect(cfg.node_id.as_str()));
    let res = gridos_rm::query()?;
    let capacity = gridos_rm::Capacity {
        cpus: res.cpus.count as f64,
        memory_bytes: res.memory.total_bytes,
        disk_bytes: disk_capacity(&cfg.state_dir),
    };
    let ledger = gridos_rm::Ledger::new(capacity, enforcer.clone(), &format!("r{incarnation}-"));
    let (spawn_user, spawn_note) = if nix::unistd::geteuid().is_root() {
        let name = cfg.spawn_user.clone().unwrap_or_else(|| "nobody".into());
        (Some(SpawnUser::lookup(&name)?), None)
    } else {
        let note = cfg.spawn_user.as_ref().map(|u| {
            format!(
                "--spawn-user {u} ignored: the daemon is not root, children run as its own user"
            )
        });
        (None, note)
    };
    if let Some(parent) = cfg.ctl_socket.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::Config(format!("creating {}: {e}", parent.display())))?;
    }
    let unix = Listener::bind_unix(&cfg.ctl_socket, MAX_FRAME)
        .map_err(|e| Error::Config(format!("binding {}: {e}", cfg.ctl_socket.display())))?;
    {
        use std::os::unix::fs::PermissionsExt;
        // Everyone may connect; what they may do is decided per request (see module docs).
        let _ = std::fs::set_permissions(&cfg.ctl_socket, std::fs::Permissions::from_mode(0o666));
    }
    let tcp = match cfg.listen {
        Some(a) => {
            let mut l = Listener::bind_tcp(a, MAX_FRAME)
                .await
                .map_err(|e| Error::Config(format!("binding {a}: {e}")))?;
            // Raised per connection once it has authenticated (see `serve`).
            l.set_initial_recv_limit(PRE_AUTH_MAX_FRAME);
            Some(l)
        }
        None => None,
    };
    let listen_addr = tcp.as_ref().and_then(|l| l.local_addr());
    let procs = Procs::new(
        cfg.node_id.clone(),
        incarnation,
        cfg.state_dir.clone(),
        cfg.ctl_socket.clone(),
        spawn_user,
        enforcer,
        ledger,
    );
    let peers = cfg
        .peers
        .iter()
        .map(|(id, addr)| {
            let slot = Arc::new(PeerSlot {
                id: id.clone(),
                addr: *addr,
                link: Mutex::new(None),
                status: Mutex::new(PeerStatus {
                    node: id.to_string(),
                    addr: addr.to_string(),
                    state: "connecting".into(),
                    method: None,
                    selection: None,
                    incarnation: None,
                    last_error: None,
                }),
                ever_up: AtomicBool::new(false),
            });
            (id.to_string(), slot)
        })
        .collect();
    let node = Arc::new(Node {
        me: Gpid::daemon(cfg.node_id.clone(), incarnation),
        cfg,
        procs,
        peers,
        events: PeerEvents::default(),
        host: HostId::local(),
        listen_addr,
        spawn_note,
        handshakes: Arc::new(Semaphore::new(MAX_HANDSHAKES)),
        nonces: Mutex::new(NonceLog::default()),
    });
    tracing::info!(node = %node.cfg.node_id, incarnation, socket = %node.cfg.ctl_socket.display(),
        listen = ?node.listen_addr, enforcement = %node.procs.enforcer().describe(), "node up");
    tokio::spawn(node.clone().accept_loop(unix));
    if let Some(t) = tcp {
        tokio::spawn(node.clone().accept_loop(t));
    }
    for slot in node.peers.values() {
        tokio::spawn(node.clone().link_loop(slot.clone()));
    }
    let n2 = node.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            n2.procs.expire();
        }
    });
    Ok(node)
}

/// Runs a node on its own runtime until SIGINT or SIGTERM.
pub fn run_blocking(cfg: NodeConfig) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Failed(format!("starting runtime: {e}")))?;
    rt.block_on(async move {
        let shutdown = async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                std::future::pending::<()>().await;
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        run(cfg, shutdown).await
    })
}
