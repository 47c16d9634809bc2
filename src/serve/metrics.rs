//! `--stats ADDR`: Prometheus text metrics at `http://ADDR/metrics`, served by one blocking
//! thread. Every request is bounded in size and time, so a slow or silent client can hold
//! the thread for [`REQUEST_DEADLINE`] at most.

use std::fmt::{self, Write as _};
use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::addr::{HostPort, ListenAddr};
use crate::deadline::Deadline;
use crate::end::End;
use crate::log::Burst;
use crate::pool::Member;
use crate::serve::accept::{Acceptor, Listener, LoopGuard};
use crate::serve::listen::{bind_listen, ListenError};
use crate::serve::live::{Live, Reloads};
use crate::serve::state::RuleState;
use crate::sys::{Preset, TcpOptions};
use crate::wire::answer;

/// A request head must be complete this long after the accept.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// The longest request head read; a scraper sends a few hundred bytes.
pub const REQUEST_MAX: usize = 8 * 1024;

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Opens the metrics listener (a name binds the first address it resolves to).
pub fn bind_metrics(addr: &HostPort) -> Result<TcpListener, ListenError> {
    let options = TcpOptions::default();
    let listen = ListenAddr::Host(addr.clone());
    let (mut sockets, _) = bind_listen(&listen, &options, Preset::default(), None)?;
    sockets.pop().ok_or_else(|| ListenError {
        addr: addr.to_string(),
        reason: "no socket".into(),
    })
}

/// Answers scrapes one at a time, about the rules being served at each scrape, until the
/// listener is stopped. A failing `accept()` backs off and is logged once per burst; it
/// never stops the loop.
pub fn serve(listener: Arc<Listener>, live: Arc<Live>, running: LoopGuard) {
    let trouble = Burst::default();
    let acceptor = Acceptor::new(listener);
    while !acceptor.is_stopped() {
        // `None`: stopped, or the accept wait ran out (and the loop looks again). The
        // metrics listener is TCP.
        let accepted = acceptor.next(&trouble, "the metrics listener", || {});
        if let Some(stream) = accepted.and_then(|(stream, _)| stream.into_tcp()) {
            answer(stream, &live);
        }
    }
    drop(running);
}

/// Reads one request and answers it; errors only end this request.
fn answer(stream: TcpStream, live: &Live) {
    let deadline = Deadline::after(REQUEST_DEADLINE);
    let response = match read_head(&stream, deadline) {
        Ok(head) => match route(&head) {
            Route::Metrics => respond(
                "200 OK",
                CONTENT_TYPE,
                &render(&live.states(), &live.reloads),
            ),
            Route::NotFound => respond("404 Not Found", "text/plain", "not found\n"),
            Route::Bad => respond("400 Bad Request", "text/plain", "bad request\n"),
        },
        Err(Head::TooLarge) => respond("431 Request Header Fields Too Large", "text/plain", ""),
        // Nothing useful to say to a client that went silent or away.
        Err(Head::Gone) => return,
    };
    answer::send_and_close(&stream, response.as_bytes());
}

/// Why no request head was read.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// [`REQUEST_MAX`] bytes without the empty line that ends a head.
    TooLarge,
    /// Closed, failed, or not complete by the deadline.
    Gone,
}

/// Reads until the empty line that ends the head, within `deadline` (total, not per read)
/// and [`REQUEST_MAX`] bytes.
fn read_head(mut stream: &TcpStream, deadline: Deadline) -> Result<Vec<u8>, Head> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !has_end(&head) {
        if head.len() >= REQUEST_MAX {
            return Err(Head::TooLarge);
        }
        if deadline.limit_read(stream).is_err() {
            return Err(Head::Gone);
        }
        let room = buf.len().min(REQUEST_MAX - head.len());
        match stream.read(buf.get_mut(..room).unwrap_or_default()) {
            Ok(0) => return Err(Head::Gone),
            Ok(n) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Head::Gone),
        }
    }
    Ok(head)
}

/// Whether `head` holds the empty line ending an HTTP head (CRLF, or bare LF as HTTP
/// allows receivers to accept).
fn has_end(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n")
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// `GET /metrics` (a query string is ignored).
    Metrics,
    /// A well-formed request for anything else.
    NotFound,
    /// Not an HTTP request line.
    Bad,
}

/// Routes on the request line: `METHOD TARGET HTTP/1.x`.
fn route(head: &[u8]) -> Route {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut words = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Route::Bad;
    };
    if !version.starts_with(b"HTTP/1.") || method.is_empty() || target.is_empty() {
        return Route::Bad;
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    match (method, path) {
        (b"GET", b"/metrics") => Route::Metrics,
        _ => Route::NotFound,
    }
}

