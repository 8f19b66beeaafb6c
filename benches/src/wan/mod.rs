//! Long-fat-network emulator in user space (the machines have no `netem` qdisc).
//!
//! [`Wan::start`] creates two network namespaces, a client side and a server side,
//! each with one TUN device `gwan0` addressed from the RFC 2544 benchmarking range
//! (client 198.18.0.1/30, server 198.18.0.2/30). Two threads, one per direction,
//! forward packets between the devices: each packet waits in a tail-drop bottleneck
//! queue, is serialised at the link rate, then held for the one-way delay. Optional
//! random loss drops packets on arrival. [`Wan::set_partitioned`] cuts the link (every
//! packet dropped, both ways) until it is restored. Dropping the [`Wan`] stops the threads
//! and deletes both namespaces.
//!
//! The model: a packet of `size` bytes arriving at `t` starts serialisation at
//! `max(t, link free)`, takes `size × 8 / rate`, and leaves `delay` after that, so
//! departures are `max(t + tx + delay, previous departure + tx)`. The queue holds
//! the bytes not yet serialised, `(link free − now) × rate / 8`; a packet that would
//! take it past [`WanParams::queue_limit_bytes`] is dropped. Packets in the delay
//! (on the wire) do not count against the queue.
//!
//! ```no_run
//! use gridos_benches::wan::{Side, Wan, WanParams};
//! use std::process::Command;
//!
//! let wan = Wan::start(WanParams::default())?; // 100 ms RTT, 1 Gbit/s, MTU 9000
//! let mut server = Command::new("iperf3");
//! server.args(["-s", "-1", "-B", &wan.server_addr().to_string()]);
//! let mut server = wan.exec_in(Side::Server, &mut server).spawn()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod link;
mod netns;
mod params;

use std::fmt;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sched::{CloneFlags, setns};

use link::{Link, LinkCounters};
pub use netns::clean_stale;
pub use params::{
    MAX_DELAY, MAX_MTU, MAX_QUEUE, MAX_RATE, MAX_STORE, MIN_MTU, WanParams, parse_duration,
    parse_loss, parse_mtu, parse_rate, parse_size,
};

/// Name of the TUN device in each namespace.
pub const DEVICE: &str = "gwan0";
/// Address of the client side.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Address of the server side.
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// Prefix length of both addresses (a point-to-point /30).
pub const PREFIX_LEN: u8 = 30;
/// Transmit queue length set on the TUN devices (packets).
const TXQUEUELEN: u32 = 1000;

/// Errors of the WAN emulator.
#[derive(Debug, thiserror::Error)]
pub enum WanError {
    /// A human-written value could not be parsed.
    #[error("cannot parse {what} {input:?}: {why}")]
    Parse {
        /// Which kind of value.
        what: String,
        /// The text given.
        input: String,
        /// What was wrong with it.
        why: String,
    },
    /// A parameter is out of range.
    #[error("invalid {what}: {why}")]
    InvalidParam {
        /// Which parameter.
        what: String,
        /// What is wrong with it.
        why: String,
    },
    /// The emulator must run as root.
    #[error("the WAN emulator needs root (it creates network namespaces and TUN devices)")]
    NotRoot,
    /// A setup step failed.
    #[error("WAN emulator setup failed at `{step}`: {why}")]
    Setup {
        /// What was being done.
        step: String,
        /// Why it failed.
        why: String,
    },
}

/// One end of the emulated link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client namespace (198.18.0.1).
    Client,
    /// The server namespace (198.18.0.2).
    Server,
}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Packets delivered to the far side.
    pub packets: u64,
    /// IP bytes delivered to the far side.
    pub bytes: u64,
    /// Packets dropped because the bottleneck queue was full.
    pub dropped_queue: u64,
    /// Packets dropped by random loss.
    pub dropped_loss: u64,
    /// Packets dropped while the link was partitioned.
    pub dropped_partition: u64,
    /// Packets lost to read or write errors on the TUN devices (should stay 0).
    pub errors: u64,
}

impl DirectionStats {
    /// All packets dropped, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue + self.dropped_loss + self.dropped_partition + self.errors
    }

    fn load(c: &LinkCounters) -> DirectionStats {
        DirectionStats {
            packets: c.packets.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            dropped_queue: c.dropped_queue.load(Ordering::Relaxed),
            dropped_loss: c.dropped_loss.load(Ordering::Relaxed),
            dropped_partition: c.dropped_partition.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
        }
    }

    /// Counter differences since an earlier snapshot.
    pub fn since(&self, earlier: &DirectionStats) -> DirectionStats {
        DirectionStats {
            packets: self.packets - earlier.packets,
            bytes: self.bytes - earlier.bytes,
            dropped_queue: self.dropped_queue - earlier.dropped_queue,
            dropped_loss: self.dropped_loss - earlier.dropped_loss,
            dropped_partition: self.dropped_partition - earlier.dropped_partition,
            errors: self.errors - earlier.errors,
        }
    }
}

