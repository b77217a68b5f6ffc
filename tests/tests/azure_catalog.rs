//! `flotilla offers --refresh` for Azure end to end: the real binary reads Linux on-demand and
//! Spot prices from the Retail Prices API of the ARM fake (`tests/arm/server.py`, at
//! `FLOTILLA_AZURE_PRICES_URL`) into the Azure offers cache, and `offers` and `plan` then
//! price with that cache and say so.
//!
//! The fake serves fixed prices (those of the embedded snapshot, among Windows, Low Priority,
//! reservation and Dev/Test meters a client must skip), so the tests check that the cache holds
//! exactly the fake's Linux consumption prices, read here independently. Each test has its own
//! working directory and `XDG_CACHE_HOME`, so they run in parallel and never touch the cache of
//! the person running them.

use flotilla_tests::bin::flotilla;
use flotilla_tests::http;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The page size every test that changes it sets: small enough that each query has several
/// pages. All tests set the same value, so running them in parallel does not matter.
const PAGE_SIZE: u64 = 4;

/// The ARM fake that `scripts/test` started, as `127.0.0.1:PORT`; panics, saying what to do,
/// when it is not running.
fn fake() -> String {
    const NOT_RUNNING: &str = "the ARM fake is not running: run these tests with `scripts/test` \
         (it starts tests/arm/server.py and exports FLOTILLA_AZURE_ENDPOINT and \
         FLOTILLA_AZURE_PRICES_URL)";
    let endpoint = std::env::var("FLOTILLA_AZURE_ENDPOINT").unwrap_or_default();
    let Some(host) = endpoint
        .strip_prefix("http://")
        .map(|h| h.trim_end_matches('/').to_string())
    else {
        panic!("{NOT_RUNNING} (FLOTILLA_AZURE_ENDPOINT is {endpoint:?})");
    };
    assert!(
        std::env::var("FLOTILLA_AZURE_PRICES_URL").is_ok_and(|u| u.contains(&host)),
        "{NOT_RUNNING}: FLOTILLA_AZURE_PRICES_URL does not point at it"
    );
    match http::json(&host, "GET", "/_health", None) {
        Ok((200, _)) => host,
        other => panic!("{NOT_RUNNING}: {host} answered /_health with {other:?}"),
    }
}

/// Sets the fake's Retail Prices page size.
fn set_page_size(host: &str, size: u64) {
    let body = format!("{{\"prices_page_size\": {size}}}");
    let (status, text) =
        http::json(host, "POST", "/_config", Some(&body)).expect("the fake answers /_config");
    assert_eq!(status, 200, "{text}");
}

/// The fake's Linux consumption prices of `region`, read here with one broad `$filter` and
/// every `NextPageLink`: (size, spot) -> USD per hour; also the pages read.
fn fake_prices(host: &str, region: &str) -> (BTreeMap<(String, bool), f64>, usize) {
    let filter = format!("serviceName eq 'Virtual Machines' and armRegionName eq '{region}'");
    let mut next = Some(format!(
        "/api/retail/prices?api-version=2023-01-01-preview&$filter={}",
        http::encode(&filter)
    ));
    let (mut prices, mut pages) = (BTreeMap::new(), 0);
    while let Some(path) = next.take() {
        let (status, body) = http::json(host, "GET", &path, None).expect("the fake answers");
        assert_eq!(status, 200, "{body}");
        let page: Value = serde_json::from_str(&body).expect("a prices page is JSON");
        pages += 1;
        for item in page["Items"].as_array().expect("Items") {
            let text = |k: &str| item[k].as_str().unwrap_or_default().to_string();
            if text("type") != "Consumption"
                || text("productName").contains("Windows")
                || text("skuName").contains("Low Priority")
            {
                continue;
            }
            let spot = text("skuName").ends_with(" Spot");
            let usd = item["retailPrice"].as_f64().expect("retailPrice");
            assert!(
                prices.insert((text("armSkuName"), spot), usd).is_none(),
                "one Linux price per size and market: {item}"
            );
        }
        next = page["NextPageLink"]
            .as_str()
            .map(|link| link.split_once(host).map_or(link, |(_, p)| p).to_string());
    }
    (prices, pages)
}

/// A one-node on-demand A100 fleet on Azure in eastus.
const FLEET: &str = r#"
provider "azure" {
  subscription_id = "00000000-0000-0000-0000-000000000000"
  resource_group  = "flotilla-catalog-test"
  regions         = ["eastus"]
}

fleet "solo" {
  nodes       = 1
  spot_policy = "on-demand"
  providers   = ["azure"]
  resources {
    gpu = "A100:1"
  }
}
"#;

