//! Refresh: what the providers say exists, folded into the state a plan is made against.
//!
//! The CLI asks each provider ([`crate::provider::Provider::refresh`], batched) about the
//! resources the state holds and hands the answers here as plain data, one
//! [`Observed`] per address; this module does no I/O. As Terraform does, the plan is then made
//! against the refreshed state: a resource deleted outside flotilla is dropped from it (so the
//! planner creates it again), and one changed outside flotilla takes its observed attributes
//! (so the planner corrects what it compares: an instance's tags, a gateway's targets). What
//! refresh found is recorded in the plan as [`Drift`], and the renderers show it under
//! "Changed outside flotilla".
//!
//! The refreshed state keeps the lineage and serial of the state read, so a saved plan's
//! staleness check compares against what is stored. A saved plan carries its drift, and
//! [`forget_gone`] applies the deletions to the stored state before the plan is carried out.

use super::{Action, Plan};
use crate::provider::Observed;
use crate::state::{ResourceKind, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// One resource that changed outside flotilla.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// Its address.
    pub address: String,
    /// What it is.
    pub kind: ResourceKind,
    /// Whether it is gone (terminated or deleted outside flotilla).
    pub gone: bool,
    /// For one that still exists, the attributes that differ from the state's record, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<AttributeDrift>,
}

/// One attribute changed outside flotilla.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeDrift {
    /// The attribute (`tags`, `targets`, `private_ip`…).
    pub name: String,
    /// What the state recorded (`null` when it recorded nothing).
    pub before: Value,
    /// What the provider reports now (`null` when it reports nothing).
    pub after: Value,
}

/// The state after refresh, and what refresh found.
#[derive(Debug, Clone, PartialEq)]
pub struct Refreshed {
    /// The state to plan against: gone resources removed (and counted in
    /// [`State::generations`]), changed ones with their observed attributes and zone. Same
    /// lineage and serial as the state read.
    pub state: State,
    /// Every resource that changed outside flotilla, in address order.
    pub drift: Vec<Drift>,
}

impl Refreshed {
    /// A state that was not refreshed (`--refresh=false`): as read, with no drift.
    pub fn unrefreshed(state: State) -> Refreshed {
        Refreshed {
            state,
            drift: Vec::new(),
        }
    }
}

/// Folds the providers' answers into `state`. `observed` maps an address to what its
/// provider said; a resource with no answer (its provider was not asked) is kept as it is.
///
/// Only attributes the provider reports are compared, and only those the state recorded too:
/// what the executor records from the configuration (a volume's `attached_to`, a gateway's
/// `domain`) is not echoed by every provider, and its absence is not a change.
pub fn refresh(state: &State, observed: &BTreeMap<String, Observed>) -> Refreshed {
    // One pass that rebuilds the resource list, so a large state refreshes in linear time.
    let mut refreshed = State {
        resources: Vec::with_capacity(state.resources.len()),
        ..state.clone()
    };
    let mut drift = Vec::new();
    for r in &state.resources {
        let Some(answer) = observed.get(&r.address) else {
            refreshed.resources.push(r.clone());
            continue;
        };
        match answer {
            Observed::Gone => {
                // As `State::forget` counts it: the next create here gets a new token.
                *refreshed.generations.entry(r.address.clone()).or_insert(0) += 1;
                drift.push(Drift {
                    address: r.address.clone(),
                    kind: r.kind,
                    gone: true,
                    attributes: Vec::new(),
                });
            }
            Observed::Exists(now) => {
                let mut changed = Vec::new();
                let mut kept = r.clone();
                for (name, after) in &now.attributes {
                    // A key the state never recorded is new information, not a change.
                    if let Some(before) = r.attributes.get(name)
                        && !same(before, after)
                    {
                        changed.push(AttributeDrift {
                            name: name.clone(),
                            before: before.clone(),
                            after: after.clone(),
                        });
                    }
                    kept.attributes.insert(name.clone(), after.clone());
                }
                if !now.zone.is_empty() {
                    kept.zone = now.zone.clone();
                }
                refreshed.resources.push(kept);
                if !changed.is_empty() {
                    changed.sort_by(|a, b| a.name.cmp(&b.name));
                    drift.push(Drift {
                        address: r.address.clone(),
                        kind: r.kind,
                        gone: false,
                        attributes: changed,
                    });
                }
            }
        }
    }
    drift.sort_by(|a, b| crate::state::address_cmp(&a.address, &b.address));
    Refreshed {
        state: refreshed,
        drift,
    }
}

/// Equal as values: `100` and `100.0` are the same size, whichever way a provider writes it.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Applies a saved plan's recorded deletions to the state it is applied to: each resource the
/// plan found gone is removed (and counted in [`State::generations`]), as the refresh that made
/// the plan did, so the plan's creates start from the state the plan saw.
pub fn forget_gone(state: &mut State, drift: &[Drift]) {
    for d in drift.iter().filter(|d| d.gone) {
        state.forget(&d.address);
    }
}

/// Records `drift` in `plan` and says on each change that corrects it why: a resource created
/// again was `deleted outside flotilla`; one updated in place names what changed outside it.
pub(super) fn annotate(plan: &mut Plan, drift: &[Drift]) {
    let by_address: BTreeMap<&str, &Drift> =
        drift.iter().map(|d| (d.address.as_str(), d)).collect();
    for change in &mut plan.changes {
        let Some(d) = by_address.get(change.address.as_str()) else {
            continue;
        };
        match change.action {
            Action::Create if d.gone => change.reason = "deleted outside flotilla".to_string(),
            Action::Update if !d.gone => {
                let names: Vec<&str> = d.attributes.iter().map(|a| a.name.as_str()).collect();
                let outside = format!("{} changed outside flotilla", names.join(", "));
                // "tags changed" says the same thing again.
                change.reason = if change.reason.ends_with(" changed")
                    && names.iter().any(|n| change.reason.starts_with(n))
                {
                    outside
                } else {
                    format!("{outside}; {}", change.reason)
                };
            }
            _ => {}
        }
    }
    plan.drift = drift.to_vec();
}
