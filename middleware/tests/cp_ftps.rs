//! `gridos cp` over FTPS against vsftpd (OpenSSL) on loopback: `ftpes://` (explicit) and
//! `ftps://` (implicit) downloads, uploads, trees (listings) and resumes, `--tls` on
//! `ftp://`, the automatic upgrade before a password and the warning when it goes in clear,
//! and certificates checked: the system's roots do not know the test CA, wrong-name and
//! expired certificates fail naming the reason, `--insecure` works and says so. vsftpd runs
//! with `require_ssl_reuse=YES`, so every data connection must resume the control session.
//! Certificates are made in the test (rcgen); bytes checked by SHA-256.

mod tls_fixtures;
mod util;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use util::{
    LocalUser, PamService, gridos, is_root, make_tree, random_bytes, sha256, sha256_file, tree,
    unavailable,
};

/// PEM files: a CA, and server certificates (good, wrong name, expired, untrusted), from
/// the shared fixtures.
struct Pki {
    ca: PathBuf,
    good: (PathBuf, PathBuf),
    wrong_name: (PathBuf, PathBuf),
    expired: (PathBuf, PathBuf),
    untrusted: (PathBuf, PathBuf),
    _files: [tls_fixtures::Pki; 2],
}

fn pki() -> Pki {
    let ours = tls_fixtures::Pki::new("cp-ftps");
    let stranger = tls_fixtures::Pki::new("cp-ftps stranger");
    let pair = |c: tls_fixtures::CertFiles| (c.cert, c.key);
    let here = ["127.0.0.1", "localhost"];
    Pki {
        ca: ours.ca.clone(),
        good: pair(ours.server.clone()),
        wrong_name: pair(ours.server_cert("wrong", &["elsewhere.example"], false)),
        expired: pair(ours.server_cert("expired", &here, true)),
        untrusted: pair(stranger.server.clone()),
        _files: [ours, stranger],
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Serve {
    Explicit,
    Implicit,
    Off,
}

/// vsftpd for one local account (not chrooted) with FTPS as `serve` says: the certificate,
/// `require_ssl_reuse=YES`, logins and data forced onto TLS. Killed on drop.
struct VsftpdTls {
    child: Child,
    port: u16,
    user: LocalUser,
    home: PathBuf,
    log: PathBuf,
    _pam: PamService,
    _dir: tempfile::TempDir,
}

impl VsftpdTls {
    fn start(serve: Serve, cert: &(PathBuf, PathBuf)) -> Option<VsftpdTls> {
        let Some(bin) = util::vsftpd_binary() else {
            return unavailable(
                "vsftpd not found (set GRIDOS_VSFTPD or extract the Debian package to /opt/gridos-peers/vsftpd)",
            );
        };
        if !is_root() {
            return unavailable("vsftpd with a local user needs root (useradd, /etc/pam.d)");
        }
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
        let user = LocalUser::create("ftps", &home);
        let pam = PamService::unix("vsftpd-tls");
        let port = util::free_port();
        let log = dir.path().join("vsftpd.log");
        let tls = match serve {
            Serve::Off => "ssl_enable=NO\n".to_string(),
            _ => format!(
                "ssl_enable=YES\nrsa_cert_file={}\nrsa_private_key_file={}\nssl_ciphers=HIGH\n\
                 ssl_sslv2=NO\nssl_sslv3=NO\nssl_tlsv1=YES\nrequire_ssl_reuse=YES\n\
                 force_local_logins_ssl=YES\nforce_local_data_ssl=YES\nallow_anon_ssl=NO\n\
                 implicit_ssl={}\n",
                cert.0.display(),
                cert.1.display(),
                if serve == Serve::Implicit {
                    "YES"
                } else {
                    "NO"
                }
            ),
        };
        let nopriv = if Path::new("/etc/passwd").exists()
            && std::fs::read_to_string("/etc/passwd")
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with("nobody:"))
        {
            "nobody"
        } else {
            "daemon"
        };
        let conf = dir.path().join("vsftpd.conf");
        std::fs::write(
            &conf,
            format!(
                "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\n\
                 background=NO\nseccomp_sandbox=NO\nisolate=NO\nisolate_network=NO\n\
                 pasv_enable=YES\npasv_address=127.0.0.1\nsecure_chroot_dir={empty}\n\
                 tcp_wrappers=NO\nvsftpd_log_file={log}\ndual_log_enable=NO\nsyslog_enable=NO\n\
                 xferlog_enable=YES\nlog_ftp_protocol=YES\nmax_per_ip=50\nmax_clients=50\n\
                 anonymous_enable=NO\nlocal_enable=YES\nwrite_enable=YES\nlocal_umask=022\n\
                 chroot_local_user=NO\nchroot_list_enable=NO\nuserlist_enable=NO\n\
                 pam_service_name={pam}\nnopriv_user={nopriv}\n{tls}",
                empty = empty.display(),
                log = log.display(),
                pam = pam.name,
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
                panic!("vsftpd exited at start ({status})");
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
            _pam: pam,
            _dir: dir,
        })
    }

    /// `SCHEME://USER:PASSWORD@127.0.0.1:PORT/path`.
    fn url(&self, scheme: &str, path: &str) -> String {
        format!(
            "{scheme}://{}:{}@127.0.0.1:{}/{path}",
            self.user.name,
            self.user.url_password(),
            self.port
        )
    }

    /// Writes `data` to `home/rel`, owned by the user.
    fn put(&self, rel: &str, data: &[u8]) -> PathBuf {
        let p = self.home.join(rel);
        std::fs::write(&p, data).unwrap();
        self.user.give(&p);
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for VsftpdTls {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `gridos cp --json --cacert CA ARGS…`, which must succeed; its JSON summary.
fn cp_ok(v: &VsftpdTls, ca: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["cp", "--json", "--cacert", s(ca)];
    all.extend_from_slice(args);
    let r = gridos(&all);
    if !r.status.success() {
        panic!(
            "gridos {all:?} failed: {}\nvsftpd log:\n{}",
            r.stderr,
            v.log()
        );
    }
    serde_json::from_str(r.stdout.trim()).unwrap()
}

/// Downloads, an upload, a tree (LIST over TLS) and a resume through `scheme://`.
fn round_trip(v: &VsftpdTls, ca: &Path, scheme: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(3 * 1024 * 1024 + 333, 21);
    v.put("src.bin", &data);
    let out = dir.path().join("out.bin");
    let j = cp_ok(v, ca, &[&v.url(scheme, "src.bin"), s(&out)]);
    assert_eq!(sha256_file(&out), sha256(&data));
    assert_eq!(j["bytes"], data.len() as u64);
    assert!(j["path"].as_str().unwrap().starts_with("TLS "), "{j}");

    // Upload.
    let j = cp_ok(v, ca, &[s(&out), &v.url(scheme, "up.bin")]);
    assert!(j["path"].as_str().unwrap().starts_with("TLS "), "{j}");
    assert_eq!(sha256_file(&v.home.join("up.bin")), sha256(&data));

    // A tree: listings over TLS, one data connection per file, each resuming.
    let t = v.home.join("tree");
    make_tree(&t);
    let _ = Command::new("chown")
        .arg("-R")
        .arg(format!("{0}:{0}", v.user.name))
        .arg(&t)
        .status();
    let got = dir.path().join("tree");
    cp_ok(v, ca, &["-r", &v.url(scheme, "tree"), s(&got)]);
    assert_eq!(tree(&got), tree(&t));

    // Resume a partial download.
    let part = dir.path().join("part.bin");
    std::fs::write(&part, &data[..1_234_567]).unwrap();
    let j = cp_ok(v, ca, &["--resume", &v.url(scheme, "src.bin"), s(&part)]);
    assert_eq!(j["bytes"], (data.len() - 1_234_567) as u64);
    assert_eq!(sha256_file(&part), sha256(&data));
}

#[test]
fn ftpes_and_tls_on_ftp_urls() {
    let p = pki();
    let Some(v) = VsftpdTls::start(Serve::Explicit, &p.good) else {
        return;
    };
    round_trip(&v, &p.ca, "ftpes");
    // --tls makes an ftp:// URL explicit TLS, required.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("again.bin");
    cp_ok(&v, &p.ca, &["--tls", &v.url("ftp", "src.bin"), s(&out)]);
    assert_eq!(sha256_file(&out), sha256_file(&v.home.join("src.bin")));
    // -v says what TLS protects, in one line per side.
    let url = v.url("ftp", "src.bin");
    let r = gridos(&["-v", "cp", "--tls", "--cacert", s(&p.ca), &url, s(&out)]);
    assert!(r.status.success(), "{}", r.stderr);
    let line = r
        .stderr
        .lines()
        .find(|l| l.starts_with("gridos: cp: ftp://") && l.contains("/src.bin: TLS 1."))
        .unwrap_or_else(|| panic!("no TLS line: {}", r.stderr));
    assert!(
        line.contains(&format!(
            "server certificate checked against {}",
            p.ca.display()
        )) && line.ends_with("; data encrypted (PROT P)")
            && line.contains(" (TLS"),
        "{line}"
    );
}

#[test]
fn ftps_is_implicit_tls() {
    let p = pki();
    let Some(v) = VsftpdTls::start(Serve::Implicit, &p.good) else {
        return;
    };
    round_trip(&v, &p.ca, "ftps");
}

#[test]
fn passwords_upgrade_to_tls_or_are_said_to_go_in_clear() {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let Some(v) = VsftpdTls::start(Serve::Explicit, &p.good) else {
        return;
    };
    // A plain ftp:// URL with a password: vsftpd forces TLS for the login, so only the
    // automatic upgrade gets in.
    v.put("a.txt", b"upgraded\n");
    let out = dir.path().join("a.txt");
    let r = gridos(&["cp", "--cacert", s(&p.ca), &v.url("ftp", "a.txt"), s(&out)]);
    assert!(r.status.success(), "{}\n{}", r.stderr, v.log());
    assert_eq!(std::fs::read(&out).unwrap(), b"upgraded\n");
    assert!(!r.stderr.contains("in clear"), "{}", r.stderr);
    drop(v);

    let Some(v) = VsftpdTls::start(Serve::Off, &p.good) else {
        return;
    };
    v.put("b.txt", b"clear\n");
    let out = dir.path().join("b.txt");
    let r = gridos(&["cp", &v.url("ftp", "b.txt"), s(&out)]);
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(std::fs::read(&out).unwrap(), b"clear\n");
    assert!(
        r.stderr.contains("went in clear") && r.stderr.contains(&v.user.name),
        "{}",
        r.stderr
    );
    // Required TLS against a server without it: a clear error, exit 11, nothing written.
    let out = dir.path().join("c.txt");
    for args in [
        vec!["cp", "--tls", &v.url("ftp", "b.txt") as &str, s(&out)],
        vec!["cp", &v.url("ftpes", "b.txt") as &str, s(&out)],
    ] {
        let r = gridos(&args);
        let err = r.fails();
        assert_eq!(r.status.code(), Some(11), "{err}");
        assert!(err.contains("does not offer TLS"), "{err}");
        assert!(!out.exists());
    }
}

#[test]
fn certificates_are_checked_and_the_reason_named() {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.bin");
    let check = |serve: Serve, cert: &(PathBuf, PathBuf), extra: &[&str], want: &str| {
        let Some(v) = VsftpdTls::start(serve, cert) else {
            return;
        };
        v.put("x.bin", b"secret\n");
        let scheme = if serve == Serve::Implicit {
            "ftps"
        } else {
            "ftpes"
        };
        let url = v.url(scheme, "x.bin");
        let mut args = vec!["cp"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[&url, s(&out)]);
        let r = gridos(&args);
        let err = r.fails();
        assert_eq!(r.status.code(), Some(11), "{err}");
        assert!(err.contains(want), "wanted {want:?}: {err}");
        assert!(!err.contains(&v.user.password), "{err}");
        assert!(!out.exists());
    };
    // The system's roots do not know the test CA.
    check(Serve::Explicit, &p.good, &[], "unknown issuer");
    let ca = ["--cacert", s(&p.ca)];
    check(Serve::Explicit, &p.untrusted, &ca, "unknown issuer");
    check(
        Serve::Explicit,
        &p.wrong_name,
        &ca,
        "not valid for this host name",
    );
    check(Serve::Implicit, &p.expired, &ca, "expired");

    // --insecure: the untrusted certificate is accepted, still encrypted, and said so.
    let Some(v) = VsftpdTls::start(Serve::Explicit, &p.untrusted) else {
        return;
    };
    let data = random_bytes(500_000, 5);
    v.put("y.bin", &data);
    let out = dir.path().join("y.bin");
    let r = gridos(&["cp", "-q", "--insecure", &v.url("ftpes", "y.bin"), s(&out)]);
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(sha256_file(&out), sha256(&data));
    assert!(
        r.stderr.contains("--insecure") && r.stderr.contains("not verified"),
        "{}",
        r.stderr
    );
    // A CA file that holds no certificate: the options are wrong (exit 3).
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate\n").unwrap();
    let r = gridos(&[
        "cp",
        "--cacert",
        s(&bogus),
        &v.url("ftpes", "y.bin"),
        s(&out),
    ]);
    let err = r.fails();
    assert_eq!(r.status.code(), Some(3), "{err}");
    assert!(err.contains("bogus.pem"), "{err}");
}

/// Two FTPS servers that do not know GridFTP's DCAU/SSCN: the direct TLS transfer is
/// refused by name, and the copy relays through this machine over TLS on both sides (or,
/// with --no-relay, fails saying why).
#[test]
fn server_to_server_under_tls_relays_when_the_servers_cannot() {
    let p = pki();
    let (Some(a), Some(b)) = (
        VsftpdTls::start(Serve::Explicit, &p.good),
        VsftpdTls::start(Serve::Explicit, &p.good),
    ) else {
        return;
    };
    let data = random_bytes(1_500_000, 8);
    a.put("from.bin", &data);
    let j = cp_ok(
        &a,
        &p.ca,
        &["-v", &a.url("ftpes", "from.bin"), &b.url("ftpes", "to.bin")],
    );
    assert_eq!(j["third_party"], false, "{j}");
    let reason = j["reason"].as_str().unwrap();
    assert!(reason.contains("DCAU N"), "{reason}");
    assert!(j["path"].as_str().unwrap().starts_with("TLS "), "{j}");
    assert_eq!(sha256_file(&b.home.join("to.bin")), sha256(&data));

    let r = gridos(&[
        "cp",
        "--no-relay",
        "--cacert",
        s(&p.ca),
        &a.url("ftpes", "from.bin"),
        &b.url("ftpes", "again.bin"),
    ]);
    let err = r.fails();
    assert_eq!(r.status.code(), Some(8), "{err}");
    assert!(
        err.contains("DCAU N") && err.contains("--no-relay"),
        "{err}"
    );
    assert!(!b.home.join("again.bin").exists());
}
