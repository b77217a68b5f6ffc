//! Planner rules, each with a hand-made state, against a small hand-made catalog.

use super::*;
use crate::catalog::{Catalog, ProviderKind};
use crate::config::load_sources;
use crate::state::{Resource, ResourceKind, State};
use serde_json::json;
use std::collections::BTreeMap;

const CATALOG: &str = "\
provider,instance_type,region,zone,gpu_vendor,gpu_name,gpu_count,gpu_memory_gib,vcpus,memory_gib,spot,price_per_hour_usd
aws,p5.48xlarge,us-east-1,,nvidia,H100,8,80,192,2048,false,55.04
aws,p5.48xlarge,us-west-2,,nvidia,H100,8,80,192,2048,false,55.04
gcp,a3-highgpu-8g,us-central1,,nvidia,H100,8,80,208,1872,false,43.07
azure,Standard_ND96isr_H100_v5,eastus,,nvidia,H100,8,80,96,1900,false,98.32
aws,p4d.24xlarge,us-east-1,,nvidia,A100,8,40,96,1152,false,32.77
aws,p4de.24xlarge,us-east-1,,nvidia,A100,8,80,96,1152,false,40.96
gcp,a2-highgpu-8g,us-central1,,nvidia,A100,8,40,96,680,false,29.39
gcp,a2-highgpu-4g,us-central1,,nvidia,A100,4,40,48,340,false,14.69
gcp,a2-ultragpu-8g,us-central1,,nvidia,A100,8,80,96,1360,false,40.55
aws,g5.xlarge,us-east-1,,nvidia,A10G,1,24,4,16,false,1.006
aws,g5.xlarge,us-east-1,,nvidia,A10G,1,24,4,16,true,0.45
aws,g6.xlarge,us-east-1,,nvidia,L4,1,24,4,16,false,0.805
gcp,g2-standard-4,us-central1,,nvidia,L4,1,24,4,16,false,0.71
";

fn catalog() -> Catalog {
    Catalog::from_csv(CATALOG, "test catalog").expect("test catalog parses")
}

fn config(hcl: &str) -> Config {
    match load_sources(&[("main.hcl".to_string(), hcl.to_string())], &[], &[]) {
        Ok(c) => c,
        Err(d) => panic!("test config does not load:\n{d}"),
    }
}

fn offer(provider: &str, instance_type: &str, region: &str) -> crate::catalog::Offer {
    catalog()
        .offers()
        .iter()
        .find(|o| {
            o.provider.as_str() == provider
                && o.instance_type == instance_type
                && o.region == region
                && !o.spot
        })
        .cloned()
        .expect("offer in test catalog")
}

fn instance(address: &str, o: crate::catalog::Offer, zone: &str, deps: &[&str]) -> Resource {
    Resource {
        address: address.to_string(),
        kind: ResourceKind::Instance,
        provider: o.provider,
        provider_id: format!("id-{address}"),
        region: o.region.clone(),
        zone: zone.to_string(),
        offer: Some(o),
        attributes: BTreeMap::new(),
        dependencies: deps.iter().map(|s| s.to_string()).collect(),
    }
}

fn volume(
    address: &str,
    provider: ProviderKind,
    region: &str,
    zone: &str,
    size_gib: f64,
) -> Resource {
    Resource {
        address: address.to_string(),
        kind: ResourceKind::Volume,
        provider,
        provider_id: format!("vol-{address}"),
        region: region.to_string(),
        zone: zone.to_string(),
        offer: None,
        attributes: BTreeMap::from([("size_gib".to_string(), json!(size_gib))]),
        dependencies: vec![],
    }
}

fn state(resources: Vec<Resource>) -> State {
    State {
        lineage: "00000000-0000-0000-0000-000000000000".into(),
        serial: 3,
        resources,
        ..State::empty()
    }
}

fn run(hcl: &str, st: &State, options: &PlanOptions) -> Result<Plan, PlanError> {
    plan(&config(hcl), st, &catalog(), options)
}

fn change<'a>(p: &'a Plan, address: &str) -> &'a Change {
    p.changes
        .iter()
        .find(|c| c.address == address)
        .unwrap_or_else(|| panic!("no change for {address} in {:#?}", p.changes))
}

fn after(c: &Change, key: &str) -> serde_json::Value {
    c.after
        .as_ref()
        .and_then(|a| a.get(key))
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

const PROVIDERS: &str = r#"
provider "aws" {}
provider "gcp" { project = "p" }
provider "azure" {
  subscription_id = "s"
  resource_group  = "g"
}
"#;

fn with_providers(body: &str) -> String {
    format!("{PROVIDERS}\n{body}")
}

#[test]
fn empty_state_creates_every_node_on_the_cheapest_offer() {
    let hcl = with_providers(
        r#"fleet "train" {
  nodes = 2
  resources { gpu = "H100:8" }
}"#,
    );
    let p = run(&hcl, &state(vec![]), &PlanOptions::default()).unwrap();
    assert_eq!(
        p.summary,
        Summary {
            add: 2,
            change: 0,
            destroy: 0
        }
    );
    for i in 0..2 {
        let c = change(&p, &format!("fleet.train[{i}]"));
        assert_eq!(c.action, Action::Create);
        assert_eq!(after(c, "instance_type"), json!("a3-highgpu-8g"));
        assert_eq!(after(c, "provider"), json!("gcp"));
    }
    assert_eq!(p.cost.after_per_hour, 86.14);
    assert_eq!(p.cost.delta_per_month, 62882.2);
    assert_eq!(p.offers[0].matched, 4);
    assert_eq!(p.offers[0].top.len(), 3);
    assert_eq!(p.offers[0].top[0].instance_type, "a3-highgpu-8g");
    assert_eq!(p.state.serial, 3);
}

