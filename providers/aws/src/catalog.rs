//! Live AWS offers for `flotilla offers --refresh`: instance shapes from DescribeInstanceTypes
//! and spot prices from DescribeSpotPriceHistory, region by region.
//!
//! The embedded snapshot's prices age; spot prices move by the hour. This pulls what EC2 says
//! now, in the catalog's own terms, so the CLI can cache it and merge it over the snapshot:
//!
//! - **Shapes** (vCPUs, memory, GPUs) come from DescribeInstanceTypes, paginated. Only types
//!   with whole GPUs from NVIDIA or AMD become offers, as in the snapshot (fractional-GPU sizes
//!   are left out). GPU names are mapped to the catalog's (`H100`, `T4G`, `RTXPRO6000`, `V520`),
//!   and where the snapshot knows the type its GPU name and nominal memory win, because EC2
//!   reports usable MiB (an A10G is 22,888 MiB; the catalog says 24 GB).
//! - **Spot prices** come from DescribeSpotPriceHistory for Linux/UNIX, starting now, so EC2
//!   answers with the current price of each type in each zone; the newest wins. Each becomes a
//!   zonal spot offer.
//! - **On-demand prices** are not in DescribeInstanceTypes, and the AWS Price List API is
//!   neither called here nor served by the emulator the tests use: they are taken from the
//!   embedded snapshot for each (type, region) it prices. A type the snapshot does not price
//!   in a region gets only spot offers there; the summary counts those.
//!
//! A failing region stops the whole refresh with an error naming it, so the caller writes
//! nothing and the previous cache stays as it was.

use crate::AwsProvider;
use aws_sdk_ec2::types::InstanceType;
use aws_smithy_types::DateTime;
use flotilla_core::catalog::{Catalog, Offer, ProviderKind};
use flotilla_core::spec::{GpuVendor, Memory};
use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

/// The product DescribeSpotPriceHistory is asked about: Linux on VPC, what flotilla launches.
const PRODUCT: &str = "Linux/UNIX";

/// What one region gave, for the progress line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionOffers {
    /// The region.
    pub region: String,
    /// GPU instance types EC2 described there.
    pub instance_types: usize,
    /// (type, zone) spot prices found.
    pub spot_prices: usize,
    /// On-demand offers priced from the embedded snapshot.
    pub on_demand: usize,
    /// GPU types the snapshot has no on-demand price for in this region (spot offers only).
    pub without_on_demand: usize,
}

/// Everything a refresh fetched, over all regions.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedOffers {
    /// The offers, on-demand and spot, of every region.
    pub offers: Vec<Offer>,
    /// Each region's counts, in the order asked.
    pub regions: Vec<RegionOffers>,
}

/// Why a refresh failed: the region, the call and the cloud's own code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("aws region {region}: {call} failed: {code}: {message}")]
pub struct RefreshError {
    /// The region whose call failed.
    pub region: String,
    /// `DescribeInstanceTypes` or `DescribeSpotPriceHistory`.
    pub call: &'static str,
    /// The cloud's code (`AuthFailure`), or the SDK's for a failure on the way.
    pub code: String,
    /// The cloud's message.
    pub message: String,
}

/// Fetches the live GPU offers of `regions`, calling `progress` after each region.
///
/// `embedded` is the catalog whose AWS on-demand prices and GPU names are reused (the embedded
/// snapshot). Regions are fetched one after the other, so the progress reads in order and a
/// refresh never adds to an account's request rate much.
pub async fn fetch_offers(
    provider: &AwsProvider,
    regions: &[String],
    embedded: &Catalog,
    mut progress: impl FnMut(&RegionOffers),
) -> Result<FetchedOffers, RefreshError> {
    let known = Known::from_catalog(embedded);
    let mut fetched = FetchedOffers {
        offers: Vec::new(),
        regions: Vec::new(),
    };
    for region in regions {
        let ec2 = provider.clients.region(region).await.ec2;
        let shapes = instance_types(&ec2, region).await?;
        let prices = spot_prices(&ec2, region, shapes.keys()).await?;
        let counts = offers_of_region(region, &shapes, &prices, &known, &mut fetched.offers);
        progress(&counts);
        fetched.regions.push(counts);
    }
    Ok(fetched)
}

