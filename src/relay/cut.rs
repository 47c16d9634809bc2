//! The end of a graceful stop: every connection still relaying when `--grace` runs out is cut
//! (both sides get an RST). Each relay registers here while it runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Weak};

/// A connection that can be cut.
pub trait Cut: Send + Sync {
    /// Resets both sides now, with `end=shutdown`.
    fn cut(&self);
}

/// The relays running now: a slab, so registering and leaving are O(1) under a short lock.
struct Slab {
    entries: Vec<Option<Weak<dyn Cut>>>,
    free: Vec<usize>,
}

static LIVE: Mutex<Slab> = Mutex::new(Slab {
    entries: Vec::new(),
    free: Vec::new(),
});

/// Set once [`cut_all`] ran: a relay that starts later is cut at once.
static CUTTING: AtomicBool = AtomicBool::new(false);

/// A relay's place in the registry, given back when dropped.
pub struct Registration(usize);

/// Registers a running relay. A relay that registers after [`cut_all`] is cut at once.
pub fn register(relay: Weak<dyn Cut>) -> Registration {
    let index = {
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        match live.free.pop() {
            Some(index) => {
                if let Some(entry) = live.entries.get_mut(index) {
                    *entry = Some(relay.clone());
                }
                index
            }
            None => {
                live.entries.push(Some(relay.clone()));
                live.entries.len() - 1
            }
        }
    };
    if CUTTING.load(Ordering::SeqCst) {
        if let Some(relay) = relay.upgrade() {
            relay.cut();
        }
    }
    Registration(index)
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = live.entries.get_mut(self.0) {
            *entry = None;
            live.free.push(self.0);
        }
    }
}

/// Cuts every running relay, and every one that starts from now on; returns how many.
pub fn cut_all() -> usize {
    CUTTING.store(true, Ordering::SeqCst);
    let running: Vec<_> = {
        let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        live.entries
            .iter()
            .flatten()
            .filter_map(Weak::upgrade)
            .collect()
    };
    // Outside the lock: a relay that ends meanwhile leaves without waiting.
    for relay in &running {
        relay.cut();
    }
    running.len()
}
