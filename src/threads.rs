//! Starting threads with a small, explicit stack, and reusing the ones that finished.
//!
//! Creating a thread and tearing it down costs tens of microseconds of CPU, mostly in the
//! kernel's lock on the process's memory map (the stack is mapped and unmapped). So a thread
//! whose work is done waits [`SPARE_WAIT`] as a *spare*: if more work is handed to [`start`]
//! meanwhile, the spare runs it instead of a new thread being created. Every
//! piece of work still has a thread to itself while it runs; this is not a pool with a queue
//! of waiting work, and idle spares end on their own.
//!
//! Each spare waits parked on its own (no shared condition variable): handing it work is one
//! `unpark`, one wake-up of exactly that thread. Only work for which no thread could be
//! started waits, on a condition variable, for the next spare ([`SPARE_GRACE`]). Nothing here
//! joins a thread: work that has a result hands it on itself, so no thread waits for another
//! to finish.

use std::cell::Cell;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, Thread};
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

/// How long a finished thread waits for new work before it ends: idle threads are gone
/// within 3 s (SPEC §3).
pub const SPARE_WAIT: Duration = Duration::from_secs(2);

/// At most this many threads wait as spares at once; more end at once. A spare costs its
/// touched stack (about 12 KiB) and a kernel task; 256 of them cover the connections that
/// start within [`SPARE_WAIT`] after a burst of that many ended (each connection takes one
/// spare for its second direction), without keeping thousands of idle threads around after
/// a larger burst.
pub const MAX_SPARES: usize = 256;

/// How long work waits for a spare when no new thread can be started (a thread limit, or
/// memory). A connection that ends gives its place back a moment before its last thread
/// waits as a spare, so at a `--max-conns` that `ulimit -u` set, the next client could find
/// a place but neither a spare nor room for a new thread; the spare comes a moment later
/// (the ending thread writes its log line and closes its sockets first).
pub const SPARE_GRACE: Duration = Duration::from_millis(100);

type Work = Box<dyn FnOnce() + Send>;

/// The spares waiting now, the one that waited least long last (its stack is the warmest,
/// and the ones at the bottom of an oversized list run out their wait and end).
static SPARES: Mutex<Vec<Arc<Spare>>> = Mutex::new(Vec::new());

/// Work waiting for a spare because no thread could be started ([`SPARE_GRACE`]), and how it
/// hears of a new one: a thread that starts waiting as a spare signals only while some wait,
/// so the common path pays one atomic load.
static WANTED: AtomicUsize = AtomicUsize::new(0);
static SPARE_FREED: Condvar = Condvar::new();

/// One thread's place as a spare: the work handed to it, and the thread to wake.
struct Spare {
    work: Mutex<Option<Work>>,
    thread: Thread,
}

