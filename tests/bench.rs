//! `make bench`: tcpfwd (release build) against a direct connection and, when installed,
//! HAProxy, nginx (stream module) and socat, all measured in the same run on loopback.
//!
//! Ignored tests: `cargo test --release --test bench -- --ignored --nocapture --test-threads=1`.
//! Every loop is bounded in count and time; every process started here is stopped by its PID.

mod support;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::{cpu_ticks_with_children, fds_of, free_port, spawn, threads_of, wait_until};

/// How long one throughput row runs.
const ROW_TIME: Duration = Duration::from_secs(2);
/// Bytes after which one throughput row stops early.
const ROW_BYTES: u64 = 16 << 30;
/// Connections per second: clients at once, connections at most, time at most.
const CONCURRENCY: usize = 50;
const CONN_COUNT: usize = 30_000;
/// Connections at most when `TCPFWD_BENCH_CONN_SECS` is set.
const CONN_COUNT_LONG: usize = 200_000;
/// (`TCPFWD_BENCH_CONN_SECS` overrides the time, for profiling.)
const CONN_TIME: Duration = Duration::from_secs(3);
/// Ping-pong: exchanges at most and time at most per size.
const PING_COUNT: usize = 5_000;
const PING_TIME: Duration = Duration::from_millis(1500);
/// Held connections measured first.
const HELD_FIRST: usize = 1_000;
/// Threads per echo server, each blocking in `accept()` itself. A client closes after its
/// echo and connects again at once, while the thread that served it may still be waiting for
/// that EOF: up to twice [`CONCURRENCY`] threads are busy at once. Four times, so a client
/// never waits for a free thread (the table shows the most that were ever busy at once).
const ECHO_THREADS: usize = 4 * CONCURRENCY;
/// Threads per sink and per source (8 streams at most at once, plus readiness probes).
const BULK_THREADS: usize = 16;
/// The backends must serve at least this many times tcpfwd's connection rate directly, or
/// the rate rows measure the harness rather than the forwarders (checked and printed).
const BACKEND_HEADROOM: f64 = 2.0;
/// Chunk the load generators write and read.
const CHUNK: usize = 64 * 1024;
/// Bound on any socket operation of the load generators and servers.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Test servers: sink, source, echo. Each is a set of threads started ahead, every one
// blocking in `accept()` on the same listener and serving the client it got inline (the
// kernel wakes one waiting thread per connection): no hand-off between threads, no queue,
// and one buffer per thread, allocated once. The load generator and the servers share the
// machine with the forwarder, so what they spend per connection is measured too (the
// "harness CPU" row).

#[derive(Clone, Copy)]
enum Kind {
    Sink,
    Source,
    Echo,
}

/// A server on 127.0.0.1 whose threads each accept and serve one client at a time.
struct Server {
    addr: SocketAddr,
    threads: usize,
    stop: Arc<AtomicBool>,
    busy: Arc<Busy>,
}

