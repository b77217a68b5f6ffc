//! flotilla's Azure provider: virtual machines, managed disks, virtual networks and
//! load-balancer gateways through `azure_mgmt_compute` and `azure_mgmt_network`.
//!
//! It implements [`flotilla_core::provider::Provider`], the port the executor drives, so that
//! `core` never learns an SDK. Why it is shaped the way it is:
//!
//! - **Credentials and endpoints**: `azure_identity`'s default chain (environment, Azure CLI,
//!   managed identity) against Azure; the provider block's `endpoint` or
//!   [`ENDPOINT_ENV`] points the clients at another server (the tests' ARM fake) with a static
//!   bearer token.
//! - **Names are the idempotency.** ARM has no request token, but a PUT of an existing name is
//!   an update: every resource's name derives from the state lineage and its address
//!   (`api::name`), so a retried or crashed create lands on the same resource. One that exists
//!   is adopted only when its `flotilla-lineage` tag is this state's.
//! - **Long-running operations are polled here**, not by the clients (their wait re-sends the
//!   PUT and ignores failures): `Failed` keeps ARM's code, so `AllocationFailed` and friends
//!   fail over to the next offer and quota moves on to another region. The `Failed` VM such a
//!   failure leaves in Azure is deleted first, so the next offer starts clean.
//! - **The admin user's SSH key** (`ssh_public_key`, else `~/.ssh/id_*.pub`) is read when the
//!   provider is made, but only creates need it: they all check it before calling ARM, so an
//!   apply without one stops before it makes anything, and plan and destroy never ask.
//! - **Networking the user does not write**: one virtual network with one subnet per region
//!   ([`Provider::create_network`]), a NIC per VM, no public IP.
//! - **Volumes move with their node**: data disks attach through the VM's `dataDisks`, and a
//!   VM is stripped of them before it is deleted, so they survive for the replacement.

mod api;
mod catalog;
mod gateways;
mod instances;
mod networks;
mod refresh;
mod security;
mod volumes;

pub use catalog::{
    DEFAULT_PRICES_URL, FetchedOffers, PRICES_URL_ENV, RefreshError, RegionOffers, fetch_offers,
    prices_url, snapshot_regions,
};
use flotilla_core::catalog::ProviderKind;
use flotilla_core::provider::{
    FailureKind, GatewayRequest, InstanceRequest, NetworkRequest, Observed, Ownership, Provider,
    ProviderError, VolumeRequest,
};
use flotilla_core::state::{BoxFuture, Resource, ResourceKind};
use std::path::PathBuf;
use std::time::Duration;

/// The provider this crate adapts.
pub const KIND: ProviderKind = ProviderKind::Azure;

/// The environment variable that points the provider at another Resource Manager endpoint (a
/// fake); the provider block's `endpoint` wins over it.
pub const ENDPOINT_ENV: &str = "FLOTILLA_AZURE_ENDPOINT";

/// The image when the provider block names none: Microsoft's Ubuntu 22.04 HPC image (Gen2,
/// with the NVIDIA driver, CUDA and InfiniBand stack), as a `publisher:offer:sku:version` URN.
pub const DEFAULT_IMAGE: &str = "microsoft-dsvm:ubuntu-hpc:2204:latest";

/// Timings of the provider.
#[derive(Debug, Clone)]
pub struct AzureOptions {
    /// The first wait before polling an operation again when ARM sends no `Retry-After`
    /// (default 250 ms; it grows by half each time up to `max_poll_interval`).
    pub poll_interval: Duration,
    /// The longest wait between two polls without `Retry-After` (default 10 s).
    pub max_poll_interval: Duration,
    /// How long to wait for one operation, and how long to keep retrying a NIC that ARM
    /// still reserves for a deleted VM (default 15 minutes).
    pub wait_timeout: Duration,
}

impl Default for AzureOptions {
    fn default() -> Self {
        AzureOptions {
            poll_interval: Duration::from_millis(250),
            max_poll_interval: Duration::from_secs(10),
            wait_timeout: Duration::from_secs(15 * 60),
        }
    }
}

/// Why the provider could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("provider `azure`: {0}")]
pub struct SetupError(String);

/// The Azure provider: one per `provider "azure"` block.
#[derive(Debug)]
pub struct AzureProvider {
    config: flotilla_core::config::AzureProvider,
    endpoint: Option<String>,
    pub(crate) options: AzureOptions,
    /// The image reference JSON of VMs (`{publisher, offer, sku, version}` or `{id}`).
    pub(crate) image: serde_json::Value,
    /// The admin user's SSH public key, or why there is none (only making a VM needs it, so
    /// plan and destroy work without one).
    pub(crate) ssh_key: Result<String, String>,
    clients: tokio::sync::OnceCell<api::Clients>,
    group: tokio::sync::OnceCell<()>,
}

