//! Session transcripts: bytes in, replies and actions out, no sockets.

use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use gridos_ftp::proto::{
    Action, AuthOutcome, DataEndpoint, Facts, Features, FileKind, FsError, FsErrorKind, FsOutcome,
    ListKind, Marker, PassiveKind, PerfMarker, RangeSet, Reply, Session, SessionConfig, StoreKind,
    TransferDone, TransferError, TransferMode, TransferStart, TransferType, Verb,
};

const PEER: &str = "192.0.2.10:40000";

fn auth(user: &str, pass: &str) -> AuthOutcome {
    match (user, pass) {
        ("alice", "secret") => AuthOutcome::Granted { read_only: false },
        ("reader", "pw") => AuthOutcome::Granted { read_only: true },
        _ => AuthOutcome::Denied,
    }
}

struct T {
    s: Session,
}

impl T {
    fn with(config: SessionConfig) -> T {
        let mut s = Session::new(config, Box::new(auth), PEER.parse().unwrap());
        assert_eq!(s.poll_reply().unwrap().code, 220);
        T { s }
    }

    fn new() -> T {
        T::with(SessionConfig::default())
    }

    fn grid() -> T {
        T::with(SessionConfig {
            features: Features::gridftp(),
            ..SessionConfig::default()
        })
    }

    fn logged_in() -> T {
        let mut t = T::new();
        assert_eq!(t.codes("USER alice\r\nPASS secret\r\n"), [331, 230]);
        t
    }

    fn grid_logged_in() -> T {
        let mut t = T::grid();
        assert_eq!(t.codes("USER alice\r\nPASS secret\r\n"), [331, 230]);
        t
    }

    fn send(&mut self, input: &str) -> Vec<Reply> {
        self.s.handle_input(input.as_bytes());
        self.replies()
    }

    fn replies(&mut self) -> Vec<Reply> {
        std::iter::from_fn(|| self.s.poll_reply()).collect()
    }

    fn codes(&mut self, input: &str) -> Vec<u16> {
        self.send(input).iter().map(|r| r.code).collect()
    }

    fn one(&mut self, input: &str) -> Reply {
        let mut v = self.send(input);
        assert_eq!(v.len(), 1, "{input:?} → {v:?}");
        v.remove(0)
    }

    fn action(&mut self) -> Action {
        self.s.poll_action().expect("an action")
    }

    fn no_action(&mut self) {
        assert_eq!(self.s.poll_action(), None);
    }

    /// PASV and report a listener.
    fn pasv(&mut self) {
        assert!(self.codes("PASV\r\n").is_empty());
        assert_eq!(self.action(), Action::OpenPassive(PassiveKind::Pasv));
        self.s
            .handle_passive_opened(Ok(vec!["192.0.2.1:50000".parse().unwrap()]))
            .unwrap();
        let r = self.replies();
        assert_eq!(
            r[0].to_bytes(),
            b"227 Entering Passive Mode (192,0,2,1,195,80).\r\n"
        );
    }

    fn finish_transfer(&mut self) -> Vec<u16> {
        self.s
            .handle_transfer_started(TransferStart::default())
            .unwrap();
        self.s
            .handle_transfer_done(Ok(TransferDone { bytes: 1 }))
            .unwrap();
        self.replies().iter().map(|r| r.code).collect()
    }
}

#[test]
fn login_flow_and_failures() {
    let mut t = T::new();
    assert_eq!(t.codes("PASS x\r\n"), [503]);
    assert_eq!(t.codes("USER alice\r\n"), [331]);
    assert_eq!(t.codes("PASS wrong\r\n"), [530]);
    assert!(t.s.user().is_none());
    assert_eq!(t.codes("PASS secret\r\n"), [503]); // USER needed again
    assert_eq!(t.codes("USER alice\r\nPASS secret\r\n"), [331, 230]);
    let u = t.s.user().unwrap();
    assert_eq!(
        (u.name.as_str(), u.anonymous, u.read_only),
        ("alice", false, false)
    );
    assert_eq!(t.codes("PASS again\r\n"), [230]);
    assert!(!t.s.is_closing());
}

#[test]
fn too_many_failures_close_with_421() {
    let mut t = T::new();
    assert_eq!(
        t.codes("USER a\r\nPASS 1\r\nUSER a\r\nPASS 2\r\n"),
        [331, 530, 331, 530]
    );
    assert_eq!(t.codes("USER a\r\nPASS 3\r\nNOOP\r\n"), [331, 530, 421]);
    assert!(t.s.is_closing());
    assert!(!t.s.wants_input());
    assert!(t.codes("NOOP\r\n").is_empty());
}

