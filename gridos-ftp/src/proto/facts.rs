//! Time values (MDTM, RFC 3659 §2.3) and machine listing facts (MLST/MLSD, RFC 3659 §7).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::ReplyError;

const SECS_PER_DAY: i64 = 86_400;

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Seconds since the epoch (negative before 1970), clamped to years 0000–9999.
fn unix_secs(t: SystemTime) -> (i64, u32) {
    const MIN: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => {
            let s = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if s > MAX {
                (MAX, 999_999_999)
            } else {
                (s, d.subsec_nanos())
            }
        }
        Err(e) => {
            let d = e.duration();
            let mut s = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            let mut n = d.subsec_nanos();
            if n > 0 {
                s -= 1;
                n = 1_000_000_000 - n;
            }
            if s < MIN { (MIN, 0) } else { (s, n) }
        }
    }
}

/// Format a time as `YYYYMMDDHHMMSS` in UTC (the MDTM reply and the MLSx `modify` fact).
/// Times outside years 0000–9999 are clamped.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use gridos_ftp::proto::facts::{format_time, parse_time};
/// let t = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
/// assert_eq!(format_time(t), "20010909014640");
/// assert_eq!(parse_time("20010909014640").unwrap(), t);
/// ```
pub fn format_time(t: SystemTime) -> String {
    let (secs, _) = unix_secs(t);
    let days = secs.div_euclid(SECS_PER_DAY);
    let rem = secs.rem_euclid(SECS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Like [`format_time`] with milliseconds: `YYYYMMDDHHMMSS.sss`.
pub fn format_time_millis(t: SystemTime) -> String {
    let (_, nanos) = unix_secs(t);
    format!("{}.{:03}", format_time(t), nanos / 1_000_000)
}

/// Like [`format_time`] with as many fraction digits as `t` needs (none for whole seconds,
/// at most nine): [`parse_time`] gives back exactly `t` for any time in years 0000–9999.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use gridos_ftp::proto::facts::{format_time_exact, parse_time};
/// let t = UNIX_EPOCH + Duration::new(1_000_000_000, 250_000_000);
/// assert_eq!(format_time_exact(t), "20010909014640.25");
/// assert_eq!(parse_time(&format_time_exact(t)).unwrap(), t);
/// ```
pub fn format_time_exact(t: SystemTime) -> String {
    let (_, nanos) = unix_secs(t);
    if nanos == 0 {
        return format_time(t);
    }
    let frac = format!("{nanos:09}");
    format!("{}.{}", format_time(t), frac.trim_end_matches('0'))
}

/// Parse `YYYYMMDDHHMMSS[.fraction]` (UTC). Fields are range-checked (a leap second `60` is
/// accepted and counted as the next second).
pub fn parse_time(s: &str) -> Result<SystemTime, ReplyError> {
    let (main, frac) = match s.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    if main.len() != 14 || !main.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ReplyError::Time);
    }
    let num = |r: std::ops::Range<usize>| -> i64 {
        main.get(r).and_then(|v| v.parse().ok()).unwrap_or(-1)
    };
    let (y, mo, d, h, mi, se) = (
        num(0..4),
        num(4..6),
        num(6..8),
        num(8..10),
        num(10..12),
        num(12..14),
    );
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 60
    {
        return Err(ReplyError::Time);
    }
    let mut nanos: u32 = 0;
    if let Some(f) = frac {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ReplyError::Time);
        }
        let mut scale = 100_000_000u32;
        for b in f.bytes().take(9) {
            nanos += u32::from(b - b'0') * scale;
            scale /= 10;
        }
    }
    let secs = days_from_civil(y, mo, d) * SECS_PER_DAY + h * 3600 + mi * 60 + se;
    let t = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(secs.unsigned_abs(), nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))
            .and_then(|t| t.checked_add(Duration::from_nanos(u64::from(nanos))))
    };
    t.ok_or(ReplyError::Time)
}

/// The `type` fact.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// `type=file`
    File,
    /// `type=dir`
    Dir,
    /// `type=cdir`: the listed directory itself.
    Cdir,
    /// `type=pdir`: its parent.
    Pdir,
    /// Anything else, e.g. `OS.unix=slink:/target` (kept verbatim).
    Other(String),
}

impl FileKind {
    fn as_str(&self) -> &str {
        match self {
            FileKind::File => "file",
            FileKind::Dir => "dir",
            FileKind::Cdir => "cdir",
            FileKind::Pdir => "pdir",
            FileKind::Other(s) => s,
        }
    }

    fn parse(s: &str) -> FileKind {
        match s.to_ascii_lowercase().as_str() {
            "file" => FileKind::File,
            "dir" => FileKind::Dir,
            "cdir" => FileKind::Cdir,
            "pdir" => FileKind::Pdir,
            _ => FileKind::Other(s.to_string()),
        }
    }
}

