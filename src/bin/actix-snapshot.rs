//! `actix-snapshot`: list, inspect and verify checkpoint files. See
//! [`actix_snapshot::inspect`] for the commands and exit codes.

use std::io::Write;
use std::process::ExitCode;

use actix_snapshot::inspect::{Cli, run};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = run(&cli, &mut out).and_then(|()| out.flush().map_err(Into::into));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "actix-snapshot: error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                let _ = writeln!(err, "  caused by: {s}");
                source = s.source();
            }
            ExitCode::from(e.exit_code())
        }
    }
}
