//! Confinement and data-connection security: a traversal corpus never reaches a canary
//! outside the docroot (read, write, list, delete, rename, chmod), PORT/EPRT to a foreign
//! address are refused, and a passive data connection from another address is refused.
//! The server runs unprivileged and not chrooted here: openat2 alone must hold.

#[path = "server_support.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use support::*;

const SECRET: &[u8] = b"CANARY-SECRET-DO-NOT-LEAK";

fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        let content = if meta.is_file() {
            std::fs::read(e.path()).unwrap()
        } else {
            Vec::new()
        };
        m.insert(
            e.file_name().to_string_lossy().into_owned(),
            (content, meta.permissions().mode()),
        );
    }
    m
}

#[test]
fn traversal_corpus_never_leaves_the_docroot() {
    let s = start(|_| {});
    let outside = s.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("canary.txt"), SECRET).unwrap();
    std::fs::set_permissions(
        outside.join("canary.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::os::unix::fs::symlink("../outside", s.root.join("rel")).unwrap();
    std::os::unix::fs::symlink(&outside, s.root.join("abs")).unwrap();
    std::os::unix::fs::symlink(outside.join("canary.txt"), s.root.join("canlink")).unwrap();
    std::os::unix::fs::symlink("../../outside/canary.txt", s.root.join("deeplink")).unwrap();
    std::fs::create_dir(s.root.join("sub")).unwrap();
    std::fs::write(s.root.join("inside.txt"), b"inside").unwrap();
    let before = snapshot(&outside);
    let host_abs = outside.join("canary.txt").display().to_string();
    let host_dir = outside.display().to_string();
    let corpus: Vec<String> = vec![
        "../outside/canary.txt".into(),
        "../../outside/canary.txt".into(),
        "/../outside/canary.txt".into(),
        "sub/../../outside/canary.txt".into(),
        "..%2foutside%2fcanary.txt".into(),
        "%2e%2e/outside/canary.txt".into(),
        "..%252foutside%252fcanary.txt".into(),
        "..\\outside\\canary.txt".into(),
        "....//outside/canary.txt".into(),
        "rel/canary.txt".into(),
        "abs/canary.txt".into(),
        "canlink".into(),
        "deeplink".into(),
        "sub/../rel/canary.txt".into(),
        host_abs.clone(),
        format!("/..{host_abs}"),
        host_dir.clone(),
        "rel".into(),
        "abs".into(),
        "~/canary.txt".into(),
    ];
    let mut c = Raw::anon(s.addr);
    for p in &corpus {
        if let Ok(bytes) = c.retr(p) {
            assert!(
                !bytes.windows(SECRET.len()).any(|w| w == SECRET),
                "RETR {p} leaked"
            );
        }
        for verb in ["LIST", "NLST", "MLSD"] {
            if let Ok(text) = c.list(&format!("{verb} {p}")) {
                assert!(
                    !text.contains("canary"),
                    "{verb} {p} listed outside: {text}"
                );
            }
        }
        let (code, text) = c.cmd(&format!("STAT {p}"));
        assert!(
            !text.contains("canary.txt") || code >= 400,
            "STAT {p}: {text}"
        );
        let (code, text) = c.cmd(&format!("MLST {p}"));
        assert!(
            code >= 400 || !text.contains(&format!("size={}", SECRET.len())),
            "MLST {p}: {text}"
        );
        if c.cmd(&format!("CWD {p}")).0 == 250 {
            if let Ok(t) = c.list("LIST") {
                assert!(!t.contains("canary"), "CWD {p} + LIST: {t}");
            }
            assert_eq!(c.cmd("CWD /").0, 250);
        }
        let _ = c.store("STOR", p, b"overwritten");
        let _ = c.store("APPE", p, b"appended");
        let _ = c.cmd(&format!("SITE CHMOD 777 {p}"));
        let _ = c.cmd(&format!("DELE {p}"));
        if c.cmd(&format!("RNFR {p}")).0 == 350 {
            let _ = c.cmd("RNTO stolen.txt");
        }
        let _ = c.cmd(&format!("MKD {p}/newdir"));
        let _ = c.cmd(&format!("RMD {p}"));
        assert_eq!(snapshot(&outside), before, "outside changed after {p}");
    }
    // NUL bytes: refused by the parser, nothing happens.
    c.send(b"RETR ../outside/canary.txt\0.txt\r\n");
    assert_eq!(c.reply().0, 501);
    c.send(b"DELE canlink\0\r\n");
    assert_eq!(c.reply().0, 501);
    assert_eq!(snapshot(&outside), before);
    // The server still serves what is inside.
    assert_eq!(c.retr("inside.txt").unwrap(), b"inside");
    assert_eq!(snapshot(&outside), before);
}

#[test]
fn port_and_eprt_to_foreign_addresses_are_refused() {
    let s = start(|_| {});
    let mut c = Raw::anon(s.addr);
    assert_eq!(c.cmd("PORT 10,0,0,1,4,1").0, 504);
    assert_eq!(c.cmd("PORT 127,0,0,2,4,1").0, 504);
    assert_eq!(c.cmd("PORT 127,0,0,1,0,21").0, 504, "privileged port");
    assert_eq!(c.cmd("EPRT |1|192.0.2.7|4000|").0, 504);
    assert_eq!(c.cmd("EPRT |1|127.0.0.1|4000|").0, 200);
    // Active mode to the client's own address works.
    std::fs::write(s.root.join("f"), b"active data").unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    assert_eq!(
        c.cmd(&format!("PORT 127,0,0,1,{},{}", port >> 8, port & 255))
            .0,
        200
    );
    c.send(b"RETR f\r\n");
    let (mut d, _) = l.accept().unwrap();
    assert_eq!(c.reply().0, 150);
    let mut buf = Vec::new();
    d.read_to_end(&mut buf).unwrap();
    assert_eq!(buf, b"active data");
    assert_eq!(c.reply().0, 226);
}

#[test]
fn passive_connection_from_another_address_is_refused() {
    let s = start(|c| c.data_timeout = Duration::from_secs(2));
    std::fs::write(s.root.join("f"), b"secret data").unwrap();
    let mut c = Raw::anon(s.addr);
    let a = c.epsv();
    // Connect to the data port from 127.0.0.2 while the control connection is 127.0.0.1.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let foreign = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        sock.connect(a).await.unwrap().into_std().unwrap()
    });
    foreign.set_nonblocking(false).unwrap();
    foreign
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (code, _) = c.cmd("RETR f");
    assert_eq!(code, 425, "the foreign connection must not be used");
    let mut buf = Vec::new();
    let _ = (&foreign).read_to_end(&mut buf);
    assert!(buf.is_empty(), "data went to a foreign address");
    let stats: std::collections::HashMap<_, _> = s.handle.stats().into_iter().collect();
    assert_eq!(stats["data_connections_refused"], "1");
    // The legitimate client still can.
    assert_eq!(c.retr("f").unwrap(), b"secret data");
}
