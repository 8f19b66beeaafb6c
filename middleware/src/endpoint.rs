//! The two ends of a copy: this machine or a logged-in FTP server, and paths on them.

use crate::hosts::HostMemory;
use crate::observe::{CopyObserver, Progress};
use crate::options::CopyOptions;
use crate::plan::{PathFacts, TransferPlan, plan_side};
use crate::url::{FtpTls, FtpUrl, remote_join};
use crate::{Error, ErrorKind, Result};
use gridos_ftp::client::{Client, ClientConfig, EntryKind, TlsMode};
use gridos_ftp::tls::{ClientTls, ClientTlsOptions, Roots};
use gridos_io::CancelToken;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

/// A logged-in FTP server with the plan for moving data to or from it.
pub(crate) struct FtpSide {
    pub client: Client,
    pub url: FtpUrl,
    pub plan: TransferPlan,
}

/// An HTTP(S) source and what its server said of it.
pub(crate) struct HttpSide {
    pub source: crate::http::HttpSource,
    pub url: crate::url::HttpUrl,
    pub stat: crate::http::HttpStat,
}

/// One side of the copy.
pub(crate) enum Side {
    Local,
    Ftp(Box<FtpSide>),
    /// A source only.
    Http(Box<HttpSide>),
}

/// A path on one side.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    Local(PathBuf),
    Remote(String),
}

/// How a connection is made: what every connection of one copy shares.
pub(crate) struct Connector<'a> {
    pub options: &'a CopyOptions,
    /// The copy's byte counts; its `current` is every connection's progress counter.
    pub progress: Arc<Progress>,
    pub cancel: CancelToken,
    /// Where notices go (a password that went in clear).
    observer: Arc<dyn CopyObserver>,
    /// The TLS settings, loaded once (roots, client certificate) for every connection.
    tls: OnceLock<ClientTls>,
    /// Servers already warned about a password in clear (once per copy is enough).
    warned: Mutex<HashSet<String>>,
    /// What earlier copies learned of the servers; written back when the copy ends.
    pub memory: HostMemory,
    /// The most streams a sender opened while its transfers ran, by endpoint.
    grown: Arc<Mutex<std::collections::HashMap<String, u32>>>,
}

impl Drop for Connector<'_> {
    fn drop(&mut self) {
        self.memory.save();
    }
}

