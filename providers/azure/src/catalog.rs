//! Live Azure prices for `flotilla offers --refresh`, from the public Azure Retail Prices API.
//!
//! The embedded snapshot's prices age, and Spot prices move. The Retail Prices API
//! (`GET https://prices.azure.com/api/retail/prices`) says what Azure charges now and needs no
//! credentials, so a refresh works before any subscription is set up. It carries prices only,
//! so each offer's shape (GPU model and count, vCPUs, memory) comes from the embedded
//! snapshot's rows of the same VM size; the sizes asked about are the snapshot's Azure sizes,
//! and an item of a size the snapshot does not know is skipped and counted.
//!
//! Per region, the sizes are asked about in chunks (`$filter` by service, region and
//! `armSkuName`s, so URLs stay short), each answer followed through its absolute
//! `NextPageLink`. Of the items only Linux pay-as-you-go meters become offers: on-demand
//! (`skuName` without "Spot" or "Low Priority") and Spot (`skuName` ending " Spot"); Windows
//! meters (`productName` with "Windows"), reservations and Dev/Test prices (`type` other than
//! `Consumption`) are skipped. A region's offers are then exactly what the API prices there:
//! a snapshot offer without a price now is left out (and counted).
//!
//! A failing call stops the whole refresh with an error naming the region and the API's own
//! code and message, so the caller writes nothing and the previous cache stays as it was.
//! Throttling (429) and server errors are retried a few times first.

use flotilla_core::catalog::{Catalog, Offer, ProviderKind};
use futures::StreamExt as _;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The environment variable that points the refresh at another Retail Prices API (a fake):
/// a base URL such as `http://127.0.0.1:8080`, or the full `…/api/retail/prices` URL.
pub const PRICES_URL_ENV: &str = "FLOTILLA_AZURE_PRICES_URL";

/// The public Retail Prices API.
pub const DEFAULT_PRICES_URL: &str = "https://prices.azure.com";

/// The path of the prices endpoint under a base URL.
const PRICES_PATH: &str = "/api/retail/prices";

/// The api-version asked for: the first whose `$filter` values are case-sensitive, which is
/// what `armSkuName eq 'Standard_…'` relies on.
const API_VERSION: &str = "2023-01-01-preview";

/// VM sizes per query: ten `armSkuName eq '…'` terms keep a URL near 1,000 characters.
const SIZES_PER_QUERY: usize = 10;

/// Regions fetched at once: a refresh of every region stays quick without leaning on the API.
const REGIONS_AT_ONCE: usize = 4;

/// Tries of one page before a 429, 5xx or unreachable API fails the refresh.
const ATTEMPTS: u32 = 3;

/// Pages of one query before the refresh gives up on a `NextPageLink` that never ends.
const MAX_PAGES: usize = 10_000;

/// The prices endpoint a refresh calls: [`PRICES_URL_ENV`] when set, else
/// [`DEFAULT_PRICES_URL`], with `/api/retail/prices` added when the URL is a bare base.
pub fn prices_url() -> String {
    let base = std::env::var(PRICES_URL_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_PRICES_URL.to_string());
    endpoint_of(&base)
}

/// `base` as the prices endpoint: trailing slashes dropped, the path added unless present.
fn endpoint_of(base: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    if base.to_ascii_lowercase().ends_with(PRICES_PATH) {
        base.to_string()
    } else {
        format!("{base}{PRICES_PATH}")
    }
}

/// The regions of the snapshot's Azure offers, sorted: what a refresh covers when neither
/// `--region` nor the provider block names any.
pub fn snapshot_regions(embedded: &Catalog) -> Vec<String> {
    azure_offers(embedded)
        .map(|o| o.region.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// What one region gave, for the progress line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionOffers {
    /// The region.
    pub region: String,
    /// Price items the API returned for it, over all pages (Windows, reservations and the
    /// other skipped meters included).
    pub items: usize,
    /// Pages read.
    pub pages: usize,
    /// Sizes with a Linux on-demand price.
    pub on_demand: usize,
    /// Sizes with a Linux Spot price.
    pub spot: usize,
    /// Offers kept: every price of a size the snapshot knows.
    pub offers: usize,
    /// Sizes priced here that the snapshot does not know (skipped: no shape for them).
    pub unknown_sizes: usize,
    /// The snapshot's offers of the region with no price now (left out).
    pub unpriced: usize,
}

/// Everything a refresh fetched, over all regions.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedOffers {
    /// The offers, on-demand and Spot, of every region.
    pub offers: Vec<Offer>,
    /// Each region's counts, in the order asked.
    pub regions: Vec<RegionOffers>,
}

