//! MODE E, GridFTP extended block mode (GFD.20): the 17-byte block header, a receiver that
//! tracks reassembly across any number of data connections, and a sender planner.
//!
//! Wire format of a block: descriptor (1 byte), byte count (8 bytes, big-endian), offset
//! (8 bytes, big-endian), then `count` payload bytes that belong at `offset` of the file.
//! Blocks may arrive on any connection in any order. Each connection ends its part with an
//! EOD block; one block carries EOF, and *its offset field is the number of data
//! connections* (= the number of EODs the receiver must see). The transfer is complete when
//! that many EODs have arrived.
//!
//! Neither side does I/O here: [`ModeEReceiver`] says where each payload goes
//! ([`Placement`]) and records what the driver reports written; [`ModeESender`] hands out
//! block headers for the driver to send before splicing the payloads.
//!
//! ```
//! use gridos_ftp::proto::mode_e::{BlockHeader, ModeEReceiver, ModeESender, Placement};
//! use gridos_ftp::proto::RangeSet;
//!
//! // Sender: 10 bytes in 4-byte blocks over 2 connections.
//! let mut tx = ModeESender::new(&[(0, 10)].into_iter().collect(), 2, 4).unwrap();
//! let mut rx = ModeEReceiver::new(Some(10));
//! let streams = [rx.add_stream(), rx.add_stream()];
//! let mut s = 0;
//! while let Some(h) = tx.next_block() {
//!     let Placement::Write { offset, len } = rx.handle_header(streams[s], &h).unwrap() else { panic!() };
//!     // … the driver writes `len` payload bytes at `offset`, then:
//!     rx.handle_written(streams[s], len).unwrap();
//!     s = 1 - s;
//! }
//! for (i, st) in streams.iter().enumerate() {
//!     rx.handle_header(*st, &tx.final_block(i, false)).unwrap();
//! }
//! assert!(rx.is_complete());
//! assert_eq!(rx.received().to_marker_string(), "0-10");
//! ```

use super::error::ModeEError;
use super::markers::{RangeSet, range_marker_reply};
use super::reply::Reply;

/// Length of a MODE E block header.
pub const HEADER_LEN: usize = 17;

/// Descriptor flags (RFC 959 §3.4.2 block mode, extended by GFD.20).
pub mod flags {
    /// End of record (RFC 959).
    pub const EOR: u8 = 0x80;
    /// End of file: the offset field holds the number of data connections (EOD count).
    pub const EOF: u8 = 0x40;
    /// Suspected errors in the data (RFC 959).
    pub const SUSPECT: u8 = 0x20;
    /// The payload is a restart marker, not file data.
    pub const RESTART: u8 = 0x10;
    /// End of data on this connection.
    pub const EOD: u8 = 0x08;
    /// The sender will close this connection (no reuse).
    pub const CLOSE: u8 = 0x04;
}

/// A decoded block header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockHeader {
    /// Descriptor flags, see [`flags`].
    pub descriptor: u8,
    /// Payload length that follows the header.
    pub count: u64,
    /// File offset of the payload (for an EOF block: the number of data connections).
    pub offset: u64,
}

impl BlockHeader {
    /// A data block.
    pub fn data(offset: u64, count: u64) -> Self {
        BlockHeader {
            descriptor: 0,
            count,
            offset,
        }
    }

    /// Encode to the 17 wire bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = self.descriptor;
        b[1..9].copy_from_slice(&self.count.to_be_bytes());
        b[9..17].copy_from_slice(&self.offset.to_be_bytes());
        b
    }

    /// Decode from the first 17 bytes of `buf`.
    pub fn decode(buf: &[u8]) -> Result<BlockHeader, ModeEError> {
        let h = buf.get(..HEADER_LEN).ok_or(ModeEError::ShortHeader)?;
        let field = |r: std::ops::Range<usize>| -> u64 {
            h.get(r)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_be_bytes)
        };
        Ok(BlockHeader {
            descriptor: h.first().copied().unwrap_or(0),
            count: field(1..9),
            offset: field(9..17),
        })
    }

    /// EOF flag set.
    pub fn is_eof(&self) -> bool {
        self.descriptor & flags::EOF != 0
    }
    /// EOD flag set.
    pub fn is_eod(&self) -> bool {
        self.descriptor & flags::EOD != 0
    }
    /// Sender-closes flag set.
    pub fn is_close(&self) -> bool {
        self.descriptor & flags::CLOSE != 0
    }
    /// Restart-marker flag set.
    pub fn is_restart_marker(&self) -> bool {
        self.descriptor & flags::RESTART != 0
    }
}