#[test]
fn satisfying_instance_is_kept_and_the_cheaper_offer_is_noted() {
    let hcl = with_providers(
        r#"fleet "train" {
  resources { gpu = "H100:8" }
}"#,
    );
    let st = state(vec![instance(
        "fleet.train[0]",
        offer("aws", "p5.48xlarge", "us-east-1"),
        "us-east-1a",
        &[],
    )]);
    let p = run(&hcl, &st, &PlanOptions::default()).unwrap();
    let c = change(&p, "fleet.train[0]");
    assert_eq!(c.action, Action::NoOp);
    assert!(!p.has_changes());
    assert_eq!(c.notes.len(), 1, "{:?}", c.notes);
    assert!(c.notes[0].contains("a3-highgpu-8g"), "{}", c.notes[0]);
    assert!(c.notes[0].contains("saves 11.97/h"), "{}", c.notes[0]);
    assert_eq!(p.cost.delta_per_hour, 0.0);
}

#[test]
fn each_constraint_forces_replacement_and_names_itself() {
    let st = || {
        state(vec![instance(
            "fleet.train[0]",
            offer("aws", "p4d.24xlarge", "us-east-1"),
            "",
            &[],
        )])
    };
    let cases = [
        (
            r#"resources { gpu = "H100:8" }"#,
            "gpu: A100 does not match H100",
        ),
        (r#"resources { gpu = "A100:80GB:8" }"#, "gpu memory"),
        (r#"resources { gpu = "A100:4" }"#, "gpu count"),
        (
            "resources { gpu = \"A100:8\" }\n  max_price = 30",
            "price 32.77 > max_price 30",
        ),
        (
            "resources { gpu = \"A100:8\" }\n  regions = [\"us-central1\"]",
            "region",
        ),
        (
            "resources { gpu = \"A100:8\" }\n  providers = [\"gcp\"]",
            "provider",
        ),
        (
            "resources { gpu = \"A100:8\" }\n  spot_policy = \"spot\"",
            "spot",
        ),
        (
            "resources {\n    gpu    = \"A100:8\"\n    memory = \"1200GB..\"\n  }",
            "memory",
        ),
    ];
    for (body, reason) in cases {
        let hcl = with_providers(&format!("fleet \"train\" {{\n  {body}\n}}"));
        let result = run(&hcl, &st(), &PlanOptions::default());
        match result {
            Ok(p) => {
                let c = change(&p, "fleet.train[0]");
                assert_eq!(c.action, Action::Replace, "{body}");
                assert!(
                    c.reason.contains(reason),
                    "{body}: reason {:?} lacks {reason:?}",
                    c.reason
                );
                assert!(!c.forces_replacement.is_empty(), "{body}");
            }
            // A constraint no offer can meet is a no-offer error instead (spot A100:8 here).
            Err(PlanError::NoOffer { .. }) if reason == "spot" => {}
            Err(e) => panic!("{body}: {e}"),
        }
    }
}

#[test]
fn tags_change_is_an_in_place_update() {
    let hcl = with_providers(
        r#"fleet "train" {
  resources { gpu = "H100:8" }
  tags = { team = "llm" }
}"#,
    );
    let st = state(vec![instance(
        "fleet.train[0]",
        offer("gcp", "a3-highgpu-8g", "us-central1"),
        "",
        &[],
    )]);
    let p = run(&hcl, &st, &PlanOptions::default()).unwrap();
    assert_eq!(change(&p, "fleet.train[0]").action, Action::Update);
    assert_eq!(
        p.summary,
        Summary {
            add: 0,
            change: 1,
            destroy: 0
        }
    );
}

#[test]
fn cluster_fleet_lands_in_one_group_pinned_by_existing_nodes() {
    let hcl = with_providers(
        r#"fleet "train" {
  nodes     = 3
  placement = "cluster"
  resources { gpu = "H100:8" }
}"#,
    );
    // Empty state: the cheapest group (gcp us-central1) holds every node.
    let p = run(&hcl, &state(vec![]), &PlanOptions::default()).unwrap();
    for i in 0..3 {
        assert_eq!(
            after(change(&p, &format!("fleet.train[{i}]")), "region"),
            json!("us-central1")
        );
    }
    // A kept node in aws us-west-2 pins the group there, although gcp is cheaper.
    let st = state(vec![instance(
        "fleet.train[0]",
        offer("aws", "p5.48xlarge", "us-west-2"),
        "us-west-2b",
        &[],
    )]);
    let p = run(&hcl, &st, &PlanOptions::default()).unwrap();
    assert_eq!(change(&p, "fleet.train[0]").action, Action::NoOp);
    for i in 1..3 {
        let c = change(&p, &format!("fleet.train[{i}]"));
        assert_eq!(c.action, Action::Create);
        assert_eq!(after(c, "region"), json!("us-west-2"));
        assert_eq!(after(c, "zone"), json!("us-west-2b"));
    }
    // Nodes outside the pinned group move into it.
    let st = state(vec![
        instance(
            "fleet.train[0]",
            offer("aws", "p5.48xlarge", "us-west-2"),
            "us-west-2b",
            &[],
        ),
        instance(
            "fleet.train[1]",
            offer("aws", "p5.48xlarge", "us-east-1"),
            "us-east-1a",
            &[],
        ),
    ]);
    let p = run(&hcl, &st, &PlanOptions::default()).unwrap();
    let c = change(&p, "fleet.train[1]");
    assert_eq!(c.action, Action::Replace);
    assert!(
        c.reason
            .contains("placement: cluster fleet is in aws us-west-2"),
        "{}",
        c.reason
    );
    assert_eq!(after(c, "region"), json!("us-west-2"));
}

