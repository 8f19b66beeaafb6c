//! `gridos ftpd --seccomp-selftest`: tries forbidden system calls under the seccomp filter
//! that `gridos ftpd` confines itself with ([`gridos_ftp::server::sandbox`]), and a few
//! allowed ones, each in a process of its own, and reports what the kernel did.
//!
//! A probe process ([`child`]) installs the filter with the same
//! [`sandbox::install`](gridos_ftp::server::sandbox::install) the server calls, prints
//! [`PROBE_READY`], makes one call ([`Probe::run`]) and, if it comes back, prints what it
//! returned. [`run`] starts one such process per [`Probe`] and [`judge`]s its end: a
//! forbidden call must kill the process with SIGSYS (`clone3` must fail with `ENOSYS`, so
//! glibc falls back to `clone`, whose flags are checked), an allowed one must work. Since a
//! call the filter wrongly let through really happens, the calls are chosen to do no harm
//! (a fork whose child exits at once, `execve` of `/bin/true`, `mount` over nothing,
//! `setuid` to the uid the process has).

use gridos_ftp::server::sandbox;

/// A call `gridos ftpd --seccomp-selftest` makes under the filter, in a process of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Probe {
    /// execve(2) of /bin/true.
    Execve,
    /// execveat(2) of /bin/true.
    Execveat,
    /// clone(2) with SIGCHLD only: a fork.
    Fork,
    /// clone3(2) of a process (answered ENOSYS).
    Clone3,
    /// ptrace(PTRACE_TRACEME).
    Ptrace,
    /// process_vm_readv(2) of the process itself.
    ProcessVm,
    /// kill(2) with signal 0 to the parent.
    Kill,
    /// mount(2).
    Mount,
    /// umount2(2).
    Umount,
    /// chroot("/").
    Chroot,
    /// unshare(CLONE_NEWUSER).
    Unshare,
    /// setuid(getuid()).
    Setuid,
    /// setgroups(0, NULL).
    Setgroups,
    /// kexec_load(2).
    KexecLoad,
    /// bpf(2).
    Bpf,
    /// init_module(2).
    InitModule,
    /// keyctl(KEYCTL_GET_KEYRING_ID).
    Keyctl,
    /// personality(0xffffffff) (a query).
    Personality,
    /// rt_sigaction(2) (installing a handler).
    Sigaction,
    /// socket(AF_NETLINK).
    SocketNetlink,
    /// socket(AF_INET, SOCK_RAW).
    SocketRaw,
    /// socket(AF_UNIX).
    SocketUnix,
    /// mprotect of a page to PROT_EXEC.
    MprotectExec,
    /// mmap of an executable page.
    MmapExec,
    /// Allowed: a thread (clone3 refused, then clone with CLONE_THREAD), joined.
    Thread,
    /// Allowed: TCP over loopback (socket, bind, listen, connect, accept4, write, read).
    Tcp,
    /// Allowed: reading a file (`/proc/self/status`, whose Seccomp line it reports).
    ReadFile,
    /// Allowed: a file sent to a loopback socket by the gridos-io engine (io_uring splice
    /// where the kernel has it: a ring made under the filter).
    IoUring,
}

/// What a probe should meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expect {
    /// The process killed by SIGSYS.
    Killed,
    /// The call failing with this errno (from the filter).
    Errno(i32),
    /// The call working.
    Works,
}

impl Probe {
    /// Every probe, forbidden calls first.
    pub const ALL: [Probe; 28] = [
        Probe::Execve,
        Probe::Execveat,
        Probe::Fork,
        Probe::Clone3,
        Probe::Ptrace,
        Probe::ProcessVm,
        Probe::Kill,
        Probe::Mount,
        Probe::Umount,
        Probe::Chroot,
        Probe::Unshare,
        Probe::Setuid,
        Probe::Setgroups,
        Probe::KexecLoad,
        Probe::Bpf,
        Probe::InitModule,
        Probe::Keyctl,
        Probe::Personality,
        Probe::Sigaction,
        Probe::SocketNetlink,
        Probe::SocketRaw,
        Probe::SocketUnix,
        Probe::MprotectExec,
        Probe::MmapExec,
        Probe::Thread,
        Probe::Tcp,
        Probe::ReadFile,
        Probe::IoUring,
    ];

