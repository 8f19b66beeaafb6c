//! `gridos cp`: arguments in, a [`Copy`] run, its report out. The copy itself — plans,
//! resume, landing, trees, third-party — is the library's ([`crate::copy`]).

use crate::observe::{CopyObserver, TuneAction, TuneDecision};
use crate::options::{CopyOptions, Pipeline};
use crate::plan::{CeilingSource, Mode, TransferPlan};
use crate::{Algorithm, Copy, CopyReport, Url};
use clap::Args;
use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Arguments of `gridos cp`.
#[derive(Args, Debug)]
#[command(
    after_help = super::exit::CP_EXAMPLES,
    after_long_help = super::exit::cp_long_help(URL_RULES)
)]
pub struct CpArgs {
    /// Source: a local path, file://, ftp://[user[:password]@]host[:port]/path,
    /// ftps://… (implicit TLS), ftpes://… (explicit TLS), gridftp://…, http:// or https://
    /// URL.
    pub src: String,
    /// Destination: a local path, file://, ftp://, ftps://, ftpes:// or gridftp:// URL; an
    /// existing directory receives the source under its own name.
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
    /// Stream mode (MODE S, one data connection) even against a GridFTP server, as plain
    /// FTP clients do; a resumed download then continues at the local file's size (REST).
    #[arg(long, conflicts_with_all = ["parallel", "block_size", "compress", "offset"])]
    pub stream: bool,
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
    /// Give up after SECS seconds without an answer or without data moving (connecting,
    /// each reply, each transfer) [default: 30 to connect, 60 otherwise]; the copy then
    /// fails as a network error (exit 7) and `--resume` continues it.
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    pub timeout: Option<Duration>,
    /// Keep modification times (MFMT on servers).
    #[arg(short = 't', long)]
    pub preserve: bool,
    /// Do not reserve a download's disk blocks before it starts (by default they are, when
    /// the size is known, so that a full disk fails before any byte moves).
    #[arg(long)]
    pub no_preallocate: bool,
    /// Write a download back to disk as it lands and drop it from the page cache, so a large
    /// file arrives at a steady rate: off, auto (files of io.write_behind_min bytes and more,
    /// 4 GiB by default) or on. Default: the machine's io.write_behind.
    #[arg(long, value_name = "off|auto|on")]
    pub write_behind: Option<gridos_io::WriteBehindMode>,
    /// Where to remember what copies learn of servers (a login sent before the greeting of
    /// a server that answered one; the plan starts from the last copy's rate): a FILE, for
    /// every host, or off [default: $GRIDOS_HOST_MEMORY, else
    /// $XDG_STATE_HOME/gridos/hosts.json or ~/.local/state/gridos/hosts.json, for hosts
    /// other than this machine's loopback].
    #[arg(long, value_name = "FILE|off", value_parser = parse_host_memory)]
    pub host_memory: Option<crate::hosts::HostMemoryMode>,
    /// FTP → FTP: fail instead of relaying through this machine when the servers refuse a
    /// direct (third-party) transfer.
    #[arg(long)]
    pub no_relay: bool,
    /// Require TLS (AUTH TLS) on ftp:// and gridftp:// URLs: a server without it is an
    /// error, never a clear connection (curl's --ssl-reqd). ftps:// and ftpes:// are TLS
    /// anyway; without --tls a password is still protected whenever the server offers TLS.
    #[arg(long)]
    pub tls: bool,
    /// Trust the CA certificates in FILE (PEM) instead of the system's roots.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub cacert: Option<std::path::PathBuf>,
    /// Do not verify server certificates: still encrypted, but anyone on the path can pose
    /// as the server (said on every run).
    #[arg(long)]
    pub insecure: bool,
    /// Client certificate (PEM, the chain), for servers that log in by certificate; with
    /// --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM); with --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<std::path::PathBuf>,
    /// How many global `-v`: 1 reports the tuning decisions (RTT, bandwidth, buffers,
    /// streams, route) on stderr in one human line each; 2 adds the buffer monitor's
    /// adjustments as they happen, and the plans as JSON.
    #[arg(skip)]
    pub verbose: u8,
}

