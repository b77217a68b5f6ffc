//! The Azure provider's gateways (load balancer + public IP + NIC pool members) and its batched
//! refresh, through the crate's API against the ARM fake (tests/arm/server.py): the real
//! `azure_mgmt_network`/`azure_mgmt_compute` clients over HTTP.
//!
//! The fake must run and `FLOTILLA_AZURE_ENDPOINT` point at it; `scripts/test` does both
//! (`scripts/test -E 'binary(azure_gateways)'`). Without it the tests fail loudly. Each test
//! works in its own resource group, so they run in parallel with each other and with the
//! end-to-end tests; the VMs, disks and NICs the gateway needs are made here with raw ARM
//! calls, so these tests depend on no other part of the provider than networks.

use flotilla_core::catalog::ProviderKind;
use flotilla_core::provider::{GatewayRequest, NetworkRequest, Observed, Ownership, Provider};
use flotilla_core::state::{Resource, ResourceKind, State};
use flotilla_provider_azure::{AzureOptions, AzureProvider};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const SUBSCRIPTION: &str = "00000000-0000-0000-0000-0000000000b2";
const REGION: &str = "eastus";
const NETWORK_API: &str = "2024-03-01";
const COMPUTE_API: &str = "2024-07-01";
const DISK_API: &str = "2024-03-02";

/// The ARM fake, reached with plain HTTP for what the test arranges and inspects.
struct Fake {
    base: String,
    http: reqwest::Client,
}

