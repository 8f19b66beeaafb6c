//! One parser for every endpoint gridos serves: local paths, `file://`, `ftp://`,
//! `ftps://` and `ftpes://` (FTP over TLS), `gridftp://`, and `http://` / `https://` as
//! copy sources.
//!
//! Path rules, as users of each tool expect them:
//! - `ftp://host/dir/f` is **relative to the login directory** (RFC 1738, as curl, wget and
//!   lftp read it); `%2F` starts at the root: `ftp://host/%2Fvar/data/f` is `/var/data/f`.
//! - `gridftp://host/var/data/f` is **absolute**, as globus-url-copy reads it;
//!   `gridftp://host/~/data/f` is `data/f` under the home (login) directory.
//!
//! - `ftps://host/f` is **implicit** TLS (TLS from the first byte, port 990), as curl,
//!   lftp and FileZilla read it; `ftpes://host/f` is **explicit** TLS (`AUTH TLS` on the
//!   FTP port, 21; FileZilla's name). Both must be TLS or fail; their paths follow the
//!   `ftp://` rules. `gsiftp://` (GSI) is not supported yet.
//!
//! [`FtpUrl::path`] holds the path as it is sent to the server: relative (no leading `/`,
//! `.` for the login directory itself) or absolute.
//!
//! ```
//! use gridos_middleware::Url;
//! let Url::Ftp(u) = Url::parse("ftp://alice@host/data/run1").unwrap() else { panic!() };
//! assert_eq!(u.path, "data/run1"); // relative to alice's login directory
//! let Url::Ftp(u) = Url::parse("ftp://host/%2Fvar/data").unwrap() else { panic!() };
//! assert_eq!(u.path, "/var/data");
//! let Url::Ftp(u) = Url::parse("gridftp://host/var/data").unwrap() else { panic!() };
//! assert_eq!((u.path.as_str(), u.port), ("/var/data", 2811));
//! let Url::Ftp(u) = Url::parse("ftps://host/data").unwrap() else { panic!() };
//! assert_eq!((u.tls, u.port), (gridos_middleware::url::FtpTls::Implicit, 990));
//! ```

use std::path::PathBuf;

/// A parsed endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Url {
    /// A path on this machine (from a bare path or a `file://` URL).
    Local(PathBuf),
    /// A file or directory on an FTP or GridFTP server.
    Ftp(FtpUrl),
    /// An HTTP or HTTPS resource (a copy source).
    Http(HttpUrl),
}

/// A parsed `ftp://` or `gridftp://` URL, percent-decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct FtpUrl {
    /// User name (`anonymous` when the URL has none).
    pub user: String,
    /// Password (`None` when the URL has none).
    pub password: Option<String>,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Control port (default 21, 2811 for `gridftp://`).
    pub port: u16,
    /// Path as sent to the server: absolute (`/…`) or relative to the login directory
    /// (`.` for the login directory itself).
    pub path: String,
    /// The URL said `gridftp://`: the server must offer the GridFTP extensions (MODE E).
    pub gridftp: bool,
    /// What the scheme says of TLS (`ftps://`, `ftpes://`).
    pub tls: FtpTls,
}

/// What an FTP URL's scheme says of TLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FtpTls {
    /// `ftp://`, `gridftp://`: TLS when the options require it or the login's password
    /// would otherwise go in clear and the server offers it.
    #[default]
    Auto,
    /// `ftpes://`: explicit TLS (`AUTH TLS`), required.
    Explicit,
    /// `ftps://`: implicit TLS, from the first byte (port 990).
    Implicit,
}

/// A parsed `http://` or `https://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// The URL as given, with any user information removed (it is sent as a header).
    pub url: String,
    /// `https://`.
    pub tls: bool,
    /// Host name or address.
    pub host: String,
    /// Last path segment, percent-decoded (the file name a directory destination gets).
    pub name: Option<String>,
    /// User from the URL's user information, percent-decoded (sent as Basic auth to this
    /// host only).
    pub user: Option<String>,
    /// Password from the URL's user information, percent-decoded.
    pub password: Option<String>,
}

impl HttpUrl {
    /// The URL without query or credentials, for messages.
    pub fn display(&self) -> String {
        self.url.clone()
    }
}

