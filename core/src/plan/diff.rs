//! Desired resources versus state: the changes.
//!
//! Three passes, each over config maps in name order so the plan is deterministic:
//! 1. nodes: for each fleet, keep the nodes in state that still satisfy it, then place the
//!    others (cluster group, volume pins, free hosts, cheapest offer); then the networks the
//!    placed nodes need (one per provider+region, for providers such as Azure whose nodes
//!    need a network the user does not write), which the nodes depend on;
//! 2. volumes: one per node of the mounting fleet, following its node's placement;
//! 3. gateways: in front of their target fleets' nodes, updated in place when they change.
//!
//! Whatever is in state and no longer desired is deleted. `--target`, `--replace` and
//! `--destroy` are applied on the way.

use super::select::{self, Candidates, Group, Pin};
use super::{Action, Change, Cost, FleetOffers, Plan, PlanError, PlanOptions, StateRef, Summary};
use crate::catalog::{Catalog, Offer, ProviderKind};
use crate::config::{Config, Fleet, Placement};
use crate::state::{Resource, ResourceKind, State, network_address};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

type Attrs = Map<String, Value>;

/// A node's place after the plan.
#[derive(Debug, Clone)]
struct Placed<'a> {
    offer: &'a Offer,
    /// Known zone (from state or a volume), else empty.
    zone: String,
}

/// The decision for one desired node.
struct NodePlan<'a> {
    address: String,
    index: usize,
    placed: Placed<'a>,
    action: Action,
    reason: String,
    forces: Vec<String>,
    notes: Vec<String>,
}

