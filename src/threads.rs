//! Starting threads with a small, explicit stack, and reusing the ones that finished.
//!
//! Creating a thread and tearing it down costs tens of microseconds of CPU, mostly in the
//! kernel's lock on the process's memory map (the stack is mapped and unmapped). So a thread
//! whose work is done waits [`SPARE_WAIT`] as a *spare*: if more work is handed to [`spawn`]
//! meanwhile, the spare runs it instead of a new thread being created. Every piece of work
//! still has a thread to itself while it runs; this is not a pool with a queue of waiting
//! work, and idle spares end on their own.

use std::collections::VecDeque;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use crate::deadline::Deadline;
use crate::sys;

/// Stack size of every thread tcpfwd starts. The relay keeps its bulk buffers on the heap, so
/// its threads need little stack: the deepest path (name resolution through the C library, a
/// log line, a panic unwinding) touches 12 KiB with glibc; musl's resolver keeps about 10 KiB
/// of buffers on the stack. Only the pages touched cost memory, so a smaller stack would
/// save address space only; 64 KiB keeps a wide margin and 20,000 threads inside a 32-bit
/// address space (std's default of 2 MiB would need 40 GiB). Tested by
/// `the_deepest_path_fits_the_stack` here and `tests/limits.rs`.
pub const STACK_SIZE: usize = 64 * 1024;

/// How long a finished thread waits for new work before it ends.
pub const SPARE_WAIT: Duration = Duration::from_secs(2);

/// At most this many threads wait as spares at once; more end at once, so a burst of
/// finished connections does not keep thousands of idle threads around.
pub const MAX_SPARES: usize = 256;

type Work = Box<dyn FnOnce() + Send>;

/// Work handed to spares, and how many spares are waiting for it.
struct Spares {
    state: Mutex<SpareState>,
    wake: Condvar,
}

struct SpareState {
    /// Spares waiting now (each either takes one piece of `work` or leaves).
    waiting: usize,
    /// Work handed over, never more pieces than `waiting`.
    work: VecDeque<Work>,
}

static SPARES: Spares = Spares {
    state: Mutex::new(SpareState {
        waiting: 0,
        work: VecDeque::new(),
    }),
    wake: Condvar::new(),
};

impl Spares {
    fn lock(&self) -> MutexGuard<'_, SpareState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands `work` to a waiting spare, or gives it back when none is free.
    fn hand_over(&self, work: Work) -> Result<(), Work> {
        let mut state = self.lock();
        if state.waiting > state.work.len() {
            state.work.push_back(work);
            drop(state);
            self.wake.notify_one();
            Ok(())
        } else {
            Err(work)
        }
    }

    /// Called by a thread whose work is done: waits up to [`SPARE_WAIT`] for new work.
    fn wait_for_work(&self) -> Option<Work> {
        let deadline = Deadline::after(SPARE_WAIT);
        let mut state = self.lock();
        if state.waiting >= MAX_SPARES {
            return None;
        }
        state.waiting += 1;
        loop {
            // Work is checked before leaving, so no piece handed over is ever left behind.
            if let Some(work) = state.work.pop_front() {
                state.waiting -= 1;
                return Some(work);
            }
            let Some(left) = deadline.left() else {
                state.waiting -= 1;
                // The last spare leaving means a burst of connections is over: what malloc
                // kept of it goes back to the system (README "Memory after a burst").
                let last = state.waiting == 0;
                drop(state);
                if last {
                    sys::release_free_memory();
                }
                return None;
            };
            state = self
                .wake
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Waits for the result of work started by [`spawn`].
pub struct Handle<T> {
    done: Arc<Done<T>>,
}

/// Where the work leaves its result (a mutex and a condition variable: lighter than a channel,
/// which matters with thousands of connections held).
struct Done<T> {
    result: Mutex<Option<thread::Result<T>>>,
    signal: Condvar,
}

impl<T> Handle<T> {
    /// Waits until the work is done; `Err` if it panicked.
    pub fn join(self) -> thread::Result<T> {
        let mut result = self.done.result.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(result) = result.take() {
                return result;
            }
            result = self
                .done
                .signal
                .wait(result)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Runs `work` on a thread of its own: a spare thread if one is waiting, else a new one with
/// [`STACK_SIZE`]. A failure to start a thread (out of memory, thread limits) is an error
/// for the caller to handle, never a panic.
pub fn spawn<F, T>(work: F) -> io::Result<Handle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let done = Arc::new(Done {
        result: Mutex::new(None),
        signal: Condvar::new(),
    });
    let report = Arc::clone(&done);
    let work: Work = Box::new(move || {
        // A panic (a bug) ends this work only; the thread stays usable, the caller hears of it.
        let result = panic::catch_unwind(AssertUnwindSafe(work));
        *report.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        report.signal.notify_one();
    });
    if let Err(work) = SPARES.hand_over(work) {
        thread::Builder::new()
            .stack_size(STACK_SIZE)
            .spawn(move || run(work))?;
    }
    Ok(Handle { done })
}

/// A thread's life: its first work, then whatever is handed to it while it waits as a spare.
fn run(first: Work) {
    let mut work = first;
    loop {
        work();
        match SPARES.wait_for_work() {
            Some(next) => work = next,
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn results_and_panics_reach_the_caller() {
        let handle = spawn(|| 6 * 7).unwrap();
        assert_eq!(handle.join().unwrap(), 42);
        let panicked = spawn(|| -> u8 { panic!("a bug") }).unwrap();
        assert!(panicked.join().is_err());
    }

    thread_local! {
        static USED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    #[test]
    fn a_finished_thread_takes_the_next_work() {
        // Each piece of work marks its thread; a piece that finds the mark ran on a thread
        // that had done work before. Bounded: 200 tries, a millisecond apart.
        let mut reused = false;
        for _ in 0..200 {
            let mark = || USED.with(|used| used.replace(true));
            reused = spawn(mark).unwrap().join().unwrap();
            if reused {
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        assert!(reused, "no thread was reused");
    }

    #[test]
    fn the_deepest_path_fits_the_stack() {
        // Name resolution through the C library, a formatted line, and a panic unwinding
        // through it all: the deepest a connection thread goes (in a debug build, whose frames
        // are the largest).
        let deep = || {
            use std::net::ToSocketAddrs;
            let addrs: Vec<_> = ("localhost", 80)
                .to_socket_addrs()
                .map_or(Vec::new(), |a| a.collect());
            let line = format!(
                "client={:?} {:>12} {:?}",
                addrs.first(),
                "localhost",
                Instant::now()
            );
            let unwound = panic::catch_unwind(|| {
                if !line.is_empty() {
                    panic!("a bug after {line}");
                }
            });
            (addrs.is_empty(), unwound.is_err())
        };
        let (unresolved, unwound) = spawn(deep).unwrap().join().unwrap();
        assert!(!unresolved, "localhost did not resolve");
        assert!(unwound);
    }

    #[test]
    fn many_at_once_each_get_their_own_thread() {
        // Work that waits for all the others can only finish if each runs on its own thread.
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(20));
        let handles: Vec<_> = (0..20)
            .map(|_| {
                let barrier = std::sync::Arc::clone(&barrier);
                spawn(move || {
                    barrier.wait();
                })
                .unwrap()
            })
            .collect();
        for h in handles {
            assert!(h.join().is_ok());
        }
    }
}
