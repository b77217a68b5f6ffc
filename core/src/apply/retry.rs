//! Retrying throttled calls: exponential backoff with jitter, so that many nodes throttled at
//! once do not come back at once (AWS's "equal jitter").

use super::RetryPolicy;
use super::events::{Event, EventSink};
use crate::plan::graph::Operation;
use crate::provider::{FailureKind, ProviderError};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Calls `call` until it answers something other than [`FailureKind::Throttled`], or the
/// policy's attempts run out (then the last throttling error is returned).
pub(super) async fn retrying<T, F, Fut>(
    policy: &RetryPolicy,
    events: &EventSink,
    op: &Operation,
    mut call: F,
) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(e) if e.kind == FailureKind::Throttled && attempt < policy.max_attempts.max(1) => {
                let delay = backoff(policy, attempt);
                events.emit(Event::Retrying {
                    op: op.clone(),
                    error: e,
                    attempt,
                    delay,
                });
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The wait before retry `attempt` (from 1): between half and all of
/// `min(max_delay, base_delay * 2^(attempt-1))`.
pub(super) fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .base_delay
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(policy.max_delay);
    let half = exp / 2;
    let jitter = half.mul_f64(random_unit());
    half + jitter
}

/// A number in [0, 1) from a shared splitmix64 sequence seeded by the clock: good enough to
/// spread retries, and no dependency.
fn random_unit() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut seed = STATE.load(Ordering::Relaxed);
    if seed == 0 {
        seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64)
            | 1;
    }
    let next = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    STATE.store(next, Ordering::Relaxed);
    let mut z = next;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}
