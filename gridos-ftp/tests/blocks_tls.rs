//! MODE E over TLS data connections (`PROT P`), at the level of `gridos_ftp::blocks`: real
//! loopback sockets with rustls on both ends (a CA and a server certificate made here with
//! rcgen), files of random bytes checked by SHA-256.
//!
//! What is shown: one and four streams, block sizes from 4 KiB to several MiB (larger than a
//! TLS run), either end of the handshake sending; restarts that send only the missing
//! ranges; ERET-style shifted offsets; channels reused (with their TLS sessions) by the next
//! transfer, also when the next transfer's blocks arrive early; parallel streams accepted and
//! made TLS during a receive, strangers that fail their handshake turned away; cancellation
//! of a stalled receive, of a blocked send and of a pending handshake; garbage, truncated
//! blocks and headers; data after EOD under `strict_eod`; listings and the sender-closes
//! flag.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use gridos_ftp::blocks::{self, Incoming, Outcome};
use gridos_ftp::proto::mode_e::{BlockHeader, ModeEReceiver, ModeESender};
use gridos_ftp::proto::{RangeSet, TransferError};
use gridos_ftp::tls::{ClientTls, ClientTlsOptions, DataStream, Roots, ServerTls, SessionTls};
use gridos_io::{CancelToken, TransferOptions};
use sha2::{Digest, Sha256};

const T: Duration = Duration::from_secs(10);

/// Liveness guard for tests that wait on something that must end by itself: far longer than
/// any of them takes, so it only turns a hang into a failure.
const HANG: Duration = Duration::from_secs(60);

/// A CA, a server certificate for 127.0.0.1 signed by it, and both ends' TLS settings.
struct Pki {
    _dir: tempfile::TempDir,
    server: ServerTls,
    client: ClientTls,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "blocks_tls test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_pem, key_pem, ca_pem) = (
        dir.path().join("server.pem"),
        dir.path().join("server.key"),
        dir.path().join("ca.pem"),
    );
    std::fs::write(&cert_pem, cert.pem()).unwrap();
    std::fs::write(&key_pem, key.serialize_pem()).unwrap();
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    let server = ServerTls::from_pem_files(&cert_pem, &key_pem, None).unwrap();
    let mut opts = ClientTlsOptions::default();
    opts.roots = Roots::File(ca_pem);
    let client = ClientTls::new(&opts).unwrap();
    Pki {
        _dir: dir,
        server,
        client,
    }
}

/// `n` TLS connections over loopback: (client ends, server ends).
fn pairs(p: &Pki, n: usize) -> (Vec<DataStream>, Vec<DataStream>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let sess = p.server.session();
    let srv = std::thread::spawn(move || {
        (0..n)
            .map(|_| {
                let (s, _) = l.accept().unwrap();
                sess.accept_data(s, false, T).unwrap()
            })
            .collect::<Vec<_>>()
    });
    let clients = (0..n)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            s.set_nodelay(true).unwrap();
            let ds = p.client.connect("127.0.0.1", s, T).unwrap();
            assert!(ds.is_tls());
            ds
        })
        .collect();
    (clients, srv.join().unwrap())
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

fn sha(b: &[u8]) -> String {
    format!("{:x}", Sha256::digest(b))
}

/// A file holding `bytes` (kept alive by the returned tempfile).
fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
    let mut t = tempfile::NamedTempFile::new().unwrap();
    t.write_all(bytes).unwrap();
    t.flush().unwrap();
    let f = File::open(t.path()).unwrap();
    (t, f)
}

fn empty_file() -> (tempfile::NamedTempFile, File) {
    let t = tempfile::NamedTempFile::new().unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(t.path())
        .unwrap();
    (t, f)
}

fn contents(f: &File) -> Vec<u8> {
    let mut v = Vec::new();
    let mut r = f.try_clone().unwrap();
    std::io::Seek::seek(&mut r, std::io::SeekFrom::Start(0)).unwrap();
    r.read_to_end(&mut v).unwrap();
    v
}

fn whole(len: u64) -> RangeSet {
    let mut r = RangeSet::new();
    r.insert(0, len);
    r
}

fn send_job(ranges: RangeSet, block: u64) -> blocks::Send {
    blocks::Send {
        ranges,
        shift: 0,
        block_size: block,
        close: false,
        opts: TransferOptions::default(),
    }
}