impl<'a> Connector<'a> {
    pub fn new(
        options: &'a CopyOptions,
        progress: Arc<Progress>,
        cancel: CancelToken,
        observer: Arc<dyn CopyObserver>,
    ) -> Connector<'a> {
        Connector {
            options,
            progress,
            cancel,
            observer,
            tls: OnceLock::new(),
            warned: Mutex::new(HashSet::new()),
            memory: HostMemory::open(&options.host_memory),
            grown: Arc::default(),
        }
    }

    /// The TLS settings of [`CopyOptions::tls`](crate::TlsOptions), built on first use.
    fn client_tls(&self) -> Result<ClientTls> {
        if let Some(t) = self.tls.get() {
            return Ok(t.clone());
        }
        let o = &self.options.tls;
        let mut options = ClientTlsOptions::default();
        options.roots = match (&o.ca_file, o.insecure) {
            (_, true) => Roots::Insecure,
            (Some(f), false) => Roots::File(f.clone()),
            (None, false) => Roots::System,
        };
        options.cert = o.cert.clone();
        let t = ClientTls::new(&options).map_err(Error::from_tls)?;
        Ok(self.tls.get_or_init(|| t).clone())
    }

    /// Connects and logs in, with TLS as the URL and the options say.
    pub fn login(&self, url: &FtpUrl, active: bool) -> Result<Client> {
        self.login_inner(url, active, false)
    }

    /// Logs in like [`login`](Self::login) and asks about the URL's path in the same round
    /// trip as the login's FEAT (`Client::login_with_stat`): for a caller whose next step is
    /// `stat` of that path.
    pub fn login_and_stat(&self, url: &FtpUrl, active: bool) -> Result<Client> {
        self.login_inner(url, active, true)
    }

    fn login_inner(&self, url: &FtpUrl, active: bool, stat_ahead: bool) -> Result<Client> {
        let mut config = ClientConfig::default();
        config.transfer.progress = Some(self.progress.current.clone());
        config.transfer.cancel = Some(self.cancel.clone());
        config.transfer.path = self.options.io_path;
        let (obs, endpoint, grown) = (self.observer.clone(), url.display(), self.grown.clone());
        config.transfer.on_decision = Some(gridos_io::DecisionSink::new(move |d| {
            if let gridos_io::tune::TuneAction::StreamAdded { streams } = d.action {
                let mut g = grown.lock().unwrap_or_else(|p| p.into_inner());
                let e = g.entry(endpoint.clone()).or_default();
                *e = (*e).max(streams);
            }
            obs.adjusted(&endpoint, d)
        }));
        config.active = active;
        // The client sends it ahead only where no TLS has to come first.
        config.login_before_greeting = self.memory.login_ahead(&url.host, url.port);
        if let Some(d) = self.options.busy_retry {
            config.busy_retry = d;
        }
        if let Some(t) = self.options.timeout {
            config.connect_timeout = t;
            config.reply_timeout = t;
            config.data_timeout = t;
        }
        let tls = &self.options.tls;
        config.tls = match url.tls {
            FtpTls::Implicit => TlsMode::Implicit,
            FtpTls::Explicit => TlsMode::Explicit,
            _ if tls.require => TlsMode::Explicit,
            _ => TlsMode::Auto,
        };
        // An anonymous login on a plain URL stays clear: no certificates to load.
        let may_tls = config.tls != TlsMode::Auto || url.user != "anonymous";
        if may_tls || tls.customised() {
            config.tls_config = Some(self.client_tls()?);
        }
        let mut c = Client::connect_host(&url.host, url.port, config)
            .map_err(|e| Error::from_ftp(url.display(), e))?;
        let pass = url.login_password();
        let logged_in = if stat_ahead {
            c.login_with_stat(&url.user, &pass, &url.path)
        } else {
            c.login(&url.user, &pass)
        };
        logged_in.map_err(|e| {
            let e = Error::from_ftp(url.display(), e).detail("login");
            if e.reply_code() == Some(530) {
                return Error::new(ErrorKind::PermissionDenied, e.what())
                    .detail("login refused (530)")
                    .source(e);
            }
            e
        })?;
        let greeting = c.welcome().lines.first().cloned().unwrap_or_default();
        self.memory
            .logged_in(&url.host, url.port, &greeting, c.login_ahead());
        if c.sent_password_in_clear() {
            let host = url.authority();
            let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
            if warned.insert(host.clone()) {
                self.observer.notice(&format!(
                    "warning: the password for {}@{host} went in clear: the server offers \
                     no TLS (use --tls or ftpes:// to refuse such servers)",
                    url.user
                ));
            }
        }
        Ok(c)
    }

    /// The most streams a sender opened while its transfers to or from `endpoint` ran (as
    /// [`FtpUrl::display`] names it), if it opened any.
    pub fn grown_to(&self, endpoint: &str) -> Option<u32> {
        let g = self.grown.lock().unwrap_or_else(|p| p.into_inner());
        g.get(endpoint).copied()
    }

    /// Connects, logs in and plans the side of `url`.
    pub fn side(&self, url: FtpUrl, obs: &dyn CopyObserver) -> Result<FtpSide> {
        // Copy::run stats the URL's path first.
        let client = self.login_and_stat(&url, self.options.active)?;
        let rtt_us = client
            .control_tcp_info()
            .ok()
            .map(|i| {
                if i.min_rtt_us > 0 {
                    i.min_rtt_us
                } else {
                    i.rtt_us
                }
            })
            .unwrap_or(0);
        let facts = PathFacts {
            gridftp: client.gridftp(),
            gridftp_url: url.gridftp,
            rtt_us,
            privileged: gridos_io::privileged(),
            remembered_bytes_per_sec: self.memory.delivered(&url.host, url.port),
        };
        let mut plan = plan_side(
            &url.display(),
            facts,
            self.options,
            &gridos_io::config(),
            &gridos_io::tune::SysLimits::read(),
        )?;
        let tls = &self.options.tls;
        plan.tls = client.tls_params().map(|p| crate::plan::TlsPlan {
            version: p.version.to_string(),
            cipher: p.cipher,
            data_protected: client.data_protected(),
            server_checked: match (&tls.ca_file, tls.insecure) {
                (_, true) => crate::plan::CertCheck::NotChecked,
                (Some(f), false) => crate::plan::CertCheck::CaFile(f.clone()),
                (None, false) => crate::plan::CertCheck::SystemRoots,
            },
        });
        plan.login_ahead = client.login_ahead();
        obs.planned(&url.display(), &plan);
        Ok(FtpSide { client, url, plan })
    }
}

