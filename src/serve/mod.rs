//! The serving layer: open every listener first (or take the ones handed over or passed by
//! systemd: [`inherit`]), then serve every rule, one accept thread per socket. Each accepted
//! client runs [`session`] on a thread of its own: the client filter, then [`forward`] (a
//! target from the pool) or [`tunnel`] (HTTP CONNECT), both through the same [`client`]
//! helpers and the same relay. [`metrics`] serves `--stats`; [`probe`] drives active health
//! checks; [`limits`] checks the kernel's limits at start-up. What is served now is in
//! [`live`]; the main thread then waits for signals ([`lifecycle`]): [`reload`], graceful
//! stop, [`handover`].

mod accept;
mod client;
mod forward;
mod handover;
mod inherit;
mod lifecycle;
mod limits;
mod listen;
mod live;
mod metrics;
mod probe;
mod reload;
mod session;
mod state;
mod tunnel;

use std::ffi::OsString;
use std::fmt;
use std::sync::Arc;

use crate::config::Setup;
use crate::log;
use crate::sys::{self, reason};
use accept::Listener;
use inherit::Inherited;
use lifecycle::Life;
use listen::ListenError;
use live::{Entry, Live, Stats};
use state::RuleState;

/// Start-up failed: exit status 1.
#[derive(Debug)]
pub enum ServeError {
    /// A listener could not be opened.
    Listen(ListenError),
    /// The accept thread could not be started.
    Thread(std::io::Error),
    /// A kernel limit leaves no room for a single connection.
    Limits(String),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ServeError::Listen(e) => e.fmt(f),
            ServeError::Thread(e) => write!(f, "cannot start a thread: {}", reason(e)),
            ServeError::Limits(why) => write!(f, "{why}"),
        }
    }
}

/// Opens every listener (the rules' and the metrics one), then serves until a graceful stop
/// ends. `args` are the process's arguments, for a reload or a hand-over. Whenever it returns,
/// the socket files of `unix:PATH` listeners are removed (a hand-over never ends here with
/// any: a Unix listener is not handed over, so the new process could not open its own).
pub fn run(setup: Setup, args: Vec<OsString>) -> Result<(), ServeError> {
    let result = serve(setup, args);
    listen::remove_socket_files();
    result
}

fn serve(mut setup: Setup, args: Vec<OsString>) -> Result<(), ServeError> {
    log::set_verbosity(setup.process.verbosity);
    sys::limit_malloc_arenas();
    sys::batch_scheduling();
    let signals = lifecycle::install();
    let mut inherited = Inherited::take();
    let listeners = setup.rules.len() as u64 + u64::from(setup.process.stats.is_some());
    limits::check(&mut setup.rules, listeners).map_err(ServeError::Limits)?;
    let mut opened = Vec::new();
    for rule in setup.rules {
        let leg = rule.options.client_leg();
        let listeners = match inherited.for_rule(&rule) {
            Some(listeners) => {
                // Handed over or from systemd: their options may be anyone's.
                let tcp = listeners.iter().filter_map(|l| l.socket().as_tcp());
                for socket in tcp {
                    sys::set_listener_options(socket, &leg, false).map_err(|reason| {
                        ServeError::Listen(ListenError {
                            addr: rule.listen.to_string(),
                            reason,
                        })
                    })?;
                }
                listeners
            }
            None => {
                let backlog = Some(rule.options.backlog);
                let (sockets, inherited) =
                    listen::open(&rule.listen, &leg, accept::preset(&rule), backlog)
                        .map_err(ServeError::Listen)?;
                sockets
                    .into_iter()
                    .map(|s| Listener::prepared(s, inherited, false))
                    .collect()
            }
        };
        let bound: Vec<_> = listeners
            .iter()
            .filter_map(|l| l.socket().local_addr().ok())
            .collect();
        if let Some(warning) = tunnel::open_proxy_warning(&rule, &bound) {
            log::problem(format_args!("{warning}"));
        }
        opened.push((rule, listeners));
    }
    let stats = match &setup.process.stats {
        Some(addr) => Some(Stats {
            addr: addr.clone(),
            listener: match inherited.for_stats(addr) {
                Some(listener) => listener,
                None => Listener::new(
                    metrics::bind_metrics(addr).map_err(ServeError::Listen)?,
                    false,
                ),
            },
        }),
        None => None,
    };
    let ready = inherited.finish();
    let entries: Vec<Arc<Entry>> = {
        let sockets: Vec<_> = opened.iter().flat_map(|(_, l)| l.iter()).collect();
        let own_addrs = Arc::new(
            sockets
                .iter()
                .copied()
                .chain(stats.as_ref().map(|s| &s.listener))
                .filter_map(|l| l.socket().local_addr().ok())
                .collect::<Vec<_>>(),
        );
        opened
            .into_iter()
            .map(|(rule, l)| Entry::new(RuleState::new(rule, Arc::clone(&own_addrs)), l))
            .collect()
    };
    let live = Arc::new(Live::default());
    live.set_entries(entries.clone());
    live.set_stats(stats.clone());
    // The metrics line comes before the rules' `listening on` lines, so whoever waits for
    // those has seen it too.
    if let Some(stats) = &stats {
        reload::start_metrics(&live, stats).map_err(ServeError::Thread)?;
    }
    live::start_all(&entries).map_err(ServeError::Thread)?;
    inherit::say_ready(ready);
    let life = Life {
        args,
        config: setup.config,
        grace: setup.process.grace,
    };
    lifecycle::serve_until_stopped(live, signals, life);
    Ok(())
}
