//! Progress events, so the CLI can draw spinners or print lines and tests can watch the
//! executor's decisions (failovers, retries, skips) without parsing text.

use crate::catalog::Offer;
use crate::plan::graph::Operation;
use crate::provider::ProviderError;
use std::sync::Arc;
use std::time::Duration;

use super::OpError;

/// Something the executor did or decided.
// Events go to the sink one at a time and are not stored in bulk, so the size of the
// failover variant (two offers) costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Event {
    /// An operation got its permits and began.
    Started {
        /// The operation.
        op: Operation,
    },
    /// An operation completed and is recorded in state.
    Finished {
        /// The operation.
        op: Operation,
        /// How long it ran.
        elapsed: Duration,
        /// The provider's id of what it made or changed; `None` for a destroy.
        provider_id: Option<String>,
        /// Whether it found what an earlier apply made and adopted it.
        adopted: bool,
    },
    /// An operation failed.
    Failed {
        /// The operation.
        op: Operation,
        /// Why.
        error: OpError,
        /// How long it ran.
        elapsed: Duration,
    },
    /// A node moves to another offer: `from` failed with `why` (here, or on an earlier node
    /// of this apply), and it tries `to` next.
    FailedOver {
        /// The node.
        address: String,
        /// The offer that had no capacity.
        from: Offer,
        /// The cloud's answer.
        why: ProviderError,
        /// The offer tried next.
        to: Offer,
    },
    /// A throttled call is retried after `delay`.
    Retrying {
        /// The operation.
        op: Operation,
        /// The cloud's answer.
        error: ProviderError,
        /// Which retry this is (1 for the first).
        attempt: u32,
        /// How long it waits first.
        delay: Duration,
    },
    /// An operation will not run.
    Skipped {
        /// The operation.
        op: Operation,
        /// Why: a dependency failed, or the apply was cancelled or stopped.
        because: String,
    },
}

/// Where events go: a callback, called from the executor's tasks, so it must be quick and
/// must not block (send to a channel, update a progress bar).
#[derive(Clone, Default)]
pub struct EventSink(Option<Arc<dyn Fn(Event) + Send + Sync>>);

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "EventSink(..)"
        } else {
            "EventSink(none)"
        })
    }
}

impl EventSink {
    /// Drops every event.
    pub fn none() -> EventSink {
        EventSink(None)
    }

    /// Calls `f` with every event.
    pub fn new(f: impl Fn(Event) + Send + Sync + 'static) -> EventSink {
        EventSink(Some(Arc::new(f)))
    }

    /// Sends every event to the returned receiver.
    pub fn channel() -> (EventSink, tokio::sync::mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (
            EventSink::new(move |e| {
                let _ = tx.send(e);
            }),
            rx,
        )
    }

    pub(super) fn emit(&self, event: Event) {
        if let Some(f) = &self.0 {
            f(event);
        }
    }
}