#[test]
fn anonymous_on_and_off() {
    let mut t = T::with(SessionConfig {
        anonymous: true,
        ..SessionConfig::default()
    });
    assert_eq!(
        t.codes("USER anonymous\r\nPASS me@example.org\r\n"),
        [331, 230]
    );
    let u = t.s.user().unwrap().clone();
    assert!(u.anonymous && u.read_only);
    // Read-only: writes are refused before any action is emitted.
    for w in [
        "STOR f",
        "APPE f",
        "STOU",
        "DELE f",
        "MKD d",
        "RMD d",
        "RNFR a",
        "SITE CHMOD 644 f",
        "MFMT 20010203040506 f",
    ] {
        assert_eq!(t.codes(&format!("{w}\r\n")), [550], "{w}");
    }
    t.no_action();
    assert_eq!(t.codes("CWD pub\r\n"), Vec::<u16>::new());
    assert!(matches!(t.action(), Action::Cwd(_)));

    let mut t = T::with(SessionConfig {
        anonymous: true,
        anonymous_write: true,
        ..SessionConfig::default()
    });
    assert_eq!(t.codes("USER ftp\r\nPASS\r\n"), [331, 230]);
    assert!(!t.s.user().unwrap().read_only);

    // Anonymous off: "anonymous" is an ordinary user name, checked by the authenticator.
    let mut t = T::new();
    assert_eq!(
        t.codes("USER anonymous\r\nPASS me@example.org\r\n"),
        [331, 530]
    );
}

#[test]
fn read_only_users_from_the_authenticator() {
    let mut t = T::new();
    assert_eq!(
        t.codes("USER reader\r\nPASS pw\r\nDELE x\r\nSIZE x\r\n"),
        [331, 230, 550]
    );
    assert!(matches!(t.action(), Action::Size { .. }));
}

#[test]
fn before_login_530_except_the_allowed_few() {
    let mut t = T::new();
    for c in [
        "PWD",
        "CWD /",
        "LIST",
        "RETR f",
        "STOR f",
        "PASV",
        "PORT 192,0,2,10,10,0",
        "TYPE I",
        "MODE S",
        "REST 5",
        "SIZE f",
        "MKD d",
        "STAT",
        "OPTS MLST type;",
        "ABOR",
        "SITE HELP",
        "ACCT x",
    ] {
        assert_eq!(t.codes(&format!("{c}\r\n")), [530], "{c}");
    }
    t.no_action();
    assert_eq!(
        t.codes("NOOP\r\nSYST\r\nFEAT\r\nHELP\r\nOPTS UTF8 ON\r\nAUTH TLS\r\nLANG\r\n"),
        [200, 215, 211, 214, 200, 431, 200]
    );
    // Parse errors are reported before login too.
    assert_eq!(t.codes("BOGUS\r\nTYPE Q\r\nSMNT x\r\n"), [500, 501, 502]);
}

#[test]
fn rnto_needs_rnfr_immediately_before() {
    let mut t = T::logged_in();
    assert_eq!(t.codes("RNTO b\r\n"), [503]);
    t.no_action();
    assert!(t.codes("RNFR a\r\n").is_empty());
    assert_eq!(t.action(), Action::Rnfr("/a".parse_vp()));
    t.s.handle_fs_result(Ok(FsOutcome::Done)).unwrap();
    assert_eq!(t.replies()[0].code, 350);
    assert!(t.codes("RNTO b c\r\n").is_empty());
    assert_eq!(
        t.action(),
        Action::Rename {
            from: "/a".parse_vp(),
            to: "/b c".parse_vp()
        }
    );
    t.s.handle_fs_result(Ok(FsOutcome::Done)).unwrap();
    assert_eq!(t.replies()[0].code, 250);
    // RNFR, then another command, then RNTO: 503.
    assert!(t.codes("RNFR a\r\n").is_empty());
    let _ = t.action();
    t.s.handle_fs_result(Ok(FsOutcome::Done)).unwrap();
    assert_eq!(t.codes("NOOP\r\nRNTO b\r\n"), [350, 200, 503]);
    // A failed RNFR leaves nothing to rename.
    assert!(t.codes("RNFR missing\r\n").is_empty());
    let _ = t.action();
    t.s.handle_fs_result(Err(FsError::new(FsErrorKind::NotFound)))
        .unwrap();
    assert_eq!(t.codes("RNTO b\r\n"), [550, 503]);
}

trait ParseVp {
    fn parse_vp(&self) -> gridos_ftp::proto::VirtualPath;
}
impl ParseVp for str {
    fn parse_vp(&self) -> gridos_ftp::proto::VirtualPath {
        gridos_ftp::proto::VirtualPath::new(self)
    }
}

#[test]
fn rest_then_retr_carries_the_offset_and_rest_is_cleared() {
    let mut t = T::logged_in();
    t.pasv();
    assert_eq!(t.codes("TYPE I\r\nREST 1000\r\n"), [200, 350]);
    assert!(matches!(
        t.s.rest(),
        Some(gridos_ftp::proto::Restart::Offset(1000))
    ));
    assert!(t.codes("RETR dir/file name\r\n").is_empty());
    let Action::Retr(req) = t.action() else {
        panic!()
    };
    assert_eq!(req.path.as_str(), "/dir/file name");
    assert_eq!(req.offset, 1000);
    assert_eq!(req.length, None);
    assert_eq!(req.data, DataEndpoint::Passive);
    assert_eq!(req.params.ty, TransferType::Image);
    assert_eq!(t.finish_transfer(), [150, 226]);
    assert!(t.s.rest().is_none());
    // Stream mode: the data connection was used up.
    assert_eq!(t.codes("RETR f\r\n"), [425]);

    // REST followed by any other command is forgotten.
    t.pasv();
    assert_eq!(t.codes("REST 500\r\nNOOP\r\nRETR f\r\n"), [350, 200]);
    let Action::Retr(req) = t.action() else {
        panic!()
    };
    assert_eq!(req.offset, 0);
    assert_eq!(t.finish_transfer(), [150, 226]);

    // REST then STOR: resume the upload at the offset.
    t.pasv();
    assert!(t.codes("REST 77\r\n").contains(&350));
    assert!(t.codes("STOR up\r\n").is_empty());
    let Action::Stor(req) = t.action() else {
        panic!()
    };
    assert_eq!((req.kind, req.offset), (StoreKind::Replace, 77));
    assert_eq!(t.finish_transfer(), [150, 226]);
}

