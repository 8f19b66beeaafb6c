//! Helpers for the server tests: an in-process server on loopback, a raw FTP client that
//! shows exact reply codes, hashing and peer detection. Included by the other `server_*`
//! tests with `#[path]`; compiled alone it only checks itself.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

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
    let mut x = seed | 1;
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

#[test]
fn support_server_answers() {
    let s = start(|_| {});
    let mut c = Raw::anon(s.addr);
    assert_eq!(c.cmd("NOOP").0, 200);
    assert_eq!(random_bytes(4, 1), random_bytes(4, 1));
}
