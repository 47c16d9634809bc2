//! Addresses as users write them: `HOST:PORT`, `[V6]:PORT`, `:PORT`, and CIDR blocks.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// A host: a literal address, or a name resolved when it is used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// A literal IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A DNS name (or `localhost`), resolved at every use.
    Name(String),
}

/// A `HOST:PORT` pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// The host part.
    pub host: Host,
    /// The port, 1..=65535 for targets (listeners may use 0: any free port).
    pub port: u16,
}

impl HostPort {
    /// Parses `HOST:PORT` or `[V6]:PORT`. The port may be 0 only if `allow_zero`.
    pub fn parse(text: &str, allow_zero: bool) -> Result<HostPort, String> {
        let (host, port) = split_host_port(text)?;
        if host.is_empty() {
            return Err(format!("'{text}' has no host (expected HOST:PORT)"));
        }
        let port = parse_port(port, text, allow_zero)?;
        let host = if text.starts_with('[') {
            // Brackets hold an IPv6 address and nothing else (RFC 3986).
            let ip = host
                .parse::<Ipv6Addr>()
                .map_err(|_| format!("'{text}': brackets hold an IPv6 address, e.g. [::1]:80"))?;
            Host::Ip(IpAddr::V6(ip))
        } else {
            parse_host(host, text)?
        };
        Ok(HostPort { host, port })
    }

    /// Resolves the host now; a literal address resolves to itself.
    pub fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        match &self.host {
            Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, self.port)]),
            Host::Name(name) => Ok((name.as_str(), self.port).to_socket_addrs()?.collect()),
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{}", self.port),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

/// Where a rule listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// `:PORT`: every address, IPv4 and IPv6.
    AnyHost(u16),
    /// `HOST:PORT`: one address (a name binds the first address it resolves to).
    Host(HostPort),
}

impl ListenAddr {
    /// Parses `HOST:PORT`, `[V6]:PORT` or `:PORT`.
    pub fn parse(text: &str) -> Result<ListenAddr, String> {
        match text.strip_prefix(':') {
            Some(port) => Ok(ListenAddr::AnyHost(parse_port(port, text, true)?)),
            None => Ok(ListenAddr::Host(HostPort::parse(text, true)?)),
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ListenAddr::AnyHost(port) => write!(f, ":{port}"),
            ListenAddr::Host(hp) => hp.fmt(f),
        }
    }
}

fn split_host_port(text: &str) -> Result<(&str, &str), String> {
    let bad = || format!("'{text}' is not HOST:PORT or [IPV6]:PORT");
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = after.strip_prefix(':').ok_or_else(bad)?;
        return Ok((host, port));
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    if host.contains(':') {
        return Err(format!(
            "'{text}': write IPv6 addresses in brackets, e.g. [::1]:80"
        ));
    }
    Ok((host, port))
}

fn parse_port(port: &str, text: &str, allow_zero: bool) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(0) if !allow_zero => Err(format!("'{text}': port 0 is not a valid target port")),
        Ok(p) if port.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(format!("'{text}': '{port}' is not a port (0-65535)")),
    }
}

fn parse_host(host: &str, text: &str) -> Result<Host, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    // No name starts with `-` (DNS labels do not), so none reads back as an option.
    let name_ok = !host.starts_with('-')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if name_ok {
        Ok(Host::Name(host.to_string()))
    } else {
        Err(format!("'{text}': '{host}' is not a host name or address"))
    }
}

/// An IPv4 client seen on a dual-stack socket as `::ffff:a.b.c.d` is `a.b.c.d` everywhere.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// [`normalize`] for a socket address.
pub fn normalize_addr(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(normalize(addr.ip()), addr.port())
}