#[test]
fn cwd_normalisation() {
    let mut t = T::logged_in();
    let cwd = |t: &mut T, arg: &str, want: &str| {
        assert!(t.codes(&format!("CWD {arg}\r\n")).is_empty());
        assert_eq!(t.action(), Action::Cwd(want.parse_vp()), "{arg}");
        t.s.handle_fs_result(Ok(FsOutcome::Done)).unwrap();
        assert_eq!(t.replies()[0].code, 250);
        assert_eq!(t.s.cwd().as_str(), want);
    };
    cwd(&mut t, "pub", "/pub");
    cwd(&mut t, "../../../../etc", "/etc");
    cwd(&mut t, "//a///b/./c/", "/a/b/c");
    cwd(&mut t, "..", "/a/b");
    cwd(&mut t, "%2e%2e/%2e%2e", "/a/b/%2e%2e/%2e%2e");
    cwd(&mut t, "/..\\..\\x", "/..\\..\\x");
    cwd(&mut t, "/", "/");
    cwd(&mut t, "..", "/");
    assert_eq!(
        t.one("PWD\r\n").to_bytes(),
        b"257 \"/\" is the current directory.\r\n"
    );
    // A failed CWD leaves the directory alone.
    assert!(t.codes("CWD nowhere\r\n").is_empty());
    let _ = t.action();
    t.s.handle_fs_result(Err(
        std::io::Error::from(std::io::ErrorKind::NotFound).into()
    ))
    .unwrap();
    assert_eq!(t.replies()[0].code, 550);
    assert_eq!(t.s.cwd().as_str(), "/");
    cwd(&mut t, "a/b", "/a/b");
    assert_eq!(t.codes("CDUP\r\nCDUP\r\nCDUP\r\n"), [200, 200, 200]);
    assert_eq!(t.s.cwd().as_str(), "/");
    // Relative paths in other commands resolve against the cwd.
    cwd(&mut t, "d", "/d");
    assert!(t.codes("MKD \"q\"\r\n").is_empty());
    assert_eq!(t.action(), Action::Mkd("/d/\"q\"".parse_vp()));
    t.s.handle_fs_result(Ok(FsOutcome::Done)).unwrap();
    assert_eq!(
        t.replies()[0].to_bytes(),
        b"257 \"/d/\"\"q\"\"\" created.\r\n"
    );
}

#[test]
fn pipelined_commands_wait_for_the_pending_action() {
    let mut t = T::logged_in();
    // Three commands in one read: the second waits for the first's report.
    assert_eq!(t.codes("SIZE a\r\nMDTM a\r\nNOOP\r\n"), Vec::<u16>::new());
    assert!(t.s.is_busy());
    assert!(matches!(t.action(), Action::Size { .. }));
    t.no_action();
    t.s.handle_fs_result(Ok(FsOutcome::Size(42))).unwrap();
    assert_eq!(t.replies()[0].to_bytes(), b"213 42\r\n");
    assert_eq!(t.action(), Action::Mdtm("/a".parse_vp()));
    t.s.handle_fs_result(Ok(FsOutcome::Modified(
        UNIX_EPOCH + Duration::from_secs(1_000_000_000),
    )))
    .unwrap();
    let r = t.replies();
    assert_eq!(r[0].to_bytes(), b"213 20010909014640\r\n");
    assert_eq!(r[1].code, 200);
    // A report nobody asked for is a driver bug, not a panic.
    assert!(t.s.handle_fs_result(Ok(FsOutcome::Done)).is_err());
    assert!(
        t.s.handle_transfer_done(Ok(TransferDone::default()))
            .is_err()
    );
    // Mismatched outcome → 451.
    assert!(t.codes("SIZE a\r\n").is_empty());
    let _ = t.action();
    t.s.handle_fs_result(Ok(FsOutcome::Done)).unwrap();
    assert_eq!(t.replies()[0].code, 451);
}

#[test]
fn pipeline_backpressure() {
    let mut t = T::with(SessionConfig {
        max_pipelined: 3,
        ..SessionConfig::default()
    });
    t.codes("USER alice\r\nPASS secret\r\n");
    t.s.handle_input(b"SIZE a\r\nNOOP\r\nNOOP\r\n");
    assert!(t.s.wants_input());
    t.s.handle_input(b"NOOP\r\n");
    assert!(!t.s.wants_input());
    let _ = t.action();
    t.s.handle_fs_result(Ok(FsOutcome::Size(1))).unwrap();
    assert!(t.s.wants_input());
    assert_eq!(t.replies().len(), 4);
}

