//! FTPS on our server against real peers over loopback, bytes checked by SHA-256:
//! Python's ftplib (`FTP_TLS`, PROT P with a data connection that resumes the control
//! session as vsftpd-style servers require), curl (`--ssl-reqd --cacert`, `ftps://` for
//! implicit FTPS), and raw protocol probes made with `gridos_ftp::tls::ClientTls`.
//! Certificates are generated in the test (rcgen): a CA, a server certificate for
//! 127.0.0.1/localhost, client certificates with subjects. Also: the TLS policies
//! (passwords need TLS on a network address, `required`), a data connection that does not
//! resume the session, handshakes that never finish or are not TLS at all, certificate
//! logins through a grid-mapfile, and a certificate reload through the control socket.
//! Without python3 or curl the test skips with a message (fails with CI=true).

#[path = "server_support.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gridos_ftp::server::{Error, ServerConfig, TlsPolicy};
use gridos_ftp::tls::{self, ClientTls, ClientTlsOptions, DataStream, Roots};
use support::*;

const USER: (&str, &str) = ("alice", "s3cret");
const JANE: &str = "/C=XX/O=Grid/CN=Jane Doe";
const T: Duration = Duration::from_secs(20);

// ----- certificates ----------------------------------------------------------------------

/// A CA and PEM files signed by it, in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "gridos test CA");
        let ca = params.self_signed(&ca_key).unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.pem()).unwrap();
        let issuer = rcgen::Issuer::new(params, ca_key);
        let mut p = Pki {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            ca: ca_path,
            issuer,
            dir,
        };
        (p.cert, p.key) = p.server("server", "gridos test server");
        p
    }

    fn write(
        &self,
        name: &str,
        cert: &rcgen::Certificate,
        key: &rcgen::KeyPair,
    ) -> (PathBuf, PathBuf) {
        let c = self.dir.path().join(format!("{name}.pem"));
        let k = self.dir.path().join(format!("{name}.key"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    /// A server certificate for 127.0.0.1 and localhost with common name `cn`.
    fn server(&self, name: &str, cn: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        self.write(name, &cert, &key)
    }

    /// A client certificate with subject `/C=XX/O=Grid/CN=<cn>`, signed by this CA (or
    /// self-signed: not trusted).
    fn client(&self, name: &str, cn: &str, trusted: bool) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CountryName, "XX");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Grid");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = if trusted {
            params.signed_by(&key, &self.issuer).unwrap()
        } else {
            params.self_signed(&key).unwrap()
        };
        self.write(name, &cert, &key)
    }

    /// A client configuration trusting this CA, with an optional client certificate.
    fn client_tls(&self, cert: Option<&(PathBuf, PathBuf)>) -> ClientTls {
        let mut o = ClientTlsOptions::default();
        o.roots = Roots::File(self.ca.clone());
        o.cert = cert.cloned();
        ClientTls::new(&o).unwrap()
    }
}

/// A server with FTPS (the PKI's certificate), anonymous with write, the user [`USER`];
/// `f` adjusts.
fn tls_server(pki: &Pki, f: impl FnOnce(&mut ServerConfig)) -> TestServer {
    start(|c| {
        c.users = vec![(USER.0.into(), USER.1.into())];
        c.tls_cert = Some(pki.cert.clone());
        c.tls_key = Some(pki.key.clone());
        c.data_timeout = Duration::from_secs(10);
        f(c);
    })
}

// ----- a raw FTPS client ---------------------------------------------------------------------

/// A control connection, clear or TLS (`DataStream` is both), reading replies exactly.
struct Ftps {
    s: DataStream,
    tls: ClientTls,
    buf: Vec<u8>,
}

impl Ftps {
    /// Connects in clear and reads the greeting.
    fn plain(addr: SocketAddr, tls: ClientTls) -> (Ftps, (u16, String)) {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        let mut f = Ftps {
            s: DataStream::Plain(s),
            tls,
            buf: Vec::new(),
        };
        let g = f.reply();
        (f, g)
    }

    /// Connects, `AUTH TLS`, handshake.
    fn explicit(addr: SocketAddr, tls: ClientTls) -> Ftps {
        let (mut f, g) = Ftps::plain(addr, tls);
        assert_eq!(g.0, 220, "{g:?}");
        let r = f.cmd("AUTH TLS");
        assert_eq!(r.0, 234, "{r:?}");
        f.upgrade().unwrap();
        f
    }

    /// Implicit FTPS: TLS from the first byte, then the greeting.
    fn implicit(addr: SocketAddr, tls: ClientTls) -> Result<Ftps, tls::TlsError> {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        let s = tls.connect("127.0.0.1", s, T)?;
        let mut f = Ftps {
            s,
            tls,
            buf: Vec::new(),
        };
        let g = f.reply();
        assert_eq!(g.0, 220, "{g:?}");
        Ok(f)
    }