/// How URLs name paths, for `gridos cp --help`.
const URL_RULES: &str = "\
URL paths:
  ftp://host/dir/f        relative to the login directory (RFC 1738, as curl, wget, lftp)
  ftp://host/%2Fvar/f     absolute: %2F starts at the root
  gridftp://host/var/f    absolute (as globus-url-copy); gridftp://host/~/f is under home
  ftps://host/dir/f       implicit TLS (port 990); paths as ftp://
  ftpes://host/dir/f      explicit TLS (AUTH TLS, port 21); --tls requires it on ftp://
  A password not in the URL is taken from GRIDOS_FTP_PASSWORD. Without TLS it goes in
  clear, which gridos says; server certificates are checked against the system's roots
  (or --cacert FILE).";

fn parse_alg(a: &str) -> Result<Algorithm, String> {
    Algorithm::parse(a).ok_or_else(|| {
        format!("unknown algorithm {a:?} (MD5, ADLER32, SHA1, SHA256, SHA512, CRC32C)")
    })
}

fn parse_timeout(t: &str) -> Result<Duration, String> {
    let secs: f64 = t
        .trim()
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("{t:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 1e6 {
        return Err("the timeout must be a positive number of seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
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
            stream: a.stream,
            pipeline: match (a.pipeline, a.no_pipeline) {
                (_, true) => Pipeline::Never,
                (true, _) => Pipeline::Always,
                _ => Pipeline::Auto,
            },
            active: a.active,
            preserve_times: a.preserve,
            relay: !a.no_relay,
            timeout: a.timeout,
            preallocate: !a.no_preallocate,
            write_behind: a.write_behind,
            host_memory: a.host_memory.clone().unwrap_or_default(),
            tls: crate::TlsOptions {
                require: a.tls,
                ca_file: a.cacert.clone(),
                insecure: a.insecure,
                cert: a.cert.clone().zip(a.key.clone()),
            },
            ..CopyOptions::default()
        }
    }
}

/// The command line's observer: a progress line, `-v` plan lines and notices on stderr.
struct Terminal {
    bar: Option<indicatif::ProgressBar>,
    /// 1: one human line per plan decision; 2 and more: the plan as JSON too.
    verbose: u8,
    state: Mutex<Shown>,
    /// The text after the bar, drawn by the style's `{info}` key.
    info: Arc<Mutex<String>>,
}

/// Redraws at most this often (the copy reports every 100 ms).
const REDRAW: Duration = Duration::from_millis(250);

/// What the progress line shows.
#[derive(Default)]
struct Shown {
    /// Bytes the copy will move, 0 when unknown (a pipe, a listing without sizes).
    bytes: u64,
    files: u64,
    files_done: u64,
    /// A tree's file being copied (when pipelined: the last one done).
    current: String,
    rate: Rate,
    /// More bytes came than announced: from then on the total is shown as unknown.
    unknown: bool,
    drawn: Option<Instant>,
}

/// Bytes per second over the last [`RATE_WINDOW`] of samples. indicatif's own estimate
/// (a 15 s exponential average started when the bar is made) counts login and planning as
/// seconds without bytes and trails a ramp-up for many seconds: it showed a third of the
/// real rate. Samples start with the first byte.
#[derive(Default)]
struct Rate {
    samples: VecDeque<(Instant, u64)>,
}

const RATE_WINDOW: Duration = Duration::from_secs(3);

