//! Compute Engine list prices from the Cloud Billing Catalog API, for `flotilla offers
//! --refresh`.
//!
//! Compute bills a VM by its parts: the machine family's vCPUs and memory, and its GPUs, each
//! a SKU of the Compute Engine service (`6F81-5844-456A`) priced per region and usage type
//! (`OnDemand`, or `Preemptible` for spot). So an offer's price is vCPUs x the family's core
//! price + GiB x its RAM price + GPUs x the GPU's price, as Google's own pricing pages add it
//! up. SKUs say which family or GPU they price only in their `description` ("G2 Instance Core
//! running in Americas", "Nvidia L4 GPU attached to Spot Preemptible VMs running in
//! Americas"), so [`FAMILIES`] and [`GPUS`] map machine types and accelerator types to the
//! words Google uses; an offer whose parts are not all found keeps the embedded snapshot's
//! price.
//!
//! The API is plain REST without a Rust client in the google-cloud-rust family, so it is called
//! through reqwest with the same credentials as Compute: a bearer token from Application
//! Default Credentials, or none against an endpoint override (`FLOTILLA_GCP_BILLING_ENDPOINT`,
//! else the Compute endpoint, which the tests' fake serves too). Prices are an improvement,
//! never a reason to fail a refresh: when the API refuses or fails, the caller keeps the
//! snapshot's prices and says why.

use crate::GcpProvider;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// The environment variable that points the Billing calls at another server (a fake); without
/// it they follow the Compute endpoint override, and without that they go to Google.
pub const BILLING_ENDPOINT_ENV: &str = "FLOTILLA_GCP_BILLING_ENDPOINT";

/// Google's Cloud Billing API.
const GOOGLE_BILLING: &str = "https://cloudbilling.googleapis.com";

/// The Compute Engine service in the Billing catalog.
pub(crate) const COMPUTE_SERVICE: &str = "6F81-5844-456A";

/// The largest page the API serves.
const PAGE_SIZE: u32 = 5000;

/// A bound on pages, so a server that keeps handing out tokens cannot keep a refresh forever
/// (Compute Engine has some tens of thousands of SKUs: about ten pages).
const MAX_PAGES: usize = 500;

/// How long one page may take, and connecting to the server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Machine-type prefixes and the words their core and RAM SKUs start with, most specific
/// first (`a3-megagpu-` before `a3-`). The second field names the family in [`Part`].
pub(crate) const FAMILIES: &[(&str, &str, &[&str])] = &[
    ("n1-", "n1", &["n1 predefined instance"]),
    ("e2-", "e2", &["e2 instance"]),
    ("a2-", "a2", &["a2 instance"]),
    (
        "a3-megagpu-",
        "a3-mega",
        &["a3plus instance", "a3 mega instance"],
    ),
    (
        "a3-ultragpu-",
        "a3-ultra",
        &["a3ultra instance", "a3 ultra instance"],
    ),
    ("a3-", "a3", &["a3 instance"]),
    ("a4-", "a4", &["a4 instance"]),
    ("g2-", "g2", &["g2 instance"]),
];

/// Accelerator types and the words their GPU SKUs start with. Where Google has named a GPU
/// more than one way, every name is listed.
pub(crate) const GPUS: &[(&str, &[&str])] = &[
    ("nvidia-tesla-t4", &["nvidia tesla t4 gpu"]),
    ("nvidia-tesla-v100", &["nvidia tesla v100 gpu"]),
    ("nvidia-tesla-p100", &["nvidia tesla p100 gpu"]),
    ("nvidia-tesla-p4", &["nvidia tesla p4 gpu"]),
    ("nvidia-tesla-a100", &["nvidia tesla a100 gpu"]),
    (
        "nvidia-a100-80gb",
        &["nvidia a100 80gb gpu", "nvidia tesla a100 80gb gpu"],
    ),
    ("nvidia-h100-80gb", &["nvidia h100 80gb gpu"]),
    (
        "nvidia-h100-mega-80gb",
        &[
            "nvidia h100 80gb mega gpu",
            "nvidia h100 mega 80gb gpu",
            "nvidia h100 80gb plus gpu",
        ],
    ),
    ("nvidia-h200-141gb", &["nvidia h200 141gb gpu"]),
    ("nvidia-l4", &["nvidia l4 gpu"]),
    (
        "nvidia-b200",
        &["nvidia b200 gpu", "nvidia b200 (1 gpu slice)"],
    ),
];

