//! The URL path rules against servers that are not ours, with `gridos cp` and the library:
//!
//! - `ftp://host/dir/f` is relative to the login directory (RFC 1738), `ftp://host/%2Fdir/f`
//!   absolute;
//! - `gridftp://host/dir/f` is absolute, `gridftp://host/~/f` under the home directory.
//!
//! vsftpd runs for a local account made by the test (`useradd`, a password, its own PAM
//! service with pam_unix) that is not chrooted, so its login directory (its home) and the
//! root differ: the case that broke when `ftp://` paths were taken as absolute.
//! globus-gridftp-server runs anonymously with `-home-dir` (nobody's passwd home does
//! not exist). To show which rule a server applied, some tests use a *twin* path: the same
//! text names one file under the login directory and another from the root
//! (`HOME/tmp/x/f` and `/tmp/x/f`), with different contents. Bytes are compared by SHA-256.
//! Needs root and the peers; skipped without them (fails with `CI=true`).

mod util;

use gridos_middleware::{Copy, CopyOptions, ErrorKind, Url};
use std::path::{Path, PathBuf};
use util::{Globus, VsftpdUser, gridos, make_tree, random_bytes, sha256, sha256_file, tree};

/// `gridos cp -q args…`, which must succeed (`log` is the server's, for the message).
fn cp(args: &[&str], log: impl Fn() -> String) {
    let mut all = vec!["cp", "-q"];
    all.extend_from_slice(args);
    let r = gridos(&all);
    assert!(
        r.status.success(),
        "gridos {all:?} failed ({}): {}\nserver log:\n{}",
        r.status,
        r.stderr,
        log()
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `p` without its leading `/`: as a URL path it names `p` under the login directory.
fn rel(p: &Path) -> &str {
    s(p).trim_start_matches('/')
}

/// Asserts that `p` holds exactly `want`.
fn holds(p: &Path, want: &[u8], what: &str) {
    assert!(p.is_file(), "{what}: {} does not exist", p.display());
    assert_eq!(sha256_file(p), sha256(want), "{what}: {}", p.display());
}

/// Files of distinct content (a few hundred KiB each).
fn data(seed: u64) -> Vec<u8> {
    random_bytes(200_000 + seed as usize * 1_111, seed)
}

fn file_uid(p: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).unwrap().uid()
}

// ---------------------------------------------------------------------------------------
// vsftpd, local user, not chrooted

#[test]
fn vsftpd_local_user_relative_and_absolute_paths_with_gridos_cp() {
    let Some(v) = VsftpdUser::start() else {
        return;
    };
    let log = || v.log();
    let home = v.home().to_path_buf();
    let local = tempfile::tempdir().unwrap();
    let l = |name: &str| local.path().join(name);

    // Download relative: HOME/rel/f.bin. There is no /rel/f.bin, so reading the path as
    // absolute (the old behaviour) would fail with 550.
    let a = data(1);
    v.mkdir(&home.join("rel"));
    v.put(&home.join("rel/f.bin"), &a);
    assert!(!Path::new("/rel/f.bin").exists());
    cp(&[&v.url("rel/f.bin"), s(&l("a.bin"))], log);
    holds(
        &l("a.bin"),
        &a,
        "ftp://…/rel/f.bin comes from HOME/rel/f.bin",
    );

    // The twin: the same text names HOME/<outside>/twin.bin and the real <outside>/twin.bin.
    let (near, far) = (data(2), data(3));
    let twin = v.outside.join("twin.bin");
    v.put(&home.join(rel(&twin)), &near);
    v.put(&twin, &far);
    cp(&[&v.url(rel(&twin)), s(&l("near.bin"))], log);
    holds(
        &l("near.bin"),
        &near,
        "ftp://…/PATH is under the login directory",
    );
    cp(
        &[&v.url(&format!("%2F{}", rel(&twin))), s(&l("far.bin"))],
        log,
    );
    holds(&l("far.bin"), &far, "ftp://…/%2FPATH is from the root");
    // The home itself by its absolute path.
    cp(
        &[
            &v.url(&format!("%2F{}/rel/f.bin", rel(&home))),
            s(&l("abs-home.bin")),
        ],
        log,
    );
    holds(&l("abs-home.bin"), &a, "ftp://…/%2FHOME/rel/f.bin");

    // Uploads, relative: into the home itself, into a directory of it, and into a
    // directory given as the destination (the file keeps its name); written by the user.
    let up = data(4);
    std::fs::write(l("up.bin"), &up).unwrap();
    cp(&[s(&l("up.bin")), &v.url("new.bin")], log);
    holds(&home.join("new.bin"), &up, "upload to ftp://…/new.bin");
    assert_eq!(file_uid(&home.join("new.bin")), v.user.uid);
    cp(&[s(&l("up.bin")), &v.url("rel/new2.bin")], log);
    holds(
        &home.join("rel/new2.bin"),
        &up,
        "upload to ftp://…/rel/new2.bin",
    );
    cp(&[s(&l("up.bin")), &v.url("rel/")], log);
    holds(&home.join("rel/up.bin"), &up, "upload to ftp://…/rel/");
    assert!(!v.outside.join("new.bin").exists());

    // Uploads, absolute: to the outside directory, nothing under the home; back again.
    let up2 = data(5);
    std::fs::write(l("up2.bin"), &up2).unwrap();
    let target = v.outside.join("abs-up.bin");
    cp(
        &[s(&l("up2.bin")), &v.url(&format!("%2F{}", rel(&target)))],
        log,
    );
    holds(&target, &up2, "upload to ftp://…/%2FOUTSIDE/abs-up.bin");
    assert!(!home.join(rel(&target)).exists(), "landed under the home");
    cp(
        &[
            &v.url(&format!("%2F{}", rel(&target))),
            s(&l("abs-down.bin")),
        ],
        log,
    );
    holds(
        &l("abs-down.bin"),
        &up2,
        "download of ftp://…/%2FOUTSIDE/abs-up.bin",
    );

    // A tree, relative, up into HOME/trees/ and down again.
    let t = l("tree");
    make_tree(&t);
    v.mkdir(&home.join("trees"));
    cp(&["-r", s(&t), &v.url("trees/")], log);
    assert_eq!(tree(&home.join("trees/tree")), tree(&t), "tree up");
    cp(&["-r", &v.url("trees/tree"), s(&l("tree-back"))], log);
    assert_eq!(tree(&l("tree-back")), tree(&t), "tree down");
    // And the same tree by its absolute path.
    cp(
        &[
            "-r",
            &v.url(&format!("%2F{}/trees/tree", rel(&home))),
            s(&l("tree-abs")),
        ],
        log,
    );
    assert_eq!(tree(&l("tree-abs")), tree(&t), "tree down by %2F");
}

fn parse(u: &str) -> Url {
    Url::parse(u).unwrap_or_else(|e| panic!("{u}: {e}"))
}

fn local(p: &Path) -> Url {
    Url::Local(p.to_path_buf())
}

/// The path `Url::parse` makes of an ftp:// or gridftp:// URL.
fn path_of(u: &str) -> String {
    match parse(u) {
        Url::Ftp(f) => f.path,
        other => panic!("{u}: not an FTP URL: {other:?}"),
    }
}

#[test]
fn vsftpd_local_user_relative_and_absolute_paths_with_the_library() {
    let Some(v) = VsftpdUser::start() else {
        return;
    };
    let home = v.home().to_path_buf();
    let local_dir = tempfile::tempdir().unwrap();
    let l = |name: &str| local_dir.path().join(name);
    let twin = v.outside.join("lib-twin.bin");
    let (near, far) = (data(6), data(7));
    v.put(&home.join(rel(&twin)), &near);
    v.put(&twin, &far);

    let relative = v.url(rel(&twin));
    let absolute = v.url(&format!("%2F{}", rel(&twin)));
    assert_eq!(path_of(&relative), rel(&twin));
    assert_eq!(path_of(&absolute), s(&twin));
    let run = |src: Url, dst: Url| {
        Copy::new(src, dst)
            .run()
            .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", v.log()))
    };
    let r = run(parse(&relative), local(&l("near.bin")));
    assert_eq!(r.bytes, near.len() as u64);
    holds(&l("near.bin"), &near, "library: relative");
    run(parse(&absolute), local(&l("far.bin")));
    holds(&l("far.bin"), &far, "library: %2F absolute");

    // Uploads both ways.
    let up = data(8);
    std::fs::write(l("up.bin"), &up).unwrap();
    run(local(&l("up.bin")), parse(&v.url("lib-up.bin")));
    holds(&home.join("lib-up.bin"), &up, "library: relative upload");
    let target = v.outside.join("lib-abs.bin");
    run(
        local(&l("up.bin")),
        parse(&v.url(&format!("%2F{}", rel(&target)))),
    );
    holds(&target, &up, "library: %2F upload");
    assert!(!home.join(rel(&target)).exists());

    // A relative tree.
    let t = l("tree");
    make_tree(&t);
    let mut o = CopyOptions::default();
    o.recursive = true;
    let r = Copy::new(local(&t), parse(&v.url("lib-tree")))
        .options(o.clone())
        .run()
        .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", v.log()));
    assert_eq!(r.files, 4);
    assert_eq!(tree(&home.join("lib-tree")), tree(&t));

    // PAM checks the password for real (pam_unix against /etc/shadow).
    let wrong = v
        .url("lib-up.bin")
        .replacen(&v.user.url_password(), "wrong", 1);
    let e = Copy::new(parse(&wrong), local(&l("never.bin")))
        .run()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains("530"), "{e}");
    assert!(!l("never.bin").exists());
}

