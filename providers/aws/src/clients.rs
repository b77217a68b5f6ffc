//! One EC2 and one ELBv2 client per region, made on first use and kept.
//!
//! The shared configuration (`aws-config`'s chain: env, profile, SSO, IMDS) is loaded on the
//! first call, not when the provider is made: loading is async and may reach IMDS, and the
//! CLI builds its providers before its runtime runs. Credentials themselves are resolved by
//! the SDK on the first request.

use crate::AwsOptions;
use crate::error::NoRetryOnCapacity;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_types::retry::RetryConfig;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::OnceCell;

/// The SDK clients of one region.
#[derive(Debug, Clone)]
pub(crate) struct RegionClients {
    pub(crate) ec2: aws_sdk_ec2::Client,
    pub(crate) elb: aws_sdk_elasticloadbalancingv2::Client,
}

/// The shared configuration, once loaded, and the clients made from it so far.
#[derive(Debug)]
pub(crate) struct Clients {
    profile: Option<String>,
    endpoint: Option<String>,
    retry: RetryConfig,
    sdk: OnceCell<(SdkConfig, bool)>,
    by_region: Mutex<HashMap<String, RegionClients>>,
}

impl Clients {
    /// Clients for the provider block's profile and endpoint; nothing is loaded yet.
    pub(crate) fn new(
        config: &flotilla_core::config::AwsProvider,
        options: &AwsOptions,
    ) -> Clients {
        Clients {
            profile: config.profile.clone(),
            endpoint: config.endpoint.clone(),
            retry: RetryConfig::standard()
                .with_max_attempts(options.max_attempts)
                .with_initial_backoff(options.initial_backoff),
            sdk: OnceCell::new(),
            by_region: Mutex::new(HashMap::new()),
        }
    }

    /// The shared configuration: the block's profile, else the standard chain; the block's
    /// endpoint, else `AWS_ENDPOINT_URL` and friends. With whether an endpoint was set.
    async fn sdk(&self) -> &(SdkConfig, bool) {
        self.sdk
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(BehaviorVersion::latest());
                if let Some(profile) = &self.profile {
                    loader = loader.profile_name(profile);
                }
                if let Some(endpoint) = &self.endpoint {
                    loader = loader.endpoint_url(endpoint);
                }
                let sdk = loader.load().await;
                let emulated = sdk.endpoint_url().is_some()
                    || std::env::var_os("AWS_ENDPOINT_URL_EC2").is_some_and(|v| !v.is_empty());
                (sdk, emulated)
            })
            .await
    }

    /// Whether the endpoint was pointed elsewhere (an emulator): some defaults relax then.
    pub(crate) async fn emulated(&self) -> bool {
        self.sdk().await.1
    }

    /// The clients for `region`.
    pub(crate) async fn region(&self, region: &str) -> RegionClients {
        let sdk = &self.sdk().await.0;
        let mut map = self
            .by_region
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(region.to_string())
            .or_insert_with(|| {
                let ec2 = aws_sdk_ec2::config::Builder::from(sdk)
                    .region(Region::new(region.to_string()))
                    .retry_config(self.retry.clone())
                    .retry_classifier(NoRetryOnCapacity)
                    .build();
                let elb = aws_sdk_elasticloadbalancingv2::config::Builder::from(sdk)
                    .region(Region::new(region.to_string()))
                    .retry_config(self.retry.clone())
                    .retry_classifier(NoRetryOnCapacity)
                    .build();
                RegionClients {
                    ec2: aws_sdk_ec2::Client::from_conf(ec2),
                    elb: aws_sdk_elasticloadbalancingv2::Client::from_conf(elb),
                }
            })
            .clone()
    }
}
