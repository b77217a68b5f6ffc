//! `flotilla offers --refresh` end to end: the real binary fetches instance types and spot
//! prices from moto into an offers cache, and `offers` and `plan` then price with that cache
//! and say so, with its age.
//!
//! Each test has its own working directory and its own `XDG_CACHE_HOME`, so the tests run in
//! parallel on one moto and never touch the cache of the person running them. moto describes
//! GPU instance types (p5.48xlarge = 8x H100) and answers every spot price with a constant
//! 0.00001, which makes a refreshed spot offer unmistakable: no snapshot price is that low.

use flotilla_tests::bin::flotilla;
use flotilla_tests::moto::{Fault, Moto};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The constant spot price moto reports for every type and zone.
const MOTO_SPOT_PRICE: f64 = 0.00001;

/// A one-node spot H100 fleet in the regions `regions` (an HCL list body).
fn fleet(regions: &str) -> String {
    format!(
        r#"
provider "aws" {{
  regions = [{regions}]
}}

fleet "solo" {{
  nodes       = 1
  spot_policy = "spot"
  providers   = ["aws"]
  resources {{
    gpu = "H100:8"
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
    fn new(fleet_file: Option<&str>) -> Dirs {
        let dirs = Dirs {
            work: tempfile::tempdir().expect("temp dir"),
            cache: tempfile::tempdir().expect("temp dir"),
        };
        if let Some(text) = fleet_file {
            std::fs::write(dirs.work.path().join("main.hcl"), text).expect("write fleet file");
        }
        dirs
    }

    /// Where the AWS offers cache is written.
    fn cache_file(&self) -> PathBuf {
        self.cache.path().join("flotilla").join("aws.csv")
    }

    /// Runs `flotilla ARGS` in the working directory with this test's cache.
    fn flotilla(&self, args: &[&str]) -> Output {
        Command::new(flotilla())
            .args(args)
            .current_dir(self.work.path())
            .env("XDG_CACHE_HOME", self.cache.path())
            .env("NO_COLOR", "1")
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
fn refresh_writes_the_cache_and_offers_and_plan_use_it_with_its_age() {
    let _moto = Moto::get();
    let d = Dirs::new(Some(&fleet(r#""us-east-1""#)));

    // Regions from --region; progress per region and a summary on stderr.
    let out = d.flotilla(&[
        "offers",
        "--refresh",
        "--region",
        "us-east-1",
        "--gpu",
        "H100",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("the AWS Price List API is not queried"),
        "{err}"
    );
    let progress = err
        .lines()
        .find(|l| l.trim_start().starts_with("us-east-1: "))
        .unwrap_or_else(|| panic!("no progress line for us-east-1 in:\n{err}"));
    assert!(progress.contains("GPU instance types"), "{progress}");
    let cache = d.cache_file();
    assert!(
        err.contains(&format!("offers to {}.", cache.display())),
        "the summary names the cache file:\n{err}"
    );
    let summary = err.lines().last().expect("a summary");
    assert!(summary.starts_with("Refreshed "), "{summary}");
    assert!(summary.contains(" spot prices in 1 region"), "{summary}");

    // The cache: a header saying what and when, then catalog rows; moto's p5.48xlarge is there
    // with the snapshot's on-demand price and moto's spot price in each zone.
    let text = read(&cache);
    let first = text.lines().next().expect("a header line");
    assert!(first.starts_with("# flotilla offers cache {"), "{first}");
    let header: serde_json::Value =
        serde_json::from_str(first.trim_start_matches("# flotilla offers cache ")).expect("JSON");
    assert_eq!(header["provider"], "aws");
    assert_eq!(header["regions"], serde_json::json!(["us-east-1"]));
    assert!(
        header["fetched_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(
        header["source"]
            .as_str()
            .is_some_and(|s| s.contains("DescribeSpotPriceHistory")),
        "{header}"
    );
    assert!(
        text.contains("\naws,p5.48xlarge,us-east-1,,nvidia,H100,8,80,192,2048,false,"),
        "on-demand p5.48xlarge from the snapshot:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("aws,p5.48xlarge,us-east-1,us-east-1")
                && l.ends_with(",true,0.00001")),
        "zonal spot p5.48xlarge at moto's price"
    );

    // `offers` on the cache: zonal spot offers at moto's price, and the summary says which
    // catalog and how old.
    let out = d.flotilla(&[
        "offers",
        "--gpu",
        "H100:8",
        "--spot-policy",
        "spot",
        "--region",
        "us-east-1",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON rows");
    assert!(!rows.is_empty());
    for row in &rows {
        assert_eq!(
            row["price_per_hour"].as_f64(),
            Some(MOTO_SPOT_PRICE),
            "{row}"
        );
        assert!(
            row["zone"]
                .as_str()
                .is_some_and(|z| z.starts_with("us-east-1")),
            "{row}"
        );
    }
    let out = d.flotilla(&["offers", "--gpu", "H100"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "(catalog: cache {}, refreshed just now, ",
            cache.display()
        )),
        "{text}"
    );

    // `plan` prices with the cache (the spot node costs moto's price) and says so, in text
    // and in JSON.
    let out = d.flotilla(&["plan"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "Catalog: cache {}, refreshed just now (",
            cache.display()
        )),
        "{text}"
    );
    let out = d.flotilla(&["plan", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    let source = &plan["catalog_source"];
    assert_eq!(source["kind"], "cache");
    assert_eq!(source["path"], cache.display().to_string());
    assert_eq!(source["fetched_at"], header["fetched_at"]);
    assert!(
        source["age_seconds"].as_u64().is_some_and(|a| a < 3600),
        "{source}"
    );
    let after = &plan["changes"][0]["after"];
    assert_eq!(after["instance_type"], "p5.48xlarge", "{plan}");
    assert_eq!(
        after["price_per_hour"].as_f64(),
        Some(MOTO_SPOT_PRICE),
        "{plan}"
    );
    assert!(
        after["zone"]
            .as_str()
            .is_some_and(|z| z.starts_with("us-east-1"))
    );

    // `--catalog FILE` still wins over the cache.
    let file = d.work.path().join("mine.csv");
    std::fs::write(
        &file,
        "provider,instance_type,region,zone,gpu_vendor,gpu_name,gpu_count,gpu_memory_gib,vcpus,memory_gib,spot,price_per_hour_usd\n\
         aws,p5.48xlarge,us-east-1,,nvidia,H100,8,80,192,2048,true,7.5\n",
    )
    .expect("write catalog");
    let out = d.flotilla(&["plan", "--format", "json", "--catalog", "mine.csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    assert_eq!(plan["catalog_source"]["kind"], "file");
    assert_eq!(
        plan["changes"][0]["after"]["price_per_hour"].as_f64(),
        Some(7.5)
    );
}

#[test]
fn refresh_reads_the_regions_of_the_fleet_files_here() {
    let _moto = Moto::get();
    let d = Dirs::new(Some(&fleet(r#""us-west-2", "eu-west-1""#)));
    let out = d.flotilla(&["offers", "--refresh", "--limit", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("in 2 regions"), "{err}");
    for region in ["us-west-2", "eu-west-1"] {
        assert!(
            err.lines()
                .any(|l| l.trim_start().starts_with(&format!("{region}: "))),
            "no progress for {region}:\n{err}"
        );
    }
    let text = read(&d.cache_file());
    assert!(
        text.contains(r#""regions":["us-west-2","eu-west-1"]"#),
        "{text}"
    );
    assert!(
        text.contains(",us-west-2,us-west-2"),
        "zonal offers in us-west-2"
    );
    assert!(
        text.contains(",eu-west-1,eu-west-1"),
        "zonal offers in eu-west-1"
    );
    assert!(!text.contains(",us-east-1,"), "only the configured regions");
}

#[test]
fn refresh_without_regions_says_how_to_give_them() {
    let _moto = Moto::get();
    let d = Dirs::new(None);
    let out = d.flotilla(&["offers", "--refresh"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("Pass --region R"), "{}", stderr(&out));
    assert!(!d.cache_file().exists());
}

#[test]
fn a_failing_region_is_named_and_the_old_cache_stays() {
    let moto = Moto::get();
    let d = Dirs::new(None);
    // A first refresh makes a cache to keep.
    let out = d.flotilla(&["offers", "--refresh", "--region", "us-east-2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = read(&d.cache_file());

    // The second region refused: no test but this one asks DescribeInstanceTypes there.
    let region = "ap-southeast-3";
    let mut refused = Fault::new("DescribeInstanceTypes", "", "AuthFailure", 401);
    refused.matches = vec![("_region".into(), region.into())];
    let fault = moto.fault(&refused);
    let out = d.flotilla(&[
        "offers",
        "--refresh",
        "--region",
        "us-east-2",
        "--region",
        region,
    ]);
    moto.clear_fault(&fault);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "aws region {region}: DescribeInstanceTypes failed: AuthFailure"
        )),
        "{err}"
    );
    assert!(err.contains("the offers cache was left as it was"), "{err}");
    assert!(
        err.lines()
            .any(|l| l.trim_start().starts_with("us-east-2: ")),
        "the region that worked was reported:\n{err}"
    );
    assert_eq!(read(&d.cache_file()), before, "the old cache is untouched");
}

#[test]
fn a_corrupt_cache_is_an_error_naming_it_unless_catalog_overrides() {
    let _moto = Moto::get();
    let d = Dirs::new(Some(&fleet(r#""us-east-1""#)));
    let out = d.flotilla(&["offers", "--refresh", "--region", "us-east-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cache = d.cache_file();
    let mut text = read(&cache);
    text.push_str("aws,p5.48xlarge,us-east-1,,nvidia,H100,eight,80,192,2048,false,1\n");
    std::fs::write(&cache, &text).expect("corrupt the cache");

    for args in [&["plan"][..], &["offers", "--gpu", "H100"][..]] {
        let out = d.flotilla(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "the offers cache `{}` cannot be used",
                cache.display()
            )),
            "{args:?}: {err}"
        );
        assert!(err.contains("flotilla offers --refresh"), "{err}");
        assert!(err.contains("column `gpu_count`: `eight`"), "{err}");
    }

    // --catalog never reads the cache.
    let file = d.work.path().join("mine.csv");
    std::fs::write(
        &file,
        "provider,instance_type,region,zone,gpu_vendor,gpu_name,gpu_count,gpu_memory_gib,vcpus,memory_gib,spot,price_per_hour_usd\n\
         aws,p5.48xlarge,us-east-1,,nvidia,H100,8,80,192,2048,true,7.5\n",
    )
    .expect("write catalog");
    let out = d.flotilla(&["plan", "--catalog", "mine.csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Catalog: file mine.csv (1 offer)."),
        "{}",
        stdout(&out)
    );

    // A refresh rebuilds it.
    let out = d.flotilla(&["offers", "--refresh", "--region", "us-east-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = d.flotilla(&["plan"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn missing_credentials_are_an_error_naming_the_region() {
    let _moto = Moto::get();
    let d = Dirs::new(None);
    let nowhere = d.work.path().join("no-such-file");
    let out = Command::new(flotilla())
        .args(["offers", "--refresh", "--region", "us-east-1"])
        .current_dir(d.work.path())
        .env("XDG_CACHE_HOME", d.cache.path())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_SHARED_CREDENTIALS_FILE", &nowhere)
        .env("AWS_CONFIG_FILE", &nowhere)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("the flotilla binary runs");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("aws region us-east-1: DescribeInstanceTypes failed: "),
        "{err}"
    );
    assert!(err.contains("check the AWS credentials"), "{err}");
    assert!(!d.cache_file().exists(), "nothing written");
}
