//! The disk cell (`disk`): the big file (1 GiB from the page cache) downloaded and uploaded
//! onto the file system of `--dir` (ext4 by default; `--dir /dev/shm` for tmpfs), against a
//! local `cp` of the same file on the same file system, in one run.
//!
//! Every variant runs once per round, in a fixed order, for `runs` rounds (interleaved, not
//! all runs of one tool back to back): on this virtual machine the cost of writing into the
//! page cache depends on how recently memory was freed — a write onto pages just given back
//! by the previous run's delete runs at ~4.5 GB/s, one onto memory the host has reclaimed at
//! ~0.5 GB/s — so runs of one tool in a row would measure the previous run as much as the
//! tool. Before each run the machine settles the same way (`sync`, then a short pause).
//!
//! Variants: local `cp`; downloads with `gridos cp --write-behind on` and `off`, `globus-url-copy` ↔ globus-gridftp-server and `curl` ↔
//! vsftpd; uploads with `gridos cp` ↔ `gridos ftpd` (one server with `write_behind = "on"`,
//! one with `"off"`), `globus-url-copy` and `curl -T`. Every file
//! that arrives is checked by SHA-256 (outside the timed part). Reported: median wall,
//! MB/s, max/min wall, whole-machine CPU s/GB, throughput ÷ local cp and CPU ÷ globus.

use super::peers::{ClientKind, Server, ServerKind, can_connect, get_cmd, put_cmd};
use super::{Cell, Data, HarnessError, Row, Settings, file_hash, medians, settle, timed};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// One thing measured in the disk cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// `cp` of the big file to a new file beside it: what the file system takes.
    LocalCp,
    /// `gridos cp --write-behind on ftp://… file`.
    GridosGet,
    /// `gridos cp --write-behind off ftp://… file`.
    GridosGetNoWb,
    /// `globus-url-copy` ↔ globus-gridftp-server, download.
    GlobusGet,
    /// `curl` ↔ vsftpd, download.
    CurlGet,
    /// `gridos cp file ftp://…` ↔ `gridos ftpd` with `io.write_behind = "on"`.
    GridosPut,
    /// As `GridosPut`, the server with `io.write_behind = "off"`.
    GridosPutNoWb,
    /// `globus-url-copy` ↔ globus-gridftp-server, upload.
    GlobusPut,
    /// `curl -T` ↔ vsftpd, upload.
    CurlPut,
}

impl Variant {
    /// All variants, in the order each round runs them.
    pub const ALL: [Variant; 9] = [
        Variant::LocalCp,
        Variant::GridosGet,
        Variant::GridosGetNoWb,
        Variant::GlobusGet,
        Variant::CurlGet,
        Variant::GridosPut,
        Variant::GridosPutNoWb,
        Variant::GlobusPut,
        Variant::CurlPut,
    ];

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Variant::LocalCp => "local cp (the file system's limit)",
            Variant::GridosGet => "download: gridos cp --write-behind on ↔ gridos ftpd",
            Variant::GridosGetNoWb => "download: gridos cp --write-behind off ↔ gridos ftpd",
            Variant::GlobusGet => "download: globus-url-copy ↔ globus-gridftp-server",
            Variant::CurlGet => "download: curl ↔ vsftpd",
            Variant::GridosPut => "upload: gridos cp ↔ gridos ftpd (write_behind on)",
            Variant::GridosPutNoWb => "upload: gridos cp ↔ gridos ftpd (write_behind off)",
            Variant::GlobusPut => "upload: globus-url-copy ↔ globus-gridftp-server",
            Variant::CurlPut => "upload: curl -T ↔ vsftpd",
        }
    }

    fn upload(self) -> bool {
        matches!(
            self,
            Variant::GridosPut | Variant::GridosPutNoWb | Variant::GlobusPut | Variant::CurlPut
        )
    }

    fn of(name: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == name)
    }

    fn gridos(self) -> bool {
        matches!(
            self,
            Variant::GridosGet
                | Variant::GridosGetNoWb
                | Variant::GridosPut
                | Variant::GridosPutNoWb
        )
    }
}