/// A GPU instance type's shape, in the catalog's terms.
#[derive(Debug, Clone, PartialEq)]
struct Shape {
    vendor: GpuVendor,
    gpu_name: String,
    gpu_count: u32,
    gpu_memory: Memory,
    vcpus: u32,
    memory: Memory,
}

/// What the embedded snapshot knows about AWS types.
struct Known {
    /// (type, region) -> on-demand USD per hour.
    on_demand: HashMap<(String, String), f64>,
    /// type -> (GPU name, nominal GPU memory) as the catalog writes them.
    gpus: HashMap<String, (String, Memory)>,
}

impl Known {
    fn from_catalog(catalog: &Catalog) -> Known {
        let mut known = Known {
            on_demand: HashMap::new(),
            gpus: HashMap::new(),
        };
        for o in catalog
            .offers()
            .iter()
            .filter(|o| o.provider == ProviderKind::Aws)
        {
            if !o.spot {
                known.on_demand.insert(
                    (o.instance_type.clone(), o.region.clone()),
                    o.price_per_hour,
                );
            }
            if o.gpu_count > 0 {
                known
                    .gpus
                    .entry(o.instance_type.clone())
                    .or_insert_with(|| (o.gpu_name.clone(), o.gpu_memory));
            }
        }
        known
    }
}

/// Every GPU instance type EC2 describes in `region`, by name (sorted, so offers come out in
/// the same order on every run).
async fn instance_types(
    ec2: &aws_sdk_ec2::Client,
    region: &str,
) -> Result<BTreeMap<String, Shape>, RefreshError> {
    let mut shapes = BTreeMap::new();
    let mut pages = ec2.describe_instance_types().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| refresh_error(region, "DescribeInstanceTypes", e))?;
        for info in page.instance_types() {
            let Some(name) = info.instance_type().map(|t| t.as_str().to_string()) else {
                continue;
            };
            if let Some(shape) = shape(info) {
                shapes.insert(name, shape);
            }
        }
    }
    Ok(shapes)
}

/// A type's shape when it has whole NVIDIA or AMD GPUs; `None` otherwise.
fn shape(info: &aws_sdk_ec2::types::InstanceTypeInfo) -> Option<Shape> {
    let gpu = info.gpu_info()?.gpus().first()?;
    let vendor = match gpu.manufacturer()?.to_ascii_lowercase().as_str() {
        "nvidia" => GpuVendor::Nvidia,
        "amd" => GpuVendor::Amd,
        _ => return None,
    };
    let gpu_count = u32::try_from(gpu.count()?).ok().filter(|n| *n > 0)?;
    let gpu_mib = u64::try_from(gpu.memory_info()?.size_in_mib()?).ok()?;
    Some(Shape {
        vendor,
        gpu_name: catalog_gpu_name(gpu.name()?),
        gpu_count,
        // Usable MiB rounded to whole GB, the catalog's nominal sizes for most chips.
        gpu_memory: Memory::from_gib_f64((gpu_mib as f64 / 1024.0).round()),
        vcpus: u32::try_from(info.v_cpu_info()?.default_v_cpus()?).ok()?,
        memory: Memory::from_mib(u64::try_from(info.memory_info()?.size_in_mib()?).ok()?),
    })
}

/// EC2's GPU name as the catalog writes it: `H100`, `T4g` -> `T4G`, `RTX PRO Server 6000` ->
/// `RTXPRO6000`, `Radeon Pro V520` -> `V520`.
pub(crate) fn catalog_gpu_name(aws: &str) -> String {
    let name = aws.trim();
    let name = name
        .strip_prefix("Radeon Pro ")
        .or_else(|| name.strip_prefix("Tesla "))
        .unwrap_or(name);
    name.split_whitespace()
        .filter(|w| !w.eq_ignore_ascii_case("server"))
        .collect::<String>()
        .to_ascii_uppercase()
}

