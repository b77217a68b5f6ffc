//! Terraform-style text, what `flotilla plan` prints on a terminal.
//!
//! It follows Terraform's conventions on purpose — `+` create, `~` update in place, `-/+`
//! replace, `-` destroy, one block per resource with aligned attributes, `old -> new` for a
//! changed value, `# forces replacement`, `(known after apply)` — so that anyone who reviews
//! Terraform plans can review a flotilla plan without reading a manual. Attributes are sorted by
//! name (as Terraform does) so the output does not depend on how the planner built its maps.
//!
//! Each action symbol is the first non-blank text of its line; the markdown renderer relies on
//! that to move symbols to column 0 for GitHub's `diff` highlighting.

use super::{cents, literal, money, signed_money, table};
use crate::plan::{Action, Change, HOURS_PER_MONTH, Plan};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::fmt::Write as _;

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";

/// What a `null` in `after` means: the provider assigns it.
const KNOWN_AFTER_APPLY: &str = "(known after apply)";

/// The plan as a terminal shows it; ANSI colour only when `color` (with `color == false` the
/// output holds no escape byte at all).
pub fn text(plan: &Plan, color: bool) -> String {
    let p = Paint { color };
    let mut out = String::new();
    // `write!` to a String cannot fail.
    let _ = writeln!(
        out,
        "State: lineage {}, serial {}. Catalog: {}.",
        plan.state.lineage, plan.state.serial, plan.catalog
    );
    if plan.destroy {
        out.push_str("This is a destroy plan: every resource in the state will be destroyed.\n");
    }
    out.push('\n');
    hosts(&mut out, plan);
    drift(&mut out, &p, plan);

    let changing: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .collect();

    if !changing.is_empty() {
        legend(&mut out, &p, &changing);
        out.push_str("flotilla will perform the following actions:\n\n");
        for change in &changing {
            block(&mut out, &p, change);
            out.push('\n');
        }
    }

    let kept_with_notes: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.action == Action::NoOp && !c.notes.is_empty())
        .collect();
    if !kept_with_notes.is_empty() {
        out.push_str("Notes on unchanged resources:\n\n");
        for change in kept_with_notes {
            let _ = writeln!(
                out,
                "{}",
                p.bold(&format!(
                    "  # {} will be kept{}",
                    change.address,
                    parenthesised(&change.reason)
                ))
            );
            notes(&mut out, &p, change);
            out.push('\n');
        }
    }

    if changing.is_empty() {
        out.push_str("No changes. Your fleets match the configuration.\n");
        return out;
    }

    offers(&mut out, plan);
    cost(&mut out, plan);
    let s = plan.summary;
    let _ = writeln!(
        out,
        "{} {} to add, {} to change, {} to destroy.",
        p.bold("Plan:"),
        s.add,
        s.change,
        s.destroy
    );
    out
}

/// "Bare-metal hosts": keys trusted on first use and hosts not offered, before the actions,
/// so a reviewer checks a new fingerprint before approving. Nothing when there is no note.
fn hosts(out: &mut String, plan: &Plan) {
    if plan.hosts.is_empty() {
        return;
    }
    out.push_str("Bare-metal hosts:\n");
    for note in &plan.hosts {
        let _ = writeln!(out, "  {}", note.message());
    }
    out.push('\n');
}

/// "Changed outside flotilla": what refresh found, before the actions that correct it (as
/// Terraform's "Objects have changed outside of Terraform"). Nothing when there is no drift.
fn drift(out: &mut String, p: &Paint, plan: &Plan) {
    if plan.drift.is_empty() {
        return;
    }
    out.push_str("Changed outside flotilla:\n\n");
    for d in &plan.drift {
        if d.gone {
            let _ = writeln!(
                out,
                "{}",
                p.bold(&format!("  # {} was deleted outside flotilla", d.address))
            );
            continue;
        }
        let _ = writeln!(
            out,
            "{}",
            p.bold(&format!("  # {} was changed outside flotilla", d.address))
        );
        let width = d.attributes.iter().map(|a| a.name.len()).max().unwrap_or(0);
        for a in &d.attributes {
            let _ = writeln!(
                out,
                "    {} {:<width$} = {} -> {}",
                p.symbol("~"),
                a.name,
                literal(&a.before),
                literal(&a.after)
            );
        }
    }
    out.push('\n');
}

