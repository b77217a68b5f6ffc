//! One operation against one provider: what each step of each kind of resource calls, and
//! what it records. The walker (`walk.rs`) decides when an operation runs; this decides what
//! it does, including a node's capacity failover and the adoption of what an interrupted
//! apply made.

use super::events::Event;
use super::fleets::{FleetSpec, Pin, fleet_of};
use super::limits::{RegionKey, Slot};
use super::recorder::Mutation;
use super::retry::retrying;
use super::walk::Shared;
use super::{OpError, ownership};
use crate::catalog::{Offer, ProviderKind};
use crate::plan::graph::{Operation, Step};
use crate::plan::{Action, Change};
use crate::provider::Ownership;
use crate::provider::{
    FailureKind, GatewayRequest, InstanceRequest, NetworkRequest, Provider, ProviderError,
    VolumeRequest,
};
use crate::state::{Resource, ResourceKind, network_address};
use serde_json::{Map, Value};
use std::sync::Arc;

type Attrs = Map<String, Value>;

/// What a completed operation leaves.
pub(super) struct Done {
    pub(super) mutation: Mutation,
    pub(super) provider_id: Option<String>,
    pub(super) offer: Option<Offer>,
    pub(super) adopted: bool,
}

/// The provider and region an operation starts in, for its permits.
pub(super) fn start_key(shared: &Shared, op: &Operation) -> Result<RegionKey, OpError> {
    let change = change(shared, op)?;
    match op.step {
        Step::Destroy => {
            if let Some(r) = shared.recorder.with_state(|s| s.get(&op.address).cloned()) {
                return Ok((r.provider, r.region));
            }
            key_of(change.before.as_ref(), op)
        }
        _ => key_of(change.after.as_ref(), op),
    }
}

fn key_of(attrs: Option<&Attrs>, op: &Operation) -> Result<RegionKey, OpError> {
    let attrs = attrs.ok_or_else(|| inconsistent(op, "the plan holds no attributes for it"))?;
    Ok((provider_kind(attrs, op)?, string(attrs, "region")))
}

/// Runs `op`, holding `slot` (moved along on a failover to another region) until the
/// provider has answered. The permits bound what runs against the providers; recording the
/// result happens after they are given back, so that the next operations' provider calls
/// overlap this one's state write.
pub(super) async fn execute(shared: &Shared, op: &Operation, slot: Slot) -> Result<Done, OpError> {
    let change = change(shared, op)?;
    if let (Step::Create, ResourceKind::Instance) = (op.step, op.kind) {
        return create_instance(shared, op, change, slot).await;
    }
    let _held = slot;
    match (op.step, op.kind) {
        (Step::Create, ResourceKind::Volume) => create_volume(shared, op, change).await,
        (Step::Create, ResourceKind::Gateway) => create_gateway(shared, op, change).await,
        (Step::Create, ResourceKind::Network) => create_network(shared, op, change).await,
        (Step::Update, kind) => update(shared, op, change, kind).await,
        (Step::Destroy, kind) => destroy(shared, op, kind).await,
        // Instances are made above; a kept resource never gets here.
        (Step::Create, ResourceKind::Instance) | (Step::Keep, _) => {
            Err(inconsistent(op, "there is nothing to run for it"))
        }
    }
}

fn change<'a>(shared: &'a Shared, op: &Operation) -> Result<&'a Change, OpError> {
    shared
        .changes
        .get(&op.address)
        .ok_or_else(|| inconsistent(op, "the plan has no change for it"))
}

fn inconsistent(op: &Operation, why: &str) -> OpError {
    OpError::Inconsistent(format!("{}: {why}", op.address))
}

fn provider(shared: &Shared, kind: ProviderKind) -> Result<&Arc<dyn Provider>, OpError> {
    shared.providers.get(&kind).ok_or(OpError::NoProvider(kind))
}

fn string(attrs: &Attrs, key: &str) -> String {
    attrs
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn provider_kind(attrs: &Attrs, op: &Operation) -> Result<ProviderKind, OpError> {
    let name = string(attrs, "provider");
    ProviderKind::parse(&name)
        .ok_or_else(|| inconsistent(op, &format!("unknown provider `{name}` in the plan")))
}

fn after<'a>(change: &'a Change, op: &Operation) -> Result<&'a Attrs, OpError> {
    change
        .after
        .as_ref()
        .ok_or_else(|| inconsistent(op, "the plan holds no attributes for it"))
}

