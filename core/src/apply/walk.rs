//! The walker: one tokio task per operation, each waiting on its dependencies' outcomes
//! (a `watch` channel per operation, as turborepo's walker uses `broadcast`), then on its
//! permits, then running and recording the operation. An operation that fails or is skipped
//! tells its dependents to skip; independent operations go on. The graph is acyclic
//! ([`graph::build`] refuses cycles), so the waits cannot deadlock.

use super::cancel::CancelToken;
use super::events::{Event, EventSink};
use super::fleets::{Failover, Fleets};
use super::limits::Limits;
use super::ops;
use super::recorder::Recorder;
use super::{ApplyContext, ApplyError, ApplyOptions, ApplyReport, OpError, OpOutcome, OpStatus};
use crate::catalog::ProviderKind;
use crate::plan::graph::{self, Operation, OperationGraph, Step};
use crate::plan::{Action, Change, Plan};
use crate::provider::Provider;
use petgraph::Direction;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What every operation's task shares.
pub(super) struct Shared {
    pub(super) providers: BTreeMap<ProviderKind, Arc<dyn Provider>>,
    pub(super) fleets: Fleets,
    pub(super) options: ApplyOptions,
    pub(super) limits: Limits,
    pub(super) recorder: Recorder,
    pub(super) events: EventSink,
    /// Given when a state write fails: start nothing more.
    pub(super) halt: CancelToken,
    cancel: CancelToken,
    pub(super) failover: Mutex<Failover>,
    pub(super) changes: HashMap<String, Change>,
    pub(super) lineage: String,
}

/// What an operation tells its dependents.
#[derive(Debug, Clone)]
enum Signal {
    /// Done or kept: go ahead.
    Ok,
    /// Failed or skipped: skip, because of this.
    NotRun(String),
}

