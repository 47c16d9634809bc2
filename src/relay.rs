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

/// Size of the first read buffer, on the stack (see [`Pair::copy`]).
const SMALL_BUFFER: usize = 128;

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
        // Reads go to a small buffer on the stack until one fills it; only then is the
        // full-size buffer allocated. An idle connection, or one that carries small messages,
        // holds no heap buffer.
        let mut small = [0; SMALL_BUFFER];
        let small_len = SMALL_BUFFER.min(self.settings.buffer_size);
        let mut big: Vec<u8> = Vec::new();
        let mut total = 0;
        self.watch.arm(from, to);
        loop {
            let buf = if big.is_empty() {
                &mut small[..small_len]
            } else {
                &mut big[..]
            };
            match (&*from).read(buf) {
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
                    if n == small_len && big.is_empty() {
                        big = vec![0; self.settings.buffer_size];
                    }
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
    fn send(&self, to: &TcpStream, data: &[u8], dir: Direction) -> Result<(), End> {
        let size = self.settings.segment_size;
        let moved = || self.watch.moved(dir);
        let retry = || {
            let left = self.watch.check(dir)?;
            let _ = to.set_write_timeout(Some(left));
            Ok(())
        };
        send_segments(to, data, size, moved, retry, dir.writer_reset())
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

/// Hands `to` all of `data`, never more than `size` bytes per `write` call. `moved` is told
/// of each write that took bytes; after a write timeout, `retry` says whether to go on
/// (`Err`: a relay timeout expired, the `end=` to report). A failed write is `reset`.
fn send_segments<W: Write>(
    mut to: W,
    data: &[u8],
    size: Option<usize>,
    mut moved: impl FnMut(),
    mut retry: impl FnMut() -> Result<(), End>,
    reset: End,
) -> Result<(), End> {
    for segment in segments(data, size) {
        let mut rest = segment;
        while !rest.is_empty() {
            match to.write(rest) {
                Ok(0) => return Err(reset),
                Ok(n) => {
                    rest = rest.get(n..).unwrap_or_default();
                    moved();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => retry()?,
                Err(_) => return Err(reset),
            }
        }
    }
    Ok(())
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

    /// A writer that records the size of every call and, in turn, takes everything, takes
    /// only part, is interrupted, or times out, as a socket may.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<usize>,
        taken: Vec<u8>,
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.calls.push(buf.len());
            let n = match self.calls.len() % 4 {
                0 => buf.len(),
                1 => buf.len().div_ceil(3),
                2 => return Err(io::ErrorKind::Interrupted.into()),
                _ => return Err(io::ErrorKind::WouldBlock.into()),
            };
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_copy_loop_never_hands_a_writer_more_than_the_segment_size() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7) as u8).collect();
        for size in [1, 536, 1000, 1460, 16 * 1024, 100_000] {
            let mut writer = Recorder::default();
            let (mut moved, mut retries) = (0, 0);
            let sent = send_segments(
                &mut writer,
                &data,
                Some(size),
                || moved += 1,
                || {
                    retries += 1;
                    Ok(())
                },
                End::TargetReset,
            );
            assert_eq!(sent, Ok(()));
            assert!(writer.calls.iter().all(|&n| n <= size), "size {size}");
            assert_eq!(writer.calls.iter().max(), Some(&size.min(data.len())));
            assert!(writer.taken == data, "size {size}: bytes differ");
            assert!(moved > 0 && retries > 0);
        }
        // Without a size, the whole buffer goes in one call.
        let mut writer = Recorder::default();
        let sent = send_segments(&mut writer, &data, None, || {}, || Ok(()), End::TargetReset);
        assert_eq!(sent, Ok(()));
        assert_eq!(writer.calls.first(), Some(&data.len()));
    }

    #[test]
    fn the_copy_loop_stops_on_an_expired_timeout_or_a_failed_write() {
        let mut writer = Recorder::default();
        let expired = || Err(End::IdleTimeout);
        let sent = send_segments(
            &mut writer,
            &[1; 100],
            Some(10),
            || {},
            expired,
            End::ClientReset,
        );
        assert_eq!(sent, Err(End::IdleTimeout));
        assert_eq!(writer.calls.len(), 3); // part, interrupted, timed out
        let closed: &mut [u8] = &mut [];
        let sent = send_segments(closed, &[1; 10], None, || {}, || Ok(()), End::ClientReset);
        assert_eq!(sent, Err(End::ClientReset));
    }
}
