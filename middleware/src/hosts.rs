//! What earlier copies learned of each FTP server, by host and port: whether it answered a
//! login sent before its greeting, and the rate a copy from or to it reached. The next
//! connection to it sends its login at once (one round trip less), and the next plan
//! starts from twice the remembered rate instead of the assumed 10 Gbit/s ceiling.
//!
//! Where: [`HostMemoryMode`] (`--host-memory`, `GRIDOS_HOST_MEMORY`). The memory is a hint,
//! never a rule: a missing, unreadable or corrupt file is an empty memory; a server that no
//! longer answers a login sent ahead is connected to again the usual way (and remembered
//! so); facts older than [`MAX_AGE`] are forgotten. Writes merge with what other processes
//! wrote since this one read (only the hosts this process saw are replaced) and go to a
//! temporary file renamed into place, so a reader never sees half a file.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Facts older than this are not used (and dropped on the next write).
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Hosts kept at most (the least recently seen go first).
const MAX_HOSTS: usize = 1000;

/// Copies smaller than this say more about set-up than about the path: their rate is not
/// remembered.
pub const MIN_REMEMBERED_BYTES: u64 = 32 << 20;

/// Where a copy's memory of hosts lives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum HostMemoryMode {
    /// `$GRIDOS_HOST_MEMORY` when it is set (`off`, or a file, which then holds every host
    /// as [`File`](Self::File) does); else `$XDG_STATE_HOME/gridos/hosts.json`, else
    /// `$HOME/.local/state/gridos/hosts.json`, for hosts other than this machine's own
    /// loopback addresses (whose ports come and go with test servers, and which have no
    /// round trip worth saving).
    #[default]
    Default,
    /// Nothing remembered, nothing used (`--host-memory off`).
    Off,
    /// This file, for every host, loopback included (`--host-memory FILE`).
    File(PathBuf),
}

/// What is remembered of one server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostFacts {
    /// The first line of its greeting when it was last seen.
    #[serde(default)]
    pub greeting: String,
    /// It answered a login sent before its greeting (or, not yet tried, answered a login
    /// batch sent after it); `false` once a login sent ahead went unanswered.
    #[serde(default)]
    pub login_ahead: bool,
    /// When a login sent ahead last went unanswered (seconds since the epoch): none is sent
    /// to the same server (same greeting) for [`MAX_AGE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unanswered_at: Option<u64>,
    /// The rate of the last automatic copy of at least [`MIN_REMEMBERED_BYTES`] from or to
    /// it, set-up included (bytes per second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_bytes_per_sec: Option<u64>,
    /// When `delivered_bytes_per_sec` was measured (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<u64>,
    /// When the server was last seen (seconds since the epoch).
    #[serde(default)]
    pub seen: u64,
}

/// The file's form.
#[derive(Default, Serialize, Deserialize)]
struct MemoryFile {
    #[serde(default)]
    hosts: BTreeMap<String, HostFacts>,
}

/// One copy's view of the memory: read when the copy starts, written when it ends.
#[derive(Debug)]
pub struct HostMemory {
    path: Option<PathBuf>,
    loopback: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    hosts: BTreeMap<String, HostFacts>,
    changed: BTreeSet<String>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The key of a server: `host:port`, the host in lower case without brackets.
pub fn key(host: &str, port: u16) -> String {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    format!("{}:{port}", h.to_ascii_lowercase())
}

/// Whether `host` is this machine's loopback (by name or address).
fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

/// The default file: `$XDG_STATE_HOME/gridos/hosts.json`, else
/// `$HOME/.local/state/gridos/hosts.json` (empty or relative variables count as unset).
fn default_file(var: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let set = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = set("XDG_STATE_HOME").filter(|d| d.is_absolute()) {
        return Some(d.join("gridos/hosts.json"));
    }
    set("HOME")
        .filter(|d| d.is_absolute())
        .map(|h| h.join(".local/state/gridos/hosts.json"))
}

/// The file and whether loopback hosts are remembered, for `mode` and the environment.
fn resolve(mode: &HostMemoryMode, var: impl Fn(&str) -> Option<String>) -> (Option<PathBuf>, bool) {
    match mode {
        HostMemoryMode::Off => (None, false),
        HostMemoryMode::File(p) => (Some(p.clone()), true),
        HostMemoryMode::Default => match var("GRIDOS_HOST_MEMORY").filter(|v| !v.is_empty()) {
            Some(v) if v == "off" => (None, false),
            Some(v) => (Some(PathBuf::from(v)), true),
            None => (default_file(var), false),
        },
    }
}

impl HostMemory {
    /// Reads the memory `mode` names (empty if there is none or it cannot be read).
    pub fn open(mode: &HostMemoryMode) -> HostMemory {
        let (path, loopback) = resolve(mode, |k| std::env::var(k).ok());
        let hosts = path.as_deref().map(read_file).unwrap_or_default();
        HostMemory {
            path,
            loopback,
            state: Mutex::new(State {
                hosts,
                changed: BTreeSet::new(),
            }),
        }
    }

