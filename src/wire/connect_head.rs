//! Reading and judging the head of an HTTP CONNECT request (SPEC §4), and refusing it.
//!
//! The head is read under one total deadline and checked line by line as it arrives, so garbage
//! (a TLS ClientHello sent straight to the proxy) is refused at once, not after 10 s.

use std::fmt;
use std::io::{self, Read};
use std::net::{IpAddr, TcpStream};
use std::time::Duration;

use crate::addr::Host;
use crate::deadline::Deadline;
use crate::sys;
use crate::wire::answer;

/// Largest head accepted, its final empty line included.
pub const MAX_HEAD: usize = 8 * 1024;
/// Time a client has, counted from the accept, to send its whole head.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// The answer that opens the tunnel.
pub const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection Established\r\n\r\n";

/// Bytes asked for per read; on the stack, which is small in connection threads.
const CHUNK: usize = 2048;
const TIMED_OUT: Rejection = Rejection::new(Status::RequestTimeout, "head not complete in time");
const MALFORMED: Rejection = Rejection::new(Status::BadRequest, "malformed head");
const READ_ERROR: Rejection = Rejection::new(Status::BadRequest, "read error");

/// A parsed CONNECT request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Where the client wants to go.
    pub host: Host,
    /// The port to connect to, never 0.
    pub port: u16,
    /// What a single `Proxy-Authorization: Basic` header carried, if it decoded.
    pub credentials: Option<Credential>,
}

/// A user name and password: one `--auth USER:PASS`, or what a `Proxy-Authorization: Basic`
/// header carried.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The user name: what comes before the first colon.
    pub user: String,
    /// The password: everything after the first colon.
    pub password: String,
}

// By hand, so that a password never reaches a log line by accident.
impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential({:?}, ***)", self.user)
    }
}

/// HTTP statuses a CONNECT client can be answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 400: malformed head, or the client ended it early.
    BadRequest,
    /// 403: port, destination or proxy loop refused (decided by the caller).
    Forbidden,
    /// 405: a method other than CONNECT.
    MethodNotAllowed,
    /// 407: missing or wrong credentials (decided by the caller with `authorized`).
    ProxyAuthRequired,
    /// 408: the head was not complete by the deadline.
    RequestTimeout,
    /// 431: the head reached `MAX_HEAD` bytes without its empty line.
    HeaderTooLarge,
    /// 502: the name does not resolve or the connect was refused (decided by the caller).
    BadGateway,
    /// 503: tcpfwd ran short of file descriptors or memory (decided by the caller).
    ServiceUnavailable,
    /// 504: the connect timed out (decided by the caller).
    GatewayTimeout,
}

/// The code and the whole response: status line, optional header, no body, then close.
macro_rules! response {
    ($code:literal, $reason:literal $(, $header:literal)?) => {
        ($code, concat!("HTTP/1.1 ", $code, " ", $reason, "\r\n", $($header, "\r\n",)?
            "Content-Length: 0\r\nConnection: close\r\n\r\n").as_bytes())
    };
}

impl Status {
    /// The numeric HTTP status code.
    pub fn code(self) -> u16 {
        self.parts().0
    }

    /// The full HTTP/1.1 response to send, headers included.
    pub fn response(self) -> &'static [u8] {
        self.parts().1
    }

    fn parts(self) -> (u16, &'static [u8]) {
        match self {
            Status::BadRequest => response!(400, "Bad Request"),
            Status::Forbidden => response!(403, "Forbidden"),
            Status::MethodNotAllowed => response!(405, "Method Not Allowed", "Allow: CONNECT"),
            Status::ProxyAuthRequired => response!(
                407,
                "Proxy Authentication Required",
                "Proxy-Authenticate: Basic realm=\"tcpfwd\""
            ),
            Status::RequestTimeout => response!(408, "Request Timeout"),
            Status::HeaderTooLarge => response!(431, "Request Header Fields Too Large"),
            Status::BadGateway => response!(502, "Bad Gateway"),
            Status::ServiceUnavailable => response!(503, "Service Unavailable"),
            Status::GatewayTimeout => response!(504, "Gateway Timeout"),
        }
    }
}

