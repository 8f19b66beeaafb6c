//! GASS-style access to a URL as a file: [`open`] a local path, an `ftp://` or a
//! `gridftp://` URL and read, write and seek it as if it were local.
//!
//! - [`Mode::Read`] fetches the whole file once into a local copy (with the copy
//!   engine: MODE E, parallel streams and `verify` as for [`Copy`](struct@Copy)) and serves
//!   every read and seek from it. With [`OpenOptions::ranges`] against a GridFTP server the
//!   handle instead keeps one logged-in control connection and reads on demand, one block
//!   (4 MiB by default) at a time with `ERET`: for a few parts of a large file.
//! - [`Mode::Write`] writes into a local scratch file. [`RemoteFile::close`] uploads it to a
//!   temporary name beside the target (`.NAME.gridos-XXXX.part`) and renames it over the
//!   target (`RNFR`/`RNTO`), so readers of the URL see the old file or the new one, never a
//!   part of it. A server that will not rename over an existing file makes `close` fail,
//!   and the old file stays.
//! - [`Mode::Append`] is `Write` starting from the file's current bytes (a missing file is
//!   empty); every write goes to the end.
//! - Local paths follow the same contract with plain `std::fs` underneath: `Read` opens the
//!   file itself; `Write` and `Append` write a temporary file in the target's directory
//!   that is renamed over the target on close.
//!
//! # `close` and `drop`
//! Only [`RemoteFile::close`] makes written data appear at the URL, and it returns what a
//! plain drop would lose: the upload's errors (a refused `STOR`, a full disk, a checksum
//! mismatch) and its [`CopyReport`]. A `RemoteFile` dropped without `close` uploads
//! nothing: the URL keeps its old content and the local scratch files are removed. The
//! temporary remote name exists only while `close` runs; `close` removes it when the upload
//! or the rename fails (only a process killed during `close` can leave one behind).
//!
//! `flush` only flushes the local copy. Reading a file opened to write, or writing a file
//! opened to read, fails with `EBADF`, as for a local file opened that way.
//!
//! ```
//! use gridos_middleware::Url;
//! use gridos_middleware::file::{self, Mode};
//! use std::io::{Read, Seek, SeekFrom, Write};
//!
//! let dir = tempfile::tempdir()?;
//! let url = Url::Local(dir.path().join("notes.txt")); // or Url::parse("ftp://host/notes.txt")?
//!
//! let mut f = file::open(&url, Mode::Write)?;
//! f.write_all(b"hello")?;
//! f.close()?; // appears now, whole
//!
//! let mut f = file::open(&url, Mode::Append)?;
//! f.write_all(b", world")?;
//! drop(f); // not closed: nothing changes
//!
//! let mut f = file::open(&url, Mode::Read)?;
//! f.seek(SeekFrom::Start(1))?;
//! let mut text = String::new();
//! f.read_to_string(&mut text)?;
//! assert_eq!(text, "ello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Reading parts of a large file on a GridFTP server without fetching all of it:
//!
//! ```no_run
//! use gridos_middleware::Url;
//! use gridos_middleware::file::{Mode, OpenOptions};
//! use std::io::{Read, Seek, SeekFrom};
//!
//! let url = Url::parse("gridftp://alice@data.example/archive/run7.h5")?;
//! let mut f = OpenOptions::new().mode(Mode::Read).ranges(true).open(&url)?;
//! f.seek(SeekFrom::Start(40 << 30))?;
//! let mut header = [0u8; 512];
//! f.read_exact(&mut header)?; // one ERET of 4 MiB at 40 GiB
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::copy::{Copy, CopyReport};
use crate::endpoint::{Connector, FtpSide};
use crate::landing::{Landing, existing_device};
use crate::observe::{CopyObserver, Silent};
use crate::options::CopyOptions;
use crate::url::{FtpUrl, Url};
use crate::{Error, ErrorKind, Result};
use gridos_ftp::client::{Client, EntryKind, GridOptions};
use gridos_io::CancelToken;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How a URL is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Read and seek (as `fopen(…, "r")`).
    Read,
    /// Replace the file with what is written (as `"w"`); it appears on
    /// [`RemoteFile::close`].
    Write,
    /// Add to the end of the file, which is created when missing (as `"a"`); the result
    /// appears on [`RemoteFile::close`].
    Append,
}

/// Default size of one on-demand read with [`OpenOptions::ranges`].
pub const RANGE_SIZE: u64 = 4 << 20;

