//! Helpers shared by the library tests (`mod util;`): our server in this process, vsftpd
//! on loopback, hashing, and a slow path (a throttling FTP proxy) for transfers that must
//! still be running when a test acts on them. Compiled alone it only checks itself.
#![allow(dead_code)]

use gridos_ftp::server::{Server, ServerConfig, ServerHandle};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
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
    // splitmix64 of the seed: distinct seeds start distinct streams (`seed | 1` made 2k
    // and 2k+1 the same); xorshift needs a non-zero state.
    let mut x = {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)).max(1)
    };
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

/// Longest one `gridos` run may take before it is killed and the test fails.
pub const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// What one `gridos` run produced.
pub struct Run {
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error (messages, `-v`/`-vv` plans, relay notices).
    pub stderr: String,
}

impl Run {
    /// Asserts success; the stdout parsed as JSON (`Null` when it is not JSON).
    pub fn ok(&self) -> serde_json::Value {
        assert!(
            self.status.success(),
            "gridos failed ({}): {}",
            self.status,
            self.stderr
        );
        serde_json::from_str(self.stdout.trim()).unwrap_or(serde_json::Value::Null)
    }

    /// Asserts failure; the stderr.
    pub fn fails(&self) -> &str {
        assert!(
            !self.status.success(),
            "gridos succeeded but should have failed; stderr: {}",
            self.stderr
        );
        &self.stderr
    }

    /// The tuning plans printed by `-vv` (`gridos: cp: URL: plan {…}`).
    pub fn plans(&self) -> Vec<serde_json::Value> {
        self.stderr
            .lines()
            .filter_map(|l| l.split_once(": plan ").map(|(_, j)| j))
            .map(|j| serde_json::from_str(j).unwrap_or_else(|e| panic!("plan {j:?}: {e}")))
            .collect()
    }
}

/// Runs the `gridos` binary with `args`; killed (and the test failed) after
/// [`RUN_DEADLINE`], so that a hang shows as a failure, not a stuck test.
pub fn gridos(args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridos"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + RUN_DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "gridos {args:?} ran for more than {} s and was killed; stderr: {}",
                RUN_DEADLINE.as_secs(),
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
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

    /// `rel` under the docroot.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
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
        Vsftpd::start_with("")
    }

    /// As [`Vsftpd::start`], with more `vsftpd.conf` lines (e.g. [`vsftpd_tls_lines`]).
    pub fn start_with(extra: &str) -> Option<Vsftpd> {
        let bin = vsftpd_or_skip()?;
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
        let (child, port, _log) = start_vsftpd(
            &bin,
            dir.path(),
            &format!(
                "anonymous_enable=YES\nlocal_enable=NO\nanon_root={root}\n\
                 ftp_username={ftp_user}\nnopriv_user={ftp_user}\nno_anon_password=YES\n\
                 write_enable=YES\nanon_upload_enable=YES\nanon_mkdir_write_enable=YES\n\
                 anon_other_write_enable=YES\nanon_world_readable_only=NO\nanon_umask=022\n\
                 {extra}",
                root = root.display(),
            ),
        );
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
        kill_group(&mut self.child);
    }
}

/// The vsftpd binary ([`vsftpd_binary`]), or a skip (a failure in CI) when there is none.
fn vsftpd_or_skip() -> Option<PathBuf> {
    let bin = vsftpd_binary();
    if bin.is_none() {
        return unavailable(
            "vsftpd not found (set GRIDOS_VSFTPD or extract the Debian package to /opt/gridos-peers/vsftpd)",
        );
    }
    bin
}

