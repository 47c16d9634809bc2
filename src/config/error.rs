//! The configuration layer's error: a usage or config-file mistake, exit status 2.

use std::fmt;

/// A usage or configuration error: exit status 2.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// Something wrong on the command line.
    Usage(String),
    /// Something wrong on a line of a config file.
    Line {
        /// The file as given.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The config file cannot be read.
    File {
        /// The file as given.
        path: String,
        /// The OS reason.
        reason: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Error::Usage(message) => write!(f, "{message}"),
            Error::Line {
                path,
                line,
                message,
            } => write!(f, "{path}:{line}: {message}"),
            Error::File { path, reason } => write!(f, "cannot read config file {path}: {reason}"),
        }
    }
}

impl std::error::Error for Error {}
