//! Virtual machines: a NIC in the region's subnet, then the VM (the offer's size, Spot with
//! `evictionPolicy = Delete`, the admin user's SSH key, a proximity placement group for a
//! cluster fleet, the node's volumes as `dataDisks`), waited on through
//! `Azure-AsyncOperation`. Retagged and given missing volumes in place; stripped of its data
//! disks before it is deleted, so they survive for the replacement; found by name.
//!
//! A capacity failure (`AllocationFailed`, …) leaves a `Failed` VM behind in Azure; it is
//! deleted with its NIC before the error goes back, so the executor's next offer starts from
//! nothing at these names.

use crate::api;
use crate::{AzureProvider, networks, volumes};
use flotilla_core::catalog::{Offer, ProviderKind};
use flotilla_core::provider::{FailureKind, InstanceRequest, Ownership, ProviderError};
use flotilla_core::state::{Resource, ResourceKind, network_address};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The longest wait between two GETs of a VM that `find` sees still being created.
const FIND_POLL_CAP: std::time::Duration = std::time::Duration::from_secs(2);
/// The ARM type of proximity placement groups.
const PPG_TYPE: &str = "Microsoft.Compute/proximityPlacementGroups";

/// What a VM's PUT body is made of, apart from the request.
#[derive(Debug, Clone)]
pub(crate) struct VmSpec<'a> {
    /// The VM's name (also its computer name).
    pub(crate) name: &'a str,
    /// The NIC's ARM id.
    pub(crate) nic_id: &'a str,
    /// The proximity placement group's ARM id, for a cluster fleet.
    pub(crate) ppg_id: Option<&'a str>,
    /// The Azure zone, if pinned.
    pub(crate) zone: Option<&'a str>,
    /// The image reference JSON.
    pub(crate) image: &'a Value,
    /// Admin user.
    pub(crate) admin_user: &'a str,
    /// The admin user's OpenSSH public key.
    pub(crate) ssh_key: &'a str,
}

/// The PUT body of a VM for `request` (`../shared/api/arm.md` §2).
pub(crate) fn body(request: &InstanceRequest, spec: &VmSpec<'_>) -> Value {
    let offer = &request.offer;
    let data_disks: Vec<Value> = request
        .volumes
        .iter()
        .enumerate()
        .map(|(lun, v)| data_disk(lun as u64, &v.provider_id))
        .collect();
    let mut properties = json!({
        "hardwareProfile": {"vmSize": offer.instance_type},
        "storageProfile": {
            "imageReference": spec.image,
            "osDisk": {
                "name": format!("{}-os", spec.name),
                "createOption": "FromImage",
                "caching": "ReadWrite",
                "deleteOption": "Delete",
                "managedDisk": {"storageAccountType": volumes::DEFAULT_SKU},
                "diskSizeGB": request.disk_gib,
            },
            "dataDisks": data_disks,
        },
        "osProfile": {
            "computerName": spec.name,
            "adminUsername": spec.admin_user,
            "linuxConfiguration": {
                "disablePasswordAuthentication": true,
                "ssh": {"publicKeys": [{
                    "path": format!("/home/{}/.ssh/authorized_keys", spec.admin_user),
                    "keyData": spec.ssh_key,
                }]},
            },
        },
        "networkProfile": {"networkInterfaces": [{
            "id": spec.nic_id,
            "properties": {"primary": true, "deleteOption": "Delete"},
        }]},
    });
    if offer.spot {
        properties["priority"] = json!("Spot");
        properties["evictionPolicy"] = json!("Delete");
        // The fleet's cap, else -1: up to the on-demand price, never evicted for price.
        let max_price = request.max_price.filter(|p| *p > 0.0).unwrap_or(-1.0);
        properties["billingProfile"] = json!({ "maxPrice": max_price });
    } else {
        properties["priority"] = json!("Regular");
    }
    if let Some(ppg) = spec.ppg_id {
        properties["proximityPlacementGroup"] = json!({ "id": ppg });
    }
    let mut b = json!({
        "location": offer.region,
        "tags": api::tags(&request.owner, &request.tags),
        "properties": properties,
    });
    if let Some(z) = spec.zone {
        b["zones"] = json!([z]);
    }
    b
}

