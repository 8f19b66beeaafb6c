//! `wanem`: runs the user-space WAN emulator (two network namespaces joined by a
//! delayed, rate-limited link), a command inside it, or its iperf3 self-check.

use std::ffi::OsString;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Blocks SIGINT, SIGTERM and SIGHUP in every thread (call before any thread starts)
/// and waits for them on a dedicated thread that raises `INTERRUPTED`.
fn catch_signals() -> Result<(), String> {
    let mut set = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(sig);
    }
    set.thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            while set.wait().is_ok() {
                INTERRUPTED.store(true, Ordering::Relaxed);
            }
        })
        .map_err(|e| format!("spawning the signal thread: {e}"))?;
    Ok(())
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Waits for `child`, or stops it (SIGTERM) when we are interrupted.
fn wait_child(child: &mut Child) -> Result<std::process::ExitStatus, String> {
    loop {
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
        None => run(params, &cli.command),
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

fn run(params: WanParams, command: &[OsString]) -> Result<ExitCode, String> {
    let wan = Wan::start(params).map_err(|e| e.to_string())?;
    eprintln!("{}", describe(&wan));
    let code = if let Some((program, args)) = command.split_first() {
        let mut cmd = Command::new(program);
        cmd.args(args);
        let mut child = wan
            .exec_in(Side::Client, &mut cmd)
            .spawn()
            .map_err(|e| format!("cannot run {program:?}: {e}"))?;
        let status = wait_child(&mut child)?;
        ExitCode::from(status.code().map_or(1, |c| c as u8))
    } else {
        eprintln!("forwarding; Ctrl-C to stop and delete the namespaces");
        while !interrupted() {
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
