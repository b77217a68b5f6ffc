//! The Azure Resource Manager fake (`tests/arm/server.py`), as the tests see it: where it
//! listens (`FLOTILLA_AZURE_ENDPOINT`, exported by `scripts/test`), its control endpoints
//! (`/_fault`, `/_calls`, `/_state`, `/_config`) and readers of what it holds for one
//! lineage, over the harness's tiny HTTP/1.1 client ([`crate::http`]).
//!
//! Tests run in parallel against one fake and never reset it. Each keeps to its own: its own
//! resource group ([`resource_group`]), faults scoped by `contains` to its lineage (the
//! `flotilla-lineage` tag is in the body of every PUT flotilla sends) or to its resource
//! names, and readers that select what carries its lineage tag or its name prefix.

use crate::http::{self, encode};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The subscription every Azure test fleet uses (any GUID: the fake checks the shape).
pub const SUBSCRIPTION: &str = "5b1f0c2a-7e3d-4c19-9a61-0f1a2b3c4d5e";

/// An SSH public key for the fleets' VMs (the fake checks its shape, nothing more).
pub const SSH_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJmvDTuVJl4ZY1zWu9wE6dE0W7yCkzV4uX0S3Vb0h7aQ \
     flotilla-test";

/// The api-version the fake accepts on virtual machines (what `azure_mgmt_compute` sends).
const COMPUTE_API: &str = "2024-07-01";

/// The api-version the fake accepts on network resources (what `azure_mgmt_network` sends).
const NETWORK_API: &str = "2024-03-01";

/// Why a test cannot run: said loudly, never skipped.
const NOT_RUNNING: &str = "the Azure Resource Manager fake is not running: run these tests with \
     `scripts/test` (it starts tests/arm/server.py and exports FLOTILLA_AZURE_ENDPOINT), or start \
     it yourself (`python3 tests/arm/server.py --port 0 --port-file FILE`) and export \
     FLOTILLA_AZURE_ENDPOINT=http://127.0.0.1:PORT";

/// The running fake.
#[derive(Debug, Clone)]
pub struct Arm {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    host: String,
}

/// The resource group a test with `lineage` keeps its resources in: its own, so that list
/// calls and leftovers of parallel tests never mix.
pub fn resource_group(lineage: &str) -> String {
    format!("flotilla-test-{}", short(lineage))
}

