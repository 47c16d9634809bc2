//! PROXY protocol headers, v1 (text) and v2 (binary), as specified in HAProxy's
//! doc/proxy-protocol.txt: the header tcpfwd sends to a target (`--proxy-protocol`) and the
//! one it reads from a client (`--accept-proxy`). Section numbers below are that document's.

use std::fmt;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::addr::normalize;
use crate::deadline::Deadline;
use crate::stream::Stream;
use crate::sys;

/// The 12 bytes that start every v2 header (§2.2): 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version/command, family/protocol and the 16-bit length (§2.2).
const V2_FIXED: usize = 16;
/// The spec allows 65535 address and TLV bytes; real senders (HAProxy, cloud load balancers)
/// send a few hundred at most, and a bound keeps a client from making us hold 64 KiB.
const V2_MAX_BODY: usize = 4096;
/// The longest v1 line, CRLF included: `PROXY UNKNOWN` with two full IPv6 addresses (§2.1).
const V1_MAX: usize = 107;

/// Which header to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The human-readable line, `PROXY TCP4 src dst sport dport\r\n`.
    V1,
    /// The binary header.
    V2,
}

/// What a received header said. IPv4-mapped IPv6 addresses come out as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Relayed for the client `source`, which had connected to `destination`.
    Proxied {
        /// The original client.
        source: SocketAddr,
        /// The address the original client connected to.
        destination: SocketAddr,
    },
    /// v2 LOCAL, v1 UNKNOWN, or a v2 family tcpfwd does not carry: keep the real peer address.
    Local,
}

/// Why no usable header was read.
pub enum HeaderError {
    /// The bytes are not a valid header; the text says what is wrong.
    Invalid(&'static str),
    /// The deadline passed before a complete header arrived.
    Timeout,
    /// The client closed the connection before a complete header arrived.
    Closed,
    /// The socket failed.
    Io(io::Error),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Invalid(why) => write!(f, "invalid PROXY protocol header: {why}"),
            HeaderError::Timeout => write!(f, "no complete PROXY protocol header in time"),
            HeaderError::Closed => write!(f, "client closed before a full PROXY protocol header"),
            HeaderError::Io(e) => write!(f, "cannot read the PROXY protocol header: {e}"),
        }
    }
}

// Debug shows the user's sentence, so an error returned from `main` prints cleanly.
impl fmt::Debug for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for HeaderError {}

/// Shorthand for the many ways a header can be invalid.
fn invalid<T>(why: &'static str) -> Result<T, HeaderError> {
    Err(HeaderError::Invalid(why))
}

/// Both addresses of a header, in one family.
enum Ips {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

/// Bytes of the header announcing a connection from `source` to `destination`.
///
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) count as IPv4. A header carries one family,
/// so when one address is IPv4 and the other IPv6, the IPv4 one is sent as IPv4-mapped IPv6
/// and the header says TCP6. For a connection without IP addresses (a Unix-domain client)
/// see [`encode_local`].
pub fn encode(version: Version, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let ips = match (normalize(source.ip()), normalize(destination.ip())) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Ips::V4(s, d),
        (s, d) => Ips::V6(as_v6(s), as_v6(d)),
    };
    let ports = (source.port(), destination.port());
    match version {
        Version::V1 => encode_v1(ips, ports),
        Version::V2 => encode_v2(ips, ports),
    }
}

/// Bytes of the header for a connection that has no IP addresses to carry (a Unix-domain
/// client): v1 `PROXY UNKNOWN`, v2 `LOCAL` with no address block. The receiver then uses the
/// connection's own endpoints (§2.1, §2.2).
pub fn encode_local(version: Version) -> Vec<u8> {
    match version {
        Version::V1 => b"PROXY UNKNOWN\r\n".to_vec(),
        Version::V2 => {
            let mut out = V2_SIGNATURE.to_vec();
            // Version 2, command LOCAL; family UNSPEC; no address block.
            out.extend_from_slice(&[0x20, 0x00, 0, 0]);
            out
        }
    }
}

fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

fn encode_v1(ips: Ips, (sport, dport): (u16, u16)) -> Vec<u8> {
    let line = match ips {
        Ips::V4(s, d) => format!("PROXY TCP4 {s} {d} {sport} {dport}\r\n"),
        Ips::V6(s, d) => format!("PROXY TCP6 {} {} {sport} {dport}\r\n", hex_v6(s), hex_v6(d)),
    };
    line.into_bytes()
}

