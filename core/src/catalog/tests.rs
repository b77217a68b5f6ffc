//! Catalog tests: CSV loading and its errors, rank order, every query constraint, the
//! mismatch reasons and the explanations of empty queries.

use super::*;
use crate::spec::{GpuSpec, Range, parse_gpu, parse_memory_range};

/// A hand-made offer: `gpu` is `(name, count, GiB per GPU)`.
#[allow(clippy::too_many_arguments)]
fn offer(
    provider: ProviderKind,
    region: &str,
    instance_type: &str,
    gpu: Option<(&str, u32, u64)>,
    vcpus: u32,
    memory_gib: u64,
    spot: bool,
    price: f64,
) -> Offer {
    let (vendor, name, count, mem) = match gpu {
        Some((name, count, mem)) => {
            let vendor = if name.starts_with("MI") {
                GpuVendor::Amd
            } else {
                GpuVendor::Nvidia
            };
            (Some(vendor), name.to_string(), count, Memory::from_gib(mem))
        }
        None => (None, String::new(), 0, Memory::default()),
    };
    Offer {
        provider,
        region: region.to_string(),
        zone: String::new(),
        instance_type: instance_type.to_string(),
        gpu_vendor: vendor,
        gpu_name: name,
        gpu_count: count,
        gpu_memory: mem,
        vcpus,
        memory: Memory::from_gib(memory_gib),
        spot,
        price_per_hour: price,
    }
}

use ProviderKind::{Aws, Azure, Gcp};

/// A small catalog with one of everything, deliberately out of order.
fn small() -> Catalog {
    let offers = vec![
        offer(
            Aws,
            "us-east-1",
            "p5.48xlarge",
            Some(("H100", 8, 80)),
            192,
            2048,
            false,
            55.04,
        ),
        offer(
            Gcp,
            "us-central1",
            "a3-highgpu-8g",
            Some(("H100", 8, 80)),
            208,
            1872,
            false,
            43.07,
        ),
        offer(
            Azure,
            "eastus",
            "Standard_ND96isr_H100_v5",
            Some(("H100", 8, 80)),
            96,
            1900,
            false,
            98.32,
        ),
        offer(
            Aws,
            "us-east-1",
            "p5.48xlarge",
            Some(("H100", 8, 80)),
            192,
            2048,
            true,
            30.0,
        ),
        offer(
            Aws,
            "us-east-1",
            "p4d.24xlarge",
            Some(("A100", 8, 40)),
            96,
            1152,
            false,
            32.77,
        ),
        offer(
            Aws,
            "us-west-2",
            "p4de.24xlarge",
            Some(("A100", 8, 80)),
            96,
            1152,
            false,
            40.97,
        ),
        offer(
            Gcp,
            "us-central1",
            "a2-highgpu-1g",
            Some(("A100", 1, 40)),
            12,
            85,
            false,
            3.67,
        ),
        offer(
            Gcp,
            "europe-west4",
            "a2-ultragpu-1g",
            Some(("A100", 1, 80)),
            12,
            170,
            true,
            1.6,
        ),
        offer(
            Azure,
            "eastus",
            "Standard_ND96isr_MI300X_v5",
            Some(("MI300X", 8, 192)),
            96,
            1850,
            false,
            48.0,
        ),
        offer(
            Aws,
            "us-east-1",
            "g5.xlarge",
            Some(("A10G", 1, 24)),
            4,
            16,
            false,
            1.006,
        ),
        offer(
            Gcp,
            "us-central1",
            "g2-standard-4",
            Some(("L4", 1, 24)),
            4,
            16,
            false,
            0.7,
        ),
        offer(Aws, "us-east-1", "m7i.2xlarge", None, 8, 32, false, 0.4032),
        offer(Aws, "us-east-1", "t3.medium", None, 2, 4, false, 0.0416),
        // Same price as the g2 above: ties break by provider (aws < gcp).
        offer(
            Aws,
            "eu-west-1",
            "g6.xlarge",
            Some(("L4", 1, 24)),
            4,
            16,
            false,
            0.7,
        ),
        // Same price and provider: ties break by region, then instance type.
        offer(
            Aws,
            "ap-south-1",
            "g6.xlarge",
            Some(("L4", 1, 24)),
            4,
            16,
            false,
            0.7,
        ),
        offer(
            Aws,
            "ap-south-1",
            "g6.2xlarge",
            Some(("L4", 1, 24)),
            8,
            32,
            false,
            0.7,
        ),
    ];
    Catalog::from_offers(offers, "test")
}

