//! Link parameters of the emulator and parsers for human-written values
//! ("50ms", "1gbit", "16MiB", "0.1%").

use std::time::Duration;

use super::WanError;

/// Largest one-way delay accepted.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// Largest bottleneck rate accepted, in bits per second (100 Gbit/s).
pub const MAX_RATE: u64 = 100_000_000_000;
/// Largest queue limit accepted, in bytes (1 GiB).
pub const MAX_QUEUE: u64 = 1 << 30;
/// Largest memory the packet store of one direction may take, in bytes (2 GiB).
pub const MAX_STORE: u64 = 2 << 30;
/// Smallest MTU accepted (the IPv4 minimum).
pub const MIN_MTU: u32 = 68;
/// Largest MTU accepted (the largest IP packet).
pub const MAX_MTU: u32 = 65_535;

/// Parameters of the emulated link; both directions get the same ones.
#[derive(Debug, Clone, PartialEq)]
pub struct WanParams {
    /// One-way propagation delay (the round-trip time is twice this).
    pub delay: Duration,
    /// Bottleneck rate in bits per second, counted on whole IP packets.
    pub rate_bits_per_sec: u64,
    /// Tail-drop limit of the bottleneck queue, in bytes of packets waiting to be
    /// serialised (packets already "on the wire", inside the delay, do not count).
    pub queue_limit_bytes: u64,
    /// Probability in `0.0..=1.0` that a packet is dropped at random.
    pub loss: f64,
    /// MTU of both TUN devices, in bytes.
    pub mtu: u32,
}

impl Default for WanParams {
    /// 100 ms round trip at 1 Gbit/s, 16 MiB queue, no loss, 9000-byte MTU.
    fn default() -> Self {
        WanParams {
            delay: Duration::from_millis(50),
            rate_bits_per_sec: 1_000_000_000,
            queue_limit_bytes: 16 << 20,
            loss: 0.0,
            mtu: 9000,
        }
    }
}

impl WanParams {
    /// Checks that every parameter is in range and that the packet store fits in memory.
    pub fn validate(&self) -> Result<(), WanError> {
        let bad = |what: &str, why: String| {
            Err(WanError::InvalidParam {
                what: what.to_owned(),
                why,
            })
        };
        if self.delay > MAX_DELAY {
            return bad("delay", format!("must be at most {MAX_DELAY:?}"));
        }
        if self.rate_bits_per_sec == 0 || self.rate_bits_per_sec > MAX_RATE {
            return bad(
                "rate",
                format!("must be between 1 bit/s and {MAX_RATE} bit/s"),
            );
        }
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return bad("mtu", format!("must be between {MIN_MTU} and {MAX_MTU}"));
        }
        if self.queue_limit_bytes < u64::from(self.mtu) || self.queue_limit_bytes > MAX_QUEUE {
            return bad(
                "queue",
                format!(
                    "must hold at least one MTU-sized packet ({} bytes) and be at most {MAX_QUEUE} bytes",
                    self.mtu
                ),
            );
        }
        if !(0.0..=1.0).contains(&self.loss) {
            return bad(
                "loss",
                "must be between 0 and 1 (or 0% and 100%)".to_owned(),
            );
        }
        let store = self.store_bytes();
        if store > MAX_STORE {
            return bad(
                "delay/rate/queue",
                format!(
                    "a direction would have to hold {store} bytes in flight (queue + rate × delay); the limit is {MAX_STORE}"
                ),
            );
        }
        Ok(())
    }

    /// Bytes of packet storage one direction needs: the queue, the bytes in flight
    /// during the delay with a quarter of slack for late wake-ups, and a few MTUs.
    pub(crate) fn store_bytes(&self) -> u64 {
        let in_flight =
            (u128::from(self.rate_bits_per_sec) * self.delay.as_nanos() / 8 / 1_000_000_000) as u64;
        self.queue_limit_bytes
            .saturating_add(in_flight.saturating_add(in_flight / 4))
            .saturating_add(4 * u64::from(self.mtu))
            .saturating_add(1 << 20)
    }
}

fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    (s[..end].trim(), s[end..].trim())
}

fn parse_number(what: &str, input: &str, num: &str) -> Result<f64, WanError> {
    let value: f64 = num.parse().map_err(|_| WanError::Parse {
        what: what.to_owned(),
        input: input.to_owned(),
        why: "expected a number followed by a unit".to_owned(),
    })?;
    if !value.is_finite() || value < 0.0 {
        return Err(WanError::Parse {
            what: what.to_owned(),
            input: input.to_owned(),
            why: "must be a finite, non-negative number".to_owned(),
        });
    }
    Ok(value)
}

fn scaled(what: &str, input: &str, value: f64, scale: f64) -> Result<u64, WanError> {
    let v = (value * scale).round();
    if v >= u64::MAX as f64 {
        return Err(WanError::Parse {
            what: what.to_owned(),
            input: input.to_owned(),
            why: "too large".to_owned(),
        });
    }
    Ok(v as u64)
}

/// Parses a duration: a number with unit `ns`, `us`, `ms`, `s` or `m` ("50ms", "1.5s");
/// a bare `0` is accepted.
pub fn parse_duration(input: &str) -> Result<Duration, WanError> {
    let (num, unit) = split_number(input.trim());
    let value = parse_number("duration", input, num)?;
    let nanos_per_unit = match unit.to_ascii_lowercase().as_str() {
        "" if value == 0.0 => 1.0,
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" | "sec" => 1e9,
        "m" | "min" => 60e9,
        _ => {
            return Err(WanError::Parse {
                what: "duration".to_owned(),
                input: input.to_owned(),
                why: "unit must be one of ns, us, ms, s, min (e.g. 50ms)".to_owned(),
            });
        }
    };
    Ok(Duration::from_nanos(scaled(
        "duration",
        input,
        value,
        nanos_per_unit,
    )?))
}

