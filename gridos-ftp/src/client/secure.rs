//! FTPS on the client side (RFC 4217): the control connection as plain TCP or TLS, and the
//! user-space loops that move stream-mode data over TLS data connections.
//!
//! Clear data connections keep gridos-io's zero-copy transfers; under `PROT P` the bytes
//! must pass through rustls, so downloads read the socket in large chunks and feed rustls
//! from memory (rustls alone reads 4 KiB per system call), and uploads hand rustls large
//! plaintext writes that leave as vectored writes of many records.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gridos_io::{TransferOptions, TransferReport};
use rustls::{ClientConnection, StreamOwned};

use crate::tls::DataStream;

/// Bytes read from the socket, or from the file, per step.
const CHUNK: usize = 1 << 20;

/// Plaintext handed to rustls and flushed at a time on uploads: progress is published
/// after each, so a slow link still shows some well within the data timeout.
const PIECE: usize = 128 << 10;

/// Plaintext gathered before a write to the file.
const FLUSH_AT: usize = 512 << 10;

/// Wait granularity on data sockets, so cancellation and the watchdog are noticed.
const POLL: Duration = Duration::from_millis(200);

/// How long an upload's data connection is read after its close_notify: the server's
/// TLS 1.3 session tickets arrive there, and later data connections resume with them.
const DRAIN: Duration = Duration::from_secs(5);

/// The control connection: clear, or TLS after `AUTH TLS` (or from the first byte).
pub(crate) enum Ctrl {
    /// Clear TCP.
    Plain(TcpStream),
    /// TLS, this end the client.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

/// What a TLS control connection negotiated (for `-v` lines and reports).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsParams {
    /// `TLS 1.3` or `TLS 1.2`.
    pub version: &'static str,
    /// The cipher suite's IANA name, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

impl Ctrl {
    /// The negotiated TLS version and cipher suite; `None` in clear.
    pub(crate) fn tls_params(&self) -> Option<TlsParams> {
        let Ctrl::Tls(s) = self else { return None };
        let version = match s.conn.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3",
            rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2",
            _ => "TLS",
        };
        let cipher = s
            .conn
            .negotiated_cipher_suite()
            .and_then(|c| c.suite().as_str().map(str::to_string))
            .unwrap_or_else(|| "unknown cipher".into());
        Some(TlsParams { version, cipher })
    }

    /// The TCP connection underneath.
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Ctrl::Plain(s) => s,
            Ctrl::Tls(s) => &s.sock,
        }
    }

    /// Whether the control connection is encrypted.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Ctrl::Tls(_))
    }

    /// Writes `bytes` and pushes them onto the wire (a TLS write is only buffered until
    /// flushed).
    pub(crate) fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes)?;
        self.flush()
    }

    /// Decrypted bytes waiting to be read: a reader must take them before it waits on the
    /// socket (which may have nothing more to say).
    pub(crate) fn pending(&mut self) -> usize {
        match self {
            Ctrl::Plain(_) => 0,
            Ctrl::Tls(s) => s
                .conn
                .process_new_packets()
                .map(|st| st.plaintext_bytes_to_read())
                .unwrap_or(0),
        }
    }
}

impl Read for Ctrl {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Ctrl::Plain(s) => s.read(buf),
            // A server that hangs up without close_notify has closed the connection all
            // the same.
            Ctrl::Tls(s) => match s.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
        }
    }
}

impl Write for Ctrl {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Ctrl::Plain(s) => s.write(buf),
            Ctrl::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Ctrl::Plain(s) => s.flush(),
            Ctrl::Tls(s) => s.flush(),
        }
    }
}

/// A TLS data connection's halves, taken out of a [`DataStream`].
type Tls = StreamOwned<ClientConnection, TcpStream>;

fn client_half(s: DataStream) -> io::Result<Box<Tls>> {
    match s {
        DataStream::Client(t) => Ok(t),
        _ => Err(io::Error::other(
            "a protected data connection is not a TLS client connection",
        )),
    }
}

fn io_err(op: &'static str, source: io::Error, moved: u64) -> gridos_io::Error {
    use io::ErrorKind as K;
    match source.kind() {
        K::ConnectionReset | K::BrokenPipe | K::ConnectionAborted => {
            gridos_io::Error::PeerReset { moved }
        }
        _ => gridos_io::Error::Io { op, source },
    }
}

fn file_err(source: io::Error, moved: u64) -> gridos_io::Error {
    match source.raw_os_error() {
        Some(code) if code == nix::libc::ENOSPC || code == nix::libc::EDQUOT => {
            gridos_io::Error::NoSpace { moved }
        }
        _ => gridos_io::Error::Io {
            op: "write file",
            source,
        },
    }
}

