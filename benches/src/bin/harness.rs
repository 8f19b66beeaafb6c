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
            "\n## Side-by-side harness\n\nCommand: `{}` (big file {} bytes, {} runs per cell, medians; load average at the end: {}).\nCPU is whole-machine busy time from /proc/stat during each run.\n\n{table}",
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
