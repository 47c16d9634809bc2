//! The addresses users ask for (SPEC §1), black-box: port ranges expanded into one rule per
//! port, Unix-domain sockets on either side, and 10,000 rules in one process.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
#[cfg(target_os = "linux")]
use std::time::{Duration, Instant};

use support::*;

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Starts tcpfwd with `args` and waits until it listens on `count` sockets.
fn start_listening(args: &[&str], count: usize) -> Tcpfwd {
    let fwd = Tcpfwd::spawn(args);
    fwd.wait_lines("listening on ", count);
    fwd
}

#[test]
fn a_range_maps_each_port_to_its_offset_target() {
    let listen = free_port_block(100);
    let target = free_port_block(100);
    let backends = [
        Backend::named_on(local(target), "a"),
        Backend::named_on(local(target + 50), "m"),
        Backend::named_on(local(target + 99), "z"),
    ];
    let range = format!("127.0.0.1:{listen}-{}", listen + 99);
    let targets = format!("127.0.0.1:{target}-{}", target + 99);
    let fwd = start_listening(&["--stats", "127.0.0.1:0", &range, &targets], 100);
    for (k, greeting) in [(0, "a"), (50, "m"), (99, "z")] {
        assert_eq!(
            served_by(local(listen + k)),
            greeting,
            "port {}",
            listen + k
        );
    }
    // `rule=` is the port's own address, in the log and in the metrics.
    let middle = format!("127.0.0.1:{}", listen + 50);
    fwd.wait_lines("end=", 3);
    let line = fwd.wait_line(&format!("listen={middle} "));
    assert!(
        line.contains(&format!("target=127.0.0.1:{} ", target + 50)),
        "{line}"
    );
    let body = http_get(fwd.stats_addr(), "/metrics").body;
    let series = format!("tcpfwd_connections_total{{rule=\"{middle}\",end=\"client-eof\"}}");
    assert_eq!(metric(&body, &series), Some(1), "{body}");
    assert!(
        !body.contains(&format!("rule=\"{range}\"")),
        "a range label in\n{body}"
    );
    drop(backends);
}

#[test]
fn a_range_to_one_port_sends_every_port_there() {
    let listen = free_port_block(100);
    let backend = Backend::named("o");
    let range = format!("127.0.0.1:{listen}-{}", listen + 99);
    let fwd = start_listening(&[&range, &backend.addr.to_string()], 100);
    for k in [0, 37, 99] {
        assert_eq!(served_by(local(listen + k)), "o");
    }
    let lines = fwd.wait_lines("end=", 3);
    for k in [0, 37, 99] {
        let label = format!("listen=127.0.0.1:{} ", listen + k);
        assert!(
            lines.iter().any(|l| l.contains(&label)),
            "{label}: {lines:?}"
        );
    }
}