impl Rate {
    fn add(&mut self, now: Instant, done: u64) {
        if self.samples.back().is_some_and(|&(_, d)| done < d) {
            self.samples.clear();
        }
        if self.samples.is_empty() && done == 0 {
            return;
        }
        self.samples.push_back((now, done));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|&(t, _)| now.duration_since(t) >= RATE_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    fn per_sec(&self) -> Option<f64> {
        let (&(t0, d0), &(t1, d1)) = (self.samples.front()?, self.samples.back()?);
        let dt = t1.duration_since(t0).as_secs_f64();
        (dt >= 0.3).then(|| d1.saturating_sub(d0) as f64 / dt)
    }
}

impl Shown {
    fn known(&self) -> bool {
        self.bytes > 0 && !self.unknown
    }

    /// `24.00 MiB / 64.00 MiB  8.00 MiB/s  0:05 left  3/10 files  name`.
    fn describe(&self, done: u64) -> String {
        use indicatif::HumanBytes;
        use std::fmt::Write as _;
        let rate = self.rate.per_sec();
        let mut t = format!("{}", HumanBytes(done));
        if self.known() {
            let _ = write!(t, " / {}", HumanBytes(self.bytes));
        }
        match rate {
            Some(r) => {
                let _ = write!(t, "  {}/s", HumanBytes(r as u64));
            }
            None => t.push_str("  --/s"),
        }
        if self.known() {
            match rate.filter(|r| *r >= 1.0) {
                Some(r) => {
                    let left = self.bytes.saturating_sub(done) as f64 / r;
                    let _ = write!(t, "  {} left", clock(left));
                }
                None => t.push_str("  --:-- left"),
            }
        }
        if self.files > 1 {
            let _ = write!(t, "  {}/{} files", self.files_done, self.files);
            if !self.current.is_empty() {
                let _ = write!(t, "  {}", self.current);
            }
        }
        t
    }
}

/// `0:05`, `12:34`, `1:02:03`.
fn clock(seconds: f64) -> String {
    let s = seconds.ceil().min(360_000.0) as u64;
    match s {
        0..3600 => format!("{}:{:02}", s / 60, s % 60),
        _ => format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60),
    }
}

/// The end of a long name: `…c/d/file.bin`.
fn tail(name: &str) -> String {
    const MAX: usize = 32;
    let n = name.chars().count();
    if n <= MAX {
        return name.to_string();
    }
    let rest: String = name.chars().skip(n - (MAX - 1)).collect();
    format!("…{rest}")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Terminal {
    fn new(show_bar: bool, verbose: u8) -> Terminal {
        let info = Arc::new(Mutex::new(String::new()));
        let bar = show_bar.then(|| {
            let tty = std::io::stderr().is_terminal();
            let target = indicatif::ProgressDrawTarget::term_like(Box::new(Stderr::new(tty)));
            let bar = indicatif::ProgressBar::with_draw_target(None, target);
            bar.set_style(style(false, &info));
            bar
        });
        Terminal {
            bar,
            verbose,
            state: Mutex::new(Shown::default()),
            info,
        }
    }

    /// Redraws with `done` bytes (at most every [`REDRAW`] unless `now`).
    fn draw(&self, done: u64, force: bool) {
        let Some(bar) = &self.bar else { return };
        let now = Instant::now();
        let mut s = lock(&self.state);
        s.rate.add(now, done);
        if !force && s.drawn.is_some_and(|t| now.duration_since(t) < REDRAW) {
            return;
        }
        s.drawn = Some(now);
        let lost = s.known() && done > s.bytes;
        if lost {
            s.unknown = true;
        }
        let known = s.known();
        *lock(&self.info) = s.describe(done);
        drop(s);
        if lost {
            bar.unset_length();
            bar.set_style(style(false, &self.info));
        }
        if known {
            bar.set_position(done);
        } else {
            bar.tick();
        }
    }

    fn say(&self, line: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("gridos: cp: {line}")),
            None => eprintln!("gridos: cp: {line}"),
        }
    }
}

