//! `flotilla apply`, `plan` and `destroy` end to end on GCP: the real binary, the real
//! executor and the GCP provider (the real `google-cloud-compute-v1` client) against the
//! Compute Engine fake (`tests/gce/server.py`), checked by reading the fake back over its REST
//! API.
//!
//! Each test works in its own directory with a state file it writes first
//! (`flotilla_tests::workdir`), so it knows its lineage (the `flotilla-lineage` label on
//! everything the apply makes), scopes its faults to it and runs in parallel with the others
//! on one fake. A tiny GCP catalog keeps plans small and the cheapest offer known.

use flotilla_tests::gce::{Gce, PROJECT, last, metadata};
use flotilla_tests::workdir::{Workdir, text};
use std::time::{Duration, Instant};

/// GCP offers the fake knows: on-demand T4 on N1 is cheapest, then L4 on G2; spot L4.
const CATALOG: &str = "\
provider,instance_type,region,zone,gpu_vendor,gpu_name,gpu_count,gpu_memory_gib,vcpus,memory_gib,spot,price_per_hour_usd
gcp,n1-standard-8+1xT4,us-central1,,nvidia,T4,1,16,8,30,false,0.70
gcp,g2-standard-8,us-central1,,nvidia,L4,1,24,8,32,false,0.85
gcp,g2-standard-4,us-central1,,nvidia,L4,1,24,4,16,true,0.30
";

/// A training fleet with one volume per node behind a gateway, and a spot batch node.
fn fleet() -> String {
    format!(
        r#"
provider "gcp" {{
  project = "{PROJECT}"
  regions = ["us-central1"]
}}

volume "ckpt" {{
  size = "50GB"
}}

fleet "train" {{
  nodes       = 2
  spot_policy = "on-demand"
  resources {{
    gpu  = "16GB..:1"
    disk = "120GB.."
  }}
  volumes = [volume.ckpt]
  tags    = {{ team = "llm", "Cost Center" = "ML/Ops" }}
}}

fleet "batch" {{
  nodes       = 1
  spot_policy = "spot"
  resources {{
    gpu = "L4:1"
  }}
}}

gateway "api" {{
  targets = [fleet.train]
  port    = 8000
}}
"#
    )
}

/// `nodes` on-demand nodes with 16 GB or more of GPU, in the provider's `zones`.
fn solo(nodes: u32, zones: &str) -> String {
    format!(
        r#"
provider "gcp" {{
  project = "{PROJECT}"
  regions = ["us-central1"]
  zones   = [{zones}]
}}

fleet "solo" {{
  nodes       = {nodes}
  spot_policy = "on-demand"
  resources {{
    gpu = "16GB..:1"
  }}
}}
"#
    )
}

fn workdir(fleet: &str) -> Workdir {
    let w = Workdir::new(fleet);
    std::fs::write(w.path().join("catalog.csv"), CATALOG).expect("write the catalog");
    w
}

fn apply(w: &Workdir) -> String {
    let out = w.flotilla(&["apply", "-y"]);
    assert!(out.status.success(), "apply failed:\n{}", text(&out));
    text(&out)
}

