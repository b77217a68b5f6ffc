//! The port to clouds and hosts.
//!
//! A [`Provider`] carries out one operation on one resource — create, delete, attach, update
//! a gateway's targets — and reads back what exists ([`Provider::refresh`], batched). The
//! adapters live in the `providers/` crates (aws-sdk-ec2, google-cloud-compute-v1,
//! azure_mgmt_compute, SSH); `core` only sees this trait, so the executor is tested with
//! in-process fakes and never learns an SDK.
//!
//! Every create is idempotent from the caller's side: it carries a token and tags derived from
//! the state lineage and the address ([`Ownership`]), and [`Provider::find`] looks a resource
//! up by those tags, so that an apply re-run after a crash finds what the dead one made instead
//! of making a second one.

use crate::catalog::{Offer, ProviderKind};
use crate::state::{BoxFuture, Resource};
use std::collections::BTreeMap;

/// Who a resource belongs to: put on every resource as tags (`flotilla:lineage`,
/// `flotilla:address`) and folded into the idempotency token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// The state's lineage.
    pub lineage: String,
    /// The resource's address.
    pub address: String,
    /// How many earlier resources at this address were given up
    /// ([`crate::state::State::generation`]); 0 for the first. Not a tag: it only makes the
    /// idempotency token of a later create differ from an earlier one's.
    pub generation: u64,
}

impl Ownership {
    /// The tag key for the lineage.
    pub const LINEAGE_TAG: &'static str = "flotilla:lineage";
    /// The tag key for the address.
    pub const ADDRESS_TAG: &'static str = "flotilla:address";

    /// An idempotency token (EC2 `ClientToken`, GCE `requestId`) for one attempt: the same
    /// lineage, address, generation and attempt always give the same token, at most 64
    /// characters. A resource made at an address whose earlier resource was destroyed gets
    /// another generation, hence another token: EC2 remembers a token and would answer a
    /// reused one with the earlier, terminated instance.
    pub fn token(&self, attempt: u32) -> String {
        use sha2::{Digest, Sha256};
        // Generation 0 keeps the original form, so tokens of first creates stay as they were.
        let h = if self.generation == 0 {
            Sha256::digest(format!("{}/{}/{attempt}", self.lineage, self.address))
        } else {
            Sha256::digest(format!(
                "{}/{}/g{}/{attempt}",
                self.lineage, self.address, self.generation
            ))
        };
        h.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }
}

/// Make one node.
#[derive(Debug, Clone)]
pub struct InstanceRequest {
    /// Tags that identify it.
    pub owner: Ownership,
    /// The offer to take.
    pub offer: Offer,
    /// The zone it must be in (its volumes' or its cluster's), if known.
    pub zone: Option<String>,
    /// Root disk size, GiB.
    pub disk_gib: u64,
    /// The fleet's `max_price` (USD per node-hour), for a cloud that caps a spot price with it
    /// (Azure `billingProfile.maxPrice`); `None` caps at the on-demand price.
    pub max_price: Option<f64>,
    /// The fleet's tags.
    pub tags: BTreeMap<String, String>,
    /// The cluster placement group name for a cluster fleet (one per fleet).
    pub placement_group: Option<String>,
    /// Volumes to attach once it runs, already made.
    pub volumes: Vec<Resource>,
    /// Which offer this is among those tried for the node in this apply: 0 for the first,
    /// 1 after the first failover, and so on. Pass `owner.token(attempt)` as the idempotency
    /// token: a retried call (throttling, a lost response) reuses its token, and a failover to
    /// another offer gets a fresh one, as EC2 requires for changed parameters.
    pub attempt: u32,
    /// The network of the offer's region, as state records it, for a provider whose nodes
    /// need one ([`ProviderKind::needs_network`]); made before the node. `None` otherwise.
    pub network: Option<Resource>,
}

/// Make the network a provider's nodes share in one region (an Azure virtual network with
/// one subnet). Its owner's address is `network.PROVIDER.REGION`.
#[derive(Debug, Clone)]
pub struct NetworkRequest {
    /// Tags that identify it.
    pub owner: Ownership,
    /// Region.
    pub region: String,
}

