//! Crash recovery end to end: `flotilla apply` is killed with SIGKILL at chosen points of
//! making a node with a volume, then run again; the end state must be right, with no
//! duplicate and no orphan instance and the volume attached.
//!
//! moto ignores EC2's `ClientToken` (../shared/TESTING.md), so what these tests prove is the
//! path that does not need it: before every create the executor looks the resource up by its
//! ownership tags (`flotilla:lineage`, `flotilla:address`) and adopts what the killed apply
//! made. The kill points are reached with the harness's delays (`Fault::delay`): moto carries
//! a call out and holds its answer, the test waits until it is held and kills the apply — the
//! cloud did the work and the caller never heard of it, which is the worst moment to die.
//!
//! Each test counts its lineage's instances and RunInstances calls in moto, so a second
//! launch or a leftover shows up however the recovery went wrong.

use flotilla_tests::moto::{Fault, Moto};
use flotilla_tests::workdir::{Workdir, leftovers, live_instances, tag, text, volumes};
use std::time::Duration;

/// One node with one volume: the volume is made first, then the node, then the attach.
const FLEET: &str = r#"
provider "aws" {
  regions = ["us-east-1"]
}

volume "data" {
  size = "20GB"
}

fleet "work" {
  nodes       = 1
  spot_policy = "on-demand"
  resources {
    gpu = "A10G:1"
  }
  volumes = [volume.data]
}
"#;

/// How long a test waits for the apply to reach its kill point (it plans, refreshes and polls
/// every 2 s on the way).
const REACH: Duration = Duration::from_secs(120);

/// A held answer is kept far longer than any test needs: the kill comes first.
const HOLD_MS: u64 = 300_000;

/// The id of the one live instance of `w`'s lineage (moto made it; the apply may not know).
async fn only_instance(moto: &Moto, w: &Workdir) -> String {
    let live = live_instances(moto, &w.lineage).await;
    assert_eq!(live.len(), 1, "one instance in moto: {live:?}");
    live[0].instance_id().expect("instance id").to_string()
}

/// Applies again after the kill and checks the end state: exactly one instance (`expected`,
/// when the killed apply had launched it) tagged for the node, one volume (`volume`, when the
/// killed apply had made it) attached to it, both recorded in state, one RunInstances call in
/// all, nothing left to do; then destroys and checks that nothing tagged is left.
async fn recovers(moto: &Moto, w: &Workdir, expected: Option<&str>, volume: Option<&str>) {
    let out = w.flotilla(&["apply", "-y"]);
    assert!(
        out.status.success(),
        "the apply after the kill failed:\n{}",
        text(&out)
    );
    let said = text(&out);

    let live = live_instances(moto, &w.lineage).await;
    assert_eq!(
        live.len(),
        1,
        "exactly one instance, no duplicate: {:?}",
        live.iter().map(|i| i.instance_id()).collect::<Vec<_>>()
    );
    let node = &live[0];
    let id = node.instance_id().expect("instance id");
    assert_eq!(
        tag(node.tags(), "flotilla:address").as_deref(),
        Some("fleet.work[0]")
    );
    assert_eq!(node.instance_type().map(|t| t.as_str()), Some("g5.xlarge"));
    if let Some(expected) = expected {
        assert_eq!(id, expected, "the killed apply's instance is adopted");
        assert!(
            said.contains("fleet.work[0]: found what an earlier, interrupted apply made"),
            "{said}"
        );
    }
    assert_eq!(
        moto.calls("RunInstances", &w.lineage).len(),
        1,
        "one launch in all"
    );

    let vols = volumes(moto, &w.lineage).await;
    assert_eq!(vols.len(), 1, "one volume: {:?}", vols.keys());
    let vol = &vols["volume.data[0]"];
    if let Some(volume) = volume {
        assert_eq!(vol.volume_id(), Some(volume), "the same volume, adopted");
    }
    let attachment = vol.attachments().first().expect("the volume is attached");
    assert_eq!(attachment.instance_id(), Some(id), "attached to the node");
    assert_eq!(attachment.state().map(|s| s.as_str()), Some("attached"));
    assert_eq!(
        vol.availability_zone(),
        node.placement().and_then(|p| p.availability_zone())
    );

    let state = w.state();
    let resources = state["resources"].as_array().expect("resources");
    assert_eq!(resources.len(), 2, "{state}");
    let recorded = w.resource("fleet.work[0]").expect("the node is in state");
    assert_eq!(recorded["provider_id"], id, "{recorded}");
    assert_eq!(
        recorded["offer"]["instance_type"], "g5.xlarge",
        "{recorded}"
    );
    let recorded = w
        .resource("volume.data[0]")
        .expect("the volume is in state");
    assert_eq!(
        recorded["provider_id"],
        vol.volume_id().unwrap_or_default(),
        "{recorded}"
    );

    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a plan after the recovery has changes:\n{}",
        text(&out)
    );

    let out = w.flotilla(&["destroy", "-y"]);
    assert!(out.status.success(), "destroy failed:\n{}", text(&out));
    let left = leftovers(moto, &w.lineage).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test]
