//! The state document and the [`StateStore`] port.
//!
//! State is what flotilla believes exists: every instance, volume and gateway it made, with the
//! offer each instance took and the provider's id for it. It is JSON, so that a person can read
//! it and `flotilla state` can edit it; `lineage` names one state's history (a UUID made when it
//! is first written) and `serial` rises on every write, so that a saved plan can tell it was
//! made against an older state. Stores (a local file, S3, GCS, Azure Blob) live in the
//! `flotilla-state` crate; this module only defines the port they implement.
//!
//! No credential ever lands here: attributes hold ids, addresses and sizes only.

use crate::catalog::{Offer, ProviderKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `format_version` this flotilla writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The state document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Document format; a newer one is refused (upgrade flotilla).
    pub format_version: u32,
    /// The flotilla that last wrote it.
    pub flotilla_version: String,
    /// UUID naming this state's history; made on first write, never changed.
    pub lineage: String,
    /// Raised by one on every write.
    pub serial: u64,
    /// Every resource flotilla manages, sorted by address.
    pub resources: Vec<Resource>,
    /// Output values after the last apply.
    #[serde(default)]
    pub outputs: BTreeMap<String, serde_json::Value>,
    /// For each address, how many earlier resources at it were given up (destroyed, replaced,
    /// or found deleted outside flotilla). The next create at that address folds it into its
    /// idempotency token ([`crate::provider::Ownership::generation`]), so that it never reuses
    /// the token of an earlier, by now terminated, resource; and since it is written with the
    /// removal, a re-run after a crash computes the same token again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub generations: BTreeMap<String, u64>,
    /// What was learned of each bare-metal host, by host name, whether or not a node sits on
    /// it: the host key pinned on first contact (so a host that holds no node is not trusted
    /// anew on every run) and its last probed facts (what `flotilla offers` shows for a host
    /// it cannot reach).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, HostRecord>,
}

/// One bare-metal host as last seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The host key's fingerprint (`SHA256:…`), trusted on first use; a different key later
    /// is refused.
    pub host_key: String,
    /// Its hardware at the last probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<crate::config::HostFacts>,
    /// When it was last probed (RFC 3339).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub probed_at: String,
}

impl State {
    /// An empty state with a new lineage and serial 0 (what a missing state file reads as).
    pub fn empty() -> State {
        State {
            format_version: FORMAT_VERSION,
            flotilla_version: crate::VERSION.to_string(),
            lineage: uuid::Uuid::new_v4().to_string(),
            serial: 0,
            resources: Vec::new(),
            outputs: BTreeMap::new(),
            generations: BTreeMap::new(),
            hosts: BTreeMap::new(),
        }
    }

    /// Removes the resource at `address`, if any, and counts it in
    /// [`State::generations`]; returns what was removed.
    pub fn forget(&mut self, address: &str) -> Option<Resource> {
        let i = self.resources.iter().position(|r| r.address == address)?;
        let removed = self.resources.remove(i);
        *self.generations.entry(address.to_string()).or_insert(0) += 1;
        Some(removed)
    }

    /// The generation a new resource at `address` is created in (see [`State::generations`]).
    pub fn generation(&self, address: &str) -> u64 {
        self.generations.get(address).copied().unwrap_or(0)
    }

    /// The resource at `address`.
    pub fn get(&self, address: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.address == address)
    }

    /// Parse and check a state document; refuses foreign, corrupt or newer documents with a
    /// message that says what to do. `origin` names the file or URL in messages.
    pub fn from_json(text: &str, origin: &str) -> Result<State, StateError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| StateError::Corrupt {
                url: origin.to_string(),
                message: format!("not JSON: {e}"),
            })?;
        let Some(version) = value.get("format_version") else {
            return Err(StateError::Corrupt {
                url: origin.to_string(),
                message: "no `format_version`: this is not a flotilla state file".to_string(),
            });
        };
        match version.as_u64() {
            Some(v) if v == u64::from(FORMAT_VERSION) => {}
            Some(v) if v > u64::from(FORMAT_VERSION) => {
                return Err(StateError::TooNew {
                    url: origin.to_string(),
                    format_version: v,
                    writer: value
                        .get("flotilla_version")
                        .and_then(|v| v.as_str())
                        .unwrap_or("unknown")
                        .to_string(),
                });
            }
            _ => {
                return Err(StateError::Corrupt {
                    url: origin.to_string(),
                    message: format!("unknown format_version {version}"),
                });
            }
        }
        serde_json::from_value(value).map_err(|e| StateError::Corrupt {
            url: origin.to_string(),
            message: e.to_string(),
        })
    }

    /// The document as pretty JSON with a trailing newline, resources sorted by address.
    pub fn to_json(&self) -> String {
        let mut sorted = self.clone();
        sorted
            .resources
            .sort_by(|a, b| address_cmp(&a.address, &b.address));
        let mut s = serde_json::to_string_pretty(&sorted).expect("State serialises");
        s.push('\n');
        s
    }
}

