//! The grammar of one line: the command line and each config-file line (which is a command
//! line) go through the same lexopt loop into drafts, then [`build_rules`] makes typed
//! [`Rule`]s: one, or one per port of a range `HOST:P1-P2`.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use lexopt::prelude::*;

use crate::addr::{split_port_range, Acl, Cidr, HostPort, ListenAddr, TargetAddr};
use crate::config::rule::{
    Balance, Congestion, ConnectPolicy, Forward, HealthCheck, Mode, Options, Ports, Process, Rule,
    Span, Target, DEFAULT_GRACE,
};
use crate::config::units::{parse_duration, parse_size};
use crate::log::Verbosity;
use crate::sys::{self, Keepalive};
use crate::wire::connect_head::Credential;
use crate::wire::proxy_header::Version as ProxyVersion;

/// One parsed command line or config line, before defaults are applied.
#[derive(Debug, Default)]
pub(crate) struct Line {
    pub(crate) rule: RuleDraft,
    pub(crate) process: ProcessDraft,
    pub(crate) config: Option<PathBuf>,
    pub(crate) check: bool,
    pub(crate) help: bool,
    pub(crate) version: bool,
}

/// Process options as written on one line.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProcessDraft {
    pub(crate) stats: Option<HostPort>,
    pub(crate) verbosity: Option<Verbosity>,
    pub(crate) grace: Option<Duration>,
}

impl ProcessDraft {
    pub(crate) fn is_empty(&self) -> bool {
        self.stats.is_none() && self.verbosity.is_none() && self.grace.is_none()
    }

    /// Fills what this one leaves unset from `other`.
    pub(crate) fn or(&self, other: &ProcessDraft) -> ProcessDraft {
        ProcessDraft {
            stats: self.stats.clone().or_else(|| other.stats.clone()),
            verbosity: self.verbosity.or(other.verbosity),
            grace: self.grace.or(other.grace),
        }
    }

    pub(crate) fn build(&self) -> Process {
        Process {
            stats: self.stats.clone(),
            verbosity: self.verbosity.unwrap_or_default(),
            grace: self.grace.unwrap_or(DEFAULT_GRACE),
        }
    }
}

/// Rule options as written on one line; `None` = not given here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RuleDraft {
    pub(crate) listen: Option<ListenAddr>,
    /// The last port when LISTEN is a range (`listen` holds the first).
    listen_last: Option<u16>,
    connect: bool,
    pub(crate) targets: Vec<TargetDraft>,
    balance: Option<Balance>,
    health_interval: Option<Option<Duration>>,
    down_after: Option<u32>,
    down_for: Option<Duration>,
    connect_ports: Option<Ports>,
    connect_allow: Option<Vec<Cidr>>,
    connect_deny: Option<Vec<Cidr>>,
    auth: Option<Vec<Credential>>,
    connect_timeout: Option<Duration>,
    idle_timeout: Option<Option<Duration>>,
    fin_timeout: Option<Option<Duration>>,
    keepalive: Option<Option<Keepalive>>,
    max_conns: Option<usize>,
    backlog: Option<u32>,
    allow: Option<Vec<Cidr>>,
    deny: Option<Vec<Cidr>>,
    buffer_size: Option<usize>,
    segment_size: Option<usize>,
    mss: Option<u32>,
    congestion_client: Option<String>,
    congestion_target: Option<String>,
    user_timeout: Option<Option<Duration>>,
    source: Option<IpAddr>,
    nagle: Option<bool>,
    proxy_protocol: Option<ProxyVersion>,
    accept_proxy: Option<bool>,
}

