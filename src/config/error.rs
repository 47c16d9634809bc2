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
            Error::Usage(message) => write!(f, "{}", Tidy(message)),
            Error::Line {
                path,
                line,
                message,
            } => write!(f, "{}:{line}: {}", Escaped(path), Tidy(message)),
            Error::File { path, reason } => {
                write!(f, "cannot read config file {}: {reason}", Escaped(path))
            }
        }
    }
}

impl std::error::Error for Error {}

/// The longest run of non-blank characters shown from a message (a value echoed from the
/// command line or a file); the rest of it is left out.
const MAX_WORD: usize = 60;
/// The most characters shown of one message.
const MAX_MESSAGE: usize = 400;

/// A message as it may reach a terminal: control characters escaped, each echoed value cut
/// to a short prefix, the whole bounded (a 100 MB token is shown as its first bytes).
struct Tidy<'a>(&'a str);

impl fmt::Display for Tidy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let (mut shown, mut word) = (0, 0);
        for c in self.0.chars() {
            if shown >= MAX_MESSAGE {
                return f.write_str("...");
            }
            word = if c == ' ' { 0 } else { word + 1 };
            if word == MAX_WORD + 1 {
                f.write_str("...")?;
            }
            if word > MAX_WORD {
                continue;
            }
            shown += 1;
            put(f, c)?;
        }
        Ok(())
    }
}

/// The config file's path, shown whole (the operator wrote it, and the message must name
/// it), with control characters escaped.
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.chars().try_for_each(|c| put(f, c))
    }
}

/// One character as it may reach a terminal: a control character escaped.
fn put(f: &mut fmt::Formatter, c: char) -> fmt::Result {
    if c.is_control() {
        write!(f, "{}", c.escape_default())
    } else {
        write!(f, "{c}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_values_are_short_and_escaped() {
        let long = "x".repeat(100_000_000 / 1000);
        let shown = Error::Usage(format!("'{long}' is not a duration")).to_string();
        assert_eq!(shown, format!("'{}... is not a duration", "x".repeat(59)));
        let controls = Error::Usage("'a\u{1b}[2Jb\r' is bad".into()).to_string();
        assert_eq!(controls, "'a\\u{1b}[2Jb\\r' is bad");
        let path = format!("/{}/t.conf", "long".repeat(40));
        let line = Error::Line {
            path: path.clone(),
            line: 3,
            message: "unknown option --foo".into(),
        };
        assert_eq!(line.to_string(), format!("{path}:3: unknown option --foo"));
        let words = Error::Usage("ab ".repeat(1000)).to_string();
        assert!(words.len() <= MAX_MESSAGE + 3, "{}", words.len());
    }
}
