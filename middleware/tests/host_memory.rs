//! What copies remember of servers ([`gridos_middleware::hosts`]): the second copy from a
//! server sends its login before the greeting and plans from the first copy's rate, against
//! our server, vsftpd and globus-gridftp-server; a server that drops what came before its
//! greeting is connected to again and not sent a login ahead afterwards. Bytes checked by
//! SHA-256.

mod util;

use gridos_middleware::hosts::{HostMemory, HostMemoryMode};
use gridos_middleware::plan::CeilingSource;
use gridos_middleware::{Copy, CopyOptions, CopyReport, Url};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;
use util::{Globus, Ours, Vsftpd, random_bytes, sha256, sha256_file};

fn copy(src: &str, dst: &Path, memory: &Path) -> CopyReport {
    let mut o = CopyOptions::default();
    o.host_memory = HostMemoryMode::File(memory.to_path_buf());
    Copy::new(Url::parse(src).unwrap(), Url::Local(dst.to_path_buf()))
        .options(o)
        .run()
        .unwrap_or_else(|e| panic!("copy {src}: {e}"))
}

/// Two downloads of `src` (holding `want`): the first logs in the usual way, the second
/// sends its login before the greeting. Returns the second report.
fn twice(src: &str, want: &str, dir: &Path) -> CopyReport {
    let memory = dir.join("hosts.json");
    let first = copy(src, &dir.join("one"), &memory);
    assert_eq!(first.tuning[0].login_ahead, None);
    assert_eq!(sha256_file(&dir.join("one")), want);
    let second = copy(src, &dir.join("two"), &memory);
    assert_eq!(
        second.tuning[0].login_ahead,
        Some(true),
        "{:?}",
        second.tuning
    );
    assert_eq!(sha256_file(&dir.join("two")), want);
    second
}

#[test]
fn our_server_gets_the_login_ahead_and_a_plan_from_the_last_rate() {
    let s = Ours::start(|_| {});
    let data = random_bytes(40 << 20, 7);
    std::fs::write(s.path("big"), &data).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let second = twice(&s.url("big"), &sha256(&data), dir.path());
    let plan = &second.tuning[0];
    // 40 MiB is enough to remember the rate: the ceiling is twice it.
    assert_eq!(
        plan.link_ceiling_from,
        Some(CeilingSource::Remembered),
        "{plan:?}"
    );
    let memory = HostMemory::open(&HostMemoryMode::File(dir.path().join("hosts.json")));
    let remembered = memory
        .delivered(&s.addr.ip().to_string(), s.addr.port())
        .unwrap();
    assert!(remembered > 0);
    let facts = memory.get(&s.addr.ip().to_string(), s.addr.port()).unwrap();
    assert_eq!(facts.greeting, "gridos FTP server ready.");
    assert!(facts.login_ahead);
}

#[test]
fn vsftpd_gets_the_login_ahead() {
    let Some(v) = Vsftpd::start() else { return };
    let data = random_bytes(3_000_001, 8);
    v.put("f.bin", &data);
    let dir = tempfile::tempdir().unwrap();
    twice(&v.url("pub/f.bin"), &sha256(&data), dir.path());
}

#[test]
fn globus_gets_the_login_ahead() {
    let Some(g) = Globus::start() else { return };
    let data = random_bytes(3_000_002, 9);
    std::fs::write(g.home.join("f.bin"), &data).unwrap();
    let dir = tempfile::tempdir().unwrap();
    twice(&g.home_url("gridftp", "f.bin"), &sha256(&data), dir.path());
}

/// A proxy in front of `to` that throws away whatever the client sent before the server's
/// greeting, as a server that flushes its input when it starts would.
fn deaf_proxy(to: std::net::SocketAddr) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { return };
            std::thread::spawn(move || {
                let Ok(s) = TcpStream::connect(to) else {
                    return;
                };
                std::thread::sleep(Duration::from_millis(200));
                c.set_nonblocking(true).unwrap();
                let mut junk = [0u8; 4096];
                while matches!((&c).read(&mut junk), Ok(n) if n > 0) {}
                c.set_nonblocking(false).unwrap();
                let pump = |mut a: TcpStream, mut b: TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut a, &mut b);
                        let _ = b.shutdown(std::net::Shutdown::Write);
                    })
                };
                pump(s.try_clone().unwrap(), c.try_clone().unwrap());
                pump(c, s);
            });
        }
    });
    addr
}

#[test]
fn a_server_that_drops_early_input_is_connected_to_again_and_remembered_so() {
    // The proxy carries the control connection only: data connections go between the
    // client and the server, both on 127.0.0.1.
    let s = Ours::start(|_| {});
    let data = random_bytes(1_000_003, 10);
    std::fs::write(s.path("f"), &data).unwrap();
    let proxy = deaf_proxy(s.addr);
    let dir = tempfile::tempdir().unwrap();
    let memory = dir.path().join("hosts.json");
    let src = format!("ftp://{proxy}/f");
    // The first copy learns that the server answers a login batch: the second tries one
    // ahead, which the proxy drops, and connects again; the third does not try.
    for (n, ahead) in [(1, None), (2, Some(false)), (3, None)] {
        let out = dir.path().join(format!("f{n}"));
        let r = copy(&src, &out, &memory);
        assert_eq!(r.tuning[0].login_ahead, ahead, "copy {n}");
        assert_eq!(sha256_file(&out), sha256(&data), "copy {n}");
    }
}
