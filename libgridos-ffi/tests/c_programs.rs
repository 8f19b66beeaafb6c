//! The C programs under `tests/c/` (one per area of the API), compiled with the system `cc`
//! as C99 against the committed header and the library this test run built — once linked
//! to `libgridos.so`, once to `libgridos.a` — and run; with valgrind as well (no invalid
//! access, no definitely lost bytes; `tests/c/valgrind.supp` lists the reports that are
//! not ours, each with its reason). With `CI=true` a missing compiler or valgrind is a
//! failure; elsewhere the valgrind runs are skipped with a message.
//!
//! A program gets its scratch directory in `GRIDOS_TEST_DIR` and prints what it checks; it
//! exits 0 only when every check held.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;
use util::{in_ci, manifest_dir, run_ok};

/// `libgridos.so` and `libgridos.a`, built for these tests. `cargo test` links the
/// tests to the rlib and leaves the C libraries as they were, so they are built here, once
/// per run, with the `ffi-test` profile (its own directory, so no wait on this run's lock).
fn lib_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/<test> → target/
        let target = exe.ancestors().nth(3).unwrap().to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["build", "-p", "libgridos-ffi", "--profile", "ffi-test"])
            .arg("--target-dir")
            .arg(&target)
            .current_dir(manifest_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "building libgridos: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = target.join("ffi-test");
        for lib in ["libgridos.so", "libgridos.a"] {
            assert!(
                dir.join(lib).exists(),
                "{lib} not built in {}",
                dir.display()
            );
        }
        dir
    })
    .clone()
}

/// The soname's ABI suffix, by cargo-c's rule (as build.rs sets it): `0.y` for 0.y
/// versions, else the major.
fn abi() -> String {
    let mut v = env!("CARGO_PKG_VERSION").split('.');
    match (v.next(), v.next()) {
        (Some("0"), Some(minor)) => format!("0.{minor}"),
        (Some(major), _) => major.to_string(),
        _ => "0".into(),
    }
}

/// A directory where the shared library is found as the dynamic linker will look for it
/// (`libgridos.so.ABI`, with `libgridos.so` beside it for `-lgridos`).
fn shared_dir(out: &Path) -> PathBuf {
    let dir = out.join("lib");
    std::fs::create_dir_all(&dir).unwrap();
    let real = lib_dir().join("libgridos.so");
    for name in [format!("libgridos.so.{}", abi()), "libgridos.so".into()] {
        let link = dir.join(name);
        if !link.exists() {
            std::os::unix::fs::symlink(&real, &link).unwrap();
        }
    }
    dir
}

/// Compiles `tests/c/NAME.c` both ways; the two executables.
pub fn build(name: &str, out: &Path) -> [PathBuf; 2] {
    build_source(
        &manifest_dir().join("tests/c").join(format!("{name}.c")),
        name,
        out,
    )
}

/// Compiles `src` both ways into `out`; the two executables (shared, static).
fn build_source(src: &Path, name: &str, out: &Path) -> [PathBuf; 2] {
    let lib = lib_dir();
    let shared_lib = shared_dir(out);
    let common = |cmd: &mut Command| {
        cmd.args([
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-g",
            "-O1",
        ])
        .arg("-I")
        .arg(manifest_dir().join("include"))
        .arg(src);
    };
    let shared = out.join(format!("{name}-shared"));
    let mut cmd = Command::new("cc");
    common(&mut cmd);
    cmd.arg("-o")
        .arg(&shared)
        .arg("-L")
        .arg(&shared_lib)
        .arg("-lgridos")
        .arg(format!("-Wl,-rpath,{}", shared_lib.display()));
    run_ok(&mut cmd, "cc (shared)");
    let fixed = out.join(format!("{name}-static"));
    let mut cmd = Command::new("cc");
    common(&mut cmd);
    cmd.arg("-o")
        .arg(&fixed)
        .arg(lib.join("libgridos.a"))
        .args(["-lpthread", "-ldl", "-lm", "-lrt", "-lutil", "-lgcc_s"]);
    run_ok(&mut cmd, "cc (static)");
    [shared, fixed]
}

