//! Replies: formatting (server side) and incremental parsing (client side).
//!
//! Wire format (RFC 959 §4.2): a single-line reply is `ddd text CRLF`; a multi-line reply is
//! `ddd-first CRLF`, any number of intermediate lines, and `ddd last CRLF`. An intermediate line
//! that begins with a digit is written with one leading space so it can never be mistaken for
//! the last line. CR and LF inside a line's text are written as spaces (no reply injection).
//!
//! The parser keeps intermediate lines exactly as received (a FEAT line ` MDTM` keeps its
//! space), so `parse(format(r)) == r` whenever no intermediate line of `r` begins with a digit,
//! and `format(parse(format(r))) == format(r)` always.

use std::collections::VecDeque;

use super::error::ReplyError;
use super::line::{LineEvent, LineReader};

/// An FTP reply: a three-digit code and one or more lines of text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reply {
    /// Reply code, 100–699.
    pub code: u16,
    /// Text lines; one for a single-line reply. An empty vector formats as one empty line.
    pub lines: Vec<String>,
}

impl Reply {
    /// A single-line reply.
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    /// A multi-line reply (single-line if `lines` has one element).
    pub fn multi<I, S>(code: u16, lines: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Reply {
            code,
            lines: lines.into_iter().map(Into::into).collect(),
        }
    }

    /// The text of the last line (the whole text of a single-line reply).
    pub fn text(&self) -> &str {
        self.lines.last().map(String::as_str).unwrap_or("")
    }

