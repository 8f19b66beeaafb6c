//! Login throttling, without I/O: failed password logins are counted per client address
//! (an IPv4 address, or the /64 prefix of an IPv6 one, since a host usually holds a whole
//! /64), and the caller is told how long to hold the reply to the next failure and when to
//! refuse the address outright. Time comes in as an argument, so the tests run on virtual
//! time; the driver (`conn.rs`) sleeps in the session concerned only.
//!
//! - The reply to the Nth consecutive failure waits `delay × 2^(N-1)`, at most
//!   [`MAX_DELAY`] (and never less than `delay`).
//! - The `max_failures`th failure bans the address for `ban`: it gets 421 at connect and at
//!   `USER` until then; afterwards it starts from zero.
//! - A password login that succeeds resets its address's count.
//! - Addresses in `exempt` are never delayed or banned.
//! - An entry is forgotten `forget` after its last failure (or when its ban ends), and the
//!   table holds at most `max_entries` entries (the stalest go first), so memory stays
//!   bounded whatever the number of addresses.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::proto::HostList;

/// The longest a failed login's reply is held, whatever the count.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// Most addresses remembered by default.
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

/// Settings of the throttle (`ftp.login_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfig {
    /// The hold of the first failure's reply (zero: no delay).
    pub delay: Duration,
    /// Failures in a row that ban the address (zero: never banned).
    pub max_failures: u32,
    /// How long a ban lasts.
    pub ban: Duration,
    /// Addresses and prefixes never throttled.
    pub exempt: HostList,
    /// A count is forgotten this long after its last failure.
    pub forget: Duration,
    /// Most addresses remembered.
    pub max_entries: usize,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            delay: Duration::from_secs(1),
            max_failures: 10,
            ban: Duration::from_secs(300),
            exempt: HostList::default(),
            forget: Duration::from_secs(900),
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// What to do with a failed login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hold the 530 this long (maybe zero), then let the client try again.
    Delay(Duration),
    /// Hold the 530 this long, then close: the address is now banned for `ban`.
    Ban {
        /// The hold before the reply.
        delay: Duration,
        /// How long the address stays refused.
        ban: Duration,
    },
}

/// The key addresses are counted under: IPv4 (and IPv4-mapped IPv6) whole, IPv6 by /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrKey(IpAddr);

impl AddrKey {
    /// The key of `ip`.
    pub fn of(ip: IpAddr) -> AddrKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => AddrKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                AddrKey(IpAddr::V6(Ipv6Addr::from(bits)))
            }
        }
    }
}

impl std::fmt::Display for AddrKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
    banned_until: Option<Instant>,
}

impl Entry {
    /// When the entry may be dropped.
    fn expires(&self, forget: Duration) -> Instant {
        self.banned_until.unwrap_or(self.last + forget)
    }
}

/// The table of failures. Not thread-safe by itself: the server keeps it behind a mutex.
#[derive(Debug)]
pub struct Guard {
    config: GuardConfig,
    table: HashMap<AddrKey, Entry>,
}

