//! `flotilla apply`, `plan` and `destroy` end to end: the real binary, the real executor and
//! the AWS provider against moto, checked by reading moto back with the SDK.
//!
//! Each test works in its own directory with a state file it writes first
//! (`flotilla_tests::workdir`), so it knows its lineage (the `flotilla:lineage` tag on
//! everything the apply makes), scopes its faults to it, and runs in parallel with the others
//! on one moto. A tiny catalog (`--catalog`) of instance types moto knows keeps plans small
//! and the cheapest offer known.
//!
//! The binary is found beside the test executable (see `flotilla_tests::bin`): `cargo test
//! --workspace` and `scripts/test` build it.

use flotilla_tests::moto::{Fault, Moto};
use flotilla_tests::workdir::{
    REGION, Workdir, instances, leftovers, load_balancers, tag, text, volumes,
};

/// A training fleet with one volume per node behind a gateway, and a spot batch node.
const FLEET: &str = r#"
provider "aws" {
  regions = ["us-east-1"]
}

volume "ckpt" {
  size = "50GB"
}

fleet "train" {
  nodes       = 2
  spot_policy = "on-demand"
  providers   = ["aws"]
  resources {
    gpu  = "A10G:1"
    disk = "120GB.."
  }
  volumes = [volume.ckpt]
  tags    = { team = "llm" }
}

fleet "batch" {
  nodes       = 1
  spot_policy = "spot"
  resources {
    gpu = "L4:1"
  }
}

gateway "api" {
  targets = [fleet.train]
  port    = 8000
}
"#;

/// One on-demand A10G node.
const ONE_NODE: &str = r#"
provider "aws" {
  regions = ["us-east-1"]
}

fleet "solo" {
  nodes       = 1
  spot_policy = "on-demand"
  resources {
    gpu = "A10G:1"
  }
}
"#;

