//! Data-connection addresses: PORT/PASV host-ports (RFC 959), EPRT/EPSV (RFC 2428), and the
//! GridFTP striped forms SPAS/SPOR (GFD.20).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

use super::error::ReplyError;
use super::reply::Reply;

/// Format `h1,h2,h3,h4,p1,p2`.
pub fn format_host_port(addr: SocketAddrV4) -> String {
    let [a, b, c, d] = addr.ip().octets();
    let p = addr.port();
    format!("{a},{b},{c},{d},{},{}", p >> 8, p & 0xff)
}

/// Parse `h1,h2,h3,h4,p1,p2` (surrounding spaces allowed; every number 0–255).
pub fn parse_host_port(s: &str) -> Result<SocketAddrV4, ReplyError> {
    let mut n = [0u8; 6];
    let mut it = s.trim().split(',');
    for slot in n.iter_mut() {
        let part = it.next().ok_or(ReplyError::HostPort)?.trim();
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ReplyError::HostPort);
        }
        *slot = part.parse().map_err(|_| ReplyError::HostPort)?;
    }
    if it.next().is_some() {
        return Err(ReplyError::HostPort);
    }
    let [a, b, c, d, p1, p2] = n;
    Ok(SocketAddrV4::new(
        Ipv4Addr::new(a, b, c, d),
        u16::from(p1) << 8 | u16::from(p2),
    ))
}

/// Format an EPRT argument: `|1|132.235.1.2|6275|` or `|2|::1|6275|`.
pub fn format_eprt(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("|1|{}|{}|", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("|2|{}|{}|", a.ip(), a.port()),
    }
}

/// Parse an EPRT argument `<d><af><d><addr><d><port><d>`; the delimiter `d` is any printable
/// ASCII character except digits (RFC 2428 suggests `|`). The address family must match the
/// address (1 = IPv4, 2 = IPv6); port 0 is rejected.
pub fn parse_eprt(s: &str) -> Result<SocketAddr, ReplyError> {
    let s = s.trim();
    let d = s.chars().next().ok_or(ReplyError::ExtendedAddress)?;
    if !d.is_ascii_graphic() || d.is_ascii_digit() {
        return Err(ReplyError::ExtendedAddress);
    }
    let fields: Vec<&str> = s.split(d).collect();
    // "", af, addr, port, ""
    let [empty0, af, host, port, empty1] = fields.as_slice() else {
        return Err(ReplyError::ExtendedAddress);
    };
    if !empty0.is_empty() || !empty1.is_empty() {
        return Err(ReplyError::ExtendedAddress);
    }
    let port = parse_port(port)?;
    let ip: IpAddr = match *af {
        "1" => IpAddr::V4(
            host.parse::<Ipv4Addr>()
                .map_err(|_| ReplyError::ExtendedAddress)?,
        ),
        "2" => IpAddr::V6(
            host.parse::<Ipv6Addr>()
                .map_err(|_| ReplyError::ExtendedAddress)?,
        ),
        _ => return Err(ReplyError::ExtendedAddress),
    };
    Ok(SocketAddr::new(ip, port))
}

fn parse_port(p: &str) -> Result<u16, ReplyError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ReplyError::ExtendedAddress);
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(ReplyError::ExtendedAddress),
        Ok(v) => Ok(v),
    }
}

/// `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2).`
pub fn pasv_reply(addr: SocketAddrV4) -> Reply {
    Reply::new(
        227,
        format!("Entering Passive Mode ({}).", format_host_port(addr)),
    )
}

/// Parse the address from a 227 reply text. Tolerates the forms servers actually send: with or
/// without parentheses, with `=` before the numbers, trailing text.
pub fn parse_pasv_reply(text: &str) -> Result<SocketAddrV4, ReplyError> {
    // Find the first run that looks like six comma-separated numbers.
    let bytes = text.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        if bytes.get(start).is_some_and(u8::is_ascii_digit) {
            let end = text
                .get(start..)
                .and_then(|t| t.find(|c: char| !(c.is_ascii_digit() || c == ',' || c == ' ')))
                .map_or(text.len(), |e| start + e);
            let run = text.get(start..end).unwrap_or("");
            if let Ok(a) = parse_host_port(run.trim_end_matches([' ', ','])) {
                return Ok(a);
            }
            start = end.max(start + 1);
        } else {
            start += 1;
        }
    }
    Err(ReplyError::HostPort)
}

/// `229 Entering Extended Passive Mode (|||port|)`.
pub fn epsv_reply(port: u16) -> Reply {
    Reply::new(229, format!("Entering Extended Passive Mode (|||{port}|)"))
}

