//! Administrator defaults (the paper's "system-wide defaults an administrator sets").
//!
//! Read once from the file named by `GRIDOS_IO_CONFIG`, else `/etc/gridos/io.toml` if it
//! exists, else built-in defaults. The file is TOML with an `[io]` table (other tables, such as
//! `[ftp]`, belong to other services and are ignored here):
//!
//! ```toml
//! [io]
//! path = "auto"             # auto | io_uring-splice | splice | read-write
//! threads = 2               # I/O pool threads (one io_uring ring each)
//! pipe_size = 1048576       # bytes per splice pipe (capped by fs.pipe-max-size)
//! chunk_size = 1048576      # bytes per splice / read-write step
//! batch = 4                 # linked splice pairs per io_uring submission
//! sndbuf_default = 0        # SO_SNDBUF for new data sockets, 0 = kernel autotuning
//! rcvbuf_default = 0        # SO_RCVBUF for new data sockets, 0 = kernel autotuning
//! max_buffer = 67108864     # cap on any one socket buffer the tuner sets
//! auto_tune = true          # monitor TCP_INFO during transfers and raise buffers
//! monitor_interval_ms = 250 # how often the monitor samples TCP_INFO
//! max_streams = 16          # most parallel streams the tuner will suggest
//! max_total_buffer = 268435456 # cap on the buffers all streams of one transfer may force
//! write_behind = "auto"     # off | auto | on: write received files back window by window
//! write_behind_min = 4294967296 # auto: files at least this large (bytes)
//! write_behind_window = 16777216 # bytes per write-behind window
//! ```
//!
//! The same keys are readable and settable at run time by name (`io.auto_tune`, …) through
//! [`get_key`] and [`set_key`], which is what the control sockets and the C API use.

use crate::{Error, IoPath, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::{OnceLock, RwLock};

/// gridos-io settings. See the module documentation for the file format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IoConfig {
    /// `auto` or the name of an [`IoPath`] to force.
    pub path: String,
    /// Threads of the I/O pool.
    pub threads: usize,
    /// Requested pipe capacity in bytes.
    pub pipe_size: usize,
    /// Bytes per splice or read/write step.
    pub chunk_size: usize,
    /// Linked splice pairs per io_uring submission.
    pub batch: usize,
    /// SO_SNDBUF applied to data sockets at the start of a transfer; 0 keeps autotuning.
    pub sndbuf_default: usize,
    /// SO_RCVBUF applied to data sockets at the start of a transfer; 0 keeps autotuning.
    pub rcvbuf_default: usize,
    /// The largest socket buffer the tuner may set, per socket.
    pub max_buffer: usize,
    /// Whether transfers run the TCP_INFO monitor.
    pub auto_tune: bool,
    /// Monitor sampling interval in milliseconds.
    pub monitor_interval_ms: u64,
    /// The most parallel streams the tuner suggests.
    pub max_streams: u32,
    /// Cap on the sum of the buffers the streams of one transfer (one connection to a
    /// server) may set, so parallel streams × big buffers cannot exhaust memory.
    pub max_total_buffer: usize,
    /// Write-behind of received files ([`crate::WriteBehind`]): off, auto (files of at least
    /// `write_behind_min` bytes) or on.
    pub write_behind: crate::WriteBehindMode,
    /// The size from which `auto` write-behind applies.
    pub write_behind_min: u64,
    /// Bytes per write-behind window.
    pub write_behind_window: usize,
}

impl Default for IoConfig {
    fn default() -> Self {
        IoConfig {
            path: "auto".into(),
            threads: 2,
            pipe_size: 1 << 20,
            chunk_size: 1 << 20,
            batch: 4,
            sndbuf_default: 0,
            rcvbuf_default: 0,
            max_buffer: 64 << 20,
            auto_tune: true,
            monitor_interval_ms: 250,
            max_streams: 16,
            max_total_buffer: 256 << 20,
            write_behind: crate::WriteBehindMode::Auto,
            // Measured on ext4 (benches/RESULTS.md, "The disk end"): a 1 GiB download
            // is steadier with write-behind but 20 % slower at the median (it fits under
            // the kernel's dirty limit); an 8 GiB write, past that limit, is 7× faster.
            write_behind_min: 4 << 30,
            write_behind_window: 16 << 20,
        }
    }
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    io: IoConfig,
}