/// IPv6 text in hex groups only, as §2.1 describes it: Rust writes an IPv4-mapped address
/// as `::ffff:1.2.3.4`, which a strict receiver may refuse.
fn hex_v6(ip: Ipv6Addr) -> String {
    match ip.to_ipv4_mapped() {
        Some(_) => format!("::ffff:{:x}:{:x}", ip.segments()[6], ip.segments()[7]),
        None => ip.to_string(),
    }
}

fn encode_v2(ips: Ips, (sport, dport): (u16, u16)) -> Vec<u8> {
    // Family/protocol byte: 0x11 TCP over IPv4, 0x21 TCP over IPv6 (§2.2).
    let (family, addresses) = match ips {
        Ips::V4(s, d) => (0x11, [s.octets(), d.octets()].concat()),
        Ips::V6(s, d) => (0x21, [s.octets(), d.octets()].concat()),
    };
    let len = (addresses.len() + 4) as u16; // 12 or 36: the cast cannot truncate
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[0x21, family]); // version 2, command PROXY
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&addresses);
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out
}

/// Reads exactly one v1 or v2 header from the client, before `deadline` (a total deadline,
/// not one per read), and leaves the stream's read timeout at `None`.
///
/// Not a byte after the header is consumed: it belongs to the relayed stream.
pub fn read(stream: &Stream, deadline: Deadline) -> Result<Received, HeaderError> {
    let header = read_header(stream, deadline);
    let reset = stream.set_read_timeout(None);
    let header = header?;
    reset.map_err(HeaderError::Io)?;
    match header.first() {
        Some(b'P') => parse_v1(&header),
        _ => parse_v2(&header),
    }
}

// Why peek: v1 has no length field, and whatever follows its CRLF belongs to the relayed
// stream. Reading byte by byte would cost up to 107 system calls per header. Instead: peek
// at what has arrived, read exactly the bytes known to be header (all of them while the
// header is partial, else up to its end), and peek again. After a partial header the bytes
// peeked have been read, so the next peek blocks until new bytes arrive: no spinning, and
// each round takes at least one byte, so a header needs at most V2_FIXED + V2_MAX_BODY rounds.
fn read_header(stream: &Stream, deadline: Deadline) -> Result<Vec<u8>, HeaderError> {
    let mut header = Vec::new();
    let mut window = [0u8; 512];
    let mut reader = stream;
    loop {
        let left = deadline.left().ok_or(HeaderError::Timeout)?;
        stream.set_read_timeout(Some(left)).map_err(io_error)?;
        let seen = match stream.peek(&mut window) {
            Ok(0) => return Err(HeaderError::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(e)),
        };
        let have = header.len();
        header.extend_from_slice(window.get(..seen).unwrap_or_default());
        let complete = scan(&header)?;
        header.truncate(complete.unwrap_or(have + seen));
        // These bytes were peeked, so they are in the socket buffer and this returns at once.
        reader
            .read_exact(header.get_mut(have..).unwrap_or_default())
            .map_err(io_error)?;
        if complete.is_some() {
            return Ok(header);
        }
    }
}

fn io_error(e: io::Error) -> HeaderError {
    match e.kind() {
        _ if sys::is_timeout(&e) => HeaderError::Timeout,
        io::ErrorKind::UnexpectedEof => HeaderError::Closed,
        _ => HeaderError::Io(e),
    }
}

/// The length of the header at the start of `data` once it is all there (`None`: every byte
/// so far belongs to the header, more are needed). Rejects as early as the bytes allow.
fn scan(data: &[u8]) -> Result<Option<usize>, HeaderError> {
    match data.first() {
        None => Ok(None),
        Some(b'P') if agrees(data, b"PROXY ") => {
            match data.windows(2).position(|pair| pair == b"\r\n") {
                Some(at) if at + 2 <= V1_MAX => Ok(Some(at + 2)),
                None if data.len() < V1_MAX => Ok(None),
                _ => invalid("v1 line longer than 107 bytes"),
            }
        }
        Some(0x0d) if agrees(data, &V2_SIGNATURE) => match fixed_part(data) {
            None => Ok(None),
            Some(fixed) => {
                let total = V2_FIXED + v2_body_len(fixed)?;
                Ok(Some(total).filter(|&total| total <= data.len()))
            }
        },
        Some(_) => invalid("the connection does not start with one"),
    }
}

