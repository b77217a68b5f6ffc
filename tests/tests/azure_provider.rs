//! The Azure provider driven directly (no binary, no executor) against the Resource Manager
//! fake: the failure paths an apply rarely takes — every capacity code, quota, throttling that
//! does not stop, deletes of what is gone, a network still in use, a name held by another
//! state — checked through the crate's API and by reading the fake back.
//!
//! Each test has its own lineage and resource group, so they run in parallel on one fake.

use flotilla_core::catalog::{Offer, ProviderKind};
use flotilla_core::config::AzureProvider as AzureConfig;
use flotilla_core::provider::{
    FailureKind, InstanceRequest, NetworkRequest, Ownership, Provider, VolumeRequest,
};
use flotilla_core::state::{Resource, ResourceKind, network_address};
use flotilla_provider_azure::{AzureOptions, AzureProvider};
use flotilla_tests::arm::{self, Arm, SSH_KEY, SUBSCRIPTION, same_id};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const REGION: &str = "eastus";

fn lineage() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A provider for `lineage`'s own resource group on the fake, polling quickly.
fn provider(arm: &Arm, lineage: &str) -> AzureProvider {
    let config = AzureConfig {
        subscription_id: SUBSCRIPTION.into(),
        resource_group: arm::resource_group(lineage),
        regions: vec![REGION.into()],
        endpoint: Some(arm.endpoint.clone()),
        ssh_public_key: Some(SSH_KEY.into()),
        ..AzureConfig::default()
    };
    let options = AzureOptions {
        poll_interval: Duration::from_millis(20),
        max_poll_interval: Duration::from_millis(200),
        wait_timeout: Duration::from_secs(60),
    };
    AzureProvider::with_options(&config, options).expect("a provider")
}

fn owner(lineage: &str, address: &str) -> Ownership {
    Ownership {
        lineage: lineage.to_string(),
        address: address.to_string(),
        generation: 0,
    }
}

fn offer(instance_type: &str, spot: bool) -> Offer {
    Offer {
        provider: ProviderKind::Azure,
        region: REGION.to_string(),
        zone: String::new(),
        instance_type: instance_type.to_string(),
        gpu_vendor: None,
        gpu_name: String::new(),
        gpu_count: 0,
        gpu_memory: Default::default(),
        vcpus: 4,
        memory: Default::default(),
        spot,
        price_per_hour: 0.5,
    }
}

/// Makes the region's network for `lineage`, as the executor does before any node.
async fn network(p: &AzureProvider, lineage: &str) -> Resource {
    let request = NetworkRequest {
        owner: owner(lineage, &network_address(ProviderKind::Azure, REGION)),
        region: REGION.into(),
    };
    let mut made = p.create_network(&request).await.expect("the network");
    // The executor fills these; the provider's own calls may rely on them.
    made.address = request.owner.address.clone();
    made.kind = ResourceKind::Network;
    made
}

fn node(lineage: &str, address: &str, net: &Resource) -> InstanceRequest {
    InstanceRequest {
        owner: owner(lineage, address),
        offer: offer("Standard_NC4as_T4_v3", false),
        zone: None,
        disk_gib: 64,
        max_price: None,
        tags: BTreeMap::from([("team".to_string(), "llm".to_string())]),
        placement_group: None,
        volumes: Vec::new(),
        attempt: 0,
        network: Some(net.clone()),
    }
}

/// The VMs, NICs and OS disks the fake holds named for `lineage`, as `type name`.
fn node_leftovers(arm: &Arm, lineage: &str) -> Vec<String> {
    ["virtualMachines", "networkInterfaces", "disks"]
        .iter()
        .flat_map(|kind| {
            arm.named(kind, lineage)
                .into_iter()
                .map(move |r| format!("{kind} {}", r["name"].as_str().unwrap_or("?")))
        })
        .collect()
}

