//! Whole-machine measurements: CPU time from /proc/stat, resident memory of a process tree.

use std::time::Duration;

/// Busy CPU time of the whole machine so far (user + nice + system + irq + softirq + steal).
pub fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .enumerate()
                // user nice system idle iowait irq softirq steal: skip idle (3) and iowait (4).
                .filter(|(i, _)| !matches!(i, 3 | 4) && *i < 8)
                .filter_map(|(_, v)| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / hz)
}

/// Resident set size in bytes of `pid` and all its descendants (0 for processes that are gone).
pub fn tree_rss(pid: u32) -> u64 {
    let mut total = 0;
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024;
        // Children of every thread of the process.
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                let children =
                    std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                stack.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
    total
}

/// A cgroup holding one server and every process it forks, for its CPU time: the kernel
/// counts the time of processes that have exited too, whoever reaps them (vsftpd's session
/// processes are not always reaped by the process whose `cutime` would count them). cgroup
/// v2 (`cpu.stat`) or v1 (`cpuacct.usage`); removed on drop.
pub struct CpuGroup {
    dir: std::path::PathBuf,
    v2: bool,
}

impl CpuGroup {
    /// Creates a cgroup and moves `pid` (all its threads) into it; `None` when there is no
    /// writable CPU accounting hierarchy (not root, or neither v2 nor v1 cpuacct).
    pub fn join(pid: u32) -> Option<CpuGroup> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "gridos-bench-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let root = std::path::Path::new("/sys/fs/cgroup");
        let (dir, v2) = if root.join("cgroup.controllers").is_file() {
            (root.join(&name), true)
        } else {
            (root.join("cpuacct").join(&name), false)
        };
        std::fs::create_dir(&dir).ok()?;
        let group = CpuGroup { dir, v2 };
        std::fs::write(group.dir.join("cgroup.procs"), pid.to_string()).ok()?;
        group.usage().map(|_| group)
    }

    /// CPU time of everything that ran in the group so far.
    pub fn usage(&self) -> Option<Duration> {
        if self.v2 {
            let stat = std::fs::read_to_string(self.dir.join("cpu.stat")).ok()?;
            stat.lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .and_then(|v| v.trim().parse().ok())
                .map(Duration::from_micros)
        } else {
            std::fs::read_to_string(self.dir.join("cpuacct.usage"))
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .map(Duration::from_nanos)
        }
    }
}

impl Drop for CpuGroup {
    fn drop(&mut self) {
        // Empty once the server's processes are gone (the caller kills them first).
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("harness: could not remove {}", self.dir.display());
    }
}
