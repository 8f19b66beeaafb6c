//! [`Copy`](struct@Copy): one copy from a source URL to a destination URL, in any direction.
//!
//! Local → FTP is an upload, FTP → local a download (both zero-copy through gridos-io),
//! local → local a `copy_path`, FTP → FTP a transfer between the two servers
//! (`third_party`: the client only on the control connections; a relay through this
//! machine only when the servers refuse, and said so in the report). Downloads land
//! atomically (an unnamed or temporary file put in place when complete) unless `resume`,
//! which continues a partial destination instead. Every file's size is checked at the end;
//! a copy succeeds only when every byte arrived.
//!
//! Start at [`Copy::run`]; the pieces are `one` (a single file in each direction),
//! `pipelined` (trees over one set of MODE E connections), `third_party` and `http`.

pub(crate) mod http;
pub(crate) mod one;
pub(crate) mod pipelined;
pub(crate) mod third_party;

use crate::endpoint::{
    Connector, FileJob, HttpSide, Node, Side, make_dir, set_modified, stat, walk,
};
use crate::observe::{CopyObserver, Progress, Silent};
use crate::options::{CopyOptions, Pipeline};
use crate::plan::TransferPlan;
use crate::url::Url;
use crate::{Error, ErrorKind, Result};
use gridos_ftp::client::EntryKind;
use gridos_io::CancelToken;
use std::sync::Arc;
use std::time::Instant;

/// What a finished copy did.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct CopyReport {
    /// Source, without any password.
    pub src: String,
    /// Destination, without any password.
    pub dst: String,
    /// Bytes moved.
    pub bytes: u64,
    /// Files copied (including those a resume found complete).
    pub files: u64,
    /// Files a resume found complete already.
    pub skipped: u64,
    /// Directories created.
    pub directories: u64,
    /// Wall time.
    pub seconds: f64,
    /// How the data moved (`io_uring-splice MODE E`, `server to server, MODE E`, …).
    pub path: String,
    /// The zero-copy engine's path on this machine (`None` when this machine moved no
    /// file data: server to server, or nothing to do).
    pub io_path: Option<gridos_io::IoPath>,
    /// Whether this was a resume.
    pub resumed: bool,
    /// Whether every file was compared by checksum.
    pub verified: bool,
    /// The plan of each FTP side, with the bandwidth measured.
    pub tuning: Vec<TransferPlan>,
    /// FTP → FTP: how the data went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub third_party: Option<third_party::Route>,
    /// What the disk end of downloads did (preallocation, write-behind), when this machine
    /// wrote files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskReport>,
}

/// The disk end of the downloads of a copy, summed over its files.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiskReport {
    /// Bytes reserved up front (fallocate) for files whose size was known.
    pub preallocated: u64,
    /// Files written with write-behind.
    pub write_behind_files: u64,
    /// Write-behind windows whose writeback was started.
    pub write_behind_windows: u64,
    /// Windows dropped from the page cache once on disk.
    pub dropped_windows: u64,
    /// Bytes of write-behind files left to the kernel (below the `auto` threshold of a
    /// file whose size was unknown).
    pub left_to_kernel: u64,
    /// The window size, in bytes (0 when no file used write-behind).
    pub window: u64,
}

impl DiskReport {
    fn add(&mut self, o: &DiskReport) {
        self.preallocated += o.preallocated;
        self.write_behind_files += o.write_behind_files;
        self.write_behind_windows += o.write_behind_windows;
        self.dropped_windows += o.dropped_windows;
        self.left_to_kernel += o.left_to_kernel;
        self.window = self.window.max(o.window);
    }
}

/// One copy. Build it, set options, an observer and keep its cancel token, then
/// [`run`](Copy::run) it.
///
/// ```no_run
/// use gridos_middleware::{Copy, CopyOptions, Url};
/// let mut o = CopyOptions::default();
/// o.recursive = true;
/// let report = Copy::new(Url::parse("ftp://host/data")?, Url::parse("/tmp/data")?)
///     .options(o)
///     .run()?;
/// println!("{} bytes in {} files", report.bytes, report.files);
/// # Ok::<(), gridos_middleware::Error>(())
/// ```
pub struct Copy {
    src: Url,
    dst: Url,
    options: CopyOptions,
    observer: Arc<dyn CopyObserver>,
    cancel: CancelToken,
}

impl Copy {
    /// A copy of `src` to `dst` with default options. An existing directory as `dst`
    /// receives the source under its own name.
    pub fn new(src: Url, dst: Url) -> Copy {
        Copy {
            src,
            dst,
            options: CopyOptions::default(),
            observer: Arc::new(Silent),
            cancel: CancelToken::new(),
        }
    }

    /// Sets the options.
    pub fn options(mut self, options: CopyOptions) -> Copy {
        self.options = options;
        self
    }

    /// Sets the observer that receives progress and events.
    pub fn observer(mut self, observer: Arc<dyn CopyObserver>) -> Copy {
        self.observer = observer;
        self
    }

