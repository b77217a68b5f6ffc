//! Offers and the catalog that ranks them.
//!
//! An [`Offer`] is one way to run one node: provider, region, zone, instance type, GPUs, vCPUs,
//! memory, spot flag and USD per hour. The [`Catalog`] holds offers already in rank order
//! (price, then provider, region, instance type, zone, spot) so that a [`Query`] is a lazy
//! filter that never sorts, copies or re-parses: the first match is the cheapest, and a plan is
//! the same on every machine. An index by GPU name lets a GPU query skip every other chip.
//!
//! The embedded snapshot is `fixtures/catalog/offers.csv`, compiled into the binary so that a
//! plan needs no network; `--catalog FILE` (same columns) replaces it, and the offers cache of
//! `flotilla offers --refresh` is merged over it (`source`). Each catalog carries a
//! [`CatalogSource`] so that a plan can say which catalog priced it and how old it is.

use crate::spec::{GpuVendor, Memory, Resources};
use serde::{Deserialize, Serialize};
use std::fmt;

mod csv_load;
mod query;
mod source;
#[cfg(test)]
mod tests;

pub use csv_load::CatalogError;
pub use query::{Query, format_price};
pub use source::{
    CACHE_HEADER_PREFIX, CacheAge, CacheHeader, CatalogSource, EMBEDDED_SNAPSHOT_DATE, SourceKind,
    age_seconds, age_text, cache_source, cache_text, csv_row, merge_cache, read_cache, rfc3339,
};

/// The CSV header every catalog file carries, in this order.
pub const CSV_HEADER: &str = "provider,instance_type,region,zone,gpu_vendor,gpu_name,gpu_count,gpu_memory_gib,vcpus,memory_gib,spot,price_per_hour_usd";

/// The snapshot compiled into the binary.
pub const EMBEDDED_CSV: &str = include_str!("../../../fixtures/catalog/offers.csv");

/// Where a node runs: a cloud, or the team's own hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Amazon Web Services (EC2).
    Aws,
    /// Google Cloud (Compute Engine).
    Gcp,
    /// Microsoft Azure.
    Azure,
    /// Bare-metal hosts reached over SSH.
    Baremetal,
}

impl ProviderKind {
    /// Every provider, in rank order (ties in price are broken in this order).
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::Aws,
        ProviderKind::Gcp,
        ProviderKind::Azure,
        ProviderKind::Baremetal,
    ];

    /// The lowercase name used in fleet files, state, the catalog and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Aws => "aws",
            ProviderKind::Gcp => "gcp",
            ProviderKind::Azure => "azure",
            ProviderKind::Baremetal => "baremetal",
        }
    }

    /// Whether this provider's nodes need a network flotilla makes for them, one per region
    /// (`network.azure.eastus`): Azure VMs need a virtual network and subnet, which the user
    /// does not write; the other clouds have a default network and bare metal has its own.
    pub fn needs_network(self) -> bool {
        self == ProviderKind::Azure
    }

    /// Parse a provider name as written in fleet files and on the command line.
    pub fn parse(s: &str) -> Option<ProviderKind> {
        ProviderKind::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which markets a fleet may buy from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpotPolicy {
    /// Spot (preemptible) capacity only.
    Spot,
    /// On-demand capacity only (the default, as in dstack).
    #[default]
    OnDemand,
    /// Either, whichever is cheaper.
    Auto,
}

impl SpotPolicy {
    /// `spot`, `on-demand` or `auto`.
    pub fn as_str(self) -> &'static str {
        match self {
            SpotPolicy::Spot => "spot",
            SpotPolicy::OnDemand => "on-demand",
            SpotPolicy::Auto => "auto",
        }
    }

    /// Parse `spot`, `on-demand` or `auto`.
    pub fn parse(s: &str) -> Option<SpotPolicy> {
        [SpotPolicy::Spot, SpotPolicy::OnDemand, SpotPolicy::Auto]
            .into_iter()
            .find(|p| p.as_str() == s)
    }

    /// Whether an offer with this spot flag is allowed.
    pub fn allows(self, spot: bool) -> bool {
        match self {
            SpotPolicy::Spot => spot,
            SpotPolicy::OnDemand => !spot,
            SpotPolicy::Auto => true,
        }
    }
}

/// One way to run one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// Who runs it.
    pub provider: ProviderKind,
    /// Provider region (`us-east-1`, `us-central1`, `eastus`; a bare-metal host's is `onprem`).
    pub region: String,
    /// Zone within the region; empty when the offer is region-level.
    pub zone: String,
    /// Instance (machine, VM size) type; a bare-metal host's name.
    pub instance_type: String,
    /// GPU vendor; `None` for a node without GPUs.
    pub gpu_vendor: Option<GpuVendor>,
    /// GPU chip name (`H100`, `A100`); empty without GPUs.
    pub gpu_name: String,
    /// GPUs per node.
    pub gpu_count: u32,
    /// Memory per GPU.
    pub gpu_memory: Memory,
    /// vCPUs per node.
    pub vcpus: u32,
    /// Memory per node.
    pub memory: Memory,
    /// Whether this is spot (preemptible) capacity.
    pub spot: bool,
    /// USD per node-hour.
    pub price_per_hour: f64,
}

