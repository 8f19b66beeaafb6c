//! The side-by-side harness: the same transfer, in the same run, through gridos and through
//! established FTP/GridFTP peers; medians, whole-machine CPU per GB, and ratios.
//!
//! Run with `cargo run --release -p gridos-benches --bin harness -- --help`. Every cell is run
//! `runs` times (≥ 3) per pair; a pair whose peer is missing or fails is reported as FAILED
//! with the reason, never skipped silently or filled in.

pub mod disk;
pub mod load;
pub mod machine;
pub mod peers;
pub mod tls;

use crate::wan::{Side, Wan, WanParams};
use peers::{
    ClientKind, Login, Server, ServerKind, can_connect, get_cmd, get_tree_cmd, put_cmd,
    third_party_cmd,
};
use sha2::{Digest, Sha256};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// Files, ports, namespaces.
    #[error("setup: {0}")]
    Setup(String),
    /// A peer program is not installed.
    #[error("peer missing: {0}")]
    PeerMissing(String),
    /// A peer ran and failed (exit status, wrong bytes).
    #[error("{0}")]
    PeerFailed(String),
    /// The load client's own I/O.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A server answered the load client with an unexpected reply.
    #[error("{command}: {code} {text}")]
    Reply {
        /// The command (or "greeting").
        command: String,
        /// The reply code (0: the connection closed).
        code: u16,
        /// The reply text.
        text: String,
    },
    /// Bytes moved were not the bytes sent.
    #[error("{0}")]
    Mismatch(String),
}

/// The matrix cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Cell {
    /// Loopback RETR of the big file to /dev/null.
    RetrNull,
    /// Loopback RETR of the big file to a file (hash checked).
    RetrFile,
    /// Loopback STOR of the big file (hash checked on the server side).
    Stor,
    /// 1000 files of 1 KiB, recursive get (all bytes checked).
    SmallFiles,
    /// One 1 KiB file: connect + login + RETR.
    OneSmall,
    /// 100 concurrent clients × 64 MiB RETR to /dev/null; aggregate rate and server peak RSS.
    Concurrent,
    /// 512 MiB RETR over the emulated WAN (100 ms RTT, 1 Gbit/s, MTU 9000).
    Wan,
    /// 512 MiB server-to-server copy between two servers side by side in the server
    /// namespace, driven from the client namespace across the emulated WAN: the client pays
    /// only control round trips.
    ThirdParty,
    /// FTPS: the big file RETR (to /dev/null) over explicit TLS, gridos against
    /// curl ↔ vsftpd (OpenSSL), and both in clear; CPU of both ends (see [`tls`]).
    TlsRetr,
    /// FTPS: the big file STOR over explicit TLS (hash checked on the server side).
    TlsStor,
    /// The disk end: the big file downloaded and uploaded onto the file system of `--dir`,
    /// against local cp of it, interleaved rounds (see [`disk`]).
    Disk,
}

/// Harness settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Runs per cell and pair.
    pub runs: usize,
    /// Size of the big file.
    pub big: u64,
    /// Size per client in the concurrent cell.
    pub per_client: u64,
    /// Clients in the concurrent cell.
    pub clients: usize,
    /// Size of the WAN file.
    pub wan_size: u64,
    /// Random loss on the emulated WAN (a probability; 0: none).
    pub wan_loss: f64,
    /// Where data lives.
    pub dir: PathBuf,
}

/// One measured (or failed) cell × pair.
#[derive(Clone, Debug)]
pub struct Row {
    /// Cell.
    pub cell: Cell,
    /// "client ↔ server".
    pub pair: String,
    /// Whether this is the gridos pair.
    pub gridos: bool,
    /// Median figures, or the failure.
    pub result: Result<Figures, String>,
    /// What the client said about the transfer (third-party cell: route, round trips).
    pub note: Option<String>,
}

impl Row {
    /// A row for `client ↔ kind`, announced on stderr as it completes.
    fn new(
        cell: Cell,
        client: ClientKind,
        kind: ServerKind,
        result: Result<Figures, String>,
    ) -> Row {
        let pair = match cell {
            Cell::ThirdParty => format!("{} ↔ 2 × {}", client.name(), kind.name()),
            _ => format!("{} ↔ {}", client.name(), kind.name()),
        };
        eprintln!("{cell:?} {pair}: {}", summary(&result));
        Row {
            cell,
            pair,
            gridos: kind == ServerKind::Gridos,
            result,
            note: None,
        }
    }
}

