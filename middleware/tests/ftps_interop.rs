//! FTPS interoperability with real peers over loopback, certificates made in the test,
//! bytes checked by SHA-256.
//!
//! Our server (`gridos ftpd`, in this process through `util::Ours`, or the binary) against
//! curl (explicit `--ssl-reqd --cacert`, implicit `ftps://`), lftp (`ftp:ssl-force`,
//! verification on), Python's `ftplib.FTP_TLS` with `prot_p()` (with session resumption,
//! and stock ftplib when the server runs with `--no-tls-data-reuse`), rclone
//! (`--ftp-explicit-tls`) and client-certificate logins through a grid-mapfile. Our client
//! (`gridos cp ftpes://`) against proftpd with mod_tls and vsftpd with
//! `require_ssl_reuse=YES` (both OpenSSL), and against our server with MODE E over TLS.
//!
//! The servers require TLS (`TlsPolicy::Required`, `TLSRequired on`, `force_anon_*_ssl`)
//! and that data connections resume the control connection's session, so a peer that
//! silently fell back to clear text, or opened unrelated data connections, fails the test.
//! Without a peer a test skips with a message; with CI=true it fails.

mod tls_fixtures;
mod util;

use gridos_ftp::server::{ServerConfig, TlsPolicy};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tls_fixtures::{CertFiles, Pki};
use util::*;

/// Longest one peer program may run before it is killed and the test fails.
const PEER_DEADLINE: Duration = Duration::from_secs(60);

