//! The target pool: which target a client goes to, and failover when a connect fails.
//! The listener asks "connect this client"; the relay never knows there were several targets.
//!
//! One connection's path: [`Pool::connect`] makes a plan (the usable non-backup targets in
//! policy order, then the usable backups in written order; every target when all are down),
//! then tries the plan's targets one by one, each at most once, skipping full ones. No lock
//! is held across a connect: the plan is made under short locks, the connects happen after.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod balance;
pub mod dial;
mod health;

use crate::addr::Endpoint;
use crate::config::rule::{Balance, Forward, HealthCheck, Target};
use crate::end::End;
use crate::log::{self, Burst};
use crate::stream::Stream;
use balance::{Candidate, Smooth};
use dial::{dial_target, DialError, Dialer};
use health::{Change, Health};

/// One target and its live state.
pub struct Member {
    /// The target as written.
    pub target: Target,
    /// The target as written (address only, without flags), for logs and metric labels.
    pub label: String,
    /// Connections open to it now (including connects in progress); shared with the same
    /// target's member in the pool a reload makes.
    pub active: Arc<AtomicUsize>,
    /// Passive and active health (shared like `active`).
    health: Arc<Health>,
    /// Its identity for source-hash.
    key: u64,
}

impl Member {
    fn new(target: &Target) -> Member {
        let label = target.addr.to_string();
        Member {
            key: balance::key_of(&label),
            target: target.clone(),
            label,
            active: Arc::default(),
            health: Arc::default(),
        }
    }

    /// The same target in a new pool: its live count and health go on.
    fn after(target: &Target, previous: &Member) -> Member {
        Member {
            active: Arc::clone(&previous.active),
            health: Arc::clone(&previous.health),
            ..Member::new(target)
        }
    }

    /// Whether it is up (not marked down by failed connects or probes).
    pub fn is_up(&self) -> bool {
        self.health.is_up()
    }

    /// Connections open to it now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    fn candidate(&self, index: usize) -> Candidate {
        Candidate {
            index,
            weight: self.target.weight,
            active: self.active(),
            key: self.key,
        }
    }

    /// A connect or probe succeeded: up again (logged once).
    fn succeeded(&self) {
        if self.health.succeeded() == Change::Up {
            log::info(format_args!("target {} up", self.label));
        }
    }

    /// Logs the change a failure made, if it marked the target down.
    fn report_failure(&self, change: Change, why: &DialError) {
        if change == Change::Down {
            log::problem(format_args!("target {} down: {why}", self.label));
        }
    }
}

/// The targets of one rule.
pub struct Pool {
    /// Targets in written order.
    pub members: Vec<Member>,
    balance: Balance,
    health: HealthCheck,
    connect_timeout: Duration,
    /// How sockets to targets are made.
    dialer: Dialer,
    /// Round-robin state (a short lock, only while choosing).
    smooth: Mutex<Smooth>,
    /// Rotates the start among equally loaded targets (least-conn).
    tick: AtomicUsize,
    /// "Every target is down" is logged once per burst.
    all_down: Burst,
    /// A local shortage (file descriptors, memory, ports) is logged once per burst.
    shortage: Burst,
    /// Replaced by a reload: its probe thread stops.
    retired: AtomicBool,
}

/// A connection to a target; the target's open-connection count drops when `lease` is dropped.
pub struct Connected {
    /// The connected socket.
    pub stream: Stream,
    /// The address actually connected.
    pub addr: Endpoint,
    /// Keeps the target's count.
    pub lease: Lease,
}

