//! The ranked, lazy query over a [`Catalog`].
//!
//! The catalog is already in rank order, so a query is a filter and never sorts: the first
//! match is the cheapest. A query that names GPUs walks only those GPUs' index lists, merged in
//! index order (which is rank order), so `H100:8` over a million offers touches only the H100s.
//! Filtering allocates nothing per offer and reads the catalog's packed numeric columns
//! ([`Hot`], 40 bytes an offer) first; an offer's strings (regions, zones, instance types) are
//! read only when the query constrains them and the numbers already passed. A scan is bound by
//! memory bandwidth, so this is what makes a million-offer query take milliseconds.
//!
//! Two slower paths explain rather than select: [`Query::mismatch`] names the first constraint
//! an offer breaks (a plan's reason for replacing an instance), and [`explain_empty`] names the
//! constraint that left a query with no offer at all. Both check constraints in one fixed order
//! (GPU name, vendor, count, memory; total GPU memory; cpu; memory; spot policy; providers and
//! their regions; regions; zones; instance types; max_price) so the same constraint is blamed
//! everywhere.

use super::{Catalog, Offer, ProviderKind, SpotPolicy};
use crate::spec::{GpuSpec, GpuVendor, Memory, Range, Resources};
use std::fmt::Write as _;

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

/// A price as flotilla prints it everywhere (plans, `offers`, reasons): USD with up to four
/// decimals, trailing zeros trimmed — `55.04`, `0.7759`, `40`. Catalog prices carry up to four
/// decimals; rounding them to cents would print ties that are not (`0.16` for both `0.1578`
/// and `0.1612`) and reasons like `price 40 > max_price 40`.
pub fn format_price(usd: f64) -> String {
    let s = format!("{usd:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

impl Query {
    /// Whether `offer` satisfies every constraint.
    pub fn matches(&self, offer: &Offer) -> bool {
        self.accepts(offer, false)
    }

    /// The first constraint `offer` violates, phrased for a plan's reason:
    /// `gpu: A100 does not match H100`, `price 55.04 > max_price 40`. `None` when it satisfies
    /// them all. Constraints are checked in the order the module docs give.
    pub fn mismatch(&self, offer: &Offer) -> Option<String> {
        let r = &self.resources;
        if let Some(g) = &r.gpu {
            if !names_match(g, offer) {
                let have = if offer.gpu_count == 0 {
                    "none"
                } else {
                    offer.gpu_name.as_str()
                };
                return Some(format!("gpu: {have} does not match {}", g.names.join(",")));
            }
            if let Some(v) = g.vendor
                && offer.gpu_vendor != Some(v)
            {
                let have = offer.gpu_vendor.map_or("none", |v| v.as_str());
                return Some(format!("gpu vendor: {have} does not match {}", v.as_str()));
            }
            if !g.count.contains(offer.gpu_count) {
                return Some(format!(
                    "gpu count: {} does not match {}",
                    offer.gpu_count, g.count
                ));
            }
            if let Some(m) = &g.memory
                && !m.contains(offer.gpu_memory)
            {
                return Some(format!(
                    "gpu memory: {} does not match {m}",
                    offer.gpu_memory
                ));
            }
        }
        if let Some(t) = &r.gpu_total_memory
            && !t.contains(offer.gpu_total_memory())
        {
            return Some(format!(
                "gpu total memory: {} does not match {t}",
                offer.gpu_total_memory()
            ));
        }
        if !r.cpu.contains(offer.vcpus) {
            return Some(format!("cpu: {} does not match {}", offer.vcpus, r.cpu));
        }
        if !r.memory.contains(offer.memory) {
            return Some(format!(
                "memory: {} does not match {}",
                offer.memory, r.memory
            ));
        }
        if !self.spot_policy.allows(offer.spot) {
            let market = if offer.spot { "spot" } else { "on-demand" };
            return Some(format!(
                "spot: {market} offer but spot_policy is {}",
                self.spot_policy.as_str()
            ));
        }
        if !self.provider_allowed(offer) {
            return Some(format!(
                "provider: {} is not in {}",
                offer.provider,
                list(&self.providers)
            ));
        }
        if let Some(regions) = self.provider_regions_violated(offer) {
            return Some(format!(
                "region: {} is not in {}'s regions {}",
                offer.region,
                offer.provider,
                list(regions)
            ));
        }
        if !self.region_allowed(offer) {
            return Some(format!(
                "region: {} is not in {}",
                offer.region,
                list(&self.regions)
            ));
        }
        if !self.zone_allowed(offer) {
            return Some(format!(
                "zone: {} is not in {}",
                offer.zone,
                list(&self.zones)
            ));
        }
        if !self.instance_type_allowed(offer) {
            return Some(format!(
                "instance type: {} is not in {}",
                offer.instance_type,
                list(&self.instance_types)
            ));
        }
        if let Some(max) = self.max_price
            && offer.price_per_hour > max
        {
            return Some(format!(
                "price {} > max_price {}",
                format_price(offer.price_per_hour),
                format_price(max)
            ));
        }
        None
    }

    /// The constraints that narrow offers beyond the defaults, as people write them, for
    /// summaries: `gpu H100:8, on-demand, max_price 40, regions [us-east-1]`. The spot policy is
    /// always named; cpu and memory only when they differ from the defaults.
    pub fn describe(&self) -> String {
        let r = &self.resources;
        let defaults = Resources::default();
        let mut parts = Vec::new();
        if let Some(g) = &r.gpu {
            parts.push(format!("gpu {g}"));
        }
        if let Some(t) = &r.gpu_total_memory {
            parts.push(format!("gpu total memory {}", range_text(t)));
        }
        if r.cpu != defaults.cpu {
            parts.push(format!("cpu {}", range_text(&r.cpu)));
        }
        if r.memory != defaults.memory {
            parts.push(format!("memory {}", range_text(&r.memory)));
        }
        parts.push(self.spot_policy.as_str().to_string());
        if !self.providers.is_empty() {
            parts.push(format!("providers {}", list(&self.providers)));
        }
        for (p, regions) in &self.provider_regions {
            if !regions.is_empty() {
                parts.push(format!("{p} regions {}", list(regions)));
            }
        }
        if !self.regions.is_empty() {
            parts.push(format!("regions {}", list(&self.regions)));
        }
        if !self.zones.is_empty() {
            parts.push(format!("zones {}", list(&self.zones)));
        }
        if !self.instance_types.is_empty() {
            parts.push(format!("instance types {}", list(&self.instance_types)));
        }
        if let Some(max) = self.max_price {
            parts.push(format!("max_price {}", format_price(max)));
        }
        parts.join(", ")
    }

    /// The fast check behind [`Query::matches`] and [`Catalog::query`]: numbers and flags
    /// first, strings last, no allocation. `names_checked` skips the GPU name test when the
    /// caller walked the GPU-name index, which already guarantees it.
    fn accepts(&self, o: &Offer, names_checked: bool) -> bool {
        self.accepts_hot(&Hot::of(o)) && self.accepts_cold(o, names_checked)
    }

    /// The string half of [`Query::accepts`]: GPU names, regions, zones, instance types.
    fn accepts_cold(&self, o: &Offer, names_checked: bool) -> bool {
        (names_checked
            || self
                .resources
                .gpu
                .as_ref()
                .is_none_or(|g| names_match(g, o)))
            && self.provider_regions_violated(o).is_none()
            && self.region_allowed(o)
            && self.zone_allowed(o)
            && self.instance_type_allowed(o)
    }

    /// The numeric half of [`Query::accepts`], on the packed columns (providers included: an
    /// enum compare).
    fn accepts_hot(&self, h: &Hot) -> bool {
        let r = &self.resources;
        self.spot_policy.allows(h.spot)
            && self.max_price.is_none_or(|max| h.price <= max)
            && r.cpu.contains(h.vcpus)
            && r.memory.contains(h.memory)
            && r.gpu.as_ref().is_none_or(|g| {
                g.count.contains(h.gpu_count)
                    && g.vendor.is_none_or(|v| h.vendor == Some(v))
                    && g.memory.is_none_or(|m| m.contains(h.gpu_memory))
            })
            && r.gpu_total_memory.is_none_or(|t| {
                t.contains(Memory::from_mib(
                    h.gpu_memory.mib() * u64::from(h.gpu_count),
                ))
            })
            && (self.providers.is_empty() || self.providers.contains(&h.provider))
    }

    /// Whether [`Query::accepts_cold`] can reject anything, so a scan may skip the offer's
    /// strings entirely.
    fn needs_cold(&self, names_checked: bool) -> bool {
        (!names_checked
            && self
                .resources
                .gpu
                .as_ref()
                .is_some_and(|g| !g.names.is_empty()))
            || self.provider_regions.iter().any(|(_, r)| !r.is_empty())
            || !self.regions.is_empty()
            || !self.zones.is_empty()
            || !self.instance_types.is_empty()
    }

    fn provider_allowed(&self, o: &Offer) -> bool {
        self.providers.is_empty() || self.providers.contains(&o.provider)
    }

    /// The provider's region list that `o` is outside of, if any.
    fn provider_regions_violated(&self, o: &Offer) -> Option<&[String]> {
        self.provider_regions
            .iter()
            .find(|(p, regions)| {
                *p == o.provider && !regions.is_empty() && !regions.contains(&o.region)
            })
            .map(|(_, regions)| regions.as_slice())
    }

    fn region_allowed(&self, o: &Offer) -> bool {
        self.regions.is_empty() || self.regions.contains(&o.region)
    }

    fn zone_allowed(&self, o: &Offer) -> bool {
        self.zones.is_empty() || o.zone.is_empty() || self.zones.contains(&o.zone)
    }

    fn instance_type_allowed(&self, o: &Offer) -> bool {
        self.instance_types.is_empty() || self.instance_types.contains(&o.instance_type)
    }
}

/// An offer's numeric columns, packed: what most constraints test, in 40 bytes instead of
/// the whole offer and its strings. [`Catalog`] keeps one per offer, index for index.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hot {
    price: f64,
    memory: Memory,
    gpu_memory: Memory,
    vcpus: u32,
    gpu_count: u32,
    provider: ProviderKind,
    vendor: Option<GpuVendor>,
    spot: bool,
}

impl Hot {
    pub(super) fn of(o: &Offer) -> Hot {
        Hot {
            price: o.price_per_hour,
            memory: o.memory,
            gpu_memory: o.gpu_memory,
            vcpus: o.vcpus,
            gpu_count: o.gpu_count,
            provider: o.provider,
            vendor: o.gpu_vendor,
            spot: o.spot,
        }
    }
}

fn names_match(g: &GpuSpec, o: &Offer) -> bool {
    g.names.is_empty()
        || (o.gpu_count > 0 && g.names.iter().any(|n| n.eq_ignore_ascii_case(&o.gpu_name)))
}

/// `[a, b, c]`.
fn list<T: std::fmt::Display>(items: &[T]) -> String {
    let mut s = String::from("[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{item}");
    }
    s.push(']');
    s
}

