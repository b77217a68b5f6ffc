//! `flotilla offers`, run as the real binary: on the embedded snapshot, on small catalogs
//! written to temporary directories, and with broken flags and files.

use std::path::Path;
use std::process::{Command, Output};

fn flotilla_in(dir: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    cmd.args(args).env("NO_COLOR", "1");
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd.output().expect("the flotilla binary runs")
}

fn flotilla(args: &[&str]) -> Output {
    flotilla_in(None, args)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Vec<serde_json::Map<String, serde_json::Value>> {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout)
        .expect("offers --format json prints a JSON array of objects")
}

/// A small catalog: out of rank order, with a tie, a spot offer and a CPU-only one.
const SMALL_CSV: &str = "\
provider,instance_type,region,zone,gpu_vendor,gpu_name,gpu_count,gpu_memory_gib,vcpus,memory_gib,spot,price_per_hour_usd
aws,p5.48xlarge,us-east-1,,nvidia,H100,8,80,192,2048,false,98.32
gcp,a3-highgpu-8g,us-central1,us-central1-a,nvidia,H100,8,80,208,1872,false,88.49
azure,Standard_ND96isr_H100_v5,eastus,,nvidia,H100,8,80,96,1900,false,98.32
aws,p5.48xlarge,us-east-1,,nvidia,H100,8,80,192,2048,true,30.5
aws,p4d.24xlarge,us-east-1,,nvidia,A100,8,40,96,1152,false,32.7726
gcp,n2-standard-8,us-central1,,,,0,0,8,7.5,false,0.3885
";

fn small_catalog() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("offers.csv"), SMALL_CSV).expect("write catalog");
    dir
}

#[test]
fn h100_8_lists_on_demand_eight_gpu_offers_cheapest_first() {
    let out = flotilla(&["offers", "--gpu", "H100:8"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].split_whitespace().eq([
        "provider", "region", "instance", "type", "GPUs", "vCPUs", "memory", "spot", "$/h"
    ]));
    let rows = &lines[2..lines.len() - 1];
    assert_eq!(rows.len(), 20, "{text}");
    let mut prices = Vec::new();
    for row in rows {
        assert!(row.contains("8x H100 80GB"), "{row}");
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[cols.len() - 2], "no", "on-demand only: {row}");
        prices.push(cols[cols.len() - 1].parse::<f64>().expect("a price"));
    }
    assert!(prices.windows(2).all(|w| w[0] <= w[1]), "{prices:?}");
    let summary = lines.last().expect("a summary line");
    assert!(summary.starts_with("Showing 20 of "), "{summary}");
    assert!(
        summary.contains(
            " offers matching gpu H100:8, on-demand (catalog: embedded snapshot, 3478 offers)."
        ),
        "{summary}"
    );
    // No colour codes when stdout is not a terminal.
    assert!(!text.contains('\u{1b}'));
}

#[test]
fn json_has_exactly_the_documented_keys() {
    let rows = json(&flotilla(&[
        "offers", "--gpu", "H100:8", "--format", "json", "--limit", "3",
    ]));
    assert_eq!(rows.len(), 3);
    for row in &rows {
        let keys: Vec<&str> = row.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "provider",
                "region",
                "zone",
                "instance_type",
                "gpu_vendor",
                "gpu_name",
                "gpu_count",
                "gpu_memory_gib",
                "vcpus",
                "memory_gib",
                "spot",
                "price_per_hour"
            ]
        );
        assert_eq!(row["gpu_vendor"], "nvidia");
        assert_eq!(row["gpu_name"], "H100");
        assert_eq!(row["gpu_count"], 8);
        assert_eq!(row["gpu_memory_gib"], 80);
        assert_eq!(row["spot"], false);
        assert!(row["price_per_hour"].is_f64());
    }
    let prices: Vec<f64> = rows
        .iter()
        .map(|r| r["price_per_hour"].as_f64().unwrap())
        .collect();
    assert!(prices.windows(2).all(|w| w[0] <= w[1]), "{prices:?}");
}

#[test]
fn max_price_filters() {
    let all = json(&flotilla(&[
        "offers", "--gpu", "A100", "--format", "json", "--limit", "1000",
    ]));
    let cheap = json(&flotilla(&[
        "offers",
        "--gpu",
        "A100",
        "--max-price",
        "4",
        "--format",
        "json",
        "--limit",
        "1000",
    ]));
    assert!(!cheap.is_empty());
    assert!(cheap.len() < all.len(), "{} of {}", cheap.len(), all.len());
    assert!(
        cheap
            .iter()
            .all(|r| r["price_per_hour"].as_f64().unwrap() <= 4.0)
    );
    let expected = all
        .iter()
        .filter(|r| r["price_per_hour"].as_f64().unwrap() <= 4.0)
        .count();
    assert_eq!(cheap.len(), expected);
}