/// How to open a URL: a builder, as [`std::fs::OpenOptions`].
///
/// ```no_run
/// use gridos_middleware::file::{Mode, OpenOptions};
/// use gridos_middleware::{Algorithm, CopyOptions, Url};
///
/// let mut copy = CopyOptions::default();
/// copy.parallel = Some(4);
/// copy.verify = Some(Algorithm::Md5);
/// let f = OpenOptions::new()
///     .mode(Mode::Read)
///     .copy_options(copy)
///     .open(&Url::parse("gridftp://host/data/big.dat")?)?;
/// # Ok::<(), gridos_middleware::Error>(())
/// ```
#[derive(Clone)]
pub struct OpenOptions {
    mode: Mode,
    copy: CopyOptions,
    ranges: bool,
    range_size: u64,
    temp_dir: Option<PathBuf>,
    observer: Option<Arc<dyn CopyObserver>>,
    cache: Option<(crate::cache::Cache, String)>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions::new()
    }
}

impl std::fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenOptions")
            .field("mode", &self.mode)
            .field("copy", &self.copy)
            .field("ranges", &self.ranges)
            .field("range_size", &self.range_size)
            .field("temp_dir", &self.temp_dir)
            .field("observer", &self.observer.is_some())
            .field("cache", &self.cache.as_ref().map(|(c, t)| (c.dir(), t)))
            .finish()
    }
}

impl OpenOptions {
    /// [`Mode::Read`], whole-file fetches with default [`CopyOptions`], local copies in the
    /// system's temporary directory.
    pub fn new() -> OpenOptions {
        OpenOptions {
            mode: Mode::Read,
            copy: CopyOptions::default(),
            ranges: false,
            range_size: RANGE_SIZE,
            temp_dir: None,
            observer: None,
            cache: None,
        }
    }

    /// Read, write or append.
    pub fn mode(&mut self, mode: Mode) -> &mut OpenOptions {
        self.mode = mode;
        self
    }

    /// How the whole-file fetch and the upload on close move data (parallel streams, TCP
    /// buffer, block size, `verify`, active mode, …). `recursive`, `resume` and `range`
    /// do not apply to one open file and are refused by [`open`](Self::open).
    pub fn copy_options(&mut self, copy: CopyOptions) -> &mut OpenOptions {
        self.copy = copy;
        self
    }

    /// [`Mode::Read`] on a GridFTP server: read on demand with `ERET`, one
    /// [`range_size`](Self::range_size) block at a time, instead of fetching the whole
    /// file at open. A server without `ERET` makes `open` fail with
    /// [`ErrorKind::Unsupported`]; local paths are always read on demand.
    pub fn ranges(&mut self, on: bool) -> &mut OpenOptions {
        self.ranges = on;
        self
    }

    /// Bytes fetched per on-demand read with [`ranges`](Self::ranges) (default
    /// [`RANGE_SIZE`], at least 1).
    pub fn range_size(&mut self, bytes: u64) -> &mut OpenOptions {
        self.range_size = bytes.max(1);
        self
    }

    /// Where the local copies of remote files live (fetched files, data written before
    /// close); default the system's temporary directory. Choose a file system with room
    /// for the whole file.
    pub fn temp_dir(&mut self, dir: impl Into<PathBuf>) -> &mut OpenOptions {
        self.temp_dir = Some(dir.into());
        self
    }

    /// Reads (and Append's first fetch) go through `cache`, held under `tag`: a file
    /// already cached and still current is not fetched again, and other processes share
    /// it. Without a cache every open fetches into a private temporary file.
    pub fn cache(
        &mut self,
        cache: crate::cache::Cache,
        tag: impl Into<String>,
    ) -> &mut OpenOptions {
        self.cache = Some((cache, tag.into()));
        self
    }

    /// Receives the progress of the fetch at open and of the upload on close.
    pub fn observer(&mut self, observer: Arc<dyn CopyObserver>) -> &mut OpenOptions {
        self.observer = Some(observer);
        self
    }

