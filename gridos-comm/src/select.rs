//! Transport kinds, their attributes, and the selector (automatic and programmer-assisted).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The communication methods gridos-comm implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransportKind {
    /// Channels between tasks of one process.
    InProc,
    /// Unix-domain stream socket (same host).
    Unix,
    /// One TCP connection.
    Tcp,
    /// Several TCP connections striped together (bulk).
    ParallelTcp,
}

impl TransportKind {
    /// All kinds, in default rank order for non-bulk traffic.
    pub const ALL: [TransportKind; 4] = [
        TransportKind::InProc,
        TransportKind::Unix,
        TransportKind::Tcp,
        TransportKind::ParallelTcp,
    ];

    /// Canonical name (`inproc`, `unix`, `tcp`, `parallel-tcp`).
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::InProc => "inproc",
            TransportKind::Unix => "unix",
            TransportKind::Tcp => "tcp",
            TransportKind::ParallelTcp => "parallel-tcp",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a transport's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown transport {0:?} (inproc, unix, tcp, parallel-tcp)")]
pub struct UnknownTransport(pub String);

impl FromStr for TransportKind {
    type Err = UnknownTransport;
    fn from_str(s: &str) -> Result<Self, UnknownTransport> {
        TransportKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownTransport(s.to_string()))
    }
}

/// Rough latency class of a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LatencyClass {
    /// Memory (no system call on the fast path).
    Memory,
    /// Local kernel IPC.
    Local,
    /// Network round trips.
    Network,
}

/// Rough bandwidth class of a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BandwidthClass {
    /// Bounded by one TCP connection's window.
    SingleStream,
    /// Several streams: covers high bandwidth × delay paths.
    MultiStream,
    /// Local kernel copy.
    Local,
    /// Memory copy.
    Memory,
}

/// Where a method can reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Locality {
    /// Same process only.
    SameProcess,
    /// Same host (and here: same network namespace) only.
    SameHost,
    /// Anywhere IP reaches.
    Network,
}

/// What a transport offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributes {
    /// Latency class.
    pub latency: LatencyClass,
    /// Bandwidth class.
    pub bandwidth: BandwidthClass,
    /// Reach.
    pub locality: Locality,
    /// Delivery guaranteed while the connection lives.
    pub reliable: bool,
    /// Frames arrive in the order sent.
    pub ordered: bool,
    /// Largest frame body accepted.
    pub max_message: u32,
}

/// Programmer-assisted selection: an explicit method, or allow/deny lists, and whether the
/// traffic is bulk.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {
    /// Use exactly this method (fails if it cannot reach the peer).
    pub explicit: Option<TransportKind>,
    /// Only these methods (all if `None`).
    pub allow: Option<Vec<TransportKind>>,
    /// Never these methods.
    pub deny: Vec<TransportKind>,
    /// Bulk traffic: parallel TCP is preferred over TCP when the path's bandwidth × delay is at
    /// least `bulk_bdp_threshold` bytes.
    pub bulk: bool,
    /// Threshold for bulk (bytes); 0 means the default, 4 MiB.
    pub bulk_bdp_threshold: u64,
}

/// Default bulk threshold: paths whose bandwidth × delay product exceeds one TCP window of
/// typical autotuning reach (4 MiB) get parallel streams.
pub const DEFAULT_BULK_BDP: u64 = 4 << 20;

/// Why the programmer's [`Preferences`] rule a method out: the reason selection gives for
/// passing it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotPermitted {
    /// Another method was asked for explicitly.
    #[error("explicit transport is {0}")]
    OtherExplicit(TransportKind),
    /// The method is on the deny list.
    #[error("on the deny list")]
    Denied,
    /// There is an allow list and the method is not on it.
    #[error("not on the allow list")]
    NotAllowed,
}

impl Preferences {
    /// Is `k` permitted by the lists?
    pub fn permits(&self, k: TransportKind) -> Result<(), NotPermitted> {
        if let Some(e) = self.explicit {
            if e != k {
                return Err(NotPermitted::OtherExplicit(e));
            }
        }
        if self.deny.contains(&k) {
            return Err(NotPermitted::Denied);
        }
        if let Some(a) = &self.allow {
            if !a.contains(&k) {
                return Err(NotPermitted::NotAllowed);
            }
        }
        Ok(())
    }

    /// Parses a comma-separated list of transport names.
    pub fn parse_list(s: &str) -> Result<Vec<TransportKind>, UnknownTransport> {
        s.split(',')
            .filter(|x| !x.trim().is_empty())
            .map(|x| x.trim().parse())
            .collect()
    }
}

/// The outcome of selection: the chosen method, why, and why the others were not taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// Method chosen.
    pub kind: TransportKind,
    /// Human-readable reason.
    pub reason: String,
    /// Methods not taken, with reasons.
    pub rejected: Vec<(TransportKind, String)>,
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.kind, self.reason)?;
        for (k, why) in &self.rejected {
            write!(f, "; not {k}: {why}")?;
        }
        Ok(())
    }
}