/// SKUs that price something other than a plain VM of a family (custom shapes, sole tenancy,
/// reservations, commitments, capacity-planning modes), which share the families' words.
const EXCLUDED: &[&str] = &[
    "custom",
    "premium",
    "sole tenancy",
    "reserved",
    "reservation",
    "commitment",
    "extended",
    "dws",
    "flex",
    "calendar",
];

/// What one SKU prices.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Part {
    /// One vCPU-hour of a machine family (the family's id in [`FAMILIES`]).
    Core(&'static str),
    /// One GiB-hour of a machine family's memory.
    Ram(&'static str),
    /// One GPU-hour of an accelerator type.
    Gpu(&'static str),
}

/// One usable SKU: what it prices, for which usage type and regions, at what USD rate.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rate {
    pub(crate) part: Part,
    pub(crate) spot: bool,
    pub(crate) regions: Vec<String>,
    pub(crate) usd: f64,
    pub(crate) sku_id: String,
}

/// The Compute Engine SKUs the API listed, as rates by (part, spot, region).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SkuPrices {
    /// Every SKU listed (usable or not).
    pub(crate) skus: usize,
    /// Where they came from.
    pub(crate) endpoint: String,
    /// (part, spot, region) -> (how many regions the SKU covers, SKU id, USD rate): the most
    /// specific SKU wins when two cover a region.
    rates: BTreeMap<(Part, bool, String), (usize, String, f64)>,
}

impl SkuPrices {
    /// Rates from SKUs as the API lists them.
    pub(crate) fn from_skus<'a>(
        endpoint: &str,
        skus: impl IntoIterator<Item = &'a Value>,
    ) -> SkuPrices {
        let mut out = SkuPrices {
            endpoint: endpoint.to_string(),
            ..SkuPrices::default()
        };
        for sku in skus {
            out.skus += 1;
            let Some(rate) = classify(sku) else {
                continue;
            };
            let n = rate.regions.len();
            for region in &rate.regions {
                let key = (rate.part.clone(), rate.spot, region.clone());
                let candidate = (n, rate.sku_id.clone(), rate.usd);
                match out.rates.get(&key) {
                    Some(have) if (have.0, &have.1) <= (n, &rate.sku_id) => {}
                    _ => {
                        out.rates.insert(key, candidate);
                    }
                }
            }
        }
        out
    }

    fn rate(&self, part: Part, spot: bool, region: &str) -> Option<f64> {
        self.rates
            .get(&(part, spot, region.to_string()))
            .map(|r| r.2)
    }

    /// The hourly USD price of `vcpus` and `memory_gib` of `machine_type` plus `gpus` (an
    /// accelerator type and count) in `region`; `None` when a part has no SKU.
    pub(crate) fn price(
        &self,
        region: &str,
        spot: bool,
        machine_type: &str,
        vcpus: u32,
        memory_gib: f64,
        gpus: Option<(&str, u32)>,
    ) -> Option<f64> {
        let family = family_of(machine_type)?;
        let core = self.rate(Part::Core(family), spot, region)?;
        let ram = self.rate(Part::Ram(family), spot, region)?;
        let gpu = match gpus {
            Some((accelerator, count)) if count > 0 => {
                let id = GPUS.iter().find(|(a, _)| *a == accelerator)?.0;
                self.rate(Part::Gpu(id), spot, region)? * f64::from(count)
            }
            _ => 0.0,
        };
        let total = f64::from(vcpus) * core + memory_gib * ram + gpu;
        // Micro-dollars: enough for any list price, and no float noise in the cache.
        Some((total * 1e6).round() / 1e6)
    }
}

/// The family id of a machine type, per [`FAMILIES`].
fn family_of(machine_type: &str) -> Option<&'static str> {
    FAMILIES
        .iter()
        .find(|(prefix, _, _)| machine_type.starts_with(prefix))
        .map(|(_, id, _)| *id)
}

/// Whether `text` starts with `words` as whole words.
fn starts_with_words(text: &str, words: &str) -> bool {
    text.strip_prefix(words)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
}

