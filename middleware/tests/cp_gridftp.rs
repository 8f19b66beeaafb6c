//! `gridos cp` with the GridFTP extensions (MODE E, parallel streams, buffer and block
//! settings, CKSM verification, ERET/ESTO partial transfers, MODE Z, pipelined tree
//! downloads, the tuning plan) over loopback against two servers:
//!
//! - `globus-gridftp-server` (package globus-gridftp-server-progs), started anonymously
//!   ([`util::Globus`]) on 127.0.0.1 with a world-writable scratch directory as its home; it
//!   serves the real file system, so URLs carry absolute paths. Missing: the test is skipped
//!   with a message (fails with `CI=true`).
//! - our own server (`gridos_ftp::server`, started in this test process, [`util::Ours`]).
//!
//! A plain FTP server without MODE E (vsftpd, [`util::Vsftpd`]) checks that `gridftp://`
//! URLs insist on the extensions. Every byte is compared (SHA-256).

mod util;

use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use util::{Globus, Ours, Run, Vsftpd, gridos, random_bytes, sha256, tree};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Asserts two byte strings are equal (by SHA-256, with the lengths, to keep messages short).
fn same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(
        (got.len(), sha256(got)),
        (want.len(), sha256(want)),
        "{what}: bytes differ"
    );
}

