//! Listening sockets a process is started with instead of opening them: handed over by the
//! tcpfwd it replaces (SIGUSR2), or passed by systemd's socket activation (Linux).
//!
//! The hand-over names its sockets in [`HANDOVER_FDS`] (`FD=LISTEN;FD=LISTEN;…`, each rule's
//! listen address as written, `--stats ADDR` for the metrics listener), the ones systemd
//! holds too in [`SHARED_FDS`] (`FD,FD`), and the readiness pipe in [`READY_FD`]: the new
//! process writes `ready` there once it serves. systemd's `LISTEN_PID`/`LISTEN_FDS` name
//! sockets 3 … 3+N−1, matched to rules by their local address. Every one of these variables
//! is removed from the environment at start-up.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use crate::addr::{Host, HostPort, ListenAddr};
use crate::config::rule::Rule;
use crate::log;
use crate::serve::accept::Listener;
#[cfg(unix)]
use crate::serve::listen;
use crate::serve::listen::Socket;
use crate::sys::{self, reason};

/// The sockets handed over, `FD=LISTEN` separated by `;`.
pub const HANDOVER_FDS: &str = "TCPFWD_HANDOVER_FDS";
/// Of those, the ones systemd holds too (socket activation), `FD` separated by `,`.
pub const SHARED_FDS: &str = "TCPFWD_SHARED_FDS";
/// The write end of the readiness pipe.
pub const READY_FD: &str = "TCPFWD_READY_FD";

/// What a rule or the metrics listener may take instead of opening a socket.
#[derive(Default)]
pub struct Inherited {
    /// Handed over: (fd, what it was, socket, shared with systemd).
    handed: Vec<(i32, String, Option<Handed>)>,
    /// From socket activation: (fd, socket).
    activated: Vec<(i32, Option<TcpListener>)>,
    /// Where to say `ready`.
    ready: Option<Ready>,
}

/// A handed socket not yet taken, and whether systemd holds it too.
struct Handed {
    socket: Socket,
    shared: bool,
}

/// The readiness pipe to the process that handed its sockets over.
pub struct Ready(sys::Pipe);

impl Inherited {
    /// Reads (and removes) the variables; a descriptor that is not a listening socket is a
    /// warning and ignored.
    pub fn take() -> Inherited {
        let mut inherited = Inherited::default();
        let shared: Vec<i32> = var(SHARED_FDS)
            .map(|v| v.split(',').filter_map(|f| f.parse().ok()).collect())
            .unwrap_or_default();
        if let Some(list) = var(HANDOVER_FDS) {
            for item in list.split(';').filter(|i| !i.is_empty()) {
                let Some((fd, what)) = item.split_once('=') else {
                    continue;
                };
                let Ok(fd) = fd.parse::<i32>() else { continue };
                if let Some(socket) = adopt_handed(fd) {
                    let shared = shared.contains(&fd);
                    let socket = Some(Handed { socket, shared });
                    inherited.handed.push((fd, what.to_string(), socket));
                }
            }
        }
        if let Some(fd) = var(READY_FD).and_then(|v| v.parse::<i32>().ok()) {
            match sys::adopt_pipe(fd) {
                Ok(pipe) => inherited.ready = Some(Ready(pipe)),
                Err(e) => log::problem(format_args!("{READY_FD}={fd}: {}", reason(&e))),
            }
        }
        let pid = var("LISTEN_PID");
        let count = var("LISTEN_FDS");
        let _ = var("LISTEN_FDNAMES");
        let ours = pid.and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
        if let (true, Some(count)) = (ours, count.and_then(|c| c.parse::<i32>().ok())) {
            for fd in 3..3 + count.clamp(0, 4096) {
                if let Some(socket) = adopt(fd, "LISTEN_FDS") {
                    inherited.activated.push((fd, Some(socket)));
                }
            }
        }
        inherited
    }

    /// The sockets for `rule`: the ones handed over under its listen address, or those
    /// systemd passed whose local address is the rule's; `None` if it must open its own.
    pub fn for_rule(&mut self, rule: &Rule) -> Option<Vec<Arc<Listener>>> {
        let label = rule.listen.to_string();
        let handed = self.take_handed(&label);
        if !handed.is_empty() {
            return Some(handed);
        }
        let mut taken = Vec::new();
        for (_, slot) in &mut self.activated {
            let matches = slot.as_ref().is_some_and(|s| {
                s.local_addr()
                    .is_ok_and(|local| listen_matches(&rule.listen, local))
            });
            if matches {
                if let Some(socket) = slot.take() {
                    // systemd keeps its copy: a stop leaves it listening for the next start.
                    taken.push(Listener::new(socket, true));
                }
            }
        }
        (!taken.is_empty()).then_some(taken)
    }