impl fmt::Display for DirectionStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} packets, {} bytes forwarded; dropped: {} queue, {} loss, {} partition, {} errors",
            self.packets,
            self.bytes,
            self.dropped_queue,
            self.dropped_loss,
            self.dropped_partition,
            self.errors
        )
    }
}

/// Counters of both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WanStats {
    /// Client to server.
    pub client_to_server: DirectionStats,
    /// Server to client.
    pub server_to_client: DirectionStats,
}

impl WanStats {
    /// Counter differences since an earlier snapshot.
    pub fn since(&self, earlier: &WanStats) -> WanStats {
        WanStats {
            client_to_server: self.client_to_server.since(&earlier.client_to_server),
            server_to_client: self.server_to_client.since(&earlier.server_to_client),
        }
    }

    /// Packets dropped in both directions.
    pub fn dropped(&self) -> u64 {
        self.client_to_server.dropped() + self.server_to_client.dropped()
    }
}

impl fmt::Display for WanStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "client -> server: {}", self.client_to_server)?;
        write!(f, "server -> client: {}", self.server_to_client)
    }
}

/// Deletes the namespaces it holds when dropped, unless disarmed.
struct NsGuard(Vec<String>);

impl Drop for NsGuard {
    fn drop(&mut self) {
        for name in &self.0 {
            netns::delete_ns(name);
        }
    }
}

/// A running emulated link between two network namespaces.
pub struct Wan {
    params: WanParams,
    names: [String; 2],
    ns_files: [Arc<File>; 2],
    counters: [Arc<LinkCounters>; 2],
    stop: Arc<AtomicBool>,
    partitioned: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    tuns: Option<[Arc<File>; 2]>,
}

impl fmt::Debug for Wan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wan")
            .field("params", &self.params)
            .field("client_ns", &self.names[0])
            .field("server_ns", &self.names[1])
            .finish_non_exhaustive()
    }
}

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

