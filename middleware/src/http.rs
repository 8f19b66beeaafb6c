//! HTTP and HTTPS as copy sources: [`HttpSource::stat`] asks for size, modification time,
//! range support and entity tag; [`HttpSource::get`] writes a whole resource, or a part of
//! it, into a file at the part's own offset (resume, with `If-Range` so that a resource that
//! changed is never spliced onto an old prefix); [`HttpSource::get_parallel`] fills a file
//! with several ranged GETs at once over separate connections.
//!
//! Built on ureq (blocking I/O, rustls with the ring provider; no OpenSSL). Redirects are
//! followed here, hop by hop, rather than inside ureq, so that each one is checked: at most
//! [`HttpConfig::max_redirects`], only to `http://` or `https://`, and credentials go only
//! to the host they were given for (and never from `https` down to plain `http`).
//!
//! Bytes are written with positional writes (`pwrite`), so several threads may fill one
//! file. Every byte written is a byte of the resource at its own offset: a response whose
//! `Content-Range` does not start where it was asked to is refused before anything is
//! written, and a server that answers a ranged request with the whole resource (`200`
//! instead of `206`) has its bytes written from offset 0, never at the requested offset.
//!
//! Cancellation and the sibling streams of [`HttpSource::get_parallel`] are checked between
//! reads; a server that stops sending is bounded by [`HttpConfig::read_timeout`].
//!
//! ```no_run
//! use gridos_middleware::http::{HttpConfig, HttpSource, Part};
//! use gridos_middleware::Url;
//! let Url::Http(url) = Url::parse("https://data.example/run1.h5")? else { unreachable!() };
//! let source = HttpSource::new(HttpConfig::default())?;
//! let stat = source.stat(&url)?;
//! let dest = std::fs::File::create("/tmp/run1.h5")?;
//! let size = source.get_parallel(&url, &dest, &stat, 4, None, None)?;
//! // Later, resume from what is on disk; a changed resource is fetched whole again.
//! let have = dest.metadata()?.len();
//! let part = Part { offset: have, len: None, if_range: stat.validator() };
//! let got = source.get(&url, &dest, &part, None, None)?;
//! assert!(got.restarted || have + got.bytes == size);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::error::{Error, ErrorKind, Result};
use crate::url::{HttpUrl, Url};
use base64::Engine as _;
use gridos_io::CancelToken;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use ureq::http::{HeaderMap, Response};

/// Settings of an [`HttpSource`].
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Longest wait for a connection (TCP and TLS handshake).
    pub connect_timeout: Duration,
    /// Longest wait for any one read or write on a connection; a server that stops
    /// sending fails with [`ErrorKind::Timeout`] after this.
    pub read_timeout: Duration,
    /// Extra trusted root certificates (PEM), added to the built-in Mozilla set, for
    /// servers with a private CA. Default: `$GRIDOS_CA_FILE` when set.
    pub ca_file: Option<PathBuf>,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Redirects followed before giving up.
    pub max_redirects: u32,
    /// User names and passwords, sent as Basic authentication to their host (see
    /// [`Credentials::from_url`]).
    pub credentials: Vec<Credentials>,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            ca_file: std::env::var_os("GRIDOS_CA_FILE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            user_agent: concat!("gridos/", env!("CARGO_PKG_VERSION")).to_string(),
            max_redirects: 10,
            credentials: Vec::new(),
        }
    }
}

/// A user name and password for one host, sent as HTTP Basic authentication.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The host they are for (compared without regard to case); not sent to others,
    /// including hosts a redirect leads to.
    pub host: String,
    /// Given for `https://`: never sent over plain `http://`.
    pub tls: bool,
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

impl Credentials {
    /// The user information of `http(s)://user:password@host/…`, percent-decoded, for
    /// that URL's host; `None` when the URL has none.
    pub fn from_url(text: &str) -> Result<Option<Credentials>> {
        let Url::Http(url) = Url::parse(text)? else {
            return Err(Error::new(ErrorKind::InvalidUrl, text).detail("not an http(s):// URL"));
        };
        Ok(Credentials::of(&url))
    }

