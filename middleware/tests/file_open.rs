//! `file::open`: URLs read, written and appended like local files, against our server (in
//! this process), vsftpd and local paths; what `close` reports, what a drop leaves (nothing),
//! and on-demand reads with ERET ranges. Bytes checked by SHA-256.

mod util;

use gridos_middleware::file::{self, Mode, OpenOptions};
use gridos_middleware::{Algorithm, CopyObserver, CopyOptions, ErrorKind, RemoteFile, Url};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use util::{Ours, Vsftpd, names, random_bytes, sha256, sha256_file};

fn url(s: impl AsRef<str>) -> Url {
    Url::parse(s.as_ref()).unwrap()
}

fn read_all(f: &mut RemoteFile) -> Vec<u8> {
    let mut v = Vec::new();
    f.read_to_end(&mut v).unwrap();
    v
}

/// Reads `len` bytes at `at` after a seek.
fn read_at(f: &mut RemoteFile, at: u64, len: usize) -> Vec<u8> {
    assert_eq!(f.seek(SeekFrom::Start(at)).unwrap(), at);
    let mut v = vec![0u8; len];
    f.read_exact(&mut v).unwrap();
    v
}

/// The remote files' names, without temporary upload names.
fn visible(dir: &Path) -> Vec<String> {
    names(dir)
}

/// Reads, seeks, writes (replacing and new) and appends (existing and missing) one URL
/// base; `remote` maps a name under it to the server's file on disk.
fn read_write_append(base: &str, remote: &dyn Fn(&str) -> std::path::PathBuf) {
    let data = random_bytes(5_000_011, 7);
    let n = data.len() as u64;
    std::fs::write(remote("f.bin"), &data).unwrap();
    let f_url = url(format!("{base}f.bin"));

    // Read: the whole file, then seeks from the start, the end and the current position.
    let mut f = file::open(&f_url, Mode::Read).unwrap();
    assert_eq!(f.len().unwrap(), n);
    assert_eq!(sha256(&read_all(&mut f)), sha256(&data));
    assert_eq!(f.read(&mut [0u8; 8]).unwrap(), 0, "read past the end");
    assert_eq!(read_at(&mut f, 4_999_000, 11), &data[4_999_000..4_999_011]);
    f.seek(SeekFrom::End(-5)).unwrap();
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, &data[data.len() - 5..]);
    f.seek(SeekFrom::Start(1000)).unwrap();
    f.seek(SeekFrom::Current(-10)).unwrap();
    let mut b = [0u8; 20];
    f.read_exact(&mut b).unwrap();
    assert_eq!(&b, &data[990..1010]);
    let r = f.close().unwrap();
    assert_eq!((r.bytes, r.upload.is_none()), (0, true));

    // Write a new file in pieces, with a seek back to patch a header.
    let new = url(format!("{base}new.bin"));
    let mut w = file::open(&new, Mode::Write).unwrap();
    for chunk in data.chunks(777_777) {
        w.write_all(chunk).unwrap();
    }
    w.seek(SeekFrom::Start(0)).unwrap();
    w.write_all(b"HEADER").unwrap();
    assert!(!remote("new.bin").exists(), "visible before close");
    let r = w.close().unwrap();
    let mut want = data.clone();
    want[..6].copy_from_slice(b"HEADER");
    assert_eq!(r.bytes, n);
    assert_eq!(r.upload.as_ref().map(|u| u.bytes), Some(n));
    assert!(!r.url.contains("s3cret"), "{}", r.url);
    assert_eq!(sha256_file(&remote("new.bin")), sha256(&want));

    // Write over an existing file: replaced whole.
    let mut w = file::open(&f_url, Mode::Write).unwrap();
    w.write_all(b"short now").unwrap();
    w.close().unwrap();
    assert_eq!(std::fs::read(remote("f.bin")).unwrap(), b"short now");

    // Append to an existing file; a seek does not move where writes go.
    let mut a = file::open(&f_url, Mode::Append).unwrap();
    assert_eq!(a.len().unwrap(), 9);
    a.seek(SeekFrom::Start(0)).unwrap();
    a.write_all(b", then more").unwrap();
    let r = a.close().unwrap();
    assert_eq!(r.bytes, 20);
    assert_eq!(
        std::fs::read(remote("f.bin")).unwrap(),
        b"short now, then more"
    );
    // Append to a missing file creates it; big enough to take the data path.
    let log = url(format!("{base}log.bin"));
    let mut a = file::open(&log, Mode::Append).unwrap();
    a.write_all(&data[..3_000_000]).unwrap();
    a.close().unwrap();
    let mut a = file::open(&log, Mode::Append).unwrap();
    a.write_all(&data[3_000_000..]).unwrap();
    a.close().unwrap();
    assert_eq!(sha256_file(&remote("log.bin")), sha256(&data));
}

