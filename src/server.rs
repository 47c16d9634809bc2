//! Start-up: open every listener first, then serve every rule, one accept thread per socket.

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use crate::cli::Setup;
use crate::health;
use crate::limits;
use crate::listener::{self, ListenError, Slots};
use crate::log::{self, Burst};
use crate::metrics::RuleStats;
use crate::pool::Pool;
use crate::relay::{Settings, Timeouts};
use crate::rule::{Mode, Rule};
use crate::stats;
use crate::threads;
use crate::tunnel;

/// What one rule's threads share.
pub struct RuleState {
    /// The rule.
    pub rule: Rule,
    /// The listen address as written: `listen=` in logs, `rule` in metrics.
    pub label: String,
    /// The targets, in forwarding mode.
    pub pool: Option<Arc<Pool>>,
    /// Every address this process listens on (CONNECT refuses to tunnel to them).
    pub own_addrs: Arc<Vec<SocketAddr>>,
    /// Open connections against `--max-conns`.
    pub slots: Slots,
    /// Counters.
    pub stats: RuleStats,
    /// Once-per-burst logging of resource trouble.
    pub troubles: Troubles,
}

/// One [`Burst`] per kind of recurring trouble.
#[derive(Default)]
pub struct Troubles {
    /// `accept()` failing.
    pub accept: Burst,
    /// Threads that cannot be started.
    pub spawn: Burst,
    /// `--max-conns` reached.
    pub full: Burst,
}

impl RuleState {
    /// The shared state of a rule whose listeners are open.
    pub(crate) fn new(rule: Rule, own_addrs: Arc<Vec<SocketAddr>>) -> RuleState {
        let pool = match &rule.mode {
            Mode::Forward(fw) => Some(Arc::new(Pool::new(fw, rule.options.connect_timeout))),
            Mode::Connect(_) => None,
        };
        RuleState {
            label: rule.listen.to_string(),
            rule,
            pool,
            own_addrs,
            slots: Slots::default(),
            stats: RuleStats::default(),
            troubles: Troubles::default(),
        }
    }

    /// How the relay copies for this rule.
    pub fn relay_settings(&self) -> Settings {
        let o = &self.rule.options;
        Settings {
            buffer_size: o.buffer_size,
            segment_size: o.segment_size,
            timeouts: Timeouts {
                idle: o.idle_timeout,
                fin: o.fin_timeout,
            },
        }
    }
}

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
            ServeError::Thread(e) => write!(f, "cannot start a thread: {}", crate::reason(e)),
        }
    }
}

/// Opens every listener (the rules' and the metrics one), then serves until the process is
/// stopped by a signal.
pub fn run(mut setup: Setup) -> Result<(), ServeError> {
    log::set_verbosity(setup.process.verbosity);
    limits::check(&mut setup.rules);
    let mut opened: Vec<(Rule, Vec<TcpListener>)> = Vec::new();
    for rule in setup.rules {
        let sockets = listener::open(&rule.listen, rule.options.mss).map_err(ServeError::Listen)?;
        let bound: Vec<SocketAddr> = sockets.iter().filter_map(|s| s.local_addr().ok()).collect();
        if let Some(warning) = tunnel::open_proxy_warning(&rule, &bound) {
            log::problem(format_args!("{warning}"));
        }
        opened.push((rule, sockets));
    }
    let stats = match &setup.process.stats {
        Some(addr) => Some(stats::open(addr).map_err(ServeError::Listen)?),
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
        serve_stats(socket, states.iter().map(|(s, _)| Arc::clone(s)).collect())?;
    }
    let mut accept_threads = Vec::new();
    for (state, sockets) in states {
        if let Some(pool) = &state.pool {
            if let Some(interval) = pool.health_interval() {
                health::start_probes(pool, interval).map_err(ServeError::Thread)?;
            }
        }
        for socket in sockets {
            let local = socket.local_addr();
            let serving = Arc::clone(&state);
            let handle = threads::spawn(move || listener::accept_loop(socket, serving))
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
fn serve_stats(socket: TcpListener, rules: Vec<Arc<RuleState>>) -> Result<(), ServeError> {
    let local = socket.local_addr();
    threads::spawn(move || stats::serve(socket, rules)).map_err(ServeError::Thread)?;
    if let Ok(local) = local {
        log::info(format_args!("metrics on http://{local}/metrics"));
    }
    Ok(())
}
