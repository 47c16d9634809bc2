//! Data acceleration and the outbound socket, black-box: `--congestion`, `--mss`,
//! `--user-timeout` and `--keepalive` as asked on both legs (read back with getsockopt on
//! tcpfwd's own sockets), their start-up errors, `--source` (first target, failover, CONNECT,
//! a source not on this host), and a peer that stops taking data given up after
//! `--user-timeout`. Linux only: elsewhere these options are exit 2 (tests in src/config).
#![cfg(target_os = "linux")]

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

/// tcpfwd's socket of one leg, copied out of the process: the one whose local and peer
/// addresses satisfy `matches`. `None` (after a note) where pidfd_getfd is not available.
fn leg_of(fwd: &Tcpfwd, matches: impl Fn(SocketAddr, SocketAddr) -> bool) -> Option<TcpInfo> {
    let mut found = None;
    let copied = wait_until(PATIENCE, || match socket_of(fwd.pid(), &matches) {
        Ok(Some(stream)) => {
            found = Some(Ok(stream));
            true
        }
        Ok(None) => false,
        Err(e) => {
            found = Some(Err(e));
            true
        }
    });
    assert!(copied, "no socket of tcpfwd matched");
    match found? {
        Ok(stream) => Some(tcp_info(&stream).expect("getsockopt on tcpfwd's socket")),
        Err(e) => {
            eprintln!("skipped: cannot copy tcpfwd's socket (pidfd_getfd): {e}");
            None
        }
    }
}

/// What a [`reporting_backend`] saw of each connection: its peer address and MSS.
type Seen = Arc<Mutex<Vec<(SocketAddr, u32)>>>;

/// A backend that records each connection's peer address and MSS, then echoes.
fn reporting_backend() -> (Backend, Seen) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let backend = Backend::start(move |mut s| {
        let peer = s.peer_addr().unwrap();
        record.lock().unwrap().push((peer, mss(&s).unwrap()));
        let mut buf = [0; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    (backend, seen)
}

/// One connection through `fwd`: tcpfwd's two sockets of it (the client leg is its
/// accepted socket, its options set on the listener and inherited) and the MSS the backend
/// saw, with the client still connected; `None` where the sockets cannot be copied out (said by `leg_of`).
fn both_legs(fwd: &Tcpfwd, seen: &Seen) -> Option<(TcpStream, TcpInfo, TcpInfo, u32)> {
    let mut client = connect(fwd.addr());
    ping(&mut client);
    let me = client.local_addr().unwrap();
    let client_leg = leg_of(fwd, |_, peer| peer == me)?;
    let (from, backend_mss) = seen.lock().unwrap()[0];
    let target_leg = leg_of(fwd, |local, _| local == from)?;
    Some((client, client_leg, target_leg, backend_mss))
}

fn ping(client: &mut TcpStream) {
    client.write_all(b"ping").unwrap();
    let mut echoed = [0; 4];
    client.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"ping");
}

fn system_congestion() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .unwrap()
        .trim()
        .to_string()
}

/// Two names the kernel offers that differ from the system default, so that each leg's
/// setting is told apart from the other and from the default.
fn two_other_congestions() -> Option<(String, String)> {
    let available =
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control").ok()?;
    let default = system_congestion();
    let mut others = available.split_whitespace().filter(|n| *n != default);
    Some((others.next()?.to_string(), others.next()?.to_string()))
}

#[test]
fn each_leg_carries_the_congestion_mss_user_timeout_and_keepalive_asked() {
    if skip_under_emulation("pidfd_getfd on tcpfwd's sockets") {
        return;
    }
    let Some((client_cc, target_cc)) = two_other_congestions() else {
        eprintln!("skipped: the kernel offers fewer than two non-default congestion controls");
        return;
    };
    let (backend, seen) = reporting_backend();
    let congestion = format!("client={client_cc},target={target_cc}");
    let fwd = Tcpfwd::start(&[
        "127.0.0.1:0",
        &backend.addr.to_string(),
        "--congestion",
        &congestion,
        "--mss",
        "1000",
        "--user-timeout",
        "7s",
        "--keepalive",
        "30/4/5",
    ]);
    let Some((client, client_leg, target_leg, backend_mss)) = both_legs(&fwd, &seen) else {
        return;
    };
    for (leg, info, cc) in [
        ("client", &client_leg, &client_cc),
        ("target", &target_leg, &target_cc),
    ] {
        assert_eq!(&info.congestion, cc, "{leg} leg: {info:?}");
        assert_eq!(info.user_timeout_ms, 7000, "{leg} leg: {info:?}");
        assert!(info.keepalive && info.nodelay, "{leg} leg: {info:?}");
        assert_eq!(
            (info.keep_idle, info.keep_interval, info.keep_count),
            (30, 4, 5),
            "{leg} leg: {info:?}"
        );
        assert!(info.mss <= 1000, "{leg} leg: {info:?}");
    }
    // Both peers see the clamp: each leg advertised at most 1000 in its SYN.
    assert!(backend_mss <= 1000, "the backend's MSS {backend_mss}");
    let client_mss = mss(&client).unwrap();
    assert!(client_mss <= 1000, "the client's MSS {client_mss}");
}

