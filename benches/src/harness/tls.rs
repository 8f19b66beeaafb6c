//! The FTPS cells (`tls-retr`, `tls-stor`): the big file (1 GiB from the page cache) over
//! explicit FTPS on loopback, `gridos cp ftpes://` ↔ `gridos ftpd` (rustls) against
//! `curl --ssl-reqd` ↔ vsftpd (OpenSSL) in the same run, and both in clear for what TLS
//! costs each.
//!
//! Besides wall time and whole-machine CPU, each run measures the CPU of both ends: the
//! client's from `getrusage(RUSAGE_CHILDREN)` around its run (the harness's only child
//! reaped in between), the server's from a cgroup the server is moved into at start
//! ([`machine::CpuGroup`]: it counts the session processes vsftpd forks, two per client,
//! after they exit, whoever reaps them), read once the server has no child left. Without a
//! cgroup (not root) it falls back to `/proc/PID/stat`, which misses session processes
//! that are not reaped by the server, and says so in the notes. RETR goes to /dev/null (after an untimed warm-up run into a file, checked by
//! SHA-256); every STOR is checked on the server side by SHA-256.
//!
//! Pairs: `gridos cp ftpes://` (the client's own choice of streams), `gridos cp -p 4
//! ftpes://` (MODE E: encryption spread over four connections), `gridos cp ftp://` (clear,
//! the zero-copy path), `curl --ssl-reqd` ↔ vsftpd and `curl` ↔ vsftpd (clear).

use super::peers::{Server, ServerKind, TlsFiles, gridos_bin};
use super::{Cell, Data, Figures, Row, Settings, file_hash, machine, median, settle};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One client ↔ server pairing of the FTPS cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsPair {
    /// `gridos cp ftpes://` ↔ `gridos ftpd`.
    GridosTls,
    /// `gridos cp -p 4 ftpes://` ↔ `gridos ftpd` (MODE E, four TLS data connections).
    GridosTlsP4,
    /// `gridos cp ftp://` ↔ `gridos ftpd`, clear.
    GridosPlain,
    /// `curl --ssl-reqd` ↔ vsftpd (OpenSSL), the reference.
    CurlVsftpdTls,
    /// `curl` ↔ vsftpd, clear.
    CurlVsftpdPlain,
}

impl TlsPair {
    /// All pairs, in the order they run and are listed.
    pub const ALL: [TlsPair; 5] = [
        TlsPair::GridosTls,
        TlsPair::GridosTlsP4,
        TlsPair::GridosPlain,
        TlsPair::CurlVsftpdTls,
        TlsPair::CurlVsftpdPlain,
    ];

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            TlsPair::GridosTls => "gridos cp ftpes:// ↔ gridos ftpd (TLS)",
            TlsPair::GridosTlsP4 => "gridos cp -p 4 ftpes:// ↔ gridos ftpd (TLS)",
            TlsPair::GridosPlain => "gridos cp ftp:// ↔ gridos ftpd (clear)",
            TlsPair::CurlVsftpdTls => "curl --ssl-reqd ↔ vsftpd (TLS, OpenSSL)",
            TlsPair::CurlVsftpdPlain => "curl ↔ vsftpd (clear)",
        }
    }

    fn server(self) -> ServerKind {
        match self {
            TlsPair::GridosTls | TlsPair::GridosTlsP4 | TlsPair::GridosPlain => ServerKind::Gridos,
            TlsPair::CurlVsftpdTls | TlsPair::CurlVsftpdPlain => ServerKind::Vsftpd,
        }
    }

    fn tls(self) -> bool {
        !matches!(self, TlsPair::GridosPlain | TlsPair::CurlVsftpdPlain)
    }

    fn gridos(self) -> bool {
        self.server() == ServerKind::Gridos
    }

    /// The command that moves the big file: RETR of `remote` to `local` (`/dev/null`
    /// allowed), or STOR of `local` to `remote` (a path relative to the served root).
    fn command(self, stor: bool, port: u16, remote: &str, local: &Path, ca: &Path) -> Command {
        let scheme = if self.tls() && self.gridos() {
            "ftpes"
        } else {
            "ftp"
        };
        let url = format!("{scheme}://127.0.0.1:{port}/{remote}");
        let mut c;
        if self.gridos() {
            c = Command::new(gridos_bin());
            c.args(["cp", "--quiet"]);
            if self.tls() {
                c.arg("--cacert").arg(ca);
            }
            if self == TlsPair::GridosTlsP4 {
                c.args(["-p", "4"]);
            }
            if stor {
                c.arg(local).arg(&url);
            } else {
                c.arg(&url).arg(local);
            }
        } else {
            c = Command::new("curl");
            c.args(["-s", "-S", "--fail"]);
            if self.tls() {
                c.arg("--ssl-reqd").arg("--cacert").arg(ca);
            }
            if stor {
                c.arg("-T").arg(local).arg(&url);
            } else {
                c.arg("-o").arg(local).arg(&url);
            }
        }
        c
    }
}

