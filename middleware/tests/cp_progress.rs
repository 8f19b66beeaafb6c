//! What `gridos cp` shows while it copies: the progress line under a pseudo-terminal
//! (`script` from util-linux) during a download slowed by a throttling proxy, read back
//! from the captured screen — the real total, a growing percentage, a rate that agrees
//! with the summary's, the summary as the last line — plus a tree's files done / total,
//! a spinner without a total for a size nobody knows,
//! nothing when stderr is no terminal, and the human `-v` lines.

mod util;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use util::{Ours, RUN_DEADLINE, SlowProxy, gridos, random_bytes, sha256, sha256_file};

/// Bytes per second through the proxy: [`SIZE`] takes about 3 s.
const RATE: u64 = 8 << 20;
/// A whole number of MiB, so the total shown ("24.00 MiB") is exact.
const SIZE: usize = 24 << 20;

/// `cmd` under a pseudo-terminal (`script -q -e -c`): its exit success and the screen
/// bytes (stderr and stdout as a terminal shows them); `None` (skipped) without `script`.
fn under_pty(args: &[&str]) -> Option<(bool, String)> {
    let quote = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
    let cmd: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_gridos"))
        .chain(args.iter().copied())
        .map(quote)
        .collect();
    let child = Command::new("script")
        .args(["-q", "-e", "-c", &cmd.join(" "), "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return util::unavailable(&format!("script (util-linux): {e}")),
    };
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + RUN_DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gridos {args:?} under script ran too long and was killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let screen = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    Some((status.success(), screen))
}

/// The screen's redraws and lines, escape sequences removed, empty ones dropped.
fn segments(screen: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut chars = screen.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters final-letter.
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        plain.push(c);
    }
    plain
        .split(['\r', '\n'])
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `24.00 MiB` (indicatif's binary units) in bytes.
fn bytes(number: &str, unit: &str) -> Option<f64> {
    let n: f64 = number.parse().ok()?;
    let m = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(n * m)
}

/// One redraw of the bar with a known total.
#[derive(Debug)]
struct Redraw {
    percent: u32,
    done: f64,
    total: f64,
    /// Bytes per second, once measured.
    rate: Option<f64>,
    /// `(done, total)` files of a tree.
    files: Option<(u64, u64)>,
}

/// `42% [=====>      ] 10.00 MiB / 24.00 MiB  8.00 MiB/s  0:02 left  3/6 files  name`.
fn parse(s: &str) -> Option<Redraw> {
    let (pct, rest) = s.split_once("% [")?;
    let percent = pct.trim().parse().ok()?;
    let info = rest.split_once(']')?.1;
    let w: Vec<&str> = info.split_whitespace().collect();
    let done = bytes(w.first()?, w.get(1)?)?;
    if *w.get(2)? != "/" {
        return None;
    }
    let total = bytes(w.get(3)?, w.get(4)?)?;
    let rate = w
        .get(6)
        .and_then(|u| u.strip_suffix("/s"))
        .and_then(|u| bytes(w.get(5)?, u));
    let files = w
        .iter()
        .position(|x| *x == "files")
        .and_then(|i| w.get(i.checked_sub(1)?))
        .and_then(|f| f.split_once('/'))
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
    Some(Redraw {
        percent,
        done,
        total,
        rate,
        files,
    })
}

/// The rate of the summary line `… (X MB/s, …)` in bytes per second.
fn summary_rate(line: &str) -> f64 {
    let mb = line
        .rsplit_once(" MB/s")
        .and_then(|(a, _)| a.rsplit_once('('))
        .and_then(|(_, n)| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no rate in the summary {line:?}"));
    mb * 1e6
}

#[test]
fn progress_under_a_terminal_tells_the_truth() {
    let srv = Ours::start(|_| {});
    let proxy = SlowProxy::start(srv.addr, RATE);
    let data = random_bytes(SIZE, 21);
    std::fs::write(srv.path("big.bin"), &data).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("big.bin");
    let src = proxy.url("big.bin");
    // No --progress: a terminal is enough.
    let Some((ok, screen)) = under_pty(&["cp", &src, dst.to_str().unwrap()]) else {
        return;
    };
    assert!(ok, "gridos failed: {screen}");
    assert_eq!(sha256_file(&dst), sha256(&data));

    let segs = segments(&screen);
    let redraws: Vec<Redraw> = segs.iter().filter_map(|s| parse(s)).collect();
    assert!(redraws.len() >= 4, "too few redraws: {screen:?}");
    // The total is the file's size from the first redraw on, never the bytes so far.
    for r in &redraws {
        assert_eq!(r.total, SIZE as f64, "total shown: {r:?}");
        assert!(r.done <= r.total, "{r:?}");
    }
    // The percentage grows.
    let pcts: Vec<u32> = redraws.iter().map(|r| r.percent).collect();
    assert!(
        pcts.windows(2).all(|w| w[0] <= w[1]),
        "percentages {pcts:?}"
    );
    assert!(
        pcts.first() < pcts.last() && pcts.iter().any(|p| (20..80).contains(p)),
        "percentages {pcts:?}"
    );
    // The rate of the late redraws agrees with the summary's (within 30%).
    let last = segs.last().unwrap();
    assert!(
        last.starts_with(&src) && last.contains(&format!("{SIZE} bytes in 1 file in")),
        "the final line is not the summary: {last:?} (screen {screen:?})"
    );
    let want = summary_rate(last);
    let late: Vec<f64> = redraws
        .iter()
        .filter(|r| r.percent >= 50)
        .filter_map(|r| r.rate)
        .collect();
    assert!(!late.is_empty(), "no rate in late redraws: {redraws:?}");
    for got in &late {
        assert!(
            (got - want).abs() <= 0.3 * want,
            "rate shown {got:.0} B/s, summary {want:.0} B/s: {redraws:?}"
        );
    }
    println!("screen (redraws separated by \\r):\n{}", segs.join("\n"));
}

#[test]
fn a_tree_shows_files_done_of_files_total_when_asked_without_a_terminal() {
    let srv = Ours::start(|_| {});
    let proxy = SlowProxy::start(srv.addr, RATE);
    let t = srv.path("t");
    std::fs::create_dir(&t).unwrap();
    let n = 6u64;
    for i in 0..n {
        std::fs::write(t.join(format!("f{i}.bin")), random_bytes(2 << 20, i)).unwrap();
    }
    // One file after the other, then pipelined (all six RETRs in one batch on one set of
    // MODE E connections): files done must grow file by file either way.
    for (k, how) in [["--no-pipeline"], ["--pipeline"]].iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let dst = dir.path().join("t");
        // stderr is a pipe here: --progress asks for the redraws anyway.
        let (src, to) = (proxy.url("t"), dst.to_str().unwrap());
        // Small MODE E blocks: the bytes done move in steps finer than a file.
        let r = gridos(&[
            "cp",
            "-r",
            how[0],
            "--block-size",
            "256K",
            "--progress",
            &src,
            to,
        ]);
        r.ok();
        assert_eq!(util::tree(&dst), util::tree(&t), "{how:?}");
        let segs = segments(&r.stderr);
        assert!(
            !r.stderr.contains('\x1b'),
            "escape sequences without a terminal: {:?}",
            r.stderr
        );
        let redraws: Vec<Redraw> = segs.iter().filter_map(|s| parse(s)).collect();
        assert!(redraws.len() >= 2, "too few redraws: {:?}", r.stderr);
        let files: Vec<(u64, u64)> = redraws.iter().filter_map(|r| r.files).collect();
        assert_eq!(files.len(), redraws.len(), "files not shown: {redraws:?}");
        assert!(files.iter().all(|&(_, of)| of == n), "{files:?}");
        assert!(
            files.windows(2).all(|w| w[0].0 <= w[1].0) && files.first() < files.last(),
            "files done do not grow: {files:?}"
        );
        // Between none and all, some redraws show a part of the files done.
        let between: std::collections::BTreeSet<u64> = files
            .iter()
            .map(|&(d, _)| d)
            .filter(|&d| d > 0 && d < n)
            .collect();
        assert!(
            between.len() >= 2,
            "{how:?}: files done jump instead of growing one by one: {files:?}"
        );
        let mut last_done = 0.0;
        for r in &redraws {
            assert_eq!(r.total, (n * (2 << 20)) as f64, "{r:?}");
            assert!(
                r.done >= last_done,
                "{how:?}: bytes went backwards: {redraws:?}"
            );
            last_done = r.done;
        }
        // The bytes move inside a file, not only when one completes.
        let partial = redraws
            .iter()
            .filter(|r| r.done > 0.0 && (r.done as u64) % (2 << 20) != 0)
            .count();
        assert!(
            partial >= 1,
            "{how:?}: bytes move only per file: {redraws:?}"
        );
        assert!(
            segs.iter()
                .any(|s| s.contains(" files  …") || s.contains(" files  /")),
            "no file name: {segs:?}"
        );
        let last = segs.last().unwrap();
        assert!(last.contains(&format!("bytes in {n} files in")), "{last:?}");
        if k == 1 {
            println!("stderr (redraws separated by \\r):\n{}", segs.join("\n"));
        }
    }
}

#[test]
fn a_resumed_copy_starts_where_the_file_stands_and_ends_full() {
    let srv = Ours::start(|_| {});
    let proxy = SlowProxy::start(srv.addr, RATE);
    let data = random_bytes(SIZE, 33);
    let half = SIZE / 2;
    let dir = tempfile::tempdir().unwrap();
    // A download whose first half is here, then an upload whose first half is there.
    std::fs::write(srv.path("down.bin"), &data).unwrap();
    let down = dir.path().join("down.bin");
    std::fs::write(&down, &data[..half]).unwrap();
    let up = dir.path().join("up.bin");
    std::fs::write(&up, &data).unwrap();
    std::fs::write(srv.path("up.bin"), &data[..half]).unwrap();
    let cases = [
        (
            proxy.url("down.bin"),
            down.display().to_string(),
            down.clone(),
        ),
        (
            up.display().to_string(),
            proxy.url("up.bin"),
            srv.path("up.bin"),
        ),
    ];
    for (src, dst, lands) in &cases {
        let r = gridos(&["cp", "--resume", "--progress", src, dst]);
        r.ok();
        assert_eq!(sha256_file(lands), sha256(&data), "{src} → {dst}");
        let segs = segments(&r.stderr);
        let redraws: Vec<Redraw> = segs
            .iter()
            .filter_map(|s| parse(s))
            .filter(|r| r.done > 0.0)
            .collect();
        assert!(redraws.len() >= 3, "too few redraws: {:?}", r.stderr);
        for r in &redraws {
            assert_eq!(r.total, SIZE as f64, "{r:?}");
            // The half already there counts as done from the start.
            assert!(
                r.done >= half as f64 && r.percent >= 50,
                "{src} → {dst}: the bar does not start at the half held: {redraws:?}"
            );
        }
        let last = redraws.last().unwrap();
        assert!(
            last.percent >= 80,
            "{src} → {dst}: the bar ends at {}%: {redraws:?}",
            last.percent
        );
        let summary = segs.last().unwrap();
        assert!(
            summary.contains(&format!("{} bytes in 1 file in", SIZE - half)),
            "{summary:?}"
        );
    }
}

#[test]
fn no_progress_without_a_terminal_unless_asked() {
    let srv = Ours::start(|_| {});
    std::fs::write(srv.path("x.bin"), random_bytes(3 << 20, 3)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let r = gridos(&[
        "cp",
        &srv.url("x.bin"),
        dir.path().join("x").to_str().unwrap(),
    ]);
    r.ok();
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{:?}", r.stderr);
    assert!(
        !r.stderr.contains('\r') && lines[0].contains(" bytes in 1 file in "),
        "{:?}",
        r.stderr
    );
}

#[test]
fn verbose_prints_one_human_line_per_decision_and_json_with_vv() {
    let srv = Ours::start(|_| {});
    std::fs::write(srv.path("x.bin"), random_bytes(1 << 20, 4)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = srv.url("x.bin");
    let r = gridos(&["-v", "cp", &src, dir.path().join("x").to_str().unwrap()]);
    r.ok();
    let plan = r
        .stderr
        .lines()
        .find(|l| l.starts_with(&format!("gridos: cp: {src}: MODE E, ")))
        .unwrap_or_else(|| panic!("no plan line: {}", r.stderr));
    assert!(
        plan.contains(" 1 stream (RTT ")
            && (plan.contains(" ms, BDP ") || plan.contains(" µs, BDP "))
            && plan.contains(" over a 10 Gbit/s ceiling; ")
            && plan.contains("privileged: ")
            && plan.ends_with(", block 1 MiB"),
        "{plan}"
    );
    assert!(
        r.stderr.contains("gridos: cp: the path delivered "),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!(
            "gridos: cp: {src}: no TLS: commands and data go in clear"
        )),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains('{'), "JSON at -v: {}", r.stderr);
    assert!(r.plans().is_empty(), "{}", r.stderr);

    // -vv: the machine form as well.
    let r = gridos(&["-vv", "cp", &src, dir.path().join("y").to_str().unwrap()]);
    r.ok();
    let plans = r.plans();
    assert_eq!(plans.len(), 1, "{}", r.stderr);
    assert_eq!(
        (&plans[0]["auto"], &plans[0]["streams"]),
        (&true.into(), &1.into())
    );
    assert!(
        r.stderr.contains(": MODE E, 1 stream (RTT "),
        "{}",
        r.stderr
    );
}

#[test]
fn verbose_names_the_route_of_a_server_to_server_copy() {
    let on = |ip: [u8; 4]| Ours::start(|c| c.listen = std::net::SocketAddr::from((ip, 0)));
    let (a, b) = (on([127, 0, 0, 2]), on([127, 0, 0, 3]));
    std::fs::write(a.root.join("src.bin"), random_bytes(100_003, 5)).unwrap();
    // Anonymous users get no direct transfer (bounce protection): relayed, with the reason.
    let r = gridos(&["-v", "cp", &a.url("src.bin"), &b.url("dst.bin")]);
    r.ok();
    let route = r
        .stderr
        .lines()
        .find(|l| l.starts_with("gridos: cp: route: "))
        .unwrap_or_else(|| panic!("no route line: {}", r.stderr));
    assert!(
        route.starts_with("gridos: cp: route: relayed through this machine: ") && route.len() > 50,
        "{route}"
    );
    assert_eq!(
        sha256_file(&b.root.join("dst.bin")),
        sha256(&std::fs::read(a.root.join("src.bin")).unwrap())
    );
}

/// An HTTP/1.0 server on loopback that names no length (a close-delimited body, as a
/// pipe or a generated file is served): `pieces` of 256 KiB, 100 ms apart.
fn lengthless_http(pieces: usize) -> String {
    use std::io::Write;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            let mut req = [0u8; 4096];
            let n = c.read(&mut req).unwrap_or(0);
            let _ =
                c.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n");
            if req[..n].starts_with(b"HEAD") {
                continue;
            }
            for i in 0..pieces {
                if c.write_all(&random_bytes(256 << 10, i as u64)).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            return;
        }
    });
    format!("http://{addr}/stream")
}

#[test]
fn an_unknown_size_shows_a_spinner_with_bytes_and_rate_never_a_total() {
    let pieces = 12;
    let src = lengthless_http(pieces);
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("stream");
    let r = gridos(&["cp", "--progress", &src, dst.to_str().unwrap()]);
    r.ok();
    let want: Vec<u8> = (0..pieces)
        .flat_map(|i| random_bytes(256 << 10, i as u64))
        .collect();
    assert_eq!(sha256_file(&dst), sha256(&want));
    let segs = segments(&r.stderr);
    let (last, redraws) = segs.split_last().unwrap();
    assert!(
        last.starts_with(&src) && last.contains(&format!("{} bytes in 1 file", want.len())),
        "{last:?}"
    );
    assert!(redraws.len() >= 2, "too few redraws: {:?}", r.stderr);
    for s in redraws {
        assert!(
            !s.contains('%') && !s.contains(" / ") && !s.contains("left"),
            "a total for an unknown size: {s:?}"
        );
    }
    assert!(
        redraws
            .iter()
            .any(|s| s.contains(" KiB/s") || s.contains(" MiB/s")),
        "no rate: {redraws:?}"
    );
}
