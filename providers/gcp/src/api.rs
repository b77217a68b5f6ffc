//! The Compute Engine clients and what every call shares: building the clients (Application
//! Default Credentials, or anonymous ones against an `endpoint`), turning SDK errors into
//! [`ProviderError`]s, waiting for long-running operations (the SDK returns `Ok` for a `DONE`
//! operation that failed, so its `error` is checked here), model <-> JSON, and the names and
//! labels flotilla gives its resources.
//!
//! Request bodies are built as JSON in the REST reference's own shape and converted into the
//! SDK's model types, and answers are read back as JSON: the bodies then read like the API
//! documentation (`../shared/api/gce.md`) instead of hundreds of generated setters.

use crate::GcpProvider;
use flotilla_core::provider::{FailureKind, Ownership, ProviderError};
use google_cloud_compute_v1::client;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// The label keys of the ownership tags (GCP label keys allow no `:`).
pub(crate) const LINEAGE_LABEL: &str = "flotilla-lineage";
/// See [`LINEAGE_LABEL`].
pub(crate) const ADDRESS_LABEL: &str = "flotilla-address";
/// Metadata key holding the exact address (labels cannot hold `.`, `[` or `]`).
pub(crate) const ADDRESS_META: &str = "flotilla-address";
/// Metadata key holding the fleet's tags exactly as written (labels are sanitised).
pub(crate) const TAGS_META: &str = "flotilla-tags";

/// One client per Compute service, made on first use and shared.
#[derive(Debug)]
pub(crate) struct Clients {
    pub(crate) instances: client::Instances,
    pub(crate) disks: client::Disks,
    pub(crate) addresses: client::Addresses,
    pub(crate) target_pools: client::TargetPools,
    pub(crate) forwarding_rules: client::ForwardingRules,
    pub(crate) resource_policies: client::ResourcePolicies,
    pub(crate) machine_types: client::MachineTypes,
    pub(crate) accelerator_types: client::AcceleratorTypes,
    pub(crate) zone_operations: client::ZoneOperations,
    pub(crate) region_operations: client::RegionOperations,
}

macro_rules! build {
    ($client:ty, $endpoint:expr) => {{
        let mut b = <$client>::builder();
        if let Some(endpoint) = $endpoint {
            b = b.with_endpoint(endpoint.clone()).with_credentials(
                google_cloud_auth::credentials::anonymous::Builder::new().build(),
            );
        }
        b.build().await.map_err(|e| {
            ProviderError::new(
                FailureKind::Other,
                "ClientSetup",
                format!("cannot make the Compute Engine client: {e}"),
            )
        })?
    }};
}

impl Clients {
    /// Clients for `endpoint` (anonymous credentials), or Google's with Application Default
    /// Credentials.
    pub(crate) async fn new(endpoint: Option<&String>) -> Result<Clients, ProviderError> {
        if endpoint.is_none() {
            adc_available().await?;
        }
        Ok(Clients {
            instances: build!(client::Instances, endpoint),
            disks: build!(client::Disks, endpoint),
            addresses: build!(client::Addresses, endpoint),
            target_pools: build!(client::TargetPools, endpoint),
            forwarding_rules: build!(client::ForwardingRules, endpoint),
            resource_policies: build!(client::ResourcePolicies, endpoint),
            machine_types: build!(client::MachineTypes, endpoint),
            accelerator_types: build!(client::AcceleratorTypes, endpoint),
            zone_operations: build!(client::ZoneOperations, endpoint),
            region_operations: build!(client::RegionOperations, endpoint),
        })
    }
}

/// Fails at once, with what to do, when Application Default Credentials cannot exist here: no
/// `GOOGLE_APPLICATION_CREDENTIALS`, no gcloud ADC file and no metadata server. Without this
/// check the client's token fetch retries the metadata server for about a minute and then
/// reports a "transient" error.
async fn adc_available() -> Result<(), ProviderError> {
    if std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").is_some()
        || std::env::var_os("GCE_METADATA_HOST").is_some()
    {
        return Ok(());
    }
    let config_dir = std::env::var_os("CLOUDSDK_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".config/gcloud"))
        });
    if config_dir.is_some_and(|d| d.join("application_default_credentials.json").is_file()) {
        return Ok(());
    }
    let metadata = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        tokio::net::TcpStream::connect("metadata.google.internal:80"),
    )
    .await;
    if matches!(metadata, Ok(Ok(_))) {
        return Ok(());
    }
    Err(ProviderError::new(
        FailureKind::Other,
        "NoCredentials",
        "no Google Application Default Credentials found (no GOOGLE_APPLICATION_CREDENTIALS, \
         no gcloud application-default login, no metadata server): run `gcloud auth \
         application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a service \
         account key file",
    ))
}

