//! `flotilla offers --refresh` for GCP end to end: the real binary lists machine and
//! accelerator types from the Compute Engine fake (`tests/gce/server.py`), prices them from the
//! fake's Cloud Billing Catalog API SKUs (or keeps the snapshot's prices when that refuses, and
//! says why) into the GCP offers cache, and `offers` and `plan` then price with that cache,
//! beside the AWS one, and say so.
//!
//! Each test has its own working directory and its own `XDG_CACHE_HOME`, so the tests run in
//! parallel and never touch the cache of the person running them.

use flotilla_tests::bin::flotilla;
use flotilla_tests::gce::{Gce, PROJECT};
use flotilla_tests::http;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A one-node on-demand L4 fleet on GCP in us-central1.
fn fleet() -> String {
    format!(
        r#"
provider "gcp" {{
  project = "{PROJECT}"
  regions = ["us-central1"]
}}

fleet "solo" {{
  nodes       = 1
  spot_policy = "on-demand"
  providers   = ["gcp"]
  resources {{
    gpu = "L4:1"
  }}
}}
"#
    )
}

/// A working directory and a cache directory of one test.
struct Dirs {
    work: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl Dirs {
    fn new(fleet_file: &str) -> Dirs {
        let dirs = Dirs {
            work: tempfile::tempdir().expect("temp dir"),
            cache: tempfile::tempdir().expect("temp dir"),
        };
        std::fs::write(dirs.work.path().join("main.hcl"), fleet_file).expect("write fleet file");
        dirs
    }

    /// Where a provider's offers cache is written.
    fn cache_file(&self, provider: &str) -> PathBuf {
        self.cache
            .path()
            .join("flotilla")
            .join(format!("{provider}.csv"))
    }

    /// `flotilla ARGS` in the working directory with this test's cache.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(flotilla());
        c.args(args)
            .current_dir(self.work.path())
            .env("XDG_CACHE_HOME", self.cache.path())
            .env("NO_COLOR", "1");
        c
    }

    fn flotilla(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .expect("the flotilla binary runs")
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn refresh_writes_the_gcp_cache_and_offers_and_plan_use_it() {
    let gce = Gce::get();
    let d = Dirs::new(&fleet());

    // The fleet files declare only GCP: that is what is refreshed, in their regions.
    let out = d.flotilla(&["offers", "--refresh", "--gpu", "L4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("prices: Cloud Billing Catalog API, "),
        "the output says where the prices come from:\n{err}"
    );
    let progress = err
        .lines()
        .find(|l| l.trim_start().starts_with("us-central1: "))
        .unwrap_or_else(|| panic!("no progress line for us-central1 in:\n{err}"));
    assert!(progress.contains("machine types"), "{progress}");
    assert!(progress.contains("accelerator types"), "{progress}");
    assert!(!d.cache_file("aws").exists(), "AWS was not asked for");

    // The cache: a header naming GCP, the region, the fake and the price source; only
    // us-central1 rows, among them the L4 machines the fake offers there.
    let cache = d.cache_file("gcp");
    let text = read(&cache);
    let first = text.lines().next().unwrap_or_default();
    let header: serde_json::Value = serde_json::from_str(
        first
            .strip_prefix("# flotilla offers cache ")
            .unwrap_or_else(|| panic!("no cache header: {first}")),
    )
    .expect("header JSON");
    assert_eq!(header["provider"], "gcp");
    assert_eq!(header["regions"], serde_json::json!(["us-central1"]));
    let source = header["source"].as_str().unwrap_or_default();
    assert!(source.contains(&gce.endpoint), "{source}");
    assert!(source.contains("Cloud Billing Catalog API"), "{source}");
    let rows: Vec<&str> = text.lines().skip(2).collect();
    assert!(
        rows.iter()
            .any(|r| r.starts_with("gcp,g2-standard-8,us-central1,")),
        "{text}"
    );
    assert!(
        rows.iter()
            .all(|r| r.starts_with("gcp,") && r.contains(",us-central1,")),
        "only the configured region of GCP:\n{text}"
    );
    // Both listings were made once for the project, not per zone.
    let listed = gce.calls("machineTypes.aggregatedList", PROJECT);
    assert!(!listed.is_empty(), "machineTypes.aggregatedList was called");

    // `offers` and `plan` price with it and name it with its age.
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "(catalog: cache {}, refreshed just now, ",
            cache.display()
        )),
        "{text}"
    );
    let out = d.flotilla(&["plan", "--refresh=false"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "Catalog: cache {}, refreshed just now (",
            cache.display()
        )),
        "{text}"
    );

    // A cache of another provider beside it: both are merged, each named with its age.
    std::fs::write(
        d.cache_file("aws"),
        "# flotilla offers cache {\"provider\":\"aws\",\"regions\":[\"us-east-1\"],\
         \"fetched_at\":\"2026-01-01T00:00:00Z\",\"source\":\"test\"}\n\
         provider,instance_type,region,zone,gpu_vendor,gpu_name,gpu_count,gpu_memory_gib,vcpus,memory_gib,spot,price_per_hour_usd\n\
         aws,g6.xlarge,us-east-1,,nvidia,L4,1,24,4,16,false,0.01\n",
    )
    .expect("write an AWS cache");
    let out = d.flotilla(&["plan", "--refresh=false", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    let catalog = plan["catalog"].as_str().unwrap_or_default();
    assert!(
        catalog.starts_with(&format!(
            "caches {} (refreshed ",
            d.cache_file("aws").display()
        )),
        "{plan}"
    );
    // The catalog is as old as its oldest cache.
    assert_eq!(
        plan["catalog_source"]["fetched_at"], "2026-01-01T00:00:00Z",
        "{plan}"
    );
    let out = d.flotilla(&["plan", "--refresh=false"]);
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "Catalog: caches {} (refreshed ",
            d.cache_file("aws").display()
        )) && text.contains(&format!("{} (refreshed just now)", cache.display())),
        "{text}"
    );
    // The AWS cache's one row is the only AWS offer of its region now.
    let out = d.flotilla(&[
        "offers",
        "--gpu",
        "L4",
        "--provider",
        "aws",
        "--region",
        "us-east-1",
    ]);
    let text = stdout(&out);
    assert!(text.contains("Showing 1 of 1 offer"), "{text}");
}

