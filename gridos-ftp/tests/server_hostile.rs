//! Hostile clients: hundreds of slow clients (silent, trickling a line byte by byte, never
//! reading their replies, never reading a data connection) held against one server while a
//! normal client (Python's ftplib) downloads a file; all of them cut by the per-session
//! timeouts afterwards. And the login throttle: wrong passwords at line rate get slower,
//! then 421; an exempt address still logs in; the ban ends.

#[path = "server_support.rs"]
mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// Raises RLIMIT_NOFILE to its hard limit: the test holds two ends of ~500 connections in
/// one process.
fn raise_nofile(want: u64) {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut l), 0);
        if l.rlim_cur < want {
            // Root may raise the hard limit too; else up to it.
            let both = libc::rlimit {
                rlim_cur: want,
                rlim_max: want.max(l.rlim_max),
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &both) != 0 {
                l.rlim_cur = want.min(l.rlim_max);
                assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &l), 0);
            }
        }
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut l), 0);
    }
    assert!(l.rlim_cur >= 2048, "RLIMIT_NOFILE {} too low", l.rlim_cur);
}

/// A connection with a small receive buffer, so a client that does not read stops the
/// server's writes early.
fn small_rcvbuf(addr: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(&addr.into()).unwrap();
    s.into()
}

