//! `gridos selftest`: a real transfer through the real stack on loopback, verified.
//!
//! Generates a file, sends it over a loopback TCP connection to a receiver thread
//! (upload), sends the received copy back (download), compares all three copies byte by
//! byte, and reports throughput, process CPU seconds per GB (both ends and the kernel's
//! io_uring workers are in this process) and the I/O path in use.

use gridos_io::{IoPath, TransferOptions, recv_file, send_file};
use serde::Serialize;
use std::fs::File;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
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
}

/// One direction of the test.
#[derive(Clone, Debug, Serialize)]
pub struct Leg {
    /// "upload" or "download".
    pub direction: &'static str,
    /// Bytes moved.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Process CPU time (user + system, all threads).
    pub cpu: Duration,
    /// The path the sender used.
    pub path: IoPath,
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
    /// A transfer failed.
    #[error("transfer: {0}")]
    Transfer(#[from] gridos_io::Error),
    /// Setting up files or sockets failed.
    #[error("{0}: {1}")]
    Setup(&'static str, std::io::Error),
    /// The bytes that arrived differ from the bytes sent.
    #[error("{leg}: received data differs from the original at byte {offset}")]
    Mismatch {
        /// Which direction.
        leg: &'static str,
        /// First differing byte.
        offset: u64,
    },
    /// A helper thread died.
    #[error("receiver thread failed")]
    Thread,
}

/// Runs the self-test; `Ok` only when both directions arrived byte-identical.
pub fn run(opts: &SelftestOptions) -> Result<Vec<Leg>, SelftestError> {
    let dir = tempfile::Builder::new()
        .prefix("gridos-selftest-")
        .tempdir_in(opts.dir.clone().unwrap_or_else(std::env::temp_dir))
        .map_err(|e| SelftestError::Setup("temporary directory", e))?;
    let original = dir.path().join("original");
    generate(&original, opts.size)?;
    let open = |p: &PathBuf| File::open(p).map_err(|e| SelftestError::Setup("open", e));
    let create = |p: &PathBuf| File::create(p).map_err(|e| SelftestError::Setup("create", e));
    let (up, down) = (dir.path().join("uploaded"), dir.path().join("downloaded"));
    let transfer = TransferOptions {
        path: opts.path,
        ..Default::default()
    };
    let up_leg = leg(
        "upload",
        &open(&original)?,
        &create(&up)?,
        opts.size,
        &transfer,
    )?;
    let down_leg = leg(
        "download",
        &open(&up)?,
        &create(&down)?,
        opts.size,
        &transfer,
    )?;
    compare(&original, &up, "upload")?;
    compare(&original, &down, "download")?;
    Ok(vec![up_leg, down_leg])
}

fn leg(
    direction: &'static str,
    src: &File,
    dst: &File,
    size: u64,
    opts: &TransferOptions,
) -> Result<Leg, SelftestError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| SelftestError::Setup("bind", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| SelftestError::Setup("bind", e))?;
    let dst = dst
        .try_clone()
        .map_err(|e| SelftestError::Setup("dup", e))?;
    let ropts = opts.clone();
    let cpu0 = cpu_time();
    let start = Instant::now();
    let receiver = std::thread::spawn(move || -> Result<u64, SelftestError> {
        let (sock, _) = listener
            .accept()
            .map_err(|e| SelftestError::Setup("accept", e))?;
        Ok(recv_file(&sock, &dst, 0, Some(size), &ropts)?.bytes)
    });
    let sock = TcpStream::connect(addr).map_err(|e| SelftestError::Setup("connect", e))?;
    let sent = send_file(src, 0, size, &sock, opts);
    drop(sock);
    let received = receiver.join().map_err(|_| SelftestError::Thread)?;
    let sent = sent?;
    received?;
    Ok(Leg {
        direction,
        bytes: sent.bytes,
        elapsed: start.elapsed(),
        cpu: cpu_time().saturating_sub(cpu0),
        path: sent.path,
    })
}

/// Writes `size` pseudo-random bytes (xorshift64*, incompressible, cheap to make).
fn generate(path: &PathBuf, size: u64) -> Result<(), SelftestError> {
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

fn compare(a: &PathBuf, b: &PathBuf, leg: &'static str) -> Result<(), SelftestError> {
    let (fa, fb) = (
        File::open(a).map_err(|e| SelftestError::Setup("open", e))?,
        File::open(b).map_err(|e| SelftestError::Setup("open", e))?,
    );
    let (la, lb) = (
        fa.metadata()
            .map_err(|e| SelftestError::Setup("stat", e))?
            .len(),
        fb.metadata()
            .map_err(|e| SelftestError::Setup("stat", e))?
            .len(),
    );
    let (mut ba, mut bb) = (vec![0u8; 4 << 20], vec![0u8; 4 << 20]);
    let mut off = 0u64;
    while off < la.max(lb) {
        let na = gridos_io::file_read(&fa, off, &mut ba)?;
        let nb = gridos_io::file_read(&fb, off, &mut bb)?;
        if let Some(i) = ba[..na.min(nb)]
            .iter()
            .zip(&bb[..na.min(nb)])
            .position(|(x, y)| x != y)
        {
            return Err(SelftestError::Mismatch {
                leg,
                offset: off + i as u64,
            });
        }
        if na != nb || na == 0 {
            return Err(SelftestError::Mismatch {
                leg,
                offset: off + na.min(nb) as u64,
            });
        }
        off += na as u64;
    }
    Ok(())
}

/// User + system CPU time of the whole process.
pub fn cpu_time() -> Duration {
    match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000)
            };
            tv(u.user_time()) + tv(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}
