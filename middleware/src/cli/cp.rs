//! `gridos cp`: arguments in, a [`Copy`] run, its report out. The copy itself — plans,
//! resume, landing, trees, third-party — is the library's ([`crate::copy`]).

use crate::observe::CopyObserver;
use crate::options::{CopyOptions, Pipeline};
use crate::plan::TransferPlan;
use crate::{Algorithm, Copy, CopyReport, Url};
use clap::Args;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `gridos cp`.
#[derive(Args, Debug)]
#[command(
    after_help = super::exit::CP_EXAMPLES,
    after_long_help = super::exit::cp_long_help(URL_RULES)
)]
pub struct CpArgs {
    /// Source: a local path, file://, ftp://[user[:password]@]host[:port]/path,
    /// gridftp://…, http:// or https:// URL.
    pub src: String,
    /// Destination: a local path, file://, ftp:// or gridftp:// URL; an existing directory
    /// receives the source under its own name.
    pub dst: String,
    /// Copy directory trees.
    #[arg(short, long)]
    pub recursive: bool,
    /// Continue a partial destination instead of replacing it.
    #[arg(long)]
    pub resume: bool,
    /// Show a progress bar (default: when stderr is a terminal).
    #[arg(long, conflicts_with = "quiet")]
    pub progress: bool,
    /// Print nothing on success.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print a machine-readable summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// Parallel data connections (GridFTP MODE E); default: chosen from the path.
    #[arg(short = 'p', long = "parallel", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallel: Option<u32>,
    /// TCP buffer for every data connection (e.g. 16M), also asked of the server (SBUF);
    /// default: tuned.
    #[arg(long = "tcp-bs", value_name = "BYTES", value_parser = super::parse_size)]
    pub tcp_bs: Option<u64>,
    /// MODE E block size (default 1M).
    #[arg(long, value_name = "BYTES", value_parser = super::parse_size)]
    pub block_size: Option<u64>,
    /// Compare every file with the server's checksum of it (CKSM); ALG is MD5 (default),
    /// ADLER32, SHA1, SHA256, SHA512 or CRC32C.
    #[arg(long, value_name = "ALG", num_args = 0..=1, require_equals = true, default_missing_value = "MD5", value_parser = parse_alg)]
    pub verify: Option<Algorithm>,
    /// Copy only the part from byte N (with --length): ERET/ESTO partial transfers; the part
    /// lands at the same offset of the destination.
    #[arg(long, value_name = "N", requires = "length")]
    pub offset: Option<u64>,
    /// Length of the part to copy (with --offset).
    #[arg(long, value_name = "N", requires = "offset")]
    pub length: Option<u64>,
    /// Compress data on the wire (MODE Z, deflate): worth it on slow networks.
    #[arg(long, conflicts_with_all = ["parallel", "offset"])]
    pub compress: bool,
    /// Pipeline the files of a tree (the default against GridFTP servers; kept for
    /// scripts).
    #[arg(long, conflicts_with = "no_pipeline")]
    pub pipeline: bool,
    /// Copy a tree's files one after the other instead of pipelining them.
    #[arg(long)]
    pub no_pipeline: bool,
    /// Active mode: the server connects to us (PORT/EPRT) for stream-mode transfers and
    /// listings, for servers that cannot offer passive ports. MODE E downloads always work
    /// this way.
    #[arg(long)]
    pub active: bool,
    /// Keep modification times (MFMT on servers).
    #[arg(short = 't', long)]
    pub preserve: bool,
    /// FTP → FTP: fail instead of relaying through this machine when the servers refuse a
    /// direct (third-party) transfer.
    #[arg(long)]
    pub no_relay: bool,
    /// Report the tuning decisions (RTT, bandwidth, buffers, streams) on stderr: set from the
    /// global `-v`.
    #[arg(skip)]
    pub verbose: bool,
}

/// How URLs name paths, for `gridos cp --help`.
const URL_RULES: &str = "\
URL paths:
  ftp://host/dir/f        relative to the login directory (RFC 1738, as curl, wget, lftp)
  ftp://host/%2Fvar/f     absolute: %2F starts at the root
  gridftp://host/var/f    absolute (as globus-url-copy); gridftp://host/~/f is under home
  A password not in the URL is taken from GRIDOS_FTP_PASSWORD.";

fn parse_alg(a: &str) -> Result<Algorithm, String> {
    Algorithm::parse(a).ok_or_else(|| {
        format!("unknown algorithm {a:?} (MD5, ADLER32, SHA1, SHA256, SHA512, CRC32C)")
    })
}

