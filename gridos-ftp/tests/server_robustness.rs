//! Bad input, interrupted uploads, limits, STOU, live configuration and the control socket.

#[path = "server_support.rs"]
mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use gridos_ftp::server::ServerConfig;
use support::*;

#[test]
fn reply_codes_for_bad_input() {
    let s = start(|_| {});
    let (mut c, g) = Raw::connect(s.addr);
    assert_eq!(g.0, 220);
    assert_eq!(c.cmd("PWD").0, 530, "before login");
    assert_eq!(c.cmd("RETR x").0, 530, "before login");
    assert_eq!(c.cmd("XYZZY").0, 500, "unrecognised");
    assert_eq!(c.cmd("USER anonymous").0, 331);
    assert_eq!(c.cmd("PASS x").0, 230);
    assert_eq!(c.cmd("XYZZY arg").0, 500, "unrecognised");
    assert_eq!(c.cmd("SMNT /mnt").0, 502, "recognised, not implemented");
    assert_eq!(c.cmd("MODE B").0, 504, "block mode is not offered");
    // Malformed GridFTP arguments (GFD.20).
    assert_eq!(c.cmd("OPTS RETR Parallelism=x,1,1;").0, 501);
    assert_eq!(c.cmd("OPTS RETR Parallelism=0,0,0;").0, 501);
    assert_eq!(c.cmd("REST 10-5").0, 501, "range list backwards");
    assert_eq!(c.cmd("REST 0-5,x").0, 501);
    assert_eq!(c.cmd("ERET Q 0 10 f").0, 501, "unknown ERET module");
    assert_eq!(c.cmd("ERET P -1 10 f").0, 501);
    assert_eq!(c.cmd("ERET P 0").0, 501);
    assert_eq!(c.cmd("ESTO A x f").0, 501);
    assert_eq!(c.cmd("CKSM MD5 x -1 f").0, 501);
    assert_eq!(c.cmd("CKSM MD5 0").0, 501);
    assert_eq!(c.cmd("CKSM NOSUCH 0 -1 f").0, 504, "unknown algorithm");
    assert_eq!(c.cmd("SBUF lots").0, 501);
    assert_eq!(c.cmd("TREV PERF=x").0, 501);
    assert_eq!(c.cmd("PORT 1,2,3").0, 501, "bad arguments");
    assert_eq!(c.cmd("REST abc").0, 501, "bad arguments");
    assert_eq!(c.cmd("TYPE Q").0, 501, "bad arguments");
    let long = format!("NOOP {}", "x".repeat(20_000));
    assert_eq!(c.cmd(&long).0, 500, "overlong line");
    assert_eq!(c.cmd("NOOP").0, 200, "still serving after an overlong line");
    assert_eq!(c.cmd("RNTO x").0, 503, "bad sequence");
    assert_eq!(c.cmd("RETR missing").0, 425, "no data connection yet");
    let a = c.epsv();
    let _d = TcpStream::connect(a).unwrap();
    assert_eq!(c.cmd("RETR missing").0, 550);
    assert_eq!(c.cmd("SIZE missing").0, 550);
    assert_eq!(c.cmd("FEAT").0, 211);
    assert_eq!(c.cmd("SYST").0, 215);
    assert_eq!(c.cmd("HELP").0, 214);
    assert_eq!(c.cmd("STAT").0, 211);
    assert_eq!(c.cmd("ALLO 100").0, 200);
    assert_eq!(c.cmd("STRU F").0, 200);
    assert_eq!(c.cmd("MODE S").0, 200);
    assert_eq!(c.cmd("QUIT").0, 221);
}

#[test]
fn garbage_does_not_hurt_other_clients() {
    let s = start(|_| {});
    std::fs::write(s.root.join("f"), b"still here").unwrap();
    let mut others = Raw::anon(s.addr);
    for seed in 1..6u64 {
        let mut g = TcpStream::connect(s.addr).unwrap();
        let mut junk = random_bytes(200_000, seed);
        if seed % 2 == 0 {
            junk.retain(|b| *b != b'\n'); // one endless line
        }
        let _ = g.write_all(&junk);
        let _ = g.write_all(b"\r\n\xff\xfe\x00\r\nUSER \xc3\x28\r\n");
        drop(g);
    }
    let (mut c, g) = Raw::connect(s.addr);
    assert_eq!(g.0, 220);
    c.send(b"\x00\x01\x02\xff garbage\r\n");
    assert_eq!(c.reply().0, 500);
    c.send(b"USER \xff\xfe\r\n");
    assert_eq!(c.reply().0, 501);
    assert_eq!(others.retr("f").unwrap(), b"still here");
    assert_eq!(Raw::anon(s.addr).retr("f").unwrap(), b"still here");
}