    /// The handshake after 234.
    fn upgrade(&mut self) -> Result<(), tls::TlsError> {
        let plain = std::mem::replace(&mut self.s, DataStream::Plain(dead()));
        let tcp = plain.into_plain().expect("a clear connection");
        self.s = self.tls.connect("127.0.0.1", tcp, T)?;
        Ok(())
    }

    fn peer_subject(&self) -> String {
        match &self.s {
            DataStream::Client(c) => {
                tls::subject_of(&c.conn.peer_certificates().unwrap()[0]).unwrap()
            }
            other => panic!("not TLS: {other:?}"),
        }
    }

    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l: Vec<u8> = self.buf.drain(..i + 2).collect();
                return Some(String::from_utf8_lossy(&l[..i]).into_owned());
            }
            let mut b = [0u8; 4096];
            match self.s.read(&mut b) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
            }
        }
    }

    /// One reply (code 0 if the connection closed).
    fn reply(&mut self) -> (u16, String) {
        let Some(first) = self.line() else {
            return (0, String::new());
        };
        let code: u16 = first.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        let mut text = first.clone();
        if first.as_bytes().get(3) == Some(&b'-') {
            let end = format!("{code} ");
            while let Some(l) = self.line() {
                text.push('\n');
                text.push_str(&l);
                if l.starts_with(&end) {
                    break;
                }
            }
        }
        (code, text)
    }

    fn cmd(&mut self, c: &str) -> (u16, String) {
        self.s.write_all(format!("{c}\r\n").as_bytes()).unwrap();
        self.s.flush().unwrap();
        self.reply()
    }

    /// Logs in and switches to TYPE I.
    fn login(&mut self, user: &str, pass: &str) {
        assert_eq!(self.cmd(&format!("USER {user}")).0, 331);
        let r = self.cmd(&format!("PASS {pass}"));
        assert_eq!(r.0, 230, "{r:?}");
        assert_eq!(self.cmd("TYPE I").0, 200);
    }

    fn prot_p(&mut self) {
        assert_eq!(self.cmd("PBSZ 0").0, 200);
        assert_eq!(self.cmd("PROT P").0, 200);
    }

    fn epsv(&mut self) -> SocketAddr {
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

    /// A download-direction command over EPSV; the data connection made TLS with `data`
    /// (the control's own configuration, which resumes its session, unless told otherwise)
    /// after the 150, as ftplib does. Ok(bytes) or the failing reply.
    fn fetch(&mut self, cmd: &str, data: Option<&ClientTls>) -> Result<Vec<u8>, (u16, String)> {
        self.fetch_at(None, cmd, data)
    }

    /// As [`Ftps::fetch`], with `REST rest` sent after EPSV.
    fn fetch_at(
        &mut self,
        rest: Option<u64>,
        cmd: &str,
        data: Option<&ClientTls>,
    ) -> Result<Vec<u8>, (u16, String)> {
        let a = self.epsv();
        if let Some(n) = rest {
            assert_eq!(self.cmd(&format!("REST {n}")).0, 350);
        }
        let d = TcpStream::connect(a).unwrap();
        d.set_read_timeout(Some(T)).unwrap();
        let r = self.cmd(cmd);
        if r.0 >= 400 {
            return Err(r);
        }
        let mut buf = Vec::new();
        let stream = match data {
            Some(t) => t.connect("127.0.0.1", d, T),
            None => Ok(DataStream::Plain(d)),
        };
        if let Ok(mut s) = stream {
            if let Err(e) = s.read_to_end(&mut buf) {
                eprintln!("fetch {cmd}: {e} after {} bytes", buf.len());
            }
        }
        match self.reply() {
            (226, _) => Ok(buf),
            r => Err(r),
        }
    }

    /// An upload-direction command over EPSV (`data` as in [`Ftps::fetch`]).
    fn send(
        &mut self,
        cmd: &str,
        bytes: &[u8],
        data: Option<&ClientTls>,
    ) -> Result<String, (u16, String)> {
        let a = self.epsv();
        let d = TcpStream::connect(a).unwrap();
        d.set_read_timeout(Some(T)).unwrap();
        let r = self.cmd(cmd);
        if r.0 >= 400 {
            return Err(r);
        }
        let stream = match data {
            Some(t) => t.connect("127.0.0.1", d, T),
            None => Ok(DataStream::Plain(d)),
        };
        // A server that refuses the connection may cut it at any point.
        if let Ok(mut s) = stream {
            if s.write_all(bytes).and_then(|_| s.finish()).is_ok() {
                let _ = s.read_to_end(&mut Vec::new());
            }
        }
        match self.reply() {
            (226, t) => Ok(t),
            r => Err(r),
        }
    }
}

/// A connected socket nobody uses (a placeholder while the stream is swapped).
fn dead() -> TcpStream {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    TcpStream::connect(l.local_addr().unwrap()).unwrap()
}

