//! How one FTP side moves file data: a [`TransferPlan`] computed by a pure function from
//! what the server offers, the options and the path's measured round-trip time.
//!
//! With no `parallel`/`tcp_buffer` the plan is automatic: the control connection's RTT
//! times a link-speed ceiling (twice what the last copy with this server reached, else
//! 10 Gbit/s: [`ceiling`]) gives the bandwidth-delay product; buffers are planned to
//! cover it (forced past the system maximum when privileged, within `io.max_buffer` per
//! connection and `io.max_total_buffer` per transfer) and, where one connection's buffer
//! cannot, enough streams are opened; long paths get enough streams that their slow
//! starts fill the path within a few round trips ([`ramp_streams`]). Each stream's
//! TCP_INFO monitor keeps raising buffers during the transfer.

use crate::options::CopyOptions;
use crate::{Error, ErrorKind, Result};
use gridos_ftp::client::GridOptions;
use gridos_io::tune::{BufferMethod, SysLimits, TunePolicy, bdp_bytes, plan};

/// Assumed ceiling of a path's bandwidth before anything is measured (10 Gbit/s): with the
/// RTT it bounds the bandwidth-delay product the first plan has to cover.
pub const LINK_CEILING: u64 = 1_250_000_000;

/// Most streams the automatic plan opens.
pub const AUTO_MAX_STREAMS: u32 = 8;

/// Bytes a new TCP connection may send in its first round trip: the kernel's initial window
/// of 10 segments at the common 1448-byte MSS (jumbo-frame paths only ramp faster).
const INITIAL_WINDOW: u64 = 10 * 1448;

/// Round trips of slow start the automatic plan allows each stream before the streams
/// together cover the bandwidth-delay product (each doubles its window per round trip).
const RAMP_ROUND_TRIPS: u32 = 6;

/// Streams whose slow starts together reach `bdp` within [`RAMP_ROUND_TRIPS`]: on a long
/// path, buffers big enough for the BDP do not make one stream fill it sooner. Measured on
/// the emulated 100 ms / 1 Gbit/s path (benches/RESULTS.md, 2026-12-02 15:03): 512 MiB with
/// 4 streams 5.59–5.78 s, with 8 streams 5.47–5.53 s, with 12 streams 5.59–5.62 s.
pub fn ramp_streams(bdp: u64) -> u32 {
    let per_stream = INITIAL_WINDOW << RAMP_ROUND_TRIPS;
    u32::try_from(bdp.div_ceil(per_stream))
        .unwrap_or(u32::MAX)
        .max(1)
}

/// Transfer mode on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Mode {
    /// Stream mode.
    S,
    /// GridFTP extended block mode (parallel streams, offsets).
    E,
    /// Deflate (MODE Z).
    Z,
}

/// The settings of one FTP side and the reasons behind them (`-v` and `--json` show it).
#[derive(Clone, Debug, serde::Serialize)]
pub struct TransferPlan {
    /// Transfer mode.
    pub mode: Mode,
    /// Chosen from the path (no `-p`/`--tcp-bs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto: Option<bool>,
    /// Round-trip time measured on the control connection (µs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_us: Option<u32>,
    /// The bandwidth the plan covers at most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_ceiling_bytes_per_sec: Option<u64>,
    /// Where that ceiling comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_ceiling_from: Option<CeilingSource>,
    /// Bandwidth × delay planned for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bdp_bytes: Option<u64>,
    /// Parallel data connections (MODE E).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streams: Option<u32>,
    /// Most streams an upload may grow to while it runs (unless `-p` fixed them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grow_to: Option<u32>,
    /// The streams an upload had when it ended, when it opened more while it ran (filled in
    /// by the report).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grew_to: Option<u32>,
    /// Socket buffer forced on each data connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_buffer: Option<u64>,
    /// Whether SBUF asks the server for the same buffer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sbuf: Option<bool>,
    /// MODE E block size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u64>,
    /// Whether this process may force buffers (CAP_NET_ADMIN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// `io.max_total_buffer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_total_buffer: Option<usize>,
    /// One sentence on why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the path delivered (filled in by the report).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured_bytes_per_sec: Option<u64>,
    /// The control connection's TLS (`None`: commands and data in clear).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsPlan>,
    /// What became of a login sent before the server's greeting (`None`: none was sent;
    /// `false`: unanswered, connected again the usual way).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_ahead: Option<bool>,
    /// MODE E settings to use (`None`: stream or deflate mode).
    #[serde(skip)]
    pub grid: Option<GridOptions>,
}