/// How many of a server's threads are serving a client now, and the most there ever were.
#[derive(Default)]
struct Busy {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl Server {
    fn start(kind: Kind) -> Server {
        let listener = Arc::new(TcpListener::bind("127.0.0.1:0").expect("bind server"));
        let addr = listener.local_addr().expect("server address");
        let stop = Arc::new(AtomicBool::new(false));
        let busy = Arc::new(Busy::default());
        let threads = match kind {
            Kind::Echo => ECHO_THREADS,
            Kind::Sink | Kind::Source => BULK_THREADS,
        };
        for _ in 0..threads {
            let (listener, stop, busy) =
                (Arc::clone(&listener), Arc::clone(&stop), Arc::clone(&busy));
            spawn(move || {
                let mut buf = vec![0u8; CHUNK];
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) if !stop.load(Ordering::SeqCst) => {
                            let now = busy.now.fetch_add(1, Ordering::SeqCst) + 1;
                            busy.most.fetch_max(now, Ordering::SeqCst);
                            let _ = serve(kind, stream, &mut buf);
                            busy.now.fetch_sub(1, Ordering::SeqCst);
                        }
                        Ok(_) => break,
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
        }
        Server {
            addr,
            threads,
            stop,
            busy,
        }
    }

    /// The most threads that were busy at once: all of them means clients had to wait.
    fn most_busy(&self) -> usize {
        self.busy.most.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // One connection per thread wakes it from accept() to see the flag.
        for _ in 0..self.threads {
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        }
    }
}

/// Serves one client: every wait bounded; TCP_NODELAY on the echo, so an echo of a message
/// that took two reads is not held back by Nagle.
fn serve(kind: Kind, mut s: TcpStream, buf: &mut [u8]) -> io::Result<()> {
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    let started = Instant::now();
    match kind {
        Kind::Sink => while s.read(buf)? > 0 && started.elapsed() < Duration::from_secs(60) {},
        Kind::Source => {
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            while started.elapsed() < Duration::from_secs(60) {
                s.write_all(buf)?;
            }
        }
        Kind::Echo => {
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            s.set_nodelay(true)?;
            loop {
                let n = s.read(buf)?;
                if n == 0 || started.elapsed() > Duration::from_secs(60) {
                    return s.shutdown(Shutdown::Write);
                }
                s.write_all(&buf[..n])?;
            }
        }
    }
    Ok(())
}

/// A server that accepts and holds every connection, idle, until dropped.
struct Holder {
    addr: SocketAddr,
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Holder {
    fn start() -> Holder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind holder");
        let addr = listener.local_addr().expect("holder address");
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counted, stopped) = (Arc::clone(&count), Arc::clone(&stop));
        let thread = spawn(move || {
            let mut held = Vec::new();
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        held.push(stream);
                        counted.store(held.len(), Ordering::SeqCst);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
            // Dropping `held` closes every held connection.
        });
        Holder {
            addr,
            count,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The forwarders under test.

/// A process started by the benchmark, killed by its PID (through `Child`) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Peer {
    Direct,
    Tcpfwd,
    Haproxy,
    Nginx,
    Socat,
}

const PEERS: [Peer; 5] = [
    Peer::Direct,
    Peer::Tcpfwd,
    Peer::Haproxy,
    Peer::Nginx,
    Peer::Socat,
];

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Direct => "direct",
            Peer::Tcpfwd => "tcpfwd",
            Peer::Haproxy => "HAProxy",
            Peer::Nginx => "nginx",
            Peer::Socat => "socat",
        }
    }

    fn program(self) -> Option<&'static str> {
        match self {
            Peer::Direct => None,
            Peer::Tcpfwd => Some(env!("CARGO_BIN_EXE_tcpfwd")),
            Peer::Haproxy => Some("haproxy"),
            Peer::Nginx => Some("nginx"),
            Peer::Socat => Some("socat"),
        }
    }

    /// Whether its CPU time can be read: socat forks a process per connection, whose time
    /// reaches its parent's figures only once reaped, so it is left out.
    fn cpu_measured(self) -> bool {
        !matches!(self, Peer::Direct | Peer::Socat)
    }

    /// Installed, and chosen (`TCPFWD_BENCH_PEERS=tcpfwd,haproxy` measures only those).
    fn installed(self) -> bool {
        if let Ok(chosen) = std::env::var("TCPFWD_BENCH_PEERS") {
            if !chosen
                .split(',')
                .any(|c| c.eq_ignore_ascii_case(self.name()))
            {
                return false;
            }
        }
        match self.program() {
            None => true,
            Some(p) if p.contains('/') => Path::new(p).exists(),
            Some(p) => std::env::var_os("PATH")
                .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(p).is_file())),
        }
    }
}

/// A forwarder running in front of some servers: `fronts[i]` forwards to `backs[i]`.
struct Running {
    fronts: Vec<SocketAddr>,
    procs: Vec<Proc>,
}

impl Running {
    fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|p| p.0.id()).collect()
    }

    fn main_pid(&self) -> Option<u32> {
        self.pids().first().copied()
    }

    fn alive(&mut self) -> bool {
        self.procs
            .iter_mut()
            .all(|p| matches!(p.0.try_wait(), Ok(None)))
    }
}

/// Runs `program args` under the open-file limit `nofile` (the shell's ulimit, no prlimit).
fn start_proc(program: &str, args: &[String], nofile: u64, log: &Path) -> Proc {
    let log = std::fs::File::create(log).expect("log file");
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start process");
    Proc(child)
}