    /// A token that cancels the running copy from another thread: the copy stops with
    /// [`ErrorKind::Cancelled`] and leaves no destination that looks complete.
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Runs the copy to the end.
    pub fn run(self) -> Result<CopyReport> {
        let o = &self.options;
        o.check()?;
        let obs: &dyn CopyObserver = &*self.observer;
        let progress = Progress::new();
        let conn = Connector::new(
            o,
            progress.clone(),
            self.cancel.clone(),
            self.observer.clone(),
        );
        let open = |url: &Url| -> Result<(Side, Node)> {
            match url {
                Url::Local(p) => Ok((Side::Local, Node::Local(p.clone()))),
                Url::Ftp(u) => {
                    let side = conn.side(u.clone(), obs)?;
                    let path = u.path.clone();
                    Ok((Side::Ftp(Box::new(side)), Node::Remote(path)))
                }
                Url::Http(u) => {
                    let h = HttpSide::open(u.clone())?;
                    Ok((Side::Http(Box::new(h)), Node::Remote(u.url.clone())))
                }
            }
        };
        if let Url::Http(u) = &self.dst {
            return Err(Error::new(ErrorKind::InvalidInput, u.display())
                .detail("http(s):// URLs are copy sources only"));
        }
        // Two servers are logged in to, and asked about their paths, at the same time: on
        // a long path each step costs round trips to both.
        let both_remote = !self.src.is_local() && !self.dst.is_local();
        let (src_open, dst_open) = both(both_remote, || open(&self.src), || open(&self.dst));
        let ((mut src_side, src), (mut dst_side, dst)) = (src_open?, dst_open?);
        // Data over TLS (PROT P) on either side: the report's path says so.
        let tls = [&src_side, &dst_side]
            .iter()
            .any(|s| matches!(s, Side::Ftp(f) if f.client.data_protected()));
        let shown = |path: String| if tls { format!("TLS {path}") } else { path };
        // Each FTP side's plan, with the endpoint its monitor decisions name.
        let plans: Vec<(String, TransferPlan)> = [&src_side, &dst_side]
            .iter()
            .filter_map(|s| match s {
                Side::Ftp(f) => Some((f.url.display(), f.plan.clone())),
                Side::Local | Side::Http(_) => None,
            })
            .collect();

        let (src_meta, dst_meta) = both(
            both_remote,
            || stat(&mut src_side, &src),
            || stat(&mut dst_side, &dst),
        );
        let meta = src_meta?.ok_or_else(|| {
            Error::new(ErrorKind::NotFound, src.show(&src_side)).detail("no such file or directory")
        })?;
        if meta.kind == EntryKind::Dir && !o.recursive {
            return Err(Error::new(ErrorKind::IsADirectory, src.show(&src_side))
                .detail("is a directory (use -r to copy a tree)"));
        }
        // An existing directory receives the source under its own name.
        let dst = if dst_meta?.is_some_and(|m| m.kind == EntryKind::Dir) {
            match self.src.file_name() {
                Some(n) => dst.join(&n),
                None if meta.kind == EntryKind::Dir => dst,
                None => {
                    return Err(Error::new(ErrorKind::InvalidInput, src.show(&src_side))
                        .detail("has no file name"));
                }
            }
        } else {
            dst
        };
        if let (Node::Local(s), Node::Local(d)) = (&src, &dst)
            && std::fs::canonicalize(s)
                .ok()
                .is_some_and(|s| std::fs::canonicalize(d).ok() == Some(s))
        {
            return Err(Error::new(
                ErrorKind::SameFile,
                format!("{} and {}", s.display(), d.display()),
            )
            .detail("are the same file"));
        }

        // Plan: directories to create (parents first) and files to copy.
        let mut dirs = Vec::new();
        let mut files = Vec::new();
        if meta.kind == EntryKind::Dir {
            walk(&mut src_side, &src, &dst, &mut dirs, &mut files, obs)?;
        } else {
            // From MLST: the total and the download's expected size, without another
            // round trip.
            files.push(FileJob {
                src: src.clone(),
                dst: dst.clone(),
                size: meta.size,
                modified: meta.modified,
            });
        }
        let total: u64 = match o.range {
            // A part of one file moves only its length.
            Some((off, len)) => files
                .iter()
                .filter_map(|f| f.size)
                .map(|n| n.saturating_sub(off).min(len))
                .sum(),
            None => files.iter().filter_map(|f| f.size).sum(),
        };
        progress.add_total(total);
        obs.total(files.len() as u64, total);

        let start = Instant::now();
        let mut t = Totals::default();
        progress.ticking(obs, || -> Result<()> {
            for d in &dirs {
                make_dir(&mut dst_side, d)?;
            }
            if o.compress {
                for side in [&mut src_side, &mut dst_side] {
                    if let Side::Ftp(f) = side {
                        f.client
                            .deflate_mode()
                            .map_err(|e| Error::from_ftp(f.url.display(), e).detail("MODE Z"))?;
                    }
                }
            }
            if let Some(r) = pipelined::try_tree(
                &mut src_side,
                &mut dst_side,
                &files,
                o,
                &conn,
                &progress,
                obs,
            )? {
                t.bytes += r.0;
                t.files += r.1;
                let io = o.io_path.unwrap_or_else(gridos_io::probe);
                t.path = Some(shown(format!("{} pipelined", io.name())));
                t.io = Some(io);
                return Ok(());
            }
            for job in &files {
                if self.cancel.is_cancelled() {
                    return Err(Error::new(ErrorKind::Cancelled, job.src.show(&src_side)));
                }
                obs.file_started(&job.src.show(&src_side), &job.dst.show(&dst_side), job.size);
                let moved = match (&mut src_side, &mut dst_side) {
                    (Side::Ftp(s), Side::Ftp(d)) => {
                        // Once the servers refused, the rest of a tree is relayed too.
                        let refused = t.route.as_ref().and_then(|r| r.reason.clone());
                        let (moved, route) = third_party::copy(s, d, job, o, &conn, obs, refused)?;
                        t.route = Some(route);
                        moved
                    }
                    (Side::Http(h), d) => http::copy(h, d, job, o, &progress, &self.cancel)?,
                    (s, d) => one::copy(s, d, job, o, &progress)?,
                };
                if o.preserve_times
                    && let Some(t) = job.modified
                {
                    set_modified(&mut dst_side, &job.dst, t).map_err(|e| {
                        e.context(format!(
                            "{} → {}",
                            job.src.show(&src_side),
                            job.dst.show(&dst_side)
                        ))
                    })?;
                }
                t.bytes += moved.bytes;
                t.files += 1;
                if moved.bytes == 0 && o.resume {
                    t.skipped += 1;
                }
                if moved.path.is_some() {
                    t.path = moved.path.map(shown);
                }
                t.io = moved.io.or(t.io);
                if let Some(d) = &moved.disk {
                    t.disk.get_or_insert_with(DiskReport::default).add(d);
                }
                progress.file_done(moved.bytes);
                obs.file_done(
                    &job.src.show(&src_side),
                    &job.dst.show(&dst_side),
                    moved.bytes,
                );
            }
            Ok(())
        })?;
        progress.last(obs);
        let quit = |side: Side| {
            if let Side::Ftp(f) = side {
                let _ = f.client.quit();
            }
        };
        both(both_remote, || quit(src_side), || quit(dst_side));
        let seconds = start.elapsed().as_secs_f64();
        let rate = (t.bytes as f64 / seconds.max(1e-9)) as u64;
        // What the path between this machine and the server gave an automatic plan: where
        // the next copy with the server starts (not a third-party copy's server-to-server
        // path).
        let remote = match (&self.src, &self.dst) {
            (Url::Ftp(u), Url::Local(_)) | (Url::Local(_), Url::Ftp(u)) => Some(u),
            _ => None,
        };
        if let Some(u) = remote
            && plans.first().is_some_and(|(_, p)| p.auto == Some(true))
        {
            conn.memory.copied(&u.host, u.port, t.bytes, rate);
        }
        Ok(CopyReport {
            src: self.src.to_string(),
            dst: self.dst.to_string(),
            bytes: t.bytes,
            files: t.files,
            skipped: t.skipped,
            directories: dirs.len() as u64,
            seconds,
            path: t.path.unwrap_or_else(|| "none".into()),
            io_path: t.io,
            resumed: o.resume,
            verified: o.verify.is_some(),
            tuning: plans
                .into_iter()
                .map(|(end, mut p)| {
                    // What the path delivered: the estimate the next transfer starts from.
                    p.measured_bytes_per_sec = Some(rate);
                    p.grew_to = conn.grown_to(&end);
                    p
                })
                .collect(),
            third_party: t.route,
            disk: t.disk,
        })
    }
}

