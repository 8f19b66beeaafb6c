//! Global process ids and node ids.

use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Longest node id accepted.
pub const MAX_NODE_ID_LEN: usize = 64;

/// A node's name in the grid: 1–64 characters from `[A-Za-z0-9_-]` (no dots, since dots
/// separate the parts of a [`Gpid`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

impl NodeId {
    /// Validates and wraps a node id.
    pub fn new(s: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::BadNodeId {
            input: s.to_string(),
            reason: reason.into(),
        };
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if s.len() > MAX_NODE_ID_LEN {
            return Err(bad("longer than 64 characters"));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(bad(&format!(
                "character {c:?} not allowed (use A-Z a-z 0-9 _ -)"
            )));
        }
        Ok(NodeId(s.to_string()))
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl FromStr for NodeId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        NodeId::new(s)
    }
}
impl TryFrom<String> for NodeId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        NodeId::new(&s)
    }
}
impl From<NodeId> for String {
    fn from(n: NodeId) -> String {
        n.0
    }
}

/// A global process id: `{node id, node incarnation, local pid}`, written `NODE.INC.PID`
/// (e.g. `n1.3.41235`).
///
/// The incarnation changes every time a node daemon starts, so a GPID never names a process
/// of an earlier life of the node. Pid 0 names the node daemon itself.
///
/// ```
/// use gridos_comm::Gpid;
/// let g: Gpid = "n1.3.41235".parse().unwrap();
/// assert_eq!(g.node().as_str(), "n1");
/// assert_eq!((g.incarnation(), g.pid()), (3, 41235));
/// assert_eq!(g.to_string(), "n1.3.41235");
/// assert!("n1.3".parse::<Gpid>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Gpid {
    node: NodeId,
    incarnation: u64,
    pid: u32,
}

impl Gpid {
    /// Builds a GPID from its parts.
    pub fn new(node: NodeId, incarnation: u64, pid: u32) -> Self {
        Gpid {
            node,
            incarnation,
            pid,
        }
    }
    /// The GPID of a node daemon itself (pid 0).
    pub fn daemon(node: NodeId, incarnation: u64) -> Self {
        Gpid {
            node,
            incarnation,
            pid: 0,
        }
    }
    /// The pseudo-GPID used by clients that are not gridos processes (`anon.0.PID`).
    pub fn anonymous() -> Self {
        Gpid {
            node: NodeId("anon".into()),
            incarnation: 0,
            pid: std::process::id(),
        }
    }
    /// Node part.
    pub fn node(&self) -> &NodeId {
        &self.node
    }
    /// Incarnation part.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }
    /// Local pid part.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl fmt::Display for Gpid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.node, self.incarnation, self.pid)
    }
}

impl FromStr for Gpid {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |reason: String| Error::BadGpid {
            input: s.to_string(),
            reason,
        };
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() != 3 {
            return Err(bad(format!(
                "has {} dot-separated parts, not 3",
                parts.len()
            )));
        }
        let node = NodeId::new(parts[0]).map_err(|e| bad(e.to_string()))?;
        let digits = |p: &str, what: &str| -> Result<(), Error> {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                Err(bad(format!("{what} {p:?} is not a decimal number")))
            } else {
                Ok(())
            }
        };
        digits(parts[1], "incarnation")?;
        digits(parts[2], "pid")?;
        let incarnation = parts[1]
            .parse()
            .map_err(|_| bad(format!("incarnation {:?} out of range", parts[1])))?;
        let pid = parts[2]
            .parse()
            .map_err(|_| bad(format!("pid {:?} out of range", parts[2])))?;
        Ok(Gpid {
            node,
            incarnation,
            pid,
        })
    }
}
impl TryFrom<String> for Gpid {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}
impl From<Gpid> for String {
    fn from(g: Gpid) -> String {
        g.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_errors() {
        let g: Gpid = "node7.3.41235".parse().unwrap();
        assert_eq!(g.to_string(), "node7.3.41235");
        for bad in [
            "",
            "n1",
            "n1.2",
            "n1.2.3.4",
            "n 1.2.3",
            ".2.3",
            "n1.x.3",
            "n1.2.-3",
            "n1.2.99999999999",
            "n1..3",
        ] {
            let e = bad.parse::<Gpid>().unwrap_err();
            assert!(e.to_string().contains("malformed GPID"), "{bad}: {e}");
        }
        assert!(NodeId::new(&"a".repeat(65)).is_err());
    }
}
