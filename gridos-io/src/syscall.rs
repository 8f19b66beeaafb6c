//! The first fallback: `sendfile(2)` for file → socket, `splice(2)` through a pipe for
//! socket → file. No user-space copy, one system call per step.

use crate::transfer::{Ctx, ModeGuard, eof_result, wait_ready};
use crate::{Error, Result};
use nix::errno::Errno;
use nix::fcntl::{SpliceFFlags, splice};
use std::os::fd::BorrowedFd;

pub(crate) fn send(
    file: BorrowedFd<'_>,
    offset: u64,
    len: u64,
    sock: BorrowedFd<'_>,
    ctx: &mut Ctx,
) -> Result<u64> {
    let _mode = ModeGuard::set(sock, true)?;
    let mut moved = 0u64;
    while moved < len {
        if ctx.cancelled() {
            return Err(Error::Cancelled { moved });
        }
        let mut off = (offset + moved) as i64;
        let want = (len - moved).min(ctx.cfg.chunk_size as u64) as usize;
        match nix::sys::sendfile::sendfile64(sock, file, Some(&mut off), want) {
            Ok(0) => {
                return Err(Error::FileTruncated {
                    moved,
                    expected: len,
                });
            }
            Ok(n) => moved += n as u64,
            Err(Errno::EAGAIN) => wait_ready(sock, true, ctx, moved)?,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::transfer("sendfile", e.into(), moved)),
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
    // A pipe or socket destination may stop taking bytes (a consumer that stalls): wait for
    // it in poll, where a cancel is seen, not inside a blocking write.
    let _dest_mode = offset
        .is_none()
        .then(|| ModeGuard::set(file, true))
        .transpose()?;
    let out_flags = if offset.is_none() {
        SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK
    } else {
        SpliceFFlags::SPLICE_F_MOVE
    };
    let pool = crate::uring::pool(&ctx.cfg);
    let mut pipe = pool.take()?;
    let chunk = pipe.pipe().capacity().min(ctx.cfg.chunk_size);
    let mut moved = 0u64;
    loop {
        let want = match len {
            Some(l) if moved >= l => break,
            Some(l) => (l - moved).min(chunk as u64) as usize,
            None => chunk,
        };
        if ctx.cancelled() {
            return Err(Error::Cancelled { moved });
        }
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        let n = match splice(sock, None, &pipe.pipe().write, None, want, flags) {
            Ok(0) => return eof_result(moved, len),
            Ok(n) => n,
            Err(Errno::EAGAIN) => {
                wait_ready(sock, false, ctx, moved)?;
                continue;
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::transfer("splice(socket→pipe)", e.into(), moved)),
        };
        // Drain the pipe into the file completely before reading more, so `moved` always
        // equals the bytes that are in the file.
        let mut left = n;
        while left > 0 {
            let mut off = offset.map(|o| (o + moved) as i64);
            match splice(&pipe.pipe().read, None, file, off.as_mut(), left, out_flags) {
                Ok(0) => {
                    return Err(Error::io(
                        "splice(pipe→file)",
                        std::io::Error::from(std::io::ErrorKind::WriteZero),
                    ));
                }
                Ok(k) => {
                    left -= k;
                    moved += k as u64;
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => wait_ready(file, true, ctx, moved)?,
                Err(e) => return Err(Error::transfer("splice(pipe→file)", e.into(), moved)),
            }
        }
        ctx.tick(sock, moved);
    }
    pipe.mark_clean();
    Ok(moved)
}
