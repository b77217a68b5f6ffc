//! A cancellation signal the CLI's Ctrl-C handler and the executor share: cloneable, set once,
//! awaitable. (tokio-util's `CancellationToken` does the same; this avoids the dependency.)

use std::sync::Arc;
use tokio::sync::watch;

/// Set once to stop an apply from starting more operations; clones share the signal.
#[derive(Debug, Clone)]
pub struct CancelToken(Arc<watch::Sender<bool>>);

impl Default for CancelToken {
    fn default() -> Self {
        CancelToken::new()
    }
}

impl CancelToken {
    /// A signal not yet given.
    pub fn new() -> CancelToken {
        CancelToken(Arc::new(watch::channel(false).0))
    }

    /// Gives the signal (again is harmless).
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }

    /// Whether the signal was given.
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once the signal is given.
    pub async fn cancelled(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = rx.wait_for(|c| *c).await;
    }
}
