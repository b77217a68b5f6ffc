//! Test doubles: an in-process [`FakeProvider`] and an in-memory [`MemoryStore`].
//!
//! They exist so that the executor can be tested and benchmarked without a cloud: the unit
//! tests, the criterion benchmark and the CLI's end-to-end tests all drive the real executor
//! against them. Nothing here talks to a network, and nothing here is for production use.
//!
//! The `flotilla` binary serves every provider with a [`FakeProvider`] when the (test-only,
//! undocumented for users) environment variable [`DIR_ENV`] names a directory: each resource
//! is then a JSON file there, so that separate runs of the binary see one "cloud", and
//! [`FAULTS_FILE`] in that directory injects failures ([`FakeFaults`]).
//!
//! The fake behaves as the contract of [`Provider`] asks: it tags what it makes with the
//! [`Ownership`], honours idempotency tokens (a create with a token it has seen returns the
//! same resource, as EC2's `ClientToken` does), finds by ownership tags, and answers
//! `NotFound` for what is gone. It counts concurrent calls overall and per region, so tests
//! can check the executor's limits.

use crate::catalog::{Offer, ProviderKind};
use crate::provider::{
    FailureKind, GatewayRequest, InstanceRequest, NetworkRequest, Observed, Ownership, Provider,
    ProviderError, VolumeRequest,
};
use crate::state::{
    BoxFuture, LockInfo, Resource, ResourceKind, State, StateError, StateStore, StoredVersion,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Test-only: when set, `flotilla apply` and `destroy` serve every provider with a
/// [`FakeProvider`] that keeps its resources as JSON files in this directory.
pub const DIR_ENV: &str = "FLOTILLA_FAKE_PROVIDER_DIR";

/// The file in [`DIR_ENV`]'s directory that configures [`FakeFaults`] (JSON).
pub const FAULTS_FILE: &str = "faults.json";

/// Failures and delays a [`FakeProvider`] injects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FakeFaults {
    /// Offers with no capacity, each an instance type (`p5.48xlarge`), `region:type` or
    /// `region/zone:type`: `create_instance` answers `InsufficientInstanceCapacity`.
    pub capacity: Vec<String>,
    /// Offers over quota, written as in `capacity`: `create_instance` answers
    /// `QUOTA_EXCEEDED` ([`FailureKind::Quota`]) naming the quota `GPUS_ALL_REGIONS`.
    pub quota: Vec<String>,
    /// The first N mutating calls (creates, updates, deletes) answer `RequestLimitExceeded`.
    pub throttle: u32,
    /// Addresses whose create or update answers `InvalidParameterValue` with this message.
    pub fail: BTreeMap<String, String>,
    /// Each mutating call first sleeps this long (milliseconds).
    pub sleep_ms: u64,
}

/// One resource the fake holds, with the ownership it was made for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FakeRecord {
    /// The resource as the fake reports it.
    pub resource: Resource,
    /// The `flotilla:lineage` tag.
    pub lineage: String,
    /// The `flotilla:address` tag.
    pub address: String,
    /// The idempotency token of the create that made it.
    pub token: Option<String>,
}

/// One call the fake answered, for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCall {
    /// `create_instance`, `find`, `delete_volume`…
    pub method: &'static str,
    /// The resource's address (from its ownership), or its provider id.
    pub address: String,
    /// The region the call went to.
    pub region: String,
    /// The instance type, for instance creates.
    pub instance_type: Option<String>,
}

#[derive(Debug, Default)]
struct Stats {
    running: usize,
    max: usize,
    by_region: HashMap<String, (usize, usize)>,
    calls: Vec<FakeCall>,
}

/// An in-process provider (a test double; see the module docs).
#[derive(Debug)]
pub struct FakeProvider {
    kind: ProviderKind,
    dir: Option<PathBuf>,
    faults: FakeFaults,
    throttle_left: AtomicU32,
    next_ip: AtomicU64,
    records: Mutex<BTreeMap<String, FakeRecord>>,
    stats: Mutex<Stats>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Counts a call as running until dropped.
struct Busy<'a> {
    stats: &'a Mutex<Stats>,
    region: String,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut s = lock(self.stats);
        s.running -= 1;
        if let Some(r) = s.by_region.get_mut(&self.region) {
            r.0 -= 1;
        }
    }
}