/// Reads what is there without blocking: `true` once the peer has closed (EOF or reset).
fn closed(s: &mut TcpStream, seen: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => {
                if seen.len() < 1 << 16 {
                    seen.extend_from_slice(&buf[..n]);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Clients that never read and ask for megabytes of replies each.
const N_FLOOD: usize = 4;

const DOWNLOAD: &str = r#"
import ftplib, hashlib, sys, time
t = time.monotonic()
f = ftplib.FTP()
f.connect("127.0.0.1", int(sys.argv[1]), timeout=30)
f.login("anonymous", "py@")
h = hashlib.sha256()
f.retrbinary("RETR good.bin", h.update)
f.quit()
print(h.hexdigest(), round(time.monotonic() - t, 3))
"#;

/// Puts `good.bin` (2 MiB from `seed`, returned) and `big.bin` (1 GiB, larger than any socket
/// buffer; sparse, so it costs no disk) in `root`.
fn serve_files(root: &std::path::Path, seed: u64) -> Vec<u8> {
    let good = random_bytes(2 << 20, seed);
    std::fs::write(root.join("good.bin"), &good).unwrap();
    std::fs::File::create(root.join("big.bin"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    good
}

/// An anonymous session that RETRs big.bin and never reads the data connection (returned
/// with a small receive buffer, so the server's writes stop early).
fn stalled_retr(addr: SocketAddr) -> (Raw, TcpStream) {
    let mut raw = Raw::anon(addr);
    assert_eq!(raw.cmd("TYPE I").0, 200);
    let a = raw.epsv();
    let d = small_rcvbuf(a);
    raw.send(b"RETR big.bin\r\n");
    assert_eq!(raw.reply().0, 150);
    (raw, d)
}

/// Downloads good.bin with python's ftplib, checks it against `want`, and says how long it
/// took.
fn download_checked(addr: SocketAddr, want: &[u8]) -> Duration {
    let started = Instant::now();
    let out = Command::new("python3")
        .arg("-c")
        .arg(DOWNLOAD)
        .arg(addr.port().to_string())
        .output()
        .unwrap();
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ftplib: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with(&sha(want)), "{text}");
    took
}

#[test]
fn five_hundred_slow_clients_do_not_starve_a_normal_one_and_are_cut() {
    if !need("python3") {
        return;
    }
    raise_nofile(8192);
    let s = start(|c| {
        c.max_clients = 2000;
        c.max_per_ip = 2000;
        // Well above the command timeout, so that a trickling client is cut by the latter
        // even when this test's load starves a listener thread for a few seconds.
        c.idle_timeout = Duration::from_secs(8);
        c.command_timeout = Duration::from_secs(2);
        c.reply_timeout = Duration::from_secs(2);
        c.data_timeout = Duration::from_secs(2);
        c.io_threads = 8;
    });
    let good = serve_files(&s.root, 7);
    let (n_silent, n_trickle, n_data) = (160, 160, 6);
    let n_noread = 500 - n_silent - n_trickle - n_data;
    let t0 = Instant::now();

    // Never read the data connection of a RETR (the data timeout, then the idle timeout).
    let mut data: Vec<(TcpStream, TcpStream)> = (0..n_data)
        .map(|_| {
            let (raw, d) = stalled_retr(s.addr);
            (raw.w, d)
        })
        .collect();
    // Silent: connect, say nothing (the idle timeout).
    let mut silent: Vec<TcpStream> = (0..n_silent)
        .map(|_| TcpStream::connect(s.addr).unwrap())
        .collect();
    // Never read replies: log in and ask for a megabyte of FEAT replies (cheap to make),
    // read none (the reply timeout).
    // The first few ask for more than the socket buffers hold (the server's writes block
    // until the reply timeout); the others go quiet after theirs (the idle timeout).
    let mut noread: Vec<TcpStream> = (0..n_noread)
        .map(|i| {
            let mut c = small_rcvbuf(s.addr);
            let mut burst = b"USER anonymous\r\nPASS x@\r\n".to_vec();
            let n = if i < N_FLOOD { 40_000 } else { 20 };
            for _ in 0..n {
                burst.extend_from_slice(b"FEAT\r\n");
            }
            // What the buffers take: the rest would block this client, not the server.
            c.set_nonblocking(true).unwrap();
            let _ = c.write(&burst);
            c
        })
        .collect();
    // Trickle: one byte a second of a line that never ends (the command timeout), from a
    // thread of their own.
    let addr = s.addr;
    let trickle = std::thread::spawn(move || {
        let mut socks: Vec<(TcpStream, Vec<u8>, Option<Duration>)> = (0..n_trickle)
            .map(|_| {
                let mut c = TcpStream::connect(addr).unwrap();
                // The first byte at once: connecting all of them may take longer than the
                // idle timeout on a loaded machine.
                c.write_all(b"U").unwrap();
                c.set_nonblocking(true).unwrap();
                (c, Vec::new(), None)
            })
            .collect();
        let started = Instant::now();
        let line = b"USER anonymous-who-types-very-slowly";
        let mut i = 1;
        while socks.iter().any(|s| s.2.is_none()) && started.elapsed() < Duration::from_secs(30) {
            for (c, seen, cut) in socks.iter_mut().filter(|s| s.2.is_none()) {
                let _ = c.write(&line[i % line.len()..][..1]);
                if closed(c, seen) {
                    *cut = Some(started.elapsed());
                }
            }
            i += 1;
            std::thread::sleep(Duration::from_secs(1));
        }
        socks
            .into_iter()
            .map(|(_, seen, cut)| (String::from_utf8_lossy(&seen).into_owned(), cut))
            .collect::<Vec<_>>()
    });
    let held = t0.elapsed();

    // Meanwhile a normal client downloads, checked byte for byte.
    std::thread::sleep(Duration::from_millis(500));
    let took = download_checked(s.addr, &good);
    assert!(
        took < Duration::from_secs(10),
        "a normal download beside 500 slow clients took {took:?}"
    );
    eprintln!(
        "{} slow connections opened in {held:?} (trickling ones from their own thread); the normal download took {took:?}",
        n_silent + n_noread + n_data * 2 + n_trickle
    );

    // Afterwards every slow client is cut by its timeout. Reading lets a blocked reply
    // write move: wait past the reply timeout before looking.
    std::thread::sleep((t0 + Duration::from_secs(6)).saturating_duration_since(Instant::now()));
    for c in silent.iter_mut().chain(noread.iter_mut()) {
        c.set_nonblocking(true).unwrap();
    }
    for (c, _) in data.iter_mut() {
        c.set_nonblocking(true).unwrap();
    }
    let mut seen_silent = vec![Vec::new(); silent.len()];
    let mut seen_noread = vec![Vec::new(); noread.len()];
    let mut seen_data = vec![Vec::new(); data.len()];
    let mut cut_silent = vec![false; silent.len()];
    let mut cut_noread = vec![false; noread.len()];
    let mut cut_data = vec![false; data.len()];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for (i, c) in silent.iter_mut().enumerate() {
            cut_silent[i] = cut_silent[i] || closed(c, &mut seen_silent[i]);
        }
        for (i, c) in noread.iter_mut().enumerate() {
            cut_noread[i] = cut_noread[i] || closed(c, &mut seen_noread[i]);
        }
        // The data connections stay unread (reading them would let the transfer move):
        // the 426 on the control connection tells the transfer was cut.
        for (i, (c, _)) in data.iter_mut().enumerate() {
            cut_data[i] = cut_data[i] || closed(c, &mut seen_data[i]);
        }
        let all = [&cut_silent, &cut_noread, &cut_data]
            .iter()
            .all(|v| v.iter().all(|&b| b));
        if all || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let count = |v: &[bool]| v.iter().filter(|&&b| b).count();
    assert_eq!(count(&cut_silent), n_silent, "silent clients cut");
    assert_eq!(
        count(&cut_noread),
        n_noread,
        "clients not reading replies cut"
    );
    assert_eq!(count(&cut_data), n_data, "clients not reading data cut");
    for seen in &seen_silent {
        let t = String::from_utf8_lossy(seen);
        assert!(t.starts_with("220") && t.contains("421 Timeout"), "{t}");
    }
    for seen in &seen_data {
        let t = String::from_utf8_lossy(seen);
        assert!(t.contains("426") && t.contains("421 Timeout"), "{t}");
    }
    let trickled = trickle.join().unwrap();
    for (seen, cut) in &trickled {
        assert!(cut.is_some(), "trickling client not cut: {seen}");
        assert!(seen.contains("421 Timeout"), "{seen}");
    }
    // The command timeout cuts them (a listener thread starved by this test's load for
    // longer than the idle timeout may see both timers expire and close with either).
    let by_command = trickled
        .iter()
        .filter(|(seen, _)| seen.contains("421 Timeout: command line"))
        .count();
    assert!(
        by_command * 10 >= n_trickle * 9,
        "{by_command} of {n_trickle}"
    );
    let stats: std::collections::HashMap<String, String> = s.handle.stats().into_iter().collect();
    let n = |k: &str| stats[k].parse::<usize>().unwrap();
    assert!(n("timeouts_command") >= by_command, "{stats:?}");
    assert!(n("timeouts_reply") >= 1, "{stats:?}");
    assert_eq!(n("clients"), 0, "{stats:?}");
}

/// A control connection from `local` (a loopback address) to `server`.
/// More clients that never read their data connection than the server has I/O threads, and a
/// data timeout far away: the transfers queued behind them get spare threads, so a normal
/// download is served at once rather than after the stalled ones are cut.
#[test]
fn transfers_stalled_by_clients_that_never_read_do_not_hold_up_the_others() {
    if !need("python3") {
        return;
    }
    let s = start(|c| {
        c.io_threads = 2;
        c.data_timeout = Duration::from_secs(300);
    });
    let good = serve_files(&s.root, 8);
    let stalled: Vec<(Raw, TcpStream)> = (0..6).map(|_| stalled_retr(s.addr)).collect();
    let took = download_checked(s.addr, &good);
    // Generous for a loaded machine, and far below the 300 s data timeout that would
    // otherwise free a thread.
    assert!(
        took < Duration::from_secs(60),
        "a download behind 6 stalled transfers on 2 I/O threads took {took:?}"
    );
    eprintln!("served in {took:?} beside 6 stalled transfers on 2 I/O threads");
    drop(stalled);
}

fn connect_from(local: &str, server: SocketAddr) -> (Raw, (u16, String)) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{local}:0").parse().unwrap();
    sock.bind(&local.into()).unwrap();
    sock.connect(&server.into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut raw = Raw {
        r: std::io::BufReader::new(s.try_clone().unwrap()),
        w: s,
    };
    let g = raw.reply();
    (raw, g)
}

#[test]
fn wrong_passwords_slow_down_then_421_exempt_logs_in_and_the_ban_ends() {
    let delay = Duration::from_millis(100);
    let ban = Duration::from_secs(3);
    let s = start(|c| {
        c.users = vec![("alice".into(), "secret".into())];
        c.login_delay = delay;
        c.login_max_failures = 5;
        c.login_ban = ban;
        c.login_exempt = "127.0.0.2".parse().unwrap();
    });
    std::fs::write(s.root.join("f"), b"after the ban").unwrap();
    // Opened before the ban: refused at USER once it holds.
    let (mut early, g) = Raw::connect(s.addr);
    assert_eq!(g.0, 220);

    // Wrong passwords at line rate from 127.0.0.1 (a session closes after 3 failures; the
    // count is per address, across sessions).
    let mut waits = Vec::new();
    let mut c = Raw::connect(s.addr).0;
    let mut in_session = 0;
    let last = loop {
        if in_session == 3 {
            c = Raw::connect(s.addr).0;
            in_session = 0;
        }
        assert_eq!(c.cmd("USER alice").0, 331);
        let t = Instant::now();
        c.send(format!("PASS wrong{}\r\n", waits.len()).as_bytes());
        if waits.len() == 4 {
            // The 5th reply waits 1.6 s in its own session only: another session from the
            // same address is answered meanwhile.
            assert_eq!(early.cmd("NOOP").0, 200);
            let mut b = [0u8; 1];
            c.w.set_nonblocking(true).unwrap();
            let pending = c.w.peek(&mut b).map_err(|e| e.kind());
            c.w.set_nonblocking(false).unwrap();
            assert_eq!(
                pending,
                Err(ErrorKind::WouldBlock),
                "the 530 came before NOOP's 200"
            );
        }
        let r = c.reply();
        waits.push(t.elapsed());
        in_session += 1;
        assert_eq!(r.0, 530, "{r:?}");
        if waits.len() == 5 {
            break c.reply();
        }
        if in_session == 3 {
            assert_eq!(c.reply().0, 421, "the session's own limit");
        }
    };
    assert_eq!(last.0, 421, "{last:?}");
    assert!(
        last.1.contains("failed logins from your address"),
        "{last:?}"
    );
    // Each failure waited at least delay × 2^(n-1): progressively slower.
    for (n, w) in waits.iter().enumerate() {
        assert!(
            *w >= delay * (1 << n),
            "failure {}: {w:?} ({waits:?})",
            n + 1
        );
    }
    let banned_at = Instant::now();
    // Banned: a new connection gets 421 at once, an open one at USER.
    let (mut refused, g) = Raw::connect(s.addr);
    assert_eq!(g.0, 421, "{g:?}");
    assert_eq!(refused.reply().0, 0, "closed after the 421");
    let r = early.cmd("USER alice");
    assert_eq!(r.0, 421, "{r:?}");

    // The exempt address: failures cost nothing and never ban; the right password works.
    for _ in 0..2 {
        let (mut e, g) = connect_from("127.0.0.2", s.addr);
        assert_eq!(g.0, 220);
        for _ in 0..3 {
            assert_eq!(e.cmd("USER alice").0, 331);
            assert_eq!(e.cmd("PASS nope").0, 530);
        }
    }
    let (mut e, g) = connect_from("127.0.0.2", s.addr);
    assert_eq!(g.0, 220, "{g:?}");
    assert_eq!(e.cmd("USER alice").0, 331);
    assert_eq!(e.cmd("PASS secret").0, 230);

    // After the ban, the address logs in again (curl, a real client, reads a file).
    let left = ban.saturating_sub(banned_at.elapsed()) + Duration::from_millis(300);
    std::thread::sleep(left);
    let (mut again, g) = Raw::connect(s.addr);
    assert_eq!(g.0, 220, "{g:?}");
    assert_eq!(again.cmd("USER alice").0, 331);
    assert_eq!(again.cmd("PASS secret").0, 230);
    if need("curl") {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "20"])
            .arg(format!("ftp://alice:secret@{}/f", s.addr))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, b"after the ban");
    }
    let stats: std::collections::HashMap<String, String> = s.handle.stats().into_iter().collect();
    assert_eq!(stats["clients_banned"], "1", "{stats:?}");
    assert_eq!(stats["logins_failed"], "11", "{stats:?}");
}
