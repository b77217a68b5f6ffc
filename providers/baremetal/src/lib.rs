//! flotilla's baremetal provider: Bare-metal hosts the team owns, reached over SSH: probes GPUs with nvidia-smi and runs nodes on them.
//!
//! Will implement [`flotilla_core::provider::Provider`]; the SDK dependency arrives with the issue
//! that fills this crate, so that the engine's build stays fast until then.

use flotilla_core::catalog::ProviderKind;

/// The provider this crate adapts.
pub const KIND: ProviderKind = ProviderKind::Baremetal;
