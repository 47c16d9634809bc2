//! The command line, and each config-file line (which is a command line): lexopt → typed [`Rule`].

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use lexopt::prelude::*;

use crate::addr::{Acl, Cidr, HostPort, ListenAddr};
use crate::config;
use crate::rule::{
    Balance, ConnectPolicy, Credential, Forward, Health, Mode, Options, Ports, Process,
    ProxyVersion, Rule, Target, Verbosity,
};
use crate::units::{parse_duration, parse_size};

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Serve these rules.
    Run(Setup),
    /// Print the normalised rules and exit.
    Check(Setup),
    /// Print the help text.
    Help,
    /// Print the version.
    Version,
}

/// Every rule of the process and the process-wide options.
#[derive(Debug)]
pub struct Setup {
    /// Rules in written order.
    pub rules: Vec<Rule>,
    /// Process options.
    pub process: Process,
}

/// A usage or configuration error: exit status 2.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// Something wrong on the command line.
    Usage(String),
    /// Something wrong on a line of a config file.
    Line {
        /// The file as given.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The config file cannot be read.
    File {
        /// The file as given.
        path: String,
        /// The OS reason.
        reason: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Error::Usage(message) => write!(f, "{message}"),
            Error::Line {
                path,
                line,
                message,
            } => write!(f, "{path}:{line}: {message}"),
            Error::File { path, reason } => write!(f, "cannot read config file {path}: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

/// Parses the process's arguments (without the program name).
pub fn parse_args(args: Vec<OsString>) -> Result<Command, Error> {
    let line = parse_line(args).map_err(Error::Usage)?;
    if line.help {
        return Ok(Command::Help);
    }
    if line.version {
        return Ok(Command::Version);
    }
    let setup = match &line.config {
        Some(path) => {
            if line.rule.listen.is_some() || !line.rule.targets.is_empty() {
                return Err(Error::Usage(
                    "--config: write the rules in the file, not also on the command line".into(),
                ));
            }
            let file = config::load(path, &line.rule)?;
            Setup {
                rules: file.rules,
                process: line.process.or(&file.process).build(),
            }
        }
        None => {
            let rule = build_rule(&line.rule, &RuleDraft::default()).map_err(Error::Usage)?;
            Setup {
                rules: vec![rule],
                process: line.process.build(),
            }
        }
    };
    Ok(if line.check {
        Command::Check(setup)
    } else {
        Command::Run(setup)
    })
}

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
}

impl ProcessDraft {
    pub(crate) fn is_empty(&self) -> bool {
        self.stats.is_none() && self.verbosity.is_none()
    }

    /// Fills what this one leaves unset from `other`.
    pub(crate) fn or(&self, other: &ProcessDraft) -> ProcessDraft {
        ProcessDraft {
            stats: self.stats.clone().or_else(|| other.stats.clone()),
            verbosity: self.verbosity.or(other.verbosity),
        }
    }

    fn build(&self) -> Process {
        Process {
            stats: self.stats.clone(),
            verbosity: self.verbosity.unwrap_or_default(),
        }
    }
}

/// Rule options as written on one line; `None` = not given here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RuleDraft {
    pub(crate) listen: Option<ListenAddr>,
    connect: bool,
    pub(crate) targets: Vec<Target>,
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
    keepalive: Option<Option<Duration>>,
    max_conns: Option<usize>,
    allow: Option<Vec<Cidr>>,
    deny: Option<Vec<Cidr>>,
    buffer_size: Option<usize>,
    segment_size: Option<usize>,
    mss: Option<u32>,
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
            Long("config") => line.config = Some(value(&mut p, "config", |s| Ok(s.into()))?),
            Long("check") => line.check = true,
            Long("connect") => {
                let listen = value(&mut p, "connect", ListenAddr::parse)?;
                if d.listen.replace(listen).is_some() {
                    return Err("--connect: a line has one listen address".into());
                }
                d.connect = true;
            }
            Long("balance") => d.balance = Some(value(&mut p, "balance", Balance::parse)?),
            Long("health-interval") => {
                d.health_interval = Some(value(&mut p, "health-interval", parse_timeout)?)
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
            Long("max-conns") => d.max_conns = Some(value(&mut p, "max-conns", parse_count)?),
            Long("allow") => push(&mut d.allow, value(&mut p, "allow", Cidr::parse)?),
            Long("deny") => push(&mut d.deny, value(&mut p, "deny", Cidr::parse)?),
            Long("buffer-size") => {
                d.buffer_size = Some(value(&mut p, "buffer-size", parse_buffer)?)
            }
            Long("segment-size") => {
                d.segment_size = Some(value(&mut p, "segment-size", parse_segment)?)
            }
            Long("mss") => d.mss = Some(value(&mut p, "mss", parse_mss)?),
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

/// The first positional is LISTEN, the rest are TARGETs.
fn add_address(d: &mut RuleDraft, token: OsString) -> Result<(), String> {
    let text = token
        .into_string()
        .map_err(|t| format!("{t:?} is not valid UTF-8"))?;
    if d.listen.is_none() {
        d.listen = Some(ListenAddr::parse(&text).map_err(|e| format!("LISTEN {e}"))?);
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

fn parse_stats(text: &str) -> Result<HostPort, String> {
    HostPort::parse(text, true)
}

fn parse_count<T: std::str::FromStr + PartialOrd + From<u8>>(text: &str) -> Result<T, String> {
    match text.parse::<T>() {
        Ok(n) if n >= T::from(1) => Ok(n),
        _ => Err(format!("'{text}' is not a whole number of at least 1")),
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

fn parse_keepalive(text: &str) -> Result<Option<Duration>, String> {
    match parse_timeout(text)? {
        Some(d) if d.subsec_nanos() != 0 => Err(format!("'{text}': whole seconds only")),
        other => Ok(other),
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
    match text.split_once(':') {
        Some((user, password)) if !user.is_empty() => Ok(Credential {
            user: user.into(),
            password: password.into(),
        }),
        _ => Err("expected USER:PASS".into()),
    }
}

/// `HOST:PORT[,weight=N][,max-conns=N][,backup]`
pub(crate) fn parse_target(text: &str) -> Result<Target, String> {
    let mut parts = text.split(',');
    let addr = HostPort::parse(parts.next().unwrap_or_default(), false)?;
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
                target.max_conns = Some(parse_count(n).map_err(|e| format!("'{text}': {e}"))?)
            }
            None if flag == "backup" => target.backup = true,
            _ => {
                return Err(format!(
                    "'{text}': unknown flag '{flag}' (weight=N, max-conns=N, backup)"
                ))
            }
        }
    }
    Ok(target)
}

/// The line's own value, else the command line's default.
fn pick<T: Clone>(line: &Option<T>, default: &Option<T>) -> Option<T> {
    line.clone().or_else(|| default.clone())
}

/// Builds a typed rule from one line and the command line's defaults.
pub(crate) fn build_rule(line: &RuleDraft, defaults: &RuleDraft) -> Result<Rule, String> {
    let listen = line
        .listen
        .clone()
        .ok_or("missing LISTEN address (see tcpfwd --help)")?;
    check_mode_options(line)?;
    #[cfg(not(target_os = "linux"))]
    if pick(&line.mss, &defaults.mss).is_some() {
        return Err("--mss is supported on Linux only".into());
    }
    let base = Options::default();
    let options = Options {
        connect_timeout: pick(&line.connect_timeout, &defaults.connect_timeout)
            .unwrap_or(base.connect_timeout),
        idle_timeout: pick(&line.idle_timeout, &defaults.idle_timeout).unwrap_or(base.idle_timeout),
        fin_timeout: pick(&line.fin_timeout, &defaults.fin_timeout).unwrap_or(base.fin_timeout),
        keepalive: pick(&line.keepalive, &defaults.keepalive).unwrap_or(base.keepalive),
        max_conns: pick(&line.max_conns, &defaults.max_conns).unwrap_or(base.max_conns),
        clients: Acl {
            allow: pick(&line.allow, &defaults.allow).unwrap_or_default(),
            deny: pick(&line.deny, &defaults.deny).unwrap_or_default(),
        },
        buffer_size: pick(&line.buffer_size, &defaults.buffer_size).unwrap_or(base.buffer_size),
        segment_size: pick(&line.segment_size, &defaults.segment_size),
        mss: pick(&line.mss, &defaults.mss),
        nagle: pick(&line.nagle, &defaults.nagle).unwrap_or(base.nagle),
        proxy_protocol: pick(&line.proxy_protocol, &defaults.proxy_protocol),
        accept_proxy: pick(&line.accept_proxy, &defaults.accept_proxy).unwrap_or(false),
    };
    let mode = if line.connect {
        Mode::Connect(ConnectPolicy {
            ports: pick(&line.connect_ports, &defaults.connect_ports)
                .unwrap_or(Ports::Only(vec![443])),
            destinations: Acl {
                allow: pick(&line.connect_allow, &defaults.connect_allow).unwrap_or_default(),
                deny: pick(&line.connect_deny, &defaults.connect_deny).unwrap_or_default(),
            },
            users: pick(&line.auth, &defaults.auth).unwrap_or_default(),
        })
    } else {
        let base = Health::default();
        Mode::Forward(Forward {
            targets: line.targets.clone(),
            balance: pick(&line.balance, &defaults.balance).unwrap_or(Balance::RoundRobin),
            health: Health {
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
    })
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

/// The one-screen `--help`.
pub const HELP: &str = "\
tcpfwd - forward TCP connections, balance them over targets, or tunnel HTTP CONNECT

Usage:
  tcpfwd [OPTIONS] LISTEN TARGET [TARGET...]   forward each connection to one TARGET
  tcpfwd [OPTIONS] --connect LISTEN            HTTP CONNECT proxy
  tcpfwd [OPTIONS] --config FILE               every rule in FILE (options here are defaults)
  tcpfwd --check --config FILE                 validate FILE, print the rules, exit

LISTEN: HOST:PORT, [V6]:PORT or :PORT (IPv4 and IPv6).   TARGET: HOST:PORT or [V6]:PORT,
  with optional flags ,weight=N (1-1000, default 1) ,max-conns=N ,backup
DUR: 250ms 5s 1.5s 2m 1h, or bare seconds.   SIZE: 1500 16k 1m.

Rule options:                                      default
  --balance POLICY      round-robin|least-conn|source-hash|first   round-robin
  --connect-timeout DUR budget to connect to one target            5s
  --idle-timeout DUR    close after DUR with no byte either way    0 (never)
  --fin-timeout DUR     close half-closed pair quiet for DUR       60s
  --keepalive DUR       TCP keepalive idle time, whole seconds     60s
  --max-conns N         connections at once; then stop accepting   1024
  --allow CIDR          accept only these clients (repeatable)     all
  --deny CIDR           refuse these clients (repeatable, wins)    none
  --buffer-size SIZE    copy buffer per direction                  64k
  --segment-size SIZE   at most SIZE bytes per send (+NODELAY)     off
  --mss SIZE            TCP_MAXSEG on the listener (Linux)         off
  --nagle               leave Nagle's algorithm on                 off
  --proxy-protocol V    send PROXY header v1|v2 to the target      off
  --accept-proxy        expect a PROXY header from each client     off
  --health-interval DUR active TCP health probes                   off
  --down-after N        failed connects that mark a target down    1
  --down-for DUR        how long a failed target is skipped        10s
  --connect-ports LIST  CONNECT: allowed ports, or any             443
  --connect-allow CIDR  CONNECT: allowed destinations (repeatable) all
  --connect-deny CIDR   CONNECT: refused destinations (repeatable) none
  --auth USER:PASS      CONNECT: require Basic auth (repeatable)   none

Process options:
  --stats ADDR          Prometheus metrics at http://ADDR/metrics  off
  -v, -q                more / less logging on stderr
  -h, --help            this text        -V, --version    the version

Exit status: 2 usage or config error, 1 a listener cannot be opened.
";

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    fn rule(line: &str) -> Result<Rule, Error> {
        match parse_args(args(line))? {
            Command::Run(mut setup) => Ok(setup.rules.remove(0)),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn error(line: &str) -> String {
        rule(line).unwrap_err().to_string()
    }

    #[test]
    fn a_plain_forward_has_the_spec_defaults() {
        let r = rule(":8080 10.0.0.5:80").unwrap();
        assert_eq!(r.listen, ListenAddr::AnyHost(8080));
        assert_eq!(r.options, Options::default());
        let Mode::Forward(fw) = &r.mode else { panic!() };
        assert_eq!(fw.targets.len(), 1);
        assert_eq!(fw.balance, Balance::RoundRobin);
        assert_eq!(
            r.to_string(),
            ":8080 10.0.0.5:80 --balance round-robin --health-interval 0 --down-after 1 \
             --down-for 10s --connect-timeout 5s --idle-timeout 0 --fin-timeout 1m \
             --keepalive 1m --max-conns 1024 --buffer-size 64k"
        );
    }

    #[test]
    fn options_and_target_flags() {
        let r = rule(
            "127.0.0.1:0 a:1,weight=3,max-conns=7 b:2,backup --balance first --idle-timeout 1.5s \
             --allow 10.0.0.0/8 --deny 10.0.0.1 --buffer-size 32k --nagle --proxy-protocol v2",
        )
        .unwrap();
        let Mode::Forward(fw) = &r.mode else { panic!() };
        assert_eq!(fw.targets[0].weight, 3);
        assert_eq!(fw.targets[0].max_conns, Some(7));
        assert!(fw.targets[1].backup);
        assert_eq!(fw.balance, Balance::First);
        assert_eq!(r.options.idle_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(r.options.clients.allow.len(), 1);
        assert_eq!(r.options.buffer_size, 32 * 1024);
        assert!(r.options.nagle);
        assert_eq!(r.options.proxy_protocol, Some(ProxyVersion::V2));
        // The normalised form reads back as the same rule.
        let again = rule(&r.to_string()).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn connect_mode() {
        let r =
            rule("--connect 127.0.0.1:3128 --connect-ports 443,8443 --auth alice:s3cret").unwrap();
        let Mode::Connect(policy) = &r.mode else {
            panic!()
        };
        assert!(policy.ports.allows(8443) && !policy.ports.allows(80));
        assert_eq!(policy.users[0].password, "s3cret");
        assert!(r.to_string().contains("--auth alice:***"));
        assert!(!r.to_string().contains("s3cret"));
        assert!(
            !format!("{r:?}").contains("s3cret"),
            "debug output shows a password"
        );
    }

    #[test]
    fn check_lines_quote_what_needs_quotes() {
        let user = r##"al ice\"#"##;
        let tokens = ["--connect", ":1", "--auth", &format!("{user}:pw")];
        let Ok(Command::Run(setup)) = parse_args(tokens.iter().map(OsString::from).collect())
        else {
            panic!()
        };
        let line = setup.rules[0].to_string();
        assert!(line.contains(r##"--auth "al ice\\\"#:***""##), "{line}");
        // The config reader reads the token back as written.
        let again = config::split(&line).unwrap();
        assert!(again.contains(&format!("{user}:***")), "{again:?}");
    }

    #[test]
    fn errors_name_the_option() {
        assert_eq!(error(":1 a:1 --foo"), "unknown option --foo");
        assert!(error(":1 a:1 --idle-timeout 5x").starts_with("--idle-timeout: '5x'"));
        assert!(error(":1 a:1 --max-conns 0").starts_with("--max-conns:"));
        assert!(error(":1 a:1 --keepalive 1.5s").starts_with("--keepalive:"));
        assert!(error(":1 a:1 --balance fastest").starts_with("--balance:"));
        assert!(error(":1 a:1,weight=0").contains("weight"));
        assert!(error(":1 a:1,heavy").contains("unknown flag"));
        assert!(error(":1").contains("missing TARGET"));
        assert!(error("").contains("missing LISTEN"));
        assert!(error(":1 a:1 --auth u:p").contains("--auth applies only to --connect"));
        assert!(error("--connect :1 --balance first").contains("--balance applies"));
        assert!(error("--connect :1 a:1").contains("takes no TARGET"));
        assert!(error(":1 a:1 --connect-timeout").contains("missing argument"));
        assert!(error(":1 a:1 --nagle=yes").contains("nagle"));
    }

    #[test]
    fn help_and_version() {
        assert!(matches!(parse_args(args("--help")), Ok(Command::Help)));
        assert!(matches!(
            parse_args(args(":1 a:1 -V")),
            Ok(Command::Version)
        ));
        for option in [
            "--balance",
            "--connect-timeout",
            "--idle-timeout",
            "--fin-timeout",
            "--keepalive",
            "--max-conns",
            "--allow",
            "--deny",
            "--buffer-size",
            "--segment-size",
            "--mss",
            "--nagle",
            "--proxy-protocol",
            "--accept-proxy",
            "--health-interval",
            "--down-after",
            "--down-for",
            "--connect-ports",
            "--connect-allow",
            "--connect-deny",
            "--auth",
            "--stats",
            "--config",
            "--check",
        ] {
            assert!(HELP.contains(option), "--help misses {option}");
        }
        assert!(HELP.lines().count() <= 50, "--help must fit one screen");
    }
}
