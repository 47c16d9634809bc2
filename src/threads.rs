//! Starting threads with a small, explicit stack.

use std::io;
use std::thread::{self, JoinHandle};

/// Stack size of every thread tcpfwd starts. The relay keeps its buffers on the heap, so its
/// threads need little stack; a small stack also keeps 2,000 threads well inside a 32-bit
/// address space (std's default of 2 MiB would need 4 GiB).
pub const STACK_SIZE: usize = 64 * 1024;

/// Starts `work` on a new thread. A failure (out of memory, thread limits) is an error for
/// the caller to handle, never a panic.
pub fn spawn<F, T>(work: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    thread::Builder::new().stack_size(STACK_SIZE).spawn(work)
}
