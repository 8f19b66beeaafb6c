//! Processes and resources through a node daemon (gridos-pm and gridos-rm): what
//! `gridos spawn|wait|kill|res|reserve|release` do, for C.
//!
//! A program connects to the local node daemon's unix control socket
//! ([`gridos_node_connect`]); that node runs processes itself or routes requests naming
//! another node (a `target_node`, or the node part of a GPID) to its peers. Processes are
//! named by GPIDs, `NODE.INCARNATION.PID` (e.g. `"n1.3.41235"`), which stay valid after the
//! process ended: [`gridos_wait`] on an exited process returns its accounting record at once.
//! A process whose node went away yields `GRIDOS_ERR_NODE_LOST`, never a made-up exit status.
//!
//! Thread safety: a `gridos_node` may be used by several threads at once (one thread blocked
//! in `gridos_wait` while another calls `gridos_kill`, say); the calls are independent
//! requests multiplexed on one connection. Only `gridos_node_free` must not overlap another
//! call on the same handle.

use crate::args::{fill, handle, into_handle, need_out, opt_text, owned_string, put, text};
use crate::error::{Failure, boundary, gridos_result};
use gridos_pm::proto::{ExitRecord, ExitStatus, SpawnSpec};
use gridos_pm::{Client, Gpid, NodeId};
use std::ffi::{c_char, c_int};
use std::future::Future;
use std::path::PathBuf;

/// A buffer of this many bytes holds any GPID with its NUL: a node id of up to 64
/// characters, a 64-bit incarnation and a 32-bit pid, with two dots.
pub const GRIDOS_GPID_MAX: usize = 97;
const _: () = assert!(GRIDOS_GPID_MAX == gridos_comm::gpid::MAX_NODE_ID_LEN + 1 + 20 + 1 + 10 + 1);

/// A connection to a node daemon (opaque). Made by `gridos_node_connect`, freed by
/// `gridos_node_free`. Several threads may use one handle at once (one blocked in
/// `gridos_wait` while another calls `gridos_kill`, say): the calls are independent
/// requests on one connection. Only `gridos_node_free` must not overlap another call.
#[allow(non_camel_case_types)]
pub struct gridos_node {
    // Dropped before the runtime that drives its connection.
    client: Client,
    rt: tokio::runtime::Runtime,
}

const _: fn() = || {
    fn shared_between_threads<T: Send + Sync>() {}
    shared_between_threads::<gridos_node>();
};

impl gridos_node {
    fn run<T>(&self, f: impl Future<Output = gridos_pm::Result<T>>) -> Result<T, Failure> {
        Ok(self.rt.block_on(f)?)
    }
}

/// How a process ended and what it used, as `gridos_wait` reports it.
///
/// When `signal` is 0 the process exited and `code` is its exit code; otherwise the signal
/// numbered `signal` ended it, `code` is -1 and `core_dumped` says whether it dumped core.
/// The usage fields are valid in both cases.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct gridos_exit {
    /// The exit code (0–255) when `signal` is 0, else -1.
    pub code: i32,
    /// The signal that ended the process, or 0 when it exited.
    pub signal: i32,
    /// Killed by a signal and dumped core.
    pub core_dumped: bool,
    /// The node's memory enforcement (a reservation's limit) killed it.
    pub oom_killed: bool,
    /// User plus system CPU time, seconds, of the process and the children it waited for
    /// (from wait4).
    pub cpu_seconds: f64,
    /// User CPU time, seconds.
    pub user_cpu_seconds: f64,
    /// System CPU time, seconds.
    pub system_cpu_seconds: f64,
    /// Wall-clock time from start to end, seconds.
    pub wall_seconds: f64,
    /// Peak resident set size, bytes.
    pub max_rss_bytes: u64,
    /// Bytes read through read-like system calls.
    pub read_bytes: u64,
    /// Bytes written through write-like system calls.
    pub write_bytes: u64,
}

