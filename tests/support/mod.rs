//! Shared pieces of the black-box tests: run the real binary, real backends on loopback.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single wait in a test may take before the test fails. Generous, so the
/// tests hold on a loaded machine and under qemu.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Stack for the tests' own helper threads.
const STACK: usize = 256 * 1024;

/// Starts a helper thread with a bounded stack.
pub fn spawn<F: FnOnce() + Send + 'static>(work: F) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .stack_size(STACK)
        .spawn(work)
        .expect("test thread")
}

/// The command that runs the tcpfwd binary under test. Always start it through this (never
/// `Command::new(env!("CARGO_BIN_EXE_tcpfwd"))`): in a cross test the binary is foreign and
/// must be started through the same emulator as the test itself, see [`runner`].
pub fn tcpfwd_command() -> Command {
    let mut words = runner();
    words.push(env!("CARGO_BIN_EXE_tcpfwd").to_string());
    let mut command = Command::new(&words[0]);
    command.args(&words[1..]);
    command
}

/// The words to put before the binary's path to run it: empty natively.
///
/// Under qemu-user the test harness is emulated, but a program it starts is run by the host
/// kernel, which cannot run a foreign binary unless binfmt_misc hands it to qemu (it is not
/// registered in containers and CI). So the runner is, in order: `TCPFWD_TEST_RUNNER`
/// (whitespace-separated words), else, under emulation, the `CARGO_TARGET_<TRIPLE>_RUNNER`
/// that cargo itself used to start this test (cross-test sets exactly one).
pub fn runner() -> Vec<String> {
    let words = |text: String| text.split_whitespace().map(String::from).collect();
    if let Ok(text) = std::env::var("TCPFWD_TEST_RUNNER") {
        return words(text);
    }
    if !under_emulation() {
        return Vec::new();
    }
    std::env::vars()
        .find(|(key, _)| key.starts_with("CARGO_TARGET_") && key.ends_with("_RUNNER"))
        .map(|(_, text)| words(text))
        .unwrap_or_default()
}

/// Whether this test runs under user-mode emulation (qemu-user). `make cross-test` says so
/// with `TCPFWD_UNDER_QEMU=1`; otherwise it is detected: qemu-user fakes `/proc/self/exe`,
/// `maps`, `stat` and `cmdline` for the guest but not `status`, whose `Name:` stays that of
/// the host's qemu process.
pub fn under_emulation() -> bool {
    if let Some(value) = std::env::var_os("TCPFWD_UNDER_QEMU") {
        return value != "0" && !value.is_empty();
    }
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let name = s.lines().find_map(|l| l.strip_prefix("Name:"))?;
            Some(name.trim().starts_with("qemu-"))
        })
        .unwrap_or(false)
}

/// Skips the calling test under emulation, printing why: returns true when the test must
/// return at once. Only for what qemu-user cannot emulate, never for slowness.
pub fn skip_under_emulation(reason: &str) -> bool {
    let skip = under_emulation();
    if skip {
        eprintln!("skipped under emulation (qemu-user): {reason}");
    }
    skip
}

/// Skips the calling test where qemu-user hands socket errors over untranslated, printing
/// why: qemu before 8.0 (Debian 12 has 7.2) returns the host's errno from
/// getsockopt(SO_ERROR), which std's `connect_timeout` reads (QEMU issue #872). On MIPS,
/// whose errno numbers differ from x86's, a refused connect then reads as "unknown error
/// 111" instead of ECONNREFUSED (146). Only for tests that check such a message.
pub fn skip_if_socket_errors_untranslated() -> bool {
    cfg!(any(target_arch = "mips", target_arch = "mips64"))
        && skip_under_emulation(
            "qemu-user < 8.0 does not translate errno values from getsockopt(SO_ERROR) \
             (QEMU issue #872): on MIPS a refused connect reads as errno 111, not 146",
        )
}

/// A running tcpfwd process, killed (by its PID, through `Child`) when dropped.
pub struct Tcpfwd {
    child: Child,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
    reader: thread::JoinHandle<()>,
}

impl Tcpfwd {
    /// Starts `tcpfwd ARGS` and waits until it logged every `listening on` line it will.
    pub fn start(args: &[&str]) -> Tcpfwd {
        let fwd = Tcpfwd::spawn(args);
        fwd.wait_line("listening on ");
        fwd
    }

