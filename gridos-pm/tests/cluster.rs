//! Several real node daemons (separate processes) on one machine, and in network namespaces.
//!
//! The test binary doubles as the node daemon and as the child programs: run with
//! `GRIDOS_HELPER=…` and the filter `zz_helper`, it becomes that role (see `util`).

use gridos_pm::proto::{Request, Response};
use gridos_pm::{Client, Error, ExitStatus, Gpid, Scope};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod util;

use util::{client, cluster, helper, is_root, sh, wait_peers_up};

/// Not a test: the entry point of the helper roles (see [`util::helper_main`]).
#[test]
fn zz_helper() {
    util::helper_main();
}

// ------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_spawn_wait_kill_messages_and_bad_input() {
    let cl = cluster(&["n1", "n2"], None, None);
    let c1 = client(&cl.nodes[0]).await;
    let info = wait_peers_up(&c1, 1).await;
    assert_eq!(info.node, "n1");
    // Transport selection: the peer is on this host, so the link uses the unix socket.
    let p = &info.peers[0];
    assert_eq!(p.method, Some(gridos_comm::TransportKind::Unix), "{p:?}");
    assert!(
        p.selection
            .as_deref()
            .unwrap()
            .contains("peer is on this host"),
        "{p:?}"
    );

    // Remote spawn through n1 onto n2; exit code and accounting come back.
    let (g, enf) = c1
        .spawn(Some("n2"), sh("i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; head -c 200000 /dev/zero | wc -c; exit 7"))
        .await
        .unwrap();
    assert_eq!(g.node().as_str(), "n2");
    assert_eq!(enf.mechanism, None, "no reservation: {enf}");
    let rec = c1.wait(&g, None).await.unwrap();
    assert_eq!(rec.status, ExitStatus::Exited(7));
    assert!(
        rec.usage.user_cpu_us + rec.usage.sys_cpu_us > 0,
        "{:?}",
        rec.usage
    );
    assert!(rec.usage.max_rss_bytes > 0 && rec.wall_ms > 0, "{rec:?}");
    assert!(
        rec.usage.read_bytes >= 200_000,
        "I/O bytes of the reaped pipeline: {:?}",
        rec.usage
    );
    assert_eq!(rec.stdout.as_deref().map(str::trim), Some("200000"));
    if is_root() {
        assert!(
            rec.cgroup
                .as_ref()
                .is_some_and(|c| c.cpu_ns.unwrap_or(0) > 0),
            "{:?}",
            rec.cgroup
        );
    }
    // The record stays queryable after exit, from either node.
    let c2 = client(&cl.nodes[1]).await;
    assert_eq!(c2.wait(&g, None).await.unwrap(), rec);
    // Children of a root daemon run unprivileged.
    let (gu, _) = c1.spawn(Some("n2"), sh("id -u")).await.unwrap();
    let uid = c1.wait(&gu, None).await.unwrap().stdout.unwrap();
    if is_root() {
        assert_eq!(uid.trim(), "65534", "spawned as nobody");
    }

    // Kill by GPID.
    let (k, _) = c1.spawn(Some("n2"), sh("sleep 30")).await.unwrap();
    c1.signal(&k, 15).await.unwrap();
    let r = c1.wait(&k, Some(Duration::from_secs(10))).await.unwrap();
    assert_eq!(
        r.status,
        ExitStatus::Signaled {
            signal: 15,
            core_dumped: false
        }
    );
    let e = c1.signal(&k, 15).await.unwrap_err();
    assert!(e.to_string().contains("already killed by signal 15"), "{e}");

    // A message round trip between processes on different nodes.
    let (echo, _) = c1.spawn(Some("n2"), helper("echo", vec![])).await.unwrap();
    let (ping, _) = c1
        .spawn(
            None,
            helper("ping", vec![("PING_DST".into(), echo.to_string())]),
        )
        .await
        .unwrap();
    let pr = c1.wait(&ping, Some(Duration::from_secs(30))).await.unwrap();
    assert_eq!(
        pr.status,
        ExitStatus::Exited(0),
        "ping: {:?} {:?}",
        pr.stdout,
        pr.stderr
    );
    assert!(
        pr.stdout
            .unwrap()
            .contains(&format!("reply from {echo} tag 8: dirg olleh"))
    );
    let er = c1.wait(&echo, Some(Duration::from_secs(30))).await.unwrap();
    assert_eq!(er.status, ExitStatus::Exited(0), "echo: {:?}", er.stderr);

    // ps across the grid.
    let (all, errors) = c1.list(Scope::All).await.unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    for want in [&g, &k, &echo, &ping] {
        assert!(
            all.iter().any(|p| &p.gpid == want && p.state == "exited"),
            "{want} missing"
        );
    }

    // Bad input: clear errors, and the daemon keeps serving.
    let e = c1.wait(&"n9.1.1".parse().unwrap(), None).await.unwrap_err();
    assert_eq!(e, Error::UnknownNode("n9".into()));
    let e = c1
        .wait(&"n1.1.999999".parse().unwrap(), None)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UnknownProcess { .. }), "{e}");
    // A malformed GPID inside a request is rejected when decoding.
    let raw = br#"{"id":5,"body":{"op":"wait","gpid":"n1.x.3","timeout_ms":null}}"#;
    let e = raw_request(&cl.nodes[0].sock, raw).await;
    assert!(e.contains("malformed GPID") && e.contains("n1.x.3"), "{e}");
    // Oversized frame: error frame, connection closed.
    let e = raw_oversized(&cl.nodes[0].sock).await;
    assert!(e.contains("exceeds the maximum"), "{e}");
    // Processes that are not gridos children cannot use the mailbox API.
    let e = c1
        .call(
            Request::Recv {
                tag: None,
                timeout_ms: Some(10),
            },
            &[],
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Denied(_)), "{e}");
    // Bad HMAC over TCP, and unauthenticated requests.
    let e = Client::connect_tcp(cl.nodes[0].listen, b"not-the-key-0123456789", "intruder")
        .await
        .err()
        .unwrap();
    assert!(matches!(e, Error::AuthFailed(_)), "{e}");
    assert!(e.to_string().contains("bad HMAC"), "{e}");
    let e = unauthenticated_spawn(cl.nodes[0].listen).await;
    assert!(matches!(e, Error::Denied(_)), "{e}");
    let key = gridos_pm::auth::load_key(&cl.dir.path().join("key")).unwrap();
    let tc = Client::connect_tcp(cl.nodes[0].listen, &key, "admin")
        .await
        .unwrap();
    let (g2, _) = tc.spawn(Some("n2"), sh("exit 3")).await.unwrap();
    assert_eq!(
        tc.wait(&g2, None).await.unwrap().status,
        ExitStatus::Exited(3)
    );
    // Still serving locally after all that.
    let c1b = client(&cl.nodes[0]).await;
    assert_eq!(c1b.hello().await.unwrap().node, "n1");

    // Reservations: beyond capacity refused; a fitting one granted, listed, released.
    let big = gridos_rm::Request {
        cpus: 1.0,
        memory_bytes: 1 << 50,
        disk_bytes: 0,
        duration_secs: 60,
    };
    let e = c1.reserve(Some("n2"), big).await.unwrap_err();
    assert!(
        matches!(e, Error::Refused(_)) && e.to_string().contains("beyond this node's capacity"),
        "{e}"
    );
    let e = c1
        .reserve(
            None,
            gridos_rm::Request {
                cpus: 1000.0,
                ..big
            },
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("CPUs requested"), "{e}");
    let ok = gridos_rm::Request {
        cpus: 0.5,
        memory_bytes: 32 << 20,
        disk_bytes: 0,
        duration_secs: 60,
    };
    let r = c1.reserve(Some("n2"), ok).await.unwrap();
    assert!(r.id.ends_with("@n2"), "{}", r.id);
    let res = c1.resources(Some("n2")).await.unwrap();
    assert!(res.reservations.iter().any(|x| x.id == r.id));
    assert!(res.resources.cpus.count >= 1);
    c1.release(&r.id).await.unwrap();
    assert!(c1.release(&r.id).await.is_err());
}