impl Offer {
    /// The GPUs as people write them: `8x H100 80GB`; `none` without GPUs.
    pub fn gpu_label(&self) -> String {
        if self.gpu_count == 0 {
            "none".to_string()
        } else {
            format!("{}x {} {}", self.gpu_count, self.gpu_name, self.gpu_memory)
        }
    }

    /// The total GPU memory of the node.
    pub fn gpu_total_memory(&self) -> Memory {
        Memory::from_mib(self.gpu_memory.mib() * u64::from(self.gpu_count))
    }

    /// The rank key: price, then provider, region, instance type, zone, spot.
    pub fn rank_cmp(&self, other: &Offer) -> std::cmp::Ordering {
        self.price_per_hour
            .total_cmp(&other.price_per_hour)
            .then(self.provider.cmp(&other.provider))
            .then_with(|| self.region.cmp(&other.region))
            .then_with(|| self.instance_type.cmp(&other.instance_type))
            .then_with(|| self.zone.cmp(&other.zone))
            .then(self.spot.cmp(&other.spot))
    }
}

/// The offers to choose from, in rank order, indexed by GPU name.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Offers in rank order (see [`Offer::rank_cmp`]).
    offers: Vec<Offer>,
    /// Lowercased GPU name -> indexes into `offers`, ascending (so still in rank order).
    by_gpu: std::collections::HashMap<String, Vec<u32>>,
    /// The numeric columns of `offers`, packed, index for index, so a query's scan reads 40
    /// bytes per offer instead of the whole offer (2-5x faster on a million offers).
    hot: Vec<query::Hot>,
    /// Where the offers came from, for plans and `offers` output.
    source: String,
    /// The same, as data: kind, path, age.
    info: CatalogSource,
}

impl Catalog {
    /// Build a catalog from offers in any order: ranks and indexes them.
    pub fn from_offers(mut offers: Vec<Offer>, source: impl Into<String>) -> Catalog {
        offers.sort_by(Offer::rank_cmp);
        let mut by_gpu: std::collections::HashMap<String, Vec<u32>> = Default::default();
        for (i, o) in offers.iter().enumerate() {
            by_gpu
                .entry(o.gpu_name.to_ascii_lowercase())
                .or_default()
                .push(i as u32);
        }
        let hot = offers.iter().map(query::Hot::of).collect();
        let source = source.into();
        let info = CatalogSource::file(source.clone(), offers.len());
        Catalog {
            offers,
            by_gpu,
            hot,
            source,
            info,
        }
    }

    /// The same catalog, described by `info` (its offer count is this catalog's).
    pub fn with_source_info(mut self, info: CatalogSource) -> Catalog {
        self.info = CatalogSource {
            offers: self.offers.len(),
            ..info
        };
        self
    }

    /// Where the offers came from, as data: snapshot, cache or file, path and age.
    pub fn source_info(&self) -> &CatalogSource {
        &self.info
    }

    /// The snapshot compiled into the binary.
    pub fn embedded() -> Catalog {
        let catalog = Catalog::from_csv(EMBEDDED_CSV, "embedded snapshot")
            .expect("the embedded catalog is checked by a unit test");
        let info = CatalogSource::embedded(catalog.len());
        catalog.with_source_info(info)
    }

    /// Read a catalog file with [`CSV_HEADER`]'s columns; errors name the file, line and column.
    pub fn from_path(path: &std::path::Path) -> Result<Catalog, CatalogError> {
        let text = fs_err::read_to_string(path).map_err(|e| CatalogError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        Catalog::from_csv(&text, &path.display().to_string())
    }

    /// Parse CSV text with [`CSV_HEADER`]'s columns; `origin` names it in errors and output.
    pub fn from_csv(text: &str, origin: &str) -> Result<Catalog, CatalogError> {
        let offers = csv_load::parse(text, origin)?;
        Ok(Catalog::from_offers(offers, origin))
    }

    /// Every offer, in rank order.
    pub fn offers(&self) -> &[Offer] {
        &self.offers
    }

    /// How many offers there are.
    pub fn len(&self) -> usize {
        self.offers.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.offers.is_empty()
    }

    /// Where the offers came from (`embedded snapshot`, a file path).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The offers matching `query`, cheapest first. Lazy: borrows, never copies.
    pub fn query<'a: 'q, 'q>(&'a self, query: &'q Query) -> impl Iterator<Item = &'a Offer> + 'q {
        query::run(self, query)
    }

    /// Why `query` matches nothing: applies its constraints one at a time and names the one
    /// that emptied the candidate set, e.g. "48 offers match gpu H100:8; 0 of them are at or
    /// under max_price 30 (cheapest: 43.07 gcp a3-highgpu-8g us-central1)".
    pub fn explain_empty(&self, query: &Query) -> String {
        query::explain_empty(self, query)
    }
}

/// Re-exported so callers can build queries from a fleet's resources without reaching into
/// `spec`.
pub type QueryResources = Resources;
