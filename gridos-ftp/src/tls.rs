//! TLS for control and data connections (FTPS, RFC 4217), on rustls with the ring provider.
//!
//! Where to start:
//! - [`ServerTls`]: the server's certificate chain and key (from PEM files), TLS 1.2 and 1.3
//!   only, ALPN `ftp`, an optional CA for client certificates. [`ServerTls::session`] gives
//!   each control connection a [`SessionTls`] with a session cache of its own: a data
//!   connection that *resumes* a session from that cache can only come from the client that
//!   holds the control connection (vsftpd's `require_ssl_reuse`); [`SessionTls::accept_data`]
//!   checks it.
//! - [`ClientTls`]: the client's side — server certificates verified against the system's
//!   roots, a CA file, or (said loudly) not at all; an optional client certificate. One
//!   [`ClientTls`] serves a control connection and all its data connections, so the data
//!   connections resume the control connection's session, as servers like vsftpd require.
//! - [`DataStream`]: a data connection, plain or TLS, as `Read + Write`; [`DataStream::finish`]
//!   ends it the TLS way (close_notify) so the peer can tell a complete transfer from a cut.
//! - [`GridMap`] and [`subject_of`]: certificate logins, the grid way — a Globus grid-mapfile
//!   maps a certificate's subject (`/C=…/O=…/CN=…`) to local users.
//!
//! Errors are one [`TlsError`]; a peer's certificate that fails verification keeps rustls's
//! reason ([`TlsError::Rejected`] / [`TlsError::reason`]: unknown issuer, expired, not valid
//! for the name).
//!
//! ```
//! use gridos_ftp::tls::GridMap;
//! let map = GridMap::parse("\"/C=XX/O=Grid/CN=Jane Doe\" jdoe,jane\n# comment\n").unwrap();
//! assert_eq!(map.users("/C=XX/O=Grid/CN=Jane Doe"), Some(&["jdoe".to_string(), "jane".to_string()][..]));
//! assert_eq!(map.users("/C=XX/O=Grid/CN=Eve"), None);
//! ```

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use rustls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ServerSessionMemoryCache, StoresServerSessions, WebPkiClientVerifier};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, RootCertStore,
    ServerConfig, ServerConnection, SignatureScheme, StreamOwned,
};

/// The ALPN protocol id of FTP (IANA registry).
pub const ALPN_FTP: &[u8] = b"ftp";

/// TLS 1.3 tickets a server hands out on a control connection's handshake (and at most on a
/// data connection, to a client that asks): enough for MODE E's parallel data connections to
/// each resume the control connection's session (a rustls client keeps up to 8).
const TICKETS: usize = 8;

/// Sessions remembered per control connection (its data connections resume from them).
const SESSIONS_PER_CONTROL: usize = 64;

/// Failures of TLS set-up and handshakes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate, key or CA file could not be read or holds no usable PEM.
    #[error("{path}: {what}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: &'static str,
        /// The I/O or PEM error, if there was one.
        #[source]
        source: Option<rustls::pki_types::pem::Error>,
    },
    /// rustls refused the configuration (a key that does not match the certificate, say).
    #[error("TLS configuration: {0}")]
    Config(#[source] rustls::Error),
    /// The client CA store could not become a verifier.
    #[error("client certificate verifier: {0}")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
    /// The peer's certificate or the handshake failed verification (the reason is kept).
    #[error("TLS handshake rejected: {}", reason(.0))]
    Rejected(#[source] rustls::Error),
    /// The handshake did not finish within the timeout.
    #[error("TLS handshake timed out after {0:?}")]
    Timeout(Duration),
    /// The connection failed or closed during the handshake.
    #[error("TLS handshake: {0}")]
    Io(#[source] io::Error),
    /// A `PROT P` data connection did not resume the control connection's TLS session: it is
    /// not from the client that holds the control connection.
    #[error("data connection did not resume the control connection's TLS session")]
    NotResumed,
    /// The server name or address is not usable for TLS.
    #[error("not a valid TLS server name: {0}")]
    ServerName(String),
    /// A certificate could not be parsed (for its subject).
    #[error("certificate cannot be parsed: {0}")]
    Certificate(String),
    /// A grid-mapfile line could not be read.
    #[error("grid-mapfile line {line}: {what}")]
    GridMap {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: &'static str,
    },
}

impl TlsError {
    /// The short reason a peer's certificate was refused, if that is what happened.
    pub fn reason(&self) -> Option<String> {
        match self {
            TlsError::Rejected(e) => Some(reason(e)),
            _ => None,
        }
    }

    /// A handshake's I/O error, with rustls's own error (carried inside the `io::Error`)
    /// brought out so the reason stays readable and matchable.
    pub fn from_handshake(e: io::Error) -> TlsError {
        if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
            match e.into_inner().map(|b| b.downcast::<rustls::Error>()) {
                Some(Ok(r)) => return TlsError::Rejected(*r),
                Some(Err(other)) => return TlsError::Io(io::Error::other(other)),
                None => return TlsError::Io(io::Error::other("TLS failure")),
            }
        }
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                TlsError::Timeout(Duration::ZERO)
            }
            _ => TlsError::Io(e),
        }
    }
}

