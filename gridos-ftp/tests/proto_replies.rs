//! Reply formatting and parsing, and the reply-argument helpers.

use std::time::{Duration, UNIX_EPOCH};

use gridos_ftp::proto::addr::{
    epsv_reply, format_eprt, parse_eprt, parse_epsv_reply, parse_pasv_reply, pasv_reply,
};
use gridos_ftp::proto::facts::{format_time, parse_time};
use gridos_ftp::proto::markers::{parse_range_marker, range_marker_reply};
use gridos_ftp::proto::{
    FactSet, Facts, FileKind, PerfMarker, RangeSet, Reply, ReplyError, ReplyParser,
};

#[test]
fn format_then_parse_many_replies_incrementally() {
    let replies = vec![
        Reply::new(220, "gridos FTP server ready."),
        Reply::multi(211, ["Features:", " MDTM", " SIZE", "End"]),
        Reply::multi(
            214,
            [
                "Help",
                "0 starts with a digit",
                "226 looks like an end",
                "Done",
            ],
        ),
        Reply::new(226, ""),
        Reply::multi(112, ["Perf Marker", " Timestamp: 1.0", "End."]),
    ];
    let mut wire = Vec::new();
    for r in &replies {
        r.write_to(&mut wire);
    }
    // Lines that start with a digit are escaped with a space.
    let text = String::from_utf8(wire.clone()).unwrap();
    assert!(
        text.contains(
            "\r\n 0 starts with a digit\r\n \x32\x32\x36 looks like an end\r\n214 Done\r\n"
        )
    );
    // Feed one byte at a time.
    let mut p = ReplyParser::new();
    let mut got = Vec::new();
    for b in &wire {
        p.feed(std::slice::from_ref(b));
        while let Some(r) = p.poll_reply() {
            got.push(r.unwrap());
        }
    }
    assert_eq!(got.len(), replies.len());
    for (g, want) in got.iter().zip(&replies) {
        // Escaped lines come back with their space; formatting again gives the same bytes.
        assert_eq!(g.to_bytes(), want.to_bytes());
        assert_eq!(g.code, want.code);
    }
    assert_eq!(got[0], replies[0]);
    assert_eq!(got[1], replies[1]);
}

#[test]
fn parser_rejects_malformed_and_recovers() {
    let mut p = ReplyParser::with_limits(64, 1024);
    p.feed(b"garbage\r\n");
    p.feed(&[b'x'; 100]);
    p.feed(b"\r\n200 OK\r\n");
    assert_eq!(p.poll_reply(), Some(Err(ReplyError::MalformedLine)));
    assert_eq!(p.poll_reply(), Some(Err(ReplyError::TooLong)));
    assert_eq!(p.poll_reply(), Some(Ok(Reply::new(200, "OK"))));
    assert!(!p.is_mid_reply());
    p.feed(b"150-start\r\n");
    assert!(p.is_mid_reply());
}

#[test]
fn helpers_round_trip() {
    let a = "10.20.30.40:65535".parse().unwrap();
    assert_eq!(parse_pasv_reply(pasv_reply(a).text()).unwrap(), a);
    assert_eq!(parse_epsv_reply(epsv_reply(21).text()).unwrap(), 21);
    for addr in ["[fe80::1]:1", "1.2.3.4:65535"] {
        let addr = addr.parse().unwrap();
        assert_eq!(parse_eprt(&format_eprt(addr)).unwrap(), addr);
    }
    let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    assert_eq!(format_time(t), "20231114221320");
    assert_eq!(parse_time(&format_time(t)).unwrap(), t);
    let f = Facts {
        kind: Some(FileKind::Dir),
        modify: Some(t),
        perm: Some("el".into()),
        unique: Some("801U1".into()),
        extra: vec![("UNIX.owner".into(), "root".into())],
        name: "dir name".into(),
        ..Facts::default()
    };
    let line = f.format(&FactSet::default());
    assert_eq!(
        line,
        "type=dir;modify=20231114221320;perm=el;unique=801U1;UNIX.owner=root; dir name"
    );
    assert_eq!(Facts::parse(&line).unwrap(), f);
    let ranges: RangeSet = [(0, 1000), (2000, 3000)].into_iter().collect();
    let r = range_marker_reply(&ranges);
    assert_eq!(r.to_bytes(), b"111 Range Marker 0-1000,2000-3000\r\n");
    assert_eq!(
        parse_range_marker(&gridos_ftp::proto::reply::parse_reply(&r.to_bytes()).unwrap()).unwrap(),
        ranges
    );
    let pm = PerfMarker {
        timestamp: t,
        stripe_index: 1,
        stripe_bytes: 99,
        total_stripes: 2,
    };
    let parsed = gridos_ftp::proto::reply::parse_reply(&pm.to_reply().to_bytes()).unwrap();
    assert_eq!(PerfMarker::parse(&parsed).unwrap(), pm);
    assert!(
        PerfMarker::parse(&Reply::multi(112, ["Perf Marker", " Timestamp: x", "End."])).is_err()
    );
}
