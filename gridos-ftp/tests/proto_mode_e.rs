//! MODE E reassembly without sockets: out-of-order blocks, EOD counting, early close,
//! forged offsets, range markers for restart.

use gridos_ftp::proto::mode_e::{
    BlockHeader, HEADER_LEN, ModeEReceiver, ModeESender, Placement, ReceiveStatus, StreamId, flags,
};
use gridos_ftp::proto::{Command, ModeEError, RangeSet, Restart, TransferError};

/// A fake "file" the receiver's placements are applied to, to check the bytes.
struct Disk(Vec<u8>);

impl Disk {
    fn apply(&mut self, p: Placement, payload: &[u8]) {
        if let Placement::Write { offset, len } = p {
            assert_eq!(len as usize, payload.len());
            let end = offset as usize + payload.len();
            if self.0.len() < end {
                self.0.resize(end, 0);
            }
            self.0[offset as usize..end].copy_from_slice(payload);
        }
    }
}

/// Serialise a stream of blocks as it would travel on one data connection.
fn wire(blocks: &[BlockHeader], file: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for b in blocks {
        v.extend_from_slice(&b.encode());
        if b.descriptor & flags::EOF == 0 {
            v.extend_from_slice(&file[b.offset as usize..(b.offset + b.count) as usize]);
        }
    }
    v
}

/// Read one connection's bytes through the receiver.
fn receive(
    rx: &mut ModeEReceiver,
    s: StreamId,
    mut bytes: &[u8],
    disk: &mut Disk,
) -> Result<(), ModeEError> {
    while !bytes.is_empty() {
        let h = BlockHeader::decode(bytes)?;
        bytes = &bytes[HEADER_LEN..];
        let p = rx.handle_header(s, &h)?;
        let n = match p {
            Placement::Write { len, .. } | Placement::Discard { len } => len as usize,
            Placement::Nothing => 0,
        };
        // A connection may die in the middle of a payload: write what arrived.
        let n = n.min(bytes.len());
        if let Placement::Write { offset, .. } = p {
            disk.apply(
                Placement::Write {
                    offset,
                    len: n as u64,
                },
                &bytes[..n],
            );
        }
        rx.handle_written(s, n as u64)?;
        bytes = &bytes[n..];
    }
    rx.handle_close(s)
}