/// Medians of a cell.
#[derive(Clone, Copy, Debug)]
pub struct Figures {
    /// Median wall time.
    pub wall: Duration,
    /// Fastest and slowest wall time of the runs.
    pub spread: (Duration, Duration),
    /// Bytes moved per run.
    pub bytes: u64,
    /// Median whole-machine CPU time.
    pub cpu: Duration,
    /// Peak server RSS (concurrent cell), bytes.
    pub peak_rss: Option<u64>,
    /// Median CPU time of the client and of the server process (FTPS cells).
    pub ends: Option<(Duration, Duration)>,
}

impl Figures {
    /// MB/s (10⁶ bytes).
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.wall.as_secs_f64().max(1e-9) / 1e6
    }
    /// Whole-machine CPU seconds per GB (10⁹ bytes).
    pub fn cpu_per_gb(&self) -> f64 {
        self.cpu.as_secs_f64() / (self.bytes.max(1) as f64 / 1e9)
    }
}

/// The client ↔ server pairs compared in loopback cells.
pub fn loopback_pairs() -> Vec<(ClientKind, ServerKind)> {
    vec![
        (ClientKind::Gridos, ServerKind::Gridos),
        (ClientKind::Globus(&[]), ServerKind::Globus),
        (ClientKind::Curl, ServerKind::Vsftpd),
        (ClientKind::Lftp, ServerKind::Proftpd),
    ]
}

/// The data set, created once.
pub struct Data {
    /// Server root (world-readable, `up/` world-writable).
    pub root: PathBuf,
    /// Client-side scratch.
    pub scratch: PathBuf,
    /// Where the small-file trees land: a tmpfs (/dev/shm) when there is one. Creating a
    /// thousand files on this machine's ext4 took anywhere from 30 ms to 900 ms depending on
    /// how many inodes earlier runs had just freed, which drowned what the cell compares —
    /// each tool's per-file protocol cost.
    pub small_scratch: PathBuf,
    big_hash: [u8; 32],
    wan_hash: [u8; 32],
    small_names: Vec<String>,
    _dir: tempfile::TempDir,
    _small_dir: Option<tempfile::TempDir>,
}

fn write_pattern(path: &Path, size: u64, seed: u64) -> Result<[u8; 32], HarnessError> {
    use std::io::Write;
    let f = std::fs::File::create(path)
        .map_err(|e| HarnessError::Setup(format!("{}: {e}", path.display())))?;
    let mut w = std::io::BufWriter::with_capacity(4 << 20, f);
    let mut h = Sha256::new();
    let mut x = seed | 1;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for c in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        w.write_all(&block[..n])
            .map_err(|e| HarnessError::Setup(e.to_string()))?;
        h.update(&block[..n]);
        left -= n as u64;
    }
    w.flush().map_err(|e| HarnessError::Setup(e.to_string()))?;
    Ok(h.finalize().into())
}

fn file_hash(path: &Path) -> Option<[u8; 32]> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).ok()?;
    Some(h.finalize().into())
}

