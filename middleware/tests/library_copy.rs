//! The copy engine as a library, without the command line: [`Copy`] in every direction
//! against our server (in this process) and vsftpd, resume, verify, cancel from an
//! observer, and the error kinds a program matches on. Bytes checked by SHA-256.

mod util;

use gridos_middleware::{
    Algorithm, CancelToken, Copy, CopyObserver, CopyOptions, CopyReport, ErrorKind, Pipeline,
    Result, TransferPlan, Url,
};
use std::path::Path;
use std::sync::{Arc, Mutex};
use util::{Ours, SlowProxy, Vsftpd, make_tree, names, random_bytes, sha256, sha256_file, tree};

fn url(s: impl AsRef<str>) -> Url {
    Url::parse(s.as_ref()).unwrap()
}

fn local(p: &Path) -> Url {
    Url::Local(p.to_path_buf())
}

fn copy(src: Url, dst: Url, o: CopyOptions) -> Result<CopyReport> {
    Copy::new(src, dst).options(o).run()
}

fn opts(f: impl FnOnce(&mut CopyOptions)) -> CopyOptions {
    let mut o = CopyOptions::default();
    f(&mut o);
    o
}

/// Every event a copy reports, and optionally a token to cancel once `cancel_after` bytes
/// are done.
#[derive(Default)]
struct Recorder {
    planned: Mutex<Vec<String>>,
    total: Mutex<Vec<(u64, u64)>>,
    progress: Mutex<Vec<(u64, u64)>>,
    done: Mutex<Vec<(String, String, u64)>>,
    started: Mutex<Vec<(String, Option<u64>)>>,
    cancel: Mutex<Option<(CancelToken, u64)>>,
}

impl CopyObserver for Recorder {
    fn planned(&self, endpoint: &str, _plan: &TransferPlan) {
        self.planned.lock().unwrap().push(endpoint.to_string());
    }
    fn total(&self, files: u64, bytes: u64) {
        self.total.lock().unwrap().push((files, bytes));
    }
    fn progress(&self, done: u64, total: u64) {
        self.progress.lock().unwrap().push((done, total));
        if let Some((t, after)) = &*self.cancel.lock().unwrap()
            && done >= *after
        {
            t.cancel();
        }
    }
    fn file_started(&self, _src: &str, dst: &str, size: Option<u64>) {
        self.started.lock().unwrap().push((dst.to_string(), size));
    }
    fn file_done(&self, src: &str, dst: &str, bytes: u64) {
        self.done
            .lock()
            .unwrap()
            .push((src.to_string(), dst.to_string(), bytes));
    }
}

