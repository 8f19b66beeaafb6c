//! Line framing for the control connection.
//!
//! The control connection is a Telnet stream (RFC 959 §4.1.1, RFC 854). [`LineReader`] is fed
//! raw bytes as they arrive, strips Telnet command sequences (IAC IP, IAC DM, option
//! negotiation, subnegotiation; `IAC IAC` stands for a literal 0xFF byte), splits on LF
//! (a CR right before the LF is dropped, so both CRLF and bare LF end a line), and yields
//! [`LineEvent`]s.
//!
//! Memory is bounded whatever the peer sends: a line longer than the limit (8 KiB by default)
//! yields one [`LineEvent::Overlong`] as soon as it passes the limit, and the rest of that line
//! is discarded byte by byte without being stored. Complete lines wait in a queue until
//! polled, so the queue holds at most what the driver has fed since it last polled.

use std::collections::VecDeque;

/// Default longest line, in bytes, excluding the line end.
pub const DEFAULT_MAX_LINE: usize = 8192;

const IAC: u8 = 255;
const DONT: u8 = 254;
const DO: u8 = 253;
const WONT: u8 = 252;
const WILL: u8 = 251;
const SB: u8 = 250;
const SE: u8 = 240;
/// Telnet "Interrupt Process".
const IP: u8 = 244;

/// What [`LineReader::poll_line`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEvent {
    /// A complete line, without its line end and without Telnet sequences.
    Line(Vec<u8>),
    /// A line exceeded the limit; it is being discarded up to its end. Yielded once per line;
    /// the server answers 500.
    Overlong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Telnet {
    Data,
    Iac,
    /// After WILL/WONT/DO/DONT: one option byte follows.
    Option,
    /// Inside a subnegotiation, until IAC SE.
    Sub,
    SubIac,
}

/// Telnet-aware, bounded line splitter. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct LineReader {
    max: usize,
    buf: Vec<u8>,
    discarding: bool,
    telnet: Telnet,
    interrupted: bool,
    ready: VecDeque<LineEvent>,
}

impl Default for LineReader {
    fn default() -> Self {
        Self::new()
    }
}

impl LineReader {
    /// A reader with the default 8 KiB line limit.
    pub fn new() -> Self {
        Self::with_max_line(DEFAULT_MAX_LINE)
    }

    /// A reader with a custom line limit (bytes, excluding the line end; at least 1).
    pub fn with_max_line(max: usize) -> Self {
        LineReader {
            max: max.max(1),
            buf: Vec::new(),
            discarding: false,
            telnet: Telnet::Data,
            interrupted: false,
            ready: VecDeque::new(),
        }
    }

    /// The line limit in force.
    pub fn max_line(&self) -> usize {
        self.max
    }

    /// Feed bytes received from the peer. All bytes are consumed.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match self.telnet {
                Telnet::Data => {
                    if b == IAC {
                        self.telnet = Telnet::Iac;
                    } else {
                        self.data_byte(b);
                    }
                }
                Telnet::Iac => {
                    self.telnet = match b {
                        IAC => {
                            self.data_byte(IAC);
                            Telnet::Data
                        }
                        WILL | WONT | DO | DONT => Telnet::Option,
                        SB => Telnet::Sub,
                        IP => {
                            self.interrupted = true;
                            Telnet::Data
                        }
                        // DM, AYT, NOP, GA, … : two-byte commands, dropped.
                        _ => Telnet::Data,
                    };
                }
                Telnet::Option => self.telnet = Telnet::Data,
                Telnet::Sub => {
                    if b == IAC {
                        self.telnet = Telnet::SubIac;
                    }
                }
                Telnet::SubIac => {
                    self.telnet = if b == SE { Telnet::Data } else { Telnet::Sub };
                }
            }
        }
    }

    fn data_byte(&mut self, b: u8) {
        if b == b'\n' {
            if self.discarding {
                self.discarding = false;
            } else {
                let mut line = std::mem::take(&mut self.buf);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.ready.push_back(LineEvent::Line(line));
            }
            return;
        }
        if self.discarding {
            return;
        }
        // Allow one extra byte for a CR that may precede the LF.
        if self.buf.len() > self.max || (self.buf.len() == self.max && b != b'\r') {
            self.buf = Vec::new();
            self.discarding = true;
            self.ready.push_back(LineEvent::Overlong);
            return;
        }
        self.buf.push(b);
    }

    /// The next complete line or overlong event, if any.
    pub fn poll_line(&mut self) -> Option<LineEvent> {
        self.ready.pop_front()
    }

    /// Number of events waiting to be polled.
    pub fn pending(&self) -> usize {
        self.ready.len()
    }

    /// Bytes of the partial line held (never more than the limit plus one).
    pub fn partial_len(&self) -> usize {
        self.buf.len()
    }

    /// True while a line has begun (held, or being discarded as overlong) and not ended.
    pub fn in_line(&self) -> bool {
        !self.buf.is_empty() || self.discarding
    }

    /// True once if a Telnet Interrupt Process (IAC IP) arrived since the last call; clients
    /// send it (with a Synch) before ABOR so the server can look for the ABOR at once.
    pub fn take_interrupt(&mut self) -> bool {
        std::mem::take(&mut self.interrupted)
    }
}

