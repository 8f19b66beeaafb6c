//! The network API of the paper (`sync_read`, `async_read`, `write`, `buffer_setopt`,
//! `buffer_getopt`) on [`GridSocket`], plus the socket side of buffer tuning.

use crate::tune::{BufferMethod, BufferPlan, SysLimits, TuneAction, TunePolicy, bdp_bytes, plan};
use crate::{Error, Result, TcpInfo, TransferOptions, TransferReport};
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, getsockopt, recv, send, setsockopt, sockopt};
use std::fs::File;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A buffer option for [`GridSocket::buffer_setopt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferOpt {
    /// SO_SNDBUF request in bytes (the kernel doubles it; forced past `wmem_max` when
    /// privileged and within the socket's max buffer).
    SendBuffer(usize),
    /// SO_RCVBUF request in bytes. Disables receive autotuning on this socket.
    RecvBuffer(usize),
    /// Upper bound for what tuning may set on this socket (kernel-value bytes).
    MaxBuffer(usize),
    /// Whether transfers on this socket run the TCP_INFO monitor.
    AutoTune(bool),
}

/// The option names for [`GridSocket::buffer_getopt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferOptName {
    /// SO_SNDBUF as the kernel reports it.
    SendBuffer,
    /// SO_RCVBUF as the kernel reports it.
    RecvBuffer,
    /// The socket's max buffer.
    MaxBuffer,
    /// 1 when auto-tuning is on, 0 when off.
    AutoTune,
}

/// A TCP socket managed by gridos: the paper's network API plus zero-copy transfers that
/// tune the socket's buffers.
#[derive(Debug)]
pub struct GridSocket {
    stream: TcpStream,
    max_buffer: AtomicUsize,
    auto_tune: AtomicBool,
}

impl From<TcpStream> for GridSocket {
    fn from(stream: TcpStream) -> GridSocket {
        let cfg = crate::config();
        GridSocket {
            stream,
            max_buffer: AtomicUsize::new(cfg.max_buffer),
            auto_tune: AtomicBool::new(cfg.auto_tune),
        }
    }
}

impl AsFd for GridSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

impl GridSocket {
    /// Connects and applies the administrator's default buffers (`io.sndbuf_default`,
    /// `io.rcvbuf_default`) if any are set.
    pub fn connect(addr: impl ToSocketAddrs) -> Result<GridSocket> {
        let s = GridSocket::from(TcpStream::connect(addr).map_err(|e| Error::io("connect", e))?);
        s.apply_defaults()?;
        Ok(s)
    }

    /// Applies `io.sndbuf_default` / `io.rcvbuf_default` (0 = leave autotuning).
    pub fn apply_defaults(&self) -> Result<()> {
        let cfg = crate::config();
        if cfg.sndbuf_default > 0 {
            self.buffer_setopt(BufferOpt::SendBuffer(cfg.sndbuf_default))?;
        }
        if cfg.rcvbuf_default > 0 {
            self.buffer_setopt(BufferOpt::RecvBuffer(cfg.rcvbuf_default))?;
        }
        Ok(())
    }

    /// The underlying stream.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Unwraps into the underlying stream.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Result<SocketAddr> {
        self.stream
            .peer_addr()
            .map_err(|e| Error::io("getpeername", e))
    }

    /// Blocking read: waits for at least one byte; `Ok(0)` means the peer closed.
    pub fn sync_read(&self, buf: &mut [u8]) -> Result<usize> {
        loop {
            match recv(self.stream.as_raw_fd(), buf, MsgFlags::empty()) {
                Ok(n) => return Ok(n),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => {
                    let mut fds = [nix::poll::PollFd::new(
                        self.as_fd(),
                        nix::poll::PollFlags::POLLIN,
                    )];
                    match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
                        Ok(_) | Err(Errno::EINTR) => continue,
                        Err(e) => return Err(Error::io("poll", e)),
                    }
                }
                Err(e) => return Err(Error::transfer("recv", e.into(), 0)),
            }
        }
    }

    /// Blocking read of exactly `buf.len()` bytes; [`Error::PeerClosed`] if the peer closes
    /// first.
    pub fn sync_read_exact(&self, buf: &mut [u8]) -> Result<()> {
        let mut got = 0;
        while got < buf.len() {
            match self.sync_read(&mut buf[got..])? {
                0 => {
                    return Err(Error::PeerClosed {
                        moved: got as u64,
                        expected: buf.len() as u64,
                    });
                }
                n => got += n,
            }
        }
        Ok(())
    }

    /// Non-blocking read: `Ok(None)` when no data is waiting, `Ok(Some(0))` when the peer
    /// closed.
    pub fn async_read(&self, buf: &mut [u8]) -> Result<Option<usize>> {
        loop {
            match recv(self.stream.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT) {
                Ok(n) => return Ok(Some(n)),
                Err(Errno::EAGAIN) => return Ok(None),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(Error::transfer("recv", e.into(), 0)),
            }
        }
    }

    /// Writes all of `buf` (blocking).
    pub fn write(&self, buf: &[u8]) -> Result<()> {
        let mut sent = 0;
        while sent < buf.len() {
            match send(
                self.stream.as_raw_fd(),
                &buf[sent..],
                MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(n) => sent += n,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    let mut fds = [nix::poll::PollFd::new(
                        self.as_fd(),
                        nix::poll::PollFlags::POLLOUT,
                    )];
                    match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
                        Ok(_) | Err(Errno::EINTR) => {}
                        Err(e) => return Err(Error::io("poll", e)),
                    }
                }
                Err(e) => return Err(Error::transfer("send", e.into(), sent as u64)),
            }
        }
        Ok(())
    }

    /// Sets a buffer option. Socket buffers above `net.core.*mem_max` are forced when the
    /// process holds CAP_NET_ADMIN; requests above the socket's max buffer are refused.
    pub fn buffer_setopt(&self, opt: BufferOpt) -> Result<()> {
        let max = self.max_buffer.load(Ordering::Relaxed);
        let check = |v: usize| {
            if v.saturating_mul(2) > max {
                Err(Error::Config(format!(
                    "buffer {v} exceeds this socket's max buffer {max} (kernel doubles requests)"
                )))
            } else {
                Ok(v)
            }
        };
        let limits = SysLimits::read();
        match opt {
            BufferOpt::SendBuffer(v) => {
                set_buf(self.as_fd(), false, check(v)?, v > limits.wmem_max)
            }
            BufferOpt::RecvBuffer(v) => set_buf(self.as_fd(), true, check(v)?, v > limits.rmem_max),
            BufferOpt::MaxBuffer(v) => {
                if v < 65536 {
                    return Err(Error::Config("max buffer must be at least 65536".into()));
                }
                self.max_buffer.store(v, Ordering::Relaxed);
                Ok(())
            }
            BufferOpt::AutoTune(on) => {
                self.auto_tune.store(on, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// Reads a buffer option.
    pub fn buffer_getopt(&self, name: BufferOptName) -> Result<usize> {
        Ok(match name {
            BufferOptName::SendBuffer => getsockopt(&self.stream, sockopt::SndBuf)
                .map_err(|e| Error::io("getsockopt(SO_SNDBUF)", e))?,
            BufferOptName::RecvBuffer => getsockopt(&self.stream, sockopt::RcvBuf)
                .map_err(|e| Error::io("getsockopt(SO_RCVBUF)", e))?,
            BufferOptName::MaxBuffer => self.max_buffer.load(Ordering::Relaxed),
            BufferOptName::AutoTune => usize::from(self.auto_tune.load(Ordering::Relaxed)),
        })
    }

    /// `TCP_INFO` for this connection.
    pub fn tcp_info(&self) -> Result<TcpInfo> {
        crate::tcp_info(&self.stream)
    }

    /// Plans buffers for a path of `bandwidth` bytes/s (e.g. the link rate, or a measured
    /// delivery rate) and this connection's RTT from TCP_INFO, applies the plan, and returns
    /// it (including the number of parallel streams that would cover the BDP). The decision
    /// and its inputs are logged.
    pub fn tune_for_bandwidth(&self, bandwidth: u64) -> Result<BufferPlan> {
        let info = self.tcp_info()?;
        let rtt = if info.min_rtt_us > 0 {
            info.min_rtt_us
        } else {
            info.rtt_us
        };
        let cfg = crate::config();
        let policy = TunePolicy {
            max_buffer: self.max_buffer.load(Ordering::Relaxed),
            privileged: privileged(),
            max_streams: cfg.max_streams,
        };
        let limits = SysLimits::read();
        let p = plan(bdp_bytes(bandwidth, rtt), &limits, &policy);
        apply_plan(self.as_fd(), &p)?;
        tracing::info!(rtt_us = rtt, bandwidth, bdp = p.bdp, streams = p.streams, reason = %p.reason, "gridos-io: buffer plan applied");
        Ok(p)
    }

    fn transfer_options(&self, opts: &TransferOptions) -> TransferOptions {
        let mut o = opts.clone();
        o.auto_tune = o.auto_tune.or(Some(self.auto_tune.load(Ordering::Relaxed)));
        o.max_buffer = o
            .max_buffer
            .or(Some(self.max_buffer.load(Ordering::Relaxed)));
        o
    }

    /// [`send_file`](crate::send_file) on this socket, with its tuning settings.
    pub fn send_file(
        &self,
        file: &File,
        offset: u64,
        len: u64,
        opts: &TransferOptions,
    ) -> Result<TransferReport> {
        crate::send_file(
            file,
            offset,
            len,
            &self.stream,
            &self.transfer_options(opts),
        )
    }

    /// [`recv_file`](crate::recv_file) on this socket, with its tuning settings.
    pub fn recv_file(
        &self,
        file: &File,
        offset: u64,
        len: Option<u64>,
        opts: &TransferOptions,
    ) -> Result<TransferReport> {
        crate::recv_file(
            &self.stream,
            file,
            offset,
            len,
            &self.transfer_options(opts),
        )
    }
}

fn set_buf(fd: BorrowedFd<'_>, recv_side: bool, v: usize, force: bool) -> Result<()> {
    let r = match (recv_side, force) {
        (false, false) => setsockopt(&fd, sockopt::SndBuf, &v),
        (false, true) => setsockopt(&fd, sockopt::SndBufForce, &v),
        (true, false) => setsockopt(&fd, sockopt::RcvBuf, &v),
        (true, true) => setsockopt(&fd, sockopt::RcvBufForce, &v),
    };
    r.map_err(|e| {
        if e == Errno::EPERM {
            Error::Config(format!(
                "buffer of {v} bytes is above net.core.{}mem_max and needs CAP_NET_ADMIN",
                if recv_side { "r" } else { "w" }
            ))
        } else {
            Error::io(
                if recv_side {
                    "setsockopt(SO_RCVBUF)"
                } else {
                    "setsockopt(SO_SNDBUF)"
                },
                e,
            )
        }
    })
}

/// Applies a [`BufferPlan`] to a socket.
pub fn apply_plan(fd: BorrowedFd<'_>, p: &BufferPlan) -> Result<()> {
    for (recv_side, s) in [(false, &p.send), (true, &p.recv)] {
        match s.method {
            BufferMethod::Autotune => {}
            BufferMethod::Set => set_buf(fd, recv_side, s.request, false)?,
            BufferMethod::Force => set_buf(fd, recv_side, s.request, true)?,
        }
    }
    let (snd, rcv) = buffer_sizes(fd);
    crate::stats::decision((snd > 0).then_some(snd), (rcv > 0).then_some(rcv));
    Ok(())
}

pub(crate) fn apply_action(fd: BorrowedFd<'_>, a: &TuneAction) -> Result<()> {
    match *a {
        TuneAction::RaiseSndbuf { request, force } => set_buf(fd, false, request, force),
        TuneAction::RaiseRcvbuf { request, force } => set_buf(fd, true, request, force),
        TuneAction::SuggestStreams { .. } | TuneAction::StreamAdded { .. } => Ok(()),
    }
}

/// SO_SNDBUF and SO_RCVBUF as the kernel reports them (0 when unreadable).
pub(crate) fn buffer_sizes(fd: BorrowedFd<'_>) -> (usize, usize) {
    (
        getsockopt(&fd, sockopt::SndBuf).unwrap_or(0),
        getsockopt(&fd, sockopt::RcvBuf).unwrap_or(0),
    )
}

/// Whether this thread holds CAP_NET_ADMIN in its effective set (capget(2), so it also works
/// inside a chroot without /proc, and after a server drops root keeping only this
/// capability).
pub fn privileged() -> bool {
    caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_NET_ADMIN,
    )
    .unwrap_or(false)
}

/// The buffer monitor for one socket whose data does not move through a single gridos-io
/// transfer call — a MODE E stream, say, whose payload goes block by block. Call
/// [`SocketTuner::sample`] about once per `io.monitor_interval_ms`; each decision is applied,
/// logged with its inputs and counted in the stats, as inside [`crate::send_file`].
#[derive(Debug)]
pub struct SocketTuner {
    monitor: crate::tune::Monitor,
}

impl SocketTuner {
    /// A tuner for a socket on the `role` side, raising buffers up to `max_buffer` (default
    /// `io.max_buffer`).
    pub fn new(role: crate::tune::Role, max_buffer: Option<usize>) -> SocketTuner {
        let cfg = crate::config();
        let policy = TunePolicy {
            max_buffer: max_buffer.unwrap_or(cfg.max_buffer),
            privileged: privileged(),
            max_streams: cfg.max_streams,
        };
        SocketTuner {
            monitor: crate::tune::Monitor::new(role, SysLimits::read(), policy),
        }
    }

    /// See [`Monitor::wants_streams`](crate::tune::Monitor::wants_streams).
    pub fn wants_streams(&self) -> bool {
        self.monitor.wants_streams()
    }

    /// Takes a TCP_INFO sample of `fd` and applies what the monitor decides, if anything.
    pub fn sample(&mut self, fd: BorrowedFd<'_>) -> Option<crate::tune::TuneDecision> {
        let info = crate::tcp_info(&fd).ok()?;
        let (snd, rcv) = buffer_sizes(fd);
        let current = match self.monitor.role() {
            crate::tune::Role::Sender => snd,
            crate::tune::Role::Receiver => rcv,
        };
        let d = self.monitor.observe(&info, current)?;
        match apply_action(fd, &d.action) {
            Ok(()) => tracing::info!(
                action = ?d.action, rtt_us = d.rtt_us, delivery_rate = d.delivery_rate,
                bdp = d.bdp, sndbuf_limited_permille = d.sndbuf_limited_permille,
                rwnd_limited_permille = d.rwnd_limited_permille, current = d.current,
                reason = %d.reason, "gridos-io: tuning decision"
            ),
            Err(e) => {
                tracing::warn!(action = ?d.action, error = %e, "gridos-io: tuning action failed")
            }
        }
        let (s, r) = match d.action {
            TuneAction::RaiseSndbuf { request, .. } => (Some(request * 2), None),
            TuneAction::RaiseRcvbuf { request, .. } => (None, Some(request * 2)),
            TuneAction::SuggestStreams { .. } | TuneAction::StreamAdded { .. } => (None, None),
        };
        crate::stats::decision(s, r);
        Some(d)
    }
}
