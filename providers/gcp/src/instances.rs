//! Compute Engine instances: the offer's machine type (bundled GPU families as they are, N1
//! offers such as `n1-standard-8+1xT4` as the N1 type plus `guestAccelerators`), tried zone by
//! zone in the offer's region; relabelled in place; detached and deleted; found by labels.

use crate::api::{self, Scope, from_sdk, other};
use crate::catalog::{TypeList, aggregated_types};
use crate::{GcpProvider, gone};
use flotilla_core::catalog::{Offer, ProviderKind};
use flotilla_core::provider::{FailureKind, InstanceRequest, Ownership, ProviderError};
use flotilla_core::state::{Resource, ResourceKind};
use google_cloud_compute_v1::model;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// Catalog GPU names of the accelerators that attach to N1 machines, and their Compute
/// accelerator types.
const N1_ACCELERATORS: &[(&str, &str)] = &[
    ("T4", "nvidia-tesla-t4"),
    ("V100", "nvidia-tesla-v100"),
    ("P100", "nvidia-tesla-p100"),
    ("P4", "nvidia-tesla-p4"),
];

/// Statuses of an instance that exists and can be adopted.
const LIVE: &[&str] = &["PROVISIONING", "STAGING", "RUNNING", "REPAIRING"];

/// A catalog instance type as Compute sees it: a machine type and perhaps attached GPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Machine {
    pub(crate) machine_type: String,
    /// (accelerator type, count) for N1 offers.
    pub(crate) accelerator: Option<(String, u32)>,
}

impl Machine {
    /// `a2-highgpu-1g` or `n1-standard-8+1xT4`.
    pub(crate) fn parse(instance_type: &str) -> Result<Machine, ProviderError> {
        let Some((machine, gpus)) = instance_type.split_once('+') else {
            return Ok(Machine {
                machine_type: instance_type.to_string(),
                accelerator: None,
            });
        };
        let bad = || {
            other(
                "InvalidInstanceType",
                format!(
                    "instance type `{instance_type}` is not MACHINE+COUNTxGPU (such as n1-standard-8+1xT4)"
                ),
            )
        };
        let (count, name) = gpus.split_once('x').ok_or_else(bad)?;
        let count: u32 = count.parse().map_err(|_| bad())?;
        let accelerator = N1_ACCELERATORS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, t)| (*t).to_string())
            .ok_or_else(|| {
                other(
                    "InvalidInstanceType",
                    format!(
                        "`{name}` in `{instance_type}` is not a GPU that attaches to N1 machines (T4, V100, P100, P4)"
                    ),
                )
            })?;
        Ok(Machine {
            machine_type: machine.to_string(),
            accelerator: Some((accelerator, count)),
        })
    }

    /// The catalog instance type of an instance as Compute describes it.
    pub(crate) fn of(inst: &Value) -> String {
        let machine = api::last(inst["machineType"].as_str().unwrap_or_default()).to_string();
        let attached = inst["guestAccelerators"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|a| {
                let t = api::last(a["acceleratorType"].as_str()?);
                let name = N1_ACCELERATORS.iter().find(|(_, n)| *n == t)?.0;
                Some(format!("{}x{name}", a["acceleratorCount"].as_u64()?))
            });
        match attached {
            Some(a) => format!("{machine}+{a}"),
            None => machine,
        }
    }
}

