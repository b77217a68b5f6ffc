//! The planner: desired fleets versus state, offer selection, the dependency graph, renderers.
//!
//! [`plan`] takes the evaluated [`Config`], the current [`State`] and a [`Catalog`], and
//! returns a [`Plan`]: one [`Change`] per resource (create, update, replace, delete, no-op),
//! each with a reason, the offer each new node takes, the order the changes must run in, and
//! what it all costs. It does no I/O, so it is deterministic: the same inputs give a
//! byte-identical plan on every machine.
//!
//! - `select`: which offer each node of a fleet gets (kept, cheapest, cluster group, hosts).
//! - `diff`: desired resources versus state, producing the changes.
//! - [`graph`]: the dependency DAG over the changes' operations (petgraph).
//! - `drift`: refresh answers folded into the state planned against ([`refresh`]), and what
//!   changed outside flotilla ([`Drift`]), which [`plan_refreshed`] records in the plan.
//! - [`render`]: text, JSON and markdown.

use crate::catalog::Offer;
use crate::config::Config;
use crate::state::{ResourceKind, State};
use serde::{Deserialize, Serialize};

mod diff;
mod drift;
pub mod graph;
pub mod render;
mod select;
#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod tests;

pub use drift::{AttributeDrift, Drift, Refreshed, forget_gone, refresh};
pub(crate) use select::Group;
pub use select::fleet_candidates;

/// The `format_version` of plan JSON and plan files.
pub const PLAN_FORMAT_VERSION: &str = "1";

/// Hours in the month a plan's monthly cost assumes (as AWS and Infracost count).
pub const HOURS_PER_MONTH: f64 = 730.0;

/// What to plan.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// `--target ADDR`: only these resources (a fleet `fleet.x`, a node `fleet.x[2]`, a volume,
    /// a gateway) and what they depend on. Empty is everything.
    pub targets: Vec<String>,
    /// `--replace ADDR`: force these resources to be replaced.
    pub replace: Vec<String>,
    /// `--destroy`: remove everything in state.
    pub destroy: bool,
}

/// What a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Make it.
    Create,
    /// Change it in place (tags, gateway targets).
    Update,
    /// Destroy it and make it anew.
    Replace,
    /// Destroy it.
    Delete,
    /// Leave it as it is.
    NoOp,
}

impl Action {
    /// `create`, `update`, `replace`, `delete`, `no-op`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Delete => "delete",
            Action::NoOp => "no-op",
        }
    }

    /// Terraform's symbol: `+`, `~`, `-/+`, `-`, or a space for no-op.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
            Action::NoOp => " ",
        }
    }
}

/// One resource's change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// `fleet.train[0]`, `volume.ckpt[0]`, `gateway.serve`.
    pub address: String,
    /// What it is.
    pub kind: ResourceKind,
    /// What happens.
    pub action: Action,
    /// Why, in a few words: `new node`, `gpu: A100 does not match H100`, `scale down to 2`.
    pub reason: String,
    /// Addresses this change waits for (volumes of a node, targets of a gateway).
    pub depends_on: Vec<String>,
    /// Its attributes now (`None` when it does not exist yet).
    pub before: Option<serde_json::Map<String, serde_json::Value>>,
    /// Its attributes after the change (`None` when it is deleted). For an instance:
    /// `provider`, `region`, `zone`, `instance_type`, `spot`, `price_per_hour`, `gpu`.
    pub after: Option<serde_json::Map<String, serde_json::Value>>,
    /// Attributes whose change forces the replacement (rendered `# forces replacement`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forces_replacement: Vec<String>,
    /// Warnings a reviewer must see: data loss, a cheaper offer for a kept node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The offers considered for one fleet, for the plan's offers table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetOffers {
    /// The fleet's name.
    pub fleet: String,
    /// How many offers satisfy the fleet's constraints.
    pub matched: usize,
    /// The chosen offer first, then the next two by rank.
    pub top: Vec<Offer>,
}

/// Counts of `Plan: X to add, Y to change, Z to destroy.` (a replace counts as one add and one
/// destroy, as in Terraform).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Creates and replaces.
    pub add: usize,
    /// Updates.
    pub change: usize,
    /// Deletes and replaces.
    pub destroy: usize,
}

/// What the instances cost, USD.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Per hour now.
    pub before_per_hour: f64,
    /// Per hour after the plan.
    pub after_per_hour: f64,
    /// After minus before, per hour.
    pub delta_per_hour: f64,
    /// After minus before, per 730-hour month.
    pub delta_per_month: f64,
}

/// The state a plan was made against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRef {
    /// The state's lineage.
    pub lineage: String,
    /// The state's serial.
    pub serial: u64,
}

