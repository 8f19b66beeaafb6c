//! `gridos cache`: the shared cache of [`crate::cache`] from the command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Subcommand};

use crate::cache::{Cache, CacheEntry, Origin};
use crate::{Error, ErrorKind, Result, Url};

/// Arguments of `gridos cache`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  gridos cache add --tag job42 gridftp://data.example.org/ref/genome.fa
                  fetch once (unless cached and fresh), print the local path
  gridos cache cleanup --tag job42
                  the job is done: drop every file it held
  gridos cache budget 20GiB
                  keep up to 20 GiB of untagged files for later jobs
Exit codes as for `gridos cp` (see `gridos cp --help`).")]
pub struct CacheArgs {
    /// Cache directory (default: $GRIDOS_CACHE, else $XDG_CACHE_HOME/gridos, else
    /// ~/.cache/gridos).
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: CacheCommand,
}

/// The `gridos cache` subcommands.
#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Fetch URL into the cache unless a fresh copy is there, hold it for TAG, and print
    /// the local path.
    Add {
        /// The reference to hold the entry by (a job, a session).
        #[arg(long)]
        tag: String,
        /// ftp://, gridftp:// or a local path.
        url: String,
    },
    /// Drop TAG's reference to URL (the file goes when no tag holds it, unless the budget
    /// keeps it).
    Delete {
        /// The reference to drop.
        #[arg(long)]
        tag: String,
        /// The URL as given to `add`.
        url: String,
    },
    /// Drop every reference TAG holds.
    Cleanup {
        /// The reference to drop everywhere.
        #[arg(long)]
        tag: String,
    },
    /// Show the cached entries.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show the disk budget for untagged entries, or set it (e.g. 10GiB; `none`: keep no
    /// untagged entries).
    Budget {
        /// New budget.
        size: Option<String>,
    },
}

/// Runs a `gridos cache` subcommand, fetching through `origin`.
pub fn run(args: CacheArgs, origin: &dyn Origin) -> Result<ExitCode> {
    let dir = Cache::default_dir(args.cache_dir.as_deref())?;
    let cache = Cache::open(&dir)?;
    match args.command {
        CacheCommand::Add { tag, url } => {
            let path = cache.add(&Url::parse(&url)?, &tag, origin)?;
            println!("{}", path.display());
        }
        CacheCommand::Delete { tag, url } => cache.delete(&Url::parse(&url)?, &tag)?,
        CacheCommand::Cleanup { tag } => {
            cache.cleanup_tag(&tag)?;
        }
        CacheCommand::List { json } => print_list(&cache.list()?, json),
        CacheCommand::Budget { size: None } => match cache.budget()? {
            Some(b) => println!("{b}"),
            None => println!("none"),
        },
        CacheCommand::Budget { size: Some(s) } => {
            let bytes = match s.as_str() {
                "none" => None,
                s => Some(super::parse_size(s).map_err(|m| {
                    Error::new(ErrorKind::InvalidInput, "gridos cache budget").detail(m)
                })?),
            };
            cache.set_budget(bytes)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_list(entries: &[CacheEntry], json: bool) {
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    if json {
        let v: Vec<_> = entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "url": e.url, "path": e.path, "size": e.size, "tags": e.tags,
                    "last_used": secs(e.last_used), "modified": e.modified.map(secs),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return;
    }
    for e in entries {
        let tags = if e.tags.is_empty() {
            "(untagged)".to_string()
        } else {
            e.tags.join(",")
        };
        println!(
            "{:>12}  {:<20}  {}  {}",
            e.size,
            tags,
            e.url,
            e.path.display()
        );
    }
}
