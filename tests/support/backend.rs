//! Real backends on loopback for tcpfwd to forward to: echo, named (a greeting that tells
//! them apart), or any handler; and asking which one served a connection.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::net::{connect, connect_from};
use super::wait::{spawn, wait_until, PATIENCE};

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

    /// Stops it and waits until its port refuses connections. Only a refusal counts: on a
    /// loaded machine the wake-up connect of `drop` may time out, leaving the accept loop
    /// waiting with the port open, and a poll that took its own timeout for a refusal would
    /// return while the next client is still accepted (then dropped). A blocking connect (on
    /// loopback answered at once) that is accepted wakes the loop instead, which then closes.
    pub fn stop(self) {
        let addr = self.addr;
        drop(self);
        let refused = wait_until(
            PATIENCE,
            || matches!(TcpStream::connect(addr), Err(e) if e.kind() == ErrorKind::ConnectionRefused),
        );
        assert!(refused, "{addr} still accepts after stop");
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

/// Connections a [`greeting_holder`] keeps open until the test lets go (clears it).
pub type Held = Arc<std::sync::Mutex<Vec<TcpStream>>>;

/// A backend that greets each client with `ok` and keeps its connection open until the test
/// lets go (no thread per held connection, so the test itself stays small when emulated too).
pub fn greeting_holder() -> (Backend, Held) {
    let held: Held = Arc::default();
    let keep = Arc::clone(&held);
    let backend = Backend::start(move |mut s| {
        let _ = s.write_all(b"ok");
        keep.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    });
    (backend, held)
}
