//! The traversal corpus: more than two hundred paths that try to leave the docroot (`..` in
//! every position, percent-, double-percent- and UTF-8-encoded dots, Windows separators,
//! absolute host paths, `~`, overlong names and lines, symlinks in and out, dangling and
//! looping symlinks, NUL and invalid UTF-8) sent with every command that takes a path, as the
//! anonymous user and as a password user. Nothing outside the docroot may be read, listed,
//! checksummed, sized, dated, written, renamed, chmod'ed or deleted: the tree outside is
//! compared byte for byte (contents, modes, times, names) after every path.
//!
//! A second test swaps a directory for a symlink to the outside while a client keeps
//! reading, writing and listing through it: every lookup is resolved beneath the docroot at
//! the moment it is made, so the race never wins.
//!
//! The server runs unprivileged and not chrooted: path resolution alone (openat2
//! `RESOLVE_BENEATH`) must hold.

#[path = "server_support.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use gridos_ftp::checksum::{Algorithm, Hasher};
use support::*;

const SECRET: &[u8] = b"CANARY-SECRET-DO-NOT-LEAK";
/// The outside files' modification time: 1999-09-09 09:09:09 UTC, which MDTM must not show.
const OUTSIDE_MTIME: u64 = 936_868_149;
/// A name that exists only outside and that no path of the corpus creates: a listing that
/// shows it listed the outside. (The corpus's own names may legitimately appear inside: a
/// `..` at the top stays at the top, so `MKD ../outside` makes `/outside` in the docroot.)
const MARKER: &str = "zz-only-outside.txt";

/// What a listing, STAT or MLST of the outside would show and one of the inside cannot.
fn shows_outside(text: &str) -> bool {
    text.contains(MARKER) || text.contains("1999") || text.contains("19990909")
}

/// Name → (content, mode, mtime, symlink target) of everything under `dir`, recursively.
type Tree = BTreeMap<String, (Vec<u8>, u32, i64, Option<String>)>;

fn snapshot(dir: &Path) -> Tree {
    fn walk(base: &Path, dir: &Path, m: &mut Tree) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            let rel = e.path().strip_prefix(base).unwrap().display().to_string();
            let link = meta
                .file_type()
                .is_symlink()
                .then(|| std::fs::read_link(e.path()).unwrap().display().to_string());
            let content = if meta.is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            m.insert(
                rel,
                (content, meta.permissions().mode(), meta.mtime(), link),
            );
            if meta.is_dir() {
                walk(base, &e.path(), m);
            }
        }
    }
    let mut m = Tree::new();
    walk(dir, dir, &mut m);
    m
}

/// The outside tree: `dir/outside/{canary.txt, secretdir/deep.txt, MARKER}` and
/// `dir/spare.txt`, all holding SECRET and dated 1999.
fn outside_tree(dir: &Path) -> std::path::PathBuf {
    let outside = dir.join("outside");
    std::fs::create_dir_all(outside.join("secretdir")).unwrap();
    for f in [
        outside.join("canary.txt"),
        outside.join("secretdir/deep.txt"),
        outside.join(MARKER),
        dir.join("spare.txt"),
    ] {
        std::fs::write(&f, SECRET).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(OUTSIDE_MTIME);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    outside
}

/// Links in the docroot that point out of it, one way or another; (re)made before every
/// path, since renaming or deleting a link inside the docroot is allowed and the next path
/// must meet the links again.
fn hostile_links(root: &Path, outside: &Path) {
    std::fs::create_dir_all(root.join("sub/sub2")).unwrap();
    std::fs::write(root.join("inside.txt"), b"inside, harmless").unwrap();
    for (link, target) in [
        ("rel", "../outside".to_string()),
        ("abs", outside.display().to_string()),
        ("canlink", outside.join("canary.txt").display().to_string()),
        ("sub/deeplink", "../../outside/canary.txt".to_string()),
        ("sub/up", "../..".to_string()),
        ("dangle", "../outside/new.txt".to_string()),
        ("chain1", "chain2".to_string()),
        ("chain2", "rel".to_string()),
        ("loop1", "loop2".to_string()),
        ("loop2", "loop1".to_string()),
        ("proc", "/proc/self/root".to_string()),
    ] {
        let at = root.join(link);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&at).unwrap(),
            Ok(_) => std::fs::remove_file(&at).unwrap(),
            Err(_) => {}
        }
        symlink(target, at).unwrap();
    }
}