    /// The credentials in a parsed URL, for its host.
    pub fn of(url: &HttpUrl) -> Option<Credentials> {
        Some(Credentials {
            host: url.host.clone(),
            tls: url.tls,
            user: url.user.clone()?,
            password: url.password.clone().unwrap_or_default(),
        })
    }

    fn applies_to(&self, url: &HttpUrl) -> bool {
        self.host.eq_ignore_ascii_case(&url.host) && (url.tls || !self.tls)
    }

    fn header(&self) -> String {
        let pair = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

impl std::fmt::Debug for Credentials {
    /// The password is never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("host", &self.host)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// What a server says about a resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpStat {
    /// Size in bytes, when the server tells it.
    pub size: Option<u64>,
    /// `Last-Modified`.
    pub modified: Option<SystemTime>,
    /// The server serves byte ranges (`Accept-Ranges: bytes`, or it answered a range).
    pub ranges: bool,
    /// `ETag` as the server sent it, quotes included (`W/` marks a weak one).
    pub etag: Option<String>,
}

impl HttpStat {
    /// What identifies this version of the resource for `If-Range`: the entity tag when it
    /// is strong (weak ones may not be used there), else the modification time.
    pub fn validator(&self) -> Option<Validator> {
        match &self.etag {
            Some(tag) if !tag.starts_with("W/") => Some(Validator::ETag(tag.clone())),
            _ => self.modified.map(Validator::Modified),
        }
    }
}

/// One version of a resource, sent as `If-Range` so that a resumed or ranged GET gets the
/// whole resource again (not a part of another version) when it changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Validator {
    /// A strong entity tag, quotes included.
    ETag(String),
    /// The `Last-Modified` time.
    Modified(SystemTime),
}

impl Validator {
    /// The `If-Range` header value.
    pub fn header_value(&self) -> String {
        match self {
            Validator::ETag(tag) => tag.clone(),
            Validator::Modified(t) => httpdate::fmt_http_date(*t),
        }
    }
}

/// Which bytes [`HttpSource::get`] fetches; they land at the same offset in the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Part {
    /// First byte.
    pub offset: u64,
    /// How many bytes at most (fewer when the resource ends sooner); `None`: to the end.
    pub len: Option<u64>,
    /// The version the bytes must belong to (sent as `If-Range` with the range).
    pub if_range: Option<Validator>,
}

/// What [`HttpSource::get`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// Bytes written.
    pub bytes: u64,
    /// Size of the resource, when the server told it (or the whole body arrived).
    pub total: Option<u64>,
    /// The server sent the whole resource instead of the range (it changed since the
    /// `If-Range` validator, or it ignores ranges): it was written from offset 0 and the
    /// file truncated to its size.
    pub restarted: bool,
}

/// Smallest part [`HttpSource::get_parallel`] gives one stream.
const MIN_PART: u64 = 256 * 1024;
/// Most streams [`HttpSource::get_parallel`] opens at once.
pub const MAX_STREAMS: usize = 64;
/// Read buffer per stream.
const BUF: usize = 256 * 1024;

/// An HTTP(S) client for copy sources. Cheap to share between threads: requests made at
/// the same time go over separate connections; idle ones are reused.
#[derive(Clone, Debug)]
pub struct HttpSource {
    agent: ureq::Agent,
    config: HttpConfig,
}

/// What a transfer reports to and is stopped by.
#[derive(Clone, Copy, Default)]
struct Watch<'a> {
    progress: Option<&'a AtomicU64>,
    cancel: Option<&'a CancelToken>,
    /// Set when a sibling stream of `get_parallel` failed.
    abort: Option<&'a AtomicBool>,
    /// Bytes this call added to `progress`, so a fallback can take them back.
    added: Option<&'a AtomicU64>,
}