/// A working directory and a cache directory of one test.
struct Dirs {
    work: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl Dirs {
    /// Empty directories, with `fleet_file` as `main.hcl` when given.
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

/// A cache's header and its rows as (size, region, spot) -> price.
fn cache_rows(text: &str) -> (Value, BTreeMap<(String, String, bool), f64>) {
    let first = text.lines().next().unwrap_or_default();
    let header: Value = serde_json::from_str(
        first
            .strip_prefix("# flotilla offers cache ")
            .unwrap_or_else(|| panic!("no cache header: {first}")),
    )
    .expect("header JSON");
    let mut rows = BTreeMap::new();
    for line in text.lines().skip(2) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 12, "a catalog row: {line}");
        assert_eq!(f[0], "azure", "{line}");
        let key = (f[1].to_string(), f[2].to_string(), f[10] == "true");
        let price = f[11].parse().unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(
            rows.insert(key, price).is_none(),
            "one row per offer: {line}"
        );
    }
    (header, rows)
}

/// The cache rows of `region` keyed like [`fake_prices`].
fn in_region(
    rows: &BTreeMap<(String, String, bool), f64>,
    region: &str,
) -> BTreeMap<(String, bool), f64> {
    rows.iter()
        .filter(|((_, r, _), _)| r == region)
        .map(|((size, _, spot), price)| ((size.clone(), *spot), *price))
        .collect()
}

/// The `  REGION: …` progress line of a refresh.
fn progress_line(err: &str, region: &str) -> String {
    err.lines()
        .find(|l| l.trim_start().starts_with(&format!("{region}: ")))
        .unwrap_or_else(|| panic!("no progress line for {region} in:\n{err}"))
        .to_string()
}

/// The number before `word` in `line` (`96 price items` -> 96 for `price item`).
fn count_before(line: &str, word: &str) -> usize {
    let before = line
        .split_once(word)
        .unwrap_or_else(|| panic!("no `{word}` in {line}"))
        .0;
    before
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before `{word}` in {line}"))
}

