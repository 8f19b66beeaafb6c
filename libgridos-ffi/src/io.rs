//! The paper's I/O API (gridos-io) on descriptors the C program owns: a socket handle with
//! `sync_read`, `async_read`, `write` and the buffer options; the zero-copy pair
//! `gridos_io_send_file` / `gridos_io_recv_file`; positional file reads and writes; and
//! whole-file copies.
//!
//! No call here takes ownership of a descriptor: the program opens and closes them, and
//! must keep each one open for the duration of a call that uses it. A descriptor that is
//! negative or not open is `GRIDOS_ERR_INVALID_ARGUMENT`, as is a non-socket where a socket
//! is needed.
//!
//! Thread safety: the functions on plain descriptors may be called from any thread. A
//! `gridos_socket` may be used by several threads at once (one reading while another
//! writes, say), but `gridos_socket_free` must not race with any other call on it.

use crate::args::{buf_mut, buf_ref, handle, into_handle, need_out, put, take_handle, text};
use crate::error::{Failure, boundary, boundary_value, gridos_result};
use gridos_io::{BufferOpt, BufferOptName, GridSocket};
use std::ffi::{c_char, c_int};
use std::fs::File;
use std::mem::ManuallyDrop;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd};
use std::path::Path;

/// A stream socket the program owns, seen through gridos-io's network API. Made by
/// `gridos_socket_from_fd`, released by `gridos_socket_free` (which leaves the descriptor
/// open). Usable from several threads at once.
#[allow(non_camel_case_types)]
pub struct gridos_socket {
    // ManuallyDrop: the descriptor belongs to the program; `gridos_socket_free` gives it
    // back instead of closing it.
    inner: ManuallyDrop<GridSocket>,
}

/// The socket buffer options of `gridos_io_buffer_setopt` / `gridos_io_buffer_getopt`
/// (gridos-io's `BufferOpt`). Values are bytes.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum gridos_buffer_opt {
    /// SO_SNDBUF. Set: the request in bytes; the kernel doubles it for its bookkeeping, so
    /// get reports twice what was set. A request above `net.core.wmem_max` is forced
    /// (SO_SNDBUFFORCE), which needs CAP_NET_ADMIN (`GRIDOS_ERR_PERMISSION` without it).
    /// Requests whose doubled size exceeds `GRIDOS_BUFFER_MAX` are refused.
    GRIDOS_BUFFER_SEND = 1,
    /// SO_RCVBUF, as `GRIDOS_BUFFER_SEND` (limit `net.core.rmem_max`). Setting it turns off
    /// the kernel's receive autotuning on this socket.
    GRIDOS_BUFFER_RECV = 2,
    /// This handle's cap on the (doubled, kernel-value) buffer sizes set through it, at
    /// least 65536; it starts at `io.max_buffer`.
    GRIDOS_BUFFER_MAX = 3,
}

impl gridos_buffer_opt {
    fn from_raw(opt: u32) -> Result<gridos_buffer_opt, Failure> {
        use gridos_buffer_opt::*;
        Ok(match opt {
            1 => GRIDOS_BUFFER_SEND,
            2 => GRIDOS_BUFFER_RECV,
            3 => GRIDOS_BUFFER_MAX,
            other => {
                return Err(invalid(format!(
                    "unknown buffer option {other} (GRIDOS_BUFFER_SEND, _RECV or _MAX)"
                )));
            }
        })
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::new(gridos_result::GRIDOS_ERR_INVALID_ARGUMENT, message)
}

/// An open descriptor argument, borrowed for the call.
///
/// # Safety
/// If `fd` is open now, the caller keeps it open while the result is used.
unsafe fn open_fd<'a>(fd: c_int, what: &str) -> Result<BorrowedFd<'a>, Failure> {
    if fd < 0 {
        return Err(invalid(format!("{what} {fd} is not a file descriptor")));
    }
    // SAFETY: F_GETFD only reads the descriptor table; an unused number gives EBADF.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(invalid(format!(
            "{what} {fd} is not an open file descriptor ({})",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: not -1 and open now; the caller keeps it open while the borrow lives.
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Like [`open_fd`], for a descriptor that must be a stream socket.
///
/// # Safety
/// As for [`open_fd`].
unsafe fn stream_socket<'a>(fd: c_int, what: &str) -> Result<BorrowedFd<'a>, Failure> {
    // SAFETY: the caller's promise is passed on.
    let fd = unsafe { open_fd(fd, what) }?;
    let mut kind: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `kind` and `len` are valid for writes of the sizes given; `fd` is open.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&raw mut kind).cast(),
            &mut len,
        )
    };
    let n = fd.as_raw_fd();
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::ENOTSOCK) {
            invalid(format!("{what} {n} is not a socket"))
        } else {
            Failure::new(
                gridos_result::GRIDOS_ERR_IO,
                format!("getsockopt(SO_TYPE) on {what} {n}: {e}"),
            )
        });
    }
    if kind != libc::SOCK_STREAM {
        return Err(invalid(format!("{what} {n} is not a stream socket")));
    }
    Ok(fd)
}

