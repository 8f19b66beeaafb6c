//! Every command parses in its good forms and is refused with the right code in bad ones.

use std::net::SocketAddr;

use gridos_ftp::proto::{
    Command, Dcau, EpsvArg, FactSet, FormatControl, ListArgs, Opts, Parallelism, ParseError,
    ProtLevel, RangeSet, Restart, RetrOpts, SiteCommand, StripeLayout, Structure, TransferMode,
    TransferType, TrevEvent, Verb,
};

fn ok(line: &str) -> Command {
    match Command::parse(line.as_bytes()) {
        Ok(c) => c,
        Err(e) => panic!("{line:?} failed: {e}"),
    }
}

fn code(line: &[u8]) -> u16 {
    match Command::parse(line) {
        Ok(c) => panic!("{:?} parsed as {c:?}", String::from_utf8_lossy(line)),
        Err(e) => e.reply_code(),
    }
}

fn s(x: &str) -> String {
    x.to_string()
}

#[test]
fn rfc959_commands() {
    let cases: Vec<(&str, Command)> = vec![
        ("USER alice", Command::User(s("alice"))),
        ("user  bob ", Command::User(s("bob"))),
        ("PASS secret word", Command::Pass(s("secret word"))),
        ("PASS", Command::Pass(s(""))),
        ("ACCT acc", Command::Acct(s("acc"))),
        ("QUIT", Command::Quit),
        ("REIN", Command::Rein),
        ("NOOP", Command::Noop),
        ("noop", Command::Noop),
        ("SYST", Command::Syst),
        ("STAT", Command::Stat(None)),
        ("STAT /some dir", Command::Stat(Some(s("/some dir")))),
        ("HELP", Command::Help(None)),
        ("HELP RETR", Command::Help(Some(s("RETR")))),
        ("PWD", Command::Pwd),
        ("XPWD", Command::Pwd),
        ("CWD  two  spaces ", Command::Cwd(s(" two  spaces "))),
        ("XCWD a", Command::Cwd(s("a"))),
        ("CDUP", Command::Cdup),
        ("XCUP", Command::Cdup),
        ("MKD new dir", Command::Mkd(s("new dir"))),
        ("XMKD d", Command::Mkd(s("d"))),
        ("RMD d", Command::Rmd(s("d"))),
        ("XRMD d", Command::Rmd(s("d"))),
        ("DELE f", Command::Dele(s("f"))),
        ("RNFR a", Command::Rnfr(s("a"))),
        ("RNTO b c", Command::Rnto(s("b c"))),
        ("LIST", Command::List(ListArgs::default())),
        (
            "LIST -la",
            Command::List(ListArgs {
                options: Some(s("-la")),
                path: None,
            }),
        ),
        (
            "LIST -la /pub",
            Command::List(ListArgs {
                options: Some(s("-la")),
                path: Some(s("/pub")),
            }),
        ),
        (
            "LIST pub dir",
            Command::List(ListArgs {
                options: None,
                path: Some(s("pub dir")),
            }),
        ),
        ("NLST", Command::Nlst(ListArgs::default())),
        (
            "NLST *.txt",
            Command::Nlst(ListArgs {
                options: None,
                path: Some(s("*.txt")),
            }),
        ),
        (
            "TYPE A",
            Command::Type(TransferType::Ascii(FormatControl::NonPrint)),
        ),
        (
            "TYPE A N",
            Command::Type(TransferType::Ascii(FormatControl::NonPrint)),
        ),
        (
            "type a t",
            Command::Type(TransferType::Ascii(FormatControl::Telnet)),
        ),
        ("TYPE I", Command::Type(TransferType::Image)),
        ("TYPE L 8", Command::Type(TransferType::Local(8))),
        ("TYPE L8", Command::Type(TransferType::Local(8))),
        (
            "TYPE E",
            Command::Type(TransferType::Ebcdic(FormatControl::NonPrint)),
        ),
        ("MODE S", Command::Mode(TransferMode::Stream)),
        ("MODE E", Command::Mode(TransferMode::Extended)),
        ("mode z", Command::Mode(TransferMode::Deflate)),
        ("MODE B", Command::Mode(TransferMode::Block)),
        ("STRU F", Command::Stru(Structure::File)),
        ("STRU R", Command::Stru(Structure::Record)),
        ("PASV", Command::Pasv),
        (
            "PORT 127,0,0,1,4,1",
            Command::Port("127.0.0.1:1025".parse().unwrap()),
        ),
        ("REST 0", Command::Rest(Restart::Offset(0))),
        (
            "REST 18446744073709551615",
            Command::Rest(Restart::Offset(u64::MAX)),
        ),
        ("RETR a file.txt", Command::Retr(s("a file.txt"))),
        ("STOR ünïcødé.bin", Command::Stor(s("ünïcødé.bin"))),
        ("APPE log", Command::Appe(s("log"))),
        ("STOU", Command::Stou(None)),
        ("STOU base", Command::Stou(Some(s("base")))),
        ("ABOR", Command::Abor),
        (
            "ALLO 1000",
            Command::Allo {
                size: 1000,
                record: None,
            },
        ),
        (
            "ALLO 1000 R 10",
            Command::Allo {
                size: 1000,
                record: Some(10),
            },
        ),
        (
            "SITE CHMOD 755 a b",
            Command::Site(SiteCommand::Chmod {
                mode: 0o755,
                path: s("a b"),
            }),
        ),
        ("SITE help", Command::Site(SiteCommand::Help)),
        (
            "SITE UMASK 022",
            Command::Site(SiteCommand::Other {
                command: s("UMASK"),
                args: s("022"),
            }),
        ),
    ];
    for (line, want) in cases {
        assert_eq!(ok(line), want, "{line}");
    }
}

