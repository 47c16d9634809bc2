//! Operating tcpfwd for real, black-box: config files and `--check`, PROXY protocol both
//! ways, `--stats` metrics, `--mss` and `--segment-size`.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;

// ---------------------------------------------------------------------------------------
// Config file and --check

#[test]
fn a_config_file_serves_three_rules_at_once() {
    let (a, b) = (Backend::named("A"), Backend::named("B"));
    let config = temp_file(
        "three.conf",
        &format!(
            "# two forwards and a CONNECT proxy\n\
             \n\
             127.0.0.1:0 {a}   # first\n\
             \"127.0.0.1:0\" \"{b},weight=2\"\n\
             --connect 127.0.0.1:0 --auth \"alice:se cret\"\n",
            a = a.addr,
            b = b.addr
        ),
    );
    let path = config.to_str().unwrap();
    let fwd = Tcpfwd::spawn(&["--config", path]);
    fwd.wait_lines("listening on ", 3);
    let addrs = fwd.addrs();
    assert_eq!(addrs.len(), 3, "{:?}", fwd.lines());
    // Both forwards open at the same time, each to its own backend.
    let mut first = connect(addrs[0]);
    let mut second = connect(addrs[1]);
    let mut greeting = [0; 1];
    first.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"A");
    second.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"B");
    for (stream, text) in [(&mut first, "one"), (&mut second, "two")] {
        stream.write_all(text.as_bytes()).unwrap();
        let mut echoed = [0; 3];
        stream.read_exact(&mut echoed).unwrap();
        assert_eq!(&echoed, text.as_bytes());
    }
    // The CONNECT rule listens (its behaviour is tested with CONNECT mode itself).
    TcpStream::connect(addrs[2]).expect("the CONNECT rule accepts");
    drop((first, second));
    let logged = fwd.wait_lines("end=", 2);
    assert!(
        logged.iter().all(|l| l.contains(" listen=127.0.0.1:0 ")),
        "{logged:?}"
    );

    let (code, out, err) = run(&["--check", "--config", path]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with(&format!("127.0.0.1:0 {} --balance", a.addr)));
    assert!(lines[1].starts_with(&format!("127.0.0.1:0 {},weight=2 --balance", b.addr)));
    assert!(
        lines[2].starts_with("--connect 127.0.0.1:0 --connect-ports 443 --auth alice:*** "),
        "{}",
        lines[2]
    );
    assert!(!out.contains("se cret"), "a password was printed: {out}");
}