// ---------------------------------------------------------------------------------------
// globus-gridftp-server, anonymous

#[test]
fn globus_percent_2f_ftp_and_gridftp_paths_are_absolute_and_the_same() {
    let Some(g) = Globus::start() else {
        return;
    };
    let local_dir = tempfile::tempdir().unwrap();
    let l = |name: &str| local_dir.path().join(name);
    let none = String::new;
    let file = g.data.join("f.bin");
    let a = data(9);
    g.put(&file, &a);
    let by_ftp = g.url("ftp", &format!("%2F{}", rel(&file)));
    let by_gridftp = g.url("gridftp", rel(&file));
    assert_eq!(path_of(&by_ftp), path_of(&by_gridftp));
    cp(&[&by_ftp, s(&l("ftp.bin"))], none);
    cp(&[&by_gridftp, s(&l("gridftp.bin"))], none);
    holds(&l("ftp.bin"), &a, "ftp://…/%2FPATH");
    holds(&l("gridftp.bin"), &a, "gridftp://…/PATH");

    // Up by one spelling, down by the other.
    let b = data(10);
    std::fs::write(l("b.bin"), &b).unwrap();
    let up = g.data.join("up-ftp.bin");
    cp(
        &[s(&l("b.bin")), &g.url("ftp", &format!("%2F{}", rel(&up)))],
        none,
    );
    holds(&up, &b, "upload to ftp://…/%2FPATH");
    cp(&[&g.url("gridftp", rel(&up)), s(&l("b-back.bin"))], none);
    holds(
        &l("b-back.bin"),
        &b,
        "gridftp:// download of the ftp:// upload",
    );
    let up = g.data.join("up-gridftp.bin");
    cp(&[s(&l("b.bin")), &g.url("gridftp", rel(&up))], none);
    holds(&up, &b, "upload to gridftp://…/PATH");
    cp(
        &[
            &g.url("ftp", &format!("%2F{}", rel(&up))),
            s(&l("b-back2.bin")),
        ],
        none,
    );
    holds(
        &l("b-back2.bin"),
        &b,
        "ftp:// download of the gridftp:// upload",
    );
    assert!(!g.home.join(rel(&up)).exists(), "landed under the home");
}

