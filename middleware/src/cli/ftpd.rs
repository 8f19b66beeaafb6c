//! `gridos ftpd`: the FTP server, in the foreground.

use crate::seccomp_selftest::{self, Probe};
use clap::Args;
use gridos_ftp::server::{Seccomp, Server, ServerConfig};
use nix::sys::signal::{SigSet, Signal};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `gridos ftpd`. Flags override the configuration file.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  gridos ftpd --docroot /srv/ftp --anonymous
                  anonymous read-only FTP/GridFTP on 0.0.0.0:2121
  gridos passwd /etc/gridos/ftpd.passwd alice && \\
  gridos ftpd --docroot /srv/data --passwd /etc/gridos/ftpd.passwd --listen 0.0.0.0:21 \\
      --tls-cert /etc/gridos/cert.pem --tls-key /etc/gridos/key.pem
                  password logins on port 21, passwords only over TLS (AUTH TLS);
                  as root: chroot, then runs as nobody
  gridos ftpd --docroot /srv/data --passwd /etc/gridos/ftpd.passwd --listen 0.0.0.0:21 \\
      --tls-cert cert.pem --tls-key key.pem --implicit-tls 0.0.0.0:990 --tls required
                  explicit FTPS on 21 and implicit FTPS (ftps://) on 990; every login
                  and every data connection encrypted
  gridos ftpd --docroot /srv/grid --listen 0.0.0.0:2811 --tls-cert hostcert.pem \\
      --tls-key hostkey.pem --tls-client-ca /etc/grid-security/ca.pem \\
      --grid-mapfile /etc/grid-security/grid-mapfile
                  certificate logins: a client certificate whose subject the
                  grid-mapfile names logs in as its local user (USER :globus-mapping:)
  gridos ftpd --docroot /srv/lab --passwd users --listen 0.0.0.0:2121 --tls off
                  passwords in clear (a closed lab network only)
  gridos ftpd --seccomp-selftest
                  show the system calls the server's seccomp filter allows, and check
                  that forbidden ones (execve, fork, ptrace, mount, setuid, ...) are refused
  gridos ftpd --config /etc/gridos/ftpd.toml --ctl-socket /run/gridos/ftpd.sock
                  settings from a file, changeable live with `gridos ctl`;
                  `gridos ctl --socket /run/gridos/ftpd.sock tls-reload` after renewing
                  the certificate

TLS policies (--tls, `tls` in [ftp]):
  passwords (default)  TLS offered; a password user must AUTH TLS before USER, unless
                       the server listens on a loopback address; anonymous may stay clear
  optional             TLS offered, nothing required
  required             every login needs TLS first, every transfer PROT P
  off                  no TLS; AUTH TLS refused
Without --tls-cert/--tls-key the server refuses to start when the policy would make
password logins impossible, and says what to add.

Sandbox: after start-up (bound, files opened, chrooted and switched to --user) the server
confines itself with a seccomp filter that allows only the system calls it uses; any
other kills it with SIGSYS and the kernel logs it (`audit: type=1326 ... syscall=N` in
dmesg). `seccomp = \"required\"` in [ftp] refuses to start where the kernel has no
seccomp; --no-seccomp runs without, for debugging.")]
pub struct FtpdArgs {
    /// Directory to serve (required here or as `docroot` in `[ftp]` of --config).
    #[arg(long)]
    pub docroot: Option<PathBuf>,
    /// Control-connection address [default: 0.0.0.0:2121]; port 0 picks a free port.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Accept anonymous logins (read-only unless --anonymous-write).
    #[arg(long)]
    pub anonymous: bool,
    /// Let anonymous users upload, rename and delete.
    #[arg(long)]
    pub anonymous_write: bool,
    /// Password file (`gridos passwd FILE USER` makes one).
    #[arg(long)]
    pub passwd: Option<PathBuf>,
    /// When started as root: chroot to the docroot and run as this user [default: nobody].
    #[arg(long)]
    pub user: Option<String>,
    /// With root: keep CAP_NET_ADMIN (only it) after switching user, so data-socket buffers
    /// may be forced past net.core.*mem_max on long fat networks.
    #[arg(long)]
    pub keep_net_admin: bool,
    /// Listener threads for control connections.
    #[arg(long)]
    pub threads: Option<usize>,
    /// I/O threads for transfers.
    #[arg(long)]
    pub io_threads: Option<usize>,
    /// Passive data ports, LOW-HIGH.
    #[arg(long)]
    pub pasv_ports: Option<String>,
    /// Most clients at once.
    #[arg(long)]
    pub max_clients: Option<usize>,
    /// Most clients from one address.
    #[arg(long)]
    pub max_per_ip: Option<usize>,
    /// Seconds before an idle control connection is closed.
    #[arg(long)]
    pub idle_timeout: Option<String>,
    /// Seconds to wait for a data connection.
    #[arg(long)]
    pub data_timeout: Option<String>,
    /// Unix control socket (`gridos ctl --socket PATH ...`).
    #[arg(long)]
    pub ctl_socket: Option<PathBuf>,
    /// Allow server-to-server ("third-party") data connections for every session,
    /// anonymous ones included, and PORT/EPRT/SPOR to ports below 1024 (`ftp.allow_third_party`).
    /// Without it a data connection to or from an address other than the client's is
    /// allowed only for authenticated (non-anonymous) users and for --third-party-hosts;
    /// anyone else gets 504 to PORT/EPRT/SPOR, and a foreign connection to a passive port is
    /// reset (PORT bounce protection, RFC 2577). Ports below 1024 are always refused
    /// without this flag.
    #[arg(long)]
    pub allow_third_party: bool,
    /// Hosts any session may exchange data connections with besides the client
    /// (`ftp.third_party_hosts`): IP addresses and CIDR prefixes, comma-separated, e.g.
    /// `192.0.2.10,198.51.100.0/24,2001:db8::/32`. Changeable live with
    /// `gridos ctl set ftp.third_party_hosts …`.
    #[arg(long, value_name = "ADDRS")]
    pub third_party_hosts: Option<String>,
    /// TOML configuration file (`[ftp]` and `[io]` tables).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// FTPS (boxed: the flags would make every `gridos` command's arguments large).
    #[command(flatten)]
    pub tls: Box<FtpdTlsArgs>,
    /// The seccomp sandbox (boxed, as the TLS flags).
    #[command(flatten)]
    pub sandbox: Box<FtpdSandboxArgs>,
    /// Login throttle and per-session timeouts (boxed, as the TLS flags).
    #[command(flatten)]
    pub guard: Box<FtpdGuardArgs>,
}

/// The flags of `gridos ftpd` against hostile clients: password guessing, slow clients.
#[derive(Args, Debug)]
#[command(next_help_heading = "Hostile clients")]
pub struct FtpdGuardArgs {
    /// Seconds the reply to a failed login waits, doubled at each failure in a row from
    /// the same address (IPv6: its /64), at most 30 s; 0: no delay [default: 1]
    /// (`ftp.login_delay`).
    #[arg(long, value_name = "SECS")]
    pub login_delay: Option<String>,
    /// Failed logins in a row after which the address is refused (421) for --login-ban;
    /// 0: never [default: 10] (`ftp.login_max_failures`).
    #[arg(long, value_name = "N")]
    pub login_max_failures: Option<u32>,
    /// Seconds a banned address stays refused [default: 300] (`ftp.login_ban`).
    #[arg(long, value_name = "SECS")]
    pub login_ban: Option<String>,
    /// Addresses and CIDR prefixes never delayed or banned, comma-separated
    /// (`ftp.login_exempt`), e.g. `127.0.0.1,192.0.2.0/24`.
    #[arg(long, value_name = "ADDRS")]
    pub login_exempt: Option<String>,
    /// Seconds a begun command line may take to end (CRLF) before the client is cut with
    /// 421 [default: 30] (`ftp.command_timeout`).
    #[arg(long, value_name = "SECS")]
    pub command_timeout: Option<String>,
    /// Seconds writing replies may take before a client that does not read them is cut
    /// [default: 60] (`ftp.reply_timeout`).
    #[arg(long, value_name = "SECS")]
    pub reply_timeout: Option<String>,
}

// seccomp sandbox (issue 14)
/// The sandbox flags of `gridos ftpd`.
#[derive(Args, Debug)]
#[command(next_help_heading = "Sandbox (seccomp)")]
pub struct FtpdSandboxArgs {
    /// Run without the seccomp filter the server otherwise confines itself with after
    /// start-up (`seccomp = false` in [ftp]), to tell a system call missing from its list
    /// (the server killed by SIGSYS, `audit: type=1326 … syscall=N` in the kernel log)
    /// from another fault.
    #[arg(long)]
    pub no_seccomp: bool,
    /// Install the server's seccomp filter in probe processes, try forbidden system calls
    /// (execve, fork-style clone, ptrace, mount, setuid, …) and allowed ones under it, print
    /// what the kernel did and the allowed list, and exit: 0 when every forbidden call was
    /// refused and every allowed one worked, 1 otherwise. Needs no --docroot.
    #[arg(long)]
    pub seccomp_selftest: bool,
    /// One probe of --seccomp-selftest (internal).
    #[arg(long, value_name = "NAME", hide = true)]
    pub seccomp_probe: Option<String>,
}

/// The FTPS flags of `gridos ftpd`.
#[derive(Args, Debug)]
#[command(next_help_heading = "TLS (FTPS)")]
pub struct FtpdTlsArgs {
    /// When TLS (FTPS) is required: off, optional, passwords (the default: password
    /// logins need TLS unless listening on loopback) or required (`ftp.tls`).
    #[arg(long, value_name = "POLICY")]
    pub tls: Option<String>,
    /// Certificate chain (PEM, the server's certificate first) for FTPS (`ftp.tls_cert`).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert (`ftp.tls_key`).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// A second listener for implicit FTPS: TLS from the first byte, as `ftps://` clients
    /// expect on port 990 (`ftp.implicit_tls`).
    #[arg(long, value_name = "ADDR:PORT")]
    pub implicit_tls: Option<SocketAddr>,
    /// CA certificates (PEM) for client certificates: clients are asked for one
    /// (`ftp.tls_client_ca`).
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Globus grid-mapfile (`"/C=…/CN=Name" localuser`): a client certificate's subject
    /// logs in as its local user without a password (`ftp.grid_mapfile`; needs
    /// --tls-client-ca).
    #[arg(long, value_name = "FILE")]
    pub grid_mapfile: Option<PathBuf>,
    /// Accept PROT P data connections that do not resume the control connection's TLS
    /// session (clients that cannot resume; weaker: any host the data policy allows may
    /// then connect) (`ftp.tls_data_reuse = false`).
    #[arg(long)]
    pub no_tls_data_reuse: bool,
}

fn config_from(a: &FtpdArgs) -> Result<ServerConfig, String> {
    let mut c = ServerConfig::new(PathBuf::new());
    c.listen = SocketAddr::from(([0, 0, 0, 0], 2121));
    // seccomp sandbox (issue 14): on for the server binary (the library leaves it off).
    c.seccomp = Seccomp::On;
    if let Some(path) = &a.config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("ftpd: reading {}: {e}", path.display()))?;
        c.apply_toml(&text)
            .map_err(|e| format!("ftpd: {}: {e}", path.display()))?;
    }
    let set = |c: &mut ServerConfig, k: &str, v: String| {
        c.set(k, &v)
            .map_err(|e| format!("ftpd: --{}: {e}", k.replace('_', "-")))
    };
    if let Some(d) = &a.docroot {
        c.docroot = d.clone();
    }
    if let Some(l) = a.listen {
        c.listen = l;
    }
    c.anonymous |= a.anonymous;
    c.anonymous_write |= a.anonymous_write;
    if let Some(p) = &a.passwd {
        c.passwd = Some(p.clone());
    }
    if let Some(n) = a.threads {
        set(&mut c, "threads", n.to_string())?;
    }
    if let Some(n) = a.io_threads {
        set(&mut c, "io_threads", n.to_string())?;
    }
    if let Some(p) = &a.pasv_ports {
        set(&mut c, "pasv_ports", p.clone())?;
    }
    if let Some(n) = a.max_clients {
        c.max_clients = n;
    }
    if let Some(n) = a.max_per_ip {
        c.max_per_ip = n;
    }
    if let Some(t) = &a.idle_timeout {
        set(&mut c, "idle_timeout", t.clone())?;
    }
    if let Some(t) = &a.data_timeout {
        set(&mut c, "data_timeout", t.clone())?;
    }
    if let Some(p) = &a.ctl_socket {
        c.ctl_socket = Some(p.clone());
    }
    let g = &a.guard;
    for (key, value) in [
        ("login_delay", g.login_delay.clone()),
        (
            "login_max_failures",
            g.login_max_failures.map(|n| n.to_string()),
        ),
        ("login_ban", g.login_ban.clone()),
        ("login_exempt", g.login_exempt.clone()),
        ("command_timeout", g.command_timeout.clone()),
        ("reply_timeout", g.reply_timeout.clone()),
    ] {
        if let Some(v) = value {
            set(&mut c, key, v)?;
        }
    }
    if a.keep_net_admin {
        c.keep_net_admin = true;
    }
    c.allow_third_party |= a.allow_third_party;
    if let Some(h) = &a.third_party_hosts {
        set(&mut c, "third_party_hosts", h.clone())?;
    }
    let t = &a.tls;
    if let Some(p) = &t.tls {
        set(&mut c, "tls", p.clone())?;
    }
    if let Some(p) = &t.tls_cert {
        c.tls_cert = Some(p.clone());
    }
    if let Some(p) = &t.tls_key {
        c.tls_key = Some(p.clone());
    }
    if let Some(l) = t.implicit_tls {
        c.implicit_tls = Some(l);
    }
    if let Some(p) = &t.tls_client_ca {
        c.tls_client_ca = Some(p.clone());
    }
    if let Some(p) = &t.grid_mapfile {
        c.grid_mapfile = Some(p.clone());
    }
    if t.no_tls_data_reuse {
        c.tls_data_reuse = false;
    }
    // seccomp sandbox (issue 14)
    if a.sandbox.no_seccomp {
        c.seccomp = Seccomp::Off;
    }
    c.run_as = Some(
        a.user
            .clone()
            .or(c.run_as.take())
            .unwrap_or_else(|| "nobody".to_string()),
    );
    if c.docroot.as_os_str().is_empty() {
        return Err("ftpd: --docroot DIR is required".into());
    }
    Ok(c)
}

