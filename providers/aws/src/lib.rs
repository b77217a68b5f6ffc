//! flotilla's aws provider: Amazon Web Services through `aws-sdk-ec2`: EC2 instances, EBS volumes, NLB gateways.
//!
//! Implements [`flotilla_core::provider::Provider`]. The SDK dependency arrives with the issue
//! that fills this crate, so that the engine's build stays fast until then.

use flotilla_core::catalog::ProviderKind;

/// The aws provider.
#[derive(Debug, Default)]
pub struct Provider;

impl flotilla_core::provider::Provider for Provider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Aws
    }
}
