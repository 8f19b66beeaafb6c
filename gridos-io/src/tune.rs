//! Buffer tuning: window = bandwidth × delay (paper §IV-A.1b), as pure arithmetic and
//! decisions over [`TcpInfo`] samples. Nothing here touches a socket; `net.rs` applies plans.
//!
//! Kernel facts the rules follow:
//! - `SO_SNDBUF`/`SO_RCVBUF` values are doubled by the kernel for bookkeeping; roughly half of
//!   a buffer's memory carries payload, so a buffer of `2 × BDP` bytes of memory covers a BDP.
//! - Without CAP_NET_ADMIN, `SO_*BUF` is capped at `net.core.[wr]mem_max`; with it,
//!   `SO_*BUFFORCE` may exceed that.
//! - Setting `SO_RCVBUF` turns receive autotuning off for that socket, so we never set it below
//!   what autotuning would reach (`net.ipv4.tcp_rmem[2]`).

use crate::TcpInfo;
use serde::Serialize;

/// System limits that bound what tuning can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SysLimits {
    /// `net.core.wmem_max`: the unprivileged SO_SNDBUF ceiling.
    pub wmem_max: usize,
    /// `net.core.rmem_max`: the unprivileged SO_RCVBUF ceiling.
    pub rmem_max: usize,
    /// `net.ipv4.tcp_wmem[2]`: where send autotuning stops.
    pub tcp_wmem_max: usize,
    /// `net.ipv4.tcp_rmem[2]`: where receive autotuning stops.
    pub tcp_rmem_max: usize,
}

impl SysLimits {
    /// Reads the limits from /proc/sys (of the caller's network namespace). A namespace other
    /// than the first has no `net.core.[rw]mem_max` files although the host's values apply, so
    /// those two are then measured: a socket asked for a huge buffer gets `2 × *mem_max`.
    pub fn read() -> SysLimits {
        fn one(path: &str, buffer: Option<bool>) -> usize {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .or_else(|| buffer.and_then(measured_max))
                .unwrap_or(212_992)
        }
        fn third(path: &str, default: usize) -> usize {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.split_whitespace().nth(2).and_then(|v| v.parse().ok()))
                .unwrap_or(default)
        }
        SysLimits {
            wmem_max: one("/proc/sys/net/core/wmem_max", Some(false)),
            rmem_max: one("/proc/sys/net/core/rmem_max", Some(true)),
            tcp_wmem_max: third("/proc/sys/net/ipv4/tcp_wmem", 4 << 20),
            tcp_rmem_max: third("/proc/sys/net/ipv4/tcp_rmem", 6 << 20),
        }
    }
}

/// The effective `net.core.rmem_max` (`recv`) or `wmem_max`, measured on a throw-away socket.
fn measured_max(recv: bool) -> Option<usize> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, getsockopt, setsockopt, socket, sockopt,
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ok()?;
    let huge = 1usize << 30;
    let got = if recv {
        setsockopt(&fd, sockopt::RcvBuf, &huge).ok()?;
        getsockopt(&fd, sockopt::RcvBuf).ok()?
    } else {
        setsockopt(&fd, sockopt::SndBuf, &huge).ok()?;
        getsockopt(&fd, sockopt::SndBuf).ok()?
    };
    Some(got / 2)
}

/// What the caller allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TunePolicy {
    /// Largest buffer (memory bytes, as the kernel reports it) one socket may get.
    pub max_buffer: usize,
    /// Whether we hold CAP_NET_ADMIN (SO_*BUFFORCE allowed).
    pub privileged: bool,
    /// Most parallel streams to suggest.
    pub max_streams: u32,
}

/// Bandwidth-delay product in bytes: `bytes_per_sec × rtt`. Saturates instead of overflowing.
pub fn bdp_bytes(bytes_per_sec: u64, rtt_us: u32) -> u64 {
    let p = u128::from(bytes_per_sec) * u128::from(rtt_us) / 1_000_000;
    u64::try_from(p).unwrap_or(u64::MAX)
}

/// How one direction's buffer is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BufferMethod {
    /// Leave kernel autotuning in charge: it already reaches what is needed, or nothing we may
    /// set would beat it.
    Autotune,
    /// `SO_SNDBUF`/`SO_RCVBUF` (within `net.core.*mem_max`).
    Set,
    /// `SO_SNDBUFFORCE`/`SO_RCVBUFFORCE` (CAP_NET_ADMIN), above `net.core.*mem_max`.
    Force,
}