/// What a SKU prices, if it is a core, RAM or GPU rate of a known family or accelerator, on
/// demand or spot, in USD per hour (per GiB-hour for RAM).
pub(crate) fn classify(sku: &Value) -> Option<Rate> {
    let category = &sku["category"];
    if category["resourceFamily"].as_str() != Some("Compute") {
        return None;
    }
    let spot = match category["usageType"].as_str()? {
        "OnDemand" => false,
        "Preemptible" => true,
        _ => return None,
    };
    let description = sku["description"].as_str()?.to_ascii_lowercase();
    if EXCLUDED.iter().any(|w| description.contains(w)) {
        return None;
    }
    let rest = description
        .strip_prefix("spot preemptible ")
        .or_else(|| description.strip_prefix("preemptible "))
        .unwrap_or(&description);
    let part = GPUS
        .iter()
        .find(|(_, names)| names.iter().any(|n| starts_with_words(rest, n)))
        .map(|(id, _)| Part::Gpu(id))
        .or_else(|| {
            FAMILIES.iter().find_map(|(_, id, stems)| {
                stems.iter().find_map(|stem| {
                    if starts_with_words(rest, &format!("{stem} core")) {
                        Some(Part::Core(id))
                    } else if starts_with_words(rest, &format!("{stem} ram")) {
                        Some(Part::Ram(id))
                    } else {
                        None
                    }
                })
            })
        })?;
    let expression = &sku["pricingInfo"][0]["pricingExpression"];
    let unit = expression["usageUnit"].as_str()?;
    let expected = match part {
        Part::Ram(_) => "GiBy.h",
        Part::Core(_) | Part::Gpu(_) => "h",
    };
    if unit != expected {
        return None;
    }
    // The rate from zero usage on: the first tier, unless a later one starts at zero.
    let tiers = expression["tieredRates"].as_array()?;
    let tier = tiers
        .iter()
        .find(|t| t["startUsageAmount"].as_f64().unwrap_or(0.0) == 0.0)
        .or_else(|| tiers.first())?;
    let usd = money(&tier["unitPrice"])?;
    let regions: Vec<String> = sku["serviceRegions"]
        .as_array()?
        .iter()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    Some(Rate {
        part,
        spot,
        regions,
        usd,
        sku_id: sku["skuId"].as_str().unwrap_or_default().to_string(),
    })
}

/// A `google.type.Money` in USD: `units` (int64, sent as a string) plus `nanos`.
fn money(v: &Value) -> Option<f64> {
    if v["currencyCode"].as_str().is_some_and(|c| c != "USD") {
        return None;
    }
    let units = match &v["units"] {
        Value::String(s) => s.parse::<i64>().ok()?,
        Value::Number(n) => n.as_i64()?,
        Value::Null => 0,
        _ => return None,
    };
    let nanos = v["nanos"].as_i64().unwrap_or(0);
    Some(units as f64 + nanos as f64 / 1e9)
}

/// Why the Billing API gave no prices.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BillingError(pub(crate) String);

/// Where Billing calls go, and whether they carry credentials: `FLOTILLA_GCP_BILLING_ENDPOINT`,
/// else the provider's Compute endpoint override (both anonymous), else Google with ADC.
fn endpoint(p: &GcpProvider) -> (String, bool) {
    if let Some(e) = std::env::var(BILLING_ENDPOINT_ENV)
        .ok()
        .filter(|e| !e.is_empty())
    {
        return (e.trim_end_matches('/').to_string(), false);
    }
    match &p.endpoint {
        Some(e) => (e.trim_end_matches('/').to_string(), false),
        None => (GOOGLE_BILLING.to_string(), true),
    }
}

