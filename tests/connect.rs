//! HTTP CONNECT mode, black-box: the real binary, real sockets on loopback.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use support::*;

const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection Established\r\n\r\n";
const TAIL: &str = "Content-Length: 0\r\nConnection: close\r\n\r\n";

/// The whole error response for `status_lines` (the status line and any extra header).
fn error_response(status_lines: &str) -> String {
    format!("HTTP/1.1 {status_lines}\r\n{TAIL}")
}

/// A CONNECT proxy on 127.0.0.1 with `extra` options.
fn proxy(extra: &[&str]) -> Tcpfwd {
    let mut args = vec!["--connect", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Tcpfwd::start(&args)
}

/// A proxy that lets clients tunnel to `backend`'s port.
fn proxy_to(backend: &Backend, extra: &[&str]) -> Tcpfwd {
    let port = backend.addr.port().to_string();
    let mut args = vec!["--connect-ports", port.as_str()];
    args.extend_from_slice(extra);
    proxy(&args)
}

/// `CONNECT target HTTP/1.1` with a Host header and `headers` (each ending in CRLF).
fn head(target: &str, headers: &str) -> Vec<u8> {
    format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{headers}\r\n").into_bytes()
}

/// Sends `request` and reads the answer to the end (error answers close the connection).
fn ask(proxy: &Tcpfwd, request: &[u8]) -> String {
    let mut client = connect(proxy.addr());
    client.write_all(request).unwrap();
    String::from_utf8_lossy(&read_all(&mut client)).into_owned()
}

/// Opens a tunnel to `target` (sending `extra` right after the head, in the same write) and
/// reads exactly the `200` answer.
fn tunnel(proxy: &Tcpfwd, target: &str, extra: &[u8]) -> TcpStream {
    let mut client = connect(proxy.addr());
    client
        .write_all(&[&head(target, "")[..], extra].concat())
        .unwrap();
    let mut answer = vec![0; ESTABLISHED.len()];
    client.read_exact(&mut answer).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&answer),
        "HTTP/1.1 200 Connection Established\r\n\r\n"
    );
    client
}

#[test]
fn tunnels_megabytes_both_ways_at_once() {
    let backend = Backend::echo();
    let fwd = proxy_to(&backend, &[]);
    let mut client = tunnel(&fwd, &backend.addr.to_string(), b"");
    let data = pattern(4 << 20, 7);
    echo_both_ways_at_once(&mut client, &data);
    // Tunnel bytes only: neither the head nor the 200 is counted.
    let line = fwd.wait_line("end=client-eof");
    let expected = format!(
        "target={} up={} down={} ",
        backend.addr,
        data.len(),
        data.len()
    );
    assert!(line.contains(&expected), "{line}");
}

#[test]
fn early_data_in_the_same_write_as_the_head_comes_first() {
    let backend = Backend::echo();
    let fwd = proxy_to(&backend, &[]);
    let hello = b"\x16\x03\x01\x02\x00ClientHello";
    let mut client = tunnel(&fwd, &backend.addr.to_string(), hello);
    client.write_all(b" and then more").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let echoed = read_all(&mut client);
    assert_eq!(echoed, b"\x16\x03\x01\x02\x00ClientHello and then more");
    let line = fwd.wait_line("end=client-eof");
    assert!(
        line.contains(&format!("up={0} down={0} ", echoed.len())),
        "{line}"
    );
}

#[test]
fn the_head_split_at_every_byte_offset() {
    let backend = Backend::echo();
    let fwd = proxy_to(&backend, &[]);
    let target = backend.addr.to_string();
    let sent = [&head(&target, "")[..], b"early"].concat();
    for cut in 0..=sent.len() {
        let mut client = connect(fwd.addr());
        client.set_nodelay(true).unwrap();
        let (first, second) = sent.split_at(cut);
        client.write_all(first).unwrap();
        // Pacing so the proxy most likely reads the two parts apart; any outcome is checked.
        thread::sleep(Duration::from_millis(2));
        client.write_all(second).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let answer = read_all(&mut client);
        assert_eq!(answer, [ESTABLISHED, b"early"].concat(), "cut at {cut}");
    }
    let lines = fwd.wait_lines("end=client-eof", sent.len() + 1);
    assert!(
        lines.iter().all(|l| l.contains(" up=5 down=5 ")),
        "{lines:?}"
    );
}

#[test]
fn malformed_head_is_400() {
    let fwd = proxy(&[]);
    let cases: [&[u8]; 4] = [
        b"CONNECT example.com HTTP/1.1\r\n\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"CONNECT example.com:443 HTTP/1.1\r\n", // then EOF
    ];
    for case in cases {
        let mut client = connect(fwd.addr());
        client.write_all(case).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let answer = String::from_utf8_lossy(&read_all(&mut client)).into_owned();
        assert_eq!(answer, error_response("400 Bad Request"), "{case:?}");
    }
    fwd.wait_lines("end=bad-request", cases.len());
}