/// A range as people read it; the fully open one, which prints as `..`, reads "any".
fn range_text<T: std::fmt::Display + PartialEq>(r: &Range<T>) -> String {
    if r.min.is_none() && r.max.is_none() {
        "any".to_string()
    } else {
        r.to_string()
    }
}

/// Where a query's candidates come from: every offer, or the index lists of the GPU names it
/// asks for.
enum Source<'a> {
    /// The next index to look at.
    All(usize),
    Indexed(Merge<'a>),
}

/// A lazy k-way merge of ascending index lists (one per GPU name asked for; k is tiny, so a
/// linear scan for the smallest head beats a heap). Ascending index order is rank order.
struct Merge<'a> {
    lists: Vec<&'a [u32]>,
}

impl Iterator for Merge<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        if let [only] = self.lists.as_mut_slice() {
            let (&head, rest) = only.split_first()?;
            *only = rest;
            return Some(head);
        }
        let list = self
            .lists
            .iter_mut()
            .filter(|l| !l.is_empty())
            .min_by_key(|l| l[0])?;
        let (&head, rest) = list.split_first()?;
        *list = rest;
        Some(head)
    }
}

/// The iterator behind [`Catalog::query`]: offers live as long as the catalog (`'a`), the
/// iterator as long as the query (`'q`).
struct Matches<'a, 'q> {
    offers: &'a [Offer],
    hot: &'a [Hot],
    query: &'q Query,
    source: Source<'a>,
    /// Whether the strings must be checked too (see [`Query::needs_cold`]).
    cold: bool,
}

