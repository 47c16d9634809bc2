//! The main thread's life after start-up: it waits for signals (SPEC §7). SIGHUP reloads
//! `--config`, SIGTERM or SIGINT stop gracefully (a second one at once), SIGUSR2 hands the
//! listeners over to a new process of the same binary. Linux only: elsewhere the main
//! thread just waits, and signals keep their default action.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::ShowDuration;
use crate::counters;
use crate::log;
use crate::relay;
use crate::serve::accept;
use crate::serve::handover;
use crate::serve::listen;
use crate::serve::live::Live;
use crate::serve::reload;
use crate::sys::{self, Signal, Signals};

/// What the main thread needs to reload or hand over.
pub struct Life {
    /// The process's arguments, as given (a reload parses them again; a hand-over passes them).
    pub args: Vec<OsString>,
    /// The config file, if any.
    pub config: Option<PathBuf>,
    /// `--grace`.
    pub grace: Duration,
}

/// How long a stop waits for the accept loops to end before it counts what is in flight.
const LOOPS_END_WITHIN: Duration = Duration::from_secs(1);

/// After the grace, how long the cut connections have to write their log lines.
const CUT_LINES_WITHIN: Duration = Duration::from_secs(1);

/// The signal handlers, installed at the very start (before any listener is announced, so a
/// signal sent after `listening on` is never lost). `None` where signals are not handled.
pub fn install() -> Option<Signals> {
    match Signals::install() {
        Ok(signals) => Some(signals),
        Err(e) if e.kind() == io::ErrorKind::Unsupported => {
            log::detail(format_args!(
                "reload, graceful stop and hand-over need Linux: signals keep their default action"
            ));
            None
        }
        Err(e) => {
            log::problem(format_args!(
                "cannot install signal handlers ({}): signals keep their default action",
                sys::reason(&e)
            ));
            None
        }
    }
}

/// Serves until a graceful stop ends (then the process exits 0); without signal handlers,
/// for ever.
pub fn serve_until_stopped(live: Arc<Live>, signals: Option<Signals>, mut life: Life) {
    let Some(mut signals) = signals else {
        loop {
            std::thread::park();
        }
    };
    loop {
        match signals.next(None) {
            Some(Signal::Hup) => match &life.config {
                None => log::event(format_args!("reload: nothing to reload without --config")),
                Some(path) => {
                    if let Some(grace) = reload::reload(&live, &life.args, path) {
                        life.grace = grace;
                    }
                }
            },
            Some(Signal::Stop) => return graceful_stop(&live, &mut signals, life.grace),
            Some(Signal::Usr2) => match handover::hand_over(&live, &life.args) {
                Ok(pid) => {
                    log::event(format_args!(
                        "hand-over: process {pid} serves now; this one stops"
                    ));
                    // The new process serves the Unix sockets now, and removes their files.
                    listen::keep_socket_files();
                    for entry in live.entries() {
                        entry.listeners.iter().for_each(|l| l.share());
                    }
                    if let Some(stats) = live.stats() {
                        stats.listener.share();
                    }
                    return graceful_stop(&live, &mut signals, life.grace);
                }
                Err(why) => log::problem(format_args!("hand-over failed: {why}")),
            },
            None => {}
        }
    }
}

/// Closes every listener, lets connections in flight go on for `grace`, then cuts the rest.
/// A second SIGTERM or SIGINT cuts at once.
fn graceful_stop(live: &Live, signals: &mut Signals, grace: Duration) {
    live.stop_all();
    // Polled: the counts have no waker of their own, and 10 ms is below what a person or a
    // supervisor notices.
    let tick = Duration::from_millis(10);
    // The accept loops end first (at once, or within 100 ms on a socket another process
    // holds): a client one of them accepted meanwhile is a connection in flight too.
    let loops_end = Instant::now() + LOOPS_END_WITHIN;
    let mut at_once = false;
    while accept::loops_running() > 0 && Instant::now() < loops_end && !at_once {
        at_once = signals.next(Some(tick)) == Some(Signal::Stop);
    }
    log::event(format_args!(
        "stopping: {} connections in flight, waiting up to {}",
        counters::in_flight(),
        ShowDuration(grace)
    ));
    let deadline = Instant::now() + grace;
    while counters::in_flight() > 0 && !at_once {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        at_once = signals.next(Some(left.min(tick))) == Some(Signal::Stop);
    }
    if at_once {
        log::event(format_args!("stopping now"));
    }
    if counters::in_flight() == 0 {
        return;
    }
    relay::cut_all();
    let cut = Instant::now();
    while counters::in_flight() > 0 && cut.elapsed() < CUT_LINES_WITHIN {
        let _ = signals.next(Some(tick));
    }
}
