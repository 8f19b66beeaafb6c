//! One file between this machine and a server (or two local paths).

use super::{DiskReport, Moved};
use crate::endpoint::{FileJob, FtpSide, Node, Side};
use crate::landing::{
    Landing, existing_device, file_len, not_a_file, open_in_place, ranges_sidecar, seekable,
};
use crate::observe::Progress;
use crate::options::CopyOptions;
use crate::resume::{held, read_ranges, write_ranges};
use crate::verify::{need_cksm, remote_size, verify_file, verify_remote};
use crate::{Error, ErrorKind, Result};
use gridos_ftp::client::{Client, PutMode};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// Copies one file between a local side and any side.
pub(crate) fn copy(
    src: &mut Side,
    dst: &mut Side,
    job: &FileJob,
    o: &CopyOptions,
    progress: &Progress,
) -> Result<Moved> {
    let what = format!("{} → {}", job.src.show(src), job.dst.show(dst));
    let r = match (&mut *src, &job.src, &mut *dst, &job.dst) {
        (_, Node::Local(s), _, Node::Local(d)) => local(s, d, o),
        (Side::Ftp(f), Node::Remote(s), _, Node::Local(d)) => {
            download(f, s, d, job.size, o, progress)
        }
        (_, Node::Local(s), Side::Ftp(f), Node::Remote(d)) => upload(f, s, d, o, progress),
        _ => Err(Error::new(ErrorKind::InvalidInput, "").detail("sides and paths do not match")),
    };
    r.map_err(|e| e.context(&what))
}

fn local(s: &Path, d: &Path, o: &CopyOptions) -> Result<Moved> {
    if o.range.is_some() || o.verify.is_some() {
        return Err(Error::new(ErrorKind::InvalidInput, "")
            .detail("--offset/--length and --verify apply to FTP transfers"));
    }
    let r = gridos_io::copy_path(s, d).map_err(|e| Error::from_gridos_io("", e))?;
    Ok(Moved {
        bytes: r.bytes,
        path: Some(format!("{:?}", r.method)),
        io: None,
        ..Moved::default()
    })
}