/// Runs the server until SIGTERM or SIGINT, then shuts down cleanly (exit status 0).
pub fn run(a: FtpdArgs) -> Result<ExitCode, String> {
    // seccomp sandbox (issue 14)
    if let Some(name) = &a.sandbox.seccomp_probe {
        let probe = Probe::from_name(name)
            .ok_or_else(|| format!("ftpd: --seccomp-probe: no probe {name:?}"))?;
        return Ok(seccomp_selftest::child(probe));
    }
    if a.sandbox.seccomp_selftest {
        return seccomp_selftest_report();
    }
    // Block the termination signals before any thread starts, so every thread inherits the
    // mask and the main thread receives them with sigwait.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals
        .thread_block()
        .map_err(|e| format!("ftpd: blocking signals: {e}"))?;
    let config = config_from(&a)?;
    let (limit, short) = gridos_ftp::server::raise_open_file_limit(config.max_clients);
    if short {
        tracing::warn!(
            limit,
            max_clients = config.max_clients,
            "ftpd: the open-file limit may be too low for max_clients sessions transferring at once"
        );
    }
    let server = Server::start(config).map_err(|e| format!("ftpd: {e}"))?;
    println!("gridos ftpd listening on {}", server.local_addr());
    if let Some(a) = server.implicit_tls_addr() {
        println!("gridos ftpd listening for implicit TLS on {a}");
    }
    let _ = std::io::stdout().flush();
    let sig = signals
        .wait()
        .map_err(|e| format!("ftpd: waiting for signals: {e}"))?;
    tracing::info!(signal = %sig, "ftpd: shutting down");
    server.shutdown();
    Ok(ExitCode::SUCCESS)
}