impl Fake {
    fn get() -> Fake {
        let base = std::env::var("FLOTILLA_AZURE_ENDPOINT").unwrap_or_default();
        assert!(
            !base.is_empty(),
            "FLOTILLA_AZURE_ENDPOINT is not set: these tests need the ARM fake \
             (tests/arm/server.py); run them through scripts/test"
        );
        Fake {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    /// A call; the status and the JSON body (`Null` when empty).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth("test-token");
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let rsp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("the ARM fake at {} is not reachable: {e}", self.base));
        let status = rsp.status().as_u16();
        let text = rsp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// An ARM call that must succeed.
    async fn arm(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Value {
        let (status, v) = self.call(method.clone(), path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path} answered {status}: {v}"
        );
        v
    }

    /// GETs `path` until its provisioningState is terminal (the fake moves on by reads).
    async fn settle(&self, path: &str) -> Value {
        for _ in 0..50 {
            let v = self.arm(reqwest::Method::GET, path, None).await;
            match v["properties"]["provisioningState"].as_str() {
                Some("Succeeded") | None => return v,
                Some("Failed") => panic!("{path} failed: {v}"),
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        panic!("{path} never settled");
    }

    /// The ARM calls seen whose path contains `contains`.
    async fn calls(&self, contains: &str) -> Vec<Value> {
        let (_, v) = self
            .call(
                reqwest::Method::GET,
                &format!("/_calls?contains={contains}"),
                None,
            )
            .await;
        match v {
            Value::Array(a) => a,
            other => other["calls"].as_array().cloned().unwrap_or_default(),
        }
    }
}

/// One test's world: its own resource group and lineage, the provider, and the region's
/// network (made through the provider).
struct World {
    fake: Fake,
    group: String,
    state: State,
    provider: AzureProvider,
    network: Resource,
}

impl World {
    async fn new(tag: &str) -> World {
        let fake = Fake::get();
        let state = State::empty();
        let group = format!("flb-{tag}-{}", &state.lineage[..8]);
        let config = flotilla_core::config::AzureProvider {
            subscription_id: SUBSCRIPTION.into(),
            resource_group: group.clone(),
            endpoint: Some(fake.base.clone()),
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
        let network = provider
            .create_network(&NetworkRequest {
                owner: owner(&state, "network.azure.eastus"),
                region: REGION.into(),
            })
            .await
            .expect("the region's network");
        World {
            fake,
            group,
            state,
            provider,
            network,
        }
    }

    fn path(&self, rtype: &str, name: &str) -> String {
        format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/{}/providers/{rtype}/{name}",
            self.group
        )
    }

    fn with_api(path: &str, api: &str) -> String {
        format!("{path}?api-version={api}")
    }

    /// A NIC in the network's subnet; its id.
    async fn nic(&self, name: &str) -> String {
        let path = Self::with_api(
            &self.path("Microsoft.Network/networkInterfaces", name),
            NETWORK_API,
        );
        let body = json!({"location": REGION, "properties": {"ipConfigurations": [
            {"name": "ipconfig1", "properties": {
                "subnet": {"id": self.network.attributes["subnet_id"]},
                "privateIPAllocationMethod": "Dynamic"}}]}});
        self.fake
            .arm(reqwest::Method::PUT, &path, Some(&body))
            .await;
        self.fake.settle(&path).await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// An empty data disk; its id.
    async fn disk(&self, name: &str, gib: u64) -> String {
        let path = Self::with_api(&self.path("Microsoft.Compute/disks", name), DISK_API);
        let body = json!({"location": REGION, "sku": {"name": "Premium_LRS"},
            "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": gib}});
        self.fake
            .arm(reqwest::Method::PUT, &path, Some(&body))
            .await;
        self.fake.settle(&path).await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A VM on `nic` with `disk` attached at LUN 0 and `tags`; its id.
    async fn vm(&self, name: &str, nic: &str, disk: Option<&str>, tags: &Value) -> String {
        let path = Self::with_api(
            &self.path("Microsoft.Compute/virtualMachines", name),
            COMPUTE_API,
        );
        let data: Vec<Value> = disk
            .map(|d| json!({"lun": 0, "createOption": "Attach", "managedDisk": {"id": d}}))
            .into_iter()
            .collect();
        let body = json!({"location": REGION, "tags": tags, "properties": {
            "hardwareProfile": {"vmSize": "Standard_NC12s_v3"},
            "storageProfile": {
                "imageReference": {"publisher": "Canonical", "offer": "ubuntu", "sku": "22_04-lts-gen2", "version": "latest"},
                "osDisk": {"createOption": "FromImage", "deleteOption": "Delete"},
                "dataDisks": data},
            "osProfile": {"computerName": name, "adminUsername": "azureuser",
                "linuxConfiguration": {"disablePasswordAuthentication": true, "ssh": {"publicKeys": [
                    {"path": "/home/azureuser/.ssh/authorized_keys", "keyData": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE t"}]}}},
            "networkProfile": {"networkInterfaces": [{"id": nic, "properties": {"primary": true}}]}}});
        self.fake
            .arm(reqwest::Method::PUT, &path, Some(&body))
            .await;
        self.fake.settle(&path).await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The load balancer pools a NIC's primary IP configuration names.
    async fn nic_pools(&self, nic: &str) -> Vec<String> {
        let v = self
            .fake
            .arm(
                reqwest::Method::GET,
                &Self::with_api(nic, NETWORK_API),
                None,
            )
            .await;
        v["properties"]["ipConfigurations"][0]["properties"]["loadBalancerBackendAddressPools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["id"].as_str().map(str::to_ascii_lowercase))
            .collect()
    }

    /// The load balancer at `id` as ARM shows it, `None` when gone.
    async fn lb(&self, id: &str) -> Option<Value> {
        let (status, v) = self
            .fake
            .call(reqwest::Method::GET, &Self::with_api(id, NETWORK_API), None)
            .await;
        (status == 200).then_some(v)
    }
}

fn owner(state: &State, address: &str) -> Ownership {
    Ownership {
        lineage: state.lineage.clone(),
        address: address.into(),
        generation: 0,
    }
}

/// A node as state would record it.
fn node(address: &str, vm: &str, nic: &str, tags: &Value) -> Resource {
    Resource {
        address: address.into(),
        kind: ResourceKind::Instance,
        provider: ProviderKind::Azure,
        provider_id: vm.into(),
        region: REGION.into(),
        zone: String::new(),
        offer: None,
        attributes: BTreeMap::from([
            ("nic_id".to_string(), Value::from(nic)),
            ("tags".to_string(), tags.clone()),
            ("vm_size".to_string(), Value::from("Standard_NC12s_v3")),
            ("priority".to_string(), Value::from("Regular")),
        ]),
        dependencies: Vec::new(),
    }
}

fn request(w: &World, port: u16, targets: &[&Resource]) -> GatewayRequest {
    GatewayRequest {
        owner: owner(&w.state, "gateway.api"),
        region: REGION.into(),
        domain: Some("api.example.com".into()),
        port,
        targets: targets.iter().map(|t| (*t).clone()).collect(),
    }
}

/// The NIC ids (lower-cased) in a load balancer's pool.
fn pool_members(lb: &Value) -> BTreeSet<String> {
    lb["properties"]["backendAddressPools"][0]["properties"]["backendIPConfigurations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["id"].as_str())
        .map(|id| {
            let id = id.to_ascii_lowercase();
            id[..id.find("/ipconfigurations/").unwrap_or(id.len())].to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_is_made_updated_in_place_found_and_deleted() {
    let w = World::new("gw").await;
    let nics = [w.nic("n0").await, w.nic("n1").await, w.nic("n2").await];
    let none = json!({});
    let nodes: Vec<Resource> = (0..3)
        .map(|i| {
            node(
                &format!("fleet.web[{i}]"),
                &w.path("Microsoft.Compute/virtualMachines", &format!("vm{i}")),
                &nics[i],
                &none,
            )
        })
        .collect();

    // Create: IP, LB with a rule on the port, the first two NICs in the pool.
    let made = w
        .provider
        .create_gateway(&request(&w, 8080, &[&nodes[0], &nodes[1]]))
        .await
        .expect("create_gateway");
    assert_eq!(made.kind, ResourceKind::Gateway);
    assert!(made.provider_id.contains("/loadBalancers/"), "{made:?}");
    let ip = made.attributes["ip_address"].as_str().unwrap();
    assert_eq!(made.attributes["dns_name"], ip);
    assert_eq!(made.attributes["port"], 8080);
    assert!(
        made.attributes["public_ip_id"]
            .as_str()
            .unwrap()
            .ends_with("-ip")
    );
    let lb = w.lb(&made.provider_id).await.expect("the load balancer");
    assert_eq!(lb["sku"]["name"], "Standard");
    assert_eq!(lb["tags"]["flotilla-lineage"], w.state.lineage.as_str());
    assert_eq!(lb["tags"]["flotilla-address"], "gateway.api");
    let rule = &lb["properties"]["loadBalancingRules"][0]["properties"];
    assert_eq!(
        (
            rule["frontendPort"].clone(),
            rule["backendPort"].clone(),
            rule["protocol"].clone()
        ),
        (json!(8080), json!(8080), json!("Tcp"))
    );
    assert_eq!(lb["properties"]["probes"][0]["properties"]["port"], 8080);
    let want: BTreeSet<String> = nics[..2].iter().map(|n| n.to_ascii_lowercase()).collect();
    assert_eq!(pool_members(&lb), want);
    let pool = made.attributes["backend_pool_id"]
        .as_str()
        .unwrap()
        .to_ascii_lowercase();
    assert_eq!(w.nic_pools(&nics[0]).await, vec![pool.clone()]);

    // A repeated create (a retried or crashed one) adopts what is there: same LB, same IP.
    let again = w
        .provider
        .create_gateway(&request(&w, 8080, &[&nodes[0], &nodes[1]]))
        .await
        .expect("a repeated create");
    assert_eq!(again.provider_id, made.provider_id);
    assert_eq!(
        again.attributes["ip_address"],
        made.attributes["ip_address"]
    );

    // Update in place: web[0] leaves, web[2] joins, the port moves.
    let updated = w
        .provider
        .update_gateway(&made, &request(&w, 9090, &[&nodes[1], &nodes[2]]))
        .await
        .expect("update_gateway");
    assert_eq!(updated.provider_id, made.provider_id);
    let lb = w.lb(&made.provider_id).await.unwrap();
    let want: BTreeSet<String> = nics[1..].iter().map(|n| n.to_ascii_lowercase()).collect();
    assert_eq!(pool_members(&lb), want);
    assert!(w.nic_pools(&nics[0]).await.is_empty());
    assert_eq!(
        lb["properties"]["loadBalancingRules"][0]["properties"]["frontendPort"],
        9090
    );
    assert_eq!(
        updated.attributes["ip_address"],
        made.attributes["ip_address"]
    );

    // Found again by its name and lineage (what the executor does after a crash).
    let found = w
        .provider
        .find(
            ResourceKind::Gateway,
            REGION,
            &owner(&w.state, "gateway.api"),
        )
        .await
        .expect("find")
        .expect("the gateway is found");
    assert_eq!(found.provider_id, made.provider_id);
    assert_eq!(found.attributes["port"], 9090);
    // Another lineage finds nothing.
    let stranger = Ownership {
        lineage: "ffffffff-0000-0000-0000-000000000000".into(),
        ..owner(&w.state, "gateway.api")
    };
    assert!(
        w.provider
            .find(ResourceKind::Gateway, REGION, &stranger)
            .await
            .unwrap()
            .is_none()
    );

    // Delete: the NICs leave the pool, then the LB and the IP go; a second delete is fine.
    w.provider
        .delete_gateway(&updated)
        .await
        .expect("delete_gateway");
    assert!(w.lb(&made.provider_id).await.is_none());
    let (status, _) = w
        .fake
        .call(
            reqwest::Method::GET,
            &World::with_api(
                made.attributes["public_ip_id"].as_str().unwrap(),
                NETWORK_API,
            ),
            None,
        )
        .await;
    assert_eq!(status, 404, "the public IP is deleted");
    for nic in &nics {
        assert!(w.nic_pools(nic).await.is_empty(), "{nic} left the pool");
    }
    w.provider
        .delete_gateway(&updated)
        .await
        .expect("deleting a deleted gateway");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_without_a_nic_is_an_error_naming_it() {
    let w = World::new("nonic").await;
    let mut lost = node("fleet.web[0]", "/x/vm", "", &json!({}));
    lost.attributes.remove("nic_id");
    let e = w
        .provider
        .create_gateway(&request(&w, 80, &[&lost]))
        .await
        .unwrap_err();
    assert_eq!(e.code, "NoNic");
    assert!(e.message.contains("fleet.web[0]"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_lists_each_kind_once_and_sees_what_changed_outside() {
    let w = World::new("rf").await;
    let n0 = w.nic("n0").await;
    let n1 = w.nic("n1").await;
    let d0 = w.disk("d0", 64).await;
    let team = json!({"team": "ml"});
    let vm0 = w
        .vm(
            "vm0",
            &n0,
            Some(&d0),
            &json!({"team": "ml", "flotilla-lineage": w.state.lineage, "flotilla-address": "fleet.web[0]"}),
        )
        .await;
    let vm1 = w.vm("vm1", &n1, None, &team).await;
    let web0 = node("fleet.web[0]", &vm0, &n0, &team);
    let web1 = node("fleet.web[1]", &vm1, &n1, &team);
    let volume = Resource {
        address: "volume.ckpt[0]".into(),
        kind: ResourceKind::Volume,
        provider: ProviderKind::Azure,
        provider_id: d0.clone(),
        region: REGION.into(),
        zone: String::new(),
        offer: None,
        attributes: BTreeMap::from([
            ("size_gib".to_string(), json!(64)),
            ("type".to_string(), json!("gp3")),
            ("attached_to".to_string(), json!("fleet.web[0]")),
        ]),
        dependencies: Vec::new(),
    };
    let mut gateway = w
        .provider
        .create_gateway(&request(&w, 80, &[&web0, &web1]))
        .await
        .expect("create_gateway");
    gateway
        .attributes
        .insert("targets".into(), json!(["fleet.web[0]", "fleet.web[1]"]));
    let ghost = node(
        "fleet.web[2]",
        &w.path("Microsoft.Compute/virtualMachines", "vm-never-made"),
        &w.path("Microsoft.Network/networkInterfaces", "nic-never-made"),
        &team,
    );
    // A disk in a resource group that no longer exists: gone too, not an error.
    let lost = Resource {
        address: "volume.lost[0]".into(),
        provider_id: format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/flb-missing-{}/providers/Microsoft.Compute/disks/d9",
            &w.state.lineage[..8]
        ),
        ..volume.clone()
    };
    let mut state = w.state.clone();
    state.resources = vec![
        w.network.clone(),
        web0.clone(),
        web1.clone(),
        ghost,
        volume,
        gateway.clone(),
        lost,
    ];

    // Unchanged: no drift, except what never existed.
    let before = w.fake.calls(&w.group).await.len();
    let answers = w.provider.refresh(&state.resources).await.expect("refresh");
    let calls = w.fake.calls(&w.group).await;
    let new_calls = &calls[before.min(calls.len())..];
    assert_eq!(answers.len(), state.resources.len());
    assert_eq!(answers[3], Observed::Gone);
    assert_eq!(answers[6], Observed::Gone);
    let observed: BTreeMap<String, Observed> = state
        .resources
        .iter()
        .map(|r| r.address.clone())
        .zip(answers)
        .collect();
    let refreshed = flotilla_core::plan::refresh(&state, &observed);
    let drift: Vec<(String, bool)> = refreshed
        .drift
        .iter()
        .map(|d| (d.address.clone(), d.gone))
        .collect();
    assert_eq!(
        drift,
        vec![
            ("fleet.web[2]".to_string(), true),
            ("volume.lost[0]".to_string(), true)
        ],
        "{:#?}",
        refreshed.drift
    );
    if let Observed::Exists(v) = &observed["volume.ckpt[0]"] {
        assert_eq!(v.attributes["lun"], 0);
        assert_eq!(v.attributes["sku"], "Premium_LRS");
    } else {
        panic!("the volume exists");
    }
    // One list per kind, no call per resource.
    // One (paginated) list per kind, no call per resource: every GET is a page of a list,
    // and each kind's list starts once (a later page carries `$skiptoken`).
    let gets: Vec<(String, bool)> = new_calls
        .iter()
        .filter(|c| c["method"] == "GET")
        .map(|c| {
            (
                c["path"].as_str().unwrap_or_default().to_ascii_lowercase(),
                c["query"].get("$skiptoken").is_none(),
            )
        })
        .collect();
    let kinds = [
        "microsoft.compute/virtualmachines",
        "microsoft.compute/disks",
        "microsoft.network/loadbalancers",
        "microsoft.network/virtualnetworks",
    ];
    for kind in kinds {
        let lists = gets
            .iter()
            .filter(|(p, first)| *first && p.ends_with(kind))
            .count();
        assert_eq!(lists, 1, "one list of {kind}: {gets:#?}");
    }
    assert!(
        gets.iter()
            .all(|(p, _)| kinds.iter().any(|k| p.ends_with(k))),
        "nothing but the four lists: {gets:#?}"
    );

    // Changed outside: web[0]'s tags, and web[1]'s NIC taken out of the pool.
    let vm0_path = World::with_api(&vm0, COMPUTE_API);
    let mut vm = w.fake.arm(reqwest::Method::GET, &vm0_path, None).await;
    vm["tags"]["team"] = json!("infra");
    w.fake.arm(reqwest::Method::PUT, &vm0_path, Some(&vm)).await;
    w.fake.settle(&vm0_path).await;
    let n1_path = World::with_api(&n1, NETWORK_API);
    let mut nic = w.fake.arm(reqwest::Method::GET, &n1_path, None).await;
    nic["properties"]["ipConfigurations"][0]["properties"]["loadBalancerBackendAddressPools"] =
        json!([]);
    w.fake.arm(reqwest::Method::PUT, &n1_path, Some(&nic)).await;
    w.fake.settle(&n1_path).await;

    let answers = w.provider.refresh(&state.resources).await.expect("refresh");
    let observed: BTreeMap<String, Observed> = state
        .resources
        .iter()
        .map(|r| r.address.clone())
        .zip(answers)
        .collect();
    let refreshed = flotilla_core::plan::refresh(&state, &observed);
    let changed: BTreeMap<String, Vec<(String, Value)>> = refreshed
        .drift
        .iter()
        .filter(|d| !d.gone)
        .map(|d| {
            (
                d.address.clone(),
                d.attributes
                    .iter()
                    .map(|a| (a.name.clone(), a.after.clone()))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        changed,
        BTreeMap::from([
            (
                "fleet.web[0]".to_string(),
                vec![("tags".to_string(), json!({"team": "infra"}))]
            ),
            (
                "gateway.api".to_string(),
                vec![("targets".to_string(), json!(["fleet.web[0]"]))]
            ),
        ]),
        "{:#?}",
        refreshed.drift
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_load_balancer_operation_keeps_arms_error() {
    let w = World::new("fail").await;
    let nic = w.nic("n0").await;
    let web0 = node("fleet.web[0]", "/x/vm0", &nic, &json!({}));
    // The PUT is accepted; the operation then fails, as ARM reports it asynchronously.
    let fault = json!({"code": "NetworkingInternalOperationError", "message": "boom in the LB",
        "type": "loadBalancers", "method": "PUT", "async": true, "times": 1, "contains": w.group});
    w.fake
        .arm(reqwest::Method::POST, "/_fault", Some(&fault))
        .await;
    let e = w
        .provider
        .create_gateway(&request(&w, 80, &[&web0]))
        .await
        .unwrap_err();
    assert_eq!(e.code, "NetworkingInternalOperationError", "{e}");
    assert!(e.message.contains("boom in the LB"), "{e}");
    // The next apply finishes what the failed one started.
    let made = w
        .provider
        .create_gateway(&request(&w, 80, &[&web0]))
        .await
        .expect("a second create");
    let lb = w.lb(&made.provider_id).await.unwrap();
    assert_eq!(lb["properties"]["provisioningState"], "Succeeded");
    assert_eq!(
        pool_members(&lb),
        BTreeSet::from([nic.to_ascii_lowercase()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_nic_is_tried_again() {
    let w = World::new("busy").await;
    let nic = w.nic("n0").await;
    let web0 = node("fleet.web[0]", "/x/vm0", &nic, &json!({}));
    // ARM refuses two NIC updates while another operation holds the load balancer.
    let fault = json!({"code": "AnotherOperationInProgress", "status": 409,
        "message": "Operation PutNetworkInterfaceOperation is in progress on the load balancer",
        "type": "networkInterfaces", "method": "PUT", "times": 2, "contains": w.group});
    w.fake
        .arm(reqwest::Method::POST, "/_fault", Some(&fault))
        .await;
    let made = w
        .provider
        .create_gateway(&request(&w, 80, &[&web0]))
        .await
        .expect("the NIC joins on a later try");
    let lb = w.lb(&made.provider_id).await.unwrap();
    assert_eq!(
        pool_members(&lb),
        BTreeSet::from([nic.to_ascii_lowercase()])
    );
    let refused = w
        .fake
        .calls(&w.group)
        .await
        .into_iter()
        .filter(|c| c["method"] == "PUT" && c["code"] == "AnotherOperationInProgress")
        .count();
    assert_eq!(refused, 2, "both faults were met");
}
