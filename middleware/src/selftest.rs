//! `gridos selftest`: a real transfer through the real stack on loopback, verified.
//!
//! Starts a gridos FTP server on 127.0.0.1 inside this process (anonymous, writable, serving a
//! temporary directory), uploads a generated file to it with [`Copy`] — the same copy engine
//! `gridos cp` and the C library use (control connection, data connection, zero-copy file →
//! socket) — downloads it back (socket → file), checks the original, the server's copy and the downloaded copy by SHA-256, and
//! reports throughput, process CPU seconds per GB (client, server and the kernel's io_uring
//! workers are all in this process) and the I/O path in use.
//!
//! The round trip runs [`SelftestOptions::rounds`] times (3 by default) and [`summarize`]
//! gives each direction's fastest, median and slowest round, with the file system the files
//! were written to ([`Selftest::filesystem`]): one round on a virtual machine can be 3×
//! another, and a newcomer should read a figure that holds.
//!
//! With [`SelftestOptions::tls`] the same round trip runs over FTPS: the server gets a
//! certificate for 127.0.0.1 from a CA generated for the run (rcgen), requires TLS on
//! control and data connections, and the client connects with `ftpes://` trusting only that
//! CA — so a handshake, certificate verification, `PROT P` data connections resuming the
//! control session and user-space encryption are all exercised; a third leg downloads with
//! MODE E over two parallel TLS streams.

use crate::{Copy, CopyOptions, CopyReport, Url};
use gridos_ftp::server::{Server, ServerConfig, TlsPolicy};
use gridos_io::IoPath;
use serde::Serialize;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Debug)]
pub struct SelftestOptions {
    /// File size in bytes.
    pub size: u64,
    /// Force an I/O path (default: the probe's choice).
    pub path: Option<IoPath>,
    /// Where to put the temporary files (default: the system temp dir).
    pub dir: Option<PathBuf>,
    /// Run over TLS (explicit FTPS with a generated certificate), plus a MODE E leg.
    pub tls: bool,
    /// Round trips (at least 1).
    pub rounds: usize,
}

/// What a self-test measured: every leg of every round, and where the files were written.
#[derive(Clone, Debug, Serialize)]
pub struct Selftest {
    /// The type of the file system the files were written to (`ext4`, `tmpfs`, …).
    pub filesystem: String,
    /// Each leg of each round, in the order they ran.
    pub legs: Vec<Leg>,
}

/// One direction's figures over the rounds.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// "upload", "download" or "download-mode-e".
    pub direction: &'static str,
    /// Rounds measured.
    pub rounds: usize,
    /// Bytes per round.
    pub bytes: u64,
    /// The slowest round's MB/s.
    pub mb_per_sec_min: f64,
    /// The median round's MB/s.
    pub mb_per_sec: f64,
    /// The fastest round's MB/s.
    pub mb_per_sec_max: f64,
    /// The median round's wall time.
    pub seconds: f64,
    /// Median CPU seconds per GB.
    pub cpu_seconds_per_gb: f64,
    /// The zero-copy path of the last round.
    pub path: Option<IoPath>,
    /// How the data moved (last round).
    pub how: String,
    /// SHA-256 of the data (the same in every round, verified).
    pub sha256: String,
}

/// Each direction's slowest, median and fastest round, in the order the directions ran.
pub fn summarize(legs: &[Leg]) -> Vec<Summary> {
    let mut order: Vec<&'static str> = Vec::new();
    for l in legs {
        if !order.contains(&l.direction) {
            order.push(l.direction);
        }
    }
    order
        .into_iter()
        .filter_map(|d| {
            let mut of: Vec<&Leg> = legs.iter().filter(|l| l.direction == d).collect();
            of.sort_by(|a, b| a.mb_per_sec().total_cmp(&b.mb_per_sec()));
            let mid = *of.get(of.len() / 2)?;
            let mut cpu: Vec<f64> = of.iter().map(|l| l.cpu_per_gb()).collect();
            cpu.sort_by(f64::total_cmp);
            let last = legs.iter().rev().find(|l| l.direction == d)?;
            Some(Summary {
                direction: d,
                rounds: of.len(),
                bytes: mid.bytes,
                mb_per_sec_min: of.first()?.mb_per_sec(),
                mb_per_sec: mid.mb_per_sec(),
                mb_per_sec_max: of.last()?.mb_per_sec(),
                seconds: mid.elapsed.as_secs_f64(),
                cpu_seconds_per_gb: cpu.get(cpu.len() / 2).copied().unwrap_or(0.0),
                path: last.path,
                how: last.how.clone(),
                sha256: last.sha256.clone(),
            })
        })
        .collect()
}