pub(super) fn plan(
    config: &Config,
    state: &State,
    catalog: &Catalog,
    options: &PlanOptions,
) -> Result<Plan, PlanError> {
    let existing: HashMap<&str, &Resource> = state
        .resources
        .iter()
        .map(|r| (r.address.as_str(), r))
        .collect();
    if !options.targets.is_empty() || !options.replace.is_empty() {
        check_addresses(config, &existing, options)?;
    }
    let replace: HashSet<&str> = options.replace.iter().map(String::as_str).collect();

    let mut changes: Vec<Change> = Vec::new();
    let mut offers = Vec::new();
    if options.destroy {
        for r in &state.resources {
            if r.kind == ResourceKind::Volume {
                check_prevent_destroy(config, &r.address, "destroy requested")?;
            }
            changes.push(delete_change(r, "destroy requested"));
        }
    } else {
        let host_offers = config.host_offers();
        let mut used_hosts = BTreeSet::new();
        let mut fleet_nodes: BTreeMap<&str, Vec<NodePlan<'_>>> = BTreeMap::new();

        // Pass 1a: hosts kept by nodes already on them are not free for anyone else.
        for r in &state.resources {
            if let Some(o) = &r.offer
                && o.provider == ProviderKind::Baremetal
                && r.kind == ResourceKind::Instance
            {
                used_hosts.insert(o.instance_type.clone());
            }
        }
        // Pass 1b: nodes.
        let mut candidates_by_fleet = Vec::new();
        for fleet in config.fleets.values() {
            let query = select::fleet_query(config, fleet);
            candidates_by_fleet.push((fleet, Candidates::new(catalog, &host_offers, query)));
        }
        for (fleet, candidates) in &candidates_by_fleet {
            let nodes = plan_fleet(
                config,
                fleet,
                candidates,
                &existing,
                &replace,
                &mut used_hosts,
            )?;
            if nodes
                .iter()
                .any(|n| matches!(n.action, Action::Create | Action::Replace))
            {
                offers.push(offers_table(fleet, candidates, &nodes));
            }
            fleet_nodes.insert(fleet.name.as_str(), nodes);
        }
        // A host freed by a node that moved off it is free again only for the next plan: a
        // plan never hands one host to two nodes.

        // A volume replaced under a node that would stay takes its node along: no provider
        // can delete a disk that is still attached, and a node is given its volumes only
        // when it is made.
        for (fleet_name, nodes) in fleet_nodes.iter_mut() {
            let fleet = &config.fleets[*fleet_name];
            for n in nodes.iter_mut() {
                if !matches!(n.action, Action::NoOp | Action::Update) {
                    continue;
                }
                for volume_name in &fleet.volumes {
                    let address = format!("volume.{volume_name}[{}]", n.index);
                    let change = volume_change(
                        config,
                        volume_name,
                        &address,
                        n,
                        existing.get(address.as_str()).copied(),
                        replace.contains(address.as_str()),
                    )?;
                    if change.action == Action::Replace {
                        n.action = Action::Replace;
                        n.reason = format!(
                            "its volume {address} is replaced, and a disk cannot be swapped under a running node"
                        );
                        break;
                    }
                }
            }
        }

        for (fleet_name, nodes) in &fleet_nodes {
            let fleet = &config.fleets[*fleet_name];
            for n in nodes {
                changes.push(node_change(
                    fleet,
                    n,
                    existing.get(n.address.as_str()).copied(),
                ));
            }
        }

        // Pass 1c: the networks those nodes join (`network.azure.eastus`), each made before
        // the first node of its region and kept while any node is there.
        let networks = plan_networks(&mut changes, &existing);
        changes.extend(networks.values().cloned());
        let networks: HashSet<String> = networks.into_keys().collect();

        // Pass 2: volumes follow their nodes.
        for (fleet_name, nodes) in &fleet_nodes {
            let fleet = &config.fleets[*fleet_name];
            for volume_name in &fleet.volumes {
                for n in nodes {
                    let address = format!("volume.{volume_name}[{}]", n.index);
                    let change = volume_change(
                        config,
                        volume_name,
                        &address,
                        n,
                        existing.get(address.as_str()).copied(),
                        replace.contains(address.as_str()),
                    )?;
                    changes.push(change);
                }
            }
        }
        // The node that moves with a replaced volume says so.
        let replaced_volumes: HashMap<String, String> = changes
            .iter()
            .filter(|c| c.kind == ResourceKind::Volume && c.action == Action::Replace)
            .filter_map(|c| {
                let node = c.after.as_ref()?.get("attached_to")?.as_str()?;
                Some((node.to_string(), c.address.clone()))
            })
            .collect();
        for c in changes.iter_mut() {
            if let Some(v) = replaced_volumes.get(&c.address)
                && c.action == Action::Replace
            {
                c.notes.push(format!(
                    "its volume {v} is replaced with it: the data on it will be lost"
                ));
            }
        }

        // Pass 3: gateways.
        let mut gateways = HashSet::new();
        let mounts: HashMap<&str, u32> = config
            .fleets
            .values()
            .flat_map(|f| f.volumes.iter().map(move |v| (v.as_str(), f.nodes)))
            .collect();
        for gateway in config.gateways.values() {
            let address = format!("gateway.{}", gateway.name);
            let change = gateway_change(
                gateway,
                &address,
                &fleet_nodes,
                existing.get(address.as_str()).copied(),
                replace.contains(address.as_str()),
            );
            if let Some(change) = change {
                gateways.insert(gateway.name.as_str());
                changes.push(change);
            }
        }

        // Whatever state holds that is no longer desired goes.
        for r in &state.resources {
            if is_desired(config, &mounts, &gateways, &r.address) || networks.contains(&r.address) {
                continue;
            }
            let reason = removal_reason(config, &r.address);
            if r.kind == ResourceKind::Volume {
                check_prevent_destroy(config, &r.address, &reason)?;
            }
            changes.push(delete_change(r, &reason));
        }
    }

    if !options.targets.is_empty() {
        let keep = targeted(&options.targets, &changes);
        changes.retain(|c| keep.contains(&c.address));
    }
    // Changes come out nearly sorted; the cached key parses each address once.
    changes.sort_by_cached_key(|c| address_key(&c.address));

    let summary = summarise(&changes);
    let cost = cost(state, &changes);
    let plan = Plan {
        format_version: super::PLAN_FORMAT_VERSION.to_string(),
        flotilla_version: crate::VERSION.to_string(),
        state: StateRef {
            lineage: state.lineage.clone(),
            serial: state.serial,
        },
        config_digest: config.digest(),
        catalog: catalog.source_info().describe(),
        catalog_source: catalog.source_info().clone(),
        changes,
        offers,
        summary,
        cost,
        destroy: options.destroy,
        drift: Vec::new(),
        hosts: Vec::new(),
    };
    super::graph::build(&plan)?;
    Ok(plan)
}

