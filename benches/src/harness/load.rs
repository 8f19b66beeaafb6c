//! Load on one FTP server: control sessions held open, many transfers at once, connection
//! churn. One plain blocking client (std sockets, anonymous login, PASV, binary) drives
//! every server, so the figures compare servers, not clients. Every byte moved is checked.
//!
//! Used by the `load` binary (figures for benches/RESULTS.md, against globus-gridftp-server
//! and vsftpd in the same run) and by `benches/tests/load.rs` (correctness).
//!
//! Start at [`Target`]; the three measurements are [`hold_sessions`], [`concurrent`] and
//! [`churn`].

use super::HarnessError;
use super::machine::tree_rss;
use super::peers::{Server, ServerKind};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// How long any one reply or data read may take before the load client gives up.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// The server under load.
#[derive(Clone, Debug)]
pub struct Target {
    /// Control address.
    pub addr: SocketAddr,
    /// Server process (its descendants are counted too).
    pub pid: u32,
    /// Directory served, where files are put and checked.
    pub root: PathBuf,
    /// What goes before a file name on the wire: globus-gridftp-server serves the whole
    /// file system, the others the root.
    pub prefix: String,
}

impl Target {
    /// The target of a started harness server.
    pub fn of(s: &Server) -> Target {
        Target {
            addr: s.addr(),
            pid: s.pid(),
            root: s.root.clone(),
            prefix: match s.kind {
                ServerKind::Globus => format!("{}/", s.root.display()),
                _ => String::new(),
            },
        }
    }

    /// Open file descriptors of the server and every process it forked.
    pub fn fds(&self) -> usize {
        tree_pids(self.pid)
            .iter()
            .map(|p| {
                std::fs::read_dir(format!("/proc/{p}/fd"))
                    .map(|d| d.count())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Resident memory of the server and every process it forked.
    pub fn rss(&self) -> u64 {
        tree_rss(self.pid)
    }

    /// Processes: the server and its descendants.
    pub fn processes(&self) -> usize {
        tree_pids(self.pid).len()
    }
}

fn tree_pids(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        if !Path::new(&format!("/proc/{p}")).exists() {
            continue;
        }
        out.push(p);
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                let c = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                stack.extend(c.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
            }
        }
    }
    out
}

/// Raises this process's open-file limit (children inherit it), so the load client can hold
/// a thousand sessions and the servers it starts can serve them: to [`FD_WANT`] where the
/// process may raise its hard limit (root), else to the hard limit. Returns the limit now.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    if hard < FD_WANT && setrlimit(Resource::RLIMIT_NOFILE, FD_WANT, FD_WANT).is_ok() {
        return FD_WANT;
    }
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

/// Open files the load client asks for: two ends of a thousand sessions with room to spare.
pub const FD_WANT: u64 = 65_536;

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> HarnessError {
    move |source| HarnessError::Io { what, source }
}

/// A control connection of the load client.
pub struct Ftp {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Ftp {
    /// Connects and reads the greeting.
    pub fn connect(addr: SocketAddr) -> Result<Ftp, HarnessError> {
        let s = TcpStream::connect(addr).map_err(io("connect"))?;
        s.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(io("connect"))?;
        let _ = s.set_nodelay(true);
        let mut f = Ftp {
            r: BufReader::new(s.try_clone().map_err(io("connect"))?),
            w: s,
        };
        f.expect_reply("greeting", &[220])?;
        Ok(f)
    }

    /// Connects and logs in anonymously (vsftpd answers USER with 230 directly), binary.
    pub fn login(addr: SocketAddr) -> Result<Ftp, HarnessError> {
        let mut f = Ftp::connect(addr)?;
        if f.cmd("USER anonymous", &[230, 331])? == 331 {
            f.cmd("PASS load@gridos", &[230])?;
        }
        f.cmd("TYPE I", &[200])?;
        Ok(f)
    }

