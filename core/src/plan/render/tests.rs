//! Renderer tests on hand-built plans: one per action and convention, plus snapshots of the
//! three renderings of a plan that uses every action.

use super::markdown::markdown_within;
use super::{json, markdown, money, signed_money, text};
use crate::catalog::{Offer, ProviderKind};
use crate::plan::{
    Action, Change, Cost, FleetOffers, PLAN_FORMAT_VERSION, Plan, StateRef, Summary,
};
use crate::spec::{GpuVendor, Memory};
use crate::state::ResourceKind;
use serde_json::{Map, Value, json as j};

fn attrs(v: Value) -> Option<Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        _ => panic!("attrs takes an object"),
    }
}

fn offer(provider: ProviderKind, region: &str, zone: &str, ty: &str, price: f64) -> Offer {
    Offer {
        provider,
        region: region.to_string(),
        zone: zone.to_string(),
        instance_type: ty.to_string(),
        gpu_vendor: Some(GpuVendor::Nvidia),
        gpu_name: "H100".to_string(),
        gpu_count: 8,
        gpu_memory: Memory::from_gib(80),
        vcpus: 192,
        memory: Memory::from_gib(2048),
        spot: false,
        price_per_hour: price,
    }
}

fn instance_after(provider: &str, region: &str, ty: &str, price: f64, gpu: &str) -> Value {
    j!({
        "provider": provider, "region": region, "zone": "", "instance_type": ty,
        "spot": false, "price_per_hour": price, "gpu": gpu,
        "tags": { "team": "llm" }, "private_ip": null,
    })
}

fn change(address: &str, kind: ResourceKind, action: Action, reason: &str) -> Change {
    Change {
        address: address.to_string(),
        kind,
        action,
        reason: reason.to_string(),
        depends_on: Vec::new(),
        before: None,
        after: None,
        forces_replacement: Vec::new(),
        notes: Vec::new(),
    }
}

fn plan_with(changes: Vec<Change>) -> Plan {
    Plan {
        format_version: PLAN_FORMAT_VERSION.to_string(),
        flotilla_version: "0.1.0".to_string(),
        state: StateRef {
            lineage: "00000000-0000-0000-0000-000000000000".to_string(),
            serial: 7,
        },
        config_digest: "sha256:0123abcd".to_string(),
        catalog: "embedded snapshot".to_string(),
        catalog_source: crate::catalog::CatalogSource::default(),
        changes,
        offers: Vec::new(),
        summary: Summary::default(),
        cost: Cost::default(),
        destroy: false,
        drift: Vec::new(),
        hosts: Vec::new(),
    }
}