fn query(gpu: &str) -> Query {
    Query {
        resources: Resources {
            gpu: Some(parse_gpu(gpu).unwrap()),
            ..Resources::default()
        },
        ..Query::default()
    }
}

fn types<'a>(it: impl Iterator<Item = &'a Offer>) -> Vec<String> {
    it.map(|o| format!("{} {} {}", o.provider, o.region, o.instance_type))
        .collect()
}

/// `query` run through the index must equal a plain filter over every offer, and `matches`,
/// `mismatch` and the rank order must agree.
fn assert_consistent(catalog: &Catalog, q: &Query) {
    let fast: Vec<&Offer> = catalog.query(q).collect();
    let slow: Vec<&Offer> = catalog
        .offers()
        .iter()
        .filter(|o| q.mismatch(o).is_none())
        .collect();
    assert_eq!(fast.len(), slow.len(), "{q:?}");
    for (a, b) in fast.iter().zip(&slow) {
        assert!(std::ptr::eq(*a, *b), "{q:?}: {a:?} vs {b:?}");
    }
    for o in catalog.offers() {
        assert_eq!(q.matches(o), q.mismatch(o).is_none(), "{o:?} {q:?}");
    }
    assert!(fast.windows(2).all(|w| w[0].rank_cmp(w[1]).is_le()));
}

// ---- CSV ----

#[test]
fn embedded_catalog_has_every_offer() {
    let catalog = Catalog::embedded();
    assert_eq!(catalog.len(), 3478);
    assert_eq!(catalog.source(), "embedded snapshot");
    let o = catalog
        .offers()
        .iter()
        .find(|o| o.instance_type == "p5.48xlarge")
        .unwrap();
    assert_eq!(o.gpu_label(), "8x H100 80GB");
    assert!(
        catalog
            .offers()
            .windows(2)
            .all(|w| w[0].rank_cmp(&w[1]).is_le())
    );
}

const HEAD: &str = "provider,instance_type,region,zone,gpu_vendor,gpu_name,gpu_count,gpu_memory_gib,vcpus,memory_gib,spot,price_per_hour_usd\n";

fn load(rows: &str) -> Result<Catalog, CatalogError> {
    Catalog::from_csv(&format!("{HEAD}{rows}"), "my.csv")
}

fn malformed(rows: &str) -> String {
    load(rows).unwrap_err().to_string()
}

#[test]
fn csv_rows_become_offers() {
    let c = load(
        "gcp,n2-standard-8,us-central1,us-central1-a,,,,,8,7.5,false,0.39\n\
         aws,g5.xlarge,us-east-1,,nvidia,A10G,1,24,4,16,true,0.5\n",
    )
    .unwrap();
    assert_eq!(c.len(), 2);
    let cpu = &c.offers()[0];
    assert_eq!(cpu.gpu_vendor, None);
    assert_eq!(cpu.gpu_count, 0);
    assert_eq!(cpu.memory, Memory::from_mib(7680));
    assert_eq!(cpu.zone, "us-central1-a");
    let gpu = &c.offers()[1];
    assert_eq!(gpu.gpu_vendor, Some(GpuVendor::Nvidia));
    assert_eq!(gpu.gpu_memory, Memory::from_gib(24));
    assert!(gpu.spot);
    assert_eq!(gpu.price_per_hour, 0.5);
}

#[test]
fn csv_header_must_match() {
    let err = Catalog::from_csv("provider,instance\naws,x\n", "my.csv").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "my.csv:1: unexpected header `provider,instance`; expected `{}`",
            CSV_HEADER
        )
    );
    let err = Catalog::from_csv("", "my.csv").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "my.csv:1: the catalog is empty; expected the header `{}`",
            CSV_HEADER
        )
    );
}

