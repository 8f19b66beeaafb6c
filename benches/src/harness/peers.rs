//! The servers and clients the harness compares: gridos ftpd and `gridos cp`,
//! globus-gridftp-server and globus-url-copy, vsftpd and curl, proftpd and lftp.
//!
//! vsftpd and proftpd conflict as Debian packages, so `.ci/run` (and `benches/README.md`)
//! extract them side by side under `/opt/gridos-peers/` (override with `GRIDOS_PEERS_DIR`).

use super::HarnessError;
use crate::wan::{Side, Wan};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// `gridos ftpd`.
    Gridos,
    /// `globus-gridftp-server -aa`.
    Globus,
    /// vsftpd (extracted package).
    Vsftpd,
    /// proftpd (extracted package).
    Proftpd,
}

/// A client implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    /// `gridos cp`.
    Gridos,
    /// `globus-url-copy` with extra flags.
    Globus(&'static [&'static str]),
    /// curl.
    Curl,
    /// lftp.
    Lftp,
}

impl ClientKind {
    /// Display name.
    pub fn name(&self) -> String {
        match self {
            ClientKind::Gridos => "gridos cp".into(),
            ClientKind::Globus([]) => "globus-url-copy".into(),
            ClientKind::Globus(flags) => format!("globus-url-copy {}", flags.join(" ")),
            ClientKind::Curl => "curl".into(),
            ClientKind::Lftp => "lftp".into(),
        }
    }
}

impl ServerKind {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Gridos => "gridos ftpd",
            ServerKind::Globus => "globus-gridftp-server",
            ServerKind::Vsftpd => "vsftpd",
            ServerKind::Proftpd => "proftpd",
        }
    }
}

fn peers_dir() -> PathBuf {
    std::env::var_os("GRIDOS_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/opt/gridos-peers".into())
}

/// The `gridos` binary: `GRIDOS_BIN`, else next to the running harness, else on PATH.
pub fn gridos_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("GRIDOS_BIN") {
        return p.into();
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("gridos")));
    beside
        .filter(|p| p.exists())
        .unwrap_or_else(|| "gridos".into())
}

fn free_port(ip: Ipv4Addr) -> Result<u16, HarnessError> {
    let l =
        TcpListener::bind((ip, 0)).map_err(|e| HarnessError::Setup(format!("free port: {e}")))?;
    Ok(l.local_addr()
        .map_err(|e| HarnessError::Setup(e.to_string()))?
        .port())
}

/// A running server, killed (with its whole process group) on drop.
pub struct Server {
    /// Which one.
    pub kind: ServerKind,
    child: Child,
    addr: SocketAddr,
    user: Option<String>,
    /// Directory served.
    pub root: PathBuf,
    _scratch: tempfile::TempDir,
}

impl Server {
    /// Starts `kind` serving `root` (anonymous, writable `up/`) on `ip`: on the host, or in
    /// the server namespace of `wan`. `wait_connect` tells when it accepts connections.
    pub fn start(
        kind: ServerKind,
        root: &Path,
        ip: Ipv4Addr,
        wan: Option<&Wan>,
        wait_connect: &dyn Fn(SocketAddr) -> bool,
    ) -> Result<Server, HarnessError> {
        Server::start_with(kind, root, ip, wan, wait_connect, None)
    }

    /// As [`Server::start`]; with `login`, `gridos ftpd` serves only the users of that
    /// password file (no anonymous access) and [`Server::url`] names the user. The other
    /// servers stay anonymous.
    pub fn start_with(
        kind: ServerKind,
        root: &Path,
        ip: Ipv4Addr,
        wan: Option<&Wan>,
        wait_connect: &dyn Fn(SocketAddr) -> bool,
        login: Option<&Login>,
    ) -> Result<Server, HarnessError> {
        Server::start_inner(kind, root, ip, wan, wait_connect, login, None)
    }