#[test]
fn check_prints_rules_with_comments_quotes_and_command_line_defaults() {
    let config = temp_file(
        "defaults.conf",
        "# tcpfwd.conf: comments, blank lines and quotes\n\
         --stats 127.0.0.1:9100\n\
         \n\
         \t127.0.0.1:8080 \"127.0.0.1:1,weight=3\" 127.0.0.1:2,backup --idle-timeout 5m  # own\n\
         \"[::1]:8081\" 127.0.0.1:3 --balance least-conn   # takes the default\n\
         --connect :3128 --connect-ports 443,8443 --auth \"b\\\"ob:p w\"\n",
    );
    let path = config.to_str().unwrap();
    let (code, out, err) = run(&["--check", "--idle-timeout", "7s", "-q", "--config", path]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(err, "");
    let want = [
        "--stats 127.0.0.1:9100 -q".to_string(),
        "127.0.0.1:8080 127.0.0.1:1,weight=3 127.0.0.1:2,backup --balance round-robin \
         --health-interval 0 --down-after 1 --down-for 10s --connect-timeout 5s \
         --idle-timeout 5m --fin-timeout 1m --keepalive 1m --max-conns 1024 --buffer-size 64k"
            .to_string(),
        "[::1]:8081 127.0.0.1:3 --balance least-conn --health-interval 0 --down-after 1 \
         --down-for 10s --connect-timeout 5s --idle-timeout 7s --fin-timeout 1m --keepalive 1m \
         --max-conns 1024 --buffer-size 64k"
            .to_string(),
        "--connect :3128 --connect-ports 443,8443 --auth \"b\\\"ob:***\" --connect-timeout 5s \
         --idle-timeout 7s --fin-timeout 1m --keepalive 1m --max-conns 1024 --buffer-size 64k"
            .to_string(),
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
    // --check binds nothing: the same file checks fine while its ports are taken.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let file = temp_file(
        "busy.conf",
        &format!("{} 127.0.0.1:9\n", busy.local_addr().unwrap()),
    );
    let (code, _, err) = run(&["--check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn every_config_error_names_the_file_and_line_and_exits_2() {
    let cases = [
        (
            ":1 127.0.0.1:1\n\n:2 127.0.0.1:1 --foo\n",
            3,
            "unknown option --foo",
        ),
        (
            "# ok\n:1 127.0.0.1:1,weight=0\n",
            2,
            "weight must be 1 to 1000",
        ),
        (":1 127.0.0.1:1 --idle-timeout soon\n", 1, "--idle-timeout"),
        (":1 127.0.0.1:1 --auth \"alice:x\n", 1, "unterminated quote"),
        (
            ":1 127.0.0.1:1\n:2 127.0.0.1:1 --stats 127.0.0.1:1\n",
            2,
            "own",
        ),
        (":1 127.0.0.1:1\n--max-conns 5\n", 2, "missing LISTEN"),
        (":1 127.0.0.1:1\n--check\n", 2, "command line"),
        (":1 127.0.0.1:1\n:2 not-a-target\n", 2, "TARGET"),
    ];
    for (text, line, message) in cases {
        let file = temp_file("bad.conf", text);
        let path = file.to_str().unwrap();
        let (code, out, err) = run(&["--check", "--config", path]);
        assert_eq!(code, Some(2), "{text:?}: {err}");
        assert_eq!(out, "", "{text:?}");
        let prefix = format!("tcpfwd: {path}:{line}: ");
        assert!(
            err.starts_with(&prefix) && err.contains(message),
            "{text:?}: want {prefix}...{message}, got {err}"
        );
        // Serving it fails the same way, before anything listens.
        let fwd = Tcpfwd::spawn(&["--config", path]);
        let (code, log) = fwd.wait_exit();
        assert_eq!(code, Some(2), "{log}");
        assert!(
            log.starts_with(&prefix) && !log.contains("listening on"),
            "{log}"
        );
    }
}

#[test]
fn a_missing_config_file_is_exit_2() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such.conf");
    let path = path.to_str().unwrap();
    for args in [vec!["--config", path], vec!["--check", "--config", path]] {
        let (code, out, err) = run(&args);
        assert_eq!(code, Some(2), "{err}");
        assert_eq!(out, "");
        assert!(err.contains(path) && err.contains("no such file"), "{err}");
    }
}

#[test]
fn a_busy_port_stops_start_up_before_anything_is_served() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap();
    let backend = Backend::echo();
    // The second rule's port is taken; the first one's was free.
    let free = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = temp_file(
        "busy.conf",
        &format!("{free} {0}\n{busy_addr} {0}\n", backend.addr),
    );
    let fwd = Tcpfwd::spawn(&["--config", config.to_str().unwrap()]);
    let (code, log) = fwd.wait_exit();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains(&format!("cannot listen on {busy_addr}: address in use")),
        "{log}"
    );
    assert!(!log.contains("listening on"), "something was served: {log}");
    let refused = TcpStream::connect(free).map_err(|e| e.kind());
    assert_eq!(refused.err(), Some(ErrorKind::ConnectionRefused));
    assert_eq!(backend.count(), 0);

    // Likewise for the metrics listener.
    let fwd = Tcpfwd::spawn(&[
        "--stats",
        &busy_addr.to_string(),
        "127.0.0.1:0",
        &backend.addr.to_string(),
    ]);
    let (code, log) = fwd.wait_exit();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains(&format!("cannot listen on {busy_addr}")),
        "{log}"
    );
    assert!(!log.contains("listening on"), "{log}");
}

// ---------------------------------------------------------------------------------------
// PROXY protocol

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

// ---------------------------------------------------------------------------------------
// Metrics

const FAMILIES: [(&str, &str); 7] = [
    ("tcpfwd_connections_active", "gauge"),
    ("tcpfwd_connections_total", "counter"),
    ("tcpfwd_bytes_total", "counter"),
    ("tcpfwd_target_up", "gauge"),
    ("tcpfwd_target_connections_active", "gauge"),
    ("tcpfwd_accept_paused_total", "counter"),
    ("tcpfwd_accept_errors_total", "counter"),
];

fn scrape(stats: SocketAddr) -> String {
    let response = http_get(stats, "/metrics");
    assert_eq!(response.status, "HTTP/1.1 200 OK");
    let kind = response.header("Content-Type").unwrap_or_default();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    response.body
}

/// Sends `size` bytes through an echo and reads them back.
fn echo_through(addr: SocketAddr, size: usize) {
    let data = pattern(size, size as u32);
    let mut client = connect(addr);
    let mut writer = client.try_clone().unwrap();
    let sent = data.clone();
    let write = spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    assert!(
        read_all(&mut client) == data,
        "echo of {size} bytes differs"
    );
    write.join().unwrap();
}

