//! `gridos cp` exit codes, one real cause each (our server and vsftpd on loopback, a closed
//! port, SIGINT during a slow upload, scripted HTTP and FTP sources that send less than they
//! announce), and the help texts that document them.

mod util;

use gridos_middleware::cli::exit::{Code, table};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use util::{Ours, SlowProxy, Vsftpd, free_port, gridos, random_bytes, sha256, sha256_file};

/// Asserts that `gridos args` exits with `code`; returns its stderr.
fn exits(code: Code, args: &[&str]) -> String {
    let r = gridos(args);
    assert_eq!(
        r.status.code(),
        Some(i32::from(code.number())),
        "gridos {args:?} ({code:?}): {}",
        r.stderr
    );
    r.stderr
}

#[test]
fn usage_invalid_not_found_permission_network() {
    let s = Ours::start(|_| {});
    std::fs::write(s.path("f.bin"), random_bytes(10_000, 1)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.bin");
    let out = out.to_str().unwrap();

    // clap's own code for a command line it cannot parse.
    exits(Code::Usage, &["cp", "--no-such-flag", &s.url("f.bin"), out]);
    // A scheme this build does not serve.
    let err = exits(Code::Invalid, &["cp", "nosuch://host/f", out]);
    assert!(err.starts_with("gridos: cp: "), "{err}");
    // A directory without -r.
    std::fs::create_dir(s.path("d")).unwrap();
    let err = exits(Code::Invalid, &["cp", &s.url("d"), out]);
    assert!(err.contains("-r"), "{err}");
    // A missing remote file.
    let err = exits(Code::NotFound, &["cp", &s.url("missing.bin"), out]);
    assert!(err.contains("no such file"), "{err}");
    // A refused login (530).
    let bad = format!("ftp://alice:wrong@{}/f.bin", s.addr);
    let err = exits(Code::Permission, &["cp", &bad, out]);
    assert!(err.contains("530") && !err.contains("wrong"), "{err}");
    // Nothing listens on the port.
    let closed = format!("ftp://127.0.0.1:{}/f.bin", free_port());
    let err = exits(Code::Network, &["cp", &closed, out]);
    assert!(err.contains("refused"), "{err}");
    assert!(!std::path::Path::new(out).exists());
}

#[test]
fn checksum_mismatch_on_a_corrupt_partial() {
    let s = Ours::start(|_| {});
    let data = random_bytes(3_000_000, 2);
    std::fs::write(s.path("f.bin"), &data).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("part.bin");
    // A partial download damaged on disk: the resume appends the rest, only the checksum
    // can tell.
    let mut bad = data[..1_000_000].to_vec();
    bad[4242] ^= 0x10;
    std::fs::write(&part, &bad).unwrap();
    let p = part.to_str().unwrap();
    let err = exits(
        Code::Checksum,
        &["cp", "--resume", "--verify", &s.url("f.bin"), p],
    );
    assert!(err.contains("MD5"), "{err}");
    // The same partial, repaired, resumes to the right bytes (exit 0).
    std::fs::write(&part, &data[..1_000_000]).unwrap();
    gridos(&["cp", "-q", "--resume", "--verify", &s.url("f.bin"), p]).ok();
    assert_eq!(sha256_file(&part), sha256(&data));
}

#[test]
fn server_refusals() {
    // Read-only anonymous: our server answers 550 to STOR.
    let s = Ours::start(|c| c.anonymous_write = false);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    std::fs::write(&src, random_bytes(5_000, 3)).unwrap();
    let err = exits(
        Code::Refused,
        &["cp", src.to_str().unwrap(), &s.url("up.bin")],
    );
    assert!(err.contains("550"), "{err}");
    assert!(!s.path("up.bin").exists());

    // Anonymous sessions may not open server-to-server data connections, and --no-relay
    // forbids the way round. Distinct loopback addresses, so the connection really comes
    // from elsewhere than the client.
    let on = |ip: [u8; 4]| Ours::start(|c| c.listen = std::net::SocketAddr::from((ip, 0)));
    let (a, b) = (on([127, 0, 0, 2]), on([127, 0, 0, 3]));
    std::fs::write(a.path("src.bin"), random_bytes(100_000, 4)).unwrap();
    let err = exits(
        Code::Refused,
        &["cp", "--no-relay", &a.url("src.bin"), &b.url("dst.bin")],
    );
    assert!(err.contains("--no-relay"), "{err}");
    assert!(!b.path("dst.bin").exists());
}

#[test]
fn vsftpd_permission_invalid_options_unsupported() {
    let Some(v) = Vsftpd::start() else { return };
    v.put("f.bin", &random_bytes(20_000, 5));
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    std::fs::write(&src, random_bytes(5_000, 6)).unwrap();
    let out = dir.path().join("out.bin");
    let out = out.to_str().unwrap();

    // Upload outside pub/: vsftpd's 553.
    let err = exits(
        Code::Permission,
        &["cp", src.to_str().unwrap(), &v.url("nope.bin")],
    );
    assert!(err.contains("553"), "{err}");
    assert!(!v.root.join("nope.bin").exists());
    // Parallel streams need MODE E, which a plain FTP server lacks.
    exits(
        Code::Unsupported,
        &["cp", "-p", "2", &v.url("pub/f.bin"), out],
    );
    // --verify needs CKSM.
    let err = exits(
        Code::Unsupported,
        &["cp", "--verify", &v.url("pub/f.bin"), out],
    );
    assert!(err.contains("CKSM") || err.contains("checksum"), "{err}");
    assert!(!std::path::Path::new(out).exists());
}

#[test]
fn sigint_cancels_the_copy_with_130() {
    // vsftpd: stream mode on a passive connection, which the proxy relays (a GridFTP
    // server's MODE E data connections would bypass it).
    let Some(v) = Vsftpd::start() else { return };
    // 1 MiB/s: the 32 MiB upload would take half a minute; it is interrupted at its first
    // bytes.
    let proxy = SlowProxy::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], v.port)),
        1 << 20,
    );
    let data = random_bytes(32 << 20, 7);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.bin");
    std::fs::write(&src, &data).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridos"))
        .args(["cp", "-q", src.to_str().unwrap(), &proxy.url("pub/big.bin")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + util::RUN_DEADLINE;
    let landed = v.pub_dir.join("big.bin");
    // Bytes at the server: the copy runs, and its SIGINT waiter was started before it.
    while std::fs::metadata(&landed).map_or(0, |m| m.len()) == 0 {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
            panic!("gridos cp ended before it was interrupted: {status}: {err}");
        }
        assert!(Instant::now() < deadline, "no bytes reached the server");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gridos cp did not stop after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{status}: {err}");
    assert!(err.contains("cancelled"), "{err}");
    // Stopped short: the remote file cannot pass for the source.
    let left = std::fs::metadata(&landed).map_or(0, |m| m.len());
    assert!(
        left < data.len() as u64,
        "a cancelled upload left {left} bytes"
    );
}

#[test]
fn help_documents_exit_codes_and_examples() {
    let help = gridos(&["cp", "--help"]).stdout;
    assert!(help.contains(&table()), "{help}");
    assert!(help.contains("gridos cp -p 4 "), "{help}");
    assert!(help.contains("--resume ftp://"), "{help}");
    assert!(help.contains("URL paths:"), "{help}");
    let short = gridos(&["cp", "-h"]).stdout;
    assert!(
        short.contains("Examples:") && !short.contains("Exit codes:"),
        "{short}"
    );

    let top = gridos(&["--help"]).stdout;
    assert!(top.contains("gridos cp -p 4 gridftp://"), "{top}");
    assert!(top.contains("gridos ftpd --docroot"), "{top}");
    for sub in [
        "ftpd", "cache", "selftest", "ctl", "passwd", "node", "spawn",
    ] {
        let r = gridos(&[sub, "--help"]);
        r.ok();
        let (_, examples) = r.stdout.split_once("Examples:").unwrap_or_default();
        let examples = examples.matches(&format!("gridos {sub}")).count();
        assert!(examples >= 2, "gridos {sub} --help: {}", r.stdout);
    }

    // The README carries the same table.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    assert!(
        readme.contains(&table()),
        "README.md lacks the exit-code table"
    );
}

