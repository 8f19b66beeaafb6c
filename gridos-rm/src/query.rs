//! Resource query: CPUs, load, memory, disks, network interfaces — from /proc and /sys.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Processors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpuInfo {
    /// Online logical CPUs.
    pub count: usize,
    /// Model name of the first processor (empty if /proc/cpuinfo has none).
    pub model: String,
    /// Load averages over 1, 5 and 15 minutes.
    pub load: [f64; 3],
}

/// Memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemInfo {
    /// MemTotal.
    pub total_bytes: u64,
    /// MemAvailable.
    pub available_bytes: u64,
}

/// One mounted file system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskInfo {
    /// Mount point.
    pub mount: String,
    /// Device or source.
    pub device: String,
    /// File-system type.
    pub fstype: String,
    /// Size.
    pub total_bytes: u64,
    /// Free bytes (including those reserved for root).
    pub free_bytes: u64,
    /// Bytes available to unprivileged users.
    pub available_bytes: u64,
}

/// One network interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetInterface {
    /// Name.
    pub name: String,
    /// IPv4/IPv6 addresses.
    pub addresses: Vec<String>,
    /// Link speed in Mbit/s, when the driver reports one.
    pub speed_mbps: Option<u64>,
    /// Operational state from /sys (`up`, `down`, `unknown`…).
    pub operstate: String,
    /// MTU.
    pub mtu: Option<u32>,
}

/// A snapshot of a node's resources.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Processors and load.
    pub cpus: CpuInfo,
    /// Memory.
    pub memory: MemInfo,
    /// Disks per mount.
    pub disks: Vec<DiskInfo>,
    /// Network interfaces.
    pub interfaces: Vec<NetInterface>,
}

fn read(path: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {path}"), e))
}

/// Queries everything.
pub fn query() -> Result<Resources> {
    Ok(Resources {
        cpus: cpus()?,
        memory: memory()?,
        disks: disks()?,
        interfaces: interfaces()?,
    })
}

/// Processors and load.
pub fn cpus() -> Result<CpuInfo> {
    let info = read("/proc/cpuinfo")?;
    let model = info
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_default();
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let count = if online > 0 {
        online as usize
    } else {
        info.lines()
            .filter(|l| l.starts_with("processor"))
            .count()
            .max(1)
    };
    let la = read("/proc/loadavg")?;
    let mut it = la.split_whitespace().map(|x| x.parse::<f64>());
    let mut load = [0.0; 3];
    for slot in &mut load {
        *slot = match it.next() {
            Some(Ok(v)) => v,
            _ => {
                return Err(Error::Parse {
                    what: "/proc/loadavg".into(),
                    detail: la.clone(),
                });
            }
        };
    }
    Ok(CpuInfo { count, model, load })
}

/// Parses /proc/meminfo into a map of kB values (as bytes).
pub(crate) fn meminfo() -> Result<BTreeMap<String, u64>> {
    let s = read("/proc/meminfo")?;
    let mut m = BTreeMap::new();
    for l in s.lines() {
        if let Some((k, v)) = l.split_once(':') {
            let mut w = v.split_whitespace();
            if let Some(Ok(n)) = w.next().map(str::parse::<u64>) {
                let mult = if w.next() == Some("kB") { 1024 } else { 1 };
                m.insert(k.to_string(), n * mult);
            }
        }
    }
    Ok(m)
}

/// Memory totals.
pub fn memory() -> Result<MemInfo> {
    let m = meminfo()?;
    let get = |k: &str| {
        m.get(k).copied().ok_or_else(|| Error::Parse {
            what: "/proc/meminfo".into(),
            detail: format!("no {k}"),
        })
    };
    Ok(MemInfo {
        total_bytes: get("MemTotal")?,
        available_bytes: get("MemAvailable")?,
    })
}

const PSEUDO_FS: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "mqueue",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "autofs",
    "configfs",
    "fusectl",
    "hugetlbfs",
    "binfmt_misc",
    "devtmpfs",
    "nsfs",
    "rpc_pipefs",
    "efivarfs",
    "selinuxfs",
    "ramfs",
];

fn unescape_mount(s: &str) -> String {
    // /proc/mounts escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mounted file systems with sizes (pseudo file systems left out).
pub fn disks() -> Result<Vec<DiskInfo>> {
    let s = read("/proc/self/mounts")?;
    let mut by_mount: BTreeMap<String, DiskInfo> = BTreeMap::new();
    for l in s.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 3 || PSEUDO_FS.contains(&f[2]) {
            continue;
        }
        let mount = unescape_mount(f[1]);
        let Ok(st) = nix::sys::statvfs::statvfs(mount.as_str()) else {
            continue;
        };
        let frsize = st.fragment_size();
        let total = st.blocks() * frsize;
        if total == 0 {
            continue;
        }
        by_mount.insert(
            mount.clone(),
            DiskInfo {
                mount,
                device: unescape_mount(f[0]),
                fstype: f[2].to_string(),
                total_bytes: total,
                free_bytes: st.blocks_free() * frsize,
                available_bytes: st.blocks_available() * frsize,
            },
        );
    }
    Ok(by_mount.into_values().collect())
}

/// Network interfaces, their addresses and (when known) link speed.
pub fn interfaces() -> Result<Vec<NetInterface>> {
    let mut by_name: BTreeMap<String, NetInterface> = BTreeMap::new();
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| Error::io("getifaddrs", e.into()))?;
    for a in addrs {
        let e = by_name.entry(a.interface_name.clone()).or_insert_with(|| {
            let sys = |f: &str| {
                std::fs::read_to_string(format!("/sys/class/net/{}/{f}", a.interface_name))
            };
            NetInterface {
                name: a.interface_name.clone(),
                addresses: Vec::new(),
                // Virtual devices answer EINVAL or -1: no speed known.
                speed_mbps: sys("speed")
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .filter(|v| *v > 0)
                    .map(|v| v as u64),
                operstate: sys("operstate")
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "unknown".into()),
                mtu: sys("mtu").ok().and_then(|s| s.trim().parse().ok()),
            }
        });
        if let Some(addr) = a.address {
            if let Some(v4) = addr.as_sockaddr_in() {
                e.addresses.push(v4.ip().to_string());
            } else if let Some(v6) = addr.as_sockaddr_in6() {
                e.addresses.push(v6.ip().to_string());
            }
        }
    }
    Ok(by_name.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape() {
        assert_eq!(unescape_mount("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mount("/x\\"), "/x\\");
    }
}
