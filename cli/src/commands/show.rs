//! `flotilla show PLANFILE`: renders a saved plan.

use crate::args::ShowArgs;
use flotilla_core::plan::render;
use std::process::ExitCode;

pub(crate) fn run(args: &ShowArgs, color: bool) -> anyhow::Result<ExitCode> {
    let plan = super::plan::read_plan_file(&args.plan)?;
    let out = if args.json {
        render::json(&plan)
    } else {
        render::text(&plan, color)
    };
    crate::printer::stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}
