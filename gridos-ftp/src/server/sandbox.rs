//! The seccomp sandbox of `gridos ftpd`: after start-up the server process confines itself
//! with a seccomp-BPF filter that allows only the system calls it uses, as vsftpd's
//! `seccomp_sandbox` does.
//!
//! # When it is installed
//! [`super::Server::start`] installs it (with [`ServerConfig::seccomp`](super::ServerConfig)
//! on) after it has bound the listeners and the control socket, opened the docroot, read the
//! password and TLS files, probed the I/O paths, and chrooted and dropped to its user, and
//! before it starts any thread (the I/O pool, the listener and accept threads). Every thread
//! created later inherits the filter; it is installed with `SECCOMP_FILTER_FLAG_TSYNC` as
//! well, so a thread that a library started earlier is confined too (the kernel refuses the
//! filter rather than leave a thread out). `PR_SET_NO_NEW_PRIVS` is set first, as seccomp
//! requires of an unprivileged process: nothing the server could execute (it can execute
//! nothing) would gain privileges. Just before, [`install`] starts and joins one thread: glibc
//! sets up threading at a process's first `pthread_create`, installing a signal handler of
//! its own with `rt_sigaction`, which the filter forbids. A filter cannot be removed, so the
//! server never turns it off while running and `ftp.seccomp` is read-only through the
//! control socket.
//!
//! The filter confines the whole process, so only a program that is the server alone turns
//! it on: `gridos ftpd` does by default (`seccomp = true` in `[ftp]`, `--no-seccomp` for
//! debugging); [`ServerConfig::new`](super::ServerConfig::new), for servers started inside
//! another program (the tests start many inside the test harness), leaves it off.
//!
//! # What a forbidden call does
//! The process is killed (`SECCOMP_RET_KILL_PROCESS`), as vsftpd does. A call outside the
//! list is either a bug of ours or code an attacker got to run; letting it fail with `EPERM`
//! would let an exploit go on probing, and a server that has lost a system call it needs is
//! better stopped than limping. The trace: the kernel logs every kill in the audit log
//! (`dmesg`/`journalctl -k`: `audit: type=1326 … comm="ftpd-listener" … syscall=59 …`, with
//! the thread's name and the call's number: `gridos ftpd --seccomp-selftest` lists the
//! allowed calls, `ausyscall 59` names a number), the exit status says `SIGSYS` ("Bad system
//! call"; systemd: `status=31/SYS`), and a core dump is written where they are enabled.
//! `gridos ftpd --no-seccomp` runs without the filter to tell a missing call from another
//! fault.
//!
//! The one exception is `clone3`: its flags are in a structure that seccomp cannot read, so
//! a second filter answers it `ENOSYS`, and glibc then creates threads with `clone`, whose
//! flags are checked (the approach of Chromium's and Docker's profiles).
//!
//! # The allow-list
//! [`GROUPS`] lists the calls allowed without conditions, by group, each with why the server
//! needs it; a few calls are allowed only with some arguments ([`RESTRICTED`]). The set was
//! found by running the server test suite (`gridos-ftp/tests`, in-process servers: TLS,
//! MODE E, third-party, checksums, MFMT, listings, robustness) under `strace -ff` and taking
//! the calls of the server's threads (`ftpd-accept`, `ftpd-listener`, `gridos-io` and the
//! threads they start), and `gridos ftpd` itself through `middleware/tests/ftpd_cli.rs` and
//! `ftpd_seccomp.rs` (its main thread waits for SIGTERM and shuts the server down); then by
//! running those tests against the binary with the filter on. What the traces showed is
//! allowed, plus the calls glibc makes instead on aarch64 (`epoll_pwait`, `ppoll`,
//! `renameat2`) and a few harmless ones a rarer path may need (`clock_gettime` where the
//! vDSO does not answer, `brk` and `mremap` for the allocator, `sched_yield`, `rt_sigreturn`,
//! `tgkill` for `abort()`, the `get*id` queries); nothing else. Names resolve through `libc`
//! for the target (x86_64 and aarch64; a few legacy calls exist on x86_64 only); on another
//! architecture the filter cannot be built and the server says so (see [`Seccomp::On`]).
//!
//! Not allowed, among everything else: `execve`/`execveat`, `fork`/`vfork` and a `clone`
//! without `CLONE_THREAD`, `ptrace`, `process_vm_readv`/`writev`, `kill` (`tgkill` only to
//! the server itself), `mount`/`umount2`/`pivot_root`/`chroot`/`unshare`/`setns`, every
//! `set*id`/`setgroups`/`capset`, `kexec_*`, `bpf`, `init_module`/`finit_module`,
//! `keyctl`/`add_key`, `personality`, `perf_event_open`, `userfaultfd`, `rt_sigaction`,
//! `link`/`symlink`, `io_uring_register`, `dup`/`dup2`/`dup3` (`try_clone` is
//! `F_DUPFD_CLOEXEC`), sockets other than TCP over IPv4/IPv6 and an IPv4 UDP socket (which
//! gridos-io only asks for its buffer limit: the server resolves no names), no raw, packet,
//! netlink or unix sockets but `socketpair`, and memory mapped or made executable
//! (`PROT_EXEC`).
//!
//! # io_uring
//! seccomp sees the `io_uring_enter` system call, not the requests in the ring: the kernel
//! carries out an SQE without asking the filter. Our engine (gridos-io) submits splice,
//! poll and cancel requests only, but code that could make its own ring could reach what
//! io_uring offers — open, read, write, send, connect and a socket of any family, rename,
//! unlink, mkdir, link, symlink, xattrs, `URING_CMD` — within the process's chroot and
//! identity. No io_uring opcode executes a program, creates a process, traces one, mounts,
//! loads a module or BPF program or changes credentials, so those stay closed.
//! `IORING_REGISTER_RESTRICTIONS` on our rings would not close this: `io_uring_setup` must
//! stay allowed (each I/O thread makes its ring when it first transfers, and `io.threads`
//! grows the pool while the server runs) and seccomp cannot read its parameters, so such
//! code would make a ring of its own. Closing it would take creating every ring before the
//! filter and forbidding `io_uring_setup`, or a filter without io_uring for servers run
//! with `io.path = "splice"` (which `io.path` changing live rules out today).
//!
//! # Why seccompiler
//! The filter is built with [seccompiler](https://docs.rs/seccompiler) (rust-vmm, the
//! filters of Firecracker and Cloud Hypervisor): pure Rust, so no C library (libseccomp) to
//! link or install on the machines the server runs on, argument conditions for the checks
//! above, an architecture check in every filter, and the TSYNC install. libseccomp would
//! give each rule its own action (clone3's `ENOSYS` in the one filter, where seccompiler
//! has one action for all matches and so a second filter), at the price of that C library.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::error::{Error, Result};