/// Make one volume.
#[derive(Debug, Clone)]
pub struct VolumeRequest {
    /// Tags that identify it.
    pub owner: Ownership,
    /// Region.
    pub region: String,
    /// Zone; a provider picks the region's first when `None`.
    pub zone: Option<String>,
    /// Size, GiB.
    pub size_gib: u64,
    /// Disk type (`gp3`, `pd-balanced`, `Premium_LRS`).
    pub volume_type: String,
}

/// Make or update one gateway.
#[derive(Debug, Clone)]
pub struct GatewayRequest {
    /// Tags that identify it.
    pub owner: Ownership,
    /// Region.
    pub region: String,
    /// DNS name it serves.
    pub domain: Option<String>,
    /// Listener and target port.
    pub port: u16,
    /// The target instances.
    pub targets: Vec<Resource>,
}

/// What kind of failure, so the executor knows whether to fail over, retry or give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No capacity for this offer here (`InsufficientInstanceCapacity`, spot
    /// `capacity-not-available`, `ZONE_RESOURCE_POOL_EXHAUSTED`, `AllocationFailed`): try the
    /// next offer.
    Capacity,
    /// Over a quota of the provider+region (GCE `QUOTA_EXCEEDED`): no offer of that
    /// provider+region can succeed in this apply, so the executor moves on to the next offer
    /// in another region. The message names the quota.
    Quota,
    /// Throttled (`RequestLimitExceeded`): retry the same call with backoff.
    Throttled,
    /// The resource is gone.
    NotFound,
    /// Anything else: the operation fails.
    Other,
}

/// A failed provider call, with the cloud's own code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProviderError {
    /// What the executor should do about it.
    pub kind: FailureKind,
    /// The cloud's error code (`InsufficientInstanceCapacity`).
    pub code: String,
    /// The cloud's message.
    pub message: String,
}

impl ProviderError {
    /// A failure of `kind` with the cloud's code and message.
    pub fn new(kind: FailureKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        ProviderError {
            kind,
            code: code.into(),
            message: message.into(),
        }
    }
}

/// What refresh found for one resource.
// One answer per resource, in a Vec that lives as long as one refresh: not worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// It exists; here is what it looks like now.
    Exists(Resource),
    /// It is gone (terminated or deleted outside flotilla).
    Gone,
}

/// A cloud or a set of hosts that can carry out changes.
///
/// On what a create, an update or [`Provider::find`] returns, the executor sets `address`,
/// `kind`, `dependencies`, an instance's `offer`, and the attributes the planner compares (an
/// instance's `tags` — the fleet's, not the ownership tags — and `disk_gib`; a volume's
/// `size_gib`, `type` and `attached_to`; a gateway's `targets`, `domain` and `port`), so a
/// provider need only fill what it alone knows: `provider_id`, `region`, `zone` and its own
/// attributes (IPs, DNS name, device names). A delete of something already gone may answer
/// [`FailureKind::NotFound`]: the executor counts it as deleted.
pub trait Provider: Send + Sync {
    /// Which provider this is.
    fn kind(&self) -> ProviderKind;

