//! Which hosts a session's data connections may go to or come from (PORT bounce protection,
//! RFC 2577, with the exceptions server-to-server "third-party" transfers need).
//!
//! The rule, decided by [`DataPolicy`] from the session's state and configuration alone:
//!
//! - The client's own address, port 1024 or above, is always allowed.
//! - Another address (a PORT/EPRT/SPOR target, or the source of a connection to a passive
//!   listener) is allowed when the logged-in user is authenticated and not anonymous, or
//!   when that address is in the trusted list ([`HostList`], the server's
//!   `ftp.third_party_hosts`), or when the server allows third-party transfers to everyone
//!   (`ftp.allow_third_party`).
//! - A PORT/EPRT/SPOR target below port 1024 is refused unless third-party transfers are
//!   allowed to everyone: no user may make the server talk to another host's services.
//!
//! ```
//! use gridos_ftp::proto::{DataPolicy, HostList};
//! let trusted: HostList = "192.0.2.0/24, 2001:db8::7".parse().unwrap();
//! let p = DataPolicy::new("198.51.100.1".parse().unwrap(), false, false, trusted);
//! assert!(p.allows_peer("198.51.100.1".parse().unwrap()));
//! assert!(p.allows_peer("192.0.2.77".parse().unwrap()));
//! assert!(!p.allows_peer("203.0.113.5".parse().unwrap()));
//! assert!(p.check_active("192.0.2.77:5000".parse().unwrap()).is_ok());
//! assert!(p.check_active("192.0.2.77:25".parse().unwrap()).is_err());
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// An IP address or a CIDR prefix (`192.0.2.0/24`, `2001:db8::/32`, `192.0.2.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPrefix {
    addr: IpAddr,
    len: u8,
}

impl IpPrefix {
    /// A prefix of `len` bits of `addr` (bits past `len` are cleared); `None` if `len` is
    /// longer than the address.
    pub fn new(addr: IpAddr, len: u8) -> Option<IpPrefix> {
        // An IPv4-mapped IPv6 prefix is the IPv4 prefix it maps.
        let (addr, len) = match addr {
            IpAddr::V6(a) if len >= 96 && a.to_ipv4_mapped().is_some() => {
                (addr.to_canonical(), len - 96)
            }
            a => (a, len),
        };
        Some(IpPrefix {
            addr: mask(addr, len)?,
            len,
        })
    }

    /// Whether `ip` lies in this prefix (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.len) == Some(self.addr)
    }
}

/// `addr` with the bits past `len` cleared; `None` if `len` is longer than the address.
fn mask(addr: IpAddr, len: u8) -> Option<IpAddr> {
    match addr {
        IpAddr::V4(a) if len <= 32 => {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            Some(IpAddr::V4((u32::from(a) & m).into()))
        }
        IpAddr::V6(a) if len <= 128 => {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            Some(IpAddr::V6((u128::from(a) & m).into()))
        }
        _ => None,
    }
}

impl std::fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let full = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.len == full {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

/// An item of a host list that is neither an IP address nor a CIDR prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{item:?} is not an IP address or CIDR prefix (e.g. 192.0.2.7, 192.0.2.0/24, 2001:db8::/32)"
)]
pub struct HostListError {
    /// The offending item.
    pub item: String,
}

impl std::str::FromStr for IpPrefix {
    type Err = HostListError;

    fn from_str(s: &str) -> Result<IpPrefix, HostListError> {
        let item = s.trim();
        let bad = || HostListError {
            item: item.to_string(),
        };
        let (addr, len) = match item.split_once('/') {
            Some((a, l)) => {
                if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                let a: IpAddr = a.trim().parse().map_err(|_| bad())?;
                (a, l.parse::<u8>().map_err(|_| bad())?)
            }
            None => {
                let a: IpAddr = item.parse().map_err(|_| bad())?;
                let a = a.to_canonical();
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        IpPrefix::new(addr, len).ok_or_else(bad)
    }
}

/// Trusted hosts: IP addresses and CIDR prefixes. Text form: comma-separated (spaces
/// allowed); empty, `none` or `-` is the empty list. Cheap to clone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostList(Arc<[IpPrefix]>);

impl HostList {
    /// Whether `ip` is in one of the prefixes.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|p| p.contains(ip))
    }

    /// No host listed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The prefixes.
    pub fn prefixes(&self) -> &[IpPrefix] {
        &self.0
    }
}

impl FromIterator<IpPrefix> for HostList {
    fn from_iter<I: IntoIterator<Item = IpPrefix>>(iter: I) -> Self {
        HostList(iter.into_iter().collect())
    }
}

impl std::str::FromStr for HostList {
    type Err = HostListError;

