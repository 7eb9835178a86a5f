//! Go's `time.Duration` text: the one parser and formatter for every duration flag in proxylab.
//!
//! The programs proxylab replaces are written in Go, and their duration flags (`kubectl proxy
//! --keepalive`, kube-proxy's `--udp-timeout`, kube-apiserver's timeouts) go through
//! `time.ParseDuration`, and print their values with `Duration.String`. A script written for them
//! passes `15m0s` (what `--help` prints back), `1h2m3.5s`, `500ms` or `-1s`; a drop-in has to take
//! exactly those and refuse exactly what Go refuses — notably a bare `30`, which is an error in Go
//! ("missing unit") and not thirty seconds.
//!
//! The grammar, as Go's `ParseDuration` reads it:
//!
//! ```text
//!  duration = [ "-" | "+" ] ( "0" | component { component } )
//!  component = decimal unit           decimal = digits [ "." [ digits ] ] | "." digits
//!  unit      = "ns" | "us" | "µs" (U+00B5) | "μs" (U+03BC) | "ms" | "s" | "m" | "h"
//! ```
//!
//! - the value is a signed count of nanoseconds (`i64`): ±292 years, anything beyond is an error;
//! - no spaces anywhere, no exponent, no `d` for days; `0` is the only number allowed without a unit;
//! - a fraction is exact to the nanosecond except where Go itself rounds (Go converts the fraction of
//!   one component through a `float64`; so does this module, so both agree on every input).
//!
//! [`GoDuration`] holds such a value (it can be negative: Go gives `-1s` a meaning in several places,
//! e.g. a negative dialer keep-alive turns keep-alives off). [`parse`] and [`GoDuration::to_string`]
//! are Go's `ParseDuration` and `String`; [`parse_std`] is the one a flag that cannot be negative
//! uses as its clap `value_parser`, and [`format`] prints a [`std::time::Duration`] as Go would
//! (`15m0s`, `1h0m0s`, `1.5s`, `500ms`, `0s`). The error messages are Go's, word for word.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

const NANOSECOND: u64 = 1;
const MICROSECOND: u64 = 1_000 * NANOSECOND;
const MILLISECOND: u64 = 1_000 * MICROSECOND;
const SECOND: u64 = 1_000 * MILLISECOND;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;

/// 2^63: the magnitude of the most negative duration, one more than the largest positive one.
const LIMIT: u64 = 1 << 63;

/// A Go `time.Duration`: a signed number of nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(i64);

impl GoDuration {
    /// Zero.
    pub const ZERO: Self = Self(0);

    /// From a count of nanoseconds.
    pub const fn from_nanos(nanos: i64) -> Self {
        Self(nanos)
    }

    /// The count of nanoseconds.
    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// Whether it is below zero.
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// Whether it is zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// As a [`Duration`], or `None` when negative (a `Duration` cannot be).
    pub fn to_std(self) -> Option<Duration> {
        u64::try_from(self.0).ok().map(Duration::from_nanos)
    }

    /// From a [`Duration`], or `None` beyond Go's largest duration (about 292 years).
    pub fn from_std(d: Duration) -> Option<Self> {
        i64::try_from(d.as_nanos()).ok().map(Self)
    }
}

impl From<GoDuration> for i64 {
    fn from(d: GoDuration) -> i64 {
        d.0
    }
}

/// Why a string is not a Go duration. The messages are Go's `time.ParseDuration` errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not the duration grammar (empty, a stray character, no digits), or out of range.
    #[error("time: invalid duration {}", quote(.0))]
    Invalid(String),
    /// A number without a unit, other than `0` (`30`, `1h30`).
    #[error("time: missing unit in duration {}", quote(.0))]
    MissingUnit(String),
    /// A unit Go does not know (`d`, `sec`, `S`).
    #[error("time: unknown unit {} in duration {}", quote(.unit), quote(.input))]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The whole input.
        input: String,
    },
    /// A negative duration where only zero or more makes sense ([`parse_std`]).
    #[error("negative duration {} is not allowed here", quote(.0))]
    Negative(String),
}

/// Go's `strconv.Quote` for what these messages quote: printable text as is, in double quotes, with
/// `"` and `\` escaped and anything else as an escape.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => NANOSECOND,
        "us" | "\u{b5}s" | "\u{3bc}s" => MICROSECOND,
        "ms" => MILLISECOND,
        "s" => SECOND,
        "m" => MINUTE,
        "h" => HOUR,
        _ => return None,
    })
}