impl AzureProvider {
    /// A provider for `config` with default timings. Nothing is called yet: the clients are
    /// made on the first operation, so this can be made outside an async runtime.
    pub fn new(config: &flotilla_core::config::AzureProvider) -> Result<Self, SetupError> {
        Self::with_options(config, AzureOptions::default())
    }

    /// A provider for `config` with the given timings.
    pub fn with_options(
        config: &flotilla_core::config::AzureProvider,
        options: AzureOptions,
    ) -> Result<Self, SetupError> {
        for (key, value) in [
            ("subscription_id", &config.subscription_id),
            ("resource_group", &config.resource_group),
        ] {
            if value.trim().is_empty() {
                return Err(SetupError(format!("`{key}` is empty; set it")));
            }
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
        let image = image_reference(config.image.as_deref().unwrap_or(DEFAULT_IMAGE))
            .map_err(SetupError)?;
        Ok(AzureProvider {
            config: config.clone(),
            endpoint,
            options,
            image,
            ssh_key: ssh_public_key(config.ssh_public_key.as_deref(), home().as_deref()),
            clients: tokio::sync::OnceCell::new(),
            group: tokio::sync::OnceCell::new(),
        })
    }

    /// The provider block this provider was made from.
    pub fn config(&self) -> &flotilla_core::config::AzureProvider {
        &self.config
    }

    /// The clients, made on first use.
    pub(crate) async fn clients(&self) -> Result<&api::Clients, ProviderError> {
        self.clients
            .get_or_try_init(|| async {
                api::Clients::new(
                    self.endpoint.as_deref(),
                    &self.config.subscription_id,
                    &self.config.resource_group,
                )
            })
            .await
    }

    /// The clients, once the resource group exists (made in `region` when missing, once per
    /// provider): what every create goes through.
    pub(crate) async fn ready(&self, region: &str) -> Result<&api::Clients, ProviderError> {
        let clients = self.clients().await?;
        self.group
            .get_or_try_init(|| clients.ensure_group(region))
            .await?;
        Ok(clients)
    }

    /// The admin user's SSH public key, or the error that says how to give one. Checked by
    /// every create that exists only for VMs (networks, disks, VMs), so that an apply without
    /// a key stops before it makes anything.
    pub(crate) fn ssh_key(&self) -> Result<&str, ProviderError> {
        self.ssh_key
            .as_deref()
            .map_err(|e| api::other("NoSshKey", e.clone()))
    }

    /// The VMs' admin user.
    pub(crate) fn admin_user(&self) -> &str {
        self.config.admin_user()
    }
}

/// The image reference of a VM for `image`: a `publisher:offer:sku:version` URN or an ARM
/// image id (`/subscriptions/…`).
pub(crate) fn image_reference(image: &str) -> Result<serde_json::Value, String> {
    let image = image.trim();
    if image.starts_with('/') {
        return Ok(serde_json::json!({ "id": image }));
    }
    match image.split(':').collect::<Vec<_>>()[..] {
        [publisher, offer, sku, version]
            if [publisher, offer, sku, version]
                .iter()
                .all(|s| !s.is_empty()) =>
        {
            Ok(serde_json::json!({
                "publisher": publisher, "offer": offer, "sku": sku, "version": version
            }))
        }
        _ => Err(format!(
            "image `{image}` is neither a `publisher:offer:sku:version` URN nor an image id \
             (`/subscriptions/…`); e.g. `{DEFAULT_IMAGE}`"
        )),
    }
}

/// The home directory, for `~` and the default keys.
fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// Whether `s` is an OpenSSH public key line.
fn is_public_key(s: &str) -> bool {
    let s = s.trim();
    ["ssh-", "ecdsa-", "sk-"].iter().any(|p| s.starts_with(p)) && s.split_whitespace().count() >= 2
}

/// The admin user's SSH public key: `configured` (a key, or the path of a `.pub` file, `~`
/// allowed), else the first of `~/.ssh/id_{ed25519,ecdsa,rsa}.pub`. `Err` says what to do.
pub(crate) fn ssh_public_key(
    configured: Option<&str>,
    home: Option<&std::path::Path>,
) -> Result<String, String> {
    let expand = |p: &str| match (p.strip_prefix("~/"), home) {
        (Some(rest), Some(h)) => h.join(rest),
        _ => PathBuf::from(p),
    };
    if let Some(c) = configured.map(str::trim) {
        if is_public_key(c) {
            return Ok(c.to_string());
        }
        let path = expand(c);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "`ssh_public_key` = \"{c}\" is neither an OpenSSH public key nor a readable \
                 file ({}: {e}); set it to the key (`ssh-ed25519 AAAA…`) or to its .pub file",
                path.display()
            )
        })?;
        let key = text.trim();
        return if is_public_key(key) {
            Ok(key.to_string())
        } else {
            Err(format!(
                "{} (from `ssh_public_key`) holds no OpenSSH public key; point it at a .pub \
                 file",
                path.display()
            ))
        };
    }
    let dir = home.map(|h| h.join(".ssh"));
    for name in ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"] {
        if let Some(path) = dir.as_ref().map(|d| d.join(name))
            && let Ok(text) = std::fs::read_to_string(&path)
            && is_public_key(&text)
        {
            return Ok(text.trim().to_string());
        }
    }
    Err(
        "no SSH public key for the VMs' admin user: set `ssh_public_key` in the \
         `provider \"azure\"` block (a key or a .pub path), or make one with \
         `ssh-keygen -t ed25519` (~/.ssh/id_ed25519.pub)"
            .to_string(),
    )
}

