//! `flotilla offers`: the offers that satisfy some resources, cheapest first.
//!
//! The same query a fleet's `resources` block makes, from flags, so a team can see what a fleet
//! would get (and what it would cost) before writing it down. Flags take the fleet files'
//! grammar, and their errors name the flag. A query that matches nothing is an answer, not a
//! failure: it exits 0 and says which constraint emptied the list.
//!
//! `--refresh` first fetches live offers into the offers cache, one file per provider: AWS
//! instance shapes and spot prices from EC2, GCP machine and accelerator types from Compute
//! Engine (priced from the Cloud Billing Catalog API, else the embedded snapshot), Azure
//! on-demand and Spot prices from the public Retail Prices API (shaped by the embedded
//! snapshot), for the regions of `--region` or of the fleet files here. `plan`, `apply` and
//! `offers` then merge every cache over the embedded snapshot (see [`cached_catalog`]). The
//! cache is replaced in one atomic rename only after every region answered, so a failed
//! refresh leaves the previous cache exactly as it was.

use crate::args::{OffersArgs, OffersFormat, SpotPolicyArg};
use anyhow::{Context as _, bail};
use comfy_table::{Attribute, Cell, CellAlignment, Color, ContentArrangement, Table};
use flotilla_core::catalog::{
    CacheHeader, Catalog, EMBEDDED_SNAPSHOT_DATE, Offer, ProviderKind, Query, SpotPolicy,
    cache_source, cache_text, format_price, merge_cache, read_cache, rfc3339,
};
use flotilla_core::spec::{self, Memory, SpecError};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