/// Starts `peer` forwarding to `backs`; `None` when it is not installed or did not start.
/// `max_conns` is its connection limit; `nofile` its open-file limit.
fn start_peer(
    peer: Peer,
    backs: &[SocketAddr],
    max_conns: usize,
    nofile: u64,
    dir: &Path,
) -> Option<Running> {
    if !peer.installed() {
        return None;
    }
    if peer == Peer::Direct {
        return Some(Running {
            fronts: backs.to_vec(),
            procs: Vec::new(),
        });
    }
    let fronts: Vec<SocketAddr> = backs
        .iter()
        .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
        .collect();
    let program = peer.program()?;
    let log = dir.join(format!("{}.log", peer.name()));
    let procs = match peer {
        Peer::Direct => Vec::new(),
        Peer::Tcpfwd => {
            let mut config = String::new();
            for (front, back) in fronts.iter().zip(backs) {
                // `TCPFWD_BENCH_ARGS="--buffer-size 64k"` tries other settings.
                let extra = std::env::var("TCPFWD_BENCH_ARGS").unwrap_or_default();
                let _ = writeln!(config, "{front} {back} --max-conns {max_conns} {extra}");
            }
            let path = dir.join("tcpfwd.conf");
            std::fs::write(&path, config).ok()?;
            // -q: no line per connection, as the peers log none by default.
            let args = vec!["-q".into(), "--config".into(), path.display().to_string()];
            vec![start_proc(program, &args, nofile, &log)]
        }
        Peer::Haproxy => {
            let mut config = format!(
                "global\n  nbthread 2\n  maxconn {max_conns}\n\
                 defaults\n  mode tcp\n  maxconn {max_conns}\n  timeout connect 5s\n\
                 timeout client 1h\n  timeout server 1h\n"
            );
            for (i, (front, back)) in fronts.iter().zip(backs).enumerate() {
                let _ = write!(
                    config,
                    "frontend f{i}\n  bind {front}\n  default_backend b{i}\n\
                     backend b{i}\n  server s{i} {back}\n"
                );
            }
            let path = dir.join("haproxy.cfg");
            std::fs::write(&path, config).ok()?;
            let args = vec!["-db".into(), "-f".into(), path.display().to_string()];
            vec![start_proc(program, &args, nofile, &log)]
        }
        Peer::Nginx => {
            let module = "/usr/lib/nginx/modules/ngx_stream_module.so";
            let load = if Path::new(module).exists() {
                format!("load_module {module};\n")
            } else {
                String::new()
            };
            let mut config = format!(
                "{load}daemon off;\nmaster_process off;\nworker_processes 1;\n\
                 pid {dir}/nginx.pid;\nerror_log {dir}/nginx-error.log;\n\
                 worker_rlimit_nofile {nofile};\n\
                 events {{ worker_connections {}; }}\nstream {{\n",
                max_conns * 2 + 64,
                dir = dir.display()
            );
            for (front, back) in fronts.iter().zip(backs) {
                let _ = writeln!(config, "  server {{ listen {front}; proxy_pass {back}; }}");
            }
            config.push_str("}\n");
            let path = dir.join("nginx.conf");
            std::fs::write(&path, config).ok()?;
            let args = vec![
                "-p".into(),
                dir.display().to_string(),
                "-e".into(),
                dir.join("nginx-error.log").display().to_string(),
                "-c".into(),
                path.display().to_string(),
            ];
            vec![start_proc(program, &args, nofile, &log)]
        }
        Peer::Socat => fronts
            .iter()
            .zip(backs)
            .map(|(front, back)| {
                let args = vec![
                    format!("TCP-LISTEN:{},bind=127.0.0.1,fork,reuseaddr", front.port()),
                    format!("TCP:{back}"),
                ];
                start_proc(program, &args, nofile, &log)
            })
            .collect(),
    };
    let mut running = Running { fronts, procs };
    let ready = wait_until(Duration::from_secs(10), || {
        running
            .fronts
            .iter()
            .all(|f| TcpStream::connect_timeout(f, Duration::from_millis(200)).is_ok())
    });
    if !ready || !running.alive() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        println!("{} did not start; skipped. Its log:\n{text}", peer.name());
        return None;
    }
    Some(running)
}

// ---------------------------------------------------------------------------------------
// What /proc says about a process.

/// CPU seconds of `pids`, their waited-for children included (socat forks one per
/// connection).
fn cpu_seconds(pids: &[u32]) -> f64 {
    let ticks = |p| cpu_ticks_with_children(p).unwrap_or(0);
    pids.iter().map(|&p| ticks(p)).sum::<u64>() as f64 / 100.0
}

