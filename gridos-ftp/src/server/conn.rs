//! One control connection: drives a [`proto::Session`](crate::proto::Session) over a tokio
//! socket (clear, or TLS after `AUTH TLS` or from the first byte on the implicit port),
//! carries out its actions and reports back.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use gridos_io::CancelToken;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::fs::{Entry, Root};
use super::ftps::{self, Control, Logins};
use super::transfer::{self, DataTls, Event, Job, Keep};
use super::{SHUTDOWN_ABORT, SHUTDOWN_DRAIN, Shared};
use crate::proto::{
    Action, Features, FsError, FsErrorKind, FsOutcome, Marker, PassiveError, PassiveKind,
    ProtLevel, Session, SessionConfig, TlsEstablished, TransferError, VirtualPath,
};
use crate::tls::{ClientTls, ClientTlsOptions, Roots, SessionTls};

struct Conn {
    sess: Session,
    shared: Arc<Shared>,
    root: Arc<Root>,
    peer: SocketAddr,
    local: SocketAddr,
    ctrl: Control,
    /// This connection's TLS settings (own session cache), when the server has TLS.
    tls: Option<SessionTls>,
    /// `SSCN ON`: the TLS client configuration for data connections (made on first use).
    sscn_client: Option<ClientTls>,
    tls_data_reuse: bool,
    handshake_timeout: Duration,
    passive: Option<TcpListener>,
    /// MODE E data connections kept for the next transfer.
    channels: Option<transfer::Channels>,
    transfer: Option<CancelToken>,
    events_tx: mpsc::UnboundedSender<Event>,
    ctrl_eof: bool,
    draining: bool,
    pasv_ports: Option<(u16, u16)>,
    data_timeout: Duration,
    reply_timeout: Duration,
}

/// Serves one client until it quits, times out, breaks the connection or the server stops.
/// `implicit`: the client came to the implicit-TLS port, so TLS starts at the first byte.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    implicit: bool,
) {
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let settings = shared.settings();
    let root = shared.root();
    let loaded = shared.tls_loaded();
    let tls = loaded.server.as_ref().map(|t| t.session());
    let config = SessionConfig {
        anonymous: settings.anonymous,
        anonymous_write: settings.anonymous_write,
        allow_third_party: settings.allow_third_party,
        third_party_hosts: settings.third_party_hosts.clone(),
        features: features(),
        tls: ftps::rules(settings.tls, tls.is_some(), shared.listen),
        report_logins: true,
        ..SessionConfig::default()
    };
    let auth = Box::new(Logins {
        users: Arc::clone(&shared.users),
        grid_map: loaded.grid_map.clone(),
        guard: Arc::clone(&shared),
        peer: peer.ip(),
    });
    let (ctrl, sess) = if implicit {
        let Some(t) = tls.as_ref().filter(|_| config.tls.offered) else {
            tracing::warn!(%peer, "ftpd: implicit-TLS client, but TLS is not available now");
            return;
        };
        let timeout = settings.tls_handshake_timeout;
        match ftps::handshake(stream, t, timeout, &shared.stats.tls_failed).await {
            Ok((s, established)) => {
                shared.stats.tls_sessions.fetch_add(1, Relaxed);
                tracing::info!(%peer, subject = ?established.subject, "ftpd: implicit TLS established");
                (
                    Control::Tls(Box::new(s)),
                    Session::new_protected(config, auth, peer, established),
                )
            }
            Err(e) => {
                tracing::info!(%peer, error = %e, "ftpd: implicit-TLS handshake failed; client cut");
                return;
            }
        }
    } else {
        (Control::Plain(stream), Session::new(config, auth, peer))
    };
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut c = Conn {
        sess,
        shared: Arc::clone(&shared),
        root,
        peer,
        local,
        ctrl,
        tls,
        sscn_client: None,
        tls_data_reuse: settings.tls_data_reuse,
        handshake_timeout: settings.tls_handshake_timeout,
        passive: None,
        channels: None,
        transfer: None,
        events_tx,
        ctrl_eof: false,
        draining: false,
        pasv_ports: settings.pasv_ports,
        data_timeout: settings.data_timeout,
        reply_timeout: settings.reply_timeout,
    };
    tracing::info!(%peer, "ftpd: client connected");
    let mut shutdown = shared.shutdown.subscribe();
    let mut buf = vec![0u8; 16 * 1024];
    let idle_timeout = settings.idle_timeout;
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    let gone = tokio::time::sleep(Duration::from_secs(0));
    tokio::pin!(gone);
    // A begun command line must end within the command timeout: a client trickling bytes
    // keeps the idle timer from expiring, not this one.
    let command_timeout = settings.command_timeout;
    let line = tokio::time::sleep(command_timeout);
    tokio::pin!(line);
    let mut line_armed = false;
    loop {
        if !c.pump().await {
            break;
        }
        if c.sess.is_closing() || (c.ctrl_eof && c.transfer.is_none()) {
            break;
        }
        let shut = *shutdown.borrow();
        if shut >= SHUTDOWN_DRAIN && !c.draining {
            c.draining = true;
            if c.transfer.is_none() {
                c.sess.handle_shutdown();
                continue;
            }
        }
        if shut >= SHUTDOWN_ABORT {
            if let Some(t) = &c.transfer {
                t.cancel();
            }
        }
        tokio::select! {
            r = c.ctrl.read(&mut buf), if c.sess.wants_input() && !c.ctrl_eof => match r {
                Ok(0) | Err(_) => {
                    // The client is gone. A running transfer may finish draining what the
                    // client sent (an upload then stays partial) for up to the data
                    // timeout, then it is cancelled.
                    c.ctrl_eof = true;
                    gone.as_mut().reset(tokio::time::Instant::now() + c.data_timeout);
                }
                Ok(n) => {
                    let now = tokio::time::Instant::now();
                    idle.as_mut().reset(now + idle_timeout);
                    c.sess.handle_input(&buf[..n]);
                    // Armed when a line begins; a read that ended a line and began
                    // another starts the count again.
                    if !c.sess.in_line() {
                        line_armed = false;
                    } else if !line_armed || buf[..n].contains(&b'\n') {
                        line_armed = true;
                        line.as_mut().reset(now + command_timeout);
                    }
                }
            },
            _ = &mut line, if line_armed && c.sess.wants_input() => {
                line_armed = false;
                shared.stats.timeouts_command.fetch_add(1, Relaxed);
                tracing::info!(%peer, "ftpd: command timeout (a command line did not end)");
                c.sess.handle_command_timeout();
            }
            Some(ev) = events.recv() => {
                c.event(ev);
                idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
            }
            _ = &mut gone, if c.ctrl_eof && c.transfer.is_some() => {
                if let Some(t) = &c.transfer {
                    t.cancel();
                }
            }
            _ = &mut idle, if c.transfer.is_none() => {
                tracing::info!(%peer, "ftpd: idle timeout");
                c.sess.handle_idle_timeout();
            }
            r = shutdown.changed(), if shut < SHUTDOWN_ABORT => {
                if r.is_err() {
                    c.sess.handle_shutdown();
                }
            }
        }
    }
    if let Some(t) = &c.transfer {
        t.cancel();
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), c.ctrl.shutdown()).await;
    tracing::info!(%peer, "ftpd: client disconnected");
}

