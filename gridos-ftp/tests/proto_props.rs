//! Property tests: no panics on arbitrary bytes, round trips, reassembly covers the file.
//! These also stand in for running the cargo-fuzz targets under `fuzz/` for long.

use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use gridos_ftp::proto::mode_e::{BlockHeader, ModeEReceiver, ModeESender, Placement, StreamId};
use gridos_ftp::proto::{
    Action, AuthOutcome, Command, Features, FsError, FsErrorKind, FsOutcome, LineEvent, LineReader,
    RangeSet, Reply, ReplyParser, Session, SessionConfig, TransferDone, TransferError,
    TransferStart, Verb,
};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// Lines that look like commands: a known verb (any case) and an argument of mostly
/// printable characters, sometimes with hostile bytes.
fn command_like() -> impl Strategy<Value = Vec<u8>> {
    let verb = prop::sample::select(Verb::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>());
    let arg = prop_oneof![
        "[ -~]{0,40}".prop_map(String::into_bytes),
        "[0-9,|:. -]{0,40}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..40),
    ];
    (verb, any::<bool>(), arg).prop_map(|(v, lower, a)| {
        let mut l = if lower {
            v.to_ascii_lowercase()
        } else {
            v.to_string()
        }
        .into_bytes();
        l.push(b' ');
        l.extend(a);
        l
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Command::parse(&bytes);
    }

    #[test]
    fn parsed_commands_reparse_from_their_display(line in command_like()) {
        if let Ok(c) = Command::parse(&line) {
            let again = Command::parse(&c.to_bytes());
            prop_assert_eq!(again, Ok(c));
        }
    }

    #[test]
    fn mfmt_times_round_trip(
        secs in -62_167_219_200i64..=253_402_300_799,
        nanos in 0u32..1_000_000_000,
        path in "[ -~]{1,30}",
    ) {
        let modified = if secs >= 0 {
            UNIX_EPOCH + Duration::new(secs as u64, nanos)
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(u64::from(nanos))
        };
        let c = Command::Mfmt { modified, path: path.clone() };
        prop_assert_eq!(Command::parse(&c.to_bytes()), Ok(c));
    }

    #[test]
    fn mfmt_arguments_never_panic(
        time in prop_oneof!["[0-9]{0,20}", "[0-9]{14}\\.[0-9]{0,12}", "[0-9. +-]{0,20}"],
        rest in prop::collection::vec(any::<u8>(), 0..20),
    ) {
        let mut line = format!("MFMT {time} ").into_bytes();
        line.extend(rest);
        if let Ok(c) = Command::parse(&line) {
            prop_assert_eq!(c.verb(), Verb::Mfmt);
            prop_assert_eq!(Command::parse(&c.to_bytes()), Ok(c));
        }
    }

    #[test]
    fn line_reader_bounded_and_never_panics(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..30),
        max in 1usize..64,
    ) {
        let mut r = LineReader::with_max_line(max);
        for c in &chunks {
            r.feed(c);
            prop_assert!(r.partial_len() <= max + 1);
            while let Some(ev) = r.poll_line() {
                if let LineEvent::Line(l) = ev {
                    prop_assert!(l.len() <= max);
                }
            }
        }
    }

    #[test]
    fn line_reader_splits_plain_text_exactly(
        lines in prop::collection::vec("[a-zA-Z0-9 ]{0,20}", 0..10),
        crlf in any::<bool>(),
        split in 0usize..200,
    ) {
        let end = if crlf { "\r\n" } else { "\n" };
        let text: String = lines.iter().map(|l| format!("{l}{end}")).collect();
        let (a, b) = text.as_bytes().split_at(split.min(text.len()));
        let mut r = LineReader::new();
        r.feed(a);
        r.feed(b);
        let got: Vec<LineEvent> = std::iter::from_fn(|| r.poll_line()).collect();
        let want: Vec<LineEvent> = lines.iter().map(|l| LineEvent::Line(l.clone().into_bytes())).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn reply_round_trip(
        code in 100u16..600,
        first in "[ -~]{0,30}",
        middle in prop::collection::vec("[ -~]{0,30}", 0..5),
        last in "[ -~]{0,30}",
        multi in any::<bool>(),
    ) {
        let lines: Vec<String> = if multi {
            std::iter::once(first).chain(middle).chain(std::iter::once(last)).collect()
        } else {
            vec![first]
        };
        let r = Reply { code, lines };
        let wire = r.to_bytes();
        let mut p = ReplyParser::new();
        p.feed(&wire);
        let parsed = p.poll_reply().expect("a reply").expect("well formed");
        prop_assert!(p.poll_reply().is_none());
        prop_assert_eq!(parsed.to_bytes(), wire);
        let escaped = r.lines.len() > 2
            && r.lines[1..r.lines.len() - 1].iter().any(|l| l.starts_with(|c: char| c.is_ascii_digit()));
        if !escaped {
            prop_assert_eq!(parsed, r);
        }
    }

    #[test]
    fn reply_parser_never_panics(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..100), 0..20)) {
        let mut p = ReplyParser::with_limits(64, 256);
        for c in &chunks {
            p.feed(c);
            while let Some(r) = p.poll_reply() {
                if let Ok(r) = r {
                    prop_assert!((100..700).contains(&r.code));
                }
            }
        }
    }

    #[test]
    fn mode_e_header_round_trip(descriptor in any::<u8>(), count in any::<u64>(), offset in any::<u64>()) {
        let h = BlockHeader { descriptor, count, offset };
        prop_assert_eq!(BlockHeader::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn mode_e_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
        let _ = BlockHeader::decode(&bytes);
    }

    #[test]
    fn reassembly_of_any_permutation_covers_the_file(
        size in 0u64..50_000,
        block in 1u64..5000,
        streams in 1usize..8,
        seed in any::<u64>(),
    ) {
        let all: RangeSet = [(0, size)].into_iter().collect();
        let mut tx = ModeESender::new(&all, streams, block).unwrap();
        let mut blocks = Vec::new();
        while let Some(b) = tx.next_block() {
            blocks.push(b);
        }
        // Deterministic shuffle and stream assignment from the seed.
        let mut x = seed | 1;
        let mut rnd = move || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x };
        for i in (1..blocks.len()).rev() {
            let j = (rnd() % (i as u64 + 1)) as usize;
            blocks.swap(i, j);
        }
        let mut rx = ModeEReceiver::new(Some(size));
        let ids: Vec<StreamId> = (0..streams).map(|_| rx.add_stream()).collect();
        for b in &blocks {
            let s = ids[(rnd() % streams as u64) as usize];
            match rx.handle_header(s, b).unwrap() {
                Placement::Write { offset, len } => {
                    prop_assert_eq!((offset, len), (b.offset, b.count));
                    // Report the write in two pieces.
                    rx.handle_written(s, len / 2).unwrap();
                    rx.handle_written(s, len - len / 2).unwrap();
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
            prop_assert!(!rx.is_complete());
        }
        for (i, s) in ids.iter().enumerate() {
            prop_assert!(!rx.is_complete());
            rx.handle_header(*s, &tx.final_block(i, true)).unwrap();
        }
        prop_assert!(rx.is_complete());
        prop_assert_eq!(rx.received(), &all);
        prop_assert_eq!(rx.received().total(), size);
    }

    #[test]
    fn receiver_never_panics_on_forged_headers(
        headers in prop::collection::vec((any::<u8>(), any::<u64>(), any::<u64>(), 0usize..4, any::<u64>()), 0..40),
        limit in prop::option::of(any::<u64>()),
    ) {
        let mut rx = ModeEReceiver::new(limit);
        let ids: Vec<StreamId> = (0..3).map(|_| rx.add_stream()).collect();
        for (d, c, o, s, w) in headers {
            let s = ids.get(s).copied().unwrap_or(StreamId(s));
            if let Ok(Placement::Write { offset, len }) = rx.handle_header(s, &BlockHeader { descriptor: d, count: c, offset: o }) {
                prop_assert!(offset.checked_add(len).is_some());
                if let Some(l) = limit {
                    prop_assert!(offset + len <= l);
                }
            }
            let _ = rx.handle_written(s, w % 8);
            if w % 5 == 0 {
                let _ = rx.handle_close(s);
            }
            let _ = rx.status();
        }
    }

    #[test]
    fn session_never_panics(
        inputs in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..64),
                command_like().prop_map(|mut l| { l.extend_from_slice(b"\r\n"); l }),
            ],
            0..40,
        ),
        outcomes in prop::collection::vec(any::<u8>(), 40),
        gridftp in any::<bool>(),
    ) {
        let features = if gridftp { Features::gridftp() } else { Features::standard() };
        let config = SessionConfig { anonymous: true, features, ..SessionConfig::default() };
        let auth = |u: &str, _: &str| if u == "alice" { AuthOutcome::Granted { read_only: false } } else { AuthOutcome::Denied };
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut s = Session::new(config, Box::new(auth), peer);
        s.handle_input(b"USER alice\r\nPASS x\r\n");
        let mut k = 0usize;
        for input in &inputs {
            s.handle_input(input);
            drive(&mut s, &outcomes, &mut k)?;
        }
    }
}

