//! # gridos-rm — resource query, usage and reservations
//!
//! The paper's resource-management module (§IV-A.3), for one node:
//!
//! - [`query()`]: what the node has — [`CpuInfo`] (count, model, load), [`MemInfo`],
//!   [`DiskInfo`] per mount, [`NetInterface`]s with addresses and speed — as typed structs that
//!   serialise to JSON.
//! - [`usage`]: what a process uses — live from /proc ([`live_usage`]), final from wait4's
//!   rusage ([`from_rusage`]) plus its cgroup's statistics ([`CgroupStats`]).
//! - [`Ledger`]: reservations (cpus, memory, disk, duration) with admission control, expiry and
//!   release.
//! - [`Enforcer`]: confines processes started under a reservation — cgroup v2 where the host has
//!   it, cgroup v1 where that is what it has, rlimits otherwise — and reports which
//!   ([`Enforcement`]); nothing is skipped silently.
//!
//! Start with [`query()`] and [`Ledger::reserve`]. Process spawning itself is in gridos-pm, which
//! calls [`Enforcer::prepare`] and runs [`ChildHook::apply`] in the child.
//!
//! ```
//! let r = gridos_rm::query().unwrap();
//! assert!(r.cpus.count >= 1 && r.memory.total_bytes > 0);
//! let json = serde_json::to_string(&r).unwrap();
//! assert!(json.contains("\"load\""));
//! ```

pub mod enforce;
pub mod error;
pub mod query;
pub mod reserve;
pub mod usage;

pub use enforce::{CgroupStats, ChildHook, Confinement, Enforcement, Enforcer, Group, Mechanism};
pub use error::{Error, Result};
pub use query::{
    CpuInfo, DiskInfo, MemInfo, NetInterface, Resources, cpus, disks, interfaces, memory, query,
};
pub use reserve::{Capacity, Ledger, Request, Reservation};
pub use usage::{Usage, from_rusage, live_usage};
