//! Trees over one set of MODE E data connections: many RETRs or STORs in flight on one
//! control connection (and, for large downloads, several control connections at once).
//! Chosen by default for trees between this machine and a server that offers MODE E.

use crate::endpoint::{Connector, FileJob, FtpSide, Node, Side, set_modified};
use crate::landing::{Landing, file_len};
use crate::observe::{CopyObserver, Progress};
use crate::options::CopyOptions;
use crate::verify::{need_cksm, verify_file};
use crate::{Error, ErrorKind, Result};
use gridos_ftp::checksum::Algorithm;
use gridos_ftp::client::GridOptions;
use std::fs::File;

/// Files per extra control connection of a pipelined tree download (one connection
/// already keeps a loopback server busy for a thousand small files).
const FILES_PER_SESSION: usize = 1024;

/// Commands a pipelined tree copy keeps in flight on one control connection.
const PIPELINE_WINDOW: usize = 64;

/// Files a pipelined tree copy handles at a time (bounds the open files).
const PIPELINE_CHUNK: usize = 256;

/// Copies the tree pipelined when that applies (a tree of more than one file between this
/// machine and a MODE E server, no resume, no range); `None` when it does not.
pub(crate) fn try_tree(
    src: &mut Side,
    dst: &mut Side,
    files: &[FileJob],
    o: &CopyOptions,
    conn: &Connector<'_>,
    progress: &Progress,
    obs: &dyn CopyObserver,
) -> Result<Option<(u64, u64)>> {
    if !super::pipelining(o) || o.resume || o.range.is_some() || files.len() < 2 {
        return Ok(None);
    }
    let grid = |f: &FtpSide| f.plan.grid.clone();
    match (src, dst) {
        (Side::Ftp(f), Side::Local) => match grid(f) {
            Some(g) => get_tree(f, &g, conn, files, o, progress, obs).map(Some),
            None => Ok(None),
        },
        (Side::Local, Side::Ftp(f)) => match grid(f) {
            Some(g) => put_tree(f, &g, files, o, progress, obs).map(Some),
            None => Ok(None),
        },
        _ => Ok(None),
    }
}

/// Most control connections a pipelined tree download uses: one per core (up to 4) —
/// more only contend for the destination directory's lock.
fn max_sessions() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
}

/// The --verify algorithm of a tree copy, checked once against what the server offers.
fn tree_verify(f: &FtpSide, o: &CopyOptions) -> Result<Option<Algorithm>> {
    if let Some(alg) = o.verify {
        need_cksm(&f.client, alg).map_err(|e| e.context(f.url.display()))?;
    }
    Ok(o.verify)
}

/// A pipelined batch must answer for every file it was given.
fn one_result_each(f: &FtpSide, got: usize, want: usize) -> Result<()> {
    if got == want {
        return Ok(());
    }
    Err(Error::new(ErrorKind::Protocol, f.url.display())
        .detail(format!("{got} results for {want} files")))
}

/// Downloads a tree's files, each into an unnamed or temporary file put in place once it
/// is complete (and verified). A large tree is split over up to [`max_sessions`] control
/// connections working in parallel, so per-file latency on one side overlaps work on the
/// other.
fn get_tree(
    f: &mut FtpSide,
    g: &GridOptions,
    conn: &Connector<'_>,
    files: &[FileJob],
    o: &CopyOptions,
    progress: &Progress,
    obs: &dyn CopyObserver,
) -> Result<(u64, u64)> {
    let verify = tree_verify(f, o)?;
    let sessions = (files.len() / FILES_PER_SESSION).clamp(1, max_sessions());
    if sessions == 1 {
        return get_share(f, g, files, verify, o, progress, obs);
    }
    let share = files.len().div_ceil(sessions);
    let mut parts = files.chunks(share);
    let first = parts.next().unwrap_or(&[]);
    let url = f.url.clone();
    std::thread::scope(|s| {
        let others: Vec<_> = parts
            .map(|part| {
                let url = url.clone();
                s.spawn(move || -> Result<(u64, u64)> {
                    // Pipelined sessions move MODE E only: passive or active does not apply.
                    let client = conn.login(&url, false)?;
                    let mut extra = FtpSide {
                        client,
                        url,
                        plan: f_plan_clone(g),
                    };
                    let r = get_share(&mut extra, g, part, verify, o, progress, obs);
                    let _ = extra.client.quit();
                    r
                })
            })
            .collect();
        let mut total = get_share(f, g, first, verify, o, progress, obs)?;
        for h in others {
            let (b, n) = h.join().map_err(|_| {
                Error::new(ErrorKind::Io, url.display()).detail("a download session panicked")
            })??;
            total.0 += b;
            total.1 += n;
        }
        Ok(total)
    })
}

