//! Running for a long time (SPEC §7): SIGHUP reloads `--config`, SIGTERM/SIGINT stop
//! gracefully within `--grace`, SIGUSR2 hands the listeners over to a new process, and systemd
//! socket activation. Real processes, real signals (kill(1)), loopback. Linux only: signals
//! and descriptor passing are.
#![cfg(target_os = "linux")]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use support::*;

/// A config file the test rewrites before each reload.
struct Config {
    path: PathBuf,
}

impl Config {
    fn new(text: &str) -> Config {
        Config {
            path: temp_file("lifecycle.conf", text),
        }
    }

    /// Replaces the file whole (written aside, then renamed), so a reload never reads half.
    fn write(&self, text: &str) {
        let aside = self.path.with_extension("new");
        std::fs::write(&aside, text).expect("write config");
        std::fs::rename(&aside, &self.path).expect("replace config");
    }

    fn path(&self) -> &str {
        self.path.to_str().expect("UTF-8 path")
    }
}

/// A loopback address with a port that was free a moment ago.
fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// One client connection of the load: which backend greeted it, or what went wrong; and the
/// config generation in force before the connect and after the answer.
struct Try {
    before: usize,
    after: usize,
    result: Result<String, String>,
}

/// Clients opening and using connections one after another, as fast as they can: connect,
/// read the backend's one-letter greeting, one byte echoed, close. Bounded in count and time.
struct Load {
    done: Arc<AtomicUsize>,
    results: mpsc::Receiver<Vec<Try>>,
}

impl Load {
    fn start(addr: SocketAddr, total: usize, generation: Arc<AtomicUsize>) -> Load {
        let done = Arc::new(AtomicUsize::new(0));
        let (send, results) = mpsc::channel();
        let count = Arc::clone(&done);
        spawn(move || {
            let started = Instant::now();
            let mut tries = Vec::new();
            while tries.len() < total && started.elapsed() < Duration::from_secs(120) {
                let before = generation.load(Ordering::SeqCst);
                let result = use_once(addr);
                let after = generation.load(Ordering::SeqCst);
                tries.push(Try {
                    before,
                    after,
                    result,
                });
                count.fetch_add(1, Ordering::SeqCst);
            }
            let _ = send.send(tries);
        });
        Load { done, results }
    }

    /// Waits until `n` connections were tried.
    fn wait_for(&self, n: usize) {
        let reached = wait_until(PATIENCE * 3, || self.done.load(Ordering::SeqCst) >= n);
        assert!(reached, "the client loop is stuck before {n} connections");
    }

    fn finish(self) -> Vec<Try> {
        self.results
            .recv_timeout(Duration::from_secs(180))
            .expect("the client loop ends")
    }
}

/// One connection: the greeting, one byte echoed back, a clean close.
fn use_once(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greeting = [0u8; 1];
    s.read_exact(&mut greeting)
        .map_err(|e| format!("greeting: {e}"))?;
    s.write_all(b"x").map_err(|e| format!("write: {e}"))?;
    let mut echo = [0u8; 1];
    s.read_exact(&mut echo).map_err(|e| format!("echo: {e}"))?;
    if &echo != b"x" {
        return Err(format!("echoed {echo:?}"));
    }
    Ok(String::from_utf8_lossy(&greeting).into_owned())
}

fn failures(tries: &[Try]) -> Vec<&String> {
    tries
        .iter()
        .filter_map(|t| t.result.as_ref().err())
        .collect()
}

/// A process that took over from one the test started, stopped by its pid (SIGKILL) when
/// dropped, in case the test ends early.
struct TakenOver(u32);

impl Drop for TakenOver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-s", "KILL", &self.0.to_string()])
            .status();
    }
}