impl<'a> Iterator for Matches<'a, '_> {
    type Item = &'a Offer;

    fn next(&mut self) -> Option<&'a Offer> {
        let (q, cold) = (self.query, self.cold);
        let (offers, hot) = (self.offers, self.hot);
        match &mut self.source {
            Source::All(pos) => {
                while *pos < offers.len() {
                    let i = *pos;
                    *pos += 1;
                    if q.accepts_hot(&hot[i]) && (!cold || q.accepts_cold(&offers[i], false)) {
                        return Some(&offers[i]);
                    }
                }
                None
            }
            Source::Indexed(merge) => merge.map(|i| i as usize).find_map(|i| {
                (q.accepts_hot(&hot[i]) && (!cold || q.accepts_cold(&offers[i], true)))
                    .then(|| &offers[i])
            }),
        }
    }
}

pub(super) fn run<'a: 'q, 'q>(
    catalog: &'a Catalog,
    query: &'q Query,
) -> impl Iterator<Item = &'a Offer> + 'q {
    let source = match query.resources.gpu.as_ref().filter(|g| !g.names.is_empty()) {
        Some(g) => {
            let mut keys: Vec<String> = g.names.iter().map(|n| n.to_ascii_lowercase()).collect();
            // `H100,h100` must not yield each H100 offer twice.
            keys.sort_unstable();
            keys.dedup();
            let lists = keys
                .iter()
                .filter_map(|k| catalog.by_gpu.get(k))
                .map(Vec::as_slice)
                .filter(|l| !l.is_empty())
                .collect();
            Source::Indexed(Merge { lists })
        }
        None => Source::All(0),
    };
    let cold = query.needs_cold(matches!(source, Source::Indexed(_)));
    Matches {
        offers: &catalog.offers,
        hot: &catalog.hot,
        query,
        source,
        cold,
    }
}