/// The plan of an extra session: the same MODE E settings.
fn f_plan_clone(g: &GridOptions) -> crate::plan::TransferPlan {
    let mut p = crate::plan::TransferPlan::plain(crate::plan::Mode::E);
    p.grid = Some(g.clone());
    p
}

/// One control connection's share of a pipelined tree download.
fn get_share(
    f: &mut FtpSide,
    g: &GridOptions,
    files: &[FileJob],
    verify: Option<Algorithm>,
    o: &CopyOptions,
    progress: &Progress,
    obs: &dyn CopyObserver,
) -> Result<(u64, u64)> {
    let (mut bytes, mut done) = (0, 0);
    for chunk in files.chunks(PIPELINE_CHUNK) {
        let mut items = Vec::with_capacity(chunk.len());
        let mut landings = Vec::with_capacity(chunk.len());
        for job in chunk {
            let (Node::Remote(s), Node::Local(d)) = (&job.src, &job.dst) else {
                return Err(Error::new(ErrorKind::InvalidInput, "").detail("pipelined sides"));
            };
            let l = Landing::new(d)?;
            let file = l
                .file()
                .try_clone()
                .map_err(|e| Error::from_io(d.display().to_string(), e))?;
            items.push((s.clone(), file));
            landings.push(Some((l, d, s)));
        }
        // Without --verify a file lands as soon as its transfer is over, so the progress
        // line counts files while the batch runs; with it, after the server's checksum.
        let url = f.url.clone();
        let mut failed = None;
        let results = f
            .client
            .get_pipelined_each(&items, PIPELINE_WINDOW, g, &mut |i, r| {
                if verify.is_some() || failed.is_some() {
                    return;
                }
                let (Ok(got), Some(slot), Some(job)) = (r, landings.get_mut(i), chunk.get(i))
                else {
                    return;
                };
                if let Some((l, d, s)) = slot.take() {
                    let what = format!("{} → {}", url.display_path(s), d.display());
                    match land_download(l, d, job, *got, &what, o) {
                        Ok(()) => {
                            obs.file_done(&url.display_path(s), &d.display().to_string(), *got)
                        }
                        Err(e) => failed = Some(e),
                    }
                }
            })
            .map_err(|e| Error::from_ftp(f.url.display(), e))?;
        if let Some(e) = failed {
            return Err(e);
        }
        one_result_each(f, results.len(), chunk.len())?;
        for (r, (slot, job)) in results.into_iter().zip(landings.into_iter().zip(chunk)) {
            let got = match (slot, r) {
                // Landed while the batch ran.
                (None, Ok(got)) => got,
                (Some((l, d, s)), r) => {
                    let what = format!("{} → {}", f.url.display_path(s), d.display());
                    let got = r.map_err(|e| Error::from_ftp(what.clone(), e))?;
                    if let Some(alg) = verify {
                        check_len(&l, job, got, &what)?;
                        verify_file(&mut f.client, alg, l.file(), 0, s, 0, got)
                            .map_err(|e| e.context(&what))?;
                    }
                    land_download(l, d, job, got, &what, o)?;
                    obs.file_done(&f.url.display_path(s), &d.display().to_string(), got);
                    got
                }
                (None, Err(e)) => return Err(Error::from_ftp(f.url.display(), e)),
            };
            bytes += got;
            done += 1;
            progress.file_done(got);
        }
    }
    Ok((bytes, done))
}