#[test]
fn abor_during_transfer() {
    let mut t = T::logged_in();
    t.pasv();
    assert!(t.codes("RETR big\r\n").is_empty());
    let _ = t.action();
    t.s.handle_transfer_started(TransferStart {
        size: Some(10),
        ..TransferStart::default()
    })
    .unwrap();
    assert_eq!(
        t.replies()[0].to_bytes(),
        b"150 Opening data connection (10 bytes).\r\n"
    );
    // NOOP is queued; ABOR (after Telnet IP/DM) and STAT are handled at once.
    t.s.handle_input(b"NOOP\r\n\xff\xf4\xff\xf2ABOR\r\nSTAT\r\n");
    assert_eq!(
        t.replies().iter().map(|r| r.code).collect::<Vec<_>>(),
        [211]
    );
    assert_eq!(t.action(), Action::Abort);
    t.s.handle_transfer_done(Err(TransferError::Aborted))
        .unwrap();
    assert_eq!(
        t.replies().iter().map(|r| r.code).collect::<Vec<_>>(),
        [426, 226, 200]
    );
    // ABOR with nothing running.
    assert_eq!(t.codes("ABOR\r\n"), [226]);
}

#[test]
fn transfer_errors_map_to_codes() {
    let cases: Vec<(bool, TransferError, u16)> = vec![
        (
            false,
            TransferError::Fs(FsError::new(FsErrorKind::NotFound)),
            550,
        ),
        (false, TransferError::CannotOpenData("refused".into()), 425),
        (true, TransferError::ConnectionClosed("reset".into()), 426),
        (true, TransferError::BadData("forged offset".into()), 426),
        (
            true,
            TransferError::Fs(FsError::new(FsErrorKind::StorageFull)),
            452,
        ),
        (
            true,
            TransferError::Fs(FsError::new(FsErrorKind::PermissionDenied)),
            451,
        ),
        (true, TransferError::Local("oops".into()), 451),
    ];
    for (started, err, code) in cases {
        let mut t = T::logged_in();
        t.pasv();
        assert!(t.codes("STOR x\r\n").is_empty());
        let _ = t.action();
        let mut want = vec![];
        if started {
            t.s.handle_transfer_started(TransferStart::default())
                .unwrap();
            want.push(150);
        }
        t.s.handle_transfer_done(Err(err.clone())).unwrap();
        want.push(code);
        assert_eq!(
            t.replies().iter().map(|r| r.code).collect::<Vec<_>>(),
            want,
            "{err:?}"
        );
    }
}

#[test]
fn port_eprt_and_bounce_protection() {
    // Anonymous: only the client's own address, ports 1024 and above.
    let mut t = T::with(SessionConfig {
        anonymous: true,
        ..SessionConfig::default()
    });
    assert_eq!(t.codes("USER anonymous\r\nPASS x@\r\n"), [331, 230]);
    assert_eq!(t.codes("PORT 192,0,2,10,200,10\r\n"), [200]);
    assert_eq!(
        t.s.data_endpoint(),
        Some(&DataEndpoint::Active(vec![
            "192.0.2.10:51210".parse().unwrap()
        ]))
    );
    let r = t.one("PORT 10,0,0,1,200,10\r\n"); // foreign host
    assert_eq!(r.code, 504);
    assert!(r.text().contains("client's"), "{r:?}");
    assert_eq!(t.codes("PORT 192,0,2,10,0,25\r\n"), [504]); // privileged port
    assert_eq!(t.codes("EPRT |1|198.51.100.1|6000|\r\n"), [504]);
    assert!(!t.s.data_policy().allows_peer("10.0.0.1".parse().unwrap()));
    assert!(t.s.data_policy().allows_peer("192.0.2.10".parse().unwrap()));
    assert_eq!(t.codes("EPRT |1|192.0.2.10|6000|\r\n"), [200]);
    // A new endpoint retires the old one's cached MODE E connections.
    assert_eq!(t.action(), Action::ClosePassive);
    assert_eq!(t.codes("EPRT |2|::1|6000|\r\n"), [522]);
    assert!(t.codes("RETR f\r\n").is_empty());
    let Action::Retr(req) = t.action() else {
        panic!()
    };
    assert_eq!(
        req.data,
        DataEndpoint::Active(vec!["192.0.2.10:6000".parse().unwrap()])
    );
    assert_eq!(t.finish_transfer(), [150, 226]);

    // An authenticated user may name another host (third-party transfers), never a
    // privileged port.
    let mut t = T::logged_in();
    assert!(t.s.data_policy().allows_peer("10.0.0.1".parse().unwrap()));
    assert_eq!(t.codes("PORT 10,0,0,1,200,10\r\n"), [200]);
    assert_eq!(
        t.s.data_endpoint(),
        Some(&DataEndpoint::Active(vec![
            "10.0.0.1:51210".parse().unwrap()
        ]))
    );
    let r = t.one("PORT 10,0,0,1,0,25\r\n");
    assert_eq!(r.code, 504);
    assert!(r.text().contains("1024"), "{r:?}");
    // Before login nothing is decided: 530.
    let mut t = T::new();
    assert_eq!(t.codes("PORT 10,0,0,1,200,10\r\n"), [530]);

    // Trusted hosts: anonymous sessions may use them (and only them).
    let mut t = T::with(SessionConfig {
        anonymous: true,
        third_party_hosts: "10.0.0.0/24, 2001:db8::1".parse().unwrap(),
        ..SessionConfig::default()
    });
    t.codes("USER ftp\r\nPASS x@\r\n");
    assert_eq!(t.codes("PORT 10,0,0,7,200,10\r\n"), [200]);
    assert_eq!(t.codes("PORT 10,0,1,7,200,10\r\n"), [504]);
    assert_eq!(t.codes("PORT 10,0,0,7,0,80\r\n"), [504], "privileged port");
    assert!(t.s.data_policy().allows_peer("10.0.0.200".parse().unwrap()));
    assert!(!t.s.data_policy().allows_peer("10.0.2.1".parse().unwrap()));

    // FXP allowed to everyone by config: any host, any port.
    let mut t = T::with(SessionConfig {
        allow_third_party: true,
        anonymous: true,
        ..SessionConfig::default()
    });
    t.codes("USER anonymous\r\nPASS x@\r\n");
    assert_eq!(t.codes("PORT 10,0,0,1,0,20\r\n"), [200]);
    // PASV then PORT: the listener is closed.
    t.pasv();
    assert_eq!(t.codes("PORT 10,0,0,1,0,20\r\n"), [200]);
    assert_eq!(t.action(), Action::ClosePassive);
    // REIN drops the endpoint set up under the old login (and its cached connections).
    assert_eq!(t.codes("REIN\r\n"), [220]);
    assert_eq!(t.action(), Action::ClosePassive);
    assert_eq!(t.s.data_endpoint(), None);
}

