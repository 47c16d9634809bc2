//! Why a connection ended, decided once for both copier threads.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::end::End;

/// One direction of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client → target.
    Up = 0,
    /// Target → client.
    Down = 1,
}

impl Direction {
    /// The opposite direction.
    pub fn other(self) -> Direction {
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

    /// The end when this direction's source ends its output first.
    pub fn eof(self) -> End {
        match self {
            Direction::Up => End::ClientEof,
            Direction::Down => End::TargetEof,
        }
    }
}

/// The `end=` of one connection: the first end noted wins, except that a reset, timeout or
/// error replaces a clean EOF (it is the news worth logging). An `AtomicUsize` holding the
/// end's index + 1 (0: none yet), so both threads note without a lock.
#[derive(Default)]
pub struct Verdict(AtomicUsize);

impl Verdict {
    /// Notes one reason the connection ends.
    pub fn note(&self, end: End) {
        let code = end.index() + 1;
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| match current
                .checked_sub(1)
                .and_then(End::from_index)
            {
                None => Some(code),
                Some(old) if old.is_clean() && !end.is_clean() => Some(code),
                Some(_) => None,
            });
    }

    /// The end to report (`error` if none was noted: only a bug gets there).
    pub fn end(&self) -> End {
        let code = self.0.load(Ordering::Acquire);
        code.checked_sub(1)
            .and_then(End::from_index)
            .unwrap_or(End::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_replaces_a_clean_end_but_not_the_reverse() {
        let v = Verdict::default();
        v.note(Direction::Up.eof());
        assert_eq!(v.end(), End::ClientEof);
        v.note(Direction::Down.eof());
        assert_eq!(v.end(), End::ClientEof);
        v.note(End::TargetReset);
        assert_eq!(v.end(), End::TargetReset);
        v.note(End::ClientReset);
        assert_eq!(v.end(), End::TargetReset);
    }

    #[test]
    fn directions_name_the_right_side() {
        assert_eq!(Direction::Up.reader_reset(), End::ClientReset);
        assert_eq!(Direction::Up.writer_reset(), End::TargetReset);
        assert_eq!(Direction::Down.reader_reset(), End::TargetReset);
        assert_eq!(Direction::Down.writer_reset(), End::ClientReset);
    }
}