impl FetchedOffers {
    /// Price items read, over all regions.
    pub fn items(&self) -> usize {
        self.regions.iter().map(|r| r.items).sum()
    }

    /// Pages read, over all regions.
    pub fn pages(&self) -> usize {
        self.regions.iter().map(|r| r.pages).sum()
    }

    /// Sizes priced that the snapshot does not know, counted once per region.
    pub fn unknown_sizes(&self) -> usize {
        self.regions.iter().map(|r| r.unknown_sizes).sum()
    }
}

/// Why a refresh failed: the region, the HTTP status and the API's own code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Azure Retail Prices API at {endpoint} failed for region {region}: {}{code}: {message}", status.map(|s| format!("HTTP {s} ")).unwrap_or_default())]
pub struct RefreshError {
    /// The prices endpoint, without a query.
    pub endpoint: String,
    /// The region being fetched.
    pub region: String,
    /// The HTTP status; `None` when no answer came.
    pub status: Option<u16>,
    /// The API's error code (`BadRequest`), or one of ours: `Unreachable`, `BadAnswer`.
    pub code: String,
    /// The API's message, or what went wrong on the way.
    pub message: String,
}

/// Fetches the Linux on-demand and Spot prices of the snapshot's Azure sizes in `regions`
/// from the Retail Prices API at `endpoint` (see [`prices_url`]), calling `progress` after
/// each region, in order.
///
/// `embedded` is the catalog whose Azure sizes are asked about and whose rows give each size
/// its shape (the embedded snapshot).
pub async fn fetch_offers(
    endpoint: &str,
    regions: &[String],
    embedded: &Catalog,
    mut progress: impl FnMut(&RegionOffers),
) -> Result<FetchedOffers, RefreshError> {
    let endpoint = endpoint_of(endpoint);
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| RefreshError {
            endpoint: endpoint.clone(),
            region: regions.join(", "),
            status: None,
            code: "Client".to_string(),
            message: format!("cannot set up an HTTP client: {e}"),
        })?;
    let shapes = shapes(embedded);
    let sizes: Vec<&str> = shapes.values().map(|o| o.instance_type.as_str()).collect();

    let mut fetched = FetchedOffers {
        offers: Vec::new(),
        regions: Vec::new(),
    };
    let mut answers = futures::stream::iter(regions)
        .map(|region| {
            let (http, endpoint, sizes) = (&http, &endpoint, &sizes);
            async move {
                let mut items = Vec::new();
                let mut pages = 0;
                for chunk in sizes.chunks(SIZES_PER_QUERY) {
                    let url = query_url(endpoint, region, chunk);
                    let (mut got, n) = read_all(http, endpoint, region, url).await?;
                    items.append(&mut got);
                    pages += n;
                }
                Ok::<_, RefreshError>((region, items, pages))
            }
        })
        .buffered(REGIONS_AT_ONCE);
    while let Some(answer) = answers.next().await {
        let (region, items, pages) = answer?;
        let (offers, mut counts) = region_offers(region, &items, &shapes, embedded);
        counts.pages = pages;
        progress(&counts);
        fetched.offers.extend(offers);
        fetched.regions.push(counts);
    }
    Ok(fetched)
}

/// The snapshot's Azure offers.
fn azure_offers(embedded: &Catalog) -> impl Iterator<Item = &Offer> {
    embedded
        .offers()
        .iter()
        .filter(|o| o.provider == ProviderKind::Azure)
}

/// One snapshot offer per Azure size (the cheapest, as the catalog is in rank order), keyed by
/// the size in lower case: where a priced size gets its GPUs, vCPUs and memory.
fn shapes(embedded: &Catalog) -> BTreeMap<String, &Offer> {
    let mut shapes = BTreeMap::new();
    for o in azure_offers(embedded) {
        shapes
            .entry(o.instance_type.to_ascii_lowercase())
            .or_insert(o);
    }
    shapes
}

/// The first page's URL of the query for `sizes` in `region`. Spaces are sent as `%20`, which
/// every OData parser reads, rather than the form encoding's `+`.
fn query_url(endpoint: &str, region: &str, sizes: &[&str]) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let skus: Vec<String> = sizes
        .iter()
        .map(|s| format!("armSkuName eq {}", quote(s)))
        .collect();
    let filter = format!(
        "serviceName eq 'Virtual Machines' and priceType eq 'Consumption' and armRegionName eq {} and ({})",
        quote(&region.to_ascii_lowercase()),
        skus.join(" or ")
    );
    let encoded: String = url::form_urlencoded::byte_serialize(filter.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    format!("{endpoint}?api-version={API_VERSION}&$filter={encoded}")
}

