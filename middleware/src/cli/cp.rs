//! `gridos cp SRC DST`.

use crate::location::Location;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `gridos cp`.
#[derive(Args, Debug)]
pub struct CpArgs {
    /// Source: a local path or file:// URL.
    pub src: String,
    /// Destination: a local path or file:// URL; an existing directory receives the file
    /// under the source's name.
    pub dst: String,
    /// Print nothing on success.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Copies; exit status 0 only when every byte arrived.
pub fn run(a: CpArgs) -> Result<ExitCode, String> {
    let (Location::Local(src), Location::Local(dst)) = (
        Location::parse(&a.src).map_err(|e| e.to_string())?,
        Location::parse(&a.dst).map_err(|e| e.to_string())?,
    );
    let dst: PathBuf = if dst.is_dir() {
        let name = src
            .file_name()
            .ok_or_else(|| format!("cp: {} has no file name", src.display()))?;
        dst.join(name)
    } else {
        dst
    };
    if std::fs::canonicalize(&src)
        .ok()
        .is_some_and(|s| std::fs::canonicalize(&dst).ok() == Some(s))
    {
        return Err(format!(
            "cp: {} and {} are the same file",
            src.display(),
            dst.display()
        ));
    }
    let start = std::time::Instant::now();
    let r = gridos_io::copy_path(&src, &dst)
        .map_err(|e| format!("cp: {} → {}: {e}", src.display(), dst.display()))?;
    if !a.quiet {
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "{} → {}: {} bytes in {:.3} s ({:.1} MB/s, {:?})",
            src.display(),
            dst.display(),
            r.bytes,
            secs,
            r.bytes as f64 / secs.max(1e-9) / 1e6,
            r.method
        );
    }
    Ok(ExitCode::SUCCESS)
}
