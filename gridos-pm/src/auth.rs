//! HMAC-SHA256 challenge-response, mutual.
//!
//! The server sends a fresh random challenge in its `Hello`. The client answers with its own
//! nonce and `HMAC(key, "gridos-auth-v1 client" | challenge | nonce | client | server)`; the
//! server checks it (constant time) and proves itself with
//! `HMAC(key, "gridos-auth-v1 server" | nonce | challenge | server | client)`. The key never
//! crosses the wire and each connection's challenge is new (32 random bytes), so a recorded
//! `Auth` is useless on any other connection; the two labels keep a server's proof from
//! passing as a client's. The node also refuses a client nonce it has seen among its last
//! [`crate::node::NONCE_LOG`] successful authentications.
//!
//! What it does not do: it authenticates the start of a connection, not the frames after it
//! (no integrity, no confidentiality), so an attacker on the path can take over an
//! authenticated TCP connection or relay a handshake. Across untrusted networks, carry node
//! traffic over a tunnel that protects it (WireGuard, IPsec, SSH).

use crate::error::{Error, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;

type HmacSha256 = Hmac<Sha256>;

/// Shortest key accepted (bytes).
pub const MIN_KEY_LEN: usize = 16;

/// `n` random bytes as hex.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("the kernel's random source is available");
    to_hex(&b)
}

/// Lower-case hex.
pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parses hex; `None` if malformed.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 256 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn mac(key: &[u8], parts: &[&str]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        m.update(&(p.len() as u32).to_be_bytes());
        m.update(p.as_bytes());
    }
    m
}

/// The client's proof.
pub fn client_mac(key: &[u8], challenge: &str, nonce: &str, client: &str, server: &str) -> String {
    to_hex(
        &mac(
            key,
            &["gridos-auth-v1 client", challenge, nonce, client, server],
        )
        .finalize()
        .into_bytes(),
    )
}

/// The server's proof.
pub fn server_mac(key: &[u8], challenge: &str, nonce: &str, client: &str, server: &str) -> String {
    to_hex(
        &mac(
            key,
            &["gridos-auth-v1 server", nonce, challenge, server, client],
        )
        .finalize()
        .into_bytes(),
    )
}

/// Checks a client's proof in constant time.
pub fn verify_client(
    key: &[u8],
    challenge: &str,
    nonce: &str,
    client: &str,
    server: &str,
    got: &str,
) -> bool {
    verify(
        key,
        &["gridos-auth-v1 client", challenge, nonce, client, server],
        got,
    )
}

/// Checks a server's proof in constant time.
pub fn verify_server(
    key: &[u8],
    challenge: &str,
    nonce: &str,
    client: &str,
    server: &str,
    got: &str,
) -> bool {
    verify(
        key,
        &["gridos-auth-v1 server", nonce, challenge, server, client],
        got,
    )
}

/// Checks a hex-encoded MAC over `parts` in constant time.
fn verify(key: &[u8], parts: &[&str], got: &str) -> bool {
    from_hex(got).is_some_and(|got| mac(key, parts).verify_slice(&got).is_ok())
}

/// Reads a key file: its bytes (a trailing newline removed), at least 16 of them; refused if
/// other users may read it.
pub fn load_key(path: &Path) -> Result<Vec<u8>> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::Config(format!("key file {}: {e}", path.display())))?;
    if meta.mode() & 0o004 != 0 {
        return Err(Error::Config(format!(
            "key file {} is readable by every user; chmod 600 it",
            path.display()
        )));
    }
    let mut k = std::fs::read(path)
        .map_err(|e| Error::Config(format!("key file {}: {e}", path.display())))?;
    while k.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
        k.pop();
    }
    if k.len() < MIN_KEY_LEN {
        return Err(Error::Config(format!(
            "key file {} holds {} bytes; at least {MIN_KEY_LEN} are needed",
            path.display(),
            k.len()
        )));
    }
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        let k = b"0123456789abcdef";
        let m = client_mac(k, "c", "n", "cl", "sv");
        assert!(verify_client(k, "c", "n", "cl", "sv", &m));
        assert!(!verify_client(
            b"0123456789abcdeX",
            "c",
            "n",
            "cl",
            "sv",
            &m
        ));
        assert!(!verify_client(k, "c2", "n", "cl", "sv", &m));
        assert!(!verify_client(k, "c", "n", "cl", "sv", "zz"));
        let s = server_mac(k, "c", "n", "cl", "sv");
        assert_ne!(s, m);
        assert!(verify_server(k, "c", "n", "cl", "sv", &s));
        assert_eq!(from_hex("0aff"), Some(vec![10, 255]));
        assert_eq!(from_hex("0g"), None);
    }
}