#[test]
fn extension_commands() {
    let cases: Vec<(&str, Command)> = vec![
        ("FEAT", Command::Feat),
        ("OPTS UTF8 ON", Command::Opts(Opts::Utf8(true))),
        ("opts utf8 off", Command::Opts(Opts::Utf8(false))),
        ("OPTS UTF8", Command::Opts(Opts::Utf8(true))),
        (
            "OPTS MLST type;size;",
            Command::Opts(Opts::Mlst(FactSet {
                modify: false,
                perm: false,
                unique: false,
                unix_mode: false,
                ..FactSet::default()
            })),
        ),
        ("OPTS MLST", Command::Opts(Opts::Mlst(FactSet::none()))),
        (
            "OPTS FOO bar",
            Command::Opts(Opts::Other {
                command: s("FOO"),
                args: s("bar"),
            }),
        ),
        ("EPSV", Command::Epsv(EpsvArg::Any)),
        ("EPSV ALL", Command::Epsv(EpsvArg::All)),
        ("epsv all", Command::Epsv(EpsvArg::All)),
        ("EPSV 2", Command::Epsv(EpsvArg::Protocol(2))),
        (
            "EPRT |1|132.235.1.2|6275|",
            Command::Eprt("132.235.1.2:6275".parse().unwrap()),
        ),
        (
            "EPRT |2|::1|5282|",
            Command::Eprt("[::1]:5282".parse().unwrap()),
        ),
        ("SIZE f", Command::Size(s("f"))),
        ("MDTM f g", Command::Mdtm(s("f g"))),
        ("MLST", Command::Mlst(None)),
        ("MLST x", Command::Mlst(Some(s("x")))),
        ("MLSD", Command::Mlsd(None)),
        ("MLSD /d", Command::Mlsd(Some(s("/d")))),
        ("LANG", Command::Lang(None)),
        ("LANG en-US", Command::Lang(Some(s("en-US")))),
        ("AUTH tls", Command::Auth(s("TLS"))),
        ("PBSZ 0", Command::Pbsz(0)),
        ("PROT C", Command::Prot(ProtLevel::Clear)),
        ("PROT P", Command::Prot(ProtLevel::Private)),
        ("CCC", Command::Ccc),
        ("SSCN", Command::Sscn(None)),
        ("sscn on", Command::Sscn(Some(true))),
        ("SSCN OFF", Command::Sscn(Some(false))),
        ("DCAU N", Command::Dcau(Dcau::None)),
        ("DCAU A", Command::Dcau(Dcau::SelfAuth)),
        (
            "DCAU S /O=Grid/CN=Some One",
            Command::Dcau(Dcau::Subject(s("/O=Grid/CN=Some One"))),
        ),
    ];
    for (line, want) in cases {
        assert_eq!(ok(line), want, "{line}");
    }
}