#[tokio::test]
async fn every_capacity_code_is_a_capacity_error_that_leaves_nothing_behind() {
    let arm = Arm::get();
    for code in [
        "AllocationFailed",
        "ZonalAllocationFailed",
        "OverconstrainedAllocationRequest",
        "OverconstrainedZonalAllocationRequest",
        "SkuNotAvailable",
    ] {
        let lineage = lineage();
        let p = provider(&arm, &lineage);
        let net = network(&p, &lineage).await;
        let fault = arm.fault(&json!({
            "code": code,
            "type": "virtualMachines",
            "contains": lineage,
            "times": 1,
        }));
        let err = p
            .create_instance(&node(&lineage, "fleet.solo[0]", &net))
            .await
            .expect_err("no capacity");
        assert_eq!(arm.fault_hits(&fault), 1, "{code}");
        assert_eq!(err.kind, FailureKind::Capacity, "{code}: {err}");
        assert_eq!(err.code, code, "the cloud's own code: {err}");
        assert!(!err.message.is_empty(), "{code}: the cloud's message");
        // The next offer starts clean: no Failed VM, NIC or OS disk under the node's names.
        assert_eq!(
            node_leftovers(&arm, &lineage),
            Vec::<String>::new(),
            "{code}"
        );
        p.delete_network(&net).await.expect("the network goes");
        assert_eq!(arm.leftovers(&lineage), Vec::<String>::new(), "{code}");
    }
}

#[tokio::test]
async fn quota_is_a_quota_error_naming_the_family() {
    let arm = Arm::get();
    let lineage = lineage();
    let p = provider(&arm, &lineage);
    let net = network(&p, &lineage).await;
    let fault = arm.fault(&json!({
        "code": "OperationNotAllowed",
        "type": "virtualMachines",
        "contains": lineage,
        "family": "standardNCASv3_T4Family",
    }));
    let err = p
        .create_instance(&node(&lineage, "fleet.solo[0]", &net))
        .await
        .expect_err("over quota");
    assert_eq!(arm.fault_hits(&fault), 1, "the VM's create was refused");
    assert_eq!(err.kind, FailureKind::Quota, "{err}");
    assert_eq!(err.code, "OperationNotAllowed");
    assert!(
        err.message.contains("standardNCASv3_T4Family"),
        "names the quota: {err}"
    );
    // A spot VM draws on the region's low-priority quota, and says so.
    let mut spot = node(&lineage, "fleet.solo[1]", &net);
    spot.offer = offer("Standard_NC4as_T4_v3", true);
    arm.clear_fault(&fault);
    let fault = arm.fault(&json!({
        "code": "OperationNotAllowed",
        "type": "virtualMachines",
        "contains": lineage,
    }));
    let err = p.create_instance(&spot).await.expect_err("over quota");
    assert_eq!(arm.fault_hits(&fault), 1, "the VM's create was refused");
    assert_eq!(err.kind, FailureKind::Quota, "{err}");
    assert!(err.message.contains("LowPriorityCores"), "{err}");
    arm.clear_fault(&fault);
    assert_eq!(node_leftovers(&arm, &lineage), Vec::<String>::new());
    p.delete_network(&net).await.expect("the network goes");
}

#[tokio::test]
async fn an_operation_not_allowed_that_is_not_quota_is_not_a_quota_error() {
    let arm = Arm::get();
    let lineage = lineage();
    let p = provider(&arm, &lineage);
    let net = network(&p, &lineage).await;
    let fault = arm.fault(&json!({
        "code": "OperationNotAllowed",
        "type": "virtualMachines",
        "contains": lineage,
        "message": "The operation is not allowed while the VM is being deallocated.",
    }));
    let err = p
        .create_instance(&node(&lineage, "fleet.solo[0]", &net))
        .await
        .expect_err("refused");
    assert_eq!(arm.fault_hits(&fault), 1, "the VM's create was refused");
    assert_eq!(err.kind, FailureKind::Other, "{err}");
    arm.clear_fault(&fault);
    assert_eq!(node_leftovers(&arm, &lineage), Vec::<String>::new());
    p.delete_network(&net).await.expect("the network goes");
}

#[tokio::test]
async fn throttling_that_does_not_stop_is_a_throttled_error() {
    let arm = Arm::get();
    let lineage = lineage();
    let p = provider(&arm, &lineage);
    let net = network(&p, &lineage).await;
    let fault = arm.fault(&json!({
        "code": "TooManyRequests",
        "method": "PUT",
        "type": "virtualMachines",
        "contains": lineage,
        "retry_after": 0,
    }));
    let err = p
        .create_instance(&node(&lineage, "fleet.solo[0]", &net))
        .await
        .expect_err("throttled");
    assert!(arm.fault_hits(&fault) > 1, "the client retried first");
    assert_eq!(err.kind, FailureKind::Throttled, "{err}");
    arm.clear_fault(&fault);
    assert_eq!(arm.all_vms(&lineage), Vec::<Value>::new());
    // The NIC made before the VM is the provider's to clean up or to reuse by name.
    let made = p
        .create_instance(&node(&lineage, "fleet.solo[0]", &net))
        .await
        .expect("made once throttling stops");
    assert_eq!(arm.nics(&lineage).len(), 1, "one NIC, reused by name");
    p.delete_instance(&made).await.expect("deleted");
    p.delete_network(&net).await.expect("the network goes");
    assert_eq!(arm.leftovers(&lineage), Vec::<String>::new());
}

