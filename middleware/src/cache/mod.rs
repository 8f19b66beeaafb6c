//! A GASS-like cache of remote files, shared by the processes of one user.
//!
//! [`Cache::add`] turns a URL into a local path, fetching the file only when the cache has
//! no copy or the copy is stale: the [`Origin`] is asked for a [`Validator`] (size and
//! modification time — MLST on FTP servers) and a copy whose validator differs is fetched
//! again. Each `add` names a *tag* (a job, a session) that holds the entry as a reference;
//! one URL may be held by many tags. [`Cache::delete`] drops one reference,
//! [`Cache::cleanup_tag`] every reference of a tag, and an entry no tag holds is removed —
//! or, with a disk budget set ([`Cache::set_budget`]), kept untagged and evicted least
//! recently used first when the cache grows past the budget. Tagged entries are never
//! evicted. [`Cache::list`] shows what is held.
//!
//! The cache does not speak any protocol: the caller hands it an [`Origin`] (the copy
//! engine's, for FTP, GridFTP, HTTP and local files).
//!
//! # Concurrency and crashes
//! Everything lives in one directory ([`Cache::default_dir`]): `index.json` (entries, tags,
//! budget), `data/KEY` (the files), `tmp/` (fetches under way) and `locks/KEY.lock`, where
//! KEY is the hex SHA-256 of the URL's display form (without password).
//! - Each entry has a lock file; `add`, `delete`, `cleanup_tag` and eviction take it
//!   (`flock`), so two processes adding the same URL fetch it once: the second waits for the
//!   first and finds a fresh copy.
//! - The index is changed under its own lock and replaced atomically (rename), so it is
//!   read without a lock. Locks are always taken entry first, then index.
//! - A fetch goes to `tmp/KEY.PID`, is fsynced and renamed over `data/KEY` before the index
//!   records it: a half-fetched file is never served, and a copy being replaced stays valid
//!   for those who have it open.
//! - A fetch killed (even by SIGKILL) leaves its temporary file, but its holder's `flock`
//!   dies with it. The next `add` of that URL removes it, and [`Cache::open`] removes every
//!   temporary file and unrecorded data file whose entry lock is free.
//!
//! ```
//! use gridos_middleware::cache::{Cache, Origin, Validator};
//! use gridos_middleware::{Error, Result, Url};
//!
//! /// Files on this machine (a program would hand the copy engine's origin instead).
//! struct LocalFiles;
//!
//! impl Origin for LocalFiles {
//!     fn validator(&self, url: &Url) -> Result<Validator> {
//!         let Url::Local(p) = url else { unreachable!("local paths only") };
//!         let m = std::fs::metadata(p).map_err(|e| Error::from_io(url.to_string(), e))?;
//!         Ok(Validator { size: Some(m.len()), modified: m.modified().ok() })
//!     }
//!     fn fetch(&self, url: &Url, mut into: &std::fs::File) -> Result<u64> {
//!         let Url::Local(p) = url else { unreachable!("local paths only") };
//!         let io = |e| Error::from_io(url.to_string(), e);
//!         std::io::copy(&mut std::fs::File::open(p).map_err(io)?, &mut into).map_err(io)
//!     }
//! }
//!
//! let tmp = tempfile::tempdir()?;
//! let input = tmp.path().join("input.dat");
//! std::fs::write(&input, b"event data")?;
//! let cache = Cache::open(tmp.path().join("cache"))?;
//! let url = Url::Local(input);
//!
//! let path = cache.add(&url, "job-42", &LocalFiles)?; // fetched
//! let again = cache.add(&url, "job-43", &LocalFiles)?; // fresh: not fetched again
//! assert_eq!(path, again);
//! assert_eq!(std::fs::read(&path)?, b"event data");
//! assert_eq!(cache.list()?[0].tags, ["job-42", "job-43"]);
//!
//! cache.cleanup_tag("job-42")?; // job 42 is done
//! cache.delete(&url, "job-43")?; // the last reference: the file goes
//! assert!(cache.list()?.is_empty() && !path.exists());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod index;
mod lock;