    /// 1yz: positive preliminary.
    pub fn is_preliminary(&self) -> bool {
        (100..200).contains(&self.code)
    }
    /// 2yz: positive completion.
    pub fn is_completion(&self) -> bool {
        (200..300).contains(&self.code)
    }
    /// 3yz: positive intermediate.
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }
    /// 4yz or 5yz (or 6yz protected replies are not counted as errors).
    pub fn is_error(&self) -> bool {
        (400..600).contains(&self.code)
    }

    /// Append the wire form (with CRLF line ends) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let code = self.code.min(999);
        let n = self.lines.len();
        if n <= 1 {
            push_code(out, code);
            out.push(b' ');
            push_clean(out, self.lines.first().map(String::as_str).unwrap_or(""));
            out.extend_from_slice(b"\r\n");
            return;
        }
        for (i, line) in self.lines.iter().enumerate() {
            if i == 0 {
                push_code(out, code);
                out.push(b'-');
            } else if i + 1 == n {
                push_code(out, code);
                out.push(b' ');
            } else if line.as_bytes().first().is_some_and(u8::is_ascii_digit) {
                out.push(b' ');
            }
            push_clean(out, line);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

fn push_code(out: &mut Vec<u8>, code: u16) {
    out.push(b'0' + (code / 100 % 10) as u8);
    out.push(b'0' + (code / 10 % 10) as u8);
    out.push(b'0' + (code % 10) as u8);
}

fn push_clean(out: &mut Vec<u8>, s: &str) {
    out.extend(
        s.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
}

/// Default limit on the total size of one (multi-line) reply accepted by [`ReplyParser`].
pub const DEFAULT_MAX_REPLY: usize = 1 << 20;

#[derive(Debug, Clone)]
enum ParserState {
    Idle,
    InMulti {
        code: u16,
        prefix: [u8; 4],
        lines: Vec<String>,
        size: usize,
    },
    /// Discarding the rest of a multi-line reply that was too long.
    Skipping {
        prefix: [u8; 4],
    },
}

/// Incremental reply parser for the client side: feed bytes, poll replies.
///
/// ```
/// use gridos_ftp::proto::ReplyParser;
/// let mut p = ReplyParser::new();
/// p.feed(b"211-Features:\r\n MDTM\r\n 211 looks like an end\r\n211 End\r\n230 ok\r");
/// let feat = p.poll_reply().unwrap().unwrap();
/// assert_eq!(feat.code, 211);
/// assert_eq!(feat.lines, ["Features:", " MDTM", " 211 looks like an end", "End"]);
/// assert!(p.poll_reply().is_none());
/// p.feed(b"\n");
/// assert_eq!(p.poll_reply().unwrap().unwrap().code, 230);
/// ```
#[derive(Debug, Clone)]
pub struct ReplyParser {
    lines: LineReader,
    state: ParserState,
    max_reply: usize,
    ready: VecDeque<Result<Reply, ReplyError>>,
}

impl Default for ReplyParser {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplyParser {
    /// A parser with the default limits (8 KiB lines, 1 MiB replies).
    pub fn new() -> Self {
        Self::with_limits(super::line::DEFAULT_MAX_LINE, DEFAULT_MAX_REPLY)
    }

    /// A parser with custom limits on one line and on one whole reply (bytes).
    pub fn with_limits(max_line: usize, max_reply: usize) -> Self {
        ReplyParser {
            lines: LineReader::with_max_line(max_line),
            state: ParserState::Idle,
            max_reply,
            ready: VecDeque::new(),
        }
    }

    /// Feed bytes from the control connection.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.lines.feed(bytes);
        while let Some(ev) = self.lines.poll_line() {
            match ev {
                LineEvent::Overlong => self.too_long(),
                LineEvent::Line(l) => self.line(&l),
            }
        }
    }

    fn too_long(&mut self) {
        match std::mem::replace(&mut self.state, ParserState::Idle) {
            ParserState::InMulti { prefix, .. } => {
                self.state = ParserState::Skipping { prefix };
                self.ready.push_back(Err(ReplyError::TooLong));
            }
            s @ ParserState::Skipping { .. } => self.state = s,
            ParserState::Idle => self.ready.push_back(Err(ReplyError::TooLong)),
        }
    }

    fn line(&mut self, l: &[u8]) {
        let text = String::from_utf8_lossy(l);
        match &mut self.state {
            ParserState::Idle => match reply_code(l) {
                None => self.ready.push_back(Err(ReplyError::MalformedLine)),
                Some(code) => {
                    let rest = text.get(4..).unwrap_or("").to_string();
                    if l.get(3) == Some(&b'-') {
                        let mut prefix = [b' '; 4];
                        prefix[..3].copy_from_slice(l.get(..3).unwrap_or(b"000"));
                        let size = rest.len();
                        self.state = ParserState::InMulti {
                            code,
                            prefix,
                            lines: vec![rest],
                            size,
                        };
                    } else {
                        self.ready.push_back(Ok(Reply {
                            code,
                            lines: vec![rest],
                        }));
                    }
                }
            },
            ParserState::InMulti {
                code,
                prefix,
                lines,
                size,
            } => {
                if is_last_line(l, prefix) {
                    lines.push(text.get(4..).unwrap_or("").to_string());
                    let reply = Reply {
                        code: *code,
                        lines: std::mem::take(lines),
                    };
                    self.state = ParserState::Idle;
                    self.ready.push_back(Ok(reply));
                } else {
                    *size = size.saturating_add(text.len() + 2);
                    if *size > self.max_reply {
                        let prefix = *prefix;
                        self.state = ParserState::Skipping { prefix };
                        self.ready.push_back(Err(ReplyError::TooLong));
                    } else {
                        lines.push(text.into_owned());
                    }
                }
            }
            ParserState::Skipping { prefix } => {
                if is_last_line(l, prefix) {
                    self.state = ParserState::Idle;
                }
            }
        }
    }

    /// The next complete reply (or an error for a malformed or oversized one), if any.
    pub fn poll_reply(&mut self) -> Option<Result<Reply, ReplyError>> {
        self.ready.pop_front()
    }

    /// True when a multi-line reply has begun but not ended, or a partial line is held.
    pub fn is_mid_reply(&self) -> bool {
        !matches!(self.state, ParserState::Idle) || self.lines.partial_len() > 0
    }
}

fn is_last_line(l: &[u8], prefix: &[u8; 4]) -> bool {
    // "ddd " or exactly "ddd" (an end line with no text).
    l.starts_with(prefix) || (l.len() == 3 && l.get(..3) == prefix.get(..3))
}

/// The reply code at the start of a line: three digits, the first 1–6, followed by end of
/// line, space or hyphen.
fn reply_code(l: &[u8]) -> Option<u16> {
    let d = l.get(..3)?;
    if !d.iter().all(u8::is_ascii_digit) || !d.first().is_some_and(|c| (b'1'..=b'6').contains(c)) {
        return None;
    }
    match l.get(3) {
        None | Some(b' ') | Some(b'-') => {}
        Some(_) => return None,
    }
    Some(d.iter().fold(0u16, |a, &b| a * 10 + u16::from(b - b'0')))
}

/// Parse one complete reply from bytes (convenience for tests and simple clients).
pub fn parse_reply(bytes: &[u8]) -> Result<Reply, ReplyError> {
    let mut p = ReplyParser::new();
    p.feed(bytes);
    match p.poll_reply() {
        Some(r) => r,
        None => Err(ReplyError::MalformedLine),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_format() {
        assert_eq!(Reply::new(200, "OK").to_bytes(), b"200 OK\r\n");
        let r = Reply::multi(211, ["Features:", " MDTM", "123 x", "End"]);
        assert_eq!(
            r.to_bytes(),
            b"211-Features:\r\n MDTM\r\n 123 x\r\n211 End\r\n"
        );
        assert_eq!(
            Reply {
                code: 200,
                lines: vec![]
            }
            .to_bytes(),
            b"200 \r\n"
        );
        assert_eq!(
            Reply::new(550, "a\r\n226 fake").to_bytes(),
            b"550 a  226 fake\r\n"
        );
    }

    #[test]
    fn parse_round_trip() {
        let r = Reply::multi(250, ["Listing /", " type=dir; /", "End"]);
        assert_eq!(parse_reply(&r.to_bytes()).unwrap(), r);
        let r = Reply::new(227, "Entering Passive Mode (1,2,3,4,5,6)");
        assert_eq!(parse_reply(&r.to_bytes()).unwrap(), r);
    }

    #[test]
    fn parse_edge_cases() {
        let mut p = ReplyParser::new();
        p.feed(b"hello\r\n200\r\n150-a\r\n151 b\r\n150\r\n");
        assert_eq!(p.poll_reply(), Some(Err(ReplyError::MalformedLine)));
        assert_eq!(p.poll_reply(), Some(Ok(Reply::new(200, ""))));
        assert_eq!(
            p.poll_reply(),
            Some(Ok(Reply::multi(150, ["a", "151 b", ""])))
        );
        assert!(!p.is_mid_reply());
        p.feed(b"799 no\r\n");
        assert_eq!(p.poll_reply(), Some(Err(ReplyError::MalformedLine)));
    }

    #[test]
    fn multi_too_long_is_skipped() {
        let mut p = ReplyParser::with_limits(100, 50);
        p.feed(b"213-start\r\n");
        for _ in 0..10 {
            p.feed(b" some long line of status text\r\n");
        }
        p.feed(b"213 end\r\n200 next\r\n");
        assert_eq!(p.poll_reply(), Some(Err(ReplyError::TooLong)));
        assert_eq!(p.poll_reply(), Some(Ok(Reply::new(200, "next"))));
        assert_eq!(p.poll_reply(), None);
    }
}