/// Identifies a data connection registered with a [`ModeEReceiver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub usize);

/// Where the payload after a header goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Write the next `len` payload bytes at file offset `offset`, then report them with
    /// [`ModeEReceiver::handle_written`].
    Write {
        /// File offset.
        offset: u64,
        /// Payload length.
        len: u64,
    },
    /// Read and discard the next `len` bytes (a restart-marker payload), then report them with
    /// [`ModeEReceiver::handle_written`].
    Discard {
        /// Payload length.
        len: u64,
    },
    /// No payload follows (an EOD/EOF block or an empty block).
    Nothing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamState {
    Open,
    /// Payload expected: file offset of the next byte (None when discarding), bytes left,
    /// and whether the block also ended the stream (EOD).
    Payload {
        at: Option<u64>,
        left: u64,
        eod: bool,
    },
    Eod,
    Closed {
        eod: bool,
    },
}

/// Overall state of a receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveStatus {
    /// Still waiting for data or EODs.
    InProgress,
    /// EOF seen and EODs received == the announced connection count, no payload pending.
    Complete,
    /// At least one connection closed without EOD: the data must not be reported complete.
    Incomplete {
        /// How many connections closed early.
        closed_without_eod: usize,
    },
}

/// Reassembly tracker for MODE E receives. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct ModeEReceiver {
    limit: Option<u64>,
    adjust: u64,
    max_streams: u64,
    streams: Vec<StreamState>,
    received: RangeSet,
    eods: u64,
    expected: Option<u64>,
    early_closes: usize,
}

impl ModeEReceiver {
    /// A receiver; blocks reaching past `limit` bytes (if given: an ERET/ESTO length or a
    /// configured maximum file size) are rejected.
    pub fn new(limit: Option<u64>) -> Self {
        ModeEReceiver {
            limit,
            adjust: 0,
            max_streams: 4096,
            streams: Vec::new(),
            received: RangeSet::new(),
            eods: 0,
            expected: None,
            early_closes: 0,
        }
    }

    /// Add `adjust` to every block offset (ESTO A: "adjusted store"). The limit applies to the
    /// block offsets before adjustment.
    pub fn with_offset_adjustment(mut self, adjust: u64) -> Self {
        self.adjust = adjust;
        self
    }

    /// Reject EOF blocks announcing more than `max` connections (default 4096).
    pub fn with_max_streams(mut self, max: u64) -> Self {
        self.max_streams = max;
        self
    }

    /// Mark ranges the receiver already holds (from a `REST` range list on restart).
    pub fn import_restart(&mut self, ranges: &RangeSet) {
        self.received.extend_from(ranges);
    }

    /// Register a data connection; its id is used for all its headers.
    pub fn add_stream(&mut self) -> StreamId {
        self.streams.push(StreamState::Open);
        StreamId(self.streams.len() - 1)
    }

    fn state(&mut self, s: StreamId) -> Result<&mut StreamState, ModeEError> {
        self.streams
            .get_mut(s.0)
            .ok_or(ModeEError::UnknownStream(s.0))
    }