    /// The probe's name (`--seccomp-probe NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Probe::Execve => "execve",
            Probe::Execveat => "execveat",
            Probe::Fork => "fork-clone",
            Probe::Clone3 => "fork-clone3",
            Probe::Ptrace => "ptrace",
            Probe::ProcessVm => "process_vm_readv",
            Probe::Kill => "kill",
            Probe::Mount => "mount",
            Probe::Umount => "umount2",
            Probe::Chroot => "chroot",
            Probe::Unshare => "unshare",
            Probe::Setuid => "setuid",
            Probe::Setgroups => "setgroups",
            Probe::KexecLoad => "kexec_load",
            Probe::Bpf => "bpf",
            Probe::InitModule => "init_module",
            Probe::Keyctl => "keyctl",
            Probe::Personality => "personality",
            Probe::Sigaction => "rt_sigaction",
            Probe::SocketNetlink => "socket-netlink",
            Probe::SocketRaw => "socket-raw",
            Probe::SocketUnix => "socket-unix",
            Probe::MprotectExec => "mprotect-exec",
            Probe::MmapExec => "mmap-exec",
            Probe::Thread => "thread",
            Probe::Tcp => "tcp-loopback",
            Probe::ReadFile => "read-file",
            Probe::IoUring => "io_uring",
        }
    }

    /// The probe of that name.
    pub fn from_name(name: &str) -> Option<Probe> {
        Probe::ALL.into_iter().find(|p| p.name() == name)
    }

    /// What the filter should do to it.
    pub fn expect(self) -> Expect {
        match self {
            Probe::Clone3 => Expect::Errno(libc::ENOSYS),
            Probe::Thread | Probe::Tcp | Probe::ReadFile | Probe::IoUring => Expect::Works,
            _ => Expect::Killed,
        }
    }

    /// Makes the call, in a process that has called [`sandbox::install`]; returns what the call
    /// returned, when it did (a forbidden call kills the process instead). Only for a
    /// process of its own: a forbidden call that is let through really happens (a forked
    /// child exits at once; execve replaces the process with /bin/true).
    pub fn run(self) -> Outcome {
        probes::run(self)
    }
}

/// What a probe's call returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It worked (what it did).
    Worked(String),
    /// It failed with this errno.
    Failed(i32),
    /// It returned, but did not do what it should (why).
    Broken(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Worked(what) => write!(f, "worked: {what}"),
            Outcome::Failed(e) => write!(f, "failed: {}", std::io::Error::from_raw_os_error(*e)),
            Outcome::Broken(why) => write!(f, "broken: {why}"),
        }
    }
}

/// The line a probe process prints once the filter is in (before the call).
pub const PROBE_READY: &str = "seccomp installed";
/// The prefix of the line a probe process prints when its call returned.
pub const PROBE_RETURNED: &str = "returned ";

/// How a probe process ended, as `--seccomp-selftest` judges it.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The probe.
    pub probe: Probe,
    /// Whether the filter did what it should.
    pub ok: bool,
    /// What happened, for the report.
    pub detail: String,
}