#[test]
fn other_methods_are_405_with_allow() {
    let fwd = proxy(&[]);
    let answer = ask(
        &fwd,
        b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
    );
    assert_eq!(
        answer,
        error_response("405 Method Not Allowed\r\nAllow: CONNECT")
    );
    let line = fwd.wait_line("end=");
    assert!(
        line.contains("target=- up=0 down=0 ") && line.contains("end=bad-request"),
        "{line}"
    );
}

#[test]
fn head_over_8_kib_is_431() {
    let fwd = proxy(&[]);
    let line = "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let request = format!("CONNECT example.com:443 HTTP/1.1\r\n{}", line.repeat(150));
    assert!(request.len() > 9000);
    let mut client = connect(fwd.addr());
    // The client sends its whole (over-long) head and waits: no EOF.
    client.write_all(request.as_bytes()).unwrap();
    let answer = String::from_utf8_lossy(&read_all(&mut client)).into_owned();
    assert_eq!(
        answer,
        error_response("431 Request Header Fields Too Large")
    );
    fwd.wait_line("end=bad-request");
}

#[test]
fn slow_head_gets_408_at_10_s_while_another_client_is_served() {
    let backend = Backend::echo();
    let fwd = proxy_to(&backend, &[]);
    let started = Instant::now();
    let mut slow = connect(fwd.addr());
    slow.write_all(b"CONNECT example.com:443 HTTP/1.1\r\nHost: exa")
        .unwrap();
    // Meanwhile another client gets its tunnel and its bytes back.
    let mut other = tunnel(&fwd, &backend.addr.to_string(), b"meanwhile");
    other.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut other), b"meanwhile");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A dribbling client does not reset the deadline: it is total.
    for byte in b"mple.com\r\n" {
        slow.write_all(&[*byte]).unwrap();
        thread::sleep(Duration::from_millis(300)); // pacing a slow client
    }
    let answer = String::from_utf8_lossy(&read_all(&mut slow)).into_owned();
    let waited = started.elapsed();
    assert_eq!(answer, error_response("408 Request Timeout"));
    assert!(
        waited >= Duration::from_millis(9_500) && waited < Duration::from_secs(12),
        "{waited:?}"
    );
    let line = fwd.wait_line("end=bad-request");
    assert!(line.contains("dur=1"), "{line}");
}

#[test]
fn port_outside_the_list_is_403() {
    let backend = Backend::echo();
    // The default list is 443 only.
    let fwd = proxy(&[]);
    let answer = ask(&fwd, &head(&backend.addr.to_string(), ""));
    assert_eq!(answer, error_response("403 Forbidden"));
    let line = fwd.wait_line("end=denied");
    assert!(line.contains("target=- up=0 down=0 "), "{line}");
    assert_eq!(backend.count(), 0, "a refused client reached the target");
}

#[test]
fn connect_deny_is_checked_on_the_resolved_address() {
    let backend = Backend::echo();
    let port = backend.addr.port();
    let fwd = proxy_to(
        &backend,
        &["--connect-deny", "127.0.0.0/8", "--connect-deny", "::1"],
    );
    let literal = ask(&fwd, &head(&backend.addr.to_string(), ""));
    assert_eq!(literal, error_response("403 Forbidden"));
    // A name cannot bypass the filter; neither can an IPv4-mapped IPv6 address.
    for target in [
        format!("localhost:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
    ] {
        let answer = ask(&fwd, &head(&target, ""));
        assert_eq!(answer, error_response("403 Forbidden"), "{target}");
    }
    fwd.wait_lines("end=denied", 3);
    assert_eq!(backend.count(), 0, "a filtered destination was reached");
}

#[test]
fn filtered_addresses_of_a_name_are_skipped() {
    let backend = Backend::echo();
    let port = backend.addr.port();
    // Whatever `localhost` resolves to, only 127.0.0.1 is left to connect to.
    let fwd = proxy_to(&backend, &["--connect-allow", "127.0.0.1"]);
    let mut client = tunnel(&fwd, &format!("localhost:{port}"), b"hi");
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut client), b"hi");
    let line = fwd.wait_line("end=client-eof");
    assert!(
        line.contains(&format!("target=127.0.0.1:{port} ")),
        "{line}"
    );
}