/// The pid in a `hand-over: process PID serves now` line.
fn new_pid(line: &str) -> u32 {
    line.split("process ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

/// Whether a connect to `addr` is refused right now. A blocking connect (on loopback it is
/// answered at once): qemu before 8.0 does not translate the SO_ERROR that a connect with a
/// timeout reads, so under it a refusal would not read as one.
fn refused(addr: SocketAddr) -> bool {
    matches!(
        TcpStream::connect(addr),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused
    )
}

#[test]
fn sighup_without_config_lives_on_and_says_so() {
    let echo = Backend::echo();
    let fwd = Tcpfwd::start(&["127.0.0.1:0", &echo.addr.to_string()]);
    signal(fwd.pid(), "HUP");
    fwd.wait_line("reload: nothing to reload without --config");
    echo_through(fwd.addr(), 1000);
}

#[test]
fn twenty_reloads_under_load_refuse_nothing_and_route_by_the_config_in_force() {
    let letters = ["a", "b", "c", "d"];
    let backends: Vec<Backend> = letters.iter().map(|l| Backend::named(l)).collect();
    let listen = free_addr();
    let text = |generation: usize| format!("{listen} {}\n", backends[generation % 4].addr);
    let config = Config::new(&text(0));
    // -q: the 3,000 clean ends are not logged, the reloads still are.
    let fwd = Tcpfwd::spawn(&["-q", "--config", config.path()]);
    assert!(wait_until(PATIENCE, || TcpStream::connect(listen).is_ok()));
    let generation = Arc::new(AtomicUsize::new(0));
    let load = Load::start(listen, 3000, Arc::clone(&generation));
    let mut took = Vec::new();
    for g in 1..=20 {
        load.wait_for(g * 140);
        config.write(&text(g));
        let sent = Instant::now();
        signal(fwd.pid(), "HUP");
        let line = fwd.wait_lines("reloaded ", g).pop().unwrap();
        took.push(sent.elapsed());
        generation.store(g, Ordering::SeqCst);
        assert!(
            line.ends_with(": 1 rules (0 added, 0 removed, 1 changed)"),
            "{line}"
        );
    }
    let tries = load.finish();
    assert_eq!(tries.len(), 3000);
    assert_eq!(
        failures(&tries),
        Vec::<&String>::new(),
        "failed connections"
    );
    for t in &tries {
        let Ok(letter) = &t.result else { continue };
        // In force at the accept: the config before the connect, or a later one (the
        // generation is stored after the `reloaded` line, so one more may already apply).
        let allowed: Vec<&str> = (t.before..=(t.after + 1).min(20))
            .map(|g| letters[g % 4])
            .collect();
        assert!(
            allowed.contains(&letter.as_str()),
            "served by {letter}, config generations {}..={}",
            t.before,
            t.after
        );
    }
    for letter in letters {
        let served = tries
            .iter()
            .filter(|t| t.result.as_deref() == Ok(letter))
            .count();
        assert!(served > 0, "backend {letter} never served");
    }
    took.sort();
    eprintln!(
        "reload, signal to log line: median {:?}",
        took[took.len() / 2]
    );
}

/// FNV-1a, 64 bits: enough to tell a byte-exact transfer from any other.
fn fnv(hash: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *hash ^= u64::from(b);
        *hash = hash.wrapping_mul(0x100_0000_01b3);
    }
}

#[test]
fn transfer_in_flight_survives_a_reload_removing_its_rule_and_target() {
    const SIZE: usize = 64 << 20;
    let echo = Backend::echo();
    let other = Backend::named("b");
    let (gone, kept) = (free_addr(), free_addr());
    let config = Config::new(&format!("{gone} {}\n{kept} {}\n", echo.addr, other.addr));
    let fwd = Tcpfwd::start(&["--config", config.path()]);
    let mut client = connect(gone);
    let mut writer = client.try_clone().unwrap();
    let data = Arc::new(pattern(1 << 20, 7));
    let sent_hash = {
        let mut h = 0xcbf2_9ce4_8422_2325;
        for _ in 0..SIZE / data.len() {
            fnv(&mut h, &data);
        }
        h
    };
    let chunk = Arc::clone(&data);
    let writing = thread::spawn(move || {
        for _ in 0..SIZE / chunk.len() {
            writer
                .write_all(&chunk)
                .expect("write through the removed rule");
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let received = Arc::new(AtomicUsize::new(0));
    let progress = Arc::clone(&received);
    let reading = thread::spawn(move || {
        let mut h = 0xcbf2_9ce4_8422_2325;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match client.read(&mut buf) {
                Ok(0) => return h,
                Ok(n) => {
                    fnv(&mut h, &buf[..n]);
                    progress.fetch_add(n, Ordering::SeqCst);
                }
                Err(e) => panic!(
                    "transfer cut after {} bytes: {e}",
                    progress.load(Ordering::SeqCst)
                ),
            }
        }
    });
    assert!(wait_until(PATIENCE, || received.load(Ordering::SeqCst) >= 4 << 20));
    config.write(&format!("{kept} {}\n", other.addr));
    signal(fwd.pid(), "HUP");
    let line = fwd.wait_line("reloaded ");
    assert!(
        line.ends_with(": 1 rules (0 added, 1 removed, 0 changed)"),
        "{line}"
    );
    assert!(
        received.load(Ordering::SeqCst) < SIZE,
        "the transfer ended before the reload: the test proves nothing"
    );
    assert!(refused(gone), "the removed rule still accepts");
    assert_eq!(served_by(kept), "b");
    writing.join().unwrap();
    let got = reading.join().unwrap();
    assert_eq!(received.load(Ordering::SeqCst), SIZE);
    assert_eq!(got, sent_hash, "the bytes differ");
    fwd.wait_line("end=client-eof");
}

#[test]
fn a_bad_file_or_a_taken_port_at_reload_changes_nothing() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let listen = free_addr();
    let stats = "--stats 127.0.0.1:0\n";
    let config = Config::new(&format!("{stats}{listen} {}\n", a.addr));
    let fwd = Tcpfwd::start(&["--config", config.path()]);
    let metrics = fwd.stats_addr();
    let reloads = |result: &str| {
        let text = http_get(metrics, "/metrics").body;
        metric(
            &text,
            &format!("tcpfwd_reloads_total{{result=\"{result}\"}}"),
        )
    };
    assert_eq!(reloads("failed"), Some(0));

    config.write(&format!("{stats}{listen} {} --foo\n", b.addr));
    signal(fwd.pid(), "HUP");
    let line = fwd.wait_line("reload failed: ");
    // The file's name (shortened when long) and the line.
    assert!(line.starts_with("reload failed: "), "{line}");
    assert!(line.ends_with(":2: unknown option --foo"), "{line}");
    assert_eq!(served_by(listen), "a");
    assert_eq!(reloads("failed"), Some(1));

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    config.write(&format!(
        "{stats}{listen} {}\n{taken_addr} {}\n",
        b.addr, b.addr
    ));
    signal(fwd.pid(), "HUP");
    let line = fwd.wait_lines("reload failed: ", 2).pop().unwrap();
    assert!(
        line.contains(&format!("cannot listen on {taken_addr}: address in use")),
        "{line}"
    );
    assert_eq!(served_by(listen), "a", "a failed reload changed a rule");
    assert_eq!(reloads("failed"), Some(2));
    assert_eq!(reloads("ok"), Some(0));

    config.write(&format!("{stats}{listen} {}\n", b.addr));
    signal(fwd.pid(), "HUP");
    fwd.wait_line("reloaded ");
    assert_eq!(served_by(listen), "b");
    assert_eq!(reloads("ok"), Some(1));
}

#[test]
fn a_reload_moves_then_removes_the_metrics_listener() {
    let a = Backend::named("a");
    let listen = free_addr();
    let (first, second) = (free_addr(), free_addr());
    let config = Config::new(&format!("--stats {first}\n{listen} {}\n", a.addr));
    let fwd = Tcpfwd::start(&["--config", config.path()]);
    assert_eq!(fwd.stats_addr(), first);
    assert!(http_get(first, "/metrics").status.contains("200"));

    // Moved: the new address answers (and counts the reload), the old one is closed.
    config.write(&format!("--stats {second}\n{listen} {}\n", a.addr));
    signal(fwd.pid(), "HUP");
    fwd.wait_line("reloaded ");
    let text = http_get(second, "/metrics").body;
    assert_eq!(
        metric(&text, "tcpfwd_reloads_total{result=\"ok\"}"),
        Some(1)
    );
    assert!(
        wait_until(PATIENCE, || refused(first)),
        "{first} still open"
    );
    assert_eq!(served_by(listen), "a");

    // Removed: nothing answers metrics; the rule serves on.
    config.write(&format!("{listen} {}\n", a.addr));
    signal(fwd.pid(), "HUP");
    fwd.wait_lines("reloaded ", 2);
    assert!(
        wait_until(PATIENCE, || refused(second)),
        "{second} still open"
    );
    assert_eq!(served_by(listen), "a");
}

#[test]
fn a_reload_that_cannot_open_the_new_metrics_address_changes_nothing() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let (listen, first) = (free_addr(), free_addr());
    let config = Config::new(&format!("--stats {first}\n{listen} {}\n", a.addr));
    let fwd = Tcpfwd::start(&["--config", config.path()]);
    assert_eq!(fwd.stats_addr(), first);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    config.write(&format!("--stats {taken_addr}\n{listen} {}\n", b.addr));
    signal(fwd.pid(), "HUP");
    let line = fwd.wait_line("reload failed: ");
    assert!(
        line.contains(&format!("{taken_addr}: address in use")),
        "{line}"
    );
    // Nothing changed: the rule keeps its target, the metrics stay where they were.
    assert_eq!(served_by(listen), "a");
    let text = http_get(first, "/metrics").body;
    assert_eq!(
        metric(&text, "tcpfwd_reloads_total{result=\"failed\"}"),
        Some(1)
    );
}

/// What `-v` logs when a connection fails over.
const FAILED_OVER: &str = "client 127.0.0.1: failed over";

/// A rule whose first target is dead and whose second is `a` (`--balance first`): a
/// connection fails over, a step only `-v` logs.
struct FailingOver {
    a: Backend,
    listen: SocketAddr,
    /// The rule's line without its end: listen address, targets, `options`.
    rule: String,
}

fn failing_over(options: &str) -> FailingOver {
    let a = Backend::named("a");
    let (listen, dead) = (free_addr(), closed_port());
    let rule = format!("{listen} {dead} {} --balance first {options}", a.addr);
    FailingOver { a, listen, rule }
}

#[test]
fn a_reload_sets_the_verbosity_the_file_asks_for() {
    let FailingOver {
        a: _a,
        listen,
        rule,
        ..
    } = failing_over("--down-after 9");
    let rule = format!("{rule}\n");
    let config = Config::new(&rule);
    let fwd = Tcpfwd::start(&["--config", config.path()]);
    let step = FAILED_OVER;
    assert_eq!(served_by(listen), "a");
    fwd.wait_lines("end=", 1);
    assert!(
        !fwd.lines().iter().any(|l| l.starts_with(step)),
        "-v detail without -v"
    );

    config.write(&format!("-v\n{rule}"));
    signal(fwd.pid(), "HUP");
    fwd.wait_line("reloaded ");
    assert_eq!(served_by(listen), "a");
    fwd.wait_line(step);
    fwd.wait_lines("end=", 2);

    // -q: clean ends go unlogged. A stop writes every line before the process exits, so
    // after it the log is complete.
    config.write(&format!("-q\n{rule}"));
    signal(fwd.pid(), "HUP");
    fwd.wait_lines("reloaded ", 2);
    assert_eq!(served_by(listen), "a");
    signal(fwd.pid(), "TERM");
    let (code, log) = fwd.wait_exit();
    assert_eq!(code, Some(0), "{log}");
    let after_q = log.split("reloaded ").nth(2).unwrap_or_default();
    assert!(
        !after_q.contains("end="),
        "a clean end logged under -q:\n{log}"
    );
    assert!(!after_q.contains(step), "-v detail under -q:\n{log}");
}

#[test]
fn a_reload_keeps_the_health_of_a_target_still_in_its_rule() {
    // A dead first target is marked down by one failed connect (for a minute); a reload that
    // changes the rule but keeps the target's text keeps it down: the next client is not sent
    // to it again.
    let FailingOver {
        a: _a,
        listen,
        rule,
        ..
    } = failing_over("--down-after 1 --down-for 1m");
    let config = Config::new(&format!("-v\n{rule}\n"));
    let fwd = Tcpfwd::start(&["--config", config.path()]);
    assert_eq!(served_by(listen), "a");
    fwd.wait_line(FAILED_OVER);
    config.write(&format!("-v\n{rule} --idle-timeout 5m\n"));
    signal(fwd.pid(), "HUP");
    let line = fwd.wait_line("reloaded ");
    assert!(line.ends_with("(0 added, 0 removed, 1 changed)"), "{line}");
    assert_eq!(served_by(listen), "a");
    // A down target is left out of the plan: the connection's line comes with no attempt.
    fwd.wait_lines("end=", 2);
    let log = fwd.lines();
    let failovers = log
        .iter()
        .filter(|l| l.contains(": failed over to "))
        .count();
    assert_eq!(
        failovers, 1,
        "the dead target was tried again after the reload:\n{log:#?}"
    );
}

/// A ping through `s` (an echo backend behind it).
fn ping(s: &mut TcpStream) {
    s.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
}

/// Ends a client connection cleanly: EOF both ways.
fn finish(mut s: TcpStream) {
    s.shutdown(Shutdown::Write).unwrap();
    assert!(read_all(&mut s).is_empty());
}

#[test]
fn sigterm_refuses_new_clients_at_once_and_exits_0_when_the_last_one_ends() {
    let echo = Backend::echo();
    let mut fwd = Tcpfwd::start(&["127.0.0.1:0", &echo.addr.to_string()]);
    let addr = fwd.addr();
    let (mut first, mut second) = (connect(addr), connect(addr));
    ping(&mut first);
    ping(&mut second);
    signal(fwd.pid(), "TERM");
    fwd.wait_line("stopping: 2 connections in flight, waiting up to 30s");
    assert!(refused(addr), "a new client was not refused at once");
    ping(&mut first);
    ping(&mut second);
    finish(first);
    fwd.wait_line("end=client-eof");
    assert!(
        !fwd.has_exited(),
        "exited with a connection still in flight"
    );
    ping(&mut second);
    finish(second);
    let (code, log) = fwd.wait_exit();
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("end=shutdown"), "{log}");
}