/// Exit 10: an HTTP server announces 1 MB and closes the connection after half of it. The
/// copy says so (the bytes announced and the bytes that came) and leaves no file behind
/// under the destination's name.
#[test]
fn a_source_that_sends_less_than_it_announced_is_incomplete() {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        // One GET (the copy may first ask with HEAD: answer each request on its own
        // connection, the GET with half its body).
        for _ in 0..2 {
            let Ok((mut s, _)) = l.accept() else { return };
            let mut req = [0u8; 4096];
            let n = s.read(&mut req).unwrap_or(0);
            let head = String::from_utf8_lossy(&req[..n]).to_string();
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
            );
            if head.starts_with("GET") {
                let _ = s.write_all(&vec![7u8; 500_000]);
                return;
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("half.bin");
    let err = exits(
        Code::Incomplete,
        &[
            "cp",
            &format!("http://{addr}/big.bin"),
            out.to_str().unwrap(),
        ],
    );
    assert!(
        err.contains("1000000") || err.contains("incomplete"),
        "{err}"
    );
    assert!(
        !out.exists(),
        "a partial download landed under the destination's name"
    );
    server.join().unwrap();
}

/// An FTP server that announces `announced` bytes (MLST, SIZE) and sends `sent` on RETR,
/// then says 226, for `sessions` control connections.
fn short_ftp_source(
    announced: u64,
    sent: usize,
    sessions: usize,
) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        for _ in 0..sessions {
            let Ok((s, _)) = l.accept() else { return };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            let _ = w.write_all(b"220 short\r\n");
            let mut data: Option<std::net::TcpListener> = None;
            let mut line = String::new();
            while {
                line.clear();
                r.read_line(&mut line).unwrap_or(0) > 0
            } {
                let verb = line.split_whitespace().next().unwrap_or("").to_uppercase();
                let reply = match verb.as_str() {
                    "USER" => "331 password\r\n".to_string(),
                    "PASS" => "230 in\r\n".to_string(),
                    "FEAT" => {
                        "211-Features:\r\n MLST type*;size*;\r\n SIZE\r\n EPSV\r\n211 End\r\n"
                            .to_string()
                    }
                    "TYPE" => "200 binary\r\n".to_string(),
                    "MLST" => {
                        format!("250-facts\r\n type=file;size={announced}; /big.bin\r\n250 End\r\n")
                    }
                    "SIZE" => format!("213 {announced}\r\n"),
                    "REST" => "350 restarting\r\n".to_string(),
                    "EPSV" => {
                        let d = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                        let port = d.local_addr().unwrap().port();
                        data = Some(d);
                        format!("229 Entering Extended Passive Mode (|||{port}|)\r\n")
                    }
                    "RETR" => {
                        let _ = w.write_all(b"150 sending\r\n");
                        if let Some(d) = data.take()
                            && let Ok((mut c, _)) = d.accept()
                        {
                            let _ = c.write_all(&vec![5u8; sent]);
                        }
                        "226 done\r\n".to_string()
                    }
                    "QUIT" => {
                        let _ = w.write_all(b"221 bye\r\n");
                        break;
                    }
                    _ => "502 not here\r\n".to_string(),
                };
                let _ = w.write_all(reply.as_bytes());
            }
        }
    });
    (addr, h)
}

