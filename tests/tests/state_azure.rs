//! `az://` state against Azurite (started by `scripts/test`): compare-and-swap on the blob
//! ETag, backups, locks, and clear errors, each test in a container of its own. The behaviour
//! is the shared suite in `flotilla_tests::state_suite`.

use flotilla_tests::azurite::Azurite;
use flotilla_tests::state_suite::{self, Bucket};
use std::future::Future;

/// A fresh container on Azurite.
struct AzureContainer {
    azurite: Azurite,
    name: String,
}

async fn container() -> AzureContainer {
    let azurite = Azurite::get().await;
    let name = azurite.container().await;
    AzureContainer { azurite, name }
}

impl Bucket for AzureContainer {
    fn url(&self, key: &str) -> String {
        self.azurite.url(&self.name, key)
    }

    fn missing_url(&self) -> String {
        self.azurite
            .url(&format!("{}-missing", self.name), "state.json")
    }

    fn put_raw(&self, key: &str, text: &str) -> impl Future<Output = ()> {
        self.azurite.put(&self.name, key, text)
    }

    fn get_raw(&self, key: &str) -> impl Future<Output = Option<String>> {
        self.azurite.get_blob(&self.name, key)
    }
}

#[tokio::test]
async fn round_trip_keeps_lineage_raises_serial_and_backs_up() {
    state_suite::round_trip(&container().await).await;
}

#[tokio::test]
async fn sixteen_concurrent_writers_one_wins_nothing_lost() {
    state_suite::concurrent_writers(&container().await).await;
}

#[tokio::test]
async fn second_locker_is_told_the_holder() {
    state_suite::two_lockers(&container().await).await;
}

#[tokio::test]
async fn stale_lock_is_reported_and_force_unlocked_by_id_only() {
    state_suite::stale_lock(&container().await).await;
}

#[tokio::test]
async fn corrupt_object_is_refused_and_left_untouched() {
    state_suite::corrupt_object(&container().await).await;
}

#[tokio::test]
async fn missing_container_is_a_clear_error() {
    state_suite::missing_bucket(&container().await).await;
}

#[tokio::test]
async fn binary_pushes_and_pulls_state() {
    state_suite::cli_push_pull(&container().await).await;
}
