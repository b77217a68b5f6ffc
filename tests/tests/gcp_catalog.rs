//! `flotilla offers --refresh` for GCP end to end: the real binary lists machine and
//! accelerator types from the Compute Engine fake (`tests/gce/server.py`) into the GCP offers
//! cache, and `offers` and `plan` then price with that cache, beside the AWS one, and say so.
//!
//! Each test has its own working directory and its own `XDG_CACHE_HOME`, so the tests run in
//! parallel and never touch the cache of the person running them.

use flotilla_tests::bin::flotilla;
use flotilla_tests::gce::{Gce, PROJECT};
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
        err.contains("the Cloud Billing Catalog API is not queried"),
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