/// Lists every Compute Engine SKU in USD, all pages, and turns them into rates.
pub(crate) async fn fetch_prices(p: &GcpProvider) -> Result<SkuPrices, BillingError> {
    let (base, with_credentials) = endpoint(p);
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(BillingError(format!(
            "{BILLING_ENDPOINT_ENV} `{base}` is not an http:// or https:// URL"
        )));
    }
    let headers = if with_credentials {
        token_headers().await?
    } else {
        http::HeaderMap::new()
    };
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| BillingError(format!("cannot set up an HTTP client: {e}")))?;
    let url = format!("{base}/v1/services/{COMPUTE_SERVICE}/skus");
    let mut skus: Vec<Value> = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut query: Vec<(&str, String)> = vec![
            ("currencyCode", "USD".to_string()),
            ("pageSize", PAGE_SIZE.to_string()),
        ];
        if let Some(t) = &token {
            query.push(("pageToken", t.clone()));
        }
        let response = client
            .get(&url)
            .headers(headers.clone())
            .query(&query)
            .send()
            .await
            .map_err(|e| BillingError(format!("cannot reach {base}: {}", causes(e))))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| BillingError(format!("reading an answer from {base}: {}", causes(e))))?;
        let page: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(BillingError(refusal(status.as_u16(), &page)));
        }
        if !page.is_object() {
            return Err(BillingError(format!(
                "{base} answered HTTP {status} with something other than a JSON object"
            )));
        }
        skus.extend(page["skus"].as_array().cloned().unwrap_or_default());
        match page["nextPageToken"].as_str() {
            Some(t) if !t.is_empty() => {
                if token.as_deref() == Some(t) {
                    return Err(BillingError(format!(
                        "{base} handed out the same page token twice"
                    )));
                }
                token = Some(t.to_string());
            }
            _ => return Ok(SkuPrices::from_skus(&base, &skus)),
        }
    }
    Err(BillingError(format!(
        "{base} had more than {MAX_PAGES} pages of SKUs"
    )))
}