/// Orders addresses as people expect: `fleet.a[2]` before `fleet.a[10]`.
pub fn address_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn split(s: &str) -> (&str, Option<u64>) {
        match s.strip_suffix(']').and_then(|s| s.rsplit_once('[')) {
            Some((base, idx)) => (base, idx.parse().ok()),
            None => (s, None),
        }
    }
    let (ab, ai) = split(a);
    let (bb, bi) = split(b);
    ab.cmp(bb).then(ai.cmp(&bi)).then_with(|| a.cmp(b))
}

/// What a resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    /// One node of a fleet: a VM or a bare-metal host.
    Instance,
    /// A network disk mounted by one node.
    Volume,
    /// A load balancer in front of fleets.
    Gateway,
    /// The private network a provider's nodes of one region share (an Azure virtual network
    /// and subnet), made by flotilla because the user does not write it: address
    /// `network.PROVIDER.REGION` ([`network_address`]).
    Network,
}

impl ResourceKind {
    /// `instance`, `volume`, `gateway`, `network`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Instance => "instance",
            ResourceKind::Volume => "volume",
            ResourceKind::Gateway => "gateway",
            ResourceKind::Network => "network",
        }
    }
}

/// The address of the network `provider`'s nodes share in `region`: `network.azure.eastus`.
pub fn network_address(provider: ProviderKind, region: &str) -> String {
    format!("network.{}.{region}", provider.as_str())
}

/// One managed resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// `fleet.train[0]`, `volume.ckpt[0]`, `gateway.serve`.
    pub address: String,
    /// What it is.
    pub kind: ResourceKind,
    /// Who runs it.
    pub provider: ProviderKind,
    /// The provider's id (`i-0abc…`, `vol-…`, an ARN, a self link, a host name).
    pub provider_id: String,
    /// Region.
    pub region: String,
    /// Zone; empty when not zonal.
    pub zone: String,
    /// The offer an instance took; `None` for volumes and gateways.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<Offer>,
    /// Kind-specific attributes: an instance's `private_ip`, `public_ip`, `tags`, `disk_gib`;
    /// a volume's `size_gib`, `type`, `attached_to`; a gateway's `targets`, `domain`, `port`,
    /// `dns_name`.
    #[serde(default)]
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// Addresses this resource depends on (an instance on its volumes, a gateway on its
    /// targets), so that a destroy runs in the right order even after the config is gone.
    #[serde(default)]
    pub dependencies: Vec<String>,
}

/// How long a lock lives without a heartbeat before it is reported as stale, unless the
/// holder says otherwise ([`LockInfo::with_ttl`]). The holder renews its heartbeat several
/// times per TTL (see [`LockInfo::heartbeat_interval`]), so only a holder that died or hung
/// lets it lapse.
pub const DEFAULT_LOCK_TTL: std::time::Duration = std::time::Duration::from_secs(120);

/// Who holds a state lock, for "state locked by … for … since … (heartbeat N s ago)".
///
/// Stored as JSON in the lock (the lock file of a local state, the `KEY.lock` object of an
/// object store). Fields added after the first release have defaults, so a lock written by an
/// older flotilla still reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Lock id, for `flotilla force-unlock ID`.
    pub id: String,
    /// `plan`, `apply`, `destroy`, `state rm`…
    pub operation: String,
    /// `user@host (pid N)`.
    pub who: String,
    /// When it was taken, RFC 3339 UTC.
    pub created: String,
    /// The flotilla version of the holder.
    #[serde(default)]
    pub flotilla_version: String,
    /// When the holder last said it is alive, RFC 3339 UTC; renewed while it runs.
    #[serde(default)]
    pub heartbeat: String,
    /// Seconds without a heartbeat after which the lock is stale (its holder presumably
    /// died); 0 means the lock never goes stale (an OS lock, released by its process's end).
    #[serde(default)]
    pub ttl_secs: u64,
}

