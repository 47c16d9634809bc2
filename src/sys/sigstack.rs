//! Start-up trick: no signal alternate stack per thread (Linux).
//!
//! std gives every thread a signal alternate stack (two more memory mappings per thread: its
//! stack and a guard page) only when it finds SIGSEGV and SIGBUS at their default action at
//! start-up. With two threads per connection, those mappings would make `vm.max_map_count`
//! (65,530) stop the process near 8,000 connections, by aborting it inside std's thread start.
//! So an ELF constructor ignores both signals before std starts, and `main` puts the default
//! back at once. The price: a stack overflow kills the process with SIGSEGV, without std's
//! message.
#![allow(unsafe_code)]

use std::ffi::c_int;

use super::signo::{SIGBUS, SIGSEGV};

const SIG_DFL: usize = 0;
const SIG_IGN: usize = 1;

extern "C" {
    fn signal(signum: c_int, handler: usize) -> usize;
}

/// Runs before `main`, before std's runtime start-up (an ELF constructor). std gives every
/// thread a signal alternate stack, two more memory mappings per thread, only when it finds
/// SIGSEGV and SIGBUS at their default action at start-up; finding them ignored, it leaves
/// both alone. `main` puts the default back at once (see [`fault_signals_to_default`]).
/// A real fault is never ignored meanwhile: the kernel resets an ignored SIGSEGV or SIGBUS
/// raised by a fault to the default action (the process dies, as it should).
extern "C" fn before_main() {
    // SAFETY: only signal dispositions change; no handler function is installed, and
    // this runs single-threaded before any Rust code.
    unsafe {
        signal(SIGSEGV, SIG_IGN);
        signal(SIGBUS, SIG_IGN);
    }
}

#[used]
#[link_section = ".init_array"]
static BEFORE_MAIN: extern "C" fn() = before_main;

/// Puts SIGSEGV and SIGBUS back to their default action (the process dies on a fault).
pub fn fault_signals_to_default() {
    // SAFETY: only signal dispositions change; no handler function is installed.
    unsafe {
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
    }
}
