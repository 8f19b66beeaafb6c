//! `gridos passwd FILE USER`: add or replace a user in an ftpd password file.

use clap::Args;
use gridos_ftp::server::PasswordFile;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `gridos passwd`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  gridos passwd /etc/gridos/ftpd.passwd alice
                  asks for alice's password and stores its Argon2id hash
  printf '%s\\n' \"$PW\" | gridos passwd ftpd.passwd bob
                  the password from a script")]
pub struct PasswdArgs {
    /// The password file (created with mode 0600 if missing; rewritten atomically).
    pub file: PathBuf,
    /// The user to add or replace.
    pub user: String,
}

/// Reads the password (first line of standard input) and stores its Argon2id hash.
pub fn run(a: PasswdArgs) -> Result<ExitCode, String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password for {}: ", a.user);
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("passwd: reading the password: {e}"))?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err("passwd: empty password (give it on standard input)".into());
    }
    PasswordFile::update_file(&a.file, &a.user, password).map_err(|e| format!("passwd: {e}"))?;
    eprintln!("passwd: {} set in {}", a.user, a.file.display());
    Ok(ExitCode::SUCCESS)
}
