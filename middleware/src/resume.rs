//! Resuming MODE E downloads: blocks arrive out of order, so a resumable download records
//! the byte ranges it holds in `.NAME.gridos-ranges` beside the file, and a resume trusts
//! that record over the file's size.

use crate::{Error, ErrorKind, Result};
use gridos_ftp::proto::RangeSet;
use std::path::Path;

/// The recorded ranges (`0-100,200-300`, the 111 marker format), if a record exists.
pub fn read_ranges(p: &Path) -> Result<Option<RangeSet>> {
    match std::fs::read_to_string(p) {
        Ok(t) if t.trim().is_empty() => Ok(Some(RangeSet::new())),
        Ok(t) => RangeSet::parse(t.trim()).map(Some).map_err(|e| {
            Error::new(ErrorKind::InvalidInput, p.display().to_string())
                .detail("not a range record")
                .source(e)
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::from_io(p.display().to_string(), e)),
    }
}

/// Records `r` atomically (write beside, then rename), so a kill never leaves half a record.
pub fn write_ranges(p: &Path, r: &RangeSet) -> std::io::Result<()> {
    let tmp = p.with_extension("gridos-ranges.new");
    std::fs::write(&tmp, r.to_marker_string())?;
    std::fs::rename(&tmp, p)
}

/// `a ∩ b`.
pub fn intersect(a: &RangeSet, b: &RangeSet) -> RangeSet {
    let mut out = RangeSet::new();
    for &(s1, e1) in a.ranges() {
        for &(s2, e2) in b.ranges() {
            let (s, e) = (s1.max(s2), e1.min(e2));
            if s < e {
                out.insert(s, e);
            }
        }
    }
    out
}

/// The ranges of a `have`-byte partial file that a resume may keep: the recorded ones the
/// file really reaches, or `0..have` without a record.
pub fn held(recorded: Option<&RangeSet>, have: u64) -> RangeSet {
    let mut upto = RangeSet::new();
    upto.insert(0, have);
    recorded.map_or(upto.clone(), |r| intersect(r, &upto))
}