/// A failed call as a [`ProviderError`]. Compute is not known to send the JSON error's
/// `status`, so the HTTP status decides (409 already exists, 404 not found, 429 throttled);
/// the message keeps what the server said.
pub(crate) fn from_sdk(e: google_cloud_compute_v1::Error) -> ProviderError {
    let status = e.http_status_code();
    let message = e
        .status()
        .map(|s| s.message.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| e.to_string());
    let (kind, code) = match status {
        Some(404) => (FailureKind::NotFound, "notFound".to_string()),
        Some(409) => (FailureKind::Other, "alreadyExists".to_string()),
        Some(429) => (FailureKind::Throttled, "rateLimitExceeded".to_string()),
        Some(403) if message.contains("Rate Limit") || message.contains("rate limit") => {
            (FailureKind::Throttled, "rateLimitExceeded".to_string())
        }
        Some(403) if message.starts_with("Quota ") => {
            (FailureKind::Quota, "QUOTA_EXCEEDED".to_string())
        }
        Some(400) if message.contains("already being used") => (
            FailureKind::Other,
            "resourceInUseByAnotherResource".to_string(),
        ),
        Some(412) => (FailureKind::Other, "conditionNotMet".to_string()),
        Some(503) => (FailureKind::Throttled, "unavailable".to_string()),
        Some(s) => (FailureKind::Other, format!("HTTP {s}")),
        None => (FailureKind::Other, "Transport".to_string()),
    };
    ProviderError::new(kind, code, message)
}

/// Whether `e` is a 409 `alreadyExists`.
pub(crate) fn already_exists(e: &ProviderError) -> bool {
    e.code == "alreadyExists"
}

/// An error of kind Other.
pub(crate) fn other(code: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::new(FailureKind::Other, code, message)
}

/// The SDK model `T` from its REST JSON.
pub(crate) fn model<T: DeserializeOwned>(v: Value) -> Result<T, ProviderError> {
    serde_json::from_value(v).map_err(|e| {
        other(
            "InvalidRequest",
            format!("cannot build a request body: {e}"),
        )
    })
}