#[tokio::test]
async fn deleting_what_is_gone_is_not_an_error() {
    let arm = Arm::get();
    let lineage = lineage();
    let p = provider(&arm, &lineage);
    let net = network(&p, &lineage).await;
    let made = p
        .create_instance(&node(&lineage, "fleet.solo[0]", &net))
        .await
        .expect("made");
    let disk = p
        .create_volume(&VolumeRequest {
            owner: owner(&lineage, "volume.data[0]"),
            region: REGION.into(),
            zone: None,
            size_gib: 10,
            volume_type: String::new(),
        })
        .await
        .expect("a disk");
    p.delete_instance(&made).await.expect("deleted");
    p.delete_volume(&disk).await.expect("deleted");
    p.delete_network(&net).await.expect("deleted");
    assert_eq!(arm.leftovers(&lineage), Vec::<String>::new());
    for result in [
        p.delete_instance(&made).await,
        p.delete_volume(&disk).await,
        p.delete_network(&net).await,
    ] {
        match result {
            Ok(()) => {}
            Err(e) => assert_eq!(e.kind, FailureKind::NotFound, "{e}"),
        }
    }
}

#[tokio::test]
async fn a_network_in_use_is_not_deleted() {
    let arm = Arm::get();
    let lineage = lineage();
    let p = provider(&arm, &lineage);
    let net = network(&p, &lineage).await;
    let made = p
        .create_instance(&node(&lineage, "fleet.solo[0]", &net))
        .await
        .expect("made");
    let err = p
        .delete_network(&net)
        .await
        .expect_err("its subnet is in use");
    assert_ne!(err.kind, FailureKind::NotFound, "{err}");
    assert_eq!(arm.vnets(&lineage).len(), 1, "still there");
    p.delete_instance(&made).await.expect("deleted");
    p.delete_network(&net).await.expect("now it goes");
    assert_eq!(arm.leftovers(&lineage), Vec::<String>::new());
}

#[tokio::test]
async fn the_resource_group_is_made_when_missing() {
    let arm = Arm::get();
    let lineage = lineage();
    let group = arm::resource_group(&lineage);
    let p = provider(&arm, &lineage);
    let has_group = || {
        arm.resource_groups().iter().any(|g| {
            g["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(&group))
        })
    };
    assert!(!has_group());
    let net = network(&p, &lineage).await;
    assert!(has_group(), "made for the first resource");
    let vnet = &arm.vnets(&lineage)[0];
    assert!(same_id(&vnet["id"], &Value::from(net.provider_id.clone())));
    p.delete_network(&net).await.expect("deleted");
}

#[tokio::test]
async fn a_network_held_by_another_state_is_refused_not_adopted() {
    let arm = Arm::get();
    let lineage = lineage();
    let p = provider(&arm, &lineage);
    let mine = network(&p, &lineage).await;
    // Another state whose names come out the same (same lineage prefix) in the same group.
    let stranger = format!("{}-0000-4000-8000-000000000000", &lineage[..8]);
    let request = NetworkRequest {
        owner: owner(&stranger, &network_address(ProviderKind::Azure, REGION)),
        region: REGION.into(),
    };
    match p.create_network(&request).await {
        Ok(r) => panic!("adopted another state's network: {r:?}"),
        Err(e) => {
            assert_eq!(e.kind, FailureKind::Other, "{e}");
            assert!(e.to_string().contains(&lineage), "names its owner: {e}");
        }
    }
    let found = p.find(ResourceKind::Network, REGION, &request.owner).await;
    assert!(
        !matches!(found, Ok(Some(_))),
        "find adopts only its own lineage's: {found:?}"
    );
    let vnets = arm.vnets(&lineage);
    assert_eq!(vnets.len(), 1);
    assert!(same_id(
        &vnets[0]["id"],
        &Value::from(mine.provider_id.clone())
    ));
    p.delete_network(&mine).await.expect("deleted");
}
