//! `TCP_INFO`: what the kernel knows about a connection (RTT, window, delivery rate, and how
//! long the sender was limited by its send buffer or the peer's receive window).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, AsRawFd};

/// The fields of Linux `struct tcp_info` that gridos uses. Times are microseconds, rates
/// bytes per second. Fields the running kernel does not report are zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpInfo {
    /// TCP state (1 = ESTABLISHED).
    pub state: u8,
    /// Smoothed round-trip time.
    pub rtt_us: u32,
    /// RTT variance.
    pub rttvar_us: u32,
    /// Lowest RTT seen (the path's propagation delay estimate).
    pub min_rtt_us: u32,
    /// Congestion window, in segments.
    pub snd_cwnd: u32,
    /// Sender's maximum segment size.
    pub snd_mss: u32,
    /// Receiver-side RTT estimate.
    pub rcv_rtt_us: u32,
    /// Receive-space estimate used by receive-buffer autotuning.
    pub rcv_space: u32,
    /// Most recent delivery rate sample.
    pub delivery_rate: u64,
    /// Whether that sample was application-limited.
    pub delivery_rate_app_limited: bool,
    /// Pacing rate.
    pub pacing_rate: u64,
    /// Time the connection had data in flight.
    pub busy_time_us: u64,
    /// Of the busy time, time limited by the peer's receive window.
    pub rwnd_limited_us: u64,
    /// Of the busy time, time limited by our send buffer.
    pub sndbuf_limited_us: u64,
    /// Bytes acknowledged by the peer.
    pub bytes_acked: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Bytes sent, retransmissions included.
    pub bytes_sent: u64,
    /// Retransmitted segments over the connection's life.
    pub total_retrans: u32,
    /// Bytes queued but not yet sent.
    pub notsent_bytes: u32,
    /// The peer's advertised receive window.
    pub snd_wnd: u32,
}

/// Kernel layout (include/uapi/linux/tcp.h) up to `tcpi_snd_wnd`; the kernel copies as much
/// as both sides know, and we look at the returned length before trusting late fields.
#[repr(C)]
#[derive(Default)]
struct RawTcpInfo {
    state: u8,
    ca_state: u8,
    retransmits: u8,
    probes: u8,
    backoff: u8,
    options: u8,
    wscale: u8,
    app_limited_bits: u8,
    rto: u32,
    ato: u32,
    snd_mss: u32,
    rcv_mss: u32,
    unacked: u32,
    sacked: u32,
    lost: u32,
    retrans: u32,
    fackets: u32,
    last_data_sent: u32,
    last_ack_sent: u32,
    last_data_recv: u32,
    last_ack_recv: u32,
    pmtu: u32,
    rcv_ssthresh: u32,
    rtt: u32,
    rttvar: u32,
    snd_ssthresh: u32,
    snd_cwnd: u32,
    advmss: u32,
    reordering: u32,
    rcv_rtt: u32,
    rcv_space: u32,
    total_retrans: u32,
    pacing_rate: u64,
    max_pacing_rate: u64,
    bytes_acked: u64,
    bytes_received: u64,
    segs_out: u32,
    segs_in: u32,
    notsent_bytes: u32,
    min_rtt: u32,
    data_segs_in: u32,
    data_segs_out: u32,
    delivery_rate: u64,
    busy_time: u64,
    rwnd_limited: u64,
    sndbuf_limited: u64,
    delivered: u32,
    delivered_ce: u32,
    bytes_sent: u64,
    bytes_retrans: u64,
    dsack_dups: u32,
    reord_seen: u32,
    rcv_ooopack: u32,
    snd_wnd: u32,
}

/// Reads `TCP_INFO` from a TCP socket. Fails with `ENOPROTOOPT`/`EOPNOTSUPP` on other sockets.
pub fn tcp_info(sock: &impl AsFd) -> Result<TcpInfo> {
    let mut raw = RawTcpInfo::default();
    let mut len = std::mem::size_of::<RawTcpInfo>() as libc::socklen_t;
    // SAFETY: `raw` is a plain-old-data repr(C) struct of `len` bytes that outlives the call;
    // the kernel writes at most `len` bytes into it and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut raw as *mut RawTcpInfo).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(Error::io(
            "getsockopt(TCP_INFO)",
            std::io::Error::last_os_error(),
        ));
    }
    let have = |end: usize| len as usize >= end;
    let off = |f: usize, size: usize| f + size;
    use std::mem::offset_of as o;
    Ok(TcpInfo {
        state: raw.state,
        rtt_us: raw.rtt,
        rttvar_us: raw.rttvar,
        min_rtt_us: if have(off(o!(RawTcpInfo, min_rtt), 4)) {
            raw.min_rtt
        } else {
            0
        },
        snd_cwnd: raw.snd_cwnd,
        snd_mss: raw.snd_mss,
        rcv_rtt_us: raw.rcv_rtt,
        rcv_space: raw.rcv_space,
        delivery_rate: if have(off(o!(RawTcpInfo, delivery_rate), 8)) {
            raw.delivery_rate
        } else {
            0
        },
        delivery_rate_app_limited: raw.app_limited_bits & 1 == 1,
        pacing_rate: raw.pacing_rate,
        busy_time_us: if have(off(o!(RawTcpInfo, busy_time), 8)) {
            raw.busy_time
        } else {
            0
        },
        rwnd_limited_us: if have(off(o!(RawTcpInfo, rwnd_limited), 8)) {
            raw.rwnd_limited
        } else {
            0
        },
        sndbuf_limited_us: if have(off(o!(RawTcpInfo, sndbuf_limited), 8)) {
            raw.sndbuf_limited
        } else {
            0
        },
        bytes_acked: raw.bytes_acked,
        bytes_received: raw.bytes_received,
        bytes_sent: if have(off(o!(RawTcpInfo, bytes_sent), 8)) {
            raw.bytes_sent
        } else {
            0
        },
        total_retrans: raw.total_retrans,
        notsent_bytes: raw.notsent_bytes,
        snd_wnd: if have(off(o!(RawTcpInfo, snd_wnd), 4)) {
            raw.snd_wnd
        } else {
            0
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_kernel_header() {
        // Offsets from include/uapi/linux/tcp.h (checked with offsetof on this kernel's header).
        assert_eq!(std::mem::offset_of!(RawTcpInfo, rto), 8);
        assert_eq!(std::mem::offset_of!(RawTcpInfo, pacing_rate), 104);
        assert_eq!(std::mem::offset_of!(RawTcpInfo, delivery_rate), 160);
        assert_eq!(std::mem::offset_of!(RawTcpInfo, sndbuf_limited), 184);
        assert_eq!(std::mem::offset_of!(RawTcpInfo, min_rtt), 148);
        assert_eq!(std::mem::offset_of!(RawTcpInfo, snd_wnd), 228);
    }

    #[test]
    fn reads_a_live_connection_and_rejects_non_tcp() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let info = tcp_info(&c).unwrap();
        assert_eq!(info.state, 1, "ESTABLISHED");
        assert!(info.snd_mss > 0);
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(tcp_info(&a).is_err());
    }
}