/// The REST JSON of an SDK model value.
pub(crate) fn json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Where an operation runs: zone or region.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope<'a> {
    Zone(&'a str),
    Region(&'a str),
}

/// Waits until the operation `op` (as the start call returned it) is `DONE`, polling its
/// zone or region with backoff, and fails with its `error` when it has one. Capacity errors
/// (`ZONE_RESOURCE_POOL_EXHAUSTED*`) are [`FailureKind::Capacity`] and quota (`QUOTA_EXCEEDED`)
/// is [`FailureKind::Quota`], with the cloud's code and message.
pub(crate) async fn wait(
    p: &GcpProvider,
    scope: Scope<'_>,
    op: google_cloud_compute_v1::model::Operation,
) -> Result<Value, ProviderError> {
    let clients = p.clients().await?;
    let mut op = json(&op);
    let name = op["name"].as_str().unwrap_or_default().to_string();
    let mut backoff = Backoff::new(p);
    while op["status"].as_str() != Some("DONE") {
        if !backoff.pause().await {
            return Err(other(
                "WaitTimeout",
                format!(
                    "gave up waiting for operation {name} after {} s",
                    p.options.wait_timeout.as_secs()
                ),
            ));
        }
        let got = match scope {
            Scope::Zone(zone) => clients
                .zone_operations
                .get()
                .set_project(&p.config.project)
                .set_zone(zone)
                .set_operation(&name)
                .send()
                .await
                .map(|o| json(&o)),
            Scope::Region(region) => clients
                .region_operations
                .get()
                .set_project(&p.config.project)
                .set_region(region)
                .set_operation(&name)
                .send()
                .await
                .map(|o| json(&o)),
        };
        match got.map_err(from_sdk) {
            Ok(v) => op = v,
            // A throttled or briefly unavailable poll only delays the next one.
            Err(e) if e.kind == FailureKind::Throttled => {}
            Err(e) => return Err(e),
        }
    }
    match op_error(&op) {
        Some(e) => Err(e),
        None => Ok(op),
    }
}

/// Every item of one paginated `aggregatedList` on the client `$client` whose scoped lists
/// are called `$collection`, as (scope, item) pairs (`zones/us-central1-a`, the instance),
/// all pages. `$filter` is an `Option<&str>`; further setters (`set_max_results(500_u32)`)
/// follow it. A macro because each client is its own type with the same builder methods.
macro_rules! aggregated {
    ($p:expr, $client:ident, $collection:literal, $filter:expr $(, $setter:ident($arg:expr))*) => {
        async {
            let clients = $p.clients().await?;
            let mut out: Vec<(String, serde_json::Value)> = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let mut req = clients
                    .$client
                    .aggregated_list()
                    .set_project($p.project())
                    $(.$setter($arg))*;
                if let Some(f) = $filter {
                    req = req.set_filter(f);
                }
                if let Some(t) = &token {
                    req = req.set_page_token(t);
                }
                let page =
                    $crate::api::json(&req.send().await.map_err($crate::api::from_sdk)?);
                for (scope, v) in page["items"].as_object().into_iter().flatten() {
                    for item in v[$collection].as_array().into_iter().flatten() {
                        out.push((scope.clone(), item.clone()));
                    }
                }
                token = $crate::instances::next_token(&page);
                if token.is_none() {
                    break Ok::<_, flotilla_core::provider::ProviderError>(out);
                }
            }
        }
    };
}
pub(crate) use aggregated;

/// The oldest of `items` (by creation time, then name) in a zone of `region` that `keep`
/// accepts: what a `find` adopts when an interrupted apply left more than one.
pub(crate) fn oldest_in_region(
    items: Vec<Value>,
    region: &str,
    keep: impl Fn(&Value) -> bool,
) -> Option<Value> {
    items
        .into_iter()
        .filter(|i| region_of(last(i["zone"].as_str().unwrap_or_default())) == region && keep(i))
        .min_by(|a, b| {
            (a["creationTimestamp"].as_str(), a["name"].as_str())
                .cmp(&(b["creationTimestamp"].as_str(), b["name"].as_str()))
        })
}

