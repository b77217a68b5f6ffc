//! What the executor must know of each fleet that a plan does not carry: the ranked offers a
//! node may fail over to (the planner's own candidates), the fleet's tags, root disk and
//! placement; and, while an apply runs, which offers ran out of capacity, which hosts are
//! taken and where each cluster fleet lives now.

use crate::catalog::{Catalog, Offer, ProviderKind};
use crate::config::{Config, Placement};
use crate::plan::Group;
use crate::spec::Memory;
use crate::state::{ResourceKind, State};
use std::collections::{BTreeMap, HashMap, HashSet};

/// One fleet, as the executor needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSpec {
    /// The fleet's name.
    pub name: String,
    /// Every offer its nodes may take, best first ([`crate::plan::fleet_candidates`]).
    pub candidates: Vec<Offer>,
    /// Whether every node must share one provider+region(+zone).
    pub cluster: bool,
    /// Tags put on every node.
    pub tags: BTreeMap<String, String>,
    /// Root disk per node, GiB (the low end of `resources.disk`).
    pub disk_gib: u64,
    /// The fleet's `max_price`, USD per node-hour, for clouds that take a price cap on spot
    /// capacity (Azure's `billingProfile.maxPrice`).
    pub max_price: Option<f64>,
}

/// The failover source: every fleet of the configuration, by name; and the configuration's
/// `output` blocks, which the apply evaluates into `state.outputs` at its end.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fleets {
    by_name: BTreeMap<String, FleetSpec>,
    outputs: BTreeMap<String, crate::config::OutputValue>,
}

impl Fleets {
    /// Every fleet of `config`, with its candidates from `catalog` (and the declared hosts).
    pub fn from_config(config: &Config, catalog: &Catalog) -> Fleets {
        let mut fleets = Fleets::default();
        for fleet in config.fleets.values() {
            let disk = fleet
                .resources
                .disk
                .min
                .or(fleet
                    .resources
                    .disk
                    .max
                    .map(|m| m.min(Memory::from_gib(100))))
                .unwrap_or(Memory::from_gib(100));
            fleets.insert(FleetSpec {
                name: fleet.name.clone(),
                candidates: crate::plan::fleet_candidates(config, catalog, &fleet.name),
                cluster: fleet.placement == Placement::Cluster,
                tags: fleet.tags.clone(),
                disk_gib: disk.mib().div_ceil(1024),
                max_price: fleet.max_price,
            });
        }
        fleets.outputs = config
            .outputs
            .iter()
            .map(|(name, o)| (name.clone(), o.value.clone()))
            .collect();
        fleets
    }

    /// The `output` blocks, by name.
    pub fn outputs(&self) -> &BTreeMap<String, crate::config::OutputValue> {
        &self.outputs
    }

    /// Adds or replaces a fleet.
    pub fn insert(&mut self, spec: FleetSpec) {
        self.by_name.insert(spec.name.clone(), spec);
    }

    /// The fleet called `name`.
    pub fn get(&self, name: &str) -> Option<&FleetSpec> {
        self.by_name.get(name)
    }
}

/// The fleet a node address belongs to: `fleet.train[3]` -> `train`.
pub(super) fn fleet_of(address: &str) -> Option<&str> {
    address.strip_prefix("fleet.")?.split('[').next()
}

/// What identifies an offer's capacity pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct OfferKey {
    provider: ProviderKind,
    region: String,
    zone: String,
    instance_type: String,
    spot: bool,
}

impl OfferKey {
    pub(super) fn of(o: &Offer) -> OfferKey {
        OfferKey {
            provider: o.provider,
            region: o.region.clone(),
            zone: o.zone.clone(),
            instance_type: o.instance_type.clone(),
            spot: o.spot,
        }
    }
}

/// Where a node must stay because of its volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pin {
    pub(super) provider: ProviderKind,
    pub(super) region: String,
    pub(super) zone: String,
}