/// A complete response that closes the connection.
fn respond(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// One metric family: name, help text and type.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
}

const ACTIVE: Family = Family {
    name: "tcpfwd_connections_active",
    help: "Client connections open now.",
    kind: "gauge",
};
const TOTAL: Family = Family {
    name: "tcpfwd_connections_total",
    help: "Finished client connections, by how they ended (the end= of the log line).",
    kind: "counter",
};
const BYTES: Family = Family {
    name: "tcpfwd_bytes_total",
    help: "Bytes relayed by finished connections: up = client to target, down = target to client.",
    kind: "counter",
};
const TARGET_UP: Family = Family {
    name: "tcpfwd_target_up",
    help: "1 if the target is up, 0 if it is marked down.",
    kind: "gauge",
};
const TARGET_ACTIVE: Family = Family {
    name: "tcpfwd_target_connections_active",
    help: "Connections open to the target now.",
    kind: "gauge",
};
const PAUSED: Family = Family {
    name: "tcpfwd_accept_paused_total",
    help: "Times the listener stopped accepting because --max-conns was reached.",
    kind: "counter",
};
const ACCEPT_ERRORS: Family = Family {
    name: "tcpfwd_accept_errors_total",
    help: "Failed accept() calls.",
    kind: "counter",
};

const RELOADS: Family = Family {
    name: "tcpfwd_reloads_total",
    help: "Reloads of the config file (SIGHUP), by result: ok, or failed (nothing changed).",
    kind: "counter",
};

/// The whole exposition: every family of SPEC §5, each with `# HELP` and `# TYPE`, one
/// series per rule (and per end, direction or target), and the reloads.
pub fn render(rules: &[Arc<RuleState>], reloads: &Reloads) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_all(&mut out, rules);
    let _ = header(&mut out, &RELOADS);
    for (result, counter) in [("ok", &reloads.ok), ("failed", &reloads.failed)] {
        let _ = writeln!(
            out,
            "{}{{result=\"{result}\"}} {}",
            RELOADS.name,
            counter.get()
        );
    }
    out
}

fn write_all(out: &mut String, rules: &[Arc<RuleState>]) -> fmt::Result {
    header(out, &ACTIVE)?;
    for r in rules {
        let value = r.counters.active.load(Ordering::Relaxed);
        writeln!(
            out,
            "{}{{rule=\"{}\"}} {value}",
            ACTIVE.name,
            Label(&r.label)
        )?;
    }
    header(out, &TOTAL)?;
    for r in rules {
        for end in End::ALL {
            let value = r.counters.ended(end);
            let rule = Label(&r.label);
            writeln!(
                out,
                "{}{{rule=\"{rule}\",end=\"{end}\"}} {value}",
                TOTAL.name
            )?;
        }
    }
    header(out, &BYTES)?;
    for r in rules {
        for (direction, counter) in [("up", &r.counters.up), ("down", &r.counters.down)] {
            let (rule, value) = (Label(&r.label), counter.get());
            let labels = format!("rule=\"{rule}\",direction=\"{direction}\"");
            writeln!(out, "{}{{{labels}}} {value}", BYTES.name)?;
        }
    }
    header(out, &TARGET_UP)?;
    for_targets(out, rules, &TARGET_UP, |m| usize::from(m.is_up()))?;
    header(out, &TARGET_ACTIVE)?;
    for_targets(out, rules, &TARGET_ACTIVE, |m| {
        m.active.load(Ordering::Relaxed)
    })?;
    header(out, &PAUSED)?;
    for r in rules {
        let value = r.counters.accept_paused.get();
        writeln!(
            out,
            "{}{{rule=\"{}\"}} {value}",
            PAUSED.name,
            Label(&r.label)
        )?;
    }
    header(out, &ACCEPT_ERRORS)?;
    for r in rules {
        let value = r.counters.accept_errors.get();
        let rule = Label(&r.label);
        writeln!(out, "{}{{rule=\"{rule}\"}} {value}", ACCEPT_ERRORS.name)?;
    }
    Ok(())
}

fn header(out: &mut String, family: &Family) -> fmt::Result {
    writeln!(out, "# HELP {} {}", family.name, family.help)?;
    writeln!(out, "# TYPE {} {}", family.name, family.kind)
}

/// One series per target of every forwarding rule.
fn for_targets(
    out: &mut String,
    rules: &[Arc<RuleState>],
    family: &Family,
    value: impl Fn(&Member) -> usize,
) -> fmt::Result {
    for r in rules {
        let Some(pool) = &r.pool else { continue };
        for member in &pool.members {
            let (rule, target) = (Label(&r.label), Label(&member.label));
            let labels = format!("rule=\"{rule}\",target=\"{target}\"");
            writeln!(out, "{}{{{labels}}} {}", family.name, value(member))?;
        }
    }
    Ok(())
}