async fn raw_request(sock: &Path, json: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(sock).await.unwrap();
    let mut payload = (json.len() as u32).to_be_bytes().to_vec();
    payload.extend_from_slice(json);
    let f = gridos_comm::Frame {
        src: Gpid::anonymous(),
        dst: Gpid::anonymous(),
        tag: gridos_pm::proto::TAG_REQUEST,
        payload,
    };
    s.write_all(&f.encode().unwrap()).await.unwrap();
    let f = gridos_comm::read_frame(&mut s, 1 << 20)
        .await
        .unwrap()
        .unwrap();
    let (env, _) = gridos_pm::proto::decode::<Response>(&f.payload).unwrap();
    let mut b = [0u8; 1];
    let _ = tokio::time::timeout(Duration::from_millis(10), s.read(&mut b)).await;
    match env.body {
        Response::Error { error } => error.to_string(),
        r => format!("{r:?}"),
    }
}

async fn raw_oversized(sock: &Path) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(sock).await.unwrap();
    s.write_all(&0x7FFF_FFFFu32.to_be_bytes()).await.unwrap();
    let f = gridos_comm::read_frame(&mut s, 1 << 20)
        .await
        .unwrap()
        .unwrap();
    let (env, _) = gridos_pm::proto::decode::<Response>(&f.payload).unwrap();
    // Then the node closes the connection.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    match env.body {
        Response::Error { error } => error.to_string(),
        r => format!("{r:?}"),
    }
}