/// The type of the file system `dir` is on (`ext4`, `tmpfs`, …, or `unknown`).
pub fn filesystem(dir: &Path) -> String {
    gridos_io::filesystem_name(dir)
}

/// One direction of the test.
#[derive(Clone, Debug, Serialize)]
pub struct Leg {
    /// "upload", "download" or (with TLS) "download-mode-e".
    pub direction: &'static str,
    /// Bytes moved.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Process CPU time (user + system, all threads).
    pub cpu: Duration,
    /// The zero-copy path the client's side used (`None`: the bytes went through user space,
    /// as TLS data does).
    pub path: Option<IoPath>,
    /// How the data moved, as the copy reported it (`io_uring-splice`, `TLS user-space MODE E`, …).
    pub how: String,
    /// SHA-256 of the bytes that arrived (equal to the original's when verified).
    pub sha256: String,
}

impl Leg {
    /// Megabytes (10⁶ bytes) per second.
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
    /// CPU seconds per GB (10⁹ bytes).
    pub fn cpu_per_gb(&self) -> f64 {
        self.cpu.as_secs_f64() / (self.bytes.max(1) as f64 / 1e9)
    }
}

/// Errors of the self-test.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SelftestError {
    /// A copy failed.
    #[error("{0}")]
    Copy(#[from] crate::Error),
    /// The TLS round trip failed in its TLS part: the server did not offer TLS, or the
    /// handshake or the certificate check failed.
    #[error(
        "TLS round trip: {0} (the in-process server was given a certificate for 127.0.0.1 \
         from a CA made for this run, and TLS required; the client trusts only that CA)"
    )]
    Tls(#[source] crate::Error),
    /// The certificates for the TLS round trip could not be made.
    #[error("generating the test certificates: {0}")]
    Certificate(#[source] rcgen::Error),
    /// The in-process FTP server could not start.
    #[error("ftp server: {0}")]
    Server(#[source] gridos_ftp::server::Error),
    /// Setting up files or sockets failed.
    #[error("{0}: {1}")]
    Setup(&'static str, std::io::Error),
    /// The bytes that arrived differ from the bytes sent.
    #[error("{leg}: SHA-256 of the received data is {got}, the original's is {expected}")]
    Mismatch {
        /// Which direction.
        leg: &'static str,
        /// The original's digest.
        expected: String,
        /// The received data's digest.
        got: String,
    },
    /// A helper thread died.
    #[error("receiver thread failed")]
    Thread,
}

/// Runs the self-test; `Ok` only when every leg of every round arrived byte-identical.
pub fn run(opts: &SelftestOptions) -> Result<Selftest, SelftestError> {
    let dir = tempfile::Builder::new()
        .prefix("gridos-selftest-")
        .tempdir_in(opts.dir.clone().unwrap_or_else(std::env::temp_dir))
        .map_err(|e| SelftestError::Setup("temporary directory", e))?;
    let docroot = dir.path().join("docroot");
    std::fs::create_dir(&docroot).map_err(|e| SelftestError::Setup("docroot", e))?;
    let original = dir.path().join("original");
    generate(&original, opts.size)?;
    let expected = sha256_file(&original)?;

    let mut config = ServerConfig::new(&docroot);
    config.anonymous = true;
    config.anonymous_write = true;
    let mut options = CopyOptions {
        io_path: opts.path,
        ..CopyOptions::default()
    };
    if opts.tls {
        let pki = certificates(dir.path())?;
        config.tls = TlsPolicy::Required;
        config.tls_cert = Some(pki.cert);
        config.tls_key = Some(pki.key);
        options.tls.ca_file = Some(pki.ca);
    }
    let server = Server::start(config).map_err(SelftestError::Server)?;
    let scheme = if opts.tls { "ftpes" } else { "ftp" };
    let remote = Url::parse(&format!("{scheme}://{}/selftest.bin", server.local_addr()))
        .map_err(crate::Error::from)?;
    let copy_failed = |e: crate::Error| match e.kind() {
        crate::ErrorKind::Tls | crate::ErrorKind::TlsUnavailable => SelftestError::Tls(e),
        _ => SelftestError::Copy(e),
    };
    let leg = |direction,
               src: Url,
               dst: Url,
               landed: &Path,
               options: &CopyOptions|
     -> Result<Leg, SelftestError> {
        let cpu0 = cpu_time();
        let t0 = Instant::now();
        let r: CopyReport = Copy::new(src, dst)
            .options(options.clone())
            .run()
            .map_err(copy_failed)?;
        Ok(Leg {
            direction,
            bytes: r.bytes,
            elapsed: t0.elapsed(),
            cpu: cpu_time().saturating_sub(cpu0),
            path: r.io_path,
            how: r.path.clone(),
            sha256: sha256_file(landed)?,
        })
    };
    let mut legs = Vec::new();
    let down_path = dir.path().join("downloaded");
    for _ in 0..opts.rounds.max(1) {
        // Each round starts from the same state: the last round's download gone.
        let _ = std::fs::remove_file(&down_path);
        legs.push(leg(
            "upload",
            Url::Local(original.clone()),
            remote.clone(),
            &docroot.join("selftest.bin"),
            &options,
        )?);
        legs.push(leg(
            "download",
            remote.clone(),
            Url::Local(down_path.clone()),
            &down_path,
            &options,
        )?);
    }
    if opts.tls {
        // MODE E's data connections take the same TLS path (the client's protect_data).
        let streams = CopyOptions {
            parallel: Some(2),
            ..options.clone()
        };
        let e_path = dir.path().join("downloaded-mode-e");
        legs.push(leg(
            "download-mode-e",
            remote,
            Url::Local(e_path.clone()),
            &e_path,
            &streams,
        )?);
    }
    server.shutdown();
    for leg in &legs {
        if leg.sha256 != expected || leg.bytes != opts.size {
            return Err(SelftestError::Mismatch {
                leg: leg.direction,
                expected: expected.clone(),
                got: leg.sha256.clone(),
            });
        }
    }
    Ok(Selftest {
        filesystem: filesystem(dir.path()),
        legs,
    })
}

/// PEM files of a run's own PKI.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A CA and a server certificate it signs for 127.0.0.1 and localhost, written to `dir`.
fn certificates(dir: &Path) -> Result<Pki, SelftestError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let c = SelftestError::Certificate;
    let ca_key = KeyPair::generate().map_err(c)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(c)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "gridos selftest CA");
    let ca_cert = ca.self_signed(&ca_key).map_err(c)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().map_err(c)?;
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .map_err(c)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "gridos selftest server");
    let cert = leaf.signed_by(&key, &issuer).map_err(c)?;
    let write = |name: &str, pem: String| -> Result<PathBuf, SelftestError> {
        let p = dir.join(name);
        std::fs::write(&p, pem).map_err(|e| SelftestError::Setup("write certificates", e))?;
        Ok(p)
    };
    Ok(Pki {
        ca: write("ca.pem", ca_cert.pem())?,
        cert: write("server.pem", cert.pem())?,
        key: write("server.key", key.serialize_pem())?,
    })
}

/// SHA-256 of a file, hex.
fn sha256_file(path: &Path) -> Result<String, SelftestError> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = File::open(path).map_err(|e| SelftestError::Setup("open", e))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| SelftestError::Setup("read", e))?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or(&[]));
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `size` pseudo-random bytes (xorshift64*, incompressible, cheap to make).
fn generate(path: &Path, size: u64) -> Result<(), SelftestError> {
    let mut f = std::io::BufWriter::with_capacity(
        8 << 20,
        File::create(path).map_err(|e| SelftestError::Setup("create", e))?,
    );
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for w in block.chunks_exact_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            w.copy_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])
            .map_err(|e| SelftestError::Setup("write", e))?;
        left -= n as u64;
    }
    f.flush().map_err(|e| SelftestError::Setup("write", e))
}

/// User + system CPU time of the whole process.
pub use gridos_io::process_cpu_time as cpu_time;
