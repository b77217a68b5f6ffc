//! Apply scheduling at scale (issue 4's target): 1,000 nodes through the real executor — the
//! walker, its permits, the find-before-create, the group-committed state writes (rendered to
//! JSON by the in-memory store) — against the fake provider sleeping 50 ms per create, with
//! parallelism 64 and no per-region limit or rate. The bound is ceil(1000 / 64) × 50 ms =
//! 800 ms; the target is within 10% of it (under 880 ms).
//!
//! `cargo bench -p flotilla-core --bench apply`

// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use flotilla_core::apply::fake::{FakeProvider, MemoryStore};
use flotilla_core::apply::{ApplyContext, ApplyOptions, CancelToken, EventSink, Fleets, apply};
use flotilla_core::catalog::{Catalog, ProviderKind};
use flotilla_core::config::load_sources;
use flotilla_core::plan::{Plan, PlanOptions, plan};
use flotilla_core::provider::Provider;
use flotilla_core::state::State;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const NODES: usize = 1000;
const PARALLELISM: usize = 64;
const SLEEP: Duration = Duration::from_millis(50);

const FLEET: &str = r#"
provider "aws" { regions = ["us-east-1"] }
fleet "big" {
  nodes     = 1000
  providers = ["aws"]
  resources { gpu = "L4:1" }
}
"#;

struct Setup {
    plan: Plan,
    fleets: Fleets,
    state: State,
}

fn setup() -> Setup {
    let config = load_sources(&[("bench.hcl".to_string(), FLEET.to_string())], &[], &[])
        .expect("bench config loads");
    let catalog = Catalog::embedded();
    let state = State::empty();
    let plan = plan(&config, &state, &catalog, &PlanOptions::default()).expect("bench plan");
    assert_eq!(plan.summary.add, NODES);
    Setup {
        fleets: Fleets::from_config(&config, &catalog),
        plan,
        state,
    }
}

/// One whole apply; returns its wall time.
fn once(rt: &tokio::runtime::Runtime, s: &Setup) -> Duration {
    let fake: Arc<dyn Provider> = Arc::new(FakeProvider::new(ProviderKind::Aws).with_sleep(SLEEP));
    let ctx = ApplyContext {
        providers: BTreeMap::from([(ProviderKind::Aws, fake)]),
        store: Arc::new(MemoryStore::new()),
        state: s.state.clone(),
        version: None,
        options: ApplyOptions {
            parallelism: PARALLELISM,
            per_region_limit: None,
            per_region_rate: None,
            ..ApplyOptions::default()
        },
        fleets: s.fleets.clone(),
        cancel: CancelToken::new(),
        events: EventSink::none(),
    };
    let started = Instant::now();
    let report = rt.block_on(apply(&s.plan, ctx));
    let elapsed = started.elapsed();
    assert!(
        report.is_success(),
        "bench apply failed: {:?}",
        report.error
    );
    assert_eq!(report.counts().add, NODES);
    elapsed
}

fn bench_apply(c: &mut Criterion) {
    let s = setup();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let bound = SLEEP * u32::try_from(NODES.div_ceil(PARALLELISM)).expect("small");
    let mut group = c.benchmark_group("apply");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(12));
    group.bench_function("1000_nodes_parallelism_64_sleep_50ms", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| once(&rt, &s)).sum())
    });
    group.finish();

    let mut times: Vec<Duration> = (0..5).map(|_| once(&rt, &s)).collect();
    times.sort();
    let median = times[times.len() / 2];
    let over = (median.as_secs_f64() / bound.as_secs_f64() - 1.0) * 100.0;
    #[allow(clippy::print_stdout)]
    {
        println!(
            "apply of {NODES} nodes, parallelism {PARALLELISM}, {} ms per create: median {:.1} ms (min {:.1} ms) vs bound {} ms: {over:+.1}% (target within 10%)",
            SLEEP.as_millis(),
            median.as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
            bound.as_millis(),
        );
    }
}

criterion_group!(benches, bench_apply);
criterion_main!(benches);
