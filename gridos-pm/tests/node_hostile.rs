//! A real node daemon (a separate process) against a hostile network: raw bytes over TCP and
//! the unix socket before and around authentication, replayed authenticators, crowds of
//! unauthenticated connections, and a peer that vanishes without a word.
//!
//! The daemons are this test binary in its helper role (see `util`).

use gridos_comm::{Frame, read_frame};
use gridos_pm::proto::{PRE_AUTH_MAX_FRAME, Request, Response, Scope, TAG_REQUEST};
use gridos_pm::{Client, Error, ExitStatus, Gpid, auth};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

mod util;

use util::{Cluster, client, cluster, cluster_env, sh, wait_peers_up};

/// Not a test: the entry point of the helper roles (see [`util::helper_main`]).
#[test]
fn zz_helper() {
    util::helper_main();
}

/// Generous bound for "the daemon reacted": far above what it needs, far below forever.
const LIVE: Duration = Duration::from_secs(15);

fn key(cl: &Cluster) -> Vec<u8> {
    auth::load_key(&cl.dir.path().join("key")).unwrap()
}

fn addr(cl: &Cluster) -> SocketAddr {
    cl.nodes[0].listen
}

/// The bytes of one request frame, as any client would send them.
fn request_bytes(id: u64, req: &Request) -> Vec<u8> {
    let payload =
        gridos_pm::proto::encode(&gridos_pm::proto::Envelope { id, body: req }, &[]).unwrap();
    Frame {
        src: Gpid::anonymous(),
        dst: Gpid::anonymous(),
        tag: TAG_REQUEST,
        payload,
    }
    .encode()
    .unwrap()
}

async fn send<S: AsyncWrite + Unpin>(s: &mut S, id: u64, req: &Request) {
    s.write_all(&request_bytes(id, req)).await.unwrap();
}

/// The next response, or `None` when the daemon closed the connection.
async fn recv<S: AsyncRead + Unpin>(s: &mut S) -> Option<(u64, Response)> {
    let f = tokio::time::timeout(LIVE, read_frame(s, 8 << 20))
        .await
        .expect("the daemon neither answered nor closed")
        .ok()??;
    let (env, _) = gridos_pm::proto::decode::<Response>(&f.payload).unwrap();
    Some((env.id, env.body))
}

/// The error in the next response.
async fn recv_error<S: AsyncRead + Unpin>(s: &mut S) -> (u64, Error) {
    match recv(s).await {
        Some((id, Response::Error { error })) => (id, error),
        other => panic!("expected an error response, got {other:?}"),
    }
}

