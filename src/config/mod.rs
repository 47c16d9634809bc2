//! From words to typed rules: the command line ([`argv`]), the grammar of one line shared by
//! the command line and the config file ([`line`]), the file reader ([`file`]), the rule
//! types ([`rule`]), durations and sizes ([`units`]), the `--check` printer ([`check`]) and
//! `--help` ([`help`]). Nothing below this layer sees a string the user wrote.

mod argv;
mod check;
mod error;
mod file;
mod help;
mod line;
pub mod rule;
mod units;

pub use argv::{parse_args, Command, Setup};
pub use check::Listing;
pub use help::HELP;
pub use units::ShowDuration;