/// Judges a probe process from its exit status and standard output.
pub fn judge(probe: Probe, status: std::process::ExitStatus, stdout: &str) -> Verdict {
    use std::os::unix::process::ExitStatusExt;
    let installed = stdout.lines().any(|l| l == PROBE_READY);
    let returned = stdout
        .lines()
        .find_map(|l| l.strip_prefix(PROBE_RETURNED))
        .map(str::to_string);
    let killed = status.signal() == Some(libc::SIGSYS);
    let (ok, detail) = if !installed {
        (
            false,
            format!("the filter was not installed ({status}): {stdout}"),
        )
    } else {
        match (probe.expect(), killed, returned) {
            (Expect::Killed, true, _) => (true, "refused: process killed (SIGSYS)".to_string()),
            (Expect::Errno(e), false, Some(r)) if r == Outcome::Failed(e).to_string() => {
                (true, format!("refused: {r}"))
            }
            (Expect::Works, false, Some(r)) if r.starts_with("worked") && status.success() => {
                (true, format!("allowed: {r}"))
            }
            (Expect::Works, false, Some(r)) => (false, format!("should work, but {r}")),
            (Expect::Works, true, _) => (
                false,
                "killed (SIGSYS), but it should be allowed".to_string(),
            ),
            (_, true, _) => (
                false,
                "killed (SIGSYS), but it should fail with an errno".to_string(),
            ),
            (_, false, Some(r)) => (false, format!("NOT REFUSED: {r}")),
            (_, false, None) => (
                false,
                format!("NOT REFUSED: the process ended without the call returning ({status})"),
            ),
        }
    };
    Verdict { probe, ok, detail }
}

/// The probes' calls (raw system calls where the point is the call itself).
mod probes {
    use super::{Outcome, Probe};
    use std::ffi::CStr;

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    /// A raw system call's result as an outcome.
    fn ret(r: libc::c_long, what: &str) -> Outcome {
        if r < 0 {
            Outcome::Failed(errno())
        } else {
            Outcome::Worked(format!("{what} = {r}"))
        }
    }

    /// In a child created by a fork-style call that was let through: leave at once.
    fn child_exit(r: libc::c_long) {
        if r == 0 {
            // SAFETY: _exit ends the forked child without running anything of the
            // parent's (no destructors, no atexit handlers, no stdio flush).
            unsafe { libc::_exit(0) };
        }
    }

    const TRUE: &CStr = c"/bin/true";

