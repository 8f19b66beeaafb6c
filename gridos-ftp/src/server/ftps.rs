//! FTPS on the server: the certificate and grid-mapfile in force (loaded at start, reloaded
//! live through the control socket), the policy check that keeps passwords off the wire in
//! clear, the sessions' [`TlsRules`], certificate logins, and the control connection's
//! stream (clear, then TLS after `AUTH TLS`, or TLS from the first byte on the implicit
//! port) with its bounded handshake.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::error::{Error, Result};
use super::{PasswordFile, TlsPolicy};
use crate::proto::{AuthOutcome, Authenticator, TlsEstablished, TlsRules};
use crate::tls::{GridMap, ServerTls, SessionTls, TlsError};

/// The TLS files the server was told to use (changeable live).
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    pub grid_mapfile: Option<PathBuf>,
}

/// What was loaded from [`TlsFiles`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Loaded {
    /// The certificate, key and client CA: `None` when no certificate is configured.
    pub server: Option<ServerTls>,
    /// The certificate's subject (for `get ftp.tls_subject` and the logs).
    pub subject: Option<String>,
    /// Certificate subjects mapped to local users.
    pub grid_map: Option<Arc<GridMap>>,
}

/// The files and what they held when last loaded successfully.
#[derive(Debug, Default)]
pub(crate) struct TlsState {
    pub files: TlsFiles,
    pub loaded: Loaded,
}

fn tls_err(what: impl Into<String>) -> impl FnOnce(TlsError) -> Error {
    let what = what.into();
    move |source| Error::Tls { what, source }
}

impl TlsFiles {
    /// Reads every file; nothing is kept unless all of them load.
    pub(crate) fn load(&self) -> Result<Loaded> {
        let (server, subject) = match (&self.cert, &self.key) {
            (None, None) => {
                if self.client_ca.is_some() {
                    return Err(Error::Config(
                        "tls_client_ca needs a server certificate: add tls_cert and tls_key \
                         (--tls-cert FILE --tls-key FILE)"
                            .into(),
                    ));
                }
                (None, None)
            }
            (Some(cert), Some(key)) => {
                let server = ServerTls::from_pem_files(cert, key, self.client_ca.as_deref())
                    .map_err(tls_err(
                        "TLS certificate (tls_cert, tls_key, tls_client_ca)",
                    ))?;
                let subject = crate::tls::load_certs(cert)
                    .ok()
                    .and_then(|c| c.first().and_then(|c| crate::tls::subject_of(c).ok()));
                (Some(server), subject)
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::Config(
                    "tls_cert and tls_key go together: give both (--tls-cert FILE --tls-key FILE)"
                        .into(),
                ));
            }
        };
        let grid_map = match &self.grid_mapfile {
            None => None,
            Some(_) if self.client_ca.is_none() => {
                return Err(Error::Config(
                    "grid_mapfile needs tls_client_ca: certificate logins need client \
                     certificates verified by a CA (--tls-client-ca FILE)"
                        .into(),
                ));
            }
            Some(p) => Some(Arc::new(
                GridMap::load(p).map_err(tls_err(format!("grid-mapfile {}", p.display())))?,
            )),
        };
        Ok(Loaded {
            server,
            subject,
            grid_map,
        })
    }
}

/// Whether `listen` is a loopback address (where passwords never leave the host).
pub(crate) fn is_loopback(listen: SocketAddr) -> bool {
    listen.ip().to_canonical().is_loopback()
}

/// Refuses a policy under which the configured logins cannot happen: passwords that would
/// have to go in clear to a network address, or TLS required without a certificate.
pub(crate) fn check_policy(
    policy: TlsPolicy,
    has_tls: bool,
    password_users: bool,
    listen: SocketAddr,
) -> Result<()> {
    if has_tls {
        return Ok(());
    }
    match policy {
        TlsPolicy::Required => Err(Error::Config(
            "tls = required, but no certificate is configured: add --tls-cert FILE \
             --tls-key FILE (ftp.tls_cert, ftp.tls_key), or choose --tls optional or --tls off"
                .into(),
        )),
        TlsPolicy::Passwords if password_users && !is_loopback(listen) => {
            Err(Error::Config(format!(
                "password logins need TLS when listening on {listen} (not loopback), but no \
                 certificate is configured: add --tls-cert FILE --tls-key FILE (ftp.tls_cert, \
                 ftp.tls_key), listen on a loopback address, or accept passwords in clear \
                 with --tls off (tls = \"off\")"
            )))
        }
        _ => Ok(()),
    }
}

/// The TLS rules of a new session.
pub(crate) fn rules(policy: TlsPolicy, has_tls: bool, listen: SocketAddr) -> TlsRules {
    TlsRules {
        offered: has_tls && policy != TlsPolicy::Off,
        passwords: match policy {
            TlsPolicy::Passwords => !is_loopback(listen),
            TlsPolicy::Required => true,
            _ => false,
        },
        required: policy == TlsPolicy::Required,
    }
}

/// Password checks against the password file; certificate logins through the grid-mapfile.
pub(crate) struct Logins {
    pub users: Arc<PasswordFile>,
    pub grid_map: Option<Arc<GridMap>>,
    /// The login throttle's table and the client's address: a banned address gets 421 at
    /// `USER`.
    pub guard: Arc<super::Shared>,
    pub peer: std::net::IpAddr,
}