/// Builds a tree of 305 small files (5 empty) in nested directories, with empty
/// directories and names with spaces, readable by everyone; returns the file count.
fn make_tree(t: &Path) -> u64 {
    let mut n = 0;
    for d in 0..10 {
        let sub = t.join(format!("d{d}/sub {d}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..15 {
            let len = (f * 997 + d * 13) % 20_000;
            std::fs::write(
                t.join(format!("d{d}/f{f}.bin")),
                random_bytes(len, (d * 100 + f) as u64),
            )
            .unwrap();
            std::fs::write(sub.join(format!("g{f}")), random_bytes(f * 3, f as u64)).unwrap();
            n += 2;
        }
    }
    for i in 0..5 {
        std::fs::write(t.join(format!("empty{i}")), b"").unwrap();
        n += 1;
    }
    std::fs::create_dir_all(t.join("empty dir/nested/deeper")).unwrap();
    std::fs::create_dir_all(t.join("e2")).unwrap();
    // globus-gridftp-server reads as nobody.
    let status = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(t)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(n, 305);
    n
}

/// Temporary download files (`.NAME.*.part`) left in `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// globus-gridftp-server

#[test]
fn globus_download_and_upload_mode_e_parallel() {
    let Some(g) = Globus::start() else {
        return;
    };
    let local = tempfile::tempdir().unwrap();
    let data = random_bytes(4 * 1024 * 1024 + 777, 21);
    g.put(&g.home.join("src.bin"), &data);

    // Plain ftp:// URL: FEAT offers MODE E, so the client uses it (the plan says so).
    let d1 = local.path().join("d1.bin");
    let r = gridos(&["cp", "-vv", &g.home_url("ftp", "src.bin"), s(&d1)]);
    r.ok();
    let plans = r.plans();
    assert_eq!(plans.len(), 1, "one plan line: {}", r.stderr);
    assert_eq!(plans[0]["mode"], "E", "{}", r.stderr);
    same(&read(&d1), &data, "ftp:// download");

    // Four parallel streams down.
    let d4 = local.path().join("d4.bin");
    let r = gridos(&[
        "cp",
        "-vv",
        "-p",
        "4",
        &g.home_url("ftp", "src.bin"),
        s(&d4),
    ]);
    r.ok();
    let plans = r.plans();
    assert_eq!(
        (&plans[0]["mode"], &plans[0]["streams"], &plans[0]["auto"]),
        (&"E".into(), &4.into(), &false.into()),
        "{}",
        r.stderr
    );
    same(&read(&d4), &data, "-p 4 download");

    // And up, to a new remote file.
    let j = gridos(&[
        "cp",
        "--json",
        "-p",
        "4",
        s(&d4),
        &g.home_url("ftp", "up4.bin"),
    ])
    .ok();
    assert_eq!(j["bytes"], data.len() as u64);
    assert_eq!(j["complete"], true);
    assert_eq!(j["tuning"][0]["mode"], "E");
    assert_eq!(j["tuning"][0]["streams"], 4);
    same(&read(&g.home.join("up4.bin")), &data, "-p 4 upload");

    // One stream up, automatic plan.
    gridos(&["cp", "-q", s(&d1), &g.home_url("ftp", "up1.bin")]).ok();
    same(&read(&g.home.join("up1.bin")), &data, "upload");

    // An empty file over four streams, both ways.
    g.put(&g.home.join("empty.bin"), b"");
    let e = local.path().join("empty.bin");
    gridos(&[
        "cp",
        "-q",
        "-p",
        "4",
        &g.home_url("ftp", "empty.bin"),
        s(&e),
    ])
    .ok();
    assert_eq!(read(&e).len(), 0);
    gridos(&[
        "cp",
        "-q",
        "-p",
        "4",
        s(&e),
        &g.home_url("ftp", "empty-up.bin"),
    ])
    .ok();
    assert_eq!(read(&g.home.join("empty-up.bin")).len(), 0);

    // globus-gridftp-server has no MODE Z: --compress fails clearly, nothing left behind.
    let z = local.path().join("z.bin");
    let r = gridos(&["cp", "--compress", &g.home_url("ftp", "src.bin"), s(&z)]);
    assert!(r.fails().contains("MODE Z"), "{}", r.stderr);
    assert!(!z.exists());
}

#[test]
fn globus_trees_pipelined_down_recursive_up() {
    let Some(g) = Globus::start() else {
        return;
    };
    let local = tempfile::tempdir().unwrap();
    let t = g.home.join("tree");
    let n = make_tree(&t);
    let back = local.path().join("back");
    let j = gridos(&[
        "cp",
        "-r",
        "--pipeline",
        "--json",
        "-p",
        "2",
        &g.home_url("ftp", "tree"),
        s(&back),
    ])
    .ok();
    assert_eq!(j["complete"], true);
    assert_eq!(j["files"], n);
    assert_eq!(tree(&back), tree(&t));

    // And up again (into the world-writable scratch directory), two streams per file.
    let j = gridos(&[
        "cp",
        "-r",
        "--json",
        "-p",
        "2",
        s(&back),
        &g.home_url("ftp", "up/"),
    ])
    .ok();
    assert_eq!(j["files"], n);
    assert_eq!(tree(&g.home.join("up")), tree(&t));
}

#[test]
fn globus_verify_checksums() {
    let Some(g) = Globus::start() else {
        return;
    };
    let local = tempfile::tempdir().unwrap();
    let data = random_bytes(3 * 1024 * 1024 + 5, 22);
    g.put(&g.home.join("v.bin"), &data);
    let src = local.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();

    // MD5 (the default) and ADLER32, both directions, one and several streams.
    for (alg, p) in [("--verify", "1"), ("--verify=ADLER32", "3")] {
        let d = local.path().join(format!("down-{p}.bin"));
        let j = gridos(&[
            "cp",
            "--json",
            alg,
            "-p",
            p,
            &g.home_url("ftp", "v.bin"),
            s(&d),
        ])
        .ok();
        assert_eq!(j["verified"], true, "{alg}");
        same(&read(&d), &data, alg);
        let name = format!("up-{p}.bin");
        let j = gridos(&[
            "cp",
            "--json",
            alg,
            "-p",
            p,
            s(&src),
            &g.home_url("ftp", &name),
        ])
        .ok();
        assert_eq!(j["verified"], true, "{alg}");
        same(&read(&g.home.join(&name)), &data, alg);
    }

    // CRC32C is not among globus's CKSM algorithms: a clear error, no destination left.
    let d = local.path().join("crc.bin");
    let r = gridos(&["cp", "--verify=CRC32C", &g.home_url("ftp", "v.bin"), s(&d)]);
    let err = r.fails();
    assert!(
        err.contains("CRC32C") && err.contains("does not offer"),
        "unclear message: {err}"
    );
    assert!(!d.exists(), "download destination left behind");
    assert_eq!(leftovers(local.path()), Vec::<String>::new());
    // Same for an upload: refused before any byte moves.
    let r = gridos(&[
        "cp",
        "--verify=CRC32C",
        s(&src),
        &g.home_url("ftp", "crc-up.bin"),
    ]);
    assert!(r.fails().contains("CRC32C"), "{}", r.stderr);
}

#[test]
fn globus_partial_download_eret() {
    let Some(g) = Globus::start() else {
        return;
    };
    let local = tempfile::tempdir().unwrap();
    let data = random_bytes(2 * 1024 * 1024 + 3, 23);
    g.put(&g.home.join("p.bin"), &data);
    let (off, len) = (1000usize, 300_000usize);
    for p in ["1", "2"] {
        let d = local.path().join(format!("part-{p}.bin"));
        let j = gridos(&[
            "cp",
            "--json",
            "-p",
            p,
            "--offset",
            &off.to_string(),
            "--length",
            &len.to_string(),
            &g.home_url("ftp", "p.bin"),
            s(&d),
        ])
        .ok();
        assert_eq!(j["bytes"], len as u64, "-p {p}");
        let got = read(&d);
        assert_eq!(got.len(), off + len, "-p {p}: the part ends the file");
        same(&got[off..], &data[off..off + len], "the part at its offset");
        assert!(
            got[..off].iter().all(|&b| b == 0),
            "-p {p}: the bytes before the part are not a hole"
        );
    }
    // With --verify the part is checked against the server's checksum of the same range.
    let d = local.path().join("part-v.bin");
    gridos(&[
        "cp",
        "-q",
        "--verify",
        "--offset",
        "4096",
        "--length",
        "100000",
        &g.home_url("ftp", "p.bin"),
        s(&d),
    ])
    .ok();
    same(&read(&d)[4096..], &data[4096..104_096], "verified part");

    // ESTO: a part of a local file into an existing remote one; only that range changes.
    let new = random_bytes(data.len(), 25);
    let src = local.path().join("new.bin");
    std::fs::write(&src, &new).unwrap();
    let target = g.home.join("esto.bin");
    g.put(&target, &data);
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o666)).unwrap();
    gridos(&[
        "cp",
        "-q",
        "-p",
        "2",
        "--offset",
        &off.to_string(),
        "--length",
        &len.to_string(),
        s(&src),
        &g.home_url("ftp", "esto.bin"),
    ])
    .ok();
    let mut want = data.clone();
    want[off..off + len].copy_from_slice(&new[off..off + len]);
    same(&read(&target), &want, "ESTO into an existing globus file");
}