    pub(super) fn run(p: Probe) -> Outcome {
        match p {
            Probe::Execve => {
                let argv = [TRUE.as_ptr(), std::ptr::null()];
                let envp = [std::ptr::null()];
                // SAFETY: NUL-terminated path and NULL-terminated argv/envp arrays that
                // outlive the call; on success the process is replaced.
                let r = unsafe { libc::execve(TRUE.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
                ret(r.into(), "execve")
            }
            Probe::Execveat => {
                let argv = [TRUE.as_ptr(), std::ptr::null()];
                let envp: [*const libc::c_char; 1] = [std::ptr::null()];
                // SAFETY: as for execve; AT_FDCWD with an absolute path.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_execveat,
                        libc::AT_FDCWD,
                        TRUE.as_ptr(),
                        argv.as_ptr(),
                        envp.as_ptr(),
                        0,
                    )
                };
                ret(r, "execveat")
            }
            Probe::Fork => {
                // SAFETY: a fork-style clone (no CLONE_VM: the child has a copy of the
                // address space and stack); the child only calls _exit.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_clone,
                        libc::SIGCHLD as libc::c_ulong,
                        0usize,
                        0usize,
                        0usize,
                        0usize,
                    )
                };
                child_exit(r);
                ret(r, "clone(SIGCHLD) pid")
            }
            Probe::Clone3 => {
                // struct clone_args (CLONE_ARGS_SIZE_VER0, 64 bytes): flags 0, exit_signal
                // (the fifth u64) SIGCHLD, no stack: a fork.
                let mut args = [0u64; 8];
                args[4] = libc::SIGCHLD as u64;
                // SAFETY: the kernel reads `size_of_val(&args)` bytes from a live array;
                // the child of a successful call only calls _exit.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_clone3,
                        args.as_mut_ptr(),
                        std::mem::size_of_val(&args),
                    )
                };
                child_exit(r);
                ret(r, "clone3 pid")
            }
            Probe::Ptrace => {
                // SAFETY: PTRACE_TRACEME takes no pointers.
                let r = unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) };
                ret(r, "ptrace(TRACEME)")
            }
            Probe::ProcessVm => {
                let mut word = 0u64;
                let src = 7u64;
                let local = libc::iovec {
                    iov_base: (&raw mut word).cast(),
                    iov_len: 8,
                };
                let remote = libc::iovec {
                    iov_base: (&raw const src).cast_mut().cast(),
                    iov_len: 8,
                };
                // SAFETY: both iovecs describe live 8-byte locals of this process.
                let r = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
                ret(r as libc::c_long, "process_vm_readv bytes")
            }
            Probe::Kill => {
                // SAFETY: signal 0 only checks that the parent exists.
                let r = unsafe { libc::kill(libc::getppid(), 0) };
                ret(r.into(), "kill(parent, 0)")
            }
            Probe::Mount => {
                // SAFETY: NUL-terminated strings; a NULL data pointer is allowed.
                let r = unsafe {
                    libc::mount(
                        c"none".as_ptr(),
                        c"/".as_ptr(),
                        c"tmpfs".as_ptr(),
                        libc::MS_RDONLY,
                        std::ptr::null(),
                    )
                };
                ret(r.into(), "mount")
            }
            Probe::Umount => {
                // SAFETY: a NUL-terminated path; MNT_DETACH does not wait.
                let r = unsafe { libc::umount2(c"/nonexistent-gridos".as_ptr(), 0) };
                ret(r.into(), "umount2")
            }
            Probe::Chroot => {
                // SAFETY: a NUL-terminated path.
                let r = unsafe { libc::chroot(c"/".as_ptr()) };
                ret(r.into(), "chroot")
            }
            Probe::Unshare => {
                // SAFETY: takes flags only.
                let r = unsafe { libc::unshare(libc::CLONE_NEWUSER) };
                ret(r.into(), "unshare(CLONE_NEWUSER)")
            }
            Probe::Setuid => {
                // SAFETY: setuid to the current uid, no pointers.
                let r = unsafe { libc::syscall(libc::SYS_setuid, libc::getuid()) };
                ret(r, "setuid(own uid)")
            }
            Probe::Setgroups => {
                // SAFETY: an empty list: size 0 and a NULL pointer.
                let r = unsafe { libc::syscall(libc::SYS_setgroups, 0usize, 0usize) };
                ret(r, "setgroups(0)")
            }
            Probe::KexecLoad => {
                // SAFETY: no segments (count 0, NULL pointer).
                let r =
                    unsafe { libc::syscall(libc::SYS_kexec_load, 0usize, 0usize, 0usize, 0usize) };
                ret(r, "kexec_load")
            }
            Probe::Bpf => {
                let mut attr = [0u8; 128];
                // SAFETY: BPF_MAP_CREATE (0) with a zeroed attribute block of the given size.
                let r =
                    unsafe { libc::syscall(libc::SYS_bpf, 0usize, attr.as_mut_ptr(), attr.len()) };
                ret(r, "bpf(MAP_CREATE)")
            }
            Probe::InitModule => {
                // SAFETY: an empty image (length 0) and a NUL-terminated parameter string.
                let r =
                    unsafe { libc::syscall(libc::SYS_init_module, 0usize, 0usize, c"".as_ptr()) };
                ret(r, "init_module")
            }
            Probe::Keyctl => {
                // SAFETY: KEYCTL_GET_KEYRING_ID (0) of KEY_SPEC_SESSION_KEYRING (-3), no
                // pointers.
                let r = unsafe { libc::syscall(libc::SYS_keyctl, 0usize, -3isize, 0usize) };
                ret(r, "keyctl(GET_KEYRING_ID)")
            }
            Probe::Personality => {
                // SAFETY: 0xffffffff only queries the persona.
                let r = unsafe { libc::personality(0xffff_ffff) };
                ret(r.into(), "personality(query)")
            }
            Probe::Sigaction => {
                // SAFETY: a zeroed sigaction (SIG_DFL) for SIGUSR2; the old one is not read.
                let r = unsafe {
                    let sa: libc::sigaction = std::mem::zeroed();
                    libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut())
                };
                ret(r.into(), "rt_sigaction(SIGUSR2)")
            }
            Probe::SocketNetlink => socket(libc::AF_NETLINK, libc::SOCK_RAW, "netlink"),
            Probe::SocketRaw => socket(libc::AF_INET, libc::SOCK_RAW, "raw"),
            Probe::SocketUnix => socket(libc::AF_UNIX, libc::SOCK_STREAM, "unix"),
            Probe::MprotectExec => {
                let page = map(libc::PROT_READ | libc::PROT_WRITE);
                if page.is_null() {
                    return Outcome::Failed(errno());
                }
                // SAFETY: `page` is a page this probe mapped; changing its protection
                // touches nothing else.
                let r = unsafe { libc::mprotect(page, 4096, libc::PROT_READ | libc::PROT_EXEC) };
                ret(r.into(), "mprotect(PROT_EXEC)")
            }
            Probe::MmapExec => {
                let page = map(libc::PROT_READ | libc::PROT_EXEC);
                if page.is_null() {
                    Outcome::Failed(errno())
                } else {
                    Outcome::Worked("mmap(PROT_EXEC)".into())
                }
            }
            Probe::Thread => match std::thread::Builder::new()
                .name("probe".into())
                .spawn(|| 42)
                .map(|h| h.join())
            {
                Ok(Ok(42)) => Outcome::Worked("a thread started and was joined".into()),
                Ok(_) => Outcome::Failed(libc::EIO),
                Err(e) => Outcome::Failed(e.raw_os_error().unwrap_or(libc::EIO)),
            },
            Probe::Tcp => tcp(),
            Probe::ReadFile => match std::fs::read_to_string("/proc/self/status") {
                Ok(s) => Outcome::Worked(
                    s.lines()
                        .find(|l| l.starts_with("Seccomp:"))
                        .unwrap_or("no Seccomp line")
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
                Err(e) => Outcome::Failed(e.raw_os_error().unwrap_or(libc::EIO)),
            },
            Probe::IoUring => zero_copy(),
        }
    }

    /// A file sent to a loopback socket by gridos-io on the path probed before the filter
    /// (io_uring splice where the kernel has it), the bytes compared on the other side.
    fn zero_copy() -> Outcome {
        use std::io::Read;
        use std::os::unix::fs::FileExt;
        let run = || -> Result<String, String> {
            let e = |e: std::io::Error| e.to_string();
            let file = std::fs::File::open("/proc/self/exe").map_err(e)?;
            let len = file.metadata().map_err(e)?.len().min(1 << 20);
            let mut want = vec![0u8; len as usize];
            file.read_exact_at(&mut want, 0).map_err(e)?;
            let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(e)?;
            let mut c = std::net::TcpStream::connect(l.local_addr().map_err(e)?).map_err(e)?;
            let (sock, _) = l.accept().map_err(e)?;
            let reader = std::thread::spawn(move || {
                let mut got = Vec::new();
                c.read_to_end(&mut got).map(|_| got)
            });
            let opts = gridos_io::TransferOptions {
                path: Some(gridos_io::probe()),
                ..Default::default()
            };
            let report =
                gridos_io::send_file(&file, 0, len, &sock, &opts).map_err(|e| e.to_string())?;
            drop(sock);
            let got = reader
                .join()
                .map_err(|_| "reader panicked".to_string())?
                .map_err(e)?;
            if got != want {
                return Err(format!(
                    "{} of {len} bytes arrived, not the same",
                    got.len()
                ));
            }
            Ok(format!(
                "{} bytes file → socket by {}",
                report.bytes, report.path
            ))
        };
        match run() {
            Ok(s) => Outcome::Worked(s),
            Err(m) => Outcome::Broken(m),
        }
    }

    fn socket(domain: i32, ty: i32, what: &str) -> Outcome {
        // SAFETY: socket(2) takes no pointers; the fd (if any) is closed by exit.
        let r = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, 0) };
        ret(r.into(), &format!("socket({what}) fd"))
    }

    fn map(prot: i32) -> *mut libc::c_void {
        // SAFETY: an anonymous private page at an address of the kernel's choosing.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            p
        }
    }

    fn tcp() -> Outcome {
        use std::io::{Read, Write};
        let run = || -> std::io::Result<String> {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            let mut c = std::net::TcpStream::connect(l.local_addr()?)?;
            let (mut s, _) = l.accept()?;
            c.write_all(b"ping")?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf)?;
            Ok(format!(
                "loopback TCP carried {:?}",
                String::from_utf8_lossy(&buf)
            ))
        };
        match run() {
            Ok(s) => Outcome::Worked(s),
            Err(e) => Outcome::Failed(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }
}

