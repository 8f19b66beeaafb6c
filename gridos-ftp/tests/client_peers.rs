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

// ---------------------------------------------------------------------------------------
// TLS: certificates made in the test, and vsftpd with FTPS for a local account.

/// PEM files of a test PKI in a temporary directory: a CA, a server certificate it signed
/// for 127.0.0.1 and localhost, and the variants that must be refused.
pub struct Pki {
    /// The CA certificate (what `--cacert` names).
    pub ca: PathBuf,
    /// Server certificate for 127.0.0.1 and localhost, signed by the CA, and its key.
    pub good: (PathBuf, PathBuf),
    /// Signed by the CA for `elsewhere.example` only.
    pub wrong_name: (PathBuf, PathBuf),
    /// Signed by the CA for 127.0.0.1 and localhost, expired in 2020.
    pub expired: (PathBuf, PathBuf),
    /// For 127.0.0.1 and localhost, signed by a CA nobody trusts.
    pub untrusted: (PathBuf, PathBuf),
    /// The directory holding the files.
    pub dir: tempfile::TempDir,
}

impl Pki {
    /// Generates every certificate (ECDSA P-256) into a fresh directory readable by all
    /// (vsftpd reads its key as root, but the directory must be reachable).
    pub fn generate() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("gridos-pki-")
            .tempdir()
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let ca_of = |cn: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
            let cert = p.self_signed(&key).unwrap();
            (cert, rcgen::Issuer::new(p, key))
        };
        let (ca_cert, ca) = ca_of("gridos test CA");
        let (_, stranger) = ca_of("gridos stranger CA");
        let write = |name: &str, pem: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        let leaf = |name: &str,
                    names: &[&str],
                    issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
                    expired: bool| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut p = rcgen::CertificateParams::new(
                names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
            .unwrap();
            p.distinguished_name
                .push(rcgen::DnType::CommonName, names[0]);
            if expired {
                p.not_before = rcgen::date_time_ymd(2019, 1, 1);
                p.not_after = rcgen::date_time_ymd(2020, 1, 1);
            }
            let cert = p.signed_by(&key, issuer).unwrap();
            (
                write(&format!("{name}.pem"), cert.pem()),
                write(&format!("{name}.key"), key.serialize_pem()),
            )
        };
        let here = ["127.0.0.1", "localhost"];
        Pki {
            ca: write("ca.pem", ca_cert.pem()),
            good: leaf("good", &here, &ca, false),
            wrong_name: leaf("wrong-name", &["elsewhere.example"], &ca, false),
            expired: leaf("expired", &here, &ca, true),
            untrusted: leaf("untrusted", &here, &stranger, false),
            dir,
        }
    }
}

