//! Talking to a node: [`Client`] (local unix socket, or TCP with a key) and [`Mailbox`], the
//! messaging API for processes started by gridos.

use crate::error::{Error, Result};
use crate::node::client_auth;
use crate::procs::Message;
use crate::proto::{
    ExitRecord, NodeInfo, NodeResources, ProcInfo, Request, ReservationInfo, Response, Scope,
    SpawnSpec,
};
use crate::rpc::RpcConn;
use gridos_comm::{
    Connector, Gpid, HostId, NodeId, PeerInfo, Preferences, Selection, TransportKind,
};
use gridos_rm::Enforcement;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Option<Duration> = Some(Duration::from_secs(60));

/// A connection to a node daemon.
pub struct Client {
    conn: RpcConn,
    info: NodeInfo,
    selection: Selection,
}

fn unexpected(r: Response) -> Error {
    Error::Comm(format!("unexpected response {r:?}"))
}

impl Client {
    /// Connects to the node's unix control socket.
    pub async fn connect_unix(path: &Path) -> Result<Client> {
        Self::connect_unix_as(path, Gpid::anonymous()).await
    }

    async fn connect_unix_as(path: &Path, me: Gpid) -> Result<Client> {
        let peer = PeerInfo {
            name: path.display().to_string(),
            host: Some(HostId::local()),
            unix: Some(path.to_path_buf()),
            ..Default::default()
        };
        let connector = Connector::with_max_frame(Preferences::default(), crate::proto::MAX_FRAME);
        let (ch, selection) =
            connector
                .connect(&peer)
                .await
                .map_err(|e| Error::NodeUnreachable {
                    node: path.display().to_string(),
                    detail: format!("{e} (is `gridos node` running?)"),
                })?;
        let where_ = path.display().to_string();
        let conn = RpcConn::start(ch, me, Gpid::anonymous(), move |reason| Error::NodeLost {
            node: where_.clone(),
            detail: reason,
        });
        let (r, _) = conn
            .call(Request::Hello, &[], Some(Duration::from_secs(10)))
            .await?;
        let Response::Hello { info } = r else {
            return Err(unexpected(r));
        };
        Ok(Client {
            conn,
            info,
            selection,
        })
    }

    /// Connects to a node over TCP and authenticates with `key` as `name`.
    pub async fn connect_tcp(addr: SocketAddr, key: &[u8], name: &str) -> Result<Client> {
        let peer = PeerInfo {
            name: addr.to_string(),
            tcp: Some(addr),
            ..Default::default()
        };
        let connector = Connector::with_max_frame(
            Preferences {
                explicit: Some(TransportKind::Tcp),
                ..Default::default()
            },
            crate::proto::MAX_FRAME,
        );
        let (ch, selection) = connector.connect(&peer).await?;
        let a = addr.to_string();
        let conn = RpcConn::start(ch, Gpid::anonymous(), Gpid::anonymous(), move |reason| {
            Error::NodeLost {
                node: a.clone(),
                detail: reason,
            }
        });
        let info = client_auth(&conn, key, name).await?;
        Ok(Client {
            conn,
            info,
            selection,
        })
    }

    /// What the node said about itself when we connected.
    pub fn info(&self) -> &NodeInfo {
        &self.info
    }

    /// The transport selection for this connection.
    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// Sends a raw request.
    pub async fn call(
        &self,
        req: Request,
        blob: &[u8],
        timeout: Option<Duration>,
    ) -> Result<(Response, Vec<u8>)> {
        self.conn.call(req, blob, timeout).await
    }

    /// Fresh node information (peers, their transports…).
    pub async fn hello(&self) -> Result<NodeInfo> {
        match self.call(Request::Hello, &[], T).await?.0 {
            Response::Hello { info } => Ok(info),
            r => Err(unexpected(r)),
        }
    }

    /// Starts a process on `node` (this node if `None`).
    pub async fn spawn(&self, node: Option<&str>, spec: SpawnSpec) -> Result<(Gpid, Enforcement)> {
        match self
            .call(
                Request::Spawn {
                    node: node.map(Into::into),
                    spec,
                },
                &[],
                T,
            )
            .await?
            .0
        {
            Response::Spawned { gpid, enforcement } => Ok((gpid, enforcement)),
            r => Err(unexpected(r)),
        }
    }