/// ANSI colouring that is a no-op when colour is off.
struct Paint {
    color: bool,
}

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("{code}{s}{RESET}")
        } else {
            s.to_string()
        }
    }

    fn bold(&self, s: &str) -> String {
        self.wrap(BOLD, s)
    }

    /// An action symbol right-aligned in three columns, coloured: green `+`, yellow `~`, red
    /// `-`, red-and-green `-/+`.
    fn symbol(&self, symbol: &str) -> String {
        let pad = " ".repeat(3usize.saturating_sub(symbol.len()));
        let painted = match symbol {
            "+" => self.wrap(GREEN, "+"),
            "~" => self.wrap(YELLOW, "~"),
            "-" => self.wrap(RED, "-"),
            "-/+" => format!("{}/{}", self.wrap(RED, "-"), self.wrap(GREEN, "+")),
            other => other.to_string(),
        };
        format!("{pad}{painted}")
    }
}

/// ` (reason)`, or nothing for an empty reason.
fn parenthesised(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    }
}

/// Terraform's legend, listing only the symbols this plan uses.
fn legend(out: &mut String, p: &Paint, changing: &[&Change]) {
    let used: BTreeSet<Action> = changing.iter().map(|c| c.action).collect();
    out.push_str("Resource actions are indicated with the following symbols:\n");
    for (action, meaning) in [
        (Action::Create, "create"),
        (Action::Update, "update in-place"),
        (Action::Replace, "destroy and then create replacement"),
        (Action::Delete, "destroy"),
    ] {
        if used.contains(&action) {
            let _ = writeln!(out, "{} {meaning}", p.symbol(action.symbol()));
        }
    }
    out.push('\n');
}

/// One resource's block: the `# … will be …` line, the attributes, the notes.
fn block(out: &mut String, p: &Paint, change: &Change) {
    let verb = match change.action {
        Action::Create => "will be created",
        Action::Update => "will be updated in-place",
        Action::Replace => "must be replaced",
        Action::Delete => "will be destroyed",
        Action::NoOp => "will be kept",
    };
    let _ = writeln!(
        out,
        "{}",
        p.bold(&format!(
            "  # {} {verb}{}",
            change.address,
            parenthesised(&change.reason)
        ))
    );
    let _ = writeln!(
        out,
        "{} {} \"{}\" {{",
        p.symbol(change.action.symbol()),
        change.kind.as_str(),
        change.address
    );
    let rows = attribute_rows(change);
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    for row in rows {
        let forces = if change.forces_replacement.contains(&row.name) {
            " # forces replacement"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "    {} {:<width$} = {}{forces}",
            p.symbol(row.symbol),
            row.name,
            row.value
        );
    }
    out.push_str("    }\n");
    notes(out, p, change);
}

/// `    ! note` lines.
fn notes(out: &mut String, p: &Paint, change: &Change) {
    for note in &change.notes {
        let _ = writeln!(out, "    {} {note}", p.wrap(YELLOW, "!"));
    }
}

/// One attribute line of a block.
struct Row {
    symbol: &'static str,
    name: String,
    value: String,
}

/// A value in `after`: `null` means the provider assigns it at apply.
fn after_literal(value: &Value) -> String {
    if value.is_null() {
        KNOWN_AFTER_APPLY.to_string()
    } else {
        literal(value)
    }
}

/// The attribute lines of a change, sorted by name.
fn attribute_rows(change: &Change) -> Vec<Row> {
    let empty = Map::new();
    let before = change.before.as_ref().unwrap_or(&empty);
    let after = change.after.as_ref().unwrap_or(&empty);
    match change.action {
        Action::Create => sorted(after)
            .map(|(name, v)| Row {
                symbol: "+",
                name: name.to_string(),
                value: after_literal(v),
            })
            .collect(),
        Action::Delete => sorted(before)
            .map(|(name, v)| Row {
                symbol: "-",
                name: name.to_string(),
                value: format!("{} -> null", literal(v)),
            })
            .collect(),
        Action::Update | Action::Replace | Action::NoOp => {
            let names: BTreeSet<&str> = before
                .keys()
                .chain(after.keys())
                .map(String::as_str)
                .collect();
            names
                .into_iter()
                .map(|name| match (before.get(name), after.get(name)) {
                    (Some(b), Some(a)) if a == b => Row {
                        symbol: " ",
                        name: name.to_string(),
                        value: after_literal(a),
                    },
                    (Some(b), Some(a)) => Row {
                        symbol: "~",
                        name: name.to_string(),
                        value: format!("{} -> {}", literal(b), after_literal(a)),
                    },
                    (None, Some(a)) => Row {
                        symbol: "+",
                        name: name.to_string(),
                        value: after_literal(a),
                    },
                    (Some(b), None) => Row {
                        symbol: "-",
                        name: name.to_string(),
                        value: format!("{} -> null", literal(b)),
                    },
                    (None, None) => unreachable!("name comes from one of the maps"),
                })
                .collect()
        }
    }
}

