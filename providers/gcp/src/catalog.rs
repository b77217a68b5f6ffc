//! Live GCP offers for `flotilla offers --refresh`: which machine and accelerator types the
//! configured regions' zones offer now, from `machineTypes.aggregatedList` and
//! `acceleratorTypes.aggregatedList`.
//!
//! Compute says where a type can run and its shape, not what it costs. Prices come from the
//! embedded snapshot, which is priced per (type, region) like the catalog itself: the Cloud
//! Billing Catalog API is not called (it needs its own credentials and SKU-to-type mapping, and
//! no test server speaks it), and [`PRICE_SOURCE`] says so wherever a refresh is described.
//! So a refresh keeps the snapshot's offers of a region that some zone of it offers now
//! (machine type and, for N1 offers, the attached accelerator), with the live vCPUs and memory,
//! and drops those no zone offers any more.
//!
//! Both lists are one paginated call per project for all regions, not a call per zone. A
//! failing call stops the whole refresh, so the caller writes nothing and the previous cache
//! stays as it was.

use crate::GcpProvider;
use crate::api;
use crate::instances::Machine;
use flotilla_core::catalog::{Catalog, Offer, ProviderKind};
use flotilla_core::provider::ProviderError;
use flotilla_core::spec::Memory;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Where a refresh's prices come from, for the cache header and the progress lines.
pub const PRICE_SOURCE: &str =
    "the embedded snapshot (the Cloud Billing Catalog API is not queried)";

/// What one region gave, for the progress line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionOffers {
    /// The region.
    pub region: String,
    /// Its zones that list machine types (the provider's `zones` of it, when it names some).
    pub zones: usize,
    /// Distinct machine types its zones offer.
    pub machine_types: usize,
    /// Distinct accelerator types its zones offer.
    pub accelerator_types: usize,
    /// Offers kept: the snapshot's offers of the region that a zone offers now.
    pub offers: usize,
    /// The snapshot's offers of the region that no zone offers now (left out).
    pub unavailable: usize,
}

/// Everything a refresh fetched, over all regions.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedOffers {
    /// The offers of every region.
    pub offers: Vec<Offer>,
    /// Each region's counts, in the order asked.
    pub regions: Vec<RegionOffers>,
}

/// Why a refresh failed: the call (or region) and the cloud's own code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("gcp {what} failed: {code}: {message}")]
pub struct RefreshError {
    /// `machineTypes.aggregatedList`, `acceleratorTypes.aggregatedList` or `region R`.
    pub what: String,
    /// The cloud's code, or the client's for a failure on the way (`Credentials`).
    pub code: String,
    /// The cloud's message.
    pub message: String,
}

impl RefreshError {
    fn of(what: &str, e: ProviderError) -> RefreshError {
        RefreshError {
            what: what.to_string(),
            code: e.code,
            message: e.message,
        }
    }
}

/// The two type lists a refresh (and a create's zone choice) reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeList {
    /// `machineTypes`.
    Machine,
    /// `acceleratorTypes`.
    Accelerator,
}

/// Every (zone, item) of one `aggregatedList` of `list` in the project, all pages, optionally
/// filtered.
pub(crate) async fn aggregated_types(
    p: &GcpProvider,
    list: TypeList,
    filter: Option<&str>,
) -> Result<Vec<(String, Value)>, ProviderError> {
    let items = match list {
        TypeList::Machine => api::aggregated!(p, machine_types, "machineTypes", filter).await?,
        TypeList::Accelerator => {
            api::aggregated!(p, accelerator_types, "acceleratorTypes", filter).await?
        }
    };
    Ok(items
        .into_iter()
        .filter_map(|(scope, v)| Some((scope.strip_prefix("zones/")?.to_string(), v)))
        .collect())
}

/// A machine type's shape: vCPUs and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    vcpus: u32,
    memory: Memory,
}