#[test]
fn read_seek_write_append_against_our_server() {
    let s = Ours::start(|_| {});
    let base = s.url("");
    read_write_append(&base, &|n| s.root.join(n));
    // Only the files written: no temporary upload names left.
    assert_eq!(visible(&s.root), ["f.bin", "log.bin", "new.bin"]);

    // The same through a subdirectory, as a user, with parallel streams and a checksum of
    // every upload and fetch.
    std::fs::create_dir(s.root.join("sub")).unwrap();
    let copy = {
        let mut c = CopyOptions::default();
        c.parallel = Some(3);
        c.verify = Some(Algorithm::Md5);
        c
    };
    let data = random_bytes(2_000_003, 8);
    let sub = url(s.user_url("sub/v.bin"));
    let mut w = OpenOptions::new()
        .mode(Mode::Write)
        .copy_options(copy.clone())
        .open(&sub)
        .unwrap();
    w.write_all(&data).unwrap();
    let r = w.close().unwrap();
    let up = r.upload.unwrap();
    assert!(up.verified && up.path.contains("MODE E"), "{up:?}");
    assert_eq!(sha256_file(&s.root.join("sub/v.bin")), sha256(&data));
    let mut f = OpenOptions::new().copy_options(copy).open(&sub).unwrap();
    assert_eq!(sha256(&read_all(&mut f)), sha256(&data));
    assert_eq!(visible(&s.root.join("sub")), ["v.bin"]);
}

#[test]
fn read_seek_write_append_against_vsftpd() {
    let Some(v) = Vsftpd::start() else {
        return;
    };
    let base = v.url("pub/");
    // vsftpd replaces files its anonymous user owns.
    v.put("f.bin", b"");
    read_write_append(&base, &|n| v.pub_dir.join(n));
    assert_eq!(visible(&v.pub_dir), ["f.bin", "log.bin", "new.bin"]);

    // Outside pub/ vsftpd refuses uploads: close says so with the server's code, and
    // nothing appears.
    let mut w = file::open(&url(v.url("ro.bin")), Mode::Write).unwrap();
    w.write_all(b"refused").unwrap();
    let e = w.close().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Reply(553), "{e}");
    assert_eq!(visible(&v.root), ["pub"]);
    // ERET ranges need a GridFTP server.
    let e = OpenOptions::new()
        .ranges(true)
        .open(&url(v.url("pub/f.bin")))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
}