fn recv_job(rx: ModeEReceiver, strict: bool) -> blocks::Recv {
    blocks::Recv {
        rx: Arc::new(Mutex::new(rx)),
        opts: TransferOptions::default(),
        max_streams: 64,
        strict_eod: strict,
        before_gap: None,
    }
}

/// Sends `job` of `src` over `tx` on a thread while `dst` receives from `rx`.
fn transfer(
    src: &File,
    job: &blocks::Send,
    tx: Vec<DataStream>,
    dst: &File,
    rjob: &blocks::Recv,
    rx: Vec<DataStream>,
) -> (
    Result<Outcome, TransferError>,
    Result<Outcome, TransferError>,
) {
    std::thread::scope(|s| {
        let sender = s.spawn(|| blocks::send(src, job, tx));
        let got = blocks::recv(dst, rjob, rx, None);
        (sender.join().unwrap(), got)
    })
}

#[test]
fn one_and_four_streams_and_mixed_block_sizes_arrive_whole() {
    let p = pki();
    let data = random_bytes(5 << 20, 1);
    let (_s, src) = file_with(&data);
    // (streams, block size, the TLS client sends)
    let cases = [
        (1, 1 << 20, true),
        (4, 1 << 20, true),
        (4, 4096, false),
        (1, 100_000, false),
        (4, 3 << 20, true),
        (2, (1 << 20) + 17, false),
    ];
    for (n, block, client_sends) in cases {
        let (c, s) = pairs(&p, n);
        let (tx, rx) = if client_sends { (c, s) } else { (s, c) };
        let (_d, dst) = empty_file();
        let job = send_job(whole(data.len() as u64), block);
        let rjob = recv_job(ModeEReceiver::new(None), true);
        let (sent, got) = transfer(&src, &job, tx, &dst, &rjob, rx);
        let (sent, got) = (sent.unwrap(), got.unwrap());
        assert_eq!(sent.bytes, data.len() as u64, "{n} streams, block {block}");
        assert_eq!(got.bytes, data.len() as u64, "{n} streams, block {block}");
        assert_eq!(
            sha(&contents(&dst)),
            sha(&data),
            "{n} streams, block {block}"
        );
        // Every stream ended with EOD and stays open on both ends, still TLS.
        assert_eq!(sent.channels.len(), n);
        assert_eq!(got.channels.len(), n);
        assert!(
            got.channels
                .iter()
                .chain(&sent.channels)
                .all(DataStream::is_tls)
        );
    }
}

#[test]
fn a_restart_sends_only_the_missing_ranges() {
    let p = pki();
    let data = random_bytes(3 << 20, 2);
    let size = data.len() as u64;
    let (_s, src) = file_with(&data);
    let (_d, dst) = empty_file();
    // The receiver holds two ranges already (an earlier, interrupted transfer).
    let mut have = RangeSet::new();
    for (a, b) in [(0u64, 700_000u64), (1_500_000, 2_000_123)] {
        dst.write_all_at(&data[a as usize..b as usize], a).unwrap();
        have.insert(a, b);
    }
    let missing = have.missing(size);
    let (c, s) = pairs(&p, 3);
    let job = send_job(missing.clone(), 256 << 10);
    let mut rx = ModeEReceiver::new(None);
    rx.import_restart(&have);
    let rjob = recv_job(rx, true);
    let (sent, got) = transfer(&src, &job, c, &dst, &rjob, s);
    assert_eq!(sent.unwrap().bytes, missing.total());
    assert_eq!(got.unwrap().bytes, missing.total());
    assert_eq!(sha(&contents(&dst)), sha(&data));
    assert!(rjob.rx.lock().unwrap().received().covers(0, size));
}

#[test]
fn eret_shifted_offsets_land_at_the_start() {
    let p = pki();
    let data = random_bytes(4 << 20, 3);
    let (_s, src) = file_with(&data);
    let (_d, dst) = empty_file();
    let (off, len) = (1_234_567u64, 2_000_001u64);
    let mut ranges = RangeSet::new();
    ranges.insert(off, off + len);
    let job = blocks::Send {
        shift: off,
        ..send_job(ranges, 1 << 20)
    };
    let rjob = recv_job(ModeEReceiver::new(Some(len)), true);
    let (s, c) = pairs(&p, 2);
    let (sent, got) = transfer(&src, &job, s, &dst, &rjob, c);
    assert_eq!(sent.unwrap().bytes, len);
    assert_eq!(got.unwrap().bytes, len);
    let want = &data[off as usize..(off + len) as usize];
    assert_eq!(sha(&contents(&dst)), sha(want));
}

