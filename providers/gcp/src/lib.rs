//! flotilla's GCP provider: Compute Engine instances, persistent disks and forwarding-rule
//! gateways through `google-cloud-compute-v1`.
//!
//! It implements [`flotilla_core::provider::Provider`], the port the executor drives, so that
//! `core` never learns an SDK. Why it is shaped the way it is:
//!
//! - **Credentials and endpoints**: Google Application Default Credentials; the provider
//!   block's `endpoint` or `FLOTILLA_GCP_ENDPOINT` points the clients at another server (the
//!   tests' Compute fake) with anonymous credentials.
//! - **No orphans, no duplicates.** Every create carries a `requestId` derived from the state
//!   lineage, the address, the attempt and the zone (Compute deduplicates on it), a name
//!   derived from the address, and the labels `flotilla-lineage`/`flotilla-address` (plus the
//!   exact address in metadata), so a retried or crashed create finds or adopts what exists:
//!   a 409 `alreadyExists` is adopted when its labels say it is this state's, an error
//!   otherwise.
//! - **Failures keep the cloud's code and message.** A `DONE` operation with `error` is a
//!   failure (the SDK returns `Ok` for it); `ZONE_RESOURCE_POOL_EXHAUSTED*` moves to the
//!   region's next zone and then, as a capacity failure, to the executor's next offer;
//!   `QUOTA_EXCEEDED` is regional, so it fails the offer at once as
//!   [`FailureKind::Quota`], naming the quota, and the executor skips the rest of the region.
//! - **Offers**: [`fetch_offers`] lists the regions' machine and accelerator types for
//!   `flotilla offers --refresh` and prices them from the Cloud Billing Catalog API's Compute
//!   Engine SKUs (vCPUs, memory and GPUs per region and usage type), with the same
//!   credentials as Compute; where the API refuses or has no SKU for a part, the embedded
//!   snapshot's price stays, and [`PriceSource`] says which (see [`PRICE_SOURCE`]).
//! - **Refresh is batched**: one `aggregatedList` per project and lineage for instances,
//!   disks, forwarding rules and target pools (paginated, filtered by label or name), instead
//!   of one call per resource.

mod api;
mod billing;
mod catalog;
mod gateways;
mod instances;
mod refresh;
mod volumes;

pub use billing::BILLING_ENDPOINT_ENV;
pub use catalog::{
    FetchedOffers, PRICE_SOURCE, PriceSource, Progress, RefreshError, RegionOffers, fetch_offers,
};
use flotilla_core::catalog::ProviderKind;
use flotilla_core::provider::{
    FailureKind, GatewayRequest, InstanceRequest, Observed, Ownership, Provider, ProviderError,
    VolumeRequest,
};
use flotilla_core::state::{BoxFuture, Resource, ResourceKind};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The provider this crate adapts.
pub const KIND: ProviderKind = ProviderKind::Gcp;

/// The environment variable that points the provider at another Compute endpoint (a fake);
/// the provider block's `endpoint` wins over it.
pub const ENDPOINT_ENV: &str = "FLOTILLA_GCP_ENDPOINT";

/// The boot image when the provider block names none: a Deep Learning VM image family with
/// CUDA and the NVIDIA driver installed.
pub const DEFAULT_IMAGE: &str = "projects/deeplearning-platform-release/global/images/family/common-cu128-ubuntu-2204-nvidia-570";

/// Timings of the provider.
#[derive(Debug, Clone)]
pub struct GcpOptions {
    /// The first wait before polling an operation or a resource again (default 250 ms; it
    /// grows by half each time up to `max_poll_interval`).
    pub poll_interval: Duration,
    /// The longest wait between two polls (default 10 s).
    pub max_poll_interval: Duration,
    /// How long to wait for an operation or an instance to run (default 15 minutes).
    pub wait_timeout: Duration,
}

impl Default for GcpOptions {
    fn default() -> Self {
        GcpOptions {
            poll_interval: Duration::from_millis(250),
            max_poll_interval: Duration::from_secs(10),
            wait_timeout: Duration::from_secs(15 * 60),
        }
    }
}

/// Why the provider could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("gcp provider: {0}")]
pub struct SetupError(String);

/// The GCP provider: one per `provider "gcp"` block.
#[derive(Debug)]
pub struct GcpProvider {
    config: flotilla_core::config::GcpProvider,
    endpoint: Option<String>,
    options: GcpOptions,
    clients: tokio::sync::OnceCell<api::Clients>,
    /// (region, machine type, accelerator) -> the region's zones that offer both, in order.
    zones: Mutex<HashMap<(String, String, String), Vec<String>>>,
}

