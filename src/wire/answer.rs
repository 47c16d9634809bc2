//! The last words on a connection: send an answer, then close so the peer reads all of it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use crate::deadline::Deadline;

/// How long writing the answer, and then draining, may take each.
const DRAIN_TIME: Duration = Duration::from_secs(1);
/// How many unread bytes are swallowed at most before closing.
const DRAIN_LIMIT: usize = 256 * 1024;

/// Sends `response`, shuts down the write half, then swallows what the peer already sent (at
/// most [`DRAIN_LIMIT`] bytes for at most [`DRAIN_TIME`]): closing with unread input would
/// send a reset, which can destroy the response before the peer reads it. Errors are ignored:
/// the peer may be gone.
pub fn send_and_close(stream: &TcpStream, response: &[u8]) {
    let mut writer = stream;
    let _ = stream.set_write_timeout(Some(DRAIN_TIME));
    let _ = writer.write_all(response);
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Deadline::after(DRAIN_TIME);
    let (mut chunk, mut reader, mut total) = ([0u8; 2048], stream, 0);
    while total < DRAIN_LIMIT {
        if deadline.limit_read(stream).is_err() {
            return;
        }
        match reader.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}
