//! The docroot: every path a client names is resolved beneath a directory fd with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so `..`, absolute symlinks and
//! relative symlinks that climb out all stay inside, whether or not the process is chrooted.
//! Operations on a name (mkdir, unlink, rename, create) resolve the *parent* that way and
//! then use the `*at` call with the single final component.
//!
//! Partial uploads: `STOR name` writes `.name.gridos-part` in the same directory and renames
//! it over `name` when the upload completes (see [`partial_name`]). A MODE E upload writes
//! blocks out of order, so its partial has holes: it keeps `.name.gridos-part.ranges`
//! beside it, the byte ranges written so far (see [`partial_ranges_name`]), and `SIZE`
//! reports only the part from byte 0 that has no hole.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstatat, futimens, mkdirat};
use nix::sys::time::TimeSpec;
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::proto::facts::{FileKind, format_time};
use crate::proto::{FactSet, Facts, ListKind};
use crate::proto::{RangeSet, VirtualPath};

const PARTIAL_SUFFIX: &str = ".gridos-part";
const RANGES_SUFFIX: &str = ".gridos-part.ranges";
/// A range record being written (renamed over the record once whole).
const RANGES_NEW_SUFFIX: &str = ".gridos-part.ranges.new";

/// The hidden file an interrupted `STOR name` leaves behind: `.name.gridos-part`, in the same
/// directory. Listings hide it; `SIZE name` reports its length while it exists.
pub fn partial_name(name: &str) -> String {
    format!(".{name}{PARTIAL_SUFFIX}")
}

/// The record of the byte ranges a MODE E upload to `name` has written into its partial
/// file: `.name.gridos-part.ranges` (`0-100,200-300`, the 111 marker format).
pub fn partial_ranges_name(name: &str) -> String {
    format!(".{name}{RANGES_SUFFIX}")
}

/// Whether `name` is a partial-upload file or the range record of one.
pub fn is_partial(name: &str) -> bool {
    name.starts_with('.')
        && [PARTIAL_SUFFIX, RANGES_SUFFIX, RANGES_NEW_SUFFIX]
            .iter()
            .any(|s| name.len() > s.len() + 1 && name.ends_with(s))
}

/// The range record of the partial upload of `target` in `dir`: `None` when there is none
/// (the partial, if any, was written in order and holds its whole length). A record that
/// cannot be read as ranges counts as holding nothing.
pub(crate) fn read_partial_ranges(dir: &impl AsFd, target: &str) -> io::Result<Option<RangeSet>> {
    use std::io::Read;
    let fd = match openat(
        dir,
        partial_ranges_name(target).as_str(),
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(nix::Error::ENOENT) => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let mut text = String::new();
    File::from(fd).take(1 << 20).read_to_string(&mut text)?;
    let t = text.trim();
    if t.is_empty() {
        return Ok(Some(RangeSet::new()));
    }
    Ok(Some(RangeSet::parse(t).unwrap_or_default()))
}

/// Records `ranges` as what the partial upload of `target` in `dir` holds: written beside,
/// then renamed over the record, so that a server killed at any moment leaves a whole one.
pub(crate) fn write_partial_ranges(
    dir: &impl AsFd,
    target: &str,
    ranges: &RangeSet,
) -> io::Result<()> {
    use std::io::Write;
    let name = partial_ranges_name(target);
    let tmp = format!(".{target}{RANGES_NEW_SUFFIX}");
    let fd = openat(
        dir,
        tmp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(io_err)?;
    let written = File::from(fd).write_all(ranges.to_marker_string().as_bytes());
    if let Err(e) =
        written.and_then(|()| renameat(dir, tmp.as_str(), dir, name.as_str()).map_err(io_err))
    {
        let _ = unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        return Err(e);
    }
    Ok(())
}

/// Removes the range record of `target`'s partial upload, if there is one.
pub(crate) fn remove_partial_ranges(dir: &impl AsFd, target: &str) -> io::Result<()> {
    match unlinkat(
        dir,
        partial_ranges_name(target).as_str(),
        UnlinkatFlags::NoRemoveDir,
    ) {
        Ok(()) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(io_err(e)),
    }
}

/// How many bytes from 0 a partial of `len` bytes holds without a hole, by its record.
pub(crate) fn held_prefix(record: Option<&RangeSet>, len: u64) -> u64 {
    match record {
        None => len,
        Some(r) => r
            .ranges()
            .first()
            .filter(|&&(s, _)| s == 0)
            .map_or(0, |&(_, e)| e.min(len)),
    }
}

/// An open docroot.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// File type of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Link,
    Other,
}

/// One directory entry, for listings.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub name: String,
    pub kind: Kind,
    /// For a symlink whose target resolves inside the root: the target's kind and size.
    pub followed: Option<(Kind, u64)>,
    pub link: Option<String>,
    pub size: u64,
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub mtime: SystemTime,
    pub dev: u64,
    pub ino: u64,
}

