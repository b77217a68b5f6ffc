//! One module per command. Each takes its parsed arguments and returns the exit code.

use crate::args::{Cli, Command};
use std::process::ExitCode;

pub(crate) use lock::parse_duration;

mod apply;
mod fmt;
mod graph;
mod hosts;
mod lock;
mod offers;
mod plan;
mod show;
mod state;
mod validate;

/// Runs the parsed command line.
pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let color = crate::printer::use_color(cli.no_color);
    match *cli.command {
        Command::Offers(args) => offers::run(&args, color),
        Command::Validate(args) => validate::run(&args, color),
        Command::Fmt(args) => fmt::run(&args),
        Command::Plan(args) => plan::run(&args, color),
        Command::Show(args) => show::run(&args, color),
        Command::Graph(args) => graph::run(&args),
        Command::Apply(args) => apply::run(&args, color),
        Command::Destroy(args) => apply::run_destroy(&args, color),
        Command::State(args) => state::run(&args),
        Command::ForceUnlock(args) => lock::run_force_unlock(&args),
    }
}
