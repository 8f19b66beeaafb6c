//! What any server may send a client: arbitrary bytes through the reply parser (split at an
//! input-chosen point, so framing across reads is exercised), then every parsed reply through
//! the parsers the client applies to replies (FEAT, PASV/EPSV/SPAS, 111/112 markers).
#![no_main]

use gridos_ftp::client::Features;
use gridos_ftp::proto::{PerfMarker, Reply, ReplyParser, addr, markers};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let mut p = ReplyParser::new();
    let at = usize::from(cut).min(rest.len());
    p.feed(&rest[..at]);
    let mut replies: Vec<Reply> = Vec::new();
    let drain = |p: &mut ReplyParser, out: &mut Vec<Reply>| {
        while let Some(r) = p.poll_reply() {
            match r {
                Ok(r) => out.push(r),
                Err(_) => break,
            }
        }
    };
    drain(&mut p, &mut replies);
    p.feed(&rest[at..]);
    drain(&mut p, &mut replies);
    let _ = gridos_ftp::proto::reply::parse_reply(rest);
    for r in &replies {
        assert!((100..1000).contains(&r.code));
        let _ = Features::parse(r);
        let _ = PerfMarker::parse(r);
        let _ = markers::parse_range_marker(r);
        let _ = addr::parse_spas_reply(r);
        let text = r.lines.join("\n");
        let _ = addr::parse_pasv_reply(&text);
        let _ = addr::parse_epsv_reply(&text);
        // A reply written back out parses to the same reply.
        let again = gridos_ftp::proto::reply::parse_reply(&r.to_bytes());
        if let Ok(again) = again {
            assert_eq!(again.code, r.code);
        }
    }
});
