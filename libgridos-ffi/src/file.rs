//! GASS-style files: a URL (local path, `file://`, `ftp://`, `gridftp://`; `http(s)://` to
//! read) read, written and sought as a local file, over the middleware's `file` module.
//! `"r"` fetches the whole file at open and reads the local copy; `"w"` and `"a"` write a
//! local copy that `gridos_file_close` uploads and puts in place atomically, so readers of
//! the URL see the old file or the new one, never a part.
//!
//! Thread safety: a `gridos_file` is used by one thread at a time (it may move between
//! threads); different handles are independent.

use crate::args::{handle_mut, into_handle, need_out, put, take_handle, text};
use crate::error::{Failure, boundary, gridos_result};
use gridos_middleware::Url;
use gridos_middleware::file::{self, Mode, RemoteFile};
use std::ffi::{c_char, c_int};
use std::io::{Read, Seek, SeekFrom, Write};

/// A URL opened as a file (opaque; `gridos_file_open`, `gridos_file_close`).
#[allow(non_camel_case_types)]
pub struct gridos_file {
    inner: RemoteFile,
}

// The thread-safety promise of the module doc, checked by the compiler.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<gridos_file>();
};

/// An I/O error of a handle: the middleware's own error (a failed fetch or upload) when
/// it is the cause, so it gets that error's code.
fn io_failure(e: std::io::Error) -> Failure {
    match e.downcast::<gridos_middleware::Error>() {
        Ok(m) => Failure::from(m),
        Err(e) => Failure::from(e),
    }
}

/// Opens `url`: `mode` `"r"` to read (the file is fetched now), `"w"` to replace it with
/// what is written, `"a"` to add to its end (a missing file is created); a `b` after the
/// letter is accepted and changes nothing. Written data reaches the URL only on
/// `gridos_file_close`. `*out` is written only on success.
///
/// # Safety
/// `url` and `mode` are NUL-terminated strings; `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_file_open(
    url: *const c_char,
    mode: *const c_char,
    out: *mut *mut gridos_file,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promises on the strings.
        let (url, mode) = unsafe { (text(url, "url")?, text(mode, "mode")?) };
        need_out(out, "out")?;
        let mode = match mode {
            "r" | "rb" => Mode::Read,
            "w" | "wb" => Mode::Write,
            "a" | "ab" => Mode::Append,
            m => {
                return Err(Failure::new(
                    gridos_result::GRIDOS_ERR_INVALID_ARGUMENT,
                    format!("mode {m:?} is none of \"r\", \"w\", \"a\""),
                ));
            }
        };
        let url = Url::parse(url).map_err(gridos_middleware::Error::from)?;
        let inner = file::open(&url, mode)?;
        // SAFETY: checked above; the caller promises it is writable.
        unsafe { put(out, into_handle(gridos_file { inner })) }
    })
}

/// Reads up to `len` bytes into `buf` from the current position; `*got` is how many came.
/// As `fread`, it fills the buffer unless the end comes first: `*got < len` means the end
/// of the file (0: already there). A file opened to write fails with `GRIDOS_ERR_IO`.
///
/// # Safety
/// `f` is a live file not used by another thread meanwhile; `buf` is valid for `len`
/// bytes of writes (it may be NULL when `len` is 0); `got` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_file_read(
    f: *mut gridos_file,
    buf: *mut u8,
    len: usize,
    got: *mut usize,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promise on the handle.
        let f = unsafe { handle_mut(f, "f") }?;
        need_out(got, "got")?;
        let buf: &mut [u8] = if len == 0 {
            &mut []
        } else {
            // SAFETY: the caller promises `len` writable bytes that nothing else uses
            // during the call.
            unsafe { crate::args::buf_mut(buf, len, "buf") }?
        };
        let mut n = 0;
        while n < buf.len() {
            match f.inner.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_failure(e)),
            }
        }
        // SAFETY: checked above; the caller promises it is writable.
        unsafe { put(got, n) }
    })
}

/// Writes the `len` bytes of `buf` at the current position (`"a"`: at the end, wherever
/// a seek left the position) into the local copy; all of them or an error. `*written`
/// (when `written` is not NULL) is `len` on success. A file opened to read fails with
/// `GRIDOS_ERR_IO`.
///
/// # Safety
/// `f` is a live file not used by another thread meanwhile; `buf` is valid for `len`
/// bytes (it may be NULL when `len` is 0); `written` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_file_write(
    f: *mut gridos_file,
    buf: *const u8,
    len: usize,
    written: *mut usize,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promise on the handle.
        let f = unsafe { handle_mut(f, "f") }?;
        let data: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: the caller promises `len` readable bytes.
            unsafe { crate::args::buf_ref(buf, len, "buf") }?
        };
        f.inner.write_all(data).map_err(io_failure)?;
        if !written.is_null() {
            // SAFETY: not NULL; the caller promises it is writable.
            unsafe { put(written, len) }?;
        }
        Ok(())
    })
}

/// Moves the position to `offset` from the start (`whence` `SEEK_SET`), the current
/// position (`SEEK_CUR`) or the end (`SEEK_END`); `*pos` (when `pos` is not NULL) gets the
/// new position from the start. A position before the start is
/// `GRIDOS_ERR_INVALID_ARGUMENT`; one past the end is allowed (a write there leaves a
/// hole of zeros, as for a local file).
///
/// # Safety
/// `f` is a live file not used by another thread meanwhile; `pos` is NULL or valid for a
/// write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_file_seek(
    f: *mut gridos_file,
    offset: i64,
    whence: c_int,
    pos: *mut u64,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promise on the handle.
        let f = unsafe { handle_mut(f, "f") }?;
        let to = match whence {
            libc::SEEK_SET => SeekFrom::Start(u64::try_from(offset).map_err(|_| {
                Failure::new(
                    gridos_result::GRIDOS_ERR_INVALID_ARGUMENT,
                    format!("offset {offset} is before the start"),
                )
            })?),
            libc::SEEK_CUR => SeekFrom::Current(offset),
            libc::SEEK_END => SeekFrom::End(offset),
            w => {
                return Err(Failure::new(
                    gridos_result::GRIDOS_ERR_INVALID_ARGUMENT,
                    format!("whence {w} is none of SEEK_SET, SEEK_CUR, SEEK_END"),
                ));
            }
        };
        let at = f.inner.seek(to).map_err(io_failure)?;
        if !pos.is_null() {
            // SAFETY: not NULL; the caller promises it is writable.
            unsafe { put(pos, at) }?;
        }
        Ok(())
    })
}

/// Closes and frees `f`, in every case. For `"w"` and `"a"` this is when the data reaches
/// the URL: the result is the upload's (a refused store, a full disk, a lost connection),
/// and on error the URL keeps its old content. `GRIDOS_ERR_NULL` for NULL.
///
/// # Safety
/// `f` is NULL or a live file, not used after this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_file_close(f: *mut gridos_file) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promise: a handle of ours, given back once.
        let f = unsafe { take_handle(f) }.ok_or_else(|| crate::args::null("f"))?;
        f.inner.close()?;
        Ok(())
    })
}
