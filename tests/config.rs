//! Config files and `--check`, black-box: several rules served from one file, the `--check`
//! printout with every default spelled out, errors that name the file and line, and a
//! start-up that fails before anything is served.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};

use support::*;

#[test]
fn a_config_file_serves_three_rules_at_once() {
    let (a, b) = (Backend::named("A"), Backend::named("B"));
    let config = temp_file(
        "three.conf",
        &format!(
            "# two forwards and a CONNECT proxy\n\
             \n\
             127.0.0.1:0 {a}   # first\n\
             \"127.0.0.1:0\" \"{b},weight=2\"\n\
             --connect 127.0.0.1:0 --auth \"alice:se cret\"\n",
            a = a.addr,
            b = b.addr
        ),
    );
    let path = config.to_str().unwrap();
    let fwd = Tcpfwd::spawn(&["--config", path]);
    fwd.wait_lines("listening on ", 3);
    let addrs = fwd.addrs();
    assert_eq!(addrs.len(), 3, "{:?}", fwd.lines());
    // Both forwards open at the same time, each to its own backend.
    let mut first = connect(addrs[0]);
    let mut second = connect(addrs[1]);
    let mut greeting = [0; 1];
    first.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"A");
    second.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"B");
    for (stream, text) in [(&mut first, "one"), (&mut second, "two")] {
        stream.write_all(text.as_bytes()).unwrap();
        let mut echoed = [0; 3];
        stream.read_exact(&mut echoed).unwrap();
        assert_eq!(&echoed, text.as_bytes());
    }
    // The CONNECT rule listens (its behaviour is tested with CONNECT mode itself).
    TcpStream::connect(addrs[2]).expect("the CONNECT rule accepts");
    drop((first, second));
    let logged = fwd.wait_lines("end=", 2);
    assert!(
        logged.iter().all(|l| l.contains(" listen=127.0.0.1:0 ")),
        "{logged:?}"
    );

    let (code, out, err) = run(&["--check", "--config", path]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with(&format!("127.0.0.1:0 {} --balance", a.addr)));
    assert!(lines[1].starts_with(&format!("127.0.0.1:0 {},weight=2 --balance", b.addr)));
    assert!(
        lines[2].starts_with("--connect 127.0.0.1:0 --connect-ports 443 --auth alice:*** "),
        "{}",
        lines[2]
    );
    assert!(!out.contains("se cret"), "a password was printed: {out}");
}