fn cancelled(opts: &TransferOptions) -> bool {
    opts.cancel
        .as_ref()
        .is_some_and(gridos_io::CancelToken::is_cancelled)
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn report(bytes: u64, wire: u64, start: Instant) -> TransferReport {
    TransferReport {
        bytes,
        wire_bytes: wire,
        elapsed: start.elapsed(),
        // User-space buffers: what the read-write path does, whatever the probe chose.
        path: gridos_io::IoPath::ReadWrite,
        sndbuf: None,
        rcvbuf: None,
        decisions: Vec::new(),
    }
}

/// Where decrypted bytes go: the file at an offset, straight or through zlib (MODE Z).
enum Sink<'a> {
    Plain(FileAt<'a>),
    Inflate(Box<flate2::write::ZlibDecoder<FileAt<'a>>>),
}

/// `Write` at a moving offset of a file (`pwrite`), counting what was written.
struct FileAt<'a> {
    file: &'a File,
    offset: u64,
    written: u64,
}

impl Write for FileAt<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all_at(buf, self.offset + self.written)?;
        self.written += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink<'_> {
    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Sink::Plain(f) => f.write_all(b),
            Sink::Inflate(z) => z.write_all(b),
        }
    }
    fn written(&self) -> u64 {
        match self {
            Sink::Plain(f) => f.written,
            Sink::Inflate(z) => z.get_ref().written,
        }
    }
    fn finish(self) -> io::Result<u64> {
        match self {
            Sink::Plain(f) => Ok(f.written),
            Sink::Inflate(z) => z.finish().map(|f| f.written),
        }
    }
}

/// Receives a stream-mode download over TLS into `file` at `offset` (inflating MODE Z
/// data when `inflate`), until the server ends the data connection. Honours the options'
/// cancel token and publishes progress (uncompressed bytes) for the watchdog.
pub(crate) fn recv(
    s: DataStream,
    file: &File,
    offset: u64,
    inflate: bool,
    opts: &TransferOptions,
) -> gridos_io::Result<TransferReport> {
    let start = Instant::now();
    let mut t = client_half(s).map_err(|e| io_err("TLS data connection", e, 0))?;
    let _ = t.sock.set_read_timeout(Some(POLL));
    let at = FileAt {
        file,
        offset,
        written: 0,
    };
    let mut sink = if inflate {
        Sink::Inflate(Box::new(flate2::write::ZlibDecoder::new(at)))
    } else {
        Sink::Plain(at)
    };
    let mut net = vec![0u8; CHUNK];
    let mut plain = Vec::with_capacity(FLUSH_AT + (64 << 10));
    let mut wire = 0u64;
    let publish = |n: u64| {
        if let Some(p) = &opts.progress {
            p.store(n, Ordering::Relaxed);
        }
    };
    loop {
        if cancelled(opts) {
            return Err(gridos_io::Error::Cancelled {
                moved: sink.written(),
            });
        }
        let n = match t.sock.read(&mut net) {
            Ok(n) => n,
            Err(e) if would_block(&e) => continue,
            Err(e) => return Err(io_err("read TLS data", e, sink.written())),
        };
        wire += n as u64;
        let mut rest = net.get(..n).unwrap_or(&[]);
        let mut closed = false;
        loop {
            // An empty slice (n == 0) tells rustls the TCP stream ended.
            t.conn
                .read_tls(&mut rest)
                .map_err(|e| io_err("TLS data", e, sink.written()))?;
            let state = t.conn.process_new_packets().map_err(|e| {
                // Tell the server why, as a TLS alert, before the connection goes.
                let _ = t.conn.write_tls(&mut t.sock);
                io_err("TLS data", io::Error::other(e), sink.written())
            })?;
            let want = state.plaintext_bytes_to_read();
            if want > 0 {
                let from = plain.len();
                plain.resize(from + want, 0);
                let got = t
                    .conn
                    .reader()
                    .read(plain.get_mut(from..).unwrap_or(&mut []))
                    .unwrap_or(0);
                plain.truncate(from + got);
            }
            closed |= state.peer_has_closed();
            if plain.len() >= FLUSH_AT {
                let moved = sink.written();
                sink.put(&plain).map_err(|e| file_err(e, moved))?;
                plain.clear();
                publish(sink.written());
            }
            if rest.is_empty() || closed {
                break;
            }
        }
        // Decrypted counts as arrived: a slow link still shows progress between writes.
        publish(sink.written() + plain.len() as u64);
        if n == 0 || closed {
            // The end: close_notify, or a TCP close without one (many servers omit it; the
            // server's 226 and the size check tell a complete transfer from a cut one).
            break;
        }
    }
    let moved = sink.written();
    sink.put(&plain).map_err(|e| file_err(e, moved))?;
    let moved = sink.written();
    let bytes = sink.finish().map_err(|e| file_err(e, moved))?;
    publish(bytes);
    Ok(report(bytes, wire, start))
}