#[test]
fn interrupted_stor_keeps_old_file_and_resumes_byte_identical() {
    let s = start(|_| {});
    let old = random_bytes(100_000, 1);
    let new = random_bytes(3_000_000, 2);
    std::fs::write(s.root.join("f.bin"), &old).unwrap();
    let half = 1_234_567;
    {
        let mut c = Raw::anon(s.addr);
        assert_eq!(c.cmd("TYPE I").0, 200);
        let a = c.epsv();
        let mut d = TcpStream::connect(a).unwrap();
        assert_eq!(c.cmd("STOR f.bin").0, 150);
        d.write_all(&new[..half]).unwrap();
        // The client dies: control connection first, then data.
        let _ = c.w.shutdown(std::net::Shutdown::Both);
        drop(c);
        std::thread::sleep(Duration::from_millis(200));
        drop(d);
    }
    let partial = s.root.join(gridos_ftp::server::partial_name("f.bin"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < half as u64
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        sha(&std::fs::read(s.root.join("f.bin")).unwrap()),
        sha(&old),
        "old file intact"
    );
    assert_eq!(
        std::fs::metadata(&partial).unwrap().len(),
        half as u64,
        "partial kept"
    );
    let mut c = Raw::anon(s.addr);
    assert_eq!(c.cmd("TYPE I").0, 200);
    let listing = c.list("LIST -a").unwrap();
    assert!(
        !listing.contains("gridos-part"),
        "partials are hidden: {listing}"
    );
    let (code, text) = c.cmd("SIZE f.bin");
    assert_eq!(code, 213);
    let n: usize = text[4..].trim().parse().unwrap();
    assert_eq!(n, half, "SIZE reports the partial upload");
    c.store_at("STOR", "f.bin", &new[n..], Some(n as u64))
        .unwrap();
    assert_eq!(
        sha(&std::fs::read(s.root.join("f.bin")).unwrap()),
        sha(&new),
        "resumed file"
    );
    assert!(!partial.exists(), "partial renamed over the target");
    assert_eq!(c.cmd("SIZE f.bin").0, 213);
    // REST past what was uploaded is refused, nothing changes.
    assert_eq!(
        c.store_at("STOR", "f.bin", b"x", Some(99_999_999))
            .unwrap_err(),
        504
    );
    assert_eq!(
        sha(&std::fs::read(s.root.join("f.bin")).unwrap()),
        sha(&new)
    );
}

#[test]
fn stou_and_abor() {
    let s = start(|_| {});
    let mut c = Raw::anon(s.addr);
    std::fs::write(s.root.join("name"), b"0").unwrap();
    let t = c.store("STOU", "name", b"1").unwrap();
    assert!(t.contains("FILE: name.1"), "{t}");
    let t = c.store("STOU", "", b"2").unwrap();
    assert!(t.contains("FILE: file"), "{t}");
    assert_eq!(std::fs::read(s.root.join("name")).unwrap(), b"0");
    assert_eq!(std::fs::read(s.root.join("name.1")).unwrap(), b"1");
    assert_eq!(std::fs::read(s.root.join("file")).unwrap(), b"2");
    // ABOR during an upload: 426 then 226, the target is not created.
    let a = c.epsv();
    let mut d = TcpStream::connect(a).unwrap();
    assert_eq!(c.cmd("STOR aborted").0, 150);
    d.write_all(&[7u8; 10_000]).unwrap();
    assert_eq!(c.cmd("ABOR").0, 426);
    assert_eq!(c.reply().0, 226);
    assert!(!s.root.join("aborted").exists());
    assert_eq!(c.cmd("NOOP").0, 200);
}

#[test]
fn limits_reply_421_and_425() {
    let s = start(|c| {
        c.max_clients = 2;
        c.max_per_ip = 8;
    });
    let (_a, g) = Raw::connect(s.addr);
    assert_eq!(g.0, 220);
    let (_b, g) = Raw::connect(s.addr);
    assert_eq!(g.0, 220);
    let (_c, g) = Raw::connect(s.addr);
    assert_eq!(g.0, 421, "max clients: {}", g.1);
    assert!(g.1.contains("max_clients"));
    s.handle.set("ftp.max_clients", "10").unwrap();
    s.handle.set("ftp.max_per_ip", "2").unwrap();
    let (_d, g) = Raw::connect(s.addr);
    assert_eq!(g.0, 421, "max per ip: {}", g.1);
    assert!(g.1.contains("max_per_ip"));
    drop((_a, _b));
    s.handle.set("ftp.max_per_ip", "10").unwrap();
    s.handle.set("ftp.idle_timeout", "1").unwrap();
    s.handle.set("ftp.data_timeout", "1").unwrap();
    let (mut e, g) = Raw::connect(s.addr);
    assert_eq!(g.0, 220);
    let t = Instant::now();
    assert_eq!(e.reply().0, 421, "idle timeout");
    assert!(t.elapsed() < Duration::from_secs(10));
    let mut f = Raw::anon(s.addr);
    std::fs::write(s.root.join("x"), b"x").unwrap();
    let _addr = f.epsv();
    assert_eq!(f.cmd("RETR x").0, 425, "data connection timeout");
}

#[test]
fn live_keys_control_socket_and_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ctl.sock");
    let sock2 = sock.clone();
    let s = start(move |c| {
        c.ctl_socket = Some(sock2);
        c.apply_toml("[ftp]\nmax_clients = 7\nidle_timeout = 30\npasv_ports = \"40000-40100\"\n[other]\nx = 1\n")
            .unwrap();
    });
    let ask = |line: &str| ctl(&sock, line);
    assert_eq!(ask("get ftp.max_clients"), "7\nok\n");
    assert_eq!(ask("get ftp.pasv_ports"), "40000-40100\nok\n");
    assert_eq!(ask("set ftp.threads 4"), "ok\n");
    assert_eq!(ask("get ftp.threads"), "4\nok\n");
    assert_eq!(ask("set ftp.threads 1"), "ok\n");
    assert_eq!(ask("set io.threads 3"), "ok\n");
    assert_eq!(ask("get io.threads"), "3\nok\n");
    assert_eq!(ask("set io.sndbuf_default 262144"), "ok\n");
    assert_eq!(ask("get io.sndbuf_default"), "262144\nok\n");
    assert!(ask("set ftp.threads 0").starts_with("err "));
    assert!(ask("set nosuch.key 1").starts_with("err "));
    assert!(ask("bogus").starts_with("err "));
    let docroot2 = s.dir.path().join("second");
    std::fs::create_dir(&docroot2).unwrap();
    std::fs::write(docroot2.join("only-in-second"), b"2").unwrap();
    let r = ask(&format!("set ftp.docroot {}", docroot2.display()));
    assert!(r.starts_with("ok applies to new sessions"), "{r}");
    let list = ask("list");
    assert!(
        list.contains("ftp.threads = 1\n") && list.contains("io.path = "),
        "{list}"
    );
    // Still serving after the pool resizes, from the new docroot, on the configured ports.
    let mut c = Raw::anon(s.addr);
    let a = c.epsv();
    assert!((40000..=40100).contains(&a.port()), "{a}");
    drop(TcpStream::connect(a).unwrap());
    assert_eq!(c.retr("only-in-second").unwrap(), b"2");
    let stats = ask("stats");
    for k in [
        "clients = ",
        "transfers_completed = ",
        "bytes_sent = ",
        "io.path = ",
    ] {
        assert!(stats.contains(k), "{k} missing from {stats}");
    }
    assert_eq!(ask("set io.sndbuf_default 0"), "ok\n");
    // Config-file errors are reported.
    let mut bad = ServerConfig::new("/");
    assert!(bad.apply_toml("[ftp]\nmax_clients = \"many\"\n").is_err());
    assert!(bad.apply_toml("[ftp]\nnope = 1\n").is_err());
}

#[test]
fn a_stalled_upload_is_cut_after_the_data_timeout_and_keeps_its_partial() {
    let s = start(|c| c.anonymous_write = true);
    s.handle.set("ftp.data_timeout", "1").unwrap();
    let mut c = Raw::anon(s.addr);
    assert_eq!(c.cmd("TYPE I").0, 200);
    let addr = c.epsv();
    let mut data = std::net::TcpStream::connect(addr).unwrap();
    c.send(b"STOR stalled\r\n");
    assert_eq!(c.reply().0, 150);
    data.write_all(&[7u8; 5000]).unwrap();
    // Keep the data connection open but send nothing more.
    let t = Instant::now();
    let (code, text) = c.reply();
    assert_eq!(code, 426, "stalled upload: {text}");
    assert!(t.elapsed() < Duration::from_secs(30));
    drop(data);
    // The bytes that did arrive are kept for a resume (SIZE reports the partial).
    let (code, text) = c.cmd("SIZE stalled");
    assert_eq!(code, 213, "{text}");
    assert!(text.trim().ends_with(" 5000"), "partial kept: {text}");
    // The session still works.
    assert_eq!(c.cmd("NOOP").0, 200);
}
