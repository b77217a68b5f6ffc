//! `flotilla graph`: the plan's operations and their order, as DOT or Mermaid.

use crate::args::{GraphArgs, GraphFormat};
use flotilla_core::plan::graph;
use std::process::ExitCode;

pub(crate) fn run(args: &GraphArgs) -> anyhow::Result<ExitCode> {
    let made = super::plan::make_plan(&args.inputs, "graph")?;
    let g = graph::build(&made.plan)?;
    let out = match args.format {
        GraphFormat::Dot => g.to_dot(),
        GraphFormat::Mermaid => g.to_mermaid(),
    };
    crate::printer::stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}