#[test]
fn channels_carry_the_next_transfer_with_their_sessions() {
    let p = pki();
    let first = random_bytes((2 << 20) + 5, 4);
    let second = random_bytes(777_777, 5);
    let (_a, f1) = file_with(&first);
    let (_b, f2) = file_with(&second);
    let (c, s) = pairs(&p, 4);
    let (_x, d1) = empty_file();
    let (sent, got) = transfer(
        &f1,
        &send_job(whole(first.len() as u64), 300_000),
        c,
        &d1,
        &recv_job(ModeEReceiver::new(None), true),
        s,
    );
    let (sent, got) = (sent.unwrap(), got.unwrap());
    assert_eq!(sha(&contents(&d1)), sha(&first));
    // The same TLS streams, the next file.
    let (_y, d2) = empty_file();
    let (sent2, got2) = transfer(
        &f2,
        &send_job(whole(second.len() as u64), 64 << 10),
        sent.channels,
        &d2,
        &recv_job(ModeEReceiver::new(None), true),
        got.channels,
    );
    let (sent2, got2) = (sent2.unwrap(), got2.unwrap());
    assert_eq!(sha(&contents(&d2)), sha(&second));
    assert_eq!((sent2.channels.len(), got2.channels.len()), (4, 4));
    // And the other way round on them.
    let (_z, d3) = empty_file();
    let (back, got3) = transfer(
        &f1,
        &send_job(whole(first.len() as u64), 1 << 20),
        got2.channels,
        &d3,
        &recv_job(ModeEReceiver::new(None), true),
        sent2.channels,
    );
    back.unwrap();
    got3.unwrap();
    assert_eq!(sha(&contents(&d3)), sha(&first));
}

/// Pipelined small files: the sender starts each transfer as soon as the last one is sent,
/// so a file's blocks often arrive (and are decrypted) while the receiver still finishes the
/// one before. They must be kept with the connection, not lost with a transfer's buffers.
#[test]
fn early_blocks_of_the_next_transfer_are_kept() {
    let p = pki();
    let files: Vec<Vec<u8>> = (0..12)
        .map(|i| random_bytes(1000 + i * 37_001, 10 + i as u64))
        .collect();
    let srcs: Vec<_> = files.iter().map(|f| file_with(f)).collect();
    let dsts: Vec<_> = files.iter().map(|_| empty_file()).collect();
    for n in [1, 2] {
        let (c, s) = pairs(&p, n);
        std::thread::scope(|sc| {
            let sender = sc.spawn(|| {
                let mut ch = c;
                for ((_, f), data) in srcs.iter().zip(&files) {
                    let out =
                        blocks::send(f, &send_job(whole(data.len() as u64), 16 << 10), ch).unwrap();
                    ch = out.channels;
                }
                // Kept open until joined: closing them with the server's unread session
                // tickets would reset them under the receiver's feet.
                ch
            });
            let mut ch = s;
            for ((_, d), data) in dsts.iter().zip(&files) {
                let out =
                    blocks::recv(d, &recv_job(ModeEReceiver::new(None), false), ch, None).unwrap();
                assert_eq!(out.bytes, data.len() as u64);
                ch = out.channels;
            }
            assert_eq!(ch.len(), n);
            sender.join().unwrap();
        });
        for ((_, d), data) in dsts.iter().zip(&files) {
            assert_eq!(sha(&contents(d)), sha(data), "{n} streams");
        }
    }
}