/// The ownership of the resource at `address`, in the generation the state is at now: a
/// resource destroyed earlier in this apply (a replace) has already raised it.
fn owner(shared: &Shared, address: &str) -> Ownership {
    let generation = shared.recorder.with_state(|s| s.generation(address));
    ownership(&shared.lineage, address, generation)
}

fn state_resource(shared: &Shared, address: &str) -> Option<Resource> {
    shared.recorder.with_state(|s| s.get(address).cloned())
}

/// Calls `find` for the resource in `region`; throttling is retried.
async fn find(
    shared: &Shared,
    op: &Operation,
    p: &dyn Provider,
    region: &str,
) -> Result<Option<Resource>, OpError> {
    let owner = owner(shared, &op.address);
    retrying(&shared.options.retry, &shared.events, op, || {
        p.find(op.kind, region, &owner)
    })
    .await
    .map_err(OpError::Provider)
}

/// A node: find what an earlier apply made, else create it, failing over on capacity errors.
async fn create_instance(
    shared: &Shared,
    op: &Operation,
    change: &Change,
    mut slot: Slot,
) -> Result<Done, OpError> {
    let after = after(change, op)?;
    let fleet_name =
        fleet_of(&op.address).ok_or_else(|| inconsistent(op, "not a fleet node address"))?;
    let spec = shared.fleets.get(fleet_name).ok_or_else(|| {
        inconsistent(
            op,
            &format!("fleet `{fleet_name}` is not in the configuration"),
        )
    })?;
    let kind = provider_kind(after, op)?;
    let region = string(after, "region");
    let planned_zone = string(after, "zone");
    let instance_type = string(after, "instance_type");
    let spot = after.get("spot").and_then(Value::as_bool).unwrap_or(false);
    let planned = spec
        .candidates
        .iter()
        .find(|o| {
            o.provider == kind
                && o.region == region
                && o.instance_type == instance_type
                && o.spot == spot
                && (o.zone.is_empty() || planned_zone.is_empty() || o.zone == planned_zone)
        })
        .cloned()
        .ok_or_else(|| {
            inconsistent(
                op,
                &format!(
                    "the offer the plan chose ({kind} {instance_type} {region}{}) is no longer among the fleet's candidates (the catalog or the configuration changed)",
                    if spot { " spot" } else { "" }
                ),
            )
        })?;

    // Volumes are made before their node; it must stay with them.
    let mut volumes = Vec::new();
    for dep in &change.depends_on {
        if dep.starts_with("volume.") {
            let v = state_resource(shared, dep).ok_or_else(|| {
                inconsistent(op, &format!("its volume {dep} is not in the state"))
            })?;
            volumes.push(v);
        }
    }
    let pin = volumes.first().map(|v| Pin {
        provider: v.provider,
        region: v.region.clone(),
        zone: v.zone.clone(),
    });
    let available = |k: ProviderKind| shared.providers.contains_key(&k);

    let first =
        lock(&shared.failover).first_offer(spec, &planned, &planned_zone, pin.as_ref(), &available);
    let Some(first) = first else {
        return Err(OpError::NoCapacity {
            tried: lock(&shared.failover)
                .exhausted_answer(&planned)
                .map(|e| vec![(planned.clone(), e)])
                .unwrap_or_default(),
            limit_reached: false,
        });
    };
    let mut tried: Vec<(Offer, ProviderError)> = Vec::new();
    if let Some((from, why)) = first.passed_over {
        shared.events.emit(Event::FailedOver {
            address: op.address.clone(),
            from: from.clone(),
            why: why.clone(),
            to: first.offer.clone(),
        });
        tried.push((from, why));
    }
    let mut offer = first.offer;
    let mut searched: Vec<RegionKey> = Vec::new();
    let owner = owner(shared, &op.address);
    loop {
        let key: RegionKey = (offer.provider, offer.region.clone());
        slot = shared.limits.move_slot(slot, key.clone()).await;
        let p = provider(shared, offer.provider)?;

        // An earlier apply may have made this node here and died before recording it.
        if !searched.contains(&key) {
            searched.push(key.clone());
            if let Some(found) = find(shared, op, p.as_ref(), &offer.region).await? {
                let taken = resolve_offer(spec, &found).unwrap_or_else(|| offer.clone());
                // The earlier apply may have died between the launch and the attach: the
                // provider attaches what is missing in place (see `update_instance`).
                let found = if volumes.is_empty() {
                    found
                } else {
                    let request = InstanceRequest {
                        owner: owner.clone(),
                        offer: taken.clone(),
                        zone: (!found.zone.is_empty()).then(|| found.zone.clone()),
                        disk_gib: spec.disk_gib,
                        max_price: spec.max_price,
                        tags: spec.tags.clone(),
                        placement_group: None,
                        volumes: volumes.clone(),
                        attempt: 0,
                        network: None,
                    };
                    retrying(&shared.options.retry, &shared.events, op, || {
                        p.update_instance(&found, &request)
                    })
                    .await
                    .map_err(OpError::Provider)?
                };
                let r = finish_instance(found, op, change, spec, &taken);
                lock(&shared.failover).learned_zone(spec, &taken, &r.zone);
                let done = Done {
                    provider_id: Some(r.provider_id.clone()),
                    offer: Some(taken),
                    mutation: Mutation::Put(Box::new(r)),
                    adopted: true,
                };
                return Ok(done);
            }
        }

        let zone = pin
            .as_ref()
            .map(|p| p.zone.clone())
            .filter(|z| !z.is_empty())
            .or_else(|| lock(&shared.failover).cluster_zone(spec, &offer))
            .or_else(|| (!offer.zone.is_empty()).then(|| offer.zone.clone()))
            .or_else(|| {
                (offer == planned && !planned_zone.is_empty()).then(|| planned_zone.clone())
            });
        let network = region_network(shared, op, p.as_ref(), &offer).await?;
        let request = InstanceRequest {
            owner: owner.clone(),
            offer: offer.clone(),
            zone,
            disk_gib: spec.disk_gib,
            max_price: spec.max_price,
            tags: spec.tags.clone(),
            placement_group: (spec.cluster && offer.provider != ProviderKind::Baremetal)
                .then(|| placement_group(&shared.lineage, &spec.name)),
            volumes: volumes.clone(),
            attempt: u32::try_from(tried.len()).unwrap_or(u32::MAX),
            network,
        };
        let result = retrying(&shared.options.retry, &shared.events, op, || async {
            shared.limits.create_token(&key).await;
            p.create_instance(&request).await
        })
        .await;
        match result {
            Ok(r) => {
                let r = finish_instance(r, op, change, spec, &offer);
                lock(&shared.failover).learned_zone(spec, &offer, &r.zone);
                let done = Done {
                    provider_id: Some(r.provider_id.clone()),
                    offer: Some(offer),
                    mutation: Mutation::Put(Box::new(r)),
                    adopted: false,
                };
                return Ok(done);
            }
            // A quota error also rules out the rest of the offer's region (see `Failover`).
            Err(e) if matches!(e.kind, FailureKind::Capacity | FailureKind::Quota) => {
                let mut failover = lock(&shared.failover);
                failover.exhausted(&offer, &e);
                tried.push((offer.clone(), e.clone()));
                if tried.len() >= shared.options.max_offers_tried.max(1) {
                    return Err(OpError::NoCapacity {
                        tried,
                        limit_reached: true,
                    });
                }
                let tried_offers: Vec<Offer> = tried.iter().map(|(o, _)| o.clone()).collect();
                let Some(next) = failover.next_offer(spec, pin.as_ref(), &tried_offers, &available)
                else {
                    return Err(OpError::NoCapacity {
                        tried,
                        limit_reached: false,
                    });
                };
                drop(failover);
                shared.events.emit(Event::FailedOver {
                    address: op.address.clone(),
                    from: offer.clone(),
                    why: e,
                    to: next.clone(),
                });
                offer = next;
            }
            Err(e) => return Err(OpError::Provider(e)),
        }
    }
}

