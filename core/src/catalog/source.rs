//! Where a catalog's offers came from, and the offers cache that `flotilla offers --refresh`
//! writes.
//!
//! A plan is only as good as its prices, so every plan says which catalog priced it and how old
//! that catalog is: the snapshot compiled into the binary, a cache of live prices refreshed
//! from a provider at some time, or a file the user named. [`CatalogSource`] is that
//! description as plain data; the planner copies it into the plan and the renderers print it.
//!
//! A cache file is an ordinary catalog CSV (so `--catalog` can read it too) whose first line is
//! a `#` comment carrying a JSON [`CacheHeader`]: which provider and regions it covers, when it
//! was fetched and from what. Keeping the header inside the one file means a single atomic
//! rename replaces offers and header together: they can never disagree. Cached offers replace
//! the embedded ones of the same provider and regions ([`merge_cache`]), so a refresh of two
//! AWS regions leaves every other region and provider priced by the snapshot.
//!
//! Nothing here reads a clock: ages are computed from a `now` the caller passes, so the planner
//! stays deterministic and the tests can pin time.

use super::csv_load::{self, CatalogError};
use super::{CSV_HEADER, Offer, ProviderKind};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// The date the embedded snapshot's prices were taken (`fixtures/catalog/README.md`).
pub const EMBEDDED_SNAPSHOT_DATE: &str = "2026-05-20";

/// What starts a cache file's first line, before the JSON header.
pub const CACHE_HEADER_PREFIX: &str = "# flotilla offers cache ";

/// Which kind of catalog priced a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The snapshot compiled into the binary.
    #[default]
    Embedded,
    /// The offers cache written by `flotilla offers --refresh`, merged over the snapshot.
    Cache,
    /// A catalog file named with `--catalog`.
    File,
}

impl SourceKind {
    /// `embedded`, `cache` or `file`.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Embedded => "embedded",
            SourceKind::Cache => "cache",
            SourceKind::File => "file",
        }
    }
}

/// Where a catalog came from and how old it is: what a plan reports about its prices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogSource {
    /// Snapshot, cache or file.
    pub kind: SourceKind,
    /// The cache or catalog file (several caches joined with `, `); `None` for the snapshot.
    pub path: Option<String>,
    /// When its prices were taken, RFC 3339 UTC (`2026-11-26T14:00:00Z`): the refresh time of
    /// a cache (the oldest, with several), the snapshot's date; `None` for a plain file.
    pub fetched_at: Option<String>,
    /// Seconds from `fetched_at` to when the catalog was loaded; `None` for the snapshot and a
    /// plain file, whose age does not depend on the clock of the machine that plans.
    pub age_seconds: Option<u64>,
    /// How many offers it holds.
    pub offers: usize,
    /// For a merge of several caches (one per provider), each cache with its own time and
    /// age, in provider order; empty otherwise (left out of JSON then).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caches: Vec<CacheAge>,
}

/// One cache of a merged catalog: its path, when it was fetched and its age.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheAge {
    /// The cache file.
    pub path: String,
    /// When it was fetched, RFC 3339 UTC.
    pub fetched_at: String,
    /// Seconds from `fetched_at` to when the catalog was loaded.
    pub age_seconds: u64,
}

/// The embedded snapshot with no offers counted: what a saved plan made before plans recorded
/// their catalog's source reads as (only the snapshot and `--catalog` files existed then).
impl Default for CatalogSource {
    fn default() -> Self {
        CatalogSource::embedded(0)
    }
}

impl CatalogSource {
    /// The embedded snapshot, holding `offers` offers.
    pub fn embedded(offers: usize) -> CatalogSource {
        CatalogSource {
            kind: SourceKind::Embedded,
            path: None,
            fetched_at: Some(format!("{EMBEDDED_SNAPSHOT_DATE}T00:00:00Z")),
            age_seconds: None,
            offers,
            caches: Vec::new(),
        }
    }

    /// A catalog file (`--catalog FILE`), holding `offers` offers.
    pub fn file(path: impl Into<String>, offers: usize) -> CatalogSource {
        CatalogSource {
            kind: SourceKind::File,
            path: Some(path.into()),
            fetched_at: None,
            age_seconds: None,
            offers,
            caches: Vec::new(),
        }
    }

