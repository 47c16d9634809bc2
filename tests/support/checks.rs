//! Assertions several test files share: one round trip, an echo both ways at once, a client the
//! filter denied, a client closed without data.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
#[cfg(unix)]
use std::os::unix::net::UnixStream;

use super::backend::Backend;
use super::net::{connect, pattern};
use super::process::Tcpfwd;
use super::wait::spawn;

/// A connected socket the checks drive from two threads at once: TCP or Unix-domain.
pub trait Duplex: Read + Write + Send + Sized + 'static {
    /// A second handle on the same socket.
    fn twin(&self) -> Self;
    /// Shuts down the write half.
    fn end_output(&self);
}

impl Duplex for TcpStream {
    fn twin(&self) -> Self {
        self.try_clone().unwrap()
    }
    fn end_output(&self) {
        self.shutdown(Shutdown::Write).unwrap();
    }
}

#[cfg(unix)]
impl Duplex for UnixStream {
    fn twin(&self) -> Self {
        self.try_clone().unwrap()
    }
    fn end_output(&self) {
        self.shutdown(Shutdown::Write).unwrap();
    }
}

/// Sends `message` on `stream` and reads as many bytes back (one round trip through an echo
/// path; the connection stays open).
pub fn echo_once(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    stream.write_all(message).unwrap();
    let mut back = vec![0; message.len()];
    stream.read_exact(&mut back).unwrap();
    back
}

/// Sends `data` through an echo path while reading the echo at the same time (a forwarder
/// that copies one direction after the other would deadlock once the socket buffers fill),
/// then shuts down the write half; asserts the echo is byte-exact.
pub fn echo_both_ways_at_once<S: Duplex>(client: &mut S, data: &[u8]) {
    let mut writer = client.twin();
    let sent = data.to_vec();
    let write = spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.end_output();
    });
    let mut echoed = Vec::new();
    client.read_to_end(&mut echoed).expect("read to EOF");
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

/// Sends `size` bytes of [`pattern`] through an echo path at `addr` and reads them back at
/// the same time; asserts the echo is byte-exact (see [`echo_both_ways_at_once`]).
pub fn echo_through(addr: SocketAddr, size: usize) {
    echo_both_ways_at_once(&mut connect(addr), &pattern(size, size as u32));
}