pub(crate) async fn create(
    p: &GcpProvider,
    request: &InstanceRequest,
) -> Result<Resource, ProviderError> {
    let offer = &request.offer;
    if offer.provider != ProviderKind::Gcp {
        return Err(other(
            "InvalidRequest",
            format!("offer is for {}, not gcp", offer.provider),
        ));
    }
    let region = offer.region.as_str();
    let machine = Machine::parse(&offer.instance_type)?;
    // The node must be where its volumes (or its cluster) are; else every zone in order.
    let pinned = request
        .zone
        .clone()
        .filter(|z| !z.is_empty())
        .or_else(|| {
            request
                .volumes
                .iter()
                .map(|v| v.zone.clone())
                .find(|z| !z.is_empty())
        })
        .or_else(|| (!offer.zone.is_empty()).then(|| offer.zone.clone()));
    let zones = match pinned {
        Some(z) => vec![z],
        None => zones_for(p, region, &machine).await?,
    };
    if zones.is_empty() {
        return Err(ProviderError::new(
            FailureKind::Capacity,
            "NoZone",
            format!(
                "no zone of {region}{} offers {}",
                if p.config.zones.is_empty() {
                    ""
                } else {
                    " among the provider's `zones`"
                },
                offer.instance_type
            ),
        ));
    }
    let policy = match &request.placement_group {
        Some(group) => Some(ensure_policy(p, region, group).await?),
        None => None,
    };
    let clients = p.clients().await?;
    let name = api::resource_name(&request.owner);
    let token = request.owner.token(request.attempt);
    let mut exhausted = Vec::new();
    for zone in &zones {
        let body = body(p, request, &machine, zone, &name, policy.as_deref());
        let started = clients
            .instances
            .insert()
            .set_project(p.project())
            .set_zone(zone)
            .set_request_id(api::request_id(&token, zone))
            .set_body(api::model::<model::Instance>(body)?)
            .send()
            .await
            .map_err(from_sdk);
        let op = match started {
            Ok(op) => op,
            Err(e) if api::already_exists(&e) => {
                return adopt(p, zone, &name, request).await;
            }
            Err(e) => return Err(e),
        };
        match api::wait(p, Scope::Zone(zone), op).await {
            Ok(_) => {}
            // No room in this zone: the next one may have it.
            Err(e) if e.kind == FailureKind::Capacity => {
                exhausted.push(format!("{zone}: {}", e.message));
                continue;
            }
            // Quota is the region's: no other zone helps, and the executor skips the region.
            Err(e) if e.kind == FailureKind::Quota => {
                return Err(ProviderError::new(
                    FailureKind::Quota,
                    e.code,
                    format!("{region}: {}", e.message),
                ));
            }
            Err(e) => return Err(e),
        }
        let inst = wait_running(p, zone, &name).await?;
        // A replayed requestId answers the original operation: make sure what it made is
        // still ours before taking it.
        if !owned(&inst, &request.owner) {
            return Err(not_ours(zone, &name, request, &inst));
        }
        return finish(p, request, zone, inst).await;
    }
    Err(ProviderError::new(
        FailureKind::Capacity,
        "ZONE_RESOURCE_POOL_EXHAUSTED",
        format!(
            "no capacity for {} in {}: {}",
            offer.instance_type,
            zones.join(", "),
            exhausted.join("; ")
        ),
    ))
}

/// Attaches the request's volumes to a running instance and describes it.
async fn finish(
    p: &GcpProvider,
    request: &InstanceRequest,
    zone: &str,
    inst: Value,
) -> Result<Resource, ProviderError> {
    let inst = attach_volumes(p, zone, inst, &request.volumes).await?;
    let mut r = resource(&inst, &request.owner.address, Some(request.offer.clone()));
    r.attributes
        .insert("disk_gib".into(), json!(request.disk_gib));
    r.attributes.insert("tags".into(), tags_json(&request.tags));
    r.dependencies = request.volumes.iter().map(|v| v.address.clone()).collect();
    Ok(r)
}

/// An insert answered 409: the name is taken. Ours (by labels and the exact address in
/// metadata) is adopted; anyone else's is an error.
async fn adopt(
    p: &GcpProvider,
    zone: &str,
    name: &str,
    request: &InstanceRequest,
) -> Result<Resource, ProviderError> {
    let inst = get(p, zone, name).await?.ok_or_else(|| {
        other(
            "alreadyExists",
            format!("instance {name} in {zone} was reported to exist but cannot be read"),
        )
    })?;
    if !owned(&inst, &request.owner) {
        return Err(not_ours(zone, name, request, &inst));
    }
    let inst = wait_running(p, zone, name).await?;
    finish(p, request, zone, inst).await
}