#[test]
fn csv_bad_rows_name_line_column_and_value() {
    let ok = "aws,g5.xlarge,us-east-1,,nvidia,A10G,1,24,4,16,false,1.006\n";
    assert_eq!(
        malformed(&format!("{ok}oracle,x,r,,,,0,0,4,16,false,1\n")),
        "my.csv:3: column `provider`: `oracle` is not a provider; expected aws, gcp, azure or baremetal"
    );
    assert_eq!(
        malformed("aws,x,r,,intel,X,1,16,4,16,false,1\n"),
        "my.csv:2: column `gpu_vendor`: `intel` is not a GPU vendor; expected nvidia, amd, or empty for no GPU"
    );
    assert_eq!(
        malformed("aws,x,r,,nvidia,T4,one,16,4,16,false,1\n"),
        "my.csv:2: column `gpu_count`: `one` is not a whole number"
    );
    assert_eq!(
        malformed("aws,x,r,,nvidia,T4,1,16,4,lots,false,1\n"),
        "my.csv:2: column `memory_gib`: `lots` is not a size in GiB (a non-negative number)"
    );
    assert_eq!(
        malformed("aws,x,r,,nvidia,T4,1,16,4,16,yes,1\n"),
        "my.csv:2: column `spot`: `yes` is not true or false"
    );
    assert_eq!(
        malformed("aws,x,r,,nvidia,T4,1,16,4,16,false,-1\n"),
        "my.csv:2: column `price_per_hour_usd`: `-1` is not a price in USD per hour (a non-negative number)"
    );
    assert_eq!(
        malformed("aws,x,r,,nvidia,T4,1,16,4.5,16,false,1\n"),
        "my.csv:2: column `vcpus`: `4.5` is not a whole number"
    );
    assert_eq!(
        malformed("aws,x,,,nvidia,T4,1,16,4,16,false,1\n"),
        "my.csv:2: column `region`: `` is empty; a value is required"
    );
    assert_eq!(
        malformed(",,,\n"),
        format!("my.csv:2: 4 columns, expected 12 (`{CSV_HEADER}`)")
    );
    assert_eq!(
        malformed("aws,x,r,,,T4,1,16,4,16,false,1\n"),
        "my.csv:2: column `gpu_vendor`: `` is empty but the row has GPUs; give nvidia or amd"
    );
    assert_eq!(
        malformed("aws,x,r,,nvidia,T4,0,16,4,16,false,1\n"),
        "my.csv:2: column `gpu_count`: `0` is 0 but the row names a GPU vendor; leave gpu_vendor empty for no GPU"
    );
}

#[test]
fn from_path_names_a_missing_file() {
    let err = Catalog::from_path(std::path::Path::new("/nonexistent/offers.csv")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot read catalog `/nonexistent/offers.csv`"
    );
}

// ---- ranking ----

#[test]
fn ranks_by_price_then_provider_region_instance_type() {
    let c = small();
    let cheap: Vec<String> = types(c.offers().iter().take(6));
    assert_eq!(
        cheap,
        [
            "aws us-east-1 t3.medium",
            "aws us-east-1 m7i.2xlarge",
            "aws ap-south-1 g6.2xlarge",
            "aws ap-south-1 g6.xlarge",
            "aws eu-west-1 g6.xlarge",
            "gcp us-central1 g2-standard-4",
        ]
    );
    assert!(
        c.offers()
            .windows(2)
            .all(|w| w[0].price_per_hour <= w[1].price_per_hour)
    );
}

// ---- query ----

#[test]
fn gpu_query_cheapest_first() {
    let c = small();
    let q = query("H100:8");
    assert_eq!(
        types(c.query(&q)),
        [
            "gcp us-central1 a3-highgpu-8g",
            "aws us-east-1 p5.48xlarge",
            "azure eastus Standard_ND96isr_H100_v5"
        ]
    );
    assert_consistent(&c, &q);
}

#[test]
fn several_names_merge_in_rank_order() {
    let c = small();
    let q = Query {
        spot_policy: SpotPolicy::Auto,
        ..query("A100,h100,H100:1..8")
    };
    let prices: Vec<f64> = c.query(&q).map(|o| o.price_per_hour).collect();
    assert_eq!(prices, [1.6, 3.67, 30.0, 32.77, 40.97, 43.07, 55.04, 98.32]);
    assert_consistent(&c, &q);
}

#[test]
fn unknown_gpu_name_matches_nothing() {
    let c = small();
    assert_eq!(c.query(&query("B200:8")).count(), 0);
}