/// The bar with a known total (`42% [=====>   ] …`), else a spinner; `{info}` is
/// [`Shown::describe`].
fn style(known: bool, info: &Arc<Mutex<String>>) -> indicatif::ProgressStyle {
    let template = if known {
        "{percent:>3}% [{bar:24}] {info}"
    } else {
        "{spinner} {info}"
    };
    let info = info.clone();
    let key = move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = w.write_str(&lock(&info));
    };
    match indicatif::ProgressStyle::with_template(template) {
        Ok(s) => s.progress_chars("=> ").with_key("info", key),
        Err(_) => indicatif::ProgressStyle::default_spinner().with_key("info", key),
    }
}

impl CopyObserver for Terminal {
    fn planned(&self, endpoint: &str, plan: &TransferPlan) {
        if self.verbose >= 1 {
            self.say(&format!("{endpoint}: {}", plan_line(plan)));
            self.say(&format!("{endpoint}: {}", tls_line(plan.tls.as_ref())));
        }
        if self.verbose >= 2 {
            self.say(&format!("{endpoint}: plan {}", json(plan)));
        }
    }
    fn adjusted(&self, endpoint: &str, d: &TuneDecision) {
        if self.verbose >= 2 {
            self.say(&format!("{endpoint}: {}", adjustment_line(d)));
        }
    }
    fn total(&self, files: u64, bytes: u64) {
        let Some(bar) = &self.bar else { return };
        let mut s = lock(&self.state);
        (s.files, s.bytes, s.unknown) = (files, bytes, false);
        *lock(&self.info) = s.describe(0);
        drop(s);
        if bytes > 0 {
            bar.set_style(style(true, &self.info));
            bar.set_length(bytes);
        } else {
            bar.set_style(style(false, &self.info));
            bar.unset_length();
        }
    }
    fn progress(&self, done: u64, _total: u64) {
        self.draw(done, false);
    }
    fn file_started(&self, _src: &str, dst: &str, _size: Option<u64>) {
        if self.bar.is_some() {
            lock(&self.state).current = tail(dst);
        }
    }
    fn file_done(&self, _src: &str, dst: &str, _bytes: u64) {
        if self.bar.is_some() {
            let mut s = lock(&self.state);
            s.files_done += 1;
            s.current = tail(dst);
        }
    }
    fn notice(&self, text: &str) {
        self.say(text);
    }
}

fn parse_host_memory(s: &str) -> Result<crate::hosts::HostMemoryMode, String> {
    match s {
        "" => Err("a file or off".into()),
        "off" => Ok(crate::hosts::HostMemoryMode::Off),
        f => Ok(crate::hosts::HostMemoryMode::File(f.into())),
    }
}

/// One line on a plan: `MODE E, 4 streams (RTT 100.2 ms, BDP 125 MB over a 10 Gbit/s
/// ceiling; unprivileged: buffers left to autotuning), block 1 MiB`.
fn plan_line(p: &TransferPlan) -> String {
    let streams = p.streams.unwrap_or(1);
    let buffers = match p.tcp_buffer {
        Some(b) if p.sbuf == Some(true) => {
            format!(
                "TCP buffers {} each, also asked of the server (SBUF)",
                binary(b)
            )
        }
        Some(b) => format!("TCP buffers forced to {} each", binary(b)),
        None => "buffers left to autotuning".into(),
    };
    let line = match p.mode {
        Mode::S => "MODE S, one connection (--stream, or the server offers no MODE E)".into(),
        Mode::Z => "MODE Z (deflate), one connection (--compress)".into(),
        Mode::E => {
            let why = if p.auto == Some(true) {
                format!(
                    "RTT {}, BDP {} over a {} ceiling{}; {}: {buffers}",
                    match p.rtt_us.unwrap_or(0) {
                        us @ 0..1000 => format!("{us} µs"),
                        us => format!("{:.1} ms", f64::from(us) / 1000.0),
                    },
                    decimal(p.bdp_bytes.unwrap_or(0)),
                    bits(p.link_ceiling_bytes_per_sec.unwrap_or(0)),
                    match p.link_ceiling_from {
                        Some(CeilingSource::Remembered) => " (twice the last copy's rate)",
                        _ => "",
                    },
                    if p.privileged == Some(true) {
                        "privileged"
                    } else {
                        "unprivileged"
                    },
                )
            } else {
                format!("set on the command line; {buffers}")
            };
            let block = p
                .block_size
                .map(|b| format!(", block {}", binary(b)))
                .unwrap_or_default();
            format!(
                "MODE E, {streams} stream{} ({why}){block}",
                if streams == 1 { "" } else { "s" }
            )
        }
    };
    line + login_note(p)
}