impl std::fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
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

    /// The same server and user with another path.
    pub fn with_path(&self, path: impl Into<String>) -> FtpUrl {
        FtpUrl {
            path: path.into(),
            ..self.clone()
        }
    }

    /// The URL again, without the password, written so that it parses back to this path.
    pub fn display(&self) -> String {
        let user = if self.user == "anonymous" {
            String::new()
        } else {
            format!("{}@", escape(&self.user, b"/@:?#[] "))
        };
        let scheme = match (self.gridftp, self.tls) {
            (true, _) => "gridftp",
            (false, FtpTls::Auto) => "ftp",
            (false, FtpTls::Explicit) => "ftpes",
            (false, FtpTls::Implicit) => "ftps",
        };
        let p = escape(&self.path, b"?#");
        let path = match (self.gridftp, p.strip_prefix('/')) {
            // An absolute path that itself begins with `/~` would read back as the home.
            (true, Some(rest)) if rest == "~" || rest.starts_with("~/") => {
                format!("/%7E{}", &rest[1..])
            }
            (true, Some(_)) => p.clone(),
            (true, None) if p == "." => "/~/".to_string(),
            (true, None) => format!("/~/{p}"),
            (false, Some(abs)) => format!("/%2F{abs}"),
            (false, None) if p == "." => "/".to_string(),
            (false, None) => format!("/{p}"),
        };
        format!("{scheme}://{user}{}{path}", self.authority())
    }

    /// The password to log in with: the URL's, else `anonymous`'s customary one, else
    /// `GRIDOS_FTP_PASSWORD` from the environment.
    pub fn login_password(&self) -> String {
        match &self.password {
            Some(p) => p.clone(),
            None if self.user == "anonymous" => "gridos@".into(),
            None => std::env::var("GRIDOS_FTP_PASSWORD").unwrap_or_default(),
        }
    }
}

/// `dir` joined with `name` on a server: `name` alone under the login directory (`.`).
pub fn remote_join(dir: &str, name: &str) -> String {
    match dir.trim_end_matches('/') {
        "." | "" if !dir.starts_with('/') => name.to_string(),
        d => format!("{d}/{name}"),
    }
}

impl std::fmt::Debug for FtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

impl std::fmt::Display for Url {
    /// The endpoint for messages: passwords are never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Url::Local(p) => write!(f, "{}", p.display()),
            Url::Ftp(u) => f.write_str(&u.display()),
            Url::Http(u) => f.write_str(&u.display()),
        }
    }
}

impl std::str::FromStr for Url {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Url, UrlError> {
        Url::parse(s)
    }
}

/// Why a URL could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// A URL scheme this build cannot serve.
    #[error(
        "{0}:// URLs are not supported by this build of gridos (supported: local paths, file://, ftp://, ftps://, ftpes://, gridftp://, http://, https://)"
    )]
    UnsupportedScheme(String),
    /// A scheme planned for a later release.
    #[error(
        "{0}:// URLs are not supported yet (supported: local paths, file://, ftp://, ftps://, ftpes://, gridftp://, http://, https://)"
    )]
    NotYetSupported(String),
    /// A `file://` URL naming another host.
    #[error(
        "file:// URL names host {0:?}; only local files (file:///path or file://localhost/path) are possible"
    )]
    RemoteFileHost(String),
    /// Malformed percent-encoding, an empty path, a bad port, ….
    #[error("invalid URL {0:?}: {1}")]
    Invalid(String, &'static str),
}

