//! flotilla's baremetal provider: Bare-metal hosts the team owns, reached over SSH: probes GPUs with nvidia-smi and runs nodes on them.
//!
//! Implements [`flotilla_core::provider::Provider`]. The SDK dependency arrives with the issue
//! that fills this crate, so that the engine's build stays fast until then.

use flotilla_core::catalog::ProviderKind;

/// The baremetal provider.
#[derive(Debug, Default)]
pub struct Provider;

impl flotilla_core::provider::Provider for Provider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Baremetal
    }
}