    /// Starts `tcpfwd -q 127.0.0.1:PORT ARGS` on a free port and waits until it accepts
    /// (with `-q` there is no `listening on` line to wait for).
    pub fn start_quiet(args: &[&str]) -> (Tcpfwd, SocketAddr) {
        let listen = closed_port();
        let listen_arg = listen.to_string();
        let mut all = vec!["-q", listen_arg.as_str()];
        all.extend_from_slice(args);
        let fwd = Tcpfwd::spawn(&all);
        assert!(
            wait_until(PATIENCE, || TcpStream::connect(listen).is_ok()),
            "tcpfwd never accepted on {listen}"
        );
        (fwd, listen)
    }

    /// Starts `tcpfwd ARGS` under a hard open-file limit (Unix `sh`).
    pub fn start_with_fd_limit(limit: u32, args: &[&str]) -> Tcpfwd {
        Tcpfwd::start_with_fd_limit_holding(limit, 0, args)
    }

    /// Starts `tcpfwd ARGS` under a hard open-file limit, with `held` more descriptors open
    /// (inherited, as from a careless parent), so that it runs out of descriptors before its
    /// start-up cap on connections stops it (`bash`: `sh` may not open descriptors above 9).
    pub fn start_with_fd_limit_holding(limit: u32, held: u32, args: &[&str]) -> Tcpfwd {
        let mut command = Command::new("bash");
        command.arg("-c").arg(format!(
            "ulimit -n {limit} && for fd in $(seq 3 {last}); do eval \"exec $fd</dev/null\"; done \
             && exec \"$0\" \"$@\"",
            last = held + 2
        ));
        command
            .args(runner())
            .arg(env!("CARGO_BIN_EXE_tcpfwd"))
            .args(args);
        let fwd = Tcpfwd::from_command(command);
        fwd.wait_line("listening on ");
        fwd
    }

    /// Starts `tcpfwd ARGS` without waiting for anything.
    pub fn spawn(args: &[&str]) -> Tcpfwd {
        let mut command = tcpfwd_command();
        command.args(args);
        Tcpfwd::from_command(command)
    }

    fn from_command(mut command: Command) -> Tcpfwd {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcpfwd");
        let lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&lines);
        let reader = spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("TCPFWD_TEST_LOG").is_some() {
                    eprintln!("tcpfwd: {line}");
                }
                let (list, cond) = &*sink;
                list.lock().unwrap().push(line);
                cond.notify_all();
            }
        });
        Tcpfwd {
            child,
            lines,
            reader,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addrs()[0]
    }

    /// Every address from its `listening on ADDR (rule ...)` lines.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix("listening on "))
            .filter_map(|rest| rest.split(' ').next()?.parse().ok())
            .collect()
    }

    /// A loopback address to reach the first listener (an unspecified bind becomes loopback).
    pub fn connect_addr(&self) -> SocketAddr {
        let addr = self.addr();
        if addr.ip().is_unspecified() {
            SocketAddr::new("127.0.0.1".parse().unwrap(), addr.port())
        } else {
            addr
        }
    }

    /// Everything logged so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.0.lock().unwrap().clone()
    }

    /// Waits for a line containing `needle`; panics after [`PATIENCE`].
    pub fn wait_line(&self, needle: &str) -> String {
        self.wait_lines(needle, 1).pop().unwrap()
    }

    /// Waits until `count` lines contain `needle`; returns them.
    pub fn wait_lines(&self, needle: &str, count: usize) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        let (list, cond) = &*self.lines;
        let mut guard = list.lock().unwrap();
        loop {
            let found: Vec<String> = guard
                .iter()
                .filter(|l| l.contains(needle))
                .cloned()
                .collect();
            if found.len() >= count {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {count} lines with {needle:?} in time; log:\n{}",
                guard.join("\n")
            );
            guard = cond.wait_timeout(guard, left).unwrap().0;
        }
    }

    /// Waits for the process to exit; returns its status code and everything it logged.
    pub fn wait_exit(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader thread ends at the EOF of stderr, after the last line.
                let _ = wait_until(Duration::from_secs(2), || self.reader.is_finished());
                return (status.code(), self.lines().join("\n"));
            }
            assert!(Instant::now() < deadline, "tcpfwd did not exit");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Where it serves metrics, from its `metrics on http://ADDR/metrics` line.
    pub fn stats_addr(&self) -> SocketAddr {
        let line = self.wait_line("metrics on http://");
        let rest = line.split("http://").nth(1).unwrap_or_default();
        let addr = rest.strip_suffix("/metrics").unwrap_or(rest);
        addr.parse().expect("metrics address")
    }

    /// Connection log lines so far (`client=...`).
    pub fn records(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.starts_with("client="))
            .collect()
    }
}

