//! `gridos ctl --socket PATH get KEY | set KEY VALUE | list | stats | tls-reload`: talk to
//! a running service's control socket.

use clap::{Args, Subcommand};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `gridos ctl`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  gridos ctl --socket /run/gridos/ftpd.sock stats
                  a running server's counters
  gridos ctl --socket /run/gridos/ftpd.sock set ftp.max_clients 200
                  change a setting live
  gridos ctl --socket /run/gridos/ftpd.sock tls-reload
                  load a renewed TLS certificate, key, client CA and grid-mapfile
                  (new connections use them; running sessions keep theirs)")]
pub struct CtlArgs {
    /// The service's control socket.
    #[arg(long)]
    pub socket: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// Control-socket commands.
#[derive(Subcommand, Debug)]
pub enum CtlCommand {
    /// Print one key's value.
    Get {
        /// e.g. ftp.threads, io.sndbuf_default
        key: String,
    },
    /// Change a key; applied live.
    Set {
        /// e.g. ftp.max_clients
        key: String,
        /// The new value.
        value: String,
    },
    /// Print every key and value.
    List,
    /// Print the service's counters.
    Stats,
    /// Reload the TLS certificate, key, client CA and grid-mapfile from their files
    /// (gridos ftpd); nothing changes unless all of them load.
    TlsReload,
}

/// Sends one command and prints the answer; exit status 1 on `err`.
pub fn run(a: CtlArgs) -> Result<ExitCode, String> {
    let line = match &a.command {
        CtlCommand::Get { key } => format!("get {key}\n"),
        CtlCommand::Set { key, value } => format!("set {key} {value}\n"),
        CtlCommand::List => "list\n".to_string(),
        CtlCommand::Stats => "stats\n".to_string(),
        CtlCommand::TlsReload => "tls-reload\n".to_string(),
    };
    if line.trim_end().contains('\n') {
        return Err("ctl: keys and values cannot contain line breaks".into());
    }
    let mut s = UnixStream::connect(&a.socket)
        .map_err(|e| format!("ctl: connecting to {}: {e}", a.socket.display()))?;
    s.write_all(line.as_bytes())
        .map_err(|e| format!("ctl: sending: {e}"))?;
    let mut out = std::io::stdout().lock();
    for l in BufReader::new(s).lines() {
        let l = l.map_err(|e| format!("ctl: reading: {e}"))?;
        if l == "ok" {
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(note) = l.strip_prefix("ok ") {
            eprintln!("ctl: {note}");
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(msg) = l.strip_prefix("err ") {
            eprintln!("ctl: {msg}");
            return Ok(ExitCode::FAILURE);
        }
        let _ = writeln!(out, "{l}");
    }
    Err("ctl: the service closed the connection without an answer".into())
}