impl From<&ExitRecord> for gridos_exit {
    fn from(r: &ExitRecord) -> gridos_exit {
        let (code, signal, core_dumped) = match r.status {
            ExitStatus::Exited(c) => (c, 0, false),
            ExitStatus::Signaled {
                signal,
                core_dumped,
            } => (-1, signal, core_dumped),
        };
        let secs = |us: u64| us as f64 / 1e6;
        let u = &r.usage;
        gridos_exit {
            code,
            signal,
            core_dumped,
            oom_killed: r.oom_killed,
            cpu_seconds: secs(u.user_cpu_us.saturating_add(u.sys_cpu_us)),
            user_cpu_seconds: secs(u.user_cpu_us),
            system_cpu_seconds: secs(u.sys_cpu_us),
            wall_seconds: r.wall_ms as f64 / 1e3,
            max_rss_bytes: u.max_rss_bytes,
            read_bytes: u.read_bytes,
            write_bytes: u.write_bytes,
        }
    }
}

/// A GPID argument; text that is not a GPID is `GRIDOS_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn gpid_arg(p: *const c_char) -> Result<Gpid, Failure> {
    // SAFETY: the caller's promise is passed on.
    let s = unsafe { text(p, "gpid") }?;
    s.parse::<Gpid>()
        .map_err(|e| Failure::from(gridos_pm::Error::from(e)))
}

/// A node id argument, NULL meaning the connected node.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn node_arg(p: *const c_char) -> Result<Option<String>, Failure> {
    // SAFETY: the caller's promise is passed on.
    let Some(s) = (unsafe { opt_text(p, "target_node") })? else {
        return Ok(None);
    };
    NodeId::new(s).map_err(|e| Failure::from(gridos_pm::Error::from(e)))?;
    Ok(Some(s.to_string()))
}

/// Connects to the node daemon listening on the unix socket `ctl_socket` and stores the
/// connection in `*out`. NULL means what `gridos` commands use: `$GRIDOS_NODE`, else the
/// default socket (`/run/gridos/node.sock` for root). No daemon there:
/// `GRIDOS_ERR_NETWORK`.
///
/// # Safety
/// `ctl_socket` is NULL or a NUL-terminated string; `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_node_connect(
    ctl_socket: *const c_char,
    out: *mut *mut gridos_node,
) -> gridos_result {
    boundary(|| {
        need_out(out, "out")?;
        // SAFETY: the caller's promise on `ctl_socket`.
        let path = match unsafe { opt_text(ctl_socket, "ctl_socket") }? {
            Some(p) => PathBuf::from(p),
            None => std::env::var_os("GRIDOS_NODE")
                .map(PathBuf::from)
                .unwrap_or_else(gridos_pm::node::default_ctl_socket),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("gridos-node")
            .enable_all()
            .build()?;
        let client = rt.block_on(Client::connect_unix(&path))?;
        // SAFETY: checked above; the caller's promise that it is writable.
        unsafe { put(out, into_handle(gridos_node { client, rt })) }
    })
}

/// Closes the connection and frees the handle (NULL: nothing). Processes it started keep
/// running; their GPIDs stay valid.
///
/// # Safety
/// `node` is NULL or a handle from `gridos_node_connect`, not used after this and by no
/// other thread meanwhile.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_node_free(node: *mut gridos_node) {
    crate::error::boundary_value((), || {
        // SAFETY: the caller's promise: NULL or a live handle, given back once.
        if let Some(n) = unsafe { crate::args::take_handle(node) } {
            let gridos_node { client, rt } = *n;
            {
                let _in_runtime = rt.enter();
                drop(client);
            }
            drop(rt);
        }
    })
}