/// Downloads `s` to `d`.
pub(crate) fn download(
    f: &mut FtpSide,
    s: &str,
    d: &Path,
    known_size: Option<u64>,
    o: &CopyOptions,
    progress: &Progress,
) -> Result<Moved> {
    let c = &mut f.client;
    let ftp = |e| Error::from_ftp("", e);
    if let Some(alg) = o.verify {
        need_cksm(c, alg)?;
    }
    let ext = f.plan.grid.clone();
    let mode = if ext.is_some() { "MODE E" } else { "stream" };
    if let Some((off, len)) = o.range {
        let Some(g) = &ext else {
            return Err(Error::new(ErrorKind::Unsupported, "")
                .detail("--offset/--length need a GridFTP server (ERET)"));
        };
        let existed = d.exists();
        let file = open_in_place(d)?;
        // A destination this copy created does not outlive its failure.
        let undo = |e: Error| {
            if !existed {
                let _ = std::fs::remove_file(d);
            }
            e
        };
        let r = c
            .get_extended(s, &file, off, Some((off, len)), None, g)
            .map_err(ftp)
            .map_err(undo)?;
        if r.bytes != len {
            return Err(undo(Error::new(ErrorKind::Incomplete, "").detail(format!(
                "{} bytes of the part arrived, {len} expected",
                r.bytes
            ))));
        }
        if let Some(alg) = o.verify {
            verify_file(c, alg, &file, off, s, off, len).map_err(undo)?;
        }
        return Ok(Moved {
            bytes: r.bytes,
            path: Some(format!("{} {mode}", r.path.name())),
            io: Some(r.path),
            ..Moved::default()
        });
    }
    let total = match known_size {
        Some(n) => Some(n),
        None => remote_size(c, s)?,
    };
    // MODE E blocks arrive out of order: a resumable download records the ranges it holds
    // beside the file, and a resume trusts that record over the file's size.
    let sidecar = ranges_sidecar(d);
    let recorded = if o.resume {
        read_ranges(&sidecar)?
    } else {
        None
    };
    let (holder, landing, have) = if o.resume {
        let file = open_in_place(d)?;
        let have = file_len(&file)?;
        let complete = match (&recorded, total) {
            (Some(r), Some(t)) => r.covers(0, t) && have == t,
            (None, Some(t)) => have == t,
            _ => false,
        };
        if complete {
            let _ = std::fs::remove_file(&sidecar);
            progress.held(have);
            return Ok(Moved::none());
        }
        if let Some(t) = total.filter(|&t| have > t) {
            return Err(Error::new(ErrorKind::InvalidInput, "").detail(format!(
                "destination is longer ({have} bytes) than the source ({t} bytes); not resuming"
            )));
        }
        (Some(file), None, have)
    } else if let Some(dev) = existing_device(d)? {
        // A device such as /dev/null is written in place.
        (Some(dev), None, 0)
    } else {
        (None, Some(Landing::new(d)?), 0)
    };
    let file = match (&holder, &landing) {
        (Some(f), _) => f,
        (None, Some(l)) => l.file(),
        (None, None) => unreachable_pair()?,
    };
    // A device is written in place (not landed through a temporary file).
    let is_dev = holder.is_some() && !o.resume;
    // MODE E places blocks at offsets; a pipe or terminal takes bytes only in order.
    let in_order = is_dev && !seekable(file);
    // Blocks reserved up front where the size is known (not for a device written in place).
    let reserved = match total {
        Some(t) if o.preallocate && (holder.is_none() || o.resume) => {
            crate::landing::reserve(file, have, t).inspect_err(|_| {
                // A refused reservation may have taken some blocks before it ran out.
                if holder.is_some() {
                    crate::landing::release_reserve(file);
                }
            })?
        }
        _ => false,
    };
    // A partial file kept for a resume gives back what was reserved past its end.
    let keep_partial = |e: Error| {
        if reserved && holder.is_some() {
            crate::landing::release_reserve(file);
        }
        e
    };
    // Large files are written back as they land (not for a device written in place).
    let wb = if is_dev {
        None
    } else {
        let mode = o
            .write_behind
            .unwrap_or_else(|| gridos_io::config().write_behind);
        gridos_io::WriteBehind::with_mode(file, total, mode)
    };
    c.config_mut().transfer.write_behind = wb.clone();
    let got = match &ext {
        Some(g) if !in_order => {
            // What the REST line can name: the rest comes again.
            let held = held(recorded.as_ref(), have).largest(gridos_ftp::client::REST_RANGES_MAX);
            progress.held(held.total());
            let mut g = g.clone();
            if o.resume {
                let path = sidecar.clone();
                g.on_ranges = Some(Arc::new(move |r: &gridos_ftp::proto::RangeSet| {
                    let _ = write_ranges(&path, r);
                }));
            }
            c.get_extended(s, file, 0, None, (!held.is_empty()).then_some(&held), &g)
        }
        _ => {
            progress.held(have);
            c.get(s, file, have, have)
        }
    };
    // The handle belongs to this file only.
    c.config_mut().transfer.write_behind = None;
    let r = got.map_err(ftp).map_err(keep_partial)?;
    if o.resume && ext.is_some() && !in_order {
        let _ = std::fs::remove_file(&sidecar);
    }
    let mode = if in_order { "stream" } else { mode };
    if !is_dev {
        let len = file_len(file)?;
        let want = total.unwrap_or(have + r.bytes);
        if len != want {
            return Err(keep_partial(
                Error::new(ErrorKind::Incomplete, "")
                    .detail(format!("{len} bytes on disk, {want} expected")),
            ));
        }
        if let Some(alg) = o.verify {
            verify_file(c, alg, file, 0, s, 0, len)?;
        }
    }
    if let Some(l) = landing {
        l.commit(d)?;
    }
    let w = wb.map(|w| w.report());
    let disk = DiskReport {
        preallocated: match total {
            Some(t) if reserved => t.saturating_sub(have),
            _ => 0,
        },
        write_behind_files: u64::from(w.is_some()),
        write_behind_windows: w.as_ref().map_or(0, |w| w.windows_started),
        dropped_windows: w.as_ref().map_or(0, |w| w.windows_dropped),
        left_to_kernel: w.as_ref().map_or(0, |w| w.bytes_left_to_kernel),
        window: w.as_ref().map_or(0, |w| w.window),
    };
    Ok(Moved {
        bytes: r.bytes,
        path: Some(format!("{} {mode}", r.path.name())),
        io: Some(r.path),
        disk: (!is_dev).then_some(disk),
    })
}

/// The (impossible) case of a download with neither a file in place nor a landing.
fn unreachable_pair<T>() -> Result<T> {
    Err(Error::new(ErrorKind::InvalidInput, "").detail("no destination file"))
}