/// What FEAT lists: the standard set plus every GridFTP extension this server carries out.
fn features() -> Features {
    Features {
        mode_z: true,
        checksums: crate::checksum::ALGORITHMS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ..Features::gridftp()
    }
}

impl Conn {
    /// CKSM, computed on the I/O pool next to the data; the result arrives on the channel.
    fn cksm(
        &self,
        path: VirtualPath,
        algorithm: String,
        offset: u64,
        length: Option<u64>,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<FsOutcome, FsError>>, FsError> {
        use crate::checksum::{Algorithm, ChecksumError, file_checksum};
        let alg = Algorithm::parse(&algorithm).ok_or(FsError {
            kind: FsErrorKind::Unsupported,
            message: "Unknown checksum algorithm.".into(),
        })?;
        let root = Arc::clone(&self.root);
        let (tx, rx) = tokio::sync::oneshot::channel();
        drop(self.shared.io_pool.spawn(move || {
            let r = (|| {
                let file = root.open_read(&path)?;
                if !file.metadata()?.is_file() {
                    return Err(FsError::new(FsErrorKind::IsADirectory));
                }
                file_checksum(&file, alg, offset, length, None).map_err(|e| match e {
                    ChecksumError::OffsetPastEnd { .. } | ChecksumError::RangePastEnd { .. } => {
                        FsError {
                            kind: FsErrorKind::Unsupported,
                            message: "Range beyond end of file.".into(),
                        }
                    }
                    ChecksumError::Io(e) => e.into(),
                    _ => FsError::new(FsErrorKind::Other),
                })
            })();
            let _ = tx.send(r.map(FsOutcome::Checksum));
        }));
        Ok(rx)
    }

    /// Carries out queued actions and writes queued replies until neither is left. False if
    /// the control connection broke.
    async fn pump(&mut self) -> bool {
        loop {
            let mut acted = false;
            while let Some(a) = self.sess.poll_action() {
                acted = true;
                self.perform(a).await;
            }
            if !self.write_replies().await {
                return false;
            }
            if !acted && !self.sess.has_actions() {
                return true;
            }
        }
    }

    /// Writes (and, under TLS, flushes) every queued reply, at most
    /// [`REPLY_BATCH`](crate::proto::REPLY_BATCH) at a time, each batch within the reply
    /// timeout. False if the connection broke or the client does not read.
    async fn write_replies(&mut self) -> bool {
        loop {
            let mut out = Vec::new();
            for _ in 0..crate::proto::REPLY_BATCH {
                match self.sess.poll_reply() {
                    Some(r) => r.write_to(&mut out),
                    None => break,
                }
            }
            if out.is_empty() {
                return true;
            }
            let write = async {
                self.ctrl.write_all(&out).await?;
                self.ctrl.flush().await
            };
            match tokio::time::timeout(self.reply_timeout, write).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return false,
                Err(_) => {
                    self.shared.stats.timeouts_reply.fetch_add(1, Relaxed);
                    tracing::info!(peer = %self.peer, "ftpd: reply timeout (the client does not read its replies); client cut");
                    return false;
                }
            }
        }
    }