    /// The catalog in a few words, without the offer count: `embedded snapshot of 2026-05-20`,
    /// `cache /home/me/.cache/flotilla/aws.csv, refreshed 3 hours ago`, `file offers.csv`;
    /// several caches each with its age: `caches …/aws.csv (refreshed 3 hours ago), …/gcp.csv
    /// (refreshed just now)`.
    pub fn label(&self) -> String {
        match self.kind {
            SourceKind::Embedded => format!("embedded snapshot of {EMBEDDED_SNAPSHOT_DATE}"),
            SourceKind::Cache if self.caches.len() > 1 => {
                let each: Vec<String> = self
                    .caches
                    .iter()
                    .map(|c| format!("{} (refreshed {})", c.path, age_text(c.age_seconds)))
                    .collect();
                format!("caches {}", each.join(", "))
            }
            SourceKind::Cache => {
                let path = self.path.as_deref().unwrap_or("?");
                match self.age_seconds {
                    Some(age) => format!("cache {path}, refreshed {}", age_text(age)),
                    None => format!("cache {path}"),
                }
            }
            SourceKind::File => format!("file {}", self.path.as_deref().unwrap_or("?")),
        }
    }

    /// The line plans print after `Catalog: `: [`label`](Self::label) and the offer count,
    /// `cache /home/me/.cache/flotilla/aws.csv, refreshed 3 hours ago (3478 offers)`.
    pub fn describe(&self) -> String {
        let noun = if self.offers == 1 { "offer" } else { "offers" };
        format!("{} ({} {noun})", self.label(), self.offers)
    }
}