/// Where a plan's bandwidth ceiling comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CeilingSource {
    /// [`LINK_CEILING`]: nothing is known of the path yet.
    Assumed,
    /// Twice the rate the last copy from or to this server reached ([`crate::hosts`]).
    Remembered,
}

/// The ceiling of a plan: twice a remembered rate (room for the path to give more than
/// the last copy took, above [`LINK_CEILING`] too on faster paths: the stream and buffer
/// limits still bound the plan), else [`LINK_CEILING`].
pub fn ceiling(remembered_bytes_per_sec: Option<u64>) -> (u64, CeilingSource) {
    match remembered_bytes_per_sec {
        Some(r) if r > 0 => (r.saturating_mul(2), CeilingSource::Remembered),
        _ => (LINK_CEILING, CeilingSource::Assumed),
    }
}

/// What TLS protects on one FTP side.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TlsPlan {
    /// `TLS 1.3` or `TLS 1.2`.
    pub version: String,
    /// The cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// Whether data connections are encrypted too (`PROT P`).
    pub data_protected: bool,
    /// How the server's certificate was checked.
    pub server_checked: CertCheck,
}

/// How a server's certificate was checked.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertCheck {
    /// Against the system's CA roots.
    SystemRoots,
    /// Against the CA certificates of a file (`--cacert`).
    CaFile(std::path::PathBuf),
    /// Not at all (`--insecure`).
    NotChecked,
}

impl TransferPlan {
    pub(crate) fn plain(mode: Mode) -> TransferPlan {
        TransferPlan {
            mode,
            auto: None,
            rtt_us: None,
            link_ceiling_bytes_per_sec: None,
            link_ceiling_from: None,
            bdp_bytes: None,
            streams: None,
            grow_to: None,
            grew_to: None,
            tcp_buffer: None,
            sbuf: None,
            block_size: None,
            privileged: None,
            max_total_buffer: None,
            reason: None,
            measured_bytes_per_sec: None,
            tls: None,
            login_ahead: None,
            grid: None,
        }
    }
}

/// What the plan needs to know of the server and the path.
#[derive(Clone, Copy, Debug)]
pub struct PathFacts {
    /// The server offers MODE E.
    pub gridftp: bool,
    /// The URL demanded GridFTP (`gridftp://`).
    pub gridftp_url: bool,
    /// Control-connection RTT (µs), 0 when unknown.
    pub rtt_us: u32,
    /// This process may force socket buffers.
    pub privileged: bool,
    /// The rate the last copy from or to this server reached ([`crate::hosts`]).
    pub remembered_bytes_per_sec: Option<u64>,
}