/// Whether `data` and `expected` agree on the bytes both have.
fn agrees(data: &[u8], expected: &[u8]) -> bool {
    data.iter().zip(expected).all(|(a, b)| a == b)
}

/// Parses a complete v1 line, CRLF included.
pub fn parse_v1(line: &[u8]) -> Result<Received, HeaderError> {
    if line.len() > V1_MAX {
        return invalid("v1 line longer than 107 bytes");
    }
    let Some(body) = line.strip_suffix(b"\r\n") else {
        return invalid("v1 line does not end with CRLF");
    };
    let Some(body) = body.strip_prefix(b"PROXY ") else {
        return invalid("v1 line does not start with \"PROXY \"");
    };
    // §2.1: a lone CR or LF must not end the line; one inside it is no better.
    if body.iter().any(|&b| b == b'\r' || b == b'\n') {
        return invalid("stray CR or LF in the v1 line");
    }
    // Splitting on each space (not on runs of them) rejects anything but single spaces.
    let mut fields = body.split(|&b| b == b' ');
    let v6 = match fields.next() {
        // §2.1: for UNKNOWN "the receiver must ignore anything presented before the CRLF".
        Some(b"UNKNOWN") => return Ok(Received::Local),
        Some(b"TCP4") => false,
        Some(b"TCP6") => true,
        _ => return invalid("v1 protocol is not TCP4, TCP6 or UNKNOWN"),
    };
    let source = v1_address(fields.next(), v6)?;
    let destination = v1_address(fields.next(), v6)?;
    let sport = v1_port(fields.next())?;
    let dport = v1_port(fields.next())?;
    if fields.next().is_some() {
        return invalid("too many fields in the v1 line");
    }
    Ok(proxied(source, sport, destination, dport))
}

/// An address of the announced family; std's parser refuses IPv4 octets with leading zeros.
fn v1_address(field: Option<&[u8]>, v6: bool) -> Result<IpAddr, HeaderError> {
    let text = std::str::from_utf8(field.unwrap_or_default()).unwrap_or_default();
    let ip = match v6 {
        true => text.parse::<Ipv6Addr>().map(IpAddr::V6),
        false => text.parse::<Ipv4Addr>().map(IpAddr::V4),
    };
    ip.or_else(|_| invalid("bad or missing address in the v1 line"))
}

/// Decimal, no sign, no leading zero (§2.1), at most 65535.
fn v1_port(field: Option<&[u8]>) -> Result<u16, HeaderError> {
    let digits = field.unwrap_or_default();
    let canonical = (1..=5).contains(&digits.len())
        && digits.iter().all(u8::is_ascii_digit)
        && (digits == b"0" || !digits.starts_with(b"0"));
    match std::str::from_utf8(digits).map(str::parse) {
        Ok(Ok(port)) if canonical => Ok(port),
        _ => invalid("bad or missing port in the v1 line"),
    }
}

fn proxied(source: IpAddr, sport: u16, destination: IpAddr, dport: u16) -> Received {
    Received::Proxied {
        source: SocketAddr::new(normalize(source), sport),
        destination: SocketAddr::new(normalize(destination), dport),
    }
}

/// The first 16 bytes of a v2 header, if there are that many.
fn fixed_part(data: &[u8]) -> Option<&[u8; V2_FIXED]> {
    data.get(..V2_FIXED)?.try_into().ok()
}

/// Checks the fixed part of a v2 header and returns how many bytes follow it.
fn v2_body_len(fixed: &[u8; V2_FIXED]) -> Result<usize, HeaderError> {
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    // §2.2: the version "must always be sent as \x2 and the receiver must only accept this
    // value"; for commands other than LOCAL (0) and PROXY (1) "receivers must drop connections".
    match fixed[12] {
        _ if fixed[..12] != V2_SIGNATURE => invalid("bad v2 signature"),
        ver_cmd if ver_cmd >> 4 != 2 => invalid("unsupported version"),
        ver_cmd if ver_cmd & 0x0f > 1 => invalid("unknown v2 command"),
        _ if len > V2_MAX_BODY => invalid("v2 header longer than tcpfwd accepts (4112 bytes)"),
        _ => Ok(len),
    }
}