/// A `dataDisks` entry that attaches the managed disk `disk_id` at `lun`.
fn data_disk(lun: u64, disk_id: &str) -> Value {
    json!({"lun": lun, "createOption": "Attach", "managedDisk": {"id": disk_id}})
}

/// The PUT body of the VM's NIC: one dynamic private IP in `subnet_id`, no public IP.
pub(crate) fn nic_body(owner: &Ownership, region: &str, subnet_id: &str) -> Value {
    json!({
        "location": region,
        "tags": api::tags(owner, &BTreeMap::new()),
        "properties": {"ipConfigurations": [{
            "name": "ipconfig1",
            "properties": {
                "subnet": {"id": subnet_id},
                "privateIPAllocationMethod": "Dynamic",
                "primary": true,
            },
        }]},
    })
}

/// A proximity placement group's name from the executor's (`flotilla-<lineage>-<fleet>`):
/// ARM allows letters, digits, `_`, `.` and `-`, at most 80.
pub(crate) fn ppg_name(group: &str) -> String {
    let s: String = group
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(80)
        .collect();
    s.trim_end_matches(['-', '.']).to_string()
}

/// The subnet a VM's NIC goes in: the region's network from the request (made by the
/// executor), else the network this provider ensures itself (an executor that does not make
/// networks yet).
async fn subnet(p: &AzureProvider, request: &InstanceRequest) -> Result<String, ProviderError> {
    let network = match &request.network {
        Some(n) => n.clone(),
        None => {
            let owner = Ownership {
                lineage: request.owner.lineage.clone(),
                address: network_address(ProviderKind::Azure, &request.offer.region),
                generation: 0,
            };
            networks::ensure(p, &owner, &request.offer.region).await?
        }
    };
    network.attributes["subnet_id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            api::other(
                "NoSubnet",
                format!("network {} records no subnet_id", network.address),
            )
        })
}

/// Makes the VM (and its NIC, and its placement group) and waits until it runs.
pub(crate) async fn create(
    p: &AzureProvider,
    request: &InstanceRequest,
) -> Result<Resource, ProviderError> {
    let offer = &request.offer;
    if offer.provider != ProviderKind::Azure {
        return Err(api::other(
            "WrongProvider",
            format!("offer is for {}, not azure", offer.provider),
        ));
    }
    let ssh_key = p.ssh_key()?.to_string();
    let region = offer.region.as_str();
    let c = p.ready(region).await?;
    let owner = &request.owner;
    let name = api::name(owner, "");
    let vms = c.compute.virtual_machines_client();
    let what = format!("VM {name}");

    // A VM at this name: an earlier create of this node. Adopt it when it ran; clear it
    // when it failed, so this attempt starts clean.
    if let Some(existing) =
        api::get(vms.get(&c.resource_group, &name, &c.subscription).send()).await?
    {
        api::adoptable(&existing, owner, "VM")?;
        match api::provisioning_state(&existing) {
            "Succeeded" => {
                let r = described(p, &existing, &owner.address, Some(offer.clone())).await?;
                return update(p, &r, request).await;
            }
            "Failed" => clear(p, &name, &existing).await?,
            _ => {}
        }
    }

    let subnet_id = subnet(p, request).await?;
    let nic_name = api::name(owner, "-nic");
    let nics = c.network.network_interfaces_client();
    let nic_params: azure_mgmt_network::models::NetworkInterface =
        api::model(nic_body(owner, region, &subnet_id))?;
    let nic = api::send_wait(
        p,
        nics.create_or_update(&c.resource_group, &nic_name, nic_params, &c.subscription)
            .send(),
        &format!("NIC {nic_name}"),
    )
    .await?;
    let nic_id = nic.body["id"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| c.id("Microsoft.Network/networkInterfaces", &nic_name));

    let zone = volumes::zone(request.zone.as_deref())
        .or_else(|| {
            request
                .volumes
                .iter()
                .find_map(|v| volumes::zone(Some(&v.zone)))
        })
        .or_else(|| volumes::zone(Some(&offer.zone)));
    let mut tries = 0;
    let made = loop {
        tries += 1;
        let ppg_id = match &request.placement_group {
            Some(group) => Some(placement_group(p, request, group).await?),
            None => None,
        };
        let spec = VmSpec {
            name: &name,
            nic_id: &nic_id,
            ppg_id: ppg_id.as_deref(),
            zone: zone.as_deref(),
            image: &p.image,
            admin_user: p.admin_user(),
            ssh_key: &ssh_key,
        };
        let params: azure_mgmt_compute::models::VirtualMachine = api::model(body(request, &spec))?;
        let made = api::send_wait(
            p,
            vms.create_or_update(&c.resource_group, &name, params, &c.subscription)
                .send(),
            &what,
        )
        .await;
        match made {
            // The fleet's last VM of a replace deleted the group between our PUT of it and
            // this VM's: make it again.
            Err(e)
                if ppg_id.is_some()
                    && e.kind == FailureKind::NotFound
                    && e.message.to_ascii_lowercase().contains("placement group")
                    && tries < 3 => {}
            other => break other,
        }
    };
    match made {
        // Throttled: the VM was not made, and the executor retries this same create (whose
        // NIC PUT is then an update); more calls now would only deepen the throttling.
        Err(e) if e.kind == FailureKind::Throttled => return Err(e),
        Err(e) => return Err(cleaned(p, &name, &nic_name, e).await),
        Ok(_) => {}
    }
    let vm = api::get(vms.get(&c.resource_group, &name, &c.subscription).send())
        .await?
        .ok_or_else(|| crate::gone(&what))?;
    if api::provisioning_state(&vm) != "Succeeded" {
        let e = ProviderError::new(
            FailureKind::Other,
            "ProvisioningFailed",
            format!(
                "{what} ended in provisioningState `{}`",
                api::provisioning_state(&vm)
            ),
        );
        return Err(cleaned(p, &name, &nic_name, e).await);
    }
    described(p, &vm, &owner.address, Some(offer.clone())).await
}

