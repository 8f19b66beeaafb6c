//! MFMT (set modification times) on our server, driven by real peers over loopback: Python's
//! ftplib for the exact replies (good, fractional, bad time, missing file, a symlink out of
//! the docroot, anonymous refused) and rclone's FTP backend, which sets times with MFMT when
//! FEAT lists it. Times are checked on the files themselves, bytes by SHA-256.

#[path = "server_support.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::*;

/// 2001-02-03 04:05:06 UTC.
const T2001: u64 = 981_173_106;

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

fn set_mtime(p: &Path, t: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("spawn peer");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const FTPLIB_SCRIPT: &str = r#"
import ftplib, sys
host, port = sys.argv[1], int(sys.argv[2])
out = []
def cmd(f, key, c):
    try:
        r = f.sendcmd(c)
    except ftplib.all_errors as e:
        r = str(e)
    out.append(key + "\t" + r.replace("\r", "").replace("\n", "|"))
f = ftplib.FTP()
f.connect(host, port, timeout=20)
f.login("alice", "secret")
cmd(f, "feat", "FEAT")
cmd(f, "good", "MFMT 20010203040506 f.txt")
cmd(f, "frac", "MFMT 20020304050607.250 dir/g")
cmd(f, "mdtm", "MDTM f.txt")
cmd(f, "mlst", "MLST f.txt")
cmd(f, "bad", "MFMT 2001020304 f.txt")
cmd(f, "badday", "MFMT 20010230000000 f.txt")
cmd(f, "missing", "MFMT 20010203040506 nope.txt")
cmd(f, "escape", "MFMT 20010203040506 escape")
cmd(f, "dir", "MFMT 20030101000000 dir")
f.quit()
a = ftplib.FTP()
a.connect(host, port, timeout=20)
a.login()
cmd(a, "anon", "MFMT 19990101000000 f.txt")
a.quit()
print("\n".join(out))
"#;

#[test]
fn python_ftplib_mfmt_replies() {
    if !need("python3") {
        return;
    }
    let s = start(|c| {
        c.anonymous_write = false;
        c.users = vec![("alice".into(), "secret".into())];
    });
    std::fs::write(s.root.join("f.txt"), b"hello").unwrap();
    std::fs::create_dir(s.root.join("dir")).unwrap();
    std::fs::write(s.root.join("dir/g"), b"g").unwrap();
    // A file outside the docroot, and a symlink to it inside: MFMT must not reach it.
    let outside = s.dir.path().join("outside");
    std::fs::write(&outside, b"secret").unwrap();
    let before = mtime(&outside);
    std::os::unix::fs::symlink(&outside, s.root.join("escape")).unwrap();

    let out = run(Command::new("python3").args([
        "-c",
        FTPLIB_SCRIPT,
        "127.0.0.1",
        &s.addr.port().to_string(),
    ]));
    let text = String::from_utf8(out.stdout).unwrap();
    let r: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('\t')).collect();

    assert!(r["feat"].split('|').any(|l| l == " MFMT"), "{}", r["feat"]);
    assert_eq!(r["good"], "213 Modify=20010203040506; f.txt");
    assert_eq!(
        mtime(&s.root.join("f.txt")),
        UNIX_EPOCH + Duration::from_secs(T2001)
    );
    // 2002-03-04 05:06:07.25 UTC, to the nanosecond on disk.
    assert_eq!(r["frac"], "213 Modify=20020304050607.25; dir/g");
    assert_eq!(
        mtime(&s.root.join("dir/g")),
        UNIX_EPOCH + Duration::from_millis(1_015_218_367_250)
    );
    assert_eq!(r["mdtm"], "213 20010203040506");
    assert!(
        r["mlst"].contains("modify=20010203040506;"),
        "{}",
        r["mlst"]
    );
    assert!(r["bad"].starts_with("501 "), "{}", r["bad"]);
    assert!(r["badday"].starts_with("501 "), "{}", r["badday"]);
    assert!(r["missing"].starts_with("550 "), "{}", r["missing"]);
    assert!(r["escape"].starts_with("550 "), "{}", r["escape"]);
    assert_eq!(mtime(&outside), before, "MFMT reached out of the docroot");
    assert_eq!(r["dir"], "213 Modify=20030101000000; dir");
    assert_eq!(
        mtime(&s.root.join("dir")),
        UNIX_EPOCH + Duration::from_secs(1_041_379_200)
    );
    // Anonymous users are read-only here: refused, and the time stays.
    assert!(r["anon"].starts_with("550 "), "{}", r["anon"]);
    assert_eq!(
        mtime(&s.root.join("f.txt")),
        UNIX_EPOCH + Duration::from_secs(T2001)
    );
}

fn rclone(conf: &Path, port: u16, pass: &str) -> Command {
    let mut c = Command::new("rclone");
    c.env("RCLONE_CONFIG", conf)
        .env("TZ", "UTC")
        .args(["--ftp-host", "127.0.0.1", "--ftp-port"])
        .arg(port.to_string())
        .args(["--ftp-user", "alice", "--ftp-pass", pass])
        .args([
            "--contimeout",
            "10s",
            "--timeout",
            "30s",
            "--low-level-retries",
            "1",
        ]);
    c
}

#[test]
fn rclone_sets_modification_times() {
    if !need("rclone") {
        return;
    }
    let s = start(|c| c.users = vec![("alice".into(), "secret".into())]);
    let work = s.dir.path();
    let conf = work.join("rclone.conf");
    std::fs::write(&conf, "").unwrap();
    let pass = String::from_utf8(run(Command::new("rclone").args(["obscure", "secret"])).stdout)
        .unwrap()
        .trim()
        .to_string();

    let src = work.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let big = random_bytes(300_000, 11);
    std::fs::write(src.join("a.bin"), &big).unwrap();
    std::fs::write(src.join("sub/b.txt"), b"small file\n").unwrap();
    let t_a = UNIX_EPOCH + Duration::from_secs(T2001);
    let t_b = UNIX_EPOCH + Duration::from_secs(T2001 + 86_400 + 3_600);
    set_mtime(&src.join("a.bin"), t_a);
    set_mtime(&src.join("sub/b.txt"), t_b);

    let out = run(rclone(&conf, s.addr.port(), &pass)
        .args(["copy", "-v"])
        .arg(&src)
        .arg(":ftp:dst"));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("not supported"), "{log}");

    let dst = s.root.join("dst");
    assert_eq!(sha(&std::fs::read(dst.join("a.bin")).unwrap()), sha(&big));
    assert_eq!(
        std::fs::read(dst.join("sub/b.txt")).unwrap(),
        b"small file\n"
    );
    assert_eq!(mtime(&dst.join("a.bin")), t_a);
    assert_eq!(mtime(&dst.join("sub/b.txt")), t_b);

    // rclone reads the times back (MLSD) as it set them.
    let out = run(rclone(&conf, s.addr.port(), &pass).args(["lsl", ":ftp:dst"]));
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(
        listing
            .lines()
            .any(|l| l.contains("2001-02-03 04:05:06") && l.ends_with(" a.bin")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.contains("2001-02-04 05:05:06") && l.ends_with(" sub/b.txt")),
        "{listing}"
    );

    // A second copy finds sizes and times equal: nothing is sent again.
    let out = run(rclone(&conf, s.addr.port(), &pass)
        .args(["copy", "-v"])
        .arg(&src)
        .arg(":ftp:dst"));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("Copied"), "{log}");
}