#[test]
fn every_direction_against_our_servers_with_an_observer() {
    let a = Ours::start(|_| {});
    let b = Ours::start(|_| {});
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(5_000_007, 1);
    let src = dir.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    let n = data.len() as u64;

    // local → ftp, watched.
    let rec = Arc::new(Recorder::default());
    let r = Copy::new(local(&src), url(a.user_url("up.bin")))
        .observer(rec.clone())
        .run()
        .unwrap();
    assert_eq!((r.bytes, r.files, r.skipped), (n, 1, 0));
    assert!(!r.resumed && !r.verified && r.path != "none", "{r:?}");
    assert_eq!(r.tuning.len(), 1);
    assert_eq!(sha256_file(&a.root.join("up.bin")), sha256(&data));
    let planned = rec.planned.lock().unwrap().clone();
    assert_eq!(planned.len(), 1);
    assert!(planned[0].contains(&a.addr.to_string()), "{planned:?}");
    assert!(!planned[0].contains("s3cret"), "password in {planned:?}");
    assert_eq!(*rec.total.lock().unwrap(), [(1, n)]);
    assert_eq!(rec.progress.lock().unwrap().last(), Some(&(n, n)));
    let done = rec.done.lock().unwrap().clone();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].2, n);
    assert!(done[0].0.ends_with("src.bin") && done[0].1.ends_with("up.bin"));
    let started = rec.started.lock().unwrap().clone();
    assert_eq!(started, [(done[0].1.clone(), Some(n))]);

    // ftp → local, ftp → ftp (two servers), local → local.
    let down = dir.path().join("down.bin");
    let r = copy(url(a.url("up.bin")), local(&down), opts(|_| {})).unwrap();
    assert_eq!(r.bytes, n);
    assert_eq!(sha256_file(&down), sha256(&data));
    let r = copy(url(a.url("up.bin")), url(b.url("from-a.bin")), opts(|_| {})).unwrap();
    assert_eq!(r.bytes, n);
    assert!(r.third_party.is_some(), "{r:?}");
    assert_eq!(r.tuning.len(), 2);
    assert_eq!(sha256_file(&b.root.join("from-a.bin")), sha256(&data));
    let twin = dir.path().join("twin.bin");
    let r = copy(local(&down), local(&twin), opts(|_| {})).unwrap();
    assert_eq!((r.bytes, r.tuning.len()), (n, 0));
    assert_eq!(sha256_file(&twin), sha256(&data));
    // An existing directory receives the source under its own name, both sides.
    let into = dir.path().join("into");
    std::fs::create_dir(&into).unwrap();
    copy(url(b.url("from-a.bin")), local(&into), opts(|_| {})).unwrap();
    assert_eq!(sha256_file(&into.join("from-a.bin")), sha256(&data));
    std::fs::create_dir(b.root.join("sub")).unwrap();
    copy(local(&src), url(b.url("sub/")), opts(|_| {})).unwrap();
    assert_eq!(sha256_file(&b.root.join("sub/src.bin")), sha256(&data));

    // Trees: up (into the login directory), down pipelined and not, and server to server.
    let t = dir.path().join("tree");
    make_tree(&t);
    let rec = Arc::new(Recorder::default());
    let r = Copy::new(local(&t), url(a.url("")))
        .options(opts(|o| o.recursive = true))
        .observer(rec.clone())
        .run()
        .unwrap();
    assert_eq!((r.files, r.bytes), (4, 1_300_006));
    assert_eq!(tree(&a.root.join("tree")), tree(&t));
    assert_eq!(*rec.total.lock().unwrap(), [(4, 1_300_006)]);
    for pipeline in [Pipeline::Auto, Pipeline::Never] {
        let back = dir.path().join(format!("back-{pipeline:?}"));
        let r = copy(
            url(a.url("tree")),
            local(&back),
            opts(|o| {
                o.recursive = true;
                o.pipeline = pipeline;
            }),
        )
        .unwrap();
        assert_eq!((r.files, r.bytes), (4, 1_300_006), "{pipeline:?}");
        assert_eq!(tree(&back), tree(&t), "{pipeline:?}");
    }
    let r = copy(
        url(a.url("tree")),
        url(b.url("tree-from-a")),
        opts(|o| o.recursive = true),
    )
    .unwrap();
    assert_eq!(r.files, 4);
    assert_eq!(tree(&b.root.join("tree-from-a")), tree(&t));
    let lt = dir.path().join("local-tree");
    copy(local(&t), local(&lt), opts(|o| o.recursive = true)).unwrap();
    assert_eq!(tree(&lt), tree(&t));
}