fn kind_of_mode(mode: u32) -> Kind {
    match SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFREG => Kind::File,
        SFlag::S_IFDIR => Kind::Dir,
        SFlag::S_IFLNK => Kind::Link,
        _ => Kind::Other,
    }
}

fn time(secs: i64, nsec: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsec.clamp(0, 999_999_999) as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

impl Entry {
    fn from_stat(name: String, st: &FileStat) -> Entry {
        Entry {
            name,
            kind: kind_of_mode(st.st_mode),
            followed: None,
            link: None,
            size: st.st_size.max(0) as u64,
            mode: st.st_mode,
            nlink: st.st_nlink,
            uid: st.st_uid,
            gid: st.st_gid,
            mtime: time(st.st_mtime, st.st_mtime_nsec),
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }

    pub(crate) fn from_meta(name: String, m: &std::fs::Metadata) -> Entry {
        Entry {
            name,
            kind: kind_of_mode(m.mode()),
            followed: None,
            link: None,
            size: m.len(),
            mode: m.mode(),
            nlink: m.nlink(),
            uid: m.uid(),
            gid: m.gid(),
            mtime: time(m.mtime(), m.mtime_nsec()),
            dev: m.dev(),
            ino: m.ino(),
        }
    }

    fn effective(&self) -> (Kind, u64) {
        self.followed.unwrap_or((self.kind, self.size))
    }

    /// MLSx facts; `writable` selects the `perm` letters.
    pub(crate) fn facts(&self, name: String, writable: bool) -> Facts {
        let (kind, size) = self.effective();
        let (fk, perm) = match kind {
            Kind::Dir => (FileKind::Dir, if writable { "cdeflmp" } else { "el" }),
            Kind::File => (FileKind::File, if writable { "adfrw" } else { "r" }),
            Kind::Link => (
                FileKind::Other(format!(
                    "OS.unix=slink:{}",
                    self.link.as_deref().unwrap_or("")
                )),
                "",
            ),
            Kind::Other => (FileKind::Other("OS.unix=special".into()), ""),
        };
        Facts {
            kind: Some(fk),
            size: Some(size),
            modify: Some(self.mtime),
            perm: Some(perm.to_string()),
            unique: Some(format!("{:x}U{:x}", self.dev, self.ino)),
            unix_mode: Some(self.mode & 0o7777),
            extra: Vec::new(),
            name,
        }
    }

    /// An `ls -l` style line (no line end).
    pub(crate) fn ls_line(&self, now: SystemTime) -> String {
        let t = match self.kind {
            Kind::Dir => 'd',
            Kind::Link => 'l',
            Kind::File => '-',
            Kind::Other => match SFlag::from_bits_truncate(self.mode & SFlag::S_IFMT.bits()) {
                SFlag::S_IFIFO => 'p',
                SFlag::S_IFSOCK => 's',
                SFlag::S_IFCHR => 'c',
                SFlag::S_IFBLK => 'b',
                _ => '?',
            },
        };
        let mut perm = String::with_capacity(10);
        perm.push(t);
        for shift in [6u32, 3, 0] {
            let bits = (self.mode >> shift) & 7;
            perm.push(if bits & 4 != 0 { 'r' } else { '-' });
            perm.push(if bits & 2 != 0 { 'w' } else { '-' });
            perm.push(if bits & 1 != 0 { 'x' } else { '-' });
        }
        let name = self.name.replace(['\r', '\n'], " ");
        let mut line = format!(
            "{perm} {:>3} {:<8} {:<8} {:>12} {} {name}",
            self.nlink,
            self.uid,
            self.gid,
            self.size,
            ls_time(self.mtime, now)
        );
        if let Some(l) = &self.link {
            line.push_str(" -> ");
            line.push_str(&l.replace(['\r', '\n'], " "));
        }
        line
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Mon dd HH:MM` within six months of now, `Mon dd  YYYY` otherwise (as `ls -l`).
fn ls_time(t: SystemTime, now: SystemTime) -> String {
    let s = format_time(t);
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u32>().ok());
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi)) =
        (num(0..4), num(4..6), num(6..8), num(8..10), num(10..12))
    else {
        return "Jan  1  1970".to_string();
    };
    let mon = MONTHS[(mo.clamp(1, 12) - 1) as usize];
    let half_year = Duration::from_secs(182 * 86_400);
    let recent = match now.duration_since(t) {
        Ok(age) => age < half_year,
        Err(e) => e.duration() < Duration::from_secs(3600),
    };
    if recent {
        format!("{mon} {d:>2} {h:02}:{mi:02}")
    } else {
        format!("{mon} {d:>2}  {y}")
    }
}

/// A time as a `timespec` (seconds may be negative, nanoseconds always 0..1e9).
fn timespec(t: SystemTime) -> TimeSpec {
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            let s = i64::try_from(d.as_secs()).map_or(i64::MIN, |s| -s);
            match d.subsec_nanos() {
                0 => (s, 0),
                n => (s.saturating_sub(1), 1_000_000_000 - n),
            }
        }
    };
    TimeSpec::new(secs, i64::from(nanos))
}

fn io_err(e: nix::Error) -> io::Error {
    io::Error::from(e)
}

impl Root {
    /// Opens `path` as a docroot.
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err)?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The path it was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `p` beneath the root (symlinks followed, but never out of the root).
    pub(crate) fn resolve(&self, p: &VirtualPath, flags: OFlag) -> io::Result<OwnedFd> {
        let rel = match p.relative() {
            "" => ".",
            r => r,
        };
        // openat2 refuses O_PATH with anything but O_CLOEXEC, O_DIRECTORY and O_NOFOLLOW.
        let extra = if flags.contains(OFlag::O_PATH) {
            OFlag::O_CLOEXEC
        } else {
            OFlag::O_CLOEXEC | OFlag::O_NOCTTY
        };
        let how = OpenHow::new()
            .flags(flags | extra)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        openat2(&self.fd, rel, how).map_err(io_err)
    }

    /// Metadata of `p` (symlinks followed inside the root).
    pub(crate) fn stat(&self, p: &VirtualPath) -> io::Result<std::fs::Metadata> {
        File::from(self.resolve(p, OFlag::O_PATH)?).metadata()
    }

    /// Opens a regular file for reading.
    pub(crate) fn open_read(&self, p: &VirtualPath) -> io::Result<File> {
        let f = File::from(self.resolve(p, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?);
        let m = f.metadata()?;
        if m.is_dir() {
            return Err(io::ErrorKind::IsADirectory.into());
        }
        if !m.is_file() {
            return Err(io::ErrorKind::PermissionDenied.into());
        }
        nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETFL(OFlag::empty())).map_err(io_err)?;
        Ok(f)
    }

    /// The parent directory of `p` (as an `O_PATH` fd) and `p`'s final component. The root
    /// itself has no parent: permission denied.
    pub(crate) fn parent(&self, p: &VirtualPath) -> io::Result<(OwnedFd, String)> {
        let Some(name) = p.file_name() else {
            return Err(io::ErrorKind::PermissionDenied.into());
        };
        let name = name.to_string();
        let dir = self.resolve(&p.parent(), OFlag::O_PATH | OFlag::O_DIRECTORY)?;
        Ok((dir, name))
    }

    /// Creates a directory.
    pub(crate) fn mkdir(&self, p: &VirtualPath) -> io::Result<()> {
        let (d, n) = self.parent(p)?;
        mkdirat(&d, n.as_str(), Mode::from_bits_truncate(0o755)).map_err(io_err)
    }

    /// Removes an empty directory.
    pub(crate) fn rmdir(&self, p: &VirtualPath) -> io::Result<()> {
        let (d, n) = self.parent(p)?;
        unlinkat(&d, n.as_str(), UnlinkatFlags::RemoveDir).map_err(io_err)
    }

    /// Removes a file (a symlink itself, not its target).
    pub(crate) fn unlink(&self, p: &VirtualPath) -> io::Result<()> {
        let (d, n) = self.parent(p)?;
        unlinkat(&d, n.as_str(), UnlinkatFlags::NoRemoveDir).map_err(io_err)
    }

    /// Checks that `p` exists (without following a final symlink).
    pub(crate) fn exists(&self, p: &VirtualPath) -> io::Result<()> {
        let (d, n) = self.parent(p)?;
        fstatat(&d, n.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io_err)?;
        Ok(())
    }

    /// Renames `from` to `to`.
    pub(crate) fn rename(&self, from: &VirtualPath, to: &VirtualPath) -> io::Result<()> {
        let (d1, n1) = self.parent(from)?;
        let (d2, n2) = self.parent(to)?;
        renameat(&d1, n1.as_str(), &d2, n2.as_str()).map_err(io_err)
    }

    /// SITE CHMOD: permission bits only (no set-id or sticky bits).
    pub(crate) fn chmod(&self, p: &VirtualPath, mode: u32) -> io::Result<()> {
        let fd = self.resolve(p, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
        fchmod(&fd, Mode::from_bits_truncate(mode & 0o777)).map_err(io_err)
    }

    /// MFMT: sets the modification time of the file or directory `p` (a symlink is followed
    /// inside the root) and returns the time it then has (the file system may round it).
    /// The access time stays. Other kinds of files are refused, so no device or FIFO is
    /// opened. futimens needs a file opened for real (it refuses `O_PATH` fds), so `p` is
    /// looked at through an `O_PATH` fd first, then opened read-only and non-blocking.
    pub(crate) fn set_modified(&self, p: &VirtualPath, t: SystemTime) -> io::Result<SystemTime> {
        let m = File::from(self.resolve(p, OFlag::O_PATH)?).metadata()?;
        if !m.is_file() && !m.is_dir() {
            return Err(io::ErrorKind::PermissionDenied.into());
        }
        let f = File::from(self.resolve(p, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?);
        let m = f.metadata()?;
        if !m.is_file() && !m.is_dir() {
            return Err(io::ErrorKind::PermissionDenied.into());
        }
        futimens(&f, &TimeSpec::UTIME_OMIT, &timespec(t)).map_err(io_err)?;
        f.metadata()?.modified()
    }

    /// The size SIZE reports: while a partial upload exists, what it holds from byte 0
    /// without a hole (where a resuming client continues), else the file's.
    pub(crate) fn size(&self, p: &VirtualPath) -> io::Result<u64> {
        if let Ok((d, n)) = self.parent(p) {
            let partial = fstatat(&d, partial_name(&n).as_str(), AtFlags::AT_SYMLINK_NOFOLLOW);
            if let Some(st) = partial
                .ok()
                .filter(|st| kind_of_mode(st.st_mode) == Kind::File)
            {
                let record = read_partial_ranges(&d, &n)?;
                return Ok(held_prefix(record.as_ref(), st.st_size.max(0) as u64));
            }
        }
        let m = self.stat(p)?;
        if m.is_dir() {
            return Err(io::ErrorKind::IsADirectory.into());
        }
        Ok(m.len())
    }

    /// One entry for `p` (MLST, LIST of a file).
    pub(crate) fn entry(&self, p: &VirtualPath) -> io::Result<Entry> {
        let m = self.stat(p)?;
        Ok(Entry::from_meta(
            p.file_name().unwrap_or("/").to_string(),
            &m,
        ))
    }

    /// The entries of directory `p`, sorted by name, without `.`, `..` and partial uploads.
    /// If `p` is not a directory, the one entry for it.
    pub(crate) fn list(&self, p: &VirtualPath) -> io::Result<Vec<Entry>> {
        let fd = self.resolve(p, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
        let f = File::from(fd);
        if !f.metadata()?.is_dir() {
            return Ok(vec![self.entry(p)?]);
        }
        let fd: OwnedFd = f.into();
        let dirfd = fd.try_clone()?;
        let mut dir = nix::dir::Dir::from_fd(fd).map_err(io_err)?;
        let mut names = Vec::new();
        for e in dir.iter() {
            let e = e.map_err(io_err)?;
            let raw = e.file_name().to_bytes();
            if raw == b"." || raw == b".." {
                continue;
            }
            let Ok(name) = std::str::from_utf8(raw) else {
                continue; // not reachable by an FTP path either (paths are UTF-8)
            };
            if is_partial(name) {
                continue;
            }
            names.push(name.to_string());
        }
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let Ok(st) = fstatat(&dirfd, name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
                continue; // vanished meanwhile
            };
            let mut e = Entry::from_stat(name, &st);
            if e.kind == Kind::Link {
                e.link = readlinkat(&dirfd, e.name.as_str())
                    .ok()
                    .map(|t| String::from_utf8_lossy(OsStr::as_bytes(&t)).into_owned());
                if let Ok(m) = self.stat(&p.join(&e.name)) {
                    e.followed = Some((kind_of_mode(m.mode()), m.len()));
                }
            }
            out.push(e);
        }
        Ok(out)
    }

    /// A listing as bytes (CRLF line ends).
    pub(crate) fn listing(
        &self,
        p: &VirtualPath,
        kind: ListKind,
        facts: &FactSet,
        writable: bool,
    ) -> io::Result<Vec<u8>> {
        let now = SystemTime::now();
        let entries = self.list(p)?;
        let mut out = Vec::with_capacity(entries.len() * 64);
        for e in &entries {
            let line = match kind {
                ListKind::List => e.ls_line(now),
                ListKind::Nlst => e.name.replace(['\r', '\n'], " "),
                ListKind::Mlsd => e.facts(e.name.clone(), writable).format(facts),
            };
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Ok(out)
    }

    /// Opens (creating if needed) the partial file of `p`, not following a symlink there.
    pub(crate) fn open_partial(&self, p: &VirtualPath) -> io::Result<(File, OwnedFd, String)> {
        let (d, n) = self.parent(p)?;
        let target = fstatat(&d, n.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW);
        if target.is_ok_and(|st| kind_of_mode(st.st_mode) == Kind::Dir) {
            return Err(io::ErrorKind::IsADirectory.into());
        }
        let fd = openat(
            &d,
            partial_name(&n).as_str(),
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map_err(io_err)?;
        Ok((File::from(fd), d, n))
    }

    /// Opens `p` for appending (created if missing; an existing symlink is followed inside
    /// the root).
    pub(crate) fn open_append(&self, p: &VirtualPath) -> io::Result<File> {
        match self.resolve(p, OFlag::O_WRONLY | OFlag::O_NONBLOCK) {
            Ok(fd) => {
                let f = File::from(fd);
                if !f.metadata()?.is_file() {
                    return Err(io::ErrorKind::PermissionDenied.into());
                }
                nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_WRONLY))
                    .map_err(io_err)?;
                Ok(f)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let (d, n) = self.parent(p)?;
                let fd = openat(
                    &d,
                    n.as_str(),
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o644),
                )
                .map_err(io_err)?;
                Ok(File::from(fd))
            }
            Err(e) => Err(e),
        }
    }

    /// STOU: creates a new file with a name not yet used, in directory `p` (base `file`) or,
    /// if `p` is not a directory, next to it using its name as the base (`name`, `name.1`,
    /// `name.2`, …). Returns the file and the name chosen.
    pub(crate) fn create_unique(&self, p: &VirtualPath) -> io::Result<(File, String)> {
        let (dir, base) = match self.stat(p) {
            Ok(m) if m.is_dir() => (
                self.resolve(p, OFlag::O_PATH | OFlag::O_DIRECTORY)?,
                "file".to_string(),
            ),
            _ => self.parent(p)?,
        };
        for i in 0..10_000u32 {
            let name = if i == 0 {
                base.clone()
            } else {
                format!("{base}.{i}")
            };
            match openat(
                &dir,
                name.as_str(),
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW,
                Mode::from_bits_truncate(0o644),
            ) {
                Ok(fd) => return Ok((File::from(fd), name)),
                Err(nix::Error::EEXIST) => continue,
                Err(e) => return Err(io_err(e)),
            }
        }
        Err(io::ErrorKind::AlreadyExists.into())
    }

    /// A file in the same directory as an open `O_PATH` parent fd, for STOR resume.
    pub(crate) fn open_in(dir: &impl AsFd, name: &str) -> io::Result<File> {
        let fd = openat(
            dir,
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err)?;
        Ok(File::from(fd))
    }

    /// Renames `from` over `to`, both in `dir`.
    pub(crate) fn rename_in(dir: &impl AsFd, from: &str, to: &str) -> io::Result<()> {
        renameat(dir, from, dir, to).map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partials_and_their_records_are_hidden_names() {
        for n in [
            ".a.bin.gridos-part",
            ".a.bin.gridos-part.ranges",
            ".a.bin.gridos-part.ranges.new",
        ] {
            assert!(is_partial(n), "{n}");
        }
        for n in [
            "a.gridos-part",
            ".gridos-part",
            "..gridos-part.ranges",
            ".a.ranges",
        ] {
            assert!(!is_partial(n), "{n}");
        }
        assert_eq!(partial_ranges_name("a.bin"), ".a.bin.gridos-part.ranges");
    }

    #[test]
    fn a_record_says_what_a_partial_holds_without_a_hole() {
        let d = tempfile::tempdir().unwrap();
        let dir = File::open(d.path()).unwrap();
        assert_eq!(read_partial_ranges(&dir, "f").unwrap(), None);
        assert_eq!(held_prefix(None, 500), 500);
        let r: RangeSet = [(0, 100), (200, 300)].into_iter().collect();
        write_partial_ranges(&dir, "f", &r).unwrap();
        let back = read_partial_ranges(&dir, "f").unwrap().unwrap();
        assert_eq!(back, r);
        assert_eq!(held_prefix(Some(&back), 300), 100);
        // Never more than the file has.
        assert_eq!(held_prefix(Some(&back), 40), 40);
        let late: RangeSet = [(10, 100)].into_iter().collect();
        assert_eq!(held_prefix(Some(&late), 300), 0);
        // An unreadable record holds nothing; only the record is left, no temporary file.
        std::fs::write(d.path().join(partial_ranges_name("g")), "junk").unwrap();
        assert_eq!(
            held_prefix(read_partial_ranges(&dir, "g").unwrap().as_ref(), 300),
            0
        );
        remove_partial_ranges(&dir, "f").unwrap();
        remove_partial_ranges(&dir, "f").unwrap();
        assert_eq!(read_partial_ranges(&dir, "f").unwrap(), None);
        let left: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, [partial_ranges_name("g")]);
    }
}
