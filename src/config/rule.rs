//! The typed form of a rule: what the command line or a config line means, parsed once.

use std::net::IpAddr;
use std::time::Duration;

use crate::addr::{Acl, HostPort, ListenAddr, TargetAddr};
use crate::log::Verbosity;
use crate::sys::{Keepalive, TcpOptions};
use crate::wire::connect_head::Credential;
use crate::wire::proxy_header::Version as ProxyVersion;

/// Copy buffer per direction, allocated only once a connection carries bulk data (the relay
/// reads into a small stack buffer first): 64 KiB cut the forwarder's CPU per GiB by a quarter
/// against 16 KiB (`make bench`, README "Performance") and stays below malloc's mmap
/// threshold (128 KiB and above slow connection set-up, NOTES.md).
pub const DEFAULT_BUFFER_SIZE: usize = 64 * 1024;

/// The listen backlog unless `--backlog` says otherwise: a burst of 1,000 clients waits in
/// the kernel instead of retrying its SYN 1-3 s later (std listens with 128). Linux caps it at
/// `net.core.somaxconn` (4096 since Linux 5.4, 128 before).
pub const DEFAULT_BACKLOG: u32 = 1024;

/// One listener and what to do with each connection it accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Where to listen, as written (also the `rule` label in logs and metrics); for a port of
    /// a range, that port's own address `HOST:P`.
    pub listen: ListenAddr,
    /// Forward to targets, or act as an HTTP CONNECT proxy.
    pub mode: Mode,
    /// Options common to both modes.
    pub options: Options,
    /// Set when the rule is one port of a range written `HOST:P1-P2`.
    pub span: Option<Span>,
}

/// Where a rule stands in the port range it was written as, so that `--check` can print the
/// range once. The rules of one range are consecutive and alike except for their ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    /// This rule's place in the range: its port is P1 + `index`.
    pub index: u16,
    /// How many ports the range has.
    pub count: u16,
    /// For each target in written order, whether it was a range too (offset mapping).
    pub ranged: Vec<bool>,
}

/// What a rule does with an accepted connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward to one of a list of targets.
    Forward(Forward),
    /// Tunnel to the destination an HTTP CONNECT request names.
    Connect(ConnectPolicy),
}

/// A target list and how to choose among it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    /// Targets in written order (never empty).
    pub targets: Vec<Target>,
    /// How the next target is chosen.
    pub balance: Balance,
    /// Active and passive health checking.
    pub health: HealthCheck,
}

/// One target with its flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Where to connect; a name is resolved at every connect.
    pub addr: TargetAddr,
    /// Relative share of connections, 1..=1000.
    pub weight: u32,
    /// At most this many connections at once to this target.
    pub max_conns: Option<usize>,
    /// Used only when every non-backup target is down or failed.
    pub backup: bool,
}

/// Load-balancing policy (`--balance`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Balance {
    /// Smooth weighted round-robin.
    #[default]
    RoundRobin,
    /// Fewest open connections per unit of weight.
    LeastConn,
    /// Weighted rendezvous hashing of the client address.
    SourceHash,
    /// The first target in written order that is up.
    First,
}

impl Balance {
    /// Parses a policy name.
    pub fn parse(text: &str) -> Result<Balance, String> {
        match text {
            "round-robin" => Ok(Balance::RoundRobin),
            "least-conn" => Ok(Balance::LeastConn),
            "source-hash" => Ok(Balance::SourceHash),
            "first" => Ok(Balance::First),
            _ => Err(format!(
                "'{text}' is not a policy (round-robin, least-conn, source-hash, first)"
            )),
        }
    }

    /// The policy's name as written on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round-robin",
            Balance::LeastConn => "least-conn",
            Balance::SourceHash => "source-hash",
            Balance::First => "first",
        }
    }
}

/// How a target list is health-checked (the live state is the pool's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// Active TCP-connect probes at this interval; `None` = off.
    pub interval: Option<Duration>,
    /// Consecutive failed connects that mark a target down (passive health).
    pub down_after: u32,
    /// How long a target marked down by failed connects is skipped.
    pub down_for: Duration,
}

/// The rules of an HTTP CONNECT proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectPolicy {
    /// Ports clients may tunnel to.
    pub ports: Ports,
    /// Filter on the resolved destination address.
    pub destinations: Acl,
    /// Accepted `USER:PASS` pairs; empty = no authentication.
    pub users: Vec<Credential>,
}

/// `--connect-ports`: a list, or any port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ports {
    /// Every port.
    Any,
    /// Only these.
    Only(Vec<u16>),
}