impl Provider for AzureProvider {
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

    fn create_network<'a>(
        &'a self,
        request: &'a NetworkRequest,
    ) -> BoxFuture<'a, Result<Resource, ProviderError>> {
        Box::pin(networks::create(self, request))
    }

    fn delete_network<'a>(
        &'a self,
        network: &'a Resource,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(networks::delete(self, network))
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
                ResourceKind::Network => networks::find(self, region, owner).await,
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
        "NotFound",
        format!("{what} does not exist"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_urns_or_ids() {
        let urn = image_reference(DEFAULT_IMAGE).unwrap();
        assert_eq!(urn["publisher"], "microsoft-dsvm");
        assert_eq!(urn["version"], "latest");
        let id = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/images/i";
        assert_eq!(image_reference(id).unwrap()["id"], id);
        assert!(image_reference("ubuntu").unwrap_err().contains("URN"));
        assert!(image_reference("a::c:d").is_err());
    }

    #[test]
    fn ssh_keys_come_from_the_block_or_home() {
        let dir = tempfile::tempdir().unwrap();
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE test@host";
        assert_eq!(ssh_public_key(Some(key), None).unwrap(), key);
        // Nothing configured and no key at home: an error that says what to set.
        let e = ssh_public_key(None, Some(dir.path())).unwrap_err();
        assert!(
            e.contains("ssh_public_key") && e.contains("provider \"azure\""),
            "{e}"
        );
        std::fs::create_dir(dir.path().join(".ssh")).unwrap();
        std::fs::write(dir.path().join(".ssh/id_rsa.pub"), "ssh-rsa AAAAB3 me\n").unwrap();
        assert_eq!(
            ssh_public_key(None, Some(dir.path())).unwrap(),
            "ssh-rsa AAAAB3 me"
        );
        std::fs::write(dir.path().join(".ssh/id_ed25519.pub"), format!("{key}\n")).unwrap();
        assert_eq!(ssh_public_key(None, Some(dir.path())).unwrap(), key);
        // A path, with `~`.
        assert_eq!(
            ssh_public_key(Some("~/.ssh/id_rsa.pub"), Some(dir.path())).unwrap(),
            "ssh-rsa AAAAB3 me"
        );
        let e = ssh_public_key(Some("~/.ssh/nope.pub"), Some(dir.path())).unwrap_err();
        assert!(e.contains("nope.pub"), "{e}");
    }

    #[test]
    fn setup_checks_the_block() {
        let mut config = flotilla_core::config::AzureProvider {
            subscription_id: "s".into(),
            resource_group: "g".into(),
            endpoint: Some("http://127.0.0.1:1".into()),
            ..Default::default()
        };
        assert!(AzureProvider::new(&config).is_ok());
        config.image = Some("nope".into());
        let e = AzureProvider::new(&config).unwrap_err().to_string();
        assert!(e.starts_with("provider `azure`: image `nope`"), "{e}");
        config.image = None;
        config.endpoint = Some("ftp://x".into());
        assert!(AzureProvider::new(&config).is_err());
        config.resource_group = " ".into();
        assert!(
            AzureProvider::new(&config)
                .unwrap_err()
                .to_string()
                .contains("resource_group")
        );
    }
}