#[test]
fn refresh_writes_the_fakes_linux_prices_and_offers_and_plan_use_them() {
    let host = fake();
    let d = Dirs::new(Some(FLEET));

    // The fleet files declare only Azure: that is what is refreshed, in their regions.
    let out = d.flotilla(&["offers", "--refresh", "--gpu", "A100"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Azure Retail Prices API") && err.contains(&host),
        "the output says where the prices come from:\n{err}"
    );
    let line = progress_line(&err, "eastus");
    assert!(line.contains("on-demand prices"), "{line}");
    assert!(line.contains("Spot prices"), "{line}");
    assert!(!d.cache_file("aws").exists(), "AWS was not asked for");
    assert!(!d.cache_file("gcp").exists(), "GCP was not asked for");

    // The cache: a header naming Azure, the region and the API at the fake; rows that are
    // exactly the fake's Linux consumption prices of eastus (Windows, Low Priority,
    // reservations and Dev/Test skipped), every one a size the snapshot shapes.
    let cache = d.cache_file("azure");
    let (header, rows) = cache_rows(&read(&cache));
    assert_eq!(header["provider"], "azure");
    assert_eq!(header["regions"], serde_json::json!(["eastus"]));
    let source = header["source"].as_str().unwrap_or_default();
    assert!(source.contains("Azure Retail Prices API"), "{source}");
    assert!(source.contains(&host), "{source}");
    let (expected, _) = fake_prices(&host, "eastus");
    assert!(expected.len() > 10, "the fake prices eastus: {expected:?}");
    assert!(expected.keys().any(|(_, spot)| *spot));
    assert_eq!(in_region(&rows, "eastus"), expected);
    assert_eq!(rows.len(), expected.len(), "only eastus");
    // The summary counts what was read and written.
    assert!(
        err.contains(&format!(
            "wrote {} offers to {}",
            rows.len(),
            cache.display()
        )),
        "{err}"
    );
    assert!(err.contains("1 region"), "{err}");

    // `offers` and `plan` price with it and name it with its age.
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "(catalog: cache {}, refreshed just now, ",
            cache.display()
        )),
        "{text}"
    );
    let out = d.flotilla(&["plan", "--refresh=false", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    assert_eq!(
        plan["catalog_source"]["path"],
        cache.display().to_string(),
        "{plan}"
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
    // The plan's offer is the cheapest cached on-demand A100 price of eastus.
    let out = d.flotilla(&[
        "offers",
        "--gpu",
        "A100:1",
        "--provider",
        "azure",
        "--region",
        "eastus",
        "--format",
        "json",
        "--limit",
        "1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: Value = serde_json::from_slice(&out.stdout).expect("offers JSON");
    let cheapest = &shown[0];
    let key = (
        cheapest["instance_type"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        false,
    );
    assert_eq!(
        cheapest["price_per_hour"].as_f64(),
        expected.get(&key).copied()
    );
}

#[test]
fn refresh_follows_next_page_links() {
    let host = fake();
    set_page_size(&host, PAGE_SIZE);
    // No fleet files: `--provider azure` and `--region` say everything.
    let d = Dirs::new(None);
    let out = d.flotilla(&[
        "offers",
        "--refresh",
        "--provider",
        "azure",
        "--region",
        "westus2",
        "--region",
        "EastUS",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);

    let (header, rows) = cache_rows(&read(&d.cache_file("azure")));
    // Regions as the API and the catalog spell them.
    assert_eq!(header["regions"], serde_json::json!(["westus2", "eastus"]));
    for region in ["westus2", "eastus"] {
        let (expected, _) = fake_prices(&host, region);
        assert!(!expected.is_empty(), "the fake prices {region}");
        assert_eq!(in_region(&rows, region), expected, "{region}");
        // Every item of every page was read: far more items than one page holds per query,
        // in at least as many pages as that takes.
        let line = progress_line(&err, region);
        let items = count_before(&line, "price item");
        let pages = count_before(&line, "page");
        assert!(items >= expected.len(), "{line}");
        assert!(
            pages * PAGE_SIZE as usize >= items && pages > 3,
            "pages of {PAGE_SIZE} items were followed: {line}"
        );
    }
    assert!(
        err.contains("Azure Retail Prices API (") && err.contains("in 2 regions"),
        "{err}"
    );
}

/// A stand-in Retail Prices API that answers the first request with one page of one price
/// and a `NextPageLink` to itself, and every later one with a 400 in the API's error shape:
/// a refresh that fails after it has read some prices. Returns its base URL.
fn failing_prices_api() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let next = format!("{base}/api/retail/prices?$skip=1");
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let mut request = Vec::new();
            let mut buf = [0_u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => request.extend_from_slice(&buf[..k]),
                }
            }
            let (status, body) = if n == 0 {
                let page = serde_json::json!({
                    "Items": [{
                        "currencyCode": "USD", "retailPrice": 0.01, "armRegionName": "eastus",
                        "productName": "Virtual Machines NCads A100 v4 Series",
                        "skuName": "NC24ads A100 v4", "serviceName": "Virtual Machines",
                        "unitOfMeasure": "1 Hour", "type": "Consumption",
                        "armSkuName": "Standard_NC24ads_A100_v4",
                        "effectiveStartDate": "2024-01-01T00:00:00Z"
                    }],
                    "NextPageLink": next,
                    "Count": 1
                });
                ("200 OK", page.to_string())
            } else {
                (
                    "400 Bad Request",
                    r#"{"Error":{"Code":"BadRequest","Message":"Invalid OData parameters supplied: $skip"}}"#
                        .to_string(),
                )
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    base
}

#[test]
fn a_prices_api_error_fails_clearly_and_keeps_the_old_cache() {
    let _host = fake();
    let d = Dirs::new(Some(FLEET));
    let out = d.flotilla(&["offers", "--refresh"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = read(&d.cache_file("azure"));

    // The API fails on the second page of the first query: nothing may be written.
    let out = d
        .command(&["offers", "--refresh"])
        .env("FLOTILLA_AZURE_PRICES_URL", failing_prices_api())
        .output()
        .expect("the flotilla binary runs");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("Azure Retail Prices API"), "{err}");
    assert!(err.contains("region eastus"), "{err}");
    assert!(err.contains("HTTP 400 BadRequest"), "{err}");
    assert!(
        err.contains("Invalid OData parameters supplied: $skip"),
        "{err}"
    );
    assert!(err.contains("the offers cache was left as it was"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        read(&d.cache_file("azure")),
        before,
        "the old cache is untouched"
    );
    let leftovers: Vec<_> = std::fs::read_dir(d.cache.path().join("flotilla"))
        .expect("cache dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers, vec!["azure.csv"], "no temporary files left");

    // Nothing listening at all: the same, naming the address.
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let out = d
        .command(&["offers", "--refresh"])
        .env("FLOTILLA_AZURE_PRICES_URL", &url)
        .output()
        .expect("the flotilla binary runs");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&url) && err.contains("Unreachable"), "{err}");
    assert!(err.contains("the offers cache was left as it was"), "{err}");
    assert_eq!(read(&d.cache_file("azure")), before);
}