#[test]
fn gpu_name_is_case_insensitive() {
    let c = small();
    assert_eq!(c.query(&query("h100:8")).count(), 3);
}

#[test]
fn gpu_default_count_is_one() {
    let c = small();
    assert_eq!(
        types(c.query(&query("A100"))),
        ["gcp us-central1 a2-highgpu-1g"]
    );
}

#[test]
fn gpu_memory_vendor_and_total() {
    let c = small();
    let q = query("A100:80GB:8");
    assert_eq!(types(c.query(&q)), ["aws us-west-2 p4de.24xlarge"]);
    let q = query("amd:8");
    assert_eq!(
        types(c.query(&q)),
        ["azure eastus Standard_ND96isr_MI300X_v5"]
    );
    assert_consistent(&c, &q);
    let mut q = query("nvidia:1..8");
    q.resources.gpu_total_memory = Some(parse_memory_range("640GB..").unwrap());
    assert_eq!(types(c.query(&q)).len(), 4);
    assert!(
        c.query(&q)
            .all(|o| o.gpu_total_memory() >= Memory::from_gib(640))
    );
    assert_consistent(&c, &q);
}

#[test]
fn no_gpu_spec_accepts_any_offer() {
    let c = small();
    let q = Query::default();
    let all: Vec<&Offer> = c.query(&q).collect();
    assert!(all.iter().any(|o| o.gpu_count == 0));
    assert!(all.iter().any(|o| o.gpu_count > 0));
    assert_consistent(&c, &q);
}

#[test]
fn cpu_and_memory() {
    let c = small();
    let mut q = Query::default();
    q.resources.cpu = Range {
        min: Some(8),
        max: Some(12),
    };
    q.resources.memory = parse_memory_range("32GB..100GB").unwrap();
    assert_eq!(
        types(c.query(&q)),
        [
            "aws us-east-1 m7i.2xlarge",
            "aws ap-south-1 g6.2xlarge",
            "gcp us-central1 a2-highgpu-1g"
        ]
    );
    assert_consistent(&c, &q);
}

#[test]
fn default_resources_drop_tiny_offers() {
    let c = small();
    assert!(
        !c.query(&Query::default())
            .any(|o| o.instance_type == "t3.medium")
    );
}

#[test]
fn spot_policies() {
    let c = small();
    let spot = Query {
        spot_policy: SpotPolicy::Spot,
        ..query("H100:8")
    };
    assert_eq!(types(c.query(&spot)), ["aws us-east-1 p5.48xlarge"]);
    assert!(c.query(&spot).all(|o| o.spot));
    let auto = Query {
        spot_policy: SpotPolicy::Auto,
        ..query("H100:8")
    };
    assert_eq!(c.query(&auto).next().unwrap().price_per_hour, 30.0);
    assert_eq!(c.query(&auto).count(), 4);
    assert!(c.query(&query("H100:8")).all(|o| !o.spot));
}

#[test]
fn max_price_is_inclusive() {
    let c = small();
    let q = Query {
        max_price: Some(55.04),
        ..query("H100:8")
    };
    assert_eq!(c.query(&q).count(), 2);
    let q = Query {
        max_price: Some(55.0),
        ..query("H100:8")
    };
    assert_eq!(c.query(&q).count(), 1);
    assert_consistent(&c, &q);
}

#[test]
fn providers_regions_zones_instance_types() {
    let c = small();
    let q = Query {
        providers: vec![Aws, Azure],
        ..query("H100:8")
    };
    assert_eq!(c.query(&q).count(), 2);
    assert_consistent(&c, &q);
    let q = Query {
        regions: vec!["us-central1".into(), "eastus".into()],
        ..query("H100:8")
    };
    assert_eq!(c.query(&q).count(), 2);
    let q = Query {
        instance_types: vec!["p5.48xlarge".into()],
        ..query("H100:8")
    };
    assert_eq!(types(c.query(&q)), ["aws us-east-1 p5.48xlarge"]);
    // Region-level offers (empty zone) match any zone.
    let q = Query {
        zones: vec!["us-east-1a".into()],
        ..query("H100:8")
    };
    assert_eq!(c.query(&q).count(), 3);
    assert_consistent(&c, &q);
}