#[test]
fn an_ftp_source_that_sends_less_than_mlst_said_leaves_nothing_complete() {
    const ANNOUNCED: u64 = 32 << 20;
    const SENT: usize = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    // Without --resume: the download lands through a temporary file; nothing is left.
    let (addr, server) = short_ftp_source(ANNOUNCED, SENT, 1);
    let out = dir.path().join("big.bin");
    let err = exits(
        Code::Incomplete,
        &[
            "cp",
            &format!("ftp://{addr}/big.bin"),
            out.to_str().unwrap(),
        ],
    );
    assert!(err.contains(&ANNOUNCED.to_string()), "{err}");
    assert!(!out.exists(), "a short download landed under its name");
    assert_eq!(util::names(dir.path()), Vec::<String>::new(), "{err}");
    server.join().unwrap();

    // With --resume the partial stays for the next try: its size says what arrived and the
    // blocks reserved for the announced size are given back.
    let (addr, server) = short_ftp_source(ANNOUNCED, SENT, 1);
    let err = exits(
        Code::Incomplete,
        &[
            "cp",
            "--resume",
            &format!("ftp://{addr}/big.bin"),
            out.to_str().unwrap(),
        ],
    );
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(&out).unwrap();
    assert_eq!(m.len(), SENT as u64, "{err}");
    assert!(
        m.blocks() * 512 < 4 * SENT as u64,
        "{} bytes still allocated for a {SENT}-byte partial",
        m.blocks() * 512
    );
    server.join().unwrap();
}
