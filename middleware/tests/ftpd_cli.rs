//! `gridos ftpd`, `gridos passwd` and `gridos ctl` through the binary: password-file login,
//! the control socket and config file, SIGTERM during a transfer (exit 0), and — as root —
//! chroot to the docroot and the switch to an unprivileged uid/gid.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GRIDOS: &str = env!("CARGO_BIN_EXE_gridos");

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

struct Ftpd {
    child: Child,
    addr: SocketAddr,
}

impl Ftpd {
    fn start(args: &[&str]) -> Ftpd {
        let mut child = Command::new(GRIDOS)
            .arg("ftpd")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Ftpd { child, addr }
    }

    fn term(&mut self) -> (std::process::ExitStatus, Duration) {
        let t = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st, t.elapsed());
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "ftpd ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Ftpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Ctl {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Ctl {
    fn connect(addr: SocketAddr) -> Ctl {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Ctl {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        };
        assert_eq!(c.reply().0, 220);
        c
    }
    fn reply(&mut self) -> (u16, String) {
        loop {
            let mut l = String::new();
            if self.r.read_line(&mut l).unwrap_or(0) == 0 {
                return (0, String::new());
            }
            if l.as_bytes().get(3) == Some(&b' ') {
                return (l[..3].parse().unwrap_or(0), l);
            }
        }
    }
    fn cmd(&mut self, c: &str) -> (u16, String) {
        self.w.write_all(format!("{c}\r\n").as_bytes()).unwrap();
        self.reply()
    }
    fn epsv(&mut self) -> SocketAddr {
        let (code, t) = self.cmd("EPSV");
        assert_eq!(code, 229, "{t}");
        let port = t.split("|||").nth(1).unwrap().split('|').next().unwrap();
        SocketAddr::from(([127, 0, 0, 1], port.parse().unwrap()))
    }
}

fn ctl(sock: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(GRIDOS)
        .args(["ctl", "--socket"])
        .arg(sock)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A scratch directory that an unprivileged server user can traverse and write.
fn scratch() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
    (dir, root)
}