    /// Makes a node and waits until it runs; returns it as state records it (id, zone, IPs).
    fn create_instance<'a>(
        &'a self,
        request: &'a InstanceRequest,
    ) -> BoxFuture<'a, Result<Resource, ProviderError>>;

    /// Brings a node's tags to `request.tags`, in place (the only change a node takes in
    /// place; `request.offer` is the node's own offer). Returns the node as state records it.
    /// It also attaches those of `request.volumes` not attached to it yet: empty on a plain
    /// update, they are the node's volumes when the executor adopts a node that an
    /// interrupted apply launched and may have died before attaching to.
    fn update_instance<'a>(
        &'a self,
        instance: &'a Resource,
        request: &'a InstanceRequest,
    ) -> BoxFuture<'a, Result<Resource, ProviderError>>;

    /// Destroys a node and waits until it is gone (its volumes are detached first).
    fn delete_instance<'a>(
        &'a self,
        instance: &'a Resource,
    ) -> BoxFuture<'a, Result<(), ProviderError>>;

    /// Makes a volume.
    fn create_volume<'a>(
        &'a self,
        request: &'a VolumeRequest,
    ) -> BoxFuture<'a, Result<Resource, ProviderError>>;

    /// Grows a volume to `request.size_gib` or changes its type, in place (EBS
    /// ModifyVolume). Returns the volume as state records it.
    fn update_volume<'a>(
        &'a self,
        volume: &'a Resource,
        request: &'a VolumeRequest,
    ) -> BoxFuture<'a, Result<Resource, ProviderError>>;

    /// Destroys a volume.
    fn delete_volume<'a>(
        &'a self,
        volume: &'a Resource,
    ) -> BoxFuture<'a, Result<(), ProviderError>>;

    /// Makes a gateway in front of its targets.
    fn create_gateway<'a>(
        &'a self,
        request: &'a GatewayRequest,
    ) -> BoxFuture<'a, Result<Resource, ProviderError>>;

    /// Brings a gateway's targets, domain and port to `request`, in place.
    fn update_gateway<'a>(
        &'a self,
        gateway: &'a Resource,
        request: &'a GatewayRequest,
    ) -> BoxFuture<'a, Result<Resource, ProviderError>>;

    /// Destroys a gateway.
    fn delete_gateway<'a>(
        &'a self,
        gateway: &'a Resource,
    ) -> BoxFuture<'a, Result<(), ProviderError>>;

    /// Makes the network a provider's nodes share in a region and waits until it is ready.
    /// Only providers whose nodes need one ([`ProviderKind::needs_network`]) are asked; the
    /// default refuses.
    fn create_network<'a>(
        &'a self,
        request: &'a NetworkRequest,
    ) -> BoxFuture<'a, Result<Resource, ProviderError>> {
        let kind = self.kind();
        Box::pin(async move {
            Err(ProviderError::new(
                FailureKind::Other,
                "NoNetworks",
                format!(
                    "provider `{kind}` manages no networks (asked for one in {})",
                    request.region
                ),
            ))
        })
    }

    /// Destroys a network made by [`Provider::create_network`], once nothing uses it.
    fn delete_network<'a>(
        &'a self,
        network: &'a Resource,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        let kind = self.kind();
        Box::pin(async move {
            Err(ProviderError::new(
                FailureKind::Other,
                "NoNetworks",
                format!(
                    "provider `{kind}` manages no networks ({})",
                    network.address
                ),
            ))
        })
    }

    /// Finds a resource made for `owner` by an earlier, interrupted apply (by its tags), in
    /// `region`. For an instance, fill `offer` as far as the provider knows it (at least
    /// `instance_type` and `spot`); the executor completes it from the fleet's candidates.
    fn find<'a>(
        &'a self,
        kind: crate::state::ResourceKind,
        region: &'a str,
        owner: &'a Ownership,
    ) -> BoxFuture<'a, Result<Option<Resource>, ProviderError>>;

    /// Reads what `resources` look like now, batched (one list call per region, not one call
    /// per resource). Returns one answer per resource, in order.
    fn refresh<'a>(
        &'a self,
        resources: &'a [Resource],
    ) -> BoxFuture<'a, Result<Vec<Observed>, ProviderError>>;
}

#[cfg(test)]
mod tests {
    use super::Ownership;

    fn owner(generation: u64) -> Ownership {
        Ownership {
            lineage: "6f1c0d3e-8a2b-4c47-9e0f-3b5d2a7c9e14".into(),
            address: "fleet.train[0]".into(),
            generation,
        }
    }

    #[test]
    fn a_later_generation_never_reuses_an_earlier_token() {
        // The same inputs give the same token: a retried or re-run create is idempotent.
        assert_eq!(owner(0).token(0), owner(0).token(0));
        assert_eq!(owner(2).token(1), owner(2).token(1));
        // Another generation (the address's earlier resource was destroyed) or another offer
        // attempt gives another one.
        let tokens: std::collections::BTreeSet<String> = (0..3)
            .flat_map(|g| (0..3).map(move |a| owner(g).token(a)))
            .collect();
        assert_eq!(tokens.len(), 9);
        assert!(tokens.iter().all(|t| t.len() == 32));
    }
}
