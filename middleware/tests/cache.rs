//! The shared cache (`gridos_middleware::cache`) against our FTP server started in this
//! process, through a test origin built on `gridos_ftp::client::Client`; several processes
//! (this test binary re-run as a child, and the `gridos` binary) share one cache directory.
//! Bytes are checked by SHA-256; fetches are counted at the server (completed transfers).

mod util;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use gridos_ftp::client::{Client, ClientConfig, EntryKind};
use gridos_ftp::server::{Server, ServerConfig, ServerHandle};
use gridos_middleware::cache::{Cache, Origin, Validator};
use gridos_middleware::{Error, ErrorKind, FtpUrl, Result, Url};
use util::{names, random_bytes, sha256, sha256_file};

// ---------- helpers ----------

/// Our server on 127.0.0.1, serving a fresh directory (anonymous, and alice).
struct TestServer {
    handle: ServerHandle,
    root: tempfile::TempDir,
}

impl TestServer {
    fn start() -> TestServer {
        let root = tempfile::tempdir().unwrap();
        let mut c = ServerConfig::new(root.path());
        c.anonymous = true;
        c.users = vec![("alice".into(), "s3cret".into())];
        c.threads = 2;
        c.io_threads = 2;
        TestServer {
            handle: Server::start(c).unwrap(),
            root,
        }
    }

    /// Puts `data` at `name` in the docroot and returns its `ftp://` URL.
    fn put(&self, name: &str, data: &[u8]) -> Url {
        std::fs::write(self.root.path().join(name), data).unwrap();
        self.url(name)
    }

    fn url(&self, name: &str) -> Url {
        Url::parse(&format!("ftp://{}/{name}", self.handle.local_addr())).unwrap()
    }

    /// Completed data transfers: each fetch is one RETR.
    fn transfers(&self) -> u64 {
        self.handle
            .stats()
            .into_iter()
            .find(|(k, _)| k == "transfers_completed")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap()
    }
}

/// The test origin: MLST for the validator, RETR for the fetch. `chunk_delay` makes a fetch
/// slow: the file is retrieved into a staging file, then written into the cache's file in
/// 64 KiB pieces with a sleep before each.
#[derive(Default)]
struct FtpOrigin {
    chunk_delay: Option<Duration>,
    fetches: AtomicUsize,
}

fn ftp_url(url: &Url) -> Result<&FtpUrl> {
    match url {
        Url::Ftp(u) => Ok(u),
        _ => Err(Error::new(ErrorKind::Unsupported, url.to_string())),
    }
}

fn login(u: &FtpUrl) -> Result<Client> {
    let mut c = Client::connect(u.authority(), ClientConfig::default())
        .map_err(|e| Error::from_ftp(u.display(), e))?;
    c.login(&u.user, &u.login_password())
        .map_err(|e| Error::from_ftp(u.display(), e))?;
    Ok(c)
}

impl Origin for FtpOrigin {
    fn validator(&self, url: &Url) -> Result<Validator> {
        let u = ftp_url(url)?;
        let e = login(u)?
            .stat(&u.path)
            .map_err(|e| Error::from_ftp(u.display(), e))?
            .ok_or_else(|| Error::new(ErrorKind::NotFound, u.display()))?;
        assert_eq!(e.kind, EntryKind::File);
        assert!(
            e.size.is_some() && e.modified.is_some(),
            "MLST facts: {e:?}"
        );
        Ok(Validator {
            size: e.size,
            modified: e.modified,
        })
    }

    fn fetch(&self, url: &Url, into: &std::fs::File) -> Result<u64> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let u = ftp_url(url)?;
        let mut c = login(u)?;
        let ftp = |e| Error::from_ftp(u.display(), e);
        let Some(delay) = self.chunk_delay else {
            return Ok(c.get(&u.path, into, 0, 0).map_err(ftp)?.bytes);
        };
        let staging = tempfile::tempfile().unwrap();
        let n = c.get(&u.path, &staging, 0, 0).map_err(ftp)?.bytes;
        let mut buf = vec![0u8; 64 << 10];
        let mut off = 0;
        while off < n {
            std::thread::sleep(delay);
            let len = buf.len().min((n - off) as usize);
            gridos_io::file_read(&staging, off, &mut buf[..len]).unwrap();
            gridos_io::file_write(into, off, &buf[..len]).unwrap();
            off += len as u64;
        }
        Ok(n)
    }
}

