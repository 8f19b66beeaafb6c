//! Helpers shared by the libgridos-ffi test files: the CI rule for missing tools, the
//! crate's directory, and running a command that must succeed.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Whether tests run in CI (a missing tool is a failure there, a skip elsewhere).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `libgridos-ffi/`.
pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `cmd`, which must succeed; its stdout and stderr.
pub fn run_ok(cmd: &mut Command, what: &str) -> String {
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
