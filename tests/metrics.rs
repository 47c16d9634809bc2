//! The `--stats` metrics endpoint, black-box: every family with its type, counters that move
//! by exactly what was sent, gauges back to 0, 404 for anything else, and a silent client
//! that does not hold up a scrape for long.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::*;

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
    // Every ended connection gave its place back before its line was written: the gauges
    // show this one connection alone, at once.
    let during = scrape(stats);
    assert_eq!(value(&during, &active), 1, "{during}");
    assert_eq!(value(&during, &target_active), 1, "{during}");
    drop(open);
    fwd.wait_lines("end=", sizes.len() + 1);
    let after = scrape(stats);
    assert_eq!(value(&after, &active), 0, "{after}");
    assert_eq!(value(&after, &target_active), 0, "{after}");
    let total: u64 = sizes.iter().map(|&n| n as u64).sum();
    let moved = |s: &str| value(&after, s) - value(&before, s);
    assert_eq!(moved(&up), total + 1);
    assert_eq!(moved(&down), total + 1);
    assert_eq!(moved(&clean), sizes.len() as u64 + 1);
    let ends = after
        .lines()
        .filter(|l| l.starts_with("tcpfwd_connections_total{"))
        .count();
    assert_eq!(ends, 14, "one series per end word:\n{after}");
}

#[test]
fn a_connection_is_out_of_the_gauges_when_its_line_is_written() {
    // Whoever reads a connection's line and then scrapes sees it counted as ended and no
    // longer active: checked right after each of 50 lines, refused ones included.
    let backend = Backend::echo();
    let target = backend.addr.to_string();
    let fwd = Tcpfwd::start(&[
        "--stats",
        "127.0.0.1:0",
        "127.0.0.1:0",
        &target,
        "--deny",
        "127.0.0.3",
    ]);
    let stats = fwd.stats_addr();
    let active = "tcpfwd_connections_active{rule=\"127.0.0.1:0\"}";
    for n in 1..=50 {
        // Every fifth from a denied address (where the OS lets a client pick 127.0.0.3).
        if n % 5 != 0 || connect_from("127.0.0.3", fwd.addr()).is_err() {
            echo_through(fwd.addr(), 100);
        }
        fwd.wait_lines("end=", n);
        let text = scrape(stats);
        assert_eq!(metric(&text, active), Some(0), "after line {n}:\n{text}");
        let ended: u64 = text
            .lines()
            .filter(|l| l.starts_with("tcpfwd_connections_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert_eq!(ended, n as u64, "after line {n}:\n{text}");
    }
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
