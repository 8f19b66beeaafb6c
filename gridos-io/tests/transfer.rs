//! Loopback transfers through each of the three paths, checked by SHA-256.

mod common;
use common::*;
use gridos_io::{CancelToken, Error, IoPath, TransferOptions, recv_file, send_file};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Options forcing `path` whose cancel token fires after `ms` milliseconds; join the thread
/// once the transfer returned.
fn cancelled_after(path: IoPath, ms: u64) -> (TransferOptions, std::thread::JoinHandle<()>) {
    let token = CancelToken::new();
    let t2 = token.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(ms));
        t2.cancel();
    });
    let opts = TransferOptions {
        path: Some(path),
        cancel: Some(token),
        ..Default::default()
    };
    (opts, canceller)
}

fn forced(path: IoPath) -> TransferOptions {
    TransferOptions {
        path: Some(path),
        ..Default::default()
    }
}

/// Sends `data[offset..offset+len]` with `send_path` and receives it at `dst_off` with
/// `recv_path`; checks the bytes and that the rest of the destination is untouched.
fn round_trip(
    data: &[u8],
    offset: u64,
    len: u64,
    dst_off: u64,
    send_path: IoPath,
    recv_path: IoPath,
    known_len: bool,
) {
    let src = file_with(data);
    let mut dst = file_with(&vec![0xEEu8; dst_off as usize]);
    let (c, s) = pair();
    let sender = std::thread::spawn(move || {
        let r = send_file(&src, offset, len, &c, &forced(send_path));
        drop(c);
        r
    });
    let got = recv_file(
        &s,
        &dst,
        dst_off,
        known_len.then_some(len),
        &forced(recv_path),
    )
    .unwrap();
    let sent = sender.join().unwrap().unwrap();
    assert_eq!((sent.bytes, got.bytes), (len, len));
    assert_eq!((sent.path, got.path), (send_path, recv_path));
    let want = &data[offset as usize..(offset + len) as usize];
    assert_eq!(
        file_sha(&mut dst, dst_off, len),
        sha(want),
        "{send_path} → {recv_path}"
    );
    assert_eq!(dst.metadata().unwrap().len(), dst_off + len);
    if dst_off > 0 {
        let mut head = vec![0u8; dst_off as usize];
        dst.read_exact_at(&mut head, 0).unwrap();
        assert!(
            head.iter().all(|&b| b == 0xEE),
            "bytes before the offset were touched"
        );
    }
}

#[test]
fn every_path_moves_bytes_exactly_both_ways() {
    let data = pattern(3 * 1024 * 1024 + 12_345, 1);
    for path in IoPath::ALL {
        assert!(
            path.is_available(),
            "{path} should be available on this kernel"
        );
        for (offset, len, dst_off) in [
            (0, 0, 0),
            (0, 1, 0),
            (17, 1_000_003, 4095),
            (0, data.len() as u64, 0),
        ] {
            round_trip(&data, offset, len, dst_off, path, path, true);
            round_trip(&data, offset, len, dst_off, path, path, false);
        }
    }
}

#[test]
fn paths_interoperate() {
    let data = pattern(2 * 1024 * 1024 + 1, 2);
    for a in IoPath::ALL {
        for b in IoPath::ALL {
            round_trip(&data, 5, data.len() as u64 - 5, 3, a, b, true);
        }
    }
}

#[test]
fn large_transfer_through_the_uring_path() {
    let data = pattern(96 * 1024 * 1024 + 7, 3);
    round_trip(
        &data,
        0,
        data.len() as u64,
        0,
        IoPath::Uring,
        IoPath::Uring,
        true,
    );
}

/// Cancels a receive once `cut` bytes arrived, then resumes at the reported offset on a new
/// connection; the final file is byte-identical.
fn cancel_and_resume(path: IoPath) {
    let data = pattern(48 * 1024 * 1024, 4);
    let src = Arc::new(file_with(&data));
    let mut dst = tempfile::tempfile().unwrap();
    let (c, s) = pair();
    let token = CancelToken::new();
    let progress = Arc::new(AtomicU64::new(0));
    let src1 = Arc::clone(&src);
    let total = data.len() as u64;
    let sender = std::thread::spawn(move || send_file(&src1, 0, total, &c, &forced(path)));
    let watcher = {
        let (token, progress) = (token.clone(), Arc::clone(&progress));
        std::thread::spawn(move || {
            while progress.load(Ordering::Relaxed) < 4 * 1024 * 1024 {
                std::thread::yield_now();
            }
            token.cancel();
        })
    };
    let opts = TransferOptions {
        path: Some(path),
        cancel: Some(token),
        progress: Some(progress),
        ..Default::default()
    };
    let err = recv_file(&s, &dst, 0, Some(total), &opts).unwrap_err();
    watcher.join().unwrap();
    let Error::Cancelled { moved } = err else {
        panic!("{path}: expected Cancelled, got {err:?}")
    };
    assert!(
        moved >= 4 * 1024 * 1024 && moved < total,
        "{path}: cancelled at {moved}"
    );
    drop(s);
    // The sender sees the connection go away: a typed error, not a panic or a hang.
    let send_err = sender.join().unwrap().unwrap_err();
    assert!(
        matches!(send_err, Error::PeerReset { .. }),
        "{path}: sender got {send_err:?}"
    );
    // Resume from `moved` on a fresh connection.
    let (c, s) = pair();
    let src2 = Arc::clone(&src);
    let sender =
        std::thread::spawn(move || send_file(&src2, moved, total - moved, &c, &forced(path)));
    let got = recv_file(&s, &dst, moved, Some(total - moved), &forced(path)).unwrap();
    sender.join().unwrap().unwrap();
    assert_eq!(got.bytes, total - moved);
    assert_eq!(
        file_sha(&mut dst, 0, total),
        sha(&data),
        "{path}: resumed file differs"
    );
}

