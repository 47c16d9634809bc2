//! The tcpfwd binary under test: started as a process whose log the test reads, or run to its
//! end; and the files handed to it.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::emulation::runner;
use super::net::closed_port;
use super::wait::{spawn, wait_until, PATIENCE};

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

    /// Starts `WRAPPER... tcpfwd ARGS` (a command that sets something up and then runs the
    /// rest of its arguments: `prlimit --as=N`, `setpriv ...`, `unshare ...`) and waits
    /// until it logged a `listening on` line.
    pub fn start_wrapped(wrapper: &[&str], args: &[&str]) -> Tcpfwd {
        let fwd = Tcpfwd::spawn_wrapped(wrapper, args);
        fwd.wait_line("listening on ");
        fwd
    }

    /// [`Tcpfwd::start_wrapped`] without waiting for anything.
    pub fn spawn_wrapped(wrapper: &[&str], args: &[&str]) -> Tcpfwd {
        let mut command = Command::new(wrapper[0]);
        command
            .args(&wrapper[1..])
            .args(runner())
            .arg(env!("CARGO_BIN_EXE_tcpfwd"))
            .args(args);
        Tcpfwd::from_command(command)
    }

    /// Starts `tcpfwd ARGS` without waiting for anything.
    pub fn spawn(args: &[&str]) -> Tcpfwd {
        let mut command = tcpfwd_command();
        command.args(args);
        Tcpfwd::from_command(command)
    }

    /// Starts `command` (which runs tcpfwd, e.g. through a launcher) without waiting.
    pub fn from_command(command: Command) -> Tcpfwd {
        Tcpfwd::with_stdin(command, Stdio::null())
    }

    /// As [`Tcpfwd::from_command`], with `stdin` as its standard input (a launcher takes a
    /// socket there).
    pub fn with_stdin(mut command: Command, stdin: Stdio) -> Tcpfwd {
        let mut child = command
            .stdin(stdin)
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
                // A test that failed while it held the lock poisoned it; the lines still count.
                list.lock().unwrap_or_else(|e| e.into_inner()).push(line);
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
        self.lines
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits for a line containing `needle`; panics after [`PATIENCE`].
    pub fn wait_line(&self, needle: &str) -> String {
        self.wait_lines(needle, 1).pop().unwrap()
    }

    /// Waits until `count` lines contain `needle`; returns them.
    pub fn wait_lines(&self, needle: &str, count: usize) -> Vec<String> {
        self.wait_lines_within(needle, count, PATIENCE)
    }

    /// [`Tcpfwd::wait_lines`] with a bound of its own, for a test that ends very many
    /// connections at once under emulation.
    pub fn wait_lines_within(&self, needle: &str, count: usize, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let (list, cond) = &*self.lines;
        let mut guard = list.lock().unwrap();
        // Only the lines added since the last look are read, so the lock is held briefly
        // and the reader thread is not kept waiting by a long log (1,000 lines under qemu).
        let (mut seen, mut matched) = (0, 0);
        loop {
            matched += guard[seen..].iter().filter(|l| l.contains(needle)).count();
            seen = guard.len();
            if matched >= count {
                return guard
                    .iter()
                    .filter(|l| l.contains(needle))
                    .cloned()
                    .collect();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {count} lines with {needle:?} in time; log:\n{}",
                guard.join("\n")
            );
            // Woken by each new line, and at least every 100 ms: a missed wake-up costs a
            // moment, not the whole wait, and each look releases the lock again for a reader
            // queued on it (a CI run under qemu-user on MIPS saw the lines stop for 80 s).
            let nap = left.min(Duration::from_millis(100));
            guard = cond.wait_timeout(guard, nap).unwrap().0;
        }
    }

    /// Whether the process has exited (it is reaped if so).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
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

/// Sends signal `name` (`HUP`, `TERM`, `USR2`, ...) to process `pid`, which the test started
/// (or which took over from one it started), with kill(1).
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {name} {pid} failed");
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

/// Writes `text` to a fresh file under Cargo's temporary directory for tests; returns its path.
pub fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{}-{n}-{name}", std::process::id()));
    std::fs::write(&path, text).expect("write temp file");
    path
}
