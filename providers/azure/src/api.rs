//! The Resource Manager clients and what every call shares: building the clients (the default
//! credential chain, or a static bearer token against an `endpoint`), sending a request and
//! reading its answer, waiting for long-running operations, turning ARM errors into
//! [`ProviderError`]s, and the names and tags flotilla gives its resources.
//!
//! Requests go through the generated clients' `.send()`; their own long-running wait
//! (`.await`) is never used: for compute PUTs it re-sends the PUT, treats any 200 as done,
//! ignores `provisioningState` and the `Azure-AsyncOperation` header, and sleeps 30 s
//! (`../shared/api/arm.md` §0). So [`wait`] polls the absolute `Azure-AsyncOperation` (or
//! `Location`) URL itself, honouring `Retry-After`, and a `Failed` operation keeps ARM's own
//! error code and message, which decide failover ([`error`]).
//!
//! Request bodies are built as JSON in the REST reference's shape and converted into the
//! generated model types ([`model`]); answers are read back as JSON. The bodies then read like
//! the API documentation instead of hundreds of `Option` fields.

use crate::AzureProvider;
use azure_core::auth::{AccessToken, Secret, TokenCredential};
use flotilla_core::provider::{FailureKind, Ownership, ProviderError};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The tag key holding the state lineage (ARM tag names allow no `:`).
pub(crate) const LINEAGE_TAG: &str = "flotilla-lineage";
/// The tag key holding the resource's address.
pub(crate) const ADDRESS_TAG: &str = "flotilla-address";

/// The api-version of resource-group calls, which no generated client here makes.
pub(crate) const GROUPS_API: &str = "2021-04-01";

/// ARM's longest resource name this crate makes (VM names allow 64; NICs, disks and VNets
/// 80): one limit keeps every derived name valid.
const MAX_NAME: usize = 64;

/// Capacity failures: the offer cannot be had here now, the next one may.
const CAPACITY_CODES: [&str; 5] = [
    "AllocationFailed",
    "ZonalAllocationFailed",
    "OverconstrainedAllocationRequest",
    "OverconstrainedZonalAllocationRequest",
    "SkuNotAvailable",
];

/// The clients and what a raw call needs, made on first use and shared by every operation
/// of the provider (and by `gateways.rs`, `refresh.rs` and the catalog).
pub(crate) struct Clients {
    /// `Microsoft.Compute`: VMs, disks, proximity placement groups.
    pub(crate) compute: azure_mgmt_compute::Client,
    /// `Microsoft.Network`: virtual networks, NICs, public IPs, load balancers.
    pub(crate) network: azure_mgmt_network::Client,
    /// For what the generated clients have no call for: operation polls, resource groups.
    pub(crate) http: reqwest::Client,
    /// The credential the clients use, for the raw calls' bearer token.
    pub(crate) credential: Arc<dyn TokenCredential>,
    /// The Resource Manager endpoint (`https://management.azure.com/`, or a fake's).
    pub(crate) endpoint: url::Url,
    /// Subscription id.
    pub(crate) subscription: String,
    /// Resource group every resource goes in.
    pub(crate) resource_group: String,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients")
            .field("endpoint", &self.endpoint.as_str())
            .field("subscription", &self.subscription)
            .field("resource_group", &self.resource_group)
            .finish_non_exhaustive()
    }
}

/// A fixed bearer token: what a fake accepts (any non-empty token). Never used against Azure.
#[derive(Debug)]
struct StaticToken(&'static str);

#[async_trait::async_trait]
impl TokenCredential for StaticToken {
    async fn get_token(&self, _scopes: &[&str]) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            Secret::new(self.0),
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        Ok(())
    }
}