/// `; login sent before the greeting` (or that it went unanswered).
fn login_note(p: &TransferPlan) -> &'static str {
    match p.login_ahead {
        Some(true) => "; login sent before the greeting",
        Some(false) => "; the login sent before the greeting went unanswered: connected again",
        None => "",
    }
}

/// One line on what TLS protects: `TLS 1.3 (TLS13_AES_256_GCM_SHA384), server certificate
/// checked against the system's roots; data encrypted (PROT P)`.
fn tls_line(t: Option<&crate::plan::TlsPlan>) -> String {
    use crate::plan::CertCheck;
    let Some(t) = t else {
        return "no TLS: commands and data go in clear".into();
    };
    let checked = match &t.server_checked {
        CertCheck::SystemRoots => "server certificate checked against the system's roots".into(),
        CertCheck::CaFile(f) => format!("server certificate checked against {}", f.display()),
        CertCheck::NotChecked => "server certificate NOT checked (--insecure)".into(),
    };
    let data = if t.data_protected {
        "data encrypted (PROT P)"
    } else {
        "data in clear (PROT C)"
    };
    format!("{} ({}), {checked}; {data}", t.version, t.cipher)
}

/// One line on a monitor decision: `monitor: send buffer 256 KiB → 1 MiB (RTT 100.2 ms,
/// 95.3 MB/s delivered, BDP 9.5 MB; 34% of the time limited by the send buffer)`.
fn adjustment_line(d: &TuneDecision) -> String {
    let rtt = match d.rtt_us {
        us @ 0..1000 => format!("{us} µs"),
        us => format!("{:.1} ms", f64::from(us) / 1000.0),
    };
    let limited = match (d.sndbuf_limited_permille, d.rwnd_limited_permille) {
        (s, _) if s > 0 => format!("; {}% of the time limited by the send buffer", s / 10),
        (_, r) if r > 0 => format!("; {}% of the time limited by the receiver's window", r / 10),
        _ => String::new(),
    };
    let inputs = match d.action {
        // The receiver's BDP is the autotuner's receive space (bytes read per RTT).
        TuneAction::RaiseRcvbuf { .. } => format!(
            "RTT {rtt}, the receive space of {} fills half the buffer",
            indicatif::HumanBytes(d.bdp)
        ),
        _ => format!(
            "RTT {rtt}, {} delivered, BDP {}{limited}",
            rate(d.delivery_rate),
            decimal(d.bdp)
        ),
    };
    // The kernel doubles what setsockopt asks for: the buffer becomes twice the request.
    let raised = |which: &str, request: usize, force: bool, sysctl: &str| {
        format!(
            "{which} buffer {} → {}{}",
            indicatif::HumanBytes(d.current as u64),
            indicatif::HumanBytes(request as u64 * 2),
            if force {
                format!(" (forced past net.core.{sysctl})")
            } else {
                String::new()
            }
        )
    };
    let what = match &d.action {
        TuneAction::RaiseSndbuf { request, force } => raised("send", *request, *force, "wmem_max"),
        TuneAction::RaiseRcvbuf { request, force } => {
            raised("receive", *request, *force, "rmem_max")
        }
        TuneAction::SuggestStreams { streams } => format!(
            "buffers at their limit; {streams} stream{} would carry the path",
            if *streams == 1 { "" } else { "s" }
        ),
        TuneAction::StreamAdded { streams } => format!(
            "every stream limited where a larger buffer cannot help: opened another, \
             {streams} streams now"
        ),
    };
    format!("monitor: {what} ({inputs})")
}