    /// Opens `url`.
    pub fn open(&self, url: &Url) -> Result<RemoteFile> {
        let what = url.to_string();
        let o = &self.copy;
        if o.recursive || o.resume || o.range.is_some() {
            return Err(Error::new(ErrorKind::InvalidInput, what)
                .detail("recursive, resume and range copy options do not apply to file::open"));
        }
        o.check().map_err(|e| e.context(&what))?;
        let inner = match (url, self.mode) {
            (Url::Local(p), Mode::Read) => Inner::Reading(open_local(p)?),
            (Url::Local(p), mode) => local_writer(p, mode)?,
            (Url::Ftp(u), Mode::Read) if self.ranges => {
                Inner::Ranged(Box::new(Ranged::open(u, self)?))
            }
            (_, Mode::Read) => Inner::Reading(fetch(url, self)?),
            (Url::Ftp(u), mode) => Inner::Upload(Box::new(Upload::open(u, mode, self)?)),
            (Url::Http(_), _) => {
                return Err(Error::new(ErrorKind::InvalidInput, what)
                    .detail("http(s):// URLs can only be opened to read"));
            }
        };
        Ok(RemoteFile {
            url: url.clone(),
            mode: self.mode,
            inner,
        })
    }

    fn observer_or_silent(&self) -> Arc<dyn CopyObserver> {
        self.observer.clone().unwrap_or_else(|| Arc::new(Silent))
    }

    /// A private directory for local copies.
    fn scratch_dir(&self) -> Result<tempfile::TempDir> {
        let mut b = tempfile::Builder::new();
        b.prefix(".gridos-file-");
        match &self.temp_dir {
            Some(d) => b.tempdir_in(d),
            None => b.tempdir(),
        }
        .map_err(|e| Error::from_io("creating a directory for the local copy", e))
    }

    /// What a connection made by this handle (not by the copy engine) shares.
    fn connector(&self) -> Connector<'_> {
        Connector::new(
            &self.copy,
            crate::observe::Progress::new(),
            CancelToken::new(),
            self.observer_or_silent(),
        )
    }
}

/// Opens `url` in `mode` with default [`OpenOptions`].
pub fn open(url: &Url, mode: Mode) -> Result<RemoteFile> {
    OpenOptions::new().mode(mode).open(url)
}

/// The whole file at `url` as a local file to read: where a file opened with [`Mode::Read`]
/// gets its bytes (unless [`OpenOptions::ranges`]).
///
/// Every call copies the file (with [`Copy`](struct@Copy) and the options' copy options)
/// into a file that has no name once this returns and goes away with the handle. This is
/// the one seam a cache of remote files plugs into: a cached path opened read-only serves
/// every caller the same, so callers never write to the returned file (`Append` takes its
/// own writable copy with `download`).
pub(crate) fn fetch(url: &Url, o: &OpenOptions) -> Result<File> {
    if let Some((cache, tag)) = &o.cache {
        let path = cache.add(url, tag, &crate::fetch::Fetcher::new(o.copy.clone()))?;
        return File::open(&path).map_err(|e| Error::from_io(path.display().to_string(), e));
    }
    let dir = o.scratch_dir()?;
    let local = dir.path().join(scratch_name(url));
    download(url, &local, o)?;
    // The directory and the name go now; the open file stays.
    File::open(&local).map_err(|e| Error::from_io(local.display().to_string(), e))
}

/// Copies the whole file at `url` to the new local path `to`.
fn download(url: &Url, to: &Path, o: &OpenOptions) -> Result<CopyReport> {
    Copy::new(url.clone(), Url::Local(to.to_path_buf()))
        .options(o.copy.clone())
        .observer(o.observer_or_silent())
        .run()
}

/// A name for the local copy of `url` (its own name, which messages then show); never one
/// starting with a dot, so never `..`.
fn scratch_name(url: &Url) -> String {
    url.file_name()
        .filter(|n| !n.starts_with('.'))
        .unwrap_or_else(|| "data".into())
}

/// What a handle reads or writes.
enum Inner {
    /// Reads from a local file: a local path itself or a fetched copy.
    Reading(File),
    /// Reads on demand from a GridFTP server.
    Ranged(Box<Ranged>),
    /// Writes to a local file that becomes the local target on close.
    Landing {
        landing: Landing,
        target: PathBuf,
        /// The replaced file's permissions, given to the new one.
        permissions: Option<std::fs::Permissions>,
    },
    /// Writes in place to a local device or pipe (nothing to rename).
    InPlace(File),
    /// Writes to a scratch file uploaded on close.
    Upload(Box<Upload>),
}