impl IoConfig {
    /// Parses the `[io]` table of a TOML document and validates it.
    pub fn from_toml(text: &str) -> Result<IoConfig> {
        let file: ConfigFile =
            toml::from_str(text).map_err(|e| Error::Config(format!("invalid TOML: {e}")))?;
        file.io.validate()?;
        Ok(file.io)
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<IoConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        IoConfig::from_toml(&text)
    }

    /// The forced path, or `None` for `auto`.
    pub fn forced_path(&self) -> Result<Option<IoPath>> {
        match self.path.as_str() {
            "auto" => Ok(None),
            other => other.parse().map(Some),
        }
    }

    /// Checks ranges; every setter goes through this.
    pub fn validate(&self) -> Result<()> {
        self.forced_path()?;
        let bad = |what: &str| Err(Error::Config(what.to_string()));
        if self.threads == 0 || self.threads > 1024 {
            return bad("io.threads must be between 1 and 1024");
        }
        if !(4096..=(1 << 30)).contains(&self.pipe_size) {
            return bad("io.pipe_size must be between 4096 and 1 GiB");
        }
        if !(4096..=(1 << 30)).contains(&self.chunk_size) {
            return bad("io.chunk_size must be between 4096 and 1 GiB");
        }
        if self.batch == 0 || self.batch > 16 {
            return bad("io.batch must be between 1 and 16");
        }
        if self.max_buffer < 65536 {
            return bad("io.max_buffer must be at least 65536");
        }
        if self.monitor_interval_ms == 0 {
            return bad("io.monitor_interval_ms must be positive");
        }
        if self.max_total_buffer < 65536 {
            return bad("io.max_total_buffer must be at least 65536");
        }
        if self.max_streams == 0 || self.max_streams > 256 {
            return bad("io.max_streams must be between 1 and 256");
        }
        if !(1 << 20..=1 << 30).contains(&self.write_behind_window) {
            return bad("io.write_behind_window must be between 1 MiB and 1 GiB");
        }
        Ok(())
    }

    /// The names of all keys, as used by [`get_key`] and [`set_key`].
    pub const KEYS: [&'static str; 15] = [
        "io.path",
        "io.threads",
        "io.pipe_size",
        "io.chunk_size",
        "io.batch",
        "io.sndbuf_default",
        "io.rcvbuf_default",
        "io.max_buffer",
        "io.auto_tune",
        "io.monitor_interval_ms",
        "io.max_streams",
        "io.max_total_buffer",
        "io.write_behind",
        "io.write_behind_min",
        "io.write_behind_window",
    ];

    /// Reads one key (`io.` prefix optional) as text.
    pub fn get(&self, key: &str) -> Result<String> {
        let k = key.strip_prefix("io.").unwrap_or(key);
        Ok(match k {
            "path" => self.path.clone(),
            "threads" => self.threads.to_string(),
            "pipe_size" => self.pipe_size.to_string(),
            "chunk_size" => self.chunk_size.to_string(),
            "batch" => self.batch.to_string(),
            "sndbuf_default" => self.sndbuf_default.to_string(),
            "rcvbuf_default" => self.rcvbuf_default.to_string(),
            "max_buffer" => self.max_buffer.to_string(),
            "auto_tune" => self.auto_tune.to_string(),
            "monitor_interval_ms" => self.monitor_interval_ms.to_string(),
            "max_streams" => self.max_streams.to_string(),
            "max_total_buffer" => self.max_total_buffer.to_string(),
            "write_behind" => self.write_behind.to_string(),
            "write_behind_min" => self.write_behind_min.to_string(),
            "write_behind_window" => self.write_behind_window.to_string(),
            _ => return Err(Error::Config(format!("unknown key {key:?}"))),
        })
    }

