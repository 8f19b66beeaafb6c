//! `harness`: the side-by-side benchmark of gridos against real FTP/GridFTP peers.
//! See `benches/README.md`.

use clap::Parser;
use gridos_benches::harness::{self, Cell, Settings};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Side-by-side transfers: gridos vs globus, vsftpd/curl, proftpd/lftp")]
struct Args {
    /// Cells to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    cells: Vec<Cell>,
    /// Runs per cell and pair (medians are reported; at least 3).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Size of the big file (bytes).
    #[arg(long, default_value_t = 1 << 30)]
    big: u64,
    /// Bytes per client in the concurrent cell.
    #[arg(long, default_value_t = 64 << 20)]
    per_client: u64,
    /// Clients in the concurrent cell.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Size of the WAN file (bytes).
    #[arg(long, default_value_t = 512 << 20)]
    wan_size: u64,
    /// Random loss on the emulated WAN of the wan and third-party cells: a fraction
    /// (0.001) or a percentage (0.1%); with loss the wan cell measures gridos cp against
    /// globus-url-copy -p 16 only.
    #[arg(long, default_value = "0", value_parser = |s: &str| gridos_benches::wan::parse_loss(s).map_err(|e| e.to_string()))]
    wan_loss: f64,
    /// Directory for the data (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Append the table to this results file (default: benches/RESULTS.md of the source tree).
    #[arg(long)]
    results: Option<PathBuf>,
    /// Print only; do not append to the results file.
    #[arg(long)]
    no_record: bool,
}

fn main() -> ExitCode {
    let a = Args::parse();
    if a.runs < 3 {
        eprintln!("harness: --runs must be at least 3 (medians)");
        return ExitCode::FAILURE;
    }
    let cells = if a.cells.is_empty() {
        vec![
            Cell::RetrNull,
            Cell::RetrFile,
            Cell::Stor,
            Cell::SmallFiles,
            Cell::OneSmall,
            Cell::Concurrent,
            Cell::Wan,
            Cell::ThirdParty,
        ]
    } else {
        a.cells.clone()
    };
    let settings = Settings {
        runs: a.runs,
        big: a.big,
        per_client: a.per_client,
        clients: a.clients,
        wan_size: a.wan_size,
        wan_loss: a.wan_loss,
        dir: a.dir.clone().unwrap_or_else(std::env::temp_dir),
    };
    let rows = match harness::run(&cells, &settings) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("harness: {e}");
            return ExitCode::FAILURE;
        }
    };
    let table = harness::table(&rows);
    println!("{table}");
    if !a.no_record {
        let path = a
            .results
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md"));
        let cmd: Vec<String> = std::env::args().collect();
        let uptime = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let section = format!(
            "\n## Side-by-side harness, {} UTC\n\nCommand: `{}` (big file {} bytes, {} runs per cell, medians; load average at the end: {}).\nCPU is whole-machine busy time from /proc/stat during each run.\n\n{table}",
            utc_now(),
            cmd.join(" "),
            settings.big,
            settings.runs,
            uptime
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
        match std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(section.as_bytes()))
        {
            Ok(()) => eprintln!("appended to {}", path.display()),
            Err(e) => eprintln!("harness: cannot append to {}: {e}", path.display()),
        }
    }
    if rows.iter().any(|r| r.result.is_err()) {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// The current UTC date and time as `YYYY-MM-DD HH:MM` (civil-from-days, no time crate).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}
