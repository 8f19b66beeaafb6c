//! The client against scripted misbehaving servers (raw TCP listeners): garbage, truncated
//! replies, silence, a PASV address pointing elsewhere, data connections that close early or
//! stall. Each must give a clear error, never a panic or a short file reported as complete.
//! The same scripted servers check what the client writes ahead of replies (the login's
//! MLST sent with FEAT).

use gridos_ftp::client::{Client, ClientConfig, Error};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

/// The server side of one scripted control connection.
struct Ctl {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Ctl {
    fn send(&mut self, s: &str) {
        let _ = self.w.write_all(s.as_bytes());
    }
    /// Reads one command line and checks it starts with `prefix`.
    fn expect(&mut self, prefix: &str) -> String {
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        assert!(
            line.starts_with(prefix),
            "expected {prefix:?}, client sent {line:?}"
        );
        line.trim_end().to_string()
    }
    /// Standard login exchange with the given FEAT body: USER, PASS, FEAT and TYPE I
    /// arrive before any of them is answered (one round trip).
    fn login(&mut self, feat: &str) {
        self.send("220 fake\r\n");
        self.login_batch();
        self.send(&format!(
            "331 pass\r\n230 in\r\n211-Features:\r\n{feat}211 End\r\n200 binary\r\n"
        ));
    }
    /// Reads the login's batch, before answering any of it.
    fn login_batch(&mut self) {
        for c in ["USER", "PASS", "FEAT", "TYPE I"] {
            self.expect(c);
        }
    }
}

fn fake(script: impl FnOnce(&mut Ctl) + Send + 'static) -> (String, JoinHandle<()>) {
    fake_each(vec![Box::new(script)])
}

fn quick() -> ClientConfig {
    let mut c = ClientConfig::default();
    c.reply_timeout = Duration::from_millis(800);
    c.data_timeout = Duration::from_millis(800);
    c.connect_timeout = Duration::from_secs(2);
    c
}

#[test]
fn garbage_greeting_is_a_protocol_error() {
    let (addr, h) = fake(|c| c.send("\u{1}\u{2}garbage \u{ff}\r\nmore garbage\r\n"));
    let e = Client::connect(&addr, quick()).unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e}");
    h.join().unwrap();
}

#[test]
fn refusing_greeting_carries_code() {
    // Without a retry budget a 421 greeting is at once a busy error carrying the reply.
    let (addr, h) = fake(|c| c.send("421 too many users\r\n"));
    let mut cfg = quick();
    cfg.busy_retry = Duration::ZERO;
    let e = Client::connect(&addr, cfg).unwrap_err();
    assert!(matches!(e, Error::Busy { attempts: 1, .. }), "{e}");
    assert_eq!(e.reply_code(), Some(421), "{e}");
    assert!(e.to_string().contains("too many users"));
    h.join().unwrap();
    // A permanent refusal is not retried and stays a reply error.
    let (addr, h) = fake(|c| c.send("530 not for you\r\n"));
    let e = Client::connect(&addr, quick()).unwrap_err();
    assert!(matches!(e, Error::Reply { code: 530, .. }), "{e}");
    h.join().unwrap();
}

#[test]
fn truncated_multiline_reply_then_close() {
    let (addr, h) = fake(|c| {
        c.send("220 hi\r\n");
        c.expect("USER");
        c.send("230 in\r\n");
        // The client sends PASS right behind USER; a server that needed none refuses it.
        c.expect("PASS");
        c.send("503 already logged in\r\n");
        c.expect("FEAT");
        c.send("211-Features:\r\n SIZE\r\n EPS");
    });
    let mut cl = Client::connect(&addr, quick()).unwrap();
    let e = cl.login_anonymous().unwrap_err();
    assert!(matches!(e, Error::Closed { mid_reply: true }), "{e}");
    // The connection is now unusable, and says so.
    assert!(matches!(cl.noop(), Err(Error::Poisoned)));
    h.join().unwrap();
}

