//! Renderers: a [`Plan`](super::Plan) as Terraform-style text, the stable JSON of
//! `docs/plan-json.md`, or a pull-request comment in markdown.
//!
//! They live apart from the planner so that the planner decides *what* happens and these only
//! decide how it reads: every renderer is a pure function of the plan. They are deterministic —
//! no clock, no locale, no hash-map iteration, no colour unless asked — because reviewers diff
//! plans, CI compares them and snapshot tests pin them byte for byte.
//!
//! Money is formatted once, here, so the three renderings never disagree: amounts are rounded
//! to cents, printed with two decimals and `,` thousands separators (`160,716.80`).

use serde_json::{Map, Value};

mod json;
mod markdown;
mod text;

#[cfg(test)]
mod tests;

pub use json::json;
pub use markdown::markdown;
pub use text::text;

/// An amount rounded to whole cents, as an integer, with no negative zero.
fn cents(amount: f64) -> i64 {
    if !amount.is_finite() {
        return 0;
    }
    // `as` saturates, so an absurd amount cannot wrap.
    (amount * 100.0).round() as i64
}

/// `1234567.891` → `1,234,567.89`; negative amounts keep their `-`.
fn money(amount: f64) -> String {
    let c = cents(amount);
    let sign = if c < 0 { "-" } else { "" };
    let c = c.unsigned_abs();
    let whole = (c / 100).to_string();
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
    for (i, ch) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("{sign}{grouped}.{:02}", c % 100)
}

/// A difference with its sign: `+220.16`, `-12.00`, and `0.00` when nothing changes.
fn signed_money(amount: f64) -> String {
    let c = cents(amount);
    if c > 0 {
        format!("+{}", money(amount))
    } else {
        money(amount)
    }
}

/// A JSON value as an HCL-ish literal: strings quoted (JSON escapes), numbers and bools bare,
/// arrays `["a", "b"]`, objects `{ key = "v" }`, null `null`.
fn literal(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quoted(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(literal).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) if map.is_empty() => "{}".to_string(),
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{} = {}", key(k), literal(v)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
    }
}

/// A string literal with JSON's escapes (which HCL shares for everything we print).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// An object key: bare when it is an identifier, quoted otherwise.
fn key(k: &str) -> String {
    let ident = !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ident { k.to_string() } else { quoted(k) }
}

/// A string attribute of a change's `before`/`after`, or `""`.
fn attr_str<'a>(map: &'a Map<String, Value>, name: &str) -> &'a str {
    map.get(name).and_then(Value::as_str).unwrap_or("")
}

/// Lays out rows as an aligned table: columns separated by two spaces, `right[i]` columns
/// right-aligned, each line prefixed by `indent`, trailing spaces trimmed.
fn table(rows: &[Vec<String>], right: &[bool], indent: &str) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, cell)| {
                    let pad = " ".repeat(widths[i] - cell.chars().count());
                    if right.get(i).copied().unwrap_or(false) {
                        format!("{pad}{cell}")
                    } else {
                        format!("{cell}{pad}")
                    }
                })
                .collect();
            format!("{indent}{}", cells.join("  "))
                .trim_end()
                .to_string()
        })
        .collect()
}
