//! WAN emulator tests: delay, intact delivery, counted drops, cleanup. Root only (they
//! create network namespaces); they skip with a message otherwise. Lower bounds on
//! delay are correctness checks; no test asserts speed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use gridos_benches::wan::{Side, Wan, WanError, WanParams};

fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        println!("skipping: the WAN emulator test needs root (network namespaces, TUN)");
        false
    }
}

fn gone(name: &str) -> bool {
    !Path::new("/run/netns").join(name).exists()
}

/// Deterministic pseudorandom bytes.
fn data(len: usize) -> Vec<u8> {
    let mut x = 0x1234_5678_9abc_def1u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn delays_and_delivers_intact() {
    if !root() {
        return;
    }
    let wan = Wan::start(WanParams {
        delay: Duration::from_millis(20),
        rate_bits_per_sec: 100_000_000,
        mtu: 1500,
        ..WanParams::default()
    })
    .expect("start the emulator");
    let names = [wan.client_ns().to_owned(), wan.server_ns().to_owned()];
    assert!(!gone(&names[0]) && !gone(&names[1]));

    let listener = wan
        .run_in(Side::Server, || TcpListener::bind((wan.server_addr(), 0)))
        .unwrap()
        .expect("bind in the server namespace");
    let addr: SocketAddr = listener.local_addr().unwrap();
    let receiver = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().expect("accept");
        let mut got = Vec::new();
        conn.read_to_end(&mut got).expect("read");
        (peer, got)
    });

    let (rtt, stream) = wan
        .run_in(Side::Client, || {
            let start = Instant::now();
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5));
            (start.elapsed(), s)
        })
        .unwrap();
    let mut stream = stream.expect("connect through the emulator");
    assert!(
        rtt >= Duration::from_millis(40),
        "TCP handshake took {rtt:?}, less than the 40 ms round trip"
    );

    let sent = data(2 << 20);
    stream.write_all(&sent).expect("write");
    drop(stream);
    let (peer, got) = receiver.join().expect("receiver thread");
    assert_eq!(peer.ip(), wan.client_addr());
    assert_eq!(got.len(), sent.len());
    assert!(got == sent, "bytes arrived altered");

    let stats = wan.stats();
    assert!(stats.client_to_server.bytes >= sent.len() as u64, "{stats}");
    assert!(stats.server_to_client.packets > 0, "{stats}");
    assert_eq!(
        stats.client_to_server.errors + stats.server_to_client.errors,
        0
    );

    drop(wan);
    assert!(
        gone(&names[0]) && gone(&names[1]),
        "namespaces left: {names:?}"
    );
}

#[test]
fn counts_queue_and_loss_drops() {
    if !root() {
        return;
    }
    // 1 Mbit/s with a 10 kB queue: a burst of 200 × 1000-byte datagrams overflows it.
    let wan = Wan::start(WanParams {
        delay: Duration::from_millis(5),
        rate_bits_per_sec: 1_000_000,
        queue_limit_bytes: 10_000,
        loss: 0.2,
        mtu: 1500,
    })
    .expect("start the emulator");
    let names = [wan.client_ns().to_owned(), wan.server_ns().to_owned()];
    let server = wan
        .run_in(Side::Server, || UdpSocket::bind((wan.server_addr(), 0)))
        .unwrap()
        .expect("bind in the server namespace");
    let to = server.local_addr().unwrap();
    let client = wan
        .run_in(Side::Client, || UdpSocket::bind((wan.client_addr(), 0)))
        .unwrap()
        .expect("bind in the client namespace");
    let payload = data(1000);
    for _ in 0..200 {
        client.send_to(&payload, to).expect("send");
    }
    server
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut received = 0u64;
    let mut buf = [0u8; 2000];
    while let Ok(n) = server.recv(&mut buf) {
        assert_eq!(&buf[..n], &payload[..]);
        received += 1;
    }

    let c2s = wan.stats().client_to_server;
    assert!(c2s.dropped_loss > 0, "{c2s}");
    assert!(c2s.dropped_queue > 0, "{c2s}");
    assert_eq!(c2s.packets + c2s.dropped(), 200, "{c2s}");
    assert_eq!(received, c2s.packets, "{c2s}");

    drop(wan);
    assert!(
        gone(&names[0]) && gone(&names[1]),
        "namespaces left: {names:?}"
    );
}

#[test]
fn rejects_bad_parameters() {
    // Validation comes before any privileged step, so this runs as any user.
    let bad = [
        WanParams {
            rate_bits_per_sec: 0,
            ..WanParams::default()
        },
        WanParams {
            loss: 1.5,
            ..WanParams::default()
        },
        WanParams {
            mtu: 10,
            ..WanParams::default()
        },
        WanParams {
            queue_limit_bytes: 100,
            ..WanParams::default()
        },
    ];
    for params in bad {
        match Wan::start(params.clone()) {
            Err(WanError::InvalidParam { .. }) => {}
            other => panic!("{params:?} gave {other:?}"),
        }
    }
}
