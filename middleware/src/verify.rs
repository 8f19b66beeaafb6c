//! `--verify`: a file's checksum here compared with the server's (CKSM), and the size
//! checks every transfer ends with.

use crate::{Error, ErrorKind, Result};
use gridos_ftp::checksum::{Algorithm, file_checksum};
use gridos_ftp::client::Client;
use std::fs::File;

/// Compares `len` bytes of a local file from `local_off` with the server's CKSM of the
/// remote file from `remote_off`; returns the checksum.
pub fn verify_file(
    c: &mut Client,
    alg: Algorithm,
    local: &File,
    local_off: u64,
    remote: &str,
    remote_off: u64,
    len: u64,
) -> Result<String> {
    let mine = file_checksum(local, alg, local_off, Some(len), None).map_err(|e| {
        Error::new(ErrorKind::Io, "")
            .detail("local checksum")
            .source(e)
    })?;
    let theirs = c
        .checksum(remote, alg, remote_off, Some(len))
        .map_err(|e| {
            Error::from_ftp("", e).detail(format!("server checksum (CKSM {})", alg.name()))
        })?;
    if mine != theirs {
        return Err(Error::new(ErrorKind::ChecksumMismatch, "").detail(format!(
            "checksum mismatch ({}): local {mine}, server {theirs}",
            alg.name()
        )));
    }
    Ok(mine)
}

/// Checks the server offers `alg` for CKSM.
pub fn need_cksm(c: &Client, alg: Algorithm) -> Result<()> {
    if c.features().checksums.iter().any(|a| a == alg.name()) {
        return Ok(());
    }
    let offers = if c.features().checksums.is_empty() {
        "none".to_string()
    } else {
        c.features().checksums.join(", ")
    };
    Err(Error::new(ErrorKind::Unsupported, "").detail(format!(
        "--verify: the server does not offer CKSM {} (it offers: {offers})",
        alg.name()
    )))
}

/// Checks the remote file's size when the server can tell.
pub fn verify_remote(c: &mut Client, d: &str, want: u64) -> Result<()> {
    if !c.features().size {
        return Ok(());
    }
    match c.size(d) {
        Ok(n) if n == want => Ok(()),
        Ok(n) => Err(Error::new(ErrorKind::Incomplete, "").detail(format!(
            "incomplete upload: the server has {n} bytes, {want} expected"
        ))),
        Err(e) => Err(Error::from_ftp("", e).detail("checking the upload's size")),
    }
}

/// Remote size, `None` when the file does not exist or the server cannot tell.
pub fn remote_size(c: &mut Client, p: &str) -> Result<Option<u64>> {
    match c.size(p) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.reply_code().is_some() => Ok(None),
        Err(e) => Err(Error::from_ftp("", e)),
    }
}
