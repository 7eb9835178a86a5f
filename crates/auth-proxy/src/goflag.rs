//! Go's command-line syntax, as kubectl's flag library (spf13/pflag, klog) reads it, so that a
//! command line written for `kubectl proxy` means the same to `auth-proxy`.
//!
//! What pflag accepts and clap does not by itself, and how each is handled here:
//!
//! | pflag | here |
//! |---|---|
//! | booleans: `--f`, `--f=true`, `--f=0`, `--f=F` (`strconv.ParseBool`); `--f false` is `--f` plus a stray argument | [`parse_bool`] with `require_equals`, the stray argument collected and warned about |
//! | integers with Go's prefixes and `_` separators: `--port=0x1F41`, `-p 0o17`, `-p 1_0` | [`parse_int`] (`strconv.ParseInt(s, 0, 64)`) |
//! | `-v` is klog's level: base 10, 32 bits, negative allowed | [`parse_level`] |
//! | a flag's value may start with `-`: `-p -1`, `--accept-paths -x` | `allow_hyphen_values` on every valued flag |
//! | a flag given twice: the last one wins (lists append) | `args_override_self` on the command |
//! | `_` and `-` are the same in a long flag name: `--accept_hosts` | [`normalize_word_separators`] before clap |
//! | `--request-timeout`: a bare integer is seconds, else a Go duration | [`parse_request_timeout`] |
//! | `--vmodule=pattern=N,…` | [`parse_vmodule`], klog's syntax check |
//!
//! Durations are [`proxylab_core::duration`] (Go's `time.ParseDuration`).

use std::ffi::OsString;

