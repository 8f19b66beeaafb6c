//! gridos-io's buffer monitor on an emulated long path: a transfer that starts with a small,
//! locked send buffer is seen to be send-buffer limited in TCP_INFO and the monitor raises
//! SO_SNDBUF while it runs; `gridos -vv cp` says so, one line per adjustment, while the
//! copy runs. Root only (network namespaces, and SO_SNDBUFFORCE).

use gridos_benches::wan::{Side, Wan, WanParams};
use gridos_io::tune::TuneAction;
use gridos_io::{BufferOpt, BufferOptName, GridSocket, TransferOptions};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// A 20 ms round trip at 1 Gbit/s (jumbo frames): a 64 KiB send buffer holds a transfer
/// to a fraction of the path.
fn long_path() -> Wan {
    Wan::start(WanParams {
        delay: Duration::from_millis(10),
        rate_bits_per_sec: 1_000_000_000,
        mtu: 9000,
        ..WanParams::default()
    })
    .expect("start the emulator")
}

#[test]
fn monitor_raises_a_send_buffer_limited_transfer_on_a_long_path() {
    if !nix::unistd::geteuid().is_root() {
        println!("skipping: needs root (network namespaces, SO_SNDBUFFORCE)");
        return;
    }
    let wan = long_path();
    let listener = wan
        .run_in(Side::Server, || TcpListener::bind((wan.server_addr(), 0)))
        .unwrap()
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let size = 48u64 << 20;
    let receiver = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let sink = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .unwrap();
        gridos_io::recv_file(
            &s,
            &sink,
            0,
            Some(size),
            &TransferOptions {
                auto_tune: Some(false),
                ..Default::default()
            },
        )
    });
    let sock = wan
        .run_in(Side::Client, || TcpStream::connect(addr))
        .unwrap()
        .unwrap();
    let sock = GridSocket::from(sock);
    sock.buffer_setopt(BufferOpt::SendBuffer(64 << 10)).unwrap();
    let before = sock.buffer_getopt(BufferOptName::SendBuffer).unwrap();
    let mut src = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut src, &vec![0x5a; size as usize]).unwrap();
    let opts = TransferOptions {
        auto_tune: Some(true),
        ..Default::default()
    };
    let report = sock.send_file(&src, 0, size, &opts).unwrap();
    assert_eq!(report.bytes, size);
    assert_eq!(receiver.join().unwrap().unwrap().bytes, size);
    for d in &report.decisions {
        println!("decision: {d:?}");
    }
    println!(
        "SO_SNDBUF {before} -> {:?}; {} bytes in {:?}",
        report.sndbuf, report.bytes, report.elapsed
    );
    let raises: Vec<_> = report
        .decisions
        .iter()
        .filter(|d| matches!(d.action, TuneAction::RaiseSndbuf { .. }))
        .collect();
    assert!(
        !raises.is_empty(),
        "no SO_SNDBUF raise; decisions: {:?}",
        report.decisions
    );
    for d in &raises {
        assert!(
            d.sndbuf_limited_permille > 100,
            "raise without send-buffer limitation: {d:?}"
        );
        assert!(d.rtt_us >= 20_000, "the decision saw the path's RTT: {d:?}");
    }
    let after = report.sndbuf.unwrap();
    assert!(after > before, "SO_SNDBUF {before} → {after}");
}

/// The `gridos` binary of this build (target/debug/gridos beside the test's deps/), or
/// `GRIDOS_BIN`; `None` when it was not built (`cargo test -p gridos-benches` alone).
fn gridos_bin() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("GRIDOS_BIN") {
        return Some(p.into());
    }
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("gridos");
    bin.exists().then_some(bin)
}

/// The gridos binary when this runs as root (network namespaces, forced buffers); `None`
/// (skip) otherwise, or when the binary is not built (a failure in CI).
fn root_and_gridos() -> Option<std::path::PathBuf> {
    if !nix::unistd::geteuid().is_root() {
        println!("skipping: needs root (network namespaces, SO_SNDBUFFORCE)");
        return None;
    }
    let bin = gridos_bin();
    if bin.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the gridos binary was not built (cargo test --workspace builds it)"
        );
        println!("skipping: no gridos binary (build the workspace, or set GRIDOS_BIN)");
    }
    bin
}