#[test]
fn globus_gridftp_url() {
    let Some(g) = Globus::start() else {
        return;
    };
    let local = tempfile::tempdir().unwrap();
    let data = random_bytes(2 * 1024 * 1024 + 11, 24);
    g.put(&g.home.join("g.bin"), &data);
    let d = local.path().join("g.bin");
    let j = gridos(&["cp", "--json", &g.home_url("gridftp", "g.bin"), s(&d)]).ok();
    assert_eq!(j["tuning"][0]["mode"], "E");
    same(&read(&d), &data, "gridftp:// download");
    gridos(&[
        "cp",
        "-q",
        "-p",
        "2",
        s(&d),
        &g.home_url("gridftp", "g-up.bin"),
    ])
    .ok();
    same(&read(&g.home.join("g-up.bin")), &data, "gridftp:// upload");
}

// ---------------------------------------------------------------------------------------
// our server

#[test]
fn ours_parallel_buffers_blocks_verify() {
    let srv = Ours::start(|_| {});
    let local = tempfile::tempdir().unwrap();
    let data = random_bytes(5 * 1024 * 1024 + 123, 31);
    let src = local.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();

    // -p 4 both ways.
    let j = gridos(&["cp", "--json", "-p", "4", s(&src), &srv.url("p4.bin")]).ok();
    assert_eq!(j["bytes"], data.len() as u64);
    assert_eq!(j["tuning"][0]["streams"], 4);
    same(&read(&srv.path("p4.bin")), &data, "-p 4 upload");
    let d = local.path().join("p4.bin");
    gridos(&["cp", "-q", "-p", "4", &srv.url("p4.bin"), s(&d)]).ok();
    same(&read(&d), &data, "-p 4 download");

    // --tcp-bs 4M -p 2: the buffer is in the plan.
    let j = gridos(&[
        "cp",
        "--json",
        "--tcp-bs",
        "4M",
        "-p",
        "2",
        s(&src),
        &srv.url("bs.bin"),
    ])
    .ok();
    assert_eq!(j["tuning"][0]["tcp_buffer"], 4 * 1024 * 1024);
    assert_eq!(j["tuning"][0]["streams"], 2);
    same(&read(&srv.path("bs.bin")), &data, "--tcp-bs upload");
    let d = local.path().join("bs.bin");
    gridos(&[
        "cp",
        "-q",
        "--tcp-bs",
        "4M",
        "-p",
        "2",
        &srv.url("bs.bin"),
        s(&d),
    ])
    .ok();
    same(&read(&d), &data, "--tcp-bs download");

    // --block-size 65536 -p 3: many small blocks over three streams.
    let j = gridos(&[
        "cp",
        "--json",
        "--block-size",
        "65536",
        "-p",
        "3",
        s(&src),
        &srv.url("blk.bin"),
    ])
    .ok();
    assert_eq!(j["tuning"][0]["block_size"], 65536);
    same(&read(&srv.path("blk.bin")), &data, "--block-size upload");
    let d = local.path().join("blk.bin");
    gridos(&[
        "cp",
        "-q",
        "--block-size",
        "65536",
        "-p",
        "3",
        &srv.url("blk.bin"),
        s(&d),
    ])
    .ok();
    same(&read(&d), &data, "--block-size download");

    // --verify=SHA256 both ways.
    let j = gridos(&[
        "cp",
        "--json",
        "--verify=SHA256",
        "-p",
        "2",
        s(&src),
        &srv.url("v.bin"),
    ])
    .ok();
    assert_eq!(j["verified"], true);
    same(&read(&srv.path("v.bin")), &data, "verified upload");
    let d = local.path().join("v.bin");
    let j = gridos(&["cp", "--json", "--verify=SHA256", &srv.url("v.bin"), s(&d)]).ok();
    assert_eq!(j["verified"], true);
    same(&read(&d), &data, "verified download");
}