/// An address block such as `192.168.1.0/24` or `fd00::/8`; a bare address is a /32 or /128.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/LEN` or a bare address.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let bad = || format!("'{text}' is not an address or CIDR block (e.g. 10.0.0.0/8)");
        let (ip, len) = match text.split_once('/') {
            Some((ip, len)) => (ip, Some(len)),
            None => (text, None),
        };
        let network = normalize(ip.parse::<IpAddr>().map_err(|_| bad())?);
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match len {
            None => max,
            Some(len) if len.bytes().all(|b| b.is_ascii_digit()) => len
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(bad)?,
            Some(_) => return Err(bad()),
        };
        Ok(Cidr { network, prefix })
    }

    /// Whether `ip` (normalised first) is inside the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, normalize(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                same_prefix(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                same_prefix(u128::from(net), u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn same_prefix(a: u128, b: u128, prefix: u8, bits: u32) -> bool {
    let shift = bits - u32::from(prefix);
    // A shift by the full width would overflow: /0 matches everything.
    shift >= bits || (a >> shift) == (b >> shift)
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A client (or destination) address filter: deny wins; with any allow entry, all else is refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acl {
    /// Blocks let in (empty: everyone not denied).
    pub allow: Vec<Cidr>,
    /// Blocks refused, whatever `allow` says.
    pub deny: Vec<Cidr>,
}

impl Acl {
    /// Whether the filter lets `ip` through.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.deny.iter().any(|c| c.contains(ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip))
    }
}

/// The unspecified address of the same family, for display of `:PORT` binds.
pub fn unspecified(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports() {
        let hp = HostPort::parse("10.0.0.5:80", false).unwrap();
        assert_eq!(hp.host, Host::Ip("10.0.0.5".parse().unwrap()));
        assert_eq!(hp.port, 80);
        let hp = HostPort::parse("[::1]:443", false).unwrap();
        assert_eq!(hp.to_string(), "[::1]:443");
        let hp = HostPort::parse("app1.example:8080", false).unwrap();
        assert_eq!(hp.host, Host::Name("app1.example".into()));
        for bad in [
            "",
            "host",
            ":80",
            "::1:80",
            "[::1]80",
            "h:0",
            "h:65536",
            "h:+1",
            "a b:1",
            "[-x]:80",
            "[h]:80",
            "[1.2.3.4]:80",
            "-x:80",
            "-:80",
        ] {
            assert!(
                HostPort::parse(bad, false).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn listen_addrs() {
        assert_eq!(
            ListenAddr::parse(":8080").unwrap(),
            ListenAddr::AnyHost(8080)
        );
        assert_eq!(ListenAddr::parse(":0").unwrap(), ListenAddr::AnyHost(0));
        assert_eq!(
            ListenAddr::parse("127.0.0.1:0").unwrap().to_string(),
            "127.0.0.1:0"
        );
        assert!(ListenAddr::parse(":x").is_err());
    }

    #[test]
    fn cidrs() {
        let net = Cidr::parse("192.168.1.0/24").unwrap();
        assert!(net.contains("192.168.1.77".parse().unwrap()));
        assert!(!net.contains("192.168.2.1".parse().unwrap()));
        assert!(net.contains("::ffff:192.168.1.9".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("::/0")
            .unwrap()
            .contains("::1".parse().unwrap()));
        let one = Cidr::parse("127.0.0.2").unwrap();
        assert!(one.contains("127.0.0.2".parse().unwrap()));
        assert!(!one.contains("127.0.0.3".parse().unwrap()));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        for bad in [
            "",
            "1.2.3.4/33",
            "::/129",
            "1.2.3/8",
            "1.2.3.4/x",
            "1.2.3.4/-1",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn acl_deny_wins_and_allow_restricts() {
        let acl = Acl {
            allow: vec![Cidr::parse("127.0.0.0/8").unwrap()],
            deny: vec![Cidr::parse("127.0.0.3").unwrap()],
        };
        assert!(acl.permits("127.0.0.2".parse().unwrap()));
        assert!(!acl.permits("127.0.0.3".parse().unwrap()));
        assert!(!acl.permits("10.0.0.1".parse().unwrap()));
        assert!(Acl::default().permits("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        let ip: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(normalize(ip), "10.1.2.3".parse::<IpAddr>().unwrap());
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(normalize(v6), v6);
    }
}