use proxylab_core::duration::{self, GoDuration};

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("strconv.ParseBool: parsing {s:?}: invalid syntax")),
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`: an optional sign, then `0x`/`0o`/`0b` or a leading `0` (octal)
/// choose the base, and `_` may separate digits (only with such a prefix-chosen base, as in Go).
pub fn parse_int(s: &str) -> Result<i64, String> {
    let syntax = || format!("strconv.ParseInt: parsing {s:?}: invalid syntax");
    let range = || format!("strconv.ParseInt: parsing {s:?}: value out of range");
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return Err(syntax());
    }
    let lower = body.to_ascii_lowercase();
    let (base, digits) = if lower.len() >= 3 && lower.starts_with("0x") {
        (16, &body[2..])
    } else if lower.len() >= 3 && lower.starts_with("0o") {
        (8, &body[2..])
    } else if lower.len() >= 3 && lower.starts_with("0b") {
        (2, &body[2..])
    } else if let Some(octal) = body.strip_prefix('0') {
        (8, octal)
    } else {
        (10, body)
    };
    let mut value: u64 = 0;
    let mut underscores = false;
    for c in digits.chars() {
        if c == '_' {
            underscores = true;
            continue;
        }
        let d = c.to_digit(base).ok_or_else(syntax)?;
        value = value
            .checked_mul(u64::from(base))
            .and_then(|v| v.checked_add(u64::from(d)))
            .ok_or_else(range)?;
    }
    if underscores && !underscore_ok(s) {
        return Err(syntax());
    }
    if negative {
        if value > 1 << 63 {
            return Err(range());
        }
        Ok((value as i64).wrapping_neg())
    } else {
        i64::try_from(value).map_err(|_| range())
    }
}

/// Go's `underscoreOK`: each `_` sits between two digits (a base prefix counts as a digit).
fn underscore_ok(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s).as_bytes();
    // What the previous character was: '^' start, '0' a digit or base prefix, '_', '!' other.
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if s.len() >= 2 && s[0] == b'0' && matches!(s[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = s[1].eq_ignore_ascii_case(&b'x');
    }
    while i < s.len() {
        let c = s[i];
        i += 1;
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
    }
    saw != b'_'
}

/// `--port`: a Go integer that must be a TCP port (kubectl finds out when it listens; here at once).
pub fn parse_port(s: &str) -> Result<u16, String> {
    let n = parse_int(s)?;
    u16::try_from(n).map_err(|_| format!("{n} is not a port (0 to 65535; 0 picks a free one)"))
}

/// klog's `-v`: `strconv.ParseInt(s, 10, 32)`.
pub fn parse_level(s: &str) -> Result<i32, String> {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.ParseInt: parsing {s:?}: invalid syntax"));
    }
    s.parse::<i32>()
        .map_err(|_| format!("strconv.ParseInt: parsing {s:?}: value out of range"))
}

/// kubectl's `--request-timeout` (client-go `ParseTimeout`): a non-negative integer is seconds,
/// anything else a Go duration.
pub fn parse_request_timeout(s: &str) -> Result<GoDuration, String> {
    const HINT: &str = "Invalid timeout value. Timeout must be a single integer in seconds, or an \
                        integer followed by a corresponding time unit (e.g. 1s | 2m | 3h)";
    if let Ok(secs) = s.parse::<i64>()
        && secs >= 0
    {
        return secs
            .checked_mul(1_000_000_000)
            .map(GoDuration::from_nanos)
            .ok_or_else(|| HINT.to_owned());
    }
    duration::parse(s).map_err(|_| HINT.to_owned())
}

/// A Go duration flag that may be negative (`--log-flush-frequency`).
pub fn parse_duration(s: &str) -> Result<GoDuration, String> {
    duration::parse(s).map_err(|e| e.to_string())
}

/// `--keepalive`: a Go duration; zero or negative turns TCP keep-alive off (see `docs/auth-proxy.md`).
pub fn parse_keepalive(s: &str) -> Result<std::time::Duration, String> {
    let d = duration::parse(s).map_err(|e| e.to_string())?;
    Ok(d.to_std().unwrap_or_default())
}

/// klog's `--vmodule` check: a comma-separated list of `pattern=N`, N a non-negative integer.
pub fn parse_vmodule(s: &str) -> Result<String, String> {
    const SYNTAX: &str = "syntax error: expect comma-separated list of filename=N";
    for pat in s.split(',').filter(|p| !p.is_empty()) {
        let parts: Vec<&str> = pat.split('=').collect();
        let [pattern, level] = parts[..] else {
            return Err(SYNTAX.into());
        };
        if pattern.is_empty() || level.is_empty() {
            return Err(SYNTAX.into());
        }
        let level = parse_level(level).map_err(|_| SYNTAX.to_owned())?;
        if level < 0 {
            return Err("negative value for vmodule level".into());
        }
    }
    Ok(s.to_owned())
}

/// kubectl's `--profile` names.
pub const PROFILES: &[&str] = &[
    "none",
    "cpu",
    "heap",
    "goroutine",
    "threadcreate",
    "block",
    "mutex",
];

/// `--profile`: one of [`PROFILES`], as kubectl checks before running a command.
pub fn parse_profile(s: &str) -> Result<String, String> {
    if PROFILES.contains(&s) {
        Ok(s.to_owned())
    } else {
        Err(format!("unknown profile '{s}'"))
    }
}

/// kubectl's flag-name normalisation (`WordSepNormalizeFunc`): `_` in a long flag's name is `-`, so
/// `--accept_hosts=x` is `--accept-hosts=x`. Values are left alone: the argument after a flag that
/// takes one (`--token --not_a_flag`) is that flag's value, as pflag reads it. Stops at `--`.
pub fn normalize_word_separators(args: Vec<OsString>, cmd: &clap::Command) -> Vec<OsString> {
    let takes_value = |arg: Option<&clap::Arg>| {
        arg.is_some_and(|a| a.get_action().takes_values() && !a.is_require_equals_set())
    };
    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.into_iter();
    if let Some(program) = iter.next() {
        out.push(program);
    }
    while let Some(arg) = iter.next() {
        let Some(text) = arg.to_str().map(str::to_owned) else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            out.push(arg);
            out.extend(iter);
            break;
        }
        if let Some(long) = text.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((n, v)) => (n.replace('_', "-"), Some(v)),
                None => (long.replace('_', "-"), None),
            };
            let spec = cmd.get_arguments().find(|a| a.get_long() == Some(&name));
            out.push(match value {
                Some(v) => format!("--{name}={v}").into(),
                None => format!("--{name}").into(),
            });
            if value.is_none()
                && takes_value(spec)
                && let Some(v) = iter.next()
            {
                out.push(v);
            }
        } else if let Some(shorts) = text.strip_prefix('-').filter(|s| !s.is_empty()) {
            // `-p 0`: the value is the next argument; `-p0`, `-p=0`: attached.
            out.push(arg.clone());
            let last = shorts.chars().last();
            let first_valued = shorts
                .chars()
                .position(|c| takes_value(cmd.get_arguments().find(|a| a.get_short() == Some(c))));
            if first_valued == Some(shorts.chars().count() - 1)
                && last.is_some()
                && let Some(v) = iter.next()
            {
                out.push(v);
            }
        } else {
            out.push(arg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bools_as_strconv() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        for bad in ["yes", "on", "", "tRUE", "2"] {
            assert!(parse_bool(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ints_as_strconv_base_0() {
        let ok: &[(&str, i64)] = &[
            ("0", 0),
            ("00", 0),
            ("8001", 8001),
            ("+8001", 8001),
            ("-1", -1),
            ("0x1F41", 8001),
            ("0X1f41", 8001),
            ("017", 15),
            ("0o17", 15),
            ("0b101", 5),
            ("0_0", 0),
            ("0x_1F41", 8001),
            ("8_001", 8001),
            ("-9223372036854775808", i64::MIN),
        ];
        for (s, want) in ok {
            assert_eq!(parse_int(s), Ok(*want), "{s}");
        }
        for bad in [
            "",
            "-",
            "08",
            "0x",
            "1_",
            "_1",
            "1__0",
            "x",
            "1.0",
            " 1",
            "9223372036854775808",
        ] {
            assert!(parse_int(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_port("0x1F41"), Ok(8001));
        assert!(parse_port("70000").is_err());
        assert!(parse_port("-1").is_err());
    }

    #[test]
    fn levels_timeouts_vmodule_profiles() {
        assert_eq!(parse_level("4"), Ok(4));
        assert_eq!(parse_level("-1"), Ok(-1));
        assert!(parse_level("0x4").is_err());
        assert!(parse_level("99999999999").is_err());
        assert!(parse_level("").is_err());

        let secs = |n: i64| Ok(GoDuration::from_nanos(n * 1_000_000_000));
        assert_eq!(parse_request_timeout("0"), secs(0));
        assert_eq!(parse_request_timeout("30"), secs(30));
        assert_eq!(parse_request_timeout("1m"), secs(60));
        assert_eq!(parse_request_timeout("-1s"), secs(-1));
        assert!(parse_request_timeout("30x").is_err());
        assert!(parse_request_timeout("-30").is_err());

        assert!(parse_vmodule("").is_ok());
        assert!(parse_vmodule("a=1,b*=2,").is_ok());
        assert!(parse_vmodule("bad").is_err());
        assert!(parse_vmodule("a=").is_err());
        assert!(parse_vmodule("a=x").is_err());
        assert!(parse_vmodule("a=-1").is_err());
        assert!(parse_vmodule("a=1=2").is_err());

        assert!(parse_profile("cpu").is_ok());
        assert_eq!(
            parse_profile("bogus").unwrap_err(),
            "unknown profile 'bogus'"
        );
        assert_eq!(parse_keepalive("-1s"), Ok(std::time::Duration::ZERO));
        assert_eq!(
            parse_keepalive("15m0s"),
            Ok(std::time::Duration::from_secs(900))
        );
        assert!(parse_keepalive("30").is_err());
    }

    #[test]
    fn underscores_become_dashes_in_names_only() {
        let cmd = clap::Command::new("t")
            .arg(clap::Arg::new("token").long("token"))
            .arg(clap::Arg::new("accept-hosts").long("accept-hosts"))
            .arg(clap::Arg::new("port").short('p').long("port"))
            .arg(
                clap::Arg::new("disable-filter")
                    .long("disable-filter")
                    .num_args(0..=1)
                    .require_equals(true),
            );
        let norm = |args: &[&str]| {
            let v = std::iter::once("t")
                .chain(args.iter().copied())
                .map(OsString::from)
                .collect();
            normalize_word_separators(v, &cmd)
                .into_iter()
                .skip(1)
                .map(|s| s.into_string().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(norm(&["--accept_hosts=a_b"]), ["--accept-hosts=a_b"]);
        assert_eq!(norm(&["--accept_hosts", "a_b"]), ["--accept-hosts", "a_b"]);
        assert_eq!(norm(&["--token", "--x_y"]), ["--token", "--x_y"]);
        assert_eq!(norm(&["-p", "--x_y"]), ["-p", "--x_y"]);
        assert_eq!(norm(&["-p0", "--x_y"]), ["-p0", "--x-y"]);
        assert_eq!(
            norm(&["--disable_filter", "--x_y"]),
            ["--disable-filter", "--x-y"]
        );
        assert_eq!(norm(&["--", "--x_y"]), ["--", "--x_y"]);
    }
}