/// Only HTTPS by default: an open relay to every port is a spam and abuse tool.
impl Default for Ports {
    fn default() -> Ports {
        Ports::Only(vec![443])
    }
}

impl Ports {
    /// Whether a tunnel to `port` is allowed.
    pub fn allows(&self, port: u16) -> bool {
        match self {
            Ports::Any => true,
            Ports::Only(list) => list.contains(&port),
        }
    }
}

/// Options common to forwarding and CONNECT rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Budget for connecting to one target, over all its addresses.
    pub connect_timeout: Duration,
    /// Close when neither direction moved a byte for this long; `None` = never.
    pub idle_timeout: Option<Duration>,
    /// Once one direction ended, close when the other is quiet this long; `None` = never.
    pub fin_timeout: Option<Duration>,
    /// TCP keepalive on both legs; `None` = off.
    pub keepalive: Option<Keepalive>,
    /// Client connections at once on this rule.
    pub max_conns: usize,
    /// The listen backlog: connections the kernel completes and queues while the rule does
    /// not accept (at `--max-conns`, or between two accepts).
    pub backlog: u32,
    /// Client address filter.
    pub clients: Acl,
    /// Copy buffer per direction, bytes.
    pub buffer_size: usize,
    /// At most this many bytes per send (with TCP_NODELAY).
    pub segment_size: Option<usize>,
    /// TCP_MAXSEG on the listening socket and on each target socket before it connects.
    pub mss: Option<u32>,
    /// TCP_CONGESTION per leg.
    pub congestion: Congestion,
    /// TCP_USER_TIMEOUT on both legs; `None` = the kernel's.
    pub user_timeout: Option<Duration>,
    /// The local address connections to targets leave from; `None` = the OS's choice.
    pub source: Option<IpAddr>,
    /// Leave Nagle's algorithm on.
    pub nagle: bool,
    /// Send a PROXY protocol header to the target.
    pub proxy_protocol: Option<ProxyVersion>,
    /// Expect a PROXY protocol header from each client.
    pub accept_proxy: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            connect_timeout: Duration::from_secs(5),
            idle_timeout: None,
            fin_timeout: Some(Duration::from_secs(60)),
            keepalive: Some(Keepalive {
                idle: Duration::from_secs(60),
                interval: Keepalive::INTERVAL,
                count: Keepalive::COUNT,
            }),
            max_conns: 1024,
            backlog: DEFAULT_BACKLOG,
            clients: Acl::default(),
            buffer_size: DEFAULT_BUFFER_SIZE,
            segment_size: None,
            mss: None,
            congestion: Congestion::default(),
            user_timeout: None,
            source: None,
            nagle: false,
            proxy_protocol: None,
            accept_proxy: false,
        }
    }
}

/// `--congestion`: the congestion control of each leg by name; `None` = the system's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Congestion {
    /// On the client's socket (set on the listener, inherited at accept).
    pub client: Option<String>,
    /// On each target socket, before it connects.
    pub target: Option<String>,
}

impl Options {
    /// The TCP options of the client leg (set on the listening socket).
    pub fn client_leg(&self) -> TcpOptions {
        TcpOptions {
            congestion: self.congestion.client.clone(),
            ..self.both_legs()
        }
    }

    /// The TCP options of the target leg (set on each target socket before it connects).
    pub fn target_leg(&self) -> TcpOptions {
        TcpOptions {
            congestion: self.congestion.target.clone(),
            ..self.both_legs()
        }
    }

    /// TCP_NODELAY on both legs: unless `--nagle`, and always with `--segment-size` (which
    /// promises each piece leaves at once).
    pub fn nodelay(&self) -> bool {
        !self.nagle || self.segment_size.is_some()
    }

    fn both_legs(&self) -> TcpOptions {
        TcpOptions {
            nodelay: self.nodelay(),
            keepalive: self.keepalive,
            mss: self.mss,
            congestion: None,
            user_timeout: self.user_timeout,
        }
    }
}

impl Default for HealthCheck {
    fn default() -> HealthCheck {
        HealthCheck {
            interval: None,
            down_after: 1,
            down_for: Duration::from_secs(10),
        }
    }
}

/// How long connections in flight may go on after SIGTERM/SIGINT (`--grace`).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// Options of the whole process rather than of one rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    /// Where to serve Prometheus metrics.
    pub stats: Option<HostPort>,
    /// Logging level.
    pub verbosity: Verbosity,
    /// How long a graceful stop waits for connections in flight (`0`: not at all).
    pub grace: Duration,
}

impl Default for Process {
    fn default() -> Process {
        Process {
            stats: None,
            verbosity: Verbosity::default(),
            grace: DEFAULT_GRACE,
        }
    }
}