/// Whether the daemon closes the connection (EOF or reset) within [`LIVE`], ignoring
/// whatever it still sends before.
async fn closed_by_daemon<S: AsyncRead + Unpin>(s: &mut S) -> bool {
    let mut buf = [0u8; 4096];
    let t0 = Instant::now();
    while t0.elapsed() < LIVE {
        match tokio::time::timeout(LIVE, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
    false
}

async fn hello<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> gridos_pm::proto::NodeInfo {
    send(s, 1, &Request::Hello).await;
    match recv(s).await {
        Some((1, Response::Hello { info })) => info,
        other => panic!("expected Hello, got {other:?}"),
    }
}

fn auth_req(key: &[u8], challenge: &str, nonce: &str, server: &str) -> Request {
    Request::Auth {
        client: "tester".into(),
        nonce: nonce.into(),
        mac: auth::client_mac(key, challenge, nonce, "tester", server),
    }
}

/// A TCP client that authenticates properly, then spawns and waits a process.
async fn good_client_spawns(cl: &Cluster, code: i32) {
    let c = tokio::time::timeout(LIVE, Client::connect_tcp(addr(cl), &key(cl), "good"))
        .await
        .expect("a good client was not served in time")
        .unwrap();
    let (g, _) = c.spawn(None, sh(&format!("exit {code}"))).await.unwrap();
    let rec = tokio::time::timeout(LIVE, c.wait(&g, None))
        .await
        .expect("wait was not served in time")
        .unwrap();
    assert_eq!(rec.status, ExitStatus::Exited(code));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_peer_gets_one_refusal_learns_nothing_and_is_closed() {
    let cl = cluster(&["h1"], None, None);
    // What an authenticated client learns, for comparison.
    let full = Client::connect_tcp(addr(&cl), &key(&cl), "admin")
        .await
        .unwrap();
    assert!(full.info().incarnation >= 1 && !full.info().enforcement.is_empty());
    assert!(!full.info().ctl_socket.as_os_str().is_empty());

    // Hello before authentication: the id and a challenge, nothing else.
    let mut s = TcpStream::connect(addr(&cl)).await.unwrap();
    let info = hello(&mut s).await;
    assert_eq!(info.node, "h1");
    assert!(info.auth);
    assert_eq!(auth::from_hex(&info.challenge).map(|c| c.len()), Some(32));
    assert_ne!(info.challenge, full.info().challenge);
    assert_eq!(info.incarnation, 0);
    assert!(info.host.0.is_empty() && info.enforcement.is_empty() && info.peers.is_empty());
    assert!(info.ctl_socket.as_os_str().is_empty() && info.listen.is_none());
    // Anything but the handshake: one refusal, then the connection is closed.
    send(&mut s, 2, &Request::List { scope: Scope::All }).await;
    let (id, e) = recv_error(&mut s).await;
    assert_eq!(id, 2);
    assert!(
        matches!(&e, Error::Denied(m) if m.contains("authenticate first")),
        "{e}"
    );
    assert!(closed_by_daemon(&mut s).await);

    // The same without a Hello first, for each kind of request; nothing is done.
    let spawn = Request::Spawn {
        node: None,
        spec: sh("touch /tmp/gridos-hostile-must-not-exist"),
    };
    let wait = Request::Wait {
        gpid: Gpid::new("h1".parse().unwrap(), 1, 1),
        timeout_ms: None,
    };
    for req in [
        spawn,
        wait,
        Request::Ping,
        Request::Resources { node: None },
    ] {
        let mut s = TcpStream::connect(addr(&cl)).await.unwrap();
        send(&mut s, 9, &req).await;
        let (id, e) = recv_error(&mut s).await;
        assert_eq!(id, 9, "{req:?}");
        assert!(matches!(e, Error::Denied(_)), "{req:?}: {e}");
        assert!(closed_by_daemon(&mut s).await, "{req:?}");
    }
    let (procs, _) = full.list(Scope::Local).await.unwrap();
    assert!(procs.is_empty(), "{procs:?}");

    // A response frame, undecodable JSON, or too many Hellos: refused and closed.
    let mut s = TcpStream::connect(addr(&cl)).await.unwrap();
    let mut f = Frame::decode_body(&request_bytes(3, &Request::Hello)[4..]).unwrap();
    f.tag = gridos_pm::proto::TAG_RESPONSE;
    s.write_all(&f.encode().unwrap()).await.unwrap();
    let (_, e) = recv_error(&mut s).await;
    assert!(e.to_string().contains("before authentication"), "{e}");
    assert!(closed_by_daemon(&mut s).await);
    let mut s = TcpStream::connect(addr(&cl)).await.unwrap();
    f.tag = TAG_REQUEST;
    f.payload = b"\0\0\0\x05{{{{{".to_vec();
    s.write_all(&f.encode().unwrap()).await.unwrap();
    let (_, e) = recv_error(&mut s).await;
    assert!(matches!(e, Error::BadRequest(_)), "{e}");
    assert!(closed_by_daemon(&mut s).await);
    let mut s = TcpStream::connect(addr(&cl)).await.unwrap();
    for _ in 0..gridos_pm::node::MAX_PRE_AUTH_HELLOS {
        hello(&mut s).await;
    }
    send(&mut s, 5, &Request::Hello).await;
    let (_, e) = recv_error(&mut s).await;
    assert!(e.to_string().contains("Hello before authentication"), "{e}");
    assert!(closed_by_daemon(&mut s).await);

    // The authenticated connection was never disturbed.
    let (procs, _) = full.list(Scope::Local).await.unwrap();
    assert!(procs.is_empty());
    assert!(!std::path::Path::new("/tmp/gridos-hostile-must-not-exist").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_garbage_frames_cut_the_connection_and_the_daemon_keeps_serving() {
    let cl = cluster(&["h2"], None, None);
    // Before authentication a frame may be 16 KiB: announcing one byte more is enough to be
    // cut, and the daemon answers without waiting for (or allocating) the body.
    let mut s = TcpStream::connect(addr(&cl)).await.unwrap();
    hello(&mut s).await;
    s.write_all(&(PRE_AUTH_MAX_FRAME + 1).to_be_bytes())
        .await
        .unwrap();
    let (_, e) = recv_error(&mut s).await;
    assert!(
        e.to_string().contains(&format!(
            "exceeds the maximum of {PRE_AUTH_MAX_FRAME} bytes"
        )),
        "{e}"
    );
    assert!(closed_by_daemon(&mut s).await);
    // Under the limit, a frame is read as usual (and, being junk, refused).
    let mut s = TcpStream::connect(addr(&cl)).await.unwrap();
    let mut junk = (PRE_AUTH_MAX_FRAME - 100).to_be_bytes().to_vec();
    junk.extend(std::iter::repeat_n(
        b'x',
        (PRE_AUTH_MAX_FRAME - 100) as usize,
    ));
    s.write_all(&junk).await.unwrap();
    let (_, e) = recv_error(&mut s).await;
    assert!(e.to_string().contains("malformed frame"), "{e}");
    assert!(closed_by_daemon(&mut s).await);

    // Garbage of every shape, over TCP and over the unix socket.
    let garbage: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: h2\r\n\r\n".to_vec(),
        0xFFFF_FFFFu32.to_be_bytes().to_vec(),
        vec![0, 0, 0, 5, 9, 9, 9, 9, 9],
        vec![0, 0, 0, 0],
        (0..65536u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
    ];
    for (i, g) in garbage.iter().enumerate() {
        let mut t = TcpStream::connect(addr(&cl)).await.unwrap();
        let _ = t.write_all(g).await;
        assert!(closed_by_daemon(&mut t).await, "TCP garbage {i}");
        let mut u = tokio::net::UnixStream::connect(&cl.nodes[0].sock)
            .await
            .unwrap();
        let _ = u.write_all(g).await;
        assert!(closed_by_daemon(&mut u).await, "unix garbage {i}");
    }

    // After authentication the full limit applies: a 1 MiB frame is fine.
    let c = Client::connect_tcp(addr(&cl), &key(&cl), "big")
        .await
        .unwrap();
    let (r, _) = c
        .call(Request::Ping, &vec![0x5a; 1 << 20], Some(LIVE))
        .await
        .unwrap();
    assert_eq!(r, Response::Pong);
    // And the daemon still serves, over TCP and locally.
    good_client_spawns(&cl, 3).await;
    let local = client(&cl.nodes[0]).await;
    let (g, _) = local.spawn(None, sh("exit 4")).await.unwrap();
    assert_eq!(
        local.wait(&g, None).await.unwrap().status,
        ExitStatus::Exited(4)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_that_do_not_finish_in_time_are_cut() {
    let cl = cluster_env(&["h3"], None, None, &[("GH_HANDSHAKE_TIMEOUT", "2")]);
    let expect_cut = |e: &Error| {
        assert!(
            matches!(e, Error::Timeout(m) if m.contains("not authenticated within 2s")),
            "{e}"
        );
    };
    // Slowloris: a Hello one byte every 200 ms would take ~20 s; the daemon cuts it.
    let t0 = Instant::now();
    let s = TcpStream::connect(addr(&cl)).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let bytes = request_bytes(1, &Request::Hello);
    let total = bytes.len();
    let dribble = tokio::spawn(async move {
        let mut sent = 0;
        for b in bytes {
            if wr.write_all(&[b]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        sent
    });
    let (_, e) = recv_error(&mut rd).await;
    expect_cut(&e);
    assert!(closed_by_daemon(&mut rd).await);
    let cut_after = t0.elapsed();
    let sent = dribble.await.unwrap();
    assert!(sent < total, "the whole Hello went through ({sent} bytes)");
    assert!(
        cut_after >= Duration::from_secs(2),
        "cut early: {cut_after:?}"
    );
    // Silent, and Hello-then-silent, connections too.
    let mut quiet = TcpStream::connect(addr(&cl)).await.unwrap();
    let mut greeted = TcpStream::connect(addr(&cl)).await.unwrap();
    hello(&mut greeted).await;
    for s in [&mut quiet, &mut greeted] {
        let (_, e) = recv_error(s).await;
        expect_cut(&e);
        assert!(closed_by_daemon(s).await);
    }
    // The limit is on the handshake only: an authenticated connection lives on.
    let c = Client::connect_tcp(addr(&cl), &key(&cl), "patient")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (g, _) = c.spawn(None, sh("exit 6")).await.unwrap();
    assert_eq!(
        c.wait(&g, None).await.unwrap().status,
        ExitStatus::Exited(6)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_auth_replayed_reused_nonce_and_wrong_key_are_refused() {
    let cl = cluster(&["h4"], None, None);
    let key = key(&cl);
    let bad_hmac = |e: &Error| matches!(e, Error::AuthFailed(m) if m.contains("bad HMAC"));

    // A proper handshake, recorded by an eavesdropper.
    let mut a = TcpStream::connect(addr(&cl)).await.unwrap();
    let ca = hello(&mut a).await.challenge;
    let nonce = auth::random_hex(32);
    let recorded = auth_req(&key, &ca, &nonce, "h4");
    send(&mut a, 2, &recorded).await;
    let Some((2, Response::AuthOk { mac })) = recv(&mut a).await else {
        panic!("proper Auth refused");
    };
    assert!(auth::verify_server(&key, &ca, &nonce, "tester", "h4", &mac));
    send(
        &mut a,
        3,
        &Request::List {
            scope: Scope::Local,
        },
    )
    .await;
    assert!(matches!(
        recv(&mut a).await,
        Some((3, Response::List { .. }))
    ));

    // Replayed on a new connection (new challenge): refused, closed.
    let mut b = TcpStream::connect(addr(&cl)).await.unwrap();
    let cb = hello(&mut b).await.challenge;
    assert_ne!(ca, cb);
    send(&mut b, 2, &recorded).await;
    let (_, e) = recv_error(&mut b).await;
    assert!(bad_hmac(&e), "{e}");
    assert!(closed_by_daemon(&mut b).await);
    // Replayed without even asking for a challenge.
    let mut b = TcpStream::connect(addr(&cl)).await.unwrap();
    send(&mut b, 2, &recorded).await;
    let (_, e) = recv_error(&mut b).await;
    assert!(bad_hmac(&e), "{e}");
    assert!(closed_by_daemon(&mut b).await);
    // The server's proof sent back as a client proof (reflection).
    let mut b = TcpStream::connect(addr(&cl)).await.unwrap();
    let cb = hello(&mut b).await.challenge;
    let reflected = Request::Auth {
        client: "tester".into(),
        nonce: nonce.clone(),
        mac: auth::server_mac(&key, &cb, &nonce, "tester", "h4"),
    };
    send(&mut b, 2, &reflected).await;
    let (_, e) = recv_error(&mut b).await;
    assert!(bad_hmac(&e), "{e}");

    // The same nonce with a correct MAC over the new challenge: refused as reused.
    let mut c = TcpStream::connect(addr(&cl)).await.unwrap();
    let cc = hello(&mut c).await.challenge;
    send(&mut c, 2, &auth_req(&key, &cc, &nonce, "h4")).await;
    let (_, e) = recv_error(&mut c).await;
    assert!(
        matches!(&e, Error::AuthFailed(m) if m.contains("already used")),
        "{e}"
    );
    assert!(closed_by_daemon(&mut c).await);

    // A wrong key, raw and through the client.
    let mut d = TcpStream::connect(addr(&cl)).await.unwrap();
    let cd = hello(&mut d).await.challenge;
    let wrong = b"0123456789abcdef-not-the-key";
    send(
        &mut d,
        2,
        &auth_req(wrong, &cd, &auth::random_hex(32), "h4"),
    )
    .await;
    let (_, e) = recv_error(&mut d).await;
    assert!(bad_hmac(&e), "{e}");
    assert!(closed_by_daemon(&mut d).await);
    let e = Client::connect_tcp(addr(&cl), wrong, "intruder")
        .await
        .err()
        .unwrap();
    assert!(bad_hmac(&e), "{e}");

    // A second Auth on an authenticated connection is refused and ends it.
    send(&mut a, 4, &auth_req(&key, &ca, &auth::random_hex(32), "h4")).await;
    let (_, e) = recv_error(&mut a).await;
    assert!(
        e.to_string().contains("only one authentication attempt"),
        "{e}"
    );
    assert!(closed_by_daemon(&mut a).await);

    good_client_spawns(&cl, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_unauthenticated_connections_do_not_starve_a_good_client() {
    // Long enough that none of the crowd is cut while the good client works.
    let cl = cluster_env(&["h5"], None, None, &[("GH_HANDSHAKE_TIMEOUT", "60")]);
    let mut crowd = Vec::new();
    for i in 0..200 {
        let mut s = tokio::time::timeout(LIVE, TcpStream::connect(addr(&cl)))
            .await
            .expect("the daemon stopped accepting")
            .unwrap();
        match i % 3 {
            // Silent.
            0 => {}
            // Half a frame.
            1 => s
                .write_all(&request_bytes(1, &Request::Hello)[..7])
                .await
                .unwrap(),
            // A Hello, never read.
            _ => send(&mut s, 1, &Request::Hello).await,
        }
        crowd.push(s);
    }
    // The daemon holds them all open (each is a socket in its descriptor table).
    let pid = cl.nodes[0].child.as_ref().unwrap().id();
    let t0 = Instant::now();
    loop {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count();
        if fds >= 200 {
            break;
        }
        assert!(t0.elapsed() < LIVE, "daemon holds only {fds} descriptors");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    good_client_spawns(&cl, 7).await;
    let local = client(&cl.nodes[0]).await;
    let (g, _) = local.spawn(None, sh("exit 8")).await.unwrap();
    assert_eq!(
        local.wait(&g, None).await.unwrap().status,
        ExitStatus::Exited(8)
    );
    // The crowd was held, not dropped: a late Hello on a silent one is still answered.
    let info = hello(&mut crowd[0]).await;
    assert_eq!(info.node, "h5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_vanishes_silently_is_lost_and_comes_back_as_the_same_incarnation() {
    use nix::sys::signal::{Signal, kill};
    let cl = cluster(&["v1", "v2"], None, None);
    let c1 = client(&cl.nodes[0]).await;
    wait_peers_up(&c1, 1).await;
    let inc = client(&cl.nodes[1]).await.info().incarnation;
    let (g, _) = c1.spawn(Some("v2"), sh("sleep 6; exit 9")).await.unwrap();
    let waiter = tokio::spawn(async move { (c1.wait(&g, None).await, g) });
    // Frozen: its sockets stay open, only the heartbeat can notice.
    let v2 = nix::unistd::Pid::from_raw(cl.nodes[1].child.as_ref().unwrap().id() as i32);
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill(v2, Signal::SIGSTOP).unwrap();
    let res = tokio::time::timeout(LIVE, waiter).await;
    kill(v2, Signal::SIGCONT).unwrap();
    let (res, g) = res.expect("no NodeLost in time").unwrap();
    let e = res.unwrap_err();
    assert!(
        matches!(&e, Error::NodeLost { node, detail } if node == "v2" && detail.contains("heartbeat")),
        "{e}"
    );
    // Back, same incarnation: its process was never lost and its record is the real one.
    let c1 = client(&cl.nodes[0]).await;
    let t0 = Instant::now();
    let rec = loop {
        let info = wait_peers_up(&c1, 1).await;
        assert_eq!(info.peers[0].incarnation, Some(inc));
        match c1.wait(&g, None).await {
            // The link went down and up again between the two calls.
            Err(Error::NodeLost { .. }) if t0.elapsed() < LIVE => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            r => break r.unwrap(),
        }
    };
    assert_eq!(rec.status, ExitStatus::Exited(9));
    assert_eq!(rec.gpid, g);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_handshake_slots_are_closed_and_slots_come_back() {
    use gridos_pm::node::MAX_HANDSHAKES;
    let cl = cluster_env(&["h6"], None, None, &[("GH_HANDSHAKE_TIMEOUT", "60")]);
    let mut crowd = Vec::new();
    for _ in 0..MAX_HANDSHAKES {
        let s = tokio::time::timeout(LIVE, TcpStream::connect(addr(&cl)))
            .await
            .expect("the daemon stopped accepting")
            .unwrap();
        crowd.push(s);
    }
    // Once the daemon has taken the crowd in, the next connection is closed unanswered (one
    // answered means some of the crowd was not accepted yet; it joins the crowd).
    let t0 = Instant::now();
    loop {
        let mut s = TcpStream::connect(addr(&cl)).await.unwrap();
        send(&mut s, 1, &Request::Hello).await;
        match recv(&mut s).await {
            None => break,
            Some(_) => assert!(t0.elapsed() < LIVE, "slots never ran out"),
        }
        crowd.push(s);
    }
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr(&cl)).await.unwrap();
        send(&mut s, 1, &Request::Hello).await;
        assert_eq!(recv(&mut s).await, None);
    }
    // The local socket is not affected.
    let local = client(&cl.nodes[0]).await;
    assert_eq!(local.hello().await.unwrap().node, "h6");
    // Slots held by peers that leave come back (the first ones were accepted first).
    crowd.drain(..20);
    let t0 = Instant::now();
    loop {
        match tokio::time::timeout(LIVE, Client::connect_tcp(addr(&cl), &key(&cl), "late")).await {
            Ok(Ok(c)) => {
                let (g, _) = c.spawn(None, sh("exit 2")).await.unwrap();
                let rec = c.wait(&g, None).await.unwrap();
                assert_eq!(rec.status, ExitStatus::Exited(2));
                break;
            }
            r => assert!(
                t0.elapsed() < LIVE,
                "no slot came back: {:?}",
                r.map(|r| r.err())
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