#[test]
fn sigint_stops_gracefully_even_when_inherited_ignored() {
    let echo = Backend::echo();
    // A background job of a script: SIGINT ignored (`trap '' INT`, kept across exec).
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg("trap '' INT; exec \"$@\"")
        .arg("tcpfwd")
        .args(runner())
        .arg(env!("CARGO_BIN_EXE_tcpfwd"))
        .args(["127.0.0.1:0", &echo.addr.to_string()]);
    let fwd = Tcpfwd::from_command(command);
    fwd.wait_line("listening on ");
    signal(fwd.pid(), "INT");
    fwd.wait_line("stopping: 0 connections in flight");
    let (code, log) = fwd.wait_exit();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn grace_runs_out_a_stuck_connection_is_reset_on_both_sides() {
    let (told, heard) = mpsc::channel();
    let backend = Backend::start(move |mut s| {
        let mut buf = [0u8; 64];
        let end = loop {
            match s.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(e) => break Err(e.kind()),
            }
        };
        let _ = told.send(end);
    });
    let fwd = Tcpfwd::start(&["--grace", "1s", "127.0.0.1:0", &backend.addr.to_string()]);
    let mut client = connect(fwd.addr());
    client.write_all(b"x").unwrap();
    assert!(wait_until(PATIENCE, || backend.count() == 1));
    let sent = Instant::now();
    signal(fwd.pid(), "TERM");
    fwd.wait_line("stopping: 1 connections in flight, waiting up to 1s");
    let mut buf = [0u8; 16];
    let got = client.read(&mut buf);
    let cut_after = sent.elapsed();
    assert!(
        matches!(&got, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "the client saw {got:?}, not a reset"
    );
    assert!(
        cut_after >= Duration::from_millis(900) && cut_after < Duration::from_secs(5),
        "cut after {cut_after:?}"
    );
    let backend_end = heard.recv_timeout(PATIENCE).expect("the backend's end");
    assert_eq!(backend_end, Err(ErrorKind::ConnectionReset));
    let (code, log) = fwd.wait_exit();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("end=shutdown"), "{log}");
}