/// Parses one line of tokens. Errors name the option.
pub(crate) fn parse_line(tokens: Vec<OsString>) -> Result<Line, String> {
    let mut line = Line::default();
    let mut p = lexopt::Parser::from_args(tokens);
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        let d = &mut line.rule;
        match arg {
            Short('h') | Long("help") => line.help = true,
            Short('V') | Long("version") => line.version = true,
            Short('v') => line.process.verbosity = Some(Verbosity::Verbose),
            Short('q') => line.process.verbosity = Some(Verbosity::Quiet),
            Long("stats") => line.process.stats = Some(value(&mut p, "stats", parse_stats)?),
            Long("grace") => line.process.grace = Some(value(&mut p, "grace", parse_duration)?),
            Long("config") => line.config = Some(value(&mut p, "config", |s| Ok(s.into()))?),
            Long("check") => line.check = true,
            Long("connect") => {
                let listen = value(&mut p, "connect", parse_connect_listen)?;
                if d.listen.replace(listen).is_some() {
                    return Err("--connect: a line has one listen address".into());
                }
                d.connect = true;
            }
            Long("balance") => d.balance = Some(value(&mut p, "balance", Balance::parse)?),
            Long("health-interval") => {
                d.health_interval = Some(value(&mut p, "health-interval", parse_interval)?)
            }
            Long("down-after") => d.down_after = Some(value(&mut p, "down-after", parse_count)?),
            Long("down-for") => d.down_for = Some(value(&mut p, "down-for", parse_duration)?),
            Long("connect-ports") => {
                d.connect_ports = Some(value(&mut p, "connect-ports", parse_ports)?)
            }
            Long("connect-allow") => push(
                &mut d.connect_allow,
                value(&mut p, "connect-allow", Cidr::parse)?,
            ),
            Long("connect-deny") => push(
                &mut d.connect_deny,
                value(&mut p, "connect-deny", Cidr::parse)?,
            ),
            Long("auth") => push(&mut d.auth, value(&mut p, "auth", parse_credential)?),
            Long("connect-timeout") => {
                d.connect_timeout = Some(value(&mut p, "connect-timeout", parse_positive)?)
            }
            Long("idle-timeout") => {
                d.idle_timeout = Some(value(&mut p, "idle-timeout", parse_timeout)?)
            }
            Long("fin-timeout") => {
                d.fin_timeout = Some(value(&mut p, "fin-timeout", parse_timeout)?)
            }
            Long("keepalive") => d.keepalive = Some(value(&mut p, "keepalive", parse_keepalive)?),
            Long("max-conns") => d.max_conns = Some(value(&mut p, "max-conns", parse_max_conns)?),
            Long("backlog") => d.backlog = Some(value(&mut p, "backlog", parse_backlog)?),
            Long("allow") => push(&mut d.allow, value(&mut p, "allow", Cidr::parse)?),
            Long("deny") => push(&mut d.deny, value(&mut p, "deny", Cidr::parse)?),
            Long("buffer-size") => {
                d.buffer_size = Some(value(&mut p, "buffer-size", parse_buffer)?)
            }
            Long("segment-size") => {
                d.segment_size = Some(value(&mut p, "segment-size", parse_segment)?)
            }
            Long("mss") => d.mss = Some(value(&mut p, "mss", parse_mss)?),
            Long("congestion") => {
                let (client, target) = value(&mut p, "congestion", parse_congestion)?;
                d.congestion_client = client.or(d.congestion_client.take());
                d.congestion_target = target.or(d.congestion_target.take());
            }
            Long("user-timeout") => {
                d.user_timeout = Some(value(&mut p, "user-timeout", parse_user_timeout)?)
            }
            Long("source") => d.source = Some(value(&mut p, "source", parse_source)?),
            Long("nagle") => d.nagle = Some(true),
            Long("proxy-protocol") => {
                d.proxy_protocol = Some(value(&mut p, "proxy-protocol", parse_proxy_version)?)
            }
            Long("accept-proxy") => d.accept_proxy = Some(true),
            Value(token) => add_address(d, token)?,
            Long(name) => return Err(format!("unknown option --{name}")),
            Short(c) => return Err(format!("unknown option -{c}")),
        }
    }
    Ok(line)
}