#[test]
fn accepted_streams_are_made_tls_and_strangers_turned_away() {
    let p = pki();
    let data = random_bytes(3 << 20, 6);
    let (_s, src) = file_with(&data);
    let (_d, dst) = empty_file();
    let sess: SessionTls = p.server.session();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    // A control connection first, so the client holds tickets of this session.
    let ctrl_l = TcpListener::bind("127.0.0.1:0").unwrap();
    let ctrl_addr = ctrl_l.local_addr().unwrap();
    let ctrl_sess = sess.clone();
    let ctrl = std::thread::spawn(move || {
        let (s, _) = ctrl_l.accept().unwrap();
        let mut d = ctrl_sess.accept_control(s, T).unwrap();
        let mut b = [0u8; 2];
        d.read_exact(&mut b).unwrap();
        d.write_all(b"ok").unwrap();
        d.flush().unwrap();
        d
    });
    let mut c = p
        .client
        .connect("127.0.0.1", TcpStream::connect(ctrl_addr).unwrap(), T)
        .unwrap();
    c.write_all(b"hi").unwrap();
    let mut b = [0u8; 2];
    c.read_exact(&mut b).unwrap();
    let _server_ctrl = ctrl.join().unwrap();

    let refused = AtomicU64::new(0);
    let protect = |s: TcpStream| {
        sess.accept_data(s, true, T)
            .map_err(|e| TransferError::CannotOpenData(e.to_string()))
    };
    let rjob = recv_job(ModeEReceiver::new(None), true);
    std::thread::scope(|sc| {
        let receiver = sc.spawn(|| {
            blocks::recv(
                &dst,
                &rjob,
                Vec::new(),
                Some(Incoming {
                    listener: &l,
                    allow: None,
                    refused: Some(&refused),
                    timeout: T,
                    protect: Some(&protect),
                }),
            )
        });
        // A stranger speaking clear text, and one with TLS that does not resume the session:
        // both are cut (seen as the end of their connections) and counted.
        let mut plain = TcpStream::connect(addr).unwrap();
        plain.write_all(b"USER root\r\n").unwrap();
        let mut sink = Vec::new();
        let _ = plain.read_to_end(&mut sink);
        let mut cfg = ClientTlsOptions::default();
        cfg.roots = Roots::Insecure;
        let other = ClientTls::new(&cfg).unwrap();
        if let Ok(mut s) = other.connect("127.0.0.1", TcpStream::connect(addr).unwrap(), T) {
            let _ = s.write_all(b"xx");
            let _ = s.read_to_end(&mut sink);
        }
        while refused.load(Ordering::Relaxed) < 2 {
            std::thread::sleep(Duration::from_millis(5));
        }
        // The client's own streams: they resume its session and are accepted.
        let socks: Vec<DataStream> = (0..4)
            .map(|_| {
                p.client
                    .connect("127.0.0.1", TcpStream::connect(addr).unwrap(), T)
                    .unwrap()
            })
            .collect();
        let sent = blocks::send(&src, &send_job(whole(data.len() as u64), 512 << 10), socks);
        // (Kept open until the receiver is done, as a client keeps them until the 226.)
        let sent = sent.unwrap();
        assert_eq!(sent.channels.len(), 4);
        let got = receiver.join().unwrap().unwrap();
        assert_eq!(got.channels.len(), 4);
        assert!(got.channels.iter().all(DataStream::is_tls));
    });
    assert_eq!(refused.load(Ordering::Relaxed), 2);
    assert_eq!(sha(&contents(&dst)), sha(&data));
}

/// Runs `f` on a thread; fails the test if it has not returned after [`HANG`].
fn within_hang_guard<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(HANG)
        .expect("the transfer did not return after cancellation")
}

#[test]
fn cancelling_a_stalled_receive_aborts_it() {
    let p = pki();
    let (mut c, s) = pairs(&p, 1);
    let cancel = CancelToken::new();
    let progress = Arc::new(AtomicU64::new(0));
    let (c2, p2) = (cancel.clone(), Arc::clone(&progress));
    let rx = within_hang_guard(move || {
        let (_d, dst) = empty_file();
        let job = blocks::Recv {
            opts: TransferOptions {
                cancel: Some(c2),
                progress: Some(p2),
                ..Default::default()
            },
            ..recv_job(ModeEReceiver::new(None), true)
        };
        let helper = std::thread::spawn({
            // A block promising 4 MiB of which 600 KB come; then the sender stalls.
            let cancel = cancel.clone();
            let progress = Arc::clone(&progress);
            move || {
                let mut w = c.remove(0);
                w.write_all(&BlockHeader::data(0, 4 << 20).encode())
                    .unwrap();
                w.write_all(&random_bytes(600_000, 7)).unwrap();
                w.flush().unwrap();
                while progress.load(Ordering::Relaxed) == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
                cancel.cancel();
                w
            }
        });
        let r = blocks::recv(&dst, &job, s, None);
        let _peer = helper.join().unwrap();
        r
    });
    assert_eq!(rx.unwrap_err(), TransferError::Aborted);
}