#[test]
fn a_second_sigterm_stops_at_once() {
    let echo = Backend::echo();
    let fwd = Tcpfwd::start(&["127.0.0.1:0", &echo.addr.to_string()]);
    let mut client = connect(fwd.addr());
    ping(&mut client);
    signal(fwd.pid(), "TERM");
    fwd.wait_line("waiting up to 30s");
    let sent = Instant::now();
    signal(fwd.pid(), "TERM");
    let (code, log) = fwd.wait_exit();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        sent.elapsed() < Duration::from_secs(4),
        "{:?}",
        sent.elapsed()
    );
    assert!(log.contains("end=shutdown"), "{log}");
}

#[test]
fn a_stop_writes_every_line_before_it_exits() {
    // 200 connections cut by a second SIGTERM: each one's line is written before the
    // process exits (a graceful stop waits for connections in flight, and a connection is in
    // flight until its line is out).
    const HELD: usize = 200;
    let echo = Backend::echo();
    let fwd = Tcpfwd::start(&["127.0.0.1:0", &echo.addr.to_string()]);
    let mut clients: Vec<TcpStream> = (0..HELD).map(|_| connect(fwd.addr())).collect();
    for client in &mut clients {
        ping(client);
    }
    signal(fwd.pid(), "TERM");
    fwd.wait_line("waiting up to 30s");
    signal(fwd.pid(), "TERM");
    let (code, log) = fwd.wait_exit();
    assert_eq!(code, Some(0), "{log}");
    let cut = log.lines().filter(|l| l.contains("end=shutdown")).count();
    assert_eq!(cut, HELD, "{log}");
}

