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
    // The rule's place of the connection logged last is given back just after its line
    // (src/serve/forward.rs): poll until the gauges show this one connection alone.
    let mut during = String::new();
    let shown = wait_until(PATIENCE, || {
        during = scrape(stats);
        metric(&during, &active) == Some(1) && metric(&during, &target_active) == Some(1)
    });
    assert!(
        shown,
        "the open connection is not the one active:\n{during}"
    );
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
    assert_eq!(ends, 14, "one series per end word:\n{after}");
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
