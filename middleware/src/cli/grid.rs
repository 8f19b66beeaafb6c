//! `gridos node|spawn|ps|wait|kill|res|reserve|release`: grid processes and resources.
//!
//! Every command except `node` talks to the local node daemon through its unix socket — the
//! path in `GRIDOS_NODE`, else the default (`/run/gridos/node.sock` for root) — and that node
//! routes requests naming another node (`--node ID`, or the node part of a GPID).

use clap::{Args, Subcommand};
use gridos_pm::node::{NodeConfig, default_ctl_socket, default_state_dir};
use gridos_pm::proto::{ExitRecord, SpawnSpec, StdioSpec};
use gridos_pm::{Client, Gpid, NodeId, Scope};
use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Errors of the grid commands.
#[derive(Debug)]
#[non_exhaustive]
pub enum GridCliError {
    /// Bad arguments.
    Usage(String),
    /// What the node (or the library) reported.
    Grid(gridos_pm::Error),
}

impl fmt::Display for GridCliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GridCliError::Usage(m) => f.write_str(m),
            GridCliError::Grid(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for GridCliError {}

impl From<gridos_pm::Error> for GridCliError {
    fn from(e: gridos_pm::Error) -> Self {
        GridCliError::Grid(e)
    }
}

/// The grid subcommands (flattened into the top level of `gridos`).
#[derive(Subcommand, Debug)]
pub enum GridCommand {
    /// Run a node daemon (hosts process and resource management for this machine).
    Node(NodeArgs),
    /// Start a process on this or another node; prints its GPID.
    Spawn(SpawnArgs),
    /// List processes of this node, another node, or the whole grid.
    Ps(PsArgs),
    /// Wait for a process; prints its output, status and accounting; exits with its code.
    Wait(WaitArgs),
    /// Send a signal to a process.
    Kill(KillArgs),
    /// Show a node's resources and reservations.
    Res(ResArgs),
    /// Reserve resources on a node; prints the reservation id.
    Reserve(ReserveArgs),
    /// Release a reservation (its processes are killed).
    Release(ReleaseArgs),
}

/// `gridos node`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  gridos node --node-id n1
                  a stand-alone node on this machine
  gridos node --node-id n1 --listen 0.0.0.0:7070 --key /etc/gridos/grid.key \\
              --peer n2=10.0.0.2:7070
                  a node that talks to its peer n2 (same key on both)")]
pub struct NodeArgs {
    /// This node's id (letters, digits, `_`, `-`).
    #[arg(long = "node-id")]
    pub node_id: String,
    /// TCP address for peers and remote clients (requires --key).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// A peer node, `ID=ADDR:PORT` (repeatable; requires --key).
    #[arg(long = "peer")]
    pub peers: Vec<String>,
    /// File with the shared key for HMAC authentication (at least 16 bytes, not world-readable).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Unix control socket (default: /run/gridos/node.sock for root).
    #[arg(long = "ctl-socket")]
    pub ctl_socket: Option<PathBuf>,
    /// User that spawned processes run as when the daemon is root (default: nobody).
    #[arg(long = "spawn-user")]
    pub spawn_user: Option<String>,
    /// State directory (incarnation counter, accounting records).
    #[arg(long = "state-dir")]
    pub state_dir: Option<PathBuf>,
    /// Seconds a TCP connection has to authenticate before it is closed.
    #[arg(long = "handshake-timeout", value_name = "SECS", default_value_t = gridos_pm::node::DEFAULT_HANDSHAKE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub handshake_timeout: u64,
}

/// `gridos spawn`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  gridos spawn -- /bin/hostname
                  run on the local node; prints the GPID
  gridos spawn --node n2 --cpus 2 --mem 4G -- ./simulate --steps 1000
                  on node n2 with 2 CPUs and 4 GiB reserved; `gridos wait GPID` for the result")]
pub struct SpawnArgs {
    /// Node to run on (default: the local node).
    #[arg(long)]
    pub node: Option<String>,
    /// CPUs to reserve for the process (its own reservation, released at exit).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Memory to reserve for the process (bytes; k/M/G suffixes accepted).
    #[arg(long, value_parser = crate::cli::parse_size)]
    pub mem: Option<u64>,
    /// Run under an existing reservation (`RID@NODE` from `gridos reserve`).
    #[arg(long, conflicts_with_all = ["cpus", "mem"])]
    pub reservation: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub cmd: Vec<String>,
}

/// `gridos ps`.
#[derive(Args, Debug)]
pub struct PsArgs {
    /// List this node's processes.
    #[arg(long, conflicts_with = "all")]
    pub node: Option<String>,
    /// List every node's processes.
    #[arg(long)]
    pub all: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `gridos wait`.
#[derive(Args, Debug)]
pub struct WaitArgs {
    /// The process, e.g. `n1.3.41235`.
    pub gpid: String,
}

/// `gridos kill`.
#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal name or number (default TERM).
    #[arg(short = 's', long = "signal", default_value = "TERM")]
    pub signal: String,
    /// The process.
    pub gpid: String,
}

/// `gridos res`.
#[derive(Args, Debug)]
pub struct ResArgs {
    /// Node (default: local).
    #[arg(long)]
    pub node: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `gridos reserve`.
#[derive(Args, Debug)]
pub struct ReserveArgs {
    /// CPUs.
    #[arg(long)]
    pub cpus: f64,
    /// Memory (bytes; k/M/G suffixes accepted).
    #[arg(long, value_parser = crate::cli::parse_size)]
    pub mem: u64,
    /// Disk (bytes; admission control only).
    #[arg(long, value_parser = crate::cli::parse_size, default_value = "0")]
    pub disk: u64,
    /// Seconds the reservation lasts.
    #[arg(long)]
    pub duration: u64,
    /// Node (default: local).
    #[arg(long)]
    pub node: Option<String>,
}

/// `gridos release`.
#[derive(Args, Debug)]
pub struct ReleaseArgs {
    /// Reservation id (`RID@NODE`).
    pub rid: String,
}

fn node_socket() -> PathBuf {
    std::env::var_os("GRIDOS_NODE")
        .map(PathBuf::from)
        .unwrap_or_else(default_ctl_socket)
}

fn parse_gpid(s: &str) -> Result<Gpid, GridCliError> {
    s.parse::<Gpid>()
        .map_err(|e| GridCliError::Usage(e.to_string()))
}

fn check_node(n: &Option<String>) -> Result<(), GridCliError> {
    if let Some(n) = n {
        NodeId::new(n).map_err(|e| GridCliError::Usage(e.to_string()))?;
    }
    Ok(())
}

fn parse_signal(s: &str) -> Result<i32, GridCliError> {
    if let Ok(n) = s.parse::<i32>() {
        return Ok(n);
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| GridCliError::Usage(format!("unknown signal {s:?}")))
}

fn json<T: serde::Serialize>(v: &T) -> Result<(), GridCliError> {
    let s = serde_json::to_string_pretty(v).map_err(|e| GridCliError::Usage(e.to_string()))?;
    println!("{s}");
    Ok(())
}

fn print_record(r: &ExitRecord) {
    let mut out = std::io::stdout().lock();
    if let Some(s) = &r.stdout {
        let _ = out.write_all(s.as_bytes());
    }
    if let Some(s) = &r.stderr {
        let _ = std::io::stderr().write_all(s.as_bytes());
    }
    let u = &r.usage;
    let _ = writeln!(
        out,
        "{}: {}{}",
        r.gpid,
        r.status,
        if r.oom_killed {
            " (memory limit exceeded: killed by the enforcement)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "accounting: user_cpu_us={} sys_cpu_us={} max_rss_bytes={} read_bytes={} write_bytes={} wall_ms={}",
        u.user_cpu_us, u.sys_cpu_us, u.max_rss_bytes, u.read_bytes, u.write_bytes, r.wall_ms
    );
    if let Some(c) = &r.cgroup {
        let _ = writeln!(
            out,
            "cgroup: memory_peak_bytes={} cpu_ns={} oom_kills={}",
            c.memory_peak_bytes.map_or("-".into(), |v| v.to_string()),
            c.cpu_ns.map_or("-".into(), |v| v.to_string()),
            c.oom_kills
        );
    }
    let _ = writeln!(out, "enforcement: {}", r.enforcement);
}

/// Runs a grid subcommand.
pub fn run(cmd: GridCommand) -> Result<ExitCode, GridCliError> {
    if let GridCommand::Node(a) = cmd {
        return run_node(a);
    }
    let rt = gridos_pm::runtime()?;
    rt.block_on(async move {
        let client = || async { Client::connect_unix(&node_socket()).await };
        match cmd {
            GridCommand::Node(_) => unreachable!("handled above"),
            GridCommand::Spawn(a) => {
                check_node(&a.node)?;
                let (reservation, target) = match &a.reservation {
                    Some(r) => {
                        let (rid, node) = r
                            .split_once('@')
                            .map_or((r.as_str(), None), |(a, b)| (a, Some(b)));
                        if let (Some(n), Some(t)) = (node, a.node.as_deref()) {
                            if n != t {
                                return Err(GridCliError::Usage(format!(
                                    "reservation {r} is on node {n}, not {t}"
                                )));
                            }
                        }
                        (
                            Some(rid.to_string()),
                            a.node.clone().or(node.map(String::from)),
                        )
                    }
                    None => (None, a.node.clone()),
                };
                let cwd = std::env::current_dir().ok();
                let spec = SpawnSpec {
                    argv: a.cmd,
                    cwd: if target.is_none() { cwd } else { None },
                    stdout: StdioSpec::Capture,
                    stderr: StdioSpec::Capture,
                    reservation,
                    cpus: a.cpus,
                    memory_bytes: a.mem,
                    ..Default::default()
                };
                let c = client().await?;
                let (gpid, enforcement) = c.spawn(target.as_deref(), spec).await?;
                if a.json {
                    json(&serde_json::json!({ "gpid": gpid, "enforcement": enforcement }))?;
                } else {
                    println!("{gpid}");
                    if enforcement.mechanism.is_some() {
                        eprintln!("enforcement: {enforcement}");
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            GridCommand::Ps(a) => {
                check_node(&a.node)?;
                let scope = match (a.all, a.node) {
                    (true, _) => Scope::All,
                    (false, Some(n)) => Scope::Node(n),
                    (false, None) => Scope::Local,
                };
                let (procs, errors) = client().await?.list(scope).await?;
                if a.json {
                    json(&serde_json::json!({ "processes": procs, "errors": errors }))?;
                } else {
                    println!(
                        "{:<24} {:<8} {:<28} {:>10} {:>12}  COMMAND",
                        "GPID", "STATE", "STATUS", "CPU_MS", "MAX_RSS"
                    );
                    for p in &procs {
                        let status = p.status.map(|s| s.to_string()).unwrap_or_default();
                        let (cpu, rss) = p.usage.as_ref().map_or((0, 0), |u| {
                            ((u.user_cpu_us + u.sys_cpu_us) / 1000, u.max_rss_bytes)
                        });
                        println!(
                            "{:<24} {:<8} {:<28} {:>10} {:>12}  {}",
                            p.gpid.to_string(),
                            p.state,
                            status,
                            cpu,
                            rss,
                            p.argv.join(" ")
                        );
                    }
                    for e in &errors {
                        eprintln!("gridos ps: {e}");
                    }
                }
                Ok(if errors.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(2)
                })
            }
            GridCommand::Wait(a) => {
                let g = parse_gpid(&a.gpid)?;
                let rec = client().await?.wait(&g, None).await?;
                print_record(&rec);
                let code = rec.status.shell_code();
                Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)))
            }
            GridCommand::Kill(a) => {
                let g = parse_gpid(&a.gpid)?;
                let sig = parse_signal(&a.signal)?;
                client().await?.signal(&g, sig).await?;
                Ok(ExitCode::SUCCESS)
            }
            GridCommand::Res(a) => {
                check_node(&a.node)?;
                let r = client().await?.resources(a.node.as_deref()).await?;
                if a.json {
                    json(&r)?;
                } else {
                    let res = &r.resources;
                    println!("node {}", r.node);
                    println!(
                        "cpus: {} x {} load {:.2} {:.2} {:.2}",
                        res.cpus.count,
                        res.cpus.model,
                        res.cpus.load[0],
                        res.cpus.load[1],
                        res.cpus.load[2]
                    );
                    println!(
                        "memory: total {} available {}",
                        res.memory.total_bytes, res.memory.available_bytes
                    );
                    for d in &res.disks {
                        println!(
                            "disk {} ({}): total {} free {}",
                            d.mount, d.fstype, d.total_bytes, d.available_bytes
                        );
                    }
                    for i in &res.interfaces {
                        let speed = i
                            .speed_mbps
                            .map_or("speed unknown".into(), |s| format!("{s} Mbit/s"));
                        println!(
                            "net {} [{}] {} {}",
                            i.name,
                            i.operstate,
                            i.addresses.join(" "),
                            speed
                        );
                    }
                    println!(
                        "capacity: cpus {} memory {} disk {}; reserved: cpus {} memory {} disk {}",
                        r.capacity.cpus,
                        r.capacity.memory_bytes,
                        r.capacity.disk_bytes,
                        r.reserved.cpus,
                        r.reserved.memory_bytes,
                        r.reserved.disk_bytes
                    );
                    for x in &r.reservations {
                        println!(
                            "reservation {}: {:?} enforcement {}",
                            x.id, x.reservation.request, x.reservation.enforcement
                        );
                    }
                    println!("enforcement: {}", r.enforcement);
                }
                Ok(ExitCode::SUCCESS)
            }
            GridCommand::Reserve(a) => {
                check_node(&a.node)?;
                let req = gridos_rm::Request {
                    cpus: a.cpus,
                    memory_bytes: a.mem,
                    disk_bytes: a.disk,
                    duration_secs: a.duration,
                };
                let info = client().await?.reserve(a.node.as_deref(), req).await?;
                println!("{}", info.id);
                eprintln!("enforcement: {}", info.reservation.enforcement);
                Ok(ExitCode::SUCCESS)
            }
            GridCommand::Release(a) => {
                client().await?.release(&a.rid).await?;
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

fn run_node(a: NodeArgs) -> Result<ExitCode, GridCliError> {
    let id = NodeId::new(&a.node_id).map_err(|e| GridCliError::Usage(e.to_string()))?;
    let mut peers = Vec::new();
    for p in &a.peers {
        let (pid, addr) = p
            .split_once('=')
            .ok_or_else(|| GridCliError::Usage(format!("--peer {p:?}: expected ID=ADDR:PORT")))?;
        let pid =
            NodeId::new(pid).map_err(|e| GridCliError::Usage(format!("--peer {p:?}: {e}")))?;
        let addr: SocketAddr = addr
            .parse()
            .map_err(|e| GridCliError::Usage(format!("--peer {p:?}: bad address: {e}")))?;
        peers.push((pid, addr));
    }
    let key = match &a.key {
        Some(k) => Some(gridos_pm::auth::load_key(k)?),
        None => None,
    };
    let cfg = NodeConfig {
        state_dir: a.state_dir.unwrap_or_else(|| default_state_dir(&id)),
        node_id: id,
        listen: a.listen,
        peers,
        key,
        ctl_socket: a.ctl_socket.unwrap_or_else(node_socket),
        spawn_user: a.spawn_user,
        transport: Default::default(),
        handshake_timeout: std::time::Duration::from_secs(a.handshake_timeout),
    };
    gridos_pm::node::run_blocking(cfg)?;
    Ok(ExitCode::SUCCESS)
}