/// Parses a complete v2 header: exactly 16 bytes plus the length it announces.
pub fn parse_v2(header: &[u8]) -> Result<Received, HeaderError> {
    let Some(fixed) = fixed_part(header) else {
        return invalid("truncated v2 header");
    };
    let mut rest = header.get(V2_FIXED..).unwrap_or_default();
    let len = v2_body_len(fixed)?;
    if rest.len() != len {
        return invalid(match rest.len() < len {
            true => "truncated v2 header",
            false => "bytes after the end of the v2 header",
        });
    }
    let (source, destination) = match fixed[13] {
        // §2.2, LOCAL: the receiver "must use the real connection endpoints and discard the
        // protocol block including the family which is ignored".
        _ if fixed[12] & 0x0f == 0 => return Ok(Received::Local),
        0x11 => take_ips::<4>(&mut rest)?,
        0x21 => take_ips::<16>(&mut rest)?,
        // §2.2: other families and protocols "must be rejected as invalid by receivers".
        family if family >> 4 > 3 || family & 0x0f > 2 => {
            return invalid("unknown v2 address family or protocol")
        }
        // UNSPEC, UDP and UNIX: §2.2 lets a receiver support only some combinations
        // "provided that it automatically falls back to the UNSPEC mode", and with UNSPEC
        // "the receiver should ignore address information": keep the real peer address.
        _ => return Ok(Received::Local),
    };
    let short = "v2 address block shorter than its family needs";
    let sport = u16::from_be_bytes(take(&mut rest, short)?);
    let dport = u16::from_be_bytes(take(&mut rest, short)?);
    skip_tlvs(rest)?;
    Ok(proxied(source, sport, destination, dport))
}

/// Takes a source and a destination address of N bytes each (§2.2: network byte order).
fn take_ips<const N: usize>(rest: &mut &[u8]) -> Result<(IpAddr, IpAddr), HeaderError>
where
    IpAddr: From<[u8; N]>,
{
    let short = "v2 address block shorter than its family needs";
    Ok((
        take::<N>(rest, short)?.into(),
        take::<N>(rest, short)?.into(),
    ))
}

/// Takes the first N bytes of `rest`, or fails with `why`.
fn take<const N: usize>(rest: &mut &[u8], why: &'static str) -> Result<[u8; N], HeaderError> {
    let Some(head) = rest.get(..N).and_then(|head| head.try_into().ok()) else {
        return invalid(why);
    };
    *rest = rest.get(N..).unwrap_or_default();
    Ok(head)
}

