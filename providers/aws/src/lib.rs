//! flotilla's AWS provider: EC2 instances, EBS volumes and network-load-balancer gateways
//! through `aws-sdk-ec2` and `aws-sdk-elasticloadbalancingv2`.
//!
//! It implements [`flotilla_core::provider::Provider`], the port the executor drives, so that
//! `core` never learns an SDK. Why it is shaped the way it is:
//!
//! - **Credentials and endpoints** come from the standard chain (`aws-config`: env, profiles,
//!   SSO, IMDS) and nothing else; `AWS_ENDPOINT_URL` or the provider block's `endpoint` points
//!   it at an emulator (the tests use moto). One EC2 and one ELBv2 client per region, made on
//!   first use and kept.
//! - **No orphans, no duplicates.** Every create carries the ownership tags
//!   (`flotilla:lineage`, `flotilla:address`) atomically at launch (`TagSpecifications`) and
//!   EC2's `ClientToken`, so [`find`](flotilla_core::provider::Provider::find) can look a
//!   resource up by tags after a crash (moto ignores `ClientToken`; tags are what recovery
//!   relies on).
//! - **Failures keep the cloud's own code and message** and are sorted into
//!   [`FailureKind`](flotilla_core::provider::FailureKind)s the executor acts on: capacity
//!   (fail over to the next offer), throttled (retry), not found, other ([`error`]). The SDK's
//!   own retry is bounded (three attempts by default) and never retries a capacity error, so
//!   a failover is not delayed and the executor's retry does not stack on an endless one.
//! - **Refresh is batched**: one `DescribeInstances` per region (per 200 instances, paginated),
//!   the same for volumes, one `DescribeLoadBalancers` listing per region.
//!
//! - **Offers**: [`fetch_offers`] reads live GPU instance shapes and spot prices for
//!   `flotilla offers --refresh` (on-demand prices stay the embedded snapshot's).
//!
//! Waiting (until running, attached, terminated) polls with [`AwsOptions::poll_interval`],
//! tiny in tests, and gives up after [`AwsOptions::wait_timeout`].

mod catalog;
mod clients;
pub mod error;
mod gateways;
mod instances;
mod lookup;
mod tags;
mod volumes;

pub use catalog::{FetchedOffers, RefreshError, RegionOffers, fetch_offers};
use clients::Clients;
use flotilla_core::catalog::ProviderKind;
use flotilla_core::provider::{
    GatewayRequest, InstanceRequest, Observed, Ownership, Provider, ProviderError, VolumeRequest,
};
use flotilla_core::state::{BoxFuture, Resource, ResourceKind};
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The provider this crate adapts.
pub const KIND: ProviderKind = ProviderKind::Aws;

/// Timings of the provider: how often it polls, how long it waits, how the SDK retries.
#[derive(Debug, Clone)]
pub struct AwsOptions {
    /// Between two polls of a resource that is not ready yet (default 2 s).
    pub poll_interval: Duration,
    /// How long to wait for an instance to run or terminate, a volume to attach or detach
    /// (default 15 minutes; a large spot instance can take several).
    pub wait_timeout: Duration,
    /// Attempts per API call, first included, for throttling and transient errors; capacity
    /// errors are never retried here (default 3). The executor retries throttling on top.
    pub max_attempts: u32,
    /// The SDK's first retry backoff (default 1 s, doubling, with jitter).
    pub initial_backoff: Duration,
}

impl Default for AwsOptions {
    fn default() -> Self {
        AwsOptions {
            poll_interval: Duration::from_secs(2),
            wait_timeout: Duration::from_secs(15 * 60),
            max_attempts: 3,
            initial_backoff: Duration::from_secs(1),
        }
    }
}

/// The AWS provider: one per `provider "aws"` block.
#[derive(Debug)]
pub struct AwsProvider {
    config: flotilla_core::config::AwsProvider,
    options: AwsOptions,
    clients: Clients,
    /// (region, architecture) -> the AMI to launch.
    images: Mutex<HashMap<(String, String), instances::Image>>,
    /// (region, instance type) -> architecture.
    arches: Mutex<HashMap<(String, String), String>>,
    /// (region, name) of placement groups known to exist.
    groups: Mutex<HashSet<(String, String)>>,
}

/// Why the provider could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("aws provider: {0}")]
pub struct SetupError(String);

impl AwsProvider {
    /// A provider for `config` with default timings. Nothing is read or called yet: the
    /// shared AWS configuration and credentials are loaded on the first operation, so this
    /// can be made outside an async runtime.
    pub fn new(config: &flotilla_core::config::AwsProvider) -> Result<Self, SetupError> {
        Self::with_options(config, AwsOptions::default())
    }

    /// A provider for `config` with the given timings.
    pub fn with_options(
        config: &flotilla_core::config::AwsProvider,
        options: AwsOptions,
    ) -> Result<Self, SetupError> {
        if options.max_attempts == 0 {
            return Err(SetupError("max_attempts must be at least 1".into()));
        }
        if let Some(endpoint) = &config.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(SetupError(format!(
                "endpoint `{endpoint}` must be an http:// or https:// URL"
            )));
        }
        let clients = Clients::new(config, &options);
        Ok(AwsProvider {
            config: config.clone(),
            options,
            clients,
            images: Mutex::default(),
            arches: Mutex::default(),
            groups: Mutex::default(),
        })
    }

    fn lock_images(&self) -> MutexGuard<'_, HashMap<(String, String), instances::Image>> {
        self.images
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_arches(&self) -> MutexGuard<'_, HashMap<(String, String), String>> {
        self.arches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_groups(&self) -> MutexGuard<'_, HashSet<(String, String)>> {
        self.groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The provider block this provider was made from.
    pub fn config(&self) -> &flotilla_core::config::AwsProvider {
        &self.config
    }
}

impl Provider for AwsProvider {
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
        Box::pin(lookup::refresh(self, resources))
    }
}

/// Polls `check` every `poll_interval` until it answers `Some`, or fails with `Other` naming
/// `what` after `wait_timeout`. Throttling of a poll only delays the next one.
async fn wait_for<T, F, Fut>(
    provider: &AwsProvider,
    what: &str,
    mut check: F,
) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, ProviderError>>,
{
    let deadline = tokio::time::Instant::now() + provider.options.wait_timeout;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) if e.kind == flotilla_core::provider::FailureKind::Throttled => {}
            Err(e) => return Err(e),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ProviderError::new(
                flotilla_core::provider::FailureKind::Other,
                "WaitTimeout",
                format!(
                    "gave up waiting for {what} after {} s",
                    provider.options.wait_timeout.as_secs()
                ),
            ));
        }
        tokio::time::sleep(provider.options.poll_interval).await;
    }
}
