//! Refresh, batched: per region one `DescribeInstances` (filtered by instance id, up to
//! [`CHUNK`] ids a call, paginated), one `DescribeVolumes` likewise, and one listing of the
//! region's load balancers, instead of one call per resource; a gateway's targets take one
//! `DescribeTargetHealth` each. Filters, not id lists, so an id EC2 no longer knows is simply
//! absent (reported [`Observed::Gone`]) instead of failing the whole batch.

use crate::error::from_sdk;
use crate::{AwsProvider, gateways, instances, tags, volumes};
use aws_sdk_ec2::types::{Instance, InstanceStateName, Volume};
use flotilla_core::provider::{Observed, ProviderError};
use flotilla_core::state::{Resource, ResourceKind, address_cmp};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Ids per filter: EC2 takes at most 200 values in one filter.
pub(crate) const CHUNK: usize = 200;

pub(crate) async fn refresh(
    p: &AwsProvider,
    resources: &[Resource],
) -> Result<Vec<Observed>, ProviderError> {
    // region -> ids, per kind
    let mut instance_ids: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut volume_ids: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut gateway_regions: BTreeSet<&str> = BTreeSet::new();
    for r in resources {
        if r.provider_id.is_empty() {
            continue;
        }
        match r.kind {
            ResourceKind::Instance => instance_ids
                .entry(&r.region)
                .or_default()
                .push(&r.provider_id),
            ResourceKind::Volume => volume_ids
                .entry(&r.region)
                .or_default()
                .push(&r.provider_id),
            ResourceKind::Gateway => {
                gateway_regions.insert(&r.region);
            }
            ResourceKind::Network => {}
        }
    }

    let mut found_instances: HashMap<(String, String), Instance> = HashMap::new();
    for (region, ids) in &instance_ids {
        for i in describe_instances(p, region, ids).await? {
            if let Some(id) = i.instance_id() {
                found_instances.insert((region.to_string(), id.to_string()), i);
            }
        }
    }
    let mut found_volumes: HashMap<(String, String), Volume> = HashMap::new();
    for (region, ids) in &volume_ids {
        for v in describe_volumes(p, region, ids).await? {
            if let Some(id) = v.volume_id() {
                found_volumes.insert((region.to_string(), id.to_string()), v);
            }
        }
    }
    let mut found_lbs: HashMap<String, aws_sdk_elasticloadbalancingv2::types::LoadBalancer> =
        HashMap::new();
    for region in &gateway_regions {
        let elb = p.clients.region(region).await.elb;
        let mut pages = elb
            .describe_load_balancers()
            .into_paginator()
            .items()
            .send();
        while let Some(lb) = pages.next().await {
            let lb = lb.map_err(from_sdk)?;
            if let Some(arn) = lb.load_balancer_arn() {
                found_lbs.insert(arn.to_string(), lb);
            }
        }
    }

    // Instance ids -> addresses, to name volume attachments and gateway targets.
    let address_of: HashMap<&str, &str> = resources
        .iter()
        .filter(|r| r.kind == ResourceKind::Instance)
        .map(|r| (r.provider_id.as_str(), r.address.as_str()))
        .collect();

    let mut out = Vec::with_capacity(resources.len());
    for r in resources {
        let key = (r.region.clone(), r.provider_id.clone());
        let observed = match r.kind {
            ResourceKind::Instance => match found_instances.get(&key) {
                Some(i) if instances::is_live(i) => Observed::Exists(instance(r, i)),
                _ => Observed::Gone,
            },
            ResourceKind::Volume => match found_volumes.get(&key) {
                Some(v)
                    if v.state()
                        .is_none_or(|s| !matches!(s.as_str(), "deleting" | "deleted")) =>
                {
                    Observed::Exists(volume(r, v, &address_of))
                }
                _ => Observed::Gone,
            },
            ResourceKind::Gateway => match found_lbs.get(&r.provider_id) {
                Some(lb) => Observed::Exists(gateway(p, r, lb, &address_of).await?),
                None => Observed::Gone,
            },
            // Never made on AWS (see `ProviderKind::needs_network`): nothing to read.
            ResourceKind::Network => Observed::Exists(r.clone()),
        };
        out.push(observed);
    }
    Ok(out)
}