/// A `get`'s answer as JSON; `None` when Compute does not know the resource.
pub(crate) fn found<T: Serialize>(
    got: Result<T, google_cloud_compute_v1::Error>,
) -> Result<Option<Value>, ProviderError> {
    match got.map_err(from_sdk) {
        Ok(v) => Ok(Some(json(&v))),
        Err(e) if e.kind == FailureKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Finishes a delete that `started`: waits for its operation. Something already gone, when
/// the delete starts or by the time its operation ends, counts as deleted.
pub(crate) async fn deleted(
    p: &GcpProvider,
    scope: Scope<'_>,
    started: Result<google_cloud_compute_v1::model::Operation, ProviderError>,
) -> Result<(), ProviderError> {
    match started {
        Ok(op) => match wait(p, scope, op).await {
            Err(e) if e.kind != FailureKind::NotFound => Err(e),
            _ => Ok(()),
        },
        Err(e) if e.kind == FailureKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The failure a `DONE` operation reports, if any: `error`, `httpErrorStatusCode` or
/// `httpErrorMessage` (any of them makes it a failure, as the SDK's own `to_result` says).
pub(crate) fn op_error(op: &Value) -> Option<ProviderError> {
    let errors = op["error"]["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let status = op["httpErrorStatusCode"].as_i64();
    if errors.is_empty() && status.is_none() && op["httpErrorMessage"].is_null() {
        return None;
    }
    let first = errors.first().cloned().unwrap_or(Value::Null);
    let code = first["code"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("HTTP {}", status.unwrap_or(0)));
    let mut message = first["message"]
        .as_str()
        .or_else(|| op["httpErrorMessage"].as_str())
        .unwrap_or("the operation failed")
        .to_string();
    let kind = if code.starts_with("ZONE_RESOURCE_POOL_EXHAUSTED") {
        FailureKind::Capacity
    } else if code == "QUOTA_EXCEEDED" {
        FailureKind::Quota
    } else if status == Some(404) {
        FailureKind::NotFound
    } else {
        FailureKind::Other
    };
    if code == "QUOTA_EXCEEDED"
        && let Some(metric) = first["errorDetails"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|d| d["quotaInfo"]["metricName"].as_str())
        && !message.contains(metric)
    {
        message = format!("{message} (quota {metric})");
    }
    Some(ProviderError::new(kind, code, message))
}

/// A UUID-shaped `requestId` from a token and a discriminator (the zone): Compute wants a
/// UUID, and the same inputs always give the same one, so a retried call is deduplicated.
pub(crate) fn request_id(token: &str, salt: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("{token}/{salt}"));
    let mut b: Vec<u8> = h.iter().take(16).copied().collect();
    // RFC 4122 version 4 / variant bits, so strict parsers take it.
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A GCP label value: lowercase letters, digits, `_` and `-`, at most 63 characters; every
/// other character becomes `_`.
pub(crate) fn label_value(v: &str) -> String {
    v.chars()
        .flat_map(char::to_lowercase)
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect()
}

/// A GCP label key: a label value that starts with a lowercase letter and is not empty.
pub(crate) fn label_key(k: &str) -> String {
    let v = label_value(k);
    if v.starts_with(|c: char| c.is_ascii_lowercase()) {
        v
    } else {
        format!("t_{v}").chars().take(63).collect()
    }
}

/// The labels a resource of `owner` carries: the fleet's tags sanitised, then the ownership
/// labels (which win).
pub(crate) fn labels(
    owner: &Ownership,
    tags: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = tags
        .iter()
        .filter(|(k, _)| !k.starts_with("flotilla"))
        .map(|(k, v)| (label_key(k), label_value(v)))
        .collect();
    out.insert(LINEAGE_LABEL.to_string(), label_value(&owner.lineage));
    out.insert(ADDRESS_LABEL.to_string(), label_value(&owner.address));
    out
}

/// A label filter that selects `owner`'s resources (and perhaps others whose address
/// sanitises the same: callers check the exact address).
pub(crate) fn owner_filter(owner: &Ownership) -> String {
    format!(
        "(labels.{LINEAGE_LABEL} = \"{}\") (labels.{ADDRESS_LABEL} = \"{}\")",
        label_value(&owner.lineage),
        label_value(&owner.address)
    )
}

/// Whether a resource's labels say it is `owner`'s.
pub(crate) fn labelled_for(item: &Value, owner: &Ownership) -> bool {
    item["labels"][LINEAGE_LABEL].as_str() == Some(label_value(&owner.lineage).as_str())
        && item["labels"][ADDRESS_LABEL].as_str() == Some(label_value(&owner.address).as_str())
}

/// The name flotilla gives `owner`'s resource (`fl-<lineage>-<address>`, RFC 1035, at most 63
/// characters, with a hash of the exact address and generation so two addresses that
/// sanitise alike never collide).
pub(crate) fn resource_name(owner: &Ownership) -> String {
    use sha2::{Digest, Sha256};
    let lineage: String = owner
        .lineage
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    let h = Sha256::digest(format!("{}/{}", owner.address, owner.generation));
    let hash: String = h.iter().take(3).map(|b| format!("{b:02x}")).collect();
    let mut body = String::new();
    for c in owner.address.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if !(c == '-' && body.ends_with('-')) {
            body.push(c);
        }
    }
    let body = body.trim_matches('-');
    let room = 63 - "fl-".len() - lineage.len() - 2 - hash.len();
    let body: String = body.chars().take(room).collect();
    let body = body.trim_end_matches('-');
    format!("fl-{lineage}-{body}-{hash}")
}

/// A name made RFC 1035-safe (a placement group's, from the executor).
pub(crate) fn safe_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out = format!("p{out}").chars().take(63).collect();
    }
    out.trim_end_matches('-').to_string()
}

/// The value of metadata `key` of an instance.
pub(crate) fn metadata<'a>(item: &'a Value, key: &str) -> Option<&'a str> {
    item["metadata"]["items"]
        .as_array()?
        .iter()
        .find(|i| i["key"].as_str() == Some(key))
        .and_then(|i| i["value"].as_str())
}

