//! The `--check` printer: every rule as one normalised line that reads back as the same rule
//! (passwords shown as `***`).

use std::fmt;
use std::time::Duration;

use crate::addr::Acl;
use crate::config::rule::{Mode, Options, Ports, Process, Rule, Target};
use crate::config::units::{ShowDuration, ShowSize};
use crate::log::Verbosity;
use crate::sys::Keepalive;
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
        write!(f, "{}", self.addr)?;
        if self.weight != 1 {
            write!(f, ",weight={}", self.weight)?;
        }
        if let Some(n) = self.max_conns {
            write!(f, ",max-conns={n}")?;
        }
        if self.backup {
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

/// The normalised one-line form printed by `--check`: it reads back as a command line
/// (except passwords, shown as `***`).
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.mode {
            Mode::Forward(fw) => {
                write!(f, "{}", self.listen)?;
                for target in &fw.targets {
                    write!(f, " {target}")?;
                }
                write!(f, " --balance {}", fw.balance.name())?;
                show_timeout(f, "health-interval", fw.health.interval)?;
                write!(f, " --down-after {}", fw.health.down_after)?;
                write!(f, " --down-for {}", ShowDuration(fw.health.down_for))?;
            }
            Mode::Connect(policy) => {
                write!(f, "--connect {}", self.listen)?;
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
        self.options.fmt(f)
    }
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
        match self.keepalive {
            None => write!(f, " --keepalive 0")?,
            Some(k) => {
                write!(f, " --keepalive {}", ShowDuration(k.idle))?;
                if k.interval != Keepalive::INTERVAL || k.count != Keepalive::COUNT {
                    write!(f, "/{}/{}", ShowDuration(k.interval), k.count)?;
                }
            }
        }
        write!(f, " --max-conns {}", self.max_conns)?;
        show_acl(f, "", &self.clients)?;
        write!(f, " --buffer-size {}", ShowSize(self.buffer_size))?;
        if let Some(size) = self.segment_size {
            write!(f, " --segment-size {}", ShowSize(size))?;
        }
        if let Some(mss) = self.mss {
            write!(f, " --mss {mss}")?;
        }
        match (&self.congestion.client, &self.congestion.target) {
            (Some(c), Some(t)) if c == t => write!(f, " --congestion {c}")?,
            (Some(c), Some(t)) => write!(f, " --congestion client={c},target={t}")?,
            (Some(c), None) => write!(f, " --congestion client={c}")?,
            (None, Some(t)) => write!(f, " --congestion target={t}")?,
            (None, None) => {}
        }
        if let Some(timeout) = self.user_timeout {
            write!(f, " --user-timeout {}", ShowDuration(timeout))?;
        }
        if let Some(source) = self.source {
            write!(f, " --source {source}")?;
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