/// Why a head was refused: the status to answer with and a short reason for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// What to answer with `reject`.
    pub status: Status,
    /// A few words for the log, e.g. `head not complete in time`.
    pub why: &'static str,
}

impl Rejection {
    const fn new(status: Status, why: &'static str) -> Rejection {
        Rejection { status, why }
    }
}

/// Reads the head from `stream` until its empty line: at most `MAX_HEAD` bytes, all before
/// `deadline` (a total deadline: each read waits only for the time left).
///
/// Returns the request and the bytes that came after the head (early data, to be forwarded
/// before anything else), and leaves the stream's read timeout at `None`. A malformed line is
/// refused as soon as it is complete; a method other than CONNECT once the head is.
pub fn read_request(
    stream: &TcpStream,
    deadline: Deadline,
) -> Result<(Request, Vec<u8>), Rejection> {
    // The one allocation of a CONNECT connection that is not a few bytes: when memory is
    // short, this client gets a 503 and the process goes on.
    let mut buf = Vec::new();
    buf.try_reserve_exact(MAX_HEAD)
        .map_err(|_| Rejection::new(Status::ServiceUnavailable, "out of memory here"))?;
    let mut parser = HeadParser::default();
    loop {
        if let Some(end) = parser.feed(&buf).map_err(|_| MALFORMED)? {
            let request = parser.finish().map_err(|status| match status {
                Status::MethodNotAllowed => Rejection::new(status, "method not CONNECT"),
                _ => MALFORMED,
            })?;
            // `end` is within `buf`: the parser only returns positions of bytes it was given.
            let early = buf.split_off(end);
            // A failure is harmless: the relay sets the timeouts it needs anyway.
            let _ = stream.set_read_timeout(None);
            return Ok((request, early));
        }
        if buf.len() >= MAX_HEAD {
            return Err(Rejection::new(Status::HeaderTooLarge, "head too large"));
        }
        read_more(stream, &mut buf, deadline)?;
    }
}

/// Appends the next bytes from `stream` to `buf`, waiting no later than `deadline`. Never takes
/// more than `MAX_HEAD` bytes in all from the socket: what stays there is the relay's.
fn read_more(stream: &TcpStream, buf: &mut Vec<u8>, deadline: Deadline) -> Result<(), Rejection> {
    let mut chunk = [0u8; CHUNK];
    let room = MAX_HEAD.saturating_sub(buf.len()).min(CHUNK);
    let mut reader = stream;
    // Only an interrupted read goes round again, and the deadline bounds that.
    loop {
        let left = deadline.left().ok_or(TIMED_OUT)?;
        stream
            .set_read_timeout(Some(left))
            .map_err(|_| READ_ERROR)?;
        match reader.read(chunk.get_mut(..room).unwrap_or_default()) {
            Ok(0) => return Err(Rejection::new(Status::BadRequest, "eof before end of head")),
            Ok(n) => {
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                return Ok(());
            }
            Err(e) if sys::is_timeout(&e) => return Err(TIMED_OUT),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(READ_ERROR),
        }
    }
}

/// Parses a complete head: its empty line last, nothing after it (the tests' way in).
///
/// Errors are `BadRequest` (malformed) or `MethodNotAllowed` (well-formed, not CONNECT).
/// The size is not checked here: `read_request` never gathers more than `MAX_HEAD` bytes.
#[cfg(test)]
pub fn parse(head: &[u8]) -> Result<Request, Status> {
    let mut parser = HeadParser::default();
    match parser.feed(head)? {
        Some(end) if end == head.len() => parser.finish(),
        _ => Err(Status::BadRequest),
    }
}

/// A head checked line by line as its bytes arrive, each byte looked at once.
#[derive(Default)]
struct HeadParser {
    line_start: usize,               // where the line being received starts
    checked: usize,                  // bytes before this were looked at already
    first: Option<RequestLine>,      // the request line, once received
    credentials: Option<Credential>, // from the last Proxy-Authorization header
    auth_headers: usize,             // how many Proxy-Authorization headers came
}

/// What a well-formed request line asks for.
enum RequestLine {
    Connect(Host, u16),
    OtherMethod,
}

