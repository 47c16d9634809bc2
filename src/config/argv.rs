//! The process's command line: what it asks for (serve, check, help, version) and the rules.

use std::ffi::OsString;

use crate::config::error::Error;
use crate::config::file;
use crate::config::line::{build_rules, parse_line, RuleDraft};
use crate::config::rule::{Process, Rule};

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Serve these rules.
    Run(Setup),
    /// Print the normalised rules and exit.
    Check(Setup),
    /// Print the help text.
    Help,
    /// Print the version.
    Version,
}

/// Every rule of the process and the process-wide options.
#[derive(Debug)]
pub struct Setup {
    /// Rules in written order.
    pub rules: Vec<Rule>,
    /// Process options.
    pub process: Process,
    /// The config file the rules come from (`--config`): what SIGHUP reloads.
    pub config: Option<std::path::PathBuf>,
}

/// Parses the process's arguments (without the program name).
pub fn parse_args(args: Vec<OsString>) -> Result<Command, Error> {
    let line = parse_line(args).map_err(Error::Usage)?;
    if line.help {
        return Ok(Command::Help);
    }
    if line.version {
        return Ok(Command::Version);
    }
    let setup = match &line.config {
        Some(path) => {
            if line.rule.listen.is_some() || !line.rule.targets.is_empty() {
                return Err(Error::Usage(
                    "--config: write the rules in the file, not also on the command line".into(),
                ));
            }
            let file = file::load(path, &line.rule)?;
            Setup {
                rules: file.rules,
                process: line.process.or(&file.process).build(),
                config: Some(path.clone()),
            }
        }
        None => {
            let rules = build_rules(&line.rule, &RuleDraft::default()).map_err(Error::Usage)?;
            Setup {
                rules,
                process: line.process.build(),
                config: None,
            }
        }
    };
    Ok(if line.check {
        Command::Check(setup)
    } else {
        Command::Run(setup)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::ListenAddr;
    use crate::config::help::HELP;
    use crate::config::rule::{Balance, Mode, Options};
    use crate::wire::proxy_header::Version as ProxyVersion;
    use std::time::Duration;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    fn rule(line: &str) -> Result<Rule, Error> {
        match parse_args(args(line))? {
            Command::Run(mut setup) => Ok(setup.rules.remove(0)),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn error(line: &str) -> String {
        rule(line).unwrap_err().to_string()
    }

    #[test]
    fn a_plain_forward_has_the_spec_defaults() {
        let r = rule(":8080 10.0.0.5:80").unwrap();
        assert_eq!(r.listen, ListenAddr::AnyHost(8080));
        assert_eq!(r.options, Options::default());
        let Mode::Forward(fw) = &r.mode else { panic!() };
        assert_eq!(fw.targets.len(), 1);
        assert_eq!(fw.balance, Balance::RoundRobin);
        assert_eq!(
            r.to_string(),
            ":8080 10.0.0.5:80 --balance round-robin --health-interval 0 --down-after 1 \
             --down-for 10s --connect-timeout 5s --idle-timeout 0 --fin-timeout 1m \
             --keepalive 1m --max-conns 1024 --backlog 1024 --buffer-size 64k"
        );
    }

    #[test]
    fn options_and_target_flags() {
        let r = rule(
            "127.0.0.1:0 a:1,weight=3,max-conns=7 b:2,backup --balance first --idle-timeout 1.5s \
             --allow 10.0.0.0/8 --deny 10.0.0.1 --buffer-size 32k --nagle --proxy-protocol v2",
        )
        .unwrap();
        let Mode::Forward(fw) = &r.mode else { panic!() };
        assert_eq!(fw.targets[0].weight, 3);
        assert_eq!(fw.targets[0].max_conns, Some(7));
        assert!(fw.targets[1].backup);
        assert_eq!(fw.balance, Balance::First);
        assert_eq!(r.options.idle_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(r.options.clients.allow.len(), 1);
        assert_eq!(r.options.buffer_size, 32 * 1024);
        assert!(r.options.nagle);
        assert_eq!(r.options.proxy_protocol, Some(ProxyVersion::V2));
        // The normalised form reads back as the same rule.
        let again = rule(&r.to_string()).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn connect_mode() {
        let r =
            rule("--connect 127.0.0.1:3128 --connect-ports 443,8443 --auth alice:s3cret").unwrap();
        let Mode::Connect(policy) = &r.mode else {
            panic!()
        };
        assert!(policy.ports.allows(8443) && !policy.ports.allows(80));
        assert_eq!(policy.users[0].password, "s3cret");
        assert!(r.to_string().contains("--auth alice:***"));
        assert!(!r.to_string().contains("s3cret"));
        assert!(
            !format!("{r:?}").contains("s3cret"),
            "debug output shows a password"
        );
    }

    #[test]
    fn check_lines_quote_what_needs_quotes() {
        let user = r##"al ice\"#"##;
        let tokens = ["--connect", ":1", "--auth", &format!("{user}:pw")];
        let Ok(Command::Run(setup)) = parse_args(tokens.iter().map(OsString::from).collect())
        else {
            panic!()
        };
        let line = setup.rules[0].to_string();
        assert!(line.contains(r##"--auth "al ice\\\"#:***""##), "{line}");
        // The config reader reads the token back as written.
        let again = file::split(&line).unwrap();
        assert!(again.contains(&format!("{user}:***")), "{again:?}");
    }

    #[test]
    fn errors_name_the_option() {
        assert_eq!(error(":1 a:1 --foo"), "unknown option --foo");
        assert!(error(":1 a:1 --idle-timeout 5x").starts_with("--idle-timeout: '5x'"));
        assert!(error(":1 a:1 --max-conns 0").starts_with("--max-conns:"));
        assert!(error(":1 a:1 --keepalive 1.5s").starts_with("--keepalive:"));
        assert!(error(":1 a:1 --balance fastest").starts_with("--balance:"));
        assert!(error(":1 a:1,weight=0").contains("weight"));
        assert!(error(":1 a:1,heavy").contains("unknown flag"));
        assert!(error(":1").contains("missing TARGET"));
        assert!(error("").contains("missing LISTEN"));
        assert!(error(":1 a:1 --auth u:p").contains("--auth applies only to --connect"));
        assert!(error("--connect :1 --balance first").contains("--balance applies"));
        assert!(error("--connect :1 a:1").contains("takes no TARGET"));
        assert!(error(":1 a:1 --connect-timeout").contains("missing argument"));
        assert!(error(":1 a:1 --nagle=yes").contains("nagle"));
    }

    fn rules(line: &str) -> Result<Vec<Rule>, Error> {
        match parse_args(args(line))? {
            Command::Run(setup) => Ok(setup.rules),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_port_range_is_one_rule_per_port() {
        let all = rules("127.0.0.1:9000-9099 app:7000-7099 one:80 --max-conns 5").unwrap();
        assert_eq!(all.len(), 100);
        for (k, rule) in all.iter().enumerate() {
            assert_eq!(rule.listen.to_string(), format!("127.0.0.1:{}", 9000 + k));
            assert_eq!(rule.options.max_conns, 5);
            let Mode::Forward(fw) = &rule.mode else {
                panic!()
            };
            assert_eq!(fw.targets[0].addr.to_string(), format!("app:{}", 7000 + k));
            assert_eq!(fw.targets[1].addr.to_string(), "one:80");
        }
        assert_eq!(rules(":5-6 a:1").unwrap()[1].listen, ListenAddr::AnyHost(6));
        assert_eq!(
            rules("[::1]:5-6 a:1").unwrap()[1].to_string(),
            rule("[::1]:6 a:1").unwrap().to_string()
        );
        assert_eq!(rules(":1-4096 a:1").unwrap().len(), 4096);
    }

    #[test]
    fn range_mistakes_are_usage_errors_naming_both() {
        let e = rules(":8000-8099 app:9000-9049").unwrap_err().to_string();
        assert!(
            e.contains("app:9000-9049") && e.contains(":8000-8099"),
            "{e}"
        );
        assert!(e.contains("50") && e.contains("100"), "{e}");
        let e = rules(":8000 app:9000-9049").unwrap_err().to_string();
        assert!(e.contains("app:9000-9049"), "{e}");
        let e = rules("--connect :3128-3130").unwrap_err().to_string();
        assert!(e.starts_with("--connect:") && e.contains("range"), "{e}");
        assert!(rules(":1-4097 a:1")
            .unwrap_err()
            .to_string()
            .contains("4096"));
        assert!(rules(":9-8 a:1").is_err());
    }

    #[test]
    fn check_prints_a_range_once_and_reads_back_the_same() {
        let line = "127.0.0.1:9000-9099 app:7000-7099,weight=2 one:80 --max-conns 5";
        let all = rules(line).unwrap();
        let printed = crate::config::Listing(&all).to_string();
        assert_eq!(printed.lines().count(), 1, "{printed}");
        assert!(printed.starts_with("127.0.0.1:9000-9099 app:7000-7099,weight=2 one:80 "));
        assert!(printed.trim_end().ends_with("# 100 ports"), "{printed}");
        let again = file::parse(printed.as_bytes(), "check", &RuleDraft::default()).unwrap();
        assert_eq!(again.rules, all);
        let again = crate::config::Listing(&again.rules).to_string();
        assert_eq!(again, printed);
    }

    #[test]
    fn unix_addresses_on_either_side() {
        if cfg!(unix) {
            let r = rule("unix:/tmp/a.sock 127.0.0.1:80").unwrap();
            assert_eq!(r.listen.to_string(), "unix:/tmp/a.sock");
            let r = rule(":80 unix:/run/app.sock").unwrap();
            assert!(r.to_string().starts_with(":80 unix:/run/app.sock "));
            let e = error("--connect unix:/tmp/p.sock");
            assert!(e.contains("Unix socket"), "{e}");
        } else {
            assert!(error("unix:/tmp/a.sock 127.0.0.1:80").contains("unix:"));
        }
        // A path with a space is quoted, and reads back as the same rule.
        let tokens = ["unix:/tmp/a b.sock", "127.0.0.1:80"];
        if let Ok(Command::Run(setup)) = parse_args(tokens.iter().map(OsString::from).collect()) {
            let printed = crate::config::Listing(&setup.rules).to_string();
            assert!(printed.starts_with("\"unix:/tmp/a b.sock\" "), "{printed}");
            let again = file::parse(printed.as_bytes(), "check", &RuleDraft::default()).unwrap();
            assert_eq!(again.rules, setup.rules);
        }
    }

    #[test]
    fn acceleration_options_read_back_as_the_same_rule() {
        use crate::sys::Keepalive;
        let r = rule(":1 a:1 --keepalive 30/5/3 --user-timeout 20s --source 127.0.0.2 --mss 1360")
            .unwrap();
        let k = r.options.keepalive.unwrap();
        assert_eq!((k.idle, k.interval, k.count), (secs(30), secs(5), 3));
        assert_eq!(r.options.user_timeout, Some(secs(20)));
        assert_eq!(r.options.source, Some("127.0.0.2".parse().unwrap()));
        let line = r.to_string();
        assert!(
            line.contains(" --keepalive 30s/5s/3 ")
                && line.ends_with(" --mss 1360 --user-timeout 20s --source 127.0.0.2"),
            "{line}"
        );
        assert_eq!(rule(&line).unwrap(), r);
        // Only the idle time given: the documented interval and count.
        let k = rule(":1 a:1 --keepalive 45")
            .unwrap()
            .options
            .keepalive
            .unwrap();
        assert_eq!(
            (k.interval, k.count),
            (Keepalive::INTERVAL, Keepalive::COUNT)
        );
        let r = rule(":1 a:1 --keepalive 45/2").unwrap();
        assert_eq!(r.options.keepalive.unwrap().count, Keepalive::COUNT);
        assert!(r.to_string().contains(" --keepalive 45s/2s/6 "));
        assert_eq!(
            rule(":1 a:1 --keepalive 0").unwrap().options.keepalive,
            None
        );
        assert_eq!(
            rule(":1 a:1 --user-timeout 0")
                .unwrap()
                .options
                .user_timeout,
            None
        );
        assert!(rule(":1 a:1 --source [::1]")
            .unwrap()
            .to_string()
            .contains(" --source ::1"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn congestion_per_leg_reads_back() {
        if std::env::var_os("TCPFWD_UNDER_QEMU").is_some() {
            // qemu-user hands setsockopt(TCP_CONGESTION) 4 bytes of the name (it reads every
            // TCP option as an int): "cubic" reaches the kernel as "cubi".
            return;
        }
        for (written, client, target, shown) in [
            ("reno", Some("reno"), Some("reno"), " --congestion reno"),
            (
                "target=reno",
                None,
                Some("reno"),
                " --congestion target=reno",
            ),
            (
                "client=reno",
                Some("reno"),
                None,
                " --congestion client=reno",
            ),
            (
                "client=reno,target=cubic",
                Some("reno"),
                Some("cubic"),
                " --congestion client=reno,target=cubic",
            ),
        ] {
            let r = rule(&format!(":1 a:1 --congestion {written}")).unwrap();
            assert_eq!(r.options.congestion.client.as_deref(), client, "{written}");
            assert_eq!(r.options.congestion.target.as_deref(), target, "{written}");
            assert!(r.to_string().contains(shown), "{written}: {r}");
            assert_eq!(rule(&r.to_string()).unwrap(), r);
        }
        // Given twice: each names the legs it sets.
        let r = rule(":1 a:1 --congestion target=cubic --congestion client=reno").unwrap();
        assert_eq!(r.options.congestion.client.as_deref(), Some("reno"));
        assert_eq!(r.options.congestion.target.as_deref(), Some("cubic"));
        assert!(r.options.client_leg().congestion.as_deref() == Some("reno"));
        assert!(r.options.target_leg().congestion.as_deref() == Some("cubic"));
    }

    #[test]
    fn acceleration_errors_name_the_option() {
        for (line, start) in [
            (":1 a:1 --keepalive 30/0", "--keepalive:"),
            (":1 a:1 --keepalive 30/5/0", "--keepalive:"),
            (":1 a:1 --keepalive 30/5/128", "--keepalive:"),
            (":1 a:1 --keepalive 40000", "--keepalive:"),
            (":1 a:1 --keepalive 0/5", "--keepalive:"),
            (":1 a:1 --keepalive 5/1/3/4", "--keepalive:"),
            (":1 a:1 --user-timeout 30d", "--user-timeout:"),
            (":1 a:1 --source 0.0.0.0", "--source:"),
            (":1 a:1 --source example.com", "--source:"),
            (":1 a:1 --congestion b/r", "--congestion:"),
            (":1 a:1 --congestion left=bbr", "--congestion:"),
            (
                ":1 a:1 --congestion client=bbr,client=reno",
                "--congestion:",
            ),
        ] {
            assert!(error(line).starts_with(start), "{line}: {}", error(line));
        }
        #[cfg(target_os = "linux")]
        {
            let e = error(":1 a:1 --congestion nosuchcc");
            assert!(
                e.starts_with("--congestion: 'nosuchcc' is not offered"),
                "{e}"
            );
            assert!(e.contains("available: ") && e.contains("reno"), "{e}");
        }
        #[cfg(not(target_os = "linux"))]
        for (option, name) in [
            ("--mss 1400", "--mss"),
            ("--congestion bbr", "--congestion"),
            ("--user-timeout 5s", "--user-timeout"),
            ("--source 127.0.0.2", "--source"),
            ("--keepalive 5/1/3", "--keepalive INTERVAL/COUNT"),
        ] {
            let e = error(&format!(":1 a:1 {option}"));
            assert_eq!(e, format!("{name} is supported on Linux only"));
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn help_and_version() {
        assert!(matches!(parse_args(args("--help")), Ok(Command::Help)));
        assert!(matches!(
            parse_args(args(":1 a:1 -V")),
            Ok(Command::Version)
        ));
        for option in [
            "--balance",
            "--connect-timeout",
            "--idle-timeout",
            "--fin-timeout",
            "--keepalive",
            "--max-conns",
            "--backlog",
            "--allow",
            "--deny",
            "--buffer-size",
            "--segment-size",
            "--mss",
            "--congestion",
            "--user-timeout",
            "--source",
            "--nagle",
            "--proxy-protocol",
            "--accept-proxy",
            "--health-interval",
            "--down-after",
            "--down-for",
            "--connect-ports",
            "--connect-allow",
            "--connect-deny",
            "--auth",
            "--stats",
            "--grace",
            "--config",
            "--check",
        ] {
            assert!(HELP.contains(option), "--help misses {option}");
        }
        assert!(HELP.lines().count() <= 50, "--help must fit one screen");
    }
}