impl Url {
    /// Parses `text` as a URL when it has a `scheme://` prefix, else as a local path.
    pub fn parse(text: &str) -> Result<Url, UrlError> {
        let Some((scheme, rest)) = text.split_once("://") else {
            if text.is_empty() {
                return Err(UrlError::Invalid(text.into(), "empty path"));
            }
            return Ok(Url::Local(PathBuf::from(text)));
        };
        if !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            || scheme.is_empty()
        {
            // Not a scheme: a relative path that happens to contain "://".
            return Ok(Url::Local(PathBuf::from(text)));
        }
        match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                let (host, path) = match rest.find('/') {
                    Some(i) => rest.split_at(i),
                    None => return Err(UrlError::Invalid(text.into(), "no path")),
                };
                if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
                    return Err(UrlError::RemoteFileHost(host.into()));
                }
                let decoded = percent_decode(path)
                    .ok_or_else(|| UrlError::Invalid(text.into(), "bad percent-encoding"))?;
                use std::os::unix::ffi::OsStringExt;
                Ok(Url::Local(PathBuf::from(std::ffi::OsString::from_vec(
                    decoded,
                ))))
            }
            "ftp" => parse_ftp(text, rest, false, FtpTls::Auto).map(Url::Ftp),
            "ftps" => parse_ftp(text, rest, false, FtpTls::Implicit).map(Url::Ftp),
            "ftpes" => parse_ftp(text, rest, false, FtpTls::Explicit).map(Url::Ftp),
            "gridftp" => parse_ftp(text, rest, true, FtpTls::Auto).map(Url::Ftp),
            "http" | "https" => parse_http(text, rest, scheme.eq_ignore_ascii_case("https")),
            "gsiftp" => Err(UrlError::NotYetSupported(scheme.into())),
            other => Err(UrlError::UnsupportedScheme(other.into())),
        }
    }

    /// The last path component: the name a copy into a directory gives this source.
    pub fn file_name(&self) -> Option<String> {
        match self {
            Url::Local(p) => p.file_name().map(|n| n.to_string_lossy().into_owned()),
            Url::Ftp(u) => u
                .path
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .filter(|n| !n.is_empty() && *n != "." && *n != "~")
                .map(str::to_string),
            Url::Http(u) => u.name.clone(),
        }
    }

    /// Whether this is a path on this machine.
    pub fn is_local(&self) -> bool {
        matches!(self, Url::Local(_))
    }
}

fn parse_http(text: &str, rest: &str, tls: bool) -> Result<Url, UrlError> {
    let invalid = |why| UrlError::Invalid(text.into(), why);
    if text.contains(['\r', '\n', ' ']) {
        return Err(invalid("white space or line break in URL"));
    }
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let decode = |s: &str| {
        percent_decode(s)
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|s| !s.contains(['\r', '\n']))
            .ok_or_else(|| invalid("bad percent-encoding in the user information"))
    };
    let (user, password) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
        Some((u, p)) => (Some(decode(u)?), Some(decode(p)?)),
        None => (None, None),
    };
    let host = match hostport.strip_prefix('[') {
        Some(v6) => v6
            .split_once(']')
            .map(|(h, _)| h)
            .ok_or_else(|| invalid("unclosed [ in host"))?,
        None => hostport.rsplit_once(':').map_or(hostport, |(h, _)| h),
    };
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    if !(is_host_name(host) || host.parse::<std::net::Ipv6Addr>().is_ok()) {
        return Err(invalid("bad host name"));
    }
    let path_only = path.split(['?', '#']).next().unwrap_or("");
    let name = path_only
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .and_then(percent_decode)
        .and_then(|b| String::from_utf8(b).ok());
    let scheme = if tls { "https" } else { "http" };
    Ok(Url::Http(HttpUrl {
        url: format!("{scheme}://{hostport}{path}"),
        tls,
        host: host.to_string(),
        name,
        user,
        password,
    }))
}

/// `s` with `%`, control characters and the bytes in `extra` percent-encoded, so that it
/// parses back to itself (other text, UTF-8 included, stays readable).
fn escape(s: &str, extra: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let b = u32::from(c);
        if b < 0x20 || b == 0x7f || c == '%' || (c.is_ascii() && extra.contains(&(b as u8))) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// A host name or IPv4 address as RFC 3986 allows them unbracketed (letters, digits, `-`,
/// `.`, `_`, `~`): anything else (spaces, controls, brackets, a second `:`) is refused rather
/// than passed on to name resolution.
fn is_host_name(h: &str) -> bool {
    h.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn parse_ftp(text: &str, rest: &str, gridftp: bool, tls: FtpTls) -> Result<FtpUrl, UrlError> {
    let invalid = |why| UrlError::Invalid(text.into(), why);
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let text_of = |s: &str| -> Result<String, UrlError> {
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
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(invalid("not an IPv6 address in [ ]"));
        }
        match after {
            "" => (h.to_string(), None),
            _ => (
                h.to_string(),
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| invalid("text after ] in host"))?,
                ),
            ),
        }
    } else {
        let (h, p) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        };
        if !is_host_name(h) {
            return Err(invalid("bad host name"));
        }
        (h.to_string(), p)
    };
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    let default_port = match (gridftp, tls) {
        (true, _) => 2811,
        (false, FtpTls::Implicit) => 990,
        (false, _) => 21,
    };
    let port = match port {
        None | Some("") => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(invalid("bad port")),
        },
    };
    // `path` starts with the '/' that ends the authority.
    let path = if gridftp {
        match path.strip_prefix("/~") {
            Some("") => ".".to_string(),
            Some(home) if home.starts_with('/') => relative(text_of(&home[1..])?),
            _ => text_of(path)?,
        }
    } else {
        // RFC 1738: relative to the login directory; an encoded slash (%2F) makes it
        // absolute.
        relative(text_of(&path[1..])?)
    };
    Ok(FtpUrl {
        user,
        password,
        host,
        port,
        path,
        gridftp,
        tls,
    })
}

