//! The FTP/GridFTP server of gridos-ftp (the one `gridos ftpd` runs), started and stopped
//! from C: a configuration handle set key by key, then a running server inside the calling
//! process (its own threads; the calls return at once).
//!
//! Thread safety: a `gridos_ftp_server_config` is set from one thread at a time, and not
//! while `gridos_ftp_server_start` reads it (after that it may be changed or freed freely;
//! the server keeps its own copy). A running `gridos_ftp_server` may be asked for its port
//! and stats from any number of threads at once; `gridos_ftp_server_stop` must not run
//! while another call uses the same handle.

use crate::args::{
    handle, handle_mut, into_handle, need_out, owned_string, put, take_handle, text,
};
use crate::error::{Failure, boundary, boundary_value, gridos_result};
use gridos_ftp::server::{Server, ServerConfig, ServerHandle};
use std::ffi::c_char;

/// Settings of a server to start (opaque; `gridos_ftp_server_config_new`).
#[allow(non_camel_case_types)]
pub struct gridos_ftp_server_config {
    inner: ServerConfig,
}

/// A running server (opaque; `gridos_ftp_server_start`, `gridos_ftp_server_stop`).
#[allow(non_camel_case_types)]
pub struct gridos_ftp_server {
    inner: ServerHandle,
}

// The thread-safety promises of the module doc, checked by the compiler.
const _: fn() = || {
    fn send<T: Send>() {}
    fn shared<T: Send + Sync>() {}
    send::<gridos_ftp_server_config>();
    shared::<gridos_ftp_server>();
};

/// The code of a server error; the message is the error's own.
fn failure(e: gridos_ftp::server::Error) -> Failure {
    use gridos_ftp::server::Error as E;
    use gridos_result::*;
    let code = match &e {
        // The system call's error decides (address in use, missing docroot, …).
        E::Io { source, .. } => Failure::from(std::io::Error::from(source.kind())).code,
        // A certificate, key, client CA or grid-mapfile that cannot be used: the message
        // names the setting and the file.
        E::Config(_) | E::Passwd(_) | E::Tls { .. } => GRIDOS_ERR_INVALID_ARGUMENT,
        E::Privileges(_) => GRIDOS_ERR_PERMISSION,
        E::GridIo(_) => GRIDOS_ERR_IO,
        _ => GRIDOS_ERR_OTHER,
    };
    Failure::new(code, e.to_string())
}

/// A new server configuration serving the directory `docroot`, with the defaults of
/// `gridos ftpd` as a library: listen on 127.0.0.1 at a free port, no users, no anonymous
/// logins. Free it with `gridos_ftp_server_config_free`.
///
/// # Safety
/// `docroot` is a NUL-terminated string; `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_ftp_server_config_new(
    docroot: *const c_char,
    out: *mut *mut gridos_ftp_server_config,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promise on `docroot`.
        let docroot = unsafe { text(docroot, "docroot") }?;
        need_out(out, "out")?;
        if docroot.is_empty() {
            return Err(Failure::new(
                gridos_result::GRIDOS_ERR_INVALID_ARGUMENT,
                "docroot is empty",
            ));
        }
        let cfg = gridos_ftp_server_config {
            inner: ServerConfig::new(docroot),
        };
        // SAFETY: checked above; the caller promises it is writable.
        unsafe { put(out, into_handle(cfg)) }
    })
}

/// Sets one key of `cfg` from text, as the `[ftp]` table of the configuration file and
/// `gridos ctl` do; the `ftp.` prefix is optional. Keys: `docroot`, `listen` (ADDR:PORT,
/// port 0 picks a free one), `anonymous`, `anonymous_write`, `passwd` (a file from
/// `gridos passwd`), `threads`, `io_threads`, `pasv_ports` (LOW-HIGH), `max_clients`,
/// `max_per_ip`, `idle_timeout`, `data_timeout`, `shutdown_grace` (seconds),
/// `ctl_socket`, `allow_third_party`, `third_party_hosts`, `keep_net_admin`, and
/// `user`/`run_as` — which, in a process started as root, makes `gridos_ftp_server_start`
/// chroot the whole process to the docroot and switch its user: only for a process that
/// is nothing but the server.
///
/// FTPS (as `gridos ftpd --tls …`): `tls` (`off`, `optional`, `passwords` — the default:
/// password logins need TLS except on loopback —, `required`: every login and data
/// connection), `tls_cert` and `tls_key` (PEM files), `tls_client_ca` (PEM: client
/// certificates signed by it are checked), `grid_mapfile` (certificate subjects to users,
/// for `USER :globus-mapping:`; needs `tls_client_ca`), `implicit_tls` (ADDR:PORT of an
/// implicit-TLS listener, as port 990), `tls_data_reuse` (PROT P data connections must
/// resume the control connection's session; default true), `tls_handshake_timeout`
/// (seconds). The files are read by `gridos_ftp_server_start`: a file that cannot be used
/// fails it with `GRIDOS_ERR_INVALID_ARGUMENT`, naming the setting and the file.
///
/// `GRIDOS_ERR_UNKNOWN_KEY` for a key not listed, `GRIDOS_ERR_INVALID_ARGUMENT` for a value
/// the key does not take; either way `cfg` is unchanged.
///
/// # Safety
/// `cfg` is a live configuration not used by another thread meanwhile; `key` and `value`
/// are NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_ftp_server_config_set(
    cfg: *mut gridos_ftp_server_config,
    key: *const c_char,
    value: *const c_char,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promises on the handle and the strings.
        let (cfg, key, value) = unsafe {
            (
                handle_mut(cfg, "cfg")?,
                text(key, "key")?,
                text(value, "value")?,
            )
        };
        let bare = key.strip_prefix("ftp.").unwrap_or(key);
        if !ServerConfig::KEYS.contains(&bare) {
            return Err(Failure::new(
                gridos_result::GRIDOS_ERR_UNKNOWN_KEY,
                format!(
                    "unknown server key {key:?} (known: {})",
                    ServerConfig::KEYS.join(", ")
                ),
            ));
        }
        // Set on a copy, so a refused value changes nothing.
        let mut next = cfg.inner.clone();
        next.set(bare, value).map_err(failure)?;
        cfg.inner = next;
        Ok(())
    })
}