impl FakeProvider {
    /// An empty fake for `kind`, in memory, with no faults.
    pub fn new(kind: ProviderKind) -> FakeProvider {
        FakeProvider {
            kind,
            dir: None,
            faults: FakeFaults::default(),
            throttle_left: AtomicU32::new(0),
            next_ip: AtomicU64::new(1),
            records: Mutex::new(BTreeMap::new()),
            stats: Mutex::new(Stats::default()),
        }
    }

    /// The same fake with these faults.
    pub fn with_faults(mut self, faults: FakeFaults) -> FakeProvider {
        self.throttle_left = AtomicU32::new(faults.throttle);
        self.faults = faults;
        self
    }

    /// The same fake, sleeping `sleep` in every mutating call.
    pub fn with_sleep(mut self, sleep: Duration) -> FakeProvider {
        self.faults.sleep_ms = u64::try_from(sleep.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// A fake for `kind` whose resources are the JSON files `<kind>-<id>.json` in `dir`
    /// (made if missing), with the faults of `dir/faults.json` if there is one.
    pub fn in_dir(kind: ProviderKind, dir: &Path) -> Result<FakeProvider, std::io::Error> {
        fs_err::create_dir_all(dir)?;
        let faults_path = dir.join(FAULTS_FILE);
        let faults = if faults_path.exists() {
            let text = fs_err::read_to_string(&faults_path)?;
            serde_json::from_str(&text).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", faults_path.display()),
                )
            })?
        } else {
            FakeFaults::default()
        };
        let mut fake = FakeProvider::new(kind).with_faults(faults);
        fake.dir = Some(dir.to_path_buf());
        let prefix = format!("{}-", kind.as_str());
        let mut records = BTreeMap::new();
        for entry in fs_err::read_dir(dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if !(name.starts_with(&prefix) && name.ends_with(".json")) {
                continue;
            }
            let text = fs_err::read_to_string(&path)?;
            let record: FakeRecord = serde_json::from_str(&text).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?;
            records.insert(record.resource.provider_id.clone(), record);
        }
        let ip = records.len() as u64 + 1;
        fake.records = Mutex::new(records);
        fake.next_ip = AtomicU64::new(ip);
        Ok(fake)
    }

    /// Every resource it holds, by provider id.
    pub fn resources(&self) -> Vec<Resource> {
        lock(&self.records)
            .values()
            .map(|r| r.resource.clone())
            .collect()
    }

    /// Every record it holds, by provider id.
    pub fn records(&self) -> Vec<FakeRecord> {
        lock(&self.records).values().cloned().collect()
    }

    /// How many resources carry these ownership tags (more than one is a duplicate).
    pub fn owned(&self, lineage: &str, address: &str) -> usize {
        lock(&self.records)
            .values()
            .filter(|r| r.lineage == lineage && r.address == address)
            .count()
    }

    /// Puts a resource there as if an earlier apply had made it for `owner` (and died before
    /// recording it).
    pub fn insert(&self, resource: Resource, owner: &Ownership) {
        let record = FakeRecord {
            resource,
            lineage: owner.lineage.clone(),
            address: owner.address.clone(),
            token: None,
        };
        self.save(&record);
        lock(&self.records).insert(record.resource.provider_id.clone(), record);
    }

    /// The most mutating calls that ran at once.
    pub fn max_concurrent(&self) -> usize {
        lock(&self.stats).max
    }

    /// The most mutating calls that ran at once in `region`.
    pub fn max_concurrent_in(&self, region: &str) -> usize {
        lock(&self.stats).by_region.get(region).map_or(0, |r| r.1)
    }

    /// Every call answered, in order.
    pub fn calls(&self) -> Vec<FakeCall> {
        lock(&self.stats).calls.clone()
    }

    fn log(&self, method: &'static str, address: &str, region: &str, instance_type: Option<&str>) {
        lock(&self.stats).calls.push(FakeCall {
            method,
            address: address.to_string(),
            region: region.to_string(),
            instance_type: instance_type.map(str::to_string),
        });
    }

    /// Logs a mutating call and counts it as running; then sleeps and answers throttling.
    async fn begin<'a>(
        &'a self,
        method: &'static str,
        address: &str,
        region: &str,
        instance_type: Option<&str>,
    ) -> Result<Busy<'a>, ProviderError> {
        self.log(method, address, region, instance_type);
        let busy = {
            let mut s = lock(&self.stats);
            s.running += 1;
            s.max = s.max.max(s.running);
            let r = s.by_region.entry(region.to_string()).or_default();
            r.0 += 1;
            r.1 = r.1.max(r.0);
            Busy {
                stats: &self.stats,
                region: region.to_string(),
            }
        };
        if self.faults.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.faults.sleep_ms)).await;
        }
        let throttled = self
            .throttle_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if throttled {
            return Err(ProviderError::new(
                FailureKind::Throttled,
                "RequestLimitExceeded",
                "Request limit exceeded.",
            ));
        }
        Ok(busy)
    }

    fn injected_failure(&self, address: &str) -> Result<(), ProviderError> {
        match self.faults.fail.get(address) {
            Some(message) => Err(ProviderError::new(
                FailureKind::Other,
                "InvalidParameterValue",
                message.clone(),
            )),
            None => Ok(()),
        }
    }

    fn no_capacity(&self, offer: &Offer, zone: &str) -> bool {
        Self::matches(&self.faults.capacity, offer, zone)
    }

    fn over_quota(&self, offer: &Offer, zone: &str) -> bool {
        Self::matches(&self.faults.quota, offer, zone)
    }

    /// Whether one of `faults` (`type`, `region:type`, `region/zone:type`) names the offer.
    fn matches(faults: &[String], offer: &Offer, zone: &str) -> bool {
        faults.iter().any(|c| {
            *c == offer.instance_type
                || *c == format!("{}:{}", offer.region, offer.instance_type)
                || *c == format!("{}/{zone}:{}", offer.region, offer.instance_type)
        })
    }

    fn default_zone(&self, region: &str) -> String {
        match self.kind {
            ProviderKind::Aws => format!("{region}a"),
            ProviderKind::Gcp => format!("{region}-a"),
            ProviderKind::Azure => "1".to_string(),
            ProviderKind::Baremetal => String::new(),
        }
    }

    fn new_id(&self, prefix: &str) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        format!("{prefix}-{}", &id[..17])
    }

    fn file(&self, provider_id: &str) -> Option<PathBuf> {
        let safe: String = provider_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{}-{safe}.json", self.kind.as_str())))
    }

    fn save(&self, record: &FakeRecord) {
        if let Some(path) = self.file(&record.resource.provider_id)
            && let Ok(text) = serde_json::to_string_pretty(record)
        {
            let _ = fs_err::write(path, text);
        }
    }

    fn unsave(&self, provider_id: &str) {
        if let Some(path) = self.file(provider_id) {
            let _ = fs_err::remove_file(path);
        }
    }

    /// Keeps a new record, unless one with the same token exists: then that one is the answer.
    fn keep(&self, owner: &Ownership, token: String, resource: Resource) -> Resource {
        let mut records = lock(&self.records);
        if let Some(existing) = records
            .values()
            .find(|r| r.token.as_deref() == Some(token.as_str()))
        {
            return existing.resource.clone();
        }
        let record = FakeRecord {
            resource,
            lineage: owner.lineage.clone(),
            address: owner.address.clone(),
            token: Some(token),
        };
        self.save(&record);
        records.insert(record.resource.provider_id.clone(), record.clone());
        record.resource
    }

    fn not_found(what: &Resource) -> ProviderError {
        ProviderError::new(
            FailureKind::NotFound,
            "NotFound",
            format!(
                "{} `{}` does not exist",
                what.kind.as_str(),
                what.provider_id
            ),
        )
    }

    fn change(
        &self,
        what: &Resource,
        f: impl FnOnce(&mut Resource),
    ) -> Result<Resource, ProviderError> {
        let mut records = lock(&self.records);
        let record = records
            .get_mut(&what.provider_id)
            .ok_or_else(|| Self::not_found(what))?;
        f(&mut record.resource);
        self.save(record);
        Ok(record.resource.clone())
    }

    fn remove(&self, what: &Resource) -> Result<(), ProviderError> {
        let removed = lock(&self.records).remove(&what.provider_id);
        match removed {
            Some(_) => {
                self.unsave(&what.provider_id);
                Ok(())
            }
            None => Err(Self::not_found(what)),
        }
    }
}

