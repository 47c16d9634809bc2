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
use crate::sys::reason;
use crate::threads;
use listen::{ListenError, Listener};
use state::RuleState;

/// Start-up failed: exit status 1.
#[derive(Debug)]
pub enum ServeError {
    /// A listener could not be opened.
    Listen(ListenError),
    /// The accept thread could not be started.
    Thread(std::io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ServeError::Listen(e) => e.fmt(f),
            ServeError::Thread(e) => write!(f, "cannot start a thread: {}", reason(e)),
        }
    }
}

/// Opens every listener (the rules' and the metrics one), then serves until the process is
/// stopped by a signal. Whenever it returns, the socket files of `unix:PATH` listeners are
/// removed.
pub fn run(setup: Setup) -> Result<(), ServeError> {
    let result = serve_all(setup);
    listen::remove_socket_files();
    result
}

fn serve_all(mut setup: Setup) -> Result<(), ServeError> {
    log::set_verbosity(setup.process.verbosity);
    limits::check(&mut setup.rules);
    let mut opened: Vec<(Rule, Vec<Listener>)> = Vec::new();
    for rule in setup.rules {
        let sockets = listen::open(&rule.listen, rule.options.mss, Some(rule.options.backlog))
            .map_err(ServeError::Listen)?;
        let bound: Vec<SocketAddr> = sockets.iter().filter_map(Listener::local_addr).collect();
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
            .flat_map(|(_, s)| s.iter().filter_map(Listener::local_addr))
            .chain(stats.iter().filter_map(|s| s.local_addr().ok()))
            .collect(),
    );
    let states: Vec<(Arc<RuleState>, Vec<Listener>)> = opened
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
    let mut serving: Vec<(Listener, Arc<RuleState>)> = Vec::new();
    for (state, sockets) in states {
        if let Some(pool) = &state.pool {
            if let Some(interval) = pool.health_interval() {
                probe::start_probes(pool, interval).map_err(ServeError::Thread)?;
            }
        }
        serving.extend(sockets.into_iter().map(|s| (s, Arc::clone(&state))));
    }
    for handle in start_accepting(serving)? {
        let _ = handle.join();
    }
    Ok(())
}

/// Up to this many listeners get an accept thread each: the simplest path, with the fewest
/// system calls per connection. More (port ranges, thousands of rules) are polled in groups
/// (Unix): an idle thread blocked in `accept()` costs about 10 KiB of memory and, on Linux, a
/// reserved file descriptor, per listener (README "Many rules").
#[cfg(unix)]
const THREAD_PER_LISTENER_UP_TO: usize = 64;

/// Listeners one polling thread serves: each `poll()` takes time in proportion to them.
#[cfg(unix)]
const POLL_GROUP: usize = 1024;

/// Starts accepting on every listener (see `THREAD_PER_LISTENER_UP_TO`); each is announced
/// `listening on ADDR (rule LABEL)` once its thread runs.
fn start_accepting(
    serving: Vec<(Listener, Arc<RuleState>)>,
) -> Result<Vec<threads::Handle<()>>, ServeError> {
    let announce = |socket: &Listener, state: &RuleState| {
        let local = match socket.local_addr() {
            Some(local) => local.to_string(),
            None => state.label.clone(),
        };
        format!("listening on {local} (rule {})", state.label)
    };
    let mut handles = Vec::new();
    #[cfg(unix)]
    if serving.len() > THREAD_PER_LISTENER_UP_TO {
        let mut rest = serving;
        while !rest.is_empty() {
            let later = rest.split_off(rest.len().min(POLL_GROUP));
            let group = std::mem::replace(&mut rest, later);
            let mut lines = Vec::with_capacity(group.len());
            for (socket, state) in &group {
                socket.set_nonblocking(true).map_err(|e| {
                    ServeError::Listen(ListenError {
                        addr: state.label.clone(),
                        reason: reason(&e),
                    })
                })?;
                lines.push(announce(socket, state));
            }
            let handle = threads::spawn(move || accept::serve_many(group));
            handles.push(handle.map_err(ServeError::Thread)?);
            for line in lines {
                log::info(format_args!("{line}"));
            }
        }
        return Ok(handles);
    }
    for (socket, state) in serving {
        let line = announce(&socket, &state);
        let handle = threads::spawn(move || accept::serve_rule(socket, state));
        handles.push(handle.map_err(ServeError::Thread)?);
        log::info(format_args!("{line}"));
    }
    Ok(handles)
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