    fn from_str(s: &str) -> Result<HostList, HostListError> {
        let s = s.trim();
        if s.is_empty() || s == "none" || s == "-" {
            return Ok(HostList::default());
        }
        s.split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(str::parse)
            .collect()
    }
}

impl std::fmt::Display for HostList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Why a PORT/EPRT/SPOR address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DataRefusal {
    /// Another host than the client's, and this session may not use one.
    #[error("data address {0} is not the client's and this session may not use another host")]
    ForeignHost(IpAddr),
    /// A privileged port (below 1024).
    #[error("data port {0} is below 1024")]
    PrivilegedPort(u16),
}

/// The data-connection rule in force for one session (see the [module docs](self)): a pure
/// value the server computes from the session ([`Session::data_policy`]) and hands to the
/// code that accepts and makes data connections.
///
/// [`Session::data_policy`]: super::Session::data_policy
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPolicy {
    client: IpAddr,
    any_host: bool,
    any_port: bool,
    trusted: HostList,
}

impl DataPolicy {
    /// The rule for a client at `client`: `authenticated` (a logged-in, non-anonymous user)
    /// may use any host; `allow_third_party` lets anyone use any host and port; `trusted`
    /// hosts may be used by anyone.
    pub fn new(
        client: IpAddr,
        authenticated: bool,
        allow_third_party: bool,
        trusted: HostList,
    ) -> DataPolicy {
        DataPolicy {
            client: client.to_canonical(),
            any_host: authenticated || allow_third_party,
            any_port: allow_third_party,
            trusted,
        }
    }

    /// Only `client` (ports 1024 and above): what a client asks of the server it talks to.
    pub fn client_only(client: IpAddr) -> DataPolicy {
        DataPolicy::new(client, false, false, HostList::default())
    }

    /// The control connection's peer.
    pub fn client(&self) -> IpAddr {
        self.client
    }

    /// Whether `ip` is another host than the client.
    pub fn is_foreign(&self, ip: IpAddr) -> bool {
        ip.to_canonical() != self.client
    }

    /// Whether a data connection from `ip` may be accepted on a passive listener.
    pub fn allows_peer(&self, ip: IpAddr) -> bool {
        !self.is_foreign(ip) || self.any_host || self.trusted.contains(ip)
    }

    /// Whether the server may connect to `addr` (PORT, EPRT, SPOR).
    pub fn check_active(&self, addr: SocketAddr) -> Result<(), DataRefusal> {
        if !self.allows_peer(addr.ip()) {
            return Err(DataRefusal::ForeignHost(addr.ip().to_canonical()));
        }
        if addr.port() < 1024 && !self.any_port {
            return Err(DataRefusal::PrivilegedPort(addr.port()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn prefixes_parse_and_match() {
        let l: HostList = " 10.1.0.0/16 ,192.0.2.7, 2001:db8::/32,::ffff:198.51.100.0/120"
            .parse()
            .unwrap();
        assert!(l.contains(ip("10.1.255.3")));
        assert!(!l.contains(ip("10.2.0.1")));
        assert!(l.contains(ip("192.0.2.7")));
        assert!(!l.contains(ip("192.0.2.8")));
        assert!(l.contains(ip("::ffff:192.0.2.7")), "mapped IPv4 is IPv4");
        assert!(l.contains(ip("2001:db8:1::9")));
        assert!(!l.contains(ip("2001:db9::1")));
        assert!(
            l.contains(ip("198.51.100.200")),
            "mapped prefix is an IPv4 prefix"
        );
        assert_eq!(
            l.to_string(),
            "10.1.0.0/16,192.0.2.7,2001:db8::/32,198.51.100.0/24"
        );
        assert_eq!(l.to_string().parse::<HostList>().unwrap(), l);
        assert!(
            "0.0.0.0/0"
                .parse::<HostList>()
                .unwrap()
                .contains(ip("203.0.113.1"))
        );
        for s in ["", "none", " - "] {
            assert!(s.parse::<HostList>().unwrap().is_empty());
        }
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "host.example",
            "10.0.0.1/",
            "10.0.0.1/+8",
            "1.2.3",
        ] {
            assert_eq!(
                format!("192.0.2.1, {bad}").parse::<HostList>(),
                Err(HostListError {
                    item: bad.trim().to_string()
                }),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_rule() {
        let client = ip("192.0.2.10");
        let anon = DataPolicy::new(client, false, false, HostList::default());
        assert!(anon.allows_peer(ip("::ffff:192.0.2.10")));
        assert!(!anon.allows_peer(ip("192.0.2.11")));
        assert!(
            anon.check_active("192.0.2.10:1024".parse().unwrap())
                .is_ok()
        );
        assert_eq!(
            anon.check_active("192.0.2.11:5000".parse().unwrap()),
            Err(DataRefusal::ForeignHost(ip("192.0.2.11")))
        );
        assert_eq!(
            anon.check_active("192.0.2.10:21".parse().unwrap()),
            Err(DataRefusal::PrivilegedPort(21))
        );
        let user = DataPolicy::new(client, true, false, HostList::default());
        assert!(user.allows_peer(ip("203.0.113.9")));
        assert!(
            user.check_active("203.0.113.9:5000".parse().unwrap())
                .is_ok()
        );
        assert!(
            user.check_active("203.0.113.9:25".parse().unwrap())
                .is_err()
        );
        let trusted = DataPolicy::new(client, false, false, "203.0.113.0/28".parse().unwrap());
        assert!(trusted.allows_peer(ip("203.0.113.9")));
        assert!(!trusted.allows_peer(ip("203.0.113.16")));
        let fxp = DataPolicy::new(client, false, true, HostList::default());
        assert!(fxp.check_active("203.0.113.9:20".parse().unwrap()).is_ok());
    }
}
