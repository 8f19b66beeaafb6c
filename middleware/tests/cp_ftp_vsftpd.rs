//! `gridos cp` against a real vsftpd on loopback: uploads, downloads, resume both ways,
//! directory trees both ways, FTP → FTP, and failures; every byte checked by SHA-256.

#[path = "../../gridos-ftp/tests/client_peers.rs"]
mod peers;

use peers::{Vsftpd, random_bytes, sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

fn gridos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridos"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "gridos failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// Relative path → SHA-256 of every file under `dir` (directories as "dir").
fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn go(base: &Path, d: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            if p.is_dir() {
                out.insert(rel, "dir".into());
                go(base, &p, out);
            } else {
                out.insert(rel, sha256(&std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    go(dir, dir, &mut out);
    out
}

fn chown_to_anon(p: &Path, owner_of: &Path) {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata(owner_of).unwrap().uid();
    std::os::unix::fs::chown(p, Some(uid), None).unwrap();
}

#[test]
fn cp_ftp_vsftpd_files_both_ways_and_resume() {
    let Some(v) = Vsftpd::start("127.0.0.1") else {
        return;
    };
    let base = format!("ftp://127.0.0.1:{}", v.port);
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(4 * 1024 * 1024 + 5, 11);
    let src = dir.path().join("data file.bin");
    std::fs::write(&src, &data).unwrap();

    // Upload into an existing remote directory (keeps the name; percent-encoded space).
    let j = ok(&gridos(&[
        "cp",
        "--json",
        src.to_str().unwrap(),
        &format!("{base}/pub/"),
    ]));
    assert_eq!(j["bytes"], data.len() as u64);
    assert_eq!(j["files"], 1);
    assert_eq!(j["complete"], true);
    assert!(j["path"].is_string());
    assert_eq!(
        sha256(&std::fs::read(v.pub_dir.join("data file.bin")).unwrap()),
        sha256(&data)
    );

    // Download into a local directory, then to an explicit name.
    let down = dir.path().join("down");
    std::fs::create_dir(&down).unwrap();
    let j = ok(&gridos(&[
        "cp",
        "--json",
        &format!("{base}/pub/data%20file.bin"),
        down.to_str().unwrap(),
    ]));
    assert_eq!(j["bytes"], data.len() as u64);
    assert_eq!(
        sha256(&std::fs::read(down.join("data file.bin")).unwrap()),
        sha256(&data)
    );
    let named = dir.path().join("named.bin");
    ok(&gridos(&[
        "cp",
        "-q",
        &format!(
            "ftp://anonymous:me%40x@127.0.0.1:{}/pub/data%20file.bin",
            v.port
        ),
        named.to_str().unwrap(),
    ]));
    assert_eq!(sha256(&std::fs::read(&named).unwrap()), sha256(&data));

    // Resume a download: the local file holds the first part.
    let partial = dir.path().join("partial.bin");
    std::fs::write(&partial, &data[..1_234_567]).unwrap();
    let j = ok(&gridos(&[
        "cp",
        "--resume",
        "--json",
        &format!("{base}/pub/data%20file.bin"),
        partial.to_str().unwrap(),
    ]));
    assert_eq!(j["bytes"], (data.len() - 1_234_567) as u64);
    assert_eq!(sha256(&std::fs::read(&partial).unwrap()), sha256(&data));

    // Resume an upload: the remote file holds the first part.
    let remote_partial = v.pub_dir.join("up-partial.bin");
    std::fs::write(&remote_partial, &data[..2_000_001]).unwrap();
    chown_to_anon(&remote_partial, &v.pub_dir);
    let j = ok(&gridos(&[
        "cp",
        "--resume",
        "--json",
        src.to_str().unwrap(),
        &format!("{base}/pub/up-partial.bin"),
    ]));
    assert_eq!(j["bytes"], (data.len() - 2_000_001) as u64);
    assert_eq!(
        sha256(&std::fs::read(&remote_partial).unwrap()),
        sha256(&data)
    );
    // Resuming a complete file moves nothing and succeeds.
    let j = ok(&gridos(&[
        "cp",
        "--resume",
        "--json",
        src.to_str().unwrap(),
        &format!("{base}/pub/up-partial.bin"),
    ]));
    assert_eq!(j["bytes"], 0);

    // FTP → FTP (relayed through the client).
    ok(&gridos(&[
        "cp",
        "-q",
        &format!("{base}/pub/data%20file.bin"),
        &format!("{base}/pub/relayed.bin"),
    ]));
    assert_eq!(
        sha256(&std::fs::read(v.pub_dir.join("relayed.bin")).unwrap()),
        sha256(&data)
    );

    // Failures: non-zero exit, the server's reply in the message, nothing left behind.
    let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    let out = gridos(&[
        "cp",
        &format!("{base}/pub/missing.bin"),
        dir.path().join("missing.bin").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no such file") || err.contains("550"), "{err}");
    let out = gridos(&[
        "cp",
        src.to_str().unwrap(),
        &format!("{base}/forbidden.bin"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("553"));
    let after: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(before.len(), after.len(), "leftover files");
    let out = gridos(&["cp", &format!("{base}/pub"), dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("-r"));
}

#[test]
fn cp_ftp_vsftpd_recursive_both_ways() {
    let Some(v) = Vsftpd::start("127.0.0.1") else {
        return;
    };
    let base = format!("ftp://127.0.0.1:{}", v.port);
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("tree");
    std::fs::create_dir_all(t.join("a/b c/d")).unwrap();
    std::fs::create_dir_all(t.join("empty")).unwrap();
    std::fs::write(t.join("top.bin"), random_bytes(300_000, 1)).unwrap();
    std::fs::write(t.join("a/one.bin"), random_bytes(1_000_000, 2)).unwrap();
    std::fs::write(t.join("a/b c/two words.txt"), b"hello\n").unwrap();
    std::fs::write(t.join("a/b c/d/zero.bin"), b"").unwrap();
    let j = ok(&gridos(&[
        "cp",
        "-r",
        "--json",
        t.to_str().unwrap(),
        &format!("{base}/pub/"),
    ]));
    assert_eq!(j["files"], 4);
    assert_eq!(tree(&v.pub_dir.join("tree")), tree(&t));

    let back = dir.path().join("back");
    let j = ok(&gridos(&[
        "cp",
        "-r",
        "--json",
        &format!("{base}/pub/tree"),
        back.to_str().unwrap(),
    ]));
    assert_eq!(j["files"], 4);
    assert_eq!(j["bytes"], 1_300_006);
    assert_eq!(tree(&back), tree(&t));
}
