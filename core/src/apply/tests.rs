//! The executor against the fake provider and the in-memory store. Time is tokio's paused
//! clock, so the fake's sleeps cost nothing and concurrency is deterministic; no test looks
//! at the wall clock.

use super::fake::{FakeFaults, FakeProvider, MemoryStore};
use super::*;
use crate::catalog::Catalog;
use crate::config::{Config, load_sources};
use crate::plan::PlanOptions;
use crate::state::{Resource, ResourceKind};
use std::sync::Mutex;

const CATALOG: &str = "\
provider,instance_type,region,zone,gpu_vendor,gpu_name,gpu_count,gpu_memory_gib,vcpus,memory_gib,spot,price_per_hour_usd
aws,p5.48xlarge,us-east-1,,nvidia,H100,8,80,192,2048,false,55.04
aws,p5.48xlarge,us-west-2,,nvidia,H100,8,80,192,2048,false,55.04
gcp,a3-highgpu-8g,us-central1,,nvidia,H100,8,80,208,1872,false,43.07
gcp,a3-highgpu-8g,us-east4,,nvidia,H100,8,80,208,1872,false,46.00
aws,g6.xlarge,us-east-1,,nvidia,L4,1,24,4,16,false,0.805
aws,g6.xlarge,us-west-2,,nvidia,L4,1,24,4,16,false,0.805
aws,g6.2xlarge,us-east-1,,nvidia,L4,1,24,8,32,false,0.978
aws,g6.2xlarge,us-west-2,,nvidia,L4,1,24,8,32,false,0.978
gcp,a2-highgpu-1g,us-central1,,nvidia,A100,1,40,12,85,false,3.67
gcp,a2-ultragpu-1g,us-central1,,nvidia,A100,1,80,12,170,false,5.07
gcp,a2-highgpu-1g,us-east4,,nvidia,A100,1,40,12,85,false,5.50
azure,Standard_NC24ads_A100_v4,eastus,,nvidia,A100,1,80,24,220,false,3.67
azure,Standard_NC24ads_A100_v4,westus2,,nvidia,A100,1,80,24,220,false,3.90
";

fn catalog() -> Catalog {
    Catalog::from_csv(CATALOG, "test catalog").expect("test catalog parses")
}

fn config(hcl: &str) -> Config {
    match load_sources(&[("main.hcl".to_string(), hcl.to_string())], &[], &[]) {
        Ok(c) => c,
        Err(d) => panic!("test config does not load:\n{d}"),
    }
}

const PROVIDERS: &str = r#"
provider "aws" {}
provider "gcp" { project = "test" }
"#;

/// A fleet of `nodes` L4 nodes on AWS, each with a volume, behind a gateway.
fn web(nodes: u32) -> String {
    format!(
        r#"{PROVIDERS}
volume "data" {{ size = "100GB" }}
fleet "web" {{
  nodes     = {nodes}
  providers = ["aws"]
  resources {{ gpu = "L4:1" }}
  volumes   = [volume.data]
  tags      = {{ team = "web" }}
}}
gateway "api" {{ targets = [fleet.web] }}
"#
    )
}

/// A fleet of `nodes` L4 nodes without volumes in `region`.
fn plain(name: &str, nodes: u32, region: &str) -> String {
    format!(
        r#"
fleet "{name}" {{
  nodes     = {nodes}
  providers = ["aws"]
  regions   = ["{region}"]
  resources {{ gpu = "L4:1" }}
}}
"#
    )
}

struct Run {
    aws: Arc<FakeProvider>,
    gcp: Arc<FakeProvider>,
    azure: Arc<FakeProvider>,
    store: Arc<MemoryStore>,
    events: Arc<Mutex<Vec<Event>>>,
    cancel: CancelToken,
    options: ApplyOptions,
    state: State,
    version: Option<StoredVersion>,
}

impl Run {
    fn new() -> Run {
        Run::with(
            FakeProvider::new(ProviderKind::Aws),
            FakeProvider::new(ProviderKind::Gcp),
        )
    }

    fn with(aws: FakeProvider, gcp: FakeProvider) -> Run {
        Run {
            aws: Arc::new(aws),
            gcp: Arc::new(gcp),
            azure: Arc::new(FakeProvider::new(ProviderKind::Azure)),
            store: Arc::new(MemoryStore::new()),
            events: Arc::new(Mutex::new(Vec::new())),
            cancel: CancelToken::new(),
            options: ApplyOptions {
                parallelism: 10,
                per_region_limit: None,
                per_region_rate: None,
                max_offers_tried: 10,
                retry: RetryPolicy {
                    max_attempts: 5,
                    base_delay: Duration::from_millis(10),
                    max_delay: Duration::from_millis(100),
                },
            },
            state: State::empty(),
            version: None,
        }
    }

    fn plan(&self, hcl: &str, options: &PlanOptions) -> (Plan, Fleets) {
        let config = config(hcl);
        let catalog = catalog();
        let plan = crate::plan::plan(&config, &self.state, &catalog, options).expect("plans");
        (plan, Fleets::from_config(&config, &catalog))
    }

    async fn apply(&mut self, hcl: &str) -> ApplyReport {
        self.apply_with(hcl, &PlanOptions::default(), EventSink::none())
            .await
    }