/// The cluster placement group of a fleet: one per fleet and state.
fn placement_group(lineage: &str, fleet: &str) -> String {
    let short: String = lineage
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    format!("flotilla-{short}-{fleet}")
}

/// The candidate a found node runs on, matched by provider, region, type and market.
fn resolve_offer(spec: &FleetSpec, found: &Resource) -> Option<Offer> {
    let (instance_type, spot) = match &found.offer {
        Some(o) => (o.instance_type.clone(), o.spot),
        None => (
            found.attributes.get("instance_type")?.as_str()?.to_string(),
            found
                .attributes
                .get("spot")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        ),
    };
    spec.candidates
        .iter()
        .find(|o| {
            o.provider == found.provider
                && o.region == found.region
                && o.instance_type == instance_type
                && o.spot == spot
                && (o.zone.is_empty() || found.zone.is_empty() || o.zone == found.zone)
        })
        .cloned()
        .or_else(|| found.offer.clone())
}

/// What the executor owns on a node's record (see [`Provider`]'s contract).
fn finish_instance(
    mut r: Resource,
    op: &Operation,
    change: &Change,
    spec: &FleetSpec,
    offer: &Offer,
) -> Resource {
    r.address = op.address.clone();
    r.kind = ResourceKind::Instance;
    r.provider = offer.provider;
    if r.region.is_empty() {
        r.region = offer.region.clone();
    }
    r.offer = Some(offer.clone());
    r.dependencies = change.depends_on.clone();
    if offer.provider.needs_network() {
        // The node joined its offer's region's network, which a failover may have changed.
        r.dependencies.retain(|d| !d.starts_with("network."));
        r.dependencies
            .push(network_address(offer.provider, &r.region));
    }
    r.attributes.insert(
        "tags".into(),
        Value::Object(
            spec.tags
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                .collect(),
        ),
    );
    r.attributes
        .entry("disk_gib".to_string())
        .or_insert_with(|| Value::from(spec.disk_gib));
    r
}