#[test]
fn silent_server_times_out() {
    let (addr, h) = fake(|c| {
        c.send("220 hi\r\n");
        c.expect("USER");
        std::thread::sleep(Duration::from_millis(1500));
    });
    let mut cl = Client::connect(&addr, quick()).unwrap();
    let e = cl.login_anonymous().unwrap_err();
    assert!(matches!(e, Error::Timeout(..)), "{e}");
    h.join().unwrap();
}

#[test]
fn huge_and_malformed_replies_do_not_panic() {
    let (addr, h) = fake(|c| {
        c.send("220 hi\r\n");
        c.expect("USER");
        let long = "x".repeat(100_000);
        c.send(&format!("230 {long}\r\n"));
    });
    let mut cl = Client::connect(&addr, quick()).unwrap();
    let e = cl.login_anonymous().unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e}");
    h.join().unwrap();

    let (addr, h) = fake(|c| {
        c.login(" SIZE\r\n");
        c.expect("SIZE");
        c.send("213 lots\r\n");
        c.expect("EPSV");
        c.send("229 Entering Extended Passive Mode (|||99999|)\r\n");
        c.expect("EPSV");
        c.send("229 nonsense\r\n");
    });
    let mut cl = Client::connect(&addr, quick()).unwrap();
    cl.login_anonymous().unwrap();
    assert!(matches!(cl.size("/f"), Err(Error::Protocol(_))));
    let out = tempfile::tempfile().unwrap();
    let e = cl.list(None).unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e}");
    let e = cl.list(None).unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e}");
    drop(out);
    h.join().unwrap();
}

/// A server whose PASV reply names 127.3.2.1 (where nothing listens) while its data listener
/// is on the control address: the client must connect to the control peer.
#[test]
fn pasv_address_elsewhere_is_ignored() {
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let sent = payload.clone();
    let (addr, h) = fake(move |c| {
        c.login(" SIZE\r\n");
        c.expect("SIZE /f");
        c.send(&format!("213 {}\r\n", sent.len()));
        c.expect("EPSV");
        c.send("500 what\r\n");
        c.expect("PASV");
        let dl = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = dl.local_addr().unwrap().port();
        c.send(&format!(
            "227 Entering Passive Mode (127,3,2,1,{},{})\r\n",
            p >> 8,
            p & 255
        ));
        let (mut d, from) = dl.accept().unwrap();
        assert!(from.ip().is_loopback());
        c.expect("RETR /f");
        c.send("150 here\r\n");
        d.write_all(&sent).unwrap();
        drop(d);
        c.send("226 done\r\n");
        c.expect("QUIT");
        c.send("221 bye\r\n");
    });
    let mut cl = Client::connect(&addr, quick()).unwrap();
    cl.login_anonymous().unwrap();
    let out = tempfile::tempfile().unwrap();
    let r = cl.get("/f", &out, 0, 0).unwrap();
    assert_eq!(r.bytes, payload.len() as u64);
    let mut got = vec![0u8; payload.len()];
    assert_eq!(
        gridos_io::file_read(&out, 0, &mut got).unwrap(),
        payload.len()
    );
    assert_eq!(got, payload);
    cl.quit().unwrap();
    h.join().unwrap();
}

/// Serves one RETR whose data connection carries `send` bytes while SIZE says `size`, then
/// sends `verdict`.
fn short_retr(size: usize, send: usize, verdict: &'static str) -> Error {
    let (addr, h) = fake(move |c| {
        c.login(" SIZE\r\n EPSV\r\n");
        c.expect("SIZE");
        c.send(&format!("213 {size}\r\n"));
        c.expect("EPSV");
        let dl = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = dl.local_addr().unwrap().port();
        c.send(&format!("229 Extended Passive Mode OK (|||{p}|)\r\n"));
        let (mut d, _) = dl.accept().unwrap();
        c.expect("RETR");
        c.send("150 here\r\n");
        d.write_all(&vec![7u8; send]).unwrap();
        drop(d);
        c.send(verdict);
        c.expect("NOOP");
        c.send("200 ok\r\n");
    });
    let mut cl = Client::connect(&addr, quick()).unwrap();
    cl.login_anonymous().unwrap();
    let out = tempfile::tempfile().unwrap();
    let e = cl.get("/f", &out, 0, 0).unwrap_err();
    // After a failed transfer the control connection is still in step.
    cl.noop().unwrap();
    h.join().unwrap();
    e
}