#[test]
fn without_options_both_legs_have_the_documented_defaults() {
    if skip_under_emulation("pidfd_getfd on tcpfwd's sockets") {
        return;
    }
    let (backend, seen) = reporting_backend();
    let fwd = Tcpfwd::start(&["127.0.0.1:0", &backend.addr.to_string()]);
    let Some((_client, client_leg, target_leg, backend_mss)) = both_legs(&fwd, &seen) else {
        return;
    };
    for (leg, info) in [("client", &client_leg), ("target", &target_leg)] {
        assert_eq!(info.congestion, system_congestion(), "{leg} leg");
        assert_eq!(info.user_timeout_ms, 0, "{leg} leg");
        assert!(info.keepalive && info.nodelay, "{leg} leg: {info:?}");
        assert_eq!(
            (info.keep_idle, info.keep_interval, info.keep_count),
            (60, 10, 6),
            "{leg} leg"
        );
    }
    assert!(backend_mss > 1000, "unclamped MSS {backend_mss}");
}

#[test]
fn a_congestion_control_the_kernel_does_not_offer_is_exit_2_naming_the_available_ones() {
    let available =
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control").unwrap();
    let list = available.split_whitespace().collect::<Vec<_>>().join(", ");
    let expected =
        format!("--congestion: 'nosuchcc' is not offered by this kernel (available: {list})");
    let (code, _, stderr) = run(&["127.0.0.1:0", "127.0.0.1:1", "--congestion", "nosuchcc"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.trim(), format!("tcpfwd: {expected}"));
    // One leg only, and in a config file under --check: the file and line are named.
    let file = temp_file(
        "cc.conf",
        "127.0.0.1:0 127.0.0.1:1 --congestion target=nosuchcc\n",
    );
    let file = file.to_str().unwrap();
    let (code, stdout, stderr) = run(&["--check", "--config", file]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!("{file}:1: {expected}")),
        "{stderr}"
    );
}

#[test]
fn a_congestion_control_not_allowed_is_exit_2_with_the_reason() {
    if skip_under_emulation(
        "qemu-user passes TCP_CONGESTION 4 bytes of the name; unshare runs the binary natively",
    ) {
        return;
    }
    let read = |f: &str| std::fs::read_to_string(format!("/proc/sys/net/ipv4/{f}")).unwrap();
    let (available, allowed) = (
        read("tcp_available_congestion_control"),
        read("tcp_allowed_congestion_control"),
    );
    let allowed_list: Vec<&str> = allowed.split_whitespace().collect();
    let Some(name) = available
        .split_whitespace()
        .find(|n| !allowed_list.contains(n))
    else {
        eprintln!(
            "skipped: every available congestion control is allowed here ({})",
            available.trim()
        );
        return;
    };
    // Without CAP_NET_ADMIN over this network namespace: as a user namespace's root.
    let out = std::process::Command::new("unshare")
        .args(["--user", env!("CARGO_BIN_EXE_tcpfwd")])
        .args(["127.0.0.1:0", "127.0.0.1:1", "--congestion", name])
        .output();
    let Ok(out) = out else {
        eprintln!("skipped: no unshare to drop CAP_NET_ADMIN");
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "--congestion: '{name}' is not allowed: tcpfwd is not root"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("allowed: {}", allowed_list.join(", "))),
        "{stderr}"
    );
}