#[test]
fn cancel_midway_and_resume_uring() {
    cancel_and_resume(IoPath::Uring);
}

#[test]
fn cancel_midway_and_resume_splice() {
    cancel_and_resume(IoPath::Splice);
}

#[test]
fn cancel_midway_and_resume_read_write() {
    cancel_and_resume(IoPath::ReadWrite);
}

#[test]
fn cancel_unblocks_a_receive_from_a_silent_peer() {
    for path in IoPath::ALL {
        let (_c, s) = pair();
        let dst = tempfile::tempfile().unwrap();
        let start = Instant::now();
        let (opts, canceller) = cancelled_after(path, 200);
        let err = recv_file(&s, &dst, 0, Some(10), &opts).unwrap_err();
        canceller.join().unwrap();
        assert!(
            matches!(err, Error::Cancelled { moved: 0 }),
            "{path}: {err:?}"
        );
        // Not a timing assertion on speed: only that the cancel was honoured at all.
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{path}: cancel not honoured"
        );
    }
}

#[test]
fn cancel_unblocks_a_send_to_a_peer_that_stops_reading() {
    let data = pattern(64 * 1024 * 1024, 5);
    for path in IoPath::ALL {
        let src = file_with(&data);
        let (c, _s) = pair(); // _s is never read: the socket buffers fill and the send blocks
        let (opts, canceller) = cancelled_after(path, 300);
        let err = send_file(&src, 0, data.len() as u64, &c, &opts).unwrap_err();
        canceller.join().unwrap();
        let Error::Cancelled { moved } = err else {
            panic!("{path}: {err:?}")
        };
        assert!(moved < data.len() as u64);
    }
}

#[test]
fn peer_closing_early_is_reported_with_the_bytes_that_arrived() {
    let data = pattern(100_000, 6);
    for path in IoPath::ALL {
        let src = file_with(&data);
        let dst = tempfile::tempfile().unwrap();
        let (c, s) = pair();
        let sender = std::thread::spawn(move || send_file(&src, 0, 100_000, &c, &forced(path)));
        sender.join().unwrap().unwrap();
        let err = recv_file(&s, &dst, 0, Some(200_000), &forced(path)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::PeerClosed {
                    moved: 100_000,
                    expected: 200_000
                }
            ),
            "{path}: {err:?}"
        );
        assert_eq!(err.bytes_moved(), Some(100_000));
    }
}

#[test]
fn reset_by_peer_is_a_typed_error() {
    let data = pattern(32 * 1024 * 1024, 7);
    for path in IoPath::ALL {
        let src = file_with(&data);
        let (c, s) = pair();
        // Close with unread data pending: the kernel answers with RST.
        let closer = std::thread::spawn(move || {
            let mut buf = [0u8; 1000];
            std::io::Read::read(&mut &s, &mut buf).unwrap();
            drop(s);
        });
        let err = send_file(&src, 0, data.len() as u64, &c, &forced(path)).unwrap_err();
        closer.join().unwrap();
        assert!(matches!(err, Error::PeerReset { .. }), "{path}: {err:?}");
    }
}

#[test]
fn ranges_outside_the_file_are_refused_before_sending() {
    let src = file_with(&pattern(1000, 8));
    let (c, _s) = pair();
    for (off, len) in [(1001, 0), (999, 2), (0, 1001), (u64::MAX, 2)] {
        let err = send_file(&src, off, len, &c, &TransferOptions::default()).unwrap_err();
        assert!(
            matches!(err, Error::OffsetPastEof { file_len: 1000, .. }),
            "{off}+{len}: {err:?}"
        );
    }
    // The empty range at the very end is valid.
    assert_eq!(
        send_file(&src, 1000, 0, &c, &TransferOptions::default())
            .unwrap()
            .bytes,
        0
    );
}