#[test]
fn data_connection_closing_early_is_incomplete() {
    let e = short_retr(100_000, 40_000, "226 done (liar)\r\n");
    assert!(
        matches!(
            e,
            Error::Incomplete {
                expected: 100_000,
                got: 40_000
            }
        ),
        "{e}"
    );
    assert_eq!(e.bytes_moved(), Some(40_000));
    let e = short_retr(
        100_000,
        40_000,
        "426 connection closed; transfer aborted\r\n",
    );
    assert_eq!(e.reply_code(), Some(426), "{e}");
}

#[test]
fn stalled_data_connection_times_out() {
    let (addr, h) = fake(|c| {
        c.login(" EPSV\r\n");
        c.expect("EPSV");
        let dl = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = dl.local_addr().unwrap().port();
        c.send(&format!("229 ok (|||{p}|)\r\n"));
        let (mut d, _) = dl.accept().unwrap();
        c.expect("RETR");
        c.send("150 here\r\n");
        d.write_all(b"a little").unwrap();
        std::thread::sleep(Duration::from_millis(2500));
        drop(d);
    });
    let mut cl = Client::connect(&addr, quick()).unwrap();
    cl.login_anonymous().unwrap();
    let out = tempfile::tempfile().unwrap();
    let e = cl.get("/f", &out, 0, 0).unwrap_err();
    assert!(matches!(e, Error::Timeout(..)), "{e}");
    h.join().unwrap();
}

#[test]
fn cancellation_stops_a_transfer() {
    let token = gridos_io::CancelToken::new();
    let (addr, h) = fake(|c| {
        c.login(" EPSV\r\n");
        c.expect("EPSV");
        let dl = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = dl.local_addr().unwrap().port();
        c.send(&format!("229 ok (|||{p}|)\r\n"));
        let (mut d, _) = dl.accept().unwrap();
        c.expect("RETR");
        c.send("150 here\r\n");
        d.write_all(b"some bytes").unwrap();
        std::thread::sleep(Duration::from_millis(1500));
    });
    let mut config = quick();
    config.data_timeout = Duration::from_secs(30);
    config.transfer.cancel = Some(token.clone());
    let mut cl = Client::connect(&addr, config).unwrap();
    cl.login_anonymous().unwrap();
    let t = token.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        t.cancel();
    });
    let out = tempfile::tempfile().unwrap();
    let e = cl.get("/f", &out, 0, 0).unwrap_err();
    assert!(matches!(e, Error::Cancelled { moved: 10 }), "{e}");
    h.join().unwrap();
}

/// Active mode: the client listens, sends PORT and takes the data connection only from the
/// server's address. A connection from elsewhere (127.0.0.2 here) that reaches the port first
/// is turned away; the server's own connection then carries the file.
#[test]
fn active_mode_accepts_only_the_server() {
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 17 % 253) as u8).collect();
    let sent = payload.clone();
    let (addr, h) = fake(move |c| {
        c.login(" SIZE\r\n");
        c.expect("SIZE /f");
        c.send(&format!("213 {}\r\n", sent.len()));
        let port = c.expect("PORT ");
        let n: Vec<u16> = port[5..].split(',').map(|x| x.parse().unwrap()).collect();
        assert_eq!(&n[..4], &[127, 0, 0, 1], "{port}");
        let target = std::net::SocketAddr::from(([127, 0, 0, 1], (n[4] << 8) | n[5]));
        c.send("200 PORT ok\r\n");
        c.expect("RETR /f");
        c.send("150 connecting\r\n");
        // The intruder: another address, data of its own.
        let intruder =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        intruder
            .bind(&std::net::SocketAddr::from(([127, 0, 0, 2], 0)).into())
            .unwrap();
        intruder.connect(&target.into()).unwrap();
        let mut intruder: TcpStream = intruder.into();
        let _ = intruder.write_all(b"not the file");
        std::thread::sleep(Duration::from_millis(100));
        let mut d = TcpStream::connect(target).unwrap();
        d.write_all(&sent).unwrap();
        drop(d);
        c.send("226 done\r\n");
        c.expect("QUIT");
        c.send("221 bye\r\n");
    });
    let mut cfg = quick();
    cfg.active = true;
    let mut cl = Client::connect(&addr, cfg).unwrap();
    cl.login_anonymous().unwrap();
    let out = tempfile::tempfile().unwrap();
    let r = cl.get("/f", &out, 0, 0).unwrap();
    assert_eq!(r.bytes, payload.len() as u64);
    let mut got = vec![0u8; payload.len()];
    gridos_io::file_read(&out, 0, &mut got).unwrap();
    assert_eq!(got, payload);
    cl.quit().unwrap();
    h.join().unwrap();
}

