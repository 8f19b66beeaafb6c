//! Live configuration: keys, the unix control socket (`get KEY`, `set KEY VALUE`, `list`,
//! `stats`, `tls-reload`; each answer ends with `ok [note]` or `err message`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use super::Shared;
use super::error::{Error, Result};
use super::fs::Root;
use crate::proto::HostList;

/// The `ftp.*` keys (`io.*` keys come from gridos-io).
pub(crate) const FTP_KEYS: [&str; 30] = [
    "ftp.docroot",
    "ftp.listen",
    "ftp.chroot",
    "ftp.threads",
    "ftp.max_clients",
    "ftp.max_per_ip",
    "ftp.idle_timeout",
    "ftp.data_timeout",
    "ftp.shutdown_grace",
    "ftp.command_timeout",
    "ftp.reply_timeout",
    "ftp.login_delay",
    "ftp.login_max_failures",
    "ftp.login_ban",
    "ftp.login_exempt",
    "ftp.anonymous",
    "ftp.anonymous_write",
    "ftp.pasv_ports",
    "ftp.allow_third_party",
    "ftp.third_party_hosts",
    "ftp.tls",
    "ftp.tls_cert",
    "ftp.tls_key",
    "ftp.tls_client_ca",
    "ftp.grid_mapfile",
    "ftp.implicit_tls",
    "ftp.tls_data_reuse",
    "ftp.tls_handshake_timeout",
    "ftp.tls_subject",
    // seccomp sandbox (issue 14)
    "ftp.seccomp",
];

pub(crate) fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v.trim() {
        "true" | "on" | "1" | "yes" => Ok(true),
        "false" | "off" | "0" | "no" => Ok(false),
        _ => Err(Error::Config(format!("{key}: {v:?} is not a boolean"))),
    }
}

pub(crate) fn parse_num(key: &str, v: &str) -> Result<usize> {
    v.trim()
        .parse()
        .map_err(|_| Error::Config(format!("{key}: {v:?} is not a number")))
}

pub(crate) fn parse_threads(key: &str, v: &str) -> Result<usize> {
    match parse_num(key, v)? {
        n @ 1..=1024 => Ok(n),
        _ => Err(Error::Config(format!("{key} must be between 1 and 1024"))),
    }
}

/// Seconds (`30`, `30s`, `1.5`).
pub(crate) fn parse_secs(key: &str, v: &str) -> Result<Duration> {
    let t = v.trim().trim_end_matches('s');
    let secs: f64 = t
        .parse()
        .map_err(|_| Error::Config(format!("{key}: {v:?} is not a number of seconds")))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 1e7 {
        return Err(Error::Config(format!("{key} must be positive seconds")));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Seconds as [`parse_secs`], or `0` (off).
pub(crate) fn parse_secs_or_zero(key: &str, v: &str) -> Result<Duration> {
    match v.trim().trim_end_matches('s').parse::<f64>() {
        Ok(0.0) => Ok(Duration::ZERO),
        _ => parse_secs(key, v),
    }
}

/// A count (`0` allowed) that fits in 32 bits.
pub(crate) fn parse_count(key: &str, v: &str) -> Result<u32> {
    v.trim()
        .parse()
        .map_err(|_| Error::Config(format!("{key}: {v:?} is not a number")))
}

/// `LOW-HIGH`, or `any`/`0` for any port.
pub(crate) fn parse_ports(v: &str) -> Result<Option<(u16, u16)>> {
    let v = v.trim();
    if v == "any" || v == "0" || v.is_empty() {
        return Ok(None);
    }
    let bad = || Error::Config(format!("pasv_ports: {v:?} is not LOW-HIGH (1024-65535)"));
    let (lo, hi) = v.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo < 1024 || hi < lo {
        return Err(bad());
    }
    Ok(Some((lo, hi)))
}

/// IP addresses and CIDR prefixes, comma-separated (`none` or empty: no host).
pub(crate) fn parse_hosts(key: &str, v: &str) -> Result<HostList> {
    v.parse()
        .map_err(|e: crate::proto::HostListError| Error::Config(format!("{key}: {e}")))
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}", d.as_secs())
    } else {
        format!("{s}")
    }
}