/// Counts one open connection on a target until dropped.
pub struct Lease {
    pool: Arc<Pool>,
    index: usize,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(member) = self.pool.members.get(self.index) {
            member.active.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The targets one connection will try, in order.
struct Plan {
    order: Vec<usize>,
    /// Every target was down: try them all, ignoring their down periods.
    fail_open: bool,
}

impl Pool {
    /// A pool for a rule's target list.
    pub fn new(forward: &Forward, connect_timeout: Duration) -> Pool {
        Pool {
            members: forward.targets.iter().map(Member::new).collect(),
            balance: forward.balance,
            health: forward.health,
            connect_timeout,
            dialer: Dialer::default(),
            smooth: Mutex::new(Smooth::new(forward.targets.len())),
            tick: AtomicUsize::new(0),
            all_down: Burst::default(),
            shortage: Burst::default(),
            retired: AtomicBool::new(false),
        }
    }

    /// The same pool, its sockets to targets made by `dialer` (TCP options, `--source`).
    pub fn dialing(self, dialer: Dialer) -> Pool {
        Pool { dialer, ..self }
    }

    /// The pool a reload makes for a changed target list: a target still in it (the same
    /// target as written) keeps its health and open-connection count.
    pub fn after(forward: &Forward, connect_timeout: Duration, previous: Option<&Pool>) -> Pool {
        let mut pool = Pool::new(forward, connect_timeout);
        if let Some(previous) = previous {
            for member in &mut pool.members {
                if let Some(old) = previous.members.iter().find(|m| m.label == member.label) {
                    *member = Member::after(&member.target, old);
                }
            }
        }
        pool
    }

    /// Marks the pool replaced (a reload changed or removed its rule): probes stop.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }

    /// Whether a reload replaced the pool.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// The active health-check interval, if any.
    pub fn health_interval(&self) -> Option<Duration> {
        self.health.interval
    }

    /// Connects a client to a target, failing over to the next one when a connect fails;
    /// each target is tried at most once. The error is the `end=` to log.
    pub fn connect(self: &Arc<Self>, client: IpAddr) -> Result<Connected, End> {
        let plan = self.plan(client, Instant::now());
        let mut last: Option<DialError> = None;
        for &index in &plan.order {
            let Some(member) = self.members.get(index) else {
                continue;
            };
            let Some(lease) = self.lease(index) else {
                log::detail(format_args!(
                    "client {client}: target {} skipped: at its max-conns",
                    member.label
                ));
                continue;
            };
            if !plan.fail_open && !member.health.claim(Instant::now(), self.health.down_for) {
                // Another connection took its retry meanwhile.
                log::detail(format_args!(
                    "client {client}: target {} skipped: down",
                    member.label
                ));
                continue;
            }
            match self.attempt(member, client) {
                Ok((stream, addr)) => {
                    if last.is_some() {
                        log::detail(format_args!(
                            "client {client}: failed over to target {}",
                            member.label
                        ));
                    }
                    return Ok(Connected {
                        stream,
                        addr,
                        lease,
                    });
                }
                // Every other target would fail the same way.
                Err(e) if e.is_local() => return Err(e.end()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or(End::NoTarget, |e| e.end()))
    }

    /// One connect to one target, with its health updated and logged.
    fn attempt(&self, member: &Member, client: IpAddr) -> Result<(Stream, Endpoint), DialError> {
        let result = dial_target(&member.target.addr, self.connect_timeout, &self.dialer);
        match &result {
            Ok(_) => {
                if let Some(ended) = self.shortage.clear() {
                    log::problem(format_args!(
                        "connects to targets work again after {ended} ({} failed for want of \
                         descriptors or memory here)",
                        ended.count
                    ));
                }
                member.succeeded();
            }
            Err(e) if e.is_local() => self.report_shortage(member, e),
            Err(e) => {
                log::detail(format_args!(
                    "client {client}: target {} failed: {e}",
                    member.label
                ));
                let h = &self.health;
                let change = member
                    .health
                    .connect_failed(Instant::now(), h.down_after, h.down_for);
                member.report_failure(change, e);
            }
        }
        result
    }

    /// Which targets to try, in order: the usable non-backups in policy order, then the
    /// usable backups in written order. When none is usable (every target is down), all of
    /// them in the same order: failing open beats refusing every client.
    fn plan(&self, client: IpAddr, now: Instant) -> Plan {
        let usable: Vec<bool> = self.members.iter().map(|m| m.health.usable(now)).collect();
        let fail_open = !usable.contains(&true);
        if fail_open {
            let labels: Vec<&str> = self.members.iter().map(|m| m.label.as_str()).collect();
            self.all_down.problem(format_args!(
                "every target is down ({}): trying them anyway",
                labels.join(", ")
            ));
        } else if let Some(ended) = self.all_down.clear() {
            log::problem(format_args!(
                "a target is up again after {ended} ({} clients tried them all)",
                ended.count
            ));
        }
        let allowed = |i: usize| fail_open || usable.get(i).copied().unwrap_or(false);
        let primaries: Vec<Candidate> = self
            .members
            .iter()
            .enumerate()
            .filter(|&(i, m)| !m.target.backup && allowed(i))
            .map(|(i, m)| m.candidate(i))
            .collect();
        let mut order = self.policy_order(client, &primaries);
        order.extend(
            self.members
                .iter()
                .enumerate()
                .filter(|&(i, m)| m.target.backup && allowed(i))
                .map(|(i, _)| i),
        );
        Plan { order, fail_open }
    }

    /// The order `--balance` gives among `candidates`.
    fn policy_order(&self, client: IpAddr, candidates: &[Candidate]) -> Vec<usize> {
        match self.balance {
            Balance::RoundRobin => {
                let chosen = self
                    .smooth
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pick(candidates);
                chosen.map_or_else(Vec::new, |c| balance::after_chosen(c, candidates))
            }
            Balance::LeastConn => {
                let start = self.tick.fetch_add(1, Ordering::Relaxed);
                balance::least_conn_order(candidates, start)
            }
            Balance::SourceHash => balance::hash_order(client, candidates),
            Balance::First => balance::first_order(candidates),
        }
    }

    /// Probes every target once (the active health thread's round): a TCP connect, closed
    /// at once, within the connect timeout but never longer than `interval`.
    pub fn probe_all(&self, interval: Duration) {
        let budget = self.connect_timeout.min(interval);
        let dialer = self.dialer.for_probes();
        for member in &self.members {
            match dial_target(&member.target.addr, budget, &dialer) {
                Ok(_) => member.succeeded(),
                Err(e) if e.is_local() => self.report_shortage(member, &e),
                Err(e) => member.report_failure(member.health.probe_failed(), &e),
            }
        }
    }

    /// A connect or probe failed for want of something local: logged once per burst, and
    /// not counted against the target's health.
    fn report_shortage(&self, member: &Member, e: &DialError) {
        self.shortage.problem(format_args!(
            "cannot connect to target {}: {e} (not counted against the target)",
            member.label
        ));
    }

    /// Takes a connection slot on a target, unless it is at its `max-conns`.
    fn lease(self: &Arc<Self>, index: usize) -> Option<Lease> {
        let member = self.members.get(index)?;
        let limit = member.target.max_conns.unwrap_or(usize::MAX);
        member
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        Some(Lease {
            pool: Arc::clone(self),
            index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};

    fn pool(spec: &[&str], balance: Balance) -> Arc<Pool> {
        let forward = Forward {
            targets: spec
                .iter()
                .map(|s| {
                    let (addr, backup) = match s.strip_suffix(",backup") {
                        Some(a) => (a, true),
                        None => (*s, false),
                    };
                    Target {
                        addr: crate::addr::TargetAddr::parse(addr).unwrap(),
                        weight: 1,
                        max_conns: None,
                        backup,
                    }
                })
                .collect(),
            balance,
            health: HealthCheck::default(),
        };
        Arc::new(Pool::new(&forward, Duration::from_secs(1)))
    }

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn backups_come_after_every_primary() {
        let p = pool(
            &["10.0.0.1:1,backup", "10.0.0.2:1", "10.0.0.3:1"],
            Balance::First,
        );
        assert_eq!(p.plan(CLIENT, Instant::now()).order, [1, 2, 0]);
    }

    #[test]
    fn down_targets_are_left_out_until_all_are_down() {
        let p = pool(
            &["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1,backup"],
            Balance::First,
        );
        let now = Instant::now();
        let down = |i: usize| {
            p.members[i]
                .health
                .connect_failed(now, 1, Duration::from_secs(60))
        };
        assert_eq!(down(0), Change::Down);
        let plan = p.plan(CLIENT, now);
        assert_eq!((plan.order, plan.fail_open), (vec![1, 2], false));
        down(1);
        assert_eq!(p.plan(CLIENT, now).order, [2]);
        down(2);
        let plan = p.plan(CLIENT, now);
        assert_eq!((plan.order, plan.fail_open), (vec![0, 1, 2], true));
    }

    #[test]
    fn a_full_target_is_not_leased() {
        let mut p = pool(&["10.0.0.1:1"], Balance::First);
        if let Some(pool) = Arc::get_mut(&mut p) {
            pool.members[0].target.max_conns = Some(1);
        }
        let first = p.lease(0);
        assert!(first.is_some());
        assert!(p.lease(0).is_none());
        drop(first);
        assert_eq!(p.members[0].active(), 0);
        assert!(p.lease(0).is_some());
    }

    #[test]
    fn failover_reaches_a_listening_target_and_counts_it() {
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let open = TcpListener::bind("127.0.0.1:0").unwrap();
        let open_addr = open.local_addr().unwrap();
        let p = pool(
            &[&closed_addr.to_string(), &open_addr.to_string()],
            Balance::First,
        );
        let Ok(connected) = p.connect(CLIENT) else {
            panic!("no failover");
        };
        assert_eq!(connected.addr, crate::addr::Endpoint::Ip(open_addr));
        assert!(!p.members[0].is_up());
        assert_eq!(p.members[1].active(), 1);
        drop(connected);
        assert_eq!(p.members[1].active(), 0);
    }
}