/// 100 ports, polled by one thread: a graceful stop ends it (exit 0, every port refused),
/// and a hand-over gives every port to the new process.
#[cfg(target_os = "linux")]
#[test]
fn a_polled_range_stops_and_is_handed_over() {
    if skip_under_emulation("the new process is started as this program, not through qemu") {
        return;
    }
    let listen = free_port_block(100);
    let backend = Backend::named("r");
    let range = format!("127.0.0.1:{listen}-{}", listen + 99);
    let config = temp_file(
        "handover-range.conf",
        &format!("{range} {}\n", backend.addr),
    );
    let fwd = start_listening(&["--config", config.to_str().unwrap()], 100);
    let old = fwd.pid();
    assert_eq!(served_by(local(listen + 99)), "r");
    signal(old, "USR2");
    let line = fwd.wait_line("hand-over: process ");
    let new: u32 = line
        .split("process ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"));
    let (code, log) = fwd.wait_exit();
    assert_eq!(code, Some(0), "{log}");
    for k in [0, 50, 99] {
        assert_eq!(
            served_by(local(listen + k)),
            "r",
            "port {} after the hand-over",
            listen + k
        );
    }
    // The new process stops gracefully too, and lets go of every port.
    signal(new, "TERM");
    let gone = wait_until(PATIENCE, || {
        std::fs::metadata(format!("/proc/{new}")).is_err()
            || std::fs::read_to_string(format!("/proc/{new}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    if !gone {
        signal(new, "KILL");
    }
    assert!(gone, "the new process did not stop");
    let refused = wait_until(PATIENCE, || TcpStream::connect(local(listen)).is_err());
    assert!(refused, "port {listen} still open");
}

#[test]
fn range_mistakes_exit_2_naming_both() {
    let (code, _, err) = run(&[":8000-8099", "127.0.0.1:9000-9049"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(":8000-8099") && err.contains("127.0.0.1:9000-9049"),
        "{err}"
    );
    let (code, _, err) = run(&["--connect", "127.0.0.1:3128-3129"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--connect") && err.contains("range"), "{err}");
    let (code, _, err) = run(&[":1000-5096", "127.0.0.1:80"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("4096"), "{err}");
}

#[test]
fn max_conns_applies_to_each_port_of_a_range() {
    // 100 ports: more listeners than get a thread each, so one thread polls them all.
    let listen = free_port_block(100);
    let backend = Backend::echo();
    let range = format!("127.0.0.1:{listen}-{}", listen + 99);
    let fwd = start_listening(
        &[&range, &backend.addr.to_string(), "--max-conns", "1"],
        100,
    );
    let echo = |s: &mut TcpStream| {
        s.write_all(b"x").unwrap();
        let mut byte = [0];
        s.read_exact(&mut byte).unwrap();
    };
    let mut first = connect(local(listen));
    echo(&mut first);
    // The first port is full: its next client waits in the backlog...
    let mut waiting = connect(local(listen));
    waiting.write_all(b"y").unwrap();
    fwd.wait_line("has 1 connections (--max-conns)");
    assert_eq!(backend.count(), 1);
    // ...while the second port has a place of its own.
    let mut other = connect(local(listen + 1));
    echo(&mut other);
    assert_eq!(backend.count(), 2);
    drop(first);
    let mut byte = [0];
    waiting.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"y");
}

#[test]
fn check_prints_a_range_once_and_reads_back_the_same() {
    let (code, out, err) = run(&["--check", ":9000-9099", "app:7000-7099", "one:80"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with(":9000-9099 app:7000-7099 one:80 "), "{out}");
    assert!(out.trim_end().ends_with("# 100 ports"), "{out}");
    let file = temp_file("range.conf", &out);
    let (code, again, err) = run(&["--check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(again, out);
}

/// `count` rules on 127.0.0.2 to `target`, in a config file: up to 4,096 as one range, the
/// rest as single rules (another program's listener on 127.0.0.1 does not get in the way
/// there). Returns the file and the rules' ports in written order.
#[cfg(target_os = "linux")]
fn many_rules(count: usize, target: SocketAddr) -> (std::path::PathBuf, Vec<u16>) {
    let host = "127.0.0.2";
    let ranged = count.min(4096);
    let base = free_port_block_on(host, ranged as u16);
    let mut ports: Vec<u16> = (base..base + ranged as u16).collect();
    ports.extend(free_ports_on(
        host,
        count - ranged,
        base..base + ranged as u16,
    ));
    let mut config = match ranged {
        1 => format!("{host}:{base} {target}\n"),
        _ => format!("{host}:{base}-{} {target}\n", base + ranged as u16 - 1),
    };
    for port in &ports[ranged..] {
        config.push_str(&format!("{host}:{port} {target}\n"));
    }
    (temp_file("many.conf", &config), ports)
}

/// 127.0.0.2:`port`.
#[cfg(target_os = "linux")]
fn second_loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 2], port))
}

/// Starts tcpfwd (`extra` arguments first) on `file` and waits until the last of `ports`
/// answers through it; returns the process and how long that took from the start. The
/// listeners are all open before the first accept thread starts, and the threads start in
/// rule order: once the last rule answers, every rule does.
#[cfg(target_os = "linux")]
fn start_many(extra: &[&str], file: &std::path::Path, ports: &[u16]) -> (Tcpfwd, Duration) {
    let started = Instant::now();
    let mut args = extra.to_vec();
    args.extend(["--config", file.to_str().unwrap()]);
    let fwd = Tcpfwd::spawn(&args);
    let last = second_loopback(ports[ports.len() - 1]);
    let bound = wait_until(PATIENCE, || TcpStream::connect(last).is_ok());
    assert!(bound, "the last rule's port never opened");
    assert_eq!(served_by(last), "t");
    (fwd, started.elapsed())
}

/// 10,000 rules: a range of 4,096 ports and 5,904 single rules in a config file. Every tested
/// port answers; start-up time, threads and memory are printed (the README's figures come
/// from the release build: `measure_idle_rules`).
#[cfg(target_os = "linux")]
#[test]
fn ten_thousand_rules_start_and_answer() {
    if skip_under_emulation("10,000 listeners under qemu") {
        return;
    }
    let backend = Backend::named("t");
    let (file, ports) = many_rules(10_000, backend.addr);
    let (fwd, took) = start_many(&[], &file, &ports);
    for k in [0, 1, 2047, 4095, 4096, 7000, 9998] {
        let port = ports[k];
        assert_eq!(served_by(second_loopback(port)), "t", "port {port}");
    }
    let pid = fwd.pid();
    // Each connection above held two threads until its relay ended, which on a loaded
    // machine may be after the next one started: count once they have all ended and the
    // threads left over are idle ones (a spare leaves after 2 s).
    fwd.wait_lines("end=", 8);
    let mut threads = threads_of(pid).unwrap();
    wait_until(PATIENCE, || {
        threads = threads_of(pid).unwrap();
        threads <= 10 + 8
    });
    let resident = resident_of(pid).unwrap();
    eprintln!(
        "10,000 rules: answering after {:.2} s, {threads} threads, {} KiB resident",
        took.as_secs_f64(),
        resident / 1024
    );
    // README "Thousands of rules": one polling thread per 1,024 listeners, and a few more; a
    // few KiB resident per idle rule (a generous bound here: a debug build).
    assert!(threads <= 10 + 8, "{threads} threads");
    assert!(resident < 100 << 20, "{} KiB resident", resident / 1024);
    // SPEC §1: under 2 s on 2 cores, measured on the release build (README). This is a debug
    // build on a shared machine: only a bound that catches a gross regression.
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

/// The README's table of what idle rules cost: 1, 1,000 and 10,000 rules, five starts each,
/// the median of each figure. A measurement, not a test:
/// `cargo test --release --test addresses -- --ignored measure_idle_rules --nocapture`.
#[cfg(target_os = "linux")]
#[test]
#[ignore]
fn measure_idle_rules() {
    let backend = Backend::named("t");
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("| rules | start-up | resident (RSS) | threads | descriptors |");
    for count in [1, 1_000, 10_000] {
        let (file, ports) = many_rules(count, backend.addr);
        let mut runs = Vec::new();
        for _ in 0..5 {
            let (fwd, took) = start_many(&["-q"], &file, &ports);
            // Idle: the spare thread of the connection that answered has ended (2 s).
            std::thread::sleep(Duration::from_millis(2500));
            let pid = fwd.pid();
            let threads = threads_of(pid).unwrap() as f64;
            let resident = resident_of(pid).unwrap() as f64 / (1 << 20) as f64;
            let fds = fds_of(pid).unwrap() as f64;
            runs.push((took.as_secs_f64(), resident, threads, fds));
        }
        let column = |f: fn(&(f64, f64, f64, f64)) -> f64| median(runs.iter().map(f).collect());
        println!(
            "| {count} | {:.3} s | {:.1} MiB | {} | {} |",
            column(|r| r.0),
            column(|r| r.1),
            column(|r| r.2),
            column(|r| r.3)
        );
    }
}

#[cfg(unix)]
mod unix {
    use std::io::{self, Read, Write};
    use std::net::Shutdown;
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    use super::start_listening;
    use super::support::*;

    /// A fresh socket path under Cargo's temporary directory for tests (short enough for
    /// `sun_path`).
    fn socket_path(name: &str) -> PathBuf {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{}-{n}-{name}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    fn unix_arg(path: &Path) -> String {
        format!("unix:{}", path.display())
    }

    /// A Unix-domain test server: each connection given to `handler` on its own thread.
    fn unix_backend<F>(path: &Path, handler: F)
    where
        F: Fn(UnixStream) + Send + Sync + Clone + 'static,
    {
        let listener = UnixListener::bind(path).expect("bind unix backend");
        spawn(move || {
            for stream in listener.incoming().flatten() {
                let handler = handler.clone();
                spawn(move || handler(stream));
            }
        });
    }

    fn echo(mut s: impl Read + Write) {
        let mut buf = [0; 16384];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    }

    /// Echoes, then shuts its write half down at the client's EOF.
    fn unix_echo(s: UnixStream) {
        echo(&s);
        let _ = s.shutdown(Shutdown::Write);
    }

    fn connect_unix(path: &Path) -> UnixStream {
        let s = UnixStream::connect(path).expect("connect to tcpfwd's socket");
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s
    }

    #[test]
    fn unix_listen_to_tcp_target_byte_exact_both_ways() {
        let backend = Backend::echo();
        let path = socket_path("listen");
        // TCP-only options are skipped on the Unix side, silently.
        let mut args = vec![unix_arg(&path), backend.addr.to_string()];
        let tcp_only = ["--keepalive", "5s", "--nagle", "--segment-size", "1000"];
        args.extend(tcp_only.map(String::from));
        if cfg!(target_os = "linux") {
            args.extend(["--mss", "1200"].map(String::from));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let fwd = start_listening(&args, 1);
        let line = fwd.wait_line("listening on ");
        assert!(line.contains(&unix_arg(&path)), "{line}");
        for size in [1, 100_000, 3_000_017] {
            echo_both_ways_at_once(&mut connect_unix(&path), &pattern(size, size as u32));
        }
        let lines = fwd.wait_lines("end=client-eof", 3);
        assert!(
            lines.iter().all(|l| l.starts_with("client=unix ")),
            "{lines:?}"
        );
        // Each line is written after the client saw its EOF: the next connection may log
        // first, so the big one is found by its counts, not by its place.
        assert!(
            lines
                .iter()
                .any(|l| l.contains(" up=3000017 down=3000017 ")),
            "{lines:?}"
        );
    }

    #[test]
    fn tcp_listen_to_unix_target_byte_exact_both_ways() {
        let path = socket_path("target");
        unix_backend(&path, unix_echo);
        let fwd = start_listening(&["127.0.0.1:0", &unix_arg(&path), "--keepalive", "5s"], 1);
        for size in [1, 100_000, 3_000_017] {
            echo_both_ways_at_once(&mut connect(fwd.addr()), &pattern(size, size as u32));
        }
        let line = fwd.wait_lines("end=client-eof", 3).pop().unwrap();
        assert!(
            line.contains(&format!("target={} ", unix_arg(&path))),
            "{line}"
        );
    }

    /// The client sends a request and shuts down its write half; the target answers only after
    /// reading that EOF: the client gets the whole answer.
    fn answer_after_eof(mut s: impl Read + Write) {
        let mut request = Vec::new();
        let _ = s.read_to_end(&mut request);
        let _ = s.write_all(&pattern(200_000, request.len() as u32));
    }

    #[test]
    fn half_close_from_the_client_both_kinds() {
        // Unix client, TCP target.
        let backend = Backend::start(answer_after_eof);
        let path = socket_path("half");
        let fwd = start_listening(&[&unix_arg(&path), &backend.addr.to_string()], 1);
        let mut client = connect_unix(&path);
        client.write_all(&[7; 1000]).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).unwrap();
        assert!(reply == pattern(200_000, 1000), "{} bytes", reply.len());
        fwd.wait_line("end=client-eof");
        // TCP client, Unix target.
        let path = socket_path("half-target");
        unix_backend(&path, |s| answer_after_eof(&s));
        let fwd = start_listening(&["127.0.0.1:0", &unix_arg(&path)], 1);
        let mut client = connect(fwd.addr());
        client.write_all(&[7; 1000]).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let reply = read_all(&mut client);
        assert!(reply == pattern(200_000, 1000), "{} bytes", reply.len());
        fwd.wait_line("end=client-eof");
    }

    #[test]
    fn half_close_from_the_target_keeps_the_upload_running() {
        // The Unix target says hello, shuts down its write half, then reads the whole upload.
        let path = socket_path("target-eof");
        let (got, received) = mpsc::channel();
        unix_backend(&path, move |mut s: UnixStream| {
            s.write_all(b"hello").unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let mut upload = Vec::new();
            let _ = s.read_to_end(&mut upload);
            let _ = got.send(upload);
        });
        let fwd = start_listening(&["127.0.0.1:0", &unix_arg(&path)], 1);
        let mut client = connect(fwd.addr());
        let mut hello = Vec::new();
        client.read_to_end(&mut hello).unwrap();
        assert_eq!(hello, b"hello");
        let upload = pattern(500_000, 3);
        client.write_all(&upload).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let arrived = received.recv_timeout(PATIENCE).unwrap();
        assert!(arrived == upload, "{} bytes", arrived.len());
        let line = fwd.wait_line("end=target-eof");
        assert!(line.contains(" up=500000 down=5 "), "{line}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_reset_on_either_side_ends_both() {
        // A TCP target that resets: the Unix client sees its end at once.
        let backend = Backend::start(|mut s: std::net::TcpStream| {
            let _ = s.read(&mut [0]);
            // Closed with unread data: the peer gets a reset.
        });
        let path = socket_path("reset");
        let fwd = start_listening(&[&unix_arg(&path), &backend.addr.to_string()], 1);
        let threads = threads_of(fwd.pid()).unwrap();
        let mut client = connect_unix(&path);
        client.write_all(&[1; 64]).unwrap();
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest);
        fwd.wait_line("end=target-reset");
        // A Unix client that closes with unread data: the target's connection ends too.
        let backend = Backend::start(|mut s: std::net::TcpStream| {
            let _ = s.write_all(&[2; 64]);
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        });
        let path = socket_path("reset-client");
        let fwd2 = start_listening(&[&unix_arg(&path), &backend.addr.to_string()], 1);
        let mut client = connect_unix(&path);
        client.write_all(&[1; 64]).unwrap();
        let mut first = [0];
        client.read_exact(&mut first).unwrap();
        drop(client);
        fwd2.wait_line("end=client-reset");
        // Nothing is left behind in the first process either.
        let back = wait_until(PATIENCE, || threads_of(fwd.pid()) == Some(threads));
        assert!(back, "threads {:?}, was {threads}", threads_of(fwd.pid()));
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_is_not() {
        let backend = Backend::echo();
        let path = socket_path("stale");
        // A socket file left by a process that died: nobody listens on it.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let fwd = start_listening(&[&unix_arg(&path), &backend.addr.to_string()], 1);
        echo_both_ways_at_once(&mut connect_unix(&path), b"replaced");
        // While tcpfwd listens there, a second one exits 1: address in use.
        let (code, _, err) = run(&[&unix_arg(&path), &backend.addr.to_string()]);
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains(&unix_arg(&path)) && err.contains("address in use"),
            "{err}"
        );
        echo_both_ways_at_once(&mut connect_unix(&path), b"still served");
        drop(fwd);
    }

    #[test]
    fn an_existing_file_is_exit_1_naming_it_and_left_alone() {
        let path = socket_path("regular");
        std::fs::write(&path, "precious").unwrap();
        let (code, _, err) = run(&[&unix_arg(&path), "127.0.0.1:80"]);
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains(&unix_arg(&path)) && err.contains("not a socket"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }

    #[test]
    fn the_socket_file_is_removed_when_tcpfwd_exits() {
        // The exit this build has without a signal: a later listener cannot be opened.
        let path = socket_path("removed");
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let config = format!(
            "{} 127.0.0.1:80\n{} 127.0.0.1:80\n",
            unix_arg(&path),
            busy.local_addr().unwrap()
        );
        let file = temp_file("unix-exit.conf", &config);
        let (code, _, err) = run(&["--config", file.to_str().unwrap()]);
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("address in use"), "{err}");
        assert!(!path.exists(), "{} left behind", path.display());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_socket_file_is_removed_after_sigterm() {
        let backend = Backend::echo();
        let path = socket_path("sigterm");
        let fwd = start_listening(&[&unix_arg(&path), &backend.addr.to_string()], 1);
        echo_both_ways_at_once(&mut connect_unix(&path), b"before the stop");
        assert!(path.exists());
        signal(fwd.pid(), "TERM");
        let (code, log) = fwd.wait_exit();
        assert_eq!(code, Some(0), "{log}");
        assert!(!path.exists(), "{} left behind", path.display());
    }

    /// SIGUSR2: the new process serves the same socket, the old one leaves the file to it,
    /// and the new one removes it when it stops.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_unix_listener_is_handed_over() {
        if skip_under_emulation("the new process is started as this program, not through qemu") {
            return;
        }
        let backend = Backend::echo();
        let path = socket_path("handover");
        let config = temp_file(
            "handover-unix.conf",
            &format!("{} {}\n", unix_arg(&path), backend.addr),
        );
        let fwd = start_listening(&["--config", config.to_str().unwrap()], 1);
        signal(fwd.pid(), "USR2");
        let line = fwd.wait_line("hand-over: process ");
        let new: u32 = line
            .split("process ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no pid in {line:?}"));
        let (code, log) = fwd.wait_exit();
        assert_eq!(code, Some(0), "{log}");
        assert!(
            path.exists(),
            "the old process removed the new one's socket file"
        );
        echo_both_ways_at_once(&mut connect_unix(&path), b"served by the new process");
        signal(new, "TERM");
        let removed = wait_until(PATIENCE, || !path.exists());
        if !removed {
            signal(new, "KILL");
        }
        assert!(removed, "{} left behind by the new process", path.display());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_reload_keeps_a_unix_rule_and_a_range() {
        let backend = Backend::echo();
        let path = socket_path("reload");
        let listen = free_port_block(100);
        let first = format!(
            "{} {}\n127.0.0.1:{listen}-{} {}\n",
            unix_arg(&path),
            backend.addr,
            listen + 99,
            backend.addr
        );
        let config = temp_file("reload-unix.conf", &first);
        let fwd = start_listening(&["--config", config.to_str().unwrap()], 101);
        let mut held = connect_unix(&path);
        held.write_all(b"a").unwrap();
        let mut byte = [0];
        held.read_exact(&mut byte).unwrap();
        // The same rules with a new option, and one more port.
        let second = format!(
            "{} {} --idle-timeout 1h\n127.0.0.1:{listen}-{} {}\n",
            unix_arg(&path),
            backend.addr,
            listen + 99,
            backend.addr
        );
        std::fs::write(&config, second).unwrap();
        signal(fwd.pid(), "HUP");
        let line = fwd.wait_line("reloaded ");
        assert!(
            line.contains("101 rules (0 added, 0 removed, 1 changed)"),
            "{line}"
        );
        echo_both_ways_at_once(&mut connect_unix(&path), b"after the reload");
        echo_both_ways_at_once(&mut super::connect(super::local(listen + 99)), b"range");
        // The connection from before goes on.
        held.write_all(b"b").unwrap();
        held.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"b");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_names_on_linux() {
        use std::os::linux::net::SocketAddrExt;
        let backend = Backend::echo();
        let name = format!("tcpfwd-test-{}", std::process::id());
        let listen = format!("unix:@{name}");
        let fwd = start_listening(&[&listen, &backend.addr.to_string()], 1);
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        let mut client = UnixStream::connect_addr(&addr).unwrap();
        echo_both_ways_at_once(&mut client, &pattern(70_000, 9));
        fwd.wait_line("client=unix ");
        // And as a target.
        let target = format!("tcpfwd-target-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&target).unwrap();
        let listener = UnixListener::bind_addr(&addr).unwrap();
        spawn(move || {
            for s in listener.incoming().flatten() {
                spawn(move || unix_echo(s));
            }
        });
        let fwd = start_listening(&["127.0.0.1:0", &format!("unix:@{target}")], 1);
        echo_both_ways_at_once(&mut connect(fwd.addr()), &pattern(70_000, 10));
    }

    /// What a target received first, up to `len` bytes.
    fn first_bytes(path: &Path, len: usize) -> mpsc::Receiver<Vec<u8>> {
        let (got, received) = mpsc::channel();
        unix_backend(path, move |mut s: UnixStream| {
            let mut head = vec![0; len];
            if s.read_exact(&mut head).is_ok() {
                let _ = got.send(head);
            }
            // Hold the connection until tcpfwd ends it: closing early would make tcpfwd reset
            // a client that may still be inside connect() (seen in CI as ECONNRESET there).
            let _ = s.set_read_timeout(Some(PATIENCE));
            let _ = io::copy(&mut s, &mut io::sink());
        });
        received
    }

    #[test]
    fn accept_proxy_on_a_unix_listener_takes_the_header_source() {
        let backend = Backend::echo();
        let path = socket_path("accept-proxy");
        let fwd = start_listening(
            &[
                &unix_arg(&path),
                &backend.addr.to_string(),
                "--accept-proxy",
                "--allow",
                "192.0.2.0/24",
            ],
            1,
        );
        let mut client = connect_unix(&path);
        client
            .write_all(b"PROXY TCP4 192.0.2.7 198.51.100.1 4000 80\r\nping")
            .unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut echoed = Vec::new();
        client.read_to_end(&mut echoed).unwrap();
        assert_eq!(echoed, b"ping");
        let line = fwd.wait_line("end=client-eof");
        assert!(line.starts_with("client=192.0.2.7:4000 "), "{line}");
        // A header from outside --allow is denied like a TCP client's.
        let mut client = connect_unix(&path);
        client
            .write_all(b"PROXY TCP4 203.0.113.9 198.51.100.1 4000 80\r\n")
            .unwrap();
        assert_closed_without_data_unix(&mut client);
        let line = fwd.wait_line("end=denied");
        assert!(line.starts_with("client=203.0.113.9:4000 "), "{line}");
        // LOCAL (a health check): the client stays `unix`, which --allow does not apply to.
        let mut client = connect_unix(&path);
        client.write_all(b"PROXY UNKNOWN\r\nhi").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut echoed = Vec::new();
        client.read_to_end(&mut echoed).unwrap();
        assert_eq!(echoed, b"hi");
        fwd.wait_line("client=unix ");
    }

    fn assert_closed_without_data_unix(client: &mut UnixStream) {
        let mut buf = [0; 16];
        match client.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("got {n} bytes"),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
    }

    #[test]
    fn a_missing_unix_target_is_a_refused_connect() {
        let path = socket_path("nobody");
        let fwd = start_listening(&["127.0.0.1:0", &unix_arg(&path)], 1);
        assert_closed_without_data(&mut connect(fwd.addr()));
        let line = fwd.wait_line("end=");
        assert!(
            line.contains("target=- ") && line.contains("end=connect-refused"),
            "{line}"
        );
        // A socket file nobody listens on any more: the same.
        drop(UnixListener::bind(&path).unwrap());
        assert_closed_without_data(&mut connect(fwd.addr()));
        assert_eq!(fwd.wait_lines("end=connect-refused", 2).len(), 2);
    }

    #[test]
    fn source_hash_sends_every_unix_client_to_one_target() {
        let (a, b) = (Backend::named("a"), Backend::named("b"));
        let path = socket_path("hash");
        let (ta, tb) = (a.addr.to_string(), b.addr.to_string());
        let args = [&unix_arg(&path), &ta, &tb, "--balance", "source-hash"];
        let _fwd = start_listening(&args, 1);
        let greetings: Vec<u8> = (0..6)
            .map(|_| {
                let mut client = connect_unix(&path);
                let mut byte = [0];
                client.read_exact(&mut byte).unwrap();
                byte[0]
            })
            .collect();
        assert!(
            greetings.iter().all(|g| *g == greetings[0]),
            "{greetings:?}"
        );
    }

    #[test]
    fn allow_does_not_apply_to_unix_clients() {
        let backend = Backend::echo();
        let path = socket_path("allow");
        let fwd = start_listening(
            &[
                &unix_arg(&path),
                &backend.addr.to_string(),
                "--allow",
                "192.0.2.0/24",
            ],
            1,
        );
        echo_both_ways_at_once(&mut connect_unix(&path), b"let in");
        fwd.wait_line("client=unix ");
    }

    #[test]
    fn proxy_protocol_for_a_unix_client_is_unknown_or_local() {
        let v1 = b"PROXY UNKNOWN\r\n".to_vec();
        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        v2.extend_from_slice(&[0x20, 0x00, 0, 0]);
        for (version, expected) in [("v1", v1), ("v2", v2)] {
            let target = socket_path("pp-target");
            let received = first_bytes(&target, expected.len() + 3);
            let path = socket_path("pp-listen");
            let _fwd = start_listening(
                &[
                    &unix_arg(&path),
                    &unix_arg(&target),
                    "--proxy-protocol",
                    version,
                ],
                1,
            );
            let mut client = connect_unix(&path);
            client.write_all(b"abc").unwrap();
            let got = received.recv_timeout(PATIENCE).unwrap();
            assert_eq!(got, [&expected[..], b"abc"].concat(), "{version}");
        }
        // A TCP client in front of a Unix target: its addresses, as always.
        let target = socket_path("pp-tcp");
        let received = first_bytes(&target, 5);
        let fwd = start_listening(
            &["127.0.0.1:0", &unix_arg(&target), "--proxy-protocol", "v1"],
            1,
        );
        let mut client = connect(fwd.addr());
        client.write_all(b"x").unwrap();
        let got = received.recv_timeout(PATIENCE).unwrap();
        assert_eq!(&got, b"PROXY");
    }
}
