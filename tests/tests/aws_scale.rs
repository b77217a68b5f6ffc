//! Fleets that change, end to end against moto: scaling up and down, a GPU change that
//! replaces nodes while their volumes move along, a saved plan made stale by another apply,
//! and a 20-node fleet applied under `--parallelism`, the per-region create rate and injected
//! throttling. Each ends with a destroy that must leave nothing tagged with the test's
//! lineage: no instance, volume, load balancer, target group or placement group.
//!
//! Same harness as `aws_apply.rs` (`flotilla_tests::workdir`): each test has its own
//! directory, state lineage and faults, and runs beside the others on one moto.

use flotilla_tests::moto::{Fault, Moto};
use flotilla_tests::workdir::{
    Workdir, gateway_target_group, gateway_targets, instance_ids, instances, leftovers,
    live_instances, placement_groups, text, volumes,
};
use std::collections::BTreeMap;

/// A cluster fleet of `nodes` A10G nodes, a volume each, behind a gateway.
fn web(nodes: u32) -> String {
    format!(
        r#"
provider "aws" {{
  regions = ["us-east-1"]
}}

volume "data" {{
  size = "10GB"
}}

fleet "web" {{
  nodes       = {nodes}
  placement   = "cluster"
  spot_policy = "on-demand"
  resources {{
    gpu = "A10G:1"
  }}
  volumes = [volume.data]
}}

gateway "api" {{
  targets = [fleet.web]
  port    = 8000
}}
"#
    )
}

/// Two nodes of `gpu`, a volume each, behind a gateway.
fn pair(gpu: &str) -> String {
    format!(
        r#"
provider "aws" {{
  regions = ["us-east-1"]
}}

volume "ckpt" {{
  size = "20GB"
}}

fleet "train" {{
  nodes       = 2
  spot_policy = "on-demand"
  resources {{
    gpu = "{gpu}"
  }}
  volumes = [volume.ckpt]
}}

gateway "api" {{
  targets = [fleet.train]
}}
"#
    )
}

/// `nodes` plain A10G nodes.
fn plain(nodes: u32) -> String {
    format!(
        r#"
provider "aws" {{
  regions = ["us-east-1"]
}}

fleet "batch" {{
  nodes       = {nodes}
  spot_policy = "on-demand"
  resources {{
    gpu = "A10G:1"
  }}
}}
"#
    )
}

fn apply(w: &Workdir) -> String {
    let out = w.flotilla(&["apply", "-y"]);
    assert!(out.status.success(), "apply failed:\n{}", text(&out));
    text(&out)
}

fn assert_no_changes(w: &Workdir) {
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a second plan has changes:\n{}",
        text(&out)
    );
}

async fn destroy_leaves_nothing(moto: &Moto, w: &Workdir) {
    let out = w.flotilla(&["destroy", "-y"]);
    assert!(out.status.success(), "destroy failed:\n{}", text(&out));
    let left = leftovers(moto, &w.lineage).await;
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(w.state()["resources"].as_array().map(Vec::len), Some(0));
}

/// Each fleet volume (`volume.NAME[i]`) is attached to node `i` of `ids` (by address).
async fn assert_volumes_follow(moto: &Moto, w: &Workdir, ids: &BTreeMap<String, String>) {
    let vols = volumes(moto, &w.lineage).await;
    assert_eq!(
        vols.len(),
        ids.len(),
        "one volume per node: {:?}",
        vols.keys()
    );
    for (address, v) in &vols {
        let index = &address[address.find('[').expect("an indexed address")..];
        let node = ids
            .iter()
            .find(|(a, _)| a.ends_with(index))
            .map(|(_, id)| id.as_str());
        let a = v.attachments().first().expect("attached");
        assert_eq!(a.instance_id(), node, "{address} is attached to its node");
        assert_eq!(a.state().map(|s| s.as_str()), Some("attached"));
    }
}

fn sorted(ids: &BTreeMap<String, String>) -> Vec<String> {
    let mut v: Vec<String> = ids.values().cloned().collect();
    v.sort();
    v
}