fn volume_request(shared: &Shared, op: &Operation, after: &Attrs) -> VolumeRequest {
    let zone = string(after, "zone");
    VolumeRequest {
        owner: owner(shared, &op.address),
        region: string(after, "region"),
        zone: (!zone.is_empty()).then_some(zone),
        size_gib: after
            .get("size_gib")
            .and_then(Value::as_f64)
            .map_or(0, |g| g.ceil().max(0.0) as u64),
        volume_type: string(after, "type"),
    }
}

/// What the executor owns on a volume's or gateway's record: the attributes the plan
/// compares, taken from the plan's `after`.
fn finish(
    mut r: Resource,
    op: &Operation,
    change: &Change,
    kind: ProviderKind,
    after: &Attrs,
    keys: &[&str],
) -> Resource {
    r.address = op.address.clone();
    r.kind = op.kind;
    r.provider = kind;
    if r.region.is_empty() {
        r.region = string(after, "region");
    }
    r.offer = None;
    r.dependencies = change.depends_on.clone();
    for k in keys {
        if let Some(v) = after.get(*k) {
            r.attributes.insert((*k).to_string(), v.clone());
        }
    }
    r
}

const VOLUME_KEYS: [&str; 3] = ["size_gib", "type", "attached_to"];
const GATEWAY_KEYS: [&str; 3] = ["targets", "domain", "port"];

async fn create_volume(shared: &Shared, op: &Operation, change: &Change) -> Result<Done, OpError> {
    let after = after(change, op)?;
    let kind = provider_kind(after, op)?;
    let p = provider(shared, kind)?;
    let request = volume_request(shared, op, after);
    let key: RegionKey = (kind, request.region.clone());
    let (r, adopted) = match find(shared, op, p.as_ref(), &request.region).await? {
        Some(found) => (found, true),
        None => {
            let r = retrying(&shared.options.retry, &shared.events, op, || async {
                shared.limits.create_token(&key).await;
                p.create_volume(&request).await
            })
            .await
            .map_err(OpError::Provider)?;
            (r, false)
        }
    };
    let r = finish(r, op, change, kind, after, &VOLUME_KEYS);
    attach_to_staying_node(shared, op, p.as_ref(), &r).await?;
    Ok(Done {
        provider_id: Some(r.provider_id.clone()),
        offer: None,
        mutation: Mutation::Put(Box::new(r)),
        adopted,
    })
}

/// A region's network: found (an earlier apply made it) or made, then recorded.
async fn create_network(shared: &Shared, op: &Operation, change: &Change) -> Result<Done, OpError> {
    let after = after(change, op)?;
    let kind = provider_kind(after, op)?;
    let p = provider(shared, kind)?;
    let region = string(after, "region");
    let (r, adopted) = make_network(shared, op, p.as_ref(), &region).await?;
    let r = finish(r, op, change, kind, after, &[]);
    Ok(Done {
        provider_id: Some(r.provider_id.clone()),
        offer: None,
        mutation: Mutation::Put(Box::new(r)),
        adopted,
    })
}