// seccomp sandbox (issue 14)
/// `--seccomp-selftest`: one probe process per call (this program again, with
/// `--seccomp-probe`), then the report.
fn seccomp_selftest_report() -> Result<ExitCode, String> {
    let exe = std::env::current_exe().map_err(|e| format!("ftpd: finding this program: {e}"))?;
    let allowed = gridos_ftp::server::sandbox::allowed_syscalls();
    println!(
        "seccomp filter of gridos ftpd: {} system calls allowed, any other kills the process:",
        allowed.len()
    );
    println!("  {}", allowed.join(" "));
    let verdicts = seccomp_selftest::run(|p| {
        std::process::Command::new(&exe)
            .args(["ftpd", "--seccomp-probe", p.name()])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
    });
    let width = Probe::ALL.iter().map(|p| p.name().len()).max().unwrap_or(0);
    for v in &verdicts {
        let mark = if v.ok { "ok  " } else { "FAIL" };
        println!("{mark} {:width$}  {}", v.probe.name(), v.detail);
    }
    let failed = verdicts.iter().filter(|v| !v.ok).count();
    if failed == 0 {
        println!(
            "seccomp selftest: {} probes, all as expected",
            verdicts.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "seccomp selftest: {failed} of {} probes NOT as expected",
            verdicts.len()
        );
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use gridos_ftp::server::TlsPolicy;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        a: FtpdArgs,
    }

    fn config(args: &[&str]) -> Result<ServerConfig, String> {
        let mut v = vec!["ftpd", "--docroot", "/srv"];
        v.extend_from_slice(args);
        config_from(&Cmd::try_parse_from(v).map_err(|e| e.to_string())?.a)
    }

    #[test]
    fn tls_flags_reach_the_configuration() {
        let c = config(&[
            "--tls",
            "required",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--implicit-tls",
            "127.0.0.1:990",
            "--tls-client-ca",
            "ca.pem",
            "--grid-mapfile",
            "grid-mapfile",
            "--no-tls-data-reuse",
        ])
        .unwrap();
        assert_eq!(c.tls, TlsPolicy::Required);
        assert_eq!(c.tls_cert.as_deref(), Some(std::path::Path::new("c.pem")));
        assert_eq!(c.tls_key.as_deref(), Some(std::path::Path::new("k.pem")));
        assert_eq!(c.implicit_tls, Some("127.0.0.1:990".parse().unwrap()));
        assert_eq!(
            c.tls_client_ca.as_deref(),
            Some(std::path::Path::new("ca.pem"))
        );
        assert_eq!(
            c.grid_mapfile.as_deref(),
            Some(std::path::Path::new("grid-mapfile"))
        );
        assert!(!c.tls_data_reuse);
        let d = config(&[]).unwrap();
        assert_eq!(d.tls, TlsPolicy::Passwords);
        assert!(d.tls_data_reuse && d.tls_cert.is_none());
        let e = config(&["--tls", "sometimes"]).unwrap_err();
        assert!(e.contains("--tls") && e.contains("required"), "{e}");
    }

    /// The server binary confines itself unless told not to.
    #[test]
    fn seccomp_is_on_unless_no_seccomp() {
        assert_eq!(config(&[]).unwrap().seccomp, Seccomp::On);
        assert_eq!(config(&["--no-seccomp"]).unwrap().seccomp, Seccomp::Off);
    }
}