/// `e`, after deleting what the failed create left at these names (the VM ARM keeps in
/// `Failed`, the NIC made for it), so the next offer starts from nothing. The create's error
/// is what matters; a failed cleanup is only added to its message.
async fn cleaned(p: &AzureProvider, name: &str, nic: &str, e: ProviderError) -> ProviderError {
    let mut e = e;
    if let Err(cleanup) = clear_names(p, name, nic).await {
        e.message = format!(
            "{} (and removing what the failed create left failed: {cleanup})",
            e.message
        );
    }
    e
}

/// Makes (or reuses) the cluster fleet's proximity placement group in the offer's region;
/// returns its id. Its name is the executor's group name and the region (a group cannot move,
/// and a cluster fleet that fails over to another region needs one there). Every node of the
/// fleet PUTs the same body, so the PUT is idempotent.
async fn placement_group(
    p: &AzureProvider,
    request: &InstanceRequest,
    group: &str,
) -> Result<String, ProviderError> {
    let c = p.clients().await?;
    let name = ppg_name(&format!("{group}-{}", request.offer.region));
    let fleet_address = request
        .owner
        .address
        .split('[')
        .next()
        .unwrap_or_default()
        .to_string();
    let owner = Ownership {
        lineage: request.owner.lineage.clone(),
        address: fleet_address,
        generation: 0,
    };
    let ppgs = c.compute.proximity_placement_groups_client();
    if let Some(existing) =
        api::get(ppgs.get(&c.resource_group, &name, &c.subscription).send()).await?
    {
        api::adoptable(&existing, &owner, "proximity placement group")?;
        if existing["location"]
            .as_str()
            .is_some_and(|l| l.eq_ignore_ascii_case(&request.offer.region))
        {
            return Ok(existing["id"]
                .as_str()
                .map_or_else(|| c.id(PPG_TYPE, &name), str::to_string));
        }
    }
    let b = json!({
        "location": request.offer.region,
        "tags": api::tags(&owner, &BTreeMap::new()),
        "properties": {"proximityPlacementGroupType": "Standard"},
    });
    let params: azure_mgmt_compute::models::ProximityPlacementGroup = api::model(b)?;
    let sent = api::send_wait(
        p,
        ppgs.create_or_update(&c.resource_group, &name, params, &c.subscription)
            .send(),
        &format!("proximity placement group {name}"),
    )
    .await?;
    Ok(sent.body["id"]
        .as_str()
        .map_or_else(|| c.id(PPG_TYPE, &name), str::to_string))
}