/// Sends `len` bytes of `file` from `offset` over TLS (deflated for MODE Z when `deflate`),
/// then ends the stream: close_notify, TCP half-close, and a short read of what the server
/// still sends (its session tickets, its own close).
pub(crate) fn send(
    s: DataStream,
    file: &File,
    offset: u64,
    len: u64,
    deflate: bool,
    opts: &TransferOptions,
) -> gridos_io::Result<TransferReport> {
    let start = Instant::now();
    let mut t = client_half(s).map_err(|e| io_err("TLS data connection", e, 0))?;
    let _ = t.sock.set_write_timeout(Some(POLL));
    // Room for one piece of plaintext as records: rustls accepts all of a write then.
    t.conn.set_buffer_limit(Some(2 * PIECE + (64 << 10)));
    let mut z = deflate.then(|| {
        flate2::write::ZlibEncoder::new(Vec::with_capacity(CHUNK), flate2::Compression::new(6))
    });
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    let mut wire = 0u64;
    while done < len {
        let want = (len - done).min(CHUNK as u64) as usize;
        let chunk = buf.get_mut(..want).unwrap_or(&mut []);
        let n = match file.read_at(chunk, offset + done) {
            Ok(0) => {
                return Err(gridos_io::Error::FileTruncated {
                    moved: done,
                    expected: len,
                });
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(gridos_io::Error::Io {
                    op: "read file",
                    source,
                });
            }
        };
        for piece in buf.get(..n).unwrap_or(&[]).chunks(PIECE) {
            match &mut z {
                Some(enc) => {
                    enc.write_all(piece)
                        .map_err(|e| io_err("deflate", e, done))?;
                    let out = std::mem::take(enc.get_mut());
                    wire += out.len() as u64;
                    put(&mut t, &out, done, opts)?;
                }
                None => {
                    wire += piece.len() as u64;
                    put(&mut t, piece, done, opts)?;
                }
            }
            done += piece.len() as u64;
            if let Some(p) = &opts.progress {
                p.store(done, Ordering::Relaxed);
            }
        }
    }
    if let Some(enc) = z {
        let out = enc.finish().map_err(|e| io_err("deflate", e, done))?;
        wire += out.len() as u64;
        put(&mut t, &out, done, opts)?;
    }
    t.conn.send_close_notify();
    flush(&mut t, done, opts)?;
    let _ = t.sock.shutdown(std::net::Shutdown::Write);
    drain(&mut t);
    Ok(report(done, wire, start))
}

/// Encrypts `data` and writes it out, waiting (in [`POLL`] steps) while the socket is full.
fn put(t: &mut Tls, mut data: &[u8], moved: u64, opts: &TransferOptions) -> gridos_io::Result<()> {
    while !data.is_empty() {
        let n = t
            .conn
            .writer()
            .write(data)
            .map_err(|e| io_err("TLS data", e, moved))?;
        data = data.get(n..).unwrap_or(&[]);
        flush(t, moved, opts)?;
    }
    Ok(())
}

fn flush(t: &mut Tls, moved: u64, opts: &TransferOptions) -> gridos_io::Result<()> {
    while t.conn.wants_write() {
        if cancelled(opts) {
            return Err(gridos_io::Error::Cancelled { moved });
        }
        match t.conn.write_tls(&mut t.sock) {
            Ok(_) => {}
            Err(e) if would_block(&e) => {}
            Err(e) => return Err(io_err("write TLS data", e, moved)),
        }
    }
    Ok(())
}

/// Reads the rest of a finished upload's connection for up to [`DRAIN`], for what rustls
/// keeps from it: TLS 1.3 session tickets, one used up by each resumption, which the next
/// data connections need (a TLS 1.2 session is resumed as often as wanted).
fn drain(t: &mut Tls) {
    if t.conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        return;
    }
    let end = Instant::now() + DRAIN;
    let mut net = vec![0u8; 64 << 10];
    let _ = t.sock.set_read_timeout(Some(POLL));
    while Instant::now() < end {
        match t.sock.read(&mut net) {
            Ok(0) => return,
            Ok(n) => {
                let mut rest = net.get(..n).unwrap_or(&[]);
                while !rest.is_empty() {
                    if t.conn.read_tls(&mut rest).is_err() || t.conn.process_new_packets().is_err()
                    {
                        return;
                    }
                    // Plaintext after our close is not expected; drop it.
                    let mut sink = [0u8; 4096];
                    while matches!(t.conn.reader().read(&mut sink), Ok(n) if n > 0) {}
                }
            }
            Err(e) if would_block(&e) => {}
            Err(_) => return,
        }
    }
}

