//! The serving layer: open every listener first, then serve every rule, one accept thread per
//! socket. Each accepted client runs [`session`] on a thread of its own: the client filter,
//! then [`forward`] (a target from the pool) or [`tunnel`] (HTTP CONNECT), both through the
//! same [`client`] helpers and the same relay. [`metrics`] serves `--stats`; [`probe`] drives
//! active health checks; [`limits`] checks the kernel's limits at start-up.

mod accept;
mod client;
mod forward;
mod limits;
mod listen;
mod metrics;
mod probe;
mod session;
mod state;
mod tunnel;

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use crate::config::rule::Rule;
use crate::config::Setup;
use crate::log;
use crate::sys::{self, reason};
use crate::threads;
use listen::ListenError;
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

/// Opens every listener (the rules' and the metrics one), then serves until the process is
/// stopped by a signal.
pub fn run(mut setup: Setup) -> Result<(), ServeError> {
    log::set_verbosity(setup.process.verbosity);
    sys::limit_malloc_arenas();
    let listeners = setup.rules.len() as u64 + u64::from(setup.process.stats.is_some());
    limits::check(&mut setup.rules, listeners).map_err(ServeError::Limits)?;
    let mut opened: Vec<(Rule, Vec<TcpListener>)> = Vec::new();
    for rule in setup.rules {
        let sockets =
            listen::bind_listen(&rule.listen, rule.options.mss, Some(rule.options.backlog))
                .map_err(ServeError::Listen)?;
        let bound: Vec<SocketAddr> = sockets.iter().filter_map(|s| s.local_addr().ok()).collect();
        if let Some(warning) = tunnel::open_proxy_warning(&rule, &bound) {
            log::problem(format_args!("{warning}"));
        }
        opened.push((rule, sockets));
    }
    let stats = match &setup.process.stats {
        Some(addr) => Some(metrics::bind_metrics(addr).map_err(ServeError::Listen)?),
        None => None,
    };
    let own_addrs: Arc<Vec<SocketAddr>> = Arc::new(
        opened
            .iter()
            .flat_map(|(_, s)| s.iter())
            .chain(&stats)
            .filter_map(|s| s.local_addr().ok())
            .collect(),
    );
    let states: Vec<(Arc<RuleState>, Vec<TcpListener>)> = opened
        .into_iter()
        .map(|(rule, sockets)| {
            (
                Arc::new(RuleState::new(rule, Arc::clone(&own_addrs))),
                sockets,
            )
        })
        .collect();
    if let Some(socket) = stats {
        serve_metrics(socket, states.iter().map(|(s, _)| Arc::clone(s)).collect())?;
    }
    let mut accept_threads = Vec::new();
    for (state, sockets) in states {
        if let Some(pool) = &state.pool {
            if let Some(interval) = pool.health_interval() {
                probe::start_probes(pool, interval).map_err(ServeError::Thread)?;
            }
        }
        for socket in sockets {
            let local = socket.local_addr();
            let serving = Arc::clone(&state);
            let handle = threads::spawn(move || accept::serve_rule(socket, serving))
                .map_err(ServeError::Thread)?;
            accept_threads.push(handle);
            if let Ok(local) = local {
                log::info(format_args!("listening on {local} (rule {})", state.label));
            }
        }
    }
    for handle in accept_threads {
        let _ = handle.join();
    }
    Ok(())
}

/// Starts the metrics thread. Logged before the rules' `listening on` lines, so whoever
/// waits for those has seen this one too.
fn serve_metrics(socket: TcpListener, rules: Vec<Arc<RuleState>>) -> Result<(), ServeError> {
    let local = socket.local_addr();
    threads::spawn(move || metrics::serve(socket, rules)).map_err(ServeError::Thread)?;
    if let Ok(local) = local {
        log::info(format_args!("metrics on http://{local}/metrics"));
    }
    Ok(())
}
