//! Usage of processes: live from /proc, final from wait4's rusage and cgroup statistics.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Resource usage of one process (and, for final figures, its waited-for descendants).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// User CPU time, microseconds.
    pub user_cpu_us: u64,
    /// System CPU time, microseconds.
    pub sys_cpu_us: u64,
    /// Current resident set size (live only).
    pub rss_bytes: Option<u64>,
    /// Peak resident set size.
    pub max_rss_bytes: u64,
    /// Bytes read through read-like system calls (`rchar`).
    pub read_bytes: u64,
    /// Bytes written through write-like system calls (`wchar`).
    pub write_bytes: u64,
    /// Bytes fetched from storage (`read_bytes` in /proc/PID/io).
    pub storage_read_bytes: u64,
    /// Bytes sent to storage (`write_bytes` in /proc/PID/io).
    pub storage_write_bytes: u64,
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// Reads a process's usage from /proc/PID/{stat,status,io}. Works for zombies too (before
/// they are reaped), which is how final I/O figures are captured.
pub fn live_usage(pid: u32) -> Result<Usage> {
    let stat_path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&stat_path)
        .map_err(|e| Error::io(format!("reading {stat_path}"), e))?;
    // Fields after the command name, which is in parentheses and may contain anything.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| Error::Parse {
            what: stat_path.clone(),
            detail: "no ')'".into(),
        })?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15, cutime 16, cstime 17.
    let num = |i: usize| -> Result<u64> {
        f.get(i - 3)
            .and_then(|s| s.parse::<i64>().ok())
            .map(|v| v.max(0) as u64)
            .ok_or_else(|| Error::Parse {
                what: stat_path.clone(),
                detail: format!("field {i}"),
            })
    };
    let tick_us = 1_000_000 / clk_tck();
    let mut u = Usage {
        user_cpu_us: (num(14)? + num(16)?) * tick_us,
        sys_cpu_us: (num(15)? + num(17)?) * tick_us,
        ..Default::default()
    };
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        for l in status.lines() {
            let kb = |l: &str| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(|v| v * 1024)
            };
            if l.starts_with("VmRSS:") {
                u.rss_bytes = kb(l);
            } else if l.starts_with("VmHWM:") {
                u.max_rss_bytes = kb(l).unwrap_or(0);
            }
        }
    }
    if let Ok(io) = std::fs::read_to_string(format!("/proc/{pid}/io")) {
        for l in io.lines() {
            if let Some((k, v)) = l.split_once(':') {
                let v = v.trim().parse::<u64>().unwrap_or(0);
                match k {
                    "rchar" => u.read_bytes = v,
                    "wchar" => u.write_bytes = v,
                    "read_bytes" => u.storage_read_bytes = v,
                    "write_bytes" => u.storage_write_bytes = v,
                    _ => {}
                }
            }
        }
    }
    Ok(u)
}

/// Converts a `struct rusage` (from wait4) into CPU times and peak RSS.
pub fn from_rusage(ru: &libc::rusage) -> Usage {
    let tv = |t: libc::timeval| t.tv_sec.max(0) as u64 * 1_000_000 + t.tv_usec.max(0) as u64;
    Usage {
        user_cpu_us: tv(ru.ru_utime),
        sys_cpu_us: tv(ru.ru_stime),
        rss_bytes: None,
        max_rss_bytes: ru.ru_maxrss.max(0) as u64 * 1024,
        storage_read_bytes: ru.ru_inblock.max(0) as u64 * 512,
        storage_write_bytes: ru.ru_oublock.max(0) as u64 * 512,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_usage_is_sane() {
        let v: Vec<u8> = vec![1; 8 << 20];
        let u = live_usage(std::process::id()).unwrap();
        assert!(u.rss_bytes.unwrap() > 0 && u.max_rss_bytes >= u.rss_bytes.unwrap());
        assert!(u.read_bytes > 0, "{u:?}");
        drop(v);
        assert!(live_usage(u32::MAX - 1).is_err());
    }
}