// ----- peers -------------------------------------------------------------------------------

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("spawn peer");
    if !out.status.success() {
        panic!(
            "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// ftplib's FTP_TLS with data connections that resume the control session (stock ftplib
/// does not pass `session=`, which servers requiring reuse refuse).
const FTPLIB: &str = r#"
import ftplib, hashlib, io, ssl, sys
port, ca, user, password, work = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]

class Reusing(ftplib.FTP_TLS):
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size

ctx = ssl.create_default_context(cafile=ca)
f = Reusing(context=ctx, timeout=30)
f.connect("127.0.0.1", port)
f.auth()
f.login(user, password)
f.prot_p()
data = open(work + "/up.bin", "rb").read()
f.storbinary("STOR up.bin", io.BytesIO(data))
# OpenSSL offers the control connection's one session on every data connection.
for i in range(10):
    got = bytearray()
    f.retrbinary("RETR up.bin", got.extend)
print("down", hashlib.sha256(got).hexdigest())
got = bytearray()
f.retrbinary("RETR up.bin", got.extend, rest=1000)
print("rest", hashlib.sha256(got).hexdigest())
f.storbinary("APPE up.bin", io.BytesIO(b"tail"))
lines = []
f.retrlines("LIST", lines.append)
print("list", "up.bin" in " ".join(lines))
print("mlsd", sorted(n for n, facts in f.mlsd() if facts.get("type") == "file"))
print("nlst", sorted(f.nlst()))
text = []
f.retrlines("RETR notes.txt", text.append)
print("ascii", text)
f.prot_c()
got = bytearray()
f.retrbinary("RETR up.bin", got.extend)
print("clear", hashlib.sha256(got).hexdigest())
f.quit()
"#;

// ----- tests -------------------------------------------------------------------------------

#[test]
fn ftplib_explicit_prot_p_upload_download_list_mlsd_and_prot_c() {
    if !need("python3") {
        return;
    }
    let pki = Pki::new();
    let s = tls_server(&pki, |_| {});
    let work = tempfile::tempdir().unwrap();
    let data = random_bytes(3 << 20, 1);
    std::fs::write(work.path().join("up.bin"), &data).unwrap();
    std::fs::write(s.root.join("notes.txt"), "one\ntwo\n").unwrap();
    let out = run(Command::new("python3").args([
        "-c",
        FTPLIB,
        &s.addr.port().to_string(),
        pki.ca.to_str().unwrap(),
        USER.0,
        USER.1,
        work.path().to_str().unwrap(),
    ]));
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut appended = data.clone();
    appended.extend_from_slice(b"tail");
    assert!(out.contains(&format!("down {}", sha(&data))), "{out}");
    assert!(
        out.contains(&format!("rest {}", sha(&data[1000..]))),
        "{out}"
    );
    assert!(out.contains("list True"), "{out}");
    assert!(out.contains("mlsd ['notes.txt', 'up.bin']"), "{out}");
    assert!(out.contains("nlst ['notes.txt', 'up.bin']"), "{out}");
    assert!(out.contains("ascii ['one', 'two']"), "{out}");
    assert!(out.contains(&format!("clear {}", sha(&appended))), "{out}");
    assert_eq!(
        sha(&std::fs::read(s.root.join("up.bin")).unwrap()),
        sha(&appended)
    );
    let stats = s.handle.stats();
    let get = |k: &str| stats.iter().find(|(n, _)| n == k).unwrap().1.clone();
    assert_eq!(get("tls_sessions"), "1");
    assert_eq!(get("data_tls_failed"), "0");
}

fn curl(pki: &Pki) -> Command {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "60", "--cacert"]);
    c.arg(&pki.ca);
    c.args(["--user", &format!("{}:{}", USER.0, USER.1)]);
    c
}

#[test]
fn curl_explicit_and_implicit_ftps() {
    if !need("curl") {
        return;
    }
    let pki = Pki::new();
    let s = tls_server(&pki, |c| {
        c.implicit_tls = Some("127.0.0.1:0".parse().unwrap())
    });
    let implicit = s.handle.implicit_tls_addr().unwrap();
    let work = tempfile::tempdir().unwrap();
    let data = random_bytes(2 << 20, 2);
    let src = work.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();

    // Explicit: AUTH TLS, PBSZ 0, PROT P (curl's --ssl-reqd).
    let url = format!("ftp://127.0.0.1:{}/", s.addr.port());
    run(curl(&pki)
        .args(["--ssl-reqd", "-T"])
        .arg(&src)
        .arg(format!("{url}e.bin")));
    assert_eq!(
        sha(&std::fs::read(s.root.join("e.bin")).unwrap()),
        sha(&data)
    );
    let out = run(curl(&pki).arg("--ssl-reqd").arg(format!("{url}e.bin")));
    assert_eq!(sha(&out.stdout), sha(&data));
    let out = run(curl(&pki).arg("--ssl-reqd").arg(&url));
    assert!(String::from_utf8_lossy(&out.stdout).contains("e.bin"));

    // Implicit: TLS from the first byte (ftps://).
    let url = format!("ftps://127.0.0.1:{}/", implicit.port());
    run(curl(&pki).arg("-T").arg(&src).arg(format!("{url}i.bin")));
    assert_eq!(
        sha(&std::fs::read(s.root.join("i.bin")).unwrap()),
        sha(&data)
    );
    let out = run(curl(&pki).arg(format!("{url}i.bin")));
    assert_eq!(sha(&out.stdout), sha(&data));
    let out = run(curl(&pki).args(["--list-only"]).arg(&url));
    let names = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        names.contains("e.bin") && names.contains("i.bin"),
        "{names}"
    );
    // A client that does not trust the certificate is refused by its own check.
    let st = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--user", "anonymous:x"])
        .arg(format!("{url}i.bin"))
        .output()
        .unwrap();
    assert!(!st.status.success());
}