/// A TARGET as written: the target (with the first port of a range) and a range's last port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TargetDraft {
    target: Target,
    last: Option<u16>,
}

/// The first positional is LISTEN, the rest are TARGETs.
fn add_address(d: &mut RuleDraft, token: OsString) -> Result<(), String> {
    let text = token
        .into_string()
        .map_err(|t| format!("{t:?} is not valid UTF-8"))?;
    if d.listen.is_none() {
        let listen = |text: &str| {
            let (first, last) = split_port_range(text)?;
            Ok::<_, String>((ListenAddr::parse(&first)?, last))
        };
        let (first, last) = listen(&text).map_err(|e| format!("LISTEN {e}"))?;
        d.listen = Some(first);
        d.listen_last = last;
    } else if d.connect {
        return Err(format!("'{text}': --connect takes no TARGET"));
    } else {
        d.targets
            .push(parse_target(&text).map_err(|e| format!("TARGET {e}"))?);
    }
    Ok(())
}

/// Reads the option's value and converts it; the error names the option.
fn value<T>(
    p: &mut lexopt::Parser,
    name: &str,
    convert: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, String> {
    let raw = p.value().map_err(|e| e.to_string())?;
    let text = raw
        .to_str()
        .ok_or_else(|| format!("--{name}: {raw:?} is not valid UTF-8"))?;
    convert(text).map_err(|e| format!("--{name}: {e}"))
}

fn push<T>(list: &mut Option<Vec<T>>, item: T) {
    list.get_or_insert_with(Vec::new).push(item);
}

/// A CONNECT proxy listens on one TCP port: a range or a Unix socket is a mistake to name.
fn parse_connect_listen(text: &str) -> Result<ListenAddr, String> {
    if split_port_range(text)?.1.is_some() {
        return Err(format!(
            "'{text}': a port range is for forwarding rules, not for a CONNECT proxy"
        ));
    }
    match ListenAddr::parse(text)? {
        ListenAddr::Unix(_) => Err(format!(
            "'{text}': a CONNECT proxy listens on HOST:PORT, not on a Unix socket"
        )),
        listen => Ok(listen),
    }
}

fn parse_stats(text: &str) -> Result<HostPort, String> {
    HostPort::parse(text, true)
}

fn parse_count<T: std::str::FromStr + PartialOrd + From<u8>>(text: &str) -> Result<T, String> {
    match text.parse::<T>() {
        Ok(n) if n >= T::from(1) => Ok(n),
        _ => Err(format!("'{text}' is not a whole number of at least 1")),
    }
}

/// The most `--max-conns` (and a target's `max-conns=`) can be: two threads each, far beyond
/// what any kernel holds, and small enough that sums over many rules never overflow.
pub(crate) const MAX_CONNS: usize = 1_000_000;

fn parse_max_conns(text: &str) -> Result<usize, String> {
    // Read as 64 bits, so a 32-bit router says "more than" too, not "not a number".
    match usize::try_from(parse_count::<u64>(text)?) {
        Ok(n) if n <= MAX_CONNS => Ok(n),
        _ => Err(format!("'{text}' is more than {MAX_CONNS}")),
    }
}

/// The largest `--backlog`: the kernel caps it at `net.core.somaxconn` anyway.
const MAX_BACKLOG: u32 = 65_535;

fn parse_backlog(text: &str) -> Result<u32, String> {
    match parse_count(text)? {
        n if n <= MAX_BACKLOG => Ok(n),
        _ => Err(format!("'{text}' is more than {MAX_BACKLOG}")),
    }
}

/// The shortest `--health-interval`: each round probes every target, and a probe leaves a
/// socket in TIME_WAIT for a minute.
pub(crate) const MIN_HEALTH_INTERVAL: Duration = Duration::from_millis(100);

/// `0` means off; otherwise at least [`MIN_HEALTH_INTERVAL`].
fn parse_interval(text: &str) -> Result<Option<Duration>, String> {
    match parse_timeout(text)? {
        Some(d) if d < MIN_HEALTH_INTERVAL => Err(format!(
            "'{text}' is shorter than {}ms (0 turns probes off)",
            MIN_HEALTH_INTERVAL.as_millis()
        )),
        other => Ok(other),
    }
}

/// `0` means never.
fn parse_timeout(text: &str) -> Result<Option<Duration>, String> {
    let d = parse_duration(text)?;
    Ok((!d.is_zero()).then_some(d))
}

fn parse_positive(text: &str) -> Result<Duration, String> {
    parse_timeout(text)?.ok_or_else(|| "must be more than 0".to_string())
}

/// `IDLE[/INTERVAL[/COUNT]]`, whole seconds within Linux's ranges; `0` = off.
fn parse_keepalive(text: &str) -> Result<Option<Keepalive>, String> {
    let mut parts = text.split('/');
    let seconds = |part: Option<&str>, default: Duration| -> Result<Option<Duration>, String> {
        let Some(part) = part else {
            return Ok(Some(default));
        };
        match parse_timeout(part)? {
            Some(d) if d.subsec_nanos() != 0 => Err(format!("'{part}': whole seconds only")),
            Some(d) if d.as_secs() > Keepalive::MAX_SECS => Err(format!(
                "'{part}': at most {}s (Linux's limit)",
                Keepalive::MAX_SECS
            )),
            other => Ok(other),
        }
    };
    let Some(idle) = seconds(parts.next(), Duration::ZERO)? else {
        return match parts.next() {
            None => Ok(None),
            Some(_) => Err(format!("'{text}': 0 (off) takes no INTERVAL/COUNT")),
        };
    };
    let interval = seconds(parts.next(), Keepalive::INTERVAL)?
        .ok_or_else(|| format!("'{text}': the INTERVAL must be at least 1s"))?;
    let count = match parts.next() {
        None => Keepalive::COUNT,
        Some(n) => parse_count::<u32>(n)
            .ok()
            .filter(|&n| n <= Keepalive::MAX_COUNT)
            .ok_or_else(|| format!("'{text}': COUNT must be 1 to {}", Keepalive::MAX_COUNT))?,
    };
    if parts.next().is_some() {
        return Err(format!("'{text}': expected IDLE[/INTERVAL[/COUNT]]"));
    }
    Ok(Some(Keepalive {
        idle,
        interval,
        count,
    }))
}

/// `NAME` for both legs, or `client=NAME`, `target=NAME`, `client=NAME,target=NAME`.
fn parse_congestion(text: &str) -> Result<(Option<String>, Option<String>), String> {
    let name = |n: &str| {
        let valid = !n.is_empty()
            && n.len() < 16
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(n.to_string())
        } else {
            Err(format!(
                "'{n}' is not a congestion control name (e.g. cubic, bbr)"
            ))
        }
    };
    if !text.contains('=') {
        let both = name(text)?;
        return Ok((Some(both.clone()), Some(both)));
    }
    let (mut client, mut target) = (None, None);
    for part in text.split(',') {
        match part.split_once('=') {
            Some(("client", n)) if client.is_none() => client = Some(name(n)?),
            Some(("target", n)) if target.is_none() => target = Some(name(n)?),
            _ => {
                return Err(format!(
                    "'{text}': expected NAME, client=NAME, target=NAME or client=NAME,target=NAME"
                ))
            }
        }
    }
    Ok((client, target))
}

