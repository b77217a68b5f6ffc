//! The Azure provider's networks, VMs and disks through the crate's API against the ARM fake
//! (tests/arm/server.py): the real `azure_mgmt_compute`/`azure_mgmt_network` clients over
//! HTTP, checked by reading the fake back.
//!
//! The fake must run and `FLOTILLA_AZURE_ENDPOINT` point at it; `scripts/test` does both
//! (`scripts/test -E 'binary(azure_resources)'`). Without it the tests fail loudly. Each test
//! works in its own resource group and lineage, so they run in parallel with the others on one
//! fake. The end-to-end behaviour through the binary is tests/tests/azure_apply.rs.

use flotilla_core::catalog::{Offer, ProviderKind};
use flotilla_core::provider::{
    FailureKind, InstanceRequest, NetworkRequest, Ownership, Provider, VolumeRequest,
};
use flotilla_core::state::{Resource, ResourceKind, State};
use flotilla_provider_azure::{AzureOptions, AzureProvider};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const SUBSCRIPTION: &str = "00000000-0000-0000-0000-0000000000a1";
const REGION: &str = "eastus";
const SIZE: &str = "Standard_NC4as_T4_v3";
const OTHER_SIZE: &str = "Standard_NC16as_T4_v3";

/// One test's world: the fake, its own resource group and lineage, the provider.
struct World {
    base: String,
    http: reqwest::Client,
    group: String,
    lineage: String,
    provider: AzureProvider,
}

impl World {
    fn new(tag: &str) -> World {
        let base = std::env::var("FLOTILLA_AZURE_ENDPOINT").unwrap_or_default();
        assert!(
            !base.is_empty(),
            "FLOTILLA_AZURE_ENDPOINT is not set: these tests need the ARM fake \
             (tests/arm/server.py); run them through scripts/test"
        );
        let lineage = State::empty().lineage;
        let group = format!("fla-{tag}-{}", &lineage[..8]);
        let config = flotilla_core::config::AzureProvider {
            subscription_id: SUBSCRIPTION.into(),
            resource_group: group.clone(),
            endpoint: Some(base.clone()),
            ssh_public_key: Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE test@host".into()),
            ..Default::default()
        };
        let provider = AzureProvider::with_options(
            &config,
            AzureOptions {
                poll_interval: Duration::from_millis(5),
                max_poll_interval: Duration::from_millis(50),
                wait_timeout: Duration::from_secs(60),
            },
        )
        .expect("a provider for the fake");
        World {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            group,
            lineage,
            provider,
        }
    }

    fn owner(&self, address: &str) -> Ownership {
        Ownership {
            lineage: self.lineage.clone(),
            address: address.into(),
            generation: 0,
        }
    }

