//! gridos benchmarks: criterion micro-benchmarks, a side-by-side harness against real
//! peers, and a WAN emulator.
//!
//! - [`engine`]: the loopback cases of the io engine benchmark (`benches/io_engine.rs`).
//! - [`harness`]: the side-by-side harness against real peers (binary `harness`).
//! - [`wan`]: a long-fat-network emulator in user space (two network namespaces joined
//!   by TUN devices and a forwarder that delays, rate-limits, queues and drops), used by
//!   the harness for its emulated-WAN cells and runnable on its own as `wanem`.

pub mod engine;
pub mod harness;
pub mod wan;
