//! How every proxylab binary reads its command line and starts its runtime, so that they all fail the
//! same way: a bad flag is **one line** on stderr naming the binary, and exit code 2 (clap's own
//! report adds a usage block and a tip on further lines, which scripts and the lab's logs do not
//! want); `--help` and `--version` print as usual and exit 0. A runtime that cannot start is one line
//! and exit 1, the code every binary uses for a failure at run time.

use clap::error::ErrorKind;

/// The first line of clap's report without its `error: ` prefix: what a one-line error shows.
pub fn error_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("invalid arguments");
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

/// Whether clap's "error" is really a request for help or the version (printed to stdout, exit 0).
pub fn is_display(e: &clap::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    )
}

/// Parses the process's arguments into `C`; on a bad flag prints `NAME: <what is wrong>` and exits 2.
pub fn parse_or_exit<C: clap::Parser>(name: &str) -> C {
    parse_from_or_exit(name, std::env::args_os())
}

/// [`parse_or_exit`] over given arguments (the first is the program name).
pub fn parse_from_or_exit<C, I, T>(name: &str, args: I) -> C
where
    C: clap::Parser,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match C::try_parse_from(args) {
        Ok(c) => c,
        Err(e) if is_display(&e) => e.exit(),
        Err(e) => {
            eprintln!("{name}: {}", error_line(&e));
            std::process::exit(2);
        }
    }
}

/// A tokio runtime with every driver enabled, multi-threaded (one worker per CPU, as the proxies
/// that spread load over cores want) or on the current thread; if it cannot start, prints
/// `NAME: cannot start the runtime: …` and exits 1.
pub fn runtime_or_exit(name: &str, multi_thread: bool) -> tokio::runtime::Runtime {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    #[command(name = "demo", version)]
    struct Demo {
        #[arg(long)]
        port: u16,
    }

    fn err(args: &[&str]) -> clap::Error {
        Demo::try_parse_from(args).unwrap_err()
    }

    #[test]
    fn a_bad_flag_is_one_line_without_the_error_prefix() {
        let line = error_line(&err(&["demo", "--port", "80800"]));
        assert!(!line.contains('\n'), "{line}");
        assert!(!line.starts_with("error:"), "{line}");
        assert!(line.contains("80800"), "{line}");
        let line = error_line(&err(&["demo", "--port", "1", "--nope"]));
        assert!(line.contains("--nope"), "{line}");
    }

    #[test]
    fn help_and_version_are_displays_not_errors() {
        assert!(is_display(&err(&["demo", "--help"])));
        assert!(is_display(&err(&["demo", "--version"])));
        assert!(!is_display(&err(&["demo"])));
    }

    #[test]
    fn good_arguments_parse() {
        let d: Demo = parse_from_or_exit("demo", ["demo", "--port", "8080"]);
        assert_eq!(d.port, 8080);
    }
}
