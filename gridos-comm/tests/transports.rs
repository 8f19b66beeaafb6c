//! Real sockets: every transport carries frames, selection picks the right method, limits hold.

use gridos_comm::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn g(s: &str) -> Gpid {
    s.parse().unwrap()
}

fn frame(tag: u32, payload: Vec<u8>) -> Frame {
    Frame {
        src: g("a.1.10"),
        dst: g("b.2.20"),
        tag,
        payload,
    }
}

async fn echo_server(mut l: Listener) {
    tokio::spawn(async move {
        while let Ok((mut ch, _)) = l.accept().await {
            tokio::spawn(async move {
                while let Ok(f) = ch.recv(None, None).await {
                    if ch.send(&f).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
}

async fn roundtrip(ch: &mut Channel, sizes: &[usize]) {
    for (i, &n) in sizes.iter().enumerate() {
        let payload: Vec<u8> = (0..n).map(|x| (x * 7 + i) as u8).collect();
        ch.send(&frame(i as u32, payload.clone())).await.unwrap();
    }
    for (i, &n) in sizes.iter().enumerate().rev() {
        // Receive by tag in reverse order: other frames are kept for later.
        let f = ch
            .recv(Some(i as u32), Some(Duration::from_secs(10)))
            .await
            .unwrap();
        assert_eq!(f.payload.len(), n);
        assert!(
            f.payload
                .iter()
                .enumerate()
                .all(|(x, b)| *b == (x * 7 + i) as u8)
        );
        assert_eq!(f.src, g("a.1.10"));
    }
}

#[tokio::test]
async fn every_transport_carries_frames_and_selection_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    echo_server(Listener::bind_unix(&sock, DEFAULT_MAX_FRAME).unwrap()).await;
    let tcp = Listener::bind_tcp("127.0.0.1:0".parse().unwrap(), DEFAULT_MAX_FRAME)
        .await
        .unwrap();
    let tcp_addr = tcp.local_addr().unwrap();
    echo_server(tcp).await;
    let par = Listener::bind_parallel_tcp("127.0.0.1:0".parse().unwrap(), DEFAULT_MAX_FRAME)
        .await
        .unwrap();
    let par_addr = par.local_addr().unwrap();
    echo_server(par).await;
    echo_server(Listener::bind_inproc("t-every", DEFAULT_MAX_FRAME).unwrap()).await;

    let sizes = [0, 1, 100, 70_000, 1 << 20, 3];
    let all = PeerInfo {
        name: "echo".into(),
        host: Some(HostId::local()),
        inproc: Some("t-every".into()),
        unix: Some(sock.clone()),
        tcp: Some(tcp_addr),
        parallel_tcp: Some(par_addr),
        path: None,
    };
    for kind in TransportKind::ALL {
        let c = Connector::new(Preferences {
            explicit: Some(kind),
            ..Default::default()
        });
        let (mut ch, sel) = c.connect(&all).await.unwrap();
        assert_eq!(sel.kind, kind);
        assert_eq!(ch.method(), kind);
        assert_eq!(sel.reason, "explicitly requested");
        roundtrip(&mut ch, &sizes).await;
    }

    // Automatic: in-process beats everything; same host picks unix; remote picks TCP.
    let auto = Connector::new(Preferences::default());
    assert_eq!(auto.select(&all).unwrap().kind, TransportKind::InProc);
    let same_host = PeerInfo {
        inproc: None,
        ..all.clone()
    };
    let s = auto.select(&same_host).unwrap();
    assert_eq!(s.kind, TransportKind::Unix, "{s}");
    let remote = PeerInfo {
        host: Some(HostId("elsewhere/netns:1".into())),
        ..same_host.clone()
    };
    let s = auto.select(&remote).unwrap();
    assert_eq!(s.kind, TransportKind::Tcp, "{s}");
    assert!(
        s.to_string().contains("not unix: peer is on another host"),
        "{s}"
    );

    // Deny list obeyed.
    let deny = Connector::new(Preferences {
        deny: vec![TransportKind::InProc, TransportKind::Unix],
        ..Default::default()
    });
    let (ch, s) = deny.connect(&all).await.unwrap();
    assert_eq!(
        (ch.method(), s.kind),
        (TransportKind::Tcp, TransportKind::Tcp)
    );
    assert!(s.to_string().contains("not unix: on the deny list"), "{s}");
    // Allow list.
    let allow = Connector::new(Preferences {
        allow: Some(vec![TransportKind::ParallelTcp]),
        ..Default::default()
    });
    assert_eq!(allow.select(&all).unwrap().kind, TransportKind::ParallelTcp);
    // Nothing permitted reaches: clear error.
    let none = Connector::new(Preferences {
        allow: Some(vec![TransportKind::Unix]),
        ..Default::default()
    });
    let e = none.select(&remote).unwrap_err().to_string();
    assert!(
        e.contains("no transport can reach echo") && e.contains("another host"),
        "{e}"
    );

    // Bulk over a long fat path prefers parallel TCP; over a short one stays on TCP.
    let bulk = Connector::new(Preferences {
        bulk: true,
        ..Default::default()
    });
    let lfn = PeerInfo {
        path: Some(PathEstimate {
            rtt_us: 80_000,
            bandwidth_bps: 10_000_000_000,
        }),
        ..remote.clone()
    };
    let s = bulk.select(&lfn).unwrap();
    assert_eq!(s.kind, TransportKind::ParallelTcp, "{s}");
    let lan = PeerInfo {
        path: Some(PathEstimate {
            rtt_us: 100,
            bandwidth_bps: 1_000_000_000,
        }),
        ..remote.clone()
    };
    assert_eq!(bulk.select(&lan).unwrap().kind, TransportKind::Tcp);
    // Not marked bulk: TCP even on the long fat path.
    assert_eq!(auto.select(&lfn).unwrap().kind, TransportKind::Tcp);
}

#[tokio::test]
async fn connect_falls_back_when_the_best_method_fails() {
    let tcp = Listener::bind_tcp("127.0.0.1:0".parse().unwrap(), DEFAULT_MAX_FRAME)
        .await
        .unwrap();
    let peer = PeerInfo {
        name: "p".into(),
        host: Some(HostId::local()),
        unix: Some("/".into()), // exists, but is not a socket
        tcp: tcp.local_addr(),
        ..Default::default()
    };
    echo_server(tcp).await;
    let (mut ch, sel) = Connector::new(Preferences::default())
        .connect(&peer)
        .await
        .unwrap();
    assert_eq!(sel.kind, TransportKind::Tcp);
    assert!(sel.to_string().contains("unix: connect failed"), "{sel}");
    roundtrip(&mut ch, &[5]).await;
}

#[tokio::test]
async fn oversized_frames_and_timeouts_give_clear_errors() {
    let mut l = Listener::bind_tcp("127.0.0.1:0".parse().unwrap(), 1024)
        .await
        .unwrap();
    let addr = l.local_addr().unwrap();
    // Sender side refuses before writing; the connection stays usable.
    let peer = PeerInfo {
        name: "small".into(),
        tcp: Some(addr),
        ..Default::default()
    };
    let conn = Connector::with_max_frame(Preferences::default(), 1024);
    let (mut ch, _) = conn.connect(&peer).await.unwrap();
    let (mut server, who) = l.accept().await.unwrap();
    assert!(matches!(who, PeerIdentity::Net(_)));
    let e = ch.send(&frame(1, vec![0; 4096])).await.unwrap_err();
    assert!(matches!(e, Error::FrameTooLarge { max: 1024, .. }), "{e}");
    ch.send(&frame(2, vec![1; 10])).await.unwrap();
    assert_eq!(
        server
            .recv(None, Some(Duration::from_secs(5)))
            .await
            .unwrap()
            .tag,
        2
    );
    // Timeout.
    let e = server
        .recv(None, Some(Duration::from_millis(50)))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e}");

    // A raw peer announcing a huge frame: receiver errors, and the channel stays broken.
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut server, _) = l.accept().await.unwrap();
    raw.write_all(&0xFFFF_FFF0u32.to_be_bytes()).await.unwrap();
    let e = server
        .recv(None, Some(Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("exceeds the maximum of 1024 bytes"),
        "{e}"
    );
    let e = server
        .recv(None, Some(Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("unusable"), "{e}");
    // Garbage body.
    let mut raw2 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut server, _) = l.accept().await.unwrap();
    raw2.write_all(&[0, 0, 0, 3, 1, 0, 9]).await.unwrap();
    let e = server
        .recv(None, Some(Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("malformed frame"), "{e}");
    drop(raw);
    let mut buf = [0u8; 1];
    drop(server);
    let _ = raw2.read(&mut buf).await;
}

#[tokio::test]
async fn accepted_channels_start_with_a_small_receive_limit_that_can_be_raised() {
    let dir = tempfile::tempdir().unwrap();
    let mut tcp = Listener::bind_tcp("127.0.0.1:0".parse().unwrap(), 1 << 20)
        .await
        .unwrap();
    let mut unix = Listener::bind_unix(&dir.path().join("s.sock"), 1 << 20).unwrap();
    tcp.set_initial_recv_limit(1000);
    unix.set_initial_recv_limit(1000);
    let peers = [
        PeerInfo {
            name: "tcp".into(),
            tcp: tcp.local_addr(),
            ..Default::default()
        },
        PeerInfo {
            name: "unix".into(),
            host: Some(HostId::local()),
            unix: Some(dir.path().join("s.sock")),
            ..Default::default()
        },
    ];
    for (peer, l) in peers.iter().zip([&mut tcp, &mut unix]) {
        let conn = Connector::with_max_frame(Preferences::default(), 1 << 20);
        // Over the initial limit: refused at the prefix, the channel is finished.
        let (mut ch, _) = conn.connect(peer).await.unwrap();
        let (mut server, _) = l.accept().await.unwrap();
        assert_eq!(server.recv_limit().get(), 1000);
        ch.send(&frame(1, vec![7; 10])).await.unwrap();
        ch.send(&frame(2, vec![7; 5000])).await.unwrap();
        let t = Some(Duration::from_secs(5));
        assert_eq!(server.recv(None, t).await.unwrap().tag, 1);
        let e = server.recv(None, t).await.unwrap_err();
        assert!(
            matches!(e, Error::FrameTooLarge { max: 1000, .. }),
            "{}: {e}",
            peer.name
        );
        // Raised after a first small frame: the big one that follows passes.
        let (mut ch, _) = conn.connect(peer).await.unwrap();
        let (mut server, _) = l.accept().await.unwrap();
        ch.send(&frame(1, vec![7; 10])).await.unwrap();
        assert_eq!(server.recv(None, t).await.unwrap().tag, 1);
        server.recv_limit().set(1 << 20);
        ch.send(&frame(2, vec![8; 5000])).await.unwrap();
        let f = server.recv(None, t).await.unwrap();
        assert_eq!(f.payload, vec![8; 5000], "{}", peer.name);
    }
}

#[tokio::test]
async fn closed_peer_is_reported() {
    let mut l = Listener::bind_tcp("127.0.0.1:0".parse().unwrap(), DEFAULT_MAX_FRAME)
        .await
        .unwrap();
    let peer = PeerInfo {
        name: "x".into(),
        tcp: l.local_addr(),
        ..Default::default()
    };
    let (mut ch, _) = Connector::new(Preferences::default())
        .connect(&peer)
        .await
        .unwrap();
    let (server, _) = l.accept().await.unwrap();
    drop(server);
    let e = ch
        .recv(None, Some(Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Closed), "{e}");
    let events = PeerEvents::default();
    let mut sub = events.subscribe();
    events.emit(PeerEvent::Down {
        peer: "x".into(),
        reason: e.to_string(),
    });
    assert!(matches!(sub.recv().await.unwrap(), PeerEvent::Down { .. }));
}