impl Drop for Tcpfwd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tcpfwd ARGS` to its end; returns exit code, stdout and stderr.
pub fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = tcpfwd_command().args(args).output().expect("run tcpfwd");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Polls `cond` every few milliseconds until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// A test server on 127.0.0.1: each connection is given to `handler` on its own thread.
/// It stops accepting when dropped.
pub struct Backend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    /// Serves on 127.0.0.1 (any free port).
    pub fn start<F>(handler: F) -> Backend
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        Backend::start_on("127.0.0.1:0", handler)
    }

    /// Serves on `addr`.
    pub fn start_on<F>(addr: &str, handler: F) -> Backend
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind(addr).expect("bind backend");
        Backend::serve(listener, handler)
    }

    /// Serves on an already bound listener.
    pub fn serve<F>(listener: TcpListener, handler: F) -> Backend
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let (count, stopped) = (Arc::clone(&accepted), Arc::clone(&stop));
        spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let handler = Arc::clone(&handler);
                spawn(move || handler(stream));
            }
        });
        Backend {
            addr,
            accepted,
            stop,
        }
    }

    /// An echo server.
    pub fn echo() -> Backend {
        Backend::start(|mut s| {
            let mut buf = [0; 16384];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = s.shutdown(Shutdown::Write);
        })
    }

    /// A server that says `greeting` and then echoes (tells backends apart).
    pub fn named(greeting: &'static str) -> Backend {
        Backend::start(greeter(greeting))
    }

    /// Connections accepted so far.
    pub fn count(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// A handler that says `greeting` and then echoes.
fn greeter(greeting: &'static str) -> impl Fn(TcpStream) + Send + Sync + 'static {
    move |mut s| {
        let _ = s.write_all(greeting.as_bytes());
        let mut buf = [0; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    }
}

/// Connects with read and write timeouts of [`PATIENCE`], so no test hangs forever.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, PATIENCE).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s
}

/// Connects from a chosen loopback source address (127.0.0.2, ...).
pub fn connect_from(source: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    // std cannot bind a socket before connecting; tcpfwd's sys module can (Linux).
    tcpfwd::sys::connect_from(source.parse().unwrap(), addr, PATIENCE)
}

/// Reads until EOF; panics on error or after [`PATIENCE`].
pub fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read to EOF");
    out
}

/// Deterministic test bytes.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Number of threads of a process (Linux).
pub fn threads_of(pid: u32) -> Option<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Threads:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Number of open file descriptors of a process (Linux).
pub fn fds_of(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Sockets of a process in CLOSE_WAIT (Linux): any is a leak.
pub fn close_wait_of(pid: u32) -> Option<usize> {
    let mut inodes = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        let target = std::fs::read_link(entry.path()).ok()?;
        let text = target.to_string_lossy().into_owned();
        if let Some(inode) = text
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
        {
            inodes.push(inode.to_string());
        }
    }
    let mut count = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        // The table holds every socket of the machine (tens of thousands in TIME_WAIT when
        // other tests ran): look at each line's state without allocating, which keeps a
        // poll short even in an unoptimised build under qemu.
        for line in text.lines().skip(1) {
            let mut fields = line.split_ascii_whitespace();
            // State 08 is CLOSE_WAIT (field 3); the inode is field 9.
            if fields.nth(3) == Some("08")
                && fields.nth(5).is_some_and(|i| inodes.iter().any(|x| x == i))
            {
                count += 1;
            }
        }
    }
    Some(count)
}

/// User + system CPU time of a process in clock ticks (Linux).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// A loopback listener that never accepts and whose backlog is full, so a connect to it times
/// out (SYNs are dropped) instead of being refused. Keep both values alive while it is used.
/// Fills the backlog in a bounded loop: std listens with a backlog of 128 (129 connections
/// fit), and the loop stops at the first connect that times out.
pub fn full_backlog() -> (TcpListener, Vec<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    for _ in 0..5000 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => queued.push(s),
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                return (listener, queued)
            }
            Err(e) => panic!("filling the backlog: {e}"),
        }
    }
    panic!("the backlog never filled ({} connections)", queued.len());
}

/// Writes `text` to a fresh file under Cargo's temporary directory for tests; returns its path.
pub fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{}-{n}-{name}", std::process::id()));
    std::fs::write(&path, text).expect("write temp file");
    path
}

/// A port on 127.0.0.1 that was free a moment ago (the OS picked it, then it was closed).
pub fn free_port() -> u16 {
    let socket = TcpListener::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().unwrap().port()
}

/// Whether this machine has an IPv6 loopback (tests that need it skip without).
pub fn ipv6_loopback() -> Option<TcpListener> {
    TcpListener::bind("[::1]:0").ok()
}

/// Sends `request` as is and reads the whole response, up to the server's close.
pub fn http(addr: SocketAddr, request: &str) -> Response {
    let mut s = connect(addr);
    s.write_all(request.as_bytes()).expect("send request");
    let raw = String::from_utf8(read_all(&mut s)).expect("UTF-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_string();
    let headers = lines.map(str::to_string).collect();
    Response {
        status,
        headers,
        body: body.to_string(),
    }
}

/// `GET path` over HTTP/1.1.
pub fn http_get(addr: SocketAddr, path: &str) -> Response {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    )
}

/// An HTTP response, split.
#[derive(Debug)]
pub struct Response {
    /// `HTTP/1.1 200 OK`
    pub status: String,
    /// `Name: value` lines.
    pub headers: Vec<String>,
    /// Everything after the head.
    pub body: String,
}

impl Response {
    /// The value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| {
            let (n, v) = h.split_once(':')?;
            n.eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

/// The value of one series in Prometheus text, by its exact name and labels as written,
/// e.g. `tcpfwd_bytes_total{rule="127.0.0.1:0",direction="up"}`.
pub fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// A loopback address nothing listens on (bound, then closed): connects to it are refused.
pub fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().unwrap()
}

/// Connects to `addr` and reads the one-byte greeting of a [`Backend::named`] backend.
/// Returns the connection (still open) and the greeting.
pub fn hold(addr: SocketAddr) -> (TcpStream, String) {
    let mut s = connect(addr);
    let mut byte = [0u8; 1];
    s.read_exact(&mut byte).expect("a greeting");
    (s, String::from_utf8_lossy(&byte).into_owned())
}

/// Which [`Backend::named`] backend (one-letter greeting) served a new connection; closes it.
pub fn served_by(addr: SocketAddr) -> String {
    hold(addr).1
}

/// Like [`served_by`], from a chosen loopback source address.
pub fn served_from(source: &str, addr: SocketAddr) -> String {
    let mut s = connect_from(source, addr).expect("connect from");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut byte = [0u8; 1];
    s.read_exact(&mut byte).expect("a greeting");
    String::from_utf8_lossy(&byte).into_owned()
}

impl Backend {
    /// A [`Backend::named`] backend on a given address, retrying the bind for a while (the
    /// port of a backend just stopped may take a moment to be free).
    pub fn named_on(addr: SocketAddr, greeting: &'static str) -> Backend {
        let deadline = Instant::now() + PATIENCE;
        let listener = loop {
            match TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(e) => assert!(Instant::now() < deadline, "cannot bind {addr} again: {e}"),
            }
            thread::sleep(Duration::from_millis(20));
        };
        Backend::serve(listener, greeter(greeting))
    }

    /// Stops it and waits until its port refuses connections.
    pub fn stop(self) {
        let addr = self.addr;
        drop(self);
        let refused = wait_until(PATIENCE, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err()
        });
        assert!(refused, "{addr} still accepts after stop");
    }
}

/// Virtual size of a process in bytes, as its own kernel would report it (Linux): `VmSize`
/// natively; under qemu-user the sum of the guest's mappings (see [`guest_memory_of`]),
/// because `VmSize` there is the host qemu process's (4 GiB of reserved guest space plus
/// qemu's own per-thread host stacks) and says nothing about the guest.
pub fn address_space_of(pid: u32) -> Option<u64> {
    if under_emulation() {
        return Some(guest_memory_of(pid)?.size);
    }
    status_bytes(pid, "VmSize:")
}

/// Resident user memory of a process in bytes (Linux): `VmRSS` natively; under qemu-user
/// the resident part of the guest's mappings (qemu's own memory left out).
pub fn resident_of(pid: u32) -> Option<u64> {
    if under_emulation() {
        return Some(guest_memory_of(pid)?.resident);
    }
    status_bytes(pid, "VmRSS:")
}

/// A `KEY:  N kB` line of `/proc/PID/status`, in bytes.
fn status_bytes(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix(key))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

/// The memory of a qemu-user guest, in bytes.
pub struct GuestMemory {
    /// Address space the guest has mapped.
    pub size: u64,
    /// The resident part of it.
    pub resident: u64,
}

/// One mapping of `/proc/PID/smaps`.
struct Mapping {
    start: u64,
    end: u64,
    /// A free-space placeholder: `---p` with MAP_NORESERVE.
    placeholder: bool,
    executable_file: bool,
    resident: u64,
}

/// The guest memory of a process run by qemu-user, read from the host's `/proc/PID/smaps`
/// (qemu fakes `/proc/self/maps` only for the guest itself, not for other processes).
///
/// A 32-bit guest lives in one window of host address space that qemu reserves whole: an
/// unbroken run of mappings around the guest's executable. Free guest space in it is a
/// `PROT_NONE` placeholder mapped with MAP_NORESERVE (flag `nr`); everything else in the window
/// is a guest mapping (code, data, heap, stacks, guard pages). The sum misses only guest
/// `PROT_NONE` mappings that also asked for MAP_NORESERVE: the unused tail of glibc's malloc
/// arenas (at most 1 MiB each on 32-bit). `None` for a 64-bit guest.
pub fn guest_memory_of(pid: u32) -> Option<GuestMemory> {
    // A 64-bit guest has no reserved window: its mappings lie among qemu's own.
    if cfg!(target_pointer_width = "64") {
        return None;
    }
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_tcpfwd")).ok()?;
    let exe = exe.to_str()?;
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let mut maps: Vec<Mapping> = Vec::new();
    let mut current: Option<Mapping> = None;
    for line in smaps.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            let mut map = current.take()?;
            map.placeholder &= flags.split_whitespace().any(|f| f == "nr");
            maps.push(map);
            continue;
        }
        if let Some(kib) = line.strip_prefix("Rss:") {
            let kib: u64 = kib.trim().strip_suffix("kB")?.trim().parse().ok()?;
            current.as_mut()?.resident = kib * 1024;
            continue;
        }
        let mut fields = line.split_whitespace();
        let Some((start, end)) = fields.next().and_then(|r| r.split_once('-')) else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue; // another "Key: value" line
        };
        current = Some(Mapping {
            start,
            end,
            placeholder: fields.next() == Some("---p"),
            executable_file: line.ends_with(exe),
            resident: 0,
        });
    }
    let at = maps.iter().position(|m| m.executable_file)?;
    // Widen from the executable's mapping while the mappings touch each other.
    let (mut first, mut last) = (at, at);
    while first > 0 && maps[first - 1].end == maps[first].start {
        first -= 1;
    }
    while last + 1 < maps.len() && maps[last].end == maps[last + 1].start {
        last += 1;
    }
    let guest = maps[first..=last].iter().filter(|m| !m.placeholder);
    Some(GuestMemory {
        size: guest.clone().map(|m| m.end - m.start).sum(),
        resident: guest.map(|m| m.resident).sum(),
    })
}

/// Sends `data` through an echo path while reading the echo at the same time (a forwarder
/// that copies one direction after the other would deadlock once the socket buffers fill),
/// then shuts down the write half; asserts the echo is byte-exact.
pub fn echo_both_ways_at_once(client: &mut TcpStream, data: &[u8]) {
    let mut writer = client.try_clone().unwrap();
    let sent = data.to_vec();
    let write = spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let echoed = read_all(client);
    write.join().unwrap();
    assert!(
        echoed == data,
        "echo differs ({} of {} bytes)",
        echoed.len(),
        data.len()
    );
}

/// Asserts a client refused by the filter: closed without a byte, logged `end=denied` from
/// `client` (the address tcpfwd saw, e.g. `127.0.0.3:`) with `target=-`, and that the
/// backend saw only the `served` connections it had before.
pub fn assert_denied(
    fwd: &Tcpfwd,
    refused: &mut TcpStream,
    client: &str,
    backend: &Backend,
    served: usize,
) {
    assert_closed_without_data(refused);
    let line = fwd.wait_line("end=denied");
    assert!(
        line.starts_with(&format!("client={client}")) && line.contains("target=-"),
        "{line}"
    );
    assert_eq!(
        backend.count(),
        served,
        "a denied client reached the target"
    );
}

/// Asserts the client was closed without a byte from tcpfwd.
pub fn assert_closed_without_data(client: &mut TcpStream) {
    let mut buf = [0; 16];
    // A signal may interrupt the read (EINTR): read again, a bounded number of times.
    for _ in 0..100 {
        match client.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => panic!("got {n} bytes: {:?}", &buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let reset = matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                );
                assert!(reset, "{e}");
                return;
            }
        }
    }
    panic!("the read kept being interrupted");
}