/// Go's `time.ParseDuration`. See the module docs for the grammar.
pub fn parse(input: &str) -> Result<GoDuration, DurationError> {
    let invalid = || DurationError::Invalid(input.to_owned());
    let mut s = input;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(GoDuration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        // The next character must be [0-9.]
        if !s.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        // [0-9]*
        let int_len = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let mut value = leading_int(&s[..int_len]).ok_or_else(invalid)?;
        s = &s[int_len..];
        // (\.[0-9]*)?
        let mut fraction = None;
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            fraction = Some(leading_fraction(&rest[..frac_len]));
            s = &rest[frac_len..];
            if int_len == 0 && frac_len == 0 {
                // ".s", "-.s": no digits at all
                return Err(invalid());
            }
        }
        // The unit: everything up to the next digit or '.'.
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(DurationError::MissingUnit(input.to_owned()));
        }
        let (unit, rest) = s.split_at(unit_len);
        s = rest;
        let unit = unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit {
            unit: unit.to_owned(),
            input: input.to_owned(),
        })?;
        if value > LIMIT / unit {
            return Err(invalid());
        }
        value *= unit;
        if let Some((f, scale)) = fraction
            && f > 0
        {
            // As Go: through a float64, which is nanosecond-exact for fractions of an hour.
            value += (f as f64 * (unit as f64 / scale)) as u64;
            if value > LIMIT {
                return Err(invalid());
            }
        }
        total += value;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if negative {
        // total ≤ 2^63, so -total fits: 2^63 itself is i64::MIN.
        Ok(GoDuration((total as i64).wrapping_neg()))
    } else if total > i64::MAX as u64 {
        Err(invalid())
    } else {
        Ok(GoDuration(total as i64))
    }
}

/// The integer part of a component: `None` past 2^63 (Go's overflow rule).
fn leading_int(digits: &str) -> Option<u64> {
    let mut x: u64 = 0;
    for b in digits.bytes() {
        if x > LIMIT / 10 {
            return None;
        }
        x = x * 10 + u64::from(b - b'0');
        if x > LIMIT {
            return None;
        }
    }
    Some(x)
}

/// The fraction of a component as (digits, 10^count), precision dropped past 2^63 rather than an
/// error (Go's rule: a long fraction is not wrong, it is just more precise than a nanosecond).
fn leading_fraction(digits: &str) -> (u64, f64) {
    let mut x: u64 = 0;
    let mut scale = 1f64;
    for b in digits.bytes() {
        if x > (LIMIT - 1) / 10 {
            break;
        }
        let y = x * 10 + u64::from(b - b'0');
        if y > LIMIT {
            break;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale)
}

/// [`parse`] for a value that cannot be negative: a [`Duration`], and [`DurationError::Negative`]
/// for `-1s`. The `value_parser` of every such duration flag.
pub fn parse_std(input: &str) -> Result<Duration, DurationError> {
    parse(input)?
        .to_std()
        .ok_or_else(|| DurationError::Negative(input.to_owned()))
}

/// A [`Duration`] as Go prints it (`15m0s`); one beyond Go's range prints as the largest Go duration.
pub fn format(d: Duration) -> String {
    GoDuration::from_std(d)
        .unwrap_or(GoDuration(i64::MAX))
        .to_string()
}

impl FromStr for GoDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// Go's `Duration.String`: `72h3m0.5s`, `1.5s`, `500ms`, `1µs`, `0s`, `-1m0s`.
impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut u = self.0.unsigned_abs();
        // Built right to left, as Go does: the longest is "-2562047h47m16.854775808s".
        let mut buf = [0u8; 32];
        let mut w = buf.len();
        let mut put = |w: &mut usize, bytes: &[u8]| {
            *w -= bytes.len();
            buf[*w..*w + bytes.len()].copy_from_slice(bytes);
        };
        if u < SECOND {
            // Below a second, a smaller unit: 1.2ms, 3µs, 40ns.
            let prec;
            put(&mut w, b"s");
            if u == 0 {
                return f.write_str("0s");
            } else if u < MICROSECOND {
                prec = 0;
                put(&mut w, b"n");
            } else if u < MILLISECOND {
                prec = 3;
                put(&mut w, "\u{b5}".as_bytes());
            } else {
                prec = 6;
                put(&mut w, b"m");
            }
            let (frac, rest) = fraction_digits(u, prec);
            put(&mut w, frac.as_bytes());
            put(&mut w, rest.to_string().as_bytes());
        } else {
            put(&mut w, b"s");
            let (frac, secs) = fraction_digits(u, 9);
            put(&mut w, frac.as_bytes());
            u = secs;
            put(&mut w, (u % 60).to_string().as_bytes());
            u /= 60;
            if u > 0 {
                put(&mut w, b"m");
                put(&mut w, (u % 60).to_string().as_bytes());
                u /= 60;
                // Hours are the largest unit: days are not all the same length.
                if u > 0 {
                    put(&mut w, b"h");
                    put(&mut w, u.to_string().as_bytes());
                }
            }
        }
        if self.0 < 0 {
            put(&mut w, b"-");
        }
        // Only ASCII and 'µ' were written.
        f.write_str(std::str::from_utf8(&buf[w..]).unwrap_or_default())
    }
}

