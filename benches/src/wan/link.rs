//! One direction of the emulated link: a thread that reads packets from one TUN
//! device, holds them in a FIFO byte ring, and writes each to the other TUN device at
//! its departure time.
//!
//! The model is a bottleneck queue followed by a propagation delay: a packet that
//! arrives at `t` starts serialisation at `max(t, link free)`, takes `size × 8 / rate`,
//! and leaves the emulator `delay` after its serialisation ends. Departures are thus
//! `max(arrival + tx + delay, previous departure + tx)`, non-decreasing, so a FIFO
//! suffices. The queue occupancy is the bytes not yet serialised,
//! `(link free − now) × rate / 8`; a packet that would push it past the limit is
//! dropped (tail drop). Random loss is applied on arrival. While the link is partitioned
//! every packet is dropped: those arriving, and those queued or on the wire.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::time::TimeSpec;

use super::WanParams;

/// Counters of one direction, updated by its forwarding thread.
#[derive(Debug, Default)]
pub(crate) struct LinkCounters {
    pub(crate) packets: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) dropped_queue: AtomicU64,
    pub(crate) dropped_loss: AtomicU64,
    pub(crate) dropped_partition: AtomicU64,
    pub(crate) errors: AtomicU64,
}

/// Longest a forwarding thread sleeps before looking at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);
/// Packets read in a row before departures are looked at again.
const READ_BATCH: usize = 64;

struct Pending {
    depart_ns: u64,
    offset: usize,
    len: usize,
}

/// FIFO of packets stored back to back in one reusable buffer.
struct Ring {
    buf: Vec<u8>,
    head: usize,
    queue: VecDeque<Pending>,
}

impl Ring {
    fn new(bytes: usize, mtu: usize) -> Ring {
        Ring {
            buf: vec![0; bytes],
            head: 0,
            queue: VecDeque::with_capacity((bytes / mtu).clamp(64, 1 << 16)),
        }
    }

    /// Offset of a free, contiguous region of `want` bytes at the head, if any.
    fn reserve(&mut self, want: usize) -> Option<usize> {
        let cap = self.buf.len();
        let Some(front) = self.queue.front() else {
            self.head = 0;
            return (want <= cap).then_some(0);
        };
        let tail = front.offset;
        if self.head > tail {
            if cap - self.head >= want {
                Some(self.head)
            } else if want < tail {
                Some(0)
            } else {
                None
            }
        } else if self.head + want < tail {
            Some(self.head)
        } else {
            None
        }
    }

    fn push(&mut self, offset: usize, len: usize, depart_ns: u64) {
        self.head = offset + len;
        self.queue.push_back(Pending {
            depart_ns,
            offset,
            len,
        });
    }
}

/// Small xorshift generator for the random loss; quality is ample for a coin flip.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Everything a forwarding thread needs.
pub(crate) struct Link {
    pub(crate) input: Arc<File>,
    pub(crate) output: Arc<File>,
    pub(crate) params: WanParams,
    pub(crate) counters: Arc<LinkCounters>,
    pub(crate) stop: Arc<AtomicBool>,
    /// Set while the link is partitioned (shared by both directions).
    pub(crate) partitioned: Arc<AtomicBool>,
    pub(crate) seed: u64,
}