impl Pin {
    pub(super) fn allows(&self, o: &Offer) -> bool {
        o.provider == self.provider
            && o.region == self.region
            && (o.zone.is_empty() || self.zone.is_empty() || o.zone == self.zone)
    }
}

#[derive(Debug, Default)]
struct Cluster {
    group: Option<Group>,
    abandoned: Vec<Group>,
    /// The offer and error that moved the group last, for the failover event of nodes that
    /// start after the move.
    moved_because: Option<(Offer, crate::provider::ProviderError)>,
}

/// The failover decisions of one apply, shared by its tasks (behind a mutex).
#[derive(Debug, Default)]
pub(super) struct Failover {
    /// Offers that answered a capacity error, with the answer.
    exhausted: HashMap<OfferKey, crate::provider::ProviderError>,
    /// Provider+regions that answered a quota error, with the answer: every offer there is
    /// passed over for the rest of the apply, since the quota is the region's.
    over_quota: HashMap<(ProviderKind, String), crate::provider::ProviderError>,
    clusters: HashMap<String, Cluster>,
    /// Bare-metal hosts taken by a node (in state, planned, or failed over to).
    used_hosts: HashSet<String>,
}

/// What [`Failover::first_offer`] decided.
pub(super) struct FirstOffer {
    pub(super) offer: Offer,
    /// When the planned offer was passed over: it, and why.
    pub(super) passed_over: Option<(Offer, crate::provider::ProviderError)>,
}

impl Failover {
    /// Hosts in `state` and the hosts the plan's creates take are used.
    pub(super) fn new(state: &State, planned_hosts: impl IntoIterator<Item = String>) -> Failover {
        let mut f = Failover::default();
        for r in &state.resources {
            if let (ResourceKind::Instance, Some(o)) = (r.kind, &r.offer)
                && o.provider == ProviderKind::Baremetal
            {
                f.used_hosts.insert(o.instance_type.clone());
            }
        }
        f.used_hosts.extend(planned_hosts);
        f
    }

    /// The offer a node starts with: the planned one, unless it ran out of capacity earlier
    /// in this apply or its cluster moved away from it, in which case the next one.
    pub(super) fn first_offer(
        &mut self,
        spec: &FleetSpec,
        planned: &Offer,
        planned_zone: &str,
        pin: Option<&Pin>,
        available: &dyn Fn(ProviderKind) -> bool,
    ) -> Option<FirstOffer> {
        if spec.cluster {
            let c = self.clusters.entry(spec.name.clone()).or_default();
            if c.group.is_none() {
                c.group = Some(Group::of(planned, planned_zone));
            }
        }
        let exhausted = self.exhausted_answer(planned);
        let moved = spec.cluster
            && self.clusters[&spec.name]
                .group
                .as_ref()
                .is_some_and(|g| !g.allows(planned));
        match (exhausted, moved) {
            (None, false) => Some(FirstOffer {
                offer: planned.clone(),
                passed_over: None,
            }),
            (Some(why), _) => {
                let next = self.next_offer(spec, pin, std::slice::from_ref(planned), available)?;
                Some(FirstOffer {
                    offer: next,
                    passed_over: Some((planned.clone(), why)),
                })
            }
            (None, true) => {
                let why = self.clusters[&spec.name].moved_because.clone();
                let next = self.next_offer(spec, pin, std::slice::from_ref(planned), available)?;
                Some(FirstOffer {
                    offer: next,
                    passed_over: why.map(|(_, e)| (planned.clone(), e)),
                })
            }
        }
    }

    /// What `offer` answered when it had no capacity, if it did.
    pub(super) fn exhausted_answer(&self, offer: &Offer) -> Option<crate::provider::ProviderError> {
        self.exhausted
            .get(&OfferKey::of(offer))
            .or_else(|| self.over_quota.get(&(offer.provider, offer.region.clone())))
            .cloned()
    }