/// A borrowed descriptor as the `File` gridos-io's file functions take; never closed.
fn lent_file(fd: BorrowedFd<'_>) -> ManuallyDrop<File> {
    // SAFETY: the descriptor is open for the borrow's lifetime, which outlives the use of
    // the file inside the call, and ManuallyDrop keeps the File from closing it.
    ManuallyDrop::new(unsafe { File::from_raw_fd(fd.as_raw_fd()) })
}

/// A positional range of `len` bytes at `offset`, checked to fit an `off_t`.
fn file_range(offset: u64, len: u64) -> Result<(), Failure> {
    match offset.checked_add(len) {
        Some(end) if end <= i64::MAX as u64 => Ok(()),
        _ => Err(invalid(format!(
            "range {offset}+{len} does not fit a file offset"
        ))),
    }
}

/// Wraps the connected stream socket `fd` (TCP or Unix, blocking or not) in a handle for
/// the I/O calls; `*out` gets it. The descriptor stays the program's: it is not closed by
/// `gridos_socket_free`, and must stay open until then. Its buffers are left as they are
/// (`io.sndbuf_default`/`io.rcvbuf_default` apply to connections gridos makes); the
/// handle's `GRIDOS_BUFFER_MAX` starts at `io.max_buffer`.
///
/// # Safety
/// `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_socket_from_fd(
    fd: c_int,
    out: *mut *mut gridos_socket,
) -> gridos_result {
    boundary(|| {
        need_out(out, "out")?;
        // SAFETY: only checked here; from now on the program keeps it open (its promise).
        let fd = unsafe { stream_socket(fd, "fd") }?;
        // SAFETY: an open socket; ManuallyDrop (and into_raw_fd in gridos_socket_free)
        // keep the stream from closing what is not ours.
        let stream = unsafe { TcpStream::from_raw_fd(fd.as_raw_fd()) };
        let sock = gridos_socket {
            inner: ManuallyDrop::new(GridSocket::from(stream)),
        };
        // SAFETY: checked writable above.
        unsafe { put(out, into_handle(sock)) }
    })
}

/// Frees the handle; the descriptor stays open (NULL: nothing).
///
/// # Safety
/// `sock` is NULL or a handle from `gridos_socket_from_fd`, not used after this and not in
/// use by another thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_socket_free(sock: *mut gridos_socket) {
    boundary_value((), || {
        // SAFETY: the caller's promise: a live handle, given back once.
        if let Some(s) = unsafe { take_handle(sock) } {
            // Gives the descriptor back to the program without closing it.
            let _ = ManuallyDrop::into_inner(s.inner)
                .into_stream()
                .into_raw_fd();
        }
    })
}

/// The arguments of the two reads, checked.
///
/// # Safety
/// As for `gridos_io_sync_read`.
unsafe fn read_args<'a>(
    sock: *const gridos_socket,
    buf: *mut u8,
    len: usize,
    got: *mut usize,
) -> Result<(&'a gridos_socket, &'a mut [u8]), Failure> {
    // SAFETY: the caller's promises on each argument.
    let (sock, buf) = unsafe { (handle(sock, "sock")?, buf_mut(buf, len, "buf")?) };
    need_out(got, "got")?;
    if buf.is_empty() {
        return Err(invalid("len is 0 (a 0-byte read means the peer closed)"));
    }
    Ok((sock, buf))
}

/// Blocking read: waits until at least one byte is there and copies up to `len` bytes into
/// `buf`; `*got` is the count, 0 when the peer closed. `len` must not be 0.
///
/// # Safety
/// `sock` is NULL or a live handle; `buf` is NULL or valid for `len` bytes; `got` is NULL or
/// valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_io_sync_read(
    sock: *const gridos_socket,
    buf: *mut u8,
    len: usize,
    got: *mut usize,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promises on each argument.
        let (sock, buf) = unsafe { read_args(sock, buf, len, got) }?;
        let n = sock.inner.sync_read(buf)?;
        // SAFETY: checked above.
        unsafe { put(got, n) }
    })
}