/// Deletes what a failed create left at the VM's name (the `Failed` VM, whose NIC and OS
/// disk go with it) and the NIC at its own name.
async fn clear(p: &AzureProvider, name: &str, vm: &Value) -> Result<(), ProviderError> {
    let nic = vm["properties"]["networkProfile"]["networkInterfaces"][0]["id"]
        .as_str()
        .map(|id| api::last(id).to_string());
    delete_vm(p, name).await?;
    if let Some(nic) = nic {
        delete_nic(p, &nic).await?;
    }
    Ok(())
}

/// Deletes the VM `name` and the NIC `nic`, each only if there.
async fn clear_names(p: &AzureProvider, name: &str, nic: &str) -> Result<(), ProviderError> {
    delete_vm(p, name).await?;
    delete_nic(p, nic).await
}

/// Deletes the VM `name` and waits; gone already counts as deleted.
async fn delete_vm(p: &AzureProvider, name: &str) -> Result<(), ProviderError> {
    let c = p.clients().await?;
    api::delete(
        p,
        c.compute
            .virtual_machines_client()
            .delete(&c.resource_group, name, &c.subscription)
            .send(),
        &format!("VM {name}"),
    )
    .await
}

/// Deletes the NIC `name` and waits. ARM keeps a deleted VM's NIC reserved for a while
/// (`NicReservedForAnotherVm`, 180 s in Azure): that is retried with backoff up to the wait
/// timeout.
async fn delete_nic(p: &AzureProvider, name: &str) -> Result<(), ProviderError> {
    let c = p.clients().await?;
    let deadline = tokio::time::Instant::now() + p.options.wait_timeout;
    let mut delay = p
        .options
        .poll_interval
        .max(std::time::Duration::from_secs(1));
    loop {
        let done = api::delete(
            p,
            c.network
                .network_interfaces_client()
                .delete(&c.resource_group, name, &c.subscription)
                .send(),
            &format!("NIC {name}"),
        )
        .await;
        match done {
            Err(e)
                if e.code == "NicReservedForAnotherVm"
                    && tokio::time::Instant::now() + delay < deadline =>
            {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(30));
            }
            other => return other,
        }
    }
}

/// Brings the VM's tags to the request's and attaches those of `request.volumes` it does not
/// have yet, in one PATCH; returns the VM as state records it.
pub(crate) async fn update(
    p: &AzureProvider,
    instance: &Resource,
    request: &InstanceRequest,
) -> Result<Resource, ProviderError> {
    let c = p.clients().await?;
    let name = api::last(&instance.provider_id).to_string();
    let vms = c.compute.virtual_machines_client();
    let what = format!("VM {name}");
    let vm = api::get(vms.get(&c.resource_group, &name, &c.subscription).send())
        .await?
        .ok_or_else(|| crate::gone(&what))?;
    let want_tags = api::tags(&request.owner, &request.tags);
    let mut patch = json!({});
    if vm["tags"] != want_tags {
        patch["tags"] = want_tags;
    }
    if let Some(disks) = with_volumes(&vm, &request.volumes) {
        patch["properties"] = json!({"storageProfile": {"dataDisks": disks}});
    }
    if patch.as_object().is_some_and(|o| o.is_empty()) {
        return described(p, &vm, &instance.address, instance.offer.clone()).await;
    }
    let params: azure_mgmt_compute::models::VirtualMachineUpdate = api::model(patch)?;
    api::send_wait(
        p,
        vms.update(&c.resource_group, &name, params, &c.subscription)
            .send(),
        &what,
    )
    .await?;
    let vm = api::get(vms.get(&c.resource_group, &name, &c.subscription).send())
        .await?
        .ok_or_else(|| crate::gone(&what))?;
    described(p, &vm, &instance.address, instance.offer.clone()).await
}

