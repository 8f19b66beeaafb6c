//! The process-wide configuration (the `io.*` keys of `gridos ctl` and of `[io]` in
//! `/etc/gridos/io.toml`): read and set live; transfers that start afterwards use it.
//! Thread safety: any thread, any time.

use crate::args::{fill, text};
use crate::error::{Failure, boundary, gridos_result};
use std::ffi::c_char;

fn known(key: &str) -> Result<(), Failure> {
    let k = key.strip_prefix("io.").unwrap_or(key);
    if gridos_io::IoConfig::KEYS
        .iter()
        .any(|known| known.strip_prefix("io.") == Some(k))
    {
        return Ok(());
    }
    Err(Failure::new(
        gridos_result::GRIDOS_ERR_UNKNOWN_KEY,
        format!(
            "unknown configuration key {key:?} (known: {})",
            gridos_io::IoConfig::KEYS.join(", ")
        ),
    ))
}

/// Copies the value of `key` (e.g. `"io.threads"`; the `io.` prefix is optional) into
/// `buf` of `len` bytes, NUL-terminated; `*needed` (when not NULL) gets the size the value
/// needs, also when `buf` is too small (`GRIDOS_ERR_BUFFER_TOO_SMALL`).
///
/// # Safety
/// `key` is a NUL-terminated string; `buf` is valid for `len` bytes; `needed` is NULL or
/// valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_config_get(
    key: *const c_char,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promise on `key`.
        let key = unsafe { text(key, "key") }?;
        known(key)?;
        let value = gridos_io::get_key(key)
            .map_err(|e| Failure::new(gridos_result::GRIDOS_ERR_INVALID_ARGUMENT, e.to_string()))?;
        // SAFETY: the caller's promise on `buf`, `len` and `needed`.
        unsafe { fill(&value, buf, len, needed) }
    })
}

/// Sets `key` to `value` (validated; on error nothing changes).
///
/// # Safety
/// `key` and `value` are NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_config_set(
    key: *const c_char,
    value: *const c_char,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promise on both strings.
        let (key, value) = unsafe { (text(key, "key")?, text(value, "value")?) };
        known(key)?;
        gridos_io::set_key(key, value)
            .map_err(|e| Failure::new(gridos_result::GRIDOS_ERR_INVALID_ARGUMENT, e.to_string()))
    })
}

/// The name of the data path transfers use now — `io_uring-splice`, `splice` or
/// `read-write`: the one `io.path` forces, else the best the kernel offers — into `buf` (as
/// for [`gridos_config_get`]).
///
/// # Safety
/// `buf` is valid for `len` bytes; `needed` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_io_path(
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> gridos_result {
    boundary(|| {
        let path = gridos_io::config()
            .forced_path()
            .map_err(|e| Failure::new(gridos_result::GRIDOS_ERR_INVALID_ARGUMENT, e.to_string()))?
            .unwrap_or_else(gridos_io::probe);
        // SAFETY: the caller's promise on `buf`, `len` and `needed`.
        unsafe { fill(path.name(), buf, len, needed) }
    })
}
