//! `wanem`: runs the user-space WAN emulator (two network namespaces joined by a
//! delayed, rate-limited link), a command inside it, or its iperf3 self-check.
//!
//! A partition (every packet dropped, both ways) is had with SIGUSR1, which cuts the link
//! and restores it on the next SIGUSR1, or on a schedule: `--partition-at 5s
//! --partition-for 20s`.

use std::ffi::OsString;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use gridos_benches::wan::{
    self, Side, Wan, WanError, WanParams, parse_duration, parse_loss, parse_mtu, parse_rate,
    parse_size,
};
use nix::sys::signal::{SigSet, Signal};

/// Emulates a long fat network between two network namespaces (user space, no netem).
#[derive(Debug, Parser)]
#[command(name = "wanem", version)]
struct Cli {
    /// One-way delay (the RTT is twice this), e.g. 50ms.
    #[arg(long, default_value = "50ms", value_parser = |s: &str| parse_duration(s).map_err(|e| e.to_string()))]
    delay: Duration,
    /// Bottleneck rate, e.g. 1gbit, 100mbit.
    #[arg(long, default_value = "1gbit", value_parser = |s: &str| parse_rate(s).map_err(|e| e.to_string()))]
    rate: u64,
    /// Tail-drop limit of the bottleneck queue, e.g. 16MiB.
    #[arg(long, default_value = "16MiB", value_parser = |s: &str| parse_size(s).map_err(|e| e.to_string()))]
    queue: u64,
    /// Random loss probability, e.g. 0.001 or 0.1%.
    #[arg(long, default_value = "0", value_parser = |s: &str| parse_loss(s).map_err(|e| e.to_string()))]
    loss: f64,
    /// MTU of the emulated link.
    #[arg(long, default_value = "9000", value_parser = |s: &str| parse_mtu(s).map_err(|e| e.to_string()))]
    mtu: u32,
    /// Cut the link (drop every packet, both ways) this long after the start, e.g. 5s;
    /// SIGUSR1 also cuts it and restores it, at any time.
    #[arg(long, requires = "partition_for", value_parser = |s: &str| parse_duration(s).map_err(|e| e.to_string()))]
    partition_at: Option<Duration>,
    /// How long the scheduled cut lasts, e.g. 20s.
    #[arg(long, requires = "partition_at", value_parser = |s: &str| parse_duration(s).map_err(|e| e.to_string()))]
    partition_for: Option<Duration>,
    #[command(subcommand)]
    action: Option<Action>,
    /// Command to run in the client namespace; the emulator stops when it exits.
    #[arg(last = true)]
    command: Vec<OsString>,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Self-check: iperf3 through the link, N parallel streams then one stream.
    Check {
        /// Seconds per iperf3 run.
        #[arg(long, default_value_t = 10)]
        time: u32,
        /// Parallel streams of the first run.
        #[arg(long, default_value_t = 4)]
        streams: u32,
    },
    /// Delete namespaces left behind by emulators that were killed with SIGKILL.
    Clean,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// SIGUSR1s received: an odd count means the link is cut.
static PARTITION_TOGGLES: AtomicU32 = AtomicU32::new(0);

/// Blocks SIGINT, SIGTERM, SIGHUP and SIGUSR1 in every thread (call before any thread
/// starts) and waits for them on a dedicated thread that raises `INTERRUPTED` (or counts
/// the SIGUSR1 in `PARTITION_TOGGLES`).
fn catch_signals() -> Result<(), String> {
    let mut set = SigSet::empty();
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGUSR1,
    ] {
        set.add(sig);
    }
    set.thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            while let Ok(sig) = set.wait() {
                if sig == Signal::SIGUSR1 {
                    PARTITION_TOGGLES.fetch_add(1, Ordering::Relaxed);
                } else {
                    INTERRUPTED.store(true, Ordering::Relaxed);
                }
            }
        })
        .map_err(|e| format!("spawning the signal thread: {e}"))?;
    Ok(())
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// When the link is cut: during the scheduled window, or after an odd number of SIGUSR1.
struct Partition {
    window: Option<(Duration, Duration)>,
    start: Instant,
}

impl Partition {
    /// Cuts or restores the link as the schedule and the signals say, saying so on change.
    fn apply(&self, wan: &Wan) {
        let t = self.start.elapsed();
        let scheduled = self.window.is_some_and(|(at, len)| t >= at && t < at + len);
        let toggled = PARTITION_TOGGLES.load(Ordering::Relaxed) % 2 == 1;
        let cut = scheduled || toggled;
        if cut != wan.partitioned() {
            wan.set_partitioned(cut);
            eprintln!(
                "wanem: {:.1} s: {}",
                t.as_secs_f64(),
                if cut {
                    "link cut (every packet dropped)"
                } else {
                    "link restored"
                }
            );
        }
    }
}

