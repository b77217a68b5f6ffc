//! A working directory for one end-to-end test of the `flotilla` binary against moto, and the
//! readers that count what moto holds for it.
//!
//! Each test gets its own directory with fleet files, a tiny catalog and a state file written
//! before the first apply, so the test knows its lineage: the `flotilla:lineage` tag on
//! everything its applies make. That keeps tests apart on one shared moto (they run in
//! parallel and never reset it) and lets a test count its own instances, volumes, load
//! balancers, target groups and placement groups by tag — duplicates and orphans included.

use crate::moto::Moto;
use aws_sdk_ec2::types::{Filter, Instance, Tag, Volume};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The region every test fleet runs in.
pub const REGION: &str = "us-east-1";

/// Instance types moto knows, priced so the cheapest offer is known: on-demand A10G is
/// g5.xlarge ($1.006) then g5.2xlarge ($1.212); L4 is g6.xlarge, on-demand or spot.
pub const CATALOG: &str = "\
provider,instance_type,region,zone,gpu_vendor,gpu_name,gpu_count,gpu_memory_gib,vcpus,memory_gib,spot,price_per_hour_usd
aws,g5.xlarge,us-east-1,,nvidia,A10G,1,24,4,16,false,1.006
aws,g5.2xlarge,us-east-1,,nvidia,A10G,1,24,8,32,false,1.212
aws,g5.xlarge,us-east-1,,nvidia,A10G,1,24,4,16,true,0.4512
aws,g6.xlarge,us-east-1,,nvidia,L4,1,24,4,16,false,0.8048
aws,g6.xlarge,us-east-1,,nvidia,L4,1,24,4,16,true,0.3502
";

/// A working directory with fleet files (`main.hcl`), the catalog and a state file of a
/// known lineage. Removed when dropped.
pub struct Workdir {
    dir: tempfile::TempDir,
    /// The state's lineage: every resource the applies make is tagged with it.
    pub lineage: String,
}

impl Workdir {
    /// A directory holding `fleet` as `main.hcl`, [`CATALOG`] and an empty state.
    pub fn new(fleet: &str) -> Workdir {
        let dir = tempfile::tempdir().expect("temp dir");
        let lineage = uuid::Uuid::new_v4().to_string();
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
        let w = Workdir { dir, lineage };
        w.write_fleet(fleet);
        w
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces the fleet files with `fleet`.
    pub fn write_fleet(&self, fleet: &str) {
        std::fs::write(self.path().join("main.hcl"), fleet).expect("write main.hcl");
    }

    /// `flotilla ARGS -C DIR --catalog DIR/catalog.csv`, not started yet.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(crate::bin::flotilla());
        cmd.args(args)
            .arg("-C")
            .arg(self.path())
            .arg("--catalog")
            .arg(self.path().join("catalog.csv"))
            .env("NO_COLOR", "1")
            .env_remove("FLOTILLA_FAKE_PROVIDER_DIR");
        cmd
    }

