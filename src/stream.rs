//! A connected stream, TCP or Unix-domain: what the relay copies and the PROXY header is read
//! from, whichever kind it is. TCP-only socket options go through [`Stream::as_tcp`], so a
//! Unix side simply has none.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::time::Duration;

#[cfg(unix)]
use crate::addr::UnixAddr;
use crate::sys;

/// One connected socket of either kind.
#[derive(Debug)]
pub enum Stream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix-domain stream socket.
    #[cfg(unix)]
    Unix(UnixStream),
}

/// Calls the same method on whichever socket `$stream` holds.
macro_rules! either {
    ($stream:expr, $s:ident => $call:expr) => {
        match $stream {
            Stream::Tcp($s) => $call,
            #[cfg(unix)]
            Stream::Unix($s) => $call,
        }
    };
}

impl Stream {
    /// The TCP socket, for options that only TCP has (`None` on a Unix socket).
    pub fn as_tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Tcp(s) => Some(s),
            #[cfg(unix)]
            Stream::Unix(_) => None,
        }
    }

    /// Shuts down one or both halves.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        either!(self, s => s.shutdown(how))
    }

    /// Ends the connection at once: a TCP socket sends an RST (see [`sys::reset`]); a Unix
    /// socket, which has none, is shut down both ways.
    pub fn reset(&self) {
        match self {
            Stream::Tcp(s) => sys::reset(s),
            #[cfg(unix)]
            Stream::Unix(s) => {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }

    /// The TCP socket, taken out (`None` for a Unix socket).
    pub fn into_tcp(self) -> Option<TcpStream> {
        match self {
            Stream::Tcp(s) => Some(s),
            #[cfg(unix)]
            Stream::Unix(_) => None,
        }
    }

    /// How long a read may block (`None`: forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        either!(self, s => s.set_read_timeout(timeout))
    }

    /// How long a write may block (`None`: forever).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        either!(self, s => s.set_write_timeout(timeout))
    }

    /// Whether reads and writes return at once instead of waiting. (An accepted socket
    /// inherits a non-blocking listener's mode outside Linux.)
    #[cfg(all(unix, not(target_os = "linux")))]
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        either!(self, s => s.set_nonblocking(nonblocking))
    }

    /// Reads what has arrived without taking it off the socket.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.peek(buf),
            // std's `UnixStream::peek` is not stable yet.
            #[cfg(unix)]
            Stream::Unix(s) => sys::peek(s, buf),
        }
    }
}

/// Connects to a Unix-domain socket. (It has no handshake to time out: a listener is there
/// and takes it, or the connect fails at once. Only a listener whose backlog is full makes it
/// wait.)
#[cfg(unix)]
pub fn connect_unix(addr: &UnixAddr) -> io::Result<Stream> {
    match addr {
        UnixAddr::Path(path) => UnixStream::connect(path).map(Stream::Unix),
        #[cfg(target_os = "linux")]
        UnixAddr::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            UnixStream::connect_addr(&addr).map(Stream::Unix)
        }
        // The parser accepts `unix:@NAME` on Linux only.
        #[cfg(not(target_os = "linux"))]
        UnixAddr::Abstract(_) => Err(io::ErrorKind::Unsupported.into()),
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        either!(*self, s => (&*s).read(buf))
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        either!(*self, s => (&*s).write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        either!(*self, s => (&*s).flush())
    }
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Stream {
        Stream::Tcp(s)
    }
}

#[cfg(unix)]
impl From<UnixStream> for Stream {
    fn from(s: UnixStream) -> Stream {
        Stream::Unix(s)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_unix_stream_peeks_reads_and_half_closes() {
        let (a, b) = UnixStream::pair().unwrap();
        let (a, b) = (Stream::from(a), Stream::from(b));
        (&a).write_all(b"hello").unwrap();
        a.shutdown(Shutdown::Write).unwrap();
        let mut seen = [0; 8];
        assert_eq!(b.peek(&mut seen).unwrap(), 5);
        let mut all = Vec::new();
        (&b).read_to_end(&mut all).unwrap();
        assert_eq!(all, b"hello");
        assert!(b.as_tcp().is_none());
    }
}
