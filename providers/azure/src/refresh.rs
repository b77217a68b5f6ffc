//! Refresh, batched: for each kind the state holds, one paginated list per resource group —
//! virtual machines, managed disks, load balancers, virtual networks — instead of a call per
//! resource. ARM's VM list has no tag filter, so the lists are matched to the state by ARM id
//! (case-insensitively: compute upper-cases resource groups in references) on this side; the
//! ids carry names derived from the lineage and the address ([`api::name`]), and whatever a
//! list does not hold is [`Observed::Gone`].
//!
//! What is reported is what the planner compares, in the form the executor recorded it, so
//! that an unchanged fleet shows no drift: a VM's fleet `tags` (without the ownership tags),
//! a disk's `size_gib`, `type` and `attached_to` (the address of the node whose VM holds it),
//! a load balancer's `targets` (the addresses of the nodes whose NICs are in its pool) and
//! `port`. Ids that differ from the recorded ones only in case are reported as recorded.

use crate::{AzureProvider, api, gateways, volumes};
use flotilla_core::provider::{FailureKind, Observed, ProviderError};
use flotilla_core::state::{Resource, ResourceKind, address_cmp};
use futures::StreamExt;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What `resources` look like now, one answer per resource, in order.
pub(crate) async fn refresh(
    p: &AzureProvider,
    resources: &[Resource],
) -> Result<Vec<Observed>, ProviderError> {
    if resources.is_empty() {
        return Ok(Vec::new());
    }
    let c = p.clients().await?;
    // Resource groups holding each kind, as the state's ids name them.
    let groups = |kinds: &[ResourceKind]| -> BTreeMap<String, String> {
        resources
            .iter()
            .filter(|r| kinds.contains(&r.kind) && !r.provider_id.is_empty())
            .map(|r| {
                gateways::group_and_name(&r.provider_id)
                    .map_or(c.resource_group.as_str(), |(g, _)| g)
            })
            .map(|g| (g.to_ascii_lowercase(), g.to_string()))
            .collect()
    };
    // VMs also say which node holds a disk and at which LUN.
    let vm_groups = groups(&[ResourceKind::Instance, ResourceKind::Volume]);
    let disk_groups = groups(&[ResourceKind::Volume]);
    let lb_groups = groups(&[ResourceKind::Gateway]);
    let vnet_groups = groups(&[ResourceKind::Network]);
    let (vms, disks, lbs, vnets) = futures::try_join!(
        each_group(&vm_groups, |g| list_vms(p, g)),
        each_group(&disk_groups, |g| list_disks(p, g)),
        each_group(&lb_groups, |g| list_lbs(p, g)),
        each_group(&vnet_groups, |g| list_vnets(p, g)),
    )?;
    let (vms, disks, lbs, vnets) = (by_id(vms), by_id(disks), by_id(lbs), by_id(vnets));
    let known = Known::new(resources, &vms);
    Ok(resources
        .iter()
        .map(|r| {
            let key = r.provider_id.to_ascii_lowercase();
            let found = match r.kind {
                ResourceKind::Instance => vms.get(&key),
                ResourceKind::Volume => disks.get(&key),
                ResourceKind::Gateway => lbs.get(&key),
                ResourceKind::Network => vnets.get(&key),
            };
            match found {
                Some(item) if !r.provider_id.is_empty() && !deleting(item) => {
                    Observed::Exists(match r.kind {
                        ResourceKind::Instance => instance(r, item),
                        ResourceKind::Volume => volume(r, item, &known),
                        ResourceKind::Gateway => gateway(r, item, &known),
                        ResourceKind::Network => network(r, item),
                    })
                }
                _ => Observed::Gone,
            }
        })
        .collect())
}

