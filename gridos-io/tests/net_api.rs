//! The paper's network API, compression, and buffer tuning on real sockets.

mod common;
use common::*;
use gridos_io::compress::{Codec, Compression, recv_decompressed, send_compressed};
use gridos_io::tune::{BufferMethod, SysLimits, TunePolicy, plan};
use gridos_io::{BufferOpt, BufferOptName, Error, GridSocket, TransferOptions};
use std::io::Write;

#[test]
fn sync_async_read_and_write() {
    let (c, s) = pair();
    let (c, s) = (GridSocket::from(c), GridSocket::from(s));
    let mut buf = [0u8; 16];
    assert_eq!(s.async_read(&mut buf).unwrap(), None, "nothing sent yet");
    c.write(b"hello grid").unwrap();
    s.sync_read_exact(&mut buf[..10]).unwrap();
    assert_eq!(&buf[..10], b"hello grid");
    c.write(b"!").unwrap();
    assert_eq!(s.sync_read(&mut buf).unwrap(), 1);
    drop(c);
    assert_eq!(s.sync_read(&mut buf).unwrap(), 0, "EOF");
    assert_eq!(
        s.async_read(&mut buf).unwrap(),
        Some(0),
        "EOF without blocking"
    );
    let err = s.sync_read_exact(&mut buf).unwrap_err();
    assert!(matches!(
        err,
        Error::PeerClosed {
            moved: 0,
            expected: 16
        }
    ));
}

#[test]
fn buffer_options_are_applied_to_the_socket() {
    let (c, _s) = pair();
    let c = GridSocket::from(c);
    c.buffer_setopt(BufferOpt::SendBuffer(1 << 20)).unwrap();
    assert_eq!(
        c.buffer_getopt(BufferOptName::SendBuffer).unwrap(),
        2 << 20,
        "kernel doubles"
    );
    c.buffer_setopt(BufferOpt::RecvBuffer(512 << 10)).unwrap();
    assert_eq!(c.buffer_getopt(BufferOptName::RecvBuffer).unwrap(), 1 << 20);
    c.buffer_setopt(BufferOpt::AutoTune(false)).unwrap();
    assert_eq!(c.buffer_getopt(BufferOptName::AutoTune).unwrap(), 0);
    c.buffer_setopt(BufferOpt::MaxBuffer(4 << 20)).unwrap();
    assert!(
        c.buffer_setopt(BufferOpt::SendBuffer(3 << 20)).is_err(),
        "above the socket's max"
    );
    assert!(c.buffer_setopt(BufferOpt::MaxBuffer(10)).is_err());
    // Above net.core.wmem_max: forced when privileged, refused with a clear error otherwise.
    c.buffer_setopt(BufferOpt::MaxBuffer(1 << 30)).unwrap();
    let big = SysLimits::read().wmem_max + (1 << 20);
    match c.buffer_setopt(BufferOpt::SendBuffer(big)) {
        Ok(()) => {
            assert!(gridos_io::privileged());
            assert_eq!(c.buffer_getopt(BufferOptName::SendBuffer).unwrap(), 2 * big);
        }
        Err(e) => {
            assert!(!gridos_io::privileged());
            assert!(e.to_string().contains("CAP_NET_ADMIN"), "{e}");
        }
    }
}

#[test]
fn a_bdp_plan_is_applied_to_a_real_socket() {
    let (c, _s) = pair();
    let limits = SysLimits::read();
    let privileged = gridos_io::privileged();
    // 1 Gbit/s × 100 ms.
    let p = plan(
        12_500_000,
        &limits,
        &TunePolicy {
            max_buffer: 64 << 20,
            privileged,
            max_streams: 16,
        },
    );
    gridos_io::apply_plan(std::os::fd::AsFd::as_fd(&c), &p).unwrap();
    let c = GridSocket::from(c);
    let snd = c.buffer_getopt(BufferOptName::SendBuffer).unwrap();
    let rcv = c.buffer_getopt(BufferOptName::RecvBuffer).unwrap();
    for (setting, got) in [(p.send, snd), (p.recv, rcv)] {
        match setting.method {
            BufferMethod::Autotune => {}
            BufferMethod::Set | BufferMethod::Force => {
                assert_eq!(got, 2 * setting.request, "{p:?}")
            }
        }
    }
    if privileged {
        assert_eq!(p.send.method, BufferMethod::Force);
        assert!(snd > limits.wmem_max, "forced above wmem_max");
        assert_eq!(p.streams, 1);
    } else {
        assert!(p.streams >= 1);
    }
}