/// A URL opened as a file; see the [module documentation](self). Implements [`Read`],
/// [`Write`] and [`Seek`] like [`std::fs::File`]; call [`close`](Self::close) to make what
/// was written appear at the URL.
pub struct RemoteFile {
    url: Url,
    mode: Mode,
    inner: Inner,
}

impl std::fmt::Debug for RemoteFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match &self.inner {
            Inner::Reading(_) => "local copy",
            Inner::Ranged(_) => "ranges",
            Inner::Landing { .. } => "local, renamed on close",
            Inner::InPlace(_) => "local, in place",
            Inner::Upload(_) => "uploaded on close",
        };
        f.debug_struct("RemoteFile")
            .field("url", &self.url)
            .field("mode", &self.mode)
            .field("how", &how)
            .finish()
    }
}

/// What [`RemoteFile::close`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CloseReport {
    /// The URL, without any password.
    pub url: String,
    /// Bytes the URL holds now (`Write`, `Append`); 0 for a file opened to read.
    pub bytes: u64,
    /// The upload of a remote file opened to write or append.
    pub upload: Option<CopyReport>,
}

impl RemoteFile {
    /// The URL this handle was opened on.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The mode it was opened in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The file's length as this handle sees it: the remote size (reads) or what was
    /// written so far (writes).
    pub fn len(&self) -> Result<u64> {
        match &self.inner {
            Inner::Ranged(r) => Ok(r.size),
            _ => local_len(self.local()),
        }
    }

    /// Whether [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> Result<bool> {
        self.len().map(|n| n == 0)
    }

    /// Finishes: a file opened to write or append appears at the URL now, whole and
    /// atomically (see the [module documentation](self)); a file opened to read lets go of
    /// its connection and local copy. An error means the URL kept its old content.
    pub fn close(self) -> Result<CloseReport> {
        let url = self.url.to_string();
        let mut report = CloseReport {
            url: url.clone(),
            bytes: 0,
            upload: None,
        };
        match self.inner {
            Inner::Reading(_) => {}
            Inner::Ranged(r) => {
                // Nothing to lose: QUIT is a courtesy.
                let _ = r.side.client.quit();
            }
            Inner::InPlace(f) => {
                report.bytes = local_len(&f)?;
            }
            Inner::Landing {
                landing,
                target,
                permissions,
            } => {
                let f = landing
                    .file()
                    .try_clone()
                    .map_err(|e| Error::from_io(&url, e))?;
                report.bytes = local_len(&f)?;
                landing.commit(&target)?;
                if let Some(p) = permissions {
                    f.set_permissions(p).map_err(|e| {
                        Error::from_io(&url, e).detail("keeping the replaced file's permissions")
                    })?;
                }
            }
            Inner::Upload(u) => {
                let (bytes, up) = u.finish()?;
                report.bytes = bytes;
                report.upload = Some(up);
            }
        }
        Ok(report)
    }

    /// The local file behind a handle that has one.
    fn local(&self) -> &File {
        match &self.inner {
            Inner::Reading(f) | Inner::InPlace(f) => f,
            Inner::Ranged(r) => &r.block,
            Inner::Landing { landing, .. } => landing.file(),
            Inner::Upload(u) => &u.scratch,
        }
    }

    /// The local file to write to, or `EBADF` for a handle opened to read.
    fn writable(&mut self) -> io::Result<&File> {
        match &self.inner {
            Inner::Reading(_) | Inner::Ranged(_) => Err(bad_fd()),
            _ => Ok(self.local()),
        }
    }
}

impl Read for RemoteFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Reading(f) => f.read(buf),
            Inner::Ranged(r) => r.read(buf).map_err(to_io),
            _ => Err(bad_fd()),
        }
    }
}

impl Write for RemoteFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A pipe or device written in place takes bytes where it takes them.
        let append = self.mode == Mode::Append && !matches!(self.inner, Inner::InPlace(_));
        let mut f = self.writable()?;
        if append {
            // As O_APPEND: every write goes to the end, wherever a seek left the position.
            f.seek(SeekFrom::End(0))?;
        }
        f.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        // The local copy only; the URL changes on close.
        self.writable()?.flush()
    }
}

impl Seek for RemoteFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match &mut self.inner {
            Inner::Ranged(r) => r.seek(pos),
            Inner::Reading(f) | Inner::InPlace(f) => f.seek(pos),
            Inner::Landing { landing, .. } => {
                let mut f = landing.file();
                f.seek(pos)
            }
            Inner::Upload(u) => u.scratch.seek(pos),
        }
    }
}

