//! The password file: one `user:phc-hash` line per user (Argon2id PHC strings, salted),
//! `#` comments and blank lines ignored. Written atomically with mode 0600.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use super::error::{Error, Result};

/// Users and their password hashes.
#[derive(Debug, Clone, Default)]
pub struct PasswordFile {
    users: HashMap<String, String>,
}

/// Hashes `password` with Argon2id and a fresh 16-byte salt from `/dev/urandom`.
pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut salt))
        .map_err(|e| Error::io("read /dev/urandom", e))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::Passwd(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Passwd(e.to_string()))
}

fn check_user(user: &str) -> Result<()> {
    if user.is_empty()
        || user.len() > 256
        || user
            .chars()
            .any(|c| c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(Error::Passwd(format!(
            "invalid user name {user:?} (no ':', spaces or control characters)"
        )));
    }
    Ok(())
}

impl PasswordFile {
    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<PasswordFile> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(Error::Passwd(format!("line {}: expected user:hash", i + 1)));
            };
            check_user(user)?;
            PasswordHash::new(hash).map_err(|e| Error::Passwd(format!("line {}: {e}", i + 1)))?;
            users.insert(user.to_string(), hash.to_string());
        }
        Ok(PasswordFile { users })
    }

    /// Reads a password file.
    pub fn load(path: &Path) -> Result<PasswordFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        Self::parse(&text)
    }

    /// Adds or replaces `user` (hashing `password`).
    pub fn set(&mut self, user: &str, password: &str) -> Result<()> {
        check_user(user)?;
        self.users
            .insert(user.to_string(), hash_password(password)?);
        Ok(())
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Checks a password. Unknown users cost the same time as known ones.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        static DUMMY: OnceLock<String> = OnceLock::new();
        let (hash, known) = match self.users.get(user) {
            Some(h) => (h.as_str(), true),
            None => (
                DUMMY
                    .get_or_init(|| hash_password("gridos-dummy").unwrap_or_default())
                    .as_str(),
                false,
            ),
        };
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && known
    }

    /// The file's text, users sorted.
    pub fn to_text(&self) -> String {
        let mut v: Vec<_> = self.users.iter().collect();
        v.sort();
        v.iter().map(|(u, h)| format!("{u}:{h}\n")).collect()
    }

    /// Writes the file atomically (a temporary file in the same directory, mode 0600,
    /// synced, renamed over `path`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| Error::Passwd(format!("{} is not a file name", path.display())))?;
        let tmp = dir.join(format!(
            ".{}.tmp{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(self.to_text().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(format!("write {}", path.display()), e)
        })
    }

    /// `gridos passwd FILE USER`: load `path` if it exists, set `user`, save.
    pub fn update_file(path: &Path, user: &str, password: &str) -> Result<()> {
        let mut pf = if path.exists() {
            Self::load(path)?
        } else {
            PasswordFile::default()
        };
        pf.set(user, password)?;
        pf.save(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verify_roundtrip_and_file() {
        let mut pf = PasswordFile::default();
        pf.set("alice", "s3cret").unwrap();
        assert!(pf.verify("alice", "s3cret"));
        assert!(!pf.verify("alice", "wrong"));
        assert!(!pf.verify("bob", "s3cret"));
        let text = pf.to_text();
        assert!(text.starts_with("alice:$argon2id$"));
        let back = PasswordFile::parse(&text).unwrap();
        assert!(back.verify("alice", "s3cret"));
        assert!(PasswordFile::parse("alice\n").is_err());
        assert!(pf.set("a:b", "x").is_err());
    }
}