/// Unmounts a test tmpfs when dropped.
struct Mount(std::path::PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn full_disk_is_reported_as_no_space() {
    if !is_root() {
        eprintln!("SKIP full_disk_is_reported_as_no_space: needs root to mount a small tmpfs");
        return;
    }
    let dir = std::env::temp_dir().join(format!("gridos-full-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=256k"),
    )
    .unwrap();
    let mount = Mount(dir);
    let total = 2 * 1024 * 1024u64;
    let data = pattern(total as usize, 9);
    for path in IoPath::ALL {
        let target = mount.0.join(format!("out-{path}"));
        let dst = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&target)
            .unwrap();
        let src = file_with(&data);
        let (c, s) = pair();
        let sender = std::thread::spawn(move || send_file(&src, 0, total, &c, &forced(path)));
        let err = recv_file(&s, &dst, 0, Some(total), &forced(path)).unwrap_err();
        let Error::NoSpace { moved } = err else {
            panic!("{path}: {err:?}")
        };
        assert!(moved <= 256 * 1024, "{path}: {moved} bytes cannot fit");
        // What the error reports as committed is really there (writes past it may also have
        // landed when two were in flight; a resume at `moved` overwrites them).
        let mut head = vec![0u8; moved as usize];
        dst.read_exact_at(&mut head, 0).unwrap();
        assert_eq!(
            head,
            data[..moved as usize],
            "{path}: committed bytes differ"
        );
        drop(s);
        let _ = sender.join().unwrap();
        std::fs::remove_file(&target).unwrap();
    }
    // The read/write path on a character device that is always full.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let err = gridos_io::file_write(&full, 0, b"x").unwrap_err();
    assert!(matches!(err, Error::NoSpace { moved: 0 }), "{err:?}");
}

#[test]
fn stats_count_transfers_and_bytes() {
    let before = gridos_io::stats();
    round_trip(
        &pattern(10_000, 10),
        0,
        10_000,
        0,
        IoPath::Splice,
        IoPath::ReadWrite,
        true,
    );
    let after = gridos_io::stats();
    assert!(after.transfers_completed >= before.transfers_completed + 2);
    assert!(after.bytes_sent >= before.bytes_sent + 10_000);
    assert!(after.bytes_received >= before.bytes_received + 10_000);
    assert!(after.transfers_by_path[1] > before.transfers_by_path[1]);
    assert!(after.transfers_by_path[2] > before.transfers_by_path[2]);
    assert_eq!(after.probed_path, gridos_io::probe().name());
}

#[test]
fn prefixed_sends_put_the_header_before_the_payload_on_every_path() {
    let data = pattern(3 * 1024 * 1024 + 5, 11);
    let n = data.len() as u64 - 1;
    for path in IoPath::ALL {
        let src = file_with(&data);
        let (c, s) = pair();
        let header = [0x40u8, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1];
        let sender = std::thread::spawn(move || {
            gridos_io::send_file_prefixed(&header, &src, 1, n, &c, &forced(path))
        });
        let g = gridos_io::GridSocket::from(s);
        let mut got = [0u8; 17];
        g.sync_read_exact(&mut got).unwrap();
        assert_eq!(got, header);
        let mut dst = tempfile::tempfile().unwrap();
        g.recv_file(&dst, 0, Some(n), &forced(path)).unwrap();
        assert_eq!(sender.join().unwrap().unwrap().bytes, n);
        assert_eq!(file_sha(&mut dst, 0, n), sha(&data[1..]), "{path}");
    }
}

#[test]
fn a_socket_dropped_after_a_send_on_an_idle_io_thread_reaches_end_of_file() {
    // A socket dropped after a send on a pool thread must close at once, though the thread
    // then sits idle (see gridos-ftp/tests/many_small_retrs.rs for the case this guards).
    let pool = gridos_io::IoPool::new(1).unwrap();
    let data = pattern(1024, 15);
    for _ in 0..20 {
        let (c, s) = pair();
        let src = file_with(&data);
        pool.spawn(move || {
            send_file(&src, 0, 1024, &c, &forced(IoPath::Uring)).unwrap();
            drop(c);
        })
        .join()
        .unwrap();
        // The pool thread is idle now: the connection must be closed all the same. Receive
        // to end of file through the io_uring path, as an FTP client does.
        let mut dst = tempfile::tempfile().unwrap();
        let token = CancelToken::new();
        let t2 = token.clone();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if done_rx.recv_timeout(Duration::from_secs(10)).is_err() {
                t2.cancel();
            }
        });
        let opts = TransferOptions {
            path: Some(IoPath::Uring),
            cancel: Some(token),
            ..Default::default()
        };
        let got = recv_file(&s, &dst, 0, None, &opts);
        let _ = done_tx.send(());
        watchdog.join().unwrap();
        assert_eq!(got.expect("end of file, not a time-out").bytes, 1024);
        assert_eq!(file_sha(&mut dst, 0, 1024), sha(&data));
    }
}

