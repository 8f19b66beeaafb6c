//! gridos-pm: spawn + wait latency of `/bin/true` through node daemons, local and remote.
//!
//! Three node daemons run in this process (`gridos_pm::node::start` on a 2-worker tokio
//! runtime), each with its own unix control socket, state directory and TCP listener on
//! 127.0.0.1, sharing an HMAC key: `a` and `c` peer with `b`. `a` keeps the default transport
//! preferences (its link to `b`, on the same host, is the unix socket); `c` denies unix, so its
//! link to `b` is TCP. Cases, each one `spawn` followed by `wait` for the exit record:
//!
//! - `local`: a client on `a`'s unix socket spawns on `a`;
//! - `local-b`: a client on `b`'s unix socket spawns on `b` (node `b` serves all the remote
//!   cases; this separates its own cost from the routing);
//! - `remote-unix-link`: the same client spawns on `b`, routed by `a` over its unix link;
//! - `remote-tcp-link`: a client on `c`'s unix socket spawns on `b`, routed over TCP;
//! - `tcp-client`: a client authenticated by HMAC over TCP to `b` spawns on `b`;
//! - `direct`: the reference peer, `std::process::Command::new("/bin/true").status()` in
//!   this process — fork/exec/wait with no daemon.
//!
//! When run as root the daemons start children as `nobody` and place each in a per-process
//! cgroup for accounting (what `gridos node` does as root); otherwise children run as the
//! current user under rlimits. The mode in effect is printed at start.
//!
//! `cargo bench -p gridos-benches --bench pm`; summarise with
//! `python3 benches/criterion_summary.py pm/` (ratios against `local`).

use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use gridos_comm::{Preferences, TransportKind};
use gridos_pm::node::NodeConfig;
use gridos_pm::proto::SpawnSpec;
use gridos_pm::{Client, ExitStatus};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
}

fn spec() -> SpawnSpec {
    SpawnSpec {
        argv: vec!["/bin/true".into()],
        ..Default::default()
    }
}

async fn spawn_wait(c: &Client, node: Option<&str>) {
    let (g, _) = c.spawn(node, spec()).await.expect("spawn");
    let rec = c.wait(&g, None).await.expect("wait");
    assert_eq!(rec.status, ExitStatus::Exited(0), "{rec:?}");
}

struct Nodes {
    ids: [String; 3],
    a: Client,
    b: Client,
    c: Client,
    tcp_b: Client,
}

/// Starts nodes a, b, c (ids unique to this process, so that a node's start-up cleanup of
/// leftover cgroups never touches another run's) and connects the clients.
fn start_nodes(rt: &Runtime, dir: &Path) -> Nodes {
    let pid = std::process::id();
    let ids = ["a", "b", "c"].map(|n| format!("pmb{pid}{n}"));
    let key = gridos_pm::auth::random_hex(32).into_bytes();
    let addrs = [free_port(), free_port(), free_port()];
    let cfg = |i: usize, peers: Vec<usize>, deny_unix: bool| {
        let mut cfg = NodeConfig::new(ids[i].parse().expect("node id"));
        cfg.listen = Some(addrs[i]);
        cfg.key = Some(key.clone());
        cfg.ctl_socket = dir.join(format!("{}.sock", ids[i]));
        cfg.state_dir = dir.join(format!("state-{}", ids[i]));
        cfg.peers = peers
            .into_iter()
            .map(|j| (ids[j].parse().expect("node id"), addrs[j]))
            .collect();
        if deny_unix {
            cfg.transport = Preferences {
                deny: vec![TransportKind::InProc, TransportKind::Unix],
                ..Default::default()
            };
        }
        cfg
    };
    let cfgs = [
        cfg(0, vec![1], false),
        cfg(1, vec![0, 2], false),
        cfg(2, vec![1], true),
    ];
    rt.block_on(async {
        let mut enforcement = String::new();
        for c in cfgs.iter().cloned() {
            let node = gridos_pm::node::start(c).await.expect("node start");
            enforcement = node.procs().enforcer().describe();
        }
        eprintln!(
            "pm bench: running as {}; enforcement: {enforcement}",
            if nix_is_root() {
                "root (children run as nobody)"
            } else {
                "non-root (children run as this user)"
            }
        );
        let a = Client::connect_unix(&cfgs[0].ctl_socket)
            .await
            .expect("connect a");
        let b = Client::connect_unix(&cfgs[1].ctl_socket)
            .await
            .expect("connect b");
        let c = Client::connect_unix(&cfgs[2].ctl_socket)
            .await
            .expect("connect c");
        // Wait until a and c see b up, and report the link methods.
        for (client, name) in [(&a, &ids[0]), (&c, &ids[2])] {
            let t0 = Instant::now();
            loop {
                let info = client.hello().await.expect("hello");
                if let Some(p) = info
                    .peers
                    .iter()
                    .find(|p| p.node == ids[1] && p.state == "up")
                {
                    eprintln!(
                        "pm bench: link {name} -> {}: {:?} ({})",
                        ids[1],
                        p.method,
                        p.selection.as_deref().unwrap_or("")
                    );
                    break;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(15),
                    "{name}: peer not up: {:?}",
                    info.peers
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let tcp_b = Client::connect_tcp(addrs[1], &key, "pm-bench")
            .await
            .expect("connect b over TCP");
        Nodes {
            ids,
            a,
            b,
            c,
            tcp_b,
        }
    })
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn pm(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    {
        // Children run as nobody when we are root; let them reach the directory.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod tempdir");
    }
    let nodes = start_nodes(&rt, dir.path());
    let b = nodes.ids[1].as_str();

    let mut g = c.benchmark_group("pm/spawn_wait_true");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.bench_function(BenchmarkId::from_parameter("direct"), |bch| {
        bch.iter(|| {
            let st = std::process::Command::new("/bin/true")
                .status()
                .expect("run /bin/true");
            assert!(st.success());
        })
    });
    let cases: [(&str, &Client, Option<&str>); 5] = [
        ("local", &nodes.a, None),
        ("local-b", &nodes.b, None),
        ("remote-unix-link", &nodes.a, Some(b)),
        ("remote-tcp-link", &nodes.c, Some(b)),
        ("tcp-client", &nodes.tcp_b, None),
    ];
    for (name, client, node) in cases {
        g.bench_function(BenchmarkId::from_parameter(name), |bch| {
            bch.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        spawn_wait(client, node).await;
                    }
                    t.elapsed()
                })
            })
        });
    }
    g.finish();
    drop(nodes);
    rt.shutdown_timeout(Duration::from_secs(2));
}

criterion_group!(benches, pm);
criterion_main!(benches);