/// Which facts an MLST/MLSD listing includes (changed by `OPTS MLST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FactSet {
    /// `type`
    pub kind: bool,
    /// `size`
    pub size: bool,
    /// `modify`
    pub modify: bool,
    /// `perm`
    pub perm: bool,
    /// `unique`
    pub unique: bool,
    /// `UNIX.mode`
    pub unix_mode: bool,
}

impl Default for FactSet {
    fn default() -> Self {
        FactSet {
            kind: true,
            size: true,
            modify: true,
            perm: true,
            unique: true,
            unix_mode: true,
        }
    }
}

const FACT_NAMES: [&str; 6] = ["type", "size", "modify", "perm", "unique", "UNIX.mode"];

impl FactSet {
    /// No facts.
    pub fn none() -> Self {
        FactSet {
            kind: false,
            size: false,
            modify: false,
            perm: false,
            unique: false,
            unix_mode: false,
        }
    }

    fn flags(&self) -> [bool; 6] {
        [
            self.kind,
            self.size,
            self.modify,
            self.perm,
            self.unique,
            self.unix_mode,
        ]
    }

    /// The FEAT line body: `type*;size*;modify*;perm*;unique*;UNIX.mode*;` (`*` = selected).
    pub fn feat_string(&self) -> String {
        FACT_NAMES
            .iter()
            .zip(self.flags())
            .map(|(n, on)| format!("{n}{};", if on { "*" } else { "" }))
            .collect()
    }

    /// The selected facts as in the OPTS MLST reply: `type;size;`.
    pub fn selected_string(&self) -> String {
        FACT_NAMES
            .iter()
            .zip(self.flags())
            .filter(|(_, on)| *on)
            .map(|(n, _)| format!("{n};"))
            .collect()
    }

    /// Parse an `OPTS MLST` argument (`type;size;`); unknown fact names are ignored as RFC
    /// 3659 §7.9 requires.
    pub fn from_opts(arg: &str) -> FactSet {
        let mut s = FactSet::none();
        for name in arg.split(';').map(str::trim) {
            match name.to_ascii_lowercase().as_str() {
                "type" => s.kind = true,
                "size" => s.size = true,
                "modify" => s.modify = true,
                "perm" => s.perm = true,
                "unique" => s.unique = true,
                "unix.mode" => s.unix_mode = true,
                _ => {}
            }
        }
        s
    }
}

/// One MLSx entry: facts and a name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Facts {
    /// `type`
    pub kind: Option<FileKind>,
    /// `size` in octets.
    pub size: Option<u64>,
    /// `modify`, formatted to whole seconds.
    pub modify: Option<SystemTime>,
    /// `perm`, e.g. `adfrw` or `elcmp` (RFC 3659 §7.5.5).
    pub perm: Option<String>,
    /// `unique`
    pub unique: Option<String>,
    /// `UNIX.mode` (formatted in octal, e.g. `0644`).
    pub unix_mode: Option<u32>,
    /// Other facts, name and value as received.
    pub extra: Vec<(String, String)>,
    /// The path name (MLST: the full path; MLSD: the entry name).
    pub name: String,
}

impl Facts {
    /// Format as an MLSD line (no line end): `type=file;size=3;modify=…;perm=r; name`.
    /// Only the facts selected in `set` (and present) are written; `extra` facts always are.
    /// An MLST reply line is the same with one leading space. Semicolons in fact values are
    /// replaced with `_`, CR/LF in the name with spaces.
    pub fn format(&self, set: &FactSet) -> String {
        let clean = |s: &str| s.replace([';', ' ', '\r', '\n'], "_");
        let mut out = String::new();
        if let (true, Some(k)) = (set.kind, &self.kind) {
            out.push_str(&format!("type={};", clean(k.as_str())));
        }
        if let (true, Some(n)) = (set.size, self.size) {
            out.push_str(&format!("size={n};"));
        }
        if let (true, Some(t)) = (set.modify, self.modify) {
            out.push_str(&format!("modify={};", format_time(t)));
        }
        if let (true, Some(p)) = (set.perm, &self.perm) {
            out.push_str(&format!("perm={};", clean(p)));
        }
        if let (true, Some(u)) = (set.unique, &self.unique) {
            out.push_str(&format!("unique={};", clean(u)));
        }
        if let (true, Some(m)) = (set.unix_mode, self.unix_mode) {
            out.push_str(&format!("UNIX.mode=0{m:o};"));
        }
        for (k, v) in &self.extra {
            out.push_str(&format!("{}={};", clean(k).replace('=', "_"), clean(v)));
        }
        out.push(' ');
        out.push_str(&self.name.replace(['\r', '\n'], " "));
        out
    }

