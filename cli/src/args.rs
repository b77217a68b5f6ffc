//! The command line, as clap derive types. Only parsing lives here; `commands` acts on it.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Plan and apply GPU fleets across AWS, GCP, Azure and bare-metal hosts.
#[derive(Debug, Parser)]
#[command(name = "flotilla", version, about, long_about = None)]
pub(crate) struct Cli {
    /// Disable colour (also: the NO_COLOR environment variable, or no terminal).
    #[arg(long, global = true)]
    pub(crate) no_color: bool,

    #[command(subcommand)]
    pub(crate) command: Box<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List the offers that satisfy some resources, cheapest first.
    Offers(OffersArgs),
    /// Check the fleet files and report every error.
    Validate(ConfigArgs),
    /// Rewrite fleet files in canonical format.
    Fmt(FmtArgs),
}

/// Which fleet files to read, and with which variables.
#[derive(Debug, Args, Clone)]
pub(crate) struct ConfigArgs {
    /// Read fleet files from this directory (every `*.hcl`).
    #[arg(short = 'C', long = "dir", value_name = "DIR", default_value = ".")]
    pub(crate) dir: PathBuf,
    /// Read only these files (relative to DIR); repeatable.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub(crate) files: Vec<PathBuf>,
    /// Set a variable: NAME=VALUE; repeatable, later wins.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub(crate) vars: Vec<String>,
    /// Read variables from a file (HCL, or JSON when it ends in .json); repeatable.
    #[arg(long = "var-file", value_name = "FILE")]
    pub(crate) var_files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct FmtArgs {
    /// Change nothing; exit 1 and list the files that are not canonical.
    #[arg(long)]
    pub(crate) check: bool,
    /// Format files in this directory (every `*.hcl`).
    #[arg(short = 'C', long = "dir", value_name = "DIR", default_value = ".")]
    pub(crate) dir: PathBuf,
    /// Format only these files (relative to DIR); repeatable.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub(crate) files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum SpotPolicyArg {
    Spot,
    OnDemand,
    Auto,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub(crate) enum OffersFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct OffersArgs {
    /// GPU spec: `H100:8`, `A100,H100:80GB:1..8`, `nvidia:24GB..`.
    #[arg(long)]
    pub(crate) gpu: Option<String>,
    /// vCPU range: `8`, `16..`, `8..64`.
    #[arg(long)]
    pub(crate) cpu: Option<String>,
    /// Memory range: `64GB..`, `1TB`.
    #[arg(long)]
    pub(crate) memory: Option<String>,
    /// Which markets.
    #[arg(long, value_enum, default_value = "on-demand")]
    pub(crate) spot_policy: SpotPolicyArg,
    /// Highest USD per node-hour.
    #[arg(long, value_name = "USD")]
    pub(crate) max_price: Option<f64>,
    /// Only this provider; repeatable.
    #[arg(long = "provider", value_name = "P")]
    pub(crate) providers: Vec<String>,
    /// Only this region; repeatable.
    #[arg(long = "region", value_name = "R")]
    pub(crate) regions: Vec<String>,
    /// Show at most this many offers.
    #[arg(long, default_value_t = 20)]
    pub(crate) limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: OffersFormat,
    /// Use this catalog CSV instead of the embedded snapshot.
    #[arg(long, value_name = "FILE")]
    pub(crate) catalog: Option<PathBuf>,
}