#[test]
fn raw_prot_p_transfers_type_a_mode_z_and_implicit_sessions() {
    let pki = Pki::new();
    let s = tls_server(&pki, |c| {
        c.implicit_tls = Some("127.0.0.1:0".parse().unwrap())
    });
    let data = random_bytes(1 << 20, 3);
    let tls = pki.client_tls(None);
    let mut f = Ftps::explicit(s.addr, tls.clone());
    f.login(USER.0, USER.1);
    f.prot_p();
    let st = f.cmd("STAT").1;
    assert!(st.contains("TLS; data protection: Private"), "{st}");
    f.send("STOR a.bin", &data, Some(&tls)).unwrap();
    assert_eq!(sha(&f.fetch("RETR a.bin", Some(&tls)).unwrap()), sha(&data));
    // REST, then MODE Z both ways (one zlib stream on a TLS data connection).
    let tail = f.fetch_at(Some(4096), "RETR a.bin", Some(&tls)).unwrap();
    assert_eq!(sha(&tail), sha(&data[4096..]));
    assert_eq!(f.cmd("MODE Z").0, 200);
    let z = f.fetch("RETR a.bin", Some(&tls)).unwrap();
    let mut plain = Vec::new();
    flate2::read::ZlibDecoder::new(&z[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(sha(&plain), sha(&data));
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&data).unwrap();
    f.send("STOR z.bin", &enc.finish().unwrap(), Some(&tls))
        .unwrap();
    assert_eq!(
        sha(&std::fs::read(s.root.join("z.bin")).unwrap()),
        sha(&data)
    );
    assert_eq!(f.cmd("MODE S").0, 200);
    // TYPE A: LF on disk, CRLF on the wire, both ways.
    assert_eq!(f.cmd("TYPE A").0, 200);
    f.send("STOR t.txt", b"a\r\nb\r\n", Some(&tls)).unwrap();
    assert_eq!(std::fs::read(s.root.join("t.txt")).unwrap(), b"a\nb\n");
    assert_eq!(f.fetch("RETR t.txt", Some(&tls)).unwrap(), b"a\r\nb\r\n");
    // ALLO and SCKS before an upload.
    assert_eq!(f.cmd("TYPE I").0, 200);
    assert_eq!(f.cmd("ALLO 1048576").0, 200);
    f.send("STOR b.bin", &data, Some(&tls)).unwrap();
    assert_eq!(
        sha(&std::fs::read(s.root.join("b.bin")).unwrap()),
        sha(&data)
    );
    // SCKS: the stored bytes must have the announced checksum.
    assert_eq!(f.cmd(&format!("SCKS SHA256 {}", sha(&data))).0, 200);
    f.send("STOR c.bin", &data, Some(&tls)).unwrap();
    assert_eq!(f.cmd(&format!("SCKS SHA256 {}", sha(b"other"))).0, 200);
    let e = f.send("STOR d.bin", &data, Some(&tls)).unwrap_err();
    assert_eq!(e.0, 426, "{e:?}");
    // An upload that ends with a TCP close but no close_notify is accepted (vsftpd's default).
    let a = f.epsv();
    let d = TcpStream::connect(a).unwrap();
    assert_eq!(f.cmd("STOR cut.bin").0, 150);
    let mut ds = tls.connect("127.0.0.1", d, T).unwrap();
    ds.write_all(&data).unwrap();
    ds.flush().unwrap();
    ds.tcp().shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(f.reply().0, 226);
    drop(ds);
    assert_eq!(
        sha(&std::fs::read(s.root.join("cut.bin")).unwrap()),
        sha(&data)
    );
    // STOU picks a name.
    f.send("STOU", b"unique", Some(&tls)).unwrap();
    let names: Vec<_> = std::fs::read_dir(&s.root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::read(p).is_ok_and(|b| b == b"unique"))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let mlsd = f.fetch("MLSD", Some(&tls)).unwrap();
    assert!(String::from_utf8_lossy(&mlsd).contains("b.bin"));
    // ABOR while the server is blocked writing to a client that stopped reading.
    std::fs::write(s.root.join("big.bin"), random_bytes(32 << 20, 7)).unwrap();
    let a = f.epsv();
    let d = TcpStream::connect(a).unwrap();
    assert_eq!(f.cmd("RETR big.bin").0, 150);
    let mut ds = tls.connect("127.0.0.1", d, T).unwrap();
    let mut some = vec![0u8; 64 << 10];
    ds.read_exact(&mut some).unwrap();
    f.s.write_all(b"ABOR\r\n").unwrap();
    assert_eq!(f.reply().0, 426);
    assert_eq!(f.reply().0, 226);
    drop(ds);
    assert_eq!(f.cmd("NOOP").0, 200);
    // PROT C under a TLS control connection: clear data.
    assert_eq!(f.cmd("PROT C").0, 200);
    assert_eq!(sha(&f.fetch("RETR a.bin", None).unwrap()), sha(&data));
    // REIN keeps TLS but forgets PROT P.
    assert_eq!(f.cmd("REIN").0, 220);
    assert_eq!(f.cmd("PROT P").0, 503);
    assert_eq!(f.cmd("QUIT").0, 221);

    // Implicit: the session starts protected; PBSZ/PROT still choose the data protection.
    let mut f = Ftps::implicit(s.handle.implicit_tls_addr().unwrap(), tls.clone()).unwrap();
    assert_eq!(f.cmd("AUTH TLS").0, 503);
    let feat = f.cmd("FEAT").1;
    assert!(
        feat.contains(" AUTH TLS") && feat.contains(" PROT"),
        "{feat}"
    );
    f.login(USER.0, USER.1);
    f.prot_p();
    assert_eq!(sha(&f.fetch("RETR b.bin", Some(&tls)).unwrap()), sha(&data));
    assert_eq!(f.cmd("CCC").0, 534);
}

#[test]
fn passwords_before_auth_tls_are_refused_on_a_network_listen() {
    let pki = Pki::new();
    // Listening on every address, reached through 127.0.0.1.
    let s = tls_server(&pki, |c| c.listen = "0.0.0.0:0".parse().unwrap());
    let addr = SocketAddr::from(([127, 0, 0, 1], s.addr.port()));
    let (mut f, _) = Ftps::plain(addr, pki.client_tls(None));
    let r = f.cmd(&format!("USER {}", USER.0));
    assert_eq!(r.0, 530, "{r:?}");
    assert!(r.1.contains("AUTH TLS"), "{r:?}");
    assert_eq!(f.cmd(&format!("PASS {}", USER.1)).0, 503);
    // Anonymous may stay clear under the default policy.
    f.login("anonymous", "x@");
    assert_eq!(f.cmd("AUTH TLS").0, 234);
    f.upgrade().unwrap();
    f.login(USER.0, USER.1);

    // On a loopback listen passwords never leave the host: no TLS needed.
    let lo = tls_server(&pki, |_| {});
    let (mut f, _) = Ftps::plain(lo.addr, pki.client_tls(None));
    f.login(USER.0, USER.1);

    // No certificate and a network listen: the server refuses to start, saying what to do.
    let dir = tempfile::tempdir().unwrap();
    let mut c = ServerConfig::new(dir.path());
    c.listen = "0.0.0.0:0".parse().unwrap();
    c.users = vec![(USER.0.into(), USER.1.into())];
    let e = gridos_ftp::server::Server::start(c.clone()).unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    let m = e.to_string();
    assert!(
        m.contains("--tls-cert") && m.contains("tls = \"off\""),
        "{m}"
    );
    c.tls = TlsPolicy::Off;
    let h = gridos_ftp::server::Server::start(c).unwrap();
    let (mut f, _) = Ftps::plain(
        SocketAddr::from(([127, 0, 0, 1], h.local_addr().port())),
        pki.client_tls(None),
    );
    assert_eq!(f.cmd("AUTH TLS").0, 431);
    assert!(!f.cmd("FEAT").1.contains("AUTH"));
    f.login(USER.0, USER.1);

    // A bad certificate file is a clear start-up error.
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let mut c = ServerConfig::new(dir.path());
    c.tls_cert = Some(bad.clone());
    c.tls_key = Some(pki.key.clone());
    let e = gridos_ftp::server::Server::start(c).unwrap_err();
    assert!(e.to_string().contains("bad.pem"), "{e}");
}

#[test]
fn required_policy_wants_tls_for_anonymous_and_prot_p_for_data() {
    let pki = Pki::new();
    let s = tls_server(&pki, |c| c.tls = TlsPolicy::Required);
    std::fs::write(s.root.join("f.bin"), random_bytes(100_000, 4)).unwrap();
    let tls = pki.client_tls(None);
    let (mut f, _) = Ftps::plain(s.addr, tls.clone());
    let r = f.cmd("USER anonymous");
    assert_eq!(r.0, 530, "{r:?}");
    assert!(r.1.contains("AUTH TLS"), "{r:?}");
    let mut f = Ftps::explicit(s.addr, tls.clone());
    f.login("anonymous", "x@");
    assert_eq!(f.cmd("PBSZ 0").0, 200);
    assert_eq!(f.cmd("PROT C").0, 200);
    let e = f.fetch("RETR f.bin", None).unwrap_err();
    assert_eq!(e.0, 521, "{e:?}");
    assert!(e.1.contains("PROT P"), "{e:?}");
    assert_eq!(f.cmd("PROT P").0, 200);
    let got = f.fetch("RETR f.bin", Some(&tls)).unwrap();
    assert_eq!(
        sha(&got),
        sha(&std::fs::read(s.root.join("f.bin")).unwrap())
    );
    if need("curl") {
        let out = run(curl(&pki)
            .arg("--ssl-reqd")
            .arg(format!("ftp://127.0.0.1:{}/f.bin", s.addr.port())));
        assert_eq!(sha(&out.stdout), sha(&got));
    }
}

#[test]
fn a_data_connection_that_does_not_resume_the_session_is_refused() {
    let pki = Pki::new();
    let s = tls_server(&pki, |_| {});
    let data = random_bytes(200_000, 5);
    std::fs::write(s.root.join("f.bin"), &data).unwrap();
    let tls = pki.client_tls(None);
    let mut f = Ftps::explicit(s.addr, tls.clone());
    f.login(USER.0, USER.1);
    f.prot_p();
    // Another client's configuration: a full handshake, not this session's.
    let stranger = pki.client_tls(None);
    let e = f.fetch("RETR f.bin", Some(&stranger)).unwrap_err();
    assert_eq!(e.0, 425, "{e:?}");
    assert!(e.1.contains("resume"), "{e:?}");
    let e = f.send("STOR g.bin", &data, Some(&stranger)).err();
    assert_eq!(e.map(|e| e.0), Some(425));
    assert!(!s.root.join("g.bin").exists());
    // The control connection's own configuration resumes and is served, again and again:
    // each resumption uses a ticket up, and the server gives new ones to a client that asks.
    for i in 0..12 {
        f.send(&format!("STOR up{i}.bin"), &data, Some(&tls))
            .unwrap();
        assert_eq!(sha(&f.fetch("RETR f.bin", Some(&tls)).unwrap()), sha(&data));
    }
    // DCAU N (third-party transfers): the data policy alone decides.
    assert_eq!(f.cmd("DCAU N").0, 200);
    assert_eq!(
        sha(&f.fetch("RETR f.bin", Some(&pki.client_tls(None))).unwrap()),
        sha(&data)
    );
    let stats = s.handle.stats();
    let failed = stats.iter().find(|(k, _)| k == "data_tls_failed").unwrap();
    assert_eq!(failed.1, "2");
}

/// Reads until the server closes (EOF or reset); false if it is still open after [`T`].
fn cut(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(T)).unwrap();
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

#[test]
fn bad_handshakes_are_cut_while_others_are_served() {
    let pki = Pki::new();
    let s = tls_server(&pki, |c| {
        c.implicit_tls = Some("127.0.0.1:0".parse().unwrap());
        c.tls_handshake_timeout = Duration::from_secs(2);
    });
    let implicit = s.handle.implicit_tls_addr().unwrap();
    let data = random_bytes(300_000, 6);
    std::fs::write(s.root.join("f.bin"), &data).unwrap();
    // Plain FTP on the implicit port.
    let mut plain = TcpStream::connect(implicit).unwrap();
    plain.write_all(b"USER anonymous\r\n").unwrap();
    // Half a ClientHello.
    let tls = pki.client_tls(None);
    let mut conn =
        tls::rustls::ClientConnection::new(tls.config(), tls::server_name("127.0.0.1").unwrap())
            .unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    let mut truncated = TcpStream::connect(implicit).unwrap();
    truncated.write_all(&hello[..hello.len() / 2]).unwrap();
    // Connected, silent.
    let mut silent = TcpStream::connect(implicit).unwrap();
    // AUTH TLS on the explicit port, then no handshake.
    let (mut stalled, _) = Ftps::plain(s.addr, tls.clone());
    assert_eq!(stalled.cmd("AUTH TLS").0, 234);

    // Meanwhile another client is served, implicit and explicit.
    let mut f = Ftps::implicit(implicit, tls.clone()).unwrap();
    f.login("anonymous", "x@");
    f.prot_p();
    assert_eq!(sha(&f.fetch("RETR f.bin", Some(&tls)).unwrap()), sha(&data));
    let mut g = Ftps::explicit(s.addr, tls.clone());
    g.login(USER.0, USER.1);
    assert_eq!(sha(&g.fetch("RETR f.bin", None).unwrap()), sha(&data));

    assert!(cut(&mut plain), "plain bytes on the implicit port");
    assert!(cut(&mut truncated), "truncated ClientHello");
    assert!(cut(&mut silent), "silent client");
    let DataStream::Plain(mut st) = std::mem::replace(&mut stalled.s, DataStream::Plain(dead()))
    else {
        unreachable!()
    };
    assert!(cut(&mut st), "AUTH TLS without a handshake");
    // The served clients are still fine.
    assert_eq!(f.cmd("NOOP").0, 200);
    assert_eq!(g.cmd("NOOP").0, 200);
    let stats = s.handle.stats();
    let failed = stats
        .iter()
        .find(|(k, _)| k == "tls_handshakes_failed")
        .unwrap();
    assert_eq!(failed.1, "4");
}

#[test]
fn certificate_logins_through_the_grid_mapfile() {
    let pki = Pki::new();
    let jane = pki.client("jane", "Jane Doe", true);
    let eve = pki.client("eve", "Eve", true);
    let mallory = pki.client("mallory", "Jane Doe", false);
    let map = pki.dir.path().join("grid-mapfile");
    std::fs::write(&map, format!("# test\n\"{JANE}\" jdoe,jane\n")).unwrap();
    let s = tls_server(&pki, |c| {
        c.listen = "0.0.0.0:0".parse().unwrap();
        c.tls_client_ca = Some(pki.ca.clone());
        c.grid_mapfile = Some(map.clone());
    });
    let addr = SocketAddr::from(([127, 0, 0, 1], s.addr.port()));
    std::fs::write(s.root.join("f.bin"), b"grid data").unwrap();

    let jt = pki.client_tls(Some(&jane));
    let mut f = Ftps::explicit(addr, jt.clone());
    f.login(":globus-mapping:", "anything");
    assert!(f.cmd("STAT").1.contains("jdoe"));
    f.prot_p();
    assert_eq!(f.fetch("RETR f.bin", Some(&jt)).unwrap(), b"grid data");
    // A user the subject may be, without its password; another user needs the password.
    f.login("jane", "");
    assert_eq!(f.cmd("USER alice").0, 331);
    assert_eq!(f.cmd("PASS wrong").0, 530);
    f.login(USER.0, USER.1);

    // A subject the grid-mapfile does not name.
    let mut f = Ftps::explicit(addr, pki.client_tls(Some(&eve)));
    let r = f.cmd("USER :globus-mapping:");
    assert_eq!(r.0, 530, "{r:?}");
    assert!(r.1.contains("grid-mapfile"), "{r:?}");
    // No certificate at all: passwords still work over TLS.
    let mut f = Ftps::explicit(addr, pki.client_tls(None));
    assert_eq!(f.cmd("USER :globus-mapping:").0, 530);
    f.login(USER.0, USER.1);
    // A certificate the CA did not sign, with Jane's subject: the handshake fails.
    let (mut f, _) = Ftps::plain(addr, pki.client_tls(Some(&mallory)));
    assert_eq!(f.cmd("AUTH TLS").0, 234);
    let ok = f.upgrade().is_ok() && f.cmd("USER :globus-mapping:").0 == 331;
    assert!(!ok, "an untrusted client certificate logged in");

    // The grid-mapfile is reloaded live: Eve is added.
    let ctl = s.handle.set("ftp.grid_mapfile", map.to_str().unwrap());
    assert!(ctl.is_ok());
    std::fs::write(
        &map,
        format!("\"{JANE}\" jdoe\n\"/C=XX/O=Grid/CN=Eve\" eve\n"),
    )
    .unwrap();
    s.handle.reload_tls().unwrap();
    let mut f = Ftps::explicit(addr, pki.client_tls(Some(&eve)));
    f.login(":globus-mapping:", "x");
}

/// One control-socket command's answer, up to its `ok …` or `err …` line.
fn ctl(path: &Path, line: &str) -> String {
    use std::io::BufRead;
    let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
    s.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut r = std::io::BufReader::new(s);
    let mut out = String::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap() == 0 {
            break;
        }
        out.push_str(&l);
        if l.starts_with("ok") || l.starts_with("err") {
            break;
        }
    }
    out
}

