//! `gridos cp [-r] [--resume] [--progress|--quiet] [--json] SRC DST`.
//!
//! SRC and DST are each a local path, a `file://` URL or an `ftp://` URL. Local → FTP is an
//! upload, FTP → local a download (both zero-copy through gridos-io), local → local a
//! `copy_path`, FTP → FTP a relay through a temporary local file (get, then put). Downloads
//! land atomically (temporary file + rename) unless `--resume`, which continues a partial
//! destination instead (REST for downloads, SIZE + REST/APPE for uploads). Every file's size is
//! checked at the end; the exit status is 0 only when every byte arrived.
//!
//! GridFTP: against a server whose FEAT offers MODE E (or any `gridftp://` URL) files move
//! in MODE E over parallel data connections. With no `-p`/`--tcp-bs` the settings are chosen
//! from the path ([`auto_plan`]): the control connection's RTT times a link-speed ceiling
//! gives the bandwidth-delay product, buffers are planned to cover it (forced past the
//! system maximum when privileged, within `io.max_buffer` per connection) and, where one
//! connection's buffer cannot, enough streams are opened; each stream's TCP_INFO monitor
//! keeps raising buffers during the transfer. `-v`/`--json` report the decisions and the
//! bandwidth measured.

use crate::url::{FtpUrl, Url as Location};
use clap::Args;
use gridos_ftp::checksum::{Algorithm, file_checksum};
use gridos_ftp::client::{Client, ClientConfig, EntryKind, GridOptions, PutMode};
use gridos_ftp::proto::RangeSet;
use std::fs::File;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Arguments of `gridos cp`.
#[derive(Args, Debug)]
pub struct CpArgs {
    /// Source: a local path, file:// URL or ftp://[user[:password]@]host[:port]/path.
    pub src: String,
    /// Destination, in the same forms; an existing directory receives the source under its
    /// own name.
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
    #[arg(long, value_name = "ALG", num_args = 0..=1, require_equals = true, default_missing_value = "MD5")]
    pub verify: Option<String>,
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
    /// Pipeline the files of a tree (`-r`, either direction): many RETRs or STORs in flight
    /// on one control connection, every file over the same MODE E data connections.
    #[arg(long)]
    pub pipeline: bool,
    /// Active mode: the server connects to us (PORT/EPRT) for stream-mode transfers and
    /// listings, for servers that cannot offer passive ports. MODE E downloads always work
    /// this way.
    #[arg(long)]
    pub active: bool,
    /// Report the tuning decisions (RTT, bandwidth, buffers, streams) on stderr: set from the
    /// global `-v`.
    #[arg(skip)]
    pub verbose: bool,
}

/// Assumed ceiling of a path's bandwidth before anything is measured (10 Gbit/s): with the
/// RTT it bounds the bandwidth-delay product the first plan has to cover.
const LINK_CEILING: u64 = 1_250_000_000;

/// Most streams the automatic plan opens.
const AUTO_MAX_STREAMS: u32 = 8;

/// How one FTP side moves file data.
#[derive(Clone, Debug)]
struct Grid {
    /// MODE E with these settings, or stream mode.
    ext: Option<GridOptions>,
    /// The decisions behind `ext`, for -v and --json.
    plan: serde_json::Value,
}

/// The automatic plan: BDP from the control connection's RTT and the link ceiling, buffers
/// and streams to cover it.
fn auto_plan(c: &Client) -> (GridOptions, serde_json::Value) {
    use gridos_io::tune::{SysLimits, TunePolicy, bdp_bytes, plan};
    let info = c.control_tcp_info().ok();
    let rtt_us = info
        .map(|i| {
            if i.min_rtt_us > 0 {
                i.min_rtt_us
            } else {
                i.rtt_us
            }
        })
        .unwrap_or(0)
        .max(1);
    let cfg = gridos_io::config();
    let policy = TunePolicy {
        max_buffer: cfg.max_buffer,
        privileged: gridos_io::privileged(),
        max_streams: AUTO_MAX_STREAMS.min(cfg.max_streams),
    };
    let bdp = bdp_bytes(LINK_CEILING, rtt_us);
    let p = plan(bdp, &SysLimits::read(), &policy);
    let mut o = GridOptions::default();
    o.streams = p.streams;
    // Forced buffers on this side only: an SBUF the server cannot force would cap its
    // buffer at the system maximum, below what its autotuning reaches; the streams cover the
    // rest.
    o.sbuf = false;
    o.tcp_buffer = match p.recv.method {
        gridos_io::tune::BufferMethod::Force => Some(p.recv.request as u64),
        _ => None,
    };
    // All streams together stay within io.max_total_buffer (kernel doubles each request).
    if let Some(b) = o.tcp_buffer {
        let share = (cfg.max_total_buffer / 2 / o.streams.max(1) as usize) as u64;
        o.tcp_buffer = (share >= 64 * 1024).then_some(b.min(share));
    }
    let v = serde_json::json!({
        "auto": true, "rtt_us": rtt_us, "link_ceiling_bytes_per_sec": LINK_CEILING,
        "bdp_bytes": bdp, "streams": o.streams, "tcp_buffer": o.tcp_buffer, "sbuf": o.sbuf,
        "privileged": policy.privileged, "max_total_buffer": cfg.max_total_buffer,
        "reason": p.reason,
    });
    (o, v)
}