/// A reviewed, costed, ordered set of changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// [`PLAN_FORMAT_VERSION`].
    pub format_version: String,
    /// The flotilla that made it.
    pub flotilla_version: String,
    /// The state it was made against; applying it to any other state is refused.
    pub state: StateRef,
    /// [`Config::digest`] of the configuration it was made from.
    pub config_digest: String,
    /// Which catalog priced it and how old it is, in words: [`CatalogSource::describe`].
    ///
    /// [`CatalogSource::describe`]: crate::catalog::CatalogSource::describe
    pub catalog: String,
    /// The same as data: snapshot, cache or file, its path, when it was fetched, its age.
    #[serde(default)]
    pub catalog_source: crate::catalog::CatalogSource,
    /// Every resource's change, no-ops included, in address order.
    pub changes: Vec<Change>,
    /// The offers table, one entry per fleet with nodes to place.
    pub offers: Vec<FleetOffers>,
    /// Counts for the summary line.
    pub summary: Summary,
    /// Cost before, after and the difference.
    pub cost: Cost,
    /// Whether this plan destroys everything (`--destroy`).
    #[serde(default)]
    pub destroy: bool,
    /// What refresh found changed outside flotilla, in address order (rendered under
    /// "Changed outside flotilla"). Empty when the plan was made without refresh.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<Drift>,
    /// What probing the bare-metal hosts found worth a reviewer's eye, in host order: host
    /// keys trusted on first use, and hosts not offered (unreachable, claimed by another
    /// state, refused). Filled by the CLI, which probes; empty without bare-metal hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostNote>,
}

/// One line of the plan's bare-metal host report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostNote {
    /// The host's name in the fleet files.
    pub host: String,
    /// What was found.
    pub kind: HostNoteKind,
    /// The fingerprint (`new_key`), the reason (`unreachable`, `refused`), or the holder,
    /// `LINEAGE (ADDRESS)` (`claimed`).
    pub detail: String,
}

/// What a [`HostNote`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostNoteKind {
    /// First contact: the host key is trusted on first use, and recorded in state at apply.
    NewKey,
    /// No connection or no SSH handshake: not offered.
    Unreachable,
    /// Another state holds the host's claim: not offered.
    Claimed,
    /// Reached but not usable (a changed host key, a failed login, a foreign claim file):
    /// not offered.
    Refused,
}

impl HostNote {
    /// The note as one line: `new host key for dgx-1: SHA256:…`.
    pub fn message(&self) -> String {
        let HostNote { host, kind, detail } = self;
        match kind {
            HostNoteKind::NewKey => format!(
                "new host key for {host}: {detail} (trusted on first use; recorded in state at apply)"
            ),
            HostNoteKind::Unreachable => format!("{host} unreachable: {detail}, not offered"),
            HostNoteKind::Claimed => format!("{host} is claimed by state {detail}, not offered"),
            HostNoteKind::Refused => format!("{host} refused: {detail}, not offered"),
        }
    }
}

impl Plan {
    /// Whether anything would change.
    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| c.action != Action::NoOp)
    }
}

/// Why a plan cannot be made. Each names the fleet or resource and what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// No offer satisfies a fleet; the message names the constraint that emptied the set.
    #[error("fleet `{fleet}` ({origin}): no offer satisfies it: {explanation}")]
    NoOffer {
        /// The fleet.
        fleet: String,
        /// Where it is declared.
        origin: String,
        /// Which constraint emptied the candidate set.
        explanation: String,
    },
    /// A change would destroy a volume with `prevent_destroy = true`.
    #[error(
        "`{address}` has prevent_destroy = true, but the plan would destroy it ({why}); remove prevent_destroy from volume `{volume}` if the data may really be lost, or change the plan"
    )]
    PreventDestroy {
        /// The volume's address.
        address: String,
        /// The volume block.
        volume: String,
        /// What would destroy it.
        why: String,
    },
    /// `--target` or `--replace` names nothing that exists or is configured.
    #[error("{flag} `{address}` matches no resource in the configuration or the state{hint}")]
    UnknownAddress {
        /// `--target` or `--replace`.
        flag: String,
        /// The address given.
        address: String,
        /// A did-you-mean, starting with `; `.
        hint: String,
    },
    /// The dependency graph has a cycle.
    #[error("dependency cycle: {0}")]
    Cycle(String),
}

/// Makes the plan against a refreshed state ([`refresh`]) and records its drift: a resource
/// deleted outside flotilla is created again (reason `deleted outside flotilla`), one whose
/// compared attributes changed (tags, gateway targets) is updated in place and says so. Pure,
/// like [`plan`].
pub fn plan_refreshed(
    config: &Config,
    refreshed: &Refreshed,
    catalog: &crate::catalog::Catalog,
    options: &PlanOptions,
) -> Result<Plan, PlanError> {
    let mut plan = diff::plan(config, &refreshed.state, catalog, options)?;
    drift::annotate(&mut plan, &refreshed.drift);
    Ok(plan)
}

/// Makes the plan. Pure: no I/O, deterministic.
pub fn plan(
    config: &Config,
    state: &State,
    catalog: &crate::catalog::Catalog,
    options: &PlanOptions,
) -> Result<Plan, PlanError> {
    diff::plan(config, state, catalog, options)
}