impl Clients {
    /// Clients for `endpoint` with a static token (a fake), or for Azure with the default
    /// credential chain (environment, Azure CLI, managed identity).
    pub(crate) fn new(
        endpoint: Option<&str>,
        subscription: &str,
        resource_group: &str,
    ) -> Result<Clients, ProviderError> {
        let setup = |what: &str, e: &dyn std::fmt::Display| {
            ProviderError::new(
                FailureKind::Other,
                "ClientSetup",
                format!("cannot make the Azure {what}: {e}"),
            )
        };
        let (credential, url): (Arc<dyn TokenCredential>, url::Url) = match endpoint {
            Some(e) => (
                Arc::new(StaticToken("flotilla-static-token")),
                url::Url::parse(e).map_err(|err| setup("endpoint URL", &err))?,
            ),
            None => (
                azure_identity::create_default_credential()
                    .map_err(|e| setup("credential chain", &e))?,
                url::Url::parse(azure_mgmt_compute::DEFAULT_ENDPOINT.as_str())
                    .map_err(|e| setup("endpoint URL", &e))?,
            ),
        };
        let compute = azure_mgmt_compute::ClientBuilder::new(credential.clone())
            .endpoint(url.clone())
            .build()
            .map_err(|e| setup("compute client", &e))?;
        let network = azure_mgmt_network::ClientBuilder::new(credential.clone())
            .endpoint(url.clone())
            .build()
            .map_err(|e| setup("network client", &e))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| setup("HTTP client", &e))?;
        Ok(Clients {
            compute,
            network,
            http,
            credential,
            endpoint: url,
            subscription: subscription.to_string(),
            resource_group: resource_group.to_string(),
        })
    }

    /// A bearer token for a raw call.
    pub(crate) async fn token(&self) -> Result<String, ProviderError> {
        let scope = format!("{}.default", with_slash(self.endpoint.as_str()));
        let token = self.credential.get_token(&[&scope]).await.map_err(|e| {
            ProviderError::new(
                FailureKind::Other,
                "NoCredentials",
                format!(
                    "cannot get an Azure token ({e}); sign in with `az login`, or set \
                     AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET"
                ),
            )
        })?;
        Ok(token.token.secret().to_string())
    }

    /// The resource group's ARM id.
    pub(crate) fn group_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}",
            self.subscription, self.resource_group
        )
    }

    /// The ARM id of resource `name` of type `rtype` (`Microsoft.Compute/virtualMachines`) in
    /// the resource group.
    pub(crate) fn id(&self, rtype: &str, name: &str) -> String {
        format!("{}/providers/{rtype}/{name}", self.group_id())
    }

    /// A raw ARM call: `target` is a path (`/subscriptions/…`, `api_version` added) or an
    /// absolute URL (used as is). A non-2xx answer is an error.
    pub(crate) async fn raw(
        &self,
        method: reqwest::Method,
        target: &str,
        api_version: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Sent, ProviderError> {
        let sent = self.raw_any(method, target, api_version, body).await?;
        if (200..300).contains(&sent.status) {
            Ok(sent)
        } else {
            Err(body_error(sent.status, &sent.body, ""))
        }
    }

    /// [`Clients::raw`], with a non-2xx answer returned as it is (for callers that judge the
    /// status themselves); only a transport failure is an error.
    pub(crate) async fn raw_any(
        &self,
        method: reqwest::Method,
        target: &str,
        api_version: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Sent, ProviderError> {
        let mut url = if target.starts_with("http://") || target.starts_with("https://") {
            url::Url::parse(target)
        } else {
            self.endpoint.join(target.trim_start_matches('/'))
        }
        .map_err(|e| other("BadUrl", format!("bad ARM URL `{target}`: {e}")))?;
        if let Some(v) = api_version
            && !url.query_pairs().any(|(k, _)| k == "api-version")
        {
            url.query_pairs_mut().append_pair("api-version", v);
        }
        let mut req = self
            .http
            .request(method, url.as_str())
            .bearer_auth(self.token().await?);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let rsp = req.send().await.map_err(|e| {
            other(
                "Transport",
                format!("cannot reach Azure Resource Manager at {url}: {e}"),
            )
        })?;
        let status = rsp.status().as_u16();
        let header = |k: &str| {
            rsp.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (async_op, location, retry) = (
            header("azure-asyncoperation"),
            header("location"),
            header("retry-after"),
        );
        let text = rsp.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| {
            if text.is_empty() {
                Value::Null
            } else {
                // Kept for the error message of a non-JSON answer.
                json!({"error": {"message": text.chars().take(300).collect::<String>()}})
            }
        });
        Ok(Sent {
            status,
            body,
            async_op,
            location,
            retry_after: retry.as_deref().and_then(retry_after),
        })
    }

    /// Makes the resource group in `region` when it does not exist (the issue asks for it;
    /// an existing group is left as it is, whatever its location).
    pub(crate) async fn ensure_group(&self, region: &str) -> Result<(), ProviderError> {
        let path = self.group_id();
        match self
            .raw(reqwest::Method::GET, &path, Some(GROUPS_API), None)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.kind == FailureKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let body = serde_json::json!({"location": region, "tags": {"flotilla-managed": "true"}});
        self.raw(reqwest::Method::PUT, &path, Some(GROUPS_API), Some(&body))
            .await
            .map(|_| ())
    }
}

/// `s` with one trailing `/`.
fn with_slash(s: &str) -> String {
    format!("{}/", s.trim_end_matches('/'))
}

/// An answer: status, JSON body (`Null` when empty) and what a long-running operation needs.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    /// HTTP status.
    pub(crate) status: u16,
    /// The body as JSON.
    pub(crate) body: Value,
    /// The absolute `Azure-AsyncOperation` URL, if any.
    pub(crate) async_op: Option<String>,
    /// The absolute `Location` URL, if any.
    pub(crate) location: Option<String>,
    /// `Retry-After`, if any.
    pub(crate) retry_after: Option<Duration>,
}