impl CpArgs {
    /// Settings for one FTP side after login.
    fn grid_for(&self, c: &Client, url: &FtpUrl) -> Result<Grid, String> {
        if url.gridftp && !c.gridftp() {
            return Err(format!(
                "cp: {}: the server does not offer the GridFTP extensions (no MODE E in FEAT)",
                url.display()
            ));
        }
        if self.compress || !c.gridftp() {
            if self.parallel.is_some_and(|p| p > 1) && !c.gridftp() {
                return Err(format!(
                    "cp: {}: -p needs a GridFTP server (no MODE E in FEAT)",
                    url.display()
                ));
            }
            return Ok(Grid {
                ext: None,
                plan: serde_json::json!({"mode": if self.compress { "Z" } else { "S" }}),
            });
        }
        let (mut o, mut plan) = if self.parallel.is_none() && self.tcp_bs.is_none() {
            auto_plan(c)
        } else {
            (GridOptions::default(), serde_json::json!({"auto": false}))
        };
        if let Some(p) = self.parallel {
            o.streams = p;
        }
        if let Some(b) = self.tcp_bs {
            o.tcp_buffer = Some(b);
        }
        if let Some(b) = self.block_size {
            o.block_size = b.max(1);
        }
        plan["mode"] = "E".into();
        plan["streams"] = o.streams.into();
        plan["tcp_buffer"] = o.tcp_buffer.into();
        plan["block_size"] = o.block_size.into();
        Ok(Grid { ext: Some(o), plan })
    }

    fn verify_alg(&self) -> Result<Option<Algorithm>, String> {
        self.verify
            .as_deref()
            .map(|a| {
                Algorithm::parse(a).ok_or_else(|| {
                    format!("cp: --verify: unknown algorithm {a:?} (MD5, ADLER32, SHA1, SHA256, SHA512, CRC32C)")
                })
            })
            .transpose()
    }
}

/// Compares a local file (range) with the server's CKSM of the remote one.
fn verify_file(
    c: &mut Client,
    alg: Algorithm,
    local: &File,
    local_off: u64,
    remote: &str,
    remote_off: u64,
    len: u64,
) -> Result<String, String> {
    let mine = file_checksum(local, alg, local_off, Some(len), None)
        .map_err(|e| format!("local checksum: {e}"))?;
    let theirs = c
        .checksum(remote, alg, remote_off, Some(len))
        .map_err(|e| format!("server checksum (CKSM {}): {e}", alg.name()))?;
    if mine != theirs {
        return Err(format!(
            "checksum mismatch ({}): local {mine}, server {theirs}",
            alg.name()
        ));
    }
    Ok(mine)
}

/// One side of the copy: where it is and, for FTP, the open connection.
enum Side {
    Local,
    Ftp(Box<Client>, FtpUrl, Box<Grid>),
}

/// A path on one side.
#[derive(Clone, Debug)]
enum Node {
    Local(PathBuf),
    Remote(String),
}

impl Node {
    fn show(&self, side: &Side) -> String {
        match (self, side) {
            (Node::Local(p), _) => p.display().to_string(),
            (Node::Remote(p), Side::Ftp(_, u, _)) => FtpUrl {
                path: p.clone(),
                ..u.clone()
            }
            .display(),
            (Node::Remote(p), Side::Local) => p.clone(),
        }
    }

    fn join(&self, name: &str) -> Node {
        match self {
            Node::Local(p) => Node::Local(p.join(name)),
            Node::Remote(p) => Node::Remote(format!("{}/{name}", p.trim_end_matches('/'))),
        }
    }

    fn name(&self) -> Option<String> {
        match self {
            Node::Local(p) => p.file_name().map(|n| n.to_string_lossy().into_owned()),
            Node::Remote(p) => p
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .filter(|n| !n.is_empty())
                .map(str::to_string),
        }
    }
}

/// Totals of a run.
#[derive(Default)]
struct Totals {
    bytes: u64,
    files: u64,
    skipped: u64,
    path: Option<String>,
}