fn valgrind() -> bool {
    let ok = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !in_ci(),
            "valgrind is missing in CI (apt-get install valgrind)"
        );
        eprintln!("SKIPPED valgrind runs: valgrind not installed");
    }
    ok
}

/// Builds and runs one C program both ways, and the shared build under valgrind.
pub fn run_program(name: &str) {
    run_program_with(name, |_, _| (Vec::new(), ()));
}

/// Like [`run_program`], with a fixture per run: before each of the three runs
/// `setup(scratch, under_valgrind)` returns the program's extra environment (e.g. a
/// daemon's socket) and a guard, dropped when that run has ended.
pub fn run_program_with<G>(
    name: &str,
    mut setup: impl FnMut(&Path, bool) -> (Vec<(String, String)>, G),
) {
    let tmp = tempfile::tempdir().unwrap();
    let [shared, fixed] = build(name, tmp.path());
    for exe in [&shared, &fixed] {
        let scratch = tempfile::tempdir().unwrap();
        let (env, guard) = setup(scratch.path(), false);
        let text = run_ok(
            Command::new(exe)
                .env("GRIDOS_TEST_DIR", scratch.path())
                .envs(env),
            &exe.display().to_string(),
        );
        drop(guard);
        println!("{text}");
    }
    if valgrind() {
        let suppressions = manifest_dir().join("tests/c/valgrind.supp");
        let scratch = tempfile::tempdir().unwrap();
        let (env, guard) = setup(scratch.path(), true);
        let text = run_ok(
            Command::new("valgrind")
                .args([
                    "--error-exitcode=99",
                    "--leak-check=full",
                    "--errors-for-leak-kinds=definite",
                    "--show-leak-kinds=definite",
                    "-q",
                ])
                .arg(format!("--suppressions={}", suppressions.display()))
                .arg(&shared)
                .env("GRIDOS_TEST_DIR", scratch.path())
                .envs(env),
            &format!("valgrind {}", shared.display()),
        );
        drop(guard);
        println!("{text}");
    }
}

#[test]
fn init() {
    run_program("init");
}

#[test]
fn config() {
    run_program("config");
}

/// The ABI from Python: ctypes loads libgridos.so and copies a file.
#[test]
fn python_ctypes() {
    let scratch = tempfile::tempdir().unwrap();
    let script = manifest_dir().join("tests/ctypes_smoke.py");
    let text = run_ok(
        Command::new("python3")
            .arg(script)
            .arg(lib_dir().join("libgridos.so"))
            .arg(scratch.path()),
        "python3 ctypes_smoke.py",
    );
    assert!(text.contains("ctypes ok"), "{text}");
}

/// The paper's Scenario 1 (`examples/scenario1.c`) builds and runs: a server started with
/// the C API, a file there and back, byte for byte.
#[test]
fn scenario1_example() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = build_source(
        &manifest_dir().join("examples/scenario1.c"),
        "scenario1",
        tmp.path(),
    )[0]
    .clone();
    let text = run_ok(Command::new(&exe).args(["8"]).arg(tmp.path()), "scenario1");
    assert!(
        text.contains("verified: identical") && text.contains("MB/s"),
        "{text}"
    );
}

/// The README's C example compiles (as C99, warnings are errors).
#[test]
fn readme_example_compiles() {
    let readme = std::fs::read_to_string(manifest_dir().join("README.md")).unwrap();
    let code = readme
        .split("```c\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```c block in README.md");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("readme.c");
    std::fs::write(&src, code).unwrap();
    build_source(&src, "readme", tmp.path());
}

// ------------------------------------------------------------------------------------------
// Node daemons for tests/c/node.c

/// A node daemon (gridos-pm) running in this test process on its own runtime.
struct Daemon {
    rt: Option<tokio::runtime::Runtime>,
    procs: std::sync::Arc<gridos_pm::procs::Procs>,
    sock: PathBuf,
}