fn tags_value(tags: &BTreeMap<String, String>) -> Value {
    Value::Object(
        tags.iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect(),
    )
}

impl Provider for FakeProvider {
    fn kind(&self) -> ProviderKind {
        self.kind
    }

    fn create_instance<'a>(
        &'a self,
        request: &'a InstanceRequest,
    ) -> BoxFuture<'a, Result<Resource, ProviderError>> {
        Box::pin(async move {
            let offer = &request.offer;
            let _busy = self
                .begin(
                    "create_instance",
                    &request.owner.address,
                    &offer.region,
                    Some(&offer.instance_type),
                )
                .await?;
            self.injected_failure(&request.owner.address)?;
            // Like an Azure NIC, a node of such a provider needs its region's network.
            if self.kind.needs_network()
                && request.network.as_ref().is_none_or(|n| {
                    n.region != offer.region || !lock(&self.records).contains_key(&n.provider_id)
                })
            {
                return Err(ProviderError::new(
                    FailureKind::Other,
                    "InvalidResourceReference",
                    format!(
                        "{}: no network in {} to put it in",
                        request.owner.address, offer.region
                    ),
                ));
            }
            let zone = request
                .zone
                .clone()
                .or_else(|| (!offer.zone.is_empty()).then(|| offer.zone.clone()))
                .unwrap_or_else(|| self.default_zone(&offer.region));
            if self.over_quota(offer, &zone) {
                return Err(ProviderError::new(
                    FailureKind::Quota,
                    "QUOTA_EXCEEDED",
                    format!(
                        "Quota 'GPUS_ALL_REGIONS' exceeded. Limit: 0.0 in region {}.",
                        offer.region
                    ),
                ));
            }
            if self.no_capacity(offer, &zone) {
                return Err(ProviderError::new(
                    FailureKind::Capacity,
                    "InsufficientInstanceCapacity",
                    format!(
                        "We currently do not have sufficient {} capacity in the Availability Zone you requested ({zone}).",
                        offer.instance_type
                    ),
                ));
            }
            let n = self.next_ip.fetch_add(1, Ordering::SeqCst);
            let mut attributes = BTreeMap::new();
            attributes.insert(
                "private_ip".to_string(),
                Value::from(format!("10.0.{}.{}", (n >> 8) & 255, n & 255)),
            );
            attributes.insert(
                "instance_type".to_string(),
                Value::from(offer.instance_type.clone()),
            );
            attributes.insert("spot".to_string(), Value::from(offer.spot));
            attributes.insert("tags".to_string(), tags_value(&request.tags));
            attributes.insert("disk_gib".to_string(), Value::from(request.disk_gib));
            attributes.insert("volumes".to_string(), provider_ids(&request.volumes));
            if let Some(pg) = &request.placement_group {
                attributes.insert("placement_group".to_string(), Value::from(pg.clone()));
            }
            let resource = Resource {
                address: request.owner.address.clone(),
                kind: ResourceKind::Instance,
                provider: self.kind,
                provider_id: self.new_id("i"),
                region: offer.region.clone(),
                zone,
                offer: Some(offer.clone()),
                attributes,
                dependencies: Vec::new(),
            };
            Ok(self.keep(
                &request.owner,
                request.owner.token(request.attempt),
                resource,
            ))
        })
    }

    fn update_instance<'a>(
        &'a self,
        instance: &'a Resource,
        request: &'a InstanceRequest,
    ) -> BoxFuture<'a, Result<Resource, ProviderError>> {
        Box::pin(async move {
            let _busy = self
                .begin("update_instance", &instance.address, &instance.region, None)
                .await?;
            self.injected_failure(&instance.address)?;
            self.change(instance, |r| {
                r.attributes
                    .insert("tags".to_string(), tags_value(&request.tags));
                // What a node adopted after a crash before its attach is missing.
                if !request.volumes.is_empty() {
                    r.attributes
                        .insert("volumes".to_string(), provider_ids(&request.volumes));
                }
            })
        })
    }

    fn delete_instance<'a>(
        &'a self,
        instance: &'a Resource,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let _busy = self
                .begin("delete_instance", &instance.address, &instance.region, None)
                .await?;
            self.remove(instance)
        })
    }

    fn create_volume<'a>(
        &'a self,
        request: &'a VolumeRequest,
    ) -> BoxFuture<'a, Result<Resource, ProviderError>> {
        Box::pin(async move {
            let _busy = self
                .begin(
                    "create_volume",
                    &request.owner.address,
                    &request.region,
                    None,
                )
                .await?;
            self.injected_failure(&request.owner.address)?;
            let zone = request
                .zone
                .clone()
                .unwrap_or_else(|| self.default_zone(&request.region));
            let mut attributes = BTreeMap::new();
            attributes.insert("size_gib".to_string(), Value::from(request.size_gib));
            attributes.insert("type".to_string(), Value::from(request.volume_type.clone()));
            let resource = Resource {
                address: request.owner.address.clone(),
                kind: ResourceKind::Volume,
                provider: self.kind,
                provider_id: self.new_id("vol"),
                region: request.region.clone(),
                zone,
                offer: None,
                attributes,
                dependencies: Vec::new(),
            };
            Ok(self.keep(&request.owner, request.owner.token(0), resource))
        })
    }

    fn update_volume<'a>(
        &'a self,
        volume: &'a Resource,
        request: &'a VolumeRequest,
    ) -> BoxFuture<'a, Result<Resource, ProviderError>> {
        Box::pin(async move {
            let _busy = self
                .begin("update_volume", &volume.address, &volume.region, None)
                .await?;
            self.injected_failure(&volume.address)?;
            self.change(volume, |r| {
                r.attributes
                    .insert("size_gib".to_string(), Value::from(request.size_gib));
                r.attributes
                    .insert("type".to_string(), Value::from(request.volume_type.clone()));
            })
        })
    }

    fn delete_volume<'a>(
        &'a self,
        volume: &'a Resource,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let _busy = self
                .begin("delete_volume", &volume.address, &volume.region, None)
                .await?;
            self.remove(volume)
        })
    }

    fn create_gateway<'a>(
        &'a self,
        request: &'a GatewayRequest,
    ) -> BoxFuture<'a, Result<Resource, ProviderError>> {
        Box::pin(async move {
            let _busy = self
                .begin(
                    "create_gateway",
                    &request.owner.address,
                    &request.region,
                    None,
                )
                .await?;
            self.injected_failure(&request.owner.address)?;
            let id = self.new_id("lb");
            let mut attributes = BTreeMap::new();
            attributes.insert(
                "dns_name".to_string(),
                Value::from(format!("{id}.fake.example")),
            );
            attributes.insert("target_ids".to_string(), provider_ids(&request.targets));
            let resource = Resource {
                address: request.owner.address.clone(),
                kind: ResourceKind::Gateway,
                provider: self.kind,
                provider_id: id,
                region: request.region.clone(),
                zone: String::new(),
                offer: None,
                attributes,
                dependencies: Vec::new(),
            };
            Ok(self.keep(&request.owner, request.owner.token(0), resource))
        })
    }

    fn update_gateway<'a>(
        &'a self,
        gateway: &'a Resource,
        request: &'a GatewayRequest,
    ) -> BoxFuture<'a, Result<Resource, ProviderError>> {
        Box::pin(async move {
            let _busy = self
                .begin("update_gateway", &gateway.address, &gateway.region, None)
                .await?;
            self.injected_failure(&gateway.address)?;
            self.change(gateway, |r| {
                r.attributes
                    .insert("target_ids".to_string(), provider_ids(&request.targets));
            })
        })
    }

    fn delete_gateway<'a>(
        &'a self,
        gateway: &'a Resource,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let _busy = self
                .begin("delete_gateway", &gateway.address, &gateway.region, None)
                .await?;
            self.remove(gateway)
        })
    }

    fn create_network<'a>(
        &'a self,
        request: &'a NetworkRequest,
    ) -> BoxFuture<'a, Result<Resource, ProviderError>> {
        Box::pin(async move {
            let _busy = self
                .begin(
                    "create_network",
                    &request.owner.address,
                    &request.region,
                    None,
                )
                .await?;
            if !self.kind.needs_network() {
                return Err(ProviderError::new(
                    FailureKind::Other,
                    "NoNetworks",
                    format!("provider `{}` manages no networks", self.kind),
                ));
            }
            self.injected_failure(&request.owner.address)?;
            let resource = Resource {
                address: request.owner.address.clone(),
                kind: ResourceKind::Network,
                provider: self.kind,
                provider_id: self.new_id("vnet"),
                region: request.region.clone(),
                zone: String::new(),
                offer: None,
                attributes: BTreeMap::new(),
                dependencies: Vec::new(),
            };
            Ok(self.keep(&request.owner, request.owner.token(0), resource))
        })
    }

    fn delete_network<'a>(
        &'a self,
        network: &'a Resource,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let _busy = self
                .begin("delete_network", &network.address, &network.region, None)
                .await?;
            // Like a subnet in use: refused while a node of its region is there.
            let in_use = lock(&self.records).values().any(|r| {
                r.resource.kind == ResourceKind::Instance && r.resource.region == network.region
            });
            if in_use {
                return Err(ProviderError::new(
                    FailureKind::Other,
                    "InUseSubnetCannotBeDeleted",
                    format!("{} is in use by a node", network.address),
                ));
            }
            self.remove(network)
        })
    }

    fn find<'a>(
        &'a self,
        kind: ResourceKind,
        region: &'a str,
        owner: &'a Ownership,
    ) -> BoxFuture<'a, Result<Option<Resource>, ProviderError>> {
        Box::pin(async move {
            self.log("find", &owner.address, region, None);
            Ok(lock(&self.records)
                .values()
                .find(|r| {
                    r.resource.kind == kind
                        && r.resource.region == region
                        && r.lineage == owner.lineage
                        && r.address == owner.address
                })
                .map(|r| r.resource.clone()))
        })
    }

    fn refresh<'a>(
        &'a self,
        resources: &'a [Resource],
    ) -> BoxFuture<'a, Result<Vec<Observed>, ProviderError>> {
        Box::pin(async move {
            let records = lock(&self.records);
            Ok(resources
                .iter()
                .map(|r| match records.get(&r.provider_id) {
                    Some(found) => Observed::Exists(found.resource.clone()),
                    None => Observed::Gone,
                })
                .collect())
        })
    }
}

