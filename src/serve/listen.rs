//! Opening listening sockets: `HOST:PORT`, `[V6]:PORT`, `:PORT` for both families, and
//! Unix-domain sockets (`unix:PATH`, whose file is removed when tcpfwd stops, and `unix:@NAME`).

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
#[cfg(unix)]
use std::os::unix::net::UnixListener;

use crate::addr::{self, Endpoint, Host, ListenAddr};
use crate::stream::Stream;
use crate::sys::{self, reason, Preset, TcpOptions};

/// A listening socket of either kind.
pub enum Socket {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A Unix-domain stream listener.
    #[cfg(unix)]
    Unix(UnixListener),
}

impl Socket {
    /// The next client and where it comes from (a Unix client has no address: `unix`).
    pub fn accept(&self) -> io::Result<(Stream, Endpoint)> {
        match self {
            Socket::Tcp(l) => l
                .accept()
                .map(|(s, peer)| (Stream::Tcp(s), Endpoint::Ip(peer))),
            #[cfg(unix)]
            Socket::Unix(l) => l
                .accept()
                .map(|(s, _)| (Stream::Unix(s), Endpoint::Unix(None))),
        }
    }

    /// Whether `accept` waits for a client (`false`) or returns at once (`true`).
    #[cfg(unix)]
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            Socket::Tcp(l) => l.set_nonblocking(nonblocking),
            #[cfg(unix)]
            Socket::Unix(l) => l.set_nonblocking(nonblocking),
        }
    }

    /// The IP address and port, for a TCP listener (a Unix one has none: an error).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Socket::Tcp(l) => l.local_addr(),
            #[cfg(unix)]
            Socket::Unix(_) => Err(io::ErrorKind::Unsupported.into()),
        }
    }

    /// The TCP listener, for what only TCP has (`--mss`).
    pub fn as_tcp(&self) -> Option<&TcpListener> {
        match self {
            Socket::Tcp(l) => Some(l),
            #[cfg(unix)]
            Socket::Unix(_) => None,
        }
    }
}

#[cfg(unix)]
impl std::os::fd::AsRawFd for Socket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            Socket::Tcp(l) => l.as_raw_fd(),
            Socket::Unix(l) => l.as_raw_fd(),
        }
    }
}

impl From<TcpListener> for Socket {
    fn from(l: TcpListener) -> Socket {
        Socket::Tcp(l)
    }
}

/// Opens the sockets of a rule's listen address (see [`bind_listen`] for TCP; the client
/// leg's TCP `options` and the `preset` timeouts do not apply to a Unix socket, `backlog`
/// does), and the timeouts every client accepted on them inherits.
pub fn open(
    listen: &ListenAddr,
    options: &TcpOptions,
    preset: Preset,
    backlog: Option<u32>,
) -> Result<(Vec<Socket>, Preset), ListenError> {
    match listen {
        #[cfg(unix)]
        ListenAddr::Unix(unix) => {
            let socket = unix_socket::bind(unix)?;
            if let Some(backlog) = backlog {
                sys::set_backlog(&socket, backlog).map_err(|e| failed(&listen.to_string(), &e))?;
            }
            Ok((vec![Socket::Unix(socket)], Preset::default()))
        }
        _ => {
            let (sockets, inherited) = bind_listen(listen, options, preset, backlog)?;
            Ok((sockets.into_iter().map(Socket::Tcp).collect(), inherited))
        }
    }
}

/// Removes the socket file of every `unix:PATH` listener opened (or handed over) so far.
/// Called when tcpfwd stops: a start-up failure, the end of a graceful stop.
pub fn remove_socket_files() {
    #[cfg(unix)]
    unix_socket::remove_all();
}

/// Forgets the socket files without removing them: after a hand-over, the new process serves
/// the same sockets and removes them when it stops.
pub fn keep_socket_files() {
    #[cfg(unix)]
    unix_socket::forget_all();
}