pub(super) async fn run(plan: &Plan, ctx: ApplyContext) -> ApplyReport {
    let ApplyContext {
        providers,
        store,
        mut state,
        mut version,
        options,
        fleets,
        cancel,
        events,
    } = ctx;
    let graph = match graph::build(plan) {
        Ok(g) => g,
        Err(e) => {
            return ApplyReport {
                outcomes: Vec::new(),
                state,
                version,
                cancelled: false,
                error: Some(ApplyError::Plan(e)),
            };
        }
    };
    let has_work = graph.graph.node_weights().any(|op| op.step != Step::Keep);

    // Claim the lineage before anything is made: the ownership tags carry it, and the next
    // apply must read the same one to find what this one made.
    if version.is_none() && has_work {
        let mut first = state.clone();
        first.serial += 1;
        match store.write(&first, None).await {
            Ok(v) => {
                state = first;
                version = Some(v);
            }
            Err(e) => {
                let because = "the state could not be written".to_string();
                let outcomes = in_order(&graph)
                    .into_iter()
                    .map(|i| {
                        let op = graph.graph[petgraph::graph::NodeIndex::new(i)].clone();
                        let status = if op.step == Step::Keep {
                            OpStatus::Kept
                        } else {
                            OpStatus::Skipped {
                                because: because.clone(),
                            }
                        };
                        OpOutcome { op, status }
                    })
                    .collect();
                return ApplyReport {
                    outcomes,
                    state,
                    version,
                    cancelled: false,
                    error: Some(ApplyError::State(e)),
                };
            }
        }
    }

    let halt = CancelToken::new();
    let planned_hosts: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| matches!(c.action, Action::Create | Action::Replace))
        .filter_map(|c| c.after.as_ref())
        .filter(|a| {
            a.get("provider").and_then(|v| v.as_str()) == Some(ProviderKind::Baremetal.as_str())
        })
        .filter_map(|a| {
            a.get("instance_type")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        })
        .collect();
    let failover = Failover::new(&state, planned_hosts);
    let lineage = state.lineage.clone();
    let output_store = store.clone();
    let outputs = fleets.outputs().clone();
    let (recorder, writer) = Recorder::start(store, state, version, halt.clone());
    let shared = Arc::new(Shared {
        providers,
        fleets,
        limits: Limits::new(
            options.parallelism,
            options.per_region_limit,
            options.per_region_rate,
        ),
        options,
        recorder,
        events,
        halt,
        cancel: cancel.clone(),
        failover: Mutex::new(failover),
        changes: plan
            .changes
            .iter()
            .map(|c| (c.address.clone(), c.clone()))
            .collect(),
        lineage,
    });

    let n = graph.graph.node_count();
    let mut senders: Vec<Option<watch::Sender<Option<Signal>>>> = Vec::with_capacity(n);
    let mut receivers = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = watch::channel(None);
        senders.push(Some(tx));
        receivers.push(rx);
    }
    let mut tasks = JoinSet::new();
    let mut task_node = HashMap::with_capacity(n);
    for idx in graph.graph.node_indices() {
        let op = graph.graph[idx].clone();
        let deps: Vec<_> = graph
            .graph
            .neighbors_directed(idx, Direction::Incoming)
            .map(|d| d.index())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|d| receivers[d].clone())
            .collect();
        let Some(tx) = senders[idx.index()].take() else {
            continue;
        };
        let handle = tasks.spawn(node(shared.clone(), op, deps, tx));
        task_node.insert(handle.id(), idx.index());
    }
    drop(receivers);

    let mut statuses: Vec<Option<OpStatus>> = vec![None; n];
    while let Some(joined) = tasks.join_next_with_id().await {
        match joined {
            Ok((id, status)) => statuses[task_node[&id]] = Some(status),
            Err(e) => {
                statuses[task_node[&e.id()]] = Some(OpStatus::Failed {
                    error: OpError::Inconsistent(format!(
                        "internal error: the operation's task ended early ({e})"
                    )),
                    elapsed: std::time::Duration::ZERO,
                });
            }
        }
    }
    drop(shared);
    let written = match writer.await {
        Ok(w) => w,
        Err(e) => super::recorder::Written {
            version: None,
            error: Some(crate::state::StateError::Storage {
                url: String::new(),
                message: format!("the state writer ended early ({e})"),
                source: None,
            }),
            state: crate::state::State::empty(),
        },
    };
    let outcomes = in_order(&graph)
        .into_iter()
        .map(|i| OpOutcome {
            op: graph.graph[petgraph::graph::NodeIndex::new(i)].clone(),
            status: statuses[i].take().unwrap_or(OpStatus::Skipped {
                because: "it never ran".to_string(),
            }),
        })
        .collect();
    let mut state = written.state;
    state
        .resources
        .sort_by(|a, b| crate::state::address_cmp(&a.address, &b.address));
    let mut version = written.version;
    let mut error = written.error;
    if error.is_none() {
        let values = super::outputs::evaluate(&outputs, &state);
        if values != state.outputs {
            let mut next = state.clone();
            next.outputs = values;
            next.serial += 1;
            match output_store.write(&next, version.as_ref()).await {
                Ok(v) => {
                    version = Some(v);
                    state = next;
                }
                Err(e) => error = Some(e),
            }
        }
    }
    ApplyReport {
        outcomes,
        state,
        version,
        cancelled: cancel.is_cancelled(),
        error: error.map(ApplyError::State),
    }
}

/// One operation's task: its outcome, told to its dependents.
async fn node(
    shared: Arc<Shared>,
    op: Operation,
    deps: Vec<watch::Receiver<Option<Signal>>>,
    tx: watch::Sender<Option<Signal>>,
) -> OpStatus {
    let status = run_node(&shared, &op, deps).await;
    let signal = match &status {
        OpStatus::Done { .. } | OpStatus::Kept => Signal::Ok,
        OpStatus::Failed { .. } => Signal::NotRun(format!("{} failed", op.address)),
        OpStatus::Skipped { because } => Signal::NotRun(because.clone()),
    };
    tx.send_replace(Some(signal));
    status
}

