//! Writing what one read brought: all of it, at most `--segment-size` bytes per `write`.

use std::io::{self, Write};

use crate::end::End;
use crate::sys;

/// Hands `to` all of `data`, never more than `size` bytes per `write` call. `moved` is told
/// of each write that took bytes; after a write timeout, `retry` says whether to go on
/// (`Err`: a relay timeout expired, the `end=` to report). A failed write is `reset`.
pub fn send_segments<W: Write>(
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
                Err(e) if sys::is_timeout(&e) => retry()?,
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
