//! Server-to-server ("third-party") transfers and the data-connection policy that makes them
//! safe, over loopback with the servers on distinct addresses (127.0.0.2, .3, .4 …) while the
//! client talks from 127.0.0.1, so a connection between two servers really comes from a
//! foreign address. Bytes are always checked by SHA-256.
//!
//! - Our client library ([`third_party::transfer`]) between two gridos servers: stream mode,
//!   MODE E with four streams, CKSM verification, ERET/ESTO ranges, a resumed copy.
//! - Between gridos ftpd and globus-gridftp-server, both directions, stream and MODE E.
//! - `globus-url-copy` driving third-party copies between two gridos servers and between
//!   gridos and globus-gridftp-server, both directions.
//! - Refusals: an anonymous session's PORT/SPOR to another host (504), a foreign host
//!   connecting to an anonymous session's passive port (reset, 425), both let through by
//!   `ftp.third_party_hosts` (set from the config, `ServerConfig::set` and the control
//!   socket) or `ftp.allow_third_party`; authenticated users allowed; privileged ports
//!   refused.
//!
//! Missing peers skip with a message (fail with CI=true).

#[path = "server_support.rs"]
mod support;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use gridos_ftp::checksum::Algorithm;
use gridos_ftp::client::{
    Client, ClientConfig, Error, GridOptions, Side, ThirdPartyOptions, ThirdPartyReport,
    third_party,
};
use gridos_ftp::server::ServerConfig;
use support::*;

const USER: &str = "tp";
const PASS: &str = "tp-secret";

/// A gridos server on `ip`: anonymous access with write, the user [`USER`], a short data
/// timeout (refused cases end quickly); `f` adjusts.
fn server(ip: &str, f: impl FnOnce(&mut ServerConfig)) -> TestServer {
    start(|c| {
        c.listen = format!("{ip}:0").parse().unwrap();
        c.users = vec![(USER.into(), PASS.into())];
        c.data_timeout = Duration::from_secs(4);
        f(c);
    })
}

/// Two servers, the source on 127.0.0.2 holding `data` as `name`, the destination on
/// 127.0.0.3.
fn pair(name: &str, data: &[u8]) -> (TestServer, TestServer) {
    let a = server("127.0.0.2", |_| {});
    let b = server("127.0.0.3", |_| {});
    std::fs::write(a.root.join(name), data).unwrap();
    (a, b)
}

/// A logged-in client (as [`USER`], or anonymous).
fn client(addr: SocketAddr, anonymous: bool) -> Client {
    let mut cfg = ClientConfig::default();
    cfg.reply_timeout = Duration::from_secs(20);
    cfg.data_timeout = Duration::from_secs(20);
    let mut c = Client::connect(addr, cfg).unwrap();
    if anonymous {
        c.login_anonymous().unwrap();
    } else {
        c.login(USER, PASS).unwrap();
    }
    c
}

fn grid(streams: u32) -> GridOptions {
    let mut g = GridOptions::default();
    g.streams = streams;
    g
}

fn opts(
    grid: Option<GridOptions>,
    verify: Option<Algorithm>,
    range: Option<(u64, u64)>,
) -> ThirdPartyOptions {
    let mut o = ThirdPartyOptions::default();
    o.grid = grid;
    o.verify = verify;
    o.range = range;
    o
}

fn assert_file(path: &Path, want: &[u8], what: &str) {
    let got = std::fs::read(path).unwrap_or_else(|e| panic!("{what}: {}: {e}", path.display()));
    assert!(
        got.len() == want.len() && sha(&got) == sha(want),
        "{what}: {} holds {} bytes (sha256 {}), expected {} bytes (sha256 {})",
        path.display(),
        got.len(),
        sha(&got),
        want.len(),
        sha(want)
    );
}

fn stats(s: &TestServer) -> std::collections::HashMap<String, String> {
    s.handle.stats().into_iter().collect()
}