#[tokio::test]
async fn scale_up_then_down_removes_the_highest_indexes_first() {
    let moto = Moto::get();
    let w = Workdir::new(&web(2));
    apply(&w);
    let two = instance_ids(&moto, &w.lineage).await;
    assert_eq!(
        two.keys().cloned().collect::<Vec<_>>(),
        ["fleet.web[0]", "fleet.web[1]"]
    );
    assert_volumes_follow(&moto, &w, &two).await;
    assert_eq!(gateway_targets(&moto, &w.lineage).await, sorted(&two));
    assert_eq!(
        placement_groups(&moto, &w.lineage).await.len(),
        1,
        "one placement group for the cluster fleet"
    );

    // Up to 4: the first two are kept as they are, two are added and join the gateway.
    w.write_fleet(&web(4));
    apply(&w);
    let four = instance_ids(&moto, &w.lineage).await;
    assert_eq!(
        four.keys().cloned().collect::<Vec<_>>(),
        [
            "fleet.web[0]",
            "fleet.web[1]",
            "fleet.web[2]",
            "fleet.web[3]"
        ]
    );
    for (address, id) in &two {
        assert_eq!(&four[address], id, "{address} is kept");
    }
    assert_volumes_follow(&moto, &w, &four).await;
    assert_eq!(gateway_targets(&moto, &w.lineage).await, sorted(&four));
    let zones: Vec<_> = instances(&moto, &w.lineage)
        .await
        .values()
        .map(|i| {
            i.placement()
                .and_then(|p| p.availability_zone())
                .map(str::to_string)
        })
        .collect();
    assert!(
        zones.windows(2).all(|z| z[0] == z[1]),
        "a cluster stays in one zone: {zones:?}"
    );
    assert_no_changes(&w);

    // Down to 1: the highest indexes go, with their volumes; node 0 stays. The gateway's
    // update reads its targets slowly, so the removed nodes are terminated (and dropped from
    // the target group by ELB) before it deregisters them: that must not fail it.
    let tg = gateway_target_group(&moto, &w.lineage).await;
    let slow = moto.fault(&Fault::delay("DescribeTargetHealth", &tg, 1_500));
    w.write_fleet(&web(1));
    apply(&w);
    moto.clear_fault(&slow);
    let one = instance_ids(&moto, &w.lineage).await;
    assert_eq!(one.keys().cloned().collect::<Vec<_>>(), ["fleet.web[0]"]);
    assert_eq!(one["fleet.web[0]"], two["fleet.web[0]"]);
    assert_volumes_follow(&moto, &w, &one).await;
    assert_eq!(gateway_targets(&moto, &w.lineage).await, sorted(&one));
    assert_eq!(
        placement_groups(&moto, &w.lineage).await.len(),
        1,
        "the group stays while a node of the fleet is in it"
    );
    let state = w.state();
    let mut recorded: Vec<&str> = state["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["address"].as_str())
        .collect();
    recorded.sort_unstable();
    assert_eq!(recorded, ["fleet.web[0]", "gateway.api", "volume.data[0]"]);
    assert_no_changes(&w);

    destroy_leaves_nothing(&moto, &w).await;
}

#[tokio::test]
async fn a_gpu_change_replaces_the_nodes_and_their_volumes_move() {
    let moto = Moto::get();
    let w = Workdir::new(&pair("A10G:1"));
    apply(&w);
    let old = instance_ids(&moto, &w.lineage).await;
    assert_eq!(old.len(), 2);
    let old_volumes: BTreeMap<String, String> = volumes(&moto, &w.lineage)
        .await
        .into_iter()
        .map(|(a, v)| (a, v.volume_id().unwrap_or_default().to_string()))
        .collect();
    assert_volumes_follow(&moto, &w, &old).await;

    w.write_fleet(&pair("L4:1"));
    apply(&w);
    let new = instance_ids(&moto, &w.lineage).await;
    assert_eq!(new.len(), 2, "the old nodes are gone: {new:?}");
    for (address, id) in &new {
        assert_ne!(id, &old[address], "{address} is a new instance");
    }
    for i in instances(&moto, &w.lineage).await.values() {
        assert_eq!(i.instance_type().map(|t| t.as_str()), Some("g6.xlarge"));
    }
    // The same disks, not new ones, each detached from its old node and attached to its new.
    let now: BTreeMap<String, String> = volumes(&moto, &w.lineage)
        .await
        .into_iter()
        .map(|(a, v)| (a, v.volume_id().unwrap_or_default().to_string()))
        .collect();
    assert_eq!(now, old_volumes);
    assert_volumes_follow(&moto, &w, &new).await;
    for (i, vid) in old_volumes.values().enumerate() {
        let detach = moto.calls("DetachVolume", vid);
        assert_eq!(detach.len(), 1, "{vid} detached once");
        assert_eq!(
            detach[0]["params"]["InstanceId"],
            old[&format!("fleet.train[{i}]")].as_str()
        );
    }
    assert_eq!(gateway_targets(&moto, &w.lineage).await, sorted(&new));
    assert_no_changes(&w);

    destroy_leaves_nothing(&moto, &w).await;
}

#[tokio::test]
async fn a_saved_plan_made_stale_by_another_apply_is_refused() {
    let moto = Moto::get();
    let w = Workdir::new(&plain(1));
    apply(&w);

    // A plan for two nodes, saved; then another apply of the same configuration goes first.
    w.write_fleet(&plain(2));
    let planfile = w.path().join("scale.plan.json");
    let planfile = planfile.to_str().expect("a UTF-8 path");
    let out = w.flotilla(&["plan", "--out", planfile]);
    assert!(out.status.success(), "plan failed:\n{}", text(&out));
    apply(&w);
    let before_ids = instance_ids(&moto, &w.lineage).await;
    assert_eq!(before_ids.len(), 2);
    let state_file = w.path().join("flotilla.state.json");
    let before_state = std::fs::read(&state_file).expect("state");
    let launches = moto.calls("RunInstances", &w.lineage).len();

    let out = w.flotilla(&["apply", planfile]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a stale plan is refused:\n{}",
        text(&out)
    );
    let said = text(&out);
    assert!(said.contains("stale"), "{said}");
    assert!(said.contains("flotilla plan"), "says what to do: {said}");

    // Nothing changed, in moto or in state.
    assert_eq!(instance_ids(&moto, &w.lineage).await, before_ids);
    assert_eq!(moto.calls("RunInstances", &w.lineage).len(), launches);
    assert_eq!(
        std::fs::read(&state_file).expect("state"),
        before_state,
        "the state is untouched"
    );

    destroy_leaves_nothing(&moto, &w).await;
}

#[tokio::test]
async fn twenty_nodes_under_parallelism_the_rate_limit_and_throttling() {
    const NODES: usize = 20;
    const PARALLELISM: u64 = 3;
    let moto = Moto::get();
    let w = Workdir::new(&plain(NODES as u32));
    // A few launches are throttled; then each launch is held a while, so that the calls in
    // flight at once show the parallelism bound.
    let throttle =
        moto.fault(&Fault::new("RunInstances", &w.lineage, "RequestLimitExceeded", 503).times(3));
    let hold = moto.fault(&Fault::delay("RunInstances", &w.lineage, 1_500));

    let parallelism = PARALLELISM.to_string();
    let out = w.flotilla(&["apply", "-y", "--parallelism", &parallelism]);
    let said = text(&out);
    assert!(out.status.success(), "apply failed:\n{said}");
    assert!(
        said.contains(&format!(
            "Apply complete! Resources: {NODES} added, 0 changed, 0 destroyed."
        )),
        "{said}"
    );
    assert!(
        !said.contains("failed"),
        "no throttling error surfaces: {said}"
    );
    assert_eq!(moto.fault_hits(&throttle), 3, "the throttling was hit");

    // Exactly the fleet: one instance per node, no duplicate, all recorded.
    assert_eq!(live_instances(&moto, &w.lineage).await.len(), NODES);
    let ids = instance_ids(&moto, &w.lineage).await;
    assert_eq!(ids.len(), NODES);
    let state = w.state();
    let resources = state["resources"].as_array().expect("resources");
    assert_eq!(resources.len(), NODES);
    for r in resources {
        let address = r["address"].as_str().expect("address");
        assert_eq!(r["provider_id"], ids[address].as_str(), "{address}");
    }

    // Never more launches in flight than --parallelism.
    let most = moto.fault_max_held(&hold);
    assert!(
        (1..=PARALLELISM).contains(&most),
        "{most} launches in flight at once, more than --parallelism {PARALLELISM}"
    );
    // The launches that went through kept to the per-region rate (2 a second after a burst
    // of 5; one call of slack for the way from client to server).
    let mut times: Vec<f64> = moto
        .calls("RunInstances", &w.lineage)
        .iter()
        .filter(|c| c.get("error").is_none())
        .filter_map(|c| c["t"].as_f64())
        .collect();
    assert_eq!(times.len(), NODES, "one successful launch per node");
    times.sort_by(f64::total_cmp);
    for i in 0..times.len() {
        for j in i..times.len() {
            let calls = (j - i + 1) as f64;
            let allowed = 5.0 + 2.0 * (times[j] - times[i]) + 1.0;
            assert!(
                calls <= allowed,
                "{calls} launches within {:.2} s: faster than the per-region rate",
                times[j] - times[i]
            );
        }
    }
    moto.clear_fault(&hold);

    destroy_leaves_nothing(&moto, &w).await;
}