pub(crate) fn run(args: &OffersArgs, color: bool) -> anyhow::Result<ExitCode> {
    let query = build_query(args)?;
    if args.refresh {
        refresh(args)?;
    }
    let catalog = super::plan::load_catalog(args.catalog.as_deref())?;

    // The fleet files' bare-metal hosts here, on their probed facts, rank first.
    let hosts = super::hosts::offers_here();
    // One lazy pass: keep the first `limit` (the cheapest), count the rest.
    let mut shown: Vec<&Offer> = Vec::new();
    let mut total = 0usize;
    for offer in hosts
        .iter()
        .filter(|o| query.matches(o))
        .chain(catalog.query(&query))
    {
        if shown.len() < args.limit {
            shown.push(offer);
        }
        total += 1;
    }

    match args.format {
        OffersFormat::Json => {
            let rows: Vec<serde_json::Value> = shown.iter().map(|o| offer_json(o)).collect();
            let mut text = serde_json::to_string_pretty(&rows)?;
            text.push('\n');
            crate::printer::stdout(&text)?;
            if total == 0 {
                crate::printer::info(&format!(
                    "No offers match: {}.",
                    catalog.explain_empty(&query)
                ));
            }
        }
        OffersFormat::Text => {
            let text = if total == 0 {
                format!("No offers match: {}.\n", catalog.explain_empty(&query))
            } else {
                format!(
                    "{}\n{}\n",
                    table(&shown, color).trim_fmt(),
                    summary(&query, &catalog, shown.len(), total)
                )
            };
            crate::printer::stdout(&text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The query the flags describe; `Resources::default()` supplies cpu `2..` and memory `8GB..`
/// as in a fleet's `resources` block.
fn build_query(args: &OffersArgs) -> anyhow::Result<Query> {
    let mut query = Query {
        spot_policy: match args.spot_policy {
            SpotPolicyArg::Spot => SpotPolicy::Spot,
            SpotPolicyArg::OnDemand => SpotPolicy::OnDemand,
            SpotPolicyArg::Auto => SpotPolicy::Auto,
        },
        regions: args.regions.clone(),
        ..Query::default()
    };
    if let Some(s) = &args.gpu {
        query.resources.gpu = Some(flag("--gpu", s, spec::parse_gpu(s))?);
    }
    if let Some(s) = &args.cpu {
        query.resources.cpu = flag("--cpu", s, spec::parse_count(s))?;
    }
    if let Some(s) = &args.memory {
        query.resources.memory = flag("--memory", s, spec::parse_memory_range(s))?;
    }
    if let Some(max) = args.max_price {
        if !(max.is_finite() && max >= 0.0) {
            bail!(
                "--max-price {max}: expected a price in USD per node-hour, 0 or more, such as `40`"
            );
        }
        query.max_price = Some(max);
    }
    for p in &args.providers {
        let kind = ProviderKind::parse(&p.to_ascii_lowercase()).with_context(|| {
            let valid: Vec<&str> = ProviderKind::ALL.iter().map(|k| k.as_str()).collect();
            format!(
                "--provider \"{p}\": unknown provider; expected one of {}",
                valid.join(", ")
            )
        })?;
        if !query.providers.contains(&kind) {
            query.providers.push(kind);
        }
    }
    Ok(query)
}

/// A grammar error as the user should see it: the flag and its value, a caret under the
/// offending token, and the hint.
fn flag<T>(name: &str, value: &str, parsed: Result<T, SpecError>) -> anyhow::Result<T> {
    parsed.map_err(|e| {
        let mut msg = format!("{name} \"{value}\": {}", e.message);
        if !value.is_empty() {
            let pad = value.get(..e.offset).map_or(0, |s| s.chars().count());
            let width = value
                .get(e.offset..e.offset + e.len)
                .map_or(1, |s| s.chars().count().max(1));
            msg.push_str(&format!(
                "\n    {value}\n    {}{}",
                " ".repeat(pad),
                "^".repeat(width)
            ));
        }
        if let Some(hint) = &e.hint {
            msg.push_str(&format!("\nhint: {hint}"));
        }
        anyhow::anyhow!(msg)
    })
}

/// Memory for people: `80GB`, `2TB`, `7.5GB` (the grammar's own form when it is whole).
fn memory_text(m: Memory) -> String {
    if m.mib().is_multiple_of(1024) || m.mib() < 1024 {
        m.to_string()
    } else {
        let gib = format!("{:.2}", m.gib());
        format!("{}GB", gib.trim_end_matches('0').trim_end_matches('.'))
    }
}

fn table(offers: &[&Offer], color: bool) -> Table {
    let mut table = Table::new();
    table
        // No borders and no lines between rows: only a rule under the header, like `kubectl get`.
        .load_preset("     ──            ")
        // Never wrap to the terminal's width: the same query prints the same table everywhere.
        .set_content_arrangement(ContentArrangement::Disabled);
    if color {
        table.enforce_styling();
    } else {
        table.force_no_tty();
    }
    let header = [
        "provider",
        "region",
        "instance type",
        "GPUs",
        "vCPUs",
        "memory",
        "spot",
        "$/h",
    ];
    table.set_header(header.iter().map(|h| {
        let cell = Cell::new(h);
        if color {
            cell.add_attribute(Attribute::Bold)
        } else {
            cell
        }
    }));
    for o in offers {
        let gpus = if o.gpu_count == 0 {
            "-".to_string()
        } else {
            o.gpu_label()
        };
        let price = Cell::new(format_price(o.price_per_hour));
        table.add_row(vec![
            Cell::new(o.provider.as_str()),
            Cell::new(&o.region),
            Cell::new(&o.instance_type),
            Cell::new(gpus),
            Cell::new(o.vcpus),
            Cell::new(memory_text(o.memory)),
            Cell::new(if o.spot { "yes" } else { "no" }),
            if color { price.fg(Color::Green) } else { price },
        ]);
    }
    // Flush left: no padding before the first column.
    if let Some(c) = table.column_mut(0) {
        c.set_padding((0, 1));
    }
    for col in [4, 5, 7] {
        if let Some(c) = table.column_mut(col) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}

/// `Showing 20 of 48 offers matching gpu H100:8, on-demand (catalog: embedded snapshot, 3478
/// offers).`
fn summary(query: &Query, catalog: &Catalog, shown: usize, total: usize) -> String {
    let noun = if total == 1 { "offer" } else { "offers" };
    let mut s = format!(
        "Showing {shown} of {total} {noun} matching {} (catalog: {}, {} offers).",
        query.describe(),
        catalog.source(),
        catalog.len()
    );
    if shown < total {
        s.push_str(" Use --limit to see more.");
    }
    s
}

/// A number of GiB, whole when it is (`80`, not `80.0`).
fn gib_json(m: Memory) -> serde_json::Value {
    if m.mib().is_multiple_of(1024) {
        (m.mib() / 1024).into()
    } else {
        m.gib().into()
    }
}

/// One offer with exactly the documented keys, in this order.
fn offer_json(o: &Offer) -> serde_json::Value {
    serde_json::json!({
        "provider": o.provider.as_str(),
        "region": o.region,
        "zone": o.zone,
        "instance_type": o.instance_type,
        "gpu_vendor": o.gpu_vendor.map(|v| v.as_str()),
        "gpu_name": o.gpu_name,
        "gpu_count": o.gpu_count,
        "gpu_memory_gib": gib_json(o.gpu_memory),
        "vcpus": o.vcpus,
        "memory_gib": gib_json(o.memory),
        "spot": o.spot,
        "price_per_hour": o.price_per_hour,
    })
}

/// `$XDG_CACHE_HOME/flotilla`, else `$HOME/.cache/flotilla`; `None` when neither is set.
pub(crate) fn cache_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    // The XDG spec ignores a relative XDG_CACHE_HOME.
    if let Some(xdg) = var("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Some(xdg.join("flotilla"));
    }
    var("HOME").map(|home| home.join(".cache").join("flotilla"))
}

/// The cache file of one provider's offers: `DIR/aws.csv`.
fn cache_file(dir: &Path, provider: ProviderKind) -> PathBuf {
    dir.join(format!("{provider}.csv"))
}

/// The embedded snapshot with the offers cache merged over it, described as the cache and its
/// age; the snapshot alone when there is no cache. A cache that cannot be read is an error
/// naming it: pricing a plan with half a cache, or silently without it, would change which
/// offers the plan picks without anyone noticing.
pub(crate) fn cached_catalog() -> anyhow::Result<Catalog> {
    let embedded = Catalog::embedded();
    let Some(dir) = cache_dir() else {
        return Ok(embedded);
    };
    let mut caches = Vec::new();
    let mut paths = Vec::new();
    for provider in ProviderKind::ALL {
        let path = cache_file(&dir, provider);
        let text = match fs_err::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(unusable_cache(&path, e.into())),
        };
        let origin = path.display().to_string();
        let (header, offers) =
            read_cache(&text, &origin).map_err(|e| unusable_cache(&path, e.into()))?;
        if header.provider != provider {
            return Err(unusable_cache(
                &path,
                anyhow::anyhow!("it holds {} offers, not {provider}", header.provider),
            ));
        }
        caches.push((header, offers));
        paths.push(origin);
    }
    if caches.is_empty() {
        return Ok(embedded);
    }
    let offers = merge_cache(embedded.offers(), &caches);
    let info = cache_source(&caches, &paths, offers.len(), SystemTime::now());
    Ok(Catalog::from_offers(offers, info.label()).with_source_info(info))
}

fn unusable_cache(path: &Path, cause: anyhow::Error) -> anyhow::Error {
    cause.context(format!(
        "the offers cache `{}` cannot be used; run `flotilla offers --refresh` to rebuild it, \
         or delete it to price with the embedded snapshot",
        path.display()
    ))
}

/// `--refresh`: fetch live offers from each provider asked for (`--provider`, else those the
/// fleet files here declare, else AWS) for the regions asked for, and replace each one's cache.
/// Each provider's cache is written only after all of its regions answered.
fn refresh(args: &OffersArgs) -> anyhow::Result<()> {
    let config = fleet_config_here(args)?;
    let kinds = refresh_kinds(args, config.as_ref())?;
    let Some(dir) = cache_dir() else {
        bail!(
            "--refresh: no cache directory; set XDG_CACHE_HOME or HOME to where the offers \
             cache may be written"
        );
    };
    for kind in kinds {
        match kind {
            ProviderKind::Aws => refresh_aws(args, config.as_ref(), &dir)?,
            ProviderKind::Gcp => refresh_gcp(args, config.as_ref(), &dir)?,
            ProviderKind::Azure => refresh_azure(args, config.as_ref(), &dir)?,
            // `refresh_kinds` lets only the three clouds through.
            other => bail!("--refresh cannot fetch live offers from {other}"),
        }
    }
    Ok(())
}

/// The providers `--refresh` fetches: `--provider`s (the clouds only), else the clouds the fleet
/// files here declare, else AWS.
fn refresh_kinds(
    args: &OffersArgs,
    config: Option<&flotilla_core::config::Config>,
) -> anyhow::Result<Vec<ProviderKind>> {
    let mut kinds = Vec::new();
    for p in &args.providers {
        let kind = ProviderKind::parse(&p.to_ascii_lowercase());
        match kind {
            Some(k @ (ProviderKind::Aws | ProviderKind::Gcp | ProviderKind::Azure)) => {
                if !kinds.contains(&k) {
                    kinds.push(k);
                }
            }
            // An unknown name was already refused by `build_query`.
            _ => bail!(
                "--refresh fetches live offers from AWS, GCP and Azure only (bare-metal hosts \
                 are priced by their `price`); pass --provider aws, gcp or azure, or leave out \
                 --provider"
            ),
        }
    }
    if kinds.is_empty()
        && let Some(c) = config
    {
        if c.providers.aws.is_some() {
            kinds.push(ProviderKind::Aws);
        }
        if c.providers.gcp.is_some() {
            kinds.push(ProviderKind::Gcp);
        }
        if c.providers.azure.is_some() {
            kinds.push(ProviderKind::Azure);
        }
    }
    if kinds.is_empty() {
        kinds.push(ProviderKind::Aws);
    }
    Ok(kinds)
}

/// The fleet files in this directory, if there are any and they load. With `--region` they are
/// only a source of settings (profile, project, endpoint): a mistake in them is a warning then,
/// not a reason to refuse the refresh.
fn fleet_config_here(args: &OffersArgs) -> anyhow::Result<Option<flotilla_core::config::Config>> {
    let has_fleet_files = fs_err::read_dir(".")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|e| e.path().extension().is_some_and(|x| x == "hcl"))
        })
        .unwrap_or(false);
    if !has_fleet_files {
        return Ok(None);
    }
    let config_args = crate::args::ConfigArgs {
        dir: PathBuf::from("."),
        files: Vec::new(),
        vars: Vec::new(),
        var_files: Vec::new(),
    };
    match super::plan::load_config(&config_args) {
        Ok(config) => Ok(Some(config)),
        Err(e) if !args.regions.is_empty() => {
            crate::printer::info(&format!(
                "warning: ignoring the fleet files here, which do not load ({e}); run \
                 `flotilla validate` to see why"
            ));
            Ok(None)
        }
        Err(e) => {
            Err(e.context("--refresh reads the regions to refresh from the fleet files here"))
        }
    }
}