impl Link {
    /// Forwards packets until the stop flag is set.
    pub(crate) fn run(self) {
        // A 1 ns slack makes sleeps until a departure end on time instead of up to
        // 50 µs late (the default); failure only costs precision.
        let _ = nix::sys::prctl::set_timerslack(1);
        let mtu = self.params.mtu as usize;
        let store = usize::try_from(self.params.store_bytes()).unwrap_or(usize::MAX);
        let mut ring = Ring::new(store, mtu);
        let mut scratch = vec![0u8; mtu];
        let mut rng = Rng(self.seed | 1);
        let epoch = Instant::now();
        let now_ns = || epoch.elapsed().as_nanos() as u64;
        let ns_per_byte = 8e9 / self.params.rate_bits_per_sec as f64;
        let delay_ns = self.params.delay.as_nanos() as f64;
        let limit = self.params.queue_limit_bytes as f64;
        let loss = self.params.loss;
        // Virtual time (ns since epoch) at which the bottleneck finishes serialising
        // everything accepted so far.
        let mut link_free = 0.0f64;
        let c = &*self.counters;
        let (mut input, mut output) = (&*self.input, &*self.output);

        while !self.stop.load(Ordering::Relaxed) {
            // Send what is due.
            let now = now_ns();
            while let Some(p) = ring.queue.front() {
                if p.depart_ns > now {
                    break;
                }
                if self.partitioned.load(Ordering::Relaxed) {
                    c.dropped_partition.fetch_add(1, Ordering::Relaxed);
                    ring.queue.pop_front();
                    continue;
                }
                match output.write(&ring.buf[p.offset..p.offset + p.len]) {
                    Ok(_) => {
                        c.packets.fetch_add(1, Ordering::Relaxed);
                        c.bytes.fetch_add(p.len as u64, Ordering::Relaxed);
                    }
                    Err(_) => {
                        c.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                ring.queue.pop_front();
            }

            // Take in what has arrived.
            let mut read = 0;
            while read < READ_BATCH {
                let slot = ring.reserve(mtu);
                let buf = match slot {
                    Some(off) => &mut ring.buf[off..off + mtu],
                    None => &mut scratch[..],
                };
                let len = match input.read(buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => {
                        c.errors.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(1));
                        break;
                    }
                };
                read += 1;
                if self.partitioned.load(Ordering::Relaxed) {
                    c.dropped_partition.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let arrival = now_ns() as f64;
                if loss > 0.0 && rng.next_f64() < loss {
                    c.dropped_loss.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let backlog_bytes = (link_free - arrival).max(0.0) / ns_per_byte;
                let Some(off) = slot else {
                    c.dropped_queue.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if backlog_bytes + len as f64 > limit {
                    c.dropped_queue.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                link_free = link_free.max(arrival) + len as f64 * ns_per_byte;
                ring.push(off, len, (link_free + delay_ns) as u64);
            }
            if read == READ_BATCH {
                continue;
            }

            // Sleep until the next departure, a new packet, or the stop poll.
            let now = now_ns();
            let wait = match ring.queue.front() {
                Some(p) if p.depart_ns <= now => continue,
                Some(p) => Duration::from_nanos(p.depart_ns - now).min(STOP_POLL),
                None => STOP_POLL,
            };
            let mut fds = [PollFd::new(input.as_fd(), PollFlags::POLLIN)];
            let _ = ppoll(&mut fds, Some(TimeSpec::from_duration(wait)), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_wraps_and_refuses_when_full() {
        let mut r = Ring::new(100, 30);
        let a = r.reserve(30).unwrap();
        assert_eq!(a, 0);
        r.push(a, 30, 1);
        let b = r.reserve(30).unwrap();
        assert_eq!(b, 30);
        r.push(b, 30, 2);
        let c = r.reserve(30).unwrap();
        assert_eq!(c, 60);
        r.push(c, 25, 3);
        // 15 bytes left at the end, front still at 0: full.
        assert!(r.reserve(30).is_none());
        r.queue.pop_front();
        // Wraps only if it stays strictly before the front (offset 30).
        assert!(r.reserve(30).is_none());
        r.queue.pop_front();
        let d = r.reserve(30).unwrap();
        assert_eq!(d, 0);
        r.push(d, 10, 4);
        // Head 10, front at 60: 49 bytes free before the front.
        assert_eq!(r.reserve(30), Some(10));
        r.queue.clear();
        assert_eq!(r.reserve(100), Some(0));
    }

    #[test]
    fn rng_is_roughly_uniform() {
        let mut rng = Rng(12345);
        let n = 100_000;
        let below = (0..n).filter(|_| rng.next_f64() < 0.25).count();
        assert!((20_000..30_000).contains(&below), "{below}");
    }
}
