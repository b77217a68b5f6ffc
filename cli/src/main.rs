//! `flotilla`: plan and apply GPU fleets.
//!
//! The binary is glue: it parses arguments (clap), resolves the catalog, config and state
//! store, calls into `flotilla-core`, and renders results. Data goes to stdout; progress,
//! warnings and errors go to stderr.

use clap::Parser;
use std::process::ExitCode;

// Plans build many small maps and strings; mimalloc makes a plan over a large state about
// three times faster than the system allocator (core/benches/plan.rs uses it too).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod args;
mod commands;
mod printer;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            printer::report(&err);
            ExitCode::from(1)
        }
    }
}