#[test]
fn zones_filter_zonal_offers() {
    let mut a = offer(
        Aws,
        "us-east-1",
        "g5.xlarge",
        Some(("A10G", 1, 24)),
        4,
        16,
        false,
        1.0,
    );
    a.zone = "us-east-1a".into();
    let mut b = a.clone();
    b.zone = "us-east-1b".into();
    let c = Catalog::from_offers(vec![a, b], "zonal");
    let q = Query {
        zones: vec!["us-east-1b".into()],
        ..query("A10G")
    };
    assert_eq!(
        c.query(&q).map(|o| o.zone.as_str()).collect::<Vec<_>>(),
        ["us-east-1b"]
    );
    assert_eq!(
        q.mismatch(&c.offers()[0]).unwrap(),
        "zone: us-east-1a is not in [us-east-1b]"
    );
}

#[test]
fn provider_regions_limit_only_their_provider() {
    let c = small();
    let q = Query {
        provider_regions: vec![(Aws, vec!["us-west-2".into()]), (Gcp, vec![])],
        spot_policy: SpotPolicy::Auto,
        ..query("A100,H100:1..8")
    };
    let got = types(c.query(&q));
    assert!(
        got.iter()
            .all(|t| !t.starts_with("aws ") || t.contains("us-west-2")),
        "{got:?}"
    );
    assert!(got.iter().any(|t| t.starts_with("gcp ")));
    assert!(got.iter().any(|t| t.starts_with("azure ")));
    assert_consistent(&c, &q);
}

#[test]
fn embedded_queries_are_consistent() {
    let c = Catalog::embedded();
    for gpu in [
        "H100:8",
        "A100,H100:80GB:1..8",
        "nvidia:24GB..",
        "amd",
        "T4:1..",
        "l4:2",
    ] {
        assert_consistent(&c, &query(gpu));
        assert_consistent(
            &c,
            &Query {
                spot_policy: SpotPolicy::Spot,
                max_price: Some(10.0),
                ..query(gpu)
            },
        );
    }
    let mut q = Query {
        providers: vec![Gcp],
        regions: vec!["us-central1".into()],
        ..Query::default()
    };
    q.resources.cpu = Range::at_least(32);
    assert_consistent(&c, &q);
    let h100_8 = c.query(&query("H100:8")).count();
    assert!(h100_8 > 10, "{h100_8}");
}

// ---- mismatch ----

#[test]
fn mismatch_reasons() {
    let c = small();
    let find = |t: &str, spot: bool| {
        c.offers()
            .iter()
            .find(|o| o.instance_type == t && o.spot == spot)
            .unwrap()
    };
    let p5 = find("p5.48xlarge", false);
    let p4d = find("p4d.24xlarge", false);
    let a2 = find("a2-highgpu-1g", false);
    let m7i = find("m7i.2xlarge", false);
    let mi300x = find("Standard_ND96isr_MI300X_v5", false);

    assert_eq!(query("H100:8").mismatch(p5), None);
    assert_eq!(
        query("H100:8").mismatch(p4d).unwrap(),
        "gpu: A100 does not match H100"
    );
    assert_eq!(
        query("A100,H100:8").mismatch(mi300x).unwrap(),
        "gpu: MI300X does not match A100,H100"
    );
    assert_eq!(
        query("H100").mismatch(m7i).unwrap(),
        "gpu: none does not match H100"
    );
    assert_eq!(
        query("nvidia:8").mismatch(mi300x).unwrap(),
        "gpu vendor: amd does not match nvidia"
    );
    assert_eq!(
        query("nvidia").mismatch(m7i).unwrap(),
        "gpu vendor: none does not match nvidia"
    );
    assert_eq!(
        query("A100:8").mismatch(a2).unwrap(),
        "gpu count: 1 does not match 8"
    );
    assert_eq!(
        query("A100:8:80GB..").mismatch(p4d).unwrap(),
        "gpu memory: 40GB does not match 80GB.."
    );

    let mut q = query("A100:8");
    q.resources.gpu_total_memory = Some(parse_memory_range("640GB..").unwrap());
    assert_eq!(
        q.mismatch(p4d).unwrap(),
        "gpu total memory: 320GB does not match 640GB.."
    );

    let mut q = Query::default();
    q.resources.cpu = Range::at_least(16);
    assert_eq!(q.mismatch(m7i).unwrap(), "cpu: 8 does not match 16..");
    let mut q = Query::default();
    q.resources.memory = parse_memory_range("64GB..").unwrap();
    assert_eq!(
        q.mismatch(m7i).unwrap(),
        "memory: 32GB does not match 64GB.."
    );

    let spot_p5 = find("p5.48xlarge", true);
    assert_eq!(
        query("H100:8").mismatch(spot_p5).unwrap(),
        "spot: spot offer but spot_policy is on-demand"
    );
    let spot_q = Query {
        spot_policy: SpotPolicy::Spot,
        ..query("H100:8")
    };
    assert_eq!(
        spot_q.mismatch(p5).unwrap(),
        "spot: on-demand offer but spot_policy is spot"
    );

    let q = Query {
        max_price: Some(40.0),
        ..query("H100:8")
    };
    assert_eq!(q.mismatch(p5).unwrap(), "price 55.04 > max_price 40");
    let gcp = find("a3-highgpu-8g", false);
    let q = Query {
        providers: vec![Aws, Azure],
        ..query("H100:8")
    };
    assert_eq!(
        q.mismatch(gcp).unwrap(),
        "provider: gcp is not in [aws, azure]"
    );
    let q = Query {
        provider_regions: vec![(Aws, vec!["us-west-2".into()])],
        ..query("H100:8")
    };
    assert_eq!(
        q.mismatch(p5).unwrap(),
        "region: us-east-1 is not in aws's regions [us-west-2]"
    );
    assert_eq!(q.mismatch(gcp), None);
    let q = Query {
        regions: vec!["us-west-2".into(), "eastus".into()],
        ..query("H100:8")
    };
    assert_eq!(
        q.mismatch(p5).unwrap(),
        "region: us-east-1 is not in [us-west-2, eastus]"
    );
    let q = Query {
        instance_types: vec!["p4d.24xlarge".into()],
        ..query("H100:8")
    };
    assert_eq!(
        q.mismatch(p5).unwrap(),
        "instance type: p5.48xlarge is not in [p4d.24xlarge]"
    );
}

