//! `--idle-timeout` and `--fin-timeout` for one connection: when bytes last moved each way,
//! which direction has ended, and whether a timeout has expired. The copiers block with a
//! socket timeout no longer than the shortest configured one (the *tick*), and ask here when
//! it fires. A socket timeout costs a system call to set, so one is set only where the
//! socket does not already have one at least as short ([`Armed`]): a wake-up before the tick
//! is harmless, it checks and re-arms with what is left.

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

    /// How long a copier may block before it checks: the shortest configured timeout.
    pub fn tick(&self) -> Option<Duration> {
        match (self.idle, self.fin) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The read and write timeouts a socket has when the relay starts (`None` = none): a fresh
/// socket has none; an accepted one may have its listener's (serve::accept).
pub type Armed = crate::sys::Preset;

/// Whether a socket whose timeout is `now` must be given `tick`: only when a timeout is
/// configured and the socket would block longer than the tick.
fn needs(now: Option<Duration>, tick: Option<Duration>) -> bool {
    match (now, tick) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(now), Some(tick)) => now > tick,
    }
}

/// The clocks both copiers of one connection share. Times are milliseconds since the relay
/// started, in `AtomicUsize` (32-bit targets have no 64-bit atomics).
pub struct Timers {
    timeouts: Timeouts,
    /// What the client's and the target's socket had when the relay started.
    client: Armed,
    target: Armed,
    start: Instant,
    moved_at: [AtomicUsize; 2],
    /// Time + 1 at which a direction reached EOF; 0 while it runs.
    finished_at: [AtomicUsize; 2],
}

impl Timers {
    /// Timers starting now, for a client and a target socket that have the timeouts
    /// `client` and `target` now.
    pub fn new(timeouts: Timeouts, client: Armed, target: Armed) -> Timers {
        Timers {
            timeouts,
            client,
            target,
            start: Instant::now(),
            moved_at: Default::default(),
            finished_at: Default::default(),
        }
    }

    fn now(&self) -> usize {
        millis(self.start.elapsed())
    }

    /// Sets the socket timeouts the copier of `dir` blocks with, `from`'s read and `to`'s
    /// write, to the tick where they are not already as short. Nothing
    /// at all when no timeout is configured: a socket that has one anyway wakes once, and
    /// [`Timers::rearm_read`] clears it.
    pub fn arm(&self, dir: Direction, from: &Stream, to: &Stream) {
        let tick = self.timeouts.tick();
        let (reader, writer) = match dir {
            Direction::Up => (self.client, self.target),
            Direction::Down => (self.target, self.client),
        };
        if needs(reader.read, tick) {
            let _ = from.set_read_timeout(tick);
        }
        if needs(writer.write, tick) {
            let _ = to.set_write_timeout(tick);
        }
    }

    /// Bytes moved in `dir`.
    pub fn moved(&self, dir: Direction) {
        if self.timeouts.any() {
            self.moved_at[dir as usize].store(self.now(), Ordering::Relaxed);
        }
    }

    /// `dir` reached EOF (before it passes the EOF on: see [`Timers::has_finished`]).
    pub fn finished(&self, dir: Direction) {
        self.finished_at[dir as usize].store(self.now() + 1, Ordering::SeqCst);
    }

    /// Whether `dir` reached EOF (and passed it on). The other copier asks this after it
    /// found its socket closed, to tell the FIN this direction sent from a failure: the
    /// strongest ordering, so the answer is not read ahead of that look.
    pub fn has_finished(&self, dir: Direction) -> bool {
        self.finished_at[dir as usize].load(Ordering::SeqCst) != 0
    }

    /// Called when a blocking call in `dir` timed out: the end if a timeout has expired, else
    /// how long to block before checking again (`None`: no timeout is configured).
    fn check(&self, dir: Direction) -> Result<Option<Duration>, End> {
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
        Ok((wait != usize::MAX).then(|| Duration::from_millis(wait.max(1) as u64)))
    }
}

impl Timers {
    /// After a read in `dir` timed out: the end if a timeout expired, else the socket waits
    /// until the next check is due.
    pub fn rearm_read(&self, from: &Stream, dir: Direction) -> Result<(), End> {
        let left = self.check(dir)?;
        let _ = from.set_read_timeout(left);
        Ok(())
    }

    /// After a write in `dir` timed out: as [`Timers::rearm_read`].
    pub fn rearm_write(&self, to: &Stream, dir: Direction) -> Result<(), End> {
        let left = self.check(dir)?;
        let _ = to.set_write_timeout(left);
        Ok(())
    }
}

fn millis(d: Duration) -> usize {
    usize::try_from(d.as_millis()).unwrap_or(usize::MAX)
}
