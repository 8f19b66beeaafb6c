//! `gridos`: the one command-line front end. Parsing and dispatch only; see
//! `gridos_middleware::cli` for the subcommands.

use clap::{Parser, Subcommand};
use gridos_middleware::cli;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "gridos",
    version,
    about = "GridOS services: zero-copy transfers, FTP/GridFTP, grid processes"
)]
struct Cli {
    /// More log output (repeat for more).
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

fn main() -> ExitCode {
    let args = Cli::parse();
    cli::init_logging(args.verbose);
    let result = match args.command {
        Command::Cp(mut a) => {
            a.verbose = args.verbose;
            cli::cp::run(a)
        }
        Command::Cache(a) => cli::cache::run(a, &gridos_middleware::fetch::Fetcher::default())
            .map_err(|e| e.to_string()),
        Command::Selftest(a) => cli::selftest::run(a),
        Command::Ftpd(a) => cli::ftpd::run(a),
        Command::Passwd(a) => cli::passwd::run(a),
        Command::Ctl(a) => cli::ctl::run(a),
        Command::Grid(c) => cli::grid::run(c).map_err(|e| e.to_string()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gridos: {e}");
            ExitCode::FAILURE
        }
    }
}