/// Reads a listing over TLS (at most `max + 1` bytes, so the caller sees an oversized one).
/// A TCP close without close_notify ends it too: the server's 226 says it was complete.
pub(crate) fn read_listing(s: &mut DataStream, max: usize, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
                if buf.len() > max {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && s.is_tls() => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{ClientTls, ServerTls};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    fn pair() -> (ServerTls, ClientTls) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der: CertificateDer<'static> = cert.der().clone();
        let server = ServerTls::new(
            vec![der.clone()],
            PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            None,
        )
        .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        (server, ClientTls::from_config(Arc::new(config)))
    }

    fn pattern(n: usize) -> Vec<u8> {
        // Compressible but not trivially: MODE Z must round-trip it exactly.
        (0..n)
            .map(|i| ((i * 7919) % 251) as u8 ^ (i >> 13) as u8)
            .collect()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn unzlib(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// The user-space loops against a real rustls server on loopback: downloads and
    /// uploads, plain and MODE Z, a close_notify at the end, progress counted.
    #[test]
    fn tls_data_loops_both_ways_with_and_without_zlib() {
        let (server, client) = pair();
        let data = pattern(3 * CHUNK + 12_345);
        let t = Duration::from_secs(5);
        for deflate in [false, true] {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let wire = if deflate { zlib(&data) } else { data.clone() };
            let sess = server.session();
            let srv = std::thread::spawn(move || {
                // Download: the server sends, then closes the TLS way.
                let (s, _) = l.accept().unwrap();
                let mut d = sess.accept_data(s, false, t).unwrap();
                d.write_all(&wire).unwrap();
                d.finish().unwrap();
                // Upload: the server reads to the client's close_notify.
                let (s, _) = l.accept().unwrap();
                let mut d = sess.accept_data(s, false, t).unwrap();
                let mut got = Vec::new();
                d.read_to_end(&mut got).unwrap();
                d.finish().unwrap();
                got
            });
            let progress = Arc::new(AtomicU64::new(0));
            let opts = TransferOptions {
                progress: Some(progress.clone()),
                ..TransferOptions::default()
            };
            let file = tempfile::tempfile().unwrap();
            let s = client
                .connect("127.0.0.1", TcpStream::connect(addr).unwrap(), t)
                .unwrap();
            let r = recv(s, &file, 5, deflate, &opts).unwrap();
            assert_eq!(r.bytes, data.len() as u64);
            assert_eq!(progress.load(Ordering::Relaxed), data.len() as u64);
            let mut back = vec![0u8; data.len()];
            file.read_exact_at(&mut back, 5).unwrap();
            assert!(back == data, "download differs (deflate {deflate})");

            let s = client
                .connect("127.0.0.1", TcpStream::connect(addr).unwrap(), t)
                .unwrap();
            let r = send(s, &file, 5, data.len() as u64, deflate, &opts).unwrap();
            assert_eq!(r.bytes, data.len() as u64);
            let got = srv.join().unwrap();
            let got = if deflate { unzlib(&got) } else { got };
            assert!(got == data, "upload differs (deflate {deflate})");
            if deflate {
                assert!(r.wire_bytes < r.bytes / 2, "{r:?}");
            }
        }
    }

    #[test]
    fn a_cancelled_download_stops() {
        let (server, client) = pair();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = Duration::from_secs(5);
        let sess = server.session();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let srv = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut d = sess.accept_data(s, false, t).unwrap();
            // Some bytes, then silence until the client has given up (or, should it not
            // notice the cancellation, the end of the stream after a while).
            d.write_all(&[7u8; 100_000]).unwrap();
            let _ = wait.recv_timeout(Duration::from_secs(20));
            let _ = d.finish();
        });
        let cancel = gridos_io::CancelToken::new();
        let progress = Arc::new(AtomicU64::new(0));
        let opts = TransferOptions {
            cancel: Some(cancel.clone()),
            progress: Some(progress.clone()),
            ..TransferOptions::default()
        };
        let canceller = {
            let cancel = cancel.clone();
            std::thread::spawn(move || {
                while progress.load(Ordering::Relaxed) == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
                cancel.cancel();
            })
        };
        let file = tempfile::tempfile().unwrap();
        let s = client
            .connect("127.0.0.1", TcpStream::connect(addr).unwrap(), t)
            .unwrap();
        let e = recv(s, &file, 0, false, &opts).unwrap_err();
        assert!(matches!(e, gridos_io::Error::Cancelled { .. }), "{e:?}");
        drop(go);
        canceller.join().unwrap();
        srv.join().unwrap();
    }
}
