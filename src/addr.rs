//! Addresses as users write them: `HOST:PORT`, `[V6]:PORT`, `:PORT`, port ranges
//! (`HOST:P1-P2`), `unix:PATH` and `unix:@NAME`, and CIDR blocks.

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
    /// `unix:PATH` or `unix:@NAME`.
    Unix(UnixAddr),
}

impl ListenAddr {
    /// Parses `HOST:PORT`, `[V6]:PORT`, `:PORT` or `unix:...` (one port: ranges are split off
    /// first by [`split_port_range`]).
    pub fn parse(text: &str) -> Result<ListenAddr, String> {
        if let Some(unix) = UnixAddr::parse(text)? {
            return Ok(ListenAddr::Unix(unix));
        }
        match text.strip_prefix(':') {
            Some(port) => Ok(ListenAddr::AnyHost(parse_port(port, text, true)?)),
            None => Ok(ListenAddr::Host(HostPort::parse(text, true)?)),
        }
    }

    /// The port, for a TCP listen address.
    pub fn port(&self) -> Option<u16> {
        match self {
            ListenAddr::AnyHost(port) => Some(*port),
            ListenAddr::Host(hp) => Some(hp.port),
            ListenAddr::Unix(_) => None,
        }
    }

    /// The same address with another port (a Unix address stays as it is).
    pub fn with_port(&self, port: u16) -> ListenAddr {
        match self {
            ListenAddr::AnyHost(_) => ListenAddr::AnyHost(port),
            ListenAddr::Host(hp) => ListenAddr::Host(HostPort {
                host: hp.host.clone(),
                port,
            }),
            ListenAddr::Unix(u) => ListenAddr::Unix(u.clone()),
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ListenAddr::AnyHost(port) => write!(f, ":{port}"),
            ListenAddr::Host(hp) => hp.fmt(f),
            ListenAddr::Unix(u) => u.fmt(f),
        }
    }
}

/// Where a target is: `HOST:PORT` (resolved at every connect) or a Unix-domain socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetAddr {
    /// `HOST:PORT` or `[V6]:PORT`.
    Net(HostPort),
    /// `unix:PATH` or `unix:@NAME`.
    Unix(UnixAddr),
}

impl TargetAddr {
    /// Parses `HOST:PORT`, `[V6]:PORT` or `unix:...` (port 0 is refused).
    pub fn parse(text: &str) -> Result<TargetAddr, String> {
        match UnixAddr::parse(text)? {
            Some(unix) => Ok(TargetAddr::Unix(unix)),
            None => Ok(TargetAddr::Net(HostPort::parse(text, false)?)),
        }
    }
}

impl fmt::Display for TargetAddr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            TargetAddr::Net(hp) => hp.fmt(f),
            TargetAddr::Unix(u) => u.fmt(f),
        }
    }
}

/// The longest Unix socket path or abstract name: `sun_path` less its final NUL (108 bytes
/// on Linux, 104 on macOS and the BSDs).
const UNIX_PATH_MAX: usize = if cfg!(target_os = "linux") { 107 } else { 103 };

/// A Unix-domain socket address as written after `unix:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnixAddr {
    /// A socket file: `unix:/run/app.sock`.
    Path(String),
    /// A name in Linux's abstract namespace, no file: `unix:@app`.
    Abstract(String),
}

impl UnixAddr {
    /// Parses `unix:PATH` or `unix:@NAME`; `None` when `text` does not start with `unix:`.
    /// Where the OS has no Unix-domain sockets (or no abstract namespace) it is an error
    /// naming the address.
    pub fn parse(text: &str) -> Result<Option<UnixAddr>, String> {
        let Some(rest) = text.strip_prefix("unix:") else {
            return Ok(None);
        };
        if !cfg!(unix) {
            return Err(format!(
                "'{text}': Unix-domain sockets (unix:) are not supported on this OS"
            ));
        }
        let (addr, name) = match rest.strip_prefix('@') {
            Some(name) if !cfg!(target_os = "linux") => {
                let _ = name;
                return Err(format!(
                    "'{text}': the abstract namespace (unix:@NAME) is Linux only"
                ));
            }
            Some(name) => (UnixAddr::Abstract(name.to_string()), name),
            None => (UnixAddr::Path(rest.to_string()), rest),
        };
        if name.is_empty() {
            return Err(format!(
                "'{text}': no path after unix: (e.g. unix:/run/app.sock)"
            ));
        }
        if name.len() > UNIX_PATH_MAX {
            return Err(format!(
                "'{text}': longer than a Unix socket address holds ({UNIX_PATH_MAX} bytes)"
            ));
        }
        if name.contains('\0') {
            return Err(format!("'{text}': a NUL byte in a Unix socket address"));
        }
        Ok(Some(addr))
    }
}