    /// A failed password login: the throttle decides how long its 530 waits (this session
    /// only sleeps) and whether the address is now banned.
    async fn login_failed(&mut self, user: &str) -> bool {
        let shared = &self.shared;
        shared.stats.logins_failed.fetch_add(1, Relaxed);
        let ip = self.peer.ip();
        let verdict = super::lock(&shared.guard).failure(ip, std::time::Instant::now());
        let addr = super::guard::AddrKey::of(ip);
        let (delay, ban) = match verdict {
            super::guard::Verdict::Delay(d) => (d, None),
            super::guard::Verdict::Ban { delay, ban } => (delay, Some(ban)),
        };
        if let Some(ban) = ban {
            shared.stats.clients_banned.fetch_add(1, Relaxed);
            tracing::warn!(%addr, user, ban_secs = ban.as_secs(), "ftpd: address banned after failed logins");
        } else if !delay.is_zero() {
            tracing::warn!(%addr, user, delay_ms = delay.as_millis() as u64, "ftpd: failed login; reply delayed");
        }
        if !delay.is_zero() {
            shared.stats.logins_delayed.fetch_add(1, Relaxed);
            let mut shutdown = shared.shutdown.subscribe();
            if *shutdown.borrow() == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        ban.is_some()
    }

    /// `AUTH TLS`: the 234 goes out in clear, then the handshake (bounded by
    /// `ftp.tls_handshake_timeout`) turns the connection into TLS.
    async fn start_tls(&mut self) -> Option<TlsEstablished> {
        let why = if !self.write_replies().await {
            "control connection broke"
        } else if let Some(tls) = self.tls.clone() {
            match std::mem::replace(&mut self.ctrl, Control::Gone) {
                Control::Plain(tcp) => {
                    let failed = &self.shared.stats.tls_failed;
                    match ftps::handshake(tcp, &tls, self.handshake_timeout, failed).await {
                        Ok((s, established)) => {
                            self.ctrl = Control::Tls(Box::new(s));
                            self.shared.stats.tls_sessions.fetch_add(1, Relaxed);
                            tracing::info!(peer = %self.peer, subject = ?established.subject, "ftpd: AUTH TLS established");
                            return Some(established);
                        }
                        Err(e) => {
                            tracing::info!(peer = %self.peer, error = %e, "ftpd: TLS handshake failed; client cut");
                            return None;
                        }
                    }
                }
                other => {
                    self.ctrl = other;
                    "the control connection is not a clear one"
                }
            }
        } else {
            "TLS is not configured"
        };
        tracing::info!(peer = %self.peer, why, "ftpd: AUTH TLS not carried out; client cut");
        None
    }

    fn writable(&self) -> bool {
        self.sess.user().is_some_and(|u| !u.read_only)
    }

    async fn perform(&mut self, a: Action) {
        let r = match a {
            Action::OpenPassive(kind) => {
                self.channels = None;
                let r = self.open_passive(kind).await;
                self.sess.handle_passive_opened(r)
            }
            Action::ClosePassive => {
                self.passive = None;
                self.channels = None;
                Ok(())
            }
            Action::Cksm {
                path,
                algorithm,
                offset,
                length,
            } => {
                let r = match self.cksm(path, algorithm, offset, length) {
                    Ok(rx) => rx
                        .await
                        .unwrap_or_else(|_| Err(FsError::new(FsErrorKind::Other))),
                    Err(e) => Err(e),
                };
                self.sess.handle_fs_result(r)
            }
            Action::Retr(r) => {
                self.start(Job::Retr(r));
                Ok(())
            }
            Action::Stor(s) => {
                self.start(Job::Stor(s));
                Ok(())
            }
            Action::List(l) => {
                self.start(Job::List(l));
                Ok(())
            }
            Action::Abort => {
                if let Some(t) = &self.transfer {
                    t.cancel();
                }
                Ok(())
            }
            Action::StartTls => {
                let r = self.start_tls().await;
                self.sess.handle_tls_established(r)
            }
            Action::LoginFailed { user } => {
                let banned = self.login_failed(&user).await;
                self.sess.handle_login_verdict(banned)
            }
            Action::LoggedIn { user } => {
                tracing::debug!(peer = %self.peer, user, "ftpd: password login");
                super::lock(&self.shared.guard).success(self.peer.ip());
                Ok(())
            }
            other => {
                let r = self.fs(other);
                if let Err(e) = &r {
                    tracing::debug!(peer = %self.peer, error = ?e.kind, "ftpd: file-system action failed");
                }
                self.sess.handle_fs_result(r)
            }
        };
        if let Err(e) = r {
            tracing::error!(peer = %self.peer, error = %e, "ftpd: session report out of order");
        }
    }

    fn fs(&self, a: Action) -> Result<FsOutcome, FsError> {
        let root = &self.root;
        let done = |r: io::Result<()>| r.map(|_| FsOutcome::Done).map_err(FsError::from);
        match a {
            Action::Cwd(p) => {
                if root.stat(&p)?.is_dir() {
                    Ok(FsOutcome::Done)
                } else {
                    Err(FsError::new(FsErrorKind::NotADirectory))
                }
            }
            Action::Mkd(p) => done(root.mkdir(&p)),
            Action::Rmd(p) => done(root.rmdir(&p)),
            Action::Dele(p) => done(root.unlink(&p)),
            Action::Rnfr(p) => done(root.exists(&p)),
            Action::Rename { from, to } => done(root.rename(&from, &to)),
            Action::Size { path, .. } => Ok(FsOutcome::Size(root.size(&path)?)),
            Action::Mdtm(p) => {
                let m = root.stat(&p)?;
                Ok(FsOutcome::Modified(m.modified()?))
            }
            Action::Mfmt { path, modified } => {
                Ok(FsOutcome::Modified(root.set_modified(&path, modified)?))
            }
            Action::Mlst(p) => {
                let m = root.stat(&p)?;
                let e = Entry::from_meta(p.as_str().to_string(), &m);
                Ok(FsOutcome::Facts(
                    e.facts(p.as_str().to_string(), self.writable()),
                ))
            }
            Action::Stat(p) => {
                let now = std::time::SystemTime::now();
                let lines = root
                    .list(&p)?
                    .iter()
                    .map(|e| format!(" {}", e.ls_line(now)))
                    .collect();
                Ok(FsOutcome::Lines(lines))
            }
            Action::Chmod { path, mode } => done(root.chmod(&path, mode)),
            _ => Err(FsError::new(FsErrorKind::Unsupported)),
        }
    }

    async fn open_passive(&mut self, kind: PassiveKind) -> Result<Vec<SocketAddr>, PassiveError> {
        self.passive = None;
        let ip = self.local.ip().to_canonical();
        if kind == PassiveKind::Pasv && !ip.is_ipv4() {
            return Err(PassiveError::NoIpv4);
        }
        let bind = |port: u16| async move { TcpListener::bind(SocketAddr::new(ip, port)).await };
        let io = |e: std::io::Error| PassiveError::Io(e.kind());
        let listener = match self.pasv_ports {
            None => bind(0).await.map_err(io)?,
            Some((lo, hi)) => {
                let span = u32::from(hi - lo) + 1;
                let start = (std::process::id().wrapping_add(self.peer.port() as u32)
                    ^ (self.shared.stats.passive_opened.load(Relaxed) as u32))
                    % span;
                let mut found = None;
                for i in 0..span {
                    let port = lo + ((start + i) % span) as u16;
                    if let Ok(l) = bind(port).await {
                        found = Some(l);
                        break;
                    }
                }
                found.ok_or(PassiveError::NoPort)?
            }
        };
        self.shared.stats.passive_opened.fetch_add(1, Relaxed);
        let addr = listener.local_addr().map_err(io)?;
        self.passive = Some(listener);
        Ok(vec![addr])
    }

    /// How this transfer's data connections are protected: `None` under `PROT C`.
    fn data_tls(&mut self) -> Result<Option<DataTls>, TransferError> {
        if self.sess.protection() != ProtLevel::Private {
            return Ok(None);
        }
        // PROT P is only reachable under TLS; never fall back to clear data.
        let session = self
            .tls
            .clone()
            .ok_or_else(|| TransferError::CannotOpenData("TLS: not available".into()))?;
        let client = if self.sess.sscn() {
            if self.sscn_client.is_none() {
                // The peer server is checked by the data policy only (DCAU N), not by a
                // certificate: server-to-server transfers have no name to verify.
                let opts = ClientTlsOptions {
                    roots: Roots::Insecure,
                    cert: None,
                };
                let c = ClientTls::new(&opts)
                    .map_err(|e| TransferError::CannotOpenData(format!("TLS: {e}")))?;
                self.sscn_client = Some(c);
            }
            self.sscn_client.clone()
        } else {
            None
        };
        Ok(Some(DataTls {
            session,
            require_resume: self.tls_data_reuse && !self.sess.dcau_none(),
            client,
        }))
    }

    fn start(&mut self, job: Job) {
        let tls = match self.data_tls() {
            Ok(t) => t,
            Err(e) => {
                let _ = self.events_tx.send(Event::Finished {
                    result: Err(e),
                    commit: None,
                    keep: Keep::default(),
                });
                return;
            }
        };
        let cancel = CancelToken::new();
        if *self.shared.shutdown.borrow() >= SHUTDOWN_ABORT {
            cancel.cancel();
        }
        self.transfer = Some(cancel.clone());
        let ctx = transfer::Ctx {
            shared: Arc::clone(&self.shared),
            root: Arc::clone(&self.root),
            peer: self.peer,
            local: self.local.ip(),
            policy: self.sess.data_policy(),
            passive: self.passive.take(),
            channels: self.channels.take(),
            data_timeout: self.data_timeout,
            cancel,
            writable: self.writable(),
            events: self.events_tx.clone(),
            tls,
        };
        tokio::spawn(transfer::run(ctx, job));
    }

    /// Whether the client still holds its control connection (reads and queues anything it
    /// sent meanwhile). A read polled once without waiting (a TLS stream has no `try_read`):
    /// "pending" means connected and quiet; the main loop's next read registers its waker
    /// again.
    fn client_present(&mut self) -> bool {
        if self.ctrl_eof {
            return false;
        }
        let mut buf = [0u8; 4096];
        let mut cx = Context::from_waker(std::task::Waker::noop());
        loop {
            let mut rb = ReadBuf::new(&mut buf);
            match Pin::new(&mut self.ctrl).poll_read(&mut cx, &mut rb) {
                Poll::Pending => return true,
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    self.ctrl_eof = true;
                    return false;
                }
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    self.sess.handle_input(&buf[..n]);
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Poll::Ready(Err(_)) => {
                    self.ctrl_eof = true;
                    return false;
                }
            }
        }
    }