#[test]
fn certificate_reload_through_the_control_socket() {
    let pki = Pki::new();
    let work = tempfile::tempdir().unwrap();
    let sock = work.path().join("ctl.sock");
    let (cert, key) = (work.path().join("cert.pem"), work.path().join("key.pem"));
    std::fs::copy(&pki.cert, &cert).unwrap();
    std::fs::copy(&pki.key, &key).unwrap();
    let s = start(|c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
        c.ctl_socket = Some(sock.clone());
        c.implicit_tls = Some("127.0.0.1:0".parse().unwrap());
    });
    let implicit = s.handle.implicit_tls_addr().unwrap();
    let tls = pki.client_tls(None);
    let mut old = Ftps::explicit(s.addr, tls.clone());
    assert_eq!(old.peer_subject(), "/CN=gridos test server");
    assert!(ctl(&sock, "get ftp.tls_subject").starts_with("/CN=gridos test server\n"));

    // Renewed in place, then tls-reload.
    let (c2, k2) = pki.server("renewed", "gridos renewed server");
    std::fs::copy(&c2, &cert).unwrap();
    std::fs::copy(&k2, &key).unwrap();
    let a = ctl(&sock, "tls-reload");
    assert!(a.starts_with("ok reloaded"), "{a}");
    assert!(a.contains("gridos renewed server"), "{a}");
    let fresh = Ftps::explicit(s.addr, tls.clone());
    assert_eq!(fresh.peer_subject(), "/CN=gridos renewed server");
    let fresh = Ftps::implicit(implicit, tls.clone()).unwrap();
    assert_eq!(fresh.peer_subject(), "/CN=gridos renewed server");
    // The running session keeps working.
    assert_eq!(old.cmd("NOOP").0, 200);

    // A broken file: refused, the running certificate stays.
    std::fs::write(&key, "garbage").unwrap();
    let a = ctl(&sock, "tls-reload");
    assert!(a.starts_with("err ") && a.contains("key.pem"), "{a}");
    let f = Ftps::explicit(s.addr, tls.clone());
    assert_eq!(f.peer_subject(), "/CN=gridos renewed server");

    // New paths set live: the first (cert alone) waits for its key, the second loads both.
    let (c3, k3) = pki.server("third", "gridos third server");
    let a = ctl(&sock, &format!("set ftp.tls_cert {}", c3.display()));
    assert!(a.starts_with("ok set, but not loaded yet"), "{a}");
    let a = ctl(&sock, &format!("set ftp.tls_key {}", k3.display()));
    assert!(a.starts_with("ok reloaded"), "{a}");
    let f = Ftps::explicit(s.addr, tls);
    assert_eq!(f.peer_subject(), "/CN=gridos third server");
    assert!(ctl(&sock, "get ftp.tls").starts_with("passwords\n"));
}

