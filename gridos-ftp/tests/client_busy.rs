//! A busy server (421 greeting at its client limits, or a connection dropped before the
//! greeting) is retried by `Client::connect` within `ClientConfig::busy_retry`; what is not
//! transient (nothing listening, a 5yz greeting, a 421 after login) fails at once.

#[path = "server_support.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use gridos_ftp::client::{Client, ClientConfig, Error};
use gridos_io::CancelToken;

fn refused(s: &support::TestServer) -> u64 {
    s.handle
        .stats()
        .into_iter()
        .find(|(k, _)| k == "clients_refused")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap()
}

/// 40 clients at once against `max_per_ip = 4`: the four slots are held until the server
/// has turned clients away, then every client gets in on a retry, downloads the file and
/// checks its hash.
#[test]
fn forty_clients_share_four_slots() {
    let s = support::start(|c| {
        c.max_per_ip = 4;
        c.threads = 2;
    });
    let data = support::random_bytes(256 * 1024 + 3, 21);
    std::fs::write(s.root.join("f.bin"), &data).unwrap();
    let want = support::sha(&data);

    let holders: Vec<support::Raw> = (0..4).map(|_| support::Raw::anon(s.addr)).collect();
    let start = Arc::new(Barrier::new(41));
    let workers: Vec<_> = (0..40)
        .map(|i| {
            let (addr, start, want) = (s.addr, Arc::clone(&start), want.clone());
            std::thread::spawn(move || -> Result<(), String> {
                start.wait();
                let mut c = Client::connect(addr, ClientConfig::default())
                    .map_err(|e| format!("client {i}: connect: {e}"))?;
                c.login_anonymous()
                    .map_err(|e| format!("client {i}: login: {e}"))?;
                let out = tempfile::tempfile().unwrap();
                c.get("f.bin", &out, 0, 0)
                    .map_err(|e| format!("client {i}: get: {e}"))?;
                let mut got = Vec::new();
                let mut f = out.try_clone().unwrap();
                f.rewind().unwrap();
                f.read_to_end(&mut got).unwrap();
                if support::sha(&got) != want {
                    return Err(format!("client {i}: wrong bytes"));
                }
                c.quit().map_err(|e| format!("client {i}: quit: {e}"))
            })
        })
        .collect();
    start.wait();
    // Slots stay full until some client was told 421 (no clock involved: a condition).
    while refused(&s) == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(holders);
    let errors: Vec<String> = workers
        .into_iter()
        .filter_map(|w| w.join().unwrap().err())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(refused(&s) > 0);
}

/// A fake server that answers every connection with `greeting` (None: closes at once) and
/// counts the connections.
fn always(greeting: Option<&'static str>) -> (String, Arc<AtomicUsize>, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (n, st) = (Arc::clone(&count), Arc::clone(&stop));
    std::thread::spawn(move || {
        while !st.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut s, _)) => {
                    n.fetch_add(1, Ordering::Relaxed);
                    if let Some(g) = greeting {
                        let _ = s.write_all(g.as_bytes());
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    (addr, count, stop)
}

fn budget(d: Duration) -> ClientConfig {
    let mut c = ClientConfig::default();
    c.busy_retry = d;
    c.reply_timeout = Duration::from_secs(10);
    c
}

#[test]
fn always_busy_server_is_a_busy_error() {
    let (addr, count, stop) = always(Some("421 Too many connections from your address.\r\n"));
    let e = Client::connect(&addr, budget(Duration::from_millis(500))).unwrap_err();
    stop.store(true, Ordering::Relaxed);
    let Error::Busy { attempts, last, .. } = &e else {
        panic!("not a busy error: {e}");
    };
    assert!(matches!(**last, Error::Reply { code: 421, .. }), "{e}");
    assert_eq!(e.reply_code(), Some(421));
    assert!(e.to_string().contains("Too many connections"), "{e}");
    assert_eq!(*attempts as usize, count.load(Ordering::Relaxed));
}

#[test]
fn server_dropping_connections_is_busy_too() {
    let (addr, count, stop) = always(None);
    let e = Client::connect(&addr, budget(Duration::from_millis(300))).unwrap_err();
    stop.store(true, Ordering::Relaxed);
    let Error::Busy { attempts, last, .. } = &e else {
        panic!("not a busy error: {e}");
    };
    assert!(
        matches!(**last, Error::Closed { .. } | Error::Io { .. }),
        "{e}"
    );
    assert_eq!(*attempts as usize, count.load(Ordering::Relaxed));
}

#[test]
fn cancel_ends_the_retries() {
    let (addr, _count, stop) = always(Some("421 busy\r\n"));
    let mut cfg = budget(Duration::from_secs(600));
    let cancel = CancelToken::new();
    cfg.transfer.cancel = Some(cancel.clone());
    let t = std::thread::spawn(move || Client::connect(&addr, cfg));
    std::thread::sleep(Duration::from_millis(200));
    cancel.cancel();
    let e = t.join().unwrap().unwrap_err();
    stop.store(true, Ordering::Relaxed);
    assert!(matches!(e, Error::Cancelled { moved: 0 }), "{e}");
}

#[test]
fn what_is_not_transient_fails_at_once() {
    // Nothing listening: a refused connection, not retried (the budget would show as Busy).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = Client::connect(("127.0.0.1", port), budget(Duration::from_secs(600))).unwrap_err();
    assert!(matches!(e, Error::Io { op: "connect", .. }), "{e}");

    // A permanent greeting refusal.
    let (addr, count, stop) = always(Some("530 Not for you.\r\n"));
    let e = Client::connect(&addr, budget(Duration::from_secs(600))).unwrap_err();
    stop.store(true, Ordering::Relaxed);
    assert!(matches!(e, Error::Reply { code: 530, .. }), "{e}");
    assert_eq!(count.load(Ordering::Relaxed), 1);

    // A 421 after a failed login is the login's error, once: connect already succeeded.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        w.write_all(b"220 hi\r\n").unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        // A server without TLS: the client's automatic upgrade is refused, it goes on.
        if line.starts_with("AUTH") {
            w.write_all(b"502 AUTH not supported.\r\n").unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
        }
        assert!(line.starts_with("USER"), "{line}");
        w.write_all(b"331 pass\r\n").unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("PASS"), "{line}");
        w.write_all(b"421 Too many failed login attempts, closing.\r\n")
            .unwrap();
        l.set_nonblocking(true).unwrap();
        // No second connection comes.
        drop(w);
        l
    });
    let mut c = Client::connect(addr, budget(Duration::from_secs(600))).unwrap();
    let e = c.login("u", "wrong").unwrap_err();
    assert!(matches!(e, Error::Reply { code: 421, .. }), "{e}");
    let l = server.join().unwrap();
    assert!(l.accept().is_err(), "the client connected again");
}