/// A request's error and its causes, innermost last, without the URL (the caller names the
/// server): reqwest's own message says only that sending failed, and the cause (connection
/// refused, a TLS or DNS failure) is what a person can act on.
fn causes(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `HTTP 403 PERMISSION_DENIED: <message>` from a Google API error answer.
fn refusal(status: u16, page: &Value) -> String {
    let error = &page["error"];
    let code = error["status"].as_str().unwrap_or_default();
    let message = error["message"].as_str().unwrap_or_default();
    let mut out = format!("HTTP {status}");
    if !code.is_empty() {
        out.push(' ');
        out.push_str(code);
    }
    if !message.is_empty() {
        out.push_str(": ");
        out.push_str(message);
    }
    out
}

/// The Authorization (and quota project) headers of Application Default Credentials.
async fn token_headers() -> Result<http::HeaderMap, BillingError> {
    use google_cloud_auth::credentials::{Builder, CacheableResource};
    let credentials = Builder::default()
        .build()
        .map_err(|e| BillingError(format!("no Application Default Credentials ({e})")))?;
    // Without a metadata server the token fetch retries for about a minute: bound it.
    let got = tokio::time::timeout(
        Duration::from_secs(30),
        credentials.headers(http::Extensions::new()),
    )
    .await
    .map_err(|_| BillingError("timed out getting a Google access token".to_string()))?
    .map_err(|e| BillingError(format!("cannot get a Google access token: {e}")))?;
    Ok(match got {
        CacheableResource::New { data, .. } => data,
        CacheableResource::NotModified => http::HeaderMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sku(
        id: &str,
        description: &str,
        usage: &str,
        unit: &str,
        nanos: i64,
        regions: &[&str],
    ) -> Value {
        json!({
            "name": format!("services/{COMPUTE_SERVICE}/skus/{id}"),
            "skuId": id,
            "description": description,
            "category": {"serviceDisplayName": "Compute Engine", "resourceFamily": "Compute",
                         "resourceGroup": "CPU", "usageType": usage},
            "serviceRegions": regions,
            "pricingInfo": [{"pricingExpression": {"usageUnit": unit, "displayQuantity": 1,
                "tieredRates": [{"startUsageAmount": 0,
                                 "unitPrice": {"currencyCode": "USD", "units": "0", "nanos": nanos}}]}}],
        })
    }

    #[test]
    fn skus_are_read_by_family_gpu_and_usage() {
        let r = classify(&sku(
            "A",
            "G2 Instance Core running in Americas",
            "OnDemand",
            "h",
            25_000_000,
            &["us-central1"],
        ))
        .unwrap();
        assert_eq!((r.part, r.spot, r.usd), (Part::Core("g2"), false, 0.025));
        let r = classify(&sku(
            "B",
            "Spot Preemptible N1 Predefined Instance Ram running in EMEA",
            "Preemptible",
            "GiBy.h",
            900_000,
            &["europe-west4"],
        ))
        .unwrap();
        assert_eq!((r.part, r.spot), (Part::Ram("n1"), true));
        let r = classify(&sku(
            "C",
            "Nvidia L4 GPU attached to Spot Preemptible VMs running in Americas",
            "Preemptible",
            "h",
            1,
            &["us-central1"],
        ))
        .unwrap();
        assert_eq!((r.part, r.spot), (Part::Gpu("nvidia-l4"), true));
        // Look-alikes are kept apart.
        let r = classify(&sku(
            "D",
            "Nvidia Tesla A100 80GB GPU running in Americas",
            "OnDemand",
            "h",
            1,
            &["us-central1"],
        ))
        .unwrap();
        assert_eq!(r.part, Part::Gpu("nvidia-a100-80gb"));
        let r = classify(&sku(
            "E",
            "A3Plus Instance Core running in Americas",
            "OnDemand",
            "h",
            1,
            &["us-central1"],
        ))
        .unwrap();
        assert_eq!(r.part, Part::Core("a3-mega"));
        // Not plain VM rates: commitments, custom shapes, wrong units, other families.
        assert!(
            classify(&sku(
                "F",
                "N1 Custom Instance Core running in Americas",
                "OnDemand",
                "h",
                1,
                &["us-central1"]
            ))
            .is_none()
        );
        assert!(
            classify(&sku(
                "G",
                "Commitment v1: A2 Cpu in Americas for 1 Year",
                "Commit1Yr",
                "h",
                1,
                &["us-central1"]
            ))
            .is_none()
        );
        assert!(
            classify(&sku(
                "H",
                "G2 Instance Ram running in Americas",
                "OnDemand",
                "h",
                1,
                &["us-central1"]
            ))
            .is_none()
        );
        assert!(
            classify(&sku(
                "I",
                "C3 Instance Core running in Americas",
                "OnDemand",
                "h",
                1,
                &["us-central1"]
            ))
            .is_none()
        );
    }

    #[test]
    fn an_offer_is_its_parts_and_needs_all_of_them() {
        let skus = [
            sku(
                "1",
                "G2 Instance Core running in Americas",
                "OnDemand",
                "h",
                25_000_000,
                &["us-central1", "us-east1"],
            ),
            sku(
                "2",
                "G2 Instance Ram running in Americas",
                "OnDemand",
                "GiBy.h",
                3_000_000,
                &["us-central1", "us-east1"],
            ),
            sku(
                "3",
                "Nvidia L4 GPU running in Americas",
                "OnDemand",
                "h",
                600_000_000,
                &["us-central1"],
            ),
            // A region's own SKU wins over its geography's.
            sku(
                "4",
                "G2 Instance Core running in Iowa",
                "OnDemand",
                "h",
                20_000_000,
                &["us-central1"],
            ),
        ];
        let prices = SkuPrices::from_skus("http://x", skus.iter());
        assert_eq!(prices.skus, 4);
        let p = prices.price(
            "us-central1",
            false,
            "g2-standard-8",
            8,
            32.0,
            Some(("nvidia-l4", 1)),
        );
        assert_eq!(p, Some(0.856));
        // No L4 SKU in us-east1, no spot SKUs at all, no C3 family: not priced.
        assert_eq!(
            prices.price(
                "us-east1",
                false,
                "g2-standard-8",
                8,
                32.0,
                Some(("nvidia-l4", 1))
            ),
            None
        );
        assert_eq!(
            prices.price(
                "us-central1",
                true,
                "g2-standard-8",
                8,
                32.0,
                Some(("nvidia-l4", 1))
            ),
            None
        );
        assert_eq!(
            prices.price("us-central1", false, "c3-standard-8", 8, 32.0, None),
            None
        );
    }

    #[test]
    fn refusals_name_the_status_and_message() {
        let page = json!({"error": {"code": 403, "status": "PERMISSION_DENIED", "message": "no"}});
        assert_eq!(refusal(403, &page), "HTTP 403 PERMISSION_DENIED: no");
        assert_eq!(refusal(502, &Value::Null), "HTTP 502");
        assert_eq!(
            money(&json!({"units": "1", "nanos": 500_000_000})),
            Some(1.5)
        );
        assert_eq!(money(&json!({"currencyCode": "EUR", "units": "1"})), None);
    }
}
