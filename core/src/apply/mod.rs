//! The executor: carries a [`Plan`] out through [`Provider`]s, in dependency order, in
//! parallel, and records every completed operation in state.
//!
//! It is turborepo's walker (`crates/turborepo-graph-utils/src/walker.rs`): one tokio task per
//! operation of [`plan::graph::build`], each waiting on its dependencies' outcomes; a failed
//! operation makes its dependents skip while independent work goes on. Why each piece exists:
//!
//! - **Bounded concurrency.** A global semaphore (`--parallelism`), and per provider+region a
//!   semaphore and a token bucket for create calls, so that a 1,000-node fleet does not trip
//!   EC2's throttling (RunInstances refills about 2 per second). What is throttled anyway is
//!   retried with exponential backoff and jitter ([`RetryPolicy`]).
//! - **Failover.** A capacity error moves the node to the next-ranked offer of its fleet (the
//!   planner's own candidates, [`Fleets`]) that satisfies the same constraints: the same
//!   provider, region and zone as its volumes; for a cluster fleet, the fleet's group (see
//!   below). An offer that ran out of capacity is skipped by every later node of this apply.
//! - **State after every operation.** Each completed operation is written through the
//!   [`StateStore`] with compare-and-swap before its dependents start, so a crash loses at
//!   most the operations in flight. Writes go through one writer task that commits whatever
//!   operations finished together in one write (group commit), so a wide apply does not queue
//!   behind its own state writes. A conflicting write stops the apply: someone else owns the
//!   state now.
//! - **No orphans, no duplicates.** Every create carries [`Ownership`] (tags and an idempotency
//!   token from the state lineage and the address), and before every create the executor asks
//!   the provider to [`Provider::find`] the resource by those tags in the region it is about to
//!   use, adopting what an interrupted apply made instead of making a second one. It is one
//!   tag-filtered list call, cheap next to a create, so it is always done. An apply of a state
//!   that has no document yet writes the (empty) state first, so that the lineage the tags
//!   carry is the one the next apply reads.
//! - **Outputs.** At the end, the configuration's `output` blocks are evaluated against the
//!   state the apply leaves and written to `state.outputs` (one more write, only when they
//!   changed), so that `flotilla apply` can print them.
//! - **Cancellation.** [`CancelToken`] stops scheduling; operations in flight finish and are
//!   recorded, and the report says it was cancelled.
//!
//! **Cluster fleets** move as a group. The fleet's group (provider, region and, once a node
//! has one, zone) is taken from its planned offer. On a capacity error a node first tries the
//! next-ranked offer inside the group; when the group has none left, the fleet moves to the
//! group of the next-ranked remaining offer, and every node of the fleet not yet created
//! follows it. Nodes this apply already made in the old group stay there: the apply does not
//! destroy working nodes to regroup them. When that happens the fleet is split, and the next
//! plan shows it (the planner gathers a cluster in the group of its lowest-numbered kept
//! node and replaces the others).
//!
//! Engine faults (a cycle, a state that cannot be written) are kept apart from operation
//! outcomes, as turborepo keeps `InternalError` apart from task outcomes: see
//! [`ApplyReport::error`].

use crate::catalog::{Offer, ProviderKind};
use crate::plan::graph::{Operation, Step};
use crate::plan::{Plan, PlanError};
use crate::provider::{FailureKind, Ownership, Provider, ProviderError};
use crate::state::{State, StateError, StateStore, StoredVersion};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

mod cancel;
mod events;
pub mod fake;
mod fleets;
mod limits;
mod ops;
mod outputs;
mod recorder;
mod retry;
#[cfg(test)]
mod tests;
mod walk;

pub use cancel::CancelToken;
pub use events::{Event, EventSink};
pub use fleets::{FleetSpec, Fleets};

/// Carries `plan` out. Never fails as a whole: what went wrong is in the report, per
/// operation ([`OpStatus::Failed`]) or for the whole apply ([`ApplyReport::error`]).
pub async fn apply(plan: &Plan, ctx: ApplyContext) -> ApplyReport {
    walk::run(plan, ctx).await
}

