//! Plan time at scale (issue 3's targets):
//! - a 2,048-node H100 cluster (16,384 GPUs) with per-node volumes and a gateway, on an empty
//!   state and on a state that already holds it: under 50 ms each;
//! - a plan over a state of 100,000 resources (50,000 nodes and their volumes): under 1 s.

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use flotilla_core::catalog::Catalog;
use flotilla_core::config::{Config, load_sources};
use flotilla_core::plan::{PlanOptions, plan};
use flotilla_core::state::State;
use std::hint::black_box;

// The same allocator as the `flotilla` binary: plans allocate many small maps.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

fn bench_cluster(c: &mut Criterion) {
    let catalog = Catalog::embedded();
    let cfg = config(CLUSTER);
    let empty = State::empty();
    let first = plan(&cfg, &empty, &catalog, &PlanOptions::default()).expect("plan");
    assert_eq!(first.summary.add, 2048 * 2 + 1);
    let held = flotilla_core::plan::testing::applied(&first, &cfg, &catalog);
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
    let held = flotilla_core::plan::testing::applied(&first, &cfg, &catalog);
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
