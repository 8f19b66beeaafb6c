//! MODE E from a hostile peer: a stream of 17-byte block headers over up to four connections
//! through the decoder and the reassembly tracker, with payloads "written" in input-chosen
//! pieces. Checks the tracker's promises: writes stay within the limit, nothing is reported
//! complete while a payload is pending, and received bytes never exceed what was written.
#![no_main]

use gridos_ftp::proto::RangeSet;
use gridos_ftp::proto::mode_e::{BlockHeader, HEADER_LEN, ModeEReceiver, Placement};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let limit = (flags & 1 == 1).then_some(1u64 << 20);
    let mut rx = ModeEReceiver::new(limit).with_max_streams(4);
    if flags & 2 != 0 {
        rx = rx.with_offset_adjustment(4096);
    }
    let mut imported = 0;
    if flags & 4 != 0 {
        if let Ok(r) = RangeSet::parse("0-100,4096-8192") {
            imported = r.total();
            rx.import_restart(&r);
        }
    }
    let streams: Vec<_> = (0..=(flags >> 6)).map(|_| rx.add_stream()).collect();
    let mut written = 0u64;
    while rest.len() > HEADER_LEN {
        let (pick, r) = rest.split_first().unwrap();
        let s = streams[usize::from(*pick) % streams.len()];
        let (h, r) = r.split_at(HEADER_LEN.min(r.len()));
        rest = r;
        if *pick & 0x80 != 0 {
            let _ = rx.handle_close(s);
            continue;
        }
        let Ok(h) = BlockHeader::decode(h) else {
            continue;
        };
        assert_eq!(BlockHeader::decode(&h.encode()), Ok(h));
        match rx.handle_header(s, &h) {
            Ok(Placement::Write { offset, len }) => {
                if let Some(l) = limit {
                    assert!(offset.saturating_add(len) <= l + 4096);
                }
                // Report the payload in two pieces, as a socket may deliver it.
                let half = len / 2;
                if rx.handle_written(s, half).is_ok() {
                    written = written.saturating_add(half);
                    assert!(!rx.is_complete() || len == half);
                    if rx.handle_written(s, len - half).is_ok() {
                        written = written.saturating_add(len - half);
                    }
                }
            }
            Ok(Placement::Discard { len }) => {
                let _ = rx.handle_written(s, len);
            }
            Ok(_) | Err(_) => {}
        }
        let _ = rx.status();
        let _ = rx.range_marker();
    }
    assert!(rx.received().total() <= written.saturating_add(imported));
});