/// `EBADF`: the error a local file gives for the direction it was not opened in.
fn bad_fd() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

/// Our error as an `io::Error` of the nearest kind; the original stays inside
/// (`get_ref()` + `downcast_ref::<Error>()`).
fn to_io(e: Error) -> io::Error {
    let kind = match e.kind() {
        ErrorKind::NotFound => io::ErrorKind::NotFound,
        ErrorKind::PermissionDenied => io::ErrorKind::PermissionDenied,
        ErrorKind::Network => io::ErrorKind::ConnectionAborted,
        ErrorKind::Timeout => io::ErrorKind::TimedOut,
        ErrorKind::Incomplete => io::ErrorKind::UnexpectedEof,
        ErrorKind::Cancelled => io::ErrorKind::Interrupted,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

fn local_len(f: &File) -> Result<u64> {
    f.metadata()
        .map(|m| m.len())
        .map_err(|e| Error::from_io("stat of the local copy", e))
}

/// A local file opened to read; a directory is refused here, as reads of it would fail.
fn open_local(p: &Path) -> Result<File> {
    let what = || p.display().to_string();
    let f = File::open(p).map_err(|e| Error::from_io(what(), e))?;
    if f.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(Error::new(ErrorKind::IsADirectory, what()));
    }
    Ok(f)
}

/// A local path opened to write or append: a temporary file in its directory (renamed
/// over it on close), or the path itself when it is a device or pipe.
fn local_writer(p: &Path, mode: Mode) -> Result<Inner> {
    let what = || p.display().to_string();
    let existing = match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => return Err(Error::new(ErrorKind::IsADirectory, what())),
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::from_io(what(), e)),
    };
    if let Some(mut dev) = existing_device(p)? {
        if mode == Mode::Append {
            // A pipe cannot seek; a device that can starts at its end.
            let _ = dev.seek(SeekFrom::End(0));
        }
        return Ok(Inner::InPlace(dev));
    }
    let landing = Landing::new(p).map_err(|e| e.context(what()))?;
    if mode == Mode::Append && existing.is_some() {
        let old = File::open(p).map_err(|e| Error::from_io(what(), e))?;
        gridos_io::file_copy(&old, 0, landing.file(), 0, None)
            .map_err(|e| Error::from_gridos_io(what(), e).detail("copying the current content"))?;
        let mut f = landing.file();
        f.seek(SeekFrom::End(0))
            .map_err(|e| Error::from_io(what(), e))?;
    }
    Ok(Inner::Landing {
        landing,
        target: p.to_path_buf(),
        permissions: existing.map(|m| m.permissions()),
    })
}

/// A remote file read on demand with `ERET`, one block at a time.
struct Ranged {
    side: FtpSide,
    grid: GridOptions,
    url: FtpUrl,
    /// The file's size when it was opened.
    size: u64,
    pos: u64,
    /// Scratch file holding the last block fetched, at offset 0.
    block: File,
    /// The file's range in `block`: offset and length.
    held: Option<(u64, u64)>,
    block_size: u64,
    options: OpenOptions,
}

impl Ranged {
    fn open(u: &FtpUrl, o: &OpenOptions) -> Result<Ranged> {
        let what = u.display();
        let obs = o.observer_or_silent();
        let mut side = o.connector().side(u.clone(), &*obs)?;
        let grid = match (&side.plan.grid, side.client.features().eret) {
            (Some(g), true) => g.clone(),
            _ => {
                let _ = side.client.quit();
                return Err(Error::new(ErrorKind::Unsupported, what).detail(
                    "ranges(true) reads with ERET: the server needs the GridFTP extensions \
                     (MODE E, ERET) and the copy options must not ask for MODE Z",
                ));
            }
        };
        let entry = side
            .client
            .stat(&u.path)
            .map_err(|e| Error::from_ftp(&what, e))?
            .ok_or_else(|| Error::new(ErrorKind::NotFound, &what))?;
        match entry.kind {
            EntryKind::Dir => return Err(Error::new(ErrorKind::IsADirectory, what)),
            EntryKind::File | EntryKind::Link => {}
            _ => return Err(crate::landing::not_a_file(&what)),
        }
        let size = match entry.size {
            Some(n) => n,
            None => side
                .client
                .size(&u.path)
                .map_err(|e| Error::from_ftp(&what, e).detail("SIZE"))?,
        };
        let block = match &o.temp_dir {
            Some(d) => tempfile::tempfile_in(d),
            None => tempfile::tempfile(),
        }
        .map_err(|e| Error::from_io("scratch file for ranges", e))?;
        Ok(Ranged {
            side,
            grid,
            url: u.clone(),
            size,
            pos: 0,
            block,
            held: None,
            block_size: o.range_size,
            options: o.clone(),
        })
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() || self.pos >= self.size {
            return Ok(0);
        }
        let (start, len) = match self.held {
            Some((s, l)) if (s..s + l).contains(&self.pos) => (s, l),
            _ => self.fetch_block()?,
        };
        let n = (buf.len() as u64).min(start + len - self.pos) as usize;
        let got = self
            .block
            .read_at(&mut buf[..n], self.pos - start)
            .map_err(|e| Error::from_io("reading the fetched block", e))?;
        self.pos += got as u64;
        Ok(got)
    }