#[test]
fn gridftp_commands() {
    let p = |a, b, c| Parallelism {
        starting: a,
        minimum: b,
        maximum: c,
    };
    let cases: Vec<(&str, Command)> = vec![
        ("SBUF 16777216", Command::Sbuf(16_777_216)),
        (
            "SITE SBUF 1048576",
            Command::Site(SiteCommand::Sbuf(1_048_576)),
        ),
        (
            "SITE BUFSIZE 1048576",
            Command::Site(SiteCommand::Sbuf(1_048_576)),
        ),
        (
            "SITE RETRBUFSIZE 65536",
            Command::Site(SiteCommand::RetrBufSize(65_536)),
        ),
        (
            "SITE STORBUFSIZE 65536",
            Command::Site(SiteCommand::StorBufSize(65_536)),
        ),
        ("SPAS", Command::Spas),
        (
            "SPOR 127,0,0,1,4,1 127,0,0,1,4,2",
            Command::Spor(vec![
                "127.0.0.1:1025".parse().unwrap(),
                "127.0.0.1:1026".parse().unwrap(),
            ]),
        ),
        (
            "SPOR |2|::1|4000|",
            Command::Spor(vec!["[::1]:4000".parse::<SocketAddr>().unwrap()]),
        ),
        (
            "ERET P 0 1000 /a b",
            Command::Eret {
                offset: 0,
                length: 1000,
                path: s("/a b"),
            },
        ),
        (
            "eret p 5 6 x",
            Command::Eret {
                offset: 5,
                length: 6,
                path: s("x"),
            },
        ),
        (
            "ESTO A 4096 /dst file",
            Command::Esto {
                offset: 4096,
                path: s("/dst file"),
            },
        ),
        (
            "CKSM md5 0 -1 /f",
            Command::Cksm {
                algorithm: s("MD5"),
                offset: 0,
                length: None,
                path: s("/f"),
            },
        ),
        (
            "CKSM ADLER32 10 20 a b",
            Command::Cksm {
                algorithm: s("ADLER32"),
                offset: 10,
                length: Some(20),
                path: s("a b"),
            },
        ),
        (
            "SCKS MD5 d41d8cd98f00b204e9800998ecf8427e",
            Command::Scks {
                algorithm: Some(s("MD5")),
                value: s("d41d8cd98f00b204e9800998ecf8427e"),
            },
        ),
        (
            "SCKS abcdef",
            Command::Scks {
                algorithm: None,
                value: s("abcdef"),
            },
        ),
        (
            "TREV PERF 5",
            Command::Trev {
                event: TrevEvent::Perf,
                interval: 5,
            },
        ),
        (
            "TREV restart 0",
            Command::Trev {
                event: TrevEvent::Restart,
                interval: 0,
            },
        ),
        (
            "OPTS RETR Parallelism=4,4,4;",
            Command::Opts(Opts::Retr(RetrOpts {
                parallelism: Some(p(4, 4, 4)),
                ..RetrOpts::default()
            })),
        ),
        (
            "OPTS RETR StripeLayout=Blocked;BlockSize=1048576;Parallelism=1,2,8",
            Command::Opts(Opts::Retr(RetrOpts {
                parallelism: Some(p(1, 2, 8)),
                stripe_layout: Some(StripeLayout::Blocked),
                block_size: Some(1_048_576),
            })),
        ),
        (
            "REST 0-1000,2000-3000",
            Command::Rest(Restart::Ranges(
                [(0, 1000), (2000, 3000)].into_iter().collect::<RangeSet>(),
            )),
        ),
    ];
    for (line, want) in cases {
        assert_eq!(ok(line), want, "{line}");
    }
}

