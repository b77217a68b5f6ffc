//! Concurrency and rate limits: a global semaphore, and per provider+region a semaphore and a
//! token bucket for create calls.
//!
//! An operation takes its region's permit before the global one, and on a failover to another
//! region gives both back before taking the new pair in the same order, so that no task holds
//! a global permit while it waits for a region's: with one order for every task, the two
//! semaphores cannot deadlock.

use super::RateLimit;
use crate::catalog::ProviderKind;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Duration, Instant};

/// One provider and region.
pub(super) type RegionKey = (ProviderKind, String);

pub(super) struct Limits {
    global: Arc<Semaphore>,
    per_region: Option<usize>,
    rate: Option<RateLimit>,
    regions: Mutex<HashMap<RegionKey, Arc<Region>>>,
}

struct Region {
    sem: Option<Arc<Semaphore>>,
    bucket: Option<Mutex<Bucket>>,
}

/// A reservation-style token bucket: each caller takes a token at once, going into debt if
/// there is none, and sleeps until its token would have been refilled. Callers are served in
/// the order they asked, with no polling.
struct Bucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

/// The permits an operation holds while it runs.
pub(super) struct Slot {
    pub(super) key: RegionKey,
    // Dropped in declaration order: the global permit goes back first.
    _global: OwnedSemaphorePermit,
    _region: Option<OwnedSemaphorePermit>,
}

impl Limits {
    pub(super) fn new(
        parallelism: usize,
        per_region: Option<usize>,
        rate: Option<RateLimit>,
    ) -> Limits {
        Limits {
            global: Arc::new(Semaphore::new(parallelism.max(1))),
            per_region: per_region.map(|n| n.max(1)),
            rate: rate.filter(|r| r.per_second > 0.0),
            regions: Mutex::new(HashMap::new()),
        }
    }

    fn region(&self, key: &RegionKey) -> Arc<Region> {
        let mut regions = self
            .regions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        regions
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Region {
                    sem: self.per_region.map(|n| Arc::new(Semaphore::new(n))),
                    bucket: self.rate.map(|r| {
                        Mutex::new(Bucket {
                            tokens: f64::from(r.burst.max(1)),
                            last: Instant::now(),
                            rate: r.per_second,
                            burst: f64::from(r.burst.max(1)),
                        })
                    }),
                })
            })
            .clone()
    }

    /// Waits for `key`'s permit, then a global one.
    pub(super) async fn slot(&self, key: RegionKey) -> Slot {
        let region = self.region(&key);
        let region_permit = match &region.sem {
            // The semaphores are never closed.
            Some(sem) => sem.clone().acquire_owned().await.ok(),
            None => None,
        };
        let global = self
            .global
            .clone()
            .acquire_owned()
            .await
            .expect("the global semaphore is never closed");
        Slot {
            key,
            _global: global,
            _region: region_permit,
        }
    }

    /// Moves `slot` to another region: gives back both permits, then takes the new pair.
    pub(super) async fn move_slot(&self, slot: Slot, key: RegionKey) -> Slot {
        if slot.key == key {
            return slot;
        }
        drop(slot);
        self.slot(key).await
    }

    /// Waits for a create-call token of `key`'s bucket.
    pub(super) async fn create_token(&self, key: &RegionKey) {
        let region = self.region(key);
        let Some(bucket) = &region.bucket else { return };
        let wait = {
            let mut b = bucket
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let refill = now.saturating_duration_since(b.last).as_secs_f64() * b.rate;
            b.tokens = (b.tokens + refill).min(b.burst);
            b.last = now;
            b.tokens -= 1.0;
            if b.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-b.tokens / b.rate)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}