/// `--region`s (each once), else `declared`; an error naming the provider block when neither
/// has any.
fn refresh_regions(
    args: &OffersArgs,
    declared: Option<&Vec<String>>,
    kind: ProviderKind,
) -> anyhow::Result<Vec<String>> {
    if !args.regions.is_empty() {
        let mut seen = std::collections::HashSet::new();
        let mut regions = args.regions.clone();
        regions.retain(|r| seen.insert(r.clone()));
        return Ok(regions);
    }
    match declared {
        Some(regions) if !regions.is_empty() => Ok(regions.clone()),
        _ => bail!(
            "--refresh: which {} regions? Pass --region R (repeatable), or run it in a \
             directory whose fleet files declare provider \"{kind}\" {{ regions = [...] }}",
            kind.as_str().to_ascii_uppercase()
        ),
    }
}

/// Writes one provider's refreshed offers as its cache (header and rows, atomically) and says
/// so. The one place both providers' refreshes end, so their caches look alike.
fn store_refresh(
    dir: &Path,
    kind: ProviderKind,
    regions: &[String],
    fetched_at: SystemTime,
    source: String,
    offers: &[Offer],
    counted: &str,
) -> anyhow::Result<()> {
    let path = cache_file(dir, kind);
    let header = CacheHeader {
        provider: kind,
        regions: regions.to_vec(),
        fetched_at: rfc3339(fetched_at),
        source,
    };
    write_atomically(dir, &path, &cache_text(&header, offers))?;
    crate::printer::info(&format!(
        "Refreshed {counted} in {}: wrote {} to {}.",
        plural(regions.len(), "region", "regions"),
        plural(offers.len(), "offer", "offers"),
        path.display()
    ));
    Ok(())
}