/// What one peer run produced.
struct Out {
    what: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Out {
    /// Asserts success (with everything the peer said, and `log`, when not).
    fn ok(self, log: &dyn Fn() -> String) -> Out {
        assert!(
            self.status.success(),
            "{} failed ({})\nstdout: {}\nstderr: {}\nserver log:\n{}",
            self.what,
            self.status,
            self.stdout,
            self.stderr,
            log()
        );
        self
    }

    /// Asserts failure.
    fn fails(self) -> Out {
        assert!(
            !self.status.success(),
            "{} succeeded but should have failed\nstdout: {}\nstderr: {}",
            self.what,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// No server log to show.
fn no_log() -> String {
    String::new()
}

/// Runs a peer program; killed (and the test failed) after [`PEER_DEADLINE`].
fn run(cmd: &mut Command) -> Out {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + PEER_DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} ran for more than {} s and was killed; stderr: {}",
                PEER_DEADLINE.as_secs(),
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Out {
        what,
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Whether `program` is on PATH; otherwise a skip (a failure in CI).
fn need(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        unavailable::<()>(&format!(
            "{program} is not installed (.ci/run installs it with apt-get)"
        ));
    }
    found
}

/// Our server with the fixture's certificate, TLS required for every login and data
/// connection; `f` adjusts the configuration further.
fn ours_tls(pki: &Pki, f: impl FnOnce(&mut ServerConfig)) -> Ours {
    Ours::start(|c| {
        c.tls = TlsPolicy::Required;
        c.tls_cert = Some(pki.server.cert.clone());
        c.tls_key = Some(pki.server.key.clone());
        f(c);
    })
}

/// `SCHEME://alice:…@ADDR/path`.
fn alice_url(scheme: &str, addr: SocketAddr, path: &str) -> String {
    format!(
        "{scheme}://{}:{}@{addr}/{path}",
        USER.0,
        USER.1.replace(' ', "%20")
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Asserts that `p` holds `want` (by SHA-256).
fn same_file(p: &Path, want: &[u8], what: &str) {
    let got = std::fs::read(p).unwrap_or_else(|e| panic!("{what}: {}: {e}", p.display()));
    assert_eq!(
        (got.len(), sha256(&got)),
        (want.len(), sha256(want)),
        "{what}: {} differs",
        p.display()
    );
}

/// A file of `len` pseudo-random bytes at `p`; its bytes.
fn file_of(p: &Path, len: usize, seed: u64) -> Vec<u8> {
    let data = random_bytes(len, seed);
    std::fs::write(p, &data).unwrap();
    data
}

// ---------------------------------------------------------------------------------------
// curl

fn curl() -> Command {
    let mut c = Command::new("curl");
    c.args(["-sS", "--fail", "--max-time", "50"]);
    c
}

/// curl `--ssl-reqd --cacert` (explicit FTPS, AUTH TLS on the FTP port) with alice's
/// password: download and upload. Clear text and an unverifiable certificate are refused.
#[test]
fn curl_explicit_tls_download_and_upload() {
    if !need("curl") {
        return;
    }
    let pki = Pki::new("curl");
    let srv = ours_tls(&pki, |_| {});
    let work = tempfile::tempdir().unwrap();
    let data = file_of(&srv.path("down.bin"), 3 * 1024 * 1024 + 17, 1);
    let got = work.path().join("got.bin");
    let url = |p: &str| format!("ftp://{}/{p}", srv.addr);
    let user = format!("{}:{}", USER.0, USER.1);

    run(curl()
        .args(["--ssl-reqd", "--cacert", s(&pki.ca), "-u", &user, "-o"])
        .arg(&got)
        .arg(url("down.bin")))
    .ok(&no_log);
    same_file(&got, &data, "curl RETR under PROT P");

    let up = work.path().join("up.bin");
    let up_data = file_of(&up, 2 * 1024 * 1024 + 5, 2);
    run(curl()
        .args(["--ssl-reqd", "--cacert", s(&pki.ca), "-u", &user, "-T"])
        .arg(&up)
        .arg(url("up.bin")))
    .ok(&no_log);
    same_file(&srv.path("up.bin"), &up_data, "curl STOR under PROT P");

    // The server requires TLS: a clear login is refused before the password is sent.
    let clear = work.path().join("clear.bin");
    run(curl()
        .args(["-u", &user, "-o"])
        .arg(&clear)
        .arg(url("down.bin")))
    .fails();
    assert!(!clear.exists(), "a clear session got data");
    // curl verifies too: without the test CA (the system's roots) the handshake fails.
    let r = run(curl()
        .args(["--ssl-reqd", "-u", &user, "-o"])
        .arg(work.path().join("unverified.bin"))
        .arg(url("down.bin")))
    .fails();
    assert_eq!(
        r.status.code(),
        Some(60),
        "curl exit 60 (peer certificate cannot be authenticated): {}",
        r.stderr
    );
}

/// curl `ftps://` (implicit FTPS: TLS from the first byte) on the server's second
/// listener: download and upload.
#[test]
fn curl_implicit_ftps_download_and_upload() {
    if !need("curl") {
        return;
    }
    let pki = Pki::new("implicit");
    let implicit: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let srv = ours_tls(&pki, |c| c.implicit_tls = Some(implicit));
    let work = tempfile::tempdir().unwrap();
    let data = file_of(&srv.path("down.bin"), 1024 * 1024 + 3, 3);
    let got = work.path().join("got.bin");
    run(curl()
        .args(["--cacert", s(&pki.ca), "-o"])
        .arg(&got)
        .arg(format!("ftps://{implicit}/down.bin")))
    .ok(&no_log);
    same_file(&got, &data, "curl ftps:// RETR");

    let up = work.path().join("up.bin");
    let up_data = file_of(&up, 700_001, 4);
    run(curl()
        .args(["--cacert", s(&pki.ca), "-u"])
        .arg(format!("{}:{}", USER.0, USER.1))
        .arg("-T")
        .arg(&up)
        .arg(format!("ftps://{implicit}/up.bin")))
    .ok(&no_log);
    same_file(&srv.path("up.bin"), &up_data, "curl ftps:// STOR");
}

// ---------------------------------------------------------------------------------------
// lftp

/// One lftp session on 127.0.0.1:`port` with TLS forced on control and data and the
/// certificate checked against `ca` (name included): `get down.bin` into `w/got.bin`,
/// `put w/up.bin` as up.bin, `mirror -R w/tree tree`, then `mirror tree w/back`.
fn lftp_session(port: u16, ca: &Path, login: (&str, &str), w: &Path) -> Out {
    let script = format!(
        "set ftp:ssl-force true; set ftp:ssl-protect-data true; \
         set ssl:verify-certificate true; set ssl:check-hostname true; \
         set ssl:ca-file \"{ca}\"; set net:max-retries 1; set net:timeout 20; \
         set xfer:clobber on; \
         open -u \"{user},{pass}\" -p {port} 127.0.0.1; \
         get down.bin -o \"{w}/got.bin\"; put \"{w}/up.bin\" -o up.bin; \
         mirror -R \"{w}/tree\" tree; mirror tree \"{w}/back\"",
        ca = ca.display(),
        user = login.0,
        pass = login.1,
        w = w.display(),
    );
    run(Command::new("lftp").arg("-c").arg(&script))
}

/// lftp with `ftp:ssl-force`, `ftp:ssl-protect-data` and certificate verification on
/// (`ssl:ca-file` the test CA): get, put, and mirror a small tree up and back down.
#[test]
fn lftp_get_put_mirror_with_verification() {
    if !need("lftp") {
        return;
    }
    let pki = Pki::new("lftp");
    let srv = ours_tls(&pki, |_| {});
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let data = file_of(&srv.path("down.bin"), 2 * 1024 * 1024 + 9, 5);
    let up_data = file_of(&w.join("up.bin"), 1024 * 1024 + 1, 6);
    let tree_src = w.join("tree");
    make_tree(&tree_src);
    lftp_session(srv.addr.port(), &pki.ca, USER, w).ok(&no_log);
    same_file(&w.join("got.bin"), &data, "lftp get");
    same_file(&srv.path("up.bin"), &up_data, "lftp put");
    assert_eq!(tree(&srv.path("tree")), tree(&tree_src), "lftp mirror -R");
    assert_eq!(tree(&w.join("back")), tree(&tree_src), "lftp mirror");
}

// ---------------------------------------------------------------------------------------
// Python ftplib

/// `python3 ftplib_tls.py PORT CAFILE USER PASSWORD MODE UP DOWN`: logs in over TLS,
/// `prot_p()`, stores UP as up.bin, retrieves down.bin into DOWN, prints MLSD of the
/// login directory as JSON. MODE `reuse` resumes the control session on data connections
/// (the usual FTP_TLS subclass: stock ftplib does not), `stock` is ftplib as shipped.
/// Exit 3 (with the error) when the first data transfer is refused.
const FTPLIB_SCRIPT: &str = r#"
import ftplib, json, ssl, sys
port, cafile, user, password, mode, up, down = sys.argv[1:8]

class ReusingFTP_TLS(ftplib.FTP_TLS):
    """Data connections resume the control connection's TLS session."""
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=self.sock.session)
        return conn, size

ctx = ssl.create_default_context(cafile=cafile)
ftp = (ReusingFTP_TLS if mode == "reuse" else ftplib.FTP_TLS)(context=ctx, timeout=20)
ftp.connect("127.0.0.1", int(port))
ftp.login(user, password)
ftp.prot_p()
try:
    with open(up, "rb") as f:
        ftp.storbinary("STOR up.bin", f)
except ftplib.all_errors as e:
    print("REFUSED:", repr(e), file=sys.stderr)
    sys.exit(3)
with open(down, "wb") as f:
    ftp.retrbinary("RETR down.bin", f.write)
print(json.dumps({n: f for n, f in ftp.mlsd("", ["type", "size"])}))
ftp.quit()
"#;

/// Runs [`FTPLIB_SCRIPT`] against `addr`.
fn ftplib(work: &Path, addr: SocketAddr, ca: &Path, login: (&str, &str), mode: &str) -> Out {
    let script = work.join("ftplib_tls.py");
    std::fs::write(&script, FTPLIB_SCRIPT).unwrap();
    run(Command::new("python3")
        .arg(&script)
        .arg(addr.port().to_string())
        .arg(ca)
        .args([login.0, login.1, mode])
        .arg(work.join("up.bin"))
        .arg(work.join("got.bin")))
}

/// The MLSD facts the script printed for `name`.
fn mlsd_entry(out: &Out, name: &str) -> serde_json::Value {
    let j: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("MLSD output {:?}: {e}", out.stdout));
    j[name].clone()
}

/// `ftplib.FTP_TLS` with `prot_p()` and session resumption: upload, download, MLSD,
/// against the default server (data connections must resume the session).
#[test]
fn python_ftplib_prot_p_upload_download_mlsd() {
    if !need("python3") {
        return;
    }
    let pki = Pki::new("ftplib");
    let srv = ours_tls(&pki, |_| {});
    let work = tempfile::tempdir().unwrap();
    let data = file_of(&srv.path("down.bin"), 1024 * 1024 + 11, 7);
    let up = file_of(&work.path().join("up.bin"), 600_007, 8);
    let out = ftplib(work.path(), srv.addr, &pki.ca, USER, "reuse").ok(&no_log);
    same_file(&srv.path("up.bin"), &up, "ftplib STOR");
    same_file(&work.path().join("got.bin"), &data, "ftplib RETR");
    let e = mlsd_entry(&out, "down.bin");
    assert_eq!(e["type"], "file", "{}", out.stdout);
    assert_eq!(e["size"], data.len().to_string(), "{}", out.stdout);
    assert_eq!(mlsd_entry(&out, "up.bin")["size"], up.len().to_string());
}

/// `gridos ftpd` (the binary) with a stdout line naming its address; killed on drop.
struct FtpdBin {
    child: Child,
    addr: SocketAddr,
}

impl FtpdBin {
    fn start(args: &[&str]) -> FtpdBin {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gridos"))
            .arg("ftpd")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line.trim().rsplit(' ').next().and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            panic!("gridos ftpd printed no address: {line:?}");
        };
        FtpdBin { child, addr }
    }
}

impl Drop for FtpdBin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stock `ftplib.FTP_TLS` does not resume the session on data connections: the default
/// server refuses them, and `gridos ftpd --no-tls-data-reuse` (the binary, TLS from the
/// command line) serves it.
#[test]
fn python_stock_ftplib_needs_no_tls_data_reuse() {
    if !need("python3") {
        return;
    }
    let pki = Pki::new("stock");
    let work = tempfile::tempdir().unwrap();
    let up = file_of(&work.path().join("up.bin"), 300_001, 9);

    // Default: a PROT P data connection that does not resume is refused.
    let srv = ours_tls(&pki, |_| {});
    file_of(&srv.path("down.bin"), 1000, 10);
    let r = ftplib(work.path(), srv.addr, &pki.ca, USER, "stock").fails();
    assert_eq!(r.status.code(), Some(3), "{}", r.stderr);
    if let Ok(stored) = std::fs::read(srv.path("up.bin")) {
        assert!(stored.is_empty(), "a refused data connection stored bytes");
    }

    // --no-tls-data-reuse: served.
    let root = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    // As root the server drops to nobody in the docroot: let it read and write there.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let data = file_of(&root.path().join("down.bin"), 800_003, 11);
    std::fs::set_permissions(
        root.path().join("down.bin"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let ftpd = FtpdBin::start(&[
        "--docroot",
        s(root.path()),
        "--anonymous",
        "--anonymous-write",
        "--tls",
        "required",
        "--tls-cert",
        s(&pki.server.cert),
        "--tls-key",
        s(&pki.server.key),
        "--no-tls-data-reuse",
    ]);
    let out = ftplib(
        work.path(),
        ftpd.addr,
        &pki.ca,
        ("anonymous", "ftplib@"),
        "stock",
    )
    .ok(&no_log);
    same_file(&root.path().join("up.bin"), &up, "stock ftplib STOR");
    same_file(&work.path().join("got.bin"), &data, "stock ftplib RETR");
    assert_eq!(
        mlsd_entry(&out, "down.bin")["size"],
        data.len().to_string(),
        "{}",
        out.stdout
    );
}

// ---------------------------------------------------------------------------------------
// rclone

/// `rclone copy FROM TO` with the FTP backend on 127.0.0.1:`port` (`:ftp:PATH`), explicit
/// TLS, the certificate verified against `ca`.
fn rclone_copy(port: u16, ca: &Path, login: (&str, &str), from: &str, to: &str) -> Out {
    let obscured = run(Command::new("rclone").args(["obscure", login.1])).ok(&no_log);
    run(Command::new("rclone")
        .env("SSL_CERT_FILE", ca)
        .args(["copy", "--config", "/dev/null", "--retries", "1"])
        .args(["--create-empty-src-dirs", "--ftp-concurrency", "1"])
        .args(["--ftp-host", "127.0.0.1", "--ftp-port", &port.to_string()])
        .args(["--ftp-user", login.0, "--ftp-pass", obscured.stdout.trim()])
        .args(["--ftp-explicit-tls", from, to]))
}

/// rclone's FTP backend with `--ftp-explicit-tls`, the server's certificate verified
/// against the test CA (Go reads `SSL_CERT_FILE`): a tree copied up and back down.
///
/// `--ftp-concurrency 1`: rclone keeps one TLS session cache for all its connections, so
/// with several control connections a data connection may resume another connection's
/// session; servers that require the data connection to resume its own control session
/// (ours, proftpd, vsftpd's `require_ssl_reuse`) refuse it, as they must.
#[test]
fn rclone_explicit_tls_copy_to_and_from() {
    if !need("rclone") {
        return;
    }
    let pki = Pki::new("rclone");
    let srv = ours_tls(&pki, |_| {});
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("tree");
    make_tree(&src);
    let port = srv.addr.port();
    rclone_copy(port, &pki.ca, USER, s(&src), ":ftp:rtree").ok(&no_log);
    assert_eq!(tree(&srv.path("rtree")), tree(&src), "rclone copy up");
    let back = work.path().join("back");
    rclone_copy(port, &pki.ca, USER, ":ftp:rtree", s(&back)).ok(&no_log);
    assert_eq!(tree(&back), tree(&src), "rclone copy down");
}

// ---------------------------------------------------------------------------------------
// Our client against OpenSSL servers

/// `gridos cp ftpes://` with a password user against proftpd with mod_tls (TLSRequired,
/// data connections must resume the control session): download and upload.
#[test]
fn gridos_cp_ftpes_against_proftpd_mod_tls() {
    let pki = Pki::new("proftpd");
    let Some(p) = Proftpd::start_tls(&pki.server.cert, &pki.server.key) else {
        return;
    };
    let log = || p.log();
    let work = tempfile::tempdir().unwrap();
    let data = random_bytes(4 * 1024 * 1024 + 99, 12);
    p.put("down.bin", &data);
    let got = work.path().join("got.bin");
    let r = gridos(&[
        "cp",
        "--cacert",
        s(&pki.ca),
        &p.url("ftpes", "down.bin"),
        s(&got),
    ]);
    assert!(r.status.success(), "gridos cp: {}\n{}", r.stderr, log());
    same_file(&got, &data, "gridos cp ftpes:// from proftpd");

    let up = work.path().join("up.bin");
    let up_data = file_of(&up, 3 * 1024 * 1024 + 1, 13);
    let r = gridos(&[
        "cp",
        "--cacert",
        s(&pki.ca),
        s(&up),
        &p.url("ftpes", "up.bin"),
    ]);
    assert!(r.status.success(), "gridos cp: {}\n{}", r.stderr, log());
    same_file(
        &p.home.join("up.bin"),
        &up_data,
        "gridos cp ftpes:// to proftpd",
    );
    assert!(
        log().contains("resumed session"),
        "proftpd saw no resumed data connection:\n{}",
        log()
    );
}

/// `gridos cp ftpes://` against vsftpd with `ssl_enable=YES`, `require_ssl_reuse=YES` and
/// TLS forced on anonymous logins and data: download and upload.
#[test]
fn gridos_cp_ftpes_against_vsftpd_require_ssl_reuse() {
    let pki = Pki::new("vsftpd");
    let Some(v) = Vsftpd::start_with(&vsftpd_tls_lines(&pki.server.cert, &pki.server.key)) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let data = random_bytes(4 * 1024 * 1024 + 7, 14);
    v.put("down.bin", &data);
    let url = |p: &str| format!("ftpes://127.0.0.1:{}/pub/{p}", v.port);
    let got = work.path().join("got.bin");
    let r = gridos(&["cp", "--cacert", s(&pki.ca), &url("down.bin"), s(&got)]);
    assert!(r.status.success(), "gridos cp: {}\n{}", r.stderr, v.log());
    same_file(&got, &data, "gridos cp ftpes:// from vsftpd");

    let up = work.path().join("up.bin");
    let up_data = file_of(&up, 2 * 1024 * 1024 + 3, 15);
    let r = gridos(&["cp", "--cacert", s(&pki.ca), s(&up), &url("up.bin")]);
    assert!(r.status.success(), "gridos cp: {}\n{}", r.stderr, v.log());
    same_file(
        &v.pub_dir.join("up.bin"),
        &up_data,
        "gridos cp ftpes:// to vsftpd",
    );
    // vsftpd's debug_ssl lines: every data connection resumed the control session.
    let log = v.log();
    assert!(log.contains(", reused,"), "no resumed session in:\n{log}");
}

/// The client names why it refuses a server's certificate (vsftpd presenting one signed by
/// another CA, an expired one, one for another name), and `--insecure` connects anyway
/// and says so.
#[test]
fn gridos_cp_says_why_a_server_certificate_is_refused() {
    let pki = Pki::new("refuse");
    let stranger = Pki::new("stranger");
    let expired = pki.server_cert("expired", &["127.0.0.1", "localhost"], true);
    let wrong = pki.server_cert("wrong", &["elsewhere.invalid"], false);
    let cases: [(&CertFiles, &str); 3] = [
        (&stranger.server, "unknown issuer"),
        (&expired, "expired"),
        (&wrong, "not valid for this host name"),
    ];
    let work = tempfile::tempdir().unwrap();
    for (i, (cert, why)) in cases.into_iter().enumerate() {
        let Some(v) = Vsftpd::start_with(&vsftpd_tls_lines(&cert.cert, &cert.key)) else {
            return;
        };
        v.put("f.bin", b"secret");
        let got = work.path().join(format!("got-{i}.bin"));
        let url = format!("ftpes://127.0.0.1:{}/pub/f.bin", v.port);
        let r = gridos(&["cp", "--cacert", s(&pki.ca), &url, s(&got)]);
        let err = r.fails();
        assert!(err.contains(why), "expected {why:?} in: {err}");
        assert!(!got.exists(), "{why}: a destination was left");
        if i == 0 {
            let r = gridos(&["cp", "--insecure", &url, s(&got)]);
            assert!(r.status.success(), "--insecure: {}\n{}", r.stderr, v.log());
            assert_eq!(std::fs::read(&got).unwrap(), b"secret");
            let warn = r.stderr.to_lowercase();
            assert!(
                ["insecure", "not verified", "unverified", "verification"]
                    .iter()
                    .any(|w| warn.contains(w)),
                "--insecure said nothing about it: {}",
                r.stderr
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Our client and our server

/// `gridos cp` to and from our server over TLS: `ftpes://` in stream mode, then
/// `gridftp://` with `--tls`, MODE E over four parallel streams (each a TLS connection
/// that resumes the control session) and `--verify` (the server's checksum compared).
#[test]
fn gridos_cp_mode_e_four_streams_verify_over_tls() {
    let pki = Pki::new("modee");
    let srv = ours_tls(&pki, |_| {});
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src.bin");
    let data = file_of(&src, 6 * 1024 * 1024 + 123, 16);
    let ca = s(&pki.ca);

    let r = gridos(&[
        "cp",
        "--cacert",
        ca,
        s(&src),
        &alice_url("ftpes", srv.addr, "s.bin"),
    ]);
    r.ok();
    same_file(&srv.path("s.bin"), &data, "ftpes:// upload");
    let got = work.path().join("s.bin");
    gridos(&[
        "cp",
        "--cacert",
        ca,
        &alice_url("ftpes", srv.addr, "s.bin"),
        s(&got),
    ])
    .ok();
    same_file(&got, &data, "ftpes:// download");

    let url = format!("gridftp://{}/p4.bin", srv.addr);
    let j = gridos(&[
        "cp",
        "--json",
        "--tls",
        "--cacert",
        ca,
        "-p",
        "4",
        "--verify",
        s(&src),
        &url,
    ])
    .ok();
    assert_eq!(j["bytes"], data.len() as u64, "{j}");
    assert_eq!(j["tuning"][0]["streams"], 4, "{j}");
    assert_eq!(j["verified"], true, "{j}");
    // TLS payloads go through user space: no splice path may be claimed.
    assert!(
        j["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("TLS read-write MODE E")),
        "{j}"
    );
    same_file(&srv.path("p4.bin"), &data, "MODE E -p 4 upload over TLS");
    let got = work.path().join("p4.bin");
    let j = gridos(&[
        "cp",
        "--json",
        "--tls",
        "--cacert",
        ca,
        "-p",
        "4",
        "--verify",
        &url,
        s(&got),
    ])
    .ok();
    assert_eq!(j["tuning"][0]["streams"], 4, "{j}");
    assert_eq!(j["verified"], true, "{j}");
    same_file(&got, &data, "MODE E -p 4 download over TLS");
}

// ---------------------------------------------------------------------------------------
// Certificate logins

/// A server asking for client certificates (`tls_client_ca`) with a grid-mapfile that
/// maps Jane Doe's subject to alice.
fn ours_grid(pki: &Pki, jane: &CertFiles) -> Ours {
    let map = pki.grid_mapfile("grid-mapfile", &[(&jane.subject, USER.0)]);
    ours_tls(pki, |c| {
        c.tls_client_ca = Some(pki.ca.clone());
        c.grid_mapfile = Some(map);
    })
}

/// curl `--cert/--key` as `:globus-mapping:` with no password (the user name
/// percent-encoded in the URL, so its colons are not a password separator).
fn curl_cert(pki: &Pki, cert: &CertFiles, addr: SocketAddr, path: &str) -> Command {
    let mut c = curl();
    c.args(["--ssl-reqd", "--cacert", s(&pki.ca)])
        .args(["--cert", s(&cert.cert), "--key", s(&cert.key)])
        .arg(format!("ftp://%3Aglobus-mapping%3A@{addr}/{path}"));
    c
}

/// A client certificate whose subject is in the grid-mapfile logs in without a password
/// as the mapped user: download and upload (alice may write).
#[test]
fn client_certificate_login_through_grid_mapfile() {
    if !need("curl") {
        return;
    }
    let pki = Pki::new("gridmap");
    let jane = pki.grid_user("jane", "Jane Doe");
    assert_eq!(jane.subject, "/C=XX/O=Grid/CN=Jane Doe");
    let srv = ours_grid(&pki, &jane);
    let work = tempfile::tempdir().unwrap();
    let data = file_of(&srv.path("down.bin"), 512 * 1024 + 1, 17);
    let got = work.path().join("got.bin");
    run(curl_cert(&pki, &jane, srv.addr, "down.bin")
        .arg("-o")
        .arg(&got))
    .ok(&no_log);
    same_file(&got, &data, "certificate login RETR");
    let up = work.path().join("up.bin");
    let up_data = file_of(&up, 200_003, 18);
    run(curl_cert(&pki, &jane, srv.addr, "up.bin")
        .arg("-T")
        .arg(&up))
    .ok(&no_log);
    same_file(&srv.path("up.bin"), &up_data, "certificate login STOR");
}

/// A certificate from the trusted CA whose subject is not in the grid-mapfile is refused,
/// as are one from another CA and a `:globus-mapping:` login with no certificate at all.
#[test]
fn client_certificate_not_in_grid_mapfile_is_refused() {
    if !need("curl") {
        return;
    }
    let pki = Pki::new("refused");
    let jane = pki.grid_user("jane", "Jane Doe");
    let bob = pki.grid_user("bob", "Bob Unmapped");
    let stranger = Pki::new("elsewhere").grid_user("jane", "Jane Doe");
    let srv = ours_grid(&pki, &jane);
    let work = tempfile::tempdir().unwrap();
    file_of(&srv.path("down.bin"), 4096, 19);
    for (i, (who, cert)) in [("unmapped subject", &bob), ("untrusted CA", &stranger)]
        .into_iter()
        .enumerate()
    {
        let got = work.path().join(format!("refused-{i}.bin"));
        let r = run(curl_cert(&pki, cert, srv.addr, "down.bin")
            .arg("-o")
            .arg(&got))
        .fails();
        assert!(!got.exists(), "{who}: got data; {}", r.stderr);
    }
    let got = work.path().join("nocert.bin");
    run(curl()
        .args(["--ssl-reqd", "--cacert", s(&pki.ca), "-o"])
        .arg(&got)
        .arg(format!("ftp://%3Aglobus-mapping%3A@{}/down.bin", srv.addr)))
    .fails();
    assert!(!got.exists(), "a login without certificate got data");
    // Jane still gets in: the refusals were about the certificates.
    let ok = work.path().join("jane.bin");
    run(curl_cert(&pki, &jane, srv.addr, "down.bin")
        .arg("-o")
        .arg(&ok))
    .ok(&no_log);
    assert_eq!(std::fs::read(&ok).unwrap().len(), 4096);
}

/// Server to server between two of our servers with TLS required on both: `PROT P` on both
/// sessions, the connecting server the TLS client of the data connection (`SSCN ON`,
/// `DCAU N`). Stream mode (`ftpes://`) and MODE E over two streams with both servers'
/// checksums compared; the data goes directly, never through the client (`--no-relay`).
#[test]
fn third_party_between_our_servers_over_tls() {
    let pki = Pki::new("third-party");
    let cert = pki.server_cert("pair", &["127.0.0.2", "127.0.0.3"], false);
    let start = |ip: [u8; 4]| {
        Ours::start(|c| {
            c.listen = SocketAddr::from((ip, 0));
            c.tls = TlsPolicy::Required;
            c.tls_cert = Some(cert.cert.clone());
            c.tls_key = Some(cert.key.clone());
        })
    };
    let (a, b) = (start([127, 0, 0, 2]), start([127, 0, 0, 3]));
    let data = file_of(&a.path("src.bin"), 5_000_011, 31);
    let ca = s(&pki.ca);
    for (scheme, extra, name) in [
        ("ftpes", vec![], "stream.bin"),
        (
            "gridftp",
            vec!["--tls", "-p", "2", "--verify"],
            "mode-e.bin",
        ),
    ] {
        let (src, dst) = (
            alice_url(scheme, a.addr, "src.bin"),
            alice_url(scheme, b.addr, name),
        );
        let mut args = vec!["cp", "--json", "--no-relay", "--cacert", ca];
        args.extend(extra);
        args.extend([src.as_str(), dst.as_str()]);
        let j = gridos(&args).ok();
        assert_eq!(j["third_party"], true, "{scheme}: {j}");
        assert!(
            j["path"].as_str().is_some_and(|p| p.starts_with("TLS")),
            "{scheme}: {j}"
        );
        same_file(&b.path(name), &data, name);
    }
}

/// Our own client logs in with a client certificate: `gridos cp --cert --key` as
/// `:globus-mapping:` with no password, over GridFTP with MODE E, both ways.
#[test]
fn gridos_cp_logs_in_with_a_client_certificate() {
    let pki = Pki::new("cp-cert");
    let jane = pki.grid_user("jane", "Jane Doe");
    let srv = ours_grid(&pki, &jane);
    let work = tempfile::tempdir().unwrap();
    let data = file_of(&srv.path("down.bin"), 3 * 1024 * 1024 + 5, 41);
    let url = |p: &str| format!("gridftp://%3Aglobus-mapping%3A@{}/{p}", srv.addr);
    let cert = [
        "--cacert",
        s(&pki.ca),
        "--cert",
        s(&jane.cert),
        "--key",
        s(&jane.key),
    ];
    let got = work.path().join("got.bin");
    let mut args = vec!["cp", "--json", "--tls", "-p", "2"];
    args.extend(cert);
    let down = url("down.bin");
    let j = gridos(&[args.clone(), vec![down.as_str(), s(&got)]].concat()).ok();
    assert!(
        j["path"].as_str().is_some_and(|p| p.starts_with("TLS")),
        "{j}"
    );
    same_file(&got, &data, "certificate login, MODE E download");
    let up = url("up.bin");
    gridos(&[args, vec![s(&got), up.as_str()]].concat()).ok();
    same_file(
        &srv.path("up.bin"),
        &data,
        "certificate login, MODE E upload",
    );
    // Without the certificate the same login is refused.
    let r = gridos(&["cp", "--tls", "--cacert", s(&pki.ca), &down, s(&got)]);
    assert!(
        !r.status.success(),
        "a :globus-mapping: login without a certificate worked"
    );
}

/// Trees over TLS in both directions through GridFTP (many small files on reused MODE E
/// channels, each resuming the control session).
#[test]
fn gridos_cp_trees_over_tls() {
    let pki = Pki::new("trees");
    let srv = ours_tls(&pki, |_| {});
    let work = tempfile::tempdir().unwrap();
    let t = work.path().join("t");
    make_tree(&t);
    let ca = s(&pki.ca);
    let up = alice_url("gridftp", srv.addr, "t2");
    let j = gridos(&["cp", "-r", "--json", "--tls", "--cacert", ca, s(&t), &up]).ok();
    assert!(
        j["path"].as_str().is_some_and(|p| p.starts_with("TLS")),
        "{j}"
    );
    assert_eq!(tree(&srv.path("t2")), tree(&t));
    let back = work.path().join("back");
    gridos(&["cp", "-r", "--tls", "--cacert", ca, &up, s(&back)]).ok();
    assert_eq!(tree(&back), tree(&t));
}
