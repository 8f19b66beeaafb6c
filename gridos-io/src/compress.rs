//! The `compression` option: gzip or deflate streams on the same transfer primitives.
//!
//! Compression needs the bytes in user space, so this is necessarily a user-space path: data
//! is read with `pread`, compressed with flate2 and written to the socket (and the reverse on
//! receive). Use it when the network, not the CPU, is the bottleneck.

use crate::transfer::{Ctx, ModeGuard, wait_ready};
use crate::tune::Role;
use crate::{Error, IoPath, Result, TransferOptions, TransferReport, stats};
use flate2::Compression as Level;
use flate2::read::{DeflateDecoder, GzDecoder, ZlibDecoder};
use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
use nix::errno::Errno;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Instant;

/// The stream format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// RFC 1952 gzip.
    Gzip,
    /// RFC 1951 raw deflate.
    Deflate,
    /// RFC 1950 zlib: deflate with a header and an Adler-32 trailer, what FTP's `MODE Z`
    /// (draft-preston-ftpext-deflate) carries; the trailer lets the receiver detect
    /// corruption.
    Zlib,
}

/// The compression option: a codec and a level (0–9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compression {
    /// Format.
    pub codec: Codec,
    /// Level 0 (store) to 9 (smallest).
    pub level: u32,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            codec: Codec::Gzip,
            level: 6,
        }
    }
}

/// `Write`/`Read` over a socket fd that honours cancellation and counts wire bytes.
struct SockIo<'a, 'c> {
    fd: BorrowedFd<'a>,
    ctx: &'c Ctx,
    wire: u64,
}