/// A backend that answers each connection with the peer IP it sees, then closes.
fn ip_backend() -> (Backend, Arc<Mutex<Vec<IpAddr>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let backend = Backend::start(move |mut s| {
        let ip = s.peer_addr().unwrap().ip();
        record.lock().unwrap().push(ip);
        let _ = s.write_all(ip.to_string().as_bytes());
    });
    (backend, seen)
}

fn answer_through(addr: SocketAddr) -> String {
    String::from_utf8(read_all(&mut connect(addr))).unwrap()
}

#[test]
fn source_is_where_connections_leave_from_for_the_first_target_and_after_failover() {
    let (backend, seen) = ip_backend();
    let target = backend.addr.to_string();
    let dead = closed_port().to_string();
    let first = Tcpfwd::start(&["127.0.0.1:0", &target, "--source", "127.0.0.2"]);
    assert_eq!(answer_through(first.addr()), "127.0.0.2");
    let failover = Tcpfwd::start(&[
        "127.0.0.1:0",
        &dead,
        &target,
        "--balance",
        "first",
        "--source",
        "127.0.0.2",
    ]);
    assert_eq!(answer_through(failover.addr()), "127.0.0.2");
    failover.wait_line(&format!("target {dead} down"));
    // Without --source: the OS's choice (127.0.0.1 to a loopback target).
    let plain = Tcpfwd::start(&["127.0.0.1:0", &target]);
    assert_eq!(answer_through(plain.addr()), "127.0.0.1");
    // Health probes leave from it too.
    let probed = Tcpfwd::start(&[
        "127.0.0.1:0",
        &target,
        "--source",
        "127.0.0.3",
        "--health-interval",
        "100ms",
    ]);
    let from_probe = wait_until(PATIENCE, || {
        seen.lock().unwrap().contains(&"127.0.0.3".parse().unwrap())
    });
    assert!(
        from_probe,
        "no probe from 127.0.0.3: {:?}",
        seen.lock().unwrap()
    );
    drop(probed);
}

#[test]
fn source_applies_to_connect_destinations_and_skips_the_other_family() {
    let (backend, _) = ip_backend();
    let fwd = Tcpfwd::start(&[
        "--connect",
        "127.0.0.1:0",
        "--connect-ports",
        "any",
        "--source",
        "127.0.0.2",
    ]);
    let mut client = connect(fwd.addr());
    let head = format!("CONNECT {} HTTP/1.1\r\n\r\n", backend.addr);
    client.write_all(head.as_bytes()).unwrap();
    let answer = String::from_utf8(read_all(&mut client)).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200 ") && answer.ends_with("\r\n\r\n127.0.0.2"),
        "{answer:?}"
    );
    // An IPv6 target with an IPv4 --source: connected without it.
    let Some(listener) = ipv6_loopback() else {
        eprintln!("skipped (IPv6 part): no IPv6 loopback");
        return;
    };
    let v6 = Backend::serve(listener, |mut s| {
        let ip = s.peer_addr().unwrap().ip();
        let _ = s.write_all(ip.to_string().as_bytes());
    });
    let fwd = Tcpfwd::start(&["127.0.0.1:0", &v6.addr.to_string(), "--source", "127.0.0.2"]);
    assert_eq!(answer_through(fwd.addr()), "::1");
}

#[test]
fn a_source_not_on_this_host_is_tcpfwds_own_error_logged_once_per_burst() {
    let nonlocal = std::fs::read_to_string("/proc/sys/net/ipv4/ip_nonlocal_bind").unwrap();
    if nonlocal.trim() != "0" {
        eprintln!("skipped: net.ipv4.ip_nonlocal_bind lets any address be bound");
        return;
    }
    let (backend, _) = ip_backend();
    let (other, _) = ip_backend();
    let fwd = Tcpfwd::start(&[
        "127.0.0.1:0",
        &backend.addr.to_string(),
        &other.addr.to_string(),
        "--source",
        "192.0.2.1",
    ]);
    for _ in 0..3 {
        assert_closed_without_data(&mut connect(fwd.addr()));
    }
    let ends = fwd.wait_lines("end=error", 3);
    assert!(ends.iter().all(|l| l.contains("target=-")), "{ends:?}");
    let log = fwd.lines().join("\n");
    let why = ": cannot bind to --source 192.0.2.1: cannot assign requested address (not \
               counted against the target)";
    assert_eq!(log.matches("cannot bind to --source").count(), 1, "{log}");
    assert!(
        log.contains("cannot connect to target 127.0.0.1:") && log.contains(why),
        "{log}"
    );
    // Not the targets' fault: none marked down, no failover, nothing reached them.
    assert!(!log.contains(" down:"), "{log}");
    assert_eq!(backend.count() + other.count(), 0);
}