impl HeadParser {
    /// Looks at what `buf` (the head so far, longer at each call) added since the last call.
    /// Returns the head's length once its empty line has arrived.
    fn feed(&mut self, buf: &[u8]) -> Result<Option<usize>, Status> {
        while let Some(lf) = find_lf(buf, self.checked) {
            let line = buf.get(self.line_start..lf).unwrap_or_default();
            // Bare LF line ends are accepted too: being liberal here costs nothing, since a
            // stray CR anywhere else is still refused as a control byte.
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            (self.line_start, self.checked) = (lf + 1, lf + 1);
            if self.first.is_none() {
                self.first = Some(request_line(line).ok_or(Status::BadRequest)?);
            } else if line.is_empty() {
                return Ok(Some(lf + 1));
            } else {
                self.header(line)?;
            }
        }
        // An unfinished line holding a control byte can never become valid: refuse it now.
        // CR is let through, as its LF may come with the next read.
        let unfinished = buf.get(self.checked..).unwrap_or_default();
        if unfinished
            .iter()
            .any(|&b| is_ctl(b) && b != b'\t' && b != b'\r')
        {
            return Err(Status::BadRequest);
        }
        self.checked = buf.len();
        Ok(None)
    }

    /// Checks one header line and keeps what matters to the proxy.
    fn header(&mut self, line: &[u8]) -> Result<(), Status> {
        let (name, value) = header_line(line).ok_or(Status::BadRequest)?;
        if name.eq_ignore_ascii_case(b"proxy-authorization") {
            self.auth_headers += 1;
            self.credentials = basic_credentials(value);
        }
        Ok(())
    }

    /// The request, once `feed` has found the empty line.
    fn finish(self) -> Result<Request, Status> {
        // Two Proxy-Authorization headers are ambiguous: taken as none.
        let credentials = self.credentials.filter(|_| self.auth_headers == 1);
        match self.first {
            Some(RequestLine::Connect(host, port)) => Ok(Request {
                host,
                port,
                credentials,
            }),
            Some(RequestLine::OtherMethod) => Err(Status::MethodNotAllowed),
            None => Err(Status::BadRequest),
        }
    }
}

/// The index of the first `\n` at or after `from`.
fn find_lf(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    rest.iter().position(|&b| b == b'\n').map(|i| from + i)
}

/// Checks `METHOD SP target SP HTTP/1.x`; only a CONNECT target is looked into.
fn request_line(line: &[u8]) -> Option<RequestLine> {
    let mut parts = line.split(|&b| b == b' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let well_formed = parts.next().is_none()
        && is_token(method)
        && !target.is_empty()
        && target.iter().all(u8::is_ascii_graphic)
        && version.len() == 8
        && version.starts_with(b"HTTP/1.")
        && version.last().is_some_and(u8::is_ascii_digit);
    if !well_formed {
        return None;
    }
    // Methods are case-sensitive (RFC 9110 §9.1): `connect` is another method.
    if method != b"CONNECT" {
        return Some(RequestLine::OtherMethod);
    }
    let (host, port) = authority(target)?;
    Some(RequestLine::Connect(host, port))
}

/// Splits `host:port` or `[v6]:port`. A name may hold only what a resolver takes as one, which
/// also keeps out `user@host`, `%`-escapes and unbracketed IPv6.
fn authority(target: &[u8]) -> Option<(Host, u16)> {
    let colon = target.iter().rposition(|&b| b == b':')?;
    let (host, port) = (target.get(..colon)?, target.get(colon + 1..)?);
    let name_byte = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
    let text = std::str::from_utf8(host).ok()?;
    let host = match text.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => Host::Ip(IpAddr::V6(v6.parse().ok()?)),
        // Without a colon, only a dotted IPv4 address parses as an IpAddr.
        None if !host.is_empty() && host.len() <= 255 && host.iter().all(name_byte) => text
            .parse()
            .map_or_else(|_| Host::Name(text.to_owned()), Host::Ip),
        None => return None,
    };
    Some((host, port_number(port)?))
}

/// A port: 1 to 5 digits, 1..=65535 (no sign, which `u16::from_str` would take).
fn port_number(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let port: u16 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(port).filter(|&p| p != 0)
}

