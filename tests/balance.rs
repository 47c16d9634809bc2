//! Load balancing and failover, black-box: the real binary in front of several backends
//! on loopback, each telling who it is with a one-letter greeting.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use support::*;

/// Starts tcpfwd on 127.0.0.1 in front of `targets` (written as on the command line).
fn balance(targets: &[String], extra: &[&str]) -> Tcpfwd {
    let mut args = vec!["127.0.0.1:0"];
    args.extend(targets.iter().map(String::as_str));
    args.extend_from_slice(extra);
    Tcpfwd::start(&args)
}

fn written(backends: &[&Backend]) -> Vec<String> {
    backends.iter().map(|b| b.addr.to_string()).collect()
}

/// Who served each of `n` connections made one after the other.
fn tally(addr: SocketAddr, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        *counts.entry(served_by(addr)).or_insert(0) += 1;
    }
    counts
}

fn count(counts: &HashMap<String, usize>, name: &str) -> usize {
    counts.get(name).copied().unwrap_or(0)
}

/// Log lines containing every one of `needles`.
fn lines_with(fwd: &Tcpfwd, needles: &[&str]) -> usize {
    fwd.lines()
        .iter()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

#[test]
fn round_robin_gives_three_targets_ten_each_of_thirty() {
    let (a, b, c) = (
        Backend::named("a"),
        Backend::named("b"),
        Backend::named("c"),
    );
    let fwd = balance(&written(&[&a, &b, &c]), &[]);
    let counts = tally(fwd.addr(), 30);
    assert_eq!(
        (
            count(&counts, "a"),
            count(&counts, "b"),
            count(&counts, "c")
        ),
        (10, 10, 10),
        "{counts:?}"
    );
}

#[test]
fn weights_three_one_one_share_five_hundred_connections() {
    let (a, b, c) = (
        Backend::named("a"),
        Backend::named("b"),
        Backend::named("c"),
    );
    let targets = vec![
        format!("{},weight=3", a.addr),
        b.addr.to_string(),
        c.addr.to_string(),
    ];
    let fwd = balance(&targets, &[]);
    let counts = tally(fwd.addr(), 500);
    let within = |name: &str, expected: usize| {
        let got = count(&counts, name);
        // ±5 % of all 500 connections.
        assert!(got.abs_diff(expected) <= 25, "{name}: {got} ({counts:?})");
    };
    within("a", 300);
    within("b", 100);
    within("c", 100);
}

#[test]
fn least_conn_sends_the_next_connection_to_the_target_holding_fewest() {
    let (a, b, c) = (
        Backend::named("a"),
        Backend::named("b"),
        Backend::named("c"),
    );
    let fwd = balance(&written(&[&a, &b, &c]), &["--balance", "least-conn"]);
    let mut held: Vec<_> = (0..3).map(|_| hold(fwd.addr())).collect();
    let mut names: Vec<String> = held.iter().map(|(_, n)| n.clone()).collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c"], "one each while all are equal");
    // Free the connection on "b": it now holds the fewest.
    let Some(at) = held.iter().position(|(_, n)| n == "b") else {
        panic!("nothing held on b");
    };
    let (freed, _) = held.remove(at);
    drop(freed);
    fwd.wait_line("end=client-eof");
    let (next, name) = hold(fwd.addr());
    assert_eq!(name, "b", "b held 0, the others 1");
    held.push((next, name));
    // All hold one: three more go one to each, never two to the same.
    let more: Vec<_> = (0..3).map(|_| hold(fwd.addr())).collect();
    let mut names: Vec<String> = more.iter().map(|(_, n)| n.clone()).collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
}

#[test]
fn source_hash_keeps_a_client_on_its_target_and_moves_only_the_clients_of_a_dead_one() {
    let mut backends = [
        ("a", Some(Backend::named("a"))),
        ("b", Some(Backend::named("b"))),
        ("c", Some(Backend::named("c"))),
    ];
    let targets: Vec<String> = backends
        .iter()
        .filter_map(|(_, b)| Some(b.as_ref()?.addr.to_string()))
        .collect();
    let fwd = balance(&targets, &["--balance", "source-hash"]);
    let clients: Vec<String> = (2..12).map(|i| format!("127.0.0.{i}")).collect();
    let mut home: HashMap<String, String> = HashMap::new();
    for client in &clients {
        let first = served_from(client, fwd.addr());
        for _ in 1..20 {
            assert_eq!(served_from(client, fwd.addr()), first, "client {client}");
        }
        home.insert(client.clone(), first);
    }
    let used: std::collections::HashSet<&String> = home.values().collect();
    assert!(used.len() >= 2, "ten clients all on one target: {home:?}");

    // Stop the target with the most clients.
    let victim = ["a", "b", "c"]
        .into_iter()
        .max_by_key(|name| home.values().filter(|h| h == name).count())
        .unwrap_or("a");
    let Some(slot) = backends.iter_mut().find(|(name, _)| *name == victim) else {
        panic!("no backend {victim}");
    };
    if let Some(backend) = slot.1.take() {
        backend.stop();
    }
    for client in &clients {
        let now = served_from(client, fwd.addr());
        let again = served_from(client, fwd.addr());
        assert_eq!(now, again, "client {client} moved twice");
        if home[client] == victim {
            assert_ne!(now, victim, "client {client}");
        } else {
            assert_eq!(
                now, home[client],
                "client {client} moved though its target is up"
            );
        }
    }
}

#[test]
fn first_sends_everything_to_the_first_target_that_is_up() {
    let (a, b, c) = (
        Backend::named("a"),
        Backend::named("b"),
        Backend::named("c"),
    );
    let fwd = balance(&written(&[&a, &b, &c]), &["--balance", "first"]);
    assert_eq!(count(&tally(fwd.addr(), 10), "a"), 10);
    a.stop();
    assert_eq!(count(&tally(fwd.addr(), 5), "b"), 5);
}

#[test]
fn a_refused_target_fails_over_to_the_next_without_the_client_noticing() {
    let dead = closed_port();
    let b = Backend::named("b");
    let fwd = balance(&[dead.to_string(), b.addr.to_string()], &["-v"]);
    let mut client = connect(fwd.addr());
    client.write_all(b"ping").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut client), b"bping");
    let record = fwd.wait_line("end=");
    assert!(
        record.contains(&format!("target={} ", b.addr)) && record.contains("end=client-eof"),
        "{record}"
    );
    assert_eq!(lines_with(&fwd, &[&format!("target {dead} failed")]), 1);
    fwd.wait_line(&format!("target {dead} down: "));
    fwd.wait_line(&format!("failed over to target {}", b.addr));
}