async fn run_node(
    shared: &Shared,
    op: &Operation,
    deps: Vec<watch::Receiver<Option<Signal>>>,
) -> OpStatus {
    for mut rx in deps {
        let signal = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => Some(Signal::NotRun(
                "a dependency ended without an outcome".to_string(),
            )),
        };
        if let Some(Signal::NotRun(because)) = signal {
            return skipped(shared, op, because);
        }
    }
    if op.step == Step::Keep {
        return OpStatus::Kept;
    }
    if shared.is_stopping() {
        return skipped(shared, op, halt_reason(shared));
    }
    let key = match ops::start_key(shared, op) {
        Ok(k) => k,
        Err(error) => return failed(shared, op, error, std::time::Duration::ZERO),
    };
    let slot = tokio::select! {
        slot = shared.limits.slot(key) => slot,
        () = shared.stopped() => return skipped(shared, op, halt_reason(shared)),
    };
    if shared.is_stopping() {
        return skipped(shared, op, halt_reason(shared));
    }
    shared.events.emit(Event::Started { op: op.clone() });
    let started = Instant::now();
    match ops::execute(shared, op, slot).await {
        Ok(done) => {
            let provider_id = done.provider_id;
            let recorded = shared.recorder.record(done.mutation).await;
            let elapsed = started.elapsed();
            match recorded {
                Ok(()) => {
                    shared.events.emit(Event::Finished {
                        op: op.clone(),
                        elapsed,
                        provider_id: provider_id.clone(),
                        adopted: done.adopted,
                    });
                    OpStatus::Done {
                        elapsed,
                        provider_id,
                        offer: done.offer,
                        adopted: done.adopted,
                    }
                }
                Err(why) => {
                    let what = provider_id.unwrap_or_else(|| op.address.clone());
                    failed(shared, op, OpError::NotRecorded { what, why }, elapsed)
                }
            }
        }
        Err(error) => failed(shared, op, error, started.elapsed()),
    }
}

impl Shared {
    /// Whether to start nothing more: the user cancelled, or a state write failed.
    fn is_stopping(&self) -> bool {
        self.cancel.is_cancelled() || self.halt.is_cancelled()
    }

    /// Completes when [`Shared::is_stopping`] becomes true.
    async fn stopped(&self) {
        tokio::select! {
            () = self.cancel.cancelled() => {}
            () = self.halt.cancelled() => {}
        }
    }
}

fn halt_reason(shared: &Shared) -> String {
    if shared.cancel.is_cancelled() {
        "the apply was cancelled".to_string()
    } else {
        "the apply stopped: the state could not be written".to_string()
    }
}

fn skipped(shared: &Shared, op: &Operation, because: String) -> OpStatus {
    shared.events.emit(Event::Skipped {
        op: op.clone(),
        because: because.clone(),
    });
    OpStatus::Skipped { because }
}

fn failed(
    shared: &Shared,
    op: &Operation,
    error: OpError,
    elapsed: std::time::Duration,
) -> OpStatus {
    shared.events.emit(Event::Failed {
        op: op.clone(),
        error: error.clone(),
        elapsed,
    });
    OpStatus::Failed { error, elapsed }
}

/// Node indices in an order that respects every edge, ties by plan order (as
/// [`OperationGraph::order`]).
fn in_order(g: &OperationGraph) -> Vec<usize> {
    let n = g.graph.node_count();
    let mut indegree = vec![0usize; n];
    for e in g.graph.edge_indices() {
        if let Some((_, b)) = g.graph.edge_endpoints(e) {
            indegree[b.index()] += 1;
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|i| indegree[*i] == 0).collect();
    let mut out = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        out.push(i);
        for m in g.graph.neighbors(petgraph::graph::NodeIndex::new(i)) {
            indegree[m.index()] -= 1;
            if indegree[m.index()] == 0 {
                ready.insert(m.index());
            }
        }
    }
    out
}
