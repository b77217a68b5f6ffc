//! `s3://` state against moto's S3 (started by `scripts/test`): compare-and-swap on the ETag
//! (`If-Match`, `If-None-Match: *`), backups, locks with heartbeats, and clear errors, each
//! test in a bucket of its own. The behaviour is the shared suite in
//! `flotilla_tests::state_suite`, run here as it runs for GCS and Azure Blob.

use flotilla_tests::moto::Moto;
use flotilla_tests::s3::S3Bucket;
use flotilla_tests::state_suite::{self, Bucket};
use flotilla_tests::workdir::{Workdir, instances, leftovers, text};
use std::future::Future;

impl Bucket for Wrapped {
    fn url(&self, key: &str) -> String {
        self.0.url(key)
    }

    fn missing_url(&self) -> String {
        format!("s3://{}-missing/state.json", self.0.name)
    }

    fn put_raw(&self, key: &str, text: &str) -> impl Future<Output = ()> {
        self.0.put(key, text)
    }

    fn get_raw(&self, key: &str) -> impl Future<Output = Option<String>> {
        self.0.get(key)
    }
}

/// A fresh bucket (the suite's trait is foreign, so it is implemented on a local wrapper).
struct Wrapped(S3Bucket);

async fn bucket() -> Wrapped {
    Wrapped(S3Bucket::new().await)
}

#[tokio::test]
async fn round_trip_keeps_lineage_raises_serial_and_backs_up() {
    state_suite::round_trip(&bucket().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_writers_one_wins_nothing_lost() {
    state_suite::concurrent_writers(&bucket().await).await;
}

#[tokio::test]
async fn second_locker_is_told_the_holder() {
    state_suite::two_lockers(&bucket().await).await;
}

#[tokio::test]
async fn stale_lock_is_reported_and_force_unlocked_by_id_only() {
    state_suite::stale_lock(&bucket().await).await;
}

#[tokio::test]
async fn corrupt_object_is_refused_and_left_untouched() {
    state_suite::corrupt_object(&bucket().await).await;
}

#[tokio::test]
async fn missing_bucket_is_a_clear_error() {
    state_suite::missing_bucket(&bucket().await).await;
}

#[tokio::test]
async fn binary_pushes_and_pulls_state() {
    state_suite::cli_push_pull(&bucket().await).await;
}

#[tokio::test]
async fn bad_urls_are_refused_before_any_call() {
    for bad in ["s3://bucket-only", "s3://b/dir/", "s3://b/k?colour=red"] {
        let Err(e) = flotilla_state::open(bad) else {
            panic!("{bad} must be refused");
        };
        assert!(e.to_string().contains(bad), "{e}");
    }
}

/// The AWS end-to-end apply, with its state in S3 instead of a local file: a training node
/// with its volume behind a gateway, applied, planned again, destroyed.
const FLEET: &str = r#"
provider "aws" {
  regions = ["us-east-1"]
}

volume "ckpt" {
  size = "50GB"
}

fleet "train" {
  nodes       = 1
  spot_policy = "on-demand"
  resources {
    gpu = "A10G:1"
  }
  volumes = [volume.ckpt]
}

gateway "api" {
  targets = [fleet.train]
  port    = 8000
}
"#;

#[tokio::test]
async fn aws_apply_plan_destroy_with_state_on_s3() {
    let moto = Moto::get();
    let bucket = S3Bucket::new().await;
    let w = Workdir::new(FLEET);
    // The workdir's empty state (of the lineage it tags by) goes to S3; the local file goes
    // away, so that nothing could read or write it instead.
    let local = w.path().join("flotilla.state.json");
    bucket
        .put("gpu/prod.json", &std::fs::read_to_string(&local).unwrap())
        .await;
    std::fs::remove_file(&local).unwrap();
    let url = bucket.url("gpu/prod.json");

    let out = w.flotilla(&["apply", "-y", "--state", &url]);
    assert!(out.status.success(), "apply failed:\n{}", text(&out));
    assert!(
        text(&out).contains("Apply complete! Resources: 3 added, 0 changed, 0 destroyed."),
        "{}",
        text(&out)
    );
    let nodes = instances(&moto, &w.lineage).await;
    assert_eq!(nodes.len(), 1, "{nodes:?}");

    let stored: serde_json::Value =
        serde_json::from_str(&bucket.get("gpu/prod.json").await.unwrap()).unwrap();
    assert_eq!(stored["lineage"], w.lineage.as_str());
    assert!(stored["serial"].as_u64().unwrap() >= 1);
    let node = stored["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == "fleet.train[0]")
        .expect("the node is in the S3 state");
    let id = node["provider_id"].as_str().unwrap();
    assert!(
        nodes.values().any(|i| i.instance_id() == Some(id)),
        "{id} is in moto"
    );
    assert!(
        bucket.get("gpu/prod.json.backup").await.is_some(),
        "each write kept the previous version"
    );
    assert!(
        bucket.get("gpu/prod.json.lock").await.is_none(),
        "the lock was released"
    );
    assert!(!local.exists(), "nothing was written locally");

    let out = w.flotilla(&["plan", "--detailed-exitcode", "--state", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let out = w.flotilla(&["destroy", "-y", "--state", &url]);
    assert!(out.status.success(), "destroy failed:\n{}", text(&out));
    let left = leftovers(&moto, &w.lineage).await;
    assert!(left.is_empty(), "left behind: {left:?}");
    let stored: serde_json::Value =
        serde_json::from_str(&bucket.get("gpu/prod.json").await.unwrap()).unwrap();
    assert_eq!(stored["resources"].as_array().map(Vec::len), Some(0));
}