/// The bytes after the address block are TLVs (§2.2); tcpfwd uses none of them (CRC32C is
/// optional for receivers), but like HAProxy it refuses a block that is not whole TLVs.
fn skip_tlvs(mut rest: &[u8]) -> Result<(), HeaderError> {
    let bad = "malformed TLV in the v2 header";
    while !rest.is_empty() {
        let [_kind, hi, lo] = take::<3>(&mut rest, bad)?;
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        rest = rest.get(len..).ok_or(HeaderError::Invalid(bad))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::thread;
    use std::time::{Duration, Instant};

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn proxied(source: &str, destination: &str) -> Received {
        Received::Proxied {
            source: addr(source),
            destination: addr(destination),
        }
    }

    fn v2(ver_cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let len = (body.len() as u16).to_be_bytes();
        [&V2_SIGNATURE[..], &[ver_cmd, family, len[0], len[1]], body].concat()
    }

    fn parse(header: &[u8]) -> Result<Received, HeaderError> {
        parse_v1(header).or_else(|_| parse_v2(header))
    }

    fn assert_invalid(got: Result<Received, HeaderError>, input: &[u8]) {
        assert!(
            matches!(got, Err(HeaderError::Invalid(_))),
            "{input:?}: {got:?}"
        );
    }

    const S4: &str = "192.168.0.1:56324";
    const D4: &str = "192.168.0.11:443";
    const V4_BODY: [u8; 12] = [192, 168, 0, 1, 192, 168, 0, 11, 0xdc, 0x04, 0x01, 0xbb];
    const PAYLOAD: &[u8] = b"GET / HTTP/1.0\r\n\r\n";

    #[test]
    fn exact_bytes() {
        let v1 = encode(Version::V1, addr(S4), addr(D4));
        assert_eq!(v1, b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
        let (s6, d6) = (addr("[2001:db8::1]:56324"), addr("[2001:db8::11]:443"));
        let v1 = encode(Version::V1, s6, d6);
        assert_eq!(v1, b"PROXY TCP6 2001:db8::1 2001:db8::11 56324 443\r\n");
        let v2_4 = encode(Version::V2, addr(S4), addr(D4));
        assert_eq!(v2_4[12..16], [0x21, 0x11, 0, 12]);
        assert_eq!(v2_4, v2(0x21, 0x11, &V4_BODY));
        let net = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let body = [&net[..], &[1], &net, &[0x11, 0xdc, 0x04, 0x01, 0xbb]].concat();
        assert_eq!(encode(Version::V2, s6, d6), v2(0x21, 0x21, &body));
        assert_eq!(body.len(), 36);
    }

    #[test]
    fn mapped_addresses_count_as_ipv4() {
        let s = addr("[::ffff:192.168.0.1]:56324");
        let d = addr("[::ffff:192.168.0.11]:443");
        for version in [Version::V1, Version::V2] {
            assert_eq!(encode(version, s, d), encode(version, addr(S4), addr(D4)));
            assert_eq!(parse(&encode(version, s, d)).unwrap(), proxied(S4, D4));
        }
        // Mixed families go out as TCP6 with the IPv4 side mapped, in hex groups.
        let (s, d) = (addr("192.0.2.1:1000"), addr("[2001:db8::1]:443"));
        let v1 = encode(Version::V1, s, d);
        assert_eq!(v1, b"PROXY TCP6 ::ffff:c000:201 2001:db8::1 1000 443\r\n");
        let v2 = encode(Version::V2, s, d);
        assert_eq!(v2[13], 0x21);
        let want = proxied("192.0.2.1:1000", "[2001:db8::1]:443");
        assert_eq!(parse_v1(&v1).unwrap(), want);
        assert_eq!(parse_v2(&v2).unwrap(), want);
    }

    #[test]
    fn round_trip() {
        let max6 = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
        for (s, d) in [
            (S4, D4),
            ("0.0.0.0:0", "255.255.255.255:65535"),
            ("[::1]:1", max6),
        ] {
            for version in [Version::V1, Version::V2] {
                let header = encode(version, addr(s), addr(d));
                assert_eq!(parse(&header).unwrap(), proxied(s, d));
            }
        }
    }

    #[test]
    fn v1_invalid() {
        let mut too_long = b"PROXY UNKNOWN ".to_vec();
        too_long.resize(106, b'f');
        too_long.extend_from_slice(b"\r\n");
        let bad: &[&[u8]] = &[
            b"",
            &too_long,
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nX",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 \r\n",
            b"PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n",
            b"PROXY  TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
            b"proxy TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
            b"PROXY TCP5 192.168.0.1 192.168.0.11 56324 443\r\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 +5632 443\r\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 0443\r\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 65536\r\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 -1 443\r\n",
            b"PROXY TCP4 192.168.0.01 192.168.0.11 56324 443\r\n",
            b"PROXY TCP4 256.168.0.1 192.168.0.11 56324 443\r\n",
            b"PROXY TCP4 2001:db8::1 192.168.0.11 56324 443\r\n",
            b"PROXY TCP6 192.168.0.1 2001:db8::1 56324 443\r\n",
            b"PROXY TCP4 192.168.0.1\n192.168.0.11 56324 443\r\n",
            b"PROXY UNKNOWNX\r\n",
        ];
        for line in bad {
            assert_invalid(parse_v1(line), line);
        }
        assert!(scan(&too_long).is_err());
    }

    #[test]
    fn v1_unknown_is_local() {
        assert_eq!(parse_v1(b"PROXY UNKNOWN\r\n").unwrap(), Received::Local);
        let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let worst = format!("PROXY UNKNOWN {full} {full} 65535 65535\r\n");
        assert_eq!(worst.len(), 107);
        assert_eq!(parse_v1(worst.as_bytes()).unwrap(), Received::Local);
        assert_eq!(scan(worst.as_bytes()).unwrap(), Some(107));
    }

    #[test]
    fn v2_invalid() {
        let good = v2(0x21, 0x11, &V4_BODY);
        let mut bad_signature = good.clone();
        bad_signature[4] = 1;
        let mut too_long = [&V4_BODY[..], &[0xe0, 0x10, 0x00]].concat();
        too_long.resize(12 + 3 + 4096, 0);
        let tlv = |tail: &[u8]| v2(0x21, 0x11, &[&V4_BODY[..], tail].concat());
        let cases = [
            bad_signature,
            good[..good.len() - 1].to_vec(), // truncated
            good[..15].to_vec(),
            [&good[..], &[0]].concat(), // a byte after the end
            v2(0x11, 0x11, &V4_BODY),   // version 1
            v2(0x22, 0x11, &V4_BODY),   // command 2
            v2(0x21, 0x11, &V4_BODY[..11]),
            v2(0x21, 0x21, &[0; 35]),
            v2(0x21, 0x41, &V4_BODY), // family 4
            v2(0x21, 0x13, &V4_BODY), // protocol 3
            v2(0x21, 0x11, &too_long),
            tlv(&[4, 0]),
            tlv(&[4, 0, 2, 0]),
        ];
        for header in &cases {
            assert_invalid(parse_v2(header), header);
        }
    }

    #[test]
    fn v2_local_unsupported_families_and_tlvs() {
        let local = [
            (0x20, 0x00, &[][..]),
            (0x20, 0x11, &V4_BODY),
            (0x20, 0xff, &[1, 2, 3]),
        ];
        let fallback = [
            (0x21, 0x00, &[][..]),
            (0x21, 0x12, &V4_BODY),
            (0x21, 0x31, &[0; 216]),
        ];
        for (ver_cmd, family, body) in local.into_iter().chain(fallback) {
            let got = parse_v2(&v2(ver_cmd, family, body)).unwrap();
            assert_eq!(got, Received::Local);
        }
        let mut body = V4_BODY.to_vec();
        body.extend_from_slice(&[0x04, 0, 3, 0, 0, 0, 0x20, 0, 0, 0x02, 0, 11]);
        body.extend_from_slice(b"example.com"); // NOOP, empty SSL, AUTHORITY
        assert_eq!(parse_v2(&v2(0x21, 0x11, &body)).unwrap(), proxied(S4, D4));
    }

    fn pair() -> (TcpStream, Stream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (client, Stream::Tcp(listener.accept().unwrap().0))
    }

    fn soon() -> Deadline {
        Deadline::after(Duration::from_secs(5))
    }

    /// Everything the client sends after the header, up to its EOF.
    fn rest(mut server: &Stream) -> Vec<u8> {
        let limit = Some(Duration::from_secs(5));
        server.set_read_timeout(limit).unwrap();
        let mut out = Vec::new();
        server.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn local_headers_parse_as_local() {
        for version in [Version::V1, Version::V2] {
            let header = encode_local(version);
            assert_eq!(parse(&header).unwrap(), Received::Local, "{header:?}");
        }
        assert_eq!(encode_local(Version::V1), b"PROXY UNKNOWN\r\n");
        assert_eq!(encode_local(Version::V2).len(), 16);
    }

    #[test]
    fn read_leaves_payload_untouched() {
        let (s, d) = (addr(S4), addr(D4));
        let mut tlvs = [&V4_BODY[..], &[0xe0, 0x02, 0x00]].concat();
        tlvs.resize(12 + 3 + 512, 7); // longer than one peek window
        let headers = [
            encode(Version::V1, s, d),
            encode(Version::V2, s, d),
            v2(0x21, 0x11, &tlvs),
        ];
        for header in headers {
            let (mut client, server) = pair();
            client.write_all(&[&header[..], PAYLOAD].concat()).unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            assert_eq!(read(&server, soon()).unwrap(), proxied(S4, D4));
            assert_eq!(server.as_tcp().unwrap().read_timeout().unwrap(), None);
            assert_eq!(rest(&server), PAYLOAD);
        }
    }

    /// Sends `bytes` one at a time, `gap` apart, from a thread.
    fn dribble(mut client: TcpStream, bytes: Vec<u8>, gap: u64) -> thread::JoinHandle<()> {
        client.set_nodelay(true).unwrap();
        let send = move || {
            for byte in bytes {
                if client.write_all(&[byte]).is_err() {
                    return;
                }
                // Pacing only, so the bytes arrive apart; no outcome depends on it.
                thread::sleep(Duration::from_millis(gap));
            }
            let _ = client.shutdown(Shutdown::Write);
        };
        thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(send)
            .unwrap()
    }

    #[test]
    fn read_header_split_byte_by_byte() {
        let (s6, d6) = (addr("[2001:db8::1]:1"), addr("[2001:db8::2]:2"));
        for header in [encode(Version::V1, s6, d6), encode(Version::V2, s6, d6)] {
            let (client, server) = pair();
            let writer = dribble(client, [&header[..], PAYLOAD].concat(), 1);
            assert_eq!(read(&server, soon()).unwrap(), parse(&header).unwrap());
            assert_eq!(rest(&server), PAYLOAD);
            writer.join().unwrap();
        }
    }

    #[test]
    fn read_refuses_missing_header_and_early_close() {
        let (mut client, server) = pair();
        client.write_all(PAYLOAD).unwrap();
        assert_invalid(read(&server, soon()), PAYLOAD);
        assert_eq!(server.as_tcp().unwrap().read_timeout().unwrap(), None);
        let (mut client, server) = pair();
        client.write_all(b"PROXY TCP4 1.2").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        assert!(matches!(read(&server, soon()), Err(HeaderError::Closed)));
    }

    #[test]
    fn read_deadline_is_total() {
        let (_client, server) = pair();
        let start = Instant::now();
        let got = read(&server, Deadline::from(start, Duration::from_millis(300)));
        assert!(matches!(got, Err(HeaderError::Timeout)), "{got:?}");
        let took = start.elapsed();
        let (low, high) = (Duration::from_millis(290), Duration::from_secs(3));
        assert!(took >= low && took < high, "{took:?}");
        assert_eq!(server.as_tcp().unwrap().read_timeout().unwrap(), None);
        // A byte every 100 ms: a per-read timeout of 300 ms would never fire.
        let (client, server) = pair();
        let writer = dribble(client, b"PROXY TCP4 ".to_vec(), 100);
        let start = Instant::now();
        let got = read(&server, Deadline::from(start, Duration::from_millis(300)));
        let took = start.elapsed();
        assert!(matches!(got, Err(HeaderError::Timeout)), "{got:?}");
        assert!(took < Duration::from_millis(1000), "{took:?}");
        drop(server);
        writer.join().unwrap();
    }

    #[test]
    fn fuzz_never_panics() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        // xorshift64*: std-only and deterministic, so a failure can be replayed.
        let mut below = |n: usize| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
        };
        let (s6, d6) = (addr("[2001:db8::1]:1"), addr("[::ffff:10.0.0.1]:65535"));
        let seeds = [
            encode(Version::V1, addr(S4), addr(D4)),
            encode(Version::V1, s6, d6),
            encode(Version::V2, addr(S4), addr(D4)),
            encode(Version::V2, s6, d6),
            b"PROXY UNKNOWN\r\n".to_vec(),
            v2(0x21, 0x11, &[&V4_BODY[..], &[4, 0, 1, 9]].concat()),
        ];
        let alphabet = b" 0123456789abcdef.:\r\nPROXYTCP46UNKNOWN\x00\x0d\x21\x11\xff";
        let (mut accepted, mut refused) = (0, 0);
        for round in 0..20_000 {
            let mut bytes = seeds[below(seeds.len())].clone();
            if round % 5 == 0 {
                bytes.truncate(below(6) * 3);
                let len = below(120);
                bytes.extend((0..len).map(|_| below(256) as u8));
            }
            for _ in 0..below(4) {
                let (at, byte) = (below(bytes.len() + 1), alphabet[below(alphabet.len())]);
                match below(3) {
                    0 => bytes.insert(at, byte),
                    1 => bytes.truncate(at),
                    _ => bytes.get_mut(at).map_or((), |b| *b = byte),
                }
            }
            if let Ok(Some(len)) = scan(&bytes) {
                assert!(len <= bytes.len());
            }
            for (version, got) in [
                (Version::V1, parse_v1(&bytes)),
                (Version::V2, parse_v2(&bytes)),
            ] {
                let Ok(received) = got else {
                    refused += 1;
                    continue;
                };
                accepted += 1;
                // Whatever is accepted must survive being sent on and read again.
                if let Received::Proxied {
                    source: s,
                    destination: d,
                } = received
                {
                    assert_eq!(parse(&encode(version, s, d)).unwrap(), received);
                }
            }
        }
        assert!(accepted > 1_000 && refused > 1_000, "{accepted} {refused}");
    }
}