const VOLUME_FLEET: &str = r#"volume "ckpt" {
  size = "2TB"
}
fleet "train" {
  resources { gpu = "H100:8" }
  volumes = [volume.ckpt]
}"#;

#[test]
fn new_nodes_get_new_volumes_created_first() {
    let p = run(
        &with_providers(VOLUME_FLEET),
        &state(vec![]),
        &PlanOptions::default(),
    )
    .unwrap();
    let v = change(&p, "volume.ckpt[0]");
    assert_eq!(v.action, Action::Create);
    assert_eq!(after(v, "size_gib"), json!(2048.0));
    assert_eq!(after(v, "attached_to"), json!("fleet.train[0]"));
    let n = change(&p, "fleet.train[0]");
    assert_eq!(n.depends_on, vec!["volume.ckpt[0]".to_string()]);
    let g = graph::build(&p).unwrap();
    let order: Vec<String> = g.order().iter().map(|o| o.label()).collect();
    assert_eq!(
        order,
        vec!["create volume.ckpt[0]", "create fleet.train[0]"]
    );
}

#[test]
fn volume_pins_its_node_zone_and_moving_replaces_the_volume() {
    // The node's region still has a satisfying offer: it stays with its volume.
    let st = state(vec![
        instance(
            "fleet.train[0]",
            offer("aws", "p4d.24xlarge", "us-east-1"),
            "us-east-1a",
            &["volume.ckpt[0]"],
        ),
        volume(
            "volume.ckpt[0]",
            ProviderKind::Aws,
            "us-east-1",
            "us-east-1a",
            2048.0,
        ),
    ]);
    let p = run(&with_providers(VOLUME_FLEET), &st, &PlanOptions::default()).unwrap();
    let n = change(&p, "fleet.train[0]");
    assert_eq!(n.action, Action::Replace);
    assert_eq!(
        after(n, "instance_type"),
        json!("p5.48xlarge"),
        "stays in us-east-1 with its volume"
    );
    assert_eq!(after(n, "zone"), json!("us-east-1a"));
    assert_eq!(change(&p, "volume.ckpt[0]").action, Action::NoOp);

    // No offer in the volume's region: the node moves and the volume is replaced, loudly.
    let st = state(vec![
        instance(
            "fleet.train[0]",
            offer("aws", "p4d.24xlarge", "us-east-1"),
            "us-east-1a",
            &["volume.ckpt[0]"],
        ),
        volume(
            "volume.ckpt[0]",
            ProviderKind::Aws,
            "us-east-1",
            "us-east-1a",
            2048.0,
        ),
    ]);
    let hcl = with_providers(
        &VOLUME_FLEET.replace("resources {", "providers = [\"gcp\"]\n  resources {"),
    );
    let p = run(&hcl, &st, &PlanOptions::default()).unwrap();
    let v = change(&p, "volume.ckpt[0]");
    assert_eq!(v.action, Action::Replace);
    assert!(
        v.notes
            .iter()
            .any(|n| n.contains("data on it will be lost")),
        "{:?}",
        v.notes
    );
    assert!(
        change(&p, "fleet.train[0]")
            .notes
            .iter()
            .any(|n| n.contains("volume.ckpt[0]"))
    );

    // ... which prevent_destroy refuses.
    let hcl = hcl.replace("size = \"2TB\"", "size = \"2TB\"\n  prevent_destroy = true");
    match run(&hcl, &st, &PlanOptions::default()) {
        Err(PlanError::PreventDestroy { address, .. }) => assert_eq!(address, "volume.ckpt[0]"),
        other => panic!("expected PreventDestroy, got {other:?}"),
    }
}

#[test]
fn replaced_node_and_volume_run_destroy_before_create_in_dependency_order() {
    let st = state(vec![
        instance(
            "fleet.train[0]",
            offer("aws", "p4d.24xlarge", "us-east-1"),
            "us-east-1a",
            &["volume.ckpt[0]"],
        ),
        volume(
            "volume.ckpt[0]",
            ProviderKind::Aws,
            "us-east-1",
            "us-east-1a",
            2048.0,
        ),
    ]);
    let hcl = with_providers(
        &VOLUME_FLEET.replace("resources {", "providers = [\"gcp\"]\n  resources {"),
    );
    let p = run(&hcl, &st, &PlanOptions::default()).unwrap();
    let g = graph::build(&p).unwrap();
    let order: Vec<String> = g.order().iter().map(|o| o.label()).collect();
    assert_eq!(
        order,
        vec![
            "destroy fleet.train[0] (replace)",
            "destroy volume.ckpt[0] (replace)",
            "create volume.ckpt[0] (replace)",
            "create fleet.train[0] (replace)",
        ]
    );
}

