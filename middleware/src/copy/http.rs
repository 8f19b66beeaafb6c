//! HTTP(S) → this machine: one GET, or parallel ranged GETs for a large file on a server
//! that offers ranges; `resume` continues a partial file with a ranged GET bound to the
//! version it started from (If-Range), so a changed file is fetched again whole.

use super::Moved;
use crate::endpoint::{FileJob, HttpSide, Node, Side, http_is_a_source};
use crate::http::Part;
use crate::landing::{Landing, file_len, open_in_place};
use crate::observe::Progress;
use crate::options::CopyOptions;
use crate::{Error, ErrorKind, Result};
use gridos_io::CancelToken;

/// Below this size one GET is as fast as several.
const PARALLEL_FROM: u64 = 64 << 20;

/// Streams for a large file when the options do not say.
const AUTO_STREAMS: usize = 4;

/// Copies the HTTP(S) source of `job` to a local destination.
pub(crate) fn copy(
    h: &HttpSide,
    dst: &mut Side,
    job: &FileJob,
    o: &CopyOptions,
    progress: &Progress,
    cancel: &CancelToken,
) -> Result<Moved> {
    let what = format!("{} → {}", h.url.display(), job.dst.show(dst));
    let Node::Local(d) = &job.dst else {
        return Err(http_is_a_source(h).context(&what));
    };
    if o.verify.is_some() || o.range.is_some() || o.compress {
        return Err(Error::new(ErrorKind::InvalidInput, &what)
            .detail("--verify, --offset/--length and --compress need an FTP or GridFTP server"));
    }
    let counter = Some(&*progress.current);
    let cancel = Some(cancel);
    let size = h.stat.size;
    let bytes = if o.resume {
        let f = open_in_place(d).map_err(|e| e.context(&what))?;
        let have = file_len(&f)?;
        if size == Some(have) {
            return Ok(Moved::none());
        }
        if let Some(t) = size.filter(|&t| have > t) {
            return Err(Error::new(ErrorKind::InvalidInput, &what).detail(format!(
                "destination is longer ({have} bytes) than the source ({t} bytes); not resuming"
            )));
        }
        let part = Part {
            offset: have,
            len: None,
            if_range: h.stat.validator(),
        };
        let got = h
            .source
            .get(&h.url, &f, &part, counter, cancel)
            .map_err(|e| e.context(&what))?;
        check_len(&what, file_len(&f)?, size)?;
        got.bytes
    } else {
        let l = Landing::new(d).map_err(|e| e.context(&what))?;
        let streams = match o.parallel {
            Some(n) => n as usize,
            None if size.is_some_and(|s| s >= PARALLEL_FROM) => AUTO_STREAMS,
            None => 1,
        };
        let got = if streams > 1 {
            h.source
                .get_parallel(&h.url, l.file(), &h.stat, streams, counter, cancel)
        } else {
            h.source
                .get(&h.url, l.file(), &Part::default(), counter, cancel)
                .map(|f| f.bytes)
        }
        .map_err(|e| e.context(&what))?;
        check_len(&what, file_len(l.file())?, size)?;
        l.commit(d).map_err(|e| e.context(&what))?;
        got
    };
    Ok(Moved {
        bytes,
        path: Some(if h.url.tls { "https" } else { "http" }.into()),
        io: None,
        disk: None,
    })
}

fn check_len(what: &str, len: u64, want: Option<u64>) -> Result<()> {
    match want {
        Some(w) if w != len => Err(Error::new(ErrorKind::Incomplete, what)
            .detail(format!("{len} bytes on disk, {w} expected"))),
        _ => Ok(()),
    }
}