/// Progress display: a bar fed from the transfer's progress counter by a ticker thread.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    current: Arc<AtomicU64>,
    base: Arc<AtomicU64>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn new(show: bool) -> Progress {
        let current = Arc::new(AtomicU64::new(0));
        let base = Arc::new(AtomicU64::new(0));
        if !show {
            return Progress {
                bar: None,
                current,
                base,
                stop: None,
                ticker: None,
            };
        }
        let bar =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bytes:>10} / {total_bytes:>10} {wide_bar} {binary_bytes_per_sec:>12} {msg}",
        ) {
            bar.set_style(style);
        }
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (b, c, bar2) = (base.clone(), current.clone(), bar.clone());
        let ticker = std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                rx.recv_timeout(Duration::from_millis(100))
            {
                bar2.set_position(b.load(Ordering::Relaxed) + c.load(Ordering::Relaxed));
            }
        });
        Progress {
            bar: Some(bar),
            current,
            base,
            stop: Some(tx),
            ticker: Some(ticker),
        }
    }

    fn add_total(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc_length(n);
        }
    }

    fn file_done(&self, bytes: u64, name: &str) {
        self.base.fetch_add(bytes, Ordering::Relaxed);
        self.current.store(0, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.set_message(name.to_string());
        }
    }

    fn finish(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

fn connect(url: &FtpUrl, progress: &Arc<AtomicU64>, active: bool) -> Result<Client, String> {
    let mut config = ClientConfig::default();
    config.transfer.progress = Some(progress.clone());
    config.active = active;
    let mut c = Client::connect(url.authority(), config)
        .map_err(|e| format!("cp: {}: {e}", url.display()))?;
    let password = match &url.password {
        Some(p) => p.clone(),
        None if url.user == "anonymous" => "gridos@".into(),
        None => std::env::var("GRIDOS_FTP_PASSWORD").unwrap_or_default(),
    };
    c.login(&url.user, &password)
        .map_err(|e| format!("cp: {}: login: {e}", url.display()))?;
    Ok(c)
}

/// What a node is: `None` when it does not exist.
fn kind(side: &mut Side, node: &Node) -> Result<Option<EntryKind>, String> {
    stat(side, node).map(|k| k.map(|(k, _)| k))
}

/// What a node is and its size when known: `None` when it does not exist.
fn stat(side: &mut Side, node: &Node) -> Result<Option<(EntryKind, Option<u64>)>, String> {
    match (side, node) {
        (_, Node::Local(p)) => Ok(std::fs::metadata(p).ok().map(|m| {
            let k = if m.is_dir() {
                EntryKind::Dir
            } else if m.is_file() {
                EntryKind::File
            } else {
                EntryKind::Other
            };
            (k, Some(m.len()))
        })),
        (Side::Ftp(c, u, _), Node::Remote(p)) => c
            .stat(p)
            .map(|e| e.map(|e| (e.kind, e.size)))
            .map_err(|e| format!("cp: {}: {e}", u.display())),
        (Side::Local, Node::Remote(_)) => {
            Err("cp: internal error: remote path on local side".into())
        }
    }
}

/// Copies; exit status 0 only when every byte arrived.
pub fn run(a: CpArgs) -> Result<ExitCode, String> {
    let src_loc = Location::parse(&a.src).map_err(|e| e.to_string())?;
    let dst_loc = Location::parse(&a.dst).map_err(|e| e.to_string())?;
    let show_bar = !a.quiet && (a.progress || std::io::stderr().is_terminal());
    let mut progress = Progress::new(show_bar);
    let open = |loc: Location| -> Result<(Side, Node), String> {
        match loc {
            Location::Local(p) => Ok((Side::Local, Node::Local(p))),
            Location::Http(u) => Err(format!("cp: {}: http sources are not wired yet", u.display())),
            Location::Ftp(u) => {
                let c = connect(&u, &progress.current, a.active)?;
                let grid = a.grid_for(&c, &u)?;
                if a.verbose {
                    eprintln!("gridos: cp: {}: plan {}", u.display(), grid.plan);
                }
                let path = u.path.clone();
                Ok((
                    Side::Ftp(Box::new(c), u, Box::new(grid)),
                    Node::Remote(path),
                ))
            }
        }
    };
    let (mut src_side, src) = open(src_loc)?;
    let (mut dst_side, dst) = open(dst_loc)?;
    a.verify_alg()?;
    let plans: Vec<serde_json::Value> = [&src_side, &dst_side]
        .iter()
        .filter_map(|s| match s {
            Side::Ftp(_, _, g) => Some(g.plan.clone()),
            Side::Local => None,
        })
        .collect();
    // Checked before any connection work is wasted.
    if a.offset.is_some() && a.recursive {
        return Err("cp: --offset/--length copy one file, not a tree".into());
    }

    let (src_kind, src_size) = stat(&mut src_side, &src)?
        .ok_or_else(|| format!("cp: {}: no such file or directory", src.show(&src_side)))?;
    if src_kind == EntryKind::Dir && !a.recursive {
        return Err(format!(
            "cp: {} is a directory (use -r to copy a tree)",
            src.show(&src_side)
        ));
    }
    // An existing directory receives the source under its own name.
    let dst = if kind(&mut dst_side, &dst)? == Some(EntryKind::Dir) {
        match src.name() {
            Some(n) => dst.join(&n),
            None if src_kind == EntryKind::Dir => dst,
            None => return Err(format!("cp: {} has no file name", src.show(&src_side))),
        }
    } else {
        dst
    };
    if let (Node::Local(s), Node::Local(d)) = (&src, &dst)
        && std::fs::canonicalize(s)
            .ok()
            .is_some_and(|s| std::fs::canonicalize(d).ok() == Some(s))
    {
        return Err(format!(
            "cp: {} and {} are the same file",
            s.display(),
            d.display()
        ));
    }

    // Plan: directories to create (parents first) and files to copy.
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    if src_kind == EntryKind::Dir {
        walk(&mut src_side, &src, &dst, &mut dirs, &mut files)?;
    } else {
        // From MLST: the progress bar's total and the download's expected size, without
        // another round trip.
        files.push((src.clone(), dst.clone(), src_size));
    }
    for (_, _, size) in &files {
        progress.add_total(size.unwrap_or(0));
    }

    let start = Instant::now();
    let mut totals = Totals::default();
    for d in &dirs {
        make_dir(&mut dst_side, d)?;
    }
    if a.compress {
        for side in [&mut src_side, &mut dst_side] {
            if let Side::Ftp(c, u, _) = side {
                c.deflate_mode()
                    .map_err(|e| format!("cp: {}: MODE Z: {e}", u.display()))?;
            }
        }
    }
    // --pipeline: MODE E between one GridFTP side and the local side, more than one file.
    let grid = |side: &Side| matches!(side, Side::Ftp(_, _, g) if g.ext.is_some());
    let local = |side: &Side| matches!(side, Side::Local);
    let pipeline_up = (a.pipeline && !a.resume && a.offset.is_none() && files.len() > 1)
        .then(|| {
            if grid(&src_side) && local(&dst_side) {
                Some(false)
            } else if local(&src_side) && grid(&dst_side) {
                Some(true)
            } else {
                None
            }
        })
        .flatten();
    if let Some(up) = pipeline_up {
        let Side::Ftp(c, u, g) = (if up { &mut dst_side } else { &mut src_side }) else {
            return Err("cp: internal error".into());
        };
        let o = g.ext.clone().unwrap_or_default();
        let (bytes, n) = if up {
            put_tree_pipelined(c, u, &o, &files, &a, &progress)?
        } else {
            get_tree_pipelined(c, u, &o, &files, &a, &progress)?
        };
        totals.bytes += bytes;
        totals.files += n;
        totals.path = Some(format!("{} pipelined", gridos_io::probe().name()));
    } else {
        for (s, d, size) in &files {
            let (bytes, path) = copy_one(&mut src_side, s, &mut dst_side, d, *size, &a)?;
            totals.bytes += bytes;
            totals.files += 1;
            if bytes == 0 && a.resume {
                totals.skipped += 1;
            }
            if path.is_some() {
                totals.path = path;
            }
            progress.file_done(bytes, &d.show(&dst_side));
        }
    }
    progress.finish();
    for side in [src_side, dst_side] {
        if let Side::Ftp(c, _, _) = side {
            let _ = c.quit();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let mbps = totals.bytes as f64 / secs.max(1e-9) / 1e6;
    let path = totals.path.unwrap_or_else(|| "none".into());
    let tuning: Vec<serde_json::Value> = plans
        .iter()
        .map(|p| {
            let mut p = p.clone();
            // What the path delivered: the bandwidth estimate the next transfer starts from.
            p["measured_bytes_per_sec"] = ((totals.bytes as f64 / secs.max(1e-9)) as u64).into();
            p
        })
        .collect();
    if a.verbose {
        for t in &tuning {
            eprintln!("gridos: cp: tuning {t}");
        }
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "src": a.src_display(), "dst": a.dst_display(), "bytes": totals.bytes,
                "seconds": secs, "mb_per_sec": mbps, "path": path, "files": totals.files,
                "directories": dirs.len(), "resumed": a.resume, "complete": true,
                "verified": a.verify.is_some(), "tuning": tuning,
            })
        );
    } else if !a.quiet {
        eprintln!(
            "{} → {}: {} bytes in {} file{} in {secs:.3} s ({mbps:.1} MB/s, {path})",
            a.src_display(),
            a.dst_display(),
            totals.bytes,
            totals.files,
            if totals.files == 1 { "" } else { "s" },
        );
    }
    Ok(ExitCode::SUCCESS)
}

