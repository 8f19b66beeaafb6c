//! Where a copy reads from or writes to: a local path or a URL. The GASS-like uniform access
//! of the middleware starts here; this build understands local paths, `file://` and
//! `ftp://[user[:password]@]host[:port]/path` and `gridftp://…` URLs (an FTP server spoken to
//! with the GridFTP extensions; default port 2811). `gsiftp://` needs GSI security, which
//! gridos does not carry.

use std::path::PathBuf;

/// A parsed copy endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A path on this machine (from a bare path or a `file://` URL).
    Local(PathBuf),
    /// A file or directory on an FTP server.
    Ftp(FtpUrl),
}

/// A parsed `ftp://` URL, percent-decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct FtpUrl {
    /// User name (`anonymous` when the URL has none).
    pub user: String,
    /// Password (`None` when the URL has none).
    pub password: Option<String>,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Control port (default 21).
    pub port: u16,
    /// Path on the server, always starting with `/` (taken as absolute).
    pub path: String,
    /// The URL said `gridftp://`: the server must offer the GridFTP extensions (MODE E).
    pub gridftp: bool,
}

impl FtpUrl {
    /// `host:port`, with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// This URL with another path, without the password.
    pub fn display_path(&self, path: &str) -> String {
        FtpUrl {
            path: path.to_string(),
            ..self.clone()
        }
        .display()
    }

    /// The URL again, without the password.
    pub fn display(&self) -> String {
        let user = if self.user == "anonymous" {
            String::new()
        } else {
            format!("{}@", self.user)
        };
        let scheme = if self.gridftp { "gridftp" } else { "ftp" };
        format!("{scheme}://{user}{}{}", self.authority(), self.path)
    }
}

impl std::fmt::Debug for FtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

/// Why an endpoint could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LocationError {
    /// A URL scheme this build cannot serve.
    #[error(
        "{0}:// URLs are not supported by this build of gridos (supported: local paths, file://, ftp://)"
    )]
    UnsupportedScheme(String),
    /// A scheme planned for a later release.
    #[error("{0}:// URLs are not supported yet (supported: local paths, file://, ftp://)")]
    NotYetSupported(String),
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
            "ftp" => parse_ftp(text, rest, 21).map(Location::Ftp),
            "gridftp" => {
                parse_ftp(text, rest, 2811).map(|u| Location::Ftp(FtpUrl { gridftp: true, ..u }))
            }
            "gsiftp" => Err(LocationError::NotYetSupported(scheme.into())),
            other => Err(LocationError::UnsupportedScheme(other.into())),
        }
    }
}

fn parse_ftp(text: &str, rest: &str, default_port: u16) -> Result<FtpUrl, LocationError> {
    let invalid = |why| LocationError::Invalid(text.into(), why);
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let text_of = |s: &str| -> Result<String, LocationError> {
        let bytes = percent_decode(s).ok_or_else(|| invalid("bad percent-encoding"))?;
        let s = String::from_utf8(bytes).map_err(|_| invalid("not UTF-8 after decoding"))?;
        if s.contains(['\r', '\n']) {
            return Err(invalid("line break in URL"));
        }
        Ok(s)
    };
    let (user, password) = match userinfo {
        None => ("anonymous".to_string(), None),
        Some(u) => match u.split_once(':') {
            Some((u, p)) => (text_of(u)?, Some(text_of(p)?)),
            None => (text_of(u)?, None),
        },
    };
    let user = if user.is_empty() {
        "anonymous".to_string()
    } else {
        user
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| invalid("unclosed [ in host"))?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    let port = match port {
        None | Some("") => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(invalid("bad port")),
        },
    };
    let path = text_of(path)?;
    Ok(FtpUrl {
        user,
        password,
        host,
        port,
        path,
        gridftp: false,
    })
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

    #[test]
    fn ftp_urls() {
        let Ok(Location::Ftp(u)) = Location::parse("ftp://127.0.0.1:2121/pub/a%20b") else {
            panic!()
        };
        assert_eq!(
            (
                u.user.as_str(),
                u.password,
                u.host.as_str(),
                u.port,
                u.path.as_str()
            ),
            ("anonymous", None, "127.0.0.1", 2121, "/pub/a b")
        );
        let Ok(Location::Ftp(u)) = Location::parse("ftp://al%40ce:p%3Ass@[::1]/") else {
            panic!()
        };
        assert_eq!(
            (
                u.user.as_str(),
                u.password.as_deref(),
                u.host.as_str(),
                u.port
            ),
            ("al@ce", Some("p:ss"), "::1", 21)
        );
        assert_eq!(u.authority(), "[::1]:21");
        let Ok(Location::Ftp(u)) = Location::parse("ftp://host") else {
            panic!()
        };
        assert_eq!(u.path, "/");
        for bad in [
            "ftp:///x",
            "ftp://h:0/x",
            "ftp://h:99999/",
            "ftp://h/a%0d%0aDELE",
            "ftp://[::1/x",
        ] {
            assert!(
                matches!(Location::parse(bad), Err(LocationError::Invalid(..))),
                "{bad}"
            );
        }
        assert!(matches!(
            Location::parse("gsiftp://h/x"),
            Err(LocationError::NotYetSupported(_))
        ));
        let Ok(Location::Ftp(u)) = Location::parse("gridftp://h/x") else {
            panic!("gridftp:// must parse");
        };
        assert!(u.gridftp && u.port == 2811 && u.path == "/x");
        assert_eq!(u.display(), "gridftp://h:2811/x");
    }
}