#[test]
fn cancelling_a_blocked_send_aborts_it() {
    let p = pki();
    for n in [1, 3] {
        let (c, s) = pairs(&p, n);
        let cancel = CancelToken::new();
        let progress = Arc::new(AtomicU64::new(0));
        let (c2, p2) = (cancel.clone(), Arc::clone(&progress));
        let r = within_hang_guard(move || {
            // Nobody reads: the socket buffers fill and the sender blocks.
            let data = random_bytes(32 << 20, 8);
            let (_f, src) = file_with(&data);
            let job = blocks::Send {
                opts: TransferOptions {
                    cancel: Some(c2),
                    progress: Some(p2),
                    ..Default::default()
                },
                ..send_job(whole(data.len() as u64), 1 << 20)
            };
            let canceller = std::thread::spawn(move || {
                while progress.load(Ordering::Relaxed) == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
                std::thread::sleep(Duration::from_millis(100));
                cancel.cancel();
            });
            let r = blocks::send(&src, &job, c);
            canceller.join().unwrap();
            drop(s);
            r
        });
        assert_eq!(r.unwrap_err(), TransferError::Aborted, "{n} streams");
    }
}

#[test]
fn cancelling_cuts_a_pending_handshake() {
    let p = pki();
    let sess = p.server.session();
    let cancel = CancelToken::new();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    // A connection that never says a word: its handshake would wait for ten minutes.
    let _silent = TcpStream::connect(addr).unwrap();
    let c2 = cancel.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        c2.cancel();
    });
    let r = within_hang_guard(move || {
        let (_d, dst) = empty_file();
        let protect = move |s: TcpStream| {
            sess.accept_data(s, false, Duration::from_secs(600))
                .map_err(|e| TransferError::CannotOpenData(e.to_string()))
        };
        let job = blocks::Recv {
            opts: TransferOptions {
                cancel: Some(cancel),
                ..Default::default()
            },
            ..recv_job(ModeEReceiver::new(None), true)
        };
        blocks::recv(
            &dst,
            &job,
            Vec::new(),
            Some(Incoming {
                listener: &l,
                allow: None,
                refused: None,
                timeout: Duration::from_secs(600),
                protect: Some(&protect),
            }),
        )
    });
    canceller.join().unwrap();
    assert_eq!(r.unwrap_err(), TransferError::Aborted);
}

/// Receives (one stream) what `feed` writes on the TLS client ends; the client ends stay
/// open until the receive has returned (closing a socket with unread bytes, the server's
/// session tickets say, would reset the connection and race with the bytes sent).
fn receive_with(
    p: &Pki,
    n: usize,
    strict: bool,
    feed: impl FnOnce(&mut [DataStream]) + Send,
) -> (Result<Outcome, TransferError>, Vec<u8>) {
    let (mut c, s) = pairs(p, n);
    let (_d, dst) = empty_file();
    let job = recv_job(ModeEReceiver::new(None), strict);
    let (done, wait) = mpsc::channel::<()>();
    let r = std::thread::scope(|sc| {
        sc.spawn(move || {
            feed(&mut c);
            let _ = wait.recv();
        });
        let r = blocks::recv(&dst, &job, s, None);
        drop(done);
        r
    });
    (r, contents(&dst))
}

fn receive_from(
    p: &Pki,
    feed: impl FnOnce(&mut DataStream) + Send,
) -> Result<Outcome, TransferError> {
    receive_with(p, 1, true, |c| feed(&mut c[0])).0
}

fn bad_data(r: &Result<Outcome, TransferError>) -> bool {
    matches!(r, Err(TransferError::BadData(_)))
}

fn closed(r: &Result<Outcome, TransferError>) -> bool {
    matches!(r, Err(TransferError::ConnectionClosed(_)))
}

#[test]
fn garbage_and_truncation_are_errors_not_panics() {
    let p = pki();
    // Bytes that are no TLS record at all, under the TLS session.
    let r = receive_from(&p, |ds| {
        let _ = ds
            .tcp()
            .write_all(b"\x17\x03\x03\x00\x20this is not an encrypted record.");
    });
    assert!(bad_data(&r), "{r:?}");
    // A block cut short, with close_notify and without.
    let r = receive_from(&p, |ds| {
        ds.write_all(&BlockHeader::data(0, 1 << 20).encode())
            .unwrap();
        ds.write_all(&random_bytes(200_000, 9)).unwrap();
        ds.finish().unwrap();
    });
    assert!(closed(&r), "{r:?}");
    let r = receive_from(&p, |ds| {
        ds.write_all(&BlockHeader::data(0, 1 << 20).encode())
            .unwrap();
        ds.write_all(&random_bytes(300_000, 9)).unwrap();
        ds.flush().unwrap();
        let _ = ds.tcp().shutdown(std::net::Shutdown::Write);
    });
    assert!(closed(&r), "{r:?}");
    // Half a header.
    let r = receive_from(&p, |ds| {
        ds.write_all(&BlockHeader::data(0, 10).encode()[..9])
            .unwrap();
        ds.finish().unwrap();
    });
    assert!(bad_data(&r), "{r:?}");
    // A well-encrypted but impossible block (offset + count past u64).
    let r = receive_from(&p, |ds| {
        ds.write_all(&BlockHeader::data(u64::MAX - 5, 100).encode())
            .unwrap();
        ds.write_all(&[0u8; 100]).unwrap();
        ds.flush().unwrap();
    });
    assert!(bad_data(&r), "{r:?}");
    // A connection that closes before it sent any block (an unused cached channel) while
    // the transfer it was meant for never completes.
    let r = receive_from(&p, |ds| ds.finish().unwrap());
    assert!(closed(&r), "{r:?}");
}