/// The plan for one side; `what` names the endpoint in errors.
pub fn plan_side(
    what: &str,
    facts: PathFacts,
    o: &CopyOptions,
    cfg: &gridos_io::IoConfig,
    limits: &SysLimits,
) -> Result<TransferPlan> {
    if facts.gridftp_url && !facts.gridftp {
        return Err(Error::new(ErrorKind::Unsupported, what)
            .detail("the server does not offer the GridFTP extensions (no MODE E in FEAT)"));
    }
    if o.compress || o.stream || !facts.gridftp {
        if o.parallel.is_some_and(|p| p > 1) && !facts.gridftp {
            return Err(Error::new(ErrorKind::Unsupported, what)
                .detail("-p needs a GridFTP server (no MODE E in FEAT)"));
        }
        return Ok(TransferPlan::plain(if o.compress {
            Mode::Z
        } else {
            Mode::S
        }));
    }
    let mut p = TransferPlan::plain(Mode::E);
    let mut g = GridOptions::default();
    if o.parallel.is_none() && o.tcp_buffer.is_none() {
        let rtt_us = facts.rtt_us.max(1);
        let policy = TunePolicy {
            max_buffer: cfg.max_buffer,
            privileged: facts.privileged,
            max_streams: AUTO_MAX_STREAMS.min(cfg.max_streams),
        };
        let (ceiling, from) = ceiling(facts.remembered_bytes_per_sec);
        let bdp = bdp_bytes(ceiling, rtt_us);
        let bp = plan(bdp, limits, &policy);
        g.streams = bp.streams;
        let mut reason = bp.reason;
        let ramp = ramp_streams(bdp).min(policy.max_streams);
        if ramp > g.streams {
            g.streams = ramp;
            reason.push_str(&format!(
                "; {ramp} streams so that slow start fills the path within \
                 {RAMP_ROUND_TRIPS} round trips"
            ));
        }
        // Forced buffers on this side only: an SBUF the server cannot force would cap its
        // buffer at the system maximum, below what its autotuning reaches; the streams
        // cover the rest.
        g.sbuf = false;
        g.tcp_buffer = match bp.recv.method {
            BufferMethod::Force => Some(bp.recv.request as u64),
            _ => None,
        };
        // All streams together stay within io.max_total_buffer (the kernel doubles each
        // request).
        if let Some(b) = g.tcp_buffer {
            let share = (cfg.max_total_buffer / 2 / g.streams.max(1) as usize) as u64;
            g.tcp_buffer = (share >= 64 * 1024).then_some(b.min(share));
        }

        p.auto = Some(true);
        p.rtt_us = Some(rtt_us);
        p.link_ceiling_bytes_per_sec = Some(ceiling);
        p.link_ceiling_from = Some(from);
        p.bdp_bytes = Some(bdp);
        p.privileged = Some(policy.privileged);
        p.max_total_buffer = Some(cfg.max_total_buffer);
        p.reason = Some(reason);
    } else {
        p.auto = Some(false);
    }
    if let Some(n) = o.parallel {
        g.streams = n;
    }
    if let Some(b) = o.tcp_buffer {
        g.tcp_buffer = Some(b);
    }
    if let Some(b) = o.block_size {
        g.block_size = b.max(1);
    }
    // Unless -p fixed the streams, an upload may open more while it runs (when the monitor
    // finds every stream limited where a buffer raise cannot help), as many as
    // io.max_streams and, for forced buffers, io.max_total_buffer allow.
    if o.parallel.is_none() {
        let by_buffers = g.tcp_buffer.map_or(u32::MAX, |b| {
            u32::try_from(cfg.max_total_buffer as u64 / (2 * b.max(1))).unwrap_or(u32::MAX)
        });
        let grow_to = cfg.max_streams.min(by_buffers);
        g.grow_to = (grow_to > g.streams).then_some(grow_to);
    }
    p.streams = Some(g.streams);
    p.grow_to = g.grow_to;
    p.tcp_buffer = g.tcp_buffer;
    p.sbuf = Some(g.sbuf);
    p.block_size = Some(g.block_size);
    p.grid = Some(g);
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(gridftp: bool, rtt_us: u32) -> PathFacts {
        PathFacts {
            gridftp,
            gridftp_url: false,
            rtt_us,
            privileged: false,
            remembered_bytes_per_sec: None,
        }
    }

    #[test]
    fn plain_servers_get_stream_mode_and_refuse_parallel() {
        let cfg = gridos_io::IoConfig::default();
        let l = SysLimits::read();
        let p = plan_side("x", facts(false, 100), &CopyOptions::default(), &cfg, &l).unwrap();
        assert_eq!(p.mode, Mode::S);
        let o = CopyOptions {
            parallel: Some(2),
            ..CopyOptions::default()
        };
        let e = plan_side("x", facts(false, 100), &o, &cfg, &l).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        let f = PathFacts {
            gridftp_url: true,
            ..facts(false, 1)
        };
        assert!(plan_side("x", f, &CopyOptions::default(), &cfg, &l).is_err());
    }

    #[test]
    fn long_paths_get_more_streams_when_unprivileged() {
        let cfg = gridos_io::IoConfig::default();
        let l = SysLimits::read();
        let near = plan_side("x", facts(true, 50), &CopyOptions::default(), &cfg, &l).unwrap();
        let far = plan_side("x", facts(true, 100_000), &CopyOptions::default(), &cfg, &l).unwrap();
        assert_eq!(near.streams, Some(1));
        assert!(far.streams.unwrap() > 1, "{far:?}");
        assert_eq!(far.auto, Some(true));
        let o = CopyOptions {
            parallel: Some(4),
            ..CopyOptions::default()
        };
        let fixed = plan_side("x", facts(true, 100_000), &o, &cfg, &l).unwrap();
        assert_eq!((fixed.streams, fixed.auto), (Some(4), Some(false)));
    }

    #[test]
    fn long_paths_open_streams_for_slow_start_privileged_or_not() {
        // 1 ms or less: one stream's slow start fills the path in a few round trips.
        assert_eq!(ramp_streams(bdp_bytes(LINK_CEILING, 50)), 1);
        assert_eq!(ramp_streams(bdp_bytes(LINK_CEILING, 1_000)), 2);
        assert!(ramp_streams(bdp_bytes(LINK_CEILING, 100_000)) > AUTO_MAX_STREAMS);
        let cfg = gridos_io::IoConfig::default();
        let l = SysLimits::read();
        for privileged in [false, true] {
            let f = PathFacts {
                privileged,
                ..facts(true, 100_000)
            };
            let p = plan_side("x", f, &CopyOptions::default(), &cfg, &l).unwrap();
            assert_eq!(p.streams, Some(AUTO_MAX_STREAMS), "{p:?}");
            // Unprivileged, the buffers' reach alone asks for as many streams.
            if privileged {
                assert!(p.reason.unwrap().contains("slow start"));
            }
            // The forced buffers of all streams stay within io.max_total_buffer.
            if let Some(b) = p.tcp_buffer {
                assert!(2 * b * u64::from(AUTO_MAX_STREAMS) <= cfg.max_total_buffer as u64);
            }
        }
    }

    #[test]
    fn a_remembered_rate_sets_the_ceiling_with_room_to_grow() {
        assert_eq!(ceiling(None), (LINK_CEILING, CeilingSource::Assumed));
        assert_eq!(ceiling(Some(0)), (LINK_CEILING, CeilingSource::Assumed));
        assert_eq!(
            ceiling(Some(100_000_000)),
            (200_000_000, CeilingSource::Remembered)
        );
        assert_eq!(ceiling(Some(u64::MAX)).0, u64::MAX);
        let cfg = gridos_io::IoConfig::default();
        let l = SysLimits::read();
        // 10 ms at 124 MB/s: a few streams, not the 8 a 10 Gbit/s guess asks for.
        let f = PathFacts {
            remembered_bytes_per_sec: Some(124_000_000),
            privileged: true,
            ..facts(true, 10_000)
        };
        let p = plan_side("x", f, &CopyOptions::default(), &cfg, &l).unwrap();
        let guess = plan_side(
            "x",
            PathFacts {
                remembered_bytes_per_sec: None,
                ..f
            },
            &CopyOptions::default(),
            &cfg,
            &l,
        )
        .unwrap();
        assert_eq!(p.link_ceiling_from, Some(CeilingSource::Remembered));
        assert_eq!(p.bdp_bytes, Some(2_480_000));
        assert_eq!(p.streams, Some(3), "{p:?}");
        assert_eq!(guess.streams, Some(AUTO_MAX_STREAMS), "{guess:?}");
    }
}