/// Active mode with a server that never connects: a timeout, not a hang.
#[test]
fn active_mode_without_a_connection_times_out() {
    let (addr, h) = fake(move |c| {
        c.login("");
        c.expect("PORT ");
        c.send("200 PORT ok\r\n");
        c.expect("RETR /f");
        c.send("150 connecting\r\n");
        // Waits for the client to give up (it closes the control connection).
        let mut line = String::new();
        let _ = c.r.read_line(&mut line);
    });
    let mut cfg = quick();
    cfg.active = true;
    cfg.connect_timeout = Duration::from_millis(500);
    let mut cl = Client::connect(&addr, cfg).unwrap();
    cl.login_anonymous().unwrap();
    let out = tempfile::tempfile().unwrap();
    let e = cl.get("/f", &out, 0, 0).unwrap_err();
    assert!(matches!(e, Error::Timeout(..)), "{e:?}");
    drop(cl);
    h.join().unwrap();
}

/// The MFMT wire form (a fraction only when the time has one) and MLST `modify` facts with
/// fractions of a second, as a scripted server sees and sends them.
#[test]
fn mfmt_wire_form_and_fractional_mlst_times() {
    use std::time::UNIX_EPOCH;
    let (addr, h) = fake(|c| {
        c.login(" MFMT\r\n MLST type*;size*;modify*;\r\n");
        assert_eq!(c.expect("MFMT"), "MFMT 20010203040506.5 dir/a b");
        c.send("213 Modify=20010203040506.5; dir/a b\r\n");
        assert_eq!(c.expect("MFMT"), "MFMT 19691231235959 old");
        c.send("213 Modify=19691231235959; old\r\n");
        assert_eq!(c.expect("MLST"), "MLST dir/a b");
        c.send("250-Listing dir/a b\r\n type=file;size=3;modify=20010203040506.789; /dir/a b\r\n250 End\r\n");
        c.expect("MFMT");
        c.send("550 No such file.\r\n");
    });
    let mut cl = Client::connect(&addr, quick()).unwrap();
    cl.login_anonymous().unwrap();
    let t = UNIX_EPOCH + Duration::from_secs(981_173_106);
    cl.set_modified("dir/a b", t + Duration::from_micros(500_900))
        .unwrap();
    cl.set_modified("old", UNIX_EPOCH - Duration::from_secs(1))
        .unwrap();
    let e = cl.stat("dir/a b").unwrap().unwrap();
    assert_eq!(e.name, "a b");
    assert_eq!(e.modified, Some(t + Duration::from_millis(789)));
    let e = cl.set_modified("gone", t).unwrap_err();
    assert_eq!(e.reply_code(), Some(550), "{e}");
    h.join().unwrap();
}

/// Reads the next command line without checking it.
fn line(c: &mut Ctl) -> String {
    let mut l = String::new();
    c.r.read_line(&mut l).unwrap();
    l.trim_end().to_string()
}