/// One write a [`MemoryStore`] accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreWrite {
    /// The document written, as JSON.
    pub json: String,
    /// The version it was conditional on.
    pub expected: Option<StoredVersion>,
    /// The version it made.
    pub version: StoredVersion,
}

impl StoreWrite {
    /// The state written.
    pub fn state(&self) -> State {
        parse(&self.json)
    }
}

fn parse(json: &str) -> State {
    State::from_json(json, "memory://fake")
        .expect("the memory store holds what State::to_json wrote")
}

#[derive(Debug, Default)]
struct Memory {
    doc: Option<(String, StoredVersion)>,
    counter: u64,
    writes: Vec<StoreWrite>,
    lock: Option<LockInfo>,
    interfere_after: Option<usize>,
}

/// An in-memory [`StateStore`] with compare-and-swap (a test double). It keeps documents as
/// the JSON a real store would write, so that a benchmark pays a real store's serialisation.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Memory>,
}

impl MemoryStore {
    /// An empty store: no document yet.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// A store holding `state`; returns the store and the document's version.
    pub fn with_state(state: &State) -> (MemoryStore, StoredVersion) {
        let store = MemoryStore::new();
        let version = {
            let mut m = lock(&store.inner);
            m.counter += 1;
            let v = StoredVersion(format!("{}:{}", state.serial, m.counter));
            m.doc = Some((state.to_json(), v.clone()));
            v
        };
        (store, version)
    }