#[test]
fn globus_tilde_and_relative_ftp_paths_are_under_the_home() {
    let Some(g) = Globus::start() else {
        return;
    };
    let local_dir = tempfile::tempdir().unwrap();
    let l = |name: &str| local_dir.path().join(name);
    let none = String::new;

    // HOME/name by ~/ (gridftp://) and relative (ftp://).
    let a = data(11);
    g.put(&g.home.join("name.bin"), &a);
    assert_eq!(path_of(&g.url("gridftp", "~/name.bin")), "name.bin");
    cp(&[&g.url("gridftp", "~/name.bin"), s(&l("tilde.bin"))], none);
    holds(&l("tilde.bin"), &a, "gridftp://…/~/name.bin");
    cp(&[&g.url("ftp", "name.bin"), s(&l("rel.bin"))], none);
    holds(&l("rel.bin"), &a, "ftp://…/name.bin");

    // The twin: ftp:// and gridftp://~/ read it under the home, gridftp:// from the root.
    let twin = g.data.join("twin.bin");
    let (near, far) = (data(12), data(13));
    g.put(&g.home.join(rel(&twin)), &near);
    g.put(&twin, &far);
    let get = |url: String, name: &str| -> PathBuf {
        cp(&[&url, s(&l(name))], none);
        l(name)
    };
    holds(
        &get(g.url("ftp", rel(&twin)), "t-ftp.bin"),
        &near,
        "ftp://…/PATH is under the home",
    );
    holds(
        &get(
            g.url("gridftp", &format!("~/{}", rel(&twin))),
            "t-tilde.bin",
        ),
        &near,
        "gridftp://…/~/PATH is under the home",
    );
    holds(
        &get(g.url("gridftp", rel(&twin)), "t-grid.bin"),
        &far,
        "gridftp://…/PATH is from the root",
    );

    // Uploads land under the home.
    let b = data(14);
    std::fs::write(l("b.bin"), &b).unwrap();
    cp(&[s(&l("b.bin")), &g.url("gridftp", "~/up-tilde.bin")], none);
    holds(&g.home.join("up-tilde.bin"), &b, "upload to gridftp://…/~/");
    cp(&[s(&l("b.bin")), &g.url("ftp", "up-rel.bin")], none);
    holds(
        &g.home.join("up-rel.bin"),
        &b,
        "upload to ftp://…/up-rel.bin",
    );
    assert!(!Path::new("/up-rel.bin").exists() && !Path::new("/up-tilde.bin").exists());
}