#[test]
fn abor_in_the_same_read_as_its_transfer_aborts_it() {
    // A third-party client aborts a STOR it just sent (the other server failed): the ABOR
    // may arrive in the same read as the STOR and the commands behind it.
    let mut t = T::logged_in();
    t.pasv();
    assert!(t.codes("STOR f\r\nSIZE f\r\nABOR\r\n").is_empty());
    let Action::Stor(_) = t.action() else {
        panic!("STOR not started")
    };
    assert_eq!(t.action(), Action::Abort, "ABOR reached the running STOR");
    t.no_action();
    t.s.handle_transfer_done(Err(TransferError::Aborted))
        .unwrap();
    assert_eq!(
        t.replies().iter().map(|r| r.code).collect::<Vec<_>>(),
        [426, 226]
    );
    // Then the queued SIZE runs.
    let Action::Size { .. } = t.action() else {
        panic!("SIZE not run after the aborted STOR")
    };
}

#[test]
fn epsv_variants() {
    let mut t = T::logged_in();
    assert!(t.codes("EPSV\r\n").is_empty());
    assert_eq!(t.action(), Action::OpenPassive(PassiveKind::Epsv));
    t.s.handle_passive_opened(Ok(vec!["192.0.2.1:6446".parse().unwrap()]))
        .unwrap();
    assert_eq!(
        t.replies()[0].to_bytes(),
        b"229 Entering Extended Passive Mode (|||6446|)\r\n"
    );
    assert_eq!(t.codes("EPSV 2\r\n"), [522]);
    assert!(t.codes("EPSV 1\r\n").is_empty());
    t.s.handle_passive_opened(Err(gridos_ftp::proto::PassiveError::NoPort))
        .unwrap();
    let r = &t.replies()[0];
    assert_eq!(
        (r.code, r.text()),
        (425, "Can't open passive connection: no port available")
    );
    let _ = t.action();
    assert_eq!(
        t.codes("EPSV ALL\r\nPASV\r\nPORT 192,0,2,10,200,10\r\nEPRT |1|192.0.2.10|6000|\r\n"),
        [200, 501, 501, 501]
    );
    // IPv6 control connection: PASV refused, EPSV fine.
    let mut s = Session::new(
        SessionConfig::default(),
        Box::new(auth),
        "[2001:db8::1]:4000".parse().unwrap(),
    );
    s.handle_input(b"USER alice\r\nPASS secret\r\nPASV\r\nEPSV 2\r\n");
    let codes: Vec<u16> = std::iter::from_fn(|| s.poll_reply())
        .map(|r| r.code)
        .collect();
    assert_eq!(codes, [220, 331, 230, 425]);
    assert_eq!(
        s.poll_action(),
        Some(Action::OpenPassive(PassiveKind::Epsv))
    );
}