/// Polls `cond` until it holds; fails after a minute (a hang, not a timing assertion).
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < end, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------- a second process: this test binary running `child_add` ----------

const CHILD_ENV: &str = "GRIDOS_CACHE_TEST_CHILD";

/// Runs [`child_add`] in a new process: `add(url, tag)` on the cache at `dir`, with a slow
/// fetch when `delay_ms` is given.
fn spawn_child(dir: &Path, url: &Url, tag: &str, delay_ms: Option<u64>) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["child_add", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_ENV, "1")
        .env("GRIDOS_CACHE_TEST_DIR", dir)
        .env("GRIDOS_CACHE_TEST_URL", url.to_string())
        .env("GRIDOS_CACHE_TEST_TAG", tag)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ms) = delay_ms {
        cmd.env("GRIDOS_CACHE_TEST_DELAY_MS", ms.to_string());
    }
    cmd.spawn().unwrap()
}

/// The path a finished child printed.
fn child_path(child: Child) -> PathBuf {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CACHED "))
        .unwrap_or_else(|| panic!("no path in child output: {stdout}"));
    PathBuf::from(line)
}

#[test]
#[ignore = "run in a child process by the concurrency and crash tests"]
fn child_add() {
    if std::env::var_os(CHILD_ENV).is_none() {
        eprintln!("child_add is run by spawn_child; alone it has nothing to do");
        return;
    }
    let var = |k: &str| std::env::var(k).unwrap();
    let origin = FtpOrigin {
        chunk_delay: std::env::var("GRIDOS_CACHE_TEST_DELAY_MS")
            .ok()
            .map(|ms| Duration::from_millis(ms.parse().unwrap())),
        ..FtpOrigin::default()
    };
    let cache = Cache::open(var("GRIDOS_CACHE_TEST_DIR")).unwrap();
    let url = Url::parse(&var("GRIDOS_CACHE_TEST_URL")).unwrap();
    let path = cache
        .add(&url, &var("GRIDOS_CACHE_TEST_TAG"), &origin)
        .unwrap();
    println!("CACHED {}", path.display());
}

// ---------- tests ----------