/// TCP_USER_TIMEOUT takes milliseconds in a C int; `0` = the kernel's.
fn parse_user_timeout(text: &str) -> Result<Option<Duration>, String> {
    match parse_timeout(text)? {
        Some(d) if d.as_millis() > i32::MAX as u128 => Err(format!("'{text}' is too long")),
        Some(d) if d < Duration::from_millis(1) => Err(format!("'{text}': at least 1ms")),
        other => Ok(other),
    }
}

/// A local IP address: `192.0.2.7`, `2001:db8::7` or `[2001:db8::7]`.
fn parse_source(text: &str) -> Result<IpAddr, String> {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    match bare.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => Err(format!(
            "'{text}' is the unspecified address (leave --source out for the OS's choice)"
        )),
        Ok(ip) => Ok(ip),
        Err(_) => Err(format!(
            "'{text}' is not an IP address (a local one, e.g. 192.0.2.7)"
        )),
    }
}

fn parse_buffer(text: &str) -> Result<usize, String> {
    match parse_size(text)? {
        n if (512..=64 * 1024 * 1024).contains(&n) => Ok(n),
        _ => Err(format!("'{text}' is out of range (512 to 64m)")),
    }
}

fn parse_segment(text: &str) -> Result<usize, String> {
    match parse_size(text)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

fn parse_mss(text: &str) -> Result<u32, String> {
    let size = parse_size(text)?;
    // Linux accepts 88 (TCP_MIN_MSS) up to the 16-bit MSS option's range.
    match u32::try_from(size) {
        Ok(n) if (88..=65_535).contains(&n) => Ok(n),
        _ => Err(format!("'{text}' is out of range (88 to 65535)")),
    }
}

fn parse_proxy_version(text: &str) -> Result<ProxyVersion, String> {
    match text {
        "v1" | "1" => Ok(ProxyVersion::V1),
        "v2" | "2" => Ok(ProxyVersion::V2),
        _ => Err(format!("'{text}' is not a version (v1 or v2)")),
    }
}

fn parse_ports(text: &str) -> Result<Ports, String> {
    if text == "any" {
        return Ok(Ports::Any);
    }
    let port = |p: &str| match p.parse::<u16>() {
        Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!("'{p}' is not a port (1-65535), in '{text}'")),
    };
    text.split(',')
        .map(port)
        .collect::<Result<Vec<_>, _>>()
        .map(Ports::Only)
}

