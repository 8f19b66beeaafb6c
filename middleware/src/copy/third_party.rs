//! FTP → FTP. The data goes straight from one server to the other (the client only on the
//! two control connections): stream mode with PASV/PORT, or MODE E with SPAS/SPOR between
//! GridFTP servers. Only when a server refuses the direct connection does the copy relay
//! the bytes through a temporary file here, and [`Route`] says so; with
//! `CopyOptions::relay == false` that refusal is an error instead.

use super::Moved;
use super::one::resume_mode;
use crate::endpoint::{Connector, FileJob, FtpSide, Node};
use crate::landing::file_len;
use crate::observe::{CopyObserver, Progress};
use crate::options::CopyOptions;
use crate::verify::{remote_size, verify_remote};
use crate::{Error, ErrorKind, Result};
use gridos_ftp::client::third_party::{self, ThirdPartyOptions};
use gridos_ftp::client::{Error as FtpError, PutMode};

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

/// Copies one file from the server of `s` to the server of `d`: directly when the
/// servers allow it, else (with `relay`) through this machine.
pub(crate) fn copy(
    s: &mut FtpSide,
    d: &mut FtpSide,
    job: &FileJob,
    o: &CopyOptions,
    conn: &Connector<'_>,
    obs: &dyn CopyObserver,
    refused_before: Option<String>,
) -> Result<(Moved, Route)> {
    let (Node::Remote(sp), Node::Remote(dp)) = (&job.src, &job.dst) else {
        return Err(Error::new(ErrorKind::InvalidInput, "").detail("third-party sides"));
    };
    let what = format!("{} → {}", s.url.display_path(sp), d.url.display_path(dp));
    if let Some(reason) = refused_before {
        let moved = relay(s, sp, d, dp, job.size, o).map_err(|e| e.context(&what))?;
        return Ok((moved, relayed(reason)));
    }
    let reason = match direct(s, sp, d, dp, job, o, &conn.progress) {
        Ok(r) => return Ok(r),
        Err(Refusal::Fatal(e)) => return Err(e.context(&what)),
        Err(Refusal::Refused(e)) => {
            if !o.relay {
                return Err(Error::new(ErrorKind::ThirdPartyRefused, &what)
                    .detail("the servers refused a direct transfer and --no-relay was given")
                    .source(e));
            }
            e.to_string()
        }
        Err(Refusal::NotPossible(why)) => {
            if !o.relay {
                return Err(Error::new(ErrorKind::ThirdPartyRefused, &what)
                    .detail(format!("{why}, and --no-relay was given")));
            }
            why.to_string()
        }
    };
    obs.notice(&format!("{what}: relaying through this machine ({reason})"));
    // A refused transfer may leave a control connection out of step: start afresh.
    s.client = conn.login(&s.url, o.active)?;
    d.client = conn.login(&d.url, o.active)?;
    let moved = relay(s, sp, d, dp, job.size, o).map_err(|e| e.context(&what))?;
    Ok((moved, relayed(reason)))
}

fn relayed(reason: String) -> Route {
    Route {
        third_party: false,
        reason: Some(reason),
        control_round_trips: None,
    }
}

/// Why a direct transfer did not happen.
enum Refusal {
    /// A server refused the other's address: a relay may work.
    Refused(gridos_ftp::client::Error),
    /// The options need something a direct transfer cannot do.
    NotPossible(&'static str),
    /// Anything else: the copy fails.
    Fatal(Error),
}

/// The direct transfer: MODE E (SPAS/SPOR) when both servers offer it, else stream mode
/// (PASV/PORT).
fn direct(
    s: &mut FtpSide,
    sp: &str,
    d: &mut FtpSide,
    dp: &str,
    job: &FileJob,
    o: &CopyOptions,
    progress: &Progress,
) -> std::result::Result<(Moved, Route), Refusal> {
    if o.compress {
        return Err(Refusal::NotPossible(
            "MODE Z is not offered for server-to-server copies",
        ));
    }
    let mut opts = ThirdPartyOptions::default();
    opts.grid = match (&s.plan.grid, &d.plan.grid) {
        (Some(g), Some(_)) => Some(g.clone()),
        _ => None,
    };
    opts.verify = o.verify;
    opts.range = o.range;
    if o.resume {
        let have = remote_size(&mut d.client, dp)
            .map_err(Refusal::Fatal)?
            .unwrap_or(0);
        let total = match job.size {
            Some(n) => Some(n),
            None => remote_size(&mut s.client, sp).map_err(Refusal::Fatal)?,
        };
        if total == Some(have) {
            progress.held(have);
            return Ok((Moved::none(), route(None)));
        }
        if let Some(t) = total.filter(|&t| have > t) {
            return Err(Refusal::Fatal(
                Error::new(ErrorKind::InvalidInput, "").detail(format!(
                    "destination is longer ({have} bytes) than the source ({t} bytes); not resuming"
                )),
            ));
        }
        if have > 0 {
            // REST continues stream-mode transfers.
            opts.grid = None;
            opts.restart = Some(have);
            // The bar starts where the destination stands (a relay after a refusal moves
            // the same rest).
            progress.held(have);
        }
    }
    match third_party::transfer(&mut s.client, sp, &mut d.client, dp, &opts) {
        Ok(r) => {
            let mode = if r.mode_e { "MODE E" } else { "stream" };
            Ok((
                Moved {
                    bytes: r.bytes,
                    path: Some(format!("server to server, {mode}")),
                    io: None,
                    disk: None,
                },
                route(Some(r.control_round_trips)),
            ))
        }
        Err(e) if matches!(e, FtpError::ThirdPartyRefused { .. }) => Err(Refusal::Refused(e)),
        Err(e) => Err(Refusal::Fatal(Error::from_ftp("", e))),
    }
}

fn route(round_trips: Option<u32>) -> Route {
    Route {
        third_party: true,
        reason: None,
        control_round_trips: round_trips,
    }
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
        io: Some(r.path),
        disk: None,
    })
}
