//! Network namespace and TUN helpers: `ip` (iproute2) for naming, addressing and
//! deleting namespaces, `setns(2)` and `/dev/net/tun` for the devices.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::Command;

use nix::sched::{CloneFlags, setns};

use super::WanError;

/// Where `ip netns` keeps the namespace names.
pub(crate) const NETNS_DIR: &str = "/run/netns";

/// Path of a named namespace.
pub(crate) fn ns_path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Runs `ip ARGS...` and turns a failure into an error carrying its stderr.
pub(crate) fn ip<I, S>(args: I) -> Result<(), WanError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("ip");
    cmd.args(args);
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| WanError::Setup {
        step: shown.clone(),
        why: format!("cannot run ip (Debian package iproute2): {e}"),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(WanError::Setup {
            step: shown,
            why: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Opens a namespace file so that it can be entered with `setns`.
pub(crate) fn open_ns(name: &str) -> Result<File, WanError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(ns_path(name))
        .map_err(|e| WanError::Setup {
            step: format!("open {}", ns_path(name).display()),
            why: e.to_string(),
        })
}

/// Runs `f` on a new thread that has entered the network namespace `ns`, and returns
/// its result. Sockets and devices created by `f` stay in that namespace.
pub(crate) fn in_ns<T, F>(ns: &File, f: F) -> Result<T, WanError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(ns, CloneFlags::CLONE_NEWNET).map_err(|e| WanError::Setup {
                step: "setns into network namespace".to_owned(),
                why: e.to_string(),
            })?;
            Ok(f())
        })
        .join()
        .map_err(|_| WanError::Setup {
            step: "thread inside network namespace".to_owned(),
            why: "panicked".to_owned(),
        })?
    })
}

/// Creates a TUN device (layer 3, no packet-info header, non-blocking) named `name`
/// in the calling thread's network namespace.
pub(crate) fn open_tun(name: &str) -> Result<File, WanError> {
    let fail = |why: String| WanError::Setup {
        step: format!("create TUN device {name}"),
        why,
    };
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
        return Err(fail("bad interface name".to_owned()));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|e| fail(format!("/dev/net/tun: {e}")))?;
    // SAFETY: ifreq is a plain C struct (a name array and a union of integers,
    // sockaddrs and pointers) for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, and `req` is a valid,
    // exclusively borrowed ifreq that outlives the call; the fd is open.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            libc::TUNSETIFF,
            &mut req as *mut libc::ifreq,
        )
    };
    if rc < 0 {
        return Err(fail(format!(
            "TUNSETIFF: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(file)
}

/// Deletes the named namespace (best effort, errors ignored).
pub(crate) fn delete_ns(name: &str) {
    if ns_path(name).exists() {
        let _ = ip(["netns", "delete", name]);
    }
}

/// Deletes namespaces left by emulators whose process is gone (killed with SIGKILL,
/// say), recognised by their names `gwan-c-PID-N` / `gwan-s-PID-N`. Returns their names.
pub fn clean_stale() -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
        return removed;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name
            .strip_prefix("gwan-c-")
            .or_else(|| name.strip_prefix("gwan-s-"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !PathBuf::from(format!("/proc/{pid}")).exists() {
            delete_ns(&name);
            removed.push(name);
        }
    }
    removed
}
