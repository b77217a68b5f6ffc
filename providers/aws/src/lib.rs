//! flotilla's aws provider: Amazon Web Services through `aws-sdk-ec2`: EC2 instances, EBS volumes, NLB gateways.
//!
//! Will implement [`flotilla_core::provider::Provider`]; the SDK dependency arrives with the issue
//! that fills this crate, so that the engine's build stays fast until then.

use flotilla_core::catalog::ProviderKind;

/// The provider this crate adapts.
pub const KIND: ProviderKind = ProviderKind::Aws;