    async fn apply_with(
        &mut self,
        hcl: &str,
        options: &PlanOptions,
        extra: EventSink,
    ) -> ApplyReport {
        let (plan, fleets) = self.plan(hcl, options);
        let events = self.events.clone();
        let sink = EventSink::new(move |e| {
            extra.emit(e.clone());
            events.lock().unwrap().push(e);
        });
        let providers: BTreeMap<ProviderKind, Arc<dyn Provider>> = BTreeMap::from([
            (ProviderKind::Aws, self.aws.clone() as Arc<dyn Provider>),
            (ProviderKind::Gcp, self.gcp.clone() as Arc<dyn Provider>),
            (ProviderKind::Azure, self.azure.clone() as Arc<dyn Provider>),
        ]);
        let report = apply(
            &plan,
            ApplyContext {
                providers,
                store: self.store.clone(),
                state: self.state.clone(),
                version: self.version.clone(),
                options: self.options.clone(),
                fleets,
                cancel: self.cancel.clone(),
                events: sink,
            },
        )
        .await;
        self.state = report.state.clone();
        self.version = report.version.clone();
        report
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    fn failovers(&self) -> Vec<(String, String, String, String)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::FailedOver {
                    address,
                    from,
                    why,
                    to,
                } => Some((address, offer_label(&from), why.code, offer_label(&to))),
                _ => None,
            })
            .collect()
    }
}

fn failed_codes(report: &ApplyReport) -> Vec<(String, String)> {
    report
        .failed()
        .map(|o| match &o.status {
            OpStatus::Failed { error, .. } => {
                (o.op.address.clone(), error.code().unwrap_or("").to_string())
            }
            _ => unreachable!(),
        })
        .collect()
}

fn skipped(report: &ApplyReport) -> Vec<(String, String)> {
    report
        .skipped()
        .map(|o| match &o.status {
            OpStatus::Skipped { because } => (o.op.label(), because.clone()),
            _ => unreachable!(),
        })
        .collect()
}

fn position(calls: &[fake::FakeCall], method: &str, address: &str) -> usize {
    calls
        .iter()
        .position(|c| c.method == method && c.address == address)
        .unwrap_or_else(|| panic!("no {method} for {address} in {calls:#?}"))
}

#[tokio::test(start_paused = true)]
async fn dependencies_run_in_order_and_a_second_plan_is_empty() {
    let mut run = Run::new();
    let hcl = web(3);
    let report = run.apply(&hcl).await;
    assert!(report.is_success(), "{report:#?}");
    assert_eq!(
        report.counts(),
        crate::plan::Summary {
            add: 7,
            change: 0,
            destroy: 0
        }
    );

    let calls = run.aws.calls();
    let gateway = position(&calls, "create_gateway", "gateway.api");
    for i in 0..3 {
        let volume = position(&calls, "create_volume", &format!("volume.data[{i}]"));
        let node = position(&calls, "create_instance", &format!("fleet.web[{i}]"));
        assert!(volume < node, "volume {i} after its node");
        assert!(node < gateway, "node {i} after the gateway");
        // The node is made in its volume's zone, and records what the plan compares.
        let n = run.state.get(&format!("fleet.web[{i}]")).unwrap();
        let v = run.state.get(&format!("volume.data[{i}]")).unwrap();
        assert_eq!(n.zone, v.zone);
        assert_eq!(n.dependencies, vec![format!("volume.data[{i}]")]);
    }
    let g = run.state.get("gateway.api").unwrap();
    assert_eq!(g.dependencies.len(), 3);

    let (again, _) = run.plan(&hcl, &PlanOptions::default());
    assert!(!again.has_changes(), "{:#?}", again.changes);
}

#[tokio::test(start_paused = true)]
async fn parallelism_bound_is_never_exceeded() {
    let mut run = Run::with(
        FakeProvider::new(ProviderKind::Aws).with_sleep(Duration::from_millis(50)),
        FakeProvider::new(ProviderKind::Gcp),
    );
    run.options.parallelism = 7;
    let report = run
        .apply(&format!("{PROVIDERS}{}", plain("a", 40, "us-east-1")))
        .await;
    assert!(report.is_success());
    assert_eq!(run.aws.max_concurrent(), 7);
}

#[tokio::test(start_paused = true)]
async fn per_region_limit_is_respected() {
    let mut run = Run::with(
        FakeProvider::new(ProviderKind::Aws).with_sleep(Duration::from_millis(50)),
        FakeProvider::new(ProviderKind::Gcp),
    );
    run.options.parallelism = 10;
    run.options.per_region_limit = Some(3);
    let hcl = format!(
        "{PROVIDERS}{}{}",
        plain("east", 12, "us-east-1"),
        plain("west", 12, "us-west-2")
    );
    let report = run.apply(&hcl).await;
    assert!(report.is_success());
    assert_eq!(run.aws.max_concurrent_in("us-east-1"), 3);
    assert_eq!(run.aws.max_concurrent_in("us-west-2"), 3);
    assert_eq!(run.aws.max_concurrent(), 6);
}

