//! What the two copier threads of one connection share: when bytes last moved each way, which
//! direction has ended, why the connection ended, and whether a timeout has expired.

use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::log::End;

/// The relay's timeouts; `None` = never.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// Close when neither direction moved a byte for this long.
    pub idle: Option<Duration>,
    /// Once one direction ended, close when the other moved no byte for this long.
    pub fin: Option<Duration>,
}

/// One direction of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client → target.
    Up = 0,
    /// Target → client.
    Down = 1,
}

impl Direction {
    fn other(self) -> Direction {
        match self {
            Direction::Up => Direction::Down,
            Direction::Down => Direction::Up,
        }
    }

    /// The end when reading this direction's source fails.
    pub fn reader_reset(self) -> End {
        match self {
            Direction::Up => End::ClientReset,
            Direction::Down => End::TargetReset,
        }
    }

    /// The end when writing this direction's destination fails.
    pub fn writer_reset(self) -> End {
        self.other().reader_reset()
    }

    fn eof(self) -> End {
        match self {
            Direction::Up => End::ClientEof,
            Direction::Down => End::TargetEof,
        }
    }
}

/// Shared state of one connection. Times are milliseconds since the relay started, in
/// `AtomicUsize` (32-bit targets have no 64-bit atomics).
pub struct Watch {
    timeouts: Timeouts,
    start: Instant,
    moved_at: [AtomicUsize; 2],
    /// Time + 1 at which a direction reached EOF; 0 while it runs.
    finished_at: [AtomicUsize; 2],
    /// Index + 1 into [`End::ALL`] of the end to report; 0 while none.
    end: AtomicUsize,
}

impl Watch {
    /// A watch starting now.
    pub fn new(timeouts: Timeouts) -> Watch {
        Watch {
            timeouts,
            start: Instant::now(),
            moved_at: Default::default(),
            finished_at: Default::default(),
            end: AtomicUsize::new(0),
        }
    }

    fn now(&self) -> usize {
        usize::try_from(self.start.elapsed().as_millis()).unwrap_or(usize::MAX)
    }

    /// Sets the socket timeouts a copier blocks with: the shortest configured timeout, so it
    /// wakes up to check (none when no timeout is configured).
    pub fn arm(&self, from: &TcpStream, to: &TcpStream) {
        let tick = match (self.timeouts.idle, self.timeouts.fin) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let _ = from.set_read_timeout(tick);
        let _ = to.set_write_timeout(tick);
    }

    /// Bytes moved in `dir`.
    pub fn moved(&self, dir: Direction) {
        if self.timeouts.idle.is_some() || self.timeouts.fin.is_some() {
            self.moved_at[dir as usize].store(self.now(), Ordering::Relaxed);
        }
    }

    /// `dir` reached EOF: a clean end, unless something else was recorded first.
    pub fn finished(&self, dir: Direction) {
        self.finished_at[dir as usize].store(self.now() + 1, Ordering::Relaxed);
        self.record(dir.eof());
    }

    /// Records why the connection ends. The first end wins, except that a reset, timeout or
    /// error replaces a clean EOF: it is the news worth logging.
    pub fn record(&self, end: End) {
        let code = End::ALL.iter().position(|e| *e == end).map_or(0, |i| i + 1);
        let _ = self
            .end
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| match current
                .checked_sub(1)
                .and_then(|i| End::ALL.get(i))
            {
                None => Some(code),
                Some(old) if old.is_clean() && !end.is_clean() => Some(code),
                Some(_) => None,
            });
    }

    /// Why the connection ended.
    pub fn end(&self) -> End {
        let code = self.end.load(Ordering::Acquire);
        code.checked_sub(1)
            .and_then(|i| End::ALL.get(i).copied())
            .unwrap_or(End::Error)
    }

    /// Called when a blocking call in `dir` timed out: the end if a timeout has expired, else
    /// how long to block before checking again.
    pub fn check(&self, dir: Direction) -> Result<Duration, End> {
        let now = self.now();
        let mut wait = usize::MAX;
        if let Some(idle) = self.timeouts.idle.map(millis) {
            let last = self
                .moved_at
                .iter()
                .map(|t| t.load(Ordering::Relaxed))
                .max()
                .unwrap_or(0);
            let quiet = now.saturating_sub(last);
            if quiet >= idle {
                return Err(End::IdleTimeout);
            }
            wait = wait.min(idle - quiet);
        }
        if let Some(fin) = self.timeouts.fin.map(millis) {
            let other_finished = self.finished_at[dir.other() as usize].load(Ordering::Relaxed);
            if other_finished == 0 {
                wait = wait.min(fin);
            } else {
                let since =
                    (other_finished - 1).max(self.moved_at[dir as usize].load(Ordering::Relaxed));
                let quiet = now.saturating_sub(since);
                if quiet >= fin {
                    return Err(End::FinTimeout);
                }
                wait = wait.min(fin - quiet);
            }
        }
        Ok(Duration::from_millis(wait.max(1) as u64))
    }
}

fn millis(d: Duration) -> usize {
    usize::try_from(d.as_millis()).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_replaces_a_clean_end_but_not_the_reverse() {
        let w = Watch::new(Timeouts::default());
        w.finished(Direction::Up);
        assert_eq!(w.end(), End::ClientEof);
        w.finished(Direction::Down);
        assert_eq!(w.end(), End::ClientEof);
        w.record(End::TargetReset);
        assert_eq!(w.end(), End::TargetReset);
        w.record(End::ClientReset);
        assert_eq!(w.end(), End::TargetReset);
    }

    #[test]
    fn directions_name_the_right_side() {
        assert_eq!(Direction::Up.reader_reset(), End::ClientReset);
        assert_eq!(Direction::Up.writer_reset(), End::TargetReset);
        assert_eq!(Direction::Down.reader_reset(), End::TargetReset);
        assert_eq!(Direction::Down.writer_reset(), End::ClientReset);
    }
}