impl Authenticator for Logins {
    fn authenticate(&mut self, user: &str, password: &str) -> AuthOutcome {
        if self.users.verify(user, password) {
            AuthOutcome::Granted { read_only: false }
        } else {
            AuthOutcome::Denied
        }
    }

    fn map_subject(&mut self, subject: &str, wanted: &str) -> Option<String> {
        let user = self.grid_map.as_ref()?.login(subject, wanted)?;
        tracing::info!(subject, user, "ftpd: certificate login");
        Some(user.to_string())
    }

    fn refusal(&mut self) -> Option<String> {
        let now = std::time::Instant::now();
        let left = super::lock(&self.guard.guard).banned(self.peer, now)?;
        let addr = super::guard::AddrKey::of(self.peer);
        tracing::warn!(%addr, left_secs = left.as_secs(), "ftpd: USER refused: address banned after failed logins");
        Some("Too many failed logins from your address, try again later.".into())
    }
}

/// A control connection: clear, or TLS.
pub(crate) enum Control {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Neither any more: a handshake failed after `AUTH TLS` (reads see EOF).
    Gone,
}

impl AsyncRead for Control {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Control::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Control::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
            Control::Gone => Poll::Ready(Ok(())),
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "control connection lost")
}

impl AsyncWrite for Control {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Control::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Control::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
            Control::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Control::Plain(s) => Pin::new(s).poll_flush(cx),
            Control::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
            Control::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Control::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Control::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
            Control::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// The server side of a control connection's handshake, cut after `timeout` (a client that
/// stalls or sends garbage holds only its own task, never the others'). Gives the client
/// certificate's subject, if it sent one. A failure is counted in `failed` before the
/// connection closes (so whoever sees the close also sees the count).
pub(crate) async fn handshake(
    tcp: TcpStream,
    tls: &SessionTls,
    timeout: Duration,
    failed: &AtomicU64,
) -> std::result::Result<(tokio_rustls::server::TlsStream<TcpStream>, TlsEstablished), TlsError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
    let mut accept = std::pin::pin!(acceptor.accept(tcp).into_fallible());
    let stream = match tokio::time::timeout(timeout, accept.as_mut()).await {
        Ok(Ok(s)) => s,
        Err(_) => {
            // The connection is still held by `accept`: dropped after the count.
            failed.fetch_add(1, Relaxed);
            return Err(TlsError::Timeout(timeout));
        }
        Ok(Err((e, _tcp))) => {
            failed.fetch_add(1, Relaxed);
            return Err(match TlsError::from_handshake(e) {
                TlsError::Timeout(_) => TlsError::Timeout(timeout),
                other => other,
            });
        }
    };
    let subject = match stream.get_ref().1.peer_certificates() {
        Some([first, ..]) => match crate::tls::subject_of(first) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "ftpd: client certificate subject unreadable");
                None
            }
        },
        _ => None,
    };
    Ok((stream, TlsEstablished { subject }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn policies_that_make_password_logins_impossible_are_refused() {
        let any = addr("0.0.0.0:21");
        let lo = addr("127.0.0.1:21");
        let e = check_policy(TlsPolicy::Passwords, false, true, any).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("--tls-cert") && m.contains("--tls off"), "{m}");
        check_policy(TlsPolicy::Passwords, false, true, lo).unwrap();
        check_policy(TlsPolicy::Passwords, false, false, any).unwrap();
        check_policy(TlsPolicy::Passwords, true, true, any).unwrap();
        check_policy(TlsPolicy::Off, false, true, any).unwrap();
        check_policy(TlsPolicy::Optional, false, true, any).unwrap();
        assert!(check_policy(TlsPolicy::Required, false, false, lo).is_err());
        check_policy(TlsPolicy::Required, true, true, any).unwrap();
    }

    #[test]
    fn session_rules_per_policy() {
        let any = addr("[::]:21");
        let lo = addr("[::1]:21");
        let r = rules(TlsPolicy::Passwords, true, any);
        assert!(r.offered && r.passwords && !r.required);
        assert!(!rules(TlsPolicy::Passwords, true, lo).passwords);
        assert!(!rules(TlsPolicy::Off, true, any).offered);
        assert!(!rules(TlsPolicy::Optional, false, any).offered);
        let r = rules(TlsPolicy::Required, true, lo);
        assert!(r.offered && r.passwords && r.required);
        assert!(is_loopback(addr("[::ffff:127.0.0.2]:1")));
    }

    #[test]
    fn files_go_together() {
        let some = |p: &str| Some(PathBuf::from(p));
        let half = TlsFiles {
            cert: some("/nonexistent/c.pem"),
            ..TlsFiles::default()
        };
        assert!(matches!(half.load(), Err(Error::Config(_))));
        let ca_alone = TlsFiles {
            client_ca: some("/nonexistent/ca.pem"),
            ..TlsFiles::default()
        };
        assert!(matches!(ca_alone.load(), Err(Error::Config(_))));
        let missing = TlsFiles {
            cert: some("/nonexistent/c.pem"),
            key: some("/nonexistent/k.pem"),
            ..TlsFiles::default()
        };
        let e = missing.load().unwrap_err();
        assert!(matches!(e, Error::Tls { .. }), "{e:?}");
        assert!(e.to_string().contains("/nonexistent/c.pem"), "{e}");
        assert!(TlsFiles::default().load().unwrap().server.is_none());
    }
}
