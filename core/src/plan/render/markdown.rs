//! A pull-request comment (`--format markdown`), for CI bots that post the plan on a PR.
//!
//! A reviewer first wants to know what the change costs, so the first line leads with the
//! monthly cost change (as Infracost does), then the counts. A table lists the changes, notes
//! that need attention follow as a list, and the full text plan is folded in `<details>` inside
//! a ```` ```diff ```` block so GitHub colours it.
//!
//! GitHub's diff highlighting only looks at the first character of a line, so each line of the
//! text plan whose first non-blank text is an action symbol has that symbol moved to column 0
//! (`      + gpu = …` becomes `+       gpu = …`, same width); `~` becomes `!`, which the diff
//! grammar highlights as a change (Atlantis and tfcmt do the same). `-/+` already starts its
//! line. Notes (`    ! …`) stay indented, so they are not mistaken for changes.
//!
//! A comment must stay under GitHub's 65,536 characters, so a huge plan (thousands of nodes) is
//! cut: the folded plan first, then the table; the summary and the notes always stay.

use super::{attr_str, money, text};
use crate::plan::{Action, Change, Plan};
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// GitHub's limit on a comment's body, in characters; [`markdown`] stays under it.
const GITHUB_COMMENT_LIMIT: usize = 65_536;

/// The plan as a GitHub pull-request comment: summary with the cost change first, a table of
/// changes, notes, and the full text plan folded in `<details>` inside a ```diff block. Ends
/// with a newline.
///
/// A comment longer than GitHub accepts (65,536 characters) is cut to fit: first the folded
/// plan loses its last lines, then the table its last rows, each saying how much is not shown.
/// The summary line and the notes are always kept.
pub fn markdown(plan: &Plan) -> String {
    markdown_within(plan, GITHUB_COMMENT_LIMIT)
}

/// [`markdown`] with the size limit as a parameter (bytes, which never undercount characters).
pub(super) fn markdown_within(plan: &Plan, limit: usize) -> String {
    let mut head = String::new();
    if !plan.has_changes() {
        head.push_str("**flotilla plan**: no changes. Your fleets match the configuration.\n");
        hosts(&mut head, plan);
        drift(&mut head, plan);
        notes(&mut head, plan);
        return head;
    }

    let s = plan.summary;
    let _ = writeln!(
        head,
        "**flotilla plan**: {} · {} to add, {} to change, {} to destroy",
        cost_phrase(plan),
        s.add,
        s.change,
        s.destroy
    );
    let _ = writeln!(head, "\n{}", catalog_line(plan));
    hosts(&mut head, plan);
    drift(&mut head, plan);
    head.push('\n');
    head.push_str("| Action | Address | Kind | Reason | Offer | $/h |\n");
    head.push_str("|---|---|---|---|---|--:|\n");

    let rows: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .map(|change| {
            format!(
                "| `{}` {} | `{}` | {} | {} | {} | {} |\n",
                change.action.symbol(),
                change.action.as_str(),
                change.address.replace('`', "'"),
                change.kind.as_str(),
                cell(&change.reason),
                cell(&offer(change)),
                cell(&price(change)),
            )
        })
        .collect();

    let mut tail = String::new();
    notes(&mut tail, plan);

    let body = diff_lines(&text(plan, false));
    let fence = "`".repeat(longest_backtick_run(&body).max(2) + 1);
    let open = format!("\n<details><summary>Full plan</summary>\n\n{fence}diff\n");
    let close = format!("{fence}\n\n</details>\n");

    // What is always kept, plus room for the two "not shown" lines.
    const CUT_LINE: usize = 120;
    let fixed = head.len() + tail.len() + open.len() + close.len() + 2 * CUT_LINE;
    let mut budget = limit.saturating_sub(fixed);

    let mut out = head;
    let shown = fit(&rows, budget);
    for row in &rows[..shown] {
        out.push_str(row);
    }
    budget -= rows[..shown].iter().map(String::len).sum::<usize>();
    if shown < rows.len() {
        let _ = writeln!(
            out,
            "| | … | | {} more changes not shown; run `flotilla plan` for all of them | | |",
            rows.len() - shown
        );
    }
    out.push_str(&tail);

    out.push_str(&open);
    let lines: Vec<String> = body.lines().map(|l| format!("{l}\n")).collect();
    let shown = fit(&lines, budget);
    for line in &lines[..shown] {
        out.push_str(line);
    }
    if shown < lines.len() {
        let _ = writeln!(
            out,
            "... {} more lines not shown; run `flotilla plan` for the full plan",
            lines.len() - shown
        );
    }
    out.push_str(&close);
    out
}

/// `Catalog: cache ~/.cache/flotilla/aws.csv, refreshed 3 hours ago (3478 offers).`: which
/// prices the reviewer is looking at, and how old they are.
fn catalog_line(plan: &Plan) -> String {
    format!("Catalog: {}.", plan.catalog)
}

/// How many of `items`, from the first, fit in `budget` bytes.
fn fit(items: &[String], budget: usize) -> usize {
    let mut used = 0;
    items
        .iter()
        .take_while(|item| {
            used += item.len();
            used <= budget
        })
        .count()
}

