//! Data-connection security: PORT/EPRT to a foreign address are refused, and a passive data
//! connection from another address is refused. (Paths that try to leave the docroot:
//! `server_traversal.rs`.)

#[path = "server_support.rs"]
mod support;

use std::io::Read;
use std::time::Duration;

use support::*;

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