#[test]
fn a_loop_to_the_proxy_itself_is_403() {
    let fwd = proxy(&["--connect-ports", "any"]);
    let port = fwd.addr().port();
    for target in [
        format!("127.0.0.1:{port}"),
        format!("0.0.0.0:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
    ] {
        let answer = ask(&fwd, &head(&target, ""));
        assert_eq!(answer, error_response("403 Forbidden"), "{target}");
    }
    let lines = fwd.wait_lines("end=denied", 3);
    // Nothing reached the proxy through itself: every line is a refused client.
    assert_eq!(fwd.records().len(), 3, "{lines:?}");
}

#[test]
fn an_any_port_listener_is_reached_through_every_local_address() {
    // `:PORT` is non-loopback: also the open-proxy warning, once.
    let fwd = Tcpfwd::start(&["--connect", ":0", "--connect-ports", "any"]);
    let port = fwd.addr().port();
    let mut targets = vec![format!("127.0.0.1:{port}"), format!("127.0.0.2:{port}")];
    if TcpListener::bind("[::1]:0").is_ok() {
        targets.push(format!("[::1]:{port}"));
    }
    for target in &targets {
        let mut client = connect(fwd.connect_addr());
        client.write_all(&head(target, "")).unwrap();
        let answer = String::from_utf8_lossy(&read_all(&mut client)).into_owned();
        assert_eq!(answer, error_response("403 Forbidden"), "{target}");
    }
    fwd.wait_lines("end=denied", targets.len());
    assert_eq!(fwd.records().len(), targets.len());
    let warnings: Vec<String> = fwd
        .lines()
        .into_iter()
        .filter(|l| l.contains("open proxy"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("--auth") && warnings[0].contains("--allow"),
        "{warnings:?}"
    );
}

#[test]
fn open_proxy_warning_only_when_exposed_and_unprotected() {
    for (args, warned) in [
        (&["--connect", "127.0.0.1:0"][..], false),
        (&["--connect", ":0", "--auth", "a:b"][..], false),
        (&["--connect", ":0", "--allow", "10.0.0.0/8"][..], false),
        (&["--connect", ":0", "--deny", "10.0.0.0/8"][..], true),
        (&["--connect", "0.0.0.0:0"][..], true),
    ] {
        let fwd = Tcpfwd::start(args);
        // The warning is logged before the first `listening on` line, already seen.
        let lines = fwd.lines();
        let count = lines.iter().filter(|l| l.contains("open proxy")).count();
        assert_eq!(count, usize::from(warned), "{args:?}: {lines:?}");
    }
}

#[test]
fn refused_connect_is_502() {
    let port = closed_port().port();
    let fwd = proxy(&["--connect-ports", &port.to_string()]);
    let answer = ask(&fwd, &head(&format!("127.0.0.1:{port}"), ""));
    assert_eq!(answer, error_response("502 Bad Gateway"));
    let line = fwd.wait_line("end=connect-refused");
    assert!(line.contains("target=- "), "{line}");
}

#[test]
fn unresolvable_name_is_502() {
    let fwd = proxy(&[]);
    let answer = ask(&fwd, &head("no-such-host.invalid:443", ""));
    assert_eq!(answer, error_response("502 Bad Gateway"));
    fwd.wait_line("end=connect-refused");
}

#[test]
fn connect_timeout_is_504() {
    let (listener, _queued) = full_backlog();
    let addr = listener.local_addr().unwrap();
    let fwd = proxy(&[
        "--connect-ports",
        &addr.port().to_string(),
        "--connect-timeout",
        "1s",
    ]);
    let started = Instant::now();
    let answer = ask(&fwd, &head(&addr.to_string(), ""));
    let waited = started.elapsed();
    assert_eq!(answer, error_response("504 Gateway Timeout"));
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    fwd.wait_line("end=connect-timeout");
}

/// `Proxy-Authorization: Basic` for `user:password` (base64 by hand: tests use std only).
fn basic(user_password: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in user_password.as_bytes().chunks(3) {
        let mut n = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            n |= u32::from(*b) << (16 - 8 * i);
        }
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Proxy-Authorization: Basic {out}\r\n")
}

#[test]
fn auth_right_wrong_and_missing() {
    assert_eq!(
        basic("alice:secret"),
        "Proxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\n"
    );
    let backend = Backend::echo();
    let fwd = proxy_to(&backend, &["--auth", "alice:secret", "--auth", "bob:pw"]);
    let target = backend.addr.to_string();
    let refused = error_response(
        "407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"tcpfwd\"",
    );

    let mut client = connect(fwd.addr());
    client.write_all(&head(&target, &basic("bob:pw"))).unwrap();
    let mut answer = vec![0; ESTABLISHED.len()];
    client.read_exact(&mut answer).unwrap();
    assert_eq!(answer, ESTABLISHED);
    client.write_all(b"ok").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut client), b"ok");
    let line = fwd.wait_line("end=client-eof");
    assert!(line.contains(" user=bob"), "{line}");

    assert_eq!(
        ask(&fwd, &head(&target, &basic("alice:wrong-pass"))),
        refused
    );
    assert_eq!(ask(&fwd, &head(&target, &basic("alice:pw"))), refused);
    assert_eq!(ask(&fwd, &head(&target, "")), refused);
    let failed = fwd.wait_lines("end=auth-failed", 3);
    // One line per failure, with the user name tried and never the password.
    assert_eq!(
        failed
            .iter()
            .filter(|l| l.ends_with("end=auth-failed user=alice"))
            .count(),
        2
    );
    assert_eq!(
        failed
            .iter()
            .filter(|l| l.ends_with("end=auth-failed"))
            .count(),
        1
    );
    let log = fwd.lines().join("\n");
    assert!(
        !log.contains("wrong-pass") && !log.contains("secret"),
        "{log}"
    );
    assert_eq!(
        backend.count(),
        1,
        "an unauthenticated client reached the target"
    );
}

