//! The config file: one rule per line, each line a command line for the same parser.

use std::ffi::OsString;
use std::io::Read;
use std::path::Path;

use crate::config::error::Error;
use crate::config::line::{build_rules, parse_line, ProcessDraft, RuleDraft};
use crate::config::rule::Rule;
use crate::sys::reason;

/// What a config file holds.
pub(crate) struct File {
    /// Rules in written order.
    pub(crate) rules: Vec<Rule>,
    /// Process options written on lines of their own.
    pub(crate) process: ProcessDraft,
}

/// The largest config file read: 10,000 rules of 400 bytes fit, and a wrong path (a
/// device, a log) fails at once with bounded memory instead of being read whole.
pub(crate) const MAX_FILE_SIZE: u64 = 4 * 1024 * 1024;

/// Reads and parses `path`; `defaults` are the rule options given on the command line.
pub(crate) fn load(path: &Path, defaults: &RuleDraft) -> Result<File, Error> {
    let shown = path.display().to_string();
    let failed = |e: std::io::Error| Error::File {
        path: shown.clone(),
        reason: reason(&e),
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes))
        .map_err(failed)?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(Error::File {
            path: shown,
            reason: format!("larger than {} MiB, the limit", MAX_FILE_SIZE >> 20),
        });
    }
    parse(&bytes, &shown, defaults)
}

/// Parses a config file's bytes; `path` is used in messages only. A byte that is not UTF-8
/// is an error naming its line.
pub(crate) fn parse(text: &[u8], path: &str, defaults: &RuleDraft) -> Result<File, Error> {
    let mut file = File {
        rules: Vec::new(),
        process: ProcessDraft::default(),
    };
    let lines = text.split(|&b| b == b'\n');
    for (index, raw) in lines.enumerate() {
        let at = |message: String| Error::Line {
            path: path.to_string(),
            line: index + 1,
            message,
        };
        let raw = std::str::from_utf8(raw).map_err(|e| {
            let column = e.valid_up_to() + 1;
            let byte = raw.get(e.valid_up_to()).copied().unwrap_or(0);
            at(format!(
                "byte 0x{byte:02x} at column {column} is not UTF-8 (write the file as UTF-8)"
            ))
        })?;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let tokens = split(raw).map_err(|m| at(m.to_string()))?;
        if tokens.is_empty() {
            continue;
        }
        let line = parse_line(tokens.into_iter().map(OsString::from).collect()).map_err(at)?;
        if line.help || line.version || line.check || line.config.is_some() {
            return Err(at(
                "--help, --version, --check and --config belong on the command line".into(),
            ));
        }
        let has_rule = line.rule.listen.is_some() || !line.rule.targets.is_empty();
        match (has_rule, line.process.is_empty()) {
            (true, true) => file
                .rules
                .extend(build_rules(&line.rule, defaults).map_err(at)?),
            (false, false) if line.rule == RuleDraft::default() => {
                // A later line wins over an earlier one.
                file.process = line.process.or(&file.process);
            }
            (false, _) => return Err(at("missing LISTEN address".into())),
            (true, false) => return Err(at("--stats, -v and -q go on a line of their own".into())),
        }
    }
    if file.rules.is_empty() {
        return Err(Error::Line {
            path: path.to_string(),
            line: 0,
            message: "no rule in the file".into(),
        });
    }
    Ok(file)
}

