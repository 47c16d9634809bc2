//! The target pool: which target a client goes to, and failover when a connect fails.
//! The listener asks "connect this client"; the relay never knows there were several targets.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::dial::{dial, DialError};
use crate::log::{self, End};
use crate::rule::{Forward, Target};

/// One target and its live state.
pub struct Member {
    /// The target as written.
    pub target: Target,
    /// The target as written, for logs and metric labels.
    pub label: String,
    /// Connections open to it now.
    pub active: AtomicUsize,
}

impl Member {
    /// Whether the target counts as up (`tcpfwd_target_up`). Health checking is not wired in
    /// on this branch, so every target is up.
    pub fn is_up(&self) -> bool {
        true
    }
}

/// The targets of one rule.
pub struct Pool {
    /// Targets in written order.
    pub members: Vec<Member>,
    connect_timeout: Duration,
    next: AtomicUsize,
}

/// A connection to a target; the target's open-connection count drops when this is dropped.
pub struct Connected {
    /// The connected socket.
    pub stream: TcpStream,
    /// The address actually connected.
    pub addr: SocketAddr,
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

impl Pool {
    /// A pool for a rule's target list.
    pub fn new(forward: &Forward, connect_timeout: Duration) -> Pool {
        let members = forward
            .targets
            .iter()
            .map(|t| Member {
                target: t.clone(),
                label: t.addr.to_string(),
                active: AtomicUsize::new(0),
            })
            .collect();
        Pool {
            members,
            connect_timeout,
            next: AtomicUsize::new(0),
        }
    }

    /// Connects a client to a target, failing over to the next one when a connect fails;
    /// each target is tried at most once. The error is the `end=` to log.
    pub fn connect(self: &Arc<Self>, client: IpAddr) -> Result<Connected, End> {
        let _ = client;
        let mut last: Option<DialError> = None;
        for index in self.order() {
            let Some(lease) = self.lease(index) else {
                continue;
            };
            let member = &self.members[index];
            match dial(&member.target.addr, self.connect_timeout) {
                Ok((stream, addr)) => {
                    return Ok(Connected {
                        stream,
                        addr,
                        lease,
                    })
                }
                Err(e) => {
                    log::detail(format_args!("target {} failed: {e}", member.label));
                    last = Some(e);
                }
            }
        }
        Err(last.map_or(End::NoTarget, |e| e.end()))
    }

    /// The order in which targets are tried: non-backups from a rotating start, then backups
    /// in written order.
    fn order(&self) -> Vec<usize> {
        let primaries: Vec<usize> = (0..self.members.len())
            .filter(|&i| !self.members[i].target.backup)
            .collect();
        let mut order = Vec::with_capacity(self.members.len());
        if !primaries.is_empty() {
            let start = self.next.fetch_add(1, Ordering::Relaxed) % primaries.len();
            order.extend(primaries[start..].iter().chain(&primaries[..start]));
        }
        order.extend((0..self.members.len()).filter(|&i| self.members[i].target.backup));
        order
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