/// One constraint, as [`explain_empty`] applies it.
struct Step<'q> {
    /// How it reads in "N offers match gpu H100:8, on-demand".
    desc: String,
    /// After "no offer in the catalog (N offers) …" (singular) and "0 of them …" (plural).
    singular: String,
    plural: String,
    test: Box<dyn Fn(&Offer) -> bool + 'q>,
    /// What the candidates before this step offer instead, in parentheses; may be empty.
    nearest: Nearest<'q>,
}

/// Describes what the candidates before a step offer instead.
type Nearest<'q> = Box<dyn Fn(&Catalog, &[&Offer]) -> String + 'q>;

impl<'q> Step<'q> {
    fn new(
        desc: String,
        singular: String,
        plural: String,
        test: impl Fn(&Offer) -> bool + 'q,
        nearest: impl Fn(&Catalog, &[&Offer]) -> String + 'q,
    ) -> Step<'q> {
        Step {
            desc,
            singular,
            plural,
            test: Box::new(test),
            nearest: Box::new(nearest),
        }
    }
}

/// `N offer(s)`.
fn offers_n(n: usize) -> String {
    if n == 1 {
        "1 offer".to_string()
    } else {
        format!("{n} offers")
    }
}

/// Distinct values, sorted, at most `max` shown: `a, b, c and 4 more`.
fn some_of(mut values: Vec<String>, max: usize) -> String {
    values.sort();
    values.dedup();
    let n = values.len();
    if n > max {
        values.truncate(max);
        format!("{} and {} more", values.join(", "), n - max)
    } else {
        values.join(", ")
    }
}

/// `min..max` of a quantity over the candidates, or the one value they share.
fn spread<T: Ord + Copy + std::fmt::Display>(cands: &[&Offer], f: impl Fn(&Offer) -> T) -> String {
    let lo = cands.iter().map(|o| f(o)).min();
    let hi = cands.iter().map(|o| f(o)).max();
    match (lo, hi) {
        (Some(a), Some(b)) if a == b => format!("all have {a}"),
        (Some(a), Some(b)) => format!("they have {a} to {b}"),
        _ => String::new(),
    }
}

