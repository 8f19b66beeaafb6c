//! `gridos ftpd` under its seccomp filter (on by default), through the binary: every
//! thread of the server shows `Seccomp: 2`, `stats` says `sandbox = seccomp N syscalls`,
//! and what the server does after start-up still works under the filter — downloads and
//! uploads in passive and active mode, MODE E with four streams and checksums, listings of
//! a tree, MFMT, a password login over TLS and a reload of the certificate through the
//! control socket, a server-to-server copy between two confined servers, a resize of the
//! listener pool, log lines, and SIGTERM (exit 0). `--no-seccomp` runs without the filter;
//! `--seccomp-selftest` makes forbidden calls under the same filter and each is refused.
//! As root (as in CI) the servers also chroot and run as `nobody`, so the filter is
//! installed after the privilege drop, as in production. Bytes checked by SHA-256.

mod tls_fixtures;
mod util;

use std::cell::RefCell;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use tls_fixtures::Pki;
use util::{gridos, is_root, make_tree, random_bytes, sha256, sha256_file, tree};

const GRIDOS: &str = env!("CARGO_BIN_EXE_gridos");
const PASSWORD: &str = "s3cret pass";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `gridos ftpd` on `ip` serving a fresh docroot to anonymous users (with write) and to
/// alice (password file), with a control socket and a log file; killed on drop.
struct Ftpd {
    /// In a cell: [`Ftpd::alive`] looks at it while URLs of the same server are borrowed.
    child: RefCell<Child>,
    addr: SocketAddr,
    root: PathBuf,
    ctl: PathBuf,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Ftpd {
    fn start(ip: [u8; 4], extra: &[&str]) -> Ftpd {
        let dir = tempfile::tempdir().unwrap();
        // As root the server chroots to the docroot and runs as nobody: it must be able to
        // traverse to it and write in it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
        let passwd = dir.path().join("users");
        let mut p = Command::new(GRIDOS)
            .arg("passwd")
            .arg(&passwd)
            .arg("alice")
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::io::Write::write_all(
            &mut p.stdin.take().unwrap(),
            format!("{PASSWORD}\n").as_bytes(),
        )
        .unwrap();
        assert!(p.wait().unwrap().success());
        let ctl = dir.path().join("ctl.sock");
        let log = dir.path().join("ftpd.log");
        let listen = SocketAddr::from((ip, 0)).to_string();
        let mut child = Command::new(GRIDOS)
            .args([
                "-v",
                "ftpd",
                "--anonymous",
                "--anonymous-write",
                "--listen",
                &listen,
            ])
            .args(["--docroot", s(&root), "--passwd", s(&passwd)])
            .args(["--ctl-socket", s(&ctl), "--tls", "optional"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line.trim().rsplit(' ').next().and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            panic!(
                "gridos ftpd printed no address: {line:?}; log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        Ftpd {
            child: RefCell::new(child),
            addr,
            root,
            ctl,
            log,
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test, with the log and the kernel's word on it, if the server has died
    /// (a system call missing from the filter kills it with SIGSYS).
    fn alive(&self, after: &str) {
        if let Some(st) = self.child.borrow_mut().try_wait().unwrap() {
            panic!(
                "gridos ftpd died after {after}: {st} (SIGSYS: a system call the filter does \
                 not allow); kernel: {}; log: {}",
                audit_lines(),
                self.log()
            );
        }
    }

    fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}/{path}", self.addr)
    }

    fn alice(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://alice:s3cret%20pass@{}/{path}", self.addr)
    }

    fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new(GRIDOS)
            .args(["ctl", "--socket", s(&self.ctl)])
            .args(args)
            .output()
            .unwrap();
        // Values on stdout, notes (`ctl: reloaded …`) on stderr.
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "gridos ctl {args:?}: {text}");
        text
    }

    /// Each thread's name and `Seccomp:` value (0 none, 2 filter).
    fn threads(&self) -> Vec<(String, String)> {
        let task = format!("/proc/{}/task", self.child.borrow().id());
        std::fs::read_dir(&task)
            .unwrap()
            .filter_map(|e| {
                let p = e.ok()?.path();
                let comm = std::fs::read_to_string(p.join("comm")).ok()?;
                let status = std::fs::read_to_string(p.join("status")).ok()?;
                let mode = status
                    .lines()
                    .find_map(|l| l.strip_prefix("Seccomp:"))?
                    .trim()
                    .to_string();
                Some((comm.trim().to_string(), mode))
            })
            .collect()
    }

    /// SIGTERM; the exit status (within 30 s) and the log (the directory goes with `self`).
    fn term(self) -> (std::process::ExitStatus, String) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.borrow().id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.borrow_mut().try_wait().unwrap() {
                return (st, self.log());
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "ftpd ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Ftpd {
    fn drop(&mut self) {
        let c = self.child.get_mut();
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The kernel's seccomp audit lines, when this process may read the kernel log (for the
/// failure message only: rate-limited and not always readable).
fn audit_lines() -> String {
    Command::new("dmesg")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.contains("type=1326"))
                .rev()
                .take(3)
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .unwrap_or_default()
}

/// The thread name and `Seccomp:` line of every thread: all must be 2 (filter mode).
fn assert_confined(f: &Ftpd) -> usize {
    // A new thread names itself once it runs: give them a moment.
    let t = Instant::now();
    let mut threads = f.threads();
    while threads.iter().any(|(n, _)| n == "gridos") && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
        threads = f.threads();
    }
    for (name, mode) in &threads {
        assert_eq!(mode, "2", "thread {name} is not confined: {threads:?}");
    }
    for name in ["ftpd-accept", "ftpd-listener", "gridos-io"] {
        assert!(
            threads.iter().any(|(n, _)| n == name),
            "no {name} thread: {threads:?}"
        );
    }
    threads.len()
}

/// `gridos cp --json ARGS`, which must succeed; when it fails, a server of `servers` that
/// died (SIGSYS: a call missing from the filter) is named first.
fn cp(servers: &[&Ftpd], args: &[&str]) -> serde_json::Value {
    let mut all = vec!["cp", "--json"];
    all.extend_from_slice(args);
    let r = gridos(&all);
    if !r.status.success() {
        for f in servers {
            f.alive(&format!("gridos {all:?}"));
        }
    }
    r.ok()
}

#[test]
fn confined_server_serves_everything_and_stops_on_sigterm() {
    let pki = Pki::new("seccomp");
    // The buffer monitor samples every millisecond, so that even these short transfers run
    // it (TCP_INFO, buffer changes, the kernel's limits: in a chroot gridos-io measures them
    // on a throw-away UDP socket).
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = conf_dir.path().join("ftpd.toml");
    // Write-behind on for every upload, in the smallest windows, so that its calls
    // (fstatfs, sync_file_range, fadvise64) run under the filter too.
    std::fs::write(
        &conf,
        "[io]\nmonitor_interval_ms = 1\nwrite_behind = \"on\"\nwrite_behind_window = 1048576\n",
    )
    .unwrap();
    // On 127.0.0.1: the test certificate names 127.0.0.1 and localhost.
    let f = Ftpd::start(
        [127, 0, 0, 1],
        &[
            "--config",
            s(&conf),
            "--tls-cert",
            s(&pki.server.cert),
            "--tls-key",
            s(&pki.server.key),
        ],
    );
    f.alive("start-up");
    let n = assert_confined(&f);
    let stats = f.ctl(&["stats"]);
    let sandbox = stats
        .lines()
        .find_map(|l| l.strip_prefix("sandbox = "))
        .unwrap_or_else(|| panic!("no sandbox line in stats: {stats}"));
    println!("{n} threads confined; sandbox = {sandbox}");
    let count: usize = sandbox
        .strip_prefix("seccomp ")
        .and_then(|r| r.strip_suffix(" syscalls"))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("sandbox = {sandbox}"));
    assert!((60..200).contains(&count), "{sandbox}");
    assert_eq!(f.ctl(&["get", "ftp.seccomp"]).lines().next(), Some("true"));
    assert!(
        f.log().contains("sandbox: seccomp filter installed"),
        "{}",
        f.log()
    );

    let work = tempfile::tempdir().unwrap();
    let w = |name: &str| work.path().join(name);
    let data = random_bytes(5_000_011, 1);
    std::fs::write(f.root.join("down.bin"), &data).unwrap();
    std::fs::write(w("up.bin"), random_bytes(3_000_017, 2)).unwrap();

    // Stream mode: passive download, active (PORT/EPRT) download, upload.
    cp(&[&f], &[&f.url("ftp", "down.bin"), s(&w("got.bin"))]);
    assert_eq!(sha256_file(&w("got.bin")), sha256(&data));
    cp(
        &[&f],
        &["--active", &f.url("ftp", "down.bin"), s(&w("active.bin"))],
    );
    assert_eq!(sha256_file(&w("active.bin")), sha256(&data));
    cp(&[&f], &[s(&w("up.bin")), &f.url("ftp", "up.bin")]);
    assert_eq!(
        sha256_file(&f.root.join("up.bin")),
        sha256_file(&w("up.bin"))
    );
    f.alive("stream-mode transfers");

    // MODE E, four streams each way, checked by the server's CKSM.
    let j = cp(
        &[&f],
        &[
            "-p",
            "4",
            "--tcp-bs",
            "1048576",
            "--verify=SHA256",
            &f.url("gridftp", "down.bin"),
            s(&w("p4.bin")),
        ],
    );
    assert_eq!(sha256_file(&w("p4.bin")), sha256(&data), "{j}");
    cp(
        &[&f],
        &[
            "-p",
            "4",
            "--verify",
            s(&w("up.bin")),
            &f.url("gridftp", "up4.bin"),
        ],
    );
    assert_eq!(
        sha256_file(&f.root.join("up4.bin")),
        sha256_file(&w("up.bin"))
    );
    f.alive("MODE E transfers");

    // A tree: listings, MKD, uploads and downloads; modification times kept (MFMT).
    let t = w("tree");
    make_tree(&t);
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_300_000_000);
    std::fs::File::options()
        .write(true)
        .open(t.join("a/one.bin"))
        .unwrap()
        .set_modified(when)
        .unwrap();
    cp(&[&f], &["-r", "-t", s(&t), &f.url("ftp", "tree")]);
    assert_eq!(tree(&f.root.join("tree")), tree(&t));
    let mtime = std::fs::metadata(f.root.join("tree/a/one.bin"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(mtime, when, "MFMT did not set the time");
    cp(&[&f], &["-r", &f.url("ftp", "tree"), s(&w("back"))]);
    assert_eq!(tree(&w("back")), tree(&t));
    f.alive("tree transfers");

    // TLS: a password login, PROT P both ways; then the certificate reloaded through the
    // control socket (the files are read under the filter, inside the chroot as root).
    let ca = ["--cacert", s(&pki.ca)];
    cp(
        &[&f],
        &[
            ca[0],
            ca[1],
            &f.alice("ftpes", "down.bin"),
            s(&w("tls.bin")),
        ],
    );
    assert_eq!(sha256_file(&w("tls.bin")), sha256(&data));
    cp(
        &[&f],
        &[
            ca[0],
            ca[1],
            s(&w("up.bin")),
            &f.alice("ftpes", "tls-up.bin"),
        ],
    );
    assert_eq!(
        sha256_file(&f.root.join("tls-up.bin")),
        sha256_file(&w("up.bin"))
    );
    let certs = f.root.join("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::set_permissions(&certs, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (from, to) in [
        (&pki.server.cert, "server.pem"),
        (&pki.server.key, "server.key"),
    ] {
        std::fs::copy(from, certs.join(to)).unwrap();
        std::fs::set_permissions(certs.join(to), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let seen = |p: &str| {
        if is_root() {
            format!("/certs/{p}")
        } else {
            s(&certs.join(p)).to_string()
        }
    };
    f.ctl(&["set", "ftp.tls_cert", &seen("server.pem")]);
    f.ctl(&["set", "ftp.tls_key", &seen("server.key")]);
    let reload = f.ctl(&["tls-reload"]);
    assert!(reload.contains("reloaded"), "{reload}");
    cp(
        &[&f],
        &[
            ca[0],
            ca[1],
            &f.alice("ftpes", "down.bin"),
            s(&w("tls2.bin")),
        ],
    );
    assert_eq!(sha256_file(&w("tls2.bin")), sha256(&data));
    f.alive("TLS and tls-reload");

    // Server to server, between two confined servers (without TLS; on distinct loopback
    // addresses, so the data connection really comes from another host): stream mode
    // (PASV/PORT) and MODE E (SPAS/SPOR).
    let g = Ftpd::start([127, 0, 0, 3], &[]);
    let h = Ftpd::start([127, 0, 0, 4], &[]);
    std::fs::write(g.root.join("src.bin"), &data).unwrap();
    for (args, name) in [(vec![], "tp.bin"), (vec!["-p", "2"], "tp2.bin")] {
        let (src, dst) = (g.alice("ftp", "src.bin"), h.alice("ftp", name));
        let mut a = vec!["--no-relay"];
        a.extend(args);
        a.extend([src.as_str(), dst.as_str()]);
        let j = cp(&[&g, &h], &a);
        assert_eq!(j["third_party"], true, "{j}");
        assert_eq!(sha256_file(&h.root.join(name)), sha256(&data), "{name}");
    }
    g.alive("third-party transfers (source)");
    h.alive("third-party transfers (destination)");
    assert!(g.term().0.success() && h.term().0.success());

    // Live changes that start threads under the filter.
    f.ctl(&["set", "ftp.threads", "4"]);
    f.ctl(&["set", "io.threads", "6"]);
    cp(
        &[&f],
        &["-p", "4", &f.url("gridftp", "down.bin"), s(&w("after.bin"))],
    );
    assert_eq!(sha256_file(&w("after.bin")), sha256(&data));
    let m = assert_confined(&f);
    assert!(m > n, "no new thread after the resize: {n} then {m}");
    let refused = Command::new(GRIDOS)
        .args(["ctl", "--socket", s(&f.ctl), "set", "ftp.seccomp", "false"])
        .output()
        .unwrap();
    assert!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("read-only"),
        "{refused:?}"
    );
    f.alive("live changes");

    let (st, log) = f.term();
    assert!(st.success(), "{st} after SIGTERM; log: {log}");
    assert!(log.contains("ftpd: stopped"), "{log}");
}

#[test]
fn no_seccomp_runs_unconfined_and_says_so() {
    let f = Ftpd::start([127, 0, 0, 1], &["--no-seccomp"]);
    let threads = f.threads();
    assert!(threads.iter().all(|(_, m)| m == "0"), "{threads:?}");
    let stats = f.ctl(&["stats"]);
    assert!(stats.lines().any(|l| l == "sandbox = off"), "{stats}");
    assert_eq!(f.ctl(&["get", "ftp.seccomp"]).lines().next(), Some("false"));
    let data = random_bytes(100_000, 3);
    std::fs::write(f.root.join("d.bin"), &data).unwrap();
    let out = f.dir.path().join("d.bin");
    cp(&[&f], &[&f.url("ftp", "d.bin"), s(&out)]);
    assert_eq!(sha256_file(&out), sha256(&data));
    assert!(f.term().0.success());
}

/// `seccomp = "required"` in the configuration file starts (this kernel has seccomp) and
/// confines; `seccomp = false` there runs without.
#[test]
fn config_file_seccomp_key() {
    let dir = tempfile::tempdir().unwrap();
    for (value, mode, sandbox) in [("\"required\"", "2", "seccomp "), ("false", "0", "off")] {
        let conf = dir.path().join("ftpd.toml");
        std::fs::write(&conf, format!("[ftp]\nseccomp = {value}\n")).unwrap();
        let f = Ftpd::start([127, 0, 0, 1], &["--config", s(&conf)]);
        let threads = f.threads();
        assert!(
            threads.iter().all(|(_, m)| m == mode),
            "{value}: {threads:?}"
        );
        let stats = f.ctl(&["stats"]);
        assert!(
            stats
                .lines()
                .any(|l| l.starts_with(&format!("sandbox = {sandbox}"))),
            "{value}: {stats}"
        );
        assert!(f.term().0.success());
    }
}

/// The same filter (`sandbox::install`, as the server calls it) refuses what it must:
/// every forbidden call kills its probe process with SIGSYS, clone3 gets ENOSYS, and
/// threads, loopback TCP, file reads and io_uring still work.
#[test]
fn selftest_refuses_forbidden_calls() {
    let out = Command::new(GRIDOS)
        .args(["ftpd", "--seccomp-selftest"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(out.status.success(), "{}: {text}", out.status);
    for probe in [
        "execve",
        "execveat",
        "fork-clone",
        "ptrace",
        "mount",
        "chroot",
        "setuid",
        "bpf",
        "kexec_load",
        "init_module",
        "keyctl",
        "personality",
        "process_vm_readv",
        "mprotect-exec",
    ] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(probe))
            .unwrap_or_else(|| panic!("no {probe} line: {text}"));
        assert!(
            line.starts_with("ok ") && line.contains("killed (SIGSYS)"),
            "{line}"
        );
    }
    let clone3 = text.lines().find(|l| l.contains("fork-clone3")).unwrap();
    assert!(
        clone3.contains("refused") && clone3.contains("os error 38"),
        "{clone3}"
    );
    for allowed in ["thread", "tcp-loopback", "read-file", "io_uring"] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(allowed))
            .unwrap();
        assert!(
            line.starts_with("ok ") && line.contains("allowed"),
            "{line}"
        );
    }
    assert!(text.contains("Seccomp: 2"), "{text}");

    // One probe alone: the process is killed by the kernel, not by our judgement.
    let p = Command::new(GRIDOS)
        .args(["ftpd", "--seccomp-probe", "execve"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(p.status.signal(), Some(libc_sigsys()), "{p:?}");
    assert!(String::from_utf8_lossy(&p.stdout).contains("seccomp installed"));
}

fn libc_sigsys() -> i32 {
    nix::sys::signal::Signal::SIGSYS as i32
}
