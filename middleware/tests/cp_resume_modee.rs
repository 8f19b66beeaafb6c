//! Restarting a MODE E download: with parallel streams blocks land out of order, so a partial
//! file has holes and its size says nothing. `gridos cp --resume` records the ranges it holds
//! in `.NAME.gridos-ranges` and a restart fetches exactly the rest (REST range list) — after
//! a crash too. Bytes compared exactly.

#[path = "../../gridos-ftp/tests/client_peers.rs"]
mod peers;

use gridos_ftp::server::{Server, ServerConfig, ServerHandle};
use peers::random_bytes;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn gridos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridos"))
        .args(args)
        .output()
        .unwrap()
}

fn server(docroot: &Path) -> ServerHandle {
    let mut c = ServerConfig::new(docroot);
    c.anonymous = true;
    Server::start(c).unwrap()
}

fn sidecar(d: &Path) -> std::path::PathBuf {
    d.with_file_name(format!(
        ".{}.gridos-ranges",
        d.file_name().unwrap().to_string_lossy()
    ))
}

#[test]
fn resume_fetches_exactly_the_holes_the_record_names() {
    let root = tempfile::tempdir().unwrap();
    let want = random_bytes(5 * 1024 * 1024 + 123, 7);
    std::fs::write(root.path().join("f.bin"), &want).unwrap();
    let srv = server(root.path());
    let url = format!("ftp://{}/f.bin", srv.local_addr());

    // A partial as a killed 4-stream download leaves it: two ranges held, holes between,
    // and junk (not zeros) in the holes so that only a real fetch can make the file right.
    let out = tempfile::tempdir().unwrap();
    let dst = out.path().join("f.bin");
    let mut partial = vec![0xA5u8; 4 * 1024 * 1024];
    partial[..1 << 20].copy_from_slice(&want[..1 << 20]);
    partial[(2 << 20)..(3 << 20)].copy_from_slice(&want[(2 << 20)..(3 << 20)]);
    std::fs::write(&dst, &partial).unwrap();
    std::fs::write(
        sidecar(&dst),
        format!("0-{},{}-{}", 1 << 20, 2 << 20, 3 << 20),
    )
    .unwrap();

    let o = gridos(&[
        "cp",
        "--resume",
        "-p",
        "4",
        "--json",
        &url,
        dst.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "resume failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let fetched = j["bytes"].as_u64().unwrap();
    assert_eq!(
        fetched,
        (want.len() - (2 << 20)) as u64,
        "only the holes and the tail are fetched"
    );
    assert!(std::fs::read(&dst).unwrap() == want, "resumed file differs");
    assert!(
        !sidecar(&dst).exists(),
        "the range record goes once the file is complete"
    );

    // A record that names ranges the file does not reach is not trusted past its end.
    std::fs::write(&dst, &want[..1000]).unwrap();
    std::fs::write(sidecar(&dst), format!("0-{}", want.len())).unwrap();
    let o = gridos(&["cp", "--resume", "-q", &url, dst.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&dst).unwrap() == want);

    // A corrupt record is an error, not a guess.
    std::fs::write(&dst, &want[..1000]).unwrap();
    std::fs::write(sidecar(&dst), "not ranges").unwrap();
    let o = gridos(&["cp", "--resume", "-q", &url, dst.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("range record"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_killed_parallel_download_resumes_to_an_identical_file() {
    let root = tempfile::tempdir().unwrap();
    let want = random_bytes(192 * 1024 * 1024, 9);
    std::fs::write(root.path().join("big.bin"), &want).unwrap();
    let srv = server(root.path());
    let url = format!("ftp://{}/big.bin", srv.local_addr());
    let out = tempfile::tempdir().unwrap();
    let dst = out.path().join("big.bin");

    // Small blocks over 4 streams, killed (SIGKILL: no cleanup) once a record exists.
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridos"))
        .args([
            "cp",
            "--resume",
            "-q",
            "-p",
            "4",
            "--block-size",
            "4096",
            &url,
            dst.to_str().unwrap(),
        ])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut killed = false;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        // Killed once the record shows progress (it is rewritten five times a second).
        let rec = std::fs::read_to_string(sidecar(&dst)).unwrap_or_default();
        if !rec.trim().is_empty() {
            child.kill().unwrap();
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.wait();
    if killed {
        let len = std::fs::metadata(&dst).map(|m| m.len()).unwrap_or(0);
        let rec = std::fs::read_to_string(sidecar(&dst)).unwrap_or_default();
        eprintln!("killed with {len} bytes on disk, record {rec:?}");
    }
    // Whatever state the kill left, the restart completes it exactly.
    let o = gridos(&[
        "cp",
        "--resume",
        "-q",
        "-p",
        "4",
        &url,
        dst.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&dst).unwrap() == want, "resumed file differs");
    assert!(!sidecar(&dst).exists());
}
