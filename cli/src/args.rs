//! The command line, as clap derive types. Only parsing lives here; `commands` acts on it.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

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
    /// Show what apply would change, which offer each node gets and what it costs.
    Plan(PlanArgs),
    /// Render a saved plan file.
    Show(ShowArgs),
    /// Print the dependency graph of the plan's operations.
    Graph(GraphArgs),
    /// Carry out a plan: make, change and destroy resources, and record them in state.
    Apply(ApplyArgs),
    /// Destroy everything in state.
    Destroy(DestroyArgs),
    /// Inspect and edit the state: list, show, rm, mv, pull, push.
    State(StateArgs),
    /// Remove the state lock with this id (left by a flotilla that died).
    ForceUnlock(ForceUnlockArgs),
}

/// Everything that decides a plan: fleet files, variables, state, catalog, and what to plan.
#[derive(Debug, Args, Clone)]
pub(crate) struct PlanInputs {
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
    /// State location: a path, s3://BUCKET/KEY, gs://BUCKET/OBJECT or
    /// az://ACCOUNT/CONTAINER/BLOB (default: the fleet files' `state { url }`, else
    /// DIR/flotilla.state.json).
    #[arg(long, value_name = "URL", env = "FLOTILLA_STATE")]
    pub(crate) state: Option<String>,
    /// How long to wait for a state lock another flotilla holds (0: fail at once, naming the
    /// holder); e.g. 30s, 5m.
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = crate::commands::parse_duration)]
    pub(crate) lock_timeout: Duration,
    /// Price against this catalog CSV instead of the embedded snapshot.
    #[arg(long, value_name = "FILE")]
    pub(crate) catalog: Option<PathBuf>,
    /// Only these resources and what they depend on; repeatable.
    #[arg(long = "target", value_name = "ADDR")]
    pub(crate) targets: Vec<String>,
    /// Force these resources to be replaced; repeatable.
    #[arg(long = "replace", value_name = "ADDR")]
    pub(crate) replace: Vec<String>,
    /// Plan the removal of everything in state.
    #[arg(long)]
    pub(crate) destroy: bool,
    /// Ask the providers what exists now before planning, one batched call per provider the
    /// state holds resources of (`--refresh=false` skips it and plans from the state as
    /// recorded). A plan against an empty state asks no provider.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub(crate) refresh: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub(crate) enum PlanFormat {
    #[default]
    Text,
    Json,
    Markdown,
}

#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    #[command(flatten)]
    pub(crate) inputs: PlanInputs,
    /// Save the plan to this file, for `flotilla show` and `flotilla apply PLANFILE`.
    #[arg(long, value_name = "PLANFILE")]
    pub(crate) out: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: PlanFormat,
    /// Exit 0 when nothing changes, 2 when something does, 1 on error.
    #[arg(long)]
    pub(crate) detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// A plan saved by `flotilla plan --out`, applied exactly (no question asked); without
    /// one, apply plans now, shows the plan and asks.
    #[arg(value_name = "PLANFILE")]
    pub(crate) plan: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) inputs: PlanInputs,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DestroyArgs {
    #[command(flatten)]
    pub(crate) inputs: PlanInputs,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

/// How `apply` and `destroy` run.
#[derive(Debug, Args, Clone)]
pub(crate) struct RunArgs {
    /// Do not ask for confirmation.
    #[arg(short = 'y', long = "auto-approve")]
    pub(crate) auto_approve: bool,
    /// Operations at once.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) parallelism: u32,
    /// Offers a node tries, on capacity errors, before it fails.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub(crate) max_offers_tried: u32,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The plan file written by `flotilla plan --out`.
    #[arg(value_name = "PLANFILE")]
    pub(crate) plan: PathBuf,
    /// Print the plan JSON (docs/plan-json.md) instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub(crate) enum GraphFormat {
    #[default]
    Dot,
    Mermaid,
}

#[derive(Debug, Args)]
pub(crate) struct GraphArgs {
    #[command(flatten)]
    pub(crate) inputs: PlanInputs,
    /// Output format.
    #[arg(long, value_enum, default_value = "dot")]
    pub(crate) format: GraphFormat,
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
    /// Use this catalog CSV instead of the offers cache and the embedded snapshot.
    #[arg(long, value_name = "FILE")]
    pub(crate) catalog: Option<PathBuf>,
    /// First fetch live offers into the offers cache, for `--provider` (else every cloud
    /// with a provider block here, else AWS) and `--region`s (else the provider blocks'
    /// regions): AWS instance types and spot prices, GCP machine and accelerator types with
    /// Cloud Billing prices, Azure prices from the public Retail Prices API.
    #[arg(long)]
    pub(crate) refresh: bool,
}

/// Where the state is, for the commands that work on the state alone.
#[derive(Debug, Args, Clone)]
pub(crate) struct StateLocation {
    /// Fleet files, read only for their `state { url }` (when there are any and `--state` is
    /// not given).
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
    /// State location: a path, s3://BUCKET/KEY, gs://BUCKET/OBJECT or
    /// az://ACCOUNT/CONTAINER/BLOB (default: the fleet files' `state { url }`, else
    /// DIR/flotilla.state.json).
    #[arg(long, value_name = "URL", env = "FLOTILLA_STATE")]
    pub(crate) state: Option<String>,
    /// How long to wait for a state lock another flotilla holds (0: fail at once, naming the
    /// holder); e.g. 30s, 5m.
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = crate::commands::parse_duration)]
    pub(crate) lock_timeout: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct StateArgs {
    #[command(subcommand)]
    pub(crate) command: StateCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum StateCommand {
    /// List the addresses in state.
    List {
        #[command(flatten)]
        location: StateLocation,
    },
    /// Show one resource as recorded in state (JSON).
    Show {
        /// The address, e.g. fleet.train[0].
        #[arg(value_name = "ADDR")]
        address: String,
        #[command(flatten)]
        location: StateLocation,
    },
    /// Forget resources: remove them from state without destroying them.
    Rm {
        /// The addresses; at least one.
        #[arg(value_name = "ADDR", required = true)]
        addresses: Vec<String>,
        #[command(flatten)]
        location: StateLocation,
    },
    /// Rename a resource in state (after renaming it in the fleet files).
    Mv {
        /// The current address.
        #[arg(value_name = "FROM")]
        from: String,
        /// The new address.
        #[arg(value_name = "TO")]
        to: String,
        #[command(flatten)]
        location: StateLocation,
    },
    /// Print the state document to stdout.
    Pull {
        #[command(flatten)]
        location: StateLocation,
    },
    /// Replace the state with a document from FILE (`-` for stdin).
    Push {
        /// The state document to store.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Also replace a state of another lineage or a newer serial.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        location: StateLocation,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ForceUnlockArgs {
    /// The lock's id, as the "state locked" message prints it.
    #[arg(value_name = "LOCK_ID")]
    pub(crate) lock_id: String,
    #[command(flatten)]
    pub(crate) location: StateLocation,
}
