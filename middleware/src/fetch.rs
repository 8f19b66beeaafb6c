//! Whole-file access to one URL without a destination URL: what a source is (size,
//! modification time) and its bytes into an open file. The cache's origin and
//! [`file`](crate::file) handles are built on this; it moves data through the same
//! endpoints and plans as [`Copy`](crate::Copy).

use crate::endpoint::{Connector, FtpSide, HttpSide};
use crate::observe::Silent;
use crate::options::CopyOptions;
use crate::url::{FtpUrl, Url};
use crate::{Error, ErrorKind, Result};
use gridos_ftp::client::EntryKind;
use gridos_io::CancelToken;
use std::fs::File;
use std::sync::Arc;
use std::time::SystemTime;

/// What a source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceInfo {
    /// Size in bytes, when the server says.
    pub size: Option<u64>,
    /// Last modification, when the server says.
    pub modified: Option<SystemTime>,
}

/// Fetches URLs with one set of options (connections are made per call).
pub struct Fetcher {
    options: CopyOptions,
    cancel: CancelToken,
}

impl Default for Fetcher {
    fn default() -> Self {
        Fetcher::new(CopyOptions::default())
    }
}

impl Fetcher {
    /// A fetcher that plans transfers with `options` (parallel streams, verify, …).
    pub fn new(options: CopyOptions) -> Fetcher {
        Fetcher {
            options,
            cancel: CancelToken::new(),
        }
    }

    /// Cancels fetches in progress and to come.
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    fn side(&self, u: &FtpUrl) -> Result<FtpSide> {
        let conn = Connector::new(
            &self.options,
            crate::observe::Progress::new(),
            self.cancel.clone(),
            Arc::new(Silent),
        );
        conn.side(u.clone(), &Silent)
    }

    /// Size and modification time of a file.
    pub fn info(&self, url: &Url) -> Result<SourceInfo> {
        let missing = || Error::new(ErrorKind::NotFound, url.to_string());
        match url {
            Url::Local(p) => {
                let m = std::fs::metadata(p).map_err(|e| Error::from_io(url.to_string(), e))?;
                if !m.is_file() {
                    return Err(Error::new(ErrorKind::NotAFile, url.to_string()));
                }
                Ok(SourceInfo {
                    size: Some(m.len()),
                    modified: m.modified().ok(),
                })
            }
            Url::Ftp(u) => {
                let mut f = self.side(u)?;
                let e = f
                    .client
                    .stat(&u.path)
                    .map_err(|e| Error::from_ftp(u.display(), e))?
                    .ok_or_else(missing)?;
                let _ = f.client.quit();
                if e.kind != EntryKind::File {
                    return Err(Error::new(ErrorKind::NotAFile, u.display()));
                }
                Ok(SourceInfo {
                    size: e.size,
                    modified: e.modified,
                })
            }
            Url::Http(u) => {
                let h = HttpSide::open(u.clone())?;
                Ok(SourceInfo {
                    size: h.stat.size,
                    modified: h.stat.modified,
                })
            }
        }
    }

    /// The whole file at `url` into `into` from offset 0; returns the bytes written. The
    /// byte count is checked against the source's size.
    pub fn fetch(&self, url: &Url, into: &File) -> Result<u64> {
        let what = url.to_string();
        let n = match url {
            Url::Local(p) => {
                let src = File::open(p).map_err(|e| Error::from_io(what.clone(), e))?;
                gridos_io::file_copy(&src, 0, into, 0, None)
                    .map_err(|e| Error::from_gridos_io(what.clone(), e))?
                    .bytes
            }
            Url::Ftp(u) => {
                let mut f = self.side(u)?;
                let r = match f.plan.grid.clone() {
                    Some(g) => f.client.get_extended(&u.path, into, 0, None, None, &g),
                    None => f.client.get(&u.path, into, 0, 0),
                }
                .map_err(|e| Error::from_ftp(what.clone(), e))?;
                if let Some(alg) = self.options.verify {
                    crate::verify::verify_file(&mut f.client, alg, into, 0, &u.path, 0, r.bytes)
                        .map_err(|e| e.context(&what))?;
                }
                let _ = f.client.quit();
                r.bytes
            }
            Url::Http(u) => {
                let h = HttpSide::open(u.clone())?;
                let part = crate::http::Part::default();
                let got = h
                    .source
                    .get(u, into, &part, None, Some(&self.cancel))
                    .map_err(|e| e.context(&what))?;
                if let Some(want) = h.stat.size.filter(|&w| w != got.bytes) {
                    return Err(Error::new(ErrorKind::Incomplete, what)
                        .detail(format!("{} bytes arrived, {want} expected", got.bytes)));
                }
                got.bytes
            }
        };
        Ok(n)
    }
}

/// The cache fetches through the same endpoints as copies.
impl crate::cache::Origin for Fetcher {
    fn validator(&self, url: &Url) -> Result<crate::cache::Validator> {
        let i = self.info(url)?;
        Ok(crate::cache::Validator {
            size: i.size,
            modified: i.modified,
        })
    }

    fn fetch(&self, url: &Url, into: &File) -> Result<u64> {
        Fetcher::fetch(self, url, into)
    }
}
