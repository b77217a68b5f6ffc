//! Persistent disks: made labelled in their node's zone (`pd-balanced` unless told
//! otherwise), grown in place, deleted only when free, found by labels.

use crate::api::{self, Scope, from_sdk, other};
use crate::{GcpProvider, gone, instances};
use flotilla_core::catalog::ProviderKind;
use flotilla_core::provider::{Ownership, ProviderError, VolumeRequest};
use flotilla_core::state::{Resource, ResourceKind};
use google_cloud_compute_v1::model;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Disk types Compute has; anything else in a volume's `type` (an AWS `gp3`) means the default.
const DISK_TYPES: &[&str] = &[
    "pd-standard",
    "pd-balanced",
    "pd-ssd",
    "pd-extreme",
    "hyperdisk-balanced",
    "hyperdisk-throughput",
    "hyperdisk-extreme",
    "hyperdisk-ml",
];

pub(crate) async fn create(
    p: &GcpProvider,
    request: &VolumeRequest,
) -> Result<Resource, ProviderError> {
    let region = request.region.as_str();
    let zone = match request.zone.clone().filter(|z| !z.is_empty()) {
        Some(z) => z,
        None => first_zone(p, region).await?,
    };
    let disk_type = if DISK_TYPES.contains(&request.volume_type.as_str()) {
        request.volume_type.as_str()
    } else {
        "pd-balanced"
    };
    let name = api::resource_name(&request.owner);
    let clients = p.clients().await?;
    let body = json!({
        "name": name,
        "sizeGb": request.size_gib.max(1).to_string(),
        "type": format!("zones/{zone}/diskTypes/{disk_type}"),
        "labels": api::labels(&request.owner, &BTreeMap::new()),
        "description": format!("flotilla {}", request.owner.address),
    });
    match clients
        .disks
        .insert()
        .set_project(p.project())
        .set_zone(&zone)
        .set_request_id(api::request_id(&request.owner.token(0), &zone))
        .set_body(api::model::<model::Disk>(body)?)
        .send()
        .await
        .map_err(from_sdk)
    {
        Ok(op) => {
            api::wait(p, Scope::Zone(&zone), op).await?;
        }
        Err(e) if api::already_exists(&e) => {
            let disk = get(p, &zone, &name).await?.ok_or_else(|| gone(&name))?;
            if !api::labelled_for(&disk, &request.owner) {
                return Err(other(
                    "alreadyExists",
                    format!(
                        "a disk named {name} exists in {zone} and is not {}'s in this state",
                        request.owner.address
                    ),
                ));
            }
        }
        Err(e) => return Err(e),
    }
    let disk = wait_ready(p, &zone, &name).await?;
    Ok(resource(&disk, &request.owner.address, &BTreeMap::new()))
}

/// Grows the disk in place (`disks.resize`); Compute cannot shrink a disk or change its type.
pub(crate) async fn update(
    p: &GcpProvider,
    volume: &Resource,
    request: &VolumeRequest,
) -> Result<Resource, ProviderError> {
    let zone = volume.zone.as_str();
    let name = volume.provider_id.as_str();
    let clients = p.clients().await?;
    let current = get(p, zone, name)
        .await?
        .ok_or_else(|| gone(&format!("disk {name} in {zone}")))?;
    let size: u64 = current["sizeGb"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| current["sizeGb"].as_u64())
        .unwrap_or(0);
    if DISK_TYPES.contains(&request.volume_type.as_str())
        && api::last(current["type"].as_str().unwrap_or_default()) != request.volume_type
    {
        return Err(other(
            "invalid",
            format!(
                "disk {name} is {}; Compute cannot change a disk's type in place (replace the volume)",
                api::last(current["type"].as_str().unwrap_or_default())
            ),
        ));
    }
    if request.size_gib > size {
        let op = clients
            .disks
            .resize()
            .set_project(p.project())
            .set_zone(zone)
            .set_disk(name)
            .set_body(api::model::<model::DisksResizeRequest>(
                json!({"sizeGb": request.size_gib.to_string()}),
            )?)
            .send()
            .await
            .map_err(from_sdk)?;
        api::wait(p, Scope::Zone(zone), op).await?;
    }
    let now = get(p, zone, name)
        .await?
        .ok_or_else(|| gone(&format!("disk {name} in {zone}")))?;
    let mut r = resource(&now, &volume.address, &volume.attributes);
    r.dependencies = volume.dependencies.clone();
    Ok(r)
}

/// Deletes the disk; one still attached fails with Compute's `resourceInUseByAnotherResource`
/// and one already gone is not an error.
pub(crate) async fn delete(p: &GcpProvider, volume: &Resource) -> Result<(), ProviderError> {
    let zone = volume.zone.as_str();
    let clients = p.clients().await?;
    let started = clients
        .disks
        .delete()
        .set_project(p.project())
        .set_zone(zone)
        .set_disk(&volume.provider_id)
        .send()
        .await
        .map_err(from_sdk);
    api::deleted(p, Scope::Zone(zone), started).await
}

