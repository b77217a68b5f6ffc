//! The stable plan JSON of `docs/plan-json.md` (`--format json`, `show --json`).
//!
//! Scripts and CI read this, so it is built by hand rather than derived from [`Plan`]'s serde
//! form: the document's keys and their order are a promise, and renaming a field inside the
//! planner must not break it. The required keys come first, in the design's order; the
//! additional keys (`forces_replacement`, `notes`, `config_digest`, `catalog`, `catalog_source`,
//! `destroy`, `drift` when refresh found any, and `hosts` when bare-metal hosts have notes) follow them. Costs are rounded to cents. Saved plan files (`plan --out`) are a different document:
//! the whole [`Plan`] through serde.

use super::cents;
use crate::plan::{Change, Plan};
use serde_json::{Map, Value, json as j};

/// The plan as the documented JSON schema, pretty-printed with two-space indents, with a
/// trailing newline. Every change is listed, no-ops included, in plan order.
pub fn json(plan: &Plan) -> String {
    let mut doc = Map::new();
    doc.insert("format_version".into(), j!(plan.format_version));
    doc.insert("flotilla_version".into(), j!(plan.flotilla_version));
    doc.insert(
        "state".into(),
        j!({ "lineage": plan.state.lineage, "serial": plan.state.serial }),
    );
    doc.insert(
        "changes".into(),
        Value::Array(plan.changes.iter().map(change).collect()),
    );
    doc.insert(
        "summary".into(),
        j!({
            "add": plan.summary.add,
            "change": plan.summary.change,
            "destroy": plan.summary.destroy,
        }),
    );
    let c = plan.cost;
    doc.insert(
        "cost".into(),
        j!({
            "before_per_hour": usd(c.before_per_hour),
            "after_per_hour": usd(c.after_per_hour),
            "delta_per_hour": usd(c.delta_per_hour),
            "delta_per_month": usd(c.delta_per_month),
        }),
    );
    // Additional keys, documented as such.
    doc.insert("config_digest".into(), j!(plan.config_digest));
    doc.insert("catalog".into(), j!(plan.catalog));
    doc.insert("catalog_source".into(), catalog_source(plan));
    doc.insert("destroy".into(), j!(plan.destroy));
    if !plan.drift.is_empty() {
        doc.insert("drift".into(), drift(plan));
    }
    if !plan.hosts.is_empty() {
        doc.insert("hosts".into(), hosts(plan));
    }

    let mut out =
        serde_json::to_string_pretty(&Value::Object(doc)).expect("a JSON value serialises");
    out.push('\n');
    out
}

/// `hosts`: the bare-metal host report, one entry per note in host order (docs/plan-json.md).
fn hosts(plan: &Plan) -> Value {
    plan.hosts
        .iter()
        .map(|n| {
            j!({
                "host": n.host,
                "kind": n.kind,
                "detail": n.detail,
                "message": n.message(),
            })
        })
        .collect()
}

/// `catalog_source`: which catalog priced the plan, as data (docs/plan-json.md).
fn catalog_source(plan: &Plan) -> Value {
    let s = &plan.catalog_source;
    j!({
        "kind": s.kind.as_str(),
        "path": s.path,
        "fetched_at": s.fetched_at,
        "age_seconds": s.age_seconds,
        "offers": s.offers,
    })
}

/// `drift`: what refresh found changed outside flotilla, one entry per resource in address
/// order: `change` is `deleted` or `changed`, and a changed one lists its attributes.
fn drift(plan: &Plan) -> Value {
    Value::Array(
        plan.drift
            .iter()
            .map(|d| {
                let attributes: Vec<Value> = d
                    .attributes
                    .iter()
                    .map(|a| j!({ "name": a.name, "before": a.before, "after": a.after }))
                    .collect();
                j!({
                    "address": d.address,
                    "kind": d.kind.as_str(),
                    "change": if d.gone { "deleted" } else { "changed" },
                    "attributes": attributes,
                })
            })
            .collect(),
    )
}

/// One change: the required keys, then `forces_replacement` and `notes` (always present).
fn change(c: &Change) -> Value {
    let mut m = Map::new();
    m.insert("address".into(), j!(c.address));
    m.insert("kind".into(), j!(c.kind.as_str()));
    m.insert("action".into(), j!(c.action.as_str()));
    m.insert("reason".into(), j!(c.reason));
    m.insert("depends_on".into(), j!(c.depends_on));
    m.insert("before".into(), attributes(c.before.as_ref()));
    m.insert("after".into(), attributes(c.after.as_ref()));
    m.insert("forces_replacement".into(), j!(c.forces_replacement));
    m.insert("notes".into(), j!(c.notes));
    Value::Object(m)
}

/// `before`/`after`: the planner's attribute map as it is (its key order kept), or `null`.
fn attributes(map: Option<&Map<String, Value>>) -> Value {
    map.map_or(Value::Null, |m| Value::Object(m.clone()))
}

/// USD rounded to cents; a float even when whole (`0.0`), never `-0.0`.
fn usd(amount: f64) -> f64 {
    let c = cents(amount);
    if c == 0 { 0.0 } else { c as f64 / 100.0 }
}