use std::collections::BTreeSet;
use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::{Error, ErrorKind, Result, Url};
use index::{Index, Record};
use lock::{FileLock, Wait};

/// Where cached files come from: the cache's only view of a protocol.
pub trait Origin {
    /// What the file at `url` looks like now, to tell whether a cached copy is stale.
    fn validator(&self, url: &Url) -> Result<Validator>;

    /// Writes the whole file at `url` into `into` (empty, at offset 0) and returns the byte
    /// count.
    fn fetch(&self, url: &Url, into: &std::fs::File) -> Result<u64>;
}

/// What identifies one version of a remote file. A field the origin cannot tell is `None`
/// and is not compared: an origin that can tell neither makes a cached copy always fresh.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Validator {
    /// Size in bytes.
    pub size: Option<u64>,
    /// Last modification time.
    pub modified: Option<SystemTime>,
}

/// One entry of [`Cache::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheEntry {
    /// The URL, without password.
    pub url: String,
    /// The cached file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// The origin's modification time when it was fetched, if the origin said.
    pub modified: Option<SystemTime>,
    /// Tags holding it, sorted; empty for an entry kept only under the budget.
    pub tags: Vec<String>,
    /// The last [`Cache::add`] that returned it.
    pub last_used: SystemTime,
}

/// A cache directory. Cheap to open; any number of processes and threads may use the same
/// directory at once.
#[derive(Clone, Debug)]
pub struct Cache {
    dir: PathBuf,
}

/// Largest number of entry locks one eviction round holds at once.
const EVICT_BATCH: usize = 256;

impl Cache {
    /// The cache directory to use: `explicit` (`--cache-dir`), else `$GRIDOS_CACHE`, else
    /// `$XDG_CACHE_HOME/gridos`, else `$HOME/.cache/gridos`. Empty variables count as unset,
    /// and so does a relative `XDG_CACHE_HOME` (the XDG rule).
    pub fn default_dir(explicit: Option<&Path>) -> Result<PathBuf> {
        default_dir_from(explicit, |k| std::env::var_os(k))
    }

    /// Opens (creating, mode 0700) the cache at `dir`, and removes what killed processes
    /// left: temporary files and unrecorded data files whose entry lock is free.
    pub fn open(dir: impl AsRef<Path>) -> Result<Cache> {
        let dir = dir.as_ref().to_path_buf();
        for d in [
            dir.clone(),
            dir.join("data"),
            dir.join("tmp"),
            dir.join("locks"),
        ] {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&d)
                .map_err(|e| state_error(format!("creating cache directory {}", d.display()), e))?;
        }
        let cache = Cache { dir };
        cache.sweep()?;
        Ok(cache)
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A local path holding the file at `url`, held by `tag`. Fetches through `origin` only
    /// when the cache has no copy or the origin's validator differs from the copy's; an
    /// `add` of the same URL by another process waits meanwhile and then finds the copy.
    /// Adding a URL a tag already holds only marks it used.
    ///
    /// The path stays valid while some tag holds the entry. A later `add` that finds the
    /// origin changed replaces the file at the same path (atomically: a reader that has it
    /// open keeps the old contents).
    pub fn add(&self, url: &Url, tag: &str, origin: &dyn Origin) -> Result<PathBuf> {
        let (text, key) = key_of(url)?;
        check_tag(tag, &text)?;
        let lock = self.lock_entry(&key, Wait::Block)?;
        // We hold the entry lock, so any temporary file of this entry is a dead fetch's.
        self.remove_temps(&key)?;
        let data = self.data_path(&key);
        let recorded = index::load(&self.dir)?.entries.remove(&key);
        let now = origin.validator(url)?;
        let fresh = recorded.as_ref().is_some_and(|r| {
            r.matches(&now)
                && std::fs::symlink_metadata(&data).is_ok_and(|m| m.is_file() && m.len() == r.size)
        });
        let fetched = if fresh {
            None
        } else {
            Some(self.fetch(&key, url, &text, &now, origin)?)
        };
        self.update(|ix| {
            let used = SystemTime::now();
            let r = ix.entries.entry(key.clone()).or_insert_with(|| Record {
                url: text.clone(),
                size: 0,
                origin_size: None,
                origin_modified: None,
                tags: BTreeSet::new(),
                last_used: used,
            });
            if let Some(size) = fetched {
                r.size = size;
                r.origin_size = now.size;
                r.origin_modified = now.modified;
            }
            r.tags.insert(tag.to_string());
            r.last_used = used;
            Ok(())
        })?;
        drop(lock);
        self.evict()?;
        Ok(data)
    }

