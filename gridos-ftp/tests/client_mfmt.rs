//! `Client::set_modified` (MFMT) and the times `Client::stat` reports, against our server
//! (MFMT, MLST) and a real vsftpd (no MFMT: a typed error; no MLST: `stat` takes MDTM's
//! time). Times are checked on the files themselves.

#[path = "server_support.rs"]
mod support;

#[path = "client_peers.rs"]
mod peers;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gridos_ftp::client::{Client, ClientConfig, EntryKind, Error, PutMode};

/// 2001-02-03 04:05:06 UTC.
const T2001: u64 = 981_173_106;

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

#[test]
fn set_modified_and_stat_round_trip_on_our_server() {
    let s = support::start(|c| c.users = vec![("alice".into(), "secret".into())]);
    let mut c = Client::connect(s.addr, ClientConfig::default()).unwrap();
    c.login("alice", "secret").unwrap();
    assert!(c.features().mfmt && c.features().mlst, "{:?}", c.features());

    let data = support::random_bytes(70_000, 5);
    let src = tempfile::tempfile().unwrap();
    gridos_io::file_write(&src, 0, &data).unwrap();
    c.mkdir("d").unwrap();
    c.put(&src, 0, data.len() as u64, "d/f.bin", PutMode::Store)
        .unwrap();
    assert_eq!(
        support::sha(&std::fs::read(s.root.join("d/f.bin")).unwrap()),
        support::sha(&data)
    );

    // Whole seconds: the same time comes back from MLST and MDTM, and is on disk.
    let t = UNIX_EPOCH + Duration::from_secs(T2001);
    c.set_modified("d/f.bin", t).unwrap();
    assert_eq!(mtime(&s.root.join("d/f.bin")), t);
    let e = c.stat("d/f.bin").unwrap().unwrap();
    assert_eq!(
        (e.name.as_str(), e.kind, e.size, e.modified),
        ("f.bin", EntryKind::File, Some(data.len() as u64), Some(t))
    );
    assert_eq!(c.mdtm("d/f.bin").unwrap(), t);

    // Fractions go to the millisecond (the rest is cut), MLST shows whole seconds.
    let frac = t + Duration::from_nanos(123_456_789);
    c.set_modified("/d/f.bin", frac).unwrap();
    assert_eq!(
        mtime(&s.root.join("d/f.bin")),
        t + Duration::from_millis(123)
    );
    assert_eq!(c.stat("d/f.bin").unwrap().unwrap().modified, Some(t));

    // Before 1970, and a directory.
    let old = UNIX_EPOCH - Duration::from_secs(86_400 * 365);
    c.set_modified("d", old).unwrap();
    assert_eq!(mtime(&s.root.join("d")), old);
    let e = c.stat("d").unwrap().unwrap();
    assert_eq!((e.kind, e.modified), (EntryKind::Dir, Some(old)));

    // A missing file is the server's 550; the connection stays in step.
    let e = c.set_modified("nope", t).unwrap_err();
    assert_eq!(e.reply_code(), Some(550), "{e}");
    assert!(matches!(
        c.set_modified("a\r\nDELE d/f.bin", t),
        Err(Error::InvalidArgument(_))
    ));
    c.noop().unwrap();
    assert!(s.root.join("d/f.bin").exists());
    c.quit().unwrap();
}

#[test]
fn anonymous_read_only_users_may_not_set_times() {
    let s = support::start(|c| c.anonymous_write = false);
    std::fs::write(s.root.join("f"), b"x").unwrap();
    let before = mtime(&s.root.join("f"));
    let mut c = Client::connect(s.addr, ClientConfig::default()).unwrap();
    c.login_anonymous().unwrap();
    let e = c
        .set_modified("f", UNIX_EPOCH + Duration::from_secs(T2001))
        .unwrap_err();
    assert!(e.is_permanent() && e.reply_code() == Some(550), "{e}");
    assert_eq!(mtime(&s.root.join("f")), before);
}

#[test]
fn vsftpd_has_no_mfmt_and_stat_uses_mdtm() {
    let Some(v) = peers::Vsftpd::start("127.0.0.1") else {
        return;
    };
    let file = v.pub_dir.join("old.txt");
    std::fs::write(&file, b"vsftpd").unwrap();
    let t = UNIX_EPOCH + Duration::from_secs(T2001);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(t)
        .unwrap();
    let mut c = Client::connect(v.addr(), ClientConfig::default()).unwrap();
    c.login_anonymous().unwrap();
    assert!(!c.features().mfmt && !c.features().mlst && c.features().mdtm);
    // Refused before anything is sent: the file keeps its time, the connection its state.
    let e = c
        .set_modified("/pub/old.txt", UNIX_EPOCH + Duration::from_secs(7))
        .unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
    c.noop().unwrap();
    assert_eq!(mtime(&file), t);
    // Without MLST, stat gets the time from MDTM (vsftpd answers in UTC).
    let e = c.stat("/pub/old.txt").unwrap().unwrap();
    assert_eq!(
        (e.kind, e.size, e.modified),
        (EntryKind::File, Some(6), Some(t))
    );
    c.quit().unwrap();
}