#[tokio::test(start_paused = true)]
async fn create_rate_is_limited_per_region() {
    let mut run = Run::new();
    run.options.per_region_rate = Some(RateLimit {
        per_second: 2.0,
        burst: 1,
    });
    let started = tokio::time::Instant::now();
    let report = run
        .apply(&format!("{PROVIDERS}{}", plain("a", 9, "us-east-1")))
        .await;
    assert!(report.is_success());
    // One token at once, then one every half second: the ninth create waits four seconds of
    // the paused (virtual) clock.
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_skips_dependents_and_independent_work_continues() {
    let faults = FakeFaults {
        fail: BTreeMap::from([(
            "fleet.web[1]".to_string(),
            "The image id does not exist".to_string(),
        )]),
        ..FakeFaults::default()
    };
    let mut run = Run::with(
        FakeProvider::new(ProviderKind::Aws).with_faults(faults),
        FakeProvider::new(ProviderKind::Gcp),
    );
    let hcl = format!("{}{}", web(3), plain("batch", 2, "us-west-2"));
    let report = run.apply(&hcl).await;
    assert!(!report.is_success());
    assert_eq!(
        failed_codes(&report),
        vec![(
            "fleet.web[1]".to_string(),
            "InvalidParameterValue".to_string()
        )]
    );
    assert_eq!(
        skipped(&report),
        vec![(
            "create gateway.api".to_string(),
            "fleet.web[1] failed".to_string()
        )]
    );
    for done in [
        "fleet.web[0]",
        "fleet.web[2]",
        "fleet.batch[0]",
        "fleet.batch[1]",
        "volume.data[1]",
    ] {
        assert!(run.state.get(done).is_some(), "{done} was not made");
    }
    assert!(run.state.get("fleet.web[1]").is_none());
    match &report.failed().next().unwrap().status {
        OpStatus::Failed { error, .. } => {
            assert_eq!(
                error.to_string(),
                "InvalidParameterValue: The image id does not exist"
            );
        }
        _ => unreachable!(),
    }
}

#[tokio::test(start_paused = true)]
async fn capacity_failure_moves_to_the_next_offer_and_says_so() {
    let faults = FakeFaults {
        capacity: vec!["a3-highgpu-8g".to_string()],
        ..FakeFaults::default()
    };
    let mut run = Run::with(
        FakeProvider::new(ProviderKind::Aws),
        FakeProvider::new(ProviderKind::Gcp).with_faults(faults),
    );
    run.options.parallelism = 1;
    let hcl = format!(
        r#"{PROVIDERS}
fleet "train" {{
  nodes = 2
  resources {{ gpu = "H100:8" }}
}}"#
    );
    let report = run.apply(&hcl).await;
    assert!(report.is_success(), "{report:#?}");
    assert_eq!(
        run.failovers(),
        vec![
            (
                "fleet.train[0]".to_string(),
                "gcp a3-highgpu-8g us-central1".to_string(),
                "InsufficientInstanceCapacity".to_string(),
                "gcp a3-highgpu-8g us-east4".to_string()
            ),
            (
                "fleet.train[0]".to_string(),
                "gcp a3-highgpu-8g us-east4".to_string(),
                "InsufficientInstanceCapacity".to_string(),
                "aws p5.48xlarge us-east-1".to_string()
            ),
            // The second node skips what the first learned has no capacity.
            (
                "fleet.train[1]".to_string(),
                "gcp a3-highgpu-8g us-central1".to_string(),
                "InsufficientInstanceCapacity".to_string(),
                "aws p5.48xlarge us-east-1".to_string()
            ),
        ]
    );
    for i in 0..2 {
        let n = run.state.get(&format!("fleet.train[{i}]")).unwrap();
        assert_eq!(n.offer.as_ref().unwrap().instance_type, "p5.48xlarge");
        assert_eq!(n.provider, ProviderKind::Aws);
    }
    let done = report.done().next().unwrap();
    assert!(
        matches!(&done.status, OpStatus::Done { offer: Some(o), .. } if o.instance_type == "p5.48xlarge")
    );
}

#[tokio::test(start_paused = true)]
async fn a_quota_error_skips_the_rest_of_its_region() {
    // us-central1's second offer ranks before us-east4's, but the quota is the region's:
    // both nodes go to us-east4 without trying it.
    let faults = FakeFaults {
        quota: vec!["us-central1:a2-highgpu-1g".to_string()],
        ..FakeFaults::default()
    };
    let mut run = Run::with(
        FakeProvider::new(ProviderKind::Aws),
        FakeProvider::new(ProviderKind::Gcp).with_faults(faults),
    );
    run.options.parallelism = 1;
    let hcl = format!(
        r#"{PROVIDERS}
fleet "infer" {{
  nodes     = 2
  providers = ["gcp"]
  resources {{ gpu = "A100:1" }}
}}"#
    );
    let report = run.apply(&hcl).await;
    assert!(report.is_success(), "{report:#?}");
    let failovers = run.failovers();
    assert_eq!(
        failovers
            .iter()
            .map(|(a, from, code, to)| (a.as_str(), from.as_str(), code.as_str(), to.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (
                "fleet.infer[0]",
                "gcp a2-highgpu-1g us-central1",
                "QUOTA_EXCEEDED",
                "gcp a2-highgpu-1g us-east4"
            ),
            (
                "fleet.infer[1]",
                "gcp a2-highgpu-1g us-central1",
                "QUOTA_EXCEEDED",
                "gcp a2-highgpu-1g us-east4"
            ),
        ]
    );
    // The event carries the quota's name for the output.
    assert!(
        run.events().into_iter().any(|e| matches!(
            e,
            Event::FailedOver { why, .. }
                if why.kind == crate::provider::FailureKind::Quota
                    && why.message.contains("GPUS_ALL_REGIONS")
        )),
        "no quota failover event"
    );
    for i in 0..2 {
        let n = run.state.get(&format!("fleet.infer[{i}]")).unwrap();
        assert_eq!(n.region, "us-east4");
        assert_eq!(n.offer.as_ref().unwrap().instance_type, "a2-highgpu-1g");
    }
}

#[tokio::test(start_paused = true)]
async fn capacity_failover_stops_at_max_offers_tried() {
    let faults = FakeFaults {
        capacity: vec!["a3-highgpu-8g".to_string()],
        ..FakeFaults::default()
    };
    let mut run = Run::with(
        FakeProvider::new(ProviderKind::Aws),
        FakeProvider::new(ProviderKind::Gcp).with_faults(faults),
    );
    run.options.max_offers_tried = 2;
    let hcl = format!("{PROVIDERS}\nfleet \"train\" {{\n  resources {{ gpu = \"H100:8\" }}\n}}\n");
    let report = run.apply(&hcl).await;
    let failed: Vec<_> = report.failed().collect();
    assert_eq!(failed.len(), 1);
    match &failed[0].status {
        OpStatus::Failed {
            error:
                OpError::NoCapacity {
                    tried,
                    limit_reached,
                },
            ..
        } => {
            assert!(*limit_reached);
            assert_eq!(tried.len(), 2);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_cluster_fleet_moves_as_a_group() {
    let faults = FakeFaults {
        capacity: vec!["us-central1:a3-highgpu-8g".to_string()],
        ..FakeFaults::default()
    };
    let mut run = Run::with(
        FakeProvider::new(ProviderKind::Aws).with_sleep(Duration::from_millis(20)),
        FakeProvider::new(ProviderKind::Gcp)
            .with_faults(faults)
            .with_sleep(Duration::from_millis(20)),
    );
    run.options.parallelism = 4;
    let hcl = format!(
        r#"{PROVIDERS}
fleet "train" {{
  nodes     = 6
  placement = "cluster"
  resources {{ gpu = "H100:8" }}
}}"#
    );
    let report = run.apply(&hcl).await;
    assert!(report.is_success(), "{report:#?}");
    // Not to us-east4 (the next gcp offer, another group) node by node: every node lands in
    // the one group the fleet moved to, with one zone.
    let groups: std::collections::BTreeSet<(ProviderKind, String, String)> = (0..6)
        .map(|i| {
            let n = run.state.get(&format!("fleet.train[{i}]")).unwrap();
            (n.provider, n.region.clone(), n.zone.clone())
        })
        .collect();
    assert_eq!(groups.len(), 1, "{groups:?}");
    let failovers = run.failovers();
    assert_eq!(failovers.len(), 6, "{failovers:#?}");
    assert!(
        failovers
            .iter()
            .all(|f| f.1 == "gcp a3-highgpu-8g us-central1")
    );
    // The next plan keeps the whole cluster where it is.
    let (again, _) = run.plan(&hcl, &PlanOptions::default());
    assert!(!again.has_changes(), "{:#?}", again.changes);
}

#[tokio::test(start_paused = true)]
async fn throttling_is_retried_with_backoff() {
    let faults = FakeFaults {
        throttle: 3,
        ..FakeFaults::default()
    };
    let mut run = Run::with(
        FakeProvider::new(ProviderKind::Aws).with_faults(faults),
        FakeProvider::new(ProviderKind::Gcp),
    );
    let report = run
        .apply(&format!("{PROVIDERS}{}", plain("a", 2, "us-east-1")))
        .await;
    assert!(report.is_success(), "{report:#?}");
    let retries = run
        .events()
        .into_iter()
        .filter(
            |e| matches!(e, Event::Retrying { error, .. } if error.code == "RequestLimitExceeded"),
        )
        .count();
    assert_eq!(retries, 3);
    assert_eq!(run.state.resources.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn throttling_that_does_not_stop_fails_the_operation() {
    let faults = FakeFaults {
        throttle: 1000,
        ..FakeFaults::default()
    };
    let mut run = Run::with(
        FakeProvider::new(ProviderKind::Aws).with_faults(faults),
        FakeProvider::new(ProviderKind::Gcp),
    );
    run.options.retry.max_attempts = 3;
    let report = run
        .apply(&format!("{PROVIDERS}{}", plain("a", 1, "us-east-1")))
        .await;
    assert_eq!(
        failed_codes(&report),
        vec![("fleet.a[0]".to_string(), "RequestLimitExceeded".to_string())]
    );
    assert_eq!(
        run.aws
            .calls()
            .iter()
            .filter(|c| c.method == "create_instance")
            .count(),
        3
    );
}

#[test]
fn backoff_grows_and_is_capped() {
    let policy = RetryPolicy {
        max_attempts: 10,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
    };
    for _ in 0..50 {
        let first = retry::backoff(&policy, 1);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let third = retry::backoff(&policy, 3);
        assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
        let late = retry::backoff(&policy, 30);
        assert!(late >= Duration::from_millis(500) && late <= Duration::from_secs(1));
    }
}

#[tokio::test(start_paused = true)]
async fn state_is_written_after_every_operation_with_chained_versions() {
    let mut run = Run::new();
    run.options.parallelism = 1;
    // When an operation starts, what it depends on is already in the stored state.
    let store = run.store.clone();
    let missing = Arc::new(Mutex::new(Vec::new()));
    let log = missing.clone();
    let sink = EventSink::new(move |e| {
        if let Event::Started { op } = e {
            let stored = store.current().map(|(s, _)| s).unwrap_or_else(State::empty);
            let needs: Vec<String> = match op.address.as_str() {
                "gateway.api" => vec!["fleet.web[0]".into(), "fleet.web[1]".into()],
                a if a.starts_with("fleet.web[") => vec![a.replace("fleet.web", "volume.data")],
                _ => vec![],
            };
            for n in needs {
                if stored.get(&n).is_none() {
                    log.lock()
                        .unwrap()
                        .push(format!("{} started before {n} was written", op.address));
                }
            }
        }
    });
    let report = run.apply_with(&web(2), &PlanOptions::default(), sink).await;
    assert!(report.is_success());
    assert_eq!(*missing.lock().unwrap(), Vec::<String>::new());
    let writes = run.store.writes();
    // The lineage is claimed first, by an empty state; then every write is one serial
    // higher, conditional on the write before, and holds everything written before it.
    assert_eq!(writes[0].expected, None);
    assert!(writes[0].state().resources.is_empty());
    for pair in writes.windows(2) {
        let (before, after) = (pair[0].state(), pair[1].state());
        assert_eq!(pair[1].expected.as_ref(), Some(&pair[0].version));
        assert_eq!(after.serial, before.serial + 1);
        assert_eq!(after.lineage, before.lineage);
        assert!(after.resources.len() > before.resources.len());
        assert!(
            before
                .resources
                .iter()
                .all(|r| after.get(&r.address).is_some())
        );
    }
    assert_eq!(writes.last().unwrap().state().resources.len(), 5);
    assert_eq!(
        report.version.as_ref(),
        Some(&writes.last().unwrap().version)
    );
    assert_eq!(run.store.current().unwrap().0, report.state);
}

#[tokio::test(start_paused = true)]
async fn group_commit_still_chains_versions() {
    let mut run = Run::new();
    run.options.parallelism = 16;
    let report = run
        .apply(&format!("{PROVIDERS}{}", plain("a", 16, "us-east-1")))
        .await;
    assert!(report.is_success());
    let writes = run.store.writes();
    for pair in writes.windows(2) {
        assert_eq!(pair[1].expected.as_ref(), Some(&pair[0].version));
        assert_eq!(pair[1].state().serial, pair[0].state().serial + 1);
    }
    assert_eq!(writes.last().unwrap().state().resources.len(), 16);
}

#[tokio::test(start_paused = true)]
async fn a_conflicting_write_stops_the_apply() {
    let mut run = Run::with(
        FakeProvider::new(ProviderKind::Aws).with_sleep(Duration::from_millis(50)),
        FakeProvider::new(ProviderKind::Gcp),
    );
    run.options.parallelism = 1;
    // Someone else writes right after this apply's second write (its first operation).
    run.store.interfere_after(2);
    let report = run
        .apply(&format!("{PROVIDERS}{}", plain("a", 6, "us-east-1")))
        .await;
    assert!(!report.is_success());
    match &report.error {
        // The other writer removed what this apply had recorded: no merge, a loud failure.
        Some(ApplyError::State(StateError::ConflictingChanges { .. })) => {}
        other => panic!("{other:?}"),
    }
    // The node whose write conflicted (and one already running then) was made but is not
    // recorded; nothing more started.
    let failed: Vec<_> = report.failed().collect();
    assert!(!failed.is_empty());
    assert!(failed.iter().all(|o| matches!(
        &o.status,
        OpStatus::Failed {
            error: OpError::NotRecorded { .. },
            ..
        }
    )));
    let skipped = skipped(&report);
    assert!(!skipped.is_empty());
    assert!(
        skipped
            .iter()
            .all(|(_, b)| b.contains("state could not be written"))
    );
    assert_eq!(report.done().count() + failed.len() + skipped.len(), 6);
    let creates = run
        .aws
        .calls()
        .iter()
        .filter(|c| c.method == "create_instance")
        .count();
    assert_eq!(creates, report.done().count() + failed.len());
    // Nothing was written over the other writer's state.
    assert_eq!(run.store.writes().len(), 2);
    assert!(
        report
            .error
            .unwrap()
            .to_string()
            .contains("the next apply finds it by its tags")
    );
}

#[tokio::test(start_paused = true)]
async fn what_an_interrupted_apply_made_is_adopted_not_duplicated() {
    let mut run = Run::new();
    // An earlier apply made fleet.a[0] and died before writing state.
    let catalog = catalog();
    let offer = catalog
        .offers()
        .iter()
        .find(|o| o.instance_type == "g6.xlarge" && o.region == "us-east-1")
        .unwrap()
        .clone();
    let owner = Ownership {
        lineage: run.state.lineage.clone(),
        address: "fleet.a[0]".to_string(),
        generation: 0,
    };
    run.aws.insert(
        Resource {
            address: "fleet.a[0]".to_string(),
            kind: ResourceKind::Instance,
            provider: ProviderKind::Aws,
            provider_id: "i-orphan".to_string(),
            region: "us-east-1".to_string(),
            zone: "us-east-1a".to_string(),
            offer: Some(offer),
            attributes: BTreeMap::new(),
            dependencies: Vec::new(),
        },
        &owner,
    );
    let hcl = format!("{PROVIDERS}{}", plain("a", 2, "us-east-1"));
    let report = run.apply(&hcl).await;
    assert!(report.is_success());
    assert_eq!(run.aws.owned(&owner.lineage, "fleet.a[0]"), 1);
    assert_eq!(run.aws.owned(&owner.lineage, "fleet.a[1]"), 1);
    assert_eq!(run.state.get("fleet.a[0]").unwrap().provider_id, "i-orphan");
    let adopted: Vec<_> = report
        .done()
        .filter(|o| matches!(o.status, OpStatus::Done { adopted: true, .. }))
        .map(|o| o.op.address.clone())
        .collect();
    assert_eq!(adopted, vec!["fleet.a[0]".to_string()]);
    assert!(
        !run.aws
            .calls()
            .iter()
            .any(|c| c.method == "create_instance" && c.address == "fleet.a[0]")
    );
    let (again, _) = run.plan(&hcl, &PlanOptions::default());
    assert!(!again.has_changes(), "{:#?}", again.changes);
}

#[tokio::test(start_paused = true)]
async fn a_node_adopted_after_a_crash_before_its_attach_gets_its_volumes() {
    let mut run = Run::new();
    let hcl = format!(
        r#"{PROVIDERS}
volume "data" {{ size = "100GB" }}
fleet "w" {{
  nodes     = 1
  providers = ["aws"]
  regions   = ["us-east-1"]
  resources {{ gpu = "L4:1" }}
  volumes   = [volume.data]
}}
"#
    );
    // The volume was made and recorded; then the node was launched and the apply died
    // before attaching the volume and recording the node.
    let only_volume = PlanOptions {
        targets: vec!["volume.data[0]".to_string()],
        ..PlanOptions::default()
    };
    let report = run.apply_with(&hcl, &only_volume, EventSink::none()).await;
    assert!(report.is_success());
    let volume = run.state.get("volume.data[0]").expect("volume").clone();
    let offer = catalog()
        .offers()
        .iter()
        .find(|o| o.instance_type == "g6.xlarge" && o.region == "us-east-1")
        .unwrap()
        .clone();
    let owner = Ownership {
        lineage: run.state.lineage.clone(),
        address: "fleet.w[0]".to_string(),
        generation: 0,
    };
    run.aws.insert(
        Resource {
            address: "fleet.w[0]".to_string(),
            kind: ResourceKind::Instance,
            provider: ProviderKind::Aws,
            provider_id: "i-unattached".to_string(),
            region: "us-east-1".to_string(),
            zone: volume.zone.clone(),
            offer: Some(offer),
            attributes: BTreeMap::new(),
            dependencies: Vec::new(),
        },
        &owner,
    );

    let report = run.apply(&hcl).await;
    assert!(report.is_success());
    assert_eq!(run.aws.owned(&owner.lineage, "fleet.w[0]"), 1);
    let node = run.state.get("fleet.w[0]").expect("node");
    assert_eq!(node.provider_id, "i-unattached");
    let record = run
        .aws
        .resources()
        .into_iter()
        .find(|r| r.provider_id == "i-unattached")
        .expect("the adopted node");
    assert_eq!(
        record.attributes.get("volumes"),
        Some(&serde_json::json!([volume.provider_id])),
        "the adopted node has its volume attached"
    );
    let (again, _) = run.plan(&hcl, &PlanOptions::default());
    assert!(!again.has_changes(), "{:#?}", again.changes);
}

#[tokio::test(start_paused = true)]
async fn cancellation_stops_scheduling_and_records_what_finished() {
    let mut run = Run::with(
        FakeProvider::new(ProviderKind::Aws).with_sleep(Duration::from_millis(50)),
        FakeProvider::new(ProviderKind::Gcp),
    );
    run.options.parallelism = 2;
    // Cancel when the first operation finishes; count what had started by then, and
    // whether anything started after.
    #[derive(Default)]
    struct Seen {
        started: usize,
        in_flight_at_cancel: Option<usize>,
        started_after_cancel: bool,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (cancel, watch) = (run.cancel.clone(), seen.clone());
    let sink = EventSink::new(move |e| {
        let mut seen = watch.lock().unwrap();
        match e {
            Event::Started { .. } if seen.in_flight_at_cancel.is_some() => {
                seen.started_after_cancel = true;
            }
            Event::Started { .. } => seen.started += 1,
            Event::Finished { .. } if seen.in_flight_at_cancel.is_none() => {
                seen.in_flight_at_cancel = Some(seen.started);
                cancel.cancel();
            }
            _ => {}
        }
    });
    let hcl = format!("{PROVIDERS}{}", plain("a", 10, "us-east-1"));
    let report = run.apply_with(&hcl, &PlanOptions::default(), sink).await;
    assert!(report.cancelled);
    assert!(!report.is_success());
    let seen = seen.lock().unwrap();
    assert!(!seen.started_after_cancel);
    // What had started finishes and is recorded; nothing else runs.
    let done = report.done().count();
    assert_eq!(Some(done), seen.in_flight_at_cancel);
    assert!(done < 10);
    let skipped = skipped(&report);
    assert_eq!(skipped.len(), 10 - done);
    assert!(skipped.iter().all(|(_, b)| b == "the apply was cancelled"));
    let (stored, _) = run.store.current().unwrap();
    assert_eq!(stored.resources.len(), done);
    assert_eq!(run.aws.resources().len(), done);
}

#[tokio::test(start_paused = true)]
async fn destroy_runs_dependents_first_and_leaves_nothing() {
    let mut run = Run::new();
    let hcl = web(2);
    assert!(run.apply(&hcl).await.is_success());
    let destroy = PlanOptions {
        destroy: true,
        ..PlanOptions::default()
    };
    let report = run.apply_with(&hcl, &destroy, EventSink::none()).await;
    assert!(report.is_success(), "{report:#?}");
    assert_eq!(
        report.counts(),
        crate::plan::Summary {
            add: 0,
            change: 0,
            destroy: 5
        }
    );
    assert!(run.state.resources.is_empty());
    assert!(run.aws.resources().is_empty());
    let calls = run.aws.calls();
    let gateway = position(&calls, "delete_gateway", "gateway.api");
    for i in 0..2 {
        let node = position(&calls, "delete_instance", &format!("fleet.web[{i}]"));
        let volume = position(&calls, "delete_volume", &format!("volume.data[{i}]"));
        assert!(gateway < node && node < volume);
    }
}

#[tokio::test(start_paused = true)]
async fn replace_and_update_in_place() {
    let mut run = Run::new();
    assert!(run.apply(&web(2)).await.is_success());
    let first_id = run.state.get("fleet.web[0]").unwrap().provider_id.clone();
    let volume_id = run.state.get("volume.data[0]").unwrap().provider_id.clone();
    // New tags are an update in place; --replace destroys then makes fleet.web[0] anew next
    // to its kept volume; the gateway re-registers it.
    let hcl = web(2).replace(r#"team = "web""#, r#"team = "web2""#);
    let options = PlanOptions {
        replace: vec!["fleet.web[0]".to_string()],
        ..PlanOptions::default()
    };
    let report = run.apply_with(&hcl, &options, EventSink::none()).await;
    assert!(report.is_success(), "{report:#?}");
    assert_eq!(
        report.counts(),
        crate::plan::Summary {
            add: 1,
            change: 2,
            destroy: 1
        }
    );
    let node = run.state.get("fleet.web[0]").unwrap();
    assert_ne!(node.provider_id, first_id);
    assert_eq!(
        run.state.get("volume.data[0]").unwrap().provider_id,
        volume_id
    );
    let calls = run.aws.calls();
    let deleted = position(&calls, "delete_instance", "fleet.web[0]");
    let made = calls
        .iter()
        .rposition(|c| c.method == "create_instance" && c.address == "fleet.web[0]")
        .unwrap();
    let updated = position(&calls, "update_gateway", "gateway.api");
    assert!(deleted < made && made < updated);
    assert!(
        calls
            .iter()
            .any(|c| c.method == "update_instance" && c.address == "fleet.web[1]")
    );
    let (again, _) = run.plan(&hcl, &PlanOptions::default());
    assert!(!again.has_changes(), "{:#?}", again.changes);
}

#[tokio::test(start_paused = true)]
async fn a_provider_without_an_implementation_fails_its_operations() {
    let mut run = Run::new();
    let hcl = r#"
provider "azure" {
  subscription_id = "00000000-0000-0000-0000-000000000000"
  resource_group  = "gpu"
}
fleet "a" {
  resources { gpu = "L4:1" }
}
"#;
    let catalog = Catalog::from_csv(
        &format!(
            "{}azure,Standard_NC4as_T4_v3,eastus,,nvidia,L4,1,24,4,28,false,0.5\n",
            CATALOG
        ),
        "test",
    )
    .unwrap();
    let config = config(hcl);
    let plan = crate::plan::plan(&config, &run.state, &catalog, &PlanOptions::default()).unwrap();
    let report = apply(
        &plan,
        ApplyContext {
            providers: BTreeMap::from([(ProviderKind::Aws, run.aws.clone() as Arc<dyn Provider>)]),
            store: run.store.clone(),
            state: run.state.clone(),
            version: None,
            options: run.options.clone(),
            fleets: Fleets::from_config(&config, &catalog),
            cancel: CancelToken::new(),
            events: EventSink::none(),
        },
    )
    .await;
    let failed: Vec<_> = report.failed().collect();
    assert_eq!(failed.len(), 1);
    assert!(matches!(
        &failed[0].status,
        OpStatus::Failed {
            error: OpError::NoProvider(ProviderKind::Azure),
            ..
        }
    ));
    run.version = None;
}

/// `nodes` A100 nodes on Azure in `regions`.
fn azure(nodes: u32, regions: &str) -> String {
    format!(
        r#"
provider "azure" {{
  subscription_id = "00000000-0000-0000-0000-000000000000"
  resource_group  = "rg"
}}
fleet "az" {{
  nodes     = {nodes}
  providers = ["azure"]
  regions   = [{regions}]
  resources {{ gpu = "A100:1" }}
}}
"#
    )
}

#[tokio::test(start_paused = true)]
async fn a_region_network_is_made_before_its_nodes_and_destroyed_after_them() {
    let mut run = Run::new();
    let hcl = azure(2, r#""eastus""#);
    let report = run.apply(&hcl).await;
    assert!(report.is_success(), "{report:#?}");
    let calls = run.azure.calls();
    let network = position(&calls, "create_network", "network.azure.eastus");
    for i in 0..2 {
        let address = format!("fleet.az[{i}]");
        assert!(network < position(&calls, "create_instance", &address));
        let node = run.state.get(&address).unwrap();
        assert_eq!(node.dependencies, vec!["network.azure.eastus".to_string()]);
    }
    let net = run.state.get("network.azure.eastus").expect("recorded");
    assert_eq!(net.kind, ResourceKind::Network);
    assert_eq!(net.region, "eastus");
    let (again, _) = run.plan(&hcl, &PlanOptions::default());
    assert!(!again.has_changes(), "{:#?}", again.changes);

    // Destroy: the fake refuses to delete a network a node still uses, so success means the
    // network went last.
    let destroy = PlanOptions {
        destroy: true,
        ..PlanOptions::default()
    };
    let report = run.apply_with(&hcl, &destroy, EventSink::none()).await;
    assert!(report.is_success(), "{report:#?}");
    assert!(run.state.resources.is_empty(), "{:#?}", run.state.resources);
    let calls = run.azure.calls();
    let gone = position(&calls, "delete_network", "network.azure.eastus");
    for i in 0..2 {
        let address = format!("fleet.az[{i}]");
        assert!(position(&calls, "delete_instance", &address) < gone);
    }
}

#[tokio::test(start_paused = true)]
async fn a_fleet_moving_region_takes_a_new_network_and_leaves_the_old_one_last() {
    let mut run = Run::new();
    assert!(run.apply(&azure(1, r#""eastus""#)).await.is_success());
    let hcl = azure(1, r#""westus2""#);
    let (plan, _) = run.plan(&hcl, &PlanOptions::default());
    let action = |a: &str| {
        plan.changes
            .iter()
            .find(|c| c.address == a)
            .map(|c| c.action)
    };
    assert_eq!(
        action("network.azure.westus2"),
        Some(crate::plan::Action::Create)
    );
    assert_eq!(
        action("network.azure.eastus"),
        Some(crate::plan::Action::Delete)
    );
    let report = run.apply(&hcl).await;
    assert!(report.is_success(), "{report:#?}");
    let addresses: Vec<&str> = run
        .state
        .resources
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    assert!(
        addresses.contains(&"network.azure.westus2"),
        "{addresses:?}"
    );
    assert!(
        !addresses.contains(&"network.azure.eastus"),
        "{addresses:?}"
    );
    assert_eq!(run.state.get("fleet.az[0]").unwrap().region, "westus2");
}

#[tokio::test(start_paused = true)]
async fn a_failover_into_another_region_makes_and_records_that_regions_network() {
    let faults = FakeFaults {
        capacity: vec!["eastus:Standard_NC24ads_A100_v4".into()],
        ..FakeFaults::default()
    };
    let mut run = Run::new();
    run.azure = Arc::new(FakeProvider::new(ProviderKind::Azure).with_faults(faults));
    let hcl = azure(1, r#""eastus", "westus2""#);
    let report = run.apply(&hcl).await;
    assert!(report.is_success(), "{report:#?}");
    let node = run.state.get("fleet.az[0]").unwrap();
    assert_eq!(node.region, "westus2");
    assert_eq!(node.dependencies, vec!["network.azure.westus2".to_string()]);
    assert!(run.state.get("network.azure.westus2").is_some());
    // The planned region's network is now unused: the next plan removes it, and keeps the
    // node and the network it is in.
    let (again, _) = run.plan(&hcl, &PlanOptions::default());
    let changed: Vec<(&str, crate::plan::Action)> = again
        .changes
        .iter()
        .filter(|c| c.action != crate::plan::Action::NoOp)
        .map(|c| (c.address.as_str(), c.action))
        .collect();
    assert_eq!(
        changed,
        vec![("network.azure.eastus", crate::plan::Action::Delete)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_volume_deleted_outside_flotilla_is_made_again_and_attached_to_its_node() {
    let mut run = Run::new();
    let hcl = web(1);
    assert!(run.apply(&hcl).await.is_success());
    let volume = run.state.get("volume.data[0]").unwrap().clone();
    let node_id = run.state.get("fleet.web[0]").unwrap().provider_id.clone();
    run.aws
        .delete_volume(&volume)
        .await
        .expect("deleted outside flotilla");

    // The refresh a plan makes finds it gone; the node stays.
    let observed: BTreeMap<String, crate::provider::Observed> = run
        .state
        .resources
        .iter()
        .map(|r| {
            let o = if r.address == "volume.data[0]" {
                crate::provider::Observed::Gone
            } else {
                crate::provider::Observed::Exists(r.clone())
            };
            (r.address.clone(), o)
        })
        .collect();
    run.state = crate::plan::refresh(&run.state, &observed).state;
    let report = run.apply(&hcl).await;
    assert!(report.is_success(), "{report:#?}");
    let made = run.state.get("volume.data[0]").unwrap().provider_id.clone();
    assert_ne!(made, volume.provider_id);
    let node = run
        .aws
        .resources()
        .into_iter()
        .find(|r| r.provider_id == node_id)
        .expect("the node stays");
    assert_eq!(node.attributes["volumes"], serde_json::json!([made]));
}

#[test]
fn a_targeted_azure_node_brings_its_network_along() {
    let run = Run::new();
    let targeted = PlanOptions {
        targets: vec!["fleet.az[1]".to_string()],
        ..PlanOptions::default()
    };
    let (plan, _) = run.plan(&azure(3, r#""eastus""#), &targeted);
    let addresses: Vec<&str> = plan.changes.iter().map(|c| c.address.as_str()).collect();
    assert_eq!(addresses, ["fleet.az[1]", "network.azure.eastus"]);
}

#[tokio::test(start_paused = true)]
async fn a_volume_replaced_under_a_kept_node_takes_the_node_along() {
    let mut run = Run::new();
    assert!(run.apply(&web(1)).await.is_success());
    let node_id = run.state.get("fleet.web[0]").unwrap().provider_id.clone();
    let smaller = web(1).replace(r#"size = "100GB""#, r#"size = "50GB""#);
    let (plan, _) = run.plan(&smaller, &PlanOptions::default());
    let change = |a: &str| plan.changes.iter().find(|c| c.address == a).unwrap();
    assert_eq!(
        change("volume.data[0]").action,
        crate::plan::Action::Replace
    );
    let node = change("fleet.web[0]");
    assert_eq!(node.action, crate::plan::Action::Replace);
    assert!(
        node.reason
            .contains("its volume volume.data[0] is replaced"),
        "{}",
        node.reason
    );

    let report = run.apply(&smaller).await;
    assert!(report.is_success(), "{report:#?}");
    let calls = run.aws.calls();
    // The node goes before its disk, and the new node is made with the new disk.
    assert!(
        position(&calls, "delete_instance", "fleet.web[0]")
            < position(&calls, "delete_volume", "volume.data[0]")
    );
    let node = run.state.get("fleet.web[0]").unwrap();
    assert_ne!(node.provider_id, node_id);
    let volume = run.state.get("volume.data[0]").unwrap();
    assert_eq!(volume.attributes["size_gib"], serde_json::json!(50.0));
}

#[tokio::test(start_paused = true)]
async fn a_node_stopped_only_by_quotas_says_so_and_names_the_quota() {
    let faults = FakeFaults {
        quota: vec!["a2-highgpu-1g".to_string(), "a2-ultragpu-1g".to_string()],
        ..FakeFaults::default()
    };
    let mut run = Run::with(
        FakeProvider::new(ProviderKind::Aws),
        FakeProvider::new(ProviderKind::Gcp).with_faults(faults),
    );
    let hcl = format!(
        r#"{PROVIDERS}
fleet "q" {{
  providers = ["gcp"]
  resources {{ gpu = "A100:1" }}
}}
"#
    );
    let report = run.apply(&hcl).await;
    let error = report
        .failed()
        .find_map(|o| match &o.status {
            OpStatus::Failed { error, .. } => Some(error.to_string()),
            _ => None,
        })
        .expect("the node fails");
    assert!(error.starts_with("over quota in 2 offers tried"), "{error}");
    assert!(
        error.contains("Quota 'GPUS_ALL_REGIONS' exceeded"),
        "{error}"
    );
    assert!(error.contains("ask the cloud for more quota"), "{error}");
}
