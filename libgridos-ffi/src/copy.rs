//! Copies between URLs with the middleware's `Copy`, the engine `gridos cp` runs: options
//! named as the long options of `gridos cp` (TLS ones under `tls.`), a progress callback
//! that can cancel.
//!
//! Thread safety: a `gridos_copy_options` is set from one thread at a time; while nobody
//! sets it, any number of `gridos_copy` calls on any threads may read it at once.
//! `gridos_copy` itself may run on many threads at once (each copy has its own
//! connections).

use crate::args::{handle, handle_mut, into_handle, need_out, put, take_handle, text};
use crate::error::{Failure, boundary, boundary_value, gridos_result};
use gridos_middleware::{
    Algorithm, CancelToken, Copy, CopyObserver, CopyOptions, HostMemoryMode, Pipeline, Url,
};
use std::ffi::{c_char, c_int, c_void};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Options of `gridos_copy` (opaque; `gridos_copy_options_new`).
#[allow(non_camel_case_types)]
#[derive(Clone)]
pub struct gridos_copy_options {
    inner: CopyOptions,
    /// `offset` and `length` go together (as `--offset`/`--length`); checked at the copy.
    offset: Option<u64>,
    length: Option<u64>,
    /// `tls.cert` and `tls.key` go together (as `--cert`/`--key`); checked at the copy.
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

// The thread-safety promises of the module doc, checked by the compiler.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<gridos_copy_options>();
};

/// The keys of `gridos_copy_options_set`: the long options of `gridos cp`.
const KEYS: &[&str] = &[
    "recursive",
    "resume",
    "verify",
    "parallel",
    "tcp-bs",
    "block-size",
    "offset",
    "length",
    "compress",
    "pipeline",
    "no-pipeline",
    "active",
    "preserve",
    "no-relay",
    "no-preallocate",
    "write-behind",
    "host-memory",
    "tls",
    "tls.cacert",
    "tls.insecure",
    "tls.cert",
    "tls.key",
];

/// The progress callback of `gridos_copy`.
type ProgressFn = unsafe extern "C" fn(user: *mut c_void, done: u64, total: u64) -> c_int;

fn invalid(message: String) -> Failure {
    Failure::new(gridos_result::GRIDOS_ERR_INVALID_ARGUMENT, message)
}

fn boolean(key: &str, v: &str) -> Result<bool, Failure> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(invalid(format!(
            "{key}: {v:?} is not a boolean (1/0, true/false, yes/no, on/off)"
        ))),
    }
}

/// `None` for `auto` (the default: chosen from the path), else the size with the units of
/// `gridos cp` (`64k`, `16MiB`, `1.5GB`).
fn size(key: &str, v: &str) -> Result<Option<u64>, Failure> {
    if v.trim().eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    gridos_middleware::cli::parse_size(v)
        .map(Some)
        .map_err(|e| invalid(format!("{key}: {e}")))
}

/// A file name; `""` unsets it (back to the default).
fn path(v: &str) -> Option<PathBuf> {
    (!v.is_empty()).then(|| PathBuf::from(v))
}

fn verify(v: &str) -> Result<Option<Algorithm>, Failure> {
    let t = v.trim();
    if t.is_empty() {
        // `--verify` alone.
        return Ok(Some(Algorithm::Md5));
    }
    if let Some(a) = Algorithm::parse(t) {
        return Ok(Some(a));
    }
    if t.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    match boolean("verify", t) {
        Ok(on) => Ok(on.then_some(Algorithm::Md5)),
        Err(_) => Err(invalid(format!(
            "verify: unknown algorithm {v:?} (MD5, ADLER32, SHA1, SHA256, SHA512, CRC32C; \
             \"\" for MD5, \"none\" for no check)"
        ))),
    }
}