/// The VM's `dataDisks` with `volumes` it lacks added at free LUNs, as attach entries; `None`
/// when it has them all.
pub(crate) fn with_volumes(vm: &Value, volumes: &[Resource]) -> Option<Vec<Value>> {
    let current: Vec<(u64, String)> = vm["properties"]["storageProfile"]["dataDisks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| {
            Some((
                d["lun"].as_u64()?,
                d["managedDisk"]["id"].as_str()?.to_string(),
            ))
        })
        .collect();
    let missing: Vec<&Resource> = volumes
        .iter()
        .filter(|v| {
            !current
                .iter()
                .any(|(_, id)| api::same_id(id, &v.provider_id))
        })
        .collect();
    if missing.is_empty() {
        return None;
    }
    let mut disks: Vec<Value> = current
        .iter()
        .map(|(lun, id)| data_disk(*lun, id))
        .collect();
    let mut lun = 0;
    for v in missing {
        while current.iter().any(|(l, _)| *l == lun)
            || disks.iter().any(|d| d["lun"].as_u64() == Some(lun))
        {
            lun += 1;
        }
        disks.push(data_disk(lun, &v.provider_id));
    }
    Some(disks)
}

/// Deletes the VM: detaches its data disks first (so they survive for the replacement),
/// then deletes it and waits, then its NIC (retrying while ARM reserves it), then its
/// proximity placement group when it was the group's last VM.
pub(crate) async fn delete(p: &AzureProvider, instance: &Resource) -> Result<(), ProviderError> {
    let c = p.clients().await?;
    let name = api::last(&instance.provider_id).to_string();
    let vms = c.compute.virtual_machines_client();
    let what = format!("VM {name}");
    let vm = api::get(vms.get(&c.resource_group, &name, &c.subscription).send()).await?;
    let mut nic = instance.attributes["nic_id"]
        .as_str()
        .map(|id| api::last(id).to_string());
    let mut ppg = None;
    if let Some(vm) = &vm {
        if let Some(id) = vm["properties"]["networkProfile"]["networkInterfaces"][0]["id"].as_str()
        {
            nic = Some(api::last(id).to_string());
        }
        ppg = vm["properties"]["proximityPlacementGroup"]["id"]
            .as_str()
            .map(|id| api::last(id).to_string());
        let attached = vm["properties"]["storageProfile"]["dataDisks"]
            .as_array()
            .is_some_and(|d| !d.is_empty());
        if attached {
            let patch: azure_mgmt_compute::models::VirtualMachineUpdate =
                api::model(json!({"properties": {"storageProfile": {"dataDisks": []}}}))?;
            match api::send_wait(
                p,
                vms.update(&c.resource_group, &name, patch, &c.subscription)
                    .send(),
                &format!("detaching the disks of {what}"),
            )
            .await
            {
                Err(e) if e.kind != FailureKind::NotFound => return Err(e),
                _ => {}
            }
        }
        delete_vm(p, &name).await?;
    }
    if let Some(nic) = nic {
        delete_nic(p, &nic).await?;
    }
    if let Some(ppg) = ppg {
        delete_empty_ppg(p, &ppg).await?;
    }
    Ok(())
}

/// Deletes a proximity placement group that no VM uses any more. Another VM joining it in
/// the meantime makes ARM refuse: it stays for that VM, and the last one deletes it.
async fn delete_empty_ppg(p: &AzureProvider, name: &str) -> Result<(), ProviderError> {
    let c = p.clients().await?;
    let ppgs = c.compute.proximity_placement_groups_client();
    let Some(group) = api::get(ppgs.get(&c.resource_group, name, &c.subscription).send()).await?
    else {
        return Ok(());
    };
    let in_use = group["properties"]["virtualMachines"]
        .as_array()
        .is_some_and(|v| !v.is_empty());
    if in_use {
        return Ok(());
    }
    match api::delete(
        p,
        ppgs.delete(&c.resource_group, name, &c.subscription).send(),
        &format!("proximity placement group {name}"),
    )
    .await
    {
        Err(e) if e.kind == FailureKind::Other && e.code != "Transport" => Ok(()),
        other => other,
    }
}

