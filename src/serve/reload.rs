//! SIGHUP: read the config file again, exactly as at start-up (the command-line defaults
//! still apply), and change what is served with no connection refused or reset.
//!
//! A rule is identified by its listen address as written. Everything that can fail happens
//! first (parsing, opening new listeners and a changed `--stats`); only then is anything
//! changed: kept rules get their new state (connections in flight keep theirs), removed
//! rules stop accepting, new ones start.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, Command};
use crate::log;
use crate::serve::accept::{self, Listener, LoopGuard};
use crate::serve::listen;
use crate::serve::live::{Entry, Live, Stats};
use crate::serve::metrics;
use crate::serve::state::RuleState;
use crate::serve::{limits, probe, tunnel};
use crate::sys;
use crate::threads;

/// What a reload did, for its log line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Rules served now.
    pub rules: usize,
    /// New listen addresses.
    pub added: usize,
    /// Listen addresses no longer in the file.
    pub removed: usize,
    /// Kept listen addresses whose rule changed.
    pub changed: usize,
    /// `--grace` now.
    pub grace: Duration,
}

/// Reloads `path` with the process's arguments `args`; logs one line and counts the result.
/// Returns `--grace` as the file now says, if the reload worked.
pub fn reload(live: &Arc<Live>, args: &[OsString], path: &Path) -> Option<Duration> {
    match apply(live, args) {
        Ok(s) => {
            live.reloads.ok.add(1);
            log::event(format_args!(
                "reloaded {}: {} rules ({} added, {} removed, {} changed)",
                path.display(),
                s.rules,
                s.added,
                s.removed,
                s.changed
            ));
            Some(s.grace)
        }
        Err(why) => {
            live.reloads.failed.add(1);
            log::problem(format_args!("reload failed: {why}"));
            None
        }
    }
}

fn apply(live: &Arc<Live>, args: &[OsString]) -> Result<Summary, String> {
    let mut setup = match config::parse_args(args.to_vec()) {
        Ok(Command::Run(setup)) => setup,
        Ok(_) => return Err("the command line no longer asks to serve".into()),
        Err(e) => return Err(e.to_string()),
    };
    let shown = setup
        .config
        .as_ref()
        .map_or_else(String::new, |p| format!("{}: ", p.display()));
    let listeners = setup.rules.len() as u64 + u64::from(setup.process.stats.is_some());
    limits::check(&mut setup.rules, listeners).map_err(|e| format!("{shown}{e}"))?;
    let old: HashMap<String, Arc<Entry>> = live
        .entries()
        .into_iter()
        .map(|e| (e.label.clone(), e))
        .collect();

    // Everything that can fail, before anything changes.
    let mut seen = HashSet::new();
    let mut opened: HashMap<String, Vec<Arc<Listener>>> = HashMap::new();
    for rule in &setup.rules {
        let label = rule.listen.to_string();
        if !seen.insert(label.clone()) {
            return Err(format!("{shown}two rules listen on {label}"));
        }
        if old.contains_key(&label) {
            continue;
        }
        let leg = rule.options.client_leg();
        let backlog = Some(rule.options.backlog);
        let (sockets, inherited) = listen::open(&rule.listen, &leg, accept::preset(rule), backlog)
            .map_err(|e| format!("{shown}{e}"))?;
        let listeners = sockets
            .into_iter()
            .map(|s| Listener::prepared(s, inherited, false));
        opened.insert(label, listeners.collect());
    }
    let old_stats = live.stats();
    let new_stats = match (&setup.process.stats, &old_stats) {
        (Some(addr), Some(now)) if *addr == now.addr => Some(now.clone()),
        (Some(addr), _) => {
            let socket = metrics::bind_metrics(addr).map_err(|e| format!("{shown}{e}"))?;
            Some(Stats {
                addr: addr.clone(),
                listener: Listener::new(socket, false),
            })
        }
        (None, _) => None,
    };

    // Nothing fails from here on.
    log::set_verbosity(setup.process.verbosity);
    let mut own: Vec<_> = old.values().flat_map(|e| e.listeners.iter()).collect();
    own.extend(opened.values().flatten());
    own.extend(new_stats.as_ref().map(|s| &s.listener));
    let own_addrs = Arc::new(
        own.iter()
            .filter_map(|l| l.socket().local_addr().ok())
            .collect::<Vec<_>>(),
    );
    let mut summary = Summary {
        rules: setup.rules.len(),
        grace: setup.process.grace,
        ..Summary::default()
    };
    let mut entries = Vec::new();
    let mut kept = HashSet::new();
    for rule in setup.rules {
        let label = rule.listen.to_string();
        if let Some(entry) = old.get(&label) {
            let before = entry.current.get();
            if before.rule != rule {
                summary.changed += 1;
                renew_listeners(entry, &before.rule, &rule);
            }
            let state = Arc::new(RuleState::renewed(rule, &before, Arc::clone(&own_addrs)));
            replace_pool(&before, &state);
            entry.current.replace(state);
            kept.insert(label);
            entries.push(Arc::clone(entry));
        } else if let Some(listeners) = opened.remove(&label) {
            if let Some(warning) = tunnel::open_proxy_warning(&rule, &local_addrs(&listeners)) {
                log::problem(format_args!("{warning}"));
            }
            let entry = Entry::new(RuleState::new(rule, Arc::clone(&own_addrs)), listeners);
            if let Err(e) = entry.start() {
                log::problem(format_args!(
                    "cannot start serving {label}: {}",
                    sys::reason(&e)
                ));
            }
            summary.added += 1;
            entries.push(entry);
        }
    }
    for (label, entry) in &old {
        if !kept.contains(label) {
            entry.stop();
            summary.removed += 1;
        }
    }
    live.set_entries(entries);
    let stats_changed = match (&old_stats, &new_stats) {
        (Some(a), Some(b)) => !Arc::ptr_eq(&a.listener, &b.listener),
        (a, b) => a.is_some() != b.is_some(),
    };
    if stats_changed {
        if let Some(old) = &old_stats {
            old.listener.stop();
        }
        live.set_stats(new_stats.clone());
        if let Some(stats) = new_stats {
            if let Err(e) = start_metrics(live, &stats) {
                log::problem(format_args!("cannot serve metrics: {}", sys::reason(&e)));
            }
        }
    }
    Ok(summary)
}