/// The network a node on `offer` joins, for a provider whose nodes need one: the one state
/// records for the offer's region, else (a failover to a region the plan did not choose)
/// found or made here and recorded before the node is made, so nothing is left unrecorded.
async fn region_network(
    shared: &Shared,
    op: &Operation,
    p: &dyn Provider,
    offer: &Offer,
) -> Result<Option<Resource>, OpError> {
    if !offer.provider.needs_network() {
        return Ok(None);
    }
    let address = network_address(offer.provider, &offer.region);
    if let Some(n) = state_resource(shared, &address) {
        return Ok(Some(n));
    }
    let (mut n, _) = make_network(shared, op, p, &offer.region).await?;
    n.address = address;
    n.kind = ResourceKind::Network;
    n.provider = offer.provider;
    if n.region.is_empty() {
        n.region = offer.region.clone();
    }
    n.offer = None;
    n.dependencies = Vec::new();
    let what = n.provider_id.clone();
    shared
        .recorder
        .record(Mutation::Put(Box::new(n.clone())))
        .await
        .map_err(|why| OpError::NotRecorded { what, why })?;
    Ok(Some(n))
}

/// Finds or makes the network of `region`; whether it was found.
async fn make_network(
    shared: &Shared,
    op: &Operation,
    p: &dyn Provider,
    region: &str,
) -> Result<(Resource, bool), OpError> {
    let address = network_address(p.kind(), region);
    let owner = owner(shared, &address);
    let found = retrying(&shared.options.retry, &shared.events, op, || {
        p.find(ResourceKind::Network, region, &owner)
    })
    .await
    .map_err(OpError::Provider)?;
    if let Some(found) = found {
        return Ok((found, true));
    }
    let key: RegionKey = (p.kind(), region.to_string());
    let request = NetworkRequest {
        owner: owner.clone(),
        region: region.to_string(),
    };
    let r = retrying(&shared.options.retry, &shared.events, op, || async {
        shared.limits.create_token(&key).await;
        p.create_network(&request).await
    })
    .await
    .map_err(OpError::Provider)?;
    Ok((r, false))
}

/// Attaches a volume made under a node that stays (the volume was deleted outside flotilla
/// and is made again): the node is not made again, so nothing else would attach it. A node
/// that is made or replaced in this apply attaches its volumes itself.
async fn attach_to_staying_node(
    shared: &Shared,
    op: &Operation,
    p: &dyn Provider,
    volume: &Resource,
) -> Result<(), OpError> {
    let Some(address) = volume.attributes.get("attached_to").and_then(Value::as_str) else {
        return Ok(());
    };
    let stays = shared
        .changes
        .get(address)
        .is_some_and(|c| matches!(c.action, Action::NoOp | Action::Update));
    let node = state_resource(shared, address);
    let spec = fleet_of(address).and_then(|f| shared.fleets.get(f));
    let (true, Some(node), Some(spec)) = (stays, node, spec) else {
        return Ok(());
    };
    let Some(offer) = node.offer.clone() else {
        return Ok(());
    };
    let request = InstanceRequest {
        owner: owner(shared, address),
        offer,
        zone: (!node.zone.is_empty()).then(|| node.zone.clone()),
        disk_gib: spec.disk_gib,
        max_price: spec.max_price,
        tags: spec.tags.clone(),
        placement_group: None,
        volumes: vec![volume.clone()],
        attempt: 0,
        network: None,
    };
    retrying(&shared.options.retry, &shared.events, op, || {
        p.update_instance(&node, &request)
    })
    .await
    .map_err(OpError::Provider)?;
    Ok(())
}

fn gateway_request(
    shared: &Shared,
    op: &Operation,
    after: &Attrs,
) -> Result<GatewayRequest, OpError> {
    let mut targets = Vec::new();
    for t in after
        .get("targets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let address = t.as_str().unwrap_or_default();
        let r = state_resource(shared, address).ok_or_else(|| {
            inconsistent(op, &format!("its target {address} is not in the state"))
        })?;
        targets.push(r);
    }
    let domain = string(after, "domain");
    Ok(GatewayRequest {
        owner: owner(shared, &op.address),
        region: string(after, "region"),
        domain: (!domain.is_empty()).then_some(domain),
        port: after
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(80),
        targets,
    })
}

async fn create_gateway(shared: &Shared, op: &Operation, change: &Change) -> Result<Done, OpError> {
    let after = after(change, op)?;
    let kind = provider_kind(after, op)?;
    let p = provider(shared, kind)?;
    let request = gateway_request(shared, op, after)?;
    let key: RegionKey = (kind, request.region.clone());
    let (r, adopted) = match find(shared, op, p.as_ref(), &request.region).await? {
        // What an earlier apply made may have other targets by now: bring it up to date.
        Some(found) => {
            let r = retrying(&shared.options.retry, &shared.events, op, || {
                p.update_gateway(&found, &request)
            })
            .await
            .map_err(OpError::Provider)?;
            (r, true)
        }
        None => {
            let r = retrying(&shared.options.retry, &shared.events, op, || async {
                shared.limits.create_token(&key).await;
                p.create_gateway(&request).await
            })
            .await
            .map_err(OpError::Provider)?;
            (r, false)
        }
    };
    let r = finish(r, op, change, kind, after, &GATEWAY_KEYS);
    Ok(Done {
        provider_id: Some(r.provider_id.clone()),
        offer: None,
        mutation: Mutation::Put(Box::new(r)),
        adopted,
    })
}

