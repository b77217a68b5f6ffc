//! `az://` state against Azurite (started by `scripts/test`): compare-and-swap on the blob
//! ETag, backups, locks, and clear errors, each test in a container of its own. The behaviour
//! is the shared suite in `flotilla_tests::state_suite`.

use flotilla_tests::azurite::AzureContainer;
use flotilla_tests::state_suite;

#[tokio::test]
async fn round_trip_keeps_lineage_raises_serial_and_backs_up() {
    state_suite::round_trip(&AzureContainer::new().await).await;
}

#[tokio::test]
async fn sixteen_concurrent_writers_one_wins_nothing_lost() {
    state_suite::concurrent_writers(&AzureContainer::new().await).await;
}

#[tokio::test]
async fn second_locker_is_told_the_holder() {
    state_suite::two_lockers(&AzureContainer::new().await).await;
}

#[tokio::test]
async fn stale_lock_is_reported_and_force_unlocked_by_id_only() {
    state_suite::stale_lock(&AzureContainer::new().await).await;
}

#[tokio::test]
async fn corrupt_object_is_refused_and_left_untouched() {
    state_suite::corrupt_object(&AzureContainer::new().await).await;
}

#[tokio::test]
async fn missing_container_is_a_clear_error() {
    state_suite::missing_bucket(&AzureContainer::new().await).await;
}

#[tokio::test]
async fn binary_pushes_and_pulls_state() {
    state_suite::cli_push_pull(&AzureContainer::new().await).await;
}