impl Wan {
    /// Creates the namespaces and devices and starts forwarding.
    pub fn start(params: WanParams) -> Result<Wan, WanError> {
        params.validate()?;
        if !nix::unistd::geteuid().is_root() {
            return Err(WanError::NotRoot);
        }
        let pid = std::process::id();
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let names = [format!("gwan-c-{pid}-{seq}"), format!("gwan-s-{pid}-{seq}")];
        let mut guard = NsGuard(Vec::new());
        for name in &names {
            // A namespace of this name can only be left over from an earlier process
            // that had our pid.
            netns::delete_ns(name);
            netns::ip(["netns", "add", name.as_str()])?;
            guard.0.push(name.clone());
        }
        let ns_files = [
            Arc::new(netns::open_ns(&names[0])?),
            Arc::new(netns::open_ns(&names[1])?),
        ];
        let mut tuns = Vec::with_capacity(2);
        for ((name, file), addr) in names.iter().zip(&ns_files).zip([CLIENT_ADDR, SERVER_ADDR]) {
            let tun = netns::in_ns(file, || {
                let tun = netns::open_tun(DEVICE)?;
                // Keep the link quiet and the counters exact: no IPv6 autoconfiguration
                // traffic. Best effort: IPv6 may be disabled altogether.
                let _ = std::fs::write(
                    format!("/proc/sys/net/ipv6/conf/{DEVICE}/disable_ipv6"),
                    "1",
                );
                Ok::<File, WanError>(tun)
            })??;
            tuns.push(Arc::new(tun));
            let (mtu, qlen) = (params.mtu.to_string(), TXQUEUELEN.to_string());
            let cidr = format!("{addr}/{PREFIX_LEN}");
            netns::ip(["-n", name, "link", "set", "dev", "lo", "up"])?;
            netns::ip(["-n", name, "addr", "add", &cidr, "dev", DEVICE])?;
            netns::ip([
                "-n",
                name,
                "link",
                "set",
                "dev",
                DEVICE,
                "mtu",
                &mtu,
                "txqueuelen",
                &qlen,
                "up",
            ])?;
        }
        let tuns: [Arc<File>; 2] = [Arc::clone(&tuns[0]), Arc::clone(&tuns[1])];

        let stop = Arc::new(AtomicBool::new(false));
        let partitioned = Arc::new(AtomicBool::new(false));
        let counters = [
            Arc::new(LinkCounters::default()),
            Arc::new(LinkCounters::default()),
        ];
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ (u64::from(pid) << 32);
        let mut wan = Wan {
            params: params.clone(),
            names,
            ns_files,
            counters: counters.clone(),
            stop: Arc::clone(&stop),
            partitioned: Arc::clone(&partitioned),
            threads: Vec::with_capacity(2),
            tuns: Some(tuns.clone()),
        };
        // The Wan now owns the namespaces; its Drop cleans up from here on.
        guard.0.clear();
        for (dir, (from, to)) in [(0, 1), (1, 0)].into_iter().enumerate() {
            let link = Link {
                input: Arc::clone(&tuns[from]),
                output: Arc::clone(&tuns[to]),
                params: params.clone(),
                counters: Arc::clone(&counters[dir]),
                stop: Arc::clone(&stop),
                partitioned: Arc::clone(&partitioned),
                seed: seed
                    .wrapping_add(dir as u64)
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15),
            };
            let handle = std::thread::Builder::new()
                .name(if dir == 0 { "wan-c2s" } else { "wan-s2c" }.to_owned())
                .spawn(move || link.run())
                .map_err(|e| WanError::Setup {
                    step: "spawn forwarding thread".to_owned(),
                    why: e.to_string(),
                })?;
            wan.threads.push(handle);
        }
        Ok(wan)
    }

    /// The parameters the link runs with.
    pub fn params(&self) -> &WanParams {
        &self.params
    }

    /// Name of the namespace of `side` (for `ip netns exec NAME ...`).
    pub fn ns(&self, side: Side) -> &str {
        &self.names[side as usize]
    }

    /// Name of the client namespace.
    pub fn client_ns(&self) -> &str {
        self.ns(Side::Client)
    }

    /// Name of the server namespace.
    pub fn server_ns(&self) -> &str {
        self.ns(Side::Server)
    }

    /// Address of `side`.
    pub fn addr(&self, side: Side) -> Ipv4Addr {
        match side {
            Side::Client => CLIENT_ADDR,
            Side::Server => SERVER_ADDR,
        }
    }

    /// Address of the client side.
    pub fn client_addr(&self) -> Ipv4Addr {
        CLIENT_ADDR
    }

    /// Address of the server side.
    pub fn server_addr(&self) -> Ipv4Addr {
        SERVER_ADDR
    }

    /// Cuts the link (`true`: every packet is dropped, both ways, including those queued
    /// or on the wire) or restores it (`false`). Takes effect at once.
    pub fn set_partitioned(&self, on: bool) {
        self.partitioned.store(on, Ordering::Relaxed);
    }

    /// Whether the link is cut ([`set_partitioned`](Self::set_partitioned)).
    pub fn partitioned(&self) -> bool {
        self.partitioned.load(Ordering::Relaxed)
    }

    /// Current counters of both directions.
    pub fn stats(&self) -> WanStats {
        WanStats {
            client_to_server: DirectionStats::load(&self.counters[0]),
            server_to_client: DirectionStats::load(&self.counters[1]),
        }
    }

    /// Packets the kernel dropped at the TUN device of `side` before the emulator
    /// read them (the device's transmit drops). They show the forwarder falling
    /// behind; [`stats`](Self::stats) does not count them.
    pub fn device_drops(&self, side: Side) -> Result<u64, WanError> {
        let table = self
            .run_in(side, || {
                std::fs::read_to_string("/proc/thread-self/net/dev")
            })?
            .map_err(|e| WanError::Setup {
                step: "read /proc/thread-self/net/dev".to_owned(),
                why: e.to_string(),
            })?;
        let prefix = format!("{DEVICE}:");
        table
            .lines()
            .find_map(|line| {
                let rest = line.trim_start().strip_prefix(&prefix)?;
                // Receive: bytes packets errs drop fifo frame compressed multicast;
                // transmit: bytes packets errs drop ...
                rest.split_whitespace().nth(11)?.parse().ok()
            })
            .ok_or_else(|| WanError::Setup {
                step: "read /proc/thread-self/net/dev".to_owned(),
                why: format!("no counters for {DEVICE}"),
            })
    }

    /// Makes `cmd` run inside the network namespace of `side` when spawned. The
    /// command keeps the namespace open, so it may even be spawned after the `Wan`
    /// is dropped (the namespace then has no link any more).
    pub fn exec_in<'c>(&self, side: Side, cmd: &'c mut Command) -> &'c mut Command {
        let ns = Arc::clone(&self.ns_files[side as usize]);
        // SAFETY: the closure runs in the forked child before exec. It only calls
        // setns(2), which is async-signal-safe, and builds an io::Error from an errno
        // value, which does not allocate; it touches no lock or shared state.
        unsafe {
            cmd.pre_exec(move || {
                setns(&*ns, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
            })
        }
    }

    /// Runs `f` on a thread inside the network namespace of `side` and returns its
    /// result. Sockets created by `f` belong to that namespace and may be used from
    /// any thread afterwards.
    pub fn run_in<T, F>(&self, side: Side, f: F) -> Result<T, WanError>
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        netns::in_ns(&self.ns_files[side as usize], f)
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
        // Closing the TUN fds removes the devices.
        self.tuns = None;
        for name in &self.names {
            netns::delete_ns(name);
        }
    }
}