/// Go's `fmtFrac`: the `prec` low decimal digits of `v` as ".123" without trailing zeros (nothing at
/// all when they are all zero), and `v / 10^prec`.
fn fraction_digits(mut v: u64, prec: u32) -> (String, u64) {
    let mut digits = Vec::new();
    let mut print = false;
    for _ in 0..prec {
        let digit = (v % 10) as u8;
        print = print || digit != 0;
        if print {
            digits.push(b'0' + digit);
        }
        v /= 10;
    }
    if print {
        digits.push(b'.');
    }
    digits.reverse();
    (String::from_utf8(digits).unwrap_or_default(), v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NS: i64 = 1;
    const US: i64 = 1_000;
    const MS: i64 = 1_000_000;
    const S: i64 = 1_000_000_000;
    const M: i64 = 60 * S;
    const H: i64 = 60 * M;

    /// Go's own table (`time_test.go`, `parseDurationTests`).
    #[test]
    fn parses_what_go_parses() {
        let cases: &[(&str, i64)] = &[
            ("0", 0),
            ("5s", 5 * S),
            ("30s", 30 * S),
            ("1478s", 1478 * S),
            ("-5s", -5 * S),
            ("+5s", 5 * S),
            ("-0", 0),
            ("+0", 0),
            ("5.0s", 5 * S),
            ("5.6s", 5 * S + 600 * MS),
            ("5.s", 5 * S),
            (".5s", 500 * MS),
            ("1.0s", S),
            ("1.00s", S),
            ("1.004s", S + 4 * MS),
            ("1.0040s", S + 4 * MS),
            ("100.00100s", 100 * S + MS),
            ("10ns", 10 * NS),
            ("11us", 11 * US),
            ("12\u{b5}s", 12 * US),
            ("12\u{3bc}s", 12 * US),
            ("13ms", 13 * MS),
            ("14s", 14 * S),
            ("15m", 15 * M),
            ("16h", 16 * H),
            ("3h30m", 3 * H + 30 * M),
            ("10.5s4m", 4 * M + 10 * S + 500 * MS),
            ("-2m3.4s", -(2 * M + 3 * S + 400 * MS)),
            (
                "1h2m3s4ms5us6ns",
                H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS,
            ),
            ("39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS),
            ("52763797000ns", 52_763_797_000),
            ("0.3333333333333333333h", 20 * M),
            ("9007199254740993ns", (1 << 53) + 1),
            ("9223372036854775807ns", i64::MAX),
            ("9223372036854775.807us", i64::MAX),
            ("9223372036s854ms775us807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("-9223372036854775.808us", i64::MIN),
            ("-9223372036s854ms775us808ns", i64::MIN),
            ("-2562047h47m16.854775808s", i64::MIN),
            ("0.100000000000000000000h", 6 * M),
            ("0.830103483285477580700h", 49 * M + 48 * S + 372_539_827),
            // The ones proxylab's users write.
            ("15m0s", 15 * M),
            ("1h2m3.5s", H + 2 * M + 3 * S + 500 * MS),
            ("500ms", 500 * MS),
            ("1us", US),
            ("1\u{b5}s", US),
            ("-1s", -S),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), Ok(GoDuration(*want)), "{input:?}");
        }
    }

    /// Go's error table (`parseDurationErrorTests`), with Go's messages.
    #[test]
    fn refuses_what_go_refuses() {
        for input in [
            "",
            "-",
            "s",
            ".",
            "-.",
            ".s",
            "+.s",
            "\u{fffd}",
            "9223372036854775810ns",
            "9223372036854775808ns",
            "-9223372036854775809ns",
            "9223372036854776us",
            "3000000h",
            "9223372036854775.808us",
            "9223372036854ms775us808ns",
            " 1s",
            "1s ",
            "1e3s",
        ] {
            let err = parse(input).unwrap_err();
            assert!(
                matches!(
                    err,
                    DurationError::Invalid(_) | DurationError::UnknownUnit { .. }
                ),
                "{input:?}: {err:?}"
            );
        }
        assert_eq!(
            parse("3").unwrap_err().to_string(),
            r#"time: missing unit in duration "3""#
        );
        assert_eq!(
            parse("30").unwrap_err().to_string(),
            r#"time: missing unit in duration "30""#
        );
        assert_eq!(
            parse("1h30").unwrap_err().to_string(),
            r#"time: missing unit in duration "1h30""#
        );
        assert_eq!(
            parse("1d").unwrap_err().to_string(),
            r#"time: unknown unit "d" in duration "1d""#
        );
        assert_eq!(
            parse("").unwrap_err().to_string(),
            r#"time: invalid duration """#
        );
        assert_eq!(
            parse_std("-1s").unwrap_err().to_string(),
            r#"negative duration "-1s" is not allowed here"#
        );
        assert_eq!(parse_std("-0"), Ok(Duration::ZERO));
        assert_eq!(parse_std("15m0s"), Ok(Duration::from_secs(900)));
    }

    /// Go's `Duration.String` table (`durationTests`).
    #[test]
    fn formats_as_go() {
        let cases: &[(i64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1100, "1.1\u{b5}s"),
            (2200 * US, "2.2ms"),
            (3300 * MS, "3.3s"),
            (4 * M + 5 * S, "4m5s"),
            (4 * M + 5001 * MS, "4m5.001s"),
            (5 * H + 6 * M + 7001 * MS, "5h6m7.001s"),
            (8 * M + 1, "8m0.000000001s"),
            (i64::MAX, "2562047h47m16.854775807s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
            (15 * M, "15m0s"),
            (H, "1h0m0s"),
            (-S, "-1s"),
            (500 * MS, "500ms"),
        ];
        for (nanos, want) in cases {
            assert_eq!(GoDuration(*nanos).to_string(), *want, "{nanos}");
        }
        assert_eq!(format(Duration::from_secs(900)), "15m0s");
        assert_eq!(format(Duration::MAX), "2562047h47m16.854775807s");
    }

    fn unit_strategy() -> impl Strategy<Value = (&'static str, i64)> {
        prop_oneof![
            Just(("ns", NS)),
            Just(("us", US)),
            Just(("\u{b5}s", US)),
            Just(("ms", MS)),
            Just(("s", S)),
            Just(("m", M)),
            Just(("h", H)),
        ]
    }

    proptest! {
        /// Whatever Go prints, Go (and this module) parses back to the same value.
        #[test]
        fn format_then_parse_is_identity(n in any::<i64>()) {
            let d = GoDuration(n);
            prop_assert_eq!(parse(&d.to_string()), Ok(d));
        }

        /// A sum of integer components is the exact sum, in any order and with either sign.
        #[test]
        fn integer_components_add_up(
            parts in prop::collection::vec((0u32..100_000, unit_strategy()), 1..6),
            negative in any::<bool>(),
        ) {
            let mut text = String::from(if negative { "-" } else { "" });
            let mut want: i128 = 0;
            for (n, (unit, nanos)) in &parts {
                text.push_str(&format!("{n}{unit}"));
                want += i128::from(*n) * i128::from(*nanos);
            }
            if negative {
                want = -want;
            }
            prop_assert_eq!(parse(&text), Ok(GoDuration(want as i64)));
        }

        /// Milliseconds written as fractional seconds are exact.
        #[test]
        fn millisecond_fractions_are_exact(secs in 0u32..1_000_000, millis in 0u32..1000) {
            let text = format!("{secs}.{millis:03}s");
            let want = i64::from(secs) * S + i64::from(millis) * MS;
            prop_assert_eq!(parse(&text), Ok(GoDuration(want)));
        }

        /// A number without a unit is refused (except 0), never read as seconds. (Past 2^63 it is
        /// "invalid" instead, as in Go.)
        #[test]
        fn bare_numbers_are_refused(n in 1u64..=LIMIT) {
            let text = n.to_string();
            prop_assert_eq!(parse(&text), Err(DurationError::MissingUnit(text.clone())));
        }

        /// Arbitrary text never panics, and anything accepted prints back to an equal value.
        #[test]
        fn arbitrary_text_is_handled(s in "[-+0-9.a-zµμ ]{0,12}") {
            if let Ok(d) = parse(&s) {
                prop_assert_eq!(parse(&d.to_string()), Ok(d));
            }
        }
    }
}