/// The servers of the cell, each serving the data set's root.
struct Servers {
    gridos: Server,
    gridos_no_wb: Server,
    globus: Server,
    vsftpd: Server,
    _configs: [tempfile::NamedTempFile; 2],
}

impl Servers {
    fn start(root: &Path) -> Result<Servers, HarnessError> {
        let start = |k| Server::start(k, root, Ipv4Addr::LOCALHOST, None, &can_connect);
        let (gridos, on) = start_gridos(root, "on")?;
        let (gridos_no_wb, off) = start_gridos(root, "off")?;
        Ok(Servers {
            gridos,
            gridos_no_wb,
            globus: start(ServerKind::Globus)?,
            vsftpd: start(ServerKind::Vsftpd)?,
            _configs: [on, off],
        })
    }
}

/// A `gridos ftpd` whose `[io]` table says `write_behind = MODE`, from the file
/// `GRIDOS_IO_CONFIG` names, inherited from this process while it starts.
fn start_gridos(
    root: &Path,
    mode: &str,
) -> Result<(Server, tempfile::NamedTempFile), HarnessError> {
    use std::io::Write;
    let mut cfg = tempfile::NamedTempFile::new()
        .map_err(|e| HarnessError::Setup(format!("config file: {e}")))?;
    writeln!(cfg, "[io]\nwrite_behind = \"{mode}\"")
        .map_err(|e| HarnessError::Setup(format!("config file: {e}")))?;
    // SAFETY: the harness starts its servers from its one thread; nothing reads the
    // environment concurrently.
    unsafe { std::env::set_var("GRIDOS_IO_CONFIG", cfg.path()) };
    let server = Server::start(
        ServerKind::Gridos,
        root,
        Ipv4Addr::LOCALHOST,
        None,
        &can_connect,
    );
    // SAFETY: as above.
    unsafe { std::env::remove_var("GRIDOS_IO_CONFIG") };
    Ok((server?, cfg))
}

/// Where a variant's file lands, and the command that puts it there.
fn command(v: Variant, sv: &Servers, data: &Data, round: usize) -> (Command, PathBuf) {
    let src = data.root.join("big");
    let down = data.scratch.join("disk.out");
    let up = |name: &str| format!("up/disk-{name}-{round}");
    match v {
        Variant::LocalCp => {
            let mut c = Command::new("cp");
            c.arg(&src).arg(&down);
            (c, down)
        }
        Variant::GridosGet => {
            let mut c = get_cmd(ClientKind::Gridos, &sv.gridos.url("big"), &down);
            c.args(["--write-behind", "on"]);
            (c, down)
        }
        Variant::GridosGetNoWb => {
            let mut c = get_cmd(ClientKind::Gridos, &sv.gridos.url("big"), &down);
            c.args(["--write-behind", "off"]);
            (c, down)
        }
        Variant::GlobusGet => (
            get_cmd(ClientKind::Globus(&[]), &sv.globus.url("big"), &down),
            down,
        ),
        Variant::CurlGet => (
            get_cmd(ClientKind::Curl, &sv.vsftpd.url("big"), &down),
            down,
        ),
        Variant::GridosPut | Variant::GridosPutNoWb => {
            let (s, name) = match v {
                Variant::GridosPut => (&sv.gridos, up("gridos")),
                _ => (&sv.gridos_no_wb, up("gridos-nowb")),
            };
            (
                put_cmd(ClientKind::Gridos, &src, &s.url(&name)),
                data.root.join(name),
            )
        }
        Variant::GlobusPut => {
            let name = up("globus");
            (
                put_cmd(ClientKind::Globus(&[]), &src, &sv.globus.url(&name)),
                data.root.join(name),
            )
        }
        Variant::CurlPut => {
            let name = up("curl");
            (
                put_cmd(ClientKind::Curl, &src, &sv.vsftpd.url(&name)),
                data.root.join(name),
            )
        }
    }
}

/// The pause after `sync` before each run, the same for every variant.
const SETTLE: Duration = Duration::from_secs(2);

