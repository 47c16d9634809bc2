//! The heart of tcpfwd: two threads per connection, each copying one direction.
//!
//! When one side ends its output (EOF), the copier shuts down the write half of the other
//! side and stops; the opposite direction keeps running until it ends too (half-close).
//! An error on either side shuts down both sockets, which wakes the other thread at once.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;

use crate::log::{self, End};
use crate::threads;
use crate::watch::{Direction, Watch};

pub use crate::watch::Timeouts;

/// How the relay copies.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Copy buffer per direction.
    pub buffer_size: usize,
    /// Hand the OS at most this many bytes per send.
    pub segment_size: Option<usize>,
    /// Idle and half-close timeouts.
    pub timeouts: Timeouts,
}

/// What a finished relay reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Bytes client → target.
    pub up: u64,
    /// Bytes target → client.
    pub down: u64,
    /// Why it ended.
    pub end: End,
}

/// The two sockets of one connection and what both threads know about it.
struct Pair {
    client: TcpStream,
    target: TcpStream,
    settings: Settings,
    watch: Watch,
}

/// Relays until both directions have ended; the calling thread copies client → target,
/// a second thread copies target → client.
pub fn relay(client: TcpStream, target: TcpStream, settings: Settings) -> Outcome {
    let watch = Watch::new(settings.timeouts);
    let pair = Arc::new(Pair {
        client,
        target,
        settings,
        watch,
    });

    let other = Arc::clone(&pair);
    let down = match threads::spawn(move || other.copy(Direction::Down)) {
        Ok(handle) => handle,
        Err(e) => {
            log::problem(format_args!(
                "cannot start a relay thread: {}",
                crate::reason(&e)
            ));
            pair.abort(End::Error);
            return Outcome {
                up: 0,
                down: 0,
                end: End::Error,
            };
        }
    };
    let up = pair.copy(Direction::Up);
    // A thread that panicked (a bug) has already shut both sockets down (see `Abort`).
    let down = down.join().unwrap_or(0);
    Outcome {
        up,
        down,
        end: pair.watch.end(),
    }
}

impl Pair {
    /// Copies one direction until EOF or an error; returns the bytes delivered.
    fn copy(&self, dir: Direction) -> u64 {
        let _guard = Abort(self);
        let (from, to) = match dir {
            Direction::Up => (&self.client, &self.target),
            Direction::Down => (&self.target, &self.client),
        };
        let mut buf = vec![0; self.settings.buffer_size];
        let mut total = 0;
        self.watch.arm(from, to);
        loop {
            match (&*from).read(&mut buf) {
                Ok(0) => {
                    // Half-close: pass the EOF on; the other direction keeps running.
                    self.watch.finished(dir);
                    let _ = to.shutdown(Shutdown::Write);
                    return total;
                }
                Ok(n) => {
                    self.watch.moved(dir);
                    if let Err(end) = self.send(to, &buf[..n], dir) {
                        self.abort(end);
                        return total;
                    }
                    total += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => match self.watch.check(dir) {
                    Ok(left) => {
                        let _ = from.set_read_timeout(Some(left));
                    }
                    Err(end) => {
                        self.abort(end);
                        return total;
                    }
                },
                Err(_) => {
                    self.abort(dir.reader_reset());
                    return total;
                }
            }
        }
    }

    /// Writes all of `data`, at most `segment_size` bytes per call; a write that times out
    /// is retried unless a timeout has expired.
    fn send(&self, mut to: &TcpStream, data: &[u8], dir: Direction) -> Result<(), End> {
        for segment in segments(data, self.settings.segment_size) {
            let mut rest = segment;
            while !rest.is_empty() {
                match to.write(rest) {
                    Ok(0) => return Err(dir.writer_reset()),
                    Ok(n) => {
                        rest = &rest[n..];
                        self.watch.moved(dir);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if is_timeout(&e) => {
                        let left = self.watch.check(dir)?;
                        let _ = to.set_write_timeout(Some(left));
                    }
                    Err(_) => return Err(dir.writer_reset()),
                }
            }
        }
        Ok(())
    }

    /// Ends the connection: records why, and shuts both sockets down, which wakes the other
    /// thread from its blocking read or write.
    fn abort(&self, end: End) {
        self.watch.record(end);
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.target.shutdown(Shutdown::Both);
    }
}

/// Shuts the pair down if a copier panics, so the other thread never waits forever.
struct Abort<'a>(&'a Pair);

impl Drop for Abort<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.abort(End::Error);
        }
    }
}

/// Splits `data` into pieces of at most `size` bytes (one piece without a size).
pub fn segments(data: &[u8], size: Option<usize>) -> std::slice::Chunks<'_, u8> {
    data.chunks(size.unwrap_or(data.len()).max(1))
}

/// Read and write timeouts: WouldBlock on Unix, TimedOut on Windows.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_never_exceed_the_size() {
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let pieces: Vec<&[u8]> = segments(&data, Some(1460)).collect();
        assert!(pieces.iter().all(|p| p.len() <= 1460));
        assert_eq!(pieces.concat(), data);
        assert_eq!(segments(&data, None).count(), 1);
        assert_eq!(segments(&[], Some(10)).count(), 0);
    }
}