/// Every item of a query, following `NextPageLink` to the end; also the pages read.
async fn read_all(
    http: &reqwest::Client,
    endpoint: &str,
    region: &str,
    first: String,
) -> Result<(Vec<Value>, usize), RefreshError> {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut next = Some(first);
    let mut seen = BTreeSet::new();
    while let Some(url) = next.take() {
        let fail = |code: &str, message: String| RefreshError {
            endpoint: endpoint.to_string(),
            region: region.to_string(),
            status: None,
            code: code.to_string(),
            message,
        };
        if pages >= MAX_PAGES || !seen.insert(url.clone()) {
            return Err(fail(
                "BadAnswer",
                format!("the API's NextPageLink did not end after {pages} pages (last {url})"),
            ));
        }
        let page = get_page(http, &url)
            .await
            .map_err(|(status, code, message)| RefreshError {
                status,
                ..fail(&code, message)
            })?;
        pages += 1;
        let Some(Value::Array(got)) = page.get("Items") else {
            return Err(fail(
                "BadAnswer",
                format!("an answer without an `Items` list from {url}"),
            ));
        };
        items.extend(got.iter().cloned());
        next = page
            .get("NextPageLink")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
    }
    Ok((items, pages))
}

/// One page as JSON, retrying throttling, server errors and connection failures; an error is
/// (status, code, message).
async fn get_page(
    http: &reqwest::Client,
    url: &str,
) -> Result<Value, (Option<u16>, String, String)> {
    let mut attempt = 1;
    loop {
        let last = attempt >= ATTEMPTS;
        let backoff = Duration::from_secs(u64::from(attempt));
        attempt += 1;
        let response = match http.get(url).send().await {
            Ok(r) => r,
            Err(e) if !last && (e.is_connect() || e.is_timeout()) => {
                tokio::time::sleep(backoff).await;
                continue;
            }
            Err(e) => return Err((None, "Unreachable".to_string(), chain(&e.without_url()))),
        };
        let status = response.status();
        if (status.as_u16() == 429 || status.is_server_error()) && !last {
            let wait = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(backoff, |s| Duration::from_secs(s.min(30)));
            tokio::time::sleep(wait).await;
            continue;
        }
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(_) if !last => {
                tokio::time::sleep(backoff).await;
                continue;
            }
            Err(e) => {
                return Err((
                    Some(status.as_u16()),
                    "Unreachable".to_string(),
                    format!("the answer broke off: {}", chain(&e.without_url())),
                ));
            }
        };
        let json = serde_json::from_slice::<Value>(&body);
        if !status.is_success() {
            let (code, message) = json.as_ref().ok().and_then(api_error).unwrap_or_else(|| {
                (
                    status
                        .canonical_reason()
                        .unwrap_or("Error")
                        .replace(' ', ""),
                    excerpt(&body),
                )
            });
            return Err((Some(status.as_u16()), code, message));
        }
        return json.map_err(|e| {
            (
                Some(status.as_u16()),
                "BadAnswer".to_string(),
                format!("the answer is not JSON ({e}): {}", excerpt(&body)),
            )
        });
    }
}

/// The code and message of an error body: `{"Error": {"Code", "Message"}}` as the Retail
/// Prices API writes it, or ARM's lower-case `{"error": {"code", "message"}}`.
fn api_error(body: &Value) -> Option<(String, String)> {
    let field = |v: &Value, name: &str| {
        v.as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let error = field(body, "error")?;
    let text = |name: &str| field(&error, name).and_then(|v| v.as_str().map(str::to_string));
    Some((
        text("code").unwrap_or_else(|| "Error".to_string()),
        text("message").unwrap_or_else(|| error.to_string()),
    ))
}

/// The start of a body that is not the error JSON expected, for the message.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(no body)".to_string()
    } else {
        text.chars().take(200).collect()
    }
}

