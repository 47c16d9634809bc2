//! Durations (`250ms`, `5s`, `1.5s`, `2m`, `1h`, bare seconds) and sizes (`1500`, `16k`, `1m`).

use std::fmt;
use std::time::Duration;

/// Parses a duration as the SPEC writes it. A bare number is seconds (nginx's convention).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const MS: u64 = 1_000; // in microseconds
    let (number, unit) = if let Some(n) = text.strip_suffix("ms") {
        (n, MS)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000 * MS)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000 * MS)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3_600_000 * MS)
    } else {
        (text, 1_000 * MS)
    };
    let micros = parse_decimal(number, unit)
        .ok_or_else(|| format!("'{text}' is not a duration (examples: 250ms, 5s, 1.5s, 2m, 1h)"))?;
    // A year is far beyond any sensible timeout.
    match micros {
        Some(us) if us <= 365 * 86_400_000 * MS => Ok(Duration::from_micros(us)),
        _ => Err(format!("'{text}' is too long a duration")),
    }
}

/// Parses a non-negative decimal number without exponent or sign (`5`, `1.5`, `.5`, `5.`)
/// and multiplies it by `unit`, rounding to the nearest integer: `None` when the text is not
/// such a number, `Some(None)` when the product does not fit.
///
/// Integer arithmetic on purpose: `str::parse::<f64>` alone adds about 20 KB of tables and
/// code to the binary, a tenth of it on a router.
fn parse_decimal(text: &str, unit: u64) -> Option<Option<u64>> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if whole.len() + fraction.len() == 0 || !digits(whole) || !digits(fraction) {
        return None;
    }
    let mut total = Some(0u64);
    for b in whole.bytes() {
        total = total.and_then(|t| t.checked_mul(10)?.checked_add(u64::from(b - b'0')));
    }
    let total = total.and_then(|t| t.checked_mul(unit));
    // Nine fraction digits are below a microsecond for every unit (an hour is 3.6e9 us), and
    // keep `fraction * unit` (< 1e9 * 3.6e9) inside u64.
    let fraction = fraction.get(..fraction.len().min(9)).unwrap_or("");
    let mut scale = 1u64;
    let mut part = 0u64;
    for b in fraction.bytes() {
        scale *= 10;
        part = part * 10 + u64::from(b - b'0');
    }
    let part = (part.saturating_mul(unit) + scale / 2) / scale;
    Some(total.and_then(|t| t.checked_add(part)))
}

/// A duration in whole milliseconds, without the u128 arithmetic of `Duration::as_millis`
/// (which costs code on 32-bit targets).
pub fn millis(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000)
        .saturating_add(u64::from(d.subsec_millis()))
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
        let ms = millis(self.0);
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
        assert_eq!(parse_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_duration("5."), Ok(ms(5_000)));
        assert_eq!(parse_duration("0.25m"), Ok(ms(15_000)));
        assert_eq!(parse_duration("1.0005ms"), Ok(Duration::from_micros(1_001)));
        assert_eq!(
            parse_duration("0.1234567891234s"),
            Ok(Duration::from_micros(123_457))
        );
        assert_eq!(parse_duration("8760h"), Ok(ms(8760 * 3_600_000)));
        assert!(parse_duration("8761h").is_err());
        assert!(parse_duration("99999999999999999999999s").is_err());
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
            "1.5.s",
            "+1s",
            "1.-5s",
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