impl Data {
    /// Generates the big file, the WAN file and the small-file tree under `settings.dir`.
    pub fn create(s: &Settings) -> Result<Data, HarnessError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("gridos-harness-")
            .tempdir_in(&s.dir)
            .map_err(|e| HarnessError::Setup(e.to_string()))?;
        let root = dir.path().join("root");
        let scratch = dir.path().join("scratch");
        for d in [&root, &root.join("up"), &root.join("small"), &scratch] {
            std::fs::create_dir_all(d).map_err(|e| HarnessError::Setup(e.to_string()))?;
        }
        let perm = |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
        perm(dir.path(), 0o755)
            .and(perm(&root, 0o755))
            .and(perm(&root.join("up"), 0o777))
            .and(perm(&root.join("small"), 0o755))
            .map_err(|e| HarnessError::Setup(e.to_string()))?;
        let big_hash = write_pattern(&root.join("big"), s.big, 1)?;
        write_pattern(&root.join("conc"), s.per_client, 2)?;
        let wan_hash = write_pattern(&root.join("wan"), s.wan_size, 3)?;
        write_pattern(&root.join("one"), 1024, 4)?;
        let small_names: Vec<String> = (0..1000).map(|i| format!("f{i:04}")).collect();
        for (i, n) in small_names.iter().enumerate() {
            write_pattern(&root.join("small").join(n), 1024, 100 + i as u64)?;
        }
        for e in walk(&root) {
            let _ = perm(&e, if e.is_dir() { 0o755 } else { 0o644 });
        }
        perm(&root.join("up"), 0o777).map_err(|e| HarnessError::Setup(e.to_string()))?;
        let small_dir = tempfile::Builder::new()
            .prefix("gridos-harness-small-")
            .tempdir_in("/dev/shm")
            .ok();
        let small_scratch = small_dir
            .as_ref()
            .map_or_else(|| scratch.clone(), |d| d.path().to_path_buf());
        Ok(Data {
            root,
            scratch,
            small_scratch,
            big_hash,
            wan_hash,
            small_names,
            _dir: dir,
            _small_dir: small_dir,
        })
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}

/// Runs `cmd`, returning wall and whole-machine CPU time; non-zero exit is an error.
fn timed(cmd: &mut Command) -> Result<(Duration, Duration), String> {
    timed_output(cmd).map(|(t, _)| t)
}