/// A decoded relative path; empty is the login directory itself.
fn relative(p: String) -> String {
    if p.is_empty() { ".".to_string() } else { p }
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

    fn ftp(s: &str) -> FtpUrl {
        match Url::parse(s) {
            Ok(Url::Ftp(u)) => u,
            other => panic!("{s}: {other:?}"),
        }
    }

    /// Found by the `url` fuzz target: junk in the host was passed on (and text after `]`
    /// dropped), so the URL printed back differently.
    #[test]
    fn hosts_are_checked() {
        for bad in [
            "ftp://\0fst:2g[::1]siftp://x",
            "ftp://[::1]junk/f",
            "ftp://[not-v6]/f",
            "ftp://a b/f",
            "gridftp://h[1]/f",
            "http://a\u{1}b/x",
            "https://[::1/x",
        ] {
            assert!(
                matches!(Url::parse(bad), Err(UrlError::Invalid(..))),
                "{bad:?}: {:?}",
                Url::parse(bad)
            );
        }
        assert_eq!(ftp("ftp://[::1]:2121/f").port, 2121);
        // Printed forms parse back to the same URL (the fuzz target's property).
        for u in [
            "gridftp://h/~//~/a",
            "ftp://u%2F:@h/x%25y",
            "gridftp://h/%7E/a",
        ] {
            let shown = Url::parse(u).unwrap().to_string();
            assert_eq!(Url::parse(&shown).unwrap().to_string(), shown, "{u}");
        }
        assert_eq!(ftp("ftp://my_host.example-1/f").host, "my_host.example-1");
    }

    #[test]
    fn paths_and_file_urls() {
        assert_eq!(Url::parse("a/b"), Ok(Url::Local("a/b".into())));
        assert_eq!(
            Url::parse("file:///tmp/x%20y"),
            Ok(Url::Local("/tmp/x y".into()))
        );
        assert_eq!(
            Url::parse("FILE://localhost/etc/hosts"),
            Ok(Url::Local("/etc/hosts".into()))
        );
        assert!(matches!(
            Url::parse("file://elsewhere/x"),
            Err(UrlError::RemoteFileHost(_))
        ));
        assert!(matches!(
            Url::parse("file:///x%zz"),
            Err(UrlError::Invalid(..))
        ));
        assert!(matches!(
            Url::parse("file:///x%00"),
            Err(UrlError::Invalid(..))
        ));
        assert!(matches!(
            Url::parse("nfs://h/x"),
            Err(UrlError::UnsupportedScheme(_))
        ));
        assert!(Url::parse("").is_err());
    }

    #[test]
    fn ftp_urls() {
        let u = ftp("ftp://127.0.0.1:2121/pub/a%20b");
        assert_eq!(
            (
                u.user.as_str(),
                u.password,
                u.host.as_str(),
                u.port,
                u.path.as_str()
            ),
            ("anonymous", None, "127.0.0.1", 2121, "pub/a b")
        );
        let u = ftp("ftp://al%40ce:p%3Ass@[::1]/");
        assert_eq!(
            (
                u.user.as_str(),
                u.password.as_deref(),
                u.host.as_str(),
                u.port,
                u.path.as_str()
            ),
            ("al@ce", Some("p:ss"), "::1", 21, ".")
        );
        assert_eq!(u.authority(), "[::1]:21");
        assert_eq!(ftp("ftp://host").path, ".");
        for bad in [
            "ftp:///x",
            "ftp://h:0/x",
            "ftp://h:99999/",
            "ftp://h/a%0d%0aDELE",
            "ftp://[::1/x",
        ] {
            assert!(
                matches!(Url::parse(bad), Err(UrlError::Invalid(..))),
                "{bad}"
            );
        }
        assert!(matches!(
            Url::parse("gsiftp://h/x"),
            Err(UrlError::NotYetSupported(_))
        ));
    }

    #[test]
    fn ftps_is_implicit_and_ftpes_explicit() {
        let u = ftp("ftps://alice:pw@h/dir/f");
        assert_eq!(
            (u.tls, u.port, u.path.as_str(), u.user.as_str(), u.gridftp),
            (FtpTls::Implicit, 990, "dir/f", "alice", false)
        );
        let u = ftp("FTPES://h/%2Fvar/f");
        assert_eq!(
            (u.tls, u.port, u.path.as_str()),
            (FtpTls::Explicit, 21, "/var/f")
        );
        assert_eq!(ftp("ftps://h:2990/").port, 2990);
        assert_eq!(ftp("ftp://h/x").tls, FtpTls::Auto);
        assert_eq!(ftp("gridftp://h/x").tls, FtpTls::Auto);
        for s in [
            "ftps://h:990/dir/f",
            "ftpes://alice@h:21/%2Fvar/f",
            "ftps://[::1]:990/",
        ] {
            assert_eq!(ftp(s).display(), s);
            assert_eq!(ftp(&ftp(s).display()), ftp(s));
        }
        // The password never shows.
        assert_eq!(ftp("ftpes://al:secret@h/x").display(), "ftpes://al@h:21/x");
        for bad in ["ftps:///x", "ftpes://h:0/x", "ftps://h/a%0d%0aDELE"] {
            assert!(
                matches!(Url::parse(bad), Err(UrlError::Invalid(..))),
                "{bad}"
            );
        }
    }

    #[test]
    fn ftp_paths_are_relative_unless_encoded_slash() {
        assert_eq!(ftp("ftp://h/dir/f").path, "dir/f");
        assert_eq!(ftp("ftp://h/%2Fvar/data/f").path, "/var/data/f");
        assert_eq!(ftp("ftp://h/%2fvar").path, "/var");
        assert_eq!(ftp("ftp://h/%2F").path, "/");
        for s in [
            "ftp://h:21/dir/f",
            "ftp://h:21/%2Fvar/data/f",
            "ftp://h:21/",
        ] {
            assert_eq!(ftp(s).display(), s);
        }
    }

    #[test]
    fn gridftp_paths_are_absolute_and_tilde_is_home() {
        let u = ftp("gridftp://h/var/data/f");
        assert!(u.gridftp && u.port == 2811 && u.path == "/var/data/f");
        assert_eq!(ftp("gridftp://h/~/data/f").path, "data/f");
        assert_eq!(ftp("gridftp://h/~").path, ".");
        assert_eq!(ftp("gridftp://h/~/").path, ".");
        assert_eq!(ftp("gridftp://h").path, "/");
        for s in ["gridftp://h:2811/var/x", "gridftp://h:2811/~/x"] {
            assert_eq!(ftp(s).display(), s);
        }
    }

    #[test]
    fn joins() {
        assert_eq!(remote_join(".", "a"), "a");
        assert_eq!(remote_join("d", "a"), "d/a");
        assert_eq!(remote_join("/", "a"), "/a");
        assert_eq!(remote_join("/d/", "a"), "/d/a");
    }

    #[test]
    fn http_urls() {
        let Ok(Url::Http(u)) = Url::parse("https://data.example/a/b%20c.h5?x=1") else {
            panic!()
        };
        assert!(u.tls);
        assert_eq!(u.host, "data.example");
        assert_eq!(u.name.as_deref(), Some("b c.h5"));
        let Ok(Url::Http(u)) = Url::parse("https://al%40ce:p%3Ass@h/f") else {
            panic!()
        };
        assert_eq!(u.url, "https://h/f");
        assert_eq!(
            (u.user.as_deref(), u.password.as_deref()),
            (Some("al@ce"), Some("p:ss"))
        );
        let Ok(Url::Http(u)) = Url::parse("http://[::1]:8080/") else {
            panic!()
        };
        assert_eq!((u.host.as_str(), u.name), ("::1", None));
        assert!(Url::parse("http:///x").is_err());
        assert!(Url::parse("http://h/a b").is_err());
    }
}
