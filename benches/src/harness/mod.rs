//! The side-by-side harness: the same transfer, in the same run, through gridos and through
//! established FTP/GridFTP peers; medians, whole-machine CPU per GB, and ratios.
//!
//! Run with `cargo run --release -p gridos-benches --bin harness -- --help`. Every cell is run
//! `runs` times (≥ 3) per pair; a pair whose peer is missing or fails is reported as FAILED
//! with the reason, never skipped silently or filled in.

pub mod machine;
pub mod peers;

use crate::wan::{Side, Wan, WanParams};
use peers::{ClientKind, Server, ServerKind, can_connect, get_cmd, get_tree_cmd, put_cmd};
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
}

impl Row {
    /// A row for `client ↔ kind`, announced on stderr as it completes.
    fn new(
        cell: Cell,
        client: ClientKind,
        kind: ServerKind,
        result: Result<Figures, String>,
    ) -> Row {
        let pair = format!("{} ↔ {}", client.name(), kind.name());
        eprintln!("{cell:?} {pair}: {}", summary(&result));
        Row {
            cell,
            pair,
            gridos: kind == ServerKind::Gridos,
            result,
        }
    }
}

/// Medians of a cell.
#[derive(Clone, Copy, Debug)]
pub struct Figures {
    /// Median wall time.
    pub wall: Duration,
    /// Bytes moved per run.
    pub bytes: u64,
    /// Median whole-machine CPU time.
    pub cpu: Duration,
    /// Peak server RSS (concurrent cell), bytes.
    pub peak_rss: Option<u64>,
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
        write_pattern(&root.join("wan"), s.wan_size, 3)?;
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
    Ok((wall, cpu))
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
    Figures {
        wall: median(walls),
        bytes,
        cpu: median(cpus),
        peak_rss,
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
            Cell::Wan => unreachable!("the WAN cell has its own runner"),
        };
        samples.push(sample);
    }
    let bytes = match cell {
        Cell::RetrNull | Cell::RetrFile | Cell::Stor => s.big,
        Cell::SmallFiles => 1000 * 1024,
        Cell::OneSmall => 1024,
        Cell::Concurrent => s.per_client * s.clients as u64,
        Cell::Wan => s.wan_size,
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
        if cell == Cell::Wan {
            let wan = Wan::start(WanParams {
                delay: Duration::from_millis(50),
                rate_bits_per_sec: 1_000_000_000,
                mtu: 9000,
                ..WanParams::default()
            });
            let pairs = [
                (ClientKind::Gridos, ServerKind::Gridos),
                (ClientKind::Globus(&[]), ServerKind::Globus),
                (ClientKind::Globus(&["-p", "4"]), ServerKind::Globus),
                (ClientKind::Curl, ServerKind::Vsftpd),
            ];
            let files = match &wan {
                Ok(w) => NetnsFiles::create(w).map_err(|e| e.to_string()),
                Err(e) => Err(format!("WAN emulator: {e}")),
            };
            for (client, kind) in pairs {
                let result = match (&wan, &files) {
                    (Ok(w), Ok(_)) => wan_cell(client, kind, w, &data, s),
                    (_, Err(e)) => Err(e.clone()),
                    (Err(e), _) => Err(format!("WAN emulator: {e}")),
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
    for r in rows {
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
    out
}
