//! The `--check` printer: every rule as one normalised line that reads back as the same rule
//! (passwords shown as `***`); a port range as one line with its count.

use std::fmt;
use std::time::Duration;

use crate::addr::Acl;
use crate::addr::TargetAddr;
use crate::config::rule::{Mode, Options, Ports, Process, Rule, Span, Target};
use crate::config::units::{ShowDuration, ShowSize};
use crate::log::Verbosity;
use crate::wire::proxy_header::Version as ProxyVersion;

/// A token as the config reader reads it back: quoted when it holds a space, quote,
/// backslash or `#`.
struct Token<'a>(&'a str);

impl fmt::Display for Token<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let plain = !self.0.is_empty()
            && !self
                .0
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, '"' | '\\' | '#'));
        if plain {
            return f.write_str(self.0);
        }
        f.write_str("\"")?;
        for c in self.0.chars() {
            if matches!(c, '"' | '\\') {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str("\"")
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write_target(f, self, None)
    }
}

/// A target; with `last`, its address as the range ending at that port.
fn write_target(f: &mut fmt::Formatter, target: &Target, last: Option<u16>) -> fmt::Result {
    let mut addr = target.addr.to_string();
    if let Some(last) = last {
        addr = format!("{addr}-{last}");
    }
    write!(f, "{}{}", Token(&addr), Flags(target))
}

/// A target's flags after its address.
struct Flags<'a>(&'a Target);

impl fmt::Display for Flags<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let target = self.0;
        if target.weight != 1 {
            write!(f, ",weight={}", target.weight)?;
        }
        if let Some(n) = target.max_conns {
            write!(f, ",max-conns={n}")?;
        }
        if target.backup {
            write!(f, ",backup")?;
        }
        Ok(())
    }
}

/// Writes ` --name VALUE` with `0` for "never".
fn show_timeout(f: &mut fmt::Formatter, name: &str, value: Option<Duration>) -> fmt::Result {
    match value {
        Some(d) => write!(f, " --{name} {}", ShowDuration(d)),
        None => write!(f, " --{name} 0"),
    }
}

/// The normalised one-line form of one rule (for a port of a range: that port alone): it
/// reads back as a command line (except passwords, shown as `***`).
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write_rule(f, self, None)
    }
}

/// What `--check` prints for a list of rules: one line per rule, except that the rules of a
/// port range are one line, the range's, ending in a comment with its count (`# 100 ports`).
/// Read back as a config file, the lines give the same rules.
pub struct Listing<'a>(pub &'a [Rule]);

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for rule in self.0 {
            match &rule.span {
                None => writeln!(f, "{rule}")?,
                Some(span) if span.index == 0 => {
                    write_rule(f, rule, Some(span))?;
                    writeln!(f, " # {} ports", span.count)?;
                }
                // Printed with the first port of its range.
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// Writes a rule; with the `span` of the first port of a range, as that whole range.
fn write_rule(f: &mut fmt::Formatter, rule: &Rule, span: Option<&Span>) -> fmt::Result {
    // The last port of a range that starts at `first`.
    let last = |first: u16| span.map(|s| first + (s.count - 1));
    match &rule.mode {
        Mode::Forward(fw) => {
            let listen = rule.listen.to_string();
            match rule.listen.port().and_then(last) {
                Some(end) => write!(f, "{}", Token(&format!("{listen}-{end}")))?,
                None => write!(f, "{}", Token(&listen))?,
            }
            for (i, target) in fw.targets.iter().enumerate() {
                let ranged = span.is_some_and(|s| s.ranged.get(i).copied().unwrap_or(false));
                let end = match &target.addr {
                    TargetAddr::Net(hp) if ranged => last(hp.port),
                    _ => None,
                };
                f.write_str(" ")?;
                write_target(f, target, end)?;
            }
            write!(f, " --balance {}", fw.balance.name())?;
            show_timeout(f, "health-interval", fw.health.interval)?;
            write!(f, " --down-after {}", fw.health.down_after)?;
            write!(f, " --down-for {}", ShowDuration(fw.health.down_for))?;
        }
        Mode::Connect(policy) => {
            write!(f, "--connect {}", rule.listen)?;
            match &policy.ports {
                Ports::Any => write!(f, " --connect-ports any")?,
                Ports::Only(list) => {
                    let list: Vec<String> = list.iter().map(u16::to_string).collect();
                    write!(f, " --connect-ports {}", list.join(","))?;
                }
            }
            show_acl(f, "connect-", &policy.destinations)?;
            for cred in &policy.users {
                write!(f, " --auth {}", Token(&format!("{}:***", cred.user)))?;
            }
        }
    }
    write!(f, "{}", rule.options)
}

fn show_acl(f: &mut fmt::Formatter, prefix: &str, acl: &Acl) -> fmt::Result {
    for cidr in &acl.allow {
        write!(f, " --{prefix}allow {cidr}")?;
    }
    for cidr in &acl.deny {
        write!(f, " --{prefix}deny {cidr}")?;
    }
    Ok(())
}

impl fmt::Display for Options {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            " --connect-timeout {}",
            ShowDuration(self.connect_timeout)
        )?;
        show_timeout(f, "idle-timeout", self.idle_timeout)?;
        show_timeout(f, "fin-timeout", self.fin_timeout)?;
        show_timeout(f, "keepalive", self.keepalive)?;
        write!(f, " --max-conns {}", self.max_conns)?;
        show_acl(f, "", &self.clients)?;
        write!(f, " --buffer-size {}", ShowSize(self.buffer_size))?;
        if let Some(size) = self.segment_size {
            write!(f, " --segment-size {}", ShowSize(size))?;
        }
        if let Some(mss) = self.mss {
            write!(f, " --mss {mss}")?;
        }
        if self.nagle {
            write!(f, " --nagle")?;
        }
        match self.proxy_protocol {
            Some(ProxyVersion::V1) => write!(f, " --proxy-protocol v1")?,
            Some(ProxyVersion::V2) => write!(f, " --proxy-protocol v2")?,
            None => {}
        }
        if self.accept_proxy {
            write!(f, " --accept-proxy")?;
        }
        Ok(())
    }
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(stats) = &self.stats {
            parts.push(format!("--stats {stats}"));
        }
        match self.verbosity {
            Verbosity::Quiet => parts.push("-q".into()),
            Verbosity::Normal => {}
            Verbosity::Verbose => parts.push("-v".into()),
        }
        write!(f, "{}", parts.join(" "))
    }
}