/// Sends a generated client's request (`client.get(…).send()`) and reads its answer. A
/// non-2xx answer arrives as the client's error and becomes a [`ProviderError`].
pub(crate) async fn send<R: Into<azure_core::Response>>(
    request: impl Future<Output = azure_core::Result<R>>,
) -> Result<Sent, ProviderError> {
    let rsp: azure_core::Response = request.await.map_err(from_sdk)?.into();
    let (status, headers, body) = rsp.deconstruct();
    let header = |k: &str| {
        headers
            .iter()
            .find(|(n, _)| n.as_str().eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str().to_string())
    };
    let async_op = header("azure-asyncoperation");
    let location = header("location");
    let retry = header("retry-after");
    let bytes = body.collect().await.map_err(from_sdk)?;
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Sent {
        status: u16::from(status),
        body,
        async_op,
        location,
        retry_after: retry.as_deref().and_then(retry_after),
    })
}

/// A GET through a generated client: the resource as JSON, `None` when ARM does not know it.
pub(crate) async fn get<R: Into<azure_core::Response>>(
    request: impl Future<Output = azure_core::Result<R>>,
) -> Result<Option<Value>, ProviderError> {
    match send(request).await {
        Ok(s) => Ok(Some(s.body)),
        Err(e) if e.kind == FailureKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `Retry-After` in seconds (ARM sends integers; an HTTP-date is not worth parsing here).
fn retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Waits for the long-running operation an answer started, if any: polls its
/// `Azure-AsyncOperation` URL (or, without one, its `Location`) until it ends. `Failed` and
/// `Canceled` carry ARM's error, mapped by [`error`]. `what` names the resource in messages.
pub(crate) async fn wait(p: &AzureProvider, sent: &Sent, what: &str) -> Result<(), ProviderError> {
    let (url, by_status) = match (&sent.async_op, &sent.location) {
        (Some(u), _) => (u.clone(), true),
        (None, Some(u)) if sent.status == 202 => (u.clone(), false),
        _ => return Ok(()),
    };
    let clients = p.clients().await?;
    let options = &p.options;
    let deadline = tokio::time::Instant::now() + options.wait_timeout;
    let mut backoff = options.poll_interval;
    let mut next = sent.retry_after;
    let (mut lost, mut last_lost) = (0, None);
    loop {
        if tokio::time::Instant::now() >= deadline {
            return Err(other(
                "WaitTimeout",
                format!(
                    "gave up waiting for {what} after {} s",
                    options.wait_timeout.as_secs()
                ),
            ));
        }
        // Retry-After is a floor: a fake's `0` must not turn the poll into a busy loop.
        tokio::time::sleep(next.map_or(backoff, |r| r.max(backoff))).await;
        backoff = (backoff * 3 / 2).min(options.max_poll_interval);
        let got = match clients
            .raw_any(reqwest::Method::GET, &url, None, None)
            .await
        {
            Ok(g) => {
                lost = 0;
                g
            }
            // A dropped connection or two does not end the operation; a server gone for
            // good does end the wait.
            Err(e) if lost < 5 => {
                lost += 1;
                last_lost = Some(e);
                next = None;
                continue;
            }
            Err(e) => return Err(last_lost.unwrap_or(e)),
        };
        // A throttled or briefly failing status read only delays the next one: the
        // operation itself goes on (arm.md §7).
        if got.status == 429 || got.status >= 500 {
            next = got.retry_after;
            continue;
        }
        if !(200..300).contains(&got.status) {
            if !by_status && got.status == 404 {
                return Ok(());
            }
            return Err(body_error(got.status, &got.body, ""));
        }
        next = got.retry_after;
        if !by_status {
            // A Location URL answers 202 while running, then what the call would have.
            if got.status != 202 {
                return Ok(());
            }
            continue;
        }
        match got.body["status"].as_str().unwrap_or_default() {
            "Succeeded" => return Ok(()),
            "Failed" | "Canceled" => {
                let code = got.body["error"]["code"]
                    .as_str()
                    .unwrap_or("OperationFailed");
                let message = got.body["error"]["message"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        format!("the operation on {what} ended {}", got.body["status"])
                    });
                return Err(error(None, code, &message));
            }
            _ => {}
        }
    }
}

/// Sends a request that may start a long-running operation and waits for it; returns the
/// first answer (whose body is the resource as the request left it).
pub(crate) async fn send_wait<R: Into<azure_core::Response>>(
    p: &AzureProvider,
    request: impl Future<Output = azure_core::Result<R>>,
    what: &str,
) -> Result<Sent, ProviderError> {
    let sent = send(request).await?;
    wait(p, &sent, what).await?;
    Ok(sent)
}

/// Finishes a delete: sends it and waits. Something already gone counts as deleted.
pub(crate) async fn delete<R: Into<azure_core::Response>>(
    p: &AzureProvider,
    request: impl Future<Output = azure_core::Result<R>>,
    what: &str,
) -> Result<(), ProviderError> {
    match send_wait(p, request, what).await {
        Err(e) if e.kind != FailureKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The [`ProviderError`] for ARM's `code` and `message` (and the HTTP status when there was
/// one): capacity codes fail over to the next offer, quota moves to another region, 429
/// retries, 404 is gone (the shared decisions in `azure-shared.md`).
pub(crate) fn error(status: Option<u16>, code: &str, message: &str) -> ProviderError {
    let kind = if CAPACITY_CODES.contains(&code) {
        FailureKind::Capacity
    } else if code == "OperationNotAllowed" && message.to_ascii_lowercase().contains("quota") {
        FailureKind::Quota
    } else if status == Some(429) || code == "TooManyRequests" {
        FailureKind::Throttled
    } else if status == Some(404) || matches!(code, "ResourceNotFound" | "NotFound") {
        FailureKind::NotFound
    } else {
        FailureKind::Other
    };
    let mut message = message.to_string();
    if kind == FailureKind::Quota
        && let Some(family) = quota_family(&message)
        && !message.contains("(quota ")
    {
        message = format!("{message} (quota {family})");
    }
    let code = if code.is_empty() {
        status.map_or_else(|| "Unknown".to_string(), |s| format!("HTTP {s}"))
    } else {
        code.to_string()
    };
    ProviderError::new(kind, code, message)
}

/// The quota an `OperationNotAllowed` message names: `approved standardNDSH100v5Family Cores
/// quota` -> `standardNDSH100v5Family Cores`, `Total Regional Cores`.
fn quota_family(message: &str) -> Option<String> {
    let start = message.find("approved ")? + "approved ".len();
    let rest = &message[start..];
    let end = rest.find(" quota")?;
    let family = rest[..end].trim();
    (!family.is_empty()).then(|| family.to_string())
}

/// The error of a non-2xx answer from its body (`error.code`/`message`, also `Code`/`Message`
/// and top-level `code`, as the clients read them).
fn body_error(status: u16, body: &Value, text: &str) -> ProviderError {
    let e = if body["error"].is_object() {
        &body["error"]
    } else {
        body
    };
    let code = e["code"]
        .as_str()
        .or(e["Code"].as_str())
        .unwrap_or_default();
    let message = e["message"]
        .as_str()
        .or(e["Message"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| {
            if text.is_empty() {
                format!("Azure Resource Manager answered HTTP {status}")
            } else {
                text.chars().take(300).collect()
            }
        });
    error(Some(status), code, &message)
}

/// A generated client's error as a [`ProviderError`] (code and message as ARM sent them).
pub(crate) fn from_sdk(e: azure_core::Error) -> ProviderError {
    if let Some(h) = e.as_http_error() {
        let status = u16::from(h.status());
        let message = h
            .error_message()
            .map(str::to_string)
            .unwrap_or_else(|| format!("Azure Resource Manager answered HTTP {status}"));
        return error(Some(status), h.error_code().unwrap_or_default(), &message);
    }
    if let azure_core::error::ErrorKind::HttpResponse { status, error_code } = e.kind() {
        let status = u16::from(*status);
        return error(
            Some(status),
            error_code.as_deref().unwrap_or_default(),
            &format!("Azure Resource Manager answered HTTP {status}"),
        );
    }
    if matches!(e.kind(), azure_core::error::ErrorKind::Credential) {
        return other(
            "NoCredentials",
            format!(
                "cannot get an Azure token ({e}); sign in with `az login`, or set \
                 AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET"
            ),
        );
    }
    other(
        "Transport",
        format!("Azure Resource Manager call failed: {e}"),
    )
}

/// An error of kind [`FailureKind::Other`].
pub(crate) fn other(code: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::new(FailureKind::Other, code, message)
}

/// A JSON body as a generated model type (for a client's `parameters`).
pub(crate) fn model<T: DeserializeOwned>(body: Value) -> Result<T, ProviderError> {
    serde_json::from_value(body).map_err(|e| {
        other(
            "BadRequestBody",
            format!("flotilla built a request body the Azure client cannot take: {e}"),
        )
    })
}

/// The name flotilla gives `owner`'s resource with `suffix` (`""` for the VM, `-nic`, `-os`,
/// `-ip`): `fl-{first 8 hex of lineage}-{address in [a-z0-9-]}{suffix}`, at most 64
/// characters (the address part is cut and a hash of the whole address added when longer).
/// A later generation of the address (its earlier resource was given up) adds `-g{n}`, so a
/// replacement never takes over a name ARM may still hold (a NIC reserved for a deleted VM).
/// ARM names are the idempotency: a repeated PUT of the same name is an update, so a crashed
/// create is adopted.
pub(crate) fn name(owner: &Ownership, suffix: &str) -> String {
    let lineage: String = owner
        .lineage
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    let mut body = String::new();
    for c in owner.address.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if !(c == '-' && (body.ends_with('-') || body.is_empty())) {
            body.push(c);
        }
    }
    let mut body = body.trim_end_matches('-').to_string();
    if !plain(&owner.address) {
        // `fleet.a_b[0]` and `fleet.a-b[0]` would both be `fleet-a-b-0`: an address the
        // mapping above does not keep apart gets a hash of itself.
        body = format!("{body}-{}", short_hash(&owner.address));
    }
    if owner.generation > 0 {
        body = format!("{body}-g{}", owner.generation);
    }
    let fixed = "fl-".len() + lineage.len() + 1 + suffix.len();
    if fixed + body.len() > MAX_NAME {
        let hash = short_hash(&format!("{}/{}", owner.address, owner.generation));
        let room = MAX_NAME.saturating_sub(fixed + 1 + hash.len());
        let cut: String = body.chars().take(room).collect();
        body = format!("{}-{hash}", cut.trim_end_matches('-'));
    }
    format!("fl-{lineage}-{body}{suffix}")
}

/// Whether `name` maps an address to distinct names: lowercase letters and digits with single
/// `.`, `-`, `[` or `]` between them (`fleet.train-a[0]`, `network.azure.eastus`). Fleet and
/// volume names are HCL identifiers, so `_`, capitals and runs of `-` are what could collide.
fn plain(address: &str) -> bool {
    let mut prev_sep = true;
    for c in address.chars() {
        let sep = matches!(c, '.' | '-' | '[' | ']');
        if !(sep || c.is_ascii_lowercase() || c.is_ascii_digit()) {
            return false;
        }
        // `]` ends an index and may end the address; any other separator sits between words.
        if sep && prev_sep && c != ']' {
            return false;
        }
        prev_sep = sep && c != ']';
    }
    !prev_sep
}

/// Eight hex characters of SHA-256 of `s`.
fn short_hash(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s)
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The tags a resource of `owner` carries: `extra` (the fleet's, for VMs; keys starting with
/// `flotilla` are the ownership tags' and skipped), then the ownership tags, which win.
pub(crate) fn tags(owner: &Ownership, extra: &BTreeMap<String, String>) -> Value {
    let mut out = serde_json::Map::new();
    for (k, v) in extra.iter().filter(|(k, _)| !k.starts_with("flotilla")) {
        out.insert(k.clone(), Value::String(v.clone()));
    }
    out.insert(LINEAGE_TAG.into(), Value::String(owner.lineage.clone()));
    out.insert(ADDRESS_TAG.into(), Value::String(owner.address.clone()));
    Value::Object(out)
}

/// The fleet's tags of a resource: its tags without the ownership ones.
pub(crate) fn user_tags(item: &Value) -> BTreeMap<String, String> {
    item["tags"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != LINEAGE_TAG && k.as_str() != ADDRESS_TAG)
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// Whether an existing resource found at `owner`'s name may be adopted: its lineage tag is
/// this state's. A resource of another owner at the name is an error naming it; `Ok(false)`
/// never happens for a resource that carries our lineage.
pub(crate) fn adoptable(item: &Value, owner: &Ownership, what: &str) -> Result<(), ProviderError> {
    let lineage = item["tags"][LINEAGE_TAG].as_str();
    let id = item["id"].as_str().unwrap_or(what);
    if lineage == Some(owner.lineage.as_str()) {
        return match item["tags"][ADDRESS_TAG].as_str() {
            Some(a) if a != owner.address => Err(other(
                "NameTaken",
                format!(
                    "{what} `{id}` belongs to `{a}` of this state, not to `{}`; rename one of \
                     the two",
                    owner.address
                ),
            )),
            _ => Ok(()),
        };
    }
    Err(other(
        "NameTaken",
        format!(
            "{what} `{id}` already exists and is not this state's (its {LINEAGE_TAG} tag is {}); \
             delete or rename it, or use another resource_group",
            lineage.map_or_else(|| "missing".to_string(), |l| format!("`{l}`"))
        ),
    ))
}

/// Whether two ARM ids are the same resource (ARM compares them case-insensitively, and
/// compute upper-cases resource groups in references).
pub(crate) fn same_id(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

/// The last segment of an ARM id (the resource's name).
pub(crate) fn last(id: &str) -> &str {
    id.trim_end_matches('/').rsplit('/').next().unwrap_or(id)
}

/// A resource's `properties.provisioningState` (missing means Succeeded, arm.md §3).
pub(crate) fn provisioning_state(item: &Value) -> &str {
    item["properties"]["provisioningState"]
        .as_str()
        .unwrap_or("Succeeded")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(address: &str, generation: u64) -> Ownership {
        Ownership {
            lineage: "0f3a9c2e-1111-2222-3333-444455556666".into(),
            address: address.into(),
            generation,
        }
    }

    #[test]
    fn names_follow_the_shared_form() {
        assert_eq!(
            name(&owner("fleet.train[0]", 0), ""),
            "fl-0f3a9c2e-fleet-train-0"
        );
        assert_eq!(
            name(&owner("fleet.train[0]", 0), "-nic"),
            "fl-0f3a9c2e-fleet-train-0-nic"
        );
        assert_eq!(
            name(&owner("network.azure.eastus", 0), ""),
            "fl-0f3a9c2e-network-azure-eastus"
        );
        assert_eq!(
            name(&owner("fleet.train[0]", 2), "-nic"),
            "fl-0f3a9c2e-fleet-train-0-g2-nic"
        );
        // Addresses the mapping would merge are told apart by a hash.
        let a = name(&owner("fleet.a_b[0]", 0), "");
        let b = name(&owner("fleet.a-b[0]", 0), "");
        assert_eq!(b, "fl-0f3a9c2e-fleet-a-b-0");
        assert!(
            a.starts_with("fl-0f3a9c2e-fleet-a-b-0-") && a.len() == b.len() + 9,
            "{a}"
        );
        assert_ne!(name(&owner("fleet.a--b[0]", 0), ""), b);
        assert_ne!(name(&owner("fleet.A-b[0]", 0), ""), b);
        assert!(plain("gateway.api") && plain("fleet.a1-b2[10]"));
        assert!(!plain("fleet.a-[0]") && !plain("fleet.a[0]-") && !plain("x..y"));
        // Long addresses are cut and told apart by a hash of the whole address.
        let a = name(&owner(&format!("fleet.{}[1]", "x".repeat(90)), 0), "-nic");
        let b = name(&owner(&format!("fleet.{}[2]", "x".repeat(90)), 0), "-nic");
        assert!(a.len() <= 64 && b.len() <= 64, "{a} {b}");
        assert_ne!(a, b);
        assert!(a.ends_with("-nic") && a.starts_with("fl-0f3a9c2e-fleet-xxx"));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }

    #[test]
    fn arm_errors_map_to_failure_kinds() {
        for code in CAPACITY_CODES {
            assert_eq!(error(None, code, "x").kind, FailureKind::Capacity);
        }
        let quota = error(
            Some(409),
            "OperationNotAllowed",
            "Operation could not be completed as it results in exceeding approved \
             standardNDSH100v5Family Cores quota. Additional details …",
        );
        assert_eq!(quota.kind, FailureKind::Quota);
        assert!(
            quota
                .message
                .ends_with("(quota standardNDSH100v5Family Cores)"),
            "{}",
            quota.message
        );
        assert_eq!(
            error(Some(409), "OperationNotAllowed", "VM is busy").kind,
            FailureKind::Other
        );
        assert_eq!(
            error(Some(429), "", "slow down").kind,
            FailureKind::Throttled
        );
        assert_eq!(error(Some(429), "", "x").code, "HTTP 429");
        assert_eq!(
            error(Some(404), "ResourceNotFound", "gone").kind,
            FailureKind::NotFound
        );
        assert_eq!(error(None, "NotFound", "gone").kind, FailureKind::NotFound);
        assert_eq!(
            error(Some(409), "InUseSubnetCannotBeDeleted", "in use").kind,
            FailureKind::Other
        );
        let e = body_error(
            409,
            &serde_json::json!({"error": {"code": "SkuNotAvailable", "message": "not here"}}),
            "",
        );
        assert_eq!(
            (e.kind, e.code.as_str()),
            (FailureKind::Capacity, "SkuNotAvailable")
        );
        let e = body_error(500, &Value::Null, "");
        assert_eq!(e.code, "HTTP 500");
    }

    #[test]
    fn tags_carry_ownership_and_adoption_checks_the_lineage() {
        let o = owner("fleet.a[1]", 0);
        let t = tags(
            &o,
            &BTreeMap::from([
                ("team".into(), "ml".into()),
                ("flotilla-lineage".into(), "forged".into()),
            ]),
        );
        assert_eq!(t["team"], "ml");
        assert_eq!(t[LINEAGE_TAG], o.lineage.as_str());
        assert_eq!(t[ADDRESS_TAG], "fleet.a[1]");
        let item = serde_json::json!({"id": "/x/vm", "tags": t});
        assert!(adoptable(&item, &o, "VM").is_ok());
        assert_eq!(
            user_tags(&item),
            BTreeMap::from([("team".to_string(), "ml".to_string())])
        );
        let e = adoptable(&item, &owner("fleet.a[2]", 0), "VM").unwrap_err();
        assert!(e.message.contains("`fleet.a[1]`"), "{}", e.message);
        let foreign = serde_json::json!({"id": "/x/vm", "tags": {LINEAGE_TAG: "other"}});
        let e = adoptable(&foreign, &o, "VM").unwrap_err();
        assert!(e.message.contains("`other`") && e.message.contains("/x/vm"));
        assert!(same_id(
            "/subscriptions/s/resourceGroups/RG/providers/x/y",
            "/subscriptions/s/resourcegroups/rg/providers/x/y"
        ));
    }
}