    fn event(&mut self, ev: Event) {
        let r = match ev {
            Event::Started(s) => self.sess.handle_transfer_started(s),
            Event::Marker(m) => match &m {
                transfer::MarkerMsg::Perf(p) => self.sess.handle_marker(Marker::Perf(p)),
                transfer::MarkerMsg::Range(r) => self.sess.handle_marker(Marker::Range(r)),
            },
            Event::Finished {
                result,
                commit,
                keep,
            } => {
                self.transfer = None;
                self.channels = keep.channels;
                if keep.passive.is_some() {
                    self.passive = keep.passive;
                }
                let result = match (result, commit) {
                    (Ok(done), Some(commit)) => {
                        if self.client_present() {
                            match commit.apply() {
                                Ok(()) => Ok(done),
                                Err(e) => Err(TransferError::Fs(e.into())),
                            }
                        } else {
                            tracing::info!(peer = %self.peer, "ftpd: client left during upload; partial file kept");
                            Err(TransferError::ConnectionClosed("client gone".into()))
                        }
                    }
                    (r, _) => r,
                };
                if let Err(e) = &result {
                    tracing::info!(peer = %self.peer, error = ?e, "ftpd: transfer failed");
                }
                let r = self.sess.handle_transfer_done(result);
                if self.draining {
                    self.sess.handle_shutdown();
                }
                r
            }
        };
        if let Err(e) = r {
            tracing::error!(peer = %self.peer, error = %e, "ftpd: transfer report out of order");
        }
    }
}
