//! Snapshots of the text, JSON and markdown plans of every example in `fixtures/examples/`, on
//! an empty state with a fixed lineage and the embedded catalog.
//!
//! These pin what a new user sees for the shipped examples: any change to the planner, the
//! catalog or a renderer that alters a plan shows up here as a reviewable snapshot diff
//! (`INSTA_UPDATE=always cargo test -p flotilla-core --test plan_snapshots`, then review).

use flotilla_core::catalog::Catalog;
use flotilla_core::config::{self, LoadOptions};
use flotilla_core::plan::{self, PlanOptions, render};
use flotilla_core::state::State;
use std::path::{Path, PathBuf};

const LINEAGE: &str = "00000000-0000-0000-0000-000000000000";

fn examples() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/examples");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no examples under {}", root.display());
    dirs
}

fn empty_state() -> State {
    let mut state = State::empty();
    state.lineage = LINEAGE.to_string();
    state.serial = 0;
    state
}

#[test]
fn example_plans() {
    let catalog = Catalog::embedded();
    for dir in examples() {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a UTF-8 example name")
            .to_string();
        let config = config::load(&LoadOptions {
            dir: dir.clone(),
            ..LoadOptions::default()
        })
        .unwrap_or_else(|d| panic!("{name}: {d}"));
        let plan = plan::plan(&config, &empty_state(), &catalog, &PlanOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));

        let text = render::text(&plan, false);
        assert!(!text.contains('\x1b'), "{name}: escape in uncoloured text");

        insta::with_settings!({
            // The version and the config digest change for reasons unrelated to the plan.
            filters => vec![
                (r#""flotilla_version": "[^"]*""#, r#""flotilla_version": "[version]""#),
                (r#""config_digest": "[^"]*""#, r#""config_digest": "[digest]""#),
            ],
            prepend_module_to_snapshot => false,
        }, {
            insta::assert_snapshot!(format!("{name}.text"), text);
            insta::assert_snapshot!(format!("{name}.json"), render::json(&plan));
            insta::assert_snapshot!(format!("{name}.markdown"), render::markdown(&plan));
        });
    }
}

/// The inference example after an apply, with one node terminated and another's tags changed
/// outside flotilla: the "Changed outside flotilla" section and the changes that correct it.
#[test]
fn example_plan_with_drift() {
    use flotilla_core::provider::Observed;
    use std::collections::BTreeMap;

    let catalog = Catalog::embedded();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/examples/inference");
    let config = config::load(&LoadOptions {
        dir,
        ..LoadOptions::default()
    })
    .unwrap_or_else(|d| panic!("inference: {d}"));
    let first = plan::plan(&config, &empty_state(), &catalog, &PlanOptions::default()).unwrap();
    let mut state = plan::testing::applied(&first, &config, &catalog);
    let tags = serde_json::json!({ "model": "chat-7b", "service": "vllm", "team": "serving" });
    for r in &mut state.resources {
        if r.address.starts_with("fleet.") {
            r.attributes.insert("tags".into(), tags.clone());
        }
    }
    let mut retagged = state.get("fleet.serve[0]").unwrap().clone();
    retagged.attributes.insert(
        "tags".into(),
        serde_json::json!({ "model": "chat-7b", "service": "vllm", "team": "research" }),
    );
    let observed: BTreeMap<String, Observed> = [
        ("fleet.serve[0]".to_string(), Observed::Exists(retagged)),
        ("fleet.serve[3]".to_string(), Observed::Gone),
    ]
    .into_iter()
    .collect();
    let refreshed = plan::refresh(&state, &observed);
    let plan = plan::plan_refreshed(&config, &refreshed, &catalog, &PlanOptions::default())
        .unwrap_or_else(|e| panic!("inference: {e}"));
    assert_eq!(plan.summary.add, 1);
    assert_eq!(plan.summary.change, 2, "the retagged node and the gateway");
    insta::with_settings!({ prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!("inference_drift.text", render::text(&plan, false));
    });
}