/// The corpus, as raw bytes (a few are not UTF-8).
fn corpus(outside: &Path) -> Vec<Vec<u8>> {
    let targets = [
        "outside/canary.txt",
        "outside",
        "outside/new.txt",
        "outside/secretdir/deep.txt",
        "spare.txt",
    ];
    // Each reaches the docroot's parent.
    let up = [
        "..",
        "../..",
        "/..",
        "//..",
        "./..",
        "sub/../..",
        "sub/sub2/../../..",
        "sub/./../..",
        "sub//..//..",
        "./sub/../../",
        "sub/../sub/../..",
        "../root/..",
        "../../../../../../../../..",
        "sub/sub2/../../../../../..",
    ];
    let encoded = [
        "%2e%2e/",
        "%2E%2E%2F",
        "..%2f",
        "..%2F..%2F",
        "%2e%2e%2f%2e%2e%2f",
        "%252e%252e%252f",
        "..%252f",
        "..%c0%af",
        "%c0%ae%c0%ae/",
        "\u{ff0e}\u{ff0e}/",
        "\u{2025}/",
        "..\u{2215}",
        "..\u{ff0f}",
        "..\\",
        "..\\..\\",
        "sub\\..\\..\\",
        "..\\/",
        "../\\",
        ".../",
        "..;/",
    ];
    let mut c: Vec<String> = Vec::new();
    for t in targets {
        for u in up {
            c.push(format!("{u}/{t}"));
        }
        for e in encoded {
            c.push(format!("{e}{t}"));
        }
    }
    let host_abs = outside.join("canary.txt").display().to_string();
    let host_dir = outside.display().to_string();
    c.extend([
        "rel/canary.txt".into(),
        "rel".into(),
        "rel/".into(),
        "rel/.".into(),
        "rel/new.txt".into(),
        "rel/secretdir".into(),
        "rel/secretdir/deep.txt".into(),
        "rel/secretdir/new".into(),
        "rel/../outside/canary.txt".into(),
        "abs/canary.txt".into(),
        "abs".into(),
        "abs/new.txt".into(),
        "canlink".into(),
        "sub/deeplink".into(),
        "sub/up/outside/canary.txt".into(),
        "sub/up".into(),
        "sub/up/spare.txt".into(),
        "dangle".into(),
        "chain1/canary.txt".into(),
        "chain1".into(),
        "loop1".into(),
        "loop1/x".into(),
        "proc/etc/passwd".into(),
        "sub/../rel/canary.txt".into(),
        host_abs.clone(),
        host_dir.clone(),
        format!("{host_dir}/"),
        format!("/..{host_abs}"),
        format!("//{host_abs}"),
        format!("{host_dir}/new.txt"),
        "/etc/passwd".into(),
        "/etc".into(),
        "/proc/self/root/etc/passwd".into(),
        "/proc/self/cwd".into(),
        "/proc/self/environ".into(),
        "~".into(),
        "~/../outside/canary.txt".into(),
        "~root".into(),
        "~root/../outside".into(),
        "../outside/canary.txt/".into(),
        "../outside/canary.txt/.".into(),
        "../outside//canary.txt".into(),
        "../outside/./canary.txt".into(),
        "../outside/canary.txt%00".into(),
        "..%00/outside/canary.txt".into(),
        " ../outside/canary.txt".into(),
        "../outside/canary.txt ".into(),
        format!("{}/../../outside/canary.txt", "a".repeat(255)),
        format!("{}/../../outside/canary.txt", "a".repeat(256)),
        format!("{}/../outside/canary.txt", "b".repeat(4096)),
        format!(
            "{}{}outside/canary.txt",
            "x/".repeat(1000),
            "../".repeat(1001)
        ),
        format!("{}outside/canary.txt", "../".repeat(3000)),
    ]);
    let mut c: Vec<Vec<u8>> = c.into_iter().map(String::into_bytes).collect();
    // Overlong UTF-8 dots and slashes, and NUL: not text; the parser must refuse them.
    c.extend([
        b"\xc0\xae\xc0\xae/outside/canary.txt".to_vec(),
        b"\xe0\x80\xae\xe0\x80\xae/outside/canary.txt".to_vec(),
        b"..\xc0\xafoutside\xc0\xafcanary.txt".to_vec(),
        b"../outside/canary.txt\0.txt".to_vec(),
        b"inside.txt\0../outside/canary.txt".to_vec(),
        b"\xff\xfe../outside".to_vec(),
    ]);
    c
}

