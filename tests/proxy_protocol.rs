//! The PROXY protocol both ways, black-box: `--proxy-protocol` sends the v1 line or the v2
//! header before any client byte; `--accept-proxy` reads one and uses the address it carries
//! (in the log, for the filter, in the header sent on), in CONNECT mode too.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;

/// A backend that sends everything each connection delivered, up to its EOF, on a channel.
fn recording_backend() -> (Backend, mpsc::Receiver<Vec<u8>>) {
    let (tx, rx) = mpsc::channel();
    let backend = Backend::start(move |mut s| {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let _ = tx.send(got);
    });
    (backend, rx)
}

/// Connects to `addr`, sends `data` and ends its output; returns the client socket.
/// Errors are ignored: tcpfwd may already have closed a client it refuses.
fn send_and_close(addr: SocketAddr, data: &[u8]) -> TcpStream {
    let mut client = connect(addr);
    let _ = client.write_all(data);
    let _ = client.shutdown(Shutdown::Write);
    client
}

/// The first v2 bytes: signature, version 2 + command PROXY, family, length.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

#[test]
fn proxy_protocol_v1_sends_the_exact_line_before_any_client_byte() {
    let (backend, got) = recording_backend();
    let fwd = Tcpfwd::start(&[
        "127.0.0.1:0",
        &backend.addr.to_string(),
        "--proxy-protocol",
        "v1",
    ]);
    let client = send_and_close(fwd.addr(), b"hello");
    let port = client.local_addr().unwrap().port();
    let received = got.recv_timeout(PATIENCE).unwrap();
    let want = format!(
        "PROXY TCP4 127.0.0.1 127.0.0.1 {port} {}\r\nhello",
        fwd.addr().port()
    );
    assert_eq!(String::from_utf8_lossy(&received), want);
    let line = fwd.wait_line("end=");
    assert!(
        line.contains("up=5 "),
        "the header is not counted as client bytes: {line}"
    );
}

#[test]
fn proxy_protocol_v2_signature_command_family_length_and_addresses() {
    let (backend, got) = recording_backend();
    let fwd = Tcpfwd::start(&[
        "127.0.0.1:0",
        &backend.addr.to_string(),
        "--proxy-protocol",
        "v2",
    ]);
    let client = send_and_close(fwd.addr(), b"payload");
    let port = client.local_addr().unwrap().port();
    let received = got.recv_timeout(PATIENCE).unwrap();
    assert_eq!(received.len(), 16 + 12 + 7, "{received:?}");
    assert_eq!(&received[..12], V2_SIGNATURE);
    assert_eq!(received[12], 0x21, "version 2, command PROXY");
    assert_eq!(received[13], 0x11, "TCP over IPv4");
    assert_eq!(&received[14..16], &[0, 12], "length");
    assert_eq!(&received[16..20], &[127, 0, 0, 1], "source");
    assert_eq!(&received[20..24], &[127, 0, 0, 1], "destination");
    assert_eq!(&received[24..26], &port.to_be_bytes(), "source port");
    assert_eq!(&received[26..28], &fwd.addr().port().to_be_bytes());
    assert_eq!(&received[28..], b"payload");
}

#[test]
fn proxy_protocol_tcp6_for_an_ipv6_client() {
    if ipv6_loopback().is_none() {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    }
    for version in ["v1", "v2"] {
        let (backend, got) = recording_backend();
        let target = backend.addr.to_string();
        let fwd = Tcpfwd::start(&["[::1]:0", &target, "--proxy-protocol", version]);
        let client = send_and_close(fwd.addr(), b"six");
        let port = client.local_addr().unwrap().port();
        let listen = fwd.addr().port();
        let received = got.recv_timeout(PATIENCE).unwrap();
        if version == "v1" {
            let want = format!("PROXY TCP6 ::1 ::1 {port} {listen}\r\nsix");
            assert_eq!(String::from_utf8_lossy(&received), want);
        } else {
            let loopback = std::net::Ipv6Addr::LOCALHOST.octets();
            let mut want = V2_SIGNATURE.to_vec();
            want.extend_from_slice(&[0x21, 0x21, 0, 36]);
            want.extend_from_slice(&loopback);
            want.extend_from_slice(&loopback);
            want.extend_from_slice(&port.to_be_bytes());
            want.extend_from_slice(&listen.to_be_bytes());
            want.extend_from_slice(b"six");
            assert_eq!(received, want);
        }
    }
}

/// A v1 header for a client 203.0.113.7:40000 that connected to 198.51.100.1:443.
const CARRIED_V1: &[u8] = b"PROXY TCP4 203.0.113.7 198.51.100.1 40000 443\r\n";

#[test]
fn accept_proxy_uses_the_carried_source_address() {
    let backend = Backend::echo();
    let fwd = Tcpfwd::start(&["127.0.0.1:0", &backend.addr.to_string(), "--accept-proxy"]);
    // v1, and the same client as a v2 header.
    let mut v2 = V2_SIGNATURE.to_vec();
    v2.extend_from_slice(&[0x21, 0x11, 0, 12, 203, 0, 113, 7, 198, 51, 100, 1]);
    v2.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb]);
    for header in [CARRIED_V1, &v2[..]] {
        let mut client = send_and_close(fwd.addr(), &[header, b"hello"].concat());
        assert_eq!(read_all(&mut client), b"hello", "the header was relayed");
    }
    let lines = fwd.wait_lines("end=client-eof", 2);
    for line in lines {
        assert!(
            line.starts_with("client=203.0.113.7:40000 ") && line.contains(" up=5 down=5 "),
            "{line}"
        );
    }
}