/// A downloaded file is as long as the transfer said and the listing promised.
fn check_len(l: &Landing, job: &FileJob, got: u64, what: &str) -> Result<()> {
    let len = file_len(l.file())?;
    if len != got || job.size.is_some_and(|n| n != len) {
        return Err(Error::new(ErrorKind::Incomplete, what).detail(format!(
            "{len} bytes on disk, {} expected",
            job.size.unwrap_or(got)
        )));
    }
    Ok(())
}

/// Puts a complete download in place under its name (with its modification time).
fn land_download(
    l: Landing,
    d: &std::path::Path,
    job: &FileJob,
    got: u64,
    what: &str,
    o: &CopyOptions,
) -> Result<()> {
    check_len(&l, job, got, what)?;
    l.commit(d).map_err(|e| e.context(what))?;
    if o.preserve_times
        && let Some(t) = job.modified
    {
        set_modified(&mut Side::Local, &job.dst, t).map_err(|e| e.context(what))?;
    }
    Ok(())
}

/// Uploads a tree's files with pipelined STORs (each file's data leaves once the server
/// has started its transfer), checking each with --verify.
fn put_tree(
    f: &mut FtpSide,
    g: &GridOptions,
    files: &[FileJob],
    o: &CopyOptions,
    progress: &Progress,
    obs: &dyn CopyObserver,
) -> Result<(u64, u64)> {
    let verify = tree_verify(f, o)?;
    let (mut bytes, mut done) = (0, 0);
    for chunk in files.chunks(PIPELINE_CHUNK) {
        let mut items = Vec::with_capacity(chunk.len());
        for job in chunk {
            let (Node::Local(s), Node::Remote(d)) = (&job.src, &job.dst) else {
                return Err(Error::new(ErrorKind::InvalidInput, "").detail("pipelined sides"));
            };
            let file = File::open(s).map_err(|e| Error::from_io(s.display().to_string(), e))?;
            let len = file_len(&file)?;
            items.push((file, len, d.clone()));
        }
        // Without --verify or --preserve (which need the control connection) a file is
        // done as soon as the server confirmed it, so the progress line counts files while
        // the batch runs.
        let early = verify.is_none() && !o.preserve_times;
        let url = f.url.clone();
        let mut told = vec![false; items.len()];
        let results = f
            .client
            .put_pipelined_each(&items, PIPELINE_WINDOW, g, &mut |i, r| {
                if let (true, Ok(got), Some((_, len, d)), Some(job)) =
                    (early, r, items.get(i), chunk.get(i))
                    && got == len
                {
                    told[i] = true;
                    obs.file_done(&job.src.show(&Side::Local), &url.display_path(d), *got);
                }
            })
            .map_err(|e| Error::from_ftp(f.url.display(), e))?;
        one_result_each(f, results.len(), items.len())?;
        for (i, (r, ((file, len, d), job))) in
            results.into_iter().zip(items.iter().zip(chunk)).enumerate()
        {
            let what = format!("{} → {}", job.src.show(&Side::Local), f.url.display_path(d));
            let got = r.map_err(|e| Error::from_ftp(what.clone(), e))?;
            if got != *len {
                return Err(Error::new(ErrorKind::Incomplete, what)
                    .detail(format!("{got} bytes sent, {len} expected")));
            }
            if let Some(alg) = verify {
                verify_file(&mut f.client, alg, file, 0, d, 0, *len)
                    .map_err(|e| e.context(&what))?;
            }
            if o.preserve_times
                && let Some(t) = job.modified
            {
                f.client
                    .set_modified(d, t)
                    .map_err(|e| Error::from_ftp(what.clone(), e).detail("MFMT"))?;
            }
            bytes += got;
            done += 1;
            progress.file_done(got);
            if !told.get(i).copied().unwrap_or(false) {
                obs.file_done(&job.src.show(&Side::Local), &f.url.display_path(d), got);
            }
        }
    }
    Ok((bytes, done))
}
