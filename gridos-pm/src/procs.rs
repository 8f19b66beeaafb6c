//! The process table of one node: spawn, signal, wait, list, accounting records, mailboxes and
//! reservations.

use crate::error::{Error, Result};
use crate::proto::{ExitRecord, ExitStatus, ProcInfo, SpawnSpec, StdioSpec};
use gridos_comm::{Gpid, NodeId};
use gridos_rm::{Enforcement, Enforcer, Ledger};
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, oneshot, watch};

/// Captured output kept per stream.
pub const MAX_CAPTURE: usize = 1 << 20;
/// Messages queued per mailbox.
pub const MAILBOX_MAX_MESSAGES: usize = 1024;
/// Bytes queued per mailbox.
pub const MAILBOX_MAX_BYTES: usize = 16 << 20;
/// Exit records kept in memory.
pub const MAX_RECORDS: usize = 10_000;

/// A received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Sender.
    pub src: Gpid,
    /// Tag.
    pub tag: u32,
    /// Bytes.
    pub payload: Vec<u8>,
}

/// A process's mailbox.
#[derive(Default)]
pub struct Mailbox {
    q: Mutex<(VecDeque<Message>, usize)>,
    notify: Notify,
    closed: AtomicBool,
}

impl Mailbox {
    fn push(&self, m: Message) -> Result<()> {
        let mut q = self.q.lock().expect("poisoned");
        if q.0.len() >= MAILBOX_MAX_MESSAGES || q.1 + m.payload.len() > MAILBOX_MAX_BYTES {
            return Err(Error::Refused("mailbox full".into()));
        }
        q.1 += m.payload.len();
        q.0.push_back(m);
        drop(q);
        self.notify.notify_waiters();
        Ok(())
    }

    fn take(&self, tag: Option<u32>) -> Option<Message> {
        let mut q = self.q.lock().expect("poisoned");
        let i = q.0.iter().position(|m| tag.is_none_or(|t| m.tag == t))?;
        let m = q.0.remove(i)?;
        q.1 -= m.payload.len();
        Some(m)
    }

    /// Waits for a message with `tag` (any if `None`).
    pub async fn recv(&self, tag: Option<u32>, timeout: Option<Duration>) -> Result<Message> {
        let deadline = timeout.map(|d| tokio::time::Instant::now() + d);
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(m) = self.take(tag) {
                return Ok(m);
            }
            if self.closed.load(Ordering::Relaxed) {
                return Err(Error::Failed("process exited; mailbox closed".into()));
            }
            match deadline {
                None => notified.await,
                Some(d) => {
                    if tokio::time::timeout_at(d, notified).await.is_err() {
                        return Err(Error::Timeout(format!(
                            "no message within {:?}",
                            timeout.unwrap_or_default()
                        )));
                    }
                }
            }
        }
    }
}

struct Running {
    gpid: Gpid,
    argv: Vec<String>,
    started_unix_ms: u64,
    reservation: Option<String>,
    done: watch::Receiver<Option<ExitRecord>>,
    mailbox: Arc<Mailbox>,
}

struct Inner {
    running: HashMap<u32, Running>,
    records: HashMap<Gpid, ExitRecord>,
    order: VecDeque<Gpid>,
}

/// Unprivileged identity for children of a root daemon.
#[derive(Clone, Debug)]
pub struct SpawnUser {
    /// Name.
    pub name: String,
    /// Uid.
    pub uid: u32,
    /// Gid.
    pub gid: u32,
    /// Home directory.
    pub home: PathBuf,
}

