//! `gridos_middleware::http` against a real nginx on loopback (plain and TLS, with a CA the
//! test generates), plus one scripted server for what nginx never does (a connection cut
//! part-way, a Content-Range that starts elsewhere). Bytes are checked by SHA-256; nginx's
//! access log shows which requests were made.
//!
//! nginx is found through `GRIDOS_NGINX` (path to the binary), else `/usr/sbin/nginx`
//! (Debian package `nginx-light`). With `CI=true` a missing nginx fails the test; elsewhere
//! the test is skipped with a message.

mod util;

use gridos_io::CancelToken;
use gridos_middleware::http::{
    Credentials, Fetched, HttpConfig, HttpSource, HttpStat, Part, Validator,
};
use gridos_middleware::{ErrorKind, HttpUrl, Url};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use util::{free_port, sha256, sha256_file, unavailable};

/// Deterministic bytes that differ per seed (xorshift64*; unlike `util::random_bytes`,
/// every seed gives its own bytes, which the tests here were written with).
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

fn http_url(s: &str) -> HttpUrl {
    match Url::parse(s) {
        Ok(Url::Http(u)) => u,
        other => panic!("{s}: {other:?}"),
    }
}

/// A CA and a server certificate for 127.0.0.1 and localhost signed by it (PEM).
struct Pki {
    ca: String,
    cert: String,
    key: String,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "gridos test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "gridos test server");
    let cert = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca: ca.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// nginx in the foreground with a generated configuration: plain HTTP and TLS on free
/// loopback ports, one document root, locations for the cases below.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    tls_port: u16,
}