#[test]
fn every_direction_against_vsftpd() {
    let Some(v) = Vsftpd::start() else {
        return;
    };
    let ours = Ours::start(|_| {});
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(3_000_001, 2);
    let src = dir.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    let n = data.len() as u64;

    let r = copy(local(&src), url(v.url("pub/up.bin")), opts(|_| {})).unwrap();
    assert_eq!(r.bytes, n);
    assert_eq!(sha256_file(&v.pub_dir.join("up.bin")), sha256(&data));
    let down = dir.path().join("down.bin");
    copy(url(v.url("pub/up.bin")), local(&down), opts(|_| {})).unwrap();
    assert_eq!(sha256_file(&down), sha256(&data));
    // Between vsftpd and our server, both ways.
    copy(
        url(v.url("pub/up.bin")),
        url(ours.url("v.bin")),
        opts(|_| {}),
    )
    .unwrap();
    assert_eq!(sha256_file(&ours.root.join("v.bin")), sha256(&data));
    copy(
        url(ours.url("v.bin")),
        url(v.url("pub/back.bin")),
        opts(|_| {}),
    )
    .unwrap();
    assert_eq!(sha256_file(&v.pub_dir.join("back.bin")), sha256(&data));

    // A tree up and down again (LIST/MLSD of vsftpd, stream mode).
    let t = dir.path().join("tree");
    make_tree(&t);
    v.mkdir("trees");
    let r = copy(
        local(&t),
        url(v.url("pub/trees/")),
        opts(|o| o.recursive = true),
    )
    .unwrap();
    assert_eq!(r.files, 4);
    assert_eq!(tree(&v.pub_dir.join("trees/tree")), tree(&t));
    let back = dir.path().join("back");
    let r = copy(
        url(v.url("pub/trees/tree")),
        local(&back),
        opts(|o| o.recursive = true),
    )
    .unwrap();
    assert_eq!((r.files, r.bytes), (4, 1_300_006));
    assert_eq!(tree(&back), tree(&t));

    // vsftpd's refusal of an upload outside pub/ comes back as its reply code.
    let e = copy(local(&src), url(v.url("nope.bin")), opts(|_| {})).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Reply(553), "{e}");
    assert!(!v.root.join("nope.bin").exists());
    // --verify needs CKSM, which vsftpd lacks: a typed refusal before any byte moves.
    let e = copy(
        url(v.url("pub/up.bin")),
        local(&dir.path().join("unverified.bin")),
        opts(|o| o.verify = Some(Algorithm::Md5)),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(!dir.path().join("unverified.bin").exists());
}