/// Strip Telnet command sequences from one already framed line (`IAC IAC` → 0xFF), and a
/// trailing CRLF or LF. Used by [`Command::parse`](super::Command::parse) so it also accepts
/// lines that did not go through a [`LineReader`].
pub fn strip_telnet(line: &[u8]) -> Vec<u8> {
    let mut r = LineReader::with_max_line(usize::MAX - 1);
    r.feed(line);
    let mut out = Vec::with_capacity(line.len());
    while let Some(ev) = r.poll_line() {
        if let LineEvent::Line(l) = ev {
            out.extend_from_slice(&l);
            out.push(b'\n');
        }
    }
    // Whatever is left without a line end.
    out.extend_from_slice(&r.buf);
    // Undo the joining LF of a single trailing line end.
    if line.last() == Some(&b'\n') && out.last() == Some(&b'\n') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(r: &mut LineReader) -> Vec<LineEvent> {
        std::iter::from_fn(|| r.poll_line()).collect()
    }

    #[test]
    fn crlf_and_lf() {
        let mut r = LineReader::new();
        r.feed(b"USER a\r\nPASS b\nNO");
        assert_eq!(
            lines(&mut r),
            vec![
                LineEvent::Line(b"USER a".to_vec()),
                LineEvent::Line(b"PASS b".to_vec())
            ]
        );
        r.feed(b"OP\r");
        assert!(lines(&mut r).is_empty());
        r.feed(b"\n");
        assert_eq!(lines(&mut r), vec![LineEvent::Line(b"NOOP".to_vec())]);
    }

    #[test]
    fn telnet_sequences_stripped() {
        let mut r = LineReader::new();
        // IAC IP, IAC DM, then ABOR; an option negotiation split across feeds; IAC IAC.
        r.feed(&[IAC, IP, IAC, 242, b'A', b'B', IAC]);
        r.feed(&[WILL]);
        r.feed(&[1, b'O', b'R', b'\r', b'\n']);
        assert!(r.take_interrupt());
        assert!(!r.take_interrupt());
        r.feed(&[b'X', IAC, IAC, IAC, SB, 1, 2, IAC, 7, IAC, SE, b'\n']);
        assert_eq!(
            lines(&mut r),
            vec![
                LineEvent::Line(b"ABOR".to_vec()),
                LineEvent::Line(vec![b'X', 0xFF])
            ]
        );
    }

    #[test]
    fn overlong_once_and_bounded() {
        let mut r = LineReader::with_max_line(16);
        r.feed(&[b'a'; 16]);
        assert!(lines(&mut r).is_empty());
        r.feed(b"\r\n");
        assert_eq!(lines(&mut r), vec![LineEvent::Line(vec![b'a'; 16])]);
        for _ in 0..100 {
            r.feed(&[b'b'; 1000]);
            assert!(r.partial_len() <= 17);
        }
        assert_eq!(lines(&mut r), vec![LineEvent::Overlong]);
        r.feed(b"tail\nNOOP\n");
        assert_eq!(lines(&mut r), vec![LineEvent::Line(b"NOOP".to_vec())]);
    }

    #[test]
    fn default_limit_is_8k() {
        let mut r = LineReader::new();
        r.feed(&vec![b'x'; 8192]);
        r.feed(b"\r\n");
        assert_eq!(lines(&mut r), vec![LineEvent::Line(vec![b'x'; 8192])]);
        r.feed(&vec![b'x'; 8193]);
        assert_eq!(lines(&mut r), vec![LineEvent::Overlong]);
    }

    #[test]
    fn strip_single_line() {
        assert_eq!(strip_telnet(b"NOOP\r\n"), b"NOOP");
        assert_eq!(strip_telnet(&[IAC, IP, IAC, 242, b'A']), b"A");
        assert_eq!(strip_telnet(b"A\r"), b"A\r");
    }
}