/// Uploads `s` to `d`.
pub(crate) fn upload(
    f: &mut FtpSide,
    s: &Path,
    d: &str,
    o: &CopyOptions,
    progress: &Progress,
) -> Result<Moved> {
    let c = &mut f.client;
    let ftp = |e| Error::from_ftp("", e);
    let file = File::open(s).map_err(|e| Error::from_io("", e).detail("open source"))?;
    // An upload is sent at offsets and sized up front: a pipe or device has neither, and
    // its size of 0 would silently make an empty remote file.
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(not_a_file(""));
    }
    let len = file_len(&file)?;
    if let Some(alg) = o.verify {
        need_cksm(c, alg)?;
    }
    let ext = f.plan.grid.clone();
    let moved = match (&ext, o.range) {
        (None, Some(_)) => {
            return Err(Error::new(ErrorKind::Unsupported, "")
                .detail("--offset/--length need a GridFTP server (ESTO)"));
        }
        (Some(g), Some((off, n))) => {
            if off.checked_add(n).is_none_or(|e| e > len) {
                return Err(Error::new(ErrorKind::InvalidInput, "").detail(format!(
                    "the part {off}+{n} is past the end of the source ({len} bytes)"
                )));
            }
            let r = c
                .put_extended(&file, off, n, d, Some(off), None, g)
                .map_err(ftp)?;
            if let Some(alg) = o.verify {
                verify_file(c, alg, &file, off, d, off, n)?;
            }
            return Ok(Moved {
                bytes: r.bytes,
                path: Some(format!("{} MODE E", r.path.name())),
                io: Some(r.path),
                ..Moved::default()
            });
        }
        (Some(g), None) if !o.resume => {
            let r = c
                .put_extended(&file, 0, len, d, None, None, g)
                .map_err(ftp)?;
            verify_remote(c, d, len)?;
            Moved {
                bytes: r.bytes,
                path: Some(format!("{} MODE E", r.path.name())),
                io: Some(r.path),
                ..Moved::default()
            }
        }
        // Resumed uploads continue in stream mode (REST/APPE at the remote size).
        _ => put_file(c, &file, len, d, o.resume, progress)?,
    };
    if let Some(alg) = o.verify {
        verify_file(c, alg, &file, 0, d, 0, len)?;
    }
    Ok(moved)
}

/// Uploads `len` bytes of `f` to `d` in stream mode, continuing a partial remote file with
/// `resume`.
pub(crate) fn put_file(
    c: &mut Client,
    f: &File,
    len: u64,
    d: &str,
    resume: bool,
    progress: &Progress,
) -> Result<Moved> {
    let mut from = 0;
    let mut mode = PutMode::Store;
    if resume {
        let have = remote_size(c, d)?.unwrap_or(0);
        if have == len {
            progress.held(have);
            // The server may hold every byte in its partial file only (the client was
            // killed after the last byte, before the server's reply), and SIZE counts the
            // partial. An empty REST + STOR then puts it in place.
            if len > 0 && c.features().rest_stream && !remote_file_is(c, d, len)? {
                c.put(f, len, 0, d, PutMode::Restart(len))
                    .map_err(|e| Error::from_ftp("", e))?;
                verify_remote(c, d, len)?;
            }
            return Ok(Moved::none());
        }
        if have > len {
            return Err(Error::new(ErrorKind::InvalidInput, "").detail(format!(
                "destination is longer ({have} bytes) than the source ({len} bytes); not resuming"
            )));
        }
        if have > 0 {
            from = have;
            mode = resume_mode(c, have);
            progress.held(have);
        }
    }
    let r = c
        .put(f, from, len - from, d, mode)
        .map_err(|e| Error::from_ftp("", e))?;
    verify_remote(c, d, len)?;
    Ok(Moved {
        bytes: r.bytes,
        path: Some(r.path.name().into()),
        io: Some(r.path),
        ..Moved::default()
    })
}

/// Whether the remote file `d` itself (not a partial upload of it) has `len` bytes, by
/// MLST; without MLST there is no telling, and it is taken to.
fn remote_file_is(c: &mut Client, d: &str, len: u64) -> Result<bool> {
    if !c.features().mlst {
        return Ok(true);
    }
    match c.stat(d) {
        Ok(e) => Ok(e.is_some_and(|e| e.size == Some(len))),
        Err(e) => Err(Error::from_ftp("", e).detail("checking the upload")),
    }
}

/// How to continue an upload at `have`: REST + STOR where the server restarts stream
/// transfers, else APPE.
pub(crate) fn resume_mode(c: &Client, have: u64) -> PutMode {
    if c.features().rest_stream {
        PutMode::Restart(have)
    } else {
        PutMode::Append
    }
}