/// Proportional set size in KiB: the process's share of the memory it really uses.
fn pss_kib(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Pss:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn maps_of(pid: u32) -> Option<usize> {
    Some(
        std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .ok()?
            .lines()
            .count(),
    )
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    pss: f64,
    threads: f64,
    maps: f64,
    fds: f64,
}

fn sample(pid: u32) -> Option<Sample> {
    Some(Sample {
        pss: pss_kib(pid)?,
        threads: threads_of(pid)? as f64,
        maps: maps_of(pid)? as f64,
        fds: fds_of(pid)? as f64,
    })
}

// ---------------------------------------------------------------------------------------
// Load generators.

fn client(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// Bulk transfer on `streams` connections at once for [`ROW_TIME`]; returns bytes moved and
/// seconds taken. `up`: the client writes to a sink; else it reads from a source.
fn throughput(addr: SocketAddr, streams: usize, up: bool) -> (u64, f64) {
    let start = Instant::now();
    let deadline = start + ROW_TIME;
    let per_stream = ROW_BYTES / streams as u64;
    let moved = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..streams)
        .map(|_| {
            let moved = Arc::clone(&moved);
            spawn(move || {
                let Ok(mut s) = client(addr) else { return };
                let mut buf = vec![0u8; CHUNK];
                let mut total = 0u64;
                while Instant::now() < deadline && total < per_stream {
                    let n = if up {
                        s.write(&buf).unwrap_or(0)
                    } else {
                        s.read(&mut buf).unwrap_or(0)
                    };
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
                let _ = s.shutdown(Shutdown::Both);
                moved.fetch_add(
                    usize::try_from(total).unwrap_or(usize::MAX),
                    Ordering::SeqCst,
                );
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    let secs = start.elapsed().as_secs_f64();
    (moved.load(Ordering::SeqCst) as u64, secs)
}

/// What one round of the connection rate gave.
#[derive(Default)]
struct Rate {
    done: usize,
    failed: usize,
    secs: f64,
    /// Each completed connection's time, connect to echo read, µs.
    times: Vec<f64>,
}

/// Connect, 64 B echo, close, by [`CONCURRENCY`] client threads at once, each one
/// connection after the other. A client sets only its read timeout (its one 64-byte write
/// never blocks, and a single write is never held back by Nagle), so it costs the machine
/// little besides the connection itself.
fn connection_rate(addr: SocketAddr, time: Duration) -> Rate {
    let start = Instant::now();
    let time = std::env::var("TCPFWD_BENCH_CONN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(time, Duration::from_secs);
    let deadline = start + time;
    let count = if time > CONN_TIME {
        CONN_COUNT_LONG
    } else {
        CONN_COUNT
    };
    let started = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Rate::default()));
    let handles: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (started, results) = (Arc::clone(&started), Arc::clone(&results));
            spawn(move || {
                let message = [7u8; 64];
                let mut mine = Rate::default();
                while started.fetch_add(1, Ordering::SeqCst) < count && Instant::now() < deadline {
                    let t = Instant::now();
                    let result = TcpStream::connect_timeout(&addr, IO_TIMEOUT).and_then(|mut s| {
                        s.set_read_timeout(Some(IO_TIMEOUT))?;
                        s.write_all(&message)?;
                        let mut back = [0u8; 64];
                        s.read_exact(&mut back)?;
                        Ok(back == message)
                    });
                    match result {
                        Ok(true) => {
                            mine.done += 1;
                            mine.times.push(t.elapsed().as_secs_f64() * 1e6);
                        }
                        _ => mine.failed += 1,
                    };
                }
                let mut all = results.lock().unwrap_or_else(|e| e.into_inner());
                all.done += mine.done;
                all.failed += mine.failed;
                all.times.append(&mut mine.times);
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    let mut rate = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    rate.secs = start.elapsed().as_secs_f64();
    rate
}

/// The median of `values` (the middle one, or the mean of the two middle ones).
fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// One connection, `size`-byte messages echoed back and forth for at most `time`; returns
/// each exchange's time in µs (none on failure).
fn ping_pong(addr: SocketAddr, size: usize, time: Duration) -> Vec<f64> {
    let mut times = Vec::with_capacity(PING_COUNT);
    let Ok(mut s) = client(addr) else {
        return times;
    };
    if s.set_nodelay(true).is_err() {
        return times;
    }
    let message = vec![1u8; size];
    let mut back = vec![0u8; size];
    let start = Instant::now();
    for i in 0..PING_COUNT + 5 {
        if start.elapsed() > time {
            break;
        }
        let t = Instant::now();
        if s.write_all(&message).is_err() || s.read_exact(&mut back).is_err() {
            break;
        }
        // The first exchanges warm up caches and buffers.
        if i >= 5 {
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    times
}

/// p50 and p99 of `times`.
fn percentiles(times: &mut [f64]) -> Option<(f64, f64)> {
    if times.is_empty() {
        return None;
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    Some((at(0.50), at(0.99)))
}

/// Opens connections until `total` are held by `holder`, or until the forwarder takes no more
/// for 3 s; returns how many the holder has. At most 64 connections wait to be taken at once
/// (a forwarder's accept backlog is 128 or more), so a slow one is not flooded into refusing.
fn hold(front: SocketAddr, holder: &Holder, clients: &mut Vec<TcpStream>, total: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut progress = (holder.count(), Instant::now());
    while holder.count() < total && Instant::now() < deadline {
        let now = holder.count();
        if now != progress.0 {
            progress = (now, Instant::now());
        } else if progress.1.elapsed() > Duration::from_secs(3) {
            break;
        }
        if clients.len() < total && clients.len() < now + 64 {
            if let Ok(s) = TcpStream::connect_timeout(&front, Duration::from_secs(1)) {
                clients.push(s);
            }
        } else {
            thread::sleep(Duration::from_millis(1));
        }
    }
    holder.count()
}

// ---------------------------------------------------------------------------------------
// Results and the table.

#[derive(Default)]
struct Table {
    values: HashMap<(&'static str, Peer), String>,
    numbers: HashMap<(&'static str, Peer), f64>,
    rows: Vec<&'static str>,
}

impl Table {
    fn put(&mut self, row: &'static str, peer: Peer, value: f64, decimals: usize) {
        if !self.rows.contains(&row) {
            self.rows.push(row);
        }
        self.numbers.insert((row, peer), value);
        self.values
            .insert((row, peer), format!("{value:.decimals$}"));
    }

    fn put_text(&mut self, row: &'static str, peer: Peer, text: String) {
        if !self.rows.contains(&row) {
            self.rows.push(row);
        }
        self.values.insert((row, peer), text);
    }

    fn get(&self, row: &str, peer: Peer) -> Option<f64> {
        self.numbers.get(&(row, peer)).copied()
    }

    fn ratio(&self, row: &str, over: Peer) -> String {
        match (self.get(row, Peer::Tcpfwd), self.get(row, over)) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "–".into(),
        }
    }

    fn markdown(&self) -> String {
        let mut out = String::from(
            "| | direct | tcpfwd | tcpfwd / direct | HAProxy | nginx | socat | tcpfwd / HAProxy |\n\
             |---|---|---|---|---|---|---|---|\n",
        );
        for row in &self.rows {
            let cell = |p: Peer| {
                self.values
                    .get(&(*row, p))
                    .cloned()
                    .unwrap_or_else(|| "–".into())
            };
            let _ = writeln!(
                out,
                "| {row} | {} | {} | {} | {} | {} | {} | {} |",
                cell(Peer::Direct),
                cell(Peer::Tcpfwd),
                self.ratio(row, Peer::Direct),
                cell(Peer::Haproxy),
                cell(Peer::Nginx),
                cell(Peer::Socat),
                self.ratio(row, Peer::Haproxy),
            );
        }
        out
    }
}

const TPUT_ROWS: [(&str, usize, bool); 4] = [
    ("throughput 1 stream up, Gbit/s", 1, true),
    ("throughput 1 stream down, Gbit/s", 1, false),
    ("throughput 8 streams up, Gbit/s", 8, true),
    ("throughput 8 streams down, Gbit/s", 8, false),
];
const CPU_GIB: &str = "forwarder CPU per GiB, ms";
const CONN_RATE: &str = "connections/s (64 B echo, 50 at once)";
const CPU_CONN: &str = "forwarder CPU per connection, µs";
const CONN_P99: &str = "connection time p99 (connect to echo), ms";
const HARNESS_CONN: &str = "harness CPU per connection (clients + echo server), µs";
const ECHO_BUSY: &str = "echo server threads ever busy at once";
const PING_ROWS: [(&str, &str, usize); 2] = [
    ("ping-pong 1 B p50, µs", "ping-pong 1 B p99, µs", 1),
    (
        "ping-pong 16 KiB p50, µs",
        "ping-pong 16 KiB p99, µs",
        16 * 1024,
    ),
];

/// Rounds per peer of the connection and ping-pong rows. The peers take turns, so that a
/// change in the machine's load (other work on a shared machine) falls on all of them alike.
const ROUNDS: u32 = 3;

/// A peer running in front of servers of its own during the traffic rows.
struct Live {
    peer: Peer,
    running: Running,
    _servers: [Server; 3],
}

impl Live {
    fn start(peer: Peer, dir: &Path) -> Option<Live> {
        let servers = [
            Server::start(Kind::Sink),
            Server::start(Kind::Source),
            Server::start(Kind::Echo),
        ];
        let backs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        let running = start_peer(peer, &backs, 1024, fd_limit(), dir)?;
        Some(Live {
            peer,
            running,
            _servers: servers,
        })
    }

    fn front(&self, kind: Kind) -> SocketAddr {
        self.running.fronts[kind as usize]
    }
}

/// Every traffic row for every peer, all running at once, taking turns.
fn measure_traffic(table: &mut Table, dir: &Path) {
    let mut live: Vec<Live> = PEERS
        .iter()
        .filter_map(|&peer| Live::start(peer, dir))
        .collect();
    if part("tput") {
        let mut cpu_gib = vec![(0.0, 0.0); live.len()];
        for (row, streams, up) in TPUT_ROWS {
            for (l, (cpu, gib)) in live.iter().zip(cpu_gib.iter_mut()) {
                let pids = l.running.pids();
                let before = cpu_seconds(&pids);
                let front = l.front(if up { Kind::Sink } else { Kind::Source });
                let (bytes, secs) = throughput(front, streams, up);
                *cpu += cpu_seconds(&pids) - before;
                *gib += bytes as f64 / (1u64 << 30) as f64;
                table.put(row, l.peer, bytes as f64 * 8.0 / secs / 1e9, 1);
            }
        }
        for (l, (cpu, gib)) in live.iter().zip(cpu_gib) {
            if l.peer.cpu_measured() && gib > 0.0 {
                table.put(CPU_GIB, l.peer, cpu / gib * 1e3, 0);
            }
        }
        println!("throughput rows done");
    }
    if part("conn") {
        #[derive(Default, Clone)]
        struct Sums {
            rates: Vec<f64>,
            done: usize,
            failed: usize,
            cpu: f64,
            harness: f64,
            times: Vec<f64>,
        }
        let me = [std::process::id()];
        let mut sums = vec![Sums::default(); live.len()];
        for _ in 0..ROUNDS {
            for (l, sum) in live.iter().zip(sums.iter_mut()) {
                let pids = l.running.pids();
                let (before, harness_before) = (cpu_seconds(&pids), cpu_seconds(&me));
                let mut rate = connection_rate(l.front(Kind::Echo), CONN_TIME / ROUNDS);
                sum.cpu += cpu_seconds(&pids) - before;
                sum.harness += cpu_seconds(&me) - harness_before;
                sum.rates.push(rate.done as f64 / rate.secs);
                sum.done += rate.done;
                sum.failed += rate.failed;
                sum.times.append(&mut rate.times);
            }
        }
        for (l, mut sum) in live.iter().zip(sums) {
            if let Some(rate) = median(&mut sum.rates) {
                table.put(CONN_RATE, l.peer, rate, 0);
            }
            if let Some((_, p99)) = percentiles(&mut sum.times) {
                table.put(CONN_P99, l.peer, p99 / 1e3, 1);
            }
            if sum.failed > 0 {
                println!(
                    "{}: {} of {} connections failed",
                    l.peer.name(),
                    sum.failed,
                    sum.done + sum.failed
                );
            }
            if sum.done > 0 {
                if l.peer.cpu_measured() {
                    table.put(CPU_CONN, l.peer, sum.cpu / sum.done as f64 * 1e6, 0);
                }
                table.put(HARNESS_CONN, l.peer, sum.harness / sum.done as f64 * 1e6, 0);
            }
            let echo = &l._servers[Kind::Echo as usize];
            table.put_text(
                ECHO_BUSY,
                l.peer,
                format!("{} of {}", echo.most_busy(), echo.threads),
            );
        }
        println!("connection rows done");
    }
    if part("ping") {
        for (p50_row, p99_row, size) in PING_ROWS {
            let mut times = vec![Vec::new(); live.len()];
            for _ in 0..ROUNDS {
                for (l, times) in live.iter().zip(times.iter_mut()) {
                    times.extend(ping_pong(l.front(Kind::Echo), size, PING_TIME / ROUNDS));
                }
            }
            for (l, mut times) in live.iter().zip(times) {
                if let Some((p50, p99)) = percentiles(&mut times) {
                    table.put(p50_row, l.peer, p50, 1);
                    table.put(p99_row, l.peer, p99, 1);
                }
            }
        }
        println!("ping-pong rows done");
    }
    for l in &mut live {
        if !l.running.alive() {
            println!("{} died during the traffic rows", l.peer.name());
        }
    }
}

const HELD_MEM_1K: &str = "user memory per held conn at 1,000, KiB";
const HELD_THREADS_1K: &str = "threads per held conn at 1,000";
const HELD_MAPS_1K: &str = "memory maps per held conn at 1,000";
const HELD_MAX: &str = "held conns reached (open-file limit)";
const HELD_MEM_MAX: &str = "user memory per held conn at the most, KiB";
const HELD_THREADS_MAX: &str = "threads per held conn at the most";
const HELD_MAPS_MAX: &str = "memory maps per held conn at the most";
const LEAK: &str = "after closing all: threads, fds back to start";

/// Held idle connections for one peer: at 1,000, then at as many as the open-file limit
/// allows; then closes them and checks the process is back where it started.
fn measure_held(peer: Peer, table: &mut Table, dir: &Path, most: usize) {
    let holder = Holder::start();
    let Some(mut running) = start_peer(peer, &[holder.addr], most, fd_limit(), dir) else {
        return;
    };
    let Some(pid) = running.main_pid() else {
        return;
    };
    // The readiness probe's connection has come and gone; let the process settle.
    let _ = wait_until(Duration::from_secs(1), || false);
    let Some(base) = sample(pid) else { return };
    let mut clients = Vec::new();
    let per = |now: Sample, n: usize| {
        let n = n.max(1) as f64;
        (
            (now.pss - base.pss) / n,
            (now.threads - base.threads) / n,
            (now.maps - base.maps) / n,
        )
    };
    let held = hold(running.fronts[0], &holder, &mut clients, HELD_FIRST);
    if let Some(now) = sample(pid) {
        let (mem, threads, maps) = per(now, held);
        table.put(HELD_MEM_1K, peer, mem, 1);
        table.put(HELD_THREADS_1K, peer, threads, 2);
        table.put(HELD_MAPS_1K, peer, maps, 2);
    }
    let held = hold(running.fronts[0], &holder, &mut clients, most);
    table.put(HELD_MAX, peer, held as f64, 0);
    if let Some(now) = sample(pid) {
        let (mem, threads, maps) = per(now, held);
        table.put(HELD_MEM_MAX, peer, mem, 1);
        table.put(HELD_THREADS_MAX, peer, threads, 2);
        table.put(HELD_MAPS_MAX, peer, maps, 2);
    }
    let alive = running.alive();
    drop(clients);
    drop(holder);
    // Spare threads wait a few seconds for new work before they end.
    let back = Instant::now();
    let clean = alive
        && wait_until(Duration::from_secs(30), || {
            sample(pid).is_some_and(|s| s.threads <= base.threads && s.fds <= base.fds)
        });
    let text = if clean {
        format!("yes ({:.1} s)", back.elapsed().as_secs_f64())
    } else if alive {
        let now = sample(pid);
        format!(
            "NO (threads {} → {:?}, fds {} → {:?})",
            base.threads,
            now.map(|s| s.threads),
            base.fds,
            now.map(|s| s.fds)
        )
    } else {
        "DIED".into()
    };
    table.put_text(LEAK, peer, text);
    println!("{} held rows done ({held} held)", peer.name());
}

/// Whether a part of the benchmark runs: all by default; `TCPFWD_BENCH_PARTS=conn,held` runs
/// only those (`tput`, `conn`, `ping`, `held`).
fn part(name: &str) -> bool {
    std::env::var("TCPFWD_BENCH_PARTS").map_or(true, |parts| parts.split(',').any(|p| p == name))
}

fn fd_limit() -> u64 {
    static LIMIT: Mutex<Option<u64>> = Mutex::new(None);
    let mut limit = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    *limit.get_or_insert_with(|| support::raise_fd_limit().unwrap_or(1024))
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tcpfwd-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Whether the harness (clients and echo server) could measure tcpfwd's connection rate:
/// directly, without a forwarder, it must reach [`BACKEND_HEADROOM`] times tcpfwd's rate.
/// Below that the rows measure the harness, and every forwarder looks alike.
fn backend_check(table: &Table) -> Option<String> {
    let direct = table.get(CONN_RATE, Peer::Direct)?;
    let tcpfwd = table.get(CONN_RATE, Peer::Tcpfwd)?;
    let ratio = direct / tcpfwd.max(1.0);
    let verdict = if ratio >= BACKEND_HEADROOM {
        "ok"
    } else {
        "NOT met: the connection rows measure the harness, not the forwarders"
    };
    Some(format!(
        "Backend check: direct {direct:.0} conn/s = {ratio:.2}× tcpfwd's {tcpfwd:.0} \
         (needs ≥ {BACKEND_HEADROOM}×): {verdict}"
    ))
}

/// Prints whether each goal of the performance issue is met in this run.
fn goals(table: &Table) -> String {
    let mut out = String::new();
    let t = |row: &str| table.get(row, Peer::Tcpfwd);
    let h = |row: &str| table.get(row, Peer::Haproxy);
    let mut check = |name: String, ok: Option<bool>| {
        let verdict = match ok {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        };
        let _ = writeln!(out, "- {name}: {verdict}");
    };
    for (row, _, _) in TPUT_ROWS {
        let best = [Peer::Haproxy, Peer::Nginx, Peer::Socat]
            .iter()
            .filter_map(|&p| table.get(row, p))
            .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))));
        check(
            format!("{row}: tcpfwd ≥ best peer"),
            t(row).zip(best).map(|(a, b)| a >= b),
        );
    }
    check(
        "CPU per GiB ≤ 0.75× HAProxy".into(),
        t(CPU_GIB).zip(h(CPU_GIB)).map(|(a, b)| a <= 0.75 * b),
    );
    // Issue 13 (connection rate).
    check(
        "connections/s ≥ 0.8× HAProxy".into(),
        t(CONN_RATE).zip(h(CONN_RATE)).map(|(a, b)| a >= 0.8 * b),
    );
    check(
        "forwarder CPU per connection ≤ 1.5× HAProxy".into(),
        t(CPU_CONN).zip(h(CPU_CONN)).map(|(a, b)| a <= 1.5 * b),
    );
    check(
        "connection time p99 ≤ 1.5× HAProxy".into(),
        t(CONN_P99).zip(h(CONN_P99)).map(|(a, b)| a <= 1.5 * b),
    );
    for (p50, p99, _) in PING_ROWS {
        check(
            format!("{p50} ≤ HAProxy"),
            t(p50).zip(h(p50)).map(|(a, b)| a <= b),
        );
        check(
            format!("{p99} ≤ 1.5× HAProxy"),
            t(p99).zip(h(p99)).map(|(a, b)| a <= 1.5 * b),
        );
    }
    check(
        "≤ 16 KiB user memory per idle held connection".into(),
        t(HELD_MEM_MAX).map(|m| m <= 16.0),
    );
    out
}

#[test]
#[ignore = "benchmark: make bench"]
fn bench() {
    let started = Instant::now();
    let limit = fd_limit();
    // Two sockets per held connection in the forwarder, and two here (client and holder).
    let most = usize::try_from(limit.saturating_sub(200) / 2).unwrap_or(1_000);
    let dir = temp_dir();
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    println!("open-file limit {limit}, {cores} cores; peers installed:");
    for peer in PEERS {
        println!("  {}: {}", peer.name(), peer.installed());
    }
    let mut table = Table::default();
    if part("tput") || part("conn") || part("ping") {
        measure_traffic(&mut table, &dir);
    }
    if part("held") {
        for peer in [Peer::Tcpfwd, Peer::Haproxy, Peer::Nginx] {
            measure_held(peer, &mut table, &dir, most);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "\n{} cores, loopback, every column measured in this run ({:.0} s):\n",
        cores,
        started.elapsed().as_secs_f64()
    );
    println!("{}", table.markdown());
    if let Some(line) = backend_check(&table) {
        println!("{line}\n");
    }
    println!("Goals:\n{}", goals(&table));
    assert!(!table.rows.is_empty(), "nothing was measured");
}