    /// Process a header read from stream `s`; returns what to do with the payload.
    ///
    /// Errors (the transfer must be aborted, 426/451): header before the previous payload
    /// was reported, data after EOD, more EODs than announced, offset+count overflow or past
    /// the limit, inconsistent or absurd EOF counts, EOF with a payload.
    pub fn handle_header(&mut self, s: StreamId, h: &BlockHeader) -> Result<Placement, ModeEError> {
        let limit = self.limit;
        let adjust = self.adjust;
        let max_streams = self.max_streams;
        match *self.state(s)? {
            StreamState::Open => {}
            StreamState::Payload { .. } => return Err(ModeEError::PayloadPending(s.0)),
            StreamState::Eod | StreamState::Closed { .. } => return Err(ModeEError::AfterEod),
        }
        let placement = if h.is_eof() {
            if h.count != 0 {
                return Err(ModeEError::EofWithData);
            }
            if h.offset == 0
                || h.offset > max_streams
                || self.expected.is_some_and(|e| e != h.offset)
            {
                return Err(ModeEError::BadEofCount(h.offset));
            }
            if self.eods > h.offset {
                return Err(ModeEError::AfterEod);
            }
            self.expected = Some(h.offset);
            Placement::Nothing
        } else if h.count == 0 {
            Placement::Nothing
        } else if h.is_restart_marker() {
            *self.state(s)? = StreamState::Payload {
                at: None,
                left: h.count,
                eod: h.is_eod(),
            };
            Placement::Discard { len: h.count }
        } else {
            let end = h.offset.checked_add(h.count).ok_or(ModeEError::Overflow {
                offset: h.offset,
                count: h.count,
            })?;
            if let Some(limit) = limit.filter(|&l| end > l) {
                return Err(ModeEError::BeyondLimit {
                    offset: h.offset,
                    count: h.count,
                    limit,
                });
            }
            let at = h
                .offset
                .checked_add(adjust)
                .filter(|a| a.checked_add(h.count).is_some())
                .ok_or(ModeEError::Overflow {
                    offset: h.offset,
                    count: h.count,
                })?;
            *self.state(s)? = StreamState::Payload {
                at: Some(at),
                left: h.count,
                eod: h.is_eod(),
            };
            Placement::Write {
                offset: at,
                len: h.count,
            }
        };
        if h.is_eod() {
            if self.expected.is_some_and(|e| self.eods >= e) {
                return Err(ModeEError::AfterEod);
            }
            self.eods += 1;
            // A block with EOD and a payload: the payload comes first, then the stream ends.
            if let StreamState::Open = *self.state(s)? {
                *self.state(s)? = StreamState::Eod;
            }
        }
        Ok(placement)
    }

    /// Report that `n` payload bytes of the current block on `s` were written (or
    /// discarded). May be called several times per block; `n` larger than what is left is
    /// an error.
    pub fn handle_written(&mut self, s: StreamId, n: u64) -> Result<(), ModeEError> {
        let st = self.state(s)?;
        let StreamState::Payload { at, left, eod } = *st else {
            return if n == 0 {
                Ok(())
            } else {
                Err(ModeEError::BadWriteReport(s.0))
            };
        };
        if n > left {
            return Err(ModeEError::BadWriteReport(s.0));
        }
        let left = left - n;
        let next = at.map(|a| a + n);
        *st = match (left, eod) {
            (0, true) => StreamState::Eod,
            (0, false) => StreamState::Open,
            _ => StreamState::Payload {
                at: next,
                left,
                eod,
            },
        };
        if let Some(a) = at {
            self.received.insert(a, a + n);
        }
        Ok(())
    }

    /// The connection `s` closed (EOF on the socket or an error). Returns an error if it had
    /// not sent EOD (the receive is then [`ReceiveStatus::Incomplete`]).
    pub fn handle_close(&mut self, s: StreamId) -> Result<(), ModeEError> {
        let st = self.state(s)?;
        match *st {
            StreamState::Eod => {
                *st = StreamState::Closed { eod: true };
                Ok(())
            }
            StreamState::Closed { .. } => Ok(()),
            StreamState::Open | StreamState::Payload { .. } => {
                *st = StreamState::Closed { eod: false };
                self.early_closes += 1;
                Err(ModeEError::ClosedWithoutEod(s.0))
            }
        }
    }

    /// Where the receive stands.
    pub fn status(&self) -> ReceiveStatus {
        if self.early_closes > 0 {
            return ReceiveStatus::Incomplete {
                closed_without_eod: self.early_closes,
            };
        }
        let pending = self
            .streams
            .iter()
            .any(|s| matches!(s, StreamState::Payload { .. }));
        match self.expected {
            Some(e) if e == self.eods && !pending => ReceiveStatus::Complete,
            _ => ReceiveStatus::InProgress,
        }
    }

    /// Shorthand for `status() == Complete`.
    pub fn is_complete(&self) -> bool {
        self.status() == ReceiveStatus::Complete
    }

