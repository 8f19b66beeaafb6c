//! Shared harness of the gridos-pm integration tests: real node daemons in separate processes.
//!
//! Each test binary that uses it declares `mod util;` and the [`zz_helper`]-style entry point
//! (`#[test] fn zz_helper() { util::helper_main() }`): the daemons and the child programs are
//! that same binary, run with `GRIDOS_HELPER=…` and the filter `zz_helper`.

// Every test file uses a different part of the harness.
#![allow(dead_code)]

use gridos_pm::proto::{SpawnSpec, StdioSpec};
use gridos_pm::{Client, Gpid, Mailbox};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The entry point of the helper roles, called from each test binary's `zz_helper` test.
/// Without `GRIDOS_HELPER` it does nothing.
pub fn helper_main() {
    let Ok(role) = std::env::var("GRIDOS_HELPER") else {
        return;
    };
    match role.as_str() {
        "node" => {
            let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
            let mut cfg = gridos_pm::node::NodeConfig::new(env("GH_ID").unwrap().parse().unwrap());
            cfg.listen = env("GH_LISTEN").map(|a| a.parse().unwrap());
            cfg.ctl_socket = env("GH_SOCK").unwrap().into();
            cfg.state_dir = env("GH_STATE").unwrap().into();
            cfg.key = env("GH_KEY").map(|k| gridos_pm::auth::load_key(Path::new(&k)).unwrap());
            if let Some(t) = env("GH_HANDSHAKE_TIMEOUT") {
                cfg.handshake_timeout = Duration::from_secs_f64(t.parse().unwrap());
            }
            for p in env("GH_PEERS")
                .unwrap_or_default()
                .split(',')
                .filter(|s| !s.is_empty())
            {
                let (id, addr) = p.split_once('=').unwrap();
                cfg.peers.push((id.parse().unwrap(), addr.parse().unwrap()));
            }
            if let Err(e) = gridos_pm::node::run_blocking(cfg) {
                eprintln!("node failed: {e}");
                std::process::exit(2);
            }
            std::process::exit(0);
        }
        "echo" => {
            let code = gridos_pm::runtime().unwrap().block_on(async {
                let mb = Mailbox::from_env().await.unwrap();
                let m = mb
                    .recv(Some(7), Some(Duration::from_secs(20)))
                    .await
                    .unwrap();
                let mut p = m.payload.clone();
                p.reverse();
                mb.send(&m.src, 8, &p).await.unwrap();
                0
            });
            std::process::exit(code);
        }
        "ping" => {
            let code = gridos_pm::runtime().unwrap().block_on(async {
                let mb = Mailbox::from_env().await.unwrap();
                let dst: Gpid = std::env::var("PING_DST").unwrap().parse().unwrap();
                mb.send(&dst, 7, b"hello grid").await.unwrap();
                let r = mb
                    .recv(Some(8), Some(Duration::from_secs(20)))
                    .await
                    .unwrap();
                println!(
                    "reply from {} tag {}: {}",
                    r.src,
                    r.tag,
                    String::from_utf8_lossy(&r.payload)
                );
                if r.payload == b"dirg olleh" && r.src == dst {
                    0
                } else {
                    3
                }
            });
            std::process::exit(code);
        }
        other => panic!("unknown helper role {other}"),
    }
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct NodeProc {
    pub id: String,
    pub sock: PathBuf,
    pub state: PathBuf,
    pub listen: SocketAddr,
    pub child: Option<Child>,
    pub netns: Option<String>,
    pub peers: String,
    pub key: PathBuf,
    /// Extra environment for the daemon (`GH_HANDSHAKE_TIMEOUT`…).
    pub env: Vec<(String, String)>,
}

impl NodeProc {
    pub fn start(&mut self) {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args(["zz_helper", "--exact", "--nocapture", "--test-threads=1"])
            .env("GRIDOS_HELPER", "node")
            .env("GH_ID", &self.id)
            .env("GH_LISTEN", self.listen.to_string())
            .env("GH_SOCK", &self.sock)
            .env("GH_STATE", &self.state)
            .env("GH_KEY", &self.key)
            .env("GH_PEERS", &self.peers)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null());
        self.child = Some(cmd.spawn().unwrap());
        let t0 = Instant::now();
        while std::os::unix::net::UnixStream::connect(&self.sock).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "node {} did not come up",
                self.id
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(3) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<NodeProc>,
}

pub fn write_key(path: &Path, key: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, key).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Starts nodes `ids` with addresses `addrs`, all peering with each other.
pub fn cluster(
    ids: &[&str],
    addrs: Option<Vec<SocketAddr>>,
    netns: Option<Vec<String>>,
) -> Cluster {
    cluster_env(ids, addrs, netns, &[])
}

/// [`cluster`], each daemon with the extra environment `env`.
pub fn cluster_env(
    ids: &[&str],
    addrs: Option<Vec<SocketAddr>>,
    netns: Option<Vec<String>>,
    env: &[(&str, &str)],
) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    // Children run as `nobody` when we are root: let them reach the sockets.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = dir.path().join("key");
    write_key(&key, &gridos_pm::auth::random_hex(32));
    let addrs = addrs.unwrap_or_else(|| {
        ids.iter()
            .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
            .collect()
    });
    let mut nodes: Vec<NodeProc> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| NodeProc {
            id: id.to_string(),
            sock: dir.path().join(format!("{id}.sock")),
            state: dir.path().join(format!("state-{id}")),
            listen: addrs[i],
            child: None,
            netns: netns.as_ref().map(|n| n[i].clone()),
            peers: ids
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(j, p)| format!("{p}={}", addrs[j]))
                .collect::<Vec<_>>()
                .join(","),
            key: key.clone(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
        .collect();
    for n in &mut nodes {
        n.start();
    }
    Cluster { dir, nodes }
}

pub async fn client(n: &NodeProc) -> Client {
    Client::connect_unix(&n.sock).await.unwrap()
}

pub async fn wait_peers_up(c: &Client, n: usize) -> gridos_pm::proto::NodeInfo {
    let t0 = Instant::now();
    loop {
        let info = c.hello().await.unwrap();
        if info.peers.iter().filter(|p| p.state == "up").count() == n {
            return info;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "peers not up: {:?}",
            info.peers
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn sh(script: &str) -> SpawnSpec {
    SpawnSpec {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        stdout: StdioSpec::Capture,
        stderr: StdioSpec::Capture,
        ..Default::default()
    }
}

pub fn helper(role: &str, env: Vec<(String, String)>) -> SpawnSpec {
    let exe = std::env::current_exe().unwrap();
    let mut env = env;
    env.push(("GRIDOS_HELPER".into(), role.into()));
    SpawnSpec {
        argv: vec![
            exe.display().to_string(),
            "zz_helper".into(),
            "--exact".into(),
            "--nocapture".into(),
            "--test-threads=1".into(),
        ],
        env,
        stdout: StdioSpec::Capture,
        stderr: StdioSpec::Capture,
        ..Default::default()
    }
}