    fn reply(&mut self) -> Result<(u16, String), HarnessError> {
        let mut text = String::new();
        let mut line = String::new();
        if self.r.read_line(&mut line).map_err(io("reply"))? == 0 {
            return Err(HarnessError::Reply {
                command: "(connection)".into(),
                code: 0,
                text: "closed by the server".into(),
            });
        }
        let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        text.push_str(&line);
        if line.as_bytes().get(3) == Some(&b'-') {
            let end = format!("{code} ");
            loop {
                line.clear();
                if self.r.read_line(&mut line).map_err(io("reply"))? == 0 {
                    break;
                }
                text.push_str(&line);
                if line.starts_with(&end) {
                    break;
                }
            }
        }
        Ok((code, text))
    }

    fn expect_reply(&mut self, command: &str, ok: &[u16]) -> Result<u16, HarnessError> {
        let (code, text) = self.reply().map_err(|e| match e {
            // Name the command a reply did not come for.
            HarnessError::Io { source, .. } => HarnessError::Reply {
                command: command.into(),
                code: 0,
                text: source.to_string(),
            },
            e => e,
        })?;
        if ok.contains(&code) {
            Ok(code)
        } else {
            Err(HarnessError::Reply {
                command: command.into(),
                code,
                text: text.trim_end().into(),
            })
        }
    }

    /// Sends `line` and expects one of `ok`.
    pub fn cmd(&mut self, line: &str, ok: &[u16]) -> Result<u16, HarnessError> {
        self.w
            .write_all(format!("{line}\r\n").as_bytes())
            .map_err(io("command"))?;
        let verb = line.split(' ').next().unwrap_or(line);
        self.expect_reply(verb, ok)
    }

    fn pasv(&mut self) -> Result<TcpStream, HarnessError> {
        self.w.write_all(b"PASV\r\n").map_err(io("command"))?;
        let (code, text) = self.reply()?;
        let bad = || HarnessError::Reply {
            command: "PASV".into(),
            code,
            text: text.trim_end().into(),
        };
        if code != 227 {
            return Err(bad());
        }
        let inner = text
            .split('(')
            .nth(1)
            .and_then(|t| t.split(')').next())
            .ok_or_else(bad)?;
        let n: Vec<u8> = inner
            .split(',')
            .map(|v| v.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        let [a, b, c, d, p1, p2] = n[..] else {
            return Err(bad());
        };
        let addr = SocketAddrV4::new([a, b, c, d].into(), u16::from(p1) << 8 | u16::from(p2));
        let s = TcpStream::connect(addr).map_err(io("data connect"))?;
        s.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(io("data connect"))?;
        Ok(s)
    }

    /// RETR `path`, handing the bytes to `sink` as they come; the byte count.
    pub fn retr(
        &mut self,
        path: &str,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), HarnessError>,
    ) -> Result<u64, HarnessError> {
        let mut d = self.pasv()?;
        self.cmd(&format!("RETR {path}"), &[125, 150])?;
        let mut buf = vec![0u8; 256 << 10];
        let mut n = 0u64;
        loop {
            let k = d.read(&mut buf).map_err(io("data read"))?;
            if k == 0 {
                break;
            }
            sink(&buf[..k])?;
            n += k as u64;
        }
        drop(d);
        self.expect_reply("RETR", &[226, 250])?;
        Ok(n)
    }

    /// STOR `path` with `len` bytes of `pattern`.
    pub fn stor(&mut self, path: &str, pattern: &Pattern, len: u64) -> Result<(), HarnessError> {
        let mut d = self.pasv()?;
        self.cmd(&format!("STOR {path}"), &[125, 150])?;
        let mut at = 0u64;
        while at < len {
            let chunk = pattern.slice(at, (len - at).min(256 << 10) as usize);
            d.write_all(chunk).map_err(io("data write"))?;
            at += chunk.len() as u64;
        }
        drop(d);
        self.expect_reply("STOR", &[226, 250])?;
        Ok(())
    }