#[test]
fn resume_completes_partial_files_byte_identical() {
    let s = Ours::start(|_| {});
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(6_000_000, 3);
    let n = data.len() as u64;
    std::fs::write(s.root.join("whole.bin"), &data).unwrap();
    let resume = || opts(|o| o.resume = true);

    // A download that stopped after 1 234 567 bytes.
    let part = dir.path().join("part.bin");
    std::fs::write(&part, &data[..1_234_567]).unwrap();
    let r = copy(url(s.url("whole.bin")), local(&part), resume()).unwrap();
    assert!(r.resumed);
    assert_eq!(r.bytes, n - 1_234_567);
    assert_eq!(sha256_file(&part), sha256(&data));
    // Resuming a complete file moves nothing and counts it as skipped.
    let r = copy(url(s.url("whole.bin")), local(&part), resume()).unwrap();
    assert_eq!((r.bytes, r.files, r.skipped), (0, 1, 1));

    // An upload that stopped after 2 000 001 bytes.
    let src = dir.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    std::fs::write(s.root.join("up.bin"), &data[..2_000_001]).unwrap();
    let r = copy(local(&src), url(s.url("up.bin")), resume()).unwrap();
    assert_eq!(r.bytes, n - 2_000_001);
    assert_eq!(sha256_file(&s.root.join("up.bin")), sha256(&data));

    // A destination longer than the source is not "resumed" into garbage.
    std::fs::write(&part, [&data[..], b"extra"].concat()).unwrap();
    let e = copy(url(s.url("whole.bin")), local(&part), resume()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

#[test]
fn verify_compares_checksums_and_catches_a_corrupt_partial() {
    let s = Ours::start(|_| {});
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(4_000_000, 4);
    std::fs::write(s.root.join("f.bin"), &data).unwrap();
    let src = dir.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();

    for alg in [Algorithm::Md5, Algorithm::Adler32, Algorithm::Sha256] {
        let down = dir.path().join(format!("down-{alg:?}.bin"));
        let r = copy(
            url(s.url("f.bin")),
            local(&down),
            opts(|o| o.verify = Some(alg)),
        )
        .unwrap();
        assert!(r.verified);
        assert_eq!(sha256_file(&down), sha256(&data));
        let name = format!("up-{alg:?}.bin");
        let r = copy(
            local(&src),
            url(s.url(&name)),
            opts(|o| o.verify = Some(alg)),
        )
        .unwrap();
        assert!(r.verified);
        assert_eq!(sha256_file(&s.root.join(&name)), sha256(&data));
    }

    // A partial download whose bytes were damaged on disk (one flipped byte): the resume
    // appends the rest, and only the checksum can tell the result is wrong.
    let verify_resume = || {
        opts(|o| {
            o.resume = true;
            o.verify = Some(Algorithm::Md5);
        })
    };
    let mut bad = data[..1_500_000].to_vec();
    bad[777] ^= 0x40;
    let part = dir.path().join("part.bin");
    std::fs::write(&part, &bad).unwrap();
    let e = copy(url(s.url("f.bin")), local(&part), verify_resume()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChecksumMismatch, "{e}");
    assert!(e.to_string().contains("MD5"), "{e}");
    // The same on the server's side of an upload.
    let mut bad = data[..2_500_000].to_vec();
    bad[123_456] ^= 1;
    std::fs::write(s.root.join("part-up.bin"), &bad).unwrap();
    let e = copy(local(&src), url(s.url("part-up.bin")), verify_resume()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChecksumMismatch, "{e}");
}

/// Bytes per second of the slow path: a 64 MiB file takes 4 s, far longer than the copy
/// runs before the observer's first progress report cancels it.
const SLOW: u64 = 16 << 20;

#[test]
fn cancel_from_an_observer_leaves_no_complete_destination() {
    let s = Ours::start(|_| {});
    let proxy = SlowProxy::start(s.addr, SLOW);
    let data = random_bytes(64 << 20, 5);
    let n = data.len() as u64;
    std::fs::write(s.root.join("big.bin"), &data).unwrap();
    let dir = tempfile::tempdir().unwrap();

    // Download: the destination only gets its name once complete, so none appears.
    let dst_dir = dir.path().join("dst");
    std::fs::create_dir(&dst_dir).unwrap();
    let rec = Arc::new(Recorder::default());
    let c =
        Copy::new(url(proxy.url("big.bin")), local(&dst_dir.join("big.bin"))).observer(rec.clone());
    *rec.cancel.lock().unwrap() = Some((c.cancel_token(), 1 << 20));
    let e = c.run().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
    let seen = rec.progress.lock().unwrap().clone();
    assert!(
        seen.iter().any(|&(d, t)| d >= 1 << 20 && d < n && t == n),
        "{seen:?}"
    );
    assert!(rec.done.lock().unwrap().is_empty());
    assert_eq!(names(&dst_dir), Vec::<String>::new(), "leftovers");

    // Upload: stopped short, so the remote file cannot pass for the source.
    let src = dir.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    let rec = Arc::new(Recorder::default());
    let c = Copy::new(local(&src), url(proxy.url("up.bin"))).observer(rec.clone());
    *rec.cancel.lock().unwrap() = Some((c.cancel_token(), 1 << 20));
    let e = c.run().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
    if let Ok(m) = std::fs::metadata(s.root.join("up.bin")) {
        assert!(m.len() < n, "a cancelled upload left {} bytes", m.len());
    }
}

#[test]
fn error_kinds_a_program_can_match() {
    let s = Ours::start(|_| {});
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(s.root.join("d")).unwrap();
    std::fs::write(s.root.join("d/f"), b"x").unwrap();
    let dst = dir.path().join("out");
    let plain = || opts(|_| {});

    let e = copy(url(s.url("missing.bin")), local(&dst), plain()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = copy(local(&dir.path().join("missing")), url(s.url("x")), plain()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = copy(url(s.url("d")), local(&dst), plain()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::IsADirectory, "{e}");
    let e = copy(local(dir.path()), url(s.url("x")), plain()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::IsADirectory, "{e}");
    let bad = format!("ftp://alice:wrong@{}/d/f", s.addr);
    let e = copy(url(&bad), local(&dst), plain()).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::PermissionDenied | ErrorKind::Reply(530)
        ),
        "{e}"
    );
    assert!(!e.to_string().contains("wrong"), "password in {e}");
    // A refused login still carries the server's code underneath.
    let code = std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
        e.source()
    })
    .find_map(|e| e.downcast_ref::<gridos_middleware::Error>()?.reply_code());
    assert_eq!(code, Some(530));
    let e = copy(local(&dst), local(&dst), plain()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let same = dir.path().join("same");
    std::fs::write(&same, b"s").unwrap();
    let e = copy(local(&same), local(&same), plain()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SameFile, "{e}");
    let e = copy(
        url(s.url("d")),
        local(&dst),
        opts(|o| {
            o.recursive = true;
            o.range = Some((0, 1));
        }),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(!dst.exists());
    assert_eq!(names(dir.path()), ["same"]);
}