#[test]
fn close_reports_a_refused_upload_and_leaves_nothing() {
    let s = Ours::start(|c| c.anonymous_write = false);
    std::fs::write(s.root.join("old.bin"), b"old").unwrap();
    let before = visible(&s.root);
    for (name, mode) in [("new.bin", Mode::Write), ("old.bin", Mode::Append)] {
        let mut w = file::open(&url(s.url(name)), mode).unwrap();
        w.write_all(&random_bytes(1_000_000, 9)).unwrap();
        let e = w.close().unwrap_err();
        assert!(
            matches!(
                e.kind(),
                ErrorKind::Reply(550 | 553) | ErrorKind::PermissionDenied
            ),
            "{name}: {e}"
        );
        assert_eq!(visible(&s.root), before, "{name}");
        assert_eq!(std::fs::read(s.root.join("old.bin")).unwrap(), b"old");
    }
    // Open refuses what a local open would: a directory, a missing directory, a missing
    // file to read.
    std::fs::create_dir(s.root.join("d")).unwrap();
    let kind = |u: &str, m| file::open(&url(s.url(u)), m).unwrap_err().kind();
    assert_eq!(kind("d", Mode::Read), ErrorKind::IsADirectory);
    assert_eq!(kind("d", Mode::Write), ErrorKind::IsADirectory);
    assert_eq!(kind("nodir/x", Mode::Write), ErrorKind::NotFound);
    assert_eq!(kind("missing", Mode::Read), ErrorKind::NotFound);
    let bad = format!("ftp://alice:wrong@{}/old.bin", s.addr);
    let e = file::open(&url(bad), Mode::Write).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::PermissionDenied | ErrorKind::Reply(530)
        ),
        "{e}"
    );
}

#[test]
fn drop_without_close_changes_nothing_and_removes_local_copies() {
    let s = Ours::start(|_| {});
    let keep = random_bytes(3_000_000, 10);
    std::fs::write(s.root.join("keep.bin"), &keep).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let target = url(s.url("keep.bin"));
    for mode in [Mode::Write, Mode::Append] {
        let mut w = OpenOptions::new()
            .mode(mode)
            .temp_dir(scratch.path())
            .open(&target)
            .unwrap();
        w.write_all(b"lost on drop").unwrap();
        w.flush().unwrap();
        assert_eq!(names(scratch.path()).len(), 1, "{mode:?}: one local copy");
        drop(w);
        assert_eq!(sha256_file(&s.root.join("keep.bin")), sha256(&keep));
        assert_eq!(visible(&s.root), ["keep.bin"], "{mode:?}");
        assert!(
            names(scratch.path()).is_empty(),
            "{mode:?}: local copy left"
        );
    }
    // A fetched copy has no name at all, even while open.
    let mut r = OpenOptions::new()
        .temp_dir(scratch.path())
        .open(&target)
        .unwrap();
    assert!(names(scratch.path()).is_empty());
    assert_eq!(sha256(&read_all(&mut r)), sha256(&keep));
}

#[test]
fn local_paths_follow_the_same_contract() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.txt");
    let u = Url::Local(p.clone());
    let mut w = file::open(&u, Mode::Write).unwrap();
    w.write_all(b"one\n").unwrap();
    assert!(!p.exists(), "visible before close");
    assert_eq!(w.close().unwrap().bytes, 4);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut a = file::open(&u, Mode::Append).unwrap();
    a.seek(SeekFrom::Start(0)).unwrap();
    a.write_all(b"two\n").unwrap();
    drop(a);
    assert_eq!(std::fs::read(&p).unwrap(), b"one\n");
    let mut a = file::open(&u, Mode::Append).unwrap();
    a.write_all(b"two\n").unwrap();
    a.close().unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"one\ntwo\n");
    // The replaced file's permissions carry over.
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut r = file::open(&u, Mode::Read).unwrap();
    assert_eq!(read_at(&mut r, 4, 3), b"two");
    assert_eq!(names(dir.path()), ["f.txt"]);
    // A device is written in place.
    let mut null = file::open(&Url::Local("/dev/null".into()), Mode::Write).unwrap();
    null.write_all(b"gone").unwrap();
    null.close().unwrap();
    assert!(Path::new("/dev/null").exists());
}

/// Counts the bytes an observer is told about.
#[derive(Default)]
struct Bytes(AtomicU64);
impl CopyObserver for Bytes {
    fn file_done(&self, _src: &str, _dst: &str, bytes: u64) {
        self.0.fetch_add(bytes, Ordering::Relaxed);
    }
}

fn bytes_sent(s: &Ours) -> u64 {
    s.handle
        .stats()
        .into_iter()
        .find(|(k, _)| k == "bytes_sent")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap()
}