#[test]
fn add_fetches_once_and_again_when_size_or_mtime_change() {
    let srv = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let origin = FtpOrigin::default();
    let data = random_bytes(1_000_003, 1);
    let url = srv.put("run1.dat", &data);

    let p = cache.add(&url, "job1", &origin).unwrap();
    assert_eq!(sha256_file(&p), sha256(&data));
    assert!(p.starts_with(dir.path().join("data")));
    assert_eq!(srv.transfers(), 1);
    // Fresh: the same tag, then another tag, get the same file without a fetch.
    assert_eq!(cache.add(&url, "job1", &origin).unwrap(), p);
    assert_eq!(cache.add(&url, "job2", &origin).unwrap(), p);
    assert_eq!(srv.transfers(), 1);
    assert_eq!(origin.fetches.load(Ordering::SeqCst), 1);

    let on_server = srv.root.path().join("run1.dat");
    let mtime = std::fs::metadata(&on_server).unwrap().modified().unwrap();
    let set_mtime = |t: SystemTime| {
        std::fs::File::options()
            .write(true)
            .open(&on_server)
            .unwrap()
            .set_modified(t)
            .unwrap()
    };

    // Longer, same modification time: stale by size.
    let longer = random_bytes(1_000_500, 2);
    std::fs::write(&on_server, &longer).unwrap();
    set_mtime(mtime);
    assert_eq!(cache.add(&url, "job1", &origin).unwrap(), p);
    assert_eq!(srv.transfers(), 2);
    assert_eq!(sha256_file(&p), sha256(&longer));

    // Same size, another modification time: stale by time.
    let same_size = random_bytes(longer.len(), 3);
    std::fs::write(&on_server, &same_size).unwrap();
    set_mtime(mtime + Duration::from_secs(3600));
    assert_eq!(cache.add(&url, "job1", &origin).unwrap(), p);
    assert_eq!(srv.transfers(), 3);
    assert_eq!(sha256_file(&p), sha256(&same_size));
    assert_eq!(cache.add(&url, "job1", &origin).unwrap(), p);
    assert_eq!(srv.transfers(), 3);

    let list = cache.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].url, url.to_string());
    assert_eq!(list[0].path, p);
    assert_eq!(list[0].size, same_size.len() as u64);
    assert_eq!(list[0].tags, ["job1", "job2"]);
    assert_eq!(
        list[0]
            .modified
            .map(|t| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()),
        Some(
            (mtime + Duration::from_secs(3600))
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        )
    );
    assert!(names(&dir.path().join("tmp")).is_empty());

    // A missing file is the origin's NotFound, and nothing is recorded.
    let err = cache.add(&srv.url("absent"), "job1", &origin).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(cache.list().unwrap().len(), 1);
    // An empty tag is refused.
    let err = cache.add(&url, "", &origin).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn tags_are_references_delete_and_cleanup() {
    let srv = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let origin = FtpOrigin::default();
    let x = random_bytes(300_000, 4);
    let y = random_bytes(200_000, 5);
    let ux = srv.put("x.dat", &x);
    let uy = srv.put("y.dat", &y);

    let px = cache.add(&ux, "a", &origin).unwrap();
    assert_eq!(cache.add(&ux, "b", &origin).unwrap(), px);
    let py = cache.add(&uy, "a", &origin).unwrap();
    assert_ne!(px, py);
    assert_eq!(srv.transfers(), 2);

    // b still holds x after a lets go.
    cache.delete(&ux, "a").unwrap();
    assert_eq!(sha256_file(&px), sha256(&x));
    let e = cache.delete(&ux, "a").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = cache.delete(&ux, "never").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    // cleanup_tag drops every reference of a: y had no other, so its file goes.
    assert_eq!(cache.cleanup_tag("a").unwrap(), 1);
    assert!(!py.exists());
    let list = cache.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].path.as_path(), list[0].tags.clone()),
        (px.as_path(), vec!["b".to_string()])
    );
    assert_eq!(cache.cleanup_tag("a").unwrap(), 0);

    // The last reference: the file, its lock and its index entry go.
    cache.delete(&ux, "b").unwrap();
    assert!(!px.exists());
    assert!(cache.list().unwrap().is_empty());
    assert!(names(&dir.path().join("data")).is_empty());
    assert!(names(&dir.path().join("locks")).is_empty());
    assert_eq!(
        cache.delete(&ux, "b").unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // Passwords are not part of the key and never listed.
    let with_pw = Url::parse(&format!(
        "ftp://alice:s3cret@{}/x.dat",
        srv.handle.local_addr()
    ))
    .unwrap();
    let p = cache.add(&with_pw, "c", &origin).unwrap();
    assert_eq!(sha256_file(&p), sha256(&x));
    let other_pw = Url::parse(&format!(
        "ftp://alice:other@{}/x.dat",
        srv.handle.local_addr()
    ))
    .unwrap();
    cache.delete(&other_pw, "c").unwrap();
    let p = cache.add(&with_pw, "c", &origin).unwrap();
    let list = cache.list().unwrap();
    assert_eq!(list[0].path, p);
    assert!(list[0].url.starts_with("ftp://alice@"), "{}", list[0].url);
    assert!(!list[0].url.contains("s3cret"));
    let index = std::fs::read_to_string(dir.path().join("index.json")).unwrap();
    assert!(!index.contains("s3cret"), "{index}");
}