/// Parse the port from a 229 reply text: `(<d><d><d>port<d>)`.
pub fn parse_epsv_reply(text: &str) -> Result<u16, ReplyError> {
    let open = text.find('(').ok_or(ReplyError::ExtendedAddress)?;
    let inner = text.get(open + 1..).ok_or(ReplyError::ExtendedAddress)?;
    let close = inner.find(')').ok_or(ReplyError::ExtendedAddress)?;
    let inner = inner.get(..close).ok_or(ReplyError::ExtendedAddress)?;
    let d = inner.chars().next().ok_or(ReplyError::ExtendedAddress)?;
    let fields: Vec<&str> = inner.split(d).collect();
    match fields.as_slice() {
        ["", "", "", port, ""] => parse_port(port),
        _ => Err(ReplyError::ExtendedAddress),
    }
}

/// The multi-line SPAS reply (GFD.20): `229-Entering Striped Passive Mode`, one
/// ` h1,h2,h3,h4,p1,p2` line per stripe, `229 End`.
pub fn spas_reply(addrs: &[SocketAddrV4]) -> Reply {
    let mut lines = Vec::with_capacity(addrs.len() + 2);
    lines.push("Entering Striped Passive Mode".to_string());
    lines.extend(addrs.iter().map(|a| format!(" {}", format_host_port(*a))));
    lines.push("End".to_string());
    Reply { code: 229, lines }
}

/// Parse the host-ports of a SPAS reply (lines between the first and the last).
pub fn parse_spas_reply(reply: &Reply) -> Result<Vec<SocketAddrV4>, ReplyError> {
    if reply.code != 229 {
        return Err(ReplyError::UnexpectedCode(reply.code));
    }
    let n = reply.lines.len();
    let mid = reply.lines.get(1..n.saturating_sub(1)).unwrap_or(&[]);
    let addrs = mid
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| parse_host_port(l))
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err(ReplyError::HostPort);
    }
    Ok(addrs)
}

/// Parse one SPOR/SPAS address: a host-port, or an EPRT-style `|af|addr|port|`.
pub fn parse_any_host_port(s: &str) -> Result<SocketAddr, ReplyError> {
    let s = s.trim();
    if s.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        parse_host_port(s).map(SocketAddr::V4)
    } else {
        parse_eprt(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port() {
        let a: SocketAddrV4 = "10.1.2.3:1025".parse().unwrap();
        assert_eq!(format_host_port(a), "10,1,2,3,4,1");
        assert_eq!(parse_host_port("10,1,2,3,4,1").unwrap(), a);
        for bad in [
            "",
            "1,2,3,4,5",
            "1,2,3,4,5,6,7",
            "1,2,3,256,0,1",
            "a,1,1,1,1,1",
            "1,,1,1,1,1",
            "-1,1,1,1,1,1",
        ] {
            assert!(parse_host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn eprt() {
        let v4: SocketAddr = "132.235.1.2:6275".parse().unwrap();
        let v6: SocketAddr = "[1080::8:800:200c:417a]:5282".parse().unwrap();
        assert_eq!(parse_eprt("|1|132.235.1.2|6275|").unwrap(), v4);
        assert_eq!(parse_eprt("!2!1080::8:800:200C:417A!5282!").unwrap(), v6);
        assert_eq!(parse_eprt(&format_eprt(v6)).unwrap(), v6);
        for bad in [
            "",
            "|1|132.235.1.2|6275",
            "|2|132.235.1.2|6275|",
            "|1|::1|5|",
            "|3|1.2.3.4|5|",
            "|1|1.2.3.4|0|",
            "|1|1.2.3.4|65536|",
            "1|1|1.2.3.4|5|1",
        ] {
            assert!(parse_eprt(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pasv_epsv() {
        let a: SocketAddrV4 = "127.0.0.1:50000".parse().unwrap();
        let r = pasv_reply(a);
        assert_eq!(r.code, 227);
        assert_eq!(parse_pasv_reply(r.text()).unwrap(), a);
        assert_eq!(
            parse_pasv_reply("Entering Passive Mode 127,0,0,1,195,80").unwrap(),
            a
        );
        assert_eq!(parse_pasv_reply("=127,0,0,1,195,80").unwrap(), a);
        assert_eq!(parse_pasv_reply("Mode 2 (127,0,0,1,195,80)").unwrap(), a);
        assert!(parse_pasv_reply("nothing here").is_err());
        let r = epsv_reply(6446);
        assert_eq!(r.text(), "Entering Extended Passive Mode (|||6446|)");
        assert_eq!(parse_epsv_reply(r.text()).unwrap(), 6446);
        assert!(parse_epsv_reply("(|||0|)").is_err());
        assert!(parse_epsv_reply("(||1.2.3.4|5|)").is_err());
    }

    #[test]
    fn spas() {
        let a: Vec<SocketAddrV4> = vec!["1.2.3.4:5".parse().unwrap(), "1.2.3.4:6".parse().unwrap()];
        let r = spas_reply(&a);
        assert_eq!(
            r.to_bytes(),
            b"229-Entering Striped Passive Mode\r\n 1,2,3,4,0,5\r\n 1,2,3,4,0,6\r\n229 End\r\n"
        );
        let parsed = super::super::reply::parse_reply(&r.to_bytes()).unwrap();
        assert_eq!(parse_spas_reply(&parsed).unwrap(), a);
    }
}