    /// Drops `tag`'s reference to `url`. When no tag holds the entry any more, its file is
    /// removed — unless a budget is set, which keeps it untagged until eviction.
    /// [`ErrorKind::NotFound`] when `url` is not cached or `tag` does not hold it.
    pub fn delete(&self, url: &Url, tag: &str) -> Result<()> {
        let (text, key) = key_of(url)?;
        let lock = self.lock_entry(&key, Wait::Block)?;
        let gone = self.update(|ix| {
            let budget = ix.budget;
            let Some(r) = ix.entries.get_mut(&key) else {
                return Err(
                    Error::new(ErrorKind::NotFound, format!("cache delete {text}"))
                        .detail("not in the cache"),
                );
            };
            if !r.tags.remove(tag) {
                return Err(
                    Error::new(ErrorKind::NotFound, format!("cache delete {text}"))
                        .detail(format!("tag {tag:?} does not hold it")),
                );
            }
            Ok(release(ix, &key, budget))
        })?;
        self.finish_release(&key, lock, gone)?;
        self.evict()
    }

    /// Drops every reference `tag` holds (a job is over), as [`Cache::delete`] does for
    /// each; returns how many entries it held.
    pub fn cleanup_tag(&self, tag: &str) -> Result<usize> {
        let keys: Vec<String> = index::load(&self.dir)?
            .entries
            .into_iter()
            .filter(|(_, r)| r.tags.contains(tag))
            .map(|(k, _)| k)
            .collect();
        let mut held = 0;
        for key in keys {
            let lock = self.lock_entry(&key, Wait::Block)?;
            let gone = self.update(|ix| {
                let budget = ix.budget;
                // Another process may have released it meanwhile.
                let removed = ix.entries.get_mut(&key).is_some_and(|r| r.tags.remove(tag));
                if !removed {
                    return Ok(false);
                }
                held += 1;
                Ok(release(ix, &key, budget))
            })?;
            self.finish_release(&key, lock, gone)?;
        }
        self.evict()?;
        Ok(held)
    }

    /// Every entry, sorted by URL.
    pub fn list(&self) -> Result<Vec<CacheEntry>> {
        let ix = index::load(&self.dir)?;
        let mut out: Vec<CacheEntry> = ix
            .entries
            .into_iter()
            .map(|(key, r)| CacheEntry {
                path: self.data_path(&key),
                url: r.url,
                size: r.size,
                modified: r.origin_modified,
                tags: r.tags.into_iter().collect(),
                last_used: r.last_used,
            })
            .collect();
        out.sort_by(|a, b| a.url.cmp(&b.url));
        Ok(out)
    }

    /// The disk budget for the cache's files, in bytes; `None` when untagged entries are
    /// not kept at all.
    pub fn budget(&self) -> Result<Option<u64>> {
        Ok(index::load(&self.dir)?.budget)
    }

    /// Sets the disk budget (kept in the cache directory, for every process) and evicts
    /// untagged entries, least recently used first, until the cache fits. The budget counts
    /// the cached files' bytes; tagged entries count but are never evicted, so a cache
    /// whose tagged entries alone pass the budget stays over it. `None` removes every
    /// untagged entry and keeps none from then on.
    pub fn set_budget(&self, bytes: Option<u64>) -> Result<()> {
        self.update(|ix| {
            ix.budget = bytes;
            Ok(())
        })?;
        self.evict()
    }