fn parse_credential(text: &str) -> Result<Credential, String> {
    // RFC 7617 allows no control characters in either; none then reaches a log or terminal.
    if text.chars().any(char::is_control) {
        return Err("control characters are not allowed in USER:PASS".into());
    }
    match text.split_once(':') {
        Some((user, password)) if !user.is_empty() => Ok(Credential {
            user: user.into(),
            password: password.into(),
        }),
        _ => Err("expected USER:PASS".into()),
    }
}

/// `HOST:PORT[,weight=N][,max-conns=N][,backup]`, also `HOST:Q1-Q2` and `unix:PATH`.
pub(crate) fn parse_target(text: &str) -> Result<TargetDraft, String> {
    let mut parts = text.split(',');
    let (first, last) = split_port_range(parts.next().unwrap_or_default())?;
    let addr = TargetAddr::parse(&first)?;
    let mut target = Target {
        addr,
        weight: 1,
        max_conns: None,
        backup: false,
    };
    for flag in parts {
        match flag.split_once('=') {
            Some(("weight", n)) => {
                target.weight = parse_count(n)
                    .ok()
                    .filter(|w| *w <= 1000)
                    .ok_or_else(|| format!("'{text}': weight must be 1 to 1000"))?;
            }
            Some(("max-conns", n)) => {
                target.max_conns = Some(parse_max_conns(n).map_err(|e| format!("'{text}': {e}"))?)
            }
            None if flag == "backup" => target.backup = true,
            _ => {
                return Err(format!(
                    "'{text}': unknown flag '{flag}' (weight=N, max-conns=N, backup)"
                ))
            }
        }
    }
    Ok(TargetDraft { target, last })
}

/// The line's own value, else the command line's default.
fn pick<T: Clone>(line: &Option<T>, default: &Option<T>) -> Option<T> {
    line.clone().or_else(|| default.clone())
}