impl CpArgs {
    fn src_display(&self) -> String {
        redact(&self.src)
    }
    fn dst_display(&self) -> String {
        redact(&self.dst)
    }
}

/// A URL with any password replaced by `****`.
fn redact(url: &str) -> String {
    match Location::parse(url) {
        Ok(Location::Ftp(u)) => u.display(),
        _ => url.to_string(),
    }
}

type FileJob = (Node, Node, Option<u64>);

/// Lists `src` recursively: directories to create under `dst` (parents first) and files.
fn walk(
    side: &mut Side,
    src: &Node,
    dst: &Node,
    dirs: &mut Vec<Node>,
    files: &mut Vec<FileJob>,
) -> Result<(), String> {
    dirs.push(dst.clone());
    let entries: Vec<(String, EntryKind, Option<u64>)> = match (&mut *side, src) {
        (_, Node::Local(p)) => {
            let mut v = Vec::new();
            let rd = std::fs::read_dir(p).map_err(|e| format!("cp: {}: {e}", p.display()))?;
            for e in rd {
                let e = e.map_err(|e| format!("cp: {}: {e}", p.display()))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let m = std::fs::metadata(e.path())
                    .map_err(|err| format!("cp: {}: {err}", e.path().display()))?;
                let k = if m.is_dir() {
                    EntryKind::Dir
                } else if m.is_file() {
                    EntryKind::File
                } else {
                    EntryKind::Other
                };
                v.push((name, k, Some(m.len())));
            }
            v
        }
        (Side::Ftp(c, u, _), Node::Remote(p)) => c
            .list(Some(p))
            .map_err(|e| format!("cp: {}: list: {e}", u.display()))?
            .into_iter()
            .map(|e| (e.name, e.kind, e.size))
            .collect(),
        (Side::Local, Node::Remote(_)) => return Err("cp: internal error".into()),
    };
    for (name, k, size) in entries {
        match k {
            EntryKind::Dir => walk(side, &src.join(&name), &dst.join(&name), dirs, files)?,
            EntryKind::File => files.push((src.join(&name), dst.join(&name), size)),
            _ => eprintln!(
                "gridos: cp: skipping {} (not a regular file or directory)",
                src.join(&name).show(side)
            ),
        }
    }
    Ok(())
}

fn make_dir(side: &mut Side, d: &Node) -> Result<(), String> {
    match (&mut *side, d) {
        (_, Node::Local(p)) => {
            std::fs::create_dir_all(p).map_err(|e| format!("cp: mkdir {}: {e}", p.display()))
        }
        (Side::Ftp(c, u, _), Node::Remote(p)) => match c.mkdir(p) {
            Ok(()) => Ok(()),
            Err(e) if e.reply_code().is_some() => match c.stat(p) {
                Ok(Some(en)) if en.kind == EntryKind::Dir => Ok(()),
                _ => Err(format!("cp: {}: mkdir {p}: {e}", u.display())),
            },
            Err(e) => Err(format!("cp: {}: mkdir {p}: {e}", u.display())),
        },
        (Side::Local, Node::Remote(_)) => Err("cp: internal error".into()),
    }
}

/// A temporary file beside `dst` that becomes `dst` on success.
fn temp_beside(dst: &Path) -> Result<tempfile::NamedTempFile, String> {
    let dir = parent_dir(dst);
    tempfile::Builder::new()
        .prefix(&format!(".{}.", base_name(dst)))
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(|e| format!("cp: temporary file in {}: {e}", dir.display()))
}

/// The directory `p` is in ("." for a bare name).
fn parent_dir(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The last component of `p` as text ("" when it has none).
fn base_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The destination opened for writing when it exists and is neither a regular file nor a
/// directory (a device or a pipe).
fn existing_device(d: &Path) -> Result<Option<File>, String> {
    match std::fs::metadata(d) {
        Ok(m) if !m.is_file() && !m.is_dir() => std::fs::OpenOptions::new()
            .write(true)
            .open(d)
            .map(Some)
            .map_err(|e| format!("cp: open {}: {e}", d.display())),
        _ => Ok(None),
    }
}

/// Whether `f` can be written at an offset (not a pipe, socket or terminal).
fn seekable(f: &File) -> bool {
    nix::unistd::lseek(f, 0, nix::unistd::Whence::SeekCur).is_ok()
}

fn file_len(f: &File) -> Result<u64, String> {
    f.metadata()
        .map(|m| m.len())
        .map_err(|e| format!("cp: stat: {e}"))
}

/// Remote size, `None` when the file does not exist or the server cannot tell.
fn remote_size(c: &mut Client, p: &str) -> Result<Option<u64>, gridos_ftp::client::Error> {
    match c.size(p) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.reply_code().is_some() => Ok(None),
        Err(e) => Err(e),
    }
}