    fn data_path(&self, key: &str) -> PathBuf {
        self.dir.join("data").join(key)
    }

    fn lock_entry(&self, key: &str, wait: Wait) -> Result<FileLock> {
        let path = self.dir.join("locks").join(format!("{key}.lock"));
        FileLock::acquire(&path, wait)?.ok_or_else(|| {
            Error::new(ErrorKind::Cache, format!("cache lock {}", path.display()))
                .detail("held by another process")
        })
    }

    fn try_lock_entry(&self, key: &str) -> Result<Option<FileLock>> {
        FileLock::acquire(
            &self.dir.join("locks").join(format!("{key}.lock")),
            Wait::Try,
        )
    }

    /// Runs `f` on the index under the index lock and stores the result. Nothing is stored
    /// when `f` fails.
    fn update<T>(&self, f: impl FnOnce(&mut Index) -> Result<T>) -> Result<T> {
        let _lock = FileLock::acquire(&self.dir.join("index.lock"), Wait::Block)?;
        let mut ix = index::load(&self.dir)?;
        let out = f(&mut ix)?;
        index::store(&self.dir, &ix)?;
        Ok(out)
    }

    /// Fetches into a temporary file and renames it into place. The caller holds the entry
    /// lock.
    fn fetch(
        &self,
        key: &str,
        url: &Url,
        text: &str,
        want: &Validator,
        origin: &dyn Origin,
    ) -> Result<u64> {
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{key}.{}", std::process::id()));
        let what = || format!("cache add {text}");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| Error::from_io(what(), e).detail("creating the temporary file"))?;
        let guard = TempFile(Some(tmp));
        let reported = origin.fetch(url, &file)?;
        let io = |e| Error::from_io(what(), e);
        let len = file.metadata().map_err(io)?.len();
        if len != reported || want.size.is_some_and(|s| s != len) {
            let expected = want.size.unwrap_or(reported);
            return Err(Error::new(ErrorKind::Incomplete, what()).detail(format!(
                "the origin said {expected} bytes, {len} arrived (did the file change?)"
            )));
        }
        // Read-only: the copy is shared by every job that holds it.
        file.set_permissions(std::fs::Permissions::from_mode(0o444))
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        drop(file);
        let data = self.data_path(key);
        let tmp = guard.keep();
        std::fs::rename(&tmp, &data).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })?;
        sync_dir(&self.dir.join("data"))?;
        Ok(len)
    }

    /// Removes the temporary files of `key`'s fetches. The caller holds the entry lock.
    fn remove_temps(&self, key: &str) -> Result<()> {
        let tmp = self.dir.join("tmp");
        let prefix = format!("{key}.");
        for name in read_names(&tmp)? {
            if name.starts_with(&prefix) {
                remove_if_present(&tmp.join(&name))?;
            }
        }
        Ok(())
    }

    /// Removes the entry's file (and lock file) after [`release`] took it out of the index.
    fn finish_release(&self, key: &str, lock: FileLock, gone: bool) -> Result<()> {
        if gone {
            remove_if_present(&self.data_path(key))?;
            lock.remove();
        }
        Ok(())
    }

    /// Evicts untagged entries, least recently used first, while the cache is over budget.
    /// Entries busy in another process (lock held) are skipped this time.
    fn evict(&self) -> Result<()> {
        loop {
            let ix = index::load(&self.dir)?;
            let mut need = excess(&ix);
            if need == 0 {
                return Ok(());
            }
            let mut untagged: Vec<(SystemTime, String, u64)> = ix
                .entries
                .iter()
                .filter(|(_, r)| r.tags.is_empty())
                .map(|(k, r)| (r.last_used, k.clone(), r.size))
                .collect();
            untagged.sort();
            let mut locked = Vec::new();
            for (_, key, size) in untagged {
                if need == 0 || locked.len() == EVICT_BATCH {
                    break;
                }
                if let Some(l) = self.try_lock_entry(&key)? {
                    need = need.saturating_sub(size.max(1));
                    locked.push((key, l));
                }
            }
            if locked.is_empty() {
                return Ok(());
            }
            let removed: Vec<String> = self.update(|ix| {
                let mut removed = Vec::new();
                for (key, _) in &locked {
                    if excess(ix) == 0 {
                        break;
                    }
                    if ix.entries.get(key).is_some_and(|r| r.tags.is_empty()) {
                        ix.entries.remove(key);
                        removed.push(key.clone());
                    }
                }
                Ok(removed)
            })?;
            let progress = !removed.is_empty();
            for (key, l) in locked {
                let gone = removed.contains(&key);
                self.finish_release(&key, l, gone)?;
            }
            if !progress {
                return Ok(());
            }
        }
    }

    /// Removes what killed processes left: temporary files, data files the index does not
    /// record, and lock files of entries that do not exist — each only when its entry lock
    /// is free (a live holder may still be writing or about to record it).
    fn sweep(&self) -> Result<()> {
        let mut keys = BTreeSet::new();
        keys.extend(
            read_names(&self.dir.join("tmp"))?
                .iter()
                .filter_map(|n| key_in(n)),
        );
        let ix = index::load(&self.dir)?;
        for sub in ["data", "locks"] {
            keys.extend(
                read_names(&self.dir.join(sub))?
                    .iter()
                    .filter_map(|n| key_in(n))
                    .filter(|k| !ix.entries.contains_key(k)),
            );
        }
        for key in keys {
            let Some(lock) = self.try_lock_entry(&key)? else {
                continue;
            };
            self.remove_temps(&key)?;
            // Entries are recorded only under their lock, which we hold: this is current.
            if !index::load(&self.dir)?.entries.contains_key(&key) {
                remove_if_present(&self.data_path(&key))?;
                lock.remove();
            }
        }
        Ok(())
    }
}