#[tokio::test]
async fn apply_makes_exactly_the_plan_then_destroy_leaves_nothing() {
    let moto = Moto::get();
    let w = Workdir::new(FLEET);

    let out = w.flotilla(&["apply", "-y"]);
    assert!(out.status.success(), "apply failed:\n{}", text(&out));
    assert!(text(&out).contains("Apply complete! Resources: 6 added, 0 changed, 0 destroyed."));

    // Exactly the planned nodes: types, market, tags, zones.
    let nodes = instances(&moto, &w.lineage).await;
    assert_eq!(
        nodes.keys().cloned().collect::<Vec<_>>(),
        ["fleet.batch[0]", "fleet.train[0]", "fleet.train[1]"]
    );
    for i in 0..2 {
        let n = &nodes[&format!("fleet.train[{i}]")];
        assert_eq!(n.instance_type().map(|t| t.as_str()), Some("g5.xlarge"));
        assert_eq!(n.instance_lifecycle(), None, "on-demand");
        assert_eq!(tag(n.tags(), "team").as_deref(), Some("llm"));
    }
    let batch = &nodes["fleet.batch[0]"];
    assert_eq!(batch.instance_type().map(|t| t.as_str()), Some("g6.xlarge"));
    assert_eq!(batch.instance_lifecycle().map(|l| l.as_str()), Some("spot"));

    // One volume per train node, attached to it, in its zone.
    let vols = volumes(&moto, &w.lineage).await;
    assert_eq!(
        vols.keys().cloned().collect::<Vec<_>>(),
        ["volume.ckpt[0]", "volume.ckpt[1]"]
    );
    for i in 0..2 {
        let v = &vols[&format!("volume.ckpt[{i}]")];
        let n = &nodes[&format!("fleet.train[{i}]")];
        assert_eq!(v.size(), Some(50));
        let a = v.attachments().first().expect("attached");
        assert_eq!(a.instance_id(), n.instance_id());
        assert_eq!(a.state().map(|s| s.as_str()), Some("attached"));
        assert_eq!(
            v.availability_zone(),
            n.placement().and_then(|p| p.availability_zone())
        );
    }

    // The gateway: one load balancer whose targets are the train nodes, listening on 8000.
    let lbs = load_balancers(&moto, &w.lineage).await;
    assert_eq!(lbs.len(), 1, "{lbs:?}");
    let (arn, dns) = &lbs[0];
    let elb = moto.elb(REGION).await;
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(arn)
        .send()
        .await
        .expect("DescribeListeners");
    assert_eq!(listeners.listeners()[0].port(), Some(8000));
    let tg = listeners.listeners()[0].default_actions()[0]
        .target_group_arn()
        .expect("forwards to a target group")
        .to_string();
    let health = elb
        .describe_target_health()
        .target_group_arn(&tg)
        .send()
        .await
        .expect("DescribeTargetHealth");
    let mut targets: Vec<String> = health
        .target_health_descriptions()
        .iter()
        .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_string))
        .collect();
    targets.sort();
    let mut want: Vec<String> = (0..2)
        .filter_map(|i| {
            nodes[&format!("fleet.train[{i}]")]
                .instance_id()
                .map(str::to_string)
        })
        .collect();
    want.sort();
    assert_eq!(targets, want);

    // State records it all, the DNS name included.
    let state = w.state();
    let resources = state["resources"].as_array().expect("resources");
    assert_eq!(resources.len(), 6);
    let gw = resources
        .iter()
        .find(|r| r["address"] == "gateway.api")
        .expect("gateway in state");
    assert_eq!(gw["attributes"]["dns_name"], dns.as_str());

    // Nothing left to do.
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a second plan has changes:\n{}",
        text(&out)
    );
    // flotilla's own attaches are not drift.
    assert!(
        !text(&out).contains("outside flotilla"),
        "a second plan reports drift:\n{}",
        text(&out)
    );

    // Destroy leaves nothing tagged with this lineage: no instance, volume (root disks
    // included), load balancer, target group or placement group.
    let out = w.flotilla(&["destroy", "-y"]);
    assert!(out.status.success(), "destroy failed:\n{}", text(&out));
    let left = leftovers(&moto, &w.lineage).await;
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(w.state()["resources"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn capacity_failure_moves_to_the_next_offer() {
    let moto = Moto::get();
    let w = Workdir::new(ONE_NODE);
    let fault = moto.fault(
        &Fault::new(
            "RunInstances",
            &w.lineage,
            "InsufficientInstanceCapacity",
            500,
        )
        .matching("InstanceType", "g5.xlarge"),
    );

    let out = w.flotilla(&["apply", "-y"]);
    assert!(out.status.success(), "apply failed:\n{}", text(&out));
    let said = text(&out);
    assert!(said.contains("InsufficientInstanceCapacity"), "{said}");
    assert!(said.contains("g5.2xlarge"), "{said}");
    assert_eq!(
        moto.fault_hits(&fault),
        1,
        "the SDK does not retry a capacity error"
    );

    let nodes = instances(&moto, &w.lineage).await;
    assert_eq!(nodes.len(), 1);
    assert_eq!(
        nodes["fleet.solo[0]"].instance_type().map(|t| t.as_str()),
        Some("g5.2xlarge")
    );
    let state = w.state();
    assert_eq!(
        state["resources"][0]["offer"]["instance_type"], "g5.2xlarge",
        "{state}"
    );
    moto.clear_fault(&fault);

    let out = w.flotilla(&["destroy", "-y"]);
    assert!(out.status.success(), "destroy failed:\n{}", text(&out));
    assert!(instances(&moto, &w.lineage).await.is_empty());
}

#[tokio::test]
async fn throttling_is_retried_until_it_passes() {
    let moto = Moto::get();
    let w = Workdir::new(ONE_NODE);
    // More than the SDK's three attempts: the executor's retry takes over.
    let fault =
        moto.fault(&Fault::new("RunInstances", &w.lineage, "RequestLimitExceeded", 503).times(4));
    let out = w.flotilla(&["apply", "-y"]);
    assert!(out.status.success(), "apply failed:\n{}", text(&out));
    assert!(text(&out).contains("throttled"), "{}", text(&out));
    assert_eq!(moto.fault_hits(&fault), 4);
    let nodes = instances(&moto, &w.lineage).await;
    assert_eq!(nodes.len(), 1, "one node, no duplicate");

    let out = w.flotilla(&["destroy", "-y"]);
    assert!(out.status.success(), "destroy failed:\n{}", text(&out));
    assert!(instances(&moto, &w.lineage).await.is_empty());
}

#[tokio::test]
async fn replaced_nodes_take_their_volumes_along() {
    let moto = Moto::get();
    let fleet = |gpu: &str| {
        format!(
            r#"
provider "aws" {{
  regions = ["us-east-1"]
}}

volume "data" {{
  size = "20GB"
}}

fleet "work" {{
  nodes       = 1
  spot_policy = "on-demand"
  resources {{
    gpu = "{gpu}"
  }}
  volumes = [volume.data]
}}
"#
        )
    };
    let w = Workdir::new(&fleet("A10G:1"));
    let out = w.flotilla(&["apply", "-y"]);
    assert!(out.status.success(), "apply failed:\n{}", text(&out));
    let before = instances(&moto, &w.lineage).await;
    let old = before["fleet.work[0]"].clone();
    let vol = volumes(&moto, &w.lineage).await["volume.data[0]"].clone();
    assert_eq!(vol.attachments()[0].instance_id(), old.instance_id());

    // Another GPU: the node is replaced; its volume is detached and follows it.
    w.write_fleet(&fleet("L4:1"));
    let out = w.flotilla(&["apply", "-y"]);
    assert!(out.status.success(), "apply failed:\n{}", text(&out));
    let after = instances(&moto, &w.lineage).await;
    assert_eq!(after.len(), 1, "the old node is gone: {:?}", after.keys());
    let new = &after["fleet.work[0]"];
    assert_ne!(new.instance_id(), old.instance_id());
    assert_eq!(new.instance_type().map(|t| t.as_str()), Some("g6.xlarge"));
    let vols = volumes(&moto, &w.lineage).await;
    assert_eq!(vols.len(), 1);
    let moved = &vols["volume.data[0]"];
    assert_eq!(
        moved.volume_id(),
        vol.volume_id(),
        "the same disk, not a new one"
    );
    let a = moved.attachments().first().expect("attached");
    assert_eq!(a.instance_id(), new.instance_id());
    assert_eq!(a.state().map(|s| s.as_str()), Some("attached"));
    assert_eq!(
        moto.calls("DetachVolume", vol.volume_id().unwrap_or_default())[0]["params"]["InstanceId"],
        old.instance_id().unwrap_or_default()
    );

    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a second plan has changes:\n{}",
        text(&out)
    );
    let out = w.flotilla(&["destroy", "-y"]);
    assert!(out.status.success(), "destroy failed:\n{}", text(&out));
    assert!(instances(&moto, &w.lineage).await.is_empty());
    assert!(volumes(&moto, &w.lineage).await.is_empty());
}