/// An error and its causes in one line: reqwest's own text is only the outermost.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A Linux pay-as-you-go hourly price of one size, as read from one item.
#[derive(Debug, Clone, PartialEq)]
struct Price {
    /// `armSkuName`, as the API spells it.
    size: String,
    /// Spot (`skuName` ending " Spot") rather than on-demand.
    spot: bool,
    /// USD per hour.
    usd: f64,
    /// `isPrimaryMeterRegion` (absent reads as true).
    primary: bool,
    /// `effectiveStartDate`, RFC 3339: later prices replace earlier ones.
    since: String,
}

/// The price an item gives, or `None` for the meters flotilla does not buy: Windows,
/// reservations, Dev/Test, Low Priority, other currencies and units, and zero prices.
fn price_of(item: &Value) -> Option<Price> {
    let text = |name: &str| item.get(name).and_then(Value::as_str).unwrap_or("");
    if text("type") != "Consumption"
        || text("productName").contains("Windows")
        || !matches!(text("currencyCode"), "" | "USD")
        || !matches!(text("unitOfMeasure"), "" | "1 Hour")
    {
        return None;
    }
    let sku = text("skuName");
    let spot = sku.ends_with(" Spot");
    if sku.contains("Low Priority") || (!spot && sku.contains("Spot")) {
        return None;
    }
    let usd = item.get("retailPrice").and_then(Value::as_f64)?;
    let size = text("armSkuName");
    if size.is_empty() || !usd.is_finite() || usd <= 0.0 {
        return None;
    }
    Some(Price {
        size: size.to_string(),
        spot,
        usd,
        primary: item
            .get("isPrimaryMeterRegion")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        since: text("effectiveStartDate").to_string(),
    })
}