fn not_ours(zone: &str, name: &str, request: &InstanceRequest, inst: &Value) -> ProviderError {
    other(
        "alreadyExists",
        format!(
            "an instance named {name} exists in {zone} and is not {}'s in this state (labels {}); rename or delete it",
            request.owner.address, inst["labels"]
        ),
    )
}

/// Whether an instance (or disk) belongs to `owner`: labels and, where present, the exact
/// address in metadata.
pub(crate) fn owned(item: &Value, owner: &Ownership) -> bool {
    api::labelled_for(item, owner)
        && api::metadata(item, api::ADDRESS_META).is_none_or(|a| a == owner.address)
}

/// The request body of `instances.insert`, in the REST reference's shape.
fn body(
    p: &GcpProvider,
    request: &InstanceRequest,
    machine: &Machine,
    zone: &str,
    name: &str,
    policy: Option<&str>,
) -> Value {
    let region = api::region_of(zone);
    let labels = api::labels(&request.owner, &request.tags);
    let image = p.config.image.as_deref().unwrap_or(crate::DEFAULT_IMAGE);
    let network = match p.config.network.as_deref() {
        Some(n) if n.contains('/') => n.to_string(),
        Some(n) => format!("global/networks/{n}"),
        None => "global/networks/default".to_string(),
    };
    let mut nic = json!({
        "network": network,
        "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT", "networkTier": "PREMIUM"}],
    });
    if let Some(s) = &p.config.subnetwork {
        nic["subnetwork"] = Value::from(if s.contains('/') {
            s.clone()
        } else {
            format!("regions/{region}/subnetworks/{s}")
        });
    }
    // Every GPU instance must stop for host maintenance (no live migration with GPUs); a Spot
    // VM cannot restart by itself, and is deleted when preempted so that refresh sees it gone
    // (its volumes are not auto-deleted and outlive it).
    let mut scheduling = json!({"onHostMaintenance": "TERMINATE"});
    if request.offer.spot {
        scheduling["provisioningModel"] = json!("SPOT");
        scheduling["instanceTerminationAction"] = json!("DELETE");
        scheduling["automaticRestart"] = json!(false);
    } else {
        scheduling["provisioningModel"] = json!("STANDARD");
        scheduling["automaticRestart"] = json!(true);
    }
    let fleet_tags: BTreeMap<&String, &String> = request
        .tags
        .iter()
        .filter(|(k, _)| !k.starts_with("flotilla"))
        .collect();
    let mut body = json!({
        "name": name,
        "machineType": format!("zones/{zone}/machineTypes/{}", machine.machine_type),
        "disks": [{
            "boot": true,
            "autoDelete": true,
            "type": "PERSISTENT",
            "initializeParams": {
                "sourceImage": image,
                "diskSizeGb": request.disk_gib.max(10).to_string(),
                "diskType": format!("zones/{zone}/diskTypes/pd-balanced"),
                "labels": labels,
            },
        }],
        "networkInterfaces": [nic],
        "scheduling": scheduling,
        "labels": labels,
        "metadata": {"items": [
            {"key": api::ADDRESS_META, "value": request.owner.address},
            {"key": api::TAGS_META, "value": serde_json::to_string(&fleet_tags).unwrap_or_default()},
        ]},
    });
    if let Some((accelerator, count)) = &machine.accelerator {
        body["guestAccelerators"] = json!([{
            "acceleratorType": format!("zones/{zone}/acceleratorTypes/{accelerator}"),
            "acceleratorCount": count,
        }]);
    }
    if let Some(policy) = policy {
        body["resourcePolicies"] = json!([policy]);
    }
    if let Some(sa) = &p.config.service_account {
        body["serviceAccounts"] = json!([{
            "email": sa,
            "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
        }]);
    }
    body
}