/// Builds the typed rules of one line with the command line's defaults: one rule, or one per
/// port of a LISTEN range (each with every option of the line, its own `--max-conns`
/// included; a range TARGET maps port P1+k to Q1+k, a one-port TARGET takes every port).
pub(crate) fn build_rules(line: &RuleDraft, defaults: &RuleDraft) -> Result<Vec<Rule>, String> {
    let rule = build_rule(line, defaults)?;
    let Some(last) = line.listen_last else {
        if let Some(t) = line.targets.iter().find(|t| t.last.is_some()) {
            return Err(format!(
                "TARGET '{}': a port range needs a LISTEN range of the same length",
                written(&t.target.addr, t.last)
            ));
        }
        return Ok(vec![rule]);
    };
    let first = rule.listen.port().unwrap_or(last);
    let count = last - first + 1;
    for t in &line.targets {
        let (TargetAddr::Net(hp), Some(t_last)) = (&t.target.addr, t.last) else {
            continue;
        };
        let t_count = t_last - hp.port + 1;
        if t_count != count {
            return Err(format!(
                "TARGET '{}' has {t_count} ports but LISTEN '{}-{last}' has {count}: \
                 give a range of the same length, or one port",
                written(&t.target.addr, t.last),
                rule.listen
            ));
        }
    }
    let ranged: Vec<bool> = line.targets.iter().map(|t| t.last.is_some()).collect();
    let expand = |index: u16| {
        let mut port_rule = rule.clone();
        port_rule.listen = rule.listen.with_port(first + index);
        if let Mode::Forward(fw) = &mut port_rule.mode {
            for (target, ranged) in fw.targets.iter_mut().zip(&ranged) {
                if let (TargetAddr::Net(hp), true) = (&mut target.addr, ranged) {
                    hp.port += index;
                }
            }
        }
        port_rule.span = Some(Span {
            index,
            count,
            ranged: ranged.clone(),
        });
        port_rule
    };
    Ok((0..count).map(expand).collect())
}

/// An address as written, with its range's last port.
fn written(addr: &TargetAddr, last: Option<u16>) -> String {
    match last {
        Some(last) => format!("{addr}-{last}"),
        None => addr.to_string(),
    }
}

/// Builds one typed rule (for a range: its first port) from one line and the defaults.
fn build_rule(line: &RuleDraft, defaults: &RuleDraft) -> Result<Rule, String> {
    let listen = line
        .listen
        .clone()
        .ok_or("missing LISTEN address (see tcpfwd --help)")?;
    check_mode_options(line)?;
    let base = Options::default();
    let options = Options {
        connect_timeout: pick(&line.connect_timeout, &defaults.connect_timeout)
            .unwrap_or(base.connect_timeout),
        idle_timeout: pick(&line.idle_timeout, &defaults.idle_timeout).unwrap_or(base.idle_timeout),
        fin_timeout: pick(&line.fin_timeout, &defaults.fin_timeout).unwrap_or(base.fin_timeout),
        keepalive: pick(&line.keepalive, &defaults.keepalive).unwrap_or(base.keepalive),
        max_conns: pick(&line.max_conns, &defaults.max_conns).unwrap_or(base.max_conns),
        backlog: pick(&line.backlog, &defaults.backlog).unwrap_or(base.backlog),
        clients: Acl {
            allow: pick(&line.allow, &defaults.allow).unwrap_or_default(),
            deny: pick(&line.deny, &defaults.deny).unwrap_or_default(),
        },
        buffer_size: pick(&line.buffer_size, &defaults.buffer_size).unwrap_or(base.buffer_size),
        segment_size: pick(&line.segment_size, &defaults.segment_size),
        mss: pick(&line.mss, &defaults.mss),
        congestion: Congestion {
            client: pick(&line.congestion_client, &defaults.congestion_client),
            target: pick(&line.congestion_target, &defaults.congestion_target),
        },
        user_timeout: pick(&line.user_timeout, &defaults.user_timeout).unwrap_or(None),
        source: pick(&line.source, &defaults.source),
        nagle: pick(&line.nagle, &defaults.nagle).unwrap_or(base.nagle),
        proxy_protocol: pick(&line.proxy_protocol, &defaults.proxy_protocol),
        accept_proxy: pick(&line.accept_proxy, &defaults.accept_proxy).unwrap_or(false),
    };
    check_system_options(&options)?;
    let mode = if line.connect {
        Mode::Connect(ConnectPolicy {
            ports: pick(&line.connect_ports, &defaults.connect_ports).unwrap_or_default(),
            destinations: Acl {
                allow: pick(&line.connect_allow, &defaults.connect_allow).unwrap_or_default(),
                deny: pick(&line.connect_deny, &defaults.connect_deny).unwrap_or_default(),
            },
            users: pick(&line.auth, &defaults.auth).unwrap_or_default(),
        })
    } else {
        let base = HealthCheck::default();
        Mode::Forward(Forward {
            targets: line.targets.iter().map(|t| t.target.clone()).collect(),
            balance: pick(&line.balance, &defaults.balance).unwrap_or_default(),
            health: HealthCheck {
                interval: pick(&line.health_interval, &defaults.health_interval)
                    .unwrap_or(base.interval),
                down_after: pick(&line.down_after, &defaults.down_after).unwrap_or(base.down_after),
                down_for: pick(&line.down_for, &defaults.down_for).unwrap_or(base.down_for),
            },
        })
    };
    Ok(Rule {
        listen,
        mode,
        options,
        span: None,
    })
}