#[test]
fn cp_vv_reports_the_monitors_adjustments_as_they_happen() {
    let Some(gridos) = root_and_gridos() else {
        return;
    };
    let wan = long_path();
    let dir = tempfile::tempdir().unwrap();
    let (mut server, root, port) = ftpd_behind(&wan, &gridos, dir.path());
    let size = 64usize << 20;
    let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let src = dir.path().join("up.bin");
    std::fs::write(&src, &data).unwrap();
    let url = format!("gridftp://{}:{port}/up.bin", wan.server_addr());
    // A small, locked send buffer on a 20 ms round trip: the transfer is send-buffer
    // limited until the monitor raises it.
    let mut cp = std::process::Command::new(&gridos);
    cp.args(["-vv", "cp", "--tcp-bs", "64K"])
        .arg(&src)
        .arg(&url);
    let out = run_in_client(&wan, &mut cp);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("{stderr}");
    assert!(out.status.success(), "{stderr}");
    assert!(
        std::fs::read(root.join("up.bin")).unwrap() == data,
        "upload differs"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    let adjust: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with(&format!("gridos: cp: {url}: monitor: send buffer ")))
        .collect();
    assert!(!adjust.is_empty(), "no adjustment line: {stderr}");
    for l in &adjust {
        assert!(
            l.contains(" → ")
                && l.contains("(RTT ")
                && l.contains(" ms, ")
                && l.contains(" delivered, BDP "),
            "{l}"
        );
        assert!(
            l.contains("% of the time limited by the send buffer"),
            "{l}"
        );
    }
    // As they happen: before the summary, which is the last line; no log lines at -vv.
    let summary = lines
        .iter()
        .rposition(|l| l.contains(" bytes in 1 file in "))
        .unwrap();
    let first = lines
        .iter()
        .position(|l| l.contains(": monitor: "))
        .unwrap();
    assert!(first < summary && summary == lines.len() - 1, "{stderr}");
    assert!(
        !stderr.contains(" INFO ") && !stderr.contains(" DEBUG "),
        "{stderr}"
    );
    let _ = server.0.kill();
}

#[test]
fn an_upload_opens_more_streams_when_every_stream_is_limited_and_lands_every_byte_once() {
    let Some(gridos) = root_and_gridos() else {
        return;
    };
    let wan = long_path();
    let dir = tempfile::tempdir().unwrap();
    let (mut server, root, port) = ftpd_behind(&wan, &gridos, dir.path());
    // Small locked send buffers (64 KiB), which the monitor may raise only to 128 KiB
    // (256 KiB as the kernel counts them): on a 20 ms path every stream is send-buffer
    // limited at the cap, which only more streams can help.
    let io = dir.path().join("io.toml");
    std::fs::write(
        &io,
        "[io]\nmax_buffer = 262144\nmax_total_buffer = 4194304\nmax_streams = 12\n\
         monitor_interval_ms = 100\n",
    )
    .unwrap();
    let size = 96usize << 20;
    let data: Vec<u8> = (0..size).map(|i| (i * 13 % 251) as u8).collect();
    let src = dir.path().join("up.bin");
    std::fs::write(&src, &data).unwrap();
    let url = format!("gridftp://{}:{port}/up.bin", wan.server_addr());
    let mut cp = std::process::Command::new(&gridos);
    cp.env("GRIDOS_IO_CONFIG", &io)
        .args([
            "-vv",
            "cp",
            "--json",
            "--host-memory",
            "off",
            "--tcp-bs",
            "64K",
        ])
        .arg(&src)
        .arg(&url);
    let out = run_in_client(&wan, &mut cp);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("{stderr}");
    assert!(out.status.success(), "{stderr}");
    let added: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(": monitor: every stream limited where a larger buffer cannot help: opened another, "))
        .collect();
    assert!(!added.is_empty(), "no stream was added: {stderr}");
    let counts: Vec<u32> = added
        .iter()
        .map(|l| {
            l.split("opened another, ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{l}"))
        })
        .collect();
    // From the one stream of the plan, one at a time, up to io.max_streams at most.
    assert_eq!(counts[0], 2, "{counts:?}");
    assert!(counts.windows(2).all(|w| w[1] == w[0] + 1), "{counts:?}");
    assert!(*counts.last().unwrap() <= 12, "{counts:?}");
    // Every byte once: what arrived is the file, and the copy counted each byte once.
    assert!(
        std::fs::read(root.join("up.bin")).unwrap() == data,
        "upload differs"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(summary["bytes"], size as u64, "{summary}");
    assert_eq!(
        summary["tuning"][0]["grew_to"],
        *counts.last().unwrap(),
        "{summary}"
    );
    let _ = server.0.kill();
}

/// `gridos ftpd` in the WAN's server namespace serving `dir/root` (anonymous, writable; the
/// server drops root for nobody, so the docroot is writable by all): the server, the
/// docroot and the port.
fn ftpd_behind(
    wan: &Wan,
    gridos: &std::path::Path,
    dir: &std::path::Path,
) -> (Kill, std::path::PathBuf, u16) {
    let root = dir.join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let port = wan
        .run_in(Side::Server, || {
            TcpListener::bind((wan.server_addr(), 0)).map(|l| l.local_addr().unwrap().port())
        })
        .unwrap()
        .unwrap();
    let mut server = std::process::Command::new(gridos);
    server.args(["ftpd", "--anonymous", "--anonymous-write", "--docroot"]);
    server
        .arg(&root)
        .arg("--listen")
        .arg(format!("{}:{port}", wan.server_addr()));
    server
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let server = Kill(wan.exec_in(Side::Server, &mut server).spawn().unwrap());
    (server, root, port)
}

/// Runs `cmd` in the client namespace until it succeeds (the server may still be starting
/// in its namespace) or 20 s have passed; the last run's output.
fn run_in_client(wan: &Wan, cmd: &mut std::process::Command) -> std::process::Output {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = wan.exec_in(Side::Client, cmd).output().unwrap();
        if out.status.success() || std::time::Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Kills the child when the test ends, however it ends.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