/// The server side of `login_with_stat(.., path)`: USER, PASS, FEAT, TYPE I and
/// `MLST path` read before any of them is answered (one round trip); USER and PASS
/// answered, the caller answers the rest.
fn login_ahead(c: &mut Ctl, path: &str) {
    c.send("220 fake\r\n");
    let sent = [line(c), line(c), line(c), line(c), line(c)];
    assert!(
        sent[0].starts_with("USER ") && sent[1].starts_with("PASS "),
        "{sent:?}"
    );
    assert_eq!(sent[2..], ["FEAT", "TYPE I", &format!("MLST {path}")]);
    c.send("331 pass\r\n230 in\r\n");
}

#[test]
fn login_with_stat_sends_mlst_with_feat_and_answers_stat_from_it() {
    let (addr, h) = fake(|c| {
        login_ahead(c, "/data/big.bin");
        c.send("211-Features:\r\n MLST type*;size*;modify*;\r\n211 End\r\n200 binary\r\n");
        c.send("250-Listing /data/big.bin\r\n type=file;size=1234;modify=20261202101010; /data/big.bin\r\n250 End\r\n");
        // stat answered from the reply above; the next command is the client's NOOP, then
        // a stat of another path, which asks.
        c.expect("NOOP");
        c.send("200 ok\r\n");
        c.expect("MLST /data/other");
        c.send("550 no such file\r\n");
        c.expect("QUIT");
        c.send("221 bye\r\n");
    });
    let mut cl = Client::connect(&addr, quick()).unwrap();
    cl.login_with_stat("anonymous", "a@", "/data/big.bin")
        .unwrap();
    let e = cl.stat("/data/big.bin").unwrap().expect("exists");
    assert_eq!((e.name.as_str(), e.size), ("big.bin", Some(1234)));
    cl.noop().unwrap();
    assert!(cl.stat("/data/other").unwrap().is_none());
    cl.quit().unwrap();
    h.join().unwrap();
}

#[test]
fn a_stat_sent_ahead_is_dropped_by_any_command_before_it() {
    let (addr, h) = fake(|c| {
        login_ahead(c, "f");
        c.send("211-Features:\r\n MLST type*;size*;\r\n211 End\r\n200 binary\r\n");
        c.send("250-Listing f\r\n type=file;size=1; f\r\n250 End\r\n");
        // A DELE came first: the stat asks again and gets the present answer.
        c.expect("DELE f");
        c.send("250 deleted\r\n");
        c.expect("MLST f");
        c.send("550 no such file\r\n");
    });
    let mut cl = Client::connect(&addr, quick()).unwrap();
    cl.login_with_stat("anonymous", "a@", "f").unwrap();
    cl.delete("f").unwrap();
    assert!(cl.stat("f").unwrap().is_none());
    h.join().unwrap();
}

#[test]
fn a_server_without_mlst_gets_the_usual_stat() {
    let (addr, h) = fake(|c| {
        login_ahead(c, "f");
        c.send("211-Features:\r\n SIZE\r\n211 End\r\n200 binary\r\n500 unknown command\r\n");
        // The client falls back to PWD, CWD and SIZE, as without the MLST ahead.
        c.expect("PWD");
        c.send("257 \"/\"\r\n");
        c.expect("CWD f");
        c.send("550 not a directory\r\n");
        c.expect("SIZE f");
        c.send("213 7\r\n");
    });
    let mut cl = Client::connect(&addr, quick()).unwrap();
    cl.login_with_stat("anonymous", "a@", "f").unwrap();
    let e = cl.stat("f").unwrap().expect("exists");
    assert_eq!(e.size, Some(7));
    h.join().unwrap();
}

/// The script of one connection.
type Script = Box<dyn FnOnce(&mut Ctl) + Send>;

/// A scripted server that takes `scripts.len()` connections in turn.
fn fake_each(scripts: Vec<Script>) -> (String, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let h = std::thread::spawn(move || {
        for script in scripts {
            let (s, _) = l.accept().unwrap();
            let mut ctl = Ctl {
                r: BufReader::new(s.try_clone().unwrap()),
                w: s,
            };
            script(&mut ctl);
        }
    });
    (addr, h)
}

fn ahead() -> ClientConfig {
    let mut c = quick();
    c.login_before_greeting = true;
    c
}