const HYBRID: &str = r#"provider "aws" {}
provider "baremetal" {
  host "dgx-1" {
    address = "10.0.0.11"
    gpu     = "A100:80GB:8"
    cpu     = 128
    memory  = "2TB"
  }
  host "dgx-2" {
    address = "10.0.0.12"
    gpu     = "A100:80GB:8"
    cpu     = 128
    memory  = "2TB"
    price   = 12.5
  }
}
fleet "onprem" {
  nodes     = 3
  providers = ["baremetal", "aws"]
  resources { gpu = "A100:80GB:8" }
}"#;

#[test]
fn hybrid_fleet_fills_hosts_first_then_the_cheapest_cloud() {
    let p = run(HYBRID, &state(vec![]), &PlanOptions::default()).unwrap();
    let types: Vec<serde_json::Value> = (0..3)
        .map(|i| after(change(&p, &format!("fleet.onprem[{i}]")), "instance_type"))
        .collect();
    assert_eq!(
        types,
        vec![json!("dgx-1"), json!("dgx-2"), json!("p4de.24xlarge")]
    );
    assert_eq!(
        after(change(&p, "fleet.onprem[0]"), "provider"),
        json!("baremetal")
    );
    assert_eq!(p.cost.after_per_hour, 53.46);
}

#[test]
fn a_host_runs_one_node_of_one_fleet_at_most() {
    let hcl = format!(
        "{HYBRID}\nfleet \"other\" {{\n  providers = [\"baremetal\", \"aws\"]\n  resources {{ gpu = \"A100:80GB:8\" }}\n}}"
    );
    // dgx-1 is already used by fleet.other[0] in state: onprem gets dgx-2, then clouds.
    let mut host = offer("aws", "p4de.24xlarge", "us-east-1");
    host.provider = ProviderKind::Baremetal;
    host.instance_type = "dgx-1".into();
    host.region = "onprem".into();
    host.price_per_hour = 0.0;
    let st = state(vec![instance("fleet.other[0]", host, "", &[])]);
    let p = run(&hcl, &st, &PlanOptions::default()).unwrap();
    assert_eq!(change(&p, "fleet.other[0]").action, Action::NoOp);
    let types: Vec<serde_json::Value> = (0..3)
        .map(|i| after(change(&p, &format!("fleet.onprem[{i}]")), "instance_type"))
        .collect();
    assert_eq!(
        types,
        vec![
            json!("dgx-2"),
            json!("p4de.24xlarge"),
            json!("p4de.24xlarge")
        ]
    );
}

#[test]
fn scale_down_removes_the_highest_indexes_and_their_volumes() {
    let hcl = with_providers(&VOLUME_FLEET.replace("resources {", "nodes = 1\n  resources {"));
    let o = offer("gcp", "a3-highgpu-8g", "us-central1");
    let st = state(vec![
        instance(
            "fleet.train[0]",
            o.clone(),
            "us-central1-a",
            &["volume.ckpt[0]"],
        ),
        instance(
            "fleet.train[1]",
            o.clone(),
            "us-central1-a",
            &["volume.ckpt[1]"],
        ),
        instance("fleet.train[2]", o, "us-central1-a", &["volume.ckpt[2]"]),
        volume(
            "volume.ckpt[0]",
            ProviderKind::Gcp,
            "us-central1",
            "us-central1-a",
            2048.0,
        ),
        volume(
            "volume.ckpt[1]",
            ProviderKind::Gcp,
            "us-central1",
            "us-central1-a",
            2048.0,
        ),
        volume(
            "volume.ckpt[2]",
            ProviderKind::Gcp,
            "us-central1",
            "us-central1-a",
            2048.0,
        ),
    ]);
    let p = run(&hcl, &st, &PlanOptions::default()).unwrap();
    assert_eq!(change(&p, "fleet.train[0]").action, Action::NoOp);
    for a in [
        "fleet.train[1]",
        "fleet.train[2]",
        "volume.ckpt[1]",
        "volume.ckpt[2]",
    ] {
        assert_eq!(change(&p, a).action, Action::Delete, "{a}");
    }
    assert_eq!(change(&p, "fleet.train[2]").reason, "scale down to 1 node");
    assert_eq!(
        p.summary,
        Summary {
            add: 0,
            change: 0,
            destroy: 4
        }
    );
    assert_eq!(p.cost.delta_per_hour, -86.14);
    // Instances go before their volumes.
    let g = graph::build(&p).unwrap();
    let order: Vec<String> = g.order().iter().map(|o| o.label()).collect();
    let pos = |l: &str| order.iter().position(|x| x == l).unwrap();
    assert!(pos("destroy fleet.train[2]") < pos("destroy volume.ckpt[2]"));
}

#[test]
fn removed_fleet_destroys_its_nodes_and_volumes() {
    let st = state(vec![
        instance(
            "fleet.old[0]",
            offer("gcp", "a3-highgpu-8g", "us-central1"),
            "",
            &["volume.ckpt[0]"],
        ),
        volume(
            "volume.ckpt[0]",
            ProviderKind::Gcp,
            "us-central1",
            "us-central1-a",
            100.0,
        ),
    ]);
    let p = run(PROVIDERS, &st, &PlanOptions::default()).unwrap();
    assert_eq!(
        change(&p, "fleet.old[0]").reason,
        "fleet `old` is no longer in the configuration"
    );
    assert_eq!(change(&p, "volume.ckpt[0]").action, Action::Delete);
}