#[test]
fn filters_by_provider_region_spot_cpu_and_memory() {
    let rows = json(&flotilla(&[
        "offers",
        "--provider",
        "aws",
        "--region",
        "us-east-1",
        "--spot-policy",
        "spot",
        "--cpu",
        "8..16",
        "--memory",
        "32GB..",
        "--format",
        "json",
        "--limit",
        "1000",
    ]));
    assert!(!rows.is_empty());
    for r in &rows {
        assert_eq!(r["provider"], "aws");
        assert_eq!(r["region"], "us-east-1");
        assert_eq!(r["spot"], true);
        let vcpus = r["vcpus"].as_u64().unwrap();
        assert!((8..=16).contains(&vcpus), "{r:?}");
        assert!(r["memory_gib"].as_f64().unwrap() >= 32.0, "{r:?}");
    }
}

#[test]
fn bad_gpu_names_the_flag_points_at_the_token_and_hints() {
    let out = flotilla(&["offers", "--gpu", "H100:A100"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty());
    insta::assert_snapshot!(stderr(&out), @r#"
    error: --gpu "H100:A100": `A100`: GPU names given twice
        H100:A100
             ^^^^
    hint: list alternatives with a comma: `H100,A100`
    "#);
}

#[test]
fn bad_memory_and_cpu_name_their_flags() {
    let out = flotilla(&["offers", "--memory", "24GiB.."]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: --memory \"24GiB..\": unknown memory unit `GiB`\n"),
        "{}",
        stderr(&out)
    );
    let out = flotilla(&["offers", "--cpu", "8..2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("--cpu \"8..2\": `8..2`: the lower bound 8 is above the upper bound 2"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("hint: write `2..8`"));
}

#[test]
fn unknown_provider_lists_the_valid_ones() {
    let out = flotilla(&["offers", "--provider", "oracle"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: --provider \"oracle\": unknown provider; expected one of aws, gcp, azure, baremetal\n"
    );
}

#[test]
fn negative_max_price_is_refused() {
    let out = flotilla(&["offers", "--max-price=-1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--max-price -1"), "{}", stderr(&out));
}

#[test]
fn catalog_file_replaces_the_snapshot() {
    let dir = small_catalog();
    let out = flotilla_in(
        Some(dir.path()),
        &[
            "offers",
            "--catalog",
            "offers.csv",
            "--spot-policy",
            "auto",
            "--memory",
            "4GB..",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!(stdout(&out), @r"
    provider   region        instance type              GPUs           vCPUs   memory   spot       $/h
    ───────────────────────────────────────────────────────────────────────────────────────────────────
    gcp        us-central1   n2-standard-8              -                  8    7.5GB   no      0.3885
    aws        us-east-1     p5.48xlarge                8x H100 80GB     192      2TB   yes       30.5
    aws        us-east-1     p4d.24xlarge               8x A100 40GB      96   1152GB   no     32.7726
    gcp        us-central1   a3-highgpu-8g              8x H100 80GB     208   1872GB   no       88.49
    aws        us-east-1     p5.48xlarge                8x H100 80GB     192      2TB   no       98.32
    azure      eastus        Standard_ND96isr_H100_v5   8x H100 80GB      96   1900GB   no       98.32
    Showing 6 of 6 offers matching memory 4GB.., auto (catalog: offers.csv, 6 offers).
    ");
}

#[test]
fn catalog_file_json_and_limit() {
    let dir = small_catalog();
    let out = flotilla_in(
        Some(dir.path()),
        &[
            "offers",
            "--catalog",
            "offers.csv",
            "--gpu",
            "H100:8",
            "--format",
            "json",
            "--limit",
            "1",
        ],
    );
    insta::assert_snapshot!(stdout(&out), @r#"
    [
      {
        "provider": "gcp",
        "region": "us-central1",
        "zone": "us-central1-a",
        "instance_type": "a3-highgpu-8g",
        "gpu_vendor": "nvidia",
        "gpu_name": "H100",
        "gpu_count": 8,
        "gpu_memory_gib": 80,
        "vcpus": 208,
        "memory_gib": 1872,
        "spot": false,
        "price_per_hour": 88.49
      }
    ]
    "#);
    let cpu = json(&flotilla_in(
        Some(dir.path()),
        &[
            "offers",
            "--catalog",
            "offers.csv",
            "--cpu",
            "8",
            "--memory",
            "4GB..",
            "--format",
            "json",
        ],
    ));
    assert_eq!(cpu.len(), 1);
    assert_eq!(cpu[0]["gpu_vendor"], serde_json::Value::Null);
    assert_eq!(cpu[0]["gpu_count"], 0);
    assert_eq!(cpu[0]["memory_gib"], 7.5);
}

#[test]
fn limit_shows_the_cheapest_and_says_how_many_matched() {
    let dir = small_catalog();
    let out = flotilla_in(
        Some(dir.path()),
        &[
            "offers",
            "--catalog",
            "offers.csv",
            "--gpu",
            "H100:8",
            "--limit",
            "2",
        ],
    );
    let text = stdout(&out);
    assert!(text.contains("a3-highgpu-8g"), "{text}");
    assert!(!text.contains("Standard_ND96isr_H100_v5"), "{text}");
    assert!(
        text.ends_with(
            "Showing 2 of 3 offers matching gpu H100:8, on-demand (catalog: offers.csv, 6 offers). Use --limit to see more.\n"
        ),
        "{text}"
    );
}

#[test]
fn nothing_matches_explains_why() {
    let dir = small_catalog();
    let out = flotilla_in(
        Some(dir.path()),
        &[
            "offers",
            "--catalog",
            "offers.csv",
            "--gpu",
            "H100:8",
            "--max-price",
            "50",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "No offers match: 3 offers match gpu H100:8, on-demand; 0 of them are at or under max_price 50 \
         (cheapest: 88.49 gcp a3-highgpu-8g us-central1).\n"
    );
    let out = flotilla(&["offers", "--gpu", "H200:16"]);
    assert!(out.status.success());
    assert!(
        stdout(&out).starts_with(
            "No offers match: no offer in the catalog (3478 offers) matches gpu H200:16 (available: 8x H200 141GB"
        ),
        "{}",
        stdout(&out)
    );
}

#[test]
fn nothing_matches_in_json_is_an_empty_array() {
    let out = flotilla(&["offers", "--gpu", "H200:16", "--format", "json"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "[]\n");
    assert!(
        stderr(&out).starts_with("No offers match: "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn missing_or_broken_catalog_is_an_error() {
    let out = flotilla(&["offers", "--catalog", "/nonexistent/offers.csv"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: cannot read catalog `/nonexistent/offers.csv`"),
        "{}",
        stderr(&out)
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let broken = SMALL_CSV.replace("208,1872,false", "208,1872,maybe");
    std::fs::write(dir.path().join("broken.csv"), broken).expect("write catalog");
    let out = flotilla_in(Some(dir.path()), &["offers", "--catalog", "broken.csv"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: broken.csv:3: column `spot`: `maybe` is not true or false\n"
    );
}

// The offers cache (`flotilla offers --refresh` writes it; `tests/tests/aws_catalog.rs` covers
// the refresh itself against moto). Each test has its own XDG_CACHE_HOME.

/// A cache of one aws us-east-1 offer fetched on 2026-01-01, in `XDG_CACHE_HOME/flotilla/`.
const CACHE: &str = "\
# flotilla offers cache {\"provider\":\"aws\",\"regions\":[\"us-east-1\"],\"fetched_at\":\"2026-01-01T00:00:00Z\",\"source\":\"a test\"}
provider,instance_type,region,zone,gpu_vendor,gpu_name,gpu_count,gpu_memory_gib,vcpus,memory_gib,spot,price_per_hour_usd
aws,p5.48xlarge,us-east-1,us-east-1b,nvidia,H100,8,80,192,2048,false,1.25
";

/// One 8x H100 node on AWS in us-east-1.
const FLEET: &str = "provider \"aws\" {\n  regions = [\"us-east-1\"]\n}\n\n\
fleet \"train\" {\n  nodes = 1\n  resources {\n    gpu = \"H100:8\"\n  }\n}\n";

/// A working directory and a cache home holding `cache` as `flotilla/aws.csv`.
fn with_cache(cache: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let home = tempfile::tempdir().expect("temp dir");
    let dir = home.path().join("flotilla");
    std::fs::create_dir_all(&dir).expect("cache dir");
    let file = dir.join("aws.csv");
    std::fs::write(&file, cache).expect("write cache");
    (home, file)
}

fn flotilla_cached(home: &Path, dir: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    cmd.args(args)
        .env("NO_COLOR", "1")
        .env("XDG_CACHE_HOME", home);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd.output().expect("the flotilla binary runs")
}

#[test]
fn the_cache_replaces_its_regions_of_the_snapshot_and_says_how_old_it_is() {
    let (home, file) = with_cache(CACHE);
    let out = flotilla_cached(
        home.path(),
        None,
        &[
            "offers",
            "--gpu",
            "H100:8",
            "--provider",
            "aws",
            "--format",
            "json",
            "--limit",
            "500",
        ],
    );
    let rows = json(&out);
    let east: Vec<_> = rows.iter().filter(|r| r["region"] == "us-east-1").collect();
    assert_eq!(east.len(), 1, "only the cached us-east-1 offer: {east:?}");
    assert_eq!(east[0]["zone"], "us-east-1b");
    assert_eq!(east[0]["price_per_hour"], 1.25);
    assert!(
        rows.iter().any(|r| r["region"] == "us-west-2"),
        "other regions keep the snapshot's offers"
    );

    let out = flotilla_cached(home.path(), None, &["offers", "--gpu", "H100:8"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let summary = text.lines().last().expect("a summary");
    let prefix = format!("(catalog: cache {}, refreshed ", file.display());
    assert!(summary.contains(&prefix), "{summary}");
    assert!(summary.contains(" days ago, "), "{summary}");
    // The cheapest 8x H100 on demand is now the cached one.
    assert!(
        text.lines().nth(2).is_some_and(|l| l.contains("1.25")),
        "{text}"
    );
}

#[test]
fn plan_says_it_priced_with_the_cache_and_its_age() {
    let (home, file) = with_cache(CACHE);
    let work = tempfile::tempdir().expect("temp dir");
    std::fs::write(work.path().join("main.hcl"), FLEET).expect("write fleet");
    let out = flotilla_cached(home.path(), Some(work.path()), &["plan"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.contains("Catalog: "))
        .unwrap_or_else(|| panic!("no catalog line in {text}"));
    assert!(
        line.contains(&format!("Catalog: cache {}, refreshed ", file.display())),
        "{line}"
    );
    assert!(line.contains(" days ago ("), "{line}");
    assert!(
        text.contains("p5.48xlarge"),
        "the cached offer is the cheapest: {text}"
    );

    let out = flotilla_cached(
        home.path(),
        Some(work.path()),
        &["plan", "--format", "json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    let source = &plan["catalog_source"];
    assert_eq!(source["kind"], "cache");
    assert_eq!(source["path"], file.display().to_string());
    assert_eq!(source["fetched_at"], "2026-01-01T00:00:00Z");
    assert!(
        source["age_seconds"].as_u64().is_some_and(|a| a > 86_400),
        "{source}"
    );
    assert!(
        plan["catalog"]
            .as_str()
            .is_some_and(|c| c.starts_with("cache "))
    );

    let out = flotilla_cached(
        home.path(),
        Some(work.path()),
        &["plan", "--format", "markdown"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "\n\nCatalog: cache {}, refreshed ",
            file.display()
        )),
        "{}",
        stdout(&out)
    );
}

#[test]
fn without_a_cache_plans_name_the_embedded_snapshot_and_its_date() {
    let home = tempfile::tempdir().expect("temp dir");
    let work = tempfile::tempdir().expect("temp dir");
    std::fs::write(work.path().join("main.hcl"), FLEET).expect("write fleet");
    let out = flotilla_cached(
        home.path(),
        Some(work.path()),
        &["plan", "--format", "json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    assert_eq!(
        plan["catalog"],
        "embedded snapshot of 2026-05-20 (3478 offers)"
    );
    assert_eq!(
        plan["catalog_source"],
        serde_json::json!({
            "kind": "embedded",
            "path": null,
            "fetched_at": "2026-05-20T00:00:00Z",
            "age_seconds": null,
            "offers": 3478,
        })
    );
}

#[test]
fn a_corrupt_cache_is_an_error_naming_it_and_catalog_still_wins() {
    let (home, file) = with_cache(&CACHE.replace("\"fetched_at\"", "\"fetched\""));
    let out = flotilla_cached(home.path(), None, &["offers", "--gpu", "H100"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "error: the offers cache `{}` cannot be used; run `flotilla offers --refresh` to rebuild it, or delete it",
            file.display()
        )),
        "{err}"
    );
    assert!(err.contains("unreadable cache header"), "{err}");

    let dir = small_catalog();
    let out = flotilla_cached(
        home.path(),
        Some(dir.path()),
        &["offers", "--gpu", "H100:8", "--catalog", "offers.csv"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("(catalog: offers.csv, 6 offers)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn refresh_of_another_provider_or_without_regions_is_refused() {
    let home = tempfile::tempdir().expect("temp dir");
    let work = tempfile::tempdir().expect("temp dir");
    let out = flotilla_cached(
        home.path(),
        Some(work.path()),
        &["offers", "--refresh", "--provider", "baremetal"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("AWS, GCP and Azure only"),
        "{}",
        stderr(&out)
    );

    let out = flotilla_cached(home.path(), Some(work.path()), &["offers", "--refresh"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Pass --region R"), "{}", stderr(&out));
    assert!(!home.path().join("flotilla").exists(), "nothing written");
}