/// Decides every node of one fleet: which are kept, which replaced, where new ones go.
fn plan_fleet<'a>(
    config: &Config,
    fleet: &Fleet,
    candidates: &Candidates<'a>,
    existing: &HashMap<&str, &'a Resource>,
    replace: &HashSet<&str>,
    used_hosts: &mut BTreeSet<String>,
) -> Result<Vec<NodePlan<'a>>, PlanError> {
    let n = fleet.nodes as usize;
    let addresses: Vec<String> = (0..n)
        .map(|i| format!("fleet.{}[{i}]", fleet.name))
        .collect();
    let forced =
        |a: &str| replace.contains(a) || replace.contains(format!("fleet.{}", fleet.name).as_str());

    // First: which nodes in state still satisfy the fleet.
    let mut kept: Vec<Option<Placed<'a>>> = vec![None; n];
    let mut replace_reason: Vec<Option<(String, Vec<String>)>> = vec![None; n];
    for (i, address) in addresses.iter().enumerate() {
        let Some(r) = existing.get(address.as_str()) else {
            continue;
        };
        match keep_reason(config, fleet, candidates, r) {
            Ok(offer) if forced(address) => {
                let _ = offer;
                replace_reason[i] = Some(("replacement requested with --replace".into(), vec![]));
            }
            Ok(offer) => {
                kept[i] = Some(Placed {
                    offer,
                    zone: r.zone.clone(),
                })
            }
            Err(why) => replace_reason[i] = Some(why),
        }
    }

    // A cluster fleet lives in one group: the lowest-index kept node's, else the cheapest that
    // holds every node still to place. Kept nodes outside it move into it.
    let mut group: Option<Group> = None;
    if fleet.placement == Placement::Cluster {
        group = kept
            .iter()
            .flatten()
            .next()
            .map(|p| Group::of(p.offer, &p.zone));
        if group.is_none() {
            let needed = kept.iter().filter(|k| k.is_none()).count();
            group = select::cheapest_group(candidates, used_hosts, needed);
        }
        if let Some(g) = &group {
            for (i, k) in kept.iter_mut().enumerate() {
                if let Some(p) = k {
                    let here = Group::of(p.offer, &p.zone);
                    if !g.allows(p.offer)
                        || (!g.zone.is_empty() && !here.zone.is_empty() && here.zone != g.zone)
                    {
                        replace_reason[i] = Some((
                            format!("placement: cluster fleet is in {g}; node is in {here}"),
                            vec!["region".into()],
                        ));
                        *k = None;
                    }
                }
            }
        }
    }

    let mut out = Vec::with_capacity(n);
    for (i, address) in addresses.into_iter().enumerate() {
        if let Some(placed) = kept[i].take() {
            let r = existing[address.as_str()];
            let mut notes = Vec::new();
            if let Some(cheaper) = candidates.cheapest()
                && cheaper.price_per_hour + 1e-9 < placed.offer.price_per_hour
            {
                {
                    notes.push(format!(
                        "kept on {} {} at {}/h although {} {} {} costs {}/h (saves {}/h); `--replace {address}` to move it",
                        placed.offer.provider,
                        placed.offer.instance_type,
                        money(placed.offer.price_per_hour),
                        cheaper.provider,
                        cheaper.instance_type,
                        cheaper.region,
                        money(cheaper.price_per_hour),
                        money(placed.offer.price_per_hour - cheaper.price_per_hour),
                    ));
                }
            }
            let (action, reason) = if tags_of(r) == fleet.tags {
                (Action::NoOp, "satisfies the fleet".to_string())
            } else {
                (Action::Update, "tags changed".to_string())
            };
            out.push(NodePlan {
                address,
                index: i,
                placed,
                action,
                reason,
                forces: vec![],
                notes,
            });
            continue;
        }
        // A node keeps its volumes' zone if an offer there satisfies it; otherwise it moves,
        // and its volumes move with it (the data is lost — `volume_change` says so).
        let pin = volume_pin(fleet, i, existing, replace);
        let in_group = |o: &Offer| group.as_ref().is_none_or(|g| g.allows(o));
        let mut chosen = None;
        if let Some(p) = &pin {
            chosen = candidates
                .cloud
                .iter()
                .copied()
                .find(|o| select::pin_allows(p, o) && in_group(o))
                .map(|o| Placed {
                    offer: o,
                    zone: p.zone.clone(),
                });
        }
        if chosen.is_none() {
            chosen = if group
                .as_ref()
                .is_some_and(|g| g.provider == ProviderKind::Baremetal)
                || group.is_none()
            {
                candidates.best(used_hosts, None).filter(|o| in_group(o))
            } else {
                None
            }
            .or_else(|| candidates.cloud.iter().copied().find(|o| in_group(o)))
            .map(|o| Placed {
                offer: o,
                zone: group.as_ref().map(|g| g.zone.clone()).unwrap_or_default(),
            });
        }
        let Some(placed) = chosen else {
            return Err(PlanError::NoOffer {
                fleet: fleet.name.clone(),
                origin: fleet.origin.to_string(),
                explanation: no_offer_explanation(candidates, used_hosts, group.as_ref()),
            });
        };
        if placed.offer.provider == ProviderKind::Baremetal {
            used_hosts.insert(placed.offer.instance_type.clone());
        }
        let (action, reason, forces) = match replace_reason[i].take() {
            Some((why, forces)) => (Action::Replace, why, forces),
            None => (Action::Create, "new node".to_string(), vec![]),
        };
        out.push(NodePlan {
            address,
            index: i,
            placed,
            action,
            reason,
            forces,
            notes: vec![],
        });
    }
    Ok(out)
}

