//! The committed `include/gridos.h` is what the pinned cbindgen makes of the crate today,
//! and it compiles cleanly as C99 and as C++ (`-Wall -Wextra -Werror -pedantic`).
//! After changing an export: `GRIDOS_BLESS=1 cargo test -p libgridos-ffi --test header`.

mod util;

use std::process::Command;
use util::manifest_dir;

#[test]
fn header_is_current() {
    let dir = manifest_dir();
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).unwrap();
    let bindings = cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let path = dir.join("include/gridos.h");
    let committed = std::fs::read(&path).unwrap_or_default();
    if fresh != committed {
        if std::env::var_os("GRIDOS_BLESS").is_some() {
            std::fs::write(&path, &fresh).unwrap();
            return;
        }
        panic!(
            "include/gridos.h is out of date: run `GRIDOS_BLESS=1 cargo test -p libgridos-ffi \
             --test header` and commit it"
        );
    }
}

fn compiles(compiler: &str, args: &[&str], source: &str, ext: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join(format!("h.{ext}"));
    std::fs::write(&file, source).unwrap();
    let include = manifest_dir().join("include");
    let out = Command::new(compiler)
        .args(args)
        .arg("-I")
        .arg(&include)
        .args(["-fsyntax-only"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("{compiler}: {e}"));
    assert!(
        out.status.success(),
        "{compiler} {args:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn header_compiles_as_c99_and_cpp() {
    let src =
        "#include \"gridos.h\"\nint main(void) { return gridos_init() == GRIDOS_OK ? 0 : 1; }\n";
    let strict = ["-Wall", "-Wextra", "-Werror", "-pedantic"];
    let mut c = vec!["-std=c99"];
    c.extend(strict);
    compiles("cc", &c, src, "c");
    let mut cpp = vec!["-std=c++11"];
    cpp.extend(strict);
    compiles("c++", &cpp, src, "cpp");
}