/// A Unix listener handed over by the process before: its file is this process's to remove.
#[cfg(unix)]
pub fn adopted_socket_file(listener: &UnixListener) {
    if let Some(path) = listener
        .local_addr()
        .ok()
        .as_ref()
        .and_then(|a| a.as_pathname())
    {
        unix_socket::remember(path.to_path_buf());
    }
}

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
/// sockets, one per family; each with the client leg's TCP options and the `preset`
/// timeouts set before it listens, so that every client it accepts inherits them (Linux, see
/// [`sys::listen_tcp`]); with `backlog`, that listen backlog instead of std's 128. Also the
/// timeouts the clients inherit: `preset`, or none where they are not inherited.
pub fn bind_listen(
    listen: &ListenAddr,
    options: &TcpOptions,
    preset: Preset,
    backlog: Option<u32>,
) -> Result<(Vec<TcpListener>, Preset), ListenError> {
    let bind = |addr: SocketAddr| {
        sys::listen_tcp(addr, options, preset, backlog).map_err(|reason| ListenError {
            addr: addr.to_string(),
            reason,
        })
    };
    let opened = match listen {
        ListenAddr::AnyHost(port) => open_any(*port, bind)?,
        ListenAddr::Host(hp) => {
            let addr = match &hp.host {
                Host::Ip(ip) => SocketAddr::new(*ip, hp.port),
                Host::Name(_) => first_address(hp)?,
            };
            vec![bind(addr)?]
        }
        ListenAddr::Unix(_) => {
            return Err(ListenError {
                addr: listen.to_string(),
                reason: "not a TCP address".into(),
            })
        }
    };
    let inherited = if opened.iter().all(|(_, inherits)| *inherits) {
        preset
    } else {
        Preset::default()
    };
    Ok((
        opened.into_iter().map(|(socket, _)| socket).collect(),
        inherited,
    ))
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
fn open_any<T>(
    port: u16,
    bind: impl Fn(SocketAddr) -> Result<(TcpListener, T), ListenError>,
) -> Result<Vec<(TcpListener, T)>, ListenError> {
    let v6 = SocketAddr::new(addr::unspecified(true), port);
    let v4 = SocketAddr::new(addr::unspecified(false), port);
    match bind(v6) {
        Ok(opened) if sys::v6only(&opened.0) == Some(false) => Ok(vec![opened]),
        Ok(opened) => {
            // Same port for IPv4, even when the OS picked it for port 0.
            let port = opened.0.local_addr().map(|a| a.port()).unwrap_or(port);
            let v4 = bind(SocketAddr::new(v4.ip(), port))?;
            Ok(vec![opened, v4])
        }
        Err(_) => Ok(vec![bind(v4)?]),
    }
}

fn failed(addr: &str, e: &io::Error) -> ListenError {
    ListenError {
        addr: addr.to_string(),
        reason: reason(e),
    }
}

/// Unix-domain listeners: a stale socket file replaced, any other file left alone, and the
/// files of every listener opened remembered for removal at the end.
#[cfg(unix)]
mod unix_socket {
    use std::fs;
    use std::io;
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::PathBuf;
    use std::sync::Mutex;

    use super::{failed, ListenError};
    use crate::addr::UnixAddr;

    /// The socket files this process created.
    static FILES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

    /// Opens `unix:PATH` or `unix:@NAME`.
    pub fn bind(addr: &UnixAddr) -> Result<UnixListener, ListenError> {
        let shown = addr.to_string();
        match addr {
            UnixAddr::Path(path) => {
                clear_stale(path, &shown)?;
                let listener = UnixListener::bind(path).map_err(|e| failed(&shown, &e))?;
                files().push(PathBuf::from(path));
                Ok(listener)
            }
            #[cfg(target_os = "linux")]
            UnixAddr::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let socket = std::os::unix::net::SocketAddr::from_abstract_name(name)
                    .map_err(|e| failed(&shown, &e))?;
                UnixListener::bind_addr(&socket).map_err(|e| failed(&shown, &e))
            }
            // The parser accepts `unix:@NAME` on Linux only.
            #[cfg(not(target_os = "linux"))]
            UnixAddr::Abstract(_) => Err(failed(&shown, &io::ErrorKind::Unsupported.into())),
        }
    }

    /// A socket file nobody listens on (left by a process that died) is removed; a socket
    /// someone listens on is `address in use`; any other file is never touched.
    fn clear_stale(path: &str, shown: &str) -> Result<(), ListenError> {
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(failed(shown, &e)),
        };
        if !meta.file_type().is_socket() {
            return Err(ListenError {
                addr: shown.to_string(),
                reason: "the file exists and is not a socket (tcpfwd replaces only a stale \
                         socket file)"
                    .into(),
            });
        }
        match UnixStream::connect(path) {
            Ok(_) => Err(failed(shown, &io::ErrorKind::AddrInUse.into())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                fs::remove_file(path).map_err(|e| failed(shown, &e))
            }
            Err(e) => Err(failed(shown, &e)),
        }
    }

    fn files() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
        FILES.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers a socket file to remove at the end.
    pub fn remember(path: PathBuf) {
        files().push(path);
    }

    /// Forgets every socket file (another process removes them).
    pub fn forget_all() {
        files().clear();
    }

    /// Removes every socket file opened so far.
    pub fn remove_all() {
        for path in files().drain(..) {
            let _ = fs::remove_file(path);
        }
    }
}