    /// Records that `offer` had no capacity, or, for a [`FailureKind::Quota`] answer, that
    /// its whole provider+region is over quota.
    ///
    /// [`FailureKind::Quota`]: crate::provider::FailureKind::Quota
    pub(super) fn exhausted(&mut self, offer: &Offer, why: &crate::provider::ProviderError) {
        self.exhausted.insert(OfferKey::of(offer), why.clone());
        if why.kind == crate::provider::FailureKind::Quota {
            self.over_quota
                .insert((offer.provider, offer.region.clone()), why.clone());
        }
    }

    /// The next-ranked offer for a node that may not take `tried`: eligible (its provider is
    /// available, it had no capacity error, a host is free, it satisfies the volumes' pin),
    /// and for a cluster fleet inside the fleet's group, or else the group moves to the next
    /// eligible offer's. Claims a host it returns.
    pub(super) fn next_offer(
        &mut self,
        spec: &FleetSpec,
        pin: Option<&Pin>,
        tried: &[Offer],
        available: &dyn Fn(ProviderKind) -> bool,
    ) -> Option<Offer> {
        let eligible = |o: &Offer| {
            available(o.provider)
                && !self.exhausted.contains_key(&OfferKey::of(o))
                && !self
                    .over_quota
                    .contains_key(&(o.provider, o.region.clone()))
                && !tried.iter().any(|t| OfferKey::of(t) == OfferKey::of(o))
                && pin.is_none_or(|p| p.allows(o))
                && (o.provider != ProviderKind::Baremetal
                    || !self.used_hosts.contains(&o.instance_type))
        };
        let chosen = if spec.cluster {
            let c = self.clusters.entry(spec.name.clone()).or_default();
            let in_group = c
                .group
                .as_ref()
                .and_then(|g| spec.candidates.iter().find(|o| eligible(o) && g.allows(o)));
            match in_group {
                Some(o) => Some(o.clone()),
                None => {
                    let o = spec
                        .candidates
                        .iter()
                        .find(|o| eligible(o) && !c.abandoned.iter().any(|g| g.allows(o)))?
                        .clone();
                    if let Some(old) = c.group.take() {
                        c.abandoned.push(old);
                    }
                    c.group = Some(Group::of(&o, pin.map_or("", |p| p.zone.as_str())));
                    // Field by field: `c` still borrows the clusters.
                    let why = tried.last().and_then(|t| {
                        self.exhausted
                            .get(&OfferKey::of(t))
                            .or_else(|| self.over_quota.get(&(t.provider, t.region.clone())))
                            .map(|e| (t.clone(), e.clone()))
                    });
                    if why.is_some() {
                        c.moved_because = why;
                    }
                    Some(o)
                }
            }
        } else {
            spec.candidates.iter().find(|o| eligible(o)).cloned()
        }?;
        if chosen.provider == ProviderKind::Baremetal {
            self.used_hosts.insert(chosen.instance_type.clone());
        }
        Some(chosen)
    }

    /// The zone a cluster fleet's nodes must use, once one of them has one.
    pub(super) fn cluster_zone(&self, spec: &FleetSpec, offer: &Offer) -> Option<String> {
        let g = self.clusters.get(&spec.name)?.group.as_ref()?;
        (g.allows(offer) && !g.zone.is_empty()).then(|| g.zone.clone())
    }

    /// A cluster node was made in `zone`: the fleet's group learns its zone, so the other
    /// nodes land next to it.
    pub(super) fn learned_zone(&mut self, spec: &FleetSpec, offer: &Offer, zone: &str) {
        if !spec.cluster || zone.is_empty() {
            return;
        }
        if let Some(g) = self
            .clusters
            .get_mut(&spec.name)
            .and_then(|c| c.group.as_mut())
            && g.zone.is_empty()
            && g.allows(offer)
        {
            g.zone = zone.to_string();
        }
    }
}
