//! Arguments from C: strings, out-parameters, caller buffers and opaque handles. Every
//! pointer is checked for NULL here, so the exports stay short.

use crate::error::{Failure, gridos_result};
use std::ffi::{CStr, c_char};

/// A NUL-terminated UTF-8 string argument named `what` (for the message).
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: not NULL, and the caller promises a NUL-terminated string that lives long
    // enough.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|_| {
        Failure::new(
            gridos_result::GRIDOS_ERR_INVALID_UTF8,
            format!("{what} is not UTF-8"),
        )
    })
}

/// Like [`text`], with NULL meaning `None`.
///
/// # Safety
/// As for [`text`].
pub(crate) unsafe fn opt_text<'a>(
    p: *const c_char,
    what: &str,
) -> Result<Option<&'a str>, Failure> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller's promise is passed on.
    unsafe { text(p, what) }.map(Some)
}

pub(crate) fn null(what: &str) -> Failure {
    Failure::new(gridos_result::GRIDOS_ERR_NULL, format!("{what} is NULL"))
}

/// The caller's buffer of `len` bytes to fill.
///
/// # Safety
/// `p` is NULL or valid for writes of `len` bytes, not otherwise used during the call.
pub(crate) unsafe fn buf_mut<'a>(
    p: *mut u8,
    len: usize,
    what: &str,
) -> Result<&'a mut [u8], Failure> {
    if p.is_null() {
        return Err(null(what));
    }
    if len > isize::MAX as usize {
        return Err(Failure::new(
            gridos_result::GRIDOS_ERR_INVALID_ARGUMENT,
            format!("{what}: length {len} is too large"),
        ));
    }
    // SAFETY: not NULL, len ≤ isize::MAX, and the caller promises len writable bytes that
    // nothing else touches meanwhile.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// The caller's buffer of `len` bytes to send.
///
/// # Safety
/// `p` is NULL or valid for reads of `len` bytes.
pub(crate) unsafe fn buf_ref<'a>(
    p: *const u8,
    len: usize,
    what: &str,
) -> Result<&'a [u8], Failure> {
    if p.is_null() {
        return Err(null(what));
    }
    if len > isize::MAX as usize {
        return Err(Failure::new(
            gridos_result::GRIDOS_ERR_INVALID_ARGUMENT,
            format!("{what}: length {len} is too large"),
        ));
    }
    // SAFETY: not NULL, len ≤ isize::MAX, and the caller promises len readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Writes `v` to the out-parameter `out` (checked first, so nothing is done for a NULL).
///
/// # Safety
/// `out` is NULL or valid for a write of `T`.
pub(crate) unsafe fn put<T>(out: *mut T, v: T) -> Result<(), Failure> {
    if out.is_null() {
        return Err(null("the out-parameter"));
    }
    // SAFETY: not NULL; the caller promises it is writable.
    unsafe { out.write(v) };
    Ok(())
}

/// Checks an out-parameter before any work is done.
pub(crate) fn need_out<T>(out: *mut T, what: &str) -> Result<(), Failure> {
    if out.is_null() {
        Err(null(what))
    } else {
        Ok(())
    }
}

/// Copies `s` with a terminating NUL into the caller's `buf` of `len` bytes, and its size
/// (NUL included) into `*needed` when `needed` is not NULL. A buffer that is too small is
/// left untouched and the call fails with `GRIDOS_ERR_BUFFER_TOO_SMALL` (with `*needed`
/// set, so the caller can retry).
///
/// # Safety
/// `buf` is NULL or valid for `len` bytes; `needed` is NULL or valid for a write.
pub(crate) unsafe fn fill(
    s: &str,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> Result<(), Failure> {
    let want = s.len() + 1;
    if !needed.is_null() {
        // SAFETY: not NULL; the caller promises it is writable.
        unsafe { needed.write(want) };
    }
    if buf.is_null() {
        return Err(null("buf"));
    }
    if len < want {
        return Err(Failure::new(
            gridos_result::GRIDOS_ERR_BUFFER_TOO_SMALL,
            format!("the buffer holds {len} bytes, {want} are needed"),
        ));
    }
    // SAFETY: buf is valid for len ≥ want bytes and does not overlap `s` (a Rust string).
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), s.len());
        buf.add(s.len()).write(0);
    }
    Ok(())
}

/// A library-allocated C string for the caller (freed with `gridos_string_free`).
pub(crate) fn owned_string(s: String) -> *mut c_char {
    let text = s.split('\0').next().unwrap_or_default().to_string();
    std::ffi::CString::new(text).unwrap_or_default().into_raw()
}

/// Moves `v` to the heap and hands it to C as an opaque handle.
pub(crate) fn into_handle<T>(v: T) -> *mut T {
    Box::into_raw(Box::new(v))
}

/// Borrows a handle.
///
/// # Safety
/// `p` is NULL or a live handle from [`into_handle`] not used mutably elsewhere meanwhile.
pub(crate) unsafe fn handle<'a, T>(p: *const T, what: &str) -> Result<&'a T, Failure> {
    // SAFETY: the caller's promise: NULL or a live handle.
    unsafe { p.as_ref() }.ok_or_else(|| null(what))
}

/// Borrows a handle mutably.
///
/// # Safety
/// `p` is NULL or a live handle from [`into_handle`], used by one thread at a time.
pub(crate) unsafe fn handle_mut<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: the caller's promise: NULL or a live handle, not shared meanwhile.
    unsafe { p.as_mut() }.ok_or_else(|| null(what))
}

/// Takes a handle back (NULL: nothing).
///
/// # Safety
/// `p` is NULL or a live handle from [`into_handle`], not used after this.
pub(crate) unsafe fn take_handle<T>(p: *mut T) -> Option<Box<T>> {
    // SAFETY: the caller's promise: a handle made by Box::into_raw, given back once.
    (!p.is_null()).then(|| unsafe { Box::from_raw(p) })
}