    /// Sends a signal.
    pub async fn signal(&self, gpid: &Gpid, signal: i32) -> Result<()> {
        match self
            .call(
                Request::Signal {
                    gpid: gpid.clone(),
                    signal,
                },
                &[],
                T,
            )
            .await?
            .0
        {
            Response::Ok => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    /// Waits for a process to end (wherever it runs).
    pub async fn wait(&self, gpid: &Gpid, timeout: Option<Duration>) -> Result<ExitRecord> {
        let req = Request::Wait {
            gpid: gpid.clone(),
            timeout_ms: timeout.map(|d| d.as_millis() as u64),
        };
        match self.call(req, &[], None).await?.0 {
            Response::Exited { record } => Ok(*record),
            r => Err(unexpected(r)),
        }
    }

    /// Lists processes; the second element names nodes that could not be asked.
    pub async fn list(&self, scope: Scope) -> Result<(Vec<ProcInfo>, Vec<String>)> {
        match self.call(Request::List { scope }, &[], T).await?.0 {
            Response::List { procs, errors } => Ok((procs, errors)),
            r => Err(unexpected(r)),
        }
    }

    /// Resources and reservations of a node.
    pub async fn resources(&self, node: Option<&str>) -> Result<NodeResources> {
        match self
            .call(
                Request::Resources {
                    node: node.map(Into::into),
                },
                &[],
                T,
            )
            .await?
            .0
        {
            Response::Resources { report } => Ok(*report),
            r => Err(unexpected(r)),
        }
    }

    /// Reserves resources on a node.
    pub async fn reserve(
        &self,
        node: Option<&str>,
        request: gridos_rm::Request,
    ) -> Result<ReservationInfo> {
        match self
            .call(
                Request::Reserve {
                    node: node.map(Into::into),
                    request,
                },
                &[],
                T,
            )
            .await?
            .0
        {
            Response::Reserved { info } => Ok(info),
            r => Err(unexpected(r)),
        }
    }

    /// Releases a reservation (`RID@NODE`); processes still under it are killed.
    pub async fn release(&self, rid: &str) -> Result<()> {
        match self
            .call(Request::Release { rid: rid.into() }, &[], T)
            .await?
            .0
        {
            Response::Ok => Ok(()),
            r => Err(unexpected(r)),
        }
    }
}

/// Messaging for a process started by gridos: send to and receive from any GPID in the grid.
/// The node routes; the environment (`GRIDOS_NODE`, `GRIDOS_NODE_ID`, `GRIDOS_INCARNATION`)
/// says how to reach it.
pub struct Mailbox {
    client: Client,
    me: Gpid,
}

impl Mailbox {
    /// Connects using the environment the node gave this process.
    pub async fn from_env() -> Result<Mailbox> {
        let var = |k: &str| {
            std::env::var(k)
                .map_err(|_| Error::Config(format!("{k} is not set (not started by gridos?)")))
        };
        let socket = PathBuf::from(var("GRIDOS_NODE")?);
        let node = NodeId::new(&var("GRIDOS_NODE_ID")?)?;
        let inc = var("GRIDOS_INCARNATION")?
            .parse()
            .map_err(|_| Error::Config("GRIDOS_INCARNATION is not a number".into()))?;
        let me = Gpid::new(node, inc, std::process::id());
        let client = Client::connect_unix_as(&socket, me.clone()).await?;
        Ok(Mailbox { client, me })
    }

    /// This process's GPID.
    pub fn gpid(&self) -> &Gpid {
        &self.me
    }

    /// Sends `payload` with `tag` to `dst`; returns once the destination node queued it.
    pub async fn send(&self, dst: &Gpid, tag: u32, payload: &[u8]) -> Result<()> {
        match self
            .client
            .call(
                Request::Send {
                    dst: dst.clone(),
                    tag,
                },
                payload,
                T,
            )
            .await?
            .0
        {
            Response::Ok => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    /// Receives the next message with `tag` (any if `None`).
    pub async fn recv(&self, tag: Option<u32>, timeout: Option<Duration>) -> Result<Message> {
        let req = Request::Recv {
            tag,
            timeout_ms: timeout.map(|d| d.as_millis() as u64),
        };
        match self.client.call(req, &[], None).await? {
            (Response::Message { src, tag }, payload) => Ok(Message { src, tag, payload }),
            (r, _) => Err(unexpected(r)),
        }
    }
}

/// A current-thread runtime for synchronous callers (the CLI).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Failed(format!("starting runtime: {e}")))
}