/// Whether `gridos ftpd` confines itself with seccomp (`ftp.seccomp`; `seccomp = true |
/// false | "required"` in `[ftp]`; `--no-seccomp`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Seccomp {
    /// No filter: the default of [`ServerConfig::new`](super::ServerConfig::new), for servers
    /// started inside another program (the filter would confine that program too).
    #[default]
    Off,
    /// The filter, when the kernel takes it; where it does not (no seccomp, an architecture
    /// the filter is not built for) the server starts without and says so in a warning and
    /// in `stats` (`sandbox = off (…)`). The default of `gridos ftpd`.
    On,
    /// The filter, or no server: [`super::Server::start`] fails when it cannot be installed.
    Required,
}

impl Seccomp {
    /// The value as `ftp.seccomp` shows it: `true`, `false` or `required`.
    pub fn as_str(self) -> &'static str {
        match self {
            Seccomp::Off => "false",
            Seccomp::On => "true",
            Seccomp::Required => "required",
        }
    }
}

impl std::fmt::Display for Seccomp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Seccomp {
    type Err = Error;
    fn from_str(s: &str) -> Result<Seccomp> {
        match s.trim().to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Ok(Seccomp::On),
            "false" | "off" | "no" | "0" => Ok(Seccomp::Off),
            "required" => Ok(Seccomp::Required),
            other => Err(Error::Config(format!(
                "seccomp: {other:?} is not true, false or required"
            ))),
        }
    }
}