    /// Runs `flotilla ARGS` to the end and logs what it said (shown when the test fails).
    pub fn flotilla(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().expect("run flotilla");
        eprintln!(
            "$ flotilla {}\n--- exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Starts `flotilla ARGS` in the background, its output going to files in the directory
    /// (a pipe nobody reads could block it), so that the test can kill it mid-apply.
    pub fn spawn(&self, args: &[&str]) -> Running {
        let log = self
            .path()
            .join(format!("flotilla-{}.log", uuid::Uuid::new_v4()));
        let file = File::create(&log).expect("create the log");
        let child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .expect("start flotilla");
        Running {
            child,
            log,
            args: args.join(" "),
        }
    }

    /// The state file as JSON.
    pub fn state(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path().join("flotilla.state.json")).expect("state");
        serde_json::from_str(&text).expect("state JSON")
    }

    /// The state's record of `address`, if it has one.
    pub fn resource(&self, address: &str) -> Option<serde_json::Value> {
        self.state()["resources"]
            .as_array()?
            .iter()
            .find(|r| r["address"] == address)
            .cloned()
    }
}

/// A `flotilla` process started with [`Workdir::spawn`].
pub struct Running {
    child: Child,
    log: PathBuf,
    args: String,
}

impl Running {
    /// Kills it with SIGKILL, as a crash or `kill -9` would, and logs what it had said.
    pub fn kill(mut self) {
        self.child.kill().expect("kill flotilla");
        let status = self.child.wait().expect("reap flotilla");
        eprintln!(
            "$ flotilla {} (killed: {status})\n{}",
            self.args,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that panicked before killing it leaves no process behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a finished command said, stdout then stderr.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The value of tag `key`.
pub fn tag(tags: &[Tag], key: &str) -> Option<String> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value().map(str::to_string))
}

fn lineage_filter(lineage: &str) -> Filter {
    Filter::builder()
        .name("tag:flotilla:lineage")
        .values(lineage)
        .build()
}

/// Every live (not terminated) instance tagged with `lineage`, duplicates included.
pub async fn live_instances(moto: &Moto, lineage: &str) -> Vec<Instance> {
    let out = moto
        .ec2(REGION)
        .await
        .describe_instances()
        .filters(lineage_filter(lineage))
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .values("shutting-down")
                .values("stopping")
                .values("stopped")
                .build(),
        )
        .send()
        .await
        .expect("DescribeInstances");
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .cloned()
        .collect()
}

/// Live instances tagged with `lineage`, by their address tag; two for one address fail the
/// test (a duplicate).
pub async fn instances(moto: &Moto, lineage: &str) -> BTreeMap<String, Instance> {
    let mut by_address = BTreeMap::new();
    for i in live_instances(moto, lineage).await {
        let address = tag(i.tags(), "flotilla:address").expect("address tag");
        assert!(
            by_address.insert(address.clone(), i).is_none(),
            "two live instances for {address}"
        );
    }
    by_address
}

/// Every volume tagged with `lineage` that is not deleted, root disks included.
pub async fn all_volumes(moto: &Moto, lineage: &str) -> Vec<Volume> {
    let out = moto
        .ec2(REGION)
        .await
        .describe_volumes()
        .filters(lineage_filter(lineage))
        .send()
        .await
        .expect("DescribeVolumes");
    out.volumes()
        .iter()
        .filter(|v| v.state().is_none_or(|s| s.as_str() != "deleted"))
        .cloned()
        .collect()
}

/// The fleets' volumes tagged with `lineage` (the `volume.` addresses; root disks carry
/// their node's tags), by address; two for one address fail the test.
pub async fn volumes(moto: &Moto, lineage: &str) -> BTreeMap<String, Volume> {
    let mut by_address = BTreeMap::new();
    for v in all_volumes(moto, lineage).await {
        let Some(address) = tag(v.tags(), "flotilla:address") else {
            continue;
        };
        if address.starts_with("volume.") {
            assert!(
                by_address.insert(address.clone(), v).is_none(),
                "two volumes for {address}"
            );
        }
    }
    by_address
}

/// Whether ELBv2 tags carry `lineage`.
async fn elb_owned(elb: &aws_sdk_elasticloadbalancingv2::Client, arn: &str, lineage: &str) -> bool {
    let tags = elb
        .describe_tags()
        .resource_arns(arn)
        .send()
        .await
        .expect("DescribeTags");
    tags.tag_descriptions()
        .iter()
        .flat_map(|d| d.tags())
        .any(|t| t.key() == Some("flotilla:lineage") && t.value() == Some(lineage))
}

/// Load balancers tagged with `lineage`: (arn, dns name).
pub async fn load_balancers(moto: &Moto, lineage: &str) -> Vec<(String, String)> {
    let elb = moto.elb(REGION).await;
    let all = elb
        .describe_load_balancers()
        .send()
        .await
        .expect("DescribeLoadBalancers");
    let mut mine = Vec::new();
    for lb in all.load_balancers() {
        let arn = lb.load_balancer_arn().unwrap_or_default();
        if elb_owned(&elb, arn, lineage).await {
            mine.push((
                arn.to_string(),
                lb.dns_name().unwrap_or_default().to_string(),
            ));
        }
    }
    mine
}

/// Target groups tagged with `lineage`, by arn.
pub async fn target_groups(moto: &Moto, lineage: &str) -> Vec<String> {
    let elb = moto.elb(REGION).await;
    let all = elb
        .describe_target_groups()
        .send()
        .await
        .expect("DescribeTargetGroups");
    let mut mine = Vec::new();
    for tg in all.target_groups() {
        let arn = tg.target_group_arn().unwrap_or_default();
        if elb_owned(&elb, arn, lineage).await {
            mine.push(arn.to_string());
        }
    }
    mine
}

/// Placement groups tagged with `lineage`, by name.
pub async fn placement_groups(moto: &Moto, lineage: &str) -> Vec<String> {
    let out = moto
        .ec2(REGION)
        .await
        .describe_placement_groups()
        .filters(lineage_filter(lineage))
        .send()
        .await
        .expect("DescribePlacementGroups");
    out.placement_groups()
        .iter()
        .filter_map(|g| g.group_name().map(str::to_string))
        .collect()
}

/// Everything moto still holds tagged with `lineage` — live instances, volumes (root disks
/// included), load balancers, target groups, placement groups — one line each.
pub async fn leftovers(moto: &Moto, lineage: &str) -> Vec<String> {
    let mut left = Vec::new();
    for i in live_instances(moto, lineage).await {
        left.push(format!(
            "instance {} ({})",
            i.instance_id().unwrap_or_default(),
            tag(i.tags(), "flotilla:address").unwrap_or_default()
        ));
    }
    for v in all_volumes(moto, lineage).await {
        left.push(format!(
            "volume {} ({})",
            v.volume_id().unwrap_or_default(),
            tag(v.tags(), "flotilla:address").unwrap_or_default()
        ));
    }
    for (arn, _) in load_balancers(moto, lineage).await {
        left.push(format!("load balancer {arn}"));
    }
    for arn in target_groups(moto, lineage).await {
        left.push(format!("target group {arn}"));
    }
    for name in placement_groups(moto, lineage).await {
        left.push(format!("placement group {name}"));
    }
    left
}

/// The instance ids registered with the target group behind the listener of the load balancer
/// tagged with `lineage` (there must be exactly one), sorted.
pub async fn gateway_targets(moto: &Moto, lineage: &str) -> Vec<String> {
    let tg = gateway_target_group(moto, lineage).await;
    let health = moto
        .elb(REGION)
        .await
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
    targets
}

/// The arn of the target group behind the listener of the load balancer tagged with
/// `lineage` (there must be exactly one).
pub async fn gateway_target_group(moto: &Moto, lineage: &str) -> String {
    let lbs = load_balancers(moto, lineage).await;
    assert_eq!(lbs.len(), 1, "one load balancer: {lbs:?}");
    let elb = moto.elb(REGION).await;
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(&lbs[0].0)
        .send()
        .await
        .expect("DescribeListeners");
    listeners.listeners()[0].default_actions()[0]
        .target_group_arn()
        .expect("forwards to a target group")
        .to_string()
}

/// Instance ids by address, from [`instances`].
pub async fn instance_ids(moto: &Moto, lineage: &str) -> BTreeMap<String, String> {
    instances(moto, lineage)
        .await
        .into_iter()
        .map(|(a, i)| (a, i.instance_id().unwrap_or_default().to_string()))
        .collect()
}
