//! Offer queries at scale (issue 2's target: a typical fleet query under 20 ms on a catalog of
//! 1,000,000 offers).
//!
//! The catalog is generated deterministically: the shipped snapshot's 3,478 shapes (provider,
//! instance type, GPUs, vCPUs, memory, spot) replicated across synthetic regions
//! (`us-east-1`, `us-east-1-r1`, …) with prices jittered ±20% by a fixed LCG, so every run
//! and every machine benchmarks the same million offers. Replica 0 keeps the real regions, so
//! region filters hit a realistic handful of offers.
//!
//! Run: `cargo bench -p flotilla-core --bench catalog -- --warm-up-time 1 --measurement-time 3`

use criterion::{Criterion, criterion_main};
use flotilla_core::catalog::{Catalog, EMBEDDED_CSV, Offer, Query, SpotPolicy};
use flotilla_core::spec::{Range, Resources, parse_gpu, parse_memory_range};
use std::hint::black_box;

const OFFERS: usize = 1_000_000;

/// Knuth's MMIX LCG; the top 53 bits as a fraction in [0, 1).
struct Lcg(u64);

impl Lcg {
    fn next_f64(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn million_offers() -> Catalog {
    let shapes = Catalog::embedded();
    let shapes = shapes.offers();
    let mut lcg = Lcg(0x5eed);
    let mut offers = Vec::with_capacity(OFFERS);
    for i in 0..OFFERS {
        let shape = &shapes[i % shapes.len()];
        let replica = i / shapes.len();
        let mut o: Offer = shape.clone();
        if replica > 0 {
            o.region = format!("{}-r{replica}", shape.region);
        }
        let jitter = 0.8 + 0.4 * lcg.next_f64();
        o.price_per_hour = (shape.price_per_hour * jitter * 10_000.0).round() / 10_000.0;
        offers.push(o);
    }
    Catalog::from_offers(offers, "generated")
}

fn gpu_query(gpu: &str) -> Query {
    Query {
        resources: Resources {
            gpu: Some(parse_gpu(gpu).expect("valid spec")),
            ..Resources::default()
        },
        ..Query::default()
    }
}

fn bench_queries(c: &mut Criterion) {
    let catalog = million_offers();
    assert_eq!(catalog.len(), OFFERS);

    // A training fleet: 8x H100, on-demand, under a price cap; a plan takes the cheapest few.
    let h100 = Query {
        max_price: Some(60.0),
        ..gpu_query("H100:8")
    };
    assert_eq!(catalog.query(&h100).take(10).count(), 10);

    // A spot fine-tuning fleet: A100 80GB in two regions, every candidate.
    let a100 = Query {
        spot_policy: SpotPolicy::Spot,
        regions: vec!["us-east-1".into(), "us-central1".into()],
        ..gpu_query("A100:80GB")
    };
    assert!(catalog.query(&a100).count() > 0);

    // A CPU fleet: no GPU, 32+ vCPUs, 256 GB+ memory.
    let mut cpu = Query::default();
    cpu.resources.cpu = Range::at_least(32);
    cpu.resources.memory = parse_memory_range("256GB..").expect("valid range");
    assert_eq!(catalog.query(&cpu).take(10).count(), 10);

    // A query nothing satisfies: the explanation walks the whole catalog.
    let none = Query {
        max_price: Some(1.0),
        ..gpu_query("H100:8")
    };
    assert_eq!(catalog.query(&none).count(), 0);

    let mut g = c.benchmark_group("catalog_1m_offers");
    g.bench_function("h100x8_on_demand_max_price_first_10", |b| {
        b.iter(|| catalog.query(black_box(&h100)).take(10).collect::<Vec<_>>())
    });
    g.bench_function("a100_80gb_spot_two_regions_all", |b| {
        b.iter(|| catalog.query(black_box(&a100)).collect::<Vec<_>>())
    });
    g.bench_function("cpu_32_memory_256gb_first_10", |b| {
        b.iter(|| catalog.query(black_box(&cpu)).take(10).collect::<Vec<_>>())
    });
    g.bench_function("count_all_h100x8_on_demand", |b| {
        b.iter(|| catalog.query(black_box(&gpu_query("H100:8"))).count())
    });
    g.bench_function("count_all_cpu_32_memory_256gb", |b| {
        b.iter(|| catalog.query(black_box(&cpu)).count())
    });
    g.bench_function("count_all_default_resources", |b| {
        b.iter(|| catalog.query(black_box(&Query::default())).count())
    });
    g.sample_size(10);
    g.bench_function("explain_empty_h100x8_max_price_1", |b| {
        b.iter(|| catalog.explain_empty(black_box(&none)))
    });
    g.finish();
}

fn bench_load(c: &mut Criterion) {
    let mut g = c.benchmark_group("catalog_load");
    g.bench_function("embedded_snapshot_3478_offers", |b| {
        b.iter(|| Catalog::from_csv(black_box(EMBEDDED_CSV), "embedded snapshot"))
    });
    g.sample_size(10);
    g.bench_function("generate_and_rank_1m_offers", |b| b.iter(million_offers));
    g.finish();
}

/// `criterion_group!` defines an undocumented `pub fn`; keep it out of the lint's way.
#[allow(missing_docs)]
mod group {
    use super::{bench_load, bench_queries};
    criterion::criterion_group!(benches, bench_queries, bench_load);
}
criterion_main!(group::benches);