#[test]
fn state_commands() {
    let mut t = T::logged_in();
    assert_eq!(t.one("SYST\r\n").to_bytes(), b"215 UNIX Type: L8\r\n");
    assert_eq!(
        t.codes("TYPE A\r\nTYPE I\r\nTYPE L 8\r\nTYPE A N\r\nTYPE E\r\nTYPE A T\r\nTYPE L 7\r\n"),
        [200, 200, 200, 200, 504, 504, 504]
    );
    assert_eq!(
        t.s.transfer_type(),
        TransferType::Ascii(gridos_ftp::proto::FormatControl::NonPrint)
    );
    assert_eq!(
        t.codes("MODE S\r\nMODE E\r\nMODE Z\r\nMODE B\r\nSTRU F\r\nSTRU R\r\n"),
        [200, 504, 504, 504, 200, 504]
    );
    assert_eq!(
        t.codes("ALLO 10\r\nACCT x\r\nPBSZ 0\r\nPROT C\r\nPROT P\r\nAUTH TLS\r\n"),
        [200, 202, 503, 503, 503, 431]
    );
    assert_eq!(
        t.codes(
            "OPTS UTF8 ON\r\nOPTS MLST type;size;\r\nOPTS RETR Parallelism=2,2,2;\r\nOPTS FOO\r\n"
        ),
        [200, 200, 501, 501]
    );
    assert!(!t.s.mlst_facts().modify);
    assert_eq!(
        t.codes("LANG\r\nLANG en-US\r\nLANG fr\r\n"),
        [200, 200, 504]
    );
    // GridFTP commands are recognised but off in the standard feature set.
    assert_eq!(t.codes("SBUF 100\r\nSPAS\r\nSPOR 192,0,2,10,20,0\r\nERET P 0 1 f\r\nESTO A 0 f\r\nCKSM MD5 0 -1 f\r\nSCKS x\r\nTREV PERF 5\r\nDCAU N\r\nREST 0-10\r\n"), [502, 502, 502, 502, 502, 502, 502, 502, 502, 501]);
    assert_eq!(
        t.codes("SITE SBUF 5\r\nSITE FOO\r\nSITE HELP\r\n"),
        [502, 500, 214]
    );
    let st = t.one("STAT\r\n");
    assert_eq!(st.code, 211);
    assert!(st.lines.iter().any(|l| l.contains("alice")));
    let help = t.one("HELP\r\n");
    assert_eq!(help.code, 214);
    assert!(help.lines.iter().any(|l| l.contains("RETR")));
    assert_eq!(t.codes("QUIT\r\nNOOP\r\n"), [221]);
    assert!(t.s.is_closing());
}

#[test]
fn feat_lists_exactly_the_configured_features() {
    let mut t = T::new();
    let feat = t.one("FEAT\r\n");
    let wire = String::from_utf8(feat.to_bytes()).unwrap();
    assert_eq!(
        wire,
        "211-Features:\r\n EPRT\r\n EPSV\r\n MDTM\r\n MFMT\r\n MLST type*;size*;modify*;perm*;unique*;UNIX.mode*;\r\n REST STREAM\r\n SIZE\r\n TVFS\r\n UTF8\r\n LANG EN*\r\n211 End\r\n"
    );
    let mut t = T::grid();
    let feat = t.one("FEAT\r\n");
    for l in [
        " PARALLEL",
        " MODE E",
        " SPAS",
        " SPOR",
        " ERET",
        " ESTO",
        " SBUF",
        " DCAU",
        " CKSM MD5,ADLER32,SHA1,SHA256,SHA512,CRC32C",
        " SCKS",
    ] {
        assert!(
            feat.lines.iter().any(|x| x == l),
            "{l} missing from {feat:?}"
        );
    }
    assert!(!feat.lines.iter().any(|x| x == " MODE Z"));
    let mut f = Features::standard();
    f.mdtm = false;
    f.mfmt = false;
    f.size = false;
    f.languages.clear();
    let mut t = T::with(SessionConfig {
        features: f,
        disabled: vec![Verb::Dele],
        ..SessionConfig::default()
    });
    let feat = t.one("FEAT\r\n");
    assert!(!feat.lines.iter().any(|x| x.contains("MDTM")
        || x.contains("MFMT")
        || x.contains("SIZE")
        || x.contains("LANG")));
    t.codes("USER alice\r\nPASS secret\r\n");
    assert_eq!(
        t.codes("MDTM f\r\nSIZE f\r\nLANG\r\nDELE f\r\nMFMT 20010101000000 f\r\n"),
        [502, 502, 502, 502, 502]
    );
}