impl Watch<'_> {
    fn stopped(&self) -> bool {
        self.cancel.is_some_and(CancelToken::is_cancelled)
            || self.abort.is_some_and(|a| a.load(Ordering::Acquire))
    }

    fn add(&self, n: u64) {
        for counter in [self.progress, self.added].into_iter().flatten() {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

impl HttpSource {
    /// A client with `config`; fails only when the CA file cannot be read or holds no
    /// certificate.
    pub fn new(config: HttpConfig) -> Result<HttpSource> {
        let roots = match &config.ca_file {
            Some(path) => ureq::tls::RootCerts::from(roots_with(path)?),
            None => ureq::tls::RootCerts::WebPki,
        };
        let agent_config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(config.user_agent.as_str())
            .accept_encoding("identity")
            .timeout_connect(Some(config.connect_timeout))
            .timeout_per_read(Some(config.read_timeout))
            .timeout_per_write(Some(config.read_timeout))
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .provider(ureq::tls::TlsProvider::Rustls)
                    .root_certs(roots)
                    .build(),
            )
            .build();
        Ok(HttpSource {
            agent: ureq::Agent::new_with_config(agent_config),
            config,
        })
    }

    /// Size, modification time, range support and entity tag of `url`, by HEAD; where
    /// HEAD is refused (400, 403, 405, 501), by a GET of the first byte.
    pub fn stat(&self, url: &HttpUrl) -> Result<HttpStat> {
        let (url, resp) = self.send(true, url, &[])?;
        match resp.status().as_u16() {
            200 => {
                let h = resp.headers();
                Ok(HttpStat {
                    size: content_length(h),
                    modified: modified(h),
                    ranges: header(h, "accept-ranges").is_some_and(|v| {
                        v.split(',')
                            .any(|unit| unit.trim().eq_ignore_ascii_case("bytes"))
                    }),
                    etag: header(h, "etag").map(str::to_string),
                })
            }
            400 | 403 | 405 | 501 => self.stat_by_get(&url),
            status => Err(status_error(status, &url)),
        }
    }

    fn stat_by_get(&self, url: &HttpUrl) -> Result<HttpStat> {
        let (url, resp) = self.send(false, url, &[("range", "bytes=0-0".into())])?;
        let h = resp.headers();
        let (size, ranges) = match resp.status().as_u16() {
            206 => match header(h, "content-range").and_then(parse_content_range) {
                Some(ContentRange::Bytes { total, .. }) => (total, true),
                _ => return Err(protocol(&url, "206 reply without a valid Content-Range")),
            },
            416 => match header(h, "content-range").and_then(parse_content_range) {
                Some(ContentRange::Unsatisfied { total }) => (Some(total), true),
                _ => return Err(status_error(416, &url)),
            },
            200 => (content_length(h), false),
            status => return Err(status_error(status, &url)),
        };
        // The body (one byte, or the whole resource after a 200) is not read: dropping
        // the response closes the connection.
        Ok(HttpStat {
            size,
            modified: modified(h),
            ranges,
            etag: header(h, "etag").map(str::to_string),
        })
    }

    /// Fetches `part` of `url` into `dest` at the part's offset and returns what was
    /// written.
    ///
    /// A part with an offset or a length is asked for with `Range` (and `If-Range` when it
    /// names a version). A `206` reply must start at the offset and send no more than asked;
    /// a `200` (the server ignores ranges, or the version changed) is written from offset 0
    /// when the part runs to the end (see [`Fetched::restarted`]) and refused as
    /// [`ErrorKind::Unsupported`] for a bounded part. A part that runs to the end leaves
    /// `dest` exactly as long as the resource. Fewer bytes than `Content-Length` or
    /// `Content-Range` announced fail as [`ErrorKind::Incomplete`] (a broken connection as
    /// [`ErrorKind::Network`] or [`ErrorKind::Timeout`]); the bytes written until then are
    /// correct and counted in `progress` (after a restart the file is cut after them, so
    /// that no byte of the old version is left behind the new ones). A resume at the end of
    /// the resource (`416` with that size) writes nothing and succeeds.
    pub fn get(
        &self,
        url: &HttpUrl,
        dest: &File,
        part: &Part,
        progress: Option<&AtomicU64>,
        cancel: Option<&CancelToken>,
    ) -> Result<Fetched> {
        let watch = Watch {
            progress,
            cancel,
            ..Watch::default()
        };
        self.fetch(url, dest, part, watch)
    }

    /// Fetches the whole of `url` into `dest` with up to `streams` ranged GETs at once
    /// (at most [`MAX_STREAMS`], each part at least 256 KiB), each over its own connection
    /// and writing its part at its offset; returns the size written, and `dest` is left
    /// that long. Uses one plain GET when `stat` shows no range support or no size, when the
    /// resource is small, or when the server turns out to ignore ranges or the resource
    /// changed during the transfer (each part carries `If-Range` with `stat`'s validator).
    /// `progress` counts bytes written; after such a fallback it starts again from what it
    /// was before the call.
    pub fn get_parallel(
        &self,
        url: &HttpUrl,
        dest: &File,
        stat: &HttpStat,
        streams: usize,
        progress: Option<&AtomicU64>,
        cancel: Option<&CancelToken>,
    ) -> Result<u64> {
        let size = match stat.size {
            Some(size) if stat.ranges && streams > 1 && size >= 2 * MIN_PART => size,
            _ => {
                return self
                    .get(url, dest, &Part::default(), progress, cancel)
                    .map(|f| f.bytes);
            }
        };
        let n = (streams.min(MAX_STREAMS) as u64).min(size / MIN_PART);
        let chunk = size.div_ceil(n);
        let validator = stat.validator();
        let abort = AtomicBool::new(false);
        let added = AtomicU64::new(0);
        // Set by a stream that finds ranges unusable: the server ignores them, or the
        // resource changed (If-Range) or is no longer `size` bytes.
        let whole = AtomicBool::new(false);
        let watch = Watch {
            progress,
            cancel,
            abort: Some(&abort),
            added: Some(&added),
        };
        let results: Vec<Result<Fetched>> = std::thread::scope(|s| {
            let streams: Vec<_> = (0..n)
                .map(|i| {
                    let offset = i * chunk;
                    let part = Part {
                        offset,
                        len: Some(chunk.min(size - offset)),
                        if_range: validator.clone(),
                    };
                    let (abort, whole) = (&abort, &whole);
                    s.spawn(move || {
                        let r = self.fetch(url, dest, &part, watch);
                        let want = part.len.unwrap_or(0);
                        let r = match r {
                            Ok(f) if f.total != Some(size) => {
                                whole.store(true, Ordering::Release);
                                Err(Error::new(ErrorKind::Unsupported, url.display()).detail(
                                    format!("the resource is now {:?} bytes, was {size}", f.total),
                                ))
                            }
                            Ok(f) if f.bytes != want => {
                                Err(Error::new(ErrorKind::Incomplete, url.display()).detail(
                                    format!("{} of {want} bytes at offset {offset}", f.bytes),
                                ))
                            }
                            Err(e) if e.kind() == ErrorKind::Unsupported => {
                                whole.store(true, Ordering::Release);
                                Err(e)
                            }
                            r => r,
                        };
                        if r.is_err() {
                            abort.store(true, Ordering::Release);
                        }
                        r
                    })
                })
                .collect();
            streams
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        // A stream stopped because a sibling failed reports Cancelled: keep the sibling's
        // own error.
        let mut first: Option<Error> = None;
        for e in results.into_iter().filter_map(Result::err) {
            if first.as_ref().is_none_or(|f| {
                f.kind() == ErrorKind::Cancelled && e.kind() != ErrorKind::Cancelled
            }) {
                first = Some(e);
            }
        }
        match first {
            None => {
                let ctx = || format!("{} → destination file", url.display());
                let len = dest.metadata().map_err(|e| Error::from_io(ctx(), e))?.len();
                if len > size {
                    dest.set_len(size).map_err(|e| Error::from_io(ctx(), e))?;
                }
                Ok(size)
            }
            Some(_) if cancel.is_some_and(CancelToken::is_cancelled) => {
                Err(Error::new(ErrorKind::Cancelled, url.display()))
            }
            Some(e) if whole.load(Ordering::Acquire) => {
                tracing::info!(url = %url.display(), reason = %e, "parallel ranges abandoned; one GET of the whole resource");
                if let Some(p) = progress {
                    p.fetch_sub(added.load(Ordering::Relaxed), Ordering::Relaxed);
                }
                self.get(url, dest, &Part::default(), progress, cancel)
                    .map(|f| f.bytes)
            }
            Some(e) => Err(e),
        }
    }

    fn fetch(&self, url: &HttpUrl, dest: &File, part: &Part, watch: Watch<'_>) -> Result<Fetched> {
        if watch.stopped() {
            return Err(Error::new(ErrorKind::Cancelled, url.display()));
        }
        let ranged = part.offset > 0 || part.len.is_some();
        let mut headers = Vec::new();
        if ranged {
            let range = match part.len {
                Some(0) => {
                    return Ok(Fetched {
                        bytes: 0,
                        total: None,
                        restarted: false,
                    });
                }
                Some(n) => match part.offset.checked_add(n - 1) {
                    Some(last) => format!("bytes={}-{last}", part.offset),
                    None => {
                        return Err(Error::new(ErrorKind::InvalidInput, url.display())
                            .detail("range beyond 2^64 bytes"));
                    }
                },
                None => format!("bytes={}-", part.offset),
            };
            headers.push(("range", range));
            if let Some(v) = &part.if_range {
                headers.push(("if-range", v.header_value()));
            }
        }
        let (url, resp) = self.send(false, url, &headers)?;
        let url = &url;
        let status = resp.status().as_u16();
        let h = resp.headers();
        // Where the body starts in the resource, how long it is, the resource's size.
        let (start, expect, total, restarted) = match status {
            206 if ranged => {
                if header(h, "content-type")
                    .is_some_and(|t| t.to_ascii_lowercase().starts_with("multipart/"))
                {
                    return Err(protocol(url, "multipart reply to a single range"));
                }
                let Some(ContentRange::Bytes { first, last, total }) =
                    header(h, "content-range").and_then(parse_content_range)
                else {
                    return Err(protocol(url, "206 reply without a valid Content-Range"));
                };
                let count = last - first + 1;
                if first != part.offset {
                    return Err(protocol(
                        url,
                        &format!(
                            "asked for bytes from {}, the server sent bytes {first}-{last}",
                            part.offset
                        ),
                    ));
                }
                if part.len.is_some_and(|n| count > n) {
                    return Err(protocol(
                        url,
                        &format!(
                            "asked for {} bytes, the server sent bytes {first}-{last}",
                            part.len.unwrap_or(0)
                        ),
                    ));
                }
                if content_length(h).is_some_and(|cl| cl != count) {
                    return Err(protocol(url, "Content-Length disagrees with Content-Range"));
                }
                (first, Some(count), total, false)
            }
            206 => return Err(protocol(url, "206 reply to a request without Range")),
            200 => {
                let cl = content_length(h);
                match part.len {
                    _ if !ranged => (0, cl, cl, false),
                    None => (0, cl, cl, true),
                    Some(n) if part.offset == 0 && cl.is_some_and(|cl| cl <= n) => {
                        (0, cl, cl, false)
                    }
                    Some(n) => {
                        return Err(Error::new(ErrorKind::Unsupported, url.display()).detail(
                            format!(
                                "asked for {n} bytes at offset {}, the server sent the whole resource (it ignores ranges, or the resource changed)",
                                part.offset
                            ),
                        ));
                    }
                }
            }
            416 if part.len.is_none() => {
                match header(h, "content-range").and_then(parse_content_range) {
                    Some(ContentRange::Unsatisfied { total }) if total == part.offset => {
                        return Ok(Fetched {
                            bytes: 0,
                            total: Some(total),
                            restarted: false,
                        });
                    }
                    Some(ContentRange::Unsatisfied { total }) => {
                        return Err(status_error(416, url).detail(format!(
                            "the resource has {total} bytes, fewer than the offset {}",
                            part.offset
                        )));
                    }
                    _ => return Err(status_error(416, url)),
                }
            }
            status => return Err(status_error(status, url)),
        };
        if restarted {
            tracing::info!(url = %url.display(), offset = part.offset, "server sent the whole resource instead of the rest; fetching it from the start");
        }
        let mut body = resp.into_body().into_reader();
        let mut buf = vec![0u8; BUF];
        let mut got = 0u64;
        let copied = (|| loop {
            if watch.stopped() {
                return Err(Error::new(ErrorKind::Cancelled, url.display())
                    .detail(format!("{got} bytes written at offset {start}")));
            }
            let n = match body.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(body_error(url, e, got, expect)),
            };
            if expect.is_some_and(|x| got + n as u64 > x) {
                return Err(protocol(url, "more bytes than the reply announced"));
            }
            dest.write_all_at(&buf[..n], start + got)
                .map_err(|e| Error::from_io(format!("{} → destination file", url.display()), e))?;
            got += n as u64;
            watch.add(n as u64);
        })();
        let copied = copied.and_then(|()| match expect {
            Some(x) if got < x => Err(Error::new(ErrorKind::Incomplete, url.display())
                .detail(format!("the body ended after {got} of {x} bytes"))),
            _ => Ok(()),
        });
        if let Err(e) = copied {
            if restarted {
                // The file now starts with the new version: keep only that prefix, so a
                // later resume (whose If-Range names the old version) starts over again
                // instead of trusting old bytes behind it.
                let _ = dest.set_len(got);
            }
            return Err(e);
        }
        let mut total = total;
        if part.len.is_none() {
            // The rest of the resource arrived: the file is as long as the resource.
            let end = start + got;
            total = Some(end);
            let len = dest
                .metadata()
                .map_err(|e| Error::from_io("destination file", e))?
                .len();
            if len > end {
                dest.set_len(end)
                    .map_err(|e| Error::from_io("destination file", e))?;
            }
        }
        Ok(Fetched {
            bytes: got,
            total,
            restarted,
        })
    }

    /// One request, following redirects; returns the URL that answered and its reply.
    fn send(
        &self,
        head: bool,
        url: &HttpUrl,
        headers: &[(&'static str, String)],
    ) -> Result<(HttpUrl, Response<ureq::Body>)> {
        let mut current = url.clone();
        let mut hops = 0;
        loop {
            let target = current.url.split('#').next().unwrap_or_default();
            let mut req = if head {
                self.agent.head(target)
            } else {
                self.agent.get(target)
            };
            for (name, value) in headers {
                req = req.header(*name, value.as_str());
            }
            if let Some(c) = self
                .config
                .credentials
                .iter()
                .find(|c| c.applies_to(&current))
            {
                req = req.header("authorization", c.header());
            }
            let resp = req.call().map_err(|e| ureq_error(&current, e))?;
            let status = resp.status().as_u16();
            let location = header(resp.headers(), "location");
            match location {
                Some(loc) if matches!(status, 301 | 302 | 303 | 307 | 308) => {
                    if hops == self.config.max_redirects {
                        return Err(protocol(
                            &current,
                            &format!("more than {} redirects", self.config.max_redirects),
                        ));
                    }
                    let next = resolve(&current, loc)?;
                    tracing::debug!(from = %current.display(), to = %next.display(), status, "redirect");
                    current = next;
                    hops += 1;
                }
                _ => return Ok((current, resp)),
            }
        }
    }
}

/// The built-in Mozilla roots and the certificates in the PEM file at `path`.
fn roots_with(path: &std::path::Path) -> Result<Vec<ureq::tls::Certificate<'static>>> {
    let ctx = format!("CA file {}", path.display());
    let pem = std::fs::read(path).map_err(|e| Error::from_io(ctx.clone(), e))?;
    let mut roots: Vec<_> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    let builtin = roots.len();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => roots.push(c.to_owned()),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::new(ErrorKind::InvalidInput, ctx)
                    .detail("not valid PEM")
                    .source(e));
            }
        }
    }
    if roots.len() == builtin {
        return Err(Error::new(ErrorKind::InvalidInput, ctx).detail("no certificate in it"));
    }
    Ok(roots)
}