/// Runs every probe, each in a process made by `spawn` (which runs [`child`] for that probe,
/// e.g. `gridos ftpd --seccomp-probe NAME`), and judges them in [`Probe::ALL`] order.
pub fn run(spawn: impl Fn(Probe) -> std::io::Result<std::process::Output>) -> Vec<Verdict> {
    Probe::ALL
        .into_iter()
        .map(|p| match spawn(p) {
            Ok(out) => judge(p, out.status, &String::from_utf8_lossy(&out.stdout)),
            Err(e) => Verdict {
                probe: p,
                ok: false,
                detail: format!("could not start the probe process: {e}"),
            },
        })
        .collect()
}

/// The probe process: installs the filter, says so on stdout, makes the call and prints
/// what it returned (when the process is still alive). Exit status 0 when the call
/// returned, 2 when the filter could not be installed.
pub fn child(probe: Probe) -> std::process::ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout();
    // As the server does before its filter: the I/O configuration and the probe of the
    // kernel's I/O paths (which needs io_uring_register, not allowed afterwards).
    let _ = gridos_io::config();
    let _ = gridos_io::probe();
    if let Err(e) = sandbox::install() {
        let _ = writeln!(out, "filter not installed: {e}");
        return std::process::ExitCode::from(2);
    }
    let _ = writeln!(out, "{PROBE_READY}");
    let _ = out.flush();
    let outcome = probe.run();
    let _ = writeln!(out, "{PROBE_RETURNED}{outcome}");
    let _ = out.flush();
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    #[test]
    fn every_probe_has_a_unique_name() {
        for p in Probe::ALL {
            assert_eq!(Probe::from_name(p.name()), Some(p));
        }
    }

    /// The judge takes only the right ending as a refusal or a success.
    #[test]
    fn judge_reads_endings() {
        let sigsys = ExitStatus::from_raw(libc::SIGSYS);
        let exit0 = ExitStatus::from_raw(0);
        let ready = format!("{PROBE_READY}\n");
        assert!(judge(Probe::Execve, sigsys, &ready).ok);
        // No filter: the signal alone proves nothing.
        assert!(!judge(Probe::Execve, sigsys, "").ok);
        // execve let through: /bin/true ran and exited 0.
        assert!(!judge(Probe::Execve, exit0, &ready).ok);
        let enosys = format!("{ready}{PROBE_RETURNED}{}\n", Outcome::Failed(libc::ENOSYS));
        assert!(judge(Probe::Clone3, exit0, &enosys).ok);
        let forked = format!("{ready}{PROBE_RETURNED}worked: clone3 pid = 7\n");
        assert!(!judge(Probe::Clone3, exit0, &forked).ok);
        let thread = format!("{ready}{PROBE_RETURNED}worked: a thread\n");
        assert!(judge(Probe::Thread, exit0, &thread).ok);
        assert!(!judge(Probe::Thread, sigsys, &ready).ok);
    }
}