/// Human words for the reasons a certificate is refused most often.
fn reason(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "certificate not trusted (unknown issuer)".into(),
            C::Expired | C::ExpiredContext { .. } => format!("certificate expired ({c})"),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                format!("certificate not yet valid ({c})")
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                format!("certificate not valid for this host name ({c})")
            }
            C::Revoked => "certificate revoked".into(),
            C::BadSignature => "certificate has a bad signature".into(),
            other => format!("certificate refused: {other}"),
        },
        rustls::Error::NoCertificatesPresented => "no certificate presented".into(),
        rustls::Error::AlertReceived(a) => format!("the peer sent alert {a:?}"),
        other => other.to_string(),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn file_err(
    path: &Path,
    what: &'static str,
) -> impl FnOnce(rustls::pki_types::pem::Error) -> TlsError {
    let path = path.to_path_buf();
    move |e| TlsError::File {
        path,
        what,
        source: Some(e),
    }
}

/// Every certificate in a PEM file (a chain: the end entity first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(file_err(path, "cannot read certificates"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(file_err(path, "bad PEM"))?;
    if certs.is_empty() {
        return Err(TlsError::File {
            path: path.to_path_buf(),
            what: "no certificate in the file",
            source: None,
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        path: path.to_path_buf(),
        what: "no usable private key in the file",
        source: Some(e),
    })
}

/// A root store of every certificate in a PEM file.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(path)? {
        roots.add(c).map_err(|_| TlsError::File {
            path: path.to_path_buf(),
            what: "a certificate in the file is not a usable CA certificate",
            source: None,
        })?;
    }
    Ok(roots)
}

/// The server's TLS credentials and settings, shared by all its control connections.
#[derive(Clone)]
pub struct ServerTls {
    base: Arc<ServerConfig>,
    client_ca: bool,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("client_ca", &self.client_ca)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads the certificate chain, the key and, when given, the CA file for client
    /// certificates (clients are then asked for one; a client without one can still log in
    /// with a password).
    pub fn from_pem_files(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
    ) -> Result<ServerTls, TlsError> {
        let roots = client_ca.map(load_roots).transpose()?;
        ServerTls::new(load_certs(cert)?, load_key(key)?, roots)
    }

