//! `gridos`: the one command-line front end. Parsing and dispatch only; see
//! `gridos_middleware::cli` for the subcommands.

use clap::{Parser, Subcommand};
use gridos_middleware::cli;
use gridos_middleware::cli::exit::Failure;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "gridos",
    version,
    about = "GridOS services: zero-copy transfers, FTP/GridFTP, grid processes",
    after_help = EXAMPLES
)]
struct Cli {
    /// More output (repeat for more). `cp`: -v the plan in human lines, -vv also the
    /// buffer monitor's adjustments as they happen and the plans as JSON, -vvv and more the
    /// logs; other commands: info, debug, then trace logs.
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Copy SRC to DST (local paths, file:// and ftp:// URLs).
    Cp(cli::cp::CpArgs),
    /// Keep remote files in the shared local cache: add, delete, cleanup, list, budget.
    Cache(cli::cache::CacheArgs),
    /// Move a generated file both ways over loopback through the real stack and verify it.
    Selftest(cli::selftest::SelftestArgs),
    /// Run the FTP server in the foreground.
    Ftpd(cli::ftpd::FtpdArgs),
    /// Add or replace a user in an ftpd password file (password on stdin).
    Passwd(cli::passwd::PasswdArgs),
    /// Get or set a running service's keys, or read its stats, over its control socket.
    Ctl(cli::ctl::CtlArgs),
    #[command(flatten)]
    Grid(cli::grid::GridCommand),
}

const EXAMPLES: &str = "\
Examples:
  gridos cp -p 4 gridftp://data.example.org/archive/run7.h5 /scratch/
                  GridFTP download over 4 parallel streams
  gridos cp ftp://alice@a.example.org/run7.h5 gridftp://b.example.org/store/run7.h5
                  third-party copy, server to server (password from GRIDOS_FTP_PASSWORD)
  gridos ftpd --docroot /srv/ftp --listen 0.0.0.0:2121 --anonymous
                  serve /srv/ftp read-only to anonymous users
Exit codes: see `gridos cp --help`.";

fn main() -> ExitCode {
    let args = Cli::parse();
    // cp's first two -v are its own lines (the plan, the monitor), not log levels.
    let log_level = match args.command {
        Command::Cp(_) => args.verbose.saturating_sub(2),
        _ => args.verbose,
    };
    cli::init_logging(log_level);
    let result: Result<ExitCode, Failure> = match args.command {
        Command::Cp(mut a) => {
            a.verbose = args.verbose;
            // Before any thread starts, so that only the copy's waiter sees SIGINT.
            cli::exit::block_interrupts()
                .and_then(|()| cli::cp::run(a))
                .map_err(Failure::from)
        }
        Command::Cache(a) => {
            cli::cache::run(a, &gridos_middleware::fetch::Fetcher::default()).map_err(Failure::from)
        }
        Command::Selftest(a) => cli::selftest::run(a).map_err(Failure::from),
        Command::Ftpd(a) => cli::ftpd::run(a).map_err(Failure::from),
        Command::Passwd(a) => cli::passwd::run(a).map_err(Failure::from),
        Command::Ctl(a) => cli::ctl::run(a).map_err(Failure::from),
        Command::Grid(c) => cli::grid::run(c).map_err(|e| Failure::from(e.to_string())),
    };
    cli::exit::finish(result)
}