/// The plan for one direction: how, and the value to pass to setsockopt (the kernel doubles it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BufferSetting {
    /// How.
    pub method: BufferMethod,
    /// Value for setsockopt; 0 with [`BufferMethod::Autotune`].
    pub request: usize,
    /// Payload bytes one stream can keep in flight with this setting.
    pub reach: u64,
}

/// A complete plan for a connection with a given BDP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BufferPlan {
    /// The bandwidth-delay product planned for.
    pub bdp: u64,
    /// Send side.
    pub send: BufferSetting,
    /// Receive side.
    pub recv: BufferSetting,
    /// Parallel streams needed so that `streams × reach ≥ bdp` (1 when one stream suffices).
    pub streams: u32,
    /// One sentence on why.
    pub reason: String,
}

fn setting(
    want_payload: u64,
    sys_max: usize,
    autotune_max: usize,
    policy: &TunePolicy,
) -> BufferSetting {
    // Payload a buffer holds ≈ half its memory; setsockopt(v) gives 2v of memory ≈ v payload.
    let autotune_reach = (autotune_max / 2) as u64;
    let cap_request = policy.max_buffer / 2;
    if want_payload <= autotune_reach {
        return BufferSetting {
            method: BufferMethod::Autotune,
            request: 0,
            reach: autotune_reach,
        };
    }
    let want = usize::try_from(want_payload)
        .unwrap_or(usize::MAX)
        .min(cap_request);
    let (method, request) = if policy.privileged {
        (BufferMethod::Force, want)
    } else {
        (BufferMethod::Set, want.min(sys_max))
    };
    if (request as u64) <= autotune_reach {
        // Anything we may set is below what autotuning reaches; setting it would only hurt.
        return BufferSetting {
            method: BufferMethod::Autotune,
            request: 0,
            reach: autotune_reach,
        };
    }
    BufferSetting {
        method,
        request,
        reach: request as u64,
    }
}

/// Plans buffers for a path whose BDP is `bdp` bytes. Aims a little above the BDP (¼ headroom
/// for RTT jitter and the buffer's own overhead estimate).
pub fn plan(bdp: u64, limits: &SysLimits, policy: &TunePolicy) -> BufferPlan {
    let want = bdp.saturating_add(bdp / 4).max(64 * 1024);
    let send = setting(want, limits.wmem_max, limits.tcp_wmem_max, policy);
    let recv = setting(want, limits.rmem_max, limits.tcp_rmem_max, policy);
    let reach = send.reach.min(recv.reach).max(1);
    let streams = streams_for(bdp, reach, policy.max_streams);
    let reason = format!(
        "bdp {bdp} B; send {:?} {} B (reach {} B), recv {:?} {} B (reach {} B){}; {streams} stream(s) cover it",
        send.method,
        send.request,
        send.reach,
        recv.method,
        recv.request,
        recv.reach,
        if policy.privileged {
            ", privileged"
        } else {
            ", unprivileged"
        },
    );
    BufferPlan {
        bdp,
        send,
        recv,
        streams,
        reason,
    }
}

/// `ceil(bdp / reach)` clamped to `1..=max`.
pub fn streams_for(bdp: u64, reach: u64, max: u32) -> u32 {
    let n = bdp.div_ceil(reach.max(1));
    u32::try_from(n).unwrap_or(u32::MAX).clamp(1, max.max(1))
}

/// An action the monitor wants applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum TuneAction {
    /// Raise the send buffer (setsockopt value; the kernel doubles it).
    RaiseSndbuf {
        /// Request to pass.
        request: usize,
        /// Whether SO_SNDBUFFORCE is needed.
        force: bool,
    },
    /// Raise the receive buffer.
    RaiseRcvbuf {
        /// Request to pass.
        request: usize,
        /// Whether SO_RCVBUFFORCE is needed.
        force: bool,
    },
    /// Buffers are at their limit: more parallel streams would help.
    SuggestStreams {
        /// Total streams suggested.
        streams: u32,
    },
    /// A MODE E sender opened another data connection while the transfer ran, every stream
    /// being limited by its buffer at the cap or by the peer's window.
    StreamAdded {
        /// Streams of the transfer now.
        streams: u32,
    },
}