#[test]
fn gridftp_session() {
    let mut t = T::grid_logged_in();
    assert_eq!(t.codes("MODE E\r\nTYPE I\r\nOPTS RETR Parallelism=4,4,4;\r\nSBUF 4194304\r\nSITE RETRBUFSIZE 1000\r\nTREV PERF 5\r\nDCAU N\r\nDCAU A\r\n"), [200, 200, 200, 200, 200, 200, 200, 504]);
    assert_eq!(t.s.mode(), TransferMode::Extended);
    assert_eq!(t.s.buffer_sizes(), (Some(1000), Some(4_194_304)));
    assert_eq!(t.codes("OPTS RETR Parallelism=100,1,100;\r\n"), [501]);
    assert_eq!(t.s.retr_opts().parallelism.unwrap().starting, 4);
    // SPAS: multi-line 229.
    assert!(t.codes("SPAS\r\n").is_empty());
    assert_eq!(t.action(), Action::OpenPassive(PassiveKind::Spas));
    t.s.handle_passive_opened(Ok(vec![
        "192.0.2.1:5000".parse().unwrap(),
        "192.0.2.1:5001".parse().unwrap(),
    ]))
    .unwrap();
    assert_eq!(
        t.replies()[0].to_bytes(),
        b"229-Entering Striped Passive Mode\r\n 192,0,2,1,19,136\r\n 192,0,2,1,19,137\r\n229 End\r\n"
    );
    // REST range list then RETR.
    assert_eq!(t.codes("REST 0-1000,2000-3000\r\n"), [350]);
    assert!(t.codes("RETR f\r\n").is_empty());
    let Action::Retr(req) = t.action() else {
        panic!()
    };
    assert_eq!(req.restart.unwrap().to_marker_string(), "0-1000,2000-3000");
    assert_eq!(req.params.retr_opts.parallelism.unwrap().maximum, 4);
    assert_eq!(req.params.buffer_size, Some(1000));
    assert_eq!(req.params.perf_interval, 5);
    t.s.handle_transfer_started(TransferStart {
        reused: true,
        ..TransferStart::default()
    })
    .unwrap();
    let ranges: RangeSet = [(0, 4096)].into_iter().collect();
    t.s.handle_marker(Marker::Range(&ranges)).unwrap();
    let pm = PerfMarker {
        timestamp: UNIX_EPOCH + Duration::from_secs(5),
        stripe_index: 0,
        stripe_bytes: 4096,
        total_stripes: 1,
    };
    t.s.handle_marker(Marker::Perf(&pm)).unwrap();
    t.s.handle_transfer_done(Ok(TransferDone { bytes: 4096 }))
        .unwrap();
    let r = t.replies();
    assert_eq!(
        r.iter().map(|r| r.code).collect::<Vec<_>>(),
        [125, 111, 112, 226]
    );
    assert_eq!(r[1].to_bytes(), b"111 Range Marker 0-4096\r\n");
    // MODE E keeps the data channel for reuse.
    assert_eq!(t.s.data_endpoint(), Some(&DataEndpoint::Passive));
    // ERET and ESTO.
    assert!(t.codes("ERET P 100 50 part\r\n").is_empty());
    let Action::Retr(req) = t.action() else {
        panic!()
    };
    assert_eq!(
        (req.offset, req.length, req.path.as_str()),
        (100, Some(50), "/part")
    );
    assert_eq!(t.finish_transfer(), [150, 226]);
    assert!(
        t.codes("SCKS MD5 abc\r\nESTO A 4096 dst\r\n")
            .contains(&200)
    );
    let Action::Stor(req) = t.action() else {
        panic!()
    };
    assert_eq!((req.kind, req.offset), (StoreKind::Adjusted, 4096));
    assert_eq!(
        req.expected_checksum,
        Some((Some("MD5".to_string()), "abc".to_string()))
    );
    assert_eq!(t.finish_transfer(), [150, 226]);
    // CKSM.
    assert_eq!(t.codes("CKSM FOO 0 -1 f\r\n"), [504]);
    assert!(t.codes("CKSM sha256 0 -1 f\r\n").is_empty());
    assert_eq!(
        t.action(),
        Action::Cksm {
            path: "/f".parse_vp(),
            algorithm: "SHA256".into(),
            offset: 0,
            length: None
        }
    );
    t.s.handle_fs_result(Ok(FsOutcome::Checksum("abcd".into())))
        .unwrap();
    assert_eq!(t.replies()[0].to_bytes(), b"213 abcd\r\n");
    // SPOR replaces the passive setup.
    assert_eq!(t.codes("SPOR 192,0,2,10,20,0 192,0,2,10,20,1\r\n"), [200]);
    assert_eq!(t.action(), Action::ClosePassive);
    // Markers outside a started transfer are refused.
    assert!(t.s.handle_marker(Marker::Range(&ranges)).is_err());
}

#[test]
fn listings_mlst_and_stou() {
    let mut t = T::logged_in();
    t.pasv();
    assert!(t.codes("LIST -la sub\r\n").is_empty());
    let Action::List(req) = t.action() else {
        panic!()
    };
    assert_eq!(
        (req.kind, req.options.as_deref(), req.path.as_str()),
        (ListKind::List, Some("-la"), "/sub")
    );
    assert_eq!(t.finish_transfer(), [150, 226]);
    t.pasv();
    assert!(t.codes("MLSD\r\n").is_empty());
    let Action::List(req) = t.action() else {
        panic!()
    };
    assert_eq!((req.kind, req.path.as_str()), (ListKind::Mlsd, "/"));
    // Listing of a missing directory, before the data connection: 550.
    t.s.handle_transfer_done(Err(TransferError::Fs(FsError::new(FsErrorKind::NotFound))))
        .unwrap();
    assert_eq!(t.replies()[0].code, 550);
    assert!(t.codes("MLST f\r\n").is_empty());
    assert_eq!(t.action(), Action::Mlst("/f".parse_vp()));
    let facts = Facts {
        kind: Some(FileKind::File),
        size: Some(3),
        name: "/f".into(),
        ..Facts::default()
    };
    t.s.handle_fs_result(Ok(FsOutcome::Facts(facts))).unwrap();
    assert_eq!(
        t.replies()[0].to_bytes(),
        b"250-Listing /f\r\n type=file;size=3; /f\r\n250 End\r\n"
    );
    t.pasv();
    assert!(t.codes("STOU\r\n").is_empty());
    let Action::Stor(req) = t.action() else {
        panic!()
    };
    assert_eq!(req.kind, StoreKind::Unique);
    t.s.handle_transfer_started(TransferStart {
        name: Some("f.1".into()),
        ..TransferStart::default()
    })
    .unwrap();
    assert_eq!(t.replies()[0].to_bytes(), b"150 FILE: f.1\r\n");
    assert!(t.codes("STAT /x\r\n").is_empty()); // queued behind the transfer
    t.s.handle_transfer_done(Ok(TransferDone::default()))
        .unwrap();
    assert_eq!(t.replies()[0].code, 226);
    assert_eq!(t.action(), Action::Stat("/x".parse_vp()));
    t.s.handle_fs_result(Ok(FsOutcome::Lines(vec![
        "-rw-r--r-- 1 a a 0 Jan 1 00:00 x".into(),
    ])))
    .unwrap();
    let r = t.replies();
    assert_eq!(r[0].code, 213);
    assert_eq!(r[0].lines.len(), 3);
}

