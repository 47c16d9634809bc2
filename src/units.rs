//! Durations (`250ms`, `5s`, `1.5s`, `2m`, `1h`, bare seconds) and sizes (`1500`, `16k`, `1m`).

use std::fmt;
use std::time::Duration;

/// Parses a duration as the SPEC writes it. A bare number is seconds (nginx's convention).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit_ms) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3_600_000.0)
    } else {
        (text, 1_000.0)
    };
    let value = parse_decimal(number)
        .ok_or_else(|| format!("'{text}' is not a duration (examples: 250ms, 5s, 1.5s, 2m, 1h)"))?;
    let ms = value * unit_ms;
    // A year is far beyond any sensible timeout, and keeps the arithmetic exact.
    if ms > 365.0 * 86_400_000.0 {
        return Err(format!("'{text}' is too long a duration"));
    }
    Ok(Duration::from_micros((ms * 1_000.0).round() as u64))
}

/// Parses a non-negative decimal number without exponent or sign.
fn parse_decimal(text: &str) -> Option<f64> {
    let digits_ok = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_digit() || c == '.')
        && text.matches('.').count() <= 1
        && text != ".";
    digits_ok.then(|| text.parse().ok()).flatten()
}

/// Parses a size in bytes; `k` and `m` are 1024-based.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let lower = text.to_ascii_lowercase();
    let (number, factor) = if let Some(n) = lower.strip_suffix('k') {
        (n, 1024)
    } else if let Some(n) = lower.strip_suffix('m') {
        (n, 1024 * 1024)
    } else {
        (lower.as_str(), 1)
    };
    let bad = || format!("'{text}' is not a size (examples: 1500, 16k, 1m)");
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(bad)
}

/// Shows a duration the way the parser reads it back (`250ms`, `5s`, `1.5s`, `2m`).
pub struct ShowDuration(pub Duration);

impl fmt::Display for ShowDuration {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            write!(f, "0")
        } else if ms % 3_600_000 == 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms % 60_000 == 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms % 1_000 == 0 {
            write!(f, "{}s", ms / 1_000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// Shows a size the way the parser reads it back (`16k`, `1m`, `1500`).
pub struct ShowSize(pub usize);

impl fmt::Display for ShowSize {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.0 {
            0 => write!(f, "0"),
            n if n % (1024 * 1024) == 0 => write!(f, "{}m", n / (1024 * 1024)),
            n if n % 1024 == 0 => write!(f, "{}k", n / 1024),
            n => write!(f, "{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ms = |n| Duration::from_millis(n);
        assert_eq!(parse_duration("250ms"), Ok(ms(250)));
        assert_eq!(parse_duration("5s"), Ok(ms(5_000)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1_500)));
        assert_eq!(parse_duration("2m"), Ok(ms(120_000)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration("30"), Ok(ms(30_000)));
        assert_eq!(parse_duration("0"), Ok(ms(0)));
        for bad in [
            "",
            "s",
            "-1s",
            "1e3",
            "5x",
            "1..5s",
            ".",
            "1 s",
            "99999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1500"), Ok(1500));
        assert_eq!(parse_size("16k"), Ok(16 * 1024));
        assert_eq!(parse_size("16K"), Ok(16 * 1024));
        assert_eq!(parse_size("1m"), Ok(1024 * 1024));
        for bad in ["", "k", "-1", "1.5k", "16kb", "99999999999999999999m"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn shown_values_parse_back() {
        for text in ["250ms", "5s", "1500ms", "2m", "1h", "0"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&ShowDuration(d).to_string()), Ok(d));
        }
        assert_eq!(ShowSize(16 * 1024).to_string(), "16k");
        assert_eq!(ShowSize(1500).to_string(), "1500");
        assert_eq!(ShowSize(1024 * 1024).to_string(), "1m");
    }
}
