//! Query, usage and enforcement against the real host.

use gridos_rm::*;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::sync::Arc;

#[test]
fn query_reports_this_host() {
    let r = query().unwrap();
    assert!(r.cpus.count >= 1);
    assert!(r.cpus.load.iter().all(|l| *l >= 0.0));
    assert!(r.memory.available_bytes <= r.memory.total_bytes && r.memory.total_bytes > 0);
    assert!(
        r.disks.iter().any(|d| d.mount == "/" && d.total_bytes > 0),
        "{:?}",
        r.disks
    );
    let lo = r.interfaces.iter().find(|i| i.name == "lo").expect("lo");
    assert!(lo.addresses.iter().any(|a| a == "127.0.0.1"), "{lo:?}");
    let json = serde_json::to_string(&r).unwrap();
    let back: Resources = serde_json::from_str(&json).unwrap();
    assert_eq!(back.cpus.count, r.cpus.count);
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A memory hog under a 64 MiB reservation is killed by the mechanism in effect and the
/// enforcement says which. Root only (cgroups).
#[test]
fn memory_reservation_is_enforced() {
    if !is_root() {
        eprintln!("SKIP memory_reservation_is_enforced: needs root for cgroups");
        return;
    }
    let enf = Arc::new(Enforcer::detect(&format!("rmtest{}", std::process::id())));
    eprintln!("enforcer: {}", enf.describe());
    let cap = Capacity {
        cpus: 1.0,
        memory_bytes: 1 << 40,
        disk_bytes: 0,
    };
    let mut ledger = Ledger::new(cap, enf.clone(), "t");
    let res = ledger
        .reserve(Request {
            cpus: 0.5,
            memory_bytes: 64 << 20,
            disk_bytes: 0,
            duration_secs: 60,
        })
        .unwrap();
    assert!(res.enforcement.mechanism.is_some(), "{}", res.enforcement);
    let conf = enf.prepare(Some(ledger.group(&res.id).unwrap())).unwrap();
    let mut cmd = std::process::Command::new("sh");
    // Grow a shell variable to ~256 MiB.
    cmd.args(["-c", "x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while :; do x=$x$x; done"]);
    let hook = conf.child_hook();
    // SAFETY: the hook only uses async-signal-safe calls.
    unsafe { cmd.pre_exec(move || hook.apply()) };
    let st = cmd.status().unwrap();
    let stats = conf.stats();
    eprintln!(
        "status {st:?} stats {stats:?} enforcement {}",
        conf.enforcement
    );
    assert!(!st.success());
    if conf.uses_cgroups() {
        assert_eq!(st.signal(), Some(9), "killed by the OOM killer");
        assert!(stats.oom_kills >= 1, "{stats:?}");
        assert!(stats.memory_peak_bytes.unwrap() <= 64 << 20);
    }
    conf.cleanup(&enf);
    ledger.release(&res.id).unwrap();
}
