//! EC2 instances: launch (image, market, tags, disk, placement), wait until running, attach
//! volumes; retag in place (attaching what an interrupted apply did not); detach, terminate
//! and wait until gone, then delete the fleet's placement group with its last node; find by
//! ownership tags.

use crate::error::{classify, from_sdk, other};
use crate::{AwsProvider, tags, wait_for};
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Instance, InstanceMarketOptionsRequest, InstanceStateName,
    InstanceType, MarketType, Placement, ResourceType, SpotMarketOptions, VolumeAttachmentState,
    VolumeType,
};
use flotilla_core::catalog::{Offer, ProviderKind};
use flotilla_core::provider::{FailureKind, InstanceRequest, Ownership, ProviderError};
use flotilla_core::state::{Resource, ResourceKind};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// Device names offered to attached volumes, in order.
const DEVICES: &[&str] = &[
    "/dev/sdf", "/dev/sdg", "/dev/sdh", "/dev/sdi", "/dev/sdj", "/dev/sdk", "/dev/sdl", "/dev/sdm",
    "/dev/sdn", "/dev/sdo", "/dev/sdp",
];

/// States of an instance that still exists (for find and for "is it gone yet").
const LIVE_STATES: &[&str] = &["pending", "running", "stopping", "stopped"];

/// An AMI to launch: its id and root device name (where the root disk size goes).
#[derive(Debug, Clone)]
pub(crate) struct Image {
    pub(crate) id: String,
    pub(crate) root_device: String,
}

pub(crate) async fn create(
    p: &AwsProvider,
    request: &InstanceRequest,
) -> Result<Resource, ProviderError> {
    let offer = &request.offer;
    if offer.provider != ProviderKind::Aws {
        return Err(other(
            "InvalidRequest",
            format!("offer is for {}, not aws", offer.provider),
        ));
    }
    let region = offer.region.as_str();
    let ec2 = p.clients.region(region).await.ec2;
    let image = image(p, region, &offer.instance_type).await?;
    // The node must be where its volumes are.
    let zone = request
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
    if let Some(group) = &request.placement_group {
        ensure_placement_group(p, region, group, &request.owner).await?;
    }

    let all_tags = tags::all(&request.owner, &request.tags);
    let disk_gib = i32::try_from(request.disk_gib.max(1)).map_err(|_| {
        other(
            "InvalidRequest",
            format!("disk of {} GiB is too large", request.disk_gib),
        )
    })?;
    let mut run = ec2
        .run_instances()
        .image_id(&image.id)
        .instance_type(InstanceType::from(offer.instance_type.as_str()))
        .min_count(1)
        .max_count(1)
        .tag_specifications(tags::spec(ResourceType::Instance, &all_tags))
        .tag_specifications(tags::spec(ResourceType::Volume, &all_tags))
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name(&image.root_device)
                .ebs(
                    EbsBlockDevice::builder()
                        .volume_size(disk_gib)
                        .volume_type(VolumeType::Gp3)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        );
    if zone.is_some() || request.placement_group.is_some() {
        run = run.placement(
            Placement::builder()
                .set_availability_zone(zone.clone())
                .set_group_name(request.placement_group.clone())
                .build(),
        );
    }
    if offer.spot {
        run = run.instance_market_options(
            InstanceMarketOptionsRequest::builder()
                .market_type(MarketType::Spot)
                .spot_options(
                    SpotMarketOptions::builder()
                        .max_price(price(offer.price_per_hour))
                        .build(),
                )
                .build(),
        );
    }
    if let Some(subnet) = &p.config.subnet {
        run = run.subnet_id(subnet);
    }
    if !p.config.security_groups.is_empty() {
        run = run.set_security_group_ids(Some(p.config.security_groups.clone()));
    }
    // The token makes a retried call (a lost response, throttling, a re-run after a crash)
    // idempotent. It is new for every offer tried and every generation of the address (core's
    // `Ownership::token`), so EC2 never answers it with an earlier, terminated instance.
    let token = request.owner.token(request.attempt);
    let out = match run
        .clone()
        .client_token(&token)
        .send()
        .await
        .map_err(from_sdk)
    {
        // The fleet's last node was deleted (and the group with it) after this process had
        // made sure of the group: make it again.
        Err(e) if e.code == "InvalidPlacementGroup.Unknown" => {
            let Some(group) = &request.placement_group else {
                return Err(e);
            };
            p.lock_groups().remove(&(region.to_string(), group.clone()));
            ensure_placement_group(p, region, group, &request.owner).await?;
            run.clone()
                .client_token(&token)
                .send()
                .await
                .map_err(from_sdk)?
        }
        r => r?,
    };
    let launched = out.instances().first().cloned().ok_or_else(|| {
        other(
            "InvalidResponse",
            "RunInstances answered without an instance",
        )
    })?;
    let id = launched.instance_id().unwrap_or_default().to_string();
    let instance = wait_running(p, region, &id).await?;
    let id = instance.instance_id().unwrap_or_default().to_string();
    let devices = attach_volumes(p, region, &instance, &request.volumes).await?;
    let instance = describe(p, region, &id).await?.unwrap_or(instance);
    let mut r = resource(
        &instance,
        region,
        &request.owner.address,
        Some(offer.clone()),
    );
    r.attributes
        .insert("disk_gib".into(), json!(request.disk_gib));
    r.attributes
        .insert("tags".into(), tags::to_json(&request.tags));
    if !devices.is_empty() {
        r.attributes.insert(
            "volume_devices".into(),
            Value::Object(
                devices
                    .into_iter()
                    .map(|(k, v)| (k, Value::from(v)))
                    .collect(),
            ),
        );
    }
    r.dependencies = request.volumes.iter().map(|v| v.address.clone()).collect();
    Ok(r)
}