/// Waits for `child`, or stops it (SIGTERM) when we are interrupted.
fn wait_child(
    child: &mut Child,
    wan: &Wan,
    partition: &Partition,
) -> Result<std::process::ExitStatus, String> {
    loop {
        partition.apply(wan);
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status);
        }
        if interrupted() {
            terminate(child);
            return Err("interrupted".to_owned());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn terminate(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn describe(wan: &Wan) -> String {
    let p = wan.params();
    format!(
        "WAN emulator up: one-way delay {:?} (RTT {:?}), rate {} bit/s, queue {} bytes, loss {}, MTU {}\n  \
         client side {}: ip netns exec {} CMD...\n  \
         server side {}: ip netns exec {} CMD...",
        p.delay,
        p.delay * 2,
        p.rate_bits_per_sec,
        p.queue_limit_bytes,
        p.loss,
        p.mtu,
        wan.client_addr(),
        wan.client_ns(),
        wan.server_addr(),
        wan.server_ns(),
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let params = WanParams {
        delay: cli.delay,
        rate_bits_per_sec: cli.rate,
        queue_limit_bytes: cli.queue,
        loss: cli.loss,
        mtu: cli.mtu,
    };
    if let Err(e) = params.validate() {
        eprintln!("wanem: {e}");
        return ExitCode::from(2);
    }
    if let Err(e) = catch_signals() {
        eprintln!("wanem: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.action {
        Some(Action::Clean) => {
            for name in wan::clean_stale() {
                println!("deleted {name}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Action::Check { time, streams }) => check(params, time, streams),
        None => {
            let partition = Partition {
                window: cli.partition_at.zip(cli.partition_for),
                start: Instant::now(),
            };
            run(params, &cli.command, &partition)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wanem: {e}");
            if interrupted() {
                ExitCode::from(130)
            } else {
                ExitCode::from(2)
            }
        }
    }
}

fn run(params: WanParams, command: &[OsString], partition: &Partition) -> Result<ExitCode, String> {
    let wan = Wan::start(params).map_err(|e| e.to_string())?;
    eprintln!("{}", describe(&wan));
    let code = if let Some((program, args)) = command.split_first() {
        let mut cmd = Command::new(program);
        cmd.args(args);
        let mut child = wan
            .exec_in(Side::Client, &mut cmd)
            .spawn()
            .map_err(|e| format!("cannot run {program:?}: {e}"))?;
        let status = wait_child(&mut child, &wan, partition)?;
        ExitCode::from(status.code().map_or(1, |c| c as u8))
    } else {
        eprintln!("forwarding; Ctrl-C to stop and delete the namespaces");
        while !interrupted() {
            partition.apply(&wan);
            std::thread::sleep(Duration::from_millis(50));
        }
        ExitCode::SUCCESS
    };
    eprintln!("{}", wan.stats());
    eprintln!(
        "dropped by the kernel at the TUN devices (forwarder behind): {}",
        device_drops(&wan)
    );
    drop(wan);
    Ok(code)
}

/// Kills the child (if still running) when dropped.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        terminate(&mut self.0);
    }
}

/// Reads the first number after `key` that follows `section` in iperf3's JSON output.
fn json_number(json: &str, section: &str, key: &str) -> Option<f64> {
    let rest = &json[json.find(section)? + section.len()..];
    let rest = &rest[rest.find(key)? + key.len()..];
    let rest = rest.trim_start_matches(|c: char| c == '"' || c == ':' || c.is_whitespace());
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Whether a TCP socket listens on `port` in the calling thread's namespace.
fn listening(port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/thread-self/net/tcp") else {
        return false;
    };
    let wanted = format!(":{port:04X}");
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1).unwrap_or("");
        let state = fields.nth(1).unwrap_or("");
        local.ends_with(&wanted) && state == "0A"
    })
}

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> f64 {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14, 15.
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (get(11) + get(12)) / ticks
}

struct Run {
    mbit: f64,
    retransmits: f64,
    stats: wan::WanStats,
    device_drops: u64,
    cpu: f64,
}

/// Packets dropped by the kernel at both TUN devices so far.
fn device_drops(wan: &Wan) -> u64 {
    [Side::Client, Side::Server]
        .into_iter()
        .map(|side| wan.device_drops(side).unwrap_or(0))
        .sum()
}

fn iperf_run(wan: &Wan, args: &[String]) -> Result<Run, String> {
    let before = wan.stats();
    let device_before = device_drops(wan);
    let cpu = cpu_seconds();
    let mut cmd = Command::new("iperf3");
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = wan
        .exec_in(Side::Client, &mut cmd)
        .spawn()
        .map_err(|e| format!("iperf3: {e}"))?;
    // Watch for Ctrl-C while iperf3 runs.
    let pid = child.id();
    let done = AtomicBool::new(false);
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if interrupted() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        Signal::SIGTERM,
                    );
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let out = child.wait_with_output();
        done.store(true, Ordering::Relaxed);
        out
    })
    .map_err(|e| format!("iperf3: {e}"))?;
    if interrupted() {
        return Err("interrupted".to_owned());
    }
    let json = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "iperf3 {} failed ({}): {} {}",
            args.join(" "),
            out.status,
            json_error(&json),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let bps = json_number(&json, "\"sum_received\"", "\"bits_per_second\"")
        .ok_or_else(|| "iperf3 output has no end.sum_received.bits_per_second".to_owned())?;
    let retransmits = json_number(&json, "\"sum_sent\"", "\"retransmits\"").unwrap_or(0.0);
    Ok(Run {
        mbit: bps / 1e6,
        retransmits,
        stats: wan.stats().since(&before),
        device_drops: device_drops(wan) - device_before,
        cpu: cpu_seconds() - cpu,
    })
}

