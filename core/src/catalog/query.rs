//! The ranked, lazy query over a [`Catalog`].

use super::{Catalog, Offer, ProviderKind, SpotPolicy};
use crate::spec::Resources;

/// Every constraint a fleet puts on its offers. Empty lists mean "any".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// cpu, memory, GPU and total GPU memory requirements (disk does not filter offers: it is
    /// set at launch).
    pub resources: Resources,
    /// Which markets.
    pub spot_policy: SpotPolicy,
    /// USD per node-hour, inclusive.
    pub max_price: Option<f64>,
    /// Allowed providers.
    pub providers: Vec<ProviderKind>,
    /// Per-provider region limits (from provider blocks' `regions`); a provider not listed, or
    /// listed with no regions, is limited only by `regions`.
    pub provider_regions: Vec<(ProviderKind, Vec<String>)>,
    /// Allowed regions.
    pub regions: Vec<String>,
    /// Allowed zones (a mounted volume pins its node's zone); region-level offers (empty zone)
    /// match any zone.
    pub zones: Vec<String>,
    /// Allowed instance types.
    pub instance_types: Vec<String>,
}

impl Query {
    /// Whether `offer` satisfies every constraint.
    pub fn matches(&self, offer: &Offer) -> bool {
        self.mismatch(offer).is_none()
    }

    /// The first constraint `offer` violates, phrased for a plan's reason:
    /// `gpu: A100 does not match H100`, `price 55.04 > max_price 40`. `None` when it satisfies
    /// them all.
    pub fn mismatch(&self, offer: &Offer) -> Option<String> {
        todo!("{offer:?}")
    }
}

pub(super) fn run<'a: 'q, 'q>(
    catalog: &'a Catalog,
    query: &'q Query,
) -> impl Iterator<Item = &'a Offer> + 'q {
    let _ = query;
    catalog.offers.iter()
}

pub(super) fn explain_empty(catalog: &Catalog, query: &Query) -> String {
    todo!("{catalog:?}{query:?}")
}