/// The newest Linux/UNIX spot price of each (type, zone) among `types` in `region`.
async fn spot_prices<'a>(
    ec2: &aws_sdk_ec2::Client,
    region: &str,
    types: impl Iterator<Item = &'a String>,
) -> Result<BTreeMap<(String, String), f64>, RefreshError> {
    let types: Vec<InstanceType> = types.map(|t| InstanceType::from(t.as_str())).collect();
    let mut newest: BTreeMap<(String, String), (DateTime, f64)> = BTreeMap::new();
    if types.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut pages = ec2
        .describe_spot_price_history()
        .set_instance_types(Some(types))
        .product_descriptions(PRODUCT)
        // Starting now, EC2 answers with the price in effect now for each type and zone.
        .start_time(DateTime::from(SystemTime::now()))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| refresh_error(region, "DescribeSpotPriceHistory", e))?;
        for p in page.spot_price_history() {
            let (Some(t), Some(zone), Some(price)) =
                (p.instance_type(), p.availability_zone(), p.spot_price())
            else {
                continue;
            };
            let Some(price) = price
                .parse::<f64>()
                .ok()
                .filter(|p| p.is_finite() && *p >= 0.0)
            else {
                continue;
            };
            let at = p.timestamp().copied().unwrap_or(DateTime::from_secs(0));
            let key = (t.as_str().to_string(), zone.to_string());
            match newest.get(&key) {
                Some((seen, _)) if *seen >= at => {}
                _ => {
                    newest.insert(key, (at, price));
                }
            }
        }
    }
    Ok(newest.into_iter().map(|(k, (_, p))| (k, p)).collect())
}

/// Appends the offers of one region to `out` and counts them.
fn offers_of_region(
    region: &str,
    shapes: &BTreeMap<String, Shape>,
    spot: &BTreeMap<(String, String), f64>,
    known: &Known,
    out: &mut Vec<Offer>,
) -> RegionOffers {
    let mut counts = RegionOffers {
        region: region.to_string(),
        instance_types: shapes.len(),
        spot_prices: spot.len(),
        on_demand: 0,
        without_on_demand: 0,
    };
    let offer = |instance_type: &str, zone: &str, spot: bool, price: f64| {
        let shape = &shapes[instance_type];
        let (gpu_name, gpu_memory) = known
            .gpus
            .get(instance_type)
            .cloned()
            .unwrap_or_else(|| (shape.gpu_name.clone(), shape.gpu_memory));
        Offer {
            provider: ProviderKind::Aws,
            region: region.to_string(),
            zone: zone.to_string(),
            instance_type: instance_type.to_string(),
            gpu_vendor: Some(shape.vendor),
            gpu_name,
            gpu_count: shape.gpu_count,
            gpu_memory,
            vcpus: shape.vcpus,
            memory: shape.memory,
            spot,
            price_per_hour: price,
        }
    };
    for name in shapes.keys() {
        match known.on_demand.get(&(name.clone(), region.to_string())) {
            Some(price) => {
                out.push(offer(name, "", false, *price));
                counts.on_demand += 1;
            }
            None => counts.without_on_demand += 1,
        }
    }
    for ((name, zone), price) in spot {
        // Only types described as GPU types were asked about; guard against an answer that
        // names another.
        if shapes.contains_key(name) {
            out.push(offer(name, zone, true, *price));
        }
    }
    counts
}

/// An SDK error as a [`RefreshError`] of `region` and `call`, with the cloud's code and
/// message (see [`crate::error`]).
fn refresh_error<E, R>(
    region: &str,
    call: &'static str,
    err: aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> RefreshError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata
        + std::error::Error
        + Send
        + Sync
        + 'static,
    R: std::fmt::Debug,
{
    let e = crate::error::from_sdk(err);
    // A failure on the way (no credentials, no connection) reads as the causes' chain followed
    // by the SDK's debug dump of the same error: the chain is the part a person reads.
    let mut message = e.message;
    for dump in [" (DispatchFailure(", " (TimeoutError(", " (ResponseError("] {
        if let Some(at) = message.find(dump) {
            message.truncate(at);
        }
    }
    RefreshError {
        region: region.to_string(),
        call,
        code: e.code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::catalog_gpu_name;

    #[test]
    fn gpu_names_become_the_catalogs() {
        for (aws, catalog) in [
            ("H100", "H100"),
            ("A10G", "A10G"),
            ("T4g", "T4G"),
            ("L40S", "L40S"),
            ("RTX PRO Server 6000", "RTXPRO6000"),
            ("RTX PRO 4500", "RTXPRO4500"),
            ("Radeon Pro V520", "V520"),
        ] {
            assert_eq!(catalog_gpu_name(aws), catalog, "{aws}");
        }
    }
}
