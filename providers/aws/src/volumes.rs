//! EBS volumes: made tagged in their node's zone (gp3 unless told otherwise), grown or retyped
//! in place, deleted only when free, found by ownership tags.

use crate::error::{from_sdk, other};
use crate::{AwsProvider, tags};
use aws_sdk_ec2::types::{ResourceType, Volume, VolumeAttachmentState, VolumeType};
use flotilla_core::catalog::ProviderKind;
use flotilla_core::provider::{FailureKind, Ownership, ProviderError, VolumeRequest};
use flotilla_core::state::{Resource, ResourceKind};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub(crate) async fn create(
    p: &AwsProvider,
    request: &VolumeRequest,
) -> Result<Resource, ProviderError> {
    let region = request.region.as_str();
    let ec2 = p.clients.region(region).await.ec2;
    let zone = match request.zone.clone().filter(|z| !z.is_empty()) {
        Some(z) => z,
        None => first_zone(p, region).await?,
    };
    let size = i32::try_from(request.size_gib.max(1)).map_err(|_| {
        other(
            "InvalidRequest",
            format!("volume of {} GiB is too large", request.size_gib),
        )
    })?;
    let volume_type = if request.volume_type.is_empty() {
        "gp3"
    } else {
        request.volume_type.as_str()
    };
    let all_tags = tags::all(&request.owner, &BTreeMap::new());
    let out = ec2
        .create_volume()
        .availability_zone(&zone)
        .size(size)
        .volume_type(VolumeType::from(volume_type))
        .client_token(request.owner.token(0))
        .tag_specifications(tags::spec(ResourceType::Volume, &all_tags))
        .send()
        .await
        .map_err(from_sdk)?;
    let id = out
        .volume_id()
        .ok_or_else(|| {
            other(
                "InvalidResponse",
                "CreateVolume answered without a volume id",
            )
        })?
        .to_string();
    // Wait until it can be attached.
    let volume = crate::wait_for(p, &format!("volume {id} to be available"), || async {
        Ok(describe(p, region, &id)
            .await?
            .filter(|v| v.state().is_some_and(|s| s.as_str() != "creating")))
    })
    .await?;
    if volume.state().is_some_and(|s| s.as_str() == "error") {
        return Err(other(
            "VolumeCreationFailed",
            format!("volume {id} ended in state error"),
        ));
    }
    Ok(resource(
        &volume,
        region,
        &request.owner.address,
        &BTreeMap::new(),
    ))
}

/// Grows the volume or changes its type in place (ModifyVolume).
pub(crate) async fn update(
    p: &AwsProvider,
    volume: &Resource,
    request: &VolumeRequest,
) -> Result<Resource, ProviderError> {
    let region = volume.region.as_str();
    let ec2 = p.clients.region(region).await.ec2;
    let current = describe(p, region, &volume.provider_id)
        .await?
        .ok_or_else(|| gone(&volume.provider_id))?;
    let size = i32::try_from(request.size_gib).map_err(|_| {
        other(
            "InvalidRequest",
            format!("volume of {} GiB is too large", request.size_gib),
        )
    })?;
    let mut modify = ec2.modify_volume().volume_id(&volume.provider_id);
    let mut changed = false;
    if current.size().is_some_and(|s| s < size) {
        modify = modify.size(size);
        changed = true;
    }
    if !request.volume_type.is_empty()
        && current.volume_type().map(VolumeType::as_str) != Some(request.volume_type.as_str())
    {
        modify = modify.volume_type(VolumeType::from(request.volume_type.as_str()));
        changed = true;
    }
    if changed {
        modify.send().await.map_err(from_sdk)?;
    }
    let now = describe(p, region, &volume.provider_id)
        .await?
        .ok_or_else(|| gone(&volume.provider_id))?;
    let mut r = resource(&now, region, &volume.address, &volume.attributes);
    if changed {
        // EBS reports the new size once the modification is under way; record what was asked.
        r.attributes
            .insert("size_gib".into(), json!(request.size_gib as f64));
        if !request.volume_type.is_empty() {
            r.attributes
                .insert("type".into(), Value::from(request.volume_type.clone()));
        }
    }
    r.dependencies = volume.dependencies.clone();
    Ok(r)
}