/// One stream's blocks of `payload` (all of it on stream 0) with its final block, then
/// `stray`, as one plaintext run: one TLS record, so the stray bytes are decrypted together
/// with the EOD block and wait in rustls when the transfer completes.
fn run_with_stray(payload: &[u8], streams: usize, i: usize, stray: &[u8]) -> Vec<u8> {
    let planner = ModeESender::new(&whole(payload.len() as u64), streams, 1 << 20).unwrap();
    let mut run = Vec::new();
    if i == 0 {
        run.extend_from_slice(&BlockHeader::data(0, payload.len() as u64).encode());
        run.extend_from_slice(payload);
    }
    run.extend_from_slice(&planner.final_block(i, false).encode());
    run.extend_from_slice(stray);
    run
}

#[test]
fn strict_eod_refuses_data_after_eod() {
    let p = pki();
    let payload = random_bytes(5000, 11);
    let send = |c: &mut [DataStream], stray_on: usize| {
        let n = c.len();
        for (i, ds) in c.iter_mut().enumerate() {
            let stray: &[u8] = if i == stray_on {
                b"next transfer's data, far too early"
            } else {
                b""
            };
            ds.write_all(&run_with_stray(&payload, n, i, stray))
                .unwrap();
            ds.flush().unwrap();
        }
    };
    // One stream (received on the caller's thread), then two (coordinated), stray bytes on
    // the last.
    for n in [1, 2] {
        let (r, _) = receive_with(&p, n, true, |c| send(c, n - 1));
        assert!(bad_data(&r), "{n} streams: {r:?}");
    }
    // Without strict_eod (a client) the same bytes wait for the next transfer.
    let (r, got) = receive_with(&p, 1, false, |c| send(c, 0));
    assert_eq!(r.unwrap().channels.len(), 1);
    assert_eq!(sha(&got), sha(&payload));
    // Control: the same runs without stray bytes pass the strict check.
    let (r, got) = receive_with(&p, 2, true, |c| send(c, usize::MAX));
    assert_eq!(r.unwrap().channels.len(), 2);
    assert_eq!(sha(&got), sha(&payload));
}

#[test]
fn listings_and_the_sender_closes_flag_end_with_close_notify() {
    let p = pki();
    let listing = random_bytes(300_000, 12);
    let (c, s) = pairs(&p, 2);
    let (_d, dst) = empty_file();
    let job = recv_job(ModeEReceiver::new(None), true);
    let (sent, got) = std::thread::scope(|sc| {
        let t = sc.spawn(|| blocks::send_bytes(&listing, s, true, &TransferOptions::default()));
        let got = blocks::recv(&dst, &job, c, None);
        (t.join().unwrap(), got)
    });
    assert_eq!(sent.unwrap().channels.len(), 0);
    assert_eq!(got.unwrap().channels.len(), 0);
    assert_eq!(sha(&contents(&dst)), sha(&listing));

    // A file with the close flag: the sender's streams end with close_notify, which the
    // receiver reads as a clean end (checked here with a raw reader on one of them).
    let data = random_bytes(1 << 20, 13);
    let (_f, src) = file_with(&data);
    let (c, mut s) = pairs(&p, 1);
    let job = blocks::Send {
        close: true,
        ..send_job(whole(data.len() as u64), 1 << 20)
    };
    let sent = blocks::send(&src, &job, c).unwrap();
    assert!(sent.channels.is_empty());
    let mut all = Vec::new();
    s[0].read_to_end(&mut all)
        .expect("the stream ends with close_notify");
    assert_eq!(all.len(), data.len() + 2 * 17);
    assert_eq!(&all[17..17 + data.len()], &data[..]);
}