fn json_error(json: &str) -> String {
    json.find("\"error\"")
        .map(|i| json[i..].lines().next().unwrap_or("").to_owned())
        .unwrap_or_default()
}

fn check(params: WanParams, time: u32, streams: u32) -> Result<ExitCode, String> {
    if time == 0 || streams == 0 {
        return Err("--time and --streams must be at least 1".to_owned());
    }
    match Command::new("iperf3").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => return Err("iperf3 not found (Debian package iperf3)".to_owned()),
    }
    let wan = Wan::start(params.clone()).map_err(|e| e.to_string())?;
    println!("{}", describe(&wan));
    let read_sysctl = |path: &'static str| -> Result<String, WanError> {
        wan.run_in(Side::Client, || {
            std::fs::read_to_string(path)
                .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|e| format!("unreadable: {e}"))
        })
    };
    let tcp_wmem = read_sysctl("/proc/sys/net/ipv4/tcp_wmem").map_err(|e| e.to_string())?;
    let tcp_rmem = read_sysctl("/proc/sys/net/ipv4/tcp_rmem").map_err(|e| e.to_string())?;
    let cc = read_sysctl("/proc/sys/net/ipv4/tcp_congestion_control").map_err(|e| e.to_string())?;
    println!("client namespace: tcp_wmem {tcp_wmem}, tcp_rmem {tcp_rmem}, congestion control {cc}");

    let server_addr = wan.server_addr().to_string();
    let mut server = Command::new("iperf3");
    server
        .args(["-s", "-B", &server_addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let server = Reaper(
        wan.exec_in(Side::Server, &mut server)
            .spawn()
            .map_err(|e| format!("iperf3 server: {e}"))?,
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !wan
        .run_in(Side::Server, || listening(5201))
        .map_err(|e| e.to_string())?
    {
        if Instant::now() > deadline || interrupted() {
            return Err("iperf3 server did not start listening on port 5201".to_owned());
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let t = time.to_string();
    let multi_args: Vec<String> = [
        "-c",
        &server_addr,
        "-P",
        &streams.to_string(),
        "-t",
        &t,
        "-J",
    ]
    .map(String::from)
    .to_vec();
    let single_args: Vec<String> = ["-c", &server_addr, "-t", &t, "-J"]
        .map(String::from)
        .to_vec();
    let mut results = Vec::new();
    for args in [&multi_args, &single_args] {
        println!(
            "running: ip netns exec {} iperf3 {}",
            wan.client_ns(),
            args.join(" ")
        );
        let run = iperf_run(&wan, args)?;
        println!(
            "  {:.0} Mbit/s received, {} retransmits, emulator CPU {:.2} s, \
             {} packets dropped by the kernel at the TUN devices\n  c->s {}\n  s->c {}",
            run.mbit,
            run.retransmits,
            run.cpu,
            run.device_drops,
            run.stats.client_to_server,
            run.stats.server_to_client
        );
        results.push(run);
    }
    drop(server);
    drop(wan);

    let rate_mbit = params.rate_bits_per_sec as f64 / 1e6;
    let multi = &results[0];
    let single = &results[1];
    let wmem_max: f64 = tcp_wmem
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let rtt = (params.delay * 2).as_secs_f64();
    println!("\nsummary:");
    println!(
        "  {streams} streams: {:.0} Mbit/s = {:.1}% of {rate_mbit:.0} Mbit/s (need >= 90%), dropped {} packets (+{} at the TUN devices)",
        multi.mbit,
        100.0 * multi.mbit / rate_mbit,
        multi.stats.dropped(),
        multi.device_drops
    );
    if rtt > 0.0 {
        println!(
            "  1 stream:  {:.0} Mbit/s, dropped {} packets (+{} at the TUN devices); send buffer maximum (tcp_wmem) {} bytes / RTT {:.0} ms = {:.0} Mbit/s ceiling",
            single.mbit,
            single.stats.dropped(),
            single.device_drops,
            wmem_max,
            rtt * 1e3,
            wmem_max * 8.0 / rtt / 1e6
        );
    }
    if multi.mbit >= 0.9 * rate_mbit {
        println!("PASS");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("FAIL: {streams} streams reached less than 90% of the rate");
        Ok(ExitCode::from(1))
    }
}