/// Whether a node in state still satisfies its fleet: `Ok(offer)` to keep it (the offer to
/// account it at), or `Err((reason, attributes forcing replacement))`.
fn keep_reason<'a>(
    config: &Config,
    fleet: &Fleet,
    candidates: &Candidates<'a>,
    r: &'a Resource,
) -> Result<&'a Offer, (String, Vec<String>)> {
    let Some(offer) = &r.offer else {
        return Err(("state holds no offer for this node".into(), vec![]));
    };
    if offer.provider == ProviderKind::Baremetal {
        let declared = config
            .providers
            .baremetal
            .as_ref()
            .and_then(|b| b.hosts.iter().find(|h| h.name == offer.instance_type));
        let Some(host) = declared else {
            return Err((
                format!("host `{}` is no longer declared", offer.instance_type),
                vec!["instance_type".into()],
            ));
        };
        if let Some(why) = candidates.query.mismatch(&host.offer()) {
            return Err((why.clone(), vec![forced_attribute(&why)]));
        }
        return Ok(offer);
    }
    if let Some(why) = candidates.query.mismatch(offer) {
        return Err((why.clone(), vec![forced_attribute(&why)]));
    }
    if let Some(disk) = r.attributes.get("disk_gib").and_then(Value::as_f64) {
        let disk = crate::spec::Memory::from_gib_f64(disk);
        if !fleet.resources.disk.contains(disk) {
            return Err((
                format!("disk: {disk} does not match {}", fleet.resources.disk),
                vec!["disk".into()],
            ));
        }
    }
    Ok(offer)
}

/// Which `after` attribute a mismatch reason is about, for `# forces replacement`.
fn forced_attribute(reason: &str) -> String {
    let head = reason.split([':', ' ']).next().unwrap_or("");
    match head {
        "price" => "price_per_hour",
        "spot" => "spot",
        "provider" => "provider",
        "region" => "region",
        "zone" => "zone",
        "instance" => "instance_type",
        "gpu" => "gpu",
        _ => "instance_type",
    }
    .to_string()
}

/// The provider, region and zone a node's existing volumes hold it to, unless a volume is
/// being replaced anyway.
fn volume_pin(
    fleet: &Fleet,
    index: usize,
    existing: &HashMap<&str, &Resource>,
    replace: &HashSet<&str>,
) -> Option<Pin> {
    fleet.volumes.iter().find_map(|v| {
        let address = format!("volume.{v}[{index}]");
        if replace.contains(address.as_str()) {
            return None;
        }
        existing.get(address.as_str()).map(|r| Pin {
            provider: r.provider,
            region: r.region.clone(),
            zone: r.zone.clone(),
        })
    })
}