/// The URL a `Location` header names, relative to `base`; only `http(s)://` is accepted.
fn resolve(base: &HttpUrl, loc: &str) -> Result<HttpUrl> {
    let loc = loc.trim();
    let refused = |why: &str| {
        Error::new(ErrorKind::Unsupported, base.display())
            .detail(format!("redirect to {loc:?} refused: {why}"))
    };
    let scheme_end = loc.find(':').filter(|&i| {
        i > 0
            && loc[..i].starts_with(|c: char| c.is_ascii_alphabetic())
            && loc[..i]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    let (scheme, rest) = base.url.split_once("://").unwrap_or(("http", &base.url));
    let origin_len = scheme.len() + 3 + rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (origin, path) = base.url.split_at(origin_len);
    let path = path.split('#').next().unwrap_or("");
    let absolute = match scheme_end {
        Some(i) => {
            if !matches!(loc[..i].to_ascii_lowercase().as_str(), "http" | "https") {
                return Err(refused("only http:// and https:// are followed"));
            }
            loc.to_string()
        }
        None if loc.starts_with("//") => format!("{scheme}:{loc}"),
        None if loc.starts_with('/') => format!("{origin}{loc}"),
        None if loc.starts_with('?') => {
            format!("{origin}{}{loc}", path.split('?').next().unwrap_or(""))
        }
        None => {
            let path = path.split('?').next().unwrap_or("");
            let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
            let dir = if dir.is_empty() { "/" } else { dir };
            format!("{origin}{dir}{loc}")
        }
    };
    match Url::parse(&absolute) {
        Ok(Url::Http(u)) => Ok(u),
        Ok(_) => Err(refused("only http:// and https:// are followed")),
        Err(e) => Err(Error::new(ErrorKind::Protocol, base.display())
            .detail(format!("redirect to an invalid URL {loc:?}"))
            .source(e)),
    }
}

/// A `Content-Range` header.
#[derive(Debug, PartialEq, Eq)]
enum ContentRange {
    /// `bytes FIRST-LAST/TOTAL` (`TOTAL` may be `*`).
    Bytes {
        first: u64,
        last: u64,
        total: Option<u64>,
    },
    /// `bytes */TOTAL` (with a 416).
    Unsatisfied { total: u64 },
}

fn parse_content_range(v: &str) -> Option<ContentRange> {
    let v = v.trim();
    let (unit, rest) = v.split_once(' ')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (range, total) = rest.trim().split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse::<u64>().ok()?),
    };
    if range.trim() == "*" {
        return Some(ContentRange::Unsatisfied { total: total? });
    }
    let (first, last) = range.trim().split_once('-')?;
    let (first, last) = (first.parse::<u64>().ok()?, last.parse::<u64>().ok()?);
    if last < first || total.is_some_and(|t| last >= t) {
        return None;
    }
    Some(ContentRange::Bytes { first, last, total })
}

