//! `flotilla offers`: the offers that satisfy some resources, cheapest first.
//!
//! The same query a fleet's `resources` block makes, from flags, so a team can see what a fleet
//! would get (and what it would cost) before writing it down. Flags take the fleet files'
//! grammar, and their errors name the flag. A query that matches nothing is an answer, not a
//! failure: it exits 0 and says which constraint emptied the list.

use crate::args::{OffersArgs, OffersFormat, SpotPolicyArg};
use anyhow::{Context as _, bail};
use comfy_table::{Attribute, Cell, CellAlignment, Color, ContentArrangement, Table};
use flotilla_core::catalog::{Catalog, Offer, ProviderKind, Query, SpotPolicy, format_price};
use flotilla_core::spec::{self, Memory, SpecError};
use std::process::ExitCode;

pub(crate) fn run(args: &OffersArgs, color: bool) -> anyhow::Result<ExitCode> {
    let query = build_query(args)?;
    let catalog = super::plan::load_catalog(args.catalog.as_deref())?;

    // One lazy pass: keep the first `limit` (the cheapest), count the rest.
    let mut shown: Vec<&Offer> = Vec::new();
    let mut total = 0usize;
    for offer in catalog.query(&query) {
        if shown.len() < args.limit {
            shown.push(offer);
        }
        total += 1;
    }

    match args.format {
        OffersFormat::Json => {
            let rows: Vec<serde_json::Value> = shown.iter().map(|o| offer_json(o)).collect();
            let mut text = serde_json::to_string_pretty(&rows)?;
            text.push('\n');
            crate::printer::stdout(&text)?;
            if total == 0 {
                crate::printer::info(&format!(
                    "No offers match: {}.",
                    catalog.explain_empty(&query)
                ));
            }
        }
        OffersFormat::Text => {
            let text = if total == 0 {
                format!("No offers match: {}.\n", catalog.explain_empty(&query))
            } else {
                format!(
                    "{}\n{}\n",
                    table(&shown, color).trim_fmt(),
                    summary(&query, &catalog, shown.len(), total)
                )
            };
            crate::printer::stdout(&text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The query the flags describe; `Resources::default()` supplies cpu `2..` and memory `8GB..`
/// as in a fleet's `resources` block.
fn build_query(args: &OffersArgs) -> anyhow::Result<Query> {
    let mut query = Query {
        spot_policy: match args.spot_policy {
            SpotPolicyArg::Spot => SpotPolicy::Spot,
            SpotPolicyArg::OnDemand => SpotPolicy::OnDemand,
            SpotPolicyArg::Auto => SpotPolicy::Auto,
        },
        regions: args.regions.clone(),
        ..Query::default()
    };
    if let Some(s) = &args.gpu {
        query.resources.gpu = Some(flag("--gpu", s, spec::parse_gpu(s))?);
    }
    if let Some(s) = &args.cpu {
        query.resources.cpu = flag("--cpu", s, spec::parse_count(s))?;
    }
    if let Some(s) = &args.memory {
        query.resources.memory = flag("--memory", s, spec::parse_memory_range(s))?;
    }
    if let Some(max) = args.max_price {
        if !(max.is_finite() && max >= 0.0) {
            bail!(
                "--max-price {max}: expected a price in USD per node-hour, 0 or more, such as `40`"
            );
        }
        query.max_price = Some(max);
    }
    for p in &args.providers {
        let kind = ProviderKind::parse(&p.to_ascii_lowercase()).with_context(|| {
            let valid: Vec<&str> = ProviderKind::ALL.iter().map(|k| k.as_str()).collect();
            format!(
                "--provider \"{p}\": unknown provider; expected one of {}",
                valid.join(", ")
            )
        })?;
        if !query.providers.contains(&kind) {
            query.providers.push(kind);
        }
    }
    Ok(query)
}

/// A grammar error as the user should see it: the flag and its value, a caret under the
/// offending token, and the hint.
fn flag<T>(name: &str, value: &str, parsed: Result<T, SpecError>) -> anyhow::Result<T> {
    parsed.map_err(|e| {
        let mut msg = format!("{name} \"{value}\": {}", e.message);
        if !value.is_empty() {
            let pad = value.get(..e.offset).map_or(0, |s| s.chars().count());
            let width = value
                .get(e.offset..e.offset + e.len)
                .map_or(1, |s| s.chars().count().max(1));
            msg.push_str(&format!(
                "\n    {value}\n    {}{}",
                " ".repeat(pad),
                "^".repeat(width)
            ));
        }
        if let Some(hint) = &e.hint {
            msg.push_str(&format!("\nhint: {hint}"));
        }
        anyhow::anyhow!(msg)
    })
}

/// Memory for people: `80GB`, `2TB`, `7.5GB` (the grammar's own form when it is whole).
fn memory_text(m: Memory) -> String {
    if m.mib().is_multiple_of(1024) || m.mib() < 1024 {
        m.to_string()
    } else {
        let gib = format!("{:.2}", m.gib());
        format!("{}GB", gib.trim_end_matches('0').trim_end_matches('.'))
    }
}

fn table(offers: &[&Offer], color: bool) -> Table {
    let mut table = Table::new();
    table
        // No borders and no lines between rows: only a rule under the header, like `kubectl get`.
        .load_preset("     ──            ")
        // Never wrap to the terminal's width: the same query prints the same table everywhere.
        .set_content_arrangement(ContentArrangement::Disabled);
    if color {
        table.enforce_styling();
    } else {
        table.force_no_tty();
    }
    let header = [
        "provider",
        "region",
        "instance type",
        "GPUs",
        "vCPUs",
        "memory",
        "spot",
        "$/h",
    ];
    table.set_header(header.iter().map(|h| {
        let cell = Cell::new(h);
        if color {
            cell.add_attribute(Attribute::Bold)
        } else {
            cell
        }
    }));
    for o in offers {
        let gpus = if o.gpu_count == 0 {
            "-".to_string()
        } else {
            o.gpu_label()
        };
        let price = Cell::new(format_price(o.price_per_hour));
        table.add_row(vec![
            Cell::new(o.provider.as_str()),
            Cell::new(&o.region),
            Cell::new(&o.instance_type),
            Cell::new(gpus),
            Cell::new(o.vcpus),
            Cell::new(memory_text(o.memory)),
            Cell::new(if o.spot { "yes" } else { "no" }),
            if color { price.fg(Color::Green) } else { price },
        ]);
    }
    // Flush left: no padding before the first column.
    if let Some(c) = table.column_mut(0) {
        c.set_padding((0, 1));
    }
    for col in [4, 5, 7] {
        if let Some(c) = table.column_mut(col) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}

/// `Showing 20 of 48 offers matching gpu H100:8, on-demand (catalog: embedded snapshot, 3478
/// offers).`
fn summary(query: &Query, catalog: &Catalog, shown: usize, total: usize) -> String {
    let noun = if total == 1 { "offer" } else { "offers" };
    let mut s = format!(
        "Showing {shown} of {total} {noun} matching {} (catalog: {}, {} offers).",
        query.describe(),
        catalog.source(),
        catalog.len()
    );
    if shown < total {
        s.push_str(" Use --limit to see more.");
    }
    s
}

/// A number of GiB, whole when it is (`80`, not `80.0`).
fn gib_json(m: Memory) -> serde_json::Value {
    if m.mib().is_multiple_of(1024) {
        (m.mib() / 1024).into()
    } else {
        m.gib().into()
    }
}

/// One offer with exactly the documented keys, in this order.
fn offer_json(o: &Offer) -> serde_json::Value {
    serde_json::json!({
        "provider": o.provider.as_str(),
        "region": o.region,
        "zone": o.zone,
        "instance_type": o.instance_type,
        "gpu_vendor": o.gpu_vendor.map(|v| v.as_str()),
        "gpu_name": o.gpu_name,
        "gpu_count": o.gpu_count,
        "gpu_memory_gib": gib_json(o.gpu_memory),
        "vcpus": o.vcpus,
        "memory_gib": gib_json(o.memory),
        "spot": o.spot,
        "price_per_hour": o.price_per_hour,
    })
}