#[test]
fn ranges_read_on_demand_with_eret() {
    let s = Ours::start(|_| {});
    let data = random_bytes(10_000_003, 11);
    let n = data.len() as u64;
    std::fs::write(s.root.join("big.bin"), &data).unwrap();
    let mib = 1u64 << 20;
    let obs = Arc::new(Bytes::default());
    let mut f = OpenOptions::new()
        .ranges(true)
        .range_size(mib)
        .observer(obs.clone())
        .open(&url(s.url("big.bin")))
        .unwrap();
    assert_eq!(f.len().unwrap(), n);
    // Small reads in one block, one across a block boundary, one at the very end.
    assert_eq!(read_at(&mut f, 0, 100), &data[..100]);
    assert_eq!(read_at(&mut f, 100, 1000), &data[100..1100]);
    let edge = 5 * mib - 50;
    assert_eq!(
        read_at(&mut f, edge, 100),
        &data[edge as usize..edge as usize + 100]
    );
    f.seek(SeekFrom::End(-3)).unwrap();
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, &data[data.len() - 3..]);
    assert_eq!(f.read(&mut [0u8; 4]).unwrap(), 0);
    f.seek(SeekFrom::Start(n + 100)).unwrap();
    assert_eq!(f.read(&mut [0u8; 4]).unwrap(), 0, "past the end");
    assert!(f.seek(SeekFrom::Current(-(n as i64) - 200)).is_err());
    assert_eq!(f.write(b"x").unwrap_err().raw_os_error(), Some(libc::EBADF));
    f.close().unwrap();
    // Exactly the blocks read: 0, 4, 5 and the last, not the file.
    let last = n - 9 * mib;
    assert_eq!(bytes_sent(&s), 3 * mib + last);
    assert_eq!(obs.0.load(Ordering::Relaxed), 0, "no whole-file fetch");

    // Read whole, block by block, it is the same file.
    let mut f = OpenOptions::new()
        .ranges(true)
        .open(&url(s.url("big.bin")))
        .unwrap();
    assert_eq!(sha256(&read_all(&mut f)), sha256(&data));
    // Without ranges, the open fetches the whole file once.
    let obs = Arc::new(Bytes::default());
    let mut f = OpenOptions::new()
        .observer(obs.clone())
        .open(&url(s.url("big.bin")))
        .unwrap();
    assert_eq!(obs.0.load(Ordering::Relaxed), n);
    assert_eq!(read_at(&mut f, edge, 100), &data[edge as usize..][..100]);
}

/// Reads through the cache: the second open of the same URL is served from it (one RETR at
/// the server), and a changed file is fetched again.
#[test]
fn reads_through_the_cache() {
    let srv = Ours::start(|_| {});
    let data = random_bytes(700_001, 21);
    std::fs::write(srv.root.join("c.bin"), &data).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = gridos_middleware::cache::Cache::open(dir.path().join("cache")).unwrap();
    let u = url(srv.url("c.bin"));
    let retrs = || {
        srv.handle
            .stats()
            .into_iter()
            .find(|(k, _)| k == "transfers_completed")
            .map(|(_, v)| v.parse::<u64>().unwrap())
            .unwrap()
    };
    let before = retrs();
    for _ in 0..2 {
        let mut f = OpenOptions::new()
            .cache(cache.clone(), "job1")
            .open(&u)
            .unwrap();
        assert_eq!(sha256(&read_all(&mut f)), sha256(&data));
    }
    assert_eq!(retrs() - before, 1, "the second open fetched again");
    assert_eq!(cache.list().unwrap()[0].tags, vec!["job1".to_string()]);
    // A new version (another size) is fetched again.
    let data2 = random_bytes(700_002, 22);
    std::fs::write(srv.root.join("c.bin"), &data2).unwrap();
    let mut f = OpenOptions::new()
        .cache(cache.clone(), "job1")
        .open(&u)
        .unwrap();
    assert_eq!(sha256(&read_all(&mut f)), sha256(&data2));
    assert_eq!(retrs() - before, 2);
}
