//! `--help` for the Lambda binaries: they take no arguments (Lambda runs them with none), but a
//! person who runs one by hand with `--help` or `-h` gets its usage, and nothing starts (no
//! runtime loop, no SDK client, no network).

/// Whether `args` (the arguments after the program name) ask for help: `--help` or `-h`.
pub fn help_requested<I, S>(args: I) -> bool
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    args.into_iter()
        .any(|arg| arg.as_ref() == "--help" || arg.as_ref() == "-h")
}

/// Prints `usage` and exits with status 0 when this process's arguments ask for help (see
/// [`help_requested`]); returns otherwise. Call it first in `main`.
pub fn exit_on_help(usage: &str) {
    if help_requested(std::env::args_os().skip(1)) {
        print!("{usage}");
        std::process::exit(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_is_asked_by_either_flag_anywhere() {
        assert!(help_requested(["--help"]));
        assert!(help_requested(["x", "-h"]));
        assert!(!help_requested::<_, &str>([]));
        assert!(!help_requested(["--helpful", "-hx", "help"]));
    }
}