#[test]
fn gzip_and_deflate_round_trip() {
    let mut data = pattern(2_000_000, 31);
    data.extend(std::iter::repeat_n(b'g', 3_000_000)); // compressible tail
    for codec in [Codec::Gzip, Codec::Deflate, Codec::Zlib] {
        let src = file_with(&data);
        let mut dst = file_with(b"KEEP");
        let (c, s) = pair();
        let comp = Compression { codec, level: 6 };
        let len = data.len() as u64 - 10;
        let sender = std::thread::spawn(move || {
            send_compressed(&src, 10, len, &c, comp, &TransferOptions::default())
        });
        let got = recv_decompressed(&s, &dst, 4, comp, &TransferOptions::default()).unwrap();
        let sent = sender.join().unwrap().unwrap();
        assert_eq!(sent.bytes, len);
        assert_eq!(got.bytes, len);
        assert!(
            sent.wire_bytes < len,
            "{codec:?}: {} wire bytes for {len}",
            sent.wire_bytes
        );
        assert_eq!(got.wire_bytes, sent.wire_bytes);
        assert_eq!(file_sha(&mut dst, 4, len), sha(&data[10..]));
        assert_eq!(file_sha(&mut dst, 0, 4), sha(b"KEEP"));
    }
}

#[test]
fn corrupt_or_truncated_compressed_streams_are_errors() {
    let comp = Compression {
        codec: Codec::Gzip,
        level: 6,
    };
    // Garbage.
    let (mut c, s) = pair();
    c.write_all(b"this is not gzip at all, not even close")
        .unwrap();
    drop(c);
    let dst = tempfile::tempfile().unwrap();
    let err = recv_decompressed(&s, &dst, 0, comp, &TransferOptions::default()).unwrap_err();
    assert!(
        matches!(err, Error::Compression(_) | Error::PeerClosed { .. }),
        "{err:?}"
    );
    // A valid stream cut in half.
    let data = pattern(500_000, 32);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&data).unwrap();
    let bytes = enc.finish().unwrap();
    let (mut c, s) = pair();
    c.write_all(&bytes[..bytes.len() / 2]).unwrap();
    drop(c);
    let err = recv_decompressed(&s, &dst, 0, comp, &TransferOptions::default()).unwrap_err();
    assert!(
        matches!(err, Error::PeerClosed { .. } | Error::Compression(_)),
        "{err:?}"
    );
}

#[test]
fn buffer_limits_are_known_inside_a_chroot() {
    // A server that chroots (gridos ftpd started as root) has no /proc: the socket buffer
    // ceilings must then be measured, not guessed.
    if !is_root() {
        eprintln!("SKIP buffer_limits_are_known_inside_a_chroot: needs root to chroot");
        return;
    }
    let host = SysLimits::read();
    let empty = tempfile::tempdir().unwrap();
    let root = empty.path().to_path_buf();
    let inside = std::thread::spawn(move || {
        // A thread of its own file-system context, so only it is chrooted.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).unwrap();
        nix::unistd::chroot(&root).unwrap();
        assert!(!std::path::Path::new("/proc/sys/net/core/wmem_max").exists());
        SysLimits::read()
    })
    .join()
    .unwrap();
    assert_eq!(
        (inside.wmem_max, inside.rmem_max),
        (host.wmem_max, host.rmem_max)
    );
}