/// Runs the disk cell: `s.runs` interleaved rounds of every variant; one row per variant,
/// its note naming the file system.
pub fn cell(data: &Data, s: &Settings) -> Vec<Row> {
    let fs = gridos_io::filesystem_name(&data.scratch);
    let row = |v: Variant, result| Row {
        cell: Cell::Disk,
        pair: v.name().to_string(),
        gridos: v.gridos(),
        result,
        note: Some(fs.clone()),
    };
    let servers = match Servers::start(&data.root) {
        Ok(sv) => sv,
        Err(e) => {
            return Variant::ALL
                .into_iter()
                .map(|v| row(v, Err(e.to_string())))
                .collect();
        }
    };
    let mut samples: Vec<Result<Vec<(Duration, Duration)>, String>> =
        Variant::ALL.iter().map(|_| Ok(Vec::new())).collect();
    for round in 0..s.runs {
        for (i, &v) in Variant::ALL.iter().enumerate() {
            if samples[i].is_err() {
                continue;
            }
            settle();
            std::thread::sleep(SETTLE);
            let (mut cmd, dst) = command(v, &servers, data, round);
            let _ = std::fs::remove_file(&dst);
            let r = timed(&mut cmd).and_then(|t| {
                if file_hash(&dst) == Some(data.big_hash) {
                    Ok(t)
                } else {
                    Err("the file that arrived differs from the original".to_string())
                }
            });
            let _ = std::fs::remove_file(&dst);
            match r {
                Ok(t) => {
                    eprintln!(
                        "Disk {fs} round {round} {}: {:.3} s",
                        v.name(),
                        t.0.as_secs_f64()
                    );
                    if let Ok(done) = &mut samples[i] {
                        done.push(t);
                    }
                }
                Err(e) => {
                    eprintln!("Disk {fs} round {round} {}: FAILED: {e}", v.name());
                    samples[i] = Err(e);
                }
            }
        }
    }
    Variant::ALL
        .into_iter()
        .zip(samples)
        .map(|(v, r)| row(v, r.map(|t| medians(t, s.big, None))))
        .collect()
}

/// The Markdown table of the disk rows (those of one file system).
pub fn table(rows: &[&Row]) -> String {
    let fs = rows
        .first()
        .and_then(|r| r.note.clone())
        .unwrap_or_else(|| "unknown".into());
    let find = |v: Variant| {
        rows.iter()
            .find(|r| Variant::of(&r.pair) == Some(v))
            .and_then(|r| r.result.as_ref().ok())
    };
    let cp = find(Variant::LocalCp);
    let mut out = format!(
        "\n| disk ({fs}) | median wall | MB/s | max/min wall | CPU s/GB (machine) | ÷ local cp (throughput) | CPU/GB ÷ globus-url-copy's |\n| --- | --- | --- | --- | --- | --- | --- |\n"
    );
    for r in rows {
        let Some(variant) = Variant::of(&r.pair) else {
            continue;
        };
        match &r.result {
            Ok(f) => {
                let vs_cp = match (cp, variant) {
                    (_, Variant::LocalCp) => "—".to_string(),
                    (Some(c), _) => format!("{:.2}×", f.mb_per_sec() / c.mb_per_sec()),
                    (None, _) => "n/a".into(),
                };
                let globus = find(if variant.upload() {
                    Variant::GlobusPut
                } else {
                    Variant::GlobusGet
                });
                let vs_globus = match (globus, variant.gridos()) {
                    (Some(g), true) => format!("{:.2}×", f.cpu_per_gb() / g.cpu_per_gb()),
                    _ => "—".into(),
                };
                out += &format!(
                    "| {} | {:.3} s | {:.1} | {:.2} | {:.3} | {vs_cp} | {vs_globus} |\n",
                    r.pair,
                    f.wall.as_secs_f64(),
                    f.mb_per_sec(),
                    f.spread.1.as_secs_f64() / f.spread.0.as_secs_f64().max(1e-9),
                    f.cpu_per_gb(),
                );
            }
            Err(e) => {
                out += &format!(
                    "| {} | FAILED: {} | | | | | |\n",
                    r.pair,
                    e.replace('|', "/").replace('\n', " ")
                )
            }
        }
    }
    out
}