#[test]
fn a_login_before_the_greeting_leaves_as_soon_as_the_connection_is_up() {
    let (addr, h) = fake(|c| {
        // Nothing is sent until the whole login has arrived.
        c.login_batch();
        c.send(
            "220 fake\r\n331 pass\r\n230 in\r\n211-Features:\r\n SIZE\r\n211 End\r\n200 binary\r\n",
        );
        c.expect("QUIT");
        c.send("221 bye\r\n");
    });
    let mut cl = Client::connect(&addr, ahead()).unwrap();
    cl.login("anonymous", "a@").unwrap();
    assert_eq!(cl.login_ahead(), Some(true));
    assert_eq!(cl.welcome().lines, ["fake"]);
    assert!(cl.features().size);
    cl.quit().unwrap();
    h.join().unwrap();
}

#[test]
fn a_server_that_drops_what_came_before_its_greeting_is_connected_to_again() {
    let (addr, h) = fake_each(vec![
        Box::new(|c: &mut Ctl| {
            // Greets, then never answers the batch (as if it had discarded it); the client
            // gives up on it after its short wait and comes back.
            c.login_batch();
            c.send("220 deaf\r\n");
            let mut rest = Vec::new();
            let _ = std::io::Read::read_to_end(&mut c.r, &mut rest);
        }),
        Box::new(|c: &mut Ctl| {
            c.login(" SIZE\r\n");
            c.expect("QUIT");
            c.send("221 bye\r\n");
        }),
    ]);
    let mut config = ahead();
    config.reply_timeout = Duration::from_secs(30);
    let t = std::time::Instant::now();
    let mut cl = Client::connect(&addr, config).unwrap();
    cl.login("anonymous", "a@").unwrap();
    assert_eq!(cl.login_ahead(), Some(false));
    assert_eq!(cl.welcome().lines, ["fake"]);
    // The short wait, not the 30 s reply timeout.
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    cl.quit().unwrap();
    h.join().unwrap();
}

#[test]
fn a_busy_server_met_with_the_login_ahead_is_retried_the_usual_way() {
    let (addr, h) = fake_each(vec![
        Box::new(|c: &mut Ctl| c.send("421 too many users\r\n")),
        Box::new(|c: &mut Ctl| {
            c.login(" SIZE\r\n");
        }),
    ]);
    let mut config = ahead();
    config.busy_retry = Duration::from_secs(5);
    let mut cl = Client::connect(&addr, config).unwrap();
    cl.login("anonymous", "a@").unwrap();
    assert_eq!(cl.login_ahead(), Some(false));
    h.join().unwrap();
}

#[test]
fn a_refused_login_reads_what_was_sent_behind_it_and_may_try_again() {
    let (addr, h) = fake(|c| {
        c.send("220 fake\r\n");
        c.login_batch();
        c.send("331 pass\r\n530 wrong\r\n530 log in first\r\n530 log in first\r\n");
        c.login_batch();
        c.send("331 pass\r\n230 in\r\n211-Features:\r\n SIZE\r\n211 End\r\n200 binary\r\n");
    });
    let mut config = quick();
    config.tls = gridos_ftp::client::TlsMode::Never;
    let mut cl = Client::connect(&addr, config).unwrap();
    let e = cl.login("u", "bad").unwrap_err();
    assert!(matches!(e, Error::Reply { code: 530, .. }), "{e}");
    cl.login("u", "good").unwrap();
    assert!(cl.features().size);
    h.join().unwrap();
}

#[test]
fn a_server_that_never_greets_is_not_waited_for_twice() {
    let (addr, h) = fake(|c| {
        c.login_batch();
        // Silent until the client gives up and hangs up.
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut c.r, &mut rest);
    });
    let t = std::time::Instant::now();
    let mut cl = Client::connect(&addr, ahead()).unwrap();
    let e = cl.login("anonymous", "a@").unwrap_err();
    assert!(matches!(e, Error::Timeout(..)), "{e}");
    // One reply timeout (0.8 s), not two.
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    drop(cl);
    h.join().unwrap();
}
