//! Quick look at one engine configuration: `engine_probe DIRECTION PATH [pipe_size] [batch]`;
//! PATH `floor` runs the direction's floor (see `engine::Floor`).
use gridos_benches::engine::*;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let dir = if a[1] == "send" {
        Direction::FileToSocket
    } else {
        Direction::SocketToFile
    };
    let floor = a[2] == "floor";
    let path: gridos_io::IoPath = if floor {
        gridos_io::IoPath::ReadWrite
    } else {
        a[2].parse().unwrap()
    };
    if let Some(p) = a.get(3) {
        gridos_io::set_key("io.pipe_size", p).unwrap();
        gridos_io::set_key("io.chunk_size", p).unwrap();
    }
    if let Some(b) = a.get(4) {
        gridos_io::set_key("io.batch", b).unwrap();
    }
    let dd = std::env::var("DIR").unwrap_or_else(|_| "/dev/shm".into());
    let d = std::path::Path::new(&dd);
    let src = warm_source(d, 1 << 30).unwrap();
    let mut v: Vec<_> = (0..5)
        .map(|_| {
            if floor {
                // The direction's floors, summed.
                let runs: Vec<Sample> = Floor::of(dir)
                    .iter()
                    .map(|&f| floor_once(f, &d.join("probe-dst"), 1 << 30).unwrap())
                    .collect();
                let sum = |f: fn(&Sample) -> std::time::Duration| runs.iter().map(f).sum();
                return Sample {
                    wall: sum(|s| s.wall),
                    cpu: sum(|s| s.cpu),
                    cpu_side: sum(|s| s.cpu_side),
                };
            }
            run_once(
                dir,
                path,
                if std::env::var("SINK").is_ok() {
                    Sink::Splice
                } else {
                    Sink::Read
                },
                &src,
                &d.join("probe-dst"),
                1 << 30,
            )
            .unwrap()
        })
        .collect();
    v.sort_by_key(|s| s.wall);
    let m = v[2];
    println!(
        "{:?} {} {:?}: {:.2} GiB/s, cpu {:.3} s/GiB, side {:.3} s/GiB",
        dir,
        if floor { "floor" } else { path.name() },
        a.get(3..),
        1.0 / m.wall.as_secs_f64(),
        m.cpu.as_secs_f64(),
        m.cpu_side.as_secs_f64()
    );
}
