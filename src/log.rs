//! Logging on stderr: one `key=value` line per finished connection, plus start-up and trouble.

use crate::addr::Endpoint;
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// A step in the process's life after start-up (reloaded, stopping, handed over): always
/// logged, since `-q` leaves out only clean ends and start-up information.
pub fn event(args: fmt::Arguments) {
    line(args);
}

/// Writes one line to stderr with one `write()`. Formatted first, whole: stderr is
/// unbuffered, so `writeln!` straight to it would make a system call per formatted piece
/// (about 30 for a connection line). One write of a whole line also keeps lines from many
/// threads, and from other processes writing to the same place, from interleaving: a write
/// of at most PIPE_BUF bytes (4 KiB on Linux) to a pipe is atomic (POSIX), the terminal
/// driver takes each write whole, and a file gets each write whole at its own offset (with
/// O_APPEND, or one shared open file, Linux serialises the offset). Lines are short (values
/// in them are shortened and escaped), and during a hand-over two processes share stderr.
/// std's lock around the write is held for that one call only, and costs no system call when
/// no other thread logs at that instant.
fn line(args: fmt::Arguments) {
    let mut text = args.to_string();
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// While a trouble lasts, it is logged again at most this often.
pub const REPEAT: Duration = Duration::from_secs(5);

/// A burst ends only once its trouble has not happened for this long, so a trouble that
/// comes and goes (a freed place taken at once, memory short now and then) stays one burst.
pub const QUIET: Duration = Duration::from_secs(2);

/// Logs a recurring trouble as a burst: one line when it starts, at most one line per
/// [`REPEAT`] while it lasts (with how often it happened), and one line when it ends (the
/// caller's, with what [`Burst::clear`] returns), once it has not happened for [`QUIET`]. A log ring on a router keeps the rest.
pub struct Burst {
    /// Whether a burst is on: the lock is taken only then (clearing is on every hot path).
    on: AtomicBool,
    span: Mutex<Span>,
}

/// The burst under way.
struct Span {
    since: Option<Instant>,
    told: Option<Instant>,
    last: Option<Instant>,
    count: u64,
}

/// A burst that ended: how long it lasted and how often the trouble happened in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ended {
    /// From the first occurrence to the last.
    pub lasted: Duration,
    /// Occurrences, the first included.
    pub count: u64,
}

impl fmt::Display for Ended {
    /// `25.1 s`: how long it lasted, to a tenth of a second.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let tenths = self.lasted.as_secs() * 10 + u64::from(self.lasted.subsec_millis() / 100);
        write!(f, "{}.{} s", tenths / 10, tenths % 10)
    }
}

impl Default for Burst {
    fn default() -> Burst {
        Burst::new()
    }
}

impl Burst {
    /// A burst that has not started (usable in a `static`).
    pub const fn new() -> Burst {
        Burst {
            on: AtomicBool::new(false),
            span: Mutex::new(Span {
                since: None,
                told: None,
                last: None,
                count: 0,
            }),
        }
    }

    fn span(&self) -> std::sync::MutexGuard<'_, Span> {
        self.span.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One more occurrence: logs `args` as a problem if it starts a burst, or if the last line
    /// about it is [`REPEAT`] old (then with how often it happened since).
    pub fn problem(&self, args: fmt::Arguments) {
        let now = Instant::now();
        let mut span = self.span();
        span.count += 1;
        span.last = Some(now);
        match (span.since, span.told) {
            (None, _) | (_, None) => {
                span.since = Some(now);
                span.told = Some(now);
                self.on.store(true, Ordering::Relaxed);
                problem(args);
            }
            (Some(since), Some(told)) if now.duration_since(told) >= REPEAT => {
                let lasted = Ended {
                    lasted: now.duration_since(since),
                    count: span.count,
                };
                span.told = Some(now);
                problem(format_args!(
                    "{args} (still: {} times in {lasted})",
                    lasted.count
                ));
            }
            _ => {}
        }
    }

    /// The trouble did not happen this time: if a burst is on and its trouble has not
    /// happened for [`QUIET`], the burst is over; returns it for the caller to log one line
    /// about. The next occurrence starts a new burst.
    pub fn clear(&self) -> Option<Ended> {
        if !self.on.load(Ordering::Relaxed) {
            return None;
        }
        let mut span = self.span();
        let (since, last) = (span.since?, span.last?);
        if last.elapsed() < QUIET {
            return None;
        }
        self.on.store(false, Ordering::Relaxed);
        let count = std::mem::take(&mut span.count);
        (span.since, span.told, span.last) = (None, None, None);
        Some(Ended {
            lasted: last.duration_since(since),
            count,
        })
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

    #[test]
    fn a_burst_counts_its_occurrences_and_ends_once_quiet() {
        let burst = Burst::new();
        assert_eq!(burst.clear(), None);
        for _ in 0..5 {
            burst.problem(format_args!("trouble"));
        }
        // Not yet quiet: still the same burst.
        assert_eq!(burst.clear(), None);
        burst.problem(format_args!("trouble"));
        std::thread::sleep(QUIET);
        let ended = burst.clear().unwrap();
        assert_eq!(ended.count, 6);
        assert!(ended.lasted < QUIET, "{ended}");
        assert_eq!(burst.clear(), None);
        let shown = Ended {
            lasted: Duration::from_millis(25_160),
            count: 1,
        };
        assert_eq!(shown.to_string(), "25.1 s");
    }
}