#[test]
fn passwd_file_login_ctl_config_and_sigterm() {
    let (dir, root) = scratch();
    let passwd = dir.path().join("users");
    for (user, pw) in [("alice", "first"), ("bob", "b0b"), ("alice", "s3cret")] {
        let mut p = Command::new(GRIDOS)
            .args(["passwd"])
            .arg(&passwd)
            .arg(user)
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        p.stdin
            .take()
            .unwrap()
            .write_all(format!("{pw}\n").as_bytes())
            .unwrap();
        assert!(p.wait().unwrap().success());
    }
    let meta = std::fs::metadata(&passwd).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&passwd).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.lines().all(|l| l.contains(":$argon2id$")), "{text}");
    assert!(!text.contains("s3cret"));

    let big: Vec<u8> = (0..20_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(root.join("big.bin"), &big).unwrap();
    std::fs::set_permissions(root.join("big.bin"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let sock = dir.path().join("ctl.sock");
    let config = dir.path().join("ftpd.toml");
    std::fs::write(
        &config,
        "[ftp]\nmax_clients = 9\nshutdown_grace = 1\nreply_timeout = 11\n[io]\nauto_tune = true\n",
    )
    .unwrap();
    let mut ftpd = Ftpd::start(&[
        "--docroot",
        root.to_str().unwrap(),
        "--passwd",
        passwd.to_str().unwrap(),
        "--ctl-socket",
        sock.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--threads",
        "2",
        "--io-threads",
        "2",
        "--login-delay",
        "0.2",
        "--login-max-failures",
        "7",
        "--login-ban",
        "60",
        "--login-exempt",
        "192.0.2.0/24,2001:db8::/32",
        "--command-timeout",
        "9",
    ]);

    let mut c = Ctl::connect(ftpd.addr);
    assert_eq!(c.cmd("USER alice").0, 331);
    assert_eq!(c.cmd("PASS first").0, 530, "replaced password");
    assert_eq!(c.cmd("USER alice").0, 331);
    assert_eq!(c.cmd("PASS s3cret").0, 230);
    assert_eq!(c.cmd("SIZE big.bin").1.trim(), "213 20000000");
    let mut anon = Ctl::connect(ftpd.addr);
    assert_eq!(anon.cmd("USER anonymous").0, 331);
    assert_eq!(anon.cmd("PASS x").0, 530, "anonymous is opt-in");

    assert_eq!(
        ctl(&sock, &["get", "ftp.max_clients"]),
        (true, "9\n".into())
    );
    assert_eq!(
        ctl(&sock, &["get", "io.auto_tune"]),
        (true, "true\n".into())
    );
    assert!(ctl(&sock, &["set", "ftp.threads", "3"]).0);
    assert_eq!(ctl(&sock, &["get", "ftp.threads"]), (true, "3\n".into()));
    assert!(ctl(&sock, &["set", "io.threads", "3"]).0);
    assert_eq!(ctl(&sock, &["get", "io.threads"]), (true, "3\n".into()));
    assert!(!ctl(&sock, &["set", "ftp.bogus", "1"]).0);
    // The login throttle and the session timeouts, from flags and [ftp].
    for (key, want) in [
        ("ftp.login_delay", "0.2"),
        ("ftp.login_max_failures", "7"),
        ("ftp.login_ban", "60"),
        ("ftp.login_exempt", "192.0.2.0/24,2001:db8::/32"),
        ("ftp.command_timeout", "9"),
        ("ftp.reply_timeout", "11"),
    ] {
        assert_eq!(
            ctl(&sock, &["get", key]),
            (true, format!("{want}\n")),
            "{key}"
        );
    }
    assert!(ctl(&sock, &["set", "ftp.login_max_failures", "0"]).0);
    assert_eq!(
        ctl(&sock, &["get", "ftp.login_max_failures"]),
        (true, "0\n".into())
    );
    let (ok, stats) = ctl(&sock, &["stats"]);
    assert!(
        ok && stats.contains("clients = 2")
            && stats.contains("io.path = ")
            && stats.contains("logins_failed = 2\n")
            && stats.contains("clients_banned = 0\n"),
        "{stats}"
    );
    let (ok, list) = ctl(&sock, &["list"]);
    assert!(ok && list.contains("ftp.docroot = ") && list.contains("io.sndbuf_default = "));

    // SIGTERM while a slow download runs: the transfer is aborted after the grace period
    // (426), sessions get 421, and the server exits 0.
    assert_eq!(c.cmd("TYPE I").0, 200);
    let a = c.epsv();
    let mut d = TcpStream::connect(a).unwrap();
    d.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    assert_eq!(c.cmd("RETR big.bin").0, 150);
    let mut first = vec![0u8; 1000];
    d.read_exact(&mut first).unwrap();
    assert_eq!(&first[..], &big[..1000]);
    let (status, took) = ftpd.term();
    assert!(status.success(), "ftpd exit status {status:?}");
    assert!(took < Duration::from_secs(15), "shutdown took {took:?}");
    let (code, _) = c.reply();
    assert!(code == 426 || code == 226, "transfer end reply {code}");
    assert_eq!(c.reply().0, 421);
    assert_eq!(anon.reply().0, 421);
}

/// A capability set from a /proc status text.
fn cap(status: &str, key: &str) -> u64 {
    let l = status.lines().find(|l| l.starts_with(key)).unwrap();
    u64::from_str_radix(l.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

#[test]
fn keep_net_admin_keeps_that_capability_and_nothing_else() {
    if !is_root() {
        eprintln!("SKIPPED: the capability test needs root");
        return;
    }
    let (_dir, root) = scratch();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let ftpd = Ftpd::start(&[
        "--docroot",
        root.to_str().unwrap(),
        "--anonymous",
        "--user",
        "nobody",
        "--keep-net-admin",
    ]);
    let pid = ftpd.child.id();
    const NET_ADMIN: u64 = 1 << 12;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(t.unwrap().path().join("status")).unwrap();
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            uid.split_whitespace()
                .skip(1)
                .all(|x| x == nobody.uid.as_raw().to_string()),
            "{uid}"
        );
        assert_eq!(cap(&status, "CapEff:"), NET_ADMIN, "{status}");
        assert_eq!(cap(&status, "CapPrm:"), NET_ADMIN, "{status}");
        assert_eq!(cap(&status, "CapInh:"), 0, "{status}");
    }
    // And it serves.
    let mut c = Ctl::connect(ftpd.addr);
    assert_eq!(c.cmd("USER anonymous").0, 331);
    assert_eq!(c.cmd("PASS x").0, 230);
    assert_eq!(c.cmd("SBUF 16777216").0, 200);
}

#[test]
fn as_root_chroots_and_drops_privileges() {
    if !is_root() {
        if in_ci() {
            eprintln!("SKIPPED: not root (CI runs as root normally; chroot/setuid need it)");
        } else {
            eprintln!("SKIPPED: chroot/setuid test needs root");
        }
        return;
    }
    let (_dir, root) = scratch();
    std::fs::write(root.join("hello.txt"), b"hello from the docroot").unwrap();
    std::fs::set_permissions(
        root.join("hello.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let ftpd = Ftpd::start(&[
        "--docroot",
        root.to_str().unwrap(),
        "--anonymous",
        "--anonymous-write",
        "--user",
        "nobody",
    ]);
    let pid = ftpd.child.id();
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(tasks.len() > 1, "threads are running");
    for t in tasks {
        let status = std::fs::read_to_string(t.join("status")).unwrap();
        let ids = |k: &str| -> Vec<u32> {
            let l = status.lines().find(|l| l.starts_with(k)).unwrap();
            l.split_whitespace()
                .skip(1)
                .map(|x| x.parse().unwrap())
                .collect()
        };
        assert_eq!(ids("Uid:"), vec![nobody.uid.as_raw(); 4], "{}", t.display());
        assert_eq!(ids("Gid:"), vec![nobody.gid.as_raw(); 4], "{}", t.display());
        assert_eq!(ids("Groups:"), vec![nobody.gid.as_raw()], "{}", t.display());
        assert_eq!(
            cap(&status, "CapEff:"),
            0,
            "no capability left: {}",
            t.display()
        );
    }
    let proc_root = std::fs::read_link(format!("/proc/{pid}/root")).unwrap();
    assert_eq!(proc_root, std::fs::canonicalize(&root).unwrap());
    // It still serves, and writes land as the unprivileged user.
    let mut c = Ctl::connect(ftpd.addr);
    assert_eq!(c.cmd("USER anonymous").0, 331);
    assert_eq!(c.cmd("PASS x").0, 230);
    let a = c.epsv();
    let mut d = TcpStream::connect(a).unwrap();
    assert_eq!(c.cmd("RETR hello.txt").0, 150);
    let mut got = Vec::new();
    d.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"hello from the docroot");
    assert_eq!(c.reply().0, 226);
    assert_eq!(c.cmd("MKD made").0, 257);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(root.join("made")).unwrap().uid(),
        nobody.uid.as_raw()
    );
}