#[test]
fn apply_makes_exactly_the_plan_replan_is_empty_and_destroy_leaves_nothing() {
    let gce = Gce::get();
    let w = workdir(&fleet());

    let said = apply(&w);
    assert!(
        said.contains("Apply complete! Resources: 6 added, 0 changed, 0 destroyed."),
        "{said}"
    );

    // Exactly the planned nodes: machine types, accelerators, scheduling, labels.
    let nodes = gce.instances(&w.lineage);
    assert_eq!(
        nodes.keys().cloned().collect::<Vec<_>>(),
        ["fleet.batch[0]", "fleet.train[0]", "fleet.train[1]"]
    );
    for i in 0..2 {
        let n = &nodes[&format!("fleet.train[{i}]")];
        assert_eq!(last(&n["machineType"]), "n1-standard-8");
        assert_eq!(n["status"], "RUNNING");
        let acc = &n["guestAccelerators"][0];
        assert_eq!(last(&acc["acceleratorType"]), "nvidia-tesla-t4");
        assert_eq!(acc["acceleratorCount"], 1);
        assert_eq!(n["scheduling"]["onHostMaintenance"], "TERMINATE");
        assert_eq!(n["scheduling"]["provisioningModel"], "STANDARD");
        assert_eq!(n["labels"]["team"], "llm");
        // Sanitised to GCP's label rules, the original kept in metadata.
        assert_eq!(n["labels"]["cost_center"], "ml_ops");
        assert!(
            metadata(n, "flotilla-tags")
                .unwrap_or_default()
                .contains("\"Cost Center\":\"ML/Ops\""),
            "{n}"
        );
        assert_eq!(
            n["labels"]["flotilla-lineage"],
            w.lineage.to_ascii_lowercase()
        );
        // The boot disk has the fleet's disk size.
        let boot = n["disks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["boot"] == true)
            .expect("a boot disk");
        assert_eq!(boot["diskSizeGb"], "120");
    }
    let batch = &nodes["fleet.batch[0]"];
    assert_eq!(last(&batch["machineType"]), "g2-standard-4");
    assert!(
        batch.get("guestAccelerators").is_none(),
        "G2 bundles its L4"
    );
    assert_eq!(batch["scheduling"]["provisioningModel"], "SPOT");
    assert_eq!(batch["scheduling"]["instanceTerminationAction"], "DELETE");
    assert_eq!(batch["scheduling"]["onHostMaintenance"], "TERMINATE");

    // One volume disk per train node, attached to it, in its zone.
    let disks = gce.disks(&w.lineage);
    let volumes: Vec<_> = disks
        .iter()
        .filter(|d| {
            d["name"]
                .as_str()
                .unwrap_or_default()
                .contains("-volume-ckpt-")
        })
        .collect();
    assert_eq!(volumes.len(), 2, "{disks:?}");
    for i in 0..2 {
        let n = &nodes[&format!("fleet.train[{i}]")];
        let v = volumes
            .iter()
            .find(|d| {
                d["name"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("-volume-ckpt-{i}-"))
            })
            .expect("the node's volume");
        assert_eq!(v["sizeGb"], "50");
        assert_eq!(v["zone"], n["zone"]);
        assert_eq!(v["users"][0], n["selfLink"]);
    }

    // The gateway: a target pool of the train nodes behind a forwarding rule on port 8000
    // from a static address.
    let pools = gce.target_pools(&w.lineage);
    assert_eq!(pools.len(), 1, "{pools:?}");
    let mut members: Vec<String> = pools[0]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(last)
        .collect();
    members.sort();
    let mut want: Vec<String> = (0..2)
        .map(|i| last(&nodes[&format!("fleet.train[{i}]")]["selfLink"]))
        .collect();
    want.sort();
    assert_eq!(members, want);
    let rules = gce.aggregated(
        "forwardingRules",
        &flotilla_tests::gce::lineage_filter(&w.lineage),
    );
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0]["portRange"], "8000-8000");
    assert_eq!(rules[0]["IPProtocol"], "TCP");
    assert_eq!(rules[0]["target"], pools[0]["selfLink"]);
    let addresses = gce.aggregated(
        "addresses",
        &flotilla_tests::gce::lineage_filter(&w.lineage),
    );
    assert_eq!(addresses.len(), 1);
    assert_eq!(addresses[0]["address"], rules[0]["IPAddress"]);
    assert_eq!(addresses[0]["status"], "IN_USE");

    // Re-plan: nothing to do, nothing drifted, and the refresh was batched: one
    // aggregatedList for all instances, none read one by one.
    let node_names: Vec<String> = nodes.values().map(|n| last(&n["name"])).collect();
    let gets = || -> usize {
        node_names
            .iter()
            .map(|n| gce.calls("instances.get", n).len())
            .sum()
    };
    let gets_before = gets();
    let lists_before = gce.calls("instances.aggregatedList", &w.lineage).len();
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("No changes."), "{}", text(&out));
    assert!(
        !text(&out).contains("Changed outside flotilla"),
        "{}",
        text(&out)
    );
    assert_eq!(
        gce.calls("instances.aggregatedList", &w.lineage).len(),
        lists_before + 1
    );
    assert_eq!(gets(), gets_before, "refresh reads no instance one by one");

    // Destroy leaves nothing labelled, no pool, no address.
    let out = w.flotilla(&["destroy", "-y"]);
    assert!(out.status.success(), "destroy failed:\n{}", text(&out));
    assert_eq!(gce.leftovers(&w.lineage), Vec::<String>::new());
}