    /// From certificates and key in memory.
    pub fn new(
        certs: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        client_ca: Option<RootCertStore>,
    ) -> Result<ServerTls, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(TlsError::Config)?;
        let has_ca = client_ca.is_some();
        let builder = match client_ca {
            Some(roots) => {
                let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .allow_unauthenticated()
                    .build()
                    .map_err(TlsError::Verifier)?;
                builder.with_client_cert_verifier(v)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(TlsError::Config)?;
        config.alpn_protocols = vec![ALPN_FTP.to_vec()];
        config.send_tls13_tickets = TICKETS;
        Ok(ServerTls {
            base: Arc::new(config),
            client_ca: has_ca,
        })
    }

    /// Whether clients are asked for a certificate.
    pub fn asks_client_certificate(&self) -> bool {
        self.client_ca
    }

    /// The settings for one control connection: its own session cache, so its data
    /// connections can be checked to resume *this* session.
    pub fn session(&self) -> SessionTls {
        let cache = ServerSessionMemoryCache::new(SESSIONS_PER_CONTROL);
        let mut c = (*self.base).clone();
        let shared: Arc<dyn StoresServerSessions> = cache.clone();
        c.session_storage = Arc::new(SessionStore::control(shared));
        SessionTls {
            config: Arc::new(c),
            cache,
        }
    }
}

/// How one connection sees its control connection's session cache.
///
/// - Sessions are not used up by a resumption: clients such as OpenSSL's offer the control
///   connection's one session on every data connection. (There is no early data to
///   replay, and the cache belongs to one control connection.)
/// - A data connection stores the sessions it issues only once it has resumed one, so a
///   stranger whose full handshake is then refused gets no ticket to come back with.
#[derive(Debug)]
struct SessionStore {
    cache: Arc<dyn StoresServerSessions>,
    control: bool,
    resumed: AtomicBool,
}

impl SessionStore {
    fn control(cache: Arc<dyn StoresServerSessions>) -> SessionStore {
        SessionStore {
            cache,
            control: true,
            resumed: AtomicBool::new(false),
        }
    }

    fn data(cache: Arc<dyn StoresServerSessions>) -> SessionStore {
        SessionStore {
            control: false,
            ..SessionStore::control(cache)
        }
    }

    fn may_store(&self) -> bool {
        self.control || self.resumed.load(Ordering::Relaxed)
    }
}

impl StoresServerSessions for SessionStore {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.may_store() && self.cache.put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let v = self.cache.get(key);
        if v.is_some() {
            self.resumed.store(true, Ordering::Relaxed);
        }
        v
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.get(key)
    }

    fn can_cache(&self) -> bool {
        self.may_store() && self.cache.can_cache()
    }
}

/// One control connection's TLS settings (see [`ServerTls::session`]).
#[derive(Clone)]
pub struct SessionTls {
    config: Arc<ServerConfig>,
    cache: Arc<ServerSessionMemoryCache>,
}

impl std::fmt::Debug for SessionTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTls").finish_non_exhaustive()
    }
}

impl SessionTls {
    /// The rustls configuration (for the control connection's handshake, e.g. with
    /// tokio-rustls).
    pub fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config)
    }

    /// A blocking server handshake on the control connection itself (its tickets fill this
    /// session's cache, for the data connections to resume). The server proper does this
    /// on tokio with [`SessionTls::config`]; this is for blocking drivers and tests.
    pub fn accept_control(
        &self,
        sock: TcpStream,
        timeout: Duration,
    ) -> Result<DataStream, TlsError> {
        let conn = ServerConnection::new(self.config()).map_err(TlsError::Config)?;
        let mut s = StreamOwned::new(conn, sock);
        handshake(&mut s.conn, &mut s.sock, timeout)?;
        Ok(DataStream::Server(Box::new(s)))
    }

    /// A blocking server handshake on a data connection. With `require_resume` the
    /// connection must resume a session of this control connection ([`TlsError::NotResumed`]
    /// otherwise).
    pub fn accept_data(
        &self,
        sock: TcpStream,
        require_resume: bool,
        timeout: Duration,
    ) -> Result<DataStream, TlsError> {
        let mut c = (*self.config).clone();
        let cache: Arc<dyn StoresServerSessions> = self.cache.clone();
        c.session_storage = Arc::new(SessionStore::data(cache));
        // Tickets only to clients that ask (RFC 9149 ticket_request: rustls clients, which
        // use one up per resumption and read their data connections to the end). Others
        // resume the control session again; unsolicited tickets on an upload would sit
        // unread, and an OpenSSL client closing with unread data resets the connection,
        // losing the end of its upload.
        c.send_tls13_tickets = 0;
        c.max_tls13_tickets = TICKETS;
        let conn = ServerConnection::new(Arc::new(c)).map_err(TlsError::Config)?;
        let mut s = StreamOwned::new(conn, sock);
        handshake(&mut s.conn, &mut s.sock, timeout)?;
        if require_resume && s.conn.handshake_kind() != Some(HandshakeKind::Resumed) {
            return Err(TlsError::NotResumed);
        }
        Ok(DataStream::Server(Box::new(s)))
    }
}

