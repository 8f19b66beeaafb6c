//! Subcommands of the `gridos` binary. Each module owns its clap arguments and its `run`.

pub mod cache;
pub mod cp;
pub mod ctl;
pub mod exit;
pub mod ftpd;
pub mod grid;
pub mod passwd;
pub mod selftest;

/// Sets up `tracing` output on stderr: warnings by default, more with each `-v`, or whatever
/// `RUST_LOG` says.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        // The FTP client's warnings (a password in clear) reach the user as the front end's
        // own messages, worded for the command line; not twice.
        0 => "warn,gridos_ftp::client=error",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Parses a byte count with an optional unit: `1048576`, `64k`, `256MiB`, `1G`, `1.5GB`.
/// Binary units (KiB, MiB, GiB, TiB and the bare k/m/g/t) are powers of 1024; decimal units
/// (kB, MB, GB, TB) powers of 1000.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim() {
        "" | "B" | "b" => 1,
        "k" | "K" | "KiB" | "kiB" => 1 << 10,
        "m" | "M" | "MiB" => 1 << 20,
        "g" | "G" | "GiB" => 1 << 30,
        "t" | "T" | "TiB" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        u => return Err(format!("unknown size unit {u:?} in {text:?}")),
    };
    let value: f64 = num.parse().map_err(|_| format!("{text:?} is not a size"))?;
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1234"), Ok(1234));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("-1").is_err());
    }
}