#[test]
fn accept_proxy_closes_clients_with_an_invalid_or_truncated_header() {
    let backend = Backend::echo();
    let fwd = Tcpfwd::start(&["127.0.0.1:0", &backend.addr.to_string(), "--accept-proxy"]);
    let bad: [&[u8]; 4] = [
        b"GET / HTTP/1.0\r\n\r\n",
        b"PROXY TCP4 203.0.113.7 198.51.100.1 40000 0443\r\nhello",
        b"PROXY TCP4 203.0.113.7",             // then EOF
        b"\r\n\r\n\0\r\nQUIT\n\x22\x11\0\x0c", // v2 with an unknown command
    ];
    for (i, bytes) in bad.iter().enumerate() {
        let mut client = send_and_close(fwd.addr(), bytes);
        let port = client.local_addr().unwrap().port();
        assert_closed_without_data(&mut client);
        let lines = fwd.wait_lines("end=bad-request", i + 1);
        let line = lines
            .iter()
            .find(|l| l.contains(&format!(":{port} ")))
            .unwrap();
        assert!(
            line.starts_with(&format!("client=127.0.0.1:{port} ")) && line.contains("target=-"),
            "{line}"
        );
    }
    assert_eq!(
        backend.count(),
        0,
        "a client without a valid header reached the target"
    );
}

#[test]
fn accept_proxy_closes_a_client_whose_header_is_late() {
    let backend = Backend::echo();
    let fwd = Tcpfwd::start(&["127.0.0.1:0", &backend.addr.to_string(), "--accept-proxy"]);
    let start = Instant::now();
    let mut silent = connect(fwd.addr());
    // A header that trickles in part of the way does not extend the 5 s deadline.
    let mut partial = connect(fwd.addr());
    partial.write_all(b"PROXY TCP4 ").unwrap();
    assert_closed_without_data(&mut silent);
    assert_closed_without_data(&mut partial);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(4900) && took < PATIENCE,
        "closed after {took:?}, want 5 s"
    );
    fwd.wait_lines("end=bad-request", 2);
    assert_eq!(backend.count(), 0);
}

#[test]
fn accept_proxy_lets_the_acl_decide_on_the_carried_address() {
    let backend = Backend::echo();
    let fwd = Tcpfwd::start(&[
        "127.0.0.1:0",
        &backend.addr.to_string(),
        "--accept-proxy",
        "--allow",
        "10.0.0.0/8",
    ]);
    // The real peer, 127.0.0.1, is not in 10.0.0.0/8: only the carried address can pass.
    let allowed = b"PROXY TCP4 10.1.2.3 10.0.0.1 5555 80\r\nhi";
    let mut client = send_and_close(fwd.addr(), allowed);
    assert_eq!(read_all(&mut client), b"hi");
    let line = fwd.wait_line("end=client-eof");
    assert!(line.starts_with("client=10.1.2.3:5555 "), "{line}");

    let refused = b"PROXY TCP4 192.0.2.1 10.0.0.1 5555 80\r\nhi";
    let mut client = send_and_close(fwd.addr(), refused);
    assert_denied(&fwd, &mut client, "192.0.2.1:5555 ", &backend, 1);
}

#[test]
fn accept_v1_and_send_v2_carries_the_original_client() {
    let (backend, got) = recording_backend();
    let fwd = Tcpfwd::start(&[
        "127.0.0.1:0",
        &backend.addr.to_string(),
        "--accept-proxy",
        "--proxy-protocol",
        "v2",
    ]);
    let _client = send_and_close(fwd.addr(), &[CARRIED_V1, b"data"].concat());
    let received = got.recv_timeout(PATIENCE).unwrap();
    let mut want = V2_SIGNATURE.to_vec();
    want.extend_from_slice(&[0x21, 0x11, 0, 12, 203, 0, 113, 7, 198, 51, 100, 1]);
    want.extend_from_slice(&40000u16.to_be_bytes());
    want.extend_from_slice(&443u16.to_be_bytes());
    want.extend_from_slice(b"data");
    assert_eq!(received, want);
}

#[test]
fn connect_mode_accepts_and_sends_proxy_headers_too() {
    let (backend, got) = recording_backend();
    let fwd = Tcpfwd::start(&[
        "--connect",
        "127.0.0.1:0",
        "--connect-ports",
        "any",
        "--accept-proxy",
        "--proxy-protocol",
        "v1",
    ]);
    let mut client = connect(fwd.addr());
    let head = format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", backend.addr);
    let request = [CARRIED_V1, head.as_bytes(), b"early"].concat();
    client.write_all(&request).unwrap();
    let mut answer = [0; 39];
    client.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200 Connection Established\r\n\r\n");
    client.write_all(b"+more").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let received = got.recv_timeout(PATIENCE).unwrap();
    let want = [CARRIED_V1, b"early+more"].concat();
    assert_eq!(
        String::from_utf8_lossy(&received),
        String::from_utf8_lossy(&want)
    );
    let line = fwd.wait_line("end=");
    assert!(line.starts_with("client=203.0.113.7:40000 "), "{line}");
    assert!(line.contains(" up=10 "), "{line}");
}
