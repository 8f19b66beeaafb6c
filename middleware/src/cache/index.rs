//! The cache index: one JSON file naming every entry, its validator and its tags, plus the
//! disk budget. Changed only under the index lock, replaced atomically (write a temporary
//! file, fsync, rename, fsync the directory), so a reader without the lock — or a process
//! that starts after a crash — sees either the old or the new index, never half of one.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{Validator, state_error};
use crate::{Error, ErrorKind, Result};

/// Format version written; a different one is refused rather than misread.
const VERSION: u32 = 1;

/// The whole index.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Index {
    pub version: u32,
    /// Bytes untagged entries may fill; `None`: untagged entries are not kept.
    pub budget: Option<u64>,
    /// Entries by key (hex SHA-256 of the URL's display form).
    pub entries: BTreeMap<String, Record>,
}

impl Default for Index {
    fn default() -> Index {
        Index {
            version: VERSION,
            budget: None,
            entries: BTreeMap::new(),
        }
    }
}

/// One cached URL.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The URL's display form (never a password).
    pub url: String,
    /// Bytes of the cached file.
    pub size: u64,
    /// What the origin said when the file was fetched.
    pub origin_size: Option<u64>,
    pub origin_modified: Option<SystemTime>,
    /// Tags holding the entry; empty: kept only for the budget.
    pub tags: BTreeSet<String>,
    /// Last `add` that returned this entry.
    pub last_used: SystemTime,
}

impl Record {
    /// Whether the cached copy still matches the origin. A field either side cannot tell is
    /// not compared.
    pub fn matches(&self, v: &Validator) -> bool {
        fn differ<T: PartialEq>(a: Option<T>, b: Option<T>) -> bool {
            matches!((a, b), (Some(x), Some(y)) if x != y)
        }
        !differ(self.origin_size, v.size) && !differ(self.origin_modified, v.modified)
    }
}

/// Where the index lives in a cache directory.
pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join("index.json")
}

/// Reads the index; a cache that never wrote one is empty.
pub(crate) fn load(dir: &Path) -> Result<Index> {
    let p = path(dir);
    let text = match std::fs::read(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Index::default()),
        Err(e) => return Err(state_error(format!("cache index {}", p.display()), e)),
    };
    let index: Index = serde_json::from_slice(&text).map_err(|e| {
        Error::new(ErrorKind::Cache, format!("cache index {}", p.display()))
            .detail("unreadable")
            .source(e)
    })?;
    if index.version != VERSION {
        return Err(
            Error::new(ErrorKind::Cache, format!("cache index {}", p.display())).detail(format!(
                "format version {} (this gridos reads {VERSION})",
                index.version
            )),
        );
    }
    Ok(index)
}

/// Replaces the index atomically. The caller holds the index lock, so the temporary name is
/// its alone.
pub(crate) fn store(dir: &Path, index: &Index) -> Result<()> {
    let p = path(dir);
    let what = || format!("writing cache index {}", p.display());
    let tmp = dir.join("index.json.tmp");
    let text = serde_json::to_vec_pretty(index).map_err(|e| {
        Error::new(ErrorKind::Cache, what())
            .detail("serialising")
            .source(e)
    })?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| state_error(what(), e))?;
    f.write_all(&text)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::from_io(what(), e))?;
    drop(f);
    std::fs::rename(&tmp, &p).map_err(|e| Error::from_io(what(), e))?;
    super::sync_dir(dir)
}