#[test]
fn rein_and_user_reset_state() {
    let mut t = T::logged_in();
    t.pasv();
    assert_eq!(t.codes("TYPE I\r\nREIN\r\n"), [200, 220]);
    assert_eq!(t.action(), Action::ClosePassive);
    assert!(t.s.user().is_none());
    assert_eq!(
        t.s.transfer_type(),
        TransferType::Ascii(gridos_ftp::proto::FormatControl::NonPrint)
    );
    assert_eq!(t.codes("PWD\r\n"), [530]);
}

#[test]
fn overlong_lines_and_garbage() {
    let mut t = T::logged_in();
    let mut long = vec![b'A'; 20_000];
    long.extend_from_slice(b"\r\nNOOP\r\n");
    t.s.handle_input(&long);
    assert_eq!(
        t.replies().iter().map(|r| r.code).collect::<Vec<_>>(),
        [500, 200]
    );
    t.s.handle_input(b"\x00\x01\x02\xff\xff\r\n\x80\x81 \xc3\r\n");
    let codes: Vec<u16> = t.replies().iter().map(|r| r.code).collect();
    assert_eq!(codes, [500, 500]);
    assert_eq!(t.codes("NOOP\r\n"), [200]);
}

#[test]
fn timeouts_and_shutdown() {
    let mut t = T::logged_in();
    t.s.handle_idle_timeout();
    assert_eq!(t.replies()[0].code, 421);
    assert!(t.s.is_closing());
    let mut t = T::logged_in();
    t.s.handle_shutdown();
    t.s.handle_shutdown();
    assert_eq!(t.replies().len(), 1);
}

#[test]
fn peer_address_is_used_for_checks() {
    let peer: SocketAddr = "[::ffff:192.0.2.10]:1000".parse().unwrap();
    let mut s = Session::new(SessionConfig::default(), Box::new(auth), peer);
    s.handle_input(b"USER alice\r\nPASS secret\r\nPORT 192,0,2,10,20,0\r\nPASV\r\n");
    let codes: Vec<u16> = std::iter::from_fn(|| s.poll_reply())
        .map(|r| r.code)
        .collect();
    assert_eq!(codes, [220, 331, 230, 200]);
    assert_eq!(
        s.poll_action(),
        Some(Action::OpenPassive(PassiveKind::Pasv))
    );
}

#[test]
fn mfmt_sets_times_and_echoes_the_path() {
    let mut t = T::new();
    assert_eq!(t.codes("MFMT 20010203040506 f\r\n"), [530]);
    t.no_action();
    assert_eq!(
        t.codes("USER alice\r\nPASS secret\r\nCWD dir\r\n"),
        [331, 230]
    );
    let Action::Cwd(_) = t.action() else { panic!() };
    t.s.handle_fs_result(Ok(FsOutcome::Done)).unwrap();
    assert_eq!(t.replies()[0].code, 250);

    let t0 = UNIX_EPOCH + Duration::from_secs(981_173_106);
    assert!(
        t.codes("MFMT 20010203040506 my file\r\nNOOP\r\n")
            .is_empty()
    );
    assert_eq!(
        t.action(),
        Action::Mfmt {
            path: "/dir/my file".parse_vp(),
            modified: t0
        }
    );
    // The reply carries the time the file system kept, and the path as the client sent it.
    t.s.handle_fs_result(Ok(FsOutcome::Modified(t0))).unwrap();
    let r = t.replies();
    assert_eq!(r[0].to_bytes(), b"213 Modify=20010203040506; my file\r\n");
    assert_eq!(r[1].code, 200);

    assert!(t.codes("MFMT 20010203040506.25 f\r\n").is_empty());
    let Action::Mfmt { modified, .. } = t.action() else {
        panic!()
    };
    assert_eq!(modified, t0 + Duration::from_millis(250));
    t.s.handle_fs_result(Ok(FsOutcome::Modified(modified)))
        .unwrap();
    assert_eq!(
        t.replies()[0].to_bytes(),
        b"213 Modify=20010203040506.25; f\r\n"
    );

    for (kind, code) in [
        (FsErrorKind::NotFound, 550),
        (FsErrorKind::PermissionDenied, 550),
    ] {
        assert!(t.codes("MFMT 20010203040506 f\r\n").is_empty());
        assert!(matches!(t.action(), Action::Mfmt { .. }));
        t.s.handle_fs_result(Err(FsError::new(kind))).unwrap();
        assert_eq!(t.replies()[0].code, code);
    }
    // A bad time is refused without touching the file system.
    for bad in ["MFMT 2001020304 f", "MFMT 20011302040506 f", "MFMT f"] {
        assert_eq!(t.codes(&format!("{bad}\r\n")), [501], "{bad}");
        t.no_action();
    }
}
