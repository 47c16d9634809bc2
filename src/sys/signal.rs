//! The signals tcpfwd acts on, as the main thread receives them (SPEC §7). Apart from
//! `signals`, which makes them from the real ones on Linux, so that the stub elsewhere
//! names them too.

/// A signal tcpfwd acts on (SPEC §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // only Linux's handlers make them
pub enum Signal {
    /// SIGHUP: reload the config file.
    Hup,
    /// SIGTERM or SIGINT: stop gracefully.
    Stop,
    /// SIGUSR2: hand the listeners over to a new process.
    Usr2,
}