    /// A GET of the fake; the status and JSON body.
    async fn get(&self, path: &str) -> (u16, Value) {
        let rsp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth("test-token")
            .send()
            .await
            .unwrap_or_else(|e| panic!("the ARM fake at {} is not reachable: {e}", self.base));
        let status = rsp.status().as_u16();
        let text = rsp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A resource of this test's group as the fake holds it; `None` when there is none.
    async fn resource(&self, rtype: &str, name: &str, api: &str) -> Option<Value> {
        let (status, v) = self
            .get(&format!(
                "/subscriptions/{SUBSCRIPTION}/resourceGroups/{}/providers/{rtype}/{name}?api-version={api}",
                self.group
            ))
            .await;
        (status == 200).then_some(v)
    }

    /// The names of this group's resources of `rtype` (`virtualMachines`, `disks`, …).
    async fn names(&self, rtype: &str) -> Vec<String> {
        let (_, v) = self.get(&format!("/_state?type={rtype}")).await;
        let mut out = Vec::new();
        collect(&v, &self.group, &mut out);
        out.sort();
        out.dedup();
        out
    }

    async fn post(&self, path: &str, body: &Value) {
        self.http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("the fake's control endpoint");
    }

    fn offer(&self, size: &str, spot: bool) -> Offer {
        Offer {
            provider: ProviderKind::Azure,
            region: REGION.into(),
            zone: String::new(),
            instance_type: size.into(),
            gpu_vendor: None,
            gpu_name: "T4".into(),
            gpu_count: 1,
            gpu_memory: Default::default(),
            vcpus: 4,
            memory: Default::default(),
            spot,
            price_per_hour: 0.5,
        }
    }

    fn instance(&self, address: &str, size: &str, volumes: Vec<Resource>) -> InstanceRequest {
        InstanceRequest {
            owner: self.owner(address),
            offer: self.offer(size, false),
            zone: None,
            disk_gib: 64,
            max_price: None,
            tags: BTreeMap::from([("team".to_string(), "ml".to_string())]),
            placement_group: None,
            volumes,
            attempt: 0,
            network: None,
        }
    }

    fn volume(&self, address: &str, gib: u64) -> VolumeRequest {
        VolumeRequest {
            owner: self.owner(address),
            region: REGION.into(),
            zone: None,
            size_gib: gib,
            volume_type: "gp3".into(),
        }
    }
}

/// Names of resources under `group` anywhere in the fake's `/_state` answer.
fn collect(v: &Value, group: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let (Some(id), Some(name)) = (m.get("id").and_then(Value::as_str), m.get("name"))
                && id
                    .to_ascii_lowercase()
                    .contains(&format!("/resourcegroups/{}/", group.to_ascii_lowercase()))
                && m.contains_key("type")
                && let Some(name) = name.as_str()
            {
                out.push(name.to_string());
            }
            for x in m.values() {
                collect(x, group, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect(x, group, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_network_is_made_once_found_and_refused_deletion_while_in_use() {
    let w = World::new("net");
    let request = NetworkRequest {
        owner: w.owner("network.azure.eastus"),
        region: REGION.into(),
    };
    let net = w.provider.create_network(&request).await.expect("network");
    assert_eq!(net.kind, ResourceKind::Network);
    assert!(
        net.attributes["subnet_id"]
            .as_str()
            .unwrap()
            .ends_with("/subnets/default")
    );
    // The resource group was made for it, and a second create is the same network.
    assert_eq!(
        w.provider
            .create_network(&request)
            .await
            .expect("again")
            .provider_id,
        net.provider_id
    );
    let found = w
        .provider
        .find(ResourceKind::Network, REGION, &request.owner)
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found.provider_id, net.provider_id);
    let vnet = w
        .resource(
            "Microsoft.Network/virtualNetworks",
            last(&net.provider_id),
            "2024-03-01",
        )
        .await
        .expect("the VNet");
    assert_eq!(
        vnet["properties"]["addressSpace"]["addressPrefixes"],
        json!(["10.0.0.0/16"])
    );
    assert_eq!(vnet["tags"]["flotilla-lineage"], w.lineage.as_str());

    // A VM in it: ARM refuses to delete the subnet, and the refusal comes back as it is.
    let vm = w
        .provider
        .create_instance(&InstanceRequest {
            network: Some(net.clone()),
            ..w.instance("fleet.a[0]", SIZE, vec![])
        })
        .await
        .expect("vm");
    let e = w
        .provider
        .delete_network(&net)
        .await
        .expect_err("a subnet in use");
    assert_eq!(e.kind, FailureKind::Other);
    assert!(
        e.code.contains("InUse") || e.message.contains("in use"),
        "{e}"
    );
    w.provider.delete_instance(&vm).await.expect("vm deleted");
    w.provider.delete_network(&net).await.expect("deleted");
    assert!(
        w.provider
            .find(ResourceKind::Network, REGION, &request.owner)
            .await
            .expect("find")
            .is_none()
    );
    // Already gone counts as deleted.
    w.provider.delete_network(&net).await.expect("idempotent");
}

fn last(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_gets_its_nic_disks_and_tags_and_leaves_its_disks_when_deleted() {
    let w = World::new("vm");
    let disk = w
        .provider
        .create_volume(&w.volume("volume.d[0]", 40))
        .await
        .expect("disk");
    // No network in the request: the provider ensures the region's network itself.
    let vm = w
        .provider
        .create_instance(&w.instance("fleet.a[0]", SIZE, vec![disk.clone()]))
        .await
        .expect("vm");
    assert_eq!(vm.kind, ResourceKind::Instance);
    assert_eq!(vm.attributes["vm_size"], SIZE);
    assert_eq!(vm.attributes["priority"], "Regular");
    assert!(
        vm.attributes["private_ip"]
            .as_str()
            .unwrap()
            .starts_with("10.0.0.")
    );
    assert!(!vm.attributes.contains_key("public_ip"));
    let name = last(&vm.provider_id).to_string();
    let got = w
        .resource("Microsoft.Compute/virtualMachines", &name, "2024-07-01")
        .await
        .expect("the VM");
    let props = &got["properties"];
    assert_eq!(props["storageProfile"]["osDisk"]["diskSizeGB"], 64);
    assert_eq!(
        props["storageProfile"]["dataDisks"][0]["createOption"],
        "Attach"
    );
    assert_eq!(got["tags"]["team"], "ml");
    assert_eq!(got["tags"]["flotilla-address"], "fleet.a[0]");
    assert_eq!(
        props["osProfile"]["adminUsername"], "azureuser",
        "the default admin user"
    );

    // Found again by its name and lineage; another lineage's VM at the name is an error.
    let found = w
        .provider
        .find(ResourceKind::Instance, REGION, &w.owner("fleet.a[0]"))
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found.provider_id, vm.provider_id);
    assert_eq!(
        found.offer.as_ref().map(|o| o.instance_type.as_str()),
        Some(SIZE)
    );
    let foreign = Ownership {
        lineage: "0f3a9c2e-0000-0000-0000-000000000000".into(),
        ..w.owner("fleet.a[0]")
    };
    assert!(
        w.provider
            .find(ResourceKind::Instance, REGION, &foreign)
            .await
            .unwrap_or(None)
            .is_none()
    );

    // Update: new tags and a second disk, in place.
    let disk2 = w
        .provider
        .create_volume(&w.volume("volume.e[0]", 30))
        .await
        .expect("disk 2");
    let mut request = w.instance("fleet.a[0]", SIZE, vec![disk.clone(), disk2.clone()]);
    request.tags = BTreeMap::from([("team".to_string(), "vision".to_string())]);
    w.provider
        .update_instance(&vm, &request)
        .await
        .expect("update");
    let got = w
        .resource("Microsoft.Compute/virtualMachines", &name, "2024-07-01")
        .await
        .expect("the VM");
    assert_eq!(got["tags"]["team"], "vision");
    assert_eq!(
        got["properties"]["storageProfile"]["dataDisks"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // Volumes: grow in place, never shrink, and an attached disk is not deleted.
    let grown = w
        .provider
        .update_volume(&disk, &w.volume("volume.d[0]", 50))
        .await
        .expect("grow");
    assert_eq!(grown.provider_id, disk.provider_id);
    let e = w
        .provider
        .update_volume(&disk, &w.volume("volume.d[0]", 10))
        .await
        .expect_err("shrink");
    assert_eq!(e.code, "DiskShrinkNotAllowed");
    let e = w.provider.delete_volume(&disk).await.expect_err("attached");
    assert_ne!(e.kind, FailureKind::NotFound, "{e}");

    // Delete: the disks are detached and survive, the NIC and OS disk go.
    w.provider.delete_instance(&vm).await.expect("deleted");
    assert!(w.names("virtualMachines").await.is_empty());
    assert!(w.names("networkInterfaces").await.is_empty());
    let disks = w.names("disks").await;
    assert_eq!(disks.len(), 2, "{disks:?}");
    for d in [&disk, &disk2] {
        let got = w
            .resource(
                "Microsoft.Compute/disks",
                last(&d.provider_id),
                "2024-03-02",
            )
            .await
            .expect("the disk");
        assert_eq!(got["properties"]["diskState"], "Unattached");
        w.provider.delete_volume(d).await.expect("disk deleted");
    }
    assert!(w.names("disks").await.is_empty());
    // Deleting what is gone is fine.
    w.provider.delete_instance(&vm).await.expect("idempotent");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_capacity_failure_leaves_nothing_behind_and_spot_sets_the_price_cap() {
    let w = World::new("cap");
    w.post(
        "/_fault",
        &json!({"code": "AllocationFailed", "size": SIZE, "contains": w.group, "times": 1}),
    )
    .await;
    let e = w
        .provider
        .create_instance(&w.instance("fleet.b[0]", SIZE, vec![]))
        .await
        .expect_err("no capacity");
    assert_eq!(e.kind, FailureKind::Capacity, "{e}");
    assert_eq!(e.code, "AllocationFailed");
    assert!(w.names("virtualMachines").await.is_empty());
    assert!(w.names("networkInterfaces").await.is_empty());

    // The next offer at the same names starts clean: a spot VM capped at the fleet's price,
    // in a proximity placement group.
    let mut request = w.instance("fleet.b[0]", OTHER_SIZE, vec![]);
    request.offer.spot = true;
    request.max_price = Some(0.75);
    request.placement_group = Some(format!("flotilla-{}-b", &w.lineage[..8]));
    request.attempt = 1;
    let vm = w.provider.create_instance(&request).await.expect("vm");
    assert_eq!(vm.attributes["priority"], "Spot");
    let got = w
        .resource(
            "Microsoft.Compute/virtualMachines",
            last(&vm.provider_id),
            "2024-07-01",
        )
        .await
        .expect("the VM");
    assert_eq!(got["properties"]["evictionPolicy"], "Delete");
    assert_eq!(got["properties"]["billingProfile"]["maxPrice"], 0.75);
    assert_eq!(w.names("proximityPlacementGroups").await.len(), 1);
    // The fleet's last VM takes its placement group along.
    w.provider.delete_instance(&vm).await.expect("deleted");
    assert!(w.names("proximityPlacementGroups").await.is_empty());

    // Quota: its own kind, naming the quota.
    w.post(
        "/_fault",
        &json!({"code": "OperationNotAllowed", "size": SIZE, "contains": w.group, "times": 1,
                "family": "standardNCASv3_T4Family"}),
    )
    .await;
    let e = w
        .provider
        .create_instance(&w.instance("fleet.b[1]", SIZE, vec![]))
        .await
        .expect_err("quota");
    assert_eq!(e.kind, FailureKind::Quota, "{e}");
    assert!(e.message.contains("standardNCASv3_T4Family"), "{e}");
    assert!(w.names("networkInterfaces").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replacement_vm_never_reuses_a_nic_arm_still_reserves() {
    let w = World::new("nic");
    let first = w
        .provider
        .create_instance(&w.instance("fleet.r[0]", SIZE, vec![]))
        .await
        .expect("vm");
    // Azure keeps a deleted VM's NIC reserved for it for a while; the fake does so while
    // `nic_reservation_s` is set. Only a VM of another name on that NIC is refused, so the
    // setting is harmless to the tests running beside this one.
    w.post("/_config", &json!({"nic_reservation_s": 60})).await;
    let deleted = w.provider.delete_instance(&first).await;
    // The replacement is a later generation of the address: other names, so no reserved NIC.
    let mut request = w.instance("fleet.r[0]", OTHER_SIZE, vec![]);
    request.owner.generation = 1;
    let second = w.provider.create_instance(&request).await;
    w.post("/_config", &json!({"nic_reservation_s": 0})).await;
    deleted.expect("deleted");
    let second = second.expect("the replacement");
    assert_ne!(
        second.attributes["nic_id"], first.attributes["nic_id"],
        "a new NIC"
    );
    assert!(last(&second.provider_id).ends_with("-g1"));
    w.provider.delete_instance(&second).await.expect("deleted");
    assert!(w.names("networkInterfaces").await.is_empty());
}