fn steps(q: &Query) -> Vec<Step<'_>> {
    let r = &q.resources;
    let mut steps = Vec::new();
    if let Some(g) = &r.gpu {
        steps.push(Step::new(
            format!("gpu {g}"),
            format!("matches gpu {g}"),
            format!("match gpu {g}"),
            move |o| {
                names_match(g, o)
                    && g.vendor.is_none_or(|v| o.gpu_vendor == Some(v))
                    && g.count.contains(o.gpu_count)
                    && g.memory.is_none_or(|m| m.contains(o.gpu_memory))
            },
            move |catalog, _| gpu_alternatives(catalog, g),
        ));
    }
    if let Some(t) = &r.gpu_total_memory {
        let t = *t;
        steps.push(Step::new(
            format!("gpu total memory {}", range_text(&t)),
            format!("has gpu total memory {}", range_text(&t)),
            format!("have gpu total memory {}", range_text(&t)),
            move |o| t.contains(o.gpu_total_memory()),
            |_, c| spread(c, Offer::gpu_total_memory),
        ));
    }
    let cpu = r.cpu;
    steps.push(Step::new(
        format!("cpu {}", range_text(&cpu)),
        format!("has cpu {}", range_text(&cpu)),
        format!("have cpu {}", range_text(&cpu)),
        move |o| cpu.contains(o.vcpus),
        |_, c| spread(c, |o| o.vcpus) + " vCPUs",
    ));
    let mem = r.memory;
    steps.push(Step::new(
        format!("memory {}", range_text(&mem)),
        format!("has memory {}", range_text(&mem)),
        format!("have memory {}", range_text(&mem)),
        move |o| mem.contains(o.memory),
        |_, c| spread(c, |o| o.memory),
    ));
    let policy = q.spot_policy;
    if policy != SpotPolicy::Auto {
        let market = if policy == SpotPolicy::Spot {
            "spot"
        } else {
            "on-demand"
        };
        steps.push(Step::new(
            market.to_string(),
            format!("is a {market} offer"),
            format!("are {market} offers"),
            move |o| policy.allows(o.spot),
            |_, _| "spot_policy auto accepts both".to_string(),
        ));
    }
    if !q.providers.is_empty() {
        steps.push(Step::new(
            format!("providers {}", list(&q.providers)),
            format!("is on providers {}", list(&q.providers)),
            format!("are on providers {}", list(&q.providers)),
            |o| q.provider_allowed(o),
            |_, c| {
                format!(
                    "they are on {}",
                    some_of(c.iter().map(|o| o.provider.to_string()).collect(), 8)
                )
            },
        ));
    }
    if q.provider_regions
        .iter()
        .any(|(_, regions)| !regions.is_empty())
    {
        let limits: Vec<String> = q
            .provider_regions
            .iter()
            .filter(|(_, regions)| !regions.is_empty())
            .map(|(p, regions)| format!("{p} {}", list(regions)))
            .collect();
        let limits = limits.join(", ");
        steps.push(Step::new(
            format!("provider regions {limits}"),
            format!("is in the provider regions {limits}"),
            format!("are in the provider regions {limits}"),
            |o| q.provider_regions_violated(o).is_none(),
            |_, c| regions_of(c),
        ));
    }
    if !q.regions.is_empty() {
        steps.push(Step::new(
            format!("regions {}", list(&q.regions)),
            format!("is in regions {}", list(&q.regions)),
            format!("are in regions {}", list(&q.regions)),
            |o| q.region_allowed(o),
            |_, c| regions_of(c),
        ));
    }
    if !q.zones.is_empty() {
        steps.push(Step::new(
            format!("zones {}", list(&q.zones)),
            format!("is in zones {}", list(&q.zones)),
            format!("are in zones {}", list(&q.zones)),
            |o| q.zone_allowed(o),
            |_, c| {
                format!(
                    "they are in zones {}",
                    some_of(c.iter().map(|o| o.zone.clone()).collect(), 8)
                )
            },
        ));
    }
    if !q.instance_types.is_empty() {
        steps.push(Step::new(
            format!("instance types {}", list(&q.instance_types)),
            format!("is of instance types {}", list(&q.instance_types)),
            format!("are of instance types {}", list(&q.instance_types)),
            |o| q.instance_type_allowed(o),
            |_, c| {
                format!(
                    "they are {}",
                    some_of(c.iter().map(|o| o.instance_type.clone()).collect(), 8)
                )
            },
        ));
    }
    if let Some(max) = q.max_price {
        steps.push(Step::new(
            format!("max_price {}", format_price(max)),
            format!("is at or under max_price {}", format_price(max)),
            format!("are at or under max_price {}", format_price(max)),
            move |o| o.price_per_hour <= max,
            // Candidates keep rank order, so the first is the cheapest.
            |_, c| {
                c.first().map_or(String::new(), |o| {
                    format!(
                        "cheapest: {} {} {} {}",
                        format_price(o.price_per_hour),
                        o.provider,
                        o.instance_type,
                        o.region
                    )
                })
            },
        ));
    }
    steps
}

