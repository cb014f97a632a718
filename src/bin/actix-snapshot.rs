//! `actix-snapshot`: list, inspect and verify checkpoint files. See
//! [`actix_snapshot::inspect`] for the commands and exit codes.

use std::io::Write;
use std::process::ExitCode;

use actix_snapshot::inspect::{Cli, InspectError, run};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = run(&cli, &mut out).and_then(|()| out.flush().map_err(Into::into));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): stop quietly, like other command-line tools.
        Err(InspectError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Every message already names its cause.
            let _ = writeln!(std::io::stderr().lock(), "actix-snapshot: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