/// Non-blocking read: copies what is waiting (up to `len` bytes) into `buf`, `*got` the
/// count, 0 when the peer closed; `GRIDOS_ERR_WOULD_BLOCK` when nothing is there yet. Works
/// on blocking and non-blocking descriptors alike. `len` must not be 0.
///
/// # Safety
/// As for `gridos_io_sync_read`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_io_async_read(
    sock: *const gridos_socket,
    buf: *mut u8,
    len: usize,
    got: *mut usize,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promises on each argument.
        let (sock, buf) = unsafe { read_args(sock, buf, len, got) }?;
        match sock.inner.async_read(buf)? {
            // SAFETY: checked above.
            Some(n) => unsafe { put(got, n) },
            None => Err(Failure::new(
                gridos_result::GRIDOS_ERR_WOULD_BLOCK,
                "no data is waiting on the socket",
            )),
        }
    })
}

/// Writes all `len` bytes of `buf`, blocking as needed; `*written` = `len`. A peer that
/// went away is `GRIDOS_ERR_NETWORK` (no SIGPIPE), the message saying how much was sent.
///
/// # Safety
/// `sock` is NULL or a live handle; `buf` is NULL or valid for `len` bytes; `written` is NULL
/// or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_io_write(
    sock: *const gridos_socket,
    buf: *const u8,
    len: usize,
    written: *mut usize,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promises on each argument.
        let (sock, data) = unsafe { (handle(sock, "sock")?, buf_ref(buf, len, "buf")?) };
        need_out(written, "written")?;
        sock.inner.write(data)?;
        // SAFETY: checked above.
        unsafe { put(written, data.len()) }
    })
}

/// Sets the buffer option `opt` (a `gridos_buffer_opt`) to `value` bytes; see
/// `gridos_buffer_opt` for units and what forcing needs. On error nothing changes.
///
/// # Safety
/// `sock` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_io_buffer_setopt(
    sock: *const gridos_socket,
    opt: u32,
    value: usize,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promise on `sock`.
        let sock = unsafe { handle(sock, "sock") }?;
        let opt = match gridos_buffer_opt::from_raw(opt)? {
            gridos_buffer_opt::GRIDOS_BUFFER_SEND => BufferOpt::SendBuffer(value),
            gridos_buffer_opt::GRIDOS_BUFFER_RECV => BufferOpt::RecvBuffer(value),
            gridos_buffer_opt::GRIDOS_BUFFER_MAX => BufferOpt::MaxBuffer(value),
        };
        needs_privilege(&sock.inner, opt)?;
        Ok(sock.inner.buffer_setopt(opt)?)
    })
}

/// A forced buffer without CAP_NET_ADMIN is a permission error, told apart before gridos-io
/// turns the kernel's EPERM into a configuration message. Mirrors `GridSocket::buffer_setopt`:
/// requests within the handle's max buffer and above `net.core.[wr]mem_max` are forced.
fn needs_privilege(sock: &GridSocket, opt: BufferOpt) -> Result<(), Failure> {
    let (v, limit, name) = match opt {
        BufferOpt::SendBuffer(v) => (v, gridos_io::tune::SysLimits::read().wmem_max, "w"),
        BufferOpt::RecvBuffer(v) => (v, gridos_io::tune::SysLimits::read().rmem_max, "r"),
        _ => return Ok(()),
    };
    let max = sock.buffer_getopt(BufferOptName::MaxBuffer)?;
    if v > limit && v.saturating_mul(2) <= max && !gridos_io::privileged() {
        return Err(Failure::new(
            gridos_result::GRIDOS_ERR_PERMISSION,
            format!(
                "a buffer of {v} bytes is above net.core.{name}mem_max ({limit}) and needs \
                 CAP_NET_ADMIN"
            ),
        ));
    }
    Ok(())
}

/// Reads the buffer option `opt` (a `gridos_buffer_opt`) into `*value`: for
/// `GRIDOS_BUFFER_SEND`/`_RECV` the kernel's (doubled) size in bytes.
///
/// # Safety
/// `sock` is NULL or a live handle; `value` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_io_buffer_getopt(
    sock: *const gridos_socket,
    opt: u32,
    value: *mut usize,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promise on `sock`.
        let sock = unsafe { handle(sock, "sock") }?;
        need_out(value, "value")?;
        let name = match gridos_buffer_opt::from_raw(opt)? {
            gridos_buffer_opt::GRIDOS_BUFFER_SEND => BufferOptName::SendBuffer,
            gridos_buffer_opt::GRIDOS_BUFFER_RECV => BufferOptName::RecvBuffer,
            gridos_buffer_opt::GRIDOS_BUFFER_MAX => BufferOptName::MaxBuffer,
        };
        let v = sock.inner.buffer_getopt(name)?;
        // SAFETY: checked above.
        unsafe { put(value, v) }
    })
}