impl LockInfo {
    /// A new lock description for `operation` by this process, with the default TTL.
    pub fn new(operation: &str) -> LockInfo {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .unwrap_or_else(|_| "unknown".to_string());
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".to_string());
        let now = rfc3339_now();
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            operation: operation.to_string(),
            who: format!("{user}@{host} (pid {})", std::process::id()),
            created: now.clone(),
            flotilla_version: crate::VERSION.to_string(),
            heartbeat: now,
            ttl_secs: DEFAULT_LOCK_TTL.as_secs(),
        }
    }

    /// A holder nothing is known about (its description could not be read).
    pub fn unknown() -> LockInfo {
        LockInfo {
            id: "unknown".to_string(),
            operation: "unknown".to_string(),
            who: "unknown".to_string(),
            created: "unknown".to_string(),
            flotilla_version: String::new(),
            heartbeat: String::new(),
            ttl_secs: 0,
        }
    }

    /// The same lock with another TTL (at least one second).
    #[must_use]
    pub fn with_ttl(mut self, ttl: std::time::Duration) -> LockInfo {
        self.ttl_secs = ttl.as_secs().max(1);
        self
    }

    /// The same lock with its heartbeat set to now.
    #[must_use]
    pub fn beat(mut self) -> LockInfo {
        self.heartbeat = rfc3339_now();
        self
    }

    /// How often the holder renews the heartbeat: a quarter of the TTL, so that three missed
    /// renewals (a slow network, a paused laptop) still do not make a live lock stale.
    pub fn heartbeat_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis((self.ttl_secs * 1000 / 4).max(250))
    }

    /// How long ago the last heartbeat was (by this machine's clock); `None` when the lock
    /// carries no readable heartbeat. A heartbeat in the future (clock skew) reads as zero.
    pub fn heartbeat_age(&self) -> Option<std::time::Duration> {
        let at = humantime::parse_rfc3339_weak(&self.heartbeat).ok()?;
        Some(
            std::time::SystemTime::now()
                .duration_since(at)
                .unwrap_or_default(),
        )
    }

    /// Whether the heartbeat is older than the TTL: the holder has most likely died, and the
    /// lock may be broken with `flotilla force-unlock ID`.
    pub fn is_stale(&self) -> bool {
        self.ttl_secs > 0
            && self
                .heartbeat_age()
                .is_some_and(|age| age.as_secs() > self.ttl_secs)
    }

    /// "locked by WHO for OPERATION since TIME (heartbeat N s ago)", the way every message
    /// about a held lock names its holder.
    pub fn describe(&self) -> String {
        let beat = match self.heartbeat_age() {
            Some(age) => format!(" (heartbeat {} s ago)", age.as_secs()),
            None => String::new(),
        };
        format!(
            "locked by {} for {} since {}{beat}",
            self.who, self.operation, self.created
        )
    }

    /// What to do about a lock this process found held: wait, or break a stale one.
    pub fn advice(&self) -> String {
        if self.is_stale() {
            format!(
                "the lock is stale: its last heartbeat is older than its TTL of {} s, so its \
                 holder has most likely died. If you are sure it is not running, break the lock \
                 with:\n  flotilla force-unlock {}",
                self.ttl_secs, self.id
            )
        } else {
            format!(
                "wait for it to finish (or pass --lock-timeout, e.g. --lock-timeout 5m, to wait \
                 for it); lock id {}",
                self.id
            )
        }
    }
}

/// The current time as RFC 3339 UTC, to the second.
pub fn rfc3339_now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// The version of a stored document a write is conditional on: an ETag, a generation, or for a
/// local file its serial and digest. Opaque to everything but the store that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredVersion(pub String);

