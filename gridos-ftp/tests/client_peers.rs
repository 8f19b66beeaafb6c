//! Real FTP peers for the client tests: a vsftpd started on loopback with a generated
//! configuration. Included by other test files with `#[path]`; compiled alone it only checks
//! that the harness itself behaves.
//!
//! vsftpd is found through `GRIDOS_VSFTPD` (path to the binary), else
//! `/opt/gridos-peers/vsftpd/usr/sbin/vsftpd` (where `.ci/run` extracts the Debian package,
//! together with `libwrap0`), else `/usr/sbin/vsftpd`. It must run as root. With `CI=true` a
//! missing peer or a non-root user fails the test; elsewhere the test is skipped with a message.
#![allow(dead_code)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

/// Where vsftpd is, if anywhere.
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

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn uid_of(user: &str) -> Option<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&user)).then(|| f.get(2)?.parse().ok())?
    })
}

/// A running vsftpd serving `root` anonymously on 127.0.0.1:`port`; `root/pub` is writable
/// (upload, mkdir, delete, rename). Killed on drop.
pub struct Vsftpd {
    child: Child,
    /// Control port on 127.0.0.1.
    pub port: u16,
    /// The anonymous root (owned by root; vsftpd refuses a writable chroot).
    pub root: PathBuf,
    /// `root/pub`, writable by the anonymous user.
    pub pub_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Vsftpd {
    /// Starts vsftpd, or returns `None` (skip) / panics (CI) when it cannot run here.
    /// `pasv_address` is what vsftpd advertises in 227 replies (the client must ignore it).
    pub fn start(pasv_address: &str) -> Option<Vsftpd> {
        let Some(bin) = vsftpd_binary() else {
            return unavailable(
                "vsftpd not found (set GRIDOS_VSFTPD or extract the Debian package to /opt/gridos-peers/vsftpd)",
            );
        };
        if !is_root() {
            return unavailable("vsftpd tests need root");
        }
        // The anonymous user must exist and have an existing home directory.
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
                 pasv_enable=YES\npasv_address={pasv_address}\n\
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
                if let Some(mut o) = child.stdout.take() {
                    let _ = o.read_to_string(&mut err);
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
            _dir: dir,
        })
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Vsftpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

#[test]
fn harness_helpers() {
    assert_eq!(random_bytes(1000, 7), random_bytes(1000, 7));
    assert_ne!(sha256(&random_bytes(100, 1)), sha256(&random_bytes(100, 2)));
}

/// Relative path → SHA-256 of every file under `dir` (directories as "dir"): two trees are
/// the same when these maps are equal.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<String, String> {
    fn go(base: &Path, d: &Path, out: &mut std::collections::BTreeMap<String, String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            if p.is_dir() {
                out.insert(rel, "dir".into());
                go(base, &p, out);
            } else {
                out.insert(rel, sha256(&std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    go(dir, dir, &mut out);
    out
}