/// The sandbox in force, as `stats` reports it (`sandbox = …`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SandboxState {
    /// Not asked for.
    Off,
    /// The filter is installed; this many system calls are allowed.
    Seccomp {
        /// Allowed system calls (those allowed only with some arguments included).
        syscalls: usize,
    },
    /// Asked for (`seccomp = true`) but the kernel or the platform refused: why.
    Unavailable(String),
}

impl std::fmt::Display for SandboxState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SandboxState::Off => f.write_str("off"),
            SandboxState::Seccomp { syscalls } => write!(f, "seccomp {syscalls} syscalls"),
            SandboxState::Unavailable(why) => write!(f, "off (seccomp unavailable: {why})"),
        }
    }
}

/// Why the filter could not be built or installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The filter is not built for this processor architecture.
    #[error("no seccomp filter for the {0} architecture")]
    Arch(&'static str),
    /// seccompiler refused the rules (a bug of ours).
    #[error("building the filter: {0}")]
    Build(#[source] seccompiler::BackendError),
    /// The kernel refused the filter (no seccomp, or TSYNC failed).
    #[error("installing the filter: {0}")]
    Install(#[source] seccompiler::Error),
}

/// One system call of the allow-list.
#[derive(Clone, Copy, Debug)]
pub struct Syscall {
    ident: &'static str,
    nr: i64,
}

impl Syscall {
    /// Its name (`openat2`).
    pub fn name(self) -> &'static str {
        self.ident.strip_prefix("SYS_").unwrap_or(self.ident)
    }

    /// Its number on this architecture.
    pub fn number(self) -> i64 {
        self.nr
    }
}

macro_rules! calls {
    ($($name:ident),* $(,)?) => {
        &[$(Syscall { ident: stringify!($name), nr: libc::$name as i64 }),*]
    };
}

/// A group of system calls allowed with any arguments, and why the server needs them.
#[derive(Debug)]
pub struct Group {
    /// Why they are allowed.
    pub why: &'static str,
    /// The calls.
    pub calls: &'static [Syscall],
}

/// The calls allowed with any arguments, by group.
pub const GROUPS: &[Group] = &[
    Group {
        why: "reading and writing descriptors: control and data connections (tokio-rustls \
              writes TLS records with writev), files, pipes, the log on stderr, the control \
              socket",
        calls: calls![
            SYS_read,
            SYS_write,
            SYS_writev,
            SYS_pread64,
            SYS_pwrite64,
            SYS_lseek,
            SYS_close,
        ],
    },
    Group {
        why: "files under the docroot, resolved with openat2(RESOLVE_IN_ROOT) beneath its fd: \
              RETR/STOR/APPE/STOU (openat2, openat), listings (getdents64, readlinkat for \
              symlinks), SIZE/MDTM/MLST (statx, newfstatat, fstat), the lock on an upload's \
              partial file (flock), renames of finished uploads and RNFR/RNTO (renameat; \
              renameat2 where glibc uses it), DELE/RMD (unlinkat), MKD (mkdirat), SITE CHMOD \
              (fchmod), MFMT (utimensat), ALLO and resumed uploads (fallocate, ftruncate); \
              checksums only read; tls-reload and a docroot change open files the same way",
        calls: calls![
            SYS_openat,
            SYS_openat2,
            SYS_fstat,
            SYS_newfstatat,
            SYS_statx,
            SYS_getdents64,
            SYS_readlinkat,
            SYS_flock,
            SYS_renameat,
            SYS_renameat2,
            SYS_unlinkat,
            SYS_mkdirat,
            SYS_fchmod,
            SYS_utimensat,
            SYS_fallocate,
            SYS_ftruncate,
        ],
    },
    Group {
        why: "the zero-copy data path of gridos-io and its fallbacks: splice through pooled \
              pipes (pipe2; F_SETPIPE_SZ below), sendfile (the splice path's file → socket), \
              copy_file_range (REST + STOR that starts from a copy of the existing file); \
              write-behind of large uploads (fstatfs: not on tmpfs; sync_file_range, \
              fadvise64)",
        calls: calls![
            SYS_splice,
            SYS_sendfile,
            SYS_copy_file_range,
            SYS_pipe2,
            SYS_fstatfs,
            SYS_sync_file_range,
            SYS_fadvise64,
        ],
    },
    Group {
        why: "the io_uring engine of gridos-io: one ring per I/O thread, made when the thread \
              first transfers (io_uring_setup), submission and completion (io_uring_enter). \
              io_uring_register is not allowed: the engine registers nothing, and the opcode \
              probe runs before the filter. See the module doc on what seccomp does not see",
        calls: calls![SYS_io_uring_setup, SYS_io_uring_enter],
    },
    Group {
        why: "TCP on sockets that exist or that the argument-checked socket() made: the \
              listeners and the control socket (accept4), passive data listeners for \
              PASV/EPSV/SPAS (bind, listen), active and third-party data connections for \
              PORT/EPRT/SPOR (connect, from the control connection's local address), \
              addresses for replies and the data policy (getsockname, getpeername), data, TLS \
              records and MODE E headers with MSG_MORE (sendto, recvfrom), buffers, \
              TCP_NODELAY and TCP_INFO for the buffer monitor (setsockopt, getsockopt; \
              SO_SNDBUFFORCE with --keep-net-admin), half-closes (shutdown)",
        calls: calls![
            SYS_accept4,
            SYS_bind,
            SYS_listen,
            SYS_connect,
            SYS_getsockname,
            SYS_getpeername,
            SYS_setsockopt,
            SYS_getsockopt,
            SYS_sendto,
            SYS_recvfrom,
            SYS_shutdown,
        ],
    },
    Group {
        why: "tokio's reactor and the readiness waits of gridos-io: epoll, the eventfd that \
              wakes a runtime; epoll_pwait and ppoll are what glibc's epoll_wait and poll \
              become where the older calls do not exist (aarch64)",
        calls: calls![
            SYS_epoll_create1,
            SYS_epoll_ctl,
            SYS_epoll_pwait,
            SYS_eventfd2,
            SYS_ppoll,
        ],
    },
    Group {
        why: "threads and their synchronisation: locks and condition variables (futex), \
              thread start-up in glibc and Rust's std (set_robust_list, rseq, sigaltstack, \
              the signal mask around clone, sched_getaffinity), yields, thread and process \
              exit; clone itself is checked below and clone3 is answered ENOSYS",
        calls: calls![
            SYS_futex,
            SYS_set_robust_list,
            SYS_rseq,
            SYS_sigaltstack,
            SYS_rt_sigprocmask,
            SYS_sched_getaffinity,
            SYS_sched_yield,
            SYS_exit,
            SYS_exit_group,
            SYS_clone3,
        ],
    },
    Group {
        why: "memory for the allocator (brk, and mremap when glibc grows a large block), \
              thread stacks and io_uring's rings (mmap and mprotect are checked below: never \
              executable)",
        calls: calls![SYS_munmap, SYS_mremap, SYS_madvise, SYS_brk],
    },
    Group {
        why: "time and sleeps (clock_gettime and gettimeofday are answered in user space by \
              the vDSO, not on every system; clock_nanosleep for the shutdown's waits), the \
              random numbers of rustls (getrandom), signals: the main thread of gridos ftpd \
              waits for SIGTERM/SIGINT with sigtimedwait, and a handler returns with \
              rt_sigreturn",
        calls: calls![
            SYS_clock_gettime,
            SYS_clock_getres,
            SYS_clock_nanosleep,
            SYS_gettimeofday,
            SYS_getrandom,
            SYS_rt_sigtimedwait,
            SYS_rt_sigreturn,
        ],
    },
    Group {
        why: "harmless queries of the process's own identity and capabilities (gridos-io asks \
              whether it holds CAP_NET_ADMIN before it forces socket buffers)",
        calls: calls![
            SYS_getpid,
            SYS_gettid,
            SYS_getuid,
            SYS_geteuid,
            SYS_getgid,
            SYS_getegid,
            SYS_capget,
        ],
    },
];

/// x86_64 keeps older calls that glibc still uses for some wrappers there.
#[cfg(target_arch = "x86_64")]
const LEGACY: Group = Group {
    why: "x86_64 only: older calls glibc and mio still make there (unlink of the control \
          socket at shutdown, poll for a socket's readiness in gridos-io and MODE E, \
          epoll_wait in tokio's reactor)",
    calls: calls![SYS_unlink, SYS_poll, SYS_epoll_wait],
};
#[cfg(not(target_arch = "x86_64"))]
const LEGACY: Group = Group {
    why: "x86_64 only",
    calls: &[],
};

/// Calls allowed only with some arguments: the name and what is checked.
pub const RESTRICTED: &[(&str, &str)] = &[
    (
        "clone",
        "threads only: the flags must include CLONE_THREAD (which needs CLONE_VM and \
         CLONE_SIGHAND), so no process can be created",
    ),
    (
        "socket",
        "AF_INET and AF_INET6 SOCK_STREAM (data connections and passive listeners), and \
         AF_INET SOCK_DGRAM: where /proc/sys is out of sight (a chroot, a network namespace \
         other than the first) gridos-io measures net.core.[rw]mem_max on a throw-away UDP \
         socket, never bound or sent on, for the buffer monitor and SBUF. No raw, packet, \
         netlink or unix sockets (socketpair below aside)",
    ),
    (
        "socketpair",
        "AF_UNIX only: the wake-up pairs of MODE E transfers (gridos-ftp blocks)",
    ),
    (
        "mmap",
        "never PROT_EXEC (memory for the allocator, thread stacks, io_uring rings)",
    ),
    ("mprotect", "never PROT_EXEC (guard pages of thread stacks)"),
    (
        "ioctl",
        "FIONBIO (non-blocking sockets), FIONREAD (bytes waiting), FIOCLEX",
    ),
    (
        "fcntl",
        "F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_DUPFD_CLOEXEC, F_SETPIPE_SZ, F_GETPIPE_SZ",
    ),
    ("prctl", "PR_SET_NAME and PR_GET_NAME (thread names)"),
    (
        "tgkill",
        "to the server's own threads only (abort(), which raises SIGABRT)",
    ),
];

fn cond(arg: u8, len: SeccompCmpArgLen, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition> {
    SeccompCondition::new(arg, len, op, value).map_err(|e| SandboxError::Build(e).into())
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule> {
    SeccompRule::new(conds).map_err(|e| SandboxError::Build(e).into())
}

/// One rule per value: argument `arg` equal to one of `values` (32-bit comparison).
fn one_of(arg: u8, values: &[u64]) -> Result<Vec<SeccompRule>> {
    values
        .iter()
        .map(|&v| {
            rule(vec![cond(
                arg,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                v,
            )?])
        })
        .collect()
}

/// Argument `arg` without PROT_EXEC.
fn not_exec(arg: u8) -> Result<Vec<SeccompRule>> {
    Ok(vec![rule(vec![cond(
        arg,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64),
        0,
    )?])?])
}

// The ioctl numbers are u64 on glibc targets, not on every libc: the casts stay.
#[allow(clippy::unnecessary_cast)]
fn restricted_rules(pid: u32) -> Result<Vec<(i64, Vec<SeccompRule>)>> {
    use SeccompCmpArgLen::{Dword, Qword};
    let thread = libc::CLONE_THREAD as u64;
    let sock = |domain: i32, ty: i32| -> Result<SeccompRule> {
        rule(vec![
            cond(0, Dword, SeccompCmpOp::Eq, domain as u64)?,
            // The low bits are the type; SOCK_NONBLOCK and SOCK_CLOEXEC may be or'ed in.
            cond(1, Dword, SeccompCmpOp::MaskedEq(0xf), ty as u64)?,
        ])
    };
    Ok(vec![
        (
            libc::SYS_clone,
            vec![rule(vec![cond(
                0,
                Qword,
                SeccompCmpOp::MaskedEq(thread),
                thread,
            )?])?],
        ),
        (
            libc::SYS_socket,
            vec![
                sock(libc::AF_INET, libc::SOCK_STREAM)?,
                sock(libc::AF_INET6, libc::SOCK_STREAM)?,
                sock(libc::AF_INET, libc::SOCK_DGRAM)?,
            ],
        ),
        (libc::SYS_socketpair, one_of(0, &[libc::AF_UNIX as u64])?),
        (libc::SYS_mmap, not_exec(2)?),
        (libc::SYS_mprotect, not_exec(2)?),
        (
            libc::SYS_ioctl,
            one_of(
                1,
                &[
                    libc::FIONBIO as u64,
                    libc::FIONREAD as u64,
                    libc::FIOCLEX as u64,
                ],
            )?,
        ),
        (
            libc::SYS_fcntl,
            one_of(
                1,
                &[
                    libc::F_GETFD as u64,
                    libc::F_SETFD as u64,
                    libc::F_GETFL as u64,
                    libc::F_SETFL as u64,
                    libc::F_DUPFD_CLOEXEC as u64,
                    libc::F_SETPIPE_SZ as u64,
                    libc::F_GETPIPE_SZ as u64,
                ],
            )?,
        ),
        (
            libc::SYS_prctl,
            one_of(0, &[libc::PR_SET_NAME as u64, libc::PR_GET_NAME as u64])?,
        ),
        (libc::SYS_tgkill, one_of(0, &[u64::from(pid)])?),
    ])
}

/// Every allowed system call by name (those allowed only with some arguments included;
/// `clone3`, which the second filter answers `ENOSYS`, left out), sorted.
pub fn allowed_syscalls() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = GROUPS
        .iter()
        .chain(std::iter::once(&LEGACY))
        .flat_map(|g| g.calls.iter())
        .map(|c| c.name())
        .filter(|n| *n != "clone3")
        .chain(RESTRICTED.iter().map(|(n, _)| *n))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn arch() -> Result<TargetArch> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| SandboxError::Arch(std::env::consts::ARCH).into())
}

