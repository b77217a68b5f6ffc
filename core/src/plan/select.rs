//! Offer selection: which offer each node of a fleet gets.
//!
//! The rules are the design's: candidates are the offers of the fleet's allowed providers and
//! regions that satisfy its resources, spot policy and max price, narrowed by what its volumes
//! pin; they are ranked by price (ties by provider, region, instance type), with the team's own
//! bare-metal hosts ranked before any cloud; each host runs one node at most; and a cluster
//! fleet puts every node in one provider+region(+zone) group, the cheapest that holds them all.

use crate::catalog::{Catalog, Offer, ProviderKind, Query};
use crate::config::{Config, Fleet};
use std::collections::BTreeSet;

/// Builds the catalog query for a fleet: its resources, market, price and providers, with each
/// provider block's regions, narrowed by the provider and region its volumes declare.
pub(super) fn fleet_query(config: &Config, fleet: &Fleet) -> Query {
    let mut providers = fleet.providers.clone();
    let mut regions = fleet.regions.clone();
    for name in &fleet.volumes {
        if let Some(volume) = config.volumes.get(name) {
            if let Some(p) = volume.provider {
                providers.retain(|x| *x == p);
            }
            if let Some(r) = &volume.region {
                if regions.is_empty() {
                    regions.push(r.clone());
                } else {
                    regions.retain(|x| x == r);
                }
            }
        }
    }
    // Bare-metal hosts cannot carry network disks.
    if !fleet.volumes.is_empty() {
        providers.retain(|p| *p != ProviderKind::Baremetal);
    }
    let provider_regions = providers
        .iter()
        .map(|p| (*p, config.providers.regions(*p).to_vec()))
        .filter(|(_, r)| !r.is_empty())
        .collect();
    Query {
        resources: fleet.resources.clone(),
        spot_policy: fleet.spot_policy,
        max_price: fleet.max_price,
        providers,
        provider_regions,
        regions,
        zones: Vec::new(),
        instance_types: fleet.instance_types.clone(),
    }
}

/// Where a node must be because of a volume it keeps: provider, region and zone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Pin {
    pub(super) provider: ProviderKind,
    pub(super) region: String,
    pub(super) zone: String,
}

/// The ranked candidates of one fleet: free hosts first, then the catalog's offers.
pub(super) struct Candidates<'a> {
    /// Catalog offers satisfying the fleet's query, in rank order.
    pub(super) cloud: Vec<&'a Offer>,
    /// Bare-metal host offers satisfying it, in rank order (price, then name).
    pub(super) hosts: Vec<&'a Offer>,
    /// The query they satisfy.
    pub(super) query: Query,
    /// The catalog they came from, to explain an empty set.
    catalog: &'a Catalog,
}

impl<'a> Candidates<'a> {
    /// Collects the candidates of `query` from the catalog and the host offers.
    pub(super) fn new(catalog: &'a Catalog, host_offers: &'a [Offer], query: Query) -> Self {
        let cloud: Vec<&Offer> = catalog
            .query(&query)
            .filter(|o| o.provider != ProviderKind::Baremetal)
            .collect();
        let mut hosts: Vec<&Offer> = if query.providers.contains(&ProviderKind::Baremetal) {
            host_offers.iter().filter(|o| query.matches(o)).collect()
        } else {
            Vec::new()
        };
        hosts.sort_by(|a, b| a.rank_cmp(b));
        Candidates {
            cloud,
            hosts,
            query,
            catalog,
        }
    }

    /// How many offers match (hosts included).
    pub(super) fn matched(&self) -> usize {
        self.cloud.len() + self.hosts.len()
    }