async fn killed_before_run_instances_while_the_volume_is_made() {
    let moto = Moto::get();
    let w = Workdir::new(FLEET);
    let hold = moto.fault(&Fault::delay("CreateVolume", &w.lineage, HOLD_MS));
    let apply = w.spawn(&["apply", "-y"]);
    moto.wait_held(&hold, REACH);
    apply.kill();
    moto.clear_fault(&hold);

    // The volume exists, unrecorded; no node was launched.
    let made = volumes(&moto, &w.lineage).await;
    let volume = made["volume.data[0]"]
        .volume_id()
        .expect("volume id")
        .to_string();
    assert!(w.resource("volume.data[0]").is_none(), "not recorded yet");
    assert!(moto.calls("RunInstances", &w.lineage).is_empty());

    recovers(&moto, &w, None, Some(&volume)).await;
}

#[tokio::test]
async fn killed_before_run_instances_while_the_node_is_looked_up() {
    let moto = Moto::get();
    let w = Workdir::new(FLEET);
    // The executor's look-up by tags just before the launch: lineage and (wildcard-safe)
    // address filters.
    let hold = moto.fault(
        &Fault::delay("DescribeInstances", &w.lineage, HOLD_MS)
            .matching("Filter.2.Value.1", "fleet.work?0?"),
    );
    let apply = w.spawn(&["apply", "-y"]);
    moto.wait_held(&hold, REACH);
    apply.kill();
    moto.clear_fault(&hold);

    let volume = w
        .resource("volume.data[0]")
        .expect("the volume was recorded before the node started")["provider_id"]
        .as_str()
        .expect("volume id")
        .to_string();
    assert!(w.resource("fleet.work[0]").is_none());
    assert!(moto.calls("RunInstances", &w.lineage).is_empty());
    assert!(live_instances(&moto, &w.lineage).await.is_empty());

    recovers(&moto, &w, None, Some(&volume)).await;
}

#[tokio::test]
async fn killed_while_run_instances_is_in_flight() {
    let moto = Moto::get();
    let w = Workdir::new(FLEET);
    let hold = moto.fault(&Fault::delay("RunInstances", &w.lineage, HOLD_MS));
    let apply = w.spawn(&["apply", "-y"]);
    moto.wait_held(&hold, REACH);
    apply.kill();
    moto.clear_fault(&hold);

    // moto launched it; the apply never heard, so nothing attached it or recorded it.
    let launched = only_instance(&moto, &w).await;
    assert!(w.resource("fleet.work[0]").is_none());
    assert!(moto.calls("AttachVolume", &launched).is_empty());

    recovers(&moto, &w, Some(&launched), None).await;
}

/// Holds RunInstances until moto has launched the node, then holds the first `action` call
/// about that node instead and releases the launch: the apply has its answer and goes on to
/// `action`, where it is killed. Returns the node's id.
async fn kill_after_launch_at(moto: &Moto, w: &Workdir, action: &str) -> String {
    let launch = moto.fault(&Fault::delay("RunInstances", &w.lineage, HOLD_MS));
    let apply = w.spawn(&["apply", "-y"]);
    moto.wait_held(&launch, REACH);
    let launched = only_instance(moto, w).await;
    let next = moto.fault(&Fault::delay(action, &launched, HOLD_MS).times(1));
    moto.clear_fault(&launch);
    moto.wait_held(&next, REACH);
    apply.kill();
    moto.clear_fault(&next);
    assert!(w.resource("fleet.work[0]").is_none(), "not recorded yet");
    launched
}

#[tokio::test]
async fn killed_after_run_instances_returned_before_the_attach() {
    let moto = Moto::get();
    let w = Workdir::new(FLEET);
    // The first call after the launch: waiting for the node to run.
    let launched = kill_after_launch_at(&moto, &w, "DescribeInstances").await;
    assert!(moto.calls("AttachVolume", &launched).is_empty());
    let vols = volumes(&moto, &w.lineage).await;
    assert!(vols["volume.data[0]"].attachments().is_empty(), "{vols:?}");

    recovers(&moto, &w, Some(&launched), None).await;
}

#[tokio::test]
async fn killed_after_the_attach_before_the_state_write() {
    let moto = Moto::get();
    let w = Workdir::new(FLEET);
    let launched = kill_after_launch_at(&moto, &w, "AttachVolume").await;
    // moto attached it; the apply never recorded the node.
    let vols = volumes(&moto, &w.lineage).await;
    assert_eq!(
        vols["volume.data[0]"].attachments()[0].instance_id(),
        Some(launched.as_str())
    );

    recovers(&moto, &w, Some(&launched), None).await;
}