/// Failed runs are retried this often before the pair is reported as FAILED: vsftpd 3.0.3
/// answers some TLS 1.3 uploads with "426 Failure reading network stream" when the client
/// closes the data connection without reading the session tickets vsftpd sent on it (the
/// unread data turns the close into a reset); curl does that now and then.
const RETRIES: usize = 3;

/// CPU time of this process's reaped children so far (user + system).
fn children_cpu() -> Duration {
    // SAFETY: getrusage writes only into the rusage we pass; zeroed is a valid rusage.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time of process `pid` and of the children it has reaped (utime + stime + cutime +
/// cstime from /proc/PID/stat).
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(stat_ticks(&stat).saturating_mul(1_000_000_000) / hz)
}

/// utime + stime + cutime + cstime (fields 14–17) of a /proc/PID/stat line, in clock ticks.
fn stat_ticks(stat: &str) -> u64 {
    // The fields after the command name, which is in parentheses and may hold spaces and
    // parentheses itself.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    rest.split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum()
}

/// Whether `pid` has child processes now.
fn has_children(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks.flatten().any(|t| {
                std::fs::read_to_string(t.path().join("children"))
                    .is_ok_and(|c| !c.trim().is_empty())
            })
        })
        .unwrap_or(false)
}

/// One timed run: wall, whole-machine CPU, client CPU, server CPU.
struct Sample {
    wall: Duration,
    machine: Duration,
    client: Duration,
    server: Duration,
}

/// A server and how its CPU time is read: its cgroup, or /proc (own time plus reaped
/// children). Fields drop in order: the server's processes go before their cgroup.
struct ServerCpu {
    server: Server,
    group: Option<machine::CpuGroup>,
}

impl ServerCpu {
    fn new(server: Server) -> ServerCpu {
        ServerCpu {
            group: machine::CpuGroup::join(server.pid()),
            server,
        }
    }

    fn now(&self) -> Duration {
        match self.group.as_ref().and_then(machine::CpuGroup::usage) {
            Some(d) => d,
            None => process_cpu(self.server.pid()),
        }
    }
}

/// Runs `cmd` against the server; a non-zero exit is an error.
fn timed_ends(cmd: &mut Command, server: &ServerCpu) -> Result<Sample, String> {
    let pid = server.server.pid();
    let (s0, c0, m0, t0) = (
        server.now(),
        children_cpu(),
        machine::machine_busy(),
        Instant::now(),
    );
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    let (wall, machine) = (t0.elapsed(), machine::machine_busy().saturating_sub(m0));
    let client = children_cpu().saturating_sub(c0);
    if !out.status.success() {
        return Err(format!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .chars()
                .take(300)
                .collect::<String>()
        ));
    }
    // The session processes (vsftpd) are counted once reaped.
    let deadline = Instant::now() + Duration::from_secs(5);
    while has_children(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(Sample {
        wall,
        machine,
        client,
        server: server.now().saturating_sub(s0),
    })
}

/// What TLS version and cipher suite curl negotiated with the server on `port` (one small
/// RETR with `-v`), for the notes.
fn negotiated(port: u16, ca: &Path) -> Option<String> {
    let out = Command::new("curl")
        .args(["-s", "-S", "-v", "--ssl-reqd", "--cacert"])
        .arg(ca)
        .args(["-o", "/dev/null"])
        .arg(format!("ftp://127.0.0.1:{port}/one"))
        .stdin(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stderr).lines().find_map(|l| {
        l.split_once("SSL connection using ")
            .map(|(_, v)| v.trim().to_string())
    })
}

