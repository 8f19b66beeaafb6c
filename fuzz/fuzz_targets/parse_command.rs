//! Arbitrary bytes through LineReader framing and the command parser; the Display form of
//! every parsed command must parse back to the same command.
#![no_main]

use gridos_ftp::proto::{Command, LineEvent, LineReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Command::parse(data);
    let mut lines = LineReader::with_max_line(512);
    // Feed in two pieces so framing across reads is exercised.
    let (a, b) = data.split_at(data.len() / 2);
    lines.feed(a);
    lines.feed(b);
    assert!(lines.partial_len() <= 513);
    while let Some(ev) = lines.poll_line() {
        if let LineEvent::Line(l) = ev {
            assert!(l.len() <= 512);
            if let Ok(c) = Command::parse(&l) {
                assert_eq!(Command::parse(&c.to_bytes()), Ok(c));
            }
        }
    }
});