#[test]
fn budget_evicts_untagged_least_recently_used_only() {
    let srv = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let origin = FtpOrigin::default();
    const K: usize = 100_000;
    let url: Vec<Url> = (0..4)
        .map(|i| srv.put(&format!("f{i}"), &random_bytes(K, 10 + i as u64)))
        .collect();
    assert_eq!(cache.budget().unwrap(), None);
    cache.set_budget(Some(3 * K as u64)).unwrap();

    let p: Vec<PathBuf> = (0..3)
        .map(|i| cache.add(&url[i], &format!("t{i}"), &origin).unwrap())
        .collect();
    // Released, but the budget keeps them (untagged).
    cache.delete(&url[0], "t0").unwrap();
    cache.delete(&url[1], "t1").unwrap();
    assert!(p[0].exists() && p[1].exists());
    // f0 is used again, so f1 is now the least recently used untagged entry.
    assert_eq!(cache.add(&url[0], "again", &origin).unwrap(), p[0]);
    cache.delete(&url[0], "again").unwrap();
    assert_eq!(srv.transfers(), 3);

    // A fourth file passes the budget: f1 goes, f0 stays.
    let p3 = cache.add(&url[3], "t3", &origin).unwrap();
    assert!(!p[1].exists(), "least recently used untagged entry evicted");
    assert!(p[0].exists() && p[2].exists() && p3.exists());
    let tags: Vec<(String, Vec<String>)> = cache
        .list()
        .unwrap()
        .into_iter()
        .map(|e| (e.url, e.tags))
        .collect();
    assert_eq!(
        tags,
        [
            (url[0].to_string(), vec![]),
            (url[2].to_string(), vec!["t2".to_string()]),
            (url[3].to_string(), vec!["t3".to_string()]),
        ]
    );

    // The budget is kept in the directory, for every process.
    let again = Cache::open(dir.path()).unwrap();
    assert_eq!(again.budget().unwrap(), Some(3 * K as u64));
    // Below what the tagged entries need: every untagged entry goes, no tagged one does.
    again.set_budget(Some(K as u64)).unwrap();
    assert!(!p[0].exists());
    assert_eq!(sha256_file(&p[2]), sha256(&random_bytes(K, 12)));
    assert_eq!(sha256_file(&p3), sha256(&random_bytes(K, 13)));
    assert_eq!(cache.list().unwrap().len(), 2);
    // An evicted entry is fetched again.
    assert_eq!(cache.add(&url[0], "t0", &origin).unwrap(), p[0]);
    assert_eq!(srv.transfers(), 5);
    assert_eq!(sha256_file(&p[0]), sha256(&random_bytes(K, 10)));
    // Without a budget, a released entry is not kept.
    cache.set_budget(None).unwrap();
    cache.delete(&url[0], "t0").unwrap();
    assert!(!p[0].exists());
}

#[test]
fn two_processes_adding_one_url_fetch_it_once() {
    let srv = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(4 << 20, 20);
    let url = srv.put("shared.dat", &data);

    // The first process fetches slowly; the second starts while the first is mid-fetch.
    let first = spawn_child(dir.path(), &url, "job-a", Some(5));
    let tmp = dir.path().join("tmp");
    wait_until("the first fetch to start", || {
        tmp.exists() && !names(&tmp).is_empty()
    });
    let second = spawn_child(dir.path(), &url, "job-b", None);
    let (pa, pb) = (child_path(first), child_path(second));
    assert_eq!(pa, pb);
    assert_eq!(sha256_file(&pa), sha256(&data));
    assert_eq!(srv.transfers(), 1, "one RETR for two processes");

    let cache = Cache::open(dir.path()).unwrap();
    let list = cache.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].tags, ["job-a", "job-b"]);
    assert!(names(&tmp).is_empty());
}

#[test]
fn a_fetch_killed_by_sigkill_is_cleaned_up_by_the_next_user() {
    let srv = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let tmp = dir.path().join("tmp");
    let killed_during_fetch = |url: &Url| {
        let mut child = spawn_child(dir.path(), url, "doomed", Some(50));
        wait_until("a partly written temporary file", || {
            names(&tmp)
                .iter()
                .any(|n| std::fs::metadata(tmp.join(n)).is_ok_and(|m| m.len() > 0))
        });
        child.kill().unwrap(); // SIGKILL
        assert!(!child.wait().unwrap().success());
        // The half-fetched file is left behind, never recorded nor served.
        assert_eq!(names(&tmp).len(), 1);
        assert!(names(&dir.path().join("data")).is_empty());
        assert!(cache.list().unwrap().is_empty());
    };

    // The next add of the same URL removes the dead fetch's file and fetches afresh.
    let data = random_bytes(8 << 20, 30);
    let url = srv.put("big.dat", &data);
    killed_during_fetch(&url);
    let before = srv.transfers();
    let p = cache.add(&url, "next", &FtpOrigin::default()).unwrap();
    assert_eq!(sha256_file(&p), sha256(&data));
    assert_eq!(srv.transfers(), before + 1);
    assert!(names(&tmp).is_empty());
    cache.delete(&url, "next").unwrap();

    // Opening the cache removes what a dead fetch of any URL left.
    let other = srv.put("other.dat", &random_bytes(8 << 20, 31));
    killed_during_fetch(&other);
    Cache::open(dir.path()).unwrap();
    assert!(names(&tmp).is_empty());
    assert!(names(&dir.path().join("locks")).is_empty());
    assert!(names(&dir.path().join("data")).is_empty());
}