/// A kept rule's sockets take its new client-leg TCP options and `--backlog`.
fn renew_listeners(entry: &Entry, before: &config::rule::Rule, after: &config::rule::Rule) {
    let (was, now) = (&before.options, &after.options);
    let (leg_was, leg_now) = (was.client_leg(), now.client_leg());
    for listener in &entry.listeners {
        let socket = listener.socket();
        if leg_now != leg_was {
            // Every option, the defaults back included: clients accepted from now on
            // inherit the new ones (connections already open keep theirs).
            let set = socket
                .as_tcp()
                .map(|s| sys::set_listener_options(s, &leg_now, false));
            if let Some(Err(e)) = set {
                log::problem(format_args!("{}: {e}", entry.label));
            }
        }
        if now.backlog != was.backlog {
            if let Err(e) = sys::set_backlog(socket, now.backlog) {
                log::problem(format_args!("{}: {}", entry.label, sys::reason(&e)));
            }
        }
    }
}

/// A rule that got a new pool: the old one's probes stop, the new one's start.
fn replace_pool(before: &RuleState, after: &RuleState) {
    let (Some(old), new) = (&before.pool, &after.pool) else {
        if let Some(new) = &after.pool {
            start_probes(new);
        }
        return;
    };
    match new {
        Some(new) if Arc::ptr_eq(old, new) => {}
        _ => {
            old.retire();
            if let Some(new) = new {
                start_probes(new);
            }
        }
    }
}

fn start_probes(pool: &Arc<crate::pool::Pool>) {
    if let Some(interval) = pool.health_interval() {
        if let Err(e) = probe::start_probes(pool, interval) {
            log::problem(format_args!(
                "cannot start health probes: {}",
                sys::reason(&e)
            ));
        }
    }
}

fn local_addrs(listeners: &[Arc<Listener>]) -> Vec<std::net::SocketAddr> {
    listeners
        .iter()
        .filter_map(|l| l.socket().local_addr().ok())
        .collect()
}

/// Starts the metrics thread for `stats`; logs `metrics on`.
pub fn start_metrics(live: &Arc<Live>, stats: &Stats) -> std::io::Result<()> {
    let local = stats.listener.socket().local_addr();
    let (listener, live) = (Arc::clone(&stats.listener), Arc::clone(live));
    let running = LoopGuard::new();
    threads::start(move || metrics::serve(listener, live, running))?;
    if let Ok(local) = local {
        log::info(format_args!("metrics on http://{local}/metrics"));
    }
    Ok(())
}