fn header<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name)?.to_str().ok()
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    header(h, "content-length")?.trim().parse().ok()
}

fn modified(h: &HeaderMap) -> Option<SystemTime> {
    httpdate::parse_http_date(header(h, "last-modified")?.trim()).ok()
}

fn status_error(status: u16, url: &HttpUrl) -> Error {
    let reason = ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    Error::new(ErrorKind::Http(status), url.display())
        .detail(format!("HTTP {status} {reason}").trim_end().to_string())
}

fn protocol(url: &HttpUrl, detail: &str) -> Error {
    Error::new(ErrorKind::Protocol, url.display()).detail(detail.to_string())
}

/// The kind of a ureq error.
fn ureq_kind(e: &ureq::Error) -> ErrorKind {
    use ureq::Error as U;
    match e {
        U::Timeout(_) | U::BodyStalled => ErrorKind::Timeout,
        U::Io(io) => io_kind(io),
        U::BadUri(_) | U::Http(_) => ErrorKind::InvalidUrl,
        U::Protocol(_) | U::LargeResponseHeader(..) | U::Tls(_) | U::Pem(_) | U::Rustls(_) => {
            ErrorKind::Protocol
        }
        _ => ErrorKind::Network,
    }
}

/// The kind of an I/O error on a connection (ureq wraps its own errors in them).
fn io_kind(e: &std::io::Error) -> ErrorKind {
    use std::io::ErrorKind as K;
    if let Some(inner) = e.get_ref() {
        if let Some(u) = inner.downcast_ref::<ureq::Error>() {
            return ureq_kind(u);
        }
    }
    match e.kind() {
        K::TimedOut | K::WouldBlock => ErrorKind::Timeout,
        K::UnexpectedEof => ErrorKind::Incomplete,
        // rustls reports a bad certificate or a TLS protocol violation so.
        K::InvalidData => ErrorKind::Protocol,
        _ => ErrorKind::Network,
    }
}