/// Drives a blocking handshake to its end within `timeout`.
pub fn handshake<S: rustls::SideData>(
    conn: &mut rustls::ConnectionCommon<S>,
    sock: &mut TcpStream,
    timeout: Duration,
) -> Result<(), TlsError> {
    let deadline = Instant::now() + timeout;
    let (old_r, old_w) = (
        sock.read_timeout().ok().flatten(),
        sock.write_timeout().ok().flatten(),
    );
    let r = (|| {
        while conn.is_handshaking() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(TlsError::Timeout(timeout));
            }
            let _ = sock.set_read_timeout(Some(left));
            let _ = sock.set_write_timeout(Some(left));
            match conn.complete_io(sock) {
                Ok((0, 0)) if conn.is_handshaking() => {
                    return Err(TlsError::Io(io::ErrorKind::UnexpectedEof.into()));
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(match TlsError::from_handshake(e) {
                        TlsError::Timeout(_) => TlsError::Timeout(timeout),
                        other => other,
                    });
                }
            }
        }
        // Flush what the handshake left to send (the client's Finished, tickets).
        while conn.wants_write() {
            conn.write_tls(sock).map_err(TlsError::Io)?;
        }
        Ok(())
    })();
    let _ = sock.set_read_timeout(old_r);
    let _ = sock.set_write_timeout(old_w);
    r
}

/// How a client checks the server's certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Roots {
    /// The system's trusted roots (`/etc/ssl/certs`, or `SSL_CERT_FILE`/`SSL_CERT_DIR`).
    #[default]
    System,
    /// The CA certificates in this PEM file.
    File(PathBuf),
    /// No verification at all (encryption without authentication: `--insecure`).
    Insecure,
}

/// A client's TLS settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientTlsOptions {
    /// How the server's certificate is checked.
    pub roots: Roots,
    /// A client certificate chain and key (PEM files), for certificate logins.
    pub cert: Option<(PathBuf, PathBuf)>,
}

/// A client's TLS configuration. Clones share one session cache, so data connections made
/// with the clone a control connection used resume that connection's session.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    insecure: bool,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Builds the configuration: loads the roots (system or file) and the client
    /// certificate.
    pub fn new(options: &ClientTlsOptions) -> Result<ClientTls, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(TlsError::Config)?;
        let builder = match &options.roots {
            Roots::System => builder.with_root_certificates(system_roots()?),
            Roots::File(p) => builder.with_root_certificates(load_roots(p)?),
            Roots::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerifier(provider()))),
        };
        let mut config = match &options.cert {
            Some((cert, key)) => builder
                .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
                .map_err(TlsError::Config)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = Vec::new();
        // Each resumption uses a TLS 1.3 ticket up: ask for new ones on every data
        // connection (servers that do not know RFC 9149 ignore the request).
        config.send_ticket_request = Some(rustls::client::TicketRequest {
            new_session_count: TICKETS as u8,
            resumption_count: 2,
        });
        Ok(ClientTls {
            config: Arc::new(config),
            insecure: options.roots == Roots::Insecure,
        })
    }

    /// From a rustls configuration built elsewhere.
    pub fn from_config(config: Arc<ClientConfig>) -> ClientTls {
        ClientTls {
            config,
            insecure: false,
        }
    }

    /// Whether server certificates go unchecked.
    pub fn is_insecure(&self) -> bool {
        self.insecure
    }

    /// The rustls configuration.
    pub fn config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.config)
    }

    /// A blocking client handshake on `sock` for server `host` (a DNS name or an address;
    /// the certificate must name it), within `timeout`.
    pub fn connect(
        &self,
        host: &str,
        sock: TcpStream,
        timeout: Duration,
    ) -> Result<DataStream, TlsError> {
        let name = server_name(host)?;
        let conn = ClientConnection::new(self.config(), name).map_err(TlsError::Config)?;
        let mut s = StreamOwned::new(conn, sock);
        handshake(&mut s.conn, &mut s.sock, timeout)?;
        Ok(DataStream::Client(Box::new(s)))
    }
}

/// The TLS name for a host as written in a URL (brackets of an IPv6 literal removed).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(h.to_string()).map_err(|_| TlsError::ServerName(host.to_string()))
}

fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(TlsError::File {
            path: PathBuf::from("/etc/ssl/certs"),
            what: "no trusted root certificates found on this system (give a CA file)",
            source: None,
        });
    }
    Ok(roots)
}

/// `--insecure`: accepts any server certificate, but still checks that the server holds the
/// key of the certificate it sent (the handshake signatures).
#[derive(Debug)]
struct NoVerifier(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A data connection: plain TCP, or TLS as the server or the client side.
pub enum DataStream {
    /// Clear (`PROT C`).
    Plain(TcpStream),
    /// TLS, this end the server.
    Server(Box<StreamOwned<ServerConnection, TcpStream>>),
    /// TLS, this end the client.
    Client(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl std::fmt::Debug for DataStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            DataStream::Plain(_) => "Plain",
            DataStream::Server(_) => "TlsServer",
            DataStream::Client(_) => "TlsClient",
        };
        f.debug_tuple(kind).field(self.tcp()).finish()
    }
}

impl DataStream {
    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            DataStream::Plain(s) => s,
            DataStream::Server(s) => &s.sock,
            DataStream::Client(s) => &s.sock,
        }
    }

    /// Whether the bytes are encrypted.
    pub fn is_tls(&self) -> bool {
        !matches!(self, DataStream::Plain(_))
    }

    /// The plain TCP stream, if this is not TLS (for the zero-copy path).
    pub fn into_plain(self) -> Result<TcpStream, DataStream> {
        match self {
            DataStream::Plain(s) => Ok(s),
            other => Err(other),
        }
    }

    /// Plaintext already decrypted and waiting to be read (a reader must drain it before it
    /// waits on the socket).
    pub fn buffered(&mut self) -> usize {
        fn pending<S: rustls::SideData>(c: &mut rustls::ConnectionCommon<S>) -> usize {
            c.process_new_packets()
                .map(|st| st.plaintext_bytes_to_read())
                .unwrap_or(0)
        }
        match self {
            DataStream::Plain(_) => 0,
            DataStream::Server(s) => pending(&mut s.conn),
            DataStream::Client(s) => pending(&mut s.conn),
        }
    }

    /// Ends the sending side: a TLS close_notify (flushed), then a TCP half-close. The
    /// receiver can then tell the end of the data from a cut connection.
    pub fn finish(&mut self) -> io::Result<()> {
        fn close<S: rustls::SideData>(
            conn: &mut rustls::ConnectionCommon<S>,
            sock: &mut TcpStream,
        ) -> io::Result<()> {
            conn.send_close_notify();
            while conn.wants_write() {
                match conn.write_tls(sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            sock.flush()
        }
        match self {
            DataStream::Plain(_) => {}
            DataStream::Server(s) => close(&mut s.conn, &mut s.sock)?,
            DataStream::Client(s) => close(&mut s.conn, &mut s.sock)?,
        }
        self.tcp().shutdown(std::net::Shutdown::Write)
    }
}

impl Read for DataStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            DataStream::Plain(s) => s.read(buf),
            DataStream::Server(s) => s.read(buf),
            DataStream::Client(s) => s.read(buf),
        }
    }
}

impl Write for DataStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            DataStream::Plain(s) => s.write(buf),
            DataStream::Server(s) => s.write(buf),
            DataStream::Client(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            DataStream::Plain(s) => s.flush(),
            DataStream::Server(s) => s.flush(),
            DataStream::Client(s) => s.flush(),
        }
    }
}

/// A certificate's subject in the form grid-mapfiles use (OpenSSL's one-line form):
/// `/C=XX/O=Grid/OU=Unit/CN=Jane Doe`, in the order of the certificate.
pub fn subject_of(cert: &CertificateDer<'_>) -> Result<String, TlsError> {
    use x509_parser::prelude::*;
    let (_, c) = X509Certificate::from_der(cert.as_ref())
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    let mut out = String::new();
    for rdn in c.subject().iter() {
        for atv in rdn.iter() {
            let oid = atv.attr_type();
            let name = match oid.to_id_string().as_str() {
                "2.5.4.6" => "C".to_string(),
                "2.5.4.8" => "ST".to_string(),
                "2.5.4.7" => "L".to_string(),
                "2.5.4.10" => "O".to_string(),
                "2.5.4.11" => "OU".to_string(),
                "2.5.4.3" => "CN".to_string(),
                "2.5.4.5" => "serialNumber".to_string(),
                "1.2.840.113549.1.9.1" => "emailAddress".to_string(),
                "0.9.2342.19200300.100.1.25" => "DC".to_string(),
                "0.9.2342.19200300.100.1.1" => "UID".to_string(),
                other => other.to_string(),
            };
            let value = atv
                .as_str()
                .map_err(|e| TlsError::Certificate(format!("subject value: {e}")))?;
            out.push('/');
            out.push_str(&name);
            out.push('=');
            out.push_str(value);
        }
    }
    Ok(out)
}

