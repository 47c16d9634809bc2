//! The `--check` printer: every rule as one normalised line that reads back as the same rule
//! (passwords shown as `***`); a port range as one line with its count.

use std::fmt;
use std::time::Duration;

use crate::addr::Acl;
use crate::addr::TargetAddr;
use crate::config::rule::{Mode, Options, Ports, Process, Rule, Span, Target, DEFAULT_GRACE};
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
        write!(f, " --backlog {}", self.backlog)?;
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
        if self.grace != DEFAULT_GRACE {
            parts.push(format!("--grace {}", ShowDuration(self.grace)));
        }
        write!(f, "{}", parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use crate::config::argv::{parse_args, Command};
    use crate::config::file::split;
    use crate::config::rule::{Mode, Rule};

    /// A small deterministic generator (xorshift64*): the same cases on every run.
    struct Random(u64);

    impl Random {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len() as u64) as usize]
        }

        fn number(&mut self, low: u64, high: u64) -> u64 {
            low + self.below(high - low + 1)
        }
    }

    fn duration(r: &mut Random) -> String {
        let whole = match r.below(4) {
            0 => 0,
            1 => r.below(10),
            2 => r.below(1_000),
            _ => r.below(100_000),
        };
        let digits = r.below(10) as usize;
        let fraction: String = (0..digits)
            .map(|_| char::from(b'0' + r.below(10) as u8))
            .collect();
        let number = match (whole, digits) {
            (_, 0) => whole.to_string(),
            (0, _) if r.chance(30) => format!(".{fraction}"),
            _ => format!("{whole}.{fraction}"),
        };
        format!("{number}{}", r.pick(&["ms", "s", "m", "h", ""]))
    }

    fn size(r: &mut Random) -> String {
        match r.below(3) {
            0 => r.number(1, 70_000).to_string(),
            1 => format!("{}k", r.number(1, 70_000)),
            _ => format!("{}m", r.number(1, 70)),
        }
    }

    fn host(r: &mut Random) -> String {
        match r.below(5) {
            0 => format!("10.{}.{}.{}", r.below(256), r.below(256), r.below(256)),
            1 => r
                .pick(&["[::1]", "[fd00::5]", "[2001:db8::a:b]", "[::ffff:1.2.3.4]"])
                .into(),
            2 => r
                .pick(&["app.example", "db-1.internal", "localhost", "a_b.c"])
                .into(),
            3 => "127.0.0.1".into(),
            _ => r
                .pick(&["[-x]", "-x", "[h]", "[1.2.3.4]", "a b", ""])
                .into(),
        }
    }

    fn cidr(r: &mut Random) -> String {
        match r.below(3) {
            0 => format!("10.{}.0.0/{}", r.below(256), r.below(34)),
            1 => format!("fd00::{:x}/{}", r.below(65_536), r.below(130)),
            _ => format!("192.168.{}.{}", r.below(256), r.below(256)),
        }
    }

    fn credential(r: &mut Random) -> String {
        let alphabet = ['a', 'Z', '0', ' ', '"', '\\', '#', ':', '*', 'é', '\t'];
        let word = |r: &mut Random| -> String {
            (0..r.below(6))
                .map(|_| alphabet[r.below(alphabet.len() as u64) as usize])
                .collect()
        };
        format!("{}:{}", word(r), word(r))
    }

    /// A random command line for one rule: mostly valid, sometimes not.
    fn command_line(r: &mut Random) -> Vec<String> {
        let mut words: Vec<String> = Vec::new();
        let port = r.below(65_536);
        let listen = match r.below(3) {
            0 => format!(":{port}"),
            _ => format!("{}:{port}", host(r)),
        };
        let connect = r.chance(25);
        if connect {
            words.extend(["--connect".into(), listen]);
            if r.chance(50) {
                let ports = match r.below(3) {
                    0 => "any".to_string(),
                    _ => (0..r.number(1, 3))
                        .map(|_| r.number(1, 65_535).to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                };
                words.extend(["--connect-ports".into(), ports]);
            }
            for _ in 0..r.below(3) {
                let name = r.pick(&["--connect-allow", "--connect-deny"]);
                words.extend([name.into(), cidr(r)]);
            }
            for _ in 0..r.below(3) {
                words.extend(["--auth".into(), credential(r)]);
            }
        } else {
            words.push(listen);
            for _ in 0..r.number(1, 3) {
                let mut target = format!("{}:{}", host(r), r.number(1, 65_535));
                if r.chance(30) {
                    target += &format!(",weight={}", r.number(1, 1_000));
                }
                if r.chance(30) {
                    target += &format!(",max-conns={}", r.number(1, 2_000_000));
                }
                if r.chance(20) {
                    target += ",backup";
                }
                words.push(target);
            }
            if r.chance(50) {
                let policy = r.pick(&["round-robin", "least-conn", "source-hash", "first"]);
                words.extend(["--balance".into(), policy.into()]);
            }
            for name in ["--health-interval", "--down-for"] {
                if r.chance(40) {
                    words.extend([name.into(), duration(r)]);
                }
            }
            if r.chance(30) {
                words.extend(["--down-after".into(), r.number(1, 100).to_string()]);
            }
        }
        for name in [
            "--connect-timeout",
            "--idle-timeout",
            "--fin-timeout",
            "--keepalive",
        ] {
            if r.chance(40) {
                words.extend([name.into(), duration(r)]);
            }
        }
        if r.chance(30) {
            let n = r.pick(&["1", "511", "65535", "65536", "0"]);
            words.extend(["--backlog".into(), n.into()]);
        }
        if r.chance(40) {
            let n = r.pick(&[
                "1",
                "1024",
                "999999",
                "1000000",
                "1000001",
                "18446744073709551615",
            ]);
            words.extend(["--max-conns".into(), n.into()]);
        }
        for _ in 0..r.below(3) {
            words.extend([r.pick(&["--allow", "--deny"]).into(), cidr(r)]);
        }
        for name in ["--buffer-size", "--segment-size", "--mss"] {
            if r.chance(30) {
                words.extend([name.into(), size(r)]);
            }
        }
        for flag in ["--nagle", "--accept-proxy"] {
            if r.chance(20) {
                words.push(flag.into());
            }
        }
        if r.chance(20) {
            words.extend([
                "--proxy-protocol".into(),
                r.pick(&["v1", "v2", "1", "2"]).into(),
            ]);
        }
        if cfg!(target_os = "linux") {
            acceleration(r, &mut words);
        }
        words
    }

    /// The Linux-only options of `--congestion`, `--user-timeout`, `--source` and a keepalive
    /// interval and count (reno is built into every Linux kernel).
    fn acceleration(r: &mut Random, words: &mut Vec<String>) {
        if r.chance(25) {
            let legs = r.pick(&[
                "reno",
                "client=reno",
                "target=reno",
                "client=reno,target=reno",
                "target=reno,client=reno",
                "nosuchcc",
            ]);
            words.extend(["--congestion".into(), legs.into()]);
        }
        if r.chance(20) {
            words.extend(["--user-timeout".into(), duration(r)]);
        }
        if r.chance(25) {
            let ip = r.pick(&["127.0.0.2", "::1", "[::1]", "10.1.2.3", "0.0.0.0"]);
            words.extend(["--source".into(), ip.into()]);
        }
        if r.chance(25) {
            let interval = r.pick(&["1", "5s", "10s", "1m", "0", "1.5s"]);
            let k = format!("{}/{interval}/{}", r.number(1, 40_000), r.number(1, 130));
            words.extend(["--keepalive".into(), k]);
        }
    }

    fn parse(words: &[String]) -> Option<Rule> {
        match parse_args(words.iter().map(OsString::from).collect()) {
            Ok(Command::Run(mut setup)) => Some(setup.rules.remove(0)),
            _ => None,
        }
    }

    /// What `--check` shows of a rule: its passwords as `***`.
    fn masked(mut rule: Rule) -> Rule {
        if let Mode::Connect(policy) = &mut rule.mode {
            for user in &mut policy.users {
                user.password = "***".into();
            }
        }
        rule
    }

    #[test]
    fn what_check_prints_reads_back_as_the_same_rule() {
        let mut r = Random(0x7c9f_3a21_5be0_d417);
        let mut accepted = 0;
        for case in 0..20_000 {
            let words = command_line(&mut r);
            let Some(rule) = parse(&words) else { continue };
            accepted += 1;
            let printed = rule.to_string();
            // The config reader splits the printed line back into the same words.
            let again = split(&printed)
                .ok()
                .and_then(|tokens| parse(&tokens))
                .unwrap_or_else(|| {
                    panic!("case {case}: {words:?} printed {printed:?}, unreadable")
                });
            assert_eq!(
                again,
                masked(rule),
                "case {case}: {words:?} printed {printed:?}"
            );
            assert_eq!(again.to_string(), printed, "case {case}: not a fixed point");
        }
        // Enough of the cases are valid rules for this to test something.
        assert!(accepted > 2_000, "only {accepted} cases were valid rules");
    }
}
