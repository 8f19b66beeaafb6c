//! Helpers for the server tests: an in-process server on loopback, a raw FTP client that
//! shows exact reply codes, hashing, peer detection, `globus-url-copy` runs with a deadline
//! and a `globus-gridftp-server` peer. Included by the other `server_*` tests (and
//! `third_party.rs`) with `#[path]`; compiled alone it only checks itself.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gridos_ftp::server::{Server, ServerConfig, ServerHandle};
use sha2::{Digest, Sha256};

/// Whether tests run in CI (a missing peer fails there).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// True if `cmd` is installed; otherwise skips with a message (false) or, in CI, fails.
pub fn need(cmd: &str) -> bool {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return true;
    }
    if in_ci() {
        panic!("required test peer {cmd:?} is not installed (CI=true)");
    }
    eprintln!("SKIPPED: {cmd} is not installed (apt-get install {cmd})");
    false
}

/// Hex SHA-256.
pub fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    // splitmix64 of the seed: distinct seeds start distinct streams (`seed | 1` made 2k
    // and 2k+1 the same); xorshift needs a non-zero state.
    let mut x = {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)).max(1)
    };
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A server on 127.0.0.1 serving a fresh temporary directory.
pub struct TestServer {
    /// The server.
    pub handle: ServerHandle,
    /// Scratch directory (the docroot is `root` inside it).
    pub dir: tempfile::TempDir,
    /// The docroot.
    pub root: PathBuf,
    /// Control address.
    pub addr: SocketAddr,
}

/// Starts a server: anonymous access with write, two listener and two I/O threads; `f`
/// adjusts the configuration.
pub fn start(f: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let mut cfg = ServerConfig::new(&root);
    cfg.anonymous = true;
    cfg.anonymous_write = true;
    cfg.threads = 2;
    cfg.io_threads = 2;
    f(&mut cfg);
    let handle = Server::start(cfg).unwrap();
    let addr = handle.local_addr();
    TestServer {
        handle,
        dir,
        root,
        addr,
    }
}

impl TestServer {
    /// `ftp://127.0.0.1:port`
    pub fn url(&self) -> String {
        format!("ftp://{}", self.addr)
    }
}

/// A raw control connection.
pub struct Raw {
    /// Reading side.
    pub r: BufReader<TcpStream>,
    /// Writing side.
    pub w: TcpStream,
}

impl Raw {
    /// Connects and reads the greeting (returned).
    pub fn connect(addr: SocketAddr) -> (Raw, (u16, String)) {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut raw = Raw {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        };
        let g = raw.reply();
        (raw, g)
    }

    /// Connects, expects 220 and logs in anonymously.
    pub fn anon(addr: SocketAddr) -> Raw {
        let (mut raw, g) = Raw::connect(addr);
        assert_eq!(g.0, 220, "{g:?}");
        assert_eq!(raw.cmd("USER anonymous").0, 331);
        assert_eq!(raw.cmd("PASS test@").0, 230);
        raw
    }

    /// Reads one (possibly multi-line) reply; code 0 if the connection closed.
    pub fn reply(&mut self) -> (u16, String) {
        let mut line = String::new();
        if self.r.read_line(&mut line).unwrap_or(0) == 0 {
            return (0, String::new());
        }
        let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        let mut text = line.clone();
        if line.as_bytes().get(3) == Some(&b'-') {
            let end = format!("{code} ");
            loop {
                let mut l = String::new();
                if self.r.read_line(&mut l).unwrap_or(0) == 0 {
                    break;
                }
                text.push_str(&l);
                if l.starts_with(&end) {
                    break;
                }
            }
        }
        (code, text)
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        let _ = self.w.write_all(bytes);
    }

    /// Sends a command line and reads the reply.
    pub fn cmd(&mut self, c: &str) -> (u16, String) {
        self.send(format!("{c}\r\n").as_bytes());
        self.reply()
    }