/// `monthly cost will increase by $160,716.80 (+$220.16/h)`, `… decrease by …`, or
/// `monthly cost will not change`.
fn cost_phrase(plan: &Plan) -> String {
    let c = plan.cost;
    let month = super::cents(c.delta_per_month);
    let hour = super::cents(c.delta_per_hour);
    if month == 0 && hour == 0 {
        return "monthly cost will not change".to_string();
    }
    let (direction, sign) = if month > 0 || (month == 0 && hour > 0) {
        ("increase", "+")
    } else {
        ("decrease", "-")
    };
    format!(
        "monthly cost will {direction} by ${} ({sign}${}/h)",
        money(c.delta_per_month.abs()),
        money(c.delta_per_hour.abs())
    )
}

/// The notes of every change, no-ops included, as a list after the table.
fn notes(out: &mut String, plan: &Plan) {
    let noted: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| !c.notes.is_empty())
        .collect();
    if noted.is_empty() {
        return;
    }
    out.push_str("\n**Notes**\n\n");
    for change in noted {
        for note in &change.notes {
            let _ = writeln!(
                out,
                "- `{}`: {}",
                change.address.replace('`', "'"),
                inline(note)
            );
        }
    }
}

/// The attributes that describe where a resource runs: the new ones, or the old ones for a
/// delete.
fn placement(change: &Change) -> Option<&Map<String, Value>> {
    match change.action {
        Action::Delete => change.before.as_ref(),
        _ => change.after.as_ref().or(change.before.as_ref()),
    }
}

/// `aws us-east-1a p5.48xlarge (8x H100 80GB)`: provider, zone (else region), instance type,
/// GPUs — whichever the resource has.
fn offer(change: &Change) -> String {
    let Some(m) = placement(change) else {
        return String::new();
    };
    let zone = attr_str(m, "zone");
    let location = if zone.is_empty() {
        attr_str(m, "region")
    } else {
        zone
    };
    let mut parts: Vec<&str> = [
        attr_str(m, "provider"),
        location,
        attr_str(m, "instance_type"),
    ]
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect();
    let gpu = attr_str(m, "gpu");
    let gpu = if gpu.is_empty() || gpu == "none" {
        String::new()
    } else {
        format!("({gpu})")
    };
    if !gpu.is_empty() {
        parts.push(&gpu);
    }
    parts.join(" ")
}

/// The hourly price: `55.04`, `43.07 → 55.04` for a replacement that changes it.
fn price(change: &Change) -> String {
    let get = |m: Option<&Map<String, Value>>| {
        m.and_then(|m| m.get("price_per_hour"))
            .and_then(Value::as_f64)
    };
    let before = get(change.before.as_ref());
    let after = get(change.after.as_ref());
    match (change.action, before, after) {
        (Action::Delete, Some(b), _) => money(b),
        (_, Some(b), Some(a)) if super::cents(a) != super::cents(b) => {
            format!("{} → {}", money(b), money(a))
        }
        (_, _, Some(a)) => money(a),
        _ => String::new(),
    }
}

/// Text safe inside a table cell: `|` escaped, line breaks as spaces.
fn cell(s: &str) -> String {
    inline(s).replace('|', "\\|")
}

/// Text on one line.
fn inline(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// Moves each line's leading action symbol to column 0 (`~` as `!`) so GitHub's diff
/// highlighting colours it; the line keeps its width.
fn diff_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        let rest = line.trim_start_matches(' ');
        let indent = line.len() - rest.len();
        let symbol = ["-/+ ", "+ ", "- ", "~ "]
            .into_iter()
            .find(|s| rest.starts_with(s));
        match symbol {
            Some(s) if indent > 0 => {
                let s = s.trim_end();
                let shown = if s == "~" { "!" } else { s };
                out.push_str(shown);
                out.push_str(&" ".repeat(indent));
                out.push_str(&rest[s.len()..]);
            }
            Some("~ ") => {
                out.push('!');
                out.push_str(&rest[1..]);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The longest run of backticks in `s`, so the fence around it can be longer.
fn longest_backtick_run(s: &str) -> usize {
    let mut longest = 0;
    let mut run = 0;
    for ch in s.chars() {
        if ch == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    longest
}

/// "Bare-metal hosts": one bullet per host note (a key trusted on first use, a host not
/// offered). Nothing when there is none.
fn hosts(out: &mut String, plan: &Plan) {
    if plan.hosts.is_empty() {
        return;
    }
    out.push_str("\n**Bare-metal hosts**\n\n");
    for note in &plan.hosts {
        let _ = writeln!(out, "- {}", inline(&note.message()));
    }
}

/// "Changed outside flotilla": one bullet per resource refresh found deleted or changed, with
/// the changed attributes' old and new values. Nothing when there is no drift.
fn drift(out: &mut String, plan: &Plan) {
    if plan.drift.is_empty() {
        return;
    }
    out.push_str("\n**Changed outside flotilla**\n\n");
    for d in &plan.drift {
        if d.gone {
            let _ = writeln!(
                out,
                "- `{}` was deleted outside flotilla",
                d.address.replace('`', "'")
            );
            continue;
        }
        let what: Vec<String> = d
            .attributes
            .iter()
            .map(|a| {
                format!(
                    "`{}` {} → {}",
                    a.name,
                    code(&super::literal(&a.before)),
                    code(&super::literal(&a.after))
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "- `{}` was changed outside flotilla: {}",
            d.address.replace('`', "'"),
            what.join("; ")
        );
    }
}

/// Inline code on one line, with no backtick to end it early.
fn code(s: &str) -> String {
    format!("`{}`", inline(s).replace('`', "'"))
}