impl gridos_copy_options {
    fn set(&mut self, key: &str, v: &str) -> Result<(), Failure> {
        let o = &mut self.inner;
        match key {
            "recursive" => o.recursive = boolean(key, v)?,
            "resume" => o.resume = boolean(key, v)?,
            "verify" => o.verify = verify(v)?,
            "parallel" => {
                o.parallel = if v.trim().eq_ignore_ascii_case("auto") {
                    None
                } else {
                    match v.trim().parse::<u32>() {
                        Ok(n @ 1..=64) => Some(n),
                        _ => {
                            return Err(invalid(format!(
                                "parallel: {v:?} is not a number from 1 to 64 (or auto)"
                            )));
                        }
                    }
                }
            }
            "tcp-bs" => o.tcp_buffer = size(key, v)?,
            "block-size" => {
                o.block_size = size(key, v)?;
                if o.block_size == Some(0) {
                    return Err(invalid("block-size: must be at least 1 byte".into()));
                }
            }
            "offset" => self.offset = size(key, v)?,
            "length" => self.length = size(key, v)?,
            "compress" => o.compress = boolean(key, v)?,
            "pipeline" => {
                o.pipeline = if boolean(key, v)? {
                    Pipeline::Always
                } else {
                    Pipeline::Never
                }
            }
            "no-pipeline" => {
                o.pipeline = if boolean(key, v)? {
                    Pipeline::Never
                } else {
                    Pipeline::Auto
                }
            }
            "active" => o.active = boolean(key, v)?,
            "preserve" => o.preserve_times = boolean(key, v)?,
            "no-relay" => o.relay = !boolean(key, v)?,
            "no-preallocate" => o.preallocate = !boolean(key, v)?,
            "write-behind" => {
                o.write_behind = Some(
                    v.trim()
                        .parse()
                        .map_err(|_| invalid(format!("{key}: {v:?} is not off, auto or on")))?,
                )
            }
            "host-memory" => {
                o.host_memory = match v.trim() {
                    "" => return Err(invalid(format!("{key}: a file, off or default"))),
                    "off" => HostMemoryMode::Off,
                    "default" => HostMemoryMode::Default,
                    f => HostMemoryMode::File(f.into()),
                }
            }
            "tls" => o.tls.require = boolean(key, v)?,
            "tls.cacert" => o.tls.ca_file = path(v),
            "tls.insecure" => o.tls.insecure = boolean(key, v)?,
            "tls.cert" => self.cert = path(v),
            "tls.key" => self.key = path(v),
            _ => {
                return Err(Failure::new(
                    gridos_result::GRIDOS_ERR_UNKNOWN_KEY,
                    format!("unknown copy option {key:?} (known: {})", KEYS.join(", ")),
                ));
            }
        }
        Ok(())
    }

    /// The options of one copy, `offset`/`length` and `tls.cert`/`tls.key` checked as
    /// `gridos cp` checks them (the rest, e.g. `tls.insecure` with `tls.cacert`, the copy
    /// checks).
    fn options(&self) -> Result<CopyOptions, Failure> {
        let mut o = self.inner.clone();
        o.range = match (self.offset, self.length) {
            (Some(off), Some(len)) => Some((off, len)),
            (None, None) => None,
            _ => return Err(invalid("offset and length go together".into())),
        };
        o.tls.cert = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "tls.cert and tls.key go together (a client certificate and its key)".into(),
                ));
            }
        };
        Ok(o)
    }
}

/// New copy options with the defaults of `gridos cp` (a plain one-file copy, settings
/// chosen from the path). Free them with `gridos_copy_options_free`.
///
/// # Safety
/// `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_copy_options_new(
    out: *mut *mut gridos_copy_options,
) -> gridos_result {
    boundary(|| {
        need_out(out, "out")?;
        let o = gridos_copy_options {
            inner: CopyOptions::default(),
            offset: None,
            length: None,
            cert: None,
            key: None,
        };
        // SAFETY: checked above; the caller promises it is writable.
        unsafe { put(out, into_handle(o)) }
    })
}

/// Sets one option; keys are the long options of `gridos cp` (`_` may stand for `-`):
/// booleans `recursive`, `resume`, `compress`, `pipeline`, `no-pipeline`, `active`,
/// `preserve`, `no-relay`, `no-preallocate` (`1`/`0`, `true`/`false`, `yes`/`no`,
/// `on`/`off`); `write-behind` (`off`, `auto` or `on`, as `--write-behind`); `host-memory`
/// (a file, `off`, or `default`, as `--host-memory`); `verify`
/// (an algorithm — MD5, ADLER32, SHA1, SHA256, SHA512, CRC32C —, `""` for MD5 as
/// `--verify` alone, `none` for no check); `parallel` (1 to 64, or `auto`); sizes
/// `tcp-bs`, `block-size`, `offset`, `length` with the units of `gridos cp` (`64k`,
/// `16MiB`, `1.5GB`; `auto` for the default). `offset` and `length` go together.
///
/// TLS (FTPS; `ftps://` and `ftpes://` URLs are TLS whatever these say, and on `ftp://`
/// and `gridftp://` the copy upgrades on its own before a password goes out when the
/// server offers TLS): `tls` (boolean, `--tls`: TLS required on `ftp://` and `gridftp://`
/// URLs, a server without it fails with `GRIDOS_ERR_TLS`), `tls.cacert` (a PEM file of CA
/// certificates trusted instead of the system's roots, `--cacert`), `tls.insecure`
/// (boolean, `--insecure`: server certificates are not verified — still encrypted, but
/// anyone on the path can pose as the server; not with `tls.cacert`), `tls.cert` and
/// `tls.key` (a client certificate chain and its private key, PEM, for certificate logins
/// such as `USER :globus-mapping:`; they go together). `""` unsets a file. Files are read
/// when the copy starts: one that cannot be used fails the copy with
/// `GRIDOS_ERR_INVALID_ARGUMENT`, naming it; a server certificate that is refused fails it
/// with `GRIDOS_ERR_TLS`, naming why.
///
/// `GRIDOS_ERR_UNKNOWN_KEY` for another key, `GRIDOS_ERR_INVALID_ARGUMENT` for a value the
/// key does not take; either way the options are unchanged.
///
/// # Safety
/// `opts` is live options not used by another thread meanwhile; `key` and `value` are
/// NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_copy_options_set(
    opts: *mut gridos_copy_options,
    key: *const c_char,
    value: *const c_char,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promises on the handle and the strings.
        let (opts, key, value) = unsafe {
            (
                handle_mut(opts, "opts")?,
                text(key, "key")?,
                text(value, "value")?,
            )
        };
        let key = key.replace('_', "-");
        // Set on a copy, so a refused value changes nothing.
        let mut next = opts.clone();
        next.set(&key, value)?;
        *opts = next;
        Ok(())
    })
}

