//! What a relay is given (how to copy) and what it reports (bytes each way, why it ended).

use crate::end::End;
use crate::relay::timers::{Armed, Timeouts};

/// How the relay copies.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Copy buffer per direction.
    pub buffer_size: usize,
    /// Hand the OS at most this many bytes per send.
    pub segment_size: Option<usize>,
    /// Idle and half-close timeouts.
    pub timeouts: Timeouts,
    /// The timeouts the client socket has when the relay starts.
    pub client: Armed,
    /// The timeouts the target socket has when the relay starts.
    pub target: Armed,
}

/// What a finished connection reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Bytes client → target.
    pub up: u64,
    /// Bytes target → client.
    pub down: u64,
    /// Why it ended.
    pub end: End,
}

impl Outcome {
    /// A connection that ended before any byte was relayed.
    pub fn nothing_relayed(end: End) -> Outcome {
        Outcome {
            up: 0,
            down: 0,
            end,
        }
    }
}
