//! Password guesses per second an attacker gets from one address: `gridos ftpd`'s login
//! throttle off, on (its defaults), and vsftpd with its default failed-login settings
//! (`delay_failed_login=1`, `max_login_fails=3`), in the same run.
//!
//! ```text
//! cargo run --release -p gridos-benches --bin login_guesses -- [--secs 6] [--runs 3] [--conns 8]
//! ```
//!
//! Each run starts a fresh server (the throttle's table is per server) and `--conns`
//! connections from 127.0.0.1 that send `USER alice` / `PASS guessN` at line rate,
//! reconnecting whenever the server closes; a guess counts when its 530 arrives within the
//! window. Connections refused with 421 (banned) are counted apart.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use clap::Parser;
use gridos_ftp::server::{Server, ServerConfig};

#[derive(Parser, Debug)]
struct Args {
    /// Seconds each run guesses for.
    #[arg(long, default_value_t = 6)]
    secs: u64,
    /// Runs per server (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Parallel attacker connections.
    #[arg(long, default_value_t = 8)]
    conns: usize,
}

/// Reads one reply's code (0: closed or timed out); multi-line replies are read whole.
fn reply(r: &mut BufReader<TcpStream>) -> u16 {
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return 0;
    }
    let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
    if line.as_bytes().get(3) == Some(&b'-') {
        let end = format!("{code} ");
        loop {
            let mut l = String::new();
            if r.read_line(&mut l).unwrap_or(0) == 0 || l.starts_with(&end) {
                break;
            }
        }
    }
    code
}

#[derive(Default)]
struct Count {
    guesses: AtomicU64,
    refused: AtomicU64,
}

fn attacker(addr: SocketAddr, end: Instant, id: usize, count: &Count) {
    let mut n = 0u64;
    while Instant::now() < end {
        let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let left = || {
            end.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        };
        let _ = s.set_read_timeout(Some(left()));
        let mut w = s.try_clone().expect("clone");
        let mut r = BufReader::new(s);
        match reply(&mut r) {
            220 => {}
            421 => {
                count.refused.fetch_add(1, Relaxed);
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            _ => continue,
        }
        loop {
            let _ = r.get_ref().set_read_timeout(Some(left()));
            if w.write_all(b"USER alice\r\n").is_err() || reply(&mut r) != 331 {
                break;
            }
            n += 1;
            if w.write_all(format!("PASS guess-{id}-{n}\r\n").as_bytes())
                .is_err()
            {
                break;
            }
            match reply(&mut r) {
                530 if Instant::now() < end => {
                    count.guesses.fetch_add(1, Relaxed);
                }
                _ => break,
            }
        }
    }
}

/// Guesses per second and refusals over one window against `addr`.
fn attack(addr: SocketAddr, a: &Args) -> (f64, u64) {
    let count = Arc::new(Count::default());
    let end = Instant::now() + Duration::from_secs(a.secs);
    let threads: Vec<_> = (0..a.conns)
        .map(|id| {
            let c = Arc::clone(&count);
            std::thread::spawn(move || attacker(addr, end, id, &c))
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    (
        count.guesses.load(Relaxed) as f64 / a.secs as f64,
        count.refused.load(Relaxed),
    )
}

fn gridos(throttle: bool, root: &Path) -> gridos_ftp::server::ServerHandle {
    let mut c = ServerConfig::new(root);
    c.users = vec![("alice".into(), "correct horse battery staple".into())];
    c.max_clients = 1000;
    c.max_per_ip = 1000;
    if !throttle {
        c.login_delay = Duration::ZERO;
        c.login_max_failures = 0;
    }
    Server::start(c).expect("gridos server")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// vsftpd with local logins and its defaults for failed ones.
fn vsftpd(dir: &Path) -> Option<(Child, SocketAddr)> {
    let bin = Path::new("/opt/gridos-peers/vsftpd/usr/sbin/vsftpd");
    if !bin.exists() {
        eprintln!("vsftpd not installed at {}", bin.display());
        return None;
    }
    let port = free_port();
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).ok()?;
    let conf = dir.join("vsftpd.conf");
    std::fs::write(
        &conf,
        format!(
            "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\n\
             background=NO\nanonymous_enable=NO\nlocal_enable=YES\nseccomp_sandbox=NO\n\
             secure_chroot_dir={}\nmax_clients=1000\nmax_per_ip=1000\nxferlog_enable=NO\n",
            empty.display()
        ),
    )
    .ok()?;
    let child = Command::new(bin)
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((child, addr))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let a = Args::parse();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut results: Vec<(&str, Vec<f64>, Vec<u64>)> = Vec::new();
    for (name, throttle) in [
        ("gridos, throttle off", false),
        ("gridos, throttle on (defaults)", true),
    ] {
        let (mut rates, mut refused) = (Vec::new(), Vec::new());
        for _ in 0..a.runs {
            let s = gridos(throttle, dir.path());
            let (r, n) = attack(s.local_addr(), &a);
            s.shutdown();
            rates.push(r);
            refused.push(n);
        }
        results.push((name, rates, refused));
    }
    let (mut rates, mut refused) = (Vec::new(), Vec::new());
    for _ in 0..a.runs {
        let Some((mut child, addr)) = vsftpd(dir.path()) else {
            break;
        };
        let (r, n) = attack(addr, &a);
        let _ = child.kill();
        let _ = child.wait();
        rates.push(r);
        refused.push(n);
    }
    if !rates.is_empty() {
        results.push(("vsftpd 3 (defaults)", rates, refused));
    }
    let off = results.first().map(|r| median(r.1.clone())).unwrap_or(0.0);
    println!(
        "| server | guesses/s (median of {}) | runs | refused (421) per run | ÷ throttle off |",
        a.runs
    );
    println!("| --- | --- | --- | --- | --- |");
    for (name, rates, refused) in &results {
        let m = median(rates.clone());
        let runs: Vec<String> = rates.iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "| {name} | {m:.2} | {} | {:?} | {:.4}× |",
            runs.join(", "),
            refused,
            if off > 0.0 { m / off } else { 0.0 }
        );
    }
}