impl Daemon {
    fn start(
        dir: &Path,
        id: &str,
        key: &[u8],
        listen: Option<std::net::SocketAddr>,
        peers: Vec<(gridos_pm::NodeId, std::net::SocketAddr)>,
    ) -> Daemon {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut cfg = gridos_pm::node::NodeConfig::new(id.parse().unwrap());
        cfg.ctl_socket = dir.join(format!("{id}.sock"));
        cfg.state_dir = dir.join(format!("state-{id}"));
        cfg.key = Some(key.to_vec());
        cfg.listen = listen;
        cfg.peers = peers;
        let sock = cfg.ctl_socket.clone();
        let node = rt.block_on(gridos_pm::node::start(cfg)).unwrap();
        // Only the process table is kept: the node itself lives in the runtime's tasks, so
        // ending the runtime closes every connection of the node.
        let procs = node.procs().clone();
        drop(node);
        Daemon {
            rt: Some(rt),
            procs,
            sock,
        }
    }

    fn info(&self) -> gridos_pm::proto::NodeInfo {
        let rt = self.rt.as_ref().expect("running");
        rt.block_on(async {
            let c = gridos_pm::Client::connect_unix(&self.sock).await.unwrap();
            c.hello().await.unwrap()
        })
    }

    /// Ends the daemon as a crash would, for its peers: every connection closes at once.
    /// What it still ran is killed (its children outlive it here, inside this process).
    fn stop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        }
        for p in self.procs.list() {
            if p.state == "running" {
                let _ = self.procs.signal(&p.gpid, 9);
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Two daemons, `a` (the program connects to it) peering with `b` (its target node), and a
/// watcher that stops `b` as soon as a process `sleep 31` runs there: node.c's NODE_LOST case.
struct NodePair {
    a: Daemon,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
}

impl Drop for NodePair {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(w) = self.watcher.take() {
            w.join().unwrap();
        }
        self.a.stop();
    }
}

fn node_pair(scratch: &Path, _under_valgrind: bool) -> (Vec<(String, String)>, NodePair) {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    // Children of a root daemon run as nobody and start in the program's directory.
    std::fs::set_permissions(scratch, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Unique ids: a root daemon names its cgroups after its node id.
    static RUN: AtomicUsize = AtomicUsize::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let tag = format!("cffi{}x{run}", std::process::id());
    let (a_id, b_id) = (format!("{tag}a"), format!("{tag}b"));
    let key = gridos_pm::auth::random_hex(32).into_bytes();
    let mut b = Daemon::start(
        scratch,
        &b_id,
        &key,
        Some("127.0.0.1:0".parse().unwrap()),
        vec![],
    );
    let b_addr = b.info().listen.unwrap().parse().unwrap();
    let a = Daemon::start(
        scratch,
        &a_id,
        &key,
        None,
        vec![(b_id.parse().unwrap(), b_addr)],
    );
    let t0 = std::time::Instant::now();
    while !a.info().peers.iter().all(|p| p.state == "up") {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(15),
            "peer link {a_id} -> {b_id} did not come up"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let watcher = std::thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            let doomed = b.procs.list().into_iter().any(|p| {
                p.state == "running" && p.argv.iter().map(String::as_str).eq(["sleep", "31"])
            });
            if doomed {
                b.stop();
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    });
    let env = vec![
        ("GRIDOS_NODE".to_string(), a.sock.display().to_string()),
        ("GRIDOS_TEST_TARGET".to_string(), b_id),
    ];
    (
        env,
        NodePair {
            a,
            stop,
            watcher: Some(watcher),
        },
    )
}

/// tests/c/node.c against two node daemons started here: spawn, wait, kill, accounting,
/// resources, reservations, a remote target node, bad input, and the target node lost
/// while a process runs there.
#[test]
fn node() {
    run_program_with("node", node_pair);
}

/// The middleware programs under valgrind: valgrind 3.19 does not know openat2(2), with
/// which the FTP server resolves every path, so there a program runs its server (started
/// with the same C calls) in a child process valgrind does not trace
/// (`GRIDOS_TEST_SERVER_CHILD`); the client side stays under valgrind.
fn run_middleware_program(name: &str) {
    run_program_with(name, |_, under_valgrind| {
        let env = if under_valgrind {
            vec![("GRIDOS_TEST_SERVER_CHILD".to_string(), "1".to_string())]
        } else {
            Vec::new()
        };
        (env, ())
    });
}

#[test]
fn server() {
    run_middleware_program("server");
}

#[test]
fn copy() {
    run_middleware_program("copy");
}

#[test]
fn gfile() {
    run_middleware_program("gfile");
}

#[test]
fn cache() {
    run_middleware_program("cache");
}

#[test]
fn io() {
    run_program("io");
}

// ------------------------------------------------------------------------------------------
// Certificates for tests/c/tls.c

/// PEM files made with rcgen for tests/c/tls.c: a CA, a server certificate for 127.0.0.1
/// and localhost, a client certificate `/C=XX/O=Grid/CN=Jane Doe` and a grid-mapfile that
/// maps it to `jdoe`, all signed by the CA; and another CA standing for the system's roots
/// (`SSL_CERT_FILE`), which did not sign the server's certificate — so "not trusted by the
/// system" does not depend on what this machine has installed.
struct TlsFiles {
    dir: tempfile::TempDir,
}

impl TlsFiles {
    fn new() -> TlsFiles {
        use rcgen::{
            BasicConstraints, CertificateParams, DistinguishedName, DnType,
            ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        let dir = tempfile::Builder::new()
            .prefix("gridos-ffi-tls-")
            .tempdir()
            .unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        let dn = |parts: &[(DnType, &str)]| {
            let mut dn = DistinguishedName::new();
            for (t, v) in parts {
                dn.push(t.clone(), *v);
            }
            dn
        };
        let ca = |cn: &str, file: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            p.distinguished_name =
                dn(&[(DnType::OrganizationName, "Grid"), (DnType::CommonName, cn)]);
            write(file, p.self_signed(&key).unwrap().pem());
            Issuer::new(p, key)
        };
        let issuer = ca("gridos test CA", "ca.pem");
        ca("gridos test: the system's roots", "system-roots.pem");
        let sign = |p: CertificateParams, name: &str| {
            let key = KeyPair::generate().unwrap();
            write(
                &format!("{name}.pem"),
                p.signed_by(&key, &issuer).unwrap().pem(),
            );
            write(&format!("{name}-key.pem"), key.serialize_pem());
        };
        let mut server =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        server.distinguished_name = dn(&[
            (DnType::OrganizationName, "Grid"),
            (DnType::CommonName, "127.0.0.1"),
        ]);
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        sign(server, "server");
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client.distinguished_name = dn(&[
            (DnType::CountryName, "XX"),
            (DnType::OrganizationName, "Grid"),
            (DnType::CommonName, "Jane Doe"),
        ]);
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        sign(client, "jane");
        write("grid-mapfile", "\"/C=XX/O=Grid/CN=Jane Doe\" jdoe\n".into());
        TlsFiles { dir }
    }

    /// The environment tests/c/tls.c reads.
    fn env(&self) -> Vec<(String, String)> {
        let at = |name: &str| self.dir.path().join(name).display().to_string();
        [
            ("GRIDOS_TEST_CA", at("ca.pem")),
            ("GRIDOS_TEST_TLS_CERT", at("server.pem")),
            ("GRIDOS_TEST_TLS_KEY", at("server-key.pem")),
            ("GRIDOS_TEST_CLIENT_CERT", at("jane.pem")),
            ("GRIDOS_TEST_CLIENT_KEY", at("jane-key.pem")),
            ("GRIDOS_TEST_GRID_MAPFILE", at("grid-mapfile")),
            // rustls-native-certs reads only these when one is set (an empty directory
            // list counts as none).
            ("SSL_CERT_FILE", at("system-roots.pem")),
            ("SSL_CERT_DIR", String::new()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// tests/c/tls.c: a server with `tls=required` and the certificate made here, started with
/// the C API; ftpes://, ftp:// with `tls` and gridftp:// copies with `tls.cacert` compared
/// byte for byte; `GRIDOS_ERR_TLS` naming the unknown issuer without it, `tls.insecure`,
/// a client-certificate login, TLS required against a server without it, and the
/// options and server keys refused.
#[test]
fn tls() {
    let files = TlsFiles::new();
    run_program_with("tls", |_, under_valgrind| {
        let mut env = files.env();
        if under_valgrind {
            env.push(("GRIDOS_TEST_SERVER_CHILD".to_string(), "1".to_string()));
        }
        (env, ())
    });
}
