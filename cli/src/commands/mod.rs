//! One module per command. Each takes its parsed arguments and returns the exit code.

use crate::args::{Cli, Command};
use std::process::ExitCode;

mod apply;
mod fmt;
mod graph;
mod offers;
mod plan;
mod show;
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
    }
}
