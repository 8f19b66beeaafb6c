//! The portable baseline path: a user-space buffer, `pread`/`write` and `read`/`pwrite`.

use crate::transfer::{Ctx, ModeGuard, eof_result, wait_ready};
use crate::{Error, Result};
use nix::errno::Errno;
use std::os::fd::BorrowedFd;

pub(crate) fn send(
    file: BorrowedFd<'_>,
    offset: u64,
    len: u64,
    sock: BorrowedFd<'_>,
    ctx: &mut Ctx,
) -> Result<u64> {
    let _mode = ModeGuard::set(sock, true)?;
    let mut buf = vec![0u8; ctx.cfg.chunk_size];
    let mut moved = 0u64;
    while moved < len {
        if ctx.cancelled() {
            return Err(Error::Cancelled { moved });
        }
        let want = (len - moved).min(buf.len() as u64) as usize;
        let n = match nix::sys::uio::pread(file, &mut buf[..want], (offset + moved) as i64) {
            Ok(0) => {
                return Err(Error::FileTruncated {
                    moved,
                    expected: len,
                });
            }
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::transfer("pread", e.into(), moved)),
        };
        let mut sent = 0;
        while sent < n {
            match nix::unistd::write(sock, &buf[sent..n]) {
                Ok(k) => {
                    sent += k;
                    moved += k as u64;
                }
                Err(Errno::EAGAIN) => wait_ready(sock, true, ctx, moved)?,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(Error::transfer("write", e.into(), moved)),
            }
        }
        ctx.tick(sock, moved);
    }
    Ok(moved)
}

pub(crate) fn recv(
    sock: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: Option<u64>,
    len: Option<u64>,
    ctx: &mut Ctx,
) -> Result<u64> {
    let _mode = ModeGuard::set(sock, true)?;
    // A pipe or socket destination may stall: wait for it in poll, where a cancel is seen.
    let _dest_mode = offset
        .is_none()
        .then(|| ModeGuard::set(file, true))
        .transpose()?;
    let mut buf = vec![0u8; ctx.cfg.chunk_size];
    let mut moved = 0u64;
    loop {
        let want = match len {
            Some(l) if moved >= l => return Ok(moved),
            Some(l) => (l - moved).min(buf.len() as u64) as usize,
            None => buf.len(),
        };
        let n = match nix::unistd::read(sock, &mut buf[..want]) {
            Ok(0) => return eof_result(moved, len),
            Ok(n) => n,
            Err(Errno::EAGAIN) => {
                wait_ready(sock, false, ctx, moved)?;
                continue;
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::transfer("read", e.into(), moved)),
        };
        let mut written = 0;
        while written < n {
            let r = match offset {
                Some(o) => nix::sys::uio::pwrite(file, &buf[written..n], (o + moved) as i64),
                None => nix::unistd::write(file, &buf[written..n]),
            };
            match r {
                Ok(k) => {
                    written += k;
                    moved += k as u64;
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => wait_ready(file, true, ctx, moved)?,
                Err(e) => return Err(Error::transfer("write", e.into(), moved)),
            }
        }
        ctx.tick(sock, moved);
        if ctx.cancelled() {
            return Err(Error::Cancelled { moved });
        }
    }
}