/// An age for people: `just now`, `1 minute ago`, `3 hours ago`, `12 days ago`.
pub fn age_text(seconds: u64) -> String {
    let (n, unit) = match seconds {
        0..60 => return "just now".to_string(),
        60..3_600 => (seconds / 60, "minute"),
        3_600..86_400 => (seconds / 3_600, "hour"),
        _ => (seconds / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// What a cache file says about itself, on its first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheHeader {
    /// The provider whose offers it holds.
    pub provider: ProviderKind,
    /// The regions it covers: the embedded offers of these regions are replaced.
    pub regions: Vec<String>,
    /// When it was fetched, RFC 3339 UTC.
    pub fetched_at: String,
    /// What it was made from (APIs, endpoint, where on-demand prices came from).
    pub source: String,
}

impl CacheHeader {
    /// When it was fetched, as a time; an error names the cache file when it is not RFC 3339.
    pub fn fetched_time(&self, origin: &str) -> Result<SystemTime, CatalogError> {
        humantime::parse_rfc3339(&self.fetched_at).map_err(|e| CatalogError::Malformed {
            origin: origin.to_string(),
            line: 1,
            message: format!(
                "fetched_at `{}` is not an RFC 3339 time ({e}); run `flotilla offers --refresh` to rewrite the cache",
                self.fetched_at
            ),
        })
    }
}

/// `time` as RFC 3339 UTC to the second: `2026-11-26T14:00:00Z`.
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Whole seconds from `then` to `now`; 0 when `then` is in the future (a clock skew).
pub fn age_seconds(then: SystemTime, now: SystemTime) -> u64 {
    now.duration_since(then).unwrap_or(Duration::ZERO).as_secs()
}

/// A cache file's text: the header line, then [`CSV_HEADER`] and one row per offer.
pub fn cache_text(header: &CacheHeader, offers: &[Offer]) -> String {
    let json = serde_json::to_string(header).expect("a cache header serialises");
    let mut out = format!("{CACHE_HEADER_PREFIX}{json}\n{CSV_HEADER}\n");
    for o in offers {
        out.push_str(&csv_row(o));
        out.push('\n');
    }
    out
}

/// One offer as a catalog CSV row, the way [`csv_load`] reads it back.
pub fn csv_row(o: &Offer) -> String {
    // Instance types, regions, zones and GPU names never hold commas or quotes, but a cache
    // is read back strictly: quote anything that would break a row rather than trust that.
    let field = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let gib = |m: crate::spec::Memory| {
        if m.mib().is_multiple_of(1024) {
            (m.mib() / 1024).to_string()
        } else {
            m.gib().to_string()
        }
    };
    [
        o.provider.as_str().to_string(),
        field(&o.instance_type),
        field(&o.region),
        field(&o.zone),
        o.gpu_vendor
            .map_or(String::new(), |v| v.as_str().to_string()),
        field(&o.gpu_name),
        o.gpu_count.to_string(),
        gib(o.gpu_memory),
        o.vcpus.to_string(),
        gib(o.memory),
        o.spot.to_string(),
        o.price_per_hour.to_string(),
    ]
    .join(",")
}

/// Reads a cache file's text: its header and its offers. `origin` (the path) names it in
/// errors; a missing or unreadable header is an error, like a bad row.
pub fn read_cache(text: &str, origin: &str) -> Result<(CacheHeader, Vec<Offer>), CatalogError> {
    let malformed = |message: String| CatalogError::Malformed {
        origin: origin.to_string(),
        line: 1,
        message,
    };
    let first = text.lines().next().unwrap_or("");
    let json = first.strip_prefix(CACHE_HEADER_PREFIX).ok_or_else(|| {
        malformed(format!(
            "not a flotilla offers cache: the first line should start with `{}`; run `flotilla offers --refresh` to rewrite it",
            CACHE_HEADER_PREFIX.trim_end()
        ))
    })?;
    let header: CacheHeader = serde_json::from_str(json).map_err(|e| {
        malformed(format!(
            "unreadable cache header ({e}); run `flotilla offers --refresh` to rewrite it"
        ))
    })?;
    header.fetched_time(origin)?;
    let offers = csv_load::parse(text, origin)?;
    if let Some(stray) = offers
        .iter()
        .find(|o| o.provider != header.provider || !header.regions.contains(&o.region))
    {
        return Err(malformed(format!(
            "the header covers {} in {}, but the cache holds an offer of {} in {}; run `flotilla offers --refresh` to rewrite it",
            header.provider,
            header.regions.join(", "),
            stray.provider,
            stray.region
        )));
    }
    Ok((header, offers))
}

/// The embedded offers with each cache's provider and regions replaced by the cache's offers.
pub fn merge_cache(embedded: &[Offer], caches: &[(CacheHeader, Vec<Offer>)]) -> Vec<Offer> {
    let covered = |o: &Offer| {
        caches
            .iter()
            .any(|(h, _)| h.provider == o.provider && h.regions.contains(&o.region))
    };
    let mut offers: Vec<Offer> = embedded.iter().filter(|o| !covered(o)).cloned().collect();
    for (_, cached) in caches {
        offers.extend(cached.iter().cloned());
    }
    offers
}

/// The source of a catalog merged from `caches` (at `paths`) loaded at `now`: the oldest
/// cache's time and age, since the catalog is only as fresh as its stalest part.
pub fn cache_source(
    caches: &[(CacheHeader, Vec<Offer>)],
    paths: &[String],
    offers: usize,
    now: SystemTime,
) -> CatalogSource {
    let oldest = caches
        .iter()
        .filter_map(|(h, _)| Some((h.fetched_time("").ok()?, &h.fetched_at)))
        .min_by_key(|(t, _)| *t);
    let each = caches
        .iter()
        .zip(paths)
        .filter_map(|((h, _), path)| {
            Some(CacheAge {
                path: path.clone(),
                fetched_at: h.fetched_at.clone(),
                age_seconds: age_seconds(h.fetched_time("").ok()?, now),
            })
        })
        .collect::<Vec<_>>();
    CatalogSource {
        kind: SourceKind::Cache,
        path: Some(paths.join(", ")),
        fetched_at: oldest.map(|(_, s)| s.clone()),
        age_seconds: oldest.map(|(t, _)| age_seconds(t, now)),
        offers,
        caches: if each.len() > 1 { each } else { Vec::new() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn header(regions: &[&str]) -> CacheHeader {
        CacheHeader {
            provider: ProviderKind::Aws,
            regions: regions.iter().map(|r| r.to_string()).collect(),
            fetched_at: "2026-11-26T11:00:00Z".to_string(),
            source: "EC2 at http://127.0.0.1:5000".to_string(),
        }
    }

    fn aws_offers(region: &str) -> Vec<Offer> {
        Catalog::embedded()
            .offers()
            .iter()
            .filter(|o| o.provider == ProviderKind::Aws && o.region == region)
            .cloned()
            .collect()
    }

    #[test]
    fn ages_read_like_people_say_them() {
        assert_eq!(age_text(0), "just now");
        assert_eq!(age_text(59), "just now");
        assert_eq!(age_text(60), "1 minute ago");
        assert_eq!(age_text(3 * 3600 + 59), "3 hours ago");
        assert_eq!(age_text(86_400), "1 day ago");
        assert_eq!(age_text(40 * 86_400), "40 days ago");
    }

    #[test]
    fn a_cache_reads_back_exactly_what_was_written() {
        let mut offers = aws_offers("us-east-1");
        assert!(!offers.is_empty());
        // A zonal spot offer with a price that is not a round number.
        let mut spot = offers[0].clone();
        spot.zone = "us-east-1a".to_string();
        spot.spot = true;
        spot.price_per_hour = 0.00001;
        offers.push(spot);
        let h = header(&["us-east-1"]);
        let text = cache_text(&h, &offers);
        assert!(text.starts_with(CACHE_HEADER_PREFIX));
        let (read, back) = read_cache(&text, "aws.csv").expect("a cache reads back");
        assert_eq!(read, h);
        assert_eq!(back, offers);
        // `--catalog` reads a cache file too: the header is a comment.
        let catalog = Catalog::from_csv(&text, "aws.csv").expect("a cache is a catalog");
        assert_eq!(catalog.len(), offers.len());
    }

    #[test]
    fn a_bad_cache_is_an_error_naming_it_and_the_line() {
        let offers = aws_offers("us-east-1");
        let text = cache_text(&header(&["us-east-1"]), &offers);

        let no_header = text.lines().skip(1).collect::<Vec<_>>().join("\n");
        let e = read_cache(&no_header, "/c/aws.csv")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/c/aws.csv:1: not a flotilla offers cache"),
            "{e}"
        );

        let bad_time = text.replace("2026-11-26T11:00:00Z", "yesterday");
        let e = read_cache(&bad_time, "/c/aws.csv").unwrap_err().to_string();
        assert!(
            e.contains("fetched_at `yesterday` is not an RFC 3339 time"),
            "{e}"
        );

        let bad_row =
            format!("{text}aws,p5.48xlarge,us-east-1,,nvidia,H100,8,80,192,2048,maybe,1\n");
        let e = read_cache(&bad_row, "/c/aws.csv").unwrap_err().to_string();
        let line = offers.len() + 3;
        assert!(
            e.starts_with(&format!("/c/aws.csv:{line}: column `spot`")),
            "{e}"
        );

        let other_region = cache_text(&header(&["us-west-2"]), &offers);
        let e = read_cache(&other_region, "/c/aws.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds an offer of aws in us-east-1"), "{e}");
    }

    #[test]
    fn cached_offers_replace_only_their_provider_and_regions() {
        let embedded = Catalog::embedded();
        let mut cached = aws_offers("us-east-1");
        cached.truncate(1);
        cached[0].price_per_hour = 0.5;
        let merged = merge_cache(
            embedded.offers(),
            &[(header(&["us-east-1"]), cached.clone())],
        );
        let in_region: Vec<&Offer> = merged
            .iter()
            .filter(|o| o.provider == ProviderKind::Aws && o.region == "us-east-1")
            .collect();
        assert_eq!(in_region, vec![&cached[0]]);
        let untouched = |o: &&Offer| !(o.provider == ProviderKind::Aws && o.region == "us-east-1");
        assert_eq!(
            merged.iter().filter(untouched).count(),
            embedded.offers().iter().filter(untouched).count()
        );
    }

    #[test]
    fn sources_describe_themselves_with_their_age() {
        let embedded = Catalog::embedded();
        assert_eq!(
            embedded.source_info().describe(),
            format!(
                "embedded snapshot of 2026-05-20 ({} offers)",
                embedded.len()
            )
        );
        let now = humantime::parse_rfc3339("2026-11-26T14:00:00Z").expect("a time");
        let caches = [(header(&["us-east-1"]), Vec::new())];
        let paths = ["/home/me/.cache/flotilla/aws.csv".to_string()];
        let source = cache_source(&caches, &paths, 3478, now);
        assert_eq!(source.kind, SourceKind::Cache);
        assert_eq!(source.age_seconds, Some(3 * 3600));
        assert_eq!(source.fetched_at.as_deref(), Some("2026-11-26T11:00:00Z"));
        assert_eq!(
            source.describe(),
            "cache /home/me/.cache/flotilla/aws.csv, refreshed 3 hours ago (3478 offers)"
        );
        assert_eq!(
            CatalogSource::file("mine.csv", 1).describe(),
            "file mine.csv (1 offer)"
        );
    }

    #[test]
    fn several_caches_are_each_named_with_their_age() {
        let now = humantime::parse_rfc3339("2026-11-26T14:00:00Z").expect("a time");
        let mut gcp = header(&["us-central1"]);
        gcp.provider = ProviderKind::Gcp;
        gcp.fetched_at = "2026-11-26T13:59:30Z".to_string();
        let caches = [(header(&["us-east-1"]), Vec::new()), (gcp, Vec::new())];
        let paths = ["/c/aws.csv".to_string(), "/c/gcp.csv".to_string()];
        let source = cache_source(&caches, &paths, 10, now);
        assert_eq!(
            source.describe(),
            "caches /c/aws.csv (refreshed 3 hours ago), /c/gcp.csv (refreshed just now) (10 offers)"
        );
        // The oldest decides the catalog's own age.
        assert_eq!(source.age_seconds, Some(3 * 3600));
        assert_eq!(source.caches.len(), 2);
        assert_eq!(source.caches[1].age_seconds, 30);
        let json = serde_json::to_value(&source).expect("serialises");
        assert_eq!(json["caches"][1]["path"], "/c/gcp.csv");
        // One cache keeps the one-cache form, and JSON without `caches`.
        let one = cache_source(&caches[..1], &paths[..1], 10, now);
        assert!(serde_json::to_value(&one).expect("serialises")["caches"].is_null());
    }
}
