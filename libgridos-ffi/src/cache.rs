//! The per-user GASS-like cache of the middleware (`gridos cache`): a URL becomes a local
//! path, fetched once however many tags (jobs) hold it, and kept until the last tag lets it
//! go. Files come through the copy engine (`ftp://`, `gridftp://`, `http(s)://`, local).
//!
//! Thread safety: a `gridos_cache` may be used from any number of threads at once, and
//! several processes may open the same directory: two adds of one URL fetch it once (the
//! second waits for the first). `gridos_cache_free` must not run while another call uses
//! the handle.

use crate::args::{fill, handle, into_handle, need_out, null, opt_text, put, take_handle, text};
use crate::error::{Failure, boundary, boundary_value, gridos_result};
use gridos_middleware::Url;
use gridos_middleware::cache::Cache;
use gridos_middleware::fetch::Fetcher;
use std::ffi::c_char;
use std::path::Path;

/// An open cache directory (opaque; `gridos_cache_open`, `gridos_cache_free`).
#[allow(non_camel_case_types)]
pub struct gridos_cache {
    inner: Cache,
    /// Where files come from: the copy engine with default options.
    origin: Fetcher,
}

// The thread-safety promise of the module doc, checked by the compiler.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<gridos_cache>();
};

/// Opens (creating it, mode 0700) the cache in `dir`, or with `dir` NULL in the default
/// directory of `gridos cache`: `$GRIDOS_CACHE`, else `$XDG_CACHE_HOME/gridos`, else
/// `$HOME/.cache/gridos`. What killed processes left behind there is cleaned up. `*out` is
/// written only on success.
///
/// # Safety
/// `dir` is NULL or a NUL-terminated string; `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_cache_open(
    dir: *const c_char,
    out: *mut *mut gridos_cache,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promise on `dir`.
        let dir = unsafe { opt_text(dir, "dir") }?;
        need_out(out, "out")?;
        let dir = Cache::default_dir(dir.map(Path::new))?;
        let c = gridos_cache {
            inner: Cache::open(dir)?,
            origin: Fetcher::default(),
        };
        // SAFETY: checked above; the caller promises it is writable.
        unsafe { put(out, into_handle(c)) }
    })
}

/// The cache handle, URL and tag of an entry call, checked.
///
/// # Safety
/// `cache` is NULL or a live cache; `url` and `tag` are NULL or NUL-terminated strings.
unsafe fn entry_args<'a>(
    cache: *const gridos_cache,
    url: *const c_char,
    tag: *const c_char,
) -> Result<(&'a gridos_cache, Url, &'a str), Failure> {
    // SAFETY: the caller's promises on the handle and the strings.
    let (cache, url, tag) = unsafe {
        (
            handle(cache, "cache")?,
            text(url, "url")?,
            text(tag, "tag")?,
        )
    };
    let url = Url::parse(url).map_err(gridos_middleware::Error::from)?;
    Ok((cache, url, tag))
}

/// Adds `url` to the cache for `tag` (a job or session name) and copies the local path of
/// its file, NUL-terminated, into `path` of `len` bytes; `*needed` (when not NULL) gets the
/// size the path needs. The file is fetched only when the cache has no copy or the origin
/// changed (size, modification time); adding a URL a tag already holds only marks it used.
/// The path stays valid while some tag holds the entry: read it, do not write it.
///
/// When `path` is too small the entry is still added (and held by `tag`): the call fails
/// with `GRIDOS_ERR_BUFFER_TOO_SMALL`, `*needed` says the size, and calling again with a
/// larger buffer fetches nothing.
///
/// # Safety
/// `cache` is a live cache; `url` and `tag` are NUL-terminated strings; `path` is valid
/// for `len` bytes; `needed` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_cache_add(
    cache: *const gridos_cache,
    url: *const c_char,
    tag: *const c_char,
    path: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promises on the handle and the strings.
        let (cache, url, tag) = unsafe { entry_args(cache, url, tag) }?;
        if path.is_null() {
            return Err(null("path"));
        }
        let local = cache.inner.add(&url, tag, &cache.origin)?;
        let local = local.to_str().ok_or_else(|| {
            Failure::new(
                gridos_result::GRIDOS_ERR_INVALID_UTF8,
                format!("the cached path {} is not UTF-8", local.display()),
            )
        })?;
        // SAFETY: the caller's promise on `path`, `len` and `needed`.
        unsafe { fill(local, path, len, needed) }
    })
}

/// Drops `tag`'s hold on `url`; when no tag holds it any more its file goes.
/// `GRIDOS_ERR_NOT_FOUND` when `url` is not cached or `tag` does not hold it.
///
/// # Safety
/// `cache` is a live cache; `url` and `tag` are NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_cache_delete(
    cache: *const gridos_cache,
    url: *const c_char,
    tag: *const c_char,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promises on the handle and the strings.
        let (cache, url, tag) = unsafe { entry_args(cache, url, tag) }?;
        cache.inner.delete(&url, tag)?;
        Ok(())
    })
}

/// Frees the handle (NULL: nothing); the cache directory and what it holds stay.
///
/// # Safety
/// `cache` is NULL or a live cache, not used after this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_cache_free(cache: *mut gridos_cache) {
    boundary_value((), || {
        // SAFETY: the caller's promise: a handle of ours, given back once.
        drop(unsafe { take_handle(cache) });
    })
}