/// In place: a node's tags, a volume's size or type, a gateway's targets.
async fn update(
    shared: &Shared,
    op: &Operation,
    change: &Change,
    kind: ResourceKind,
) -> Result<Done, OpError> {
    let after = after(change, op)?;
    let existing = state_resource(shared, &op.address)
        .ok_or_else(|| inconsistent(op, "it is to be updated but is not in the state"))?;
    let p = provider(shared, existing.provider)?;
    let r = match kind {
        ResourceKind::Instance => {
            let fleet_name = fleet_of(&op.address)
                .ok_or_else(|| inconsistent(op, "not a fleet node address"))?;
            let spec = shared.fleets.get(fleet_name).ok_or_else(|| {
                inconsistent(
                    op,
                    &format!("fleet `{fleet_name}` is not in the configuration"),
                )
            })?;
            let offer = existing
                .offer
                .clone()
                .ok_or_else(|| inconsistent(op, "the state holds no offer for it"))?;
            let request = InstanceRequest {
                owner: owner(shared, &op.address),
                offer: offer.clone(),
                zone: (!existing.zone.is_empty()).then(|| existing.zone.clone()),
                disk_gib: spec.disk_gib,
                max_price: spec.max_price,
                tags: spec.tags.clone(),
                placement_group: None,
                volumes: Vec::new(),
                attempt: 0,
                network: None,
            };
            let r = retrying(&shared.options.retry, &shared.events, op, || {
                p.update_instance(&existing, &request)
            })
            .await
            .map_err(OpError::Provider)?;
            finish_instance(r, op, change, spec, &offer)
        }
        ResourceKind::Volume => {
            let request = volume_request(shared, op, after);
            let r = retrying(&shared.options.retry, &shared.events, op, || {
                p.update_volume(&existing, &request)
            })
            .await
            .map_err(OpError::Provider)?;
            finish(r, op, change, existing.provider, after, &VOLUME_KEYS)
        }
        ResourceKind::Gateway => {
            let request = gateway_request(shared, op, after)?;
            let r = retrying(&shared.options.retry, &shared.events, op, || {
                p.update_gateway(&existing, &request)
            })
            .await
            .map_err(OpError::Provider)?;
            finish(r, op, change, existing.provider, after, &GATEWAY_KEYS)
        }
        // A network has nothing to change in place: the plan never updates one.
        ResourceKind::Network => {
            return Err(inconsistent(op, "a network is never updated in place"));
        }
    };
    Ok(Done {
        provider_id: Some(r.provider_id.clone()),
        offer: r.offer.clone(),
        mutation: Mutation::Put(Box::new(r)),
        adopted: false,
    })
}

/// Deletes what state records; something already gone counts as deleted.
async fn destroy(shared: &Shared, op: &Operation, kind: ResourceKind) -> Result<Done, OpError> {
    let Some(existing) = state_resource(shared, &op.address) else {
        // Nothing recorded: nothing to delete.
        return Ok(Done {
            mutation: Mutation::Remove(op.address.clone()),
            provider_id: None,
            offer: None,
            adopted: false,
        });
    };
    let p = provider(shared, existing.provider)?;
    let result = retrying(&shared.options.retry, &shared.events, op, || match kind {
        ResourceKind::Instance => p.delete_instance(&existing),
        ResourceKind::Volume => p.delete_volume(&existing),
        ResourceKind::Gateway => p.delete_gateway(&existing),
        ResourceKind::Network => p.delete_network(&existing),
    })
    .await;
    match result {
        Ok(()) => {}
        Err(e) if e.kind == FailureKind::NotFound => {}
        Err(e) => return Err(OpError::Provider(e)),
    }
    Ok(Done {
        mutation: Mutation::Remove(op.address.clone()),
        provider_id: None,
        offer: None,
        adopted: false,
    })
}

/// Locks a std mutex, shrugging off poisoning (a panicked task leaves the data usable).
pub(super) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