/// A region's offers from its items: one per (size, spot) with a price, the primary meter
/// and then the latest `effectiveStartDate` winning where the API lists several; and the
/// counts (pages left at 0 for the caller).
fn region_offers(
    region: &str,
    items: &[Value],
    shapes: &BTreeMap<String, &Offer>,
    embedded: &Catalog,
) -> (Vec<Offer>, RegionOffers) {
    let mut best: BTreeMap<(String, bool), Price> = BTreeMap::new();
    for price in items.iter().filter_map(price_of) {
        let key = (price.size.to_ascii_lowercase(), price.spot);
        let better = best.get(&key).is_none_or(|old| {
            (price.primary, &price.since, -price.usd) > (old.primary, &old.since, -old.usd)
        });
        if better {
            best.insert(key, price);
        }
    }
    let region = region.to_ascii_lowercase();
    let mut counts = RegionOffers {
        region: region.clone(),
        items: items.len(),
        ..RegionOffers::default()
    };
    let mut unknown = BTreeSet::new();
    let mut offers = Vec::new();
    for ((key, spot), price) in &best {
        let Some(shape) = shapes.get(key) else {
            unknown.insert(key.clone());
            continue;
        };
        if *spot {
            counts.spot += 1;
        } else {
            counts.on_demand += 1;
        }
        let mut o = (*shape).clone();
        o.region = region.clone();
        o.zone = String::new();
        o.spot = *spot;
        o.price_per_hour = price.usd;
        offers.push(o);
    }
    counts.offers = offers.len();
    counts.unknown_sizes = unknown.len();
    counts.unpriced = azure_offers(embedded)
        .filter(|o| o.region == region)
        .filter(|o| !best.contains_key(&(o.instance_type.to_ascii_lowercase(), o.spot)))
        .count();
    (offers, counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(sku: &str, product: &str, kind: &str, usd: f64) -> Value {
        json!({
            "currencyCode": "USD",
            "retailPrice": usd,
            "unitPrice": usd,
            "armRegionName": "eastus",
            "effectiveStartDate": "2024-01-01T00:00:00Z",
            "productName": product,
            "skuName": sku,
            "serviceName": "Virtual Machines",
            "unitOfMeasure": "1 Hour",
            "type": kind,
            "isPrimaryMeterRegion": true,
            "armSkuName": "Standard_NC24ads_A100_v4",
        })
    }

    const PRODUCT: &str = "Virtual Machines NCads A100 v4 Series";

    #[test]
    fn only_linux_consumption_meters_are_prices() {
        let on_demand = price_of(&item("NC24ads A100 v4", PRODUCT, "Consumption", 3.67));
        assert_eq!(on_demand.map(|p| (p.spot, p.usd)), Some((false, 3.67)));
        let spot = price_of(&item("NC24ads A100 v4 Spot", PRODUCT, "Consumption", 0.9));
        assert_eq!(spot.map(|p| (p.spot, p.usd)), Some((true, 0.9)));
        let windows = format!("{PRODUCT} Windows");
        for skipped in [
            item("NC24ads A100 v4", &windows, "Consumption", 4.0),
            item("NC24ads A100 v4 Spot", &windows, "Consumption", 1.0),
            item("NC24ads A100 v4 Low Priority", PRODUCT, "Consumption", 1.1),
            item("NC24ads A100 v4", PRODUCT, "Reservation", 20_000.0),
            item("NC24ads A100 v4", &windows, "DevTestConsumption", 3.0),
            item("NC24ads A100 v4", PRODUCT, "Consumption", 0.0),
        ] {
            assert_eq!(price_of(&skipped), None, "{skipped}");
        }
    }

    #[test]
    fn a_region_gets_the_snapshot_shape_and_the_newest_primary_price() {
        let embedded = Catalog::embedded();
        let shapes = shapes(&embedded);
        let mut old = item("NC24ads A100 v4", PRODUCT, "Consumption", 9.0);
        old["effectiveStartDate"] = json!("2023-01-01T00:00:00Z");
        let mut secondary = item("NC24ads A100 v4", PRODUCT, "Consumption", 1.0);
        secondary["isPrimaryMeterRegion"] = json!(false);
        let mut unknown = item("X", PRODUCT, "Consumption", 1.0);
        unknown["armSkuName"] = json!("Standard_Unknown_v9");
        let items = vec![
            old,
            item("NC24ads A100 v4", PRODUCT, "Consumption", 3.5),
            secondary,
            item("NC24ads A100 v4 Spot", PRODUCT, "Consumption", 0.75),
            unknown,
        ];
        let (offers, counts) = region_offers("EastUS", &items, &shapes, &embedded);
        assert_eq!(counts.items, 5);
        assert_eq!((counts.on_demand, counts.spot, counts.offers), (1, 1, 2));
        assert_eq!(counts.unknown_sizes, 1);
        let in_snapshot = azure_offers(&embedded)
            .filter(|o| o.region == "eastus")
            .count();
        assert!(in_snapshot > 2);
        assert_eq!(counts.unpriced, in_snapshot - 2);
        let shape = shapes["standard_nc24ads_a100_v4"];
        assert_eq!(offers.len(), 2);
        for o in &offers {
            assert_eq!(o.region, "eastus");
            assert_eq!(o.zone, "");
            assert_eq!(o.instance_type, "Standard_NC24ads_A100_v4");
            assert_eq!(
                (o.gpu_name.as_str(), o.gpu_count, o.vcpus, o.memory),
                (
                    shape.gpu_name.as_str(),
                    shape.gpu_count,
                    shape.vcpus,
                    shape.memory
                )
            );
        }
        let prices: Vec<(bool, f64)> = offers.iter().map(|o| (o.spot, o.price_per_hour)).collect();
        assert_eq!(prices, vec![(false, 3.5), (true, 0.75)]);
    }

    #[test]
    fn queries_filter_by_service_region_and_sizes_with_percent_encoded_spaces() {
        let url = query_url(
            "http://127.0.0.1:1/api/retail/prices",
            "EastUS",
            &["Standard_A", "O'Brien"],
        );
        assert_eq!(
            url,
            "http://127.0.0.1:1/api/retail/prices?api-version=2023-01-01-preview&$filter=\
             serviceName%20eq%20%27Virtual%20Machines%27%20and%20priceType%20eq%20%27Consumption%27\
             %20and%20armRegionName%20eq%20%27eastus%27%20and%20%28armSkuName%20eq%20%27Standard_A%27\
             %20or%20armSkuName%20eq%20%27O%27%27Brien%27%29"
        );
        assert_eq!(
            endpoint_of("https://prices.azure.com/"),
            "https://prices.azure.com/api/retail/prices"
        );
        assert_eq!(
            endpoint_of("http://127.0.0.1:9/api/retail/prices"),
            "http://127.0.0.1:9/api/retail/prices"
        );
    }

    #[test]
    fn both_error_body_shapes_are_read() {
        let prices = json!({"Error": {"Code": "BadRequest", "Message": "Invalid OData"}});
        assert_eq!(
            api_error(&prices),
            Some(("BadRequest".to_string(), "Invalid OData".to_string()))
        );
        let arm = json!({"error": {"code": "Throttled", "message": "slow down"}});
        assert_eq!(
            api_error(&arm),
            Some(("Throttled".to_string(), "slow down".to_string()))
        );
        assert_eq!(api_error(&json!({"Items": []})), None);
    }
}