    /// Every write accepted, in order.
    pub fn writes(&self) -> Vec<StoreWrite> {
        lock(&self.inner).writes.clone()
    }

    /// The document and its version now.
    pub fn current(&self) -> Option<(State, StoredVersion)> {
        lock(&self.inner)
            .doc
            .as_ref()
            .map(|(json, v)| (parse(json), v.clone()))
    }

    /// After the `n`th accepted write, another writer writes too (its serial one higher, and
    /// every resource of that write removed, as by `flotilla state rm`), so that the next
    /// conditional write conflicts on addresses this writer changed.
    pub fn interfere_after(&self, n: usize) {
        lock(&self.inner).interfere_after = Some(n);
    }
}

impl StateStore for MemoryStore {
    fn url(&self) -> String {
        "memory://fake".to_string()
    }

    fn lock<'a>(&'a self, info: &'a LockInfo) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let mut m = lock(&self.inner);
            if let Some(holder) = &m.lock {
                return Err(StateError::Locked {
                    url: self.url(),
                    holder: Box::new(holder.clone()),
                });
            }
            m.lock = Some(info.clone());
            Ok(())
        })
    }

    fn unlock<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let mut m = lock(&self.inner);
            if m.lock.as_ref().is_some_and(|l| l.id == id) {
                m.lock = None;
            }
            Ok(())
        })
    }

    fn force_unlock<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            lock(&self.inner).lock = None;
            Ok(())
        })
    }

    fn read(&self) -> BoxFuture<'_, Result<Option<(State, StoredVersion)>, StateError>> {
        Box::pin(async move { Ok(self.current()) })
    }

    fn write<'a>(
        &'a self,
        state: &'a State,
        expected: Option<&'a StoredVersion>,
    ) -> BoxFuture<'a, Result<StoredVersion, StateError>> {
        Box::pin(async move {
            let text = state.to_json();
            let mut m = lock(&self.inner);
            let current = m.doc.as_ref().map(|(_, v)| v);
            if current != expected {
                return Err(StateError::Conflict {
                    url: self.url(),
                    expected: expected.map_or_else(|| "none".to_string(), |v| v.0.clone()),
                });
            }
            m.counter += 1;
            let version = StoredVersion(format!("{}:{}", state.serial, m.counter));
            m.doc = Some((text.clone(), version.clone()));
            m.writes.push(StoreWrite {
                json: text,
                expected: expected.cloned(),
                version: version.clone(),
            });
            if m.interfere_after == Some(m.writes.len()) {
                let mut other = state.clone();
                other.serial += 1;
                other.resources.clear();
                m.counter += 1;
                let v = StoredVersion(format!("{}:{}:other", other.serial, m.counter));
                m.doc = Some((other.to_json(), v));
            }
            Ok(version)
        })
    }
}

/// The cloud ids of `resources`, as the fake records attached volumes and gateway targets.
fn provider_ids(resources: &[Resource]) -> Value {
    Value::from(
        resources
            .iter()
            .map(|r| r.provider_id.clone())
            .collect::<Vec<_>>(),
    )
}
