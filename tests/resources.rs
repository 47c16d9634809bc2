//! Trouble with resources, black-box, as a router or a shared host meets it: log lines about
//! a lasting trouble stay few, the listen backlog holds a burst of clients, a dead first
//! address does not eat the connect budget, a failed allocation ends no connection, a
//! connection the kernel gave up on reaches the client as a reset.

mod support;

#[cfg(target_os = "linux")]
use std::io::ErrorKind;
use std::io::{Read, Write};
#[cfg(target_os = "linux")]
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

/// Lines of `fwd`'s log that contain `needle`.
fn count_lines(fwd: &Tcpfwd, needle: &str) -> usize {
    fwd.lines().iter().filter(|l| l.contains(needle)).count()
}

#[test]
fn a_rule_held_at_max_conns_says_so_once_and_once_when_it_has_room_again() {
    let backend = Backend::echo();
    let target = backend.addr.to_string();
    // -q: these lines are problems, kept in a quiet log too.
    let (fwd, addr) = Tcpfwd::start_quiet(&[&target, "--max-conns", "3"]);
    // 12 clients for 3 places, each holding its place 20 ms, for 6 s: the rule is at its cap
    // the whole time and a place frees (and is taken again) hundreds of times.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..12)
        .map(|_| {
            let (stop, served) = (Arc::clone(&stop), Arc::clone(&served));
            spawn(move || {
                for _ in 0..10_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let mut s = connect(addr);
                    s.write_all(b"x").unwrap();
                    let mut back = [0; 1];
                    s.read_exact(&mut back).unwrap();
                    std::thread::sleep(Duration::from_millis(20));
                    served.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(6));
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let lasted = start.elapsed();
    let served = served.load(Ordering::SeqCst);
    assert!(served > 100, "only {served} clients served");
    // The next client after a quiet while finds room: the burst's end is logged, with how
    // many waited.
    std::thread::sleep(Duration::from_millis(2_100));
    let mut s = connect(addr);
    s.write_all(b"y").unwrap();
    let mut back = [0; 1];
    s.read_exact(&mut back).unwrap();
    let ended = fwd.wait_line("accepting again after");
    let waited: usize = ended
        .split('(')
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(waited >= served / 2, "{ended} ({served} served)");
    // One line when it started, at most one per 5 s while it lasted, one when it ended.
    let full = count_lines(&fwd, "(--max-conns)");
    let most = 1 + (lasted.as_secs() as usize).div_ceil(5);
    assert!(
        (1..=most).contains(&full),
        "{full} lines for {served} clients in {lasted:?}:\n{}",
        fwd.lines().join("\n")
    );
    assert_eq!(count_lines(&fwd, "accepting again after"), 1);
}

#[cfg(target_os = "linux")]
/// Whether this test runs as root with `unshare` (a private /etc/hosts needs both).
fn can_unshare() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")))
        .unwrap_or(false);
    root && std::process::Command::new("unshare")
        .args(["-m", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(target_os = "linux")]
#[test]
fn a_black_holed_first_address_leaves_the_second_its_share_of_the_budget() {
    if !can_unshare() {
        eprintln!("skipped: a private /etc/hosts needs root and unshare(1)");
        return;
    }
    if skip_under_emulation("the mount namespace wraps qemu, whose resolver is the host's") {
        return;
    }
    // The name resolves to 127.0.0.1 first (a listener whose backlog is full: SYNs are
    // dropped, a connect hangs) and 127.0.0.2 second (a working backend on the same port).
    // The address list is injected through a private /etc/hosts in a mount namespace of
    // tcpfwd's own (unshare -m, bind mount), so nothing on the machine changes.
    let (hole, _queued) = full_backlog();
    let port = hole.local_addr().unwrap().port();
    let backend = Backend::start_on(&format!("127.0.0.2:{port}"), |mut s| {
        let _ = s.write_all(b"B");
    });
    let hosts = temp_file(
        "hosts",
        "127.0.0.1 dual.tcpfwd.test\n127.0.0.2 dual.tcpfwd.test\n",
    );
    let script = "mount --bind \"$0\" /etc/hosts && exec \"$@\"";
    let wrapper = [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
    ];
    let mut wrapper: Vec<&str> = wrapper.to_vec();
    wrapper.push(hosts.to_str().unwrap());
    let target = format!("dual.tcpfwd.test:{port}");
    let fwd = Tcpfwd::start_wrapped(
        &wrapper,
        &["127.0.0.1:0", &target, "--connect-timeout", "2s"],
    );
    let started = Instant::now();
    let mut client = connect(fwd.addr());
    let mut greeting = [0; 1];
    client
        .read_exact(&mut greeting)
        .expect("served by the second address");
    // The first address had its half (1 s), the second answered at once.
    let took = started.elapsed();
    assert_eq!(&greeting, b"B");
    assert!(took < Duration::from_millis(1_900), "took {took:?}");
    assert!(
        took >= Duration::from_millis(900),
        "the first address was not tried: {took:?}"
    );
    drop(client);
    let line = fwd.wait_line("end=");
    assert!(line.contains(&format!("target=127.0.0.2:{port}")), "{line}");
    assert_eq!(backend.count(), 1);
}

#[cfg(target_os = "linux")]
/// The backlog of the socket listening on `port`, as `ss -ltn` shows it (Send-Q of a
/// listening socket); `None` without `ss` (iproute2).
fn backlog_of(port: u16) -> Option<u32> {
    let out = std::process::Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // State Recv-Q Send-Q Local Peer
    text.lines().next()?.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(target_os = "linux")]
#[test]
fn the_listen_backlog_holds_a_burst_of_clients() {
    if std::process::Command::new("ss").arg("-V").output().is_err() {
        eprintln!("skipped: ss (iproute2) is not installed");
        return;
    }
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(4096);
    let backend = Backend::echo();
    let target = backend.addr.to_string();
    // The default: 1024, as far as the kernel allows (std alone listens with 128).
    let fwd = Tcpfwd::start(&["127.0.0.1:0", &target]);
    let default = backlog_of(fwd.addr().port()).expect("ss shows the listener");
    assert_eq!(default, 1024.min(somaxconn));
    assert!(default >= 511.min(somaxconn), "backlog {default}");
    // --backlog N, per rule.
    let fwd = Tcpfwd::start(&["127.0.0.1:0", &target, "--backlog", "600"]);
    assert_eq!(backlog_of(fwd.addr().port()), Some(600.min(somaxconn)));
    // At --max-conns the backlog holds the waiting clients: 300 connects all complete. Each
    // may take 5 s (a loaded machine can delay a loopback handshake): one that meets a full
    // backlog has its SYNs dropped and fails all the same.
    let fwd = Tcpfwd::start(&["127.0.0.1:0", &target, "--max-conns", "1"]);
    let _held = connect(fwd.addr());
    let waiting: Vec<TcpStream> = (0..300.min(somaxconn as usize - 2))
        .map(|_| {
            TcpStream::connect_timeout(&fwd.addr(), Duration::from_secs(5))
                .expect("a client that waits in the backlog")
        })
        .collect();
    assert!(!waiting.is_empty());
}

#[cfg(target_os = "linux")]
#[test]
fn a_target_the_kernel_gave_up_on_reaches_the_client_as_a_reset() {
    if skip_under_emulation("pidfd_getfd on an emulated process's socket") {
        return;
    }
    // A target that accepts and never reads: its window closes, tcpfwd's socket probes it.
    let stop = Arc::new(AtomicBool::new(false));
    let holding = Arc::clone(&stop);
    let backend = Backend::start(move |s| {
        let deadline = Instant::now() + PATIENCE;
        while !holding.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(s);
    });
    let target = backend.addr.to_string();
    let fwd = Tcpfwd::start(&["127.0.0.1:0", &target]);
    let mut client = connect(fwd.addr());
    client.write_all(b"hello").unwrap();
    assert!(wait_until(PATIENCE, || backend.count() == 1));
    // The kernel gives up on tcpfwd's target socket 300 ms into probing a closed window:
    // ETIMEDOUT, as when keepalive or retransmissions give up on a dead link. The option is
    // set on tcpfwd's own socket from here (pidfd_getfd), so no option of tcpfwd's is needed.
    let set = wait_until(PATIENCE, || {
        set_user_timeout_in(fwd.pid(), backend.addr.port(), 300).is_ok()
    });
    if !set {
        eprintln!("skipped: pidfd_getfd is not available (Linux 5.6+, ptrace rights)");
        stop.store(true, Ordering::SeqCst);
        return;
    }
    // Fill the target's window and tcpfwd's buffers, until the connection fails. One thread
    // both writes and learns how it failed (with two, either may take the error).
    client
        .set_write_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let deadline = Instant::now() + PATIENCE;
    let failed = loop {
        assert!(Instant::now() < deadline, "the connection never failed");
        match client.write(&chunk) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => break e,
        }
    };
    let line = fwd.wait_line("end=");
    stop.store(true, Ordering::SeqCst);
    // The client is reset while its connection is open: a FIN first (a close-delimited
    // protocol would take the cut stream for a complete one) makes the reset a broken pipe.
    assert_eq!(
        failed.kind(),
        ErrorKind::ConnectionReset,
        "{failed}; {line}"
    );
    assert!(line.contains("end=target-reset"), "{line}");
    // Nothing was delivered as if the target had ended cleanly.
    let mut byte = [0; 1];
    assert!(client.read(&mut byte).map_or(true, |n| n == 0));
}

#[cfg(target_os = "linux")]
#[test]
fn a_copy_buffer_that_cannot_be_allocated_ends_no_connection() {
    if std::process::Command::new("prlimit")
        .arg("-V")
        .output()
        .is_err()
    {
        eprintln!("skipped: needs prlimit (util-linux)");
        return;
    }
    if skip_under_emulation("an address-space limit on qemu limits qemu, not the guest") {
        return;
    }
    // 400 MiB of address space (a 32-bit router has 2-3 GiB): the idle process takes about
    // 70 MiB, so two connections' 64 MiB buffers each way fit and the rest do not.
    let backend = Backend::echo();
    let target = backend.addr.to_string();
    let fwd = Tcpfwd::start_wrapped(
        &["prlimit", "--as=419430400"],
        &["127.0.0.1:0", &target, "--buffer-size", "64m"],
    );
    let addr = fwd.addr();
    // Ten bulk clients at once, each 1 MiB both ways: every byte comes back.
    let clients: Vec<_> = (0..10u32)
        .map(|i| {
            spawn(move || {
                let data = pattern(1 << 20, i);
                echo_both_ways_at_once(&mut connect(addr), &data);
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a bulk client lost bytes");
    }
    // Said once for the burst, and the process lives and serves again.
    fwd.wait_line("cannot allocate a 67108864 byte copy buffer");
    assert_eq!(
        count_lines(&fwd, "cannot allocate"),
        1,
        "{}",
        fwd.lines().join("\n")
    );
    assert!(threads_of(fwd.pid()).is_some(), "tcpfwd died");
    echo_through(addr, 300_000);
    fwd.wait_lines("end=client-eof", 11);
}