fn file(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn four_streams_out_of_order_reassemble_and_count_eods() {
    let data = file(100_003);
    let all: RangeSet = [(0, data.len() as u64)].into_iter().collect();
    let mut plan = ModeESender::new(&all, 4, 4096)
        .unwrap()
        .plan_round_robin(true);
    // Deliver streams in reverse order, and reverse the blocks within each stream (keeping
    // each stream's final EOD last).
    for p in plan.iter_mut() {
        let last = p.pop().unwrap();
        p.reverse();
        p.push(last);
    }
    let mut rx = ModeEReceiver::new(Some(data.len() as u64));
    let ids: Vec<StreamId> = (0..4).map(|_| rx.add_stream()).collect();
    let mut disk = Disk(Vec::new());
    for i in (0..4).rev() {
        assert_eq!(rx.status(), ReceiveStatus::InProgress);
        receive(&mut rx, ids[i], &wire(&plan[i], &data), &mut disk).unwrap();
        assert_eq!(rx.eods(), 4 - i as u64);
    }
    assert_eq!(rx.expected_eods(), Some(4));
    assert!(rx.is_complete());
    assert_eq!(disk.0, data);
    assert_eq!(
        rx.received().to_marker_string(),
        format!("0-{}", data.len())
    );
}

#[test]
fn complete_only_when_all_eods_arrived() {
    let mut rx = ModeEReceiver::new(None);
    let a = rx.add_stream();
    let b = rx.add_stream();
    rx.handle_header(
        a,
        &BlockHeader {
            descriptor: flags::EOD | flags::EOF,
            count: 0,
            offset: 2,
        },
    )
    .unwrap();
    assert_eq!(rx.status(), ReceiveStatus::InProgress);
    rx.handle_header(b, &BlockHeader::data(0, 10)).unwrap();
    // Data still being written: not complete even after the last EOD header.
    rx.handle_written(b, 4).unwrap();
    assert!(
        rx.handle_header(
            b,
            &BlockHeader {
                descriptor: flags::EOD,
                count: 0,
                offset: 0
            }
        )
        .is_err()
    );
    rx.handle_written(b, 6).unwrap();
    rx.handle_header(
        b,
        &BlockHeader {
            descriptor: flags::EOD,
            count: 0,
            offset: 0,
        },
    )
    .unwrap();
    assert!(rx.is_complete());
    // Data after EOD is refused.
    assert_eq!(
        rx.handle_header(b, &BlockHeader::data(10, 1)),
        Err(ModeEError::AfterEod)
    );
}

#[test]
fn eod_with_payload_counts_after_the_payload() {
    let mut rx = ModeEReceiver::new(Some(8));
    let a = rx.add_stream();
    rx.handle_header(
        a,
        &BlockHeader {
            descriptor: flags::EOF,
            count: 0,
            offset: 1,
        },
    )
    .unwrap();
    let p = rx
        .handle_header(
            a,
            &BlockHeader {
                descriptor: flags::EOD,
                count: 8,
                offset: 0,
            },
        )
        .unwrap();
    assert_eq!(p, Placement::Write { offset: 0, len: 8 });
    assert_eq!(rx.status(), ReceiveStatus::InProgress);
    rx.handle_written(a, 8).unwrap();
    assert!(rx.is_complete());
    assert_eq!(
        rx.handle_header(a, &BlockHeader::data(0, 1)),
        Err(ModeEError::AfterEod)
    );
}

#[test]
fn stream_closing_without_eod_is_incomplete() {
    let data = file(1000);
    let all: RangeSet = [(0, 1000)].into_iter().collect();
    let plan = ModeESender::new(&all, 2, 100)
        .unwrap()
        .plan_round_robin(true);
    let mut rx = ModeEReceiver::new(Some(1000));
    let a = rx.add_stream();
    let b = rx.add_stream();
    let mut disk = Disk(Vec::new());
    receive(&mut rx, a, &wire(&plan[0], &data), &mut disk).unwrap();
    // Stream b dies after its first block and half of the second's payload.
    let w = wire(&plan[1], &data);
    let cut = HEADER_LEN + 100 + HEADER_LEN + 50;
    let err = receive(&mut rx, b, &w[..cut], &mut disk);
    assert!(err.is_err());
    assert_eq!(
        rx.status(),
        ReceiveStatus::Incomplete {
            closed_without_eod: 1
        }
    );
    assert!(!rx.is_complete());
    // What did arrive can be exported as a restart marker and fed back after reconnecting.
    let marker = rx.range_marker();
    assert_eq!(marker.code, 111);
    let got = gridos_ftp::proto::markers::parse_range_marker(&marker).unwrap();
    assert_eq!(got.total(), 500 + 100 + 50); // the half-written block counts for what arrived
    let rest = Command::parse(format!("REST {}", got.to_marker_string()).as_bytes()).unwrap();
    let Command::Rest(Restart::Ranges(have)) = rest else {
        panic!()
    };
    assert_eq!(have, got);
    // Restart: the sender sends only the missing ranges, the new receiver starts from `have`.
    let missing = have.missing(1000);
    assert_eq!(missing.total(), 350);
    let plan = ModeESender::new(&missing, 3, 64)
        .unwrap()
        .plan_round_robin(false);
    let mut rx2 = ModeEReceiver::new(Some(1000));
    rx2.import_restart(&have);
    for p in &plan {
        let s = rx2.add_stream();
        receive(&mut rx2, s, &wire(p, &data), &mut disk).unwrap();
    }
    assert!(rx2.is_complete());
    assert_eq!(rx2.received().ranges(), &[(0, 1000)]);
    assert_eq!(disk.0, data);
}

#[test]
fn forged_offsets_are_rejected() {
    let mut rx = ModeEReceiver::new(Some(1 << 20));
    let a = rx.add_stream();
    // Past the announced size (e.g. the ERET/ESTO length).
    let e = rx
        .handle_header(a, &BlockHeader::data(1 << 20, 1))
        .unwrap_err();
    assert!(matches!(e, ModeEError::BeyondLimit { .. }));
    // Wrapping around 2^64.
    let e = rx
        .handle_header(a, &BlockHeader::data(u64::MAX, 2))
        .unwrap_err();
    assert!(matches!(e, ModeEError::Overflow { .. }));
    // Absurd EOF counts.
    assert!(
        rx.handle_header(
            a,
            &BlockHeader {
                descriptor: flags::EOF,
                count: 0,
                offset: u64::MAX
            }
        )
        .is_err()
    );
    // Unknown streams.
    assert_eq!(
        rx.handle_header(StreamId(9), &BlockHeader::data(0, 1)),
        Err(ModeEError::UnknownStream(9))
    );
    // The session maps these to a 426 abort.
    assert!(matches!(TransferError::from(e), TransferError::BadData(_)));
    // Without a limit the overflow check still holds; an ESTO adjustment can overflow too.
    let mut rx = ModeEReceiver::new(None).with_offset_adjustment(u64::MAX - 10);
    let a = rx.add_stream();
    assert!(matches!(
        rx.handle_header(a, &BlockHeader::data(5, 10)),
        Err(ModeEError::Overflow { .. })
    ));
    // Reporting more bytes than the block holds is a driver bug, reported as an error.
    let mut rx = ModeEReceiver::new(None);
    let a = rx.add_stream();
    rx.handle_header(a, &BlockHeader::data(0, 4)).unwrap();
    assert_eq!(rx.handle_written(a, 5), Err(ModeEError::BadWriteReport(0)));
}

#[test]
fn too_many_eods() {
    let mut rx = ModeEReceiver::new(None);
    let s: Vec<StreamId> = (0..3).map(|_| rx.add_stream()).collect();
    rx.handle_header(
        s[0],
        &BlockHeader {
            descriptor: flags::EOD,
            count: 0,
            offset: 0,
        },
    )
    .unwrap();
    rx.handle_header(
        s[1],
        &BlockHeader {
            descriptor: flags::EOD,
            count: 0,
            offset: 0,
        },
    )
    .unwrap();
    // EOF announcing 1 connection after 2 EODs: inconsistent.
    assert_eq!(
        rx.handle_header(
            s[2],
            &BlockHeader {
                descriptor: flags::EOF,
                count: 0,
                offset: 1
            }
        ),
        Err(ModeEError::AfterEod)
    );
}

#[test]
fn sender_dynamic_next_block_covers_ranges() {
    let ranges: RangeSet = [(10, 20), (100, 1000)].into_iter().collect();
    let mut tx = ModeESender::new(&ranges, 2, 256).unwrap();
    let mut got = RangeSet::new();
    let mut n = 0;
    while let Some(b) = tx.next_block() {
        assert!(b.count <= 256 && b.count > 0);
        got.insert(b.offset, b.offset + b.count);
        n += 1;
    }
    assert_eq!(got, ranges);
    assert_eq!(n, 1 + 4);
    assert_eq!(tx.final_block(0, false).offset, 2);
    assert!(tx.final_block(0, false).is_eof());
    assert!(!tx.final_block(1, false).is_eof());
}