fn open_in_place(d: &Path, what: &str) -> Result<File, String> {
    std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .create(true)
        .truncate(false)
        .open(d)
        .map_err(|e| format!("{what}: open {}: {e}", d.display()))
}

/// `.NAME.gridos-ranges` beside `d`: the byte ranges a resumable MODE E download holds.
fn ranges_sidecar(d: &Path) -> PathBuf {
    d.with_file_name(format!(".{}.gridos-ranges", base_name(d)))
}

/// The recorded ranges (`0-100,200-300`, the 111 marker format), if a record exists.
fn read_ranges(p: &Path) -> Result<Option<RangeSet>, String> {
    match std::fs::read_to_string(p) {
        Ok(t) if t.trim().is_empty() => Ok(Some(RangeSet::new())),
        Ok(t) => RangeSet::parse(t.trim())
            .map(Some)
            .map_err(|e| format!("{}: not a range record: {e}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

/// Records `r` atomically (write beside, then rename), so a kill never leaves half a record.
fn write_ranges(p: &Path, r: &RangeSet) -> std::io::Result<()> {
    let tmp = p.with_extension("gridos-ranges.new");
    std::fs::write(&tmp, r.to_marker_string())?;
    std::fs::rename(&tmp, p)
}

/// `a ∩ b`.
fn intersect(a: &RangeSet, b: &RangeSet) -> RangeSet {
    let mut out = RangeSet::new();
    for &(s1, e1) in a.ranges() {
        for &(s2, e2) in b.ranges() {
            let (s, e) = (s1.max(s2), e1.min(e2));
            if s < e {
                out.insert(s, e);
            }
        }
    }
    out
}

/// The --verify algorithm of a tree copy, checked once against what the server offers.
fn tree_verify(c: &Client, u: &FtpUrl, a: &CpArgs) -> Result<Option<Algorithm>, String> {
    let verify = a.verify_alg()?;
    if let Some(alg) = verify {
        need_cksm(c, alg).map_err(|e| format!("cp: {}: {e}", u.display()))?;
    }
    Ok(verify)
}

/// Checks the server offers `alg` for CKSM.
fn need_cksm(c: &Client, alg: Algorithm) -> Result<(), String> {
    if c.features().checksums.iter().any(|a| a == alg.name()) {
        Ok(())
    } else {
        Err(format!(
            "--verify: the server does not offer CKSM {} (it offers: {})",
            alg.name(),
            if c.features().checksums.is_empty() {
                "none".to_string()
            } else {
                c.features().checksums.join(", ")
            }
        ))
    }
}

/// Copies one file; returns the bytes moved and the I/O path used.
fn copy_one(
    src_side: &mut Side,
    src: &Node,
    dst_side: &mut Side,
    dst: &Node,
    known_size: Option<u64>,
    a: &CpArgs,
) -> Result<(u64, Option<String>), String> {
    let resume = a.resume;
    let verify = a.verify_alg()?;
    let range = a.offset.zip(a.length);
    let what = format!("cp: {} → {}", src.show(src_side), dst.show(dst_side));
    match (src_side, src, dst_side, dst) {
        (_, Node::Local(s), _, Node::Local(d)) => {
            if range.is_some() || verify.is_some() {
                return Err(format!(
                    "{what}: --offset/--length and --verify apply to FTP transfers"
                ));
            }
            let r = gridos_io::copy_path(s, d).map_err(|e| format!("{what}: {e}"))?;
            Ok((r.bytes, Some(format!("{:?}", r.method))))
        }
        (Side::Ftp(c, _, g), Node::Remote(s), _, Node::Local(d)) => {
            let ftp = |e: gridos_ftp::client::Error| format!("{what}: {e}");
            if let Some(alg) = verify {
                need_cksm(c, alg).map_err(|e| format!("{what}: {e}"))?;
            }
            let ext = g.ext.clone();
            let mode = if ext.is_some() { "MODE E" } else { "stream" };
            if let Some((off, len)) = range {
                let Some(o) = &ext else {
                    return Err(format!(
                        "{what}: --offset/--length need a GridFTP server (ERET)"
                    ));
                };
                let existed = d.exists();
                let f = open_in_place(d, &what)?;
                // A destination this copy created does not outlive its failure.
                let undo = |e: String| {
                    if !existed {
                        let _ = std::fs::remove_file(d);
                    }
                    e
                };
                let r = c
                    .get_extended(s, &f, off, Some((off, len)), None, o)
                    .map_err(ftp)
                    .map_err(undo)?;
                if r.bytes != len {
                    return Err(undo(format!(
                        "{what}: {} bytes of the part arrived, {len} expected",
                        r.bytes
                    )));
                }
                if let Some(alg) = verify {
                    verify_file(c, alg, &f, off, s, off, len)
                        .map_err(|e| undo(format!("{what}: {e}")))?;
                }
                return Ok((r.bytes, Some(format!("{} {mode}", r.path.name()))));
            }
            let total = match known_size {
                Some(n) => Some(n),
                None => remote_size(c, s).map_err(ftp)?,
            };
            // MODE E blocks arrive out of order: a resumable download records the ranges it
            // holds beside the file, and a resume trusts that record over the file's size.
            let sidecar = ranges_sidecar(d);
            let recorded = if resume {
                read_ranges(&sidecar).map_err(|e| format!("{what}: {e}"))?
            } else {
                None
            };
            let (file_holder, tmp, have) = if resume {
                let f = open_in_place(d, &what)?;
                let have = file_len(&f)?;
                let complete = match (&recorded, total) {
                    (Some(r), Some(t)) => r.covers(0, t) && have == t,
                    (None, Some(t)) => have == t,
                    _ => false,
                };
                if complete {
                    let _ = std::fs::remove_file(&sidecar);
                    return Ok((0, None));
                }
                if total.is_some_and(|t| have > t) {
                    return Err(format!(
                        "{what}: destination is longer ({have} bytes) than the source ({} bytes); not resuming",
                        total.unwrap_or(0)
                    ));
                }
                (Some(f), None, have)
            } else if let Some(dev) = existing_device(d)? {
                // A device such as /dev/null is written in place: renaming a temporary file
                // over it would replace the device node.
                (Some(dev), None, 0)
            } else {
                (None, Some(Landing::new(d)?), 0)
            };
            let f = match (&file_holder, &tmp) {
                (Some(f), _) => f,
                (None, Some(t)) => t.file(),
                (None, None) => return Err(format!("{what}: internal error")),
            };
            // A device is written in place (not landed through a temporary file).
            let is_dev = file_holder.is_some() && !resume;
            // MODE E places blocks at offsets; a pipe or terminal takes bytes only in order.
            let in_order = is_dev && !seekable(f);
            let r = match &ext {
                Some(o) if !in_order => {
                    // Only recorded ranges the file really reaches count.
                    let mut upto = RangeSet::new();
                    upto.insert(0, have);
                    let held = recorded
                        .as_ref()
                        .map_or(upto.clone(), |r| intersect(r, &upto));
                    let mut o = o.clone();
                    if resume {
                        let path = sidecar.clone();
                        o.on_ranges = Some(Arc::new(move |r: &RangeSet| {
                            let _ = write_ranges(&path, r);
                        }));
                    }
                    let r = c
                        .get_extended(s, f, 0, None, (!held.is_empty()).then_some(&held), &o)
                        .map_err(ftp)?;
                    if resume {
                        let _ = std::fs::remove_file(&sidecar);
                    }
                    r
                }
                _ => c.get(s, f, have, have).map_err(ftp)?,
            };
            let mode = if in_order { "stream" } else { mode };
            if !is_dev {
                let len = file_len(f)?;
                let want = total.unwrap_or(have + r.bytes);
                if len != want {
                    return Err(format!("{what}: {len} bytes on disk, {want} expected"));
                }
                if let Some(alg) = verify {
                    verify_file(c, alg, f, 0, s, 0, len).map_err(|e| format!("{what}: {e}"))?;
                }
            }
            if let Some(tmp) = tmp {
                tmp.commit(d).map_err(|e| format!("{what}: {e}"))?;
            }
            Ok((r.bytes, Some(format!("{} {mode}", r.path.name()))))
        }
        (_, Node::Local(s), Side::Ftp(c, _, g), Node::Remote(d)) => {
            let f = File::open(s).map_err(|e| format!("{what}: open source: {e}"))?;
            // An upload is sent at offsets and sized up front: a pipe or device has neither,
            // and its size of 0 would silently make an empty remote file.
            if !f.metadata().is_ok_and(|m| m.is_file()) {
                return Err(format!(
                    "{what}: the source is not a regular file (a pipe or device); uploads need a file"
                ));
            }
            let len = file_len(&f)?;
            if let Some(alg) = verify {
                need_cksm(c, alg).map_err(|e| format!("{what}: {e}"))?;
            }
            let ext = g.ext.clone();
            let out = match (&ext, range) {
                (None, Some(_)) => {
                    return Err(format!(
                        "{what}: --offset/--length need a GridFTP server (ESTO)"
                    ));
                }
                (Some(o), Some((off, n))) => {
                    if off.checked_add(n).is_none_or(|e| e > len) {
                        return Err(format!(
                            "{what}: the part {off}+{n} is past the end of the source ({len} bytes)"
                        ));
                    }
                    let r = c
                        .put_extended(&f, off, n, d, Some(off), None, o)
                        .map_err(|e| format!("{what}: {e}"))?;
                    if let Some(alg) = verify {
                        verify_file(c, alg, &f, off, d, off, n)
                            .map_err(|e| format!("{what}: {e}"))?;
                    }
                    return Ok((r.bytes, Some(format!("{} MODE E", r.path.name()))));
                }
                (Some(o), None) if !resume => {
                    let r = c
                        .put_extended(&f, 0, len, d, None, None, o)
                        .map_err(|e| format!("{what}: {e}"))?;
                    verify_remote(c, d, len).map_err(|e| format!("{what}: {e}"))?;
                    (r.bytes, Some(format!("{} MODE E", r.path.name())))
                }
                // Resumed uploads continue in stream mode (REST/APPE at the remote size).
                _ => put_file(c, &f, len, d, resume).map_err(|e| format!("{what}: {e}"))?,
            };
            if let Some(alg) = verify {
                verify_file(c, alg, &f, 0, d, 0, len).map_err(|e| format!("{what}: {e}"))?;
            }
            Ok(out)
        }
        (Side::Ftp(sc, _, _), Node::Remote(s), Side::Ftp(dc, _, _), Node::Remote(d)) => {
            if range.is_some() || verify.is_some() {
                return Err(format!(
                    "{what}: --offset/--length and --verify need one local side"
                ));
            }
            // Relay through a temporary local file: correct for any pair of servers.
            let from = if resume {
                remote_size(dc, d)
                    .map_err(|e| format!("{what}: {e}"))?
                    .unwrap_or(0)
            } else {
                0
            };
            let total = remote_size(sc, s).map_err(|e| format!("{what}: {e}"))?;
            if resume && total == Some(from) {
                return Ok((0, None));
            }
            let tmp = tempfile::tempfile().map_err(|e| format!("{what}: temporary file: {e}"))?;
            sc.get(s, &tmp, 0, from)
                .map_err(|e| format!("{what}: get: {e}"))?;
            let len = file_len(&tmp)?;
            let mode = if from == 0 {
                PutMode::Store
            } else if dc.features().rest_stream {
                PutMode::Restart(from)
            } else {
                PutMode::Append
            };
            let r = dc
                .put(&tmp, 0, len, d, mode)
                .map_err(|e| format!("{what}: put: {e}"))?;
            verify_remote(dc, d, from + len).map_err(|e| format!("{what}: {e}"))?;
            Ok((r.bytes, Some(r.path.name().into())))
        }
        _ => Err(format!("{what}: internal error: mismatched sides")),
    }
}

/// Files per extra control connection of a pipelined tree download (one connection already
/// keeps a loopback server busy for a thousand small files).
const FILES_PER_SESSION: usize = 1024;

/// Most control connections a pipelined tree download uses: one per core (up to 4) — more
/// only contend for the destination directory's lock.
fn max_sessions() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
}

/// Downloads a tree's files with pipelined RETRs over cached MODE E connections, each into
/// a temporary file renamed into place once it is complete (and verified with --verify).
/// A large tree is split over up to [`max_sessions`] control connections working in
/// parallel, so per-file latency on one side overlaps work on the other.
fn get_tree_pipelined(
    c: &mut Client,
    u: &FtpUrl,
    o: &GridOptions,
    files: &[FileJob],
    a: &CpArgs,
    progress: &Progress,
) -> Result<(u64, u64), String> {
    let verify = tree_verify(c, u, a)?;
    let sessions = (files.len() / FILES_PER_SESSION).clamp(1, max_sessions());
    if sessions == 1 {
        return pipelined_share(c, u, o, files, verify, progress);
    }
    let share = files.len().div_ceil(sessions);
    let mut parts = files.chunks(share);
    let first = parts.next().unwrap_or(&[]);
    std::thread::scope(|s| {
        let others: Vec<_> = parts
            .map(|part| {
                s.spawn(move || -> Result<(u64, u64), String> {
                    // Pipelined sessions move MODE E only: passive or active does not apply.
                    let mut extra = connect(u, &progress.current, false)?;
                    let r = pipelined_share(&mut extra, u, o, part, verify, progress);
                    let _ = extra.quit();
                    r
                })
            })
            .collect();
        let mut total = pipelined_share(c, u, o, first, verify, progress)?;
        for h in others {
            let (b, n) = h
                .join()
                .map_err(|_| "cp: a download session panicked".to_string())??;
            total.0 += b;
            total.1 += n;
        }
        Ok(total)
    })
}

/// Commands a pipelined tree copy keeps in flight on one control connection.
const PIPELINE_WINDOW: usize = 64;

/// Files a pipelined tree copy handles at a time (bounds the open files).
const PIPELINE_CHUNK: usize = 256;

/// A pipelined batch must answer for every file it was given.
fn one_result_each(u: &FtpUrl, got: usize, want: usize) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "cp: {}: {got} results for {want} files",
            u.display()
        ))
    }
}