/// The disk labelled for `owner` in `region`, if any (the oldest, should there be several).
pub(crate) async fn find(
    p: &GcpProvider,
    region: &str,
    owner: &Ownership,
) -> Result<Option<Resource>, ProviderError> {
    let found = api::oldest_in_region(
        aggregated_disks(p, &api::owner_filter(owner)).await?,
        region,
        |d| {
            api::labelled_for(d, owner)
                && d["description"]
                    .as_str()
                    .is_none_or(|s| s == format!("flotilla {}", owner.address))
                && d["status"].as_str() != Some("DELETING")
        },
    );
    Ok(found.map(|d| resource(&d, &owner.address, &BTreeMap::new())))
}

/// Every disk of the project matching `filter`, over all pages of one `disks.aggregatedList`.
pub(crate) async fn aggregated_disks(
    p: &GcpProvider,
    filter: &str,
) -> Result<Vec<Value>, ProviderError> {
    let items = api::aggregated!(p, disks, "disks", Some(filter), set_max_results(500_u32)).await?;
    Ok(items.into_iter().map(|(_, v)| v).collect())
}

/// The name of the instance it is attached to, if any.
pub(crate) fn user(d: &Value) -> Option<&str> {
    d["users"]
        .as_array()
        .and_then(|u| u.first())
        .and_then(Value::as_str)
        .map(api::last)
}

/// What flotilla records of a disk; `previous` attributes it cannot see (`attached_to`
/// names an address) are carried over.
pub(crate) fn resource(d: &Value, address: &str, previous: &BTreeMap<String, Value>) -> Resource {
    let zone = api::last(d["zone"].as_str().unwrap_or_default()).to_string();
    let mut attributes = previous.clone();
    let size = d["sizeGb"]
        .as_str()
        .and_then(|s| s.parse::<f64>().ok())
        .or_else(|| d["sizeGb"].as_f64());
    if let Some(size) = size {
        attributes.insert("size_gib".into(), json!(size));
    }
    if let Some(t) = d["type"].as_str() {
        attributes.insert("type".into(), Value::from(api::last(t)));
    }
    if let Some(s) = d["status"].as_str() {
        attributes.insert("state".into(), Value::from(s.to_lowercase()));
    }
    if let Some(l) = d["labels"][api::LINEAGE_LABEL].as_str() {
        attributes.insert("lineage".into(), Value::from(l));
    }
    // Which instance holds it is not recorded here: that changes with every attach and would
    // read as drift. Refresh names it as `attached_to` (an address) instead.
    Resource {
        address: address.to_string(),
        kind: ResourceKind::Volume,
        provider: ProviderKind::Gcp,
        provider_id: d["name"].as_str().unwrap_or_default().to_string(),
        region: api::region_of(&zone).to_string(),
        zone,
        offer: None,
        attributes,
        dependencies: Vec::new(),
    }
}

/// The disk, or `None` when Compute does not know it.
pub(crate) async fn get(
    p: &GcpProvider,
    zone: &str,
    name: &str,
) -> Result<Option<Value>, ProviderError> {
    let clients = p.clients().await?;
    api::found(
        clients
            .disks
            .get()
            .set_project(p.project())
            .set_zone(zone)
            .set_disk(name)
            .send()
            .await,
    )
}

/// Waits until the disk can be attached.
async fn wait_ready(p: &GcpProvider, zone: &str, name: &str) -> Result<Value, ProviderError> {
    let mut backoff = api::Backoff::new(p);
    loop {
        let disk = get(p, zone, name)
            .await?
            .ok_or_else(|| gone(&format!("disk {name} in {zone}")))?;
        match disk["status"].as_str().unwrap_or_default() {
            "READY" => return Ok(disk),
            "FAILED" => {
                return Err(other(
                    "DiskFailed",
                    format!("disk {name} in {zone} failed to be created"),
                ));
            }
            _ => {}
        }
        if !backoff.pause().await {
            return Err(other(
                "WaitTimeout",
                format!("gave up waiting for disk {name} to be ready"),
            ));
        }
    }
}

/// The zone a volume goes to when nothing pins it: the provider's first configured zone of
/// the region, else the region's first zone (by name) that offers GPUs.
async fn first_zone(p: &GcpProvider, region: &str) -> Result<String, ProviderError> {
    if let Some(z) = p.config.zones.iter().find(|z| api::region_of(z) == region) {
        return Ok(z.clone());
    }
    let clients = p.clients().await?;
    let filter = format!("zone eq \".*/zones/{region}-[a-z]+\"");
    let mut zones = std::collections::BTreeSet::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = clients
            .accelerator_types
            .aggregated_list()
            .set_project(p.project())
            .set_filter(&filter);
        if let Some(t) = &token {
            req = req.set_page_token(t);
        }
        let page = api::json(&req.send().await.map_err(from_sdk)?);
        for (scope, v) in page["items"].as_object().into_iter().flatten() {
            if let Some(z) = scope.strip_prefix("zones/")
                && api::region_of(z) == region
                && v["acceleratorTypes"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
            {
                zones.insert(z.to_string());
            }
        }
        token = instances::next_token(&page);
        if token.is_none() {
            break;
        }
    }
    zones
        .into_iter()
        .next()
        .ok_or_else(|| other("NoZone", format!("{region} has no zone with GPUs")))
}
