//! A point in time that a whole exchange must finish by (a CONNECT head, a PROXY header, a
//! metrics request, a connect over several addresses), and what is left of it.

use std::io;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A total deadline, not a per-read timeout: a client that dribbles a byte a second still
/// runs out of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(Instant);

impl Deadline {
    /// `budget` from now.
    pub fn after(budget: Duration) -> Deadline {
        Deadline(Instant::now() + budget)
    }

    /// `budget` from `start`.
    pub fn from(start: Instant, budget: Duration) -> Deadline {
        Deadline(start + budget)
    }

    /// The time left; `None` once it has passed.
    pub fn left(self) -> Option<Duration> {
        Some(self.0.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
    }

    /// Makes the next read on `stream` block no longer than the time left; `Err` (a timeout)
    /// once it has passed.
    pub fn limit_read(self, stream: &TcpStream) -> io::Result<()> {
        let left = self.left().ok_or(io::ErrorKind::WouldBlock)?;
        stream.set_read_timeout(Some(left))
    }
}