/// Instances by id in one region, all of them (any state), in chunks of [`CHUNK`].
async fn describe_instances(
    p: &AwsProvider,
    region: &str,
    ids: &[&str],
) -> Result<Vec<Instance>, ProviderError> {
    let ec2 = p.clients.region(region).await.ec2;
    let mut all = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        let mut pages = ec2
            .describe_instances()
            .filters(tags::filter("instance-id", chunk.iter().copied()))
            .max_results(1000)
            .into_paginator()
            .items()
            .send();
        while let Some(reservation) = pages.next().await {
            all.extend(reservation.map_err(from_sdk)?.instances().iter().cloned());
        }
    }
    Ok(all)
}

/// Volumes by id in one region, in chunks of [`CHUNK`].
async fn describe_volumes(
    p: &AwsProvider,
    region: &str,
    ids: &[&str],
) -> Result<Vec<Volume>, ProviderError> {
    let ec2 = p.clients.region(region).await.ec2;
    let mut all = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        let mut pages = ec2
            .describe_volumes()
            .filters(tags::filter("volume-id", chunk.iter().copied()))
            .max_results(500)
            .into_paginator()
            .items()
            .send();
        while let Some(v) = pages.next().await {
            all.push(v.map_err(from_sdk)?);
        }
    }
    Ok(all)
}

/// The state's instance updated with what EC2 says now: zone, addresses, fleet tags, market.
fn instance(r: &Resource, i: &Instance) -> Resource {
    let now = instances::resource(i, &r.region, &r.address, r.offer.clone());
    let mut attributes = r.attributes.clone();
    for (k, v) in now.attributes {
        attributes.insert(k, v);
    }
    let stopped = instances::state(i).is_some_and(|s| s != InstanceStateName::Running);
    if !stopped {
        attributes.remove("state");
    }
    Resource {
        zone: if now.zone.is_empty() {
            r.zone.clone()
        } else {
            now.zone
        },
        attributes,
        ..r.clone()
    }
}

/// The state's volume updated with what EC2 says now; `attached_to` names the instance's
/// address when it is one of the refreshed instances.
fn volume(r: &Resource, v: &Volume, address_of: &HashMap<&str, &str>) -> Resource {
    let mut now = volumes::resource(v, &r.region, &r.address, &r.attributes);
    match now
        .attributes
        .get("attached_instance")
        .and_then(Value::as_str)
    {
        Some(id) => {
            if let Some(address) = address_of.get(id) {
                now.attributes
                    .insert("attached_to".into(), Value::from(*address));
            }
        }
        None => {
            now.attributes.remove("attached_to");
        }
    }
    // The EC2 status of the attachment changes with every attach and detach that flotilla
    // itself makes; what the plan compares is `attached_to`, so these are not reported as
    // changes made outside flotilla.
    for volatile in ["state", "attached_instance", "device"] {
        now.attributes.remove(volatile);
    }
    Resource {
        dependencies: r.dependencies.clone(),
        ..now
    }
}

/// The state's gateway updated with its DNS name and registered targets. `targets` keeps the
/// state's order when the same addresses are registered, so an unchanged gateway shows no
/// change.
async fn gateway(
    p: &AwsProvider,
    r: &Resource,
    lb: &aws_sdk_elasticloadbalancingv2::types::LoadBalancer,
    address_of: &HashMap<&str, &str>,
) -> Result<Resource, ProviderError> {
    let mut attributes = r.attributes.clone();
    attributes.insert(
        "dns_name".into(),
        lb.dns_name().map_or(Value::Null, Value::from),
    );
    let tg_arn = attributes
        .get("target_group_arn")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(tg_arn) = tg_arn {
        let elb = p.clients.region(&r.region).await.elb;
        match gateways::target_ids(&elb, &tg_arn).await {
            Ok(ids) => {
                attributes.insert(
                    "target_ids".into(),
                    Value::Array(ids.iter().map(|i| Value::from(i.clone())).collect()),
                );
                let mapped: Option<Vec<&str>> = ids
                    .iter()
                    .map(|id| address_of.get(id.as_str()).copied())
                    .collect();
                if let Some(mut observed) = mapped {
                    let stored: BTreeSet<&str> = attributes
                        .get("targets")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    let now: BTreeSet<&str> = observed.iter().copied().collect();
                    if stored != now {
                        observed.sort_by(|a, b| address_cmp(a, b));
                        attributes.insert(
                            "targets".into(),
                            Value::Array(observed.into_iter().map(Value::from).collect()),
                        );
                    }
                }
            }
            Err(e) if e.kind == flotilla_core::provider::FailureKind::NotFound => {
                attributes.insert("targets".into(), Value::Array(Vec::new()));
                attributes.insert("target_ids".into(), Value::Array(Vec::new()));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Resource {
        attributes,
        ..r.clone()
    })
}