impl Node {
    pub fn show(&self, side: &Side) -> String {
        match (self, side) {
            (Node::Local(p), _) => p.display().to_string(),
            (Node::Remote(p), Side::Ftp(f)) => f.url.display_path(p),
            (Node::Remote(_), Side::Http(h)) => h.url.display(),
            (Node::Remote(p), Side::Local) => p.clone(),
        }
    }

    pub fn join(&self, name: &str) -> Node {
        match self {
            Node::Local(p) => Node::Local(p.join(name)),
            Node::Remote(p) => Node::Remote(remote_join(p, name)),
        }
    }
}

/// HTTP(S) URLs are read, never written or listed.
pub(crate) fn http_is_a_source(h: &HttpSide) -> Error {
    Error::new(ErrorKind::InvalidInput, h.url.display())
        .detail("http(s):// URLs are copy sources (single files) only")
}

impl HttpSide {
    /// Asks the server what the URL is.
    pub fn open(url: crate::url::HttpUrl) -> Result<HttpSide> {
        let mut config = crate::http::HttpConfig::default();
        config
            .credentials
            .extend(crate::http::Credentials::of(&url));
        let source = crate::http::HttpSource::new(config)?;
        let stat = source.stat(&url)?;
        Ok(HttpSide { source, url, stat })
    }
}

/// A path given to the wrong side: a bug in the planner, reported rather than panicking.
fn mismatched(what: &str) -> Error {
    Error::new(ErrorKind::InvalidInput, what).detail("a remote path on the local side")
}

/// What a node is, with its size and modification time when known.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    pub kind: EntryKind,
    pub size: Option<u64>,
    pub modified: Option<SystemTime>,
}

impl Meta {
    fn local(m: &std::fs::Metadata) -> Meta {
        Meta {
            kind: local_kind(m),
            size: Some(m.len()),
            modified: m.modified().ok(),
        }
    }
}

/// What a node is: `None` when it does not exist.
pub(crate) fn stat(side: &mut Side, node: &Node) -> Result<Option<Meta>> {
    match (side, node) {
        (_, Node::Local(p)) => Ok(std::fs::metadata(p).ok().map(|m| Meta::local(&m))),
        (Side::Ftp(f), Node::Remote(p)) => f
            .client
            .stat(p)
            .map(|e| {
                e.map(|e| Meta {
                    kind: e.kind,
                    size: e.size,
                    modified: e.modified,
                })
            })
            .map_err(|e| Error::from_ftp(f.url.display_path(p), e)),
        (Side::Http(h), Node::Remote(_)) => Ok(Some(Meta {
            kind: EntryKind::File,
            size: h.stat.size,
            modified: h.stat.modified,
        })),
        (Side::Local, Node::Remote(p)) => Err(mismatched(p)),
    }
}

fn local_kind(m: &std::fs::Metadata) -> EntryKind {
    if m.is_dir() {
        EntryKind::Dir
    } else if m.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    }
}

/// A file to copy.
#[derive(Clone, Debug)]
pub(crate) struct FileJob {
    pub src: Node,
    pub dst: Node,
    /// The source's size, when the listing or MLST said.
    pub size: Option<u64>,
    /// The source's modification time, when known (for `preserve_times`).
    pub modified: Option<SystemTime>,
}