/// Sends into `s` until a write fails (the far end gave up), from a thread. Bounded: at
/// most 256 MiB, each write bounded by the socket's timeout.
fn flood(mut s: TcpStream) -> std::thread::JoinHandle<()> {
    spawn(move || {
        let _ = s.set_write_timeout(Some(PATIENCE));
        let chunk = vec![7u8; 64 * 1024];
        for _ in 0..4096 {
            if s.write(&chunk).is_err() {
                break;
            }
        }
    })
}

/// A connection whose far side stopped taking data — its receive window shut while data
/// waits — is given up after `--user-timeout` on either leg (Linux aborts a zero-window
/// connection after the user timeout, as it does one whose data is not acknowledged: the
/// dead-host case itself needs a link that drops packets, in `make netlab`).
#[test]
fn a_peer_that_stops_taking_data_is_given_up_after_user_timeout() {
    // Target leg: a backend that never reads.
    let hold = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&hold);
    let backend = Backend::start(move |s| keep.lock().unwrap().push(s));
    let fwd = Tcpfwd::start(&[
        "127.0.0.1:0",
        &backend.addr.to_string(),
        "--user-timeout",
        "1s",
    ]);
    let started = Instant::now();
    let sender = flood(connect(fwd.addr()));
    let line = fwd.wait_line("end=target-reset");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1), "{took:?}: {line}");
    sender.join().unwrap();

    // Client leg: a client that never reads, a backend that sends without end.
    let backend = Backend::start(|s| {
        let _ = flood(s).join();
    });
    let fwd = Tcpfwd::start(&[
        "127.0.0.1:0",
        &backend.addr.to_string(),
        "--user-timeout",
        "1s",
    ]);
    let started = Instant::now();
    let client = connect(fwd.addr());
    let line = fwd.wait_line("end=client-reset");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1), "{took:?}: {line}");
    drop(client);
    drop(hold);
}

#[test]
fn a_connect_given_up_by_user_timeout_counts_as_failed() {
    // SYNs to a full backlog are dropped: the user timeout ends the connect before the
    // connect budget does, and the target is marked down as for any failed connect.
    let (listener, _queued) = full_backlog();
    let target = listener.local_addr().unwrap().to_string();
    let fwd = Tcpfwd::start(&[
        "127.0.0.1:0",
        &target,
        "--user-timeout",
        "300ms",
        "--connect-timeout",
        "20s",
    ]);
    let started = Instant::now();
    assert_closed_without_data(&mut connect(fwd.addr()));
    let line = fwd.wait_line("end=connect-timeout");
    assert!(started.elapsed() < Duration::from_secs(10), "{line}");
    fwd.wait_line(&format!("target {target} down"));
}

#[test]
fn a_reload_gives_the_kept_listener_the_new_client_leg_options() {
    if skip_under_emulation("pidfd_getfd on tcpfwd's sockets") {
        return;
    }
    let backend = Backend::echo();
    let listen = closed_port();
    let rule = |options: &str| format!("{listen} {} {options}\n", backend.addr);
    let path = temp_file("reload.conf", &rule("--keepalive 30/4/5 --user-timeout 7s"));
    let fwd = Tcpfwd::start(&["--config", path.to_str().unwrap()]);
    let client_leg = |fwd: &Tcpfwd| {
        let mut client = connect(listen);
        ping(&mut client);
        let me = client.local_addr().unwrap();
        leg_of(fwd, |_, peer| peer == me)
    };
    let Some(before) = client_leg(&fwd) else {
        return;
    };
    assert_eq!((before.keep_idle, before.user_timeout_ms), (30, 7000));
    // Keepalive off and the kernel's user timeout: the defaults come back on the listener.
    std::fs::write(&path, rule("--keepalive 0 --mss 1000")).unwrap();
    signal(fwd.pid(), "HUP");
    fwd.wait_line("reloaded ");
    let Some(after) = client_leg(&fwd) else {
        return;
    };
    assert!(!after.keepalive, "{after:?}");
    assert_eq!(after.user_timeout_ms, 0, "{after:?}");
    assert!(after.mss <= 1000, "{after:?}");
}
