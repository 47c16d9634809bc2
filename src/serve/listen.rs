//! Opening listening sockets: `HOST:PORT`, `[V6]:PORT`, and `:PORT` for both families.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};

use crate::addr::{self, Host, ListenAddr};
use crate::sys::{self, reason, TcpOptions};

/// A listener could not be opened: exit status 1.
#[derive(Debug)]
pub struct ListenError {
    /// The address as tried.
    pub addr: String,
    /// The OS reason.
    pub reason: String,
}

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "cannot listen on {}: {}", self.addr, self.reason)
    }
}

/// Opens the sockets of a listen address: one, or for `:PORT` on a system without dual-stack
/// sockets, one per family; each with the client leg's TCP options, which the sockets it
/// accepts inherit (Linux, see [`sys::set_listener_options`]); with `backlog`, that listen
/// backlog instead of std's 128.
pub fn bind_listen(
    listen: &ListenAddr,
    options: &TcpOptions,
    backlog: Option<u32>,
) -> Result<Vec<TcpListener>, ListenError> {
    let sockets = match listen {
        ListenAddr::AnyHost(port) => open_any(*port)?,
        ListenAddr::Host(hp) => {
            let addr = match &hp.host {
                Host::Ip(ip) => SocketAddr::new(*ip, hp.port),
                Host::Name(_) => first_address(hp)?,
            };
            vec![bind(addr)?]
        }
    };
    for socket in &sockets {
        sys::set_listener_options(socket, options, true).map_err(|reason| ListenError {
            addr: listen.to_string(),
            reason,
        })?;
    }
    if let Some(backlog) = backlog {
        for socket in &sockets {
            sys::set_backlog(socket, backlog).map_err(|e| failed(&listen.to_string(), &e))?;
        }
    }
    Ok(sockets)
}

fn first_address(hp: &addr::HostPort) -> Result<SocketAddr, ListenError> {
    let resolved = hp.resolve().map_err(|e| failed(&hp.to_string(), &e))?;
    resolved.first().copied().ok_or_else(|| ListenError {
        addr: hp.to_string(),
        reason: "the name resolves to no address".into(),
    })
}

/// `:PORT`: IPv6 `[::]` serves IPv4 too where the OS makes it dual-stack (Linux by default);
/// elsewhere, or without IPv6, `0.0.0.0` gets a socket of its own.
fn open_any(port: u16) -> Result<Vec<TcpListener>, ListenError> {
    let v6 = SocketAddr::new(addr::unspecified(true), port);
    let v4 = SocketAddr::new(addr::unspecified(false), port);
    match bind(v6) {
        Ok(socket) if sys::v6only(&socket) == Some(false) => Ok(vec![socket]),
        Ok(socket) => {
            // Same port for IPv4, even when the OS picked it for port 0.
            let port = socket.local_addr().map(|a| a.port()).unwrap_or(port);
            Ok(vec![socket, bind(SocketAddr::new(v4.ip(), port))?])
        }
        Err(_) => Ok(vec![bind(v4)?]),
    }
}

fn bind(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr).map_err(|e| failed(&addr.to_string(), &e))
}

fn failed(addr: &str, e: &io::Error) -> ListenError {
    ListenError {
        addr: addr.to_string(),
        reason: reason(e),
    }
}