/// Runs `list` for every resource group and joins the items; a group that does not exist
/// holds nothing.
async fn each_group<'a, F, Fut>(
    groups: &'a BTreeMap<String, String>,
    list: F,
) -> Result<Vec<Value>, ProviderError>
where
    F: Fn(&'a str) -> Fut,
    Fut: Future<Output = Result<Vec<Value>, ProviderError>>,
{
    let mut out = Vec::new();
    for g in groups.values() {
        match list(g).await {
            Ok(items) => out.extend(items),
            Err(e) if e.kind == FailureKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Pages through a generated client's list stream, each item as JSON.
macro_rules! collect {
    ($stream:expr) => {{
        let mut stream = $stream;
        let mut out: Vec<Value> = Vec::new();
        while let Some(page) = stream.next().await {
            let page = page.map_err(api::from_sdk)?;
            for item in page.value {
                out.push(serde_json::to_value(item).map_err(|e| {
                    api::other(
                        "BadListItem",
                        format!("cannot read an item of an Azure list: {e}"),
                    )
                })?);
            }
        }
        Ok(out)
    }};
}

/// The VMs of resource group `group`.
async fn list_vms(p: &AzureProvider, group: &str) -> Result<Vec<Value>, ProviderError> {
    let c = p.clients().await?;
    collect!(
        c.compute
            .virtual_machines_client()
            .list(group, &c.subscription)
            .into_stream()
    )
}

/// The managed disks of resource group `group`.
async fn list_disks(p: &AzureProvider, group: &str) -> Result<Vec<Value>, ProviderError> {
    let c = p.clients().await?;
    collect!(
        c.compute
            .disks_client()
            // The disks client takes the subscription first.
            .list_by_resource_group(&c.subscription, group)
            .into_stream()
    )
}

/// The load balancers of resource group `group`.
async fn list_lbs(p: &AzureProvider, group: &str) -> Result<Vec<Value>, ProviderError> {
    let c = p.clients().await?;
    collect!(
        c.network
            .load_balancers_client()
            .list(group, &c.subscription)
            .into_stream()
    )
}

/// The virtual networks of resource group `group`.
async fn list_vnets(p: &AzureProvider, group: &str) -> Result<Vec<Value>, ProviderError> {
    let c = p.clients().await?;
    collect!(
        c.network
            .virtual_networks_client()
            .list(group, &c.subscription)
            .into_stream()
    )
}

/// Items by lower-cased ARM id.
fn by_id(items: Vec<Value>) -> HashMap<String, Value> {
    items
        .into_iter()
        .filter_map(|v| Some((v["id"].as_str()?.to_ascii_lowercase(), v)))
        .collect()
}

/// Whether ARM is deleting it: as good as gone.
fn deleting(item: &Value) -> bool {
    api::provisioning_state(item) == "Deleting"
}

/// What the state's nodes tell about the others: a VM's address by its id, a NIC's by its
/// id, and for each disk the VM (and LUN) that lists it as a data disk.
struct Known<'a> {
    vm_address: HashMap<String, &'a str>,
    nic_address: HashMap<String, &'a str>,
    disk_holder: HashMap<String, (String, Option<u64>)>,
}

impl<'a> Known<'a> {
    fn new(resources: &'a [Resource], vms: &HashMap<String, Value>) -> Known<'a> {
        let instances = resources
            .iter()
            .filter(|r| r.kind == ResourceKind::Instance);
        let vm_address = instances
            .clone()
            .map(|r| (r.provider_id.to_ascii_lowercase(), r.address.as_str()))
            .collect();
        let nic_address = instances
            .filter_map(|r| {
                let nic = r.attributes.get("nic_id")?.as_str()?;
                Some((nic.to_ascii_lowercase(), r.address.as_str()))
            })
            .collect();
        let mut disk_holder = HashMap::new();
        for vm in vms.values() {
            let Some(vm_id) = vm["id"].as_str() else {
                continue;
            };
            for d in vm["properties"]["storageProfile"]["dataDisks"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let Some(id) = d["managedDisk"]["id"].as_str() {
                    disk_holder.insert(
                        id.to_ascii_lowercase(),
                        (vm_id.to_string(), d["lun"].as_u64()),
                    );
                }
            }
        }
        Known {
            vm_address,
            nic_address,
            disk_holder,
        }
    }
}

/// `now` as the state recorded it when it names the same resource (ARM ids compare
/// case-insensitively), else `now`.
fn as_recorded(r: &Resource, key: &str, now: &str) -> Value {
    match r.attributes.get(key).and_then(Value::as_str) {
        Some(before) if api::same_id(before, now) => Value::from(before),
        _ => Value::from(now),
    }
}

/// The state's node with what ARM says of its VM now: fleet tags, size, priority, NIC, zone.
fn instance(r: &Resource, vm: &Value) -> Resource {
    let mut now = r.clone();
    let a = &mut now.attributes;
    let tags: serde_json::Map<String, Value> = api::user_tags(vm)
        .into_iter()
        .map(|(k, v)| (k, Value::from(v)))
        .collect();
    a.insert("tags".into(), Value::Object(tags));
    if let Some(size) = vm["properties"]["hardwareProfile"]["vmSize"].as_str() {
        a.insert("vm_size".into(), Value::from(size));
    }
    let priority = vm["properties"]["priority"].as_str().unwrap_or("Regular");
    a.insert("priority".into(), Value::from(priority));
    if let Some(nic) = vm["properties"]["networkProfile"]["networkInterfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["properties"]["primary"].as_bool() != Some(false))
        .and_then(|n| n["id"].as_str())
    {
        let nic = as_recorded(r, "nic_id", nic);
        now.attributes.insert("nic_id".into(), nic);
    }
    if let Some(zone) = vm["zones"][0].as_str() {
        now.zone = zone.to_string();
    }
    now
}

/// The state's volume with what ARM says of its disk now: size, SKU (as the recorded `type`
/// when that maps to it), and which node holds it (`attached_to`, with its `lun`). A disk held
/// by a VM the state does not know names that VM's id; a free one reports no holder.
fn volume(r: &Resource, disk: &Value, known: &Known<'_>) -> Resource {
    let mut now = r.clone();
    let a = &mut now.attributes;
    if let Some(size) = disk["properties"]["diskSizeGB"].as_u64() {
        a.insert("size_gib".into(), Value::from(size));
    }
    if let Some(sku) = disk["sku"]["name"].as_str() {
        a.insert("sku".into(), Value::from(sku));
        // `type` is what the fleet file said (`gp3`, `Premium_LRS`…): unchanged while it still
        // maps to the disk's SKU.
        let recorded = r.attributes.get("type").and_then(Value::as_str);
        let same = recorded.is_some_and(|t| volumes::sku(t).eq_ignore_ascii_case(sku));
        if !same {
            a.insert("type".into(), Value::from(sku));
        }
    }
    let id = r.provider_id.to_ascii_lowercase();
    let holder = known
        .disk_holder
        .get(&id)
        .map(|(vm, lun)| (vm.clone(), *lun))
        .or_else(|| {
            disk["managedBy"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(|vm| (vm.to_string(), None))
        });
    if let Some((vm, lun)) = holder {
        let holder = known
            .vm_address
            .get(&vm.to_ascii_lowercase())
            .map_or_else(|| Value::from(vm), |address| Value::from(*address));
        a.insert("attached_to".into(), holder);
        if let Some(lun) = lun {
            a.insert("lun".into(), Value::from(lun));
        }
    }
    if let Some(zone) = disk["zones"][0].as_str() {
        now.zone = zone.to_string();
    }
    now
}

/// The state's gateway with its load balancer's pool members as node addresses (a NIC the
/// state does not know by its id) and its rule's port. `targets` keeps the state's order when
/// the members are the same, so an unchanged gateway shows no change.
fn gateway(r: &Resource, lb: &Value, known: &Known<'_>) -> Resource {
    let mut now = r.clone();
    let members: BTreeSet<String> = gateways::members(lb, true)
        .into_iter()
        .map(|(key, nic)| {
            known
                .nic_address
                .get(&key)
                .map_or(nic, |a| (*a).to_string())
        })
        .collect();
    let stored: BTreeSet<String> = r
        .attributes
        .get("targets")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if stored != members {
        let mut sorted: Vec<String> = members.into_iter().collect();
        sorted.sort_by(|a, b| address_cmp(a, b));
        now.attributes.insert(
            "targets".into(),
            Value::Array(sorted.into_iter().map(Value::from).collect()),
        );
    }
    if let Some(port) = gateways::port(lb) {
        now.attributes.insert("port".into(), Value::from(port));
    }
    if let Some(ip) =
        lb["properties"]["frontendIPConfigurations"][0]["properties"]["publicIPAddress"]["id"]
            .as_str()
    {
        let ip = as_recorded(r, "public_ip_id", ip);
        now.attributes.insert("public_ip_id".into(), ip);
    }
    now
}

/// The state's network with its subnet as ARM shows it now.
fn network(r: &Resource, vnet: &Value) -> Resource {
    let mut now = r.clone();
    if let Some(subnet) = crate::networks::subnet_id(vnet) {
        let subnet = as_recorded(r, "subnet_id", &subnet);
        now.attributes.insert("subnet_id".into(), subnet);
    }
    now
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_core::catalog::ProviderKind;
    use serde_json::json;

    const VM: &str =
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm0";
    const NIC: &str =
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/nic0";
    const DISK: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d0";

    fn recorded(address: &str, kind: ResourceKind, id: &str, attributes: Value) -> Resource {
        Resource {
            address: address.into(),
            kind,
            provider: ProviderKind::Azure,
            provider_id: id.into(),
            region: "eastus".into(),
            zone: String::new(),
            offer: None,
            attributes: serde_json::from_value(attributes).unwrap(),
            dependencies: Vec::new(),
        }
    }

    fn node() -> Resource {
        recorded(
            "fleet.web[0]",
            ResourceKind::Instance,
            VM,
            json!({"nic_id": NIC, "tags": {"team": "ml"}, "priority": "Spot"}),
        )
    }

    /// The VM as compute lists it: resource group upper-cased in references.
    fn vm() -> Value {
        json!({"id": VM, "zones": ["2"],
            "tags": {"team": "ml", api::LINEAGE_TAG: "l", api::ADDRESS_TAG: "fleet.web[0]"},
            "properties": {"priority": "Spot", "hardwareProfile": {"vmSize": "Standard_NC12s_v3"},
                "networkProfile": {"networkInterfaces": [{"id": NIC.replace("/rg/", "/RG/")}]},
                "storageProfile": {"dataDisks": [
                    {"lun": 3, "managedDisk": {"id": DISK.replace("/rg/", "/RG/")}}]}}})
    }

    #[test]
    fn an_unchanged_node_reads_as_recorded() {
        let now = instance(&node(), &vm());
        assert_eq!(now.attributes["tags"], json!({"team": "ml"}));
        assert_eq!(now.attributes["nic_id"], NIC, "recorded case kept");
        assert_eq!(now.attributes["priority"], "Spot");
        assert_eq!(now.attributes["vm_size"], "Standard_NC12s_v3");
        assert_eq!(now.zone, "2");
        let mut regular = vm();
        regular["properties"]
            .as_object_mut()
            .unwrap()
            .remove("priority");
        assert_eq!(
            instance(&node(), &regular).attributes["priority"],
            "Regular"
        );
    }

    #[test]
    fn a_disk_names_the_node_holding_it() {
        let nodes = [node()];
        let vms = by_id(vec![vm()]);
        let known = Known::new(&nodes, &vms);
        let v = recorded(
            "volume.ckpt[0]",
            ResourceKind::Volume,
            DISK,
            json!({"size_gib": 100, "type": "gp3", "attached_to": "fleet.web[0]"}),
        );
        let disk = json!({"id": DISK, "sku": {"name": "Premium_LRS"},
            "properties": {"diskSizeGB": 200}});
        let now = volume(&v, &disk, &known);
        assert_eq!(now.attributes["attached_to"], "fleet.web[0]");
        assert_eq!(now.attributes["lun"], 3);
        assert_eq!(now.attributes["size_gib"], 200);
        assert_eq!(
            now.attributes["type"], "gp3",
            "gp3 still maps to Premium_LRS"
        );
        let ssd = json!({"id": DISK, "sku": {"name": "StandardSSD_LRS"}, "properties": {}});
        assert_eq!(
            volume(&v, &ssd, &known).attributes["type"],
            "StandardSSD_LRS"
        );

        // Held by a VM the state does not know: that VM's id. Free: no holder reported.
        let none = Known::new(&[], &HashMap::new());
        let elsewhere = json!({"id": DISK, "managedBy": "/x/virtualMachines/other"});
        assert_eq!(
            volume(&v, &elsewhere, &none).attributes["attached_to"],
            "/x/virtualMachines/other"
        );
        let free = volume(&v, &json!({"id": DISK}), &none);
        assert_eq!(
            free.attributes["attached_to"], "fleet.web[0]",
            "left as recorded"
        );
    }

    #[test]
    fn a_gateway_reports_its_members_as_addresses() {
        let nodes = [node()];
        let known = Known::new(&nodes, &HashMap::new());
        let lb_id =
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/loadBalancers/lb";
        let lb = |members: &[&str]| {
            json!({"id": lb_id, "properties": {
                "loadBalancingRules": [{"name": "rule", "properties": {"frontendPort": 80}}],
                "backendAddressPools": [{"name": gateways::POOL, "properties": {
                    "backendIPConfigurations": members.iter()
                        .map(|m| json!({"id": format!("{m}/ipConfigurations/ipconfig1")}))
                        .collect::<Vec<_>>()}}]}})
        };
        let g = recorded(
            "gateway.api",
            ResourceKind::Gateway,
            lb_id,
            json!({"targets": ["fleet.web[0]"], "port": 80}),
        );
        let now = gateway(&g, &lb(&[&NIC.to_ascii_uppercase()]), &known);
        assert_eq!(now.attributes["targets"], json!(["fleet.web[0]"]));
        assert_eq!(now.attributes["port"], 80);
        // A NIC of no node of the state shows by its id; an empty pool has no targets.
        let stranger = "/x/networkInterfaces/zz";
        let now = gateway(&g, &lb(&[NIC, stranger]), &known);
        assert_eq!(now.attributes["targets"], json!([stranger, "fleet.web[0]"]));
        assert_eq!(
            gateway(&g, &lb(&[]), &known).attributes["targets"],
            json!([])
        );
    }
}