/// A map's entries sorted by key.
fn sorted(map: &Map<String, Value>) -> impl Iterator<Item = (&str, &Value)> {
    let mut entries: Vec<(&str, &Value)> = map.iter().map(|(k, v)| (k.as_str(), v)).collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries.into_iter()
}

/// Per fleet: how many offers matched and a small table of the chosen one and the next two.
fn offers(out: &mut String, plan: &Plan) {
    if plan.offers.is_empty() {
        return;
    }
    out.push_str("Offers:\n\n");
    for fleet in &plan.offers {
        let matches = if fleet.matched == 1 {
            "1 offer matches".to_string()
        } else {
            format!("{} offers match", fleet.matched)
        };
        let _ = writeln!(
            out,
            "  fleet.{}: {matches}, * is the chosen one",
            fleet.fleet
        );
        if fleet.top.is_empty() {
            out.push('\n');
            continue;
        }
        let zones = fleet.top.iter().any(|o| !o.zone.is_empty());
        let mut header = vec!["", "PROVIDER", "REGION"];
        if zones {
            header.push("ZONE");
        }
        header.extend(["INSTANCE TYPE", "GPUS", "SPOT", "$/H"]);
        let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
        for (i, offer) in fleet.top.iter().enumerate() {
            let mut row = vec![
                if i == 0 { "*" } else { "" }.to_string(),
                offer.provider.as_str().to_string(),
                offer.region.clone(),
            ];
            if zones {
                row.push(offer.zone.clone());
            }
            row.extend([
                offer.instance_type.clone(),
                offer.gpu_label(),
                if offer.spot { "yes" } else { "no" }.to_string(),
                money(offer.price_per_hour),
            ]);
            rows.push(row);
        }
        let mut right = vec![false; rows[0].len()];
        if let Some(last) = right.last_mut() {
            *last = true;
        }
        for line in table(&rows, &right, "    ") {
            out.push_str(&line);
            out.push('\n');
        }
        out.push('\n');
    }
}

/// Before, after and delta, per hour and per 730-hour month.
///
/// The monthly column is made to add up and to agree with the JSON and markdown: the delta is
/// the plan's `delta_per_month`, before is `before_per_hour` × 730, and after is before plus
/// delta (the plan's hourly figures are rounded to cents, so `after_per_hour` × 730 could be a
/// few dollars off the exact monthly delta).
fn cost(out: &mut String, plan: &Plan) {
    let c = plan.cost;
    let before_month = cents(c.before_per_hour * HOURS_PER_MONTH);
    let delta_month = cents(c.delta_per_month);
    let after_month = (before_month + delta_month) as f64 / 100.0;
    let (before_month, delta_month) = (before_month as f64 / 100.0, delta_month as f64 / 100.0);
    out.push_str("Cost (USD):\n\n");
    let rows = vec![
        vec![
            String::new(),
            "per hour".to_string(),
            format!("per {HOURS_PER_MONTH}-hour month"),
        ],
        vec![
            "before".to_string(),
            money(c.before_per_hour),
            money(before_month),
        ],
        vec![
            "after".to_string(),
            money(c.after_per_hour),
            money(after_month),
        ],
        vec![
            "delta".to_string(),
            signed_money(c.delta_per_hour),
            signed_money(delta_month),
        ],
    ];
    for line in table(&rows, &[false, true, true], "  ") {
        out.push_str(&line);
        out.push('\n');
    }
    out.push('\n');
}