/// Lists `src` recursively: directories to create under `dst` (parents first) and files.
pub(crate) fn walk(
    side: &mut Side,
    src: &Node,
    dst: &Node,
    dirs: &mut Vec<Node>,
    files: &mut Vec<FileJob>,
    obs: &dyn CopyObserver,
) -> Result<()> {
    dirs.push(dst.clone());
    let entries: Vec<(String, Meta)> = match (&mut *side, src) {
        (_, Node::Local(p)) => {
            let what = || p.display().to_string();
            let mut v = Vec::new();
            for e in std::fs::read_dir(p).map_err(|e| Error::from_io(what(), e))? {
                let e = e.map_err(|e| Error::from_io(what(), e))?;
                let m = std::fs::metadata(e.path())
                    .map_err(|err| Error::from_io(e.path().display().to_string(), err))?;
                v.push((
                    e.file_name().to_string_lossy().into_owned(),
                    Meta::local(&m),
                ));
            }
            v
        }
        (Side::Ftp(f), Node::Remote(p)) => f
            .client
            .list(Some(p))
            .map_err(|e| Error::from_ftp(f.url.display_path(p), e).detail("list"))?
            .into_iter()
            .map(|e| {
                let m = Meta {
                    kind: e.kind,
                    size: e.size,
                    modified: e.modified,
                };
                (e.name, m)
            })
            .collect(),
        (Side::Http(h), Node::Remote(_)) => return Err(http_is_a_source(h)),
        (Side::Local, Node::Remote(p)) => return Err(mismatched(p)),
    };
    for (name, m) in entries {
        match m.kind {
            EntryKind::Dir => walk(side, &src.join(&name), &dst.join(&name), dirs, files, obs)?,
            EntryKind::File => files.push(FileJob {
                src: src.join(&name),
                dst: dst.join(&name),
                size: m.size,
                modified: m.modified,
            }),
            _ => obs.notice(&format!(
                "skipping {} (not a regular file or directory)",
                src.join(&name).show(side)
            )),
        }
    }
    Ok(())
}

/// Creates a directory (an existing one is fine).
pub(crate) fn make_dir(side: &mut Side, d: &Node) -> Result<()> {
    match (&mut *side, d) {
        (_, Node::Local(p)) => std::fs::create_dir_all(p)
            .map_err(|e| Error::from_io(format!("mkdir {}", p.display()), e)),
        (Side::Ftp(f), Node::Remote(p)) => match f.client.mkdir(p) {
            Ok(()) => Ok(()),
            Err(e) if e.reply_code().is_some() => match f.client.stat(p) {
                Ok(Some(en)) if en.kind == EntryKind::Dir => Ok(()),
                _ => Err(Error::from_ftp(f.url.display(), e).detail(format!("mkdir {p}"))),
            },
            Err(e) => Err(Error::from_ftp(f.url.display(), e).detail(format!("mkdir {p}"))),
        },
        (Side::Http(h), Node::Remote(_)) => Err(http_is_a_source(h)),
        (Side::Local, Node::Remote(p)) => Err(mismatched(p)),
    }
}

/// Gives `node` the modification time `t` (`preserve_times`).
pub(crate) fn set_modified(side: &mut Side, node: &Node, t: SystemTime) -> Result<()> {
    match (side, node) {
        (_, Node::Local(p)) => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .or_else(|_| std::fs::File::open(p))
                .map_err(|e| {
                    Error::from_io(format!("{}: setting the modification time", p.display()), e)
                })?;
            f.set_modified(t).map_err(|e| {
                Error::from_io(format!("{}: setting the modification time", p.display()), e)
            })
        }
        (Side::Ftp(f), Node::Remote(p)) => f
            .client
            .set_modified(p, t)
            .map_err(|e| Error::from_ftp(f.url.display_path(p), e).detail("MFMT")),
        (Side::Http(h), Node::Remote(_)) => Err(http_is_a_source(h)),
        (Side::Local, Node::Remote(p)) => Err(mismatched(p)),
    }
}
