//! The port to clouds and hosts.
//!
//! A [`Provider`] creates, reads and deletes the resources a plan names. The adapters live in
//! the `providers/` crates (aws-sdk-ec2, google-cloud-compute-v1, azure_mgmt_compute, SSH);
//! `core` only sees this trait, so the executor can be tested with in-process fakes.
//! Filled by the apply issue; the planner needs none of it.

use crate::catalog::ProviderKind;

/// A cloud or a set of hosts that can carry out changes.
pub trait Provider: Send + Sync {
    /// Which provider this is.
    fn kind(&self) -> ProviderKind;
}
