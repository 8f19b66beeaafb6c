//! The node protocol: requests and responses carried in gridos-comm frames.
//!
//! Every control frame has tag [`TAG_REQUEST`] or [`TAG_RESPONSE`] and a payload
//! `u32 json_len | JSON envelope | blob`, where the blob carries raw bytes (message payloads).
//! Frames are bounded by [`MAX_FRAME`]; a peer announcing a bigger one is disconnected.

use crate::error::{Error, Result};
use gridos_comm::{Gpid, HostId, RESERVED_TAG_BASE, TransportKind};
use gridos_rm::{CgroupStats, Enforcement, Usage};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Largest control frame (1 MiB of JSON plus up to 4 MiB of message payload).
pub const MAX_FRAME: u32 = 5 << 20;
/// Largest control frame a network peer may send before it has authenticated: room for a
/// `Hello` or an `Auth`, nothing more. A bigger announcement cuts the connection unread.
pub const PRE_AUTH_MAX_FRAME: u32 = 16 << 10;
/// Largest message payload.
pub const MAX_MESSAGE: usize = 4 << 20;
/// Tag of request frames.
pub const TAG_REQUEST: u32 = RESERVED_TAG_BASE + 1;
/// Tag of response frames.
pub const TAG_RESPONSE: u32 = RESERVED_TAG_BASE + 2;

/// Where a child's standard stream goes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdioSpec {
    /// /dev/null.
    #[default]
    Null,
    /// Captured by the node (up to 1 MiB) and returned with the exit record.
    Capture,
    /// A file on the node (created or truncated; appended when `append`).
    File {
        /// Path on the node.
        path: PathBuf,
        /// Append instead of truncate.
        #[serde(default)]
        append: bool,
    },
}

/// What to run.
///
/// The process leads its own process group; signals sent through gridos go to that group, and
/// when the process exits whatever is left of its group (and of its cgroup, where cgroups are
/// used) is killed. Processes also die with their node (`PR_SET_PDEATHSIG`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpawnSpec {
    /// Program and arguments (the program is looked up in PATH).
    pub argv: Vec<String>,
    /// Environment, added to a minimal default (PATH, HOME, and the GRIDOS_* variables).
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Working directory (default `/`).
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Standard input.
    #[serde(default)]
    pub stdin: StdioSpec,
    /// Standard output.
    #[serde(default)]
    pub stdout: StdioSpec,
    /// Standard error.
    #[serde(default)]
    pub stderr: StdioSpec,
    /// Run under this existing reservation (its id without `@node`).
    #[serde(default)]
    pub reservation: Option<String>,
    /// Or reserve this much for the process alone (released when it exits).
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Memory for an implicit reservation (bytes).
    #[serde(default)]
    pub memory_bytes: Option<u64>,
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// Normal exit with a code.
    Exited(i32),
    /// Killed by a signal.
    Signaled {
        /// Signal number.
        signal: i32,
        /// Core dumped.
        core_dumped: bool,
    },
}

impl ExitStatus {
    /// The code a shell would report (128 + signal for signals).
    pub fn shell_code(&self) -> i32 {
        match *self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled { signal, .. } => 128 + signal,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ExitStatus::Exited(c) => write!(f, "exited with code {c}"),
            ExitStatus::Signaled {
                signal,
                core_dumped,
            } => {
                let name = nix::sys::signal::Signal::try_from(signal)
                    .map(|s| s.as_str())
                    .unwrap_or("?");
                write!(
                    f,
                    "killed by signal {signal} ({name}){}",
                    if core_dumped { ", core dumped" } else { "" }
                )
            }
        }
    }
}

/// The accounting record of a finished process, kept by its node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The process.
    pub gpid: Gpid,
    /// What ran.
    pub argv: Vec<String>,
    /// How it ended.
    pub status: ExitStatus,
    /// CPU, memory and I/O from wait4 and /proc.
    pub usage: Usage,
    /// Its cgroup's statistics, when it had one.
    pub cgroup: Option<CgroupStats>,
    /// The kernel killed it for exceeding its memory limit.
    pub oom_killed: bool,
    /// Wall-clock run time, milliseconds.
    pub wall_ms: u64,
    /// Start, ms since the epoch.
    pub started_unix_ms: u64,
    /// End, ms since the epoch.
    pub ended_unix_ms: u64,
    /// Reservation it ran under.
    pub reservation: Option<String>,
    /// Enforcement that was in effect.
    pub enforcement: Enforcement,
    /// Captured standard output (lossy UTF-8), when captured.
    pub stdout: Option<String>,
    /// Captured standard error, when captured.
    pub stderr: Option<String>,
}

/// One line of `ps`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcInfo {
    /// The process.
    pub gpid: Gpid,
    /// What runs.
    pub argv: Vec<String>,
    /// `running` or `exited`.
    pub state: String,
    /// Exit status when exited.
    pub status: Option<ExitStatus>,
    /// Live usage (running) or final (exited).
    pub usage: Option<Usage>,
    /// Start, ms since the epoch.
    pub started_unix_ms: u64,
    /// Reservation.
    pub reservation: Option<String>,
}

/// State of a peer link as a node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Peer node id.
    pub node: String,
    /// Configured address.
    pub addr: String,
    /// `up`, `down` or `connecting`.
    pub state: String,
    /// Transport in use when up.
    pub method: Option<TransportKind>,
    /// Why that transport (the selector's report).
    pub selection: Option<String>,
    /// Peer's incarnation when last seen.
    pub incarnation: Option<u64>,
    /// Last error.
    pub last_error: Option<String>,
}