/// Fetches the live GCP offers of `regions`, calling `progress` after each region.
///
/// `embedded` is the catalog whose GCP offers and prices are reused (the embedded snapshot).
pub async fn fetch_offers(
    provider: &GcpProvider,
    regions: &[String],
    embedded: &Catalog,
    mut progress: impl FnMut(&RegionOffers),
) -> Result<FetchedOffers, RefreshError> {
    let machines = aggregated_types(provider, TypeList::Machine, None)
        .await
        .map_err(|e| RefreshError::of("machineTypes.aggregatedList", e))?;
    let accelerators = aggregated_types(provider, TypeList::Accelerator, None)
        .await
        .map_err(|e| RefreshError::of("acceleratorTypes.aggregatedList", e))?;
    // zone -> machine type -> shape; zone -> accelerator types.
    let mut shapes: BTreeMap<String, BTreeMap<String, Shape>> = BTreeMap::new();
    for (zone, item) in &machines {
        let (Some(name), Some(vcpus), Some(mib)) = (
            item["name"].as_str(),
            item["guestCpus"].as_u64(),
            item["memoryMb"].as_u64(),
        ) else {
            continue;
        };
        shapes.entry(zone.clone()).or_default().insert(
            name.to_string(),
            Shape {
                vcpus: u32::try_from(vcpus).unwrap_or(u32::MAX),
                memory: Memory::from_mib(mib),
            },
        );
    }
    let mut gpus: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (zone, item) in &accelerators {
        if let Some(name) = item["name"].as_str() {
            gpus.entry(zone.clone())
                .or_default()
                .insert(name.to_string());
        }
    }

    let mut fetched = FetchedOffers {
        offers: Vec::new(),
        regions: Vec::new(),
    };
    for region in regions {
        let configured: Vec<&String> = provider
            .config()
            .zones
            .iter()
            .filter(|z| api::region_of(z) == region)
            .collect();
        let zones: Vec<&String> = shapes
            .keys()
            .filter(|z| api::region_of(z) == region)
            .filter(|z| configured.is_empty() || configured.contains(z))
            .collect();
        if zones.is_empty() {
            return Err(RefreshError {
                what: format!("region {region}"),
                code: "UnknownRegion".to_string(),
                message: format!(
                    "no zone of {region} lists machine types{}; check the provider's `regions` and `zones`",
                    if configured.is_empty() {
                        ""
                    } else {
                        " among the provider's `zones`"
                    }
                ),
            });
        }
        let mut counts = RegionOffers {
            region: region.clone(),
            zones: zones.len(),
            machine_types: zones
                .iter()
                .flat_map(|z| shapes[*z].keys())
                .collect::<BTreeSet<_>>()
                .len(),
            accelerator_types: zones
                .iter()
                .filter_map(|z| gpus.get(*z))
                .flatten()
                .collect::<BTreeSet<_>>()
                .len(),
            offers: 0,
            unavailable: 0,
        };
        let snapshot = embedded
            .offers()
            .iter()
            .filter(|o| o.provider == ProviderKind::Gcp && o.region == *region);
        for offer in snapshot {
            let Ok(machine) = Machine::parse(&offer.instance_type) else {
                counts.unavailable += 1;
                continue;
            };
            let live = zones.iter().find_map(|z| {
                let shape = shapes[*z].get(&machine.machine_type)?;
                let has_gpu = machine
                    .accelerator
                    .as_ref()
                    .is_none_or(|(a, _)| gpus.get(*z).is_some_and(|g| g.contains(a)));
                has_gpu.then_some(*shape)
            });
            match live {
                Some(shape) => {
                    let mut o = offer.clone();
                    o.vcpus = shape.vcpus;
                    o.memory = shape.memory;
                    fetched.offers.push(o);
                    counts.offers += 1;
                }
                None => counts.unavailable += 1,
            }
        }
        progress(&counts);
        fetched.regions.push(counts);
    }
    Ok(fetched)
}