const GATEWAY: &str = r#"fleet "serve" {
  nodes = 2
  resources { gpu = "L4" }
}
gateway "api" {
  domain  = "llm.example.com"
  targets = [fleet.serve]
}"#;

#[test]
fn gateway_is_updated_in_place_when_its_targets_change() {
    let o = offer("gcp", "g2-standard-4", "us-central1");
    let gw = Resource {
        address: "gateway.api".into(),
        kind: ResourceKind::Gateway,
        provider: ProviderKind::Gcp,
        provider_id: "fr-1".into(),
        region: "us-central1".into(),
        zone: String::new(),
        offer: None,
        attributes: BTreeMap::from([
            ("domain".to_string(), json!("llm.example.com")),
            ("port".to_string(), json!(80)),
            (
                "targets".to_string(),
                json!(["fleet.serve[0]", "fleet.serve[1]"]),
            ),
        ]),
        dependencies: vec!["fleet.serve[0]".into(), "fleet.serve[1]".into()],
    };
    let st = state(vec![
        instance("fleet.serve[0]", o.clone(), "", &[]),
        instance("fleet.serve[1]", o, "", &[]),
        gw,
    ]);
    let p = run(&with_providers(GATEWAY), &st, &PlanOptions::default()).unwrap();
    assert_eq!(change(&p, "gateway.api").action, Action::NoOp);

    let p = run(
        &with_providers(&GATEWAY.replace("nodes = 2", "nodes = 3")),
        &st,
        &PlanOptions::default(),
    )
    .unwrap();
    let g = change(&p, "gateway.api");
    assert_eq!(g.action, Action::Update);
    assert!(g.reason.contains("adds fleet.serve[2]"), "{}", g.reason);
    let order: Vec<String> = graph::build(&p)
        .unwrap()
        .order()
        .iter()
        .map(|o| o.label())
        .collect();
    let pos = |l: &str| order.iter().position(|x| x == l).unwrap();
    assert!(pos("create fleet.serve[2]") < pos("update gateway.api"));

    // Scaling down: the gateway lets go of the node before the node is destroyed.
    let p = run(
        &with_providers(&GATEWAY.replace("nodes = 2", "nodes = 1")),
        &st,
        &PlanOptions::default(),
    )
    .unwrap();
    assert!(
        change(&p, "gateway.api")
            .reason
            .contains("removes fleet.serve[1]")
    );
    let order: Vec<String> = graph::build(&p)
        .unwrap()
        .order()
        .iter()
        .map(|o| o.label())
        .collect();
    let pos = |l: &str| order.iter().position(|x| x == l).unwrap();
    assert!(pos("update gateway.api") < pos("destroy fleet.serve[1]"));
}

#[test]
fn target_limits_the_plan_to_the_resource_and_its_dependencies() {
    let hcl = with_providers(&format!(
        "{VOLUME_FLEET}\nfleet \"other\" {{\n  resources {{ gpu = \"L4\" }}\n}}"
    ));
    let p = run(
        &hcl,
        &state(vec![]),
        &PlanOptions {
            targets: vec!["fleet.train[0]".into()],
            ..Default::default()
        },
    )
    .unwrap();
    let addresses: Vec<&str> = p.changes.iter().map(|c| c.address.as_str()).collect();
    assert_eq!(addresses, vec!["fleet.train[0]", "volume.ckpt[0]"]);
}

#[test]
fn replace_forces_a_replacement_of_a_satisfying_node() {
    let hcl = with_providers(
        r#"fleet "train" {
  resources { gpu = "H100:8" }
}"#,
    );
    let st = state(vec![instance(
        "fleet.train[0]",
        offer("gcp", "a3-highgpu-8g", "us-central1"),
        "",
        &[],
    )]);
    let p = run(
        &hcl,
        &st,
        &PlanOptions {
            replace: vec!["fleet.train[0]".into()],
            ..Default::default()
        },
    )
    .unwrap();
    let c = change(&p, "fleet.train[0]");
    assert_eq!(c.action, Action::Replace);
    assert_eq!(c.reason, "replacement requested with --replace");
}

#[test]
fn unknown_target_or_replace_address_is_an_error_with_a_suggestion() {
    let hcl = with_providers(
        r#"fleet "train" {
  resources { gpu = "H100:8" }
}"#,
    );
    let e = run(
        &hcl,
        &state(vec![]),
        &PlanOptions {
            replace: vec!["fleet.trian[0]".into()],
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "--replace `fleet.trian[0]` matches no resource in the configuration or the state; did you mean `fleet.train[0]`?"
    );
}

#[test]
fn destroy_plans_the_removal_of_everything_and_respects_prevent_destroy() {
    let st = state(vec![
        instance(
            "fleet.train[0]",
            offer("gcp", "a3-highgpu-8g", "us-central1"),
            "",
            &["volume.ckpt[0]"],
        ),
        volume(
            "volume.ckpt[0]",
            ProviderKind::Gcp,
            "us-central1",
            "us-central1-a",
            2048.0,
        ),
    ]);
    let opts = PlanOptions {
        destroy: true,
        ..Default::default()
    };
    let p = run(&with_providers(VOLUME_FLEET), &st, &opts).unwrap();
    assert!(p.changes.iter().all(|c| c.action == Action::Delete));
    assert_eq!(p.cost.after_per_hour, 0.0);
    let hcl = with_providers(
        &VOLUME_FLEET.replace("size = \"2TB\"", "size = \"2TB\"\n  prevent_destroy = true"),
    );
    assert!(matches!(
        run(&hcl, &st, &opts),
        Err(PlanError::PreventDestroy { .. })
    ));
}