impl Shared {
    pub(crate) fn get_key(&self, key: &str) -> Result<String> {
        let s = self.settings();
        Ok(match key {
            "ftp.docroot" => self.root().path().display().to_string(),
            "ftp.listen" => self.listen.to_string(),
            "ftp.chroot" => match &self.chroot {
                Some(p) => p.display().to_string(),
                None => "none".to_string(),
            },
            "ftp.threads" => self.threads().to_string(),
            "ftp.max_clients" => s.max_clients.to_string(),
            "ftp.max_per_ip" => s.max_per_ip.to_string(),
            "ftp.idle_timeout" => secs(s.idle_timeout),
            "ftp.data_timeout" => secs(s.data_timeout),
            "ftp.shutdown_grace" => secs(s.shutdown_grace),
            "ftp.command_timeout" => secs(s.command_timeout),
            "ftp.reply_timeout" => secs(s.reply_timeout),
            "ftp.login_delay" => secs(s.login.delay),
            "ftp.login_max_failures" => s.login.max_failures.to_string(),
            "ftp.login_ban" => secs(s.login.ban),
            "ftp.login_exempt" => s.login.exempt.to_string(),
            "ftp.anonymous" => s.anonymous.to_string(),
            "ftp.anonymous_write" => s.anonymous_write.to_string(),
            "ftp.pasv_ports" => match s.pasv_ports {
                Some((lo, hi)) => format!("{lo}-{hi}"),
                None => "any".to_string(),
            },
            "ftp.allow_third_party" => s.allow_third_party.to_string(),
            "ftp.third_party_hosts" => s.third_party_hosts.to_string(),
            "ftp.tls" => s.tls.to_string(),
            "ftp.tls_cert" | "ftp.tls_key" | "ftp.tls_client_ca" | "ftp.grid_mapfile" => {
                let st = self.tls.read().unwrap_or_else(|p| p.into_inner());
                let f = &st.files;
                let p = match key {
                    "ftp.tls_cert" => &f.cert,
                    "ftp.tls_key" => &f.key,
                    "ftp.tls_client_ca" => &f.client_ca,
                    _ => &f.grid_mapfile,
                };
                p.as_ref()
                    .map_or_else(|| "none".to_string(), |p| p.display().to_string())
            }
            "ftp.implicit_tls" => self
                .implicit
                .map_or_else(|| "none".to_string(), |a| a.to_string()),
            "ftp.tls_data_reuse" => s.tls_data_reuse.to_string(),
            "ftp.tls_handshake_timeout" => secs(s.tls_handshake_timeout),
            "ftp.tls_subject" => {
                let l = self.tls_loaded();
                match (l.server, l.subject) {
                    (None, _) => "none".to_string(),
                    (Some(_), Some(s)) => s,
                    (Some(_), None) => "unknown".to_string(),
                }
            }
            // seccomp sandbox (issue 14)
            "ftp.seccomp" => self.seccomp.to_string(),
            "io.threads" => self.io_pool.threads().to_string(),
            k if k.starts_with("io.") => gridos_io::get_key(k)?,
            _ => return Err(Error::Config(format!("unknown key {key:?}"))),
        })
    }