/// A monitor decision with the inputs it was taken from (logged and kept in the report).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TuneDecision {
    /// What to do.
    pub action: TuneAction,
    /// Smoothed RTT of the sample.
    pub rtt_us: u32,
    /// Delivery rate of the sample, bytes/s.
    pub delivery_rate: u64,
    /// Estimated BDP from the sample, bytes.
    pub bdp: u64,
    /// Per-mille of the interval's busy time limited by our send buffer.
    pub sndbuf_limited_permille: u32,
    /// Per-mille of the interval's busy time limited by the peer's window.
    pub rwnd_limited_permille: u32,
    /// Current buffer (kernel value) of the side being raised.
    pub current: usize,
    /// Why.
    pub reason: String,
}

/// Which side of the transfer the socket is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We send data on it.
    Sender,
    /// We receive data on it.
    Receiver,
}

/// Re-measures a connection from successive [`TcpInfo`] samples and decides buffer raises.
///
/// Sender: when more than 10% of the busy time since the last sample was send-buffer limited,
/// double SO_SNDBUF (at least to the estimated BDP), up to the policy cap; at the cap, or when
/// the peer's window is the limit, suggest streams. (A sender that is send-buffer limited
/// below the autotuning ceiling has a locked buffer, so any raise helps.) Receiver: when the autotuning receive space
/// reaches the buffer, double SO_RCVBUF the same way (only above the autotuning ceiling —
/// below it the kernel does better).
#[derive(Clone, Debug)]
pub struct Monitor {
    role: Role,
    limits: SysLimits,
    policy: TunePolicy,
    prev: Option<TcpInfo>,
    suggested: u32,
    wants_streams: bool,
}

/// Fraction limited above which the monitor acts, per mille.
const LIMITED_PERMILLE: u32 = 100;

/// Shortest round trip on which a limited sender [wants streams](Monitor::wants_streams).
pub const MIN_GROW_RTT_US: u32 = 1000;

impl Monitor {
    /// A monitor for one socket.
    pub fn new(role: Role, limits: SysLimits, policy: TunePolicy) -> Monitor {
        Monitor {
            role,
            limits,
            policy,
            prev: None,
            suggested: 1,
            wants_streams: false,
        }
    }

    /// Whether the last sample found this sender limited where a buffer raise cannot help
    /// (its send buffer at the cap, or the peer's window) on a path of at least
    /// [`MIN_GROW_RTT_US`]: another stream would carry more. On a shorter path a full
    /// window means a slow reader, which another stream does not make faster.
    pub fn wants_streams(&self) -> bool {
        self.wants_streams
    }