/// Finds `owner`'s VM by its name; adopted only with this state's lineage tag. A VM still
/// being created is waited for; one that failed is left to the next create, which clears it.
pub(crate) async fn find(
    p: &AzureProvider,
    _region: &str,
    owner: &Ownership,
) -> Result<Option<Resource>, ProviderError> {
    let c = p.clients().await?;
    let name = api::name(owner, "");
    let vms = c.compute.virtual_machines_client();
    let deadline = tokio::time::Instant::now() + p.options.wait_timeout;
    let mut delay = p.options.poll_interval;
    loop {
        let got = match api::get(vms.get(&c.resource_group, &name, &c.subscription).send()).await {
            Ok(g) => g,
            Err(e) if e.code == "ResourceGroupNotFound" => None,
            Err(e) => return Err(e),
        };
        let Some(vm) = got else { return Ok(None) };
        api::adoptable(&vm, owner, "VM")?;
        match api::provisioning_state(&vm) {
            "Succeeded" => {
                let offer = partial_offer(&vm);
                return described(p, &vm, &owner.address, Some(offer))
                    .await
                    .map(Some);
            }
            "Failed" | "Canceled" | "Deleting" => return Ok(None),
            _ if tokio::time::Instant::now() >= deadline => {
                return Err(api::other(
                    "WaitTimeout",
                    format!("gave up waiting for VM {name} to finish being created"),
                ));
            }
            _ => {
                // A rare path (a crash mid-create), polled more often than an operation: a
                // GET of the VM is all there is to watch without the operation's URL.
                tokio::time::sleep(delay).await;
                delay = (delay * 3 / 2).min(p.options.max_poll_interval.min(FIND_POLL_CAP));
            }
        }
    }
}