/// Uploads a tree's files with pipelined STORs over cached MODE E connections (each file's
/// data leaves once the server has started its transfer), checking each with --verify.
fn put_tree_pipelined(
    c: &mut Client,
    u: &FtpUrl,
    o: &GridOptions,
    files: &[FileJob],
    a: &CpArgs,
    progress: &Progress,
) -> Result<(u64, u64), String> {
    let verify = tree_verify(c, u, a)?;
    let (mut bytes, mut done) = (0, 0);
    for chunk in files.chunks(PIPELINE_CHUNK) {
        let mut items = Vec::with_capacity(chunk.len());
        for (s, d, _) in chunk {
            let (Node::Local(s), Node::Remote(d)) = (s, d) else {
                return Err("cp: internal error: pipelined sides".into());
            };
            let f = File::open(s).map_err(|e| format!("cp: {}: {e}", s.display()))?;
            let len = file_len(&f)?;
            items.push((f, len, d.clone()));
        }
        let results = c
            .put_pipelined(&items, PIPELINE_WINDOW, o)
            .map_err(|e| format!("cp: {}: {e}", u.display()))?;
        one_result_each(u, results.len(), items.len())?;
        for (r, ((f, len, d), (s, _, _))) in results.into_iter().zip(items.iter().zip(chunk)) {
            let what = format!("cp: {} → {}", s.show(&Side::Local), u.display_path(d));
            let got = r.map_err(|e| format!("{what}: {e}"))?;
            if got != *len {
                return Err(format!("{what}: {got} bytes sent, {len} expected"));
            }
            if let Some(alg) = verify {
                verify_file(c, alg, f, 0, d, 0, *len).map_err(|e| format!("{what}: {e}"))?;
            }
            bytes += got;
            done += 1;
            progress.file_done(got, d);
        }
    }
    Ok((bytes, done))
}