    /// Which side this monitor watches.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Feeds a sample together with the socket's current buffer (kernel value of SO_SNDBUF
    /// for a sender, SO_RCVBUF for a receiver). Returns a decision when one is due.
    pub fn observe(&mut self, info: &TcpInfo, current: usize) -> Option<TuneDecision> {
        let prev = self.prev.replace(*info);
        let rtt = if info.min_rtt_us > 0 {
            info.min_rtt_us.max(info.rtt_us / 2)
        } else {
            info.rtt_us
        };
        match self.role {
            Role::Sender => {
                let prev = prev?;
                self.wants_streams = false;
                let busy = info.busy_time_us.saturating_sub(prev.busy_time_us);
                if busy == 0 {
                    return None;
                }
                let permille = |now: u64, before: u64| {
                    u32::try_from(now.saturating_sub(before).saturating_mul(1000) / busy)
                        .unwrap_or(1000)
                        .min(1000)
                };
                let snd = permille(info.sndbuf_limited_us, prev.sndbuf_limited_us);
                let rwnd = permille(info.rwnd_limited_us, prev.rwnd_limited_us);
                let bdp = bdp_bytes(info.delivery_rate, rtt);
                let decision = |action, reason: String| TuneDecision {
                    action,
                    rtt_us: info.rtt_us,
                    delivery_rate: info.delivery_rate,
                    bdp,
                    sndbuf_limited_permille: snd,
                    rwnd_limited_permille: rwnd,
                    current,
                    reason,
                };
                let long = rtt >= MIN_GROW_RTT_US;
                if snd > LIMITED_PERMILLE {
                    if let Some((request, force)) =
                        self.raise(current, bdp, self.limits.wmem_max, 0)
                    {
                        return Some(decision(
                            TuneAction::RaiseSndbuf { request, force },
                            format!("send-buffer limited {snd}‰ of busy time; raising SO_SNDBUF"),
                        ));
                    }
                    self.wants_streams = long;
                    return self.suggest(current, bdp).map(|streams| {
                        decision(
                            TuneAction::SuggestStreams { streams },
                            format!(
                                "send-buffer limited {snd}‰ at the buffer cap; more streams needed"
                            ),
                        )
                    });
                }
                if rwnd > LIMITED_PERMILLE {
                    self.wants_streams = long;
                    return self.suggest(current, bdp).map(|streams| {
                        decision(
                            TuneAction::SuggestStreams { streams },
                            format!("peer receive window limited {rwnd}‰ of busy time"),
                        )
                    });
                }
                None
            }
            Role::Receiver => {
                // rcv_space is the autotuner's estimate of bytes per RTT the reader consumes;
                // once twice that fills the buffer the window is what limits the sender.
                let space = info.rcv_space as usize;
                if space == 0 || space.saturating_mul(2) < current {
                    return None;
                }
                let rtt = if info.rcv_rtt_us > 0 {
                    info.rcv_rtt_us
                } else {
                    rtt
                };
                let bdp = space as u64;
                // Setting SO_RCVBUF switches autotuning off: never below what it would reach.
                let (request, force) = self.raise(
                    current,
                    bdp,
                    self.limits.rmem_max,
                    self.limits.tcp_rmem_max / 2,
                )?;
                Some(TuneDecision {
                    action: TuneAction::RaiseRcvbuf { request, force },
                    rtt_us: rtt,
                    delivery_rate: info.delivery_rate,
                    bdp,
                    sndbuf_limited_permille: 0,
                    rwnd_limited_permille: 0,
                    current,
                    reason: format!(
                        "receive space {space} B fills half of SO_RCVBUF {current} B; raising"
                    ),
                })
            }
        }
    }

    /// The next buffer request: at least double the current payload share and at least the
    /// BDP and `floor`, capped. `None` when no raise is possible.
    fn raise(
        &self,
        current: usize,
        bdp: u64,
        sys_max: usize,
        floor: usize,
    ) -> Option<(usize, bool)> {
        let cap = self.policy.max_buffer / 2;
        let want = current
            .max(usize::try_from(bdp).unwrap_or(usize::MAX))
            .max(floor)
            .min(cap);
        let (request, force) = if self.policy.privileged {
            (want, want > sys_max)
        } else {
            (want.min(sys_max), false)
        };
        (request * 2 > current && request >= floor).then_some((request, force))
    }