#[test]
fn metrics_move_by_exactly_what_was_sent() {
    let backend = Backend::echo();
    let target = backend.addr.to_string();
    let fwd = Tcpfwd::start(&["--stats", "127.0.0.1:0", "127.0.0.1:0", &target]);
    let stats = fwd.stats_addr();
    let before = scrape(stats);
    for (name, kind) in FAMILIES {
        assert!(before.contains(&format!("# HELP {name} ")), "{before}");
        assert!(
            before.contains(&format!("# TYPE {name} {kind}\n")),
            "{before}"
        );
    }
    let rule = "rule=\"127.0.0.1:0\"";
    let series = |name: &str, extra: &str| match extra {
        "" => format!("{name}{{{rule}}}"),
        _ => format!("{name}{{{rule},{extra}}}"),
    };
    let up = series("tcpfwd_bytes_total", "direction=\"up\"");
    let down = series("tcpfwd_bytes_total", "direction=\"down\"");
    let clean = series("tcpfwd_connections_total", "end=\"client-eof\"");
    let active = series("tcpfwd_connections_active", "");
    let target_label = format!("target=\"{target}\"");
    let target_active = series("tcpfwd_target_connections_active", &target_label);
    let target_up = series("tcpfwd_target_up", &target_label);
    let value = |text: &str, s: &str| metric(text, s).unwrap_or_else(|| panic!("{s}\n{text}"));
    assert_eq!(value(&before, &target_up), 1);
    assert_eq!(value(&before, &series("tcpfwd_accept_errors_total", "")), 0);
    assert_eq!(value(&before, &series("tcpfwd_accept_paused_total", "")), 0);

    let sizes = [1, 1000, 65_536, 1_000_003];
    for size in sizes {
        echo_through(fwd.addr(), size);
    }
    fwd.wait_lines("end=client-eof", sizes.len());
    // One connection held open shows in the gauges.
    let mut open = connect(fwd.addr());
    open.write_all(b"x").unwrap();
    open.read_exact(&mut [0]).unwrap();
    let during = scrape(stats);
    assert_eq!(value(&during, &active), 1, "{during}");
    assert_eq!(value(&during, &target_active), 1, "{during}");
    drop(open);
    fwd.wait_lines("end=", sizes.len() + 1);

    // The gauges drop just after the log line is written: poll for them.
    let mut after = String::new();
    let settled = wait_until(PATIENCE, || {
        after = scrape(stats);
        metric(&after, &active) == Some(0) && metric(&after, &target_active) == Some(0)
    });
    assert!(settled, "gauges did not return to 0:\n{after}");
    let total: u64 = sizes.iter().map(|&n| n as u64).sum();
    let moved = |s: &str| value(&after, s) - value(&before, s);
    assert_eq!(moved(&up), total + 1);
    assert_eq!(moved(&down), total + 1);
    assert_eq!(moved(&clean), sizes.len() as u64 + 1);
    let ends = after
        .lines()
        .filter(|l| l.starts_with("tcpfwd_connections_total{"))
        .count();
    assert_eq!(ends, 13, "one series per end word:\n{after}");
}

#[test]
fn metrics_answer_404_to_anything_else_and_survive_a_silent_client() {
    let backend = Backend::echo();
    let target = backend.addr.to_string();
    let fwd = Tcpfwd::start(&["--stats", "127.0.0.1:0", "127.0.0.1:0", &target]);
    let stats = fwd.stats_addr();
    for path in ["/", "/metricsx", "/favicon.ico"] {
        assert_eq!(
            http_get(stats, path).status,
            "HTTP/1.1 404 Not Found",
            "{path}"
        );
    }
    let post = http(stats, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(post.status, "HTTP/1.1 404 Not Found");
    // A client that connects and says nothing holds the one stats thread 2 s at most.
    let _silent = connect(stats);
    let start = Instant::now();
    scrape(stats);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// MSS and segment size

#[cfg(target_os = "linux")]
#[test]
fn mss_clamps_the_segments_a_client_may_send() {
    let backend = Backend::echo();
    let target = backend.addr.to_string();
    let plain = Tcpfwd::start(&["127.0.0.1:0", &target]);
    let clamped = Tcpfwd::start(&["127.0.0.1:0", &target, "--mss", "1000"]);
    let mss_of = |addr: SocketAddr| {
        let mut client = connect(addr);
        // The client's own TCP_MAXSEG: the smaller of its MTU's and what the peer advertised.
        let mss = mss(&client).unwrap();
        client.write_all(b"ping").unwrap();
        let mut echoed = [0; 4];
        client.read_exact(&mut echoed).unwrap();
        assert_eq!(&echoed, b"ping");
        mss
    };
    let (unclamped, with_mss) = (mss_of(plain.addr()), mss_of(clamped.addr()));
    assert!(with_mss <= 1000, "client MSS {with_mss} with --mss 1000");
    assert!(unclamped > 1000, "client MSS {unclamped} without --mss");
}

#[test]
fn segment_size_still_relays_a_large_transfer_byte_exact() {
    let backend = Backend::echo();
    let fwd = Tcpfwd::start(&[
        "127.0.0.1:0",
        &backend.addr.to_string(),
        "--segment-size",
        "1000",
    ]);
    let size = 3 << 20;
    echo_through(fwd.addr(), size);
    let line = fwd.wait_line("end=client-eof");
    assert!(line.contains(&format!("up={size} down={size} ")), "{line}");
}
