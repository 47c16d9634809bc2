//! `--idle-timeout` and `--fin-timeout` for one connection: when bytes last moved each way,
//! which direction has ended, and whether a timeout has expired. The copiers block with a
//! socket timeout of the shortest configured one, and ask here when it fires.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::end::End;
use crate::relay::verdict::Direction;
use crate::stream::Stream;

/// The relay's timeouts; `None` = never.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// Close when neither direction moved a byte for this long.
    pub idle: Option<Duration>,
    /// Once one direction ended, close when the other moved no byte for this long.
    pub fin: Option<Duration>,
}

impl Timeouts {
    fn any(&self) -> bool {
        self.idle.is_some() || self.fin.is_some()
    }
}

/// The clocks both copiers of one connection share. Times are milliseconds since the relay
/// started, in `AtomicUsize` (32-bit targets have no 64-bit atomics).
pub struct Timers {
    timeouts: Timeouts,
    start: Instant,
    moved_at: [AtomicUsize; 2],
    /// Time + 1 at which a direction reached EOF; 0 while it runs.
    finished_at: [AtomicUsize; 2],
}

impl Timers {
    /// Timers starting now.
    pub fn new(timeouts: Timeouts) -> Timers {
        Timers {
            timeouts,
            start: Instant::now(),
            moved_at: Default::default(),
            finished_at: Default::default(),
        }
    }

    fn now(&self) -> usize {
        millis(self.start.elapsed())
    }

    /// Sets the socket timeouts a copier blocks with: the shortest configured timeout, so it
    /// wakes up to check. Nothing at all when no timeout is configured (the sockets block
    /// without one already).
    pub fn arm(&self, from: &Stream, to: &Stream) {
        let tick = match (self.timeouts.idle, self.timeouts.fin) {
            (Some(a), Some(b)) => a.min(b),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => return,
        };
        let _ = from.set_read_timeout(Some(tick));
        let _ = to.set_write_timeout(Some(tick));
    }

    /// Bytes moved in `dir`.
    pub fn moved(&self, dir: Direction) {
        if self.timeouts.any() {
            self.moved_at[dir as usize].store(self.now(), Ordering::Relaxed);
        }
    }

    /// `dir` reached EOF.
    pub fn finished(&self, dir: Direction) {
        self.finished_at[dir as usize].store(self.now() + 1, Ordering::Relaxed);
    }

    /// Whether `dir` reached EOF (and passed it on).
    pub fn has_finished(&self, dir: Direction) -> bool {
        self.finished_at[dir as usize].load(Ordering::Relaxed) != 0
    }

    /// Called when a blocking call in `dir` timed out: the end if a timeout has expired, else
    /// how long to block before checking again.
    fn check(&self, dir: Direction) -> Result<Duration, End> {
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

impl Timers {
    /// After a read in `dir` timed out: the end if a timeout expired, else the socket waits
    /// until the next check is due.
    pub fn rearm_read(&self, from: &Stream, dir: Direction) -> Result<(), End> {
        let left = self.check(dir)?;
        let _ = from.set_read_timeout(Some(left));
        Ok(())
    }

    /// After a write in `dir` timed out: as [`Timers::rearm_read`].
    pub fn rearm_write(&self, to: &Stream, dir: Direction) -> Result<(), End> {
        let left = self.check(dir)?;
        let _ = to.set_write_timeout(Some(left));
        Ok(())
    }
}

fn millis(d: Duration) -> usize {
    usize::try_from(d.as_millis()).unwrap_or(usize::MAX)
}