// ---------- the command line ----------

fn gridos(args: &[&str], env: &[(&str, &Path)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gridos"));
    cmd.args(args)
        .env_remove("GRIDOS_CACHE")
        .env_remove("XDG_CACHE_HOME");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout_ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "gridos failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn cli_add_list_delete_cleanup() {
    let srv = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("c");
    let cd = cache_dir.to_str().unwrap();
    let data = random_bytes(700_001, 40);
    let url = srv.put("in put.dat", &data).to_string();
    assert!(
        url.ends_with("/in%20put.dat") || url.ends_with("/in put.dat"),
        "{url}"
    );

    let path = stdout_ok(&gridos(
        &["cache", "add", "--cache-dir", cd, "--tag", "job1", &url],
        &[],
    ));
    let path = PathBuf::from(path.trim_end());
    assert!(path.starts_with(&cache_dir), "{}", path.display());
    assert_eq!(sha256_file(&path), sha256(&data));

    // The same cache through $GRIDOS_CACHE, and through $XDG_CACHE_HOME/gridos.
    let again = stdout_ok(&gridos(
        &["cache", "add", "--tag", "job2", &url],
        &[("GRIDOS_CACHE", &cache_dir)],
    ));
    assert_eq!(PathBuf::from(again.trim_end()), path);
    assert_eq!(srv.transfers(), 1);
    let xdg = stdout_ok(&gridos(
        &["cache", "list", "--json"],
        &[("XDG_CACHE_HOME", dir.path())],
    ));
    assert_eq!(
        xdg.trim(),
        "[]",
        "{}/gridos is another cache",
        dir.path().display()
    );

    let list: serde_json::Value = serde_json::from_str(&stdout_ok(&gridos(
        &["cache", "--cache-dir", cd, "list", "--json"],
        &[],
    )))
    .unwrap();
    let e = &list.as_array().unwrap()[..];
    assert_eq!(e.len(), 1, "{list}");
    assert_eq!(e[0]["url"], url);
    assert_eq!(e[0]["path"], path.to_str().unwrap());
    assert_eq!(e[0]["size"], data.len() as u64);
    assert_eq!(e[0]["tags"], serde_json::json!(["job1", "job2"]));
    assert!(e[0]["last_used"].as_f64().unwrap() > 1.6e9);
    assert!(e[0]["modified"].as_f64().unwrap() > 1.6e9);
    let text = stdout_ok(&gridos(&["cache", "list", "--cache-dir", cd], &[]));
    assert!(text.contains("job1,job2") && text.contains(&url), "{text}");

    stdout_ok(&gridos(
        &["cache", "delete", "--cache-dir", cd, "--tag", "job1", &url],
        &[],
    ));
    assert!(path.exists());
    let out = gridos(
        &["cache", "delete", "--cache-dir", cd, "--tag", "job1", &url],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not hold it"));
    stdout_ok(&gridos(
        &["cache", "cleanup", "--cache-dir", cd, "--tag", "job2"],
        &[],
    ));
    assert!(!path.exists());
    assert_eq!(
        stdout_ok(&gridos(
            &["cache", "list", "--json", "--cache-dir", cd],
            &[]
        ))
        .trim(),
        "[]"
    );

    // The budget, set and read back.
    stdout_ok(&gridos(
        &["cache", "budget", "--cache-dir", cd, "1MiB"],
        &[],
    ));
    assert_eq!(
        stdout_ok(&gridos(&["cache", "budget", "--cache-dir", cd], &[])).trim(),
        "1048576"
    );
    stdout_ok(&gridos(
        &["cache", "budget", "--cache-dir", cd, "none"],
        &[],
    ));
    assert_eq!(
        stdout_ok(&gridos(&["cache", "budget", "--cache-dir", cd], &[])).trim(),
        "none"
    );

    // A local file goes through the same cache.
    let local = dir.path().join("local.dat");
    std::fs::write(&local, &data[..1000]).unwrap();
    let p = stdout_ok(&gridos(
        &[
            "cache",
            "add",
            "--cache-dir",
            cd,
            "--tag",
            "l",
            local.to_str().unwrap(),
        ],
        &[],
    ));
    assert_eq!(sha256_file(Path::new(p.trim_end())), sha256(&data[..1000]));
}