/// Why a state store operation failed. Every variant names the state's URL.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The document is not a flotilla state, or is damaged.
    #[error(
        "state `{url}` is corrupt: {message}; it was left untouched. Restore it from its backup \
         (`{url}.backup`, written before every change; `flotilla state push` puts it back) or fix \
         it by hand"
    )]
    Corrupt {
        /// The state's location.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// Written by a newer flotilla.
    #[error(
        "state `{url}` has format_version {format_version}, written by flotilla {writer}; this is \
         flotilla {ours}. Upgrade flotilla to use it",
        ours = crate::VERSION
    )]
    TooNew {
        /// The state's location.
        url: String,
        /// The document's format version.
        format_version: u64,
        /// The flotilla version that wrote it.
        writer: String,
    },
    /// Another process holds the lock.
    #[error("state `{url}` {}; {}", holder.describe(), holder.advice())]
    Locked {
        /// The state's location.
        url: String,
        /// Who holds it (boxed: it is large, and errors travel in every `Result`).
        holder: Box<LockInfo>,
    },
    /// A conditional write lost: someone else wrote the state since it was read.
    #[error(
        "state `{url}` was changed by someone else since it was read (expected version {expected}); nothing was overwritten. Run the command again"
    )]
    Conflict {
        /// The state's location.
        url: String,
        /// The version the write was conditional on.
        expected: String,
    },
    /// A write lost the compare-and-swap, and the newer state changed resources this writer
    /// changed too: merging would overwrite someone's update, so nothing was merged.
    #[error(
        "state `{url}` was changed by someone else while this apply ran, at addresses this apply \
         changed too: {}; this apply's changes to them were not recorded (nothing of the other \
         writer's was overwritten). Run `flotilla plan` to see where things stand: what this \
         apply made is found again by its tags on the next apply",
        addresses.join(", ")
    )]
    ConflictingChanges {
        /// The state's location.
        url: String,
        /// The addresses both writers changed, sorted.
        addresses: Vec<String>,
    },
    /// Storage failed (I/O, network, permission).
    #[error("state `{url}`: {message}")]
    Storage {
        /// The state's location.
        url: String,
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// Where the state document lives. Implemented by `flotilla-state` for a local file and object
/// stores; every write is conditional on the version last read, so a concurrent writer can
/// never be overwritten.
///
/// Futures are boxed so that the binary can pick a store at run time (`dyn StateStore`).
pub trait StateStore: Send + Sync {
    /// Where it is, for messages: a path or `s3://bucket/key`.
    fn url(&self) -> String;

    /// Takes the exclusive lock for one operation, or fails with [`StateError::Locked`] naming
    /// the holder. Held until [`StateStore::unlock`] or the process ends.
    fn lock<'a>(&'a self, info: &'a LockInfo) -> BoxFuture<'a, Result<(), StateError>>;

    /// Releases this process's lock.
    fn unlock<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StateError>>;

    /// Breaks a lock by id, whoever holds it (`flotilla force-unlock`).
    fn force_unlock<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StateError>>;

    /// Renews the heartbeat of this process's lock `id`, so that others keep seeing it as
    /// live; fails when the lock is no longer this process's (someone broke it). Stores whose
    /// lock ends with its process need no heartbeat: the default does nothing.
    fn heartbeat<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StateError>> {
        let _ = id;
        Box::pin(async { Ok(()) })
    }

    /// Reads the document and its version; `None` when there is none yet.
    fn read(&self) -> BoxFuture<'_, Result<Option<(State, StoredVersion)>, StateError>>;

    /// Writes `state` if the stored version is still `expected` (`None`: only if there is no
    /// document yet); returns the new version, or [`StateError::Conflict`].
    fn write<'a>(
        &'a self,
        state: &'a State,
        expected: Option<&'a StoredVersion>,
    ) -> BoxFuture<'a, Result<StoredVersion, StateError>>;
}

/// A boxed, sendable future, so [`StateStore`] can be used as a trait object.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostFacts;

    fn with_host() -> State {
        let mut state = State::empty();
        state.hosts.insert(
            "dgx-1".to_string(),
            HostRecord {
                host_key: "SHA256:abc".to_string(),
                facts: Some(HostFacts {
                    arch: "x86_64".to_string(),
                    vcpus: 96,
                    gpu_name: "A100".to_string(),
                    gpu_count: 8,
                    memory: crate::spec::Memory::from_gib(1024),
                    gpu_memory: crate::spec::Memory::from_gib(80),
                    ..HostFacts::default()
                }),
                probed_at: "2026-11-26T15:00:00Z".to_string(),
            },
        );
        state
    }

    #[test]
    fn host_records_survive_a_round_trip() {
        let state = with_host();
        let text = state.to_json();
        assert!(text.contains("\"hosts\""), "{text}");
        let back = State::from_json(&text, "test").expect("reads back");
        assert_eq!(back, state);
        assert_eq!(back.hosts["dgx-1"].host_key, "SHA256:abc");
        assert_eq!(
            back.hosts["dgx-1"].facts.as_ref().map(|f| f.gpu_count),
            Some(8)
        );
    }

    #[test]
    fn states_without_hosts_still_load_and_do_not_gain_the_key() {
        let mut value: serde_json::Value =
            serde_json::from_str(&with_host().to_json()).expect("JSON");
        value.as_object_mut().expect("object").remove("hosts");
        let old = State::from_json(&value.to_string(), "old").expect("an old state loads");
        assert!(old.hosts.is_empty());
        assert!(!old.to_json().contains("\"hosts\""));
    }

    #[test]
    fn a_record_without_facts_loads() {
        let mut state = State::empty();
        state.hosts.insert(
            "dgx".to_string(),
            HostRecord {
                host_key: "SHA256:k".to_string(),
                facts: None,
                probed_at: String::new(),
            },
        );
        let text = state.to_json();
        assert!(
            !text.contains("probed_at") && !text.contains("facts"),
            "{text}"
        );
        assert_eq!(State::from_json(&text, "t").expect("loads"), state);
    }
}
