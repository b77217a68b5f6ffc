//! The GCP provider driven directly (no binary, no executor) against the Compute Engine fake:
//! the paths an apply rarely takes, such as a create that finds its name already taken.

use flotilla_core::provider::{FailureKind, Ownership, Provider, VolumeRequest};
use flotilla_provider_gcp::{GcpOptions, GcpProvider};
use flotilla_tests::gce::{Gce, PROJECT};
use std::time::Duration;

fn provider(gce: &Gce) -> GcpProvider {
    let config = flotilla_core::config::GcpProvider {
        project: PROJECT.into(),
        regions: vec!["us-central1".into()],
        endpoint: Some(gce.endpoint.clone()),
        zones: vec!["us-central1-b".into()],
        ..Default::default()
    };
    let options = GcpOptions {
        poll_interval: Duration::from_millis(20),
        ..GcpOptions::default()
    };
    GcpProvider::with_options(&config, options).expect("a provider")
}

fn owner(address: &str) -> Ownership {
    Ownership {
        lineage: uuid::Uuid::new_v4().to_string(),
        address: address.into(),
        generation: 0,
    }
}

fn volume(owner: &Ownership) -> VolumeRequest {
    VolumeRequest {
        owner: owner.clone(),
        region: "us-central1".into(),
        zone: None,
        size_gib: 10,
        volume_type: String::new(),
    }
}

#[tokio::test]
async fn a_second_create_adopts_the_first_by_its_labels() {
    let gce = Gce::get();
    let p = provider(&gce);
    let me = owner("volume.data[0]");
    let first = p.create_volume(&volume(&me)).await.expect("created");
    assert_eq!(first.zone, "us-central1-b", "the provider's first zone");
    // The same owner asks again (its request id is replayed, or, past Compute's memory of
    // it, the name answers 409): the disk is ours, so it is adopted, not made twice.
    let second = p.create_volume(&volume(&me)).await.expect("adopted");
    assert_eq!(second.provider_id, first.provider_id);
    assert_eq!(gce.disks(&me.lineage).len(), 1);
    let found = p
        .find(
            flotilla_core::state::ResourceKind::Volume,
            "us-central1",
            &me,
        )
        .await
        .expect("find")
        .expect("found by labels");
    assert_eq!(found.provider_id, first.provider_id);
    p.delete_volume(&first).await.expect("deleted");
    assert!(gce.disks(&me.lineage).is_empty());
    // Deleting what is gone is not an error.
    p.delete_volume(&first).await.expect("already gone");
}

#[tokio::test]
async fn a_name_held_by_another_state_is_refused() {
    let gce = Gce::get();
    let p = provider(&gce);
    let me = owner("volume.data[0]");
    let made = p.create_volume(&volume(&me)).await.expect("created");
    // Another state whose resource name comes out the same (same lineage prefix and
    // address) but whose labels differ.
    let stranger = Ownership {
        lineage: format!("{}-0000-4000-8000-000000000000", &me.lineage[..8]),
        ..me.clone()
    };
    let clash = volume(&stranger);
    let err = p.create_volume(&clash).await.expect_err("refused");
    assert_eq!(err.kind, FailureKind::Other);
    assert_eq!(err.code, "alreadyExists", "{err}");
    p.delete_volume(&made).await.expect("deleted");
}
