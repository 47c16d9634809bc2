//! Active health checks (`--health-interval`): one thread per rule drives its pool's probes.

use std::io;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::pool::Pool;
use crate::threads;

/// Starts the rule's probe thread: every `interval`, one TCP connect to each target in turn
/// (closed at once), each given at most the connect timeout and never more than the interval.
/// One thread for all targets of a rule, however many there are; it ends after the round in
/// which a reload replaced the pool.
pub fn start_probes(pool: &Arc<Pool>, interval: Duration) -> io::Result<()> {
    let pool = Arc::clone(pool);
    threads::spawn(move || {
        while !pool.is_retired() {
            let round = Instant::now();
            pool.probe_all(interval);
            thread::sleep(interval.saturating_sub(round.elapsed()));
        }
    })
    .map(drop)
}
