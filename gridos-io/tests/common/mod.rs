//! Helpers shared by the integration tests.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};

/// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn file_with(data: &[u8]) -> File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(data).unwrap();
    f
}

pub fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub fn file_sha(f: &mut File, offset: u64, len: u64) -> [u8; 32] {
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = f.read(&mut buf[..left.min(1 << 20) as usize]).unwrap();
        assert!(n > 0, "file shorter than expected");
        h.update(&buf[..n]);
        left -= n as u64;
    }
    h.finalize().into()
}

/// A connected loopback pair (client, server side).
pub fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