impl fmt::Display for UnixAddr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            UnixAddr::Path(path) => write!(f, "unix:{path}"),
            UnixAddr::Abstract(name) => write!(f, "unix:@{name}"),
        }
    }
}

/// The most ports one range may give (SPEC §1).
pub const MAX_RANGE_PORTS: usize = 4096;

/// Splits a port range off an address: `HOST:P1-P2` is `(HOST:P1, Some(P2))`, anything
/// else is itself and `None`. A range starts at port 1 or more, does not run backwards,
/// and has at most [`MAX_RANGE_PORTS`] ports.
pub fn split_port_range(text: &str) -> Result<(String, Option<u16>), String> {
    if text.starts_with("unix:") {
        return Ok((text.to_string(), None));
    }
    let Some((head, port)) = text.rsplit_once(':') else {
        return Ok((text.to_string(), None));
    };
    let Some((first, last)) = port.split_once('-') else {
        return Ok((text.to_string(), None));
    };
    let number = |p: &str| match p.parse::<u16>() {
        Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!("'{text}': '{p}' is not a port (1-65535)")),
    };
    let (first, last) = (number(first)?, number(last)?);
    if last < first {
        return Err(format!("'{text}': the range runs backwards"));
    }
    let count = usize::from(last - first) + 1;
    if count > MAX_RANGE_PORTS {
        return Err(format!(
            "'{text}': a range has at most {MAX_RANGE_PORTS} ports (this one has {count})"
        ));
    }
    Ok((format!("{head}:{first}"), Some(last)))
}

/// One end of a connection as the log line shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// An IP address and port.
    Ip(SocketAddr),
    /// A Unix-domain socket: a target's address (`unix:PATH`), or `None` for a client, whose
    /// socket has no name (`unix`).
    Unix(Option<UnixAddr>),
}

impl Endpoint {
    /// The IP address, if this is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Endpoint::Ip(addr) => Some(addr.ip()),
            Endpoint::Unix(_) => None,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Endpoint::Ip(addr) => addr.fmt(f),
            Endpoint::Unix(Some(addr)) => addr.fmt(f),
            Endpoint::Unix(None) => f.write_str("unix"),
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
    fn port_ranges() {
        let split = split_port_range;
        assert_eq!(split(":9000-9099").unwrap(), (":9000".into(), Some(9099)));
        assert_eq!(split("[::1]:5-6").unwrap(), ("[::1]:5".into(), Some(6)));
        assert_eq!(split("h:80").unwrap(), ("h:80".into(), None));
        assert_eq!(split("unix:/a:1-2").unwrap(), ("unix:/a:1-2".into(), None));
        assert!(split("h:1-4096").is_ok());
        assert!(split("h:1-4097").unwrap_err().contains("at most 4096"));
        assert!(split("h:9-8").unwrap_err().contains("backwards"));
        assert!(split("h:0-8").is_err());
        assert!(split("h:1-x").is_err());
        assert!(split("h:-1").is_err());
    }

    #[test]
    fn unix_addresses() {
        let parse = |t: &str| TargetAddr::parse(t);
        if cfg!(unix) {
            assert_eq!(
                parse("unix:/run/a.sock").unwrap(),
                TargetAddr::Unix(UnixAddr::Path("/run/a.sock".into()))
            );
            assert_eq!(
                parse("unix:/run/a.sock").unwrap().to_string(),
                "unix:/run/a.sock"
            );
            assert!(parse("unix:").is_err());
            assert!(parse(&format!("unix:/{}", "a".repeat(200))).is_err());
        } else {
            assert!(parse("unix:/a").unwrap_err().contains("not supported"));
        }
        if cfg!(target_os = "linux") {
            assert_eq!(
                ListenAddr::parse("unix:@app").unwrap().to_string(),
                "unix:@app"
            );
            assert!(parse("unix:@").is_err());
        } else {
            assert!(parse("unix:@app").is_err());
        }
        assert_eq!(Endpoint::Unix(None).to_string(), "unix");
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