/// `--refresh` for AWS: instance types and spot prices from EC2.
fn refresh_aws(
    args: &OffersArgs,
    config: Option<&flotilla_core::config::Config>,
    dir: &Path,
) -> anyhow::Result<()> {
    let aws = config
        .and_then(|c| c.providers.aws.clone())
        .unwrap_or_default();
    let regions = refresh_regions(args, Some(&aws.regions), ProviderKind::Aws)?;
    let provider = flotilla_provider_aws::AwsProvider::new(&aws)?;
    let embedded = Catalog::embedded();
    crate::printer::info(&format!(
        "Refreshing AWS offers in {}: instance types and spot prices from EC2; on-demand \
         prices from the embedded snapshot of {EMBEDDED_SNAPSHOT_DATE} (the AWS Price List \
         API is not queried).",
        plural(regions.len(), "region", "regions")
    ));
    let fetched_at = SystemTime::now();
    let fetched = super::plan::runtime()?
        .block_on(flotilla_provider_aws::fetch_offers(
            &provider,
            &regions,
            &embedded,
            |r| crate::printer::info(&region_line(r)),
        ))
        .map_err(|e| {
            anyhow::anyhow!(
                "{e}\nhint: check the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, the \
                 provider block's `profile`) and that region {} exists and is enabled for the \
                 account; the offers cache was left as it was",
                e.region
            )
        })?;

    let endpoint = aws.endpoint.clone().or_else(|| {
        std::env::var("AWS_ENDPOINT_URL")
            .ok()
            .filter(|e| !e.is_empty())
    });
    let types: usize = fetched.regions.iter().map(|r| r.instance_types).sum();
    let spot: usize = fetched.regions.iter().map(|r| r.spot_prices).sum();
    store_refresh(
        dir,
        ProviderKind::Aws,
        &regions,
        fetched_at,
        format!(
            "EC2 DescribeInstanceTypes and DescribeSpotPriceHistory{}; on-demand prices from \
             the embedded snapshot of {EMBEDDED_SNAPSHOT_DATE}",
            endpoint.map(|e| format!(" at {e}")).unwrap_or_default()
        ),
        &fetched.offers,
        &format!(
            "{} and {}",
            plural(types, "instance type", "instance types"),
            plural(spot, "spot price", "spot prices")
        ),
    )
}