/// The first 8 characters of a lineage, as ARM names made for it start (`fl-{short}-`).
pub fn short(lineage: &str) -> String {
    lineage
        .chars()
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The prefix of every ARM name flotilla derives for `lineage` (`fl-1a2b3c4d-`).
pub fn name_prefix(lineage: &str) -> String {
    format!("fl-{}-", short(lineage))
}

impl Arm {
    /// The fake `scripts/test` started. Panics, saying what to do, when it is not there.
    pub fn get() -> Arm {
        let endpoint = std::env::var("FLOTILLA_AZURE_ENDPOINT").unwrap_or_default();
        let Some(host) = endpoint
            .strip_prefix("http://")
            .map(|h| h.trim_end_matches('/').to_string())
        else {
            panic!("{NOT_RUNNING} (FLOTILLA_AZURE_ENDPOINT is {endpoint:?})");
        };
        let arm = Arm { endpoint, host };
        match arm.request("GET", "/_health", None) {
            Ok((200, _)) => arm,
            Ok((status, body)) => panic!(
                "{NOT_RUNNING}: {} answered /_health with {status}: {body}",
                arm.endpoint
            ),
            Err(e) => panic!("{NOT_RUNNING}: cannot reach {}: {e}", arm.endpoint),
        }
    }

    /// Injects a fault given as the fake's JSON (`{"code": "AllocationFailed", "size": …,
    /// "contains": LINEAGE, "times": 1}`; see tests/arm/server.py). Returns its id. A spec
    /// without `contains` would hit parallel tests too: the harness refuses it.
    pub fn fault(&self, spec: &Value) -> String {
        assert!(
            spec.get("contains").and_then(Value::as_str).is_some()
                || spec.get("type").and_then(Value::as_str) == Some("operations"),
            "scope the fault to the test with `contains` (its lineage or a name): {spec}"
        );
        let v = self.json("POST", "/_fault", Some(spec));
        let id = v["id"].as_str().unwrap_or_default().to_string();
        assert!(!id.is_empty(), "the fake took no fault: {v}");
        id
    }

    /// Removes a fault.
    pub fn clear_fault(&self, id: &str) {
        self.json("DELETE", &format!("/_fault/{id}"), None);
    }

    /// How often the fault with `id` has fired.
    pub fn fault_hits(&self, id: &str) -> u64 {
        self.json("GET", "/_fault", None)
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["id"] == id)
            .and_then(|f| f["hits"].as_u64())
            .unwrap_or(0)
    }

    /// The ARM calls the fake saw (the last 20,000), oldest first: `method` (`PUT`; empty
    /// for any), `kind` (the resource type, `virtualMachines`; empty for any; list calls
    /// have none) and whose path or body contain `contains` (empty for any). Each has
    /// `method`, `path`, `query`, `status`, `code`, `type`, `name`, `body`.
    pub fn calls(&self, method: &str, kind: &str, contains: &str) -> Vec<Value> {
        let mut query = Vec::new();
        if !method.is_empty() {
            query.push(format!("method={}", encode(method)));
        }
        if !kind.is_empty() {
            query.push(format!("type={}", encode(kind)));
        }
        if !contains.is_empty() {
            query.push(format!("contains={}", encode(contains)));
        }
        let path = format!("/_calls?{}", query.join("&"));
        self.json("GET", &path, None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The list calls (`GET …/resourceGroups/{group}/providers/{collection}`, every page) the
    /// fake saw for one collection of one resource group: `Microsoft.Compute/virtualMachines`.
    pub fn list_calls(&self, group: &str, collection: &str) -> usize {
        let suffix = format!(
            "/resourcegroups/{}/providers/{}",
            group.to_ascii_lowercase(),
            collection.to_ascii_lowercase()
        );
        self.calls("GET", "", group)
            .iter()
            .filter(|c| {
                c["path"]
                    .as_str()
                    .unwrap_or_default()
                    .trim_end_matches('/')
                    .to_ascii_lowercase()
                    .ends_with(&suffix)
            })
            .count()
    }

    /// The calls that read or wrote one resource by name (`GET/PUT/PATCH/DELETE` of
    /// `…/{kind}/{name}` and its children), as `(method, path)`.
    pub fn calls_on(&self, kind: &str, name: &str) -> Vec<(String, String)> {
        self.calls("", kind, name)
            .iter()
            .filter(|c| {
                c["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .map(|c| {
                (
                    c["method"].as_str().unwrap_or_default().to_string(),
                    c["path"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// The fake's settings (`polls`, `retry_after`, `page_size`, …).
    pub fn config(&self) -> Value {
        self.json("GET", "/_config", None)
    }

    /// Every resource the fake holds as GET shows it (VMs with their instance view), or only
    /// those of `kind` (`virtualMachines`, `disks`, `networkInterfaces`, `virtualNetworks`,
    /// `subnets`, `loadBalancers`, `publicIPAddresses`, `proximityPlacementGroups`; empty for
    /// all).
    pub fn state(&self, kind: &str) -> Vec<Value> {
        let path = if kind.is_empty() {
            "/_state".to_string()
        } else {
            format!("/_state?type={}", encode(kind))
        };
        self.json("GET", &path, None)["resources"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The resource groups the fake holds, as `/_state` shows them.
    pub fn resource_groups(&self) -> Vec<Value> {
        // A type no resource has keeps the answer to the groups.
        self.json("GET", "/_state?type=none", None)["resourceGroups"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The resources of `kind` tagged with `lineage` (`flotilla-lineage`), in any state.
    pub fn owned(&self, kind: &str, lineage: &str) -> Vec<Value> {
        self.state(kind)
            .into_iter()
            .filter(|r| tag(r, "flotilla-lineage").as_deref() == Some(lineage))
            .collect()
    }

    /// The resource with ARM id `id` (compared case-insensitively, as ARM ids are), if the
    /// fake holds it.
    pub fn by_id(&self, id: &str) -> Option<Value> {
        self.state("")
            .into_iter()
            .find(|r| r["id"].as_str().is_some_and(|i| i.eq_ignore_ascii_case(id)))
    }

    /// Every VM tagged with `lineage`, duplicates included.
    pub fn all_vms(&self, lineage: &str) -> Vec<Value> {
        self.owned("virtualMachines", lineage)
    }

    /// The VMs tagged with `lineage`, by their `flotilla-address` tag; two for one address
    /// fail the test (a duplicate).
    pub fn vms(&self, lineage: &str) -> BTreeMap<String, Value> {
        by_address(self.all_vms(lineage), "VMs")
    }

    /// The NICs tagged with `lineage`, by address; two for one address fail the test.
    pub fn nics(&self, lineage: &str) -> BTreeMap<String, Value> {
        by_address(self.owned("networkInterfaces", lineage), "NICs")
    }

    /// The managed disks tagged with `lineage` (the fleets' volumes; OS disks carry no tags:
    /// see [`Arm::named`]), by address; two for one address fail the test.
    pub fn disks(&self, lineage: &str) -> BTreeMap<String, Value> {
        by_address(self.owned("disks", lineage), "disks")
    }

    /// The virtual networks tagged with `lineage`.
    pub fn vnets(&self, lineage: &str) -> Vec<Value> {
        self.owned("virtualNetworks", lineage)
    }

    /// The load balancers tagged with `lineage`.
    pub fn load_balancers(&self, lineage: &str) -> Vec<Value> {
        self.owned("loadBalancers", lineage)
    }

    /// The public IP addresses tagged with `lineage`.
    pub fn public_ips(&self, lineage: &str) -> Vec<Value> {
        self.owned("publicIPAddresses", lineage)
    }

    /// The resources of `kind` whose name flotilla derives for `lineage` ([`name_prefix`], or
    /// a cluster fleet's placement group), tagged or not: OS disks, subnets and anything left
    /// half-made.
    pub fn named(&self, kind: &str, lineage: &str) -> Vec<Value> {
        self.state(kind)
            .into_iter()
            .filter(|r| named_for(r, lineage))
            .collect()
    }

    /// The ids of the NIC ip configurations in the backend pools of `lb`, sorted and
    /// lower-cased (ARM ids compare case-insensitively).
    pub fn pool_members(lb: &Value) -> Vec<String> {
        let mut out: Vec<String> = lb["properties"]["backendAddressPools"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|p| {
                p["properties"]["backendIPConfigurations"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|c| c["id"].as_str().map(str::to_ascii_lowercase))
            .collect();
        out.sort();
        out
    }

    /// Everything the fake still holds for `lineage` — tagged with it, or named with its
    /// prefix (networks, subnets and OS disks included) — as `type name`, sorted.
    pub fn leftovers(&self, lineage: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .state("")
            .into_iter()
            .filter(|r| {
                tag(r, "flotilla-lineage").as_deref() == Some(lineage) || named_for(r, lineage)
            })
            .map(|r| {
                format!(
                    "{} {}",
                    r["type"].as_str().unwrap_or("?"),
                    r["id"].as_str().unwrap_or("?")
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Sets tags on a VM through ARM (a PATCH, as someone outside flotilla would), merged
    /// over the ones it has, and waits until the fake has applied them.
    pub fn retag_vm(&self, vm: &Value, tags: &[(&str, &str)]) {
        let mut all = vm["tags"].as_object().cloned().unwrap_or_default();
        for (k, v) in tags {
            all.insert((*k).to_string(), Value::from(*v));
        }
        let id = vm["id"].as_str().expect("the VM's id");
        self.arm_call("PATCH", id, &json!({ "tags": all }).to_string());
        // The update is an operation: reads of the VM (through ARM) advance it to its end.
        for _ in 0..100 {
            let (_, body) = self.arm_call("GET", id, "");
            let now: Value = serde_json::from_str(&body).unwrap_or_default();
            if now["properties"]["provisioningState"] == "Succeeded"
                && tags.iter().all(|(k, v)| now["tags"][*k] == *v)
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("the fake never finished updating {id}'s tags");
    }

    /// Deletes a VM through ARM, as someone outside flotilla would, and waits until it is
    /// gone (its NIC and disks stay or go as their `deleteOption` says, as in Azure).
    pub fn delete(&self, vm: &Value) {
        let id = vm["id"].as_str().expect("the VM's id");
        self.arm_call("DELETE", id, "");
        for _ in 0..100 {
            // Reads through ARM advance the delete operation; 404 once it is done.
            let (status, _) = self.arm_call("GET", id, "");
            if status == 404 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("the fake never finished deleting {id}");
    }

    /// Takes a NIC out of every load balancer backend pool, through ARM (a PUT of the NIC
    /// as GET shows it, without the pools), as someone outside flotilla would, and waits until
    /// the fake has applied it.
    pub fn leave_pools(&self, nic: &Value) {
        let id = nic["id"].as_str().expect("the NIC's id");
        let (_, body) = self.arm_call("GET", id, "");
        let mut now: Value = serde_json::from_str(&body).expect("the NIC as JSON");
        for ipc in now["properties"]["ipConfigurations"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            if let Some(props) = ipc["properties"].as_object_mut() {
                props.remove("loadBalancerBackendAddressPools");
            }
        }
        self.arm_call("PUT", id, &now.to_string());
        for _ in 0..100 {
            let (_, body) = self.arm_call("GET", id, "");
            let now: Value = serde_json::from_str(&body).unwrap_or_default();
            let pooled = now["properties"]["ipConfigurations"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    c["properties"]["loadBalancerBackendAddressPools"]
                        .as_array()
                        .is_some_and(|p| !p.is_empty())
                });
            if now["properties"]["provisioningState"] == "Succeeded" && !pooled {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("the fake never finished updating {id}");
    }

    /// Evicts a Spot VM as Azure would (`simulateEviction`); with `evictionPolicy = Delete`
    /// the VM is gone at once.
    pub fn evict(&self, vm: &Value) {
        let id = vm["id"].as_str().expect("the VM's id");
        self.arm_call("POST", &format!("{id}/simulateEviction"), "");
    }

    /// One ARM call on the resource `id` (with a bearer token and the api-version the fake
    /// takes for its type); panics on a failure other than 404.
    fn arm_call(&self, method: &str, id: &str, body: &str) -> (u16, String) {
        let api = if id.to_ascii_lowercase().contains("/microsoft.network/") {
            NETWORK_API
        } else {
            COMPUTE_API
        };
        let path = format!("{id}?api-version={api}");
        let (status, out) = http::request(
            &self.host,
            method,
            &path,
            &[
                ("Authorization", "Bearer flotilla-test"),
                ("Content-Type", "application/json"),
            ],
            body,
        )
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert!(
            (200..300).contains(&status) || status == 404,
            "{method} {path}: {status}: {out}"
        );
        (status, out)
    }

    fn json(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let body = body.map(Value::to_string);
        let (status, out) = self
            .request(method, path, body.as_deref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(status, 200, "{method} {path}: {out}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{method} {path}: {e}: {out}"))
    }

    /// One HTTP/1.1 request to the fake; (status, body).
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), String> {
        http::json(&self.host, method, path, body)
    }
}

/// Whether a resource's name is one flotilla derives for `lineage`: [`name_prefix`], or the
/// executor's `flotilla-{short}-{fleet}` of a cluster fleet's placement group.
fn named_for(resource: &Value, lineage: &str) -> bool {
    let name = resource["name"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    name.starts_with(&name_prefix(lineage))
        || name.starts_with(&format!("flotilla-{}-", short(lineage)))
}

/// The value of a resource's tag `key`.
pub fn tag(resource: &Value, key: &str) -> Option<String> {
    resource["tags"][key].as_str().map(str::to_string)
}

/// The last segment of an ARM id (the resource's name).
pub fn last(id: &Value) -> String {
    id.as_str()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Whether two ARM ids name the same resource (ARM ids compare case-insensitively; Compute
/// upper-cases resource groups in references).
pub fn same_id(a: &Value, b: &Value) -> bool {
    match (a.as_str(), b.as_str()) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

fn by_address(resources: Vec<Value>, what: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for r in resources {
        let address = tag(&r, "flotilla-address")
            .unwrap_or_else(|| panic!("{what}: no flotilla-address tag on {}", r["id"]));
        if let Some(other) = out.insert(address.clone(), r) {
            panic!("two {what} for {address}: {}", other["id"]);
        }
    }
    out
}