/// Frees copy options (NULL: nothing).
///
/// # Safety
/// `opts` is NULL or live options, not used after this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_copy_options_free(opts: *mut gridos_copy_options) {
    boundary_value((), || {
        // SAFETY: the caller's promise: a handle of ours, given back once.
        drop(unsafe { take_handle(opts) });
    })
}

/// The caller's `user` pointer, handed back to its callback from the copy's threads.
struct User(*mut c_void);
// SAFETY: `gridos_copy` documents that `progress` is called with `user` from a thread the
// copy starts; the caller promises that is fine for what `user` points to. The pointer is
// never dereferenced here.
unsafe impl Send for User {}
// SAFETY: as for Send; calls are serialised by `CallbackObserver::state`.
unsafe impl Sync for User {}

/// Turns the copy's progress into calls of the C callback; a non-zero return cancels.
struct CallbackObserver {
    progress: ProgressFn,
    user: User,
    cancel: CancelToken,
    /// Set once the callback asked to cancel: it is not called again. The lock also keeps
    /// two calls from overlapping.
    state: Mutex<bool>,
}

impl CallbackObserver {
    fn call(&self, done: u64, total: u64) {
        let mut cancelled = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if *cancelled {
            return;
        }
        // SAFETY: the caller of gridos_copy promises `progress` is a valid function taking
        // `user`, callable from the copy's threads while gridos_copy runs (which it does).
        let r = unsafe { (self.progress)(self.user.0, done, total) };
        if r != 0 {
            *cancelled = true;
            self.cancel.cancel();
        }
    }

    fn cancelled(&self) -> bool {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl CopyObserver for CallbackObserver {
    fn total(&self, _files: u64, bytes: u64) {
        self.call(0, bytes);
    }
    fn progress(&self, done: u64, total: u64) {
        self.call(done, total);
    }
}

/// Copies `src_url` to `dst_url` (local paths, `file://`, `ftp://`, `gridftp://`,
/// `ftps://`, `ftpes://`, and `http(s)://` sources) as `gridos cp SRC DST` with `opts`
/// (NULL: the defaults) does, and returns when the copy is over. `GRIDOS_OK` means every
/// byte arrived (and matched the server's checksum with `verify`).
///
/// `progress` (may be NULL) receives the bytes done and the total (0 when unknown): once
/// when the copy knows what it will move (`done` 0, on the calling thread), about every
/// 100 ms while data moves (on a ticker thread the copy starts and joins before it
/// returns), and once when the copy is complete (on the calling thread). Calls never
/// overlap. A non-zero return cancels the copy: no more calls are made, the copy stops
/// within about 100 ms and returns `GRIDOS_ERR_CANCELLED`, and a download it stopped
/// leaves no file that looks complete (a new destination does not appear; with `resume`
/// a partial stays, to be resumed). The last call, made when every byte arrived, cannot
/// cancel any more; a copy that finished before it noticed the cancel returns `GRIDOS_OK`.
///
/// # Safety
/// `src_url` and `dst_url` are NUL-terminated strings; `opts` is NULL or live options not
/// being set meanwhile; `progress` is NULL or a function that may be called as said above
/// with `user`, from another thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_copy(
    src_url: *const c_char,
    dst_url: *const c_char,
    opts: *const gridos_copy_options,
    progress: Option<unsafe extern "C" fn(user: *mut c_void, done: u64, total: u64) -> c_int>,
    user: *mut c_void,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promises on the strings.
        let (src, dst) = unsafe { (text(src_url, "src_url")?, text(dst_url, "dst_url")?) };
        let options = if opts.is_null() {
            CopyOptions::default()
        } else {
            // SAFETY: not NULL; the caller promises live options nobody sets meanwhile.
            unsafe { handle(opts, "opts") }?.options()?
        };
        let src = Url::parse(src).map_err(gridos_middleware::Error::from)?;
        let dst = Url::parse(dst).map_err(gridos_middleware::Error::from)?;
        let copy = Copy::new(src, dst).options(options);
        let observer = progress.map(|f| {
            Arc::new(CallbackObserver {
                progress: f,
                user: User(user),
                cancel: copy.cancel_token(),
                state: Mutex::new(false),
            })
        });
        let copy = match &observer {
            Some(o) => copy.observer(o.clone()),
            None => copy,
        };
        match copy.run() {
            Ok(_) => Ok(()),
            // Whatever stopped a copy the caller cancelled, the caller cancelled it.
            Err(e) if observer.as_ref().is_some_and(|o| o.cancelled()) => Err(Failure::new(
                gridos_result::GRIDOS_ERR_CANCELLED,
                format!("cancelled by the progress callback: {e}"),
            )),
            Err(e) => Err(e.into()),
        }
    })
}