/// A control connection that sends paths as raw bytes.
struct Client {
    raw: Raw,
    /// Counts renames, so that each RNTO names a fresh file inside the docroot.
    n: usize,
    /// The docroot, where the rename-into-outside attempt gets its scratch file.
    root: std::path::PathBuf,
}

impl Client {
    fn login(s: &TestServer, user: Option<(&str, &str)>) -> Client {
        let addr = s.addr;
        let raw = match user {
            None => Raw::anon(addr),
            Some((u, p)) => {
                let (mut raw, g) = Raw::connect(addr);
                assert_eq!(g.0, 220);
                assert_eq!(raw.cmd(&format!("USER {u}")).0, 331);
                assert_eq!(raw.cmd(&format!("PASS {p}")).0, 230);
                raw
            }
        };
        Client {
            raw,
            n: 0,
            root: s.root.clone(),
        }
    }

    fn line(&mut self, verb: &str, path: &[u8]) -> (u16, String) {
        let mut l = verb.as_bytes().to_vec();
        l.push(b' ');
        l.extend_from_slice(path);
        l.extend_from_slice(b"\r\n");
        self.raw.send(&l);
        self.raw.reply()
    }

    /// A command with a data connection in: the bytes, or the refusing code.
    fn data_in(&mut self, verb: &str, path: &[u8]) -> Result<Vec<u8>, u16> {
        let a = self.raw.epsv();
        let mut d = TcpStream::connect(a).unwrap();
        d.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let (code, _) = self.line(verb, path);
        if code >= 400 || code == 0 {
            return Err(code);
        }
        let mut buf = Vec::new();
        let _ = d.read_to_end(&mut buf);
        match self.raw.reply().0 {
            226 | 250 => Ok(buf),
            c => Err(c),
        }
    }

    /// A command with a data connection out.
    fn data_out(&mut self, verb: &str, path: &[u8], data: &[u8]) -> u16 {
        let a = self.raw.epsv();
        let mut d = TcpStream::connect(a).unwrap();
        let (code, _) = self.line(verb, path);
        if code >= 400 || code == 0 {
            return code;
        }
        let _ = d.write_all(data);
        drop(d);
        self.raw.reply().0
    }