/// A FIFO destination (a consumer reading the download as it arrives): MODE E places blocks
/// at offsets, which a pipe cannot take, so the copy falls back to stream mode and the reader
/// gets every byte in order. A FIFO as an upload source has no size: refused, nothing sent.
#[test]
fn ours_fifo_destination_and_fifo_source() {
    let srv = Ours::start(|_| {});
    let local = tempfile::tempdir().unwrap();
    let data = random_bytes(7 * 1024 * 1024 + 5, 41);
    std::fs::write(srv.path("f.bin"), &data).unwrap();
    let fifo = local.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for streams in ["1", "4"] {
        let reader_path = fifo.clone();
        let reader = std::thread::spawn(move || read(&reader_path));
        gridos(&["cp", "-q", "-p", streams, &srv.url("f.bin"), s(&fifo)]).ok();
        same(&reader.join().unwrap(), &data, "download into a FIFO");
    }
    assert!(
        std::fs::metadata(&fifo).unwrap().file_type().is_fifo(),
        "the FIFO was replaced"
    );

    let writer_path = fifo.clone();
    let body = data.clone();
    // The writer sees the reader go away (EPIPE) once the copy refuses: that is expected.
    let writer = std::thread::spawn(move || {
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .open(writer_path)
            .unwrap();
        let _ = std::io::Write::write_all(&mut w, &body);
    });
    let err = gridos(&["cp", "-q", s(&fifo), &srv.url("up.bin")])
        .fails()
        .to_string();
    // Had the copy refused without opening the FIFO, the writer would still wait in open():
    // a reader that opens and leaves releases it either way.
    drop(
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap(),
    );
    writer.join().unwrap();
    assert!(err.contains("not a regular file"), "{err}");
    assert!(
        !srv.path("up.bin").exists(),
        "an upload from a FIFO created a remote file"
    );
}

