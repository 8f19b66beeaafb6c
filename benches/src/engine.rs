//! Loopback cases for the io engine benchmark: one 1 GiB file pushed through a socket with a
//! chosen [`IoPath`], the other end of the connection kept as cheap as possible (a splice sink
//! to /dev/null, or a sendfile source) so the measurement is dominated by the side under test.

use gridos_io::{IoPath, TransferOptions, recv_file, send_file};
use nix::fcntl::{SpliceFFlags, splice};
use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Which side is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// file → socket (RETR): the sender uses the path under test.
    FileToSocket,
    /// socket → file (STOR): the receiver uses the path under test.
    SocketToFile,
}

/// Wall and CPU time of one run.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Elapsed wall time.
    pub wall: Duration,
    /// User + system CPU of the process, all threads (both ends, io_uring workers included).
    pub cpu: Duration,
    /// CPU of the side under test: the process minus the peer thread (so the side's own
    /// threads and its io_uring workers).
    pub cpu_side: Duration,
}

fn thread_cpu() -> Duration {
    match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_THREAD) {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000)
            };
            tv(u.user_time()) + tv(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

/// Runs `f` and returns its result with the CPU time this thread spent in it.
fn timed<T>(f: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<(T, Duration)> {
    let t0 = thread_cpu();
    let v = f()?;
    Ok((v, thread_cpu().saturating_sub(t0)))
}

/// User + system CPU time of the whole process.
pub use gridos_io::process_cpu_time as cpu_time;

/// Creates (once) a `size`-byte source file in `dir` and reads it, so the page cache is warm.
pub fn warm_source(dir: &Path, size: u64) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("gridos-bench-src-{size}"));
    if std::fs::metadata(&path).map(|m| m.len()).ok() != Some(size) {
        let f = File::create(&path)?;
        let mut block = vec![0u8; 1 << 20];
        let mut x: u64 = 0x243F_6A88_85A3_08D3;
        let mut at = 0;
        while at < size {
            for w in block.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                w.copy_from_slice(&x.to_le_bytes());
            }
            let n = (size - at).min(block.len() as u64) as usize;
            std::os::unix::fs::FileExt::write_all_at(&f, &block[..n], at)?;
            at += n as u64;
        }
    }
    let mut sink = std::io::sink();
    std::io::copy(&mut File::open(&path)?, &mut sink)?;
    Ok(path)
}

/// How the far end of a file → socket run consumes the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    /// `read(2)` into a 1 MiB buffer and discard: what an ordinary client does.
    Read,
    /// splice to /dev/null: no user-space copy at all on the receiving side.
    Splice,
}

fn read_sink(mut sock: &TcpStream) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match std::io::Read::read(&mut sock, &mut buf)? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

/// Drains a socket into /dev/null by splice: no user-space copy, so the receiver costs little.
fn splice_sink(sock: &TcpStream) -> std::io::Result<u64> {
    let (r, w) = nix::unistd::pipe()?;
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    let mut total = 0u64;
    loop {
        let n = splice(
            sock.as_fd(),
            None,
            &w,
            None,
            1 << 20,
            SpliceFFlags::SPLICE_F_MOVE,
        )?;
        if n == 0 {
            return Ok(total);
        }
        let mut left = n;
        while left > 0 {
            left -= splice(
                &r,
                None,
                null.as_fd(),
                None,
                left,
                SpliceFFlags::SPLICE_F_MOVE,
            )?;
        }
        total += n as u64;
    }
}

/// Moves `size` bytes once in `direction` with `path` on the measured side; `sink` is how the
/// far end consumes a file → socket run.
/// `src` is the warm source; `dst` the destination file for [`Direction::SocketToFile`].
pub fn run_once(
    direction: Direction,
    path: IoPath,
    sink: Sink,
    src: &Path,
    dst: &Path,
    size: u64,
) -> std::io::Result<Sample> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let src_file = File::open(src)?;
    let opts = TransferOptions {
        path: Some(path),
        auto_tune: Some(false),
        ..Default::default()
    };
    let (cpu0, t0) = (cpu_time(), Instant::now());
    let peer_cpu = match direction {
        Direction::FileToSocket => {
            let sink = std::thread::spawn(move || {
                let (s, _) = listener.accept()?;
                timed(|| match sink {
                    Sink::Read => read_sink(&s),
                    Sink::Splice => splice_sink(&s),
                })
            });
            let sock = TcpStream::connect(addr)?;
            send_file(&src_file, 0, size, &sock, &opts).map_err(std::io::Error::other)?;
            drop(sock);
            join_sink(sink, size)?
        }
        Direction::SocketToFile => {
            let dst_file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(dst)?;
            let source = std::thread::spawn(move || {
                let (s, _) = listener.accept()?;
                let sendfile = TransferOptions {
                    path: Some(IoPath::Splice),
                    auto_tune: Some(false),
                    ..Default::default()
                };
                timed(|| {
                    send_file(&src_file, 0, size, &s, &sendfile).map_err(std::io::Error::other)
                })
            });
            let sock = TcpStream::connect(addr)?;
            recv_file(&sock, &dst_file, 0, Some(size), &opts).map_err(std::io::Error::other)?;
            source
                .join()
                .map_err(|_| std::io::Error::other("source panicked"))??
                .1
        }
    };
    Ok(sample(cpu0, t0, peer_cpu))
}