/// The two programs: the allow-list (anything else kills the process) and the one that
/// answers `clone3` with `ENOSYS`.
fn programs() -> Result<[BpfProgram; 2]> {
    let arch = arch()?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = GROUPS
        .iter()
        .chain(std::iter::once(&LEGACY))
        .flat_map(|g| g.calls.iter())
        .map(|c| (c.nr, Vec::new()))
        .collect();
    rules.extend(restricted_rules(std::process::id())?);
    let allow = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        arch,
    )
    .and_then(BpfProgram::try_from)
    .map_err(SandboxError::Build)?;
    let clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .and_then(BpfProgram::try_from)
    .map_err(SandboxError::Build)?;
    Ok([allow, clone3])
}

/// Builds the filter and installs it on every thread of the process (TSYNC), for good:
/// what [`super::Server::start`] does with `seccomp` on, and what
/// `gridos ftpd --seccomp-selftest` tries forbidden calls under. Returns the number of
/// allowed system calls.
pub fn install() -> Result<usize> {
    let [allow, clone3] = programs()?;
    // glibc sets up threading once, at the first pthread_create of a process: it installs
    // its internal SIGSETXID handler with rt_sigaction, which the filter forbids (no
    // signal handler changes after start-up). A thread started and joined here does that
    // set-up before the filter, for a process that has started no thread yet.
    std::thread::Builder::new()
        .name("ftpd-sandbox".into())
        .spawn(|| ())
        .map_err(|e| Error::io("starting a thread before the seccomp filter", e))?
        .join()
        .map_err(|_| Error::Config("a thread before the seccomp filter panicked".into()))?;
    // The clone3 filter first: once the allow-list is in, installing another filter
    // (seccomp(2)) is itself forbidden.
    for p in [&clone3, &allow] {
        seccompiler::apply_filter_all_threads(p).map_err(SandboxError::Install)?;
    }
    Ok(allowed_syscalls().len())
}