/// Everything an apply needs besides the plan.
pub struct ApplyContext {
    /// Who carries out each provider's operations.
    pub providers: BTreeMap<ProviderKind, Arc<dyn Provider>>,
    /// Where state is written after every operation.
    pub store: Arc<dyn StateStore>,
    /// The state the plan was made against (its lineage goes into every ownership tag).
    pub state: State,
    /// The stored version of `state`; `None` when the store holds no document yet.
    pub version: Option<StoredVersion>,
    /// Limits and policies.
    pub options: ApplyOptions,
    /// What each fleet may fail over to, its tags and root disk ([`Fleets::from_config`]).
    pub fleets: Fleets,
    /// Stops scheduling when cancelled.
    pub cancel: CancelToken,
    /// Where progress goes.
    pub events: EventSink,
}

/// How hard the executor pushes.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyOptions {
    /// Operations at once against the providers, overall (`--parallelism`, default 10). At
    /// least 1. An operation gives its permits back when the provider has answered, and its
    /// dependents wait until its result is written to state.
    pub parallelism: usize,
    /// Operations at once per provider+region (default 16); `None` is no limit beyond
    /// `parallelism`.
    pub per_region_limit: Option<usize>,
    /// Create calls per second per provider+region (default 2 per second with a burst of 5,
    /// EC2's RunInstances bucket); `None` is no limit.
    pub per_region_rate: Option<RateLimit>,
    /// Offers tried per node before it fails (`--max-offers-tried`, default 10). At least 1.
    pub max_offers_tried: usize,
    /// How throttled calls are retried.
    pub retry: RetryPolicy,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: 10,
            per_region_limit: Some(16),
            per_region_rate: Some(RateLimit {
                per_second: 2.0,
                burst: 5,
            }),
            max_offers_tried: 10,
            retry: RetryPolicy::default(),
        }
    }
}

/// A token bucket: `burst` calls at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket size: calls that may go at once after a quiet spell.
    pub burst: u32,
}

/// Exponential backoff with jitter for throttled calls: attempt `n` (from 1) waits a random
/// time between half and all of `min(max_delay, base_delay * 2^(n-1))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Calls in all, the first included (default 8).
    pub max_attempts: u32,
    /// The first wait (default 500 ms).
    pub base_delay: Duration,
    /// The longest wait (default 20 s).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
        }
    }
}

/// What an apply did.
#[derive(Debug)]
pub struct ApplyReport {
    /// Every operation's outcome, in an order that respects the dependencies.
    pub outcomes: Vec<OpOutcome>,
    /// The state as the apply leaves it (what was written, plus anything made after a write
    /// failed).
    pub state: State,
    /// The stored version of the last successful write.
    pub version: Option<StoredVersion>,
    /// Whether the apply was cancelled before it ran everything.
    pub cancelled: bool,
    /// An engine fault that stopped the apply (a cycle; a state that could not be written).
    pub error: Option<ApplyError>,
}

impl ApplyReport {
    /// Operations that completed (kept resources are not counted).
    pub fn done(&self) -> impl Iterator<Item = &OpOutcome> {
        self.outcomes
            .iter()
            .filter(|o| matches!(o.status, OpStatus::Done { .. }))
    }

    /// Operations that failed.
    pub fn failed(&self) -> impl Iterator<Item = &OpOutcome> {
        self.outcomes
            .iter()
            .filter(|o| matches!(o.status, OpStatus::Failed { .. }))
    }

    /// Operations that never ran.
    pub fn skipped(&self) -> impl Iterator<Item = &OpOutcome> {
        self.outcomes
            .iter()
            .filter(|o| matches!(o.status, OpStatus::Skipped { .. }))
    }

    /// Resources added, changed and destroyed, as Terraform counts them (a replace is one of
    /// each of add and destroy).
    pub fn counts(&self) -> crate::plan::Summary {
        let mut s = crate::plan::Summary::default();
        for o in self.done() {
            match o.op.step {
                Step::Create => s.add += 1,
                Step::Update => s.change += 1,
                Step::Destroy => s.destroy += 1,
                Step::Keep => {}
            }
        }
        s
    }

    /// Whether everything ran and succeeded.
    pub fn is_success(&self) -> bool {
        !self.cancelled
            && self.error.is_none()
            && self
                .outcomes
                .iter()
                .all(|o| matches!(o.status, OpStatus::Done { .. } | OpStatus::Kept))
    }
}

/// One operation's outcome.
#[derive(Debug, Clone)]
pub struct OpOutcome {
    /// The operation.
    pub op: Operation,
    /// What became of it.
    pub status: OpStatus,
}

