//! The one-screen `--help`.

/// The one-screen `--help`.
pub const HELP: &str = "\
tcpfwd - forward TCP connections, balance them over targets, or tunnel HTTP CONNECT

Usage:
  tcpfwd [OPTIONS] LISTEN TARGET [TARGET...]   forward each connection to one TARGET
  tcpfwd [OPTIONS] --connect LISTEN            HTTP CONNECT proxy
  tcpfwd [OPTIONS] --config FILE               every rule in FILE (options here are defaults)
  tcpfwd --check --config FILE                 validate FILE, print the rules, exit

LISTEN: HOST:PORT, [V6]:PORT or :PORT (IPv4 and IPv6), a range HOST:P1-P2 (one rule a port,
  at most 4096), or unix:PATH (unix:@NAME: abstract, Linux).   TARGET: HOST:PORT, [V6]:PORT,
  a range as long as LISTEN's (P1+k goes to Q1+k), or unix:PATH, with optional flags
  ,weight=N (1-1000, default 1) ,max-conns=N ,backup
DUR: 250ms 5s 1.5s 2m 1h, or bare seconds.   SIZE: 1500 16k 1m.

Rule options:                                                      default
  --balance POLICY      round-robin|least-conn|source-hash|first   round-robin
  --connect-timeout DUR budget to connect to one target            5s
  --idle-timeout DUR    close after DUR with no byte either way    0 (never)
  --fin-timeout DUR     close half-closed pair quiet for DUR       60s
  --keepalive I[/N/C]   keepalive: idle, interval, count (seconds) 60s/10s/6
  --max-conns N         connections at once; then stop accepting   1024
  --backlog N           clients the kernel queues (<= somaxconn)   1024
  --allow CIDR          accept only these clients (repeatable)     all
  --deny CIDR           refuse these clients (repeatable, wins)    none
  --buffer-size SIZE    copy buffer per direction                  64k
  --segment-size SIZE   at most SIZE bytes per send (+NODELAY)     off
  --mss SIZE            TCP_MAXSEG on both legs (Linux)            off
  --congestion NAME     TCP congestion control, both legs, or      system's
                        client=NAME,target=NAME (Linux)
  --user-timeout DUR    give up on unacknowledged data (Linux)     kernel's
  --source ADDR         local IP of connections to targets (Linux) OS's choice
  --nagle               leave Nagle's algorithm on                 off
  --proxy-protocol V    send PROXY header v1|v2 to the target      off
  --accept-proxy        expect a PROXY header from each client     off
  --health-interval DUR active TCP health probes (>= 100ms)        off
  --down-after N        failed connects that mark a target down    1
  --down-for DUR        how long a failed target is skipped        10s
  --connect-ports LIST  CONNECT: allowed ports, or any             443
  --connect-allow CIDR  CONNECT: allowed destinations (repeatable) all
  --connect-deny CIDR   CONNECT: refused destinations (repeatable) none
  --auth USER:PASS      CONNECT: require Basic auth (repeatable)   none

Process options:
  --stats ADDR          Prometheus metrics at http://ADDR/metrics  off
  --grace DUR           SIGTERM: connections may go on for DUR     30s
  -v, -q                more / less logging on stderr
  -h, --help            this text        -V, --version    the version

Signals: HUP reloads --config, TERM/INT stop gracefully, USR2 hands over to a new binary.
Exit status: 2 usage or config error, 1 a listener cannot be opened.
";