#[test]
fn check_prints_rules_with_comments_quotes_and_command_line_defaults() {
    let config = temp_file(
        "defaults.conf",
        "# tcpfwd.conf: comments, blank lines and quotes\n\
         --stats 127.0.0.1:9100\n\
         \n\
         \t127.0.0.1:8080 \"127.0.0.1:1,weight=3\" 127.0.0.1:2,backup --idle-timeout 5m  # own\n\
         \"[::1]:8081\" 127.0.0.1:3 --balance least-conn   # takes the default\n\
         --connect :3128 --connect-ports 443,8443 --auth \"b\\\"ob:p w\"\n",
    );
    let path = config.to_str().unwrap();
    let (code, out, err) = run(&["--check", "--idle-timeout", "7s", "-q", "--config", path]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(err, "");
    let want = [
        "--stats 127.0.0.1:9100 -q".to_string(),
        "127.0.0.1:8080 127.0.0.1:1,weight=3 127.0.0.1:2,backup --balance round-robin \
         --health-interval 0 --down-after 1 --down-for 10s --connect-timeout 5s \
         --idle-timeout 5m --fin-timeout 1m --keepalive 1m --max-conns 1024 --backlog 1024 --buffer-size 64k"
            .to_string(),
        "[::1]:8081 127.0.0.1:3 --balance least-conn --health-interval 0 --down-after 1 \
         --down-for 10s --connect-timeout 5s --idle-timeout 7s --fin-timeout 1m --keepalive 1m \
         --max-conns 1024 --backlog 1024 --buffer-size 64k"
            .to_string(),
        "--connect :3128 --connect-ports 443,8443 --auth \"b\\\"ob:***\" --connect-timeout 5s \
         --idle-timeout 7s --fin-timeout 1m --keepalive 1m --max-conns 1024 --backlog 1024 --buffer-size 64k"
            .to_string(),
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
    // --check binds nothing: the same file checks fine while its ports are taken.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let file = temp_file(
        "busy.conf",
        &format!("{} 127.0.0.1:9\n", busy.local_addr().unwrap()),
    );
    let (code, _, err) = run(&["--check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn the_defaults_help_shows_are_the_defaults() {
    // Each option's default in `--help` (its last column), given explicitly, makes the same
    // rules and process options as leaving the option out: `--check` prints both alike.
    let (_, help, _) = run(&["--help"]);
    let header = help
        .lines()
        .find(|l| l.starts_with("Rule options:"))
        .expect("a Rule options table");
    let column = header.find("default").expect("a default column");
    let shown = |args: &[&str]| {
        let (code, out, err) = run(args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        out
    };
    let mut checked = Vec::new();
    // The rule options, then the process options (the same column).
    for line in help.lines().skip_while(|l| *l != header).skip(1) {
        if line.starts_with("Signals:") {
            break;
        }
        if !line.starts_with("  --") {
            continue;
        }
        let option = line.split_whitespace().next().unwrap_or_default();
        let default = line.get(column..).unwrap_or_default().trim();
        // The first word: "0 (never)" is 0. Words that are no value (off, none, all, the
        // kernel's or system's own) are not given.
        let value = default.split(' ').next().unwrap_or_default();
        if ["", "off", "none", "all", "kernel's", "system's", "OS's"].contains(&value) {
            continue;
        }
        let rule: &[&str] = if line.contains("CONNECT:") {
            &["--connect", "127.0.0.1:1"]
        } else {
            &["127.0.0.1:1", "127.0.0.1:2"]
        };
        let plain = shown(&[&["--check"], rule].concat());
        let given = shown(&[&["--check"], rule, &[option, value]].concat());
        assert_eq!(given, plain, "--help says {option} defaults to {default:?}");
        checked.push(option);
    }
    assert!(checked.len() >= 12, "only {checked:?}");
    assert!(checked.contains(&"--grace"), "{checked:?}");
}

#[test]
fn every_config_error_names_the_file_and_line_and_exits_2() {
    let cases = [
        (
            ":1 127.0.0.1:1\n\n:2 127.0.0.1:1 --foo\n",
            3,
            "unknown option --foo",
        ),
        (
            "# ok\n:1 127.0.0.1:1,weight=0\n",
            2,
            "weight must be 1 to 1000",
        ),
        (":1 127.0.0.1:1 --idle-timeout soon\n", 1, "--idle-timeout"),
        (":1 127.0.0.1:1 --auth \"alice:x\n", 1, "unterminated quote"),
        (
            ":1 127.0.0.1:1\n:2 127.0.0.1:1 --stats 127.0.0.1:1\n",
            2,
            "own",
        ),
        (":1 127.0.0.1:1\n--max-conns 5\n", 2, "missing LISTEN"),
        (":1 127.0.0.1:1\n--check\n", 2, "command line"),
        (":1 127.0.0.1:1\n:2 not-a-target\n", 2, "TARGET"),
    ];
    for (text, line, message) in cases {
        let file = temp_file("bad.conf", text);
        let path = file.to_str().unwrap();
        let (code, out, err) = run(&["--check", "--config", path]);
        assert_eq!(code, Some(2), "{text:?}: {err}");
        assert_eq!(out, "", "{text:?}");
        let prefix = format!("tcpfwd: {path}:{line}: ");
        assert!(
            err.starts_with(&prefix) && err.contains(message),
            "{text:?}: want {prefix}...{message}, got {err}"
        );
        // Serving it fails the same way, before anything listens.
        let fwd = Tcpfwd::spawn(&["--config", path]);
        let (code, log) = fwd.wait_exit();
        assert_eq!(code, Some(2), "{log}");
        assert!(
            log.starts_with(&prefix) && !log.contains("listening on"),
            "{log}"
        );
    }
}

#[test]
fn a_missing_config_file_is_exit_2() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such.conf");
    let path = path.to_str().unwrap();
    for args in [vec!["--config", path], vec!["--check", "--config", path]] {
        let (code, out, err) = run(&args);
        assert_eq!(code, Some(2), "{err}");
        assert_eq!(out, "");
        assert!(err.contains(path) && err.contains("no such file"), "{err}");
    }
}

#[test]
fn a_busy_port_stops_start_up_before_anything_is_served() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap();
    let backend = Backend::echo();
    // The second rule's port is taken; the first one's was free.
    let free = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = temp_file(
        "busy.conf",
        &format!("{free} {0}\n{busy_addr} {0}\n", backend.addr),
    );
    let fwd = Tcpfwd::spawn(&["--config", config.to_str().unwrap()]);
    let (code, log) = fwd.wait_exit();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains(&format!("cannot listen on {busy_addr}: address in use")),
        "{log}"
    );
    assert!(!log.contains("listening on"), "something was served: {log}");
    let refused = TcpStream::connect(free).map_err(|e| e.kind());
    assert_eq!(refused.err(), Some(ErrorKind::ConnectionRefused));
    assert_eq!(backend.count(), 0);

    // Likewise for the metrics listener.
    let fwd = Tcpfwd::spawn(&[
        "--stats",
        &busy_addr.to_string(),
        "127.0.0.1:0",
        &backend.addr.to_string(),
    ]);
    let (code, log) = fwd.wait_exit();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains(&format!("cannot listen on {busy_addr}")),
        "{log}"
    );
    assert!(!log.contains("listening on"), "{log}");
}