/// What became of one operation.
#[derive(Debug, Clone)]
pub enum OpStatus {
    /// It ran and is recorded in state.
    Done {
        /// How long it ran, permits and retries included.
        elapsed: Duration,
        /// The provider's id of what it made or changed; `None` for a destroy.
        provider_id: Option<String>,
        /// The offer a node took (after failover, if any).
        offer: Option<Offer>,
        /// Whether an earlier apply had made it and this one adopted it.
        adopted: bool,
    },
    /// A no-op: nothing to do.
    Kept,
    /// It failed.
    Failed {
        /// Why, with the cloud's code and message.
        error: OpError,
        /// How long it ran.
        elapsed: Duration,
    },
    /// It never ran.
    Skipped {
        /// Why: `fleet.web[1] failed`, `the apply was cancelled`.
        because: String,
    },
}

/// "no capacity in 2 offers tried (…)", or "over quota …" when quotas stopped every offer: a
/// quota is raised by asking the cloud, not by waiting, so its message (which names the quota)
/// is kept.
fn no_capacity_text(tried: &[(Offer, ProviderError)], limit_reached: bool) -> String {
    let quotas = tried
        .iter()
        .filter(|(_, e)| e.kind == FailureKind::Quota)
        .count();
    let what = match quotas {
        0 => "no capacity",
        n if n == tried.len() => "over quota",
        _ => "no capacity or over quota",
    };
    let each: Vec<String> = tried
        .iter()
        .map(|(o, e)| match e.kind {
            FailureKind::Quota => format!("{}: {}: {}", offer_label(o), e.code, e.message),
            _ => format!("{}: {}", offer_label(o), e.code),
        })
        .collect();
    let hint = if quotas > 0 {
        "ask the cloud for more quota, widen the fleet's providers or regions, or raise --max-offers-tried"
    } else {
        "widen the fleet's providers or regions, raise --max-offers-tried, or try again later"
    };
    format!(
        "{what} in {} offer{} tried ({}){}; {hint}",
        tried.len(),
        if tried.len() == 1 { "" } else { "s" },
        each.join(", "),
        if limit_reached {
            ", the --max-offers-tried limit"
        } else {
            ", every candidate offer"
        }
    )
}

/// Why one operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpError {
    /// The provider refused (the cloud's code and message).
    #[error("{0}")]
    Provider(ProviderError),
    /// Every offer tried had no capacity or was over a quota.
    #[error("{}", no_capacity_text(tried, *limit_reached))]
    NoCapacity {
        /// Each offer tried and the error it answered.
        tried: Vec<(Offer, ProviderError)>,
        /// Whether it stopped at `max_offers_tried` (else no candidate was left).
        limit_reached: bool,
    },
    /// The plan names a provider this build has no implementation of.
    #[error("provider `{0}` cannot apply in this build")]
    NoProvider(ProviderKind),
    /// The plan, the configuration and the state disagree (the message says how).
    #[error("{0}; run `flotilla plan` again")]
    Inconsistent(String),
    /// It ran, but the state could not be written; the next apply adopts what it made.
    #[error(
        "{what} was made but not recorded, because the state could not be written ({why}); the next apply finds it by its tags and adopts it"
    )]
    NotRecorded {
        /// The provider's id, or the address.
        what: String,
        /// The state error.
        why: String,
    },
}

impl OpError {
    /// The cloud's error code, when a provider answered one.
    pub fn code(&self) -> Option<&str> {
        match self {
            OpError::Provider(e) => Some(&e.code),
            OpError::NoCapacity { tried, .. } => tried.last().map(|(_, e)| e.code.as_str()),
            _ => None,
        }
    }
}

/// An engine fault that stopped the apply.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The plan's operations form a cycle.
    #[error("the plan cannot be carried out")]
    Plan(#[source] PlanError),
    /// A state write failed: what ran since is not recorded, and nothing more was started.
    #[error(
        "the apply stopped because the state could not be written; what was made since the last write is not recorded, and the next apply finds it by its tags and adopts it"
    )]
    State(#[source] StateError),
}

/// `aws p5.48xlarge us-east-1`, with the zone and `spot` when it has them.
pub fn offer_label(o: &Offer) -> String {
    let mut s = format!("{} {} {}", o.provider, o.instance_type, o.region);
    if !o.zone.is_empty() {
        s.push('/');
        s.push_str(&o.zone);
    }
    if o.spot {
        s.push_str(" spot");
    }
    s
}

/// The ownership a resource of this apply carries; `generation` from
/// [`State::generation`] at the time of the operation.
fn ownership(lineage: &str, address: &str, generation: u64) -> Ownership {
    Ownership {
        lineage: lineage.to_string(),
        address: address.to_string(),
        generation,
    }
}
