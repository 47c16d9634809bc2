//! Just enough HTTP/1.1 to talk to the metrics endpoint: a request, a split response, and one
//! Prometheus series read out of the text.

use std::io::Write;
use std::net::SocketAddr;

use super::net::{connect, read_all};

/// Sends `request` as is and reads the whole response, up to the server's close.
pub fn http(addr: SocketAddr, request: &str) -> Response {
    let mut s = connect(addr);
    s.write_all(request.as_bytes()).expect("send request");
    let raw = String::from_utf8(read_all(&mut s)).expect("UTF-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_string();
    let headers = lines.map(str::to_string).collect();
    Response {
        status,
        headers,
        body: body.to_string(),
    }
}

/// `GET path` over HTTP/1.1.
pub fn http_get(addr: SocketAddr, path: &str) -> Response {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    )
}

/// An HTTP response, split.
#[derive(Debug)]
pub struct Response {
    /// `HTTP/1.1 200 OK`
    pub status: String,
    /// `Name: value` lines.
    pub headers: Vec<String>,
    /// Everything after the head.
    pub body: String,
}

impl Response {
    /// The value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| {
            let (n, v) = h.split_once(':')?;
            n.eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

/// The value of one series in Prometheus text, by its exact name and labels as written,
/// e.g. `tcpfwd_bytes_total{rule="127.0.0.1:0",direction="up"}`.
pub fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}
