//! gridos-io's buffer monitor on an emulated long path: a transfer that starts with a small,
//! locked send buffer is seen to be send-buffer limited in TCP_INFO and the monitor raises
//! SO_SNDBUF while it runs. Root only (network namespaces, and SO_SNDBUFFORCE).

use gridos_benches::wan::{Side, Wan, WanParams};
use gridos_io::tune::TuneAction;
use gridos_io::{BufferOpt, BufferOptName, GridSocket, TransferOptions};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

#[test]
fn monitor_raises_a_send_buffer_limited_transfer_on_a_long_path() {
    if !nix::unistd::geteuid().is_root() {
        println!("skipping: needs root (network namespaces, SO_SNDBUFFORCE)");
        return;
    }
    let wan = Wan::start(WanParams {
        delay: Duration::from_millis(10),
        rate_bits_per_sec: 1_000_000_000,
        mtu: 9000,
        ..WanParams::default()
    })
    .expect("start the emulator");
    let listener = wan
        .run_in(Side::Server, || TcpListener::bind((wan.server_addr(), 0)))
        .unwrap()
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let size = 48u64 << 20;
    let receiver = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let sink = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .unwrap();
        gridos_io::recv_file(
            &s,
            &sink,
            0,
            Some(size),
            &TransferOptions {
                auto_tune: Some(false),
                ..Default::default()
            },
        )
    });
    let sock = wan
        .run_in(Side::Client, || TcpStream::connect(addr))
        .unwrap()
        .unwrap();
    let sock = GridSocket::from(sock);
    sock.buffer_setopt(BufferOpt::SendBuffer(64 << 10)).unwrap();
    let before = sock.buffer_getopt(BufferOptName::SendBuffer).unwrap();
    let mut src = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut src, &vec![0x5a; size as usize]).unwrap();
    let opts = TransferOptions {
        auto_tune: Some(true),
        ..Default::default()
    };
    let report = sock.send_file(&src, 0, size, &opts).unwrap();
    assert_eq!(report.bytes, size);
    assert_eq!(receiver.join().unwrap().unwrap().bytes, size);
    for d in &report.decisions {
        println!("decision: {d:?}");
    }
    println!(
        "SO_SNDBUF {before} -> {:?}; {} bytes in {:?}",
        report.sndbuf, report.bytes, report.elapsed
    );
    let raises: Vec<_> = report
        .decisions
        .iter()
        .filter(|d| matches!(d.action, TuneAction::RaiseSndbuf { .. }))
        .collect();
    assert!(
        !raises.is_empty(),
        "no SO_SNDBUF raise; decisions: {:?}",
        report.decisions
    );
    for d in &raises {
        assert!(
            d.sndbuf_limited_permille > 100,
            "raise without send-buffer limitation: {d:?}"
        );
        assert!(d.rtt_us >= 20_000, "the decision saw the path's RTT: {d:?}");
    }
    let after = report.sndbuf.unwrap();
    assert!(after > before, "SO_SNDBUF {before} → {after}");
}