    /// Fetches the block that holds `pos`; on a broken connection, logs in again once.
    fn fetch_block(&mut self) -> Result<(u64, u64)> {
        let start = self.pos - self.pos % self.block_size;
        let len = self.block_size.min(self.size - start);
        self.held = None;
        let r = match self.eret(start, len) {
            Err(e) if matches!(e.kind(), ErrorKind::Network | ErrorKind::Timeout) => {
                let obs = self.options.observer_or_silent();
                let side = self.options.connector().side(self.url.clone(), &*obs)?;
                let old = std::mem::replace(&mut self.side, side);
                drop(old);
                self.eret(start, len)
            }
            r => r,
        }?;
        if r != len {
            return Err(Error::new(ErrorKind::Incomplete, self.url.display()).detail(format!(
                "ERET of {len} bytes at {start} brought {r} (did the file change since it was opened?)"
            )));
        }
        self.held = Some((start, len));
        Ok((start, len))
    }

    fn eret(&mut self, start: u64, len: u64) -> Result<u64> {
        self.side
            .client
            .get_extended(
                &self.url.path,
                &self.block,
                0,
                Some((start, len)),
                None,
                &self.grid,
            )
            .map(|r| r.bytes)
            .map_err(|e| {
                Error::from_ftp(self.url.display(), e).detail(format!("ERET {start}+{len}"))
            })
    }

    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let to = match pos {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let to = to.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid seek to a negative or overflowing position",
            )
        })?;
        self.pos = to;
        Ok(to)
    }
}

/// A remote file written locally and uploaded on close.
struct Upload {
    url: FtpUrl,
    /// The control connection of the open: checks at open, rename on close.
    client: Client,
    /// The local copy, `dir/NAME`.
    scratch: File,
    scratch_path: PathBuf,
    /// Holds the scratch file's directory (removed on drop).
    _dir: tempfile::TempDir,
    options: OpenOptions,
}