    /// EODs received so far.
    pub fn eods(&self) -> u64 {
        self.eods
    }

    /// The connection count announced by EOF, once seen.
    pub fn expected_eods(&self) -> Option<u64> {
        self.expected
    }

    /// Byte ranges written so far (file offsets, after adjustment), including imported ones.
    pub fn received(&self) -> &RangeSet {
        &self.received
    }

    /// `111 Range Marker …` for what has been written so far.
    pub fn range_marker(&self) -> Reply {
        range_marker_reply(&self.received)
    }
}

/// Plans the blocks of a MODE E send: splits byte ranges into blocks of at most `block_size`
/// and produces the final EOD/EOF blocks. Stream 0's final block carries EOF with the number
/// of streams in its offset field (and EOD); every other stream's final block is EOD only.
#[derive(Debug, Clone)]
pub struct ModeESender {
    ranges: Vec<(u64, u64)>,
    idx: usize,
    pos: u64,
    streams: usize,
    block_size: u64,
}

impl ModeESender {
    /// Plan sending `ranges` (e.g. `[0, size)`, or the missing parts after a restart) over
    /// `streams` connections in blocks of at most `block_size` bytes.
    pub fn new(ranges: &RangeSet, streams: usize, block_size: u64) -> Result<Self, ModeEError> {
        if streams == 0 || block_size == 0 {
            return Err(ModeEError::BadPlan);
        }
        let ranges = ranges.ranges().to_vec();
        let pos = ranges.first().map_or(0, |r| r.0);
        Ok(ModeESender {
            ranges,
            idx: 0,
            pos,
            streams,
            block_size,
        })
    }

    /// Number of streams planned for.
    pub fn streams(&self) -> usize {
        self.streams
    }

    /// The next data block, for whichever connection is ready to send; `None` when all data
    /// has been handed out.
    pub fn next_block(&mut self) -> Option<BlockHeader> {
        loop {
            let &(_, end) = self.ranges.get(self.idx)?;
            if self.pos < end {
                let count = (end - self.pos).min(self.block_size);
                let h = BlockHeader::data(self.pos, count);
                self.pos += count;
                return Some(h);
            }
            self.idx += 1;
            if let Some(&(s, _)) = self.ranges.get(self.idx) {
                self.pos = s;
            }
        }
    }

    /// The last block for `stream` (0-based): EOF|EOD with offset = number of streams for
    /// stream 0, EOD otherwise. With `close`, the sender-closes flag is set too.
    pub fn final_block(&self, stream: usize, close: bool) -> BlockHeader {
        let c = if close { flags::CLOSE } else { 0 };
        if stream == 0 {
            BlockHeader {
                descriptor: flags::EOF | flags::EOD | c,
                count: 0,
                offset: self.streams as u64,
            }
        } else {
            BlockHeader {
                descriptor: flags::EOD | c,
                count: 0,
                offset: 0,
            }
        }
    }

    /// Bytes not yet handed out by [`next_block`](Self::next_block).
    pub fn remaining(&self) -> u64 {
        let mut left = 0;
        for (i, &(start, end)) in self.ranges.iter().enumerate().skip(self.idx) {
            let from = if i == self.idx {
                self.pos.max(start)
            } else {
                start
            };
            left += end.saturating_sub(from);
        }
        left
    }

    /// Takes one more stream into the plan while at least `min_blocks` blocks remain to be
    /// handed out, and returns its index. While data remains no stream has taken its final
    /// block, so stream 0's EOF will count the new one; the new stream must send its own
    /// final block (EOD), with or without data blocks before it.
    pub fn add_stream(&mut self, min_blocks: u64) -> Option<usize> {
        if self.remaining() < min_blocks.max(1).saturating_mul(self.block_size) {
            return None;
        }
        self.streams += 1;
        Some(self.streams - 1)
    }