/// Splits a line into tokens: whitespace separates, `#` at the start of a token comments out
/// the rest, double quotes group, with `\"` and `\\` inside quotes.
pub(crate) fn split(line: &str) -> Result<Vec<String>, &'static str> {
    let mut tokens = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.peek() {
            None | Some('#') => return Ok(tokens),
            Some(_) => {}
        }
        let mut token = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
            if c != '"' {
                token.push(c);
                continue;
            }
            loop {
                match chars.next() {
                    None => return Err("unterminated quote"),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c @ ('"' | '\\')) => token.push(c),
                        _ => return Err("inside quotes, a backslash escapes only \" or \\"),
                    },
                    Some(c) => token.push(c),
                }
            }
        }
        tokens.push(token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tokens_comments_and_quotes() {
        assert_eq!(split("  a  b\tc ").unwrap(), ["a", "b", "c"]);
        assert_eq!(split("a # b c").unwrap(), ["a"]);
        assert_eq!(split("# all comment").unwrap(), Vec::<String>::new());
        assert_eq!(split("a#b").unwrap(), ["a#b"]);
        assert_eq!(
            split(r#"--auth "al ice:p\"w\\d""#).unwrap(),
            ["--auth", r#"al ice:p"w\d"#]
        );
        assert_eq!(split(r#""""#).unwrap(), [""]);
        assert!(split(r#""open"#).is_err());
        assert!(split(r#""\n""#).is_err());
    }

    #[test]
    fn rules_defaults_and_process_lines() {
        let text =
            "# tcpfwd.conf\n--stats 127.0.0.1:9100\n\n:8080 a:80 b:80,backup --idle-timeout 5m\n\
                    --connect 127.0.0.1:3128 --auth \"alice:se cret\"\n";
        let defaults = parse_line(vec!["--idle-timeout".into(), "7s".into()])
            .unwrap()
            .rule;
        let file = parse(text.as_bytes(), "t.conf", &defaults).unwrap();
        assert_eq!(file.rules.len(), 2);
        assert_eq!(
            file.rules[0].options.idle_timeout,
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            file.rules[1].options.idle_timeout,
            Some(Duration::from_secs(7))
        );
        assert!(file.process.stats.is_some());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_line_sets_the_congestion_of_the_legs_it_names_only() {
        if std::env::var_os("TCPFWD_UNDER_QEMU").is_some() {
            // qemu-user hands setsockopt(TCP_CONGESTION) 4 bytes of the name (it reads every
            // TCP option as an int): "cubic" reaches the kernel as "cubi".
            return;
        }
        let defaults = parse_line(vec!["--congestion".into(), "reno".into()])
            .unwrap()
            .rule;
        let text = ":1 a:1 --congestion target=cubic\n:2 a:1\n";
        let file = parse(text.as_bytes(), "t.conf", &defaults).unwrap();
        let legs = |i: usize| {
            let c = &file.rules[i].options.congestion;
            (c.client.as_deref(), c.target.as_deref())
        };
        assert_eq!(legs(0), (Some("reno"), Some("cubic")));
        assert_eq!(legs(1), (Some("reno"), Some("reno")));
    }

    #[test]
    fn errors_name_file_and_line() {
        let d = RuleDraft::default();
        let err = |text: &str| {
            parse(text.as_bytes(), "t.conf", &d)
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(
            err(":1 a:1\n\n:2 a:1 --foo\n").as_deref(),
            Some("t.conf:3: unknown option --foo")
        );
        assert_eq!(
            err(":1 a:1 \"x\n").as_deref(),
            Some("t.conf:1: unterminated quote")
        );
        assert!(err(":1 a:1 --stats 127.0.0.1:1\n")
            .unwrap()
            .starts_with("t.conf:1: --stats"));
        assert!(err("--idle-timeout 5s\n")
            .unwrap()
            .starts_with("t.conf:1: missing LISTEN"));
        assert!(err("# nothing\n").unwrap().contains("no rule"));
        assert!(err(":1 a:1\n--config x\n")
            .unwrap()
            .starts_with("t.conf:2:"));
        let latin1 = parse(b":1 a:1\n# caf\xe9\n", "t.conf", &d).err();
        assert_eq!(
            latin1.map(|e| e.to_string()).as_deref(),
            Some("t.conf:2: byte 0xe9 at column 6 is not UTF-8 (write the file as UTF-8)")
        );
        assert!(parse(b":1 a:1\r\n", "t.conf", &d).is_ok());
    }
}