#[test]
fn ours_compress_both_ways() {
    let srv = Ours::start(|_| {});
    let local = tempfile::tempdir().unwrap();
    // Half compressible text, half random: both kinds of deflate blocks.
    let mut data = Vec::new();
    while data.len() < 2 * 1024 * 1024 {
        data.extend_from_slice(format!("line {} of a compressible file\n", data.len()).as_bytes());
    }
    data.extend_from_slice(&random_bytes(2 * 1024 * 1024 + 17, 32));
    let src = local.path().join("z.bin");
    std::fs::write(&src, &data).unwrap();
    let j = gridos(&["cp", "--json", "--compress", s(&src), &srv.url("z.bin")]).ok();
    assert_eq!(j["bytes"], data.len() as u64);
    assert_eq!(j["tuning"][0]["mode"], "Z");
    same(&read(&srv.path("z.bin")), &data, "MODE Z upload");
    let d = local.path().join("z-back.bin");
    let j = gridos(&["cp", "--json", "--compress", &srv.url("z.bin"), s(&d)]).ok();
    assert_eq!(j["bytes"], data.len() as u64);
    same(&read(&d), &data, "MODE Z download");
    // An empty file too.
    let e = local.path().join("empty");
    std::fs::write(&e, b"").unwrap();
    gridos(&["cp", "-q", "--compress", s(&e), &srv.url("empty")]).ok();
    assert_eq!(read(&srv.path("empty")).len(), 0);
    let d = local.path().join("empty-back");
    gridos(&["cp", "-q", "--compress", &srv.url("empty"), s(&d)]).ok();
    assert_eq!(read(&d).len(), 0);
}

#[test]
fn ours_partial_upload_esto_and_download_eret() {
    let srv = Ours::start(|_| {});
    let local = tempfile::tempdir().unwrap();
    let old = random_bytes(3 * 1024 * 1024, 41);
    let new = random_bytes(3 * 1024 * 1024, 42);
    std::fs::write(srv.path("e.bin"), &old).unwrap();
    let src = local.path().join("new.bin");
    std::fs::write(&src, &new).unwrap();

    // Only [off, off+len) of the remote file changes, to the source's bytes at that offset.
    let (off, len) = (123_457usize, 654_321usize);
    for p in ["1", "3"] {
        let j = gridos(&[
            "cp",
            "--json",
            "-p",
            p,
            "--offset",
            &off.to_string(),
            "--length",
            &len.to_string(),
            s(&src),
            &srv.url("e.bin"),
        ])
        .ok();
        assert_eq!(j["bytes"], len as u64);
        let mut want = old.clone();
        want[off..off + len].copy_from_slice(&new[off..off + len]);
        same(
            &read(&srv.path("e.bin")),
            &want,
            "ESTO into an existing file",
        );
        std::fs::write(srv.path("e.bin"), &old).unwrap();
    }
    // With --verify (checksum of the range on both sides).
    gridos(&[
        "cp",
        "-q",
        "--verify=SHA256",
        "--offset",
        "0",
        "--length",
        "1000",
        s(&src),
        &srv.url("e.bin"),
    ])
    .ok();
    let mut want = old.clone();
    want[..1000].copy_from_slice(&new[..1000]);
    same(&read(&srv.path("e.bin")), &want, "verified ESTO");

    // ERET from our server, -p 4, into an existing local file: only the range changes.
    let d = local.path().join("local.bin");
    std::fs::write(&d, &new).unwrap();
    gridos(&[
        "cp",
        "-q",
        "-p",
        "4",
        "--offset",
        "2000000",
        "--length",
        "500000",
        &srv.url("e.bin"),
        s(&d),
    ])
    .ok();
    let mut want_local = new.clone();
    want_local[2_000_000..2_500_000].copy_from_slice(&want[2_000_000..2_500_000]);
    same(&read(&d), &want_local, "ERET into an existing local file");
}

