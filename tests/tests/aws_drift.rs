//! Refresh against moto, through the real binary: an instance terminated and a tag changed
//! directly through the SDK, behind flotilla's back, show in `flotilla plan` under "Changed
//! outside flotilla" and are corrected by the next apply, after which a plan has no changes;
//! apply records the configuration's outputs in state and prints them.
//!
//! Each test works in its own directory and lineage (`flotilla_tests::workdir`), so the tests
//! share one moto.

use flotilla_tests::moto::Moto;
use flotilla_tests::workdir::{
    REGION, Workdir, gateway_targets, instance_ids, instances, load_balancers, tag, text, volumes,
};

/// Two nodes, each with a volume, behind a gateway, with outputs.
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
    gpu = "A10G:1"
  }
  volumes = [volume.ckpt]
  tags    = { team = "llm" }
}

gateway "api" {
  targets = [fleet.train]
  port    = 8000
}

output "endpoint" {
  value = gateway.api.dns_name
}

output "node_ips" {
  value = fleet.train.private_ips
}
"#;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn an_instance_terminated_outside_is_reported_and_recreated() {
    let moto = Moto::get();
    let w = Workdir::new(FLEET);
    let out = w.flotilla(&["apply", "-y"]);
    assert!(out.status.success(), "apply failed:\n{}", text(&out));

    // The outputs are in state and printed at the end, as the gateway and nodes are.
    let lbs = load_balancers(&moto, &w.lineage).await;
    let dns = &lbs[0].1;
    let state = w.state();
    assert_eq!(state["outputs"]["endpoint"], dns.as_str());
    let nodes = instances(&moto, &w.lineage).await;
    let ips: Vec<String> = (0..2)
        .map(|i| {
            nodes[&format!("fleet.train[{i}]")]
                .private_ip_address()
                .expect("a private address")
                .to_string()
        })
        .collect();
    assert_eq!(state["outputs"]["node_ips"], serde_json::json!(ips));
    assert!(
        stdout(&out).contains(&format!(
            "\nOutputs:\n\nendpoint = \"{dns}\"\nnode_ips = [\"{}\", \"{}\"]\n",
            ips[0], ips[1]
        )),
        "{}",
        text(&out)
    );

    // Someone terminates a node by hand.
    let before = instance_ids(&moto, &w.lineage).await;
    let lost = before["fleet.train[1]"].clone();
    moto.ec2(REGION)
        .await
        .terminate_instances()
        .instance_ids(&lost)
        .send()
        .await
        .expect("TerminateInstances");

    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let plan = stdout(&out);
    assert!(
        plan.contains(
            "Changed outside flotilla:\n\n  # fleet.train[1] was deleted outside flotilla\n"
        ),
        "{plan}"
    );
    assert!(
        plan.contains("# fleet.train[1] will be created (deleted outside flotilla)"),
        "{plan}"
    );
    assert!(
        plan.contains("Plan: 1 to add, 1 to change, 0 to destroy."),
        "{plan}"
    );

    let out = w.flotilla(&["apply", "-y"]);
    assert!(out.status.success(), "apply failed:\n{}", text(&out));
    assert!(
        stdout(&out).contains("Apply complete! Resources: 1 added, 1 changed, 0 destroyed."),
        "{}",
        text(&out)
    );

    // A new node in its place, with its volume attached, behind the gateway; the other kept.
    let after = instance_ids(&moto, &w.lineage).await;
    assert_eq!(after.len(), 2);
    assert_eq!(after["fleet.train[0]"], before["fleet.train[0]"]);
    assert_ne!(after["fleet.train[1]"], lost);
    let vols = volumes(&moto, &w.lineage).await;
    let attached = vols["volume.ckpt[1]"]
        .attachments()
        .first()
        .and_then(|a| a.instance_id())
        .map(str::to_string);
    assert_eq!(attached.as_deref(), Some(after["fleet.train[1]"].as_str()));
    let mut want: Vec<String> = after.values().cloned().collect();
    want.sort();
    assert_eq!(gateway_targets(&moto, &w.lineage).await, want);
    assert_eq!(
        w.resource("fleet.train[1]").unwrap()["provider_id"],
        after["fleet.train[1]"].as_str()
    );

    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[tokio::test]
async fn a_tag_changed_outside_is_put_back() {
    let moto = Moto::get();
    let w = Workdir::new(FLEET);
    let out = w.flotilla(&["apply", "-y"]);
    assert!(out.status.success(), "apply failed:\n{}", text(&out));

    let id = instance_ids(&moto, &w.lineage).await["fleet.train[0]"].clone();
    let ec2 = moto.ec2(REGION).await;
    ec2.create_tags()
        .resources(&id)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("team")
                .value("ops")
                .build(),
        )
        .send()
        .await
        .expect("CreateTags");

    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let plan = stdout(&out);
    assert!(
        plan.contains(
            "  # fleet.train[0] was changed outside flotilla\n      ~ tags = { team = \"llm\" } -> { team = \"ops\" }\n"
        ),
        "{plan}"
    );
    assert!(
        plan.contains("# fleet.train[0] will be updated in-place (tags changed outside flotilla)"),
        "{plan}"
    );
    assert!(
        plan.contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{plan}"
    );

    let out = w.flotilla(&["apply", "-y"]);
    assert!(out.status.success(), "apply failed:\n{}", text(&out));
    let nodes = instances(&moto, &w.lineage).await;
    let node = &nodes["fleet.train[0]"];
    assert_eq!(node.instance_id(), Some(id.as_str()));
    assert_eq!(tag(node.tags(), "team").as_deref(), Some("llm"));

    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
