//! The C programs under `tests/c/` (one per area of the API), compiled with the system `cc`
//! as C99 against the committed header and the library this test run built — once linked
//! to `libgridos.so`, once to `libgridos.a` — and run; with valgrind as well (no invalid
//! access, no definitely lost bytes). With `CI=true` a missing compiler or valgrind is a
//! failure; elsewhere the valgrind runs are skipped with a message.
//!
//! A program gets its scratch directory in `GRIDOS_TEST_DIR` and prints what it checks; it
//! exits 0 only when every check held.

use std::path::{Path, PathBuf};
use std::process::Command;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

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

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
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
    let lib = lib_dir();
    let shared_lib = shared_dir(out);
    let src = manifest_dir().join("tests/c").join(format!("{name}.c"));
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
        .arg(&src);
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

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    text
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
    let tmp = tempfile::tempdir().unwrap();
    let [shared, fixed] = build(name, tmp.path());
    for exe in [&shared, &fixed] {
        let scratch = tempfile::tempdir().unwrap();
        let text = run_ok(
            Command::new(exe).env("GRIDOS_TEST_DIR", scratch.path()),
            &exe.display().to_string(),
        );
        println!("{text}");
    }
    if valgrind() {
        let scratch = tempfile::tempdir().unwrap();
        let text = run_ok(
            Command::new("valgrind")
                .args([
                    "--error-exitcode=99",
                    "--leak-check=full",
                    "--errors-for-leak-kinds=definite",
                    "--show-leak-kinds=definite",
                    "-q",
                ])
                .arg(&shared)
                .env("GRIDOS_TEST_DIR", scratch.path()),
            &format!("valgrind {}", shared.display()),
        );
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

#[test]
fn io() {
    run_program("io");
}