/// Splits `Name: value` and trims the value.
fn header_line(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    let (name, value) = (line.get(..colon)?, line.get(colon + 1..)?);
    // The token check also refuses obs-fold (a line starting with SP or HTAB) and whitespace
    // before the colon, both forbidden by RFC 9112 §5.
    let valid = is_token(name) && !value.iter().any(|&b| is_ctl(b) && b != b'\t');
    valid.then(|| (name, trim(value)))
}

/// A non-empty RFC 9110 token (a method or header name).
fn is_token(bytes: &[u8]) -> bool {
    let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    !bytes.is_empty() && bytes.iter().all(tchar)
}

/// An ASCII control byte, DEL included.
fn is_ctl(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// `bytes` without leading and trailing spaces and tabs.
fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] | [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// `Basic <base64 of user:password>`; anything else gives no credentials (never an error).
fn basic_credentials(value: &[u8]) -> Option<Credential> {
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, token) = (value.get(..space)?, value.get(space..)?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = String::from_utf8(decode_base64(trim(token))?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    let (user, password) = (user.to_owned(), password.to_owned());
    Some(Credential { user, password })
}

/// Standard base64 (RFC 4648 §4). Padding may be left out, but if present it must be right;
/// unused low bits of the last character are ignored.
fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let data = text
        .strip_suffix(b"==")
        .or_else(|| text.strip_suffix(b"="))
        .unwrap_or(text);
    if (data.len() != text.len() && text.len() % 4 != 0) || data.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in data {
        let sextet = ALPHABET.iter().position(|&a| a == c)?;
        acc = (acc << 6) | sextet as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Whether `given` matches one `(user, password)` of `allowed`; `false` without credentials or
/// with an empty list. Every entry is compared in full, so the time taken does not reveal how
/// much of a user name or password was right.
pub fn authorized(given: Option<&Credential>, allowed: &[Credential]) -> bool {
    let Some(given) = given else { return false };
    let mut found = 0u8;
    for pair in allowed {
        found |= same(given.user.as_bytes(), pair.user.as_bytes())
            & same(given.password.as_bytes(), pair.password.as_bytes());
    }
    found == 1
}

/// 1 when `given` equals `expected`, else 0, without stopping at the first difference.
fn same(given: &[u8], expected: &[u8]) -> u8 {
    let mut diff = usize::from(given.len() != expected.len());
    for (i, &b) in given.iter().enumerate() {
        diff |= usize::from(b ^ expected.get(i).copied().unwrap_or(0));
    }
    // black_box keeps the optimiser from turning the loop back into an early exit.
    u8::from(std::hint::black_box(diff) == 0)
}

/// Answers `status` and closes so that the client reads the whole response (see
/// [`answer::send_and_close`]).
pub fn reject(stream: &TcpStream, status: Status) {
    answer::send_and_close(stream, status.response());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{Shutdown, TcpListener};
    use std::thread;
    use std::time::Instant;

    const HEAD: &[u8] = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\
        Proxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\n\r\n";
    const SHOWN: &str = "name example.com 443 alice:secret";

    /// `host port [user:password]`, or the status code: short to compare.
    fn show(result: Result<Request, Status>) -> String {
        let request = match result {
            Ok(request) => request,
            Err(status) => return status.code().to_string(),
        };
        let host = match request.host {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(name) => format!("name {name}"),
        };
        let user = request
            .credentials
            .map(|c| format!(" {}:{}", c.user, c.password));
        format!("{host} {}{}", request.port, user.unwrap_or_default())
    }

    /// `parse` cases: valid, 400 (malformed beats 405), 405, and Basic values that give no
    /// credentials but are no error either.
    #[rustfmt::skip] // a table, one case a line
    const CASES: &[(&[u8], &str)] = &[
        (b"CONNECT 10.1.2.3:8443 HTTP/1.1\r\n\r\n", "10.1.2.3 8443"),
        (b"CONNECT [::1]:443 HTTP/1.0\r\nHost: [::1]:443\r\n\r\n", "::1 443"),
        (HEAD, SHOWN),
        (b"CONNECT a:1 HTTP/1.1\r\nproxy-authorization:  basic YTpiOmM=\t\n\r\n", "name a 1 a:b:c"),
        (b"CONNECT a-b_c.d:65535 HTTP/1.1\nHost: x\r\nX:\n\n", "name a-b_c.d 65535"),
        (b"CONNECT 1.2.3:443 HTTP/1.1\r\n\r\n", "name 1.2.3 443"),
        (b"", "400"),
        (b"\r\n", "400"),
        (b"CONNECT a:443 HTTP/1.1\r\n", "400"),
        (b"CONNECT a:443 HTTP/1.1\r\n\r\nextra", "400"),
        (b"CONNECT a:443\r\n\r\n", "400"),
        (b"CONNECT  a:443 HTTP/1.1\r\n\r\n", "400"),
        (b"CONNECT a:443 HTTP/1.1 \r\n\r\n", "400"),
        (b"CONNECT a:443 HTTP/2.0\r\n\r\n", "400"),
        (b"CONNECT a:443 HTTP/1.12\r\n\r\n", "400"),
        (b"CONNECT a:443 http/1.1\r\n\r\n", "400"),
        (b"CONNECT a HTTP/1.1\r\n\r\n", "400"),
        (b"CONNECT a: HTTP/1.1\r\n\r\n", "400"),
        (b"CONNECT :443 HTTP/1.1\r\n\r\n", "400"),
        (b"CONNECT a:0 HTTP/1.1\r\n\r\n", "400"),
        (b"CONNECT a:65536 HTTP/1.1\r\n\r\n", "400"),
        (b"CONNECT a:+443 HTTP/1.1\r\n\r\n", "400"),
        (b"CONNECT a:000443 HTTP/1.1\r\n\r\n", "400"),
        (b"CONNECT http://a:443/ HTTP/1.1\r\n\r\n", "400"),
        (b"CONNECT user@a:443 HTTP/1.1\r\n\r\n", "400"),
        (b"CONNECT ::1:443 HTTP/1.1\r\n\r\n", "400"),
        (b"CONNECT [::1]443 HTTP/1.1\r\n\r\n", "400"),
        (b"CONNECT [1.2.3.4]:443 HTTP/1.1\r\n\r\n", "400"),
        (b"CONNECT [fe80::1%eth0]:443 HTTP/1.1\r\n\r\n", "400"),
        (b"CONNECT \xc3\xa9.com:443 HTTP/1.1\r\n\r\n", "400"),
        (b"CONNECT a:443 HTTP/1.1\r\nNoColon\r\n\r\n", "400"),
        (b"CONNECT a:443 HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", "400"),
        (b"CONNECT a:443 HTTP/1.1\r\nA : b\r\n\r\n", "400"),
        (b"CONNECT a:443 HTTP/1.1\r\n: b\r\n\r\n", "400"),
        (b"CONNECT a:443 HTTP/1.1\r\nA: b\0c\r\n\r\n", "400"),
        (b"CONNECT a:443 HTTP/1.1\r\nA: b\rc\r\n\r\n", "400"),
        (b"CONNECT a:443 HTTP/1.1\r\nA: b\x7f\r\n\r\n", "400"),
        (b"CONNECT a:443 HTTP/1.1\r\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\nBad header\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "405"),
        (b"connect a:443 HTTP/1.1\r\n\r\n", "405"),
        (b"POST x HTTP/1.0\n\n", "405"),
        (b"CONNECT a:1 HTTP/1.1\r\nProxy-Authorization: Basic !!!\r\n\r\n", "name a 1"),
        (b"CONNECT a:1 HTTP/1.1\r\nProxy-Authorization: Bearer YTpi\r\n\r\n", "name a 1"),
        (b"CONNECT a:1 HTTP/1.1\r\nProxy-Authorization: Basic\r\n\r\n", "name a 1"),
        (b"CONNECT a:1 HTTP/1.1\r\nProxy-Authorization: Basic YWxpY2U=\r\n\r\n", "name a 1"),
        (b"CONNECT a:1 HTTP/1.1\r\nProxy-Authorization: Basic /zpi\r\n\r\n", "name a 1"),
        (b"CONNECT a:1 HTTP/1.1\r\nProxy-Authorization: Basic YTpi=\r\n\r\n", "name a 1"),
        (b"CONNECT a:1 HTTP/1.1\nProxy-Authorization: Basic YTpi\n\
            Proxy-Authorization: Basic YTpi\n\n", "name a 1"),
    ];

    #[test]
    fn parse_cases() {
        for (head, expected) in CASES {
            let head_text = String::from_utf8_lossy(head);
            assert_eq!(show(parse(head)), *expected, "{head_text}");
        }
    }

    #[test]
    fn base64_vectors() {
        let decode = |text: &str| decode_base64(text.as_bytes());
        let rfc4648 = [
            "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy",
        ];
        for (i, text) in rfc4648.iter().enumerate() {
            assert_eq!(decode(text).as_deref(), b"foobar".get(..i), "{text}");
            assert_eq!(
                decode(text.trim_end_matches('=')).as_deref(),
                b"foobar".get(..i)
            );
        }
        assert_eq!(decode("+/+/"), Some(vec![0xfb, 0xff, 0xbf]));
        for bad in [
            "Z", "Zg=", "Zm9v=", "Z===", "====", "Zm9*", "Zm 9v", "Zm9vY",
        ] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn authorized_needs_a_matching_pair() {
        let allowed = [("alice", "secret"), ("bob", "pw")].map(|(user, password)| Credential {
            user: user.into(),
            password: password.into(),
        });
        let given = |user: &str, password: &str| {
            Some(Credential {
                user: user.into(),
                password: password.into(),
            })
        };
        let check =
            |user: &str, password: &str| authorized(given(user, password).as_ref(), &allowed);
        assert!(check("alice", "secret") && check("bob", "pw"));
        assert!(!check("alice", "pw") && !check("alice", "secret2") && !check("alice", "secre"));
        assert!(!check("", "") && !check("Alice", "secret") && !authorized(None, &allowed));
        assert!(!authorized(given("alice", "secret").as_ref(), &[]));
        let shown = format!("{:?}", given("alice", "secret"));
        assert_eq!(shown, "Some(Credential(\"alice\", ***))");
    }

    #[test]
    fn responses_are_exact() {
        use Status::*;
        let expected = [
            (BadRequest, "400 Bad Request"),
            (Forbidden, "403 Forbidden"),
            (MethodNotAllowed, "405 Method Not Allowed\r\nAllow: CONNECT"),
            (
                ProxyAuthRequired,
                "407 Proxy Authentication Required\r\n\
                Proxy-Authenticate: Basic realm=\"tcpfwd\"",
            ),
            (RequestTimeout, "408 Request Timeout"),
            (HeaderTooLarge, "431 Request Header Fields Too Large"),
            (BadGateway, "502 Bad Gateway"),
            (ServiceUnavailable, "503 Service Unavailable"),
            (GatewayTimeout, "504 Gateway Timeout"),
        ];
        for (status, lines) in expected {
            let tail = "Content-Length: 0\r\nConnection: close\r\n\r\n";
            let text = String::from_utf8_lossy(status.response());
            assert_eq!(text, format!("HTTP/1.1 {lines}\r\n{tail}"));
            assert!(lines.starts_with(&status.code().to_string()));
        }
    }

    /// Feeds `input` cut at `cuts`, as `read_request` sees it arrive; the contract of `parse`.
    fn parse_in_parts(input: &[u8], cuts: &[usize]) -> Result<Request, Status> {
        let mut parser = HeadParser::default();
        for &cut in cuts.iter().chain([&input.len()]) {
            match parser.feed(input.get(..cut).unwrap_or(input))? {
                Some(end) if end == input.len() => return parser.finish(),
                Some(_) => return Err(Status::BadRequest),
                None => {}
            }
        }
        Err(Status::BadRequest)
    }

    #[test]
    fn parser_takes_the_head_in_any_pieces() {
        for cut in 0..=HEAD.len() {
            assert_eq!(show(parse_in_parts(HEAD, &[cut])), SHOWN, "cut at {cut}");
        }
        let one_by_one: Vec<usize> = (0..HEAD.len()).collect();
        assert_eq!(show(parse_in_parts(HEAD, &one_by_one)), SHOWN);
    }

    fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> thread::JoinHandle<T> {
        thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(f)
            .unwrap()
    }

    fn soon() -> Deadline {
        Deadline::after(Duration::from_secs(5))
    }

    /// A server socket whose client thread writes `parts` one by one, `pause` apart, then
    /// stays open until joined (no EOF). A failed write ends it: the server may close first.
    fn client_writes(
        parts: Vec<Vec<u8>>,
        pause: Duration,
    ) -> (TcpStream, thread::JoinHandle<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = spawn(move || {
            let mut client = TcpStream::connect(addr).unwrap();
            client.set_nodelay(true).unwrap();
            for part in parts {
                thread::sleep(pause); // pacing a slow client, not synchronisation
                if client.write_all(&part).is_err() {
                    break;
                }
            }
            client
        });
        (listener.accept().unwrap().0, client)
    }

    /// What `read_request` makes of `data` by `deadline`: the request shown, `+` and the early
    /// data; or the status code.
    fn outcome(data: &[u8], deadline: Deadline) -> String {
        let (server, client) = client_writes(vec![data.to_vec()], Duration::ZERO);
        let result = read_request(&server, deadline);
        drop(server);
        client.join().unwrap();
        match result {
            Ok((request, early)) => {
                format!("{} +{}", show(Ok(request)), String::from_utf8_lossy(&early))
            }
            Err(rejection) => rejection.status.code().to_string(),
        }
    }

    #[test]
    fn read_request_takes_the_head_in_any_two_pieces_over_a_socket() {
        let sent = [HEAD, b"\x16\x03\x01early"].concat();
        for cut in 0..=sent.len() {
            let parts = vec![sent[..cut].to_vec(), sent[cut..].to_vec()];
            let (server, client) = client_writes(parts, Duration::ZERO);
            let (request, mut early) = read_request(&server, soon()).unwrap();
            assert_eq!(show(Ok(request)), SHOWN, "cut at {cut}");
            assert_eq!(server.read_timeout().unwrap(), None);
            // Early data the head's reads did not take is still in the socket, for the relay.
            client.join().unwrap().shutdown(Shutdown::Write).unwrap();
            (&server).read_to_end(&mut early).unwrap();
            assert_eq!(early, b"\x16\x03\x01early", "cut at {cut}");
        }
    }

    #[test]
    fn early_data_beyond_the_head_buffer_stays_in_the_socket() {
        let extra: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let (server, client) = client_writes(vec![[HEAD, &extra].concat()], Duration::ZERO);
        let (_, mut early) = read_request(&server, soon()).unwrap();
        assert!(HEAD.len() + early.len() <= MAX_HEAD);
        client.join().unwrap().shutdown(Shutdown::Write).unwrap();
        (&server).read_to_end(&mut early).unwrap();
        assert!(early == extra);
    }

    /// `head` followed by header lines up to about `total` bytes, without the final empty line.
    fn filler(head: &[u8], total: usize) -> Vec<u8> {
        let line = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        [head, &line.repeat(total / line.len())].concat()
    }

    #[test]
    fn size_limit() {
        let over = MAX_HEAD + 1000;
        let long = filler(b"CONNECT a:443 HTTP/1.1\r\n", over);
        assert_eq!(outcome(&long, soon()), "431");
        assert_eq!(outcome(&vec![b'a'; over], soon()), "431");
        // A malformed request line stays 400 however much follows it.
        let bad_then_long = filler(b"CONNECT a HTTP/1.1\r\n", over);
        assert_eq!(outcome(&bad_then_long, soon()), "400");
        // Exactly MAX_HEAD bytes, the empty line included, pass; one more does not.
        let mut exact = b"CONNECT a:443 HTTP/1.1\r\nX: ".to_vec();
        exact.resize(MAX_HEAD - 4, b'v');
        exact.extend_from_slice(b"\r\n\r\nearly");
        assert_eq!(outcome(&exact, soon()), "name a 443 +");
        exact.insert(30, b'v');
        assert_eq!(outcome(&exact, soon()), "431");
    }

    #[test]
    fn deadline_is_total() {
        let start = Instant::now();
        let partial = b"CONNECT a:443 HTTP/1.1\r\nHost: a";
        assert_eq!(
            outcome(partial, Deadline::from(start, Duration::from_millis(300))),
            "408"
        );
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(250), "{waited:?}");
        // A client dribbling a byte every 20 ms is cut off at the deadline, not kept forever.
        let bytes = filler(b"CONNECT a:443 HTTP/1.1\r\n", 200)
            .chunks(1)
            .map(<[u8]>::to_vec)
            .collect();
        let (server, client) = client_writes(bytes, Duration::from_millis(20));
        let start = Instant::now();
        let result = read_request(&server, Deadline::from(start, Duration::from_millis(300)));
        let took = start.elapsed();
        assert_eq!(result.unwrap_err(), TIMED_OUT);
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(3),
            "{took:?}"
        );
        drop(server);
        client.join().unwrap();
    }

    #[test]
    fn garbage_eof_and_other_methods() {
        // A TLS ClientHello sent straight to the proxy is refused at once, not at the deadline.
        let start = Instant::now();
        let far = Deadline::from(start, Duration::from_secs(30));
        let hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
        assert_eq!(outcome(hello, far), "400");
        assert_eq!(outcome(b"CONNECT a HTTP/1.1\r\n", far), "400");
        assert!(start.elapsed() < Duration::from_secs(10));
        assert_eq!(outcome(b"GET / HTTP/1.1\r\n\r\n", far), "405");
        let (server, client) = client_writes(vec![HEAD[..30].to_vec()], Duration::ZERO);
        client.join().unwrap().shutdown(Shutdown::Write).unwrap();
        let eof = read_request(&server, soon()).unwrap_err();
        assert_eq!(eof.why, "eof before end of head");
        assert_eq!(eof.status, Status::BadRequest);
    }

    #[test]
    fn reject_delivers_the_response_without_a_reset() {
        let (server, client) =
            client_writes(vec![[HEAD, &[b'z'; 64 * 1024]].concat()], Duration::ZERO);
        let reader = spawn(move || {
            let mut client = client.join().unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).unwrap();
            // Closing on unread input would reset the connection; Linux then reports an error
            // (EPIPE) here even though the response and FIN were read.
            (answer, client.take_error().unwrap().map(|e| e.kind()))
        });
        read_request(&server, soon()).unwrap();
        reject(&server, Status::Forbidden); // returns at the client's EOF
        drop(server);
        let (answer, error) = reader.join().unwrap();
        assert_eq!(answer, Status::Forbidden.response());
        assert_eq!(error, None);
    }

    /// xorshift64: a tiny deterministic PRNG, enough for fuzzing.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn fuzzed_heads_never_panic_and_pieces_agree() {
        let alphabet = b"CONNECT :[]/.\r\n\t HTTP/1.1 Basic YTpiOmM= 0123456789@%\0\x7f\xff";
        let (mut rng, mut valid) = (Rng(0x9e37_79b9_7f4a_7c15), 0);
        for _ in 0..20_000 {
            let mut input = CASES[rng.below(CASES.len())].0.to_vec();
            if rng.below(4) == 0 {
                input = (0..rng.below(80))
                    .map(|_| alphabet[rng.below(alphabet.len())])
                    .collect();
            }
            for _ in 0..=rng.below(3) {
                let (at, any) = (rng.below(input.len() + 1), rng.below(256) as u8);
                let byte = [any, alphabet[rng.below(alphabet.len())]][rng.below(2)];
                match rng.below(4) {
                    0 if at < input.len() => input[at] = byte,
                    1 if at < input.len() => drop(input.remove(at)),
                    2 => input.truncate(at),
                    _ => input.insert(at, byte),
                }
            }
            let whole = parse(&input);
            let cut = rng.below(input.len() + 1);
            let text = String::from_utf8_lossy(&input);
            assert_eq!(parse_in_parts(&input, &[cut]), whole, "{text:?}");
            valid += usize::from(whole.is_ok());
        }
        assert!(valid > 300, "too few heads stayed valid: {valid}");
    }
}