/// Answer every action with an outcome chosen from `outcomes`, checking reply codes.
fn drive(s: &mut Session, outcomes: &[u8], k: &mut usize) -> Result<(), TestCaseError> {
    for _ in 0..100 {
        while let Some(r) = s.poll_reply() {
            prop_assert!((100..700).contains(&r.code), "{:?}", r);
            prop_assert!(!r.to_bytes().is_empty());
        }
        let Some(a) = s.poll_action() else {
            return Ok(());
        };
        let o = outcomes
            .get(*k % outcomes.len().max(1))
            .copied()
            .unwrap_or(0);
        *k += 1;
        match a {
            Action::OpenPassive(_) => {
                let r = if o % 3 == 0 {
                    Err(gridos_ftp::proto::PassiveError::NoPort)
                } else {
                    Ok(vec!["127.0.0.1:6000".parse().unwrap()])
                };
                s.handle_passive_opened(r).unwrap();
            }
            Action::ClosePassive | Action::Abort => {}
            Action::Retr(_) | Action::Stor(_) | Action::List(_) => {
                if o % 2 == 0 {
                    s.handle_transfer_started(TransferStart {
                        reused: o % 4 == 0,
                        ..TransferStart::default()
                    })
                    .unwrap();
                }
                let r = match o % 5 {
                    0 => Err(TransferError::Aborted),
                    1 => Err(TransferError::Fs(FsError::new(FsErrorKind::NotFound))),
                    _ => Ok(TransferDone {
                        bytes: u64::from(o),
                    }),
                };
                s.handle_transfer_done(r).unwrap();
            }
            _ => {
                let r = match o % 6 {
                    0 => Err(FsError::new(FsErrorKind::PermissionDenied)),
                    1 => Ok(FsOutcome::Size(7)),
                    2 => Ok(FsOutcome::Modified(
                        UNIX_EPOCH + Duration::from_secs(u64::from(o)),
                    )),
                    3 => Ok(FsOutcome::Lines(vec!["x".into()])),
                    4 => Ok(FsOutcome::Checksum("ab".into())),
                    _ => Ok(FsOutcome::Done),
                };
                s.handle_fs_result(r).unwrap();
            }
        }
    }
    Ok(())
}