/// As [`timed`], also returning what the command printed on stdout.
fn timed_output(cmd: &mut Command) -> Result<((Duration, Duration), String), String> {
    let (c0, t0) = (machine::machine_busy(), Instant::now());
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    let (wall, cpu) = (t0.elapsed(), machine::machine_busy().saturating_sub(c0));
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            err.trim().chars().take(300).collect::<String>()
        ));
    }
    Ok((
        (wall, cpu),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Drops the page cache's dirty data so one run's writeback does not land in the next.
fn settle() {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
}

fn medians(samples: Vec<(Duration, Duration)>, bytes: u64, peak_rss: Option<u64>) -> Figures {
    let (walls, cpus): (Vec<_>, Vec<_>) = samples.into_iter().unzip();
    let spread = (
        walls.iter().min().copied().unwrap_or_default(),
        walls.iter().max().copied().unwrap_or_default(),
    );
    Figures {
        spread,
        wall: median(walls),
        bytes,
        cpu: median(cpus),
        peak_rss,
        ends: None,
    }
}

/// Runs one loopback cell for one pair.
fn loopback_cell(
    cell: Cell,
    client: ClientKind,
    kind: ServerKind,
    data: &Data,
    s: &Settings,
) -> Result<Figures, String> {
    let server = Server::start(kind, &data.root, Ipv4Addr::LOCALHOST, None, &can_connect)
        .map_err(|e| e.to_string())?;
    let mut samples = Vec::new();
    let mut peak = None;
    let runs = if cell == Cell::OneSmall {
        s.runs.max(10)
    } else {
        s.runs
    };
    for run in 0..runs {
        settle();
        let sample = match cell {
            Cell::RetrNull => timed(&mut get_cmd(
                client,
                &server.url("big"),
                Path::new("/dev/null"),
            ))?,
            Cell::RetrFile => {
                let dst = data.scratch.join("big.out");
                let _ = std::fs::remove_file(&dst);
                let t = timed(&mut get_cmd(client, &server.url("big"), &dst))?;
                if file_hash(&dst) != Some(data.big_hash) {
                    return Err("downloaded file differs from the original".into());
                }
                let _ = std::fs::remove_file(&dst);
                t
            }
            Cell::Stor => {
                let name = format!("up/big-{run}");
                let t = timed(&mut put_cmd(
                    client,
                    &data.root.join("big"),
                    &server.url(&name),
                ))?;
                let stored = data.root.join(&name);
                if file_hash(&stored) != Some(data.big_hash) {
                    return Err("uploaded file differs from the original".into());
                }
                let _ = std::fs::remove_file(stored);
                t
            }
            Cell::SmallFiles => {
                // Every client creates the destination directory itself (as `cp -r` does).
                let dst = data.small_scratch.join(format!("small-{run}"));
                let _ = std::fs::remove_dir_all(&dst);
                let t = timed(&mut get_tree_cmd(
                    client,
                    &server.url("small/"),
                    &dst,
                    &data.small_names,
                ))?;
                for n in &data.small_names {
                    if std::fs::read(dst.join(n)).ok()
                        != std::fs::read(data.root.join("small").join(n)).ok()
                    {
                        return Err(format!("small file {n} missing or different"));
                    }
                }
                let _ = std::fs::remove_dir_all(&dst);
                t
            }
            Cell::OneSmall => {
                let dst = data.scratch.join("one.out");
                let t = timed(&mut get_cmd(client, &server.url("one"), &dst))?;
                if std::fs::read(&dst).ok() != std::fs::read(data.root.join("one")).ok() {
                    return Err("1 KiB file differs".into());
                }
                t
            }
            Cell::Concurrent => {
                let (c0, t0) = (machine::machine_busy(), Instant::now());
                let mut children = Vec::new();
                for _ in 0..s.clients {
                    let mut c = get_cmd(client, &server.url("conc"), Path::new("/dev/null"));
                    c.stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::piped());
                    children.push(c.spawn().map_err(|e| e.to_string())?);
                }
                let mut max_rss = 0;
                let mut failed = None;
                loop {
                    max_rss = max_rss.max(machine::tree_rss(server.pid()));
                    let mut running = 0;
                    for ch in &mut children {
                        match ch.try_wait() {
                            Ok(None) => running += 1,
                            Ok(Some(st)) if !st.success() => {
                                failed = Some(format!("a client failed: {st}"))
                            }
                            _ => {}
                        }
                    }
                    if running == 0 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                if let Some(f) = failed {
                    return Err(f);
                }
                peak = Some(peak.unwrap_or(0).max(max_rss));
                (t0.elapsed(), machine::machine_busy().saturating_sub(c0))
            }
            Cell::Wan | Cell::ThirdParty | Cell::TlsRetr | Cell::TlsStor | Cell::Disk => {
                unreachable!("the WAN, FTPS and disk cells have their own runners")
            }
        };
        samples.push(sample);
    }
    let bytes = match cell {
        Cell::RetrNull
        | Cell::RetrFile
        | Cell::Stor
        | Cell::TlsRetr
        | Cell::TlsStor
        | Cell::Disk => s.big,
        Cell::SmallFiles => 1000 * 1024,
        Cell::OneSmall => 1024,
        Cell::Concurrent => s.per_client * s.clients as u64,
        Cell::Wan | Cell::ThirdParty => s.wan_size,
    };
    Ok(medians(samples, bytes, peak))
}

/// Runs the WAN cell for one client against `kind`, server and client in their namespaces.
fn wan_cell(
    client: ClientKind,
    kind: ServerKind,
    wan: &Wan,
    data: &Data,
    s: &Settings,
) -> Result<Figures, String> {
    let probe = |addr| {
        wan.run_in(Side::Client, || can_connect(addr))
            .unwrap_or(false)
    };
    let server = Server::start(kind, &data.root, wan.server_addr(), Some(wan), &probe)
        .map_err(|e| e.to_string())?;
    let mut samples = Vec::new();
    for _ in 0..s.runs {
        let dst = data.scratch.join("wan.out");
        let _ = std::fs::remove_file(&dst);
        let cmd = get_cmd(client, &server.url("wan"), &dst);
        let t = timed(&mut peers::netns_exec(wan.ns(Side::Client), &cmd))?;
        if std::fs::metadata(&dst).map(|m| m.len()).ok() != Some(s.wan_size) {
            return Err("WAN download has the wrong size".into());
        }
        samples.push(t);
    }
    Ok(medians(samples, s.wan_size, None))
}

/// What `gridos cp --json` said about one server-to-server copy.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Route {
    third_party: Option<bool>,
    control_round_trips: Option<u64>,
    reason: Option<String>,
    path: Option<String>,
}

impl Route {
    fn parse(summary: &str) -> Route {
        Route {
            third_party: json_value(summary, "third_party").and_then(|v| v.parse().ok()),
            control_round_trips: json_value(summary, "control_round_trips")
                .and_then(|v| v.parse().ok()),
            reason: json_value(summary, "reason").filter(|v| v != "null"),
            path: json_value(summary, "path").filter(|v| v != "null"),
        }
    }
}

/// The value of top-level `key` in a one-line JSON object: a string's contents (an escape
/// reduced to the character it escapes), or a scalar's text. Keys of nested objects (the
/// `tuning` entries also have a `reason`) are skipped. Enough for the scalars and strings
/// this reads from `gridos cp --json`, without a JSON dependency.
fn json_value(json: &str, key: &str) -> Option<String> {
    let b = json.as_bytes();
    let (mut i, mut depth) = (0, 0usize);
    // The end of the string starting at `i` (just past its closing quote).
    let string_end = |mut i: usize| {
        i += 1;
        while i < b.len() && b[i] != b'"' {
            i += if b[i] == b'\\' { 2 } else { 1 };
        }
        i + 1
    };
    while i < b.len() {
        match b[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'"' => {
                let end = string_end(i);
                let after = json.get(end.min(json.len())..)?.trim_start();
                if depth == 1 && after.starts_with(':') && json.get(i + 1..end - 1) == Some(key) {
                    return Some(json_scalar(after[1..].trim_start()));
                }
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// A JSON string's contents, or a scalar's text up to the next `,` or `}`.
fn json_scalar(rest: &str) -> String {
    if let Some(body) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => out.extend(chars.next()),
                c => out.push(c),
            }
        }
        out
    } else {
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        rest[..end].trim().to_string()
    }
}

/// One sentence on the routes of the gridos runs: server to server or relayed (and why),
/// the control round trips each run reported and what they cost at `rtt`.
fn route_note(routes: &[Route], rtt: Duration) -> String {
    let direct = routes
        .iter()
        .filter(|r| r.third_party == Some(true))
        .count();
    let mut note = format!("server to server in {direct} of {} runs", routes.len());
    if let Some(p) = routes.iter().find_map(|r| r.path.clone()) {
        note += &format!(" ({p})");
    }
    let trips: Vec<u64> = routes
        .iter()
        .filter_map(|r| r.control_round_trips)
        .collect();
    if !trips.is_empty() {
        let list: Vec<String> = trips.iter().map(u64::to_string).collect();
        let mut sorted = trips.clone();
        sorted.sort_unstable();
        let mid = sorted[sorted.len() / 2];
        note += &format!(
            "; control round trips {} (median {mid} × {} ms RTT = {:.1} s)",
            list.join(", "),
            rtt.as_millis(),
            mid as f64 * rtt.as_secs_f64()
        );
    }
    if let Some(why) = routes.iter().find_map(|r| r.reason.clone()) {
        note += &format!("; relayed because: {why}");
    }
    if routes.iter().any(|r| r.third_party.is_none()) {
        note += "; some summaries had no `third_party` key";
    }
    note
}

/// Runs the third-party cell for one client: two servers of `kind` side by side in the
/// server namespace (same address, two ports), the client in the client namespace. The
/// destination file is checked on the server side (size and SHA-256).
fn third_party_cell(
    client: ClientKind,
    kind: ServerKind,
    wan: &Wan,
    rtt: Duration,
    data: &Data,
    s: &Settings,
    login: &Login,
) -> Result<(Figures, Option<String>), String> {
    let probe = |addr| {
        wan.run_in(Side::Client, || can_connect(addr))
            .unwrap_or(false)
    };
    let start = || {
        Server::start_with(
            kind,
            &data.root,
            wan.server_addr(),
            Some(wan),
            &probe,
            Some(login),
        )
        .map_err(|e| e.to_string())
    };
    let (a, b) = (start()?, start()?);
    let mut samples = Vec::new();
    let mut routes = Vec::new();
    for run in 0..s.runs {
        let name = format!("up/tp-{run}");
        let stored = data.root.join(&name);
        let _ = std::fs::remove_file(&stored);
        settle();
        let cmd = third_party_cmd(client, &a.url("wan"), &b.url(&name))
            .ok_or_else(|| format!("{} has no server-to-server mode", client.name()))?;
        let mut cmd = peers::netns_exec(wan.ns(Side::Client), &cmd);
        cmd.env("GRIDOS_FTP_PASSWORD", &login.password);
        let (t, stdout) = timed_output(&mut cmd)?;
        let len = std::fs::metadata(&stored).map(|m| m.len()).ok();
        if len != Some(s.wan_size) {
            return Err(format!(
                "destination has {len:?} bytes, expected {}",
                s.wan_size
            ));
        }
        if file_hash(&stored) != Some(data.wan_hash) {
            return Err("destination file differs from the source (SHA-256)".into());
        }
        let _ = std::fs::remove_file(&stored);
        if client == ClientKind::Gridos {
            routes.push(Route::parse(&stdout));
        }
        samples.push(t);
    }
    let note = (!routes.is_empty()).then(|| route_note(&routes, rtt));
    Ok((medians(samples, s.wan_size, None), note))
}

/// The emulated WAN of the WAN cells (100 ms RTT, 1 Gbit/s, MTU 9000, `loss`) with its
/// netns files.
fn start_wan(loss: f64) -> (Result<Wan, String>, Result<NetnsFiles, String>) {
    let wan = Wan::start(WanParams {
        delay: WAN_RTT / 2,
        rate_bits_per_sec: 1_000_000_000,
        mtu: 9000,
        loss,
        ..WanParams::default()
    })
    .map_err(|e| format!("WAN emulator: {e}"));
    let files = match &wan {
        Ok(w) => NetnsFiles::create(w).map_err(|e| e.to_string()),
        Err(e) => Err(e.clone()),
    };
    (wan, files)
}

/// Round-trip time of the emulated WAN.
const WAN_RTT: Duration = Duration::from_millis(100);

/// `/etc/netns/NS/{hosts,resolv.conf}` for both WAN namespaces, which `ip netns exec` mounts
/// over the host's: the machine's host name maps to the namespace's own address and DNS is
/// empty (the Globus tools resolve their own host name and fail without this). Removed on
/// drop.
struct NetnsFiles(Vec<PathBuf>);

impl NetnsFiles {
    fn create(wan: &Wan) -> Result<NetnsFiles, HarnessError> {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into());
        let sides = [
            (Side::Client, wan.client_addr(), wan.server_addr()),
            (Side::Server, wan.server_addr(), wan.client_addr()),
        ];
        let mut files = NetnsFiles(Vec::new());
        for (side, own, other) in sides {
            let dir = Path::new("/etc/netns").join(wan.ns(side));
            let hosts = format!("127.0.0.1 localhost\n{own} {host} gwan-self\n{other} gwan-peer\n");
            std::fs::create_dir_all(&dir)
                .and_then(|_| std::fs::write(dir.join("hosts"), hosts))
                .and_then(|_| std::fs::write(dir.join("resolv.conf"), ""))
                .map_err(|e| HarnessError::Setup(format!("{}: {e}", dir.display())))?;
            files.0.push(dir);
        }
        Ok(files)
    }
}

impl Drop for NetnsFiles {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Runs the selected cells and returns one row per cell × pair.
pub fn run(cells: &[Cell], s: &Settings) -> Result<Vec<Row>, HarnessError> {
    let data = Data::create(s)?;
    let mut rows = Vec::new();
    for &cell in cells {
        if matches!(cell, Cell::TlsRetr | Cell::TlsStor) {
            rows.extend(tls::cell(cell, &data, s));
            continue;
        }
        if cell == Cell::Disk {
            rows.extend(disk::cell(&data, s));
            continue;
        }
        if cell == Cell::ThirdParty {
            let (wan, files) = start_wan(s.wan_loss);
            let login = Login::create("bench", "gridos-bench-tp").map_err(|e| e.to_string());
            for (client, kind) in [
                (ClientKind::Gridos, ServerKind::Gridos),
                (ClientKind::Globus(&[]), ServerKind::Globus),
            ] {
                let (result, note) = match (&wan, &files, &login) {
                    (Ok(w), Ok(_), Ok(l)) => {
                        match third_party_cell(client, kind, w, WAN_RTT, &data, s, l) {
                            Ok((f, note)) => (Ok(f), note),
                            Err(e) => (Err(e), None),
                        }
                    }
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => (Err(e.clone()), None),
                };
                let mut row = Row::new(cell, client, kind, result);
                if let Some(n) = note {
                    eprintln!("{cell:?} {}: {n}", row.pair);
                    row.note = Some(n);
                }
                rows.push(row);
            }
            continue;
        }
        if cell == Cell::Wan {
            let (wan, files) = start_wan(s.wan_loss);
            let pairs = if s.wan_loss > 0.0 {
                // With loss, globus-url-copy's best is many streams; one or four streams
                // take minutes per run (loss halves a window that takes a long round trip
                // to grow back).
                vec![
                    (ClientKind::Gridos, ServerKind::Gridos),
                    (ClientKind::Globus(&["-p", "16"]), ServerKind::Globus),
                ]
            } else {
                vec![
                    (ClientKind::Gridos, ServerKind::Gridos),
                    (ClientKind::Globus(&[]), ServerKind::Globus),
                    (ClientKind::Globus(&["-p", "4"]), ServerKind::Globus),
                    (ClientKind::Curl, ServerKind::Vsftpd),
                ]
            };
            for (client, kind) in pairs {
                let result = match (&wan, &files) {
                    (Ok(w), Ok(_)) => wan_cell(client, kind, w, &data, s),
                    (Err(e), _) | (_, Err(e)) => Err(e.clone()),
                };
                rows.push(Row::new(cell, client, kind, result));
            }
            continue;
        }
        for (client, kind) in loopback_pairs() {
            // Many small files are what globus-url-copy's pipelining (-pp) and channel reuse
            // (-fast) are for: compare against its best.
            let client = match (cell, client) {
                (Cell::SmallFiles, ClientKind::Globus(_)) => ClientKind::Globus(&["-pp", "-fast"]),
                (_, c) => c,
            };
            let result = loopback_cell(cell, client, kind, &data, s);
            rows.push(Row::new(cell, client, kind, result));
        }
    }
    Ok(rows)
}

fn summary(r: &Result<Figures, String>) -> String {
    match r {
        Ok(f) => format!(
            "{:.3} s, {:.1} MB/s, {:.3} CPU s/GB",
            f.wall.as_secs_f64(),
            f.mb_per_sec(),
            f.cpu_per_gb()
        ),
        Err(e) => format!("FAILED: {e}"),
    }
}

/// The Markdown table, with the ratio of gridos to each peer within each cell.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| cell | client ↔ server | median wall | MB/s | CPU s/GB (machine) | peak server RSS | gridos ÷ this: throughput, CPU/GB |\n| --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let is_tls = |r: &Row| matches!(r.cell, Cell::TlsRetr | Cell::TlsStor);
    for r in rows
        .iter()
        .filter(|r| !matches!(r.cell, Cell::ThirdParty | Cell::Disk) && !is_tls(r))
    {
        let gridos = rows
            .iter()
            .find(|g| g.cell == r.cell && g.gridos)
            .and_then(|g| g.result.as_ref().ok());
        match &r.result {
            Ok(f) => {
                let ratio = match (gridos, r.gridos) {
                    (_, true) => "—".to_string(),
                    // CPU per GB means nothing for a 1 KiB transfer: compare times there.
                    (Some(g), false) if f.bytes < 1_000_000 => {
                        format!("time {:.2}×", g.wall.as_secs_f64() / f.wall.as_secs_f64())
                    }
                    (Some(g), false) => format!(
                        "{:.2}×, {:.2}×",
                        g.mb_per_sec() / f.mb_per_sec(),
                        g.cpu_per_gb() / f.cpu_per_gb()
                    ),
                    (None, false) => "n/a (gridos failed)".to_string(),
                };
                let wall = if f.wall < Duration::from_secs(1) {
                    format!("{:.1} ms", f.wall.as_secs_f64() * 1e3)
                } else {
                    format!("{:.3} s", f.wall.as_secs_f64())
                };
                let rss = f
                    .peak_rss
                    .map(|b| format!("{:.1} MiB", b as f64 / (1 << 20) as f64))
                    .unwrap_or_else(|| "—".into());
                let cpu = if f.bytes >= 1_000_000 {
                    format!("{:.3}", f.cpu_per_gb())
                } else {
                    "—".into()
                };
                out += &format!(
                    "| {:?} | {} | {wall} | {:.1} | {cpu} | {rss} | {ratio} |\n",
                    r.cell,
                    r.pair,
                    f.mb_per_sec(),
                );
            }
            Err(e) => {
                out += &format!(
                    "| {:?} | {} | FAILED: {} | | | | |\n",
                    r.cell,
                    r.pair,
                    e.replace('|', "/").replace('\n', " ")
                )
            }
        }
    }
    let tp: Vec<&Row> = rows.iter().filter(|r| r.cell == Cell::ThirdParty).collect();
    let tls_rows: Vec<&Row> = rows.iter().filter(|r| is_tls(r)).collect();
    let disk_rows: Vec<&Row> = rows.iter().filter(|r| r.cell == Cell::Disk).collect();
    if tp.len() + tls_rows.len() + disk_rows.len() == rows.len() {
        // Only third-party, FTPS and disk rows: no empty main table.
        out.clear();
    }
    if !disk_rows.is_empty() {
        let t = disk::table(&disk_rows);
        out += if out.is_empty() { t.trim_start() } else { &t };
    }
    if !tp.is_empty() {
        let t = third_party_table(&tp);
        out += if out.is_empty() { t.trim_start() } else { &t };
    }
    if !tls_rows.is_empty() {
        let t = tls::table(&tls_rows);
        out += if out.is_empty() { t.trim_start() } else { &t };
    }
    out
}

/// The third-party rows: wall time (median, fastest–slowest), the ratio of gridos's median
/// to each peer's, and what `gridos cp --json` said about the route.
fn third_party_table(rows: &[&Row]) -> String {
    let secs = |d: Duration| d.as_secs_f64();
    let gridos = rows
        .iter()
        .find(|g| g.gridos)
        .and_then(|g| g.result.as_ref().ok());
    let mut out = String::from(
        "\n| cell | client ↔ servers | median wall | fastest–slowest | MB/s | gridos time ÷ this | route (gridos cp --json) |\n| --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        let note = r.note.as_deref().unwrap_or("—").replace('|', "/");
        match &r.result {
            Ok(f) => {
                let ratio = match (gridos, r.gridos) {
                    (_, true) => "—".to_string(),
                    (Some(g), false) => format!("{:.2}×", secs(g.wall) / secs(f.wall)),
                    (None, false) => "n/a (gridos failed)".to_string(),
                };
                out += &format!(
                    "| {:?} | {} | {:.3} s | {:.3}–{:.3} s | {:.1} | {ratio} | {note} |\n",
                    r.cell,
                    r.pair,
                    secs(f.wall),
                    secs(f.spread.0),
                    secs(f.spread.1),
                    f.mb_per_sec(),
                );
            }
            Err(e) => {
                out += &format!(
                    "| {:?} | {} | FAILED: {} | | | | {note} |\n",
                    r.cell,
                    r.pair,
                    e.replace('|', "/").replace('\n', " ")
                )
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_reads_top_level_keys_only() {
        let line = r#"{"bytes":5,"tuning":[{"reason":"bdp, 4 streams"}],"path":"server to server, MODE E","third_party":true,"reason":null,"control_round_trips":9}"#;
        let r = Route::parse(line);
        assert_eq!(r.third_party, Some(true));
        assert_eq!(r.control_round_trips, Some(9));
        assert_eq!(r.reason, None);
        assert_eq!(r.path.as_deref(), Some("server to server, MODE E"));
        let relayed = r#"{"tuning":[],"third_party":false,"reason":"500 \"PORT\" refused, foreign","control_round_trips":null}"#;
        let r = Route::parse(relayed);
        assert_eq!(r.third_party, Some(false));
        assert_eq!(r.reason.as_deref(), Some(r#"500 "PORT" refused, foreign"#));
        assert_eq!(r.control_round_trips, None);
        assert_eq!(Route::parse(r#"{"tuning":[{"reason":"x"}]}"#).reason, None);
    }
}