#[test]
fn without_credentials_or_endpoint_refresh_fails_clearly_and_keeps_the_cache() {
    let _gce = Gce::get();
    let d = Dirs::new(&fleet());
    let out = d.flotilla(&["offers", "--refresh"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = read(&d.cache_file("gcp"));

    // No endpoint and no Application Default Credentials anywhere.
    let home = tempfile::tempdir().expect("temp dir");
    let out = d
        .command(&["offers", "--refresh"])
        .env_remove("FLOTILLA_GCP_ENDPOINT")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GCE_METADATA_HOST")
        .env("HOME", home.path())
        .env("CLOUDSDK_CONFIG", home.path())
        .output()
        .expect("the flotilla binary runs");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("NoCredentials"), "{err}");
    assert!(err.contains("Application Default Credentials"), "{err}");
    assert!(err.contains("the offers cache was left as it was"), "{err}");
    assert_eq!(
        read(&d.cache_file("gcp")),
        before,
        "the old cache is untouched"
    );
}

#[test]
fn refresh_for_gcp_without_a_gcp_block_says_what_is_missing() {
    let d = Dirs::new("provider \"aws\" {\n  regions = [\"us-east-1\"]\n}\n");
    let out = d.flotilla(&["offers", "--refresh", "--provider", "gcp"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("provider \"gcp\" { project"),
        "{}",
        stderr(&out)
    );
    assert!(!d.cache_file("gcp").exists());
}

/// The Billing API path of Compute Engine's SKUs.
const SKUS: &str = "/v1/services/6F81-5844-456A/skus";

/// A Billing endpoint of the fake of this test's own, `ENDPOINT/<tag>` (the fake serves the
/// Billing API under any path prefix), so its calls and faults are its own.
fn billing_endpoint(gce: &Gce) -> (String, String) {
    let tag = format!("billing-{}", uuid::Uuid::new_v4().simple());
    (format!("{}/{tag}", gce.endpoint), tag)
}

/// Every SKU the fake lists, all pages, each with the index of the page it came on.
fn all_skus(gce: &Gce) -> Vec<(usize, Value)> {
    let host = gce.endpoint.trim_start_matches("http://");
    let mut out = Vec::new();
    let mut token = String::new();
    for page_index in 0.. {
        let mut path = format!("{SKUS}?currencyCode=USD&pageSize=5000");
        if !token.is_empty() {
            path.push_str(&format!("&pageToken={}", http::encode(&token)));
        }
        let (status, body) = http::json(host, "GET", &path, None).expect("skus.list");
        assert_eq!(status, 200, "{body}");
        let page: Value = serde_json::from_str(&body).expect("skus.list JSON");
        for sku in page["skus"].as_array().into_iter().flatten() {
            out.push((page_index, sku.clone()));
        }
        token = page["nextPageToken"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if token.is_empty() {
            break;
        }
    }
    out
}

/// The USD rate and page of the one SKU with `description` and `usage` that covers `region`.
fn rate(skus: &[(usize, Value)], description: &str, usage: &str, region: &str) -> (f64, usize) {
    let found: Vec<&(usize, Value)> = skus
        .iter()
        .filter(|(_, s)| {
            s["description"] == description
                && s["category"]["usageType"] == usage
                && s["serviceRegions"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r == region))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one SKU {description:?} ({usage}) in {region}"
    );
    let (page, sku) = found[0];
    let price = &sku["pricingInfo"][0]["pricingExpression"]["tieredRates"][0]["unitPrice"];
    let units: f64 = price["units"]
        .as_str()
        .unwrap_or("0")
        .parse()
        .expect("units");
    let nanos = price["nanos"].as_f64().unwrap_or(0.0);
    (units + nanos / 1e9, *page)
}

/// The price of the row `gcp,TYPE,REGION,...,SPOT,PRICE` of a catalog CSV text.
fn row_price(text: &str, instance_type: &str, region: &str, spot: bool) -> f64 {
    let prefix = format!("gcp,{instance_type},{region},");
    let row = text
        .lines()
        .find(|l| l.starts_with(&prefix) && l.split(',').nth(10) == Some(&spot.to_string()))
        .unwrap_or_else(|| panic!("no {instance_type} {region} spot={spot} row in:\n{text}"));
    row.rsplit(',')
        .next()
        .unwrap_or_default()
        .parse()
        .expect("a price")
}

/// The embedded snapshot, as the repository keeps it.
fn snapshot() -> String {
    read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/catalog/offers.csv"))
}

#[test]
fn refresh_prices_offers_from_the_billing_skus_of_every_page() {
    let gce = Gce::get();
    let (endpoint, tag) = billing_endpoint(&gce);
    let d = Dirs::new(&fleet());
    let out = d
        .command(&["offers", "--refresh", "--gpu", "L4"])
        .env("FLOTILLA_GCP_BILLING_ENDPOINT", &endpoint)
        .output()
        .expect("the flotilla binary runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);

    // Every SKU of every page was read, and said so.
    let skus = all_skus(&gce);
    assert!(
        err.contains(&format!(
            "prices: Cloud Billing Catalog API, {} SKUs",
            skus.len()
        )),
        "{err}"
    );
    let calls = gce.calls("skus.list", &tag);
    assert!(calls.len() > 1, "skus.list is paged: {calls:?}");
    assert!(
        calls
            .iter()
            .skip(1)
            .all(|c| c["query"]["pageToken"].is_string())
            && calls.iter().all(|c| c["query"]["currencyCode"] == "USD"),
        "{calls:?}"
    );

    // A cached offer costs the sum of its parts' SKUs: vCPUs, GiB and GPUs, on demand and spot.
    let cache = read(&d.cache_file("gcp"));
    let embedded = snapshot();
    let mut pages = Vec::new();
    for (spot, usage, prefix, gpu_suffix) in [
        (false, "OnDemand", "", ""),
        (
            true,
            "Preemptible",
            "Spot Preemptible ",
            " attached to Spot Preemptible VMs",
        ),
    ] {
        let (core, p1) = rate(
            &skus,
            &format!("{prefix}G2 Instance Core running in Americas"),
            usage,
            "us-central1",
        );
        let (ram, p2) = rate(
            &skus,
            &format!("{prefix}G2 Instance Ram running in Americas"),
            usage,
            "us-central1",
        );
        let (l4, p3) = rate(
            &skus,
            &format!("Nvidia L4 GPU{gpu_suffix} running in Americas"),
            usage,
            "us-central1",
        );
        pages.extend([p1, p2, p3]);
        let expected = 8.0 * core + 32.0 * ram + l4;
        let got = row_price(&cache, "g2-standard-8", "us-central1", spot);
        assert!(
            (got - expected).abs() < 1e-6,
            "g2-standard-8 spot={spot}: cached {got}, SKUs add up to {expected}"
        );
        let before = row_price(&embedded, "g2-standard-8", "us-central1", spot);
        assert!((got - before).abs() > 1e-3, "not the snapshot's {before}");
    }
    assert!(
        pages.iter().any(|p| *p > 0),
        "some SKU of the sum is on a later page, so the price proves paging: {pages:?}"
    );
    // An N1 offer: the N1 machine's parts plus the attached T4s.
    let (core, _) = rate(
        &skus,
        "N1 Predefined Instance Core running in Americas",
        "OnDemand",
        "us-central1",
    );
    let (ram, _) = rate(
        &skus,
        "N1 Predefined Instance Ram running in Americas",
        "OnDemand",
        "us-central1",
    );
    let (t4, _) = rate(
        &skus,
        "Nvidia Tesla T4 GPU running in Americas",
        "OnDemand",
        "us-central1",
    );
    let got = row_price(&cache, "n1-standard-16+2xT4", "us-central1", false);
    let expected = 16.0 * core + 60.0 * ram + 2.0 * t4;
    assert!(
        (got - expected).abs() < 1e-6,
        "n1-standard-16+2xT4: cached {got}, SKUs add up to {expected}"
    );

    // The fake has no A4 core or RAM SKU: that offer keeps the snapshot's price, counted.
    assert_eq!(
        row_price(&cache, "a4-highgpu-8g", "us-central1", false),
        row_price(&embedded, "a4-highgpu-8g", "us-central1", false)
    );
    let progress = err
        .lines()
        .find(|l| l.trim_start().starts_with("us-central1: "))
        .unwrap_or_else(|| panic!("no progress line for us-central1 in:\n{err}"));
    assert!(
        progress.contains("2 offers without SKUs: snapshot prices"),
        "{progress}"
    );
    let header = cache.lines().next().unwrap_or_default();
    assert!(
        header.contains(&format!(
            "prices from the Cloud Billing Catalog API at {endpoint}"
        )),
        "{header}"
    );
}

#[test]
fn a_billing_refusal_keeps_the_snapshot_prices_and_says_why() {
    let gce = Gce::get();
    let (endpoint, tag) = billing_endpoint(&gce);
    let fault = gce.fault_json(&serde_json::json!({
        "method": "skus.list",
        "match": {"_any": tag},
        "code": "PERMISSION_DENIED",
        "message": "Cloud Billing API has not been used in project flotilla-test before or it is disabled.",
    }));
    let d = Dirs::new(&fleet());
    let out = d
        .command(&["offers", "--refresh", "--gpu", "L4"])
        .env("FLOTILLA_GCP_BILLING_ENDPOINT", &endpoint)
        .output()
        .expect("the flotilla binary runs");
    let hits = gce.fault_hits(&fault);
    gce.clear_fault(&fault);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(hits, 1, "the Billing API was asked, and refused");
    let err = stderr(&out);
    assert!(
        err.contains(
            "prices: embedded snapshot (Cloud Billing Catalog API: HTTP 403 PERMISSION_DENIED: \
             Cloud Billing API has not been used in project flotilla-test before or it is \
             disabled.)"
        ),
        "{err}"
    );
    assert_eq!(
        gce.calls("skus.list", &tag).len(),
        1,
        "one refused call, no retries"
    );

    // The offers are still refreshed, at the snapshot's prices; the cache says why.
    let cache = read(&d.cache_file("gcp"));
    let embedded = snapshot();
    for (t, spot) in [
        ("g2-standard-8", false),
        ("g2-standard-8", true),
        ("n1-standard-8+1xT4", false),
    ] {
        assert_eq!(
            row_price(&cache, t, "us-central1", spot),
            row_price(&embedded, t, "us-central1", spot),
            "{t} spot={spot}"
        );
    }
    let header = cache.lines().next().unwrap_or_default();
    assert!(
        header.contains("prices from the embedded snapshot of ")
            && header.contains("(Cloud Billing Catalog API: HTTP 403 PERMISSION_DENIED: "),
        "{header}"
    );
    let text = stdout(&out);
    assert!(
        text.contains("g2-standard-8"),
        "the offers are listed:\n{text}"
    );
}

#[test]
fn an_unknown_region_fails_before_the_billing_api_is_asked() {
    let gce = Gce::get();
    let (endpoint, tag) = billing_endpoint(&gce);
    let d = Dirs::new(&fleet());
    let out = d
        .command(&["offers", "--refresh", "--region", "nowhere-north9"])
        .env("FLOTILLA_GCP_BILLING_ENDPOINT", &endpoint)
        .output()
        .expect("the flotilla binary runs");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("no zone of nowhere-north9 lists machine types"),
        "{err}"
    );
    assert!(
        gce.calls("skus.list", &tag).is_empty(),
        "no SKUs were listed"
    );
    assert!(!d.cache_file("gcp").exists());
}
