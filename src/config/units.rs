//! Durations (`250ms`, `5s`, `1.5s`, `2m`, `1h`, bare seconds) and sizes (`1500`, `16k`, `1m`).

use std::fmt;
use std::time::Duration;

/// The longest duration any option takes: a year is far beyond any sensible timeout.
const MAX_MS: u64 = 365 * 86_400_000;

/// At most this many digits after the decimal point (a millisecond of an hour needs 7).
const MAX_FRACTION_DIGITS: usize = 9;

/// Parses a duration as the SPEC writes it. A bare number is seconds (nginx's convention).
/// Every duration has millisecond precision: finer fractions round to the nearest
/// millisecond, and a duration above 0 but below a millisecond is an error, so what
/// `--check` prints is exactly what is used.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (text, 1_000)
    };
    let bad = || format!("'{text}' is not a duration (examples: 250ms, 5s, 1.5s, 2m, 1h)");
    match parse_decimal(number, unit).ok_or_else(bad)? {
        Millis::Exact(ms) if ms > MAX_MS => Err(format!("'{text}' is longer than a year")),
        Millis::Exact(ms) => Ok(Duration::from_millis(ms)),
        Millis::TooLong => Err(format!("'{text}' is longer than a year")),
        Millis::TooFine => Err(format!(
            "'{text}' is less than a millisecond, the precision of every duration"
        )),
        Millis::TooManyDigits => Err(format!(
            "'{text}': at most {MAX_FRACTION_DIGITS} digits after the point"
        )),
    }
}

/// A decimal number of some unit, in milliseconds.
enum Millis {
    /// Rounded to the nearest millisecond (at most [`MAX_MS`], or one more).
    Exact(u64),
    /// More than [`MAX_MS`], exactly.
    TooLong,
    /// More than 0, less than a millisecond.
    TooFine,
    /// More than [`MAX_FRACTION_DIGITS`] after the point.
    TooManyDigits,
}

/// Parses a non-negative decimal number without exponent or sign (`5`, `1.5`, `.5`, `5.`)
/// of `unit` milliseconds: `None` when the text is not such a number.
///
/// Integer arithmetic on purpose: `str::parse::<f64>` alone adds about 20 KB of tables and
/// code to the binary, a tenth of it on a router.
fn parse_decimal(text: &str, unit: u64) -> Option<Millis> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if whole.len() + fraction.len() == 0 || !digits(whole) || !digits(fraction) {
        return None;
    }
    if fraction.len() > MAX_FRACTION_DIGITS {
        return Some(Millis::TooManyDigits);
    }
    let mut total = Some(0u64);
    for b in whole.bytes() {
        total = total.and_then(|t| t.checked_mul(10)?.checked_add(u64::from(b - b'0')));
    }
    let Some(total) = total.and_then(|t| t.checked_mul(unit)) else {
        return Some(Millis::TooLong);
    };
    // The fraction exactly: `part` ms and `rest / scale` of one more (part * scale < 1e9 *
    // 3.6e6: inside u64).
    let mut scale = 1u64;
    let mut fraction_value = 0u64;
    for b in fraction.bytes() {
        scale *= 10;
        fraction_value = fraction_value * 10 + u64::from(b - b'0');
    }
    let product = fraction_value * unit;
    let (part, rest) = (product / scale, product % scale);
    let exact = total.saturating_add(part);
    Some(if exact > MAX_MS || (exact == MAX_MS && rest > 0) {
        Millis::TooLong
    } else if exact == 0 && rest > 0 {
        Millis::TooFine
    } else {
        Millis::Exact(exact + u64::from(rest * 2 >= scale && rest > 0))
    })
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
        // Millisecond precision: finer fractions round, less than one is an error.
        assert_eq!(parse_duration("1.0005ms"), Ok(ms(1)));
        assert_eq!(parse_duration("1.5ms"), Ok(ms(2)));
        assert_eq!(parse_duration("0.123456789s"), Ok(ms(123)));
        assert_eq!(parse_duration("0.0000003h"), Ok(ms(1)));
        assert_eq!(
            parse_duration("0.000000001s"),
            Err(
                "'0.000000001s' is less than a millisecond, the precision of every duration".into()
            )
        );
        assert!(parse_duration(".5ms")
            .unwrap_err()
            .contains("less than a millisecond"));
        assert!(parse_duration("0.9ms").is_err());
        assert!(parse_duration("0.1234567891234s")
            .unwrap_err()
            .contains("at most 9 digits"));
        assert_eq!(parse_duration("8760h"), Ok(ms(8760 * 3_600_000)));
        assert_eq!(parse_duration("0.000h"), Ok(ms(0)));
        assert!(parse_duration("8761h").is_err());
        // A year and a nanosecond of an hour is more than a year, exactly.
        assert!(parse_duration("8760.000000001h")
            .unwrap_err()
            .contains("longer than a year"));
        assert!(parse_duration("8759.9999999h").is_ok());
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
        for text in [
            "250ms", "5s", "1500ms", "2m", "1h", "0", "1ms", "8760h", "61001ms",
        ] {
            let d = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&ShowDuration(d).to_string()), Ok(d));
        }
        assert_eq!(ShowSize(16 * 1024).to_string(), "16k");
        assert_eq!(ShowSize(1500).to_string(), "1500");
        assert_eq!(ShowSize(1024 * 1024).to_string(), "1m");
    }
}