/// Frees a configuration (NULL: nothing). A server started from it keeps running.
///
/// # Safety
/// `cfg` is NULL or a live configuration, not used after this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_ftp_server_config_free(cfg: *mut gridos_ftp_server_config) {
    boundary_value((), || {
        // SAFETY: the caller's promise: a handle of ours, given back once.
        drop(unsafe { take_handle(cfg) });
    })
}

/// Starts a server with `cfg`: reads its TLS files, binds, opens the docroot, and serves
/// from threads of its own until `gridos_ftp_server_stop`. `*out` is written only on
/// success. A configuration that cannot serve (a TLS policy without a certificate, a
/// certificate or key file that cannot be used) is `GRIDOS_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `cfg` is a live configuration not being set meanwhile; `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_ftp_server_start(
    cfg: *const gridos_ftp_server_config,
    out: *mut *mut gridos_ftp_server,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promise on the handle.
        let cfg = unsafe { handle(cfg, "cfg") }?;
        need_out(out, "out")?;
        let inner = Server::start(cfg.inner.clone()).map_err(failure)?;
        // SAFETY: checked above; the caller promises it is writable.
        unsafe { put(out, into_handle(gridos_ftp_server { inner })) }
    })
}

/// The port the server listens on (the one chosen when `listen` asked for port 0); 0 for
/// NULL.
///
/// # Safety
/// `server` is NULL or a live server.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_ftp_server_port(server: *const gridos_ftp_server) -> u16 {
    boundary_value(0, || {
        // SAFETY: the caller's promise: NULL or a live handle.
        unsafe { server.as_ref() }.map_or(0, |s| s.inner.local_addr().port())
    })
}

/// The server's counters as one JSON object, e.g. `{"listen":"127.0.0.1:40021",
/// "clients":0,"transfers_completed":2,"bytes_sent":1048576,…,"io.path":"io_uring-splice"}`
/// (the keys of `gridos ctl stats`; numbers as JSON numbers). `*json` is a new string for
/// `gridos_string_free`.
///
/// # Safety
/// `server` is a live server; `json` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_ftp_server_stats_json(
    server: *const gridos_ftp_server,
    json: *mut *mut c_char,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promise on the handle.
        let server = unsafe { handle(server, "server") }?;
        need_out(json, "json")?;
        let mut map = serde_json::Map::new();
        map.insert(
            "listen".into(),
            server.inner.local_addr().to_string().into(),
        );
        for (k, v) in server.inner.stats() {
            let value = match v.parse::<u64>() {
                Ok(n) => n.into(),
                Err(_) => v.into(),
            };
            map.insert(k, value);
        }
        let text = serde_json::Value::Object(map).to_string();
        // SAFETY: checked above; the caller promises it is writable.
        unsafe { put(json, owned_string(text)) }
    })
}

/// Stops the server and frees it (NULL: nothing): no new connections, running transfers
/// get `ftp.shutdown_grace` to finish (then they are aborted), every session is closed.
/// Returns when the server's threads are gone.
///
/// # Safety
/// `server` is NULL or a live server, not used by any thread after (or during) this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_ftp_server_stop(server: *mut gridos_ftp_server) {
    boundary_value((), || {
        // SAFETY: the caller's promise: a handle of ours, given back once.
        if let Some(s) = unsafe { take_handle(server) } {
            s.inner.shutdown();
        }
    })
}