/// The two clients can still talk to their servers.
fn still_usable(a: &mut Client, b: &mut Client) {
    a.noop().expect("source session usable after the transfer");
    b.noop()
        .expect("destination session usable after the transfer");
}

fn expect_refused(r: Result<ThirdPartyReport, Error>, side: Side, code: u16, what: &str) {
    match r {
        Err(e @ Error::ThirdPartyRefused { .. }) => {
            assert!(e.is_third_party_refused());
            let Error::ThirdPartyRefused {
                side: s, code: c, ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!((*s, *c), (side, code), "{what}: {e}");
            assert_eq!(e.reply_code(), Some(code));
        }
        other => panic!("{what}: expected a third-party refusal, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// two gridos servers

#[test]
fn gridos_to_gridos_stream_and_mode_e_with_verify() {
    let data = random_bytes(6 * 1024 * 1024 + 321, 1);
    let (a, b) = pair("src.bin", &data);
    let (mut src, mut dst) = (client(a.addr, false), client(b.addr, false));

    let r = third_party::transfer(
        &mut src,
        "src.bin",
        &mut dst,
        "stream.bin",
        &opts(None, None, None),
    )
    .unwrap();
    assert_file(&b.root.join("stream.bin"), &data, "stream mode");
    assert_eq!(r.bytes, data.len() as u64);
    assert!(!r.mode_e);
    assert_eq!(r.streams, 1);
    assert_eq!(r.control_round_trips, 2, "{r:?}");
    assert_eq!(r.checksum, None);

    // MODE E, four streams, SHA-256 on both sides: the same session switches modes.
    let r = third_party::transfer(
        &mut src,
        "/src.bin",
        &mut dst,
        "/modee.bin",
        &opts(Some(grid(4)), Some(Algorithm::Sha256), None),
    )
    .unwrap();
    assert_file(&b.root.join("modee.bin"), &data, "MODE E -p 4");
    assert!(r.mode_e);
    assert_eq!(r.streams, 4);
    assert_eq!(r.bytes, data.len() as u64);
    assert_eq!(r.checksum.as_deref(), Some(sha(&data).as_str()));
    assert_eq!(
        r.control_round_trips, 2,
        "verify costs no round trip: {r:?}"
    );

    // And back to stream mode with MD5.
    let r = third_party::transfer(
        &mut dst,
        "modee.bin",
        &mut src,
        "back.bin",
        &opts(None, Some(Algorithm::Md5), None),
    )
    .unwrap();
    assert_file(&a.root.join("back.bin"), &data, "stream mode back, B → A");
    assert_eq!(r.checksum.as_ref().map(String::len), Some(32));

    // The data went server to server: no client address connected, no foreign one refused.
    for s in [&a, &b] {
        assert_eq!(stats(s)["data_connections_refused"], "0");
    }
    // The sessions stay usable for ordinary transfers.
    let out = tempfile::tempfile().unwrap();
    dst.get("stream.bin", &out, 0, 0).unwrap();
    still_usable(&mut src, &mut dst);
    for s in [&a, &b] {
        assert!(
            !std::fs::read_dir(&s.root).unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("gridos-part")),
            "partial files left"
        );
    }
}

#[test]
fn gridos_to_gridos_ranges_and_restart() {
    let data = random_bytes(3 * 1024 * 1024 + 77, 2);
    let (a, b) = pair("f.bin", &data);
    let (mut src, mut dst) = (client(a.addr, false), client(b.addr, false));

    // MODE E range: ERET P off len on A, ESTO A off on B: the bytes land at the same offset.
    let (off, len) = (1024 * 1024 + 3, 1500 * 1000);
    let r = third_party::transfer(
        &mut src,
        "f.bin",
        &mut dst,
        "part.bin",
        &opts(Some(grid(2)), Some(Algorithm::Adler32), Some((off, len))),
    )
    .unwrap();
    assert_eq!(r.bytes, len);
    let got = std::fs::read(b.root.join("part.bin")).unwrap();
    assert_eq!(got.len() as u64, off + len);
    assert_eq!(
        sha(&got[off as usize..]),
        sha(&data[off as usize..(off + len) as usize]),
        "MODE E range"
    );
    assert!(r.checksum.is_some());

    // Stream-mode range past the end: clipped to the file, into an existing file whose other
    // bytes stay.
    let mut existing = data.clone();
    existing[2_000_000..].iter_mut().for_each(|b| *b = 0);
    std::fs::write(b.root.join("fill.bin"), &existing).unwrap();
    let r = third_party::transfer(
        &mut src,
        "f.bin",
        &mut dst,
        "fill.bin",
        &opts(None, Some(Algorithm::Md5), Some((2_000_000, 10 << 20))),
    )
    .unwrap();
    assert_eq!(r.bytes, data.len() as u64 - 2_000_000);
    assert_file(
        &b.root.join("fill.bin"),
        &data,
        "stream range fills the tail",
    );

    // A range starting past the end is refused before anything moves.
    let e = third_party::transfer(
        &mut src,
        "f.bin",
        &mut dst,
        "never.bin",
        &opts(None, None, Some((data.len() as u64 + 1, 5))),
    )
    .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    assert!(!b.root.join("never.bin").exists());

    // Resume: B holds the first 1 MiB; REST on both sides sends only the rest.
    let n = 1 << 20;
    std::fs::write(b.root.join("resumed.bin"), &data[..n]).unwrap();
    let mut o = opts(None, Some(Algorithm::Sha256), None);
    o.restart = Some(n as u64);
    let r = third_party::transfer(&mut src, "f.bin", &mut dst, "resumed.bin", &o).unwrap();
    assert_eq!(r.bytes, (data.len() - n) as u64);
    assert_eq!(r.checksum.as_deref(), Some(sha(&data).as_str()));
    assert_file(&b.root.join("resumed.bin"), &data, "resumed copy");

    // Impossible combinations are refused before anything is sent.
    let mut o = opts(Some(grid(2)), None, None);
    o.restart = Some(5);
    assert!(matches!(
        third_party::transfer(&mut src, "f.bin", &mut dst, "x", &o),
        Err(Error::InvalidArgument(_))
    ));
    // A missing source: reported, nothing created.
    let e = third_party::transfer(
        &mut src,
        "nope.bin",
        &mut dst,
        "nope.bin",
        &opts(None, None, None),
    )
    .unwrap_err();
    assert_eq!(e.reply_code(), Some(550), "{e:?}");
    assert!(!e.is_third_party_refused());
    assert!(!b.root.join("nope.bin").exists());
    still_usable(&mut src, &mut dst);
}

// ---------------------------------------------------------------------------------------
// refusals: the bounce protection holds

#[test]
fn anonymous_source_may_not_send_to_another_host() {
    let data = random_bytes(200_000, 3);
    let (a, b) = pair("f.bin", &data);
    let (mut src, mut dst) = (client(a.addr, true), client(b.addr, false));
    for (o, what) in [
        (opts(None, None, None), "PORT"),
        (opts(Some(grid(4)), None, None), "SPOR"),
    ] {
        let r = third_party::transfer(&mut src, "f.bin", &mut dst, "out.bin", &o);
        expect_refused(r, Side::Source, 504, what);
        assert!(!b.root.join("out.bin").exists(), "{what}: a file arrived");
        still_usable(&mut src, &mut dst);
    }
    // The raw replies are clear about why.
    let (mut raw, _) = Raw::connect(a.addr);
    assert_eq!(raw.cmd("USER anonymous").0, 331);
    assert_eq!(raw.cmd("PASS x@").0, 230);
    let (code, text) = raw.cmd("PORT 127,0,0,3,39,16");
    assert_eq!(code, 504);
    assert!(text.contains("client's"), "{text}");
    let (code, text) = raw.cmd("SPOR 127,0,0,3,39,16 127,0,0,3,39,17");
    assert_eq!(code, 504, "{text}");
    assert_eq!(raw.cmd("EPRT |1|127.0.0.3|10000|").0, 504);
    // Its own address is fine.
    assert_eq!(raw.cmd("PORT 127,0,0,1,39,16").0, 200);
}

#[test]
fn anonymous_destination_refuses_the_foreign_connection() {
    let data = random_bytes(8 * 1024 * 1024, 4);
    let (a, b) = pair("f.bin", &data);
    let (mut src, mut dst) = (client(a.addr, false), client(b.addr, true));
    let mut refused = 0;
    for (o, what) in [
        (opts(None, None, None), "stream (PASV)"),
        (opts(Some(grid(4)), None, None), "MODE E (SPAS)"),
    ] {
        // A's PORT/SPOR is accepted (authenticated), B turns A's connection away.
        let r = third_party::transfer(&mut src, "f.bin", &mut dst, "in.bin", &o);
        expect_refused(r, Side::Destination, 425, what);
        assert!(
            !b.root.join("in.bin").exists(),
            "{what}: the file was stored"
        );
        let now: u64 = stats(&b)["data_connections_refused"].parse().unwrap();
        assert!(now > refused, "{what}: B counted no refused connection");
        refused = now;
        still_usable(&mut src, &mut dst);
    }
}

#[test]
fn a_foreign_host_on_a_passive_port_needs_a_login_or_trust() {
    let s = server("127.0.0.2", |c| c.data_timeout = Duration::from_secs(2));
    std::fs::write(s.root.join("f"), b"passive data").unwrap();
    // From 127.0.0.5 to the passive port of a session whose client is 127.0.0.1.
    let foreign_retr = |anonymous: bool| -> Result<Vec<u8>, u16> {
        let (mut raw, _) = Raw::connect(s.addr);
        if anonymous {
            assert_eq!(raw.cmd("USER anonymous").0, 331);
            assert_eq!(raw.cmd("PASS x@").0, 230);
        } else {
            assert_eq!(raw.cmd(&format!("USER {USER}")).0, 331);
            assert_eq!(raw.cmd(&format!("PASS {PASS}")).0, 230);
        }
        assert_eq!(raw.cmd("TYPE I").0, 200);
        let (code, text) = raw.cmd("PASV");
        assert_eq!(code, 227, "{text}");
        let a = gridos_ftp::proto::addr::parse_pasv_reply(&text).unwrap();
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.bind(&SocketAddr::from(([127, 0, 0, 5], 0)).into())
            .unwrap();
        sock.connect(&SocketAddr::V4(a).into()).unwrap();
        let mut d: TcpStream = sock.into();
        d.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (code, _) = raw.cmd("RETR f");
        if code >= 400 {
            return Err(code);
        }
        let mut buf = Vec::new();
        let _ = d.read_to_end(&mut buf);
        match raw.reply().0 {
            226 => Ok(buf),
            c => Err(c),
        }
    };
    assert_eq!(foreign_retr(true), Err(425), "anonymous: refused");
    assert_eq!(stats(&s)["data_connections_refused"], "1");
    assert_eq!(
        foreign_retr(false).unwrap(),
        b"passive data",
        "authenticated: allowed"
    );
    // Trusted from now on (a prefix that holds .5), for new sessions.
    assert_eq!(
        s.handle
            .set("ftp.third_party_hosts", "127.0.0.4/31")
            .unwrap(),
        "applies to new sessions"
    );
    assert_eq!(
        s.handle.get("ftp.third_party_hosts").unwrap(),
        "127.0.0.4/31"
    );
    assert_eq!(
        foreign_retr(true).unwrap(),
        b"passive data",
        "trusted host: allowed"
    );
    assert_eq!(stats(&s)["data_connections_refused"], "1");
    assert!(
        s.handle
            .set("ftp.third_party_hosts", "127.0.0.300")
            .is_err()
    );
    assert_eq!(
        s.handle.set("ftp.third_party_hosts", "none").unwrap(),
        "applies to new sessions"
    );
    assert_eq!(foreign_retr(true), Err(425), "trust withdrawn");
    // Privileged ports stay closed even to an authenticated user.
    let (mut raw, _) = Raw::connect(s.addr);
    assert_eq!(raw.cmd(&format!("USER {USER}")).0, 331);
    assert_eq!(raw.cmd(&format!("PASS {PASS}")).0, 230);
    assert_eq!(
        raw.cmd("PORT 127,0,0,3,39,16").0,
        200,
        "another host: allowed"
    );
    let (code, text) = raw.cmd("PORT 127,0,0,3,0,25");
    assert_eq!(code, 504, "{text}");
    assert!(text.contains("1024"), "{text}");
}

#[test]
fn trusted_hosts_and_allow_third_party_let_anonymous_sessions_through() {
    let ctl_dir = tempfile::tempdir().unwrap();
    let sock = ctl_dir.path().join("ctl");
    // A trusts B from its TOML configuration; B learns to trust A over its control socket.
    let a = server("127.0.0.2", |c| {
        c.apply_toml("[ftp]\nthird_party_hosts = [\"127.0.0.3\", \"10.9.0.0/16\"]\n")
            .unwrap()
    });
    let b = server("127.0.0.3", |c| c.ctl_socket = Some(sock.clone()));
    assert_eq!(
        a.handle.get("ftp.third_party_hosts").unwrap(),
        "127.0.0.3,10.9.0.0/16"
    );
    let data = random_bytes(5 * 1024 * 1024 + 5, 5);
    std::fs::write(a.root.join("f.bin"), &data).unwrap();
    let (mut src, mut dst) = (client(a.addr, true), client(b.addr, true));
    let r = third_party::transfer(
        &mut src,
        "f.bin",
        &mut dst,
        "x.bin",
        &opts(None, None, None),
    );
    expect_refused(r, Side::Destination, 425, "B does not trust A yet");
    assert_eq!(ctl(&sock, "get ftp.third_party_hosts"), "none\nok\n");
    assert_eq!(
        ctl(&sock, "set ftp.third_party_hosts 127.0.0.2, 2001:db8::/32"),
        "ok applies to new sessions\n"
    );
    assert!(ctl(&sock, "list").contains("ftp.third_party_hosts = 127.0.0.2,2001:db8::/32\n"));
    assert!(ctl(&sock, "set ftp.third_party_hosts 127.0.0.0/40").starts_with("err "));
    let mut dst = client(b.addr, true);
    for (o, name) in [
        (opts(None, Some(Algorithm::Sha256), None), "s.bin"),
        (opts(Some(grid(3)), Some(Algorithm::Crc32c), None), "e.bin"),
    ] {
        let r = third_party::transfer(&mut src, "f.bin", &mut dst, name, &o).unwrap();
        assert_file(&b.root.join(name), &data, name);
        assert_eq!(r.bytes, data.len() as u64);
    }

    // --allow-third-party: anyone, anywhere.
    let c = server("127.0.0.4", |c| c.set("allow_third_party", "true").unwrap());
    let d = server("127.0.0.5", |c| c.allow_third_party = true);
    assert_eq!(c.handle.get("ftp.allow_third_party").unwrap(), "true");
    std::fs::write(c.root.join("f.bin"), &data).unwrap();
    let (mut src, mut dst) = (client(c.addr, true), client(d.addr, true));
    third_party::transfer(
        &mut src,
        "f.bin",
        &mut dst,
        "f.bin",
        &opts(Some(grid(2)), None, None),
    )
    .unwrap();
    assert_file(&d.root.join("f.bin"), &data, "allow_third_party");
    let (mut raw, _) = Raw::connect(c.addr);
    assert_eq!(raw.cmd("USER anonymous").0, 331);
    assert_eq!(raw.cmd("PASS x@").0, 230);
    assert_eq!(
        raw.cmd("PORT 127,0,0,9,0,25").0,
        200,
        "even a privileged port"
    );
}

// ---------------------------------------------------------------------------------------
// gridos ftpd and globus-gridftp-server

#[test]
fn gridos_and_globus_both_directions() {
    let Some(g) = Globus::start("127.0.0.4") else {
        return;
    };
    let a = server("127.0.0.2", |_| {});
    let data = random_bytes(5 * 1024 * 1024 + 999, 6);
    std::fs::write(a.root.join("f.bin"), &data).unwrap();
    g.put("g.bin", &data);
    let mut ours = client(a.addr, false);
    let mut theirs = client(g.addr, true);
    assert!(theirs.gridftp(), "globus-gridftp-server announces MODE E");
    for (o, what) in [
        (opts(None, Some(Algorithm::Md5), None), "stream"),
        (
            opts(Some(grid(4)), Some(Algorithm::Sha256), None),
            "MODE E -p 4",
        ),
    ] {
        let name = format!("to-globus-{}.bin", o.grid.is_some());
        let r = third_party::transfer(&mut ours, "f.bin", &mut theirs, &g.path(&name), &o)
            .unwrap_or_else(|e| panic!("gridos → globus, {what}: {e}"));
        assert_file(
            &g.dir.join(&name),
            &data,
            &format!("gridos → globus, {what}"),
        );
        assert_eq!(r.bytes, data.len() as u64);
        assert!(r.checksum.is_some());

        let name = format!("from-globus-{}.bin", o.grid.is_some());
        let r = third_party::transfer(&mut theirs, &g.path("g.bin"), &mut ours, &name, &o)
            .unwrap_or_else(|e| panic!("globus → gridos, {what}: {e}"));
        assert_file(
            &a.root.join(&name),
            &data,
            &format!("globus → gridos, {what}"),
        );
        assert_eq!(r.bytes, data.len() as u64);
        assert_eq!(r.control_round_trips, 2);
    }
    // A range into our server from globus (ERET on globus, ESTO on ours).
    let (off, len) = (777_777, 1_000_001);
    third_party::transfer(
        &mut theirs,
        &g.path("g.bin"),
        &mut ours,
        "range.bin",
        &opts(Some(grid(2)), Some(Algorithm::Md5), Some((off, len))),
    )
    .unwrap();
    let got = std::fs::read(a.root.join("range.bin")).unwrap();
    assert_eq!(
        sha(&got[off as usize..]),
        sha(&data[off as usize..(off + len) as usize])
    );
    still_usable(&mut ours, &mut theirs);
}

// ---------------------------------------------------------------------------------------
// globus-url-copy as the third-party client

fn ours_url(s: &TestServer, name: &str) -> String {
    format!("ftp://{USER}:{}@{}/{name}", PASS, s.addr)
}

/// The transcript shows a PORT (or SPOR) naming the other server: the copy went server to
/// server.
fn assert_port_to(t: &[String], host_port_prefix: &str) {
    assert!(
        t.iter()
            .any(|l| (l.starts_with("> PORT ") || l.starts_with("> SPOR "))
                && l.contains(host_port_prefix)),
        "no PORT/SPOR to {host_port_prefix}…: not a third-party copy?\n{}",
        t.join("\n")
    );
}

#[test]
fn globus_url_copy_between_two_gridos_servers() {
    if !need("globus-url-copy") {
        return;
    }
    let data = random_bytes(4 * 1024 * 1024 + 12345, 7);
    let (a, b) = pair("f.bin", &data);
    let work = a.dir.path();
    let t = guc(work, &[ours_url(&a, "f.bin"), ours_url(&b, "stream.bin")]);
    assert_file(
        &b.root.join("stream.bin"),
        &data,
        "globus-url-copy stream A → B",
    );
    // Third party: A was told to connect to B.
    assert_port_to(&t, "127,0,0,3,");
    let t = guc(
        work,
        &[
            "-p".into(),
            "4".into(),
            ours_url(&b, "stream.bin"),
            ours_url(&a, "p4.bin"),
        ],
    );
    assert_file(&a.root.join("p4.bin"), &data, "globus-url-copy -p 4 B → A");
    assert!(t.iter().any(|l| l.starts_with("> MODE E")), "{t:#?}");
    assert!(
        t.iter().any(|l| l.starts_with("> OPTS RETR Parallelism=4")),
        "{t:#?}"
    );
    assert_port_to(&t, "127,0,0,2,");
    for s in [&a, &b] {
        assert_eq!(stats(s)["data_connections_refused"], "0");
    }
}

#[test]
fn globus_url_copy_between_gridos_and_globus() {
    if !need("globus-url-copy") {
        return;
    }
    let Some(g) = Globus::start("127.0.0.4") else {
        return;
    };
    let a = server("127.0.0.2", |_| {});
    let data = random_bytes(3 * 1024 * 1024 + 4321, 8);
    std::fs::write(a.root.join("f.bin"), &data).unwrap();
    let work = a.dir.path();
    for p in [None, Some("4")] {
        let flags: Vec<String> = p.map(|n| vec!["-p".into(), n.into()]).unwrap_or_default();
        let tag = p.unwrap_or("1");
        let mut args = flags.clone();
        args.extend([ours_url(&a, "f.bin"), g.url(&format!("g{tag}.bin"))]);
        let t = guc(work, &args);
        assert_port_to(&t, "127,0,0,4,");
        assert_file(
            &g.dir.join(format!("g{tag}.bin")),
            &data,
            &format!("guc gridos → globus -p {tag}"),
        );
        let mut args = flags;
        args.extend([
            g.url(&format!("g{tag}.bin")),
            ours_url(&a, &format!("back{tag}.bin")),
        ]);
        let t = guc(work, &args);
        assert_port_to(&t, "127,0,0,2,");
        assert_file(
            &a.root.join(format!("back{tag}.bin")),
            &data,
            &format!("guc globus → gridos -p {tag}"),
        );
    }
}

// ---------------------------------------------------------------------------------------
// cancellation, silence, a sender that cannot connect: scripted servers

/// A scripted FTP server on `ip` for failure paths: one session; it logs anyone in and
/// answers FEAT/TYPE/OPTS/NOOP, every other command as `reply` says (`None`: 500; an
/// empty string: no reply at all). Every command line received is sent to the channel.
fn scripted(
    ip: &str,
    reply: impl Fn(&str) -> Option<String> + Send + 'static,
) -> (SocketAddr, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind((ip, 0)).unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((s, _)) = l.accept() else { return };
        let mut w = s.try_clone().unwrap();
        let _ = w.write_all(b"220 scripted\r\n");
        for line in BufReader::new(s).lines() {
            let Ok(line) = line else { return };
            let _ = tx.send(line.clone());
            let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            let out = match verb.as_str() {
                "USER" => "331 ok\r\n".to_string(),
                "PASS" => "230 in\r\n".to_string(),
                "FEAT" => "211-Features:\r\n REST STREAM\r\n211 End\r\n".to_string(),
                "TYPE" | "OPTS" | "NOOP" => "200 ok\r\n".to_string(),
                _ => reply(&line).unwrap_or_else(|| "500 not scripted\r\n".to_string()),
            };
            if w.write_all(out.as_bytes()).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

/// A scripted source on 127.0.0.6: it takes SIZE and PORT, answers RETR with `retr` (an
/// empty string: not at all) and ABOR with 426 then 226.
fn scripted_source(retr: &'static str) -> (SocketAddr, std::sync::mpsc::Receiver<String>) {
    scripted("127.0.0.6", move |l| {
        Some(match l.split(' ').next().unwrap_or("") {
            "SIZE" => "213 1000\r\n".into(),
            "PORT" => "200 PORT ok\r\n".into(),
            "RETR" => retr.into(),
            "ABOR" => "426 aborted\r\n226 ABOR ok\r\n".into(),
            _ => return None,
        })
    })
}

/// A session with a scripted server, logged in.
fn scripted_login(addr: SocketAddr, cfg: ClientConfig) -> Client {
    let mut c = Client::connect(addr, cfg).unwrap();
    c.login("someone", "x").unwrap();
    c
}

/// Waits (bounded) for a command starting with `prefix`; true if it came.
fn saw_command(rx: &std::sync::mpsc::Receiver<String>, prefix: &str) -> bool {
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(20)) {
        if l.starts_with(prefix) {
            return true;
        }
    }
    false
}

#[test]
fn cancel_during_the_transfer_aborts_both_sides() {
    let b = server("127.0.0.3", |_| {});
    // The source starts sending (150) and then never finishes.
    let (addr, rx) = scripted_source("150 sending\r\n");
    let token = gridos_io::CancelToken::new();
    let mut cfg = ClientConfig::default();
    cfg.transfer.cancel = Some(token.clone());
    let mut src = scripted_login(addr, cfg);
    let mut dst = client(b.addr, false);
    let watcher = std::thread::spawn(move || {
        // Cancel once the source has the RETR, then see the ABOR arrive.
        let retr = saw_command(&rx, "RETR");
        token.cancel();
        retr && saw_command(&rx, "ABOR")
    });
    let r = third_party::transfer(
        &mut src,
        "f",
        &mut dst,
        "never.bin",
        &opts(None, None, None),
    );
    assert!(matches!(r, Err(Error::Cancelled { .. })), "{r:?}");
    assert!(
        watcher.join().unwrap(),
        "the source never got RETR then ABOR"
    );
    // The destination's STOR was aborted and its session is in step.
    dst.noop().unwrap();
    assert!(!b.root.join("never.bin").exists());
}

#[test]
fn a_silent_source_times_out_and_is_aborted() {
    let b = server("127.0.0.3", |_| {});
    let (addr, rx) = scripted_source("");
    let mut cfg = ClientConfig::default();
    cfg.reply_timeout = Duration::from_secs(1);
    let mut src = scripted_login(addr, cfg);
    let mut dst = client(b.addr, false);
    let r = third_party::transfer(
        &mut src,
        "f",
        &mut dst,
        "never.bin",
        &opts(None, None, None),
    );
    assert!(matches!(r, Err(Error::Timeout(..))), "{r:?}");
    assert!(
        saw_command(&rx, "ABOR"),
        "the silent source was not aborted"
    );
    dst.noop().unwrap();
}

#[test]
fn a_sender_that_cannot_connect_is_a_refusal() {
    let Some(g) = Globus::start("127.0.0.4") else {
        return;
    };
    g.put("g.bin", &random_bytes(100_000, 9));
    // The destination names a port where nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.6:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (addr, rx) = scripted("127.0.0.6", move |l| {
        Some(match l.split(' ').next().unwrap_or("") {
            "PASV" => format!(
                "227 Entering Passive Mode (127,0,0,6,{},{})\r\n",
                closed >> 8,
                closed & 255
            ),
            "STOR" => String::new(),
            "ABOR" => "426 no data connection\r\n226 ABOR ok\r\n".into(),
            _ => return None,
        })
    });
    let mut src = client(g.addr, true);
    let mut dst = scripted_login(addr, ClientConfig::default());
    let r = third_party::transfer(
        &mut src,
        &g.path("g.bin"),
        &mut dst,
        "x",
        &opts(None, None, None),
    );
    // globus-gridftp-server says 500 "Unable to connect": a refusal of the direct connection.
    let Err(e) = r else {
        panic!("succeeded without a data connection")
    };
    assert!(e.is_third_party_refused(), "{e:?}");
    assert!(
        matches!(
            e,
            Error::ThirdPartyRefused {
                side: Side::Source,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        saw_command(&rx, "ABOR"),
        "the waiting destination was not aborted"
    );
    src.noop().unwrap();
}