    /// The best offer for one node: the first free host, else the cheapest cloud offer that
    /// satisfies `pin` (when the node must stay with its volumes).
    pub(super) fn best(
        &self,
        used_hosts: &BTreeSet<String>,
        pin: Option<&Pin>,
    ) -> Option<&'a Offer> {
        if pin.is_none()
            && let Some(h) = self
                .hosts
                .iter()
                .find(|h| !used_hosts.contains(&h.instance_type))
        {
            return Some(h);
        }
        self.cloud
            .iter()
            .copied()
            .find(|o| pin.is_none_or(|p| pin_allows(p, o)))
    }

    /// Which constraint leaves no offer, in the catalog's words (hosts are not in the catalog,
    /// so they are counted separately).
    pub(super) fn explanation(&self) -> String {
        let base = self.catalog.explain_empty(&self.query);
        if self.query.providers.contains(&ProviderKind::Baremetal) {
            format!("{base}; {} declared hosts match", self.hosts.len())
        } else {
            base
        }
    }

    /// The cheapest cloud offer (for "a cheaper offer exists" notes).
    pub(super) fn cheapest(&self) -> Option<&'a Offer> {
        self.cloud.first().copied()
    }
}

/// Whether an offer can run a node pinned by its volume.
pub(super) fn pin_allows(pin: &Pin, offer: &Offer) -> bool {
    offer.provider == pin.provider
        && offer.region == pin.region
        && (offer.zone.is_empty() || pin.zone.is_empty() || offer.zone == pin.zone)
}

/// A cluster group: every node on one provider+region(+zone).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Group {
    pub(crate) provider: ProviderKind,
    pub(crate) region: String,
    pub(crate) zone: String,
}

impl Group {
    /// The group an offer (or a node placed on it) belongs to.
    pub(crate) fn of(offer: &Offer, zone: &str) -> Group {
        Group {
            provider: offer.provider,
            region: offer.region.clone(),
            zone: if offer.zone.is_empty() {
                zone.to_string()
            } else {
                offer.zone.clone()
            },
        }
    }

    /// Whether an offer lies in the group.
    pub(crate) fn allows(&self, offer: &Offer) -> bool {
        offer.provider == self.provider
            && offer.region == self.region
            && (offer.zone.is_empty() || self.zone.is_empty() || offer.zone == self.zone)
    }
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.provider, self.region)?;
        if !self.zone.is_empty() {
            write!(f, " {}", self.zone)?;
        }
        Ok(())
    }
}

/// The cheapest group that can hold `needed` more nodes: free hosts if enough of them match
/// (hosts come first), else the cloud group whose cheapest offer is lowest (catalog offers
/// have no quantity limit). Deterministic: ties go to rank order.
pub(super) fn cheapest_group(
    candidates: &Candidates<'_>,
    used_hosts: &BTreeSet<String>,
    needed: usize,
) -> Option<Group> {
    let free_hosts = candidates
        .hosts
        .iter()
        .filter(|h| !used_hosts.contains(&h.instance_type))
        .count();
    if needed > 0 && free_hosts >= needed {
        return candidates.hosts.first().map(|h| Group::of(h, ""));
    }
    // Cloud offers are in rank order, so the first offer of each group is its cheapest, and
    // the first offer overall names the cheapest group.
    candidates.cloud.first().map(|o| Group::of(o, ""))
}

/// The ranked offers a fleet's nodes may take, for the executor's capacity failover: the
/// declared bare-metal hosts that satisfy the fleet first (price, then name), then the
/// catalog's offers in rank order — the same candidates, in the same order, as the planner
/// chooses from. Empty for a fleet that is not in `config`. Whether a host is already taken
/// is the caller's to track.
pub fn fleet_candidates(config: &Config, catalog: &Catalog, fleet_name: &str) -> Vec<Offer> {
    let Some(fleet) = config.fleets.get(fleet_name) else {
        return Vec::new();
    };
    let host_offers = config.host_offers();
    let candidates = Candidates::new(catalog, &host_offers, fleet_query(config, fleet));
    candidates
        .hosts
        .iter()
        .chain(candidates.cloud.iter())
        .map(|o| (*o).clone())
        .collect()
}