impl Write for SockIo<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match nix::sys::socket::send(
                self.fd.as_raw_fd(),
                buf,
                nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(n) => {
                    self.wire += n as u64;
                    return Ok(n);
                }
                Err(Errno::EAGAIN) => {
                    wait_ready(self.fd, true, self.ctx, 0).map_err(io::Error::other)?
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for SockIo<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match nix::unistd::read(self.fd, buf) {
                Ok(n) => {
                    self.wire += n as u64;
                    return Ok(n);
                }
                Err(Errno::EAGAIN) => {
                    wait_ready(self.fd, false, self.ctx, 0).map_err(io::Error::other)?
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Maps an error that crossed flate2's `io::Error` boundary back to ours (our own errors,
/// such as a cancellation seen while waiting for the socket, travel inside it).
fn unwrap_err(e: io::Error, op: &'static str, moved: u64) -> Error {
    if !e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        return Error::transfer(op, e, moved);
    }
    match e.into_inner().map(|b| b.downcast::<Error>()) {
        Some(Ok(err)) => match *err {
            Error::Cancelled { .. } => Error::Cancelled { moved },
            other => other,
        },
        _ => Error::Cancelled { moved },
    }
}

/// Sends `len` bytes of `file` at `offset` to `sock` as one compressed stream.
/// `report.bytes` counts file bytes, `report.wire_bytes` compressed bytes.
pub fn send_compressed(
    file: &File,
    offset: u64,
    len: u64,
    sock: &impl AsFd,
    comp: Compression,
    opts: &TransferOptions,
) -> Result<TransferReport> {
    let sock = sock.as_fd();
    crate::transfer::check_range(file, offset, len)?;
    let ctx = Ctx::new(opts, Role::Sender);
    let _mode = ModeGuard::set(sock, true)?;
    stats::started(IoPath::ReadWrite);
    let start = Instant::now();
    let level = Level::new(comp.level.min(9));
    let mut io = SockIo {
        fd: sock,
        ctx: &ctx,
        wire: 0,
    };
    let result = match comp.codec {
        Codec::Gzip => {
            let mut enc = GzEncoder::new(&mut io, level);
            pump(file, offset, len, &ctx, &mut enc).and_then(|m| {
                enc.finish()
                    .map(|_| m)
                    .map_err(|e| unwrap_err(e, "send", m))
            })
        }
        Codec::Deflate => {
            let mut enc = DeflateEncoder::new(&mut io, level);
            pump(file, offset, len, &ctx, &mut enc).and_then(|m| {
                enc.finish()
                    .map(|_| m)
                    .map_err(|e| unwrap_err(e, "send", m))
            })
        }
        Codec::Zlib => {
            let mut enc = ZlibEncoder::new(&mut io, level);
            pump(file, offset, len, &ctx, &mut enc).and_then(|m| {
                enc.finish()
                    .map(|_| m)
                    .map_err(|e| unwrap_err(e, "send", m))
            })
        }
    };
    stats::finished(&result);
    let bytes = result?;
    stats::add_sent(io.wire);
    Ok(TransferReport {
        bytes,
        wire_bytes: io.wire,
        elapsed: start.elapsed(),
        path: IoPath::ReadWrite,
        sndbuf: None,
        rcvbuf: None,
        decisions: Vec::new(),
    })
}

/// Feeds the file range through an encoder; the caller finishes the stream.
fn pump(file: &File, offset: u64, len: u64, ctx: &Ctx, enc: &mut impl Write) -> Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut moved = 0u64;
    while moved < len {
        if ctx.cancelled() {
            return Err(Error::Cancelled { moved });
        }
        let want = (len - moved).min(buf.len() as u64) as usize;
        let n = crate::file_read(file, offset + moved, &mut buf[..want])?;
        if n == 0 {
            return Err(Error::FileTruncated {
                moved,
                expected: len,
            });
        }
        enc.write_all(&buf[..n])
            .map_err(|e| unwrap_err(e, "send", moved))?;
        moved += n as u64;
    }
    Ok(moved)
}

/// Receives one compressed stream from `sock` and writes the decompressed bytes to `file` at
/// `offset`. Ends at the end of the compressed stream; a stream cut short or corrupt gives
/// [`Error::Compression`] (or [`Error::PeerClosed`]).
pub fn recv_decompressed(
    sock: &impl AsFd,
    file: &File,
    offset: u64,
    comp: Compression,
    opts: &TransferOptions,
) -> Result<TransferReport> {
    let sock = sock.as_fd();
    let ctx = Ctx::new(opts, Role::Receiver);
    let _mode = ModeGuard::set(sock, true)?;
    stats::started(IoPath::ReadWrite);
    let start = Instant::now();
    let mut io = SockIo {
        fd: sock,
        ctx: &ctx,
        wire: 0,
    };
    let result = (|| {
        let mut dec: Box<dyn Read + '_> = match comp.codec {
            Codec::Gzip => Box::new(GzDecoder::new(&mut io)),
            Codec::Deflate => Box::new(DeflateDecoder::new(&mut io)),
            Codec::Zlib => Box::new(ZlibDecoder::new(&mut io)),
        };
        let mut buf = vec![0u8; 256 * 1024];
        let mut moved = 0u64;
        loop {
            if ctx.cancelled() {
                return Err(Error::Cancelled { moved });
            }
            let n = match dec.read(&mut buf) {
                Ok(0) => return Ok(moved),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(Error::PeerClosed {
                        moved,
                        expected: moved + 1,
                    });
                }
                Err(e)
                    if e.kind() == io::ErrorKind::InvalidInput
                        || e.kind() == io::ErrorKind::InvalidData =>
                {
                    return Err(Error::Compression(e));
                }
                Err(e) => return Err(unwrap_err(e, "recv", moved)),
            };
            crate::file_write(file, offset + moved, &buf[..n]).map_err(|e| match e {
                Error::NoSpace { moved: m } => Error::NoSpace { moved: moved + m },
                other => other,
            })?;
            moved += n as u64;
        }
    })();
    stats::finished(&result);
    let bytes = result?;
    stats::add_received(bytes);
    Ok(TransferReport {
        bytes,
        wire_bytes: io.wire,
        elapsed: start.elapsed(),
        path: IoPath::ReadWrite,
        sndbuf: None,
        rcvbuf: None,
        decisions: Vec::new(),
    })
}