#[test]
fn ours_pipelined_tree() {
    let srv = Ours::start(|_| {});
    let local = tempfile::tempdir().unwrap();
    let t = srv.path("tree");
    let n = make_tree(&t);

    let back = local.path().join("back");
    let j = gridos(&[
        "cp",
        "-r",
        "--pipeline",
        "--json",
        &srv.url("tree"),
        s(&back),
    ])
    .ok();
    assert_eq!(j["complete"], true);
    assert_eq!(j["files"], n);
    assert_eq!(j["tuning"][0]["mode"], "E");
    assert!(
        j["path"].as_str().is_some_and(|p| p.contains("pipelined")),
        "not pipelined: {j}"
    );
    assert_eq!(tree(&back), tree(&t));

    // With parallel streams and verification as well.
    let back2 = local.path().join("back2");
    let j = gridos(&[
        "cp",
        "-r",
        "--pipeline",
        "--json",
        "-p",
        "2",
        "--verify=ADLER32",
        &srv.url("tree"),
        s(&back2),
    ])
    .ok();
    assert_eq!(j["files"], n);
    assert_eq!(tree(&back2), tree(&t));

    // Pipelined uploads of the tree (STORs in flight, one set of MODE E channels).
    for (name, extra) in [("up1", &[][..]), ("up2", &["-p", "2", "--verify"][..])] {
        let mut args = vec!["cp", "-r", "--pipeline", "--json"];
        args.extend_from_slice(extra);
        let url = srv.url(name);
        args.extend_from_slice(&[s(&back), &url]);
        let j = gridos(&args).ok();
        assert_eq!(j["files"], n, "{name}: {j}");
        assert!(
            j["path"].as_str().is_some_and(|p| p.contains("pipelined")),
            "{name} not pipelined: {j}"
        );
        assert_eq!(tree(&srv.path(name)), tree(&t), "{name}");
    }
}

#[test]
fn ours_resume_in_mode_e() {
    let srv = Ours::start(|_| {});
    let local = tempfile::tempdir().unwrap();
    let data = random_bytes(3 * 1024 * 1024 + 9, 35);
    std::fs::write(srv.path("r.bin"), &data).unwrap();
    // Download: the local file holds the first part; the rest comes over three streams.
    let d = local.path().join("r.bin");
    std::fs::write(&d, &data[..700_001]).unwrap();
    let j = gridos(&[
        "cp",
        "--json",
        "--resume",
        "-p",
        "3",
        &srv.url("r.bin"),
        s(&d),
    ])
    .ok();
    assert_eq!(j["bytes"], (data.len() - 700_001) as u64);
    same(&read(&d), &data, "resumed MODE E download");
    // Upload: the remote file holds the first part.
    std::fs::write(srv.path("u.bin"), &data[..1_500_000]).unwrap();
    let j = gridos(&[
        "cp",
        "--json",
        "--resume",
        "-p",
        "3",
        s(&d),
        &srv.url("u.bin"),
    ])
    .ok();
    assert_eq!(j["bytes"], (data.len() - 1_500_000) as u64);
    same(&read(&srv.path("u.bin")), &data, "resumed upload");
}