    /// A memory that remembers nothing.
    pub fn off() -> HostMemory {
        HostMemory {
            path: None,
            loopback: false,
            state: Mutex::default(),
        }
    }

    /// The file, when there is one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn applies(&self, host: &str) -> bool {
        self.path.is_some() && (self.loopback || !is_loopback(host))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is remembered of `host:port` and still fresh.
    pub fn get(&self, host: &str, port: u16) -> Option<HostFacts> {
        if !self.applies(host) {
            return None;
        }
        let f = self.state().hosts.get(&key(host, port)).cloned()?;
        (now().saturating_sub(f.seen) <= MAX_AGE.as_secs()).then_some(f)
    }

    /// Whether a login may leave before the greeting of `host:port`.
    pub fn login_ahead(&self, host: &str, port: u16) -> bool {
        self.get(host, port).is_some_and(|f| f.login_ahead)
    }

    /// The rate remembered for `host:port` when still fresh.
    pub fn delivered(&self, host: &str, port: u16) -> Option<u64> {
        let f = self.get(host, port)?;
        let at = f.delivered_at?;
        (now().saturating_sub(at) <= MAX_AGE.as_secs())
            .then_some(f.delivered_bytes_per_sec)
            .flatten()
    }

    fn update(&self, host: &str, port: u16, f: impl FnOnce(&mut HostFacts)) {
        if !self.applies(host) {
            return;
        }
        let k = key(host, port);
        let mut s = self.state();
        let e = s.hosts.entry(k.clone()).or_default();
        f(e);
        e.seen = now();
        s.changed.insert(k);
    }

    /// A login to `host:port` succeeded; `ahead` is what became of a login sent before the
    /// greeting (`None`: none was sent). A server found not to answer one is not sent one
    /// again for [`MAX_AGE`] (unless another server, by its greeting, now answers there).
    pub fn logged_in(&self, host: &str, port: u16, greeting: &str, ahead: Option<bool>) {
        let t = now();
        self.update(host, port, |e| {
            if e.greeting != greeting {
                e.greeting = greeting.to_string();
                e.unanswered_at = None;
            }
            match ahead {
                Some(true) => e.unanswered_at = None,
                Some(false) => e.unanswered_at = Some(t),
                None => {}
            }
            // A batch after the greeting was answered: worth sending ahead next time,
            // unless this server was lately found not to answer one.
            e.login_ahead = e
                .unanswered_at
                .is_none_or(|at| t.saturating_sub(at) > MAX_AGE.as_secs());
        });
    }

    /// A copy of `bytes` from or to `host:port` reached `bytes_per_sec`.
    pub fn copied(&self, host: &str, port: u16, bytes: u64, bytes_per_sec: u64) {
        if bytes < MIN_REMEMBERED_BYTES || bytes_per_sec == 0 {
            return;
        }
        self.update(host, port, |e| {
            e.delivered_bytes_per_sec = Some(bytes_per_sec);
            e.delivered_at = Some(now());
        });
    }

    /// Writes what changed, merged with the file as it is now; errors are ignored (the
    /// memory is a hint).
    pub fn save(&self) {
        let Some(path) = &self.path else { return };
        let mut s = self.state();
        if s.changed.is_empty() {
            return;
        }
        let mut hosts = read_file(path);
        for k in std::mem::take(&mut s.changed) {
            if let Some(f) = s.hosts.get(&k) {
                hosts.insert(k, f.clone());
            }
        }
        let t = now();
        hosts.retain(|_, f| t.saturating_sub(f.seen) <= MAX_AGE.as_secs());
        while hosts.len() > MAX_HOSTS {
            let oldest = hosts
                .iter()
                .min_by_key(|(_, f)| f.seen)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => hosts.remove(&k),
                None => break,
            };
        }
        if let Err(e) = write_file(path, &MemoryFile { hosts }) {
            tracing::debug!(file = %path.display(), error = %e, "host memory not written");
        }
    }
}

fn read_file(path: &Path) -> BTreeMap<String, HostFacts> {
    let Ok(text) = std::fs::read(path) else {
        return BTreeMap::new();
    };
    match serde_json::from_slice::<MemoryFile>(&text) {
        Ok(m) => m.hosts,
        Err(e) => {
            tracing::debug!(file = %path.display(), error = %e, "host memory unreadable; starting empty");
            BTreeMap::new()
        }
    }
}

