//! Refresh, batched: per lineage (normally one per state) one `instances.aggregatedList`
//! filtered by the `flotilla-lineage` label, one `disks.aggregatedList` and one
//! `forwardingRules.aggregatedList` likewise, and one `targetPools.aggregatedList` filtered by
//! name (pools carry no labels), all paginated, instead of a call per resource. A resource
//! recorded without a lineage (by an older flotilla) is looked up by name in the same calls.
//! Whatever a list does not hold is [`Observed::Gone`].

use crate::{GcpProvider, api, gateways, instances, volumes};
use flotilla_core::provider::{Observed, ProviderError};
use flotilla_core::state::{Resource, ResourceKind, address_cmp};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

pub(crate) async fn refresh(
    p: &GcpProvider,
    resources: &[Resource],
) -> Result<Vec<Observed>, ProviderError> {
    let of_kind = |k: ResourceKind| -> Vec<&Resource> {
        resources
            .iter()
            .filter(|r| r.kind == k && !r.provider_id.is_empty())
            .collect()
    };
    let instances_now = index(
        listed(p, &of_kind(ResourceKind::Instance), Kind::Instances).await?,
        "zone",
    );
    let disks_now = index(
        listed(p, &of_kind(ResourceKind::Volume), Kind::Disks).await?,
        "zone",
    );
    let gateways = of_kind(ResourceKind::Gateway);
    let rules_now = index(listed(p, &gateways, Kind::Rules).await?, "region");
    let pools_now = index(listed(p, &gateways, Kind::Pools).await?, "region");

    // Instance names -> addresses, to name disk attachments and pool members.
    let address_of: HashMap<&str, &str> = resources
        .iter()
        .filter(|r| r.kind == ResourceKind::Instance)
        .map(|r| (r.provider_id.as_str(), r.address.as_str()))
        .collect();

    let mut out = Vec::with_capacity(resources.len());
    for r in resources {
        let observed = match r.kind {
            ResourceKind::Instance => {
                match instances_now.get(&(r.zone.clone(), r.provider_id.clone())) {
                    Some(i) => Observed::Exists(instance(r, i)),
                    None => Observed::Gone,
                }
            }
            ResourceKind::Volume => match disks_now.get(&(r.zone.clone(), r.provider_id.clone())) {
                Some(d) if d["status"].as_str() != Some("DELETING") => {
                    Observed::Exists(volume(r, d, &address_of))
                }
                _ => Observed::Gone,
            },
            ResourceKind::Gateway => {
                let key = (r.region.clone(), r.provider_id.clone());
                match (rules_now.get(&key), pools_now.get(&key)) {
                    (Some(_), pool) => Observed::Exists(gateway(r, pool, &address_of)),
                    (None, _) => Observed::Gone,
                }
            }
            // Never made on GCP (see `ProviderKind::needs_network`): nothing to read.
            ResourceKind::Network => Observed::Exists(r.clone()),
        };
        out.push(observed);
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Instances,
    Disks,
    Rules,
    Pools,
}

/// The listed items for `resources`: one aggregated list per lineage, plus one by name for
/// those without a lineage.
async fn listed(
    p: &GcpProvider,
    resources: &[&Resource],
    kind: Kind,
) -> Result<Vec<Value>, ProviderError> {
    if resources.is_empty() {
        return Ok(Vec::new());
    }
    let mut filters: BTreeSet<String> = BTreeSet::new();
    let mut unlabelled: BTreeSet<&str> = BTreeSet::new();
    for r in resources {
        match r.attributes.get("lineage").and_then(Value::as_str) {
            // Target pools have no labels: their names start with the lineage's prefix.
            Some(l) if !matches!(kind, Kind::Pools) => {
                filters.insert(format!("labels.{} = \"{l}\"", api::LINEAGE_LABEL));
            }
            _ => {
                unlabelled.insert(&r.provider_id);
            }
        }
    }
    if !unlabelled.is_empty() {
        let names: Vec<String> = unlabelled.iter().map(|n| regex_escape(n)).collect();
        filters.insert(format!("name eq \"({})\"", names.join("|")));
    }
    let mut out = Vec::new();
    for f in &filters {
        out.extend(match kind {
            Kind::Instances => instances::aggregated_instances(p, f).await?,
            Kind::Disks => volumes::aggregated_disks(p, f).await?,
            Kind::Rules => gateways::aggregated_rules(p, f).await?,
            Kind::Pools => gateways::aggregated_pools(p, f).await?,
        });
    }
    Ok(out)
}

/// Escapes the RE2 metacharacters of a name (resource names hold none, but state may be
/// edited by hand).
fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$\"".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Items by (zone or region, name).
fn index(items: Vec<Value>, scope: &str) -> HashMap<(String, String), Value> {
    items
        .into_iter()
        .map(|v| {
            (
                (
                    api::last(v[scope].as_str().unwrap_or_default()).to_string(),
                    v["name"].as_str().unwrap_or_default().to_string(),
                ),
                v,
            )
        })
        .collect()
}

/// The state's instance updated with what Compute says now: addresses, fleet tags, market.
fn instance(r: &Resource, i: &Value) -> Resource {
    let now = instances::resource(i, &r.address, r.offer.clone());
    let mut attributes = r.attributes.clone();
    let running = !now.attributes.contains_key("state");
    for (k, v) in now.attributes {
        attributes.insert(k, v);
    }
    if running {
        attributes.remove("state");
    }
    Resource {
        attributes,
        ..r.clone()
    }
}

/// The state's volume updated with what Compute says now; `attached_to` names the instance's
/// address when it is one of the refreshed instances.
fn volume(r: &Resource, d: &Value, address_of: &HashMap<&str, &str>) -> Resource {
    let mut now = volumes::resource(d, &r.address, &r.attributes);
    now.attributes.remove("attached_instance");
    match volumes::user(d) {
        Some(name) => {
            if let Some(address) = address_of.get(name) {
                now.attributes
                    .insert("attached_to".into(), Value::from(*address));
            }
        }
        None => {
            now.attributes.remove("attached_to");
        }
    }
    Resource {
        dependencies: r.dependencies.clone(),
        ..now
    }
}

/// The state's gateway updated with its pool's members. `targets` keeps the state's order
/// when the same addresses are members, so an unchanged gateway shows no change.
fn gateway(r: &Resource, pool: Option<&Value>, address_of: &HashMap<&str, &str>) -> Resource {
    let mut attributes = r.attributes.clone();
    let members: BTreeSet<String> = pool.map(gateways::member_names).unwrap_or_default();
    attributes.insert(
        "target_ids".into(),
        Value::Array(members.iter().map(|m| Value::from(m.clone())).collect()),
    );
    let mapped: Option<Vec<&str>> = members
        .iter()
        .map(|m| address_of.get(m.as_str()).copied())
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
    Resource {
        attributes,
        ..r.clone()
    }
}