/// Parses a rate in bits per second: a number with unit `bit`, `kbit`, `mbit`,
/// `gbit` or `tbit` (powers of 1000), optionally followed by `/s` ("1gbit", "100Mbit/s").
/// A bare number is bits per second. Byte-based units like "mbps" are rejected as ambiguous.
pub fn parse_rate(input: &str) -> Result<u64, WanError> {
    let (num, unit) = split_number(input.trim());
    let value = parse_number("rate", input, num)?;
    let unit = unit.to_ascii_lowercase();
    let unit = unit.strip_suffix("/s").unwrap_or(&unit);
    let scale = match unit {
        "" | "bit" => 1.0,
        "k" | "kbit" => 1e3,
        "m" | "mbit" => 1e6,
        "g" | "gbit" => 1e9,
        "t" | "tbit" => 1e12,
        _ => {
            return Err(WanError::Parse {
                what: "rate".to_owned(),
                input: input.to_owned(),
                why: "unit must be one of bit, kbit, mbit, gbit, tbit (e.g. 1gbit)".to_owned(),
            });
        }
    };
    scaled("rate", input, value, scale)
}

/// Parses a size in bytes: a number with unit `B`, `KB`/`MB`/`GB` (powers of 1000)
/// or `KiB`/`MiB`/`GiB` (powers of 1024), case-insensitive ("4MiB", "64k"). A bare
/// number is bytes.
pub fn parse_size(input: &str) -> Result<u64, WanError> {
    let (num, unit) = split_number(input.trim());
    let value = parse_number("size", input, num)?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(WanError::Parse {
                what: "size".to_owned(),
                input: input.to_owned(),
                why: "unit must be one of B, KB, MB, GB, KiB, MiB, GiB (e.g. 16MiB)".to_owned(),
            });
        }
    };
    scaled("size", input, value, scale)
}

/// Parses a loss probability: a fraction ("0.01") or a percentage ("1%").
pub fn parse_loss(input: &str) -> Result<f64, WanError> {
    let s = input.trim();
    let (num, divisor) = match s.strip_suffix('%') {
        Some(n) => (n.trim(), 100.0),
        None => (s, 1.0),
    };
    let value = parse_number("loss", input, num)? / divisor;
    if value > 1.0 {
        return Err(WanError::Parse {
            what: "loss".to_owned(),
            input: input.to_owned(),
            why: "must be at most 1 (100%)".to_owned(),
        });
    }
    Ok(value)
}

/// Parses an MTU in bytes (a plain integer).
pub fn parse_mtu(input: &str) -> Result<u32, WanError> {
    let mtu: u32 = input.trim().parse().map_err(|_| WanError::Parse {
        what: "mtu".to_owned(),
        input: input.to_owned(),
        why: "expected a whole number of bytes".to_owned(),
    })?;
    if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
        return Err(WanError::Parse {
            what: "mtu".to_owned(),
            input: input.to_owned(),
            why: format!("must be between {MIN_MTU} and {MAX_MTU}"),
        });
    }
    Ok(mtu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("50ms").unwrap(), Duration::from_millis(50));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("200us").unwrap(), Duration::from_micros(200));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("50").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("-5ms").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1e400s").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("1gbit").unwrap(), 1_000_000_000);
        assert_eq!(parse_rate("100Mbit/s").unwrap(), 100_000_000);
        assert_eq!(parse_rate("2.5gbit").unwrap(), 2_500_000_000);
        assert_eq!(parse_rate("64000").unwrap(), 64_000);
        assert!(parse_rate("1mbps").is_err());
        assert!(parse_rate("gbit").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4MiB").unwrap(), 4 << 20);
        assert_eq!(parse_size("16mib").unwrap(), 16 << 20);
        assert_eq!(parse_size("64k").unwrap(), 64_000);
        assert_eq!(parse_size("1500").unwrap(), 1500);
        assert_eq!(parse_size("1.5KiB").unwrap(), 1536);
        assert!(parse_size("4 parsecs").is_err());
    }

    #[test]
    fn losses_and_mtus() {
        assert_eq!(parse_loss("0").unwrap(), 0.0);
        assert!((parse_loss("1%").unwrap() - 0.01).abs() < 1e-12);
        assert!((parse_loss("0.25").unwrap() - 0.25).abs() < 1e-12);
        assert!(parse_loss("150%").is_err());
        assert!(parse_loss("2").is_err());
        assert_eq!(parse_mtu("9000").unwrap(), 9000);
        assert!(parse_mtu("20").is_err());
        assert!(parse_mtu("70000").is_err());
        assert!(parse_mtu("9k").is_err());
    }

    #[test]
    fn validation() {
        assert!(WanParams::default().validate().is_ok());
        let p = WanParams {
            rate_bits_per_sec: 0,
            ..WanParams::default()
        };
        assert!(p.validate().is_err());
        let p = WanParams {
            queue_limit_bytes: 100,
            ..WanParams::default()
        };
        assert!(p.validate().is_err());
        let p = WanParams {
            loss: f64::NAN,
            ..WanParams::default()
        };
        assert!(p.validate().is_err());
        let p = WanParams {
            delay: Duration::from_secs(60),
            rate_bits_per_sec: MAX_RATE,
            ..WanParams::default()
        };
        assert!(p.validate().is_err());
    }
}