/// Applies the configured mode at start-up: the state to report, or an error when the
/// filter is required and cannot be installed.
pub(crate) fn enter(mode: Seccomp) -> Result<SandboxState> {
    if mode == Seccomp::Off {
        tracing::info!("ftpd: sandbox off (seccomp = false)");
        return Ok(SandboxState::Off);
    }
    match install() {
        Ok(n) => {
            tracing::info!(
                syscalls = n,
                "ftpd: sandbox: seccomp filter installed ({n} system calls allowed; any other kills the server, logged by the kernel's audit)"
            );
            Ok(SandboxState::Seccomp { syscalls: n })
        }
        Err(e) if mode == Seccomp::Required => Err(e),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "ftpd: SANDBOX OFF: the seccomp filter could not be installed, the server runs unconfined (seccomp = \"required\" refuses to start instead)"
            );
            Ok(SandboxState::Unavailable(e.to_string()))
        }
    }
}

impl From<SandboxError> for Error {
    fn from(e: SandboxError) -> Error {
        Error::Sandbox(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The filter builds for this architecture, and the list holds the calls the server
    /// cannot do without and none of those it must never make.
    #[test]
    fn filter_builds_and_keeps_dangerous_calls_out() {
        let [allow, clone3] = programs().unwrap();
        assert!(allow.len() < 4096 && !clone3.is_empty(), "{}", allow.len());
        let names = allowed_syscalls();
        for must in [
            "io_uring_enter",
            "splice",
            "openat2",
            "accept4",
            "futex",
            "clone",
        ] {
            assert!(names.contains(&must), "{must} missing");
        }
        for never in [
            "execve",
            "execveat",
            "fork",
            "vfork",
            "ptrace",
            "mount",
            "chroot",
            "setuid",
            "bpf",
            "kexec_load",
            "init_module",
            "keyctl",
            "personality",
            "clone3",
            "rt_sigaction",
            "kill",
        ] {
            assert!(!names.contains(&never), "{never} allowed");
        }
        assert!(names.len() > 60, "{}", names.len());
    }

    #[test]
    fn modes_parse_and_show() {
        for (text, mode) in [
            ("true", Seccomp::On),
            ("on", Seccomp::On),
            ("false", Seccomp::Off),
            ("required", Seccomp::Required),
        ] {
            let m: Seccomp = text.parse().unwrap();
            assert_eq!(m, mode);
            assert_eq!(m.as_str().parse::<Seccomp>().unwrap(), mode);
        }
        assert!("sometimes".parse::<Seccomp>().is_err());
        assert_eq!(
            SandboxState::Seccomp { syscalls: 90 }.to_string(),
            "seccomp 90 syscalls"
        );
        assert_eq!(SandboxState::Off.to_string(), "off");
    }
}