#[test]
fn sigusr2_hands_over_under_load_without_a_failed_connection() {
    if skip_under_emulation("the new process is started as this program, not through qemu") {
        return;
    }
    let a = Backend::named("a");
    let listen = free_addr();
    let config = Config::new(&format!("--stats 127.0.0.1:0\n{listen} {}\n", a.addr));
    let fwd = Tcpfwd::start(&["--config", config.path()]);
    let old = fwd.pid();
    let stats = fwd.stats_addr();
    let load = Load::start(listen, 3000, Arc::new(AtomicUsize::new(0)));
    load.wait_for(300);
    signal(old, "USR2");
    let line = fwd.wait_line("hand-over: process ");
    let new = new_pid(&line);
    let _new_process = TakenOver(new);
    assert_ne!(new, old);
    load.wait_for(600);
    let (code, log) = fwd.wait_exit();
    assert_eq!(code, Some(0), "{log}");
    let tries = load.finish();
    assert_eq!(
        failures(&tries),
        Vec::<&String>::new(),
        "failed connections"
    );
    assert!(tries.len() > 600, "{} connections", tries.len());
    // The new process serves the same sockets, the metrics one too.
    assert_eq!(served_by(listen), "a");
    assert!(http_get(stats, "/metrics").status.contains("200"));
    signal(new, "TERM");
    assert!(wait_until(PATIENCE, || refused(listen)));
}