/// After a tag was removed from `key`'s record: takes the entry out of the index when no tag
/// holds it and no budget keeps untagged entries. True when it was taken out.
fn release(ix: &mut Index, key: &str, budget: Option<u64>) -> bool {
    let untagged = ix.entries.get(key).is_some_and(|r| r.tags.is_empty());
    if untagged && budget.is_none() {
        ix.entries.remove(key);
        return true;
    }
    false
}

/// Bytes over the budget; with no budget, any untagged entry is over.
fn excess(ix: &Index) -> u64 {
    match ix.budget {
        None => u64::MAX,
        Some(b) => ix
            .entries
            .values()
            .map(|r| r.size)
            .sum::<u64>()
            .saturating_sub(b),
    }
}

/// The display form of `url` (no password; local paths made absolute) and its key.
fn key_of(url: &Url) -> Result<(String, String)> {
    let (text, bytes) = match url {
        Url::Local(p) => {
            let abs = std::path::absolute(p).map_err(|e| Error::from_io(url.to_string(), e))?;
            let bytes = abs.as_os_str().as_bytes().to_vec();
            (abs.display().to_string(), bytes)
        }
        other => {
            let t = other.to_string();
            let b = t.clone().into_bytes();
            (t, b)
        }
    };
    let key = format!("{:x}", Sha256::digest(&bytes));
    Ok((text, key))
}

/// The entry key a cache file name starts with (`KEY`, `KEY.lock`, `KEY.PID`).
fn key_in(name: &str) -> Option<String> {
    let (key, rest) = name.split_at_checked(64)?;
    let hex = key
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (hex && (rest.is_empty() || rest.starts_with('.'))).then(|| key.to_string())
}