#[test]
fn mismatch_reports_the_first_constraint_in_order() {
    let c = small();
    let p4d = c
        .offers()
        .iter()
        .find(|o| o.instance_type == "p4d.24xlarge")
        .unwrap();
    let q = Query {
        max_price: Some(1.0),
        providers: vec![Gcp],
        spot_policy: SpotPolicy::Spot,
        ..query("H100:8")
    };
    assert_eq!(q.mismatch(p4d).unwrap(), "gpu: A100 does not match H100");
    let q = Query {
        resources: Resources::default(),
        ..q
    };
    assert_eq!(
        q.mismatch(p4d).unwrap(),
        "spot: on-demand offer but spot_policy is spot"
    );
}

// ---- explain_empty ----

#[test]
fn explain_max_price() {
    let c = small();
    let q = Query {
        max_price: Some(30.0),
        ..query("H100:8")
    };
    assert_eq!(c.query(&q).count(), 0);
    assert_eq!(
        c.explain_empty(&q),
        "3 offers match gpu H100:8, on-demand; 0 of them are at or under max_price 30 (cheapest: 43.07 gcp a3-highgpu-8g us-central1)"
    );
}

#[test]
fn explain_unknown_count_lists_shapes() {
    let c = small();
    assert_eq!(
        c.explain_empty(&query("H100:16")),
        "no offer in the catalog (16 offers) matches gpu H100:16 (available: 8x H100 80GB)"
    );
    assert_eq!(
        c.explain_empty(&query("A100,H100:2")),
        "no offer in the catalog (16 offers) matches gpu A100,H100:2 (available: 1x A100 40GB, 1x A100 80GB, 8x A100 40GB, 8x A100 80GB, 8x H100 80GB)"
    );
}

#[test]
fn explain_unknown_name_lists_names() {
    let c = small();
    assert_eq!(
        c.explain_empty(&query("H300")),
        "no offer in the catalog (16 offers) matches gpu H300:1 (the catalog has no GPU named H300; it has A100, A10G, H100, L4, MI300X)"
    );
}

