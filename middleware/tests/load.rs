//! `gridos ftpd` under load, checked for correctness (the figures, against
//! globus-gridftp-server and vsftpd, come from the `load` benchmark binary and are in
//! benches/RESULTS.md): a thousand sessions held at once while one more client is served,
//! two hundred downloads and two hundred uploads at once with every byte checked, and
//! connection churn — after each, the server's fds come back to where they were and its
//! memory does not grow.

mod util;

use gridos_benches::harness::load::{self, Direction, Target};
use std::time::Duration;
use util::Ftpd;

/// Memory the server may keep after a run (allocator arenas and caches it reuses), beyond
/// which it counts as a leak.
const RSS_SLACK: u64 = 16 << 20;

fn server() -> (tempfile::TempDir, Ftpd, Target) {
    load::raise_fd_limit();
    let (tree, root) = load::served_tree(&std::env::temp_dir()).unwrap();
    let ftpd = Ftpd::start(&root, &["--max-clients", "2000", "--max-per-ip", "2000"]);
    let t = Target {
        addr: ftpd.addr,
        pid: ftpd.pid(),
        root,
        prefix: String::new(),
    };
    (tree, ftpd, t)
}

#[test]
fn a_thousand_sessions_held_while_one_more_is_served() {
    let (_tree, _ftpd, t) = server();
    let s = load::hold_sessions(&t, 1000, Duration::from_secs(20)).unwrap();
    eprintln!("{s:?}");
    assert_eq!(s.held, 1000);
    assert!(
        s.fds.1 >= s.fds.0 + 1000,
        "a held session is a connection: {:?}",
        s.fds
    );
    // A liveness bound, not a benchmark: the one-more client was served at all, promptly.
    assert!(
        s.new_client < Duration::from_secs(10),
        "new client took {:?}",
        s.new_client
    );
    assert!(s.fds.2 <= s.fds.0, "fds left behind: {:?}", s.fds);
    assert!(
        s.rss.2 <= s.rss.0 + RSS_SLACK,
        "memory kept after the sessions closed: {:?}",
        s.rss
    );
}

#[test]
fn two_hundred_downloads_and_two_hundred_uploads_at_once() {
    let (_tree, _ftpd, t) = server();
    let size = 1 << 20;
    load::prepare_downloads(&t.root, 200, size).unwrap();
    let fds = t.fds();
    let down = load::concurrent(&t, 200, size, Direction::Down).unwrap();
    assert_eq!((down.files, down.bytes), (200, 200 * size));
    let up = load::concurrent(&t, 200, size, Direction::Up).unwrap();
    assert_eq!((up.files, up.bytes), (200, 200 * size));
    eprintln!("{down:?} {up:?}");
    // Sessions gone, fds back (the I/O engine's pipe pool may keep what it reuses).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while t.fds() > fds + 64 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(t.fds() <= fds + 64, "fds {} → {}", fds, t.fds());
}

#[test]
fn churn_leaves_no_fds_or_memory_behind() {
    let (_tree, _ftpd, t) = server();
    let c = load::churn(&t, 2000, Duration::from_secs(20)).unwrap();
    eprintln!("{c:?}");
    assert!(c.fds.1 <= c.fds.0, "fds grew: {:?}", c.fds);
    assert!(c.rss.1 <= c.rss.0 + RSS_SLACK, "memory grew: {:?}", c.rss);
}
