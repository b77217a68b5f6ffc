//! `flotilla validate`: read the fleet files as `plan` would, and say whether they are valid.
//!
//! On success one line summarises what the files declare, so a typo that silently dropped a
//! fleet shows up as a wrong count; on failure every diagnostic is shown, not just the first.

use crate::args::ConfigArgs;
use flotilla_core::config::{self, Config, LoadOptions, VarArg};
use std::process::ExitCode;

/// The prefix of environment variables that set fleet-file variables (`FLOTILLA_VAR_NAME`).
const VAR_ENV_PREFIX: &str = "FLOTILLA_VAR_";

pub(crate) fn run(args: &ConfigArgs, color: bool) -> anyhow::Result<ExitCode> {
    let options = load_options(args)?;
    match config::load(&options) {
        Ok(config) => {
            crate::printer::stdout(&format!("{}\n", summary(&config)))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(diags) => {
            crate::printer::report_diagnostics(&diags, color);
            Ok(ExitCode::from(1))
        }
    }
}

/// What to read, from the command line and the environment.
///
/// clap keeps `--var` and `--var-file` in separate lists, so their interleaving is lost: the
/// variable files come first (in order), then the `--var`s (in order), so a `--var` always
/// wins over a file, which is what a one-off override on the command line is for.
pub(crate) fn load_options(args: &ConfigArgs) -> anyhow::Result<LoadOptions> {
    let mut var_args: Vec<VarArg> = args.var_files.iter().cloned().map(VarArg::File).collect();
    for v in &args.vars {
        match v.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => {
                var_args.push(VarArg::Var(name.trim().to_string(), value.to_string()));
            }
            _ => anyhow::bail!(
                "invalid --var `{v}`: expected NAME=VALUE, such as --var max_price=40"
            ),
        }
    }
    // `vars_os`: `std::env::vars` panics on a variable that is not UTF-8, even an unrelated one.
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with(VAR_ENV_PREFIX))
        .collect();
    Ok(LoadOptions {
        dir: args.dir.clone(),
        files: args.files.clone(),
        var_args,
        env,
    })
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `Valid: 3 fleets (20 nodes), 1 volume, 1 gateway, 2 outputs in 2 files.`
fn summary(config: &Config) -> String {
    let nodes: u64 = config.fleets.values().map(|f| u64::from(f.nodes)).sum();
    let nodes = usize::try_from(nodes).unwrap_or(usize::MAX);
    format!(
        "Valid: {} ({}), {}, {}, {} in {}.",
        plural(config.fleets.len(), "fleet", "fleets"),
        plural(nodes, "node", "nodes"),
        plural(config.volumes.len(), "volume", "volumes"),
        plural(config.gateways.len(), "gateway", "gateways"),
        plural(config.outputs.len(), "output", "outputs"),
        plural(config.files.len(), "file", "files"),
    )
}