impl GcpProvider {
    /// A provider for `config` with default timings. Nothing is called yet: the clients are
    /// made on the first operation, so this can be made outside an async runtime.
    pub fn new(config: &flotilla_core::config::GcpProvider) -> Result<Self, SetupError> {
        Self::with_options(config, GcpOptions::default())
    }

    /// A provider for `config` with the given timings.
    pub fn with_options(
        config: &flotilla_core::config::GcpProvider,
        options: GcpOptions,
    ) -> Result<Self, SetupError> {
        if config.project.trim().is_empty() {
            return Err(SetupError(
                "`project` is empty; set it to the GCP project id".into(),
            ));
        }
        let endpoint = config
            .endpoint
            .clone()
            .or_else(|| std::env::var(ENDPOINT_ENV).ok())
            .filter(|e| !e.is_empty());
        if let Some(endpoint) = &endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(SetupError(format!(
                "endpoint `{endpoint}` must be an http:// or https:// URL"
            )));
        }
        Ok(GcpProvider {
            config: config.clone(),
            endpoint,
            options,
            clients: tokio::sync::OnceCell::new(),
            zones: Mutex::default(),
        })
    }

    /// The provider block this provider was made from.
    pub fn config(&self) -> &flotilla_core::config::GcpProvider {
        &self.config
    }

    pub(crate) async fn clients(&self) -> Result<&api::Clients, ProviderError> {
        self.clients
            .get_or_try_init(|| api::Clients::new(self.endpoint.as_ref()))
            .await
    }

    pub(crate) fn project(&self) -> &str {
        &self.config.project
    }

    fn lock_zones(&self) -> MutexGuard<'_, HashMap<(String, String, String), Vec<String>>> {
        self.zones
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Provider for GcpProvider {
    fn kind(&self) -> ProviderKind {
        KIND
    }

    fn create_instance<'a>(
        &'a self,
        request: &'a InstanceRequest,
    ) -> BoxFuture<'a, Result<Resource, ProviderError>> {
        Box::pin(instances::create(self, request))
    }

    fn update_instance<'a>(
        &'a self,
        instance: &'a Resource,
        request: &'a InstanceRequest,
    ) -> BoxFuture<'a, Result<Resource, ProviderError>> {
        Box::pin(instances::update(self, instance, request))
    }

    fn delete_instance<'a>(
        &'a self,
        instance: &'a Resource,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(instances::delete(self, instance))
    }

    fn create_volume<'a>(
        &'a self,
        request: &'a VolumeRequest,
    ) -> BoxFuture<'a, Result<Resource, ProviderError>> {
        Box::pin(volumes::create(self, request))
    }

    fn update_volume<'a>(
        &'a self,
        volume: &'a Resource,
        request: &'a VolumeRequest,
    ) -> BoxFuture<'a, Result<Resource, ProviderError>> {
        Box::pin(volumes::update(self, volume, request))
    }

    fn delete_volume<'a>(
        &'a self,
        volume: &'a Resource,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(volumes::delete(self, volume))
    }

    fn create_gateway<'a>(
        &'a self,
        request: &'a GatewayRequest,
    ) -> BoxFuture<'a, Result<Resource, ProviderError>> {
        Box::pin(gateways::create(self, request))
    }

    fn update_gateway<'a>(
        &'a self,
        gateway: &'a Resource,
        request: &'a GatewayRequest,
    ) -> BoxFuture<'a, Result<Resource, ProviderError>> {
        Box::pin(gateways::update(self, gateway, request))
    }

    fn delete_gateway<'a>(
        &'a self,
        gateway: &'a Resource,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(gateways::delete(self, gateway))
    }

    fn find<'a>(
        &'a self,
        kind: ResourceKind,
        region: &'a str,
        owner: &'a Ownership,
    ) -> BoxFuture<'a, Result<Option<Resource>, ProviderError>> {
        Box::pin(async move {
            match kind {
                ResourceKind::Instance => instances::find(self, region, owner).await,
                ResourceKind::Volume => volumes::find(self, region, owner).await,
                ResourceKind::Gateway => gateways::find(self, region, owner).await,
                // This provider's nodes use the default network; it makes none.
                ResourceKind::Network => Ok(None),
            }
        })
    }

    fn refresh<'a>(
        &'a self,
        resources: &'a [Resource],
    ) -> BoxFuture<'a, Result<Vec<Observed>, ProviderError>> {
        Box::pin(refresh::refresh(self, resources))
    }
}

/// A not-found error for `what`.
pub(crate) fn gone(what: &str) -> ProviderError {
    ProviderError::new(
        FailureKind::NotFound,
        "notFound",
        format!("{what} does not exist"),
    )
}
