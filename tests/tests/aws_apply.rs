//! `flotilla apply`, `plan` and `destroy` end to end: the real binary, the real executor and
//! the AWS provider against moto, checked by reading moto back with the SDK.
//!
//! Each test works in its own directory with a state file it writes first, so it knows its
//! lineage (the `flotilla:lineage` tag on everything the apply makes), scopes its faults to
//! it, and runs in parallel with the others on one moto. A tiny catalog (`--catalog`) of
//! instance types moto knows keeps plans small and the cheapest offer known.
//!
//! The binary is found beside the test executable (see `flotilla_tests::bin`): `cargo test
//! --workspace` and `scripts/test` build it.

use aws_sdk_ec2::types::{Filter, Instance, Volume};
use flotilla_tests::moto::{Fault, Moto};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

const REGION: &str = "us-east-1";

/// On-demand A10G: g5.xlarge ($1.006) then g5.2xlarge ($1.212); spot L4: g6.xlarge.
const CATALOG: &str = "\
provider,instance_type,region,zone,gpu_vendor,gpu_name,gpu_count,gpu_memory_gib,vcpus,memory_gib,spot,price_per_hour_usd
aws,g5.xlarge,us-east-1,,nvidia,A10G,1,24,4,16,false,1.006
aws,g5.2xlarge,us-east-1,,nvidia,A10G,1,24,8,32,false,1.212
aws,g5.xlarge,us-east-1,,nvidia,A10G,1,24,4,16,true,0.4512
aws,g6.xlarge,us-east-1,,nvidia,L4,1,24,4,16,false,0.8048
aws,g6.xlarge,us-east-1,,nvidia,L4,1,24,4,16,true,0.3502
";

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

/// A working directory with fleet files, the catalog and a state file of a known lineage.
struct Workdir {
    dir: tempfile::TempDir,
    lineage: String,
}

impl Workdir {
    fn new(fleet: &str) -> Workdir {
        let dir = tempfile::tempdir().expect("temp dir");
        let lineage = uuid::Uuid::new_v4().to_string();
        std::fs::write(dir.path().join("main.hcl"), fleet).expect("write main.hcl");
        std::fs::write(dir.path().join("catalog.csv"), CATALOG).expect("write catalog");
        let state = serde_json::json!({
            "format_version": 1,
            "flotilla_version": "0.1.0",
            "lineage": lineage,
            "serial": 0,
            "resources": [],
            "outputs": {}
        });
        std::fs::write(
            dir.path().join("flotilla.state.json"),
            serde_json::to_string_pretty(&state).expect("json"),
        )
        .expect("write state");
        Workdir { dir, lineage }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `flotilla ARGS -C DIR --catalog DIR/catalog.csv`.
    fn flotilla(&self, args: &[&str]) -> Output {
        let catalog = self.path().join("catalog.csv");
        let out = Command::new(flotilla_tests::bin::flotilla())
            .args(args)
            .arg("-C")
            .arg(self.path())
            .arg("--catalog")
            .arg(&catalog)
            .env("NO_COLOR", "1")
            .env_remove("FLOTILLA_FAKE_PROVIDER_DIR")
            .output()
            .expect("run flotilla");
        eprintln!(
            "$ flotilla {}\n--- exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn state(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path().join("flotilla.state.json")).expect("state");
        serde_json::from_str(&text).expect("state JSON")
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn tag(tags: &[aws_sdk_ec2::types::Tag], key: &str) -> Option<String> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value().map(str::to_string))
}

/// Live instances tagged with `lineage`, by their address tag.
async fn instances(moto: &Moto, lineage: &str) -> BTreeMap<String, Instance> {
    let out = moto
        .ec2(REGION)
        .await
        .describe_instances()
        .filters(
            Filter::builder()
                .name("tag:flotilla:lineage")
                .values(lineage)
                .build(),
        )
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .values("stopping")
                .values("stopped")
                .build(),
        )
        .send()
        .await
        .expect("DescribeInstances");
    let mut by_address = BTreeMap::new();
    for i in out.reservations().iter().flat_map(|r| r.instances()) {
        let address = tag(i.tags(), "flotilla:address").expect("address tag");
        assert!(
            by_address.insert(address.clone(), i.clone()).is_none(),
            "two live instances for {address}"
        );
    }
    by_address
}

/// Volumes tagged with `lineage` (any state but deleted), by their address tag.
async fn volumes(moto: &Moto, lineage: &str) -> BTreeMap<String, Volume> {
    let out = moto
        .ec2(REGION)
        .await
        .describe_volumes()
        .filters(
            Filter::builder()
                .name("tag:flotilla:lineage")
                .values(lineage)
                .build(),
        )
        .send()
        .await
        .expect("DescribeVolumes");
    out.volumes()
        .iter()
        // Root disks carry the node's tags too; the fleet's volumes are the `volume.` ones.
        .filter_map(|v| {
            let address = tag(v.tags(), "flotilla:address")?;
            address.starts_with("volume.").then(|| (address, v.clone()))
        })
        .collect()
}

/// Load balancers tagged with `lineage`: (arn, dns name).
async fn load_balancers(moto: &Moto, lineage: &str) -> Vec<(String, String)> {
    let elb = moto.elb(REGION).await;
    let all = elb
        .describe_load_balancers()
        .send()
        .await
        .expect("DescribeLoadBalancers");
    let mut mine = Vec::new();
    for lb in all.load_balancers() {
        let arn = lb.load_balancer_arn().unwrap_or_default();
        let tags = elb
            .describe_tags()
            .resource_arns(arn)
            .send()
            .await
            .expect("DescribeTags");
        let ours = tags
            .tag_descriptions()
            .iter()
            .flat_map(|d| d.tags())
            .any(|t| t.key() == Some("flotilla:lineage") && t.value() == Some(lineage));
        if ours {
            mine.push((
                arn.to_string(),
                lb.dns_name().unwrap_or_default().to_string(),
            ));
        }
    }
    mine
}

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

    // Destroy leaves nothing tagged with this lineage.
    let out = w.flotilla(&["destroy", "-y"]);
    assert!(out.status.success(), "destroy failed:\n{}", text(&out));
    assert!(instances(&moto, &w.lineage).await.is_empty());
    let left: Vec<String> = volumes(&moto, &w.lineage)
        .await
        .into_iter()
        .filter(|(_, v)| v.state().is_none_or(|s| s.as_str() != "deleted"))
        .map(|(a, _)| a)
        .collect();
    assert!(left.is_empty(), "volumes left: {left:?}");
    assert!(load_balancers(&moto, &w.lineage).await.is_empty());
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
    std::fs::write(w.path().join("main.hcl"), fleet("L4:1")).expect("write main.hcl");
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