/// The zones of `region` that offer `machine` (and its accelerator), in the provider's
/// `zones` order when it names any of them, else by name. One `aggregatedList` per machine
/// and accelerator type, remembered.
pub(crate) async fn zones_for(
    p: &GcpProvider,
    region: &str,
    machine: &Machine,
) -> Result<Vec<String>, ProviderError> {
    let key = (
        region.to_string(),
        machine.machine_type.clone(),
        machine
            .accelerator
            .as_ref()
            .map(|a| a.0.clone())
            .unwrap_or_default(),
    );
    if let Some(z) = p.lock_zones().get(&key) {
        return Ok(z.clone());
    }
    let in_region = |items: Vec<(String, Value)>| -> BTreeSet<String> {
        items
            .into_iter()
            .map(|(zone, _)| zone)
            .filter(|z| api::region_of(z) == region)
            .collect()
    };
    let filter = format!("name = \"{}\"", machine.machine_type);
    let mut offered = in_region(aggregated_types(p, TypeList::Machine, Some(&filter)).await?);
    if let Some((accelerator, _)) = &machine.accelerator {
        let filter = format!("name = \"{accelerator}\"");
        let with_gpu = in_region(aggregated_types(p, TypeList::Accelerator, Some(&filter)).await?);
        offered.retain(|z| with_gpu.contains(z));
    }
    let configured: Vec<String> = p
        .config
        .zones
        .iter()
        .filter(|z| api::region_of(z) == region)
        .cloned()
        .collect();
    let zones: Vec<String> = if configured.is_empty() {
        offered.into_iter().collect()
    } else {
        configured
            .into_iter()
            .filter(|z| offered.contains(z))
            .collect()
    };
    p.lock_zones().insert(key, zones.clone());
    Ok(zones)
}