/// A plan with every action: two creates, a replacement that forces on two attributes and
/// warns about data loss, an in-place gateway update, a delete, and a kept node with a note.
fn sample() -> Plan {
    let mut vol = change(
        "volume.ckpt[0]",
        ResourceKind::Volume,
        Action::Create,
        "new volume",
    );
    vol.after = attrs(j!({
        "provider": "aws", "region": "us-east-1", "zone": "us-east-1a", "size": "2TB",
        "volume_id": null,
    }));

    let mut create = change(
        "fleet.train[0]",
        ResourceKind::Instance,
        Action::Create,
        "new node",
    );
    create.depends_on = vec!["volume.ckpt[0]".to_string()];
    create.after = attrs(instance_after(
        "aws",
        "us-east-1",
        "p5.48xlarge",
        55.04,
        "8x H100 80GB",
    ));

    let mut replace = change(
        "fleet.train[1]",
        ResourceKind::Instance,
        Action::Replace,
        "gpu: A100 does not match H100",
    );
    let mut before = instance_after("aws", "us-east-1", "p4d.24xlarge", 32.77, "8x A100 40GB");
    before["private_ip"] = j!("10.0.0.12");
    replace.before = attrs(before);
    replace.after = attrs(instance_after(
        "aws",
        "us-east-1",
        "p5.48xlarge",
        55.04,
        "8x H100 80GB",
    ));
    replace.forces_replacement = vec!["gpu".to_string(), "instance_type".to_string()];
    replace.notes = vec!["volume.ckpt[1] moves with it; its data is kept".to_string()];

    let mut kept = change(
        "fleet.train[2]",
        ResourceKind::Instance,
        Action::NoOp,
        "still satisfies fleet train",
    );
    let mut kept_attrs = instance_after("aws", "us-east-1", "p5.48xlarge", 55.04, "8x H100 80GB");
    kept_attrs["private_ip"] = j!("10.0.0.13");
    kept.before = attrs(kept_attrs.clone());
    kept.after = attrs(kept_attrs);
    kept.notes = vec![
        "a cheaper offer exists: gcp a3-highgpu-8g us-central1 at 43.07/h (saves 11.97/h)"
            .to_string(),
    ];

    let mut gateway = change(
        "gateway.serve",
        ResourceKind::Gateway,
        Action::Update,
        "targets changed",
    );
    gateway.depends_on = vec!["fleet.train[0]".to_string(), "fleet.train[1]".to_string()];
    gateway.before = attrs(j!({
        "provider": "aws", "region": "us-east-1", "domain": "llm.acme.com",
        "targets": ["fleet.train[1]", "fleet.train[2]"],
    }));
    gateway.after = attrs(j!({
        "provider": "aws", "region": "us-east-1", "domain": "llm.acme.com",
        "targets": ["fleet.train[0]", "fleet.train[1]", "fleet.train[2]"],
    }));

    let mut delete = change(
        "fleet.old[0]",
        ResourceKind::Instance,
        Action::Delete,
        "fleet removed from the configuration",
    );
    let mut old = instance_after("gcp", "us-central1", "a2-highgpu-8g", 29.39, "8x A100 40GB");
    old["private_ip"] = j!("10.1.0.2");
    delete.before = attrs(old);
    delete.notes = vec!["volume.data[0] will be destroyed: its data will be lost".to_string()];

    let mut plan = plan_with(vec![vol, create, replace, kept, gateway, delete]);
    plan.offers = vec![FleetOffers {
        fleet: "train".to_string(),
        matched: 48,
        top: vec![
            offer(ProviderKind::Aws, "us-east-1", "", "p5.48xlarge", 55.04),
            offer(
                ProviderKind::Gcp,
                "us-central1",
                "us-central1-a",
                "a3-highgpu-8g",
                88.25,
            ),
            offer(
                ProviderKind::Azure,
                "eastus",
                "",
                "Standard_ND96isr_H100_v5",
                98.32,
            ),
        ],
    }];
    plan.summary = Summary {
        add: 3,
        change: 1,
        destroy: 2,
    };
    // Before: train[1] 32.77 + train[2] 55.04 + old[0] 29.39; after: three p5 nodes.
    plan.cost = Cost {
        before_per_hour: 117.2,
        after_per_hour: 165.12,
        delta_per_hour: 47.92,
        delta_per_month: 34981.6,
    };
    plan
}

/// A plan whose only change is `change`.
fn single(change: Change) -> Plan {
    let mut plan = plan_with(vec![change]);
    plan.summary = Summary {
        add: 1,
        change: 0,
        destroy: 0,
    };
    plan
}