#[test]
fn explain_each_constraint() {
    let c = small();
    let mut q = query("H100:8");
    q.resources.cpu = Range::at_least(256);
    assert_eq!(
        c.explain_empty(&q),
        "4 offers match gpu H100:8; 0 of them have cpu 256.. (they have 96 to 208 vCPUs)"
    );
    let mut q = query("A10G");
    q.resources.memory = parse_memory_range("64GB..").unwrap();
    assert_eq!(
        c.explain_empty(&q),
        "1 offer matches gpu A10G:1; 0 of them have memory 64GB.. (all have 16GB)"
    );
    let q = Query {
        spot_policy: SpotPolicy::Spot,
        ..query("A10G")
    };
    assert_eq!(
        c.explain_empty(&q),
        "1 offer matches gpu A10G:1; 0 of them are spot offers (spot_policy auto accepts both)"
    );
    let q = Query {
        providers: vec![Gcp],
        ..query("A10G")
    };
    assert_eq!(
        c.explain_empty(&q),
        "1 offer matches gpu A10G:1; 0 of them are on providers [gcp] (they are on aws)"
    );
    let q = Query {
        regions: vec!["mars-1".into()],
        ..query("H100:8")
    };
    assert_eq!(
        c.explain_empty(&q),
        "3 offers match gpu H100:8, on-demand; 0 of them are in regions [mars-1] (they are in eastus, us-central1, us-east-1)"
    );
    let q = Query {
        instance_types: vec!["p4d.24xlarge".into()],
        ..query("H100:8")
    };
    assert_eq!(
        c.explain_empty(&q),
        "3 offers match gpu H100:8, on-demand; 0 of them are of instance types [p4d.24xlarge] (they are Standard_ND96isr_H100_v5, a3-highgpu-8g, p5.48xlarge)"
    );
    let mut q = query("A100:8");
    q.resources.gpu_total_memory = Some(parse_memory_range("1TB..").unwrap());
    assert_eq!(
        c.explain_empty(&q),
        "2 offers match gpu A100:8; 0 of them have gpu total memory 1TB.. (they have 320GB to 640GB)"
    );
    let mut q = Query::default();
    q.resources.cpu = Range::at_least(1000);
    assert_eq!(
        c.explain_empty(&q),
        "no offer in the catalog (16 offers) has cpu 1000.. (they have 2 to 208 vCPUs)"
    );
}

#[test]
fn explain_a_query_that_matches() {
    let c = small();
    assert_eq!(
        c.explain_empty(&query("H100:8")),
        "3 offers match every constraint"
    );
    let empty = Catalog::from_offers(vec![], "nothing.csv");
    assert_eq!(
        empty.explain_empty(&query("H100")),
        "the catalog (nothing.csv) has no offers"
    );
}

#[test]
fn explain_on_the_embedded_catalog() {
    let c = Catalog::embedded();
    let q = Query {
        max_price: Some(30.0),
        ..query("H100:8")
    };
    let msg = c.explain_empty(&q);
    assert!(msg.contains(" offers match gpu H100:8, on-demand; 0 of them are at or under max_price 30 (cheapest: "), "{msg}");
    let msg = c.explain_empty(&query("H200:16"));
    assert!(
        msg.starts_with(
            "no offer in the catalog (3478 offers) matches gpu H200:16 (available: 8x H200 141GB"
        ),
        "{msg}"
    );
}

#[test]
fn describe_names_what_narrows() {
    assert_eq!(query("H100:8").describe(), "gpu H100:8, on-demand");
    let mut q = Query {
        max_price: Some(40.5),
        providers: vec![Aws],
        regions: vec!["us-east-1".into()],
        spot_policy: SpotPolicy::Auto,
        ..query("A100:80GB")
    };
    q.resources.cpu = Range::at_least(8);
    assert_eq!(
        q.describe(),
        "gpu A100:80GB:1, cpu 8.., auto, providers [aws], regions [us-east-1], max_price 40.5"
    );
}

#[test]
fn prices_print_without_trailing_zeros() {
    assert_eq!(format_price(55.04), "55.04");
    assert_eq!(format_price(40.0), "40");
    assert_eq!(format_price(0.7759), "0.7759");
    assert_eq!(format_price(1.006), "1.006");
    assert_eq!(format_price(0.0), "0");
    assert_eq!(format_price(3.123456), "3.1235");
}

#[test]
fn gpu_spec_display_is_what_explanations_print() {
    let g: GpuSpec = parse_gpu("H100:8").unwrap();
    assert_eq!(g.to_string(), "H100:8");
}
