//! Quick look at one engine configuration: `engine_probe DIRECTION PATH [pipe_size] [batch]`.
use gridos_benches::engine::*;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let dir = if a[1] == "send" {
        Direction::FileToSocket
    } else {
        Direction::SocketToFile
    };
    let path: gridos_io::IoPath = a[2].parse().unwrap();
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
        path,
        a.get(3..),
        1.0 / m.wall.as_secs_f64(),
        m.cpu.as_secs_f64(),
        m.cpu_side.as_secs_f64()
    );
}