#[test]
fn every_target_refusing_closes_the_client_without_data_quickly() {
    let (one, two) = (closed_port(), closed_port());
    let fwd = balance(&[one.to_string(), two.to_string()], &[]);
    for round in 1..=2 {
        let started = Instant::now();
        let mut client = connect(fwd.addr());
        assert!(read_all(&mut client).is_empty());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
        let records = fwd.wait_lines("end=connect-refused", round);
        assert!(
            records.iter().all(|r| r.contains("target=-")),
            "{records:?}"
        );
    }
    // The second client found both marked down and tried them anyway.
    fwd.wait_line("every target is down");
}

#[test]
fn when_every_target_is_down_the_first_one_back_serves_at_once() {
    let (one, two) = (closed_port(), closed_port());
    // Down for a minute: only failing open can reach them in this test's time.
    let fwd = balance(
        &[one.to_string(), two.to_string()],
        &["--down-for", "60s", "--balance", "first"],
    );
    let mut client = connect(fwd.addr());
    assert!(read_all(&mut client).is_empty());
    fwd.wait_line(&format!("target {two} down"));
    let _back = Backend::named_on(two, "t");
    assert_eq!(served_by(fwd.addr()), "t");
    fwd.wait_line(&format!("target {two} up"));
}

#[test]
fn backup_is_used_only_while_every_primary_is_down_and_left_after_recovery() {
    let (p, q, s) = (
        Backend::named("p"),
        Backend::named("q"),
        Backend::named("s"),
    );
    let (p_addr, s_addr) = (p.addr, s.addr);
    let targets = vec![
        p.addr.to_string(),
        q.addr.to_string(),
        format!("{},backup", s.addr),
    ];
    let fwd = balance(&targets, &["--down-for", "300ms", "-v"]);
    let counts = tally(fwd.addr(), 6);
    assert_eq!((count(&counts, "p"), count(&counts, "q")), (3, 3));

    p.stop();
    assert_eq!(count(&tally(fwd.addr(), 6), "q"), 6, "one primary left");
    assert_eq!(s.count(), 0, "backup used while a primary is up");

    q.stop();
    assert_eq!(
        count(&tally(fwd.addr(), 4), "s"),
        4,
        "every primary refuses"
    );
    fwd.wait_line(&format!("failed over to target {s_addr}"));

    let _p = Backend::named_on(p_addr, "p");
    let back = wait_until(PATIENCE, || served_by(fwd.addr()) == "p");
    assert!(back, "traffic never returned to the primary");
    let used = s.count();
    assert_eq!(count(&tally(fwd.addr(), 5), "p"), 5);
    assert_eq!(s.count(), used, "backup used after recovery");
    fwd.wait_line(&format!("target {p_addr} up"));
}

