//! Byte-range sets and the GridFTP markers built on them: `REST` range lists, `111 Range
//! Marker` and `112 Perf Marker` replies (GFD.20).
//!
//! Ranges are half-open: `0-1000` means bytes 0 through 999, the form GridFTP peers use.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::ReplyError;
use super::reply::Reply;

/// A set of byte ranges `[start, end)`, kept sorted, disjoint and merged (adjacent ranges
/// coalesce).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RangeSet {
    ranges: Vec<(u64, u64)>,
}

impl RangeSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `[start, end)`; empty ranges (`start >= end`) are ignored.
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        // First range whose end reaches start (could merge), last whose start <= end.
        let lo = self.ranges.partition_point(|&(_, e)| e < start);
        let hi = self.ranges.partition_point(|&(s, _)| s <= end);
        if lo >= hi {
            self.ranges.insert(lo, (start, end));
            return;
        }
        let new_start = self.ranges.get(lo).map_or(start, |r| r.0.min(start));
        let new_end = self.ranges.get(hi - 1).map_or(end, |r| r.1.max(end));
        self.ranges
            .splice(lo..hi, std::iter::once((new_start, new_end)));
    }

    /// The ranges, sorted and disjoint.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// True if no byte is in the set.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Number of bytes in the set (saturating).
    pub fn total(&self) -> u64 {
        self.ranges
            .iter()
            .fold(0u64, |a, &(s, e)| a.saturating_add(e - s))
    }

    /// True if every byte of `[start, end)` is in the set (true for an empty range).
    pub fn covers(&self, start: u64, end: u64) -> bool {
        if start >= end {
            return true;
        }
        let i = self.ranges.partition_point(|&(_, e)| e <= start);
        self.ranges
            .get(i)
            .is_some_and(|&(s, e)| s <= start && end <= e)
    }

    /// The parts of `[0, size)` not in the set: what still has to be sent after a restart.
    pub fn missing(&self, size: u64) -> RangeSet {
        let mut out = RangeSet::new();
        let mut pos = 0u64;
        for &(s, e) in &self.ranges {
            if s >= size {
                break;
            }
            if s > pos {
                out.ranges.push((pos, s));
            }
            pos = pos.max(e);
        }
        if pos < size {
            out.ranges.push((pos, size));
        }
        out
    }

    /// The `n` largest ranges only (a subset: bytes dropped are sent again, never
    /// assumed). A resume of a very fragmented file names what it holds in a `REST` line
    /// that a server's line limit bounds.
    pub fn largest(&self, n: usize) -> RangeSet {
        if self.ranges.len() <= n {
            return self.clone();
        }
        let mut by_size = self.ranges.clone();
        by_size.sort_by_key(|&(s, e)| std::cmp::Reverse(e - s));
        by_size.truncate(n);
        by_size.sort_unstable();
        RangeSet { ranges: by_size }
    }

    /// Add every range of `other`.
    pub fn extend_from(&mut self, other: &RangeSet) {
        for &(s, e) in &other.ranges {
            self.insert(s, e);
        }
    }

    /// `0-1000,2000-3000` (empty string for an empty set).
    pub fn to_marker_string(&self) -> String {
        let parts: Vec<String> = self
            .ranges
            .iter()
            .map(|(s, e)| format!("{s}-{e}"))
            .collect();
        parts.join(",")
    }

    /// Parse `a-b,c-d,…` (spaces around items allowed, a trailing comma tolerated). Each range
    /// needs `a <= b`; ranges may overlap or come in any order; `a == b` adds nothing.
    pub fn parse(s: &str) -> Result<RangeSet, ReplyError> {
        let mut set = RangeSet::new();
        let s = s.trim();
        let s = s.strip_suffix(',').unwrap_or(s);
        if s.is_empty() {
            return Err(ReplyError::Ranges);
        }
        for item in s.split(',') {
            let (a, b) = item.trim().split_once('-').ok_or(ReplyError::Ranges)?;
            let a = parse_u64(a)?;
            let b = parse_u64(b)?;
            if a > b {
                return Err(ReplyError::Ranges);
            }
            set.insert(a, b);
        }
        Ok(set)
    }
}

fn parse_u64(s: &str) -> Result<u64, ReplyError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ReplyError::Ranges);
    }
    s.parse().map_err(|_| ReplyError::Ranges)
}

impl FromIterator<(u64, u64)> for RangeSet {
    fn from_iter<I: IntoIterator<Item = (u64, u64)>>(iter: I) -> Self {
        let mut s = RangeSet::new();
        for (a, b) in iter {
            s.insert(a, b);
        }
        s
    }
}

/// `111 Range Marker 0-1000,2000-3000`.
pub fn range_marker_reply(ranges: &RangeSet) -> Reply {
    Reply::new(111, format!("Range Marker {}", ranges.to_marker_string()))
}

/// Parse a 111 range marker reply.
pub fn parse_range_marker(reply: &Reply) -> Result<RangeSet, ReplyError> {
    if reply.code != 111 {
        return Err(ReplyError::UnexpectedCode(reply.code));
    }
    let t = reply.text().trim();
    let rest = t
        .get(..12)
        .filter(|p| p.eq_ignore_ascii_case("range marker"))
        .and_then(|_| t.get(12..))
        .ok_or(ReplyError::Ranges)?;
    RangeSet::parse(rest)
}

