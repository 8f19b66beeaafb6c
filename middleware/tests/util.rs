//! Helpers shared by the library tests (`mod util;`): our server in this process, vsftpd
//! on loopback, hashing, and a slow path (a throttling FTP proxy) for transfers that must
//! still be running when a test acts on them. Compiled alone it only checks itself.
#![allow(dead_code)]

use gridos_ftp::server::{Server, ServerConfig, ServerHandle};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Whether tests run in CI (missing peers are failures there).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips (prints why and returns `None`) or, in CI, fails.
pub fn unavailable<T>(why: &str) -> Option<T> {
    if in_ci() {
        panic!("required test peer unavailable in CI: {why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// `len` pseudo-random bytes from `seed` (xorshift; incompressible).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// SHA-256 of `data`, hex.
pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// SHA-256 of a file, hex.
pub fn sha256_file(p: &Path) -> String {
    sha256(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

/// Relative path → SHA-256 of every file under `dir` (directories as "dir").
pub fn tree(dir: &Path) -> std::collections::BTreeMap<String, String> {
    fn go(base: &Path, d: &Path, out: &mut std::collections::BTreeMap<String, String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            if p.is_dir() {
                out.insert(rel, "dir".into());
                go(base, &p, out);
            } else {
                out.insert(rel, sha256_file(&p));
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    go(dir, dir, &mut out);
    out
}

/// Names in `dir` (sorted), to show nothing was left behind.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A small tree: 4 files (one empty, one with spaces in its path) in nested directories.
pub fn make_tree(t: &Path) {
    std::fs::create_dir_all(t.join("a/b c/d")).unwrap();
    std::fs::create_dir_all(t.join("empty")).unwrap();
    std::fs::write(t.join("top.bin"), random_bytes(300_000, 1)).unwrap();
    std::fs::write(t.join("a/one.bin"), random_bytes(1_000_000, 2)).unwrap();
    std::fs::write(t.join("a/b c/two words.txt"), b"hello\n").unwrap();
    std::fs::write(t.join("a/b c/d/zero.bin"), b"").unwrap();
}

/// The user and password of [`Ours`].
pub const USER: (&str, &str) = ("alice", "s3cret pass");

/// Our server in this process on 127.0.0.1, serving a fresh directory to `alice` (with
/// write) and to anonymous users (with write unless `f` says otherwise).
pub struct Ours {
    /// The server (stopped on drop).
    pub handle: ServerHandle,
    /// The docroot.
    pub root: PathBuf,
    /// Control address.
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Ours {
    /// Starts the server; `f` adjusts the configuration.
    pub fn start(f: impl FnOnce(&mut ServerConfig)) -> Ours {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut c = ServerConfig::new(&root);
        c.anonymous = true;
        c.anonymous_write = true;
        c.users = vec![(USER.0.into(), USER.1.into())];
        c.threads = 2;
        c.io_threads = 2;
        f(&mut c);
        let handle = Server::start(c).unwrap();
        let addr = handle.local_addr();
        Ours {
            handle,
            root,
            addr,
            _dir: dir,
        }
    }

    /// `ftp://addr/path`, anonymous (path relative to the login directory, the docroot).
    /// Most tests log in anonymously: checking alice's Argon2 hash takes about a second in
    /// a debug build.
    pub fn url(&self, path: &str) -> String {
        format!("ftp://{}/{path}", self.addr)
    }

    /// `ftp://alice:…@addr/path`.
    pub fn user_url(&self, path: &str) -> String {
        format!("ftp://alice:s3cret%20pass@{}/{path}", self.addr)
    }
}

/// Where vsftpd is, if anywhere: `GRIDOS_VSFTPD`, else where `.ci/run` extracts the Debian
/// package, else the system's.
pub fn vsftpd_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GRIDOS_VSFTPD") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    [
        "/opt/gridos-peers/vsftpd/usr/sbin/vsftpd",
        "/usr/sbin/vsftpd",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

fn uid_of(user: &str) -> Option<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&user)).then(|| f.get(2)?.parse().ok())?
    })
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// vsftpd serving `root` anonymously on 127.0.0.1; `root/pub` is writable (upload, mkdir,
/// delete, rename), `root` itself is not (uploads there get 553). Killed on drop.
pub struct Vsftpd {
    child: Child,
    /// Control port on 127.0.0.1.
    pub port: u16,
    /// The anonymous root (owned by root; vsftpd refuses a writable chroot).
    pub root: PathBuf,
    /// `root/pub`, writable by the anonymous user.
    pub pub_dir: PathBuf,
    ftp_uid: u32,
    _dir: tempfile::TempDir,
}

impl Vsftpd {
    /// Starts vsftpd, or returns `None` (skip) / panics (CI) when it cannot run here.
    pub fn start() -> Option<Vsftpd> {
        let Some(bin) = vsftpd_binary() else {
            return unavailable(
                "vsftpd not found (set GRIDOS_VSFTPD or extract the Debian package to /opt/gridos-peers/vsftpd)",
            );
        };
        if !is_root() {
            return unavailable("vsftpd tests need root");
        }
        let (ftp_user, ftp_uid) = ["ftp", "daemon"]
            .iter()
            .find_map(|u| Some((*u, uid_of(u)?)))
            .expect("no ftp or daemon user");
        let dir = tempfile::Builder::new()
            .prefix("gridos-vsftpd-")
            .tempdir()
            .unwrap();
        let root = dir.path().join("root");
        let pub_dir = root.join("pub");
        let empty = dir.path().join("empty");
        for d in [&root, &pub_dir, &empty] {
            std::fs::create_dir(d).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&pub_dir, Some(ftp_uid), None).unwrap();
        let port = free_port();
        let log = dir.path().join("vsftpd.log");
        let conf = dir.path().join("vsftpd.conf");
        std::fs::write(
            &conf,
            format!(
                "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\n\
                 background=NO\nseccomp_sandbox=NO\nisolate=NO\nisolate_network=NO\n\
                 anonymous_enable=YES\nlocal_enable=NO\nanon_root={root}\n\
                 ftp_username={ftp_user}\nnopriv_user={ftp_user}\nno_anon_password=YES\n\
                 write_enable=YES\nanon_upload_enable=YES\nanon_mkdir_write_enable=YES\n\
                 anon_other_write_enable=YES\nanon_world_readable_only=NO\nanon_umask=022\n\
                 pasv_enable=YES\npasv_address=127.0.0.1\n\
                 secure_chroot_dir={empty}\ntcp_wrappers=NO\nxferlog_enable=YES\n\
                 vsftpd_log_file={log}\ndual_log_enable=NO\nsyslog_enable=NO\n\
                 max_per_ip=50\nmax_clients=50\n",
                root = root.display(),
                empty = empty.display(),
                log = log.display(),
            ),
        )
        .unwrap();
        let mut cmd = Command::new(&bin);
        cmd.arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Libraries extracted beside the binary (libwrap0) when not installed.
        if let Some(prefix) = bin.parent().and_then(Path::parent) {
            let libs: Vec<String> = [
                prefix.join("lib/x86_64-linux-gnu"),
                prefix.join("../lib/x86_64-linux-gnu"),
            ]
            .iter()
            .filter(|p| p.is_dir())
            .map(|p| p.display().to_string())
            .collect();
            if !libs.is_empty() {
                cmd.env("LD_LIBRARY_PATH", libs.join(":"));
            }
        }
        let mut child = cmd.spawn().expect("spawn vsftpd");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                drop(s);
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("vsftpd exited at start ({status}): {err}");
            }
            assert!(Instant::now() < deadline, "vsftpd did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Vsftpd {
            child,
            port,
            root,
            pub_dir,
            ftp_uid,
            _dir: dir,
        })
    }

    /// `ftp://127.0.0.1:port/path`, anonymous (relative to the anonymous root).
    pub fn url(&self, path: &str) -> String {
        format!("ftp://127.0.0.1:{}/{path}", self.port)
    }

    /// Writes a file under `pub/` owned by the anonymous user (so it may replace it).
    pub fn put(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.pub_dir.join(name);
        std::fs::write(&p, data).unwrap();
        std::os::unix::fs::chown(&p, Some(self.ftp_uid), None).unwrap();
        p
    }

    /// Creates a directory under `pub/` owned by the anonymous user.
    pub fn mkdir(&self, name: &str) -> PathBuf {
        let p = self.pub_dir.join(name);
        std::fs::create_dir(&p).unwrap();
        std::os::unix::fs::chown(&p, Some(self.ftp_uid), None).unwrap();
        p
    }
}

impl Drop for Vsftpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A slow path to an FTP server: a control-connection proxy on 127.0.0.1 that relays
/// every data connection (passive: the address in 227/229 replies; active: the address
/// in PORT/EPRT) through itself at `rate` bytes per second per connection. A transfer
/// through it lasts long enough for a test to act on it while it runs.
pub struct SlowProxy {
    /// Where clients connect instead of the server.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl SlowProxy {
    /// A proxy in front of `server`.
    pub fn start(server: SocketAddr, rate: u64) -> SlowProxy {
        let stop = Arc::new(AtomicBool::new(false));
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let st = stop.clone();
        accept_loop(l, stop.clone(), move |client| {
            let server_conn = TcpStream::connect(server).unwrap();
            control(client, server_conn, server, rate, st.clone());
        });
        SlowProxy { addr, stop }
    }

    /// `ftp://proxy/path`, anonymous.
    pub fn url(&self, path: &str) -> String {
        format!("ftp://{}/{path}", self.addr)
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Accepts connections on `l` until `stop`, handing each to `f` on its own thread.
fn accept_loop(
    l: TcpListener,
    stop: Arc<AtomicBool>,
    f: impl Fn(TcpStream) + Send + Sync + 'static,
) {
    l.set_nonblocking(true).unwrap();
    let f = Arc::new(f);
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    let f = f.clone();
                    std::thread::spawn(move || f(s));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
}

/// Relays one control connection, pointing every data address at a slow relay.
fn control(
    client: TcpStream,
    server: TcpStream,
    server_addr: SocketAddr,
    rate: u64,
    stop: Arc<AtomicBool>,
) {
    let (c_in, mut c_out) = (client.try_clone().unwrap(), client);
    let (s_in, mut s_out) = (server.try_clone().unwrap(), server);
    let st = stop.clone();
    // Client → server: PORT / EPRT name where the server should connect.
    std::thread::spawn(move || {
        let mut r = BufReader::new(c_in);
        let mut line = String::new();
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            let upper = line.to_ascii_uppercase();
            let out = if let Some(a) = upper.strip_prefix("PORT ") {
                let to = parse_h1_p2(a.trim());
                let p = relay(to, rate, st.clone()).port();
                format!("PORT 127,0,0,1,{},{}\r\n", p >> 8, p & 0xff)
            } else if let Some(a) = upper.strip_prefix("EPRT ") {
                let f: Vec<&str> = a.trim().split('|').collect();
                let to = SocketAddr::new(f[2].parse().unwrap(), f[3].parse().unwrap());
                let p = relay(to, rate, st.clone()).port();
                format!("EPRT |1|127.0.0.1|{p}|\r\n")
            } else {
                line.clone()
            };
            if s_out.write_all(out.as_bytes()).is_err() {
                break;
            }
            line.clear();
        }
        let _ = s_out.shutdown(std::net::Shutdown::Write);
    });
    // Server → client: 227 / 229 name where the client should connect.
    let mut r = BufReader::new(s_in);
    let mut line = String::new();
    while r.read_line(&mut line).unwrap_or(0) > 0 {
        let out = if line.starts_with("227 ") {
            let inner = &line[line.find('(').unwrap() + 1..line.rfind(')').unwrap()];
            let to = parse_h1_p2(inner);
            let p = relay(to, rate, stop.clone()).port();
            format!(
                "227 Entering Passive Mode (127,0,0,1,{},{}).\r\n",
                p >> 8,
                p & 0xff
            )
        } else if line.starts_with("229 ") {
            let inner = &line[line.find("(|||").unwrap() + 4..line.rfind("|)").unwrap()];
            let to = SocketAddr::new(server_addr.ip(), inner.parse().unwrap());
            let p = relay(to, rate, stop.clone()).port();
            format!("229 Entering Extended Passive Mode (|||{p}|)\r\n")
        } else {
            line.clone()
        };
        if c_out.write_all(out.as_bytes()).is_err() {
            break;
        }
        line.clear();
    }
    let _ = c_out.shutdown(std::net::Shutdown::Write);
}

/// `h1,h2,h3,h4,p1,p2` as an address.
fn parse_h1_p2(s: &str) -> SocketAddr {
    let n: Vec<u8> = s.split(',').map(|x| x.trim().parse().unwrap()).collect();
    SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::new(n[0], n[1], n[2], n[3]),
        u16::from(n[4]) << 8 | u16::from(n[5]),
    ))
}

/// A listener whose every connection is joined to `to` at `rate` bytes per second each way.
fn relay(to: SocketAddr, rate: u64, stop: Arc<AtomicBool>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    accept_loop(l, stop, move |a| {
        let Ok(b) = TcpStream::connect(to) else {
            return;
        };
        let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
        let t = std::thread::spawn(move || pump(a2, b2, rate));
        pump(b, a, rate);
        let _ = t.join();
    });
    addr
}

/// Copies `from` → `to` at most `rate` bytes per second, then half-closes `to`.
fn pump(mut from: TcpStream, mut to: TcpStream, rate: u64) {
    let start = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            let _ = from.shutdown(std::net::Shutdown::Both);
            return;
        }
        sent += n as u64;
        let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

#[test]
fn helpers_check_themselves() {
    assert_eq!(random_bytes(1000, 7), random_bytes(1000, 7));
    assert_ne!(sha256(&random_bytes(100, 1)), sha256(&random_bytes(100, 2)));
    assert_eq!(
        parse_h1_p2("127,0,0,1,4,1"),
        "127.0.0.1:1025".parse().unwrap()
    );
}
