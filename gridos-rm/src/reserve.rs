//! Reservations with admission control, expiry and release.

use crate::enforce::{Enforcement, Enforcer, Group};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What a node offers to reservations.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// CPUs.
    pub cpus: f64,
    /// Memory bytes.
    pub memory_bytes: u64,
    /// Disk bytes.
    pub disk_bytes: u64,
}

/// A reservation request.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// CPUs (fractions allowed; 0: no CPU limit).
    pub cpus: f64,
    /// Memory bytes (0: no memory limit).
    pub memory_bytes: u64,
    /// Disk bytes.
    pub disk_bytes: u64,
    /// How long the reservation lasts.
    pub duration_secs: u64,
}

/// A granted reservation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    /// Id (unique per node incarnation; the caller chooses the prefix).
    pub id: String,
    /// What was granted.
    pub request: Request,
    /// Grant time, ms since the Unix epoch.
    pub created_unix_ms: u64,
    /// Expiry time, ms since the Unix epoch.
    pub expires_unix_ms: u64,
    /// How it is enforced.
    pub enforcement: Enforcement,
}

struct Entry {
    res: Reservation,
    deadline: Instant,
    group: Group,
}

/// The reservations of one node.
pub struct Ledger {
    capacity: Capacity,
    enforcer: Arc<Enforcer>,
    prefix: String,
    next: u64,
    active: BTreeMap<String, Entry>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Ledger {
    /// A ledger offering `capacity`, enforcing with `enforcer`; ids are `PREFIX N`.
    pub fn new(capacity: Capacity, enforcer: Arc<Enforcer>, prefix: &str) -> Self {
        Ledger {
            capacity,
            enforcer,
            prefix: prefix.into(),
            next: 1,
            active: BTreeMap::new(),
        }
    }

    /// The capacity offered.
    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    /// The enforcer.
    pub fn enforcer(&self) -> &Arc<Enforcer> {
        &self.enforcer
    }

    /// Sum of what active reservations hold.
    pub fn reserved(&self) -> Capacity {
        let mut c = Capacity {
            cpus: 0.0,
            memory_bytes: 0,
            disk_bytes: 0,
        };
        for e in self.active.values() {
            c.cpus += e.res.request.cpus;
            c.memory_bytes += e.res.request.memory_bytes;
            c.disk_bytes += e.res.request.disk_bytes;
        }
        c
    }

    /// Admission control, then the enforcement group. Expired reservations are purged first
    /// (and returned by [`expire`](Ledger::expire) to whoever polls it).
    pub fn reserve(&mut self, req: Request) -> Result<Reservation> {
        if !(req.cpus.is_finite() && req.cpus >= 0.0) {
            return Err(Error::InvalidRequest(format!(
                "cpus must be a non-negative number, got {}",
                req.cpus
            )));
        }
        if req.cpus == 0.0 && req.memory_bytes == 0 && req.disk_bytes == 0 {
            return Err(Error::InvalidRequest(
                "nothing requested (cpus, memory and disk are all 0)".into(),
            ));
        }
        if req.duration_secs == 0 {
            return Err(Error::InvalidRequest("duration must be positive".into()));
        }
        let held = self.reserved();
        let cap = self.capacity;
        let mut why = Vec::new();
        if held.cpus + req.cpus > cap.cpus + 1e-9 {
            why.push(format!(
                "{} CPUs requested, {} of {} free",
                req.cpus,
                cap.cpus - held.cpus,
                cap.cpus
            ));
        }
        if held.memory_bytes.saturating_add(req.memory_bytes) > cap.memory_bytes {
            why.push(format!(
                "{} bytes of memory requested, {} of {} free",
                req.memory_bytes,
                cap.memory_bytes.saturating_sub(held.memory_bytes),
                cap.memory_bytes
            ));
        }
        if held.disk_bytes.saturating_add(req.disk_bytes) > cap.disk_bytes {
            why.push(format!(
                "{} bytes of disk requested, {} of {} free",
                req.disk_bytes,
                cap.disk_bytes.saturating_sub(held.disk_bytes),
                cap.disk_bytes
            ));
        }
        if !why.is_empty() {
            return Err(Error::Refused(format!(
                "beyond this node's capacity: {}",
                why.join("; ")
            )));
        }
        let id = format!("{}{}", self.prefix, self.next);
        self.next += 1;
        let group = self
            .enforcer
            .create_group(&id, req.cpus, req.memory_bytes)?;
        let created = now_ms();
        let res = Reservation {
            id: id.clone(),
            request: req,
            created_unix_ms: created,
            expires_unix_ms: created + req.duration_secs * 1000,
            enforcement: group.enforcement.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(req.duration_secs);
        self.active.insert(
            id,
            Entry {
                res: res.clone(),
                deadline,
                group,
            },
        );
        Ok(res)
    }

    /// The group of a live reservation (for spawning under it).
    pub fn group(&self, id: &str) -> Result<&Group> {
        match self.active.get(id) {
            Some(e) if e.deadline > Instant::now() => Ok(&e.group),
            _ => Err(Error::UnknownReservation(id.into())),
        }
    }

    /// Live reservations.
    pub fn list(&self) -> Vec<Reservation> {
        let now = Instant::now();
        self.active
            .values()
            .filter(|e| e.deadline > now)
            .map(|e| e.res.clone())
            .collect()
    }

    /// Releases a reservation. The caller must stop its processes; the group is removed once
    /// they are gone.
    pub fn release(&mut self, id: &str) -> Result<Reservation> {
        let e = self
            .active
            .remove(id)
            .ok_or_else(|| Error::UnknownReservation(id.into()))?;
        self.enforcer.remove_group(&e.group);
        Ok(e.res)
    }

    /// Removes and returns reservations whose time is up.
    pub fn expire(&mut self) -> Vec<Reservation> {
        let now = Instant::now();
        let due: Vec<String> = self
            .active
            .iter()
            .filter(|(_, e)| e.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let out = due.iter().filter_map(|k| self.release(k).ok()).collect();
        self.enforcer.gc();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_release_and_expiry() {
        let enf = Arc::new(Enforcer::rlimit_only("unit test"));
        let cap = Capacity {
            cpus: 2.0,
            memory_bytes: 1000,
            disk_bytes: 50,
        };
        let mut l = Ledger::new(cap, enf, "r1-");
        let r = Request {
            cpus: 1.5,
            memory_bytes: 600,
            disk_bytes: 10,
            duration_secs: 100,
        };
        let a = l.reserve(r).unwrap();
        assert_eq!(a.id, "r1-1");
        assert_eq!(a.enforcement.mechanism, Some(crate::Mechanism::Rlimit));
        let e = l.reserve(r).unwrap_err().to_string();
        assert!(
            e.contains("beyond this node's capacity") && e.contains("CPUs") && e.contains("memory"),
            "{e}"
        );
        let e = l
            .reserve(Request {
                disk_bytes: 100,
                cpus: 0.1,
                memory_bytes: 1,
                duration_secs: 1,
            })
            .unwrap_err();
        assert!(e.to_string().contains("disk"), "{e}");
        let zero = Request {
            cpus: 0.0,
            memory_bytes: 0,
            disk_bytes: 0,
            duration_secs: 5,
        };
        assert!(l.reserve(zero).unwrap_err().to_string().contains("invalid"));
        assert!(
            l.reserve(Request { cpus: -1.0, ..r })
                .unwrap_err()
                .to_string()
                .contains("invalid")
        );
        l.release("r1-1").unwrap();
        assert!(l.release("r1-1").is_err());
        let b = l.reserve(r).unwrap();
        assert!(l.group(&b.id).is_ok());
        assert!(l.expire().is_empty());
    }
}