/// `--refresh` for GCP: machine and accelerator types of the regions' zones from Compute;
/// prices from the Cloud Billing Catalog API, else the embedded snapshot (said in the output
/// and the cache header, with why).
fn refresh_gcp(
    args: &OffersArgs,
    config: Option<&flotilla_core::config::Config>,
    dir: &Path,
) -> anyhow::Result<()> {
    let Some(gcp) = config.and_then(|c| c.providers.gcp.clone()) else {
        bail!(
            "--refresh for GCP needs the project: run it in a directory whose fleet files \
             declare provider \"gcp\" {{ project = \"...\" }}"
        );
    };
    let regions = refresh_regions(args, Some(&gcp.regions), ProviderKind::Gcp)?;
    let provider = flotilla_provider_gcp::GcpProvider::new(&gcp)
        .map_err(|e| anyhow::anyhow!("provider \"gcp\": {e}"))?;
    let embedded = Catalog::embedded();
    crate::printer::info(&format!(
        "Refreshing GCP offers in {}: machine and accelerator types from Compute Engine; \
         prices from {} of {EMBEDDED_SNAPSHOT_DATE}.",
        plural(regions.len(), "region", "regions"),
        flotilla_provider_gcp::PRICE_SOURCE
    ));
    let fetched_at = SystemTime::now();
    let fetched = super::plan::runtime()?
        .block_on(flotilla_provider_gcp::fetch_offers(
            &provider,
            &regions,
            &embedded,
            |p| match p {
                flotilla_provider_gcp::Progress::Prices(prices) => {
                    crate::printer::info(&format!("  prices: {prices}"));
                }
                flotilla_provider_gcp::Progress::Region(r) => {
                    crate::printer::info(&gcp_region_line(r));
                }
            },
        ))
        .map_err(|e| {
            anyhow::anyhow!(
                "{e}\nhint: check the Google credentials (Application Default Credentials: \
                 `gcloud auth application-default login` or GOOGLE_APPLICATION_CREDENTIALS), \
                 the provider block's `project` and `endpoint` (or {}); the offers cache was \
                 left as it was",
                flotilla_provider_gcp::ENDPOINT_ENV
            )
        })?;
    let endpoint = gcp.endpoint.clone().or_else(|| {
        std::env::var(flotilla_provider_gcp::ENDPOINT_ENV)
            .ok()
            .filter(|e| !e.is_empty())
    });
    let types: usize = fetched.regions.iter().map(|r| r.machine_types).sum();
    let prices = match &fetched.prices {
        flotilla_provider_gcp::PriceSource::Billing { skus, endpoint } => {
            let kept: usize = fetched.regions.iter().map(|r| r.snapshot_priced).sum();
            format!(
                "prices from the Cloud Billing Catalog API at {endpoint} ({}{})",
                plural(*skus, "SKU", "SKUs"),
                if kept > 0 {
                    format!(
                        "; {} without SKUs at the embedded snapshot's prices of \
                         {EMBEDDED_SNAPSHOT_DATE}",
                        plural(kept, "offer", "offers")
                    )
                } else {
                    String::new()
                }
            )
        }
        flotilla_provider_gcp::PriceSource::Snapshot { why } => format!(
            "prices from the embedded snapshot of {EMBEDDED_SNAPSHOT_DATE} (Cloud Billing \
             Catalog API: {why})"
        ),
    };
    store_refresh(
        dir,
        ProviderKind::Gcp,
        &regions,
        fetched_at,
        format!(
            "Compute Engine machineTypes and acceleratorTypes of project {}{}; {prices}",
            gcp.project,
            endpoint.map(|e| format!(" at {e}")).unwrap_or_default(),
        ),
        &fetched.offers,
        &plural(types, "machine type", "machine types"),
    )
}

