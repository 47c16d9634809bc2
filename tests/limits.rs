//! Resource limits, black-box: the process caps itself below the kernel limits, waits at the
//! cap, recovers, and never dies.

mod support;

#[cfg(target_os = "linux")]
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::*;

#[test]
fn over_the_open_file_limit_it_waits_at_a_cap_and_recovers() {
    let backend = Backend::echo();
    let target = backend.addr.to_string();
    // 200 open files allow (200 - 32 spare - 2 for the listener) / 2 = 83 connections, far
    // fewer than --max-conns 1000.
    let fwd = Tcpfwd::start_with_fd_limit(200, &["127.0.0.1:0", &target, "--max-conns", "1000"]);
    let warning = fwd.wait_line("warning: the open-file limit");
    assert!(warning.contains("--max-conns is now 83"), "{warning}");
    let mut clients: Vec<TcpStream> = (0..90).map(|_| connect(fwd.addr())).collect();
    assert!(
        wait_until(PATIENCE, || backend.count() >= 83),
        "only {} connections reached the backend",
        backend.count()
    );
    fwd.wait_line("not accepting until one ends");
    // Held at the cap, alive: the 7 others wait in the backlog.
    assert!(!wait_until(Duration::from_millis(300), || backend.count() > 83));
    assert_eq!(
        fwd.lines()
            .iter()
            .filter(|l| l.contains("warning:"))
            .count(),
        1
    );
    // Ending 20 lets the 7 waiting ones through; they are served.
    clients.drain(..20);
    assert!(wait_until(PATIENCE, || backend.count() == 90));
    let last = clients.last_mut().unwrap();
    assert_eq!(echo_once(last, b"still here"), b"still here");
    drop(clients);
    let mut fresh = connect(fwd.addr());
    assert_eq!(echo_once(&mut fresh, b"recovered"), b"recovered");
    assert!(threads_of(fwd.pid()).is_some(), "tcpfwd died");
}

#[cfg(target_os = "linux")]
#[test]
fn running_out_of_descriptors_is_not_blamed_on_the_targets() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let (ta, tb) = (a.addr.to_string(), b.addr.to_string());
    // 100 open files allow 26 connections at start-up, but 60 are taken by inherited
    // descriptors, so only about 18 fit: accepts, connects to the targets and the health
    // probes (every 100 ms, the shortest interval) run out of descriptors while 30 clients are held.
    let args = ["127.0.0.1:0", &ta, &tb, "--health-interval", "100ms"];
    let fwd = Tcpfwd::start_with_fd_limit_holding(100, 60, &args);
    let clients_count = 30;
    let clients: Vec<TcpStream> = (0..clients_count).map(|_| connect(fwd.addr())).collect();
    fwd.wait_line("too many open files");
    // The shortage is tcpfwd's own: no target is marked down for it.
    let blamed = |fwd: &Tcpfwd| fwd.lines().into_iter().find(|l| l.contains(" down: "));
    assert_eq!(
        wait_until(Duration::from_secs(1), || blamed(&fwd).is_some()).then(|| blamed(&fwd)),
        None
    );
    drop(clients);
    // Each of the 30 ends with one line; only then are its descriptors free again (a client
    // that came sooner would meet the shortage still, closed without data).
    fwd.wait_lines("end=", clients_count);
    // Both targets still take turns once descriptors are free again: the last sockets close
    // just after their line, so a client may still meet the shortage (closed without data,
    // not counted); within the deadline both targets serve.
    let mut served = Vec::new();
    let greeting = |addr| {
        let mut s = connect(addr);
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte).ok().map(|_| byte[0])
    };
    let both = wait_until(PATIENCE, || {
        served.extend(greeting(fwd.addr()));
        served.contains(&b'a') && served.contains(&b'b')
    });
    assert!(both, "{:?}", String::from_utf8_lossy(&served));
    assert_eq!(blamed(&fwd), None);
}

#[test]
fn a_target_given_by_name_is_resolved_inside_a_connection_thread() {
    // Name resolution through the C library is the deepest a connection thread's stack goes.
    let backend = Backend::echo();
    let target = format!("localhost:{}", backend.addr.port());
    let fwd = Tcpfwd::start(&["127.0.0.1:0", &target, "-v"]);
    for round in 0..3 {
        let mut client = connect(fwd.addr());
        let message = pattern(20_000, round);
        assert!(echo_once(&mut client, &message) == message, "echo differs");
    }
    assert!(threads_of(fwd.pid()).is_some(), "tcpfwd died");
}