fn no_offer_explanation(
    candidates: &Candidates<'_>,
    used_hosts: &BTreeSet<String>,
    group: Option<&Group>,
) -> String {
    if candidates.matched() == 0 {
        return candidates_explain(candidates);
    }
    if let Some(g) = group {
        return format!(
            "{} offers match, but none in the cluster's group {g}",
            candidates.matched()
        );
    }
    if candidates.cloud.is_empty() {
        return format!(
            "{} matching hosts, all already used ({}), and no cloud offer matches",
            candidates.hosts.len(),
            used_hosts.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    candidates_explain(candidates)
}

fn candidates_explain(candidates: &Candidates<'_>) -> String {
    candidates.explanation()
}

fn offers_table(fleet: &Fleet, candidates: &Candidates<'_>, nodes: &[NodePlan<'_>]) -> FleetOffers {
    let chosen = nodes
        .iter()
        .find(|n| matches!(n.action, Action::Create | Action::Replace))
        .map(|n| n.placed.offer);
    let mut top: Vec<Offer> = chosen.into_iter().cloned().collect();
    for o in candidates.hosts.iter().chain(candidates.cloud.iter()) {
        if top.len() >= 3 {
            break;
        }
        if chosen.is_some_and(|c| std::ptr::eq(c, *o)) {
            continue;
        }
        top.push((*o).clone());
    }
    FleetOffers {
        fleet: fleet.name.clone(),
        matched: candidates.matched(),
        top,
    }
}

fn tags_of(r: &Resource) -> BTreeMap<String, String> {
    r.attributes
        .get("tags")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// An instance's attributes as plans show them.
fn instance_attrs(offer: &Offer, zone: &str) -> Attrs {
    let zone = if !offer.zone.is_empty() {
        Value::from(offer.zone.clone())
    } else if !zone.is_empty() {
        Value::from(zone)
    } else {
        Value::Null
    };
    let mut m = Map::with_capacity(7);
    m.insert("provider".into(), Value::from(offer.provider.as_str()));
    m.insert("region".into(), Value::from(offer.region.clone()));
    m.insert("zone".into(), zone);
    m.insert(
        "instance_type".into(),
        Value::from(offer.instance_type.clone()),
    );
    m.insert("spot".into(), Value::from(offer.spot));
    m.insert("price_per_hour".into(), json!(offer.price_per_hour));
    m.insert("gpu".into(), Value::from(offer.gpu_label()));
    m
}

fn resource_attrs(r: &Resource) -> Attrs {
    match (&r.kind, &r.offer) {
        (ResourceKind::Instance, Some(o)) => instance_attrs(o, &r.zone),
        _ => {
            let mut m = Map::with_capacity(8);
            m.insert("provider".into(), Value::from(r.provider.as_str()));
            m.insert("region".into(), Value::from(r.region.clone()));
            m.insert(
                "zone".into(),
                if r.zone.is_empty() {
                    Value::Null
                } else {
                    Value::from(r.zone.clone())
                },
            );
            for (k, v) in &r.attributes {
                if matches!(
                    k.as_str(),
                    "size_gib" | "type" | "targets" | "domain" | "port" | "prevent_destroy"
                ) {
                    m.insert(k.clone(), v.clone());
                }
            }
            m
        }
    }
}

fn node_change(fleet: &Fleet, n: &NodePlan<'_>, before: Option<&Resource>) -> Change {
    let mut after = instance_attrs(n.placed.offer, &n.placed.zone);
    let mut forces = n.forces.clone();
    let mut before_attrs = before.map(resource_attrs);
    // An in-place update changes only the tags: show them, old and new, so the reviewer
    // sees what is put back.
    if n.action == Action::Update
        && let (Some(b), Some(r)) = (&mut before_attrs, before)
    {
        b.insert("tags".into(), json!(tags_of(r)));
        after.insert("tags".into(), json!(fleet.tags));
    }
    if n.action == Action::Replace
        && let Some(b) = &before_attrs
    {
        {
            // Name every offer attribute that differs; the reason's one goes first.
            for key in [
                "provider",
                "region",
                "instance_type",
                "spot",
                "gpu",
                "price_per_hour",
            ] {
                if b.get(key) != after.get(key) && !forces.iter().any(|f| f == key) {
                    forces.push(key.to_string());
                }
            }
            forces.retain(|k| b.get(k.as_str()) != after.get(k.as_str()) || k == "disk");
        }
    }
    let depends_on = fleet
        .volumes
        .iter()
        .map(|v| format!("volume.{v}[{}]", n.index))
        .collect();
    Change {
        address: n.address.clone(),
        kind: ResourceKind::Instance,
        action: n.action,
        reason: n.reason.clone(),
        depends_on,
        before: before_attrs,
        after: Some(after),
        forces_replacement: forces,
        notes: n.notes.clone(),
    }
}

fn volume_change(
    config: &Config,
    name: &str,
    address: &str,
    node: &NodePlan<'_>,
    before: Option<&Resource>,
    forced: bool,
) -> Result<Change, PlanError> {
    let volume = &config.volumes[name];
    let provider = volume.provider.unwrap_or(node.placed.offer.provider);
    let region = volume
        .region
        .clone()
        .unwrap_or_else(|| node.placed.offer.region.clone());
    let zone = if node.placed.zone.is_empty() {
        Value::Null
    } else {
        Value::from(node.placed.zone.clone())
    };
    let size_gib = json!(volume.size.gib());
    let mut after = Map::with_capacity(7);
    after.insert("provider".into(), Value::from(provider.as_str()));
    after.insert("region".into(), Value::from(region.clone()));
    after.insert("zone".into(), zone.clone());
    after.insert("size_gib".into(), size_gib.clone());
    after.insert(
        "type".into(),
        Value::from(
            volume
                .volume_type
                .clone()
                .unwrap_or_else(|| default_volume_type(provider).to_string()),
        ),
    );
    after.insert("attached_to".into(), Value::from(node.address.clone()));
    let mut change = Change {
        address: address.to_string(),
        kind: ResourceKind::Volume,
        action: Action::Create,
        reason: String::new(),
        depends_on: vec![],
        before: None,
        after: None,
        forces_replacement: vec![],
        notes: vec![],
    };
    let Some(r) = before else {
        change.reason = format!("new volume for {}", node.address);
        change.after = Some(after);
        return Ok(change);
    };
    let mut b = resource_attrs(r);
    b.insert("attached_to".into(), Value::from(node.address.clone()));
    b.entry("size_gib").or_insert(Value::Null);
    b.entry("type").or_insert(Value::Null);
    // A kept volume keeps its zone.
    if let Some(z) = b.get("zone").cloned()
        && !z.is_null()
        && after.get("zone").is_some_and(Value::is_null)
        && r.provider == provider
        && r.region == region
    {
        after.insert("zone".into(), z);
    }

    let moved: Vec<String> = ["provider", "region", "zone"]
        .into_iter()
        .filter(|k| {
            let (x, y) = (b.get(*k), after.get(*k));
            // An unknown zone after is decided at apply, next to the volume.
            !(x == y || (*k == "zone" && y.is_some_and(Value::is_null)))
        })
        .map(String::from)
        .collect();
    let old_size = r
        .attributes
        .get("size_gib")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let new_size = volume.size.gib();
    let why_replace = if forced {
        Some(("replacement requested with --replace".to_string(), vec![]))
    } else if !moved.is_empty() {
        Some((
            format!(
                "{} moves its node to {} {}; a disk cannot follow across zones",
                node.address, provider, region
            ),
            moved,
        ))
    } else if new_size + 1e-9 < old_size {
        Some((
            format!(
                "size: {} is smaller than {} and disks cannot shrink",
                volume.size,
                crate::spec::Memory::from_gib_f64(old_size)
            ),
            vec!["size_gib".to_string()],
        ))
    } else {
        None
    };
    if let Some((why, forces)) = why_replace {
        if volume.prevent_destroy {
            return Err(PlanError::PreventDestroy {
                address: address.to_string(),
                volume: name.to_string(),
                why: why.clone(),
            });
        }
        change.action = Action::Replace;
        change.reason = why;
        change.forces_replacement = forces;
        change.notes.push(format!(
            "{address} will be destroyed and made anew: the data on it will be lost"
        ));
    } else if (new_size - old_size).abs() > 1e-9
        || b.get("type").is_some_and(|t| !t.is_null()) && b.get("type") != after.get("type")
    {
        change.action = Action::Update;
        change.reason = "size or type changed; resized in place".to_string();
    } else {
        change.action = Action::NoOp;
        change.reason = format!("attached to {}", node.address);
    }
    change.before = Some(b);
    change.after = Some(after);
    Ok(change)
}

/// The disk type a volume gets when its block names none.
fn default_volume_type(provider: ProviderKind) -> &'static str {
    match provider {
        ProviderKind::Aws => "gp3",
        ProviderKind::Gcp => "pd-balanced",
        ProviderKind::Azure => "Premium_LRS",
        ProviderKind::Baremetal => "local",
    }
}

fn gateway_change(
    gateway: &crate::config::Gateway,
    address: &str,
    fleet_nodes: &BTreeMap<&str, Vec<NodePlan<'_>>>,
    before: Option<&Resource>,
    forced: bool,
) -> Option<Change> {
    let nodes: Vec<&NodePlan<'_>> = gateway
        .targets
        .iter()
        .filter_map(|t| fleet_nodes.get(t.as_str()))
        .flatten()
        .collect();
    let first = nodes.first().map(|n| n.placed.offer);
    let provider = gateway.provider.or(first.map(|o| o.provider))?;
    let region = gateway
        .region
        .clone()
        .or_else(|| first.map(|o| o.region.clone()))?;
    let targets: Vec<Value> = nodes
        .iter()
        .map(|n| Value::from(n.address.clone()))
        .collect();
    let mut after = Map::with_capacity(6);
    after.insert("provider".into(), Value::from(provider.as_str()));
    after.insert("region".into(), Value::from(region.clone()));
    if let Some(domain) = &gateway.domain {
        after.insert("domain".into(), Value::from(domain.clone()));
    }
    after.insert("port".into(), Value::from(gateway.port));
    after.insert("targets".into(), Value::Array(targets.clone()));
    let mut change = Change {
        address: address.to_string(),
        kind: ResourceKind::Gateway,
        action: Action::Create,
        reason: "new gateway".to_string(),
        depends_on: nodes.iter().map(|n| n.address.clone()).collect(),
        before: None,
        after: Some(after.clone()),
        forces_replacement: vec![],
        notes: vec![],
    };
    let Some(r) = before else { return Some(change) };
    let mut b = Map::with_capacity(6);
    b.insert("provider".into(), Value::from(r.provider.as_str()));
    b.insert("region".into(), Value::from(r.region.clone()));
    for k in ["domain", "port", "targets"] {
        if let Some(v) = r.attributes.get(k) {
            b.insert(k.into(), v.clone());
        }
    }
    change.before = Some(b.clone());
    let moved: Vec<String> = ["provider", "region"]
        .into_iter()
        .filter(|k| b.get(*k) != after.get(*k))
        .map(String::from)
        .collect();
    let renewed: Vec<&str> = nodes
        .iter()
        .filter(|n| matches!(n.action, Action::Create | Action::Replace))
        .map(|n| n.address.as_str())
        .collect();
    if forced {
        change.action = Action::Replace;
        change.reason = "replacement requested with --replace".into();
    } else if !moved.is_empty() {
        change.action = Action::Replace;
        change.reason = format!("its targets moved to {provider} {region}");
        change.forces_replacement = moved;
    } else if b != after || !renewed.is_empty() {
        change.action = Action::Update;
        let old: BTreeSet<&str> = b
            .get("targets")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let new: BTreeSet<&str> = targets.iter().filter_map(Value::as_str).collect();
        let mut parts = Vec::new();
        let added: Vec<&str> = new.difference(&old).copied().collect();
        let removed: Vec<&str> = old.difference(&new).copied().collect();
        let renewed_kept: Vec<&str> = renewed
            .iter()
            .copied()
            .filter(|a| old.contains(a))
            .collect();
        if !added.is_empty() {
            parts.push(format!("adds {}", added.join(", ")));
        }
        if !removed.is_empty() {
            parts.push(format!("removes {}", removed.join(", ")));
        }
        if !renewed_kept.is_empty() {
            parts.push(format!("re-registers replaced {}", renewed_kept.join(", ")));
        }
        for k in ["domain", "port"] {
            if b.get(k) != after.get(k) {
                parts.push(format!("{k} changed"));
            }
        }
        change.reason = format!("targets changed: {}", parts.join("; "));
        if parts.is_empty() {
            change.reason = "attributes changed".into();
        }
    } else {
        change.action = Action::NoOp;
        change.reason = "targets unchanged".into();
    }
    Some(change)
}

fn delete_change(r: &Resource, reason: &str) -> Change {
    let mut notes = Vec::new();
    if r.kind == ResourceKind::Volume {
        notes.push(format!(
            "{} will be destroyed: the data on it will be lost",
            r.address
        ));
    }
    Change {
        address: r.address.clone(),
        kind: r.kind,
        action: Action::Delete,
        reason: reason.to_string(),
        depends_on: r.dependencies.clone(),
        before: Some(resource_attrs(r)),
        after: None,
        forces_replacement: vec![],
        notes,
    }
}

/// The networks the node changes in `changes` need, as changes (created when state has none,
/// else kept), keyed by address; each node that needs one is made to depend on it.
fn plan_networks(
    changes: &mut [Change],
    existing: &HashMap<&str, &Resource>,
) -> BTreeMap<String, Change> {
    let mut networks = BTreeMap::new();
    for c in changes.iter_mut() {
        let Some(after) = c
            .after
            .as_ref()
            .filter(|_| c.kind == ResourceKind::Instance)
        else {
            continue;
        };
        let provider = after
            .get("provider")
            .and_then(Value::as_str)
            .and_then(ProviderKind::parse);
        let region = after.get("region").and_then(Value::as_str).unwrap_or("");
        let Some(provider) = provider.filter(|p| p.needs_network()) else {
            continue;
        };
        let address = network_address(provider, region);
        c.depends_on.push(address.clone());
        networks.entry(address.clone()).or_insert_with(|| {
            // Regional: no zone to show.
            let mut attrs = Map::with_capacity(2);
            attrs.insert("provider".into(), Value::from(provider.as_str()));
            attrs.insert("region".into(), Value::from(region));
            let before = existing.get(address.as_str()).map(|r| resource_attrs(r));
            let (action, reason) = match before {
                Some(_) => (Action::NoOp, "in use".to_string()),
                None => (
                    Action::Create,
                    format!("{provider} nodes in {region} need a network"),
                ),
            };
            Change {
                address,
                kind: ResourceKind::Network,
                action,
                reason,
                depends_on: vec![],
                before,
                after: Some(attrs),
                forces_replacement: vec![],
                notes: vec![],
            }
        });
    }
    networks
}

/// Splits `fleet.train[12]` into (`fleet.train`, Some(12)) for address order.
fn address_key(address: &str) -> (String, Option<u64>, String) {
    match address.strip_suffix(']').and_then(|s| s.rsplit_once('[')) {
        Some((base, i)) => (base.to_string(), i.parse().ok(), address.to_string()),
        None => (address.to_string(), None, address.to_string()),
    }
}

/// Whether the configuration still wants the resource at a state address: a node below its
/// fleet's count, a volume of such a node, a gateway with targets. Computed from the address
/// rather than looked up, so a plan over a large state builds no set of every address.
fn is_desired(
    config: &Config,
    mounts: &HashMap<&str, u32>,
    gateways: &HashSet<&str>,
    address: &str,
) -> bool {
    let (base, index) = match address.strip_suffix(']').and_then(|s| s.rsplit_once('[')) {
        Some((b, i)) => (b, i.parse::<u32>().ok()),
        None => (address, None),
    };
    match base.split_once('.') {
        Some(("fleet", name)) => {
            index.is_some_and(|i| config.fleets.get(name).is_some_and(|f| i < f.nodes))
        }
        Some(("volume", name)) => index.is_some_and(|i| mounts.get(name).is_some_and(|n| i < *n)),
        Some(("gateway", name)) => index.is_none() && gateways.contains(name),
        _ => false,
    }
}

/// Why a resource in state is not desired any more.
fn removal_reason(config: &Config, address: &str) -> String {
    let (base, index) = match address.strip_suffix(']').and_then(|s| s.rsplit_once('[')) {
        Some((b, i)) => (b, i.parse::<usize>().ok()),
        None => (address, None),
    };
    let Some((kind, name)) = base.split_once('.') else {
        return "not in the configuration".into();
    };
    match kind {
        "fleet" => match config.fleets.get(name) {
            None => format!("fleet `{name}` is no longer in the configuration"),
            Some(f) => format!(
                "scale down to {} node{}",
                f.nodes,
                if f.nodes == 1 { "" } else { "s" }
            ),
        },
        "volume" => match config.volumes.get(name) {
            None => format!("volume `{name}` is no longer in the configuration"),
            Some(_) => {
                let mounter = config
                    .fleets
                    .values()
                    .find(|f| f.volumes.iter().any(|v| v == name));
                match (mounter, index) {
                    (Some(f), Some(_)) => {
                        format!("fleet `{}` scales down to {} nodes", f.name, f.nodes)
                    }
                    _ => format!("volume `{name}` is no longer mounted by any fleet"),
                }
            }
        },
        "network" => "no node uses it any more".into(),
        "gateway" => {
            if config.gateways.contains_key(name) {
                "its targets have no nodes".into()
            } else {
                format!("gateway `{name}` is no longer in the configuration")
            }
        }
        _ => "not in the configuration".into(),
    }
}

fn check_prevent_destroy(config: &Config, address: &str, why: &str) -> Result<(), PlanError> {
    let base = address.split('[').next().unwrap_or(address);
    if let Some(name) = base.strip_prefix("volume.")
        && config.volumes.get(name).is_some_and(|v| v.prevent_destroy)
    {
        return Err(PlanError::PreventDestroy {
            address: address.to_string(),
            volume: name.to_string(),
            why: why.to_string(),
        });
    }
    Ok(())
}

/// `--target` and `--replace` must name something configured or in state.
fn check_addresses(
    config: &Config,
    existing: &HashMap<&str, &Resource>,
    options: &PlanOptions,
) -> Result<(), PlanError> {
    let mut known: BTreeSet<String> = existing.keys().map(|a| a.to_string()).collect();
    for f in config.fleets.values() {
        known.insert(format!("fleet.{}", f.name));
        for i in 0..f.nodes {
            known.insert(format!("fleet.{}[{i}]", f.name));
            for v in &f.volumes {
                known.insert(format!("volume.{v}[{i}]"));
            }
        }
    }
    for v in config.volumes.keys() {
        known.insert(format!("volume.{v}"));
    }
    for g in config.gateways.keys() {
        known.insert(format!("gateway.{g}"));
    }
    for a in existing.keys() {
        if let Some((base, _)) = a.split_once('[') {
            known.insert(base.to_string());
        }
    }
    for (flag, list) in [
        ("--target", &options.targets),
        ("--replace", &options.replace),
    ] {
        for address in list {
            if !known.contains(address) {
                let best = crate::config::closest(address, known.iter().map(String::as_str));
                return Err(PlanError::UnknownAddress {
                    flag: flag.to_string(),
                    address: address.clone(),
                    hint: best
                        .map(|b| format!("; did you mean `{b}`?"))
                        .unwrap_or_default(),
                });
            }
        }
    }
    Ok(())
}

/// The addresses `--target` keeps: the targets and everything they depend on.
fn targeted(targets: &[String], changes: &[Change]) -> HashSet<String> {
    let by_address: HashMap<&str, &Change> =
        changes.iter().map(|c| (c.address.as_str(), c)).collect();
    let mut keep = HashSet::new();
    let mut stack: Vec<String> = Vec::new();
    for t in targets {
        for c in changes {
            if c.address == *t
                || c.address
                    .strip_prefix(t.as_str())
                    .is_some_and(|rest| rest.starts_with('['))
            {
                stack.push(c.address.clone());
            }
        }
    }
    while let Some(a) = stack.pop() {
        if !keep.insert(a.clone()) {
            continue;
        }
        if let Some(c) = by_address.get(a.as_str()) {
            stack.extend(c.depends_on.iter().cloned());
        }
    }
    keep
}

fn summarise(changes: &[Change]) -> Summary {
    let mut s = Summary::default();
    for c in changes {
        match c.action {
            Action::Create => s.add += 1,
            Action::Update => s.change += 1,
            Action::Replace => {
                s.add += 1;
                s.destroy += 1;
            }
            Action::Delete => s.destroy += 1,
            Action::NoOp => {}
        }
    }
    s
}

/// Instance cost before (state) and after (every change's `after`, plus state instances the
/// plan leaves out under `--target`), to the cent.
fn cost(state: &State, changes: &[Change]) -> Cost {
    let price = |a: &Attrs| {
        a.get("price_per_hour")
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
    };
    let before: f64 = state
        .resources
        .iter()
        .filter_map(|r| r.offer.as_ref())
        .map(|o| o.price_per_hour)
        .sum();
    let covered: HashSet<&str> = changes.iter().map(|c| c.address.as_str()).collect();
    let after: f64 = changes
        .iter()
        .filter(|c| c.kind == ResourceKind::Instance)
        .filter_map(|c| c.after.as_ref())
        .map(price)
        .sum::<f64>()
        + state
            .resources
            .iter()
            .filter(|r| !covered.contains(r.address.as_str()))
            .filter_map(|r| r.offer.as_ref())
            .map(|o| o.price_per_hour)
            .sum::<f64>();
    // Exact figures (to the micro-dollar, which only drops float noise); the renderers round
    // to cents, and derive the monthly before and after from these, so they add up.
    let micro = |x: f64| (x * 1e6).round() / 1e6;
    Cost {
        before_per_hour: micro(before),
        after_per_hour: micro(after),
        delta_per_hour: micro(after - before),
        delta_per_month: micro((after - before) * super::HOURS_PER_MONTH),
    }
}

/// Prices as plans print them: up to 4 decimals, trailing zeros trimmed.
pub(super) fn money(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}