#[test]
fn unknown_verbs_are_500_and_unimplemented_502() {
    for line in [
        &b"BOGUS"[..],
        b"XYZZY arg",
        b"RETRX f",
        b"\xff\xfe",
        b"R\xc3TR x",
        b" NOOP",
        b"NO OP",
    ] {
        assert_eq!(code(line), 500, "{:?}", String::from_utf8_lossy(line));
    }
    assert_eq!(Command::parse(b""), Err(ParseError::Empty));
    assert_eq!(Command::parse(b"\r\n"), Err(ParseError::Empty));
    for line in [
        "SMNT /x",
        "ADAT abc",
        "MFCT 20200101000000 f",
        "host example",
    ] {
        assert_eq!(code(line.as_bytes()), 502, "{line}");
    }
}

#[test]
fn bad_arguments_are_501() {
    let bad = [
        "USER",
        "USER  ",
        "ACCT",
        "QUIT now",
        "NOOP x",
        "PWD x",
        "PASV 1",
        "CDUP ..",
        "ABOR x",
        "FEAT x",
        "SPAS x",
        "CWD",
        "CWD ",
        "MKD",
        "RMD",
        "DELE",
        "RNFR",
        "RNTO",
        "SIZE",
        "MDTM",
        "MFMT",
        "MFMT 20200101000000",
        "MFMT 20200101000000 ",
        "MFMT f",
        "MFMT 2020010100000 f",
        "MFMT 202001010000000 f",
        "MFMT 20201301000000 f",
        "MFMT 20200230000000 f",
        "MFMT 20200101240000 f",
        "MFMT 20200101006000 f",
        "MFMT 20200101000061 f",
        "MFMT 20200101000000. f",
        "MFMT 20200101000000.1x f",
        "MFMT +2020010100000 f",
        "MFMT 2020-01-01T00:00:00 f",
        "MFMT \u{663}0200101000000 f",
        "RETR",
        "STOR",
        "APPE",
        "TYPE",
        "TYPE X",
        "TYPE I N",
        "TYPE A X",
        "TYPE L",
        "TYPE L 0",
        "TYPE L 256",
        "TYPE A N X",
        "MODE",
        "MODE Q",
        "MODE SE",
        "STRU",
        "STRU X",
        "PORT",
        "PORT 1,2,3,4,5",
        "PORT 1,2,3,4,5,256",
        "PORT 300,2,3,4,5,6",
        "PORT a,b,c,d,e,f",
        "EPRT",
        "EPRT |1|::1|21|",
        "EPRT |3|1.2.3.4|21|",
        "EPRT |1|1.2.3.4|0|",
        "EPRT |1|1.2.3.4|21",
        "EPSV x",
        "EPSV 99999",
        "REST",
        "REST -1",
        "REST 5-4",
        "REST 1-2,x",
        "REST 99999999999999999999",
        "REST 0-1000,2000",
        "ALLO",
        "ALLO x",
        "ALLO 1 X 2",
        "ALLO 1 R",
        "SITE",
        "SITE CHMOD",
        "SITE CHMOD 999 f",
        "SITE CHMOD 755",
        "SITE CHMOD 77777 f",
        "SITE SBUF",
        "SITE SBUF x",
        "SITE RETRBUFSIZE -1",
        "AUTH",
        "PBSZ",
        "PBSZ x",
        "PROT",
        "PROT X",
        "CCC now",
        "SSCN MAYBE",
        "DCAU",
        "DCAU X",
        "DCAU N x",
        "DCAU S",
        "SBUF",
        "SBUF 1.5",
        "SPOR",
        "SPOR 1,2,3,4",
        "SPOR 1,2,3,4,5,6 junk",
        "ERET",
        "ERET P",
        "ERET P 0 10",
        "ERET P 0 10 ",
        "ERET X 0 10 f",
        "ERET P a 10 f",
        "ERET P 0 -1 f",
        "ERET P 18446744073709551615 1 f",
        "ESTO",
        "ESTO A",
        "ESTO A 10",
        "ESTO B 10 f",
        "ESTO A x f",
        "CKSM",
        "CKSM MD5",
        "CKSM MD5 0 -1",
        "CKSM MD5 x -1 f",
        "CKSM MD5 0 -2 f",
        "CKSM M/D 0 -1 f",
        "CKSM MD5 18446744073709551615 1 f",
        "SCKS",
        "SCKS a b c",
        "TREV",
        "TREV PERF",
        "TREV FOO 5",
        "TREV PERF x",
        "TREV PERF 5 a b",
        "OPTS",
        "OPTS UTF8 MAYBE",
        "OPTS RETR",
        "OPTS RETR Parallelism=4;",
        "OPTS RETR Parallelism=0,1,1;",
        "OPTS RETR Parallelism=a,b,c;",
        "OPTS RETR Parallelism=1,1,1;Parallelism=2,2,2;",
        "OPTS RETR StripeLayout=Diagonal;",
        "OPTS RETR BlockSize=0;",
        "OPTS RETR BlockSize=x;",
        "OPTS RETR Bogus=1;",
        "OPTS RETR Parallelism",
        "OPTS RETR Parallelism=4,4,4,4;",
    ];
    for line in bad {
        assert_eq!(code(line.as_bytes()), 501, "{line}");
    }
}