/// A Globus grid-mapfile: certificate subjects mapped to local users.
///
/// Each line is a subject, quoted when it holds spaces, then one or more local users
/// separated by commas (the first is the default). `#` starts a comment line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GridMap {
    map: HashMap<String, Vec<String>>,
}

impl GridMap {
    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<GridMap, TlsError> {
        let mut map = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |what| TlsError::GridMap { line: i + 1, what };
            let (dn, rest) = if let Some(q) = line.strip_prefix('"') {
                let end = q.find('"').ok_or(bad("unterminated quote"))?;
                (&q[..end], &q[end + 1..])
            } else {
                line.split_once(char::is_whitespace)
                    .ok_or(bad("no local user after the subject"))?
            };
            if !dn.starts_with('/') {
                return Err(bad("the subject must start with '/'"));
            }
            let users: Vec<String> = rest
                .split(',')
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect();
            if users.is_empty() {
                return Err(bad("no local user after the subject"));
            }
            if users
                .iter()
                .any(|u| u.chars().any(|c| c.is_whitespace() || c.is_control()))
            {
                return Err(bad("a local user name holds a space"));
            }
            map.insert(dn.to_string(), users);
        }
        Ok(GridMap { map })
    }

    /// Reads and parses a grid-mapfile.
    pub fn load(path: &Path) -> Result<GridMap, TlsError> {
        let text = std::fs::read_to_string(path).map_err(|e| TlsError::File {
            path: path.to_path_buf(),
            what: "cannot read the grid-mapfile",
            source: Some(rustls::pki_types::pem::Error::Io(e)),
        })?;
        GridMap::parse(&text)
    }

    /// The local users a subject maps to (the first is the default).
    pub fn users(&self, subject: &str) -> Option<&[String]> {
        self.map.get(subject).map(Vec::as_slice)
    }

    /// The local user for `subject`: `wanted` if the subject may use it, the default when
    /// `wanted` is empty or `:globus-mapping:`; `None` if the subject is unknown or may not
    /// be that user.
    pub fn login(&self, subject: &str, wanted: &str) -> Option<&str> {
        let users = self.users(subject)?;
        if wanted.is_empty() || wanted == ":globus-mapping:" {
            return users.first().map(String::as_str);
        }
        users.iter().find(|u| *u == wanted).map(String::as_str)
    }

    /// Number of subjects.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no subject is mapped.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    struct Pki {
        ca_pem: String,
        cert: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        ca: RootCertStore,
    }

    fn pki(names: &[&str]) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("test CA for {}", names[0]),
        );
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        Pki {
            ca_pem: ca.pem(),
            cert: vec![cert.der().clone()],
            key: PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            ca: roots,
        }
    }

    fn client(roots: RootCertStore) -> ClientTls {
        let c = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        ClientTls::from_config(Arc::new(c))
    }

    /// A control handshake, then a data connection: with the control connection's client
    /// config it resumes and is accepted; from a fresh client it is refused.
    #[test]
    fn data_connections_must_resume_the_control_session() {
        let p = pki(&["127.0.0.1", "localhost"]);
        let server = ServerTls::new(p.cert.clone(), p.key.clone_key(), None).unwrap();
        let sess = server.session();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = Duration::from_secs(5);
        let c = client(p.ca.clone());
        let stranger = client(p.ca.clone());
        let srv = std::thread::spawn(move || {
            let mut out = Vec::new();
            for _ in 0..4 {
                let (s, _) = l.accept().unwrap();
                // The first is the control connection, with the control configuration.
                let r = if out.is_empty() {
                    sess.accept_control(s, t)
                } else {
                    sess.accept_data(s, true, t)
                };
                out.push(match r {
                    Ok(mut d) => {
                        let mut b = [0u8; 5];
                        d.read_exact(&mut b).unwrap();
                        d.write_all(&b).unwrap();
                        d.finish().unwrap();
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                });
            }
            out
        });
        let mut ctrl = c
            .connect("127.0.0.1", TcpStream::connect(addr).unwrap(), t)
            .unwrap();
        ctrl.write_all(b"hello").unwrap();
        let mut back = Vec::new();
        ctrl.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"hello");
        let mut data = c
            .connect("127.0.0.1", TcpStream::connect(addr).unwrap(), t)
            .unwrap();
        data.write_all(b"12345").unwrap();
        back.clear();
        data.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"12345");
        // The stranger's handshake completes on its side; the server then drops it. The
        // second time too: the refused connection left it no ticket to resume with.
        for _ in 0..2 {
            if let Ok(mut s) = stranger.connect("127.0.0.1", TcpStream::connect(addr).unwrap(), t) {
                let _ = s.write_all(b"xxxxx");
                let mut b = Vec::new();
                assert!(s.read_to_end(&mut b).map(|_| b.is_empty()).unwrap_or(true));
            }
        }
        let results = srv.join().unwrap();
        assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
        assert_eq!(results[2], Err(TlsError::NotResumed.to_string()));
        assert_eq!(results[3], Err(TlsError::NotResumed.to_string()));
    }

    #[test]
    fn wrong_name_and_unknown_issuer_say_why() {
        let p = pki(&["localhost"]);
        let other = pki(&["127.0.0.1"]);
        let server = ServerTls::new(p.cert.clone(), p.key.clone_key(), None).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = Duration::from_secs(5);
        let sess = server.session();
        let srv = std::thread::spawn(move || {
            for _ in 0..2 {
                let (s, _) = l.accept().unwrap();
                let _ = sess.accept_data(s, false, t);
            }
        });
        let e = client(p.ca.clone())
            .connect("127.0.0.1", TcpStream::connect(addr).unwrap(), t)
            .unwrap_err();
        assert!(
            e.to_string().contains("not valid for this host name"),
            "{e}"
        );
        let e = client(other.ca.clone())
            .connect("localhost", TcpStream::connect(addr).unwrap(), t)
            .unwrap_err();
        assert!(e.to_string().contains("unknown issuer"), "{e}");
        srv.join().unwrap();
        let _ = p.ca_pem;
    }

    #[test]
    fn a_silent_peer_times_out() {
        let p = pki(&["127.0.0.1"]);
        let server = ServerTls::new(p.cert.clone(), p.key.clone_key(), None).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let e = server
            .session()
            .accept_data(s, false, Duration::from_millis(200))
            .unwrap_err();
        assert!(matches!(e, TlsError::Timeout(_)), "{e:?}");
    }

    #[test]
    fn subjects_read_in_grid_form() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CountryName, "XX");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Grid");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Jane Doe");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(subject_of(cert.der()).unwrap(), "/C=XX/O=Grid/CN=Jane Doe");
    }

    #[test]
    fn grid_map_lines() {
        let m = GridMap::parse(
            "# users\n\"/C=XX/O=Grid/CN=Jane Doe\" jdoe,jane\n/C=XX/O=Grid/CN=bob bob\n\n",
        )
        .unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(
            m.login("/C=XX/O=Grid/CN=Jane Doe", ":globus-mapping:"),
            Some("jdoe")
        );
        assert_eq!(m.login("/C=XX/O=Grid/CN=Jane Doe", "jane"), Some("jane"));
        assert_eq!(m.login("/C=XX/O=Grid/CN=Jane Doe", "root"), None);
        assert_eq!(m.login("/C=XX/O=Grid/CN=bob", ""), Some("bob"));
        assert_eq!(m.login("/C=XX/O=Grid/CN=eve", ""), None);
        for bad in [
            "\"/C=XX/CN=x jdoe",
            "/C=XX/CN=x",
            "CN=x user",
            "\"/CN=x\" a b",
        ] {
            assert!(GridMap::parse(bad).is_err(), "{bad}");
        }
    }
}