/// `(h1,h2,h3,h4,p1,p2)` of a 227 reply → the address.
fn pasv_addr(text: &str) -> SocketAddr {
    let inner = text
        .split('(')
        .nth(1)
        .and_then(|t| t.split(')').next())
        .unwrap();
    let n: Vec<u16> = inner
        .split(',')
        .map(|x| x.trim().parse().unwrap())
        .collect();
    SocketAddr::from((
        [n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8],
        n[4] * 256 + n[5],
    ))
}

#[test]
fn third_party_under_prot_p_with_sscn_and_dcau_n() {
    let pki = Pki::new();
    let on = |ip: &str| tls_server(&pki, |c| c.listen = format!("{ip}:0").parse().unwrap());
    let (a, b) = (on("127.0.0.2"), on("127.0.0.3"));
    let data = random_bytes(500_000, 8);
    std::fs::write(a.root.join("src.bin"), &data).unwrap();
    let tls = pki.client_tls(None);
    let session = |addr| {
        let mut f = Ftps::explicit(addr, tls.clone());
        f.login(USER.0, USER.1);
        f.prot_p();
        f
    };
    let (mut fa, mut fb) = (session(a.addr), session(b.addr));
    let copy = |fa: &mut Ftps, fb: &mut Ftps, dcau_on_source: bool| {
        if dcau_on_source {
            assert_eq!(fa.cmd("DCAU N").0, 200);
        }
        assert_eq!(fb.cmd("DCAU N").0, 200);
        // The destination connects and is the TLS client on the data connection.
        assert_eq!(fb.cmd("SSCN ON").1, "200 SSCN:CLIENT METHOD");
        let (code, text) = fa.cmd("PASV");
        assert_eq!(code, 227, "{text}");
        let src = pasv_addr(&text);
        let port = format!("PORT 127,0,0,2,{},{}", src.port() / 256, src.port() % 256);
        assert_eq!(fb.cmd(&port).0, 200);
        fa.s.write_all(b"RETR src.bin\r\n").unwrap();
        fb.s.write_all(b"STOR dst.bin\r\n").unwrap();
        let ra: Vec<u16> = [fa.reply().0, fa.reply().0].into();
        let rb: Vec<u16> = [fb.reply().0, fb.reply().0].into();
        (ra, rb)
    };
    // Without DCAU N the source insists on its own client's session: refused.
    let (ra, rb) = copy(&mut fa, &mut fb, false);
    assert_eq!(ra, [150, 425], "source");
    assert_ne!(rb[1], 226, "destination");
    assert!(!b.root.join("dst.bin").exists());
    let (ra, rb) = copy(&mut fa, &mut fb, true);
    assert_eq!((ra, rb), (vec![150, 226], vec![150, 226]));
    assert_eq!(
        sha(&std::fs::read(b.root.join("dst.bin")).unwrap()),
        sha(&data)
    );
}