impl Guard {
    /// An empty table.
    pub fn new(config: GuardConfig) -> Guard {
        Guard {
            config,
            table: HashMap::new(),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// Changes the settings; counts and running bans stay.
    pub fn set_config(&mut self, config: GuardConfig) {
        self.config = config;
        if self.table.len() > self.config.max_entries {
            self.table.clear();
        }
    }

    /// Addresses remembered now.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        self.config.exempt.contains(ip.to_canonical())
    }

    /// How long `ip` stays refused, if it is banned at `now`.
    pub fn banned(&mut self, ip: IpAddr, now: Instant) -> Option<Duration> {
        if self.exempt(ip) {
            return None;
        }
        let key = AddrKey::of(ip);
        let e = self.table.get(&key)?;
        match e.banned_until {
            Some(until) if until > now => Some(until - now),
            Some(_) => {
                self.table.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Counts a failed password login from `ip` at `now`.
    pub fn failure(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        if self.exempt(ip) {
            return Verdict::Delay(Duration::ZERO);
        }
        let key = AddrKey::of(ip);
        let forget = self.config.forget;
        if let Some(e) = self.table.get(&key) {
            if e.expires(forget) <= now {
                self.table.remove(&key);
            }
        }
        if !self.table.contains_key(&key) {
            self.make_room(now);
        }
        let e = self.table.entry(key).or_insert(Entry {
            failures: 0,
            last: now,
            banned_until: None,
        });
        e.failures = e.failures.saturating_add(1);
        e.last = now;
        let delay = backoff(self.config.delay, e.failures);
        if self.config.max_failures > 0 && e.failures >= self.config.max_failures {
            e.banned_until = Some(now + self.config.ban);
            Verdict::Ban {
                delay,
                ban: self.config.ban,
            }
        } else {
            Verdict::Delay(delay)
        }
    }

    /// A password login from `ip` succeeded: its count starts again (a running ban stays).
    pub fn success(&mut self, ip: IpAddr) {
        let key = AddrKey::of(ip);
        if self
            .table
            .get(&key)
            .is_some_and(|e| e.banned_until.is_none())
        {
            self.table.remove(&key);
        }
    }

    /// Drops expired entries; if the table is still full, the plain count that expires
    /// first (bans go last, so a flood of new addresses does not lift them).
    fn make_room(&mut self, now: Instant) {
        if self.table.len() < self.config.max_entries.max(1) {
            return;
        }
        let forget = self.config.forget;
        self.table.retain(|_, e| e.expires(forget) > now);
        while self.table.len() >= self.config.max_entries.max(1) {
            let Some(k) = self
                .table
                .iter()
                .min_by_key(|(_, e)| (e.banned_until.is_some(), e.expires(forget)))
                .map(|(k, _)| *k)
            else {
                break;
            };
            self.table.remove(&k);
        }
    }
}

/// `delay × 2^(n-1)`, at most [`MAX_DELAY`] (or `delay` itself when it is longer).
fn backoff(delay: Duration, n: u32) -> Duration {
    if delay.is_zero() || n == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32 << (n - 1).min(20);
    delay.saturating_mul(factor).min(MAX_DELAY.max(delay))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn guard(max_failures: u32) -> Guard {
        Guard::new(GuardConfig {
            delay: Duration::from_millis(100),
            max_failures,
            ban: Duration::from_secs(60),
            exempt: "10.0.0.0/8,2001:db8:1::/48".parse().unwrap(),
            forget: Duration::from_secs(600),
            max_entries: 4,
        })
    }

    #[test]
    fn delays_double_then_ban() {
        let t0 = Instant::now();
        let mut g = guard(5);
        let a = ip("192.0.2.7");
        let ms = |n| Verdict::Delay(Duration::from_millis(n));
        assert_eq!(g.failure(a, t0), ms(100));
        assert_eq!(g.failure(a, t0), ms(200));
        assert_eq!(g.failure(a, t0), ms(400));
        assert_eq!(g.failure(a, t0), ms(800));
        assert_eq!(g.banned(a, t0), None);
        assert_eq!(
            g.failure(a, t0),
            Verdict::Ban {
                delay: Duration::from_millis(1600),
                ban: Duration::from_secs(60)
            }
        );
        assert_eq!(g.banned(a, t0), Some(Duration::from_secs(60)));
        let later = t0 + Duration::from_secs(59);
        assert_eq!(g.banned(a, later), Some(Duration::from_secs(1)));
        // Another address is not concerned.
        assert_eq!(g.banned(ip("192.0.2.8"), t0), None);
        // After the ban the count starts from zero.
        let after = t0 + Duration::from_secs(60);
        assert_eq!(g.banned(a, after), None);
        assert_eq!(g.failure(a, after), ms(100));
    }

    #[test]
    fn delay_is_capped() {
        let t0 = Instant::now();
        let mut g = guard(0);
        let a = ip("192.0.2.1");
        let mut last = Duration::ZERO;
        for _ in 0..100 {
            let Verdict::Delay(d) = g.failure(a, t0) else {
                panic!("max_failures 0 never bans");
            };
            assert!(d >= last && d <= MAX_DELAY);
            last = d;
        }
        assert_eq!(last, MAX_DELAY);
        assert_eq!(backoff(Duration::from_secs(40), 3), Duration::from_secs(40));
        assert_eq!(backoff(Duration::ZERO, 3), Duration::ZERO);
    }

    #[test]
    fn success_resets_the_count() {
        let t0 = Instant::now();
        let mut g = guard(3);
        let a = ip("192.0.2.9");
        g.failure(a, t0);
        g.failure(a, t0);
        g.success(a);
        assert_eq!(g.failure(a, t0), Verdict::Delay(Duration::from_millis(100)));
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_v4_as_v4() {
        let t0 = Instant::now();
        let mut g = guard(2);
        g.failure(ip("2001:db8:2:3::1"), t0);
        assert!(matches!(
            g.failure(ip("2001:db8:2:3:ffff::9"), t0),
            Verdict::Ban { .. }
        ));
        assert!(g.banned(ip("2001:db8:2:3::abcd"), t0).is_some());
        assert_eq!(g.banned(ip("2001:db8:2:4::1"), t0), None);
        g.failure(ip("::ffff:192.0.2.3"), t0);
        assert!(matches!(
            g.failure(ip("192.0.2.3"), t0),
            Verdict::Ban { .. }
        ));
        assert_eq!(AddrKey::of(ip("2001:db8::1")).to_string(), "2001:db8::/64");
    }

    #[test]
    fn exempt_addresses_are_never_throttled() {
        let t0 = Instant::now();
        let mut g = guard(1);
        for a in ["10.1.2.3", "::ffff:10.9.9.9", "2001:db8:1:7::5"] {
            for _ in 0..5 {
                assert_eq!(g.failure(ip(a), t0), Verdict::Delay(Duration::ZERO));
            }
            assert_eq!(g.banned(ip(a), t0), None);
        }
        assert!(g.is_empty());
    }

    #[test]
    fn entries_expire_and_the_table_is_bounded() {
        let t0 = Instant::now();
        let mut g = guard(3);
        g.failure(ip("192.0.2.1"), t0);
        g.failure(ip("192.0.2.1"), t0);
        // Forgotten after `forget`: the next failure counts as the first.
        let t1 = t0 + Duration::from_secs(601);
        assert_eq!(
            g.failure(ip("192.0.2.1"), t1),
            Verdict::Delay(Duration::from_millis(100))
        );
        // Many addresses: never more than max_entries, the stalest dropped first.
        for i in 0..50u8 {
            g.failure(
                IpAddr::from([198, 51, 100, i]),
                t1 + Duration::from_secs(i.into()),
            );
            assert!(g.len() <= 4);
        }
        assert_eq!(g.len(), 4);
        let t2 = t1 + Duration::from_secs(49);
        assert_eq!(
            g.failure(IpAddr::from([198, 51, 100, 49]), t2),
            Verdict::Delay(Duration::from_millis(200))
        );
        // A ban survives pressure on the table better than plain counts do.
        let mut g = guard(2);
        g.failure(ip("192.0.2.200"), t0);
        g.failure(ip("192.0.2.200"), t0);
        for i in 0..10u8 {
            g.failure(IpAddr::from([198, 51, 100, i]), t0);
        }
        assert!(g.banned(ip("192.0.2.200"), t0).is_some());
    }
}