/// One control connection's share of a pipelined tree download.
fn pipelined_share(
    c: &mut Client,
    u: &FtpUrl,
    o: &GridOptions,
    files: &[FileJob],
    verify: Option<Algorithm>,
    progress: &Progress,
) -> Result<(u64, u64), String> {
    let (mut bytes, mut done) = (0, 0);
    for chunk in files.chunks(PIPELINE_CHUNK) {
        let mut items = Vec::with_capacity(chunk.len());
        let mut tmps = Vec::with_capacity(chunk.len());
        for (s, d, _) in chunk {
            let (Node::Remote(s), Node::Local(d)) = (s, d) else {
                return Err("cp: internal error: pipelined sides".into());
            };
            let tmp = Landing::new(d)?;
            let f = tmp
                .file()
                .try_clone()
                .map_err(|e| format!("cp: {}: {e}", d.display()))?;
            items.push((s.clone(), f));
            tmps.push((tmp, d.clone(), s.clone()));
        }
        let results = c
            .get_pipelined(&items, PIPELINE_WINDOW, o)
            .map_err(|e| format!("cp: {}: {e}", u.display()))?;
        one_result_each(u, results.len(), chunk.len())?;
        for (r, ((tmp, d, s), (_, size))) in results
            .into_iter()
            .zip(tmps.into_iter().zip(chunk.iter().map(|(s, _, n)| (s, n))))
        {
            let what = format!("cp: {} → {}", u.display_path(&s), d.display());
            let got = r.map_err(|e| format!("{what}: {e}"))?;
            let len = file_len(tmp.file())?;
            if len != got || size.is_some_and(|n| n != len) {
                return Err(format!(
                    "{what}: {len} bytes on disk, {} expected",
                    size.unwrap_or(got)
                ));
            }
            if let Some(alg) = verify {
                verify_file(c, alg, tmp.file(), 0, &s, 0, len)
                    .map_err(|e| format!("{what}: {e}"))?;
            }
            tmp.commit(&d).map_err(|e| format!("{what}: {e}"))?;
            bytes += got;
            done += 1;
            progress.file_done(got, &d.display().to_string());
        }
    }
    Ok((bytes, done))
}