fn regions_of(c: &[&Offer]) -> String {
    format!(
        "they are in {}",
        some_of(c.iter().map(|o| o.region.clone()).collect(), 8)
    )
}

/// For a GPU spec nothing matches: the shapes the catalog has for the names asked for
/// (`8x H200 141GB`), or the names it has at all when none of them is known.
fn gpu_alternatives(catalog: &Catalog, g: &GpuSpec) -> String {
    if g.names.is_empty() {
        return String::new();
    }
    let mut shapes: Vec<(String, u32, Memory)> = g
        .names
        .iter()
        .filter_map(|n| catalog.by_gpu.get(&n.to_ascii_lowercase()))
        .flatten()
        .map(|&i| {
            let o = &catalog.offers[i as usize];
            (o.gpu_name.clone(), o.gpu_count, o.gpu_memory)
        })
        .collect();
    if shapes.is_empty() {
        let known: Vec<String> = catalog
            .by_gpu
            .keys()
            .filter(|k| !k.is_empty())
            .map(|k| canonical_name(catalog, k))
            .collect();
        let asked = if g.names.len() == 1 {
            "GPU named"
        } else {
            "GPU named any of"
        };
        return format!(
            "the catalog has no {asked} {}; it has {}",
            g.names.join(","),
            some_of(known, 30)
        );
    }
    shapes.sort();
    shapes.dedup();
    let shown: Vec<String> = shapes
        .iter()
        .map(|(name, count, mem)| format!("{count}x {name} {mem}"))
        .collect();
    format!("available: {}", shown.join(", "))
}

/// A GPU name as the catalog spells it, from its lowercased index key.
fn canonical_name(catalog: &Catalog, key: &str) -> String {
    catalog.by_gpu.get(key).and_then(|l| l.first()).map_or_else(
        || key.to_string(),
        |&i| catalog.offers[i as usize].gpu_name.clone(),
    )
}

pub(super) fn explain_empty(catalog: &Catalog, query: &Query) -> String {
    if catalog.is_empty() {
        return format!("the catalog ({}) has no offers", catalog.source);
    }
    let mut cands: Vec<&Offer> = catalog.offers.iter().collect();
    let mut narrowed: Vec<String> = Vec::new();
    for step in steps(query) {
        let next: Vec<&Offer> = cands.iter().copied().filter(|o| (step.test)(o)).collect();
        if next.is_empty() {
            let nearest = (step.nearest)(catalog, &cands);
            let nearest = if nearest.is_empty() {
                String::new()
            } else {
                format!(" ({nearest})")
            };
            return if narrowed.is_empty() {
                format!(
                    "no offer in the catalog ({}) {}{nearest}",
                    offers_n(catalog.len()),
                    step.singular
                )
            } else {
                let verb = if cands.len() == 1 { "matches" } else { "match" };
                format!(
                    "{} {verb} {}; 0 of them {}{nearest}",
                    offers_n(cands.len()),
                    narrowed.join(", "),
                    step.plural
                )
            };
        }
        if next.len() < cands.len() {
            narrowed.push(step.desc);
        }
        cands = next;
    }
    let verb = if cands.len() == 1 { "matches" } else { "match" };
    format!("{} {verb} every constraint", offers_n(cands.len()))
}