/// Pipelined tree downloads over two streams, repeated: every run must succeed. (Each file
/// of a pipelined MODE E download is a separate transfer whose end the receiver must not
/// misjudge while its streams finish.)
#[test]
fn ours_pipelined_parallel_tree_repeated() {
    let srv = Ours::start(|_| {});
    let local = tempfile::tempdir().unwrap();
    let t = srv.path("tree");
    let n = make_tree(&t);
    let want = tree(&t);
    let url = srv.url("tree");
    let started = Instant::now();
    let (mut runs, mut failures) = (0, Vec::new());
    // Three copies at once, round after round, for about twelve seconds.
    for round in 0..20 {
        if started.elapsed() > Duration::from_secs(12) {
            break;
        }
        let results: Vec<(PathBuf, Run)> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..3)
                .map(|k| {
                    let dst = local.path().join(format!("r{round}-{k}"));
                    let url = &url;
                    sc.spawn(move || {
                        let r = gridos(&["cp", "-q", "-r", "--pipeline", "-p", "2", url, s(&dst)]);
                        (dst, r)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (dst, r) in results {
            runs += 1;
            if r.status.success() {
                assert_eq!(tree(&dst), want, "run {runs}: trees differ");
            } else {
                failures.push(r.stderr.trim().to_string());
            }
            let _ = std::fs::remove_dir_all(&dst);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} pipelined -p 2 downloads of {n} files failed; first: {}",
        failures.len(),
        failures[0]
    );
}

#[test]
fn ours_verbose_plan_on_loopback() {
    let srv = Ours::start(|_| {});
    let local = tempfile::tempdir().unwrap();
    let data = random_bytes(1024 * 1024 + 1, 51);
    std::fs::write(srv.path("x.bin"), &data).unwrap();
    let d = local.path().join("x.bin");
    let r = gridos(&["cp", "-vv", &srv.url("x.bin"), s(&d)]);
    r.ok();
    same(&read(&d), &data, "-v download");
    assert!(
        r.stderr.contains("\"auto\":true") && r.stderr.contains("\"streams\":1"),
        "no automatic one-stream plan on stderr: {}",
        r.stderr
    );
    let plans = r.plans();
    assert_eq!(plans.len(), 1, "{}", r.stderr);
    assert_eq!(plans[0]["auto"], true);
    assert_eq!(plans[0]["streams"], 1);
    assert_eq!(plans[0]["mode"], "E");
    assert!(plans[0]["rtt_us"].as_u64().is_some_and(|r| r > 0));
    // The summary line with the bandwidth measured.
    assert!(
        r.stderr.contains("tuning") && r.stderr.contains("measured_bytes_per_sec"),
        "{}",
        r.stderr
    );
}

#[test]
fn bad_input() {
    let srv = Ours::start(|_| {});
    let local = tempfile::tempdir().unwrap();
    let data = random_bytes(100_000, 61);
    let src = local.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    std::fs::write(srv.path("r.bin"), &data).unwrap();
    let url = srv.url("r.bin");
    let dst = local.path().join("dst.bin");

    // -p 0: refused by the argument parser (exit status 2).
    let r = gridos(&["cp", "-p", "0", &url, s(&dst)]);
    let err = r.fails().to_string();
    assert_eq!(r.status.code(), Some(2), "{err}");
    assert!(err.contains("--parallel") || err.contains("-p"), "{err}");
    // --offset without --length.
    let r = gridos(&["cp", "--offset", "5", &url, s(&dst)]);
    let err = r.fails();
    assert!(err.contains("--length"), "{err}");
    // Unknown checksum algorithm.
    let r = gridos(&["cp", "--verify=NOPE", &url, s(&dst)]);
    let err = r.fails();
    assert!(
        err.contains("NOPE") && err.contains("unknown algorithm"),
        "{err}"
    );
    assert!(!dst.exists());
    // A part past the end of the source on upload.
    let r = gridos(&[
        "cp",
        "--offset",
        "99000",
        "--length",
        "2000",
        s(&src),
        &srv.url("past.bin"),
    ]);
    let err = r.fails();
    assert!(err.contains("past the end"), "{err}");
    assert!(!srv.path("past.bin").exists(), "remote file created");
    let r = gridos(&[
        "cp",
        "--offset",
        "200000",
        "--length",
        "1",
        s(&src),
        &srv.url("past.bin"),
    ]);
    assert!(r.fails().contains("past the end"), "{}", r.stderr);
    assert!(dst.parent().unwrap().read_dir().unwrap().count() == 1);
}

#[test]
fn gridftp_url_needs_mode_e() {
    let Some(v) = Vsftpd::start() else {
        return;
    };
    let local = tempfile::tempdir().unwrap();
    let data = random_bytes(50_000, 71);
    std::fs::write(v.pub_dir.join("plain.bin"), &data).unwrap();
    let dst = local.path().join("plain.bin");
    let r = gridos(&[
        "cp",
        &format!("gridftp://127.0.0.1:{}/pub/plain.bin", v.port),
        s(&dst),
    ]);
    let err = r.fails();
    assert!(err.contains("MODE E"), "{err}");
    assert!(!dst.exists());
    // -p 2 with ftp:// to it: also refused.
    let r = gridos(&[
        "cp",
        "-p",
        "2",
        &format!("ftp://127.0.0.1:{}/pub/plain.bin", v.port),
        s(&dst),
    ]);
    assert!(r.fails().contains("MODE E"), "{}", r.stderr);
    // Without GridFTP options the same server works in stream mode.
    let j = gridos(&[
        "cp",
        "--json",
        &format!("ftp://127.0.0.1:{}/pub/plain.bin", v.port),
        s(&dst),
    ])
    .ok();
    assert_eq!(j["tuning"][0]["mode"], "S");
    same(&read(&dst), &data, "stream-mode download");
}