#[test]
fn down_for_skips_a_failed_target_then_retries_it() {
    let dead = closed_port();
    let b = Backend::named("b");
    let down_for = Duration::from_secs(2);
    let fwd = balance(
        &[dead.to_string(), b.addr.to_string()],
        &["--balance", "first", "--down-for", "2s", "-v"],
    );
    let failed = format!("target {dead} failed");
    let started = Instant::now();
    assert_eq!(count(&tally(fwd.addr(), 5), "b"), 5);
    let quick = started.elapsed() < down_for;
    if quick {
        // Tried once, then skipped while down.
        assert_eq!(lines_with(&fwd, &[&failed]), 1);
    }
    let _a = Backend::named_on(dead, "a");
    let back = wait_until(PATIENCE, || served_by(fwd.addr()) == "a");
    assert!(back, "the target was never retried");
    assert!(
        started.elapsed() >= down_for,
        "retried after {:?}",
        started.elapsed()
    );
    if quick {
        assert_eq!(lines_with(&fwd, &[&failed]), 1, "retried while down");
    }
    assert_eq!(lines_with(&fwd, &[&format!("target {dead} down")]), 1);
    fwd.wait_line(&format!("target {dead} up"));
}

#[test]
fn active_health_brings_a_target_back_once_it_listens_again() {
    if skip_if_socket_errors_untranslated() {
        return;
    }
    let dead = closed_port();
    let b = Backend::named("b");
    let fwd = balance(
        &[dead.to_string(), b.addr.to_string()],
        &["--balance", "first", "--health-interval", "100ms", "-v"],
    );
    fwd.wait_line(&format!("target {dead} down: connection refused"));
    assert_eq!(count(&tally(fwd.addr(), 3), "b"), 3);
    assert_eq!(
        lines_with(&fwd, &[&format!("target {dead} failed")]),
        0,
        "clients tried a target the probes found down"
    );
    let _a = Backend::named_on(dead, "a");
    fwd.wait_line(&format!("target {dead} up"));
    assert_eq!(served_by(fwd.addr()), "a");
    // Each change logged once, however many probe rounds saw it.
    assert_eq!(lines_with(&fwd, &[&format!("target {dead} down")]), 1);
    assert_eq!(lines_with(&fwd, &[&format!("target {dead} up")]), 1);
}

#[test]
fn a_connect_timeout_fails_over_within_the_budget() {
    let (stuck, _queue) = full_backlog();
    let stuck_addr = stuck.local_addr().unwrap();
    let b = Backend::named("b");
    let fwd = balance(
        &[stuck_addr.to_string(), b.addr.to_string()],
        &["--balance", "first", "--connect-timeout", "1s", "-v"],
    );
    let started = Instant::now();
    assert_eq!(served_by(fwd.addr()), "b");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "gave up after {took:?}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    fwd.wait_line(&format!("target {stuck_addr} failed: connect timed out"));
}