thread_local! {
    /// Set by [`retire`]: this thread ends after its work instead of waiting as a spare.
    static RETIRING: Cell<bool> = const { Cell::new(false) };
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Spare {
    fn take(&self) -> Option<Work> {
        lock(&self.work).take()
    }

    /// Waits up to [`SPARE_WAIT`] for work handed over by [`hand_over`].
    fn wait_for_work(self: &Arc<Spare>) -> Option<Work> {
        {
            let mut waiting = lock(&SPARES);
            if waiting.len() >= MAX_SPARES {
                return None;
            }
            waiting.push(Arc::clone(self));
            // Read under the lock: a waiter counted itself before it took the lock.
            if WANTED.load(Ordering::SeqCst) > 0 {
                SPARE_FREED.notify_all();
            }
        }
        let deadline = Deadline::after(SPARE_WAIT);
        loop {
            // Checked after every wake-up: `park` may also return for no reason.
            if let Some(work) = self.take() {
                return Some(work);
            }
            match deadline.left() {
                Some(left) => thread::park_timeout(left),
                None => {
                    let mut waiting = lock(&SPARES);
                    let Some(i) = waiting.iter().position(|s| Arc::ptr_eq(s, self)) else {
                        // Taken off the list by `hand_over`, which left the work here under
                        // the same lock: it is here now.
                        return self.take();
                    };
                    waiting.remove(i);
                    // The last spare leaving means a burst of connections is over: what
                    // malloc kept of it goes back to the system (README "Memory after a
                    // burst").
                    let last = waiting.is_empty();
                    drop(waiting);
                    if last {
                        sys::release_free_memory();
                    }
                    return None;
                }
            }
        }
    }
}

/// Hands `work` to the spare that waited least long, or gives it back when none waits.
fn hand_over(work: Work) -> Result<(), Work> {
    give(lock(&SPARES), work)
}

/// [`hand_over`] with the list of spares locked.
fn give(mut waiting: MutexGuard<'_, Vec<Arc<Spare>>>, work: Work) -> Result<(), Work> {
    let Some(spare) = waiting.pop() else {
        return Err(work);
    };
    *lock(&spare.work) = Some(work);
    drop(waiting);
    spare.thread.unpark();
    Ok(())
}

/// Hands `work` to the first spare that comes within [`SPARE_GRACE`], or gives it back.
fn hand_over_within_grace(mut work: Work) -> Result<(), Work> {
    WANTED.fetch_add(1, Ordering::SeqCst);
    let deadline = Deadline::after(SPARE_GRACE);
    let mut waiting = lock(&SPARES);
    let given = loop {
        match give(waiting, work) {
            Ok(()) => break Ok(()),
            Err(back) => work = back,
        }
        let Some(left) = deadline.left() else {
            break Err(work);
        };
        waiting = lock(&SPARES);
        if waiting.is_empty() {
            waiting = SPARE_FREED
                .wait_timeout(waiting, left)
                .map_or_else(|e| e.into_inner().0, |(guard, _)| guard);
        }
    };
    WANTED.fetch_sub(1, Ordering::SeqCst);
    given
}

/// Runs `work` on a thread of its own: a spare thread if one is waiting, else a new one with
/// [`STACK_SIZE`], else the first spare within [`SPARE_GRACE`]. Nobody waits for its end:
/// work that has a result to give hands it on itself (the relay's last copier logs the
/// connection). A failure to start a thread (out of memory, thread limits) with no spare in
/// time is an error for the caller to handle, never a panic.
pub fn start<F>(work: F) -> io::Result<()>
where
    F: FnOnce() + Send + 'static,
{
    run_on_a_thread(Box::new(move || {
        // A panic (a bug) ends this work only; the thread stays usable.
        let _ = panic::catch_unwind(AssertUnwindSafe(work));
    }))
}

/// The calling thread ends when its present work is done, instead of waiting as a spare:
/// for work that has just been idle itself (an acceptor nobody came to), so the thread does
/// not stay idle for [`SPARE_WAIT`] more.
pub fn retire() {
    RETIRING.with(|r| r.set(true));
}

fn run_on_a_thread(work: Work) -> io::Result<()> {
    let Err(work) = hand_over(work) else {
        return Ok(());
    };
    // Held outside the closure, so that it is still here if the thread cannot start.
    let held = Arc::new(Mutex::new(Some(work)));
    let theirs = Arc::clone(&held);
    let started = thread::Builder::new()
        .stack_size(STACK_SIZE)
        .spawn(move || {
            let work = lock(&theirs).take();
            drop(theirs);
            if let Some(work) = work {
                run(work);
            }
        });
    let Err(e) = started else {
        return Ok(());
    };
    let work = lock(&held).take();
    match work {
        Some(work) => hand_over_within_grace(work).map_err(|_| e),
        None => Ok(()),
    }
}

/// A thread's life: its first work, then whatever is handed to it while it waits as a spare.
fn run(first: Work) {
    let me = Arc::new(Spare {
        work: Mutex::new(None),
        thread: thread::current(),
    });
    let mut work = first;
    loop {
        work();
        if RETIRING.with(Cell::get) {
            return;
        }
        match me.wait_for_work() {
            Some(next) => work = next,
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    /// Runs `work` with [`start`] and waits (bounded) for what it sends back.
    fn run_and_wait<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = mpsc::channel();
        start(move || {
            let _ = tx.send(work());
        })
        .unwrap();
        rx.recv_timeout(Duration::from_secs(10)).ok()
    }

    #[test]
    fn a_panic_ends_only_its_work() {
        start(|| panic!("a bug")).unwrap();
        assert_eq!(run_and_wait(|| 6 * 7), Some(42));
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
            reused = run_and_wait(|| USED.with(|used| used.replace(true))) == Some(true);
            if reused {
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        assert!(reused, "no thread was reused");
    }

    #[test]
    fn a_retired_thread_is_not_kept_as_a_spare() {
        // A thread that retired never runs later work (bounded: 50 pieces after it).
        let (tx, rx) = mpsc::channel();
        start(move || {
            retire();
            let _ = tx.send(thread::current().id());
        })
        .unwrap();
        let retired = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        for _ in 0..50 {
            let id = run_and_wait(|| thread::current().id()).unwrap();
            assert_ne!(id, retired);
        }
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
        let (unresolved, unwound) = run_and_wait(deep).unwrap();
        assert!(!unresolved, "localhost did not resolve");
        assert!(unwound);
    }

    #[test]
    fn many_at_once_each_get_their_own_thread() {
        // Work that waits for all the others can only finish if each runs on its own thread.
        let barrier = Arc::new(std::sync::Barrier::new(20));
        let (tx, rx) = mpsc::channel();
        for _ in 0..20 {
            let (barrier, tx) = (Arc::clone(&barrier), tx.clone());
            start(move || {
                barrier.wait();
                let _ = tx.send(());
            })
            .unwrap();
        }
        for _ in 0..20 {
            assert!(rx.recv_timeout(Duration::from_secs(10)).is_ok());
        }
    }
}