/// The last segment of a resource URL.
pub(crate) fn last(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// The region of a zone (`us-central1-a` -> `us-central1`).
pub(crate) fn region_of(zone: &str) -> &str {
    zone.rsplit_once('-').map_or(zone, |(r, _)| r)
}

/// The rhythm of every wait in this crate (operations, instances, disks): a first pause of
/// `poll_interval` growing by half up to `max_poll_interval`, until `wait_timeout` is over.
pub(crate) struct Backoff {
    deadline: tokio::time::Instant,
    delay: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts the clock of one wait.
    pub(crate) fn new(p: &GcpProvider) -> Backoff {
        Backoff {
            deadline: tokio::time::Instant::now() + p.options.wait_timeout,
            delay: p.options.poll_interval,
            max: p.options.max_poll_interval,
        }
    }

    /// Pauses before the next poll; `false` (without pausing) once the wait timed out.
    pub(crate) async fn pause(&mut self) -> bool {
        if tokio::time::Instant::now() >= self.deadline {
            return false;
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 3 / 2).min(self.max);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(address: &str) -> Ownership {
        Ownership {
            lineage: "0f3a9c2e-1111-2222-3333-444455556666".into(),
            address: address.into(),
            generation: 0,
        }
    }

    #[test]
    fn labels_follow_gcp_rules() {
        assert_eq!(label_value("fleet.train[0]"), "fleet_train_0_");
        assert_eq!(label_key("Team"), "team");
        assert_eq!(label_key("9lives"), "t_9lives");
        assert_eq!(label_value(&"x".repeat(80)).len(), 63);
        let l = labels(
            &owner("fleet.a[1]"),
            &BTreeMap::from([("Cost Center".into(), "ML/Ops".into())]),
        );
        assert_eq!(l["cost_center"], "ml_ops");
        assert_eq!(l[ADDRESS_LABEL], "fleet_a_1_");
    }

    #[test]
    fn names_are_rfc1035_and_distinct() {
        let a = resource_name(&owner("fleet.train[0]"));
        let b = resource_name(&owner("fleet.train-0"));
        assert!(a.starts_with("fl-0f3a9c2e-fleet-train-0-"), "{a}");
        assert_ne!(a, b);
        let long = resource_name(&owner(&format!("fleet.{}[12]", "x".repeat(100))));
        assert!(long.len() <= 63, "{long}");
        let re_ok = |s: &str| {
            s.starts_with(|c: char| c.is_ascii_lowercase())
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !s.ends_with('-')
        };
        assert!(re_ok(&a) && re_ok(&long));
        assert_eq!(safe_name("flotilla-0F3A_x-train"), "flotilla-0f3a-x-train");
    }

    #[test]
    fn request_ids_are_uuids_and_stable() {
        let a = request_id("abc", "us-central1-a");
        assert_eq!(a, request_id("abc", "us-central1-a"));
        assert_ne!(a, request_id("abc", "us-central1-b"));
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4');
    }

    #[test]
    fn failed_operations_are_errors() {
        let op = serde_json::json!({"status": "DONE", "error": {"errors": [{"code": "ZONE_RESOURCE_POOL_EXHAUSTED", "message": "no room"}]}, "httpErrorStatusCode": 503});
        let e = op_error(&op).unwrap();
        assert_eq!(e.kind, FailureKind::Capacity);
        assert_eq!(e.code, "ZONE_RESOURCE_POOL_EXHAUSTED");
        let op = serde_json::json!({"status": "DONE", "error": {"errors": [{"code": "QUOTA_EXCEEDED", "message": "Quota 'GPUS' exceeded.", "errorDetails": [{"quotaInfo": {"metricName": "compute.googleapis.com/gpus"}}]}]}});
        let e = op_error(&op).unwrap();
        assert_eq!(e.kind, FailureKind::Quota);
        assert!(e.message.contains("compute.googleapis.com/gpus"));
        assert!(op_error(&serde_json::json!({"status": "DONE"})).is_none());
        assert!(
            op_error(&serde_json::json!({"status": "DONE", "httpErrorMessage": "x"})).is_some()
        );
    }
}