#[test]
fn the_error_reply_is_read_whole_after_64_kib_more() {
    let fwd = proxy(&[]);
    let cases = [
        (
            b"BREW /pot HTTP/1.1\r\n\r\n".to_vec(),
            "405 Method Not Allowed\r\nAllow: CONNECT",
        ),
        (head("127.0.0.1:9", ""), "403 Forbidden"),
        (b"CONNECT nowhere HTTP/1.1\r\n".to_vec(), "400 Bad Request"),
    ];
    for (request, status) in cases {
        let mut client = connect(fwd.addr());
        let mut writer = client.try_clone().unwrap();
        let sent = [&request[..], &pattern(64 * 1024, 3)].concat();
        let write = spawn(move || {
            // The proxy may have closed by the time the last bytes arrive: not this test's point.
            let _ = writer.write_all(&sent);
            let _ = writer.shutdown(Shutdown::Write);
        });
        let mut answer = Vec::new();
        let read = client.read_to_end(&mut answer);
        write.join().unwrap();
        assert!(
            read.is_ok(),
            "{status}: the reply was cut by a reset: {read:?}"
        );
        assert_eq!(String::from_utf8_lossy(&answer), error_response(status));
    }
    fwd.wait_lines("end=", 3);
}

#[test]
fn client_filter_applies_before_the_head() {
    let fwd = proxy(&["--deny", "127.0.0.3"]);
    let mut refused = connect_from("127.0.0.3", fwd.addr()).unwrap();
    assert_closed_without_data(&mut refused);
    let line = fwd.wait_line("end=denied");
    assert!(line.starts_with("client=127.0.0.3:"), "{line}");
}

#[test]
fn ipv6_destination() {
    let Ok(listener) = TcpListener::bind("[::1]:0") else {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    };
    let backend = Backend::serve(listener, |mut s| {
        let _ = s.write_all(b"six");
    });
    let fwd = proxy_to(&backend, &[]);
    let mut client = tunnel(&fwd, &backend.addr.to_string(), b"");
    assert_eq!(read_all(&mut client), b"six");
    drop(client);
    let line = fwd.wait_line("end=target-eof");
    assert!(
        line.contains(&format!("target={} ", backend.addr)),
        "{line}"
    );
}

/// A tiny HTTP/1.0 server: reads the request head, answers `body`, closes.
fn http_backend(body: &'static str) -> Backend {
    Backend::start(move |mut s| {
        let mut request = Vec::new();
        let mut byte = [0; 1];
        while !request.ends_with(b"\r\n\r\n") && request.len() < 8192 {
            match s.read(&mut byte) {
                Ok(1) => request.push(byte[0]),
                _ => return,
            }
        }
        let reply = format!(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = s.write_all(reply.as_bytes());
    })
}

#[test]
fn curl_proxytunnel_end_to_end() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("skipped: curl is not installed (.ci/run installs it)");
        return;
    }
    let backend = http_backend("hello through the tunnel\n");
    let fwd = proxy_to(&backend, &["--auth", "alice:secret"]);
    // GET the backend through the proxy at `proxy`, tunnelled (-p).
    let curl = |proxy: String| {
        Command::new("curl")
            .args(["-sS", "--max-time", "20", "-p", "-x", &proxy])
            .arg(format!("http://{}/", backend.addr))
            .output()
            .unwrap()
    };
    let out = curl(format!("http://alice:secret@{}", fwd.addr()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "curl failed: {stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello through the tunnel\n"
    );
    let line = fwd.wait_line("target=");
    assert!(
        line.contains(&format!("target={} ", backend.addr)),
        "{line}"
    );
    assert!(
        line.contains(" user=alice") && !line.contains("end=auth-failed"),
        "{line}"
    );
    // Without credentials curl sees the 407.
    let out = curl(format!("http://{}", fwd.addr()));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("407"),
        "{out:?}"
    );
}
