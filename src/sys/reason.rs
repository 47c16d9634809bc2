//! tcpfwd's own words for the OS errors it reports, the same whatever the C library: glibc
//! says "Too many open files", musl "No file descriptors available", and scripts, tests and
//! the README's example lines rely on one text.

use std::io::{self, ErrorKind};

/// The OS reason of an I/O error as a user reads it: `address in use`, `permission denied`.
pub fn reason(e: &io::Error) -> String {
    if let Some(words) = own_words(e) {
        return words.into();
    }
    // Anything else: the C library's text, without "(os error N)", in lower case.
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => format!("{:?}", e.kind()),
    }
}

/// The words for the errors tcpfwd meets on sockets, files and limits. std maps the errno
/// numbers (which differ on MIPS) to kinds; EMFILE and ENFILE have no kind of their own,
/// but are 24 and 23 on every Unix tcpfwd builds for.
fn own_words(e: &io::Error) -> Option<&'static str> {
    #[cfg(unix)]
    match e.raw_os_error() {
        Some(24) => return Some("too many open files"),
        Some(23) => return Some("too many open files in system"),
        _ => {}
    }
    #[cfg(windows)]
    if e.raw_os_error() == Some(10024) {
        return Some("too many open files");
    }
    // glibc's words (in lower case), so log lines read as they always did; musl's differ.
    Some(match e.kind() {
        ErrorKind::AddrInUse => "address in use",
        ErrorKind::AddrNotAvailable => "cannot assign requested address",
        ErrorKind::PermissionDenied => "permission denied",
        ErrorKind::ConnectionRefused => "connection refused",
        ErrorKind::ConnectionReset => "connection reset by peer",
        ErrorKind::ConnectionAborted => "software caused connection abort",
        ErrorKind::NotConnected => "transport endpoint is not connected",
        ErrorKind::BrokenPipe => "broken pipe",
        ErrorKind::TimedOut => "connection timed out",
        ErrorKind::HostUnreachable => "no route to host",
        ErrorKind::NetworkUnreachable => "network is unreachable",
        ErrorKind::NetworkDown => "network is down",
        ErrorKind::OutOfMemory => "cannot allocate memory",
        ErrorKind::NotFound => "no such file or directory",
        ErrorKind::IsADirectory => "is a directory",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_words_do_not_depend_on_the_c_library() {
        assert_eq!(reason(&ErrorKind::AddrInUse.into()), "address in use");
        assert_eq!(reason(&ErrorKind::TimedOut.into()), "connection timed out");
        assert_eq!(
            reason(&ErrorKind::HostUnreachable.into()),
            "no route to host"
        );
        #[cfg(unix)]
        {
            assert_eq!(
                reason(&io::Error::from_raw_os_error(24)),
                "too many open files"
            );
            assert_eq!(
                reason(&io::Error::from_raw_os_error(23)),
                "too many open files in system"
            );
        }
        // Others keep the OS text, in lower case and without the errno.
        let other = reason(&io::Error::other("Odd Thing"));
        assert_eq!(other, "odd Thing");
    }
}
