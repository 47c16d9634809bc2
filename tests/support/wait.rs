//! Waiting without hanging: one patience for every wait, polling, and the tests' own threads.

use std::thread;
use std::time::{Duration, Instant};

/// How long any single wait in a test may take before the test fails. Generous, so the
/// tests hold on a loaded machine and under qemu.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Stack for the tests' own helper threads.
const STACK: usize = 256 * 1024;

/// Starts a helper thread with a bounded stack.
pub fn spawn<F: FnOnce() + Send + 'static>(work: F) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .stack_size(STACK)
        .spawn(work)
        .expect("test thread")
}

/// Polls `cond` every few milliseconds until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}