#[test]
fn nul_non_utf8_and_line_breaks_in_paths() {
    assert_eq!(code(b"RETR a\0b"), 501);
    assert_eq!(code(b"CWD \0"), 501);
    assert_eq!(code(b"STOR a\rb"), 501);
    assert_eq!(code(b"STOR \xff\xfe"), 501);
    assert_eq!(code(b"MKD caf\xe9"), 501);
    assert!(matches!(
        Command::parse(b"RETR \xc3\x28"),
        Err(ParseError::BadArguments { verb: "RETR", .. })
    ));
}

#[test]
fn line_ends_and_telnet() {
    assert_eq!(ok("NOOP\r\n"), Command::Noop);
    assert_eq!(ok("NOOP\n"), Command::Noop);
    assert_eq!(ok("NOOP\r"), Command::Noop);
    // IAC IP, IAC DM before ABOR (RFC 959 §4.1.3).
    assert_eq!(
        Command::parse(b"\xff\xf4\xff\xf2ABOR\r\n"),
        Ok(Command::Abor)
    );
    // IAC IAC is a literal 0xFF, which is not UTF-8.
    assert_eq!(code(b"RETR a\xff\xffb"), 501);
    // Option negotiation in the middle of a verb is dropped.
    assert_eq!(Command::parse(b"NO\xff\xfb\x01OP"), Ok(Command::Noop));
}

#[test]
fn fuzz_regressions() {
    // Found by the parse_command fuzz target: a vertical tab is whitespace to `str::trim`
    // but not to `u8::is_ascii_whitespace`; HELP/LANG with only blanks mean "no argument".
    assert_eq!(
        Command::parse(b"HELP \t\t\x0b\xff\x00\xff'\n"),
        Ok(Command::Help(None))
    );
    assert_eq!(Command::parse(b"LANG \x0b"), Ok(Command::Lang(None)));
    // SITE/OPTS subcommand names are words; anything else is 501.
    assert_eq!(code(b"SITE A\x0b#SY\x0c "), 501);
    assert_eq!(code(b"OPTS A\x0bB"), 501);
    assert_eq!(
        ok("SITE  idle 60"),
        Command::Site(SiteCommand::Other {
            command: s("IDLE"),
            args: s("60")
        })
    );
}