impl Nginx {
    fn start() -> Option<Nginx> {
        let bin = std::env::var_os("GRIDOS_NGINX")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"));
        if !bin.is_file() {
            return unavailable(&format!(
                "nginx not found at {} (Debian package nginx-light, or set GRIDOS_NGINX)",
                bin.display()
            ));
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in [
            "www/data",
            "www/slow",
            "www/paced",
            "www/noranges",
            "www/nohead",
            "www/private",
            "tmp",
        ] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let pki = pki();
        std::fs::write(d.join("ca.pem"), &pki.ca).unwrap();
        std::fs::write(d.join("server.pem"), &pki.cert).unwrap();
        std::fs::write(d.join("server.key"), &pki.key).unwrap();
        std::fs::write(d.join("htpasswd"), "alice:{PLAIN}s3cret\n").unwrap();
        let (port, tls_port) = (free_port(), free_port());
        let p = d.display();
        let conf = format!(
            r#"
master_process off;
worker_processes 1;
pid {p}/nginx.pid;
error_log {p}/error.log info;
events {{ worker_connections 64; }}
http {{
    log_format gridos '$request_method $uri $status conn=$connection range="$http_range" if_range="$http_if_range" user="$remote_user" sent=$body_bytes_sent';
    access_log {p}/access.log gridos;
    client_body_temp_path {p}/tmp/body;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 1000;
    server {{
        listen 127.0.0.1:{port};
        root {p}/www;
        location /slow/ {{ limit_rate 256k; }}
        location /paced/ {{ limit_rate 4k; limit_rate_after 244k; }}
        location /noranges/ {{ max_ranges 0; }}
        location /nohead/ {{ if ($request_method = HEAD) {{ return 405; }} }}
        location /private/ {{ auth_basic "gridos"; auth_basic_user_file {p}/htpasswd; }}
        location = /redirect {{ return 302 /data/f.bin; }}
        location = /redirect-relative {{ return 307 data/f.bin; }}
        location = /redirect-tls {{ return 301 https://127.0.0.1:{tls_port}/data/f.bin; }}
        location = /redirect-ftp {{ return 302 ftp://127.0.0.1/data/f.bin; }}
        location = /redirect-other-host {{ return 302 http://localhost:{port}/private/f.bin; }}
        location = /loop {{ return 302 /loop; }}
    }}
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {p}/server.pem;
        ssl_certificate_key {p}/server.key;
        root {p}/www;
    }}
}}
"#
        );
        std::fs::write(d.join("nginx.conf"), conf).unwrap();
        let mut child = Command::new(&bin)
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                let log = std::fs::read_to_string(d.join("error.log")).unwrap_or_default();
                panic!("nginx exited ({status}): {err}{log}");
            }
            let up = |port| TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up(port) && up(tls_port) {
                break;
            }
            assert!(Instant::now() < deadline, "nginx did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Nginx {
            child,
            dir,
            port,
            tls_port,
        })
    }

    /// Puts `data` at `path` under the document root.
    fn put(&self, path: &str, data: &[u8]) -> PathBuf {
        let p = self.dir.path().join("www").join(path);
        std::fs::write(&p, data).unwrap();
        p
    }

    fn url(&self, path: &str) -> HttpUrl {
        http_url(&format!("http://127.0.0.1:{}/{path}", self.port))
    }

    fn tls_url(&self, path: &str) -> HttpUrl {
        http_url(&format!("https://127.0.0.1:{}/{path}", self.tls_port))
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The access-log lines for `uri`, in order, once there are at least `n` (nginx writes
    /// a line after the reply has gone out, so it may trail the client a little).
    fn log(&self, uri: &str, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log =
                std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
            let lines: Vec<String> = log
                .lines()
                .filter(|l| l.split(' ').nth(1) == Some(uri))
                .map(str::to_string)
                .collect();
            if lines.len() >= n {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "fewer than {n} log lines for {uri}: {lines:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn source() -> HttpSource {
    HttpSource::new(HttpConfig {
        ca_file: None,
        ..HttpConfig::default()
    })
    .unwrap()
}

fn tls_source(ng: &Nginx) -> HttpSource {
    HttpSource::new(HttpConfig {
        ca_file: Some(ng.ca()),
        ..HttpConfig::default()
    })
    .unwrap()
}

fn dest() -> (tempfile::TempDir, PathBuf, File) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out");
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    (dir, path, f)
}

#[test]
fn whole_file_and_stat() {
    let Some(ng) = Nginx::start() else { return };
    let data = random_bytes(3 << 20, 1);
    ng.put("data/f.bin", &data);
    let src = source();
    let url = ng.url("data/f.bin");

    let st = src.stat(&url).unwrap();
    assert_eq!(st.size, Some(data.len() as u64));
    assert!(st.ranges);
    assert!(st.etag.as_deref().is_some_and(|e| e.starts_with('"')));
    assert!(st.modified.is_some());
    assert!(matches!(st.validator(), Some(Validator::ETag(_))));

    let (_d, path, f) = dest();
    let progress = AtomicU64::new(0);
    let got = src
        .get(&url, &f, &Part::default(), Some(&progress), None)
        .unwrap();
    assert_eq!(
        got,
        Fetched {
            bytes: data.len() as u64,
            total: Some(data.len() as u64),
            restarted: false
        }
    );
    assert_eq!(progress.load(Ordering::Relaxed), data.len() as u64);
    assert_eq!(sha256_file(&path), sha256(&data));
    let log = ng.log("/data/f.bin", 2);
    assert!(log[0].starts_with("HEAD /data/f.bin 200"), "{log:?}");
    assert!(log[1].starts_with("GET /data/f.bin 200"), "{log:?}");
    assert!(
        log[1].contains("range=\"-\""),
        "no Range on a whole GET: {log:?}"
    );
}

#[test]
fn resume_from_offset_with_if_range() {
    let Some(ng) = Nginx::start() else { return };
    let data = random_bytes(2 << 20, 2);
    ng.put("data/f.bin", &data);
    let src = source();
    let url = ng.url("data/f.bin");
    let st = src.stat(&url).unwrap();

    let (_d, path, f) = dest();
    let offset = 1_234_567u64;
    f.write_all_at_start(&data[..offset as usize]);
    let progress = AtomicU64::new(0);
    let part = Part {
        offset,
        len: None,
        if_range: st.validator(),
    };
    let got = src.get(&url, &f, &part, Some(&progress), None).unwrap();
    assert_eq!(got.bytes, data.len() as u64 - offset);
    assert!(!got.restarted);
    assert_eq!(got.total, Some(data.len() as u64));
    assert_eq!(progress.load(Ordering::Relaxed), got.bytes);
    assert_eq!(sha256_file(&path), sha256(&data));
    let log = ng.log("/data/f.bin", 2);
    let last = log.last().unwrap();
    assert!(last.starts_with("GET /data/f.bin 206"), "{log:?}");
    assert!(
        last.contains(&format!("range=\"bytes={offset}-\"")),
        "{last}"
    );
    let etag = st.etag.clone().unwrap();
    assert!(
        last.contains(etag.trim_matches('"')),
        "If-Range sent: {last}"
    );

    // The same with the modification date as validator: the date matches, so 206 again.
    f.set_len(offset).unwrap();
    let part = Part {
        offset,
        len: None,
        if_range: Some(Validator::Modified(st.modified.unwrap())),
    };
    let got = src.get(&url, &f, &part, None, None).unwrap();
    assert!(!got.restarted);
    assert_eq!(got.bytes, data.len() as u64 - offset);
    assert_eq!(sha256_file(&path), sha256(&data));
    let log = ng.log("/data/f.bin", 3);
    let last = log.last().unwrap();
    assert!(last.starts_with("GET /data/f.bin 206"), "{log:?}");
    assert!(last.contains(" GMT\""), "If-Range by date: {last}");

    // Resuming a file that is already complete asks for nothing past the end: 416, done.
    let part = Part {
        offset: data.len() as u64,
        len: None,
        if_range: st.validator(),
    };
    let got = src.get(&url, &f, &part, None, None).unwrap();
    assert_eq!((got.bytes, got.restarted), (0, false));
    assert_eq!(sha256_file(&path), sha256(&data));

    // A bounded part in the middle lands at its offset and nowhere else.
    let (_d2, path2, f2) = dest();
    let part = Part {
        offset: 1000,
        len: Some(5000),
        if_range: None,
    };
    let got = src.get(&url, &f2, &part, None, None).unwrap();
    assert_eq!(got.bytes, 5000);
    let out = std::fs::read(&path2).unwrap();
    assert_eq!(out.len(), 6000);
    assert!(out[..1000].iter().all(|&b| b == 0));
    assert_eq!(&out[1000..], &data[1000..6000]);
}

trait WriteAt {
    fn write_all_at_start(&self, data: &[u8]);
}

impl WriteAt for File {
    fn write_all_at_start(&self, data: &[u8]) {
        use std::os::unix::fs::FileExt;
        self.write_all_at(data, 0).unwrap();
    }
}

/// The resource changes between the first fetch and the resume: If-Range (entity tag or
/// date) makes the server send the new version whole, which replaces the old prefix.
#[test]
fn resume_after_change_fetches_whole_file_again() {
    let Some(ng) = Nginx::start() else { return };
    let src = source();
    let url = ng.url("data/f.bin");
    for (round, by_date) in [(0u64, false), (1, true)] {
        let old = random_bytes(1 << 20, 10 + round);
        let p = ng.put("data/f.bin", &old);
        File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        let mut st = src.stat(&url).unwrap();
        if by_date {
            st.etag = None;
        }
        let validator = st.validator().unwrap();
        assert_eq!(matches!(validator, Validator::Modified(_)), by_date);

        // What an interrupted first transfer left: all of the old version.
        let (_d, path, f) = dest();
        f.write_all_at_start(&old);

        // A new, shorter version with a new modification time.
        let new = random_bytes(700_000, 20 + round);
        ng.put("data/f.bin", &new);
        let part = Part {
            offset: 500_000,
            len: None,
            if_range: Some(validator),
        };
        let progress = AtomicU64::new(0);
        let got = src.get(&url, &f, &part, Some(&progress), None).unwrap();
        assert!(got.restarted, "round {round}");
        assert_eq!(got.bytes, new.len() as u64);
        assert_eq!(got.total, Some(new.len() as u64));
        assert_eq!(sha256_file(&path), sha256(&new), "round {round}");
        let log = ng.log("/data/f.bin", 2 * round as usize + 2);
        let last = log.last().unwrap();
        assert!(last.starts_with("GET /data/f.bin 200"), "{last}");
        assert!(last.contains("range=\"bytes=500000-\""), "{last}");
        assert!(!last.contains("if_range=\"-\""), "{last}");
    }
}

/// A server that ignores Range (nginx `max_ranges 0`): a resume gets the whole file,
/// written from offset 0; a bounded part is refused; parallel falls back to one GET.
#[test]
fn server_ignoring_ranges() {
    let Some(ng) = Nginx::start() else { return };
    let data = random_bytes(3 << 20, 3);
    ng.put("noranges/f.bin", &data);
    let src = source();
    let url = ng.url("noranges/f.bin");
    let st = src.stat(&url).unwrap();
    assert_eq!(st.size, Some(data.len() as u64));

    let (_d, path, f) = dest();
    f.write_all_at_start(&data[..100_000]);
    let part = Part {
        offset: 100_000,
        len: None,
        if_range: st.validator(),
    };
    let got = src.get(&url, &f, &part, None, None).unwrap();
    assert!(got.restarted);
    assert_eq!(got.bytes, data.len() as u64);
    assert_eq!(sha256_file(&path), sha256(&data));

    let (_d2, path2, f2) = dest();
    let part = Part {
        offset: 100_000,
        len: Some(1000),
        if_range: None,
    };
    let e = src.get(&url, &f2, &part, None, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert_eq!(
        std::fs::metadata(&path2).unwrap().len(),
        0,
        "nothing written"
    );

    // Even told that ranges work, get_parallel ends with the right bytes.
    let claimed = HttpStat {
        ranges: true,
        ..st.clone()
    };
    let (_d3, path3, f3) = dest();
    let progress = AtomicU64::new(0);
    let n = src
        .get_parallel(&url, &f3, &claimed, 4, Some(&progress), None)
        .unwrap();
    assert_eq!(n, data.len() as u64);
    assert_eq!(sha256_file(&path3), sha256(&data));
    assert_eq!(progress.load(Ordering::Relaxed), data.len() as u64);
}

#[test]
fn parallel_ranges() {
    let Some(ng) = Nginx::start() else { return };
    let data = random_bytes((8 << 20) + 12345, 4);
    ng.put("data/f.bin", &data);
    let src = source();
    let url = ng.url("data/f.bin");
    let st = src.stat(&url).unwrap();
    let (_d, path, f) = dest();
    let progress = AtomicU64::new(0);
    let n = src
        .get_parallel(&url, &f, &st, 4, Some(&progress), None)
        .unwrap();
    assert_eq!(n, data.len() as u64);
    assert_eq!(progress.load(Ordering::Relaxed), n);
    assert_eq!(sha256_file(&path), sha256(&data));

    let gets: Vec<String> = ng
        .log("/data/f.bin", 5)
        .into_iter()
        .filter(|l| l.starts_with("GET"))
        .collect();
    assert_eq!(gets.len(), 4, "{gets:?}");
    assert!(gets.iter().all(|l| l.contains(" 206 ")), "{gets:?}");
    let field = |l: &str, name: &str| {
        l.split(' ')
            .find_map(|w| w.strip_prefix(name))
            .unwrap()
            .to_string()
    };
    let sent: u64 = gets
        .iter()
        .map(|l| field(l, "sent=").parse::<u64>().unwrap())
        .sum();
    assert_eq!(sent, data.len() as u64, "each byte sent once");

    // Where each stream takes long enough that none ends before the others start (the
    // last 12 KiB of each 256 KiB part at 4 KiB/s: one to two seconds), each has its own
    // connection.
    let data = random_bytes(1 << 20, 40);
    ng.put("paced/p.bin", &data);
    let url = ng.url("paced/p.bin");
    let st = src.stat(&url).unwrap();
    let (_d, path, f) = dest();
    src.get_parallel(&url, &f, &st, 4, None, None).unwrap();
    assert_eq!(sha256_file(&path), sha256(&data));
    let gets: Vec<String> = ng
        .log("/paced/p.bin", 5)
        .into_iter()
        .filter(|l| l.starts_with("GET"))
        .collect();
    let mut conns: Vec<String> = gets.iter().map(|l| field(l, "conn=")).collect();
    conns.sort();
    conns.dedup();
    assert_eq!(conns.len(), 4, "one connection per stream: {gets:?}");
}

#[test]
fn https_with_private_ca() {
    let Some(ng) = Nginx::start() else { return };
    let data = random_bytes((5 << 20) + 7, 5);
    ng.put("data/f.bin", &data);
    let url = ng.tls_url("data/f.bin");
    let src = tls_source(&ng);
    let st = src.stat(&url).unwrap();
    assert_eq!(st.size, Some(data.len() as u64));
    let (_d, path, f) = dest();
    let n = src.get_parallel(&url, &f, &st, 4, None, None).unwrap();
    assert_eq!(n, data.len() as u64);
    assert_eq!(sha256_file(&path), sha256(&data));
    let (_d, path, f) = dest();
    src.get(&url, &f, &Part::default(), None, None).unwrap();
    assert_eq!(sha256_file(&path), sha256(&data));

    // Without the CA the server is not trusted, and nothing is written.
    let (_d, path, f) = dest();
    let e = source()
        .get(&url, &f, &Part::default(), None, None)
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Protocol | ErrorKind::Network),
        "{e:?}"
    );
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);

    // A CA file that holds no certificate is refused when the source is made.
    let bad = ng.dir.path().join("bad.pem");
    std::fs::write(&bad, "not a certificate\n").unwrap();
    let e = HttpSource::new(HttpConfig {
        ca_file: Some(bad),
        ..HttpConfig::default()
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

#[test]
fn not_found_and_head_refused() {
    let Some(ng) = Nginx::start() else { return };
    let src = source();
    let url = ng.url("data/missing.bin");
    let e = src.stat(&url).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Http(404), "{e}");
    let (_d, path, f) = dest();
    let e = src.get(&url, &f, &Part::default(), None, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Http(404), "{e}");
    assert!(e.to_string().contains("404"), "{e}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);

    // HEAD refused with 405: stat asks for the first byte instead.
    let data = random_bytes(300_000, 6);
    ng.put("nohead/f.bin", &data);
    let st = src.stat(&ng.url("nohead/f.bin")).unwrap();
    assert_eq!(st.size, Some(data.len() as u64));
    assert!(st.ranges && st.etag.is_some() && st.modified.is_some());
    let log = ng.log("/nohead/f.bin", 2);
    assert!(log[0].starts_with("HEAD /nohead/f.bin 405"), "{log:?}");
    assert!(log[1].starts_with("GET /nohead/f.bin 206"), "{log:?}");
    assert!(log[1].contains("range=\"bytes=0-0\""), "{log:?}");
}

#[test]
fn redirects() {
    let Some(ng) = Nginx::start() else { return };
    let data = random_bytes(600_000, 7);
    ng.put("data/f.bin", &data);
    let src = tls_source(&ng);
    for path in ["redirect", "redirect-relative", "redirect-tls"] {
        let url = ng.url(path);
        let st = src.stat(&url).unwrap();
        assert_eq!(st.size, Some(data.len() as u64), "{path}");
        let (_d, out, f) = dest();
        let n = src.get_parallel(&url, &f, &st, 2, None, None).unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(sha256_file(&out), sha256(&data), "{path}");
    }
    let (_d, out, f) = dest();
    let e = src
        .get(&ng.url("redirect-ftp"), &f, &Part::default(), None, None)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("ftp://"), "{e}");
    let e = src.stat(&ng.url("loop")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    assert!(e.to_string().contains("redirects"), "{e}");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 0);
    assert_eq!(
        ng.log("/loop", 11).len(),
        11,
        "the first request and ten redirects"
    );
}

#[test]
fn basic_auth_from_url_credentials() {
    let Some(ng) = Nginx::start() else { return };
    let data = random_bytes(1 << 20, 8);
    ng.put("private/f.bin", &data);
    let url = ng.url("private/f.bin");
    let e = source().stat(&url).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Http(401), "{e}");

    let text = format!("http://alice:s3cret@127.0.0.1:{}/private/f.bin", ng.port);
    let parsed = http_url(&text);
    assert!(!parsed.url.contains("s3cret"));
    let creds = Credentials::from_url(&text).unwrap().unwrap();
    let src = HttpSource::new(HttpConfig {
        credentials: vec![creds],
        ..HttpConfig::default()
    })
    .unwrap();
    let st = src.stat(&parsed).unwrap();
    let (_d, out, f) = dest();
    src.get_parallel(&parsed, &f, &st, 2, None, None).unwrap();
    assert_eq!(sha256_file(&out), sha256(&data));
    let log = ng.log("/private/f.bin", 4);
    assert!(log[0].contains(" 401 "), "{log:?}");
    assert!(
        log[1..].iter().all(|l| l.contains("user=\"alice\"")),
        "{log:?}"
    );

    // The credentials are for 127.0.0.1: a redirect to another host name does not get them.
    let e = src.stat(&ng.url("redirect-other-host")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Http(401), "{e}");

    let wrong = format!("http://alice:nope@127.0.0.1:{}/private/f.bin", ng.port);
    let src = HttpSource::new(HttpConfig {
        credentials: vec![Credentials::from_url(&wrong).unwrap().unwrap()],
        ..HttpConfig::default()
    })
    .unwrap();
    assert_eq!(src.stat(&parsed).unwrap_err().kind(), ErrorKind::Http(401));
}

#[test]
fn cancel() {
    let Some(ng) = Nginx::start() else { return };
    let data = random_bytes(4 << 20, 9);
    ng.put("slow/f.bin", &data);
    let src = source();
    let url = ng.url("slow/f.bin");

    let token = CancelToken::new();
    token.cancel();
    let (_d, path, f) = dest();
    let e = src
        .get(&url, &f, &Part::default(), None, Some(&token))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled);

    // Cancelled while the bytes trickle in (nginx limit_rate 256k: 16 s for all of it).
    let st = src.stat(&url).unwrap();
    let log = ng.log("/slow/f.bin", 1);
    assert!(log[0].starts_with("HEAD"), "no GET once cancelled: {log:?}");
    for parallel in [false, true] {
        let token = CancelToken::new();
        let progress = AtomicU64::new(0);
        let r = std::thread::scope(|s| {
            let t = s.spawn(|| {
                if parallel {
                    src.get_parallel(&url, &f, &st, 4, Some(&progress), Some(&token))
                } else {
                    src.get(&url, &f, &Part::default(), Some(&progress), Some(&token))
                        .map(|g| g.bytes)
                }
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            while progress.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            token.cancel();
            t.join().unwrap()
        });
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
        let done = progress.load(Ordering::Relaxed);
        assert!(done > 0 && done < data.len() as u64, "{done}");
        if !parallel {
            // What landed is the resource's own prefix.
            let out = std::fs::read(&path).unwrap();
            assert_eq!(out.len() as u64, done);
            assert_eq!(sha256(&out), sha256(&data[..out.len()]));
        }
    }
}

/// A scripted server for one request: reads the request head, answers with `head` and
/// `body`, then closes the connection. Returns the URL and the request it saw.
fn one_shot(head: String, body: Vec<u8>) -> (HttpUrl, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut request = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                break;
            }
            request.push_str(&line);
        }
        s.write_all(head.as_bytes()).unwrap();
        // The client may give up early (a bad Content-Range): a failed write is fine.
        let _ = s.write_all(&body);
        let _ = s.shutdown(std::net::Shutdown::Both);
        request
    });
    (http_url(&format!("http://127.0.0.1:{port}/f.bin")), t)
}

/// A connection cut part-way (whole body and ranged resume) fails as Incomplete or
/// Network with only correct bytes on disk; a Content-Range that starts elsewhere than
/// asked is refused before anything is written.
#[test]
fn connection_cut_part_way() {
    let data = random_bytes(100_000, 11);
    let src = source();
    let from_10000 = Part {
        offset: 10_000,
        ..Part::default()
    };

    let (url, t) = one_shot(
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", data.len()),
        data[..30_000].to_vec(),
    );
    let (_d, path, f) = dest();
    let progress = AtomicU64::new(0);
    let e = src
        .get(&url, &f, &Part::default(), Some(&progress), None)
        .unwrap_err();
    t.join().unwrap();
    assert_eq!(e.kind(), ErrorKind::Incomplete, "{e:?}");
    assert!(e.to_string().contains("30000 of 100000"), "{e}");
    let out = std::fs::read(&path).unwrap();
    assert!(out.len() <= 30_000);
    assert_eq!(out.len() as u64, progress.load(Ordering::Relaxed));
    assert_eq!(out, data[..out.len()]);

    let (url, t) = one_shot(
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 10000-99999/100000\r\nContent-Length: 90000\r\n\r\n".to_string(),
        data[10_000..40_000].to_vec(),
    );
    let (_d, path, f) = dest();
    let e = src.get(&url, &f, &from_10000, None, None).unwrap_err();
    let request = t.join().unwrap();
    assert!(
        request.to_ascii_lowercase().contains("range: bytes=10000-"),
        "{request}"
    );
    assert!(
        matches!(e.kind(), ErrorKind::Incomplete | ErrorKind::Network),
        "{e:?}"
    );
    let out = std::fs::read(&path).unwrap();
    assert!(out.len() <= 40_000);
    assert!(
        out[..10_000].iter().all(|&b| b == 0),
        "nothing before the offset"
    );
    assert_eq!(out[10_000..], data[10_000..out.len()]);

    // A resume answered with a new version whole (200), cut part-way: the file keeps only
    // the new version's first bytes, nothing of the old one behind them.
    let old = random_bytes(100_000, 12);
    let (url, t) = one_shot(
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", data.len()),
        data[..30_000].to_vec(),
    );
    let (_d, path, f) = dest();
    f.write_all_at_start(&old);
    let part = Part {
        offset: 50_000,
        len: None,
        if_range: Some(Validator::ETag("\"old\"".into())),
    };
    let e = src.get(&url, &f, &part, None, None).unwrap_err();
    let request = t.join().unwrap().to_ascii_lowercase();
    assert!(request.contains("if-range: \"old\""), "{request}");
    assert_eq!(e.kind(), ErrorKind::Incomplete, "{e:?}");
    let out = std::fs::read(&path).unwrap();
    assert!(out.len() <= 30_000);
    assert_eq!(out, data[..out.len()]);

    // Asked for bytes from 10000, sent from 0: refused, nothing written.
    let (url, t) = one_shot(
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-99999/100000\r\nContent-Length: 100000\r\n\r\n".to_string(),
        data.clone(),
    );
    let (_d, path, f) = dest();
    let e = src.get(&url, &f, &from_10000, None, None).unwrap_err();
    t.join().unwrap();
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

/// `gridos cp` with http(s):// sources: whole files, four ranged streams, a resume, https
/// with a private CA (GRIDOS_CA_FILE), into a directory; an http(s):// destination refused.
#[test]
fn gridos_cp_from_http_and_https() {
    let Some(ng) = Nginx::start() else { return };
    let data = random_bytes((3 << 20) + 777, 9);
    ng.put("data/f.bin", &data);
    let (dir, _p, _f) = dest();
    let cp = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gridos"))
            .arg("cp")
            .args(args)
            .env("GRIDOS_CA_FILE", ng.ca())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let plain = ng.url("data/f.bin").url;
    let tls = ng.tls_url("data/f.bin").url;
    for (i, (src, extra)) in [
        (&plain, vec![]),
        (&plain, vec!["-p", "4"]),
        (&tls, vec!["-p", "2"]),
    ]
    .into_iter()
    .enumerate()
    {
        let d = dir.path().join(format!("out{i}.bin"));
        let mut args = vec!["--json"];
        args.extend(extra);
        args.extend([src.as_str(), d.to_str().unwrap()]);
        let (ok, stdout, stderr) = cp(&args);
        assert!(ok, "{src}: {stderr}");
        let j: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(j["bytes"], data.len() as u64);
        assert_eq!(sha256_file(&d), sha256(&data), "{src}");
    }
    // Resume: a partial file of the first 1 MB completes with the rest only.
    let d = dir.path().join("partial.bin");
    std::fs::write(&d, &data[..1_000_000]).unwrap();
    let (ok, stdout, stderr) = cp(&["--json", "--resume", &plain, d.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let j: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(j["bytes"], (data.len() - 1_000_000) as u64);
    assert_eq!(sha256_file(&d), sha256(&data));
    // Into a directory: the URL's last segment names the file.
    let (ok, _, stderr) = cp(&["-q", &plain, dir.path().to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert_eq!(sha256_file(&dir.path().join("f.bin")), sha256(&data));
    // Not a destination; a missing source is a clear 404.
    let (ok, _, stderr) = cp(&[d.to_str().unwrap(), &plain]);
    assert!(!ok && stderr.contains("sources only"), "{stderr}");
    let (ok, _, stderr) = cp(&[&ng.url("nope.bin").url, d.to_str().unwrap()]);
    assert!(!ok && stderr.contains("404"), "{stderr}");
}
