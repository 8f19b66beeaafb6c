//! `load`: one server under load — sessions held, concurrent downloads and uploads, churn —
//! for gridos ftpd, globus-gridftp-server and vsftpd in the same run, driven by the same
//! client (`gridos_benches::harness::load`). Appends a section to benches/RESULTS.md.
//!
//! ```sh
//! cargo run --release -p gridos-benches --bin load -- --sessions 1000 --clients 200 --churn 10000
//! ```

use clap::Parser;
use gridos_benches::harness::load::{self, Direction, Target};
use gridos_benches::harness::machine::CpuGroup;
use gridos_benches::harness::peers::{Server, ServerKind, can_connect};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Sessions held, concurrent transfers and churn against gridos, globus, vsftpd")]
struct Args {
    /// Control sessions held at once.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Concurrent clients in the download and the upload runs.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Bytes per client file.
    #[arg(long, default_value_t = 16 << 20)]
    size: u64,
    /// Runs of each concurrent measurement (medians reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Sequential sessions in the churn run.
    #[arg(long, default_value_t = 10_000)]
    churn: usize,
    /// Servers, in order.
    #[arg(long, value_delimiter = ',', default_value = "gridos,globus,vsftpd")]
    servers: Vec<String>,
    /// Directory for the data (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print only; do not append to benches/RESULTS.md.
    #[arg(long)]
    no_record: bool,
}

fn kind(name: &str) -> Option<ServerKind> {
    match name {
        "gridos" => Some(ServerKind::Gridos),
        "globus" => Some(ServerKind::Globus),
        "vsftpd" => Some(ServerKind::Vsftpd),
        "proftpd" => Some(ServerKind::Proftpd),
        _ => None,
    }
}

fn mib(b: u64) -> String {
    format!("{:.1}", b as f64 / (1 << 20) as f64)
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// One server's figures, as table cells.
struct Row {
    name: &'static str,
    sessions: String,
    down: String,
    up: String,
    churn: String,
    down_gbs: f64,
    up_gbs: f64,
    churn_rate: f64,
}

fn measure(k: ServerKind, a: &Args, dir: &std::path::Path) -> Result<Row, String> {
    let (_tree, root) = load::served_tree(dir).map_err(|e| e.to_string())?;
    load::prepare_downloads(&root, a.clients, a.size).map_err(|e| e.to_string())?;
    let server = Server::start(k, &root, [127, 0, 0, 1].into(), None, &can_connect)
        .map_err(|e| e.to_string())?;
    let t = Target::of(&server);
    // The server's CPU time, its forked sessions included (they inherit the group); the
    // group is removed after the server is gone.
    let cpu = CpuGroup::join(server.pid());
    let settle = Duration::from_secs(15);
    eprintln!("load: {}: {} sessions", k.name(), a.sessions);
    let s = load::hold_sessions(&t, a.sessions, settle).map_err(|e| format!("sessions: {e}"))?;
    let sessions = format!(
        "{} held ({:.1} s to open, {} processes); new client {:.1} ms; fds {} → {} → {}; RSS {} → {} → {} MiB",
        s.held,
        s.open_secs,
        s.processes,
        s.new_client.as_secs_f64() * 1e3,
        s.fds.0,
        s.fds.1,
        s.fds.2,
        mib(s.rss.0),
        mib(s.rss.1),
        mib(s.rss.2)
    );
    let mut cells = Vec::new();
    let mut rates = Vec::new();
    for d in [Direction::Down, Direction::Up] {
        eprintln!("load: {}: {} × {:?}", k.name(), a.clients, d);
        let mut gbs = Vec::new();
        let mut cpu_gb = Vec::new();
        let mut peak = 0;
        for _ in 0..a.runs {
            let before = cpu.as_ref().and_then(CpuGroup::usage);
            let r =
                load::concurrent(&t, a.clients, a.size, d).map_err(|e| format!("{d:?}: {e}"))?;
            let after = cpu.as_ref().and_then(CpuGroup::usage);
            if let (Some(b), Some(a)) = (before, after) {
                cpu_gb.push((a - b).as_secs_f64() / (r.bytes as f64 / 1e9));
            }
            gbs.push(r.gb_per_sec());
            peak = peak.max(r.peak_rss);
        }
        let (m, lo, hi) = median(gbs);
        let cpu_cell = if cpu_gb.is_empty() {
            "server CPU not measured (no cgroup)".to_string()
        } else {
            format!("server CPU {:.2} s/GB", median(cpu_gb).0)
        };
        cells.push(format!(
            "{m:.2} GB/s ({lo:.2}–{hi:.2}); {cpu_cell}; peak RSS {} MiB",
            mib(peak)
        ));
        rates.push(m);
    }
    eprintln!("load: {}: churn {}", k.name(), a.churn);
    let c = load::churn(&t, a.churn, settle).map_err(|e| format!("churn: {e}"))?;
    let churn = format!(
        "{:.0}/s ({} in {:.1} s); fds {} → {}; RSS {} → {} MiB",
        c.per_sec(),
        c.sessions,
        c.secs,
        c.fds.0,
        c.fds.1,
        mib(c.rss.0),
        mib(c.rss.1)
    );
    drop(server);
    drop(cpu);
    Ok(Row {
        name: k.name(),
        sessions,
        down: cells[0].clone(),
        up: cells[1].clone(),
        churn,
        down_gbs: rates[0],
        up_gbs: rates[1],
        churn_rate: c.per_sec(),
    })
}

fn main() -> ExitCode {
    let a = Args::parse();
    if a.runs == 0 || a.clients == 0 {
        eprintln!("load: --runs and --clients must be at least 1");
        return ExitCode::from(2);
    }
    let limit = load::raise_fd_limit();
    let dir = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    let mut rows = Vec::new();
    let mut failed = false;
    for name in &a.servers {
        let Some(k) = kind(name) else {
            eprintln!("load: no server {name:?} (gridos, globus, vsftpd, proftpd)");
            return ExitCode::from(2);
        };
        match measure(k, &a, &dir) {
            Ok(r) => rows.push(r),
            Err(e) => {
                eprintln!("load: {}: {e}", k.name());
                failed = true;
            }
        }
    }
    let mut table = String::from(
        "| server | sessions held | downloads at once | uploads at once | churn |\n|---|---|---|---|---|\n",
    );
    for r in &rows {
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {} |",
            r.name, r.sessions, r.down, r.up, r.churn
        );
    }
    if let Some(g) = rows.iter().find(|r| r.name == ServerKind::Gridos.name()) {
        for r in rows.iter().filter(|r| r.name != g.name) {
            let _ = writeln!(
                table,
                "\ngridos ftpd / {}: downloads {:.2}×, uploads {:.2}×, churn {:.2}×.",
                r.name,
                g.down_gbs / r.down_gbs,
                g.up_gbs / r.up_gbs,
                g.churn_rate / r.churn_rate
            );
        }
    }
    println!("{table}");
    if !a.no_record {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md");
        let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let section = format!(
            "\n## Load: sessions, concurrent transfers, churn ({})\n\nCommand: `{}`; {} clients × {} MiB, {} runs per concurrent cell (median, min–max), open-file limit {limit}; load average at the end: {}. One blocking client drives every server (anonymous, PASV, every byte checked). RSS and fds are the server's with all its processes.\n\n{table}",
            utc_date(),
            std::env::args().collect::<Vec<_>>().join(" "),
            a.clients,
            a.size >> 20,
            a.runs,
            load_avg
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
        if let Err(e) = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(section.as_bytes()))
        {
            eprintln!("load: cannot append to {}: {e}", path.display());
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn utc_date() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