/// Waits for a sink thread; its CPU time, or an error when it did not get `size` bytes.
fn join_sink(
    sink: std::thread::JoinHandle<std::io::Result<(u64, Duration)>>,
    size: u64,
) -> std::io::Result<Duration> {
    let (got, peer) = sink
        .join()
        .map_err(|_| std::io::Error::other("sink panicked"))??;
    if got != size {
        return Err(std::io::Error::other(format!(
            "sink got {got} of {size} bytes"
        )));
    }
    Ok(peer)
}

/// The sample of a run that started at `cpu0`/`t0` and whose peer thread used `peer` CPU.
fn sample(cpu0: Duration, t0: Instant, peer: Duration) -> Sample {
    let cpu = cpu_time().saturating_sub(cpu0);
    Sample {
        wall: t0.elapsed(),
        cpu,
        cpu_side: cpu.saturating_sub(peer),
    }
}

/// The least work the measured side can possibly do in a direction, whatever engine it uses:
/// lower bounds to read the engine's figures against. (A receive-only TCP floor is left out on
/// purpose: over loopback, how much of TCP's receive work a thread is charged for depends on
/// how fast it drains the socket, so such a figure is no lower bound.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Floor {
    /// file → socket without the file: the same user pages handed to TCP again and again
    /// by `vmsplice` + `splice`, no copy and no page-cache lookup. What remains is TCP over
    /// loopback, which every sender pays.
    TcpSend,
    /// socket → file without the socket: `pwrite(2)` of a hot 1 MiB buffer over the warm
    /// destination file. Every receiver that lands bytes in the page cache copies them in
    /// once; this is that copy and the file system's part, with nothing of TCP.
    PageCache,
}

impl Floor {
    /// The floors of a direction.
    pub fn of(direction: Direction) -> &'static [Floor] {
        match direction {
            Direction::FileToSocket => &[Floor::TcpSend],
            Direction::SocketToFile => &[Floor::PageCache],
        }
    }

    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Floor::TcpSend => "floor-tcp-send",
            Floor::PageCache => "floor-page-cache",
        }
    }
}

/// Runs `floor` once for `size` bytes (`dst` is the destination file of [`Floor::PageCache`]);
/// the same [`Sample`] fields as [`run_once`].
pub fn floor_once(floor: Floor, dst: &Path, size: u64) -> std::io::Result<Sample> {
    let block = vec![0x5Au8; 1 << 20];
    match floor {
        Floor::TcpSend => {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let addr = listener.local_addr()?;
            let (cpu0, t0) = (cpu_time(), Instant::now());
            let sink = std::thread::spawn(move || {
                let (s, _) = listener.accept()?;
                timed(|| read_sink(&s))
            });
            let sock = TcpStream::connect(addr)?;
            let (r, w) = nix::unistd::pipe()?;
            nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20))?;
            let mut sent = 0u64;
            // A quarter of the pipe per round, so an unaligned buffer's extra page still
            // fits and vmsplice never waits for a reader that is this same thread.
            let step = 256 << 10;
            while sent < size {
                let want = (size - sent).min(step) as usize;
                let iov = [std::io::IoSlice::new(&block[..want])];
                let mut queued = nix::fcntl::vmsplice(&w, &iov, SpliceFFlags::empty())?;
                while queued > 0 {
                    let n = splice(
                        &r,
                        None,
                        sock.as_fd(),
                        None,
                        queued,
                        SpliceFFlags::SPLICE_F_MOVE,
                    )?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::WriteZero.into());
                    }
                    queued -= n;
                    sent += n as u64;
                }
            }
            drop(sock);
            let peer = join_sink(sink, size)?;
            Ok(sample(cpu0, t0, peer))
        }
        Floor::PageCache => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(dst)?;
            let (cpu0, t0) = (cpu_time(), Instant::now());
            let mut at = 0u64;
            while at < size {
                let n = (size - at).min(block.len() as u64) as usize;
                std::os::unix::fs::FileExt::write_all_at(&f, &block[..n], at)?;
                at += n as u64;
            }
            Ok(sample(cpu0, t0, Duration::ZERO))
        }
    }
}
