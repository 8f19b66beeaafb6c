//! `gridos cp` and the FTP client library against real servers over loopback: vsftpd
//! (extracted under /opt/gridos-peers, see .ci/run) and our own server (`gridos_ftp::server`,
//! started in this test process). Bytes checked by SHA-256.

mod util;

use gridos_ftp::client::{Client, ClientConfig, EntryKind, PutMode};
use gridos_ftp::server::{Server, ServerConfig};
use std::path::Path;
use std::process::Command;
use util::{Ours, Vsftpd, gridos, make_tree, random_bytes, sha256, sha256_file, tree};

#[test]
fn cp_ftp_vsftpd_files_both_ways_and_resume() {
    let Some(v) = Vsftpd::start() else {
        return;
    };
    let base = format!("ftp://127.0.0.1:{}", v.port);
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(4 * 1024 * 1024 + 5, 11);
    let src = dir.path().join("data file.bin");
    std::fs::write(&src, &data).unwrap();

    // Upload into an existing remote directory (keeps the name; percent-encoded space).
    let j = gridos(&[
        "cp",
        "--json",
        src.to_str().unwrap(),
        &format!("{base}/pub/"),
    ])
    .ok();
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
    let j = gridos(&[
        "cp",
        "--json",
        &format!("{base}/pub/data%20file.bin"),
        down.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(j["bytes"], data.len() as u64);
    assert_eq!(
        sha256(&std::fs::read(down.join("data file.bin")).unwrap()),
        sha256(&data)
    );
    let named = dir.path().join("named.bin");
    gridos(&[
        "cp",
        "-q",
        &format!(
            "ftp://anonymous:me%40x@127.0.0.1:{}/pub/data%20file.bin",
            v.port
        ),
        named.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(sha256(&std::fs::read(&named).unwrap()), sha256(&data));

    // Resume a download: the local file holds the first part.
    let partial = dir.path().join("partial.bin");
    std::fs::write(&partial, &data[..1_234_567]).unwrap();
    let j = gridos(&[
        "cp",
        "--resume",
        "--json",
        &format!("{base}/pub/data%20file.bin"),
        partial.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(j["bytes"], (data.len() - 1_234_567) as u64);
    assert_eq!(sha256(&std::fs::read(&partial).unwrap()), sha256(&data));

    // Resume an upload: the remote file holds the first part.
    let remote_partial = v.put("up-partial.bin", &data[..2_000_001]);
    let j = gridos(&[
        "cp",
        "--resume",
        "--json",
        src.to_str().unwrap(),
        &format!("{base}/pub/up-partial.bin"),
    ])
    .ok();
    assert_eq!(j["bytes"], (data.len() - 2_000_001) as u64);
    assert_eq!(
        sha256(&std::fs::read(&remote_partial).unwrap()),
        sha256(&data)
    );
    // Resuming a complete file moves nothing and succeeds.
    let j = gridos(&[
        "cp",
        "--resume",
        "--json",
        src.to_str().unwrap(),
        &format!("{base}/pub/up-partial.bin"),
    ])
    .ok();
    assert_eq!(j["bytes"], 0);

    // FTP → FTP (relayed through the client).
    gridos(&[
        "cp",
        "-q",
        &format!("{base}/pub/data%20file.bin"),
        &format!("{base}/pub/relayed.bin"),
    ])
    .ok();
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
    let err = out.fails();
    assert!(err.contains("no such file") || err.contains("550"), "{err}");
    let out = gridos(&[
        "cp",
        src.to_str().unwrap(),
        &format!("{base}/forbidden.bin"),
    ]);
    assert!(out.fails().contains("553"));
    let after: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(before.len(), after.len(), "leftover files");
    let out = gridos(&["cp", &format!("{base}/pub"), dir.path().to_str().unwrap()]);
    assert!(out.fails().contains("-r"));
}

/// Trees both ways, passive and then active (`--active`: vsftpd connects to us for every
/// listing and file).
#[test]
fn cp_ftp_vsftpd_recursive_both_ways() {
    let Some(v) = Vsftpd::start() else {
        return;
    };
    let base = format!("ftp://127.0.0.1:{}", v.port);
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("tree");
    make_tree(&t);
    for (name, mode) in [("passive", None), ("active", Some("--active"))] {
        let remote = format!("{base}/pub/{name}/");
        let mut up = vec!["cp", "-r", "--json", t.to_str().unwrap(), &remote];
        up.extend(mode);
        // The remote parent first: `cp -r` creates the tree's own directory, not its parents.
        v.mkdir(name);
        let j = gridos(&up).ok();
        assert_eq!(j["files"], 4, "{name}");
        assert_eq!(tree(&v.pub_dir.join(name).join("tree")), tree(&t), "{name}");

        let back = dir.path().join(format!("back-{name}"));
        let from = format!("{base}/pub/{name}/tree");
        let mut down = vec!["cp", "-r", "--json", &from, back.to_str().unwrap()];
        down.extend(mode);
        let j = gridos(&down).ok();
        assert_eq!(j["files"], 4, "{name}");
        assert_eq!(j["bytes"], 1_300_006, "{name}");
        assert_eq!(tree(&back), tree(&t), "{name}");
    }
}

#[test]
fn client_library_against_our_server() {
    let d = random_bytes(2_500_000, 3);
    let srv = Ours::start(|_| {});
    std::fs::write(srv.path("f.bin"), &d).unwrap();
    let mut c = Client::connect(srv.addr, ClientConfig::default()).unwrap();
    c.login("alice", "s3cret pass").unwrap();
    assert!(c.features().mlst && c.features().size && c.features().rest_stream);
    let out = tempfile::tempfile().unwrap();
    c.get("/f.bin", &out, 0, 0).unwrap();
    let mut got = vec![0u8; d.len()];
    gridos_io::file_read(&out, 0, &mut got).unwrap();
    assert_eq!(sha256(&got), sha256(&d));
    // Resume from an offset.
    let part = tempfile::tempfile().unwrap();
    gridos_io::file_write(&part, 0, &d[..1000]).unwrap();
    c.get("/f.bin", &part, 1000, 1000).unwrap();
    gridos_io::file_read(&part, 0, &mut got).unwrap();
    assert_eq!(sha256(&got), sha256(&d));
    // Upload in two parts (STOR, then REST + STOR), MLSD listing, rename, delete.
    let src = tempfile::tempfile().unwrap();
    gridos_io::file_write(&src, 0, &d).unwrap();
    let n = d.len() as u64;
    c.mkdir("/up").unwrap();
    c.put(&src, 0, 700_000, "/up/g.bin", PutMode::Store)
        .unwrap();
    c.put(
        &src,
        700_000,
        n - 700_000,
        "/up/g.bin",
        PutMode::Restart(700_000),
    )
    .unwrap();
    assert_eq!(sha256_file(&srv.path("up/g.bin")), sha256(&d));
    let list = c.list(Some("/up")).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].name.as_str(), list[0].kind, list[0].size),
        ("g.bin", EntryKind::File, Some(n))
    );
    c.rename("/up/g.bin", "/up/h.bin").unwrap();
    assert_eq!(c.size("/up/h.bin").unwrap(), n);
    c.mdtm("/up/h.bin").unwrap();
    c.delete("/up/h.bin").unwrap();
    c.rmdir("/up").unwrap();
    assert_eq!(
        c.get("/nope", &out, 0, 0).unwrap_err().reply_code(),
        Some(550)
    );
    c.quit().unwrap();
    srv.handle.shutdown();
}

#[test]
fn cp_against_our_server_both_ways_resume_and_tree() {
    let srv = Ours::start(|_| {});
    let base = format!("ftp://alice:s3cret%20pass@{}", srv.addr);
    let dir = tempfile::tempdir().unwrap();
    let d = random_bytes(3_000_000, 5);
    let src = dir.path().join("a.bin");
    std::fs::write(&src, &d).unwrap();

    let j = gridos(&[
        "cp",
        "--json",
        src.to_str().unwrap(),
        &format!("{base}/a.bin"),
    ])
    .ok();
    assert_eq!(j["bytes"], d.len() as u64);
    assert_eq!(sha256_file(&srv.path("a.bin")), sha256(&d));

    let back = dir.path().join("back.bin");
    gridos(&["cp", "-q", &format!("{base}/a.bin"), back.to_str().unwrap()]).ok();
    assert_eq!(sha256_file(&back), sha256(&d));

    // Resume both ways.
    std::fs::write(&back, &d[..123_456]).unwrap();
    let j = gridos(&[
        "cp",
        "--resume",
        "--json",
        &format!("{base}/a.bin"),
        back.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(j["bytes"], (d.len() - 123_456) as u64);
    assert_eq!(sha256_file(&back), sha256(&d));
    std::fs::write(srv.path("b.bin"), &d[..999_999]).unwrap();
    let j = gridos(&[
        "cp",
        "--resume",
        "--json",
        src.to_str().unwrap(),
        &format!("{base}/b.bin"),
    ])
    .ok();
    assert_eq!(j["bytes"], (d.len() - 999_999) as u64);
    assert_eq!(sha256_file(&srv.path("b.bin")), sha256(&d));

    // A tree up and down again (MLSD path).
    let t = dir.path().join("tree");
    std::fs::create_dir_all(t.join("x/y z")).unwrap();
    std::fs::write(t.join("x/1.bin"), random_bytes(100_000, 9)).unwrap();
    std::fs::write(t.join("x/y z/2.bin"), random_bytes(5, 10)).unwrap();
    let j = gridos(&[
        "cp",
        "-r",
        "--json",
        t.to_str().unwrap(),
        &format!("{base}/"),
    ])
    .ok();
    assert_eq!(j["files"], 2);
    let down = dir.path().join("down");
    let j = gridos(&[
        "cp",
        "-r",
        "--json",
        &format!("{base}/tree"),
        down.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(j["files"], 2);
    assert_eq!(j["bytes"], 100_005);
    assert_eq!(
        std::fs::read(down.join("x/y z/2.bin")).unwrap(),
        random_bytes(5, 10)
    );
    assert_eq!(
        sha256_file(&down.join("x/1.bin")),
        sha256(&random_bytes(100_000, 9))
    );

    // Active mode: the server connects to us for the listings of a tree download and for a
    // MODE Z file (a stream-mode transfer; MODE E files take their own path).
    let active = dir.path().join("active");
    let j = gridos(&[
        "cp",
        "-r",
        "--json",
        "--active",
        &format!("{base}/tree"),
        active.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(j["files"], 2);
    assert_eq!(tree(&active), tree(&t));
    let z = dir.path().join("active-z.bin");
    gridos(&[
        "cp",
        "-q",
        "--active",
        "--compress",
        &format!("{base}/a.bin"),
        z.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(sha256_file(&z), sha256(&d));

    // A wrong password fails with the server's code and non-zero exit.
    let out = gridos(&[
        "cp",
        &format!("ftp://alice:wrong@{}/a.bin", srv.addr),
        dir.path().join("z").to_str().unwrap(),
    ]);
    assert!(out.fails().contains("530"));
    assert!(!dir.path().join("z").exists());
    srv.handle.shutdown();
}

#[test]
fn selftest_goes_through_ftp() {
    let dir = tempfile::tempdir().unwrap();
    let out = gridos(&[
        "selftest",
        "--size",
        "3MiB",
        "--rounds",
        "4",
        "--dir",
        dir.path().to_str().unwrap(),
        "--json",
    ]);
    let v = out.ok();
    let legs = v.as_array().unwrap();
    assert_eq!(legs.len(), 2, "one summary per direction: {v}");
    let want = sha256(&[]);
    // The file system the files went to, as the mount table names it.
    let fs = nix::sys::statfs::statfs(dir.path())
        .unwrap()
        .filesystem_type();
    let expected_fs = if fs == nix::sys::statfs::TMPFS_MAGIC {
        "tmpfs"
    } else if fs == nix::sys::statfs::EXT4_SUPER_MAGIC {
        "ext4"
    } else {
        ""
    };
    for leg in legs {
        assert_eq!(leg["rounds"], 4, "{leg}");
        let (lo, mid, hi) = (
            leg["mb_per_sec_min"].as_f64().unwrap(),
            leg["mb_per_sec"].as_f64().unwrap(),
            leg["mb_per_sec_max"].as_f64().unwrap(),
        );
        assert!(lo > 0.0 && lo <= mid && mid <= hi, "{leg}");
        if !expected_fs.is_empty() {
            assert_eq!(leg["filesystem"], expected_fs, "{leg}");
        }
        assert_eq!(leg["bytes"], 3 * 1024 * 1024);
        assert_eq!(leg["transport"], "ftp");
        assert_eq!(leg["verified"], true);
        assert_ne!(leg["sha256"], want.as_str());
        assert_eq!(leg["sha256"], legs[0]["sha256"]);
    }
}

/// `--preserve` keeps modification times both ways, for single files and pipelined trees.
#[test]
fn cp_preserve_times_both_ways() {
    use std::time::{Duration, SystemTime};
    let srv = Ours::start(|_| {});
    let base = format!("ftp://alice:s3cret%20pass@{}", srv.addr);
    let dir = tempfile::tempdir().unwrap();
    let t2001 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let set = |p: &Path, t: SystemTime| {
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(t)
            .unwrap()
    };
    let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let t = dir.path().join("t");
    std::fs::create_dir(&t).unwrap();
    for (i, name) in ["one.bin", "two.bin", "three.bin"].iter().enumerate() {
        let p = t.join(name);
        std::fs::write(&p, random_bytes(10_000 + i, i as u64)).unwrap();
        set(&p, t2001 + Duration::from_secs(i as u64 * 3600));
    }
    // One file up and back down.
    let one = t.join("one.bin");
    gridos(&[
        "cp",
        "-q",
        "--preserve",
        one.to_str().unwrap(),
        &format!("{base}/one.bin"),
    ])
    .ok();
    assert_eq!(mtime(&srv.path("one.bin")), t2001);
    let back = dir.path().join("one-back.bin");
    set(&srv.path("one.bin"), t2001 + Duration::from_secs(60));
    gridos(&[
        "cp",
        "-q",
        "-t",
        &format!("{base}/one.bin"),
        back.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(mtime(&back), t2001 + Duration::from_secs(60));
    // A tree up and down (pipelined by default against our MODE E server).
    gridos(&[
        "cp",
        "-q",
        "-r",
        "--preserve",
        t.to_str().unwrap(),
        &format!("{base}/t"),
    ])
    .ok();
    let down = dir.path().join("down");
    gridos(&[
        "cp",
        "-q",
        "-r",
        "--preserve",
        &format!("{base}/t"),
        down.to_str().unwrap(),
    ])
    .ok();
    for (i, name) in ["one.bin", "two.bin", "three.bin"].iter().enumerate() {
        let want = t2001 + Duration::from_secs(i as u64 * 3600);
        assert_eq!(mtime(&srv.path("t").join(name)), want, "{name} up");
        assert_eq!(mtime(&down.join(name)), want, "{name} down");
        assert_eq!(
            std::fs::read(down.join(name)).unwrap(),
            std::fs::read(t.join(name)).unwrap()
        );
    }
    // Without --preserve the times are the copy's own.
    let plain = dir.path().join("plain.bin");
    gridos(&[
        "cp",
        "-q",
        &format!("{base}/one.bin"),
        plain.to_str().unwrap(),
    ])
    .ok();
    assert_ne!(mtime(&plain), t2001 + Duration::from_secs(60));
}

/// 40 `gridos cp` processes at once against a server that takes 4 clients per address: the
/// 421s are transient, every copy waits its turn and arrives whole.
#[test]
fn cp_waits_out_a_busy_server() {
    let root = tempfile::tempdir().unwrap();
    let mut c = ServerConfig::new(root.path());
    c.anonymous = true;
    c.max_per_ip = 4;
    let srv = Server::start(c).unwrap();
    let data = random_bytes(2_000_000, 40);
    std::fs::write(root.path().join("f.bin"), &data).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("ftp://{}/f.bin", srv.local_addr());
    let refused = || {
        srv.stats()
            .into_iter()
            .find(|(k, _)| k == "clients_refused")
            .map(|(_, v)| v.parse::<u64>().unwrap())
            .unwrap()
    };
    // Four idle sessions hold every slot until the server has turned a copy away.
    let holders: Vec<_> = (0..4)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(srv.local_addr()).unwrap();
            let mut greeting = [0u8; 3];
            std::io::Read::read_exact(&mut s, &mut greeting).unwrap();
            assert_eq!(&greeting, b"220");
            s
        })
        .collect();
    let children: Vec<_> = (0..40)
        .map(|i| {
            let dst = dir.path().join(format!("f{i}.bin"));
            let child = Command::new(env!("CARGO_BIN_EXE_gridos"))
                .args(["cp", "-q", &url, dst.to_str().unwrap()])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (child, dst)
        })
        .collect();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while refused() == 0 && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        refused() > 0,
        "no copy was turned away: the test shows nothing"
    );
    drop(holders);
    for (child, dst) in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            dst.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(sha256(&std::fs::read(&dst).unwrap()), sha256(&data));
    }
    eprintln!(
        "connections turned away with 421 and retried: {}",
        refused()
    );
}