impl From<&CpArgs> for CopyOptions {
    fn from(a: &CpArgs) -> CopyOptions {
        CopyOptions {
            recursive: a.recursive,
            resume: a.resume,
            verify: a.verify,
            parallel: a.parallel,
            tcp_buffer: a.tcp_bs,
            block_size: a.block_size,
            range: a.offset.zip(a.length),
            compress: a.compress,
            pipeline: match (a.pipeline, a.no_pipeline) {
                (_, true) => Pipeline::Never,
                (true, _) => Pipeline::Always,
                _ => Pipeline::Auto,
            },
            active: a.active,
            preserve_times: a.preserve,
            relay: !a.no_relay,
            ..CopyOptions::default()
        }
    }
}

/// The command line's observer: a progress bar, `-v` plan lines and notices on stderr.
struct Terminal {
    bar: Option<indicatif::ProgressBar>,
    verbose: bool,
}

impl CopyObserver for Terminal {
    fn planned(&self, endpoint: &str, plan: &TransferPlan) {
        if self.verbose {
            eprintln!("gridos: cp: {endpoint}: plan {}", json(plan));
        }
    }
    fn total(&self, _files: u64, bytes: u64) {
        if let Some(b) = &self.bar {
            b.set_length(bytes);
        }
    }
    fn progress(&self, done: u64, _total: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
        }
    }
    fn file_done(&self, _src: &str, dst: &str, _bytes: u64) {
        if let Some(b) = &self.bar {
            b.set_message(dst.to_string());
        }
    }
    fn notice(&self, text: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("gridos: cp: {text}")),
            None => eprintln!("gridos: cp: {text}"),
        }
    }
}

fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn progress_bar() -> indicatif::ProgressBar {
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bytes:>10} / {total_bytes:>10} {wide_bar} {binary_bytes_per_sec:>12} {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Copies; exit status 0 only when every byte arrived. The error's kind chooses the exit
/// code ([`super::exit::Code`]); SIGINT cancels the copy.
pub fn run(a: CpArgs) -> crate::Result<ExitCode> {
    let cp = |e: crate::Error| e.context("cp");
    let src = Url::parse(&a.src).map_err(|e| cp(e.into()))?;
    let dst = Url::parse(&a.dst).map_err(|e| cp(e.into()))?;
    let show_bar = !a.quiet && (a.progress || std::io::stderr().is_terminal());
    let term = Arc::new(Terminal {
        bar: show_bar.then(progress_bar),
        verbose: a.verbose,
    });
    let copy = Copy::new(src, dst)
        .options(CopyOptions::from(&a))
        .observer(term.clone());
    super::exit::cancel_on_interrupt(copy.cancel_token()).map_err(cp)?;
    let result = copy.run();
    if let Some(b) = &term.bar {
        b.finish_and_clear();
    }
    let r = result.map_err(cp)?;
    print_report(&a, &r);
    Ok(ExitCode::SUCCESS)
}

fn print_report(a: &CpArgs, r: &CopyReport) {
    if a.verbose {
        for t in &r.tuning {
            eprintln!("gridos: cp: tuning {}", json(t));
        }
        if let Some(t) = &r.third_party {
            eprintln!("gridos: cp: route {}", json(t));
        }
    }
    let mbps = r.bytes as f64 / r.seconds.max(1e-9) / 1e6;
    if a.json {
        let mut v = serde_json::json!({
            "src": r.src, "dst": r.dst, "bytes": r.bytes, "seconds": r.seconds,
            "mb_per_sec": mbps, "path": r.path, "files": r.files, "skipped": r.skipped,
            "directories": r.directories, "resumed": r.resumed, "complete": true,
            "verified": r.verified, "tuning": r.tuning,
        });
        if let Some(t) = &r.third_party {
            v["third_party"] = t.third_party.into();
            v["reason"] = t.reason.clone().into();
            v["control_round_trips"] = t.control_round_trips.into();
        }
        // A reader that went away (`| head`) is not a failed copy.
        let _ = writeln!(std::io::stdout(), "{v}");
    } else if !a.quiet {
        let route = match &r.third_party {
            Some(t) if t.third_party => ", server to server",
            Some(_) => ", relayed",
            None => "",
        };
        eprintln!(
            "{} → {}: {} bytes in {} file{} in {:.3} s ({mbps:.1} MB/s, {}{route})",
            r.src,
            r.dst,
            r.bytes,
            r.files,
            if r.files == 1 { "" } else { "s" },
            r.seconds,
            r.path,
        );
    }
}