    /// Every command that takes a path, with checks on what comes back.
    fn attack(&mut self, p: &[u8], secret_md5: &str) {
        let show = String::from_utf8_lossy(p).into_owned();
        let leaked = |b: &[u8]| b.windows(SECRET.len()).any(|w| w == SECRET);
        for verb in ["RETR", "ERET P 0 100"] {
            if let Ok(b) = self.data_in(verb, p) {
                assert!(!leaked(&b), "{verb} {show} leaked");
            }
        }
        for verb in ["LIST", "NLST", "MLSD", "LIST -a", "NLST -R"] {
            if let Ok(b) = self.data_in(verb, p) {
                let t = String::from_utf8_lossy(&b);
                assert!(!shows_outside(&t), "{verb} {show} listed outside: {t}");
            }
        }
        let (code, t) = self.line("STAT", p);
        assert!(code >= 400 || !shows_outside(&t), "STAT {show}: {t}");
        let (code, t) = self.line("MLST", p);
        assert!(code >= 400 || !shows_outside(&t), "MLST {show}: {t}");
        let (code, t) = self.line("SIZE", p);
        assert!(
            code >= 400 || t.trim() != format!("213 {}", SECRET.len()),
            "SIZE {show}: {t}"
        );
        let (code, t) = self.line("MDTM", p);
        assert!(code >= 400 || !t.contains("19990909"), "MDTM {show}: {t}");
        let (code, t) = self.line("CKSM MD5 0 -1", p);
        assert!(
            code >= 400 || !t.to_ascii_lowercase().contains(secret_md5),
            "CKSM {show}: {t}"
        );
        if self.line("CWD", p).0 == 250 {
            if let Ok(b) = self.data_in("LIST", b"") {
                let t = String::from_utf8_lossy(&b);
                assert!(!shows_outside(&t), "CWD {show} + LIST: {t}");
            }
            if let Ok(b) = self.data_in("RETR", b"canary.txt") {
                assert!(!leaked(&b), "CWD {show} + RETR leaked");
            }
            let _ = self.raw.cmd("CDUP");
            assert_eq!(self.raw.cmd("CWD /").0, 250);
        }
        let _ = self.data_out("STOR", p, b"overwritten");
        let _ = self.data_out("APPE", p, b"appended");
        let _ = self.data_out("ESTO A 0", p, b"adjusted");
        let _ = self.line("SITE CHMOD 777", p);
        let _ = self.line("MFMT 20200101000000", p);
        let _ = self.line("DELE", p);
        let _ = self.line("RMD", p);
        let _ = self.line("MKD", p);
        let mut newdir = p.to_vec();
        newdir.extend_from_slice(b"/newdir");
        let _ = self.line("MKD", &newdir);
        // Rename out of the outside, and into it.
        self.n += 1;
        if self.line("RNFR", p).0 == 350 {
            let _ = self.raw.cmd(&format!("RNTO taken{}", self.n));
        }
        std::fs::write(
            self.root.join("scratch.txt"),
            b"a file that must not leave the docroot",
        )
        .unwrap();
        if self.raw.cmd("RNFR scratch.txt").0 == 350 {
            let _ = self.line("RNTO", p);
        }
    }
}