    /// The metrics listener handed over for `--stats addr`, if any.
    pub fn for_stats(&mut self, addr: &HostPort) -> Option<Arc<Listener>> {
        self.take_handed(&stats_label(addr)).pop()
    }

    fn take_handed(&mut self, label: &str) -> Vec<Arc<Listener>> {
        self.handed
            .iter_mut()
            .filter(|(_, what, _)| what == label)
            .filter_map(|(_, _, slot)| slot.take())
            .map(|l| Listener::new(l.socket, l.shared))
            .collect()
    }

    /// Closes every inherited socket no rule took, with a warning each; returns the
    /// readiness pipe.
    pub fn finish(self) -> Option<Ready> {
        let handed = self.handed.into_iter().filter_map(|(fd, what, s)| {
            s.map(|s| (fd, format!(" (handed over for {what})"), s.socket))
        });
        let activated = self
            .activated
            .into_iter()
            .filter_map(|(fd, s)| s.map(|s| (fd, String::new(), Socket::Tcp(s))));
        for (fd, what, socket) in handed.chain(activated) {
            let local = socket
                .local_addr()
                .map_or_else(|_| "?".to_string(), |a| a.to_string());
            log::problem(format_args!(
                "inherited socket {fd} on {local}{what} matches no rule: closed"
            ));
        }
        self.ready
    }
}

/// What the metrics listener is called in [`HANDOVER_FDS`].
pub fn stats_label(addr: &HostPort) -> String {
    format!("--stats {addr}")
}

/// Whether a socket bound to `local` serves `listen`: the same address, or for `:PORT` the
/// wildcard address of either family on that port (names: any address they resolve to).
fn listen_matches(listen: &ListenAddr, local: SocketAddr) -> bool {
    match listen {
        // Not handed over, nor passed by systemd: a Unix rule opens its own socket.
        ListenAddr::Unix(_) => false,
        ListenAddr::AnyHost(port) => local.ip().is_unspecified() && local.port() == *port,
        ListenAddr::Host(hp) => {
            hp.port == local.port()
                && match &hp.host {
                    Host::Ip(ip) => *ip == local.ip(),
                    Host::Name(_) => hp
                        .resolve()
                        .is_ok_and(|all| all.iter().any(|a| a.ip() == local.ip())),
                }
        }
    }
}

/// Tells the process that handed its sockets over that this one serves.
pub fn say_ready(ready: Option<Ready>) {
    if let Some(Ready(mut pipe)) = ready {
        let _ = pipe.write_all(b"ready\n");
    }
}

/// The variable's value, removed from the environment (start-up: no other thread reads it).
fn var(name: &str) -> Option<String> {
    let value = std::env::var(name).ok();
    std::env::remove_var(name);
    value
}

/// A handed-over listener: TCP, or (Unix) a Unix-domain one, whose socket file this process
/// now removes when it stops.
fn adopt_handed(fd: i32) -> Option<Socket> {
    #[cfg(unix)]
    if let Ok(socket) = sys::adopt_unix_listener(fd) {
        listen::adopted_socket_file(&socket);
        return socket
            .set_nonblocking(false)
            .ok()
            .map(|()| Socket::Unix(socket));
    }
    adopt(fd, HANDOVER_FDS).map(Socket::Tcp)
}

fn adopt(fd: i32, from: &str) -> Option<TcpListener> {
    match sys::adopt_listener(fd) {
        // The process that handed it over may have polled it, non-blocking (the mode belongs
        // to the socket, shared by both processes): this one's accept() waits.
        Ok(socket) => socket.set_nonblocking(false).ok().map(|()| socket),
        Err(e) => {
            log::problem(format_args!(
                "{from}: descriptor {fd} is not a listening TCP socket ({}): ignored",
                reason(&e)
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_match_rules_by_local_address() {
        let rule = |text: &str| ListenAddr::parse(text).unwrap();
        let at = |text: &str| text.parse::<SocketAddr>().unwrap();
        assert!(listen_matches(&rule(":8080"), at("0.0.0.0:8080")));
        assert!(listen_matches(&rule(":8080"), at("[::]:8080")));
        assert!(!listen_matches(&rule(":8080"), at("127.0.0.1:8080")));
        assert!(!listen_matches(&rule(":8080"), at("0.0.0.0:8081")));
        assert!(listen_matches(&rule("127.0.0.1:80"), at("127.0.0.1:80")));
        assert!(!listen_matches(&rule("127.0.0.1:80"), at("0.0.0.0:80")));
        assert!(listen_matches(&rule("[::1]:80"), at("[::1]:80")));
        assert!(listen_matches(&rule("localhost:80"), at("127.0.0.1:80")));
    }
}
