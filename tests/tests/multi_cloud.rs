//! One plan across three clouds: AWS (moto), GCP (the Compute fake) and Azure (the Resource
//! Manager fake), with the real binary and the embedded catalog snapshot
//! (`fixtures/catalog/offers.csv`). A plan of new fleets needs only the catalog, but the test
//! runs against the endpoints `scripts/test` exports, as a user's plan would, and fails
//! loudly when they are missing.
//!
//! The fleets are chosen from the snapshot so that every cloud has candidates for at least two
//! of them and each cloud wins one: on-demand V100 is cheapest on GCP, spot V100 on AWS, spot
//! H100 on Azure. The test checks the plan against its own reading of the snapshot, so a new
//! snapshot with other prices fails with the offers that now win, not silently.

use flotilla_tests::arm::{self, Arm, SSH_KEY, SUBSCRIPTION};
use flotilla_tests::gce::{Gce, PROJECT};
use flotilla_tests::moto::Moto;
use flotilla_tests::workdir::{Workdir, text};
use serde_json::Value;
use std::collections::BTreeSet;

/// The regions each provider block allows, in the order of the `provider` blocks.
const REGIONS: [(&str, &str); 3] = [
    ("aws", "us-east-1"),
    ("gcp", "us-central1"),
    ("azure", "eastus"),
];

/// The fleets: name, GPU name (one GPU), spot, the cloud that should win.
const FLEETS: [(&str, &str, bool, &str); 3] = [
    ("steady", "V100", false, "gcp"),
    ("bursty", "V100", true, "aws"),
    ("big", "H100", true, "azure"),
];

/// One row of the catalog snapshot.
#[derive(Debug, Clone)]
struct Row {
    provider: String,
    instance_type: String,
    region: String,
    gpu_name: String,
    gpu_count: u32,
    vcpus: f64,
    memory_gib: f64,
    spot: bool,
    price: f64,
}

fn snapshot() -> String {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/catalog/offers.csv");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rows(csv: &str) -> Vec<Row> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    let (p, t, r, g, c, v, m, s, price) = (
        col("provider"),
        col("instance_type"),
        col("region"),
        col("gpu_name"),
        col("gpu_count"),
        col("vcpus"),
        col("memory_gib"),
        col("spot"),
        col("price_per_hour_usd"),
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Row {
                provider: f[p].to_string(),
                instance_type: f[t].to_string(),
                region: f[r].to_string(),
                gpu_name: f[g].to_string(),
                gpu_count: f[c].parse().unwrap_or(0),
                vcpus: f[v].parse().unwrap_or(0.0),
                memory_gib: f[m].parse().unwrap_or(0.0),
                spot: f[s] == "true",
                price: f[price].parse().unwrap_or(f64::MAX),
            }
        })
        .collect()
}

/// The snapshot's candidates for one fleet (one GPU of `gpu`, the market, the default cpu
/// `2..` and memory `8GB..`, the allowed regions), cheapest first, ties broken by provider,
/// region and instance type as DESIGN.md says.
fn candidates(all: &[Row], gpu: &str, spot: bool) -> Vec<Row> {
    let mut out: Vec<Row> = all
        .iter()
        .filter(|r| {
            r.gpu_name == gpu
                && r.gpu_count == 1
                && r.spot == spot
                && r.vcpus >= 2.0
                && r.memory_gib >= 8.0
                && REGIONS.contains(&(r.provider.as_str(), r.region.as_str()))
        })
        .cloned()
        .collect();
    out.sort_by(|a, b| {
        a.price
            .total_cmp(&b.price)
            .then_with(|| a.provider.cmp(&b.provider))
            .then_with(|| a.region.cmp(&b.region))
            .then_with(|| a.instance_type.cmp(&b.instance_type))
    });
    out
}

fn fleet_files(lineage: &str) -> String {
    let mut hcl = format!(
        r#"
provider "aws" {{
  regions = ["us-east-1"]
}}

provider "gcp" {{
  project = "{PROJECT}"
  regions = ["us-central1"]
}}

provider "azure" {{
  subscription_id = "{SUBSCRIPTION}"
  resource_group  = "{}"
  regions         = ["eastus"]
  ssh_public_key  = "{SSH_KEY}"
}}
"#,
        arm::resource_group(lineage)
    );
    for (name, gpu, spot, _) in FLEETS {
        hcl.push_str(&format!(
            r#"
fleet "{name}" {{
  nodes       = 1
  spot_policy = "{}"
  resources {{
    gpu = "{gpu}:1"
  }}
}}
"#,
            if spot { "spot" } else { "on-demand" }
        ));
    }
    hcl
}

#[test]
fn one_plan_across_three_clouds_picks_each_fleets_cheapest_cloud() {
    // The servers a user's plan would reach; a plan of new fleets reads none of them.
    let _moto = Moto::get();
    let _gce = Gce::get();
    let _arm = Arm::get();
    let w = Workdir::new("");
    w.write_fleet(&fleet_files(&w.lineage));
    let csv = snapshot();
    std::fs::write(w.path().join("catalog.csv"), &csv).expect("write the catalog");
    let all = rows(&csv);

    let out = w.flotilla(&["plan", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).expect("the plan as JSON");
    let changes = plan["changes"].as_array().expect("changes");
    let change = |address: &str| -> &Value {
        changes
            .iter()
            .find(|c| c["address"] == address)
            .unwrap_or_else(|| panic!("no change for {address}: {plan}"))
    };

    let mut winners = BTreeSet::new();
    for (name, gpu, spot, cloud) in FLEETS {
        let ranked = candidates(&all, gpu, spot);
        let clouds: BTreeSet<&str> = ranked.iter().map(|r| r.provider.as_str()).collect();
        assert!(
            clouds.len() >= 2,
            "fleet {name} must be a real choice between clouds: {ranked:?}"
        );
        let best = &ranked[0];
        assert_eq!(
            best.provider, cloud,
            "the snapshot changed: {name} is now cheapest on {best:?}; pick other constraints"
        );
        let c = change(&format!("fleet.{name}[0]"));
        assert_eq!(c["action"], "create", "{c}");
        let after = &c["after"];
        assert_eq!(after["provider"], best.provider.as_str(), "{name}: {c}");
        assert_eq!(after["region"], best.region.as_str(), "{name}: {c}");
        assert_eq!(
            after["instance_type"],
            best.instance_type.as_str(),
            "{name}: {c}"
        );
        assert_eq!(after["spot"], spot, "{name}: {c}");
        assert!(
            (after["price_per_hour"].as_f64().unwrap_or_default() - best.price).abs() < 1e-9,
            "{name}: {c}"
        );
        winners.insert(cloud);
    }
    assert_eq!(winners.len(), 3, "each cloud wins one fleet");

    // Azure's nodes need the region's network: planned once, for eastus only.
    let networks: Vec<&str> = changes
        .iter()
        .filter_map(|c| c["address"].as_str())
        .filter(|a| a.starts_with("network."))
        .collect();
    assert_eq!(networks, ["network.azure.eastus"], "{plan}");
    assert_eq!(change("network.azure.eastus")["action"], "create");

    // The cost adds up the three winners.
    let total: f64 = FLEETS
        .iter()
        .map(|(_, gpu, spot, _)| candidates(&all, gpu, *spot)[0].price)
        .sum();
    let after = plan["cost"]["after_per_hour"].as_f64().expect("cost");
    assert!((after - total).abs() < 0.01, "{after} vs {total}: {plan}");
}