/// What `Hello` returns.
///
/// A network peer that has not authenticated yet learns only `node`, `auth` and `challenge`
/// (what it needs to authenticate); the other fields are empty or zero. After `Auth` a new
/// `Hello` returns everything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node id.
    pub node: String,
    /// Incarnation.
    pub incarnation: u64,
    /// Host identity (boot id and network namespace).
    pub host: HostId,
    /// Control socket path.
    pub ctl_socket: PathBuf,
    /// TCP address, when listening.
    pub listen: Option<String>,
    /// Whether HMAC authentication is configured.
    pub auth: bool,
    /// Per-connection challenge (hex), for HMAC authentication.
    pub challenge: String,
    /// Enforcement mechanism description.
    pub enforcement: String,
    /// Peers.
    pub peers: Vec<PeerStatus>,
}

/// A granted reservation as reported to clients (`id` is `RID@NODE`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReservationInfo {
    /// Grid-wide id, `RID@NODE`.
    pub id: String,
    /// Details.
    pub reservation: gridos_rm::Reservation,
}

/// Resources of a node plus its reservations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeResources {
    /// Node id.
    pub node: String,
    /// What the host has.
    pub resources: gridos_rm::Resources,
    /// Capacity offered to reservations.
    pub capacity: gridos_rm::Capacity,
    /// Currently reserved.
    pub reserved: gridos_rm::Capacity,
    /// Active reservations.
    pub reservations: Vec<ReservationInfo>,
    /// Enforcement mechanism in effect.
    pub enforcement: String,
}

/// Which processes to list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The node answering.
    Local,
    /// A named node.
    Node(String),
    /// This node and every peer.
    All,
}

/// A request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Node information and an authentication challenge.
    Hello,
    /// HMAC response to the challenge.
    Auth {
        /// Who is authenticating (a node id or a client name).
        client: String,
        /// Client nonce (hex).
        nonce: String,
        /// HMAC (hex).
        mac: String,
    },
    /// Liveness probe.
    Ping,
    /// Start a process (here, or on `node`).
    Spawn {
        /// Target node.
        node: Option<String>,
        /// What to run.
        spec: SpawnSpec,
    },
    /// Send a signal.
    Signal {
        /// Process.
        gpid: Gpid,
        /// Signal number.
        signal: i32,
    },
    /// Wait for exit (returns at once for an exited process).
    Wait {
        /// Process.
        gpid: Gpid,
        /// Give up after this many ms.
        timeout_ms: Option<u64>,
    },
    /// List processes.
    List {
        /// Which.
        scope: Scope,
    },
    /// Resources and reservations.
    Resources {
        /// Which node.
        node: Option<String>,
    },
    /// Make a reservation.
    Reserve {
        /// Which node.
        node: Option<String>,
        /// What.
        request: gridos_rm::Request,
    },
    /// Release a reservation (`RID@NODE`).
    Release {
        /// Id.
        rid: String,
    },
    /// Send the blob as a message from the calling process to `dst`.
    Send {
        /// Addressee.
        dst: Gpid,
        /// Tag.
        tag: u32,
    },
    /// Node to node: deliver the blob to a local mailbox.
    Deliver {
        /// Sender.
        src: Gpid,
        /// Addressee (on the receiving node).
        dst: Gpid,
        /// Tag.
        tag: u32,
    },
    /// Receive a message for the calling process.
    Recv {
        /// Only this tag.
        tag: Option<u32>,
        /// Give up after this many ms.
        timeout_ms: Option<u64>,
    },
}

/// A response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// Done.
    Ok,
    /// Failed.
    Error {
        /// Why.
        error: Error,
    },
    /// Node information.
    Hello {
        /// Info.
        info: NodeInfo,
    },
    /// Server's proof of the key.
    AuthOk {
        /// HMAC (hex).
        mac: String,
    },
    /// Liveness.
    Pong,
    /// A process started.
    Spawned {
        /// Its GPID.
        gpid: Gpid,
        /// Enforcement in effect.
        enforcement: Enforcement,
    },
    /// A process ended.
    Exited {
        /// Record.
        record: Box<ExitRecord>,
    },
    /// Process list.
    List {
        /// Processes.
        procs: Vec<ProcInfo>,
        /// Nodes that could not be asked.
        errors: Vec<String>,
    },
    /// Resources.
    Resources {
        /// Report.
        report: Box<NodeResources>,
    },
    /// Reservation granted.
    Reserved {
        /// Reservation.
        info: ReservationInfo,
    },
    /// A message (payload in the blob).
    Message {
        /// Sender.
        src: Gpid,
        /// Tag.
        tag: u32,
    },
}

/// Request or response with its id.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Correlates responses with requests (0: not known, for errors about undecodable frames).
    pub id: u64,
    /// Body.
    pub body: T,
}

/// Encodes an envelope and blob into a control payload.
pub fn encode<T: Serialize>(env: &Envelope<T>, blob: &[u8]) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(env).map_err(|e| Error::Failed(format!("encoding: {e}")))?;
    let mut out = Vec::with_capacity(4 + json.len() + blob.len());
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(blob);
    Ok(out)
}

/// Decodes a control payload. Never panics on bad input.
pub fn decode<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<(Envelope<T>, Vec<u8>)> {
    if payload.len() < 4 {
        return Err(Error::BadRequest(
            "control payload shorter than its 4-byte header".into(),
        ));
    }
    let n = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
    let json = payload
        .get(4..4usize.saturating_add(n))
        .ok_or_else(|| Error::BadRequest(format!("JSON length {n} exceeds the payload")))?;
    let env = serde_json::from_slice(json)
        .map_err(|e| Error::BadRequest(format!("undecodable request: {e}")))?;
    Ok((env, payload[4 + n..].to_vec()))
}
