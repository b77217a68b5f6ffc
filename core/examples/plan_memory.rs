//! Peak memory of a plan against state size (issue 3: "memory stays proportional").
//!
//! `cargo run --release -p flotilla-core --example plan_memory -- FLEETS` plans FLEETS fleets
//! of 1,000 nodes with a volume each (2,000 resources per fleet) on an empty state, then again
//! on the state that holds them. Run it under `/usr/bin/time -f %M` for several FLEETS: peak
//! resident memory should grow linearly with the number of resources.

use flotilla_core::catalog::Catalog;
use flotilla_core::config::load_sources;
use flotilla_core::plan::{PlanOptions, plan, testing};
use flotilla_core::state::State;

fn main() {
    let fleets: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let mut hcl = String::from("provider \"aws\" {}\n");
    for f in 0..fleets {
        hcl.push_str(&format!(
            "volume \"data{f}\" {{\n  size = \"500GB\"\n}}\nfleet \"serve{f}\" {{\n  nodes = 1000\n  resources {{ gpu = \"L4\" }}\n  volumes = [volume.data{f}]\n}}\n"
        ));
    }
    let config = load_sources(&[("memory.hcl".to_string(), hcl)], &[], &[])
        .unwrap_or_else(|d| panic!("{d}"));
    let catalog = Catalog::embedded();
    let first = plan(&config, &State::empty(), &catalog, &PlanOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let held = testing::applied(&first, &config, &catalog);
    drop(first);
    let again =
        plan(&config, &held, &catalog, &PlanOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "{} resources in state, {} changes planned",
        held.resources.len(),
        again.changes.len()
    );
}