/// An offer as far as the VM tells it (size, market, region); the executor completes it.
fn partial_offer(vm: &Value) -> Offer {
    Offer {
        provider: ProviderKind::Azure,
        region: vm["location"].as_str().unwrap_or_default().to_string(),
        zone: String::new(),
        instance_type: vm["properties"]["hardwareProfile"]["vmSize"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        gpu_vendor: None,
        gpu_name: String::new(),
        gpu_count: 0,
        gpu_memory: Default::default(),
        vcpus: 0,
        memory: Default::default(),
        spot: vm["properties"]["priority"].as_str() == Some("Spot"),
        price_per_hour: 0.0,
    }
}

/// The VM as state records it, with its NIC's addresses (one more GET).
async fn described(
    p: &AzureProvider,
    vm: &Value,
    address: &str,
    offer: Option<Offer>,
) -> Result<Resource, ProviderError> {
    let c = p.clients().await?;
    let nic_id = vm["properties"]["networkProfile"]["networkInterfaces"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let nic = if nic_id.is_empty() {
        None
    } else {
        api::get(
            c.network
                .network_interfaces_client()
                .get(&c.resource_group, api::last(&nic_id), &c.subscription)
                .send(),
        )
        .await?
    };
    let mut public_ip = None;
    if let Some(pip) = nic.as_ref().and_then(|n| {
        n["properties"]["ipConfigurations"][0]["properties"]["publicIPAddress"]["id"].as_str()
    }) {
        public_ip = api::get(
            c.network
                .public_ip_addresses_client()
                .get(&c.resource_group, api::last(pip), &c.subscription)
                .send(),
        )
        .await?
        .and_then(|ip| ip["properties"]["ipAddress"].as_str().map(str::to_string));
    }
    Ok(resource(vm, nic.as_ref(), public_ip, address, offer))
}

/// What flotilla records of a VM (and its NIC): ids, region, zone, addresses, size and
/// priority.
pub(crate) fn resource(
    vm: &Value,
    nic: Option<&Value>,
    public_ip: Option<String>,
    address: &str,
    offer: Option<Offer>,
) -> Resource {
    let props = &vm["properties"];
    let mut attributes = BTreeMap::new();
    let nic_id = props["networkProfile"]["networkInterfaces"][0]["id"]
        .as_str()
        .unwrap_or_default();
    attributes.insert("nic_id".to_string(), Value::from(nic_id));
    if let Some(ip) = nic.and_then(|n| {
        n["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"].as_str()
    }) {
        attributes.insert("private_ip".to_string(), Value::from(ip));
    }
    if let Some(ip) = public_ip {
        attributes.insert("public_ip".to_string(), Value::from(ip));
    }
    attributes.insert(
        "vm_size".to_string(),
        props["hardwareProfile"]["vmSize"].clone(),
    );
    attributes.insert(
        "priority".to_string(),
        Value::from(props["priority"].as_str().unwrap_or("Regular")),
    );
    attributes.insert(
        "tags".to_string(),
        serde_json::to_value(api::user_tags(vm)).unwrap_or_default(),
    );
    Resource {
        address: address.to_string(),
        kind: ResourceKind::Instance,
        provider: ProviderKind::Azure,
        provider_id: vm["id"].as_str().map(str::to_string).unwrap_or_default(),
        region: vm["location"].as_str().unwrap_or_default().to_string(),
        zone: vm["zones"][0].as_str().unwrap_or_default().to_string(),
        offer,
        attributes,
        dependencies: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(spot: bool) -> Offer {
        Offer {
            provider: ProviderKind::Azure,
            region: "eastus".into(),
            zone: String::new(),
            instance_type: "Standard_ND96isr_H100_v5".into(),
            gpu_vendor: None,
            gpu_name: "H100".into(),
            gpu_count: 8,
            gpu_memory: Default::default(),
            vcpus: 96,
            memory: Default::default(),
            spot,
            price_per_hour: 98.3,
        }
    }

    fn volume(id: &str) -> Resource {
        Resource {
            address: "volume.ckpt[0]".into(),
            kind: ResourceKind::Volume,
            provider: ProviderKind::Azure,
            provider_id: id.into(),
            region: "eastus".into(),
            zone: "1".into(),
            offer: None,
            attributes: BTreeMap::new(),
            dependencies: Vec::new(),
        }
    }

    fn request(spot: bool) -> InstanceRequest {
        InstanceRequest {
            owner: Ownership {
                lineage: "0f3a9c2e-1111".into(),
                address: "fleet.train[0]".into(),
                generation: 0,
            },
            offer: offer(spot),
            zone: Some("1".into()),
            disk_gib: 256,
            max_price: None,
            tags: BTreeMap::from([("team".into(), "ml".into())]),
            placement_group: Some("flotilla-0f3a9c2e-train".into()),
            volumes: vec![volume(
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/d0",
            )],
            attempt: 0,
            network: None,
        }
    }

    #[test]
    fn the_vm_body_carries_size_spot_key_disks_and_placement() {
        let image = crate::image_reference(crate::DEFAULT_IMAGE).unwrap();
        let spec = VmSpec {
            name: "fl-0f3a9c2e-fleet-train-0",
            nic_id: "/s/nic",
            ppg_id: Some("/s/ppg"),
            zone: Some("1"),
            image: &image,
            admin_user: "azureuser",
            ssh_key: "ssh-ed25519 AAAA me",
        };
        let b = body(&request(true), &spec);
        // What the client really sends: the body through the generated model.
        let m: azure_mgmt_compute::models::VirtualMachine = api::model(b).unwrap();
        let sent = serde_json::to_value(&m).unwrap();
        let props = &sent["properties"];
        assert_eq!(
            props["hardwareProfile"]["vmSize"],
            "Standard_ND96isr_H100_v5"
        );
        assert_eq!(props["priority"], "Spot");
        assert_eq!(props["evictionPolicy"], "Delete");
        assert_eq!(props["billingProfile"]["maxPrice"], -1.0);
        assert_eq!(props["proximityPlacementGroup"]["id"], "/s/ppg");
        assert_eq!(sent["zones"], json!(["1"]));
        let os = &props["storageProfile"]["osDisk"];
        assert_eq!(os["diskSizeGB"], 256);
        assert_eq!(os["deleteOption"], "Delete");
        assert_eq!(os["name"], "fl-0f3a9c2e-fleet-train-0-os");
        let data = &props["storageProfile"]["dataDisks"][0];
        assert_eq!(data["createOption"], "Attach");
        assert_eq!(data["lun"], 0);
        let nic = &props["networkProfile"]["networkInterfaces"][0];
        assert_eq!(nic["properties"]["deleteOption"], "Delete");
        let ssh = &props["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"][0];
        assert_eq!(ssh["keyData"], "ssh-ed25519 AAAA me");
        assert_eq!(ssh["path"], "/home/azureuser/.ssh/authorized_keys");
        assert_eq!(sent["tags"]["team"], "ml");
        assert_eq!(sent["tags"][api::ADDRESS_TAG], "fleet.train[0]");

        let capped = body(
            &InstanceRequest {
                max_price: Some(2.5),
                ..request(true)
            },
            &spec,
        );
        assert_eq!(capped["properties"]["billingProfile"]["maxPrice"], 2.5);
        let on_demand = body(
            &request(false),
            &VmSpec {
                ppg_id: None,
                zone: None,
                ..spec
            },
        );
        assert_eq!(on_demand["properties"]["priority"], "Regular");
        assert!(on_demand["properties"]["evictionPolicy"].is_null());
        assert!(on_demand["properties"]["proximityPlacementGroup"].is_null());
        assert!(on_demand["zones"].is_null());
    }

    #[test]
    fn nic_bodies_have_no_public_ip() {
        let owner = request(false).owner;
        let b = nic_body(&owner, "eastus", "/s/vnet/subnets/default");
        let m: azure_mgmt_network::models::NetworkInterface = api::model(b).unwrap();
        let sent = serde_json::to_value(&m).unwrap();
        let ip = &sent["properties"]["ipConfigurations"][0]["properties"];
        assert_eq!(ip["subnet"]["id"], "/s/vnet/subnets/default");
        assert!(ip["publicIPAddress"].is_null());
    }

    #[test]
    fn missing_volumes_get_free_luns() {
        let vm = json!({"properties": {"storageProfile": {"dataDisks": [
            {"lun": 0, "createOption": "Attach", "managedDisk": {"id": "/S/RG/DISKS/A"}},
            {"lun": 2, "createOption": "Attach", "managedDisk": {"id": "/s/rg/disks/c"}},
        ]}}});
        assert!(with_volumes(&vm, &[volume("/s/rg/disks/a")]).is_none());
        let disks = with_volumes(&vm, &[volume("/s/rg/disks/a"), volume("/s/rg/disks/b")]).unwrap();
        assert_eq!(disks.len(), 3);
        assert_eq!(disks[2]["lun"], 1);
        assert_eq!(disks[2]["managedDisk"]["id"], "/s/rg/disks/b");
        assert_eq!(
            ppg_name("flotilla-0f3a9c2e-train.x"),
            "flotilla-0f3a9c2e-train-x"
        );
    }

    #[test]
    fn resources_record_what_others_read() {
        let vm = json!({"id": "/s/vm", "location": "eastus", "zones": ["2"],
            "tags": {"team": "ml", api::LINEAGE_TAG: "l"},
            "properties": {"priority": "Spot", "hardwareProfile": {"vmSize": "Standard_X"},
                "networkProfile": {"networkInterfaces": [{"id": "/s/nic"}]}}});
        let nic = json!({"properties": {"ipConfigurations": [{"properties": {"privateIPAddress": "10.0.0.4"}}]}});
        let r = resource(&vm, Some(&nic), None, "fleet.a[0]", None);
        assert_eq!(r.attributes["nic_id"], "/s/nic");
        assert_eq!(r.attributes["private_ip"], "10.0.0.4");
        assert_eq!(r.attributes["priority"], "Spot");
        assert_eq!(r.attributes["vm_size"], "Standard_X");
        assert!(!r.attributes.contains_key("public_ip"));
        assert_eq!(r.zone, "2");
        assert!(partial_offer(&vm).spot);
    }
}
