//! Enforcement of reservations: cgroup v2, cgroup v1, or rlimits — and always a report of which.
//!
//! [`Enforcer::detect`] picks the strongest mechanism the host offers and that this process may
//! use, remembering why stronger ones were not taken. For each reservation it makes a group
//! with the limits ([`Enforcer::create_group`]); for each spawned process a [`Confinement`] that
//! the child applies to itself between fork and exec (its own leaf cgroup under the
//! reservation's group, so per-process statistics can be read after exit).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The enforcement mechanism in effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// Unified hierarchy: memory.max, cpu.max.
    CgroupV2,
    /// Legacy hierarchies: memory.limit_in_bytes, cpu.cfs_quota_us, cpuacct.
    CgroupV1,
    /// setrlimit(RLIMIT_AS) only; CPU share cannot be capped this way.
    Rlimit,
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mechanism::CgroupV2 => "cgroup-v2",
            Mechanism::CgroupV1 => "cgroup-v1",
            Mechanism::Rlimit => "rlimit",
        })
    }
}

/// What is enforced for a reservation or process, in words and by mechanism.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enforcement {
    /// Mechanism, or `None` when nothing is enforced (process not under a reservation).
    pub mechanism: Option<Mechanism>,
    /// One line per resource: how it is enforced or why it is not.
    pub details: Vec<String>,
}

impl fmt::Display for Enforcement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mechanism {
            Some(m) => write!(f, "{m}")?,
            None => f.write_str("none")?,
        }
        if !self.details.is_empty() {
            write!(f, " ({})", self.details.join("; "))?;
        }
        Ok(())
    }
}

/// Statistics read from a process's own cgroup after it exits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupStats {
    /// Peak memory charged to the group (includes page cache).
    pub memory_peak_bytes: Option<u64>,
    /// CPU time of the group, nanoseconds.
    pub cpu_ns: Option<u64>,
    /// Processes killed by the kernel for exceeding the group's memory limit.
    pub oom_kills: u64,
}

#[derive(Debug)]
enum Base {
    V2 {
        dir: PathBuf,
    },
    V1 {
        memory: PathBuf,
        cpu: Option<PathBuf>,
        cpuacct: Option<PathBuf>,
    },
    None,
}

/// Chooses and applies the enforcement mechanism.
#[derive(Debug)]
pub struct Enforcer {
    base: Base,
    notes: Vec<String>,
    seq: AtomicU64,
    pending_rmdir: Mutex<Vec<PathBuf>>,
}

/// A reservation's group (its limits live here).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Directories of the group, one per hierarchy (empty for rlimits).
    pub dirs: Vec<PathBuf>,
    /// Memory limit (used as RLIMIT_AS under the rlimit mechanism).
    pub memory_bytes: u64,
    /// What is in effect.
    pub enforcement: Enforcement,
}

/// What one child applies to itself before exec, and where its statistics are afterwards.
#[derive(Debug)]
pub struct Confinement {
    procs: Vec<OwnedFd>,
    leaves: Vec<PathBuf>,
    mechanism: Option<Mechanism>,
    rlimit_as: Option<u64>,
    /// What is in effect for this process.
    pub enforcement: Enforcement,
}

fn own_cgroup(controller: &str) -> Option<String> {
    let s = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for l in s.lines() {
        let mut p = l.splitn(3, ':');
        let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
        if (controller.is_empty() && ctrls.is_empty()) || ctrls.split(',').any(|c| c == controller)
        {
            return Some(path.trim_start_matches('/').to_string());
        }
    }
    None
}

fn v1_mount(controller: &str) -> Option<PathBuf> {
    let m = std::fs::read_to_string("/proc/self/mounts").ok()?;
    m.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 4 && f[2] == "cgroup" && f[3].split(',').any(|o| o == controller))
            .then(|| PathBuf::from(f[1]))
    })
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value)
        .map_err(|e| Error::io(format!("writing {value:?} to {}", path.display()), e))
}