    /// As [`Server::start`] on 127.0.0.1, offering FTPS (explicit, `AUTH TLS`) with the
    /// certificate of `tls`: `gridos ftpd --tls-cert --tls-key` (default policy:
    /// anonymous may stay clear) and vsftpd with `ssl_enable=YES`, `allow_anon_ssl=YES`,
    /// `require_ssl_reuse=YES` (clear sessions allowed too). Only those two kinds.
    pub fn start_tls(
        kind: ServerKind,
        root: &Path,
        tls: &TlsFiles,
    ) -> Result<Server, HarnessError> {
        if !matches!(kind, ServerKind::Gridos | ServerKind::Vsftpd) {
            return Err(HarnessError::Setup(format!(
                "no FTPS configuration for {}",
                kind.name()
            )));
        }
        Server::start_inner(
            kind,
            root,
            Ipv4Addr::LOCALHOST,
            None,
            &can_connect,
            None,
            Some(tls),
        )
    }

    fn start_inner(
        kind: ServerKind,
        root: &Path,
        ip: Ipv4Addr,
        wan: Option<&Wan>,
        wait_connect: &dyn Fn(SocketAddr) -> bool,
        login: Option<&Login>,
        tls: Option<&TlsFiles>,
    ) -> Result<Server, HarnessError> {
        let login = login.filter(|_| kind == ServerKind::Gridos);
        let scratch = tempfile::tempdir().map_err(|e| HarnessError::Setup(e.to_string()))?;
        let port = free_port(Ipv4Addr::LOCALHOST)?;
        let addr = SocketAddr::from((ip, port));
        let s = scratch.path();
        let mut cmd = match kind {
            ServerKind::Gridos => {
                let mut c = Command::new(gridos_bin());
                c.args(["ftpd", "--listen", &addr.to_string()]);
                match login {
                    // The WAN namespaces are a closed test network: the password may go in
                    // clear, as before TLS existed (the default policy would refuse to start).
                    Some(l) => c.arg("--passwd").arg(&l.file).args(["--tls", "off"]),
                    None => c.args(["--anonymous", "--anonymous-write"]),
                };
                // Every harness client comes from one address: lift the per-address limit as
                // the peers' configurations do.
                c.args(["--max-clients", "2000", "--max-per-ip", "2000", "--docroot"]);
                c.arg(root);
                if let Some(t) = tls {
                    c.arg("--tls-cert")
                        .arg(&t.cert)
                        .arg("--tls-key")
                        .arg(&t.key);
                }
                c
            }
            ServerKind::Globus => {
                let mut c = Command::new("globus-gridftp-server");
                c.args([
                    "-aa",
                    "-p",
                    &port.to_string(),
                    "-anonymous-user",
                    "nobody",
                    "-log-level",
                    "error",
                ]);
                c.args([
                    "-control-interface",
                    &ip.to_string(),
                    "-data-interface",
                    &ip.to_string(),
                ]);
                c.arg("-home-dir").arg(root);
                c
            }
            ServerKind::Vsftpd => {
                let empty = s.join("empty");
                std::fs::create_dir_all(&empty).map_err(|e| HarnessError::Setup(e.to_string()))?;
                let conf = format!(
                    "listen=YES\nlisten_ipv6=NO\nlisten_address={ip}\nlisten_port={port}\nbackground=NO\n\
                     anonymous_enable=YES\nanon_root={}\nno_anon_password=YES\n\
                     ftp_username=daemon\nwrite_enable=YES\nanon_upload_enable=YES\n\
                     anon_mkdir_write_enable=YES\nanon_other_write_enable=YES\nanon_umask=022\n\
                     allow_writeable_chroot=YES\nlocal_enable=NO\nseccomp_sandbox=NO\n\
                     secure_chroot_dir={}\npasv_enable=YES\npasv_address={ip}\nmax_clients=2000\n\
                     max_per_ip=2000\nxferlog_enable=NO\n{}",
                    root.display(),
                    empty.display(),
                    tls.map(|t| format!(
                        "ssl_enable=YES\nallow_anon_ssl=YES\nforce_anon_logins_ssl=NO\n\
                         force_anon_data_ssl=NO\nrequire_ssl_reuse=YES\nssl_ciphers=HIGH\n\
                         rsa_cert_file={}\nrsa_private_key_file={}\n",
                        t.cert.display(),
                        t.key.display()
                    ))
                    .unwrap_or_default()
                );
                let path = s.join("vsftpd.conf");
                std::fs::write(&path, conf).map_err(|e| HarnessError::Setup(e.to_string()))?;
                let mut c = Command::new(peers_dir().join("vsftpd/usr/sbin/vsftpd"));
                c.arg(path);
                c
            }
            ServerKind::Proftpd => {
                let conf = format!(
                    "ServerName \"gridos-bench\"\nServerType standalone\nPort {port}\n\
                     DefaultAddress {ip}\nSocketBindTight on\nUseIPv6 off\nUser nobody\nGroup nogroup\n\
                     MaxInstances 2000\nScoreboardFile {s}/scoreboard\nPidFile {s}/proftpd.pid\n\
                     DelayEngine off\nWtmpLog off\nUseReverseDNS off\n\
                     <Anonymous {root}>\n  User nobody\n  Group nogroup\n  UserAlias anonymous nobody\n\
                     \x20 RequireValidShell off\n  MaxClients 2000\n  <Limit WRITE>\n    AllowAll\n  </Limit>\n</Anonymous>\n",
                    s = s.display(),
                    root = root.display()
                );
                let path = s.join("proftpd.conf");
                std::fs::write(&path, conf).map_err(|e| HarnessError::Setup(e.to_string()))?;
                let mut c = Command::new(peers_dir().join("proftpd/usr/sbin/proftpd"));
                c.args(["-n", "-q", "-c"]).arg(path);
                c
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let mut cmd = match wan {
            Some(w) => netns_exec(w.ns(Side::Server), &cmd),
            None => cmd,
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| HarnessError::PeerMissing(format!("{}: {e}", kind.name())))?;
        let mut server = Server {
            kind,
            child,
            addr,
            user: login.map(|l| l.user.clone()),
            root: root.to_path_buf(),
            _scratch: scratch,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !wait_connect(addr) {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(HarnessError::PeerFailed(format!(
                    "{} exited at start: {status}",
                    kind.name()
                )));
            }
            if Instant::now() > deadline {
                return Err(HarnessError::PeerFailed(format!(
                    "{} did not listen on {addr}",
                    kind.name()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// URL of `rel` (a path relative to the served root).
    pub fn url(&self, rel: &str) -> String {
        match self.kind {
            // globus-gridftp-server serves the file system; the root is its home directory.
            ServerKind::Globus => format!("ftp://{}{}/{rel}", self.addr, self.root.display()),
            _ => match &self.user {
                Some(u) => format!("ftp://{u}@{}/{rel}", self.addr),
                None => format!("ftp://{}/{rel}", self.addr),
            },
        }
    }

    /// Control address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// PID of the server process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// A user of `gridos ftpd`: a password file made by `gridos passwd FILE USER` (the password
/// on standard input). The client gives the password in `GRIDOS_FTP_PASSWORD`, so it never
/// appears on a command line.
pub struct Login {
    /// User name.
    pub user: String,
    /// Its password.
    pub password: String,
    /// The password file.
    pub file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Login {
    /// Creates a password file with one user through `gridos passwd`.
    pub fn create(user: &str, password: &str) -> Result<Login, HarnessError> {
        use std::io::Write;
        let dir = tempfile::tempdir().map_err(|e| HarnessError::Setup(e.to_string()))?;
        let file = dir.path().join("passwd");
        let mut child = Command::new(gridos_bin())
            .arg("passwd")
            .arg(&file)
            .arg(user)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| HarnessError::PeerMissing(format!("gridos passwd: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = writeln!(stdin, "{password}");
        }
        let out = child
            .wait_with_output()
            .map_err(|e| HarnessError::Setup(format!("gridos passwd: {e}")))?;
        if !out.status.success() {
            return Err(HarnessError::PeerFailed(format!(
                "gridos passwd failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(Login {
            user: user.into(),
            password: password.into(),
            file,
            _dir: dir,
        })
    }
}

/// The command that copies `src` on one server to `dst` on another, the client only on the
/// control connections where the tool can: `gridos cp --json` (whose summary reports the
/// route and the control round trips) and `globus-url-copy` (third-party whenever both URLs
/// are remote). `None` for curl and lftp, which have no server-to-server mode.
pub fn third_party_cmd(client: ClientKind, src: &str, dst: &str) -> Option<Command> {
    match client {
        ClientKind::Gridos => {
            let mut c = Command::new(gridos_bin());
            c.args(["cp", "--json", src, dst]);
            Some(c)
        }
        ClientKind::Globus(flags) => {
            let mut c = Command::new("globus-url-copy");
            c.args(flags).arg(src).arg(dst);
            Some(c)
        }
        ClientKind::Curl | ClientKind::Lftp => None,
    }
}

/// `cmd` run through `ip netns exec NS`, which also bind-mounts `/etc/netns/NS/hosts`: some
/// peers (the Globus tools) resolve their own host name and fail without it.
pub fn netns_exec(ns: &str, cmd: &Command) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    c
}

/// Whether a TCP connect to `addr` succeeds now (host namespace).
pub fn can_connect(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

impl Drop for Server {
    fn drop(&mut self) {
        // The servers fork per client: kill the whole group.
        let pg = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(pg, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// The command that downloads `url` to the local `dst` (a path; `/dev/null` allowed).
pub fn get_cmd(client: ClientKind, url: &str, dst: &Path) -> Command {
    match client {
        ClientKind::Gridos => {
            let mut c = Command::new(gridos_bin());
            c.args(["cp", "--quiet", url]).arg(dst);
            c
        }
        ClientKind::Globus(flags) => {
            let mut c = Command::new("globus-url-copy");
            c.args(flags)
                .arg(url)
                .arg(format!("file://{}", dst.display()));
            c
        }
        ClientKind::Curl => {
            let mut c = Command::new("curl");
            c.args(["-s", "-S", "--fail", "-o"]).arg(dst).arg(url);
            c
        }
        ClientKind::Lftp => {
            let (base, path) = split_url(url);
            let mut c = Command::new("lftp");
            c.arg("-c").arg(format!(
                "set net:max-retries 1; set xfer:clobber on; open {base}; get {path} -o {}",
                dst.display()
            ));
            c
        }
    }
}

/// The command that uploads the local `src` to `url`.
pub fn put_cmd(client: ClientKind, src: &Path, url: &str) -> Command {
    match client {
        ClientKind::Gridos => {
            let mut c = Command::new(gridos_bin());
            c.args(["cp", "--quiet"]).arg(src).arg(url);
            c
        }
        ClientKind::Globus(flags) => {
            let mut c = Command::new("globus-url-copy");
            c.args(flags)
                .arg(format!("file://{}", src.display()))
                .arg(url);
            c
        }
        ClientKind::Curl => {
            let mut c = Command::new("curl");
            c.args(["-s", "-S", "--fail", "-T"]).arg(src).arg(url);
            c
        }
        ClientKind::Lftp => {
            let (base, path) = split_url(url);
            let mut c = Command::new("lftp");
            c.arg("-c").arg(format!(
                "set net:max-retries 1; set xfer:clobber on; open {base}; put {} -o {path}",
                src.display()
            ));
            c
        }
    }
}

/// The command that copies the remote directory `url` (ending in `/`) into the local `dst`.
pub fn get_tree_cmd(client: ClientKind, url: &str, dst: &Path, names: &[String]) -> Command {
    match client {
        ClientKind::Gridos => {
            // No flags: trees are pipelined by default against a MODE E server.
            let mut c = Command::new(gridos_bin());
            c.args(["cp", "--quiet", "-r", url]).arg(dst);
            c
        }
        ClientKind::Globus(flags) => {
            let mut c = Command::new("globus-url-copy");
            c.args(flags)
                .args(["-r", "-cd"])
                .arg(url)
                .arg(format!("file://{}/", dst.display()));
            c
        }
        ClientKind::Curl => {
            // One curl process, one connection reused for every file.
            let mut c = Command::new("curl");
            c.args(["-s", "-S", "--fail", "--create-dirs"]);
            for n in names {
                c.arg("-o").arg(dst.join(n)).arg(format!("{url}{n}"));
            }
            c
        }
        ClientKind::Lftp => {
            let (base, path) = split_url(url);
            let mut c = Command::new("lftp");
            c.arg("-c").arg(format!(
                "set net:max-retries 1; set xfer:clobber on; open {base}; mirror {path} {}",
                dst.display()
            ));
            c
        }
    }
}

fn split_url(url: &str) -> (&str, &str) {
    let after = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after..].find('/') {
        Some(i) => url.split_at(after + i),
        None => (url, "/"),
    }
}

/// A CA and a server certificate for 127.0.0.1 and localhost (ECDSA P-256), made with the
/// `openssl` command line tool in a temporary directory: the FTPS cells' credentials.
pub struct TlsFiles {
    /// The CA certificate (what `--cacert` takes).
    pub ca: PathBuf,
    /// The server certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsFiles {
    /// Generates the CA and the server certificate (valid for a week).
    pub fn create() -> Result<TlsFiles, HarnessError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("gridos-harness-tls-")
            .tempdir()
            .map_err(|e| HarnessError::Setup(e.to_string()))?;
        // The servers read the files as root; world-readable does no harm in a benchmark.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| HarnessError::Setup(e.to_string()))?;
        let d = dir.path();
        let (ca, ca_key) = (d.join("ca.pem"), d.join("ca.key"));
        let (cert, key, csr, ext) = (
            d.join("server.pem"),
            d.join("server.key"),
            d.join("server.csr"),
            d.join("server.ext"),
        );
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n\
             basicConstraints=CA:FALSE\n",
        )
        .map_err(|e| HarnessError::Setup(e.to_string()))?;
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let steps: [Vec<std::ffi::OsString>; 3] = [
            [
                "req",
                "-x509",
                "-days",
                "7",
                "-subj",
                "/O=Grid/CN=gridos bench CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]
            .iter()
            .chain(&ec)
            .map(Into::into)
            .chain([
                "-keyout".into(),
                ca_key.clone().into(),
                "-out".into(),
                ca.clone().into(),
            ])
            .collect(),
            ["req", "-subj", "/O=Grid/CN=127.0.0.1"]
                .iter()
                .chain(&ec)
                .map(Into::into)
                .chain([
                    "-keyout".into(),
                    key.clone().into(),
                    "-out".into(),
                    csr.clone().into(),
                ])
                .collect(),
            ["x509", "-req", "-days", "7", "-CAcreateserial"]
                .iter()
                .map(Into::into)
                .chain([
                    "-in".into(),
                    csr.into(),
                    "-CA".into(),
                    ca.clone().into(),
                    "-CAkey".into(),
                    ca_key.into(),
                    "-extfile".into(),
                    ext.into(),
                    "-out".into(),
                    cert.clone().into(),
                ])
                .collect(),
        ];
        for args in steps {
            let out = Command::new("openssl")
                .args(&args)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| HarnessError::PeerMissing(format!("openssl: {e}")))?;
            if !out.status.success() {
                return Err(HarnessError::PeerFailed(format!(
                    "openssl {:?} failed: {}",
                    args.first(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        for f in [&cert, &key, &ca] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644))
                .map_err(|e| HarnessError::Setup(e.to_string()))?;
        }
        Ok(TlsFiles {
            ca,
            cert,
            key,
            _dir: dir,
        })
    }
}