fn write_file(path: &Path, m: &MemoryFile) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer_pretty(&mut tmp, m)?;
    std::io::Write::write_all(&mut tmp, b"\n")?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn where_the_memory_lives() {
        let d = HostMemoryMode::Default;
        assert_eq!(
            resolve(&d, env(&[("GRIDOS_HOST_MEMORY", "off"), ("HOME", "/h")])),
            (None, false)
        );
        assert_eq!(
            resolve(
                &d,
                env(&[("GRIDOS_HOST_MEMORY", "/m.json"), ("HOME", "/h")])
            ),
            (Some("/m.json".into()), true)
        );
        assert_eq!(
            resolve(&d, env(&[("XDG_STATE_HOME", "/s"), ("HOME", "/h")])),
            (Some("/s/gridos/hosts.json".into()), false)
        );
        assert_eq!(
            resolve(&d, env(&[("XDG_STATE_HOME", "rel"), ("HOME", "/h")])),
            (Some("/h/.local/state/gridos/hosts.json".into()), false)
        );
        assert_eq!(resolve(&d, env(&[])), (None, false));
        assert_eq!(
            resolve(&HostMemoryMode::Off, env(&[("HOME", "/h")])),
            (None, false)
        );
        assert_eq!(
            resolve(
                &HostMemoryMode::File("/f".into()),
                env(&[("GRIDOS_HOST_MEMORY", "off")])
            ),
            (Some("/f".into()), true)
        );
    }

    fn memory(dir: &Path, loopback: bool) -> HostMemory {
        HostMemory {
            path: Some(dir.join("hosts.json")),
            loopback,
            state: Mutex::default(),
        }
    }

    #[test]
    fn what_a_copy_learns_the_next_one_reads() {
        let d = tempfile::tempdir().unwrap();
        let m = memory(d.path(), false);
        assert!(!m.login_ahead("Far.Example", 2811));
        m.logged_in("Far.Example", 2811, "gridos FTP server ready.", None);
        m.copied("far.example", 2811, 512 << 20, 97_000_000);
        // Too small to say anything of the path.
        m.copied("far.example", 2811, 1 << 20, 5_000);
        // This machine's own addresses are not remembered by the shared file.
        m.logged_in("127.0.0.1", 2121, "x", None);
        m.logged_in("[::1]", 2121, "x", None);
        m.save();
        let next = HostMemory::open(&HostMemoryMode::File(d.path().join("hosts.json")));
        assert!(next.login_ahead("far.example", 2811));
        assert_eq!(next.delivered("FAR.example", 2811), Some(97_000_000));
        assert!(next.get("far.example", 21).is_none());
        assert!(next.get("127.0.0.1", 2121).is_none() && next.get("::1", 2121).is_none());
    }

    #[test]
    fn a_server_that_left_a_login_unanswered_is_not_sent_one_again() {
        let d = tempfile::tempdir().unwrap();
        let m = memory(d.path(), true);
        m.logged_in("127.0.0.1", 21, "hello", Some(false));
        assert!(!m.login_ahead("127.0.0.1", 21));
        // The usual login then works: still not ahead for this server...
        m.logged_in("127.0.0.1", 21, "hello", None);
        assert!(!m.login_ahead("127.0.0.1", 21));
        // ...until the refusal is old.
        m.state()
            .hosts
            .get_mut("127.0.0.1:21")
            .unwrap()
            .unanswered_at = Some(1);
        m.logged_in("127.0.0.1", 21, "hello", None);
        assert!(m.login_ahead("127.0.0.1", 21));
        m.logged_in("127.0.0.1", 21, "hello", Some(false));
        assert!(!m.login_ahead("127.0.0.1", 21));
        // ...but another server on that port (another greeting) gets a fresh start.
        m.logged_in("127.0.0.1", 21, "other", None);
        assert!(m.login_ahead("127.0.0.1", 21));
    }

    #[test]
    fn writes_merge_with_other_processes_and_old_facts_go() {
        let d = tempfile::tempdir().unwrap();
        let a = memory(d.path(), true);
        let b = memory(d.path(), true);
        a.logged_in("a", 1, "A", None);
        b.logged_in("b", 1, "B", None);
        a.save();
        b.save();
        let mut hosts = read_file(&d.path().join("hosts.json"));
        assert_eq!(hosts.keys().collect::<Vec<_>>(), ["a:1", "b:1"]);
        // A fact from long ago is not used and is dropped on the next write.
        hosts.get_mut("a:1").unwrap().seen = 1;
        write_file(&d.path().join("hosts.json"), &MemoryFile { hosts }).unwrap();
        let c = HostMemory::open(&HostMemoryMode::File(d.path().join("hosts.json")));
        assert!(c.get("a", 1).is_none() && c.get("b", 1).is_some());
        c.logged_in("c", 1, "C", None);
        c.save();
        let left = read_file(&d.path().join("hosts.json"));
        assert_eq!(left.keys().collect::<Vec<_>>(), ["b:1", "c:1"]);
    }

    #[test]
    fn a_corrupt_file_is_an_empty_memory_and_is_replaced() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("hosts.json");
        std::fs::write(&p, b"{\"hosts\": {\"a:1\": {\"seen\": \"x\"").unwrap();
        let m = HostMemory::open(&HostMemoryMode::File(p.clone()));
        assert!(m.get("a", 1).is_none());
        m.logged_in("a", 1, "A", None);
        m.save();
        assert!(read_file(&p).contains_key("a:1"));
    }
}