    fn suggest(&mut self, current: usize, bdp: u64) -> Option<u32> {
        let streams = streams_for(
            bdp.saturating_mul(2),
            (current / 2).max(1) as u64,
            self.policy.max_streams,
        )
        .max(self.suggested + 1)
        .min(self.policy.max_streams);
        (streams > self.suggested).then(|| {
            self.suggested = streams;
            streams
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SysLimits = SysLimits {
        wmem_max: 4 << 20,
        rmem_max: 4 << 20,
        tcp_wmem_max: 4 << 20,
        tcp_rmem_max: 6 << 20,
    };

    fn policy(privileged: bool) -> TunePolicy {
        TunePolicy {
            max_buffer: 64 << 20,
            privileged,
            max_streams: 16,
        }
    }

    #[test]
    fn bdp_is_bandwidth_times_delay() {
        // 1 Gbit/s = 125 MB/s, 100 ms → 12.5 MB.
        assert_eq!(bdp_bytes(125_000_000, 100_000), 12_500_000);
        assert_eq!(bdp_bytes(0, 100_000), 0);
        assert_eq!(bdp_bytes(u64::MAX, u32::MAX), u64::MAX);
    }

    #[test]
    fn small_bdp_keeps_autotuning() {
        let p = plan(100_000, &LIMITS, &policy(true));
        assert_eq!(p.send.method, BufferMethod::Autotune);
        assert_eq!(p.recv.method, BufferMethod::Autotune);
        assert_eq!(p.streams, 1);
    }

    #[test]
    fn privileged_long_fat_path_forces_buffers_above_sysctl() {
        let p = plan(12_500_000, &LIMITS, &policy(true));
        assert_eq!(p.send.method, BufferMethod::Force);
        assert_eq!(p.send.request, 15_625_000);
        assert!(p.send.request > LIMITS.wmem_max);
        assert_eq!(p.recv.method, BufferMethod::Force);
        assert_eq!(p.streams, 1);
    }

    #[test]
    fn unprivileged_never_sets_rcvbuf_below_autotuning_and_asks_for_streams() {
        let p = plan(12_500_000, &LIMITS, &policy(false));
        // rmem_max (4 MiB) < tcp_rmem[2]/2? No: 4 MiB > 3 MiB, so Set is allowed for recv…
        assert_eq!(p.recv.method, BufferMethod::Set);
        assert_eq!(p.recv.request, 4 << 20);
        // …but for send, 4 MiB wmem_max equals the autotune reach ×2: Set to 4 MiB.
        assert_eq!(p.send.request, 4 << 20);
        assert_eq!(p.streams, 3, "12.5 MB over 4 MiB per stream");
        // With a low rmem_max, setting SO_RCVBUF would disable autotuning for less: keep it.
        let low = SysLimits {
            rmem_max: 212_992,
            wmem_max: 212_992,
            ..LIMITS
        };
        let p = plan(12_500_000, &low, &policy(false));
        assert_eq!(p.recv.method, BufferMethod::Autotune);
        assert_eq!(p.send.method, BufferMethod::Autotune);
        assert_eq!(
            p.streams, 6,
            "12.5 MB over 2 MiB (send autotune reach) per stream"
        );
    }

    #[test]
    fn cap_limits_privileged_buffers_and_streams_make_up() {
        let pol = TunePolicy {
            max_buffer: 16 << 20,
            ..policy(true)
        };
        let p = plan(50_000_000, &LIMITS, &pol);
        assert_eq!(p.send.request, 8 << 20);
        assert_eq!(p.streams, 6);
    }

    fn sample(busy: u64, snd: u64, rwnd: u64) -> TcpInfo {
        TcpInfo {
            state: 1,
            rtt_us: 100_000,
            min_rtt_us: 100_000,
            delivery_rate: 40_000_000,
            busy_time_us: busy,
            sndbuf_limited_us: snd,
            rwnd_limited_us: rwnd,
            ..TcpInfo::default()
        }
    }

    #[test]
    fn sender_raises_sndbuf_when_send_buffer_limited() {
        let mut m = Monitor::new(Role::Sender, LIMITS, policy(true));
        assert_eq!(
            m.observe(&sample(0, 0, 0), 4 << 20),
            None,
            "first sample is a baseline"
        );
        // 800 ms of 1 s busy limited by the send buffer (recorded from a 100 ms RTT run).
        let d = m.observe(&sample(1_000_000, 800_000, 0), 4 << 20).unwrap();
        assert_eq!(d.sndbuf_limited_permille, 800);
        assert_eq!(d.bdp, 4_000_000);
        assert_eq!(
            d.action,
            TuneAction::RaiseSndbuf {
                request: 4 << 20,
                force: false
            }
        );
        // Next interval limited again with a larger buffer: doubles and needs FORCE now.
        let d = m
            .observe(&sample(2_000_000, 1_500_000, 0), 8 << 20)
            .unwrap();
        assert_eq!(
            d.action,
            TuneAction::RaiseSndbuf {
                request: 8 << 20,
                force: true
            }
        );
    }

    #[test]
    fn sender_with_a_small_locked_buffer_is_raised_to_the_bdp() {
        let mut m = Monitor::new(Role::Sender, LIMITS, policy(false));
        m.observe(&sample(0, 0, 0), 16 << 10);
        let d = m.observe(&sample(500_000, 400_000, 0), 16 << 10).unwrap();
        // 40 MB/s × 100 ms = 4 MB: straight to the BDP, not a doubling at a time.
        assert_eq!(
            d.action,
            TuneAction::RaiseSndbuf {
                request: 4_000_000,
                force: false
            }
        );
    }

    #[test]
    fn sender_quiet_when_not_limited() {
        let mut m = Monitor::new(Role::Sender, LIMITS, policy(true));
        m.observe(&sample(0, 0, 0), 1 << 20);
        assert_eq!(m.observe(&sample(1_000_000, 50_000, 20_000), 1 << 20), None);
        assert_eq!(
            m.observe(&sample(1_000_000, 50_000, 20_000), 1 << 20),
            None,
            "no busy time"
        );
    }

    #[test]
    fn unprivileged_sender_at_cap_suggests_more_streams_once_per_step() {
        let mut m = Monitor::new(Role::Sender, LIMITS, policy(false));
        m.observe(&sample(0, 0, 0), 8 << 20);
        let d = m.observe(&sample(1_000_000, 900_000, 0), 8 << 20).unwrap();
        assert!(matches!(d.action, TuneAction::SuggestStreams { streams } if streams >= 2));
        let TuneAction::SuggestStreams { streams: first } = d.action else {
            unreachable!()
        };
        let d = m
            .observe(&sample(2_000_000, 1_900_000, 0), 8 << 20)
            .unwrap();
        let TuneAction::SuggestStreams { streams } = d.action else {
            panic!("{d:?}")
        };
        assert!(streams > first);
    }

    #[test]
    fn receive_window_limited_sender_suggests_streams() {
        let mut m = Monitor::new(Role::Sender, LIMITS, policy(true));
        m.observe(&sample(0, 0, 0), 4 << 20);
        let d = m.observe(&sample(1_000_000, 0, 600_000), 4 << 20).unwrap();
        assert_eq!(d.rwnd_limited_permille, 600);
        assert!(matches!(d.action, TuneAction::SuggestStreams { .. }));
    }

    #[test]
    fn a_sender_wants_streams_only_when_a_raise_cannot_help_on_a_long_path() {
        let mut m = Monitor::new(Role::Sender, LIMITS, policy(false));
        m.observe(&sample(0, 0, 0), 8 << 20);
        assert!(!m.wants_streams());
        // At the cap (unprivileged, 4 MiB system maximum): wants streams, sample after sample.
        m.observe(&sample(1_000_000, 900_000, 0), 8 << 20);
        assert!(m.wants_streams());
        m.observe(&sample(2_000_000, 1_900_000, 0), 8 << 20);
        assert!(m.wants_streams());
        // No longer limited: no.
        m.observe(&sample(3_000_000, 1_900_000, 0), 8 << 20);
        assert!(!m.wants_streams());
        // The peer's window, too.
        m.observe(&sample(4_000_000, 1_900_000, 600_000), 8 << 20);
        assert!(m.wants_streams());
        // A buffer that can still be raised: raise it instead.
        let mut m = Monitor::new(Role::Sender, LIMITS, policy(false));
        m.observe(&sample(0, 0, 0), 16 << 10);
        m.observe(&sample(500_000, 400_000, 0), 16 << 10);
        assert!(!m.wants_streams());
        // A full window on loopback is a slow reader: no.
        let short = |busy, rwnd| TcpInfo {
            rtt_us: 50,
            min_rtt_us: 40,
            ..sample(busy, 0, rwnd)
        };
        let mut m = Monitor::new(Role::Sender, LIMITS, policy(false));
        m.observe(&short(0, 0), 8 << 20);
        m.observe(&short(1_000_000, 900_000), 8 << 20);
        assert!(!m.wants_streams());
    }

    #[test]
    fn receiver_raises_rcvbuf_past_autotuning_only_when_full() {
        let mut m = Monitor::new(Role::Receiver, LIMITS, policy(true));
        let mut s = sample(0, 0, 0);
        s.rcv_space = 1 << 20;
        assert_eq!(m.observe(&s, 12 << 20), None, "space well below the buffer");
        s.rcv_space = 7 << 20;
        let d = m.observe(&s, 12 << 20).unwrap();
        assert_eq!(
            d.action,
            TuneAction::RaiseRcvbuf {
                request: 12 << 20,
                force: true
            }
        );
        let mut m = Monitor::new(Role::Receiver, LIMITS, policy(false));
        assert_eq!(
            m.observe(&s, 12 << 20),
            None,
            "unprivileged cannot beat autotuning"
        );
    }
}
