//! Directory listings: MLSD lines (RFC 3659) and the `LIST` formats servers really send
//! (Unix `ls -l` style and DOS style), parsed best-effort.

use std::time::SystemTime;

use crate::proto::{Facts, FileKind};

/// What a listing entry is.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (LIST `l…`, MLSD `OS.unix=slink`).
    Link,
    /// Something else (device, socket…).
    Other,
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The entry's name (no directory part).
    pub name: String,
    /// What it is.
    pub kind: EntryKind,
    /// Size in bytes, when the listing says.
    pub size: Option<u64>,
    /// Last modification, when the listing says (MLSD only).
    pub modified: Option<SystemTime>,
}

/// A name a listing may safely hand to a caller that joins it to a local path: not empty,
/// not `.` or `..`, no `/` and no NUL.
pub(crate) fn safe_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// Parses one MLSD line; `None` for `cdir`/`pdir` entries and unsafe names.
pub(crate) fn parse_mlsd_line(line: &str) -> Option<Result<Entry, crate::proto::ReplyError>> {
    let facts = match Facts::parse(line) {
        Ok(f) => f,
        Err(e) => return Some(Err(e)),
    };
    let kind = match &facts.kind {
        Some(FileKind::File) => EntryKind::File,
        Some(FileKind::Dir) => EntryKind::Dir,
        Some(FileKind::Cdir) | Some(FileKind::Pdir) => return None,
        Some(FileKind::Other(s)) if s.to_ascii_lowercase().contains("slink") => EntryKind::Link,
        Some(FileKind::Other(_)) => EntryKind::Other,
        None => EntryKind::File,
    };
    // MLSD names are relative; some servers still send a path.
    let name = facts.name.rsplit('/').next().unwrap_or("").to_string();
    if !safe_name(&name) {
        return None;
    }
    Some(Ok(Entry {
        name,
        kind,
        size: facts.size,
        modified: facts.modify,
    }))
}

/// Parses one LIST line in Unix or DOS format; `None` for lines that are neither (e.g.
/// `total 12`) and for unsafe names.
pub(crate) fn parse_list_line(line: &str) -> Option<Entry> {
    let fields = split_fields(line, 9);
    let entry = if fields.len() == 9 && is_unix_mode(fields[0].1) {
        let (_, mode) = fields[0];
        let kind = match mode.as_bytes().first() {
            Some(b'd') => EntryKind::Dir,
            Some(b'-') => EntryKind::File,
            Some(b'l') => EntryKind::Link,
            _ => EntryKind::Other,
        };
        let name = line.get(fields[8].0..)?.trim_end_matches(['\r', '\n']);
        let name = match kind {
            EntryKind::Link => name.split(" -> ").next().unwrap_or(name),
            _ => name,
        };
        Entry {
            name: name.to_string(),
            kind,
            size: fields[4].1.parse().ok(),
            modified: None,
        }
    } else {
        // DOS: "11-22-24  02:42PM  <DIR>  name" or "… 1234 name".
        let fields = split_fields(line, 4);
        if fields.len() != 4 || !fields[0].1.contains('-') || !fields[1].1.contains(':') {
            return None;
        }
        let (kind, size) = if fields[2].1.eq_ignore_ascii_case("<DIR>") {
            (EntryKind::Dir, None)
        } else {
            (EntryKind::File, Some(fields[2].1.parse().ok()?))
        };
        Entry {
            name: line.get(fields[3].0..)?.trim_end().to_string(),
            kind,
            size,
            modified: None,
        }
    };
    safe_name(&entry.name).then_some(entry)
}

fn is_unix_mode(s: &str) -> bool {
    s.len() >= 10 && s.bytes().next().is_some_and(|b| b"-dlbcps".contains(&b))
}

/// Splits off up to `n - 1` whitespace-separated fields; the `n`th is the rest of the line
/// (its start offset is what matters: names may contain spaces). Returns (offset, text).
fn split_fields(line: &str, n: usize) -> Vec<(usize, &str)> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    let b = line.as_bytes();
    while out.len() < n {
        while b.get(i).is_some_and(|c| *c == b' ' || *c == b'\t') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        if out.len() + 1 == n {
            out.push((start, line.get(start..).unwrap_or("")));
            break;
        }
        while b.get(i).is_some_and(|c| *c != b' ' && *c != b'\t') {
            i += 1;
        }
        out.push((start, line.get(start..i).unwrap_or("")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_and_dos_lines() {
        let e = parse_list_line("-rw-r--r--    1 1   1    3 Nov 22 02:42 my file.txt").unwrap();
        assert_eq!(
            (e.name.as_str(), e.kind, e.size),
            ("my file.txt", EntryKind::File, Some(3))
        );
        let e = parse_list_line("drwxr-xr-x 2 u g 4096 Jan  1  2020 sub").unwrap();
        assert_eq!((e.name.as_str(), e.kind), ("sub", EntryKind::Dir));
        let e = parse_list_line("lrwxrwxrwx 1 u g 4 Jan 1 2020 ln -> target").unwrap();
        assert_eq!((e.name.as_str(), e.kind), ("ln", EntryKind::Link));
        let e = parse_list_line("11-22-24  02:42PM       <DIR>          Data Dir").unwrap();
        assert_eq!((e.name.as_str(), e.kind), ("Data Dir", EntryKind::Dir));
        let e = parse_list_line("11-22-24  02:42PM   1234 a.bin").unwrap();
        assert_eq!(e.size, Some(1234));
        for bad in [
            "total 12",
            "",
            "drwxr-xr-x 2 u g 4096 Jan 1 2020 ..",
            "-rw-r--r-- 1 u g 1 Jan 1 2020 a/../../b",
            "garbage",
        ] {
            assert!(parse_list_line(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn mlsd_lines() {
        let e = parse_mlsd_line("type=file;size=12;modify=20200101000000; x y")
            .unwrap()
            .unwrap();
        assert_eq!((e.name.as_str(), e.size), ("x y", Some(12)));
        assert!(parse_mlsd_line("type=cdir; .").is_none());
        assert!(parse_mlsd_line("type=dir; ..").is_none());
        assert!(parse_mlsd_line("no facts here").unwrap().is_err());
    }
}