fn mkdir(path: &Path) -> Result<()> {
    match std::fs::create_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::io(format!("creating cgroup {}", path.display()), e)),
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_key(path: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

impl Enforcer {
    /// Detects the mechanism for a node named `node`: cgroup v2 if the unified hierarchy has
    /// the memory controller and a group can be made, else cgroup v1 if a memory hierarchy is
    /// mounted and writable, else rlimits. The reasons for passing over stronger mechanisms are
    /// kept in [`notes`](Enforcer::notes).
    pub fn detect(node: &str) -> Enforcer {
        let mut notes = Vec::new();
        let name = format!("gridos-{node}");
        match Self::try_v2(&name) {
            Ok(base) => return Self::with(base, notes),
            Err(e) => notes.push(format!("cgroup v2 not used: {e}")),
        }
        match Self::try_v1(&name) {
            Ok(base) => return Self::with(base, notes),
            Err(e) => notes.push(format!("cgroup v1 not used: {e}")),
        }
        Self::with(Base::None, notes)
    }

    /// An enforcer that uses rlimits only (for tests and for hosts where cgroups must not be
    /// touched).
    pub fn rlimit_only(reason: &str) -> Enforcer {
        Self::with(Base::None, vec![format!("cgroups not used: {reason}")])
    }

    fn with(base: Base, notes: Vec<String>) -> Enforcer {
        let e = Enforcer {
            base,
            notes,
            seq: AtomicU64::new(0),
            pending_rmdir: Mutex::new(Vec::new()),
        };
        // Groups left by an earlier life of this node (killed without cleanup): their
        // processes belong to a dead incarnation (descendants that escaped PR_SET_PDEATHSIG),
        // so they are killed, and the groups removed.
        for b in e.base_dirs() {
            if kill_tree(&b) > 0 {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            remove_empty_tree(&b, false);
        }
        e
    }

    fn base_dirs(&self) -> Vec<PathBuf> {
        match &self.base {
            Base::V2 { dir } => vec![dir.clone()],
            Base::V1 {
                memory,
                cpu,
                cpuacct,
            } => std::iter::once(memory.clone())
                .chain(cpu.clone())
                .chain(cpuacct.clone())
                .collect(),
            Base::None => vec![],
        }
    }

    fn try_v2(name: &str) -> Result<Base> {
        let root = Path::new("/sys/fs/cgroup");
        let ctrls = std::fs::read_to_string(root.join("cgroup.controllers")).map_err(|e| {
            Error::Enforcement(format!("/sys/fs/cgroup is not a cgroup2 mount ({e})"))
        })?;
        if !ctrls.split_whitespace().any(|c| c == "memory") {
            return Err(Error::Enforcement(
                "the unified hierarchy has no memory controller".into(),
            ));
        }
        // Make our group a child of the root (exempt from the no-internal-processes rule) and
        // delegate memory, cpu and pids to it.
        let dir = root.join(name);
        mkdir(&dir)?;
        let want: Vec<&str> = ["memory", "cpu", "pids"]
            .into_iter()
            .filter(|c| ctrls.contains(c))
            .collect();
        let plus = want
            .iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(" ");
        write(&root.join("cgroup.subtree_control"), &plus)?;
        write(&dir.join("cgroup.subtree_control"), &plus)?;
        Ok(Base::V2 { dir })
    }

    fn try_v1(name: &str) -> Result<Base> {
        let mem = v1_mount("memory")
            .ok_or_else(|| Error::Enforcement("no cgroup v1 memory hierarchy mounted".into()))?;
        let under = |mount: PathBuf, ctrl: &str| -> Result<PathBuf> {
            let d = mount.join(own_cgroup(ctrl).unwrap_or_default()).join(name);
            mkdir(&d)?;
            Ok(d)
        };
        let memory = under(mem, "memory")?;
        let cpu = v1_mount("cpu").and_then(|m| under(m, "cpu").ok());
        let cpuacct = v1_mount("cpuacct").and_then(|m| under(m, "cpuacct").ok());
        Ok(Base::V1 {
            memory,
            cpu,
            cpuacct,
        })
    }

    /// The mechanism in effect.
    pub fn mechanism(&self) -> Mechanism {
        match self.base {
            Base::V2 { .. } => Mechanism::CgroupV2,
            Base::V1 { .. } => Mechanism::CgroupV1,
            Base::None => Mechanism::Rlimit,
        }
    }

    /// Why stronger mechanisms were not used.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// A one-line description, e.g. `cgroup-v1 at /sys/fs/cgroup/memory/gridos-n1`.
    pub fn describe(&self) -> String {
        let mut s = match &self.base {
            Base::V2 { dir } => format!("cgroup-v2 at {}", dir.display()),
            Base::V1 { memory, .. } => format!("cgroup-v1 at {}", memory.display()),
            Base::None => "rlimit (RLIMIT_AS for memory; CPU share not enforceable)".into(),
        };
        for n in &self.notes {
            s.push_str("; ");
            s.push_str(n);
        }
        s
    }

    /// Creates the group for reservation `rid` with the given limits.
    pub fn create_group(&self, rid: &str, cpus: f64, memory_bytes: u64) -> Result<Group> {
        let disk = "disk: admission control only (no quota mechanism)".to_string();
        let period: u64 = 100_000;
        let quota = ((cpus * period as f64).ceil() as u64).max(1000);
        match &self.base {
            Base::V2 { dir } => {
                let d = dir.join(rid);
                mkdir(&d)?;
                write(&d.join("cgroup.subtree_control"), "+memory +cpu").ok();
                let mut details = Vec::new();
                if memory_bytes > 0 {
                    write(&d.join("memory.max"), &memory_bytes.to_string())?;
                    let _ = write(&d.join("memory.swap.max"), "0");
                    details.push(format!(
                        "memory: memory.max={memory_bytes} in {}",
                        d.display()
                    ));
                } else {
                    details.push("memory: not limited (none reserved)".into());
                }
                if cpus > 0.0 {
                    write(&d.join("cpu.max"), &format!("{quota} {period}"))?;
                    details.push(format!("cpu: cpu.max={quota}/{period}"));
                } else {
                    details.push("cpu: not limited (none reserved)".into());
                }
                details.push(disk);
                Ok(Group {
                    dirs: vec![d.clone()],
                    memory_bytes,
                    enforcement: Enforcement {
                        mechanism: Some(Mechanism::CgroupV2),
                        details,
                    },
                })
            }
            Base::V1 { memory, cpu, .. } => {
                let md = memory.join(rid);
                mkdir(&md)?;
                let mut details = Vec::new();
                if memory_bytes > 0 {
                    write(&md.join("memory.limit_in_bytes"), &memory_bytes.to_string())?;
                    let memsw = md.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write(&memsw, &memory_bytes.to_string())?;
                    }
                    details.push(format!(
                        "memory: memory.limit_in_bytes={memory_bytes} in {}",
                        md.display()
                    ));
                } else {
                    details.push("memory: not limited (none reserved)".into());
                }
                let mut dirs = vec![md];
                match cpu {
                    _ if cpus == 0.0 => details.push("cpu: not limited (none reserved)".into()),
                    Some(c) => {
                        let cd = c.join(rid);
                        mkdir(&cd)?;
                        write(&cd.join("cpu.cfs_period_us"), &period.to_string())?;
                        write(&cd.join("cpu.cfs_quota_us"), &quota.to_string())?;
                        details.push(format!("cpu: cpu.cfs_quota_us={quota} per {period}"));
                        dirs.push(cd);
                    }
                    None => details.push("cpu: not enforced (no cgroup v1 cpu hierarchy)".into()),
                }
                details.push(disk);
                Ok(Group {
                    dirs,
                    memory_bytes,
                    enforcement: Enforcement {
                        mechanism: Some(Mechanism::CgroupV1),
                        details,
                    },
                })
            }
            Base::None => Ok(Group {
                dirs: vec![],
                memory_bytes,
                enforcement: Enforcement {
                    mechanism: Some(Mechanism::Rlimit),
                    details: vec![
                        if memory_bytes > 0 {
                            format!("memory: RLIMIT_AS={memory_bytes} per process")
                        } else {
                            "memory: not limited (none reserved)".into()
                        },
                        if cpus > 0.0 {
                            "cpu: NOT enforced (rlimits cannot cap a CPU share)".into()
                        } else {
                            "cpu: not limited (none reserved)".into()
                        },
                        disk,
                    ],
                },
            }),
        }
    }

    /// Removes a reservation's group (later, if processes are still leaving it).
    pub fn remove_group(&self, g: &Group) {
        let mut p = self.pending_rmdir.lock().expect("poisoned");
        p.extend(g.dirs.iter().cloned());
        drop(p);
        self.gc();
    }

    /// Retries removal of groups that were still busy.
    pub fn gc(&self) {
        let mut p = self.pending_rmdir.lock().expect("poisoned");
        p.retain(|d| match std::fs::remove_dir(d) {
            Ok(()) => false,
            Err(e) => e.kind() != std::io::ErrorKind::NotFound,
        });
    }

    /// Prepares the confinement of one process, under `group` (a reservation) or none.
    /// Every process gets its own leaf cgroup when cgroups are in use, for accounting.
    pub fn prepare(&self, group: Option<&Group>) -> Result<Confinement> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let leaf_name = format!("p{}-{n}", std::process::id());
        let open = |dir: &Path| -> Result<OwnedFd> {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))
                .map_err(|e| Error::io(format!("opening {}/cgroup.procs", dir.display()), e))?;
            Ok(f.into())
        };
        let mut c = Confinement {
            procs: vec![],
            leaves: vec![],
            mechanism: None,
            rlimit_as: None,
            enforcement: match group {
                Some(g) => g.enforcement.clone(),
                None => Enforcement {
                    mechanism: None,
                    details: vec!["not under a reservation".into()],
                },
            },
        };
        let mut parents: Vec<PathBuf> = match (&self.base, group) {
            (Base::None, Some(g)) => {
                c.rlimit_as = (g.memory_bytes > 0).then_some(g.memory_bytes);
                return Ok(c);
            }
            (Base::None, None) => return Ok(c),
            (_, Some(g)) => g.dirs.clone(),
            (Base::V2 { dir }, None) => vec![dir.clone()],
            (Base::V1 { memory, cpu, .. }, None) => {
                std::iter::once(memory.clone()).chain(cpu.clone()).collect()
            }
        };
        if let Base::V1 {
            cpuacct: Some(a), ..
        } = &self.base
        {
            parents.push(a.clone());
        }
        c.mechanism = Some(self.mechanism());
        for p in parents {
            let leaf = p.join(&leaf_name);
            mkdir(&leaf)?;
            c.procs.push(open(&leaf)?);
            c.leaves.push(leaf);
        }
        Ok(c)
    }
}