#[test]
fn capacity_in_one_zone_moves_to_the_next_zone() {
    let gce = Gce::get();
    let w = workdir(&solo(
        1,
        r#""us-central1-a", "us-central1-b", "us-central1-c""#,
    ));
    let fault = gce.fault(
        "instances.insert",
        &w.lineage,
        &[("zone", "us-central1-a"), ("machineType", "n1-standard-8")],
        "ZONE_RESOURCE_POOL_EXHAUSTED",
    );
    apply(&w);
    assert_eq!(
        gce.fault_hits(&fault),
        1,
        "the first zone was tried and was full"
    );
    let nodes = gce.instances(&w.lineage);
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let n = &nodes["fleet.solo[0]"];
    assert_eq!(last(&n["zone"]), "us-central1-b", "the next zone in order");
    assert_eq!(last(&n["machineType"]), "n1-standard-8", "the same offer");
    assert_eq!(
        w.resource("fleet.solo[0]").expect("recorded")["zone"],
        "us-central1-b"
    );
    gce.clear_fault(&fault);
    let out = w.flotilla(&["destroy", "-y"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(gce.leftovers(&w.lineage), Vec::<String>::new());
}

#[test]
fn capacity_in_every_zone_fails_over_to_the_next_offer() {
    let gce = Gce::get();
    let w = workdir(&solo(1, r#""us-central1-a", "us-central1-b""#));
    let fault = gce.fault(
        "instances.insert",
        &w.lineage,
        &[("machineType", "n1-standard-8")],
        "ZONE_RESOURCE_POOL_EXHAUSTED",
    );
    let said = apply(&w);
    assert_eq!(gce.fault_hits(&fault), 2, "both zones were tried");
    assert!(said.contains("ZONE_RESOURCE_POOL_EXHAUSTED"), "{said}");
    let nodes = gce.instances(&w.lineage);
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let n = &nodes["fleet.solo[0]"];
    assert_eq!(last(&n["machineType"]), "g2-standard-8", "the next offer");
    assert_eq!(
        w.resource("fleet.solo[0]").expect("recorded")["offer"]["instance_type"],
        "g2-standard-8"
    );
    gce.clear_fault(&fault);
    let out = w.flotilla(&["destroy", "-y"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(gce.leftovers(&w.lineage), Vec::<String>::new());
}

#[test]
fn scale_up_then_down_removes_the_highest_index() {
    let gce = Gce::get();
    let zones = r#""us-central1-a""#;
    let w = workdir(&solo(1, zones));
    apply(&w);
    w.write_fleet(&solo(3, zones));
    let said = apply(&w);
    assert!(said.contains("2 added, 0 changed, 0 destroyed"), "{said}");
    assert_eq!(
        gce.instances(&w.lineage)
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        ["fleet.solo[0]", "fleet.solo[1]", "fleet.solo[2]"]
    );
    w.write_fleet(&solo(2, zones));
    let said = apply(&w);
    assert!(said.contains("0 added, 0 changed, 1 destroyed"), "{said}");
    assert_eq!(
        gce.instances(&w.lineage)
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        ["fleet.solo[0]", "fleet.solo[1]"]
    );
    let out = w.flotilla(&["destroy", "-y"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(gce.leftovers(&w.lineage), Vec::<String>::new());
}

#[test]
fn killed_during_an_insert_then_applied_again_makes_no_duplicate() {
    let gce = Gce::get();
    let w = workdir(&solo(1, r#""us-central1-a""#));
    // The insert's operation stays RUNNING while this fault exists.
    let hold = gce.fault("instances.insert", &w.lineage, &[], "HOLD");
    let running = w.spawn(&["apply", "-y"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while gce.calls("instances.insert", &w.lineage).is_empty() {
        assert!(Instant::now() < deadline, "the apply never sent its insert");
        std::thread::sleep(Duration::from_millis(50));
    }
    running.kill();
    gce.clear_fault(&hold);

    apply(&w);
    let all = gce.all_instances(&w.lineage);
    assert_eq!(all.len(), 1, "exactly one instance: {all:?}");
    let recorded = w.resource("fleet.solo[0]").expect("recorded");
    assert_eq!(recorded["provider_id"], all[0]["name"]);
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = w.flotilla(&["destroy", "-y"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(gce.leftovers(&w.lineage), Vec::<String>::new());
}

/// One on-demand node with a volume, in one zone.
fn with_volume() -> String {
    format!(
        r#"
provider "gcp" {{
  project = "{PROJECT}"
  regions = ["us-central1"]
  zones   = ["us-central1-c"]
}}

volume "data" {{
  size = "20GB"
}}

fleet "solo" {{
  nodes       = 1
  spot_policy = "on-demand"
  resources {{
    gpu = "16GB..:1"
  }}
  volumes = [volume.data]
}}
"#
    )
}

#[test]
fn a_replaced_node_takes_its_disk_along() {
    let gce = Gce::get();
    let w = workdir(&with_volume());
    apply(&w);
    let before = gce.instances(&w.lineage)["fleet.solo[0]"].clone();
    let said = apply_args(&w, &["apply", "-y", "--replace", "fleet.solo[0]"]);
    assert!(said.contains("1 added, 0 changed, 1 destroyed"), "{said}");
    let nodes = gce.instances(&w.lineage);
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let after = &nodes["fleet.solo[0]"];
    assert_ne!(after["id"], before["id"], "a new instance");
    let disks = gce.disks(&w.lineage);
    let volume: Vec<_> = disks
        .iter()
        .filter(|d| {
            d["name"]
                .as_str()
                .unwrap_or_default()
                .contains("-volume-data-0-")
        })
        .collect();
    assert_eq!(volume.len(), 1, "the same disk, not a new one: {disks:?}");
    assert_eq!(
        volume[0]["users"][0], after["selfLink"],
        "attached to the new node"
    );
    let out = w.flotilla(&["destroy", "-y"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(gce.leftovers(&w.lineage), Vec::<String>::new());
}

/// Two regions: T4 and L4 in us-central1 rank before T4 in us-east4.
const TWO_REGIONS: &str = "\
provider,instance_type,region,zone,gpu_vendor,gpu_name,gpu_count,gpu_memory_gib,vcpus,memory_gib,spot,price_per_hour_usd
gcp,n1-standard-8+1xT4,us-central1,,nvidia,T4,1,16,8,30,false,0.70
gcp,g2-standard-8,us-central1,,nvidia,L4,1,24,8,32,false,0.85
gcp,n1-standard-8+1xT4,us-east4,,nvidia,T4,1,16,8,30,false,0.90
";

#[test]
fn quota_exceeded_moves_to_the_next_region_naming_the_quota() {
    let gce = Gce::get();
    let w = Workdir::new(&format!(
        r#"
provider "gcp" {{
  project = "{PROJECT}"
  regions = ["us-central1", "us-east4"]
}}

fleet "solo" {{
  nodes       = 1
  spot_policy = "on-demand"
  resources {{
    gpu = "16GB..:1"
  }}
}}
"#
    ));
    std::fs::write(w.path().join("catalog.csv"), TWO_REGIONS).expect("write the catalog");
    // The T4 quota of us-central1 is spent; g2 there would have room, but the quota error
    // rules out the region for this apply.
    let body = serde_json::json!({
        "method": "instances.insert",
        "match": {"_any": w.lineage, "machineType": "n1-standard-8", "region": "us-central1"},
        "code": "QUOTA_EXCEEDED",
        "quota": "NVIDIA_T4_GPUS",
    });
    let fault = gce.fault_json(&body);
    let said = apply(&w);
    assert_eq!(
        gce.fault_hits(&fault),
        1,
        "quota is regional: one zone is enough"
    );
    assert!(said.contains("QUOTA_EXCEEDED"), "{said}");
    assert!(
        said.contains("NVIDIA_T4_GPUS"),
        "the quota is named: {said}"
    );
    assert!(said.contains("over quota"), "{said}");
    let nodes = gce.instances(&w.lineage);
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let n = &nodes["fleet.solo[0]"];
    assert_eq!(last(&n["machineType"]), "n1-standard-8", "the same offer");
    assert!(
        last(&n["zone"]).starts_with("us-east4-"),
        "the next region, not g2 in the same one: {n}"
    );
    assert_eq!(
        w.resource("fleet.solo[0]").expect("recorded")["region"],
        "us-east4"
    );
    gce.clear_fault(&fault);
    let out = w.flotilla(&["destroy", "-y"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(gce.leftovers(&w.lineage), Vec::<String>::new());
}

#[test]
fn a_name_taken_by_someone_else_is_an_error_not_an_adoption() {
    let gce = Gce::get();
    let w = workdir(&solo(1, r#""us-central1-a""#));
    // An apply that dies before recording makes the node; its labels are then changed to
    // another owner's, as if the name were taken by a stranger.
    let hold = gce.fault("instances.insert", &w.lineage, &[], "HOLD");
    let running = w.spawn(&["apply", "-y"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while gce.calls("instances.insert", &w.lineage).is_empty() {
        assert!(Instant::now() < deadline, "the apply never sent its insert");
        std::thread::sleep(Duration::from_millis(50));
    }
    running.kill();
    gce.clear_fault(&hold);
    let node = gce.all_instances(&w.lineage).pop().expect("the node");
    gce.relabel(&node, &[("flotilla-lineage", "someone-else")]);

    let out = w.flotilla(&["apply", "-y"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("alreadyExists"), "{}", text(&out));
    assert!(
        text(&out).contains("is not fleet.solo[0]'s"),
        "{}",
        text(&out)
    );
    assert!(w.resource("fleet.solo[0]").is_none(), "nothing adopted");
    gce.delete_instance(&node);
}

#[test]
fn a_mixed_fleet_plan_picks_the_cheaper_cloud() {
    let w = Workdir::new(&format!(
        r#"
provider "aws" {{
  regions = ["us-east-1"]
}}

provider "gcp" {{
  project = "{PROJECT}"
  regions = ["us-central1"]
}}

fleet "mixed" {{
  nodes       = 1
  spot_policy = "on-demand"
  resources {{
    gpu = "16GB..:1"
  }}
}}
"#
    ));
    let both = format!("{CATALOG}aws,g5.xlarge,us-east-1,,nvidia,A10G,1,24,4,16,false,1.006\n");
    std::fs::write(w.path().join("catalog.csv"), &both).expect("write the catalog");
    let out = w.flotilla(&["plan", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the plan as JSON");
    let after = &plan["changes"][0]["after"];
    assert_eq!(after["provider"], "gcp", "{plan}");
    assert_eq!(after["instance_type"], "n1-standard-8+1xT4");

    // Dearer on GCP than on AWS: AWS wins.
    let dearer = both
        .replace(
            "n1-standard-8+1xT4,us-central1,,nvidia,T4,1,16,8,30,false,0.70",
            "n1-standard-8+1xT4,us-central1,,nvidia,T4,1,16,8,30,false,1.70",
        )
        .replace(
            "g2-standard-8,us-central1,,nvidia,L4,1,24,8,32,false,0.85",
            "g2-standard-8,us-central1,,nvidia,L4,1,24,8,32,false,1.85",
        );
    std::fs::write(w.path().join("catalog.csv"), &dearer).expect("write the catalog");
    let out = w.flotilla(&["plan", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the plan as JSON");
    assert_eq!(plan["changes"][0]["after"]["provider"], "aws", "{plan}");
}

fn apply_args(w: &Workdir, args: &[&str]) -> String {
    let out = w.flotilla(args);
    assert!(
        out.status.success(),
        "flotilla {args:?} failed:\n{}",
        text(&out)
    );
    text(&out)
}

/// `nodes` on-demand nodes behind a gateway, in one zone.
fn served(nodes: u32) -> String {
    format!(
        r#"
provider "gcp" {{
  project = "{PROJECT}"
  regions = ["us-central1"]
  zones   = ["us-central1-f"]
}}

fleet "web" {{
  nodes       = {nodes}
  spot_policy = "on-demand"
  resources {{
    gpu = "16GB..:1"
  }}
  tags = {{ team = "serving" }}
}}

gateway "front" {{
  targets = [fleet.web]
  port    = 443
}}
"#
    )
}

#[test]
fn gateway_targets_change_in_place() {
    let gce = Gce::get();
    let w = workdir(&served(1));
    apply(&w);
    let rule_before = gce.aggregated(
        "forwardingRules",
        &flotilla_tests::gce::lineage_filter(&w.lineage),
    );
    assert_eq!(rule_before.len(), 1);
    w.write_fleet(&served(2));
    let said = apply(&w);
    assert!(said.contains("1 added, 1 changed, 0 destroyed"), "{said}");
    let pools = gce.target_pools(&w.lineage);
    assert_eq!(pools.len(), 1);
    assert_eq!(pools[0]["instances"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        gce.calls("targetPools.addInstance", &last(&pools[0]["name"]))
            .len(),
        1
    );
    let rule_after = gce.aggregated(
        "forwardingRules",
        &flotilla_tests::gce::lineage_filter(&w.lineage),
    );
    assert_eq!(
        rule_after[0]["id"], rule_before[0]["id"],
        "the same forwarding rule"
    );

    w.write_fleet(&served(1));
    apply(&w);
    let pools = gce.target_pools(&w.lineage);
    assert_eq!(pools[0]["instances"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        gce.calls("targetPools.removeInstance", &last(&pools[0]["name"]))
            .len(),
        1
    );
    let out = w.flotilla(&["destroy", "-y"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(gce.leftovers(&w.lineage), Vec::<String>::new());
}

#[test]
fn labels_changed_outside_show_as_drift_and_apply_puts_them_back() {
    let gce = Gce::get();
    let w = workdir(&solo(1, r#""us-central1-a""#));
    apply(&w);
    let node = gce.instances(&w.lineage)["fleet.solo[0]"].clone();
    gce.relabel(&node, &[("owner", "mallory")]);
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("Changed outside flotilla"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("mallory"), "{}", text(&out));
    apply(&w);
    let node = gce.instances(&w.lineage)["fleet.solo[0]"].clone();
    assert!(node["labels"].get("owner").is_none(), "{node}");
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = w.flotilla(&["destroy", "-y"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(gce.leftovers(&w.lineage), Vec::<String>::new());
}

#[test]
fn a_cluster_fleet_shares_a_compact_placement_policy_in_one_zone() {
    let gce = Gce::get();
    let w = workdir(&format!(
        r#"
provider "gcp" {{
  project = "{PROJECT}"
  regions = ["us-central1"]
}}

fleet "ring" {{
  nodes       = 2
  placement   = "cluster"
  spot_policy = "on-demand"
  resources {{
    gpu = "16GB..:1"
  }}
}}
"#
    ));
    apply(&w);
    let nodes = gce.instances(&w.lineage);
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    let zones: std::collections::BTreeSet<String> =
        nodes.values().map(|n| last(&n["zone"])).collect();
    assert_eq!(zones.len(), 1, "one zone: {zones:?}");
    let policies: std::collections::BTreeSet<String> = nodes
        .values()
        .map(|n| last(&n["resourcePolicies"][0]))
        .collect();
    assert_eq!(policies.len(), 1, "one policy for the fleet: {policies:?}");
    let policy = policies.into_iter().next().unwrap();
    assert!(!policy.is_empty());
    // Nodes made in parallel may both ask for it: with one requestId, so it exists once.
    let inserts = gce.calls("resourcePolicies.insert", &policy);
    assert!(!inserts.is_empty());
    let ids: std::collections::BTreeSet<String> = inserts
        .iter()
        .map(|c| {
            c["query"]["requestId"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1, "{inserts:?}");
    assert_eq!(
        inserts[0]["body"]["groupPlacementPolicy"]["collocation"],
        "COLLOCATED"
    );
    let path = format!("regions/us-central1/resourcePolicies/{policy}");
    assert!(gce.exists(&path));
    let out = w.flotilla(&["destroy", "-y"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(gce.all_instances(&w.lineage).is_empty());
    assert!(
        !gce.exists(&path),
        "the policy goes with the fleet's last node"
    );
}