    /// EPSV → the data address.
    pub fn epsv(&mut self) -> SocketAddr {
        let (code, text) = self.cmd("EPSV");
        assert_eq!(code, 229, "{text}");
        let port: u16 = text
            .split("|||")
            .nth(1)
            .and_then(|s| s.split('|').next())
            .and_then(|p| p.parse().ok())
            .unwrap();
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// RETR over EPSV: the bytes, or the failing reply code.
    pub fn retr(&mut self, path: &str) -> Result<Vec<u8>, u16> {
        self.data_in(&format!("RETR {path}"))
    }

    /// A listing command (LIST, NLST, MLSD …) over EPSV.
    pub fn list(&mut self, cmd: &str) -> Result<String, u16> {
        self.data_in(cmd)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    fn data_in(&mut self, cmd: &str) -> Result<Vec<u8>, u16> {
        let a = self.epsv();
        let mut d = TcpStream::connect(a).unwrap();
        let (code, _) = self.cmd(cmd);
        if code >= 400 {
            return Err(code);
        }
        let mut buf = Vec::new();
        d.read_to_end(&mut buf).unwrap();
        match self.reply().0 {
            226 => Ok(buf),
            c => Err(c),
        }
    }

    /// STOR (or APPE/STOU: `verb`) over EPSV; Ok(final text) or the failing code.
    pub fn store(&mut self, verb: &str, path: &str, data: &[u8]) -> Result<String, u16> {
        self.store_at(verb, path, data, None)
    }

    /// As [`Raw::store`], with `REST rest` sent after EPSV (as clients do).
    pub fn store_at(
        &mut self,
        verb: &str,
        path: &str,
        data: &[u8],
        rest: Option<u64>,
    ) -> Result<String, u16> {
        let a = self.epsv();
        let mut d = TcpStream::connect(a).unwrap();
        if let Some(n) = rest {
            assert_eq!(self.cmd(&format!("REST {n}")).0, 350);
        }
        let (code, text) = self.cmd(&format!("{verb} {path}").replace("  ", " "));
        if code >= 400 {
            return Err(code);
        }
        d.write_all(data).unwrap();
        drop(d);
        match self.reply() {
            (226, t) => Ok(format!("{text}{t}")),
            (c, _) => Err(c),
        }
    }
}

/// Longest a single globus-url-copy run may take before it is killed (it hangs on some
/// failures instead of exiting).
const GUC_DEADLINE: Duration = Duration::from_secs(60);

static GUC_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Runs `globus-url-copy -dbg args…` with a deadline; panics with the protocol transcript
/// and the end of its output if it fails or hangs. Returns the transcript: `> COMMAND` and
/// `< first reply line`, in the order printed. Output goes to files in `work` (pipes could
/// fill up while we poll).
pub fn guc(work: &Path, args: &[String]) -> Vec<String> {
    let n = GUC_RUNS.fetch_add(1, Ordering::Relaxed);
    let out_path = work.join(format!("guc-{n}.stdout"));
    let err_path = work.join(format!("guc-{n}.stderr"));
    let mut child = Command::new("globus-url-copy")
        .arg("-dbg")
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn globus-url-copy");
    let started = Instant::now();
    let output = || {
        let out = std::fs::read_to_string(&out_path).unwrap_or_default();
        let err = std::fs::read_to_string(&err_path).unwrap_or_default();
        let t = transcript(&err);
        let tail: Vec<&str> = err.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        (
            t.clone(),
            format!(
                "protocol transcript:\n{}\nstdout: {out}\nstderr (last 40 lines):\n{}",
                t.join("\n"),
                tail.join("\n")
            ),
        )
    };
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > GUC_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "globus-url-copy {args:?} hung for more than {} s and was killed\n{}",
                GUC_DEADLINE.as_secs(),
                output().1
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (t, text) = output();
    if !status.success() {
        panic!("globus-url-copy {args:?} failed: {status}\n{text}");
    }
    // Interoperability: our server refused nothing globus-url-copy asked, except the SITE
    // CLIENTINFO note (not a GridFTP command).
    for (i, line) in t.iter().enumerate() {
        let Some(code) = line.strip_prefix("< ").and_then(|r| r.get(..3)) else {
            continue;
        };
        if code.starts_with('4') || (code.starts_with('5') && !line.contains("Unknown SITE")) {
            panic!("globus-url-copy {args:?}: our server replied {line:?} (line {i})\n{text}");
        }
    }
    t
}

/// The commands (`> …`) and replies (`< first line`) in globus-url-copy's `-dbg` output.
pub fn transcript(dbg: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = dbg.lines();
    while let Some(l) = lines.next() {
        if l.starts_with("debug: sending command to ") {
            if let Some(cmd) = lines.next() {
                out.push(format!("> {}", cmd.trim_end()));
            }
        } else if l.starts_with("debug: response from ") {
            if let Some(reply) = lines.next() {
                out.push(format!("< {}", reply.trim_end()));
            }
        }
    }
    out
}

/// A `globus-gridftp-server` (package globus-gridftp-server-progs) serving anonymously
/// (`-aa -anonymous-user nobody`, real file system, a world-writable scratch directory as
/// home) with its control and data interfaces on `ip`. Killed on drop.
pub struct Globus {
    child: Child,
    /// Control address.
    pub addr: SocketAddr,
    /// The scratch directory (absolute path on the real file system: globus serves `/`).
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Globus {
    /// Starts the server on `ip` (e.g. `127.0.0.4`), or skips (`None`) when it is not
    /// installed (fails with CI=true).
    pub fn start(ip: &str) -> Option<Globus> {
        if !need("globus-gridftp-server") {
            return None;
        }
        let tmp = tempfile::Builder::new()
            .prefix("gridos-globus-")
            .tempdir_in("/tmp")
            .unwrap();
        // Anonymous sessions run as nobody: it must read the files and write the directory.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let dir = tmp.path().to_path_buf();
        let port = std::net::TcpListener::bind((ip, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        let mut child = Command::new("globus-gridftp-server")
            .args(["-aa", "-anonymous-user", "nobody", "-p", &port.to_string()])
            .args(["-control-interface", ip, "-data-interface", ip])
            .arg("-home-dir")
            .arg(&dir)
            .args(["-log-level", "error", "-disable-usage-stats"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn globus-gridftp-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("globus-gridftp-server exited at start ({status}): {err}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("globus-gridftp-server did not listen on {addr}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Globus {
            child,
            addr,
            dir,
            _tmp: tmp,
        })
    }

    /// The absolute path of `name` in the scratch directory, as the server names it.
    pub fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.dir.display())
    }

    /// `ftp://host:port/abs/path/name` (anonymous).
    pub fn url(&self, name: &str) -> String {
        format!("ftp://{}{}", self.addr, self.path(name))
    }

    /// Writes a world-readable file into the scratch directory.
    pub fn put(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p
    }
}

impl Drop for Globus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One control-socket command (`get KEY`, `set KEY VALUE`, `list`, `stats`): the answer's
/// lines up to and including the `ok …` / `err …` line.
pub fn ctl(sock: &Path, line: &str) -> String {
    let mut u = std::os::unix::net::UnixStream::connect(sock).unwrap();
    u.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut out = String::new();
    for l in BufReader::new(u).lines() {
        let l = l.unwrap();
        let end = l == "ok" || l.starts_with("ok ") || l.starts_with("err ");
        out.push_str(&l);
        out.push('\n');
        if end {
            break;
        }
    }
    out
}

#[test]
fn support_server_answers() {
    let s = start(|_| {});
    let mut c = Raw::anon(s.addr);
    assert_eq!(c.cmd("NOOP").0, 200);
    assert_eq!(random_bytes(4, 1), random_bytes(4, 1));
}