fn ureq_error(url: &HttpUrl, e: ureq::Error) -> Error {
    Error::new(ureq_kind(&e), url.display()).source(e)
}

fn body_error(url: &HttpUrl, e: std::io::Error, got: u64, expect: Option<u64>) -> Error {
    let of = expect.map_or(String::new(), |x| format!(" of {x}"));
    Error::new(io_kind(&e), url.display())
        .detail(format!(
            "connection failed after {got}{of} bytes of the body"
        ))
        .source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(s: &str) -> HttpUrl {
        match Url::parse(s) {
            Ok(Url::Http(u)) => u,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn content_ranges() {
        use ContentRange::*;
        let p = parse_content_range;
        assert_eq!(
            p("bytes 0-99/1000"),
            Some(Bytes {
                first: 0,
                last: 99,
                total: Some(1000)
            })
        );
        assert_eq!(
            p("Bytes 5-5/*"),
            Some(Bytes {
                first: 5,
                last: 5,
                total: None
            })
        );
        assert_eq!(p("bytes */42"), Some(Unsatisfied { total: 42 }));
        for bad in [
            "bytes 9-1/100",
            "bytes 0-100/100",
            "items 0-1/2",
            "bytes */*",
            "bytes -1/2",
            "bytes 0-1",
            "",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }

    #[test]
    fn redirect_targets() {
        let base = http("https://h:8443/a/b/c.txt?x=1#f");
        let r = |loc| resolve(&base, loc).map(|u| u.url);
        assert_eq!(r("/d/e").unwrap(), "https://h:8443/d/e");
        assert_eq!(r("e.txt").unwrap(), "https://h:8443/a/b/e.txt");
        assert_eq!(r("?y=2").unwrap(), "https://h:8443/a/b/c.txt?y=2");
        assert_eq!(r("//other/x").unwrap(), "https://other/x");
        assert_eq!(r("HTTP://other:81/x").unwrap(), "http://other:81/x");
        for bad in ["ftp://h/x", "file:///etc/passwd", "javascript:alert(1)"] {
            assert_eq!(r(bad).unwrap_err().kind(), ErrorKind::Unsupported, "{bad}");
        }
        assert_eq!(resolve(&http("http://h"), "x").unwrap().url, "http://h/x");
    }

    #[test]
    fn credentials_from_urls() {
        let c = Credentials::from_url("https://al%40ce:p%3Ass@Data.Example:8443/f")
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.host.as_str(), c.tls, c.user.as_str(), c.password.as_str()),
            ("Data.Example", true, "al@ce", "p:ss")
        );
        assert!(c.applies_to(&http("https://data.example/other")));
        assert!(
            !c.applies_to(&http("http://data.example/f")),
            "no downgrade"
        );
        assert!(!c.applies_to(&http("https://elsewhere/f")));
        assert_eq!(c.header(), "Basic YWxAY2U6cDpzcw==");
        assert!(!format!("{c:?}").contains("p:ss"));
        assert_eq!(Credentials::from_url("http://h/f").unwrap(), None);
        assert!(Credentials::from_url("ftp://u:p@h/f").is_err());
        assert!(Credentials::from_url("http://u:p%0d%0a@h/f").is_err());
    }

    #[test]
    fn validators() {
        let t = httpdate::parse_http_date("Tue, 15 Nov 1994 08:12:31 GMT").unwrap();
        let mut s = HttpStat {
            modified: Some(t),
            etag: Some("W/\"weak\"".into()),
            ..HttpStat::default()
        };
        assert_eq!(
            s.validator().unwrap().header_value(),
            "Tue, 15 Nov 1994 08:12:31 GMT"
        );
        s.etag = Some("\"5f-1a\"".into());
        assert_eq!(s.validator(), Some(Validator::ETag("\"5f-1a\"".into())));
    }
}