#[test]
fn each_thread_has_two_memory_mappings_at_most() {
    // std adds a signal stack (two more mappings) to every thread unless tcpfwd keeps it from
    // doing so; with two threads per connection, vm.max_map_count would cap the process near
    // 8,000 connections.
    if !std::path::Path::new("/proc/self/maps").exists() {
        return;
    }
    if skip_under_emulation(
        "/proc/PID/maps of an emulated process lists qemu's host mappings (its own thread \
         stacks, the guest space split around each guest mapping), not the guest's",
    ) {
        return;
    }
    let backend = Backend::echo();
    let target = backend.addr.to_string();
    let fwd = Tcpfwd::start(&["127.0.0.1:0", &target]);
    let maps = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let (maps_before, threads_before) = (maps(fwd.pid()), threads_of(fwd.pid()).unwrap());
    let mut clients: Vec<TcpStream> = (0..100).map(|_| connect(fwd.addr())).collect();
    for c in &mut clients {
        assert_eq!(echo_once(c, b"x"), b"x");
    }
    let threads = threads_of(fwd.pid()).unwrap() - threads_before;
    let added = maps(fwd.pid()).saturating_sub(maps_before);
    assert!(threads >= 200, "{threads} threads for 100 connections");
    // Two per thread (stack and guard page), plus a few for malloc arenas.
    assert!(
        added <= 2 * threads + 40,
        "{added} mappings for {threads} threads"
    );
}

#[cfg(target_os = "linux")]
/// Whether this test runs as root (the tests below change users and limits of a child).
fn as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")))
        .unwrap_or(false)
}

#[cfg(target_os = "linux")]
/// Whether `setpriv` and `prlimit` (util-linux) can run a child as user `nobody` (65534).
fn can_run_as_nobody() -> bool {
    as_root()
        && std::process::Command::new("prlimit")
            .args([
                "--nproc=100:100",
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
            ])
            .args(["--clear-groups", "true"])
            .status()
            .is_ok_and(|s| s.success())
}

/// Held by each test that runs processes as `nobody`: RLIMIT_NPROC counts all of the user's
/// tasks, so one test's processes would count against another's limit.
#[cfg(target_os = "linux")]
static AS_NOBODY: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(target_os = "linux")]
fn one_test_as_nobody() -> std::sync::MutexGuard<'static, ()> {
    AS_NOBODY.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(target_os = "linux")]
/// `nobody` with a process limit of 100 (`ulimit -u 100`): RLIMIT_NPROC counts threads.
const AS_NOBODY_WITH_100_TASKS: [&str; 6] = [
    "prlimit",
    "--nproc=100:100",
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
];