    /// QUIT, waiting for the goodbye.
    pub fn quit(mut self) -> Result<(), HarnessError> {
        self.cmd("QUIT", &[221]).map(drop)
    }
}

/// File contents that are cheap to make and to check at any offset: a 1 MiB random block,
/// read from a per-file starting point, so every file differs and a mix-up shows.
pub struct Pattern {
    block: Arc<Vec<u8>>,
    start: usize,
}

const BLOCK: usize = 1 << 20;

impl Pattern {
    /// The block shared by all files.
    pub fn block() -> Arc<Vec<u8>> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut v: Vec<u8> = (0..BLOCK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 29) as u8
            })
            .collect();
        // Twice over, so that any slice of up to BLOCK bytes is contiguous.
        v.extend_from_within(..);
        Arc::new(v)
    }

    /// File number `n`'s pattern.
    pub fn file(block: &Arc<Vec<u8>>, n: usize) -> Pattern {
        Pattern {
            block: block.clone(),
            start: n.wrapping_mul(4099) % BLOCK,
        }
    }

    /// Up to `max` bytes (at most 1 MiB) from offset `at`.
    pub fn slice(&self, at: u64, max: usize) -> &[u8] {
        let s = (self.start + (at % BLOCK as u64) as usize) % BLOCK;
        &self.block[s..s + max.min(BLOCK)]
    }

    /// Whether `data` is what lies at offset `at`.
    pub fn matches(&self, mut at: u64, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            let want = self.slice(at, data.len());
            if want != &data[..want.len()] {
                return false;
            }
            at += want.len() as u64;
            data = &data[want.len()..];
        }
        true
    }

    /// Writes `len` bytes of the pattern to `path`.
    pub fn write(&self, path: &Path, len: u64) -> Result<(), HarnessError> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(io("write"))?);
        let mut at = 0;
        while at < len {
            let c = self.slice(at, (len - at).min(BLOCK as u64) as usize);
            f.write_all(c).map_err(io("write"))?;
            at += c.len() as u64;
        }
        f.flush().map_err(io("write"))
    }

    /// Whether the file at `path` holds exactly `len` bytes of the pattern.
    pub fn check_file(&self, path: &Path, len: u64) -> Result<bool, HarnessError> {
        let mut f = std::fs::File::open(path).map_err(io("check"))?;
        let mut buf = vec![0u8; BLOCK];
        let mut at = 0u64;
        loop {
            let k = f.read(&mut buf).map_err(io("check"))?;
            if k == 0 {
                return Ok(at == len);
            }
            if !self.matches(at, &buf[..k]) {
                return Ok(false);
            }
            at += k as u64;
        }
    }
}

/// What holding sessions open did to the server.
#[derive(Clone, Debug)]
pub struct Sessions {
    /// Sessions logged in and held at once.
    pub held: usize,
    /// Seconds to open and log them all in.
    pub open_secs: f64,
    /// Connect + login + PWD + QUIT of one more client while they are held.
    pub new_client: Duration,
    /// Server fds before, while held, after they closed.
    pub fds: (usize, usize, usize),
    /// Server RSS (bytes) before, while held, after they closed.
    pub rss: (u64, u64, u64),
    /// Server processes while held.
    pub processes: usize,
}

/// Opens `n` sessions, each logged in, holds them, times one more client, closes them and
/// waits (up to `settle`) for the server's fds to come back to where they were.
pub fn hold_sessions(t: &Target, n: usize, settle: Duration) -> Result<Sessions, HarnessError> {
    // One session first, so that what a first login loads (libraries, caches) is in the
    // baseline.
    Ftp::login(t.addr)?.quit()?;
    std::thread::sleep(Duration::from_millis(300));
    let (fd0, rss0) = (t.fds(), t.rss());
    let start = Instant::now();
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(Ftp::login(t.addr)?);
    }
    let open_secs = start.elapsed().as_secs_f64();
    // Every one still answers.
    for f in held.iter_mut() {
        f.cmd("NOOP", &[200])?;
    }
    let (fd1, rss1, procs) = (t.fds(), t.rss(), t.processes());
    let start = Instant::now();
    let mut one = Ftp::login(t.addr)?;
    one.cmd("PWD", &[257])?;
    one.quit()?;
    let new_client = start.elapsed();
    for f in held {
        f.quit()?;
    }
    settle_back(t, fd0, rss0, settle);
    Ok(Sessions {
        held: n,
        open_secs,
        new_client,
        fds: (fd0, fd1, t.fds()),
        rss: (rss0, rss1, t.rss()),
        processes: procs,
    })
}

