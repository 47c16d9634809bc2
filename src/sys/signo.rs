//! Linux signal numbers, which MIPS and SPARC number their own way.

use std::ffi::c_int;

/// A number as most Linux architectures have it, else as MIPS or SPARC do.
const fn by_arch(usual: c_int, mips: c_int, sparc: c_int) -> c_int {
    if cfg!(any(target_arch = "mips", target_arch = "mips64")) {
        mips
    } else if cfg!(any(target_arch = "sparc", target_arch = "sparc64")) {
        sparc
    } else {
        usual
    }
}

/// Hang-up: reload.
pub const SIGHUP: c_int = 1;
/// Interrupt: stop gracefully.
pub const SIGINT: c_int = 2;
/// Terminate: stop gracefully.
pub const SIGTERM: c_int = 15;
/// Segmentation fault.
pub const SIGSEGV: c_int = 11;
/// Bus error.
pub const SIGBUS: c_int = by_arch(7, 10, 10);
/// User signal 2: hand over.
pub const SIGUSR2: c_int = by_arch(12, 17, 31);
/// `sigprocmask`'s "unblock these".
pub const SIG_UNBLOCK: c_int = by_arch(1, 2, 2);