/// Runs one FTPS cell for one pair.
fn pair_cell(
    cell: Cell,
    pair: TlsPair,
    tls: &TlsFiles,
    data: &Data,
    s: &Settings,
) -> Result<(Figures, String), String> {
    let stor = cell == Cell::TlsStor;
    let server = Server::start_tls(pair.server(), &data.root, tls).map_err(|e| e.to_string())?;
    let port = server.addr().port();
    let cpu = ServerCpu::new(server);
    let mut notes = Vec::new();
    if cpu.group.is_none() {
        notes.push(
            "no cgroup for the server: its CPU from /proc/PID/stat (reaped children only)"
                .to_string(),
        );
    }
    if pair.tls() {
        notes.push(match negotiated(port, &tls.ca) {
            Some(v) => format!("curl negotiates {v} with this server"),
            None => "curl could not tell the negotiated suite".into(),
        });
    }
    if !stor {
        // Warm-up, untimed: into a file, checked.
        let dst = data.scratch.join("tls-warm.out");
        let _ = std::fs::remove_file(&dst);
        timed_ends(&mut pair.command(false, port, "big", &dst, &tls.ca), &cpu)?;
        if file_hash(&dst) != Some(data.big_hash) {
            return Err("downloaded file differs from the original (SHA-256)".into());
        }
        let _ = std::fs::remove_file(&dst);
    }
    let mut samples = Vec::new();
    let mut retried = Vec::new();
    for run in 0..s.runs {
        let mut attempt = 0;
        let sample = loop {
            settle();
            let name = format!("up/tls-{run}");
            let stored = data.root.join(&name);
            let _ = std::fs::remove_file(&stored);
            let r = if stor {
                let src = data.root.join("big");
                timed_ends(&mut pair.command(true, port, &name, &src, &tls.ca), &cpu).and_then(
                    |t| {
                        if file_hash(&stored) == Some(data.big_hash) {
                            Ok(t)
                        } else {
                            Err("uploaded file differs from the original (SHA-256)".into())
                        }
                    },
                )
            } else {
                let null = Path::new("/dev/null");
                timed_ends(&mut pair.command(false, port, "big", null, &tls.ca), &cpu)
            };
            let _ = std::fs::remove_file(&stored);
            match r {
                Ok(t) => break t,
                Err(e) if attempt < RETRIES => {
                    attempt += 1;
                    retried.push(e);
                }
                Err(e) => return Err(e),
            }
        };
        samples.push(sample);
    }
    if !retried.is_empty() {
        notes.push(format!(
            "{} failed run(s) retried, first: {}",
            retried.len(),
            retried[0]
        ));
    }
    let walls: Vec<Duration> = samples.iter().map(|x| x.wall).collect();
    let figures = Figures {
        spread: (
            walls.iter().min().copied().unwrap_or_default(),
            walls.iter().max().copied().unwrap_or_default(),
        ),
        wall: median(walls),
        bytes: s.big,
        cpu: median(samples.iter().map(|x| x.machine).collect()),
        peak_rss: None,
        ends: Some((
            median(samples.iter().map(|x| x.client).collect()),
            median(samples.iter().map(|x| x.server).collect()),
        )),
    };
    Ok((figures, notes.join("; ")))
}

/// Runs an FTPS cell (`Cell::TlsRetr` or `Cell::TlsStor`) for every pair.
pub fn cell(cell: Cell, data: &Data, s: &Settings) -> Vec<Row> {
    let tls = TlsFiles::create().map_err(|e| e.to_string());
    TlsPair::ALL
        .iter()
        .map(|&pair| {
            let result = tls
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|t| pair_cell(cell, pair, t, data, s));
            let (result, note) = match result {
                Ok((f, note)) => (Ok(f), Some(note).filter(|n| !n.is_empty())),
                Err(e) => (Err(e), None),
            };
            let row = Row {
                cell,
                pair: pair.name().into(),
                gridos: pair.gridos(),
                result,
                note,
            };
            eprintln!("{cell:?} {}: {}", row.pair, super::summary(&row.result));
            row
        })
        .collect()
}

/// CPU seconds per GB (10⁹ bytes).
fn per_gb(d: Duration, bytes: u64) -> f64 {
    d.as_secs_f64() / (bytes.max(1) as f64 / 1e9)
}

