//! What a relay is given (how to copy) and what it reports (bytes each way, why it ended),
//! gathered from both copiers as they finish.

use std::sync::Mutex;

use crate::end::End;
use crate::relay::timers::{Armed, Timeouts};
use crate::relay::verdict::{Direction, Verdict};

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

/// What to do with a connection's outcome (log its line, give its places back), called once
/// by the copier that finishes last.
pub type Done = Box<dyn FnOnce(Outcome) + Send>;

/// The bytes each direction delivered, noted as its copier finishes.
pub struct Tally(Mutex<Finished>);

struct Finished {
    /// Bytes delivered, per [`Direction`], once that direction has finished.
    delivered: [Option<u64>; 2],
    /// Taken by the last one out.
    done: Option<Done>,
}

impl Tally {
    /// A tally whose last one out calls `done`.
    pub fn new(done: Done) -> Tally {
        Tally(Mutex::new(Finished {
            delivered: [None, None],
            done: Some(done),
        }))
    }

    /// `dir` has finished, having delivered `bytes`. If the other direction has too, this is
    /// the last one out: it calls `done` with the outcome, the end as `verdict` has it now.
    pub fn finished(&self, dir: Direction, bytes: u64, verdict: &Verdict) {
        let mut finished = self.0.lock().unwrap_or_else(|e| e.into_inner());
        finished.delivered[dir as usize] = Some(bytes);
        let [Some(up), Some(down)] = finished.delivered else {
            return;
        };
        let Some(done) = finished.done.take() else {
            return;
        };
        // Outside the lock: `done` logs and gives back places.
        drop(finished);
        done(Outcome {
            up,
            down,
            end: verdict.end(),
        });
    }
}