#[test]
fn display_is_the_wire_form() {
    for line in [
        "USER alice",
        "PASS",
        "PASS x y",
        "CWD a b",
        "LIST -la /x",
        "LIST",
        "NLST p",
        "TYPE A",
        "TYPE A T",
        "TYPE I",
        "TYPE L 8",
        "MODE E",
        "STRU F",
        "EPSV ALL",
        "EPSV 1",
        "PORT 10,0,0,1,4,1",
        "EPRT |2|::1|4000|",
        "REST 5",
        "REST 0-10,20-30",
        "ALLO 5 R 2",
        "SITE CHMOD 644 f",
        "SITE RETRBUFSIZE 5",
        "SITE FOO bar",
        "PROT C",
        "DCAU S subj",
        "SPOR 1,2,3,4,5,6 |2|::1|4000|",
        "ERET P 1 2 x y",
        "ESTO A 3 z",
        "CKSM MD5 0 -1 f",
        "CKSM SHA256 1 2 g",
        "SCKS MD5 abc",
        "TREV PERF 5",
        "OPTS UTF8 ON",
        "OPTS MLST type;size;",
        "OPTS RETR Parallelism=4,4,4;StripeLayout=Blocked;BlockSize=4096;",
        "OPTS X y",
        "SBUF 10",
        "PBSZ 0",
        "AUTH TLS",
        "CCC",
        "SSCN ON",
        "SSCN",
        "LANG EN",
        "STOU",
        "MLSD",
        "MLST f",
        "HELP",
        "STAT x",
        "MFMT 20010203040506 a b",
        "MFMT 19691231235959.5 old",
    ] {
        let c = ok(line);
        assert_eq!(c.to_string(), line);
        let mut wire = line.as_bytes().to_vec();
        wire.extend_from_slice(b"\r\n");
        assert_eq!(c.to_bytes(), wire);
    }
}

#[test]
fn every_verb_round_trips_through_lookup() {
    for v in Verb::ALL {
        assert_eq!(Verb::lookup(v.as_str()), Some(*v));
        assert_eq!(Verb::lookup(&v.as_str().to_ascii_lowercase()), Some(*v));
    }
    assert_eq!(Verb::ALL.len(), 56);
}

#[test]
fn mfmt_time_and_path() {
    use std::time::{Duration, UNIX_EPOCH};
    let at = |secs: u64, nanos: u32| UNIX_EPOCH + Duration::new(secs, nanos);
    for (line, modified, path) in [
        (
            "MFMT 20010203040506 file.txt",
            at(981_173_106, 0),
            "file.txt",
        ),
        (
            "mfmt 20010203040506.123 a b ",
            at(981_173_106, 123_000_000),
            "a b ",
        ),
        (
            "MFMT 20010203040506.1234567891 x",
            at(981_173_106, 123_456_789),
            "x",
        ),
        ("MFMT 19700101000000 /d/f", at(0, 0), "/d/f"),
        // A leap second counts as the next second (RFC 3659 time-val allows 60).
        ("MFMT 20161231235960 f", at(1_483_228_800, 0), "f"),
    ] {
        assert_eq!(
            ok(line),
            Command::Mfmt {
                modified,
                path: s(path)
            },
            "{line}"
        );
    }
    assert_eq!(
        ok("MFMT 19691231235959 p"),
        Command::Mfmt {
            modified: UNIX_EPOCH - Duration::from_secs(1),
            path: s("p")
        }
    );
    assert_eq!(
        ok("MFMT 20010203040506.120 f").to_string(),
        "MFMT 20010203040506.12 f"
    );
    assert_eq!(ok("MFMT 20010203040506 f").verb(), Verb::Mfmt);
}