/// The FTPS rows: median wall (fastest–slowest), MB/s, CPU seconds per GB of the client,
/// the server, both, and the machine; gridos over TLS against curl ↔ vsftpd over TLS, and
/// each side's TLS against its clear transfer.
pub fn table(rows: &[&Row]) -> String {
    let find = |cell: Cell, name: &str| {
        rows.iter()
            .find(|r| r.cell == cell && r.pair == name)
            .and_then(|r| r.result.as_ref().ok())
    };
    let both = |f: &Figures| f.ends.map(|(c, s)| per_gb(c + s, f.bytes));
    let mut out = String::from(
        "\n| cell | client ↔ server | median wall | fastest–slowest | MB/s | CPU s/GB client | server | both ends | machine | compared |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        let f = match &r.result {
            Ok(f) => f,
            Err(e) => {
                out += &format!(
                    "| {:?} | {} | FAILED: {} | | | | | | | |\n",
                    r.cell,
                    r.pair,
                    e.replace('|', "/").replace('\n', " ")
                );
                continue;
            }
        };
        let pair = TlsPair::ALL.iter().find(|p| p.name() == r.pair).copied();
        // `num` over `den`: throughput and CPU per GB of both ends.
        let ratio = |num: Option<&Figures>, den: Option<&Figures>, label: &str| match (num, den) {
            (Some(n), Some(d)) => match (both(n), both(d)) {
                (Some(a), Some(b)) => format!(
                    "{label}: {:.2}× throughput, {:.2}× CPU/GB (both ends)",
                    n.mb_per_sec() / d.mb_per_sec(),
                    a / b
                ),
                _ => format!(
                    "{label}: {:.2}× throughput",
                    n.mb_per_sec() / d.mb_per_sec()
                ),
            },
            _ => format!("{label}: n/a (a pair failed)"),
        };
        let this = Some(f);
        let other = |p: TlsPair| find(r.cell, p.name());
        let compared = match pair {
            Some(TlsPair::GridosTls | TlsPair::GridosTlsP4) => ratio(
                this,
                other(TlsPair::CurlVsftpdTls),
                "this ÷ curl↔vsftpd TLS",
            ),
            Some(TlsPair::GridosPlain) => {
                ratio(other(TlsPair::GridosTls), this, "gridos TLS ÷ this")
            }
            Some(TlsPair::CurlVsftpdPlain) => {
                ratio(other(TlsPair::CurlVsftpdTls), this, "vsftpd TLS ÷ this")
            }
            _ => "reference".into(),
        };
        let (client, server) = f.ends.unwrap_or_default();
        out += &format!(
            "| {:?} | {} | {:.3} s | {:.3}–{:.3} s | {:.1} | {:.3} | {:.3} | {:.3} | {:.3} | {compared} |\n",
            r.cell,
            r.pair,
            f.wall.as_secs_f64(),
            f.spread.0.as_secs_f64(),
            f.spread.1.as_secs_f64(),
            f.mb_per_sec(),
            per_gb(client, f.bytes),
            per_gb(server, f.bytes),
            per_gb(client + server, f.bytes),
            f.cpu_per_gb(),
        );
    }
    let notes: Vec<String> = rows
        .iter()
        .filter_map(|r| Some(format!("- {:?} {}: {}", r.cell, r.pair, r.note.as_ref()?)))
        .collect();
    if !notes.is_empty() {
        out += &format!("\n{}\n", notes.join("\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_an_awkward_command_name() {
        let line = "4242 (vsftpd (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 40 50 20 0 1 0";
        assert_eq!(stat_ticks(line), 7 + 3 + 40 + 50);
        assert_eq!(stat_ticks("garbage"), 0);
    }

    fn row(cell: Cell, pair: TlsPair, secs: f64, client: f64, server: f64) -> Row {
        let d = Duration::from_secs_f64;
        Row {
            cell,
            pair: pair.name().into(),
            gridos: pair.gridos(),
            result: Ok(Figures {
                wall: d(secs),
                spread: (d(secs), d(secs)),
                bytes: 1_000_000_000,
                cpu: d(client + server),
                peak_rss: None,
                ends: Some((d(client), d(server))),
            }),
            note: None,
        }
    }

    #[test]
    fn table_compares_gridos_with_vsftpd_and_tls_with_clear() {
        let rows = [
            row(Cell::TlsRetr, TlsPair::GridosTls, 1.0, 0.3, 0.2),
            row(Cell::TlsRetr, TlsPair::GridosPlain, 0.5, 0.1, 0.1),
            row(Cell::TlsRetr, TlsPair::CurlVsftpdTls, 2.0, 0.5, 0.5),
            Row {
                result: Err("curl failed | badly".into()),
                ..row(Cell::TlsStor, TlsPair::CurlVsftpdTls, 1.0, 0.0, 0.0)
            },
            row(Cell::TlsStor, TlsPair::GridosTls, 1.0, 0.3, 0.2),
        ];
        let refs: Vec<&Row> = rows.iter().collect();
        let t = table(&refs);
        let line = |cell: &str, pair: TlsPair| {
            t.lines()
                .find(|l| l.starts_with(&format!("| {cell} | {} |", pair.name())))
                .unwrap_or_else(|| panic!("no {cell} {pair:?} row in\n{t}"))
                .to_string()
        };
        let g = line("TlsRetr", TlsPair::GridosTls);
        assert!(g.contains("| 1000.0 | 0.300 | 0.200 | 0.500 |"), "{g}");
        assert!(g.contains("2.00× throughput, 0.50× CPU/GB"), "{g}");
        let p = line("TlsRetr", TlsPair::GridosPlain);
        assert!(
            p.contains("gridos TLS ÷ this: 0.50× throughput, 2.50× CPU/GB"),
            "{p}"
        );
        assert!(line("TlsRetr", TlsPair::CurlVsftpdTls).contains("reference"));
        let f = line("TlsStor", TlsPair::CurlVsftpdTls);
        assert!(f.contains("FAILED: curl failed / badly"), "{f}");
        assert!(line("TlsStor", TlsPair::GridosTls).contains("n/a (a pair failed)"));
    }
}
