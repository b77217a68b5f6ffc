//! Volumes: managed disks in the node's region and zone. They are attached and detached
//! through the VM's `dataDisks` (instances.rs), not here; a delete of an attached disk is
//! refused by ARM, and that refusal is reported as it is.

use crate::AzureProvider;
use crate::api;
use flotilla_core::provider::{Ownership, ProviderError, VolumeRequest};
use flotilla_core::state::{Resource, ResourceKind};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The disk SKU when the volume type names none Azure knows.
pub(crate) const DEFAULT_SKU: &str = "Premium_LRS";

/// Azure's managed-disk SKUs (`../shared/api/arm.md` §4).
const SKUS: [&str; 7] = [
    "Standard_LRS",
    "Premium_LRS",
    "StandardSSD_LRS",
    "UltraSSD_LRS",
    "Premium_ZRS",
    "StandardSSD_ZRS",
    "PremiumV2_LRS",
];

/// The disk SKU for a volume's `type`: an Azure SKU (any case) as Azure spells it;
/// [`DEFAULT_SKU`] when empty or another cloud's type (`gp3`, `pd-balanced`), so one fleet
/// file works on every cloud; anything else as written, for ARM to judge.
pub(crate) fn sku(volume_type: &str) -> String {
    let t = volume_type.trim();
    if let Some(s) = SKUS.iter().find(|s| s.eq_ignore_ascii_case(t)) {
        return (*s).to_string();
    }
    let foreign = t.is_empty()
        || ["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"].contains(&t)
        || t.starts_with("pd-")
        || t.starts_with("hyperdisk-");
    if foreign {
        DEFAULT_SKU.to_string()
    } else {
        t.to_string()
    }
}

/// An Azure zone from a request's zone: `1`, `2`, `3` (a `eastus-1` form keeps its number);
/// `None` when empty.
pub(crate) fn zone(z: Option<&str>) -> Option<String> {
    let z = z?.trim();
    if z.is_empty() {
        return None;
    }
    Some(z.rsplit('-').next().unwrap_or(z).to_string())
}

/// The PUT body of a new, empty disk.
pub(crate) fn body(request: &VolumeRequest) -> Value {
    let mut b = json!({
        "location": request.region,
        "tags": api::tags(&request.owner, &BTreeMap::new()),
        "sku": {"name": sku(&request.volume_type)},
        "properties": {
            "creationData": {"createOption": "Empty"},
            "diskSizeGB": request.size_gib,
        },
    });
    if let Some(z) = zone(request.zone.as_deref()) {
        b["zones"] = json!([z]);
    }
    b
}

/// Makes (or adopts) the disk and waits until it is ready.
pub(crate) async fn create(
    p: &AzureProvider,
    request: &VolumeRequest,
) -> Result<Resource, ProviderError> {
    p.ssh_key()?;
    let c = p.ready(&request.region).await?;
    let name = api::name(&request.owner, "");
    let disks = c.compute.disks_client();
    let what = format!("disk {name}");
    if let Some(existing) =
        api::get(disks.get(&c.subscription, &c.resource_group, &name).send()).await?
    {
        api::adoptable(&existing, &request.owner, "disk")?;
        if api::provisioning_state(&existing) == "Succeeded" {
            return Ok(resource(&existing, &request.owner.address));
        }
    }
    let params: azure_mgmt_compute::models::Disk = api::model(body(request))?;
    api::send_wait(
        p,
        disks
            .create_or_update(&c.subscription, &c.resource_group, &name, params)
            .send(),
        &what,
    )
    .await?;
    let got = api::get(disks.get(&c.subscription, &c.resource_group, &name).send())
        .await?
        .ok_or_else(|| api::other("NotFound", format!("{what} vanished after it was made")))?;
    check_state(&got, &what)?;
    Ok(resource(&got, &request.owner.address))
}

/// Grows the disk to `request.size_gib` and changes its SKU, in place (a PATCH). ARM
/// refuses to shrink a disk; so does this, before asking.
pub(crate) async fn update(
    p: &AzureProvider,
    volume: &Resource,
    request: &VolumeRequest,
) -> Result<Resource, ProviderError> {
    let c = p.clients().await?;
    let name = api::last(&volume.provider_id).to_string();
    let disks = c.compute.disks_client();
    let what = format!("disk {name}");
    let current = api::get(disks.get(&c.subscription, &c.resource_group, &name).send())
        .await?
        .ok_or_else(|| crate::gone(&what))?;
    let size = current["properties"]["diskSizeGB"].as_u64().unwrap_or(0);
    if request.size_gib < size {
        return Err(api::other(
            "DiskShrinkNotAllowed",
            format!(
                "{what} is {size} GiB and cannot shrink to {} GiB; Azure only grows disks \
                 (replace the volume to make it smaller)",
                request.size_gib
            ),
        ));
    }
    let mut patch = json!({"properties": {"diskSizeGB": request.size_gib}});
    let want = sku(&request.volume_type);
    if current["sku"]["name"].as_str() != Some(want.as_str()) {
        patch["sku"] = json!({"name": want});
    }
    let params: azure_mgmt_compute::models::DiskUpdate = api::model(patch)?;
    api::send_wait(
        p,
        disks
            .update(&c.subscription, &c.resource_group, &name, params)
            .send(),
        &what,
    )
    .await?;
    let got = api::get(disks.get(&c.subscription, &c.resource_group, &name).send())
        .await?
        .ok_or_else(|| crate::gone(&what))?;
    check_state(&got, &what)?;
    Ok(resource(&got, &volume.address))
}