/// The options only some systems have: elsewhere than Linux each is an error naming it; on
/// Linux a congestion control is tried on a socket, so a name the kernel does not offer or
/// allow stops tcpfwd at start-up rather than failing every connection.
fn check_system_options(o: &Options) -> Result<(), String> {
    let custom_keepalive = o
        .keepalive
        .is_some_and(|k| k.interval != Keepalive::INTERVAL || k.count != Keepalive::COUNT);
    let linux_only = [
        ("--mss", o.mss.is_some()),
        (
            "--congestion",
            o.congestion.client.is_some() || o.congestion.target.is_some(),
        ),
        ("--user-timeout", o.user_timeout.is_some()),
        ("--source", o.source.is_some()),
        ("--keepalive INTERVAL/COUNT", custom_keepalive),
    ];
    if !cfg!(target_os = "linux") {
        if let Some((name, _)) = linux_only.iter().find(|(_, given)| *given) {
            return Err(format!("{name} is supported on Linux only"));
        }
    }
    let names = [&o.congestion.client, &o.congestion.target];
    for (i, name) in names.iter().enumerate() {
        let Some(name) = name else { continue };
        if names[..i].contains(&&Some(name.clone())) {
            continue;
        }
        sys::check_congestion(name).map_err(|e| format!("--congestion: {e}"))?;
    }
    Ok(())
}

/// Options of one mode written on a line of the other are a mistake worth naming.
/// (Defaults from the command line are not checked: they apply where they fit.)
fn check_mode_options(line: &RuleDraft) -> Result<(), String> {
    if line.connect {
        let forward_only = [
            ("--balance", line.balance.is_some()),
            ("--health-interval", line.health_interval.is_some()),
            ("--down-after", line.down_after.is_some()),
            ("--down-for", line.down_for.is_some()),
        ];
        if let Some((name, _)) = forward_only.iter().find(|(_, given)| *given) {
            return Err(format!("{name} applies to a target list, not to --connect"));
        }
    } else {
        if line.targets.is_empty() {
            return Err("missing TARGET after LISTEN (see tcpfwd --help)".into());
        }
        let connect_only = [
            ("--connect-ports", line.connect_ports.is_some()),
            ("--connect-allow", line.connect_allow.is_some()),
            ("--connect-deny", line.connect_deny.is_some()),
            ("--auth", line.auth.is_some()),
        ];
        if let Some((name, _)) = connect_only.iter().find(|(_, given)| *given) {
            return Err(format!("{name} applies only to --connect rules"));
        }
    }
    Ok(())
}