/// A label value escaped as the text format requires: `\\`, `\"` and `\n`.
struct Label<'a>(&'a str);

impl fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_args, Command};
    use std::io::Write;
    use std::net::TcpListener;
    use std::time::Instant;

    fn state(args: &[&str]) -> Arc<RuleState> {
        let words = args.iter().map(Into::into).collect();
        let Ok(Command::Run(setup)) = parse_args(words) else {
            panic!("not a rule: {args:?}");
        };
        let rule = setup.rules.into_iter().next().unwrap();
        Arc::new(RuleState::new(rule, Arc::new(Vec::new())))
    }

    #[test]
    fn routes() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0\n\n"), Route::Metrics);
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"GET /metricsx HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"HEAD /metrics HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"GET /metrics\r\n\r\n"), Route::Bad);
        assert_eq!(route(b"GET  /metrics HTTP/1.1\r\n\r\n"), Route::Bad);
        assert_eq!(route(b"\x16\x03\x01\r\n\r\n"), Route::Bad);
    }

    #[test]
    fn labels_are_escaped() {
        let text = Label("a\\b\"c\nd").to_string();
        assert_eq!(text, r#"a\\b\"c\nd"#);
        assert_eq!(Label("[::1]:80").to_string(), "[::1]:80");
    }

    #[test]
    fn every_family_with_help_and_type() {
        let forward = state(&["127.0.0.1:0", "a.example:80", "10.0.0.1:81,backup"]);
        forward.counters.finished(End::ClientEof, 10, 20);
        forward.counters.finished(End::ClientEof, 1, 2);
        forward.counters.accept_errors.add(3);
        let proxy = state(&["--connect", ":3128"]);
        let reloads = Reloads::default();
        reloads.failed.add(2);
        let text = render(&[forward, proxy], &reloads);
        for family in [
            &RELOADS,
            &ACTIVE,
            &TOTAL,
            &BYTES,
            &TARGET_UP,
            &TARGET_ACTIVE,
            &PAUSED,
            &ACCEPT_ERRORS,
        ] {
            assert!(text.contains(&format!("# HELP {} ", family.name)), "{text}");
            let kind = format!("# TYPE {} {}\n", family.name, family.kind);
            assert!(text.contains(&kind), "{text}");
        }
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "tcpfwd_connections_active{rule=\"127.0.0.1:0\"} 0",
            "tcpfwd_connections_active{rule=\":3128\"} 0",
            "tcpfwd_connections_total{rule=\"127.0.0.1:0\",end=\"client-eof\"} 2",
            "tcpfwd_connections_total{rule=\":3128\",end=\"bad-request\"} 0",
            "tcpfwd_bytes_total{rule=\"127.0.0.1:0\",direction=\"up\"} 11",
            "tcpfwd_bytes_total{rule=\"127.0.0.1:0\",direction=\"down\"} 22",
            "tcpfwd_target_up{rule=\"127.0.0.1:0\",target=\"a.example:80\"} 1",
            "tcpfwd_target_connections_active{rule=\"127.0.0.1:0\",target=\"10.0.0.1:81\"} 0",
            "tcpfwd_accept_paused_total{rule=\":3128\"} 0",
            "tcpfwd_accept_errors_total{rule=\"127.0.0.1:0\"} 3",
            "tcpfwd_reloads_total{result=\"ok\"} 0",
            "tcpfwd_reloads_total{result=\"failed\"} 2",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in\n{text}");
        }
        let series = |prefix: &str| lines.iter().filter(|l| l.starts_with(prefix)).count();
        assert_eq!(series("tcpfwd_connections_total{"), 2 * End::ALL.len());
        assert_eq!(series("tcpfwd_target_up{"), 2); // the CONNECT rule has no targets
    }

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (client, listener.accept().unwrap().0)
    }

    #[test]
    fn head_is_bounded_in_size_and_time() {
        let (mut client, server) = pair();
        client.write_all(&[b'a'; REQUEST_MAX + 10]).unwrap();
        let soon = Deadline::after(Duration::from_secs(5));
        assert_eq!(read_head(&server, soon), Err(Head::TooLarge));
        let (mut client, server) = pair();
        client.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
        let start = Instant::now();
        let got = read_head(&server, Deadline::from(start, Duration::from_millis(200)));
        assert_eq!(got, Err(Head::Gone));
        assert!(start.elapsed() < Duration::from_secs(3));
        let (mut client, server) = pair();
        client.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        assert!(read_head(&server, soon).is_ok());
    }
}