/// The next page token of a list answer, if any.
pub(crate) fn next_token(page: &Value) -> Option<String> {
    page["nextPageToken"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// Makes the compact placement policy of a cluster fleet unless it exists (deleted with the
/// fleet's last node, see [`delete`]). Returns its partial URL.
async fn ensure_policy(
    p: &GcpProvider,
    region: &str,
    group: &str,
) -> Result<String, ProviderError> {
    let clients = p.clients().await?;
    let name = api::safe_name(group);
    let url = format!(
        "projects/{}/regions/{region}/resourcePolicies/{name}",
        p.project()
    );
    match clients
        .resource_policies
        .get()
        .set_project(p.project())
        .set_region(region)
        .set_resource_policy(&name)
        .send()
        .await
        .map_err(from_sdk)
    {
        Ok(_) => return Ok(url),
        Err(e) if e.kind == FailureKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let body = json!({
        "name": name,
        "description": format!("flotilla cluster placement for {group}"),
        "groupPlacementPolicy": {"collocation": "COLLOCATED"},
    });
    match clients
        .resource_policies
        .insert()
        .set_project(p.project())
        .set_region(region)
        .set_request_id(api::request_id(&name, region))
        .set_body(api::model::<model::ResourcePolicy>(body)?)
        .send()
        .await
        .map_err(from_sdk)
    {
        Ok(op) => {
            api::wait(p, Scope::Region(region), op).await?;
        }
        Err(e) if api::already_exists(&e) => {}
        Err(e) => return Err(e),
    }
    Ok(url)
}

/// The instance, or `None` when Compute does not know it.
pub(crate) async fn get(
    p: &GcpProvider,
    zone: &str,
    name: &str,
) -> Result<Option<Value>, ProviderError> {
    let clients = p.clients().await?;
    api::found(
        clients
            .instances
            .get()
            .set_project(p.project())
            .set_zone(zone)
            .set_instance(name)
            .send()
            .await,
    )
}

/// Waits until the instance runs.
async fn wait_running(p: &GcpProvider, zone: &str, name: &str) -> Result<Value, ProviderError> {
    let mut backoff = api::Backoff::new(p);
    loop {
        let Some(inst) = get(p, zone, name).await? else {
            return Err(gone(&format!("instance {name} in {zone}")));
        };
        match inst["status"].as_str().unwrap_or_default() {
            "RUNNING" => return Ok(inst),
            "PROVISIONING" | "STAGING" | "PENDING" | "REPAIRING" => {}
            s => {
                return Err(other(
                    "InstanceNotRunning",
                    format!(
                        "instance {name} in {zone} is {s} instead of running: {}",
                        inst["statusMessage"].as_str().unwrap_or("")
                    ),
                ));
            }
        }
        if !backoff.pause().await {
            return Err(other(
                "WaitTimeout",
                format!("gave up waiting for instance {name} to run"),
            ));
        }
    }
}

/// Attaches `volumes` (disks in the instance's zone) to it, each under its own name as the
/// device name; disks already attached to it stay. Returns the instance as it is now.
async fn attach_volumes(
    p: &GcpProvider,
    zone: &str,
    inst: Value,
    volumes: &[Resource],
) -> Result<Value, ProviderError> {
    if volumes.is_empty() {
        return Ok(inst);
    }
    let clients = p.clients().await?;
    let name = inst["name"].as_str().unwrap_or_default().to_string();
    let self_link = inst["selfLink"].as_str().unwrap_or_default().to_string();
    for v in volumes {
        if !v.zone.is_empty() && v.zone != zone {
            return Err(other(
                "invalid",
                format!(
                    "volume {} is in {}, instance {name} in {zone}: a disk attaches only in its own zone",
                    v.address, v.zone
                ),
            ));
        }
        let disk = crate::volumes::get(p, zone, &v.provider_id)
            .await?
            .ok_or_else(|| gone(&format!("disk {} in {zone}", v.provider_id)))?;
        let users: Vec<&str> = disk["users"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if users.iter().any(|u| api::last(u) == name) {
            continue;
        }
        if let Some(user) = users.first() {
            return Err(other(
                "resourceInUseByAnotherResource",
                format!(
                    "disk {} is attached to {}; it must be detached before {name} can take it",
                    v.provider_id,
                    api::last(user)
                ),
            ));
        }
        let body = json!({
            "source": disk["selfLink"],
            "deviceName": v.provider_id,
            "mode": "READ_WRITE",
            "type": "PERSISTENT",
            "autoDelete": false,
        });
        let op = clients
            .instances
            .attach_disk()
            .set_project(p.project())
            .set_zone(zone)
            .set_instance(&name)
            .set_request_id(api::request_id(
                &self_link,
                &format!("attach/{}", v.provider_id),
            ))
            .set_body(api::model::<model::AttachedDisk>(body)?)
            .send()
            .await
            .map_err(from_sdk)?;
        api::wait(p, Scope::Zone(zone), op).await?;
    }
    get(p, zone, &name)
        .await?
        .ok_or_else(|| gone(&format!("instance {name} in {zone}")))
}

/// Brings the node's labels and tag metadata to `request.tags` and attaches volumes it lacks.
pub(crate) async fn update(
    p: &GcpProvider,
    instance: &Resource,
    request: &InstanceRequest,
) -> Result<Resource, ProviderError> {
    let zone = instance.zone.as_str();
    let name = instance.provider_id.as_str();
    let clients = p.clients().await?;
    let current = get(p, zone, name)
        .await?
        .ok_or_else(|| gone(&format!("instance {name} in {zone}")))?;
    let want = api::labels(&request.owner, &request.tags);
    let have: BTreeMap<String, String> =
        serde_json::from_value(current["labels"].clone()).unwrap_or_default();
    if have != want {
        let body = json!({
            "labels": want,
            "labelFingerprint": current["labelFingerprint"],
        });
        let op = clients
            .instances
            .set_labels()
            .set_project(p.project())
            .set_zone(zone)
            .set_instance(name)
            .set_body(api::model::<model::InstancesSetLabelsRequest>(body)?)
            .send()
            .await
            .map_err(from_sdk)?;
        api::wait(p, Scope::Zone(zone), op).await?;
    }
    let fleet_tags: BTreeMap<&String, &String> = request
        .tags
        .iter()
        .filter(|(k, _)| !k.starts_with("flotilla"))
        .collect();
    let tags_value = serde_json::to_string(&fleet_tags).unwrap_or_default();
    if api::metadata(&current, api::TAGS_META) != Some(tags_value.as_str())
        || api::metadata(&current, api::ADDRESS_META) != Some(request.owner.address.as_str())
    {
        let mut items: Vec<Value> = current["metadata"]["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|i| {
                !matches!(i["key"].as_str(), Some(k) if k == api::TAGS_META || k == api::ADDRESS_META)
            })
            .collect();
        items.push(json!({"key": api::ADDRESS_META, "value": request.owner.address}));
        items.push(json!({"key": api::TAGS_META, "value": tags_value}));
        let body = json!({
            "fingerprint": current["metadata"]["fingerprint"],
            "items": items,
        });
        let op = clients
            .instances
            .set_metadata()
            .set_project(p.project())
            .set_zone(zone)
            .set_instance(name)
            .set_body(api::model::<model::Metadata>(body)?)
            .send()
            .await
            .map_err(from_sdk)?;
        api::wait(p, Scope::Zone(zone), op).await?;
    }
    let now = get(p, zone, name)
        .await?
        .ok_or_else(|| gone(&format!("instance {name} in {zone}")))?;
    let now = attach_volumes(p, zone, now, &request.volumes).await?;
    let mut r = resource(&now, &instance.address, Some(request.offer.clone()));
    for (k, v) in &instance.attributes {
        if !r.attributes.contains_key(k) {
            r.attributes.insert(k.clone(), v.clone());
        }
    }
    r.attributes.insert("tags".into(), tags_json(&request.tags));
    r.dependencies = if request.volumes.is_empty() {
        instance.dependencies.clone()
    } else {
        request.volumes.iter().map(|v| v.address.clone()).collect()
    };
    Ok(r)
}

/// Detaches the node's disks that outlive it (not its boot disk, not auto-deleted ones),
/// deletes it, waits until the operation is done, and deletes its placement policy once no
/// node uses it. One already gone is not an error.
pub(crate) async fn delete(p: &GcpProvider, instance: &Resource) -> Result<(), ProviderError> {
    let zone = instance.zone.as_str();
    let name = instance.provider_id.as_str();
    let clients = p.clients().await?;
    let Some(current) = get(p, zone, name).await? else {
        return Ok(());
    };
    let id = current["id"].as_str().unwrap_or(name).to_string();
    for d in current["disks"].as_array().cloned().unwrap_or_default() {
        if d["boot"].as_bool() == Some(true) || d["autoDelete"].as_bool() == Some(true) {
            continue;
        }
        let Some(device) = d["deviceName"].as_str() else {
            continue;
        };
        match clients
            .instances
            .detach_disk()
            .set_project(p.project())
            .set_zone(zone)
            .set_instance(name)
            .set_device_name(device)
            .set_request_id(api::request_id(&id, &format!("detach/{device}")))
            .send()
            .await
            .map_err(from_sdk)
        {
            Ok(op) => {
                api::wait(p, Scope::Zone(zone), op).await?;
            }
            Err(e) if e.kind == FailureKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    match clients
        .instances
        .delete()
        .set_project(p.project())
        .set_zone(zone)
        .set_instance(name)
        .set_request_id(api::request_id(&id, "delete"))
        .send()
        .await
        .map_err(from_sdk)
    {
        Ok(op) => match api::wait(p, Scope::Zone(zone), op).await {
            Ok(_) => {}
            Err(e) if e.kind == FailureKind::NotFound => {}
            Err(e) => return Err(e),
        },
        Err(e) if e.kind == FailureKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // The cluster's placement policy goes with its last node: while other nodes use it,
    // Compute refuses (resourceInUseByAnotherResource) and it stays.
    for policy in current["resourcePolicies"].as_array().into_iter().flatten() {
        let Some(url) = policy.as_str() else { continue };
        let region = api::region_of(zone);
        let started = clients
            .resource_policies
            .delete()
            .set_project(p.project())
            .set_region(region)
            .set_resource_policy(api::last(url))
            .send()
            .await
            .map_err(from_sdk);
        let done = match started {
            Ok(op) => api::wait(p, Scope::Region(region), op).await.map(|_| ()),
            Err(e) => Err(e),
        };
        match done {
            Ok(()) => {}
            Err(e)
                if e.kind == FailureKind::NotFound
                    || e.code == "resourceInUseByAnotherResource" => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The live instance labelled for `owner` in `region`, if any (the oldest, should there be
/// several); one still starting is waited for, so that what the executor adopts has its
/// addresses.
pub(crate) async fn find(
    p: &GcpProvider,
    region: &str,
    owner: &Ownership,
) -> Result<Option<Resource>, ProviderError> {
    let found = api::oldest_in_region(
        aggregated_instances(p, &api::owner_filter(owner)).await?,
        region,
        |i| owned(i, owner) && LIVE.contains(&i["status"].as_str().unwrap_or_default()),
    );
    let Some(keep) = found else {
        return Ok(None);
    };
    let zone = api::last(keep["zone"].as_str().unwrap_or_default()).to_string();
    let name = keep["name"].as_str().unwrap_or_default().to_string();
    let keep = wait_running(p, &zone, &name).await?;
    let offer = partial_offer(&keep);
    Ok(Some(resource(&keep, &owner.address, Some(offer))))
}

/// Every instance of the project matching `filter`, over all pages of one
/// `instances.aggregatedList`.
pub(crate) async fn aggregated_instances(
    p: &GcpProvider,
    filter: &str,
) -> Result<Vec<Value>, ProviderError> {
    let items = api::aggregated!(
        p,
        instances,
        "instances",
        Some(filter),
        set_max_results(500_u32)
    )
    .await?;
    Ok(items.into_iter().map(|(_, v)| v).collect())
}

/// An offer as far as Compute tells it (type, market, region); the executor completes it.
fn partial_offer(inst: &Value) -> Offer {
    let zone = api::last(inst["zone"].as_str().unwrap_or_default());
    Offer {
        provider: ProviderKind::Gcp,
        region: api::region_of(zone).to_string(),
        zone: String::new(),
        instance_type: Machine::of(inst),
        gpu_vendor: None,
        gpu_name: String::new(),
        gpu_count: 0,
        gpu_memory: Default::default(),
        vcpus: 0,
        memory: Default::default(),
        spot: is_spot(inst),
        price_per_hour: 0.0,
    }
}

fn is_spot(inst: &Value) -> bool {
    inst["scheduling"]["provisioningModel"].as_str() == Some("SPOT")
        || inst["scheduling"]["preemptible"].as_bool() == Some(true)
}

/// The fleet's tags as the instance carries them: each label mapped back to the tag it was
/// made from (kept in metadata) while it still matches, else the label as it is now, so a
/// label changed outside flotilla shows as drift.
pub(crate) fn fleet_tags(inst: &Value) -> BTreeMap<String, String> {
    let originals: BTreeMap<String, String> = api::metadata(inst, api::TAGS_META)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let labels: BTreeMap<String, String> =
        serde_json::from_value(inst["labels"].clone()).unwrap_or_default();
    labels
        .into_iter()
        .filter(|(k, _)| k != api::LINEAGE_LABEL && k != api::ADDRESS_LABEL)
        .map(|(lk, lv)| {
            match originals
                .iter()
                .find(|(k, v)| api::label_key(k) == lk && api::label_value(v) == lv)
            {
                Some((k, v)) => (k.clone(), v.clone()),
                None => (lk, lv),
            }
        })
        .collect()
}

fn tags_json(tags: &BTreeMap<String, String>) -> Value {
    Value::Object(
        tags.iter()
            .filter(|(k, _)| !k.starts_with("flotilla"))
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect(),
    )
}

/// What flotilla records of an instance as Compute describes it.
pub(crate) fn resource(inst: &Value, address: &str, offer: Option<Offer>) -> Resource {
    let zone = api::last(inst["zone"].as_str().unwrap_or_default()).to_string();
    let nic = &inst["networkInterfaces"][0];
    let mut attributes = BTreeMap::new();
    attributes.insert("private_ip".to_string(), nic["networkIP"].clone());
    attributes.insert(
        "public_ip".to_string(),
        nic["accessConfigs"][0]["natIP"].clone(),
    );
    attributes.insert(
        "tags".to_string(),
        Value::Object(
            fleet_tags(inst)
                .into_iter()
                .map(|(k, v)| (k, Value::from(v)))
                .collect(),
        ),
    );
    attributes.insert("instance_type".to_string(), Value::from(Machine::of(inst)));
    attributes.insert("spot".to_string(), Value::from(is_spot(inst)));
    if let Some(l) = inst["labels"][api::LINEAGE_LABEL].as_str() {
        attributes.insert("lineage".to_string(), Value::from(l));
    }
    let status = inst["status"].as_str().unwrap_or_default();
    if status != "RUNNING" {
        attributes.insert("state".to_string(), Value::from(status.to_lowercase()));
    }
    let devices: serde_json::Map<String, Value> = inst["disks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["boot"].as_bool() != Some(true))
        .filter_map(|d| {
            Some((
                api::last(d["source"].as_str()?).to_string(),
                d["deviceName"].clone(),
            ))
        })
        .collect();
    if !devices.is_empty() {
        attributes.insert("volume_devices".to_string(), Value::Object(devices));
    }
    Resource {
        address: address.to_string(),
        kind: ResourceKind::Instance,
        provider: ProviderKind::Gcp,
        provider_id: inst["name"].as_str().unwrap_or_default().to_string(),
        region: api::region_of(&zone).to_string(),
        zone,
        offer,
        attributes,
        dependencies: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_types_map_to_machines() {
        let m = Machine::parse("n1-standard-8+1xT4").unwrap();
        assert_eq!(m.machine_type, "n1-standard-8");
        assert_eq!(m.accelerator, Some(("nvidia-tesla-t4".into(), 1)));
        let m = Machine::parse("a2-highgpu-8g").unwrap();
        assert_eq!(m.accelerator, None);
        assert!(Machine::parse("n1-standard-8+1xH100").is_err());
        assert!(Machine::parse("n1-standard-8+T4").is_err());
        let inst = json!({
            "machineType": "https://www.googleapis.com/compute/v1/projects/p/zones/z/machineTypes/n1-standard-32",
            "guestAccelerators": [{"acceleratorType": "projects/p/zones/z/acceleratorTypes/nvidia-tesla-v100", "acceleratorCount": 4}],
        });
        assert_eq!(Machine::of(&inst), "n1-standard-32+4xV100");
    }

    #[test]
    fn tags_come_back_from_labels() {
        let inst = json!({
            "labels": {"team": "llm", "cost_center": "ml_ops", "flotilla-lineage": "x", "extra": "y"},
            "metadata": {"items": [{"key": "flotilla-tags", "value": "{\"Cost Center\":\"ML/Ops\",\"team\":\"llm\"}"}]},
        });
        let t = fleet_tags(&inst);
        assert_eq!(t["Cost Center"], "ML/Ops");
        assert_eq!(t["team"], "llm");
        assert_eq!(t["extra"], "y");
        assert!(!t.contains_key("flotilla-lineage"));
    }
}