    /// Parse an MLSD line (for an MLST reply line, remove its one leading space first).
    pub fn parse(line: &str) -> Result<Facts, ReplyError> {
        let (facts, name) = match line.strip_prefix(' ') {
            Some(name) => ("", name),
            None => {
                let i = line.find("; ").ok_or(ReplyError::Facts)?;
                (
                    line.get(..=i).unwrap_or(""),
                    line.get(i + 2..).unwrap_or(""),
                )
            }
        };
        if name.is_empty() {
            return Err(ReplyError::Facts);
        }
        let mut f = Facts {
            name: name.to_string(),
            ..Facts::default()
        };
        for fact in facts.split(';').filter(|s| !s.is_empty()) {
            let (k, v) = fact.split_once('=').ok_or(ReplyError::Facts)?;
            if k.is_empty() {
                return Err(ReplyError::Facts);
            }
            match k.to_ascii_lowercase().as_str() {
                "type" => f.kind = Some(FileKind::parse(v)),
                "size" => f.size = Some(v.parse().map_err(|_| ReplyError::Facts)?),
                "modify" => f.modify = Some(parse_time(v)?),
                "perm" => f.perm = Some(v.to_string()),
                "unique" => f.unique = Some(v.to_string()),
                "unix.mode" => {
                    f.unix_mode = Some(u32::from_str_radix(v, 8).map_err(|_| ReplyError::Facts)?)
                }
                _ => f.extra.push((k.to_string(), v.to_string())),
            }
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_round_trip_and_edges() {
        for (s, secs) in [
            ("19700101000000", 0i64),
            ("20000229120000", 951_825_600),
            ("19691231235959", -1),
            ("99991231235959", 253_402_300_799),
        ] {
            let t = parse_time(s).unwrap();
            let expect = if secs >= 0 {
                UNIX_EPOCH + Duration::from_secs(secs as u64)
            } else {
                UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
            };
            assert_eq!(t, expect, "{s}");
            assert_eq!(format_time(t), s);
        }
        assert_eq!(
            parse_time("19700101000001.5").unwrap(),
            UNIX_EPOCH + Duration::from_millis(1500)
        );
        assert_eq!(
            format_time_millis(UNIX_EPOCH + Duration::from_millis(1500)),
            "19700101000001.500"
        );
        for bad in [
            "",
            "2000",
            "20001301000000",
            "20000230000000",
            "19000229000000",
            "2000010100000a",
            "20000101240000",
            "20000101000000.",
            "20000101000000.x",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn facts_round_trip() {
        let f = Facts {
            kind: Some(FileKind::File),
            size: Some(1234),
            modify: Some(UNIX_EPOCH + Duration::from_secs(86_400)),
            perm: Some("adfrw".into()),
            unique: None,
            unix_mode: Some(0o644),
            extra: vec![],
            name: "a file; with=odd chars".into(),
        };
        let line = f.format(&FactSet::default());
        assert_eq!(
            line,
            "type=file;size=1234;modify=19700102000000;perm=adfrw;UNIX.mode=0644; a file; with=odd chars"
        );
        assert_eq!(Facts::parse(&line).unwrap(), f);
        let only = FactSet::from_opts("Type;size;bogus;");
        assert_eq!(only.selected_string(), "type;size;");
        assert_eq!(
            f.format(&only),
            "type=file;size=1234; a file; with=odd chars"
        );
        assert_eq!(Facts::parse(" bare").unwrap().name, "bare");
        assert!(Facts::parse("type=file;noname").is_err());
        assert!(Facts::parse("size=x; n").is_err());
    }

    #[test]
    fn modify_fact_keeps_fractions_and_exact_format_round_trips() {
        let f = Facts::parse("type=file;modify=20010203040506.789; f").unwrap();
        assert_eq!(
            f.modify,
            Some(UNIX_EPOCH + Duration::new(981_173_106, 789_000_000))
        );
        assert!(Facts::parse("modify=20010203040506.; f").is_err());
        for t in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::new(981_173_106, 1),
            UNIX_EPOCH - Duration::new(1, 500_000_000),
        ] {
            assert_eq!(parse_time(&format_time_exact(t)).unwrap(), t);
        }
        assert_eq!(
            format_time_exact(UNIX_EPOCH - Duration::from_millis(500)),
            "19691231235959.5"
        );
    }

    #[test]
    fn feat_string() {
        let s = FactSet {
            unique: false,
            ..FactSet::default()
        };
        assert_eq!(
            s.feat_string(),
            "type*;size*;modify*;perm*;unique;UNIX.mode*;"
        );
    }
}
