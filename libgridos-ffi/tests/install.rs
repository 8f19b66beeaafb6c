//! `cargo cinstall` puts the header, both libraries and `gridos.pc` under a prefix, the
//! shared library has its soname, and a C program builds with
//! `cc app.c $(pkg-config --cflags --libs gridos)` and runs. Needs cargo-c (`cargo install
//! --locked cargo-c`, done by `.ci/run`) and pkg-config: with `CI=true` their absence fails
//! the test; elsewhere it is skipped with a message.

mod util;

use std::process::Command;
use util::{in_ci, manifest_dir, run_ok as run};

fn have(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

#[test]
fn cinstall_and_pkg_config() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tools = have(Command::new(&cargo).args(["cinstall", "--version"]))
        && have(Command::new("pkg-config").arg("--version"));
    if !tools {
        assert!(!in_ci(), "cargo-c or pkg-config is missing in CI");
        eprintln!("SKIPPED: cargo-c (cargo install --locked cargo-c) or pkg-config missing");
        return;
    }
    let manifest = manifest_dir();
    let prefix = tempfile::tempdir().unwrap();
    let p = prefix.path();
    // The dev-like profile of the C tests: the point is the install, not an optimised build.
    run(
        Command::new(&cargo)
            .args(["cinstall", "-p", "libgridos-ffi", "--profile", "ffi-test"])
            .arg("--prefix")
            .arg(p)
            .args(["--libdir", "lib"])
            .current_dir(manifest),
        "cargo cinstall",
    );
    for f in [
        "include/gridos.h",
        "lib/libgridos.a",
        "lib/libgridos.so",
        "lib/pkgconfig/gridos.pc",
    ] {
        assert!(p.join(f).exists(), "{f} not installed");
    }
    assert_eq!(
        std::fs::read(p.join("include/gridos.h")).unwrap(),
        std::fs::read(manifest.join("include/gridos.h")).unwrap(),
        "the installed header is not the committed one"
    );
    let dynamic = run(
        Command::new("readelf")
            .arg("-d")
            .arg(p.join("lib/libgridos.so")),
        "readelf",
    );
    assert!(
        dynamic.contains("Library soname: [libgridos.so.0."),
        "{dynamic}"
    );

    let pc = |args: &[&str]| {
        run(
            Command::new("pkg-config")
                .args(args)
                .arg("gridos")
                .env("PKG_CONFIG_PATH", p.join("lib/pkgconfig")),
            "pkg-config",
        )
    };
    let flags: Vec<String> = pc(&["--cflags", "--libs"])
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let exe = p.join("app");
    run(
        Command::new("cc")
            .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"])
            .arg(manifest.join("tests/c/init.c"))
            .arg("-o")
            .arg(&exe)
            .args(&flags),
        "cc $(pkg-config --cflags --libs gridos)",
    );
    let text = run(
        Command::new(&exe).env("LD_LIBRARY_PATH", p.join("lib")),
        "the installed program",
    );
    assert!(text.contains("init ok"), "{text}");
}