/// Deletes the disk. ARM refuses while a VM has it attached; that error is passed on.
pub(crate) async fn delete(p: &AzureProvider, volume: &Resource) -> Result<(), ProviderError> {
    let c = p.clients().await?;
    let name = api::last(&volume.provider_id).to_string();
    api::delete(
        p,
        c.compute
            .disks_client()
            .delete(&c.subscription, &c.resource_group, &name)
            .send(),
        &format!("disk {name}"),
    )
    .await
}

/// Finds `owner`'s disk by its name; adopted only with this state's lineage tag.
pub(crate) async fn find(
    p: &AzureProvider,
    _region: &str,
    owner: &Ownership,
) -> Result<Option<Resource>, ProviderError> {
    let c = p.clients().await?;
    let name = api::name(owner, "");
    let got = api::get(
        c.compute
            .disks_client()
            .get(&c.subscription, &c.resource_group, &name)
            .send(),
    )
    .await;
    let got = match got {
        Ok(g) => g,
        Err(e) if e.code == "ResourceGroupNotFound" => None,
        Err(e) => return Err(e),
    };
    match got {
        Some(d) if api::provisioning_state(&d) == "Succeeded" => {
            api::adoptable(&d, owner, "disk")?;
            Ok(Some(resource(&d, &owner.address)))
        }
        _ => Ok(None),
    }
}

/// An error unless the resource's `provisioningState` is `Succeeded`.
fn check_state(item: &Value, what: &str) -> Result<(), ProviderError> {
    match api::provisioning_state(item) {
        "Succeeded" => Ok(()),
        s => Err(api::other(
            "ProvisioningFailed",
            format!("{what} ended in provisioningState `{s}`"),
        )),
    }
}

/// A disk as state records it: its id, region, zone and SKU.
pub(crate) fn resource(disk: &Value, address: &str) -> Resource {
    let mut attributes = BTreeMap::new();
    if let Some(s) = disk["sku"]["name"].as_str() {
        attributes.insert("sku".to_string(), Value::String(s.to_string()));
    }
    Resource {
        address: address.to_string(),
        kind: ResourceKind::Volume,
        provider: crate::KIND,
        provider_id: disk["id"].as_str().unwrap_or_default().to_string(),
        region: disk["location"].as_str().unwrap_or_default().to_string(),
        zone: disk["zones"][0].as_str().unwrap_or_default().to_string(),
        offer: None,
        attributes,
        dependencies: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_types_become_disk_skus() {
        assert_eq!(sku(""), "Premium_LRS");
        assert_eq!(sku("gp3"), "Premium_LRS");
        assert_eq!(sku("pd-balanced"), "Premium_LRS");
        assert_eq!(sku("standardssd_lrs"), "StandardSSD_LRS");
        assert_eq!(sku("PremiumV2_LRS"), "PremiumV2_LRS");
        assert_eq!(sku("Fancy_LRS"), "Fancy_LRS");
        assert_eq!(zone(Some("2")).as_deref(), Some("2"));
        assert_eq!(zone(Some("eastus-3")).as_deref(), Some("3"));
        assert_eq!(zone(Some("")), None);
    }

    #[test]
    fn the_disk_body_is_an_empty_disk_the_client_takes() {
        let request = VolumeRequest {
            owner: Ownership {
                lineage: "l".into(),
                address: "volume.ckpt[0]".into(),
                generation: 0,
            },
            region: "eastus".into(),
            zone: Some("1".into()),
            size_gib: 200,
            volume_type: "gp3".into(),
        };
        let b = body(&request);
        let m: azure_mgmt_compute::models::Disk = api::model(b).unwrap();
        let back = serde_json::to_value(&m).unwrap();
        assert_eq!(back["sku"]["name"], "Premium_LRS");
        assert_eq!(back["zones"], json!(["1"]));
        assert_eq!(back["properties"]["diskSizeGB"], 200);
        assert_eq!(back["properties"]["creationData"]["createOption"], "Empty");
        assert_eq!(back["tags"][api::ADDRESS_TAG], "volume.ckpt[0]");
    }
}
