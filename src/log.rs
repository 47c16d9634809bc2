//! Logging on stderr: one `key=value` line per finished connection, plus start-up and trouble.

use crate::addr::Endpoint;
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use crate::end::End;

/// How much is logged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// Problems only.
    Quiet,
    /// One line per connection, start-up and problems.
    #[default]
    Normal,
    /// Everything, including each failover step.
    Verbose,
}

static LEVEL: AtomicU8 = AtomicU8::new(1);

/// Sets the process-wide verbosity.
pub fn set_verbosity(v: Verbosity) {
    LEVEL.store(v as u8, Ordering::Relaxed);
}

fn enabled(v: Verbosity) -> bool {
    LEVEL.load(Ordering::Relaxed) >= v as u8
}

/// Everything the per-connection line says.
pub struct Record<'a> {
    /// The client's address (as carried by a PROXY header, if accepted); `unix` for a
    /// Unix-domain client.
    pub client: &'a Endpoint,
    /// The rule's listen address as written.
    pub listen: &'a str,
    /// The address actually connected, if any.
    pub target: Option<&'a Endpoint>,
    /// Bytes client → target.
    pub up: u64,
    /// Bytes target → client.
    pub down: u64,
    /// Time from accept to end.
    pub duration: Duration,
    /// Why it ended.
    pub end: End,
    /// The user name tried, for CONNECT authentication failures.
    pub user: Option<&'a str>,
}

impl fmt::Display for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let listen = Escaped(self.listen);
        write!(f, "client={} listen={listen} target=", self.client)?;
        match self.target {
            // A socket path may hold spaces.
            Some(t) => write!(f, "{}", Escaped(&t.to_string()))?,
            None => write!(f, "-")?,
        }
        write!(
            f,
            " up={} down={} dur={}.{:03} end={}",
            self.up,
            self.down,
            self.duration.as_secs(),
            self.duration.subsec_millis(),
            self.end
        )?;
        if let Some(user) = self.user {
            write!(f, " user={}", Escaped(user))?;
        }
        Ok(())
    }
}

/// Keeps a client-supplied value on one line and free of spaces.
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_ascii_graphic() && c != '\\' {
                write!(f, "{c}")?;
            } else {
                write!(f, "{}", c.escape_unicode())?;
            }
        }
        Ok(())
    }
}

/// Logs a finished connection (only problems with `-q`).
pub fn connection(record: &Record) {
    if enabled(Verbosity::Normal) || !record.end.is_clean() {
        line(format_args!("{record}"));
    }
}

/// Start-up information (left out with `-q`).
pub fn info(args: fmt::Arguments) {
    if enabled(Verbosity::Normal) {
        line(args);
    }
}

/// Detail for `-v` only.
pub fn detail(args: fmt::Arguments) {
    if enabled(Verbosity::Verbose) {
        line(args);
    }
}

/// A problem: always logged.
pub fn problem(args: fmt::Arguments) {
    line(args);
}

fn line(args: fmt::Arguments) {
    // One write per line under the lock, so lines from many threads never interleave.
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{args}");
}

/// Logs a recurring trouble once per burst: the first time, then not again until it cleared.
#[derive(Default)]
pub struct Burst(AtomicBool);

impl Burst {
    /// A burst that has not started (usable in a `static`).
    pub const fn new() -> Burst {
        Burst(AtomicBool::new(false))
    }

    /// Logs `args` as a problem if this is the start of a burst.
    pub fn problem(&self, args: fmt::Arguments) {
        if !self.0.swap(true, Ordering::Relaxed) {
            problem(args);
        }
    }

    /// The trouble has cleared: the next occurrence is logged again.
    pub fn clear(&self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_format() {
        let record = Record {
            client: &Endpoint::Ip("127.0.0.2:40000".parse().unwrap()),
            listen: ":8080",
            target: None,
            up: 12,
            down: 3456,
            duration: Duration::from_millis(1234),
            end: End::AuthFailed,
            user: Some("mal lory"),
        };
        assert_eq!(
            record.to_string(),
            "client=127.0.0.2:40000 listen=:8080 target=- up=12 down=3456 dur=1.234 \
             end=auth-failed user=mal\\u{20}lory"
        );
    }
}
