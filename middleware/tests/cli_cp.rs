//! `gridos cp` and `gridos selftest` through the real binary.

use std::process::Command;

fn gridos() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gridos"))
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn cp_copies_paths_and_file_urls_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("source file.bin");
    let data = pattern(3_333_333);
    std::fs::write(&src, &data).unwrap();
    // Plain paths.
    let out = gridos()
        .args(["cp", "-q"])
        .arg(&src)
        .arg(dir.path().join("a"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), data);
    // file:// URLs, percent-encoded space, into an existing directory.
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let url = format!("file://{}", src.display().to_string().replace(' ', "%20"));
    let out = gridos()
        .args(["cp", &url, &format!("file://localhost{}", sub.display())])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(sub.join("source file.bin")).unwrap(), data);
    assert!(String::from_utf8_lossy(&out.stderr).contains("3333333 bytes"));
}

#[test]
fn cp_fails_clearly_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["cp", "/nonexistent/gridos/src", "x"], "no such file"),
        (&["cp", "ftp2://host/x", "y"], "not supported"),
        (&["cp", "gsiftp://host/x", "y"], "not supported yet"),
        (&["cp", "ftp://127.0.0.1:0/x", "y"], "bad port"),
        (
            &["cp", "file://otherhost/etc/hosts", "y"],
            "only local files",
        ),
        (&["cp", "file:///etc/hosts%zz", "y"], "percent-encoding"),
    ];
    for (args, msg) in cases {
        let out = gridos()
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(msg), "{args:?}: {err}");
    }
    // Copying a file onto itself is refused rather than truncating it.
    let f = dir.path().join("self");
    std::fs::write(&f, b"keep me").unwrap();
    let out = gridos().arg("cp").arg(&f).arg(&f).output().unwrap();
    assert!(!out.status.success());
    assert_eq!(std::fs::read(&f).unwrap(), b"keep me");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "leftovers: {names:?}");
}

#[test]
fn selftest_verifies_every_path() {
    for path in ["io_uring-splice", "splice", "read-write"] {
        let out = gridos()
            .args(["selftest", "--size", "5MiB", "--json", "--path", path])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let legs = v.as_array().unwrap();
        assert_eq!(legs.len(), 2);
        for leg in legs {
            assert_eq!(leg["bytes"], 5 * 1024 * 1024);
            assert_eq!(leg["path"], path);
            assert_eq!(leg["verified"], true);
        }
    }
    // Over FTPS: three legs (MODE E too), each saying its data went through TLS.
    let out = gridos()
        .args(["selftest", "--tls", "--size", "3MiB", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let legs = v.as_array().unwrap();
    assert_eq!(legs.len(), 3, "{v}");
    for leg in legs {
        assert_eq!(leg["transport"], "ftps", "{leg}");
        assert_eq!(leg["verified"], true, "{leg}");
        assert!(
            leg["how"].as_str().is_some_and(|h| h.starts_with("TLS ")),
            "{leg}"
        );
    }
    let out = gridos()
        .args(["selftest", "--size", "lots"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn cp_to_a_device_writes_into_it_and_keeps_the_device() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::write(&src, pattern(100_000)).unwrap();
    let out = gridos()
        .arg("cp")
        .arg("-q")
        .arg(&src)
        .arg("/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta = std::fs::metadata("/dev/null").unwrap();
    assert!(meta.file_type().is_char_device(), "/dev/null was replaced");
}
