//! flotilla's gcp provider: Google Cloud through `google-cloud-compute-v1`: instances, persistent disks, forwarding-rule gateways.
//!
//! Implements [`flotilla_core::provider::Provider`]. The SDK dependency arrives with the issue
//! that fills this crate, so that the engine's build stays fast until then.

use flotilla_core::catalog::ProviderKind;

/// The gcp provider.
#[derive(Debug, Default)]
pub struct Provider;

impl flotilla_core::provider::Provider for Provider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Gcp
    }
}