    pub(crate) fn set_key(self: &Arc<Self>, key: &str, value: &str) -> Result<String> {
        let v = value.trim();
        let mut note = String::new();
        match key {
            "ftp.docroot" => {
                let root = Root::open(Path::new(v))
                    .map_err(|e| Error::io(format!("open docroot {v}"), e))?;
                self.set_root(root);
                note = match &self.chroot {
                    Some(c) => format!(
                        "applies to new sessions; the server is chrooted to {}, so {v} is a path inside it and the docroot cannot move outside it",
                        c.display()
                    ),
                    None => "applies to new sessions".to_string(),
                };
            }
            "ftp.tls" => {
                let policy: super::TlsPolicy = v.parse()?;
                super::ftps::check_policy(
                    policy,
                    self.tls_loaded().server.is_some(),
                    self.password_users,
                    self.listen,
                )?;
                self.settings_mut().tls = policy;
                note = "applies to new sessions".into();
            }
            "ftp.tls_cert" | "ftp.tls_key" | "ftp.tls_client_ca" | "ftp.grid_mapfile" => {
                let path = match v {
                    "" | "none" if matches!(key, "ftp.tls_client_ca" | "ftp.grid_mapfile") => None,
                    "" | "none" => {
                        return Err(Error::Config(format!(
                            "{key} cannot be removed while running (set ftp.tls off to stop offering TLS)"
                        )));
                    }
                    p => Some(std::path::PathBuf::from(p)),
                };
                {
                    let mut st = self.tls_state();
                    let f = &mut st.files;
                    match key {
                        "ftp.tls_cert" => f.cert = path,
                        "ftp.tls_key" => f.key = path,
                        "ftp.tls_client_ca" => f.client_ca = path,
                        _ => f.grid_mapfile = path,
                    }
                }
                // A new certificate may need its key too: until the files load together the
                // running ones stay in use.
                note = match self.reload_tls() {
                    Ok(n) => n,
                    Err(e) => format!(
                        "set, but not loaded yet ({e}); the TLS files in use stay until tls-reload succeeds"
                    ),
                };
            }
            "ftp.tls_data_reuse" => {
                self.settings_mut().tls_data_reuse = parse_bool(key, v)?;
                note = "applies to new sessions".into();
            }
            "ftp.tls_handshake_timeout" => {
                self.settings_mut().tls_handshake_timeout = parse_secs(key, v)?;
                note = "applies to new connections".into();
            }
            "ftp.listen" | "ftp.chroot" | "ftp.implicit_tls" | "ftp.tls_subject" => {
                return Err(Error::Config(format!("{key} is read-only while running")));
            }
            // seccomp sandbox (issue 14)
            "ftp.seccomp" => {
                return Err(Error::Config(
                    "ftp.seccomp is read-only while running (a seccomp filter cannot be removed, \
                     and one installed late would not cover what start-up needs): restart the \
                     server with --no-seccomp or seccomp = false"
                        .into(),
                ));
            }
            "ftp.threads" => self.set_threads(parse_threads(key, v)?)?,
            "ftp.max_clients" => self.settings_mut().max_clients = parse_num(key, v)?,
            "ftp.max_per_ip" => self.settings_mut().max_per_ip = parse_num(key, v)?,
            "ftp.idle_timeout" => {
                self.settings_mut().idle_timeout = parse_secs(key, v)?;
                note = "applies to new sessions".into();
            }
            "ftp.data_timeout" => {
                self.settings_mut().data_timeout = parse_secs(key, v)?;
                note = "applies to new sessions".into();
            }
            "ftp.shutdown_grace" => self.settings_mut().shutdown_grace = parse_secs(key, v)?,
            "ftp.command_timeout" => {
                self.settings_mut().command_timeout = parse_secs(key, v)?;
                note = "applies to new sessions".into();
            }
            "ftp.reply_timeout" => {
                self.settings_mut().reply_timeout = parse_secs(key, v)?;
                note = "applies to new sessions".into();
            }
            "ftp.login_delay" | "ftp.login_max_failures" | "ftp.login_ban" | "ftp.login_exempt" => {
                let login = {
                    let mut st = self.settings_mut();
                    let l = &mut st.login;
                    match key {
                        "ftp.login_delay" => l.delay = parse_secs_or_zero(key, v)?,
                        "ftp.login_max_failures" => l.max_failures = parse_count(key, v)?,
                        "ftp.login_ban" => l.ban = parse_secs(key, v)?,
                        _ => l.exempt = parse_hosts(key, v)?,
                    }
                    l.clone()
                };
                super::lock(&self.guard).set_config(login);
                note = "applies at once; counts and running bans stay".into();
            }
            "ftp.anonymous" => {
                self.settings_mut().anonymous = parse_bool(key, v)?;
                note = "applies to new sessions".into();
            }
            "ftp.anonymous_write" => {
                self.settings_mut().anonymous_write = parse_bool(key, v)?;
                note = "applies to new sessions".into();
            }
            "ftp.pasv_ports" => {
                self.settings_mut().pasv_ports = parse_ports(v)?;
                note = "applies to new sessions".into();
            }
            "ftp.allow_third_party" => {
                self.settings_mut().allow_third_party = parse_bool(key, v)?;
                note = "applies to new sessions".into();
            }
            "ftp.third_party_hosts" => {
                self.settings_mut().third_party_hosts = parse_hosts(key, v)?;
                note = "applies to new sessions".into();
            }
            "io.threads" => {
                let n = parse_threads(key, v)?;
                self.io_pool.set_threads(n)?;
                let _ = gridos_io::set_key(key, v);
            }
            k if k.starts_with("io.") => gridos_io::set_key(k, v)?,
            _ => return Err(Error::Config(format!("unknown key {key:?}"))),
        }
        tracing::info!(key, value = v, "ftpd: configuration changed");
        Ok(note)
    }

    pub(crate) fn list_keys(&self) -> Vec<(String, String)> {
        let io = gridos_io::IoConfig::KEYS;
        FTP_KEYS
            .iter()
            .chain(io.iter())
            .filter_map(|k| self.get_key(k).ok().map(|v| (k.to_string(), v)))
            .collect()
    }

