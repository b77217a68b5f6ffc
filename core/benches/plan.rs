//! Plan time at scale (issue 3's targets):
//! - a 2,048-node H100 cluster (16,384 GPUs) with per-node volumes and a gateway, on an empty
//!   state and on a state that already holds it: under 50 ms each;
//! - a plan over a state of 100,000 resources (50,000 nodes and their volumes): under 1 s.

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use flotilla_core::catalog::Catalog;
use flotilla_core::config::{Config, load_sources};
use flotilla_core::plan::{Action, Plan, PlanOptions, plan};
use flotilla_core::state::{Resource, ResourceKind, State};
use std::collections::BTreeMap;
use std::hint::black_box;

fn config(hcl: &str) -> Config {
    load_sources(&[("bench.hcl".to_string(), hcl.to_string())], &[], &[])
        .expect("bench config loads")
}

const CLUSTER: &str = r#"
provider "aws" {}
provider "gcp" { project = "bench" }
volume "ckpt" { size = "2TB" }
fleet "train" {
  nodes     = 2048
  placement = "cluster"
  resources {
    gpu    = "H100:8"
    memory = "1TB.."
  }
  volumes = [volume.ckpt]
}
gateway "api" { targets = [fleet.train] }
"#;

/// The state an apply of `plan` would leave: every change's `after`, with the offer it took.
fn applied(p: &Plan, catalog: &Catalog) -> State {
    let mut resources = Vec::new();
    for c in &p.changes {
        let Some(after) = &c.after else { continue };
        if c.action == Action::Delete {
            continue;
        }
        let s = |k: &str| {
            after
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let offer = (c.kind == ResourceKind::Instance).then(|| {
            catalog
                .offers()
                .iter()
                .find(|o| {
                    o.instance_type == s("instance_type")
                        && o.region == s("region")
                        && o.provider.as_str() == s("provider")
                })
                .cloned()
                .expect("offer of the plan is in the catalog")
        });
        let zone = if s("zone").is_empty() {
            "zone-a".to_string()
        } else {
            s("zone")
        };
        let mut attributes: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        for (k, v) in after {
            if matches!(
                k.as_str(),
                "size_gib" | "type" | "targets" | "domain" | "port"
            ) {
                attributes.insert(k.clone(), v.clone());
            }
        }
        resources.push(Resource {
            address: c.address.clone(),
            kind: c.kind,
            provider: flotilla_core::catalog::ProviderKind::parse(&s("provider"))
                .expect("provider"),
            provider_id: format!("id-{}", c.address),
            region: s("region"),
            zone,
            offer,
            attributes,
            dependencies: c.depends_on.clone(),
        });
    }
    State {
        resources,
        serial: 1,
        ..State::empty()
    }
}

fn bench_cluster(c: &mut Criterion) {
    let catalog = Catalog::embedded();
    let cfg = config(CLUSTER);
    let empty = State::empty();
    let first = plan(&cfg, &empty, &catalog, &PlanOptions::default()).expect("plan");
    assert_eq!(first.summary.add, 2048 * 2 + 1);
    let held = applied(&first, &catalog);
    let again = plan(&cfg, &held, &catalog, &PlanOptions::default()).expect("plan");
    assert!(
        !again.has_changes(),
        "a state that holds the cluster plans no changes"
    );

    let mut g = c.benchmark_group("plan_cluster_2048_nodes");
    g.bench_function("empty_state", |b| {
        b.iter(|| {
            plan(
                black_box(&cfg),
                black_box(&empty),
                &catalog,
                &PlanOptions::default(),
            )
        })
    });
    g.bench_function("state_holds_it", |b| {
        b.iter(|| {
            plan(
                black_box(&cfg),
                black_box(&held),
                &catalog,
                &PlanOptions::default(),
            )
        })
    });
    g.finish();
}

fn bench_large_state(c: &mut Criterion) {
    let catalog = Catalog::embedded();
    let mut hcl = String::from("provider \"aws\" {}\nprovider \"gcp\" { project = \"bench\" }\n");
    for f in 0..50 {
        hcl.push_str(&format!(
            "volume \"data{f}\" {{ size = \"500GB\" }}\nfleet \"serve{f}\" {{\n  nodes = 1000\n  resources {{ gpu = \"L4\" }}\n  volumes = [volume.data{f}]\n}}\n"
        ));
    }
    let cfg = config(&hcl);
    let first = plan(&cfg, &State::empty(), &catalog, &PlanOptions::default()).expect("plan");
    let held = applied(&first, &catalog);
    assert_eq!(held.resources.len(), 100_000);
    let mut g = c.benchmark_group("plan_state_100k_resources");
    g.sample_size(10);
    g.bench_function("no_changes", |b| {
        b.iter(|| {
            plan(
                black_box(&cfg),
                black_box(&held),
                &catalog,
                &PlanOptions::default(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench_cluster, bench_large_state);
criterion_main!(benches);