/// Starts `argv` (`argv[0]` looked up in the node's PATH; the array ends with NULL) on
/// `target_node`, or on the connected node when it is NULL, and copies the new process's
/// GPID into `gpid` of `len` bytes, NUL-terminated (`*needed`, when not NULL, gets its
/// size).
///
/// As `gridos spawn`: the process gets a minimal environment (PATH, HOME and the
/// `GRIDOS_*` variables), its standard streams on /dev/null, and starts in the caller's
/// working directory when it runs on the connected node (else in `/`). A daemon running as
/// root runs it as its spawn user (`nobody` by default).
///
/// `len` must be at least `GRIDOS_GPID_MAX`: that is checked before anything runs
/// (`GRIDOS_ERR_BUFFER_TOO_SMALL`, with `*needed` = `GRIDOS_GPID_MAX`), so a failed call
/// never leaves a process the caller cannot name. NULL or empty `argv`:
/// `GRIDOS_ERR_NULL` / `GRIDOS_ERR_INVALID_ARGUMENT`; a program that cannot be run:
/// `GRIDOS_ERR_IO`.
///
/// # Safety
/// `node` is a live handle; `target_node` is NULL or a NUL-terminated string; `argv` is
/// NULL or a NULL-terminated array of NUL-terminated strings; `gpid` is valid for `len`
/// bytes; `needed` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_spawn(
    node: *const gridos_node,
    target_node: *const c_char,
    argv: *const *const c_char,
    gpid: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promise on `node`.
        let n = unsafe { handle(node, "node") }?;
        // SAFETY: the caller's promise on `target_node`.
        let target = unsafe { node_arg(target_node) }?;
        if argv.is_null() {
            return Err(crate::args::null("argv"));
        }
        let mut args = Vec::new();
        for i in 0.. {
            // SAFETY: the caller's promise: the array is readable up to its NULL, which we
            // have not passed yet.
            let p = unsafe { *argv.add(i) };
            if p.is_null() {
                break;
            }
            // SAFETY: the caller's promise on each element.
            args.push(unsafe { text(p, "an argv element") }?.to_string());
        }
        if args.is_empty() {
            return Err(Failure::new(
                gridos_result::GRIDOS_ERR_INVALID_ARGUMENT,
                "argv is empty (argv[0] is NULL)",
            ));
        }
        if gpid.is_null() {
            return Err(crate::args::null("gpid"));
        }
        if len < GRIDOS_GPID_MAX {
            if !needed.is_null() {
                // SAFETY: not NULL; the caller's promise that it is writable.
                unsafe { needed.write(GRIDOS_GPID_MAX) };
            }
            return Err(Failure::new(
                gridos_result::GRIDOS_ERR_BUFFER_TOO_SMALL,
                format!(
                    "the GPID buffer holds {len} bytes; GRIDOS_GPID_MAX ({GRIDOS_GPID_MAX}) are \
                     needed (checked before spawning, so nothing ran)"
                ),
            ));
        }
        let spec = SpawnSpec {
            argv: args,
            cwd: if target.is_none() {
                std::env::current_dir().ok()
            } else {
                None
            },
            ..Default::default()
        };
        let (g, _enforcement) = n.run(n.client.spawn(target.as_deref(), spec))?;
        // SAFETY: the caller's promise on `gpid`, `len` and `needed`; it fits (checked).
        unsafe { fill(&g.to_string(), gpid, len, needed) }
    })
}

/// Waits until the process `gpid` ends (at once when it already has) and stores how it
/// ended and what it used in `*out`. Unknown GPID: `GRIDOS_ERR_NO_SUCH_PROCESS`; text that
/// is not a GPID: `GRIDOS_ERR_INVALID_ARGUMENT`; the node holding the process went away
/// or restarted (so its fate is unknown): `GRIDOS_ERR_NODE_LOST`, the same when the
/// connected node itself goes away during the wait.
///
/// # Safety
/// `node` is a live handle; `gpid` is a NUL-terminated string; `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_wait(
    node: *const gridos_node,
    gpid: *const c_char,
    out: *mut gridos_exit,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promise on `node`.
        let n = unsafe { handle(node, "node") }?;
        need_out(out, "out")?;
        // SAFETY: the caller's promise on `gpid`.
        let g = unsafe { gpid_arg(gpid) }?;
        let record = n.run(n.client.wait(&g, None))?;
        // SAFETY: checked above; the caller's promise that it is writable.
        unsafe { put(out, gridos_exit::from(&record)) }
    })
}

/// Sends `signal` (e.g. 15 for SIGTERM) to the process `gpid` and its process group.
/// A process that already ended: `GRIDOS_ERR_NO_SUCH_PROCESS` (the message says how it
/// ended); an invalid signal number: `GRIDOS_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `node` is a live handle; `gpid` is a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_kill(
    node: *const gridos_node,
    gpid: *const c_char,
    signal: c_int,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promise on `node`.
        let n = unsafe { handle(node, "node") }?;
        // SAFETY: the caller's promise on `gpid`.
        let g = unsafe { gpid_arg(gpid) }?;
        n.run(n.client.signal(&g, signal))
    })
}