    pub(crate) fn stats_list(&self) -> Vec<(String, String)> {
        let s = &self.stats;
        let io = gridos_io::stats();
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed).to_string();
        vec![
            ("clients".into(), n(&s.clients_now)),
            ("clients_total".into(), n(&s.clients_total)),
            ("clients_refused".into(), n(&s.clients_refused)),
            ("heap_trims".into(), n(&self.trimmer.trims)),
            ("transfers_active".into(), n(&s.transfers_active)),
            ("transfers_completed".into(), n(&s.transfers_ok)),
            ("transfers_failed".into(), n(&s.transfers_failed)),
            ("bytes_sent".into(), n(&s.bytes_sent)),
            ("bytes_received".into(), n(&s.bytes_received)),
            ("data_connections_refused".into(), n(&s.data_refused)),
            ("tls_sessions".into(), n(&s.tls_sessions)),
            ("tls_handshakes_failed".into(), n(&s.tls_failed)),
            ("data_tls_failed".into(), n(&s.data_tls_failed)),
            ("logins_failed".into(), n(&s.logins_failed)),
            ("logins_delayed".into(), n(&s.logins_delayed)),
            ("clients_banned".into(), n(&s.clients_banned)),
            (
                "login_addresses_tracked".into(),
                super::lock(&self.guard).len().to_string(),
            ),
            ("timeouts_command".into(), n(&s.timeouts_command)),
            ("timeouts_reply".into(), n(&s.timeouts_reply)),
            ("ftp.threads".into(), self.threads().to_string()),
            ("io.threads".into(), self.io_pool.threads().to_string()),
            (
                "io.spare_threads_started".into(),
                self.io_pool.spares_started().to_string(),
            ),
            // seccomp sandbox (issue 14)
            ("sandbox".into(), self.sandbox.to_string()),
            ("io.path".into(), io.probed_path.to_string()),
            (
                "io.transfers_by_path".into(),
                format!(
                    "io_uring-splice={} splice={} read-write={}",
                    io.transfers_by_path[0], io.transfers_by_path[1], io.transfers_by_path[2]
                ),
            ),
            ("io.bytes_sent".into(), io.bytes_sent.to_string()),
            ("io.bytes_received".into(), io.bytes_received.to_string()),
            ("io.tune_decisions".into(), io.tune_decisions.to_string()),
            // Fault tests: pipes held by transfers (0 when none runs) and in all.
            ("io.pipes_in_use".into(), io.pipes_in_use.to_string()),
            ("io.pipes_open".into(), io.pipes_open.to_string()),
        ]
    }

    /// One control-socket command → its answer (lines, each ending in `\n`).
    pub(crate) fn command(self: &Arc<Self>, line: &str) -> String {
        let line = line.trim();
        let (cmd, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        let kv = |v: Vec<(String, String)>| -> String {
            let mut out: String = v.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
            out.push_str("ok\n");
            out
        };
        let err = |e: &dyn std::fmt::Display| format!("err {}\n", e.to_string().replace('\n', " "));
        match cmd {
            "get" if !rest.is_empty() && !rest.contains(char::is_whitespace) => {
                match self.get_key(rest) {
                    Ok(v) => format!("{v}\nok\n"),
                    Err(e) => err(&e),
                }
            }
            "set" => {
                let Some((k, v)) = rest.split_once(char::is_whitespace) else {
                    return "err usage: set KEY VALUE\n".to_string();
                };
                match self.set_key(k, v) {
                    Ok(note) if note.is_empty() => "ok\n".to_string(),
                    Ok(note) => format!("ok {note}\n"),
                    Err(e) => err(&e),
                }
            }
            "list" if rest.is_empty() => kv(self.list_keys()),
            "stats" if rest.is_empty() => kv(self.stats_list()),
            "tls-reload" if rest.is_empty() => match self.reload_tls() {
                Ok(note) => format!("ok {note}\n"),
                Err(e) => err(&e),
            },
            _ => "err usage: get KEY | set KEY VALUE | list | stats | tls-reload\n".to_string(),
        }
    }
}

/// Serves the control socket until `stop` changes.
pub(crate) async fn serve(l: UnixListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            r = l.accept() => match r {
                Ok((s, _)) => {
                    tokio::spawn(client(s, Arc::clone(&shared)));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ftpd: control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => break,
        }
    }
}

async fn client(s: UnixStream, shared: Arc<Shared>) {
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    loop {
        line.clear();
        match (&mut r).take(64 * 1024).read_line(&mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.trim().is_empty() {
            continue;
        }
        let shared2 = Arc::clone(&shared);
        let cmd = line.clone();
        // set ftp.threads joins nothing but may spawn threads; keep it off the runtime.
        let answer = tokio::task::spawn_blocking(move || shared2.command(&cmd))
            .await
            .unwrap_or_else(|_| "err internal error\n".to_string());
        if w.write_all(answer.as_bytes()).await.is_err() {
            break;
        }
    }
}