#[test]
fn no_offer_names_the_constraint_that_emptied_the_candidates() {
    let hcl = with_providers(
        r#"fleet "train" {
  max_price = 30
  resources { gpu = "H100:8" }
}"#,
    );
    let e = run(&hcl, &state(vec![]), &PlanOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("fleet `train` (main.hcl:"), "{msg}");
    assert!(
        msg.contains("4 offers match gpu H100:8; 0 of them are at or under max_price 30"),
        "{msg}"
    );
    assert!(msg.contains("43.07 gcp a3-highgpu-8g us-central1"), "{msg}");
}

#[test]
fn a_dependency_cycle_is_reported_with_the_full_cycle() {
    // Configurations cannot form a cycle (the loader refuses them), but a hand-edited state
    // can: a plan made from it must say so, not deadlock an apply.
    let mut p = run(
        &with_providers(GATEWAY),
        &state(vec![]),
        &PlanOptions::default(),
    )
    .unwrap();
    for c in p.changes.iter_mut() {
        if c.address == "fleet.serve[0]" {
            c.depends_on.push("gateway.api".into());
        }
    }
    let e = graph::build(&p).unwrap_err();
    assert_eq!(
        e.to_string(),
        "dependency cycle: create fleet.serve[0] -> create gateway.api -> create fleet.serve[0]"
    );
}

#[test]
fn a_state_that_holds_the_plan_plans_no_changes() {
    let cat = Catalog::embedded();
    let cluster = VOLUME_FLEET.replace(
        "resources {",
        "nodes = 8\n  placement = \"cluster\"\n  resources {",
    ) + "\ngateway \"api\" {\n  targets = [fleet.train]\n}";
    for hcl in [
        with_providers(VOLUME_FLEET),
        with_providers(GATEWAY),
        HYBRID.to_string(),
        with_providers(&cluster),
    ] {
        let cfg = config(&hcl);
        let first = plan(&cfg, &state(vec![]), &cat, &PlanOptions::default()).unwrap();
        let held = testing::applied(&first, &cfg, &cat);
        let again = plan(&cfg, &held, &cat, &PlanOptions::default()).unwrap();
        let changed: Vec<_> = again
            .changes
            .iter()
            .filter(|c| c.action != Action::NoOp)
            .collect();
        assert!(changed.is_empty(), "{hcl}\n{changed:#?}");
        assert_eq!(again.cost.delta_per_hour, 0.0);
    }
}

#[test]
fn identical_inputs_give_identical_plans() {
    let hcl = with_providers(HYBRID.trim_start_matches("provider \"aws\" {}"));
    let a = run(&hcl, &state(vec![]), &PlanOptions::default()).unwrap();
    let b = run(&hcl, &state(vec![]), &PlanOptions::default()).unwrap();
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
}

mod brute_force {
    //! The chosen offer equals the cheapest offer a brute-force scan of the shipped catalog
    //! finds under the same rules — written here independently of `Query`.

    use super::*;
    use crate::catalog::Offer;
    use proptest::prelude::*;

    const GPUS: [&str; 6] = ["H100", "A100", "L4", "A10G", "T4", "V100"];
    const REGIONS: [&str; 6] = [
        "us-east-1",
        "us-west-2",
        "us-central1",
        "europe-west4",
        "eastus",
        "westeurope",
    ];

    #[derive(Debug, Clone)]
    struct Fleet {
        gpu: &'static str,
        count: u32,
        spot: &'static str,
        max_price: Option<u32>,
        regions: Vec<&'static str>,
        providers: Vec<&'static str>,
    }

    fn fleet() -> impl Strategy<Value = Fleet> {
        (
            0..GPUS.len(),
            prop::sample::select(vec![1u32, 2, 4, 8]),
            prop::sample::select(vec!["spot", "on-demand", "auto"]),
            prop::option::of(1u32..120),
            prop::sample::subsequence(REGIONS.to_vec(), 0..3),
            prop::sample::subsequence(vec!["aws", "gcp", "azure"], 1..=3),
        )
            .prop_map(|(g, count, spot, max_price, regions, providers)| Fleet {
                gpu: GPUS[g],
                count,
                spot,
                max_price,
                regions,
                providers,
            })
    }

    fn satisfies(f: &Fleet, o: &Offer) -> bool {
        o.gpu_name.eq_ignore_ascii_case(f.gpu)
            && o.gpu_count == f.count
            && match f.spot {
                "spot" => o.spot,
                "on-demand" => !o.spot,
                _ => true,
            }
            && f.max_price.is_none_or(|m| o.price_per_hour <= f64::from(m))
            && (f.regions.is_empty() || f.regions.contains(&o.region.as_str()))
            && f.providers.contains(&o.provider.as_str())
            && o.vcpus >= 2
            && o.memory.gib() >= 8.0
    }

