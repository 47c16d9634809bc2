//! The `end=` vocabulary: why a connection ended, as logs and metrics say it (SPEC §5).

use std::fmt;

/// Why a connection ended: the `end=` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum End {
    /// The client ended its output first (a clean end).
    ClientEof,
    /// The target ended its output first (a clean end).
    TargetEof,
    /// The client reset the connection or failed.
    ClientReset,
    /// The target reset the connection or failed.
    TargetReset,
    /// Neither direction moved a byte for `--idle-timeout`.
    IdleTimeout,
    /// One direction ended and the other was quiet for `--fin-timeout`.
    FinTimeout,
    /// Every connect attempt was refused (or the name did not resolve).
    ConnectRefused,
    /// A connect attempt ran out of time.
    ConnectTimeout,
    /// No target could be tried (all full).
    NoTarget,
    /// The client address is not allowed.
    Denied,
    /// CONNECT credentials missing or wrong.
    AuthFailed,
    /// A malformed CONNECT head or PROXY header.
    BadRequest,
    /// Still open when a graceful stop's `--grace` ran out: reset on both sides.
    Shutdown,
    /// Anything else (e.g. a thread could not be started).
    Error,
}

impl End {
    /// The word written after `end=`.
    pub fn as_str(self) -> &'static str {
        match self {
            End::ClientEof => "client-eof",
            End::TargetEof => "target-eof",
            End::ClientReset => "client-reset",
            End::TargetReset => "target-reset",
            End::IdleTimeout => "idle-timeout",
            End::FinTimeout => "fin-timeout",
            End::ConnectRefused => "connect-refused",
            End::ConnectTimeout => "connect-timeout",
            End::NoTarget => "no-target",
            End::Denied => "denied",
            End::AuthFailed => "auth-failed",
            End::BadRequest => "bad-request",
            End::Shutdown => "shutdown",
            End::Error => "error",
        }
    }

    /// Every end, for metrics.
    pub const ALL: [End; 14] = [
        End::ClientEof,
        End::TargetEof,
        End::ClientReset,
        End::TargetReset,
        End::IdleTimeout,
        End::FinTimeout,
        End::ConnectRefused,
        End::ConnectTimeout,
        End::NoTarget,
        End::Denied,
        End::AuthFailed,
        End::BadRequest,
        End::Shutdown,
        End::Error,
    ];

    /// Its position in [`End::ALL`]: the index of its counter.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The end at `index` in [`End::ALL`].
    pub fn from_index(index: usize) -> Option<End> {
        End::ALL.get(index).copied()
    }

    /// A clean end is not a problem: `-q` leaves it out.
    pub fn is_clean(self) -> bool {
        matches!(self, End::ClientEof | End::TargetEof)
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_end_is_at_its_index() {
        for (i, end) in End::ALL.iter().enumerate() {
            assert_eq!(end.index(), i);
            assert_eq!(End::from_index(i), Some(*end));
        }
        assert_eq!(End::from_index(End::ALL.len()), None);
    }
}
