//! `gridos selftest`.

use clap::Args;
use std::process::ExitCode;

/// Arguments of `gridos selftest`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  gridos selftest
                  1 GiB up and down over loopback three times, verified by SHA-256;
                  the median round, the slowest and the fastest
  gridos selftest --size 256MiB --path splice --json
                  a smaller run on a forced I/O path, as JSON
  gridos selftest --tls --size 256MiB
                  the same over FTPS (a certificate made for the run), and MODE E over TLS")]
pub struct SelftestArgs {
    /// Size of the generated file (e.g. 1GiB, 256MiB, 1000000).
    #[arg(long, default_value = "1GiB", value_parser = super::parse_size)]
    pub size: u64,
    /// Force an I/O path: io_uring-splice, splice or read-write.
    #[arg(long)]
    pub path: Option<gridos_io::IoPath>,
    /// Directory for the temporary files.
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Over TLS: explicit FTPS against the in-process server with a certificate generated
    /// for the run, data connections protected (PROT P), plus a MODE E download.
    #[arg(long)]
    pub tls: bool,
    /// Round trips; the median round is reported with the slowest and the fastest.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub rounds: u16,
}

/// Runs the self-test and prints its figures.
pub fn run(a: SelftestArgs) -> Result<ExitCode, String> {
    let opts = crate::selftest::SelftestOptions {
        size: a.size,
        path: a.path,
        dir: a.dir,
        tls: a.tls,
        rounds: usize::from(a.rounds),
    };
    let transport = if a.tls { "ftps" } else { "ftp" };
    let run = crate::selftest::run(&opts).map_err(|e| format!("selftest FAILED: {e}"))?;
    let dirs = crate::selftest::summarize(&run.legs);
    if a.json {
        let v: Vec<_> = dirs
            .iter()
            .map(|l| {
                serde_json::json!({
                    "direction": l.direction, "bytes": l.bytes, "rounds": l.rounds,
                    "seconds": l.seconds, "mb_per_sec": l.mb_per_sec,
                    "mb_per_sec_min": l.mb_per_sec_min, "mb_per_sec_max": l.mb_per_sec_max,
                    "cpu_seconds_per_gb": l.cpu_seconds_per_gb, "path": l.path.map(|p| p.name()),
                    "how": l.how, "verified": true, "sha256": l.sha256, "transport": transport,
                    "filesystem": run.filesystem,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        println!(
            "gridos selftest: {} bytes to and from an in-process gridos FTP server on 127.0.0.1 \
             (control + passive data connection{}), {} round{}, files on {}, verified by SHA-256",
            a.size,
            if a.tls {
                ", TLS on both with a certificate made for this run"
            } else {
                ""
            },
            opts.rounds,
            if opts.rounds == 1 { "" } else { "s" },
            run.filesystem,
        );
        println!(
            "{:<16} {:>10} {:>10} {:>21} {:>14}  path",
            "direction", "seconds", "MB/s", "(slowest – fastest)", "CPU s per GB"
        );
        for l in &dirs {
            println!(
                "{:<16} {:>10.3} {:>10.1} {:>21} {:>14.3}  {}",
                l.direction,
                l.seconds,
                l.mb_per_sec,
                format!("({:.0} – {:.0})", l.mb_per_sec_min, l.mb_per_sec_max),
                l.cpu_seconds_per_gb,
                l.how
            );
        }
        if let Some(l) = dirs.first() {
            println!("sha256 {}", l.sha256);
        }
        println!("OK");
    }
    Ok(ExitCode::SUCCESS)
}