/// `95.3 MB/s` from bytes per second.
fn rate(bytes_per_sec: u64) -> String {
    format!("{}/s", decimal(bytes_per_sec))
}

/// `125 MB`, `1.3 GB`, `900 kB`.
fn decimal(n: u64) -> String {
    let n = n as f64;
    match n {
        1e9.. => format!("{:.1} GB", n / 1e9),
        1e6.. => format!("{:.0} MB", n / 1e6),
        1e3.. => format!("{:.0} kB", n / 1e3),
        _ => format!("{n} B"),
    }
}

/// `10 Gbit/s` from bytes per second.
fn bits(bytes_per_sec: u64) -> String {
    let b = bytes_per_sec as f64 * 8.0;
    match b {
        1e9.. => format!("{} Gbit/s", b / 1e9),
        1e6.. => format!("{} Mbit/s", b / 1e6),
        _ => format!("{b} bit/s"),
    }
}

/// `1 MiB`, `64 KiB`, `1000 B`.
fn binary(n: u64) -> String {
    match n {
        0 => "0 B".into(),
        n if n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        n if n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Where the progress line goes: stderr, with cursor movement and line clearing on a
/// terminal and plain `\r`-separated redraws otherwise (`--progress 2>log`). indicatif's
/// own stderr target draws nothing unless stderr is a terminal and `TERM` is set.
#[derive(Debug)]
struct Stderr {
    tty: bool,
    /// One redraw, written at once on flush.
    out: Mutex<Vec<u8>>,
}

impl Stderr {
    fn new(tty: bool) -> Stderr {
        Stderr {
            tty,
            out: Mutex::new(Vec::new()),
        }
    }

    fn put(&self, s: &str) -> std::io::Result<()> {
        lock(&self.out).extend_from_slice(s.as_bytes());
        Ok(())
    }

    fn escape(&self, n: usize, code: char) -> std::io::Result<()> {
        if self.tty && n > 0 {
            self.put(&format!("\x1b[{n}{code}"))
        } else {
            Ok(())
        }
    }
}

impl indicatif::TermLike for Stderr {
    fn width(&self) -> u16 {
        if !self.tty {
            return 80;
        }
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which points at a
        // live, writable local of that type; fd 2 stays open for the process.
        let r = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) };
        if r == 0 && ws.ws_col > 0 {
            ws.ws_col
        } else {
            80
        }
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.escape(n, 'A')
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.escape(n, 'B')
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.escape(n, 'C')
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.escape(n, 'D')
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.put(s)?;
        self.put("\n")
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.put(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.put(if self.tty { "\r\x1b[2K" } else { "\r" })
    }
    fn flush(&self) -> std::io::Result<()> {
        let out = std::mem::take(&mut *lock(&self.out));
        let mut e = std::io::stderr().lock();
        e.write_all(&out)?;
        e.flush()
    }
}

/// Copies; exit status 0 only when every byte arrived. The error's kind chooses the exit
/// code ([`super::exit::Code`]); SIGINT cancels the copy.
pub fn run(a: CpArgs) -> crate::Result<ExitCode> {
    let cp = |e: crate::Error| e.context("cp");
    let src = Url::parse(&a.src).map_err(|e| cp(e.into()))?;
    let dst = Url::parse(&a.dst).map_err(|e| cp(e.into()))?;
    let show_bar = !a.quiet && (a.progress || std::io::stderr().is_terminal());
    let term = Arc::new(Terminal::new(show_bar, a.verbose));
    if a.insecure {
        // Every run, even with -q: nothing else tells the user the server is unchecked.
        term.say(
            "warning: --insecure: server certificates are not verified; the connection is \
             encrypted, but anyone on the path can pose as the server",
        );
    }
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

/// The `-v` line of what the disk end of the downloads did.
fn disk_line(d: &crate::DiskReport) -> String {
    let mut parts = Vec::new();
    parts.push(if d.preallocated > 0 {
        format!("{} bytes reserved up front", d.preallocated)
    } else {
        "nothing reserved up front".to_string()
    });
    if d.write_behind_files == 0 {
        parts.push("no write-behind (left to the kernel's writeback)".into());
    } else {
        parts.push(format!(
            "write-behind in {} MiB windows: {} written back, {} dropped from the page cache{}",
            d.window >> 20,
            d.write_behind_windows,
            d.dropped_windows,
            if d.left_to_kernel > 0 {
                format!(", first {} bytes left to the kernel", d.left_to_kernel)
            } else {
                String::new()
            }
        ));
    }
    parts.join("; ")
}

fn print_report(a: &CpArgs, r: &CopyReport) {
    if a.verbose >= 1 {
        for t in &r.tuning {
            if let Some(m) = t.measured_bytes_per_sec {
                let streams = t.streams.unwrap_or(1);
                let grew = t
                    .grew_to
                    .map(|n| format!(", {n} by the end"))
                    .unwrap_or_default();
                eprintln!(
                    "gridos: cp: the path delivered {:.1} MB/s (MODE {:?}, {streams} stream{}{grew})",
                    m as f64 / 1e6,
                    t.mode,
                    if streams == 1 { "" } else { "s" }
                );
            }
        }
        if let Some(d) = &r.disk {
            eprintln!("gridos: cp: disk: {}", disk_line(d));
        }
        if let Some(t) = &r.third_party {
            let how = match (&t.reason, t.control_round_trips) {
                (_, Some(n)) if t.third_party => {
                    format!("server to server ({n} control round trips per file)")
                }
                _ if t.third_party => "server to server".to_string(),
                (Some(why), _) => format!("relayed through this machine: {why}"),
                (None, _) => "relayed through this machine".to_string(),
            };
            eprintln!("gridos: cp: route: {how}");
        }
    }
    if a.verbose >= 2 {
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
        if let Some(d) = &r.disk {
            v["disk"] = serde_json::to_value(d).unwrap_or_default();
        }
        if let Some(t) = &r.third_party {
            v["third_party"] = t.third_party.into();
            v["reason"] = t.reason.clone().into();
            v["control_round_trips"] = t.control_round_trips.into();
        }
        // A reader that went away (`| head`) is not a failed copy.
        let _ = writeln!(std::io::stdout(), "{v}");
    } else if !a.quiet {
        let route = match &r.third_party {
            // The path says so already ("server to server, MODE E").
            Some(t) if t.third_party && r.path.contains("server to server") => "",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(action: TuneAction) -> TuneDecision {
        TuneDecision {
            action,
            rtt_us: 100_200,
            delivery_rate: 95_300_000,
            bdp: 9_500_000,
            sndbuf_limited_permille: 0,
            rwnd_limited_permille: 340,
            current: 4 << 20,
            reason: String::new(),
        }
    }

    #[test]
    fn one_line_per_monitor_decision() {
        let d = decision(TuneAction::SuggestStreams { streams: 3 });
        assert_eq!(
            adjustment_line(&d),
            "monitor: buffers at their limit; 3 streams would carry the path (RTT 100.2 ms, \
             95 MB/s delivered, BDP 10 MB; 34% of the time limited by the receiver's window)"
        );
        let d = decision(TuneAction::RaiseRcvbuf {
            request: 4 << 20,
            force: true,
        });
        assert_eq!(
            adjustment_line(&d),
            "monitor: receive buffer 4.00 MiB → 8.00 MiB (forced past net.core.rmem_max) \
             (RTT 100.2 ms, the receive space of 9.06 MiB fills half the buffer)"
        );
        let d = decision(TuneAction::StreamAdded { streams: 9 });
        assert_eq!(
            adjustment_line(&d),
            "monitor: every stream limited where a larger buffer cannot help: opened another, \
             9 streams now (RTT 100.2 ms, 95 MB/s delivered, BDP 10 MB; 34% of the time \
             limited by the receiver's window)"
        );
    }
}