/// A sender that writes uneven pieces with pauses between some of them: the receiver sees
/// partial reads, empty sockets while bytes still sit in its pipes, and bursts that arrive
/// while a file write is in flight. Every path must land the bytes exactly, with and without
/// a known length.
#[test]
fn uneven_bursts_and_pauses_land_exactly() {
    let data = pattern(6 * 1024 * 1024 + 4321, 11);
    for path in IoPath::ALL {
        for known_len in [true, false] {
            let (c, s) = pair();
            let dst = tempfile::tempfile().unwrap();
            let body = data.clone();
            let sender = std::thread::spawn(move || {
                let mut c = c;
                let mut at = 0usize;
                let mut i = 0usize;
                while at < body.len() {
                    // 1 byte, 3 KiB, 70 KiB, 1.5 MiB, repeating: small and large pieces.
                    let piece = [1, 3 << 10, 70 << 10, 3 << 19][i % 4].min(body.len() - at);
                    std::io::Write::write_all(&mut c, &body[at..at + piece]).unwrap();
                    at += piece;
                    if i % 3 == 0 {
                        std::thread::sleep(Duration::from_millis(3));
                    }
                    i += 1;
                }
            });
            let len = data.len() as u64;
            let got = recv_file(&s, &dst, 0, known_len.then_some(len), &forced(path)).unwrap();
            sender.join().unwrap();
            assert_eq!(got.bytes, len, "{path}");
            let mut dst = dst;
            assert_eq!(
                file_sha(&mut dst, 0, len),
                sha(&data),
                "{path} known_len={known_len}"
            );
        }
    }
}

/// A pipe as the destination (a FIFO a consumer reads, e.g. `gridos cp URL /path/to/fifo`):
/// every path writes the bytes in order; an offset other than 0 is refused up front.
#[test]
fn a_fifo_destination_receives_the_bytes_in_order() {
    let data = pattern(5 * 1024 * 1024 + 77, 13);
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for path in IoPath::ALL {
        for known_len in [true, false] {
            let reader_path = fifo.clone();
            let reader = std::thread::spawn(move || {
                let mut f = std::fs::File::open(reader_path).unwrap();
                let mut got = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut got).unwrap();
                got
            });
            let out = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            let (c, s) = pair();
            let body = data.clone();
            let sender = std::thread::spawn(move || {
                let mut c = c;
                std::io::Write::write_all(&mut c, &body).unwrap();
            });
            let len = data.len() as u64;
            let got = recv_file(&s, &out, 0, known_len.then_some(len), &forced(path)).unwrap();
            sender.join().unwrap();
            drop(out);
            assert_eq!(got.bytes, len, "{path}");
            assert!(
                reader.join().unwrap() == data,
                "{path} known_len={known_len}: bytes differ"
            );
        }
        // An offset on a pipe has no meaning: a typed error, nothing read from the socket.
        let reader_path = fifo.clone();
        let reader = std::thread::spawn(move || {
            let mut f = std::fs::File::open(reader_path).unwrap();
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut got).unwrap();
            got.len()
        });
        let out = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        let (_c, s) = pair();
        let err = recv_file(&s, &out, 10, Some(5), &forced(path)).unwrap_err();
        drop(out);
        assert!(matches!(err, Error::Io { .. }), "{path}: {err:?}");
        assert_eq!(reader.join().unwrap(), 0);
    }
}

/// A FIFO whose reader stops reading: every path's write waits (on an io-wq worker for
/// io_uring, in poll for the others), and a cancel still ends the transfer.
#[test]
fn cancel_unblocks_a_receive_into_a_stalled_fifo() {
    for path in IoPath::ALL {
        stalled_fifo(path);
    }
}

fn stalled_fifo(path: IoPath) {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // Held open and never read: the pipe fills and stays full.
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || std::fs::File::open(reader_path).unwrap());
    let out = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let stalled_reader = reader.join().unwrap();
    let (c, s) = pair();
    let data = pattern(16 * 1024 * 1024, 17);
    let sender = std::thread::spawn(move || {
        let mut c = c;
        let _ = std::io::Write::write_all(&mut c, &data);
    });
    let (opts, canceller) = cancelled_after(path, 300);
    let err = recv_file(&s, &out, 0, None, &opts).unwrap_err();
    canceller.join().unwrap();
    assert!(matches!(err, Error::Cancelled { .. }), "{path}: {err:?}");
    drop((s, out, stalled_reader));
    sender.join().unwrap();
}