/// The connected node's resources and reservations as JSON (what `gridos res --json`
/// prints: `node`, `resources` with `cpus`, `memory`, `disks`, `interfaces`; `capacity`,
/// `reserved`, `reservations`, `enforcement`), in `*json`; free it with
/// `gridos_string_free`.
///
/// # Safety
/// `node` is a live handle; `json` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_resources_json(
    node: *const gridos_node,
    json: *mut *mut c_char,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promise on `node`.
        let n = unsafe { handle(node, "node") }?;
        need_out(json, "json")?;
        let report = n.run(n.client.resources(None))?;
        let text = serde_json::to_string(&report).map_err(|e| {
            Failure::new(
                gridos_result::GRIDOS_ERR_OTHER,
                format!("encoding resources: {e}"),
            )
        })?;
        // SAFETY: checked above; the caller's promise that it is writable.
        unsafe { put(json, owned_string(text)) }
    })
}

/// Reserves `cpus` CPUs (fractions allowed; 0: no CPU limit), `memory_bytes` of memory (0:
/// no limit) and `disk_bytes` of disk (admission control only) for `seconds` on
/// `target_node` (NULL: the connected node), as `gridos reserve`, and copies the
/// reservation's id, `RID@NODE`, into `id` of `len` bytes (`*needed`, when not NULL, gets
/// its size). The node enforces it with cgroups or rlimits where it can; the JSON of
/// `gridos_resources_json` says which.
///
/// Beyond the node's free capacity: `GRIDOS_ERR_RESERVATION`; nothing requested, a zero
/// duration or a negative or non-finite `cpus`: `GRIDOS_ERR_INVALID_ARGUMENT`. When `id`
/// is too small the reservation is released again before the call fails with
/// `GRIDOS_ERR_BUFFER_TOO_SMALL`, so retrying with `*needed` bytes leaks nothing.
///
/// # Safety
/// `node` is a live handle; `target_node` is NULL or a NUL-terminated string; `id` is
/// valid for `len` bytes; `needed` is NULL or valid for a write.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn gridos_reserve(
    node: *const gridos_node,
    target_node: *const c_char,
    cpus: f64,
    memory_bytes: u64,
    disk_bytes: u64,
    seconds: u64,
    id: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promise on `node`.
        let n = unsafe { handle(node, "node") }?;
        // SAFETY: the caller's promise on `target_node`.
        let target = unsafe { node_arg(target_node) }?;
        need_out(id, "id")?;
        let request = gridos_rm::Request {
            cpus,
            memory_bytes,
            disk_bytes,
            duration_secs: seconds,
        };
        let info = n.run(n.client.reserve(target.as_deref(), request))?;
        // SAFETY: the caller's promise on `id`, `len` and `needed` (`id` is not NULL, so
        // only a buffer too small fails).
        let filled = unsafe { fill(&info.id, id, len, needed) };
        if let Err(small) = filled {
            // Undo, so the caller can retry with a larger buffer without leaking capacity.
            if let Err(e) = n.run(n.client.release(&info.id)) {
                return Err(Failure::new(
                    small.code,
                    format!(
                        "{}; releasing {} again failed ({}), it lasts until it expires",
                        small.message, info.id, e.message
                    ),
                ));
            }
            return Err(small);
        }
        Ok(())
    })
}

/// Releases the reservation `id` (`RID@NODE` from `gridos_reserve`; a bare `RID` means the
/// connected node); processes still running under it are killed. Unknown or already
/// released: `GRIDOS_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `node` is a live handle; `id` is a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridos_release(
    node: *const gridos_node,
    id: *const c_char,
) -> gridos_result {
    boundary(|| {
        // SAFETY: the caller's promise on `node` and `id`.
        let (n, id) = unsafe { (handle(node, "node")?, text(id, "id")?) };
        n.run(n.client.release(id))
    })
}