    /// Sets one key from text, validating the result; on error `self` is unchanged.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let mut next = self.clone();
        let k = key.strip_prefix("io.").unwrap_or(key);
        fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T> {
            v.trim()
                .parse()
                .map_err(|_| Error::Config(format!("{key}: {v:?} is not a valid number")))
        }
        match k {
            "path" => next.path = value.trim().to_string(),
            "threads" => next.threads = num(key, value)?,
            "pipe_size" => next.pipe_size = num(key, value)?,
            "chunk_size" => next.chunk_size = num(key, value)?,
            "batch" => next.batch = num(key, value)?,
            "sndbuf_default" => next.sndbuf_default = num(key, value)?,
            "rcvbuf_default" => next.rcvbuf_default = num(key, value)?,
            "max_buffer" => next.max_buffer = num(key, value)?,
            "auto_tune" => {
                next.auto_tune = match value.trim() {
                    "true" | "on" | "1" | "yes" => true,
                    "false" | "off" | "0" | "no" => false,
                    v => return Err(Error::Config(format!("{key}: {v:?} is not a boolean"))),
                }
            }
            "monitor_interval_ms" => next.monitor_interval_ms = num(key, value)?,
            "max_streams" => next.max_streams = num(key, value)?,
            "max_total_buffer" => next.max_total_buffer = num(key, value)?,
            "write_behind" => next.write_behind = value.trim().parse()?,
            "write_behind_min" => next.write_behind_min = num(key, value)?,
            "write_behind_window" => next.write_behind_window = num(key, value)?,
            _ => return Err(Error::Config(format!("unknown key {key:?}"))),
        }
        next.validate()?;
        *self = next;
        Ok(())
    }
}

fn global() -> &'static RwLock<IoConfig> {
    static CONFIG: OnceLock<RwLock<IoConfig>> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let from_env = std::env::var_os("GRIDOS_IO_CONFIG").map(std::path::PathBuf::from);
        let path = from_env.or_else(|| {
            let p = Path::new("/etc/gridos/io.toml");
            p.exists().then(|| p.to_path_buf())
        });
        let cfg = match path {
            Some(p) => match IoConfig::load(&p) {
                Ok(c) => {
                    tracing::info!(file = %p.display(), "gridos-io: configuration loaded");
                    c
                }
                Err(e) => {
                    tracing::error!(file = %p.display(), error = %e, "gridos-io: bad configuration file, using defaults");
                    IoConfig::default()
                }
            },
            None => IoConfig::default(),
        };
        RwLock::new(cfg)
    })
}

/// A copy of the process-wide configuration.
pub fn config() -> IoConfig {
    global().read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Replaces the process-wide configuration (validated first). Applies to transfers that
/// start afterwards.
pub fn set_config(cfg: IoConfig) -> Result<()> {
    cfg.validate()?;
    *global().write().unwrap_or_else(|p| p.into_inner()) = cfg;
    Ok(())
}

/// Reads a key of the process-wide configuration.
pub fn get_key(key: &str) -> Result<String> {
    global().read().unwrap_or_else(|p| p.into_inner()).get(key)
}

/// Sets a key of the process-wide configuration; takes effect for the next transfer.
pub fn set_key(key: &str, value: &str) -> Result<()> {
    let mut g = global().write().unwrap_or_else(|p| p.into_inner());
    g.set(key, value)?;
    tracing::info!(key, value, "gridos-io: configuration changed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_io_table_and_ignores_other_services() {
        let c = IoConfig::from_toml(
            "[ftp]\ndocroot='/srv'\n[io]\npath='splice'\nmax_buffer=1048576\nauto_tune=false\n",
        )
        .unwrap();
        assert_eq!(c.forced_path().unwrap(), Some(IoPath::Splice));
        assert_eq!(c.max_buffer, 1 << 20);
        assert!(!c.auto_tune);
        assert_eq!(c.chunk_size, IoConfig::default().chunk_size);
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        assert!(IoConfig::from_toml("[io]\nbogus=1\n").is_err());
        assert!(IoConfig::from_toml("[io]\npath='warp'\n").is_err());
        assert!(IoConfig::from_toml("[io]\nthreads=0\n").is_err());
        assert!(IoConfig::from_toml("[io\n").is_err());
    }

    #[test]
    fn get_and_set_by_key() {
        let mut c = IoConfig::default();
        for k in IoConfig::KEYS {
            let v = c.get(k).unwrap();
            c.set(k, &v).unwrap();
        }
        c.set("io.auto_tune", "off").unwrap();
        assert_eq!(c.get("auto_tune").unwrap(), "false");
        let before = c.clone();
        assert!(c.set("io.threads", "lots").is_err());
        assert!(c.set("io.pipe_size", "1").is_err());
        assert!(c.set("io.nope", "1").is_err());
        assert!(c.set("io.write_behind", "sometimes").is_err());
        assert!(c.set("io.write_behind_window", "4096").is_err());
        assert_eq!(c, before, "a failed set changes nothing");
    }
}
