//! The heart of tcpfwd: two threads per connection, each copying one direction.
//!
//! At EOF a copier shuts down the write half of the other side and stops; the opposite
//! direction keeps running until it ends too (half-close). An error on either side shuts
//! down both sockets, which wakes the other thread at once. Either socket may be TCP or
//! Unix-domain ([`Stream`]). The details sit in files of their own beside this one.

mod buffer;
mod cut;
mod outcome;
mod pair;
mod send;
mod timers;
mod verdict;

use std::io::{self, Read};
use std::net::Shutdown;
use std::sync::Arc;

use crate::end::End;
use crate::stream::Stream;
use crate::sys;
use crate::threads;
use buffer::Buffer;
use pair::Pair;
use verdict::Direction;

pub use cut::cut_all;
pub use outcome::{Done, Outcome, Settings};
pub use timers::{Armed, Timeouts};

/// Relays until both directions have ended: the calling thread copies client → target, a
/// second thread copies target → client, and whichever finishes last hands the outcome to
/// `done` (last one out: neither waits for the other).
pub fn relay(client: Stream, target: Stream, settings: Settings, done: Done) {
    let pair = Pair::new(client, target, settings, done);
    let other = Arc::clone(&pair);
    let started = threads::start(move || other.copy(Direction::Down));
    if !pair::thread_started(started) {
        // No second thread: the connection ends here, with nothing relayed down.
        pair.abort(End::Error);
        pair.tally.finished(Direction::Down, 0, &pair.verdict);
    }
    pair.copy(Direction::Up);
}

impl Pair {
    /// Copies one direction until EOF or an error.
    fn copy(&self, dir: Direction) {
        let mut finish = Finish {
            pair: self,
            dir,
            delivered: 0,
        };
        if let Err(end) = self.pump(dir, &mut finish.delivered) {
            self.abort(end);
        }
    }

    /// The copy loop: read, write all of it, again, until EOF (`Ok`) or a failure (`Err`: the
    /// `end=` to report).
    fn pump(&self, dir: Direction, delivered: &mut u64) -> Result<(), End> {
        let (from, to) = match dir {
            Direction::Up => (&self.client, &self.target),
            Direction::Down => (&self.target, &self.client),
        };
        let mut buffer = Buffer::new(self.settings.buffer_size);
        self.timers.arm(dir, from, to);
        loop {
            match (&*from).read(buffer.space()) {
                Ok(0) if self.failed_under(dir, from) => return Err(dir.reader_reset()),
                Ok(0) => {
                    // Half-close: pass the EOF on; the other direction keeps running.
                    self.timers.finished(dir);
                    self.verdict.note(dir.eof());
                    let _ = to.shutdown(Shutdown::Write);
                    return Ok(());
                }
                Ok(n) => {
                    self.timers.moved(dir);
                    self.send(to, buffer.filled(n), dir)?;
                    *delivered += n as u64;
                    buffer.grow_if_full(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if sys::is_timeout(&e) => self.timers.rearm_read(from, dir)?,
                Err(_) => return Err(dir.reader_reset()),
            }
        }
    }

    /// Writes all of `data`; a write that times out is retried unless a timeout expired.
    fn send(&self, to: &Stream, data: &[u8], dir: Direction) -> Result<(), End> {
        let moved = || self.timers.moved(dir);
        let retry = || self.timers.rearm_write(to, dir);
        let size = self.settings.segment_size;
        send::send_segments(to, data, size, moved, retry, dir.writer_reset())
    }

    /// Ends the connection: notes why, and shuts both sockets down, which wakes the other
    /// thread from its blocking read or write.
    fn abort(&self, end: End) {
        self.verdict.note(end);
        if self.reset_survivor(end) {
            let _ = self.client.shutdown(Shutdown::Both);
            let _ = self.target.shutdown(Shutdown::Both);
        }
    }
}

/// The end of one copier, even one that panics (a bug): then it shuts the pair down, so the
/// other thread never waits forever. Either way its bytes are tallied; the last one out
/// reports.
struct Finish<'a> {
    pair: &'a Pair,
    dir: Direction,
    delivered: u64,
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.pair.abort(End::Error);
        }
        let pair = self.pair;
        pair.tally.finished(self.dir, self.delivered, &pair.verdict);
    }
}