#[test]
fn a_hand_over_to_a_process_that_fails_keeps_the_old_one_serving() {
    if skip_under_emulation("the new process is started as this program, not through qemu") {
        return;
    }
    let a = Backend::named("a");
    let listen = free_addr();
    let config = Config::new(&format!("{listen} {}\n", a.addr));
    let mut fwd = Tcpfwd::start(&["--config", config.path()]);
    config.write(&format!("{listen} {} --foo\n", a.addr));
    signal(fwd.pid(), "USR2");
    let line = fwd.wait_line("hand-over failed: ");
    assert!(
        line.contains("exited before it was ready (exit status 2)"),
        "{line}"
    );
    assert!(!fwd.has_exited());
    assert_eq!(served_by(listen), "a");
}

/// Copies the tcpfwd under test to `path`, and waits until it runs: while another test
/// thread forks, the copy's write descriptor lives on in that child until it execs, and
/// running the copy meanwhile fails with ETXTBSY ("text file busy").
fn copy_program(path: &std::path::Path) {
    std::fs::copy(env!("CARGO_BIN_EXE_tcpfwd"), path).unwrap();
    let runs = wait_until(PATIENCE, || {
        !matches!(
            Command::new(path).arg("--version").output(),
            Err(e) if e.kind() == ErrorKind::ExecutableFileBusy
        )
    });
    assert!(runs, "{} never stopped being busy", path.display());
}