impl SpawnUser {
    /// Looks a user up in the password database.
    pub fn lookup(name: &str) -> Result<SpawnUser> {
        let u = nix::unistd::User::from_name(name)
            .map_err(|e| Error::Config(format!("looking up user {name:?}: {e}")))?
            .ok_or_else(|| Error::Config(format!("no user {name:?}")))?;
        if u.uid.is_root() {
            return Err(Error::Config("--spawn-user must not be root".into()));
        }
        Ok(SpawnUser {
            name: name.into(),
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            home: u.dir,
        })
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The process table.
pub struct Procs {
    node: NodeId,
    incarnation: u64,
    state_dir: PathBuf,
    ctl_socket: PathBuf,
    spawn_user: Option<SpawnUser>,
    enforcer: Arc<Enforcer>,
    ledger: Mutex<Ledger>,
    implicit: Mutex<Vec<String>>,
    inner: Mutex<Inner>,
    spawner: std::sync::mpsc::Sender<Job>,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Reads, increments and durably stores the node's incarnation counter in `state_dir`.
pub fn next_incarnation(state_dir: &Path) -> Result<u64> {
    std::fs::create_dir_all(state_dir)
        .map_err(|e| Error::Config(format!("creating state dir {}: {e}", state_dir.display())))?;
    let path = state_dir.join("incarnation");
    let prev = match std::fs::read_to_string(&path) {
        Ok(s) => s
            .trim()
            .parse::<u64>()
            .map_err(|_| Error::Config(format!("{} is corrupt: {s:?}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(Error::Config(format!("reading {}: {e}", path.display()))),
    };
    let next = prev + 1;
    let tmp = state_dir.join("incarnation.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{next}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    if let Ok(d) = std::fs::File::open(state_dir) {
        let _ = d.sync_all();
    }
    Ok(next)
}

fn capture(mut r: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut keep = Vec::new();
        let mut buf = [0u8; 8192];
        let mut truncated = false;
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = MAX_CAPTURE.saturating_sub(keep.len());
                    keep.extend_from_slice(&buf[..n.min(room)]);
                    truncated |= n > room;
                }
            }
        }
        let mut s = String::from_utf8_lossy(&keep).into_owned();
        if truncated {
            s.push_str("\n[gridos: output truncated at 1 MiB]\n");
        }
        let _ = tx.send(s);
    });
    rx
}

impl Procs {
    /// A process table for node `node` in its incarnation, keeping records in `state_dir`.
    pub fn new(
        node: NodeId,
        incarnation: u64,
        state_dir: PathBuf,
        ctl_socket: PathBuf,
        spawn_user: Option<SpawnUser>,
        enforcer: Arc<Enforcer>,
        ledger: Ledger,
    ) -> Arc<Procs> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        // One long-lived thread forks every child: children ask for SIGKILL when their parent
        // thread dies (PR_SET_PDEATHSIG), so the parent thread must live as long as the node.
        std::thread::Builder::new()
            .name("gridos-spawner".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            })
            .expect("spawning a thread");
        let mut inner = Inner {
            running: HashMap::new(),
            records: HashMap::new(),
            order: VecDeque::new(),
        };
        // Records of earlier incarnations stay queryable.
        if let Ok(f) = std::fs::File::open(state_dir.join("accounting.jsonl")) {
            for line in std::io::BufReader::new(f).lines().map_while(|l| l.ok()) {
                if let Ok(r) = serde_json::from_str::<ExitRecord>(&line) {
                    inner.order.push_back(r.gpid.clone());
                    inner.records.insert(r.gpid.clone(), r);
                    if inner.order.len() > MAX_RECORDS {
                        if let Some(old) = inner.order.pop_front() {
                            inner.records.remove(&old);
                        }
                    }
                }
            }
        }
        Arc::new(Procs {
            node,
            incarnation,
            state_dir,
            ctl_socket,
            spawn_user,
            enforcer,
            ledger: Mutex::new(ledger),
            implicit: Mutex::new(Vec::new()),
            inner: Mutex::new(inner),
            spawner: tx,
        })
    }

    /// This node's id.
    pub fn node(&self) -> &NodeId {
        &self.node
    }
    /// This node's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }
    /// The enforcer.
    pub fn enforcer(&self) -> &Arc<Enforcer> {
        &self.enforcer
    }
    /// The reservation ledger.
    pub fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().expect("poisoned")
    }

    fn gpid(&self, pid: u32) -> Gpid {
        Gpid::new(self.node.clone(), self.incarnation, pid)
    }

    /// Starts a process.
    pub async fn spawn(self: &Arc<Self>, spec: SpawnSpec) -> Result<(Gpid, Enforcement)> {
        if spec.argv.is_empty() || spec.argv[0].is_empty() {
            return Err(Error::BadRequest("empty command".into()));
        }
        let has_nul = spec
            .argv
            .iter()
            .chain(spec.env.iter().flat_map(|(k, v)| [k, v]))
            .any(|s| s.contains('\0'));
        if has_nul
            || spec
                .env
                .iter()
                .any(|(k, _)| k.is_empty() || k.contains('='))
        {
            return Err(Error::BadRequest(
                "NUL byte in argv/env, or malformed environment name".into(),
            ));
        }
        // Reservation: existing, implicit, or none.
        let (group, rid, implicit) = {
            let mut l = self.ledger();
            match (&spec.reservation, spec.cpus, spec.memory_bytes) {
                (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                    return Err(Error::BadRequest(
                        "give a reservation or cpus/memory, not both".into(),
                    ));
                }
                (Some(r), _, _) => (Some(l.group(r)?.clone()), Some(r.clone()), false),
                (None, None, None) => (None, None, false),
                (None, c, m) => {
                    let req = gridos_rm::Request {
                        cpus: c.unwrap_or(0.0),
                        memory_bytes: m.unwrap_or(0),
                        disk_bytes: 0,
                        duration_secs: 100 * 365 * 86400,
                    };
                    let res = l.reserve(req)?;
                    let g = l.group(&res.id)?.clone();
                    (Some(g), Some(res.id), true)
                }
            }
        };
        let release_implicit = |this: &Procs| {
            if implicit {
                if let Some(r) = &rid {
                    let _ = this.ledger().release(r);
                }
            }
        };
        let conf = match self.enforcer.prepare(group.as_ref()) {
            Ok(c) => c,
            Err(e) => {
                release_implicit(self);
                return Err(e.into());
            }
        };
        let mut cmd = std::process::Command::new(&spec.argv[0]);
        cmd.args(&spec.argv[1..]);
        cmd.env_clear();
        let home = self
            .spawn_user
            .as_ref()
            .map(|u| u.home.clone())
            .unwrap_or_else(|| "/".into());
        cmd.env(
            "PATH",
            "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
        );
        cmd.env("HOME", &home);
        if let Some(u) = &self.spawn_user {
            cmd.env("USER", &u.name).env("LOGNAME", &u.name);
        }
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        cmd.env("GRIDOS_NODE", &self.ctl_socket);
        cmd.env("GRIDOS_NODE_ID", self.node.as_str());
        cmd.env("GRIDOS_INCARNATION", self.incarnation.to_string());
        if let Some(r) = &rid {
            cmd.env("GRIDOS_RESERVATION", format!("{r}@{}", self.node));
        }
        cmd.current_dir(spec.cwd.clone().unwrap_or_else(|| "/".into()));
        let stdio = |s: &StdioSpec, write: bool| -> Result<std::process::Stdio> {
            Ok(match s {
                StdioSpec::Null => std::process::Stdio::null(),
                StdioSpec::Capture if write => std::process::Stdio::piped(),
                StdioSpec::Capture => {
                    return Err(Error::BadRequest("stdin cannot be captured".into()));
                }
                StdioSpec::File { path, append } => {
                    let mut o = std::fs::OpenOptions::new();
                    if write {
                        o.create(true).write(true);
                        if *append {
                            o.append(true)
                        } else {
                            o.truncate(true)
                        };
                    } else {
                        o.read(true);
                    }
                    let f = o
                        .open(path)
                        .map_err(|e| Error::Spawn(format!("opening {}: {e}", path.display())))?;
                    if let (true, Some(u)) = (write, &self.spawn_user) {
                        let _ = std::os::unix::fs::fchown(&f, Some(u.uid), Some(u.gid));
                    }
                    f.into()
                }
            })
        };
        let io = (|| -> Result<_> {
            Ok((
                stdio(&spec.stdin, false)?,
                stdio(&spec.stdout, true)?,
                stdio(&spec.stderr, true)?,
            ))
        })();
        let (i, o, e) = match io {
            Ok(x) => x,
            Err(e) => {
                release_implicit(self);
                return Err(e);
            }
        };
        cmd.stdin(i).stdout(o).stderr(e);
        cmd.process_group(0);
        let hook = conf.child_hook();
        let user = self.spawn_user.as_ref().map(|u| (u.uid, u.gid));
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
        // system calls (write, setrlimit, setgroups, setgid, setuid, prctl, getppid).
        unsafe {
            cmd.pre_exec(move || {
                // Into the cgroups first, while still privileged (cgroup v2 checks the writer).
                hook.apply()?;
                if let Some((uid, gid)) = user {
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // Die with the node (set after setuid, which clears it).
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("node died during spawn"));
                }
                Ok(())
            });
        }
        let (tx, rx) = oneshot::channel();
        let argv0 = spec.argv[0].clone();
        let job: Job = Box::new(move || {
            let _ = tx.send(cmd.spawn());
        });
        if self.spawner.send(job).is_err() {
            release_implicit(self);
            return Err(Error::Spawn("spawner thread gone".into()));
        }
        let child = match rx.await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                conf.cleanup(&self.enforcer);
                release_implicit(self);
                return Err(Error::Spawn(format!("cannot run {argv0:?}: {e}")));
            }
            Err(_) => {
                release_implicit(self);
                return Err(Error::Spawn("spawner thread gone".into()));
            }
        };
        let mut child = child;
        let pid = child.id();
        let gpid = self.gpid(pid);
        let out = child.stdout.take().map(capture);
        let err = child.stderr.take().map(capture);
        drop(child); // Dropping a std Child neither kills nor reaps it.
        let (done_tx, done_rx) = watch::channel(None);
        let started = Instant::now();
        let started_unix_ms = now_ms();
        let enforcement = conf.enforcement.clone();
        if implicit {
            if let Some(r) = &rid {
                self.implicit.lock().expect("poisoned").push(r.clone());
            }
        }
        self.inner.lock().expect("poisoned").running.insert(
            pid,
            Running {
                gpid: gpid.clone(),
                argv: spec.argv.clone(),
                started_unix_ms,
                reservation: rid.clone(),
                done: done_rx,
                mailbox: Arc::new(Mailbox::default()),
            },
        );
        let this = self.clone();
        let argv = spec.argv;
        let g2 = gpid.clone();
        let enf2 = enforcement.clone();
        std::thread::Builder::new()
            .name(format!("gridos-wait-{pid}"))
            .spawn(move || {
                let rec = reap(
                    pid,
                    g2,
                    argv,
                    started,
                    started_unix_ms,
                    rid,
                    enf2,
                    &conf,
                    out,
                    err,
                );
                conf.cleanup(&this.enforcer);
                this.finish(pid, rec, implicit, done_tx);
            })
            .map_err(|e| Error::Spawn(format!("waiter thread: {e}")))?;
        Ok((gpid, enforcement))
    }

    fn finish(
        &self,
        pid: u32,
        rec: ExitRecord,
        implicit: bool,
        done: watch::Sender<Option<ExitRecord>>,
    ) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state_dir.join("accounting.jsonl"))
        {
            if let Ok(line) = serde_json::to_string(&rec) {
                let _ = writeln!(f, "{line}");
            }
        }
        if implicit {
            if let Some(r) = &rec.reservation {
                let _ = self.ledger().release(r);
                self.implicit.lock().expect("poisoned").retain(|x| x != r);
            }
        }
        let mut inner = self.inner.lock().expect("poisoned");
        if let Some(r) = inner.running.remove(&pid) {
            r.mailbox.closed.store(true, Ordering::Relaxed);
            r.mailbox.notify.notify_waiters();
        }
        inner.order.push_back(rec.gpid.clone());
        inner.records.insert(rec.gpid.clone(), rec.clone());
        if inner.order.len() > MAX_RECORDS {
            if let Some(old) = inner.order.pop_front() {
                inner.records.remove(&old);
            }
        }
        drop(inner);
        let _ = done.send(Some(rec));
    }

    fn check_mine(&self, gpid: &Gpid) -> Result<()> {
        if gpid.node() != &self.node {
            return Err(Error::UnknownNode(gpid.node().to_string()));
        }
        Ok(())
    }

    fn lost_incarnation(&self, gpid: &Gpid) -> Error {
        if gpid.incarnation() < self.incarnation {
            Error::NodeLost {
                node: self.node.to_string(),
                detail: format!(
                    "incarnation {} ended (the node restarted and is now incarnation {}); the fate of {gpid} is unknown",
                    gpid.incarnation(),
                    self.incarnation
                ),
            }
        } else {
            Error::UnknownProcess {
                gpid: gpid.to_string(),
                detail: "no such process on this node".into(),
            }
        }
    }

    /// Sends `signal` to a running process.
    pub fn signal(&self, gpid: &Gpid, signal: i32) -> Result<()> {
        self.check_mine(gpid)?;
        let sig = nix::sys::signal::Signal::try_from(signal)
            .map_err(|_| Error::BadRequest(format!("invalid signal number {signal}")))?;
        let inner = self.inner.lock().expect("poisoned");
        if gpid.incarnation() == self.incarnation && inner.running.contains_key(&gpid.pid()) {
            // The pid cannot have been reused: we reap it ourselves, after removing it here.
            // The child leads its own process group; signal the group, so a shell's children
            // get the signal too (as job control would).
            let pid = nix::unistd::Pid::from_raw(gpid.pid() as i32);
            nix::sys::signal::killpg(pid, sig)
                .or_else(|_| nix::sys::signal::kill(pid, sig))
                .map_err(|e| Error::Failed(format!("kill {gpid}: {e}")))?;
            return Ok(());
        }
        if let Some(r) = inner.records.get(gpid) {
            return Err(Error::UnknownProcess {
                gpid: gpid.to_string(),
                detail: format!("already {}", r.status),
            });
        }
        Err(self.lost_incarnation(gpid))
    }

    /// Waits for a process to end and returns its accounting record (at once if it has).
    pub async fn wait(&self, gpid: &Gpid, timeout: Option<Duration>) -> Result<ExitRecord> {
        self.check_mine(gpid)?;
        let mut rx = {
            let inner = self.inner.lock().expect("poisoned");
            if let Some(r) = inner.records.get(gpid) {
                return Ok(r.clone());
            }
            match inner.running.get(&gpid.pid()) {
                Some(r) if r.gpid == *gpid => r.done.clone(),
                _ => return Err(self.lost_incarnation(gpid)),
            }
        };
        let fut = rx.wait_for(|r| r.is_some());
        let res = match timeout {
            None => fut.await,
            Some(d) => tokio::time::timeout(d, fut)
                .await
                .map_err(|_| Error::Timeout(format!("{gpid} still running after {d:?}")))?,
        };
        match res {
            Ok(r) => Ok(r.clone().expect("waited for Some")),
            Err(_) => Err(Error::Failed("waiter vanished".into())),
        }
    }

    /// Running and finished processes of this node.
    pub fn list(&self) -> Vec<ProcInfo> {
        let inner = self.inner.lock().expect("poisoned");
        let mut v: Vec<ProcInfo> = inner
            .running
            .iter()
            .map(|(pid, r)| ProcInfo {
                gpid: r.gpid.clone(),
                argv: r.argv.clone(),
                state: "running".into(),
                status: None,
                usage: gridos_rm::live_usage(*pid).ok(),
                started_unix_ms: r.started_unix_ms,
                reservation: r.reservation.as_ref().map(|x| format!("{x}@{}", self.node)),
            })
            .collect();
        v.extend(
            inner
                .order
                .iter()
                .filter_map(|g| inner.records.get(g))
                .map(|r| ProcInfo {
                    gpid: r.gpid.clone(),
                    argv: r.argv.clone(),
                    state: "exited".into(),
                    status: Some(r.status),
                    usage: Some(r.usage.clone()),
                    started_unix_ms: r.started_unix_ms,
                    reservation: r
                        .reservation
                        .as_ref()
                        .map(|x| format!("{x}@{}", r.gpid.node())),
                }),
        );
        v.sort_by(|a, b| {
            a.started_unix_ms
                .cmp(&b.started_unix_ms)
                .then(a.gpid.cmp(&b.gpid))
        });
        v
    }

    /// The gridos process that `pid` is or descends from, if any.
    pub fn identify(&self, pid: u32) -> Option<Gpid> {
        let inner = self.inner.lock().expect("poisoned");
        let mut p = pid;
        for _ in 0..64 {
            if let Some(r) = inner.running.get(&p) {
                return Some(r.gpid.clone());
            }
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            if ppid <= 1 {
                return None;
            }
            p = ppid;
        }
        None
    }

    /// The mailbox of a running process of this incarnation.
    pub fn mailbox(&self, gpid: &Gpid) -> Result<Arc<Mailbox>> {
        self.check_mine(gpid)?;
        let inner = self.inner.lock().expect("poisoned");
        match inner.running.get(&gpid.pid()) {
            Some(r) if r.gpid == *gpid => Ok(r.mailbox.clone()),
            _ => {
                if inner.records.contains_key(gpid) {
                    Err(Error::UnknownProcess {
                        gpid: gpid.to_string(),
                        detail: "has exited".into(),
                    })
                } else {
                    Err(self.lost_incarnation(gpid))
                }
            }
        }
    }

    /// Delivers a message to a local process.
    pub fn deliver(&self, src: Gpid, dst: &Gpid, tag: u32, payload: Vec<u8>) -> Result<()> {
        self.mailbox(dst)?.push(Message { src, tag, payload })
    }

    /// Kills the processes running under reservation `rid` (used on release and expiry).
    pub fn kill_reservation(&self, rid: &str) -> usize {
        let inner = self.inner.lock().expect("poisoned");
        let mut n = 0;
        for (pid, r) in &inner.running {
            if r.reservation.as_deref() == Some(rid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                n += 1;
            }
        }
        n
    }

    /// Releases a reservation (explicit ones only), killing what still runs under it.
    pub fn release(&self, rid: &str) -> Result<gridos_rm::Reservation> {
        if self
            .implicit
            .lock()
            .expect("poisoned")
            .iter()
            .any(|r| r == rid)
        {
            return Err(Error::BadRequest(format!(
                "{rid} belongs to a single process and ends with it; kill the process instead"
            )));
        }
        let r = self.ledger().release(rid)?;
        let killed = self.kill_reservation(rid);
        if killed > 0 {
            tracing::info!(rid, killed, "released reservation; killed its processes");
        }
        Ok(r)
    }

    /// Expires reservations whose time is up; their processes are killed.
    pub fn expire(&self) {
        let expired = self.ledger().expire();
        for r in expired {
            let n = self.kill_reservation(&r.id);
            tracing::info!(rid = %r.id, killed = n, "reservation expired");
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn reap(
    pid: u32,
    gpid: Gpid,
    argv: Vec<String>,
    started: Instant,
    started_unix_ms: u64,
    reservation: Option<String>,
    enforcement: Enforcement,
    conf: &gridos_rm::Confinement,
    out: Option<std::sync::mpsc::Receiver<String>>,
    err: Option<std::sync::mpsc::Receiver<String>>,
) -> ExitRecord {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    // Wait for the exit without reaping, so /proc/PID/io can still be read.
    let id = || Id::Pid(nix::unistd::Pid::from_raw(pid as i32));
    while let Err(nix::errno::Errno::EINTR) =
        waitid(id(), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
    {}
    let io = gridos_rm::live_usage(pid).ok();
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: status and ru are valid for writes; pid is our own child.
        let r = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut ru) };
        if r >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break;
        }
    }
    let wall_ms = started.elapsed().as_millis() as u64;
    // A gridos process ends with its descendants: whatever is left in its process group or its
    // cgroup is killed, so nothing runs unaccounted (or outside its reservation's lifetime).
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    for p in conf.remaining_pids() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let st = if libc::WIFSIGNALED(status) {
        ExitStatus::Signaled {
            signal: libc::WTERMSIG(status),
            core_dumped: libc::WCOREDUMP(status),
        }
    } else {
        ExitStatus::Exited(libc::WEXITSTATUS(status))
    };
    let mut usage = gridos_rm::from_rusage(&ru);
    if let Some(io) = io {
        usage.read_bytes = io.read_bytes;
        usage.write_bytes = io.write_bytes;
        usage.storage_read_bytes = usage.storage_read_bytes.max(io.storage_read_bytes);
        usage.storage_write_bytes = usage.storage_write_bytes.max(io.storage_write_bytes);
    }
    let cgroup = conf.uses_cgroups().then(|| conf.stats());
    let oom_killed = cgroup.as_ref().is_some_and(|c| c.oom_kills > 0)
        && matches!(
            st,
            ExitStatus::Signaled {
                signal: libc::SIGKILL,
                ..
            }
        );
    // Output readers end when every writer closed; descendants may hold the pipe, so bound it.
    let get = |rx: Option<std::sync::mpsc::Receiver<String>>| {
        rx.map(|rx| {
            rx.recv_timeout(Duration::from_secs(2))
                .unwrap_or_else(|_| "[gridos: output still open]".into())
        })
    };
    ExitRecord {
        gpid,
        argv,
        status: st,
        usage,
        cgroup,
        oom_killed,
        wall_ms,
        started_unix_ms,
        ended_unix_ms: now_ms(),
        reservation,
        enforcement,
        stdout: get(out),
        stderr: get(err),
    }
}
