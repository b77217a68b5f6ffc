//! flotilla's azure provider: Microsoft Azure through `azure_mgmt_compute`: VMs, managed disks, load-balancer gateways.
//!
//! Implements [`flotilla_core::provider::Provider`]. The SDK dependency arrives with the issue
//! that fills this crate, so that the engine's build stays fast until then.

use flotilla_core::catalog::ProviderKind;

/// The azure provider.
#[derive(Debug, Default)]
pub struct Provider;

impl flotilla_core::provider::Provider for Provider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Azure
    }
}