#[test]
fn a_hand_over_starts_the_binary_that_replaced_the_running_one() {
    if skip_under_emulation("the new process is started as this program, not through qemu") {
        return;
    }
    // An upgrade: the program file is replaced (a new file renamed over it) while it runs.
    let dir = temp_file("upgrade-dir", "");
    std::fs::remove_file(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    let program = dir.join("tcpfwd");
    copy_program(&program);
    let a = Backend::named("a");
    let listen = free_addr();
    let mut command = Command::new(&program);
    command.args([listen.to_string(), a.addr.to_string()]);
    let fwd = Tcpfwd::from_command(command);
    fwd.wait_line("listening on ");
    let next = dir.join("tcpfwd.new");
    copy_program(&next);
    std::fs::rename(&next, &program).unwrap();
    signal(fwd.pid(), "USR2");
    let new = new_pid(&fwd.wait_line("hand-over: process "));
    let _new_process = TakenOver(new);
    let (code, log) = fwd.wait_exit();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(served_by(listen), "a");
    let exe = std::fs::read_link(format!("/proc/{new}/exe")).unwrap();
    assert_eq!(exe, program, "the new process runs the new file");
}

/// The socket-activation launcher: not a test of its own. Started by
/// [`socket_activation_uses_inherited_sockets`] as this test program with
/// `LIFECYCLE_LAUNCH=ADDR,ADDR…␟PROGRAM␟ARG␟…`, it binds the addresses, puts the sockets at
/// 3, 4, … and becomes the program (exec: the same pid) with LISTEN_PID and LISTEN_FDS set,
/// as systemd does. `stdin` instead of the addresses: the one socket is its standard input.
#[test]
fn socket_activation_launcher() {
    use std::os::unix::process::CommandExt;
    let Ok(spec) = std::env::var("LIFECYCLE_LAUNCH") else {
        return;
    };
    let mut words = spec.split('\u{1f}');
    let addrs: Vec<&str> = words.next().unwrap().split(',').collect();
    let program = words.next().unwrap();
    let count = if addrs == ["stdin"] {
        place_fd(&std::io::stdin(), 3).expect("launcher: dup2");
        1
    } else {
        let sockets: Vec<TcpListener> = addrs
            .iter()
            .map(|a| TcpListener::bind(a).expect("launcher: bind"))
            .collect();
        for (i, socket) in sockets.iter().enumerate() {
            place_fd(socket, 3 + i as i32).expect("launcher: dup2");
        }
        // Kept open until the exec, which inherits the copies at 3, 4, …
        std::mem::forget(sockets);
        addrs.len()
    };
    let error = Command::new(program)
        .args(words)
        .env("LISTEN_PID", std::process::id().to_string())
        .env("LISTEN_FDS", count.to_string())
        .env("LISTEN_FDNAMES", "web:spare")
        .env_remove("LIFECYCLE_LAUNCH")
        .exec();
    panic!("launcher: exec {program}: {error}");
}

/// tcpfwd `args`, started by [`socket_activation_launcher`] with sockets bound at `addrs`
/// (comma-separated) as 3, 4, …
fn launched(addrs: &str, args: &[&str]) -> Tcpfwd {
    let mut spec = vec![addrs, env!("CARGO_BIN_EXE_tcpfwd")];
    spec.extend_from_slice(args);
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "socket_activation_launcher", "--nocapture", "-q"])
        .env("LIFECYCLE_LAUNCH", spec.join("\u{1f}"));
    Tcpfwd::from_command(command)
}