    /// A static round-robin plan: for each stream, its data blocks followed by its final
    /// block.
    pub fn plan_round_robin(mut self, close: bool) -> Vec<Vec<BlockHeader>> {
        let mut plan: Vec<Vec<BlockHeader>> = vec![Vec::new(); self.streams];
        let mut i = 0usize;
        while let Some(h) = self.next_block() {
            if let Some(p) = plan.get_mut(i % self.streams) {
                p.push(h);
            }
            i += 1;
        }
        for (s, p) in plan.iter_mut().enumerate() {
            p.push(self.final_block(s, close));
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = BlockHeader {
            descriptor: flags::EOF | flags::EOD,
            count: 0x0102030405060708,
            offset: 4,
        };
        let b = h.encode();
        assert_eq!(b[0], 0x48);
        assert_eq!(&b[1..9], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&b[9..17], &[0, 0, 0, 0, 0, 0, 0, 4]);
        assert_eq!(BlockHeader::decode(&b).unwrap(), h);
        assert_eq!(BlockHeader::decode(&b[..16]), Err(ModeEError::ShortHeader));
    }

    #[test]
    fn out_of_order_across_four_streams() {
        let data_blocks = [(30u64, 10u64), (0, 10), (20, 10), (10, 10)];
        let mut rx = ModeEReceiver::new(Some(40));
        let s: Vec<StreamId> = (0..4).map(|_| rx.add_stream()).collect();
        for (i, &(off, n)) in data_blocks.iter().enumerate() {
            assert_eq!(
                rx.handle_header(s[i], &BlockHeader::data(off, n)).unwrap(),
                Placement::Write {
                    offset: off,
                    len: n
                }
            );
            rx.handle_written(s[i], n).unwrap();
        }
        // EOF first (on stream 2), then EODs.
        let eof = BlockHeader {
            descriptor: flags::EOF,
            count: 0,
            offset: 4,
        };
        assert_eq!(rx.handle_header(s[2], &eof).unwrap(), Placement::Nothing);
        for (k, st) in s.iter().enumerate() {
            assert_eq!(rx.status(), ReceiveStatus::InProgress, "after {k} EODs");
            rx.handle_header(
                *st,
                &BlockHeader {
                    descriptor: flags::EOD,
                    count: 0,
                    offset: 0,
                },
            )
            .unwrap();
        }
        assert_eq!(rx.eods(), 4);
        assert!(rx.is_complete());
        assert_eq!(rx.received().ranges(), &[(0, 40)]);
        // A fifth EOD is an error.
        let extra = rx.add_stream();
        assert_eq!(
            rx.handle_header(
                extra,
                &BlockHeader {
                    descriptor: flags::EOD,
                    count: 0,
                    offset: 0
                }
            ),
            Err(ModeEError::AfterEod)
        );
    }

    #[test]
    fn early_close_and_forged_offsets() {
        let mut rx = ModeEReceiver::new(Some(100));
        let a = rx.add_stream();
        let b = rx.add_stream();
        assert!(matches!(
            rx.handle_header(a, &BlockHeader::data(90, 11)),
            Err(ModeEError::BeyondLimit { limit: 100, .. })
        ));
        assert!(matches!(
            rx.handle_header(a, &BlockHeader::data(u64::MAX - 1, 5)),
            Err(ModeEError::Overflow { .. })
        ));
        rx.handle_header(a, &BlockHeader::data(0, 50)).unwrap();
        assert_eq!(
            rx.handle_header(a, &BlockHeader::data(50, 5)),
            Err(ModeEError::PayloadPending(0))
        );
        rx.handle_written(a, 20).unwrap();
        assert_eq!(rx.received().ranges(), &[(0, 20)]);
        assert_eq!(rx.handle_close(a), Err(ModeEError::ClosedWithoutEod(0)));
        rx.handle_header(
            b,
            &BlockHeader {
                descriptor: flags::EOF | flags::EOD,
                count: 0,
                offset: 1,
            },
        )
        .unwrap();
        assert_eq!(
            rx.status(),
            ReceiveStatus::Incomplete {
                closed_without_eod: 1
            }
        );
        assert_eq!(rx.range_marker().to_bytes(), b"111 Range Marker 0-20\r\n");
    }

    #[test]
    fn eof_validation() {
        let mut rx = ModeEReceiver::new(None).with_max_streams(8);
        let a = rx.add_stream();
        assert_eq!(
            rx.handle_header(
                a,
                &BlockHeader {
                    descriptor: flags::EOF,
                    count: 0,
                    offset: 0
                }
            ),
            Err(ModeEError::BadEofCount(0))
        );
        assert_eq!(
            rx.handle_header(
                a,
                &BlockHeader {
                    descriptor: flags::EOF,
                    count: 0,
                    offset: 9
                }
            ),
            Err(ModeEError::BadEofCount(9))
        );
        assert_eq!(
            rx.handle_header(
                a,
                &BlockHeader {
                    descriptor: flags::EOF,
                    count: 5,
                    offset: 1
                }
            ),
            Err(ModeEError::EofWithData)
        );
        rx.handle_header(
            a,
            &BlockHeader {
                descriptor: flags::EOF,
                count: 0,
                offset: 2,
            },
        )
        .unwrap();
        assert_eq!(
            rx.handle_header(
                a,
                &BlockHeader {
                    descriptor: flags::EOF,
                    count: 0,
                    offset: 3
                }
            ),
            Err(ModeEError::BadEofCount(3))
        );
    }

    #[test]
    fn restart_marker_payload_and_adjust() {
        let mut rx = ModeEReceiver::new(Some(10)).with_offset_adjustment(1000);
        let a = rx.add_stream();
        let h = BlockHeader {
            descriptor: flags::RESTART,
            count: 7,
            offset: 0,
        };
        assert_eq!(
            rx.handle_header(a, &h).unwrap(),
            Placement::Discard { len: 7 }
        );
        rx.handle_written(a, 7).unwrap();
        assert_eq!(
            rx.handle_header(a, &BlockHeader::data(5, 5)).unwrap(),
            Placement::Write {
                offset: 1005,
                len: 5
            }
        );
        rx.handle_written(a, 5).unwrap();
        assert_eq!(rx.received().ranges(), &[(1005, 1010)]);
    }

    #[test]
    fn sender_plan() {
        let ranges: RangeSet = [(0, 10), (20, 25)].into_iter().collect();
        let plan = ModeESender::new(&ranges, 3, 4)
            .unwrap()
            .plan_round_robin(true);
        assert_eq!(plan.len(), 3);
        assert_eq!(plan[0][0], BlockHeader::data(0, 4));
        assert_eq!(plan[1][0], BlockHeader::data(4, 4));
        assert_eq!(plan[2][0], BlockHeader::data(8, 2));
        assert_eq!(plan[0][1], BlockHeader::data(20, 4));
        assert_eq!(plan[1][1], BlockHeader::data(24, 1));
        let last0 = *plan[0].last().unwrap();
        assert!(last0.is_eof() && last0.is_eod() && last0.is_close());
        assert_eq!(last0.offset, 3);
        for p in &plan[1..] {
            let l = *p.last().unwrap();
            assert!(l.is_eod() && !l.is_eof());
        }
        assert!(ModeESender::new(&ranges, 0, 4).is_err());
        assert!(ModeESender::new(&ranges, 1, 0).is_err());
        // Empty file: only final blocks.
        let plan = ModeESender::new(&RangeSet::new(), 2, 4)
            .unwrap()
            .plan_round_robin(false);
        assert_eq!(plan.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 1]);
    }

    #[test]
    fn a_stream_added_while_data_remains_is_counted_by_the_eof() {
        let ranges: RangeSet = [(0, 10), (20, 30)].into_iter().collect();
        let mut tx = ModeESender::new(&ranges, 1, 4).unwrap();
        assert_eq!(tx.remaining(), 20);
        assert_eq!(tx.next_block(), Some(BlockHeader::data(0, 4)));
        assert_eq!(tx.remaining(), 16);
        // Four blocks (16 bytes) left: room for a stream that wants at least four.
        assert_eq!(tx.add_stream(5), None);
        assert_eq!(tx.add_stream(4), Some(1));
        assert_eq!(tx.streams(), 2);
        let mut sent = vec![(0, 4)];
        while let Some(h) = tx.next_block() {
            sent.push((h.offset, h.count));
        }
        assert_eq!(sent, [(0, 4), (4, 4), (8, 2), (20, 4), (24, 4), (28, 2)]);
        assert_eq!(tx.remaining(), 0);
        // Nothing left: no stream joins once a final block may have gone out.
        assert_eq!(tx.add_stream(0), None);
        assert_eq!(tx.final_block(0, false).offset, 2);
        assert!(tx.final_block(1, false).is_eod());
    }
}
