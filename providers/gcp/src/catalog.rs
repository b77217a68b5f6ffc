//! Live GCP offers for `flotilla offers --refresh`: which machine and accelerator types the
//! configured regions' zones offer now, from `machineTypes.aggregatedList` and
//! `acceleratorTypes.aggregatedList`, priced from the Cloud Billing Catalog API.
//!
//! Compute says where a type can run and its shape, not what it costs; the catalog's offers
//! (machine type, or N1 type plus attached GPUs, per region) come from the embedded snapshot.
//! So a refresh keeps the snapshot's offers of a region that some zone of it offers now
//! (machine type and, for N1 offers, the attached accelerator), with the live vCPUs and memory,
//! and drops those no zone offers any more. Each kept offer is then priced from the Compute
//! Engine SKUs ([`crate::billing`]: vCPUs, memory and GPUs, per region and usage type); one
//! whose parts are not all found keeps the snapshot's price and is counted. When the Billing
//! API refuses or fails, every offer keeps the snapshot's price and [`PriceSource`] says why:
//! prices are an improvement, not a reason to fail a refresh.
//!
//! Both type lists are one paginated call per project for all regions, not a call per zone,
//! and they are made before the Billing API is asked. A failing type list stops the whole
//! refresh, so the caller writes nothing and the previous cache stays as it was.

use crate::GcpProvider;
use crate::api;
use crate::billing::{self, SkuPrices};
use crate::instances::Machine;
use flotilla_core::catalog::{Catalog, Offer, ProviderKind};
use flotilla_core::provider::ProviderError;
use flotilla_core::spec::Memory;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Where a refresh's prices come from, for the line that announces it; what a refresh
/// actually used is its [`PriceSource`].
pub const PRICE_SOURCE: &str =
    "the Cloud Billing Catalog API (Compute Engine SKUs), else the embedded snapshot";

/// Where a refresh's prices came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceSource {
    /// The Cloud Billing Catalog API answered.
    Billing {
        /// How many Compute Engine SKUs it listed.
        skus: usize,
        /// Where it was asked (Google's API or an override).
        endpoint: String,
    },
    /// It did not (refused, failed or unreachable): every offer keeps the snapshot's price.
    Snapshot {
        /// Why, with the API's own status and message.
        why: String,
    },
}

impl std::fmt::Display for PriceSource {
    /// `Cloud Billing Catalog API, 312 SKUs` or `embedded snapshot (Cloud Billing Catalog API:
    /// HTTP 403 PERMISSION_DENIED: ...)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PriceSource::Billing { skus, .. } => write!(
                f,
                "Cloud Billing Catalog API, {skus} {}",
                if *skus == 1 { "SKU" } else { "SKUs" }
            ),
            PriceSource::Snapshot { why } => {
                write!(f, "embedded snapshot (Cloud Billing Catalog API: {why})")
            }
        }
    }
}

/// What a refresh reports while it runs, in this order: where prices come from, then each
/// region.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Progress<'a> {
    /// The Billing API answered or did not; said once, before the regions.
    Prices(&'a PriceSource),
    /// One region is done.
    Region(&'a RegionOffers),
}

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
    /// Offers kept that were priced from Billing SKUs.
    pub billing_priced: usize,
    /// Offers kept at the snapshot's price: the Billing API gave no prices, or no SKU for one
    /// of their parts (family cores or RAM, or the GPU) in this region and usage type.
    pub snapshot_priced: usize,
}

/// Everything a refresh fetched, over all regions.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedOffers {
    /// The offers of every region.
    pub offers: Vec<Offer>,
    /// Each region's counts, in the order asked.
    pub regions: Vec<RegionOffers>,
    /// Where the prices came from.
    pub prices: PriceSource,
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

/// A machine type's shape: vCPUs, memory and, for the bundled GPU families, its GPUs
/// (accelerator type, count).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    vcpus: u32,
    memory: Memory,
    gpus: Option<(String, u32)>,
}

/// Fetches the live GCP offers of `regions` and their prices, calling `progress` once the
/// price source is known and after each region.
///
/// `embedded` is the catalog whose GCP offers are reused, and whose prices stand in for what
/// the Billing API does not price (the embedded snapshot).
pub async fn fetch_offers(
    provider: &GcpProvider,
    regions: &[String],
    embedded: &Catalog,
    mut progress: impl FnMut(Progress<'_>),
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
        let gpus = item["accelerators"][0]["guestAcceleratorType"]
            .as_str()
            .map(|a| {
                let count = item["accelerators"][0]["guestAcceleratorCount"]
                    .as_u64()
                    .unwrap_or(0);
                (a.to_string(), u32::try_from(count).unwrap_or(0))
            });
        shapes.entry(zone.clone()).or_default().insert(
            name.to_string(),
            Shape {
                vcpus: u32::try_from(vcpus).unwrap_or(u32::MAX),
                memory: Memory::from_mib(mib),
                gpus,
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

    // Each region's zones first: an unknown region fails the refresh before the Billing API
    // is asked for some megabytes of SKUs.
    let mut region_zones: Vec<(&String, Vec<&String>)> = Vec::new();
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
        region_zones.push((region, zones));
    }

    let (prices, skus) = match billing::fetch_prices(provider).await {
        Ok(skus) => (
            PriceSource::Billing {
                skus: skus.skus,
                endpoint: skus.endpoint.clone(),
            },
            Some(skus),
        ),
        Err(why) => (PriceSource::Snapshot { why: why.0 }, None),
    };
    progress(Progress::Prices(&prices));

    let mut fetched = FetchedOffers {
        offers: Vec::new(),
        regions: Vec::new(),
        prices,
    };
    for (region, zones) in region_zones {
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
            billing_priced: 0,
            snapshot_priced: 0,
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
                has_gpu.then_some(shape)
            });
            match live {
                Some(shape) => {
                    let mut o = offer.clone();
                    o.vcpus = shape.vcpus;
                    o.memory = shape.memory;
                    let priced = skus.as_ref().and_then(|s| price(s, &o, &machine, shape));
                    match priced {
                        Some(usd) => {
                            o.price_per_hour = usd;
                            counts.billing_priced += 1;
                        }
                        None => counts.snapshot_priced += 1,
                    }
                    fetched.offers.push(o);
                    counts.offers += 1;
                }
                None => counts.unavailable += 1,
            }
        }
        progress(Progress::Region(&counts));
        fetched.regions.push(counts);
    }
    Ok(fetched)
}

/// An offer's price from the SKUs: its live vCPUs and memory at its family's rates, plus its
/// GPUs (the N1 offer's attached ones, or the bundled machine type's own).
fn price(skus: &SkuPrices, offer: &Offer, machine: &Machine, shape: &Shape) -> Option<f64> {
    let gpus = machine
        .accelerator
        .as_ref()
        .or(shape.gpus.as_ref())
        .map(|(a, n)| (a.as_str(), *n));
    // A GPU offer whose GPUs Compute does not name cannot be priced by its parts.
    if offer.gpu_count > 0 && gpus.is_none() {
        return None;
    }
    skus.price(
        &offer.region,
        offer.spot,
        &machine.machine_type,
        offer.vcpus,
        offer.memory.gib(),
        gpus,
    )
}