/// A download that appears under its name only once complete. Preferably an unnamed file
/// (O_TMPFILE) linked into place at the end — one directory update per file instead of a
/// create and a rename, which matters for trees of many small files; else a temporary file
/// renamed into place.
enum Landing {
    Unnamed(File),
    Named(tempfile::NamedTempFile),
}

impl Landing {
    fn new(d: &Path) -> Result<Landing, String> {
        use nix::fcntl::{OFlag, open};
        use nix::sys::stat::Mode;
        match open(
            parent_dir(d),
            OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        ) {
            Ok(fd) => Ok(Landing::Unnamed(File::from(fd))),
            // File systems without O_TMPFILE.
            Err(_) => temp_beside(d).map(Landing::Named),
        }
    }

    fn file(&self) -> &File {
        match self {
            Landing::Unnamed(f) => f,
            Landing::Named(t) => t.as_file(),
        }
    }

    /// Gives the file its name `d` (replacing an existing file atomically).
    fn commit(self, d: &Path) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let f = match self {
            Landing::Named(t) => {
                let _ = t
                    .as_file()
                    .set_permissions(std::fs::Permissions::from_mode(0o644));
                return t
                    .persist(d)
                    .map(drop)
                    .map_err(|e| format!("rename into place: {}", e.error));
            }
            Landing::Unnamed(f) => f,
        };
        match link_unnamed(&f, d) {
            Ok(()) => Ok(()),
            Err(nix::Error::EEXIST) => {
                // Replacing a file: link under a temporary name, then rename over it.
                let tmp = d.with_file_name(format!(
                    ".{}.{}.{}.part",
                    base_name(d),
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|t| t.as_nanos())
                        .unwrap_or(0)
                ));
                link_unnamed(&f, &tmp).map_err(|e| format!("link into place: {e}"))?;
                std::fs::rename(&tmp, d).map_err(|e| {
                    let _ = std::fs::remove_file(&tmp);
                    format!("rename into place: {e}")
                })
            }
            Err(e) => Err(format!("link into place: {e}")),
        }
    }
}

/// Links an O_TMPFILE file to `to`: AT_EMPTY_PATH (needs CAP_DAC_READ_SEARCH), else through
/// /proc/self/fd (any user).
fn link_unnamed(f: &File, to: &Path) -> nix::Result<()> {
    use nix::fcntl::{AT_FDCWD, AtFlags};
    use std::os::fd::AsRawFd;
    match nix::unistd::linkat(f, "", AT_FDCWD, to, AtFlags::AT_EMPTY_PATH) {
        Err(nix::Error::ENOENT | nix::Error::EPERM) => {
            let via = format!("/proc/self/fd/{}", f.as_raw_fd());
            nix::unistd::linkat(
                AT_FDCWD,
                via.as_str(),
                AT_FDCWD,
                to,
                AtFlags::AT_SYMLINK_FOLLOW,
            )
        }
        r => r,
    }
}

/// Uploads `len` bytes of `f` to `d`, continuing a partial remote file with `resume`.
fn put_file(
    c: &mut Client,
    f: &File,
    len: u64,
    d: &str,
    resume: bool,
) -> Result<(u64, Option<String>), String> {
    let mut from = 0;
    let mut mode = PutMode::Store;
    if resume {
        let have = remote_size(c, d).map_err(|e| e.to_string())?.unwrap_or(0);
        if have == len {
            return Ok((0, None));
        }
        if have > len {
            return Err(format!(
                "destination is longer ({have} bytes) than the source ({len} bytes); not resuming"
            ));
        }
        if have > 0 {
            from = have;
            mode = if c.features().rest_stream {
                PutMode::Restart(have)
            } else {
                PutMode::Append
            };
        }
    }
    let r = c
        .put(f, from, len - from, d, mode)
        .map_err(|e| e.to_string())?;
    verify_remote(c, d, len)?;
    Ok((r.bytes, Some(r.path.name().into())))
}

/// Checks the remote file's size when the server can tell.
fn verify_remote(c: &mut Client, d: &str, want: u64) -> Result<(), String> {
    if !c.features().size {
        return Ok(());
    }
    match c.size(d) {
        Ok(n) if n == want => Ok(()),
        Ok(n) => Err(format!(
            "incomplete upload: the server has {n} bytes, {want} expected"
        )),
        Err(e) => Err(format!("checking the upload's size: {e}")),
    }
}