#[test]
fn a_target_at_its_max_conns_is_skipped() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let targets = vec![format!("{},max-conns=1", a.addr), b.addr.to_string()];
    let fwd = balance(&targets, &["--balance", "first", "-v"]);
    let (held, name) = hold(fwd.addr());
    assert_eq!(name, "a");
    assert_eq!(served_by(fwd.addr()), "b");
    fwd.wait_line(&format!("target {} skipped: at its max-conns", a.addr));
    drop(held);
    fwd.wait_lines("end=client-eof", 2);
    assert_eq!(served_by(fwd.addr()), "a");
}

#[test]
fn every_target_full_closes_the_client_as_no_target() {
    let a = Backend::named("a");
    let fwd = balance(&[format!("{},max-conns=1", a.addr)], &[]);
    let (_held, name) = hold(fwd.addr());
    assert_eq!(name, "a");
    let mut client = connect(fwd.addr());
    assert!(read_all(&mut client).is_empty());
    fwd.wait_line("end=no-target");
}

#[test]
fn a_localhost_target_is_resolved_and_served() {
    let l = Backend::named("l");
    let target = format!("localhost:{}", l.addr.port());
    let fwd = balance(
        &[target, closed_port().to_string()],
        &["--balance", "first"],
    );
    let mut client = connect(fwd.addr());
    client.write_all(b"hi").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut client), b"lhi");
}

#[test]
fn a_name_that_does_not_resolve_is_not_fatal_and_fails_over() {
    // `.invalid` never resolves (RFC 6761).
    let b = Backend::named("b");
    let fwd = balance(
        &["nothing.invalid:80".to_string(), b.addr.to_string()],
        &["--balance", "first", "-v"],
    );
    assert_eq!(served_by(fwd.addr()), "b");
    fwd.wait_line("target nothing.invalid:80 failed: name does not resolve");
}

/// Connection rate through a rule: `threads` clients each do `per_thread` times connect,
/// 64-byte echo, close. Returns connections per second.
fn connection_rate(addr: SocketAddr, threads: usize, per_thread: usize) -> f64 {
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            spawn(move || {
                let message = pattern(64, t as u32 + 1);
                let mut reply = [0u8; 64];
                for _ in 0..per_thread {
                    let mut s = connect(addr);
                    s.write_all(&message).unwrap();
                    s.read_exact(&mut reply).unwrap();
                    assert_eq!(reply[..], message[..]);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    (threads * per_thread) as f64 / started.elapsed().as_secs_f64()
}

#[test]
#[ignore = "a measurement: cargo test --release --test balance -- --ignored --nocapture"]
fn connection_rate_three_targets_against_one() {
    let backends = [Backend::echo(), Backend::echo(), Backend::echo()];
    let targets: Vec<String> = backends.iter().map(|b| b.addr.to_string()).collect();
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    let (three, three_addr) = Tcpfwd::start_quiet(&targets);
    let (one, one_addr) = Tcpfwd::start_quiet(&targets[..1]);
    // Warm up both, then alternate so machine noise hits both alike.
    connection_rate(three_addr, 10, 100);
    connection_rate(one_addr, 10, 100);
    // CPU time of each tcpfwd process per connection: steadier than the rate on a shared
    // machine. Clock ticks are 10 ms on Linux.
    let cpu_us = |pid: u32, before: u64, n: usize| {
        let after = cpu_ticks(pid).unwrap_or(before);
        (after - before) as f64 * 10_000.0 / n as f64
    };
    for round in 1..=4 {
        let measure = |fwd: &Tcpfwd, addr| {
            let before = cpu_ticks(fwd.pid()).unwrap_or(0);
            let rate = connection_rate(addr, 50, 400);
            (rate, cpu_us(fwd.pid(), before, 20_000))
        };
        // Alternate which goes first: the second run of a round meets the first's TIME_WAITs.
        let ((r3, c3), (r1, c1)) = if round % 2 == 1 {
            let three = measure(&three, three_addr);
            (three, measure(&one, one_addr))
        } else {
            let one = measure(&one, one_addr);
            (measure(&three, three_addr), one)
        };
        println!(
            "round {round}: 3-target round-robin {r3:.0}/s ({c3:.0} µs CPU each), \
             1 target {r1:.0}/s ({c1:.0} µs CPU each)"
        );
    }
}