async fn unauthenticated_spawn(addr: SocketAddr) -> Error {
    use gridos_comm::{Connector, PeerInfo, Preferences};
    let (ch, _) = Connector::new(Preferences::default())
        .connect(&PeerInfo {
            name: "x".into(),
            tcp: Some(addr),
            ..Default::default()
        })
        .await
        .unwrap();
    let conn =
        gridos_pm::rpc::RpcConn::start(ch, Gpid::anonymous(), Gpid::anonymous(), Error::Comm);
    conn.call(
        Request::Spawn {
            node: None,
            spec: sh("true"),
        },
        &[],
        Some(Duration::from_secs(5)),
    )
    .await
    .unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_killed_mid_run_gives_node_lost_and_restart_gets_new_incarnation() {
    let mut cl = cluster(&["a1", "a2"], None, None);
    let c1 = client(&cl.nodes[0]).await;
    wait_peers_up(&c1, 1).await;
    let inc_before = client(&cl.nodes[1]).await.info().incarnation;
    let (g, _) = c1.spawn(Some("a2"), sh("sleep 30")).await.unwrap();
    assert_eq!(g.incarnation(), inc_before);
    let waiter = tokio::spawn(async move {
        let t0 = Instant::now();
        (c1.wait(&g, None).await, t0.elapsed(), g)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    cl.nodes[1].kill9();
    let (res, took, g) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    let e = res.unwrap_err();
    assert!(
        matches!(&e, Error::NodeLost { node, .. } if node == "a2"),
        "{e}"
    );
    assert!(took < Duration::from_secs(8), "{took:?}");
    // The orphan died with its node (PR_SET_PDEATHSIG).
    let t0 = Instant::now();
    while Path::new(&format!("/proc/{}", g.pid())).exists()
        && std::fs::read_to_string(format!("/proc/{}/cmdline", g.pid()))
            .unwrap_or_default()
            .contains("sleep")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "child outlived its node"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // While a2 is down: requests for it fail with NodeLost, not a fake status.
    let c1 = client(&cl.nodes[0]).await;
    let e = c1.spawn(Some("a2"), sh("true")).await.unwrap_err();
    assert!(matches!(e, Error::NodeLost { .. }), "{e}");
    // Restart: new incarnation; the old GPID is reported lost, not confused with a new process.
    cl.nodes[1].start();
    let info = wait_peers_up(&c1, 1).await;
    let inc_after = client(&cl.nodes[1]).await.info().incarnation;
    assert_eq!(inc_after, inc_before + 1);
    assert_eq!(info.peers[0].incarnation, Some(inc_after));
    let e = c1.wait(&g, None).await.unwrap_err();
    assert!(
        matches!(&e, Error::NodeLost { detail, .. } if detail.contains("restarted")),
        "{e}"
    );
    let (g3, _) = c1.spawn(Some("a2"), sh("exit 0")).await.unwrap();
    assert_eq!(g3.incarnation(), inc_after);
    // An old-incarnation GPID naming the pid of a live new process is not that process:
    // signal and wait say the old incarnation is gone, and the new process is untouched.
    let (g4, _) = c1.spawn(Some("a2"), sh("sleep 1; exit 11")).await.unwrap();
    let alias = Gpid::new(g4.node().clone(), inc_before, g4.pid());
    for e in [
        c1.signal(&alias, 9).await.unwrap_err(),
        c1.wait(&alias, None).await.unwrap_err(),
    ] {
        assert!(
            matches!(&e, Error::NodeLost { detail, .. } if detail.contains("restarted")),
            "{e}"
        );
    }
    let rec = c1.wait(&g4, None).await.unwrap();
    assert_eq!(rec.status, ExitStatus::Exited(11));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_reservation_is_enforced_on_a_node() {
    if !is_root() {
        eprintln!("SKIP memory_reservation_is_enforced_on_a_node: needs root (cgroups)");
        return;
    }
    let cl = cluster(&["m1"], None, None);
    let c = client(&cl.nodes[0]).await;
    let r = c
        .reserve(
            None,
            gridos_rm::Request {
                cpus: 1.0,
                memory_bytes: 48 << 20,
                disk_bytes: 0,
                duration_secs: 60,
            },
        )
        .await
        .unwrap();
    assert!(
        r.reservation.enforcement.to_string().contains("cgroup"),
        "{}",
        r.reservation.enforcement
    );
    let mut spec = sh("x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while :; do x=$x$x; done");
    spec.reservation = Some(r.id.split('@').next().unwrap().to_string());
    let (g, enf) = c.spawn(None, spec).await.unwrap();
    assert!(enf.details.iter().any(|d| d.contains("memory")), "{enf}");
    let rec = c.wait(&g, Some(Duration::from_secs(20))).await.unwrap();
    assert_eq!(
        rec.status,
        ExitStatus::Signaled {
            signal: 9,
            core_dumped: false
        },
        "{rec:?}"
    );
    assert!(rec.oom_killed, "{rec:?}");
    assert!(rec.cgroup.unwrap().memory_peak_bytes.unwrap() <= 48 << 20);
    // The same with an implicit per-process reservation (what `gridos spawn --mem` does).
    let mut spec = sh("x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while :; do x=$x$x; done");
    spec.memory_bytes = Some(40 << 20);
    let (g, _) = c.spawn(None, spec).await.unwrap();
    let rec = c.wait(&g, Some(Duration::from_secs(20))).await.unwrap();
    assert!(rec.oom_killed, "{rec:?}");
    c.release(&r.id).await.unwrap();
    let res = c.resources(None).await.unwrap();
    assert!(
        res.reservations.is_empty(),
        "implicit reservation released with its process"
    );
}

// ------------------------------------------------------------------------------------------
// Network namespaces

struct Netns(Vec<String>);
impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().unwrap();
    assert!(st.success(), "ip {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_in_network_namespaces_use_tcp_and_work_end_to_end() {
    if !is_root() {
        eprintln!(
            "SKIP nodes_in_network_namespaces_use_tcp_and_work_end_to_end: needs root (netns)"
        );
        return;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        eprintln!("SKIP nodes_in_network_namespaces…: iproute2 (`ip`) not installed");
        return;
    }
    let tag = std::process::id() % 100000;
    let (na, nb) = (format!("gpa{tag}"), format!("gpb{tag}"));
    let _guard = Netns(vec![na.clone(), nb.clone()]);
    ip(&["netns", "add", &na]);
    ip(&["netns", "add", &nb]);
    let (va, vb) = (format!("gva{tag}"), format!("gvb{tag}"));
    ip(&[
        "link", "add", &va, "netns", &na, "type", "veth", "peer", "name", &vb, "netns", &nb,
    ]);
    for (ns, dev, addr) in [(&na, &va, "198.18.0.1/24"), (&nb, &vb, "198.18.0.2/24")] {
        ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
        ip(&["-n", ns, "link", "set", dev, "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
    let addrs = vec![
        "198.18.0.1:7101".parse().unwrap(),
        "198.18.0.2:7102".parse().unwrap(),
    ];
    let cl = cluster(
        &["ns1", "ns2"],
        Some(addrs),
        Some(vec![na.clone(), nb.clone()]),
    );
    let c1 = client(&cl.nodes[0]).await;
    let info = wait_peers_up(&c1, 1).await;
    // Different network namespace = different host: the link is TCP, and says why not unix.
    let p = &info.peers[0];
    assert_eq!(p.method, Some(gridos_comm::TransportKind::Tcp), "{p:?}");
    assert!(
        p.selection
            .as_deref()
            .unwrap()
            .contains("another host or network namespace"),
        "{p:?}"
    );
    let (g, _) = c1
        .spawn(
            Some("ns2"),
            sh("i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; exit 42"),
        )
        .await
        .unwrap();
    let rec = c1.wait(&g, None).await.unwrap();
    assert_eq!(rec.status, ExitStatus::Exited(42));
    assert!(rec.usage.user_cpu_us + rec.usage.sys_cpu_us > 0);
    let (echo, _) = c1.spawn(Some("ns2"), helper("echo", vec![])).await.unwrap();
    let (ping, _) = c1
        .spawn(
            None,
            helper("ping", vec![("PING_DST".into(), echo.to_string())]),
        )
        .await
        .unwrap();
    let pr = c1.wait(&ping, Some(Duration::from_secs(30))).await.unwrap();
    assert_eq!(pr.status, ExitStatus::Exited(0), "{:?}", pr.stderr);
    drop(cl);
}