/// `  us-central1: 3 zones, 40 machine types, 5 accelerator types, 52 offers (4 of the
/// snapshot offered in no zone now: left out; 2 without SKUs: snapshot prices)`.
fn gcp_region_line(r: &flotilla_provider_gcp::RegionOffers) -> String {
    let mut line = format!(
        "  {}: {}, {}, {}, {}",
        r.region,
        plural(r.zones, "zone", "zones"),
        plural(r.machine_types, "machine type", "machine types"),
        plural(r.accelerator_types, "accelerator type", "accelerator types"),
        plural(r.offers, "offer", "offers"),
    );
    let mut notes = Vec::new();
    if r.unavailable > 0 {
        notes.push(format!(
            "{} of the snapshot offered in no zone now: left out",
            plural(r.unavailable, "offer", "offers")
        ));
    }
    // Only worth saying when some offers did get SKU prices: otherwise the prices line
    // already says that every offer keeps the snapshot's.
    if r.billing_priced > 0 && r.snapshot_priced > 0 {
        notes.push(format!(
            "{} without SKUs: snapshot prices",
            plural(r.snapshot_priced, "offer", "offers")
        ));
    }
    if !notes.is_empty() {
        line.push_str(&format!(" ({})", notes.join("; ")));
    }
    line
}

/// `  us-east-1: 57 GPU instance types, 342 spot prices, 40 on-demand prices (17 types
/// without one: spot only)`.
fn region_line(r: &flotilla_provider_aws::RegionOffers) -> String {
    let mut line = format!(
        "  {}: {}, {}, {}",
        r.region,
        plural(r.instance_types, "GPU instance type", "GPU instance types"),
        plural(r.spot_prices, "spot price", "spot prices"),
        plural(r.on_demand, "on-demand price", "on-demand prices"),
    );
    if r.without_on_demand > 0 {
        line.push_str(&format!(
            " ({} not in the snapshot here: spot only)",
            plural(r.without_on_demand, "type", "types")
        ));
    }
    line
}

