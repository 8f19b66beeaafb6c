//! Where a copy reads from or writes to: a local path or a URL. The GASS-like uniform access
//! of the middleware starts here; this build understands local paths and `file://` URLs.

use std::path::PathBuf;

/// A parsed copy endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A path on this machine (from a bare path or a `file://` URL).
    Local(PathBuf),
}

/// Why an endpoint could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LocationError {
    /// A URL scheme this build cannot serve.
    #[error(
        "{0}:// URLs are not supported by this build of gridos (supported: local paths, file://)"
    )]
    UnsupportedScheme(String),
    /// A `file://` URL naming another host.
    #[error(
        "file:// URL names host {0:?}; only local files (file:///path or file://localhost/path) are possible"
    )]
    RemoteFileHost(String),
    /// Malformed percent-encoding or an empty path.
    #[error("invalid URL {0:?}: {1}")]
    Invalid(String, &'static str),
}

impl Location {
    /// Parses `text` as a URL when it has a `scheme://` prefix, else as a local path.
    pub fn parse(text: &str) -> Result<Location, LocationError> {
        let Some((scheme, rest)) = text.split_once("://") else {
            if text.is_empty() {
                return Err(LocationError::Invalid(text.into(), "empty path"));
            }
            return Ok(Location::Local(PathBuf::from(text)));
        };
        if !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            || scheme.is_empty()
        {
            // Not a scheme: a relative path that happens to contain "://".
            return Ok(Location::Local(PathBuf::from(text)));
        }
        match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                let (host, path) = match rest.find('/') {
                    Some(i) => rest.split_at(i),
                    None => return Err(LocationError::Invalid(text.into(), "no path")),
                };
                if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
                    return Err(LocationError::RemoteFileHost(host.into()));
                }
                let decoded = percent_decode(path)
                    .ok_or_else(|| LocationError::Invalid(text.into(), "bad percent-encoding"))?;
                use std::os::unix::ffi::OsStringExt;
                Ok(Location::Local(PathBuf::from(
                    std::ffi::OsString::from_vec(decoded),
                )))
            }
            other => Err(LocationError::UnsupportedScheme(other.into())),
        }
    }
}

/// RFC 3986 percent-decoding to raw bytes (paths need not be UTF-8). A NUL byte is refused.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            let v = u8::from_str_radix(hex, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    (!out.contains(&0)).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_file_urls() {
        assert_eq!(Location::parse("a/b"), Ok(Location::Local("a/b".into())));
        assert_eq!(
            Location::parse("file:///tmp/x%20y"),
            Ok(Location::Local("/tmp/x y".into()))
        );
        assert_eq!(
            Location::parse("FILE://localhost/etc/hosts"),
            Ok(Location::Local("/etc/hosts".into()))
        );
        assert!(matches!(
            Location::parse("file://elsewhere/x"),
            Err(LocationError::RemoteFileHost(_))
        ));
        assert!(matches!(
            Location::parse("file:///x%zz"),
            Err(LocationError::Invalid(..))
        ));
        assert!(matches!(
            Location::parse("file:///x%00"),
            Err(LocationError::Invalid(..))
        ));
        assert!(matches!(
            Location::parse("http://h/x"),
            Err(LocationError::UnsupportedScheme(_))
        ));
        assert!(Location::parse("").is_err());
    }
}