/// The part of a [`Confinement`] that runs in the child (see [`Confinement::child_hook`]).
#[derive(Clone, Debug)]
pub struct ChildHook {
    fds: Vec<RawFd>,
    rlimit_as: Option<u64>,
}

impl ChildHook {
    /// Applies the confinement to the calling process. Meant for the child between fork and
    /// exec: it only formats a number on the stack and calls write(2)/setrlimit(2), which are
    /// async-signal-safe.
    pub fn apply(&self) -> std::io::Result<()> {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let mut buf = [0u8; 24];
        let mut i = buf.len();
        let mut v = pid as u64;
        loop {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        for fd in &self.fds {
            let s = &buf[i..];
            // SAFETY: fd is open (the Confinement owning it outlives the spawn); s points to
            // s.len() readable bytes.
            let r = unsafe { libc::write(*fd, s.as_ptr().cast(), s.len()) };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        if let Some(bytes) = self.rlimit_as {
            let lim = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            // SAFETY: lim is a valid rlimit struct for the duration of the call.
            if unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// SIGKILLs every process in the cgroups below `dir`; returns how many.
fn kill_tree(dir: &Path) -> usize {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                n += kill_tree(&e.path());
                let procs =
                    std::fs::read_to_string(e.path().join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: kill has no memory-safety preconditions.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    n += 1;
                }
            }
        }
    }
    n
}

/// Removes the empty cgroup directories below `dir` (and `dir` itself if `me`).
fn remove_empty_tree(dir: &Path, me: bool) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_tree(&e.path(), true);
            }
        }
    }
    if me {
        let _ = std::fs::remove_dir(dir);
    }
}