    fn hcl(f: &Fleet) -> String {
        let list = |xs: &[&str]| {
            xs.iter()
                .map(|x| format!("\"{x}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut s = format!(
            "{PROVIDERS}\nfleet \"f\" {{\n  spot_policy = \"{}\"\n  providers = [{}]\n",
            f.spot,
            list(&f.providers)
        );
        if let Some(m) = f.max_price {
            s.push_str(&format!("  max_price = {m}\n"));
        }
        if !f.regions.is_empty() {
            s.push_str(&format!("  regions = [{}]\n", list(&f.regions)));
        }
        s.push_str(&format!(
            "  resources {{ gpu = \"{}:{}\" }}\n}}\n",
            f.gpu, f.count
        ));
        s
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
        #[test]
        fn chosen_offer_is_the_brute_force_cheapest(f in fleet()) {
            let catalog = Catalog::embedded();
            let best = catalog
                .offers()
                .iter()
                .filter(|o| satisfies(&f, o))
                .min_by(|a, b| {
                    a.price_per_hour
                        .total_cmp(&b.price_per_hour)
                        .then(a.provider.cmp(&b.provider))
                        .then(a.region.cmp(&b.region))
                        .then(a.instance_type.cmp(&b.instance_type))
                });
            let result = plan(&config(&hcl(&f)), &state(vec![]), &catalog, &PlanOptions::default());
            match (best, result) {
                (None, Err(PlanError::NoOffer { .. })) => {}
                (Some(o), Ok(p)) => {
                    let c = change(&p, "fleet.f[0]");
                    prop_assert_eq!(after(c, "instance_type"), json!(o.instance_type));
                    prop_assert_eq!(after(c, "region"), json!(o.region));
                    prop_assert_eq!(after(c, "provider"), json!(o.provider.as_str()));
                    prop_assert_eq!(after(c, "price_per_hour"), json!(o.price_per_hour));
                    prop_assert_eq!(after(c, "spot"), json!(o.spot));
                }
                (best, result) => prop_assert!(false, "brute force {:?} but plan {:?}", best, result.map(|p| p.changes)),
            }
        }
    }
}

// Refresh and drift: what changed outside flotilla is reported and corrected.

const DRIFT_FLEET: &str = r#"
provider "aws" { regions = ["us-east-1"] }
volume "data" { size = "100GB" }
fleet "web" {
  nodes     = 2
  providers = ["aws"]
  resources { gpu = "L4:1" }
  volumes   = [volume.data]
  tags      = { team = "web" }
}
gateway "api" { targets = [fleet.web] }
"#;

/// The state an apply of `DRIFT_FLEET` leaves (instances with their fleet tags), and the
/// config.
fn drift_setup() -> (Config, State) {
    let cfg = config(DRIFT_FLEET);
    let first = plan(&cfg, &state(vec![]), &catalog(), &PlanOptions::default()).unwrap();
    let mut st = testing::applied(&first, &cfg, &catalog());
    for r in &mut st.resources {
        if r.kind == ResourceKind::Instance {
            r.attributes.insert("tags".into(), json!({ "team": "web" }));
        }
    }
    let again = plan(&cfg, &st, &catalog(), &PlanOptions::default()).unwrap();
    assert!(!again.has_changes(), "{again:#?}");
    (cfg, st)
}

fn observed(entries: Vec<(&str, Observed)>) -> BTreeMap<String, Observed> {
    entries
        .into_iter()
        .map(|(a, o)| (a.to_string(), o))
        .collect()
}

fn exists_with(st: &State, address: &str, key: &str, value: serde_json::Value) -> Observed {
    let mut r = st.get(address).unwrap().clone();
    r.attributes.insert(key.to_string(), value);
    Observed::Exists(r)
}

use crate::provider::Observed;

#[test]
fn an_instance_deleted_outside_is_reported_and_created_again() {
    let (cfg, st) = drift_setup();
    let refreshed = refresh(&st, &observed(vec![("fleet.web[1]", Observed::Gone)]));
    // The refreshed state keeps lineage and serial (a saved plan's staleness check) and counts
    // the lost node, so its replacement gets another idempotency token.
    assert_eq!(refreshed.state.serial, st.serial);
    assert_eq!(refreshed.state.lineage, st.lineage);
    assert!(refreshed.state.get("fleet.web[1]").is_none());
    assert_eq!(refreshed.state.generation("fleet.web[1]"), 1);
    assert_eq!(refreshed.state.generation("fleet.web[0]"), 0);

    let p = plan_refreshed(&cfg, &refreshed, &catalog(), &PlanOptions::default()).unwrap();
    assert_eq!(
        p.drift,
        vec![Drift {
            address: "fleet.web[1]".into(),
            kind: ResourceKind::Instance,
            gone: true,
            attributes: vec![],
        }]
    );
    let node = change(&p, "fleet.web[1]");
    assert_eq!(node.action, Action::Create);
    assert_eq!(node.reason, "deleted outside flotilla");
    assert!(node.before.is_none());
    // Its volume stays where it is, and the node comes back next to it.
    assert_eq!(change(&p, "volume.data[1]").action, Action::NoOp);
    assert_eq!(
        node.after.as_ref().unwrap()["zone"],
        json!(st.get("volume.data[1]").unwrap().zone)
    );
    assert_eq!(change(&p, "fleet.web[0]").action, Action::NoOp);
    // The gateway registers the new node.
    let gw = change(&p, "gateway.api");
    assert_eq!(gw.action, Action::Update);
    assert!(
        gw.reason.contains("re-registers replaced fleet.web[1]"),
        "{}",
        gw.reason
    );
    assert_eq!(p.summary.add, 1);
    assert_eq!(p.summary.change, 1);
    // The lost node no longer costs anything; the plan brings the cost back.
    assert!(p.cost.delta_per_hour > 0.0);
}

#[test]
fn a_volume_deleted_outside_is_created_again() {
    let (cfg, st) = drift_setup();
    let refreshed = refresh(&st, &observed(vec![("volume.data[0]", Observed::Gone)]));
    let p = plan_refreshed(&cfg, &refreshed, &catalog(), &PlanOptions::default()).unwrap();
    let v = change(&p, "volume.data[0]");
    assert_eq!(v.action, Action::Create);
    assert_eq!(v.reason, "deleted outside flotilla");
    assert_eq!(p.drift.len(), 1);
    assert!(p.drift[0].gone);
}

#[test]
fn tags_changed_outside_are_updated_in_place() {
    let (cfg, st) = drift_setup();
    let refreshed = refresh(
        &st,
        &observed(vec![
            (
                "fleet.web[0]",
                exists_with(&st, "fleet.web[0]", "tags", json!({ "team": "ops" })),
            ),
            (
                "fleet.web[1]",
                Observed::Exists(st.get("fleet.web[1]").unwrap().clone()),
            ),
        ]),
    );
    let p = plan_refreshed(&cfg, &refreshed, &catalog(), &PlanOptions::default()).unwrap();
    assert_eq!(
        p.drift,
        vec![Drift {
            address: "fleet.web[0]".into(),
            kind: ResourceKind::Instance,
            gone: false,
            attributes: vec![AttributeDrift {
                name: "tags".into(),
                before: json!({ "team": "web" }),
                after: json!({ "team": "ops" }),
            }],
        }]
    );
    let node = change(&p, "fleet.web[0]");
    assert_eq!(node.action, Action::Update);
    assert_eq!(node.reason, "tags changed outside flotilla");
    // An unchanged answer is no drift and no change.
    assert_eq!(change(&p, "fleet.web[1]").action, Action::NoOp);
    assert_eq!(p.summary.change, 1);
    assert_eq!(p.summary.add + p.summary.destroy, 0);
}

#[test]
fn gateway_targets_changed_outside_are_updated_in_place() {
    let (cfg, st) = drift_setup();
    let refreshed = refresh(
        &st,
        &observed(vec![(
            "gateway.api",
            exists_with(&st, "gateway.api", "targets", json!(["fleet.web[0]"])),
        )]),
    );
    let p = plan_refreshed(&cfg, &refreshed, &catalog(), &PlanOptions::default()).unwrap();
    assert_eq!(p.drift.len(), 1);
    assert_eq!(p.drift[0].attributes[0].name, "targets");
    assert_eq!(
        p.drift[0].attributes[0].before,
        json!(["fleet.web[0]", "fleet.web[1]"])
    );
    let gw = change(&p, "gateway.api");
    assert_eq!(gw.action, Action::Update);
    assert_eq!(
        gw.reason,
        "targets changed outside flotilla; targets changed: adds fleet.web[1]"
    );
    assert_eq!(p.summary.change, 1);
}

#[test]
fn a_destroy_plan_skips_what_is_already_gone() {
    let (cfg, st) = drift_setup();
    let refreshed = refresh(&st, &observed(vec![("fleet.web[0]", Observed::Gone)]));
    let options = PlanOptions {
        destroy: true,
        ..PlanOptions::default()
    };
    let p = plan_refreshed(&cfg, &refreshed, &catalog(), &options).unwrap();
    assert!(p.changes.iter().all(|c| c.address != "fleet.web[0]"));
    assert_eq!(p.summary.destroy, st.resources.len() - 1);
    assert_eq!(p.drift.len(), 1);
}

#[test]
fn without_answers_nothing_drifts() {
    let (cfg, st) = drift_setup();
    let refreshed = refresh(&st, &BTreeMap::new());
    assert_eq!(refreshed.state, st);
    let p = plan_refreshed(&cfg, &refreshed, &catalog(), &PlanOptions::default()).unwrap();
    assert!(p.drift.is_empty());
    assert!(!p.has_changes());
    assert_eq!(
        p,
        plan(&cfg, &st, &catalog(), &PlanOptions::default()).unwrap()
    );
}

#[test]
fn a_saved_plan_forgets_what_its_refresh_found_gone() {
    let (cfg, st) = drift_setup();
    let refreshed = refresh(&st, &observed(vec![("fleet.web[1]", Observed::Gone)]));
    let p = plan_refreshed(&cfg, &refreshed, &catalog(), &PlanOptions::default()).unwrap();
    // The plan file round-trips its drift.
    let saved: Plan = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(saved.drift, p.drift);
    let mut stored = st.clone();
    forget_gone(&mut stored, &saved.drift);
    assert_eq!(stored, refreshed.state);
}

#[test]
fn a_number_written_differently_is_no_drift() {
    let (cfg, st) = drift_setup();
    let size = st.get("volume.data[0]").unwrap().attributes["size_gib"]
        .as_f64()
        .unwrap();
    // State wrote `100.0`; a provider answers `100`.
    let answer = exists_with(&st, "volume.data[0]", "size_gib", json!(size as u64));
    let refreshed = refresh(&st, &observed(vec![("volume.data[0]", answer)]));
    assert!(refreshed.drift.is_empty(), "{:?}", refreshed.drift);
    let p = plan_refreshed(&cfg, &refreshed, &catalog(), &PlanOptions::default()).unwrap();
    assert!(!p.has_changes());
}