/// `--refresh` for Azure: Linux on-demand and Spot prices from the public Retail Prices API
/// (no credentials), shaped by the embedded snapshot's rows of each size. Regions: `--region`,
/// else the provider block's, else every region of the snapshot's Azure offers.
fn refresh_azure(
    args: &OffersArgs,
    config: Option<&flotilla_core::config::Config>,
    dir: &Path,
) -> anyhow::Result<()> {
    let embedded = Catalog::embedded();
    let declared = config
        .and_then(|c| c.providers.azure.as_ref())
        .map(|a| a.regions.clone())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| flotilla_provider_azure::snapshot_regions(&embedded));
    // The API's `armRegionName`s, like the catalog's regions, are lower case.
    let mut regions = refresh_regions(args, Some(&declared), ProviderKind::Azure)?;
    for r in &mut regions {
        *r = r.to_ascii_lowercase();
    }
    let mut seen = std::collections::HashSet::new();
    regions.retain(|r| seen.insert(r.clone()));
    let url = flotilla_provider_azure::prices_url();
    crate::printer::info(&format!(
        "Refreshing Azure offers in {}: Linux on-demand and Spot prices from the Azure Retail \
         Prices API at {url}; GPUs, vCPUs and memory from the embedded snapshot of \
         {EMBEDDED_SNAPSHOT_DATE}.",
        plural(regions.len(), "region", "regions"),
    ));
    let fetched_at = SystemTime::now();
    let fetched = super::plan::runtime()?
        .block_on(flotilla_provider_azure::fetch_offers(
            &url,
            &regions,
            &embedded,
            |r| crate::printer::info(&azure_region_line(r)),
        ))
        .map_err(|e| {
            anyhow::anyhow!(
                "{e}\nhint: the Retail Prices API needs no credentials; check that {url} can be \
                 reached (or point {} at another one) and that region {} exists (an Azure \
                 location such as `eastus`); the offers cache was left as it was",
                flotilla_provider_azure::PRICES_URL_ENV,
                e.region
            )
        })?;
    let unknown = fetched.unknown_sizes();
    if unknown > 0 {
        crate::printer::info(&format!(
            "  skipped the prices of {} the embedded snapshot does not know (no GPUs, vCPUs or \
             memory for them)",
            plural(unknown, "size", "sizes")
        ));
    }
    store_refresh(
        dir,
        ProviderKind::Azure,
        &regions,
        fetched_at,
        format!(
            "Azure Retail Prices API at {url} (Linux on-demand and Spot consumption prices); \
             GPUs, vCPUs and memory from the embedded snapshot of {EMBEDDED_SNAPSHOT_DATE}"
        ),
        &fetched.offers,
        &format!(
            "prices from the Azure Retail Prices API ({} in {})",
            plural(fetched.items(), "item", "items"),
            plural(fetched.pages(), "page", "pages")
        ),
    )
}

/// `  eastus: 96 price items in 3 pages, 24 on-demand prices and 24 Spot prices, 48 offers
/// (2 of the snapshot without a price now: left out)`.
fn azure_region_line(r: &flotilla_provider_azure::RegionOffers) -> String {
    let mut line = format!(
        "  {}: {} in {}, {} and {}, {}",
        r.region,
        plural(r.items, "price item", "price items"),
        plural(r.pages, "page", "pages"),
        plural(r.on_demand, "on-demand price", "on-demand prices"),
        plural(r.spot, "Spot price", "Spot prices"),
        plural(r.offers, "offer", "offers"),
    );
    let mut notes = Vec::new();
    if r.unpriced > 0 {
        notes.push(format!(
            "{} of the snapshot without a price now: left out",
            plural(r.unpriced, "offer", "offers")
        ));
    }
    if r.unknown_sizes > 0 {
        notes.push(format!(
            "{} unknown to the snapshot: skipped",
            plural(r.unknown_sizes, "size", "sizes")
        ));
    }
    if r.items == 0 {
        notes.push("no prices at all: is the region's name right?".to_string());
    }
    if !notes.is_empty() {
        line.push_str(&format!(" ({})", notes.join("; ")));
    }
    line
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Writes `text` to `path` through a temporary file in `dir` and a rename, so a reader sees the
/// old cache or the new one, never half of either.
fn write_atomically(dir: &Path, path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    fs_err::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write the offers cache in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write the offers cache in {}", dir.display()))?;
    tmp.persist(path)
        .with_context(|| format!("cannot replace the offers cache {}", path.display()))?;
    Ok(())
}