impl Drop for Enforcer {
    fn drop(&mut self) {
        self.gc();
        for b in self.base_dirs() {
            remove_empty_tree(&b, true);
        }
    }
}

impl Confinement {
    /// What the child must do to itself between fork and exec. The descriptors stay valid as
    /// long as this `Confinement` lives, so keep it until the spawn returned.
    pub fn child_hook(&self) -> ChildHook {
        ChildHook {
            fds: self.procs.iter().map(|f| f.as_raw_fd()).collect(),
            rlimit_as: self.rlimit_as,
        }
    }

    /// Reads the statistics of the process's leaf groups (call after it exited, before
    /// [`cleanup`](Confinement::cleanup)).
    pub fn stats(&self) -> CgroupStats {
        let mut s = CgroupStats::default();
        for leaf in &self.leaves {
            match self.mechanism {
                Some(Mechanism::CgroupV1) => {
                    let p = leaf.to_string_lossy();
                    if leaf.join("memory.max_usage_in_bytes").exists() {
                        s.memory_peak_bytes = read_u64(&leaf.join("memory.max_usage_in_bytes"));
                        s.oom_kills +=
                            read_key(&leaf.join("memory.oom_control"), "oom_kill").unwrap_or(0);
                    }
                    if p.contains("cpuacct") {
                        s.cpu_ns = read_u64(&leaf.join("cpuacct.usage"));
                    }
                }
                Some(Mechanism::CgroupV2) => {
                    s.memory_peak_bytes = read_u64(&leaf.join("memory.peak"));
                    s.cpu_ns = read_key(&leaf.join("cpu.stat"), "usage_usec").map(|u| u * 1000);
                    s.oom_kills += read_key(&leaf.join("memory.events"), "oom_kill").unwrap_or(0);
                }
                _ => {}
            }
        }
        s
    }

    /// Whether a cgroup (rather than nothing or rlimits) confines the process.
    pub fn uses_cgroups(&self) -> bool {
        !self.leaves.is_empty()
    }

    /// Removes the leaf groups (after the process and its descendants exited).
    pub fn cleanup(self, enforcer: &Enforcer) {
        let mut p = enforcer.pending_rmdir.lock().expect("poisoned");
        p.extend(self.leaves);
        drop(p);
        enforcer.gc();
    }

    /// Processes still in the leaf groups (descendants that outlived the child).
    pub fn remaining_pids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .leaves
            .iter()
            .filter_map(|l| std::fs::read_to_string(l.join("cgroup.procs")).ok())
            .flat_map(|s| {
                s.lines()
                    .filter_map(|x| x.trim().parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}