/// tcpfwd as `nobody` under `ulimit -u 100`, forwarding to an echo backend, while no other
/// test runs processes as nobody (the guard); `None`, saying why, where that cannot be done.
#[cfg(target_os = "linux")]
fn echo_as_nobody_with_100_tasks() -> Option<(std::sync::MutexGuard<'static, ()>, Backend, Tcpfwd)>
{
    let alone = one_test_as_nobody();
    if !can_run_as_nobody() {
        eprintln!("skipped: needs root, prlimit and setpriv to run tcpfwd as nobody");
        return None;
    }
    if skip_under_emulation("qemu's own threads count against the process limit") {
        return None;
    }
    let backend = Backend::echo();
    let target = backend.addr.to_string();
    let fwd = Tcpfwd::start_wrapped(&AS_NOBODY_WITH_100_TASKS, &["127.0.0.1:0", &target]);
    Some((alone, backend, fwd))
}

#[cfg(target_os = "linux")]
#[test]
fn a_non_root_user_under_ulimit_u_gets_the_connections_that_fit() {
    let Some((_alone, backend, fwd)) = echo_as_nobody_with_100_tasks() else {
        return;
    };
    // 100 tasks, two threads per connection, a few for the process: about 47 connections.
    let warning = fwd.wait_line("warning: the process limit (ulimit -u) of 100");
    let fit: usize = warning
        .split("--max-conns is now ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!((40..=48).contains(&fit), "{warning}");
    assert!(
        warning.contains(&format!("allows about {fit} connections")),
        "{warning}"
    );
    // All that fit are relayed at once; the rest wait in the backlog, then are served.
    let mut clients: Vec<TcpStream> = (0..fit + 10).map(|_| connect(fwd.addr())).collect();
    for c in clients.iter_mut().take(fit) {
        assert_eq!(echo_once(c, b"fits"), b"fits");
    }
    assert!(!wait_until(Duration::from_millis(300), || backend.count() > fit));
    clients.drain(..10);
    for (i, c) in clients.iter_mut().enumerate() {
        let mut back = [0; 4];
        let echoed = c.write_all(b"next").and_then(|()| c.read_exact(&mut back));
        assert!(
            echoed.is_ok() && &back == b"next",
            "client {i} of the rest: {echoed:?}\n{}",
            fwd.lines().join("\n")
        );
    }
    assert!(
        !fwd.lines().iter().any(|l| l.contains("cannot start")),
        "{}",
        fwd.lines().join("\n")
    );
}

/// Sleeping processes of user `nobody`, killed (by their pids) and reaped when dropped.
#[cfg(target_os = "linux")]
struct TasksOfNobody(Vec<std::process::Child>);

#[cfg(target_os = "linux")]
impl TasksOfNobody {
    /// `count` of them. They are started by root, whose own limit applies to them, so they
    /// take nobody past a `ulimit -u` that a process of nobody's lives under.
    fn start(count: usize) -> TasksOfNobody {
        let children = (0..count)
            .map(|_| {
                std::process::Command::new("setpriv")
                    .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                    .args(["sleep", "60"])
                    .spawn()
                    .expect("start a sleeping process as nobody")
            })
            .collect();
        TasksOfNobody(children)
    }
}

#[cfg(target_os = "linux")]
impl Drop for TasksOfNobody {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(target_os = "linux")]
#[test]
fn threads_that_cannot_start_are_logged_once_per_burst_and_serving_resumes() {
    let Some((_alone, _backend, fwd)) = echo_as_nobody_with_100_tasks() else {
        return;
    };
    let idle = threads_of(fwd.pid()).expect("tcpfwd's threads");
    let mut before = connect(fwd.addr());
    assert_eq!(echo_once(&mut before, b"before"), b"before");
    drop(before);
    // Its two threads wait as spares, then end (2 s): until then they could take the work.
    assert!(wait_until(PATIENCE, || threads_of(fwd.pid())
        .is_some_and(|t| t <= idle)));
    // Nobody past its 100 tasks: no thread of tcpfwd's can start now. Thirty clients, each
    // ended for want of a thread (the acceptor cannot recruit a replacement, the relay has
    // no second thread), in well under the 5 s a burst line is repeated after.
    let hogs = TasksOfNobody::start(100);
    let started = std::time::Instant::now();
    for i in 0..30 {
        let mut c = connect(fwd.addr());
        let _ = c.write_all(b"x");
        let mut byte = [0u8; 1];
        // An end (EOF or a reset), not the echo.
        assert!(
            !matches!(c.read(&mut byte), Ok(1)),
            "client {i} was relayed"
        );
    }
    let elapsed = started.elapsed();
    drop(hogs);
    // Threads start again: clients are relayed, and the first after the burst has been
    // quiet for 2 s ends it with a line and a count (one client every 200 ms until then).
    let again = "relay threads start again after ";
    let ended = || fwd.lines().into_iter().find(|l| l.starts_with(again));
    assert!(wait_until(PATIENCE, || {
        let mut after = connect(fwd.addr());
        assert_eq!(echo_once(&mut after, b"after"), b"after");
        wait_until(Duration::from_millis(200), || ended().is_some())
    }));
    let ended = ended().unwrap_or_default();
    assert!(
        ended.ends_with("(30 connections ended for want of one)"),
        "{ended}"
    );
    let lines = fwd.lines();
    let failing: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("cannot start"))
        .collect();
    assert!(
        !failing.is_empty(),
        "no thread failed to start:\n{}",
        lines.join("\n")
    );
    // One line per condition when it starts, and one more per 5 s while it lasts.
    let allowed = 2 * (1 + elapsed.as_secs() as usize / 5);
    assert!(
        failing.len() <= allowed,
        "{} lines in {elapsed:?}:\n{}",
        failing.len(),
        lines.join("\n")
    );
}

#[cfg(target_os = "linux")]
#[test]
fn root_is_not_capped_by_ulimit_u() {
    if !as_root()
        || std::process::Command::new("prlimit")
            .arg("-V")
            .output()
            .is_err()
    {
        eprintln!("skipped: needs root and prlimit");
        return;
    }
    // The kernel exempts root from RLIMIT_NPROC: 80 connections (160 threads) under 100.
    let backend = Backend::echo();
    let target = backend.addr.to_string();
    let fwd = Tcpfwd::start_wrapped(&["prlimit", "--nproc=100:100"], &["127.0.0.1:0", &target]);
    let mut clients: Vec<TcpStream> = (0..80).map(|_| connect(fwd.addr())).collect();
    for c in clients.iter_mut() {
        assert_eq!(echo_once(c, b"root"), b"root");
    }
    assert!(
        !fwd.lines().iter().any(|l| l.contains("process limit")),
        "{}",
        fwd.lines().join("\n")
    );
}

#[cfg(target_os = "linux")]
#[test]
fn when_no_connection_fits_start_up_fails_naming_the_limit() {
    if std::process::Command::new("prlimit")
        .arg("-V")
        .output()
        .is_err()
    {
        eprintln!("skipped: needs prlimit");
        return;
    }
    // 40 listeners take 80 descriptors (a socket and a waiting accept's each), 32 are spare:
    // 100 leave none for a connection.
    let backend = Backend::echo();
    let rules: String = (0..40)
        .map(|_| format!("127.0.0.1:0 {}\n", backend.addr))
        .collect();
    let config = temp_file("forty.conf", &rules);
    let fwd = Tcpfwd::spawn_wrapped(
        &["prlimit", "--nofile=100:100"],
        &["--config", config.to_str().unwrap()],
    );
    let (code, log) = fwd.wait_exit();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains(
            "the open-file limit (ulimit -n) of 100 leaves no room for a single connection"
        ),
        "{log}"
    );
    assert!(!log.contains("listening on"), "{log}");
}