/// Waits (up to `settle`) for the server's fds to come back to `fd0` and its memory to
/// within 1 MiB of `rss0` — a server may give memory back a moment after the last close —
/// then a little longer, so that what is measured next is where it stays.
fn settle_back(t: &Target, fd0: usize, rss0: u64, settle: Duration) {
    let deadline = Instant::now() + settle;
    while (t.fds() > fd0 || t.rss() > rss0 + (1 << 20)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
}

/// Direction of a concurrent run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Every client RETRs its own file.
    Down,
    /// Every client STORs its own file.
    Up,
}

/// What a concurrent run moved.
#[derive(Clone, Debug)]
pub struct Transfers {
    /// Files moved, every byte checked.
    pub files: usize,
    /// Bytes in all.
    pub bytes: u64,
    /// Wall time from the common start to the last file done.
    pub secs: f64,
    /// Highest server RSS seen (sampled every 50 ms), server and children.
    pub peak_rss: u64,
}

impl Transfers {
    /// Aggregate rate in GB/s (10^9).
    pub fn gb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.secs.max(1e-9) / 1e9
    }
}

/// A fresh served tree under `dir`: `root/` readable by any server's user, `root/up/`
/// writable by it (globus-gridftp-server runs anonymous sessions as nobody, vsftpd as
/// daemon). Removed on drop.
pub fn served_tree(dir: &Path) -> Result<(tempfile::TempDir, PathBuf), HarnessError> {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::Builder::new()
        .prefix("gridos-load-")
        .tempdir_in(dir)
        .map_err(io("served tree"))?;
    let root = t.path().join("root");
    std::fs::create_dir_all(root.join("up")).map_err(io("served tree"))?;
    for (p, m) in [(t.path(), 0o755), (&root, 0o755), (&root.join("up"), 0o777)] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m))
            .map_err(io("served tree"))?;
    }
    Ok((t, root))
}

/// The file names [`concurrent`] uses.
pub fn load_name(dir: Direction, i: usize) -> String {
    match dir {
        Direction::Down => format!("load-down-{i}.bin"),
        Direction::Up => format!("up/load-up-{i}.bin"),
    }
}

/// Puts the `n` files of `size` bytes that a download run fetches into `root`.
pub fn prepare_downloads(root: &Path, n: usize, size: u64) -> Result<(), HarnessError> {
    let block = Pattern::block();
    for i in 0..n {
        Pattern::file(&block, i).write(&root.join(load_name(Direction::Down, i)), size)?;
    }
    Ok(())
}