/// Totals of a run.
#[derive(Default)]
struct Totals {
    bytes: u64,
    files: u64,
    skipped: u64,
    path: Option<String>,
    io: Option<gridos_io::IoPath>,
    route: Option<third_party::Route>,
    disk: Option<DiskReport>,
}

/// What copying one file did.
#[derive(Default)]
pub(crate) struct Moved {
    /// Bytes moved (0 when a resume found the file complete).
    pub bytes: u64,
    /// How the data moved, for messages (`io_uring-splice MODE E`, …), when data moved.
    pub path: Option<String>,
    /// The zero-copy engine's path on this machine, when this machine moved the data.
    pub io: Option<gridos_io::IoPath>,
    /// What the disk end did, for a download onto this machine.
    pub disk: Option<DiskReport>,
}

impl Moved {
    pub fn none() -> Moved {
        Moved::default()
    }
}

/// Runs `a` and `b`, at the same time (`b` on a thread of its own) when `parallel`.
fn both<A: Send, B: Send>(
    parallel: bool,
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    if !parallel {
        return (a(), b());
    }
    std::thread::scope(|s| {
        let hb = s.spawn(b);
        let ra = a();
        match hb.join() {
            Ok(rb) => (ra, rb),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Whether trees are pipelined by default.
pub(crate) fn pipelining(o: &CopyOptions) -> bool {
    o.pipeline != Pipeline::Never
}