fn no_changes() -> Plan {
    let mut kept = change(
        "fleet.train[0]",
        ResourceKind::Instance,
        Action::NoOp,
        "still satisfies fleet train",
    );
    let a = instance_after("aws", "us-east-1", "p5.48xlarge", 55.04, "8x H100 80GB");
    kept.before = attrs(a.clone());
    kept.after = attrs(a);
    let mut plan = plan_with(vec![kept]);
    plan.cost = Cost {
        before_per_hour: 55.04,
        after_per_hour: 55.04,
        delta_per_hour: 0.0,
        delta_per_month: 0.0,
    };
    plan
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

// ---- snapshots ----

#[test]
fn snapshot_text() {
    insta::assert_snapshot!("text", text(&sample(), false));
}

#[test]
fn snapshot_json() {
    insta::assert_snapshot!("json", json(&sample()));
}

#[test]
fn snapshot_markdown() {
    insta::assert_snapshot!("markdown", markdown(&sample()));
}

#[test]
fn snapshot_text_no_changes() {
    insta::assert_snapshot!("text_no_changes", text(&no_changes(), false));
}

#[test]
fn renderings_are_deterministic() {
    let (a, b) = (sample(), sample());
    assert_eq!(text(&a, false), text(&b, false));
    assert_eq!(text(&a, true), text(&b, true));
    assert_eq!(json(&a), json(&b));
    assert_eq!(markdown(&a), markdown(&b));
}

// ---- text ----

#[test]
fn text_create_block() {
    let mut c = change(
        "fleet.train[0]",
        ResourceKind::Instance,
        Action::Create,
        "new node",
    );
    c.after = attrs(
        j!({ "instance_type": "p5.48xlarge", "gpu": "8x H100 80GB", "spot": false,
                         "price_per_hour": 55.04 }),
    );
    let out = text(&single(c), false);
    let expected = [
        "  # fleet.train[0] will be created (new node)",
        "  + instance \"fleet.train[0]\" {",
        "      + gpu            = \"8x H100 80GB\"",
        "      + instance_type  = \"p5.48xlarge\"",
        "      + price_per_hour = 55.04",
        "      + spot           = false",
        "    }",
    ]
    .join("\n");
    assert!(out.contains(&expected), "{out}");
}

#[test]
fn text_update_shows_old_new_and_unchanged() {
    let out = text(&sample(), false);
    let expected = [
        "  # gateway.serve will be updated in-place (targets changed)",
        "  ~ gateway \"gateway.serve\" {",
        "        domain   = \"llm.acme.com\"",
        "        provider = \"aws\"",
        "        region   = \"us-east-1\"",
        "      ~ targets  = [\"fleet.train[1]\", \"fleet.train[2]\"] -> [\"fleet.train[0]\", \"fleet.train[1]\", \"fleet.train[2]\"]",
        "    }",
    ]
    .join("\n");
    assert!(out.contains(&expected), "{out}");
}

#[test]
fn text_replace_symbol_and_forces_replacement() {
    let out = text(&sample(), false);
    assert!(
        out.contains(
            "  # fleet.train[1] must be replaced (gpu: A100 does not match H100)\n\
             -/+ instance \"fleet.train[1]\" {\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "      ~ gpu            = \"8x A100 40GB\" -> \"8x H100 80GB\" # forces replacement\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "      ~ instance_type  = \"p4d.24xlarge\" -> \"p5.48xlarge\" # forces replacement\n"
        ),
        "{out}"
    );
    // A changed attribute that does not force it carries no comment.
    assert!(
        out.contains("      ~ price_per_hour = 32.77 -> 55.04\n"),
        "{out}"
    );
    // Unchanged attributes are printed plainly, maps as HCL-ish objects.
    assert!(
        out.contains("        tags           = { team = \"llm\" }\n"),
        "{out}"
    );
    // A value the provider assigns anew.
    assert!(
        out.contains("      ~ private_ip     = \"10.0.0.12\" -> (known after apply)\n"),
        "{out}"
    );
}

#[test]
fn text_delete_block() {
    let out = text(&sample(), false);
    assert!(
        out.contains(
            "  # fleet.old[0] will be destroyed (fleet removed from the configuration)\n\
             \x20 - instance \"fleet.old[0]\" {\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("      - instance_type  = \"a2-highgpu-8g\" -> null\n"),
        "{out}"
    );
}

#[test]
fn text_null_after_is_known_after_apply() {
    let out = text(&sample(), false);
    assert!(
        out.contains("      + private_ip     = (known after apply)\n"),
        "{out}"
    );
    assert!(
        out.contains("      + volume_id = (known after apply)\n"),
        "{out}"
    );
    assert!(!out.contains("null\n      +"), "{out}");
}

#[test]
fn text_notes_under_block() {
    let out = text(&sample(), false);
    assert!(
        out.contains("    }\n    ! volume.ckpt[1] moves with it; its data is kept\n"),
        "{out}"
    );
    assert!(
        out.contains("    }\n    ! volume.data[0] will be destroyed: its data will be lost\n"),
        "{out}"
    );
}

#[test]
fn text_kept_node_notes_section() {
    let out = text(&sample(), false);
    // The kept node is no block of its own...
    assert!(!out.contains("instance \"fleet.train[2]\""), "{out}");
    // ...but its note shows.
    assert!(
        out.contains(
            "Notes on unchanged resources:\n\n  # fleet.train[2] will be kept (still satisfies fleet train)\n    ! a cheaper offer exists"
        ),
        "{out}"
    );
}

#[test]
fn text_legend_lists_used_symbols_only() {
    let out = text(&sample(), false);
    assert!(out.contains(
        "Resource actions are indicated with the following symbols:\n  + create\n  ~ update in-place\n-/+ destroy and then create replacement\n  - destroy\n"
    ));
    let mut c = change("volume.v[0]", ResourceKind::Volume, Action::Create, "new");
    c.after = attrs(j!({ "size": "1TB" }));
    let out = text(&single(c), false);
    assert!(out.contains("symbols:\n  + create\n\n"), "{out}");
}

#[test]
fn text_offers_table() {
    let out = text(&sample(), false);
    let expected = [
        "Offers:",
        "",
        "  fleet.train: 48 offers match, * is the chosen one",
        "       PROVIDER  REGION       ZONE           INSTANCE TYPE             GPUS          SPOT    $/H",
        "    *  aws       us-east-1                   p5.48xlarge               8x H100 80GB  no    55.04",
        "       gcp       us-central1  us-central1-a  a3-highgpu-8g             8x H100 80GB  no    88.25",
        "       azure     eastus                      Standard_ND96isr_H100_v5  8x H100 80GB  no    98.32",
    ]
    .join("\n");
    assert!(out.contains(&expected), "{out}");
}

#[test]
fn text_cost_section() {
    let out = text(&sample(), false);
    let expected = [
        "Cost (USD):",
        "",
        "          per hour  per 730-hour month",
        "  before    117.20           85,556.00",
        "  after     165.12          120,537.60",
        "  delta     +47.92          +34,981.60",
    ]
    .join("\n");
    assert!(out.contains(&expected), "{out}");

    let mut plan = sample();
    plan.cost = Cost {
        before_per_hour: 220.16,
        after_per_hour: 0.0,
        delta_per_hour: -220.16,
        delta_per_month: -160716.8,
    };
    let out = text(&plan, false);
    assert!(
        out.contains("  delta    -220.16         -160,716.80\n"),
        "{out}"
    );

    // The monthly column adds up to the plan's exact monthly delta even when the hourly
    // figures were rounded (59.3941/h: 59.39 × 730 = 43,354.70, but the delta is 43,357.69).
    plan.cost = Cost {
        before_per_hour: 0.0,
        after_per_hour: 59.39,
        delta_per_hour: 59.39,
        delta_per_month: 43357.69,
    };
    let out = text(&plan, false);
    assert!(
        out.contains("  after      59.39           43,357.69\n"),
        "{out}"
    );
    assert!(
        out.contains("  delta     +59.39          +43,357.69\n"),
        "{out}"
    );
}

#[test]
fn text_summary_line_is_last() {
    let out = text(&sample(), false);
    assert_eq!(
        lines(&out).last(),
        Some(&"Plan: 3 to add, 1 to change, 2 to destroy.")
    );
    assert!(out.ends_with(".\n"));
}

#[test]
fn text_header_names_state_and_catalog() {
    let out = text(&sample(), false);
    assert_eq!(
        lines(&out)[0],
        "State: lineage 00000000-0000-0000-0000-000000000000, serial 7. Catalog: embedded snapshot."
    );
}

#[test]
fn text_no_changes() {
    let out = text(&no_changes(), false);
    assert_eq!(
        lines(&out).last(),
        Some(&"No changes. Your fleets match the configuration.")
    );
    for absent in ["Plan:", "Offers:", "Cost (USD)", "symbols", "will perform"] {
        assert!(!out.contains(absent), "{absent} in {out}");
    }

    // Notes of kept nodes still show when nothing changes.
    let mut plan = no_changes();
    plan.changes[0].notes = vec!["a cheaper offer exists".to_string()];
    let out = text(&plan, false);
    assert!(out.contains("Notes on unchanged resources:"), "{out}");
    assert!(out.contains("    ! a cheaper offer exists\n"), "{out}");
    assert!(out.ends_with("No changes. Your fleets match the configuration.\n"));
}

#[test]
fn text_without_colour_has_no_escape_byte() {
    let out = text(&sample(), false);
    assert!(!out.contains('\x1b'));
    assert!(!text(&no_changes(), false).contains('\x1b'));
}

#[test]
fn text_with_colour_paints_symbols() {
    let out = text(&sample(), true);
    assert!(
        out.contains("  \x1b[32m+\x1b[0m instance \"fleet.train[0]\" {"),
        "{out}"
    );
    assert!(
        out.contains("  \x1b[33m~\x1b[0m gateway \"gateway.serve\" {"),
        "{out}"
    );
    assert!(
        out.contains("  \x1b[31m-\x1b[0m instance \"fleet.old[0]\" {"),
        "{out}"
    );
    assert!(
        out.contains("\x1b[31m-\x1b[0m/\x1b[32m+\x1b[0m instance \"fleet.train[1]\" {"),
        "{out}"
    );
    // Colour changes nothing but the escapes.
    let stripped = strip_ansi(&out);
    assert_eq!(stripped, text(&sample(), false));
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn destroy_plan_says_so() {
    let mut plan = sample();
    plan.destroy = true;
    assert!(text(&plan, false).contains("This is a destroy plan"));
}

#[test]
fn money_formats() {
    assert_eq!(money(0.0), "0.00");
    assert_eq!(money(-0.0), "0.00");
    assert_eq!(money(0.004), "0.00");
    assert_eq!(money(-0.004), "0.00");
    assert_eq!(money(55.04), "55.04");
    assert_eq!(money(999.999), "1,000.00");
    assert_eq!(money(160716.8), "160,716.80");
    assert_eq!(money(1234567.891), "1,234,567.89");
    assert_eq!(money(-1234.5), "-1,234.50");
    assert_eq!(signed_money(220.16), "+220.16");
    assert_eq!(signed_money(-220.16), "-220.16");
    assert_eq!(signed_money(0.0), "0.00");
    assert_eq!(signed_money(f64::NAN), "0.00");
}

// ---- JSON ----

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn json_keys_are_exactly_the_schema() {
    let out = json(&sample());
    let doc: Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(
        keys(&doc),
        [
            "format_version",
            "flotilla_version",
            "state",
            "changes",
            "summary",
            "cost",
            // Additional keys (docs/plan-json.md).
            "config_digest",
            "catalog",
            "catalog_source",
            "destroy",
        ]
    );
    assert_eq!(keys(&doc["state"]), ["lineage", "serial"]);
    assert_eq!(keys(&doc["summary"]), ["add", "change", "destroy"]);
    assert_eq!(
        keys(&doc["cost"]),
        [
            "before_per_hour",
            "after_per_hour",
            "delta_per_hour",
            "delta_per_month"
        ]
    );
    for change in doc["changes"].as_array().expect("changes") {
        assert_eq!(
            keys(change),
            [
                "address",
                "kind",
                "action",
                "reason",
                "depends_on",
                "before",
                "after",
                "forces_replacement",
                "notes",
            ]
        );
    }
    let create = &doc["changes"][1];
    assert_eq!(
        keys(&create["after"]),
        [
            "provider",
            "region",
            "zone",
            "instance_type",
            "spot",
            "price_per_hour",
            "gpu",
            "tags",
            "private_ip",
        ]
    );
}

#[test]
fn json_values_and_types() {
    let doc: Value = serde_json::from_str(&json(&sample())).expect("valid JSON");
    assert_eq!(doc["format_version"], j!("1"));
    assert_eq!(doc["flotilla_version"], j!("0.1.0"));
    assert_eq!(
        doc["state"],
        j!({ "lineage": "00000000-0000-0000-0000-000000000000", "serial": 7 })
    );
    assert_eq!(doc["summary"], j!({ "add": 3, "change": 1, "destroy": 2 }));
    let actions: Vec<&str> = doc["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["action"].as_str().expect("action"))
        .collect();
    // Every change, no-ops included, in plan order.
    assert_eq!(
        actions,
        ["create", "create", "replace", "no-op", "update", "delete"]
    );
    let create = &doc["changes"][1];
    assert_eq!(create["kind"], j!("instance"));
    assert_eq!(create["before"], Value::Null);
    assert_eq!(create["depends_on"], j!(["volume.ckpt[0]"]));
    assert_eq!(create["forces_replacement"], j!([]));
    assert_eq!(doc["changes"][5]["after"], Value::Null);
    assert_eq!(
        doc["changes"][2]["forces_replacement"],
        j!(["gpu", "instance_type"])
    );
    assert_eq!(doc["destroy"], j!(false));
}

#[test]
fn json_costs_are_rounded_to_cents() {
    let mut plan = sample();
    plan.cost = Cost {
        before_per_hour: 0.0,
        after_per_hour: 55.04 * 4.0,
        delta_per_hour: 55.04 * 4.0 - 0.0,
        delta_per_month: 55.04 * 4.0 * 730.0,
    };
    let out = json(&plan);
    assert!(
        out.contains(
            "  \"cost\": {\n    \"before_per_hour\": 0.0,\n    \"after_per_hour\": 220.16,\n    \"delta_per_hour\": 220.16,\n    \"delta_per_month\": 160716.8\n  }"
        ),
        "{out}"
    );
    plan.cost.delta_per_hour = -0.001;
    let doc: Value = serde_json::from_str(&json(&plan)).expect("valid JSON");
    assert_eq!(doc["cost"]["delta_per_hour"].to_string(), "0.0");
}

#[test]
fn json_is_pretty_with_trailing_newline() {
    let out = json(&sample());
    assert!(
        out.starts_with("{\n  \"format_version\": \"1\",\n  \"flotilla_version\": \"0.1.0\",\n")
    );
    assert!(out.ends_with("}\n"));
    assert!(!out.ends_with("\n\n"));
}

// ---- markdown ----

#[test]
fn markdown_summary_leads_with_cost() {
    let mut plan = sample();
    plan.summary = Summary {
        add: 8,
        change: 0,
        destroy: 0,
    };
    plan.cost = Cost {
        before_per_hour: 0.0,
        after_per_hour: 220.16,
        delta_per_hour: 220.16,
        delta_per_month: 160716.8,
    };
    assert_eq!(
        lines(&markdown(&plan))[0],
        "**flotilla plan**: monthly cost will increase by $160,716.80 (+$220.16/h) · 8 to add, 0 to change, 0 to destroy"
    );

    plan.cost.delta_per_hour = -29.39;
    plan.cost.delta_per_month = -21454.7;
    assert!(
        lines(&markdown(&plan))[0].starts_with(
            "**flotilla plan**: monthly cost will decrease by $21,454.70 (-$29.39/h) · "
        )
    );

    plan.cost.delta_per_hour = 0.0;
    plan.cost.delta_per_month = 0.0;
    assert!(
        lines(&markdown(&plan))[0]
            .starts_with("**flotilla plan**: monthly cost will not change · ")
    );
}

#[test]
fn markdown_no_changes() {
    assert_eq!(
        markdown(&no_changes()),
        "**flotilla plan**: no changes. Your fleets match the configuration.\n"
    );
    let mut plan = no_changes();
    plan.changes[0].notes = vec!["a cheaper offer exists".to_string()];
    assert_eq!(
        markdown(&plan),
        "**flotilla plan**: no changes. Your fleets match the configuration.\n\n**Notes**\n\n- `fleet.train[0]`: a cheaper offer exists\n"
    );
}

#[test]
fn markdown_table_of_changes() {
    let out = markdown(&sample());
    let rows: Vec<&str> = lines(&out)
        .into_iter()
        .filter(|l| l.starts_with('|'))
        .collect();
    assert_eq!(
        rows,
        [
            "| Action | Address | Kind | Reason | Offer | $/h |",
            "|---|---|---|---|---|--:|",
            "| `+` create | `volume.ckpt[0]` | volume | new volume | aws us-east-1a |  |",
            "| `+` create | `fleet.train[0]` | instance | new node | aws us-east-1 p5.48xlarge (8x H100 80GB) | 55.04 |",
            "| `-/+` replace | `fleet.train[1]` | instance | gpu: A100 does not match H100 | aws us-east-1 p5.48xlarge (8x H100 80GB) | 32.77 → 55.04 |",
            "| `~` update | `gateway.serve` | gateway | targets changed | aws us-east-1 |  |",
            "| `-` delete | `fleet.old[0]` | instance | fleet removed from the configuration | gcp us-central1 a2-highgpu-8g (8x A100 40GB) | 29.39 |",
        ]
    );
}

#[test]
fn markdown_escapes_table_cells() {
    let mut c = change(
        "fleet.a[0]",
        ResourceKind::Instance,
        Action::Create,
        "a | b\nc",
    );
    c.after = attrs(j!({ "provider": "aws" }));
    let out = markdown(&single(c));
    assert!(out.contains("| a \\| b c |"), "{out}");
}

#[test]
fn markdown_folds_full_plan_in_diff_block() {
    let plan = sample();
    let out = markdown(&plan);
    let start = out
        .find("<details><summary>Full plan</summary>\n\n```diff\n")
        .expect("details with a diff block");
    assert!(out.ends_with("```\n\n</details>\n"), "{out}");
    let body = &out[start..];
    // Symbols moved to column 0, widths kept; `~` as `!`.
    assert!(
        body.contains("\n+   instance \"fleet.train[0]\" {\n"),
        "{out}"
    );
    assert!(
        body.contains("\n+       gpu            = \"8x H100 80GB\"\n"),
        "{out}"
    );
    assert!(
        body.contains("\n-/+ instance \"fleet.train[1]\" {\n"),
        "{out}"
    );
    assert!(
        body.contains(
            "\n!       gpu            = \"8x A100 40GB\" -> \"8x H100 80GB\" # forces replacement\n"
        ),
        "{out}"
    );
    assert!(
        body.contains("\n!   gateway \"gateway.serve\" {\n"),
        "{out}"
    );
    assert!(
        body.contains("\n-   instance \"fleet.old[0]\" {\n"),
        "{out}"
    );
    assert!(
        body.contains("\n-       instance_type  = \"a2-highgpu-8g\" -> null\n"),
        "{out}"
    );
    // Unchanged attributes, notes and comments keep their indentation.
    assert!(
        body.contains("\n        domain   = \"llm.acme.com\"\n"),
        "{out}"
    );
    assert!(
        body.contains("\n    ! volume.ckpt[1] moves with it"),
        "{out}"
    );
    assert!(
        body.contains("\n  # fleet.train[0] will be created (new node)\n"),
        "{out}"
    );
    // Otherwise the text plan, without colour.
    assert!(
        body.contains("\nPlan: 3 to add, 1 to change, 2 to destroy.\n```"),
        "{out}"
    );
    assert!(!out.contains('\x1b'));
    // Every line of the text plan is there, same length.
    let text = text(&plan, false);
    let fenced: Vec<&str> = body.lines().skip(3).take_while(|l| *l != "```").collect();
    let plain: Vec<&str> = text.lines().collect();
    assert_eq!(fenced.len(), plain.len());
    for (f, p) in fenced.iter().zip(&plain) {
        assert_eq!(f.len(), p.len(), "{f:?} vs {p:?}");
    }
}

#[test]
fn markdown_notes_list() {
    let out = markdown(&sample());
    assert!(out.contains(
        "\n**Notes**\n\n- `fleet.train[1]`: volume.ckpt[1] moves with it; its data is kept\n- `fleet.train[2]`: a cheaper offer exists"
    ), "{out}");
}

#[test]
fn markdown_fence_outgrows_backticks_in_the_plan() {
    let mut c = change(
        "fleet.a[0]",
        ResourceKind::Instance,
        Action::Create,
        "new node",
    );
    c.after = attrs(j!({ "note": "```" }));
    let out = markdown(&single(c));
    assert!(out.contains("````diff\n"), "{out}");
    assert!(out.ends_with("````\n\n</details>\n"), "{out}");
}

/// A plan of `n` new nodes.
fn big(n: usize) -> Plan {
    let changes = (0..n)
        .map(|i| {
            let mut c = change(
                &format!("fleet.train[{i}]"),
                ResourceKind::Instance,
                Action::Create,
                "new node",
            );
            c.after = attrs(instance_after(
                "aws",
                "us-east-1",
                "p5.48xlarge",
                55.04,
                "8x H100 80GB",
            ));
            c
        })
        .collect();
    let mut plan = plan_with(changes);
    plan.changes[0].notes = vec!["keep me".to_string()];
    plan.summary.add = n;
    plan
}

#[test]
fn markdown_fits_a_github_comment() {
    let plan = big(2048);
    let out = markdown(&plan);
    assert!(out.len() <= 65_536, "{} bytes", out.len());
    assert!(out.starts_with("**flotilla plan**: "));
    assert!(out.contains("- `fleet.train[0]`: keep me\n"));
    assert!(out.contains("more changes not shown; run `flotilla plan` for all of them"));
    assert!(out.ends_with("```\n\n</details>\n"));

    // A plan that fits is not cut.
    let small = markdown(&big(3));
    assert!(!small.contains("not shown"), "{small}");
}

#[test]
fn markdown_cuts_the_folded_plan_before_the_table() {
    let plan = big(20);
    let full = markdown(&plan);
    let table_end = full.find("<details>").expect("details");
    let limit = table_end + 2_000;
    let out = markdown_within(&plan, limit);
    assert!(out.len() <= limit, "{} > {limit}", out.len());
    // Every row is there...
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("| `+` create"))
            .count(),
        20
    );
    // ...and the folded plan is cut, saying so, with its fence closed.
    assert!(
        out.contains(
            "more lines not shown; run `flotilla plan` for the full plan\n```\n\n</details>\n"
        ),
        "{out}"
    );
    assert!(out.contains("```diff\nState: lineage"), "{out}");
}

// "Changed outside flotilla": what refresh found, in all three renderings.

/// A plan correcting drift: `fleet.train[1]` was terminated and is created again, and
/// `fleet.train[0]`'s tags were changed by hand and are put back.
fn with_drift() -> Plan {
    use crate::plan::{AttributeDrift, Drift};
    let mut created = change(
        "fleet.train[1]",
        ResourceKind::Instance,
        Action::Create,
        "deleted outside flotilla",
    );
    created.after = attrs(instance_after(
        "aws",
        "us-east-1",
        "p5.48xlarge",
        55.04,
        "8x H100 80GB",
    ));
    let mut tagged = change(
        "fleet.train[0]",
        ResourceKind::Instance,
        Action::Update,
        "tags changed outside flotilla",
    );
    let mut before = instance_after("aws", "us-east-1", "p5.48xlarge", 55.04, "8x H100 80GB");
    before["tags"] = j!({ "team": "ops" });
    tagged.before = attrs(before);
    tagged.after = attrs(instance_after(
        "aws",
        "us-east-1",
        "p5.48xlarge",
        55.04,
        "8x H100 80GB",
    ));
    let mut plan = plan_with(vec![tagged, created]);
    plan.summary = Summary {
        add: 1,
        change: 1,
        destroy: 0,
    };
    plan.drift = vec![
        Drift {
            address: "fleet.train[0]".into(),
            kind: ResourceKind::Instance,
            gone: false,
            attributes: vec![AttributeDrift {
                name: "tags".into(),
                before: j!({ "team": "llm" }),
                after: j!({ "team": "ops" }),
            }],
        },
        Drift {
            address: "fleet.train[1]".into(),
            kind: ResourceKind::Instance,
            gone: true,
            attributes: vec![],
        },
    ];
    plan
}

#[test]
fn text_shows_drift_before_the_actions() {
    let out = text(&with_drift(), false);
    let section = "\
Changed outside flotilla:

  # fleet.train[0] was changed outside flotilla
      ~ tags = { team = \"llm\" } -> { team = \"ops\" }
  # fleet.train[1] was deleted outside flotilla

";
    assert!(out.contains(section), "{out}");
    let at = out.find("Changed outside flotilla:").unwrap();
    assert!(at < out.find("flotilla will perform").unwrap());
    assert!(out.contains("# fleet.train[1] will be created (deleted outside flotilla)"));
    // Without drift there is no such section.
    assert!(!text(&sample(), false).contains("Changed outside flotilla"));
}

#[test]
fn text_shows_drift_even_without_changes() {
    let mut plan = no_changes();
    plan.drift = with_drift().drift;
    let out = text(&plan, false);
    assert!(out.contains("Changed outside flotilla:\n"), "{out}");
    assert!(out.contains("No changes."), "{out}");
}

#[test]
fn markdown_lists_drift() {
    let out = markdown(&with_drift());
    assert!(
        out.contains(
            "\n**Changed outside flotilla**\n\n\
             - `fleet.train[0]` was changed outside flotilla: `tags` `{ team = \"llm\" }` → `{ team = \"ops\" }`\n\
             - `fleet.train[1]` was deleted outside flotilla\n"
        ),
        "{out}"
    );
    // The folded text plan has the section too.
    assert!(out.contains("Changed outside flotilla:\n"), "{out}");
    assert!(!markdown(&sample()).contains("Changed outside flotilla"));
}

#[test]
fn json_has_a_drift_key_only_when_there_is_drift() {
    let doc: Value = serde_json::from_str(&json(&with_drift())).unwrap();
    assert_eq!(
        doc["drift"],
        j!([
            {
                "address": "fleet.train[0]",
                "kind": "instance",
                "change": "changed",
                "attributes": [
                    { "name": "tags", "before": { "team": "llm" }, "after": { "team": "ops" } }
                ]
            },
            {
                "address": "fleet.train[1]",
                "kind": "instance",
                "change": "deleted",
                "attributes": []
            }
        ])
    );
    let keys: Vec<String> = doc.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys.last().map(String::as_str), Some("drift"));
    let plain: Value = serde_json::from_str(&json(&sample())).unwrap();
    assert!(plain.get("drift").is_none());
}

#[test]
fn snapshot_text_drift() {
    insta::assert_snapshot!("text_drift", text(&with_drift(), false));
}

#[test]
fn snapshot_markdown_drift() {
    insta::assert_snapshot!("markdown_drift", markdown(&with_drift()));
}

#[test]
fn snapshot_json_drift() {
    insta::assert_snapshot!("json_drift", json(&with_drift()));
}

// "Bare-metal hosts": the probe's report, in all three renderings.

fn with_hosts() -> Plan {
    use crate::plan::{HostNote, HostNoteKind};
    let mut plan = no_changes();
    plan.hosts = vec![
        HostNote {
            host: "dgx-1".into(),
            kind: HostNoteKind::NewKey,
            detail: "SHA256:abc".into(),
        },
        HostNote {
            host: "dgx-2".into(),
            kind: HostNoteKind::Unreachable,
            detail: "connection refused".into(),
        },
        HostNote {
            host: "dgx-3".into(),
            kind: HostNoteKind::Claimed,
            detail: "1111-2222 (fleet.x[0])".into(),
        },
    ];
    plan
}

#[test]
fn text_shows_the_host_report() {
    let out = text(&with_hosts(), false);
    let section = "\
Bare-metal hosts:
  new host key for dgx-1: SHA256:abc (trusted on first use; recorded in state at apply)
  dgx-2 unreachable: connection refused, not offered
  dgx-3 is claimed by state 1111-2222 (fleet.x[0]), not offered
";
    assert!(out.contains(section), "{out}");
    assert!(!text(&sample(), false).contains("Bare-metal hosts"));
}

#[test]
fn markdown_shows_the_host_report() {
    let out = markdown(&with_hosts());
    assert!(out.contains("**Bare-metal hosts**"), "{out}");
    assert!(
        out.contains("- dgx-2 unreachable: connection refused, not offered"),
        "{out}"
    );
    let mut changing = with_hosts();
    changing.changes = sample().changes;
    changing.summary = sample().summary;
    assert!(markdown(&changing).contains("- new host key for dgx-1: SHA256:abc"));
    assert!(!markdown(&sample()).contains("Bare-metal hosts"));
}

#[test]
fn json_lists_the_host_report_only_when_there_is_one() {
    let doc: Value = serde_json::from_str(&json(&with_hosts())).expect("JSON");
    assert_eq!(doc["hosts"][0]["kind"], "new_key");
    assert_eq!(doc["hosts"][0]["detail"], "SHA256:abc");
    assert_eq!(doc["hosts"][2]["kind"], "claimed");
    assert_eq!(
        doc["hosts"][1]["message"],
        "dgx-2 unreachable: connection refused, not offered"
    );
    let none: Value = serde_json::from_str(&json(&sample())).expect("JSON");
    assert!(none.get("hosts").is_none());
}