/// Sends `len` bytes of the file `file_fd` from `offset` to the connected socket `sock_fd`
/// without a user-space copy (io_uring splice, sendfile or read/write, as `io.path` and the
/// probe choose; auto-tuning as `io.auto_tune`); `*sent` = `len`. A range past the end of the
/// file is `GRIDOS_ERR_INVALID_ARGUMENT` before anything is sent; a peer that goes away is
/// `GRIDOS_ERR_NETWORK`, the message saying how much was sent. The file's own offset is not
/// used or moved.
///
/// # Safety
/// `sent` is NULL or valid for a write; the descriptors stay open during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_io_send_file(
    file_fd: c_int,
    offset: u64,
    len: u64,
    sock_fd: c_int,
    sent: *mut u64,
) -> gridos_result {
    boundary(|| {
        need_out(sent, "sent")?;
        // SAFETY: the caller keeps both descriptors open during the call.
        let (file, sock) = unsafe {
            (
                open_fd(file_fd, "file_fd")?,
                stream_socket(sock_fd, "sock_fd")?,
            )
        };
        let report =
            gridos_io::send_file(&lent_file(file), offset, len, &sock, &Default::default())?;
        // SAFETY: checked above.
        unsafe { put(sent, report.bytes) }
    })
}

/// Receives from the connected socket `sock_fd` until the peer closes (shuts down its
/// sending side), writing the bytes to the file `file_fd` at `offset` onwards without a
/// user-space copy; `*received` is the count. Nothing else in the file is touched. A
/// destination that cannot seek (a pipe) takes the bytes in order, and then only `offset`
/// 0 is accepted.
///
/// # Safety
/// `received` is NULL or valid for a write; the descriptors stay open during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_io_recv_file(
    sock_fd: c_int,
    file_fd: c_int,
    offset: u64,
    received: *mut u64,
) -> gridos_result {
    boundary(|| {
        need_out(received, "received")?;
        // SAFETY: the caller keeps both descriptors open during the call.
        let (sock, file) = unsafe {
            (
                stream_socket(sock_fd, "sock_fd")?,
                open_fd(file_fd, "file_fd")?,
            )
        };
        file_range(offset, 0)?;
        let report =
            gridos_io::recv_file(&sock, &lent_file(file), offset, None, &Default::default())?;
        // SAFETY: checked above.
        unsafe { put(received, report.bytes) }
    })
}

/// Reads up to `len` bytes of the file `fd` at `offset` into `buf` (pread: the file's own
/// offset is not used or moved); `*got` is the count, less than `len` only at the end of
/// the file.
///
/// # Safety
/// `buf` is NULL or valid for `len` bytes; `got` is NULL or valid for a write; `fd` stays
/// open during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_io_file_read(
    fd: c_int,
    offset: u64,
    buf: *mut u8,
    len: usize,
    got: *mut usize,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promises on each argument.
        let (fd, buf) = unsafe { (open_fd(fd, "fd")?, buf_mut(buf, len, "buf")?) };
        need_out(got, "got")?;
        file_range(offset, len as u64)?;
        let n = gridos_io::file_read(&lent_file(fd), offset, buf)?;
        // SAFETY: checked above.
        unsafe { put(got, n) }
    })
}

/// Writes all `len` bytes of `buf` to the file `fd` at `offset` (pwrite: the file's own
/// offset is not used or moved); `*written` = `len`.
///
/// # Safety
/// `buf` is NULL or valid for `len` bytes; `written` is NULL or valid for a write; `fd` stays
/// open during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_io_file_write(
    fd: c_int,
    offset: u64,
    buf: *const u8,
    len: usize,
    written: *mut usize,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promises on each argument.
        let (fd, data) = unsafe { (open_fd(fd, "fd")?, buf_ref(buf, len, "buf")?) };
        need_out(written, "written")?;
        file_range(offset, len as u64)?;
        gridos_io::file_write(&lent_file(fd), offset, data)?;
        // SAFETY: checked above.
        unsafe { put(written, data.len()) }
    })
}

/// Copies the regular file `src` to `dst` in the kernel (copy_file_range, splice where the
/// file systems refuse it), keeping holes and permission bits; `*bytes` is the file's size.
/// The copy appears under `dst` only when complete (written beside it, then renamed), so
/// an existing `dst` is never left half-written. A missing `src` is `GRIDOS_ERR_NOT_FOUND`.
///
/// # Safety
/// `src` and `dst` are NUL-terminated strings; `bytes` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_file_copy(
    src: *const c_char,
    dst: *const c_char,
    bytes: *mut u64,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promises on both strings.
        let (src, dst) = unsafe { (text(src, "src")?, text(dst, "dst")?) };
        need_out(bytes, "bytes")?;
        let report = gridos_io::copy_path(Path::new(src), Path::new(dst)).map_err(|e| {
            let f = Failure::from(e);
            Failure::new(f.code, format!("copy {src} to {dst}: {}", f.message))
        })?;
        // SAFETY: checked above.
        unsafe { put(bytes, report.bytes) }
    })
}