#[test]
fn a_corpus_of_hostile_paths_never_leaves_the_docroot() {
    let s = start(|c| c.users = vec![("alice".into(), "wonderland".into())]);
    let outside = outside_tree(s.dir.path());
    hostile_links(&s.root, &outside);
    let paths = corpus(&outside);
    assert!(paths.len() >= 200, "corpus of {}", paths.len());
    eprintln!("{} paths, each with 24 commands, as two users", paths.len());
    let mut h = Hasher::new(Algorithm::Md5);
    h.update(SECRET);
    let secret_md5 = h.finish().to_ascii_lowercase();

    let before = snapshot(s.dir.path());
    let keep = |t: &Tree| -> Tree {
        // Only what lies outside the docroot is compared.
        t.iter()
            .filter(|(k, _)| !k.starts_with("root"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let before = keep(&before);
    for user in [None, Some(("alice", "wonderland"))] {
        let mut c = Client::login(&s, user);
        for p in &paths {
            hostile_links(&s.root, &outside);
            c.attack(p, &secret_md5);
            let now = keep(&snapshot(s.dir.path()));
            assert_eq!(
                now,
                before,
                "outside changed after {:?} as {user:?}",
                String::from_utf8_lossy(p)
            );
        }
        // NUL and invalid UTF-8 are refused by the parser, not guessed at.
        for bad in [
            &b"RETR ../outside/canary.txt\0.txt"[..],
            b"DELE canlink\0",
            b"SIZE \xc0\xae\xc0\xae/outside/canary.txt",
        ] {
            c.raw.send(&[bad, b"\r\n"].concat());
            assert_eq!(c.raw.reply().0, 501, "{:?}", String::from_utf8_lossy(bad));
        }
        // The session still works, and so does what is inside.
        assert_eq!(c.raw.cmd("CWD /").0, 250);
        assert_eq!(
            c.data_in("RETR", b"inside.txt").unwrap(),
            b"inside, harmless"
        );
        assert_eq!(c.raw.cmd("QUIT").0, 221);
    }
}

#[test]
fn a_directory_swapped_for_a_symlink_during_transfers_never_leads_outside() {
    let s = start(|_| {});
    let outside = outside_tree(s.dir.path());
    // `race` is a real directory (with its own harmless canary.txt) or a symlink to the
    // outside, swapped by rename(2) as fast as the swapper can.
    let real = s.root.join(".race-dir");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("canary.txt"), b"the inside canary").unwrap();
    symlink(&outside, s.root.join(".race-link")).unwrap();
    let race = s.root.join("race");
    std::fs::rename(&real, &race).unwrap();
    let before = snapshot(&outside);
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = {
        let (stop, root) = (stop.clone(), s.root.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // race → .race-dir, .race-link → race; then back.
                let (r, d, l) = (
                    root.join("race"),
                    root.join(".race-dir"),
                    root.join(".race-link"),
                );
                if std::fs::rename(&r, &d).is_ok() && std::fs::rename(&l, &r).is_ok() {
                    std::thread::yield_now();
                    let _ = std::fs::rename(&r, &l);
                    let _ = std::fs::rename(&d, &r);
                    n += 1;
                }
            }
            n
        })
    };
    let mut c = Client::login(&s, None);
    let (mut reads, mut listed) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut i = 0;
    while Instant::now() < deadline {
        i += 1;
        if let Ok(b) = c.data_in("RETR", b"race/canary.txt") {
            assert!(
                !b.windows(SECRET.len()).any(|w| w == SECRET),
                "RETR through the swapped link leaked"
            );
            reads += 1;
        }
        if let Ok(b) = c.data_in("MLSD", b"race") {
            let t = String::from_utf8_lossy(&b);
            assert!(
                !t.contains("secretdir"),
                "MLSD race listed the outside: {t}"
            );
            listed += 1;
        }
        let _ = c.data_out("STOR", format!("race/new{i}.txt").as_bytes(), b"x");
        let _ = c.line("MKD", format!("race/dir{i}").as_bytes());
        if c.line("CWD", b"race").0 == 250 {
            if let Ok(b) = c.data_in("RETR", b"canary.txt") {
                assert!(
                    !b.windows(SECRET.len()).any(|w| w == SECRET),
                    "CWD race + RETR leaked"
                );
            }
            assert_eq!(c.raw.cmd("CWD /").0, 250);
        }
        let _ = c.line("DELE", format!("race/new{i}.txt").as_bytes());
        let _ = c.line("RMD", format!("race/dir{i}").as_bytes());
        assert_eq!(
            snapshot(&outside),
            before,
            "the outside changed in round {i}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let swapped = swaps.join().unwrap();
    eprintln!("{i} rounds, {swapped} swaps, {reads} reads and {listed} listings went through");
    assert!(swapped > 100, "the swapper barely ran ({swapped} swaps)");
    assert!(reads > 0, "no read went through the real directory");
    assert_eq!(snapshot(&outside), before);
    // The control connection is still in order.
    assert_eq!(c.raw.cmd("NOOP").0, 200);
}