#[test]
fn socket_activation_uses_inherited_sockets() {
    if skip_under_emulation("the launcher execs tcpfwd directly") {
        return;
    }
    let a = Backend::named("a");
    let (web, spare) = (free_addr(), free_addr());
    let fwd = launched(
        &format!("{web},{spare}"),
        &[&web.to_string(), &a.addr.to_string()],
    );
    fwd.wait_line(&format!("listening on {web} (rule {web})"));
    fwd.wait_line(&format!(
        "inherited socket 4 on {spare} matches no rule: closed"
    ));
    assert_eq!(served_by(web), "a");
    assert!(wait_until(PATIENCE, || refused(spare)));
    // A hand-over keeps the inherited socket; the variables were removed from the
    // environment, so the new process (which inherits it) does not see them.
    signal(fwd.pid(), "USR2");
    let line = fwd.wait_line("hand-over: process ");
    let new = new_pid(&line);
    let _new_process = TakenOver(new);
    let (code, log) = fwd.wait_exit();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(served_by(web), "a");
    let environ = std::fs::read(format!("/proc/{new}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    for name in ["LISTEN_PID=", "LISTEN_FDS=", "LISTEN_FDNAMES="] {
        assert!(!environ.contains(name), "{name} left in the environment");
    }
}

#[test]
fn a_reload_keeps_an_inherited_socket() {
    if skip_under_emulation("the launcher execs tcpfwd directly") {
        return;
    }
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let web = free_addr();
    let config = Config::new(&format!("{web} {}\n", a.addr));
    let fwd = launched(&web.to_string(), &["--config", config.path()]);
    fwd.wait_line(&format!("listening on {web} (rule {web})"));
    assert_eq!(served_by(web), "a");
    let socket = || std::fs::read_link(format!("/proc/{}/fd/3", fwd.pid())).ok();
    let before = socket().expect("the inherited socket at 3");
    // A changed target: the rule is kept, so is its socket (a bind of its own would fail:
    // the inherited socket holds the port).
    config.write(&format!("{web} {}\n", b.addr));
    signal(fwd.pid(), "HUP");
    let line = fwd.wait_line("reloaded ");
    assert!(line.ends_with("(0 added, 0 removed, 1 changed)"), "{line}");
    assert_eq!(served_by(web), "b");
    assert_eq!(socket(), Some(before), "the inherited socket was replaced");
}

#[test]
fn a_client_queued_before_tcpfwd_started_still_has_its_fin_timeout() {
    if skip_under_emulation("the launcher execs tcpfwd directly") {
        return;
    }
    // The client's handshake completes before tcpfwd exists, so its socket inherits nothing
    // tcpfwd will set on the listener: the relay must give it its timeouts itself. Once the
    // target has half-closed, only the client's read timeout can end the silent client.
    let target = Backend::start(|mut s| {
        s.write_all(b"bye").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let _ = s.read_to_end(&mut Vec::new());
    });
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let web = socket.local_addr().unwrap();
    let mut early = connect(web);
    let spec = [
        "stdin".to_string(),
        env!("CARGO_BIN_EXE_tcpfwd").to_string(),
        web.to_string(),
        target.addr.to_string(),
        "--fin-timeout".into(),
        "1s".into(),
    ]
    .join("\u{1f}");
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "socket_activation_launcher", "--nocapture", "-q"])
        .env("LIFECYCLE_LAUNCH", spec);
    let stdin = std::process::Stdio::from(std::os::fd::OwnedFd::from(socket));
    let fwd = Tcpfwd::with_stdin(command, stdin);
    assert_eq!(read_all(&mut early), b"bye");
    let line = fwd.wait_line(&format!("client={}", early.local_addr().unwrap()));
    assert!(line.contains("end=fin-timeout"), "{line}");
}

/// Not a check but a measurement (README "Reload, stop, hand-over"): how long a reload of a
/// 1,000-rule file takes, from the signal (kill(1) included) to the `reloaded` line, when
/// nothing changed, when every rule's target changed, and when every rule was replaced by
/// one on another port. `cargo test --release --test lifecycle -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_reload_of_1000_rules() {
    // Ports below Linux's ephemeral range, so no outgoing connection holds one.
    let text = |base: u16, target: u16| -> String {
        (0..1000)
            .map(|i| format!("127.0.0.1:{} 127.0.0.1:{target}\n", base + i))
            .collect()
    };
    let config = Config::new(&text(21000, 9));
    let fwd = Tcpfwd::start(&["--config", config.path()]);
    fwd.wait_lines("listening on ", 1000);
    let mut reloads = 0;
    let mut hup = |what: &str, times: &mut Vec<Duration>| {
        reloads += 1;
        let sent = Instant::now();
        signal(fwd.pid(), "HUP");
        let line = fwd.wait_lines("reloaded ", reloads).pop().unwrap();
        times.push(sent.elapsed());
        assert!(line.contains(what), "{line}");
    };
    let (mut same, mut changed, mut replaced) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..7u16 {
        let base = if round % 2 == 0 { 21000 } else { 23000 };
        hup("(0 added, 0 removed, 0 changed)", &mut same);
        config.write(&text(base, 10 + round));
        hup("(0 added, 0 removed, 1000 changed)", &mut changed);
        config.write(&text(if base == 21000 { 23000 } else { 21000 }, 10 + round));
        hup("(1000 added, 1000 removed, 0 changed)", &mut replaced);
    }
    for (what, mut times) in [
        ("nothing changed", same),
        ("every target changed", changed),
        ("every rule replaced", replaced),
    ] {
        times.sort();
        eprintln!(
            "reload of 1,000 rules, {what}: median {:?}, min {:?}",
            times[times.len() / 2],
            times[0]
        );
    }
}