/// `n` clients at once, each moving its own file of `size` bytes; downloads are checked as
/// they arrive, uploads on disk afterwards (and removed).
pub fn concurrent(
    t: &Target,
    n: usize,
    size: u64,
    dir: Direction,
) -> Result<Transfers, HarnessError> {
    let block = Pattern::block();
    let barrier = Arc::new(Barrier::new(n + 1));
    let gate = Arc::new(std::sync::Mutex::new(()));
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak, t) = (done.clone(), peak.clone(), t.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(t.rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let workers: Vec<_> = (0..n)
        .map(|i| {
            let (barrier, block, t, gate) =
                (barrier.clone(), block.clone(), t.clone(), gate.clone());
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || -> Result<(), HarnessError> {
                    // Log in before the start, so the run times transfers, not logins, and
                    // one at a time: vsftpd's listen backlog is 32, and a burst beyond it
                    // strands connections the kernel took but the server never accepted.
                    let login = {
                        let _one = gate.lock();
                        Ftp::login(t.addr)
                    };
                    barrier.wait();
                    let mut f = login?;
                    let pattern = Pattern::file(&block, i);
                    let path = format!("{}{}", t.prefix, load_name(dir, i));
                    match dir {
                        Direction::Down => {
                            let mut at = 0u64;
                            let got = f.retr(&path, &mut |b| {
                                if !pattern.matches(at, b) {
                                    return Err(HarnessError::Mismatch(format!(
                                        "{path}: wrong bytes at {at}"
                                    )));
                                }
                                at += b.len() as u64;
                                Ok(())
                            })?;
                            if got != size {
                                return Err(HarnessError::Mismatch(format!(
                                    "{path}: {got} bytes of {size}"
                                )));
                            }
                        }
                        Direction::Up => f.stor(&path, &pattern, size)?,
                    }
                    f.quit()
                })
                .map_err(io("spawn"))
        })
        .collect::<Result<_, _>>()?;
    barrier.wait();
    let start = Instant::now();
    let results: Vec<_> = workers
        .into_iter()
        .map(|w| {
            w.join()
                .unwrap_or_else(|_| Err(HarnessError::Mismatch("a client panicked".into())))
        })
        .collect();
    let secs = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let failed: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    if !failed.is_empty() {
        return Err(HarnessError::Mismatch(format!(
            "{} of {n} clients failed; first: {}",
            failed.len(),
            failed[0]
        )));
    }
    if dir == Direction::Up {
        for i in 0..n {
            let p = t.root.join(load_name(dir, i));
            if !Pattern::file(&block, i).check_file(&p, size)? {
                return Err(HarnessError::Mismatch(format!(
                    "{} on disk differs from what was sent",
                    p.display()
                )));
            }
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(Transfers {
        files: n,
        bytes: n as u64 * size,
        secs,
        peak_rss: peak.load(Ordering::Relaxed),
    })
}

/// What a churn run did.
#[derive(Clone, Debug)]
pub struct Churn {
    /// Sessions: connect, login, RETR of a 1 KiB file (checked), QUIT.
    pub sessions: usize,
    /// Wall time.
    pub secs: f64,
    /// Server fds and RSS before and after (after the server had `settle` to close).
    pub fds: (usize, usize),
    /// Server RSS before and after.
    pub rss: (u64, u64),
}

impl Churn {
    /// Sessions per second.
    pub fn per_sec(&self) -> f64 {
        self.sessions as f64 / self.secs.max(1e-9)
    }
}

/// The 1 KiB file the churn fetches.
pub const CHURN_FILE: &str = "churn-1k.bin";

/// `n` sequential sessions, each connect + login + 1 KiB RETR (checked) + QUIT.
pub fn churn(t: &Target, n: usize, settle: Duration) -> Result<Churn, HarnessError> {
    let block = Pattern::block();
    let pattern = Pattern::file(&block, 7);
    pattern.write(&t.root.join(CHURN_FILE), 1024)?;
    let path = format!("{}{CHURN_FILE}", t.prefix);
    let once = || -> Result<(), HarnessError> {
        let mut f = Ftp::login(t.addr)?;
        let mut got = Vec::with_capacity(1024);
        f.retr(&path, &mut |b| {
            got.extend_from_slice(b);
            Ok(())
        })?;
        if got.len() != 1024 || !pattern.matches(0, &got) {
            return Err(HarnessError::Mismatch(format!("{path}: wrong bytes")));
        }
        f.quit()
    };
    once()?;
    std::thread::sleep(Duration::from_millis(300));
    let (fd0, rss0) = (t.fds(), t.rss());
    let start = Instant::now();
    for _ in 0..n {
        once()?;
    }
    let secs = start.elapsed().as_secs_f64();
    settle_back(t, fd0, rss0, settle);
    Ok(Churn {
        sessions: n,
        secs,
        fds: (fd0, t.fds()),
        rss: (rss0, t.rss()),
    })
}