/// Serialises this process's changes to the account files (useradd/userdel take a lock and
/// fail rather than wait).
static ACCOUNTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn account_tool(program: &str, args: &[&str], stdin: Option<&str>) -> bool {
    use std::io::Write;
    let _held = ACCOUNTS.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..20 {
        let Ok(mut child) = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return false;
        };
        if let (Some(mut i), Some(s)) = (child.stdin.take(), stdin) {
            let _ = i.write_all(s.as_bytes());
        }
        if child.wait().is_ok_and(|s| s.success()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A local account for one test (`useradd -M`, a password with a space), removed on drop.
pub struct TestUser {
    /// Login name.
    pub name: String,
    /// Password.
    pub password: String,
}

impl TestUser {
    /// Creates `gridos-TAG-PID-N` with `home` (given to it) as home directory.
    pub fn create(tag: &str, home: &Path) -> TestUser {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "gridos-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let home_s = home.to_str().unwrap();
        assert!(
            account_tool(
                "useradd",
                &["-d", home_s, "-M", "-s", "/bin/bash", &name],
                None
            ),
            "useradd {name} failed"
        );
        let user = TestUser {
            password: format!("tls pass {}", std::process::id()),
            name,
        };
        assert!(
            account_tool(
                "chpasswd",
                &[],
                Some(&format!("{}:{}\n", user.name, user.password))
            ),
            "chpasswd failed"
        );
        let _ = Command::new("chown")
            .arg(format!("{0}:{0}", user.name))
            .arg(home)
            .status();
        user
    }

    /// Makes the user the owner of `p`.
    pub fn give(&self, p: &Path) {
        let _ = Command::new("chown")
            .arg(format!("{0}:{0}", self.name))
            .arg(p)
            .status();
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        account_tool("userdel", &["-f", &self.name], None);
    }
}

/// How [`VsftpdTls`] serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsServe {
    /// Explicit FTPS: `AUTH TLS`, then (forced) TLS for logins and data.
    Explicit,
    /// Implicit FTPS: TLS from the first byte.
    Implicit,
    /// No TLS at all (`ssl_enable=NO`), the same account.
    Off,
}

/// vsftpd with FTPS for one local account (not chrooted; it logs in to `home`):
/// `ssl_enable=YES`, the given certificate, `require_ssl_reuse=YES` (every data connection
/// must resume the control connection's session), `force_local_logins_ssl=YES`,
/// `force_local_data_ssl=YES`, `ssl_tlsv1=YES` (this vsftpd has no `ssl_tlsv1_2`; the
/// switch enables TLS and makes FEAT list `AUTH TLS`; our client speaks TLS 1.2 and 1.3). Needs root (useradd, /etc/pam.d). Killed on drop.
pub struct VsftpdTls {
    child: Child,
    /// Control port on 127.0.0.1.
    pub port: u16,
    /// The account.
    pub user: TestUser,
    /// Its login directory.
    pub home: PathBuf,
    log: PathBuf,
    pam: PathBuf,
    _dir: tempfile::TempDir,
}

impl VsftpdTls {
    /// Starts vsftpd serving with `cert` (chain, key), or skips (`None`) / fails in CI.
    pub fn start(serve: TlsServe, cert: &(PathBuf, PathBuf)) -> Option<VsftpdTls> {
        let Some(bin) = vsftpd_binary() else {
            return unavailable(
                "vsftpd not found (set GRIDOS_VSFTPD or extract the Debian package to /opt/gridos-peers/vsftpd)",
            );
        };
        if !is_root() {
            return unavailable("vsftpd with a local user needs root (useradd, /etc/pam.d)");
        }
        let pam_unix = [
            "/lib/x86_64-linux-gnu/security/pam_unix.so",
            "/usr/lib/x86_64-linux-gnu/security/pam_unix.so",
        ];
        if !pam_unix.iter().any(|p| Path::new(p).is_file()) {
            return unavailable("pam_unix.so not found (package libpam-modules)");
        }
        let nopriv = ["nobody", "ftp", "daemon"]
            .into_iter()
            .find(|u| uid_of(u).is_some())
            .expect("no nobody, ftp or daemon user");
        let dir = tempfile::Builder::new()
            .prefix("gridos-vsftpd-tls-")
            .tempdir()
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = dir.path().join("home");
        let empty = dir.path().join("empty");
        for d in [&home, &empty] {
            std::fs::create_dir(d).unwrap();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let user = TestUser::create("tls", &home);
        let pam_name = format!("{}-vsftpd", user.name);
        let pam = Path::new("/etc/pam.d").join(&pam_name);
        std::fs::write(
            &pam,
            "# Written by a gridos test; removed when it ends.\n\
             auth\trequired\tpam_unix.so\naccount\trequired\tpam_unix.so\n\
             session\trequired\tpam_permit.so\n",
        )
        .unwrap();
        let port = free_port();
        let log = dir.path().join("vsftpd.log");
        let tls = match serve {
            TlsServe::Off => "ssl_enable=NO\n".to_string(),
            _ => format!(
                "ssl_enable=YES\nrsa_cert_file={}\nrsa_private_key_file={}\n\
                 ssl_ciphers=HIGH\nssl_sslv2=NO\nssl_sslv3=NO\nssl_tlsv1=YES\n\
                 require_ssl_reuse=YES\nforce_local_logins_ssl=YES\nforce_local_data_ssl=YES\n\
                 allow_anon_ssl=NO\nimplicit_ssl={}\ndebug_ssl=YES\n",
                cert.0.display(),
                cert.1.display(),
                if serve == TlsServe::Implicit {
                    "YES"
                } else {
                    "NO"
                },
            ),
        };
        let conf = dir.path().join("vsftpd.conf");
        std::fs::write(
            &conf,
            format!(
                "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\n\
                 background=NO\nseccomp_sandbox=NO\nisolate=NO\nisolate_network=NO\n\
                 pasv_enable=YES\npasv_address=127.0.0.1\nsecure_chroot_dir={empty}\n\
                 tcp_wrappers=NO\nvsftpd_log_file={log}\ndual_log_enable=NO\n\
                 syslog_enable=NO\nxferlog_enable=YES\nlog_ftp_protocol=YES\n\
                 max_per_ip=50\nmax_clients=50\n\
                 anonymous_enable=NO\nlocal_enable=YES\nwrite_enable=YES\nlocal_umask=022\n\
                 chroot_local_user=NO\nchroot_list_enable=NO\nuserlist_enable=NO\n\
                 pam_service_name={pam_name}\nnopriv_user={nopriv}\n{tls}",
                empty = empty.display(),
                log = log.display(),
            ),
        )
        .unwrap();
        let mut cmd = Command::new(&bin);
        cmd.arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(prefix) = bin.parent().and_then(Path::parent) {
            let libs = prefix.join("lib/x86_64-linux-gnu");
            if libs.is_dir() {
                cmd.env("LD_LIBRARY_PATH", libs);
            }
        }
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let mut child = cmd.spawn().expect("spawn vsftpd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                let _ = std::fs::remove_file(&pam);
                panic!("vsftpd exited at start ({status}): {err}");
            }
            assert!(Instant::now() < deadline, "vsftpd did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(VsftpdTls {
            child,
            port,
            user,
            home,
            log,
            pam,
            _dir: dir,
        })
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Writes `data` to `home/name`, owned by the user.
    pub fn put(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.home.join(name);
        std::fs::write(&p, data).unwrap();
        self.user.give(&p);
        p
    }

    /// vsftpd's log (commands, replies, TLS events), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for VsftpdTls {
    fn drop(&mut self) {
        // The server and the session processes it forked, before the account goes.
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.pam);
    }
}