/// Brings the node's fleet tags to `request.tags` (ownership tags untouched) and attaches
/// those of `request.volumes` not attached to it yet.
pub(crate) async fn update(
    p: &AwsProvider,
    instance: &Resource,
    request: &InstanceRequest,
) -> Result<Resource, ProviderError> {
    let region = instance.region.as_str();
    let ec2 = p.clients.region(region).await.ec2;
    let current = describe(p, region, &instance.provider_id)
        .await?
        .filter(is_live)
        .ok_or_else(|| {
            ProviderError::new(
                FailureKind::NotFound,
                "InvalidInstanceID.NotFound",
                format!("instance {} does not exist", instance.provider_id),
            )
        })?;
    let have = tags::fleet_tags(current.tags());
    let want: BTreeMap<String, String> = request
        .tags
        .iter()
        .filter(|(k, _)| !k.starts_with(tags::PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut set: Vec<(String, String)> = want
        .iter()
        .filter(|(k, v)| have.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // An instance found after a crash may miss its ownership tags' twin on a re-tag: keep them.
    set.extend(
        tags::all(&request.owner, &BTreeMap::new())
            .into_iter()
            .filter(|(k, v)| {
                !current
                    .tags()
                    .iter()
                    .any(|t| t.key() == Some(k.as_str()) && t.value() == Some(v.as_str()))
            }),
    );
    if !set.is_empty() {
        ec2.create_tags()
            .resources(&instance.provider_id)
            .set_tags(Some(tags::ec2(&set)))
            .send()
            .await
            .map_err(from_sdk)?;
    }
    let remove: Vec<&String> = have.keys().filter(|k| !want.contains_key(*k)).collect();
    if !remove.is_empty() {
        ec2.delete_tags()
            .resources(&instance.provider_id)
            .set_tags(Some(
                remove
                    .iter()
                    .map(|k| aws_sdk_ec2::types::Tag::builder().key(*k).build())
                    .collect(),
            ))
            .send()
            .await
            .map_err(from_sdk)?;
    }
    // A node adopted after a crash between its launch and the attach: attach what is missing
    // (volumes already attached to it stay where they are).
    let devices = attach_volumes(p, region, &current, &request.volumes).await?;
    let current = if devices.is_empty() {
        current
    } else {
        describe(p, region, &instance.provider_id)
            .await?
            .unwrap_or(current)
    };
    let mut r = resource(
        &current,
        region,
        &instance.address,
        Some(request.offer.clone()),
    );
    for (k, v) in &instance.attributes {
        if !r.attributes.contains_key(k) {
            r.attributes.insert(k.clone(), v.clone());
        }
    }
    r.attributes.insert("tags".into(), tags::to_json(&want));
    if !devices.is_empty() {
        r.attributes.insert(
            "volume_devices".into(),
            Value::Object(
                devices
                    .into_iter()
                    .map(|(k, v)| (k, Value::from(v)))
                    .collect(),
            ),
        );
    }
    r.dependencies = instance.dependencies.clone();
    Ok(r)
}

/// Detaches the node's volumes (those that outlive it), terminates it and waits until it is
/// gone. An instance already gone is not an error.
pub(crate) async fn delete(p: &AwsProvider, instance: &Resource) -> Result<(), ProviderError> {
    let region = instance.region.as_str();
    let id = instance.provider_id.as_str();
    let ec2 = p.clients.region(region).await.ec2;
    let Some(current) = describe(p, region, id).await? else {
        return Ok(());
    };
    if !is_live(&current) && state(&current) != Some(InstanceStateName::ShuttingDown) {
        return release_placement_group(p, region, &current).await;
    }
    detach_volumes(p, region, &current).await?;
    match ec2.terminate_instances().instance_ids(id).send().await {
        Ok(_) => {}
        Err(e) => {
            let e = from_sdk(e);
            if e.kind != FailureKind::NotFound {
                return Err(e);
            }
        }
    }
    wait_for(p, &format!("instance {id} to terminate"), || async {
        Ok(match describe(p, region, id).await? {
            None => Some(()),
            Some(i) if state(&i) == Some(InstanceStateName::Terminated) => Some(()),
            Some(_) => None,
        })
    })
    .await?;
    release_placement_group(p, region, &current).await
}

/// The fleet a node address belongs to: `fleet.train[3]` -> `fleet.train`.
fn fleet_address(address: &str) -> &str {
    address.split_once('[').map_or(address, |(fleet, _)| fleet)
}

/// Deletes the cluster placement group of a terminated node's fleet once no node of the fleet
/// is left in it, so that a destroy leaves nothing behind. The group is found by its tags (the
/// node's lineage, the fleet's address), as EC2 does not say which group an instance is in.
/// Two nodes of a fleet terminated at once cannot both miss it: each looks only after its own
/// node is terminated, so the later one sees none left.
async fn release_placement_group(
    p: &AwsProvider,
    region: &str,
    node: &Instance,
) -> Result<(), ProviderError> {
    let (Some(lineage), Some(address)) = (
        tag_value(node.tags(), Ownership::LINEAGE_TAG),
        tag_value(node.tags(), Ownership::ADDRESS_TAG),
    ) else {
        return Ok(());
    };
    let fleet = fleet_address(address);
    let ec2 = p.clients.region(region).await.ec2;
    let groups = ec2
        .describe_placement_groups()
        .set_filters(Some(tags::owner_filters_of(lineage, fleet)))
        .send()
        .await
        .map_err(from_sdk)?;
    let names: Vec<String> = groups
        .placement_groups()
        .iter()
        .filter(|g| {
            tag_value(g.tags(), Ownership::LINEAGE_TAG) == Some(lineage)
                && tag_value(g.tags(), Ownership::ADDRESS_TAG) == Some(fleet)
        })
        .filter_map(|g| g.group_name().map(str::to_string))
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let mut filters = tags::owner_filters_of(lineage, &format!("{fleet}[*"));
    filters.push(tags::filter(
        "instance-state-name",
        LIVE_STATES.iter().copied().chain(["shutting-down"]),
    ));
    let mut pages = ec2
        .describe_instances()
        .set_filters(Some(filters))
        .into_paginator()
        .items()
        .send();
    while let Some(reservation) = pages.next().await {
        let reservation = reservation.map_err(from_sdk)?;
        let sibling = reservation.instances().iter().any(|i| {
            i.instance_id() != node.instance_id()
                && tag_value(i.tags(), Ownership::LINEAGE_TAG) == Some(lineage)
                && tag_value(i.tags(), Ownership::ADDRESS_TAG)
                    .is_some_and(|a| fleet_address(a) == fleet)
        });
        if sibling {
            return Ok(());
        }
    }
    for name in names {
        p.lock_groups().remove(&(region.to_string(), name.clone()));
        match ec2.delete_placement_group().group_name(&name).send().await {
            Ok(_) => {}
            Err(e) => {
                let e = from_sdk(e);
                // Gone already, or a node of the fleet launched into it meanwhile: keep it.
                if e.kind != FailureKind::NotFound && e.code != "InvalidPlacementGroup.InUse" {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

fn tag_value<'a>(tags: &'a [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// The live instance tagged for `owner` in `region`, if any. A pending one is waited for, so
/// that what the executor adopts has its zone and addresses. Should an interrupted apply have
/// left two (EC2 deduplicates by `ClientToken`, an emulator may not), the oldest is kept and
/// the others are terminated: only one can be recorded, the rest would be orphans.
pub(crate) async fn find(
    p: &AwsProvider,
    region: &str,
    owner: &Ownership,
) -> Result<Option<Resource>, ProviderError> {
    let ec2 = p.clients.region(region).await.ec2;
    let mut filters = tags::owner_filters(owner);
    filters.push(tags::filter(
        "instance-state-name",
        LIVE_STATES.iter().copied(),
    ));
    let mut found = Vec::new();
    let mut pages = ec2
        .describe_instances()
        .set_filters(Some(filters))
        .into_paginator()
        .items()
        .send();
    while let Some(reservation) = pages.next().await {
        let reservation = reservation.map_err(from_sdk)?;
        found.extend(
            reservation
                .instances()
                .iter()
                .filter(|i| tags::owned_by(i.tags(), owner))
                .cloned(),
        );
    }
    found.sort_by(|a, b| {
        let key = |i: &Instance| {
            (
                i.launch_time().map(|t| (t.secs(), t.subsec_nanos())),
                i.instance_id().map(str::to_string),
            )
        };
        key(a).cmp(&key(b))
    });
    let mut found = found.into_iter();
    let Some(keep) = found.next() else {
        return Ok(None);
    };
    let extra: Vec<String> = found
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    if !extra.is_empty() {
        ec2.terminate_instances()
            .set_instance_ids(Some(extra))
            .send()
            .await
            .map_err(from_sdk)?;
    }
    let id = keep.instance_id().unwrap_or_default().to_string();
    let keep = if state(&keep) == Some(InstanceStateName::Pending) {
        wait_running(p, region, &id).await?
    } else {
        keep
    };
    let offer = partial_offer(&keep, region);
    Ok(Some(resource(&keep, region, &owner.address, Some(offer))))
}

/// What flotilla records of an instance as EC2 describes it.
pub(crate) fn resource(
    i: &Instance,
    region: &str,
    address: &str,
    offer: Option<Offer>,
) -> Resource {
    let mut attributes = BTreeMap::new();
    attributes.insert(
        "private_ip".to_string(),
        i.private_ip_address().map_or(Value::Null, Value::from),
    );
    attributes.insert(
        "public_ip".to_string(),
        i.public_ip_address().map_or(Value::Null, Value::from),
    );
    attributes.insert(
        "tags".to_string(),
        tags::to_json(&tags::fleet_tags(i.tags())),
    );
    if let Some(t) = i.instance_type() {
        attributes.insert("instance_type".to_string(), Value::from(t.as_str()));
    }
    attributes.insert("spot".to_string(), Value::from(is_spot(i)));
    if let Some(s) = state(i) {
        attributes.insert("state".to_string(), Value::from(s.as_str()));
    }
    Resource {
        address: address.to_string(),
        kind: ResourceKind::Instance,
        provider: ProviderKind::Aws,
        provider_id: i.instance_id().unwrap_or_default().to_string(),
        region: region.to_string(),
        zone: zone_of(i),
        offer,
        attributes,
        dependencies: Vec::new(),
    }
}

/// An offer as far as EC2 tells it (type, market, place); the executor completes it.
fn partial_offer(i: &Instance, region: &str) -> Offer {
    Offer {
        provider: ProviderKind::Aws,
        region: region.to_string(),
        zone: String::new(),
        instance_type: i
            .instance_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        gpu_vendor: None,
        gpu_name: String::new(),
        gpu_count: 0,
        gpu_memory: Default::default(),
        vcpus: 0,
        memory: Default::default(),
        spot: is_spot(i),
        price_per_hour: 0.0,
    }
}

pub(crate) fn state(i: &Instance) -> Option<InstanceStateName> {
    i.state().and_then(|s| s.name()).cloned()
}

pub(crate) fn is_live(i: &Instance) -> bool {
    state(i).is_some_and(|s| LIVE_STATES.contains(&s.as_str()))
}

fn is_spot(i: &Instance) -> bool {
    i.instance_lifecycle().is_some_and(|l| l.as_str() == "spot")
}

fn zone_of(i: &Instance) -> String {
    i.placement()
        .and_then(|p| p.availability_zone())
        .unwrap_or_default()
        .to_string()
}

/// A spot max price as EC2 wants it: a plain decimal.
fn price(usd: f64) -> String {
    let s = format!("{usd:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// The instance with this id, terminated ones included; `None` when EC2 does not know it.
pub(crate) async fn describe(
    p: &AwsProvider,
    region: &str,
    id: &str,
) -> Result<Option<Instance>, ProviderError> {
    let ec2 = p.clients.region(region).await.ec2;
    // A filter, not InstanceIds: an unknown id is then an empty answer, not an error.
    let out = ec2
        .describe_instances()
        .filters(tags::filter("instance-id", [id]))
        .send()
        .await
        .map_err(from_sdk)?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find(|i| i.instance_id() == Some(id))
        .cloned())
}

/// Waits until the instance runs; one that ends instead fails with the reason EC2 gives
/// (`Server.InsufficientInstanceCapacity` is a capacity failure).
async fn wait_running(p: &AwsProvider, region: &str, id: &str) -> Result<Instance, ProviderError> {
    wait_for(p, &format!("instance {id} to run"), || async {
        let Some(i) = describe(p, region, id).await? else {
            // Just launched: EC2's reads are eventually consistent.
            return Ok(None);
        };
        match state(&i) {
            Some(InstanceStateName::Running) => Ok(Some(i)),
            Some(InstanceStateName::Pending) | None => Ok(None),
            Some(s) => {
                let (code, message) = i
                    .state_reason()
                    .map(|r| {
                        (
                            r.code().unwrap_or("InstanceFailed").to_string(),
                            r.message().unwrap_or("").to_string(),
                        )
                    })
                    .unwrap_or_else(|| ("InstanceFailed".to_string(), String::new()));
                let bare = code
                    .strip_prefix("Server.")
                    .or_else(|| code.strip_prefix("Client."))
                    .unwrap_or(&code);
                Err(ProviderError::new(
                    classify(bare),
                    bare,
                    format!(
                        "instance {id} is {} instead of running: {message}",
                        s.as_str()
                    ),
                ))
            }
        }
    })
    .await
}

/// The AMI for `instance_type` in `region`: the provider's `image` (an id, or a name owned by
/// this account or Amazon), else the newest AWS Deep Learning Base GPU AMI for the type's
/// architecture. Against an emulator (an endpoint is set) that has no such image, any Deep
/// Learning AMI, else any available Amazon image, stands in: moto ships a few old AMIs only.
async fn image(p: &AwsProvider, region: &str, instance_type: &str) -> Result<Image, ProviderError> {
    let arch = architecture(p, region, instance_type).await;
    let key = (region.to_string(), arch.clone());
    if let Some(found) = p.lock_images().get(&key) {
        return Ok(found.clone());
    }
    let ec2 = p.clients.region(region).await.ec2;
    let found = match &p.config.image {
        Some(id) if id.starts_with("ami-") => {
            let out = ec2
                .describe_images()
                .image_ids(id)
                .send()
                .await
                .map_err(from_sdk)?;
            out.images().first().cloned()
        }
        Some(name) => newest(&ec2, &["self", "amazon"], &[("name", name.as_str())]).await?,
        None => {
            let pattern = if arch == "arm64" {
                "Deep Learning ARM64 Base*GPU*"
            } else {
                "Deep Learning Base*GPU*"
            };
            let mut found = newest(
                &ec2,
                &["amazon"],
                &[
                    ("name", pattern),
                    ("architecture", arch.as_str()),
                    ("state", "available"),
                ],
            )
            .await?;
            if found.is_none() && p.clients.emulated().await {
                found = newest(
                    &ec2,
                    &["amazon"],
                    &[("name", "Deep Learning*"), ("state", "available")],
                )
                .await?;
                if found.is_none() {
                    found = newest(&ec2, &["amazon"], &[("state", "available")]).await?;
                }
            }
            found
        }
    };
    let Some(found) = found else {
        let what = p
            .config
            .image
            .clone()
            .unwrap_or_else(|| format!("an AWS Deep Learning Base GPU AMI ({arch})"));
        return Err(other(
            "InvalidAMIID.NotFound",
            format!("no image {what} in {region}; set `image` in provider \"aws\""),
        ));
    };
    let image = Image {
        id: found.image_id().unwrap_or_default().to_string(),
        root_device: found.root_device_name().unwrap_or("/dev/sda1").to_string(),
    };
    p.lock_images().insert(key, image.clone());
    Ok(image)
}

/// The newest image (by creation date) matching `filters` among `owners`' images.
async fn newest(
    ec2: &aws_sdk_ec2::Client,
    owners: &[&str],
    filters: &[(&str, &str)],
) -> Result<Option<aws_sdk_ec2::types::Image>, ProviderError> {
    let out = ec2
        .describe_images()
        .set_owners(Some(owners.iter().map(|s| s.to_string()).collect()))
        .set_filters(Some(
            filters.iter().map(|(k, v)| tags::filter(k, [*v])).collect(),
        ))
        .send()
        .await
        .map_err(from_sdk)?;
    Ok(out
        .images()
        .iter()
        .max_by(|a, b| (a.creation_date(), a.image_id()).cmp(&(b.creation_date(), b.image_id())))
        .cloned())
}

/// `arm64` for an instance type that only runs Arm, else `x86_64` (also when EC2 does not
/// describe the type: the launch will say what is wrong with it).
async fn architecture(p: &AwsProvider, region: &str, instance_type: &str) -> String {
    let key = (region.to_string(), instance_type.to_string());
    if let Some(a) = p.lock_arches().get(&key) {
        return a.clone();
    }
    let ec2 = p.clients.region(region).await.ec2;
    let arch = match ec2
        .describe_instance_types()
        .instance_types(InstanceType::from(instance_type))
        .send()
        .await
    {
        Ok(out) => {
            let archs: Vec<String> = out
                .instance_types()
                .first()
                .and_then(|t| t.processor_info())
                .map(|pi| {
                    pi.supported_architectures()
                        .iter()
                        .map(|a| a.as_str().to_string())
                        .collect()
                })
                .unwrap_or_default();
            if !archs.is_empty()
                && !archs.iter().any(|a| a == "x86_64")
                && archs.iter().any(|a| a == "arm64")
            {
                "arm64".to_string()
            } else {
                "x86_64".to_string()
            }
        }
        Err(_) => return "x86_64".to_string(),
    };
    p.lock_arches().insert(key, arch.clone());
    arch
}

/// Makes the cluster placement group unless it exists (one per fleet), tagged with the
/// lineage and the fleet's address (`fleet.train`), so that the deletion of the fleet's last
/// node can find it and delete it too ([`release_placement_group`]).
async fn ensure_placement_group(
    p: &AwsProvider,
    region: &str,
    name: &str,
    owner: &Ownership,
) -> Result<(), ProviderError> {
    let key = (region.to_string(), name.to_string());
    if p.lock_groups().contains(&key) {
        return Ok(());
    }
    let ec2 = p.clients.region(region).await.ec2;
    let group_tags = [
        (Ownership::LINEAGE_TAG.to_string(), owner.lineage.clone()),
        (
            Ownership::ADDRESS_TAG.to_string(),
            fleet_address(&owner.address).to_string(),
        ),
    ];
    match ec2
        .create_placement_group()
        .group_name(name)
        .strategy(aws_sdk_ec2::types::PlacementStrategy::Cluster)
        .tag_specifications(tags::spec(ResourceType::PlacementGroup, &group_tags))
        .send()
        .await
    {
        Ok(_) => {}
        Err(e) => {
            let e = from_sdk(e);
            if e.code != "InvalidPlacementGroup.Duplicate" {
                return Err(e);
            }
        }
    }
    p.lock_groups().insert(key);
    Ok(())
}

/// Attaches `volumes` to the running instance, each at a free device name, and waits until
/// they are attached. Volumes already attached to it are kept where they are; one attached
/// to another instance is an error. Returns volume id -> device.
async fn attach_volumes(
    p: &AwsProvider,
    region: &str,
    instance: &Instance,
    volumes: &[Resource],
) -> Result<BTreeMap<String, String>, ProviderError> {
    let mut devices = BTreeMap::new();
    if volumes.is_empty() {
        return Ok(devices);
    }
    let ec2 = p.clients.region(region).await.ec2;
    let id = instance.instance_id().unwrap_or_default().to_string();
    let ids: Vec<String> = volumes.iter().map(|v| v.provider_id.clone()).collect();
    let out = ec2
        .describe_volumes()
        .set_volume_ids(Some(ids.clone()))
        .send()
        .await
        .map_err(from_sdk)?;
    let mut used: BTreeSet<String> = instance
        .block_device_mappings()
        .iter()
        .filter_map(|m| m.device_name().map(str::to_string))
        .collect();
    if let Some(root) = instance.root_device_name() {
        used.insert(root.to_string());
    }
    for vid in &ids {
        let volume = out
            .volumes()
            .iter()
            .find(|v| v.volume_id() == Some(vid.as_str()))
            .ok_or_else(|| {
                ProviderError::new(
                    FailureKind::NotFound,
                    "InvalidVolume.NotFound",
                    format!("volume {vid} does not exist"),
                )
            })?;
        let live: Vec<_> = volume
            .attachments()
            .iter()
            .filter(|a| {
                !matches!(
                    a.state(),
                    Some(VolumeAttachmentState::Detached) | Some(VolumeAttachmentState::Detaching)
                )
            })
            .collect();
        if let Some(mine) = live.iter().find(|a| a.instance_id() == Some(id.as_str())) {
            if let Some(d) = mine.device() {
                devices.insert(vid.clone(), d.to_string());
            }
            continue;
        }
        if let Some(theirs) = live.first() {
            return Err(other(
                "VolumeInUse",
                format!(
                    "volume {vid} is attached to {}; it must be detached before {id} can take it",
                    theirs.instance_id().unwrap_or("another instance")
                ),
            ));
        }
        let device = DEVICES
            .iter()
            .find(|d| !used.contains(**d))
            .ok_or_else(|| {
                other(
                    "AttachmentLimitExceeded",
                    format!("no free device name left on {id}"),
                )
            })?
            .to_string();
        ec2.attach_volume()
            .volume_id(vid)
            .instance_id(&id)
            .device(&device)
            .send()
            .await
            .map_err(from_sdk)?;
        used.insert(device.clone());
        devices.insert(vid.clone(), device);
    }
    wait_for(p, &format!("volumes to attach to {id}"), || async {
        let out = ec2
            .describe_volumes()
            .set_volume_ids(Some(ids.clone()))
            .send()
            .await
            .map_err(from_sdk)?;
        let attached = out.volumes().iter().filter(|v| {
            v.attachments().iter().any(|a| {
                a.instance_id() == Some(id.as_str())
                    && a.state() == Some(&VolumeAttachmentState::Attached)
            })
        });
        Ok((attached.count() == ids.len()).then_some(()))
    })
    .await?;
    Ok(devices)
}

/// Detaches every volume attached to the instance that outlives it (not deleted on
/// termination, not its root), with its InstanceId, and waits until they are free.
async fn detach_volumes(
    p: &AwsProvider,
    region: &str,
    instance: &Instance,
) -> Result<(), ProviderError> {
    let ec2 = p.clients.region(region).await.ec2;
    let id = instance.instance_id().unwrap_or_default().to_string();
    let root = instance.root_device_name();
    let out = ec2
        .describe_volumes()
        .filters(tags::filter("attachment.instance-id", [id.as_str()]))
        .send()
        .await
        .map_err(from_sdk)?;
    let mut detached = Vec::new();
    for v in out.volumes() {
        let Some(vid) = v.volume_id() else { continue };
        for a in v.attachments() {
            if a.instance_id() != Some(id.as_str())
                || a.delete_on_termination() == Some(true)
                || (root.is_some() && a.device() == root)
                || matches!(a.state(), Some(VolumeAttachmentState::Detached))
            {
                continue;
            }
            if a.state() != Some(&VolumeAttachmentState::Detaching) {
                match ec2
                    .detach_volume()
                    .volume_id(vid)
                    .instance_id(&id)
                    .set_device(a.device().map(str::to_string))
                    .send()
                    .await
                {
                    Ok(_) => {}
                    Err(e) => {
                        let e = from_sdk(e);
                        // Already detached (or gone) by the time we asked: fine.
                        if e.kind != FailureKind::NotFound && e.code != "IncorrectState" {
                            return Err(e);
                        }
                    }
                }
            }
            detached.push(vid.to_string());
        }
    }
    if detached.is_empty() {
        return Ok(());
    }
    wait_for(p, &format!("volumes to detach from {id}"), || async {
        let out = ec2
            .describe_volumes()
            .filters(tags::filter(
                "volume-id",
                detached.iter().map(String::as_str),
            ))
            .send()
            .await
            .map_err(from_sdk)?;
        let still = out.volumes().iter().any(|v| {
            v.attachments().iter().any(|a| {
                a.instance_id() == Some(id.as_str())
                    && a.state() != Some(&VolumeAttachmentState::Detached)
            })
        });
        Ok((!still).then_some(()))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::price;

    #[test]
    fn prices_are_plain_decimals() {
        assert_eq!(price(55.04), "55.04");
        assert_eq!(price(0.00001), "0.00001");
        assert_eq!(price(3.0), "3");
        assert_eq!(price(0.0), "0");
    }
}