fn check_tag(tag: &str, text: &str) -> Result<()> {
    if tag.is_empty() || tag.chars().any(char::is_control) {
        return Err(
            Error::new(ErrorKind::InvalidInput, format!("cache add {text}")).detail(format!(
                "tag {tag:?} must be non-empty text without control characters"
            )),
        );
    }
    Ok(())
}

fn default_dir_from(
    explicit: Option<&Path>,
    var: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<PathBuf> {
    if let Some(d) = explicit {
        return Ok(d.to_path_buf());
    }
    let set = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = set("GRIDOS_CACHE") {
        return Ok(d);
    }
    if let Some(d) = set("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
        return Ok(d.join("gridos"));
    }
    if let Some(h) = set("HOME") {
        return Ok(h.join(".cache").join("gridos"));
    }
    Err(
        Error::new(ErrorKind::InvalidInput, "choosing the cache directory")
            .detail("none of --cache-dir, GRIDOS_CACHE, XDG_CACHE_HOME or HOME is set"),
    )
}

/// A local I/O error on the cache's own files: [`ErrorKind::Cache`], unless the user lacks
/// permission (something they can fix).
pub(crate) fn state_error(what: impl Into<String>, e: std::io::Error) -> Error {
    let kind = match e.kind() {
        std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        _ => ErrorKind::Cache,
    };
    Error::new(kind, what).source(e)
}

/// fsync on a directory, so a rename in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| state_error(format!("fsync {}", dir.display()), e))
}

fn read_names(dir: &Path) -> Result<Vec<String>> {
    let what = || format!("reading cache directory {}", dir.display());
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| state_error(what(), e))? {
        let e = e.map_err(|e| state_error(what(), e))?;
        // Names the cache wrote are ASCII; anything else is not ours to remove.
        if let Ok(n) = e.file_name().into_string() {
            out.push(n);
        }
    }
    Ok(out)
}

fn remove_if_present(p: &Path) -> Result<()> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(state_error(format!("removing {}", p.display()), e)),
    }
}

/// A temporary file removed on drop (a fetch that failed), unless kept.
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn keep(mut self) -> PathBuf {
        self.0.take().unwrap_or_default()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn default_dir_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let all = env(&[
            ("GRIDOS_CACHE", "/g"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(
            default_dir_from(Some(Path::new("/e")), all).unwrap(),
            Path::new("/e")
        );
        assert_eq!(default_dir_from(None, all).unwrap(), Path::new("/g"));
        let xdg = env(&[
            ("GRIDOS_CACHE", ""),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(default_dir_from(None, xdg).unwrap(), Path::new("/x/gridos"));
        let relative_xdg = env(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/h")]);
        assert_eq!(
            default_dir_from(None, relative_xdg).unwrap(),
            Path::new("/h/.cache/gridos")
        );
        let none = env(&[]);
        assert_eq!(
            default_dir_from(None, none).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn keys_hide_passwords_and_fix_local_paths() {
        let a = Url::parse("ftp://u:secret@h/f").unwrap();
        let b = Url::parse("ftp://u:other@h/f").unwrap();
        let (text, key) = key_of(&a).unwrap();
        assert!(!text.contains("secret"), "{text}");
        assert_eq!(key, key_of(&b).unwrap().1);
        assert_eq!(key.len(), 64);
        let (text, _) = key_of(&Url::Local("rel/f".into())).unwrap();
        assert!(Path::new(&text).is_absolute(), "{text}");
    }

    #[test]
    fn validators_compare_only_what_both_know() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let r = Record {
            url: String::new(),
            size: 5,
            origin_size: Some(5),
            origin_modified: Some(t),
            tags: BTreeSet::new(),
            last_used: t,
        };
        let v = |size, modified| Validator { size, modified };
        assert!(r.matches(&v(Some(5), Some(t))));
        assert!(r.matches(&v(Some(5), None)));
        assert!(r.matches(&v(None, None)));
        assert!(!r.matches(&v(Some(6), Some(t))));
        assert!(!r.matches(&v(Some(5), Some(t + std::time::Duration::from_secs(1)))));
    }
}