impl Upload {
    fn open(u: &FtpUrl, mode: Mode, o: &OpenOptions) -> Result<Upload> {
        let what = u.display();
        let (_, name) = split_remote(&u.path);
        if name.is_empty() || name == "." || name == ".." || name == "~" {
            return Err(Error::new(ErrorKind::InvalidInput, what).detail("names no file"));
        }
        let mut client = o.connector().login_and_stat(u, o.copy.active)?;
        let ftp = |e| Error::from_ftp(&what, e);
        match client.stat(&u.path).map_err(ftp)? {
            Some(e) if e.kind == EntryKind::Dir => {
                let _ = client.quit();
                return Err(Error::new(ErrorKind::IsADirectory, what));
            }
            Some(_) => {}
            None => {
                // As O_CREAT: the directory must exist.
                let (dir, _) = split_remote(&u.path);
                let missing = match dir {
                    Some(d) => client.stat(d).map_err(ftp)?.is_none(),
                    None => false,
                };
                if missing {
                    let _ = client.quit();
                    return Err(Error::new(ErrorKind::NotFound, what)
                        .detail("the directory to create the file in does not exist"));
                }
            }
        }
        let dir = o.scratch_dir()?;
        let scratch_path = dir.path().join(scratch_name(&Url::Ftp(u.clone())));
        if mode == Mode::Append {
            match download(&Url::Ftp(u.clone()), &scratch_path, o) {
                Ok(_) => {}
                // A missing file appends to nothing.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let mut scratch = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&scratch_path)
            .map_err(|e| Error::from_io(scratch_path.display().to_string(), e))?;
        scratch
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::from_io(scratch_path.display().to_string(), e))?;
        Ok(Upload {
            url: u.clone(),
            client,
            scratch,
            scratch_path,
            _dir: dir,
            options: o.clone(),
        })
    }

    /// Uploads the scratch file beside the target and renames it over the target; on any
    /// failure the temporary name is removed. Returns the bytes uploaded and the report.
    fn finish(self) -> Result<(u64, CopyReport)> {
        let what = self.url.display();
        let len = local_len(&self.scratch)?;
        let tmp = temp_name(&self.url.path);
        let sent = Copy::new(
            Url::Local(self.scratch_path.clone()),
            Url::Ftp(self.url.with_path(&tmp)),
        )
        .options(self.options.copy.clone())
        .observer(self.options.observer_or_silent())
        .run();
        // The control connection of the open may have timed out meanwhile.
        let mut client = self.client;
        if client.noop().is_err() {
            client = self
                .options
                .connector()
                .login(&self.url, self.options.copy.active)
                .map_err(|e| e.context(format!("{what}: logging in again to rename {tmp}")))?;
        }
        let report = match sent {
            Ok(r) => r,
            Err(e) => {
                let _ = client.delete(&tmp);
                let _ = client.quit();
                return Err(e.context(format!("{what}: upload on close")));
            }
        };
        if let Err(e) = client.rename(&tmp, &self.url.path) {
            let _ = client.delete(&tmp);
            let _ = client.quit();
            return Err(Error::from_ftp(&what, e)
                .detail(format!("putting the upload in place (RNFR {tmp}, RNTO)")));
        }
        let _ = client.quit();
        Ok((len, report))
    }
}

/// `dir/name` split on the last `/`: `(Some("dir"), "name")`, `(None, "name")` for a bare
/// name (the login directory), `(Some("/"), "name")` at the root.
fn split_remote(path: &str) -> (Option<&str>, &str) {
    match path.rsplit_once('/') {
        Some(("", name)) => (Some("/"), name),
        Some((dir, name)) => (Some(dir), name),
        None => (None, path),
    }
}

/// `.NAME.gridos-XXXXXXXX.part` beside `path` on the server.
fn temp_name(path: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded randomly per process and varies per instance.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    let tag = h.finish() as u32;
    match split_remote(path) {
        (Some("/"), name) => format!("/.{name}.gridos-{tag:08x}.part"),
        (Some(dir), name) => format!("{dir}/.{name}.gridos-{tag:08x}.part"),
        (None, name) => format!(".{name}.gridos-{tag:08x}.part"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_move_between_threads() {
        fn send<T: Send>() {}
        send::<RemoteFile>();
        send::<OpenOptions>();
    }

    #[test]
    fn temporary_names_sit_beside_the_target() {
        assert_eq!(split_remote("a/b/c"), (Some("a/b"), "c"));
        assert_eq!(split_remote("/c"), (Some("/"), "c"));
        assert_eq!(split_remote("c"), (None, "c"));
        let t = temp_name("dir/f.dat");
        assert!(
            t.starts_with("dir/.f.dat.gridos-") && t.ends_with(".part"),
            "{t}"
        );
        assert!(temp_name("/f").starts_with("/.f.gridos-"));
        assert!(temp_name("f").starts_with(".f.gridos-"));
        assert_ne!(temp_name("f"), temp_name("f"));
    }

    #[test]
    fn wrong_direction_is_ebadf_and_options_that_do_not_apply_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"abc").unwrap();
        let url = Url::Local(p.clone());
        let mut r = open(&url, Mode::Read).unwrap();
        assert_eq!(r.write(b"z").unwrap_err().raw_os_error(), Some(libc::EBADF));
        let mut w = open(&url, Mode::Write).unwrap();
        let mut b = [0u8; 1];
        assert_eq!(
            w.read(&mut b).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
        drop(w);
        assert_eq!(std::fs::read(&p).unwrap(), b"abc");
        let copy = CopyOptions {
            resume: true,
            ..CopyOptions::default()
        };
        let e = OpenOptions::new()
            .copy_options(copy)
            .open(&url)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = open(&Url::Local(dir.path().into()), Mode::Read).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::IsADirectory);
        let e = open(&Url::Local(dir.path().into()), Mode::Write).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::IsADirectory);
    }
}
