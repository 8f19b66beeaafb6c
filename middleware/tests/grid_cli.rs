//! End-to-end: two `gridos node` daemons and the grid subcommands of the real binary.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const GRIDOS: &str = env!("CARGO_BIN_EXE_gridos");

struct Daemon(Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our own child's.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn gridos(sock: &Path, args: &[&str]) -> Output {
    Command::new(GRIDOS)
        .args(args)
        .env("GRIDOS_NODE", sock)
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn start(dir: &Path, id: &str, listen: u16, peer: (&str, u16)) -> Daemon {
    let child = Command::new(GRIDOS)
        .args([
            "node",
            "--node-id",
            id,
            "--listen",
            &format!("127.0.0.1:{listen}"),
        ])
        .args(["--peer", &format!("{}=127.0.0.1:{}", peer.0, peer.1)])
        .arg("--key")
        .arg(dir.join("key"))
        .arg("--ctl-socket")
        .arg(dir.join(format!("{id}.sock")))
        .arg("--state-dir")
        .arg(dir.join(format!("state-{id}")))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let d = Daemon(child);
    let t0 = Instant::now();
    while std::os::unix::net::UnixStream::connect(dir.join(format!("{id}.sock"))).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "node {id} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d
}

#[test]
fn grid_commands_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "an-example-shared-key-for-tests-only").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (p1, p2) = (port(), port());
    let _n1 = start(dir.path(), "c1", p1, ("c2", p2));
    let _n2 = start(dir.path(), "c2", p2, ("c1", p1));
    let s1 = dir.path().join("c1.sock");

    // Remote spawn (retry while the peer link comes up).
    let t0 = Instant::now();
    let gpid = loop {
        let o = gridos(
            &s1,
            &[
                "spawn",
                "--node",
                "c2",
                "--",
                "sh",
                "-c",
                "echo hello from c2; exit 5",
            ],
        );
        if o.status.success() {
            break text(&o).0.trim().to_string();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "spawn failed: {:?}",
            text(&o)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(gpid.starts_with("c2.1."), "{gpid}");
    let o = gridos(&s1, &["wait", &gpid]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(5), "{out}");
    assert!(out.starts_with("hello from c2\n"), "{out}");
    assert!(
        out.contains(&format!("{gpid}: exited with code 5")),
        "{out}"
    );
    assert!(out.contains("accounting: user_cpu_us="), "{out}");
    assert!(!out.contains("max_rss_bytes=0 "), "{out}");

    // --json spawn, kill -s, wait reports the signal (exit code 128+15).
    let o = gridos(&s1, &["spawn", "--json", "--", "sleep", "30"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let g2 = v["gpid"].as_str().unwrap().to_string();
    assert!(g2.starts_with("c1.1."));
    let o = gridos(&s1, &["kill", "-s", "TERM", &g2]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = gridos(&s1, &["wait", &g2]);
    assert_eq!(o.status.code(), Some(143));
    assert!(text(&o).0.contains("killed by signal 15 (SIGTERM)"));

    // ps: local, per node, grid-wide, JSON.
    let (out, _) = text(&gridos(&s1, &["ps", "--all"]));
    assert!(out.contains(&gpid) && out.contains(&g2), "{out}");
    let (out, _) = text(&gridos(&s1, &["ps", "--node", "c2", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["gpid"] == gpid.as_str())
    );

    // Resources, reservations.
    let (out, _) = text(&gridos(&s1, &["res", "--node", "c2", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["resources"]["cpus"]["count"].as_u64().unwrap() >= 1,
        "{out}"
    );
    let o = gridos(
        &s1,
        &[
            "reserve",
            "--cpus",
            "0.5",
            "--mem",
            "64M",
            "--duration",
            "60",
            "--node",
            "c2",
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let rid = text(&o).0.trim().to_string();
    assert!(rid.ends_with("@c2"), "{rid}");
    assert!(
        text(&o).1.contains("enforcement: "),
        "the enforcement in effect is reported"
    );
    let (out, _) = text(&gridos(&s1, &["res", "--node", "c2"]));
    assert!(out.contains(&format!("reservation {rid}")), "{out}");
    let o = gridos(&s1, &["spawn", "--reservation", &rid, "--", "true"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let g3 = text(&o).0.trim().to_string();
    assert_eq!(gridos(&s1, &["wait", &g3]).status.code(), Some(0));
    let o = gridos(&s1, &["release", &rid]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = gridos(
        &s1,
        &[
            "reserve",
            "--cpus",
            "1",
            "--mem",
            "1000000000000000",
            "--duration",
            "5",
        ],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).1.contains("beyond this node's capacity"),
        "{:?}",
        text(&o)
    );

    // Clear errors.
    for (args, want) in [
        (vec!["wait", "c1.1"], "malformed GPID"),
        (vec!["wait", "zz.1.5"], "unknown node \"zz\""),
        (
            vec!["spawn", "--node", "bad.id", "--", "true"],
            "invalid node id",
        ),
        (vec!["kill", "-s", "NOPE", &gpid], "unknown signal"),
        (vec!["release", "r1-99@c1"], "no reservation"),
    ] {
        let o = gridos(&s1, &args);
        assert!(!o.status.success());
        assert!(text(&o).1.contains(want), "{args:?}: {:?}", text(&o));
    }
    let o = gridos(&dir.path().join("nope.sock"), &["ps"]);
    assert!(
        text(&o).1.contains("is `gridos node` running?"),
        "{:?}",
        text(&o)
    );
    // Without a key, --listen is refused.
    let o = Command::new(GRIDOS)
        .args(["node", "--node-id", "x", "--listen", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).1.contains("--listen needs --key"),
        "{:?}",
        text(&o)
    );
}

#[test]
fn node_closes_tcp_connections_that_do_not_authenticate_within_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "an-example-shared-key-for-tests-only").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = Command::new(GRIDOS)
        .args(["node", "--node-id", "t0", "--handshake-timeout", "0"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).1.contains("--handshake-timeout"), "{:?}", text(&o));
    let p = port();
    let sock = dir.path().join("t1.sock");
    let _d = Daemon(
        Command::new(GRIDOS)
            .args(["node", "--node-id", "t1", "--listen"])
            .arg(format!("127.0.0.1:{p}"))
            .arg("--key")
            .arg(&key)
            .arg("--ctl-socket")
            .arg(&sock)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--handshake-timeout", "1"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let first = Instant::now();
    let (mut s, t0) = loop {
        // Taken before connecting: the node's clock for this connection starts later.
        let t0 = Instant::now();
        match std::net::TcpStream::connect(("127.0.0.1", p)) {
            Ok(s) => break (s, t0),
            Err(e) => assert!(first.elapsed() < Duration::from_secs(15), "{e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // A silent peer: after a second the node says why and closes the connection.
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut s, &mut got).expect("connection not closed");
    assert!(t0.elapsed() >= Duration::from_secs(1), "{:?}", t0.elapsed());
    assert!(
        String::from_utf8_lossy(&got).contains("not authenticated within 1s"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}
