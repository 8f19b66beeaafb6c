//! io engine: file → socket and socket → file over loopback, 1 GiB, page cache warm, for each
//! I/O path in the same run, measured three ways: wall clock (throughput), CPU time of the
//! whole process (both ends of the connection), and CPU time of the side under test (the
//! process minus the peer thread). The peer is an ordinary `read(2)` loop for file → socket
//! and a `sendfile(2)` source for socket → file. The `floor-*` cells measure the least work
//! the side can do at all (TCP alone for file → socket, the page-cache write alone for
//! socket → file; see `engine::Floor`): figures no engine can go below.
//!
//! `cargo bench -p gridos-benches --bench io_engine`; `GRIDOS_BENCH_DIR` picks where the
//! files live (default: the system temp dir, i.e. a disk file system's page cache, as an FTP
//! server sees it; /dev/shm gives tmpfs);
//! `GRIDOS_BENCH_SIZE` overrides the size in bytes. Summarise with
//! `python3 benches/criterion_summary.py wall cpu_process cpu_side`.

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use gridos_benches::engine::{
    Direction, Floor, Sample, Sink, cpu_time, floor_once, run_once, warm_source,
};
use gridos_io::IoPath;
use std::path::PathBuf;
use std::time::Duration;

/// Measures process CPU time (user + system, all threads) instead of wall time.
struct CpuTime;

static WALL: WallTime = WallTime;

impl Measurement for CpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        cpu_time()
    }
    fn end(&self, i: Duration) -> Duration {
        cpu_time().saturating_sub(i)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}

fn setup() -> (PathBuf, PathBuf, u64) {
    let dir = std::env::var_os("GRIDOS_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let size = std::env::var("GRIDOS_BENCH_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1u64 << 30);
    let src = warm_source(&dir, size).expect("create the benchmark source file");
    (src, dir.join("gridos-bench-dst"), size)
}

fn cases<M: Measurement<Value = Duration>>(
    c: &mut Criterion<M>,
    group: &str,
    pick: fn(&Sample) -> Duration,
) {
    let (src, dst, size) = setup();
    for (name, dir) in [
        ("file_to_socket", Direction::FileToSocket),
        ("socket_to_file", Direction::SocketToFile),
    ] {
        let mut g = c.benchmark_group(format!("{group}/{name}"));
        g.sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1));
        g.throughput(Throughput::Bytes(size));
        for path in IoPath::ALL {
            g.bench_function(BenchmarkId::from_parameter(path.name()), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            pick(
                                &run_once(dir, path, Sink::Read, &src, &dst, size)
                                    .expect("benchmark run"),
                            )
                        })
                        .sum()
                })
            });
        }
        // The floors: what the side would cost with no engine at all (see `Floor`).
        for &floor in Floor::of(dir) {
            g.bench_function(BenchmarkId::from_parameter(floor.name()), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| pick(&floor_once(floor, &dst, size).expect("floor run")))
                        .sum()
                })
            });
        }
        g.finish();
    }
    let _ = std::fs::remove_file(&dst);
}

fn wall(c: &mut Criterion) {
    cases(c, "wall", |s| s.wall);
}

fn cpu(c: &mut Criterion<CpuTime>) {
    cases(c, "cpu_process", |s| s.cpu);
    cases(c, "cpu_side", |s| s.cpu_side);
}

criterion_group!(wall_group, wall);
criterion_group! {
    name = cpu_group;
    config = Criterion::default().with_measurement(CpuTime);
    targets = cpu
}
criterion_main!(wall_group, cpu_group);