/// Deletes the volume; one still attached fails with EC2's `VolumeInUse` (kind Other), and one
/// already gone is not an error.
pub(crate) async fn delete(p: &AwsProvider, volume: &Resource) -> Result<(), ProviderError> {
    let ec2 = p.clients.region(&volume.region).await.ec2;
    match ec2
        .delete_volume()
        .volume_id(&volume.provider_id)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = from_sdk(e);
            if e.kind == FailureKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

/// The volume tagged for `owner` in `region`, if any (the oldest, should there be several).
pub(crate) async fn find(
    p: &AwsProvider,
    region: &str,
    owner: &Ownership,
) -> Result<Option<Resource>, ProviderError> {
    let ec2 = p.clients.region(region).await.ec2;
    let mut filters = tags::owner_filters(owner);
    filters.push(tags::filter("status", ["creating", "available", "in-use"]));
    let mut pages = ec2
        .describe_volumes()
        .set_filters(Some(filters))
        .into_paginator()
        .items()
        .send();
    let mut found = Vec::new();
    while let Some(v) = pages.next().await {
        let v = v.map_err(from_sdk)?;
        if tags::owned_by(v.tags(), owner) {
            found.push(v);
        }
    }
    found.sort_by(|a, b| {
        let key = |v: &Volume| {
            (
                v.create_time().map(|t| (t.secs(), t.subsec_nanos())),
                v.volume_id().map(str::to_string),
            )
        };
        key(a).cmp(&key(b))
    });
    Ok(found
        .first()
        .map(|v| resource(v, region, &owner.address, &BTreeMap::new())))
}

/// What flotilla records of a volume; `previous` attributes it cannot see (`attached_to`
/// names an address) are carried over.
pub(crate) fn resource(
    v: &Volume,
    region: &str,
    address: &str,
    previous: &BTreeMap<String, Value>,
) -> Resource {
    let mut attributes = previous.clone();
    if let Some(size) = v.size() {
        attributes.insert("size_gib".into(), json!(f64::from(size)));
    }
    if let Some(t) = v.volume_type() {
        attributes.insert("type".into(), Value::from(t.as_str()));
    }
    if let Some(s) = v.state() {
        attributes.insert("state".into(), Value::from(s.as_str()));
    }
    let attached = v.attachments().iter().find(|a| {
        matches!(
            a.state(),
            Some(VolumeAttachmentState::Attached) | Some(VolumeAttachmentState::Attaching)
        )
    });
    match attached {
        Some(a) => {
            attributes.insert(
                "attached_instance".into(),
                a.instance_id().map_or(Value::Null, Value::from),
            );
            attributes.insert("device".into(), a.device().map_or(Value::Null, Value::from));
        }
        None => {
            attributes.insert("attached_instance".into(), Value::Null);
            attributes.remove("device");
        }
    }
    Resource {
        address: address.to_string(),
        kind: ResourceKind::Volume,
        provider: ProviderKind::Aws,
        provider_id: v.volume_id().unwrap_or_default().to_string(),
        region: region.to_string(),
        zone: v.availability_zone().unwrap_or_default().to_string(),
        offer: None,
        attributes,
        dependencies: Vec::new(),
    }
}

/// The volume with this id; `None` when EC2 does not know it.
pub(crate) async fn describe(
    p: &AwsProvider,
    region: &str,
    id: &str,
) -> Result<Option<Volume>, ProviderError> {
    let ec2 = p.clients.region(region).await.ec2;
    let out = ec2
        .describe_volumes()
        .filters(tags::filter("volume-id", [id]))
        .send()
        .await
        .map_err(from_sdk)?;
    Ok(out
        .volumes()
        .iter()
        .find(|v| v.volume_id() == Some(id))
        .cloned())
}

/// The region's first available zone, by name.
async fn first_zone(p: &AwsProvider, region: &str) -> Result<String, ProviderError> {
    let ec2 = p.clients.region(region).await.ec2;
    let out = ec2
        .describe_availability_zones()
        .filters(tags::filter("state", ["available"]))
        .filters(tags::filter("zone-type", ["availability-zone"]))
        .send()
        .await
        .map_err(from_sdk)?;
    out.availability_zones()
        .iter()
        .filter_map(|z| z.zone_name())
        .min()
        .map(str::to_string)
        .ok_or_else(|| other("NoZone", format!("{region} has no available zone")))
}

fn gone(id: &str) -> ProviderError {
    ProviderError::new(
        FailureKind::NotFound,
        "InvalidVolume.NotFound",
        format!("volume {id} does not exist"),
    )
}