/// Starts vsftpd on a free port of 127.0.0.1 with `dir/vsftpd.conf`: the lines every test
/// server shares, then `lines` (who logs in, and where). `dir/empty` must exist. Returns
/// the process (leading its own group: stop it with [`kill_group`]), the port and the log
/// file.
///
/// seccomp_sandbox=NO and isolate*=NO: containers refuse the sandbox and new namespaces.
/// secure_chroot_dir must exist even without chroot (the pre-login process uses it).
fn start_vsftpd(bin: &Path, dir: &Path, lines: &str) -> (Child, u16, PathBuf) {
    let port = free_port();
    let log = dir.join("vsftpd.log");
    let conf = dir.join("vsftpd.conf");
    std::fs::write(
        &conf,
        format!(
            "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\n\
             background=NO\nseccomp_sandbox=NO\nisolate=NO\nisolate_network=NO\n\
             pasv_enable=YES\npasv_address=127.0.0.1\n\
             secure_chroot_dir={empty}\ntcp_wrappers=NO\nxferlog_enable=YES\n\
             vsftpd_log_file={log}\ndual_log_enable=NO\nsyslog_enable=NO\n\
             max_per_ip=50\nmax_clients=50\n{lines}",
            empty = dir.join("empty").display(),
            log = log.display(),
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg(&conf);
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
    (spawn_listening(cmd, port, "vsftpd"), port, log)
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

// ---------------------------------------------------------------------------------------
// vsftpd with a local, non-chrooted account, and globus-gridftp-server (anonymous).

/// Serialises this process's changes to the account files (`useradd` and `userdel` lock
/// /etc/passwd and fail rather than wait when another one holds the lock).
static ACCOUNTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs an account tool as root, retrying a few times (another process may hold the
/// account files' lock); panics with its message when it keeps failing.
fn account_tool(program: &str, args: &[&str], stdin: Option<&str>) {
    let _held = ACCOUNTS.lock().unwrap_or_else(|p| p.into_inner());
    let mut last = String::new();
    for _ in 0..20 {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
        drop(input);
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            return;
        }
        last = format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{program} {args:?} failed: {last}");
}

/// Uid and gid of `user` from /etc/passwd.
fn ids_of(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.first() != Some(&user) {
            return None;
        }
        Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
    })
}

/// A name no other account, PAM service or test of this process uses:
/// `gridos-TAG-PID-N`.
fn unique_name(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "gridos-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A local Unix account made for one test (`useradd -M`, shell /bin/bash, a password set
/// with chpasswd), removed with `userdel` on drop, also when the test fails. Needs root.
pub struct LocalUser {
    /// Login name (`gridos-TAG-PID-N`).
    pub name: String,
    /// Password (contains a space: URLs must percent-encode it).
    pub password: String,
    /// Numeric user id.
    pub uid: u32,
    /// Numeric id of the user's own group.
    pub gid: u32,
    /// Home directory (exists, owned by the user).
    pub home: PathBuf,
}

impl LocalUser {
    /// Creates the account with `home` (an existing directory, given to the user) as its
    /// home directory.
    pub fn create(tag: &str, home: &Path) -> LocalUser {
        let name = unique_name(tag);
        let home_s = home.to_str().expect("home path is UTF-8");
        account_tool(
            "useradd",
            &[
                "-d",
                home_s,
                "-M",
                "-s",
                "/bin/bash",
                "-c",
                "gridos test",
                &name,
            ],
            None,
        );
        // From here on the account exists: a panic below still removes it.
        let mut user = LocalUser {
            name: name.clone(),
            password: format!("url rules {}", std::process::id()),
            uid: 0,
            gid: 0,
            home: home.to_path_buf(),
        };
        (user.uid, user.gid) = ids_of(&name).expect("useradd made no passwd entry");
        account_tool(
            "chpasswd",
            &[],
            Some(&format!("{name}:{}\n", user.password)),
        );
        user.give(home);
        user
    }

    /// Makes the user the owner of `p`.
    pub fn give(&self, p: &Path) {
        std::os::unix::fs::chown(p, Some(self.uid), Some(self.gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
    }

    /// The password percent-encoded for a URL's user information.
    pub fn url_password(&self) -> String {
        self.password.replace('%', "%25").replace(' ', "%20")
    }
}

impl Drop for LocalUser {
    fn drop(&mut self) {
        // -f: a session process of the user that is still exiting does not keep the
        // account (there is no -r: the home belongs to the test's temporary directory).
        let _held = ACCOUNTS.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..20 {
            let done = Command::new("userdel")
                .args(["-f", &self.name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if done || ids_of(&self.name).is_none() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("warning: could not remove test account {}", self.name);
    }
}

/// Where the system's PAM modules are, if pam_unix is among them.
fn pam_unix_installed() -> bool {
    [
        "/lib/x86_64-linux-gnu/security/pam_unix.so",
        "/usr/lib/x86_64-linux-gnu/security/pam_unix.so",
        "/lib/security/pam_unix.so",
        "/usr/lib/security/pam_unix.so",
        "/usr/lib64/security/pam_unix.so",
    ]
    .iter()
    .any(|p| Path::new(p).is_file())
}

/// A PAM service of one test, /etc/pam.d/NAME, removed on drop. It checks passwords and
/// accounts with pam_unix (against /etc/shadow, as the Debian package's own
/// /etc/pam.d/vsftpd does through common-auth), without that file's /etc/ftpusers list
/// and pam_shells, so a test depends only on its own account.
pub struct PamService {
    /// The service name (`pam_service_name=` for vsftpd).
    pub name: String,
    path: PathBuf,
}

impl PamService {
    /// Writes the service file.
    pub fn unix(tag: &str) -> PamService {
        let name = unique_name(tag);
        let path = Path::new("/etc/pam.d").join(&name);
        std::fs::write(
            &path,
            "# Written by a gridos test; removed when it ends.\n\
             auth\trequired\tpam_unix.so\n\
             account\trequired\tpam_unix.so\n\
             session\trequired\tpam_permit.so\n",
        )
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        PamService { name, path }
    }
}

impl Drop for PamService {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Starts `cmd` in its own process group and waits until something listens on
/// 127.0.0.1:`port`; panics with the program's stderr when it exits first.
fn spawn_listening(mut cmd: Command, port: u16, what: &str) -> Child {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("{what} exited at start ({status}): {err}");
        }
        if Instant::now() > deadline {
            kill_group(&mut child);
            panic!("{what} did not listen on 127.0.0.1:{port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the process group led by `child` (the server and the session processes it
/// forked) and reaps the leader.
fn kill_group(child: &mut Child) {
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
}

/// vsftpd on 127.0.0.1 for one local account that is **not** chrooted
/// (`local_enable=YES`, `chroot_local_user=NO`, `write_enable=YES`): it logs in to its
/// home directory and sees the whole file system, as on a typical shared host. The account
/// and its PAM service are made for the test and removed on drop; needs root.
pub struct VsftpdUser {
    child: Child,
    /// Control port on 127.0.0.1.
    pub port: u16,
    /// The account (its `home` is the login directory).
    pub user: LocalUser,
    /// A directory outside the home, owned by the user, reachable only by absolute paths.
    pub outside: PathBuf,
    log: PathBuf,
    _pam: PamService,
    _dir: tempfile::TempDir,
}

impl VsftpdUser {
    /// Starts vsftpd, or returns `None` (skip) / panics (CI) when it cannot run here.
    pub fn start() -> Option<VsftpdUser> {
        let bin = vsftpd_or_skip()?;
        if !is_root() {
            return unavailable("vsftpd with a local user needs root (useradd, /etc/pam.d)");
        }
        if !pam_unix_installed() {
            return unavailable("pam_unix.so not found (package libpam-modules)");
        }
        let nopriv = ["nobody", "ftp", "daemon"]
            .into_iter()
            .find(|u| uid_of(u).is_some())
            .expect("no nobody, ftp or daemon user");
        let dir = tempfile::Builder::new()
            .prefix("gridos-vsftpd-user-")
            .tempdir()
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        // The user must reach its home and the outside directory through this one.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = dir.path().join("home");
        let outside = dir.path().join("outside");
        let empty = dir.path().join("empty");
        for d in [&home, &outside, &empty] {
            std::fs::create_dir(d).unwrap();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let user = LocalUser::create("url", &home);
        user.give(&outside);
        let pam = PamService::unix("vsftpd");
        // check_shell is for builds without PAM (Debian's uses PAM: the service decides).
        let (child, port, log) = start_vsftpd(
            &bin,
            dir.path(),
            &format!(
                "anonymous_enable=NO\nlocal_enable=YES\nwrite_enable=YES\nlocal_umask=022\n\
                 chroot_local_user=NO\nchroot_list_enable=NO\nuserlist_enable=NO\n\
                 pam_service_name={pam}\nnopriv_user={nopriv}\nlog_ftp_protocol=YES\n",
                pam = pam.name,
            ),
        );
        Some(VsftpdUser {
            child,
            port,
            user,
            outside,
            log,
            _pam: pam,
            _dir: dir,
        })
    }

    /// The login directory.
    pub fn home(&self) -> &Path {
        &self.user.home
    }

    /// `ftp://USER:PASSWORD@127.0.0.1:PORT/path` (`path` as written: relative, or
    /// `%2F…` for an absolute one).
    pub fn url(&self, path: &str) -> String {
        format!(
            "ftp://{}:{}@127.0.0.1:{}/{path}",
            self.user.name,
            self.user.url_password(),
            self.port
        )
    }

    /// Writes `data` to `p` (under the home or the outside directory), owned by the user.
    pub fn put(&self, p: &Path, data: &[u8]) {
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, data).unwrap();
        self.user.give(p);
    }

    /// Creates the directory `p`, owned by the user.
    pub fn mkdir(&self, p: &Path) {
        std::fs::create_dir_all(p).unwrap();
        self.user.give(p);
    }

    /// vsftpd's log with every command and reply, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for VsftpdUser {
    fn drop(&mut self) {
        // Before the account goes (the fields drop after this).
        kill_group(&mut self.child);
    }
}

/// globus-gridftp-server serving anonymously (`-aa -anonymous-user nobody`) on
/// 127.0.0.1, killed on drop. Anonymous sessions run as nobody, whose passwd home
/// (/nonexistent) does not exist: `-home-dir` gives them `home` as login directory (what
/// `PWD` answers and `~` means). It serves the real file system: absolute paths reach
/// `data` too. Both directories are world-writable; files put there world-readable.
pub struct Globus {
    child: Child,
    /// Control port on 127.0.0.1.
    pub port: u16,
    /// The anonymous user's home (login) directory.
    pub home: PathBuf,
    /// A directory outside the home.
    pub data: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Globus {
    /// Starts the server, or skips (`None`) / fails in CI when it is not installed.
    pub fn start() -> Option<Globus> {
        let installed = Command::new("sh")
            .args(["-c", "command -v globus-gridftp-server"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !installed {
            return unavailable(
                "globus-gridftp-server is not installed (apt-get install globus-gridftp-server-progs)",
            );
        }
        if !is_root() {
            return unavailable("globus-gridftp-server with -anonymous-user needs root");
        }
        let tmp = tempfile::Builder::new()
            .prefix("gridos-globus-")
            .tempdir_in("/tmp")
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = tmp.path().join("home");
        let data = tmp.path().join("data");
        for d in [&home, &data] {
            std::fs::create_dir(d).unwrap();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let port = free_port();
        let mut cmd = Command::new("globus-gridftp-server");
        cmd.args(["-aa", "-p", &port.to_string(), "-anonymous-user", "nobody"])
            .args(["-control-interface", "127.0.0.1"])
            .args(["-data-interface", "127.0.0.1"])
            .arg("-home-dir")
            .arg(&home)
            .args(["-log-level", "error"]);
        let child = spawn_listening(cmd, port, "globus-gridftp-server");
        Some(Globus {
            child,
            port,
            home,
            data,
            _tmp: tmp,
        })
    }

    /// `SCHEME://127.0.0.1:PORT/path` (`path` as written).
    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://127.0.0.1:{}/{path}", self.port)
    }

    /// A `SCHEME://` URL naming `home/name` by its absolute path: `gridftp://` paths are
    /// absolute, `ftp://` ones relative to the login directory unless the root is spelled
    /// `%2F` (RFC 1738).
    pub fn home_url(&self, scheme: &str, name: &str) -> String {
        let root = if scheme == "ftp" { "%2F" } else { "" };
        let home = self.home.display().to_string();
        self.url(
            scheme,
            &format!("{root}{}/{name}", home.trim_start_matches('/')),
        )
    }

    /// Writes a world-readable file (creating world-writable parents as needed).
    pub fn put(&self, p: &Path, data: &[u8]) {
        use std::os::unix::fs::PermissionsExt;
        if let Some(parent) = p.parent() {
            self.mkdir(parent);
        }
        std::fs::write(p, data).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// Creates `p` and any missing parents, world-writable.
    pub fn mkdir(&self, p: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let mut missing = Vec::new();
        let mut at = p;
        while !at.exists() {
            missing.push(at.to_path_buf());
            at = at.parent().expect("a parent exists");
        }
        for d in missing.iter().rev() {
            std::fs::create_dir(d).unwrap();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
    }
}

impl Drop for Globus {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

// ---------------------------------------------------------------------------------------
// FTPS peers: vsftpd with ssl_enable, proftpd with mod_tls.

/// The vsftpd.conf lines of an FTPS server that requires TLS from anonymous users on the
/// control and the data connections, and that data connections resume the control
/// connection's TLS session (`require_ssl_reuse=YES`, what the issue names).
pub fn vsftpd_tls_lines(cert: &Path, key: &Path) -> String {
    format!(
        "ssl_enable=YES\nallow_anon_ssl=YES\nforce_anon_logins_ssl=YES\n\
         force_anon_data_ssl=YES\nrequire_ssl_reuse=YES\nssl_ciphers=HIGH\n\
         rsa_cert_file={}\nrsa_private_key_file={}\nlog_ftp_protocol=YES\ndebug_ssl=YES\n",
        cert.display(),
        key.display()
    )
}

impl Vsftpd {
    /// vsftpd's log (with [`vsftpd_tls_lines`]: every command, reply and TLS handshake),
    /// for failure messages.
    pub fn log(&self) -> String {
        let log = self.root.parent().map(|d| d.join("vsftpd.log"));
        log.and_then(|l| std::fs::read_to_string(l).ok())
            .unwrap_or_default()
    }
}

/// Where proftpd is, with the directory of its modules, if it has mod_tls:
/// `GRIDOS_PROFTPD` (the binary; modules in `../lib/proftpd` beside its `sbin`), else the
/// system's (Debian `proftpd-core`, mod_tls from `proftpd-mod-crypto`), else where
/// `benches/install-peers.sh` extracts it.
pub fn proftpd_binary() -> Option<(PathBuf, PathBuf)> {
    let candidates: Vec<PathBuf> = match std::env::var_os("GRIDOS_PROFTPD") {
        Some(p) => vec![PathBuf::from(p)],
        None => vec![
            "/usr/sbin/proftpd".into(),
            "/opt/gridos-peers/proftpd/usr/sbin/proftpd".into(),
        ],
    };
    candidates.into_iter().find_map(|bin| {
        let modules = bin.parent()?.parent()?.join("lib/proftpd");
        (bin.is_file() && modules.join("mod_tls.so").is_file()).then_some((bin, modules))
    })
}

/// The password user of [`Proftpd`] (a virtual user of its AuthUserFile).
pub const PROFTPD_USER: (&str, &str) = ("jane", "s3cret pass");

/// proftpd with mod_tls on 127.0.0.1 (`TLSEngine on`, `TLSRequired on`, TLS 1.2 and 1.3,
/// data connections that must resume the control session: mod_tls's default), in the
/// foreground with a configuration of its own. Its one user, [`PROFTPD_USER`], comes from
/// an AuthUserFile (no system account), runs as nobody and is chrooted to `home`. Killed
/// on drop; needs root.
pub struct Proftpd {
    child: Child,
    /// Control port on 127.0.0.1.
    pub port: u16,
    /// The user's home (and chroot): files put here are served at `/NAME`.
    pub home: PathBuf,
    dir: tempfile::TempDir,
}

impl Proftpd {
    /// Starts proftpd with the EC certificate `cert` (rcgen's default key type) and its
    /// `key`, or returns `None` (skip) / panics (CI) when it cannot run here.
    pub fn start_tls(cert: &Path, key: &Path) -> Option<Proftpd> {
        let Some((bin, modules)) = proftpd_binary() else {
            return unavailable(
                "proftpd with mod_tls not found (apt-get install proftpd-core proftpd-mod-crypto, or set GRIDOS_PROFTPD)",
            );
        };
        if !is_root() {
            return unavailable("proftpd tests need root (it switches to nobody)");
        }
        let (uid, gid) = ids_of("nobody").expect("no nobody user");
        let dir = tempfile::Builder::new()
            .prefix("gridos-proftpd-")
            .tempdir()
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();
        let passwd = dir.path().join("passwd");
        let group = dir.path().join("group");
        std::fs::write(&group, format!("nogroup:x:{gid}:\n")).unwrap();
        // ftpasswd (of proftpd-core) writes the AuthUserFile line with a SHA-512 crypt.
        let ftpasswd = bin.with_file_name("ftpasswd");
        let mut child = Command::new(&ftpasswd)
            .args(["--passwd", "--sha512", "--stdin", "--shell=/bin/false"])
            .arg(format!("--file={}", passwd.display()))
            .arg(format!("--name={}", PROFTPD_USER.0))
            .arg(format!("--uid={uid}"))
            .arg(format!("--gid={gid}"))
            .arg(format!("--home={}", home.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", ftpasswd.display()));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{}\n", PROFTPD_USER.1).as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success() && passwd.is_file(),
            "ftpasswd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        // A passive range of this process's own (proftpd falls back to any port when one
        // is taken).
        let pasv = 20_000 + (std::process::id() % 400) as u16 * 100;
        let d = dir.path().display();
        let conf = dir.path().join("proftpd.conf");
        std::fs::write(
            &conf,
            format!(
                "ServerName \"gridos-test\"\nServerType standalone\nPort {port}\n\
                 DefaultAddress 127.0.0.1\nSocketBindTight on\nUseIPv6 off\n\
                 User nobody\nGroup nogroup\nPassivePorts {pasv} {pasv_hi}\nMaxInstances 30\n\
                 ScoreboardFile {d}/scoreboard\nPidFile {d}/proftpd.pid\nDelayEngine off\n\
                 WtmpLog off\nUseReverseDNS off\nSystemLog {d}/system.log\n\
                 TransferLog {d}/xfer.log\n\
                 <IfModule mod_dso.c>\n  ModulePath {modules}\n  LoadModule mod_tls.c\n</IfModule>\n\
                 AuthOrder mod_auth_file.c\nAuthUserFile {passwd}\nAuthGroupFile {group}\n\
                 RequireValidShell off\nDefaultRoot ~\n\
                 TLSEngine on\nTLSLog {d}/tls.log\nTLSRequired on\nTLSProtocol TLSv1.2 TLSv1.3\n\
                 TLSECCertificateFile {cert}\nTLSECCertificateKeyFile {key}\n\
                 TLSVerifyClient off\nTLSRenegotiate none\n\
                 <Directory ~>\n  AllowOverwrite on\n</Directory>\n",
                pasv_hi = pasv + 99,
                modules = modules.display(),
                passwd = passwd.display(),
                group = group.display(),
                cert = cert.display(),
                key = key.display(),
            ),
        )
        .unwrap();
        let mut cmd = Command::new(&bin);
        cmd.arg("-n").arg("-c").arg(&conf);
        let child = spawn_listening(cmd, port, "proftpd");
        Some(Proftpd {
            child,
            port,
            home,
            dir,
        })
    }

    /// `SCHEME://jane:…@127.0.0.1:PORT/path` (path relative to the home).
    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!(
            "{scheme}://{}:{}@127.0.0.1:{}/{path}",
            PROFTPD_USER.0,
            PROFTPD_USER.1.replace(' ', "%20"),
            self.port
        )
    }

    /// Writes `home/name`, owned by nobody.
    pub fn put(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.home.join(name);
        std::fs::write(&p, data).unwrap();
        let (uid, gid) = ids_of("nobody").expect("no nobody user");
        std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
        p
    }

    /// The system and TLS logs (each handshake, whether data connections resumed), for
    /// failure messages.
    pub fn log(&self) -> String {
        ["system.log", "tls.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Proftpd {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

// ---------------------------------------------------------------------------------------
// `gridos ftpd` as a process of its own, for tests that kill it or read its fds.

/// `gridos ftpd` (the binary) on 127.0.0.1 serving `root` anonymously with write, with a
/// control socket, short timeouts (data 3 s, idle 20 s) and one I/O thread unless `args`
/// sets them, and `args`.
/// SIGKILLed on drop; [`Ftpd::restart`] starts it again on the same port and docroot.
pub struct Ftpd {
    child: Child,
    /// Control address.
    pub addr: SocketAddr,
    /// The docroot.
    pub root: PathBuf,
    /// The control socket (`gridos ctl --socket`).
    pub ctl: PathBuf,
    args: Vec<String>,
    netns: Option<String>,
    _dir: tempfile::TempDir,
}

impl Ftpd {
    /// Starts the server on a free port. As root the server chroots to `root` and runs as
    /// nobody: `root` is made world-writable.
    pub fn start(root: &Path, args: &[&str]) -> Ftpd {
        Ftpd::start_in(None, "127.0.0.1:0", root, args)
    }

    /// As [`Ftpd::start`], listening on `listen`, in the network namespace `netns` if one
    /// is named (`ip netns exec NS gridos ftpd …`: the server keeps the process id).
    pub fn start_in(netns: Option<&str>, listen: &str, root: &Path, args: &[&str]) -> Ftpd {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("gridos-ftpd-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o777)).unwrap();
        let ctl = dir.path().join("ctl.sock");
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let netns = netns.map(str::to_string);
        let (child, addr) = Ftpd::spawn(netns.as_deref(), listen, root, &ctl, &args)
            .unwrap_or_else(|e| panic!("{e}"));
        Ftpd {
            child,
            addr,
            root: root.to_path_buf(),
            ctl,
            args,
            netns,
            _dir: dir,
        }
    }

    /// Starts one server process; an error when it exits without printing its address.
    fn spawn(
        netns: Option<&str>,
        listen: &str,
        root: &Path,
        ctl: &Path,
        args: &[String],
    ) -> Result<(Child, SocketAddr), String> {
        let gridos = env!("CARGO_BIN_EXE_gridos");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, gridos]);
                c
            }
            None => Command::new(gridos),
        };
        let mut child = cmd
            .args([
                "ftpd",
                "--listen",
                listen,
                "--anonymous",
                "--anonymous-write",
            ])
            .args(["--threads", "2"])
            .arg("--docroot")
            .arg(root)
            .arg("--ctl-socket")
            .arg(ctl)
            .args(args)
            // Short timeouts, unless the test says otherwise. One I/O thread: what it
            // keeps between transfers (its io_uring ring, idle pipes) is then the same
            // after any of them, so descriptor counts compare; but it runs one transfer at
            // a time.
            .args(
                [
                    ("--data-timeout", "3"),
                    ("--idle-timeout", "20"),
                    ("--io-threads", "1"),
                ]
                .iter()
                .filter(|(k, _)| !args.iter().any(|a| a == k))
                .flat_map(|(k, v)| [*k, *v]),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        match line.trim().rsplit(' ').next().and_then(|a| a.parse().ok()) {
            Some(addr) => Ok((child, addr)),
            None => {
                let _ = child.kill();
                let status = child.wait();
                Err(format!(
                    "gridos ftpd on {listen} printed no address ({status:?}): {line:?}"
                ))
            }
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown of any kind.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port and docroot (after [`Ftpd::kill`]); retries
    /// for a few seconds while the port is still taken.
    pub fn restart(&mut self) {
        let listen = self.addr.to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Ftpd::spawn(
                self.netns.as_deref(),
                &listen,
                &self.root,
                &self.ctl,
                &self.args,
            ) {
                Ok((child, addr)) => {
                    assert_eq!(addr, self.addr);
                    self.child = child;
                    return;
                }
                Err(e) if Instant::now() > deadline => panic!("{e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// `SCHEME://127.0.0.1:PORT/path`, anonymous (`ftp://` paths are relative to the
    /// docroot, `gridftp://` ones absolute; both name the same file here).
    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}/{path}", self.addr)
    }

    /// What the server's file descriptors are (`socket:[…]`, `pipe:[…]`, paths).
    pub fn fds(&self) -> Vec<String> {
        let dir = format!("/proc/{}/fd", self.pid());
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .map(|p| p.display().to_string())
            .collect();
        v.sort();
        v
    }

    /// `gridos ctl --socket CTL stats` as key → value.
    pub fn stats(&self) -> std::collections::BTreeMap<String, String> {
        let out = Command::new(env!("CARGO_BIN_EXE_gridos"))
            .args(["ctl", "--socket"])
            .arg(&self.ctl)
            .arg("stats")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gridos ctl stats: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(" = "))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    }
}

impl Drop for Ftpd {
    fn drop(&mut self) {
        self.kill();
    }
}
