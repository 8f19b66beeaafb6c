//! FTP → FTP. The data goes straight from one server to the other (the client only on the
//! two control connections): stream mode with PASV/PORT, or MODE E with SPAS/SPOR between
//! GridFTP servers. Only when a server refuses the direct connection does the copy relay
//! the bytes through a temporary file here, and [`Route`] says so; with
//! `CopyOptions::relay == false` that refusal is an error instead.

use super::Moved;
use super::one::resume_mode;
use crate::endpoint::{Connector, FileJob, FtpSide, Node};
use crate::landing::file_len;
use crate::observe::CopyObserver;
use crate::options::CopyOptions;
use crate::verify::{remote_size, verify_remote};
use crate::{Error, ErrorKind, Result};
use gridos_ftp::client::PutMode;

/// How an FTP → FTP copy moved its data.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Route {
    /// Directly between the servers (`true`) or relayed through this machine.
    pub third_party: bool,
    /// Why the copy relayed (the refusal), when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Control-connection round trips the direct transfer cost (per file, the last one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_round_trips: Option<u32>,
}

/// Copies one file from the server of `s` to the server of `d`.
pub(crate) fn copy(
    s: &mut FtpSide,
    d: &mut FtpSide,
    job: &FileJob,
    o: &CopyOptions,
    _conn: &Connector<'_>,
    obs: &dyn CopyObserver,
) -> Result<(Moved, Route)> {
    let (Node::Remote(sp), Node::Remote(dp)) = (&job.src, &job.dst) else {
        return Err(Error::new(ErrorKind::InvalidInput, "").detail("third-party sides"));
    };
    let what = format!("{} → {}", s.url.display_path(sp), d.url.display_path(dp));
    let reason = "direct transfers are not available".to_string();
    if !o.relay {
        return Err(Error::new(ErrorKind::ThirdPartyRefused, what).detail(reason));
    }
    obs.notice(&format!("{what}: relaying through this machine ({reason})"));
    let moved = relay(s, sp, d, dp, job.size, o).map_err(|e| e.context(&what))?;
    Ok((
        moved,
        Route {
            third_party: false,
            reason: Some(reason),
            control_round_trips: None,
        },
    ))
}

/// Relays through a temporary local file: correct for any pair of servers.
fn relay(
    s: &mut FtpSide,
    sp: &str,
    d: &mut FtpSide,
    dp: &str,
    size: Option<u64>,
    o: &CopyOptions,
) -> Result<Moved> {
    if o.range.is_some() || o.verify.is_some() {
        return Err(Error::new(ErrorKind::InvalidInput, "")
            .detail("--offset/--length and --verify need one local side or a direct transfer"));
    }
    let from = if o.resume {
        remote_size(&mut d.client, dp)?.unwrap_or(0)
    } else {
        0
    };
    let total = match size {
        Some(n) => Some(n),
        None => remote_size(&mut s.client, sp)?,
    };
    if o.resume && total == Some(from) {
        return Ok(Moved::none());
    }
    let tmp = tempfile::tempfile().map_err(|e| Error::from_io("temporary file", e))?;
    s.client
        .get(sp, &tmp, 0, from)
        .map_err(|e| Error::from_ftp("", e).detail("get"))?;
    let len = file_len(&tmp)?;
    let mode = if from == 0 {
        PutMode::Store
    } else {
        resume_mode(&d.client, from)
    };
    let r = d
        .client
        .put(&tmp, 0, len, dp, mode)
        .map_err(|e| Error::from_ftp("", e).detail("put"))?;
    verify_remote(&mut d.client, dp, from + len)?;
    Ok(Moved {
        bytes: r.bytes,
        path: Some(r.path.name().into()),
    })
}
