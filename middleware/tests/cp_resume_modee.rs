//! Restarting a MODE E download: with parallel streams blocks land out of order, so a partial
//! file has holes and its size says nothing. `gridos cp --resume` records the ranges it holds
//! in `.NAME.gridos-ranges` and a restart fetches exactly the rest (REST range list) — after
//! a crash too. Bytes compared exactly.

mod util;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use util::{Ours, gridos, random_bytes};

fn sidecar(d: &Path) -> std::path::PathBuf {
    d.with_file_name(format!(
        ".{}.gridos-ranges",
        d.file_name().unwrap().to_string_lossy()
    ))
}

#[test]
fn resume_fetches_exactly_the_holes_the_record_names() {
    let srv = Ours::start(|_| {});
    let want = random_bytes(5 * 1024 * 1024 + 123, 7);
    std::fs::write(srv.path("f.bin"), &want).unwrap();
    let url = srv.url("f.bin");

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
    let j = o.ok();
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
    o.ok();
    assert!(std::fs::read(&dst).unwrap() == want);

    // A corrupt record is an error, not a guess.
    std::fs::write(&dst, &want[..1000]).unwrap();
    std::fs::write(sidecar(&dst), "not ranges").unwrap();
    let o = gridos(&["cp", "--resume", "-q", &url, dst.to_str().unwrap()]);
    let err = o.fails();
    assert!(err.contains("range record"), "{err}");
}

#[test]
fn a_record_of_thousands_of_ranges_resumes_within_the_line_limit() {
    let srv = Ours::start(|_| {});
    let want = random_bytes(8 << 20, 11);
    std::fs::write(srv.path("f.bin"), &want).unwrap();
    let url = srv.url("f.bin");
    // 2000 held ranges of 2 KiB with 2 KiB holes of junk: as a REST list, far longer than
    // any server takes on one line (a killed download with 4 KiB blocks left such records).
    let out = tempfile::tempdir().unwrap();
    let dst = out.path().join("f.bin");
    let mut partial = vec![0x5Au8; 8000 * 1024];
    let mut record = Vec::new();
    for i in 0..2000usize {
        let (s, e) = (i * 4096, i * 4096 + 2048);
        partial[s..e].copy_from_slice(&want[s..e]);
        record.push(format!("{s}-{e}"));
    }
    std::fs::write(&dst, &partial).unwrap();
    std::fs::write(sidecar(&dst), record.join(",")).unwrap();
    let o = gridos(&[
        "cp",
        "--resume",
        "-p",
        "2",
        "--json",
        &url,
        dst.to_str().unwrap(),
    ]);
    let j = o.ok();
    assert!(std::fs::read(&dst).unwrap() == want, "resumed file differs");
    // The largest ranges named are not fetched again; the rest is.
    let fetched = j["bytes"].as_u64().unwrap();
    assert!(
        fetched < want.len() as u64 && fetched >= (want.len() - 2000 * 2048) as u64,
        "fetched {fetched}"
    );
    assert!(!sidecar(&dst).exists());
}

#[test]
fn a_killed_parallel_download_resumes_to_an_identical_file() {
    let srv = Ours::start(|_| {});
    // 48 MiB in 4 KiB blocks takes long enough to be killed midway, and stays small
    // beside the rest of the suite on a machine with little free disk.
    let want = random_bytes(48 << 20, 9);
    std::fs::write(srv.path("big.bin"), &want).unwrap();
    let url = srv.url("big.bin");
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
    o.ok();
    assert!(std::fs::read(&dst).unwrap() == want, "resumed file differs");
    assert!(!sidecar(&dst).exists());
}