/// A `112 Perf Marker` (GFD.20): progress of one stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerfMarker {
    /// When the count was taken (sent with tenths of a second).
    pub timestamp: SystemTime,
    /// Index of the stripe (0 for a single server).
    pub stripe_index: u32,
    /// Bytes this stripe has moved so far.
    pub stripe_bytes: u64,
    /// Number of stripes.
    pub total_stripes: u32,
}

impl PerfMarker {
    /// The reply: `112-Perf Marker`, ` Timestamp: 1111111111.1`, ` Stripe Index: 0`,
    /// ` Stripe Bytes Transferred: N`, ` Total Stripe Count: 1`, `112 End.`
    pub fn to_reply(&self) -> Reply {
        let d = self
            .timestamp
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Reply::multi(
            112,
            [
                "Perf Marker".to_string(),
                format!(" Timestamp: {}.{}", d.as_secs(), d.subsec_millis() / 100),
                format!(" Stripe Index: {}", self.stripe_index),
                format!(" Stripe Bytes Transferred: {}", self.stripe_bytes),
                format!(" Total Stripe Count: {}", self.total_stripes),
                "End.".to_string(),
            ],
        )
    }

    /// Parse a 112 reply. Fields may come in any order; all four must be present.
    pub fn parse(reply: &Reply) -> Result<PerfMarker, ReplyError> {
        if reply.code != 112 {
            return Err(ReplyError::UnexpectedCode(reply.code));
        }
        let (mut ts, mut idx, mut bytes, mut total) = (None, None, None, None);
        for line in &reply.lines {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim();
            match k.trim().to_ascii_lowercase().as_str() {
                "timestamp" => ts = Some(parse_timestamp(v)?),
                "stripe index" => idx = Some(v.parse().map_err(|_| ReplyError::PerfMarker)?),
                "stripe bytes transferred" => {
                    bytes = Some(v.parse().map_err(|_| ReplyError::PerfMarker)?)
                }
                "total stripe count" => {
                    total = Some(v.parse().map_err(|_| ReplyError::PerfMarker)?)
                }
                _ => {}
            }
        }
        match (ts, idx, bytes, total) {
            (Some(timestamp), Some(stripe_index), Some(stripe_bytes), Some(total_stripes)) => {
                Ok(PerfMarker {
                    timestamp,
                    stripe_index,
                    stripe_bytes,
                    total_stripes,
                })
            }
            _ => Err(ReplyError::PerfMarker),
        }
    }
}

fn parse_timestamp(v: &str) -> Result<SystemTime, ReplyError> {
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    if secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(ReplyError::PerfMarker);
    }
    let secs: u64 = secs.parse().map_err(|_| ReplyError::PerfMarker)?;
    let mut nanos = 0u32;
    let mut scale = 100_000_000u32;
    for b in frac.bytes().take(9) {
        nanos += u32::from(b - b'0') * scale;
        scale /= 10;
    }
    UNIX_EPOCH
        .checked_add(Duration::new(secs, nanos))
        .ok_or(ReplyError::PerfMarker)
}

#[cfg(test)]
mod tests {
    #[test]
    fn largest_keeps_a_subset_of_the_biggest_ranges() {
        let mut r = RangeSet::new();
        for (s, e) in [(0, 10), (20, 21), (30, 100), (200, 202), (300, 350)] {
            r.insert(s, e);
        }
        assert_eq!(r.largest(9), r);
        assert_eq!(r.largest(3).ranges(), &[(0, 10), (30, 100), (300, 350)]);
        assert_eq!(r.largest(0), RangeSet::new());
    }

    use super::*;

    #[test]
    fn insert_merges() {
        let mut s = RangeSet::new();
        s.insert(10, 20);
        s.insert(30, 40);
        s.insert(0, 5);
        assert_eq!(s.ranges(), &[(0, 5), (10, 20), (30, 40)]);
        s.insert(20, 30);
        assert_eq!(s.ranges(), &[(0, 5), (10, 40)]);
        s.insert(3, 12);
        assert_eq!(s.ranges(), &[(0, 40)]);
        s.insert(50, 50);
        assert_eq!(s.total(), 40);
        assert!(s.covers(0, 40) && !s.covers(39, 41));
        s.insert(45, 60);
        assert_eq!(s.missing(100).ranges(), &[(40, 45), (60, 100)]);
        assert_eq!(s.missing(42).ranges(), &[(40, 42)]);
    }

    #[test]
    fn marker_strings() {
        let s = RangeSet::parse("2000-3000, 0-1000,500-1500,").unwrap();
        assert_eq!(s.to_marker_string(), "0-1500,2000-3000");
        for bad in [
            "",
            "1",
            "1-",
            "-1",
            "5-4",
            "a-b",
            "1-2,,3-4",
            "1-99999999999999999999",
        ] {
            assert!(RangeSet::parse(bad).is_err(), "{bad}");
        }
        let r = range_marker_reply(&s);
        assert_eq!(r.to_bytes(), b"111 Range Marker 0-1500,2000-3000\r\n");
        assert_eq!(parse_range_marker(&r).unwrap(), s);
    }

    #[test]
    fn perf_marker_round_trip() {
        let m = PerfMarker {
            timestamp: UNIX_EPOCH + Duration::from_millis(1_111_111_111_100),
            stripe_index: 0,
            stripe_bytes: 123_456,
            total_stripes: 1,
        };
        let bytes = m.to_reply().to_bytes();
        assert!(bytes.starts_with(b"112-Perf Marker\r\n Timestamp: 1111111111.1\r\n"));
        let parsed = super::super::reply::parse_reply(&bytes).unwrap();
        assert_eq!(PerfMarker::parse(&parsed).unwrap(), m);
    }
}