#[test]
fn reading_a_config_has_limits_and_echoes_little() {
    // A device or a huge file fails at once, naming the limit, without being read whole.
    let started = std::time::Instant::now();
    let (code, _, err) = run(&["--check", "--config", "/dev/zero"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("/dev/zero") && err.contains("larger than 4 MiB"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // A long bad token is shown as a short prefix; control bytes are escaped.
    let long = format!(":1 a:1 --idle-timeout {}x\n", "9".repeat(1_000_000));
    let (code, _, err) = run(&[
        "--check",
        "--config",
        temp_file("long.conf", &long).to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2));
    assert!(err.len() < 300, "{} bytes of error", err.len());
    assert!(err.contains(":1: --idle-timeout: '999"), "{err}");
    let (code, _, err) = run(&["--check", ":1", "a:1", "--balance", "\u{1b}[2J\u{7}"]);
    assert_eq!(code, Some(2));
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    assert!(err.contains("\\u{1b}[2J\\u{7}"), "{err:?}");
    // A byte that is not UTF-8, even in a comment, names its line.
    let path = temp_file("latin1.conf", "");
    std::fs::write(&path, b":1 a:1\n\n# caf\xe9\n").unwrap();
    let (code, _, err) = run(&["--check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("latin1.conf:3: byte 0xe9 at column 6 is not UTF-8"),
        "{err}"
    );
}

#[test]
fn limits_are_checked_when_the_rules_are_read() {
    let usage_error = |args: &[&str], says: &str| {
        let (code, out, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {out}");
        assert!(err.contains(says), "{args:?}: {err}");
    };
    // Probes faster than 100 ms would fill the target's TIME_WAIT table.
    usage_error(
        &["--check", ":1", "a:1", "--health-interval", "1ms"],
        "shorter than 100ms",
    );
    usage_error(
        &["--check", ":1", "a:1", "--health-interval", "0.9ms"],
        "less than a millisecond",
    );
    usage_error(
        &["--check", ":1", "a:1", "--idle-timeout", ".5ms"],
        "less than a millisecond",
    );
    usage_error(
        &["--check", ":1", "a:1", "--idle-timeout", "8760.000000001h"],
        "longer than a year",
    );
    usage_error(
        &["--check", ":1", "[-x]:80"],
        "brackets hold an IPv6 address",
    );
    usage_error(&["--check", ":1", "--", "-x:80"], "not a host name");
    usage_error(
        &["--check", ":1", "a:1", "--max-conns", "999999999999999999"],
        "more than 1000000",
    );
    usage_error(
        &["--check", ":1", "a:1,max-conns=18446744073709551615"],
        "more than 1000000",
    );
    let (code, out, err) = run(&[
        "--check",
        ":1",
        "a:1",
        "--health-interval",
        "100ms",
        "--idle-timeout",
        "1.0004s",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("--health-interval 100ms") && out.contains("--idle-timeout 1s"),
        "{out}"
    );
}

#[test]
fn two_rules_at_the_largest_max_conns_start_with_both_capped_alike() {
    // The sum of --max-conns over rules saturates instead of wrapping (which once cut both to 1).
    let backend = Backend::echo();
    let target = backend.addr.to_string();
    let config = temp_file(
        "big.conf",
        &format!(
            "127.0.0.1:0 {target} --max-conns 1000000\n127.0.0.1:0 {target} --max-conns 1000000\n"
        ),
    );
    let fwd = Tcpfwd::spawn(&["--config", config.to_str().unwrap()]);
    fwd.wait_lines("listening on ", 2);
    let warning = fwd.wait_line("warning:");
    assert!(warning.contains("fewer than 2000000"), "{warning}");
    let now: Vec<&str> = warning
        .rsplit("is now ")
        .next()
        .unwrap()
        .split(", ")
        .collect();
    assert_eq!(now.len(), 2, "{warning}");
    let capped = |part: &str| part.split(' ').next().unwrap().parse::<u64>().unwrap();
    assert_eq!(capped(now[0]), capped(now[1]), "{warning}");
    assert!(capped(now[0]) > 1, "{warning}");
    let mut client = connect(fwd.addrs()[1]);
    client.write_all(b"ok").unwrap();
    let mut back = [0; 2];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ok");
}
